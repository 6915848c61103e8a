#!/usr/bin/env bash
# bench/nn.sh: nn/ convolution speed on the CPU (the direct kernels or im2col
# + OpenBLAS, against the sgemm peak of this machine and against oneDNN, timed
# in turns), one U-Net training step (batch 8, 256x256): images/s and peak
# RSS; then whole training steps (two CNNs, the U-Net) beside PyTorch on the
# CPU. Figures and the command that made them: docs/benchmarks.md, "nn".
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

# Whole training steps beside PyTorch on the CPU (the peer: the Python
# training scripts cairn's stages replace): the same spec strings on both
# sides (bench/cuda_torch.py builds the mirror; tests/integration/
# torch_mirror.sh checks it computes what cairn's net computes), forward,
# softmax cross-entropy, backward, SGD with momentum, after warm-up; both
# on all cores (PyTorch: OMP_NUM_THREADS, its intra-op threads).
py=
for p in python3 /usr/bin/python3; do
	command -v "$p" >/dev/null && "$p" -c "import torch" 2>/dev/null && py=$p && break
done
echo "== nn: training steps, cairn and PyTorch on the CPU ($(nproc) threads each) =="
if [ -z "$py" ]; then
	echo "   SKIP no python3 with PyTorch (apt-get install python3-torch)"
	exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
cnn="--batch 128 --size 28 --channels 1 --classes 10 --steps ${NN_BENCH_STEPS:-20} --warmup 3"
unet="--batch 8 --size 256 --channels 3 --classes 2 --steps ${NN_BENCH_UNET_STEPS:-4} --warmup 2"
for args in "--arch cnn:widths=16-32,convs=2 $cnn" "--arch cnn $cnn" "--arch unet:depth=4,base=16 $unet"; do
	"$CAIRN_BENCH/cuda_step" --device cpu $args
	OMP_NUM_THREADS=$(nproc) "$py" "$here/cuda_torch.py" --device cpu --precision fp32 $args
done
