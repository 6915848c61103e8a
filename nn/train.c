/* train: the supervised training the classifier and the segmenter share
 * (nn_fit_run: loader, SGD schedule, steps, ranks, resumable state), and the
 * classifier's own loops. */
#include "nn/train.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "core/clock.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "nn/loader.h"
#include "nn/model.h"
#include "nn/optim.h"

#define BAD(...) (error_set(err, __VA_ARGS__), DATASET_EBADINPUT)

void nn_fit_defaults(struct nn_fit *fit, const char *arch, int epochs, int batch)
{
	*fit = (struct nn_fit){.be = nn_backend_cpu(),
			       .arch = arch,
			       .epochs = epochs,
			       .batch = batch,
			       .lr = 0.05f,
			       .momentum = 0.9f,
			       .wd = 5e-4f,
			       .warmup_epochs = 1,
			       .seed = 1,
			       .state_every = 600};
}

void nn_train_defaults(struct nn_train_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	nn_fit_defaults(&cfg->fit, NN_MODEL_DEFAULT, 15, 128);
	cfg->flip = 1;
	cfg->pad = 0;
}

void nn_train_result_release(struct nn_train_result *r)
{
	mem_free(r->class_accuracy);
	mem_free(r->epoch_loss);
	mem_free(r->epoch_accuracy);
	memset(r, 0, sizeof(*r));
}

static void loader_norm(struct loader_config *lc, int channels)
{
	for (int c = 0; c < channels && c < (int)DATASET_MAX_CHANNELS; c++) {
		lc->mean[c] = NN_TRAIN_NORM_MEAN;
		lc->std[c] = NN_TRAIN_NORM_STD;
	}
}

/* Batches in the backend's page-locked memory when it has some (CUDA): the
 * upload then reads them straight, and the loader waits for that copy
 * before it writes a buffer again. */
static void *pinned_alloc(size_t n, void *be)
{
	return ((const struct nn_backend *)be)->host_alloc(n);
}
static void pinned_free(void *p, void *be) { ((const struct nn_backend *)be)->host_free(p); }
static void pinned_reuse(void *p, void *be) { ((const struct nn_backend *)be)->host_wait(p); }

static void loader_pinned(struct loader_config *lc, const struct nn_backend *be)
{
	if (!be->host_alloc)
		return;
	lc->x_alloc = pinned_alloc;
	lc->x_free = pinned_free;
	lc->x_reuse = pinned_reuse;
	lc->x_ctx = (void *)be;
}

void nn_train_loader_setup(struct loader_config *lc, const struct nn_backend *be, int channels)
{
	loader_norm(lc, channels);
	loader_pinned(lc, be);
}

int nn_eval_classifier(struct nn_net *net, const struct dataset *ds, int batch, double *accuracy,
		       uint64_t *correct, uint64_t *total, struct error *err)
{
	const struct nn_backend *host = nn_backend_cpu(); /* argmax on the downloaded logits */
	int classes = (int)ds->shape.num_classes;
	if (ds->shape.label_kind != DATASET_LABEL_CLASS)
		return BAD("%s is a mask shard (a class per pixel): evaluate a segmenter on it "
			   "(nn_eval_segmenter), not a classifier",
			   ds->path);
	struct loader_config lc;
	loader_config_default(&lc);
	lc.batch = batch;
	lc.shuffle = 0;
	nn_train_loader_setup(&lc, net->be, (int)ds->shape.channels);
	if (nn_net_prepare_eval(net, batch, err) < 0)
		return -1;
	struct loader *l = loader_new(ds, &lc, err);
	if (!l)
		return -1;
	int32_t *pred = mem_alloc(sizeof(int32_t) * batch);
	float *logits = mem_alloc(sizeof(float) * batch * classes);
	if (!pred || !logits) {
		loader_free(l);
		mem_free(pred), mem_free(logits);
		return error_set(err, "eval: out of memory");
	}
	if (correct)
		memset(correct, 0, sizeof(uint64_t) * classes), memset(total, 0, sizeof(uint64_t) * classes);
	int was_training = net->training, rc;
	nn_net_train(net, 0);
	uint64_t right = 0, seen = 0;
	struct loader_batch b;
	while ((rc = loader_next(l, &b, err)) == 1) {
		struct nn_tensor *in = nn_net_input(net);
		if ((rc = nn_tensor_upload(in, b.x, (size_t)b.n * in->c * in->h * in->w, err)) < 0)
			break;
		const struct nn_tensor *y = nn_net_forward(net, (int)b.n);
		if ((rc = nn_tensor_download(y, logits, (size_t)b.n * y->c, err)) < 0)
			break;
		host->argmax((int)b.n, y->c, logits, pred);
		for (uint32_t i = 0; i < b.n; i++) {
			int ok = pred[i] == b.y[i];
			right += ok;
			if (correct && b.y[i] >= 0 && b.y[i] < classes) {
				correct[b.y[i]] += ok;
				total[b.y[i]]++;
			}
		}
		seen += b.n;
	}
	nn_net_train(net, was_training);
	loader_free(l);
	mem_free(pred), mem_free(logits);
	if (rc < 0)
		return -1;
	*accuracy = seen ? (double)right / seen : 0;
	return 0;
}

