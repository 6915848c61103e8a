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
 * a private workspace instead, so a caller's buffer is never overrun. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unordered_map>

#include "nn/cuda/rt.h"

struct conv_key {
	int v[12];
	bool operator==(const conv_key &o) const { return !memcmp(v, o.v, sizeof(v)); }
};
struct conv_key_hash {
	size_t operator()(const conv_key &k) const
	{
		size_t h = 1469598103934665603ULL;
		for (int i = 0; i < 12; i++)
			h = (h ^ (size_t)(unsigned)k.v[i]) * 1099511628211ULL;
		return h;
	}
};

struct conv_plan {
	cudnnTensorDescriptor_t x, y;
	cudnnFilterDescriptor_t w;
	cudnnConvolutionDescriptor_t conv;
	cudnnConvolutionFwdAlgo_t fwd;
	cudnnConvolutionBwdDataAlgo_t bwd_data;
	cudnnConvolutionBwdFilterAlgo_t bwd_filter;
	cudnnMathType_t fwd_math, data_math, filter_math;
	size_t ws;    /* largest of the three passes */
	int queried;  /* the caller asked conv2d_workspace for this shape */
};

static std::unordered_map<conv_key, conv_plan *, conv_key_hash> *plans;
static size_t ws_cap = (size_t)512 << 20;
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
	return 0;
}

int cu_blas_set_math(void)
{
	cublasMath_t m = cu.precision == NN_CUDA_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH;
	return CU_BLAS(cublasSetMathMode(cu.blas, m), "cuBLAS math mode for %s",
		       cu.precision == NN_CUDA_TF32 ? "tf32" : "fp32");
}

/* FP32 allows only FMA math; TF32 anything cuDNN measured. */
static bool math_allowed(cudnnMathType_t m)
{
	return cu.precision == NN_CUDA_TF32 || m == CUDNN_FMA_MATH || m == CUDNN_DEFAULT_MATH;
}
static cudnnMathType_t math_for_call(cudnnMathType_t m)
{
	return cu.precision == NN_CUDA_TF32 ? m : CUDNN_FMA_MATH;
}

/* FP32 also leaves out the FFT and Winograd algorithms: they trade accuracy
 * for speed (errors near 1e-4 relative on 3x3 kernels), and FP32 promises
 * the reference's numbers within 1e-5. TF32 allows them. */
static bool algo_allowed(cudnnConvolutionFwdAlgo_t a)
{
	return cu.precision == NN_CUDA_TF32 ||
	       (a != CUDNN_CONVOLUTION_FWD_ALGO_FFT && a != CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING &&
		a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD &&
		a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED);
}
static bool algo_allowed(cudnnConvolutionBwdDataAlgo_t a)
{
	return cu.precision == NN_CUDA_TF32 ||
	       (a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT &&
		a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING &&
		a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD &&
		a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED);
}
static bool algo_allowed(cudnnConvolutionBwdFilterAlgo_t a)
{
	return cu.precision == NN_CUDA_TF32 ||
	       (a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT &&
		a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING &&
		a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED);
}

/* Pick the first (fastest) usable result of a cudnnFind* list. */
template <typename Perf>
static int pick(const Perf *r, int count)
{
	for (int i = 0; i < count; i++)
		if (r[i].status == CUDNN_STATUS_SUCCESS && r[i].memory <= ws_cap &&
		    math_allowed(r[i].mathType) && algo_allowed(r[i].algo))
			return i;
	return -1;
}

