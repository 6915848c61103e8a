#!/usr/bin/env bash
# nn/cuda without a GPU, in three parts.
# 1. The kernels of nn/cuda/ops.cu compiled for the host with one thread per
#    block (tests/cuda_hostsim/fake_rt.h), run through the op tests of
#    tests/unit/test_cuda_ops.c against the CPU reference: each kernel's index
#    arithmetic, bounds (under ASan in `make test ASAN=1`) and formulas.
# 2. The block reduction (block_sum, sum_partials) with one host thread per
#    CUDA thread (tests/cuda_hostsim/reduce.cpp), and the kernels' division by
#    invariant integers (nn/cuda/div.h) against the CPU's (div.cpp).
# 3. The host code, rt.cu, conv.cu and graph.cu, unchanged, over a simulated
#    CUDA runtime, cuDNN and cuBLAS (tests/cuda_hostsim/rt/, sim_rt.cpp):
#    every test of test_cuda_ops (allocator, pinned uploads, the two streams,
#    errors, tf32 and bf16 plans, bf16 activation storage backed by half its
#    size through the driver's virtual memory management, which the
#    simulation gives no access where nothing is mapped, CUDA graph capture
#    and replay), then
#    cairn-train-classifier --device cuda
#    against --device cpu. The simulated runtime runs queued work as late as
#    allowed and refuses in a capture what a GPU refuses, so missing waits and
#    allocations inside a captured step show here.
# Not checked: real warp and memory-model behaviour, cuDNN's and cuBLAS's own
# kernels, timing; they need the GPU run (tests/cuda/).
source "$(dirname "$0")/../lib.sh"
sim=$ROOT/tests/cuda_hostsim
lib=$(dirname "$CAIRN_TESTS")/lib
cxx=${CXX:-g++}
if ! command -v "$cxx" >/dev/null; then
	skip cuda_hostsim "no C++ compiler ($cxx)"
	exit 0