#define SYNC(s, hook)                                                                          \
	((s)->sync && (s)->sync->hook &&                                                       \
	 ((s)->sync_rc = (s)->sync->hook((s)->sync->ctx, (s)->net, (s)->sync_err)) < 0)

void nn_train_step(void *p)
{
	struct nn_train_step *s = p;
	if (SYNC(s, begin))
		return;
	const struct nn_tensor *y = nn_net_forward(s->net, s->n);
	s->net->be->softmax_xent(s->n, y->c, s->hw > 0 ? s->hw : 1, y->data, s->labels, s->class_w,
				 nn_net_output_grad(s->net)->data, &s->loss);
	nn_net_backward(s->net);
	if (SYNC(s, grads))
		return;
	nn_optim_step(s->opt, s->net);
	if (SYNC(s, end))
		return;
}

/* ---- the training both trainers share (nn_fit_run) --------------------- */

/* A training under way: what it runs, and what it keeps through every start
 * (a resumed one goes on with the samples and clocks of the state). */
struct fit_run {
	const struct nn_fit *fit;
	const struct nn_fit_trainer *t;
	struct nn_net *net;
	struct nn_optim *opt;
	const json_t *what;   /* with fit->state_dir: what the training is */
	uint64_t samples;     /* trained on */
	double t0, eval_time; /* the training's seconds: clock_now() - t0 - eval_time */
	uint64_t batches;     /* of the epoch under way, done before this start (resume) */
	double loss_sum;      /* their losses summed */
	double last;	      /* clock_now() of the last state written */
	uint64_t total;	      /* shared batches (sync->claim): epochs x batches an epoch */
};

/* The loader's claim over sync->claim: none left past the last epoch. */
static int fit_claim(void *ctx, uint64_t *t, struct error *err)
{
	struct fit_run *r = ctx;
	if (r->fit->sync->claim(r->fit->sync->ctx, t, err) < 0)
		return -1;
	return *t < r->total;
}

/* SGD with Nesterov momentum, linear warmup over warmup_epochs, then cosine
 * decay to 0 at the end of the last epoch. */
static void sgd_setup(struct nn_optim *opt, const struct nn_fit *fit, uint64_t per_epoch)
{
	nn_optim_defaults(opt);
	opt->lr = fit->lr;
	opt->momentum = fit->momentum;
	opt->nesterov = 1;
	opt->wd = fit->wd;
	opt->sched = NN_LR_COSINE;
	opt->warmup = (long)(fit->warmup_epochs * per_epoch);
	opt->total = (long)(fit->epochs * per_epoch);
	opt->lr_min = 0;
}

/* What a state of this training holds (nn/trainstate.h): the settings a
 * resumed start must share, then the trainer's own. NULL when out of memory. */
