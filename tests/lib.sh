# tests/lib.sh: sourced by integration tests. Gives a temp folder ($T) removed
# on exit, the binaries on PATH, and TAP helpers counted by tests/run.sh.
set -u
: "${CAIRN_BIN:?run through make test}"
export PATH="$CAIRN_BIN:$PATH"
ROOT=${CAIRN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
T=$(mktemp -d /tmp/cairn-it.XXXXXX)
cleanup_hooks=()
on_exit() { cleanup_hooks+=("$1"); }
_cleanup() {
	local h
	for h in "${cleanup_hooks[@]}"; do eval "$h"; done
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
}
trap _cleanup EXIT

ok() { echo "ok - $*"; }
not_ok() {
	echo "not ok - $*"
	failed=1 # a script may end with `exit $failed`
}
failed=0
skip() { echo "ok - $1 # SKIP $2"; }
# check NAME CMD...: ok when CMD succeeds.
check() {
	local name=$1
	shift
	if "$@"; then ok "$name"; else
		not_ok "$name (command: $*)"
		return 1
	fi
}
# check_eq NAME GOT WANT
check_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else
		not_ok "$1: got '$2', want '$3'"
		return 1
	fi
}
# check_rc NAME WANT CMD...: the command's exit status is WANT.
check_rc() {
	local name=$1 want=$2
	shift 2
	"$@" >"$T/.out" 2>&1
	local rc=$?
	if [ "$rc" = "$want" ]; then ok "$name"; else
		not_ok "$name: exit $rc, want $want"
		sed 's/^/#   /' "$T/.out" | tail -20
		return 1
	fi
}
# check_grep NAME PATTERN FILE
check_grep() {
	if grep -qE -- "$2" "$3"; then ok "$1"; else
		not_ok "$1: /$2/ not in $3"
		sed 's/^/#   /' "$3" | tail -20
		return 1
	fi
}
# torch_python: the first of python3 and Debian's /usr/bin/python3 that can
# import torch (PyTorch sides of the checks); empty when none can.
torch_python() {
	local p
	for p in python3 /usr/bin/python3; do
		if command -v "$p" >/dev/null && "$p" -c "import torch" 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}
# need_gpu NAME: for tests/cuda: skip NAME and exit when no GPU is visible
# (asked of the CUDA build's test_cuda_ops); not ok when that is not built.
need_gpu() {
	local probe=$CAIRN_TESTS/test_cuda_ops
	if [ ! -x "$probe" ]; then
		not_ok "$1: $probe not built (make CUDA=1 all)"
		exit 1
	fi
	if [ "$("$probe" --gpu-count)" -lt 1 ]; then
		skip "$1" "no GPU visible"
		exit 0
	fi
}
