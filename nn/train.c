/* train: classifier training and evaluation loops. */
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

/* The classifier's figures in a state: per-epoch loss and accuracy. */
static void classifier_put(void *ctx, json_t *f, int epochs)
{
	const struct nn_train_result *res = ctx;
	nn_figures_put_float(f, "loss", res->epoch_loss, (size_t)epochs);
	nn_figures_put(f, "accuracy", res->epoch_accuracy, (size_t)epochs);
}

static int classifier_get(void *ctx, const json_t *f, int epochs)
{
	struct nn_train_result *res = ctx;
	return nn_figures_get_float(f, "loss", res->epoch_loss, (size_t)epochs) < 0 ||
			       nn_figures_get(f, "accuracy", res->epoch_accuracy, (size_t)epochs) < 0
		   ? -1
		   : 0;
}

void nn_train_defaults(struct nn_train_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->be = nn_backend_cpu();
	cfg->arch = NN_MODEL_DEFAULT;
	cfg->state_every = 600;
	cfg->epochs = 15;
	cfg->batch = 128;
	cfg->lr = 0.05f;
	cfg->momentum = 0.9f;
	cfg->wd = 5e-4f;
	cfg->warmup_epochs = 1;
	cfg->flip = 1;
	cfg->pad = 0;
	cfg->seed = 1;
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

void nn_train_sgd_setup(struct nn_optim *opt, float lr, float momentum, float wd,
			float warmup_epochs, int epochs, uint64_t per_epoch)
{
	nn_optim_defaults(opt);
	opt->lr = lr;
	opt->momentum = momentum;
	opt->nesterov = 1;
	opt->wd = wd;
	opt->sched = NN_LR_COSINE;
	opt->warmup = (long)(warmup_epochs * per_epoch);
	opt->total = (long)(epochs * per_epoch);
	opt->lr_min = 0;
}

int nn_train_epoch(struct nn_train_step *st, void **graph, struct loader *l, int32_t *labels,
		   int epoch, float lr, nn_train_batch_fn *on_batch, void *ctx, float *mean_loss,
		   struct nn_train_saver *sv, struct error *err)
{
	struct nn_net *net = st->net;
	const struct nn_backend *be = net->be;
	uint64_t per_epoch = loader_batches_per_epoch(l), nb = 0;
	double loss_sum = 0;
	/* resumed within this epoch: its batches done before */
	nb = sv->batches, loss_sum = sv->loss_sum;
	sv->batches = 0, sv->loss_sum = 0;
	struct loader_batch b;
	int r;
	nn_net_train(net, 1);
	st->labels = labels;
	while ((r = loader_next(l, &b, err)) == 1) {
		struct nn_tensor *in = nn_net_input(net);
		if (nn_tensor_upload(in, b.x, (size_t)b.n * in->c * in->h * in->w, err) < 0)
			return -1;
		if (b.mask)
			be->upload(labels, b.mask, sizeof(int32_t) * b.n * in->h * in->w);
		else
			be->upload(labels, b.y, sizeof(int32_t) * b.n);
		st->n = (int)b.n;
		st->hw = b.mask ? in->h * in->w : 1;
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
					 (double)loss, epoch + 1, nb + 1, (double)lr);
		loss_sum += loss;
		nb++;
		sv->samples += b.n;
		if (on_batch)
			on_batch(ctx, epoch, nb, per_epoch, loss);
		if (sv->dir && sv->every > 0 && nb < per_epoch &&
		    clock_now() - sv->last >= sv->every &&
		    nn_train_save(sv, epoch, nb, loss_sum, err) < 0)
			return -1;
	}
	if (r < 0)
		return r;
	*mean_loss = nb ? (float)(loss_sum / nb) : 0;
	return 0;
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

json_t *nn_train_what(const char *trainer, const char *arch, const struct dataset *train,
		      const struct dataset *test, int epochs, int batch, float lr, float momentum,
		      float wd, float warmup_epochs, uint64_t seed)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:s?, s:i, s:i, s:f, s:f, s:f, s:f, s:I}", "trainer",
			 trainer, "arch", arch, "train", train->path, "train_records",
			 (json_int_t)train->count, "test", test ? test->path : NULL, "epochs",
			 epochs, "batch", batch, "lr", (double)lr, "momentum", (double)momentum,
			 "wd", (double)wd, "warmup_epochs", (double)warmup_epochs, "seed",
			 (json_int_t)seed);
}

