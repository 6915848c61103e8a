#!/usr/bin/env bash
# bench/slurm.sh: the Slurm executor's load on the scheduler (issue 4), on a
# private single-node cluster (tests/slurm/cluster.sh): submitting 2 stages x
# 5,000 tasks, `cairn status` of that 10,000-task run while all of it is
# queued, and 120 short tasks run one a job against 20 a job (group).
# Scheduler calls are counted by shims in front of the real commands.
# Snakemake's figures on the same cluster come from bench/snakemake.sh.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
: "${CAIRN_BIN:=$root/bin}"
export PATH="$CAIRN_BIN:$PATH"
if [ "$(id -u)" -ne 0 ] || ! [ -x /usr/sbin/slurmctld ]; then
	echo "== slurm: skipped (needs root and slurm-wlm)"
	exit 0
fi
W=$(mktemp -d /tmp/cairn-bench-slurm.XXXXXX)
C=$W/cluster
trap 'bash "$root/tests/slurm/cluster.sh" stop "$C" >/dev/null 2>&1; rm -rf "$W"' EXIT
bash "$root/tests/slurm/cluster.sh" start "$C" 2>"$W/start.err" || { cat "$W/start.err"; exit 1; }
eval "$(bash "$root/tests/slurm/cluster.sh" env "$C")"
cd "$W"
mkdir shims
for c in sbatch squeue scontrol scancel; do
	printf '#!/bin/sh\necho %s >> %s/calls\nexec %s "$@"\n' "$c" "$W" "$(command -v $c)" >shims/$c
	chmod +x shims/$c
done
export CAIRN_SLURM_BIN=$W/shims
count() { grep -c "^$1\$" "$W/calls" 2>/dev/null || echo 0; }

n=5000
bash "$here/gen_spec.sh" "$n" >two.ini
max=$(scontrol show config | sed -n 's/^MaxArraySize *= *//p')
echo "== slurm: private cluster, slurm $(sinfo --version | cut -d' ' -f2), MaxArraySize $max, load $(cut -d' ' -f1-3 /proc/loadavg)"
# Hold the node so the 10,000 tasks stay queued while we measure.
scontrol update nodename="$(hostname -s)" state=drain reason=bench
: >calls
t0=$(date +%s.%N)
cairn run two.ini --executor slurm --run-dir run >submit.txt 2>&1 || cat submit.txt
t1=$(date +%s.%N)
printf '%-52s %s\n' "submit 2 stages x $n tasks" \
	"$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f s", b - a}'), $(count sbatch) sbatch calls, $(($(wc -l <calls) - $(count sbatch))) other scheduler calls (goal: one sbatch per stage or per MaxArraySize chunk, < 2 s)"
: >calls
t0=$(date +%s.%N)
cairn status run >status.txt 2>&1
t1=$(date +%s.%N)
printf '%-52s %s\n' "status of the 10,000-task run, all queued" \
	"$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f s", b - a}'), $(count squeue) squeue call(s), $(($(wc -l <calls) - $(count squeue))) other (goal: <= 0.3 s, exactly 1 squeue)"
grep -E '^(a|b) ' status.txt | sed 's/^/   /'
ids=$(sed -n 's/.*"job_id": \([0-9]*\).*/\1/p' run/run.json | paste -sd,)
t0=$(date +%s.%N)
n_lines=$(squeue --array --states=all --jobs="$ids" -h -o '%i %T %r' | wc -l)
t1=$(date +%s.%N)
printf '%-52s %s\n' "  baseline: that squeue call alone" \
	"$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f s", b - a}') for $n_lines lines"
: >calls
cairn cancel run >/dev/null
printf '%-52s %s\n' "cancel the run" "$(count scancel) scancel call(s)"

# Short tasks: 2 stages x 60 one-line tasks to done, one job per task
# (group = 1) against 20 tasks a job (group = 20), on the undrained node.
scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1
cairn cancel run >/dev/null 2>&1
for g in 1 20; do
	bash "$here/gen_spec.sh" 60 | sed "s/^\[stage a\]/[defaults]\ngroup = $g\n\n[stage a]/" >g$g.ini
	t0=$(date +%s.%N)
	cairn run g$g.ini --executor slurm --run-dir g$g >g$g.txt 2>&1 || cat g$g.txt
	for _ in $(seq 1200); do
		[ "$(ls g$g/stages/b/*/done.json 2>/dev/null | wc -l)" -ge 60 ] && break
		sleep 0.2
	done
	t1=$(date +%s.%N)
	printf '%-52s %s\n' "2 x 60 short tasks to done, group = $g" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f s", b - a}'), $((2 * ((60 + g - 1) / g))) Slurm jobs"
done

# The peer on the same kind of cluster: snakemake --slurm submits job by job
# and polls (bench/snakemake.sh slurm N starts its own private cluster).
# cairn's figures for the same small DAG, for the side-by-side line:
if [ "${CAIRN_BENCH_PEER:-1}" != 0 ] && command -v snakemake >/dev/null; then
	scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1
	bash "$here/gen_spec.sh" 20 >small.ini
	: >calls
	cairn run small.ini --executor slurm --run-dir small --wait >/dev/null 2>&1
	printf '%-52s %s\n' "cairn, 2 x 20 tasks submitted and followed (--wait)" \
		"$(count sbatch) sbatch, $(count squeue) squeue, $(count scontrol) scontrol"
	bash "$here/snakemake.sh" slurm 20 | sed 's/^/   /'
else
	echo "   (Snakemake not run: CAIRN_BENCH_PEER=0, or not installed: scripts/deps.sh bench)"
fi
