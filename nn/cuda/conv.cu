/* conv: convolutions through cuDNN and gemm through cuBLAS.
 *
 * A convolution shape (the whole nn_conv_desc and the precision) gets a plan
 * the first time it is seen: cuDNN descriptors and, for each of the three
 * passes, the fastest algorithm that cudnnFind* measured on this device among
 * those allowed by the precision and the workspace cap. conv2d_workspace
 * returns the largest workspace of the three passes; the caller (nn/net.c)
 * allocates one workspace, the largest over its layers, and passes it to
 * every call. A plan first made inside a pass (a shape the caller never
 * asked the workspace of, such as the smaller last batch of an epoch) uses
 * a private workspace instead, so a caller's buffer is never overrun.
 *
 * BF16 (mixed precision): the plan's descriptors are bf16 with fp32 compute.
 * Activations and their gradients in bf16 activation storage (rt.h: a net's
 * arena) are read and written where they are; a net's weights are read from
 * the bf16 copy cu_params_ready makes once per pass from the net's flat
 * buffer; anything else (fp32 tensors: a net's input, weight gradients,
 * tensors of tests, all activations under CAIRN_CUDA_BF16_ACT=0) is cast
 * into scratch for the call, and an fp32 result is written by cuDNN as bf16
 * into scratch and widened into place. gemm in bf16 is one cublasGemmEx with
 * bf16 A and B, C in bf16 storage or fp32, and fp32 compute.
 *
 * The algorithms of a plan are ranked by their median time over several
 * cudnnFind* searches (search_runs). Under CAIRN_CUDA_CONV_NHWC=1 (fp32 and
 * tf32) a plan's descriptors are NHWC and each pass transposes its operands
 * into scratch with cudnnTransformTensor and its result back (pass_in,
 * pass_done): cuDNN's NHWC kernels with NCHW everywhere else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unordered_map>

#include "nn/cuda/rt.h"

struct conv_key {
	int v[13];
	bool operator==(const conv_key &o) const { return !memcmp(v, o.v, sizeof(v)); }
};
struct conv_key_hash {
	size_t operator()(const conv_key &k) const
	{
		size_t h = 1469598103934665603ULL;
		for (int i = 0; i < 13; i++)
			h = (h ^ (size_t)(unsigned)k.v[i]) * 1099511628211ULL;
		return h;
	}
};

struct conv_plan {
	cudnnTensorDescriptor_t x, y; /* the calls' (NHWC in an nhwc plan) */
	cudnnFilterDescriptor_t w;
	bool nhwc; /* the calls run on NHWC copies (CAIRN_CUDA_CONV_NHWC) */
	cudnnTensorDescriptor_t xn, yn, wt, wtn; /* nhwc: x and y in NCHW, the filter as a
						    tensor in NHWC and NCHW: the transposes */
	cudnnConvolutionDescriptor_t conv;
	cudnnConvolutionFwdAlgo_t fwd;
	cudnnConvolutionBwdDataAlgo_t bwd_data;
	cudnnConvolutionBwdFilterAlgo_t bwd_filter;
	cudnnMathType_t fwd_math, data_math, filter_math;
	float ms[3];  /* the passes' median search times (0: not measured) */
	size_t ws;    /* largest of the three passes */
	int queried;  /* the caller asked conv2d_workspace for this shape */
};

static std::unordered_map<conv_key, conv_plan *, conv_key_hash> *plans;

static bool bf16(void) { return cu.precision == NN_CUDA_BF16; }
static size_t ws_cap = (size_t)512 << 20;
/* Searches per pass (CAIRN_CUDA_CONV_SEARCH, default 3). cudnnFind* times
 * each algorithm once or a few times, and for a pass of 0.1-0.3 ms its
 * ranking changes from call to call (session 16 on an H200: the same layer
 * picked 0.76x and 1.30x the bare call's time in two processes); each
 * algorithm's time is taken as the median of its times over the searches. */
static int search_runs = 3;
/* CAIRN_CUDA_CONV_LOG=1: one line on stderr for each plan made. */
static bool log_plans;
/* CAIRN_CUDA_CONV_NHWC=1 (fp32 and tf32): each pass transposes its operands
 * to NHWC (filters KRSC) with cudnnTransformTensor, runs cuDNN on those, and
 * transposes the result back, so that cuDNN's NHWC tensor-core kernels run
 * while every other op keeps NCHW; an experiment for the CycleGAN goal
 * (docs/cuda.md), off by default. */
static bool nhwc_env;
static bool nhwc(void)
{
	return nhwc_env && cu.precision != NN_CUDA_BF16;
}
static void *own_ws;
static size_t own_ws_bytes;

#define SHAPE_FMT "conv n=%d cin=%d %dx%d cout=%d k=%dx%d stride=%d pad=%d dil=%d groups=%d"
#define SHAPE_ARGS(d)                                                                          \
	(d)->n, (d)->cin, (d)->h, (d)->w, (d)->cout, (d)->kh, (d)->kw, (d)->stride, (d)->pad,     \
		(d)->dil, (d)->groups

