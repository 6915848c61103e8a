#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs: every bench/*.sh in name order; each
# prints its own figures next to a baseline measured in the same run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
rc=0
for b in "$here"/*.sh; do
	[ "$(basename "$b")" = run.sh ] && continue
	# Helpers (bench/gen_spec.sh) and baselines another bench runs itself
	# (bench/snakemake.sh, run by orchestrator.sh) say so in their second line.
	sed -n 2p "$b" | grep -q '^# bench-helper:' && continue
	bash "$b" "$@" || { echo "bench $(basename "$b") failed" >&2; rc=1; }
done
exit $rc
