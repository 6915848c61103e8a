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
timeout 120 cairn logs r1 c/0 -f >follow.txt 2>follow.err
check_eq "logs -f on Slurm: waits for the last task, exit 0 when it is done" "$?" 0
check_grep "logs -f on Slurm: ... printing its log to the end" "=== cairn: c/0 done after" follow.txt
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
: >calls
cp -r r2 r2copy # a second unfinished Slurm run
cairn runs "$T" >runs.txt 2>&1
check_eq "runs: the failed Slurm runs ask squeue in one call, the done one not at all" "$(calls squeue) $(wc -l <calls)" "1 1"
check_grep "runs: the done run" "^$T/r1 +[0-9TZ:-]+ +slurm +done +13/13 +0$" runs.txt
check_eq "runs: each failed one, with its first failure" "$(grep -c 'failed a/2: exit 3 (attempt 2, Slurm job' runs.txt)" 2
check_grep "runs: the copy, counted as the original" "^$T/r2copy +[0-9TZ:-]+ +slurm +failed +10/13 +1$" runs.txt
rm -rf r2copy
cairn why r2 b/2 >why.txt
check_grep "why: dependency never satisfied" "an input failed" why.txt
check_grep "verdict: a job that never started gets Slurm's verdict as its marker" '"slurm_state": "CANCELLED"' r2/stages/c/0/failed.json
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
cairn status r9 --json >st.json 2>&1
check_grep "forgotten, never started: cancelled, not lost" '"cancelled": 1' st.json
cairn why r9 g/0 >why.txt 2>&1
check_grep "forgotten, never started: why says so" "never started and Slurm no longer knows it" why.txt
check_grep "lost: why says Slurm no longer knows the job" "no longer known to Slurm" why.txt
# a wrapper that started and left no marker: lost; with slurmstepd's line in
# Slurm's log of the job (an over-memory kill): oom, also after MinJobAge
mkdir -p r9/stages/g/0
printf '{"host": "elsewhere", "pid": 1, "attempt": 1, "slurm_job": "987654_0"}' >r9/stages/g/0/started.json
cairn status r9 >st.txt 2>&1
check_grep "lost: a started job Slurm no longer knows, without a marker, is lost" "failed g/0: lost" st.txt
cairn why r9 g/0 >why.txt 2>&1
check_grep "lost: why says what to do" "to do: its wrapper ended without a word .*cairn resume $T/r9. runs it again" why.txt
echo "slurmstepd-vm: error: StepId=987654.batch exceeded memory limit (73154560 > 52428800), being killed" >r9/slurm/g-987654_0.out
cairn status r9 >st.txt 2>&1
check_grep "oom after MinJobAge: read from Slurm's log of the job" "failed g/0: oom" st.txt
cairn why r9 g/0 >why.txt 2>&1
check_grep "oom: why prints Slurm's log of the job" "exceeded memory limit" why.txt
check_grep "oom: why says what to do" "to do: raise mem of g \(now not set\) and .cairn resume $T/r9 --spec ghost.ini." why.txt
# --- Slurm unreachable: markers shown with a warning; resume submits nothing ---
mkdir -p down
printf '#!/bin/sh\necho "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2\nexit 1\n' >down/squeue
chmod +x down/squeue
for c in sbatch scontrol scancel; do ln -s "$T/shims/$c" down/$c; done
CAIRN_SLURM_BIN=$T/down cairn status r2 >st.txt 2>err.txt
check_eq "unreachable: status still exits 0" "$?" 0
check_grep "unreachable: status shows the markers" "run sdag" st.txt
check_grep "unreachable: status says what to try" "Slurm unreachable.*scontrol ping.*SLURM_CONF" err.txt
: >calls
CAIRN_SLURM_BIN=$T/down cairn resume r9 >out.txt 2>&1
check_eq "unreachable: resume refuses" "$?" 1
check_grep "unreachable: resume says why" "cannot reach Slurm.*nothing submitted" out.txt
check_eq "unreachable: resume submits nothing" "$(calls sbatch)" 0
# The real commands with slurmctld down (this cluster's slurm.conf with a
# port nobody listens on): squeue retries for 18 s and scancel for 9 s before
# they say so; cairn asks `scontrol ping` after 1 s and stops them.
for port in $(shuf -i 20000-49999 -n 50); do ss -Htln "sport = :$port" | grep -q . || break; done
sed "s/^SlurmctldPort=.*/SlurmctldPort=$port/" "$C/slurm.conf" >down.conf
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
for cmd in "status r2" "why r2 a/0" "resume r2 --dry-run"; do
	t0=$(date +%s%N)
	SLURM_CONF=$T/down.conf cairn $cmd >"down-${cmd%% *}.txt" 2>err.txt
	took=$(ms "$t0")
	echo "# controller down: cairn $cmd: $took ms"
	check "controller down: $cmd answers within 4 s" test "$took" -lt 4000
	check_grep "controller down: $cmd says scontrol ping saw it DOWN" 'Slurm unreachable.*`scontrol ping` says .*is DOWN' err.txt
