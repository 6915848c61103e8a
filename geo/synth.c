#include "geo/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cpl_conv.h>
#include <gdal.h>
#include <ogr_api.h>
#include <ogr_srs_api.h>

#include "core/mem.h"
#include "geo/raster.h"

void synth_params_init(struct synth_params *p)
{
	memset(p, 0, sizeof(*p));
	p->ntiles = 4;
	p->seed = 1;
	p->missing_buildings = 0.15;
	p->road_offset = 2.0;
	p->width_error = 0.3;
	p->outdated = 0.05;
	p->shift = 1.0;
}

/* ---- random numbers and noise ---- */

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	/* splitmix64 (Steele, Lea, Flood 2014) */
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uni(struct rng *r)
{
	return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static double range(struct rng *r, double a, double b)
{
	return a + (b - a) * uni(r);
}

static double gauss(struct rng *r)
{
	/* Box-Muller */
	double u = uni(r), v = uni(r);
	return sqrt(-2.0 * log(u > 1e-300 ? u : 1e-300)) * cos(2.0 * M_PI * v);
}

static double lattice(uint64_t seed, int64_t x, int64_t y)
{
	uint64_t h = seed ^ ((uint64_t)x * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)y * 0xc2b2ae3d27d4eb4full);
	h = (h ^ (h >> 31)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 29)) * 0x94d049bb133111ebull;
	h ^= h >> 32;
	return (double)(h & 0xffffff) / 16777215.0;
}

