/* cpu: the two CPU backend tables. The fast one differs from the reference
 * only where a faster algorithm exists (gemm and convolution via OpenBLAS);
 * the other slots are the reference loops themselves. */
#include <cblas.h>

#include "nn/cpu/cpu_ops.h"

#define CPU_COMMON                                                                               \
	.device = NN_DEV_CPU, .alloc = cpu_alloc, .free = cpu_free, .upload = cpu_upload,       \
	.download = cpu_download, .sync = cpu_sync, .fill = cpu_fill, .copy = cpu_copy,          \
	.add = cpu_add, .axpy = cpu_axpy, .mul = cpu_mul, .scale = cpu_scale,                    \
	.bias_add = cpu_bias_add, .bias_grad = cpu_bias_grad, .act_fwd = cpu_act_fwd,           \
	.act_bwd = cpu_act_bwd, .bn_fwd_train = cpu_bn_fwd_train, .bn_fwd_eval = cpu_bn_fwd_eval, \
	.bn_bwd = cpu_bn_bwd, .in_fwd = cpu_in_fwd, .in_bwd = cpu_in_bwd,                        \
	.pool_fwd = cpu_pool_fwd, .pool_bwd = cpu_pool_bwd, .upsample_fwd = cpu_upsample_fwd,   \
	.upsample_bwd = cpu_upsample_bwd, .channel_copy = cpu_channel_copy,                      \
	.channel_slice = cpu_channel_slice, .dropout_fwd = cpu_dropout_fwd,                      \
	.softmax_xent = cpu_softmax_xent, .bce_logits = cpu_bce_logits, .l1 = cpu_l1,            \
	.mse = cpu_mse, .argmax = cpu_argmax, .sgd_step = cpu_sgd_step,                          \
	.adam_step = cpu_adam_step

static const struct nn_backend cpu_ref = {
	.name = "cpu-ref",
	CPU_COMMON,
	.gemm = ref_gemm,
	.conv2d_workspace = ref_conv2d_workspace,
	.conv2d_fwd = ref_conv2d_fwd,
	.conv2d_bwd_data = ref_conv2d_bwd_data,
	.conv2d_bwd_filter = ref_conv2d_bwd_filter,
};

static const struct nn_backend cpu_fast = {
	.name = "cpu",
	CPU_COMMON,
	.gemm = fast_gemm,
	.conv2d_workspace = fast_conv2d_workspace,
	.conv2d_fwd = fast_conv2d_fwd,
	.conv2d_bwd_data = fast_conv2d_bwd_data,
	.conv2d_bwd_filter = fast_conv2d_bwd_filter,
};

const struct nn_backend *nn_backend_cpu(void) { return &cpu_fast; }
const struct nn_backend *nn_backend_cpu_ref(void) { return &cpu_ref; }

void nn_cpu_set_threads(int n)
{
	if (n > 0)
		openblas_set_num_threads(n);
	else
		openblas_set_num_threads(openblas_get_num_procs());
}
