/* train: supervised training, shared by the classifier (cairn-train-classifier,
 * NAS trials) and the segmenter (nn/segment.h) as nn_fit_run: a model from a
 * spec, a shuffled and augmented loader over a dataset shard, SGD (Nesterov)
 * with warmup + cosine decay, evaluation after every epoch, ranks and a
 * resumable state. Same seed, same numbers on the same backend and thread
 * count. */
#ifndef NN_TRAIN_H
#define NN_TRAIN_H

#include <stdint.h>

#include "nn/dataset.h"
#include "nn/loader.h"
#include "nn/net.h"
#include "nn/trainstate.h"

/* Input normalization of every classifier: x = (pixel / 255 - 0.5) / 0.5. */
#define NN_TRAIN_NORM_MEAN 0.5f
#define NN_TRAIN_NORM_STD 0.5f

typedef void nn_train_batch_fn(void *ctx, int epoch, uint64_t batch, uint64_t batches, float loss);

/* Data-parallel training (dist/, over MPI ranks): the loop calls these
 * around every step, outside the backend's step slot (no CUDA graph), each 0
 * or -1 with err set; NULL hooks are skipped. */
struct nn_train_sync {
	int part, parts; /* this process's part of every epoch (the loader's part/parts) */
	/* NULL: the part above, in order. Else the ranks share every epoch's
	 * batches: *t = the next batch number of the whole training that no
	 * rank took yet (epoch * batches_per_epoch + index, counting the whole
	 * shard's batches; part/parts unused), 0 or -1 with err set. The loop
	 * trains those below epochs x batches_per_epoch, and its learning-rate
	 * schedule follows the batch numbers (the training's progress over all
	 * ranks), not its own steps. */
	int (*claim)(void *ctx, uint64_t *t, struct error *err);
	int evaluate;	 /* 0: no per-epoch test (a rank that reports nothing) */
	/* Before the forward pass: the weights to compute at (AD-PSGD) */
	int (*begin)(void *ctx, struct nn_net *net, struct error *err);
	/* After backward, before the update: the gradients (allreduce) */
	int (*grads)(void *ctx, struct nn_net *net, struct error *err);
	/* After the update: the weights (AD-PSGD's averaging) */
	int (*end)(void *ctx, struct nn_net *net, struct error *err);
	/* After each epoch's test, timed as testing: where ranks wait for the
	 * one that tests (allreduce), so that no rank counts it as training */
	int (*tested)(void *ctx, struct nn_net *net, struct error *err);
	/* After the last epoch, before the final test: the consensus model */
	int (*finish)(void *ctx, struct nn_net *net, struct error *err);
	void *ctx;
};

/* How a net is fitted, alike for the classifier and the segmenter
 * (nn/segment.h): the model, SGD's schedule, the seed, the ranks and the
 * resumable state. */
struct nn_fit {
	const struct nn_backend *be;
	const char *arch; /* model spec (nn/model.h) */
	int epochs, batch;
	float lr, momentum, wd; /* peak lr; lr scales with it, not with batch */
	float warmup_epochs;
	uint64_t seed;			  /* weight init, shuffling, augmentation, dropout */
	nn_train_batch_fn *on_batch;	  /* after every batch; may be NULL */
	void *ctx;			  /* of on_batch and the trainer's on_epoch */
	const struct nn_train_sync *sync; /* NULL: one process */
	/* NULL, or a folder where the training's state goes after every epoch
	 * (and every state_every seconds within one, when > 0) and from which
	 * a new start with the same settings goes on (nn/trainstate.h). Not
	 * with sync (ranks). */
	const char *state_dir;
	double state_every;
};

/* The CPU backend, arch, epochs and batch as given, lr 0.05, momentum 0.9,
 * wd 5e-4, 1 warmup epoch, seed 1, one process, no state (state_every 600). */
void nn_fit_defaults(struct nn_fit *fit, const char *arch, int epochs, int batch);

/* What a training's fit gave (nn_fit_run), part of the trainers' results. */
struct nn_fit_result {
	double train_seconds, eval_seconds; /* training's own, evaluation left out */
	double samples_per_second;	    /* this process's */
	int resumed_from;		    /* epochs done before this start (state_dir), or 0 */
	uint64_t resumed_batches;	    /* and batches of the next one */
};

/* The classifier's: its fit and augmentation, and a report after every
 * epoch (with fit.ctx). */
struct nn_train_config {
	struct nn_fit fit;
	int flip, pad; /* augmentation: horizontal flip, pad + random crop */
	void (*on_epoch)(void *ctx, int epoch, float train_loss, double test_acc, double seconds);
};

/* NN_MODEL_DEFAULT, 15 epochs, batch 128, flips, no crops. */
void nn_train_defaults(struct nn_train_config *cfg);

