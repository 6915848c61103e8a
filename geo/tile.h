/* tile: web-mercator (EPSG:3857) XYZ tile math as used by OSM, Google and
 * Bing: lon/lat <-> tile, bbox -> tile ranges, tile bounds in metres,
 * quadkeys, and the --shard i/n split of a tile set into contiguous runs. */
#ifndef GEO_TILE_H
#define GEO_TILE_H

#include <stdint.h>

#include "core/error.h"

#define TILE_SIZE 256
#define TILE_MAX_ZOOM 30
/* Half the world's width in EPSG:3857 metres: pi * 6378137 (WGS84 a). */
#define TILE_ORIGIN 20037508.342789244
/* The latitude where the mercator square ends: atan(sinh(pi)) in degrees. */
#define TILE_MAX_LAT 85.051128779806604

struct tile {
	int z;
	uint32_t x, y;
};

/* Inclusive ranges of columns x0..x1 and rows y0..y1 at zoom z. */
struct tile_range {
	int z;
	uint32_t x0, y0, x1, y1;
};

/* Longitude/latitude box in degrees (west, south, east, north), or, for
 * tile_bounds(), metres in EPSG:3857 (minx, miny, maxx, maxy). */
struct bbox {
	double w, s, e, n;
};

/* Spherical mercator: x = a*lon, y = a*ln(tan(pi/4 + lat/2)), a = 6378137.
 * Latitude is clamped to +-TILE_MAX_LAT. */
void tile_lonlat_to_merc(double lon, double lat, double *x, double *y);
void tile_merc_to_lonlat(double x, double y, double *lon, double *lat);

/* The tile holding a point (a point on a tile edge belongs to the tile east
 * or south of it). -1 with a message for a zoom out of 0..TILE_MAX_ZOOM. */
int tile_from_lonlat(double lon, double lat, int z, struct tile *t, struct error *err);
/* Longitude/latitude of the north-west corner of tile (x, y); x and y may be
 * fractional (x + 0.5 is the centre). */
void tile_corner_lonlat(int z, double x, double y, double *lon, double *lat);
void tile_bounds_lonlat(const struct tile *t, struct bbox *b);
/* Tile bounds in EPSG:3857 metres, computed from the origin and the tile
 * size so that neighbouring tiles share their edges exactly. */
void tile_bounds(const struct tile *t, struct bbox *b);
/* Metres per pixel of a 256-pixel tile at zoom z (at the equator). */
double tile_resolution(int z);

/* The tiles a lon/lat bbox touches; a bbox edge on a tile edge does not pull
 * in the tile beyond it. Errors: bad zoom, w >= e, s >= n, out of range. */
int tile_range_from_bbox(const struct bbox *b, int z, struct tile_range *r, struct error *err);
/* Same for a box in EPSG:3857 metres. */
int tile_range_from_merc(const struct bbox *m, int z, struct tile_range *r, struct error *err);
uint64_t tile_range_count(const struct tile_range *r);
/* The i-th tile in row-major order (rows north to south, columns west to east). */
void tile_range_nth(const struct tile_range *r, uint64_t i, struct tile *t);

/* Shard i of n of a set of `count` items: [*begin, *end), contiguous, sizes
 * differ by at most one, every item in exactly one shard. */
void tile_shard(uint64_t count, int i, int n, uint64_t *begin, uint64_t *end);

/* The most tiles one run (one shard) of cairn-fetch or cairn-rasterize
 * makes: 2^24 = 16,777,216. A fetch keeps about 150 bytes of state and
 * manifest per tile (2.5 GB at the limit) and writes a manifest of about
 * 1.3 GB. A country is a sharded job: France's bbox holds 28 million tiles at
 * zoom 17 and 112 million at 18, under the limit in 2 and 8 shards. */
#define TILE_MAX_PER_RUN (1ull << 24)
/* -1 with "too many tiles (N; at most M): use a smaller --bbox, a lower
 * --zoom, or --shard" when n > TILE_MAX_PER_RUN. */
int tile_check_run_size(uint64_t n, struct error *err);

/* Bing quadkey: one digit per zoom level, digit = 2*ybit + xbit; z=0 is "". */
void tile_quadkey(const struct tile *t, char out[TILE_MAX_ZOOM + 1]);
int tile_from_quadkey(const char *qk, struct tile *t, struct error *err);

/* "W,S,E,N" in degrees, negative numbers allowed. */
int tile_parse_bbox(const char *s, struct bbox *b, struct error *err);
/* "i/n" with 0 <= i < n. */
int tile_parse_shard(const char *s, int *i, int *n, struct error *err);

#endif
