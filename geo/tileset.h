/* tileset: XYZ tile folders <-> mask dataset shards (nn/dataset.h), the
 * bridge between the GDAL side (imagery and label GeoTIFF tiles) and the
 * training programs, which read and write shards only and never link GDAL. */
#ifndef GEO_TILESET_H
#define GEO_TILESET_H

#include <stdint.h>

#include "core/error.h"
#include "nn/dataset.h"

/* Functions return 0, TILESET_EBADINPUT when the input is wrong in a way the
 * user can fix (a missing or unreadable tile, a value out of range, tiles
 * that do not match), or -1 when the work failed (I/O, memory). */
#define TILESET_EBADINPUT (-2)

/* What a missing label tile means. */
enum tileset_missing {
	TILESET_MISSING_ERROR = 0, /* bad input, naming the tile */
	TILESET_MISSING_IGNORE,	   /* a mask of DATASET_MASK_IGNORE (no label) */
};

struct tileset_pack_opts {
	const char *imagery; /* DIR/Z/X/Y.tif, Byte, 1..4 bands, square */
	const char *labels;  /* DIR/Z/X/Y.tif, 1 band Byte; NULL: every mask is 255 */
	int zoom;	     /* < 0: the only zoom folder of imagery */
	uint32_t num_classes;
	enum tileset_missing missing;
	int shard_i, shard_n; /* pack tile k (0-based, in order) when k mod n == i */
	int threads;	      /* tiles decoded at once, 1..TILESET_MAX_THREADS */
	int batch;	      /* tiles decoded before they are written (0: 16 per thread) */
};
#define TILESET_MAX_THREADS 64

/* 3 classes, shard 0/1, 1 thread */
void tileset_pack_opts_init(struct tileset_pack_opts *o);

struct tileset_stats {
	int zoom;
	uint64_t listed;	 /* imagery tiles at that zoom, all shards */
	uint64_t tiles;		 /* records written (pack) or tiles written (unpack) */
	uint64_t missing_labels; /* packed without a label tile (TILESET_MISSING_IGNORE) */
	struct dataset_shape shape;
};

/* Pack every imagery tile of the zoom in (x, y) order, paired with the label
 * tile of the same z/x/y, into one mask shard at out_path (atomic: on any
 * error nothing is left there). The first tile of the whole listing (not of
 * this shard) sets C x H x W, so every shard of an array gets the same shape,
 * even an empty one. Errors name the tile (and the pixel, for a label value
 * out of range). o->threads decode tiles at once, a batch at a time, written
 * in order: the same shard, and the error of the first bad tile in that
 * order, for any number of threads. */
int tileset_pack(const struct tileset_pack_opts *o, const char *out_path,
		 const struct dataset_progress *pr, struct tileset_stats *st, struct error *err);

/* Write the mask of every record of a mask shard as a 1-band Byte GeoTIFF
 * out_dir/Z/X/Y.tif georeferenced from its key like cairn-rasterize's label
 * tiles (raster_write_tile_sized: EPSG:3857, DEFLATE, temp file + rename).
 * Mask value 255 (no label) is written as it is. Before any tile is written:
 * the shard is verified (crc, mask values), every record must have a key, no
 * two the same tile, tiles square, and with like_dir, like_dir/Z/X/Y.tif must
 * exist for every key. threads (1..TILESET_MAX_THREADS) write tiles at once;
 * on failure, the error of the lowest record that failed. */
int tileset_unpack(const char *shard_path, const char *out_dir, const char *like_dir, int threads,
		   const struct dataset_progress *pr, struct tileset_stats *st, struct error *err);

#endif