done
check_grep "controller down: why still shows the markers" "a/0: done" down-why.txt
(cd r2 && find . -type f -exec md5sum {} + | sort) >before.txt
t0=$(date +%s%N)
SLURM_CONF=$T/down.conf cairn cancel r2 >out.txt 2>err.txt
rc=$?
took=$(ms "$t0")
check_eq "controller down: cancel exits 1" "$rc" 1
echo "# controller down: cairn cancel: $took ms"
check "controller down: cancel answers within 4 s" test "$took" -lt 4000
check_grep "controller down: cancel says nothing was cancelled" "cannot reach Slurm \(scancel: .*scontrol ping. says .*DOWN" err.txt
check_grep "controller down: cancel says what to do" "nothing was cancelled and .*r2 is unchanged; check that slurmctld is up \(.scontrol ping.\) and that SLURM_CONF \(.*down.conf\)" err.txt
(cd r2 && find . -type f -exec md5sum {} + | sort) >after.txt
check "controller down: cancel leaves the run folder as it was" cmp -s before.txt after.txt
SLURM_CONF=$T/nope.conf cairn cancel r2 >out.txt 2>err.txt
check_grep "SLURM_CONF naming no file: cancel says so" "cannot reach Slurm \(scancel: SLURM_CONF=$T/nope.conf: No such file" err.txt
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

# one task of a run: one scancel of its array element, the others go on
cairn run slow.ini --executor slurm --run-dir r3c >out.txt 2>&1
for _ in $(seq 60); do grep -q "start s/" r3c/events.log 2>/dev/null && break; sleep 0.5; done
: >calls
cairn cancel r3c s/1 >cancel.txt 2>&1
check_eq "cancel STAGE/TASK on Slurm: exit 0, one scancel" "$?:$(calls scancel)" "0:1"
check_grep "cancel STAGE/TASK on Slurm: says what it cancelled" "^cancelled 1 task of .*r3c: .* \(one scancel\); 0 named" cancel.txt
for _ in $(seq 60); do
	cairn status r3c --json >st.json
	grep -q '"cancelled": 1' st.json && break
	sleep 0.5
done
check "cancel STAGE/TASK on Slurm: s/1 cancelled, s/0 and s/2 still queued or running" python3 - st.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["stages"]["s"]
assert s["cancelled"] == 1 and s["running"] + s["pending"] == 2, s
PY
cairn why r3c s/1 >why.txt 2>&1
check_grep "cancel STAGE/TASK on Slurm: why says cancelled" "^s/1: cancelled" why.txt
cairn cancel r3c >/dev/null 2>&1

echo "# $SECONDS s: cancel done"

# --- resume of a run still queued submits nothing twice ---
cairn run slow.ini --executor slurm --run-dir r3b >out.txt 2>&1
: >calls
cairn resume r3b >out.txt 2>&1
check_eq "resume while queued: exit 0" "$?" 0
check_eq "resume while queued: no sbatch at all" "$(calls sbatch)" 0
cairn resume r3b --dry-run >plan.txt 2>&1
check_grep "resume while queued: the plan waits for the queued tasks" "would run 0 tasks, skip 0, wait for 4" plan.txt
: >calls
cairn resume r3b --rerun s >out.txt 2>&1
check_eq "rerun of queued tasks: nothing submitted twice" "$?:$(calls sbatch)" "0:0"
check_grep "rerun of queued tasks: ... and says so" "rerun: 3 of its tasks are running or queued now: not started twice" out.txt
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

