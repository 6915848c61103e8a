#!/usr/bin/env bash
# compute-sanitizer memcheck over the op tests: no invalid device memory
# access. CUDA_RACECHECK=1 adds racecheck (shared-memory hazards of the
# reductions); it is much slower, so it is not on by default.
# CUDA_MEMCHECK_TESTS=name,name runs only those tests of test_cuda_ops under
# the sanitizer (scripts/gpu-check.sh: the fp32 op tests, the casts and the
# graph steps); CUDA_CHECK_OUT=DIR keeps the sanitizer's full report there.
source "$(dirname "$0")/../lib.sh"
need_gpu memcheck
t=$CAIRN_TESTS/test_cuda_ops
san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ ! -x "$san" ]; then
	skip memcheck "compute-sanitizer not installed"
	exit 0
fi
# one cudnnFind* search per pass (not 3): every trial is slow under the
# sanitizer, and the choice does not matter here
export CAIRN_CUDA_CONV_SEARCH=1
CAIRN_CUDA_TEST_ONLY=${CUDA_MEMCHECK_TESTS:-} "$san" --tool memcheck --report-api-errors no \
	--error-exitcode 3 "$t" >$T/memcheck.out 2>&1
rc=$?
[ -n "${CUDA_CHECK_OUT:-}" ] && cp $T/memcheck.out "$CUDA_CHECK_OUT/memcheck-report.txt"
check_eq "memcheck exit status" "$rc" 0 || tail -30 $T/memcheck.out | sed 's/^/#   /'
check_grep "memcheck: 0 errors" "ERROR SUMMARY: 0 errors" $T/memcheck.out
if [ "${CUDA_RACECHECK:-0}" = 1 ]; then
	CAIRN_CUDA_TEST_ONLY=${CUDA_MEMCHECK_TESTS:-} "$san" --tool racecheck --report-api-errors no \
		--error-exitcode 3 "$t" >$T/racecheck.out 2>&1
	rc=$?
	check_eq "racecheck exit status" "$rc" 0 || tail -30 $T/racecheck.out | sed 's/^/#   /'
else
	skip racecheck "set CUDA_RACECHECK=1 (slow)"
fi
