/* fast: convolution as im2col + one OpenBLAS sgemm per group (Chellapilla
 * et al. 2006) where the direct kernels (nn/cpu/direct.c) do not apply, on
 * column tiles sized for the L2 cache (see conv_plan); the
 * threaded versions of the memory-bound slots. All scratch memory is the
 * caller's workspace, so a training step allocates nothing. */
/* the loops here are written to be vectorized; -O2 alone leaves most of them scalar */
#pragma GCC optimize("O3")
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "nn/cpu/cpu_ops.h"
#include "nn/cpu/par.h"

/* One-thread sgemm (OpenBLAS runs single-threaded, see par.h). */
static void gemm1(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
		  const float *b, int ldb, float beta, float *c, int ldc)
{
	if (m == 0 || n == 0)
		return;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
		    n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

struct gemm_job {
	int ta, tb, m, n, k, lda, ldb, ldc, split_rows;
	float alpha, beta;
	const float *a, *b;
	float *c;
};

static void gemm_part(void *ctx, int b0, int e0, int tid)
{
	const struct gemm_job *j = ctx;
	(void)tid;
	if (j->split_rows) /* rows [b0, e0) of C and of op(A) */
		gemm1(j->ta, j->tb, e0 - b0, j->n, j->k, j->alpha,
		      j->ta ? j->a + b0 : j->a + (size_t)b0 * j->lda, j->lda, j->b, j->ldb, j->beta,
		      j->c + (size_t)b0 * j->ldc, j->ldc);
	else /* columns [b0, e0) of C and of op(B) */
		gemm1(j->ta, j->tb, j->m, e0 - b0, j->k, j->alpha, j->a, j->lda,
		      j->tb ? j->b + (size_t)b0 * j->ldb : j->b + b0, j->ldb, j->beta, j->c + b0,
		      j->ldc);
}

/* The table's gemm: C split in row or column blocks, one per thread; blocks
 * of at least 64 so each sgemm keeps its kernel's full width. */
void fast_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	       const float *b, int ldb, float beta, float *c, int ldc)
{
	struct gemm_job j = {ta, tb, m, n, k, lda, ldb, ldc, m >= n, alpha, beta, a, b, c};
	int along = m >= n ? m : n, parts = along / 64;
	if ((double)m * n * k < 1e6 || parts < 2) {
		gemm1(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
		return;
	}
	par_for(along, gemm_part, &j);
}

/* A 1x1, stride 1, unpadded convolution needs no im2col: x is its own column matrix. */
static int conv_is_pointwise(const struct nn_conv_desc *d)
{
	return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

/* col[(ci kh + p) kw + q][(i - i0) wout + j] = x[ci][i s - pad + p dil][j s - pad + q dil]
 * (0 outside the image) for output rows i in [i0, i1); ld is the column
 * matrix's row length (several images or one tile of rows side by side). */
static void im2col(const struct nn_conv_desc *d, const float *x, float *col, size_t ld, int i0,
		   int i1)
{
	for (int ci = 0; ci < d->cin; ci++)
		for (int p = 0; p < d->kh; p++)
			for (int q = 0; q < d->kw; q++) {
				float *row = col + (((size_t)ci * d->kh + p) * d->kw + q) * ld;
				const float *xp = x + (size_t)ci * d->h * d->w;
				int off = q * d->dil - d->pad;
				/* output columns j whose input column j s + off is inside [0, w) */
				int j0 = off < 0 ? (-off + d->stride - 1) / d->stride : 0;
				int j1 = (d->w - off + d->stride - 1) / d->stride;
				if (j1 > d->wout)
					j1 = d->wout;
				if (j0 > j1)
					j0 = j1;
				for (int i = i0; i < i1; i++) {
					float *o = row + (size_t)(i - i0) * d->wout;
					int r = i * d->stride - d->pad + p * d->dil;
					if (r < 0 || r >= d->h) {
						memset(o, 0, sizeof(float) * d->wout);
						continue;
					}
					const float *xr = xp + (size_t)r * d->w + off;
					for (int j = 0; j < j0; j++)
						o[j] = 0;
					if (d->stride == 1)
						memcpy(o + j0, xr + j0, sizeof(float) * (j1 - j0));
					else
						for (int j = j0; j < j1; j++)
							o[j] = xr[j * d->stride];
					for (int j = j1; j < d->wout; j++)
						o[j] = 0;
				}
			}
}

/* The adjoint of im2col over output rows [i0, i1): dx[ci][r][s] += every
 * column entry that copied it. dx must be zeroed by the caller. */
static void col2im(const struct nn_conv_desc *d, const float *col, size_t ld, float *dx, int i0,
		   int i1)
{
	for (int ci = 0; ci < d->cin; ci++)
		for (int p = 0; p < d->kh; p++)
			for (int q = 0; q < d->kw; q++) {
				const float *row = col + (((size_t)ci * d->kh + p) * d->kw + q) * ld;
				float *xp = dx + (size_t)ci * d->h * d->w;
				int off = q * d->dil - d->pad;
				int j0 = off < 0 ? (-off + d->stride - 1) / d->stride : 0;
				int j1 = (d->w - off + d->stride - 1) / d->stride;
				if (j1 > d->wout)
					j1 = d->wout;
				for (int i = i0; i < i1; i++) {
					int r = i * d->stride - d->pad + p * d->dil;
					if (r < 0 || r >= d->h)
						continue;
					const float *o = row + (size_t)(i - i0) * d->wout;
					float *xr = xp + (size_t)r * d->w + off;
					if (d->stride == 1)
						for (int j = j0; j < j1; j++)
							xr[j] += o[j];
					else
						for (int j = j0; j < j1; j++)
							xr[j * d->stride] += o[j];
				}
			}
}

/* Between nb NCHW images (c channels of hw) and one [c][nb hw] matrix. */
static void batch_to_rows(int nb, int c, int hw, const float *src, float *dst)
{
	size_t ld = (size_t)nb * hw;
	for (int i = 0; i < nb; i++)
		for (int k = 0; k < c; k++)
			memcpy(dst + k * ld + (size_t)i * hw, src + ((size_t)i * c + k) * hw,
			       sizeof(float) * hw);
}

static void rows_to_batch(int nb, int c, int hw, const float *src, float *dst)
{
	size_t ld = (size_t)nb * hw;
	for (int i = 0; i < nb; i++)
		for (int k = 0; k < c; k++)
			memcpy(dst + ((size_t)i * c + k) * hw, src + k * ld + (size_t)i * hw,
			       sizeof(float) * hw);
}


/* Threads split the batch: thread t gets images [b, e) and its own slice of
 * the workspace (a column tile, a row buffer, and for the filter gradient a
 * private dw that is summed in a fixed order afterwards). The column tile is
 * sized to stay in the core's L2 cache while sgemm reads it: small images are
 * batched side by side into one tile, large ones are cut into tiles of
 * output rows. */
#define CONV_TILE_FLOATS (192 * 1024) /* 768 KiB of columns */

static int conv_threads(const struct nn_conv_desc *d)
{
	int t = par_threads();
	return d->n < t ? (d->n > 0 ? d->n : 1) : t;
}

struct plan {
	int nb;      /* > 1: images per batched tile */
	int rows;    /* otherwise: output rows per tile */
	size_t cols; /* columns of the largest tile */
};

static struct plan conv_plan(const struct nn_conv_desc *d)
{
	int t = conv_threads(d), per = (d->n + t - 1) / t, hw = d->hout * d->wout;
	size_t krows = (size_t)d->cin * d->kh * d->kw, target = CONV_TILE_FLOATS / krows;
	target = target < 256 ? 256 : target > 4096 ? 4096 : target;
	struct plan p = {1, d->hout, (size_t)hw};
	if ((size_t)hw <= target) {
		int nb = (int)(target / hw);
		nb = nb > per ? per : nb;
		if (nb > 1)
			p.nb = nb, p.cols = (size_t)nb * hw;
		return p;
	}
	p.rows = (int)(target / d->wout);
	p.rows = p.rows < 1 ? 1 : p.rows;
	p.cols = (size_t)p.rows * d->wout;
	return p;
}

static size_t align16(size_t n) { return (n + 15) / 16 * 16; }

static size_t slice_floats(const struct nn_conv_desc *d)
{
	struct plan p = conv_plan(d);
	return align16((size_t)d->cin * d->kh * d->kw * p.cols) +
	       (p.nb > 1 ? align16((size_t)d->cout * p.cols) : 0);
}

static size_t dw_floats(const struct nn_conv_desc *d)
{
	return align16((size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw);
}

/* Room for either path: the direct kernels (nn/cpu/direct.c) run the stride-1
 * shapes they handle, this file the others, and a test may force either. */
size_t fast_conv2d_workspace(const struct nn_conv_desc *d)
{
	int t = conv_threads(d);
	size_t gemm = (t * slice_floats(d) + (t - 1) * dw_floats(d)) * sizeof(float) + 64;
	size_t direct = direct_conv2d_workspace(d);
	return gemm > direct ? gemm : direct;
}

struct conv_job {
	const struct nn_conv_desc *d;
	const float *x, *w, *dy;
	float *y, *dx, *dw;
	float *ws;
	int nparts;
};

static float *ws_base(void *ws) { return (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63); }

/* What every part needs: its column tile, row buffer, sizes. */
struct part {
	const struct nn_conv_desc *d;
	struct plan p;
	float *col, *buf;
	int g, cog, k, hw, pointwise;
	size_t xin, yout;
};

static struct part part_init(const struct conv_job *j, int tid)
{
	const struct nn_conv_desc *d = j->d;
	struct part t = {.d = d, .p = conv_plan(d)};
	t.col = j->ws + tid * slice_floats(d);
	t.buf = t.col + align16((size_t)d->cin * d->kh * d->kw * t.p.cols);
	t.g = d->groups, t.cog = d->cout / d->groups, t.k = d->cin / d->groups * d->kh * d->kw;
	t.hw = d->hout * d->wout;
	t.pointwise = conv_is_pointwise(d);
	t.xin = (size_t)d->cin * d->h * d->w, t.yout = (size_t)d->cout * t.hw;
	return t;
}

static void conv_fwd_part(void *ctx, int b, int e, int tid)
{
	const struct conv_job *j = ctx;
	struct part t = part_init(j, tid);
	const struct nn_conv_desc *d = t.d;
	for (int n0 = b; n0 < e;) {
		int cnt = e - n0 < t.p.nb ? e - n0 : t.p.nb;
		if (cnt > 1) { /* several small images side by side */
			size_t ld = (size_t)cnt * t.hw;
			for (int i = 0; i < cnt; i++)
				im2col(d, j->x + (n0 + i) * t.xin, t.col + (size_t)i * t.hw, ld, 0, d->hout);
			for (int gi = 0; gi < t.g; gi++)
				gemm1(0, 0, t.cog, (int)ld, t.k, 1, j->w + (size_t)gi * t.cog * t.k, t.k,
				      t.col + (size_t)gi * t.k * ld, (int)ld, 0,
				      t.buf + (size_t)gi * t.cog * ld, (int)ld);
			rows_to_batch(cnt, d->cout, t.hw, t.buf, j->y + n0 * t.yout);
			n0 += cnt;
			continue;
		}
		const float *x = j->x + n0 * t.xin;
		float *y = j->y + n0 * t.yout;
		for (int i0 = 0; i0 < d->hout; i0 += t.p.rows) {
			int i1 = i0 + t.p.rows < d->hout ? i0 + t.p.rows : d->hout;
			int cols = (i1 - i0) * d->wout, ldb = cols;
			const float *bm = t.col;
			if (t.pointwise)
				bm = x + (size_t)i0 * d->wout, ldb = t.hw;
			else
				im2col(d, x, t.col, cols, i0, i1);
			for (int gi = 0; gi < t.g; gi++)
				gemm1(0, 0, t.cog, cols, t.k, 1, j->w + (size_t)gi * t.cog * t.k, t.k,
				      bm + (size_t)gi * t.k * ldb, ldb, 0,
				      y + (size_t)gi * t.cog * t.hw + (size_t)i0 * d->wout, t.hw);
		}
		n0++;
	}
}

static void conv_bwd_data_part(void *ctx, int b, int e, int tid)
{
	const struct conv_job *j = ctx;
	struct part t = part_init(j, tid);
	const struct nn_conv_desc *d = t.d;
	if (!t.pointwise)
		memset(j->dx + b * t.xin, 0, sizeof(float) * (e - b) * t.xin);
	for (int n0 = b; n0 < e;) {
		int cnt = e - n0 < t.p.nb ? e - n0 : t.p.nb;
		if (cnt > 1) {
			size_t ld = (size_t)cnt * t.hw;
			batch_to_rows(cnt, d->cout, t.hw, j->dy + n0 * t.yout, t.buf);
			for (int gi = 0; gi < t.g; gi++)
				gemm1(1, 0, t.k, (int)ld, t.cog, 1, j->w + (size_t)gi * t.cog * t.k, t.k,
				      t.buf + (size_t)gi * t.cog * ld, (int)ld, 0,
				      t.col + (size_t)gi * t.k * ld, (int)ld);
			if (t.pointwise) /* the columns are the images themselves */
				rows_to_batch(cnt, d->cin, t.hw, t.col, j->dx + n0 * t.xin);
			else
				for (int i = 0; i < cnt; i++)
					col2im(d, t.col + (size_t)i * t.hw, ld, j->dx + (n0 + i) * t.xin, 0,
					       d->hout);
			n0 += cnt;
			continue;
		}
		const float *dy = j->dy + n0 * t.yout;
		float *dx = j->dx + n0 * t.xin;
		for (int i0 = 0; i0 < d->hout; i0 += t.p.rows) {
			int i1 = i0 + t.p.rows < d->hout ? i0 + t.p.rows : d->hout;
			int cols = (i1 - i0) * d->wout, ld = cols;
			float *dcol = t.col;
			if (t.pointwise)
				dcol = dx + (size_t)i0 * d->wout, ld = t.hw;
			for (int gi = 0; gi < t.g; gi++)
				gemm1(1, 0, t.k, cols, t.cog, 1, j->w + (size_t)gi * t.cog * t.k, t.k,
				      dy + (size_t)gi * t.cog * t.hw + (size_t)i0 * d->wout, t.hw, 0,
				      dcol + (size_t)gi * t.k * ld, ld);
			if (!t.pointwise)
				col2im(d, t.col, cols, dx, i0, i1);
		}
		n0++;
	}
}

static void conv_bwd_filter_part(void *ctx, int b, int e, int tid)
{
	const struct conv_job *j = ctx;
	struct part t = part_init(j, tid);
	const struct nn_conv_desc *d = t.d;
	float *dw = tid == 0 ? j->dw
			     : j->ws + j->nparts * slice_floats(d) + (tid - 1) * dw_floats(d);
	float beta = 0;
	for (int n0 = b; n0 < e;) {
		int cnt = e - n0 < t.p.nb ? e - n0 : t.p.nb;
		if (cnt > 1) {
			size_t ld = (size_t)cnt * t.hw;
			for (int i = 0; i < cnt; i++)
				im2col(d, j->x + (n0 + i) * t.xin, t.col + (size_t)i * t.hw, ld, 0, d->hout);
			batch_to_rows(cnt, d->cout, t.hw, j->dy + n0 * t.yout, t.buf);
			for (int gi = 0; gi < t.g; gi++)
				gemm1(0, 1, t.cog, t.k, (int)ld, 1, t.buf + (size_t)gi * t.cog * ld, (int)ld,
				      t.col + (size_t)gi * t.k * ld, (int)ld, beta,
				      dw + (size_t)gi * t.cog * t.k, t.k);
			beta = 1;
			n0 += cnt;
			continue;
		}
		const float *x = j->x + n0 * t.xin, *dy = j->dy + n0 * t.yout;
		for (int i0 = 0; i0 < d->hout; i0 += t.p.rows) {
			int i1 = i0 + t.p.rows < d->hout ? i0 + t.p.rows : d->hout;
			int cols = (i1 - i0) * d->wout, ldb = cols;
			const float *bm = t.col;
			if (t.pointwise)
				bm = x + (size_t)i0 * d->wout, ldb = t.hw;
			else
				im2col(d, x, t.col, cols, i0, i1);
			for (int gi = 0; gi < t.g; gi++)
				gemm1(0, 1, t.cog, t.k, cols, 1,
				      dy + (size_t)gi * t.cog * t.hw + (size_t)i0 * d->wout, t.hw,
				      bm + (size_t)gi * t.k * ldb, ldb, beta, dw + (size_t)gi * t.cog * t.k,
				      t.k);
			beta = 1;
		}
		n0++;
	}
}

static void dw_reduce_part(void *ctx, int b, int e, int tid)
{
	const struct conv_job *j = ctx;
	(void)tid;
	const float *base = j->ws + j->nparts * slice_floats(j->d);
	for (int t = 1; t < j->nparts; t++) {
		const float *p = base + (t - 1) * dw_floats(j->d);
		for (int i = b; i < e; i++)
			j->dw[i] += p[i];
	}
}

/* ---- fewer images than threads ----
 * Splitting the batch would leave threads idle (cairn-refine's batch 1: its
 * stride-2 and transposed convolutions on one core), so each image's tiles
 * run one after another, the threads sharing each step instead: im2col and
 * col2im by channels, sgemm by blocks of rows or columns (fast_gemm). One
 * slice of the workspace, as for one image. Groups of 1 only. */
struct cols_job {
	const struct nn_conv_desc *d;
	const float *x;
	float *dx, *col;
	size_t ld;
	int i0, i1;
};

/* Channels [b, e) of im2col (dx NULL) or col2im: the same calls on a desc of
 * those channels, the planes and rows they own. */
static void cols_part(void *ctx, int b, int e, int tid)
{
	const struct cols_job *c = ctx;
	struct nn_conv_desc d = *c->d;
	size_t plane = (size_t)d.h * d.w, rows = (size_t)b * d.kh * d.kw * c->ld;
	(void)tid;
	d.cin = e - b;
	if (c->dx)
		col2im(&d, c->col + rows, c->ld, c->dx + b * plane, c->i0, c->i1);
	else
		im2col(&d, c->x + b * plane, c->col + rows, c->ld, c->i0, c->i1);
}

static void cols_run(const struct nn_conv_desc *d, const float *x, float *dx, float *col,
		     size_t ld, int i0, int i1)
{
	struct cols_job c = {d, x, dx, col, ld, i0, i1};
	par_for(d->cin, cols_part, &c);
}

static int conv_wide(const struct nn_conv_desc *d)
{
	return d->groups == 1 && d->n < par_threads() && !conv_is_pointwise(d);
}

/* pass: 0 forward (x, w -> y), 1 backward-data (dy, w -> dx), 2 backward-filter
 * (x, dy -> dw). */
static void conv_wide_run(const struct nn_conv_desc *d, int pass, const float *x, const float *w,
			  const float *dy, float *y, float *dx, float *dw, void *ws)
{
	struct plan pl = conv_plan(d);
	float *col = ws_base(ws);
	int k = d->cin * d->kh * d->kw, hw = d->hout * d->wout;
	size_t xin = (size_t)d->cin * d->h * d->w, yout = (size_t)d->cout * hw;
	if (pass == 1)
		memset(dx, 0, sizeof(float) * d->n * xin);
	float beta = 0;
	for (int n = 0; n < d->n; n++)
		for (int i0 = 0; i0 < d->hout; i0 += pl.rows) {
			int i1 = i0 + pl.rows < d->hout ? i0 + pl.rows : d->hout;
			int cols = (i1 - i0) * d->wout;
			size_t at = n * yout + (size_t)i0 * d->wout;
			if (pass == 1) {
				fast_gemm(1, 0, k, cols, d->cout, 1, w, k, dy + at, hw, 0, col, cols);
				cols_run(d, NULL, dx + n * xin, col, cols, i0, i1);
				continue;
			}
			cols_run(d, x + n * xin, NULL, col, cols, i0, i1);
			if (pass == 0)
				fast_gemm(0, 0, d->cout, cols, k, 1, w, k, col, cols, 0, y + at, hw);
			else
				fast_gemm(0, 1, d->cout, k, cols, 1, dy + at, hw, col, cols, beta, dw, k);
			beta = 1;
		}
	if (pass == 2 && beta == 0) /* no output rows */
		memset(dw, 0, sizeof(float) * d->cout * k);
}

void fast_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w,
		     const float *b, float *y, void *ws)
{
	if (direct_conv2d_fwd(d, x, w, b, y, ws) == 0)
		return;
	struct conv_job j = {.d = d, .x = x, .w = w, .y = y, .ws = ws_base(ws)};
	if (conv_wide(d))
		conv_wide_run(d, 0, x, w, NULL, y, NULL, NULL, ws);
	else
		par_for(d->n, conv_fwd_part, &j);
	if (b)
		fast_bias_add(d->n, d->cout, d->hout * d->wout, y, b);
}

void fast_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w,
			  float *dx, void *ws)
{
	if (direct_conv2d_bwd_data(d, dy, w, dx, ws) == 0)
		return;
	struct conv_job j = {.d = d, .dy = dy, .w = w, .dx = dx, .ws = ws_base(ws)};
	if (conv_wide(d))
		conv_wide_run(d, 1, NULL, w, dy, NULL, dx, NULL, ws);
	else
		par_for(d->n, conv_bwd_data_part, &j);
}

void fast_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
			    float *dw, float *db, void *ws)
{
	if (direct_conv2d_bwd_filter(d, x, dy, dw, db, ws) == 0)
		return;
	int parts = conv_threads(d);
	struct conv_job j = {.d = d, .x = x, .dy = dy, .dw = dw, .ws = ws_base(ws), .nparts = parts};
	if (d->n == 0) {
		memset(dw, 0, sizeof(float) * d->cout * (d->cin / d->groups) * d->kh * d->kw);
	} else if (conv_wide(d)) {
		conv_wide_run(d, 2, x, NULL, dy, NULL, NULL, dw, ws);
	} else {
		par_for(d->n, conv_bwd_filter_part, &j);
		if (parts > 1)
			par_for(d->cout * (d->cin / d->groups) * d->kh * d->kw, dw_reduce_part, &j);
	}
	if (db)
		fast_bias_grad(d->n, d->cout, d->hout * d->wout, dy, db);
}

