/* Unit tests for geo/eval: pixel counts and scores on hand-made rasters,
 * instance matching (IoU >= 0.5, one to one, 8-connectivity), the seam bands. */
#include "check.h"
#include "geo/eval.h"

#define S 32

static uint8_t P[S * S], T[S * S];

static void clear(void)
{
	memset(P, 0, sizeof(P));
	memset(T, 0, sizeof(T));
}

static void rect(uint8_t *img, int x0, int y0, int x1, int y1, int v)
{
	for (int y = y0; y < y1; y++)
		for (int x = x0; x < x1; x++)
			img[y * S + x] = (uint8_t)v;
}

static void test_identical_is_perfect(void)
{
	struct eval_opts o;
	eval_opts_init(&o);
	o.border = 4;
	clear();
	rect(T, 2, 2, 10, 10, 2);
	rect(T, 0, 20, 32, 24, 1);
	memcpy(P, T, sizeof(T));
	struct eval_result r = {0};
	struct error err;
	eval_add_tile(&o, P, T, S, &r);
	CHECK_INT(eval_add_instances(&o, P, T, S, S, &r, &err), 0);
	CHECK_NEAR(eval_iou(r.all.tp[1], r.all.fp[1], r.all.fn[1]), 1.0, 1e-12);
	CHECK_NEAR(eval_iou(r.all.tp[2], r.all.fp[2], r.all.fn[2]), 1.0, 1e-12);
	CHECK_INT(r.inst_truth, 1);
	CHECK_INT(r.inst_tp, 1);
	CHECK_INT(r.pixels, S * S);
}

static void test_counts(void)
{
	struct eval_opts o;
	eval_opts_init(&o);
	clear();
	rect(T, 0, 0, 10, 1, 1);  /* 10 road px in truth */
	rect(P, 5, 0, 20, 1, 1);  /* 15 in pred, 5 overlap */
	struct eval_result r = {0};
	eval_add_tile(&o, P, T, S, &r);
	CHECK_INT(r.all.tp[1], 5);
	CHECK_INT(r.all.fp[1], 10);
	CHECK_INT(r.all.fn[1], 5);
	CHECK_NEAR(eval_iou(5, 10, 5), 0.25, 1e-12);
	CHECK_NEAR(eval_f1(5, 10, 5), 0.4, 1e-12);
	CHECK(isnan(eval_iou(0, 0, 0)));
	/* a value past the classes counts as background and is reported */
	P[S * S - 1] = 9;
	struct eval_result r2 = {0};
	eval_add_tile(&o, P, T, S, &r2);
	CHECK_INT(r2.bad_values, 1);
}

static void test_instances(void)
{
	struct eval_opts o;
	eval_opts_init(&o);
	clear();
	rect(T, 2, 2, 10, 10, 2);   /* A: 64 px */
	rect(T, 20, 2, 28, 10, 2);  /* B: 64 px */
	rect(P, 3, 2, 11, 10, 2);   /* A shifted 1 px: IoU 56/72 = 0.78 -> match */
	rect(P, 24, 2, 32, 10, 2);  /* B shifted 4 px: IoU 32/96 = 0.33 -> no match */
	rect(P, 2, 20, 6, 24, 2);   /* nothing there: false positive */
	struct eval_result r = {0};
	struct error err;
	CHECK_INT(eval_add_instances(&o, P, T, S, S, &r, &err), 0);
	CHECK_INT(r.inst_truth, 2);
	CHECK_INT(r.inst_pred, 3);
	CHECK_INT(r.inst_tp, 1);
	CHECK_NEAR(eval_f1(1, 2, 1), 0.4, 1e-12);
	/* One prediction covering two touching truth buildings matches at most one. */
	clear();
	rect(T, 0, 0, 8, 8, 2);
	rect(T, 9, 0, 12, 8, 2);
	rect(P, 0, 0, 12, 8, 2);
	struct eval_result r2 = {0};
	CHECK_INT(eval_add_instances(&o, P, T, S, S, &r2, &err), 0);
	CHECK_INT(r2.inst_truth, 2);
	CHECK_INT(r2.inst_pred, 1);
	CHECK_INT(r2.inst_tp, 1); /* 64/96 = 0.67 with the big one only */
	/* Diagonal neighbours are one building (8-connectivity). */
	clear();
	T[5 * S + 5] = T[6 * S + 6] = T[7 * S + 7] = 2;
	memcpy(P, T, sizeof(T));
	struct eval_result r3 = {0};
	CHECK_INT(eval_add_instances(&o, P, T, S, S, &r3, &err), 0);
	CHECK_INT(r3.inst_truth, 1);
	CHECK_INT(r3.inst_tp, 1);
	/* min_area drops specks */
	o.min_area = 4;
	struct eval_result r4 = {0};
	CHECK_INT(eval_add_instances(&o, P, T, S, S, &r4, &err), 0);
	CHECK_INT(r4.inst_truth, 0);
}

/* The mosaic fed in bw x bh blocks, row by row, as cairn-eval reads tiles. */
static void by_blocks(const struct eval_opts *o, int bw, int bh, struct eval_result *r)
{
	struct eval_instances ei;
	struct error err;
	CHECK_INT(eval_instances_init(&ei, S, &err), 0);
	for (int y0 = 0; y0 < S; y0 += bh)
		for (int x0 = 0; x0 < S; x0 += bw) {
			int w = S - x0 < bw ? S - x0 : bw, h = S - y0 < bh ? S - y0 : bh;
			size_t off = (size_t)y0 * S + x0;
			CHECK_INT(eval_instances_add(o, &ei, P + off, T + off, S, x0, y0, w, h, &err), 0);
		}
	CHECK_INT(eval_instances_finish(o, &ei, r, &err), 0);
	eval_instances_release(&ei);
}

