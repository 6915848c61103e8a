/* segment: segmenter training, evaluation and prediction loops. */
#include "nn/segment.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "nn/loader.h"
#include "nn/model.h"
#include "nn/optim.h"

#define BAD(...) (error_set(err, __VA_ARGS__), DATASET_EBADINPUT)

void nn_segment_defaults(struct nn_segment_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	nn_fit_defaults(&cfg->fit, NN_SEGMENT_ARCH, 30, 8);
	cfg->augment = 1;
	cfg->weighting = NN_WEIGHTS_NONE;
}

/* ---- metrics ---------------------------------------------------------- */

int nn_segment_metrics_init(struct nn_segment_metrics *m, int classes, struct error *err)
{
	memset(m, 0, sizeof(*m));
	if (classes < 1)
		return error_set(err, "segment metrics: %d classes", classes);
	m->classes = classes;
	m->confusion = mem_calloc((size_t)classes * classes, sizeof(uint64_t));
	m->iou = mem_calloc((size_t)classes, sizeof(double));
	if (!m->confusion || !m->iou) {
		nn_segment_metrics_release(m);
		return error_set(err, "segment metrics: out of memory");
	}
	nn_segment_metrics_clear(m);
	return 0;
}

void nn_segment_metrics_release(struct nn_segment_metrics *m)
{
	mem_free(m->confusion);
	mem_free(m->iou);
	memset(m, 0, sizeof(*m));
}

void nn_segment_metrics_clear(struct nn_segment_metrics *m)
{
	int k = m->classes;
	memset(m->confusion, 0, sizeof(uint64_t) * (size_t)k * k);
	m->pixels = 0;
	m->pixel_accuracy = NAN;
	for (int i = 0; i < k; i++)
		m->iou[i] = NAN;
	m->mean_iou = NAN;
}

void nn_segment_metrics_add(struct nn_segment_metrics *m, const int32_t *truth, const int32_t *pred,
			    size_t n)
{
	int k = m->classes;
	for (size_t i = 0; i < n; i++) {
		int32_t t = truth[i], p = pred[i];
		if (t < 0 || t >= k || p < 0 || p >= k)
			continue;
		m->confusion[(size_t)t * k + p]++;
		m->pixels++;
	}
}

void nn_segment_metrics_finish(struct nn_segment_metrics *m)
{
	int k = m->classes;
	uint64_t right = 0;
	for (int c = 0; c < k; c++)
		right += m->confusion[(size_t)c * k + c];
	m->pixel_accuracy = m->pixels ? (double)right / m->pixels : NAN;
	double sum = 0;
	int have = 0;
	for (int c = 0; c < k; c++) {
		uint64_t tp = m->confusion[(size_t)c * k + c], fp = 0, fn = 0;
		for (int j = 0; j < k; j++)
			if (j != c) {
				fn += m->confusion[(size_t)c * k + j]; /* truth c, predicted j */
				fp += m->confusion[(size_t)j * k + c]; /* truth j, predicted c */
			}
		uint64_t u = tp + fp + fn;
		m->iou[c] = u ? (double)tp / u : NAN;
		/* the mean leaves out background (class 0) unless it is the only class */
		if ((c > 0 || k == 1) && u) {
			sum += m->iou[c];
			have++;
		}
	}
	m->mean_iou = have ? sum / have : NAN;
}

void nn_segment_metrics_copy(struct nn_segment_metrics *dst, const struct nn_segment_metrics *src)
{
	int k = src->classes;
	memcpy(dst->confusion, src->confusion, sizeof(uint64_t) * (size_t)k * k);
	memcpy(dst->iou, src->iou, sizeof(double) * (size_t)k);
	dst->pixels = src->pixels;
	dst->pixel_accuracy = src->pixel_accuracy;
	dst->mean_iou = src->mean_iou;
}