fi
flags="-O1 -g"
case $CAIRN_TESTS in */asan/*) flags="$flags -fsanitize=address,undefined -fno-omit-frame-pointer" ;; esac
check "ops.cu transformed for the host" python3 $sim/transform.py $ROOT/nn/cuda/ops.cu $T/ops_host.cpp || exit 1
check "kernels compile for the host" $cxx -std=c++17 $flags -w -I$ROOT -I$sim -c $T/ops_host.cpp -o $T/ops.o || exit 1
check "table compiles" cc -std=c11 -D_GNU_SOURCE $flags -I$ROOT -c $sim/table.c -o $T/table.o || exit 1
check "test compiles" cc -std=c11 -D_GNU_SOURCE $flags -DCAIRN_CUDA -Dnn_backend_cuda=hostsim_backend_cuda \
	-I$ROOT -I$ROOT/tests/unit -c $ROOT/tests/unit/test_cuda_ops.c -o $T/test.o || exit 1
check "links" $cxx $flags $T/test.o $T/table.o $T/ops.o $lib/libnn.a $lib/libcore.a -ljansson -lcrypto -lopenblas -lm -lpthread -o $T/test || exit 1
CAIRN_CUDA_HOSTSIM=1 $T/test >$T/out 2>&1
rc=$?
sed -E 's/^(ok|not ok) - /\1 - hostsim /' $T/out
check_eq "host simulation exit status" "$rc" 0
check "reduction transformed" python3 $sim/transform.py --reduce $ROOT/nn/cuda/ops.cu $T/reduce_kernels.cpp || exit 1
check "threaded reduction compiles" $cxx -std=c++20 $flags -w -I$T -I$sim $sim/reduce.cpp -o $T/reduce -lpthread || exit 1
$T/reduce >$T/reduce.out 2>&1
rc=$?
sed -E 's/^(ok|not ok) - /\1 - hostsim /' $T/reduce.out
check_eq "threaded reduction exit status" "$rc" 0
check "fast division compiles" $cxx -std=c++17 $flags -I$ROOT $sim/div.cpp -o $T/div || exit 1
$T/div >$T/div.out 2>&1
rc=$?
sed -E 's/^(ok|not ok) - /\1 - hostsim /' $T/div.out
check_eq "fast division exit status" "$rc" 0

# ---- 3: the host code over the simulated runtime ----
rt=$sim/rt
simflags="$flags -std=c++17 -I$ROOT -I$rt -DCAIRN_CUDA -DCAIRN_CUDA_ARCH=\"80,90\""
check "ops.cu transformed for the simulated runtime" python3 $sim/transform.py --sim $ROOT/nn/cuda/ops.cu $T/ops_sim.cpp || exit 1
for f in rt conv graph; do
	check "$f.cu compiles over the simulated runtime" $cxx $simflags -Wall -Wextra -x c++ -c $ROOT/nn/cuda/$f.cu -o $T/sim_$f.o || exit 1
done
check "ops compile over the simulated runtime" $cxx $simflags -w -c $T/ops_sim.cpp -o $T/sim_ops.o || exit 1
check "the simulated runtime compiles" $cxx $simflags -Wall -Wextra -c $sim/sim_rt.cpp -o $T/simrt.o || exit 1
# the trainers' --dist (dist/) includes mpi.h and links libmpi
mpi_cflags=$(mpicc --showme:compile 2>/dev/null)
mpi_libs=$(mpicc --showme:link 2>/dev/null)
cflags="-std=c11 -D_GNU_SOURCE $flags -I$ROOT -DCAIRN_CUDA $mpi_cflags"
check "the table compiles" cc $cflags -c $ROOT/nn/cuda/cuda.c -o $T/sim_cuda.o || exit 1
check "backend.c with CUDA compiles" cc $cflags -c $ROOT/nn/backend.c -o $T/sim_backend.o || exit 1
check "test compiles" cc $cflags -I$ROOT/tests/unit -c $ROOT/tests/unit/test_cuda_ops.c -o $T/sim_test.o || exit 1
simobj="$T/sim_backend.o $T/sim_cuda.o $T/sim_rt.o $T/sim_conv.o $T/sim_graph.o $T/sim_ops.o $T/simrt.o"
check "links" $cxx $flags $T/sim_test.o $simobj $lib/libnn.a $lib/libcore.a -ljansson -lcrypto -lopenblas -lm -lpthread -o $T/simtest || exit 1
$T/simtest >$T/simout 2>&1
rc=$?
sed -E 's/^(ok|not ok) - /\1 - simulated runtime: /' $T/simout
check_eq "simulated runtime exit status" "$rc" 0
# bf16 nets with fp32 activations (casts around each convolution and gemm);
# then a driver without virtual memory management (activation storage in
# ordinary blocks, backed in full); then a 160 MiB device, where fp32
# activation storage does not fit
for v in CAIRN_CUDA_BF16_ACT=0 CAIRN_SIM_NO_VMM=1 CAIRN_SIM_DEVICE_MB=160; do
	env $v CAIRN_CUDA_TEST_ONLY=test_net_bf16,test_act_storage,test_act_memory,test_graph_models \
		$T/simtest >$T/simout 2>&1
	rc=$?
	grep -v '# SKIP not selected' $T/simout | sed -E "s/^(ok|not ok) - /\\1 - simulated runtime, $v: /"
	check_eq "simulated runtime exit status, $v" "$rc" 0
done
# CAIRN_CUDA_CONV_NHWC=1: every convolution pass on NHWC copies of its
# operands (fp32 and tf32; bf16 keeps NCHW), against the CPU reference, and
# the training steps captured and replayed with the transposes in them
CAIRN_CUDA_CONV_NHWC=1 CAIRN_CUDA_CONV_LOG=1 \
	CAIRN_CUDA_TEST_ONLY=test_conv,test_conv_tf32,test_conv_bf16,test_graph,test_graph_models \
	$T/simtest >$T/simout 2>&1
rc=$?
grep -v '# SKIP not selected' $T/simout | grep -v '^cairn: cuda: conv' |
	sed -E "s/^(ok|not ok) - /\1 - simulated runtime, CAIRN_CUDA_CONV_NHWC=1: /"
check_eq "simulated runtime exit status, CAIRN_CUDA_CONV_NHWC=1" "$rc" 0
check_grep "CAIRN_CUDA_CONV_NHWC=1: fp32 plans are NHWC" "^cairn: cuda: conv .* fp32 NHWC: forward algo" $T/simout
check_grep "CAIRN_CUDA_CONV_NHWC=1: tf32 plans are NHWC" "^cairn: cuda: conv .* tf32 NHWC: forward algo" $T/simout
check_grep "CAIRN_CUDA_CONV_NHWC=1: bf16 plans stay NCHW" "^cairn: cuda: conv .* bf16 NCHW: forward algo" $T/simout
check "CAIRN_CUDA_CONV_NHWC=1: no NCHW plan in fp32 or tf32" sh -c "! grep -q ' \(fp32\|tf32\) NCHW:' $T/simout"

# the device a process takes: CAIRN_CUDA_DEVICE, else its rank on the node
# modulo the GPUs visible (ranks = gpus = N: one each), else 0
for c in "CAIRN_SIM_GPUS=2 OMPI_COMM_WORLD_LOCAL_RANK=3/1 of 2" "CAIRN_SIM_GPUS=4 SLURM_LOCALID=2/2 of 4" \
	"CAIRN_SIM_GPUS=2 OMPI_COMM_WORLD_LOCAL_RANK=1 CAIRN_CUDA_DEVICE=0/0 of 2" "CAIRN_SIM_GPUS=3/0 of 3"; do
	v=${c%/*}
	env $v CAIRN_CUDA_TEST_ONLY=test_device $T/simtest >$T/simout 2>&1
	check_grep "$v: device ${c#*/}" "^# device ${c#*/} visible" $T/simout
