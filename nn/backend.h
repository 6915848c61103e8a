/* backend: the table of compute primitives every layer, loss and optimizer
 * in nn/ dispatches through. nn/cpu provides two tables (a plain reference and
 * the fast BLAS path, tested against each other); nn/cuda adds a third later
 * (cuDNN + cuBLAS) without models, losses or stages changing.
 *
 * Conventions for every slot: pointers are device memory of the backend,
 * tensors are NCHW float32, shapes come in the descriptors, and outputs are
 * overwritten (never accumulated) unless the slot says otherwise. Scalars
 * returned through `float *out` pointers are host memory. */
#ifndef NN_BACKEND_H
#define NN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "nn/tensor.h"

/* A 2-D convolution, cross-correlation as in cuDNN and PyTorch:
 *   y[n][co][i][j] = b[co] + sum_{ci in group(co), p, q}
 *       w[co][ci - g0][p][q] * x[n][ci][i*stride - pad + p*dil][j*stride - pad + q*dil]
 * w is (cout, cin/groups, kh, kw). */
struct nn_conv_desc {
	int n, cin, h, w;
	int cout, kh, kw;
	int stride, pad, dil, groups;
	int hout, wout; /* filled by nn_conv_desc_init */
};

/* Fills hout/wout; -1 with a message when the shape is impossible. */
int nn_conv_desc_init(struct nn_conv_desc *d, struct error *err);
/* Multiply-adds of one forward pass (the backward passes cost the same, each). */
double nn_conv_macs(const struct nn_conv_desc *d);

enum nn_pool_kind { NN_POOL_MAX = 0, NN_POOL_AVG = 1 };

/* Pooling window kh x kw, stride sh x sw, zero padding ph x pw (padding never
 * wins a max and is not counted in an average). */
struct nn_pool_desc {
	enum nn_pool_kind kind;
	int n, c, h, w;
	int kh, kw, sh, sw, ph, pw;
	int hout, wout;
};
int nn_pool_desc_init(struct nn_pool_desc *d, struct error *err);

enum nn_act { NN_ACT_RELU = 0, NN_ACT_LEAKY = 1, NN_ACT_TANH = 2, NN_ACT_SIGMOID = 3, NN_ACT_NONE = 4 };

#ifdef __CUDACC__
#define NN_HOST_DEVICE __host__ __device__
#else
#define NN_HOST_DEVICE
#endif

/* The gradient of an activation from its output y and the output's
 * gradient dy (ReLU and LeakyReLU: alpha >= 0, so y > 0 exactly when the
 * input was); the fused norm + activation slots use it (nn/cuda too). */
NN_HOST_DEVICE static inline float nn_act_grad(enum nn_act kind, float alpha, float y, float dy)
{
	switch (kind) {
	case NN_ACT_RELU:
		return y > 0 ? dy : 0;
	case NN_ACT_LEAKY:
		return y > 0 ? dy : alpha * dy;
	case NN_ACT_TANH:
		return dy * (1 - y * y);
	case NN_ACT_SIGMOID:
		return dy * y * (1 - y);
	default:
		return dy;
	}
}
enum nn_upsample_mode { NN_UP_NEAREST = 0, NN_UP_BILINEAR = 1 };

struct nn_backend {
	const char *name;
	enum nn_device device;

