/* dataset: training-data shards. A shard is a 64-byte header followed by
 * fixed-size records (image bytes, then a label), read through mmap so that
 * opening a shard costs nothing and pages come in as the loader touches them.
 * Also: IDX import (MNIST family), stratified split, Zipf-like imbalance.
 * Byte layout: docs/formats.md, "Dataset shards". */
#ifndef NN_DATASET_H
#define NN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define DATASET_MAGIC "CAIRNDS\0" /* 8 bytes at offset 0 */
#define DATASET_VERSION 1u	  /* shards of class labels (one per record) */
#define DATASET_VERSION_MASK 2u	  /* shards of per-pixel masks (label kind at byte 52) */
#define DATASET_HEADER_BYTES 64u
#define DATASET_PIXEL_U8 1u /* the only pixel type so far */
#define DATASET_MAX_CHANNELS 4u

/* Functions return 0, or DATASET_EBADINPUT (-2) when the input is malformed
 * or missing (bad magic, truncated, corrupt, label out of range, bad argument:
 * the user can fix it), or -1 for other failures (I/O, memory). */
#define DATASET_EBADINPUT (-2)

/* What a record's label is: one class for the whole image (classifiers), or
 * a mask of one class per pixel plus the XYZ tile the record came from
 * (segmentation: U-Nets on map tiles). */
enum dataset_label_kind {
	DATASET_LABEL_CLASS = 0, /* uint32 label */
	DATASET_LABEL_MASK = 1,	 /* H x W uint8 classes, then a dataset_key */
};
#define DATASET_MASK_IGNORE 255u      /* mask value: no label here (not scored, not learned) */
#define DATASET_MASK_MAX_CLASSES 255u /* mask classes are 0..254 */
#define DATASET_KEY_BYTES 12u	      /* z, x, y: uint32 little-endian each */
#define DATASET_KEY_NONE 0xFFFFFFFFu  /* z of a record that is no XYZ tile */

/* What every record of a shard looks like. Pixels are uint8, planar (CHW).
 * A mask shard may have 0 channels: masks without their imagery, as
 * cairn-predict writes its predictions (a quarter of the bytes of an RGB
 * tile and its mask). */
struct dataset_shape {
	uint32_t channels, height, width;
	uint32_t num_classes; /* labels are 0 .. num_classes-1 */
	uint32_t label_kind;  /* enum dataset_label_kind; 0 (class) unless set */
};

/* Where a mask record came from: XYZ tile z/x/y (web mercator), or z =
 * DATASET_KEY_NONE. Predictions keep their input's keys, so they can be put
 * back on the map. */
struct dataset_key {
	uint32_t z, x, y;
};

/* An open shard (read-only, mmap'd). Fields are read-only for callers. */
struct dataset {
	char *path;
	struct dataset_shape shape;
	uint64_t count;	     /* number of records */
	size_t image_bytes;  /* channels * height * width */
	size_t record_bytes; /* image_bytes + 4 (uint32 little-endian label), or for
				masks image_bytes + height * width + DATASET_KEY_BYTES */
	uint32_t data_crc32; /* zlib crc32 of all record bytes, as stored */
	const uint8_t *records;
	void *map;
	size_t map_len;
};

/* dataset_open flags */
#define DATASET_VERIFY 1u /* also check data_crc32 (reads the whole file) */

/* Open and check a shard: magic, version, header crc, shape, exact file size,
 * every label < num_classes (mask shards: every key is a valid tile or none;
 * mask values are checked with DATASET_VERIFY, and by the loader as it reads
 * them). Errors name the file and the byte offset:
 * "x.ds: truncated: 1000 bytes, expected 4728064 (64-byte header + 6000 records of 788 bytes)". */
int dataset_open(struct dataset *ds, const char *path, unsigned flags, struct error *err);
void dataset_close(struct dataset *ds);

/* Record i (i < count): its pixels (image_bytes, CHW) and its label. */
static inline const uint8_t *dataset_image(const struct dataset *ds, uint64_t i)
{
	return ds->records + i * ds->record_bytes;
}
static inline uint32_t dataset_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/* Class shards only. */
static inline uint32_t dataset_label(const struct dataset *ds, uint64_t i)
{
	return dataset_get32(ds->records + i * ds->record_bytes + ds->image_bytes);
}
/* Mask shards only: record i's H x W classes (row-major), and its tile. */
static inline const uint8_t *dataset_mask(const struct dataset *ds, uint64_t i)
{
	return ds->records + i * ds->record_bytes + ds->image_bytes;
}
static inline struct dataset_key dataset_key(const struct dataset *ds, uint64_t i)
{
	const uint8_t *p = ds->records + (i + 1) * ds->record_bytes - DATASET_KEY_BYTES;
	struct dataset_key k = {dataset_get32(p), dataset_get32(p + 4), dataset_get32(p + 8)};
	return k;
}

