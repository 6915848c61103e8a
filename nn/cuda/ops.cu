/* ops: own kernels for every slot that is not a convolution or a gemm.
 * Each kernel computes what the reference loop in nn/cpu/ref.c computes, in
 * the same order wherever a sum is formed per output (pooling and nearest
 * upsampling backward gather their inputs in the reference's order, so the
 * results are bitwise equal); reductions accumulate in double, in a fixed
 * order (block partials, then one block), so a run repeats exactly.
 * Arrays of activations and their gradients are cu_arr (rt.h): fp32, or
 * bf16 in BF16 activation storage, read with ld and written with st; values
 * are computed in fp32 either way. Parameters, statistics, dropout masks and
 * class weights stay float *. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "nn/cuda/div.h"
#include "nn/cuda/rt.h"

/* ---- helpers ----------------------------------------------------------- */

#define GRID_LOOP(i, n)                                                                     \
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);              \
	     i += (size_t)gridDim.x * blockDim.x)

__device__ static inline float ld(cu_arr a, size_t i)
{
	return a.bf ? __bfloat162float(((const __nv_bfloat16 *)a.p)[i]) : ((const float *)a.p)[i];
}
__device__ static inline void st(cu_arr a, size_t i, float v)
{
	if (a.bf)
		((__nv_bfloat16 *)a.p)[i] = __float2bfloat16_rn(v);
	else
		((float *)a.p)[i] = v;
}
#define ARR(p) cu_arr_of(p)
#define DIV(d) cu_div_of((unsigned)(d))

/* The kernels index elements with 32 bits (nn/cuda/div.h): a slot refuses a
 * tensor of 2^31 values or more, with a message, instead of computing
 * wrong indexes. false after reporting it. */
static bool fits(size_t n, const char *op)
{
	if (n <= 0x7fffffffu)
		return true;
	char why[128];
	snprintf(why, sizeof(why), "%zu values, more than the 2^31 - 1 the kernels index; use a "
		 "smaller batch", n);
	cu_fail(__FILE__, __LINE__, "the size check", why, "%s", op);
	return false;
}

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024), in a
 * fixed order; every thread gets the total. */
__device__ static double block_sum(double v)
{
	__shared__ double part[32];
	__shared__ double total;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_down_sync(0xffffffffu, v, o);
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	__syncthreads(); /* the previous call's readers are done with part and total */
	if (lane == 0)
		part[warp] = v;
	__syncthreads();
	if (warp == 0) {
		v = lane < (int)(blockDim.x >> 5) ? part[lane] : 0;
		for (int o = 16; o > 0; o >>= 1)
			v += __shfl_down_sync(0xffffffffu, v, o);
		if (lane == 0)
			total = v;
	}
	__syncthreads();
	return total;
}

/* Blocks of a reduction: one partial per block, at most RED_MAX. */
#define RED_MAX 1024
static unsigned red_blocks(size_t n)
{
	size_t b = (n + CU_THREADS - 1) / CU_THREADS;
	return b == 0 ? 1 : b > RED_MAX ? RED_MAX : (unsigned)b;
}

/* out[k] = sum of part[k*stride + 0 .. count) for k < nsums, one block each. */
__global__ static void sum_partials(const double *part, int count, int stride, double *out)
{
	double s = 0;
	for (int i = threadIdx.x; i < count; i += blockDim.x)
		s += part[(size_t)blockIdx.x * stride + i];
	s = block_sum(s);
	if (threadIdx.x == 0)
		out[blockIdx.x] = s;
}

/* ---- element-wise ------------------------------------------------------ */

__global__ static void k_fill(cu_arr x, size_t n, float v)
{
	GRID_LOOP(i, n) st(x, i, v);
}
__global__ static void k_copy(cu_arr x, cu_arr y, size_t n)
{
	GRID_LOOP(i, n) st(y, i, ld(x, i));
}
__global__ static void k_add(cu_arr a, cu_arr b, cu_arr y, size_t n)
{
	GRID_LOOP(i, n) st(y, i, ld(a, i) + ld(b, i));
}
__global__ static void k_axpy(size_t n, float a, cu_arr x, cu_arr y)
{
	GRID_LOOP(i, n) st(y, i, ld(y, i) + a * ld(x, i));
}
__global__ static void k_mul(cu_arr a, cu_arr b, cu_arr y, size_t n)
{
	GRID_LOOP(i, n) st(y, i, ld(a, i) * ld(b, i));
}
__global__ static void k_scale(cu_arr x, size_t n, float a)
{
	GRID_LOOP(i, n) st(x, i, ld(x, i) * a);
}

extern "C" void cu_fill(float *x, size_t n, float v)
{
	CU_ENTER();
	if (!n)
		return;
	k_fill<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(ARR(x), n, v);
	CU_LAUNCHED("fill n=%zu", n);
}

extern "C" void cu_copy(float *dst, const float *src, size_t n)
{
	CU_ENTER();
	if (!n || dst == src)
		return;
	cu_arr d = ARR(dst), s = ARR(src);
	if (d.bf == s.bf) {
		CU_RT(cudaMemcpyAsync(d.p, s.p, n * (d.bf ? 2 : 4), cudaMemcpyDeviceToDevice,
				      cu.compute),
		      "copy n=%zu", n);
		return;
	}
	k_copy<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(s, d, n);
	CU_LAUNCHED("copy n=%zu (%s to %s)", n, s.bf ? "bf16" : "fp32", d.bf ? "bf16" : "fp32");
}

extern "C" void cu_add(const float *a, const float *b, float *y, size_t n)
{
	CU_ENTER();
	if (!n)
		return;
	k_add<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(ARR(a), ARR(b), ARR(y), n);
	CU_LAUNCHED("add n=%zu", n);
}

extern "C" void cu_axpy(size_t n, float a, const float *x, float *y)
{
	CU_ENTER();
	if (!n)
		return;
	k_axpy<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(n, a, ARR(x), ARR(y));
	CU_LAUNCHED("axpy n=%zu", n);
}

extern "C" void cu_mul(const float *a, const float *b, float *y, size_t n)
{
	CU_ENTER();
	if (!n)
		return;
	k_mul<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(ARR(a), ARR(b), ARR(y), n);
	CU_LAUNCHED("mul n=%zu", n);
}

extern "C" void cu_scale(float *x, size_t n, float a)
{
	CU_ENTER();
	if (!n)
		return;
	k_scale<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(ARR(x), n, a);
	CU_LAUNCHED("scale n=%zu", n);
}

/* ---- bias ---------------------------------------------------------------- */

__global__ static void k_bias_add(size_t total, cu_div c, cu_div hw, cu_arr y, const float *b)
{
	GRID_LOOP(e, total) st(y, e, ld(y, e) + b[cu_rem(c, cu_quo(hw, (unsigned)e))]);
}

extern "C" void cu_bias_add(int n, int c, int hw, float *y, const float *b)
{
	CU_ENTER();
	size_t total = (size_t)n * c * hw;
	if (!total || !fits(total, "bias_add"))
		return;
	k_bias_add<<<cu_blocks(total), CU_THREADS, 0, cu.compute>>>(total, DIV(c), DIV(hw), ARR(y), b);
	CU_LAUNCHED("bias_add n=%d c=%d hw=%d", n, c, hw);
}

