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
# The peak is OpenBLAS's sgemm with the kernels it picks for this CPU: an
# OPENBLAS_CORETYPE inherited from the environment (one machine here set
# Haswell on an AVX-512 CPU, halving sgemm) would lower the bar.
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
	echo "OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE in the environment: unset for this benchmark (NN_BENCH_CORETYPE=X chooses)"
	unset OPENBLAS_CORETYPE
fi
[ -n "${NN_BENCH_CORETYPE:-}" ] && export OPENBLAS_CORETYPE=$NN_BENCH_CORETYPE
# passive OpenMP waits: oneDNN's idle threads must not burn the CPU time we compare
OMP_WAIT_POLICY=passive OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} "$CAIRN_BENCH/nn_conv" --reps "${NN_BENCH_REPS:-5}"
