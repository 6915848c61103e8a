/* refine: noisy map labels made more complete with a CycleGAN (see refine.h). */
#include "nn/refine.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "core/rng.h"
#include "nn/model.h"
#include "nn/trainstate.h"

void nn_refine_defaults(struct nn_refine_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	nn_cyclegan_defaults(&cfg->gan);
	cfg->gan.gen = NN_REFINE_GEN, cfg->gan.disc = NN_REFINE_DISC;
	cfg->gan.identity = 0;
	cfg->crop = 64;
	cfg->steps = 2000;
	cfg->state_every = 600;
	cfg->feature_weight = 5;
	cfg->paired = 3;
	cfg->seed = 1;
	cfg->every = 100;
}

int nn_refine_check(const struct dataset *ds, int training, struct error *err)
{
	const struct dataset_shape *s = &ds->shape;
	if (s->label_kind != DATASET_LABEL_MASK)
		return error_set(err,
				 "%s: a shard of class labels: give a mask shard of tiles "
				 "(cairn-tileset pack --imagery DIR --labels DIR)",
				 ds->path),
		       DATASET_EBADINPUT;
	if (s->channels == 0)
		return error_set(err,
				 "%s: masks without imagery (0 channels): give the shard "
				 "cairn-tileset pack wrote",
				 ds->path),
		       DATASET_EBADINPUT;
	if (s->num_classes < 2 || s->num_classes > NN_REFINE_MAX_CLASSES)
		return error_set(err, "%s: %u classes: refinement takes 2..%d", ds->path,
				 s->num_classes, NN_REFINE_MAX_CLASSES),
		       DATASET_EBADINPUT;
	if (training && ds->count == 0)
		return error_set(err, "%s: no tiles to train on", ds->path), DATASET_EBADINPUT;
	return 0;
}

void nn_refine_encode_image(const uint8_t *pixels, size_t n, float *x)
{
	for (size_t i = 0; i < n; i++)
		x[i] = pixels[i] / 127.5f - 1;
}

void nn_refine_encode_mask(const uint8_t *mask, size_t hw, int classes, float *x)
{
	for (int k = 0; k < classes; k++)
		for (size_t i = 0; i < hw; i++)
			x[(size_t)k * hw + i] = mask[i] == k ? 1 : -1;
}

/* One batch on the host: imagery crops of random tiles into a, map crops of
 * other random tiles into b (and their cycle weights into wb). */
struct batch {
	float *a, *b, *wb, *pb, *pw; /* pb, pw: a's own maps and their weights */
	uint8_t *crop;		     /* channels x crop x crop bytes */
};

static void crop_of(const uint8_t *src, int planes, int h, int w, int y0, int x0, int crop,
		    uint8_t *dst)
{
	for (int p = 0; p < planes; p++)
		for (int y = 0; y < crop; y++)
			memcpy(dst + ((size_t)p * crop + y) * crop,
			       src + ((size_t)p * h + y0 + y) * w + x0, (size_t)crop);
}

/* The map-side loss weights of a mask (all planes alike): fw on a class
 * other than 0, 1 on background, 0 where no label is. */
static void feature_weights(const uint8_t *mask, size_t hw, int classes, float fw, float *w)
{
	for (size_t p = 0; p < hw; p++) {
		float wt = mask[p] == DATASET_MASK_IGNORE ? 0 : mask[p] ? fw : 1;
		for (int k = 0; k < classes; k++)
			w[(size_t)k * hw + p] = wt;
	}
}

static void fill_batch(const struct nn_refine_config *cfg, const struct dataset *ds,
		       struct batch *bt, uint64_t *rng)
{
	const struct dataset_shape *s = &ds->shape;
	int crop = cfg->crop, h = (int)s->height, w = (int)s->width, classes = (int)s->num_classes;
	size_t hw = (size_t)crop * crop, a_img = s->channels * hw, b_img = classes * hw;
	for (int n = 0; n < cfg->gan.batch; n++) {
		uint64_t i = rng_next(rng) % ds->count, j = rng_next(rng) % ds->count;
		int y = (int)rng_below(rng, (uint32_t)(h - crop + 1)),
		    x = (int)rng_below(rng, (uint32_t)(w - crop + 1));
		crop_of(dataset_image(ds, i), (int)s->channels, h, w, y, x, crop, bt->crop);
		nn_refine_encode_image(bt->crop, a_img, bt->a + n * a_img);
		if (bt->pb) {
			crop_of(dataset_mask(ds, i), 1, h, w, y, x, crop, bt->crop);
			nn_refine_encode_mask(bt->crop, hw, classes, bt->pb + n * b_img);
			feature_weights(bt->crop, hw, classes, cfg->feature_weight,
					bt->pw + n * b_img);
		}
		y = (int)rng_below(rng, (uint32_t)(h - crop + 1)),
		x = (int)rng_below(rng, (uint32_t)(w - crop + 1));
		crop_of(dataset_mask(ds, j), 1, h, w, y, x, crop, bt->crop);
		nn_refine_encode_mask(bt->crop, hw, classes, bt->b + n * b_img);
		feature_weights(bt->crop, hw, classes, cfg->feature_weight, bt->wb + n * b_img);
	}
}