/* Recompute the data crc32 and compare with the header's. */
int dataset_verify(const struct dataset *ds, struct error *err);
/* counts[k] = records with label k (mask shards: pixels of class k, ignored
 * pixels not counted); counts has shape.num_classes entries. */
void dataset_histogram(const struct dataset *ds, uint64_t *counts);
/* Per-channel mean and standard deviation of pixel/255 over all records
 * (two-pass in double precision), for loader normalization. */
void dataset_channel_stats(const struct dataset *ds, float *mean, float *std);

/* Streaming writer: records go to PATH.tmp.PID, the header is finalized and
 * the file renamed into place by dataset_writer_finish (atomic: a reader never
 * sees a half-written shard). */
struct dataset_writer {
	char *path, *tmp_path;
	void *file; /* FILE * */
	struct dataset_shape shape;
	size_t image_bytes;
	uint64_t count;
	uint32_t crc;
};
int dataset_writer_open(struct dataset_writer *w, const char *path,
			const struct dataset_shape *shape, struct error *err);
int dataset_writer_add(struct dataset_writer *w, const uint8_t *pixels, uint32_t label,
		       struct error *err);
/* For a writer opened with label_kind DATASET_LABEL_MASK: pixels (C x H x W),
 * mask (H x W, each < num_classes or DATASET_MASK_IGNORE), key (NULL: none). */
int dataset_writer_add_mask(struct dataset_writer *w, const uint8_t *pixels, const uint8_t *mask,
			    const struct dataset_key *key, struct error *err);
int dataset_writer_finish(struct dataset_writer *w, struct error *err);
/* Drop the temp file; safe after finish or a failed open (does nothing then). */
void dataset_writer_abort(struct dataset_writer *w);

/* Optional progress report for the long operations below (import, split,
 * imbalance): fn(ctx, done, total) every 4096 records and once at the end.
 * NULL: no reports. */
struct dataset_progress {
	void (*fn)(void *ctx, uint64_t done, uint64_t total);
	void *ctx;
};

/* Import an IDX image file (magic 0x00000803: uint8, N x H x W) and an IDX
 * label file (0x00000801: uint8, N), gzip-compressed or not. num_classes = 0
 * means max label + 1. Errors name the file and the byte offset (in the
 * uncompressed stream for .gz files). */
int dataset_import_idx(const char *images_path, const char *labels_path, const char *out_path,
		       uint32_t num_classes, const struct dataset_progress *pr, struct error *err);

/* Split: for each class, a seeded shuffle of its records puts round(fraction * n_class)
 * of them in A and the rest in B (stratified, so both keep the class balance;
 * a mask shard is one group: round(fraction * count) records go to A).
 * Records keep their original order within each output. */
int dataset_split(const struct dataset *ds, double fraction, uint64_t seed, const char *out_a,
		  const char *out_b, const struct dataset_progress *pr, struct error *err);

/* Imbalance (a long tail like ImageNet-22K's): classes get ranks 1..K by a
 * seeded permutation; the class of rank r keeps
 *   n_r = max(min_keep, floor(n_head * r^(-s)))
 * records (chosen by a seeded shuffle), where n_head is the smallest class
 * count in the input (so every class can supply its quota) unless head > 0
 * caps it lower. s = 0 keeps n_head of every class. Class shards only. */
struct dataset_imbalance {
	double zipf_s;
	uint64_t seed;
	uint64_t head;	   /* 0 = smallest class count */
	uint64_t min_keep; /* 0 is allowed: a class may vanish */
};
/* Quota per class (keep[k], k = class id) without writing anything. */
int dataset_imbalance_plan(const struct dataset *ds, const struct dataset_imbalance *opt,
			   uint64_t *keep, struct error *err);
int dataset_imbalance(const struct dataset *ds, const struct dataset_imbalance *opt,
		      const char *out_path, const struct dataset_progress *pr, struct error *err);

/* Merge: the records of n shards, in order, into one (for example the outputs
 * of an array of import tasks). Shapes (C, H, W) and label kinds must match;
 * the output has the largest class count of the inputs. */
int dataset_merge(const char *const *inputs, int n, const char *out_path,
		  const struct dataset_progress *pr, struct error *err);

/* Least-squares fit of log(count) = a - s log(rank) over the classes with at
 * least one record, sorted by count (rank 1 = largest): s of a Zipf-like
 * tail. *s = 0 when fewer than two classes have records. */
void dataset_zipf_fit(const uint64_t *counts, uint32_t num_classes, double *s);

#endif
