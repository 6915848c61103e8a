/* refine: noisy map labels made more complete with a CycleGAN (Zhang et al.,
 * "Map generation from large scale incomplete and inaccurate data labels",
 * KDD 2020). Domain A is imagery, domain B maps: one channel per class, +1
 * where a pixel is of that class and -1 elsewhere. Trained on unpaired
 * crops (imagery from one tile, a map from another), the generator A -> B
 * must draw every road and house it sees, or its partner cannot rebuild the
 * imagery from the map: the cycle loss, weighted up on the map's features,
 * teaches it what a map shows without trusting where a noisy map put it.
 * Refinement then translates each tile's imagery and fuses the drawing with
 * the tile's own map. cairn-refine is the stage; docs/refine.md the guide. */
#ifndef NN_REFINE_H
#define NN_REFINE_H

#include <stdint.h>

#include <jansson.h>

#include "nn/cyclegan.h"
#include "nn/dataset.h"
#include "nn/train.h"

#define NN_REFINE_GEN "cyclegan:base=16,blocks=4"
#define NN_REFINE_DISC "patchgan:base=16,layers=3"
#define NN_REFINE_MAX_CLASSES 16

struct nn_refine_config {
	struct nn_cyclegan_config gan; /* gan.channels, height and width are set from the
					  shard and crop */
	int crop;		       /* training crops are crop x crop (<= the tiles) */
	long steps;
	float feature_weight; /* the map cycle loss on pixels of a class other than 0 (the
				 background: weight 1); ignored pixels weigh 0 */
	float paired;	      /* weight of the imagery -> map L1 against the tile's own map
				 (0: unpaired, the CycleGAN alone) */
	uint64_t seed;	      /* crops and pairings */
	/* every `every` steps and after the last (every 0: the last only): the mean
	   losses since the previous call */
	void (*on_steps)(void *ctx, long step, long steps, const float *loss, double seconds);
	long every;
	void *ctx;
	/* Resumable (nn/trainstate.h): NULL, or a folder where the training's
	   state goes every state_every seconds (at a step's end), from which a
	   new start with the same settings goes on after the last step done,
	   to the same nets as a training never stopped (CPU). The caller's log
	   of on_steps travels with it: log_save gives it (a new reference),
	   log_load takes it back on resume (0, or -1 when it is not one). */
	const char *state_dir;
	double state_every;
	json_t *(*log_save)(void *ctx);
	int (*log_load)(void *ctx, const json_t *log);
};

/* gan: nn_cyclegan_defaults with NN_REFINE_GEN/DISC, no identity loss
 * (imagery and maps are not alike); crop 64, 2000 steps, feature weight 5,
 * paired weight 3 (0, the CycleGAN alone, gave worse labels than the map:
 * docs/refine.md), reported every 100 steps. */
void nn_refine_defaults(struct nn_refine_config *cfg);

/* Whether ds can be refined or trained on: a mask shard with imagery, at most
 * NN_REFINE_MAX_CLASSES classes, records (training). DATASET_EBADINPUT with
 * a message that names the shard and what to give instead. */
int nn_refine_check(const struct dataset *ds, int training, struct error *err);

/* Train a CycleGAN (built into *c, released by the caller) on unpaired crops
 * of ds. -1 "training diverged" when a loss is not finite. With state_dir:
 * resumed where a stopped one left off (*resumed_from: the steps done
 * before this start, 0 for a fresh one; may be NULL); a state of other
 * settings or a damaged one is DATASET_EBADINPUT. */
int nn_refine_train(const struct nn_refine_config *cfg, const struct dataset *ds,
		    struct nn_cyclegan *c, long *resumed_from, struct error *err);

/* Tile encodings (host): pixels/127.5 - 1 per value; a mask as K planes of
 * +1 / -1 (an ignored pixel: -1 everywhere). */
void nn_refine_encode_image(const uint8_t *pixels, size_t n, float *x);
void nn_refine_encode_mask(const uint8_t *mask, size_t hw, int classes, float *x);

enum nn_refine_mode {
	NN_REFINE_ADD = 0,     /* where the map has background, the drawing's feature */
	NN_REFINE_REPLACE = 1, /* the drawing everywhere */
};

struct nn_refine_stats {
	int classes;
	uint64_t tiles, pixels;
	uint64_t changed[NN_REFINE_MAX_CLASSES][NN_REFINE_MAX_CLASSES]; /* [from][to] */
};

/* One tile: the generator's output y [classes, hw] fused with its map (hw
 * classes, DATASET_MASK_IGNORE allowed) into out, as nn_refine_apply says;
 * adds to stats->changed and stats->pixels. */
void nn_refine_fuse(const float *y, const uint8_t *map, size_t hw, int classes,
		    enum nn_refine_mode mode, float threshold, uint8_t *out,
		    struct nn_refine_stats *stats);

/* Translate every tile of in with gen (imagery -> map; any tile size its
 * architecture takes) and write a mask shard at out_path: in's pixels, keys
 * and order, the masks fused per mode: a drawn class k counts where its plane
 * is above threshold and the highest (ties: the lower class); ADD keeps
 * every map label but background and an ignored pixel stays ignored.
 * Atomic; stats may be NULL. */
int nn_refine_apply(struct nn_net *gen, const struct dataset *in, const char *out_path,
		    enum nn_refine_mode mode, float threshold, int batch,
		    struct nn_refine_stats *stats, nn_train_batch_fn *on_batch, void *ctx,
		    struct error *err);

#endif
