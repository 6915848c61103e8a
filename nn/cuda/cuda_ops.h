/* cuda_ops: the CUDA implementation of every backend slot, one function per
 * slot (same arguments as nn/backend.h), gathered into the table by
 * nn/cuda/cuda.c. Internal to nn/cuda; C and CUDA C++ both include it. */
#ifndef NN_CUDA_OPS_H
#define NN_CUDA_OPS_H

#include "nn/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

NN_SLOT(alloc, cu_alloc);
NN_SLOT(free, cu_free);
NN_SLOT(alloc_why, cu_alloc_why);
NN_SLOT(upload, cu_upload);
NN_SLOT(download, cu_download);
NN_SLOT(host_alloc, cu_host_alloc);
NN_SLOT(host_wait, cu_host_wait);
NN_SLOT(host_free, cu_host_free);
NN_SLOT(sync, cu_sync);
NN_SLOT(act_alloc, cu_act_alloc);
NN_SLOT(fill, cu_fill);
NN_SLOT(copy, cu_copy);
NN_SLOT(add, cu_add);
NN_SLOT(add_act, cu_add_act);
NN_SLOT(add_act_bwd, cu_add_act_bwd);
NN_SLOT(axpy, cu_axpy);
NN_SLOT(mul, cu_mul);
NN_SLOT(scale, cu_scale);
NN_SLOT(bias_add, cu_bias_add);
NN_SLOT(bias_grad, cu_bias_grad);

NN_SLOT(gemm, cu_gemm);
NN_SLOT(conv2d_workspace, cu_conv2d_workspace);
NN_SLOT(conv2d_fwd, cu_conv2d_fwd);
NN_SLOT(conv2d_bwd_data, cu_conv2d_bwd_data);
NN_SLOT(conv2d_bwd_filter, cu_conv2d_bwd_filter);

NN_SLOT(act_fwd, cu_act_fwd);
NN_SLOT(act_bwd, cu_act_bwd);
NN_SLOT(bn_fwd_train, cu_bn_fwd_train);
NN_SLOT(bn_fwd_eval, cu_bn_fwd_eval);
NN_SLOT(bn_bwd, cu_bn_bwd);
NN_SLOT(in_fwd, cu_in_fwd);
NN_SLOT(in_bwd, cu_in_bwd);
NN_SLOT(pool_fwd, cu_pool_fwd);
NN_SLOT(pool_bwd, cu_pool_bwd);
NN_SLOT(upsample_fwd, cu_upsample_fwd);
NN_SLOT(upsample_bwd, cu_upsample_bwd);
NN_SLOT(channel_copy, cu_channel_copy);
NN_SLOT(channel_slice, cu_channel_slice);
NN_SLOT(dropout_fwd, cu_dropout_fwd);
NN_SLOT(softmax_xent, cu_softmax_xent);
NN_SLOT(bce_logits, cu_bce_logits);
NN_SLOT(l1, cu_l1);
NN_SLOT(mse, cu_mse);
NN_SLOT(argmax, cu_argmax);
NN_SLOT(sgd_step, cu_sgd_step);
NN_SLOT(adam_step, cu_adam_step);

/* bf16 casts, n values, round to nearest even (mixed precision; exposed for
 * tests/unit/test_cuda_ops.c). y and x are device arrays of __nv_bfloat16. */
void cu_to_bf16(const float *x, void *y, size_t n);
void cu_from_bf16(const void *x, float *y, size_t n);
/* nn/backend.h params_ready: cast a net's weights to bf16 once per pass. */
NN_SLOT(params_ready, cu_params_ready);

/* nn/backend.h step and step_release: a training step as a CUDA graph
 * (nn/cuda/graph.cu); cu_graph_wrap puts the recording forms of the slots
 * into the table. */
NN_SLOT(step, cu_step);
NN_SLOT(step_release, cu_step_release);
void cu_graph_wrap(struct nn_backend *t);

/* Set up the device, streams and library handles on first use; 0 when a GPU
 * is usable, -1 (message kept for nn_cuda_error) otherwise. */
int cu_init(void);

#ifdef __cplusplus
}
#endif

#endif