/* ---- threaded versions of the memory-bound ops ---- */

#define PAR_MIN 32768 /* below this many floats, one thread is faster */

struct ew_job {
	int kind;
	enum nn_act act;
	float a, b2, lr, mom, wd, eps;
	int flag, t;
	size_t ndecay; /* optimizers: floats with weight decay, from the start */
	const float *x, *y2, *dy;
	float *y, *dx, *m, *v;
	int n, c, hw;
	const float *gamma, *beta, *rm, *rv;
	float *sm, *si, *rmw, *rvw, *dg, *db;
	const struct nn_pool_desc *pd;
	int32_t *idx;
	const int32_t *cidx;
	enum nn_upsample_mode up;
	int h, w, scale;
};

enum { EW_ACT_FWD, EW_ACT_BWD, EW_ADD, EW_ADD_ACT, EW_ADD_ACT_BWD, EW_AXPY, EW_MUL, EW_COPY,
       EW_FILL, EW_SGD, EW_ADAM, EW_BIAS };

/* The decayed floats of the chunk [b, b + n) of an optimizer step. */
static size_t chunk_decay(size_t ndecay, int b, size_t n)
{
	size_t d = ndecay > (size_t)b ? ndecay - (size_t)b : 0;
	return d < n ? d : n;
}

/* Adam over vectors: cpu_adam_step's operations in its order, a vector at a
 * time, so the same bits (no FMA: the targets leave it out, and ISO C mode
 * contracts nothing). The scalar loop divided and took square roots one
 * float at a time: 29 M parameters (the reference CycleGAN's four nets)
 * took 114-124 ms a step, 7 GB/s, where the memory gives twice that. Each
 * handles whole vectors of [0, n) with weight decay wd and returns how many
 * floats it did; the rest goes to cpu_adam_step. */
