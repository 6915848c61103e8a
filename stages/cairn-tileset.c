/* cairn-tileset: XYZ GeoTIFF tile folders <-> mask dataset shards, so that
 * the training programs (no GDAL) can learn from imagery and label tiles and
 * their predictions go back on the map for cairn-eval.
 *   pack    imagery (+ label) tiles -> one mask shard
 *   unpack  a mask shard -> label tiles DIR/Z/X/Y.tif
 * Exit 0 ok, 1 failure of the work (I/O), 2 bad usage or bad input. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/cmd.h"
#include "core/cpus.h"
#include "core/parse.h"
#include "core/progress.h"
#include "geo/tile.h"
#include "geo/tileset.h"

#define EXIT_USAGE 2

static const char *prog = "cairn-tileset";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s COMMAND [options]\n"
		"\n"
		"Packs XYZ GeoTIFF tiles into a mask dataset shard (for the training programs,\n"
		"which read shards and do not link GDAL) and unpacks a shard of predicted masks\n"
		"back into label tiles that cairn-eval scores.\n"
		"\n"
		"commands:\n"
		"  pack --imagery DIR [--labels DIR] --out SHARD [--zoom Z] [--classes K]\n"
		"       [--missing-labels error|ignore] [--shard I/N] [--threads N]\n"
		"  unpack --in SHARD --out DIR [--like DIR] [--threads N]\n"
		"\n"
		"'%s COMMAND --help' describes each command.\n"
		"\n"
		"example:\n"
		"  %s pack --imagery scene/imagery --labels labels --out train.ds\n"
		"  %s unpack --in pred.ds --out pred --like scene/imagery\n"
		"  cairn-eval --pred pred --truth scene/truth\n"
		"\n"
		"exit status: 0 ok, 1 the work failed (I/O), 2 bad usage or bad input.\n",
		prog, prog, prog, prog);
}

static int bad_usage(const char *cmd, const char *fmt, const char *arg)
{
	return cmd_bad_usage(prog, cmd, fmt, arg);
}

static int fail(int rc, const struct error *err)
{
	fprintf(stderr, "%s: %s\n", prog, err->msg);
	return rc == TILESET_EBADINPUT ? EXIT_USAGE : 1;
}

/* --threads N: 1..TILESET_MAX_THREADS; -1 if not. */
static int parse_threads(const char *s)
{
	long v;
	return parse_long(s, 1, TILESET_MAX_THREADS, &v) < 0 ? -1 : (int)v;
}

/* Usable CPUs, at most 8 (as cairn-rasterize). */
static int default_threads(void)
{
	int n = cpus_default_threads();
	return n > 8 ? 8 : n;
}

/* A progress line on a terminal (silent in logs), fed by the library. */
static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;
	p->total = total;
	progress_update(p, done);
}

