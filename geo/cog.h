/* cog: the second source kind of cairn-fetch: a (Cloud-Optimized) GeoTIFF,
 * a local path or an http(s) URL read through GDAL's /vsicurl/ with range
 * requests, reprojected to EPSG:3857 and cut into XYZ tiles, with the same
 * manifest and rerun rules as downloaded tiles. */
#ifndef GEO_COG_H
#define GEO_COG_H

#include <stdint.h>

#include "core/error.h"
#include "geo/tile.h"

struct cog_opts {
	const char *src;        /* path, or http(s) URL (read with /vsicurl/) */
	const char *out_dir;    /* tiles go to out_dir/Z/X/Y.EXT */
	const char *ext;        /* "tif" (default) or "png" (Byte sources) */
	int zoom;
	int have_bbox;          /* else: the source's extent */
	struct bbox bbox;       /* lon/lat */
	int shard_i, shard_n;
	const char *resampling; /* gdalwarp -r (default "bilinear") */
	int threads;            /* tiles warped at once, one source handle each (0: CPUs, at most 8) */
	int refetch;            /* the manifest records another source: replace its tiles */
	/* Called once, before any tile, with a line about the folder's manifest
	 * when there is something to say (fetch_manifest_source). */
	void (*on_note)(void *ctx, const char *line);
	void *ctx;
};

struct cog_stats {
	uint64_t total, written, cached, empty;
	double seconds;
	char manifest[4096];
};

/* Returned for a source that cannot be opened or has no georeferencing, bad
 * options, more than TILE_MAX_PER_RUN tiles, a folder where the manifest goes:
 * the user's input, not a failure of the work. */
#define COG_EBADINPUT (-2)

/* COG_EBADINPUT (above), or -1 with a message when a tile cannot be made;
 * tiles without any data are recorded "missing" and not written. */
int cog_run(const struct cog_opts *o, struct cog_stats *st, struct error *err);

#endif
