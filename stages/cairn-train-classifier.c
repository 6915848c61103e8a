/* cairn-train-classifier: train an image classifier on a dataset shard and
 * test it on another (nn/train.h does the work). Writes DIR/metrics.json and
 * DIR/model.ckpt. Exit 0 ok, 1 failure of the work, 2 bad usage or input. */
#include <float.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/parse.h"
#include "core/progress.h"
#include "dist/dist.h"
#include "dist/train.h"
#include "nn/ckpt.h"
#include "nn/dataset.h"
#include "nn/model.h"
#include "nn/train.h"
#ifdef CAIRN_CUDA
#include "nn/cuda/cuda.h"
#endif

#define EXIT_USAGE 2

static const char *prog = "cairn-train-classifier";

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: %s --train SHARD --test SHARD --out DIR [options]\n"
	    "\n"
	    "Train an image classifier (nn/) on a dataset shard, test it after every epoch,\n"
	    "write DIR/metrics.json (test_accuracy, per-class accuracy, loss per epoch,\n"
	    "wall time, images/s) and DIR/model.ckpt.\n"
	    "\n"
	    "options:\n"
	    "  --arch SPEC     model spec (default \"%s\"; see docs/nn.md), e.g.\n"
	    "                  \"resnet:depths=2-2-2,widths=32-64-128\"\n"
	    "  --epochs N      passes over the training shard, 1..100000 (default 15)\n"
	    "  --batch N       images per step, 1..65536 (default 128)\n"
	    "  --lr X          peak learning rate of SGD + Nesterov, cosine decay (default 0.05)\n"
	    "  --wd X          weight decay (default 5e-4)\n"
	    "  --seed N        weight init, shuffling, augmentation, dropout;\n"
	    "                  0..2147483647 (default 1)\n"
	    "  --pad N         random-crop augmentation: pad N (0..64) pixels, crop back\n"
	    "                  (default 0)\n"
	    "  --no-augment    no random flips and no crops\n"
	    "  --threads N     CPU threads, 1..1024 (default: all cores)\n"
	    "  --device D      cpu (default), cpu-ref (slow reference loops), cuda (a build\n"
	    "                  with make CUDA=1 and a GPU), auto (cuda if a GPU is visible,\n"
	    "                  else cpu)\n"
	    "  --precision P   cuda math of convolutions and gemms: tf32 (default; fp32 on\n"
	    "                  GPUs before Ampere), fp32, or bf16 (mixed precision, fp32\n"
	    "                  master weights, Ampere or newer; docs/cuda.md);\n"
	    "                  the cpu devices compute in fp32 only\n"
	    "  --dist A        data-parallel over the MPI ranks it is started with (mpirun\n"
	    "                  -np N, srun; `ranks = N` in a pipeline): none (default),\n"
	    "                  allreduce (gradients averaged every step; the global batch\n"
	    "                  is ranks x --batch) or adpsgd (asynchronous decentralized:\n"
	    "                  each even rank averages weights with a neighbour after\n"
	    "                  every step, nobody waits); rank 0 tests and writes DIR\n"
	    "  --state DIR     resumable: the training's state goes to DIR/train.state\n"
	    "                  after every epoch and every --state-every seconds; a new\n"
	    "                  start with the same DIR and settings goes on where it\n"
	    "                  stopped (a time limit, a preemption, kill -9), to the\n"
	    "                  same model as one never stopped (docs/nn.md); not with\n"
	    "                  --dist. In a pipeline: --state \"$CAIRN_STATE\"\n"
	    "  --state-every S seconds between states within an epoch (default 600;\n"
	    "                  0: at epoch ends only)\n"
	    "  --help          this text\n"
	    "\n"
	    "example:\n"
	    "  cairn-dataset import-idx --images "
	    "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\\n"
	    "      --labels /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz --out "
	    "train.ds\n"
	    "  cairn-dataset import-idx --images "
	    "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \\\n"
	    "      --labels /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --out "
	    "test.ds\n"
	    "  %s --train train.ds --test test.ds --epochs 15 --out run1\n"
	    "\n"
	    "exit status: 0 ok, 1 the work failed, 2 bad usage or bad input.\n",
	    prog, NN_MODEL_DEFAULT, prog);
}

static int bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see '%s --help')\n", prog);
	return EXIT_USAGE;
}

struct ui {
	struct progress p;
	int epochs;
	uint64_t per_epoch;
};

