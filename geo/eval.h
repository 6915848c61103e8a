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

/* IoU, precision, recall, F1 from counts; 0/0 gives NaN-free 0 with "n/a" left to JSON null. */
double eval_iou(uint64_t tp, uint64_t fp, uint64_t fn);
double eval_f1(uint64_t tp, uint64_t fp, uint64_t fn);

json_t *eval_to_json(const struct eval_opts *o, const struct eval_result *r);

/* Colour one pixel for the error picture: correct background black, correct
 * class grey/white by class, false positive red, false negative blue, wrong
 * class (both foreground) yellow. */
void eval_error_color(uint8_t pred, uint8_t truth, uint8_t rgb[3]);

#endif
