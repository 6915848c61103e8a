/* Unit tests for nn/segment: metrics against hand-computed confusion
 * matrices and IoUs, per-pixel argmax, class weights (given, median-frequency
 * balancing, their effect on the loss), input checks, a tiny U-Net that
 * learns a synthetic segmentation to high IoU, and prediction that keeps the
 * keys, pixels and order of its input.
 *
 * Also a helper for tests/integration/train_unet.sh:
 *   test_segment --write-shards DIR N SIZE
 * writes DIR/train.ds (N synthetic tiles of SIZE x SIZE, 3 classes),
 * DIR/val.ds (N/4), DIR/unlabeled.ds (val's tiles, every mask value 255),
 * DIR/class.ds (a class shard), DIR/odd.ds (tiles of SIZE + 4),
 * DIR/empty.ds (0 records) and DIR/bad.ds (train with mask value 7 in
 * record 1 at pixel (2, 3)). */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/clock.h"
#include "core/fs.h"
#include "core/mem.h"
#include "nn/ckpt.h"
#include "nn/dataset.h"
#include "nn/model.h"
#include "nn/segment.h"
#include "nn/train.h"

static char tmpdir[] = "/tmp/cairn-segment.XXXXXX";

/* splitmix64, for the synthetic scenes */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
static int below(uint64_t *s, int n)
{
	return (int)(rnd(s) % (uint64_t)n);
}

/* A synthetic aerial tile, seeded by (seed, i): green noisy background
 * (class 0), grey roads across the tile (class 1), red-brown buildings
 * (class 2); the class is in the colour, under noise. One tile in three has
 * a rectangle without labels (255). */
static void scene(uint64_t seed, uint64_t i, int S, uint8_t *px, uint8_t *mask)
{
	uint64_t s = seed * 1000003u + i;
	size_t plane = (size_t)S * S;
	memset(mask, 0, plane);
	/* sizes grow with the tile: roads 2..4 pixels wide on 32x32 tiles,
	 * 8..15 on 256x256 (zoom 17: about 1.2 m a pixel) */
	int unit = S / 32 > 1 ? S / 32 : 1, roads = 1 + below(&s, 2);
	for (int r = 0; r < roads; r++) {
		int horizontal = below(&s, 2), at = below(&s, S),
		    wd = 2 * unit + below(&s, 2 * unit > 3 ? 2 * unit : 3);
		for (int a = at; a < at + wd && a < S; a++)
			for (int b = 0; b < S; b++)
				mask[horizontal ? a * S + b : b * S + a] = 1;
	}
	int houses = 1 + below(&s, 3) + below(&s, unit);
	for (int h = 0; h < houses; h++) {
		int hh = 3 + below(&s, S / 4), ww = 3 + below(&s, S / 4);
		int y0 = below(&s, S - hh), x0 = below(&s, S - ww);
		for (int y = y0; y < y0 + hh; y++)
			for (int x = x0; x < x0 + ww; x++)
				mask[y * S + x] = 2;
	}
	static const int colour[3][3] = {{60, 110, 50}, {140, 140, 140}, {170, 80, 70}};
	for (size_t p = 0; p < plane; p++)
		for (int c = 0; c < 3; c++)
			px[c * plane + p] = (uint8_t)(colour[mask[p]][c] + below(&s, 40));
	if (below(&s, 3) == 0) {
		int y0 = below(&s, S / 2), x0 = below(&s, S / 2);
		for (int y = y0; y < y0 + S / 4; y++)
			for (int x = x0; x < x0 + S / 4; x++)
				mask[y * S + x] = DATASET_MASK_IGNORE;
	}
}

/* n tiles of scene(seed, .), keys 17/(1000 + i)/(2000 + i); unlabeled: masks all 255. */
static int write_scenes(const char *path, uint64_t seed, int n, int S, int unlabeled)
{
	struct dataset_shape shape = {3, (uint32_t)S, (uint32_t)S, 3, DATASET_LABEL_MASK};
	struct dataset_writer w;
	struct error err;
	if (dataset_writer_open(&w, path, &shape, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	size_t plane = (size_t)S * S;
	uint8_t *px = malloc(3 * plane), *mask = malloc(plane);
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		scene(seed, (uint64_t)i, S, px, mask);
		if (unlabeled)
			memset(mask, DATASET_MASK_IGNORE, plane);
		struct dataset_key key = {17, 1000u + (uint32_t)i, 2000u + (uint32_t)i};
		rc = dataset_writer_add_mask(&w, px, mask, &key, &err);
	}
	free(px), free(mask);
	if (rc == 0)
		rc = dataset_writer_finish(&w, &err);
	else
		dataset_writer_abort(&w);
	if (rc < 0)
		fprintf(stderr, "%s\n", err.msg);
	return rc;
}

static void tmp_path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", tmpdir, name);
}