/* One block per channel: db[k] = sum over n and hw of dy[n][k][.]. */
__global__ static void k_bias_grad(int n, int c, cu_div hw, cu_arr dy, float *db)
{
	int k = blockIdx.x;
	unsigned m = (unsigned)n * hw.d;
	double s = 0;
	for (unsigned t = threadIdx.x; t < m; t += blockDim.x) {
		unsigned i = cu_quo(hw, t), j = t - i * hw.d;
		s += ld(dy, (i * c + k) * hw.d + j);
	}
	s = block_sum(s);
	if (threadIdx.x == 0)
		db[k] = (float)s;
}

extern "C" void cu_bias_grad(int n, int c, int hw, const float *dy, float *db)
{
	CU_ENTER();
	if (!c || !fits((size_t)n * c * hw, "bias_grad"))
		return;
	k_bias_grad<<<c, CU_THREADS, 0, cu.compute>>>(n, c, DIV(hw), ARR(dy), db);
	CU_LAUNCHED("bias_grad n=%d c=%d hw=%d", n, c, hw);
}

/* ---- activations ------------------------------------------------------- */

/* An activation: its kind and LeakyReLU's slope (NN_ACT_NONE: identity). */
struct act_fn {
	int kind;
	float alpha;
};

__device__ static inline float act_of(act_fn a, float v)
{
	switch (a.kind) {
	case NN_ACT_RELU:
		return v > 0 ? v : 0;
	case NN_ACT_LEAKY:
		return v > 0 ? v : a.alpha * v;
	case NN_ACT_TANH:
		return tanhf(v);
	case NN_ACT_SIGMOID:
		return 1.0f / (1.0f + expf(-v));
	default:
		return v;
	}
}

/* The gradient reaching a fused norm's output from its activation's: dy
 * itself when there is no activation (y is then not read). */
__device__ static inline float act_grad_at(act_fn a, cu_arr y, cu_arr dy, size_t e)
{
	float g = ld(dy, e);
	return a.kind == NN_ACT_NONE ? g : nn_act_grad((enum nn_act)a.kind, a.alpha, ld(y, e), g);
}

__global__ static void k_act_fwd(act_fn a, cu_arr x, cu_arr y, size_t n)
{
	GRID_LOOP(i, n) st(y, i, act_of(a, ld(x, i)));
}

/* A residual sum and its activation (nn/backend.h add_act): forward one
 * pass instead of two; backward the activation's gradient written to both
 * inputs' gradients at once, instead of an activation pass and two copies. */
__global__ static void k_add_act(act_fn act, cu_arr a, cu_arr b, cu_arr y, size_t n)
{
	GRID_LOOP(i, n) st(y, i, act_of(act, ld(a, i) + ld(b, i)));
}

__global__ static void k_add_act_bwd(act_fn act, cu_arr y, cu_arr dy, cu_arr da, cu_arr db,
				     size_t n)
{
	GRID_LOOP(i, n)
	{
		float g = act_grad_at(act, y, dy, i);
		st(da, i, g);
		st(db, i, g);
	}
}

extern "C" void cu_add_act(enum nn_act act, float alpha, const float *a, const float *b, float *y,
			   size_t n)
{
	CU_ENTER();
	if (!n)
		return;
	k_add_act<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(act_fn{(int)act, alpha}, ARR(a), ARR(b),
								ARR(y), n);
	CU_LAUNCHED("add_act kind=%d n=%zu", (int)act, n);
}

extern "C" void cu_add_act_bwd(enum nn_act act, float alpha, const float *y, const float *dy,
			       float *da, float *db, size_t n)
{
	CU_ENTER();
	if (!n)
		return;
	k_add_act_bwd<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(
		act_fn{(int)act, alpha}, ARR(y), ARR(dy), ARR(da), ARR(db), n);
	CU_LAUNCHED("add_act_bwd kind=%d n=%zu", (int)act, n);
}

/* x or y is read only by the kinds that need it (ReLU and LeakyReLU: x). */
__global__ static void k_act_bwd(int kind, float alpha, cu_arr x, cu_arr y, cu_arr dy, cu_arr dx,
				 size_t n)
{
	/* ReLU and LeakyReLU from x (any alpha), tanh and sigmoid from y */
	cu_arr in = kind == NN_ACT_RELU || kind == NN_ACT_LEAKY ? x : y;
	GRID_LOOP(i, n)
	{
		float g = ld(dy, i);
		st(dx, i, kind == NN_ACT_NONE ? g : nn_act_grad((enum nn_act)kind, alpha, ld(in, i), g));
	}
}

extern "C" void cu_act_fwd(enum nn_act kind, float alpha, const float *x, float *y, size_t n)
{
	CU_ENTER();
	if (!n)
		return;
	k_act_fwd<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(act_fn{(int)kind, alpha}, ARR(x), ARR(y),
								n);
	CU_LAUNCHED("act_fwd kind=%d n=%zu", (int)kind, n);
}

extern "C" void cu_act_bwd(enum nn_act kind, float alpha, const float *x, const float *y,
			   const float *dy, float *dx, size_t n)
{
	CU_ENTER();
	if (!n)
		return;
	k_act_bwd<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>((int)kind, alpha, ARR(x), ARR(y), ARR(dy),
								   ARR(dx), n);
	CU_LAUNCHED("act_bwd kind=%d n=%zu", (int)kind, n);
}

/* ---- batch and instance norm ---------------------------------------------
 * One block per statistics group g. Batch norm: g = channel, rows = n, the
 * group's rows are x[r][g][.]. Instance norm: g = (sample, channel), rows = 1,
 * the one row is x[g][.] (viewing x as (n*c, hw)). In both, row r of group g
 * starts at ((size_t)r * c + g) * hw and the affine index is g % c. */

#define NORM_THREADS 512

/* The t-th value of statistics group g: row t / hw, column t % hw. */
__device__ static inline unsigned group_elem(cu_div hw, int c, int g, unsigned t)
{
	unsigned r = cu_quo(hw, t);
	return (r * c + g) * hw.d + (t - r * hw.d);
}

__global__ static void __launch_bounds__(NORM_THREADS)
	k_norm_fwd(int rows, int c, cu_div hw, act_fn act, cu_arr x, const float *gamma,
		   const float *beta, float eps, float momentum, cu_arr y, float *save_mean,
		   float *save_invstd,
		   float *run_mean, float *run_var)
{
	int g = blockIdx.x, k = g % c;
	unsigned m = (unsigned)rows * hw.d;
	double s = 0;
	for (unsigned t = threadIdx.x; t < m; t += blockDim.x)
		s += ld(x, group_elem(hw, c, g, t));
	double mean = block_sum(s) / (double)m;
	float mf = (float)mean;
	double s2 = 0;
	for (unsigned t = threadIdx.x; t < m; t += blockDim.x) {
		float d = ld(x, group_elem(hw, c, g, t)) - mf;
		s2 += (double)d * d;
	}
	double var = block_sum(s2) / (double)m;
	float invstd = (float)(1.0 / sqrt(var + eps));
	if (threadIdx.x == 0) {
		save_mean[g] = mf;
		save_invstd[g] = invstd;
		if (run_mean) {
			double unbiased = m > 1 ? var * (double)m / ((double)m - 1) : var;
			run_mean[k] = (float)((1 - momentum) * run_mean[k] + momentum * mean);
			run_var[k] = (float)((1 - momentum) * run_var[k] + momentum * unbiased);
		}
	}
	float a = gamma[k] * invstd, o = beta[k] - mf * a;
	for (unsigned t = threadIdx.x; t < m; t += blockDim.x) {
		unsigned e = group_elem(hw, c, g, t);
		st(y, e, act_of(act, ld(x, e) * a + o));
	}
}

