#!/usr/bin/env bash
# bench/nn.sh: nn/ convolution speed (cairn's im2col + OpenBLAS against the
# sgemm peak and against oneDNN), U-Net training step images/s and peak RSS.
# Figures and the command that made them: docs/benchmarks.md, section "nn".
set -u
: "${CAIRN_BENCH:?run through make bench}"
echo "== nn: convolution and U-Net step (bench/nn_conv) =="
OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} "$CAIRN_BENCH/nn_conv" "$@"