void nn_segment_argmax(int n, int c, int hw, const float *logits, int32_t *out)
{
	for (int i = 0; i < n; i++) {
		const float *l = logits + (size_t)i * c * hw;
		int32_t *o = out + (size_t)i * hw;
		for (int p = 0; p < hw; p++) {
			int best = 0;
			float v = l[p];
			for (int k = 1; k < c; k++)
				if (l[(size_t)k * hw + p] > v)
					v = l[(size_t)k * hw + p], best = k;
			o[p] = best;
		}
	}
}

/* ---- inputs ----------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int nn_segment_class_weights(const struct nn_segment_config *cfg, const struct dataset *train,
			     float *w, struct error *err)
{
	int k = (int)train->shape.num_classes;
	if (cfg->weighting == NN_WEIGHTS_NONE) {
		for (int c = 0; c < k; c++)
			w[c] = 1;
		return 0;
	}
	if (cfg->weighting == NN_WEIGHTS_GIVEN) {
		if (cfg->nweights != k)
			return BAD(
			    "class weights: %d given, but %s has %d classes: give one per class",
			    cfg->nweights, train->path, k);
		double sum = 0;
		for (int c = 0; c < k; c++) {
			if (!(cfg->weights[c] >= 0) || !isfinite(cfg->weights[c]))
				return BAD("class weights: weight %d is %g, expected a number >= 0",
					   c, (double)cfg->weights[c]);
			sum += cfg->weights[c];
		}
		if (!(sum > 0))
			return BAD("class weights: all are 0, nothing would be learned");
		memcpy(w, cfg->weights, sizeof(float) * k);
		return 0;
	}
	uint64_t *counts = mem_calloc((size_t)k, sizeof(uint64_t));
	double *f = mem_calloc((size_t)k, sizeof(double));
	if (!counts || !f) {
		mem_free(counts), mem_free(f);
		return error_set(err, "class weights: out of memory");
	}
	dataset_histogram(train, counts);
	uint64_t total = 0;
	for (int c = 0; c < k; c++)
		total += counts[c];
	int present = 0;
	for (int c = 0; c < k; c++)
		if (counts[c])
			f[present++] = (double)counts[c] / (double)total;
	if (!present) {
		mem_free(counts), mem_free(f);
		return BAD("%s: no labelled pixel (every mask value is %u): no class frequencies "
			   "for automatic class weights, and nothing to learn",
			   train->path, DATASET_MASK_IGNORE);
	}
	qsort(f, (size_t)present, sizeof(double), cmp_double);
	double median = present % 2 ? f[present / 2] : (f[present / 2 - 1] + f[present / 2]) / 2;
	for (int c = 0; c < k; c++)
		w[c] = counts[c] ? (float)(median / ((double)counts[c] / (double)total)) : 1.0f;
	mem_free(counts), mem_free(f);
	return 0;
}

/* A mask shard with records (or, for prediction, without: the empty shard
 * of an array task that got no tiles), or a message that says what it is
 * instead. */
static int check_mask_shard(const struct dataset *ds, const char *role, const char *program,
			    struct error *err)
{
	int predicting = !strcmp(program, "cairn-predict");
	if (ds->shape.label_kind != DATASET_LABEL_MASK)
		return BAD("%s shard %s is a class shard (one label per image): %s needs a mask "
			   "shard (a class per pixel and the tile of each record, as cairn-tileset "
			   "pack writes)%s",
			   role, ds->path, program,
			   predicting ? ""
				      : "; train a classifier on it with "
					"cairn-train-classifier");
	if (ds->count == 0 && !predicting)
		return BAD("%s shard %s has 0 records", role, ds->path);
	if (ds->shape.channels == 0)
		return BAD("%s shard %s holds masks without imagery (0 channels, as predictions "
			   "are): pack the imagery with cairn-tileset pack",
			   role, ds->path);
	return 0;
}

/* Whether some mask of ds labels a pixel: stops at the first one, so a
 * labelled shard costs a record, an unlabelled one (imagery packed without
 * --labels) a pass over its masks. */