int cu_conv_init(void)
{
	plans = new std::unordered_map<conv_key, conv_plan *, conv_key_hash>();
	const char *env = getenv("CAIRN_CUDA_CONV_WS_MB");
	if (env && *env) {
		char *end;
		long mb = strtol(env, &end, 10);
		if (*end || mb < 0) {
			cu_fail(__FILE__, __LINE__, "getenv", "expected a number of MiB >= 0",
				"CAIRN_CUDA_CONV_WS_MB='%s'", env);
			return -1;
		}
		ws_cap = (size_t)mb << 20;
	}
	env = getenv("CAIRN_CUDA_CONV_SEARCH");
	if (env && *env) {
		char *end;
		long runs = strtol(env, &end, 10);
		if (*end || runs < 1 || runs > 9) {
			cu_fail(__FILE__, __LINE__, "getenv",
				"expected a number of searches from 1 to 9",
				"CAIRN_CUDA_CONV_SEARCH='%s'", env);
			return -1;
		}
		search_runs = (int)runs;
	}
	env = getenv("CAIRN_CUDA_CONV_LOG");
	log_plans = env && *env && strcmp(env, "0");
	env = getenv("CAIRN_CUDA_CONV_NHWC");
	nhwc_env = env && *env && strcmp(env, "0");
	return 0;
}

int cu_blas_set_math(void)
{
	cublasMath_t m = cu.precision == NN_CUDA_TF32   ? CUBLAS_TF32_TENSOR_OP_MATH
			 : cu.precision == NN_CUDA_BF16 ? CUBLAS_DEFAULT_MATH
							: CUBLAS_PEDANTIC_MATH;
	return CU_BLAS(cublasSetMathMode(cu.blas, m), "cuBLAS math mode for %s",
		       nn_cuda_precision_name(cu.precision));
}

/* FP32 allows only FMA math. TF32 and BF16 anything but ALLOW_CONVERSION,
 * which converts tensors down to FP16 (a 5-bit exponent: worse than TF32 and
 * bf16, and gradients flush to zero). */
static bool math_allowed(cudnnMathType_t m)
{
	if (cu.precision == NN_CUDA_FP32)
		return m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
	/* TF32 and BF16: never ALLOW_CONVERSION (fp32 tensors converted to
	   FP16, whose range is not fp32's or bf16's) */
	return m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}
static cudnnMathType_t math_for_call(cudnnMathType_t m)
{
	return cu.precision != NN_CUDA_FP32 ? m : CUDNN_FMA_MATH;
}

/* FP32 also leaves out the FFT and Winograd algorithms: they trade accuracy
 * for speed (errors near 1e-4 relative on 3x3 kernels), and FP32 promises
 * the reference's numbers within 1e-5. TF32 and BF16 allow them, and so
 * does FP32 under CAIRN_CUDA_FP32_FAST_ALGOS=1 (PyTorch's fp32 without
 * TF32 does: the same choice, for a side-by-side figure or for speed). */
static bool fp32_strict(void)
{
	static int strict = -1;
	if (strict < 0) {
		const char *env = getenv("CAIRN_CUDA_FP32_FAST_ALGOS");
		strict = !(env && *env && strcmp(env, "0"));
	}
	return cu.precision == NN_CUDA_FP32 && strict;
}
static bool algo_allowed(cudnnConvolutionFwdAlgo_t a)
{
	return !fp32_strict() ||
	       (a != CUDNN_CONVOLUTION_FWD_ALGO_FFT && a != CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING &&
		a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD &&
		a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED);
}
static bool algo_allowed(cudnnConvolutionBwdDataAlgo_t a)
{
	return !fp32_strict() || (a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT &&
				  a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING &&
				  a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD &&
				  a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED);
}
static bool algo_allowed(cudnnConvolutionBwdFilterAlgo_t a)
{
	return !fp32_strict() || (a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT &&
				  a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING &&
				  a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED);
}

/* Pick the first (fastest) usable result of a cudnnFind* list; any_ws: also
 * one over the workspace cap (the heuristic lists, when nothing fits). */
template <typename Perf>
static int pick(const Perf *r, int count, bool any_ws = false)
{
	for (int i = 0; i < count; i++)
		if (r[i].status == CUDNN_STATUS_SUCCESS && (any_ws || r[i].memory <= ws_cap) &&
		    math_allowed(r[i].mathType) && algo_allowed(r[i].algo))
			return i;
	return -1;
}

/* cudnnFind* allocates its own trial buffers with cudaMalloc, beside the
 * blocks cairn's allocator caches: when it fails, give the cache back and
 * try once more before calling the failure what it is. */
template <typename F>
static cudnnStatus_t find_retry(F find)
{
	cudnnStatus_t st = find();
	if (st == CUDNN_STATUS_SUCCESS)
		return st;
	cudaGetLastError();
	nn_cuda_empty_cache();
	return find();
}