	/* Memory: the swappable allocator (a caching one on CUDA). */
	void *(*alloc)(size_t bytes); /* NULL when out of memory */
	void (*free)(void *p);
	/* Optional: why the last alloc returned NULL (bytes asked, free, held by
	 * the backend), for the error message; NULL or "" when unknown. */
	const char *(*alloc_why)(void);
	void (*upload)(void *dst, const void *host, size_t bytes);
	void (*download)(void *host, const void *src, size_t bytes);
	void (*sync)(void);
	/* Optional (NULL on the CPU: use plain memory). Page-locked host memory
	 * for buffers uploaded again and again (a loader's batches): upload
	 * reads such a buffer straight, without a staging copy, and may still be
	 * reading it after it returns, so the caller must not write it again
	 * before host_wait(p) has returned. host_free waits too. */
	void *(*host_alloc)(size_t bytes); /* NULL when it cannot */
	void (*host_wait)(const void *p);
	void (*host_free)(void *p);
	/* Optional (NULL: nothing to do). [w, w + n) are a net's parameter values
	 * (its flat buffer, nn/net.h) and a forward and backward pass that reads
	 * them begins; they do not change until it ends. A backend that computes
	 * with lower-precision copies of weights (bf16 on CUDA) makes them here,
	 * once per pass. n == 0: the net is being released, forget w. */
	void (*params_ready)(const float *w, size_t n);
	/* Optional (NULL: alloc is used). Memory that will hold only
	 * activations and their gradients, which the table's slots, upload and
	 * download are the only ones to read and write (nn/net.c allocates its
	 * activation span here), so a backend may keep them in lower precision:
	 * CUDA in bf16 keeps float element i of the block as bf16 element i and
	 * backs only the block's first half with device memory (nn/cuda/rt.h);
	 * upload and download convert. Their values are then those of that
	 * precision, and are not kept across a change of precision. Freed by
	 * free; NULL when out of memory (alloc_why says why). Not inside a step. */
	void *(*act_alloc)(size_t bytes);
	/* Optional (NULL: fn(ctx) is called). One training step, fn(ctx), made
	 * of device work through this table only: uploads of its inputs come
	 * before it, a download or sync inside makes it run without a graph, and
	 * the loss values it asks for are written when step returns, not before.
	 * CUDA replays a step whose calls repeat exactly as one captured CUDA
	 * graph (nn/cuda/graph.cu). *state is the caller's: NULL at first, freed
	 * by step_release. */
	void (*step)(void **state, void (*fn)(void *ctx), void *ctx);
	void (*step_release)(void *state);

	void (*fill)(float *x, size_t n, float v);
	void (*copy)(float *dst, const float *src, size_t n);
	void (*add)(const float *a, const float *b, float *y, size_t n); /* y = a + b */
	/* y = act(a + b) (NN_ACT_NONE: a + b; ReLU and LeakyReLU with alpha >= 0
	 * as for the norms): a residual sum and the activation that is its only
	 * reader (nn/net.c). Backward: da = db = the activation's gradient from y
	 * and dy (dy itself for NN_ACT_NONE; y is then not read), both written;
	 * da and db may be the same buffer. */
	void (*add_act)(enum nn_act act, float alpha, const float *a, const float *b, float *y,
			size_t n);
	void (*add_act_bwd)(enum nn_act act, float alpha, const float *y, const float *dy,
			    float *da, float *db, size_t n);
	void (*axpy)(size_t n, float a, const float *x, float *y);       /* y += a x */
	void (*mul)(const float *a, const float *b, float *y, size_t n); /* y = a * b */
	void (*scale)(float *x, size_t n, float a);

	/* C = alpha op(A) op(B) + beta C, row-major, op = transpose when ta/tb. */
	void (*gemm)(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
		     const float *b, int ldb, float beta, float *c, int ldc);
	/* y[n][c][.] += b[c];  db[c] = sum over n and hw of dy[n][c][.] */
	void (*bias_add)(int n, int c, int hw, float *y, const float *b);
	void (*bias_grad)(int n, int c, int hw, const float *dy, float *db);

	/* Convolution. ws is a workspace of conv2d_workspace(d) bytes, shared by
	 * all layers of a net. b, db may be NULL (no bias). */
	size_t (*conv2d_workspace)(const struct nn_conv_desc *d);
	void (*conv2d_fwd)(const struct nn_conv_desc *d, const float *x, const float *w,
			   const float *b, float *y, void *ws);
	void (*conv2d_bwd_data)(const struct nn_conv_desc *d, const float *dy, const float *w,
				float *dx, void *ws);
	void (*conv2d_bwd_filter)(const struct nn_conv_desc *d, const float *x, const float *dy,
				  float *dw, float *db, void *ws);

	/* Activations; backward gets both x and y so each kind uses the cheaper one. */
	void (*act_fwd)(enum nn_act kind, float alpha, const float *x, float *y, size_t n);
	void (*act_bwd)(enum nn_act kind, float alpha, const float *x, const float *y,
			const float *dy, float *dx, size_t n);