static json_t *fit_what(const struct nn_fit *fit, const struct nn_fit_trainer *t, const char *arch,
			const struct dataset *train)
{
	json_t *w = json_pack(
	    "{s:s, s:s, s:s, s:I, s:s?, s:i, s:i, s:f, s:f, s:f, s:f, s:I}", "trainer", t->name,
	    "arch", arch, "train", train->path, "train_records", (json_int_t)train->count, "test",
	    t->test ? t->test->path : NULL, "epochs", fit->epochs, "batch", fit->batch, "lr",
	    (double)fit->lr, "momentum", (double)fit->momentum, "wd", (double)fit->wd,
	    "warmup_epochs", (double)fit->warmup_epochs, "seed", (json_int_t)fit->seed);
	if (w && t->what && json_object_update((json_t *)w, (json_t *)t->what) < 0) {
		json_decref(w);
		return NULL;
	}
	return w;
}

/* Write the state: epochs_done whole epochs, then `batches` more (their
 * losses summed in loss_sum), with the samples, testing seconds and the
 * trainer's figures. */
static int fit_save(struct fit_run *r, int epochs_done, uint64_t batches, double loss_sum,
		    struct error *err)
{
	const char *dir = r->fit->state_dir;
	struct nn_trainstate st = {.epochs_done = epochs_done,
				   .batches = batches,
				   .loss_sum = loss_sum,
				   .seconds = clock_now() - r->t0 - r->eval_time};
	st.figures = json_pack("{s:I, s:f}", r->t->samples_name, (json_int_t)r->samples,
			       "eval_seconds", r->eval_time);
	if (!st.figures)
		return error_set(err, "%s: out of memory", dir);
	r->t->put(r->t->ctx, st.figures, epochs_done);
	struct nn_trainpart part = {r->net, r->opt};
	int rc = nn_trainstate_save(dir, r->what, &part, 1, &st, err);
	json_decref(st.figures);
	r->last = clock_now();
	return rc;
}

/* Start the training's clock and, with a state folder, go on from its
 * state: net and optimizer loaded and l set where it stopped (the epoch
 * after its last whole one, at the batch after its last one), the
 * trainer's figures of the epochs done got back, the samples and testing
 * seconds as they were, t0 moved back by the seconds trained before.
 * *first: the epoch to go on with (0 on a fresh start, at most epochs). 0,
 * or < 0 with err set (DATASET_EBADINPUT: another training's state, a
 * damaged one, or its figures missing; ranks: a state is one process's). */
static int fit_begin(struct fit_run *r, struct loader *l, int *first, struct error *err)
{
	const struct nn_fit *fit = r->fit;
	const char *dir = fit->state_dir;
	*first = 0;
	r->t0 = r->last = clock_now();
	if (!dir)
		return 0;
	if (fit->sync && fit->sync->parts > 1)
		return BAD("a state folder (%s) cannot be shared by %d ranks: train without one "
			   "under --dist",
			   dir, fit->sync->parts);
	if (!r->what)
		return error_set(err, "%s: out of memory", dir);
	struct nn_trainstate ts;
	memset(&ts, 0, sizeof(ts));
	struct nn_trainpart part = {r->net, r->opt};
	int got = nn_trainstate_load(dir, r->what, &part, 1, &ts, err);
	if (got <= 0)
		return got < 0 ? DATASET_EBADINPUT : 0;
	int rc = 0;
	*first = ts.epochs_done < fit->epochs ? ts.epochs_done : fit->epochs;
	/* batches past the epoch: not this training's */
	if (loader_seek_batch(l, (uint64_t)ts.epochs_done, ts.batches, err) < 0)
		rc = DATASET_EBADINPUT;
	else if (r->t->get(r->t->ctx, ts.figures, *first) < 0)
		rc = BAD("%s/" NN_TRAINSTATE_FILE ": its figures of %d epochs are missing", dir,
			 *first);
	r->batches = ts.batches;
	r->loss_sum = ts.loss_sum;
	r->samples = (uint64_t)jsonio_int(ts.figures, r->t->samples_name, 0);
	r->eval_time = jsonio_num(ts.figures, "eval_seconds", 0);
	r->t0 -= ts.seconds + r->eval_time;
	nn_trainstate_release(&ts);
	return rc;
}

