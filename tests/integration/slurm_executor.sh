# The Slurm executor on a real private cluster (tests/slurm/cluster.sh):
# submit and walk away, failure kinds, retry by requeue, resume, cancel,
# throttle, MaxArraySize split, MPI through srun, a node set DOWN, and the
# number of scheduler calls of submit and status.
source "$(dirname "$0")/../lib.sh"

if [ "$(id -u)" -ne 0 ] || ! [ -x /usr/sbin/slurmctld ] || ! [ -x /usr/sbin/munged ]; then
	skip slurm_executor "needs root, slurm-wlm and munge"
	exit 0
fi
C=$T/cluster
on_exit "bash '$ROOT/tests/slurm/cluster.sh' stop '$C'"
# MaxArraySize 4: a 6-task stage must be split into two arrays.
if ! CLUSTER_MAX_ARRAY=4 bash "$ROOT/tests/slurm/cluster.sh" start "$C" 2>"$T/start.err"; then
	not_ok "private cluster starts"
	sed 's/^/#   /' "$T/start.err"
	exit 1
fi
eval "$(bash "$ROOT/tests/slurm/cluster.sh" env "$C")"
cd "$T"

# Shims that count scheduler calls, in front of the real commands.
mkdir shims
for c in sbatch squeue scontrol scancel; do
	real=$(command -v $c)
	printf '#!/bin/sh\necho %s >> %s/calls\nexec %s "$@"\n' "$c" "$T" "$real" >shims/$c
	chmod +x shims/$c
done
export CAIRN_SLURM_BIN=$T/shims
calls() { local n; n=$(grep -c "^$1\$" "$T/calls" 2>/dev/null); echo "${n:-0}"; }

# a[6] -> b[6] one-to-one -> c gathers. a/2 fails while $T/break exists.
cat >dag.ini <<EOF
[pipeline]
name = sdag
[defaults]
retries = 1
time = 00:05:00
mem = 100M
[stage a]
command = echo a\${task} >> $T/count
    echo a\${task} > \${out}/a
    test ! -e $T/break -o \${task} != 2 || { echo "a/2 breaks" >&2; exit 3; }
array = 6
[stage b]
after = a
command = echo b\${task} >> $T/count
    tr a b < \${in.a[task]}/a > \${out}/b
array = 6
[stage c]
after = b
command = echo c >> $T/count
    for d in \${in.b}; do cat \$d/b; done > \${out}/c
EOF

# --- submit, walk away, come back ---
: >calls
: >count
cairn run dag.ini --executor slurm --run-dir "$T/r1" >out.txt 2>&1
check_eq "submit: exit 0 as soon as submitted" "$?" 0
check_grep "submit: says nothing keeps running" "nothing of cairn keeps running" out.txt
# 6 tasks with MaxArraySize 4: two arrays for a, two for b, one for c.
check_eq "submit: one sbatch per stage and per MaxArraySize chunk" "$(calls sbatch)" 5
check "submit: no cairn process stays behind" bash -c "! pgrep -f '[c]airn run dag.ini --executor slurm --run-dir $T/r1' >/dev/null"
for _ in $(seq 120); do
	cairn status r1 --json >st.json 2>&1
	grep -q '"state": "running"\|"state": "pending"' st.json || break
	sleep 1
done
check_grep "walk away: the run ends done" '"state": "done"' st.json
check_eq "walk away: c gathered all of b" "$(tr '\n' ' ' <r1/stages/c/0/out/c)" "b0 b1 b2 b3 b4 b5 "
: >calls
cairn status r1 >st.txt
check_eq "status: exactly one squeue call" "$(calls squeue)" 1
check_eq "status: no other scheduler call" "$(wc -l <calls)" 1

echo "# $SECONDS s: submit and walk away done"
# --- a failing task: retried by requeue, then failure kinds, then resume ---
touch break
: >count
cairn run dag.ini --executor slurm --run-dir r2 --wait >out.txt 2>&1
check_eq "failure: --wait exits 1" "$?" 1
check_grep "failure: status names the failed task and its attempts" "failed a/2: exit 3 \(attempt 2, Slurm job" out.txt
check_grep "retry: the first attempt requeued itself" "retry a/2: requeue of Slurm job" r2/events.log
check_eq "retry: a/2 ran twice" "$(grep -c '^a2$' count)" 2
cairn status r2 --json >st.json
check_grep "dependency: b/2 and c cancelled, not counted as failed" '"b": \{"tasks": 6, "done": 5, "failed": 0, "running": 0, "pending": 0, "cancelled": 1\}' st.json
cairn why r2 b/2 >why.txt
check_grep "why: dependency never satisfied" "dependency" why.txt
cairn why r2 a/2 >why.txt
check_grep "why: exit code, attempt and log" "exit 3 on attempt 2" why.txt
check_grep "why: shows the log" "a/2 breaks" why.txt
rm break
: >count
cairn resume r2 --wait >out.txt 2>&1
check_eq "resume on Slurm: exit 0" "$?" 0
check_eq "resume on Slurm: reran only a2 b2 c" "$(sort count | tr '\n' ' ')" "a2 b2 c "
check_eq "resume on Slurm: result complete" "$(tr '\n' ' ' <r2/stages/c/0/out/c)" "b0 b1 b2 b3 b4 b5 "

echo "# $SECONDS s: failure, retry, resume done"

