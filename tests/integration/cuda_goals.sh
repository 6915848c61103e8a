#!/usr/bin/env bash
# bench/cuda_goals.py, which reads issue #8's goals off what bench/cuda.sh
# printed (scripts/gpu-check.sh runs it on 40-bench.log). First on lines the
# benchmark programs print themselves (bench/cuda_step and bench/cuda_torch.py
# on the CPU: the same formats as on the GPU), so that a change of format on
# either side fails here and not in a GPU run; then the verdicts and the exit
# status on a log of known figures in those formats.
source "$(dirname "$0")/../lib.sh"
goals="python3 $ROOT/bench/cuda_goals.py"
step=$(dirname "$CAIRN_TESTS")/b/cuda_step

# 1. the programs' own lines
py=$(torch_python)
if [ -z "$py" ] || [ ! -x "$step" ]; then
	skip "the goals read off the benchmark programs' lines" "no python3 with torch, or $step not built"
else
	cnn="--arch cnn --batch 128 --size 28 --channels 1 --classes 10 --steps 3 --warmup 1"
	cg="--task cyclegan --size 32 --batch 1 --steps 2 --warmup 1"
	{
		"$step" --device cpu --precision fp32 $cnn
		"$step" --device cpu --precision fp32 $cg
		echo "== cuda: PyTorch, the same figures in the same order =="
		"$py" $ROOT/bench/cuda_torch.py --run "--device cpu --precision fp32 $cnn" \
			--run "--device cpu --precision fp32 $cg"
	} >$T/real.log 2>&1
	sed 's/^/# /' $T/real.log
	$goals $T/real.log >$T/real.out
	rc=$?
	sed 's/^/# /' $T/real.out
	check "exit status 0 or 1 (goals found)" test "$rc" -le 1
	check_grep "the small CNN row" "^small CNN fp32 images/s " $T/real.out
	check_grep "the CycleGAN row" "^CycleGAN fp32 batch 1 ms/step " $T/real.out
	# the ratio is cairn's figure over PyTorch's, as the lines say
	check "the small CNN ratio is cairn's images/s over PyTorch's" python3 -c "
import re, sys
log = open('$T/real.log').read()
c = float(re.search(r'^cairn cpu fp32 cnn\S* batch 128 1x28x28: [\d.]+ ms/step, ([\d.]+) images/s', log, re.M).group(1))
t = float(re.search(r'^torch cpu fp32 cnn\S* batch 128 1x28x28: [\d.]+ ms/step, ([\d.]+) images/s', log, re.M).group(1))
row = re.search(r'^small CNN fp32 images/s +(\d+) +(\d+) +([\d.]+)', open('$T/real.out').read(), re.M)
sys.exit(0 if row and abs(float(row.group(3)) - c / t) <= 0.0011 * max(1, c / t) else 1)"
fi

# 2. verdicts on known figures (the formats of bench/cuda_step.c and
# bench/cuda_torch.py)
cat >$T/known.log <<'EOF'
== cuda: cairn, then PyTorch (NVIDIA H100 80GB HBM3) ==
cairn cuda tf32 cnn:widths=32-64,convs=1,fc=128,drop=0.25 batch 128 1x28x28: 0.800 ms/step, 160000 images/s (loss 2.3000)
# 55 steps: 1 eager, 1 captured, 53 replayed, 0 failed captures; 64 graph nodes
# device memory: activation arena 30.0 MiB, backed by 30.0 MiB; peak in use 40.0 MiB
   next line: cairn without CUDA graphs (CAIRN_CUDA_GRAPH=0)
cairn cuda tf32 cnn:widths=32-64,convs=1,fc=128,drop=0.25 batch 128 1x28x28: 2.560 ms/step, 50000 images/s (loss 2.3000)
cairn cuda fp32 unet:depth=4,base=16 batch 8 3x256x256: 11.000 ms/step, 727 images/s (loss 0.7000)
cairn cuda tf32 unet:depth=4,base=16 batch 8 3x256x256: 10.000 ms/step, 800 images/s (loss 0.7000)
cairn cuda bf16 unet:depth=4,base=16 batch 8 3x256x256: 9.000 ms/step, 889 images/s (loss 0.7000)
# device memory: activation arena 1152.0 MiB, backed by 576.0 MiB; peak in use 700.0 MiB
   next line: cairn bf16 with fp32 activations (CAIRN_CUDA_BF16_ACT=0: casts around each conv)
