/* cairn-train-classifier: train an image classifier on a dataset shard and
 * test it on another (nn/train.h does the work). Writes DIR/metrics.json and
 * DIR/model.ckpt. Exit 0 ok, 1 failure of the work, 2 bad usage or input. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cmd.h"
#include "core/error.h"
#include "core/parse.h"
#include "dist/dist.h"
#include "dist/stage.h"
#include "nn/dataset.h"
#include "nn/model.h"
#include "nn/stageopt.h"
#include "nn/train.h"

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
	    "  --threads N     CPU threads, 1..1024 (default: OMP_NUM_THREADS,\n"
	    "                  else the CPUs it may run on)\n"
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
	    "  --dist-batches B\n"
	    "                  shared (adpsgd's default): the ranks take every epoch's\n"
	    "                  batches from one counter as they go, so a straggler trains\n"
	    "                  fewer and nobody waits for it; fixed (allreduce's, which\n"
	    "                  needs it): rank r of N takes part r of every epoch\n"
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
	return cmd_bad_usage(prog, NULL, fmt, arg);
}

static void on_epoch(void *ctx, int epoch, float loss, double acc, double seconds)
{
	dist_stage_epoch_head(ctx, epoch, loss);
	fprintf(stderr, ", test accuracy %.4f", acc);
	dist_stage_epoch_tail(seconds);
}

static json_t *json_doubles(const double *v, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_real(v[i]));
	return a;
}

int main(int argc, char **argv)
{
	nn_cpu_blas_check(argv);
	static const struct option longopts[] = {{"train", required_argument, 0, 't'},
						 {"test", required_argument, 0, 'T'},
						 {"out", required_argument, 0, 'o'},
						 {"arch", required_argument, 0, 'a'},
						 {"no-augment", no_argument, 0, 'A'},
						 {"pad", required_argument, 0, 'P'},
						 DIST_STAGE_OPTIONS,
						 NN_STAGE_TRAIN_OPTIONS,
						 NN_STAGE_DEVICE_OPTIONS,
						 NN_STAGE_STATE_OPTIONS,
						 {"help", no_argument, 0, 'h'},
						 {0, 0, 0, 0}};
	struct nn_train_config cfg;
	nn_train_defaults(&cfg);
	struct nn_stage_opts opts;
	nn_stage_opts_init(&opts);
	opts.fit = &cfg.fit;
	const char *train_path = NULL, *test_path = NULL, *out = NULL;
	struct error err;
	long v;
	int c, r;
	struct dist_opts dist = {DIST_NONE, DIST_BATCHES_DEFAULT};
	while ((c = cmd_getopt(prog, argc, argv, "h", longopts)) != -1) {
		if ((r = nn_stage_opt(&opts, c, optarg, &err)) != 0 ||
		    (r = dist_stage_opt(&dist, c, optarg, &err)) != 0) {
			if (r < 0)
				return bad_usage("%s", err.msg);
			continue;
		}
		switch (c) {
		case 't': train_path = optarg; break;
		case 'T': test_path = optarg; break;
		case 'o': out = optarg; break;
		case 'a': cfg.fit.arch = optarg; break;
		case 'A': cfg.flip = 0, cfg.pad = 0; break;
		case 'P':
			if (parse_long(optarg, 0, 64, &v) < 0)
				return bad_usage("--pad: '%s' is not an integer in [0, 64]", optarg);
			cfg.pad = (int)v;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	if (dist_stage_opts_check(&dist, &err) < 0)
		return bad_usage("%s", err.msg);
	if (opts.state_dir && dist.algo != DIST_NONE)
		return bad_usage(
		    "--state %s: a training state is one process's, not of --dist ranks",
		    opts.state_dir);
	if (!train_path || !test_path || !out) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (nn_stage_setup(&opts, &err) < 0)
		return bad_usage("%s", err.msg);

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
	if (nn_model_build(&net, cfg.fit.be, cfg.fit.arch, (int)train.shape.channels,
			   (int)train.shape.height, (int)train.shape.width,
			   (int)train.shape.num_classes, cfg.fit.seed, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		dataset_close(&train), dataset_close(&test);
		return EXIT_USAGE;
	}
	char summary[512];
	nn_model_summary(&net, summary, sizeof(summary));
	nn_net_release(&net);
	/* Data-parallel: join the ranks once the input is known good (a bad
	 * input is exit 2 on every rank alike); rank 0 reports and writes. */
	struct dist_stage st;
	struct nn_train_result res;
	memset(&res, 0, sizeof(res));
	int status = 0;
	dist_stage_init(&st, prog, &opts, &dist);
	if (dist_stage_join(&st) < 0) {
		status = 1;
		goto out;
	}
	if (dist.algo != DIST_NONE) {
		cfg.fit.sync = &st.sync;
		/* a batch larger than a rank's part: known once the ranks are,
		 * the same on every rank (bad input, exit 2 on each) */
		if (nn_train_check_inputs(&cfg, &train, &test, &err) < 0) {
			if (st.rank == 0)
				fprintf(stderr, "%s: %s\n", prog, err.msg);
			status = EXIT_USAGE;
			goto out;
		}
	}
	if ((status = dist_stage_begin(&st, summary, cfg.fit.batch, cfg.fit.epochs, out)) != 0)
		goto out;
	if (st.rank == 0) {
		cfg.fit.on_batch = dist_stage_on_batch;
		cfg.on_epoch = on_epoch;
		cfg.fit.ctx = &st;
	}
	rc = nn_train_classifier(&cfg, &train, &test, &net, &res, &err);
	if (rc < 0) {
		status = dist_stage_failed(&st, rc, &err);
		goto out;
	}
	/* all ranks' images over the slowest one's time */
	if ((status = dist_stage_totals(&st, res.fit.samples_per_second, res.fit.train_seconds)) != 0 ||
	    st.rank != 0)
		goto out;
	res.fit.samples_per_second = st.tot.rate;
	json_t *m = json_object();
	json_object_set_new(m, "test_accuracy", json_real(res.test_accuracy));
	json_object_set_new(m, "per_class_accuracy", json_doubles(res.class_accuracy, res.classes));
	json_t *losses = json_array();
	for (int e = 0; e < res.epochs; e++)
		json_array_append_new(losses, json_real(res.epoch_loss[e]));
	json_object_set_new(m, "loss_per_epoch", losses);
	json_object_set_new(m, "test_accuracy_per_epoch", json_doubles(res.epoch_accuracy, res.epochs));
	json_object_set_new(m, "train_time_s", json_real(res.fit.train_seconds));
	json_object_set_new(m, "eval_time_s", json_real(res.fit.eval_seconds));
	json_object_set_new(m, "train_images_per_s", json_real(res.fit.samples_per_second));
	json_object_set_new(m, "arch", json_string(net.arch));
	json_object_set_new(m, "params", json_integer(res.params));
	json_object_set_new(m, "gflops_per_image", json_real(res.flops_per_image / 1e9));
	json_object_set_new(m, "epochs", json_integer(cfg.fit.epochs));
	json_object_set_new(m, "batch", json_integer(cfg.fit.batch));
	json_object_set_new(m, "lr", json_real(cfg.fit.lr));
	json_object_set_new(m, "seed", json_integer((json_int_t)cfg.fit.seed));
	json_object_set_new(m, "train_records", json_integer((json_int_t)train.count));
	json_object_set_new(m, "test_records", json_integer((json_int_t)test.count));
	json_object_set_new(m, "resumed_from_epoch", json_integer(res.fit.resumed_from));
	json_object_set_new(m, "resumed_batches", json_integer((json_int_t)res.fit.resumed_batches));
	if ((status = dist_stage_save(&st, &net, m)) != 0)
		goto out;
	fprintf(stderr, "test accuracy %.4f, %.0f images/s, wall %.1f s -> %s\n", res.test_accuracy,
		res.fit.samples_per_second, dist_stage_wall(&st), out);
	dist_stage_resumed(&st, res.fit.resumed_from, res.fit.resumed_batches);
out:
	nn_train_result_release(&res);
	nn_net_release(&net);
	dist_stage_release(&st, status);
	dataset_close(&train), dataset_close(&test);
	return status;
}
