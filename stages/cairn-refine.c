/* cairn-refine: noisy map labels made more complete with a CycleGAN
 * (nn/refine.h does the work; docs/refine.md is the guide).
 *   train  a CycleGAN between the imagery and the maps of a mask shard
 *   apply  its imagery -> map generator on every tile, fused with the map
 * Exit 0 ok, 1 failure of the work, 2 bad usage or bad input. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/cmd.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/parse.h"
#include "core/progress.h"
#include "nn/ckpt.h"
#include "nn/model.h"
#include "nn/refine.h"
#include "nn/stageopt.h"

#define EXIT_USAGE 2

static const char *prog = "cairn-refine";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s COMMAND [options]\n"
		"\n"
		"Makes noisy map labels more complete with a CycleGAN (Zhang et al., KDD 2020):\n"
		"'train' learns to translate imagery into maps and back from unpaired crops of\n"
		"a mask shard (the imagery of one tile, the map of another), so the map's\n"
		"misplacements teach it nothing wrong and the cycle makes it draw every road and\n"
		"house it sees; 'apply' draws a map for every tile and adds to the tile's own\n"
		"map what it drew where the map has background.\n"
		"\n"
		"commands:\n"
		"  train --train SHARD --out DIR [--steps N] [--crop N] [--batch N] [--gen ARCH]\n"
		"        [--disc ARCH] [--lr LR] [--cycle W] [--feature-weight W] [--paired W]\n"
		"        [--seed N] [--threads N] [--device D] [--precision P]\n"
		"  apply --model CKPT --in SHARD --out SHARD [--mode add|replace]\n"
		"        [--threshold T] [--batch N] [--json FILE] [--threads N] [--device D]\n"
		"\n"
		"'%s COMMAND --help' describes each command.\n"
		"\n"
		"example:\n"
		"  cairn-tileset pack --imagery scene/imagery --labels map-labels --out tiles.ds\n"
		"  %s train --train tiles.ds --out gan --steps 2000\n"
		"  %s apply --model gan/map.ckpt --in tiles.ds --out refined.ds\n"
		"  cairn-train-unet --train refined.ds --out unet\n"
		"\n"
		"exit status: 0 ok, 1 the work failed, 2 bad usage or bad input.\n",
		prog, prog, prog, prog);
}

static int bad_usage(const char *cmd, const char *fmt, const char *arg)
{
	return cmd_bad_usage(prog, cmd, fmt, arg);
}

static int fail(int rc, const struct error *err)
{
	fprintf(stderr, "%s: %s\n", prog, err->msg);
	return rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
}

/* Options both commands take (--threads, --device, --precision; train also
 * --state, --state-every): 1 taken, 0 not one of them, -1 bad usage said. */
static int stage_opt(const char *cmd, int c, struct nn_stage_opts *o)
{
	struct error err;
	int r = nn_stage_opt(o, c, optarg, &err);
	if (r < 0)
		bad_usage(cmd, "%s", err.msg);
	return r;
}

static int stage_setup(const char *cmd, struct nn_stage_opts *o)
{
	struct error err;
	if (nn_stage_setup(o, &err) < 0)
		return bad_usage(cmd, "%s", err.msg), -1;
	return 0;
}

/* ---- train --------------------------------------------------------------- */

