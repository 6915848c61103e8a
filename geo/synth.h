/* synth: seeded synthetic aerial scenes at about 1 m/pixel with exact truth.
 * A scene is a block of N x N XYZ tiles: a road network (a rotated grid and
 * curved streets of several widths), buildings (rectangles and L shapes, roof
 * colours, gable shading, shadows), trees, grass and soil, sometimes a lake,
 * texture and sensor noise. Truth labels: 0 background, 1 road, 2 building.
 * The "map" is the same world as an OpenStreetMap-like vector layer with the
 * errors real maps have, each a parameter: missing buildings, road centre
 * lines offset by metres, wrong road widths, outdated buildings (since
 * extended, or demolished), and a global misregistration shift. */
#ifndef GEO_SYNTH_H
#define GEO_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "geo/burn.h"
#include "geo/tile.h"

enum { SYNTH_BACKGROUND = 0, SYNTH_ROAD = 1, SYNTH_BUILDING = 2 };

struct synth_params {
	struct tile origin;       /* north-west tile of the scene */
	int ntiles;               /* the scene is ntiles x ntiles tiles */
	uint64_t seed;
	double missing_buildings; /* fraction of buildings absent from the map (0.15) */
	double road_offset;       /* std dev of a road's centre-line offset, metres (2.0) */
	double width_error;       /* map width = true width * (1 + U(-e, e)) (0.3) */
	double outdated;          /* fraction of buildings whose map shape is old (0.05) */
	double shift;             /* whole-map misregistration, metres (1.0) */
};

void synth_params_init(struct synth_params *p);

struct synth_road {
	int n;           /* points */
	double *x, *y;   /* true centre line, EPSG:3857 */
	double *mx, *my; /* map centre line (offset and shifted) */
	double width;    /* true width, ground metres */
	double map_width;
	const char *kind; /* "primary", "residential", "service" */
};

struct synth_building {
	int n;            /* ring points, closed (first == last) */
	double x[16], y[16];
	int map_state;    /* 0 in the map as is, 1 missing, 2 outdated shape, 3 demolished (ghost) */
	int mn;
	double mx[16], my[16]; /* map ring (shifted) when present */
};

struct synth_scene {
	struct synth_params p;
	int w, h;          /* pixels */
	double gt[6];      /* EPSG:3857 geotransform of the whole scene */
	double ground_res; /* ground metres per pixel */
	uint8_t *rgb;      /* 3 planes of w*h */
	uint8_t *truth;    /* w*h classes */
	uint8_t *noisy;    /* w*h, the map rasterized like the truth */
	struct synth_road *roads;
	size_t nroads;
	struct synth_building *buildings;
	size_t nbuildings;
	size_t n_missing, n_outdated, n_ghost;
};

int synth_generate(const struct synth_params *p, struct synth_scene *s, struct error *err);
void synth_scene_release(struct synth_scene *s);

/* The map as a GeoPackage in EPSG:4326 (lon/lat, like OSM): layers "roads"
 * (LineString; class=1, width, kind) and "buildings" (Polygon; class=2). */
int synth_write_map(const struct synth_scene *s, const char *path, struct error *err);
/* The true vectors, same layers, EPSG:3857. */
int synth_write_truth_vectors(const struct synth_scene *s, const char *path, struct error *err);

/* Copy tile (i, j) of the scene (i east, j south, 0-based) out of a plane
 * array: `bands` planes of w*h into bands planes of 256*256. */
void synth_tile_window(const struct synth_scene *s, const uint8_t *planes, int bands, int i,
		       int j, uint8_t *out);

/* Colour a class raster for people: background dark, road grey, building red. */
void synth_colorize(const uint8_t *labels, size_t n, uint8_t *rgb_planes, size_t plane);

#endif