/* When no measured algorithm is usable (all over the workspace cap, or none
 * allowed in this precision): cuDNN's heuristic list, whose entries are
 * supported for this shape; the first usable one that fits the cap, else the
 * first usable one at all; -1 if none (the caller's fixed fallback then). */
template <typename Perf, typename G>
static int pick_heuristic(G get, Perf *r, int cap)
{
	int got = 0;
	if (get(cap, &got, r) != CUDNN_STATUS_SUCCESS) {
		cudaGetLastError();
		return -1;
	}
	int i = pick(r, got);
	return i >= 0 ? i : pick(r, got, true);
}

extern "C" void nn_cuda_set_conv_search(int runs)
{
	search_runs = runs < 1 ? 1 : runs > 9 ? 9 : runs;
}

/* r[0..got) with each entry's time the median of its times in the later
 * searches more[k][0..more_got[k]) (the same algorithm and math type; a run
 * where it failed does not count), sorted by that time, failures last. */
template <typename Perf, int N>
static void rank_by_median(Perf *r, int got, Perf (*more)[N], const int *more_got, int runs)
{
	for (int i = 0; i < got; i++) {
		if (r[i].status != CUDNN_STATUS_SUCCESS)
			continue;
		float t[10];
		int n = 0;
		t[n++] = r[i].time;
		for (int k = 0; k < runs; k++)
			for (int j = 0; j < more_got[k]; j++)
				if (more[k][j].algo == r[i].algo &&
				    more[k][j].mathType == r[i].mathType &&
				    more[k][j].status == CUDNN_STATUS_SUCCESS) {
					t[n++] = more[k][j].time;
					if (more[k][j].memory > r[i].memory)
						r[i].memory = more[k][j].memory;
				}
		for (int a = 1; a < n; a++) /* insertion sort: n <= 9 */
			for (int b = a; b > 0 && t[b] < t[b - 1]; b--) {
				float x = t[b];
				t[b] = t[b - 1], t[b - 1] = x;
			}
		r[i].time = n % 2 ? t[n / 2] : 0.5f * (t[n / 2 - 1] + t[n / 2]);
	}
	for (int a = 1; a < got; a++) /* stable: equal medians keep cuDNN's order */
		for (int b = a; b > 0; b--) {
			bool ok_b = r[b].status == CUDNN_STATUS_SUCCESS,
			     ok_a = r[b - 1].status == CUDNN_STATUS_SUCCESS;
			if (!(ok_b && (!ok_a || r[b].time < r[b - 1].time)))
				break;
			Perf x = r[b];
			r[b] = r[b - 1], r[b - 1] = x;
		}
}

/* One pass's algorithm: the fastest usable measured one (find: a
 * cudnnFind* call, retried once after giving the cache back; search_runs
 * of them, ranked by median time), else one from the heuristic list (heur),
 * else the fixed fallback under the base math type; raises *ws to the
 * chosen one's workspace, and sets *ms to its time (0: not measured). -1
 * when the search failed. */
template <typename Perf, int N, typename Algo, typename Find, typename Heur>
static int choose(const struct nn_conv_desc *d, const char *call, const char *pass, Find find,
		  Heur heur, Algo fallback, cudnnMathType_t base, Algo *algo, cudnnMathType_t *math,
		  size_t *ws, float *ms)
{
	Perf r[N];
	static Perf more[8][N]; /* plans are made on the host thread only */
	int got = 0, more_got[8];
	for (int k = 0; k < search_runs; k++) {
		Perf *out = k ? more[k - 1] : r;
		int *n = k ? &more_got[k - 1] : &got;
		if (cu_check_dnn(find_retry([&] { return find(N, n, out); }), call, __FILE__,
				 __LINE__, SHAPE_FMT " (choosing the %s algorithm)", SHAPE_ARGS(d),
				 pass))
			return -1;
	}
	rank_by_median<Perf, N>(r, got, more, more_got, search_runs - 1);
	*ms = 0;
	int i = pick(r, got);
	if (i >= 0)
		*ms = r[i].time;
	else
		i = pick_heuristic(heur, r, N);
	if (i < 0) {
		*algo = fallback, *math = base;
		return 0;
	}
	*algo = r[i].algo, *math = r[i].mathType;
	*ws = r[i].memory > *ws ? r[i].memory : *ws;
	return 0;
}