struct adam_k {
	float lr, b1, b2, eps, wd, c1, c2;
	int decoupled;
};

#define ADAM_BODY(V, VL, set1, ld, st, add, sub, mul, div, sqrt, zero)                            \
	V vb1 = set1(k->b1), vb1c = set1(1 - k->b1), vb2 = set1(k->b2), vb2c = set1(1 - k->b2);   \
	V vc1 = set1(k->c1), vc2 = set1(k->c2), veps = set1(k->eps), vlr = set1(k->lr);           \
	V vwd = set1(k->wd);                                                                       \
	size_t i = 0;                                                                              \
	for (; i + VL <= n; i += VL) {                                                             \
		V x = ld(w + i), gi = ld(g + i), dec = mul(vwd, x);                                \
		if (!k->decoupled)                                                                 \
			gi = add(gi, dec);                                                         \
		V mi = add(mul(vb1, ld(m + i)), mul(vb1c, gi));                                    \
		V vi = add(mul(vb2, ld(v + i)), mul(mul(vb2c, gi), gi));                           \
		st(m + i, mi);                                                                     \
		st(v + i, vi);                                                                     \
		V step = div(div(mi, vc1), add(sqrt(div(vi, vc2)), veps));                         \
		step = add(step, k->decoupled ? dec : zero);                                       \
		st(w + i, sub(x, mul(vlr, step)));                                                 \
	}                                                                                          \
	return i;