static int has_label(const struct dataset *ds)
{
	size_t plane = (size_t)ds->shape.height * ds->shape.width;
	for (uint64_t i = 0; i < ds->count; i++) {
		const uint8_t *m = dataset_mask(ds, i);
		for (size_t j = 0; j < plane; j++)
			if (m[j] != DATASET_MASK_IGNORE)
				return 1;
	}
	return 0;
}

static int check_labelled(const struct dataset *ds, const char *role, const char *what,
			  struct error *err)
{
	if (has_label(ds))
		return 0;
	return BAD("%s shard %s has no labelled pixel (every mask value is %u, as cairn-tileset "
		   "pack writes without --labels): nothing to %s; pack the tiles with their "
		   "--labels",
		   role, ds->path, DATASET_MASK_IGNORE, what);
}

/* The size multiple of arch, and that the tiles of ds are multiples of it. */
static int check_arch_size(const char *arch, const struct dataset *ds, struct error *err)
{
	int m = nn_model_size_multiple(arch, err);
	if (m < 0)
		return DATASET_EBADINPUT;
	if (m == 0)
		return BAD(
		    "arch '%s' gives one output per image (a classifier), not one per pixel: "
		    "use a unet, e.g. '%s'",
		    arch, NN_SEGMENT_ARCH);
	uint32_t h = ds->shape.height, w = ds->shape.width;
	if (h % m || w % m) {
		/* the nearest multiples: below and above, or the two smallest */
		uint32_t lo = (h < w ? h : w) / m * m;
		if (lo == 0)
			lo = (uint32_t)m;
		return BAD("%s has %" PRIu32 "x%" PRIu32 " tiles (H x W), but arch '%s' halves "
			   "them %d times and needs height and width divisible by %d: give tiles "
			   "of %" PRIu32 " or %" PRIu32 " pixels, or a smaller depth",
			   ds->path, h, w, arch, __builtin_ctz((unsigned)m), m, lo,
			   lo + (uint32_t)m);
	}
	return 0;
}

int nn_segment_check_inputs(const struct nn_segment_config *cfg, const struct dataset *train,
			    const struct dataset *val, struct error *err)
{
	const char *prog = "cairn-train-unet";
	int rc;
	if (cfg->fit.epochs < 1 || cfg->fit.batch < 1)
		return BAD("epochs %d and batch %d must be positive", cfg->fit.epochs,
			   cfg->fit.batch);
	if ((rc = check_mask_shard(train, "train", prog, err)) < 0)
		return rc;
	if (val && (rc = check_mask_shard(val, "validation", prog, err)) < 0)
		return rc;
	const struct dataset_shape *a = &train->shape;
	if (val) {
		const struct dataset_shape *b = &val->shape;
		if (a->channels != b->channels || a->height != b->height || a->width != b->width)
			return BAD("train shard %s has %" PRIu32 "x%" PRIu32 "x%" PRIu32
				   " tiles, validation shard %s has %" PRIu32 "x%" PRIu32
				   "x%" PRIu32 " (C x H x W): they must match",
				   train->path, a->channels, a->height, a->width, val->path,
				   b->channels, b->height, b->width);
		if (a->num_classes != b->num_classes)
			return BAD("train shard %s has %" PRIu32
				   " classes, validation shard %s has %" PRIu32 ": they must match",
				   train->path, a->num_classes, val->path, b->num_classes);
	}
	if ((uint64_t)cfg->fit.batch > train->count)
		return BAD("--batch %d is larger than the %" PRIu64
			   " records of train shard %s: give --batch %" PRIu64 " or less",
			   cfg->fit.batch, train->count, train->path, train->count);
	if (cfg->weighting == NN_WEIGHTS_GIVEN && cfg->nweights != (int)a->num_classes)
		return BAD("class weights: %d given, but %s has %" PRIu32
			   " classes: give one per class",
			   cfg->nweights, train->path, a->num_classes);
	if ((rc = check_labelled(train, "train", "learn", err)) < 0 ||
	    (val && (rc = check_labelled(val, "validation", "score", err)) < 0))
		return rc;
	return check_arch_size(cfg->fit.arch, train, err);
}