static conv_plan *make_plan(const struct nn_conv_desc *d)
{
	conv_plan *p = (conv_plan *)calloc(1, sizeof(*p));
	if (!p) {
		cu_fail(__FILE__, __LINE__, "calloc", "out of host memory", SHAPE_FMT, SHAPE_ARGS(d));
		return NULL;
	}
	/* FP32: no tensor cores. TF32: DEFAULT permits TF32 tensor cores on
	   Ampere and Hopper. BF16: tensor-core kernels are only considered with
	   TENSOR_OP set (cuDNN's legacy API, as PyTorch sets it for bf16). */
	cudnnMathType_t base = cu.precision == NN_CUDA_FP32   ? CUDNN_FMA_MATH
			       : cu.precision == NN_CUDA_BF16 ? CUDNN_TENSOR_OP_MATH
							      : CUDNN_DEFAULT_MATH;
	cudnnDataType_t io = bf16() ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
	p->nhwc = nhwc();
	cudnnTensorFormat_t f = p->nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
	if (p->nhwc && (CU_DNN(cudnnCreateTensorDescriptor(&p->xn), SHAPE_FMT, SHAPE_ARGS(d)) ||
			CU_DNN(cudnnCreateTensorDescriptor(&p->yn), SHAPE_FMT, SHAPE_ARGS(d)) ||
			CU_DNN(cudnnCreateTensorDescriptor(&p->wt), SHAPE_FMT, SHAPE_ARGS(d)) ||
			CU_DNN(cudnnCreateTensorDescriptor(&p->wtn), SHAPE_FMT, SHAPE_ARGS(d)) ||
			CU_DNN(cudnnSetTensor4dDescriptor(p->xn, CUDNN_TENSOR_NCHW, io, d->n,
							  d->cin, d->h, d->w),
			       SHAPE_FMT " (input, NCHW)", SHAPE_ARGS(d)) ||
			CU_DNN(cudnnSetTensor4dDescriptor(p->yn, CUDNN_TENSOR_NCHW, io, d->n,
							  d->cout, d->hout, d->wout),
			       SHAPE_FMT " (output, NCHW)", SHAPE_ARGS(d)) ||
			CU_DNN(cudnnSetTensor4dDescriptor(p->wt, CUDNN_TENSOR_NHWC, io, d->cout,
							  d->cin / d->groups, d->kh, d->kw),
			       SHAPE_FMT " (filter as an NHWC tensor)", SHAPE_ARGS(d)) ||
			CU_DNN(cudnnSetTensor4dDescriptor(p->wtn, CUDNN_TENSOR_NCHW, io, d->cout,
							  d->cin / d->groups, d->kh, d->kw),
			       SHAPE_FMT " (filter as an NCHW tensor)", SHAPE_ARGS(d))))
		return NULL;
	if (CU_DNN(cudnnCreateTensorDescriptor(&p->x), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnCreateTensorDescriptor(&p->y), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnCreateFilterDescriptor(&p->w), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnCreateConvolutionDescriptor(&p->conv), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnSetTensor4dDescriptor(p->x, f, io, d->n, d->cin, d->h, d->w),
		   SHAPE_FMT " (input)", SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnSetTensor4dDescriptor(p->y, f, io, d->n, d->cout, d->hout, d->wout),
		   SHAPE_FMT " (output %dx%d)", SHAPE_ARGS(d), d->hout, d->wout) ||
	    CU_DNN(
		cudnnSetFilter4dDescriptor(p->w, io, f, d->cout, d->cin / d->groups, d->kh, d->kw),
		SHAPE_FMT " (filter)", SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnSetConvolution2dDescriptor(
		       p->conv, d->pad, d->pad, d->stride, d->stride, d->dil, d->dil,
		       CUDNN_CROSS_CORRELATION,
		       CUDNN_DATA_FLOAT /* compute: fp32 in every precision */),
		   SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnSetConvolutionGroupCount(p->conv, d->groups), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnSetConvolutionMathType(p->conv, base), SHAPE_FMT, SHAPE_ARGS(d)))
		return NULL;

	/* cuDNN's own output size must agree with nn_conv_desc_init's */
	int on, oc, oh, ow;
	if (CU_DNN(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &on, &oc, &oh, &ow),
		   SHAPE_FMT, SHAPE_ARGS(d)))
		return NULL;
	if (on != d->n || oc != d->cout || oh != d->hout || ow != d->wout) {
		cu_fail(__FILE__, __LINE__, "cudnnGetConvolution2dForwardOutputDim", "output shape differs",
			SHAPE_FMT ": cuDNN says %dx%dx%dx%d, nn says %dx%dx%dx%d", SHAPE_ARGS(d), on, oc,
			oh, ow, d->n, d->cout, d->hout, d->wout);
		return NULL;
	}

	if (choose<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
		d, "cudnnFindConvolutionForwardAlgorithm", "forward",
		[&](int cap, int *n, cudnnConvolutionFwdAlgoPerf_t *r) {
			return cudnnFindConvolutionForwardAlgorithm(cu.dnn, p->x, p->w, p->conv,
								    p->y, cap, n, r);
		},
		[&](int cap, int *n, cudnnConvolutionFwdAlgoPerf_t *r) {
			return cudnnGetConvolutionForwardAlgorithm_v7(cu.dnn, p->x, p->w, p->conv,
								      p->y, cap, n, r);
		},
		CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, base, &p->fwd, &p->fwd_math, &p->ws,
		&p->ms[0]) ||
	    choose<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
		d, "cudnnFindConvolutionBackwardDataAlgorithm", "backward-data",
		[&](int cap, int *n, cudnnConvolutionBwdDataAlgoPerf_t *r) {
			return cudnnFindConvolutionBackwardDataAlgorithm(cu.dnn, p->w, p->y,
									 p->conv, p->x, cap, n, r);
		},
		[&](int cap, int *n, cudnnConvolutionBwdDataAlgoPerf_t *r) {
			return cudnnGetConvolutionBackwardDataAlgorithm_v7(cu.dnn, p->w, p->y,
									   p->conv, p->x, cap, n, r);
		},
		CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, base, &p->bwd_data, &p->data_math, &p->ws,
		&p->ms[1]) ||
	    choose<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
		d, "cudnnFindConvolutionBackwardFilterAlgorithm", "backward-filter",
		[&](int cap, int *n, cudnnConvolutionBwdFilterAlgoPerf_t *r) {
			return cudnnFindConvolutionBackwardFilterAlgorithm(cu.dnn, p->x, p->y,
									   p->conv, p->w, cap, n, r);
		},
		[&](int cap, int *n, cudnnConvolutionBwdFilterAlgoPerf_t *r) {
			return cudnnGetConvolutionBackwardFilterAlgorithm_v7(cu.dnn, p->x, p->y,
									     p->conv, p->w, cap, n, r);
		},
		CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, base, &p->bwd_filter, &p->filter_math, &p->ws,
		&p->ms[2]))
		return NULL;
	/* the fallbacks' workspace, when a fallback was taken (0 for IMPLICIT_GEMM and ALGO_0
	   in practice, but ask rather than assume), each under the math type its
	   call will run with (an algorithm may exist under one only) */
	size_t s = 0;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->fwd_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnGetConvolutionForwardWorkspaceSize(cu.dnn, p->x, p->w, p->conv, p->y, p->fwd,
							   &s),
		   SHAPE_FMT " (forward workspace)", SHAPE_ARGS(d)))
		return NULL;
	p->ws = s > p->ws ? s : p->ws;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->data_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnGetConvolutionBackwardDataWorkspaceSize(cu.dnn, p->w, p->y, p->conv, p->x,
								p->bwd_data, &s),
		   SHAPE_FMT " (backward-data workspace)", SHAPE_ARGS(d)))
		return NULL;
	p->ws = s > p->ws ? s : p->ws;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->filter_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(cu.dnn, p->x, p->y, p->conv, p->w,
								  p->bwd_filter, &s),
		   SHAPE_FMT " (backward-filter workspace)", SHAPE_ARGS(d)))
		return NULL;
	p->ws = s > p->ws ? s : p->ws;
	return p;
}

