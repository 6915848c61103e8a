/* fast: convolution as im2col + one OpenBLAS sgemm per group (Chellapilla
 * et al. 2006). Small images are batched: the columns of nb images sit side by
 * side so that each sgemm is large enough to keep both cores busy; the output
 * of such a batch is scattered back to NCHW. All scratch memory is the
 * caller's workspace, so a training step allocates nothing. */
#include <cblas.h>
#include <string.h>

#include "nn/cpu/cpu_ops.h"

/* Target number of output columns per sgemm: beyond this the column buffer
 * only grows without the sgemm getting faster. */
#define CONV_COLS 4096

void fast_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	       const float *b, int ldb, float beta, float *c, int ldc)
{
	if (m == 0 || n == 0)
		return;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
		    n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static int conv_batch(const struct nn_conv_desc *d)
{
	int hw = d->hout * d->wout, nb = CONV_COLS / hw;
	if (nb < 1)
		nb = 1;
	if (nb > d->n)
		nb = d->n;
	return nb;
}

/* A 1x1, stride 1, unpadded convolution needs no im2col: x is its own column matrix. */
static int conv_is_pointwise(const struct nn_conv_desc *d)
{
	return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}

size_t fast_conv2d_workspace(const struct nn_conv_desc *d)
{
	size_t nb = conv_batch(d), cols = nb * d->hout * d->wout;
	size_t col = (size_t)d->cin * d->kh * d->kw * cols;
	size_t buf = nb > 1 ? (size_t)d->cout * cols : 0;
	return (col + buf) * sizeof(float) + 128;
}

/* col[(ci kh + p) kw + q][i wout + j] = x[ci][i s - pad + p dil][j s - pad + q dil], or 0
 * outside; ld is the column matrix's row length (several images side by side). */
static void im2col(const struct nn_conv_desc *d, const float *x, float *col, size_t ld)
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
				for (int i = 0; i < d->hout; i++) {
					float *o = row + (size_t)i * d->wout;
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

/* The adjoint of im2col: dx[ci][r][s] += every column entry that copied it.
 * dx must be zeroed by the caller. */
static void col2im(const struct nn_conv_desc *d, const float *col, size_t ld, float *dx)
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
				for (int i = 0; i < d->hout; i++) {
					int r = i * d->stride - d->pad + p * d->dil;
					if (r < 0 || r >= d->h)
						continue;
					const float *o = row + (size_t)i * d->wout;
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

struct conv_ws {
	float *col, *buf;
};

static struct conv_ws conv_ws(const struct nn_conv_desc *d, void *ws)
{
	size_t nb = conv_batch(d), cols = nb * d->hout * d->wout;
	float *base = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
	struct conv_ws w = {base, base + (size_t)d->cin * d->kh * d->kw * cols};
	return w;
}

void fast_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w,
		     const float *b, float *y, void *ws)
{
	struct conv_ws s = conv_ws(d, ws);
	int g = d->groups, cog = d->cout / g, k = d->cin / g * d->kh * d->kw;
	int hw = d->hout * d->wout, nb = conv_batch(d);
	size_t xin = (size_t)d->cin * d->h * d->w, yout = (size_t)d->cout * hw;
	for (int n0 = 0; n0 < d->n; n0 += nb) {
		int cnt = d->n - n0 < nb ? d->n - n0 : nb;
		size_t ld = (size_t)cnt * hw;
		const float *col = s.col;
		if (cnt == 1 && conv_is_pointwise(d))
			col = x + n0 * xin;
		else
			for (int i = 0; i < cnt; i++)
				im2col(d, x + (n0 + i) * xin, s.col + (size_t)i * hw, ld);
		float *out = cnt == 1 ? y + n0 * yout : s.buf;
		for (int gi = 0; gi < g; gi++)
			fast_gemm(0, 0, cog, (int)ld, k, 1, w + (size_t)gi * cog * k, k,
				  col + (size_t)gi * k * ld, (int)ld, 0, out + (size_t)gi * cog * ld,
				  (int)ld);
		if (cnt > 1)
			rows_to_batch(cnt, d->cout, hw, s.buf, y + n0 * yout);
	}
	if (b)
		cpu_bias_add(d->n, d->cout, hw, y, b);
}

void fast_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w,
			  float *dx, void *ws)
{
	struct conv_ws s = conv_ws(d, ws);
	int g = d->groups, cog = d->cout / g, k = d->cin / g * d->kh * d->kw;
	int hw = d->hout * d->wout, nb = conv_batch(d);
	size_t xin = (size_t)d->cin * d->h * d->w, yout = (size_t)d->cout * hw;
	int direct = conv_is_pointwise(d);
	if (!direct)
		memset(dx, 0, sizeof(float) * d->n * xin);
	for (int n0 = 0; n0 < d->n; n0 += nb) {
		int cnt = d->n - n0 < nb ? d->n - n0 : nb;
		size_t ld = (size_t)cnt * hw;
		const float *dyr = dy + n0 * yout;
		if (cnt > 1) {
			batch_to_rows(cnt, d->cout, hw, dyr, s.buf);
			dyr = s.buf;
		}
		float *dcol = cnt == 1 && direct ? dx + n0 * xin : s.col;
		for (int gi = 0; gi < g; gi++)
			fast_gemm(1, 0, k, (int)ld, cog, 1, w + (size_t)gi * cog * k, k,
				  dyr + (size_t)gi * cog * ld, (int)ld, 0, dcol + (size_t)gi * k * ld,
				  (int)ld);
		if (cnt == 1 && direct)
			continue;
		if (direct) /* pointwise conv: the columns are the images themselves */
			rows_to_batch(cnt, d->cin, hw, s.col, dx + n0 * xin);
		else
			for (int i = 0; i < cnt; i++)
				col2im(d, s.col + (size_t)i * hw, ld, dx + (n0 + i) * xin);
	}
}

void fast_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
			    float *dw, float *db, void *ws)
{
	struct conv_ws s = conv_ws(d, ws);
	int g = d->groups, cog = d->cout / g, k = d->cin / g * d->kh * d->kw;
	int hw = d->hout * d->wout, nb = conv_batch(d);
	size_t xin = (size_t)d->cin * d->h * d->w, yout = (size_t)d->cout * hw;
	for (int n0 = 0; n0 < d->n; n0 += nb) {
		int cnt = d->n - n0 < nb ? d->n - n0 : nb;
		size_t ld = (size_t)cnt * hw;
		const float *col = s.col, *dyr = dy + n0 * yout;
		if (cnt == 1 && conv_is_pointwise(d))
			col = x + n0 * xin;
		else
			for (int i = 0; i < cnt; i++)
				im2col(d, x + (n0 + i) * xin, s.col + (size_t)i * hw, ld);
		if (cnt > 1) {
			batch_to_rows(cnt, d->cout, hw, dyr, s.buf);
			dyr = s.buf;
		}
		for (int gi = 0; gi < g; gi++)
			fast_gemm(0, 1, cog, k, (int)ld, 1, dyr + (size_t)gi * cog * ld, (int)ld,
				  col + (size_t)gi * k * ld, (int)ld, n0 ? 1 : 0,
				  dw + (size_t)gi * cog * k, k);
	}
	if (db)
		cpu_bias_grad(d->n, d->cout, hw, dy, db);
}