static int cmd_pack(int argc, char **argv)
{
	static const char *help =
	    "usage: cairn-tileset pack --imagery DIR [--labels DIR] --out SHARD [options]\n"
	    "\n"
	    "Packs every imagery tile DIR/Z/X/Y.tif of one zoom, in (x, y) order, with the\n"
	    "label tile of the same z/x/y, into one mask shard (docs/formats.md): C x H x W\n"
	    "uint8 pixels (C = the imagery's bands, 1..4; H x W = the tile size), an H x W\n"
	    "mask of classes (255: no label) and the tile's z/x/y. Every imagery tile must\n"
	    "have the size, band count and type (Byte) of the first; label tiles are one\n"
	    "Byte band of the same size, values 0..K-1 or 255. Without --labels every mask\n"
	    "is 255: imagery to predict on. The shard is written to a temp file and renamed\n"
	    "into place: on any error no shard is left.\n"
	    "\n"
	    "  --imagery DIR            imagery tiles DIR/Z/X/Y.tif\n"
	    "  --labels DIR             label tiles on the same grid (cairn-rasterize --like)\n"
	    "  --out SHARD              the mask shard to write\n"
	    "  --zoom Z                 which zoom folder (default: the only one)\n"
	    "  --classes K              classes 0..K-1, 1..255 (default 3: background, road,\n"
	    "                           building); a label value >= K other than 255 is an error\n"
	    "  --missing-labels error|ignore\n"
	    "                           an imagery tile without a label tile: an error naming it\n"
	    "                           (default), or packed with every pixel 255 (no label)\n"
	    "  --shard I/N              only tiles k (0-based, in (x, y) order) with k mod N = I:\n"
	    "                           an array of N tasks packs all tiles once, each shard\n"
	    "                           spread over the whole area; a shard packs at most\n"
	    "                           16777216 tiles\n"
	    "  --threads N              tiles decoded at once, 1..64 (default:\n"
	    "                           OMP_NUM_THREADS, else the CPUs; at most 8); the\n"
	    "                           shard is the same for any N\n"
	    "Exit: 0 ok, 1 the work failed (I/O), 2 bad usage or bad input (a missing,\n"
	    "corrupt or mismatched tile, a label out of range).\n"
	    "\n"
	    "example:\n"
	    "  cairn-rasterize --vector scene/map.gpkg --class-field class --width-field width \\\n"
	    "      --zoom 17 --like scene/imagery --out labels\n"
	    "  cairn-tileset pack --imagery scene/imagery --labels labels --out train.ds\n";
	static const struct option opts[] = {
	    {"imagery", required_argument, 0, 'i'}, {"labels", required_argument, 0, 'l'},
	    {"out", required_argument, 0, 'o'},	    {"zoom", required_argument, 0, 'z'},
	    {"classes", required_argument, 0, 'k'}, {"missing-labels", required_argument, 0, 'm'},
	    {"shard", required_argument, 0, 'S'},   {"threads", required_argument, 0, 't'},
	    {"help", no_argument, 0, 'h'},	    {0, 0, 0, 0}};
	struct tileset_pack_opts o;
	tileset_pack_opts_init(&o);
	o.threads = default_threads();
	const char *out = NULL;
	struct error err;
	char *end;
	int c;
	while ((c = cmd_getopt(prog, argc, argv, "h", opts)) != -1) {
		switch (c) {
		case 'i':
			o.imagery = optarg;
			break;
		case 'l':
			o.labels = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'z':
			o.zoom = (int)strtol(optarg, &end, 10);
			if (end == optarg || *end || o.zoom < 0 || o.zoom > TILE_MAX_ZOOM)
				return bad_usage("pack", "--zoom '%s': want 0..30", optarg);
			break;
		case 'k': {
			long k = strtol(optarg, &end, 10);
			if (end == optarg || *end || k < 1 || k > 255)
				return bad_usage("pack",
						 "--classes '%s': want 1..255 (255 is the "
						 "no-label value, so classes are 0..254)",
						 optarg);
			o.num_classes = (uint32_t)k;
			break;
		}
		case 'm':
			if (!strcmp(optarg, "error"))
				o.missing = TILESET_MISSING_ERROR;
			else if (!strcmp(optarg, "ignore"))
				o.missing = TILESET_MISSING_IGNORE;
			else
				return bad_usage(
				    "pack", "--missing-labels '%s': want error or ignore", optarg);
			break;
		case 'S':
			if (tile_parse_shard(optarg, &o.shard_i, &o.shard_n, &err) < 0)
				return bad_usage("pack", "--shard: %s", err.msg);
			break;
		case 't':
			if ((o.threads = parse_threads(optarg)) < 0)
				return bad_usage("pack", "--threads '%s': want 1..64", optarg);
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return bad_usage("pack", "%s", "bad option");
		}
	}
	if (optind < argc)
		return bad_usage("pack", "unexpected argument '%s'", argv[optind]);
	if (!o.imagery || !out)
		return bad_usage("pack", "%s", "--imagery and --out are required");
	if (!o.labels && o.missing == TILESET_MISSING_IGNORE)
		return bad_usage("pack", "%s", "--missing-labels without --labels");
	double t0 = clock_now();
	struct progress bar;
	progress_init(&bar, "pack", "tiles", 0);
	struct dataset_progress pr = {on_progress, &bar};
	struct tileset_stats st;
	int rc = tileset_pack(&o, out, &pr, &st, &err);
	progress_finish(&bar);
	if (rc < 0)
		return fail(rc, &err);
	double dt = clock_now() - t0;
	printf("%s: %" PRIu64 " of %" PRIu64 " tiles at zoom %d (shard %d/%d) -> %s: "
	       "%" PRIu32 "x%" PRIu32 "x%" PRIu32 ", %" PRIu32
	       " classes, %s; %.2f s, %.0f tiles/s\n",
	       prog, st.tiles, st.listed, st.zoom, o.shard_i, o.shard_n, out, st.shape.channels,
	       st.shape.height, st.shape.width, st.shape.num_classes,
	       o.labels ? "labelled" : "unlabelled (masks 255)", dt,
	       dt > 0 ? (double)st.tiles / dt : 0);
	if (st.missing_labels)
		printf("  %" PRIu64 " tiles had no label tile: packed with every pixel 255\n",
		       st.missing_labels);
	return 0;
}