# --- cancel stops a task with retries for good (scancel is not a timeout) ---
cat >early.ini <<'EOF'
[pipeline]
name = early
[stage early]
time = 00:00:20
mem = 100M
retries = 2
command = echo "attempt $CAIRN_ATTEMPT"; sleep 300
EOF
cairn run early.ini --executor slurm --run-dir r10 >out.txt 2>err.txt
check_grep "time under a minute: a note says Slurm rounds it up" "time = 20 s becomes 1 min" err.txt
for _ in $(seq 60); do grep -q "start early/0" r10/events.log 2>/dev/null && break; sleep 0.5; done
cairn cancel r10 >/dev/null 2>&1
for _ in $(seq 40); do
	cairn status r10 --json >st.json
	grep -q '"state": "cancelled"' st.json && break
	sleep 0.5
done
sleep 3
cairn status r10 --json >st.json
check_grep "cancel with retries: the task stays cancelled" '"state": "cancelled"' st.json
check_grep "cancel with retries: the wrapper recorded cancelled" '"kind": "cancelled"' r10/stages/early/0/failed.json
check_eq "cancel with retries: no requeue" "$(grep -c 'retry early' r10/events.log)" 0
echo "# $SECONDS s: cancel with retries done"

# --- retries count per submission; a retry waiting is explained ---
printf '[pipeline]\nname = again\n[stage x]\nretries = 1\ncommand = echo x >> %s/again; exit 5\n' "$T" >again.ini
: >again
cairn run again.ini --executor slurm --run-dir r11 >out.txt 2>&1
for _ in $(seq 60); do grep -q "retry x/0" r11/events.log 2>/dev/null && break; sleep 0.5; done
# Slurm ends attempt 1 (COMPLETING, its Restarts already counted), then holds
# the retry (PENDING, BeginTime): never "running" on attempt 1's host meanwhile.
: >whys.txt
for _ in $(seq 40); do
	cairn why r11 x/0 >why.txt 2>&1
	cat why.txt >>whys.txt
	grep -q "PENDING" why.txt && break
	sleep 0.25
done
check_eq "retry waiting: why never shows attempt 1's host as running" "$(grep -c "running on" whys.txt)" 0
check_grep "retry waiting: why says attempt 1 failed and its retry waits" "queued as Slurm job .*PENDING.*attempt 1 failed \(exit 5\)" why.txt
cairn status r11 --json >st.json
check_grep "retry waiting: status does not count it failed" '"failed": 0' st.json
for _ in $(seq 60); do
	cairn status r11 --json >st.json
	grep -q '"state": "failed"' st.json && break
	sleep 1
done
cairn resume r11 --wait >out.txt 2>&1
check_eq "retries per submission: run 2 attempts + resume 2 attempts" "$(wc -l <again)" 4
echo "# $SECONDS s: retries per submission done"

# --- a resumed task's new job, still queued, is seen as queued ---
printf '[pipeline]\nname = flag\n[stage f]\nmem = 100M\ncommand = test -e %s/flag || exit 4\n' "$T" >flag.ini
cairn run flag.ini --executor slurm --run-dir r12 --wait >out.txt 2>&1
blocker=$(sbatch --parsable -c 8 --mem=100M -o /dev/null --wrap 'sleep 60')
touch flag
cairn resume r12 >out.txt 2>&1
cairn status r12 --json >st.json
check_grep "resumed, queued: status says pending" '"pending": 1' st.json
: >calls
cairn resume r12 >out.txt 2>&1
check_eq "resumed, queued: a second resume submits nothing" "$(calls sbatch)" 0
cairn why r12 f/0 >why.txt
check_grep "resumed, queued: why says queued" "queued as Slurm job" why.txt
scancel "$blocker"
cairn resume r12 --wait >out.txt 2>&1
check_eq "resumed, queued: resume --wait waits for it and exits 0" "$?" 0
echo "# $SECONDS s: resumed queued done"

# --- resume while running, after an element of an array was cancelled ---
cat >arr.ini <<'EOF'
[pipeline]
name = arr
[defaults]
mem = 100M
[stage a]
command = sleep 6; echo a${task} > ${out}/a
array = 3
[stage b]
after = a
command = cat ${in.a[task]}/a > ${out}/b
array = 3
[stage c]
after = b
command = for d in ${in.b}; do cat $d/b; done > ${out}/c
EOF
cairn run arr.ini --executor slurm --run-dir r13 >out.txt 2>&1
for _ in $(seq 60); do [ "$(grep -c 'start a/' r13/events.log 2>/dev/null)" = 3 ] && break; sleep 0.5; done
aj=$(grep -o '"job_id": [0-9]*' r13/run.json | head -1 | grep -o '[0-9]*$')
scancel "${aj}_1"
sleep 1
cairn resume r13 --wait >out.txt 2>&1
check_eq "resume mid-run after a cancelled element: exit 0" "$?" 0 || sed 's/^/#   /' out.txt
check_eq "resume mid-run after a cancelled element: result complete" "$(tr '\n' ' ' <r13/stages/c/0/out/c 2>/dev/null)" "a0 a1 a2 "
echo "# $SECONDS s: resume mid-run done"

