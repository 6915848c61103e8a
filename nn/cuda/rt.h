/* rt: what the .cu files of nn/cuda share: the one compute stream, the copy
 * stream, the cuDNN and cuBLAS handles, the checked-call macros that name the
 * op and its shapes on failure, launch geometry and a scratch buffer.
 * Internal to nn/cuda; CUDA C++ only. */
#ifndef NN_CUDA_RT_H
#define NN_CUDA_RT_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

/* the C headers of cairn have no extern "C" of their own */
extern "C" {
#include "core/error.h"
#include "nn/backend.h"
}
#include "nn/cuda/cuda.h"
#include "nn/cuda/cuda_ops.h"

struct cu_ctx {
	int ready;
	int device, sms;
	int cc; /* compute capability x 10 (90: Hopper) */
	int debug_sync; /* CAIRN_CUDA_SYNC=1: synchronize after every slot, so an
			   asynchronous fault is reported by the op that caused it */
	enum nn_cuda_precision precision;
	cudaStream_t compute; /* every kernel, cuDNN and cuBLAS call runs here, in order */
	cudaStream_t copy;    /* host-to-device uploads from pinned staging buffers */
	cudnnHandle_t dnn;
	cublasHandle_t blas;
	volatile int failed; /* a slot failed: the rest are no-ops (see nn_cuda_set_fatal) */
	int capturing;       /* a step is being captured into a CUDA graph (graph.cu) */
	int graphs_live;     /* graphs that exist: buffers they use must not be reused */
	/* a recorded step's calls are still to run (graph.cu): blocks freed while
	   recording stay cached, as those calls may use them */
	int hold_cache;
};
extern struct cu_ctx cu;

/* Record a failure ("op: call failed: why (file:line)"), keep the first one,
 * call the fatal handler. fmt describes the op and its shapes. */
void cu_fail(const char *file, int line, const char *call, const char *why, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Install fn as the fatal handler (nn_cuda_set_fatal) and return the old one:
 * a capture collects a failure's message instead of exiting. */
typedef void (*cu_fatal_fn)(const char *msg);
cu_fatal_fn cu_fatal_swap(cu_fatal_fn fn);

int cu_check_rt(cudaError_t e, const char *call, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
int cu_check_dnn(cudnnStatus_t e, const char *call, const char *file, int line, const char *fmt,
		 ...) __attribute__((format(printf, 5, 6)));
int cu_check_blas(cublasStatus_t e, const char *call, const char *file, int line, const char *fmt,
		  ...) __attribute__((format(printf, 5, 6)));

/* Each returns 0 when the call succeeded, -1 after reporting it; the
 * format arguments are only formatted on failure. */
#define CU_RT(call, ...) cu_check_rt((call), #call, __FILE__, __LINE__, __VA_ARGS__)
#define CU_DNN(call, ...) cu_check_dnn((call), #call, __FILE__, __LINE__, __VA_ARGS__)
#define CU_BLAS(call, ...) cu_check_blas((call), #call, __FILE__, __LINE__, __VA_ARGS__)
/* After a kernel launch: the launch error, and in debug mode the execution. */
#define CU_LAUNCHED(...) cu_launched(__FILE__, __LINE__, __VA_ARGS__)
int cu_launched(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Start of every slot: nothing to do after a failure. */
#define CU_ENTER()                                                                          \
	do {                                                                                \
		if (cu.failed)                                                              \
			return;                                                             \
	} while (0)

#define CU_THREADS 256
/* Blocks for a grid-stride loop over n items: enough to fill the device,
 * never more than the items need. */
static inline unsigned cu_blocks(size_t n)
{
	size_t b = (n + CU_THREADS - 1) / CU_THREADS, cap = (size_t)cu.sms * 16;
	if (b > cap)
		b = cap;
	return b ? (unsigned)b : 1;
}

/* A device buffer of at least bytes for the current slot's temporaries
 * (partial sums); grows through the caching allocator, never shrinks.
 * NULL after a failure has been reported. */
void *cu_scratch(size_t bytes);
/* *buf (an internal buffer of *cap bytes, NULL at first) made at least need
 * bytes: a new block from the caching allocator, the old one retired
 * (cu_retire). NULL after reporting a failure ("WHAT of N bytes"). */
void *cu_grow(void **buf, size_t *cap, size_t need, const char *what);
/* Pinned host memory for scalars read back by the loss slots. */
double *cu_host_scalars(void);
/* Give back an internal buffer that grew (scratch, workspace, bf16 casts):
 * freed now, or, while a CUDA graph that may use it exists, when the last
 * graph is destroyed (a graph holds raw addresses). */
void cu_retire(void *p);
void cu_retired_free(void);

/* Activation storage (nn/backend.h act_alloc): in BF16, the blocks a net
 * allocated for its activations and their gradients keep them as bf16,
 * float element i of a block at bf16 element i of the same block (its first
 * half, the only half then backed by device memory), so that the kernels,
 * cuDNN and cuBLAS read and write half the bytes, no conversion runs between
 * layers and the activations take half the memory. CAIRN_CUDA_BF16_ACT=0
 * keeps them fp32 (each convolution and gemm then casts its operands).
 * A float array as the kernels see it: p is a float * (bf = 0) or a bf16 *
 * (bf = 1) at the same element. */
struct cu_arr {
	void *p;
	int bf;
};
/* The array at p: in bf16 activation storage, or fp32 (p as it is). */
cu_arr cu_arr_of(const void *p);
/* Changes whenever the blocks or their backing change (a CUDA graph's
 * signature holds it). */
unsigned cu_act_generation(void);

/* bf16 (conv.cu): forget every cast copy of weights (the precision changed). */
void cu_bf16_forget_casts(void);

/* CUDA graphs (graph.cu). Inside a captured step the values that change
 * from step to step (learning rate, Adam's bias corrections, dropout seeds)
 * are read by the kernels from device memory that the graph fills at its
 * start; these entry points take that address (NULL: use the argument). */
void cu_sgd_step_at(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
		    const float *lr_dev, float momentum, float wd, int nesterov);
/* sc_dev: lr, c1 = 1 - b1^t, c2 = 1 - b2^t */
void cu_adam_step_at(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		     float lr, const float *sc_dev, float b1, float b2, float eps, float wd,
		     int decoupled, int t);
/* key_dev: splitmix64 of the seed */
void cu_dropout_fwd_at(size_t n, float p, uint64_t seed, const uint64_t *key_dev, const float *x,
		       float *y, float *mask);
uint64_t cu_mix64(uint64_t z);
/* A loss finishing inside a capture: the nsums sums go to pinned memory
 * (the returned address, as the copy's destination) and *loss is computed
 * from them after each replay: sums[1] / sums[0] (kind 0, softmax_xent, 0
 * when sums[0] is 0) or sums[0] / n (kind 1). */
double *cu_graph_loss(int nsums, float *loss, int kind, size_t n);
/* The loss from its read-back sums, as above (eager and after replays alike). */
static inline float cu_loss_value(const double *h, int kind, size_t n)
{
	return kind == 0 ? (h[0] > 0 ? (float)(h[1] / h[0]) : 0) : (float)(h[0] / n);
}

/* Conv algorithm cache and workspace (conv.cu): called from cu_init. */
int cu_conv_init(void);
/* cuBLAS math mode for the current precision. */
int cu_blas_set_math(void);

#endif