static void test_instances_across_blocks(void)
{
	struct eval_opts o;
	eval_opts_init(&o);
	clear();
	rect(T, 12, 4, 20, 10, 2); /* straddles the block edge x = 16 */
	rect(P, 13, 4, 21, 10, 2); /* found 1 px east: IoU 42/54 */
	rect(T, 4, 12, 9, 21, 2);  /* straddles y = 16 */
	rect(P, 4, 12, 9, 21, 2);
	T[15 * S + 25] = T[16 * S + 26] = 2; /* touch only diagonally, across a block corner */
	T[16 * S + 24] = 2;
	P[15 * S + 25] = P[16 * S + 26] = P[16 * S + 24] = 2;
	struct eval_result r = {0};
	by_blocks(&o, 16, 16, &r);
	CHECK_INT(r.inst_truth, 3);
	CHECK_INT(r.inst_pred, 3);
	CHECK_INT(r.inst_tp, 3);
	/* a block row left out is background: nothing joins across it */
	struct eval_instances ei;
	struct error err;
	struct eval_result r2 = {0};
	clear();
	rect(T, 2, 0, 6, 32, 2); /* one tall building, cut by the missing rows 8..15 */
	memcpy(P, T, sizeof(T));
	CHECK_INT(eval_instances_init(&ei, S, &err), 0);
	CHECK_INT(eval_instances_add(&o, &ei, P, T, S, 0, 0, S, 8, &err), 0);
	CHECK_INT(eval_instances_add(&o, &ei, P + 16 * S, T + 16 * S, S, 0, 16, S, 16, &err), 0);
	CHECK_INT(eval_instances_add(&o, &ei, P, T, S, 0, 8, S, 8, &err), -1); /* out of order */
	CHECK_INT(eval_instances_finish(&o, &ei, &r2, &err), 0);
	eval_instances_release(&ei);
	CHECK_INT(r2.inst_truth, 2);
	CHECK_INT(r2.inst_tp, 2);
}

/* Random buildings and roads: every block size gives the whole mosaic's counts. */
static void test_blocks_match_whole(void)
{
	struct eval_opts o;
	eval_opts_init(&o);
	uint32_t seed = 12345;
	for (int round = 0; round < 20; round++) {
		clear();
		for (int k = 0; k < 24; k++) {
			uint8_t *img = k % 2 ? P : T;
			seed = seed * 1664525u + 1013904223u;
			int x = (int)(seed >> 8) % S, y = (int)(seed >> 16) % S;
			int w = 1 + (int)(seed >> 24) % 7, h = 1 + (int)(seed >> 4) % 7;
			rect(img, x, y, x + w < S ? x + w : S, y + h < S ? y + h : S, k % 5 ? 2 : 1);
		}
		struct eval_result whole = {0};
		struct error err;
		CHECK_INT(eval_add_instances(&o, P, T, S, S, &whole, &err), 0);
		static const int sizes[][2] = {{1, 1}, {3, 5}, {7, 7}, {8, 16}, {16, 8}, {32, 1}};
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			struct eval_result r = {0};
			by_blocks(&o, sizes[i][0], sizes[i][1], &r);
			CHECK_INT(r.inst_truth, whole.inst_truth);
			CHECK_INT(r.inst_pred, whole.inst_pred);
			CHECK_INT(r.inst_tp, whole.inst_tp);
		}
	}
}

static void test_seam_bands(void)
{
	struct eval_opts o;
	eval_opts_init(&o);
	o.border = 4;
	clear();
	rect(T, 0, 0, 32, 32, 1);
	memcpy(P, T, sizeof(T));
	rect(P, 0, 0, 32, 2, 0); /* errors only along the top edge */
	struct eval_result r = {0};
	eval_add_tile(&o, P, T, S, &r);
	CHECK_NEAR(eval_iou(r.interior.tp[1], r.interior.fp[1], r.interior.fn[1]), 1.0, 1e-12);
	double b = eval_iou(r.border.tp[1], r.border.fp[1], r.border.fn[1]);
	/* border band: 32*32 - 24*24 = 448 px, 64 of them missed */
	CHECK_NEAR(b, 384.0 / 448.0, 1e-12);
	json_t *j = eval_to_json(&o, &r);
	CHECK(j != NULL);
	CHECK_NEAR(json_real_value(json_object_get(json_object_get(j, "seam"),
						   "interior_minus_border_mean_iou")),
		   1.0 - 384.0 / 448.0, 1e-5);
	json_decref(j);
}

static void test_error_colors(void)
{
	uint8_t c[3];
	eval_error_color(1, 0, c);
	CHECK(c[0] > 200 && c[2] < 100); /* false positive: red */
	eval_error_color(0, 2, c);
	CHECK(c[2] > 200 && c[0] < 100); /* false negative: blue */
	eval_error_color(0, 0, c);
	CHECK_INT(c[0] + c[1] + c[2], 0);
}

int main(void)
{
	RUN(test_identical_is_perfect);
	RUN(test_counts);
	RUN(test_instances);
	RUN(test_instances_across_blocks);
	RUN(test_blocks_match_whole);
	RUN(test_seam_bands);
	RUN(test_error_colors);
	return CHECK_DONE();
}