	/* Batch norm over (n, hw) per channel, then the activation `act`
	 * (alpha as for act_fwd; NN_ACT_NONE: none): y = act(bn(x)), in one pass
	 * (nn/net.c fuses a norm with the activation that is its only consumer).
	 * ReLU and LeakyReLU need alpha >= 0 here: their backward tells the sign
	 * of the norm's output from y. Train mode saves mean and 1/std (per
	 * channel) for backward and updates the running statistics:
	 * run = (1 - momentum) run + momentum batch (variance unbiased). */
	void (*bn_fwd_train)(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			     const float *gamma, const float *beta, float eps, float momentum,
			     float *y, float *save_mean, float *save_invstd, float *run_mean,
			     float *run_var);
	void (*bn_fwd_eval)(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			    const float *gamma, const float *beta, const float *run_mean,
			    const float *run_var, float eps, float *y);
	/* y and dy: the forward's output (after the activation) and its
	 * gradient; y is not read when act is NN_ACT_NONE (may be NULL). */
	void (*bn_bwd)(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		       const float *y, const float *dy, const float *gamma, const float *save_mean,
		       const float *save_invstd, float *dx, float *dgamma, float *dbeta);
	/* Instance norm: statistics per (n, c) over hw, affine per c; saves n*c
	 * values; the activation as above. */
	void (*in_fwd)(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		       const float *gamma, const float *beta, float eps, float *y, float *save_mean,
		       float *save_invstd);
	void (*in_bwd)(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		       const float *y, const float *dy, const float *gamma, const float *save_mean,
		       const float *save_invstd, float *dx, float *dgamma, float *dbeta);

	/* Pooling; idx (max only) records the winner's offset in its input plane. */
	void (*pool_fwd)(const struct nn_pool_desc *d, const float *x, float *y, int32_t *idx);
	void (*pool_bwd)(const struct nn_pool_desc *d, const float *dy, const int32_t *idx,
			 float *dx);

	/* Upsampling by an integer factor; bilinear uses half-pixel centres
	 * (align_corners = false, as PyTorch's default). x is (n, c, h, w). */
	void (*upsample_fwd)(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
			     const float *x, float *y);
	void (*upsample_bwd)(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
			     const float *dy, float *dx);

	/* Channel block copy for concat: dst[n][coff + k] (= or +=) src[n][k],
	 * k < csrc; dst has cdst channels. */
	void (*channel_copy)(int n, int hw, int csrc, const float *src, int cdst, int coff,
			     float *dst, int accumulate);
	/* Channel block gather, the reverse: dst[n][k] = src[n][coff + k]. */
	void (*channel_slice)(int n, int hw, int csrc, int coff, const float *src, int cdst,
			      float *dst, int accumulate);

	/* Inverted dropout: mask[i] = 0 or 1/(1-p) from a counter-based hash of
	 * (seed, i), so every backend draws the same mask; y = x * mask. */
	void (*dropout_fwd)(size_t n, float p, uint64_t seed, const float *x, float *y, float *mask);

	/* Losses write d(loss)/d(input) and the loss value (host float).
	 * Softmax cross-entropy over c classes at every (n, pixel); label < 0 is
	 * ignored; class_w (may be NULL) weights each term; the loss is the
	 * weighted mean: sum w_y (-log p_y) / sum w_y. */
	void (*softmax_xent)(int n, int c, int hw, const float *logits, const int32_t *labels,
			     const float *class_w, float *dlogits, float *loss);
	/* BCE with logits, per-element weights w (may be NULL): mean over elements of
	 * w (max(x,0) - x t + log(1 + exp(-|x|))). */
	void (*bce_logits)(size_t n, const float *x, const float *t, const float *w, float *dx,
			   float *loss);
	void (*l1)(size_t n, const float *x, const float *t, float *dx, float *loss);  /* mean |x-t| */
	void (*mse)(size_t n, const float *x, const float *t, float *dx, float *loss); /* mean (x-t)^2 */
	/* Softmax probabilities (n, c) -> argmax per row, for accuracy. */
	void (*argmax)(int n, int c, const float *x, int32_t *out);

	/* Optimizer steps over n floats of parameters, normally all trainable
	 * parameters of a net at once (its flat buffers, nn/net.h): one call, one
	 * kernel. wd is L2 added to the gradient of the first ndecay floats only
	 * (weights first, then biases and norm scales, which get none). */
	void (*sgd_step)(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
			 float momentum, float wd, int nesterov);
	/* Adam (Kingma & Ba 2015, alg. 1) with bias correction at step t >= 1;
	 * wd is decoupled (AdamW, Loshchilov & Hutter 2019) when decoupled != 0. */
	void (*adam_step)(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
			  float lr, float b1, float b2, float eps, float wd, int decoupled, int t);
};

