#!/usr/bin/env bash
# bench/orchestrator.sh: cairn's own costs (issue 3), each beside a baseline
# measured in the same run: Snakemake 7 on the same DAG (bench/snakemake.sh,
# when Snakemake is installed) and plain process spawning (xargs -P2 sh).
# DAG: two stages, one-to-one, N tasks each (2N tasks).
#   make bench                                   # everything
#   CAIRN_BENCH_BIG=0 bash bench/orchestrator.sh # skip the 200,000-task plan
#   CAIRN_BENCH_PEER=0 bash bench/orchestrator.sh # cairn's figures only (no Snakemake)
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${CAIRN_BIN:=$here/../bin}"
export PATH="$CAIRN_BIN:$PATH"
W=$(mktemp -d /tmp/cairn-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"

gen() { bash "$here/gen_spec.sh" "$1" >"two-$1.ini"; } # 2 stages x N tasks, one-to-one
measure() { # prints "SECONDS RSS_KB" of a command
	/usr/bin/time -f "%e %M" -o "$W/.time" "$@" >/dev/null 2>&1
	cat "$W/.time" | tail -1
}

echo "== orchestrator: cairn $(cairn --version | cut -d' ' -f2) on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# Snakemake's figures for the same DAGs, measured now (bench/snakemake.sh).
declare -A snake
if [ "${CAIRN_BENCH_PEER:-1}" = 0 ]; then
	echo "   (CAIRN_BENCH_PEER=0: Snakemake not run)"
elif [ -x "$(command -v snakemake)" ] && [ -f "$here/snakemake.sh" ]; then
	while IFS= read -r line; do
		echo "   $line"
		key=$(echo "$line" | sed -n 's/^snakemake \([a-z-]*\) \([0-9]*\):.*/\1 \2/p')
		[ -n "$key" ] && snake[$key]=$(echo "$line" | sed 's/^[^:]*: *//')
	done < <(bash "$here/snakemake.sh" 2>&1 | grep '^snakemake ')
else
	echo "   (Snakemake not installed: scripts/deps.sh bench installs it; no peer figures this run)"
fi

printf '\n%-44s %-26s %s\n' "what" "cairn" "baseline (same run)"
sizes="1000 10000"
[ "${CAIRN_BENCH_BIG:-1}" = 1 ] && sizes="$sizes 100000"
for n in $sizes; do
	gen "$n"
	read -r s kb < <(measure cairn run "two-$n.ini" --dry-run)
	per=$(awk -v kb="$kb" -v n="$n" 'BEGIN {printf "%.0f", kb * 1024 / (2 * n)}')
	printf '%-44s %-26s %s\n' "plan (dry run), $((2 * n)) tasks" "$s s, $((kb / 1024)) MB ($per B/task)" \
		"snakemake: ${snake[plan $((2 * n))]:-not measured}"
done

# Per-task cost of the local executor: 1,000 trivial tasks, 2 slots.
printf '[pipeline]\nname = trivial\n[stage t]\ncommand = true\narray = 1000\n' >trivial.ini
read -r s kb < <(measure cairn run trivial.ini --run-dir r-trivial --jobs 2)
read -r b _ < <(measure bash -c 'seq 1000 | xargs -P2 -I{} /bin/sh -c true')
per=$(awk -v s="$s" 'BEGIN {printf "%.1f", s}')
printf '%-44s %-26s %s\n' "local executor, 1,000 trivial tasks, 2 slots" \
	"$s s ($(awk -v s="$s" 'BEGIN {printf "%.1f", s}') ms/task)" \
	"xargs -P2 sh: $b s; snakemake: ${snake[local 1000]:-not measured}"
over=$(awk -v s="$s" -v b="$b" 'BEGIN {printf "%.1f", (s - b)}')
printf '%-44s %-26s %s\n' "  cairn's own cost above spawning a shell" "$over ms/task" "(goal: <= 5 ms/task)"

# No-op resume of 1,000 done tasks.
read -r s kb < <(measure cairn resume r-trivial)
printf '%-44s %-26s %s\n' "no-op resume, 1,000 done tasks" "$s s, $((kb / 1024)) MB" \
	"snakemake rerun: ${snake[rerun 1000]:-not measured}"
read -r s kb < <(measure cairn resume r-trivial --verify)
printf '%-44s %-26s %s\n' "  same with --verify (re-hash outputs)" "$s s" ""

# temp = yes: what releasing costs. The same 1,000-task DAG run without
# temp, then `resume --spec` with stage a made temp (no key changes, nothing
# runs: resume releases a's 500 tasks), beside a no-op resume of the same
# folder before; then a no-op resume of the released run.
gen 500
cairn run two-500.ini --run-dir r-keep --jobs 2 >/dev/null 2>&1
sed 's/^\[stage a\]$/[stage a]\ntemp = yes/' two-500.ini >temp-500.ini
read -r s0 _ < <(measure cairn resume r-keep)
read -r s1 _ < <(measure cairn resume r-keep --spec temp-500.ini)
n=$(ls r-keep/stages/a/*/released.json 2>/dev/null | wc -l)
read -r s2 _ < <(measure cairn resume r-keep)
printf '%-44s %-26s %s\n' "temp: resume releasing $n tasks" "$s1 s ($(awk -v a="$s1" -v b="$s0" -v n="$n" \
	'BEGIN {printf "%.2f", n ? (a - b) * 1000 / n : 0}') ms/task)" "no-op resume before: $s0 s"
printf '%-44s %-26s %s\n' "  no-op resume of that run, $n released" "$s2 s" ""

# status on a 20,000-task run folder (markers written the way cairn exec
# writes them, without running 20,000 tasks).
gen 10000
cairn run two-10000.ini --run-dir r-20k --jobs 1 --dry-run >/dev/null
python3 - "$W" <<'PY'
import json, os, sys
w = sys.argv[1]
run = os.path.join(w, "r-20k")
os.makedirs(run)
spec = open(os.path.join(w, "two-10000.ini")).read()
open(os.path.join(run, "spec.ini"), "w").write(spec)
json.dump({"executor": "local", "workdir": w, "name": "two-10000"}, open(os.path.join(run, "run.json"), "w"))
for stage in ("a", "b"):
    for t in range(10000):
        d = os.path.join(run, "stages", stage, str(t))
        os.makedirs(os.path.join(d, "out"))
        open(os.path.join(d, "out", stage + ".txt"), "w").write("%d\n" % t)
        json.dump({"exit_code": 0, "attempt": 1, "manifest": []}, open(os.path.join(d, "done.json"), "w"))
PY
sync
read -r s kb < <(measure cairn status r-20k)
read -r j _ < <(measure cairn status r-20k --json)
read -r f _ < <(measure find r-20k -name done.json)
printf '%-44s %-26s %s\n' "status, 20,000-task run folder" "$s s (--json $j s)" "find -name done.json: $f s (goal: <= 0.3 s)"

# mem is a limit locally: the wrapper looks at /proc once a second (bench/mem_watch.c).
[ -x "${CAIRN_BENCH:-}/mem_watch" ] && "$CAIRN_BENCH/mem_watch"