#pragma GCC push_options
#pragma GCC target("avx512f")
static size_t adam_avx512(size_t n, float *w, const float *g, float *m, float *v,
			  const struct adam_k *k)
{
	ADAM_BODY(__m512, 16, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps,
		  _mm512_sub_ps, _mm512_mul_ps, _mm512_div_ps, _mm512_sqrt_ps, _mm512_setzero_ps())
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2")
static size_t adam_avx2(size_t n, float *w, const float *g, float *m, float *v,
			const struct adam_k *k)
{
	ADAM_BODY(__m256, 8, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps,
		  _mm256_sub_ps, _mm256_mul_ps, _mm256_div_ps, _mm256_sqrt_ps, _mm256_setzero_ps())
}
#pragma GCC pop_options

/* floats [0, n) of a chunk, ndecay of them decayed: the vectors, then the rest */
static void adam_chunk(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		       float lr, float b1, float b2, float eps, float wd, int decoupled, int t)
{
	int level = direct_isa_level();
	if (level == 0) {
		cpu_adam_step(n, ndecay, w, g, m, v, lr, b1, b2, eps, wd, decoupled, t);
		return;
	}
	struct adam_k k = {lr, b1, b2, eps, wd, 1.0f - powf(b1, (float)t), 1.0f - powf(b2, (float)t),
			   decoupled};
	for (int part = 0; part < 2; part++) { /* the decayed floats, then the others */
		size_t b = part ? ndecay : 0, e = part ? n : ndecay;
		k.wd = part ? 0 : wd;
		size_t did = level == 2 ? adam_avx512(e - b, w + b, g + b, m + b, v + b, &k)
					: adam_avx2(e - b, w + b, g + b, m + b, v + b, &k);
		cpu_adam_step(e - b - did, part ? 0 : e - b - did, w + b + did, g + b + did,
			      m + b + did, v + b + did, lr, b1, b2, eps, wd, decoupled, t);
	}
}

static void ew_part(void *ctx, int b, int e, int tid)
{
	const struct ew_job *j = ctx;
	(void)tid;
	size_t n = (size_t)(e - b);
	switch (j->kind) {
	case EW_ACT_FWD: cpu_act_fwd(j->act, j->a, j->x + b, j->y + b, n); break;
	case EW_ACT_BWD: cpu_act_bwd(j->act, j->a, j->x + b, j->y2 + b, j->dy + b, j->dx + b, n); break;
	case EW_ADD: cpu_add(j->x + b, j->y2 + b, j->y + b, n); break;
	case EW_ADD_ACT: cpu_add_act(j->act, j->a, j->x + b, j->y2 + b, j->y + b, n); break;
	case EW_ADD_ACT_BWD: /* y2: the forward's output; dx, y: the two gradients */
		cpu_add_act_bwd(j->act, j->a, j->y2 + b, j->dy + b, j->dx + b, j->y + b, n);
		break;
	case EW_AXPY: cpu_axpy(n, j->a, j->x + b, j->y + b); break;
	case EW_MUL: cpu_mul(j->x + b, j->y2 + b, j->y + b, n); break;
	case EW_COPY: cpu_copy(j->y + b, j->x + b, n); break;
	case EW_FILL: cpu_fill(j->y + b, n, j->a); break;
	case EW_SGD:
		cpu_sgd_step(n, chunk_decay(j->ndecay, b, n), j->y + b, j->x + b, j->m + b, j->lr,
			     j->mom, j->wd, j->flag);
		break;
	case EW_ADAM:
		adam_chunk(n, chunk_decay(j->ndecay, b, n), j->y + b, j->x + b, j->m + b, j->v + b,
			   j->lr, j->a, j->b2, j->eps, j->wd, j->flag, j->t);
		break;
	case EW_BIAS: /* rows b..e of (n c) planes */
		for (int r = b; r < e; r++) {
			float *p = j->y + (size_t)r * j->hw, v = j->x[r % j->c];
			for (int i = 0; i < j->hw; i++)
				p[i] += v;
		}
		break;
	}
}

static void ew_run(struct ew_job *j, size_t n)
{
	if (n < PAR_MIN)
		ew_part(j, 0, (int)n, 0);
	else
		par_for((int)n, ew_part, j);
}

void fast_act_fwd(enum nn_act kind, float alpha, const float *x, float *y, size_t n)
{
	struct ew_job j = {.kind = EW_ACT_FWD, .act = kind, .a = alpha, .x = x, .y = y};
	ew_run(&j, n);
}
void fast_act_bwd(enum nn_act kind, float alpha, const float *x, const float *y, const float *dy,
		  float *dx, size_t n)
{
	struct ew_job j = {.kind = EW_ACT_BWD, .act = kind, .a = alpha, .x = x, .y2 = y, .dy = dy, .dx = dx};
	ew_run(&j, n);
}
void fast_add(const float *a, const float *b, float *y, size_t n)
{
	struct ew_job j = {.kind = EW_ADD, .x = a, .y2 = b, .y = y};
	ew_run(&j, n);
}
void fast_add_act(enum nn_act act, float alpha, const float *a, const float *b, float *y, size_t n)
{
	struct ew_job j = {.kind = EW_ADD_ACT, .act = act, .a = alpha, .x = a, .y2 = b, .y = y};
	ew_run(&j, n);
}
void fast_add_act_bwd(enum nn_act act, float alpha, const float *y, const float *dy, float *da,
		      float *db, size_t n)
{
	struct ew_job j = {.kind = EW_ADD_ACT_BWD, .act = act, .a = alpha, .y2 = y, .dy = dy,
			   .dx = da, .y = db};
	ew_run(&j, n);
}
void fast_axpy(size_t n, float a, const float *x, float *y)
{
	struct ew_job j = {.kind = EW_AXPY, .a = a, .x = x, .y = y};
	ew_run(&j, n);
}
void fast_mul(const float *a, const float *b, float *y, size_t n)
{
	struct ew_job j = {.kind = EW_MUL, .x = a, .y2 = b, .y = y};
	ew_run(&j, n);
}
void fast_copy(float *dst, const float *src, size_t n)
{
	struct ew_job j = {.kind = EW_COPY, .x = src, .y = dst};
	ew_run(&j, n);
}
void fast_fill(float *x, size_t n, float v)
{
	struct ew_job j = {.kind = EW_FILL, .a = v, .y = x};
	ew_run(&j, n);
}
void fast_sgd_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
		   float momentum, float wd, int nesterov)
{
	struct ew_job j = {.kind = EW_SGD, .y = w, .x = g, .m = m, .lr = lr, .mom = momentum,
			   .wd = wd, .flag = nesterov, .ndecay = ndecay};
	ew_run(&j, n);
}
void fast_adam_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		    float lr, float b1, float b2, float eps, float wd, int decoupled, int t)
{
	struct ew_job j = {.kind = EW_ADAM, .y = w, .x = g, .m = m, .v = v, .lr = lr, .a = b1,
			   .b2 = b2, .eps = eps, .wd = wd, .flag = decoupled, .t = t,
			   .ndecay = ndecay};
	ew_run(&j, n);
}
void fast_bias_add(int n, int c, int hw, float *y, const float *b)
{
	struct ew_job j = {.kind = EW_BIAS, .x = b, .y = y, .c = c, .hw = hw};
	if ((size_t)n * c * hw < PAR_MIN)
		ew_part(&j, 0, n * c, 0);
	else
		par_for(n * c, ew_part, &j);
}