static conv_plan *plan_for(const struct nn_conv_desc *d)
{
	conv_key k;
	memset(&k, 0, sizeof(k));
	int v[13] = {d->n,	d->cin, d->h,	d->w,	   d->cout,	      d->kh,	  d->kw,
		     d->stride, d->pad, d->dil, d->groups, (int)cu.precision, (int)nhwc()};
	memcpy(k.v, v, sizeof(v));
	auto it = plans->find(k);
	if (it != plans->end())
		return it->second;
	conv_plan *p = make_plan(d);
	if (p)
		(*plans)[k] = p;
	if (p && log_plans)
		fprintf(stderr,
			"cairn: cuda: " SHAPE_FMT " %s %s: forward algo %d math %d %.3f ms, "
			"backward-data algo %d math %d %.3f ms, backward-filter algo %d math %d "
			"%.3f ms, workspace %zu bytes (median of %d searches)\n",
			SHAPE_ARGS(d), nn_cuda_precision_name(cu.precision),
			p->nhwc ? "NHWC" : "NCHW", (int)p->fwd, (int)p->fwd_math, p->ms[0],
			(int)p->bwd_data, (int)p->data_math, p->ms[1], (int)p->bwd_filter,
			(int)p->filter_math, p->ms[2], p->ws, search_runs);
	return p;
}

extern "C" int nn_cuda_conv_algos(const struct nn_conv_desc *d, int algo[3], size_t *ws)
{
	if (cu_init() < 0 || cu.failed)
		return -1;
	conv_plan *p = plan_for(d);
	if (!p)
		return -1;
	algo[0] = (int)p->fwd, algo[1] = (int)p->bwd_data, algo[2] = (int)p->bwd_filter;
	if (ws)
		*ws = p->ws;
	return 0;
}

/* The workspace for a pass: the caller's when it asked for this shape's size. */
static void *workspace(conv_plan *p, void *ws, const struct nn_conv_desc *d)
{
	if (p->ws == 0)
		return NULL;
	if (p->queried && ws)
		return ws;
	if (own_ws_bytes < p->ws) {
		void *n = cu_alloc(p->ws);
		if (!n) {
			struct error e;
			nn_cuda_error(&e);
			cu_fail(__FILE__, __LINE__, "cu_alloc", e.msg, SHAPE_FMT " (workspace of %zu bytes)",
				SHAPE_ARGS(d), p->ws);
			return NULL;
		}
		if (own_ws)
			cu_retire(own_ws);
		own_ws = n, own_ws_bytes = p->ws;
	}
	return own_ws;
}