/* dx = g invstd (dy - mean(dy) - xhat mean(dy xhat)) over the group (Ioffe &
 * Szegedy 2015, sec. 3). Writes the group's sum dy and sum dy xhat either as
 * floats to dbeta/dgamma (batch norm) or as doubles to sums[2g], sums[2g+1]. */
__global__ static void __launch_bounds__(NORM_THREADS)
	k_norm_bwd(int rows, int c, cu_div hw, act_fn act, cu_arr x, cu_arr y, cu_arr dy,
		   const float *gamma,
		   const float *save_mean, const float *save_invstd, cu_arr dx, float *dgamma,
		   float *dbeta, double *sums)
{
	int g = blockIdx.x, k = g % c;
	unsigned m = (unsigned)rows * hw.d;
	float mean = save_mean[g], invstd = save_invstd[g];
	double s1 = 0, s2 = 0;
	for (unsigned t = threadIdx.x; t < m; t += blockDim.x) {
		unsigned e = group_elem(hw, c, g, t);
		float gv = act_grad_at(act, y, dy, e);
		s1 += gv;
		s2 += (double)gv * (ld(x, e) - mean);
	}
	s1 = block_sum(s1);
	s2 = block_sum(s2) * invstd;
	float a = gamma[k] * invstd, mdy = (float)(s1 / (double)m), mdyx = (float)(s2 / (double)m);
	for (unsigned t = threadIdx.x; t < m; t += blockDim.x) {
		unsigned e = group_elem(hw, c, g, t);
		float xh = (ld(x, e) - mean) * invstd;
		st(dx, e, a * (act_grad_at(act, y, dy, e) - mdy - xh * mdyx));
	}
	if (threadIdx.x == 0) {
		if (sums) {
			sums[2 * (size_t)g] = s1;
			sums[2 * (size_t)g + 1] = s2;
		} else {
			dgamma[g] = (float)s2;
			dbeta[g] = (float)s1;
		}
	}
}

/* Large groups (the U-Net's first level: 16 channels of 8 x 256 x 256) would
 * leave most of the device idle with one block per group, so they are split
 * over S blocks each: partial sums per block, the group's statistics from its
 * S partials (in a fixed order), then an element-wise pass. S = 1 keeps the
 * one-kernel path above, which is what small, launch-bound nets want. */
static int norm_splits(int groups, size_t m)
{
	if (m < 32768)
		return 1;
	size_t want = ((size_t)4 * cu.sms + groups - 1) / groups, most = m / 8192;
	if (want > most)
		want = most;
	if (want > 64)
		want = 64;
	return want < 1 ? 1 : (int)want;
}

struct norm_geo {
	int rows, c, hw, groups, splits;
	size_t m, chunk; /* values per group; values per split */
	cu_div hwd;      /* hw */
};

__device__ static unsigned norm_elem(const norm_geo &d, int g, size_t t)
{
	return group_elem(d.hwd, d.c, g, (unsigned)t);
}

/* part[g S + s] = sum and part2[g S + s] = sum of squares of split s of
 * group g: one read of x for both (the one-block path reads it twice, for
 * the mean and then the squared deviations, from L2). In double, x^2 of an
 * fp32 value is exact and the sums lose about 1e-16 relative per term, so
 * the variance E[x^2] - mean^2 is good to ~1e-16 (1 + mean^2 / var): far
 * below fp32's resolution for any real activation. */
__global__ static void __launch_bounds__(NORM_THREADS)
	k_split_sums(norm_geo d, cu_arr x, double *part, double *part2)
{
	int g = blockIdx.x, s = blockIdx.y;
	size_t t0 = (size_t)s * d.chunk, t1 = t0 + d.chunk < d.m ? t0 + d.chunk : d.m;
	double v = 0, v2 = 0;
	for (size_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
		double e = ld(x, norm_elem(d, g, t));
		v += e;
		v2 += e * e;
	}
	v = block_sum(v);
	v2 = block_sum(v2);
	if (threadIdx.x == 0) {
		part[(size_t)g * d.splits + s] = v;
		part2[(size_t)g * d.splits + s] = v2;
	}
}

/* The statistics of each group, as k_norm_fwd's thread 0 writes them
 * (part2: sums of squares, k_split_sums). */
__global__ static void k_split_stats(norm_geo d, const double *part, const double *part2,
				     float eps, float momentum, float *save_mean,
				     float *save_invstd, float *run_mean, float *run_var)
{
	GRID_LOOP(gi, (size_t)d.groups)
	{
		int g = (int)gi, k = g % d.c;
		double s1 = 0, s2 = 0;
		for (int i = 0; i < d.splits; i++) {
			s1 += part[gi * d.splits + i];
			s2 += part2[gi * d.splits + i];
		}
		double mean = s1 / (double)d.m, var = s2 / (double)d.m - mean * mean;
		var = var > 0 ? var : 0;
		save_mean[g] = (float)mean;
		save_invstd[g] = (float)(1.0 / sqrt(var + eps));
		if (run_mean) {
			double unbiased = d.m > 1 ? var * (double)d.m / ((double)d.m - 1) : var;
			run_mean[k] = (float)((1 - momentum) * run_mean[k] + momentum * mean);
			run_var[k] = (float)((1 - momentum) * run_var[k] + momentum * unbiased);
		}
	}
}

/* y = x a + o per element; the group of element e is (e / hw) % gmod. */
__global__ static void k_norm_apply(size_t total, cu_div hw, cu_div gmod, cu_div c, act_fn act,
				    cu_arr x, const float *gamma, const float *beta,
				    const float *mean, const float *invstd, cu_arr y)
{
	GRID_LOOP(e, total)
	{
		unsigned g = cu_rem(gmod, cu_quo(hw, (unsigned)e)), k = cu_rem(c, g);
		float a = gamma[k] * invstd[g], o = beta[k] - mean[g] * a;
		st(y, e, act_of(act, ld(x, e) * a + o));
	}
}

/* part[g S + s] = sum dy, part[G S + g S + s] = sum dy (x - mean) over split s. */
__global__ static void __launch_bounds__(NORM_THREADS)
	k_split_bwd_sums(norm_geo d, act_fn act, cu_arr x, cu_arr y, cu_arr dy,
			 const float *save_mean,
			 double *part)
{
	int g = blockIdx.x, s = blockIdx.y;
	float mean = save_mean[g];
	size_t t0 = (size_t)s * d.chunk, t1 = t0 + d.chunk < d.m ? t0 + d.chunk : d.m;
	double v1 = 0, v2 = 0;
	for (size_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
		size_t e = norm_elem(d, g, t);
		float gv = act_grad_at(act, y, dy, e);
		v1 += gv;
		v2 += (double)gv * (ld(x, e) - mean);
	}
	v1 = block_sum(v1);
	v2 = block_sum(v2);
	if (threadIdx.x == 0) {
		size_t gs = (size_t)d.groups * d.splits;
		part[(size_t)g * d.splits + s] = v1;
		part[gs + (size_t)g * d.splits + s] = v2;
	}
}

/* Per group: coef = (mean dy, mean dy xhat); the sums to dbeta, dgamma (or sums). */
__global__ static void k_split_bwd_stats(norm_geo d, const double *part, const float *save_invstd,
					 float *coef, float *dgamma, float *dbeta, double *sums)
{
	GRID_LOOP(gi, (size_t)d.groups)
	{
		size_t gs = (size_t)d.groups * d.splits;
		double s1 = 0, s2 = 0;
		for (int i = 0; i < d.splits; i++) {
			s1 += part[gi * d.splits + i];
			s2 += part[gs + gi * d.splits + i];
		}
		s2 *= save_invstd[gi];
		coef[2 * gi] = (float)(s1 / (double)d.m);
		coef[2 * gi + 1] = (float)(s2 / (double)d.m);
		if (sums) {
			sums[2 * gi] = s1;
			sums[2 * gi + 1] = s2;
		} else {
			dgamma[gi] = (float)s2;
			dbeta[gi] = (float)s1;
		}
	}
}

