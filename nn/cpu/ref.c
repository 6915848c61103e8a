/* ref: plain loops for every backend slot. Clarity first: this is the
 * reference the fast path and the CUDA backend are tested against. */
/* the loops here are written to be vectorized; -O2 alone leaves most of them scalar */
#pragma GCC optimize("O3")
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "nn/cpu/cpu_ops.h"

static _Atomic size_t allocations;

size_t nn_cpu_allocations(void) { return allocations; }

void *cpu_alloc(size_t bytes)
{
	void *p = NULL;
	allocations++;
	/* 64-byte alignment for AVX loads in BLAS and our loops. A block of 4
	   MiB or more (a net's arenas, its flat buffers) starts on a 2 MiB
	   boundary and asks for transparent huge pages, which the kernel gives
	   where it allows them (Debian's default is madvise): first touching an
	   arena then takes 512 times fewer page faults, and its loops fewer TLB
	   misses. */
	size_t align = bytes >= ((size_t)4 << 20) ? (size_t)2 << 20 : 64;
	if (posix_memalign(&p, align, bytes ? bytes : 64))
		return NULL;
	if (align > 64)
		madvise(p, bytes, MADV_HUGEPAGE); /* a hint: its failure changes nothing */
	return p;
}
void cpu_free(void *p) { free(p); }
void cpu_upload(void *dst, const void *host, size_t bytes) { memcpy(dst, host, bytes); }
void cpu_download(void *host, const void *src, size_t bytes) { memcpy(host, src, bytes); }
void cpu_sync(void) {}

void cpu_fill(float *x, size_t n, float v)
{
	for (size_t i = 0; i < n; i++)
		x[i] = v;
}
void cpu_copy(float *dst, const float *src, size_t n) { memmove(dst, src, n * sizeof(float)); }
void cpu_add(const float *a, const float *b, float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = a[i] + b[i];
}
/* dx = the activation's gradient from its output y and dy, for the fused
 * norm and add backwards (ReLU and LeakyReLU: y > 0 iff their input was, so
 * their vectorizing loops in cpu_act_bwd serve with y for x). */
static void act_grad_from_y(enum nn_act act, float alpha, const float *y, const float *dy,
			    float *dx, size_t n)
{
	if (act == NN_ACT_RELU || act == NN_ACT_LEAKY)
		cpu_act_bwd(act, alpha, y, y, dy, dx, n);
	else
		for (size_t i = 0; i < n; i++)
			dx[i] = nn_act_grad(act, alpha, y[i], dy[i]);
}

/* The sum, then the activation over it, 1024 values at a time (in L1). */
void cpu_add_act(enum nn_act act, float alpha, const float *a, const float *b, float *y, size_t n)
{
	for (size_t i = 0; i < n; i += 1024) {
		size_t m = n - i < 1024 ? n - i : 1024;
		cpu_add(a + i, b + i, y + i, m);
		if (act != NN_ACT_NONE)
			cpu_act_fwd(act, alpha, y + i, y + i, m);
	}
}
void cpu_add_act_bwd(enum nn_act act, float alpha, const float *y, const float *dy, float *da,
		     float *db, size_t n)
{
	if (act == NN_ACT_NONE)
		cpu_copy(da, dy, n);
	else
		act_grad_from_y(act, alpha, y, dy, da, n);
	if (db != da)
		cpu_copy(db, da, n);
}
void cpu_axpy(size_t n, float a, const float *x, float *y)
{
	for (size_t i = 0; i < n; i++)
		y[i] += a * x[i];
}
void cpu_mul(const float *a, const float *b, float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = a[i] * b[i];
}
void cpu_scale(float *x, size_t n, float a)
{
	for (size_t i = 0; i < n; i++)
		x[i] *= a;
}

void cpu_bias_add(int n, int c, int hw, float *y, const float *b)
{
	for (int i = 0; i < n; i++)
		for (int k = 0; k < c; k++) {
			float *p = y + ((size_t)i * c + k) * hw, v = b[k];
			for (int j = 0; j < hw; j++)
				p[j] += v;
		}
}

void cpu_bias_grad(int n, int c, int hw, const float *dy, float *db)
{
	cpu_bias_grad_range(n, c, hw, dy, db, 0, c);
}