/* ---- metrics ------------------------------------------------------------ */

/* Eight pixels by hand, K = 3 (one ignored):
 *   truth 0 0 1 1 2 2 -1 1
 *   pred  0 1 1 1 2 0  2 2
 * confusion (truth, pred): (0,0) 1, (0,1) 1, (1,1) 2, (1,2) 1, (2,0) 1, (2,2) 1
 * accuracy 4/7; IoU 0 = 1/(1+1+1), IoU 1 = 2/(2+1+1), IoU 2 = 1/(1+1+1);
 * mean IoU over classes 1, 2 = (1/2 + 1/3) / 2 = 5/12. */
static void test_metrics_hand_checked(void)
{
	struct nn_segment_metrics m;
	struct error err;
	CHECK_INT(nn_segment_metrics_init(&m, 3, &err), 0);
	int32_t truth[8] = {0, 0, 1, 1, 2, 2, -1, 1}, pred[8] = {0, 1, 1, 1, 2, 0, 2, 2};
	nn_segment_metrics_add(&m, truth, pred, 8);
	nn_segment_metrics_finish(&m);
	CHECK_INT(m.pixels, 7);
	uint64_t want[9] = {1, 1, 0, 0, 2, 1, 1, 0, 1};
	for (int i = 0; i < 9; i++)
		CHECK_INT(m.confusion[i], want[i]);
	CHECK_NEAR(m.pixel_accuracy, 4.0 / 7, 1e-12);
	CHECK_NEAR(m.iou[0], 1.0 / 3, 1e-12);
	CHECK_NEAR(m.iou[1], 0.5, 1e-12);
	CHECK_NEAR(m.iou[2], 1.0 / 3, 1e-12);
	CHECK_NEAR(m.mean_iou, 5.0 / 12, 1e-12);
	/* adding more pixels accumulates; clear starts over */
	nn_segment_metrics_add(&m, truth, truth, 8);
	nn_segment_metrics_finish(&m);
	CHECK_INT(m.pixels, 14);
	CHECK_NEAR(m.pixel_accuracy, 11.0 / 14, 1e-12);
	nn_segment_metrics_clear(&m);
	CHECK_INT(m.pixels, 0);
	/* a class in neither truth nor prediction has no IoU, and is not in
	 * the mean: classes 0 and 1 only, all right */
	int32_t t2[4] = {0, 1, 1, 0};
	nn_segment_metrics_add(&m, t2, t2, 4);
	nn_segment_metrics_finish(&m);
	CHECK(isnan(m.iou[2]));
	CHECK_NEAR(m.iou[0], 1, 0);
	CHECK_NEAR(m.mean_iou, 1, 0);
	/* only background: no mean over the other classes */
	nn_segment_metrics_clear(&m);
	int32_t t3[2] = {0, 0};
	nn_segment_metrics_add(&m, t3, t3, 2);
	nn_segment_metrics_finish(&m);
	CHECK(isnan(m.mean_iou));
	/* no labelled pixel (a validation shard of unlabelled tiles): no
	 * accuracy either, not 0 */
	nn_segment_metrics_clear(&m);
	int32_t t4[2] = {-1, -1};
	nn_segment_metrics_add(&m, t4, t3, 2);
	nn_segment_metrics_finish(&m);
	CHECK_INT(m.pixels, 0);
	CHECK(isnan(m.pixel_accuracy));
	nn_segment_metrics_release(&m);
}

/* logits [2 samples, 3 classes, 2 pixels]: argmax per pixel, ties to the lower class. */
static void test_argmax_per_pixel(void)
{
	float l[12] = {/* sample 0: class 0, 1, 2 over pixels p0 p1 */
		       1, 5, 2, 1, 0, 9,
		       /* sample 1 */
		       3, 3, 3, 2, 1, 3};
	int32_t out[4];
	nn_segment_argmax(2, 3, 2, l, out);
	CHECK_INT(out[0], 1); /* p0: 1 2 0 */
	CHECK_INT(out[1], 2); /* p1: 5 1 9 */
	CHECK_INT(out[2], 0); /* p0: 3 3 1: a tie goes to class 0 */
	CHECK_INT(out[3], 0); /* p1: 3 2 3 */
}