/* One epoch of steps over l's batches (training mode): each uploaded (x;
 * labels: the batch's y, or its mask for a mask shard), stepped through the
 * backend's step slot (*graph: its replay state), its loss checked.
 * *mean_loss: the mean over the batches. The epoch starts after its batches
 * done before this start, and with a state folder a state is written
 * within it every state_every seconds. */
static int fit_epoch(struct fit_run *r, struct nn_train_step *st, void **graph, struct loader *l,
		     int32_t *labels, int epoch, float *mean_loss, struct error *err)
{
	const struct nn_fit *fit = r->fit;
	struct nn_net *net = st->net;
	const struct nn_backend *be = net->be;
	uint64_t per_epoch = loader_batches_per_epoch(l);
	/* resumed within this epoch: its batches done before */
	uint64_t nb = r->batches;
	double loss_sum = r->loss_sum;
	r->batches = 0, r->loss_sum = 0;
	struct loader_batch b;
	int rc;
	nn_net_train(net, 1);
	st->labels = labels;
	while ((rc = loader_next(l, &b, err)) == 1) {
		struct nn_tensor *in = nn_net_input(net);
		if (nn_tensor_upload(in, b.x, (size_t)b.n * in->c * in->h * in->w, err) < 0)
			return -1;
		if (b.mask)
			be->upload(labels, b.mask, sizeof(int32_t) * b.n * in->h * in->w);
		else
			be->upload(labels, b.y, sizeof(int32_t) * b.n);
		st->n = (int)b.n;
		st->hw = b.mask ? in->h * in->w : 1;
		if (fit->sync) { /* ranks: the batch's number in the whole training */
			const struct nn_train_sync *y = fit->sync;
			uint64_t t = b.epoch * per_epoch + b.index;
			if (r->total) /* shared batches: the schedule at the training's progress */
				st->opt->t = (long)t;
			else
				t = t * (uint64_t)y->parts + (uint64_t)y->part;
			/* the dropout masks of that number (nn_net_forward counts on
			 * from it): no two ranks draw the same ones, and with shared
			 * batches a batch gets the masks one process would give it */
			net->step = t;
		}
		if (st->sync) { /* MPI calls in the step: no graph */
			st->sync_err = err;
			nn_train_step(st);
			if (st->sync_rc < 0)
				return -1;
		} else {
			nn_backend_step(be, graph, nn_train_step, st);
		}
		float loss = st->loss;
		if (!isfinite(loss))
			return error_set(err,
					 "training diverged: loss %g at epoch %d, batch %" PRIu64
					 " (learning rate %g too high? try a lower --lr)",
					 (double)loss, epoch + 1, nb + 1, (double)fit->lr);
		loss_sum += loss;
		nb++;
		r->samples += b.n;
		if (fit->on_batch)
			fit->on_batch(fit->ctx, epoch, r->total ? b.index + 1 : nb, per_epoch, loss);
		if (fit->state_dir && fit->state_every > 0 && nb < per_epoch &&
		    clock_now() - r->last >= fit->state_every &&
		    fit_save(r, epoch, nb, loss_sum, err) < 0)
			return -1;
	}
	if (rc < 0)
		return rc;
	*mean_loss = nb ? (float)(loss_sum / nb) : 0;
	return 0;
}

/* t's eval, timed as evaluation (not training). */
static int fit_eval(struct fit_run *r, int epoch, struct error *err)
{
	double te = clock_now();
	int rc = r->t->eval(r->t->ctx, epoch, err);
	r->eval_time += clock_now() - te;
	return rc;
}

/* The epochs from first on: each one's steps; where this process
 * evaluates, eval, and the wait of allreduce ranks for the one that
 * evaluates (sync->tested), both timed apart from training; then t's done
 * and, with a state folder, the state. When every epoch was done before
 * this start, eval once of the loaded net; with ranks, their consensus
 * (sync->finish), then eval once more. *train_seconds: the training's own,
 * evaluation and consensus left out. */