# --- submission failing half-way: what went out is recorded, resume sends the rest ---
mkdir -p halfway
cat >halfway/sbatch <<EOF
#!/bin/sh
n=\$(cat $T/halfway/n 2>/dev/null || echo 0); echo \$((n + 1)) > $T/halfway/n
if [ "\$n" = 2 ]; then echo "sbatch: error: Batch job submission failed: Invalid qos specification" >&2; exit 1; fi
exec $T/shims/sbatch "\$@"
EOF
chmod +x halfway/sbatch
for c in squeue scontrol scancel; do ln -s "$T/shims/$c" halfway/$c; done
: >count
CAIRN_SLURM_BIN=$T/halfway cairn run dag.ini --executor slurm --run-dir r7 >out.txt 2>&1
check_eq "half-way: exit 1" "$?" 1
check_grep "half-way: says what went wrong" "Invalid qos specification" out.txt
check_grep "half-way: says resume and cancel deal with it" "what was submitted is recorded" out.txt
check_eq "half-way: the two arrays that went out are recorded" "$(grep -c '"job_id"' r7/run.json)" 2
: >calls
cairn resume r7 --wait >out.txt 2>&1
check_eq "half-way, then resume: exit 0" "$?" 0
check_eq "half-way, then resume: every task ran exactly once" "$(sort count | uniq -d | wc -l) $(wc -l <count)" "0 13"
check_eq "half-way, then resume: result complete" "$(tr '\n' ' ' <r7/stages/c/0/out/c)" "b0 b1 b2 b3 b4 b5 "
echo "# $SECONDS s: half-way submission done"

# --- a job Slurm does not know, and no marker: lost ---
# (as after MinJobAge purged a job whose wrapper never wrote a marker; here an
# sbatch that answers with a job id Slurm never had)
mkdir -p ghost
printf '#!/bin/sh\necho 987654\n' >ghost/sbatch
chmod +x ghost/sbatch
for c in squeue scontrol scancel; do ln -s "$T/shims/$c" ghost/$c; done
printf '[pipeline]\nname = ghost\n[stage g]\ncommand = true\n' >ghost.ini
CAIRN_SLURM_BIN=$T/ghost cairn run ghost.ini --executor slurm --run-dir r9 >out.txt 2>&1
cairn status r9 >st.txt 2>&1
check_grep "lost: a job Slurm no longer knows, without a marker, is lost" "failed g/0: lost" st.txt
cairn why r9 g/0 >why.txt 2>&1
check_grep "lost: why says Slurm no longer knows the job" "no longer known to Slurm" why.txt
# --- cancel: one scancel for the whole run ---
cat >slow.ini <<'EOF'
[pipeline]
name = slow
[stage s]
command = sleep 300
array = 3
[stage t]
after = s
command = true
EOF
cairn run slow.ini --executor slurm --run-dir r3 >out.txt 2>&1
for _ in $(seq 60); do grep -q "start s/" r3/events.log 2>/dev/null && break; sleep 0.5; done
: >calls
cairn cancel r3 >cancel.txt 2>&1
check_eq "cancel: one scancel call" "$(calls scancel)" 1
for _ in $(seq 60); do
	cairn status r3 --json >st.json
	grep -q '"running": [1-9]\|"pending": [1-9]' st.json || break
	sleep 0.5
done
check_grep "cancel: the run is cancelled" '"state": "cancelled"' st.json || { cairn status r3 | sed 's/^/#   /'; cat r3/events.log | sed 's/^/#   /'; }

echo "# $SECONDS s: cancel done"

# --- resume of a run still queued submits nothing twice ---
cairn run slow.ini --executor slurm --run-dir r3b >out.txt 2>&1
: >calls
cairn resume r3b >out.txt 2>&1
check_eq "resume while queued: exit 0" "$?" 0
check_eq "resume while queued: no sbatch at all" "$(calls sbatch)" 0
cairn resume r3b --dry-run >plan.txt 2>&1
check_grep "resume while queued: the plan waits for the queued tasks" "would run 0 tasks, skip 0, wait for 4" plan.txt
cairn cancel r3b >/dev/null 2>&1
# --- throttle: at most one task of the stage at once ---
cat >throttle.ini <<EOF
[pipeline]
name = thr
[stage t]
command = mkdir $T/inside || exit 9
    sleep 1
    rmdir $T/inside
array = 4
throttle = 1
EOF
cairn run throttle.ini --executor slurm --run-dir r4 --wait >out.txt 2>&1
check_eq "throttle %1: four tasks, never two at once" "$?" 0

echo "# $SECONDS s: throttle done"
# --- MPI: two ranks through srun --mpi=pmix ---
cat >mpi.ini <<'EOF'
[pipeline]
name = mpi
[stage hello]
command = echo "rank $${SLURM_PROCID:-none} of $${SLURM_NTASKS:-none}" >> ${out}/ranks
ranks = 2
EOF
cairn run mpi.ini --executor slurm --run-dir r5 --wait >out.txt 2>&1
check_eq "mpi: exit 0" "$?" 0
check_eq "mpi: srun started two ranks" "$(sort r5/stages/hello/0/out/ranks 2>/dev/null | tr '\n' ' ')" "rank 0 of 2 rank 1 of 2 "

echo "# $SECONDS s: mpi done"
# --- a node set DOWN under a running task: node_fail ---
printf '[pipeline]\nname = nodefail\n[stage long]\ncommand = sleep 300\n' >nf.ini
cairn run nf.ini --executor slurm --run-dir r6 >out.txt 2>&1
for _ in $(seq 60); do grep -q "start long/0" r6/events.log 2>/dev/null && break; sleep 0.5; done
node=$(hostname -s)
scontrol update nodename="$node" state=down reason=cairn-test
for _ in $(seq 60); do
	cairn status r6 --json >st.json
	grep -q '"failed": 1' st.json && break
	sleep 0.5
done
scontrol update nodename="$node" state=resume 2>/dev/null || scontrol update nodename="$node" state=idle
cairn why r6 long/0 >why.txt
check_grep "node down: the task failed with kind node_fail" "node_fail" why.txt
echo "# $SECONDS s: node failure done"
