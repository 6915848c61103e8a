#include "geo/tile.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EARTH_A 6378137.0

static double clamp(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void tile_lonlat_to_merc(double lon, double lat, double *x, double *y)
{
	lat = clamp(lat, -TILE_MAX_LAT, TILE_MAX_LAT);
	*x = EARTH_A * lon * M_PI / 180.0;
	*y = EARTH_A * log(tan(M_PI / 4.0 + lat * M_PI / 360.0));
}

void tile_merc_to_lonlat(double x, double y, double *lon, double *lat)
{
	*lon = x / EARTH_A * 180.0 / M_PI;
	*lat = (2.0 * atan(exp(y / EARTH_A)) - M_PI / 2.0) * 180.0 / M_PI;
}

static int check_zoom(int z, struct error *err)
{
	if (z < 0 || z > TILE_MAX_ZOOM)
		return error_set(err, "zoom %d out of range 0..%d", z, TILE_MAX_ZOOM);
	return 0;
}

/* Fractional tile coordinates of a point in metres. */
static void merc_to_frac(double mx, double my, int z, double *fx, double *fy)
{
	double n = ldexp(1.0, z);
	*fx = (mx + TILE_ORIGIN) / (2.0 * TILE_ORIGIN) * n;
	*fy = (TILE_ORIGIN - my) / (2.0 * TILE_ORIGIN) * n;
}

static uint32_t clamp_index(double f, int z)
{
	double max = ldexp(1.0, z) - 1.0;
	return (uint32_t)clamp(f, 0.0, max);
}

int tile_from_lonlat(double lon, double lat, int z, struct tile *t, struct error *err)
{
	if (check_zoom(z, err) < 0)
		return -1;
	if (!(lon >= -180.0 && lon <= 180.0) || !(lat >= -90.0 && lat <= 90.0))
		return error_set(err, "point %.9g,%.9g is not a longitude,latitude", lon, lat);
	double mx, my, fx, fy;
	tile_lonlat_to_merc(lon, lat, &mx, &my);
	merc_to_frac(mx, my, z, &fx, &fy);
	t->z = z;
	t->x = clamp_index(floor(fx), z);
	t->y = clamp_index(floor(fy), z);
	return 0;
}

void tile_corner_lonlat(int z, double x, double y, double *lon, double *lat)
{
	double n = ldexp(1.0, z);
	*lon = x / n * 360.0 - 180.0;
	/* OSM wiki "Slippy map tilenames": lat = atan(sinh(pi * (1 - 2y/n))) */
	*lat = atan(sinh(M_PI * (1.0 - 2.0 * y / n))) * 180.0 / M_PI;
}

void tile_bounds_lonlat(const struct tile *t, struct bbox *b)
{
	tile_corner_lonlat(t->z, t->x, t->y + 1.0, &b->w, &b->s);
	tile_corner_lonlat(t->z, t->x + 1.0, t->y, &b->e, &b->n);
}

void tile_bounds(const struct tile *t, struct bbox *b)
{
	double size = 2.0 * TILE_ORIGIN / ldexp(1.0, t->z);
	b->w = -TILE_ORIGIN + t->x * size;
	b->e = -TILE_ORIGIN + (t->x + 1.0) * size;
	b->n = TILE_ORIGIN - t->y * size;
	b->s = TILE_ORIGIN - (t->y + 1.0) * size;
}

double tile_resolution(int z)
{
	return 2.0 * TILE_ORIGIN / ldexp(TILE_SIZE, z);
}

int tile_range_from_merc(const struct bbox *m, int z, struct tile_range *r, struct error *err)
{
	if (check_zoom(z, err) < 0)
		return -1;
	if (!(m->w < m->e) || !(m->s < m->n))
		return error_set(err, "empty box %.9g,%.9g,%.9g,%.9g (need west < east, south < north)",
				 m->w, m->s, m->e, m->n);
	double fx0, fy0, fx1, fy1;
	merc_to_frac(m->w, m->n, z, &fx0, &fy0);
	merc_to_frac(m->e, m->s, z, &fx1, &fy1);
	/* An east/south edge exactly on a tile edge ends in the tile before it.
	 * Edges within 1e-6 tile of a tile edge count as on it: that absorbs a
	 * bbox printed with 9 decimals (5e-10 degrees = 6e-9 tiles at zoom 12,
	 * 1.5e-6 at zoom 20) and costs at most 1e-6 of a tile (< 1 mm at z 17). */
	double eps = 1e-6;
	r->z = z;
	r->x0 = clamp_index(floor(fx0 + eps), z);
	r->y0 = clamp_index(floor(fy0 + eps), z);
	r->x1 = clamp_index(ceil(fx1 - eps) - 1.0, z);
	r->y1 = clamp_index(ceil(fy1 - eps) - 1.0, z);
	if (r->x1 < r->x0)
		r->x1 = r->x0;
	if (r->y1 < r->y0)
		r->y1 = r->y0;
	return 0;
}

int tile_range_from_bbox(const struct bbox *b, int z, struct tile_range *r, struct error *err)
{
	if (!(b->w >= -180.0 && b->e <= 180.0 && b->s >= -90.0 && b->n <= 90.0))
		return error_set(err, "bbox %.9g,%.9g,%.9g,%.9g is outside -180,-90,180,90", b->w,
				 b->s, b->e, b->n);
	if (!(b->w < b->e) || !(b->s < b->n))
		return error_set(err, "empty bbox %.9g,%.9g,%.9g,%.9g (need west < east, south < north)",
				 b->w, b->s, b->e, b->n);
	struct bbox m;
	tile_lonlat_to_merc(b->w, b->s, &m.w, &m.s);
	tile_lonlat_to_merc(b->e, b->n, &m.e, &m.n);
	if (!(m.s < m.n))
		return error_set(err, "bbox %.9g,%.9g,%.9g,%.9g lies beyond latitude +-%.6f", b->w,
				 b->s, b->e, b->n, TILE_MAX_LAT);
	return tile_range_from_merc(&m, z, r, err);
}

uint64_t tile_range_count(const struct tile_range *r)
{
	return (uint64_t)(r->x1 - r->x0 + 1) * (uint64_t)(r->y1 - r->y0 + 1);
}

void tile_range_nth(const struct tile_range *r, uint64_t i, struct tile *t)
{
	uint64_t w = (uint64_t)(r->x1 - r->x0 + 1);
	t->z = r->z;
	t->x = r->x0 + (uint32_t)(i % w);
	t->y = r->y0 + (uint32_t)(i / w);
}

int tile_check_run_size(uint64_t n, struct error *err)
{
	if (n <= TILE_MAX_PER_RUN)
		return 0;
	return error_set(err,
			 "too many tiles (%llu; at most %llu): use a smaller --bbox, a lower "
			 "--zoom, or --shard",
			 (unsigned long long)n, (unsigned long long)TILE_MAX_PER_RUN);
}

void tile_shard(uint64_t count, int i, int n, uint64_t *begin, uint64_t *end)
{
	if (n <= 0 || i < 0 || i >= n) {
		*begin = *end = 0;
		return;
	}
	/* The first count % n shards get one extra item. */
	uint64_t q = count / (uint64_t)n, rem = count % (uint64_t)n, ui = (uint64_t)i;
	*begin = ui * q + (ui < rem ? ui : rem);
	*end = *begin + q + (ui < rem ? 1 : 0);
}

void tile_quadkey(const struct tile *t, char out[TILE_MAX_ZOOM + 1])
{
	for (int i = t->z; i > 0; i--) {
		uint32_t mask = 1u << (i - 1);
		int digit = ((t->x & mask) ? 1 : 0) + ((t->y & mask) ? 2 : 0);
		out[t->z - i] = (char)('0' + digit);
	}
	out[t->z] = '\0';
}

int tile_from_quadkey(const char *qk, struct tile *t, struct error *err)
{
	size_t len = strlen(qk);
	if (len > TILE_MAX_ZOOM)
		return error_set(err, "quadkey '%s' longer than %d digits", qk, TILE_MAX_ZOOM);
	t->z = (int)len;
	t->x = t->y = 0;
	for (size_t i = 0; i < len; i++) {
		if (qk[i] < '0' || qk[i] > '3')
			return error_set(err, "quadkey '%s': digit '%c' is not 0..3", qk, qk[i]);
		int d = qk[i] - '0';
		t->x = (t->x << 1) | (uint32_t)(d & 1);
		t->y = (t->y << 1) | (uint32_t)(d >> 1);
	}
	return 0;
}

int tile_parse_bbox(const char *s, struct bbox *b, struct error *err)
{
	double v[4];
	const char *p = s;
	for (int i = 0; i < 4; i++) {
		char *end;
		errno = 0;
		v[i] = strtod(p, &end);
		if (end == p || errno != 0 || !isfinite(v[i]))
			return error_set(err, "bbox '%s': number %d is not a number", s, i + 1);
		p = end;
		if (i < 3) {
			if (*p != ',')
				return error_set(err, "bbox '%s': want W,S,E,N", s);
			p++;
		}
	}
	if (*p != '\0')
		return error_set(err, "bbox '%s': trailing text '%s'", s, p);
	b->w = v[0];
	b->s = v[1];
	b->e = v[2];
	b->n = v[3];
	if (!(b->w < b->e) || !(b->s < b->n))
		return error_set(err, "bbox '%s': need west < east and south < north", s);
	if (b->w < -180 || b->e > 180 || b->s < -90 || b->n > 90)
		return error_set(err, "bbox '%s': outside -180,-90,180,90", s);
	return 0;
}

int tile_parse_shard(const char *s, int *i, int *n, struct error *err)
{
	char *end;
	errno = 0;
	long a = strtol(s, &end, 10);
	if (end == s || *end != '/' || errno)
		return error_set(err, "shard '%s': want i/n, e.g. 3/16", s);
	const char *q = end + 1;
	long b = strtol(q, &end, 10);
	if (end == q || *end != '\0' || errno)
		return error_set(err, "shard '%s': want i/n, e.g. 3/16", s);
	if (b < 1 || b > 1000000 || a < 0 || a >= b)
		return error_set(err, "shard '%s': need 0 <= i < n", s);
	*i = (int)a;
	*n = (int)b;
	return 0;
}
