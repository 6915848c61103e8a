#!/usr/bin/env bash
# bench/cuda.sh: the CUDA backend beside PyTorch in the same run (issue #8):
# one training step of the small CNN (Fashion-MNIST shape, batch 128) and of
# the U-Net (base 16, batch 8, 256x256) in fp32 and tf32, cairn (bench/cuda_step)
# then PyTorch (bench/cuda_torch.py). Runs under `make bench-cuda` only, and
# says so and stops when no GPU is visible.
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${CAIRN_BENCH:?run through make bench or make bench-cuda}"
if [ "${1:-}" != --cuda ]; then
	echo "== cuda: skipped (CUDA benchmarks run under make bench-cuda) =="
	exit 0
fi
step=$CAIRN_BENCH/cuda_step
probe=$(dirname "$CAIRN_BENCH")/t/test_cuda_ops
if [ ! -x "$step" ] || [ ! -x "$probe" ]; then
	echo "== cuda: SKIP $step or $probe not built (make CUDA=1 all and the bench programs) =="
	exit 0
fi
gpus=$("$probe" --gpu-count 2>/dev/null || echo 0)
if [ "${gpus:-0}" -lt 1 ]; then
	echo "== cuda: SKIP no GPU visible (cudaGetDeviceCount found none) =="
	exit 0
fi
torch=1
python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || torch=0
echo "== cuda: training step, cairn beside PyTorch ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)) =="
[ $torch = 1 ] || echo "   (PyTorch with CUDA not importable: cairn figures only)"
rc=0
run() { # label cairn-args -- torch-args
	local args=() targs=() in_torch=0 a
	for a in "$@"; do
		if [ "$a" = -- ]; then in_torch=1; continue; fi
		if [ $in_torch = 1 ]; then targs+=("$a"); else args+=("$a"); fi
	done
	"$step" --device cuda "${args[@]}" || rc=1
	if [ $torch = 1 ]; then python3 "$here/cuda_torch.py" "${targs[@]}" || rc=1; fi
}
for prec in fp32 tf32; do
	run --precision $prec --batch 128 --size 28 --channels 1 --classes 10 \
		-- --arch cnn --precision $prec --batch 128 --size 28 --channels 1 --classes 10
	run --precision $prec --arch unet:depth=4,base=16 --batch 8 --size 256 --channels 3 --classes 2 --steps 20 \
		-- --arch unet --precision $prec --batch 8 --size 256 --channels 3 --classes 2 --steps 20
done
[ $torch = 1 ] && python3 "$here/cuda_torch.py" --arch unet --precision bf16 --batch 8 --size 256 --channels 3 --classes 2 --steps 20
# cairn only (no PyTorch mirror yet): one CycleGAN generator (the issue's step has
# two generators and two PatchGANs) and a ResNet-50-shaped net in tf32 (the
# issue's ResNet-50 figure is bf16, which cairn does not have yet)
echo "   cairn only, not comparable to the issue's PyTorch figures:"
for b in 1 8; do
	"$step" --device cuda --precision tf32 --arch cyclegan:base=64,blocks=9 --batch $b --size 256 --channels 3 --classes 3 --steps 10 || rc=1
done
"$step" --device cuda --precision tf32 --arch resnet:depths=3-4-6-3,widths=256-512-1024-2048,bottleneck=4,stem=64 \
	--batch 128 --size 224 --channels 3 --classes 1000 --steps 10 || rc=1
exit $rc