static void bias_grad_part(void *ctx, int b, int e, int tid)
{
	const struct ew_job *j = ctx;
	(void)tid;
	cpu_bias_grad_range(j->n, j->c, j->hw, j->dy, j->db, b, e);
}

/* channels split across threads; each channel's sum in the same order as
 * the reference's, so the result is the same for any thread count */
void fast_bias_grad(int n, int c, int hw, const float *dy, float *db)
{
	struct ew_job j = {.n = n, .c = c, .hw = hw, .dy = dy, .db = db};
	if ((size_t)n * c * hw < PAR_MIN)
		bias_grad_part(&j, 0, c, 0);
	else
		par_for(c, bias_grad_part, &j);
}

static void bn_train_part(void *ctx, int b, int e, int tid)
{
	const struct ew_job *j = ctx;
	(void)tid;
	cpu_bn_fwd_train_range(j->n, j->c, j->hw, j->act, j->a, j->x, j->gamma, j->beta, j->eps,
			       j->mom, j->y, j->sm, j->si, j->rmw, j->rvw, b, e);
}
static void bn_eval_part(void *ctx, int b, int e, int tid)
{
	const struct ew_job *j = ctx;
	(void)tid;
	cpu_bn_fwd_eval_range(j->n, j->c, j->hw, j->act, j->a, j->x, j->gamma, j->beta, j->rm, j->rv,
			      j->eps, j->y, b, e);
}
static void bn_bwd_part(void *ctx, int b, int e, int tid)
{
	const struct ew_job *j = ctx;
	(void)tid;
	cpu_bn_bwd_range(j->n, j->c, j->hw, j->act, j->a, j->x, j->y2, j->dy, j->gamma, j->rm, j->rv,
			 j->dx, j->dg, j->db, b, e);
}