/* ---- class weights ---------------------------------------------------- */

/* Weighted per-pixel cross-entropy = sum w_y (-log p_y) / sum w_y, computed
 * here in double for 2 samples x 3 classes x 4 pixels, on both CPU backends. */
static void test_class_weights_change_the_loss(void)
{
	const int n = 2, c = 3, hw = 4;
	float logits[24];
	for (int i = 0; i < 24; i++)
		logits[i] = (float)((i * 7) % 5) * 0.5f - 1;
	int32_t labels[8] = {0, 1, 2, -1, 2, 2, 0, 1};
	float w[3] = {0.5f, 2.0f, 4.0f};
	const struct nn_backend *bes[2] = {nn_backend_cpu(), nn_backend_cpu_ref()};
	for (int b = 0; b < 2; b++) {
		double sum[2] = {0, 0}, wsum[2] = {0, 0};
		for (int i = 0; i < n; i++)
			for (int p = 0; p < hw; p++) {
				int y = labels[i * hw + p];
				if (y < 0)
					continue;
				double mx = -1e30, se = 0;
				for (int k = 0; k < c; k++)
					mx = fmax(mx, logits[(i * c + k) * hw + p]);
				for (int k = 0; k < c; k++)
					se += exp(logits[(i * c + k) * hw + p] - mx);
				double nll = mx + log(se) - logits[(i * c + y) * hw + p];
				sum[0] += nll, wsum[0] += 1;
				sum[1] += w[y] * nll, wsum[1] += w[y];
			}
		float d[24], plain, weighted;
		bes[b]->softmax_xent(n, c, hw, logits, labels, NULL, d, &plain);
		bes[b]->softmax_xent(n, c, hw, logits, labels, w, d, &weighted);
		CHECK_NEAR(plain, sum[0] / wsum[0], 1e-5);
		CHECK_NEAR(weighted, sum[1] / wsum[1], 1e-5);
		CHECK(fabs(plain - weighted) > 0.05); /* the weights matter here */
		/* the ignored pixel gets no gradient */
		for (int k = 0; k < c; k++)
			CHECK(d[k * hw + 3] == 0);
	}
}

/* Median-frequency balancing on a shard of known pixel counts: classes 0, 1,
 * 2 have 24, 12, 4 pixels (4 ignored), frequencies 0.6, 0.3, 0.1, median
 * 0.3, weights 0.5, 1, 3; class 3 has none: weight 1. */
static void test_auto_and_given_weights(void)
{
	char path[300];
	tmp_path(path, sizeof(path), "hist.ds");
	struct dataset_shape shape = {1, 4, 11, 4, DATASET_LABEL_MASK};
	struct dataset_writer w;
	struct error err;
	CHECK_INT(dataset_writer_open(&w, path, &shape, &err), 0);
	uint8_t px[44] = {0}, mask[44];
	for (int i = 0; i < 44; i++)
		mask[i] = i < 24 ? 0 : i < 36 ? 1 : i < 40 ? 2 : DATASET_MASK_IGNORE;
	CHECK_INT(dataset_writer_add_mask(&w, px, mask, NULL, &err), 0);
	CHECK_INT(dataset_writer_finish(&w, &err), 0);
	struct dataset ds;
	CHECK_INT(dataset_open(&ds, path, 0, &err), 0);
	struct nn_segment_config cfg;
	nn_segment_defaults(&cfg);
	float got[4];
	cfg.weighting = NN_WEIGHTS_AUTO;
	CHECK_INT(nn_segment_class_weights(&cfg, &ds, got, &err), 0);
	CHECK_NEAR(got[0], 0.5, 1e-6);
	CHECK_NEAR(got[1], 1.0, 1e-6);
	CHECK_NEAR(got[2], 3.0, 1e-6);
	CHECK_NEAR(got[3], 1.0, 1e-6);
	cfg.weighting = NN_WEIGHTS_NONE;
	CHECK_INT(nn_segment_class_weights(&cfg, &ds, got, &err), 0);
	CHECK(got[0] == 1 && got[3] == 1);
	float given[4] = {1, 2, 3, 4};
	cfg.weighting = NN_WEIGHTS_GIVEN;
	cfg.weights = given;
	cfg.nweights = 3;
	CHECK_INT(nn_segment_class_weights(&cfg, &ds, got, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "3 given, but") && strstr(err.msg, "has 4 classes"));
	cfg.nweights = 4;
	CHECK_INT(nn_segment_class_weights(&cfg, &ds, got, &err), 0);
	CHECK(got[2] == 3);
	float zero[4] = {0, 0, 0, 0};
	cfg.weights = zero;
	CHECK_INT(nn_segment_class_weights(&cfg, &ds, got, &err), DATASET_EBADINPUT);
	dataset_close(&ds);
	/* no labelled pixel: auto has nothing to count */
	char p2[300];
	tmp_path(p2, sizeof(p2), "unl.ds");
	CHECK_INT(write_scenes(p2, 1, 2, 16, 1), 0);
	CHECK_INT(dataset_open(&ds, p2, 0, &err), 0);
	cfg.weighting = NN_WEIGHTS_AUTO;
	float g3[3];
	CHECK_INT(nn_segment_class_weights(&cfg, &ds, g3, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "no labelled pixel") != NULL);
	dataset_close(&ds);
}

