/* cpu_ops: the plain reference implementation of every backend slot, shared
 * by the two CPU tables (nn/cpu/cpu.c); the fast table replaces the heavy
 * ones (gemm, convolution) with BLAS versions from nn/cpu/fast.c.
 * Internal to nn/cpu. */
#ifndef NN_CPU_OPS_H
#define NN_CPU_OPS_H

#include "nn/backend.h"

void *cpu_alloc(size_t bytes);
void cpu_free(void *p);
void cpu_upload(void *dst, const void *host, size_t bytes);
void cpu_download(void *host, const void *src, size_t bytes);
void cpu_sync(void);
void cpu_fill(float *x, size_t n, float v);
void cpu_copy(float *dst, const float *src, size_t n);
void cpu_add(const float *a, const float *b, float *y, size_t n);
void cpu_add_act(enum nn_act act, float alpha, const float *a, const float *b, float *y, size_t n);
void cpu_add_act_bwd(enum nn_act act, float alpha, const float *y, const float *dy, float *da,
		     float *db, size_t n);
void cpu_axpy(size_t n, float a, const float *x, float *y);
void cpu_mul(const float *a, const float *b, float *y, size_t n);
void cpu_scale(float *x, size_t n, float a);
void cpu_bias_add(int n, int c, int hw, float *y, const float *b);
void cpu_bias_grad(int n, int c, int hw, const float *dy, float *db);
void cpu_bias_grad_range(int n, int c, int hw, const float *dy, float *db, int k0, int k1);

void ref_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	      const float *b, int ldb, float beta, float *c, int ldc);
size_t ref_conv2d_workspace(const struct nn_conv_desc *d);
void ref_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w, const float *b,
		    float *y, void *ws);
void ref_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w, float *dx,
			 void *ws);
void ref_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
			   float *dw, float *db, void *ws);

void cpu_act_fwd(enum nn_act kind, float alpha, const float *x, float *y, size_t n);
void cpu_act_bwd(enum nn_act kind, float alpha, const float *x, const float *y, const float *dy,
		 float *dx, size_t n);
void cpu_bn_fwd_train(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		      const float *gamma, const float *beta, float eps, float momentum, float *y,
		      float *save_mean, float *save_invstd, float *run_mean, float *run_var);
void cpu_bn_fwd_eval(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		     const float *gamma, const float *beta, const float *run_mean,
		     const float *run_var, float eps, float *y);
void cpu_bn_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x, const float *y,
		const float *dy, const float *gamma, const float *save_mean,
		const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void cpu_in_fwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		const float *gamma, const float *beta, float eps, float *y, float *save_mean,
		float *save_invstd);
void cpu_in_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x, const float *y,
		const float *dy, const float *gamma, const float *save_mean,
		const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void cpu_pool_fwd(const struct nn_pool_desc *d, const float *x, float *y, int32_t *idx);
void cpu_pool_bwd(const struct nn_pool_desc *d, const float *dy, const int32_t *idx, float *dx);
void cpu_upsample_fwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		      const float *x, float *y);
void cpu_upsample_bwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		      const float *dy, float *dx);
void cpu_channel_copy(int n, int hw, int csrc, const float *src, int cdst, int coff, float *dst,
		      int accumulate);
void cpu_channel_slice(int n, int hw, int csrc, int coff, const float *src, int cdst, float *dst,
		       int accumulate);
void cpu_dropout_fwd(size_t n, float p, uint64_t seed, const float *x, float *y, float *mask);
void cpu_softmax_xent(int n, int c, int hw, const float *logits, const int32_t *labels,
		      const float *class_w, float *dlogits, float *loss);
void cpu_bce_logits(size_t n, const float *x, const float *t, const float *w, float *dx,
		    float *loss);
void cpu_l1(size_t n, const float *x, const float *t, float *dx, float *loss);
void cpu_mse(size_t n, const float *x, const float *t, float *dx, float *loss);
void cpu_argmax(int n, int c, const float *x, int32_t *out);
void cpu_sgd_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
		float momentum, float wd, int nesterov);