int nn_segment_check_net(const struct nn_net *net, const char *what, const struct dataset *ds,
			 struct error *err)
{
	int rc = check_mask_shard(ds, "input", "cairn-predict", err);
	if (rc < 0)
		return rc;
	const struct nn_node *in = &net->nodes[0], *out = &net->nodes[net->nnodes - 1];
	const struct dataset_shape *s = &ds->shape;
	if ((uint32_t)in->c != s->channels || (uint32_t)in->h != s->height ||
	    (uint32_t)in->w != s->width)
		return BAD("%s takes %dx%dx%d tiles, shard %s has %" PRIu32 "x%" PRIu32 "x%" PRIu32
			   " (C x H x W): predict with a model trained on tiles like these",
			   what, in->c, in->h, in->w, ds->path, s->channels, s->height, s->width);
	if (out->h != in->h || out->w != in->w)
		return BAD(
		    "%s ('%s') gives %dx%d outputs for %dx%d tiles, not one per pixel: it is "
		    "no segmentation model",
		    what, net->arch ? net->arch : "?", out->h, out->w, in->h, in->w);
	if ((uint32_t)out->c != s->num_classes)
		return BAD("%s predicts %d classes, shard %s has %" PRIu32
			   ": predict with a model trained on the same classes (tiles without "
			   "labels: cairn-tileset pack --classes %d)",
			   what, out->c, ds->path, s->num_classes, out->c);
	return 0;
}

/* ---- training --------------------------------------------------------- */

void nn_segment_result_release(struct nn_segment_result *r)
{
	mem_free(r->class_weights);
	mem_free(r->epoch_loss);
	mem_free(r->epoch_seconds);
	mem_free(r->epoch_pixel_accuracy);
	mem_free(r->epoch_mean_iou);
	mem_free(r->epoch_iou);
	if (r->val.confusion)
		nn_segment_metrics_release(&r->val);
	memset(r, 0, sizeof(*r));
}

static void loader_for(struct loader_config *lc, const struct nn_backend *be,
		       const struct dataset *ds, int batch)
{
	loader_config_default(lc);
	lc->batch = (uint32_t)batch;
	nn_train_loader_setup(lc, be, (int)ds->shape.channels);
}

/* Run net in eval mode over every record of ds in file order, batch by
 * batch, and hand each batch with its per-pixel argmax (pred: [n, H, W]) to
 * fn; fn returning < 0 stops (its error in err). Eval and predict share it. */
typedef int forward_fn(void *ctx, const struct loader_batch *b, const int32_t *pred,
		       struct error *err);

static int forward_all(struct nn_net *net, const struct dataset *ds, int batch, forward_fn *fn,
		       void *ctx, struct error *err)
{
	int k = (int)ds->shape.num_classes;
	size_t hw = (size_t)ds->shape.height * ds->shape.width;
	struct loader_config lc;
	loader_for(&lc, net->be, ds, batch);
	lc.shuffle = 0;
	if (nn_net_prepare_eval(net, batch, err) < 0)
		return -1;
	struct loader *l = loader_new(ds, &lc, err);
	if (!l)
		return -1;
	float *logits = mem_alloc(sizeof(float) * batch * k * hw);
	int32_t *pred = mem_alloc(sizeof(int32_t) * batch * hw);
	if (!logits || !pred) {
		loader_free(l);
		mem_free(logits), mem_free(pred);
		return error_set(err, "%s: out of memory for the net's outputs (batch %d)",
				 ds->path, batch);
	}
	int was_training = net->training, rc;
	nn_net_train(net, 0);
	struct loader_batch b;
	while ((rc = loader_next(l, &b, err)) == 1) {
		struct nn_tensor *in = nn_net_input(net);
		if ((rc = nn_tensor_upload(in, b.x, (size_t)b.n * in->c * in->h * in->w, err)) < 0)
			break;
		const struct nn_tensor *y = nn_net_forward(net, (int)b.n);
		if ((rc = nn_tensor_download(y, logits, (size_t)b.n * k * hw, err)) < 0)
			break;
		nn_segment_argmax((int)b.n, k, (int)hw, logits, pred);
		if ((rc = fn(ctx, &b, pred, err)) < 0)
			break;
	}
	nn_net_train(net, was_training);
	loader_free(l);
	mem_free(logits), mem_free(pred);
	return rc < 0 ? rc : 0;
}