/* ---- input checks ------------------------------------------------------ */

static void test_bad_inputs(void)
{
	char tr[300], odd[300], cls[300], emp[300];
	tmp_path(tr, sizeof(tr), "chk-train.ds");
	tmp_path(odd, sizeof(odd), "chk-odd.ds");
	tmp_path(cls, sizeof(cls), "chk-class.ds");
	tmp_path(emp, sizeof(emp), "chk-empty.ds");
	CHECK_INT(write_scenes(tr, 1, 4, 16, 0), 0);
	CHECK_INT(write_scenes(odd, 1, 4, 20, 0), 0);
	CHECK_INT(write_scenes(emp, 1, 0, 16, 0), 0);
	struct dataset_shape cs = {3, 16, 16, 3, DATASET_LABEL_CLASS};
	struct dataset_writer w;
	struct error err;
	uint8_t px[3 * 256] = {0};
	CHECK_INT(dataset_writer_open(&w, cls, &cs, &err), 0);
	for (int i = 0; i < 4; i++)
		CHECK_INT(dataset_writer_add(&w, px, (uint32_t)i % 3, &err), 0);
	CHECK_INT(dataset_writer_finish(&w, &err), 0);
	struct dataset t, o, c, e;
	CHECK_INT(dataset_open(&t, tr, 0, &err), 0);
	CHECK_INT(dataset_open(&o, odd, 0, &err), 0);
	CHECK_INT(dataset_open(&c, cls, 0, &err), 0);
	CHECK_INT(dataset_open(&e, emp, 0, &err), 0);
	struct nn_segment_config cfg;
	nn_segment_defaults(&cfg);
	cfg.fit.batch = 2;
	CHECK_INT(nn_segment_check_inputs(&cfg, &t, &t, &err), 0);
	CHECK_INT(nn_segment_check_inputs(&cfg, &c, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "chk-class.ds is a class shard") &&
	      strstr(err.msg, "cairn-train-unet needs a mask shard"));
	CHECK_INT(nn_segment_check_inputs(&cfg, &t, &c, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "validation shard") != NULL);
	CHECK_INT(nn_segment_check_inputs(&cfg, &e, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "chk-empty.ds has 0 records") != NULL);
	/* 20 is no multiple of 8 = 2^3 */
	CHECK_INT(nn_segment_check_inputs(&cfg, &o, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "20x20 tiles") && strstr(err.msg, "divisible by 8") &&
	      strstr(err.msg, "16 or 24"));
	CHECK_INT(nn_segment_check_inputs(&cfg, &t, &o, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "must match") != NULL);
	cfg.fit.arch = "unet:depth=5,base=4"; /* 16 < 32: the two smallest sizes */
	CHECK_INT(nn_segment_check_inputs(&cfg, &t, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "divisible by 32: give tiles of 32 or 64 pixels") != NULL);
	cfg.fit.arch = "unet:depth=2,base=4"; /* 20 = 4 x 5: fine */
	CHECK_INT(nn_segment_check_inputs(&cfg, &o, NULL, &err), 0);
	cfg.fit.arch = "cnn:widths=8";
	CHECK_INT(nn_segment_check_inputs(&cfg, &t, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "one output per image") != NULL);
	cfg.fit.arch = "vgg";
	CHECK_INT(nn_segment_check_inputs(&cfg, &t, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "unknown family 'vgg'") != NULL);
	cfg.fit.arch = NN_SEGMENT_ARCH;
	cfg.fit.batch = 5;
	CHECK_INT(nn_segment_check_inputs(&cfg, &t, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "give --batch 4 or less") != NULL);
	/* and the classifier refuses mask shards */
	struct nn_train_config tc;
	nn_train_defaults(&tc);
	tc.fit.batch = 2;
	CHECK_INT(nn_train_check_inputs(&tc, &t, &c, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "train it with cairn-train-unet") != NULL);
	CHECK_INT(nn_train_check_inputs(&tc, &c, &t, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "chk-train.ds is a mask shard") != NULL);
	dataset_close(&t), dataset_close(&o), dataset_close(&c), dataset_close(&e);
}

