/* cairn-dataset: make and inspect dataset shards (nn/dataset.h).
 *   import-idx  IDX (MNIST family, gzip or not) -> shard
 *   info        header, class histogram, pixel statistics, checksum
 *   split       stratified fraction/rest split with a seed
 *   imbalance   Zipf-like long-tail subsample with a seed
 * Exit 0 ok, 1 failure of the work (I/O), 2 bad usage or bad input. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cmd.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/mem.h"
#include "core/progress.h"
#include "nn/dataset.h"

#define EXIT_USAGE 2

static const char *prog = "cairn-dataset";

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: %s COMMAND [options]\n"
	    "\n"
	    "Make and inspect cairn dataset shards (fixed-size uint8 image records + label).\n"
	    "\n"
	    "commands:\n"
	    "  import-idx --images F --labels F --out SHARD [--classes K]\n"
	    "  info SHARD [--json] [--no-verify]\n"
	    "  split SHARD --fraction X --seed N --out A --rest B\n"
	    "  imbalance SHARD --zipf S --seed N --out SHARD2 [--head N] [--min N] [--dry-run]\n"
	    "  merge --out SHARD SHARD1 SHARD2 ...\n"
	    "\n"
	    "'%s COMMAND --help' describes each command.\n"
	    "\n"
	    "example:\n"
	    "  %s import-idx --images /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz "
	    "\\\n"
	    "      --labels /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz --out "
	    "train.ds\n"
	    "  %s info train.ds\n"
	    "\n"
	    "exit status: 0 ok, 1 the work failed (I/O), 2 bad usage or bad input.\n",
	    prog, prog, prog, prog);
}

/* A progress line on a terminal (silent in logs), fed by the library. */
static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;
	p->total = total;
	progress_update(p, done);
}

/* Map a library return code to an exit status and print the message. */
static int fail(int rc, const struct error *err)
{
	fprintf(stderr, "%s: %s\n", prog, err->msg);
	return rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
}