struct eval_ctx {
	struct nn_segment_metrics *m;
	size_t hw;
};

static int add_to_metrics(void *ctx, const struct loader_batch *b, const int32_t *pred,
			  struct error *err)
{
	struct eval_ctx *e = ctx;
	(void)err;
	nn_segment_metrics_add(e->m, b->mask, pred, (size_t)b->n * e->hw);
	return 0;
}

int nn_eval_segmenter(struct nn_net *net, const struct dataset *ds, int batch,
		      struct nn_segment_metrics *m, struct error *err)
{
	if (ds->shape.label_kind != DATASET_LABEL_MASK)
		return BAD("%s is a class shard: a segmenter is scored on a mask shard", ds->path);
	if ((int)ds->shape.num_classes != m->classes)
		return BAD("%s has %" PRIu32 " classes, the metrics %d", ds->path,
			   ds->shape.num_classes, m->classes);
	nn_segment_metrics_clear(m);
	struct eval_ctx e = {m, (size_t)ds->shape.height * ds->shape.width};
	int rc = forward_all(net, ds, batch, add_to_metrics, &e, err);
	if (rc < 0)
		return rc;
	nn_segment_metrics_finish(m);
	return 0;
}

/* The segmenter's validation and report (nn_fit_trainer's eval, done and
 * figures). */
struct segmenter_loop {
	const struct nn_segment_config *cfg;
	struct nn_net *net;
	const struct dataset *val;
	struct nn_segment_result *res;
};

static int segmenter_eval(void *ctx, int epoch, struct error *err)
{
	struct segmenter_loop *c = ctx;
	struct nn_segment_result *res = c->res;
	int r = nn_eval_segmenter(c->net, c->val, c->cfg->fit.batch, &res->val, err);
	if (r < 0 || epoch < 0)
		return r;
	int k = res->classes;
	res->epoch_pixel_accuracy[epoch] = res->val.pixel_accuracy;
	res->epoch_mean_iou[epoch] = res->val.mean_iou;
	memcpy(res->epoch_iou + (size_t)epoch * k, res->val.iou, sizeof(double) * k);
	return 0;
}

static void segmenter_done(void *ctx, int epoch, double seconds)
{
	struct segmenter_loop *c = ctx;
	struct nn_segment_result *res = c->res;
	res->epoch_seconds[epoch] = seconds;
	if (c->cfg->on_epoch)
		c->cfg->on_epoch(c->cfg->fit.ctx, epoch, res->epoch_loss[epoch],
				 c->val ? &res->val : NULL, seconds);
}

/* The segmenter's figures in a state: per-epoch loss, seconds and, with a
 * validation shard, its scores. */
static void figures_put(void *ctx, json_t *f, int epochs)
{
	const struct nn_segment_result *res = ((const struct segmenter_loop *)ctx)->res;
	nn_figures_put_float(f, "loss", res->epoch_loss, (size_t)epochs);
	nn_figures_put(f, "seconds", res->epoch_seconds, (size_t)epochs);
	if (res->has_val) {
		nn_figures_put(f, "pixel_accuracy", res->epoch_pixel_accuracy, (size_t)epochs);
		nn_figures_put(f, "mean_iou", res->epoch_mean_iou, (size_t)epochs);
		nn_figures_put(f, "iou", res->epoch_iou, (size_t)epochs * res->classes);
	}
}