/* ---- training and prediction ------------------------------------------ */

/* Masks of two mask shards of the same shape, scored as truth (a) and prediction (b). */
static void score_shards(const struct dataset *truth, const struct dataset *pred,
			 struct nn_segment_metrics *m)
{
	size_t plane = (size_t)truth->shape.height * truth->shape.width;
	int32_t *t = malloc(sizeof(int32_t) * plane), *p = malloc(sizeof(int32_t) * plane);
	for (uint64_t i = 0; i < truth->count; i++) {
		const uint8_t *a = dataset_mask(truth, i), *b = dataset_mask(pred, i);
		for (size_t j = 0; j < plane; j++) {
			t[j] = a[j] == DATASET_MASK_IGNORE ? -1 : a[j];
			p[j] = b[j];
		}
		nn_segment_metrics_add(m, t, p, plane);
	}
	nn_segment_metrics_finish(m);
	free(t), free(p);
}

/* A tiny U-Net learns the synthetic scenes (class by colour, under noise)
 * to a high IoU in a few seconds; the same seed gives the same numbers;
 * predictions keep the input's order, keys and pixels, score what the
 * evaluation scored, and do not depend on the input's masks or the batch. */
static void test_unet_learns_and_predicts(void)
{
	char tr[300], va[300], un[300], pr[300], pr2[300], pr3[300], ck[300];
	tmp_path(tr, sizeof(tr), "train.ds");
	tmp_path(va, sizeof(va), "val.ds");
	tmp_path(un, sizeof(un), "unlabeled.ds");
	tmp_path(pr, sizeof(pr), "pred.ds");
	tmp_path(pr2, sizeof(pr2), "pred2.ds");
	tmp_path(pr3, sizeof(pr3), "pred3.ds");
	tmp_path(ck, sizeof(ck), "model.ckpt");
	CHECK_INT(write_scenes(tr, 1, 48, 32, 0), 0);
	CHECK_INT(write_scenes(va, 2, 12, 32, 0), 0);
	CHECK_INT(write_scenes(un, 2, 12, 32, 1), 0);
	struct dataset train, val, unl;
	struct error err;
	CHECK_INT(dataset_open(&train, tr, 0, &err), 0);
	CHECK_INT(dataset_open(&val, va, 0, &err), 0);
	CHECK_INT(dataset_open(&unl, un, 0, &err), 0);
	struct nn_segment_config cfg;
	nn_segment_defaults(&cfg);
	cfg.fit.arch = "unet:depth=2,base=8";
	cfg.fit.epochs = 30;
	cfg.fit.batch = 8;
	cfg.weighting = NN_WEIGHTS_AUTO;
	struct nn_net net, net2;
	struct nn_segment_result res, res2;
	double t0 = clock_now();
	int rc = nn_train_segmenter(&cfg, &train, &val, &net, &res, &err);
	if (rc < 0)
		printf("# %s\n", err.msg);
	CHECK_INT(rc, 0);
	printf("# 30 epochs of 48 32x32 tiles: %.1f s, loss %.3f -> %.3f, val pixel accuracy "
	       "%.3f, IoU %.3f %.3f %.3f, mean %.3f\n",
	       clock_now() - t0, res.epoch_loss[0], res.epoch_loss[29], res.val.pixel_accuracy,
	       res.val.iou[0], res.val.iou[1], res.val.iou[2], res.val.mean_iou);
	CHECK(res.epoch_loss[29] < 0.5 * res.epoch_loss[0]);
	CHECK(res.val.pixel_accuracy > 0.95);
	CHECK(res.val.mean_iou > 0.85);
	CHECK(res.epoch_mean_iou[29] == res.val.mean_iou);
	CHECK(res.class_weights[0] < res.class_weights[2]); /* background is the most common */
	CHECK(res.fit.samples_per_second > 0);

	/* same seed, same numbers (one epoch is enough to tell) */
	cfg.fit.epochs = 1;
	struct nn_segment_result r1a, r1b;
	struct nn_net na, nb;
	CHECK_INT(nn_train_segmenter(&cfg, &train, &val, &na, &r1a, &err), 0);
	CHECK_INT(nn_train_segmenter(&cfg, &train, &val, &nb, &r1b, &err), 0);
	CHECK(r1a.epoch_loss[0] == r1b.epoch_loss[0]);
	CHECK(r1a.val.mean_iou == r1b.val.mean_iou);
	nn_segment_result_release(&r1a), nn_segment_result_release(&r1b);
	nn_net_release(&na), nn_net_release(&nb);

	/* through a checkpoint, as cairn-predict does */
	CHECK_INT(nn_ckpt_save(&net, ck, &err), 0);
	CHECK_INT(nn_ckpt_open(&net2, nn_backend_cpu(), ck, &err), 0);
	CHECK_INT(nn_segment_check_net(&net2, "model x", &val, &err), 0);
	CHECK_INT(nn_predict_segmenter(&net2, &val, pr, 5, 1, NULL, NULL, &err), 0);
	CHECK_INT(nn_predict_segmenter(&net2, &unl, pr2, 8, 0, NULL, NULL, &err), 0);
	CHECK_INT(nn_predict_segmenter(&net2, &val, pr3, 12, 0, NULL, NULL, &err), 0);
	struct dataset p, p2, p3;
	CHECK_INT(dataset_open(&p, pr, DATASET_VERIFY, &err), 0);
	CHECK_INT(dataset_open(&p2, pr2, DATASET_VERIFY, &err), 0);
	CHECK_INT(dataset_open(&p3, pr3, DATASET_VERIFY, &err), 0);
	CHECK_INT(p.count, val.count);
	CHECK(memcmp(&p.shape, &val.shape, sizeof(p.shape)) == 0);
	/* without pixels: masks only, the rest of the shape kept */
	CHECK_INT(p2.shape.channels, 0);
	CHECK_INT(p2.record_bytes, 32 * 32 + DATASET_KEY_BYTES);
	CHECK(p2.shape.height == val.shape.height && p2.shape.width == val.shape.width &&
	      p2.shape.num_classes == val.shape.num_classes &&
	      p2.shape.label_kind == DATASET_LABEL_MASK);
	/* ... which is nothing to train on or predict from */
	struct nn_segment_config pc;
	nn_segment_defaults(&pc);
	pc.fit.arch = "unet:depth=2,base=4";
	CHECK_INT(nn_segment_check_inputs(&pc, &p2, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "holds masks without imagery") != NULL);
	CHECK_INT(nn_segment_check_net(&net2, "model x", &p2, &err), DATASET_EBADINPUT);
	int keys_ok = 1, pixels_ok = 1, same_unl = 1, same_batch = 1, in_range = 1;
	size_t plane = 32 * 32;
	for (uint64_t i = 0; i < val.count; i++) {
		struct dataset_key a = dataset_key(&val, i), b = dataset_key(&p, i);
		keys_ok &= a.z == b.z && a.x == b.x && a.y == b.y && b.x == 1000 + i;
		pixels_ok &= !memcmp(dataset_image(&val, i), dataset_image(&p, i), val.image_bytes);
		same_unl &= !memcmp(dataset_mask(&p, i), dataset_mask(&p2, i), plane);
		same_batch &= !memcmp(dataset_mask(&p, i), dataset_mask(&p3, i), plane);
		for (size_t j = 0; j < plane; j++)
			in_range &= dataset_mask(&p, i)[j] < 3;
	}
	CHECK(keys_ok);
	CHECK(pixels_ok);
	CHECK(same_unl);
	CHECK(same_batch);
	CHECK(in_range);
	/* the prediction scores exactly what the evaluation of the same net scored */
	struct nn_segment_metrics m, me;
	CHECK_INT(nn_segment_metrics_init(&m, 3, &err), 0);
	CHECK_INT(nn_segment_metrics_init(&me, 3, &err), 0);
	score_shards(&val, &p, &m);
	CHECK_INT(nn_eval_segmenter(&net2, &val, 4, &me, &err), 0);
	CHECK(memcmp(m.confusion, me.confusion, sizeof(uint64_t) * 9) == 0);
	CHECK(m.mean_iou == res.val.mean_iou);
	nn_segment_metrics_release(&m), nn_segment_metrics_release(&me);

	/* a net for other classes or tiles is refused, naming both */
	CHECK_INT(nn_segment_check_net(&net2, "model x", &train, &err), 0);
	char cl[300];
	tmp_path(cl, sizeof(cl), "big.ds");
	CHECK_INT(write_scenes(cl, 3, 2, 64, 0), 0);
	struct dataset big;
	CHECK_INT(dataset_open(&big, cl, 0, &err), 0);
	CHECK_INT(nn_segment_check_net(&net2, "model x", &big, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "model x takes 3x32x32 tiles") &&
	      strstr(err.msg, "big.ds has 3x64x64"));
	char bad_out[300];
	tmp_path(bad_out, sizeof(bad_out), "never.ds");
	CHECK_INT(nn_predict_segmenter(&net2, &big, bad_out, 4, 0, NULL, NULL, &err),
		  DATASET_EBADINPUT);
	CHECK(!fs_exists(bad_out));
	dataset_close(&big);
	dataset_close(&p), dataset_close(&p2), dataset_close(&p3);
	nn_net_release(&net2);
	nn_segment_result_release(&res);
	nn_net_release(&net);

	/* a learning rate far too high diverges, and says so */
	cfg.fit.lr = 1e30f;
	cfg.fit.epochs = 1;
	rc = nn_train_segmenter(&cfg, &train, NULL, &net, &res2, &err);
	CHECK(rc < 0);
	CHECK(strstr(err.msg, "training diverged") != NULL);
	nn_segment_result_release(&res2);
	nn_net_release(&net);
	dataset_close(&train), dataset_close(&val), dataset_close(&unl);
}