static int fit_epochs(struct fit_run *r, struct nn_train_step *st, void **graph, struct loader *l,
		      int32_t *labels, int first, double *train_seconds, struct error *err)
{
	const struct nn_fit *fit = r->fit;
	const struct nn_fit_trainer *t = r->t;
	const struct nn_train_sync *sync = fit->sync;
	int evaluate = t->test && (!sync || sync->evaluate);
	int rc;
	for (int e = first; e < fit->epochs; e++) {
		if ((rc = fit_epoch(r, st, graph, l, labels, e, &t->epoch_loss[e], err)) < 0)
			return rc;
		if (evaluate && (rc = fit_eval(r, e, err)) < 0)
			return rc;
		double te = clock_now();
		if (sync && sync->tested && sync->tested(sync->ctx, r->net, err) < 0)
			return -1;
		r->eval_time += clock_now() - te;
		t->done(t->ctx, e, clock_now() - r->t0);
		if (fit->state_dir && fit_save(r, e + 1, 0, 0, err) < 0)
			return -1;
	}
	/* every epoch was done before this start: the last evaluation's
	 * figures come from one more of the loaded net */
	if (first == fit->epochs && evaluate && (rc = fit_eval(r, -1, err)) < 0)
		return rc;
	*train_seconds = clock_now() - r->t0 - r->eval_time;
	/* Data-parallel: the model to keep is the ranks' consensus, evaluated
	 * once more (each epoch's evaluation was of this rank's own model). */
	if (sync && sync->finish) {
		if (sync->finish(sync->ctx, r->net, err) < 0)
			return -1;
		if (evaluate && (rc = fit_eval(r, -1, err)) < 0)
			return rc;
	}
	return 0;
}

/* With ranks (sync), each takes a part of every epoch: 0 when that part
 * (per_epoch batches) has a batch, else DATASET_EBADINPUT saying so. */
static int check_part(uint64_t per_epoch, int batch, const struct dataset *train,
		      const struct nn_train_sync *sync, struct error *err)
{
	if (per_epoch > 0)
		return 0;
	if (!sync || sync->claim)
		return BAD("--batch %d is larger than train shard %s (%" PRIu64
			   " records): give a smaller --batch",
			   batch, train->path, train->count);
	return BAD("--batch %d is larger than a rank's part of train shard %s (%" PRIu64
		   " records over %d ranks): give a smaller --batch or fewer ranks",
		   batch, train->path, train->count, sync->parts);
}

int nn_fit_run(const struct nn_fit *fit, const struct nn_fit_trainer *t,
	       const struct dataset *train, struct nn_net *net, struct nn_fit_result *res,
	       struct error *err)
{
	const struct nn_backend *be = fit->be;
	const struct dataset_shape *s = &train->shape;
	size_t hw = s->label_kind == DATASET_LABEL_MASK ? (size_t)s->height * s->width : 1;
	memset(res, 0, sizeof(*res));
	if (nn_net_prepare(net, fit->batch, err) < 0)
		return -1;
	struct loader_config lc;
	loader_config_default(&lc);
	lc.batch = (uint32_t)fit->batch;
	lc.seed = fit->seed;
	lc.drop_last = 1;
	lc.flip = t->flip;
	lc.pad = t->pad;
	lc.dihedral = t->dihedral;
	struct nn_optim opt;
	struct fit_run r = {.fit = fit, .t = t, .net = net, .opt = &opt};
	if (fit->sync && fit->sync->claim) {
		lc.claim = fit_claim;
		lc.claim_ctx = &r;
	} else if (fit->sync) {
		lc.part = (uint32_t)fit->sync->part;
		lc.parts = (uint32_t)fit->sync->parts;
	}
	nn_train_loader_setup(&lc, be, (int)s->channels);
	int32_t *labels = be->alloc(sizeof(int32_t) * fit->batch * hw);
	struct loader *l = NULL;
	void *graph = NULL; /* the backend's state for replaying steps (CUDA graphs) */
	json_t *what = NULL;
	int rc = -1, first;
	if (!labels) {
		nn_alloc_failed(be, err, "train: out of memory for labels (batch %d of %zu each)",
				fit->batch, hw);
		goto out;
	}
	if (!(l = loader_new(train, &lc, err)))
		goto out;
	uint64_t per_epoch = loader_batches_per_epoch(l);
	if ((rc = check_part(per_epoch, fit->batch, train, fit->sync, err)) < 0)
		goto out;
	if (lc.claim)
		r.total = per_epoch * (uint64_t)fit->epochs;
	sgd_setup(&opt, fit, per_epoch);
	if ((rc = nn_optim_init(&opt, net, err)) < 0)
		goto out;
	if (fit->state_dir)
		r.what = what = fit_what(fit, t, net->arch, train);
	if ((rc = fit_begin(&r, l, &first, err)) < 0)
		goto out;
	res->resumed_from = first;
	res->resumed_batches = r.batches;
	struct nn_train_step st = {
	    .net = net, .opt = &opt, .class_w = t->class_w, .sync = fit->sync};
	if ((rc = fit_epochs(&r, &st, &graph, l, labels, first, &res->train_seconds, err)) < 0)
		goto out;
	res->eval_seconds = r.eval_time;
	res->samples_per_second = res->train_seconds > 0 ? r.samples / res->train_seconds : 0;
out:
	json_decref(what);
	nn_backend_step_release(be, &graph);
	loader_free(l);
	if (labels)
		be->free(labels);
	return rc;
}

