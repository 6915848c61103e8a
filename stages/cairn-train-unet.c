/* cairn-train-unet: train a U-Net (a segmenter: one class per pixel) on a
 * mask shard, score it on a validation shard after every epoch (nn/segment.h
 * does the work). Writes DIR/model.ckpt and DIR/metrics.json. Exit 0 ok, 1
 * failure of the work, 2 bad usage or input. */
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
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
#include "nn/segment.h"
#include "nn/stageopt.h"

#define EXIT_USAGE 2
#define MAX_WEIGHTS 255

static const char *prog = "cairn-train-unet";

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: %s --train SHARD [--val SHARD] --out DIR [options]\n"
	    "\n"
	    "Train a segmenter (a U-Net: one class per pixel) on a mask shard (cairn-tileset\n"
	    "pack), score it on the validation shard after every epoch, write DIR/model.ckpt\n"
	    "and DIR/metrics.json (loss per epoch, pixel accuracy, IoU per class, mean IoU\n"
	    "over the classes other than 0 (background), wall time, tiles/s).\n"
	    "\n"
	    "options:\n"
	    "  --arch SPEC          model spec (default \"%s\"; see docs/nn.md);\n"
	    "                       tiles must be multiples of 2^depth on each side\n"
	    "  --epochs N           passes over the training shard, 1..100000 (default 30)\n"
	    "  --batch N            tiles per step, 1..65536 (default 8)\n"
	    "  --lr X               peak learning rate of SGD + Nesterov, cosine decay (default "
	    "0.05)\n"
	    "  --wd X               weight decay (default 5e-4)\n"
	    "  --seed N             weight init, shuffling, augmentation; 0..2147483647 (default "
	    "1)\n"
	    "  --class-weights W    none (default), auto (median-frequency balancing from the\n"
	    "                       training masks), or one weight per class: 0.5,2,2\n"
	    "  --no-augment         no random rotations and mirrors of the tiles\n"
	    "  --threads N          CPU threads, 1..1024 (default: OMP_NUM_THREADS,\n"
	    "                       else the CPUs it may run on)\n"
	    "  --device D           cpu (default), cpu-ref (slow reference loops), cuda (a build\n"
	    "                       with make CUDA=1 and a GPU), auto (cuda if a GPU is visible)\n"
	    "  --precision P        cuda math: tf32 (default), fp32, bf16 (docs/cuda.md);\n"
	    "                       the cpu devices compute in fp32 only\n"
	    "  --dist A             data-parallel over the MPI ranks it is started with\n"
	    "                       (mpirun -np N, srun; `ranks = N` in a pipeline): none\n"
	    "                       (default), allreduce or adpsgd (docs/dist.md); rank 0\n"
	    "                       validates and writes DIR\n"
	    "  --dist-batches B     shared (adpsgd's default: the ranks take every epoch's\n"
	    "                       batches from one counter as they go, a straggler fewer)\n"
	    "                       or fixed (allreduce's: rank r of N takes part r)\n"
	    "  --state DIR          resumable: the training's state goes to DIR/train.state\n"
	    "                       after every epoch and every --state-every seconds; a new\n"
	    "                       start with the same DIR and settings goes on where it\n"
	    "                       stopped (a time limit, a preemption, kill -9), to the\n"
	    "                       same model as one never stopped (docs/nn.md); not with\n"
	    "                       --dist. In a pipeline: --state \"$CAIRN_STATE\"\n"
	    "  --state-every S      seconds between states within an epoch (default 600;\n"
	    "                       0: at epoch ends only)\n"
	    "  --help               this text\n"
	    "\n"
	    "example:\n"
	    "  cairn-tileset pack ... --out train.ds; cairn-tileset pack ... --out val.ds\n"
	    "  %s --train train.ds --val val.ds --epochs 30 --class-weights auto --out unet1\n"
	    "  cairn-predict --model unet1/model.ckpt --in val.ds --out pred.ds\n"
	    "\n"
	    "exit status: 0 ok, 1 the work failed, 2 bad usage or bad input.\n",
	    prog, NN_SEGMENT_ARCH, prog);
}

static int bad_usage(const char *fmt, const char *arg)
{
	return cmd_bad_usage(prog, NULL, fmt, arg);
}

/* --class-weights: none, auto, or a comma-separated list of numbers >= 0. */
static int parse_weights(const char *s, struct nn_segment_config *cfg, float *w)
{
	if (!strcmp(s, "none")) {
		cfg->weighting = NN_WEIGHTS_NONE;
		return 0;
	}
	if (!strcmp(s, "auto")) {
		cfg->weighting = NN_WEIGHTS_AUTO;
		return 0;
	}
	int n = 0;
	const char *p = s;
	for (;;) {
		char *end;
		errno = 0;
		double v = strtod(p, &end);
		if (end == p || errno || !(v >= 0) || v > FLT_MAX || n == MAX_WEIGHTS ||
		    (*end && *end != ','))
			return -1;
		w[n++] = (float)v;
		if (!*end)
			break;
		p = end + 1;
	}
	cfg->weighting = NN_WEIGHTS_GIVEN;
	cfg->weights = w;
	cfg->nweights = n;
	return 0;
}