static int cmd_unpack(int argc, char **argv)
{
	static const char *help =
	    "usage: cairn-tileset unpack --in SHARD --out DIR [--like DIR] [--threads N]\n"
	    "\n"
	    "Writes the mask of every record of a mask shard (cairn-tileset pack, or a\n"
	    "model's predictions, which keep the records' tiles) as a single-band Byte\n"
	    "GeoTIFF DIR/Z/X/Y.tif, georeferenced from the record's z/x/y exactly like\n"
	    "cairn-rasterize's label tiles (EPSG:3857, DEFLATE), so cairn-eval scores it.\n"
	    "Mask value 255 (no label) is written as it is: cairn-eval counts it as\n"
	    "background and reports it in bad_values. Each tile is written to a temp file\n"
	    "and renamed, so an interrupted unpack leaves no half tile. Checked before any\n"
	    "tile is written: the shard's checksum and mask values, a key on every record,\n"
	    "no tile twice, and with --like, that every tile exists in that folder.\n"
	    "Tiles already in DIR that the shard does not have are left there (cairn-eval\n"
	    "would score them): unpack into an empty folder.\n"
	    "\n"
	    "  --in SHARD               a mask shard\n"
	    "  --out DIR                output folder\n"
	    "  --like DIR               every record's DIR/Z/X/Y.tif must exist (the imagery\n"
	    "                           the predictions are of), to catch a shard of another\n"
	    "                           scene\n"
	    "  --threads N              tiles written at once, 1..64 (default:\n"
	    "                           OMP_NUM_THREADS, else the CPUs; at most 8)\n"
	    "Exit: 0 ok, 1 the work failed (I/O), 2 bad usage or bad input.\n"
	    "\n"
	    "example:\n"
	    "  cairn-tileset unpack --in pred.ds --out pred --like scene/imagery\n";
	static const struct option opts[] = {
	    {"in", required_argument, 0, 'i'},	 {"out", required_argument, 0, 'o'},
	    {"like", required_argument, 0, 'L'}, {"threads", required_argument, 0, 't'},
	    {"help", no_argument, 0, 'h'},	 {0, 0, 0, 0}};
	const char *in = NULL, *out = NULL, *like = NULL;
	int threads = default_threads(), c;
	while ((c = cmd_getopt(prog, argc, argv, "h", opts)) != -1) {
		switch (c) {
		case 'i':
			in = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'L':
			like = optarg;
			break;
		case 't':
			if ((threads = parse_threads(optarg)) < 0)
				return bad_usage("unpack", "--threads '%s': want 1..64", optarg);
			break;
		case 'h':
			fputs(help, stdout);
			return 0;
		default:
			return bad_usage("unpack", "%s", "bad option");
		}
	}
	if (optind < argc)
		return bad_usage("unpack", "unexpected argument '%s'", argv[optind]);
	if (!in || !out)
		return bad_usage("unpack", "%s", "--in and --out are required");
	double t0 = clock_now();
	struct progress bar;
	progress_init(&bar, "unpack", "tiles", 0);
	struct dataset_progress pr = {on_progress, &bar};
	struct tileset_stats st;
	struct error err;
	int rc = tileset_unpack(in, out, like, threads, &pr, &st, &err);
	progress_finish(&bar);
	if (rc < 0)
		return fail(rc, &err);
	double dt = clock_now() - t0;
	printf("%s: %s -> %" PRIu64 " tiles of %" PRIu32 "x%" PRIu32 " in %s; %.2f s, %.0f "
	       "tiles/s\n",
	       prog, in, st.tiles, st.shape.width, st.shape.height, out, dt,
	       dt > 0 ? (double)st.tiles / dt : 0);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct cmd cmds[] = {{"pack", cmd_pack}, {"unpack", cmd_unpack}};
	return cmd_dispatch(prog, argc, argv, cmds, sizeof cmds / sizeof cmds[0], usage);
}
