/* eval: how good a label raster is against the truth. Per class pixel IoU,
 * precision, recall and F1; building F1 on connected components matched at
 * IoU >= 0.5 (instance level, as in SpaceNet/solaris); and a seam metric:
 * the same IoU on pixels near tile borders versus tile interiors, which shows
 * whether a tiled predictor does worse at tile edges. */
#ifndef GEO_EVAL_H
#define GEO_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/error.h"

#define EVAL_MAX_CLASSES 16

struct eval_opts {
	int nclasses;           /* classes 0..nclasses-1; 0 is background (default 3) */
	const char *names[EVAL_MAX_CLASSES];
	int building_class;     /* class whose instances are matched (default 2; <0: none) */
	double iou_threshold;   /* instance match (default 0.5) */
	int min_area;           /* components smaller than this (pixels) are ignored (default 1) */
	int border;             /* seam band width in pixels from each tile edge (default 16) */
};

void eval_opts_init(struct eval_opts *o);

struct eval_counts {
	uint64_t tp[EVAL_MAX_CLASSES], fp[EVAL_MAX_CLASSES], fn[EVAL_MAX_CLASSES];
};

struct eval_result {
	struct eval_counts all, border, interior;
	uint64_t inst_truth, inst_pred, inst_tp;
	uint64_t tiles, missing_pred, pixels, bad_values;
};

/* Count one tile (size x size pixels; the seam band is measured from its edges).
 * Values >= nclasses count as background and are counted in bad_values. */
void eval_add_tile(const struct eval_opts *o, const uint8_t *pred, const uint8_t *truth, int size,
		   struct eval_result *r);

/* Instance matching on a w x h mosaic: 8-connected components of the
 * building class in pred and truth, greedily matched by IoU (highest first,
 * one to one), a match at IoU >= threshold is a true positive. Adds to
 * r->inst_*. */
int eval_add_instances(const struct eval_opts *o, const uint8_t *pred, const uint8_t *truth, int w,
		       int h, struct eval_result *r, struct error *err);

/* The same over a mosaic too large for memory, fed in blocks: each block's
 * components are labelled on their own and joined to those across the block's
 * top and left seams (union-find over the ids of the pixels on either side,
 * 8-connectivity), so a building crossing a block edge is one instance and the
 * result does not depend on the block size. Blocks come row by row, top to
 * bottom; the blocks of one row share y0 and h and come left to right; a block
 * or row left out is background. Memory: the ids and overlaps of the
 * components plus two mosaic rows. */
struct eval_pair;
struct eval_instances {
	int width;                  /* mosaic width in pixels */
	uint32_t *par[2];           /* union-find over component ids: [0] pred, [1] truth */
	uint64_t *area[2];          /* pixels per id (per root after finish) */
	uint64_t *first[2];         /* first pixel (y * width + x) per id: the order of ties */
	size_t n[2], cap[2];        /* ids in use (id 0: none) */
	struct eval_pair *pairs;    /* (pred id, truth id, overlapping pixels) */
	size_t npairs, cappairs;
	uint32_t *above[2], *below[2]; /* ids along mosaic rows above_y and below_y */
	uint32_t *left[2];          /* ids along column left_x of the current block row */
	size_t left_cap;
	int above_y, below_y, row_y, row_h, left_x;
};

int eval_instances_init(struct eval_instances *ei, int width, struct error *err);
/* A w x h block at (x0, y0) of the mosaic; pred and truth with row stride `stride`. */
int eval_instances_add(const struct eval_opts *o, struct eval_instances *ei, const uint8_t *pred,
		       const uint8_t *truth, size_t stride, int x0, int y0, int w, int h,
		       struct error *err);
/* Match the joined components and add to r->inst_*; call once, then release. */
int eval_instances_finish(const struct eval_opts *o, struct eval_instances *ei,
			  struct eval_result *r, struct error *err);
void eval_instances_release(struct eval_instances *ei);

/* IoU, precision, recall, F1 from counts; 0/0 gives NaN-free 0 with "n/a" left to JSON null. */
double eval_iou(uint64_t tp, uint64_t fp, uint64_t fn);
double eval_f1(uint64_t tp, uint64_t fp, uint64_t fn);

json_t *eval_to_json(const struct eval_opts *o, const struct eval_result *r);

/* Colour one pixel for the error picture: correct background black, correct
 * class grey/white by class, false positive red, false negative blue, wrong
 * class (both foreground) yellow. */
void eval_error_color(uint8_t pred, uint8_t truth, uint8_t rgb[3]);

#endif
