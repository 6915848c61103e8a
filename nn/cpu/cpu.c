/* cpu: the two CPU backend tables. The fast one differs from the reference
 * where a faster algorithm exists (gemm and convolution via OpenBLAS) or where
 * the same loops run on several threads (nn/cpu/par.h); the other slots are
 * the reference loops themselves. */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/cpu/cpu_ops.h"
#include "nn/cpu/par.h"

/* Slots that are the same plain loops in both tables. */
#define CPU_COMMON                                                                               \
	.device = NN_DEV_CPU, .alloc = cpu_alloc, .free = cpu_free, .upload = cpu_upload,       \
	.download = cpu_download, .sync = cpu_sync, .scale = cpu_scale,                          \
	.in_fwd = cpu_in_fwd, .in_bwd = cpu_in_bwd,                                              \
	.channel_copy = cpu_channel_copy, .channel_slice = cpu_channel_slice,                    \
	.dropout_fwd = cpu_dropout_fwd, .softmax_xent = cpu_softmax_xent,                        \
	.bce_logits = cpu_bce_logits, .l1 = cpu_l1, .mse = cpu_mse, .argmax = cpu_argmax

static const struct nn_backend cpu_ref = {
	.name = "cpu-ref",
	CPU_COMMON,
	.fill = cpu_fill, .copy = cpu_copy, .add = cpu_add, .axpy = cpu_axpy, .mul = cpu_mul,
	.add_act = cpu_add_act, .add_act_bwd = cpu_add_act_bwd,
	.bias_add = cpu_bias_add, .bias_grad = cpu_bias_grad, .act_fwd = cpu_act_fwd,
	.act_bwd = cpu_act_bwd,
	.bn_fwd_train = cpu_bn_fwd_train, .bn_fwd_eval = cpu_bn_fwd_eval, .bn_bwd = cpu_bn_bwd,
	.pool_fwd = cpu_pool_fwd, .pool_bwd = cpu_pool_bwd, .upsample_fwd = cpu_upsample_fwd,
	.upsample_bwd = cpu_upsample_bwd, .sgd_step = cpu_sgd_step, .adam_step = cpu_adam_step,
	.gemm = ref_gemm,
	.conv2d_workspace = ref_conv2d_workspace,
	.conv2d_fwd = ref_conv2d_fwd,
	.conv2d_bwd_data = ref_conv2d_bwd_data,
	.conv2d_bwd_filter = ref_conv2d_bwd_filter,
};

static const struct nn_backend cpu_fast = {
	.name = "cpu",
	CPU_COMMON,
	.fill = fast_fill, .copy = fast_copy, .add = fast_add, .axpy = fast_axpy, .mul = fast_mul,
	.add_act = fast_add_act, .add_act_bwd = fast_add_act_bwd,
	.bias_add = fast_bias_add, .bias_grad = fast_bias_grad, .act_fwd = fast_act_fwd,
	.act_bwd = fast_act_bwd,
	.bn_fwd_train = fast_bn_fwd_train, .bn_fwd_eval = fast_bn_fwd_eval, .bn_bwd = fast_bn_bwd,
	.pool_fwd = fast_pool_fwd, .pool_bwd = fast_pool_bwd, .upsample_fwd = fast_upsample_fwd,
	.upsample_bwd = fast_upsample_bwd, .sgd_step = fast_sgd_step, .adam_step = fast_adam_step,
	.gemm = fast_gemm,
	.conv2d_workspace = fast_conv2d_workspace,
	.conv2d_fwd = fast_conv2d_fwd,
	.conv2d_bwd_data = fast_conv2d_bwd_data,
	.conv2d_bwd_filter = fast_conv2d_bwd_filter,
};

const struct nn_backend *nn_backend_cpu(void) { return &cpu_fast; }
const struct nn_backend *nn_backend_cpu_ref(void) { return &cpu_ref; }

void nn_cpu_set_threads(int n) { par_set_threads(n); }

const char *nn_cpu_conv_kernel(const struct nn_conv_desc *d, int pass)
{
	return direct_conv2d_kernel(d, pass);
}

/* OpenBLAS chooses its kernels from the CPU model in its constructor, before
 * main. Debian 12's 0.3.21 does not know newer models: on an Intel family 6
 * model 207 it fell back to Prescott (SSE3; sgemm 18 GFLOP/s on one core
 * against 140 with its AVX-512 kernels). OPENBLAS_CORETYPE is read only then,
 * so the cure is to set it and start the program again. A value the caller
 * set is kept, with a line when it is older than the CPU (one machine here
 * had OPENBLAS_CORETYPE=Haswell in its environment on an AVX-512 Zen 5:
 * sgemm 115 GFLOP/s on one core against 222 with OpenBLAS's own choice). */

/* 2: AVX-512 kernels, 1: AVX2 + FMA, 0: older (every other core OpenBLAS names) */
static int blas_core_level(const char *core)
{
	static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
	static const char *const avx2[] = {"Haswell", "Zen"};
	for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++)
		if (!strcmp(core, avx512[i]))
			return 2;
	for (size_t i = 0; i < sizeof avx2 / sizeof *avx2; i++)
		if (!strcmp(core, avx2[i]))
			return 1;
	return 0;
}

/* the best OpenBLAS core for this CPU's vector unit (NULL: none better than SSE3) */
static const char *blas_core_for_cpu(void)
{
	const char *isa = direct_best_isa();
	if (!strcmp(isa, "avx512"))
		return "SkylakeX";
	if (!strcmp(isa, "avx2"))
		return __builtin_cpu_is("amd") ? "Zen" : "Haswell";
	return NULL;
}

int nn_cpu_blas_fits(const char **chosen, const char **best)
{
	*chosen = openblas_get_corename();
	*best = blas_core_for_cpu();
	return !*chosen || !*best || blas_core_level(*chosen) >= blas_core_level(*best);
}

void nn_cpu_blas_check(char **argv)
{
	const char *core, *want;
	if (nn_cpu_blas_fits(&core, &want))
		return;
	const char *set = getenv("OPENBLAS_CORETYPE");
	if (set) {
		fprintf(stderr,
			"%s: OPENBLAS_CORETYPE=%s runs kernels older than this CPU's %s "
			"(OpenBLAS's sgemm may be half as fast or less); unset it to let OpenBLAS "
			"choose\n",
			argv[0], set, direct_best_isa());
		return;
	}
	fprintf(stderr,
		"%s: OpenBLAS does not know this CPU and chose its %s kernels, older than the CPU's "
		"%s; starting again with OPENBLAS_CORETYPE=%s (set it yourself to choose)\n",
		argv[0], core, direct_best_isa(), want);
	setenv("OPENBLAS_CORETYPE", want, 1);
	execv("/proc/self/exe", argv);
	fprintf(stderr, "%s: could not start again (%s): going on with the slow kernels\n",
		argv[0], strerror(errno));
}