/* Declares fn as an implementation of one slot, with the slot's arguments:
 * NN_SLOT(add, cpu_add); is void cpu_add(const float *a, const float *b,
 * float *y, size_t n);. The backends' headers declare theirs this way, so
 * that a slot's arguments are written once, here. */
#define NN_SLOT(slot, fn) __typeof__(*((struct nn_backend *)0)->slot) fn

/* The CPU tables (nn/cpu). The reference one is slow and plain; the fast one
 * is what programs use. */
const struct nn_backend *nn_backend_cpu(void);
const struct nn_backend *nn_backend_cpu_ref(void);
/* The CUDA table (nn/cuda, `make CUDA=1`); NULL when built without CUDA or
 * when no GPU is usable (nn/cuda/cuda.h: nn_cuda_error says why). */
const struct nn_backend *nn_backend_cuda(void);
/* By name: "cpu", "cpu-ref", "cuda", or "auto" (cuda when a GPU is
 * visible, else cpu). NULL if unknown, or if cuda (or auto with a GPU
 * visible) cannot be used: err (may be NULL) then says why, e.g. "device
 * auto: no usable CUDA backend: CAIRN_CUDA_DEVICE=2: want a device index
 * from 0 to 1 (...)". A GPU that is there but unusable is an error, never
 * a quiet fall back to the CPU. */
const struct nn_backend *nn_backend_by_name(const char *name, struct error *err);
/* --precision of the training and prediction stages for be: *name is
 * "fp32", "tf32", "bf16" or NULL (the device's default) and becomes the
 * precision in use. -1 with err: an unknown name ("unknown precision 'x'
 * (known: fp32, tf32, bf16)", said before the device is held against it), a
 * CPU device asked for other than fp32, or what CUDA refuses (bf16 before
 * Ampere). */
int nn_backend_set_precision(const struct nn_backend *be, const char **name, struct error *err);
/* be->step if the backend has it, else fn(ctx); and its release. */
void nn_backend_step(const struct nn_backend *be, void **state, void (*fn)(void *ctx), void *ctx);
/* After be->alloc returned NULL: sets err to the formatted message followed
 * by the backend's reason in parentheses (alloc_why) when it has one; -1. */
int nn_alloc_failed(const struct nn_backend *be, struct error *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void nn_backend_step_release(const struct nn_backend *be, void **state);
/* Allocations made by the CPU backends so far (tests: none in a training step). */
size_t nn_cpu_allocations(void);
/* The fast CPU convolution's kernels: "auto" (the best this CPU runs:
 * "avx512", else "avx2"), "avx512", "avx2" or "gemm" (im2col + sgemm for every
 * shape). Read from CAIRN_CONV_KERNEL at first use unless set before; -1 when
 * the name is unknown or this CPU cannot run it. For tests and benchmarks. */
int nn_cpu_set_conv_kernel(const char *name);
/* Which of those runs pass 0 (forward), 1 (backward-data) or 2 (backward-filter) of d. */
const char *nn_cpu_conv_kernel(const struct nn_conv_desc *d, int pass);
/* At the top of main, before argv is touched: when OpenBLAS chose kernels
 * older than the CPU's vector unit (it does not know the model: SSE3 ones on
 * an AVX2 or AVX-512 CPU, AVX2 ones on an AVX-512 CPU), say so, set
 * OPENBLAS_CORETYPE and exec the program again. It returns when nothing
 * needed doing, when the caller had set OPENBLAS_CORETYPE (kept; a line says
 * when it is older than the CPU) or when the exec failed (said on stderr). */
void nn_cpu_blas_check(char **argv);
/* 1 when OpenBLAS's kernels match the CPU (or no better ones exist); *chosen:
 * the core OpenBLAS runs, *best: the one this CPU should run (NULL: none). */
int nn_cpu_blas_fits(const char **chosen, const char **best);
/* Threads the CPU backend may use (OpenBLAS and its own loops); <= 0:
 * cpus_default_threads(): OMP_NUM_THREADS, else the CPUs this process may
 * run on (its affinity, else all cores). */
void nn_cpu_set_threads(int n);

#endif
