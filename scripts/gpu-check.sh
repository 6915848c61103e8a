#!/usr/bin/env bash
# scripts/gpu-check.sh: every check and benchmark of issue #8 that needs the
# GPU, in two device calls (the checks, the benchmarks; docs/cuda.md has the
# calls). Runs from the repository root with build/gpu carried (made here by
# scripts/gpu-pack.sh) and writes every output into $OUT (default
# ./gpu-check-out):
#   00-env.txt         nvidia-smi, the libraries the programs load, the commit
#   10-ops.log         tests/cuda/ops.sh: every slot against the CPU reference
#                      in fp32, tf32 and bf16, bf16 casts, allocator, errors,
#                      a whole net in bf16, training steps as a CUDA graph
#   20-memcheck.log    tests/cuda/memcheck.sh: compute-sanitizer over the same
#   30-train.log       tests/cuda/train_classifier.sh: Fashion-MNIST, cuda
#                      against cpu, same seed, CUDA_TEST_EPOCHS epochs (3)
#   32-unet.log        tests/cuda/train_unet.sh: cairn-train-unet and
#                      cairn-predict, cuda (fp32/tf32 and bf16) against cpu
#   34-refine.log      tests/cuda/refine.sh: cairn-refine train and apply,
#                      cuda against cpu, and its rate
#   35-mirror.log      tests/cuda/torch_mirror.sh: every model family's pass on
#                      the GPU (fp32; small nets in bf16) against PyTorch in
#                      float64 on the CPU
#   40-bench.log       bench/cuda.sh --cuda main: cairn's figures (60 s each,
#                      120 s for the CycleGAN step and ResNet-50), then
#                      PyTorch's (150 s)
#   41-layout.log      bench/cuda.sh --cuda layout: the CycleGAN's
#                      convolutions in NCHW and NHWC (bare cuDNN, PyTorch)
#   summary.txt        one line per part: status and seconds
# Each part has its own time limit, so a hang in one leaves time for the rest.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# The device tool brings back at most 8 files from $OUT: the logs go into a
# work folder and come back as $OUT/gpu-check.tgz, summary.txt beside it.
# GPU_CHECK_PARTS="10-ops 40-bench" runs only the parts named (default all).
OUT=${OUT:-$root/gpu-check-out}
mkdir -p "$OUT"
final=$OUT
OUT=$(mktemp -d /tmp/gpu-check.XXXXXX)
parts=${GPU_CHECK_PARTS:-all}
pack() {
	tar czf "$final/gpu-check.tgz" -C "$OUT" . && cp "$OUT/summary.txt" "$final/" 2>/dev/null
}
trap pack EXIT
g=$root/build/gpu
export CAIRN_BIN=$g/bin CAIRN_TESTS=$g/t CAIRN_BENCH=$g/b PATH=$g/bin:$PATH
export FASHION_MNIST=${FASHION_MNIST:-$g/fashion-mnist}
export CUDA_TEST_EPOCHS=${CUDA_TEST_EPOCHS:-3}
export BENCH_TIMEOUT=${BENCH_TIMEOUT:-60} BENCH_TORCH_TIMEOUT=${BENCH_TORCH_TIMEOUT:-150}
t_start=$SECONDS

part() { # name seconds command...: run it under its limit, log into $OUT/name.log
	local name=$1 limit=$2 t0=$SECONDS r
	shift 2
	case " $parts " in *" all "* | *" $name "*) ;; *) return 0 ;; esac
	timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
	r=$?
	{ [ $r = 124 ] || [ $r = 137 ]; } && echo "TIMED OUT after ${limit}s" >>"$OUT/$name.log"
	printf '%-12s status %3d  %4ds (limit %3ds)  %3d ok  %3d not ok  %3d skipped\n' "$name" "$r" \
		$((SECONDS - t0)) "$limit" "$(grep -c '^ok ' "$OUT/$name.log")" \
		"$(grep -c '^not ok' "$OUT/$name.log")" "$(grep -c '^ok .*# SKIP' "$OUT/$name.log")" |
		tee -a "$OUT/summary.txt"
	grep '^not ok\|TIMED OUT\|FAILED' "$OUT/$name.log" | head -20
}

# the fp32 op tests of issue #8, the bf16 casts, the graph steps and the
# half-backed bf16 activation storage (the sanitizer makes every kernel and
# every cudnnFind trial slow)
memcheck_tests=test_elementwise,test_bias,test_gemm,test_conv,test_act,test_batch_norm
memcheck_tests=$memcheck_tests,test_instance_norm,test_pool,test_upsample,test_concat,test_dropout
memcheck_tests=$memcheck_tests,test_losses,test_argmax,test_optim,test_bf16_cast,test_pinned_upload,test_graph
memcheck_tests=$memcheck_tests,test_act_memory

{
	date -u
	cat "$g/commit" 2>/dev/null
	nvidia-smi 2>&1
	nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
	ldd "$g/bin/cairn-train-classifier" 2>&1
	"$g/t/test_cuda_ops" --gpu-count 2>&1
	command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer
	python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())" 2>&1
	nproc
	uptime
} >"$OUT/00-env.txt" 2>&1
: >"$OUT/summary.txt"
# cuDNN or cuBLAS missing from the loader's path: try the copies PyTorch's
# wheels bring (said in 00-env.txt)
if ldd "$g/bin/cairn-train-classifier" | grep -q "not found"; then
	extra=$(python3 -c "
import glob, os, nvidia
dirs = {os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(os.path.join(d, '*', 'lib', 'lib*.so*'))}
print(':'.join(sorted(dirs)))" 2>/dev/null)
	export LD_LIBRARY_PATH=$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	{
		echo "libraries not found; LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
		ldd "$g/bin/cairn-train-classifier"
	} >>"$OUT/00-env.txt" 2>&1
fi
# tests/run.sh --cuda (make check-cuda) runs these three scripts; here each
# runs alone, under its own limit, its TAP lines kept
part 10-ops 90 bash tests/cuda/ops.sh
part 20-memcheck 65 env CUDA_MEMCHECK_TESTS=$memcheck_tests CUDA_CHECK_OUT="$OUT" bash tests/cuda/memcheck.sh
part 30-train 95 env CUDA_CHECK_OUT="$OUT" bash tests/cuda/train_classifier.sh
part 32-unet 40 bash tests/cuda/train_unet.sh
part 34-refine 40 bash tests/cuda/refine.sh
part 35-mirror 65 bash tests/cuda/torch_mirror.sh
part 40-bench 300 bash bench/cuda.sh --cuda main
part 41-layout 150 bash bench/cuda.sh --cuda layout
# issue #8's goals read off the figures: cairn beside PyTorch, ratio, goal, met
# (and, from 41-layout.log, the rows of CAIRN_CUDA_CONV_NHWC=1)
logs=$(ls "$OUT/40-bench.log" "$OUT/41-layout.log" 2>/dev/null)
if [ -n "$logs" ]; then
	python3 bench/cuda_goals.py $logs >"$OUT/goals.txt" 2>&1
	cat "$OUT/goals.txt"
fi
echo "total $((SECONDS - t_start))s" | tee -a "$OUT/summary.txt"
