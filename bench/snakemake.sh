#!/usr/bin/env bash
# bench-helper: run by bench/orchestrator.sh, not by bench/run.sh directly.
# bench/snakemake.sh: the peer baseline (Snakemake 7, Debian package
# `snakemake`) for cairn's benchmarks (issues 3 and 4), on the same DAGs:
#   "two stages, one-to-one, N tasks each" (bench/gen_spec.sh N is the same
#   DAG as a cairn spec): stage a writes a/{i}.txt, b reads it, writes b/{i}.txt.
# Figures, one per line, in a fixed format that bench/orchestrator.sh parses
# ("snakemake KEY COUNT: VALUE"); COUNT is the number of tasks in all:
#   snakemake plan 2000: 5.1 s, 97 MB       dry run of 2 x 1,000 tasks (wall, peak RSS)
#   snakemake plan 20000: ...
#   snakemake plan 200000: ...              or "not measured (...), extrapolated ..."
#   snakemake local 1000: 67.0 s, 67.0 ms/task    1,000 trivial tasks (touch), --cores 2
#   snakemake rerun 1000: 1.9 s             the same again: nothing to do
#   snakemake slurm 400: 400 sbatch, ...    (mode `slurm` only; see below)
# Usage:
#   bench/snakemake.sh                 plan + local + rerun (a few minutes)
#   SNAKEMAKE_BIG=1 bench/snakemake.sh also try 200,000 tasks (killed after
#                                      SNAKEMAKE_BIG_LIMIT=180 s; on 2026-11-24 it
#                                      had not finished after 180 s, 780 MB), else
#                                      extrapolate from the 2,000 and 20,000 figures
#   bench/snakemake.sh slurm [N]       `snakemake --slurm` on a private cluster
#                                      (tests/slurm/cluster.sh), 2 stages x N tasks
#                                      (default 20), counting sbatch/squeue/sacct/
#                                      scontrol/srun calls through shims on PATH
# Measured with /usr/bin/time -v (wall clock, maximum resident set size).
set -u
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-local}

if ! command -v snakemake >/dev/null; then
	echo "snakemake: not installed (scripts/deps.sh bench installs it): no peer figures"
	exit 0
fi
if ! [ -x /usr/bin/time ]; then
	echo "snakemake: /usr/bin/time missing (Debian package time): no peer figures"
	exit 0
fi
W=$(mktemp -d /tmp/cairn-bench-smk.XXXXXX)
cleanup() {
	[ -n "${cluster:-}" ] && bash "$here/../tests/slurm/cluster.sh" stop "$cluster"
	rm -rf "$W"
}
trap cleanup EXIT
export USER=${USER:-$(id -un)} # snakemake --slurm reads $USER

# measure OUT CMD...: runs CMD under /usr/bin/time -v, sets secs and mb.
measure() {
	local out=$1
	shift
	/usr/bin/time -v -o "$W/time.txt" "$@" >"$out" 2>&1
	local rc=$?
	# "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:05.12"
	secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {
		n = split($2, p, ":"); s = 0
		for (i = 1; i <= n; i++) s = s * 60 + p[i]
		printf "%.1f", s }' "$W/time.txt")
	mb=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$W/time.txt")
	return $rc
}

# The benchmark DAG; N comes from --config n=N.
cat >"$W/Snakefile" <<'EOF'
N = int(config["n"])
rule all:
    input: expand("b/{i}.txt", i=range(N))
rule a:
    output: "a/{i}.txt"
    shell: "echo {wildcards.i} > {output}"
rule b:
    input: "a/{i}.txt"
    output: "b/{i}.txt"
    shell: "cat {input} > {output}"
EOF

version=$(snakemake --version)

