/* The part of cuDNN 9's legacy convolution API that nn/cuda/conv.cu calls,
 * on the host (tests/cuda_hostsim/sim_rt.cpp): descriptors as plain values,
 * cudnnFind* returning a fixed, plausible list (a Winograd entry with tensor
 * cores first, one that converts to FP16, a GEMM with a workspace, an
 * implicit GEMM without one), and the passes computed by the CPU reference
 * convolution on the handle's stream, after checking every buffer (device
 * memory, the workspace as large as the algorithm needs). Float tensors with
 * tensor-op or default math are rounded to TF32 first, as on Hopper; BF16
 * tensors are read and written as bf16. A search or heuristic query on bf16
 * tensors under a math type other than TENSOR_OP stops the run: cuDNN would
 * leave its tensor-core kernels out and the convolutions would run on CUDA
 * cores (correct, and slower than tf32). */
#ifndef SIM_CUDNN_H
#define SIM_CUDNN_H

#include <stddef.h>

#include "cuda_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	CUDNN_STATUS_SUCCESS = 0,
	CUDNN_STATUS_NOT_INITIALIZED = 1001,
	CUDNN_STATUS_BAD_PARAM = 2000,
	CUDNN_STATUS_NOT_SUPPORTED = 3000,
	CUDNN_STATUS_EXECUTION_FAILED = 5000,
} cudnnStatus_t;
typedef enum { CUDNN_DATA_FLOAT = 0, CUDNN_DATA_BFLOAT16 = 9 } cudnnDataType_t;
typedef enum { CUDNN_TENSOR_NCHW = 0, CUDNN_TENSOR_NHWC = 1 } cudnnTensorFormat_t;
typedef enum { CUDNN_CONVOLUTION = 0, CUDNN_CROSS_CORRELATION = 1 } cudnnConvolutionMode_t;
typedef enum {
	CUDNN_DEFAULT_MATH = 0,
	CUDNN_TENSOR_OP_MATH = 1,
	CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION = 2,
	CUDNN_FMA_MATH = 3,
} cudnnMathType_t;
typedef enum { CUDNN_NON_DETERMINISTIC = 0, CUDNN_DETERMINISTIC = 1 } cudnnDeterminism_t;
typedef enum {
	CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM = 0,
	CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM = 1,
	CUDNN_CONVOLUTION_FWD_ALGO_GEMM = 2,
	CUDNN_CONVOLUTION_FWD_ALGO_DIRECT = 3,
	CUDNN_CONVOLUTION_FWD_ALGO_FFT = 4,
	CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING = 5,
	CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD = 6,
	CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED = 7,
	CUDNN_CONVOLUTION_FWD_ALGO_COUNT = 8,
} cudnnConvolutionFwdAlgo_t;
typedef enum {
	CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 = 0,
	CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 = 1,
	CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT = 2,
	CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING = 3,
	CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD = 4,
	CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED = 5,
	CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT = 6,
} cudnnConvolutionBwdDataAlgo_t;
typedef enum {
	CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 = 0,
	CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 = 1,
	CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT = 2,
	CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3 = 3,
	CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD = 4,
	CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED = 5,
	CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING = 6,
	CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT = 7,
} cudnnConvolutionBwdFilterAlgo_t;

#define SIM_PERF(name, algo_t)                                                                     \
	typedef struct {                                                                           \
		algo_t algo;                                                                       \
		cudnnStatus_t status;                                                              \
		float time;                                                                        \
		size_t memory;                                                                     \
		cudnnDeterminism_t determinism;                                                    \
		cudnnMathType_t mathType;                                                          \
		int reserved[3];                                                                   \
	} name
SIM_PERF(cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t);
SIM_PERF(cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t);
SIM_PERF(cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t);
#undef SIM_PERF

typedef struct sim_dnn *cudnnHandle_t;
typedef struct sim_tensor_desc *cudnnTensorDescriptor_t;
typedef struct sim_tensor_desc *cudnnFilterDescriptor_t;
typedef struct sim_conv_desc *cudnnConvolutionDescriptor_t;

