/* burn: vector features -> label rasters on the EPSG:3857 grid. Features from
 * any OGR source in any CRS are brought to EPSG:3857 (traditional lon/lat
 * axis order), lines are buffered to a road width given in ground metres,
 * and GDAL's rasterizer burns them into a window or an XYZ tile. The same
 * code makes cairn-synth's truth and cairn-rasterize's label tiles, so a
 * map without errors rasterizes to exactly the truth. */
#ifndef GEO_BURN_H
#define GEO_BURN_H

#include <stddef.h>
#include <stdint.h>

#include <ogr_api.h>

#include "core/error.h"
#include "geo/tile.h"

struct burn_feature {
	OGRGeometryH geom; /* polygonal, EPSG:3857, owned */
	struct bbox env;   /* its envelope */
	uint8_t value;
	size_t order;      /* insertion order, for a stable sort */
};

/* Features sorted by value (then insertion order) before burning, so a
 * higher class wins where two overlap: a building (2) over a road (1).
 * burn_set_prepare also builds a spatial index: a uniform grid of about one
 * cell per feature over the features' extent, each cell listing the features
 * whose envelope touches it (positions in the sorted order, ascending), so a
 * window looks only at the features of the cells it covers. A feature whose
 * envelope spans more than BURN_BIG_CELLS cells is listed once in `big`. */
#define BURN_BIG_CELLS 64
struct burn_set {
	struct burn_feature *f;
	size_t n, cap;
	int sorted; /* sorted and indexed */
	struct bbox grid;   /* the indexed extent */
	int gw, gh;         /* cells across, down */
	double cw, ch;      /* cell size in metres */
	size_t *cell_start; /* gw * gh + 1 offsets into cell_items */
	size_t *cell_items;
	size_t *big, nbig;
	/* what burn_load_ogr skipped */
	size_t skipped_points, skipped_empty, skipped_bad;
};

void burn_set_init(struct burn_set *s);
void burn_set_release(struct burn_set *s);

/* Scale from ground metres to EPSG:3857 metres at mercator northing y:
 * 1/cos(lat) = cosh(y / R) on the sphere (Snyder 1987, eq. 7-2 and 7-4). */
double burn_merc_scale(double y);

/* Add a polygon or multipolygon in EPSG:3857 (ownership passes to the set). */
int burn_set_add_polygon(struct burn_set *s, OGRGeometryH geom, uint8_t value, struct error *err);
/* Add a line in EPSG:3857, buffered to width_m ground metres: half-width
 * times burn_merc_scale() at the line's centroid, 8 segments per quarter
 * circle; lines of more than 64 segments are buffered in 64-segment pieces
 * (see burn.c). The line stays the caller's. */
int burn_set_add_line(struct burn_set *s, OGRGeometryH line, double width_m, uint8_t value,
		      struct error *err);

struct burn_load_opts {
	const char *layer;       /* NULL: every layer */
	const char *class_field; /* NULL or absent: value 1 */
	const char *width_field; /* NULL or absent/<=0: road_width */
	double road_width;       /* ground metres (default 6) */
	const char *srs;         /* override the layers' CRS ("EPSG:27700"); NULL: as stored */
};

/* Read every feature of an OGR source (GeoPackage, GeoJSON, Shapefile, ...):
 * polygons fill, lines are buffered, points are skipped (counted). */
int burn_load_ogr(struct burn_set *s, const char *path, const struct burn_load_opts *o,
		  struct error *err);

/* EPSG:3857 envelope of all features; -1 if the set is empty. */
int burn_set_extent(const struct burn_set *s, struct bbox *env, struct error *err);

/* Sort and index the features for burning; call once before burning from
 * several threads (burn_window does it on first use otherwise); -1 when out
 * of memory for the index. */
int burn_set_prepare(struct burn_set *s, struct error *err);

/* Burn into a w x h Byte raster with geotransform gt (north-up), zeros where
 * nothing lies. A pixel is burned when its centre is inside (GDAL's rule). */
int burn_window(struct burn_set *s, const double gt[6], int w, int h, uint8_t *out,
		struct error *err);
/* The same for one 256x256 XYZ tile. */
int burn_tile(struct burn_set *s, const struct tile *t, uint8_t *out, struct error *err);

#endif