__global__ static void k_norm_bwd_apply(size_t total, cu_div hw, cu_div gmod, cu_div c,
					act_fn act, cu_arr x, cu_arr y, cu_arr dy, const float *gamma,
					const float *save_mean, const float *save_invstd,
					const float *coef, cu_arr dx)
{
	GRID_LOOP(e, total)
	{
		unsigned g = cu_rem(gmod, cu_quo(hw, (unsigned)e)), k = cu_rem(c, g);
		float invstd = save_invstd[g], a = gamma[k] * invstd;
		float xh = (ld(x, e) - save_mean[g]) * invstd;
		st(dx, e, a * (act_grad_at(act, y, dy, e) - coef[2 * g] - xh * coef[2 * g + 1]));
	}
}

/* dgamma[k], dbeta[k] = sums over samples, in sample order as the reference. */
__global__ static void k_in_param_grads(int n, int c, const double *sums, float *dgamma,
					float *dbeta)
{
	GRID_LOOP(k, (size_t)c)
	{
		float gs = 0, bs = 0;
		for (int i = 0; i < n; i++) {
			size_t g = (size_t)i * c + k;
			gs += (float)sums[2 * g + 1];
			bs += (float)sums[2 * g];
		}
		dgamma[k] = gs;
		dbeta[k] = bs;
	}
}

/* Forward of batch norm (instance = 0: groups = c, rows = n, running
 * statistics updated) or instance norm (groups = n c, rows = 1). */
static void norm_fwd(int instance, int n, int c, int hw, act_fn act, cu_arr x, const float *gamma,
		     const float *beta, float eps, float momentum, cu_arr y, float *save_mean,
		     float *save_invstd, float *run_mean, float *run_var)
{
	const char *op = instance ? "in_fwd" : "bn_fwd_train";
	int groups = instance ? n * c : c, rows = instance ? 1 : n;
	norm_geo d = {rows, c, hw, groups, 1, (size_t)rows * hw, 0, DIV(hw)};
	d.splits = norm_splits(groups, d.m);
	if (!fits((size_t)n * c * hw, op))
		return;
	if (d.splits == 1) {
		k_norm_fwd<<<groups, NORM_THREADS, 0, cu.compute>>>(rows, c, d.hwd, act, x, gamma, beta,
								    eps, momentum, y, save_mean,
								    save_invstd, run_mean, run_var);
		CU_LAUNCHED("%s n=%d c=%d hw=%d", op, n, c, hw);
		return;
	}
	d.chunk = (d.m + d.splits - 1) / d.splits;
	size_t gs = (size_t)groups * d.splits;
	double *part = (double *)cu_scratch(sizeof(double) * 2 * gs);
	if (!part)
		return;
	dim3 grid(groups, d.splits);
	k_split_sums<<<grid, NORM_THREADS, 0, cu.compute>>>(d, x, part, part + gs);
	if (CU_LAUNCHED("%s n=%d c=%d hw=%d (sums over %d splits)", op, n, c, hw, d.splits))
		return;
	k_split_stats<<<cu_blocks(groups), CU_THREADS, 0, cu.compute>>>(
		d, part, part + gs, eps, momentum, save_mean, save_invstd, run_mean, run_var);
	if (CU_LAUNCHED("%s n=%d c=%d hw=%d (statistics)", op, n, c, hw))
		return;
	size_t total = (size_t)n * c * hw;
	k_norm_apply<<<cu_blocks(total), CU_THREADS, 0, cu.compute>>>(
		total, d.hwd, DIV(groups), DIV(c), act, x, gamma, beta, save_mean, save_invstd, y);
	CU_LAUNCHED("%s n=%d c=%d hw=%d (normalize)", op, n, c, hw);
}

static void norm_bwd(int instance, int n, int c, int hw, act_fn act, cu_arr x, cu_arr y, cu_arr dy,
		     const float *gamma, const float *save_mean, const float *save_invstd,
		     cu_arr dx, float *dgamma, float *dbeta)
{
	const char *op = instance ? "in_bwd" : "bn_bwd";
	int groups = instance ? n * c : c, rows = instance ? 1 : n;
	norm_geo d = {rows, c, hw, groups, 1, (size_t)rows * hw, 0, DIV(hw)};
	d.splits = norm_splits(groups, d.m);
	if (!fits((size_t)n * c * hw, op))
		return;
	size_t gs = (size_t)groups * d.splits;
	/* scratch, in doubles: instance-norm sums [2 G], partials [2 G S], coef [G] (2 G floats) */
	size_t need = (instance ? 2 * (size_t)groups : 0) +
		      (d.splits > 1 ? 2 * gs + (size_t)groups : 0);
	double *scratch = need ? (double *)cu_scratch(sizeof(double) * need) : NULL;
	if (need && !scratch)
		return;
	double *sums = instance ? scratch : NULL;
	double *part = scratch + (instance ? 2 * (size_t)groups : 0);
	if (d.splits == 1) {
		k_norm_bwd<<<groups, NORM_THREADS, 0, cu.compute>>>(rows, c, d.hwd, act, x, y, dy, gamma,
								    save_mean, save_invstd, dx,
								    dgamma, dbeta, sums);
		if (CU_LAUNCHED("%s n=%d c=%d hw=%d", op, n, c, hw))
			return;
	} else {
		d.chunk = (d.m + d.splits - 1) / d.splits;
		float *coef = (float *)(part + 2 * gs);
		dim3 grid(groups, d.splits);
		k_split_bwd_sums<<<grid, NORM_THREADS, 0, cu.compute>>>(d, act, x, y, dy, save_mean,
									 part);
		if (CU_LAUNCHED("%s n=%d c=%d hw=%d (sums over %d splits)", op, n, c, hw, d.splits))
			return;
		k_split_bwd_stats<<<cu_blocks(groups), CU_THREADS, 0, cu.compute>>>(
			d, part, save_invstd, coef, dgamma, dbeta, sums);
		if (CU_LAUNCHED("%s n=%d c=%d hw=%d (statistics)", op, n, c, hw))
			return;
		size_t total = (size_t)n * c * hw;
		k_norm_bwd_apply<<<cu_blocks(total), CU_THREADS, 0, cu.compute>>>(
			total, d.hwd, DIV(groups), DIV(c), act, x, y, dy, gamma, save_mean, save_invstd,
			coef, dx);
		if (CU_LAUNCHED("%s n=%d c=%d hw=%d (input gradient)", op, n, c, hw))
			return;
	}
	if (instance) {
		k_in_param_grads<<<cu_blocks(c), CU_THREADS, 0, cu.compute>>>(n, c, sums, dgamma, dbeta);
		CU_LAUNCHED("in_bwd parameter gradients n=%d c=%d", n, c);
	}
}

extern "C" void cu_bn_fwd_train(int n, int c, int hw, enum nn_act act, float alpha,
				const float *x, const float *gamma, const float *beta, float eps,
				float momentum, float *y, float *save_mean, float *save_invstd,
				float *run_mean, float *run_var)
{
	CU_ENTER();
	if (!c || !n || !hw)
		return;
	norm_fwd(0, n, c, hw, act_fn{(int)act, alpha}, ARR(x), gamma, beta, eps, momentum, ARR(y),
		 save_mean, save_invstd, run_mean, run_var);
}

