#!/usr/bin/env bash
# bench/nn.sh: nn/ convolution speed on the CPU (the direct kernels or im2col
# + OpenBLAS, against the sgemm peak of this machine and against oneDNN, timed
# in turns), one U-Net training step (batch 8, 256x256): images/s and peak
# RSS; then whole training steps (two CNNs, the U-Net) beside PyTorch on the
# CPU, and the Fashion-MNIST training stage beside the PyTorch script it
# replaces. Figures and the command that made them: docs/benchmarks.md, "nn".
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
# sides (bench/torch_nets.py builds the mirror; tests/integration/
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

# The whole training stage beside the PyTorch script it replaces
# (bench/torch_classifier.py: cairn-train-classifier's recipe, network and
# initialization): Fashion-MNIST, NN_BENCH_EPOCHS epochs (3), test accuracy
# and training time.
idx=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
epochs=${NN_BENCH_EPOCHS:-3}
echo "== nn: Fashion-MNIST training, $epochs epochs: cairn-train-classifier and the PyTorch script =="
if [ ! -f "$idx/train-images-idx3-ubyte.gz" ]; then
	echo "   SKIP no Fashion-MNIST in $idx (apt-get install dataset-fashion-mnist, or set FASHION_MNIST)"
	exit 0
fi
tmp=$(mktemp -d /tmp/cairn-bench-nn.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$CAIRN_BIN/cairn-dataset" import-idx --images "$idx/train-images-idx3-ubyte.gz" \
	--labels "$idx/train-labels-idx1-ubyte.gz" --out "$tmp/train.ds" >/dev/null &&
	"$CAIRN_BIN/cairn-dataset" import-idx --images "$idx/t10k-images-idx3-ubyte.gz" \
		--labels "$idx/t10k-labels-idx1-ubyte.gz" --out "$tmp/test.ds" >/dev/null || exit 1
"$CAIRN_BIN/cairn-train-classifier" --train "$tmp/train.ds" --test "$tmp/test.ds" --epochs "$epochs" \
	--out "$tmp/run" >/dev/null 2>"$tmp/train.log" || { cat "$tmp/train.log"; exit 1; }
python3 -c "
import json; m = json.load(open('$tmp/run/metrics.json'))
print(f\"cairn cpu classifier {m['arch']} $epochs epochs: test accuracy {m['test_accuracy']:.4f}, \"
      f\"training {m['train_time_s']:.1f} s ({m['train_images_per_s']:.0f} images/s)\")"
OMP_NUM_THREADS=$(nproc) "$py" "$here/torch_classifier.py" --data "$idx" --epochs "$epochs"
