/* cairn-eval: score label tiles against truth tiles: per class IoU, precision,
 * recall, F1; building F1 on instances; the seam metric; an error picture. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cmd.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "geo/eval.h"
#include "geo/raster.h"
#include "geo/tile.h"
#include "geo/tiledir.h"

static const char usage[] =
	"usage: cairn-eval --pred DIR --truth DIR [--out metrics.json] [options]\n"
	"Compares label tiles PRED/Z/X/Y.tif with TRUTH/Z/X/Y.tif (one band, class\n"
	"values; 0 background, 1 road, 2 building unless --classes says otherwise)\n"
	"over every truth tile. A truth tile without a prediction counts as all\n"
	"background (and is reported).\n"
	"\n"
	"  --pred DIR            predicted (or map-derived) label tiles\n"
	"  --truth DIR           truth tiles\n"
	"  --zoom Z              which zoom folder (default: the only one)\n"
	"  --out FILE            metrics JSON (default: print it)\n"
	"  --errors FILE.png     error picture: false positives red, false negatives\n"
	"                        blue, wrong class yellow (at most 2048 px a side)\n"
	"  --classes A,B,C       class names, background first (default\n"
	"                        background,road,building)\n"
	"  --building-class K    class matched as instances (default 2, -1: none)\n"
	"  --iou-threshold T     instance match threshold (default 0.5)\n"
	"  --min-area PX         ignore smaller components (default 1)\n"
	"  --border PX           seam band width at tile edges (default 16)\n"
	"  --block N             tiles are read in blocks of N x N (default 16); buildings\n"
	"                        crossing block edges are joined, so only memory changes\n"
	"Exit: 0 ok, 1 failure, 2 bad usage or unreadable input.\n"
	"\n"
	"example:\n"
	"  cairn-eval --pred labels --truth scene/truth --out metrics.json --errors errors.png\n";

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"pred", required_argument, 0, 'p'},          {"truth", required_argument, 0, 't'},
		{"zoom", required_argument, 0, 'z'},          {"out", required_argument, 0, 'o'},
		{"errors", required_argument, 0, 'e'},        {"classes", required_argument, 0, 'c'},
		{"building-class", required_argument, 0, 'b'},
		{"iou-threshold", required_argument, 0, 'i'}, {"min-area", required_argument, 0, 'm'},
		{"border", required_argument, 0, 'B'},        {"block", required_argument, 0, 'K'},
		{"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
	struct eval_opts o;
	eval_opts_init(&o);
	const char *pred = NULL, *truth = NULL, *out = NULL, *errors = NULL;
	int zoom = -1, block = 16, c;
	char *names = NULL, *end;
	while ((c = cmd_getopt("cairn-eval", argc, argv, "h", longopts)) != -1) {
		switch (c) {
		case 'p': pred = optarg; break;
		case 't': truth = optarg; break;
		case 'z': zoom = atoi(optarg); break;
		case 'o': out = optarg; break;
		case 'e': errors = optarg; break;
		case 'c': {
			names = mem_strdup(optarg);
			o.nclasses = 0;
			for (char *tok = strtok(names, ","); tok; tok = strtok(NULL, ","))
				if (o.nclasses < EVAL_MAX_CLASSES)
					o.names[o.nclasses++] = tok;
			if (o.nclasses < 2) {
				fprintf(stderr, "cairn-eval: --classes: want at least 2 names\n");
				return 2;
			}
			break;
		}
		case 'b': o.building_class = atoi(optarg); break;
		case 'i':
			o.iou_threshold = strtod(optarg, &end);
			if (*end || !(o.iou_threshold > 0 && o.iou_threshold <= 1)) {
				fprintf(stderr, "cairn-eval: --iou-threshold '%s': want 0..1\n", optarg);
				return 2;
			}
			break;
		case 'm': o.min_area = atoi(optarg); break;
		case 'B':
			o.border = atoi(optarg);
			if (o.border < 0 || o.border > TILE_SIZE / 2) {
				fprintf(stderr, "cairn-eval: --border '%s': want 0..%d\n", optarg, TILE_SIZE / 2);
				return 2;
			}
			break;
		case 'K':
			block = atoi(optarg);
			if (block < 1 || block > 64) {
				fprintf(stderr, "cairn-eval: --block '%s': want 1..64\n", optarg);
				return 2;
			}
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (optind < argc || !pred || !truth) {
		fprintf(stderr, "cairn-eval: --pred and --truth are required\n%s", usage);
		return 2;
	}
	if (o.building_class >= o.nclasses)
		o.building_class = -1;
	struct error err;
	struct tile *tiles = NULL;
	size_t n = 0;
	if (tiledir_list(truth, "tif", &zoom, &tiles, &n, &err) < 0) {
		fprintf(stderr, "cairn-eval: %s\n", err.msg);
		return 2;
	}
	/* A missing prediction tile counts as background, but a missing --pred
	 * folder (or zoom level) is a wrong argument, not a map with no labels. */
	char pz[4096];
	snprintf(pz, sizeof(pz), "%s/%d", pred, zoom);
	if (!fs_is_dir(pred) || !fs_is_dir(pz)) {
		if (!fs_is_dir(pred))
			fprintf(stderr, "cairn-eval: --pred %s: no such folder\n", pred);
		else
			fprintf(stderr,
				"cairn-eval: --pred %s has no zoom %d folder (%s), the truth's zoom; "
				"rasterize or predict at zoom %d\n",
				pred, zoom, pz, zoom);
		mem_free(tiles);
		mem_free(names);
		return 2;
	}
	uint32_t x0 = tiles[0].x, x1 = tiles[0].x, y0 = tiles[0].y, y1 = tiles[0].y;
	for (size_t i = 1; i < n; i++) {
		x0 = tiles[i].x < x0 ? tiles[i].x : x0;
		x1 = tiles[i].x > x1 ? tiles[i].x : x1;
		y0 = tiles[i].y < y0 ? tiles[i].y : y0;
		y1 = tiles[i].y > y1 ? tiles[i].y : y1;
	}
	/* error picture: one pixel per `f` pixels so the longer side is <= 2048 */
	uint64_t W = (uint64_t)(x1 - x0 + 1) * TILE_SIZE, H = (uint64_t)(y1 - y0 + 1) * TILE_SIZE;
	uint64_t f = 1;
	while (W / f > 2048 || H / f > 2048)
		f++;
	int pw = (int)(W / f), ph = (int)(H / f);
	uint8_t *pic = errors ? mem_calloc(3 * (size_t)pw * ph, 1) : NULL;
	int bs = block * TILE_SIZE;
	uint8_t *mp = mem_alloc((size_t)bs * bs), *mt = mem_alloc((size_t)bs * bs);
	uint8_t *tp = mem_alloc(TILE_SIZE * TILE_SIZE), *tt = mem_alloc(TILE_SIZE * TILE_SIZE);
	struct eval_result r;
	memset(&r, 0, sizeof(r));
	struct eval_instances inst;
	int rc = 0, have_inst = 0;
	if (W > INT_MAX) {
		fprintf(stderr, "cairn-eval: %s: %llu px wide, too wide to score\n", truth,
			(unsigned long long)W);
		rc = 2;
		goto done;
	}
	if (!mp || !mt || !tp || !tt || (errors && !pic) ||
	    eval_instances_init(&inst, (int)W, &err) < 0) {
		fprintf(stderr, "cairn-eval: out of memory\n");
		rc = 1;
		goto done;
	}
	have_inst = 1;
	/* Blocks of block x block tiles, so memory stays bounded; components are
	 * joined across block edges (eval_instances), a building counts once. */
	for (uint32_t by = y0; by <= y1 && rc == 0; by += (uint32_t)block)
		for (uint32_t bx = x0; bx <= x1 && rc == 0; bx += (uint32_t)block) {
			int have = 0;
			memset(mp, 0, (size_t)bs * bs);
			memset(mt, 0, (size_t)bs * bs);
			for (size_t i = 0; i < n && rc == 0; i++) {
				const struct tile *t = &tiles[i];
				if (t->x < bx || t->x >= bx + (uint32_t)block || t->y < by ||
				    t->y >= by + (uint32_t)block)
					continue;
				char path[4096];
				snprintf(path, sizeof(path), "%s/%d/%u/%u.tif", truth, zoom, t->x, t->y);
				if (raster_read_tile(path, 1, tt, &err) < 0) {
					fprintf(stderr, "cairn-eval: %s\n", err.msg);
					rc = 2;
					break;
				}
				snprintf(path, sizeof(path), "%s/%d/%u/%u.tif", pred, zoom, t->x, t->y);
				if (!fs_exists(path)) {
					memset(tp, 0, TILE_SIZE * TILE_SIZE);
					r.missing_pred++;
				} else if (raster_read_tile(path, 1, tp, &err) < 0) {
					fprintf(stderr, "cairn-eval: %s\n", err.msg);
					rc = 2;
					break;
				}
				eval_add_tile(&o, tp, tt, TILE_SIZE, &r);
				have = 1;
				size_t ox = (size_t)(t->x - bx) * TILE_SIZE, oy = (size_t)(t->y - by) * TILE_SIZE;
				for (int y = 0; y < TILE_SIZE; y++) {
					memcpy(mp + (oy + y) * bs + ox, tp + (size_t)y * TILE_SIZE, TILE_SIZE);
					memcpy(mt + (oy + y) * bs + ox, tt + (size_t)y * TILE_SIZE, TILE_SIZE);
				}
				if (pic) {
					uint64_t gx0 = (uint64_t)(t->x - x0) * TILE_SIZE;
					uint64_t gy0 = (uint64_t)(t->y - y0) * TILE_SIZE;
					for (uint64_t gy = (gy0 + f - 1) / f * f; gy < gy0 + TILE_SIZE; gy += f)
						for (uint64_t gx = (gx0 + f - 1) / f * f; gx < gx0 + TILE_SIZE; gx += f) {
							size_t li = (size_t)(gy - gy0) * TILE_SIZE + (gx - gx0);
							uint8_t rgb[3];
							eval_error_color(tp[li], tt[li], rgb);
							size_t pi = (size_t)(gy / f) * pw + gx / f;
							if (gy / f < (uint64_t)ph && gx / f < (uint64_t)pw)
								for (int k = 0; k < 3; k++)
									pic[(size_t)k * pw * ph + pi] = rgb[k];
						}
				}
			}
			uint32_t bw = x1 - bx + 1 < (uint32_t)block ? x1 - bx + 1 : (uint32_t)block;
			uint32_t bh = y1 - by + 1 < (uint32_t)block ? y1 - by + 1 : (uint32_t)block;
			if (rc == 0 && have &&
			    eval_instances_add(&o, &inst, mp, mt, (size_t)bs, (int)(bx - x0) * TILE_SIZE,
					       (int)(by - y0) * TILE_SIZE, (int)bw * TILE_SIZE,
					       (int)bh * TILE_SIZE, &err) < 0) {
				fprintf(stderr, "cairn-eval: %s\n", err.msg);
				rc = 1;
			}
		}
	if (rc == 0 && eval_instances_finish(&o, &inst, &r, &err) < 0) {
		fprintf(stderr, "cairn-eval: %s\n", err.msg);
		rc = 1;
	}
	if (rc)
		goto done;
	json_t *j = eval_to_json(&o, &r);
	json_object_set_new(j, "zoom", json_integer(zoom));
	if (out) {
		if (jsonio_write_atomic(out, j, &err) < 0) {
			fprintf(stderr, "cairn-eval: %s\n", err.msg);
			rc = 1;
		}
	} else {
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	if (rc == 0 && errors && raster_write_png(errors, pw, ph, 3, pic, &err) < 0) {
		fprintf(stderr, "cairn-eval: %s\n", err.msg);
		rc = 1;
	}
	if (rc == 0 && out) {
		printf("cairn-eval: %llu tiles", (unsigned long long)r.tiles);
		for (int k = 1; k < o.nclasses; k++)
			printf(", %s IoU %.3f", o.names[k], eval_iou(r.all.tp[k], r.all.fp[k], r.all.fn[k]));
		if (o.building_class >= 0)
			printf(", %s F1@%.2g %.3f (%llu/%llu matched)", o.names[o.building_class],
			       o.iou_threshold,
			       eval_f1(r.inst_tp, r.inst_pred - r.inst_tp, r.inst_truth - r.inst_tp),
			       (unsigned long long)r.inst_tp, (unsigned long long)r.inst_truth);
		printf("\n");
		if (r.missing_pred)
			printf("  %llu truth tiles had no prediction (counted as background)\n",
			       (unsigned long long)r.missing_pred);
	}
	json_decref(j);
done:
	if (have_inst)
		eval_instances_release(&inst);
	mem_free(tiles);
	mem_free(pic);
	mem_free(mp);
	mem_free(mt);
	mem_free(tp);
	mem_free(tt);
	mem_free(names);
	return rc;
}