int nn_train_check_inputs(const struct nn_train_config *cfg, const struct dataset *train,
			  const struct dataset *test, struct error *err)
{
	const struct dataset_shape *a = &train->shape, *b = &test->shape;
	const struct dataset *m = a->label_kind == DATASET_LABEL_MASK	? train
				  : b->label_kind == DATASET_LABEL_MASK ? test
									: NULL;
	if (m)
		return BAD("%s is a mask shard (a class per pixel), not a class shard (one label "
			   "per image): train it with cairn-train-unet",
			   m->path);
	if (cfg->fit.epochs < 1 || cfg->fit.batch < 1)
		return BAD("epochs %d and batch %d must be positive", cfg->fit.epochs,
			   cfg->fit.batch);
	if (train->count == 0)
		return BAD("train shard %s has 0 records", train->path);
	if (test->count == 0)
		return BAD("test shard %s has 0 records", test->path);
	if (a->channels != b->channels || a->height != b->height || a->width != b->width)
		return BAD("train shard %s has %" PRIu32 "x%" PRIu32 "x%" PRIu32
			   " images, test shard %s has %" PRIu32 "x%" PRIu32 "x%" PRIu32
			   " (C x H x W): they must match",
			   train->path, a->channels, a->height, a->width, test->path, b->channels,
			   b->height, b->width);
	if (a->num_classes != b->num_classes)
		return BAD("train shard %s has %" PRIu32 " classes, test shard %s has %" PRIu32
			   ": they must match (import both with the same --classes)",
			   train->path, a->num_classes, test->path, b->num_classes);
	if ((uint64_t)cfg->fit.batch > train->count)
		return BAD("--batch %d is larger than the %" PRIu64
			   " records of train shard %s: give --batch %" PRIu64 " or less",
			   cfg->fit.batch, train->count, train->path, train->count);
	/* data-parallel: each of the parts (MPI ranks) steps over its own
	 * count / parts records, and would take no step at all */
	const struct nn_train_sync *sync = cfg->fit.sync;
	uint64_t parts = sync && !sync->claim && sync->parts > 1 ? (uint64_t)sync->parts : 1;
	if ((uint64_t)cfg->fit.batch > train->count / parts)
		return BAD("--batch %d is larger than the %" PRIu64 " records each of %" PRIu64
			   " ranks gets of train shard %s (%" PRIu64
			   " records): give a smaller --batch or fewer ranks",
			   cfg->fit.batch, train->count / parts, parts, train->path, train->count);
	return 0;
}

/* ---- the classifier ------------------------------------------------------ */

/* The classifier's evaluation and report (nn_fit_trainer's eval and done). */
struct classifier_loop {
	const struct nn_train_config *cfg;
	struct nn_net *net;
	const struct dataset *test;
	struct nn_train_result *res;
	uint64_t *correct, *total;
	double acc; /* the last evaluation's; NAN where this process does not test */
};