static int bad_usage(const char *cmd, const char *fmt, const char *arg)
{
	return cmd_bad_usage(prog, cmd, fmt, arg);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!s || !*s || *s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	if (!s || !*s)
		return -1;
	double v = strtod(s, &end);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

/* What an option's argument is, and where parse_options puts it. */
enum opt_kind {
	OPT_FLAG,   /* no argument: sets an int to 1 */
	OPT_STRING, /* a const char * */
	OPT_U64,    /* a uint64_t from lo to hi */
	OPT_DOUBLE, /* a double from lo to hi */
};

/* One option of a command. A number outside lo..hi (INFINITY: no upper bound;
 * an integer is compared as a double, exact for bounds below 2^53) or not a
 * number is bad usage, said by bad with '%s' for the argument as given. */
struct opt {
	const char *name;
	enum opt_kind kind;
	void *to;
	double lo, hi;
	const char *bad;
	int *given; /* set to 1 when the option is given, if not NULL */
};

/* The operands a command takes after its options. */
enum operands {
	OPERANDS_ANY,	    /* the command checks them */
	OPERANDS_NONE,	    /* "unexpected argument 'X'" */
	OPERANDS_ONE_SHARD, /* "expected one SHARD" */
};

#define MAX_OPTS 8
#define OPT_VAL0 256 /* getopt_long returns OPT_VAL0 + i for opts[i]: above any char */

/* getopt_long over opts (ended by {0}, at most MAX_OPTS) and --help for the
 * command cmd, then the operands argv[optind..] checked as operands says.
 * Returns -1 when the command goes on, otherwise the exit status to end it
 * with: 0 after --help, 2 (message printed) after bad usage. */
static int parse_options(const char *cmd, const char *help, const struct opt *opts,
			 enum operands operands, int argc, char **argv)
{
	struct option lopts[MAX_OPTS + 2];
	int n = 0;
	for (; opts[n].name; n++) {
		if (n == MAX_OPTS) {
			fprintf(stderr, "%s %s: more than %d options: raise MAX_OPTS\n", prog, cmd,
				MAX_OPTS);
			return 1;
		}
		int has_arg = opts[n].kind == OPT_FLAG ? no_argument : required_argument;
		lopts[n] = (struct option){opts[n].name, has_arg, 0, OPT_VAL0 + n};
	}
	lopts[n] = (struct option){"help", no_argument, 0, 'h'};
	lopts[n + 1] = (struct option){0, 0, 0, 0};
	int c;
	while ((c = cmd_getopt(prog, argc, argv, "h", lopts)) != -1) {
		if (c == 'h') {
			fputs(help, stdout);
			return 0;
		}
		if (c < OPT_VAL0 || c >= OPT_VAL0 + n)
			return bad_usage(cmd, "%s", "bad option");
		const struct opt *o = &opts[c - OPT_VAL0];
		uint64_t u;
		double d;
		switch (o->kind) {
		case OPT_FLAG:
			*(int *)o->to = 1;
			break;
		case OPT_STRING:
			*(const char **)o->to = optarg;
			break;
		case OPT_U64:
			if (parse_u64(optarg, &u) < 0 ||
			    !((double)u >= o->lo && (double)u <= o->hi))
				return bad_usage(cmd, o->bad, optarg);
			*(uint64_t *)o->to = u;
			break;
		case OPT_DOUBLE:
			if (parse_double(optarg, &d) < 0 || !(d >= o->lo && d <= o->hi))
				return bad_usage(cmd, o->bad, optarg);
			*(double *)o->to = d;
			break;
		}
		if (o->given)
			*o->given = 1;
	}
	if (operands == OPERANDS_NONE && optind < argc)
		return bad_usage(cmd, "unexpected argument '%s'", argv[optind]);
	if (operands == OPERANDS_ONE_SHARD && argc - optind != 1)
		return bad_usage(cmd, "%s", "expected one SHARD");
	return -1;
}

enum { SHOW_SHAPE = 1, SHOW_CLASSES = 2 }; /* what report_written adds */

/* Say what was written to path: "PATH: N records" and, as show asks, the
 * shape and the class count, read back from the shard. An output written in
 * place (/dev/null, a FIFO, /dev/stdout) cannot be reopened: "PATH: written".
 * Returns the exit status. */
static int report_written(const char *path, int show)
{
	if (fs_is_in_place(path)) {
		printf("%s: written\n", path);
		return 0;
	}
	struct error err;
	struct dataset ds;
	int rc = dataset_open(&ds, path, 0, &err);
	if (rc < 0)
		return fail(rc, &err);
	printf("%s: %" PRIu64 " records", path, ds.count);
	if (show & SHOW_SHAPE)
		printf(", %ux%ux%u", ds.shape.channels, ds.shape.height, ds.shape.width);
	if (show & SHOW_CLASSES)
		printf(", %u classes", ds.shape.num_classes);
	printf("\n");
	dataset_close(&ds);
	return 0;
}

/* Out of memory in a command that has ds open: close it and say so. */
static int out_of_memory(struct dataset *ds)
{
	dataset_close(ds);
	fprintf(stderr, "%s: out of memory\n", prog);
	return 1;
}

/* ---- import-idx ---- */

static int cmd_import_idx(int argc, char **argv)
{
	static const char *help =
	    "usage: cairn-dataset import-idx --images F --labels F --out SHARD [--classes K]\n"
	    "\n"
	    "Convert an IDX image file (uint8, N x H x W) and its IDX label file (uint8, N),\n"
	    "gzip-compressed or not, into one shard (1 channel, H x W). --classes K sets the\n"
	    "number of classes (default: the largest label + 1). The shard is written to a\n"
	    "temporary file and renamed into place, so a failed import leaves nothing behind.\n"
	    "\n"
	    "example:\n"
	    "  cairn-dataset import-idx --images "
	    "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \\\n"
	    "      --labels /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --out "
	    "test.ds\n";
	const char *images = NULL, *labels = NULL, *out = NULL;
	uint64_t classes = 0;
	const struct opt opts[] = {
	    {"images", OPT_STRING, .to = &images},
	    {"labels", OPT_STRING, .to = &labels},
	    {"out", OPT_STRING, .to = &out},
	    {"classes", OPT_U64, .to = &classes, .lo = 1, .hi = 256,
	     .bad = "--classes '%s': expected 1 to 256"},
	    {0},
	};
	int status = parse_options("import-idx", help, opts, OPERANDS_NONE, argc, argv);
	if (status >= 0)
		return status;
	if (!images || !labels || !out)
		return bad_usage("import-idx", "%s", "--images, --labels and --out are required");
	struct error err;
	struct progress bar;
	progress_init(&bar, "import", "img", 0);
	struct dataset_progress pr = {on_progress, &bar};
	int rc = dataset_import_idx(images, labels, out, (uint32_t)classes, &pr, &err);
	progress_finish(&bar);
	if (rc < 0)
		return fail(rc, &err);
	return report_written(out, SHOW_SHAPE | SHOW_CLASSES);
}

/* ---- info ---- */

static int cmd_info(int argc, char **argv)
{
	static const char *help =
	    "usage: cairn-dataset info SHARD [--json] [--no-verify]\n"
	    "\n"
	    "Print a shard's header (records, shape, classes, label kind), its class\n"
	    "histogram (records per class; pixels per class in a mask shard, whose\n"
	    "ignored pixels are counted apart), the\n"
	    "per-channel mean and standard deviation of pixel/255, the exponent s of a\n"
	    "least-squares fit count ~ rank^-s over the sorted class counts (the length of\n"
	    "the tail; 0 = balanced; see 'imbalance'), and whether the data checksum\n"
	    "matches (--no-verify skips reading the whole file for it).\n"
	    "--json prints one JSON object instead, for scripts:\n"
	    "  {\"path\", \"records\", \"channels\", \"height\", \"width\", \"classes\",\n"
	    "   \"labels\": \"class\"|\"mask\", (masks: \"ignored_pixels\", \"tiles\"; no \"zipf_s\"),\n"
	    "   \"record_bytes\", \"file_bytes\", \"checksum\": \"ok\"|\"skipped\", \"zipf_s\",\n"
	    "   \"histogram\": [...], \"mean\": [...], \"std\": [...]}\n"
	    "\n"
	    "example:\n"
	    "  cairn-dataset info train.ds --json | jq .histogram\n";
	int json = 0, no_verify = 0;
	const struct opt opts[] = {
	    {"json", OPT_FLAG, .to = &json},
	    {"no-verify", OPT_FLAG, .to = &no_verify},
	    {0},
	};
	int status = parse_options("info", help, opts, OPERANDS_ONE_SHARD, argc, argv);
	if (status >= 0)
		return status;
	const char *path = argv[optind];
	int verify = !no_verify;
	struct error err;
	struct dataset ds;
	int rc = dataset_open(&ds, path, verify ? DATASET_VERIFY : 0, &err);
	if (rc < 0)
		return fail(rc, &err);
	uint32_t K = ds.shape.num_classes, C = ds.shape.channels;
	uint64_t *hist = mem_alloc(sizeof(uint64_t) * K);
	if (!hist)
		return out_of_memory(&ds);
	dataset_histogram(&ds, hist);
	float mean[DATASET_MAX_CHANNELS], std[DATASET_MAX_CHANNELS];
	dataset_channel_stats(&ds, mean, std);
	double zipf_s;
	dataset_zipf_fit(hist, K, &zipf_s);
	int mask = ds.shape.label_kind == DATASET_LABEL_MASK;
	uint64_t ignored = 0, tiles = 0;
	for (uint64_t i = 0; mask && i < ds.count; i++) {
		tiles += dataset_key(&ds, i).z != DATASET_KEY_NONE;
		ignored += (uint64_t)ds.shape.height * ds.shape.width;
	}
	for (uint32_t k = 0; mask && k < K; k++)
		ignored -= hist[k];
	status = 0;
	if (json) {
		json_t *o = json_object(), *h = json_array(), *m = json_array(), *s = json_array();
		int bad = !o || !h || !m || !s;
		bad |= json_object_set_new(o, "path", json_string(path));
		bad |= json_object_set_new(o, "records", json_integer((json_int_t)ds.count));
		bad |= json_object_set_new(o, "channels", json_integer(C));
		bad |= json_object_set_new(o, "height", json_integer(ds.shape.height));
		bad |= json_object_set_new(o, "width", json_integer(ds.shape.width));
		bad |= json_object_set_new(o, "classes", json_integer(K));
		bad |= json_object_set_new(o, "labels", json_string(mask ? "mask" : "class"));
		if (mask) {
			bad |= json_object_set_new(o, "ignored_pixels",
						   json_integer((json_int_t)ignored));
			bad |= json_object_set_new(o, "tiles", json_integer((json_int_t)tiles));
		}
		bad |= json_object_set_new(o, "record_bytes",
					   json_integer((json_int_t)ds.record_bytes));
		bad |= json_object_set_new(o, "file_bytes", json_integer((json_int_t)ds.map_len));
		bad |= json_object_set_new(o, "checksum", json_string(verify ? "ok" : "skipped"));
		if (!mask)
			bad |= json_object_set_new(o, "zipf_s", json_real(zipf_s));
		for (uint32_t k = 0; k < K; k++)
			bad |= json_array_append_new(h, json_integer((json_int_t)hist[k]));
		for (uint32_t i = 0; i < C; i++) {
			bad |= json_array_append_new(m, json_real(mean[i]));
			bad |= json_array_append_new(s, json_real(std[i]));
		}
		bad |= json_object_set_new(o, "histogram", h);
		bad |= json_object_set_new(o, "mean", m);
		bad |= json_object_set_new(o, "std", s);
		char *text = bad ? NULL : json_dumps(o, JSON_COMPACT);
		if (text) {
			printf("%s\n", text);
			free(text);
		} else {
			fprintf(stderr, "%s: out of memory building JSON\n", prog);
			status = 1;
		}
		json_decref(o);
	} else {
		printf("path          %s\n", path);
		printf("records       %" PRIu64 "\n", ds.count);
		printf("shape         %u x %u x %u (C x H x W, uint8)\n", C, ds.shape.height,
		       ds.shape.width);
		printf("classes       %u\n", K);
		if (mask)
			printf("labels        a mask per record (%" PRIu64
			       " ignored pixels); %" PRIu64 " of the records are XYZ tiles\n",
			       ignored, tiles);
		else
			printf("labels        a class per record\n");
		printf("record bytes  %zu\n", ds.record_bytes);
		printf("file bytes    %zu\n", ds.map_len);
		printf("checksum      %s\n", verify ? "ok" : "skipped (--no-verify)");
		if (!mask)
			printf("zipf fit      s = %.3f (count ~ rank^-s; 0 = balanced)\n", zipf_s);
		if (C > 0) {
			printf("mean (x/255) ");
			for (uint32_t i = 0; i < C; i++)
				printf(" %.4f", mean[i]);
			printf("\nstd  (x/255) ");
			for (uint32_t i = 0; i < C; i++)
				printf(" %.4f", std[i]);
			printf("\n");
		} else {
			printf("pixels        none (masks only, as cairn-predict writes them)\n");
		}
		printf("class  %s\n", mask ? "pixels" : "records");
		for (uint32_t k = 0; k < K; k++)
			printf("%5u  %" PRIu64 "\n", k, hist[k]);
	}
	mem_free(hist);
	dataset_close(&ds);
	return status;
}

/* ---- split ---- */

static int cmd_split(int argc, char **argv)
{
	static const char *help =
	    "usage: cairn-dataset split SHARD --fraction X --seed N --out A --rest B\n"
	    "\n"
	    "Split a shard in two, class by class: a shuffle seeded by N puts round(X * n)\n"
	    "of each class's n records in A and the others in B, so both keep the class\n"
	    "balance (a mask shard is split as one group). Records keep their order.\n"
	    "Same seed, same split.\n"
	    "\n"
	    "example (a 90/10 train/validation split):\n"
	    "  cairn-dataset split train.ds --fraction 0.9 --seed 1 --out train90.ds --rest "
	    "val10.ds\n";
	const char *out = NULL, *rest = NULL;
	double fraction = -1;
	uint64_t seed = 0;
	int have_seed = 0;
	const struct opt opts[] = {
	    {"fraction", OPT_DOUBLE, .to = &fraction, .lo = 0, .hi = 1,
	     .bad = "--fraction '%s': expected a number from 0 to 1"},
	    {"seed", OPT_U64, .to = &seed, .lo = 0, .hi = INFINITY,
	     .bad = "--seed '%s': expected a non-negative integer", .given = &have_seed},
	    {"out", OPT_STRING, .to = &out},
	    {"rest", OPT_STRING, .to = &rest},
	    {0},
	};
	int status = parse_options("split", help, opts, OPERANDS_ONE_SHARD, argc, argv);
	if (status >= 0)
		return status;
	if (fraction < 0 || !have_seed || !out || !rest)
		return bad_usage("split", "%s",
				 "--fraction, --seed, --out and --rest are required");
	struct error err;
	struct dataset ds;
	int rc = dataset_open(&ds, argv[optind], DATASET_VERIFY, &err);
	if (rc < 0)
		return fail(rc, &err);
	struct progress bar;
	progress_init(&bar, "split", "records", 0);
	struct dataset_progress pr = {on_progress, &bar};
	rc = dataset_split(&ds, fraction, seed, out, rest, &pr, &err);
	progress_finish(&bar);
	dataset_close(&ds);
	if (rc < 0)
		return fail(rc, &err);
	if ((status = report_written(out, 0)) != 0)
		return status;
	return report_written(rest, 0);
}

/* ---- imbalance ---- */

static int cmd_imbalance(int argc, char **argv)
{
	static const char *help =
	    "usage: cairn-dataset imbalance SHARD --zipf S --seed N --out SHARD2\n"
	    "                               [--head N] [--min N] [--dry-run]\n"
	    "\n"
	    "Subsample classes along a Zipf-like curve, to mimic a long-tailed dataset such\n"
	    "as ImageNet-22K. A permutation seeded by N ranks the classes 1..K; the class of\n"
	    "rank r keeps max(MIN, floor(HEAD * r^-S)) records (never more than it has),\n"
	    "chosen by a seeded shuffle. HEAD defaults to the smallest class count of the\n"
	    "input; MIN defaults to 1. S = 0 keeps HEAD records of every class.\n"
	    "--dry-run prints the per-class quota and writes nothing.\n"
	    "\n"
	    "example:\n"
	    "  cairn-dataset imbalance train.ds --zipf 1.0 --seed 7 --out train-lt.ds\n";
	struct dataset_imbalance opt = {.zipf_s = -1, .min_keep = 1};
	const char *out = NULL;
	int have_seed = 0, dry = 0;
	const struct opt opts[] = {
	    {"zipf", OPT_DOUBLE, .to = &opt.zipf_s, .lo = 0, .hi = 100,
	     .bad = "--zipf '%s': expected a number from 0 to 100"},
	    {"seed", OPT_U64, .to = &opt.seed, .lo = 0, .hi = INFINITY,
	     .bad = "--seed '%s': expected a non-negative integer", .given = &have_seed},
	    {"out", OPT_STRING, .to = &out},
	    {"head", OPT_U64, .to = &opt.head, .lo = 1, .hi = INFINITY,
	     .bad = "--head '%s': expected a positive integer"},
	    {"min", OPT_U64, .to = &opt.min_keep, .lo = 0, .hi = INFINITY,
	     .bad = "--min '%s': expected a non-negative integer"},
	    {"dry-run", OPT_FLAG, .to = &dry},
	    {0},
	};
	int status = parse_options("imbalance", help, opts, OPERANDS_ONE_SHARD, argc, argv);
	if (status >= 0)
		return status;
	if (opt.zipf_s < 0 || !have_seed || (!out && !dry))
		return bad_usage("imbalance", "%s",
				 "--zipf, --seed and --out (or --dry-run) are required");
	struct error err;
	struct dataset ds;
	int rc = dataset_open(&ds, argv[optind], DATASET_VERIFY, &err);
	if (rc < 0)
		return fail(rc, &err);
	uint32_t K = ds.shape.num_classes;
	uint64_t *keep = mem_alloc(sizeof(uint64_t) * K);
	if (!keep)
		return out_of_memory(&ds);
	rc = dataset_imbalance_plan(&ds, &opt, keep, &err);
	if (rc == 0 && !dry) {
		struct progress bar;
		progress_init(&bar, "imbalance", "records", 0);
		struct dataset_progress pr = {on_progress, &bar};
		rc = dataset_imbalance(&ds, &opt, out, &pr, &err);
		progress_finish(&bar);
	}
	dataset_close(&ds);
	if (rc < 0) {
		mem_free(keep);
		return fail(rc, &err);
	}
	uint64_t total = 0;
	printf("class  keep\n");
	for (uint32_t k = 0; k < K; k++) {
		printf("%5u  %" PRIu64 "\n", k, keep[k]);
		total += keep[k];
	}
	printf("%s: %" PRIu64 " records%s\n", dry ? "(dry run)" : out, total,
	       dry ? " would be kept" : "");
	mem_free(keep);
	return 0;
}

/* ---- merge ---- */

static int cmd_merge(int argc, char **argv)
{
	static const char *help =
	    "usage: cairn-dataset merge --out SHARD SHARD1 SHARD2 ...\n"
	    "\n"
	    "Concatenate shards of the same image shape (C x H x W) into one, records in\n"
	    "the order given; the result has the largest class count of the inputs. For\n"
	    "example, to join the shards an array of tasks produced.\n"
	    "\n"
	    "example:\n"
	    "  cairn-dataset merge --out all.ds train.ds test.ds\n";
	const char *out = NULL;
	const struct opt opts[] = {
	    {"out", OPT_STRING, .to = &out},
	    {0},
	};
	int status = parse_options("merge", help, opts, OPERANDS_ANY, argc, argv);
	if (status >= 0)
		return status;
	if (!out || optind >= argc)
		return bad_usage("merge", "%s", "--out and at least one SHARD are required");
	struct error err;
	struct progress bar;
	progress_init(&bar, "merge", "records", 0);
	struct dataset_progress pr = {on_progress, &bar};
	int rc = dataset_merge((const char *const *)(argv + optind), argc - optind, out, &pr, &err);
	progress_finish(&bar);
	if (rc < 0)
		return fail(rc, &err);
	return report_written(out, SHOW_CLASSES);
}

int main(int argc, char **argv)
{
	static const struct cmd cmds[] = {{"import-idx", cmd_import_idx},
					  {"info", cmd_info},
					  {"split", cmd_split},
					  {"imbalance", cmd_imbalance},
					  {"merge", cmd_merge}};
	return cmd_dispatch(prog, argc, argv, cmds, sizeof cmds / sizeof cmds[0], usage);
}