/* ---- the helper for the integration test ------------------------------ */

static int write_test_shards(const char *dir, int n, int S)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/train.ds", dir);
	if (write_scenes(p, 1, n, S, 0) < 0)
		return 1;
	/* bad.ds: train with mask value 7 (3 classes) in record 1 at pixel (2, 3) */
	char b[4096];
	snprintf(b, sizeof(b), "%s/bad.ds", dir);
	if (write_scenes(b, 1, n, S, 0) < 0)
		return 1;
	size_t image = 3 * (size_t)S * S, rec = image + (size_t)S * S + DATASET_KEY_BYTES;
	int fd = open(b, O_WRONLY);
	uint8_t seven = 7;
	if (fd < 0 ||
	    pwrite(fd, &seven, 1, (off_t)(DATASET_HEADER_BYTES + rec + image + 2 * S + 3)) != 1 ||
	    close(fd) < 0) {
		perror(b);
		return 1;
	}
	snprintf(p, sizeof(p), "%s/val.ds", dir);
	if (write_scenes(p, 2, n / 4 ? n / 4 : 1, S, 0) < 0)
		return 1;
	snprintf(p, sizeof(p), "%s/unlabeled.ds", dir);
	if (write_scenes(p, 2, n / 4 ? n / 4 : 1, S, 1) < 0)
		return 1;
	snprintf(p, sizeof(p), "%s/odd.ds", dir);
	if (write_scenes(p, 3, 4, S + 4, 0) < 0)
		return 1;
	snprintf(p, sizeof(p), "%s/empty.ds", dir);
	if (write_scenes(p, 3, 0, S, 0) < 0)
		return 1;
	snprintf(p, sizeof(p), "%s/class.ds", dir);
	struct dataset_shape cs = {3, (uint32_t)S, (uint32_t)S, 3, DATASET_LABEL_CLASS};
	struct dataset_writer w;
	struct error err;
	uint8_t *px = calloc(1, image);
	int rc = px ? dataset_writer_open(&w, p, &cs, &err) : -1;
	for (int i = 0; i < 8 && rc == 0; i++)
		rc = dataset_writer_add(&w, px, (uint32_t)i % 3, &err);
	if (rc == 0)
		rc = dataset_writer_finish(&w, &err);
	free(px);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", p, err.msg);
		return 1;
	}
	return 0;
}

