#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs: every bench/*.sh in name order; each
# prints its own figures next to a baseline measured in the same run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
rc=0
for b in "$here"/*.sh; do
	[ "$(basename "$b")" = run.sh ] && continue
	bash "$b" "$@" || { echo "bench $(basename "$b") failed" >&2; rc=1; }
done
exit $rc