# --- resume --spec shrinking arrays (3 -> 2) while the run is running ---
# a/2 runs and b/2 is queued: both dropped, so scancelled. c, queued with
# afterok on all of b's old array, would then never run (an element of it
# cancelled): it is cancelled too and submitted again on b/0 and b/1.
sed 's/^array = 3/array = 2/' arr.ini >arr2.ini
cairn run arr.ini --executor slurm --run-dir r16 >out.txt 2>&1
for _ in $(seq 60); do [ "$(grep -c 'start a/' r16/events.log 2>/dev/null)" = 3 ] && break; sleep 0.5; done
jid() { grep -o '"job_id": [0-9]*' r16/run.json | sed -n "$1p" | grep -o '[0-9]*$'; } # a, b, c, then c again
aj=$(jid 1) bj=$(jid 2) cj=$(jid 3)
: >calls
cairn resume r16 --spec arr2.ini >out.txt 2>&1
check_eq "shrink while running: resume exits 0" "$?" 0 || sed 's/^/#   /' out.txt
check_grep "shrink while running: the dropped elements and c's old job are scancelled" \
	"cancelled 3 queued Slurm jobs first: .*${aj}_2 ${bj}_2 ${cj}_0" out.txt
check_eq "shrink while running: one scancel, one sbatch (c again)" "$(calls scancel) $(calls sbatch)" "1 1"
cairn resume r16 --wait >out.txt 2>&1
check_eq "shrink while running: the run ends done" "$?" 0 || { sed 's/^/#   /' out.txt; squeue --states=all | sed 's/^/#   /'; }
check_eq "shrink while running: c gathers the 2 tasks left" "$(tr '\n' ' ' <r16/stages/c/0/out/c 2>/dev/null)" "a0 a1 "
check "shrink while running: nothing of the new spec was cancelled by a dependency" \
	bash -c "! squeue --states=all --array -h -j ${aj},${bj},$(jid 4) -O JobArrayID,Reason | grep -v '_2 ' | grep -q DependencyNeverSatisfied"
echo "# $SECONDS s: shrink while running done"

# --- a new job whose task's lock is still held (its previous job still ending) ---
# Held here with flock(1), as a wrapper that got SIGTERM holds it while it
# asks scontrol and writes its marker: the new job waits for it, then runs.
printf '[pipeline]\nname = lk\n[stage l]\nmem = 100M\ncommand = test -e %s/lkflag || exit 4\n' "$T" >lk.ini
cairn run lk.ini --executor slurm --run-dir r17 --wait >out.txt 2>&1
touch lkflag
flock r17/stages/l/0/.lock sleep 8 &
holder=$!
sleep 0.3
cairn resume r17 --wait >out.txt 2>&1
check_eq "lock held by an ending job: the new job waits for it and the task is done" "$?" 0 || sed 's/^/#   /' r17/events.log
check_grep "lock held by an ending job: events say it waited" "lock l/0: job .* got the task's lock after" r17/events.log
wait "$holder"
# Held past the wait (CAIRN_LOCK_WAIT=1): the new job runs nothing, writes
# nothing (exit 75), and status goes by the markers there are.
rm lkflag
printf '[pipeline]\nname = lk\n[stage l]\nmem = 100M\ncommand = test -e %s/lkflag || exit 5\n' "$T" >lk2.ini
cairn resume r17 --spec lk2.ini --wait >out.txt 2>&1 # fails: exit 5
flock r17/stages/l/0/.lock sleep 10 &
holder=$!
sleep 0.3
CAIRN_LOCK_WAIT=1 cairn resume r17 >out.txt 2>&1
for _ in $(seq 40); do grep -q "busy l/0" r17/events.log && break; sleep 0.5; done
sleep 1
cairn status r17 >st.txt 2>&1
check_grep "lock held past the wait: the new job leaves the task alone" "busy l/0: its lock is still held after 1 s" r17/events.log
check_grep "lock held past the wait: status shows the last attempt's marker, not exit 75" "failed l/0: exit 5" st.txt
check_grep "lock held past the wait: no marker written by the busy job" '"exit_code": 5' r17/stages/l/0/failed.json
cairn why r17 l/0 >why.txt 2>&1
check_grep "lock held past the wait: why names the job that left the task" "a wrapper of it found its lock held and left it" why.txt
check_grep "lock held past the wait: why quotes the event, with the holder" \
	"busy l/0: its lock is still held after 1 s \(by pid [0-9]+, (flock|sleep), on [^)]+\); job [0-9_]+ leaves it" why.txt