static void train_usage(FILE *f)
{
	fprintf(f,
		"usage: %s train --train SHARD --out DIR [options]\n"
		"\n"
		"Trains a CycleGAN between the imagery (domain A) and the maps (domain B: a\n"
		"plane per class) of a mask shard, on random crops (the imagery of one tile\n"
		"against the map of another, and with --paired its own map too), and writes\n"
		"DIR/map.ckpt (imagery -> map: what 'apply' uses), DIR/imagery.ckpt (map ->\n"
		"imagery) and DIR/metrics.json (the losses every 100 steps). Losses: LSGAN,\n"
		"cycle L1 times --cycle, the paired L1 times --paired; on the map side a pixel\n"
		"of a class other than 0 counts --feature-weight times; no identity loss\n"
		"(imagery and maps are not alike).\n"
		"\n"
		"options:\n"
		"  --steps N            training steps, 1..10^9 (default 2000)\n"
		"  --crop N             crops of N x N pixels (default 64; a multiple of 4 for\n"
		"                       the default generator, at most the tile size)\n"
		"  --batch N            crops per step, 1..1024 (default 1)\n"
		"  --gen ARCH           generator (default %s)\n"
		"  --disc ARCH          discriminator (default %s)\n"
		"  --lr LR              Adam learning rate (default 0.0002, beta1 0.5)\n"
		"  --cycle W            cycle loss weight (default 10)\n"
		"  --feature-weight W   map-side losses on features, background 1 (default 5)\n"
		"  --paired W           the imagery -> map L1 against the tile's own map at the\n"
		"                       same place (default 3; 0: the CycleGAN alone, unpaired)\n"
		"  --seed N             weights, crops and pairings (default 1)\n"
		"  --threads N          CPU threads, 1..1024 (default: OMP_NUM_THREADS,\n"
		"                       else the CPUs it may run on)\n"
		"  --device D           cpu (default), cpu-ref, cuda, auto\n"
		"  --precision P        cuda math: tf32 (default), fp32, bf16; cpu: fp32 only\n"
		"  --state DIR          resumable: every --state-every seconds (default 600) the\n"
		"                       training's state goes to DIR/train.state; a new start\n"
		"                       with the same DIR and settings goes on after its last\n"
		"                       step (docs/refine.md). In a pipeline: --state "
		"\"$CAIRN_STATE\"\n"
		"  --state-every S      seconds between states (0: none written)\n"
		"\n"
		"example:\n"
		"  %s train --train tiles.ds --out gan --steps 2000 --crop 64\n",
		prog, NN_REFINE_GEN, NN_REFINE_DISC, prog);
}

struct train_log {
	json_t *steps;
	struct progress progress;
};

static void on_steps(void *ctx, long step, long steps, const float *loss, double seconds)
{
	struct train_log *log = ctx;
	static const char *names[NN_CG_LOSSES] = {
	    "g_map_adv",    "g_imagery_adv",	"cycle_imagery",  "cycle_map",
	    "identity_map", "identity_imagery", "d_imagery_real", "d_imagery_fake",
	    "d_map_real",   "d_map_fake",	"paired_map"};
	json_t *row = json_object();
	json_object_set_new(row, "step", json_integer(step));
	json_object_set_new(row, "wall_time_s", json_real(seconds));
	for (int k = 0; k < NN_CG_LOSSES; k++)
		if (k != NN_CG_LOSS_IDT_A && k != NN_CG_LOSS_IDT_B)
			json_object_set_new(row, names[k], json_real(loss[k]));
	json_array_append_new(log->steps, row);
	if (!log->progress.label)
		progress_init(&log->progress, "refine train", "step", (uint64_t)steps);
	progress_update(&log->progress, (uint64_t)step);
	if (step == steps || step % (10 * 100) == 0)
		fprintf(stderr,
			"%s: step %ld/%ld: cycle L1 imagery %.4f map %.4f, D map %.3f/%.3f, %.1f "
			"steps/s\n",
			prog, step, steps, (double)loss[NN_CG_LOSS_CYCLE_A],
			(double)loss[NN_CG_LOSS_CYCLE_B], (double)loss[NN_CG_LOSS_DB_REAL],
			(double)loss[NN_CG_LOSS_DB_FAKE], seconds > 0 ? step / seconds : 0);
}

/* The log travels in the training's state (nn_refine_config.log_save). */
static json_t *log_save(void *ctx)
{
	return json_incref(((struct train_log *)ctx)->steps);
}

static int log_load(void *ctx, const json_t *steps)
{
	struct train_log *log = ctx;
	json_t *copy = json_is_array(steps) ? json_deep_copy(steps) : NULL;
	if (!copy)
		return -1;
	json_decref(log->steps);
	log->steps = copy;
	return 0;
}

