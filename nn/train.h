/* train: the supervised classifier loop shared by cairn-train-classifier and
 * NAS trials: a model from a spec, a shuffled and augmented loader over a
 * dataset shard, SGD (Nesterov) with warmup + cosine decay, evaluation on a
 * test shard after every epoch. Same seed, same numbers on the same backend
 * and thread count. */
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

struct nn_train_config {
	const struct nn_backend *be;
	const char *arch;       /* model spec (nn/model.h) */
	int epochs, batch;
	float lr, momentum, wd; /* peak lr; lr scales with it, not with batch */
	float warmup_epochs;
	int flip, pad;          /* augmentation: horizontal flip, pad + random crop */
	uint64_t seed;
	/* Called after every batch (may be NULL). */
	nn_train_batch_fn *on_batch;
	void (*on_epoch)(void *ctx, int epoch, float train_loss, double test_acc, double seconds);
	void *ctx;
	const struct nn_train_sync *sync; /* NULL: one process */
	/* NULL, or a folder where the training's state goes after every epoch
	 * (and every state_every seconds within one, when > 0) and from which
	 * a new start with the same settings goes on (nn/trainstate.h). Not
	 * with sync (ranks). */
	const char *state_dir;
	double state_every;
};

void nn_train_defaults(struct nn_train_config *cfg);