__global__ static void k_bn_eval(size_t total, cu_div c, cu_div hw, act_fn act, cu_arr x,
				 const float *gamma,
				 const float *beta, const float *run_mean, const float *run_var,
				 float eps, cu_arr y)
{
	GRID_LOOP(e, total)
	{
		unsigned k = cu_rem(c, cu_quo(hw, (unsigned)e));
		float invstd = 1.0f / sqrtf(run_var[k] + eps);
		float a = gamma[k] * invstd, o = beta[k] - run_mean[k] * a;
		st(y, e, act_of(act, ld(x, e) * a + o));
	}
}

extern "C" void cu_bn_fwd_eval(int n, int c, int hw, enum nn_act act, float alpha,
			       const float *x, const float *gamma, const float *beta,
			       const float *run_mean, const float *run_var, float eps, float *y)
{
	CU_ENTER();
	size_t total = (size_t)n * c * hw;
	if (!total || !fits(total, "bn_fwd_eval"))
		return;
	k_bn_eval<<<cu_blocks(total), CU_THREADS, 0, cu.compute>>>(
		total, DIV(c), DIV(hw), act_fn{(int)act, alpha}, ARR(x), gamma, beta, run_mean, run_var, eps,
		ARR(y));
	CU_LAUNCHED("bn_fwd_eval n=%d c=%d hw=%d", n, c, hw);
}

extern "C" void cu_bn_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			  const float *y, const float *dy, const float *gamma,
			  const float *save_mean, const float *save_invstd, float *dx, float *dgamma,
			  float *dbeta)
{
	CU_ENTER();
	if (!c || !n || !hw)
		return;
	norm_bwd(0, n, c, hw, act_fn{(int)act, alpha}, ARR(x), ARR(y), ARR(dy), gamma, save_mean,
		 save_invstd, ARR(dx), dgamma, dbeta);
}

extern "C" void cu_in_fwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			  const float *gamma, const float *beta, float eps, float *y,
			  float *save_mean, float *save_invstd)
{
	CU_ENTER();
	if (!c || !n || !hw)
		return;
	norm_fwd(1, n, c, hw, act_fn{(int)act, alpha}, ARR(x), gamma, beta, eps, 0, ARR(y), save_mean,
		 save_invstd, NULL, NULL);
}

extern "C" void cu_in_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			  const float *y, const float *dy, const float *gamma,
			  const float *save_mean, const float *save_invstd, float *dx, float *dgamma,
			  float *dbeta)
{
	CU_ENTER();
	if (!c)
		return;
	if (!n || !hw) {
		cu_fill(dgamma, c, 0);
		cu_fill(dbeta, c, 0);
		return;
	}
	norm_bwd(1, n, c, hw, act_fn{(int)act, alpha}, ARR(x), ARR(y), ARR(dy), gamma, save_mean,
		 save_invstd, ARR(dx), dgamma, dbeta);
}

/* ---- pooling ------------------------------------------------------------ */

struct pool_args {
	int kind, n, c, h, w, kh, kw, sh, sw, ph, pw, hout, wout;
	cu_div hd, wd, hod, wod, shd, swd; /* h, w, hout, wout, sh, sw */
};
static pool_args pool_of(const struct nn_pool_desc *d)
{
	return pool_args{(int)d->kind, d->n,	     d->c,	  d->h,	      d->w,	   d->kh,
			 d->kw,	       d->sh,	     d->sw,	  d->ph,      d->pw,	   d->hout,
			 d->wout,      DIV(d->h),    DIV(d->w),	  DIV(d->hout), DIV(d->wout),
			 DIV(d->sh),   DIV(d->sw)};
}
#define POOL_FMT "pool kind=%d n=%d c=%d %dx%d window %dx%d stride %dx%d pad %dx%d"
#define POOL_ARGS(d)                                                                          \
	(int)(d)->kind, (d)->n, (d)->c, (d)->h, (d)->w, (d)->kh, (d)->kw, (d)->sh, (d)->sw,      \
		(d)->ph, (d)->pw

__global__ static void k_pool_fwd(pool_args d, cu_arr x, cu_arr y, int32_t *idx)
{
	size_t total = (size_t)d.n * d.c * d.hout * d.wout;
	GRID_LOOP(o, total)
	{
		unsigned row = cu_quo(d.wod, (unsigned)o), nc = cu_quo(d.hod, row);
		int j = (int)((unsigned)o - row * d.wout), i = (int)(row - nc * d.hout);
		unsigned x0 = nc * d.h * d.w;
		float best = -FLT_MAX, sum = 0;
		int arg = -1, count = 0;
		for (int p = 0; p < d.kh; p++) {
			int r = i * d.sh - d.ph + p;
			if (r < 0 || r >= d.h)
				continue;
			for (int q = 0; q < d.kw; q++) {
				int s = j * d.sw - d.pw + q;
				if (s < 0 || s >= d.w)
					continue;
				float v = ld(x, x0 + r * d.w + s);
				if (arg < 0 || v > best)
					best = v, arg = r * d.w + s;
				sum += v;
				count++;
			}
		}
		if (d.kind == NN_POOL_MAX) {
			st(y, o, best);
			if (idx)
				idx[o] = arg;
		} else {
			st(y, o, sum / count);
		}
	}
}

/* Gather: each input element adds the gradients of the outputs whose window
 * holds it, in the reference's output order. */
__global__ static void k_pool_bwd(pool_args d, cu_arr dy, const int32_t *idx, cu_arr dx)
{
	size_t total = (size_t)d.n * d.c * d.h * d.w;
	GRID_LOOP(e, total)
	{
		unsigned row = cu_quo(d.wd, (unsigned)e), nc = cu_quo(d.hd, row);
		int s = (int)((unsigned)e - row * d.w), r = (int)(row - nc * d.h);
		int ni = r + d.ph - d.kh + 1, nj = s + d.pw - d.kw + 1;
		int i0 = ni <= 0 ? 0 : (int)cu_quo(d.shd, ni + d.sh - 1);
		int i1 = (int)cu_quo(d.shd, r + d.ph);
		int j0 = nj <= 0 ? 0 : (int)cu_quo(d.swd, nj + d.sw - 1);
		int j1 = (int)cu_quo(d.swd, s + d.pw);
		if (i1 > d.hout - 1)
			i1 = d.hout - 1;
		if (j1 > d.wout - 1)
			j1 = d.wout - 1;
		float acc = 0;
		for (int i = i0; i <= i1; i++)
			for (int j = j0; j <= j1; j++) {
				unsigned o = (nc * d.hout + i) * d.wout + j;
				if (d.kind == NN_POOL_MAX) {
					if (idx[o] == r * d.w + s)
						acc += ld(dy, o);
					continue;
				}
				int r0 = i * d.sh - d.ph, s0 = j * d.sw - d.pw;
				int r1 = r0 + d.kh, s1 = s0 + d.kw;
				r0 = r0 < 0 ? 0 : r0, s0 = s0 < 0 ? 0 : s0;
				r1 = r1 > d.h ? d.h : r1, s1 = s1 > d.w ? d.w : s1;
				acc += ld(dy, o) / ((r1 - r0) * (s1 - s0));
			}
		st(dx, e, acc);
	}
}