wait "$holder"
echo "# $SECONDS s: task lock held done"

# --- a job Slurm can never run: flagged, --wait stops ---
printf '[pipeline]\nname = huge\n[stage h]\ncpus = 999\ncommand = true\n' >huge.ini
cairn run huge.ini --executor slurm --run-dir r14 --wait >out.txt 2>&1
check_eq "stuck: --wait stops, exit 1" "$?" 1
check_grep "stuck: status names the reason" "stuck h/0: Slurm job .* reason PartitionConfig" out.txt
cairn cancel r14 >/dev/null 2>&1

# --- a submission refused at once leaves no run folder ---
printf '[pipeline]\nname = nope\n[slurm]\npartition = nope\n[stage n]\ncommand = true\n' >nope.ini
cairn run nope.ini --executor slurm --run-dir r15 >out.txt 2>&1
check_eq "refused: exit 1" "$?" 1
check "refused: no run folder left" test ! -e r15
cairn run nope.ini --executor slurm --run-dir r15 >out.txt 2>&1
check_grep "refused: the same command says the same again" "invalid partition" out.txt
echo "# $SECONDS s: stuck and refused done"

# --- --until: only a's arrays go out; b and c wait for a later resume ---
: >calls
: >count
cairn run dag.ini --executor slurm --until a --run-dir ru --wait >out.txt 2>&1
check_eq "until on Slurm: exit 0 when a is done" "$?" 0
check_eq "until on Slurm: a's two arrays submitted, nothing else" "$(calls sbatch) $(sort count | tr '\n' ' ')" "2 a0 a1 a2 a3 a4 a5 "
check_grep "until on Slurm: the run stays pending" "run sdag: pending \(6 of 13 tasks done\)" out.txt
: >calls
cairn resume ru --wait >out.txt 2>&1
check_eq "until on Slurm: resume runs the rest" "$? $(calls sbatch) $(tr '\n' ' ' <ru/stages/c/0/out/c)" "0 3 b0 b1 b2 b3 b4 b5 "
: >count
cairn resume ru --rerun a/0 --wait >out.txt 2>&1
check_eq "rerun on Slurm: a/0 ran again on its node, b/0 and c kept (same input)" "$? $(tr '\n' ' ' <count)" "0 a0 "
echo "# $SECONDS s: until done"

# --- temp = yes: released inside the jobs, with no cairn running; pulled back ---
cat >tmp.ini <<EOF
[pipeline]
name = stmp
[defaults]
time = 00:05:00
mem = 100M
[stage a]
array = 3
temp = yes
command = echo a\${task} >> $T/count; echo a\${task} > \${out}/a
[stage b]
array = 3
after = a
command = echo b\${task} >> $T/count; tr a b < \${in.a[task]}/a > \${out}/b
[stage c]
after = b
command = echo c >> $T/count; cat \${in.b/b} > \${out}/c
EOF
cairn run tmp.ini --executor slurm --run-dir rt >out.txt 2>&1
for _ in $(seq 120); do
	cairn status rt --json >st.json 2>&1
	grep -q '"state": "running"\|"state": "pending"' st.json || break
	sleep 1
done
check_eq "temp on Slurm: c done, a released by the jobs themselves" \
	"$(tr '\n' ' ' <rt/stages/c/0/out/c)$(ls rt/stages/*/*/released.json | wc -l)" "b0 b1 b2 3"