struct nn_train_result {
	double test_accuracy;
	int classes;
	double *class_accuracy;   /* [classes] */
	float *epoch_loss;        /* [epochs] mean training loss */
	double *epoch_accuracy;   /* [epochs] test accuracy after each epoch */
	int epochs;
	double train_seconds, eval_seconds, images_per_second;
	long long params;
	double flops_per_image;   /* forward */
	int resumed_from;	  /* epochs done before this start (state_dir), or 0 */
	uint64_t resumed_batches; /* and batches of the next one */
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

/* Pieces the classifier and segmenter loops (nn/segment.h) share. The
 * loader settings of training and evaluation: inputs normalized with
 * NN_TRAIN_NORM_MEAN/STD, batches in the backend's page-locked memory when
 * it has some (CUDA). */
void nn_train_loader_setup(struct loader_config *lc, const struct nn_backend *be, int channels);
/* SGD with Nesterov momentum, linear warmup over warmup_epochs, then cosine
 * decay to 0 at the end of the last epoch. */
void nn_train_sgd_setup(struct nn_optim *opt, float lr, float momentum, float wd,
			float warmup_epochs, int epochs, uint64_t per_epoch);
/* Resumability (cfg state_dir, nn/trainstate.h), shared by the classifier
 * and segmenter loops: where the state goes, how often, and what the
 * trainer adds to it. */
struct nn_train_saver {
	const char *dir;    /* NULL: no state */
	double every;	    /* also within an epoch, after the first batch that ends at least
			       this many seconds after the last state (0: at epoch ends only) */
	const json_t *what; /* what the training is (nn_train_what + the trainer's own) */
	struct nn_net *net;
	struct nn_optim *opt;
	/* The trainer's own figures of its first `epochs` epochs: put into a
	 * state's f, and got back from a loaded one's (-1: missing). */
	void (*put)(void *ctx, json_t *f, int epochs);
	int (*get)(void *ctx, const json_t *f, int epochs);
	void *ctx;
	const char *samples_name; /* what samples are called in the figures: "images" */
	/* Kept through every start (nn_train_begin): */
	uint64_t samples;     /* trained on (nn_train_epoch counts them) */
	double t0, eval_time; /* the training's seconds: clock_now() - t0 - eval_time */
	uint64_t batches; /* of the epoch under way, done before this start (resume) */
	double loss_sum;  /* their losses summed */
	double last;	  /* clock_now() of the last state written */
};

/* The settings both loops write into a state's "what" (they add their own
 * to it); NULL when out of memory. */
json_t *nn_train_what(const char *trainer, const char *arch, const struct dataset *train,
		      const struct dataset *test, int epochs, int batch, float lr, float momentum,
		      float wd, float warmup_epochs, uint64_t seed);
/* Start a training's clock (sv->t0) and, with sv->dir, go on from its
 * state: net and optimizer loaded and l set where it stopped, the
 * trainer's figures of the epochs done got back (sv->get), sv->samples and sv->eval_time as they were, sv->t0 moved back
 * by the seconds trained before. *first: the epoch to go on with (0 on a
 * fresh start, at most epochs). 0, or < 0 with err set (DATASET_EBADINPUT:
 * another training's state, a damaged one, or its figures missing). */
int nn_train_begin(struct nn_train_saver *sv, const struct nn_train_sync *sync, struct loader *l,
		   int epochs, int *first, struct error *err);
/* Write the state: epochs_done whole epochs, then `batches` more (their
 * losses summed in loss_sum), with the samples, testing seconds and the
 * trainer's figures. */
int nn_train_save(struct nn_train_saver *sv, int epochs_done, uint64_t batches, double loss_sum,
		  struct error *err);

/* One epoch of steps over l's batches (training mode): each uploaded (x;
 * labels: the batch's y, or its mask for a mask shard, into the device
 * buffer labels), stepped through the backend's step slot (*graph: its
 * replay state), its loss checked: a loss that is not finite is -1,
 * "training diverged" (lr is named in the hint). *mean_loss: the mean over
 * the batches; sv->samples grows by the samples seen. The epoch starts after
 * its sv->batches done before (resumed), and with sv->dir a state is
 * written within it every sv->every seconds. */
int nn_train_epoch(struct nn_train_step *st, void **graph, struct loader *l, int32_t *labels,
		   int epoch, float lr, nn_train_batch_fn *on_batch, void *ctx, float *mean_loss,
		   struct nn_train_saver *sv, struct error *err);

/* The epochs both loops run once nn_train_begin has said where to start:
 * each epoch's steps (nn_train_epoch); where this process evaluates, eval
 * (ctx, e), timed apart from training as is the wait of allreduce ranks for
 * the one that evaluates (sync->tested); then done(ctx, e) (the trainer's
 * figures and its on_epoch) and, with sv->dir, the state. When every epoch
 * was done before this start, eval(ctx, -1) once, of the loaded net; with
 * ranks, their consensus (sync->finish), then eval(ctx, -1) once more.
 * *train_seconds: the training's own, evaluation left out. 0, or the rc of
 * what failed (err set). */
struct nn_train_loop {
	struct nn_train_step *st; /* its sync: the ranks, or NULL */
	void **graph;		  /* the backend's step replay state */
	struct loader *l;
	int32_t *labels;
	int first, epochs;
	float lr;		     /* named when training diverges */
	nn_train_batch_fn *on_batch; /* may be NULL */
	void *batch_ctx;
	float *epoch_loss; /* [epochs] */
	struct nn_train_saver *sv;
	int evaluate; /* this process evaluates */
	int (*eval)(void *ctx, int epoch, struct error *err);
	void (*done)(void *ctx, int epoch);
	void *ctx;
};
int nn_train_epochs(const struct nn_train_loop *lp, double *train_seconds, struct error *err);

/* Whether train and test can be used together with cfg: class shards (a mask
 * shard is refused: "train it with cairn-train-unet"), both have records,
 * the same image shape and the same class count, and train has at least one
 * batch (on each of cfg->sync's parts). 0, or DATASET_EBADINPUT with a
 * message that names the shards and what to change. nn_train_classifier
 * checks this first. */
int nn_train_check_inputs(const struct nn_train_config *cfg, const struct dataset *train,
			  const struct dataset *test, struct error *err);

/* With ranks (sync), each takes a part of every epoch: 0 when that part
 * (per_epoch batches) has a batch, else DATASET_EBADINPUT saying so. */
int nn_train_check_part(uint64_t per_epoch, int batch, const struct dataset *train,
			const struct nn_train_sync *sync, struct error *err);

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
