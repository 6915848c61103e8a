/* segment: per-pixel classification (semantic segmentation) on mask shards,
 * for cairn-train-unet and cairn-predict: a U-Net trained with softmax
 * cross-entropy at every pixel (optional class weights), evaluated by pixel
 * accuracy and intersection over union per class, and prediction into a mask
 * shard that keeps its input's tiles. The optimizer, schedule, loader
 * settings and training step are the classifier's (nn/train.h). */
#ifndef NN_SEGMENT_H
#define NN_SEGMENT_H

#include <stdint.h>

#include "nn/dataset.h"
#include "nn/net.h"
#include "nn/train.h"

/* The default model of cairn-train-unet: 0.12 M parameters, 1.18 GFLOP per
 * 256x256 tile; on 2 CPU cores about 30 tiles/s in training, so the default
 * 30 epochs over 32 tiles take about 40 s (docs/benchmarks.md, "Segmentation"). */
#define NN_SEGMENT_ARCH "unet:depth=3,base=8"

enum nn_class_weighting {
	NN_WEIGHTS_NONE = 0,  /* every labelled pixel counts the same */
	NN_WEIGHTS_AUTO = 1,  /* median-frequency balancing from the training shard */
	NN_WEIGHTS_GIVEN = 2, /* cfg.weights */
};

/* Scores of predictions against masks, over labelled pixels (mask -1 is not
 * counted). IoU of class k = TP / (TP + FP + FN) from the confusion matrix. */
struct nn_segment_metrics {
	int classes;
	uint64_t *confusion; /* [truth * classes + predicted] pixel counts */
	uint64_t pixels;     /* labelled pixels */
	double pixel_accuracy; /* NAN when no pixel is labelled */
	double *iou;	 /* [classes]; NAN for a class in neither truth nor prediction */
	double mean_iou; /* mean over classes 1..K-1 (not background) with an IoU (K = 1:
			    class 0); NAN when none has one */
};
int nn_segment_metrics_init(struct nn_segment_metrics *m, int classes, struct error *err);
void nn_segment_metrics_release(struct nn_segment_metrics *m);
void nn_segment_metrics_clear(struct nn_segment_metrics *m);
/* n pixels: truth < 0 is skipped; truth and pred must be < classes. */
void nn_segment_metrics_add(struct nn_segment_metrics *m, const int32_t *truth, const int32_t *pred,
			    size_t n);
/* pixel_accuracy, iou and mean_iou from the confusion matrix. */
void nn_segment_metrics_finish(struct nn_segment_metrics *m);
/* dst = src (same classes; dst initialised). */
void nn_segment_metrics_copy(struct nn_segment_metrics *dst, const struct nn_segment_metrics *src);

struct nn_segment_config {
	struct nn_fit fit; /* arch: a model spec with a per-pixel output */
	int augment;	   /* the 8 symmetries of a square tile (loader: dihedral) */
	enum nn_class_weighting weighting;
	const float *weights; /* NN_WEIGHTS_GIVEN: nweights = num_classes values >= 0 */
	int nweights;
	/* After every epoch (with fit.ctx); val is NULL without a validation shard. */
	void (*on_epoch)(void *ctx, int epoch, float train_loss,
			 const struct nn_segment_metrics *val, double seconds);
};

/* arch NN_SEGMENT_ARCH, 30 epochs, batch 8, lr 0.05, momentum 0.9, wd 5e-4,
 * 1 warmup epoch, augmentation on, no class weights, seed 1. */
void nn_segment_defaults(struct nn_segment_config *cfg);

/* Per-pixel argmax of logits [n, c, hw] (ties: the lower class). */
void nn_segment_argmax(int n, int c, int hw, const float *logits, int32_t *out);

/* The class weights cfg asks for on train, into w[num_classes]: all 1
 * (none); given (checked: count and values); or median-frequency balancing
 * (Eigen & Fergus 2015): w_k = median_j(f_j) / f_k with f_k the fraction of
 * labelled pixels of class k, over the classes that occur (a class with no
 * pixel gets 1: it never weighs in). DATASET_EBADINPUT when given weights do
 * not fit, or auto finds no labelled pixel. */
int nn_segment_class_weights(const struct nn_segment_config *cfg, const struct dataset *train,
			     float *w, struct error *err);

/* Whether train (and val, may be NULL) can train cfg's model: mask shards
 * with records and a labelled pixel, the same shapes and class counts, a batch no larger than
 * train, an arch with a per-pixel output whose size multiple divides the
 * tiles' height and width. 0 or DATASET_EBADINPUT with a message that names
 * the shard and what to change. nn_train_segmenter checks this first. */
int nn_segment_check_inputs(const struct nn_segment_config *cfg, const struct dataset *train,
			    const struct dataset *val, struct error *err);

struct nn_segment_result {
	int classes, epochs;
	float *class_weights;  /* [classes], as used */
	float *epoch_loss;     /* [epochs] mean training loss */
	double *epoch_seconds; /* [epochs] wall time since the start, after each epoch */
	int has_val;
	double *epoch_pixel_accuracy, *epoch_mean_iou; /* [epochs], with val */
	double *epoch_iou;			       /* [epochs * classes], with val */
	struct nn_segment_metrics val;		       /* the last epoch's, with val */
	struct nn_fit_result fit; /* seconds, tiles/s, resumed */
	long long params;
	double flops_per_tile; /* forward */
};
void nn_segment_result_release(struct nn_segment_result *r);

/* Train a new net (built into *net, released by the caller) on train;
 * evaluate on val (may be NULL) after every epoch. A loss that is not
 * finite stops training (-1, "training diverged"). */
int nn_train_segmenter(const struct nn_segment_config *cfg, const struct dataset *train,
		       const struct dataset *val, struct nn_net *net, struct nn_segment_result *res,
		       struct error *err);

/* Scores of net on a mask shard (eval mode), into m (initialised with the
 * shard's class count; cleared first). */
int nn_eval_segmenter(struct nn_net *net, const struct dataset *ds, int batch,
		      struct nn_segment_metrics *m, struct error *err);

/* Whether net (from a checkpoint, say) can predict ds: a mask shard (with
 * imagery; it may have no records) whose tiles are the net's input (C x H x W)
 * and whose class count is the net's output count; what names the net in the message (a checkpoint's path).
 * 0 or DATASET_EBADINPUT. */
int nn_segment_check_net(const struct nn_net *net, const char *what, const struct dataset *ds,
			 struct error *err);

/* Predict every record of in (eval mode, batches of `batch`) and write a
 * mask shard to out_path: the same class count, tile size and keys, in the
 * same order, the mask the argmax of the net's outputs; the input's pixels
 * too if `pixels`, else 0 channels (masks only). An empty in gives an empty
 * shard. Atomic: nothing
 * at out_path on failure. Masks of in are not used (they may be all
 * DATASET_MASK_IGNORE). on_batch (may be NULL) gets (ctx, 0, batch, batches, 0). */
int nn_predict_segmenter(struct nn_net *net, const struct dataset *in, const char *out_path,
			 int batch, int pixels, nn_train_batch_fn *on_batch, void *ctx,
			 struct error *err);

#endif