void cpu_adam_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		float lr, float b1, float b2, float eps, float wd, int decoupled, int t);

/* Channel ranges [k0, k1) of the batch-norm passes, for threading. */
void cpu_bn_fwd_train_range(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			    const float *gamma, const float *beta, float eps, float momentum,
			    float *y, float *save_mean, float *save_invstd, float *run_mean,
			    float *run_var, int k0, int k1);
void cpu_bn_fwd_eval_range(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
			   const float *gamma, const float *beta, const float *run_mean,
			   const float *run_var, float eps, float *y, int k0, int k1);
void cpu_bn_bwd_range(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		      const float *y, const float *dy, const float *gamma, const float *save_mean,
		      const float *save_invstd, float *dx, float *dgamma, float *dbeta, int k0,
		      int k1);

/* fast.c */
void fast_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	       const float *b, int ldb, float beta, float *c, int ldc);
size_t fast_conv2d_workspace(const struct nn_conv_desc *d);
void fast_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w,
		     const float *b, float *y, void *ws);
void fast_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w,
			  float *dx, void *ws);
void fast_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
			    float *dw, float *db, void *ws);
/* direct.c: stride-1 convolutions without im2col; -1 (nothing done) for the
 * shapes or CPUs it does not handle. pass: 0 forward, 1 backward-data,
 * 2 backward-filter. */
size_t direct_conv2d_workspace(const struct nn_conv_desc *d);
int direct_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w,
		      const float *b, float *y, void *ws);
int direct_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w,
			   float *dx, void *ws);
int direct_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
			     float *dw, float *db, void *ws);
const char *direct_conv2d_kernel(const struct nn_conv_desc *d, int pass);
/* The best instruction set this CPU runs: "avx512", "avx2" or "gemm" (neither). */
const char *direct_best_isa(void);
/* threaded memory-bound ops (nn/cpu/par.h) */
void fast_act_fwd(enum nn_act kind, float alpha, const float *x, float *y, size_t n);
void fast_act_bwd(enum nn_act kind, float alpha, const float *x, const float *y, const float *dy,
		  float *dx, size_t n);
void fast_add(const float *a, const float *b, float *y, size_t n);
void fast_add_act(enum nn_act act, float alpha, const float *a, const float *b, float *y,
		  size_t n);
void fast_add_act_bwd(enum nn_act act, float alpha, const float *y, const float *dy, float *da,
		      float *db, size_t n);
void fast_axpy(size_t n, float a, const float *x, float *y);
void fast_mul(const float *a, const float *b, float *y, size_t n);
void fast_copy(float *dst, const float *src, size_t n);
void fast_fill(float *x, size_t n, float v);
void fast_sgd_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
		float momentum, float wd, int nesterov);
void fast_adam_step(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		float lr, float b1, float b2, float eps, float wd, int decoupled, int t);
void fast_bias_add(int n, int c, int hw, float *y, const float *b);
void fast_bias_grad(int n, int c, int hw, const float *dy, float *db);
void fast_bn_fwd_train(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		       const float *gamma, const float *beta, float eps, float momentum, float *y,
		       float *save_mean, float *save_invstd, float *run_mean, float *run_var);
void fast_bn_fwd_eval(int n, int c, int hw, enum nn_act act, float alpha, const float *x,
		      const float *gamma, const float *beta, const float *run_mean,
		      const float *run_var, float eps, float *y);
void fast_bn_bwd(int n, int c, int hw, enum nn_act act, float alpha, const float *x, const float *y,
		 const float *dy, const float *gamma, const float *save_mean,
		 const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void fast_pool_fwd(const struct nn_pool_desc *d, const float *x, float *y, int32_t *idx);
void fast_pool_bwd(const struct nn_pool_desc *d, const float *dy, const int32_t *idx, float *dx);
void fast_upsample_fwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		       const float *x, float *y);
void fast_upsample_bwd(enum nn_upsample_mode mode, int n, int c, int h, int w, int scale,
		       const float *dy, float *dx);

#endif