void ref_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	      const float *b, int ldb, float beta, float *c, int ldc)
{
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double s = 0;
			for (int p = 0; p < k; p++) {
				float av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
				float bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
				s += (double)av * bv;
			}
			float *cv = &c[(size_t)i * ldc + j];
			*cv = (float)(alpha * s + (beta != 0 ? beta * *cv : 0));
		}
}

size_t ref_conv2d_workspace(const struct nn_conv_desc *d)
{
	(void)d;
	return 0;
}

/* Visit every (output, weight, input) triple of the convolution; the three
 * passes differ only in which of the three is accumulated. */
enum conv_pass { FWD, BWD_DATA, BWD_FILTER };

static void conv_loops(const struct nn_conv_desc *d, enum conv_pass pass, const float *x,
		       float *dx, const float *w, float *dw, const float *dy, float *y)
{
	int cig = d->cin / d->groups, cog = d->cout / d->groups;
	for (int n = 0; n < d->n; n++)
		for (int co = 0; co < d->cout; co++) {
			int g = co / cog;
			for (int i = 0; i < d->hout; i++)
				for (int j = 0; j < d->wout; j++) {
					size_t yo = (((size_t)n * d->cout + co) * d->hout + i) * d->wout + j;
					double acc = 0;
					for (int ci = 0; ci < cig; ci++)
						for (int p = 0; p < d->kh; p++) {
							int r = i * d->stride - d->pad + p * d->dil;
							if (r < 0 || r >= d->h)
								continue;
							for (int q = 0; q < d->kw; q++) {
								int s = j * d->stride - d->pad + q * d->dil;
								if (s < 0 || s >= d->w)
									continue;
								size_t xo = (((size_t)n * d->cin + g * cig + ci) * d->h + r) * d->w + s;
								size_t wo = (((size_t)co * cig + ci) * d->kh + p) * d->kw + q;
								if (pass == FWD)
									acc += (double)w[wo] * x[xo];
								else if (pass == BWD_DATA)
									dx[xo] += w[wo] * dy[yo];
								else
									dw[wo] += x[xo] * dy[yo];
							}
						}
					if (pass == FWD)
						y[yo] = (float)acc;
				}
		}
}

void ref_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w, const float *b,
		    float *y, void *ws)
{
	(void)ws;
	conv_loops(d, FWD, x, NULL, w, NULL, NULL, y);
	if (b)
		cpu_bias_add(d->n, d->cout, d->hout * d->wout, y, b);
}

void ref_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w, float *dx,
			 void *ws)
{
	(void)ws;
	memset(dx, 0, sizeof(float) * d->n * d->cin * d->h * d->w);
	conv_loops(d, BWD_DATA, NULL, dx, w, NULL, dy, NULL);
}

void ref_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
			   float *dw, float *db, void *ws)
{
	(void)ws;
	memset(dw, 0, sizeof(float) * d->cout * (d->cin / d->groups) * d->kh * d->kw);
	conv_loops(d, BWD_FILTER, x, NULL, NULL, dw, dy, NULL);
	if (db)
		cpu_bias_grad(d->n, d->cout, d->hout * d->wout, dy, db);
}

/* ReLU and LeakyReLU load every operand, then select: so they vectorize.
 * Written `x[i] > 0 ? dy[i] : 0`, the backward compiled to a compare and a
 * branch per element, mispredicted half the time on ReLU's coin-toss signs:
 * it alone took 18.7% of the default classifier's time (perf, session 6). */
void cpu_act_fwd(enum nn_act kind, float alpha, const float *x, float *y, size_t n)
{
	switch (kind) {
	case NN_ACT_RELU:
		for (size_t i = 0; i < n; i++) {
			float v = x[i];
			y[i] = v > 0 ? v : 0.0f;
		}
		break;
	case NN_ACT_LEAKY:
		for (size_t i = 0; i < n; i++) {
			float v = x[i];
			y[i] = v > 0 ? v : alpha * v;
		}
		break;
	case NN_ACT_TANH:
		for (size_t i = 0; i < n; i++)
			y[i] = tanhf(x[i]);
		break;
	case NN_ACT_SIGMOID:
		for (size_t i = 0; i < n; i++)
			y[i] = 1.0f / (1.0f + expf(-x[i]));
		break;
	case NN_ACT_NONE:
		cpu_copy(y, x, n);
		break;
	}
}