static int cmd_train(int argc, char **argv)
{
	static const struct option longopts[] = {{"train", required_argument, 0, 't'},
						 {"out", required_argument, 0, 'o'},
						 {"steps", required_argument, 0, 's'},
						 {"crop", required_argument, 0, 'c'},
						 {"batch", required_argument, 0, 'b'},
						 {"gen", required_argument, 0, 'g'},
						 {"disc", required_argument, 0, 'D'},
						 {"lr", required_argument, 0, 'l'},
						 {"cycle", required_argument, 0, 'C'},
						 {"feature-weight", required_argument, 0, 'F'},
						 {"seed", required_argument, 0, 'S'},
						 {"paired", required_argument, 0, 'P'},
						 NN_STAGE_DEVICE_OPTIONS,
						 NN_STAGE_STATE_OPTIONS,
						 {"help", no_argument, 0, 'h'},
						 {0, 0, 0, 0}};
	const char *cmd = "train", *train = NULL, *out = NULL;
	struct nn_refine_config cfg;
	nn_refine_defaults(&cfg);
	struct nn_stage_opts dev;
	nn_stage_opts_init(&dev);
	long v;
	int c;
	while ((c = cmd_getopt(prog, argc, argv, "h", longopts)) != -1) {
		int taken = stage_opt(cmd, c, &dev);
		if (taken < 0)
			return EXIT_USAGE;
		if (taken)
			continue;
		switch (c) {
		case 't':
			train = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 's':
			if (parse_long(optarg, 1, 1000000000L, &cfg.steps) < 0)
				return bad_usage(cmd, "--steps: '%s' is not an integer in 1..10^9",
						 optarg);
			break;
		case 'c':
			if (parse_long(optarg, 1, 65536, &v) < 0)
				return bad_usage(cmd, "--crop: '%s' is not an integer in 1..65536",
						 optarg);
			cfg.crop = (int)v;
			break;
		case 'b':
			if (parse_long(optarg, 1, 1024, &v) < 0)
				return bad_usage(cmd, "--batch: '%s' is not an integer in 1..1024",
						 optarg);
			cfg.gan.batch = (int)v;
			break;
		case 'g':
			cfg.gan.gen = optarg;
			break;
		case 'D':
			cfg.gan.disc = optarg;
			break;
		case 'l':
			if (parse_float(optarg, &cfg.gan.lr) < 0 || !(cfg.gan.lr > 0))
				return bad_usage(cmd, "--lr: '%s' is not a number > 0", optarg);
			break;
		case 'C':
			if (parse_float(optarg, &cfg.gan.cycle) < 0 || !(cfg.gan.cycle >= 0))
				return bad_usage(cmd, "--cycle: '%s' is not a number >= 0", optarg);
			break;
		case 'F':
			if (parse_float(optarg, &cfg.feature_weight) < 0 ||
			    !(cfg.feature_weight >= 0))
				return bad_usage(cmd, "--feature-weight: '%s' is not a number >= 0",
						 optarg);
			break;
		case 'P':
			if (parse_float(optarg, &cfg.paired) < 0 || !(cfg.paired >= 0))
				return bad_usage(cmd, "--paired: '%s' is not a number >= 0",
						 optarg);
			break;
		case 'S':
			if (parse_long(optarg, 0, 2147483647L, &v) < 0)
				return bad_usage(cmd, "--seed: '%s' is not an integer >= 0",
						 optarg);
			cfg.seed = cfg.gan.seed = (uint64_t)v;
			break;
		case 'h':
			train_usage(stdout);
			return 0;
		default:
			train_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return bad_usage(cmd, "unexpected argument '%s'", argv[optind]);
	if (!train || !out) {
		train_usage(stderr);
		return EXIT_USAGE;
	}
	if (stage_setup(cmd, &dev) < 0)
		return EXIT_USAGE;
	cfg.gan.be = dev.be, cfg.state_dir = dev.state_dir, cfg.state_every = dev.state_every;
	struct error err;
	int mult = nn_model_size_multiple(cfg.gan.gen, &err);
	if (mult < 0)
		return bad_usage(cmd, "--gen: %s", err.msg);
	if (mult == 0)
		return bad_usage(cmd,
				 "--gen: '%s' gives no map per pixel (give a cyclegan or unet)",
				 cfg.gan.gen);
	if (cfg.crop % mult) {
		char m[64];
		snprintf(m, sizeof(m), "%d", mult);
		fprintf(stderr,
			"%s train: --crop %d is not a multiple of %s, which the generator needs\n",
			prog, cfg.crop, m);
		return EXIT_USAGE;
	}
	if (nn_model_size_multiple(cfg.gan.disc, &err) < 0)
		return bad_usage(cmd, "--disc: %s", err.msg);

	struct dataset ds;
	int rc = dataset_open(&ds, train, 0, &err);
	if (rc < 0)
		return fail(rc, &err);
	struct nn_cyclegan gan;
	memset(&gan, 0, sizeof(gan));
	struct train_log log = {json_array(), {0}};
	cfg.on_steps = on_steps, cfg.ctx = &log;
	cfg.log_save = log_save, cfg.log_load = log_load;
	int status = 0;
	if ((rc = nn_refine_check(&ds, 1, &err)) < 0 || fs_mkdir_p(out, &err) < 0) {
		status = fail(rc < 0 ? rc : -1, &err);
		goto done;
	}
	double t0 = clock_now();
	long resumed = 0;
	rc = nn_refine_train(&cfg, &ds, &gan, &resumed, &err);
	double wall = clock_now() - t0;
	if (log.progress.label)
		progress_finish(&log.progress);
	if (rc < 0) {
		status = fail(rc, &err);
		goto done;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/imagery.ckpt", out);
	if (nn_ckpt_save(&gan.g[NN_CG_GB][NN_CG_TRANSLATE], path, &err) < 0) {
		status = fail(-1, &err);
		goto done;
	}
	/* map.ckpt last: its presence says the training finished */
	json_t *m = json_object();
	json_object_set_new(m, "shard", json_string(train));
	json_object_set_new(m, "tiles", json_integer((json_int_t)ds.count));
	json_object_set_new(m, "classes", json_integer(ds.shape.num_classes));
	json_object_set_new(m, "generator", json_string(gan.g[0][0].arch));
	json_object_set_new(m, "discriminator", json_string(gan.d[0][0].arch));
	json_object_set_new(m, "generator_params", json_integer(nn_net_param_count(&gan.g[0][0])));
	json_object_set_new(m, "steps", json_integer(cfg.steps));
	json_object_set_new(m, "crop", json_integer(cfg.crop));
	json_object_set_new(m, "batch", json_integer(cfg.gan.batch));
	json_object_set_new(m, "lr", json_real(cfg.gan.lr));
	json_object_set_new(m, "cycle_weight", json_real(cfg.gan.cycle));
	json_object_set_new(m, "feature_weight", json_real(cfg.feature_weight));
	json_object_set_new(m, "paired_weight", json_real(cfg.paired));
	json_object_set_new(m, "seed", json_integer((json_int_t)cfg.seed));
	json_object_set_new(m, "device", json_string(dev.be->name));
	json_object_set_new(m, "train_seconds", json_real(wall));
	double rate = wall > 0 ? (double)(cfg.steps - resumed) / wall : 0; /* this start's */
	json_object_set_new(m, "steps_per_second", json_real(rate));
	json_object_set_new(m, "history", json_incref(log.steps));
	json_object_set_new(m, "resumed_from_step", json_integer(resumed));
	snprintf(path, sizeof(path), "%s/metrics.json", out);
	rc = jsonio_write_atomic(path, m, &err);
	json_decref(m);
	snprintf(path, sizeof(path), "%s/map.ckpt", out);
	if (rc < 0 || nn_ckpt_save(&gan.g[NN_CG_GA][NN_CG_TRANSLATE], path, &err) < 0) {
		status = fail(-1, &err);
		goto done;
	}
	fprintf(stderr, "%s: %ld steps of %d crops of %d px in %.1f s (%.2f steps/s, %s) -> %s\n",
		prog, cfg.steps, cfg.gan.batch, cfg.crop, wall, rate, dev.be->name, path);
	if (resumed)
		fprintf(stderr, "%s: (resumed after step %ld of %ld from %s)\n", prog, resumed,
			cfg.steps, cfg.state_dir);
done:
	json_decref(log.steps);
	nn_cyclegan_release(&gan);
	dataset_close(&ds);
	return status;
}

/* ---- apply --------------------------------------------------------------- */

static void apply_usage(FILE *f)
{
	fprintf(f,
		"usage: %s apply --model CKPT --in SHARD --out SHARD [options]\n"
		"\n"
		"Draws a map for every tile of a mask shard with the imagery -> map generator\n"
		"'train' wrote (map.ckpt; it takes any tile size that is a multiple of its\n"
		"own), fuses it with the tile's map, and writes a mask shard: the input's\n"
		"imagery, keys and order with the fused masks (to train a U-Net on, or for\n"
		"cairn-tileset unpack). A class is drawn at a pixel where its plane is the\n"
		"highest and above --threshold (planes run from -1 to 1). Prints what changed.\n"
		"\n"
		"options:\n"
		"  --mode M        add (default): the map's labels, plus the drawn features where\n"
		"                  the map has background (missing houses, too narrow roads);\n"
		"                  replace: the drawing alone (background where nothing is drawn)\n"
		"  --threshold T   -1..1 (default 0)\n"
		"  --batch N       tiles per forward pass, 1..65536 (default 4)\n"
		"  --json FILE     also write the counts of changed pixels there\n"
		"  --threads N     CPU threads, 1..1024 (default: OMP_NUM_THREADS,\n"
		"                  else the CPUs it may run on)\n"
		"  --device D      cpu (default), cpu-ref, cuda, auto\n"
		"  --precision P   cuda math: tf32 (default), fp32, bf16; cpu: fp32 only\n"
		"\n"
		"example:\n"
		"  %s apply --model gan/map.ckpt --in tiles.ds --out refined.ds\n"
		"  cairn-tileset unpack --in refined.ds --out refined --like scene/imagery\n",
		prog, prog);
}

static void on_batch(void *ctx, int epoch, uint64_t batch, uint64_t batches, float loss)
{
	struct progress *p = ctx;
	(void)epoch, (void)loss;
	if (batch == 1)
		progress_init(p, "refine apply", "batch", batches);
	progress_update(p, batch);
}

static json_t *stats_json(const struct nn_refine_stats *s, const char *mode, float threshold)
{
	json_t *j = json_object(), *changed = json_array();
	json_object_set_new(j, "mode", json_string(mode));
	json_object_set_new(j, "threshold", json_real(threshold));
	json_object_set_new(j, "tiles", json_integer((json_int_t)s->tiles));
	json_object_set_new(j, "pixels", json_integer((json_int_t)s->pixels));
	for (int a = 0; a < s->classes; a++) {
		json_t *row = json_array();
		for (int b = 0; b < s->classes; b++)
			json_array_append_new(row, json_integer((json_int_t)s->changed[a][b]));
		json_array_append_new(changed, row);
	}
	json_object_set_new(j, "changed", changed); /* [from][to] pixel counts */
	return j;
}

static int cmd_apply(int argc, char **argv)
{
	static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
						 {"in", required_argument, 0, 'i'},
						 {"out", required_argument, 0, 'o'},
						 {"mode", required_argument, 0, 'M'},
						 {"threshold", required_argument, 0, 'T'},
						 {"batch", required_argument, 0, 'b'},
						 {"json", required_argument, 0, 'J'},
						 NN_STAGE_DEVICE_OPTIONS,
						 {"help", no_argument, 0, 'h'},
						 {0, 0, 0, 0}};
	const char *cmd = "apply", *model = NULL, *in_path = NULL, *out = NULL, *json_path = NULL,
		   *mode_name = "add";
	enum nn_refine_mode mode = NN_REFINE_ADD;
	struct nn_stage_opts dev;
	nn_stage_opts_init(&dev);
	float threshold = 0;
	long v;
	int batch = 4, c;
	while ((c = cmd_getopt(prog, argc, argv, "h", longopts)) != -1) {
		int taken = stage_opt(cmd, c, &dev);
		if (taken < 0)
			return EXIT_USAGE;
		if (taken)
			continue;
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
		case 'M':
			if (strcmp(optarg, "add") && strcmp(optarg, "replace"))
				return bad_usage(cmd, "--mode: '%s' is not add or replace", optarg);
			mode_name = optarg;
			mode = strcmp(optarg, "add") ? NN_REFINE_REPLACE : NN_REFINE_ADD;
			break;
		case 'T':
			if (parse_float_in(optarg, -1, 1, &threshold) < 0)
				return bad_usage(cmd, "--threshold: '%s' is not a number in -1..1",
						 optarg);
			break;
		case 'b':
			if (parse_long(optarg, 1, 65536, &v) < 0)
				return bad_usage(cmd, "--batch: '%s' is not an integer in 1..65536",
						 optarg);
			batch = (int)v;
			break;
		case 'J':
			json_path = optarg;
			break;
		case 'h':
			apply_usage(stdout);
			return 0;
		default:
			apply_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return bad_usage(cmd, "unexpected argument '%s'", argv[optind]);
	if (!model || !in_path || !out) {
		apply_usage(stderr);
		return EXIT_USAGE;
	}
	if (stage_setup(cmd, &dev) < 0)
		return EXIT_USAGE;
	struct error err;
	struct dataset in;
	int rc = dataset_open(&in, in_path, 0, &err);
	if (rc < 0)
		return fail(rc, &err);
	struct nn_net gen;
	memset(&gen, 0, sizeof(gen));
	int status = 0;
	if ((rc = nn_refine_check(&in, 0, &err)) < 0) {
		status = fail(rc, &err);
		goto done;
	}
	/* a generator that is missing, damaged or not for these tiles is bad input */
	if (nn_ckpt_open_size(&gen, dev.be, model, (int)in.shape.height, (int)in.shape.width,
			      &err) < 0) {
		fprintf(stderr,
			"%s: cannot use model %s: %s (give the map.ckpt that '%s train' wrote)\n",
			prog, model, err.msg, prog);
		status = EXIT_USAGE;
		goto done;
	}
	struct progress p;
	memset(&p, 0, sizeof(p));
	struct nn_refine_stats st;
	double t0 = clock_now();
	rc = nn_refine_apply(&gen, &in, out, mode, threshold, batch, &st, on_batch, &p, &err);
	double wall = clock_now() - t0;
	if (p.label)
		progress_finish(&p);
	if (rc < 0) {
		status = fail(rc, &err);
		goto done;
	}
	if (json_path) {
		json_t *j = stats_json(&st, mode_name, threshold);
		rc = jsonio_write_atomic(json_path, j, &err);
		json_decref(j);
		if (rc < 0) {
			status = fail(-1, &err);
			goto done;
		}
	}
	uint64_t changed = 0;
	for (int a = 0; a < st.classes; a++)
		for (int b = 0; b < st.classes; b++)
			changed += st.changed[a][b];
	fprintf(stderr,
		"%s: %" PRIu64 " tiles in %.2f s (%s, mode %s): %.2f%% of pixels relabelled", prog,
		st.tiles, wall, dev.be->name, mode_name,
		st.pixels ? 100.0 * changed / st.pixels : 0.0);
	const char *sep = ":";
	for (int a = 0; a < st.classes; a++)
		for (int b = 0; b < st.classes; b++)
			if (st.changed[a][b])
				fprintf(stderr, "%s %d->%d %.2f%%", sep, a, b,
					100.0 * st.changed[a][b] / st.pixels),
				    sep = ",";
	fprintf(stderr, " -> %s\n", out);
done:
	nn_net_release(&gen);
	dataset_close(&in);
	return status;
}

int main(int argc, char **argv)
{
	nn_cpu_blas_check(argv);
	static const struct cmd cmds[] = {{"train", cmd_train}, {"apply", cmd_apply}};
	return cmd_dispatch(prog, argc, argv, cmds, sizeof cmds / sizeof cmds[0], usage);
}
