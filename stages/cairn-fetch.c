/* cairn-fetch: download the XYZ tiles of a bbox at one zoom from a tile
 * server into DIR/Z/X/Y.EXT, with a manifest that makes a rerun free. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/cmd.h"
#include "core/progress.h"
#include "geo/cog.h"
#include "geo/fetch.h"
#include "geo/tile.h"

static const char usage[] =
	"usage: cairn-fetch --url TEMPLATE --zoom Z --bbox W,S,E,N --out DIR [options]\n"
	"       cairn-fetch --cog PATH|URL --zoom Z [--bbox W,S,E,N] --out DIR\n"
	"Downloads every tile of the bbox at zoom Z to DIR/Z/X/Y.EXT, exactly as served,\n"
	"and records DIR/manifest.tsv (path, bytes, sha256, status, and the source:\n"
	"the --url template or the --cog source). A rerun skips tiles that are valid\n"
	"in the manifest without asking the server. A rerun with another source is\n"
	"refused (the folder's tiles are another source's), unless --refetch: then\n"
	"the recorded tiles are removed and every tile is fetched again.\n"
	"A run (a shard) makes at most 16777216 tiles: shard larger areas.\n"
	"\n"
	"  --url T            SCHEME://HOST/PATH template with {z} {x} {y} ({-y}: TMS\n"
	"                     row, {q}: quadkey)\n"
	"  --zoom Z           0..30\n"
	"  --bbox W,S,E,N     degrees; --bbox=W,S,E,N also works, negatives allowed\n"
	"  --out DIR          output folder\n"
	"  --shard I/N        do part I of N (0-based) of the tile set\n"
	"  --concurrency N    transfers in flight (default 16)\n"
	"  --rate R           requests per second per host (default: no limit)\n"
	"  --retries N        retries per tile on 5xx, 429, timeouts, bad bodies (default 5)\n"
	"  --backoff S        first retry delay, doubling, with jitter (default 0.5)\n"
	"  --max-backoff S    longest single delay (default 30)\n"
	"  --max-retry-after S  cap on a server's Retry-After (default 120)\n"
	"  --stall S          abort a transfer silent for S seconds (default 15)\n"
	"  --timeout S        whole-transfer limit (default 120)\n"
	"  --ext EXT          file type when the template does not end in one\n"
	"  --threads N        decode-check/write threads; with --cog, tiles warped at\n"
	"                     once (default: OMP_NUM_THREADS, else the CPUs; at most 8)\n"
	"  --verify full|gdal|fast|none  full (default): all image data decodes (PNG:\n"
	"                     chunk CRCs, IHDR as libpng checks it, the image data\n"
	"                     inflates to exactly the promised rows; other types: GDAL\n"
	"                     reads every pixel); gdal: GDAL's driver reads every pixel\n"
	"                     of every type (slower); fast: PNG chunk CRCs / JPEG\n"
	"                     markers + GDAL reads the header;\n"
	"                     none: length check only (--no-verify is the same)\n"
	"  --seed N           jitter seed (default 1)\n"
	"  --json             print the summary as JSON\n"
	"  --cog SRC          instead of a tile server: a (Cloud-Optimized) GeoTIFF, a\n"
	"                     path or an http(s) URL read with range requests\n"
	"                     (/vsicurl/), reprojected to EPSG:3857 and cut into\n"
	"                     tiles Z/X/Y.tif (--ext png for Byte data); the bbox\n"
	"                     defaults to the source's extent; empty tiles are\n"
	"                     recorded 'missing'\n"
	"  --resampling R     for --cog: near, bilinear (default), cubic, average, ...\n"
	"  --refetch          the manifest records another source: remove its tiles and\n"
	"                     fetch every tile from this one\n"
	"Exit: 0 every tile fetched or known missing (404), 1 some failed (listed),\n"
	"2 bad usage or unreadable input (a --url that is not a URL, more tiles than\n"
	"a run makes, a --cog source that cannot be opened or has no georeferencing,\n"
	"a folder where the manifest goes, another source's folder without --refetch).\n"
	"\n"
	"example:\n"
	"  cairn-fetch --url 'https://tile.example.org/{z}/{x}/{y}.png' --zoom 15 \\\n"
	"      --bbox -122.52,37.70,-122.35,37.83 --out tiles --concurrency 32 --rate 50\n";

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)total;
	progress_update(ctx, done);
}

/* The manifest's source line (another source, or none recorded): said once,
 * before the work starts, on stderr. */
static void on_note(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "cairn-fetch: %s\n", line);
}