static void on_epoch(void *ctx, int epoch, float loss, const struct nn_segment_metrics *val,
		     double seconds)
{
	dist_stage_epoch_head(ctx, epoch, loss);
	if (val) {
		fprintf(stderr, ", val pixel accuracy %.4f, mean IoU %.4f (IoU per class",
			val->pixel_accuracy, val->mean_iou);
		for (int k = 0; k < val->classes; k++)
			fprintf(stderr, " %.3f", val->iou[k]);
		fprintf(stderr, ")");
	}
	dist_stage_epoch_tail(seconds);
}

/* A number, or null for NaN (an IoU without pixels): JSON has no NaN. */
static json_t *json_num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *json_nums(const double *v, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_num(v[i]));
	return a;
}

/* The segmenter's own fields; dist_stage_save adds those of every
 * training stage. */
static json_t *metrics_json(const struct nn_segment_config *cfg,
			    const struct nn_segment_result *res, const struct nn_net *net,
			    const struct dataset *train, const struct dataset *val)
{
	int k = res->classes;
	json_t *m = json_object();
	if (val) {
		json_object_set_new(m, "val_pixel_accuracy", json_num(res->val.pixel_accuracy));
		json_object_set_new(m, "val_mean_iou", json_num(res->val.mean_iou));
		json_object_set_new(m, "val_iou", json_nums(res->val.iou, k));
		json_t *conf = json_array();
		for (int t = 0; t < k; t++) {
			json_t *row = json_array();
			for (int p = 0; p < k; p++)
				json_array_append_new(
				    row, json_integer(
					     (json_int_t)res->val.confusion[(size_t)t * k + p]));
			json_array_append_new(conf, row);
		}
		json_object_set_new(m, "val_confusion", conf);
		json_object_set_new(m, "val_pixels", json_integer((json_int_t)res->val.pixels));
	}
	json_t *epochs = json_array();
	for (int e = 0; e < res->epochs; e++) {
		json_t *ep = json_object();
		json_object_set_new(ep, "epoch", json_integer(e + 1));
		json_object_set_new(ep, "train_loss", json_real(res->epoch_loss[e]));
		json_object_set_new(ep, "wall_time_s", json_real(res->epoch_seconds[e]));
		if (val) {
			json_object_set_new(ep, "val_pixel_accuracy",
					    json_num(res->epoch_pixel_accuracy[e]));
			json_object_set_new(ep, "val_mean_iou", json_num(res->epoch_mean_iou[e]));
			json_object_set_new(ep, "val_iou",
					    json_nums(res->epoch_iou + (size_t)e * k, k));
		}
		json_array_append_new(epochs, ep);
	}
	json_object_set_new(m, "per_epoch", epochs);
	json_t *losses = json_array();
	for (int e = 0; e < res->epochs; e++)
		json_array_append_new(losses, json_real(res->epoch_loss[e]));
	json_object_set_new(m, "loss_per_epoch", losses);
	json_t *cw = json_array();
	for (int c = 0; c < k; c++)
		json_array_append_new(cw, json_real(res->class_weights[c]));
	json_object_set_new(m, "class_weights", cw);
	static const char *const weighting[] = {"none", "auto", "given"};
	json_object_set_new(m, "class_weighting", json_string(weighting[cfg->weighting]));
	json_object_set_new(m, "train_time_s", json_real(res->fit.train_seconds));
	json_object_set_new(m, "eval_time_s", json_real(res->fit.eval_seconds));
	json_object_set_new(m, "train_tiles_per_s", json_real(res->fit.samples_per_second));
	json_object_set_new(m, "arch", json_string(net->arch));
	json_object_set_new(m, "params", json_integer(res->params));
	json_object_set_new(m, "gflops_per_tile", json_real(res->flops_per_tile / 1e9));
	json_object_set_new(m, "classes", json_integer(k));
	json_object_set_new(m, "tile",
			    json_pack("[iii]", (int)train->shape.channels, (int)train->shape.height,
				      (int)train->shape.width));
	json_object_set_new(m, "epochs", json_integer(cfg->fit.epochs));
	json_object_set_new(m, "batch", json_integer(cfg->fit.batch));
	json_object_set_new(m, "lr", json_real(cfg->fit.lr));
	json_object_set_new(m, "wd", json_real(cfg->fit.wd));
	json_object_set_new(m, "augment", json_boolean(cfg->augment));
	json_object_set_new(m, "seed", json_integer((json_int_t)cfg->fit.seed));
	json_object_set_new(m, "train_records", json_integer((json_int_t)train->count));
	json_object_set_new(m, "val_records", json_integer(val ? (json_int_t)val->count : 0));
	json_object_set_new(m, "resumed_from_epoch", json_integer(res->fit.resumed_from));
	json_object_set_new(m, "resumed_batches", json_integer((json_int_t)res->fit.resumed_batches));
	return m;
}

