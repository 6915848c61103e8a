#!/usr/bin/env bash
# tests/integration/torch_mirror.sh with cairn's side on the GPU: every
# model family's forward and backward pass on the CUDA backend in fp32, then
# the small nets in bf16, against PyTorch in float64 (on the CPU), each ReLU
# on cairn's side of its kink.
# Skips when no GPU is visible or no python3 has PyTorch.
source "$(dirname "$0")/../lib.sh"
need_gpu torch_mirror
mirror=$(dirname "$0")/../integration/torch_mirror.sh
DEVICE=cuda bash "$mirror"
rc=$?
DEVICE=cuda PRECISION=bf16 NETS=small bash "$mirror" | sed 's/^\(ok\|not ok\) - /\1 - bf16: /'
r2=${PIPESTATUS[0]}
[ $rc = 0 ] && [ $r2 = 0 ]
