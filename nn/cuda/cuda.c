/* cuda: the CUDA backend table. Convolutions go to cuDNN and gemm to cuBLAS
 * (nn/cuda/conv.cu); every other slot is an own kernel (nn/cuda/ops.cu);
 * memory comes from a caching allocator and host copies from pinned staging
 * buffers (nn/cuda/rt.cu). Built only with `make CUDA=1`. */
#include <pthread.h>

#include "nn/cuda/cuda.h"
#include "nn/cuda/cuda_ops.h"

/* The slots below are the plain ones; cu_graph_wrap replaces them by their
 * recording forms (nn/cuda/graph.cu), which call them outside a step. */
static struct nn_backend cuda_table = {
	.name = "cuda",
	.device = NN_DEV_CUDA,
	.alloc = cu_alloc,
	.free = cu_free,
	.alloc_why = cu_alloc_why,
	.upload = cu_upload,
	.download = cu_download,
	.sync = cu_sync,
	.host_alloc = cu_host_alloc,
	.host_wait = cu_host_wait,
	.host_free = cu_host_free,
	.params_ready = cu_params_ready,
	.act_alloc = cu_act_alloc,
	.step = cu_step,
	.step_release = cu_step_release,
	.fill = cu_fill,
	.copy = cu_copy,
	.add = cu_add,
	.add_act = cu_add_act,
	.add_act_bwd = cu_add_act_bwd,
	.axpy = cu_axpy,
	.mul = cu_mul,
	.scale = cu_scale,
	.gemm = cu_gemm,
	.bias_add = cu_bias_add,
	.bias_grad = cu_bias_grad,
	.conv2d_workspace = cu_conv2d_workspace,
	.conv2d_fwd = cu_conv2d_fwd,
	.conv2d_bwd_data = cu_conv2d_bwd_data,
	.conv2d_bwd_filter = cu_conv2d_bwd_filter,
	.act_fwd = cu_act_fwd,
	.act_bwd = cu_act_bwd,
	.bn_fwd_train = cu_bn_fwd_train,
	.bn_fwd_eval = cu_bn_fwd_eval,
	.bn_bwd = cu_bn_bwd,
	.in_fwd = cu_in_fwd,
	.in_bwd = cu_in_bwd,
	.pool_fwd = cu_pool_fwd,
	.pool_bwd = cu_pool_bwd,
	.upsample_fwd = cu_upsample_fwd,
	.upsample_bwd = cu_upsample_bwd,
	.channel_copy = cu_channel_copy,
	.channel_slice = cu_channel_slice,
	.dropout_fwd = cu_dropout_fwd,
	.softmax_xent = cu_softmax_xent,
	.bce_logits = cu_bce_logits,
	.l1 = cu_l1,
	.mse = cu_mse,
	.argmax = cu_argmax,
	.sgd_step = cu_sgd_step,
	.adam_step = cu_adam_step,
};

static pthread_once_t wrap_once = PTHREAD_ONCE_INIT;
static void wrap(void) { cu_graph_wrap(&cuda_table); }

/* NULL when no GPU is usable; nn_cuda_error then says why. */
const struct nn_backend *nn_backend_cuda(void)
{
	if (cu_init() < 0)
		return NULL;
	pthread_once(&wrap_once, wrap);
	return &cuda_table;
}
