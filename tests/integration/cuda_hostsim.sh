#!/usr/bin/env bash
# The kernels of nn/cuda/ops.cu without a GPU: compiled for the host with one
# thread per block (tests/cuda_hostsim/), and run through the op tests of
# tests/unit/test_cuda_ops.c against the CPU reference. Checks each kernel's
# index arithmetic, bounds (under ASan in `make test ASAN=1`) and formulas;
# then the block reduction (block_sum, sum_partials) with one host thread per
# CUDA thread (tests/cuda_hostsim/reduce.cpp). Not checked: the launch
# geometry limits, the runtime and cuDNN/cuBLAS, which need the GPU run
# (tests/cuda/).
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
check "links" $cxx $flags $T/test.o $T/table.o $T/ops.o $lib/libnn.a $lib/libcore.a -lopenblas -lm -lpthread -o $T/test || exit 1
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