/* What a state of this training holds (nn/trainstate.h): the settings that
 * change its numbers. */
static json_t *refine_what(const struct nn_refine_config *cfg, const struct dataset *ds)
{
	const struct nn_cyclegan_config *g = &cfg->gan;
	return json_pack("{s:s, s:s, s:I, s:I, s:i, s:i, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, "
			 "s:I, s:I}",
			 "trainer", "refine", "train", ds->path, "train_records",
			 (json_int_t)ds->count, "steps", (json_int_t)cfg->steps, "crop", cfg->crop,
			 "batch", g->batch, "gen", g->gen, "disc", g->disc, "lr", (double)g->lr,
			 "b1", (double)g->b1, "cycle", (double)g->cycle, "identity",
			 (double)g->identity, "feature_weight", (double)cfg->feature_weight,
			 "paired", (double)cfg->paired, "seed", (json_int_t)cfg->seed, "gan_seed",
			 (json_int_t)g->seed);
}

/* The four modules with their Adams, G_A, G_B, D_A, D_B: the uses that own
 * the weights and optimizer state (nn/cyclegan.c's module()). */
static void refine_parts(struct nn_cyclegan *c, struct nn_trainpart parts[4])
{
	for (int m = 0; m < 2; m++) {
		parts[m] = (struct nn_trainpart){&c->g[m][NN_CG_TRANSLATE], &c->og[m]};
		parts[2 + m] = (struct nn_trainpart){&c->d[m][NN_CG_REAL], &c->od[m]};
	}
}

/* The state after `step` steps: the crop generator, the loss sums since the
 * last report, the caller's log. */
static int refine_save(const struct nn_refine_config *cfg, const json_t *what,
		       struct nn_cyclegan *c, long step, uint64_t rng, const double *sum,
		       long since, double seconds, struct error *err)
{
	struct nn_trainpart parts[4];
	refine_parts(c, parts);
	char hex[17];
	snprintf(hex, sizeof(hex), "%016" PRIx64, rng);
	json_t *f = json_pack("{s:s, s:I}", "rng", hex, "since", (json_int_t)since);
	if (f) {
		nn_figures_put(f, "loss_sums", sum, NN_CG_LOSSES);
		if (cfg->log_save)
			json_object_set_new(f, "log", cfg->log_save(cfg->ctx));
	}
	struct nn_trainstate st = {.batches = (uint64_t)step, .seconds = seconds, .figures = f};
	int rc = f ? nn_trainstate_save(cfg->state_dir, what, parts, 4, &st, err)
		   : error_set(err, "%s: out of memory", cfg->state_dir);
	json_decref(f);
	return rc;
}

static int refine_load(const struct nn_refine_config *cfg, const json_t *what,
		       struct nn_cyclegan *c, long *step, uint64_t *rng, double *sum, long *since,
		       double *seconds, struct error *err)
{
	struct nn_trainpart parts[4];
	refine_parts(c, parts);
	struct nn_trainstate st;
	int got = nn_trainstate_load(cfg->state_dir, what, parts, 4, &st, err);
	if (got <= 0)
		return got < 0 ? DATASET_EBADINPUT : 0;
	const char *hex = jsonio_str(st.figures, "rng", "");
	char *end;
	*rng = strtoull(hex, &end, 16);
	*step = (long)st.batches;
	*since = (long)jsonio_int(st.figures, "since", 0);
	*seconds = st.seconds;
	int rc = 1;
	if (!hex[0] || *end || *step > cfg->steps ||
	    nn_figures_get(st.figures, "loss_sums", sum, NN_CG_LOSSES) < 0 ||
	    (cfg->log_load && cfg->log_load(cfg->ctx, json_object_get(st.figures, "log")) < 0)) {
		error_set(err,
			  "%s/" NN_TRAINSTATE_FILE
			  ": its step, generator or log is missing: remove "
			  "it to start over",
			  cfg->state_dir);
		rc = DATASET_EBADINPUT;
	}
	nn_trainstate_release(&st);
	return rc;
}

