/* cairn-rasterize: burn map vectors (any OGR source, any CRS) into 256x256
 * Byte GeoTIFF label tiles DIR/Z/X/Y.tif on the XYZ grid in EPSG:3857. */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cmd.h"
#include "core/clock.h"
#include "core/cpus.h"
#include "core/fs.h"
#include "core/mem.h"
#include "core/progress.h"
#include "geo/burn.h"
#include "geo/raster.h"
#include "geo/tile.h"
#include "geo/tiledir.h"

static const char usage[] =
	"usage: cairn-rasterize --vector FILE --zoom Z --out DIR [options]\n"
	"Burns the features of any OGR source (GeoPackage, GeoJSON, Shapefile, ...)\n"
	"in any CRS into 256x256 single-band Byte GeoTIFF tiles DIR/Z/X/Y.tif in\n"
	"EPSG:3857 on the XYZ grid, covering the features' extent or --bbox.\n"
	"Polygons fill with 1 (or the class field's value); lines (roads) are\n"
	"buffered to a width in ground metres; 0 is background. Where classes\n"
	"overlap, the higher value wins.\n"
	"\n"
	"  --vector FILE        OGR data source\n"
	"  --layer L            only this layer (default: every layer)\n"
	"  --class-field F      integer field with the burn value 0..255 (default: 1)\n"
	"  --width-field F      per-line width in metres (default: --road-width)\n"
	"  --road-width M       line width in ground metres, < 1000 (default 6)\n"
	"  --srs CRS            the data's CRS when the file has none or a wrong one\n"
	"  --zoom Z             0..30\n"
	"  --bbox W,S,E,N       degrees (default: the features' extent)\n"
	"  --like DIR           exactly the tiles in DIR/Z/X/Y.* (labels for imagery)\n"
	"  --out DIR            output folder\n"
	"  --shard I/N          part I of N (0-based) of the tiles; a run (a shard)\n"
	"                       makes at most 16777216 tiles\n"
	"  --threads N          1..256 (default: OMP_NUM_THREADS, else the CPUs it\n"
	"                       may run on; at most 8)\n"
	"Exit: 0 ok, 1 the work failed, 2 bad usage or unreadable input.\n"
	"\n"
	"example:\n"
	"  cairn-rasterize --vector map.gpkg --class-field class --width-field width \\\n"
	"      --zoom 17 --out labels\n";

struct job {
	struct burn_set *set;
	const struct tile_range *range;
	const struct tile *list; /* --like: these tiles instead of the range */
	const char *out;
	uint64_t begin, end;
	atomic_ullong next, done, nonempty;
	atomic_int failed;
	struct error err;
	pthread_mutex_t mu;
};

/* The tiles of this shard, at most TILE_MAX_PER_RUN. */
static int shard_size_check(uint64_t count, int shard_i, int shard_n, struct error *err)
{
	uint64_t begin, end;
	tile_shard(count, shard_i, shard_n, &begin, &end);
	return tile_check_run_size(end - begin, err);
}