/* nn_train_begin's loading: sv->dir's state into sv->net and sv->opt, l set
 * where it stopped (the epoch after its last whole one, at the batch after
 * its last one):
 * 1 loaded (ts filled: the caller takes its figures back, then
 * nn_trainstate_release; sv->batches and sv->loss_sum set for the epoch
 * under way), 0 nothing to load, < 0 with err set (DATASET_EBADINPUT for
 * another training's state or a damaged one). Ranks (sync) are refused: a
 * state is one process's. */
static int train_resume(struct nn_train_saver *sv, const struct nn_train_sync *sync,
			struct loader *l, struct nn_trainstate *ts, struct error *err)
{
	memset(ts, 0, sizeof(*ts));
	sv->batches = 0;
	sv->loss_sum = 0;
	sv->last = clock_now();
	if (sync && sync->parts > 1)
		return BAD("a state folder (%s) cannot be shared by %d ranks: train without one "
			   "under --dist",
			   sv->dir, sync->parts);
	if (!sv->what)
		return error_set(err, "%s: out of memory", sv->dir);
	struct nn_trainpart part = {sv->net, sv->opt};
	int got = nn_trainstate_load(sv->dir, sv->what, &part, 1, ts, err);
	if (got < 0)
		return DATASET_EBADINPUT;
	if (got && loader_seek_batch(l, (uint64_t)ts->epochs_done, ts->batches, err) < 0) {
		nn_trainstate_release(ts);
		return DATASET_EBADINPUT; /* batches past the epoch: not this training's */
	}
	sv->batches = ts->batches;
	sv->loss_sum = ts->loss_sum;
	return got;
}

int nn_train_begin(struct nn_train_saver *sv, const struct nn_train_sync *sync, struct loader *l,
		   int epochs, int *first, struct error *err)
{
	*first = 0;
	sv->t0 = clock_now();
	if (!sv->dir)
		return 0;
	struct nn_trainstate ts;
	int rc = train_resume(sv, sync, l, &ts, err);
	if (rc <= 0)
		return rc;
	*first = ts.epochs_done < epochs ? ts.epochs_done : epochs;
	sv->samples = (uint64_t)jsonio_int(ts.figures, sv->samples_name, 0);
	sv->eval_time = jsonio_num(ts.figures, "eval_seconds", 0);
	sv->t0 -= ts.seconds + sv->eval_time;
	rc = sv->get(sv->ctx, ts.figures, *first) < 0
		 ? BAD("%s/" NN_TRAINSTATE_FILE ": its figures of %d epochs are missing", sv->dir,
		       *first)
		 : 0;
	nn_trainstate_release(&ts);
	return rc;
}

int nn_train_save(struct nn_train_saver *sv, int epochs_done, uint64_t batches, double loss_sum,
		  struct error *err)
{
	struct nn_trainstate st = {.epochs_done = epochs_done,
				   .batches = batches,
				   .loss_sum = loss_sum,
				   .seconds = clock_now() - sv->t0 - sv->eval_time};
	st.figures = json_pack("{s:I, s:f}", sv->samples_name, (json_int_t)sv->samples,
			       "eval_seconds", sv->eval_time);
	if (!st.figures)
		return error_set(err, "%s: out of memory", sv->dir);
	sv->put(sv->ctx, st.figures, epochs_done);
	struct nn_trainpart part = {sv->net, sv->opt};
	int rc = nn_trainstate_save(sv->dir, sv->what, &part, 1, &st, err);
	json_decref(st.figures);
	sv->last = clock_now();
	return rc;
}

int nn_train_check_part(uint64_t per_epoch, int batch, const struct dataset *train,
			const struct nn_train_sync *sync, struct error *err)
{
	if (per_epoch > 0)
		return 0;
	return BAD("--batch %d is larger than a rank's part of train shard %s (%" PRIu64
		   " records over %d ranks): give a smaller --batch or fewer ranks",
		   batch, train->path, train->count, sync ? sync->parts : 1);
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
	if (cfg->epochs < 1 || cfg->batch < 1)
		return BAD("epochs %d and batch %d must be positive", cfg->epochs, cfg->batch);
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
	if ((uint64_t)cfg->batch > train->count)
		return BAD("--batch %d is larger than the %" PRIu64
			   " records of train shard %s: give --batch %" PRIu64 " or less",
			   cfg->batch, train->count, train->path, train->count);
	/* data-parallel: each of the parts (MPI ranks) steps over its own
	 * count / parts records, and would take no step at all */
	uint64_t parts = cfg->sync && cfg->sync->parts > 1 ? (uint64_t)cfg->sync->parts : 1;
	if ((uint64_t)cfg->batch > train->count / parts)
		return BAD("--batch %d is larger than the %" PRIu64 " records each of %" PRIu64
			   " ranks gets of train shard %s (%" PRIu64
			   " records): give a smaller --batch or fewer ranks",
			   cfg->batch, train->count / parts, parts, train->path, train->count);
	return 0;
}