if [ "$mode" = slurm ]; then
	n=${2:-20}
	if [ "$(id -u)" -ne 0 ] || ! [ -x /usr/sbin/slurmctld ]; then
		echo "snakemake slurm $((2 * n)): not measured (needs root and slurm-wlm)"
		exit 0
	fi
	if ! snakemake --help 2>/dev/null | grep -q -- '--slurm'; then
		echo "snakemake slurm $((2 * n)): not measured (Snakemake $version has no --slurm executor)"
		exit 0
	fi
	cluster=$W/cluster
	if ! CLUSTER_CPUS=${CLUSTER_CPUS:-16} bash "$here/../tests/slurm/cluster.sh" start "$cluster" 2>"$W/cluster.err"; then
		cat "$W/cluster.err" >&2
		echo "snakemake slurm $((2 * n)): not measured (private cluster did not start)"
		exit 0
	fi
	eval "$(bash "$here/../tests/slurm/cluster.sh" env "$cluster")"
	# Counting shims: each appends its name to calls.txt, then runs the real command.
	mkdir -p "$W/shims"
	for c in sbatch squeue sacct scontrol scancel srun sinfo sacctmgr; do
		real=$(command -v "$c") || continue
		printf '#!/bin/sh\necho %s >> "%s/calls.txt"\nexec %s "$@"\n' "$c" "$W" "$real" >"$W/shims/$c"
		chmod +x "$W/shims/$c"
	done
	: >"$W/calls.txt"
	# Snakemake 7.21 --slurm turns any --max-status-checks-per-second above 1
	# into 0.03 (one job status every 33 s, scheduler.py); 1 is the fastest.
	PATH=$W/shims:$PATH measure "$W/slurm.log" snakemake -s "$W/Snakefile" -d "$W/slurm" --slurm \
		--jobs 100 --max-status-checks-per-second 1 --latency-wait 10 --config n="$n"
	rc=$?
	count() { grep -c "^$1\$" "$W/calls.txt"; }
	done_b=$(ls "$W/slurm/b" 2>/dev/null | wc -l)
	if [ $rc -ne 0 ] || [ "$done_b" -ne "$n" ]; then
		tail -20 "$W/slurm.log" | sed 's/^/#   /'
		echo "snakemake slurm $((2 * n)): failed (exit $rc, $done_b of $n b files)"
		exit 1
	fi
	# srun runs inside the jobs (snakemake --slurm-jobstep), not on the login node.
	echo "snakemake slurm $((2 * n)): $(count sbatch) sbatch, $(count squeue) squeue, $(count sacct) sacct," \
		"$(count scontrol) scontrol, $(count sinfo) sinfo, $(count srun) srun calls, $secs s" \
		"(Snakemake $version, 2 x $n tasks)"
	exit 0
fi

echo "# Snakemake $version on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); COUNT = tasks in all (2 stages x COUNT/2)"
declare -A plan_s plan_mb
for n in 1000 10000; do
	if measure "$W/plan.log" snakemake -s "$W/Snakefile" -d "$W/plan-$n" --cores 1 --dry-run --quiet all --config n="$n"; then
		plan_s[$n]=$secs plan_mb[$n]=$mb
		echo "snakemake plan $((2 * n)): $secs s, $mb MB"
	else
		echo "snakemake plan $((2 * n)): failed ($(tail -1 "$W/plan.log"))"
	fi
done
# 200,000 tasks: only when it finishes within the limit; otherwise the straight
# line through the 2,000 and 20,000 figures, extended to 200,000.
limit=${SNAKEMAKE_BIG_LIMIT:-180}
big_done=0
if [ "${SNAKEMAKE_BIG:-0}" = 1 ]; then
	if measure "$W/plan.log" timeout "$limit" snakemake -s "$W/Snakefile" -d "$W/plan-100000" --cores 1 \
		--dry-run --quiet all --config n=100000; then
		echo "snakemake plan 200000: $secs s, $mb MB"
		big_done=1
	else
		why="over $limit s"
	fi
else
	why="did not finish in 180 s when tried; SNAKEMAKE_BIG=1 tries"
fi
if [ $big_done = 0 ] && [ -n "${plan_s[1000]:-}" ] && [ -n "${plan_s[10000]:-}" ]; then
	awk -v t1="${plan_s[1000]}" -v t2="${plan_s[10000]}" -v m1="${plan_mb[1000]}" -v m2="${plan_mb[10000]}" \
		-v why="$why" 'BEGIN {
		st = (t2 - t1) / 18000; sm = (m2 - m1) / 18000
		printf "snakemake plan 200000: not measured (%s), extrapolated slope %.2f ms/task, %.1f KB/task: ~%.0f s, ~%.0f MB\n",
			why, st * 1000, sm * 1024, t2 + st * 180000, m2 + sm * 180000 }'
fi

# Local execution: 1,000 trivial tasks with 2 cores, then the no-op rerun.
cat >"$W/Trivial" <<'EOF'
rule all:
    input: expand("t/{i}", i=range(1000))
rule t:
    output: "t/{i}"
    shell: "touch {output}"
EOF
if measure "$W/local.log" snakemake -s "$W/Trivial" -d "$W/local" --cores 2 --quiet all; then
	echo "snakemake local 1000: $secs s, $(awk -v s="$secs" 'BEGIN {printf "%.1f", s}') ms/task, $mb MB"
	if measure "$W/rerun.log" snakemake -s "$W/Trivial" -d "$W/local" --cores 2 --quiet all; then
		echo "snakemake rerun 1000: $secs s, $mb MB"
	else
		echo "snakemake rerun 1000: failed ($(tail -1 "$W/rerun.log"))"
	fi
else
	echo "snakemake local 1000: failed ($(tail -1 "$W/local.log"))"
fi