int nn_refine_train(const struct nn_refine_config *cfg, const struct dataset *ds,
		    struct nn_cyclegan *c, long *resumed_from, struct error *err)
{
	if (resumed_from)
		*resumed_from = 0;
	int rc = nn_refine_check(ds, 1, err);
	if (rc < 0)
		return rc;
	const struct dataset_shape *s = &ds->shape;
	if (cfg->crop < 1 || (uint32_t)cfg->crop > s->height || (uint32_t)cfg->crop > s->width)
		return error_set(err, "%s: crops of %d px do not fit its %ux%u tiles", ds->path,
				 cfg->crop, s->height, s->width),
		       DATASET_EBADINPUT;
	struct nn_cyclegan_config g = cfg->gan;
	g.channels[0] = (int)s->channels, g.channels[1] = (int)s->num_classes;
	g.height = g.width = cfg->crop;
	memset(c, 0, sizeof(*c));
	if (nn_cyclegan_init(c, &g, err) < 0 || nn_cyclegan_want_cycle_weights(c, 1, err) < 0 ||
	    (cfg->paired > 0 && nn_cyclegan_want_pairs(c, cfg->paired, err) < 0))
		return -1;
	const struct nn_backend *be = g.be;
	size_t nb = c->img[1] * sizeof(float);
	struct batch bt = {mem_alloc(c->img[0] * sizeof(float)),
			   mem_alloc(nb),
			   mem_alloc(nb),
			   cfg->paired > 0 ? mem_alloc(nb) : NULL,
			   cfg->paired > 0 ? mem_alloc(nb) : NULL,
			   mem_alloc((size_t)s->channels * cfg->crop * cfg->crop)};
	void *graph = NULL;
	uint64_t rng = cfg->seed;
	double sum[NN_CG_LOSSES] = {0}, t0 = clock_now(), before = 0, last = t0;
	long since = 0, first = 1;
	json_t *what = NULL;
	rc = 0;
	if (!bt.a || !bt.b || !bt.wb || !bt.crop || (cfg->paired > 0 && (!bt.pb || !bt.pw))) {
		rc = error_set(err, "refine: out of memory for a batch of %d crops", g.batch);
		goto out;
	}
	if (cfg->state_dir) {
		long done = 0;
		if (!(what = refine_what(cfg, ds))) {
			rc = error_set(err, "%s: out of memory", cfg->state_dir);
			goto out;
		}
		rc = refine_load(cfg, what, c, &done, &rng, sum, &since, &before, err);
		if (rc < 0)
			goto out;
		rc = 0;
		first = done + 1;
		t0 -= before;
		if (resumed_from)
			*resumed_from = done;
	}
	for (long step = first; step <= cfg->steps; step++) {
		fill_batch(cfg, ds, &bt, &rng);
		be->upload(c->real[0], bt.a, c->img[0] * sizeof(float));
		be->upload(c->real[1], bt.b, nb);
		be->upload(c->cycle_w[1], bt.wb, nb);
		if (bt.pb)
			be->upload(c->pair_b, bt.pb, nb), be->upload(c->pair_w, bt.pw, nb);
		nn_backend_step(be, &graph, nn_cyclegan_step, c);
		be->sync();
		for (int k = 0; k < NN_CG_LOSSES; k++) {
			if (!isfinite(c->loss[k])) {
				rc =
				    error_set(err,
					      "training diverged: loss %d is %g at step %ld (try a "
					      "smaller --lr)",
					      k, (double)c->loss[k], step);
				goto out;
			}
			sum[k] += c->loss[k];
		}
		since++;
		if (cfg->on_steps &&
		    ((cfg->every > 0 && step % cfg->every == 0) || step == cfg->steps)) {
			float mean[NN_CG_LOSSES];
			for (int k = 0; k < NN_CG_LOSSES; k++)
				mean[k] = (float)(sum[k] / since), sum[k] = 0;
			since = 0;
			cfg->on_steps(cfg->ctx, step, cfg->steps, mean, clock_now() - t0);
		}
		if (cfg->state_dir && step < cfg->steps && cfg->state_every > 0 &&
		    clock_now() - last >= cfg->state_every) {
			if ((rc = refine_save(cfg, what, c, step, rng, sum, since, clock_now() - t0,
					      err)) < 0)
				goto out;
			last = clock_now();
		}
	}
out:
	json_decref(what);
	nn_backend_step_release(be, &graph);
	mem_free(bt.a), mem_free(bt.b), mem_free(bt.wb), mem_free(bt.pb), mem_free(bt.pw);
	mem_free(bt.crop);
	return rc;
}