static conv_plan *make_plan(const struct nn_conv_desc *d)
{
	conv_plan *p = (conv_plan *)calloc(1, sizeof(*p));
	if (!p) {
		cu_fail(__FILE__, __LINE__, "calloc", "out of host memory", SHAPE_FMT, SHAPE_ARGS(d));
		return NULL;
	}
	cudnnMathType_t base = cu.precision == NN_CUDA_TF32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
	if (CU_DNN(cudnnCreateTensorDescriptor(&p->x), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnCreateTensorDescriptor(&p->y), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnCreateFilterDescriptor(&p->w), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnCreateConvolutionDescriptor(&p->conv), SHAPE_FMT, SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->cin,
					      d->h, d->w),
		   SHAPE_FMT " (input)", SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d->n, d->cout,
					      d->hout, d->wout),
		   SHAPE_FMT " (output %dx%d)", SHAPE_ARGS(d), d->hout, d->wout) ||
	    CU_DNN(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d->cout,
					      d->cin / d->groups, d->kh, d->kw),
		   SHAPE_FMT " (filter)", SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnSetConvolution2dDescriptor(p->conv, d->pad, d->pad, d->stride, d->stride,
						   d->dil, d->dil, CUDNN_CROSS_CORRELATION,
						   CUDNN_DATA_FLOAT),
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

	int got = 0, i;
	cudnnConvolutionFwdAlgoPerf_t fr[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
	if (CU_DNN(cudnnFindConvolutionForwardAlgorithm(cu.dnn, p->x, p->w, p->conv, p->y,
							CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, fr),
		   SHAPE_FMT " (choosing the forward algorithm)", SHAPE_ARGS(d)))
		return NULL;
	if ((i = pick(fr, got)) < 0) {
		p->fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM; /* needs no workspace */
		p->fwd_math = base;
	} else {
		p->fwd = fr[i].algo, p->fwd_math = fr[i].mathType, p->ws = fr[i].memory;
	}

	cudnnConvolutionBwdDataAlgoPerf_t dr[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
	if (CU_DNN(cudnnFindConvolutionBackwardDataAlgorithm(cu.dnn, p->w, p->y, p->conv, p->x,
							     CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
							     &got, dr),
		   SHAPE_FMT " (choosing the backward-data algorithm)", SHAPE_ARGS(d)))
		return NULL;
	if ((i = pick(dr, got)) < 0) {
		p->bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
		p->data_math = base;
	} else {
		p->bwd_data = dr[i].algo, p->data_math = dr[i].mathType;
		p->ws = dr[i].memory > p->ws ? dr[i].memory : p->ws;
	}

	cudnnConvolutionBwdFilterAlgoPerf_t wr[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
	if (CU_DNN(cudnnFindConvolutionBackwardFilterAlgorithm(cu.dnn, p->x, p->y, p->conv, p->w,
							       CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
							       &got, wr),
		   SHAPE_FMT " (choosing the backward-filter algorithm)", SHAPE_ARGS(d)))
		return NULL;
	if ((i = pick(wr, got)) < 0) {
		p->bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
		p->filter_math = base;
	} else {
		p->bwd_filter = wr[i].algo, p->filter_math = wr[i].mathType;
		p->ws = wr[i].memory > p->ws ? wr[i].memory : p->ws;
	}
	/* the fallbacks' workspace, when a fallback was taken (0 for IMPLICIT_GEMM and ALGO_0
	   in practice, but ask rather than assume) */
	size_t s = 0;
	if (CU_DNN(cudnnGetConvolutionForwardWorkspaceSize(cu.dnn, p->x, p->w, p->conv, p->y, p->fwd,
							   &s),
		   SHAPE_FMT " (forward workspace)", SHAPE_ARGS(d)))
		return NULL;
	p->ws = s > p->ws ? s : p->ws;
	if (CU_DNN(cudnnGetConvolutionBackwardDataWorkspaceSize(cu.dnn, p->w, p->y, p->conv, p->x,
								p->bwd_data, &s),
		   SHAPE_FMT " (backward-data workspace)", SHAPE_ARGS(d)))
		return NULL;
	p->ws = s > p->ws ? s : p->ws;
	if (CU_DNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(cu.dnn, p->x, p->y, p->conv, p->w,
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
	int v[12] = {d->n, d->cin, d->h, d->w, d->cout, d->kh, d->kw, d->stride, d->pad, d->dil,
		     d->groups, (int)cu.precision};
	memcpy(k.v, v, sizeof(v));
	auto it = plans->find(k);
	if (it != plans->end())
		return it->second;
	conv_plan *p = make_plan(d);
	if (p)
		(*plans)[k] = p;
	return p;
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
			cu_free(own_ws);
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

extern "C" void cu_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w,
			      const float *b, float *y, void *ws)
{
	CU_ENTER();
	if (d->n == 0)
		return;
	conv_plan *p = plan_for(d);
	if (!p)
		return;
	void *wsp = workspace(p, ws, d);
	if (p->ws && !wsp)
		return;
	const float one = 1, zero = 0;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->fwd_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnConvolutionForward(cu.dnn, &one, p->x, x, p->w, w, p->conv, p->fwd, wsp, p->ws,
					   &zero, p->y, y),
		   SHAPE_FMT " forward (algo %d, workspace %zu)", SHAPE_ARGS(d), (int)p->fwd, p->ws))
		return;
	if (CU_LAUNCHED(SHAPE_FMT " forward", SHAPE_ARGS(d)))
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
	conv_plan *p = plan_for(d);
	if (!p)
		return;
	void *wsp = workspace(p, ws, d);
	if (p->ws && !wsp)
		return;
	const float one = 1, zero = 0;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->data_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnConvolutionBackwardData(cu.dnn, &one, p->w, w, p->y, dy, p->conv, p->bwd_data,
						wsp, p->ws, &zero, p->x, dx),
		   SHAPE_FMT " backward data (algo %d, workspace %zu)", SHAPE_ARGS(d), (int)p->bwd_data,
		   p->ws))
		return;
	CU_LAUNCHED(SHAPE_FMT " backward data", SHAPE_ARGS(d));
}

extern "C" void cu_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
				     float *dw, float *db, void *ws)
{
	CU_ENTER();
	if (d->n == 0) {
		/* no samples: the gradients are zero, as the CPU reference leaves them */
		cu_fill(dw, (size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw, 0);
		if (db)
			cu_fill(db, d->cout, 0);
		return;
	}
	conv_plan *p = plan_for(d);
	if (!p)
		return;
	void *wsp = workspace(p, ws, d);
	if (p->ws && !wsp)
		return;
	const float one = 1, zero = 0;
	if (CU_DNN(cudnnSetConvolutionMathType(p->conv, math_for_call(p->filter_math)), SHAPE_FMT,
		   SHAPE_ARGS(d)) ||
	    CU_DNN(cudnnConvolutionBackwardFilter(cu.dnn, &one, p->x, x, p->y, dy, p->conv,
						  p->bwd_filter, wsp, p->ws, &zero, p->w, dw),
		   SHAPE_FMT " backward filter (algo %d, workspace %zu)", SHAPE_ARGS(d),
		   (int)p->bwd_filter, p->ws))
		return;
	if (CU_LAUNCHED(SHAPE_FMT " backward filter", SHAPE_ARGS(d)))
		return;
	if (db)
		cu_bias_grad(d->n, d->cout, d->hout * d->wout, dy, db);
}

/* Row-major C = alpha op(A) op(B) + beta C is column-major C^T = op(B)^T op(A)^T:
 * the same call with the operands swapped and m, n exchanged. */
extern "C" void cu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
			const float *b, int ldb, float beta, float *c, int ldc)
{
	CU_ENTER();
	if (m == 0 || n == 0)
		return;
	CU_BLAS(cublasSgemm(cu.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n,
			    m, k, &alpha, b, ldb, a, lda, &beta, c, ldc),
		"gemm ta=%d tb=%d m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", ta, tb, m, n, k, lda, ldb, ldc);
}
