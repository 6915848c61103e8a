/* loader: turns an open dataset shard into float32 NCHW batches for training:
 * seeded shuffling per epoch, optional augmentation (horizontal flip, the 8
 * symmetries of a square, pad + random crop; a mask shard's masks move with
 * their images), normalization, and a thread that prepares the next batch
 * while the caller trains on this one. No allocation after loader_new. */
#ifndef NN_LOADER_H
#define NN_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "nn/dataset.h"

struct loader_config {
	uint32_t batch;	      /* images per batch (N), > 0 */
	uint64_t seed;	      /* same seed, same batches, threads or not */
	int shuffle;	      /* 1: a new seeded permutation every epoch; 0: file order */
	int drop_last;	      /* 1: skip the last partial batch of an epoch */
	int flip;	      /* 1: mirror left-right with probability 1/2 */
	int dihedral;	      /* 1: one of the 8 symmetries of a square (identity, 3
				 rotations, 4 mirrors), uniformly: the right choice for
				 aerial tiles, which have no up. Square images only;
				 includes the flips, so flip is then ignored. */
	uint32_t pad;	      /* > 0: pad P black pixels on each side, then crop H x W at a
				 random offset in [0, 2P] x [0, 2P] */
	uint32_t part, parts; /* parts > 1: this loader yields only part `part` (0-based) of
				 every epoch's order, for data-parallel ranks: with the
				 same seed the parts are disjoint, each floor(n / parts)
				 records (equal batch counts on every rank; the n mod
				 parts records left over change each epoch).
				 parts 0 or 1: everything. */
	/* Optional: which batches this loader gives, for ranks that share an
	 * epoch's batches as they go (dist's adpsgd): each batch's number t
	 * (epoch * batches_per_epoch + index, increasing) comes from claim,
	 * called in the caller's thread (in loader_next, up to the prefetch depth
	 * ahead), which returns 1 with *t, 0 when no batch is left (every later
	 * call of loader_next returns 0), or -1 with err set. An epoch this
	 * loader got no batch of still ends (loader_next returns 0 once), so
	 * the caller's epochs stay in step with the batches'. Not with parts
	 * or loader_seek*. NULL: every batch in order. */
	int (*claim)(void *ctx, uint64_t *t, struct error *err);
	void *claim_ctx;
	int prefetch;	      /* batches a thread prepares ahead (0: none, all work in
				 loader_next; 1: double buffering; up to LOADER_MAX_PREFETCH).
				 Memory: (prefetch + 1) float batches. */
	/* Normalization, per channel c: x = (pixel / 255 - mean[c]) / std[c],
	 * computed in float32 as pixel * scale + bias (scale = 1 / (255 std),
	 * bias = -mean / std), so within 1e-6 relative of the formula.
	 * loader_config_default sets mean 0 and std 1 (x = pixel / 255);
	 * dataset_channel_stats gives the usual values. Padding pixels are
	 * pixel value 0 before normalization (as torchvision's RandomCrop). */
	float mean[DATASET_MAX_CHANNELS], std[DATASET_MAX_CHANNELS];
	/* Optional: where the batch buffers (x, and mask for mask shards) come
	 * from, e.g. page-locked host memory (cudaHostAlloc) for fast copies to
	 * a GPU. NULL: mem_alloc.
	 * x_reuse (optional) is called before a buffer that was handed out is
	 * written again (from the prefetch thread, or in loader_next without
	 * one): a GPU backend waits there for the copies that still read it. */
	void *(*x_alloc)(size_t bytes, void *ctx);
	void (*x_free)(void *p, void *ctx);
	void (*x_reuse)(void *p, void *ctx);
	void *x_ctx;
};

#define LOADER_MAX_PREFETCH 8

/* batch 64, seed 0, shuffle on, drop_last off, no augmentation, prefetch 2,
 * mean 0, std 1. */