/* The class drawn at pixel p of a [classes, hw] output: the highest plane
 * above threshold (ties: the lower class), else -1. */
static int drawn(const float *y, size_t hw, int classes, size_t p, float threshold)
{
	int best = -1;
	float v = threshold;
	for (int k = 0; k < classes; k++)
		if (y[(size_t)k * hw + p] > v)
			v = y[(size_t)k * hw + p], best = k;
	return best;
}

void nn_refine_fuse(const float *y, const uint8_t *map, size_t hw, int classes,
		    enum nn_refine_mode mode, float threshold, uint8_t *out,
		    struct nn_refine_stats *stats)
{
	for (size_t p = 0; p < hw; p++) {
		int d = drawn(y, hw, classes, p, threshold), m = map[p];
		int r = mode == NN_REFINE_REPLACE ? (d < 0 ? 0 : d) : m == 0 && d > 0 ? d : m;
		out[p] = (uint8_t)r;
		if (m != r && m < classes)
			stats->changed[m][r]++;
	}
	stats->pixels += hw;
}

int nn_refine_apply(struct nn_net *gen, const struct dataset *in, const char *out_path,
		    enum nn_refine_mode mode, float threshold, int batch,
		    struct nn_refine_stats *stats, nn_train_batch_fn *on_batch, void *ctx,
		    struct error *err)
{
	int rc = nn_refine_check(in, 0, err);
	if (rc < 0)
		return rc;
	const struct dataset_shape *s = &in->shape;
	const struct nn_node *x0 = &gen->nodes[0], *yn = &gen->nodes[gen->nnodes - 1];
	int classes = (int)s->num_classes;
	if ((uint32_t)x0->c != s->channels || (uint32_t)x0->h != s->height ||
	    (uint32_t)x0->w != s->width || yn->c != classes || yn->h != x0->h || yn->w != x0->w)
		return error_set(err,
				 "%s: %ux%ux%u tiles of %d classes, the generator maps %dx%dx%d to "
				 "%dx%dx%d: give the generator trained on such tiles",
				 in->path, s->channels, s->height, s->width, classes, x0->c, x0->h,
				 x0->w, yn->c, yn->h, yn->w),
		       DATASET_EBADINPUT;
	if (batch < 1)
		batch = 1;
	if ((rc = nn_net_prepare_eval(gen, batch, err)) < 0)
		return rc;
	nn_net_train(gen, 0);
	size_t hw = (size_t)s->height * s->width, img = s->channels * hw, out = classes * hw;
	float *x = mem_alloc((size_t)batch * img * sizeof(float)),
	      *y = mem_alloc((size_t)batch * out * sizeof(float));
	uint8_t *mask = mem_alloc(hw);
	struct dataset_writer w;
	memset(&w, 0, sizeof(w));
	struct nn_refine_stats local;
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	stats->classes = classes;
	if (!x || !y || !mask) {
		rc = error_set(err, "refine: out of memory for a batch of %d tiles", batch);
		goto out;
	}
	if ((rc = dataset_writer_open(&w, out_path, s, err)) < 0)
		goto out;
	uint64_t batches = (in->count + batch - 1) / batch;
	for (uint64_t b0 = 0, nb = 0; b0 < in->count; b0 += batch, nb++) {
		int n = (int)(in->count - b0 < (uint64_t)batch ? in->count - b0 : (uint64_t)batch);
		for (int i = 0; i < n; i++)
			nn_refine_encode_image(dataset_image(in, b0 + i), img, x + i * img);
		gen->be->upload(nn_net_input(gen)->data, x, n * img * sizeof(float));
		const struct nn_tensor *t = nn_net_forward(gen, n);
		gen->be->download(y, t->data, n * out * sizeof(float));
		for (int i = 0; i < n; i++) {
			nn_refine_fuse(y + i * out, dataset_mask(in, b0 + i), hw, classes, mode,
				       threshold, mask, stats);
			struct dataset_key key = dataset_key(in, b0 + i);
			if ((rc = dataset_writer_add_mask(&w, dataset_image(in, b0 + i), mask, &key,
							  err)) < 0)
				goto out;
			stats->tiles++;
		}
		if (on_batch)
			on_batch(ctx, 0, nb + 1, batches, 0);
	}
	rc = dataset_writer_finish(&w, err);
out:
	if (rc < 0)
		dataset_writer_abort(&w);
	mem_free(x), mem_free(y), mem_free(mask);
	return rc;
}