void fast_bn_fwd_train(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		       const float *gamma, const float *beta, float eps, float momentum, float *y,
		       float *save_mean, float *save_invstd, float *run_mean, float *run_var)
{
	struct ew_job j = {.n = n, .c = c, .hw = hw, .act = act, .a = alpha, .x = x, .gamma = gamma,
			   .beta = beta, .eps = eps, .mom = momentum, .y = y, .sm = save_mean,
			   .si = save_invstd, .rmw = run_mean, .rvw = run_var};
	par_for(c, bn_train_part, &j);
}
void fast_bn_fwd_eval(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		      const float *gamma, const float *beta, const float *run_mean,
		      const float *run_var, float eps, float *y)
{
	struct ew_job j = {.n = n, .c = c, .hw = hw, .act = act, .a = alpha, .x = x, .gamma = gamma,
			   .beta = beta, .rm = run_mean, .rv = run_var, .eps = eps, .y = y};
	par_for(c, bn_eval_part, &j);
}
void fast_bn_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x, const float *y,
		 const float *dy, const float *gamma, const float *save_mean,
		 const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
	struct ew_job j = {.n = n, .c = c, .hw = hw, .act = act, .a = alpha, .x = x, .y2 = y,
			   .dy = dy, .gamma = gamma, .rm = save_mean, .rv = save_invstd, .dx = dx,
			   .dg = dgamma, .db = dbeta};
	par_for(c, bn_bwd_part, &j);
}