/* Value noise with smoothstep interpolation, in [0, 1]. */
static double vnoise(uint64_t seed, double x, double y)
{
	double fx = floor(x), fy = floor(y);
	int64_t ix = (int64_t)fx, iy = (int64_t)fy;
	double tx = x - fx, ty = y - fy;
	tx = tx * tx * (3 - 2 * tx);
	ty = ty * ty * (3 - 2 * ty);
	double a = lattice(seed, ix, iy), b = lattice(seed, ix + 1, iy);
	double c = lattice(seed, ix, iy + 1), d = lattice(seed, ix + 1, iy + 1);
	return (a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty;
}

/* Fractal sum of 4 octaves, in about [0, 1]. */
static double fbm(uint64_t seed, double x, double y)
{
	double sum = 0, amp = 0.5, norm = 0;
	for (int o = 0; o < 4; o++) {
		sum += amp * vnoise(seed + (uint64_t)o * 7919, x, y);
		norm += amp;
		x *= 2.03;
		y *= 2.03;
		amp *= 0.5;
	}
	return sum / norm;
}

/* ---- geometry helpers (pixel space: x east, y south) ---- */

struct pt {
	double x, y;
};

struct poly {
	struct pt *p;
	int n, cap;
};

static int poly_add(struct poly *l, double x, double y)
{
	if (l->n == l->cap) {
		int nc = l->cap ? l->cap * 2 : 64;
		struct pt *np = mem_realloc(l->p, (size_t)nc * sizeof(*np));
		if (!np)
			return -1;
		l->p = np;
		l->cap = nc;
	}
	l->p[l->n].x = x;
	l->p[l->n].y = y;
	l->n++;
	return 0;
}

static int inside_ring(const double *xs, const double *ys, int n, double x, double y)
{
	/* even-odd rule, ring closed (last == first) */
	int in = 0;
	for (int i = 0, j = n - 2; i < n - 1; j = i++) {
		if ((ys[i] > y) != (ys[j] > y) &&
		    x < (xs[j] - xs[i]) * (y - ys[i]) / (ys[j] - ys[i]) + xs[i])
			in = !in;
	}
	return in;
}

/* ---- the generator ---- */

struct gen {
	struct synth_scene *s;
	struct rng r;
	uint64_t nseed;
	int w, h;
	double m2px;       /* pixels per ground metre */
	double k;          /* EPSG:3857 metres per ground metre */
	double theta;      /* grid angle */
	uint8_t *water;    /* w*h */
	uint8_t *occ;      /* w*h: 1 building */
	int32_t *bid;      /* w*h building index + 1 */
	float *height;     /* per building */
	uint8_t *roofc;    /* per building: r, g, b, gable */
	size_t capb, capr;
	struct error *err;
};

static void px_to_merc(const struct gen *g, double px, double py, double *x, double *y)
{
	*x = g->s->gt[0] + px * g->s->gt[1];
	*y = g->s->gt[3] + py * g->s->gt[5];
}

static int add_road(struct gen *g, const struct poly *l, double width, const char *kind)
{
	if (l->n < 2)
		return 0;
	struct synth_scene *s = g->s;
	if (s->nroads == g->capr) {
		size_t nc = g->capr ? g->capr * 2 : 32;
		struct synth_road *nr = mem_realloc(s->roads, nc * sizeof(*nr));
		if (!nr)
			return error_set(g->err, "out of memory");
		s->roads = nr;
		g->capr = nc;
	}
	struct synth_road *rd = &s->roads[s->nroads];
	memset(rd, 0, sizeof(*rd));
	rd->n = l->n;
	rd->x = mem_alloc(4 * (size_t)l->n * sizeof(double));
	if (!rd->x)
		return error_set(g->err, "out of memory");
	rd->y = rd->x + l->n;
	rd->mx = rd->y + l->n;
	rd->my = rd->mx + l->n;
	for (int i = 0; i < l->n; i++)
		px_to_merc(g, l->p[i].x, l->p[i].y, &rd->x[i], &rd->y[i]);
	rd->width = width;
	rd->kind = kind;
	s->nroads++;
	return 0;
}

/* Densify a polyline to ~4 px steps and cut it where it crosses water, so
 * roads stop at the shore. Emits each dry run as a road. */
static int emit_dry_runs(struct gen *g, const struct pt *pts, int n, double width, const char *kind)
{
	struct poly cur = {0};
	int rc = 0;
	for (int i = 0; i + 1 < n && rc == 0; i++) {
		double dx = pts[i + 1].x - pts[i].x, dy = pts[i + 1].y - pts[i].y;
		int steps = (int)ceil(hypot(dx, dy) / 4.0);
		if (steps < 1)
			steps = 1;
		for (int k = (i == 0 ? 0 : 1); k <= steps && rc == 0; k++) {
			double x = pts[i].x + dx * k / steps, y = pts[i].y + dy * k / steps;
			int ix = (int)x, iy = (int)y;
			int wet = ix >= 0 && iy >= 0 && ix < g->w && iy < g->h && g->water[(size_t)iy * g->w + ix];
			if (wet) {
				if (cur.n >= 2)
					rc = add_road(g, &cur, width, kind);
				cur.n = 0;
			} else if (poly_add(&cur, x, y) < 0) {
				rc = error_set(g->err, "out of memory");
			}
		}
	}
	if (rc == 0 && cur.n >= 2)
		rc = add_road(g, &cur, width, kind);
	mem_free(cur.p);
	return rc;
}

static void make_water(struct gen *g)
{
	if (uni(&g->r) > 0.6)
		return;
	double cx = range(&g->r, 0.1, 0.9) * g->w, cy = range(&g->r, 0.1, 0.9) * g->h;
	double rad = range(&g->r, 60, 140) * g->m2px;
	uint64_t seed = g->nseed + 101;
	for (int y = 0; y < g->h; y++)
		for (int x = 0; x < g->w; x++) {
			double d = hypot(x - cx, y - cy) / rad;
			double n = fbm(seed, x / (40.0 * g->m2px), y / (40.0 * g->m2px));
			if (d + 0.6 * (n - 0.5) < 1.0)
				g->water[(size_t)y * g->w + x] = 1;
		}
}

static int make_roads(struct gen *g)
{
	struct rng *r = &g->r;
	double c = cos(g->theta), sn = sin(g->theta);
	double cx = g->w / 2.0, cy = g->h / 2.0;
	double half = 0.75 * hypot(g->w, g->h);
	/* Grid lines u = const and v = const in the rotated frame; each line is a
	 * run of blocks between crossings, some blocks left out (dead ends). */
	for (int dir = 0; dir < 2; dir++) {
		double spacing = range(r, 90, 150) * g->m2px;
		double off = range(r, 0, spacing);
		double other = range(r, 90, 150) * g->m2px;
		int primary = (int)range(r, 0, 2 * half / spacing);
		int idx = 0;
		for (double u = -half + off; u < half; u += spacing, idx++) {
			double width;
			const char *kind;
			if (idx == primary) {
				width = range(r, 14, 18);
				kind = "primary";
			} else if (uni(r) < 0.2) {
				width = range(r, 4, 5.5);
				kind = "service";
			} else {
				width = range(r, 7, 10);
				kind = "residential";
			}
			struct pt run[512];
			int nrun = 0;
			for (double v = -half; v <= half + 1e-9; v += other) {
				int keep = idx == primary || uni(r) > 0.12;
				/* rotated frame -> pixels */
				double a = dir ? v : u, b = dir ? u : v;
				struct pt p = {cx + a * c - b * sn, cy + a * sn + b * c};
				if (keep && nrun < 512) {
					run[nrun++] = p;
				} else {
					if (nrun >= 2 && emit_dry_runs(g, run, nrun, width, kind) < 0)
						return -1;
					nrun = 0;
					run[nrun++] = p;
				}
			}
			if (nrun >= 2 && emit_dry_runs(g, run, nrun, width, kind) < 0)
				return -1;
		}
	}
	/* Curved streets: Catmull-Rom splines through points across the scene. */
	int ncurves = 1 + (int)range(r, 0, 3);
	for (int k = 0; k < ncurves; k++) {
		struct pt cp[6];
		double a0 = range(r, 0, 2 * M_PI);
		for (int i = 0; i < 6; i++) {
			double t = (i - 2.5) / 2.5;
			double along = t * 0.7 * g->w, across = range(r, -0.15, 0.15) * g->w;
			cp[i].x = cx + along * cos(a0) - across * sin(a0);
			cp[i].y = cy + along * sin(a0) + across * cos(a0);
		}
		struct pt line[5 * 40 + 1];
		int n = 0;
		for (int i = 1; i + 2 < 6; i++)
			for (int j = 0; j < 40; j++) {
				double t = j / 40.0, t2 = t * t, t3 = t2 * t;
				struct pt p0 = cp[i - 1], p1 = cp[i], p2 = cp[i + 1], p3 = cp[i + 2];
				line[n].x = 0.5 * (2 * p1.x + (-p0.x + p2.x) * t +
						   (2 * p0.x - 5 * p1.x + 4 * p2.x - p3.x) * t2 +
						   (-p0.x + 3 * p1.x - 3 * p2.x + p3.x) * t3);
				line[n].y = 0.5 * (2 * p1.y + (-p0.y + p2.y) * t +
						   (2 * p0.y - 5 * p1.y + 4 * p2.y - p3.y) * t2 +
						   (-p0.y + 3 * p1.y - 3 * p2.y + p3.y) * t3);
				n++;
			}
		line[n++] = cp[4];
		if (emit_dry_runs(g, line, n, range(r, 8, 12), "residential") < 0)
			return -1;
	}
	return 0;
}

static const uint8_t roof_palette[][3] = {
	{150, 148, 145}, {108, 108, 114}, {160, 88, 66},  {186, 176, 160},
	{214, 212, 206}, {94, 104, 120},  {128, 96, 78},  {172, 120, 96},
};

static int add_building(struct gen *g, const double *px, const double *py, int n, double height,
			int state)
{
	struct synth_scene *s = g->s;
	if (s->nbuildings == g->capb) {
		size_t nc = g->capb ? g->capb * 2 : 128;
		struct synth_building *nb = mem_realloc(s->buildings, nc * sizeof(*nb));
		float *nh = mem_realloc(g->height, nc * sizeof(*nh));
		if (nh)
			g->height = nh;
		uint8_t *nrc = mem_realloc(g->roofc, nc * 4);
		if (nrc)
			g->roofc = nrc;
		if (!nb || !nh || !nrc) {
			if (nb)
				s->buildings = nb;
			return error_set(g->err, "out of memory");
		}
		s->buildings = nb;
		g->capb = nc;
	}
	struct synth_building *b = &s->buildings[s->nbuildings];
	memset(b, 0, sizeof(*b));
	b->n = n;
	for (int i = 0; i < n; i++)
		px_to_merc(g, px[i], py[i], &b->x[i], &b->y[i]);
	b->map_state = state;
	g->height[s->nbuildings] = (float)height;
	const uint8_t *c = roof_palette[rng_next(&g->r) % 8];
	uint8_t *rc = &g->roofc[4 * s->nbuildings];
	for (int i = 0; i < 3; i++) {
		int v = c[i] + (int)(gauss(&g->r) * 8);
		rc[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
	}
	rc[3] = uni(&g->r) < 0.55; /* gable roof */
	s->nbuildings++;
	return 0;
}

/* A building footprint in pixels: rectangle w x d (metres) at (cx, cy) rotated
 * by a, or an L (a rectangle with one corner cut out). Ring closed. */
static int footprint(struct gen *g, double cx, double cy, double a, double w, double d, int ell,
		     double *px, double *py)
{
	double hw = w / 2, hd = d / 2;
	double u[7], v[7];
	int n;
	if (!ell) {
		double uu[5] = {-hw, hw, hw, -hw, -hw}, vv[5] = {-hd, -hd, hd, hd, -hd};
		memcpy(u, uu, sizeof(uu));
		memcpy(v, vv, sizeof(vv));
		n = 5;
	} else {
		double cw = w * range(&g->r, 0.35, 0.6), cd = d * range(&g->r, 0.35, 0.6);
		double uu[7] = {-hw, hw, hw, hw - cw, hw - cw, -hw, -hw};
		double vv[7] = {-hd, -hd, hd - cd, hd - cd, hd, hd, -hd};
		memcpy(u, uu, sizeof(uu));
		memcpy(v, vv, sizeof(vv));
		n = 7;
	}
	double c = cos(a), s = sin(a);
	for (int i = 0; i < n; i++) {
		px[i] = cx + (u[i] * c - v[i] * s) * g->m2px;
		py[i] = cy + (u[i] * s + v[i] * c) * g->m2px;
	}
	return n;
}

/* Free means: inside the scene, no road, water or building within `margin`
 * metres of the rotated bounding rectangle. */
static int area_free(const struct gen *g, const uint8_t *truth, double cx, double cy, double a,
		     double w, double d, double margin)
{
	double hw = (w / 2 + margin) * g->m2px, hd = (d / 2 + margin) * g->m2px;
	double r = hypot(hw, hd);
	if (cx - r < 0 || cy - r < 0 || cx + r >= g->w || cy + r >= g->h)
		return 0;
	double c = cos(a), s = sin(a);
	for (int y = (int)(cy - r); y <= (int)(cy + r); y++)
		for (int x = (int)(cx - r); x <= (int)(cx + r); x++) {
			double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
			double u = dx * c + dy * s, v = -dx * s + dy * c;
			if (fabs(u) > hw || fabs(v) > hd)
				continue;
			size_t i = (size_t)y * g->w + x;
			if (truth[i] || g->water[i] || g->occ[i])
				return 0;
		}
	return 1;
}

static void mark_occupied(struct gen *g, const double *px, const double *py, int n, int32_t id)
{
	double x0 = px[0], x1 = px[0], y0 = py[0], y1 = py[0];
	for (int i = 1; i < n; i++) {
		x0 = fmin(x0, px[i]);
		x1 = fmax(x1, px[i]);
		y0 = fmin(y0, py[i]);
		y1 = fmax(y1, py[i]);
	}
	for (int y = (int)fmax(0, y0); y <= (int)fmin(g->h - 1, y1); y++)
		for (int x = (int)fmax(0, x0); x <= (int)fmin(g->w - 1, x1); x++)
			if (inside_ring(px, py, n, x + 0.5, y + 0.5)) {
				g->occ[(size_t)y * g->w + x] = 1;
				if (id)
					g->bid[(size_t)y * g->w + x] = id;
			}
}

static int try_building(struct gen *g, const uint8_t *roads, double cx, double cy, double a,
			double w, double d, int big)
{
	struct rng *r = &g->r;
	int ell = !big && uni(r) < 0.3;
	if (!area_free(g, roads, cx, cy, a, w, d, 2.5))
		return 0;
	double px[8], py[8];
	int n = footprint(g, cx, cy, a, w, d, ell, px, py);
	double height = big ? range(r, 8, 16) : range(r, 3.5, 8);
	if (add_building(g, px, py, n, height, 0) < 0)
		return -1;
	mark_occupied(g, px, py, n, (int32_t)g->s->nbuildings);
	return 1;
}

static int make_buildings(struct gen *g, const uint8_t *roads)
{
	struct rng *r = &g->r;
	struct synth_scene *s = g->s;
	/* Houses face the street: walk along each road and try a lot on either
	 * side, set back 3-8 m, the long side along the road. */
	for (size_t k = 0; k < s->nroads; k++) {
		const struct synth_road *rd = &s->roads[k];
		if (strcmp(rd->kind, "service") == 0 && uni(r) < 0.5)
			continue;
		double next = range(r, 0, 10) * g->m2px, walked = 0;
		for (int i = 0; i + 1 < rd->n; i++) {
			double x0 = (rd->x[i] - s->gt[0]) / s->gt[1], y0 = (rd->y[i] - s->gt[3]) / s->gt[5];
			double x1 = (rd->x[i + 1] - s->gt[0]) / s->gt[1];
			double y1 = (rd->y[i + 1] - s->gt[3]) / s->gt[5];
			double len = hypot(x1 - x0, y1 - y0);
			if (len <= 0)
				continue;
			double ux = (x1 - x0) / len, uy = (y1 - y0) / len;
			while (next <= walked + len) {
				double t = next - walked;
				double px = x0 + ux * t, py = y0 + uy * t;
				for (int side = -1; side <= 1; side += 2) {
					if (uni(r) < 0.15) /* an empty lot */
						continue;
					int big = uni(r) < 0.05;
					double w = big ? range(r, 25, 45) : range(r, 9, 17);
					double d = big ? range(r, 18, 30) : range(r, 8, 13);
					double back = rd->width / 2 + range(r, 3, 8) + d / 2;
					double cx = px - uy * side * back * g->m2px;
					double cy = py + ux * side * back * g->m2px;
					double a = atan2(uy, ux) + gauss(r) * 0.02;
					if (try_building(g, roads, cx, cy, a, w, d, big) < 0)
						return -1;
				}
				next += range(r, 15, 24) * g->m2px;
			}
			walked += len;
		}
	}
	/* Then a few more anywhere: sheds, backyard houses, warehouses. */
	double area_m2 = (g->w / g->m2px) * (g->h / g->m2px);
	int attempts = (int)(area_m2 / 400.0);
	for (int t = 0; t < attempts; t++) {
		double cx = range(r, 0, g->w), cy = range(r, 0, g->h);
		double a = g->theta + (uni(r) < 0.5 ? 0 : M_PI / 2) + gauss(r) * 0.03;
		int big = uni(r) < 0.1;
		double w = big ? range(r, 28, 50) : range(r, 6, 14);
		double d = big ? range(r, 20, 35) : range(r, 5, 10);
		if (try_building(g, roads, cx, cy, a, w, d, big) < 0)
			return -1;
	}
	return 0;
}

/* The map's view of the world: errors applied with their own random stream so
 * changing an error rate does not move a single road or building. */
static int make_map(struct gen *g, const uint8_t *truth)
{
	struct synth_scene *s = g->s;
	const struct synth_params *p = &s->p;
	struct rng r = {p->seed * 0x2545f4914f6cdd1dull + 17};
	double ang = range(&r, 0, 2 * M_PI);
	double sx = p->shift * cos(ang) * g->k, sy = p->shift * sin(ang) * g->k; /* EPSG:3857 m */
	for (size_t i = 0; i < s->nroads; i++) {
		struct synth_road *rd = &s->roads[i];
		double off = gauss(&r) * p->road_offset * g->k;
		double f = 1.0 + range(&r, -p->width_error, p->width_error);
		rd->map_width = rd->width * (f > 0.2 ? f : 0.2);
		for (int k = 0; k < rd->n; k++) {
			int a = k > 0 ? k - 1 : k, b = k + 1 < rd->n ? k + 1 : k;
			double dx = rd->x[b] - rd->x[a], dy = rd->y[b] - rd->y[a];
			double len = hypot(dx, dy);
			double nx = len > 0 ? -dy / len : 0, ny = len > 0 ? dx / len : 0;
			rd->mx[k] = rd->x[k] + off * nx + sx;
			rd->my[k] = rd->y[k] + off * ny + sy;
		}
	}
	size_t ntrue = s->nbuildings;
	for (size_t i = 0; i < ntrue; i++) {
		struct synth_building *b = &s->buildings[i];
		double u = uni(&r);
		b->mn = b->n;
		for (int k = 0; k < b->n; k++) {
			b->mx[k] = b->x[k] + sx;
			b->my[k] = b->y[k] + sy;
		}
		if (u < p->missing_buildings) {
			b->map_state = 1;
			b->mn = 0;
			s->n_missing++;
		} else if (u < p->missing_buildings + p->outdated && b->n == 5) {
			/* Mapped before an extension: the map has the old, shorter
			 * building (the far side moved 35-60% of the way in). */
			double f = range(&r, 0.35, 0.6);
			for (int k = 1; k <= 2; k++) {
				int o = k == 1 ? 0 : 3;
				b->mx[k] = b->mx[k] + f * (b->mx[o] - b->mx[k]);
				b->my[k] = b->my[k] + f * (b->my[o] - b->my[k]);
			}
			b->map_state = 2;
			s->n_outdated++;
		}
	}
	/* Demolished since mapping: map buildings on ground that is open now. */
	size_t want = (size_t)(p->outdated * (double)ntrue + 0.5);
	for (int t = 0; t < 4000 && s->n_ghost < want; t++) {
		double cx = range(&r, 0, g->w), cy = range(&r, 0, g->h);
		double a = g->theta + gauss(&r) * 0.03, w = range(&r, 9, 20), d = range(&r, 8, 13);
		if (!area_free(g, truth, cx, cy, a, w, d, 3))
			continue;
		double px[8], py[8];
		int n = footprint(g, cx, cy, a, w, d, 0, px, py);
		if (add_building(g, px, py, n, 0, 3) < 0)
			return -1;
		struct synth_building *b = &s->buildings[s->nbuildings - 1];
		b->mn = b->n;
		for (int k = 0; k < b->n; k++) {
			b->mx[k] = b->x[k] + sx;
			b->my[k] = b->y[k] + sy;
		}
		mark_occupied(g, px, py, n, 0);
		s->n_ghost++;
	}
	return 0;
}

static OGRGeometryH make_line(const double *x, const double *y, int n)
{
	OGRGeometryH l = OGR_G_CreateGeometry(wkbLineString);
	if (!l)
		return NULL;
	for (int i = 0; i < n; i++)
		OGR_G_AddPoint_2D(l, x[i], y[i]);
	return l;
}

static OGRGeometryH make_polygon(const double *x, const double *y, int n)
{
	OGRGeometryH poly = OGR_G_CreateGeometry(wkbPolygon);
	OGRGeometryH ring = OGR_G_CreateGeometry(wkbLinearRing);
	if (!ring || !poly) {
		if (ring)
			OGR_G_DestroyGeometry(ring);
		if (poly)
			OGR_G_DestroyGeometry(poly);
		return NULL;
	}
	for (int i = 0; i < n; i++)
		OGR_G_AddPoint_2D(ring, x[i], y[i]);
	OGR_G_AddGeometryDirectly(poly, ring);
	return poly;
}

/* Burn roads and buildings (true or map version) into a w*h raster. */
static int burn_world(struct gen *g, int map, int roads_only, uint8_t *out)
{
	struct synth_scene *s = g->s;
	struct burn_set set;
	burn_set_init(&set);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < s->nroads; i++) {
		struct synth_road *rd = &s->roads[i];
		OGRGeometryH l = map ? make_line(rd->mx, rd->my, rd->n) : make_line(rd->x, rd->y, rd->n);
		if (!l)
			rc = error_set(g->err, "out of memory");
		else {
			rc = burn_set_add_line(&set, l, map ? rd->map_width : rd->width, SYNTH_ROAD,
					       g->err);
			OGR_G_DestroyGeometry(l);
		}
	}
	for (size_t i = 0; rc == 0 && !roads_only && i < s->nbuildings; i++) {
		struct synth_building *b = &s->buildings[i];
		int present = map ? b->mn > 0 : b->map_state != 3;
		if (!present)
			continue;
		OGRGeometryH p = map ? make_polygon(b->mx, b->my, b->mn) : make_polygon(b->x, b->y, b->n);
		if (!p)
			rc = error_set(g->err, "out of memory");
		else
			rc = burn_set_add_polygon(&set, p, SYNTH_BUILDING, g->err);
	}
	if (rc == 0)
		rc = burn_window(&set, s->gt, s->w, s->h, out, g->err);
	burn_set_release(&set);
	return rc;
}

/* ---- painting ---- */

static uint8_t clamp8(double v)
{
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
}

static void paint(struct gen *g)
{
	struct synth_scene *s = g->s;
	int w = g->w, h = g->h;
	size_t plane = (size_t)w * h;
	float *img = mem_alloc(3 * plane * sizeof(float));
	uint8_t *shadow = mem_calloc(plane, 1);
	uint8_t *tree = mem_calloc(plane, 1);
	if (!img || !shadow || !tree)
		goto out;
	uint64_t sd = g->nseed;
	double m = g->m2px;
	/* ground: grass, dry grass and soil mixed by two noise fields */
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			size_t i = (size_t)y * w + x;
			double a = fbm(sd + 1, x / (60.0 * m), y / (60.0 * m));
			double b = fbm(sd + 2, x / (12.0 * m), y / (12.0 * m));
			double fine = vnoise(sd + 3, x / 1.3, y / 1.3) - 0.5;
			double dry = fmin(1, fmax(0, (a - 0.45) * 3.0));
			double soil = fmin(1, fmax(0, (b - 0.62) * 4.0)) * 0.8;
			double rgb[3] = {80 + 65 * dry, 104 + 34 * dry, 58 + 42 * dry};
			double so[3] = {132, 112, 88};
			for (int c = 0; c < 3; c++) {
				double v = rgb[c] * (1 - soil) + so[c] * soil;
				v *= 0.88 + 0.24 * b + 0.18 * fine;
				img[c * plane + i] = (float)v;
			}
			if (g->water[i]) {
				double rip = vnoise(sd + 4, x / 3.0, y / 1.5);
				img[0 * plane + i] = (float)(38 + 8 * rip);
				img[1 * plane + i] = (float)(60 + 10 * rip);
				img[2 * plane + i] = (float)(70 + 12 * rip);
			}
		}
	/* sidewalks: a concrete strip of ~2 m along roads (not along service roads'
	 * ends; good enough), then asphalt with stains */
	int rs = (int)ceil(2.0 * m);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			size_t i = (size_t)y * w + x;
			if (s->truth[i] != SYNTH_BACKGROUND || g->water[i])
				continue;
			int near = 0;
			for (int dy = -rs; dy <= rs && !near; dy++)
				for (int dx = -rs; dx <= rs && !near; dx++) {
					int xx = x + dx, yy = y + dy;
					if (xx >= 0 && yy >= 0 && xx < w && yy < h &&
					    s->truth[(size_t)yy * w + xx] == SYNTH_ROAD && dx * dx + dy * dy <= rs * rs)
						near = 1;
				}
			if (near) {
				double n = vnoise(sd + 5, x / 2.0, y / 2.0);
				for (int c = 0; c < 3; c++)
					img[c * plane + i] = (float)(158 + 14 * n - c * 3);
			}
		}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			size_t i = (size_t)y * w + x;
			if (s->truth[i] != SYNTH_ROAD)
				continue;
			double stain = fbm(sd + 6, x / (8.0 * m), y / (8.0 * m));
			double grain = vnoise(sd + 7, x / 1.1, y / 1.1);
			double v = 78 + 40 * stain + 10 * grain;
			img[0 * plane + i] = (float)v;
			img[1 * plane + i] = (float)(v + 1);
			img[2 * plane + i] = (float)(v + 4);
		}
	/* lane markings: a dashed centre line on roads 10 m and wider (3 m on, 5 m off) */
	for (size_t k = 0; k < s->nroads; k++) {
		struct synth_road *rd = &s->roads[k];
		if (rd->width < 10)
			continue;
		double along = 0;
		for (int i = 0; i + 1 < rd->n; i++) {
			double x0 = (rd->x[i] - s->gt[0]) / s->gt[1], y0 = (rd->y[i] - s->gt[3]) / s->gt[5];
			double x1 = (rd->x[i + 1] - s->gt[0]) / s->gt[1], y1 = (rd->y[i + 1] - s->gt[3]) / s->gt[5];
			double len = hypot(x1 - x0, y1 - y0);
			for (double t = 0; t < len; t += 0.5) {
				double am = (along + t) / m;
				if (fmod(am, 8.0) > 3.0)
					continue;
				int x = (int)(x0 + (x1 - x0) * t / len), y = (int)(y0 + (y1 - y0) * t / len);
				if (x < 0 || y < 0 || x >= w || y >= h)
					continue;
				size_t i2 = (size_t)y * w + x;
				if (s->truth[i2] != SYNTH_ROAD)
					continue;
				img[0 * plane + i2] = 0.4f * img[0 * plane + i2] + 0.6f * 225;
				img[1 * plane + i2] = 0.4f * img[1 * plane + i2] + 0.6f * 215;
				img[2 * plane + i2] = 0.4f * img[2 * plane + i2] + 0.6f * 150;
			}
			along += len;
		}
	}
	/* roofs: colour per building; gable roofs lit on one side of the ridge */
	double sun_x = cos(M_PI * 0.25), sun_y = sin(M_PI * 0.25); /* shadows fall to the south-east */
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			size_t i = (size_t)y * w + x;
			if (s->truth[i] != SYNTH_BUILDING)
				continue;
			int32_t id = g->bid[i];
			const uint8_t *rc = id > 0 ? &g->roofc[4 * (id - 1)] : roof_palette[0];
			double shade = 1.0;
			if (id > 0 && rc[3]) {
				/* ridge along the long axis through the centroid */
				struct synth_building *b = &s->buildings[id - 1];
				double bx = (b->x[0] - s->gt[0]) / s->gt[1], by = (b->y[0] - s->gt[3]) / s->gt[5];
				double ex = (b->x[1] - s->gt[0]) / s->gt[1], ey = (b->y[1] - s->gt[3]) / s->gt[5];
				double fx = (b->x[2] - s->gt[0]) / s->gt[1], fy = (b->y[2] - s->gt[3]) / s->gt[5];
				double l1 = hypot(ex - bx, ey - by), l2 = hypot(fx - ex, fy - ey);
				double ax, ay, ox, oy; /* ridge direction and an origin on it */
				if (l1 >= l2) {
					ax = (ex - bx) / l1;
					ay = (ey - by) / l1;
					ox = (bx + fx) / 2; /* centre of the first rectangle */
					oy = (by + fy) / 2;
				} else {
					ax = (fx - ex) / l2;
					ay = (fy - ey) / l2;
					ox = (bx + fx) / 2;
					oy = (by + fy) / 2;
				}
				double side = -(x + 0.5 - ox) * ay + (y + 0.5 - oy) * ax;
				double facing = -ay * sun_x + ax * sun_y; /* which side faces the sun */
				shade = (side * facing < 0) ? 1.12 : 0.84;
				if (fabs(side) < 0.6)
					shade = 1.2;
			}
			double grain = vnoise(sd + 8, x / 1.2, y / 1.2);
			for (int c = 0; c < 3; c++)
				img[c * plane + i] = (float)(rc[c] * shade * (0.94 + 0.1 * grain));
		}
	/* trees: clusters of round crowns on open ground */
	struct rng tr = {g->nseed + 999};
	double area = (w / m) * (h / m);
	int ntrees = (int)(area / 180.0);
	for (int t = 0; t < ntrees; t++) {
		double cx = range(&tr, 0, w), cy = range(&tr, 0, h);
		if (fbm(sd + 9, cx / (50.0 * m), cy / (50.0 * m)) < 0.5)
			continue;
		double rad = range(&tr, 2.0, 5.0) * m;
		int ok = 1;
		for (int y = (int)(cy - rad - 1); y <= (int)(cy + rad + 1) && ok; y++)
			for (int x = (int)(cx - rad - 1); x <= (int)(cx + rad + 1) && ok; x++) {
				if (x < 0 || y < 0 || x >= w || y >= h) {
					ok = 0;
					break;
				}
				size_t i = (size_t)y * w + x;
				if (s->truth[i] != SYNTH_BACKGROUND || g->water[i])
					ok = 0;
			}
		if (!ok)
			continue;
		double tone = range(&tr, 0.8, 1.15);
		for (int y = (int)(cy - rad - 1); y <= (int)(cy + rad + 1); y++)
			for (int x = (int)(cx - rad - 1); x <= (int)(cx + rad + 1); x++) {
				double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
				double edge = rad * (0.85 + 0.3 * vnoise(sd + 10, x / 1.5, y / 1.5));
				double d = hypot(dx, dy);
				if (d > edge)
					continue;
				size_t i = (size_t)y * w + x;
				double lit = 1.0 - 0.35 * (dx * sun_x + dy * sun_y) / rad;
				double leaf = vnoise(sd + 11, x / 0.9, y / 0.9);
				img[0 * plane + i] = (float)((40 + 22 * leaf) * lit * tone);
				img[1 * plane + i] = (float)((66 + 30 * leaf) * lit * tone);
				img[2 * plane + i] = (float)((34 + 14 * leaf) * lit * tone);
				tree[i] = (uint8_t)fmin(255, 6 * m + rad); /* crown height in pixels-ish */
			}
	}
	/* shadows: march from every building / tree pixel away from the sun */
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			size_t i = (size_t)y * w + x;
			double len = 0;
			if (s->truth[i] == SYNTH_BUILDING && g->bid[i] > 0)
				len = g->height[g->bid[i] - 1] * 0.8 * m;
			else if (tree[i])
				len = tree[i] * 0.5;
			for (double t = 1; t <= len; t += 1) {
				int xx = (int)(x + 0.5 + sun_x * t), yy = (int)(y + 0.5 + sun_y * t);
				if (xx < 0 || yy < 0 || xx >= w || yy >= h)
					break;
				size_t j = (size_t)yy * w + xx;
				if (s->truth[j] == SYNTH_BUILDING || tree[j])
					continue;
				shadow[j] = 1;
			}
		}
	/* one colour cast per scene, a light blur (optics), then sensor noise */
	struct rng nr = {g->nseed + 4242};
	double cast[3] = {range(&nr, 0.94, 1.06), range(&nr, 0.95, 1.05), range(&nr, 0.94, 1.08)};
	float *row = mem_alloc((size_t)(w > h ? w : h) * sizeof(float));
	for (int c = 0; c < 3 && row; c++) {
		float *p = img + c * plane;
		for (size_t i = 0; i < plane; i++)
			if (shadow[i])
				p[i] = p[i] * 0.5f + 6;
		/* [1 2 1]/4 in x then y */
		for (int y = 0; y < h; y++) {
			for (int x = 0; x < w; x++)
				row[x] = p[(size_t)y * w + x];
			for (int x = 1; x + 1 < w; x++)
				p[(size_t)y * w + x] = 0.25f * row[x - 1] + 0.5f * row[x] + 0.25f * row[x + 1];
		}
		for (int x = 0; x < w; x++) {
			for (int y = 0; y < h; y++)
				row[y] = p[(size_t)y * w + x];
			for (int y = 1; y + 1 < h; y++)
				p[(size_t)y * w + x] = 0.25f * row[y - 1] + 0.5f * row[y] + 0.25f * row[y + 1];
		}
		for (size_t i = 0; i < plane; i++)
			s->rgb[c * plane + i] = clamp8(p[i] * cast[c] + gauss(&nr) * 3.0);
	}
	mem_free(row);