void loader_config_default(struct loader_config *cfg);

/* Valid until the next loader_next / loader_seek / loader_free call. */
struct loader_batch {
	const float *x;		 /* [n, C, H, W], C, H, W as in the dataset's shape */
	const int32_t *y;	 /* [n] labels (class shards; NULL for mask shards) */
	const int32_t *mask;	 /* [n, H, W] classes per pixel, -1 where there is no label
				    (DATASET_MASK_IGNORE, or padding); mask shards only, NULL
				    for class shards. Augmented exactly as x. */
	uint32_t n;		 /* cfg.batch, or fewer for the last batch if !drop_last */
	uint64_t epoch;		 /* 0-based */
	uint64_t index;		 /* batch number within the epoch */
	const uint64_t *records; /* [n] record numbers in the shard (for tests, debugging) */
};

struct loader;

/* ds is borrowed: it must stay open until loader_free. */
struct loader *loader_new(const struct dataset *ds, const struct loader_config *cfg,
			  struct error *err);
/* 1: *b holds the next batch; 0: the epoch just ended (no batch; the next
 * call starts the next epoch); < 0: error. Order of epoch e depends only on
 * (seed, e). A mask value that is neither a class nor DATASET_MASK_IGNORE
 * is DATASET_EBADINPUT, with a message that names the shard, the record, the
 * pixel and its byte offset (dataset_open does not read the masks; the
 * loader checks each as it reads it); the error stays: later calls return it
 * too. */
int loader_next(struct loader *l, struct loader_batch *b, struct error *err);
/* Restart at the first batch of epoch e (for resuming from a checkpoint). */
int loader_seek(struct loader *l, uint64_t epoch, struct error *err);
/* Restart at batch `batch` of epoch e: the batches that come are those an
 * uninterrupted loader gives from there (order and augmentation depend on
 * (seed, e, position) only). batch < loader_batches_per_epoch. */
int loader_seek_batch(struct loader *l, uint64_t epoch, uint64_t batch, struct error *err);
uint64_t loader_batches_per_epoch(const struct loader *l);
void loader_free(struct loader *l);

/* The augmentation of one image, exposed for tests: src is C x H x W uint8,
 * dst C x H x W float; crop offsets dx, dy in [0, 2*pad]; flip 0/1.
 *   padded(c, y, x) = src(c, y - pad, x - pad), or pixel 0 outside src
 *   cropped(c, y, x) = padded(c, y + dy, x + dx)
 *   dst(c, y, x) = norm_c(cropped(c, y, flip ? W-1-x : x)) */
void loader_augment(const uint8_t *src, float *dst, uint32_t C, uint32_t H, uint32_t W,
		    uint32_t pad, uint32_t dx, uint32_t dy, int flip, const float *mean,
		    const float *std);

/* The symmetries of the dihedral option, as bits of sym (0..7, uniformly
 * drawn): with u = FLIP_Y ? H-1-y : y and v = FLIP_X ? W-1-x : x,
 *   dst(c, y, x) = norm_c(cropped(c, TRANSPOSE ? (v, u) : (u, v)))
 * (TRANSPOSE needs H == W). sym = LOADER_FLIP_X is loader_augment's flip. */
#define LOADER_FLIP_X 1u
#define LOADER_FLIP_Y 2u
#define LOADER_TRANSPOSE 4u
void loader_augment_sym(const uint8_t *src, float *dst, uint32_t C, uint32_t H, uint32_t W,
			uint32_t pad, uint32_t dx, uint32_t dy, unsigned sym, const float *mean,
			const float *std);
/* The same geometry on a mask (H x W uint8 -> int32): DATASET_MASK_IGNORE
 * and padding become -1, other values stay. */
void loader_augment_mask(const uint8_t *src, int32_t *dst, uint32_t H, uint32_t W, uint32_t pad,
			 uint32_t dx, uint32_t dy, unsigned sym);

#endif