void cpu_act_bwd(enum nn_act kind, float alpha, const float *x, const float *y, const float *dy,
		 float *dx, size_t n)
{
	switch (kind) {
	case NN_ACT_RELU:
		for (size_t i = 0; i < n; i++) {
			float d = dy[i];
			dx[i] = x[i] > 0 ? d : 0.0f;
		}
		break;
	case NN_ACT_LEAKY:
		for (size_t i = 0; i < n; i++) {
			float d = dy[i];
			dx[i] = x[i] > 0 ? d : alpha * d;
		}
		break;
	case NN_ACT_TANH:
		for (size_t i = 0; i < n; i++)
			dx[i] = dy[i] * (1 - y[i] * y[i]);
		break;
	case NN_ACT_SIGMOID:
		for (size_t i = 0; i < n; i++)
			dx[i] = dy[i] * y[i] * (1 - y[i]);
		break;
	case NN_ACT_NONE:
		cpu_copy(dx, dy, n);
		break;
	}
}

/* Row sums with 8 independent float lanes (so the compiler vectorizes them;
 * a single accumulator may not be reordered), added up in double per row. */
static double row_sum(const float *p, int n)
{
	float acc[8] = {0};
	int j = 0;
	for (; j + 8 <= n; j += 8)
		for (int l = 0; l < 8; l++)
			acc[l] += p[j + l];
	double s = 0;
	for (; j < n; j++)
		s += p[j];
	for (int l = 0; l < 8; l++)
		s += acc[l];
	return s;
}

/* db[k] = sum of dy[i][k][.] for channels k in [k0, k1) */
void cpu_bias_grad_range(int n, int c, int hw, const float *dy, float *db, int k0, int k1)
{
	for (int k = k0; k < k1; k++) {
		double s = 0;
		for (int i = 0; i < n; i++)
			s += row_sum(dy + ((size_t)i * c + k) * hw, hw);
		db[k] = (float)s;
	}
}

static double row_sqdev(const float *p, int n, float m)
{
	float acc[8] = {0};
	int j = 0;
	for (; j + 8 <= n; j += 8)
		for (int l = 0; l < 8; l++)
			acc[l] += (p[j + l] - m) * (p[j + l] - m);
	double s = 0;
	for (; j < n; j++)
		s += (double)(p[j] - m) * (p[j] - m);
	for (int l = 0; l < 8; l++)
		s += acc[l];
	return s;
}

/* sum dy and sum dy (x - m) over a row */
static void row_dots(const float *dy, const float *x, int n, float m, double *s1, double *s2)
{
	float a1[8] = {0}, a2[8] = {0};
	int j = 0;
	for (; j + 8 <= n; j += 8)
		for (int l = 0; l < 8; l++) {
			a1[l] += dy[j + l];
			a2[l] += dy[j + l] * (x[j + l] - m);
		}
	for (; j < n; j++) {
		*s1 += dy[j];
		*s2 += (double)dy[j] * (x[j] - m);
	}
	for (int l = 0; l < 8; l++) {
		*s1 += a1[l];
		*s2 += a2[l];
	}
}

/* Mean and (biased) variance of x[i][k][.] over i in [0, n), two passes. */
static void channel_stats(int n, int c, int hw, int k, const float *x, double *mean, double *var)
{
	double s = 0, s2 = 0;
	for (int i = 0; i < n; i++)
		s += row_sum(x + ((size_t)i * c + k) * hw, hw);
	double m = s / ((double)n * hw);
	for (int i = 0; i < n; i++)
		s2 += row_sqdev(x + ((size_t)i * c + k) * hw, hw, (float)m);
	*mean = m;
	*var = s2 / ((double)n * hw);
}

static void normalize_channel(int n, int c, int hw, int k, const float *x, float *y, float mean,
			      float invstd, float g, float b)
{
	float a = g * invstd, o = b - mean * a;
	for (int i = 0; i < n; i++) {
		const float *p = x + ((size_t)i * c + k) * hw;
		float *q = y + ((size_t)i * c + k) * hw;
		for (int j = 0; j < hw; j++)
			q[j] = p[j] * a + o;
	}
}

/* y[i][k][.] = act(y[i][k][.]) for every sample i: the activation of a
 * fused norm, after the channel is normalized (the same values as a
 * separate activation layer's). */