int nn_train_epochs(const struct nn_train_loop *lp, double *train_seconds, struct error *err)
{
	struct nn_train_saver *sv = lp->sv;
	const struct nn_train_sync *sync = lp->st->sync;
	struct nn_net *net = lp->st->net;
	int r;
	for (int e = lp->first; e < lp->epochs; e++) {
		if ((r = nn_train_epoch(lp->st, lp->graph, lp->l, lp->labels, e, lp->lr,
					lp->on_batch, lp->batch_ctx, &lp->epoch_loss[e], sv, err)) <
		    0)
			return r;
		double te = clock_now();
		if (lp->evaluate && (r = lp->eval(lp->ctx, e, err)) < 0)
			return r;
		if (sync && sync->tested && sync->tested(sync->ctx, net, err) < 0)
			return -1;
		sv->eval_time += clock_now() - te;
		lp->done(lp->ctx, e);
		if (sv->dir && nn_train_save(sv, e + 1, 0, 0, err) < 0)
			return -1;
	}
	/* Every epoch was done before this start: the last evaluation's
	 * figures come from one more of the loaded net. */
	if (lp->first == lp->epochs && lp->evaluate) {
		double te = clock_now();
		if ((r = lp->eval(lp->ctx, -1, err)) < 0)
			return r;
		sv->eval_time += clock_now() - te;
	}
	*train_seconds = clock_now() - sv->t0 - sv->eval_time;
	/* Data-parallel: the model to keep is the ranks' consensus, evaluated
	 * once more (each epoch's evaluation was of this rank's own model). */
	if (sync && sync->finish) {
		if (sync->finish(sync->ctx, net, err) < 0)
			return -1;
		double te = clock_now();
		if (lp->evaluate && (r = lp->eval(lp->ctx, -1, err)) < 0)
			return r;
		sv->eval_time += clock_now() - te;
	}
	return 0;
}

/* The classifier's evaluation and report (nn_train_loop's eval and done). */
struct classifier_loop {
	const struct nn_train_config *cfg;
	struct nn_net *net;
	const struct dataset *test;
	struct nn_train_result *res;
	const struct nn_train_saver *sv;
	uint64_t *correct, *total;
	int evaluate;
	double acc; /* the last evaluation's */
};

static int classifier_eval(void *ctx, int epoch, struct error *err)
{
	struct classifier_loop *c = ctx;
	if (nn_eval_classifier(c->net, c->test, c->cfg->batch, &c->acc, c->correct, c->total, err) <
	    0)
		return -1;
	if (epoch < 0)
		c->res->test_accuracy = c->acc;
	return 0;
}

static void classifier_done(void *ctx, int epoch)
{
	struct classifier_loop *c = ctx;
	double acc = c->evaluate ? c->acc : NAN;
	c->res->epoch_accuracy[epoch] = acc;
	c->res->test_accuracy = acc;
	if (c->cfg->on_epoch)
		c->cfg->on_epoch(c->cfg->ctx, epoch, c->res->epoch_loss[epoch], acc,
				 clock_now() - c->sv->t0);
}

int nn_train_classifier(const struct nn_train_config *cfg, const struct dataset *train,
			const struct dataset *test, struct nn_net *net, struct nn_train_result *res,
			struct error *err)
{
	const struct nn_backend *be = cfg->be;
	const struct dataset_shape *s = &train->shape;
	memset(res, 0, sizeof(*res));
	int bad = nn_train_check_inputs(cfg, train, test, err);
	if (bad < 0)
		return bad;
	int classes = (int)s->num_classes;
	if (nn_model_build(net, be, cfg->arch, (int)s->channels, (int)s->height, (int)s->width,
			   classes, cfg->seed, err) < 0)
		return -1;
	if (nn_net_prepare(net, cfg->batch, err) < 0)
		return -1;
	res->classes = classes;
	res->epochs = cfg->epochs;
	res->params = nn_net_param_count(net);
	res->flops_per_image = 2 * nn_net_macs(net);
	res->class_accuracy = mem_calloc(classes, sizeof(double));
	res->epoch_loss = mem_calloc(cfg->epochs, sizeof(float));
	res->epoch_accuracy = mem_calloc(cfg->epochs, sizeof(double));
	uint64_t *correct = mem_calloc(classes, sizeof(uint64_t));
	uint64_t *total = mem_calloc(classes, sizeof(uint64_t));
	int32_t *labels = be->alloc(sizeof(int32_t) * cfg->batch);
	if (!res->class_accuracy || !res->epoch_loss || !res->epoch_accuracy || !correct || !total ||
	    !labels) {
		mem_free(correct), mem_free(total);
		if (labels)
			be->free(labels);
		return error_set(err, "train: out of memory");
	}