static void *worker(void *arg)
{
	struct job *j = arg;
	uint8_t buf[TILE_SIZE * TILE_SIZE];
	for (;;) {
		uint64_t i = atomic_fetch_add(&j->next, 1) + j->begin;
		if (i >= j->end || atomic_load(&j->failed))
			break;
		struct tile t;
		struct error err;
		char dir[4096], path[4200];
		if (j->list)
			t = j->list[i];
		else
			tile_range_nth(j->range, i, &t);
		snprintf(dir, sizeof(dir), "%s/%d/%u", j->out, t.z, t.x);
		snprintf(path, sizeof(path), "%s/%u.tif", dir, t.y);
		if (burn_tile(j->set, &t, buf, &err) < 0 || fs_mkdir_p(dir, &err) < 0 ||
		    raster_write_tile(path, &t, 1, buf, &err) < 0) {
			pthread_mutex_lock(&j->mu);
			if (!atomic_exchange(&j->failed, 1))
				j->err = err;
			pthread_mutex_unlock(&j->mu);
			break;
		}
		for (size_t k = 0; k < sizeof(buf); k++)
			if (buf[k]) {
				atomic_fetch_add(&j->nonempty, 1);
				break;
			}
		atomic_fetch_add(&j->done, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"vector", required_argument, 0, 'v'},      {"layer", required_argument, 0, 'l'},
		{"class-field", required_argument, 0, 'c'}, {"width-field", required_argument, 0, 'w'},
		{"road-width", required_argument, 0, 'r'},  {"srs", required_argument, 0, 's'},
		{"zoom", required_argument, 0, 'z'},        {"bbox", required_argument, 0, 'b'},
		{"out", required_argument, 0, 'o'},         {"shard", required_argument, 0, 'S'},
		{"threads", required_argument, 0, 't'},     {"help", no_argument, 0, 'h'},
		{"like", required_argument, 0, 'L'},
		{0, 0, 0, 0}};
	struct burn_load_opts lo = {NULL, NULL, NULL, 6.0, NULL};
	const char *vector = NULL, *out = NULL, *like = NULL, *like_ext = "tif";
	struct tile *like_tiles = NULL;
	size_t nlike = 0;
	int zoom = -1, have_bbox = 0, shard_i = 0, shard_n = 1, threads = 0, c;
	struct bbox bb;
	struct error err;
	char *end;
	while ((c = cmd_getopt("cairn-rasterize", argc, argv, "h", longopts)) != -1) {
		switch (c) {
		case 'v': vector = optarg; break;
		case 'l': lo.layer = optarg; break;
		case 'c': lo.class_field = optarg; break;
		case 'w': lo.width_field = optarg; break;
		case 'r':
			lo.road_width = strtod(optarg, &end);
			if (*end || !(lo.road_width > 0 && lo.road_width < 1000)) {
				fprintf(stderr,
					"cairn-rasterize: --road-width '%s': want ground metres > 0 "
					"and < 1000\n",
					optarg);
				return 2;
			}
			break;
		case 's': lo.srs = optarg; break;
		case 'z':
			zoom = (int)strtol(optarg, &end, 10);
			if (*end || zoom < 0 || zoom > TILE_MAX_ZOOM) {
				fprintf(stderr, "cairn-rasterize: --zoom '%s': want 0..%d\n", optarg, TILE_MAX_ZOOM);
				return 2;
			}
			break;
		case 'b':
			if (tile_parse_bbox(optarg, &bb, &err) < 0) {
				fprintf(stderr, "cairn-rasterize: --bbox: %s\n", err.msg);
				return 2;
			}
			have_bbox = 1;
			break;
		case 'o': out = optarg; break;
		case 'S':
			if (tile_parse_shard(optarg, &shard_i, &shard_n, &err) < 0) {
				fprintf(stderr, "cairn-rasterize: --shard: %s\n", err.msg);
				return 2;
			}
			break;
		case 't':
			threads = (int)strtol(optarg, &end, 10);
			if (*end || threads < 1 || threads > 256) {
				fprintf(stderr, "cairn-rasterize: --threads '%s': want 1..256\n", optarg);
				return 2;
			}
			break;
		case 'L': like = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind < argc || !vector || zoom < 0 || !out) {
		fprintf(stderr, "cairn-rasterize: --vector, --zoom and --out are required\n%s", usage);
		return 2;
	}
	if (like && have_bbox) {
		fprintf(stderr, "cairn-rasterize: --like and --bbox exclude each other: --like "
				"writes exactly the tiles of its folder\n");
		return 2;
	}
	/* A --bbox's tile count is known before the vectors are read. */
	struct tile_range range = {zoom, 0, 0, 0, 0};
	if (have_bbox && (tile_range_from_bbox(&bb, zoom, &range, &err) < 0 ||
			  shard_size_check(tile_range_count(&range), shard_i, shard_n, &err) < 0)) {
		fprintf(stderr, "cairn-rasterize: %s\n", err.msg);
		return 2;
	}
	double t0 = clock_now();
	struct burn_set set;
	burn_set_init(&set);
	if (burn_load_ogr(&set, vector, &lo, &err) < 0) {
		fprintf(stderr, "cairn-rasterize: %s\n", err.msg);
		burn_set_release(&set);
		return 2;
	}
	int rc = 0;
	if (like) {
		int lz = zoom;
		rc = tiledir_list(like, like_ext, &lz, &like_tiles, &nlike, &err);
	} else if (!have_bbox) {
		struct bbox env;
		rc = burn_set_extent(&set, &env, &err);
		if (rc == 0) {
			env.w = env.w < -TILE_ORIGIN ? -TILE_ORIGIN : env.w;
			env.e = env.e > TILE_ORIGIN ? TILE_ORIGIN : env.e;
			env.s = env.s < -TILE_ORIGIN ? -TILE_ORIGIN : env.s;
			env.n = env.n > TILE_ORIGIN ? TILE_ORIGIN : env.n;
			rc = tile_range_from_merc(&env, zoom, &range, &err);
		}
	}
	if (rc < 0) {
		/* tiledir_list names the --like folder itself */
		fprintf(stderr, "cairn-rasterize: %s%s%s\n", like ? "" : vector, like ? "" : ": ",
			err.msg);
		burn_set_release(&set);
		return 2;
	}
	if (shard_size_check(like ? nlike : tile_range_count(&range), shard_i, shard_n, &err) < 0) {
		fprintf(stderr, "cairn-rasterize: %s\n", err.msg);
		burn_set_release(&set);
		mem_free(like_tiles);
		return 2;
	}
	if (burn_set_prepare(&set, &err) < 0) {
		fprintf(stderr, "cairn-rasterize: %s: %s\n", vector, err.msg);
		burn_set_release(&set);
		mem_free(like_tiles);
		return 1;
	}
	static struct job j;
	j.set = &set;
	j.range = &range;
	j.list = like_tiles;
	j.out = out;
	tile_shard(like ? nlike : tile_range_count(&range), shard_i, shard_n, &j.begin, &j.end);
	pthread_mutex_init(&j.mu, NULL);
	if (threads <= 0) {
		int n = cpus_default_threads();
		threads = n > 8 ? 8 : n;
	}
	pthread_t tid[256];
	int started = 0;
	for (int i = 0; i < threads; i++)
		if (pthread_create(&tid[i], NULL, worker, &j) == 0)
			started++;
	struct progress pr;
	progress_init(&pr, "rasterize", "tiles", j.end - j.begin);
	if (!started)
		worker(&j);
	while (started && atomic_load(&j.done) < j.end - j.begin && !atomic_load(&j.failed)) {
		progress_update(&pr, atomic_load(&j.done));
		usleep(100000);
	}
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	progress_finish(&pr);
	double dt = clock_now() - t0;
	if (atomic_load(&j.failed)) {
		fprintf(stderr, "cairn-rasterize: %s\n", j.err.msg);
		burn_set_release(&set);
		mem_free(like_tiles);
		return 1;
	}
	unsigned long long n = atomic_load(&j.done);
	printf("cairn-rasterize: %zu features -> %llu tiles at zoom %d (%llu with labels), "
	       "%.2f s, %.0f tiles/s\n",
	       set.n, n, zoom, (unsigned long long)atomic_load(&j.nonempty), dt,
	       dt > 0 ? (double)n / dt : 0);
	if (set.skipped_points || set.skipped_empty || set.skipped_bad)
		printf("  skipped: %zu points, %zu empty, %zu other or untransformable geometries\n",
		       set.skipped_points, set.skipped_empty, set.skipped_bad);
	burn_set_release(&set);
	mem_free(like_tiles);
	return 0;
}