const char *cudnnGetErrorString(cudnnStatus_t s);
cudnnStatus_t cudnnCreate(cudnnHandle_t *h);
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s);
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d);
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d);
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d);
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d);
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d);
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d);
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f,
					 cudnnDataType_t t, int n, int c, int h, int w);
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t,
					 cudnnTensorFormat_t f, int k, int c, int h, int w);
cudnnStatus_t cudnnTransformTensor(cudnnHandle_t h, const void *alpha, cudnnTensorDescriptor_t xd,
				   const void *x, const void *beta, cudnnTensorDescriptor_t yd,
				   void *y);
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w,
					      int u, int v, int dil_h, int dil_w,
					      cudnnConvolutionMode_t mode, cudnnDataType_t compute);
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups);
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m);
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t c,
						    cudnnTensorDescriptor_t x,
						    cudnnFilterDescriptor_t w, int *n, int *ch,
						    int *h, int *wd);
cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t h, cudnnTensorDescriptor_t x,
						   cudnnFilterDescriptor_t w,
						   cudnnConvolutionDescriptor_t c,
						   cudnnTensorDescriptor_t y, int want, int *got,
						   cudnnConvolutionFwdAlgoPerf_t *r);
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t h, cudnnFilterDescriptor_t w,
							cudnnTensorDescriptor_t dy,
							cudnnConvolutionDescriptor_t c,
							cudnnTensorDescriptor_t dx, int want,
							int *got,
							cudnnConvolutionBwdDataAlgoPerf_t *r);
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(
    cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnFilterDescriptor_t dw, int want, int *got,
    cudnnConvolutionBwdFilterAlgoPerf_t *r);
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, cudnnTensorDescriptor_t x,
						     cudnnFilterDescriptor_t w,
						     cudnnConvolutionDescriptor_t c,
						     cudnnTensorDescriptor_t y, int want, int *got,
						     cudnnConvolutionFwdAlgoPerf_t *r);
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t h, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t dx, int want, int *got,
    cudnnConvolutionBwdDataAlgoPerf_t *r);
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnFilterDescriptor_t dw, int want, int *got,
    cudnnConvolutionBwdFilterAlgoPerf_t *r);
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, cudnnTensorDescriptor_t x,
						      cudnnFilterDescriptor_t w,
						      cudnnConvolutionDescriptor_t c,
						      cudnnTensorDescriptor_t y,
						      cudnnConvolutionFwdAlgo_t a, size_t *bytes);
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t h, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t dx, cudnnConvolutionBwdDataAlgo_t a,
    size_t *bytes);
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnFilterDescriptor_t dw, cudnnConvolutionBwdFilterAlgo_t a,
    size_t *bytes);
cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
				      cudnnTensorDescriptor_t xd, const void *x,
				      cudnnFilterDescriptor_t wd, const void *w,
				      cudnnConvolutionDescriptor_t c, cudnnConvolutionFwdAlgo_t a,
				      void *ws, size_t ws_bytes, const void *beta,
				      cudnnTensorDescriptor_t yd, void *y);
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha,
					   cudnnFilterDescriptor_t wd, const void *w,
					   cudnnTensorDescriptor_t dyd, const void *dy,
					   cudnnConvolutionDescriptor_t c,
					   cudnnConvolutionBwdDataAlgo_t a, void *ws,
					   size_t ws_bytes, const void *beta,
					   cudnnTensorDescriptor_t dxd, void *dx);
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha,
					     cudnnTensorDescriptor_t xd, const void *x,
					     cudnnTensorDescriptor_t dyd, const void *dy,
					     cudnnConvolutionDescriptor_t c,
					     cudnnConvolutionBwdFilterAlgo_t a, void *ws,
					     size_t ws_bytes, const void *beta,
					     cudnnFilterDescriptor_t dwd, void *dw);

#ifdef __cplusplus
}
#endif

#endif