extern "C" void cu_pool_fwd(const struct nn_pool_desc *d, const float *x, float *y, int32_t *idx)
{
	CU_ENTER();
	size_t total = (size_t)d->n * d->c * d->hout * d->wout;
	/* padding may make the output the larger of the two */
	if (!total || !fits(total, "pool_fwd") || !fits((size_t)d->n * d->c * d->h * d->w, "pool_fwd"))
		return;
	k_pool_fwd<<<cu_blocks(total), CU_THREADS, 0, cu.compute>>>(pool_of(d), ARR(x), ARR(y), idx);
	CU_LAUNCHED(POOL_FMT " forward", POOL_ARGS(d));
}

extern "C" void cu_pool_bwd(const struct nn_pool_desc *d, const float *dy, const int32_t *idx,
			    float *dx)
{
	CU_ENTER();
	size_t total = (size_t)d->n * d->c * d->h * d->w;
	if (!total || !fits(total, "pool_bwd") ||
	    !fits((size_t)d->n * d->c * d->hout * d->wout, "pool_bwd"))
		return;
	k_pool_bwd<<<cu_blocks(total), CU_THREADS, 0, cu.compute>>>(pool_of(d), ARR(dy), idx, ARR(dx));
	CU_LAUNCHED(POOL_FMT " backward", POOL_ARGS(d));
}

/* ---- upsampling -------------------------------------------------------- */

/* Source coordinate and weight of bilinear sampling with half-pixel centres
 * (the reference's bilinear_src). */
__device__ static void bilinear_src(int o, int scale, int size, int *i0, int *i1, float *l)
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

/* g: h, w, scale and the output's h * scale, w * scale as divisors */
struct up_geo {
	cu_div h, w, scale, ho, wo;
};
static up_geo up_of(int h, int w, int scale)
{
	return up_geo{DIV(h), DIV(w), DIV(scale), DIV(h * scale), DIV(w * scale)};
}

__global__ static void k_up_fwd(int mode, size_t total, up_geo g, cu_arr x, cu_arr y)
{
	int h = (int)g.h.d, w = (int)g.w.d, scale = (int)g.scale.d;
	GRID_LOOP(o, total)
	{
		unsigned row = cu_quo(g.wo, (unsigned)o), plane = cu_quo(g.ho, row);
		int j = (int)((unsigned)o - row * g.wo.d), i = (int)(row - plane * g.ho.d);
		unsigned b = plane * h * w;
		if (mode == NN_UP_NEAREST) {
			st(y, o, ld(x, b + cu_quo(g.scale, i) * w + cu_quo(g.scale, j)));
			continue;
		}
		int y0, y1, x0, x1;
		float ly, lx;
		bilinear_src(i, scale, h, &y0, &y1, &ly);
		bilinear_src(j, scale, w, &x0, &x1, &lx);
		float w00 = (1 - ly) * (1 - lx), w01 = (1 - ly) * lx;
		float w10 = ly * (1 - lx), w11 = ly * lx;
		st(y, o,
		   w00 * ld(x, b + y0 * w + x0) + w01 * ld(x, b + y0 * w + x1) +
			   w10 * ld(x, b + y1 * w + x0) + w11 * ld(x, b + y1 * w + x1));
	}
}

/* Gather: input (r, s) collects the outputs that sample it. Nearest: the
 * scale x scale block above it, in the reference's order. Bilinear: outputs
 * within one input pixel of it ((r-1)*scale to (r+2)*scale covers every
 * output whose y0 or y1 is r, clamped borders included), each with the
 * reference's weight for each corner that lands on (r, s). */
__global__ static void k_up_bwd(int mode, size_t total, up_geo g, cu_arr dy, cu_arr dx)
{
	int h = (int)g.h.d, w = (int)g.w.d, scale = (int)g.scale.d;
	int ho = h * scale, wo = w * scale;
	GRID_LOOP(e, total)
	{
		unsigned row = cu_quo(g.w, (unsigned)e), plane = cu_quo(g.h, row);
		int s = (int)((unsigned)e - row * w), r = (int)(row - plane * h);
		unsigned g0 = plane * ho * wo;
		float acc = 0;
		if (mode == NN_UP_NEAREST) {
			for (int a = 0; a < scale; a++)
				for (int b = 0; b < scale; b++)
					acc += ld(dy, g0 + (size_t)(r * scale + a) * wo + s * scale + b);
			st(dx, e, acc);
			continue;
		}
		int ia = (r - 1) * scale, ib = (r + 2) * scale, ja = (s - 1) * scale, jb = (s + 2) * scale;
		ia = ia < 0 ? 0 : ia, ja = ja < 0 ? 0 : ja;
		ib = ib > ho ? ho : ib, jb = jb > wo ? wo : jb;
		for (int i = ia; i < ib; i++) {
			int y0, y1;
			float ly;
			bilinear_src(i, scale, h, &y0, &y1, &ly);
			if (y0 != r && y1 != r)
				continue;
			for (int j = ja; j < jb; j++) {
				int x0, x1;
				float lx;
				bilinear_src(j, scale, w, &x0, &x1, &lx);
				if (x0 != s && x1 != s)
					continue;
				float gv = ld(dy, g0 + (size_t)i * wo + j);
				if (y0 == r && x0 == s)
					acc += (1 - ly) * (1 - lx) * gv;
				if (y0 == r && x1 == s)
					acc += (1 - ly) * lx * gv;
				if (y1 == r && x0 == s)
					acc += ly * (1 - lx) * gv;
				if (y1 == r && x1 == s)
					acc += ly * lx * gv;
			}
		}
		st(dx, e, acc);
	}
}

extern "C" void cu_upsample_fwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
				const float *x, float *y)
{
	CU_ENTER();
	size_t total = (size_t)n * c * h * scale * w * scale;
	if (!total || !fits(total, "upsample_fwd"))
		return;
	k_up_fwd<<<cu_blocks(total), CU_THREADS, 0, cu.compute>>>((int)mode, total, up_of(h, w, scale),
								  ARR(x), ARR(y));
	CU_LAUNCHED("upsample_fwd mode=%d n=%d c=%d %dx%d scale=%d", (int)mode, n, c, h, w, scale);
}

extern "C" void cu_upsample_bwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
				const float *dy, float *dx)
{
	CU_ENTER();
	size_t total = (size_t)n * c * h * w;
	if (!total || !fits(total * scale * scale, "upsample_bwd"))
		return;
	k_up_bwd<<<cu_blocks(total), CU_THREADS, 0, cu.compute>>>((int)mode, total, up_of(h, w, scale),
								 ARR(dy), ARR(dx));
	CU_LAUNCHED("upsample_bwd mode=%d n=%d c=%d %dx%d scale=%d", (int)mode, n, c, h, w, scale);
}

/* ---- concat ---------------------------------------------------------- */

/* dst[i][doff + t] (= or +=) src[i][soff + t] for t < len, i < n; the row
 * strides are sstride and dstride floats. */
__global__ static void k_block_copy(int n, cu_div len, cu_arr src, unsigned sstride, unsigned soff,
				    cu_arr dst, unsigned dstride, unsigned doff, int accumulate)
{
	GRID_LOOP(e, (size_t)n * len.d)
	{
		unsigned i = cu_quo(len, (unsigned)e), t = (unsigned)e - i * len.d;
		float v = ld(src, i * sstride + soff + t);
		unsigned d = i * dstride + doff + t;
		st(dst, d, accumulate ? ld(dst, d) + 1 * v : v);
	}
}

