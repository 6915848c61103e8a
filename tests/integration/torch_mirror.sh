#!/usr/bin/env bash
# cairn's networks against PyTorch's: every model family nn/model.c builds
# (the benchmark's networks among them: issue #8's small CNN, the U-Net,
# ResNet-50, the CycleGAN generator and PatchGAN) runs one forward and
# backward pass in cairn (bench/cuda_step --task dump) and in its PyTorch
# mirror (bench/cuda_torch.py --check) given the same weights, input and
# output gradient. Two things are checked at once: that the mirrors
# bench/cuda.sh times are the same networks (parameter tensors one for one,
# output shape, every ReLU), and that cairn computes what an independent
# implementation computes: its output, input gradient and every weight
# gradient within max(1e-4, 10 x PyTorch's own float32 error) of PyTorch in
# float64 (relative L2). ReLUs take cairn's side of each kink (masks.bin):
# a pre-activation within rounding of 0 would otherwise flip and move the
# gradients below it by 1-10% (bench/cuda_step.c, dump).
# DEVICE=cuda (tests/cuda/torch_mirror.sh) runs cairn's side on the GPU, in
# fp32 (cuDNN with FMA math, no TF32) or with PRECISION=bf16, where PyTorch's
# own error is its bf16 autocast's and the bound max(1e-2, 3 x that); STEP
# names another cuda_step and
# NETS=small runs smaller nets and leaves out the checker's own controls
# (tests/integration/cuda_hostsim.sh: the CUDA backend over the simulated
# runtime).
# Skips when no python3 can import torch (Debian: apt-get install python3-torch).
source "$(dirname "$0")/../lib.sh"
device=${DEVICE:-cpu} precision=${PRECISION:-fp32}
step=${STEP:-$(dirname "$CAIRN_TESTS")/b/cuda_step}
py=$(torch_python)
if [ -z "$py" ]; then
	skip torch_mirror "no python3 with PyTorch (apt-get install python3-torch)"
	exit 0
fi
if [ ! -x "$step" ]; then
	not_ok "torch_mirror: $step not built (make test builds it)"
	exit 1
fi
# cairn's passes first (dumps), then every check in one python process (one
# import of torch: seconds each on the GPU machine)
names=() runs=()
# mirror NAME ARCH C SIZE BATCH CLASSES: cairn's pass, for PyTorch's
mirror() {
	local name=$1 arch=$2 c=$3 s=$4 b=$5 k=$6
	mkdir -p "$T/$name"
	if "$step" --device "$device" --precision "$precision" --task dump --arch "$arch" --channels "$c" \
		--size "$s" --batch "$b" --classes "$k" --out "$T/$name" >"$T/$name.dump" 2>&1; then
		names+=("$name:$arch")
		runs+=(--run "--check $T/$name --device cpu")
	else
		not_ok "$name: cuda_step --task dump failed"
		sed 's/^/#   /' "$T/$name.dump"
	fi
}
# checks: run them; a TAP line per net (and per control, below)
checks() {
	"$py" "$ROOT/bench/cuda_torch.py" "${runs[@]}" >"$T/checks.out" 2>&1
	sed 's/^/# /' "$T/checks.out"
	local n rc=0
	for n in "${names[@]}"; do
		check_grep "${n%%:*} (${n#*:}, $device, $precision): cairn's pass within the bound of PyTorch's" \
			"^torch check \[${n%%:*}\] .*: ok\$" "$T/checks.out" || rc=1
	done
	return $rc
}
if [ "${NETS:-}" = small ]; then
	mirror small-cnn cnn:drop=0 1 28 4 10
	mirror unet unet:depth=3,base=8 3 32 2 2
	# 8 x 64 x 64 values a channel: batch norm's split path on CUDA
	mirror unet-large-groups unet:depth=2,base=8 3 64 8 2
	mirror unet-bilinear unet:depth=2,base=8,bilinear=1 3 32 2 3
	mirror resnet resnet 1 28 3 10
	mirror resnext resnext 3 32 2 5
	mirror cyclegan-generator cyclegan:base=16,blocks=2 3 32 1 3
	mirror patchgan patchgan:base=16 3 32 2 2
	checks
	exit $failed
fi
r50=resnet:depths=3-4-6-3,widths=256-512-1024-2048,bottleneck=4,stem=64
mirror small-cnn cnn:drop=0 1 28 4 10
mirror classifier-cnn cnn:widths=16-32,convs=2,drop=0 1 28 4 10
mirror unet unet:depth=4,base=16 3 64 2 2
mirror unet-bilinear unet:depth=3,base=8,bilinear=1 3 32 2 3
# the segmentation stage's default, 3 classes as the maps (bench/torch_segment.py)
mirror segmenter unet:depth=3,base=8 3 32 2 3
mirror resnet50 $r50 3 64 2 10
mirror resnet resnet 1 28 3 10
mirror resnext resnext 3 32 2 5
mirror cyclegan-generator cyclegan 3 64 1 3
mirror patchgan patchgan 3 64 2 2
grep -h "parameters" "$T"/small-cnn.dump "$T"/resnet50.dump | sed 's/^/# /'
check_grep "issue #8's small CNN has 421,738 parameters" " 421738 parameters" "$T/small-cnn.dump"
check_grep "ResNet-50 has 25,557,032 parameters at 1000 classes (23,528,522 at 10)" \
	" 23528522 parameters" "$T/resnet50.dump"
# bench/cuda.sh's CycleGAN step (two ResNet-9-block generators, two
# PatchGANs, each used three times with tied weights) against the reference
# step of Zhu et al. in float64 from the same weights and images: its ten
# losses and each module's Adam update (bench/cuda_torch.py --check-cyclegan)
mkdir -p "$T/cyclegan"
cg=0
if "$step" --device "$device" --precision "$precision" --task cyclegan --size 32 --batch 1 \
	--out "$T/cyclegan" >"$T/cyclegan.dump" 2>&1; then
	runs+=(--run "--check-cyclegan $T/cyclegan")
	cg=1
else
	not_ok "cuda_step --task cyclegan --out failed"
	sed 's/^/#   /' "$T/cyclegan.dump"
fi
# The checker itself: a mirror that differs, or a gradient off in one value, fails.
if [ -d "$T/unet" ]; then
	cp -r "$T/unet" "$T/other"
	sed -i 's/^arch .*/arch unet:depth=4,base=8/' "$T/other/meta.txt"
	cp -r "$T/unet" "$T/off"
	python3 - "$T/off/grads.bin" <<'EOF2'
import sys, struct
f = open(sys.argv[1], "r+b")
f.seek(4 * 100)
v = struct.unpack("f", f.read(4))[0]
f.seek(4 * 100)
f.write(struct.pack("f", v * 1.5 + 1e-3))
EOF2
	runs+=(--run "--check $T/other --device cpu" --run "--check $T/off --device cpu")
fi
checks
[ $cg = 1 ] && check_grep "the CycleGAN step ($device, $precision) against the reference step" \
	"^torch check-cyclegan \[cyclegan\] .*: ok\$" "$T/checks.out"
check_grep "a different network is refused, saying so" \
	"^torch FAILED --check $T/other .*parameters differ from cairn's" "$T/checks.out"
check_grep "a weight gradient off in one value is refused" "^torch check \[off\] .*: FAILED\$" \
	"$T/checks.out"
exit $failed