static void on_batch(void *ctx, int epoch, uint64_t batch, uint64_t batches, float loss)
{
	struct ui *u = ctx;
	(void)loss;
	if (!u->per_epoch) {
		u->per_epoch = batches;
		progress_init(&u->p, "train", "batch", batches * u->epochs);
	}
	progress_update(&u->p, (uint64_t)epoch * batches + batch);
}

static void on_epoch(void *ctx, int epoch, float loss, double acc, double seconds)
{
	struct ui *u = ctx;
	char t[32];
	clock_format_duration(seconds, t, sizeof(t));
	if (u->p.tty)
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "epoch %d/%d: train loss %.4f, test accuracy %.4f (%s)\n", epoch + 1,
		u->epochs, loss, acc, t);
}

static json_t *json_doubles(const double *v, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_real(v[i]));
	return a;
}

/* --precision for the chosen device; *p becomes the precision in use. */
static int set_precision(const struct nn_backend *be, const char **p)
{
	struct error err;
	if (nn_backend_set_precision(be, p, &err) < 0) {
		bad_usage("--precision: %s", err.msg);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	nn_cpu_blas_check(argv);
	static const struct option longopts[] = {{"train", required_argument, 0, 't'},
						 {"test", required_argument, 0, 'T'},
						 {"out", required_argument, 0, 'o'},
						 {"arch", required_argument, 0, 'a'},
						 {"epochs", required_argument, 0, 'e'},
						 {"batch", required_argument, 0, 'b'},
						 {"lr", required_argument, 0, 'l'},
						 {"wd", required_argument, 0, 'w'},
						 {"seed", required_argument, 0, 's'},
						 {"threads", required_argument, 0, 'j'},
						 {"device", required_argument, 0, 'd'},
						 {"no-augment", no_argument, 0, 'A'},
						 {"pad", required_argument, 0, 'P'},
						 {"precision", required_argument, 0, 'p'},
						 {"dist", required_argument, 0, 'D'},
						 {"state", required_argument, 0, 'S'},
						 {"state-every", required_argument, 0, 'E'},
						 {"help", no_argument, 0, 'h'},
						 {0, 0, 0, 0}};
	struct nn_train_config cfg;
	nn_train_defaults(&cfg);
	const char *train_path = NULL, *test_path = NULL, *out = NULL, *precision = NULL;
	long v, threads = 0;
	float every;
	int c;
	enum dist_algo algo = DIST_NONE;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 't': train_path = optarg; break;
		case 'T': test_path = optarg; break;
		case 'o': out = optarg; break;
		case 'a': cfg.arch = optarg; break;
		case 'e':
			if (parse_long(optarg, 1, 100000, &v) < 0)
				return bad_usage("--epochs: '%s' is not an integer in 1..100000", optarg);
			cfg.epochs = (int)v;
			break;
		case 'b':
			if (parse_long(optarg, 1, 65536, &v) < 0)
				return bad_usage("--batch: '%s' is not an integer in 1..65536", optarg);
			cfg.batch = (int)v;
			break;
		case 'l':
			if (parse_float(optarg, &cfg.lr) < 0 || cfg.lr <= 0)
				return bad_usage("--lr: '%s' is not a finite positive number", optarg);
			break;
		case 'w':
			if (parse_float(optarg, &cfg.wd) < 0)
				return bad_usage("--wd: '%s' is not a finite number >= 0", optarg);
			break;
		case 's':
			if (parse_long(optarg, 0, 0x7fffffffL, &v) < 0)
				return bad_usage("--seed: '%s' is not an integer in 0..2147483647", optarg);
			cfg.seed = (uint64_t)v;
			break;
		case 'j':
			if (parse_long(optarg, 1, 1024, &threads) < 0)
				return bad_usage("--threads: '%s' is not an integer in 1..1024", optarg);
			break;
		case 'd': {
			struct error derr;
			if (!(cfg.be = nn_backend_by_name(optarg, &derr)))
				return bad_usage("--%s", derr.msg);
			break;
		}
		case 'A': cfg.flip = 0, cfg.pad = 0; break;
		case 'P':
			if (parse_long(optarg, 0, 64, &v) < 0)
				return bad_usage("--pad: '%s' is not an integer in [0, 64]", optarg);
			cfg.pad = (int)v;
			break;
		case 'p': precision = optarg; break;
		case 'D': {
			struct error derr;
			if (dist_algo_parse(optarg, &algo, &derr) < 0)
				return bad_usage("--dist: %s", derr.msg);
			break;
		}
		case 'S':
			cfg.state_dir = optarg;
			break;
		case 'E':
			if (parse_float(optarg, &every) < 0 || !(every >= 0))
				return bad_usage(
				    "--state-every: '%s' is not a number of seconds >= 0", optarg);
			cfg.state_every = every;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	if (cfg.state_dir && algo != DIST_NONE)
		return bad_usage(
		    "--state %s: a training state is one process's, not of --dist ranks",
		    cfg.state_dir);
	if (!train_path || !test_path || !out) {
		usage(stderr);
		return EXIT_USAGE;
	}
	nn_cpu_set_threads((int)threads);
	if (set_precision(cfg.be, &precision) < 0)
		return EXIT_USAGE;

	struct error err;
	struct dataset train, test;
	int rc;
	if ((rc = dataset_open(&train, train_path, 0, &err)) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		return rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
	}
	if ((rc = dataset_open(&test, test_path, 0, &err)) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		dataset_close(&train);
		return rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
	}
	/* empty shards, shards that do not match, a batch larger than the
	 * training set: bad input, said before anything is built */
	if (nn_train_check_inputs(&cfg, &train, &test, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		dataset_close(&train), dataset_close(&test);
		return EXIT_USAGE;
	}
	/* a bad spec is bad input: check it before creating anything */
	struct nn_net net;
	if (nn_model_build(&net, cfg.be, cfg.arch, (int)train.shape.channels, (int)train.shape.height,
			   (int)train.shape.width, (int)train.shape.num_classes, cfg.seed, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		dataset_close(&train), dataset_close(&test);
		return EXIT_USAGE;
	}
	char summary[512];
	nn_model_summary(&net, summary, sizeof(summary));
	nn_net_release(&net);
	/* Data-parallel: join the ranks once the input is known good (a bad
	 * input is exit 2 on every rank alike); rank 0 reports and writes. */
	struct dist dist = {.size = 1};
	struct dist_train dt = {0};
	struct nn_train_sync sync;
	if (algo != DIST_NONE) {
		if (dist_init(&dist, algo, &err) < 0) {
			fprintf(stderr, "%s: --dist %s: %s\n", prog, dist_algo_name(algo), err.msg);
			dataset_close(&train), dataset_close(&test);
			return 1;
		}
		dist_train_hooks(&dt, &dist, &sync);
		cfg.sync = &sync;
		/* a batch larger than a rank's part: known once the ranks are,
		 * the same on every rank (bad input, exit 2 on each) */
		if (nn_train_check_inputs(&cfg, &train, &test, &err) < 0) {
			if (dist.rank == 0)
				fprintf(stderr, "%s: %s\n", prog, err.msg);
			dist_release(&dist);
			dataset_close(&train), dataset_close(&test);
			return EXIT_USAGE;
		}
	}
	int rank = dist.rank;
	if (rank == 0)
		fprintf(stderr, "%s\n", summary);
	if (rank == 0 && algo != DIST_NONE)
		fprintf(stderr, "%s over %d ranks: each takes 1/%d of every epoch, batch %d\n",
			dist_algo_name(algo), dist.size, dist.size, cfg.batch);
	if (rank == 0 && fs_mkdir_p(out, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		dist_abort(&dist, 1);
		dataset_close(&train), dataset_close(&test);
		return 1;
	}
	double load[3] = {0, 0, 0};
	if (getloadavg(load, 3) < 0)
		load[0] = -1;

	struct ui ui = {.epochs = cfg.epochs};
	if (rank == 0) {
		cfg.on_batch = on_batch;
		cfg.on_epoch = on_epoch;
		cfg.ctx = &ui;
	}
	struct nn_train_result res;
	double t0 = clock_now();
	rc = nn_train_classifier(&cfg, &train, &test, &net, &res, &err);
	double wall = clock_now() - t0;
	if (ui.per_epoch)
		progress_finish(&ui.p);
	int status = 0;
	if (rc < 0) {
		if (dist.size > 1)
			fprintf(stderr, "%s: rank %d of %d: %s\n", prog, rank, dist.size, err.msg);
		else
			fprintf(stderr, "%s: %s\n", prog, err.msg);
		status = rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
		dist_abort(&dist, status); /* the other ranks would wait for this one */
		goto out;
	}
	struct dist_totals tot; /* all ranks' images over the slowest one's time */
	if (dist_train_totals(&dist, res.images_per_second, res.train_seconds, &tot, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		dist_abort(&dist, 1);
		status = 1;
		goto out;
	}
	if (rank != 0)
		goto out;
	res.images_per_second = tot.rate;
	char path[4096];
	snprintf(path, sizeof(path), "%s/model.ckpt", out);
	if (nn_ckpt_save(&net, path, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		status = 1;
		goto out;
	}
	json_t *m = json_object();
	json_object_set_new(m, "test_accuracy", json_real(res.test_accuracy));
	json_object_set_new(m, "per_class_accuracy", json_doubles(res.class_accuracy, res.classes));
	json_t *losses = json_array();
	for (int e = 0; e < res.epochs; e++)
		json_array_append_new(losses, json_real(res.epoch_loss[e]));
	json_object_set_new(m, "loss_per_epoch", losses);
	json_object_set_new(m, "test_accuracy_per_epoch", json_doubles(res.epoch_accuracy, res.epochs));
	json_object_set_new(m, "wall_time_s", json_real(wall));
	/* CPU time of all threads: on a shared machine, wall time depends on the
	 * other jobs, CPU time much less */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		json_object_set_new(m, "cpu_time_s",
				    json_real(ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
					      ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6));
	json_object_set_new(m, "train_time_s", json_real(res.train_seconds));
	json_object_set_new(m, "eval_time_s", json_real(res.eval_seconds));
	json_object_set_new(m, "train_images_per_s", json_real(res.images_per_second));
	json_object_set_new(m, "arch", json_string(net.arch));
	json_object_set_new(m, "params", json_integer(res.params));
	json_object_set_new(m, "gflops_per_image", json_real(res.flops_per_image / 1e9));
	json_object_set_new(m, "epochs", json_integer(cfg.epochs));
	json_object_set_new(m, "batch", json_integer(cfg.batch));
	json_object_set_new(m, "lr", json_real(cfg.lr));
	json_object_set_new(m, "seed", json_integer((json_int_t)cfg.seed));
	json_object_set_new(m, "device", json_string(cfg.be->name));
	json_object_set_new(m, "precision", json_string(precision));
	json_object_set_new(m, "train_records", json_integer((json_int_t)train.count));
	json_object_set_new(m, "test_records", json_integer((json_int_t)test.count));
	json_object_set_new(m, "load_average_at_start", json_real(load[0]));
	json_object_set_new(m, "resumed_from_epoch", json_integer(res.resumed_from));
	json_object_set_new(m, "resumed_batches", json_integer((json_int_t)res.resumed_batches));
	if (algo != DIST_NONE) /* how the ranks trained together */
		json_object_set_new(m, "dist", dist_train_json(&dist, &tot));
#ifdef CAIRN_CUDA
	if (cfg.be->device == NN_DEV_CUDA) { /* how the steps ran, what the device held */
		struct nn_cuda_graph_stats gs;
		struct nn_cuda_mem_stats ms;
		nn_cuda_get_graph_stats(&gs);
		nn_cuda_get_mem_stats(&ms);
		json_t *c = json_object();
		json_object_set_new(c, "device_index", json_integer(nn_cuda_device()));
		json_object_set_new(c, "steps", json_integer((json_int_t)gs.steps));
		json_object_set_new(c, "graph_captures", json_integer((json_int_t)gs.captures));
		json_object_set_new(c, "graph_replays", json_integer((json_int_t)gs.replays));
		json_object_set_new(c, "eager_steps", json_integer((json_int_t)gs.eager));
		json_object_set_new(c, "graph_failures", json_integer((json_int_t)gs.failures));
		json_object_set_new(c, "graph_nodes", json_integer((json_int_t)gs.nodes));
		json_object_set_new(c, "device_peak_mib", json_real(ms.peak_in_use / 1048576.0));
		/* the activation arena's device memory: about half of it in bf16 */
		json_object_set_new(c, "activation_arena_mib", json_real(net.act.size / 1048576.0));
		json_object_set_new(c, "activation_backed_mib", json_real(ms.act_backed / 1048576.0));
		json_object_set_new(c, "cuda_mallocs", json_integer((json_int_t)ms.cuda_mallocs));
		json_object_set_new(m, "cuda", c);
	}
#endif
	snprintf(path, sizeof(path), "%s/metrics.json", out);
	if (jsonio_write_atomic(path, m, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		status = 1;
	}
	json_decref(m);
	if (!status) {
		fprintf(stderr, "test accuracy %.4f, %.0f images/s, wall %.1f s -> %s\n",
			res.test_accuracy, res.images_per_second, wall, out);
		if (res.resumed_from || res.resumed_batches) {
			char where[128];
			nn_trainstate_where(where, sizeof(where), res.resumed_from,
					    res.resumed_batches, cfg.epochs);
			fprintf(stderr, "(resumed %s from %s)\n", where, cfg.state_dir);
		}
	}
out:
	nn_train_result_release(&res);
	nn_net_release(&net);
	dist_train_release(&dt);
	dist_release(&dist);
	dataset_close(&train), dataset_close(&test);
	return status;
}