extern "C" void cu_channel_copy(int n, int hw, int csrc, const float *src, int cdst, int coff,
				float *dst, int accumulate)
{
	CU_ENTER();
	size_t len = (size_t)csrc * hw;
	if (!n || !len || !fits((size_t)n * cdst * hw, "channel_copy"))
		return;
	k_block_copy<<<cu_blocks(n * len), CU_THREADS, 0, cu.compute>>>(
		n, DIV(len), ARR(src), (unsigned)len, 0, ARR(dst), (unsigned)(cdst * hw),
		(unsigned)(coff * hw), accumulate);
	CU_LAUNCHED("channel_copy n=%d hw=%d csrc=%d cdst=%d coff=%d", n, hw, csrc, cdst, coff);
}

extern "C" void cu_channel_slice(int n, int hw, int csrc, int coff, const float *src, int cdst,
				 float *dst, int accumulate)
{
	CU_ENTER();
	size_t len = (size_t)cdst * hw;
	if (!n || !len || !fits((size_t)n * csrc * hw, "channel_slice"))
		return;
	k_block_copy<<<cu_blocks(n * len), CU_THREADS, 0, cu.compute>>>(
		n, DIV(len), ARR(src), (unsigned)(csrc * hw), (unsigned)(coff * hw), ARR(dst),
		(unsigned)len, 0, accumulate);
	CU_LAUNCHED("channel_slice n=%d hw=%d csrc=%d coff=%d cdst=%d", n, hw, csrc, coff, cdst);
}

/* ---- dropout ----------------------------------------------------------- */

/* splitmix64 (Steele, Lea & Flood 2014), as nn/cpu/ref.c: same mask bits. */
__host__ __device__ static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

__global__ static void k_dropout(size_t n, float p, uint64_t key, const uint64_t *key_dev,
				 cu_arr x, cu_arr y, float *mask)
{
	float keep = 1.0f / (1.0f - p);
	if (key_dev)
		key = *key_dev;
	GRID_LOOP(i, n)
	{
		float u = (float)(mix64(key ^ (uint64_t)i) >> 40) * (1.0f / 16777216.0f);
		float m = u < p ? 0.0f : keep;
		mask[i] = m;
		st(y, i, ld(x, i) * m);
	}
}

uint64_t cu_mix64(uint64_t z) { return mix64(z); }

void cu_dropout_fwd_at(size_t n, float p, uint64_t seed, const uint64_t *key_dev, const float *x,
		       float *y, float *mask)
{
	CU_ENTER();
	if (!n)
		return;
	k_dropout<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(n, p, mix64(seed), key_dev, ARR(x),
							       ARR(y), mask);
	CU_LAUNCHED("dropout n=%zu p=%g", n, (double)p);
}

extern "C" void cu_dropout_fwd(size_t n, float p, uint64_t seed, const float *x, float *y,
			       float *mask)
{
	cu_dropout_fwd_at(n, p, seed, NULL, x, y, mask);
}

/* ---- losses ------------------------------------------------------------ *
 * Each loss writes its gradient and one partial sum per block into scratch,
 * sums the partials in one block, and reads the sums back (the value is a
 * host float, so a loss synchronizes). Scratch layout in doubles:
 * [0, RED_MAX) first partials, [RED_MAX, 2 RED_MAX) second, then the sums. */

/* The loss from the nsums sums at `sums` (cu_loss_value): read back into
 * pinned memory and computed now, or, while a step is captured, copied by
 * the graph into pinned memory of its own and computed after each replay
 * (nn/cuda/graph.cu). */
static void finish_loss(double *sums, int nsums, float *loss, int kind, size_t n, const char *what)
{
	double *h = cu.capturing ? cu_graph_loss(nsums, loss, kind, n) : cu_host_scalars();
	if (!h ||
	    CU_RT(cudaMemcpyAsync(h, sums, sizeof(double) * nsums, cudaMemcpyDeviceToHost,
				  cu.compute),
		  "%s: reading the loss back", what))
		return;
	if (cu.capturing)
		return;
	if (CU_RT(cudaStreamSynchronize(cu.compute), "%s: waiting for the loss", what))
		return;
	*loss = cu_loss_value(h, kind, n);
}