static int parse_num(const char *name, const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || !(v >= lo && v <= hi)) {
		fprintf(stderr, "cairn-fetch: --%s '%s': want a number in %g..%g\n", name, s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", required_argument, 0, 'u'},      {"zoom", required_argument, 0, 'z'},
		{"bbox", required_argument, 0, 'b'},     {"out", required_argument, 0, 'o'},
		{"shard", required_argument, 0, 's'},    {"concurrency", required_argument, 0, 'c'},
		{"rate", required_argument, 0, 'r'},     {"retries", required_argument, 0, 'R'},
		{"backoff", required_argument, 0, 'B'},  {"max-backoff", required_argument, 0, 'M'},
		{"max-retry-after", required_argument, 0, 'A'},
		{"stall", required_argument, 0, 'S'},    {"timeout", required_argument, 0, 'T'},
		{"ext", required_argument, 0, 'e'},      {"threads", required_argument, 0, 't'},
		{"no-verify", no_argument, 0, 'V'},      {"seed", required_argument, 0, 'x'},
		{"verify", required_argument, 0, 'v'},
		{"cog", required_argument, 0, 'C'},      {"resampling", required_argument, 0, 'X'},
		{"json", no_argument, 0, 'j'},           {"help", no_argument, 0, 'h'},
		{"refetch", no_argument, 0, 'F'},
		{0, 0, 0, 0}};
	struct fetch_opts o;
	fetch_opts_init(&o);
	struct error err;
	int zoom = -1, have_bbox = 0, json = 0;
	const char *cog = NULL, *resampling = NULL;
	struct bbox bb = {0, 0, 0, 0};
	double v;
	int c;
	while ((c = cmd_getopt("cairn-fetch", argc, argv, "h", longopts)) != -1) {
		switch (c) {
		case 'u': o.url = optarg; break;
		case 'F': o.refetch = 1; break;
		case 'z':
			if (parse_num("zoom", optarg, 0, TILE_MAX_ZOOM, &v) < 0)
				return 2;
			zoom = (int)v;
			break;
		case 'b':
			if (tile_parse_bbox(optarg, &bb, &err) < 0) {
				fprintf(stderr, "cairn-fetch: --bbox: %s\n", err.msg);
				return 2;
			}
			have_bbox = 1;
			break;
		case 'o': o.out_dir = optarg; break;
		case 's':
			if (tile_parse_shard(optarg, &o.shard_i, &o.shard_n, &err) < 0) {
				fprintf(stderr, "cairn-fetch: --shard: %s\n", err.msg);
				return 2;
			}
			break;
		case 'c':
			if (parse_num("concurrency", optarg, 1, 4096, &v) < 0)
				return 2;
			o.concurrency = (int)v;
			break;
		case 'r':
			if (parse_num("rate", optarg, 0, 1e6, &o.rate) < 0)
				return 2;
			break;
		case 'R':
			if (parse_num("retries", optarg, 0, 100, &v) < 0)
				return 2;
			o.retries = (int)v;
			break;
		case 'B':
			if (parse_num("backoff", optarg, 0, 3600, &o.backoff) < 0)
				return 2;
			break;
		case 'M':
			if (parse_num("max-backoff", optarg, 0, 3600, &o.backoff_max) < 0)
				return 2;
			break;
		case 'A':
			if (parse_num("max-retry-after", optarg, 0, 86400, &o.max_retry_after) < 0)
				return 2;
			break;
		case 'S':
			if (parse_num("stall", optarg, 1, 3600, &o.stall) < 0)
				return 2;
			break;
		case 'T':
			if (parse_num("timeout", optarg, 0.1, 86400, &o.timeout) < 0)
				return 2;
			break;
		case 'e': o.ext = optarg; break;
		case 't':
			if (parse_num("threads", optarg, 1, 256, &v) < 0)
				return 2;
			o.threads = (int)v;
			break;
		case 'V': o.verify = FETCH_VERIFY_NONE; break;
		case 'v':
			if (strcmp(optarg, "full") == 0)
				o.verify = FETCH_VERIFY_FULL;
			else if (strcmp(optarg, "gdal") == 0)
				o.verify = FETCH_VERIFY_GDAL;
			else if (strcmp(optarg, "fast") == 0)
				o.verify = FETCH_VERIFY_FAST;
			else if (strcmp(optarg, "none") == 0)
				o.verify = FETCH_VERIFY_NONE;
			else {
				fprintf(stderr,
					"cairn-fetch: --verify '%s': want full, gdal, fast or none\n",
					optarg);
				return 2;
			}
			break;
		case 'x':
			if (parse_num("seed", optarg, 0, 4294967295.0, &v) < 0)
				return 2;
			o.seed = (unsigned long)v;
			break;
		case 'j': json = 1; break;
		case 'C': cog = optarg; break;
		case 'X': resampling = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cairn-fetch: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (cog) {
		if (zoom < 0 || !o.out_dir) {
			fprintf(stderr, "cairn-fetch: --cog needs --zoom and --out\n");
			return 2;
		}
		struct cog_opts co = {cog,	 o.out_dir, o.ext,     zoom,	have_bbox, bb,
				      o.shard_i, o.shard_n, resampling, o.threads, o.refetch, on_note,
				      NULL};
		struct cog_stats cs;
		int crc = cog_run(&co, &cs, &err);
		if (crc < 0) {
			fprintf(stderr, "cairn-fetch: %s\n", err.msg);
			return crc == COG_EBADINPUT ? 2 : 1;
		}
		printf("cairn-fetch: %llu tiles from %s: %llu written, %llu cached, %llu empty; "
		       "%.2f s, %.1f tiles/s\n  manifest: %s\n",
		       (unsigned long long)cs.total, cog, (unsigned long long)cs.written,
		       (unsigned long long)cs.cached, (unsigned long long)cs.empty, cs.seconds,
		       cs.seconds > 0 ? (double)cs.total / cs.seconds : 0, cs.manifest);
		return 0;
	}
	if (!o.url || zoom < 0 || !have_bbox || !o.out_dir) {
		fprintf(stderr, "cairn-fetch: --url, --zoom, --bbox and --out are required\n%s", usage);
		return 2;
	}
	if (tile_range_from_bbox(&bb, zoom, &o.range, &err) < 0) {
		fprintf(stderr, "cairn-fetch: %s\n", err.msg);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	struct progress pr;
	progress_init(&pr, "fetch", "tiles", 0);
	o.stop = &stop;
	o.on_progress = on_progress;
	o.on_note = on_note;
	o.ctx = &pr;
	struct fetch_result res;
	int frc = fetch_run(&o, &res, &err);
	if (frc < 0) {
		fprintf(stderr, "cairn-fetch: %s\n", err.msg);
		fetch_result_release(&res);
		return frc == FETCH_EBADINPUT ? 2 : 1;
	}
	progress_finish(&pr);
	const struct fetch_stats *s = &res.stats;
	double rate = s->seconds > 0 ? (double)(s->fetched + s->cached) / s->seconds : 0;
	if (json) {
		json_t *j = json_pack("{sI sI sI sI sI sI sI sI sI sf sf sb ss}", "total",
				      (json_int_t)s->total, "fetched", (json_int_t)s->fetched,
				      "cached", (json_int_t)s->cached, "missing",
				      (json_int_t)s->missing, "failed", (json_int_t)s->failed,
				      "requests", (json_int_t)s->requests, "retries",
				      (json_int_t)s->retries, "rejected", (json_int_t)s->rejected,
				      "bytes", (json_int_t)s->bytes, "seconds", s->seconds,
				      "tiles_per_s", rate, "interrupted", s->interrupted, "manifest",
				      res.manifest);
		if (j) {
			json_dumpf(j, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
			json_decref(j);
		}
	} else {
		printf("cairn-fetch: %llu tiles: %llu fetched, %llu cached, %llu missing (404), "
		       "%llu failed\n",
		       (unsigned long long)s->total, (unsigned long long)s->fetched,
		       (unsigned long long)s->cached, (unsigned long long)s->missing,
		       (unsigned long long)s->failed);
		printf("  %llu requests (%llu retries, %llu bodies rejected), %.1f MB in %.2f s, "
		       "%.0f tiles/s\n",
		       (unsigned long long)s->requests, (unsigned long long)s->retries,
		       (unsigned long long)s->rejected, (double)s->bytes / 1e6, s->seconds, rate);
		printf("  manifest: %s\n", res.manifest);
	}
	for (size_t i = 0; i < res.nfailures && i < 50; i++)
		fprintf(stderr, "failed: %s: %s\n", res.failures[i].path, res.failures[i].why);
	if (res.nfailures > 50)
		fprintf(stderr, "failed: ... and %zu more (status 'failed' in %s)\n",
			res.nfailures - 50, res.manifest);
	if (s->interrupted)
		fprintf(stderr, "cairn-fetch: interrupted; rerun to finish (%llu tiles left)\n",
			(unsigned long long)(s->total - s->fetched - s->cached - s->missing -
					     s->failed));
	int rc = s->failed || s->interrupted ? 1 : 0;
	fetch_result_release(&res);
	return rc;
}