static int figures_get(void *ctx, const json_t *f, int epochs)
{
	struct nn_segment_result *res = ((struct segmenter_loop *)ctx)->res;
	if (nn_figures_get_float(f, "loss", res->epoch_loss, (size_t)epochs) < 0 ||
	    nn_figures_get(f, "seconds", res->epoch_seconds, (size_t)epochs) < 0)
		return -1;
	if (res->has_val &&
	    (nn_figures_get(f, "pixel_accuracy", res->epoch_pixel_accuracy, (size_t)epochs) < 0 ||
	     nn_figures_get(f, "mean_iou", res->epoch_mean_iou, (size_t)epochs) < 0 ||
	     nn_figures_get(f, "iou", res->epoch_iou, (size_t)epochs * res->classes) < 0))
		return -1;
	return 0;
}

static int result_alloc(struct nn_segment_result *res, int classes, int epochs, int val)
{
	res->classes = classes;
	res->epochs = epochs;
	res->has_val = val;
	res->class_weights = mem_calloc((size_t)classes, sizeof(float));
	res->epoch_loss = mem_calloc((size_t)epochs, sizeof(float));
	res->epoch_seconds = mem_calloc((size_t)epochs, sizeof(double));
	int ok = res->class_weights && res->epoch_loss && res->epoch_seconds;
	if (val) {
		res->epoch_pixel_accuracy = mem_calloc((size_t)epochs, sizeof(double));
		res->epoch_mean_iou = mem_calloc((size_t)epochs, sizeof(double));
		res->epoch_iou = mem_calloc((size_t)epochs * classes, sizeof(double));
		ok = ok && res->epoch_pixel_accuracy && res->epoch_mean_iou && res->epoch_iou;
	}
	return ok ? 0 : -1;
}

int nn_train_segmenter(const struct nn_segment_config *cfg, const struct dataset *train,
		       const struct dataset *val, struct nn_net *net, struct nn_segment_result *res,
		       struct error *err)
{
	const struct nn_fit *fit = &cfg->fit;
	const struct nn_backend *be = fit->be;
	const struct dataset_shape *s = &train->shape;
	memset(res, 0, sizeof(*res));
	memset(net, 0, sizeof(*net));
	int rc = nn_segment_check_inputs(cfg, train, val, err);
	if (rc < 0)
		return rc;
	int k = (int)s->num_classes;
	if (result_alloc(res, k, fit->epochs, val != NULL) < 0 ||
	    (val && nn_segment_metrics_init(&res->val, k, err) < 0)) {
		nn_segment_result_release(res);
		return error_set(err, "train: out of memory");
	}
	if ((rc = nn_segment_class_weights(cfg, train, res->class_weights, err)) < 0) {
		nn_segment_result_release(res);
		return rc;
	}
	if (nn_model_build(net, be, fit->arch, (int)s->channels, (int)s->height, (int)s->width, k,
			   fit->seed, err) < 0) {
		nn_segment_result_release(res);
		return DATASET_EBADINPUT; /* a bad spec: the sizes were checked */
	}
	const struct nn_node *out = &net->nodes[net->nnodes - 1];
	if (out->c != k || (uint32_t)out->h != s->height || (uint32_t)out->w != s->width) {
		error_set(err,
			  "arch '%s' gives %dx%dx%d outputs for %" PRIu32 "x%" PRIu32
			  " tiles; a segmenter needs %dx%" PRIu32 "x%" PRIu32,
			  net->arch, out->c, out->h, out->w, s->height, s->width, k, s->height,
			  s->width);
		nn_segment_result_release(res);
		return DATASET_EBADINPUT;
	}
	res->params = nn_net_param_count(net);
	res->flops_per_tile = 2 * nn_net_macs(net);
	float *class_w = cfg->weighting != NN_WEIGHTS_NONE ? be->alloc(sizeof(float) * k) : NULL;
	/* the augmentation and the class weights as used: a resumed start must
	 * have the same (nn/trainstate.h) */
	json_t *what = json_pack("{s:i}", "augment", cfg->augment);
	rc = -1;
	if ((cfg->weighting != NN_WEIGHTS_NONE && !class_w) || !what) {
		nn_alloc_failed(be, err, "train: out of memory for %d class weights", k);
		goto out;
	}
	nn_figures_put_float(what, "class_weights", res->class_weights, (size_t)k);
	if (class_w)
		be->upload(class_w, res->class_weights, sizeof(float) * k);
	struct segmenter_loop sl = {cfg, net, val, res};
	struct nn_fit_trainer t = {
	    .name = "segmenter",
	    .samples_name = "tiles",
	    .test = val,
	    .what = what,
	    /* the 8 symmetries of a square tile; flips only for other shapes */
	    .dihedral = cfg->augment && s->height == s->width,
	    .flip = cfg->augment && s->height != s->width,
	    .class_w = class_w,
	    .epoch_loss = res->epoch_loss,
	    .eval = segmenter_eval,
	    .done = segmenter_done,
	    .put = figures_put,
	    .get = figures_get,
	    .ctx = &sl};
	if ((rc = nn_fit_run(fit, &t, train, net, &res->fit, err)) < 0)
		goto out;
out:
	json_decref(what);
	if (class_w)
		be->free(class_w);
	return rc;
}