static int open_shard(struct dataset *ds, const char *path)
{
	struct error err;
	int rc = dataset_open(ds, path, 0, &err);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		return rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	nn_cpu_blas_check(argv);
	static const struct option longopts[] = {{"train", required_argument, 0, 't'},
						 {"val", required_argument, 0, 'V'},
						 {"out", required_argument, 0, 'o'},
						 {"arch", required_argument, 0, 'a'},
						 {"no-augment", no_argument, 0, 'A'},
						 {"class-weights", required_argument, 0, 'W'},
						 DIST_STAGE_OPTIONS,
						 NN_STAGE_TRAIN_OPTIONS,
						 NN_STAGE_DEVICE_OPTIONS,
						 NN_STAGE_STATE_OPTIONS,
						 {"help", no_argument, 0, 'h'},
						 {0, 0, 0, 0}};
	struct nn_segment_config cfg;
	nn_segment_defaults(&cfg);
	static float weights[MAX_WEIGHTS];
	struct nn_stage_opts opts;
	nn_stage_opts_init(&opts);
	opts.fit = &cfg.fit;
	const char *train_path = NULL, *val_path = NULL, *out = NULL;
	struct error err;
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
		case 't':
			train_path = optarg;
			break;
		case 'V':
			val_path = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'a':
			cfg.fit.arch = optarg;
			break;
		case 'A':
			cfg.augment = 0;
			break;
		case 'W':
			if (parse_weights(optarg, &cfg, weights) < 0)
				return bad_usage(
				    "--class-weights: '%s' is not none, auto, or a list of "
				    "numbers >= 0 like 0.5,2,2 (one per class)",
				    optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
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
	if (!train_path || !out) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (nn_stage_setup(&opts, &err) < 0)
		return bad_usage("%s", err.msg);

	struct dataset train, val;
	int rc;
	if ((rc = open_shard(&train, train_path)) != 0)
		return rc;
	if (val_path && (rc = open_shard(&val, val_path)) != 0) {
		dataset_close(&train);
		return rc;
	}
	const struct dataset *valp = val_path ? &val : NULL;
	int status = 0;
	struct nn_net net;
	memset(&net, 0, sizeof(net));
	struct nn_segment_result res;
	memset(&res, 0, sizeof(res));
	struct dist_stage st;
	dist_stage_init(&st, prog, &opts, &dist);
	/* bad input, said before anything is built or written: a class shard,
	 * an empty one, shards that do not match, tiles the U-Net cannot halve
	 * depth times, class weights that do not fit, a bad spec */
	float wcheck[MAX_WEIGHTS];
	if (nn_segment_check_inputs(&cfg, &train, valp, &err) < 0 ||
	    nn_segment_class_weights(&cfg, &train, wcheck, &err) < 0 ||
	    nn_model_build(&net, cfg.fit.be, cfg.fit.arch, (int)train.shape.channels,
			   (int)train.shape.height, (int)train.shape.width,
			   (int)train.shape.num_classes, cfg.fit.seed, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		status = EXIT_USAGE;
		goto out;
	}
	char summary[512];
	nn_model_summary(&net, summary, sizeof(summary));
	nn_net_release(&net);
	/* Data-parallel: join the ranks once the input is known good; rank 0
	 * reports and writes (docs/dist.md). */
	if (dist_stage_join(&st) < 0) {
		status = 1;
		goto out;
	}
	if (dist.algo != DIST_NONE)
		cfg.fit.sync = &st.sync;
	if ((status = dist_stage_begin(&st, summary, cfg.fit.batch, cfg.fit.epochs, out)) != 0)
		goto out;
	if (st.rank == 0) {
		cfg.fit.on_batch = dist_stage_on_batch;
		cfg.on_epoch = on_epoch;
		cfg.fit.ctx = &st;
	}
	rc = nn_train_segmenter(&cfg, &train, valp, &net, &res, &err);
	if (rc < 0) {
		status = dist_stage_failed(&st, rc, &err);
		goto out;
	}
	/* all ranks' tiles over the slowest one's time */
	if ((status = dist_stage_totals(&st, res.fit.samples_per_second, res.fit.train_seconds)) != 0 ||
	    st.rank != 0)
		goto out;
	res.fit.samples_per_second = st.tot.rate;
	if ((status = dist_stage_save(&st, &net, metrics_json(&cfg, &res, &net, &train, valp))) != 0)
		goto out;
	if (valp)
		fprintf(stderr, "val pixel accuracy %.4f, mean IoU %.4f, ", res.val.pixel_accuracy,
			res.val.mean_iou);
	fprintf(stderr, "%.1f tiles/s, wall %.1f s -> %s\n", res.fit.samples_per_second,
		dist_stage_wall(&st), out);
	dist_stage_resumed(&st, res.fit.resumed_from, res.fit.resumed_batches);
out:
	nn_segment_result_release(&res);
	nn_net_release(&net);
	dist_stage_release(&st, status);
	dataset_close(&train);
	if (valp)
		dataset_close(&val);
	return status;
}