struct nn_train_result {
	double test_accuracy;
	int classes;
	double *class_accuracy;   /* [classes] */
	float *epoch_loss;        /* [epochs] mean training loss */
	double *epoch_accuracy;   /* [epochs] test accuracy after each epoch */
	int epochs;
	struct nn_fit_result fit; /* seconds, images/s, resumed */
	long long params;
	double flops_per_image; /* forward */
};
void nn_train_result_release(struct nn_train_result *r);

/* One training step: forward, softmax cross-entropy on labels (device
 * memory of the net's backend: n labels, or n x hw of a per-pixel output),
 * backward, update; the loss lands in loss. A void * callback so that it
 * runs through the backend's step slot, which CUDA can replay as one graph
 * (nn_backend_step, nn/backend.h). */
struct nn_optim;
struct nn_train_step {
	struct nn_net *net;
	struct nn_optim *opt;
	const int32_t *labels;
	const float *class_w; /* NULL, or one weight per class (device memory) */
	int n;
	int hw; /* pixels per sample of the output (0 or 1: one label per sample) */
	float loss;
	const struct nn_train_sync *sync; /* NULL, or hooks run in the step (not in a graph) */
	struct error *sync_err;		  /* where a failing hook's message goes */
	int sync_rc;			  /* < 0: a hook failed, the step stopped there */
};
void nn_train_step(void *step);

/* The loader settings of training and evaluation: inputs normalized with
 * NN_TRAIN_NORM_MEAN/STD, batches in the backend's page-locked memory when
 * it has some (CUDA). */
void nn_train_loader_setup(struct loader_config *lc, const struct nn_backend *be, int channels);

/* What a trainer brings to the training both share (nn_fit_run). */
struct nn_fit_trainer {
	const char *name;	    /* the state's "trainer": "classifier" */
	const char *samples_name;   /* what samples are called in its figures: "images" */
	const struct dataset *test; /* evaluated after every epoch; NULL: none */
	const json_t *what;	    /* NULL, or the trainer's own settings, added to the state's */
	int flip, pad, dihedral;    /* the loader's augmentation (nn/loader.h) */
	const float *class_w;	    /* NULL, or one loss weight per class (device memory) */
	float *epoch_loss;	    /* [epochs]: each epoch's mean training loss */
	/* Where this process evaluates (with test, and for ranks the one that
	 * reports): after each epoch e, or with e = -1 once more of the net
	 * loaded with every epoch done, and of the ranks' consensus. */
	int (*eval)(void *ctx, int epoch, struct error *err);
	/* After each epoch (and its eval): seconds since the training began. */
	void (*done)(void *ctx, int epoch, double seconds);
	/* The trainer's own figures of its first `epochs` epochs: put into a
	 * state, got back from a loaded one (-1: missing). */
	void (*put)(void *ctx, json_t *f, int epochs);
	int (*get)(void *ctx, const json_t *f, int epochs);
	void *ctx;
};


/* Train net (built, not yet prepared) on train as fit and t say: a shuffled
 * loader (fit's part of it with ranks, whole batches only), SGD with
 * Nesterov momentum, linear warmup then cosine decay to 0; t's eval and
 * done after every epoch, fit->state_dir's state written after each and
 * gone on from at the start. A loss that is not finite is -1, "training
 * diverged" (--lr named). 0, or < 0 with err set (DATASET_EBADINPUT: a
 * rank's part without a batch, another training's state). */
int nn_fit_run(const struct nn_fit *fit, const struct nn_fit_trainer *t,
	       const struct dataset *train, struct nn_net *net, struct nn_fit_result *r,
	       struct error *err);

/* Whether train and test can be used together with cfg: class shards (a mask
 * shard is refused: "train it with cairn-train-unet"), both have records,
 * the same image shape and the same class count, and train has at least one
 * batch (on each of cfg->sync's parts). 0, or DATASET_EBADINPUT with a
 * message that names the shards and what to change. nn_train_classifier
 * checks this first. */
int nn_train_check_inputs(const struct nn_train_config *cfg, const struct dataset *train,
			  const struct dataset *test, struct error *err);

/* Train a new net (built into *net, released by the caller) on train, test on
 * test. A loss that is not finite stops training (-1, "diverged"): the net is
 * not worth saving. */
int nn_train_classifier(const struct nn_train_config *cfg, const struct dataset *train,
			const struct dataset *test, struct nn_net *net, struct nn_train_result *res,
			struct error *err);

/* Accuracy of a net on a shard (eval mode); correct[k] / total[k] per class
 * if not NULL (arrays of num_classes). */
int nn_eval_classifier(struct nn_net *net, const struct dataset *ds, int batch, double *accuracy,
		       uint64_t *correct, uint64_t *total, struct error *err);

#endif