/* ---- prediction ------------------------------------------------------- */

struct predict_ctx {
	const struct dataset *in;
	struct dataset_writer *w;
	uint8_t *mask; /* [H * W] */
	nn_train_batch_fn *on_batch;
	void *ctx;
	uint64_t batches, done;
};

static int write_masks(void *ctx, const struct loader_batch *b, const int32_t *pred,
		       struct error *err)
{
	struct predict_ctx *p = ctx;
	size_t hw = (size_t)p->in->shape.height * p->in->shape.width;
	for (uint32_t i = 0; i < b->n; i++) {
		uint64_t rec = b->records[i];
		for (size_t j = 0; j < hw; j++)
			p->mask[j] = (uint8_t)pred[(size_t)i * hw + j];
		struct dataset_key key = dataset_key(p->in, rec);
		int rc =
		    dataset_writer_add_mask(p->w, dataset_image(p->in, rec), p->mask, &key, err);
		if (rc < 0)
			return rc;
	}
	if (p->on_batch)
		p->on_batch(p->ctx, 0, ++p->done, p->batches, 0);
	return 0;
}

int nn_predict_segmenter(struct nn_net *net, const struct dataset *in, const char *out_path,
			 int batch, int pixels, nn_train_batch_fn *on_batch, void *ctx,
			 struct error *err)
{
	int rc = nn_segment_check_net(net, "the net", in, err);
	if (rc < 0)
		return rc;
	if (batch < 1)
		return BAD("batch %d: expected 1 or more", batch);
	/* the net's buffers are sized for the batch: no larger than the input */
	if ((uint64_t)batch > in->count && in->count > 0)
		batch = (int)in->count;
	struct dataset_writer w;
	struct dataset_shape shape = in->shape;
	if (!pixels)
		shape.channels = 0;
	struct predict_ctx p = {
	    in,	      &w,  mem_alloc((size_t)in->shape.height * in->shape.width),
	    on_batch, ctx, (in->count + (uint64_t)batch - 1) / (uint64_t)batch,
	    0};
	if (!p.mask)
		return error_set(err, "%s: out of memory for a mask", in->path);
	if ((rc = dataset_writer_open(&w, out_path, &shape, err)) < 0) {
		mem_free(p.mask);
		return rc;
	}
	rc = in->count ? forward_all(net, in, batch, write_masks, &p, err) : 0;
	mem_free(p.mask);
	if (rc < 0) {
		dataset_writer_abort(&w);
		return rc;
	}
	return dataset_writer_finish(&w, err);
}