out:
	mem_free(img);
	mem_free(shadow);
	mem_free(tree);
}

int synth_generate(const struct synth_params *p, struct synth_scene *s, struct error *err)
{
	memset(s, 0, sizeof(*s));
	s->p = *p;
	if (p->ntiles < 1 || p->ntiles > 64)
		return error_set(err, "scene of %d x %d tiles: want 1..64", p->ntiles, p->ntiles);
	uint64_t side = 1ull << p->origin.z;
	if (p->origin.x + (uint64_t)p->ntiles > side || p->origin.y + (uint64_t)p->ntiles > side)
		return error_set(err, "scene %d/%u/%u + %d tiles runs off the world at zoom %d",
				 p->origin.z, p->origin.x, p->origin.y, p->ntiles, p->origin.z);
	struct bbox nw;
	tile_bounds(&p->origin, &nw);
	double res = tile_resolution(p->origin.z);
	s->w = s->h = p->ntiles * TILE_SIZE;
	double gt[6] = {nw.w, res, 0, nw.n, 0, -res};
	memcpy(s->gt, gt, sizeof(gt));
	struct gen g;
	memset(&g, 0, sizeof(g));
	g.s = s;
	g.err = err;
	g.r.s = p->seed;
	g.nseed = p->seed * 0x9e3779b97f4a7c15ull + 12345;
	g.w = s->w;
	g.h = s->h;
	double ymid = nw.n - s->h * res / 2;
	g.k = burn_merc_scale(ymid);
	s->ground_res = res / g.k;
	g.m2px = 1.0 / s->ground_res;
	g.theta = range(&g.r, -0.35, 0.35);
	size_t plane = (size_t)s->w * s->h;
	s->rgb = mem_alloc(3 * plane);
	s->truth = mem_alloc(plane);
	s->noisy = mem_alloc(plane);
	g.water = mem_calloc(plane, 1);
	g.occ = mem_calloc(plane, 1);
	g.bid = mem_calloc(plane, sizeof(*g.bid));
	int rc = 0;
	if (!s->rgb || !s->truth || !s->noisy || !g.water || !g.occ || !g.bid) {
		rc = error_set(err, "out of memory for a %dx%d scene", s->w, s->h);
		goto out;
	}
	make_water(&g);
	if (make_roads(&g) < 0 || burn_world(&g, 0, 1, s->truth) < 0 ||
	    make_buildings(&g, s->truth) < 0 || burn_world(&g, 0, 0, s->truth) < 0 ||
	    make_map(&g, s->truth) < 0 || burn_world(&g, 1, 0, s->noisy) < 0) {
		rc = -1;
		goto out;
	}
	paint(&g);
out:
	mem_free(g.water);
	mem_free(g.occ);
	mem_free(g.bid);
	mem_free(g.height);
	mem_free(g.roofc);
	if (rc < 0)
		synth_scene_release(s);
	return rc;
}