/* One output row of a 2x2 stride-2 max pool, four outputs at a time
 * (SSE4.1): the reference's comparisons in its order (strict >, so a tie
 * keeps the first), as selects; the scalar loop's compares had compiled to
 * branches, mispredicted on random data (the pool forward took 10% of the
 * default classifier's time). r0, r1: the two input rows, at: the offset of
 * r0 in the plane. Returns the outputs done (the rest: the caller's loop). */
static int maxpool2_row4(const float *r0, const float *r1, int w, int wout, int at, float *y,
			 int32_t *idx)
{
	int q = 0;
	for (; q + 4 <= wout; q += 4) {
		int s = 2 * q;
		__m128 a0 = _mm_loadu_ps(r0 + s), a1 = _mm_loadu_ps(r0 + s + 4);
		__m128 b0 = _mm_loadu_ps(r1 + s), b1 = _mm_loadu_ps(r1 + s + 4);
		__m128 v[3] = {_mm_shuffle_ps(a0, a1, 0xdd), _mm_shuffle_ps(b0, b1, 0x88),
			       _mm_shuffle_ps(b0, b1, 0xdd)};
		__m128 best = _mm_shuffle_ps(a0, a1, 0x88); /* r0[s], r0[s + 2], ... */
		__m128i base = _mm_add_epi32(_mm_set1_epi32(at + s), _mm_setr_epi32(0, 2, 4, 6));
		__m128i where = base;
		const int step[3] = {1, w, w + 1};
		for (int t = 0; t < 3; t++) {
			__m128 gt = _mm_cmpgt_ps(v[t], best);
			best = _mm_blendv_ps(best, v[t], gt);
			where = _mm_blendv_epi8(where, _mm_add_epi32(base, _mm_set1_epi32(step[t])),
						_mm_castps_si128(gt));
		}
		_mm_storeu_ps(y + q, best);
		_mm_storeu_si128((__m128i *)(idx + q), where);
	}
	return q;
}