__global__ static void k_xent_wsum(int c, size_t total, const int32_t *labels, const float *class_w,
				   double *part)
{
	double s = 0;
	GRID_LOOP(i, total)
	{
		int y = labels[i];
		if (y >= 0 && y < c)
			s += class_w ? class_w[y] : 1;
	}
	s = block_sum(s);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

__global__ static void k_xent(int c, cu_div hwd, size_t total, cu_arr logits, const int32_t *labels,
			      const float *class_w, const double *wsum_p, cu_arr dlogits,
			      double *part)
{
	double wsum = *wsum_p, lsum = 0;
	GRID_LOOP(t, total)
	{
		unsigned hw = hwd.d, i = cu_quo(hwd, (unsigned)t), p = (unsigned)t - i * hw;
		unsigned l0 = i * c * hw + p; /* class k at l0 + k hw */
		int y = labels[t];
		if (y < 0 || y >= c || wsum == 0) {
			for (int k = 0; k < c; k++)
				st(dlogits, l0 + (size_t)k * hw, 0);
			continue;
		}
		float mx = ld(logits, l0);
		for (int k = 1; k < c; k++) {
			float v = ld(logits, l0 + (size_t)k * hw);
			mx = v > mx ? v : mx;
		}
		double se = 0;
		for (int k = 0; k < c; k++)
			se += exp((double)(ld(logits, l0 + (size_t)k * hw) - mx));
		double lse = mx + log(se), wy = class_w ? class_w[y] : 1;
		lsum += wy * (lse - ld(logits, l0 + (size_t)y * hw));
		for (int k = 0; k < c; k++) {
			double pk = exp(ld(logits, l0 + (size_t)k * hw) - lse);
			st(dlogits, l0 + (size_t)k * hw, (float)(wy * (pk - (k == y)) / wsum));
		}
	}
	lsum = block_sum(lsum);
	if (threadIdx.x == 0)
		part[blockIdx.x] = lsum;
}

extern "C" void cu_softmax_xent(int n, int c, int hw, const float *logits, const int32_t *labels,
				const float *class_w, float *dlogits, float *loss)
{
	*loss = 0;
	CU_ENTER();
	size_t total = (size_t)n * hw;
	if (!total || !c || !fits(total * c, "softmax_xent"))
		return;
	double *s = (double *)cu_scratch(sizeof(double) * (2 * RED_MAX + 2));
	if (!s)
		return;
	double *sums = s + 2 * RED_MAX;
	unsigned b = red_blocks(total);
	k_xent_wsum<<<b, CU_THREADS, 0, cu.compute>>>(c, total, labels, class_w, s);
	if (CU_LAUNCHED("softmax_xent n=%d c=%d hw=%d (weight sum)", n, c, hw))
		return;
	sum_partials<<<1, CU_THREADS, 0, cu.compute>>>(s, b, 0, sums);
	if (CU_LAUNCHED("softmax_xent n=%d c=%d hw=%d (weight sum)", n, c, hw))
		return;
	k_xent<<<b, CU_THREADS, 0, cu.compute>>>(c, DIV(hw), total, ARR(logits), labels, class_w, sums,
						 ARR(dlogits), s + RED_MAX);
	if (CU_LAUNCHED("softmax_xent n=%d c=%d hw=%d", n, c, hw))
		return;
	sum_partials<<<1, CU_THREADS, 0, cu.compute>>>(s + RED_MAX, b, 0, sums + 1);
	if (CU_LAUNCHED("softmax_xent n=%d c=%d hw=%d (loss sum)", n, c, hw))
		return;
	finish_loss(sums, 2, loss, 0, total, "softmax_xent");
}

enum { LOSS_BCE, LOSS_L1, LOSS_MSE };

/* w.p may be NULL (no weights) */
__global__ static void k_pointwise_loss(int kind, size_t n, cu_arr x, cu_arr t, cu_arr w,
					cu_arr dx, double *part)
{
	double s = 0;
	GRID_LOOP(i, n)
	{
		float xf = ld(x, i), tf = ld(t, i);
		if (kind == LOSS_BCE) {
			double wi = w.p ? ld(w, i) : 1, xi = xf;
			s += wi * ((xi > 0 ? xi : 0) - xi * tf + log1p(exp(-fabs(xi))));
			st(dx, i, (float)(wi * (1.0 / (1.0 + exp(-xi)) - tf) / n));
		} else if (kind == LOSS_L1) {
			float d = xf - tf;
			s += fabsf(d);
			st(dx, i, (d > 0 ? 1.0f : d < 0 ? -1.0f : 0.0f) / n);
		} else {
			float d = xf - tf;
			s += (double)d * d;
			st(dx, i, 2 * d / n);
		}
	}
	s = block_sum(s);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

static void pointwise_loss(int kind, const char *name, size_t n, const float *x, const float *t,
			   const float *w, float *dx, float *loss)
{
	*loss = 0;
	CU_ENTER();
	if (!n)
		return;
	double *s = (double *)cu_scratch(sizeof(double) * (2 * RED_MAX + 2));
	if (!s)
		return;
	double *sums = s + 2 * RED_MAX;
	unsigned b = red_blocks(n);
	k_pointwise_loss<<<b, CU_THREADS, 0, cu.compute>>>(kind, n, ARR(x), ARR(t), ARR(w), ARR(dx), s);
	if (CU_LAUNCHED("%s n=%zu", name, n))
		return;
	sum_partials<<<1, CU_THREADS, 0, cu.compute>>>(s, b, 0, sums);
	if (CU_LAUNCHED("%s n=%zu (sum)", name, n))
		return;
	finish_loss(sums, 1, loss, 1, n, name);
}

extern "C" void cu_bce_logits(size_t n, const float *x, const float *t, const float *w, float *dx,
			      float *loss)
{
	pointwise_loss(LOSS_BCE, "bce_logits", n, x, t, w, dx, loss);
}
extern "C" void cu_l1(size_t n, const float *x, const float *t, float *dx, float *loss)
{
	pointwise_loss(LOSS_L1, "l1", n, x, t, NULL, dx, loss);
}
extern "C" void cu_mse(size_t n, const float *x, const float *t, float *dx, float *loss)
{
	pointwise_loss(LOSS_MSE, "mse", n, x, t, NULL, dx, loss);
}

__global__ static void k_argmax(int n, int c, cu_arr x, int32_t *out)
{
	GRID_LOOP(i, (size_t)n)
	{
		int best = 0;
		float bv = ld(x, i * c);
		for (int k = 1; k < c; k++) {
			float v = ld(x, i * c + k);
			if (v > bv)
				best = k, bv = v;
		}
		out[i] = best;
	}
}

extern "C" void cu_argmax(int n, int c, const float *x, int32_t *out)
{
	CU_ENTER();
	if (!n)
		return;
	k_argmax<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(n, c, ARR(x), out);
	CU_LAUNCHED("argmax n=%d c=%d", n, c);
}

/* ---- optimizers ---------------------------------------------------------- */

/* PyTorch's SGD, as the reference: g += wd w; m = mu m + g; w -= lr (nesterov ? g + mu m : m).
 * One launch for all of a net's parameters (its flat buffers); the first
 * ndecay floats have weight decay. lr_dev: the learning rate in device memory
 * (a captured step, nn/cuda/graph.cu), else lr. */
__global__ static void k_sgd(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
			     const float *lr_dev, float momentum, float wd, int nesterov)
{
	if (lr_dev)
		lr = *lr_dev;
	GRID_LOOP(i, n)
	{
		float gi = g[i] + (i < ndecay ? wd : 0) * w[i];
		float mi = momentum * m[i] + gi;
		m[i] = mi;
		w[i] -= lr * (nesterov ? gi + momentum * mi : mi);
	}
}

void cu_sgd_step_at(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
		    const float *lr_dev, float momentum, float wd, int nesterov)
{
	CU_ENTER();
	if (!n)
		return;
	k_sgd<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(n, ndecay, w, g, m, lr, lr_dev, momentum,
							   wd, nesterov);
	CU_LAUNCHED("sgd_step n=%zu ndecay=%zu", n, ndecay);
}

extern "C" void cu_sgd_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
			    float momentum, float wd, int nesterov)
{
	cu_sgd_step_at(n, ndecay, w, g, m, lr, NULL, momentum, wd, nesterov);
}

/* Adam (Kingma & Ba 2015, alg. 1); c1, c2 are the bias corrections 1 - b^t,
 * computed on the host with powf as the reference does. sc_dev: lr, c1, c2
 * in device memory (a captured step), else the arguments. */
__global__ static void k_adam(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
			      float lr, float b1, float b2, float eps, float wd, int decoupled,
			      float c1, float c2, const float *sc_dev)
{
	if (sc_dev)
		lr = sc_dev[0], c1 = sc_dev[1], c2 = sc_dev[2];
	GRID_LOOP(i, n)
	{
		float wi = w[i], wdi = i < ndecay ? wd : 0;
		float gi = g[i] + (decoupled ? 0 : wdi * wi);
		float mi = b1 * m[i] + (1 - b1) * gi;
		float vi = b2 * v[i] + (1 - b2) * gi * gi;
		m[i] = mi, v[i] = vi;
		float step = (mi / c1) / (sqrtf(vi / c2) + eps);
		w[i] = wi - lr * (step + (decoupled ? wdi * wi : 0));
	}
}

void cu_adam_step_at(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		     float lr, const float *sc_dev, float b1, float b2, float eps, float wd,
		     int decoupled, int t)
{
	CU_ENTER();
	if (!n)
		return;
	float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
	k_adam<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(n, ndecay, w, g, m, v, lr, b1, b2, eps,
							    wd, decoupled, c1, c2, sc_dev);
	CU_LAUNCHED("adam_step n=%zu ndecay=%zu t=%d", n, ndecay, t);
}

extern "C" void cu_adam_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
			     float lr, float b1, float b2, float eps, float wd, int decoupled, int t)
{
	cu_adam_step_at(n, ndecay, w, g, m, v, lr, NULL, b1, b2, eps, wd, decoupled, t);
}

/* ---- bf16 casts (mixed precision, nn/cuda/conv.cu) ------------------------ *
 * Round to nearest even, as PyTorch's .to(torch.bfloat16); NaN stays NaN. */

__global__ static void k_to_bf16(const float *x, __nv_bfloat16 *y, size_t n)
{
	GRID_LOOP(i, n) y[i] = __float2bfloat16_rn(x[i]);
}

__global__ static void k_from_bf16(const __nv_bfloat16 *x, float *y, size_t n)
{
	GRID_LOOP(i, n) y[i] = __bfloat162float(x[i]);
}

extern "C" void cu_to_bf16(const float *x, void *y, size_t n)
{
	CU_ENTER();
	if (!n)
		return;
	k_to_bf16<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>(x, (__nv_bfloat16 *)y, n);
	CU_LAUNCHED("cast to bf16 n=%zu", n);
}

extern "C" void cu_from_bf16(const void *x, float *y, size_t n)
{
	CU_ENTER();
	if (!n)
		return;
	k_from_bf16<<<cu_blocks(n), CU_THREADS, 0, cu.compute>>>((const __nv_bfloat16 *)x, y, n);
	CU_LAUNCHED("cast from bf16 n=%zu", n);
}