void synth_scene_release(struct synth_scene *s)
{
	for (size_t i = 0; i < s->nroads; i++)
		mem_free(s->roads[i].x);
	mem_free(s->roads);
	mem_free(s->buildings);
	mem_free(s->rgb);
	mem_free(s->truth);
	mem_free(s->noisy);
	memset(s, 0, sizeof(*s));
}

/* ---- writing vectors ---- */

static int write_vectors(const struct synth_scene *s, const char *path, int map, struct error *err)
{
	raster_init();
	GDALDriverH drv = GDALGetDriverByName("GPKG");
	if (!drv)
		return error_set(err, "GDAL has no GPKG driver");
	VSIUnlink(path);
	GDALDatasetH ds = GDALCreate(drv, path, 0, 0, 0, GDT_Unknown, NULL);
	if (!ds)
		return error_set(err, "%s: cannot create: %s", path, CPLGetLastErrorMsg());
	OGRSpatialReferenceH merc = OSRNewSpatialReference(NULL), out = OSRNewSpatialReference(NULL);
	OGRCoordinateTransformationH ct = NULL;
	int rc = 0;
	if (!merc || !out || OSRImportFromEPSG(merc, 3857) != OGRERR_NONE ||
	    OSRImportFromEPSG(out, map ? 4326 : 3857) != OGRERR_NONE) {
		rc = error_set(err, "cannot set up EPSG:3857/4326 (proj-data?)");
		goto done;
	}
	OSRSetAxisMappingStrategy(merc, OAMS_TRADITIONAL_GIS_ORDER);
	OSRSetAxisMappingStrategy(out, OAMS_TRADITIONAL_GIS_ORDER);
	if (map && !(ct = OCTNewCoordinateTransformation(merc, out))) {
		rc = error_set(err, "no transformation EPSG:3857 -> EPSG:4326");
		goto done;
	}
	OGRLayerH roads = GDALDatasetCreateLayer(ds, "roads", out, wkbLineString, NULL);
	OGRLayerH blds = GDALDatasetCreateLayer(ds, "buildings", out, wkbPolygon, NULL);
	if (!roads || !blds) {
		rc = error_set(err, "%s: cannot create layers: %s", path, CPLGetLastErrorMsg());
		goto done;
	}
	OGRFieldDefnH fc = OGR_Fld_Create("class", OFTInteger), fw = OGR_Fld_Create("width", OFTReal),
		      fk = OGR_Fld_Create("kind", OFTString);
	if (OGR_L_CreateField(roads, fc, TRUE) != OGRERR_NONE ||
	    OGR_L_CreateField(roads, fw, TRUE) != OGRERR_NONE ||
	    OGR_L_CreateField(roads, fk, TRUE) != OGRERR_NONE ||
	    OGR_L_CreateField(blds, fc, TRUE) != OGRERR_NONE)
		rc = error_set(err, "%s: cannot create fields", path);
	OGR_Fld_Destroy(fc);
	OGR_Fld_Destroy(fw);
	OGR_Fld_Destroy(fk);
	if (rc)
		goto done;
	GDALDatasetStartTransaction(ds, FALSE);
	for (size_t i = 0; rc == 0 && i < s->nroads; i++) {
		const struct synth_road *rd = &s->roads[i];
		OGRGeometryH l = map ? make_line(rd->mx, rd->my, rd->n) : make_line(rd->x, rd->y, rd->n);
		OGRFeatureH f = OGR_F_Create(OGR_L_GetLayerDefn(roads));
		if (!l || !f || (ct && OGR_G_Transform(l, ct) != OGRERR_NONE)) {
			rc = error_set(err, "%s: cannot make road %zu", path, i);
		} else {
			OGR_F_SetFieldInteger(f, 0, SYNTH_ROAD);
			OGR_F_SetFieldDouble(f, 1, map ? rd->map_width : rd->width);
			OGR_F_SetFieldString(f, 2, rd->kind);
			OGR_F_SetGeometry(f, l);
			if (OGR_L_CreateFeature(roads, f) != OGRERR_NONE)
				rc = error_set(err, "%s: cannot write road %zu", path, i);
		}
		if (l)
			OGR_G_DestroyGeometry(l);
		if (f)
			OGR_F_Destroy(f);
	}
	for (size_t i = 0; rc == 0 && i < s->nbuildings; i++) {
		const struct synth_building *b = &s->buildings[i];
		if (map ? b->mn == 0 : b->map_state == 3)
			continue;
		OGRGeometryH p = map ? make_polygon(b->mx, b->my, b->mn) : make_polygon(b->x, b->y, b->n);
		OGRFeatureH f = OGR_F_Create(OGR_L_GetLayerDefn(blds));
		if (!p || !f || (ct && OGR_G_Transform(p, ct) != OGRERR_NONE)) {
			rc = error_set(err, "%s: cannot make building %zu", path, i);
		} else {
			OGR_F_SetFieldInteger(f, 0, SYNTH_BUILDING);
			OGR_F_SetGeometry(f, p);
			if (OGR_L_CreateFeature(blds, f) != OGRERR_NONE)
				rc = error_set(err, "%s: cannot write building %zu", path, i);
		}
		if (p)
			OGR_G_DestroyGeometry(p);
		if (f)
			OGR_F_Destroy(f);
	}
	if (GDALDatasetCommitTransaction(ds) != OGRERR_NONE && rc == 0)
		rc = error_set(err, "%s: commit failed: %s", path, CPLGetLastErrorMsg());
done:
	if (ct)
		OCTDestroyCoordinateTransformation(ct);
	if (merc)
		OSRDestroySpatialReference(merc);
	if (out)
		OSRDestroySpatialReference(out);
	GDALClose(ds);
	return rc;
}

