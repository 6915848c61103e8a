#!/usr/bin/env bash
# The demo: run configs/demo.ini with one task failing on purpose, show what
# failed and why, then resume: only the failed task and what depends on it rerun.
set -u
: "${CAIRN_BIN:=$(cd "$(dirname "$0")/.." && pwd)/bin}"
export PATH="$CAIRN_BIN:$PATH"
cd "$(dirname "$0")/.."
run=runs/demo-$(date -u +%Y%m%dT%H%M%SZ)-$$
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "cairn run configs/demo.ini (task count/2 fails on purpose)"
DEMO_FAIL_TASK=2 cairn run configs/demo.ini --run-dir "$run"
echo "(exit $?: 1 means some task failed)"

say "cairn why $run count/2"
cairn why "$run" count/2

say "cairn resume $run --dry-run"
cairn resume "$run" --dry-run

say "cairn resume $run"
cairn resume "$run" || exit 1

say "result: the 20 most common words ($run/stages/merge/0/out/top20.txt)"
head -5 "$run/stages/merge/0/out/top20.txt"
say "events.log"
tail -8 "$run/events.log"
