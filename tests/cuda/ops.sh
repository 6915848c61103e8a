#!/usr/bin/env bash
# Every slot of the CUDA table against the CPU reference (tests/unit/test_cuda_ops.c):
# its TAP lines pass through. Skips when no GPU is visible.
source "$(dirname "$0")/../lib.sh"
need_gpu cuda_ops
t=$CAIRN_TESTS/test_cuda_ops
# CAIRN_CUDA_SYNC=1 synchronizes after every kernel, which a CUDA graph
# capture cannot do (graphs are off then): the graph tests run apart, without it
CAIRN_CUDA_SYNC=1 CAIRN_CUDA_TEST_ONLY=-test_graph,test_graph_models "$t" | grep -v '# SKIP not selected'
rc=${PIPESTATUS[0]}
CAIRN_CUDA_TEST_ONLY=test_graph,test_graph_models "$t" | grep -v '# SKIP not selected'
r=${PIPESTATUS[0]}
# a whole net in bf16 with fp32 activations: the casts around each conv,
# activation storage backed in full
CAIRN_CUDA_BF16_ACT=0 CAIRN_CUDA_TEST_ONLY=test_net_bf16,test_act_memory "$t" | grep -v '# SKIP not selected' |
	sed 's/^\(ok\|not ok\) - /\1 - CAIRN_CUDA_BF16_ACT=0 /'
r2=${PIPESTATUS[0]}
# every convolution pass on NHWC copies (CAIRN_CUDA_CONV_NHWC=1, the
# experiment for the CycleGAN goal): cuDNN's NHWC kernels and its
# transposes against the CPU reference, and inside graph steps
CAIRN_CUDA_CONV_NHWC=1 CAIRN_CUDA_TEST_ONLY=test_conv,test_conv_tf32,test_graph_models "$t" |
	grep -v '# SKIP not selected' | sed 's/^\(ok\|not ok\) - /\1 - CAIRN_CUDA_CONV_NHWC=1 /'
r3=${PIPESTATUS[0]}
[ "$rc" = 0 ] && [ "$r" = 0 ] && [ "$r2" = 0 ] && [ "$r3" = 0 ]
