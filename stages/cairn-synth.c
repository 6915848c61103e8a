/* cairn-synth: a seeded synthetic aerial scene with exact truth and a noisy
 * OSM-like map: imagery tiles, truth tiles, map and truth vectors, a preview. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/cmd.h"
#include "core/clock.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "geo/raster.h"
#include "geo/synth.h"
#include "geo/tile.h"

static const char usage[] =
	"usage: cairn-synth --out DIR [options]\n"
	"Generates a synthetic aerial scene of N x N XYZ tiles (about 1 m/pixel at\n"
	"zoom 17) with its truth and an OpenStreetMap-like map that has errors:\n"
	"  DIR/imagery/Z/X/Y.tif   RGB GeoTIFF tiles, EPSG:3857\n"
	"  DIR/truth/Z/X/Y.tif     labels: 0 background, 1 road, 2 building\n"
	"  DIR/map.gpkg            the noisy map, EPSG:4326: layers roads (class,\n"
	"                          width, kind) and buildings (class)\n"
	"  DIR/truth.gpkg          the true vectors, EPSG:3857, same layers\n"
	"  DIR/preview.png         imagery | truth | noisy map labels\n"
	"  DIR/scene.json          parameters, tiles and counts\n"
	"\n"
	"  --zoom Z                 (default 17)\n"
	"  --center LON,LAT         scene centre (default -97.74,30.27: 1.03 m/px at z17)\n"
	"  --tiles N                scene of N x N tiles (default 4)\n"
	"  --scene K                K-th scene: K*(N+1) tiles east of the first, seed+K\n"
	"  --seed S                 (default 1)\n"
	"  --missing-buildings F    fraction of buildings not in the map (default 0.15)\n"
	"  --road-offset M          std dev of road centre-line offsets, metres (default 2)\n"
	"  --width-error F          map width = true * (1 + U(-F, F)) (default 0.3)\n"
	"  --outdated F             fraction of outdated buildings (extended since\n"
	"                           mapping) and of demolished ones still mapped (0.05)\n"
	"  --shift M                whole-map misregistration, metres (default 1)\n"
	"  --preview-size PX        width of each preview panel (default 512; 0: none)\n"
	"Exit: 0 ok, 1 failure, 2 bad usage.\n"
	"\n"
	"example:\n"
	"  cairn-synth --out scene --tiles 4 --seed 7 --missing-buildings 0.2 --road-offset 3\n";

static int num(const char *name, const char *s, double lo, double hi, double *v)
{
	char *end;
	*v = strtod(s, &end);
	if (end == s || *end || !(*v >= lo && *v <= hi)) {
		fprintf(stderr, "cairn-synth: --%s '%s': want a number in %g..%g\n", name, s, lo, hi);
		return -1;
	}
	return 0;
}

/* Box-filter a w x w plane set down to p x p (w a multiple of p or not). */
static void shrink(const uint8_t *src, int w, int bands, int nearest, uint8_t *dst, int p,
		   size_t dplane, int xoff)
{
	size_t splane = (size_t)w * w;
	double f = (double)w / p;
	for (int b = 0; b < bands; b++)
		for (int y = 0; y < p; y++)
			for (int x = 0; x < p; x++) {
				int x0 = (int)(x * f), y0 = (int)(y * f);
				int x1 = (int)((x + 1) * f), y1 = (int)((y + 1) * f);
				if (nearest) {
					dst[b * dplane + (size_t)y * 3 * p + xoff + x] =
						src[b * splane + (size_t)((y0 + y1) / 2) * w + (x0 + x1) / 2];
					continue;
				}
				unsigned sum = 0, n = 0;
				for (int yy = y0; yy < y1; yy++)
					for (int xx = x0; xx < x1; xx++, n++)
						sum += src[b * splane + (size_t)yy * w + xx];
				dst[b * dplane + (size_t)y * 3 * p + xoff + x] = (uint8_t)(n ? sum / n : 0);
			}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"out", required_argument, 0, 'o'},          {"zoom", required_argument, 0, 'z'},
		{"center", required_argument, 0, 'c'},       {"tiles", required_argument, 0, 'n'},
		{"scene", required_argument, 0, 'k'},        {"seed", required_argument, 0, 's'},
		{"missing-buildings", required_argument, 0, 'm'},
		{"road-offset", required_argument, 0, 'r'},  {"width-error", required_argument, 0, 'w'},
		{"outdated", required_argument, 0, 'u'},     {"shift", required_argument, 0, 'S'},
		{"preview-size", required_argument, 0, 'p'}, {"help", no_argument, 0, 'h'},
		{0, 0, 0, 0}};
	struct synth_params p;
	synth_params_init(&p);
	const char *out = NULL;
	double lon = -97.74, lat = 30.27, v;
	int zoom = 17, scene = 0, preview = 512, c;
	struct error err;
	while ((c = cmd_getopt("cairn-synth", argc, argv, "h", longopts)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'z':
			if (num("zoom", optarg, 1, 22, &v) < 0)
				return 2;
			zoom = (int)v;
			break;
		case 'c':
			if (sscanf(optarg, "%lf,%lf", &lon, &lat) != 2 || lon < -180 || lon > 180 ||
			    lat < -85 || lat > 85) {
				fprintf(stderr,
					"cairn-synth: --center '%s': want LON,LAT with LON in "
					"-180..180 and LAT in -85..85 (web mercator ends at "
					"+-85.05)\n",
					optarg);
				return 2;
			}
			break;
		case 'n':
			if (num("tiles", optarg, 1, 64, &v) < 0)
				return 2;
			p.ntiles = (int)v;
			break;
		case 'k':
			if (num("scene", optarg, 0, 100000, &v) < 0)
				return 2;
			scene = (int)v;
			break;
		case 's':
			if (num("seed", optarg, 0, 1e18, &v) < 0)
				return 2;
			p.seed = (uint64_t)v;
			break;
		case 'm':
			if (num("missing-buildings", optarg, 0, 1, &p.missing_buildings) < 0)
				return 2;
			break;
		case 'r':
			if (num("road-offset", optarg, 0, 100, &p.road_offset) < 0)
				return 2;
			break;
		case 'w':
			if (num("width-error", optarg, 0, 0.9, &p.width_error) < 0)
				return 2;
			break;
		case 'u':
			if (num("outdated", optarg, 0, 1, &p.outdated) < 0)
				return 2;
			break;
		case 'S':
			if (num("shift", optarg, 0, 100, &p.shift) < 0)
				return 2;
			break;
		case 'p':
			if (num("preview-size", optarg, 0, 4096, &v) < 0)
				return 2;
			preview = (int)v;
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind < argc || !out) {
		fprintf(stderr, "cairn-synth: --out is required\n%s", usage);
		return 2;
	}
	if (p.missing_buildings + p.outdated > 1) {
		fprintf(stderr, "cairn-synth: --missing-buildings + --outdated must be <= 1\n");
		return 2;
	}
	struct tile ct;
	if (tile_from_lonlat(lon, lat, zoom, &ct, &err) < 0) {
		fprintf(stderr, "cairn-synth: %s\n", err.msg);
		return 2;
	}
	/* In signed arithmetic: a scene near the edge must be refused, not wrap. */
	long long ox = (long long)ct.x - p.ntiles / 2 + (long long)scene * (p.ntiles + 1);
	long long oy = (long long)ct.y - p.ntiles / 2, side = 1LL << zoom;
	if (ox < 0 || oy < 0 || ox + p.ntiles > side || oy + p.ntiles > side) {
		fprintf(stderr,
			"cairn-synth: a scene of %d x %d tiles (scene %d) around %.4f,%.4f runs off "
			"the %lld x %lld tile world at zoom %d: use a higher --zoom, fewer --tiles, "
			"or a --center further from the edge\n",
			p.ntiles, p.ntiles, scene, lon, lat, side, side, zoom);
		return 2;
	}
	p.origin.z = zoom;
	p.origin.x = (uint32_t)ox;
	p.origin.y = (uint32_t)oy;
	/* Tiles of an earlier run into the same folder must not mix with these:
	 * an earlier cairn-synth output (scene.json) is cleared; a folder that
	 * has imagery/ or truth/ but is not one is refused, not emptied. */
	const char *subs[2] = {"imagery", "truth"};
	char sub[4096], prev[4096];
	snprintf(prev, sizeof(prev), "%s/scene.json", out);
	for (int k = 0; k < 2; k++) {
		snprintf(sub, sizeof(sub), "%s/%s", out, subs[k]);
		if (!fs_exists(sub))
			continue;
		if (!fs_exists(prev)) {
			fprintf(stderr,
				"cairn-synth: %s exists, but %s is not a cairn-synth output (no "
				"scene.json): choose an empty --out\n",
				sub, out);
			return 2;
		}
		if (fs_rm_rf(sub, &err) < 0) {
			fprintf(stderr, "cairn-synth: clearing the previous scene: %s\n", err.msg);
			return 1;
		}
	}
	p.seed += (uint64_t)scene;
	double t0 = clock_now();
	struct synth_scene s;
	if (synth_generate(&p, &s, &err) < 0) {
		fprintf(stderr, "cairn-synth: %s\n", err.msg);
		return 1;
	}
	double t_gen = clock_now() - t0;
	int rc = 0;
	char path[4096];
	uint8_t *tile = mem_alloc(3 * TILE_SIZE * TILE_SIZE);
	json_t *tiles = json_array();
	if (!tile || !tiles) {
		fprintf(stderr, "cairn-synth: out of memory\n");
		rc = 1;
		goto out;
	}
	for (int j = 0; j < p.ntiles && rc == 0; j++)
		for (int i = 0; i < p.ntiles && rc == 0; i++) {
			struct tile t = {zoom, p.origin.x + (uint32_t)i, p.origin.y + (uint32_t)j};
			const char *kinds[2] = {"imagery", "truth"};
			for (int k = 0; k < 2 && rc == 0; k++) {
				snprintf(path, sizeof(path), "%s/%s/%d/%u", out, kinds[k], t.z, t.x);
				if (fs_mkdir_p(path, &err) < 0) {
					rc = 1;
					break;
				}
				snprintf(path, sizeof(path), "%s/%s/%d/%u/%u.tif", out, kinds[k], t.z, t.x, t.y);
				synth_tile_window(&s, k ? s.truth : s.rgb, k ? 1 : 3, i, j, tile);
				if (raster_write_tile(path, &t, k ? 1 : 3, tile, &err) < 0)
					rc = 1;
			}
			char name[64];
			snprintf(name, sizeof(name), "%d/%u/%u", t.z, t.x, t.y);
			json_array_append_new(tiles, json_string(name));
		}
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/map.gpkg", out);
		if (synth_write_map(&s, path, &err) < 0)
			rc = 1;
	}
	if (rc == 0) {
		snprintf(path, sizeof(path), "%s/truth.gpkg", out);
		if (synth_write_truth_vectors(&s, path, &err) < 0)
			rc = 1;
	}
	if (rc == 0 && preview > 0) {
		int pw = preview;
		size_t dplane = (size_t)3 * pw * pw;
		uint8_t *pic = mem_alloc(3 * dplane);
		uint8_t *col = mem_alloc(3 * (size_t)s.w * s.h);
		if (!pic || !col) {
			err = (struct error){"out of memory for the preview"};
			rc = 1;
		} else {
			shrink(s.rgb, s.w, 3, 0, pic, pw, dplane, 0);
			synth_colorize(s.truth, (size_t)s.w * s.h, col, (size_t)s.w * s.h);
			shrink(col, s.w, 3, 1, pic, pw, dplane, pw);
			synth_colorize(s.noisy, (size_t)s.w * s.h, col, (size_t)s.w * s.h);
			shrink(col, s.w, 3, 1, pic, pw, dplane, 2 * pw);
			snprintf(path, sizeof(path), "%s/preview.png", out);
			if (raster_write_png(path, 3 * pw, pw, 3, pic, &err) < 0)
				rc = 1;
		}
		mem_free(pic);
		mem_free(col);
	}
	size_t nb = 0;
	for (size_t i = 0; i < s.nbuildings; i++)
		nb += s.buildings[i].map_state != 3;
	if (rc == 0) {
		json_t *j = json_pack(
			"{s:i s:i s:i s:i s:I s:f s:{s:f s:f s:f s:f s:f} s:{s:I s:I s:I s:I s:I} s:o}",
			"zoom", zoom, "tiles_per_side", p.ntiles, "scene", scene, "origin_x",
			(int)p.origin.x, "seed", (json_int_t)p.seed, "ground_m_per_px", s.ground_res,
			"errors", "missing_buildings", p.missing_buildings, "road_offset_m",
			p.road_offset, "width_error", p.width_error, "outdated", p.outdated,
			"shift_m", p.shift, "counts", "roads", (json_int_t)s.nroads, "buildings",
			(json_int_t)nb, "missing_in_map", (json_int_t)s.n_missing, "outdated_in_map",
			(json_int_t)s.n_outdated, "demolished_in_map", (json_int_t)s.n_ghost, "tiles",
			json_incref(tiles));
		json_object_set_new(j, "origin_y", json_integer(p.origin.y));
		json_object_set_new(j, "classes", json_pack("{s:i s:i s:i}", "background", 0, "road", 1,
							    "building", 2));
		snprintf(path, sizeof(path), "%s/scene.json", out);
		if (!j || jsonio_write_atomic(path, j, &err) < 0)
			rc = 1;
		json_decref(j);
	}
	if (rc) {
		fprintf(stderr, "cairn-synth: %s\n", err.msg);
	} else {
		double dt = clock_now() - t0;
		printf("cairn-synth: scene %d: %d tiles at zoom %d (%.2f m/px), %zu roads, %zu buildings "
		       "(map: %zu missing, %zu outdated, %zu demolished), %.2f s (%.2f generating), "
		       "%.1f tiles/s\n",
		       scene, p.ntiles * p.ntiles, zoom, s.ground_res, s.nroads, nb, s.n_missing,
		       s.n_outdated, s.n_ghost, dt, t_gen, p.ntiles * p.ntiles / dt);
	}
out:
	json_decref(tiles);
	mem_free(tile);
	synth_scene_release(&s);
	return rc;
}
