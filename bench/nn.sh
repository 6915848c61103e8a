#!/usr/bin/env bash
# bench/nn.sh: nn/ convolution speed on the CPU (the direct kernels or im2col
# + OpenBLAS, against the sgemm peak of this machine and against oneDNN, timed
# in turns), and one U-Net training step
# (batch 8, 256x256): images/s and peak RSS. Figures and the command that made
# them: docs/benchmarks.md, section "nn".
set -u
: "${CAIRN_BENCH:?run through make bench}"
if [ "${1:-}" = --cuda ]; then
	echo "== nn: CPU only, skipped under --cuda (the GPU figures are bench/cuda.sh's) =="
	exit 0
fi
echo "== nn: convolution and U-Net step (bench/nn_conv) =="
# passive OpenMP waits: oneDNN's idle threads must not burn the CPU time we compare
OMP_WAIT_POLICY=passive OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} "$CAIRN_BENCH/nn_conv" --reps "${NN_BENCH_REPS:-5}"
