#!/usr/bin/env bash
# scripts/gpu-pack.sh: gather what scripts/gpu-check.sh needs on the GPU
# machine into build/gpu (about 43 MB, under the device tool's 64 MiB carry):
# the CUDA build's training and dataset programs, the op test, the benchmark
# program, and the Fashion-MNIST IDX files. Run here after
#   make CUDA=1 -j2 all build/cuda/b/cuda_step
# then carry build/gpu (docs/cuda.md has the exact device call).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
idx=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
for f in build/cuda/bin/cairn-train-classifier build/cuda/bin/cairn-dataset \
	build/cuda/bin/cairn-train-unet build/cuda/bin/cairn-predict build/cuda/bin/cairn-refine \
	build/cuda/t/test_cuda_ops build/cuda/t/test_segment build/cuda/b/cuda_step; do
	[ -x "$f" ] || { echo "gpu-pack: $f missing: make CUDA=1 -j2 all build/cuda/b/cuda_step" >&2; exit 2; }
done
rm -rf build/gpu
mkdir -p build/gpu/bin build/gpu/t build/gpu/b build/gpu/fashion-mnist
cp build/cuda/bin/cairn-train-classifier build/cuda/bin/cairn-dataset build/gpu/bin/
cp build/cuda/bin/cairn-train-unet build/cuda/bin/cairn-predict build/cuda/bin/cairn-refine build/gpu/bin/
cp build/cuda/t/test_cuda_ops build/cuda/t/test_segment build/gpu/t/
cp build/cuda/b/cuda_step build/gpu/b/
strip build/gpu/bin/* build/gpu/t/* build/gpu/b/*
if [ -f "$idx/train-images-idx3-ubyte.gz" ]; then
	cp "$idx"/*-ubyte.gz build/gpu/fashion-mnist/
else
	echo "gpu-pack: no Fashion-MNIST in $idx (set FASHION_MNIST): the training comparison will skip" >&2
fi
git rev-parse HEAD >build/gpu/commit
du -sh build/gpu
