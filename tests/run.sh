#!/usr/bin/env bash
# Runs every unit test program and every integration test script, counts the
# TAP lines they print, and ends with one line: "N passed, N failed, N skipped".
#   tests/run.sh            everything
#   tests/run.sh --unit     unit tests only
#   tests/run.sh --cuda     the GPU tests (tests/cuda/*.sh)
#   tests/run.sh FILTER     only tests whose name contains FILTER
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${CAIRN_BIN:?set by make}" "${CAIRN_TESTS:?set by make}"
export CAIRN_BIN CAIRN_TESTS CAIRN_ROOT=$(dirname "$here")
mode=all filter=
for a in "$@"; do
	case $a in
	--unit) mode=unit ;;
	--cuda) mode=cuda ;;
	*) filter=$a ;;
	esac
done
pass=0 fail=0 skip=0 failed_names=()
logdir=$(mktemp -d /tmp/cairn-tests.XXXXXX)

run_one() { # name command...
	local name=$1
	shift
	case $name in *"$filter"*) ;; *) return ;; esac
	local log=$logdir/$name.log t0=$SECONDS
	"$@" >"$log" 2>&1
	local rc=$?
	local p f s
	p=$(grep -c '^ok ' "$log" | head -1)
	s=$(grep -c '^ok .*# SKIP' "$log" | head -1)
	f=$(grep -c '^not ok ' "$log" | head -1)
	p=$((p - s))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "not ok - $name exited with status $rc" >>"$log"
	fi
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
	printf '%-40s %3d passed %3d failed %3d skipped  (%ds)\n' "$name" "$p" "$f" "$s" $((SECONDS - t0))
	if [ "$f" -gt 0 ]; then
		failed_names+=("$name")
		grep -v '^ok ' "$log" | tail -40 | sed 's/^/    /'
	fi
	grep '# SKIP' "$log" | sed 's/^/    /'
}

if [ "$mode" != cuda ]; then
	for t in "$CAIRN_TESTS"/test_*; do
		[ -x "$t" ] && run_one "$(basename "$t")" "$t"
	done
fi
if [ "$mode" = all ]; then
	for t in "$here"/integration/*.sh; do
		[ -f "$t" ] && run_one "$(basename "$t" .sh)" bash "$t"
	done
fi
if [ "$mode" = cuda ]; then
	for t in "$here"/cuda/*.sh; do
		[ -f "$t" ] && run_one "$(basename "$t" .sh)" bash "$t"
	done
fi
[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]} (logs in $logdir)"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