static void act_channel(int n, int c, int hw, int k, enum nn_act act, float alpha, float *y)
{
	if (act == NN_ACT_NONE)
		return;
	for (int i = 0; i < n; i++) {
		float *q = y + ((size_t)i * c + k) * hw;
		cpu_act_fwd(act, alpha, q, q, (size_t)hw);
	}
}

/* dx[i][k][.] = the activation's gradient from y and dy: a fused norm's
 * backward first turns the gradient of its output into the gradient of the
 * norm's output, in dx, and then reads it from there. */
static const float *act_grad_channel(int n, int c, int hw, int k, enum nn_act act, float alpha,
				     const float *y, const float *dy, float *dx)
{
	if (act == NN_ACT_NONE)
		return dy;
	for (int i = 0; i < n; i++) {
		size_t o = ((size_t)i * c + k) * hw;
		act_grad_from_y(act, alpha, y + o, dy + o, dx + o, (size_t)hw);
	}
	return dx;
}

void cpu_bn_fwd_train_range(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			    const float *gamma, const float *beta, float eps, float momentum,
			    float *y, float *save_mean, float *save_invstd, float *run_mean,
			    float *run_var, int k0, int k1)
{
	double m_count = (double)n * hw;
	for (int k = k0; k < k1; k++) {
		double mean, var;
		channel_stats(n, c, hw, k, x, &mean, &var);
		float invstd = (float)(1.0 / sqrt(var + eps));
		save_mean[k] = (float)mean;
		save_invstd[k] = invstd;
		double unbiased = m_count > 1 ? var * m_count / (m_count - 1) : var;
		run_mean[k] = (float)((1 - momentum) * run_mean[k] + momentum * mean);
		run_var[k] = (float)((1 - momentum) * run_var[k] + momentum * unbiased);
		normalize_channel(n, c, hw, k, x, y, (float)mean, invstd, gamma[k], beta[k]);
		act_channel(n, c, hw, k, act, alpha, y);
	}
}

void cpu_bn_fwd_train(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		      const float *gamma, const float *beta, float eps, float momentum, float *y,
		      float *save_mean, float *save_invstd, float *run_mean, float *run_var)
{
	cpu_bn_fwd_train_range(n, c, hw, act, alpha, x, gamma, beta, eps, momentum, y, save_mean,
			       save_invstd, run_mean, run_var, 0, c);
}

void cpu_bn_fwd_eval_range(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			   const float *gamma, const float *beta, const float *run_mean,
			   const float *run_var, float eps, float *y, int k0, int k1)
{
	for (int k = k0; k < k1; k++) {
		normalize_channel(n, c, hw, k, x, y, run_mean[k], 1.0f / sqrtf(run_var[k] + eps),
				  gamma[k], beta[k]);
		act_channel(n, c, hw, k, act, alpha, y);
	}
}

void cpu_bn_fwd_eval(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		     const float *gamma, const float *beta, const float *run_mean,
		     const float *run_var, float eps, float *y)
{
	cpu_bn_fwd_eval_range(n, c, hw, act, alpha, x, gamma, beta, run_mean, run_var, eps, y, 0, c);
}

/* dx = g invstd / M (M dy - sum dy - xhat sum(dy xhat)) over the M values that
 * shared the statistics (Ioffe & Szegedy 2015, sec. 3). */
static void norm_bwd_block(int n, int c, int hw, int k, const float *x, const float *dy, float g,
			   float mean, float invstd, float *dx, double *sdy, double *sdyx)
{
	double s1 = 0, s2 = 0, m = (double)n * hw;
	for (int i = 0; i < n; i++) {
		size_t o = ((size_t)i * c + k) * hw;
		row_dots(dy + o, x + o, hw, mean, &s1, &s2);
	}
	s2 *= invstd; /* sum dy xhat */
	float a = g * invstd, mdy = (float)(s1 / m), mdyx = (float)(s2 / m);
	for (int i = 0; i < n; i++) {
		size_t o = ((size_t)i * c + k) * hw;
		for (int j = 0; j < hw; j++) {
			float xh = (x[o + j] - mean) * invstd;
			dx[o + j] = a * (dy[o + j] - mdy - xh * mdyx);
		}
	}
	*sdy = s1;
	*sdyx = s2;
}