extern "C" size_t cu_conv2d_workspace(const struct nn_conv_desc *d)
{
	if (cu.failed || d->n == 0)
		return 0;
	conv_plan *p = plan_for(d);
	if (!p)
		return 0;
	p->queried = 1;
	return p->ws;
}

/* ---- bf16 copies ------------------------------------------------------- */

/* A net's weights cast to bf16 by cu_params_ready at the start of a pass. */
struct bf16_shadow {
	const float *base;
	size_t n;
	__nv_bfloat16 *bf;
	size_t cap;
	int valid; /* cast in this precision since the weights last changed */
};
#define MAX_SHADOWS 64
static bf16_shadow shadows[MAX_SHADOWS];
static int nshadows;

/* Three scratch buffers: the two inputs and the output of a pass (bf16
 * casts, NHWC copies). */
static void *pass_buf[3];
static size_t pass_bytes[3];

void cu_bf16_forget_casts(void)
{
	for (int i = 0; i < nshadows; i++)
		shadows[i].valid = 0;
}

/* Scratch buffer k of at least bytes: for bf16 casts, and for the NHWC
 * copies of CAIRN_CUDA_CONV_NHWC (never both in one pass: NHWC copies are
 * fp32 and tf32 only). */
static void *pass_scratch(int k, size_t bytes, const char *what, const char *kind)
{
	if (bytes <= pass_bytes[k])
		return pass_buf[k];
	char name[160];
	snprintf(name, sizeof(name), "%s: %s", what, kind);
	return cu_grow(&pass_buf[k], &pass_bytes[k], bytes, name);
}
static __nv_bfloat16 *bf16_scratch(int k, size_t count, const char *what)
{
	return (__nv_bfloat16 *)pass_scratch(k, count * sizeof(__nv_bfloat16), what,
					     "bf16 scratch");
}

/* x (count floats) as bf16: itself in bf16 activation storage, inside a
 * net's cast weights when it lies there, else cast now into scratch buffer
 * k. NULL after a reported failure. */
static const __nv_bfloat16 *bf16_of(const float *x, size_t count, int k, const char *what)
{
	cu_arr a = cu_arr_of(x);
	if (a.bf)
		return (const __nv_bfloat16 *)a.p;
	for (int i = 0; i < nshadows; i++) {
		const bf16_shadow *sh = &shadows[i];
		if (sh->valid && x >= sh->base && x + count <= sh->base + sh->n)
			return sh->bf + (x - sh->base);
	}
	__nv_bfloat16 *b = bf16_scratch(k, count, what);
	if (!b)
		return NULL;
	cu_to_bf16(x, b, count);
	return cu.failed ? NULL : b;
}

/* nn/backend.h params_ready: in BF16, cast the net's weights once for the
 * pass that begins (one kernel over the flat buffer); in FP32 and TF32 there
 * is nothing to cast, and a copy from an earlier BF16 pass is marked stale. */
extern "C" void cu_params_ready(const float *w, size_t n)
{
	CU_ENTER();
	int i = 0;
	while (i < nshadows && shadows[i].base != w)
		i++;
	if (n == 0) { /* the net is released */
		if (i == nshadows)
			return;
		if (shadows[i].bf)
			cu_retire(shadows[i].bf);
		shadows[i] = shadows[--nshadows];
		return;
	}
	if (!bf16()) {
		if (i < nshadows)
			shadows[i].valid = 0;
		return;
	}
	if (i == nshadows) {
		if (nshadows == MAX_SHADOWS)
			return; /* more nets than slots: their convolutions cast per call */
		shadows[nshadows++] = bf16_shadow{w, 0, NULL, 0, 0};
	}
	bf16_shadow *sh = &shadows[i];
	sh->valid = 0;
	if (sh->cap < n) {
		void *p = cu_alloc(n * sizeof(__nv_bfloat16));
		if (!p) {
			struct error e;
			nn_cuda_error(&e);
			cu_fail(__FILE__, __LINE__, "cu_alloc", e.msg,
				"params_ready: bf16 copy of %zu weights", n);
			return;
		}
		if (sh->bf)
			cu_retire(sh->bf);
		sh->bf = (__nv_bfloat16 *)p, sh->cap = n;
	}
	sh->n = n;
	cu_to_bf16(w, sh->bf, n);
	sh->valid = !cu.failed;
}

/* Where a pass writes y (count floats) in bf16: y itself in bf16 activation
 * storage, else scratch buffer 2, to be widened into y by bf16_done. */
static void *bf16_out(float *y, size_t count, const char *what)
{
	cu_arr a = cu_arr_of(y);
	return a.bf ? a.p : bf16_scratch(2, count, what);
}
static void bf16_done(const void *out, float *y, size_t count)
{
	if (out != cu_arr_of(y).p)
		cu_from_bf16(out, y, count);
}