done
# the precision at start: tf32 from Ampere on, fp32 before (no TF32 there)
for c in 90/tf32 80/tf32 75/fp32; do
	CAIRN_SIM_CC=${c%/*} CAIRN_CUDA_TEST_ONLY=test_device $T/simtest >$T/simout 2>&1
	check_grep "compute capability ${c%/*}: ${c#*/} by default" "precision at start ${c#*/}\$" $T/simout
done
CAIRN_SIM_GPUS=2 CAIRN_CUDA_DEVICE=2 CAIRN_CUDA_TEST_ONLY=test_device $T/simtest >$T/simout 2>&1
check_grep "CAIRN_CUDA_DEVICE out of range is refused by name" \
	"CAIRN_CUDA_DEVICE=2: want a device index from 0 to 1 \(2 visible" $T/simout

# a GPU this build has no kernels for, and bf16 asked of a GPU older than
# Ampere: the backend is unusable and says what to do
# (this build says CUDA_ARCH="80,90"; the hint keeps the capabilities in
# ascending order, the Makefile making PTX of the last)
for c in "86/80 86 90" "75/75 80 90" "100/80 90 100" "90/80 90"; do
	CAIRN_SIM_NO_IMAGE=1 CAIRN_SIM_CC=${c%/*} $T/simtest >$T/simout 2>&1
	check_grep "a GPU of ${c%/*} without kernels in the build: rebuild with CUDA_ARCH=\"${c#*/}\"" \
		"this build has no kernels for device 0 \(compute capability [0-9]+\.[0-9]\).*rebuild with make CUDA=1 CUDA_ARCH=\"${c#*/}\"" $T/simout
done
CAIRN_SIM_CC=70 CAIRN_CUDA_PRECISION=bf16 $T/simtest >$T/simout 2>&1
check_grep "bf16 on a 7.0 GPU is refused" \
	"CAIRN_CUDA_PRECISION: cuda precision bf16: needs a GPU of compute capability 8.0 or newer" $T/simout

# a driver whose VMM calls fail: said once, then training goes on with
# activation storage backed in full
CAIRN_SIM_VMM_FAIL=1 CAIRN_CUDA_TEST_ONLY=test_net_bf16,test_act_storage,test_graph_models \
	$T/simtest >$T/simout 2>&1
rc=$?
grep -v '# SKIP not selected' $T/simout | grep -v '^cairn: cuda:' |
	sed -E 's/^(ok|not ok) - /\1 - simulated runtime, VMM calls failing: /'
check_eq "simulated runtime exit status, VMM calls failing" "$rc" 0
check_eq "the VMM failure is said once" "$(grep -c "virtual memory management failed (CUDA_ERROR_NOT_SUPPORTED) for" $T/simout)" 1

# bench/cuda_step's training steps (what bench/cuda.sh times on the GPU):
# each must be captured once and replayed, never fall back
check "cuda_step compiles over the simulated runtime" cc $cflags -I$rt -c $ROOT/bench/cuda_step.c -o $T/sim_step.o || exit 1
check "cuda_step links" $cxx $flags $T/sim_step.o $simobj $lib/libnn.a $lib/libcore.a -ljansson -lcrypto -lopenblas -lm -lpthread -o $T/cuda_step || exit 1
for spec in "cnn:widths=16-32,convs=2,fc=128,drop=0.25 --batch 16" \
	"unet:depth=2,base=8 --channels 3 --size 32 --classes 2 --batch 2"; do
	for p in fp32 bf16; do
		$T/cuda_step --device cuda --precision $p --steps 2 --warmup 2 --arch $spec >$T/step.out 2>&1
		check_grep "cuda_step $p ${spec%% *}: 1 eager, 1 captured, 2 replayed" \
			"^# 4 steps: 1 eager, 1 captured, 2 replayed, 0 failed captures; [1-9][0-9]* graph nodes" $T/step.out
	done
done
$T/cuda_step --device cuda --task gemm --size 96 --steps 1 --precision bf16 >$T/step.out 2>&1
check_grep "cuda_step gemm bf16: cairn's slot and bare cublasGemmEx" "^gemm bf16 96\^3: cairn" $T/step.out
# the layout figures (bench/cuda.sh --cuda layout): the CycleGAN's
# convolutions through bare calls on NHWC tensors and through transposes
# give the NCHW calls' results (the simulated cuDNN computes NHWC on NCHW
# copies of its operands, so this checks the benchmark's descriptors and
# transposes, not cuDNN's NHWC kernels)
for p in fp32 bf16; do
	$T/cuda_step --device cuda --task conv --shapes cyclegan --size 16 --batch 2 --steps 1 --precision $p >$T/layout.out 2>&1
	rc=$?
	sed 's/^/# /' $T/layout.out
	check_eq "cuda_step layout $p: exit status" "$rc" 0
	check_grep "cuda_step layout $p: NHWC results agree with NCHW" "^layout $p: NHWC results agree with NCHW within" $T/layout.out
	check_eq "cuda_step layout $p: a line for each layer that fits 16x16" "$(grep -c "^layout $p k.* NHWC results differ by" $T/layout.out)" 11
done
# whole nets of every family on the CUDA backend, fp32 and bf16, against
# PyTorch in float64 (tests/integration/torch_mirror.sh; skips without PyTorch)
for p in fp32 bf16; do
	STEP=$T/cuda_step DEVICE=cuda PRECISION=$p NETS=small bash $ROOT/tests/integration/torch_mirror.sh >$T/mirror.out 2>&1
	rc=$?
	sed -E 's/^(ok|not ok) - /\1 - simulated runtime: PyTorch mirror /' $T/mirror.out
	check_eq "PyTorch mirror over the simulated runtime, $p: exit status" "$rc" 0
done
# the CycleGAN step (tied uses, graph-free) against the reference step in
# float64: 25 s here, minutes under ASan, where the op tests above cover it
py=$(torch_python)
case $CAIRN_TESTS in */asan/*) py= ;; esac
if [ -n "$py" ]; then
	mkdir -p $T/cyclegan
	$T/cuda_step --device cuda --precision fp32 --task cyclegan --size 32 --batch 1 --out $T/cyclegan >$T/cg.out 2>&1 &&
		"$py" $ROOT/bench/cuda_torch.py --check-cyclegan $T/cyclegan >>$T/cg.out 2>&1
	rc=$?
	sed 's/^/# /' $T/cg.out
	check_eq "the CycleGAN step over the simulated runtime against the reference step" "$rc" 0
	rm -rf $T/cyclegan
else
	skip "the CycleGAN step over the simulated runtime" "no PyTorch, or under ASan"
fi

# cairn-train-unet and cairn-predict --device cuda end to end: mask batches
# (int32, pinned beside the images), per-pixel cross-entropy with class
# weights in device memory, a step graph, evaluation and prediction from
# downloaded logits; against --device cpu, same seed
# (dist/stage.c, which writes the trainers' "cuda" metrics, with CUDA too:
# libdist.a is the plain build's)
check "dist/stage.c compiles with CUDA" cc $cflags -c $ROOT/dist/stage.c -o $T/sim_stage.o || exit 1
for st in cairn-train-unet cairn-predict; do
	check "$st compiles with CUDA" cc $cflags -c $ROOT/stages/$st.c -o $T/sim_$st.o || exit 1
	check "$st links" $cxx $flags $T/sim_$st.o $T/sim_stage.o $simobj $lib/libdist.a $lib/libnn.a $lib/libcore.a \
		$mpi_libs -ljansson -lcrypto -ldeflate -lz -lopenblas -lm -lpthread -o $T/$st || exit 1
done
mkdir -p $T/seg
check "mask shards written" $CAIRN_TESTS/test_segment --write-shards $T/seg 16 32
run_unet() { $T/cairn-train-unet --train $T/seg/train.ds --val $T/seg/val.ds --epochs 3 --batch 4 --seed 3 \
	--class-weights auto --threads 1 --out $T/seg/$1 "${@:2}"; }
check_rc "cairn-train-unet --device cuda --precision fp32 (simulated)" 0 run_unet cuda --device cuda --precision fp32
check_rc "cairn-train-unet --device cpu" 0 run_unet cpu --device cpu
check "cuda's losses and IoUs within rounding of cpu's" python3 -c "
import json; a, b = (json.load(open('$T/seg/%s/metrics.json' % d)) for d in ('cuda', 'cpu'))
print('# loss per epoch: cuda (simulated) %s, cpu %s; val mean IoU %s, %s' % (a['loss_per_epoch'], b['loss_per_epoch'], a['val_mean_iou'], b['val_mean_iou']))
assert all(abs(x - y) <= 0.01 * y for x, y in zip(a['loss_per_epoch'], b['loss_per_epoch']))
assert abs(a['val_pixel_accuracy'] - b['val_pixel_accuracy']) <= 0.01
c = a['cuda']; print('# cuda:', c)
assert c['graph_captures'] == 1 and c['graph_failures'] == 0 and c['eager_steps'] == 1"
check_rc "cairn-predict --device cuda (simulated)" 0 $T/cairn-predict --model $T/seg/cuda/model.ckpt \
	--in $T/seg/unlabeled.ds --out $T/seg/cuda.ds --batch 3 --device cuda --precision fp32 --with-pixels
check_rc "cairn-predict --device cpu, the same model" 0 $T/cairn-predict --model $T/seg/cuda/model.ckpt \
	--in $T/seg/unlabeled.ds --out $T/seg/cpu.ds --batch 3 --device cpu --threads 1 --with-pixels
check "the predicted masks agree (> 99.9% of pixels)" python3 -c "
a, b = open('$T/seg/cuda.ds', 'rb').read(), open('$T/seg/cpu.ds', 'rb').read()
assert len(a) == len(b) and a[:48] == b[:48]
rb = 3 * 32 * 32 + 32 * 32 + 12
same = sum(x == y for i in range(4) for x, y in zip(a[64 + i * rb + 3072: 64 + i * rb + 4096], b[64 + i * rb + 3072: 64 + i * rb + 4096]))
print('# %d of 4096 pixels agree' % same); assert same >= 0.999 * 4096"

# cairn-refine --device cuda end to end: crops uploaded before each step
# graph replay, the CycleGAN's uses sharing weights, apply on whole tiles;
# against --device cpu, same seed
check "cairn-refine compiles with CUDA" cc $cflags -c $ROOT/stages/cairn-refine.c -o $T/sim_refine.o || exit 1
check "cairn-refine links" $cxx $flags $T/sim_refine.o $simobj $lib/libnn.a $lib/libcore.a \
	-ljansson -lcrypto -ldeflate -lz -lopenblas -lm -lpthread -o $T/cairn-refine || exit 1
run_refine() { $T/cairn-refine train --train $T/seg/train.ds --out $T/seg/g$1 --steps 12 --crop 16 \
	--gen cyclegan:base=4,blocks=1 --disc patchgan:base=4,layers=2 --paired 10 --threads 1 "${@:2}"; }
check_rc "cairn-refine train --device cuda --precision fp32 (simulated)" 0 run_refine cuda --device cuda --precision fp32
check_rc "cairn-refine train --device cpu" 0 run_refine cpu --device cpu
check "cuda's CycleGAN losses within rounding of cpu's" python3 -c "
import json; a, b = (json.load(open('$T/seg/g%s/metrics.json' % d))['history'][-1] for d in ('cuda', 'cpu'))
print('# cuda (simulated) %s\n# cpu %s' % (a, b))
assert all(abs(a[k] - b[k]) <= 0.02 * abs(b[k]) + 1e-4 for k in a if k not in ('step', 'wall_time_s'))"
check_rc "cairn-refine apply --device cuda (simulated)" 0 $T/cairn-refine apply --model $T/seg/gcpu/map.ckpt \
	--in $T/seg/train.ds --out $T/seg/rcuda.ds --json $T/seg/rcuda.json --device cuda --precision fp32
check_rc "cairn-refine apply --device cpu, the same generator" 0 $T/cairn-refine apply --model $T/seg/gcpu/map.ckpt \
	--in $T/seg/train.ds --out $T/seg/rcpu.ds --json $T/seg/rcpu.json --device cpu --threads 1
check "the refined masks agree (> 99.9% of pixels)" python3 -c "
import json; a, b = (json.load(open('$T/seg/r%s.json' % d)) for d in ('cuda', 'cpu'))
diff = sum(abs(x - y) for ra, rb in zip(a['changed'], b['changed']) for x, y in zip(ra, rb))
print('# changed: cuda %s, cpu %s' % (a['changed'], b['changed'])); assert diff <= 0.001 * a['pixels']"

# cairn-train-classifier --device cuda end to end: loader batches in pinned
# memory, uploads, a step graph, evaluation; against --device cpu, same seed
idx=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
if [ ! -f $idx/t10k-images-idx3-ubyte.gz ]; then
	skip "cairn-train-classifier over the simulated runtime" "dataset-fashion-mnist not installed"
	exit 0
fi
case $CAIRN_TESTS in */asan/*)
	skip "cairn-train-classifier over the simulated runtime" "slow under ASan; the op tests above ran under it"
	exit 0 ;;
esac
check "the classifier compiles with CUDA" cc $cflags -c $ROOT/stages/cairn-train-classifier.c -o $T/sim_ctc.o || exit 1
check "the classifier links" $cxx $flags $T/sim_ctc.o $T/sim_stage.o $simobj $lib/libdist.a $lib/libnn.a $lib/libcore.a \
	$mpi_libs -ljansson -lcrypto -ldeflate -lz -lopenblas -lm -lpthread -o $T/ctc || exit 1
cairn-dataset import-idx --images $idx/t10k-images-idx3-ubyte.gz --labels $idx/t10k-labels-idx1-ubyte.gz --out $T/all.ds >/dev/null
cairn-dataset split $T/all.ds --fraction 0.2 --seed 1 --out $T/train.ds --rest $T/rest.ds >/dev/null
cairn-dataset split $T/rest.ds --fraction 0.1 --seed 2 --out $T/test.ds --rest $T/unused.ds >/dev/null
run_ctc() { $T/ctc --train $T/train.ds --test $T/test.ds --epochs 1 --seed 3 --threads 1 --out $T/$1 "${@:2}"; }
check_rc "cairn-train-classifier --device cuda --precision fp32 (simulated)" 0 run_ctc cuda --device cuda --precision fp32
check_rc "cairn-train-classifier --device cpu" 0 run_ctc cpu --device cpu
check_rc "cairn-train-classifier --device cuda --precision bf16 (simulated)" 0 run_ctc bf16 --device cuda --precision bf16
# a GPU that is visible but unusable stops --device auto (no quiet fall back
# to the CPU), saying why; the device a rank took is in metrics.json
check_rc "--device auto with a GPU it cannot use is bad usage" 2 \
	env CAIRN_SIM_GPUS=2 CAIRN_CUDA_DEVICE=2 $T/ctc --train $T/train.ds --test $T/test.ds --device auto --out $T/bad
check_grep "the error says why" "device auto: no usable CUDA backend: cuda: CAIRN_CUDA_DEVICE=2: want a device index" $T/.out
check_rc "--precision bf16 on a GPU older than Ampere is bad usage" 2 \
	env CAIRN_SIM_CC=75 $T/ctc --train $T/train.ds --test $T/test.ds --device cuda --precision bf16 --out $T/bad
check_grep "the error says why" "bf16: needs a GPU of compute capability 8.0 or newer .*device 0 is 7.5: use tf32 or fp32" $T/.out
# a bad setting of the convolutions' environment makes the backend unusable,
# and the stage says which setting and what it wants
for v in CAIRN_CUDA_CONV_SEARCH=0 CAIRN_CUDA_CONV_SEARCH=three CAIRN_CUDA_CONV_WS_MB=-1; do
	check_rc "$v is bad usage" 2 env $v $T/ctc --train $T/train.ds --test $T/test.ds --device cuda --out $T/bad
	check_grep "... said by name" "${v%%=*}='${v#*=}'.*expected a number" $T/.out
done
check "... and leaves no output folder" test ! -e $T/bad
check_eq "metrics.json: the device index" \
	"$(python3 -c "import json; print(json.load(open('$T/cuda/metrics.json'))['cuda']['device_index'])")" 0
acc() { python3 -c "import json; print(json.load(open('$T/$1/metrics.json'))['test_accuracy'])"; }
a_cuda=$(acc cuda) a_cpu=$(acc cpu) a_bf16=$(acc bf16)
echo "# test accuracy after 1 epoch on 2000 images: cuda (simulated) $a_cuda, cpu $a_cpu, bf16 (simulated) $a_bf16"
# rounding alone (the cpu with 1 and 2 threads, which changes only the order
# of sums) moved this short run by 1.25 points and its loss by 0.2%
check "cuda within 2 points of cpu" python3 -c "import sys; sys.exit(0 if abs($a_cuda - $a_cpu) <= 0.02 and $a_cuda > 0.5 else 1)"
loss() { python3 -c "import json; print(json.load(open('$T/$1/metrics.json'))['loss_per_epoch'][0])"; }
l_cuda=$(loss cuda) l_cpu=$(loss cpu)
check "cuda's train loss $l_cuda within 1% of cpu's $l_cpu" python3 -c "import sys; sys.exit(0 if abs($l_cuda - $l_cpu) <= 0.01 * $l_cpu else 1)"
# bf16 (activations in bf16 storage) loses little: 0.5 points in this run
check "bf16 within 3 points of cpu" python3 -c "import sys; sys.exit(0 if abs($a_bf16 - $a_cpu) <= 0.03 else 1)"
check "bf16: the activation arena backed by about half its size" python3 -c "
import json; c = json.load(open('$T/bf16/metrics.json'))['cuda']
print('# bf16 activation arena %.1f MiB, backed by %.1f MiB' % (c['activation_arena_mib'], c['activation_backed_mib']))
assert c['activation_arena_mib'] / 2 <= c['activation_backed_mib'] <= c['activation_arena_mib'] / 2 + 2"
check_grep "metrics.json names the device" '"device": *"cuda"' $T/cuda/metrics.json
check "steps ran as CUDA graph replays" python3 -c "
import json; c = json.load(open('$T/cuda/metrics.json'))['cuda']
print('# cuda:', c)
assert c['graph_captures'] == 1 and c['graph_failures'] == 0
assert c['graph_replays'] == c['steps'] - 2 and c['eager_steps'] == 1"
# out of device memory (a 64 MiB device): a clean failure naming the
# allocation, exit 1, nothing written
CAIRN_SIM_DEVICE_MB=64 $T/ctc --train $T/train.ds --test $T/test.ds --epochs 1 --device cuda \
	--out $T/oom >$T/oom.out 2>&1
check_eq "out of device memory exits 1" "$?" 1
check_grep "the error says what was asked and what is free" "out of .*memory.*(asked|free)" $T/oom.out
sed 's/^/#   /' $T/oom.out | tail -2
check "no metrics.json after out of memory" test ! -e $T/oom/metrics.json
check "no checkpoint after out of memory" test ! -e $T/oom/model.ckpt
