#!/usr/bin/env bash
# bench/cuda.sh: the CUDA backend beside PyTorch in the same run (issue #8):
# cairn's figures (bench/cuda_step), then PyTorch's (bench/cuda_torch.py):
#   - the small CNN (Fashion-MNIST shape, batch 128) in fp32, tf32 and bf16,
#     cairn in tf32 also without CUDA graphs (CAIRN_CUDA_GRAPH=0);
#   - the U-Net (base 16, batch 8, 256x256) in fp32, tf32 and bf16, and in
#     fp32 again with FFT and Winograd allowed, as PyTorch's fp32 allows them;
#   - the U-Net's 3x3 convolutions, forward + backward: cairn's conv slots,
#     bare cuDNN calls and PyTorch, in fp32 and tf32;
#   - a square gemm of 8192: cairn's slot, bare cuBLAS and PyTorch, fp32 and
#     tf32 (cuda_step --task conv|gemm also take bf16);
#   - the CycleGAN step (two ResNet-9-block generators, two PatchGANs,
#     256x256) at batch 1 and 8 in tf32;
#   - ResNet-50 (224x224, batch 128) in bf16;
#   - the U-Net in bf16 again with fp32 activations (CAIRN_CUDA_BF16_ACT=0):
#     what bf16 activation storage gains (not ResNet-50: the device call's
#     time is short);
#   - "layout": the CycleGAN's convolutions (tf32, batch 8, forward +
#     backward) in cairn's slots and in bare cuDNN calls on NCHW, on NHWC,
#     and on NCHW transposed to NHWC around each call, beside PyTorch's in
#     both memory formats, PyTorch's CycleGAN step in channels_last, and
#     cairn's CycleGAN step and U-Net with CAIRN_CUDA_CONV_NHWC=1: would
#     NHWC reach the CycleGAN goal (docs/cuda.md)?
# `bench/cuda.sh --cuda main` runs all but the layout figures, `--cuda
# layout` only those (scripts/gpu-check.sh: two parts).
# cairn's figures come first, one command each under its own time limit
# (BENCH_TIMEOUT seconds, default 150; twice that for ResNet-50 and the
# CycleGAN step), so one hang does not stop the rest; then PyTorch's, all in
# one python process (one import of torch; BENCH_TORCH_TIMEOUT, default 600),
# in the same order. Runs under `make bench-cuda` (or with --cuda) only, and
# says so and stops when no GPU is visible.
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${CAIRN_BENCH:?run through make bench or make bench-cuda}"
which=${2:-all}
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
limit=${BENCH_TIMEOUT:-150}
echo "== cuda: cairn, then PyTorch ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)) =="
[ $torch = 1 ] || echo "   (PyTorch with CUDA not importable: cairn figures only)"
rc=0
t() { # LIMIT=seconds t command...: a failure or timeout is reported, not fatal
	local lim=${LIMIT:-$limit}
	timeout -k 5 "$lim" "$@"
	local r=$?
	if [ $r = 124 ] || [ $r = 137 ]; then
		echo "   TIMED OUT after ${lim}s: $*"
		rc=1
	elif [ $r != 0 ]; then
		echo "   FAILED (status $r): $*"
		rc=1
	fi
}
cairn() { t "$step" --device cuda "$@"; }
truns=()
torch() { truns+=("$*"); } # run later, in one process