/* The child of test_resume_mid_epoch dies in this batch, as under kill -9:
 * the states of the batches before it are all that is left. */
static int die_epoch, die_batch;
static void die_at(void *ctx, int epoch, uint64_t batch, uint64_t batches, float loss)
{
	(void)ctx, (void)batches, (void)loss;
	if (epoch == die_epoch && (int)batch == die_batch)
		_exit(0);
}

/* The training of test_resume_mid_epoch; stop_epoch >= 0: a state after
 * every batch, and an exit in that batch of that epoch. */
static int resume_train(const char *dir, const char *state, int stop_epoch, int stop_batch,
			struct nn_net *net, struct nn_segment_result *res)
{
	char tr[300], va[300];
	snprintf(tr, sizeof(tr), "%s/rtrain.ds", dir);
	snprintf(va, sizeof(va), "%s/rval.ds", dir);
	struct dataset train, val;
	struct error err;
	if (dataset_open(&train, tr, 0, &err) < 0 || dataset_open(&val, va, 0, &err) < 0)
		return -1;
	struct nn_segment_config cfg;
	nn_segment_defaults(&cfg);
	cfg.fit.arch = "unet:depth=2,base=4";
	cfg.fit.epochs = 3;
	cfg.fit.batch = 8;
	cfg.fit.state_dir = state;
	cfg.fit.state_every = 1e-9; /* after every batch */
	if (stop_epoch >= 0) {
		cfg.fit.on_batch = die_at;
		die_epoch = stop_epoch, die_batch = stop_batch;
	}
	int rc = nn_train_segmenter(&cfg, &train, &val, net, res, &err);
	if (rc < 0)
		printf("# %s\n", err.msg);
	dataset_close(&train), dataset_close(&val);
	return rc;
}

