/* raster: the GDAL side of geo/: registering drivers once, checking that a
 * downloaded body really decodes as the image it claims to be (in memory,
 * through /vsimem/), and reading/writing 256x256 Byte GeoTIFF tiles on the
 * XYZ grid in EPSG:3857 and plain PNG pictures. */
#ifndef GEO_RASTER_H
#define GEO_RASTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "geo/tile.h"

/* GDALAllRegister once per process (thread-safe), GDAL_PAM_ENABLED=NO so no
 * .aux.xml files appear next to tiles. */
void raster_init(void);

/* 0 when data is a complete, decodable image of the kind ext names
 * ("png", "jpg"/"jpeg", "webp", "tif"/"tiff"; anything else: any GDAL raster):
 * the signature matches, the end marker is there (PNG IEND, JPEG EOI), and
 * all of its image data decodes without an error or a warning. For a PNG
 * (non-interlaced, not a palette) that is: every chunk's CRC, IHDR valid as
 * libpng checks it, and the IDAT stream inflates (GDAL's CPLZLibInflate:
 * every code, the Adler-32) to exactly the rows IHDR promises, each with a
 * valid filter type; other images are opened by GDAL with that driver only
 * and have every pixel of every band read through it. Thread-safe. */
int raster_check_image(const void *data, size_t len, const char *ext, struct error *err);

/* Memory a thread reuses from one check to the next (the inflated image). */
struct raster_scratch {
	uint8_t *p;
	size_t cap;
};
void raster_scratch_release(struct raster_scratch *s);
/* raster_check_image with the caller's scratch memory. */
int raster_check_image_with(const void *data, size_t len, const char *ext,
			    struct raster_scratch *s, struct error *err);

/* The driver's own decode for every format: GDAL reads every pixel of every
 * band (for a PNG, libpng inflates and unfilters it); slower. */
int raster_check_image_gdal(const void *data, size_t len, const char *ext, struct error *err);

/* The cheaper check: signature and end marker, every PNG chunk's CRC-32 (a
 * flipped byte anywhere in a PNG is caught without inflating it; for JPEG the
 * marker segments up to the scan), and GDAL opens the header with the
 * expected driver; pixels are not decoded. */
int raster_check_image_fast(const void *data, size_t len, const char *ext, struct error *err);

/* Write a TILE_SIZE x TILE_SIZE Byte GeoTIFF for tile t: EPSG:3857, geotransform
 * (west, res, 0, north, 0, -res) from tile_bounds(), `bands` planes of
 * TILE_SIZE*TILE_SIZE bytes one after the other, DEFLATE-compressed. Written
 * to a temp file and renamed, so readers never see a partial tile. */
int raster_write_tile(const char *path, const struct tile *t, int bands, const uint8_t *data,
		      struct error *err);
/* The same for tiles of size x size pixels (512-pixel "retina" tiles, say):
 * the same bounds, resolution (east - west) / size. */
int raster_write_tile_sized(const char *path, const struct tile *t, int size, int bands,
			    const uint8_t *data, struct error *err);
/* Read the bands of a tile written as above into data (bands planes); fails
 * if the size is not TILE_SIZE x TILE_SIZE or it has another band count. */
int raster_read_tile(const char *path, int bands, uint8_t *data, struct error *err);

/* Why GDAL could not open a local path, for "PATH: cannot open: REASON":
 * the errno of a missing or unreadable file, "a folder", "an empty file",
 * GDAL's own message (gdal_msg) when it gave one, else "not a format GDAL
 * reads". Returns buf. */
const char *raster_open_reason(const char *path, const char *gdal_msg, char *buf, size_t size);
/* GDALOpenEx(path, flags | GDAL_OF_VERBOSE_ERROR) with GDAL kept quiet: the
 * dataset (a GDALDatasetH), or NULL and "NAME: cannot open[ as WHAT]: REASON"
 * in err (what NULL: no " as WHAT"). */
void *raster_open_quiet(const char *path, unsigned flags, const char *name, const char *what,
			struct error *err);

/* A w x h picture, `bands` (1, 3 or 4) planes, written as PNG atomically. */
int raster_write_png(const char *path, int w, int h, int bands, const uint8_t *data,
		     struct error *err);

#endif