/* ---- passes ------------------------------------------------------------- */

/* The plan and workspace of a pass; false after a reported failure. */
static bool prepare(const struct nn_conv_desc *d, void *ws, conv_plan **p, void **wsp)
{
	*p = plan_for(d);
	if (!*p)
		return false;
	*wsp = workspace(*p, ws, d);
	return !(*p)->ws || *wsp;
}

static size_t conv_x(const struct nn_conv_desc *d)
{
	return (size_t)d->n * d->cin * d->h * d->w;
}
static size_t conv_y(const struct nn_conv_desc *d)
{
	return (size_t)d->n * d->cout * d->hout * d->wout;
}
static size_t conv_w(const struct nn_conv_desc *d)
{
	return (size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw;
}

/* A pass's operands: the layer's input, output (or their gradients) and
 * filter (or its gradient). */
enum role { ROLE_X, ROLE_Y, ROLE_W };
static size_t role_count(const struct nn_conv_desc *d, enum role r)
{
	return r == ROLE_X ? conv_x(d) : r == ROLE_Y ? conv_y(d) : conv_w(d);
}

/* NHWC copies (CAIRN_CUDA_CONV_NHWC) go into the scratch buffers of the
 * bf16 casts (pass_scratch); an operand's transposes go between these two
 * descriptors (the filter's as a tensor: KRSC is NHWC of (K, C, R, S)). */
static void *nhwc_scratch(int k, size_t count, const char *what)
{
	return pass_scratch(k, count * sizeof(float), what, "NHWC copy");
}
static cudnnTensorDescriptor_t nchw_of(const conv_plan *p, enum role r)
{
	return r == ROLE_X ? p->xn : r == ROLE_Y ? p->yn : p->wtn;
}
static cudnnTensorDescriptor_t nhwc_of(const conv_plan *p, enum role r)
{
	return r == ROLE_X ? p->x : r == ROLE_Y ? p->y : p->wt;
}

/* An input v of the pass as the call reads it: v itself, its bf16 form in
 * BF16 (bf16_of, scratch buffer k), or its NHWC copy in buffer k in an nhwc
 * plan. NULL after a reported failure. */
static const void *pass_in(const conv_plan *p, const struct nn_conv_desc *d, int k, const float *v,
			   enum role r, const char *what)
{
	size_t n = role_count(d, r);
	if (bf16())
		return bf16_of(v, n, k, what);
	if (!p->nhwc)
		return v;
	void *dst = nhwc_scratch(k, n, what);
	const float one = 1, zero = 0;
	if (!dst ||
	    CU_DNN(cudnnTransformTensor(cu.dnn, &one, nchw_of(p, r), v, &zero, nhwc_of(p, r), dst),
		   SHAPE_FMT " (%s to NHWC)", SHAPE_ARGS(d), what))
		return NULL;
	return dst;
}

/* Where the call writes the pass's result v: v, or bf16 or NHWC scratch;
 * then pass_done puts it into v (false after a reported failure). */
static void *pass_out(const conv_plan *p, const struct nn_conv_desc *d, float *v, enum role r,
		      const char *what)
{
	if (bf16())
		return bf16_out(v, role_count(d, r), what);
	return p->nhwc ? nhwc_scratch(2, role_count(d, r), what) : v;
}
static bool pass_done(const conv_plan *p, const struct nn_conv_desc *d, const void *out, float *v,
		      enum role r, const char *what)
{
	if (bf16()) {
		bf16_done(out, v, role_count(d, r));
		return !cu.failed;
	}
	const float one = 1, zero = 0;
	return !p->nhwc || !CU_DNN(cudnnTransformTensor(cu.dnn, &one, nhwc_of(p, r), out, &zero,
							nchw_of(p, r), v),
				   SHAPE_FMT " (%s from NHWC)", SHAPE_ARGS(d), what);
}

extern "C" void cu_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w,
			      const float *b, float *y, void *ws)
{
	CU_ENTER();
	if (d->n == 0)
		return;
	conv_plan *p;
	void *wsp;
	if (!prepare(d, ws, &p, &wsp))
		return;
	const float one = 1, zero = 0;
	const void *xa = pass_in(p, d, 0, x, ROLE_X, "conv forward input");
	const void *wa = pass_in(p, d, 1, w, ROLE_W, "conv forward weights");
	void *ya = pass_out(p, d, y, ROLE_Y, "conv forward output");
	if (!xa || !wa || !ya)
		return;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->fwd_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnConvolutionForward(cu.dnn, &one, p->x, xa, p->w, wa, p->conv, p->fwd, wsp,
					   p->ws, &zero, p->y, ya),
		   SHAPE_FMT " forward (algo %d, workspace %zu)", SHAPE_ARGS(d), (int)p->fwd, p->ws))
		return;
	if (CU_LAUNCHED(SHAPE_FMT " forward", SHAPE_ARGS(d)))
		return;
	if (!pass_done(p, d, ya, y, ROLE_Y, "conv forward output"))
		return;
	if (b)
		cu_bias_add(d->n, d->cout, d->hout * d->wout, y, b);
}