/* Stopped in the middle of an epoch (a child process that exits at a known
 * batch, a state after every batch): the next start goes on after the last
 * batch done and ends with the weights, losses and validation of a training
 * never stopped, bit for bit. The child is this program run again
 * (--train-until): a fork would inherit a thread pool without its threads. */
static void test_resume_mid_epoch(void)
{
	char tr[300], va[300], st[300];
	tmp_path(tr, sizeof(tr), "rtrain.ds");
	tmp_path(va, sizeof(va), "rval.ds");
	tmp_path(st, sizeof(st), "state");
	CHECK_INT(write_scenes(tr, 3, 40, 32, 0), 0); /* 5 batches of 8 an epoch */
	CHECK_INT(write_scenes(va, 4, 8, 32, 0), 0);
	struct nn_net a, b;
	struct nn_segment_result ra, rb;
	CHECK_INT(resume_train(tmpdir, NULL, -1, 0, &a, &ra), 0);
	/* the 4th batch of the 2nd epoch: 3 of it done */
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "/proc/%d/exe --train-until %s %s 1 4", (int)getpid(), tmpdir, st);
	CHECK_INT(system(cmd), 0);
	CHECK_INT(resume_train(tmpdir, st, -1, 0, &b, &rb), 0);
	CHECK_INT(rb.fit.resumed_from, 1);
	CHECK_INT((int)rb.fit.resumed_batches, 3);
	CHECK_INT((int)a.flat.n, (int)b.flat.n);
	CHECK(!memcmp(a.flat.w, b.flat.w, a.flat.n * sizeof(float)));
	CHECK(!memcmp(ra.epoch_loss, rb.epoch_loss, 3 * sizeof(float)));
	CHECK(ra.val.mean_iou == rb.val.mean_iou);
	CHECK(!memcmp(ra.epoch_mean_iou, rb.epoch_mean_iou, 3 * sizeof(double)));
	nn_segment_result_release(&ra), nn_segment_result_release(&rb);
	nn_net_release(&a), nn_net_release(&b);
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "--write-shards"))
		return write_test_shards(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 6 && !strcmp(argv[1], "--train-until")) { /* test_resume_mid_epoch */
		struct nn_net net;
		struct nn_segment_result res;
		nn_cpu_set_threads(2);
		resume_train(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), &net, &res);
		return 1; /* die_at exits 0 first */
	}
	if (!mkdtemp(tmpdir))
		return 1;
	nn_cpu_set_threads(2);
	RUN(test_metrics_hand_checked);
	RUN(test_argmax_per_pixel);
	RUN(test_class_weights_change_the_loss);
	RUN(test_auto_and_given_weights);
	RUN(test_bad_inputs);
	RUN(test_unet_learns_and_predicts);
	RUN(test_resume_mid_epoch);
	struct error err;
	fs_rm_rf(tmpdir, &err);
	return CHECK_DONE();
}