check_grep "temp on Slurm: the release, in events.log" "released a/2: 1 file, 3 bytes \(its readers are done; by b/2\)" rt/events.log
: >count
cairn resume rt --rerun b/1 --wait >out.txt 2>&1
check_eq "temp on Slurm: --rerun b/1 runs a/1 again first, then b/1 (c kept: same input)" "$? $(tr '\n' ' ' <count)" "0 a1 b1 "
check_eq "temp on Slurm: released again" "$(ls rt/stages/a/*/released.json | wc -l) $(ls -A rt/stages/a/1/out | wc -l)" "3 0"
echo "# $SECONDS s: temp done"

# --- Slurm's time limit, retried: the wrapper requeues its stopped job ---
# (1 minute, Slurm's least; it runs beside the group tests below)
cat >tl.ini <<EOF
[pipeline]
name = stl
[stage t]
time = 1
retries = 1
retry_on = timeout
mem = 100M
command = if [ \$CAIRN_ATTEMPT = 1 ]; then sleep 300; fi; echo t >> $T/tcount
EOF
cairn run tl.ini --executor slurm --run-dir rtl >out.txt 2>&1

# --- group = 3: one array element runs 3 tasks one after another ---
# 14 tasks are 5 elements; MaxArraySize 4 cuts them into 0-3 and 0 (from
# task 12). g/4 fails for good (exit 5), g/5 on its first attempt only
# (exit 3, retried): the job of g/3-5 is requeued once, after all three ran.
# g/12 sleeps past its own time (5 s): its wrapper stops it, g/13 still runs.
cat >grp.ini <<EOF
[pipeline]
name = sgrp
[defaults]
time = 00:01:00
mem = 100M
group = 3
[stage g]
array = 14
retries = 1
retry_on = exit:3
time = 0:05
command = echo g\${task} >> $T/gcount; echo g\${task} > \${out}/g
    if [ \${task} = 0 ]; then sleep 4; fi
    if [ \${task} = 12 ] && [ -e $T/gbreak ]; then sleep 60; fi
    if [ \${task} = 4 ] && [ -e $T/gbreak ]; then exit 5; fi
    if [ \${task} = 5 ] && [ \$CAIRN_ATTEMPT = 1 ]; then exit 3; fi
[stage h]
array = 14
after = g
command = echo h\${task} >> $T/gcount; tr g h < \${in.g[task]}/g > \${out}/h
EOF
: >calls
cairn run grp.ini --executor slurm --dry-run >dry.txt 2>&1
check_eq "dry run on Slurm: exit 0, no sbatch run" "$?:$(calls sbatch)" "0:0"
check_eq "dry run on Slurm: the sbatch lines it would run, one per array" "$(grep -c '^#[0-9]: sbatch ' dry.txt)" 4
check_grep "dry run on Slurm: MaxArraySize asked: the second array of g from task 12" \
	"^#2: sbatch --job-name=cairn.RUN.[0-9a-f]+.g.1 --array=0 --export=ALL,CAIRN_TASK_OFFSET=12,CAIRN_TIME_S=5 .* --mem=100M --time=1 --requeue RUN/slurm/g.sh$" dry.txt
check_grep "dry run on Slurm: h's first array waits for g's by element" "^#3: sbatch .*--dependency=aftercorr:#1 --kill-on-invalid-dep=yes RUN/slurm/h.sh$" dry.txt
check_grep "dry run on Slurm: a group's time is group x time" "^#3: sbatch .* --time=3 " dry.txt
: >calls
: >gcount
touch gbreak
cairn run grp.ini --executor slurm --run-dir rg >out.txt 2>&1
check_eq "group: 14 tasks of 3 a job, MaxArraySize 4: two sbatch calls a stage" "$(calls sbatch)" 4
check_eq "group: run.json records the elements and the group" \
	"$(python3 -c 'import json,sys; print(" ".join("%s:%s+%s/%s" % (j["stage"], j["offset"], j["array"], j.get("group")) for j in json.load(open("rg/run.json"))["jobs"]))')" \
	"g:0+0-3/3 g:12+0/3 h:0+0-3/3 h:12+0/3"
check_grep "group: the batch script runs 3 tasks from OFFSET + 3 x element" 'SLURM_ARRAY_TASK_ID \* 3)) 3$' rg/slurm/g.sh
for _ in $(seq 60); do
	cairn status rg --json >st.json 2>&1
	[ -e rg/stages/g/0/started.json ] && [ ! -e rg/stages/g/0/done.json ] && break
	sleep 0.5