void cpu_bn_bwd_range(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		      const float *y, const float *dy, const float *gamma, const float *save_mean,
		      const float *save_invstd, float *dx, float *dgamma, float *dbeta, int k0,
		      int k1)
{
	for (int k = k0; k < k1; k++) {
		double s1, s2;
		const float *g = act_grad_channel(n, c, hw, k, act, alpha, y, dy, dx);
		norm_bwd_block(n, c, hw, k, x, g, gamma[k], save_mean[k], save_invstd[k], dx, &s1, &s2);
		dgamma[k] = (float)s2;
		dbeta[k] = (float)s1;
	}
}

void cpu_bn_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x, const float *y,
		const float *dy, const float *gamma, const float *save_mean,
		const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
	cpu_bn_bwd_range(n, c, hw, act, alpha, x, y, dy, gamma, save_mean, save_invstd, dx, dgamma,
			 dbeta, 0, c);
}

void cpu_in_fwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		const float *gamma, const float *beta, float eps, float *y, float *save_mean,
		float *save_invstd)
{
	for (int i = 0; i < n; i++)
		for (int k = 0; k < c; k++) {
			const float *xi = x + (size_t)i * c * hw;
			float *yi = y + (size_t)i * c * hw;
			double mean, var;
			channel_stats(1, c, hw, k, xi, &mean, &var);
			float invstd = (float)(1.0 / sqrt(var + eps));
			save_mean[i * c + k] = (float)mean;
			save_invstd[i * c + k] = invstd;
			normalize_channel(1, c, hw, k, xi, yi, (float)mean, invstd, gamma[k], beta[k]);
			act_channel(1, c, hw, k, act, alpha, yi);
		}
}

void cpu_in_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x, const float *y,
		const float *dy, const float *gamma, const float *save_mean,
		const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
	for (int k = 0; k < c; k++)
		dgamma[k] = dbeta[k] = 0;
	for (int i = 0; i < n; i++)
		for (int k = 0; k < c; k++) {
			size_t o = (size_t)i * c * hw;
			double s1, s2;
			const float *g = act_grad_channel(1, c, hw, k, act, alpha, y ? y + o : NULL,
							  dy + o, dx + o);
			norm_bwd_block(1, c, hw, k, x + o, g, gamma[k], save_mean[i * c + k],
				       save_invstd[i * c + k], dx + o, &s1, &s2);
			dgamma[k] += (float)s2;
			dbeta[k] += (float)s1;
		}
}

void cpu_pool_fwd(const struct nn_pool_desc *d, const float *x, float *y, int32_t *idx)
{
	for (int nc = 0; nc < d->n * d->c; nc++) {
		const float *xp = x + (size_t)nc * d->h * d->w;
		for (int i = 0; i < d->hout; i++)
			for (int j = 0; j < d->wout; j++) {
				float best = -FLT_MAX, sum = 0;
				int arg = -1, count = 0;
				for (int p = 0; p < d->kh; p++) {
					int r = i * d->sh - d->ph + p;
					if (r < 0 || r >= d->h)
						continue;
					for (int q = 0; q < d->kw; q++) {
						int s = j * d->sw - d->pw + q;
						if (s < 0 || s >= d->w)
							continue;
						float v = xp[r * d->w + s];
						if (arg < 0 || v > best)
							best = v, arg = r * d->w + s;
						sum += v;
						count++;
					}
				}
				size_t o = ((size_t)nc * d->hout + i) * d->wout + j;
				if (d->kind == NN_POOL_MAX) {
					y[o] = best;
					if (idx)
						idx[o] = arg;
				} else {
					y[o] = sum / count;
				}
			}
	}
}

void cpu_pool_bwd(const struct nn_pool_desc *d, const float *dy, const int32_t *idx, float *dx)
{
	memset(dx, 0, sizeof(float) * d->n * d->c * d->h * d->w);
	for (int nc = 0; nc < d->n * d->c; nc++) {
		float *dxp = dx + (size_t)nc * d->h * d->w;
		for (int i = 0; i < d->hout; i++)
			for (int j = 0; j < d->wout; j++) {
				size_t o = ((size_t)nc * d->hout + i) * d->wout + j;
				if (d->kind == NN_POOL_MAX) {
					dxp[idx[o]] += dy[o];
					continue;
				}
				int r0 = i * d->sh - d->ph, s0 = j * d->sw - d->pw;
				int r1 = r0 + d->kh, s1 = s0 + d->kw;
				r0 = r0 < 0 ? 0 : r0, s0 = s0 < 0 ? 0 : s0;
				r1 = r1 > d->h ? d->h : r1, s1 = s1 > d->w ? d->w : s1;
				float g = dy[o] / ((r1 - r0) * (s1 - s0));
				for (int r = r0; r < r1; r++)
					for (int s = s0; s < s1; s++)
						dxp[r * d->w + s] += g;
			}
	}
}