int synth_write_map(const struct synth_scene *s, const char *path, struct error *err)
{
	return write_vectors(s, path, 1, err);
}

int synth_write_truth_vectors(const struct synth_scene *s, const char *path, struct error *err)
{
	return write_vectors(s, path, 0, err);
}

void synth_tile_window(const struct synth_scene *s, const uint8_t *planes, int bands, int i, int j,
		       uint8_t *out)
{
	size_t plane = (size_t)s->w * s->h;
	for (int b = 0; b < bands; b++)
		for (int y = 0; y < TILE_SIZE; y++)
			memcpy(out + (size_t)b * TILE_SIZE * TILE_SIZE + (size_t)y * TILE_SIZE,
			       planes + b * plane + (size_t)(j * TILE_SIZE + y) * s->w + (size_t)i * TILE_SIZE,
			       TILE_SIZE);
}

void synth_colorize(const uint8_t *labels, size_t n, uint8_t *rgb, size_t plane)
{
	static const uint8_t col[3][3] = {{28, 30, 36}, {200, 200, 200}, {225, 70, 60}};
	for (size_t i = 0; i < n; i++) {
		int c = labels[i] < 3 ? labels[i] : 0;
		rgb[i] = col[c][0];
		rgb[plane + i] = col[c][1];
		rgb[2 * plane + i] = col[c][2];
	}
}