# the same spec strings on both sides (bench/torch_nets.py mirrors nn/model.c's
# families; tests/integration/torch_mirror.sh checks that the mirrors compute
# what cairn's nets compute); `cnn` is issue #8's small CNN (2 conv + BN,
# 421,738 parameters)
cnn="--arch cnn --batch 128 --size 28 --channels 1 --classes 10"
unetarch=unet:depth=4,base=16
unet="--batch 8 --size 256 --channels 3 --classes 2 --steps 20"
r50="--batch 128 --size 224 --channels 3 --classes 1000 --steps 10 --warmup 3"
# in the order of the issue's goals: small CNN (3x PyTorch, tf32 first), U-Net
# (0.8x), conv layers against bare cuDNN (< 5% lost), sgemm, CycleGAN (0.7x),
# ResNet-50 bf16 (1.0x); then the small CNN in the other precisions
if [ "$which" != layout ]; then
	cairn --precision tf32 $cnn
	torch --precision tf32 $cnn
	echo "   next line: cairn without CUDA graphs (CAIRN_CUDA_GRAPH=0)"
	t env CAIRN_CUDA_GRAPH=0 "$step" --device cuda --precision tf32 $cnn
	for prec in fp32 tf32 bf16; do
		cairn --precision $prec --arch $unetarch $unet
		torch --precision $prec --arch $unetarch $unet
	done
	# PyTorch's fp32 lets cuDNN pick FFT and Winograd; cairn's fp32 does not by
	# default (the 1e-5 promise), but does under CAIRN_CUDA_FP32_FAST_ALGOS=1
	echo "   next line: cairn fp32 with FFT and Winograd (CAIRN_CUDA_FP32_FAST_ALGOS=1, PyTorch's algorithm set)"
	t env CAIRN_CUDA_FP32_FAST_ALGOS=1 "$step" --device cuda --precision fp32 --arch $unetarch $unet
	echo "   next line: cairn bf16 with fp32 activations (CAIRN_CUDA_BF16_ACT=0: casts around each conv)"
	t env CAIRN_CUDA_BF16_ACT=0 "$step" --device cuda --precision bf16 --arch $unetarch $unet
	for prec in tf32 fp32; do
		cairn --precision $prec --task conv --batch 8 --steps 20
		torch --task conv --precision $prec --batch 8 --steps 20
		cairn --precision $prec --task gemm --size 8192 --steps 10
		torch --task gemm --precision $prec --size 8192 --steps 10
	done
	for b in 1 8; do
		LIMIT=$((2 * limit)) cairn --precision tf32 --task cyclegan --batch $b --size 256 --steps 10 --warmup 3
		torch --task cyclegan --precision tf32 --batch $b --size 256 --steps 10 --warmup 3
	done
	r50arch=resnet:depths=3-4-6-3,widths=256-512-1024-2048,bottleneck=4,stem=64
	LIMIT=$((2 * limit)) cairn --precision bf16 --arch $r50arch $r50
	torch --arch $r50arch --precision bf16 $r50
	for prec in fp32 bf16; do
		cairn --precision $prec $cnn
		torch --precision $prec $cnn
	done
	# last (PyTorch alone, so that a slow cuDNN search here costs no other
	# figure): ResNet-50 in PyTorch's faster layout for tensor cores, beside the
	# goal's eager NCHW figure (cairn keeps NCHW)
	torch --arch $r50arch --precision bf16 --channels-last $r50
fi
if [ "$which" != main ]; then
	# the question behind the CycleGAN goal: what NHWC would gain
	LIMIT=$((2 * limit)) cairn --precision tf32 --task conv --shapes cyclegan --size 256 --batch 8 --steps 10
	torch --task conv --shapes cyclegan --precision tf32 --batch 8 --steps 10
	torch --task conv --shapes cyclegan --precision tf32 --batch 8 --steps 10 --channels-last
	torch --task cyclegan --precision tf32 --batch 8 --size 256 --steps 10 --warmup 3 --channels-last
	# cairn's convolutions on NHWC copies (transposes around each pass), in
	# the CycleGAN step and the U-Net, beside the same runs in NCHW from the
	# main figures
	echo "   next line: cairn with CAIRN_CUDA_CONV_NHWC=1 (each convolution on NHWC copies)"
	LIMIT=$((2 * limit)) t env CAIRN_CUDA_CONV_NHWC=1 "$step" --device cuda --precision tf32 --task cyclegan \
		--batch 8 --size 256 --steps 10 --warmup 3
	echo "   next line: cairn with CAIRN_CUDA_CONV_NHWC=1 (each convolution on NHWC copies)"
	t env CAIRN_CUDA_CONV_NHWC=1 "$step" --device cuda --precision tf32 --arch $unetarch $unet
fi
if [ $torch = 1 ]; then
	echo "== cuda: PyTorch, the same figures in the same order =="
	args=()
	for r in "${truns[@]}"; do args+=(--run "$r"); done
	LIMIT=${BENCH_TORCH_TIMEOUT:-600} t python3 "$here/cuda_torch.py" "${args[@]}"
fi
exit $rc