/* Source coordinate and weight of bilinear sampling with half-pixel centres. */
static void bilinear_src(int o, int scale, int size, int *i0, int *i1, float *l)
{
	float s = (o + 0.5f) / scale - 0.5f;
	if (s < 0)
		s = 0;
	int a = (int)s;
	if (a > size - 1)
		a = size - 1;
	*i0 = a;
	*i1 = a + 1 < size ? a + 1 : size - 1;
	*l = s - a;
}

static void upsample(int backward, enum nn_upsample_mode mode, int n, int c, int h, int w,
		     int scale, const float *src, float *dst)
{
	int ho = h * scale, wo = w * scale;
	if (backward)
		memset(dst, 0, sizeof(float) * n * c * h * w);
	for (int nc = 0; nc < n * c; nc++) {
		const float *xp = backward ? NULL : src + (size_t)nc * h * w;
		float *dxp = backward ? dst + (size_t)nc * h * w : NULL;
		for (int i = 0; i < ho; i++)
			for (int j = 0; j < wo; j++) {
				size_t o = ((size_t)nc * ho + i) * wo + j;
				if (mode == NN_UP_NEAREST) {
					int s = (i / scale) * w + j / scale;
					if (backward)
						dxp[s] += src[o];
					else
						dst[o] = xp[s];
					continue;
				}
				int y0, y1, x0, x1;
				float ly, lx;
				bilinear_src(i, scale, h, &y0, &y1, &ly);
				bilinear_src(j, scale, w, &x0, &x1, &lx);
				float w00 = (1 - ly) * (1 - lx), w01 = (1 - ly) * lx;
				float w10 = ly * (1 - lx), w11 = ly * lx;
				if (backward) {
					float g = src[o];
					dxp[y0 * w + x0] += w00 * g;
					dxp[y0 * w + x1] += w01 * g;
					dxp[y1 * w + x0] += w10 * g;
					dxp[y1 * w + x1] += w11 * g;
				} else {
					dst[o] = w00 * xp[y0 * w + x0] + w01 * xp[y0 * w + x1] +
						 w10 * xp[y1 * w + x0] + w11 * xp[y1 * w + x1];
				}
			}
	}
}

void cpu_upsample_fwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		      const float *x, float *y)
{
	upsample(0, mode, n, c, h, w, scale, x, y);
}

void cpu_upsample_bwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		      const float *dy, float *dx)
{
	upsample(1, mode, n, c, h, w, scale, dy, dx);
}

void cpu_channel_copy(int n, int hw, int csrc, const float *src, int cdst, int coff, float *dst,
		      int accumulate)
{
	size_t len = (size_t)csrc * hw;
	for (int i = 0; i < n; i++) {
		const float *s = src + (size_t)i * len;
		float *d = dst + ((size_t)i * cdst + coff) * hw;
		if (accumulate)
			cpu_axpy(len, 1, s, d);
		else
			memcpy(d, s, len * sizeof(float));
	}
}

void cpu_channel_slice(int n, int hw, int csrc, int coff, const float *src, int cdst, float *dst,
		       int accumulate)
{
	size_t len = (size_t)cdst * hw;
	for (int i = 0; i < n; i++) {
		const float *s = src + ((size_t)i * csrc + coff) * hw;
		float *d = dst + (size_t)i * len;
		if (accumulate)
			cpu_axpy(len, 1, s, d);
		else
			memcpy(d, s, len * sizeof(float));
	}
}

