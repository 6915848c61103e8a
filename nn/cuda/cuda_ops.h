/* cuda_ops: the CUDA implementation of every backend slot, one function per
 * slot (same arguments as nn/backend.h), gathered into the table by
 * nn/cuda/cuda.c. Internal to nn/cuda; C and CUDA C++ both include it. */
#ifndef NN_CUDA_OPS_H
#define NN_CUDA_OPS_H

#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

void *cu_alloc(size_t bytes);
void cu_free(void *p);
const char *cu_alloc_why(void);
void cu_upload(void *dst, const void *host, size_t bytes);
void cu_download(void *host, const void *src, size_t bytes);
void *cu_host_alloc(size_t bytes);
void cu_host_wait(const void *p);
void cu_host_free(void *p);
void cu_sync(void);
void *cu_act_alloc(size_t bytes);
void cu_fill(float *x, size_t n, float v);
void cu_copy(float *dst, const float *src, size_t n);
void cu_add(const float *a, const float *b, float *y, size_t n);
void cu_add_act(enum nn_act act, float alpha, const float *a, const float *b, float *y, size_t n);
void cu_add_act_bwd(enum nn_act act, float alpha, const float *y, const float *dy, float *da,
		    float *db, size_t n);
void cu_axpy(size_t n, float a, const float *x, float *y);
void cu_mul(const float *a, const float *b, float *y, size_t n);
void cu_scale(float *x, size_t n, float a);
void cu_bias_add(int n, int c, int hw, float *y, const float *b);
void cu_bias_grad(int n, int c, int hw, const float *dy, float *db);

void cu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	      const float *b, int ldb, float beta, float *c, int ldc);
size_t cu_conv2d_workspace(const struct nn_conv_desc *d);
void cu_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w, const float *b,
		    float *y, void *ws);
void cu_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w, float *dx,
			 void *ws);
void cu_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
			   float *dw, float *db, void *ws);

void cu_act_fwd(enum nn_act kind, float alpha, const float *x, float *y, size_t n);
void cu_act_bwd(enum nn_act kind, float alpha, const float *x, const float *y, const float *dy,
		 float *dx, size_t n);
void cu_bn_fwd_train(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		     const float *gamma, const float *beta, float eps, float momentum, float *y,
		     float *save_mean, float *save_invstd, float *run_mean, float *run_var);
void cu_bn_fwd_eval(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		    const float *gamma, const float *beta, const float *run_mean,
		    const float *run_var, float eps, float *y);
void cu_bn_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x, const float *y,
	       const float *dy, const float *gamma, const float *save_mean,
	       const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void cu_in_fwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
	       const float *gamma, const float *beta, float eps, float *y, float *save_mean,
	       float *save_invstd);
void cu_in_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x, const float *y,
	       const float *dy, const float *gamma, const float *save_mean,
	       const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void cu_pool_fwd(const struct nn_pool_desc *d, const float *x, float *y, int32_t *idx);
void cu_pool_bwd(const struct nn_pool_desc *d, const float *dy, const int32_t *idx, float *dx);
void cu_upsample_fwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		      const float *x, float *y);
void cu_upsample_bwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		      const float *dy, float *dx);
void cu_channel_copy(int n, int hw, int csrc, const float *src, int cdst, int coff, float *dst,
		      int accumulate);
void cu_channel_slice(int n, int hw, int csrc, int coff, const float *src, int cdst, float *dst,
		       int accumulate);
void cu_dropout_fwd(size_t n, float p, uint64_t seed, const float *x, float *y, float *mask);
void cu_softmax_xent(int n, int c, int hw, const float *logits, const int32_t *labels,
		      const float *class_w, float *dlogits, float *loss);
void cu_bce_logits(size_t n, const float *x, const float *t, const float *w, float *dx,
		    float *loss);
void cu_l1(size_t n, const float *x, const float *t, float *dx, float *loss);
void cu_mse(size_t n, const float *x, const float *t, float *dx, float *loss);
void cu_argmax(int n, int c, const float *x, int32_t *out);
void cu_sgd_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
		float momentum, float wd, int nesterov);
void cu_adam_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		float lr, float b1, float b2, float eps, float wd, int decoupled, int t);

/* bf16 casts, n values, round to nearest even (mixed precision; exposed for
 * tests/unit/test_cuda_ops.c). y and x are device arrays of __nv_bfloat16. */
void cu_to_bf16(const float *x, void *y, size_t n);
void cu_from_bf16(const void *x, float *y, size_t n);
/* nn/backend.h params_ready: cast a net's weights to bf16 once per pass. */
void cu_params_ready(const float *w, size_t n);

/* nn/backend.h step and step_release: a training step as a CUDA graph
 * (nn/cuda/graph.cu); cu_graph_wrap puts the recording forms of the slots
 * into the table. */
void cu_step(void **state, void (*fn)(void *ctx), void *ctx);
void cu_step_release(void *state);
void cu_graph_wrap(struct nn_backend *t);

/* Set up the device, streams and library handles on first use; 0 when a GPU
 * is usable, -1 (message kept for nn_cuda_error) otherwise. */
int cu_init(void);

#ifdef __cplusplus
}
#endif

#endif
