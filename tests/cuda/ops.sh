#!/usr/bin/env bash
# Every slot of the CUDA table against the CPU reference (tests/unit/test_cuda_ops.c):
# its TAP lines pass through. Skips when no GPU is visible.
source "$(dirname "$0")/../lib.sh"
t=$CAIRN_TESTS/test_cuda_ops
if [ ! -x "$t" ]; then
	not_ok "cuda_ops: $t not built (make CUDA=1 all)"
	exit 1
fi
if [ "$("$t" --gpu-count)" -lt 1 ]; then
	skip cuda_ops "no GPU visible"
	exit 0
fi
# CAIRN_CUDA_SYNC=1 synchronizes after every kernel, which a CUDA graph
# capture cannot do (graphs are off then): the graph tests run apart, without it
CAIRN_CUDA_SYNC=1 CAIRN_CUDA_TEST_ONLY=-test_graph,test_graph_models "$t" | grep -v '# SKIP not selected'
rc=${PIPESTATUS[0]}
CAIRN_CUDA_TEST_ONLY=test_graph,test_graph_models "$t" | grep -v '# SKIP not selected'
r=${PIPESTATUS[0]}
# a whole net in bf16 with fp32 activations: the casts around each conv
CAIRN_CUDA_BF16_ACT=0 CAIRN_CUDA_TEST_ONLY=test_net_bf16 "$t" | grep -v '# SKIP not selected' |
	sed 's/^\(ok\|not ok\) - /\1 - CAIRN_CUDA_BF16_ACT=0 /'
r2=${PIPESTATUS[0]}
[ "$rc" = 0 ] && [ "$r" = 0 ] && [ "$r2" = 0 ]