cairn cuda bf16 unet:depth=4,base=16 batch 8 3x256x256: 13.000 ms/step, 615 images/s (loss 0.7000)
   next line: cairn fp32 with FFT and Winograd (CAIRN_CUDA_FP32_FAST_ALGOS=1, PyTorch's algorithm set)
cairn cuda fp32 unet:depth=4,base=16 batch 8 3x256x256: 10.000 ms/step, 800 images/s (loss 0.7000)
conv tf32 3x3 16->16 256x256 batch 8 fwd+bwd: cairn 0.300 ms 10.0 TFLOP/s, bare cuDNN 0.290 ms 10.3 TFLOP/s, cairn/bare time 1.034
conv tf32 U-Net 3x3 layers, all: cairn 3.000 ms, bare cuDNN 2.800 ms, cairn/bare time 1.071
gemm tf32 8192^3: cairn 2.500 ms 439.8 TFLOP/s, bare cuBLAS 2.450 ms 448.8 TFLOP/s, cairn/bare time 1.020
cairn cuda tf32 cyclegan-step (2 x cyclegan:base=64,blocks=9 + 2 x patchgan) batch 1 3x256x256: 50.000 ms/step, 20.0 images/s (cycle L1 0.5000)
cairn cuda bf16 resnet:depths=3-4-6-3,widths=256-512-1024-2048,bottleneck=4,stem=64 batch 128 3x224x224: 32.000 ms/step, 4000 images/s (loss 6.9000)
== cuda: PyTorch, the same figures in the same order ==
torch cuda tf32 cnn batch 128 1x28x28: 2.560 ms/step, 50000 images/s (loss 2.3000)
torch cuda fp32 unet:depth=4,base=16 batch 8 3x256x256: 14.900 ms/step, 537 images/s (loss 0.7000)
torch cuda tf32 unet:depth=4,base=16 batch 8 3x256x256: 12.200 ms/step, 656 images/s (loss 0.7000)
torch cuda bf16 unet:depth=4,base=16 batch 8 3x256x256: 11.300 ms/step, 708 images/s (loss 0.7000)
torch conv tf32 3x3 16->16 256x256 batch 8 fwd+bwd: 0.310 ms 9.7 TFLOP/s
torch gemm tf32 8192^3: 2.430 ms 452.5 TFLOP/s
torch cuda tf32 cyclegan-step (2 generators + 2 patchgan) batch 1 3x256x256: 73.700 ms/step, 13.6 images/s (loss 20.0000)
torch cuda bf16 resnet:depths=3-4-6-3,widths=256-512-1024-2048,bottleneck=4,stem=64 batch 128 3x224x224: 34.600 ms/step, 3699 images/s (loss 6.9000)
torch cuda bf16 channels_last resnet:depths=3-4-6-3,widths=256-512-1024-2048,bottleneck=4,stem=64 batch 128 3x224x224: 20.000 ms/step, 6400 images/s (loss 6.9000)
EOF
$goals $T/known.log >$T/known.out
rc=$?
sed 's/^/# /' $T/known.out
check_eq "a missed goal: exit status 1" "$rc" 1
check_grep "small CNN: 160000 against 50000 images/s, 3.2x, met" \
	"^small CNN tf32 images/s +160000 +50000 +3.200 +>= 3.0  met$" $T/known.out
check_grep "U-Net fp32: 11.00 against 14.90 ms, 0.738, met" "^U-Net fp32 ms/step +11.00 +14.90 +0.738 +<= 0.80  met$" $T/known.out
check_grep "U-Net tf32: 10.00 against 12.20 ms, 0.820, missed" "^U-Net tf32 ms/step +10.00 +12.20 +0.820 +<= 0.80  MISSED$" $T/known.out
check_grep "U-Net bf16: 0.796, met" "^U-Net bf16 ms/step +9.00 +11.30 +0.796 .*  met$" $T/known.out
check_grep "CycleGAN batch 1: 0.678, met" "^CycleGAN tf32 batch 1 ms/step +50.00 +73.70 +0.678 .*  met$" $T/known.out
check_grep "ResNet-50 bf16 against PyTorch's NCHW figure, not channels_last: 1.081, met" \
	"^ResNet-50 bf16 images/s +4000 +3699 +1.081 .*  met$" $T/known.out
check_grep "a conv layer within 5% of bare cuDNN: met" "^conv tf32 3x3 16->16 256x256 batch 8 fwd\+bwd cairn/bare time .* 1.034 .*  met$" $T/known.out
check_grep "all the conv layers: 1.071, missed" "^conv tf32 U-Net 3x3 layers, all cairn/bare time .* 1.071 .*  MISSED$" $T/known.out
check_grep "U-Net fp32 with PyTorch's algorithms: 10.00 against 14.90 ms, 0.671, met" \
	"^U-Net fp32 with FFT and Winograd \(as PyTorch\) ms/step +10.00 +14.90 +0.671 +<= 0.80  met$" $T/known.out
check_grep "the count" "^7 of 9 goals met$" $T/known.out
check_grep "the step without graphs beside" "^also: small CNN tf32, without CUDA graphs: 2.560 ms/step, 50000 images/s$" $T/known.out
check_grep "bf16 with fp32 activations beside" "^also: U-Net bf16, fp32 activations: 13.000 ms/step, 615 images/s$" $T/known.out
check_grep "PyTorch's channels_last beside" "^also: ResNet-50 bf16, PyTorch channels_last: 20.000 ms/step, 6400 images/s$" $T/known.out
check_grep "device memory, by net and precision" "^also: U-Net bf16: activation arena 1152.0 MiB, backed by 576.0 MiB" $T/known.out
check_grep "sgemm beside" "^also: sgemm 8192\^3 tf32: cairn 439.8 TFLOP/s, bare cuBLAS 448.8$" $T/known.out
# every goal met: 0; nothing to judge (a run that failed early): 2
grep -v -e "U-Net 3x3 layers, all" -e "^cairn cuda tf32 unet:depth=4,base=16 batch 8 3x256x256: 10.000" $T/known.log >$T/met.log
check_rc "every goal found met: exit status 0" 0 $goals $T/met.log
echo "   TIMED OUT after 150s: cuda_step" >$T/none.log
check_rc "no goal's figures: exit status 2" 2 $goals $T/none.log
check_grep "and it says so" "no goal's figures found" $T/.out
# the layout log after the main one (scripts/gpu-check.sh reads both): the
# rows of CAIRN_CUDA_CONV_NHWC=1 beside the default's, against PyTorch's
# NCHW figures (its channels_last step is a line beside, never the goal's)
{
	cat $T/known.log
	echo "cairn cuda tf32 cyclegan-step (2 x cyclegan:base=64,blocks=9 + 2 x patchgan) batch 8 3x256x256: 149.800 ms/step, 53.4 images/s (cycle L1 0.5000)"
	echo "torch cuda tf32 cyclegan-step (2 generators + 2 patchgan) batch 8 3x256x256: 156.700 ms/step, 51.1 images/s (loss 20.0000)"
} >$T/main8.log
cat >$T/layout.log <<'EOF2'
layout tf32 CycleGAN layers (a generator and a discriminator), all: cairn 50.000 ms, bare NCHW 49.000 ms, NHWC 30.000 ms (0.612), NHWC with transposes 36.000 ms (0.735)
   next line: cairn with CAIRN_CUDA_CONV_NHWC=1 (each convolution on NHWC copies)
cairn cuda tf32 cyclegan-step (2 x cyclegan:base=64,blocks=9 + 2 x patchgan) batch 8 3x256x256: 100.000 ms/step, 80.0 images/s (cycle L1 0.5000)
   next line: cairn with CAIRN_CUDA_CONV_NHWC=1 (each convolution on NHWC copies)
cairn cuda tf32 unet:depth=4,base=16 batch 8 3x256x256: 9.000 ms/step, 889 images/s (loss 0.7000)
== cuda: PyTorch, the same figures in the same order ==
torch cuda tf32 channels_last cyclegan-step (2 generators + 2 patchgan) batch 8 3x256x256: 90.000 ms/step, 88.9 images/s (loss 20.0000)
EOF2
$goals $T/main8.log $T/layout.log >$T/both.out
sed 's/^/# /' $T/both.out
check_grep "CycleGAN batch 8 by default: 149.80 against 156.70, missed" \
	"^CycleGAN tf32 batch 8 ms/step +149.80 +156.70 +0.956 .*  MISSED$" $T/both.out
check_grep "CycleGAN batch 8 with NHWC convolutions: 100.00 against PyTorch's NCHW 156.70, met" \
	"^CycleGAN tf32 batch 8, CAIRN_CUDA_CONV_NHWC=1, ms/step +100.00 +156.70 +0.638 .*  met$" $T/both.out
check_grep "U-Net tf32 with NHWC convolutions: 9.00 against 12.20, met" \
	"^U-Net tf32, CAIRN_CUDA_CONV_NHWC=1, ms/step +9.00 +12.20 +0.738 .*  met$" $T/both.out
check_grep "the default U-Net row keeps the default's figure" "^U-Net tf32 ms/step +10.00 +12.20 " $T/both.out
