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

/* An output written in place (/dev/null, a FIFO, /dev/stdout) cannot be
 * reopened to report on it. */
static int written_in_place(const char *path)
{
	if (!fs_is_in_place(path))
		return 0;
	printf("%s: written\n", path);
	return 1;
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
	static const struct option opts[] = {
	    {"images", required_argument, 0, 'i'}, {"labels", required_argument, 0, 'l'},
	    {"out", required_argument, 0, 'o'},	   {"classes", required_argument, 0, 'k'},
	    {"help", no_argument, 0, 'h'},	   {0, 0, 0, 0}};
	const char *images = NULL, *labels = NULL, *out = NULL;
	uint64_t classes = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			images = optarg;
			break;
		case 'l':
			labels = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'k':
			if (parse_u64(optarg, &classes) < 0 || classes == 0 || classes > 256)
				return bad_usage("import-idx", "--classes '%s': expected 1 to 256",
						 optarg);
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return bad_usage("import-idx", "%s", "bad option");
		}
	}
	if (optind < argc)
		return bad_usage("import-idx", "unexpected argument '%s'", argv[optind]);
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
	if (written_in_place(out))
		return 0;
	struct dataset ds;
	if ((rc = dataset_open(&ds, out, 0, &err)) < 0)
		return fail(rc, &err);
	printf("%s: %" PRIu64 " records, %ux%ux%u, %u classes\n", out, ds.count, ds.shape.channels,
	       ds.shape.height, ds.shape.width, ds.shape.num_classes);
	dataset_close(&ds);
	return 0;
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
	static const struct option opts[] = {{"json", no_argument, 0, 'j'},
					     {"no-verify", no_argument, 0, 'n'},
					     {"help", no_argument, 0, 'h'},
					     {0, 0, 0, 0}};
	int json = 0, verify = 1, c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'n':
			verify = 0;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return bad_usage("info", "%s", "bad option");
		}
	}
	if (argc - optind != 1)
		return bad_usage("info", "%s", "expected one SHARD");
	const char *path = argv[optind];
	struct error err;
	struct dataset ds;
	int rc = dataset_open(&ds, path, verify ? DATASET_VERIFY : 0, &err);
	if (rc < 0)
		return fail(rc, &err);
	uint32_t K = ds.shape.num_classes, C = ds.shape.channels;
	uint64_t *hist = mem_alloc(sizeof(uint64_t) * K);
	if (!hist) {
		dataset_close(&ds);
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
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
	int status = 0;
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
	static const struct option opts[] = {
	    {"fraction", required_argument, 0, 'f'}, {"seed", required_argument, 0, 's'},
	    {"out", required_argument, 0, 'o'},	     {"rest", required_argument, 0, 'r'},
	    {"help", no_argument, 0, 'h'},	     {0, 0, 0, 0}};
	const char *out = NULL, *rest = NULL;
	double fraction = -1;
	uint64_t seed = 0;
	int have_seed = 0, c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (parse_double(optarg, &fraction) < 0 ||
			    !(fraction >= 0 && fraction <= 1))
				return bad_usage("split",
						 "--fraction '%s': expected a number from 0 to 1",
						 optarg);
			break;
		case 's':
			if (parse_u64(optarg, &seed) < 0)
				return bad_usage("split",
						 "--seed '%s': expected a non-negative integer",
						 optarg);
			have_seed = 1;
			break;
		case 'o':
			out = optarg;
			break;
		case 'r':
			rest = optarg;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return bad_usage("split", "%s", "bad option");
		}
	}
	if (argc - optind != 1)
		return bad_usage("split", "%s", "expected one SHARD");
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
	const char *names[2] = {out, rest};
	for (int i = 0; i < 2; i++) {
		if (written_in_place(names[i]))
			continue;
		if ((rc = dataset_open(&ds, names[i], 0, &err)) < 0)
			return fail(rc, &err);
		printf("%s: %" PRIu64 " records\n", names[i], ds.count);
		dataset_close(&ds);
	}
	return 0;
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
	static const struct option opts[] = {
	    {"zipf", required_argument, 0, 'z'}, {"seed", required_argument, 0, 's'},
	    {"out", required_argument, 0, 'o'},	 {"head", required_argument, 0, 'H'},
	    {"min", required_argument, 0, 'm'},	 {"dry-run", no_argument, 0, 'd'},
	    {"help", no_argument, 0, 'h'},	 {0, 0, 0, 0}};
	struct dataset_imbalance opt = {.zipf_s = -1, .min_keep = 1};
	const char *out = NULL;
	int have_seed = 0, dry = 0, c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'z':
			if (parse_double(optarg, &opt.zipf_s) < 0 ||
			    !(opt.zipf_s >= 0 && opt.zipf_s <= 100))
				return bad_usage("imbalance",
						 "--zipf '%s': expected a number from 0 to 100",
						 optarg);
			break;
		case 's':
			if (parse_u64(optarg, &opt.seed) < 0)
				return bad_usage("imbalance",
						 "--seed '%s': expected a non-negative integer",
						 optarg);
			have_seed = 1;
			break;
		case 'H':
			if (parse_u64(optarg, &opt.head) < 0 || opt.head == 0)
				return bad_usage("imbalance",
						 "--head '%s': expected a positive integer",
						 optarg);
			break;
		case 'm':
			if (parse_u64(optarg, &opt.min_keep) < 0)
				return bad_usage("imbalance",
						 "--min '%s': expected a non-negative integer",
						 optarg);
			break;
		case 'o':
			out = optarg;
			break;
		case 'd':
			dry = 1;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return bad_usage("imbalance", "%s", "bad option");
		}
	}
	if (argc - optind != 1)
		return bad_usage("imbalance", "%s", "expected one SHARD");
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
	if (!keep) {
		dataset_close(&ds);
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
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
	static const struct option opts[] = {
	    {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
	const char *out = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return bad_usage("merge", "%s", "bad option");
		}
	}
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
	if (written_in_place(out))
		return 0;
	struct dataset ds;
	if ((rc = dataset_open(&ds, out, 0, &err)) < 0)
		return fail(rc, &err);
	printf("%s: %" PRIu64 " records, %u classes\n", out, ds.count, ds.shape.num_classes);
	dataset_close(&ds);
	return 0;
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
