/* table: the CUDA table for the host simulation: nn/cuda/ops.cu's slots
 * compiled for the host, host memory, and the reference convolution and gemm
 * (cuDNN and cuBLAS only run on a GPU), plus stand-ins for nn/cuda/cuda.h. */
#include <stdlib.h>
#include <string.h>

#include "nn/cpu/cpu_ops.h"
#include "nn/cuda/cuda.h"
#include "nn/cuda/cuda_ops.h"

static void *sim_alloc(size_t b) { return malloc(b ? b : 1); }
static void sim_free(void *p) { free(p); }
static void sim_upload(void *d, const void *h, size_t n) { memcpy(d, h, n); }
static void sim_download(void *h, const void *d, size_t n) { memcpy(h, d, n); }
static void sim_sync(void) {}

static const struct nn_backend sim = {
	.name = "cuda-hostsim", .device = NN_DEV_CPU, .alloc = sim_alloc, .free = sim_free,
	.upload = sim_upload, .download = sim_download, .sync = sim_sync,
	.fill = cu_fill, .copy = cu_copy, .add = cu_add, .axpy = cu_axpy, .mul = cu_mul,
	.add_act = cu_add_act, .add_act_bwd = cu_add_act_bwd,
	.scale = cu_scale, .gemm = ref_gemm, .bias_add = cu_bias_add, .bias_grad = cu_bias_grad,
	.conv2d_workspace = ref_conv2d_workspace, .conv2d_fwd = ref_conv2d_fwd,
	.conv2d_bwd_data = ref_conv2d_bwd_data, .conv2d_bwd_filter = ref_conv2d_bwd_filter,
	.act_fwd = cu_act_fwd, .act_bwd = cu_act_bwd, .bn_fwd_train = cu_bn_fwd_train,
	.bn_fwd_eval = cu_bn_fwd_eval, .bn_bwd = cu_bn_bwd, .in_fwd = cu_in_fwd, .in_bwd = cu_in_bwd,
	.pool_fwd = cu_pool_fwd, .pool_bwd = cu_pool_bwd, .upsample_fwd = cu_upsample_fwd,
	.upsample_bwd = cu_upsample_bwd, .channel_copy = cu_channel_copy,
	.channel_slice = cu_channel_slice, .dropout_fwd = cu_dropout_fwd,
	.softmax_xent = cu_softmax_xent, .bce_logits = cu_bce_logits, .l1 = cu_l1, .mse = cu_mse,
	.argmax = cu_argmax, .sgd_step = cu_sgd_step, .adam_step = cu_adam_step,
};

/* test_cuda_ops.c is compiled with -Dnn_backend_cuda=hostsim_backend_cuda */
const struct nn_backend *hostsim_backend_cuda(void) { return &sim; }
int nn_cuda_device_count(void) { return 1; }
int nn_cuda_device(void) { return 0; }
int nn_cuda_set_precision(enum nn_cuda_precision p, struct error *err)
{
	(void)p, (void)err;
	return 0;
}
enum nn_cuda_precision nn_cuda_get_precision(void) { return NN_CUDA_FP32; }
const char *nn_cuda_precision_name(enum nn_cuda_precision p)
{
	return p == NN_CUDA_BF16 ? "bf16" : p == NN_CUDA_TF32 ? "tf32" : "fp32";
}
int nn_cuda_error(struct error *err)
{
	(void)err;
	return 0;
}
void nn_cuda_clear_error(void) {}
void nn_cuda_set_fatal(void (*fn)(const char *msg)) { (void)fn; }
void nn_cuda_get_mem_stats(struct nn_cuda_mem_stats *s) { memset(s, 0, sizeof(*s)); }
void nn_cuda_get_graph_stats(struct nn_cuda_graph_stats *s) { memset(s, 0, sizeof(*s)); }
void nn_cuda_empty_cache(void) {}
void nn_cuda_set_memory_limit(size_t bytes)
{
	(void)bytes;
}
void nn_cuda_set_conv_search(int runs)
{
	(void)runs;
}
int nn_cuda_conv_algos(const struct nn_conv_desc *d, int algo[3], size_t *ws)
{
	(void)d, (void)algo, (void)ws;
	return -1;
}
