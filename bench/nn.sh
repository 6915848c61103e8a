#!/usr/bin/env bash
# bench/nn.sh: nn/ convolution speed on the CPU (the direct kernels or im2col
# + OpenBLAS, against the sgemm peak of this machine and against oneDNN, timed
# in turns), one U-Net training step (batch 8, 256x256): images/s and peak
# RSS; then whole training steps (two CNNs, the U-Net) beside PyTorch on the
# CPU; the Fashion-MNIST classifier stage and the U-Net segmentation stage
# beside the PyTorch scripts they replace. Figures and the command that made
# them: docs/benchmarks.md, "nn".
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
tmp=$(mktemp -d /tmp/cairn-bench-nn.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
echo "== nn: Fashion-MNIST training, $epochs epochs: cairn-train-classifier and the PyTorch script =="
if [ ! -f "$idx/train-images-idx3-ubyte.gz" ]; then
	echo "   SKIP no Fashion-MNIST in $idx (apt-get install dataset-fashion-mnist, or set FASHION_MNIST)"
else
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
	rm -f "$tmp/train.ds" "$tmp/test.ds"
fi

# The segmentation stage beside the PyTorch script it replaces
# (bench/torch_segment.py: cairn-train-unet's recipe, network and
# initialization): the mapping demo's data (configs/geo-demo.ini), two
# synthetic scenes of NN_BENCH_SEG_TILES^2 256x256 tiles (5: 25 tiles), each
# with the labels rasterized from its noisy map; train on scene 0, score on
# scene 1 after every epoch; NN_BENCH_SEG_EPOCHS epochs (20), batch 4, class
# weights auto, as the demo trains. Training time leaves the scoring out.
seg_epochs=${NN_BENCH_SEG_EPOCHS:-20}
tiles=${NN_BENCH_SEG_TILES:-5}
arch=unet:depth=3,base=8
echo "== nn: U-Net training on scene 0 of the mapping demo, scored on scene 1, $seg_epochs epochs: cairn-train-unet and the PyTorch script =="
for s in 0 1; do
	"$CAIRN_BIN/cairn-synth" --out "$tmp/scene$s" --scene $s --tiles "$tiles" --seed 1 --preview-size 0 >/dev/null &&
		"$CAIRN_BIN/cairn-rasterize" --vector "$tmp/scene$s/map.gpkg" --class-field class --width-field width \
			--zoom 17 --like "$tmp/scene$s/imagery" --out "$tmp/labels$s" >/dev/null &&
		"$CAIRN_BIN/cairn-tileset" pack --imagery "$tmp/scene$s/imagery" --labels "$tmp/labels$s" \
			--out "$tmp/tiles$s.ds" >/dev/null || exit 1
done
seg="--epochs $seg_epochs --batch 4 --class-weights auto --arch $arch"
"$CAIRN_BIN/cairn-train-unet" --train "$tmp/tiles0.ds" --val "$tmp/tiles1.ds" $seg --out "$tmp/unet" \
	>/dev/null 2>"$tmp/unet.log" || { cat "$tmp/unet.log"; exit 1; }
python3 -c "
import json; m = json.load(open('$tmp/unet/metrics.json'))
print(f\"cairn cpu segmenter {m['arch']} $seg_epochs epochs: val mean IoU {m['val_mean_iou']:.4f}, \"
      f\"pixel accuracy {m['val_pixel_accuracy']:.4f}, train loss {m['loss_per_epoch'][-1]:.4f}, \"
      f\"training {m['train_time_s']:.1f} s \"
      f\"({m['train_tiles_per_s']:.1f} tiles/s, $(nproc) threads)\")"
OMP_NUM_THREADS=$(nproc) "$py" "$here/torch_segment.py" --train "$tmp/tiles0.ds" --val "$tmp/tiles1.ds" $seg \
	2>"$tmp/torch_segment.log" || { cat "$tmp/torch_segment.log"; exit 1; }
