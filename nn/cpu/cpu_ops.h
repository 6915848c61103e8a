/* cpu_ops: the plain reference implementation of every backend slot, shared
 * by the two CPU tables (nn/cpu/cpu.c); the fast table replaces the heavy
 * ones (gemm, convolution) with BLAS versions from nn/cpu/fast.c.
 * Internal to nn/cpu. */
#ifndef NN_CPU_OPS_H
#define NN_CPU_OPS_H

#include "nn/backend.h"

NN_SLOT(alloc, cpu_alloc);
NN_SLOT(free, cpu_free);
NN_SLOT(upload, cpu_upload);
NN_SLOT(download, cpu_download);
NN_SLOT(sync, cpu_sync);
NN_SLOT(fill, cpu_fill);
NN_SLOT(copy, cpu_copy);
NN_SLOT(add, cpu_add);
NN_SLOT(add_act, cpu_add_act);
NN_SLOT(add_act_bwd, cpu_add_act_bwd);
NN_SLOT(axpy, cpu_axpy);
NN_SLOT(mul, cpu_mul);
NN_SLOT(scale, cpu_scale);
NN_SLOT(bias_add, cpu_bias_add);
NN_SLOT(bias_grad, cpu_bias_grad);
void cpu_bias_grad_range(int n, int c, int hw, const float *dy, float *db, int k0, int k1);

NN_SLOT(gemm, ref_gemm);
NN_SLOT(conv2d_workspace, ref_conv2d_workspace);
NN_SLOT(conv2d_fwd, ref_conv2d_fwd);
NN_SLOT(conv2d_bwd_data, ref_conv2d_bwd_data);
NN_SLOT(conv2d_bwd_filter, ref_conv2d_bwd_filter);

NN_SLOT(act_fwd, cpu_act_fwd);
NN_SLOT(act_bwd, cpu_act_bwd);
NN_SLOT(bn_fwd_train, cpu_bn_fwd_train);
NN_SLOT(bn_fwd_eval, cpu_bn_fwd_eval);
NN_SLOT(bn_bwd, cpu_bn_bwd);
NN_SLOT(in_fwd, cpu_in_fwd);
NN_SLOT(in_bwd, cpu_in_bwd);
NN_SLOT(pool_fwd, cpu_pool_fwd);
NN_SLOT(pool_bwd, cpu_pool_bwd);
NN_SLOT(upsample_fwd, cpu_upsample_fwd);
NN_SLOT(upsample_bwd, cpu_upsample_bwd);
NN_SLOT(channel_copy, cpu_channel_copy);
NN_SLOT(channel_slice, cpu_channel_slice);
NN_SLOT(dropout_fwd, cpu_dropout_fwd);
NN_SLOT(softmax_xent, cpu_softmax_xent);
NN_SLOT(bce_logits, cpu_bce_logits);
NN_SLOT(l1, cpu_l1);
NN_SLOT(mse, cpu_mse);
NN_SLOT(argmax, cpu_argmax);
NN_SLOT(sgd_step, cpu_sgd_step);
NN_SLOT(adam_step, cpu_adam_step);

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
NN_SLOT(gemm, fast_gemm);
NN_SLOT(conv2d_workspace, fast_conv2d_workspace);
NN_SLOT(conv2d_fwd, fast_conv2d_fwd);
NN_SLOT(conv2d_bwd_data, fast_conv2d_bwd_data);
NN_SLOT(conv2d_bwd_filter, fast_conv2d_bwd_filter);
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
/* The vector code cairn's own CPU kernels use (the conv kernel's choice,
 * CAIRN_CONV_KERNEL): 2 AVX-512, 1 AVX2, 0 none (plain C). */
int direct_isa_level(void);
/* threaded memory-bound ops (nn/cpu/par.h) */
NN_SLOT(act_fwd, fast_act_fwd);
NN_SLOT(act_bwd, fast_act_bwd);
NN_SLOT(add, fast_add);
NN_SLOT(add_act, fast_add_act);
NN_SLOT(add_act_bwd, fast_add_act_bwd);
NN_SLOT(axpy, fast_axpy);
NN_SLOT(mul, fast_mul);
NN_SLOT(copy, fast_copy);
NN_SLOT(fill, fast_fill);
NN_SLOT(sgd_step, fast_sgd_step);
NN_SLOT(adam_step, fast_adam_step);
NN_SLOT(bias_add, fast_bias_add);
NN_SLOT(bias_grad, fast_bias_grad);
NN_SLOT(bn_fwd_train, fast_bn_fwd_train);
NN_SLOT(bn_fwd_eval, fast_bn_fwd_eval);
NN_SLOT(bn_bwd, fast_bn_bwd);
NN_SLOT(pool_fwd, fast_pool_fwd);
NN_SLOT(pool_bwd, fast_pool_bwd);
NN_SLOT(upsample_fwd, fast_upsample_fwd);
NN_SLOT(upsample_bwd, fast_upsample_bwd);

#endif