static int classifier_eval(void *ctx, int epoch, struct error *err)
{
	struct classifier_loop *c = ctx;
	if (nn_eval_classifier(c->net, c->test, c->cfg->fit.batch, &c->acc, c->correct, c->total,
			       err) < 0)
		return -1;
	if (epoch < 0)
		c->res->test_accuracy = c->acc;
	return 0;
}

static void classifier_done(void *ctx, int epoch, double seconds)
{
	struct classifier_loop *c = ctx;
	c->res->epoch_accuracy[epoch] = c->acc;
	c->res->test_accuracy = c->acc;
	if (c->cfg->on_epoch)
		c->cfg->on_epoch(c->cfg->fit.ctx, epoch, c->res->epoch_loss[epoch], c->acc,
				 seconds);
}

/* The classifier's figures in a state: per-epoch loss and accuracy. */
static void classifier_put(void *ctx, json_t *f, int epochs)
{
	const struct classifier_loop *c = ctx;
	nn_figures_put_float(f, "loss", c->res->epoch_loss, (size_t)epochs);
	nn_figures_put(f, "accuracy", c->res->epoch_accuracy, (size_t)epochs);
}

static int classifier_get(void *ctx, const json_t *f, int epochs)
{
	struct classifier_loop *c = ctx;
	struct nn_train_result *res = c->res;
	if (nn_figures_get_float(f, "loss", res->epoch_loss, (size_t)epochs) < 0 ||
	    nn_figures_get(f, "accuracy", res->epoch_accuracy, (size_t)epochs) < 0)
		return -1;
	if (epochs > 0)
		res->test_accuracy = c->acc = res->epoch_accuracy[epochs - 1];
	return 0;
}

int nn_train_classifier(const struct nn_train_config *cfg, const struct dataset *train,
			const struct dataset *test, struct nn_net *net, struct nn_train_result *res,
			struct error *err)
{
	const struct nn_fit *fit = &cfg->fit;
	const struct dataset_shape *s = &train->shape;
	memset(res, 0, sizeof(*res));
	int bad = nn_train_check_inputs(cfg, train, test, err);
	if (bad < 0)
		return bad;
	int classes = (int)s->num_classes;
	if (nn_model_build(net, fit->be, fit->arch, (int)s->channels, (int)s->height, (int)s->width,
			   classes, fit->seed, err) < 0)
		return -1;
	res->classes = classes;
	res->epochs = fit->epochs;
	res->params = nn_net_param_count(net);
	res->flops_per_image = 2 * nn_net_macs(net);
	res->class_accuracy = mem_calloc(classes, sizeof(double));
	res->epoch_loss = mem_calloc(fit->epochs, sizeof(float));
	res->epoch_accuracy = mem_calloc(fit->epochs, sizeof(double));
	uint64_t *correct = mem_calloc(classes, sizeof(uint64_t));
	uint64_t *total = mem_calloc(classes, sizeof(uint64_t));
	json_t *what = json_pack("{s:{s:i, s:i}}", "augment", "flip", cfg->flip, "pad", cfg->pad);
	int rc = -1;
	if (!res->class_accuracy || !res->epoch_loss || !res->epoch_accuracy || !correct ||
	    !total || !what) {
		error_set(err, "train: out of memory");
		goto out;
	}
	struct classifier_loop cl = {cfg, net, test, res, correct, total, NAN};
	struct nn_fit_trainer t = {.name = "classifier",
				   .samples_name = "images",
				   .test = test,
				   .what = what,
				   .flip = cfg->flip,
				   .pad = cfg->pad,
				   .epoch_loss = res->epoch_loss,
				   .eval = classifier_eval,
				   .done = classifier_done,
				   .put = classifier_put,
				   .get = classifier_get,
				   .ctx = &cl};
	if ((rc = nn_fit_run(fit, &t, train, net, &res->fit, err)) < 0)
		goto out;
	for (int k = 0; k < classes; k++)
		res->class_accuracy[k] = total[k] ? (double)correct[k] / total[k] : 0;
out:
	json_decref(what);
	mem_free(correct), mem_free(total);
	return rc;
}