	struct loader_config lc;
	loader_config_default(&lc);
	lc.batch = cfg->batch;
	lc.seed = cfg->seed;
	lc.drop_last = 1;
	lc.flip = cfg->flip;
	lc.pad = cfg->pad;
	if (cfg->sync) {
		lc.part = (uint32_t)cfg->sync->part;
		lc.parts = (uint32_t)cfg->sync->parts;
	}
	nn_train_loader_setup(&lc, be, (int)s->channels);
	struct loader *l = loader_new(train, &lc, err);
	int rc = -1;
	json_t *what = NULL; /* with state_dir: what this training is */
	void *graph = NULL; /* the backend's state for replaying steps (CUDA graphs) */
	if (!l)
		goto out;
	uint64_t per_epoch = loader_batches_per_epoch(l);
	if (nn_train_check_part(per_epoch, cfg->batch, train, cfg->sync, err) < 0) {
		rc = DATASET_EBADINPUT;
		goto out;
	}
	struct nn_optim opt;
	nn_train_sgd_setup(&opt, cfg->lr, cfg->momentum, cfg->wd, cfg->warmup_epochs, cfg->epochs,
			   per_epoch);
	if (nn_optim_init(&opt, net, err) < 0)
		goto out;
	struct nn_train_saver sv = {.dir = cfg->state_dir,
				    .every = cfg->state_every,
				    .net = net,
				    .opt = &opt,
				    .put = classifier_put,
				    .get = classifier_get,
				    .ctx = res,
				    .samples_name = "images"};
	if (cfg->state_dir) {
		what =
		    nn_train_what("classifier", net->arch, train, test, cfg->epochs, cfg->batch,
				  cfg->lr, cfg->momentum, cfg->wd, cfg->warmup_epochs, cfg->seed);
		if (what)
			json_object_set_new(
			    what, "augment",
			    json_pack("{s:i, s:i}", "flip", cfg->flip, "pad", cfg->pad));
		sv.what = what;
	}
	int first;
	if ((rc = nn_train_begin(&sv, cfg->sync, l, cfg->epochs, &first, err)) < 0)
		goto out;
	rc = -1;
	res->resumed_from = first;
	res->resumed_batches = sv.batches;
	struct nn_train_step st = {.net = net, .opt = &opt, .sync = cfg->sync};
	int evaluate = !cfg->sync || cfg->sync->evaluate;
	if (first > 0)
		res->test_accuracy = res->epoch_accuracy[first - 1];
	struct classifier_loop cl = {cfg, net, test, res, &sv, correct, total, evaluate, NAN};
	struct nn_train_loop lp = {.st = &st,
				   .graph = &graph,
				   .l = l,
				   .labels = labels,
				   .first = first,
				   .epochs = cfg->epochs,
				   .lr = cfg->lr,
				   .on_batch = cfg->on_batch,
				   .batch_ctx = cfg->ctx,
				   .epoch_loss = res->epoch_loss,
				   .sv = &sv,
				   .evaluate = evaluate,
				   .eval = classifier_eval,
				   .done = classifier_done,
				   .ctx = &cl};
	if ((rc = nn_train_epochs(&lp, &res->train_seconds, err)) < 0)
		goto out;
	res->eval_seconds = sv.eval_time;
	res->images_per_second = res->train_seconds > 0 ? sv.samples / res->train_seconds : 0;
	for (int k = 0; k < classes; k++)
		res->class_accuracy[k] = total[k] ? (double)correct[k] / total[k] : 0;
	rc = 0;
out:
	json_decref(what);
	nn_backend_step_release(be, &graph);
	if (l)
		loader_free(l);
	mem_free(correct), mem_free(total);
	be->free(labels);
	return rc;
}
