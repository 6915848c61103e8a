/* cairn-predict: run a trained segmenter (a cairn-train-unet checkpoint) on
 * every tile of a mask shard and write the predicted classes as a mask shard
 * with the input's tiles, keys and order (nn/segment.h does the work), for
 * cairn-tileset unpack to put back on the map. Exit 0 ok, 1 failure of the
 * work, 2 bad usage or input. */
#include <inttypes.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/cmd.h"
#include "core/error.h"
#include "core/parse.h"
#include "core/progress.h"
#include "nn/ckpt.h"
#include "nn/dataset.h"
#include "nn/model.h"
#include "nn/segment.h"
#include "nn/stageopt.h"

#define EXIT_USAGE 2

static const char *prog = "cairn-predict";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s --model CKPT --in SHARD --out SHARD [options]\n"
		"\n"
		"Predict a class for every pixel of every tile of a mask shard with a segmenter\n"
		"checkpoint (cairn-train-unet's model.ckpt) and write them as a mask shard: the\n"
		"input's keys and order, the predicted classes as masks, no pixels (0 channels:\n"
		"a quarter of the bytes of RGB tiles and masks) unless --with-pixels. The input's "
		"masks\n"
		"are not used (they may be all 255, no label); its tiles must be the size and\n"
		"channels the model was trained on, and its class count the model's.\n"
		"\n"
		"options:\n"
		"  --batch N       tiles per forward pass, 1..65536 (default 8)\n"
		"  --with-pixels   keep the input's pixels beside the predicted masks (a shard\n"
		"                  to train on again, e.g. with the predictions as labels)\n"
		"  --threads N     CPU threads, 1..1024 (default: OMP_NUM_THREADS,\n"
		"                  else the CPUs it may run on)\n"
		"  --device D      cpu (default), cpu-ref, cuda, auto (as cairn-train-unet)\n"
		"  --precision P   cuda math: tf32 (default), fp32, bf16; cpu: fp32 only\n"
		"  --help          this text\n"
		"\n"
		"example:\n"
		"  cairn-train-unet --train train.ds --val val.ds --out unet1\n"
		"  %s --model unet1/model.ckpt --in tiles.ds --out pred.ds\n"
		"  cairn-tileset unpack --in pred.ds --out pred --like scene/imagery\n"
		"\n"
		"exit status: 0 ok, 1 the work failed, 2 bad usage or bad input.\n",
		prog, prog);
}

static int bad_usage(const char *fmt, const char *arg)
{
	return cmd_bad_usage(prog, NULL, fmt, arg);
}

/* The progress bar, and when the first batch ended: it carries the setup
 * (on a GPU the algorithm searches, a second or so), which a small input's
 * rate would hide the steady one behind. */
struct ui {
	struct progress p;
	double t0, first;
};

static void on_batch(void *ctx, int epoch, uint64_t batch, uint64_t batches, float loss)
{
	struct ui *u = ctx;
	(void)epoch, (void)loss;
	if (batch == 1) {
		u->first = clock_now() - u->t0;
		progress_init(&u->p, "predict", "batch", batches);
	}
	progress_update(&u->p, batch);
}

int main(int argc, char **argv)
{
	nn_cpu_blas_check(argv);
	static const struct option longopts[] = {
	    {"model", required_argument, 0, 'm'},  {"in", required_argument, 0, 'i'},
	    {"out", required_argument, 0, 'o'},	   {"batch", required_argument, 0, 'b'},
	    {"with-pixels", no_argument, 0, 'P'},  NN_STAGE_DEVICE_OPTIONS,
	    {"help", no_argument, 0, 'h'},	   {0, 0, 0, 0}};
	const char *model = NULL, *in_path = NULL, *out = NULL;
	struct nn_stage_opts opts;
	nn_stage_opts_init(&opts);
	struct error err;
	long v;
	int batch = 8, pixels = 0, c, r;
	while ((c = cmd_getopt(prog, argc, argv, "h", longopts)) != -1) {
		if ((r = nn_stage_opt(&opts, c, optarg, &err)) != 0) {
			if (r < 0)
				return bad_usage("%s", err.msg);
			continue;
		}
		switch (c) {
		case 'm':
			model = optarg;
			break;
		case 'i':
			in_path = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'P':
			pixels = 1;
			break;
		case 'b':
			if (parse_long(optarg, 1, 65536, &v) < 0)
				return bad_usage("--batch: '%s' is not an integer in 1..65536",
						 optarg);
			batch = (int)v;
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
	if (!model || !in_path || !out) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (nn_stage_setup(&opts, &err) < 0)
		return bad_usage("%s", err.msg);
	const struct nn_backend *be = opts.be;

	struct dataset in;
	int rc = dataset_open(&in, in_path, 0, &err);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		return rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
	}
	/* a checkpoint that is missing, damaged or not a segmenter for these
	 * tiles is bad input: said before anything is written */
	struct nn_net net;
	memset(&net, 0, sizeof(net));
	int status = 0;
	if (nn_ckpt_open(&net, be, model, &err) < 0) {
		fprintf(stderr,
			"%s: cannot use model %s: %s (give the model.ckpt that cairn-train-unet "
			"wrote)\n",
			prog, model, err.msg);
		status = EXIT_USAGE;
		goto out;
	}
	char what[4200];
	snprintf(what, sizeof(what), "model %s", model);
	if (nn_segment_check_net(&net, what, &in, &err) < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		status = EXIT_USAGE;
		goto out;
	}
	struct ui ui;
	memset(&ui, 0, sizeof(ui));
	ui.t0 = clock_now();
	rc = nn_predict_segmenter(&net, &in, out, batch, pixels, on_batch, &ui, &err);
	double wall = clock_now() - ui.t0;
	if (ui.p.label)
		progress_finish(&ui.p);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		status = rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
		goto out;
	}
	char after[96] = "";
	uint64_t rest = in.count > (uint64_t)batch ? in.count - (uint64_t)batch : 0;
	if (rest && wall > ui.first)
		snprintf(after, sizeof(after), "; the first batch %.2f s, then %.1f tiles/s",
			 ui.first, rest / (wall - ui.first));
	fprintf(stderr, "%s: %" PRIu64 " tiles in %.2f s (%.1f tiles/s%s, %s) -> %s\n", prog,
		in.count, wall, wall > 0 ? in.count / wall : 0, after, be->name, out);
out:
	nn_net_release(&net);
	dataset_close(&in);
	return status;
}