done
cairn status rg --json >st.json 2>&1
cairn why rg g/1 >why.txt 2>&1
check_grep "group: while g/0 runs, g/1 waits in its job (why)" "runs 3 tasks of g one after another \(group = 3\) and has not come to it yet" why.txt
check_grep "group: ... and counts as pending, not running" '"g": \{"tasks": 14, "done": [0-9]+, "failed": [0-9]+, "running": [0-9]+, "pending": [1-9]' st.json
# (the run is "failed" once g/12 is, while g/3-5's retry still waits: wait
# for nothing to be queued)
for _ in $(seq 120); do
	cairn status rg --json >st.json 2>&1
	grep -q '"running": [1-9]\|"pending": [1-9]' st.json || break
	sleep 1
done
check_grep "group: g/4 failed for good, g/12 timed out, the rest of g done" '"g": \{"tasks": 14, "done": 12, "failed": 2, "running": 0, "pending": 0, "cancelled": 0\}' st.json
check_grep "group: h of g/3-5's and g/12-13's elements cancelled (aftercorr), the other 9 done" '"h": \{"tasks": 14, "done": 9, "failed": 0, "running": 0, "pending": 0, "cancelled": 5\}' st.json
check_eq "group: g/12 stopped by its wrapper at its own time, not the job's" \
	"$(python3 -c 'import json; j=json.load(open("rg/stages/g/12/failed.json")); print(j["kind"], j["message"], j["wall_s"] < 20)')" \
	"timeout time limit of 5 s reached; raise time, or give a range (time = 0:05..0:40) for retries to double it True"
check_eq "group: the retry ran g/5 again, not g/3 (done) nor g/4 (exit 5 is not retried)" \
	"$(grep -c '^g3$' gcount) $(grep -c '^g4$' gcount) $(grep -c '^g5$' gcount)" "1 1 2"
check_grep "group: one requeue for the element" "retry g/5: requeue of Slurm job [0-9]+, which runs g/3-5" rg/events.log
check_grep "group: g/4 kept as failed on the retry" "skip g/4: it failed in job" rg/events.log
check_eq "group: g/0-2 ran in one job, g/12-13 in the second array's element 0" \
	"$(for f in 0/done 1/done 2/done 12/failed 13/done; do python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["slurm_job"].split("_")[1])' rg/stages/g/$f.json; done | tr '\n' ' ')" "0 0 0 0 0 "
check "group: g/0 and g/13 in different arrays" test "$(python3 -c 'import json; print(json.load(open("rg/stages/g/0/done.json"))["slurm_job"])')" != "$(python3 -c 'import json; print(json.load(open("rg/stages/g/13/done.json"))["slurm_job"])')"
rm gbreak
: >gcount
cairn resume rg --wait >out.txt 2>&1
check_eq "group: resume reruns g/4 and g/12 only (g/3, g/5, g/13 of their jobs kept), then their readers" \
	"$? $(sort gcount | tr '\n' ' ')" "0 g12 g4 h12 h13 h3 h4 h5 "
check_eq "group: h/13 read g/13" "$(cat rg/stages/h/13/out/h)" "h13"

# A queued element whose task's input reruns is cancelled and sent again
# whole: the other tasks of its group go with it, not left waiting on it.
cat >grq.ini <<EOF
[pipeline]
name = sgrq
[defaults]
time = 00:01:00
mem = 100M
[stage a]
array = 6
command = echo a\${task} >> $T/gcount; echo a\${task} > \${out}/a
    if [ \${task} = 0 ]; then sleep 12; fi
[stage b]
array = 6
group = 3
after = a
command = echo b\${task} >> $T/gcount; tr a b < \${in.a[task]}/a > \${out}/b
EOF
: >gcount
cairn run grq.ini --executor slurm --run-dir rq >out.txt 2>&1
for _ in $(seq 40); do [ -e rq/stages/a/4/done.json ] && break; sleep 0.5; done
cairn resume rq --rerun a/4 --dry-run >dry.txt 2>&1
check_grep "group: resume cancels b's queued element of b/4 once" "would first cancel 1 queued Slurm job" dry.txt
check_grep "group: b/3 and b/5 go with it, sent again" "1 input reruns, 3 queued, 2 job cancelled" dry.txt
check_grep "dry run of a resume on Slurm: a/4's array (MaxArraySize 4: the second chunk's element 0)" \
	"^#1: sbatch --job-name=cairn.rq.[0-9a-f]+.a.[0-9]+ --array=0 --export=ALL,CAIRN_TASK_OFFSET=4,CAIRN_TIME_S=60 .* $T/rq/slurm/a.sh$" dry.txt