extern "C" void cu_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w,
				   float *dx, void *ws)
{
	CU_ENTER();
	if (d->n == 0)
		return;
	conv_plan *p;
	void *wsp;
	if (!prepare(d, ws, &p, &wsp))
		return;
	const float one = 1, zero = 0;
	const void *dya = pass_in(p, d, 0, dy, ROLE_Y, "conv backward-data gradient");
	const void *wa = pass_in(p, d, 1, w, ROLE_W, "conv backward-data weights");
	void *dxa = pass_out(p, d, dx, ROLE_X, "conv backward-data output");
	if (!dya || !wa || !dxa)
		return;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->data_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnConvolutionBackwardData(cu.dnn, &one, p->w, wa, p->y, dya, p->conv,
						p->bwd_data, wsp, p->ws, &zero, p->x, dxa),
		   SHAPE_FMT " backward data (algo %d, workspace %zu)", SHAPE_ARGS(d), (int)p->bwd_data,
		   p->ws))
		return;
	if (CU_LAUNCHED(SHAPE_FMT " backward data", SHAPE_ARGS(d)))
		return;
	pass_done(p, d, dxa, dx, ROLE_X, "conv backward-data output");
}

extern "C" void cu_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
				     float *dw, float *db, void *ws)
{
	CU_ENTER();
	if (d->n == 0) {
		/* no samples: the gradients are zero, as the CPU reference leaves them */
		cu_fill(dw, conv_w(d), 0);
		if (db)
			cu_fill(db, d->cout, 0);
		return;
	}
	conv_plan *p;
	void *wsp;
	if (!prepare(d, ws, &p, &wsp))
		return;
	const float one = 1, zero = 0;
	const void *xa = pass_in(p, d, 0, x, ROLE_X, "conv backward-filter input");
	const void *dya = pass_in(p, d, 1, dy, ROLE_Y, "conv backward-filter gradient");
	void *dwa = pass_out(p, d, dw, ROLE_W, "conv backward-filter output");
	if (!xa || !dya || !dwa)
		return;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->filter_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnConvolutionBackwardFilter(cu.dnn, &one, p->x, xa, p->y, dya, p->conv,
						  p->bwd_filter, wsp, p->ws, &zero, p->w, dwa),
		   SHAPE_FMT " backward filter (algo %d, workspace %zu)", SHAPE_ARGS(d),
		   (int)p->bwd_filter, p->ws))
		return;
	if (CU_LAUNCHED(SHAPE_FMT " backward filter", SHAPE_ARGS(d)))
		return;
	if (!pass_done(p, d, dwa, dw, ROLE_W, "conv backward-filter output"))
		return;
	if (db)
		cu_bias_grad(d->n, d->cout, d->hout * d->wout, dy, db);
}

/* Row-major C = alpha op(A) op(B) + beta C is column-major C^T = op(B)^T op(A)^T:
 * the same call with the operands swapped and m, n exchanged. In BF16, A and
 * B are read in bf16 (storage, weight copies or casts as far as the last
 * row's last element: rows - 1 full strides and one row), C is bf16 in bf16
 * activation storage, else fp32, and the accumulation is fp32. */
extern "C" void cu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
			const float *b, int ldb, float beta, float *c, int ldc)
{
	CU_ENTER();
	if (m == 0 || n == 0)
		return;
	cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
	cu_arr ca = cu_arr_of(c);
	if (k == 0 && ca.bf) { /* C = beta C, row by row (ldc may exceed n) */
		for (int i = 0; i < m; i++)
			beta == 0 ? cu_fill(c + (size_t)i * ldc, n, 0)
				  : cu_scale(c + (size_t)i * ldc, n, beta);
		return;
	}
	if (!bf16() || k == 0) {
		CU_BLAS(cublasSgemm(cu.blas, opb, opa, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc),
			"gemm ta=%d tb=%d m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", ta, tb, m, n, k, lda,
			ldb, ldc);
		return;
	}
	size_t na = (size_t)((ta ? k : m) - 1) * lda + (ta ? m : k);
	size_t nb = (size_t)((tb ? n : k) - 1) * ldb + (tb ? k : n);
	const __nv_bfloat16 *ab = bf16_of(a, na, 0, "gemm A"), *bb = bf16_of(b, nb, 1, "gemm B");
	if (!ab || !bb)
		return;
	CU_BLAS(cublasGemmEx(cu.blas, opb, opa, n, m, k, &alpha, bb, CUDA_R_16BF, ldb, ab, CUDA_R_16BF,
			     lda, &beta, ca.p, ca.bf ? CUDA_R_16BF : CUDA_R_32F, ldc,
			     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
		"gemm bf16 ta=%d tb=%d m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", ta, tb, m, n, k, lda, ldb,
		ldc);
}