/* splitmix64 (Steele, Lea & Flood 2014) as a counter-based generator. */
static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void cpu_dropout_fwd(size_t n, float p, uint64_t seed, const float *x, float *y, float *mask)
{
	float keep = 1.0f / (1.0f - p);
	uint64_t key = mix64(seed);
	for (size_t i = 0; i < n; i++) {
		float u = (float)(mix64(key ^ (uint64_t)i) >> 40) * (1.0f / 16777216.0f);
		mask[i] = u < p ? 0.0f : keep;
		y[i] = x[i] * mask[i];
	}
}

void cpu_softmax_xent(int n, int c, int hw, const float *logits, const int32_t *labels,
		      const float *class_w, float *dlogits, float *loss)
{
	double wsum = 0, lsum = 0;
	for (int i = 0; i < n * hw; i++) {
		int y = labels[i];
		if (y >= 0 && y < c)
			wsum += class_w ? class_w[y] : 1;
	}
	for (int i = 0; i < n; i++)
		for (int p = 0; p < hw; p++) {
			const float *l = logits + (size_t)i * c * hw + p;
			float *dl = dlogits + (size_t)i * c * hw + p;
			int y = labels[i * hw + p];
			if (y < 0 || y >= c || wsum == 0) {
				for (int k = 0; k < c; k++)
					dl[(size_t)k * hw] = 0;
				continue;
			}
			float mx = l[0];
			for (int k = 1; k < c; k++)
				mx = l[(size_t)k * hw] > mx ? l[(size_t)k * hw] : mx;
			double se = 0;
			for (int k = 0; k < c; k++)
				se += exp(l[(size_t)k * hw] - mx);
			double lse = mx + log(se), wy = class_w ? class_w[y] : 1;
			lsum += wy * (lse - l[(size_t)y * hw]);
			for (int k = 0; k < c; k++) {
				double pk = exp(l[(size_t)k * hw] - lse);
				dl[(size_t)k * hw] = (float)(wy * (pk - (k == y)) / wsum);
			}
		}
	*loss = wsum > 0 ? (float)(lsum / wsum) : 0;
}

void cpu_bce_logits(size_t n, const float *x, const float *t, const float *w, float *dx,
		    float *loss)
{
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		double wi = w ? w[i] : 1, xi = x[i];
		s += wi * ((xi > 0 ? xi : 0) - xi * t[i] + log1p(exp(-fabs(xi))));
		dx[i] = (float)(wi * (1.0 / (1.0 + exp(-xi)) - t[i]) / n);
	}
	*loss = n ? (float)(s / n) : 0;
}

void cpu_l1(size_t n, const float *x, const float *t, float *dx, float *loss)
{
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		float d = x[i] - t[i];
		s += fabsf(d);
		dx[i] = (d > 0 ? 1.0f : d < 0 ? -1.0f : 0.0f) / n;
	}
	*loss = n ? (float)(s / n) : 0;
}

void cpu_mse(size_t n, const float *x, const float *t, float *dx, float *loss)
{
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		float d = x[i] - t[i];
		s += (double)d * d;
		dx[i] = 2 * d / n;
	}
	*loss = n ? (float)(s / n) : 0;
}

void cpu_argmax(int n, int c, const float *x, int32_t *out)
{
	for (int i = 0; i < n; i++) {
		const float *r = x + (size_t)i * c;
		int best = 0;
		for (int k = 1; k < c; k++)
			if (r[k] > r[best])
				best = k;
		out[i] = best;
	}
}

/* PyTorch's SGD: g += wd w; m = mu m + g; step = nesterov ? g + mu m : m. */
void cpu_sgd_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
		  float momentum, float wd, int nesterov)
{
	for (size_t i = 0; i < n; i++) {
		float gi = g[i] + (i < ndecay ? wd : 0) * w[i];
		m[i] = momentum * m[i] + gi;
		w[i] -= lr * (nesterov ? gi + momentum * m[i] : m[i]);
	}
}

void cpu_adam_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		   float lr, float b1, float b2, float eps, float wd, int decoupled, int t)
{
	float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
	for (size_t i = 0; i < n; i++) {
		float wdi = i < ndecay ? wd : 0;
		float gi = g[i] + (decoupled ? 0 : wdi * w[i]);
		m[i] = b1 * m[i] + (1 - b1) * gi;
		v[i] = b2 * v[i] + (1 - b2) * gi * gi;
		float step = (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
		w[i] -= lr * (step + (decoupled ? wdi * w[i] : 0));
	}
}