check_grep "dry run of a resume on Slurm: b's element 1 again, after it and a's jobs still queued" \
	"^#2: sbatch .*--array=1 .*--dependency=afterok:#1,afterok:[0-9]+" dry.txt
cairn resume rq --rerun a/4 --wait >out.txt 2>&1
check_eq "group: ... and after a/4 ran again, b/3-5 ran once each, b/0-2 in their old job" \
	"$? $(sort gcount | tr '\n' ' ')" "0 a0 a1 a2 a3 a4 a4 a5 b0 b1 b2 b3 b4 b5 "

# Cancelling a task of a group cancels its job: the task of it not reached
# is cancelled too, and its marker says so.
cat >grc.ini <<EOF
[pipeline]
name = sgrc
[stage k]
array = 2
group = 2
time = 00:02:00
mem = 100M
command = if [ \${task} = 0 ]; then sleep 60; fi; echo k\${task} >> $T/gcount
EOF
cairn run grc.ini --executor slurm --run-dir rc >out.txt 2>&1
for _ in $(seq 40); do [ -e rc/stages/k/0/started.json ] && break; sleep 0.5; done
cairn cancel rc k/0 >cancel.txt 2>&1
check_grep "group: cancel says the group's other tasks went with the job" "note: a Slurm job of k runs 2 of its tasks one after another \(group\)" cancel.txt
for _ in $(seq 40); do
	cairn status rc --json >st.json 2>&1
	grep -q '"running": [1-9]\|"pending": [1-9]' st.json || break
	sleep 0.5
done
check_grep "group: both tasks cancelled" '"k": \{"tasks": 2, "done": 0, "failed": 0, "running": 0, "pending": 0, "cancelled": 2\}' st.json
check_grep "group: k/1's marker: its job ended before it came to it" "of its group ended before it came to this task: CANCELLED" rc/stages/k/1/failed.json
echo "# $SECONDS s: group done"

# --- over its mem on Slurm: Slurm stops it (oom); resume asks twice as much ---
# No cgroups here: slurmstepd polls the RSS each second and kills the job,
# wrapper and all, so the kind comes from Slurm's log of the job and the mem
# the attempt had from its started.json. mem = 40M..200M: 80M, then 160M.
cat >om.ini <<EOF
[pipeline]
name = som
[stage m]
time = 00:01:00
mem = 40M..200M
command = echo "mem \$CAIRN_MEM_MB" >> $T/mcount
    python3 -c "import time; x = bytearray(80 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(4)"
EOF
: >mcount
cairn run om.ini --executor slurm --run-dir rom --wait >out.txt 2>&1
check_eq "oom on Slurm: the run fails" "$?" 1
cairn why rom m/0 >why.txt 2>&1
check_grep "oom on Slurm: why says oom" "^m/0: failed: oom" why.txt
check_grep "oom on Slurm: ... and that resume gives it 80 MiB" "to do: nothing in the spec: .cairn resume [^ ]*rom. gives it 80\.0 MiB \(it had 40\.0 MiB" why.txt
cairn resume rom --dry-run >dry.txt 2>&1
check_grep "oom on Slurm: resume's sbatch asks --mem=80M" "^#1: sbatch .* --mem=80M " dry.txt
cairn resume rom --wait >out.txt 2>&1
cairn resume rom --wait >out.txt 2>&1
check_eq "oom on Slurm: each resume doubles --mem; done at 160M" "$? $(tr '\n' ' ' <mcount)" "0 mem 40 mem 80 mem 160 "
echo "# $SECONDS s: oom on Slurm"
for _ in $(seq 180); do [ -e rtl/stages/t/0/done.json ] && break; sleep 1; done
check_eq "time limit on Slurm: the wrapper requeued its job, attempt 2 done" \
	"$(python3 -c 'import json; print(json.load(open("rtl/stages/t/0/done.json"))["attempt"])' 2>&1) $(cat tcount 2>&1)" "2 t"
check_grep "time limit on Slurm: attempt 1 failed with kind timeout, then the requeue" "failed t/0 attempt 1: timeout: Slurm's time limit" rtl/events.log
check_grep "time limit on Slurm: ... the requeue" "retry t/0: requeue of Slurm job" rtl/events.log
echo "# $SECONDS s: time limit retried"

exit $failed