/* Pooling and upsampling work plane by plane: a chunk of planes is the same
 * op on a batch of 1 image with fewer channels. The common 2x2 stride-2 max
 * pool has its own loop. */
static void pool_fwd_part(void *ctx, int b, int e, int tid)
{
	const struct ew_job *j = ctx;
	const struct nn_pool_desc *d = j->pd;
	(void)tid;
	size_t in = (size_t)d->h * d->w, out = (size_t)d->hout * d->wout;
	if (d->kind == NN_POOL_MAX && d->kh == 2 && d->kw == 2 && d->sh == 2 && d->sw == 2 &&
	    d->ph == 0 && d->pw == 0) {
		for (int pl = b; pl < e; pl++) {
			const float *x = j->x + pl * in;
			float *y = j->y + pl * out;
			int32_t *idx = j->idx + pl * out;
			for (int i = 0; i < d->hout; i++) {
				const float *r0 = x + (size_t)2 * i * d->w, *r1 = r0 + d->w;
				int q = maxpool2_row4(r0, r1, d->w, d->wout, 2 * i * d->w,
						      y + i * d->wout, idx + i * d->wout);
				for (; q < d->wout; q++) {
					int s = 2 * q, at = s;
					float best = r0[s], v;
					int gt;
					v = r0[s + 1], gt = v > best, best = gt ? v : best, at = gt ? s + 1 : at;
					v = r1[s], gt = v > best, best = gt ? v : best, at = gt ? d->w + s : at;
					v = r1[s + 1], gt = v > best, best = gt ? v : best,
					at = gt ? d->w + s + 1 : at;
					at += 2 * i * d->w;
					y[i * d->wout + q] = best;
					idx[i * d->wout + q] = at;
				}
			}
		}
		return;
	}
	struct nn_pool_desc sub = *d;
	sub.n = 1, sub.c = e - b;
	cpu_pool_fwd(&sub, j->x + b * in, j->y + b * out, j->idx ? j->idx + b * out : NULL);
}

static void pool_bwd_part(void *ctx, int b, int e, int tid)
{
	const struct ew_job *j = ctx;
	const struct nn_pool_desc *d = j->pd;
	(void)tid;
	size_t in = (size_t)d->h * d->w, out = (size_t)d->hout * d->wout;
	struct nn_pool_desc sub = *d;
	sub.n = 1, sub.c = e - b;
	cpu_pool_bwd(&sub, j->dy + b * out, j->cidx ? j->cidx + b * out : NULL, j->dx + b * in);
}

void fast_pool_fwd(const struct nn_pool_desc *d, const float *x, float *y, int32_t *idx)
{
	struct ew_job j = {.pd = d, .x = x, .y = y, .idx = idx};
	par_for(d->n * d->c, pool_fwd_part, &j);
}
void fast_pool_bwd(const struct nn_pool_desc *d, const float *dy, const int32_t *idx, float *dx)
{
	struct ew_job j = {.pd = d, .dy = dy, .cidx = idx, .dx = dx};
	par_for(d->n * d->c, pool_bwd_part, &j);
}

static void up_part(void *ctx, int b, int e, int tid)
{
	const struct ew_job *j = ctx;
	(void)tid;
	size_t in = (size_t)j->h * j->w, out = in * j->scale * j->scale;
	if (j->flag)
		cpu_upsample_bwd(j->up, 1, e - b, j->h, j->w, j->scale, j->dy + b * out, j->dx + b * in);
	else
		cpu_upsample_fwd(j->up, 1, e - b, j->h, j->w, j->scale, j->x + b * in, j->y + b * out);
}

void fast_upsample_fwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		       const float *x, float *y)
{
	struct ew_job j = {.up = mode, .h = h, .w = w, .scale = scale, .x = x, .y = y, .flag = 0};
	par_for(n * c, up_part, &j);
}
void fast_upsample_bwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		       const float *dy, float *dx)
{
	struct ew_job j = {.up = mode, .h = h, .w = w, .scale = scale, .dy = dy, .dx = dx, .flag = 1};
	par_for(n * c, up_part, &j);
}
