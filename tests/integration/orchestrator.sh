# The real cairn binary on real specs in a temp folder: run, failure, why,
# resume, outputs changed after the fact, kill -9 of a task wrapper and of
# cairn itself, Ctrl-C, cancel, MPI ranks, throttles, disk full, bad specs.
source "$(dirname "$0")/../lib.sh"
cd "$T"

# A three-stage DAG: a[4] -> b[4] one-to-one -> c[1] gathers. Every task
# appends its name to $T/count so that reruns can be counted exactly.
cat >dag.ini <<EOF
[pipeline]
name = dag

[params]
fail = -1
sleep = 0

[stage a]
command = echo a\${task} >> $T/count
    echo a\${task} > \${out}/a
    sleep \${param.sleep}
    test \${task} != \${param.fail} || { echo "a/\${task} fails on purpose" >&2; exit 3; }
array = 4

[stage b]
after = a
command = echo b\${task} >> $T/count
    tr a b < \${in.a[task]}/a > \${out}/b
array = 4

[stage c]
after = b
command = echo c >> $T/count
    for d in \${in.b}; do cat \$d/b; done > \${out}/c
EOF
runs() { grep -c "^$1\$" "$T/count" 2>/dev/null || echo 0; }

# --- a clean run ---
: >count
cairn run dag.ini --run-dir r1 >out.txt 2>err.txt
check_eq "run: exit 0 when every task is done" "$?" 0
check_eq "run: last line is the run folder" "$(tail -1 out.txt)" "$T/r1"
check_eq "run: c gathered b's outputs in order" "$(tr '\n' ' ' <r1/stages/c/0/out/c)" "b0 b1 b2 b3 "
check_eq "run: every task ran once" "$(wc -l <count)" 9
check "run: markers and task.sh written" test -f r1/stages/b/2/done.json -a -f r1/stages/b/2/task.sh -a -f r1/stages/b/2/log -a -f r1/spec.ini -a -f r1/run.json -a -f r1/events.log
cairn status r1 --json >st.json
check_eq "status --json: exact shape" "$(cat st.json)" \
	"{\"run\": \"$T/r1\", \"state\": \"done\", \"stages\": {\"a\": {\"tasks\": 4, \"done\": 4, \"failed\": 0, \"running\": 0, \"pending\": 0, \"cancelled\": 0}, \"b\": {\"tasks\": 4, \"done\": 4, \"failed\": 0, \"running\": 0, \"pending\": 0, \"cancelled\": 0}, \"c\": {\"tasks\": 1, \"done\": 1, \"failed\": 0, \"running\": 0, \"pending\": 0, \"cancelled\": 0}}}"
cairn run dag.ini --run-dir r1 >out.txt 2>&1
check_eq "run: refuses an existing run folder (exit 2)" "$?" 2
check_grep "run: says to resume instead" "cairn resume" out.txt

# --- no-op resume touches nothing ---
sha_before=$(cat r1/stages/*/*/done.json | sha256sum)
: >count
cairn resume r1 >out.txt 2>&1
check_eq "resume of a done run: exit 0" "$?" 0
check_eq "resume of a done run: nothing reran" "$(wc -l <count)" 0
check_eq "resume of a done run: markers not rewritten" "$(cat r1/stages/*/*/done.json | sha256sum)" "$sha_before"

# --- a run folder copied elsewhere keeps its keys ---
cp -a r1 r1-copy
: >count
cairn resume r1-copy >out.txt 2>&1
check_eq "resume of a copied run folder: exit 0" "$?" 0
check_eq "resume of a copied run folder: nothing reran" "$(wc -l <count)" 0
rm -rf r1-copy

# --- outputs modified or deleted after the fact ---
echo tampered >r1/stages/b/1/out/b
rm r1/stages/a/3/out/a
cairn why r1 b/1 >why.txt
check_grep "why: names the modified output" "b/1: done, but out/b was modified" why.txt
check_grep "why: says resume reruns it" "resume would rerun it" why.txt
cairn why r1 a/3 >why.txt
check_grep "why: names the deleted output" "out/a was deleted" why.txt
cairn why r1 c/0 >why.txt
check_grep "why: downstream reruns because an input reruns" "an input reruns: b" why.txt
cairn resume r1 --dry-run >plan.txt
check_grep "resume --dry-run: counts" "would run 4 tasks, skip 5" plan.txt
: >count
b0_before=$(sha256sum <r1/stages/b/0/done.json)
cairn resume r1 >out.txt 2>&1
check_eq "resume after tampering: exit 0" "$?" 0
# a3 rewrote the same bytes, so b3's inputs did not change and it was kept
# (early cutoff); b1 came back to its old bytes, so c's inputs did not change.
check_eq "resume after tampering: reran exactly a3 b1" "$(sort count | tr '\n' ' ')" "a3 b1 "
check_grep "resume after tampering: b3 kept, its input's bytes unchanged" "up to date b/3" r1/events.log
check_grep "resume after tampering: c kept, its inputs' bytes unchanged" "up to date c/0" r1/events.log
check_eq "resume after tampering: untouched task's marker unchanged" "$(sha256sum <r1/stages/b/0/done.json)" "$b0_before"
check_eq "resume after tampering: output restored" "$(cat r1/stages/b/1/out/b)" "b1"

# --- a torn done.json (a machine crash mid-write) is not trusted ---
printf '{"exit_code": 0, "manif' >r1/stages/a/0/done.json
cairn why r1 a/0 >why.txt
check_grep "torn done.json: why says it cannot be checked" "a/0: done, but its outputs cannot be checked" why.txt
: >count
cairn resume r1 >out.txt 2>&1
check_eq "torn done.json: resume reruns that task" "$(head -1 count)" "a0"
check "torn done.json: rewritten whole" grep -q '"manifest_sha256"' r1/stages/a/0/done.json

# --- a failing task, why, then resume with a fixed spec ---
: >count
cairn run dag.ini --run-dir r2 --set fail=2 >out.txt 2>&1
check_eq "failure: exit 1" "$?" 1
check_grep "failure: status names the failed task" "failed a/2: exit 3" out.txt
check_grep "failure: ... and the why command to run, with that task" "^see why: cairn why $T/r2 a/2$" out.txt
cairn status r2 --json >st.json
check_grep "failure: state failed" '"state": "failed"' st.json
check_grep "failure: b/2 never ran (pending)" '"b": \{"tasks": 4, "done": 3, "failed": 0, "running": 0, "pending": 1' st.json
cairn why r2 a/2 >why.txt
check_grep "why: exit code and attempt" "a/2: failed: exit 3 on attempt 1" why.txt
check_grep "why: shows the log's last lines" "a/2 fails on purpose" why.txt
cairn why r2 b/2 >why.txt
check_grep "why: pending task says what it waits for" "waits for a/2 \(failed\)" why.txt
cairn logs r2 a/2 >log.txt
check_grep "logs: prints the task's log" "fails on purpose" log.txt
sed 's/^fail = -1/fail = 99/' dag.ini >dag-fixed.ini
cp dag.ini dag-orig.ini
: >count
cairn resume r2 --spec dag-fixed.ini >out.txt 2>&1
check_eq "resume with an edited spec: exit 0" "$?" 0
# fail appears in a's command, so its key changed for all of a: all of a
# reran; a's outputs came out the same, so of b only b/2 (never ran) and c ran.
check_eq "resume with an edited spec: key change reruns a, then what is new" "$(sort count | tr '\n' ' ')" "a0 a1 a2 a3 b2 c "
cairn resume r2 --set fail=99 --dry-run >plan.txt
check_grep "resume: the edited spec is now the run's spec" "would run 0 tasks" plan.txt
cp dag-orig.ini dag.ini

# --- retries ---
cat >retry.ini <<EOF
[stage flaky]
command = n=\$(cat $T/flaky 2>/dev/null || echo 0); echo \$((n+1)) > $T/flaky; test \$n -ge 2
retries = 3
EOF
rm -f flaky
cairn run retry.ini --run-dir r3 >out.txt 2>&1
check_eq "retries: a task that fails twice then works ends done" "$?" 0
check_eq "retries: ran three attempts" "$(cat flaky)" 3
check_grep "retries: done.json records attempt 3" '"attempt": 3' r3/stages/flaky/0/done.json
# a task that leaves a process running in the background (here: a failed
# attempt): it is ended with the attempt, as Slurm ends a step's processes,
# and the log says so; left running it would hold the task's lock, inherited
cp "$(command -v sleep)" "$T/lingerer"
cat >linger.ini <<EOF
[stage linger]
command = if [ ! -f $T/lingered ]; then touch $T/lingered; $T/lingerer 60 & exit 3; fi; $T/lingerer 61 &
retries = 1
EOF
rm -f lingered
t0=$(date +%s)
CAIRN_LOCK_WAIT=0 cairn run linger.ini --run-dir r3b >out.txt 2>&1
check_eq "leftovers: the retry runs at once, nothing holds the lock" "$?" 0
check "leftovers: ... well before the leftovers' 60 s" test $(($(date +%s) - t0)) -lt 30
check_grep "leftovers: ... attempt 2 ran it" '"attempt": 2' r3b/stages/linger/0/done.json
check "leftovers: none is left running" sh -c "! pgrep -f '$T/lingere[r]'"
check_grep "leftovers: the log says what was ended" \
	"the task left 1 process running .started in the background and not waited for.; ended with it" \
	r3b/stages/linger/0/log
check_eq "leftovers: ... after each attempt, failed or done" \
	"$(grep -c 'the task left 1 process running' r3b/stages/linger/0/log)" 2
check "leftovers: no wait for the lock" sh -c "! grep -q 'wait linger/0' r3b/events.log"
# one that left the group (setsid) outlives the attempt and holds the lock:
# the retry waits for it
cat >escape.ini <<EOF
[stage escape]
command = if [ ! -f $T/escaped ]; then touch $T/escaped;
  setsid sh -c "touch $T/away; exec $T/lingerer 2" &
  while [ ! -f $T/away ]; do sleep 0.05; done; exit 3; fi
retries = 1
EOF
rm -f escaped away
cairn run escape.ini --run-dir r3c >out.txt 2>&1
check_eq "escaped: the retry waits for what is left of attempt 1" "$?" 0
check_grep "escaped: ... and says so" "wait escape/0: attempt 2 waits for the task's lock" r3c/events.log
check_grep "escaped: ... attempt 2 ran it" '"attempt": 2' r3c/stages/escape/0/done.json
rm -f escaped away
CAIRN_LOCK_WAIT=0 cairn run escape.ini --run-dir r3d >out.txt 2>&1
check_eq "escaped: not waiting, the retry finds the task busy and the run fails" "$?" 1
check_grep "escaped: ... and the events say why" \
	"busy escape/0: its lock is still held after 0 s \(by pid [0-9]+, lingerer, on [^)]+\); attempt 2 leaves it to that wrapper" r3d/events.log
cairn why r3d escape/0 >why.txt 2>&1
check_grep "escaped: why quotes it" "a wrapper of it found its lock held and left it" why.txt
sleep 2 # the escaped process ends

# --- a command that does not exist ---
printf '[stage x]\ncommand = no-such-program-cairn --flag\n' >missing.ini
cairn run missing.ini --run-dir r4 >out.txt 2>&1
check_eq "missing command: exit 1" "$?" 1
check_grep "missing command: status shows exit 127" "failed x/0: exit 127" out.txt
check_grep "missing command: the log says not found" "not found" r4/stages/x/0/log

# --- kill -9 of a task wrapper between hashing and done.json ---
printf '[stage slow]\ncommand = echo data > ${out}/f\n' >slow.ini
CAIRN_TEST_PAUSE_BEFORE_DONE=30 cairn run slow.ini --run-dir r5 >out.txt 2>&1 &
runner=$!
for _ in $(seq 100); do grep -q "^start slow/0\|start slow/0" r5/events.log 2>/dev/null && break; sleep 0.1; done
sleep 0.5
wrapper=$(sed -n 's/.*"pid": \([0-9]*\).*/\1/p' r5/stages/slow/0/started.json)
kill -9 "$wrapper"
wait "$runner"
check "SIGKILL while writing: no done.json" test ! -e r5/stages/slow/0/done.json
cairn status r5 --json >st.json
check_grep "SIGKILL while writing: counted as failed (lost)" '"slow": \{"tasks": 1, "done": 0, "failed": 1' st.json
cairn why r5 slow/0 >why.txt
check_grep "SIGKILL while writing: why says lost" "lost: started on" why.txt
cairn resume r5 >out.txt 2>&1
check_eq "SIGKILL while writing: resume completes it" "$?" 0

# --- kill -9 of cairn itself: wrappers finish, resume reruns nothing done ---
: >count
cairn run dag.ini --run-dir r6 --set sleep=1 --jobs 2 >out.txt 2>&1 &
runner=$!
for _ in $(seq 100); do [ "$(cat r6/events.log 2>/dev/null | grep -c 'start a')" -ge 2 ] && break; sleep 0.1; done
kill -9 "$runner"
wait "$runner" 2>/dev/null
cairn resume r6 >out.txt 2>&1
check_eq "kill -9 of cairn, then resume: exit 0" "$?" 0
check_eq "kill -9 of cairn, then resume: every task ran exactly once" "$(sort count | uniq -d | wc -l) $(wc -l <count)" "0 9"
check_eq "kill -9 of cairn, then resume: results complete" "$(tr '\n' ' ' <r6/stages/c/0/out/c)" "b0 b1 b2 b3 "

# --- kill -9 of cairn at random moments, resumed each time ---
: >count
killed_ok=1
for i in 1 2 3 4 5; do
	# until a run folder exists (cairn may be killed before it has made one), run again
	if [ ! -e r6b/run.json ]; then cmd="run dag.ini --run-dir r6b --set sleep=0.3 --jobs 2"; else cmd="resume r6b"; fi
	cairn $cmd >out.txt 2>&1 &
	runner=$!
	sleep "0.$((RANDOM % 9))"
	kill -9 "$runner" 2>/dev/null
	wait "$runner" 2>/dev/null
	# wrappers may still be finishing: wait until none is running
	for _ in $(seq 50); do grep -q '"state": "running"' <(cairn status r6b --json 2>/dev/null) || break; sleep 0.1; done
done
check "kill -9 while creating: no half-made run folder" bash -c "[ -e r6b/run.json ] || [ ! -e r6b ]"
[ -e r6b/run.json ] || cairn run dag.ini --run-dir r6b --set sleep=0.3 --jobs 2 >out.txt 2>&1
cairn resume r6b >out.txt 2>&1 || killed_ok=0
check_eq "kill -9 at random moments, then resume: completes" "$killed_ok" 1
check_eq "kill -9 at random moments: no task ran twice" "$(sort count | uniq -d | tr '\n' ' ')" ""
check_eq "kill -9 at random moments: results complete" "$(tr '\n' ' ' <r6b/stages/c/0/out/c)" "b0 b1 b2 b3 "

# --- Ctrl-C: running tasks are cancelled cleanly, resume continues ---
: >count
long=$((3000 + RANDOM % 1000)) # a value no other test uses, to find leftovers by
setsid cairn run dag.ini --run-dir r7 --set sleep=$long >out.txt 2>&1 &
runner=$!
for _ in $(seq 100); do [ "$(cat r7/events.log 2>/dev/null | grep -c 'start a')" -ge 2 ] && break; sleep 0.1; done
kill -INT -- -"$runner"
wait "$runner"
check_eq "Ctrl-C: exit 130" "$?" 130
cairn status r7 --json >st.json
check_grep "Ctrl-C: running tasks marked cancelled" '"a": \{"tasks": 4, "done": 0, "failed": 0, "running": 0, "pending": 2, "cancelled": 2\}' st.json
check "Ctrl-C: no task process left" bash -c "! pgrep -f '[s]leep $long' >/dev/null"
cairn resume r7 --set sleep=0 >out.txt 2>&1
check_eq "Ctrl-C, then resume: completes" "$?" 0

# --- cairn cancel from another shell ---
setsid cairn run dag.ini --run-dir r8 --set sleep=30 >out.txt 2>&1 &
runner=$!
for _ in $(seq 100); do [ "$(cat r8/events.log 2>/dev/null | grep -c 'start a')" -ge 2 ] && break; sleep 0.1; done
cairn cancel r8 >cancel.txt 2>&1
wait "$runner"
check_eq "cancel: the run exits 130" "$?" 130
cairn status r8 --json >st.json
check_grep "cancel: state cancelled" '"state": "cancelled"' st.json

# --- cairn cancel RUN STAGE/TASK: those tasks stop, the rest goes on ---
cat >pc.ini <<EOF
[pipeline]
name = pc
[stage a]
array = 4
throttle = 2
command = for i in \$(seq 300); do [ -e $T/pc-go ] && break; sleep 0.1; done; echo \${task} > \${out}/a
[stage b]
after = a
array = 4
command = cat \${in.a[task]}/a > \${out}/b
EOF
rm -f pc-go
setsid cairn run pc.ini --run-dir pc >pc.out 2>&1 &
runner=$!
for _ in $(seq 100); do n=$(grep -c 'start a' pc/events.log 2>/dev/null); [ "${n:-0}" -ge 2 ] && break; sleep 0.1; done
cairn cancel pc a/0 a/3 >cancel.txt 2>&1
check_eq "cancel STAGE/TASK: exit 0" "$?" 0
check_grep "cancel STAGE/TASK: one running, one not yet started" "^cancelled 2 tasks of .*/pc: 1 running, 1 not yet started; 0 named" cancel.txt
touch pc-go
wait "$runner"
cairn status pc --json >st.json
check "cancel STAGE/TASK: those two cancelled, the rest of a and of b done, b/0 and b/3 never ran" python3 - st.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
a, b = j["stages"]["a"], j["stages"]["b"]
assert (a["done"], a["cancelled"], b["done"], b["pending"]) == (2, 2, 2, 2), j
PY
check_grep "cancel STAGE/TASK: the unstarted one says so" "before it started" pc/stages/a/3/failed.json
check "cancel STAGE/TASK: its mark is gone" test ! -e pc/stages/a/3/cancel
cairn resume pc >out.txt 2>&1
check_eq "cancel STAGE/TASK: resume runs what was cancelled and what needs it" "$? $(cat pc/stages/b/3/out/b)" "0 3"
cairn cancel pc nosuch >cancel.txt 2>&1
check_eq "cancel of a task the run does not have: bad usage" "$?" 2

# --- MPI: ranks = 2 through mpirun ---
cat >mpi.ini <<'EOF'
[stage hello]
command = echo "rank ${OMPI_COMM_WORLD_RANK:-none} of ${OMPI_COMM_WORLD_SIZE:-none}" >> ${out}/ranks
ranks = 2
EOF
sed -i 's/\${OMPI/$${OMPI/g' mpi.ini
cairn run mpi.ini --run-dir r9 --jobs 2 >out.txt 2>&1
check_eq "mpi: exit 0" "$?" 0
check_eq "mpi: two ranks ran" "$(sort r9/stages/hello/0/out/ranks | tr '\n' ' ')" "rank 0 of 2 rank 1 of 2 "

# --- throttle: at most one task of the stage at once ---
cat >throttle.ini <<EOF
[stage t]
command = mkdir $T/inside || exit 9
    sleep 0.2
    rmdir $T/inside
array = 4
throttle = 1
EOF
cairn run throttle.ini --run-dir r10 --jobs 2 >out.txt 2>&1
check_eq "throttle = 1: tasks never overlap" "$?" 0

# --- gpus = N: each task gets its own GPUs through CUDA_VISIBLE_DEVICES ---
# No GPU is needed: --gpus names the devices to hand out. A task takes a
# lock folder per GPU it was given, so two tasks sharing one would fail.
cat >gpus.ini <<EOF
[stage two]
command = test -n "\$CUDA_VISIBLE_DEVICES" || exit 8
    echo "\$CUDA_VISIBLE_DEVICES" > \${out}/gpus
    for g in \$(echo \$CUDA_VISIBLE_DEVICES | tr , ' '); do mkdir $T/gpu\$g || exit 9; done
    sleep 0.3
    for g in \$(echo \$CUDA_VISIBLE_DEVICES | tr , ' '); do rmdir $T/gpu\$g; done
array = 4
gpus = 2

[stage none]
command = echo "[\$\${CUDA_VISIBLE_DEVICES-unset}]" > \${out}/gpus
array = 2
EOF
cairn run gpus.ini --run-dir rg --jobs 4 --gpus 0,1,2,5 >out.txt 2>&1
check_eq "gpus = 2 on 4 GPUs, 4 tasks at once: exit 0, no GPU shared" "$?" 0
check_eq "gpus = 2: every task saw two distinct GPUs" \
	"$(cat rg/stages/two/*/out/gpus 2>/dev/null | awk -F, 'NF == 2 && $1 != $2' | wc -l)" 4
check_eq "gpus = 2: only the GPUs given with --gpus" \
	"$(cat rg/stages/two/*/out/gpus 2>/dev/null | tr , '\n' | sort -u | tr '\n' ' ')" "0 1 2 5 "
check_eq "gpus = 0 when GPUs are given out: the task sees none" "$(cat rg/stages/none/0/out/gpus)" "[]"
check_grep "the event log counts the GPUs" "4 GPUs" rg/events.log
CUDA_VISIBLE_DEVICES=3 cairn run gpus.ini --run-dir rg2 >out.txt 2>&1
check_eq "gpus = 2 with one visible GPU: refused (exit 2)" "$?" 2
check_grep "gpus = 2 with one GPU: names the stage and the count" "stage 'two' asks for gpus = 2, but 1 GPU can be given out" out.txt
check "refused before a run folder is made" test ! -e rg2
cairn run gpus.ini --run-dir rg3 --gpus 3 >out.txt 2>&1
check_eq "--gpus 3 (a count): one task at a time gets 2 of 0,1,2" "$?" 0
check_eq "--gpus 3: the first free ones, 0 and 1" "$(cat rg3/stages/two/*/out/gpus | sort -u | tr '\n' ' ')" "0,1 "
cairn run gpus.ini --run-dir rg4 --gpus lots >out.txt 2>&1
check_eq "--gpus lots: refused" "$?" 2
CUDA_VISIBLE_DEVICES= cairn run gpus.ini --run-dir rg5 >out.txt 2>&1
check_grep "CUDA_VISIBLE_DEVICES empty: no GPU to give, says so" "0 GPUs can be given out" out.txt

# --- disk full: a clear message, nothing counts as done ---
mkdir -p small
if mount -t tmpfs -o size=256k tmpfs small 2>/dev/null; then
	on_exit "umount $T/small 2>/dev/null"
	printf '[stage big]\ncommand = head -c 1000000 /dev/zero > ${out}/big\n' >big.ini
	cairn run big.ini --run-dir small/r >out.txt 2>&1
	check_eq "disk full: exit 1" "$?" 1
	check "disk full: no done.json" test ! -e small/r/stages/big/0/done.json
	check_grep "disk full: the log says so" "No space left on device" small/r/stages/big/0/log
	head -c 200000 /dev/zero >small/filler 2>/dev/null
	cairn run big.ini --run-dir small/r2 >out.txt 2>&1
	rc=$?
	if [ "$rc" = 1 ] || [ "$rc" = 2 ]; then ok "disk full before the run: exit $rc"; else not_ok "disk full before the run: exit $rc"; fi
	check_grep "disk full before the run: message names the problem" "No space left on device" out.txt
	umount small
else
	skip "disk full" "cannot mount a small tmpfs here"
fi

# --- bad specs: exit 2 and FILE:LINE ---
bad() { # name, expected message regexp, spec text
	printf '%b' "$3" >bad.ini
	cairn run bad.ini --dry-run >out.txt 2>&1
	local rc=$?
	if [ $rc = 2 ] && grep -qE -- "$2" out.txt; then ok "bad spec: $1"; else
		not_ok "bad spec: $1 (exit $rc)"
		sed 's/^/#   /' out.txt
	fi
}
bad "unknown key" "bad.ini:3: stage 'a': unknown key 'rank'" '[stage a]\ncommand = true\nrank = 2\n'
bad "unknown variable" "bad.ini:2: stage 'a': unknown variable '\\$\\{outt\\}'" '[stage a]\ncommand = echo ${outt}\n'
bad "unknown param" "bad.ini:2: .*\\$\\{param.zoom\\}" '[stage a]\ncommand = echo ${param.zoom}\n'
bad "cycle" "cycle in the stages: (a -> b -> a|b -> a -> b)" '[stage a]\nafter = b\ncommand = true\n[stage b]\nafter = a\ncommand = true\n'
bad "after names no stage" "bad.ini:2: stage 'a': after = nope: no stage named 'nope'" '[stage a]\nafter = nope\ncommand = true\n'
bad "bad array size" "bad.ini:3: stage 'a': bad array size '0'" '[stage a]\ncommand = true\narray = 0\n'
bad "duplicate stage" "bad.ini:3: duplicate stage 'a' \\(first at line 1\\)" '[stage a]\ncommand = true\n[stage a]\ncommand = false\n'
bad "unequal arrays with [task]" "needs arrays of equal size" '[stage a]\ncommand = true\narray = 2\n[stage b]\nafter = a\ncommand = cat ${in.a[task]}\narray = 3\n'
bad "in. without after" "reads \\$\\{in.a\\} but does not run after it" '[stage a]\ncommand = true\n[stage b]\ncommand = ls ${in.a}\n'
bad "unknown section" "bad.ini:1: unknown section \\[stages a\\]" '[stages a]\ncommand = true\n'
bad "not INI" "bad.ini:2: not INI" '[stage a]\nthis is not ini\n'
bad "bad mem" "bad.ini:3: mem = '2X'" '[stage a]\ncommand = true\nmem = 2X\n'
bad "long line" "bad.ini:2: line longer than 199" "[stage a]\ncommand = echo $(head -c 300 /dev/zero | tr '\0' x)\n"
cairn run "$T" --dry-run >out.txt 2>&1
check_grep "a folder as the spec: says so" "a folder, not a spec" out.txt
head -c 300 "$(command -v sh)" >bin.ini
cairn run bin.ini --dry-run >out.txt 2>&1
check_grep "a binary file as the spec: says so" "bin.ini: a binary file, not a spec" out.txt
cairn run /nonexistent/spec.ini >out.txt 2>&1
check_eq "unreadable spec: exit 2" "$?" 2
check_grep "unreadable spec: names the file" "/nonexistent/spec.ini: cannot read the spec" out.txt
cairn run dag.ini --set nope=1 --dry-run >out.txt 2>&1
check_eq "--set of an unknown param: exit 2" "$?" 2
cairn run dag.ini --set slep=1 --dry-run >out.txt 2>&1
check_grep "--set of a typo of a param: did you mean" "--set slep=1: .*dag.ini has no param 'slep' in \[params\], did you mean 'sleep'\?" out.txt
cairn frobnicate >out.txt 2>&1
check_eq "unknown command: exit 2" "$?" 2

# --- values and paths a run folder could not keep; params built on params ---
cairn run dag.ini --run-dir "$T/dir with space/r" >out.txt 2>&1
check_eq "run folder path with a space: exit 2" "$?" 2
check_grep "run folder path with a space: says why" "holds a space, which commands would get unquoted" out.txt
check "run folder path with a space: nothing made" test ! -e "$T/dir with space"
cairn run dag.ini --run-dir r-long --set "sleep=$(head -c 250 /dev/zero | tr '\0' 0)" >out.txt 2>&1
check_eq "--set too long for spec.ini: exit 2" "$?" 2
check_grep "--set too long: says why" "cannot be kept in the run's spec.ini: a line of 250 characters" out.txt
check "--set too long: no run folder left" test ! -e r-long
cairn resume r1 --set 'sleep=0 ; echo' >out.txt 2>&1
check_grep "resume --set with ' ;': refused" "' ;' starts a comment" out.txt
cairn status r1 >out.txt 2>&1
check_eq "resume --set refused: the run still opens" "$?" 0
cat >params.ini <<'EOF'
[params]
who = world
greeting = hello-${param.who}-$${HOME}
[stage p]
command = echo "${param.greeting}" > ${out}/g
    [ -s ${out}/g ] && echo checked >> ${out}/g
EOF
cairn run params.ini --run-dir rp >/dev/null 2>&1
check_eq "a param built on a param, \$\${ literal" "$(head -1 rp/stages/p/0/out/g)" "hello-world-$HOME"
check_eq "an indented line starting with [ continues the command" "$(tail -1 rp/stages/p/0/out/g)" checked
cairn resume rp --set who=there >/dev/null 2>&1
check_eq "resume --set reaches the params built on it" "$(head -1 rp/stages/p/0/out/g)" "hello-there-$HOME"

# --- what a failure says: the wrapper's message, a damaged marker, a FIFO output ---
printf '[stage f]\ncommand = mkfifo ${out}/p\n[stage g]\nafter = f\ncommand = ls ${in.f}\n' >fifo.ini
timeout 60 cairn run fifo.ini --run-dir rf >out.txt 2>&1
check_eq "a FIFO in out/: the run fails, never hangs" "$?" 1
cairn why rf f/0 >why.txt 2>&1
check_grep "a FIFO in out/: why names it" "f/0: failed: output on attempt 1: out/p is a FIFO" why.txt
cairn exec rf g 0 >/dev/null 2>&1
cairn why rf g/0 >why.txt 2>&1
check_grep "a dependency failure: why gives the wrapper's message" "dependency on attempt 1: input f/0 is not done" why.txt
echo garbage >rf/stages/f/0/failed.json
cairn status rf >out.txt 2>&1
check_eq "a damaged failed.json: status still works" "$?" 0
check_grep "a damaged failed.json: the task counts as failed" "failed f/0: unknown" out.txt
rm rf/stages/f/0/out/p
cairn resume rf --dry-run >out.txt 2>&1
check_grep "a damaged failed.json: resume would rerun it" "would run 2 tasks" out.txt

# --- the local executor keeps to `time`; small things said right ---
printf '[stage t]\ncommand = sleep 30\ntime = 00:01\nretries = 1\nretry_on = timeout\n' >v1.2.ini
start=$(date +%s)
cairn run v1.2.ini --run-dir rt >out.txt 2>&1
check_eq "time limit, local: the run fails" "$?" 1
check "time limit, local: each attempt stopped at 1 s (2 attempts, well under 30 s)" test $(($(date +%s) - start)) -lt 20
cairn why rt t/0 >why.txt 2>&1
check_grep "time limit, local: kind timeout, retried once" "t/0: failed: timeout on attempt 2: time limit of 1 s reached" why.txt
check_grep "why of a timeout: what to do" "to do: raise time of t \(now 1.0 s\) and .cairn resume $T/rt --spec v1.2.ini." why.txt
mkdir -p elsewhere && (cd elsewhere && cairn why ../rt t/0 >../why.txt 2>&1)
check_grep "why from another folder: the spec's path from there" "cairn resume $T/rt --spec $T/v1.2.ini." why.txt
check_grep "default name: the file name without .ini" "^name = v1_2" rt/spec.ini
cairn why rt t/0 --lines -5 >out.txt 2>&1
check_eq "why --lines -5: exit 2" "$?" 2
check_grep "why --lines -5: says why" "want a number of lines" out.txt
printf 'torn line without newline' >>rt/events.log
cairn resume rt >/dev/null 2>&1
check_grep "events.log: the next event starts on a line of its own" "^20[0-9-]*T[0-9:]*Z resume" rt/events.log
printf '[stage a]\ncommand = false\n[stage b]\nafter = a\ncommand = true\n' >nr.ini
cairn run nr.ini --run-dir rnr >/dev/null 2>&1
cairn why rnr b/0 >why.txt 2>&1
check_grep "why of a task that never ran: resume would run it" "resume would run it" why.txt

printf '[stage n]\ncommand = exit 4\nretries = 3\nretry_on = exit:5\n' >nv.ini
cairn run nv.ini --run-dir rnv >/dev/null 2>&1
cairn why rnv n/0 >why.txt 2>&1
check_grep "why: a failure retry_on does not cover says so" "not retried: retry_on = exit:5 does not cover exit 4" why.txt
check_eq "why of a plain exit: no 'to do' (its log says)" "$(grep -c "to do:" why.txt)" 0

# --- runs made before today's checks; outputs changed by hand ---
printf '[stage s]\ncommand = echo "$HOME" > ${out}/f\n' >olda.ini
cairn run olda.ini --run-dir rold >/dev/null 2>&1
printf '\n[params]\ndata = ${HOME}/x\n' >>rold/spec.ini   # as an older cairn froze a param
cairn status rold >out.txt 2>&1
check_eq "a run whose params hold \${HOME} (made before params were checked): status opens it" "$?" 0
cp olda.ini oldb.ini
cairn resume rold --spec oldb.ini >out.txt 2>&1
check_eq "resume --spec with a file of another name and no name of its own: the run's name is kept" "$?" 0
mkfifo rold/stages/s/0/out/late
cairn resume rold --dry-run >out.txt 2>&1
check_eq "a FIFO put into a done task's out/ later: the plan still works" "$?" 0
check_grep "... and reruns that task" "would run 1 tasks" out.txt
rm rold/stages/s/0/out/late
cp -r r1 r1-times   # a copy that does not keep file times
cairn why r1-times a/0 >why.txt 2>&1
check_grep "why of a copy without file times: says so" "modification times changed, not their contents" why.txt
rm -rf r1-times

# --- two cairns on one run: the second is refused and names the first ---
sed 's/^sleep = 0/sleep = 2/' dag.ini >slow.ini
cairn run slow.ini --run-dir rl >/dev/null 2>&1 &
lpid=$!
for _ in $(seq 100); do [ -s rl/.lock ] && break; sleep 0.05; done
cairn resume rl >out.txt 2>&1
check_eq "resume of a run another cairn drives: exit 1" "$?" 1
check_grep "resume of a run another cairn drives: names its pid" "being run by another cairn \\(pid $lpid\\)" out.txt
wait $lpid

# --- status --usage: what the done tasks used against what their stage asks ---
cat >use.ini <<EOF
[stage near]
time = 0:05
command = sleep 4.6
[stage big]
mem = 128M
command = python3 -c "x = bytearray(110 << 20); x[::4096] = b'1' * len(x[::4096])"
[stage fat]
cpus = 2
mem = 8G
command = sleep 1.1
EOF
cairn run use.ini --run-dir ru >out.txt 2>&1
check_eq "usage: the run is done" "$?" 0
check "usage: done.json has the task's CPU time and max RSS" python3 -c "
import json; d = json.load(open('ru/stages/big/0/done.json'))
assert d['cpu_s'] > 0 and d['max_rss_kb'] > 110 * 1024, d"
cairn status ru --usage >use.txt 2>&1
check_grep "usage: a row per stage, with what it asks" "^fat +1 +1\.[0-9] s +1\.[0-9] s +0\.[0-9]+ +[0-9.]+ MiB +0 B +0 B  cpus 2, mem 8\.00 GiB" use.txt
check_grep "usage: a task near its mem" "big: a task used 1[12][0-9]\.[0-9] MiB of its mem = 128\.0 MiB \([0-9]+%\): raise mem" use.txt
check_grep "usage: a task near its time" "near: a task ran 4\.[6-9] s of its time = 5\.0 s \(9[0-9]%\): raise time" use.txt
check_grep "usage: mem asked 4x over, with what would do" "fat: asks mem = 8\.00 GiB, its tasks used [0-9.]+ MiB at most: mem = 256M would do" use.txt
check_grep "usage: cpus that sat idle" "fat: asks cpus = 2, its tasks kept 0\.0 busy on average" use.txt
check_grep "usage: the free space where the outputs go" "^the run folder's file system: [0-9.]+ (B|[KMGTP]iB) free of [0-9.]+ [KMGTP]iB$" use.txt
cairn why ru big/0 >why.txt 2>&1
check_grep "usage: why of a done task says where it ran and what it used" \
	"ran on .+ \(attempt 1\): [0-9.]+ s wall, [0-9.]+ s CPU, max RSS 1[12][0-9]\.[0-9] MiB of mem = 128 MiB" why.txt
cairn status ru --usage --json >use.json
check "usage --json: counts, usage per stage and the advice" python3 -c "
import json; j = json.load(open('use.json'))
assert j['stages']['big']['done'] == 1
u = j['usage']['near']
assert u['tasks'] == 1 and 4.5 < u['wall_s'] == u['wall_s_max'] < 5 and u['cpu_s'] < 0.5, u
assert len(j['usage_advice']) == 4, j['usage_advice']
import os; v = os.statvfs('ru'); d = j['disk']
assert d['size_bytes'] == v.f_blocks * v.f_frsize and 0 < d['available_bytes'] <= d['size_bytes'], d"

# a task killed by SIGKILL (as the OOM killer does): why says how large it was
cat >kill.ini <<EOF
[stage k]
mem = 64M
command = python3 -c "x = bytearray(40 << 20); x[::4096] = b'1' * len(x[::4096])
  import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
EOF
cairn run kill.ini --run-dir rk >out.txt 2>&1
check_eq "killed: the run fails" "$?" 1
cairn why rk k/0 >why.txt 2>&1
check_grep "killed: why gives its max RSS against its mem" \
	"exit 137 on attempt 1: killed by SIGKILL \(out of memory, or kill -9\); max RSS [4-9][0-9]\.[0-9] MiB of mem = 64 MiB" why.txt

# --- mem is a limit here too: over it, the task is stopped (oom) ---
# As Slurm without cgroups does: the RSS of the task's processes together,
# polled each second. A range (mem = A..B) doubles it after each oom.
cat >oom.ini <<EOF
[stage hog]
mem = 40M
command = python3 -c "import time; x = bytearray(80 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(3)"
[stage grow]
mem = 40M..200M
retries = 3
retry_on = oom
command = echo "mem \$CAIRN_MEM_MB" >>$T/grow.mem; python3 -c "import time; x = bytearray(80 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(2)"
EOF
: >grow.mem
cairn run oom.ini --run-dir ro >out.txt 2>&1
check_eq "oom: the run fails (hog)" "$?" 1
cairn status ro --json >st.json
check_grep "oom: hog failed, grow done" '"hog": \{"tasks": 1, "done": 0, "failed": 1.*"grow": \{"tasks": 1, "done": 1' st.json
check_grep "oom: failed.json says oom" '"kind": "oom"' ro/stages/hog/0/failed.json
check_grep "... and the mem it had" '"mem_mb": 40' ro/stages/hog/0/failed.json
cairn why ro hog/0 >why.txt 2>&1
check_grep "oom: why says what it used against its mem" "oom on attempt 1: its processes used [89][0-9]\.[0-9] MiB together, over its mem of 40\.0 MiB" why.txt
check_grep "oom: why's to-do: raise mem, or a range" "to do: raise mem of hog \(now 40\.0 MiB\).*or give a range \(mem = 40M\.\.320M\)" why.txt
check_eq "oom: a range doubles it on each retry (the task sees it in CAIRN_MEM_MB)" "$(tr '\n' ' ' <grow.mem)" "mem 40 mem 80 mem 160 "
check_grep "oom: done.json records the mem that did" '"mem_mb": 160' ro/stages/grow/0/done.json
cairn why ro grow/0 >why.txt 2>&1
check_grep "oom: why of the done task: its RSS against the mem it had" "attempt 3\): .* max RSS [89][0-9]\.[0-9] MiB of mem = 160 MiB" why.txt
cairn status ro --usage >use.txt 2>&1
check_grep "oom: status --usage shows the range" "^grow .*mem 40\.0 MiB\.\.200\.0 MiB" use.txt
check_eq "oom: the log says it each time" "$(grep -c 'over its mem of' ro/stages/grow/0/log)" 2
# what it used is of its processes together, as the limit: two of 40 MiB
cat >two.ini <<EOF
[stage two]
mem = 400M
command = for i in 1 2; do python3 -c "import time; x = bytearray(40 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(2.5)" & done; wait
EOF
cairn run two.ini --run-dir r2p >out.txt 2>&1
check_eq "usage together: the run is done" "$?" 0
check_eq "usage together: done.json's rss_sum_kb holds both processes, max_rss_kb one" \
	"$(python3 -c 'import json; j = json.load(open("r2p/stages/two/0/done.json")); print(j["rss_sum_kb"] > 80 << 10, j["max_rss_kb"] < 70 << 10, j["rss_sum_kb"] > 1.5 * j["max_rss_kb"])')" \
	"True True True"
cairn why r2p two/0 >why.txt 2>&1
check_grep "usage together: why shows the sum against the mem" "max RSS (8[0-9]|9[0-9]|1[0-4][0-9])\.[0-9] MiB of mem = 400 MiB" why.txt
# MPI: mpirun gives each rank a process group of its own; they count, and go, too
cat >ompi.ini <<EOF
[stage m]
ranks = 2
mem = 60M
command = python3 -c "import time; x = bytearray(40 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(8)" $T/omark
EOF
cairn run ompi.ini --run-dir rompi >out.txt 2>&1
check_grep "oom, MPI: both ranks count (2 x 40 MiB, over 60 MiB)" '"kind": "oom"' rompi/stages/m/0/failed.json
check_eq "oom, MPI: no rank is left running" "$(pgrep -f "$T/omark" | wc -l)" 0
# no retries: resume doubles it
sed 's/^retries = 3/retries = 0/' oom.ini >oom0.ini
: >grow.mem
cairn run oom0.ini --run-dir ro0 >out.txt 2>&1
cairn why ro0 grow/0 >why.txt 2>&1
check_grep "oom: why's to-do with a range: resume gives it twice as much" "to do: nothing in the spec: .cairn resume [^ ]*ro0. gives it 80\.0 MiB \(it had 40\.0 MiB; mem = 40M\.\.200M" why.txt
cairn resume ro0 >out.txt 2>&1
cairn resume ro0 >out.txt 2>&1
check_eq "oom: each resume doubles it" "$(tr '\n' ' ' <grow.mem)" "mem 40 mem 80 mem 160 "
cairn status ro0 --json >st.json
check_grep "oom: done after two resumes" '"grow": \{"tasks": 1, "done": 1' st.json

# --- time = A..B: an attempt after a timeout gets twice as long ---
cat >tr.ini <<EOF
[stage s]
time = 0:01..0:04
retries = 3
retry_on = timeout
command = echo "time \$CAIRN_TIME_S" >>$T/tr.count; sleep 2.5
EOF
: >tr.count
cairn run tr.ini --run-dir rtr >out.txt 2>&1
check_eq "time range: done on the third attempt" "$?" 0
check_eq "time range: 1 s, 2 s, 4 s (the task sees it in CAIRN_TIME_S)" "$(tr '\n' ' ' <tr.count)" "time 1 time 2 time 4 "
check_grep "time range: done.json records the time that did" '"time_s": 4' rtr/stages/s/0/done.json
check_grep "time range: the events say what the next attempt gets" "timeout: time limit of 2 s reached; its next attempt gets 4\.0 s \(time = 0:01\.\.0:04\)" rtr/events.log
sed 's/^retries = 3/retries = 0/' tr.ini >tr0.ini
cairn run tr0.ini --run-dir rtr0 >out.txt 2>&1
cairn why rtr0 s/0 >why.txt 2>&1
check_grep "time range: why's to-do: resume gives it twice as long" "to do: nothing in the spec: .cairn resume [^ ]*rtr0. gives it 2\.0 s \(it had 1\.0 s; time = 0:01\.\.0:04 doubles it after a timeout" why.txt
cairn resume rtr0 --executor slurm --dry-run >dry.txt 2>&1
check_grep "time range: a resume on Slurm would give it 2 s (CAIRN_TIME_S)" "^#1: sbatch .*CAIRN_TIME_S=2 .* --time=1 " dry.txt

# --- the kernel's OOM killer (a memory cgroup's limit, as Slurm's task/cgroup) ---
# The wrapper survives it: it reads its cgroup's oom_kill count before and
# after, and calls the SIGKILL an oom. Needs a v1 memory cgroup to make.
cg=$(sed -n 's/^[0-9]*:\([a-z_,]*,\)\{0,1\}memory\(,[a-z_,]*\)\{0,1\}:\(.*\)$/\3/p' /proc/self/cgroup)
C=/sys/fs/cgroup/memory$cg/cairn-test-$$
if [ -n "$cg" ] && mkdir "$C" 2>/dev/null && echo $((60 << 20)) >"$C/memory.limit_in_bytes" 2>/dev/null; then
	on_exit "rmdir '$C'"
	cat >cg.ini <<EOF
[stage k]
command = python3 -c "x = bytearray(150 << 20); x[::4096] = b'1' * len(x[::4096])"
EOF
	sh -c "echo \$\$ >'$C/cgroup.procs' && exec cairn run cg.ini --run-dir rcg" >out.txt 2>&1
	check_grep "cgroup OOM: the wrapper calls it oom" '"kind": "oom"' rcg/stages/k/0/failed.json
	cairn why rcg k/0 >why.txt 2>&1
	check_grep "cgroup OOM: why says the OOM killer did it" "oom on attempt 1: killed by the kernel's OOM killer \(its memory cgroup counted 1 kill\)" why.txt
	check_grep "cgroup OOM: ... and what to do (its stage has no mem)" "give its stage a mem it fits in" why.txt
else
	skip "cgroup OOM: the wrapper calls it oom" "no v1 memory cgroup can be made here"
fi

# --- logs -f: follows a task from before it starts to its end ---
cat >follow.ini <<EOF
[stage first]
command = sleep 1
[stage slow]
after = first
command = for i in 1 2 3; do echo tick \$i; sleep 0.3; done; test -e $T/pass
EOF
touch pass
for r in rfol rfol-failing; do
	cairn run follow.ini --run-dir $r >/dev/null 2>&1 &
	runner=$!
	for _ in $(seq 100); do [ -e $r/events.log ] && break; sleep 0.05; done
	timeout 60 cairn logs $r slow/0 -f >$r.txt 2>$r.err
	echo $? >$r.rc
	wait $runner
	rm -f pass
done
check_eq "logs -f: exit 0, the task ended done" "$(cat rfol.rc)" 0
check_eq "logs -f: waited for the task, then printed what it wrote, to its end" \
	"$(grep -c 'has not started: waiting for it' rfol.err) $(grep -c '^tick' rfol.txt) $(grep -c 'slow/0 done after' rfol.txt)" "1 3 1"
check_grep "logs -f: says how the task ended" "cairn logs: slow/0 done" rfol.err
check_eq "logs -f of a task that fails: exit 1" "$(cat rfol-failing.rc)" 1
check_grep "logs -f: ... with its last lines" "slow/0 exit .exit 1, signal 0." rfol-failing.txt
check_grep "logs -f: ... and says so" "cairn logs: slow/0 failed" rfol-failing.err

# --- runs: the run folders of a folder, a line each ---
mkdir -p lst/not-a-run
cairn run dag.ini --run-dir lst/zz-old >/dev/null 2>&1
cairn run dag.ini --run-dir lst/done >/dev/null 2>&1
cairn run dag.ini --run-dir lst/failed --set fail=2 >/dev/null 2>&1
cp -r lst/done lst/broken && echo '{"created": ' >lst/broken/run.json
# made first of all: listed first, whatever its name
python3 - lst/zz-old/run.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); j["created"] = "2020-01-01T00:00:00Z"
json.dump(j, open(sys.argv[1], "w"))
PY
cairn runs lst >runs.txt 2>&1
check_eq "runs: exit 0, failed runs and all" "$?" 0
check_eq "runs: the run folders, oldest first, the unreadable last; no other folder" \
	"$(awk 'NR > 1 && /^lst/ {print $1}' runs.txt | tr '\n' ' ')" "lst/zz-old lst/done lst/failed lst/broken "
check_grep "runs: a done run's line" "^lst/done +20[0-9-]+T[0-9:]+Z +local +done +9/9 +0$" runs.txt
check_grep "runs: a failed run, with its first failure under it" "^  failed a/2: exit 3 \(attempt 1\)$" runs.txt
check_grep "runs: a folder that cannot be read, and why" "^lst/broken .* unreadable" runs.txt
check_grep "runs: ... says why" "run.json" runs.txt
cairn runs lst --json >runs.json
cairn status lst/failed --json >st.json
check "runs --json: the counts of status --json" python3 - runs.json st.json <<'PY'
import json, sys
runs = {r["run"]: r for r in json.load(open(sys.argv[1]))}
st = json.load(open(sys.argv[2]))
r = runs["lst/failed"]
for k in ("tasks", "done", "failed", "running", "pending", "cancelled"):
    assert r[k] == sum(s[k] for s in st["stages"].values()), k
assert r["state"] == st["state"] == "failed" and r["name"] == "dag" and r["executor"] == "local"
assert r["first_failure"] == "failed a/2: exit 3 (attempt 1)", r
assert "first_failure" not in runs["lst/done"]
assert runs["lst/broken"]["state"] == "unreadable" and runs["lst/broken"]["error"]
assert runs["lst/zz-old"]["created"] == "2020-01-01T00:00:00Z"
PY
cairn runs lst/done >runs.txt
check_eq "runs RUN: that run alone" "$(grep -c '^lst/' runs.txt)" 1
# a run folder whose own spec.ini or run.json is damaged: said, with what the file was for
cp -r lst/done lst-nospec && rm lst-nospec/spec.ini
cairn status lst-nospec >out.txt 2>&1
check_eq "a run without its spec.ini: status fails (bad input)" "$?" 2
check_grep "... saying what to put back, from where" "lst-nospec/spec.ini: cannot read the spec.* \(the run folder is damaged: spec.ini is the run's own copy of its spec: put the pipeline's spec \(dag.ini\) back" out.txt
cairn status lst/broken >out.txt 2>&1
check_grep "a damaged run.json: said, with where the outputs still are" "run.json.* \(the run folder is damaged: run.json is the run's record .*stages/STAGE/N/out\)" out.txt
# a Slurm run that recorded no job ids (the fuzzer's: a memcpy from NULL)
cp -r lst/done lst-slurm && python3 - lst-slurm/run.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); j["executor"] = "slurm"; j["jobs"] = []
json.dump(j, open(sys.argv[1], "w"))
PY
cairn runs lst-slurm >runs.txt 2>&1
check_eq "runs: a Slurm run without job ids is listed" "$?,$(grep -c '^lst-slurm .* slurm ' runs.txt)" "0,1"
# a done.json whose manifest says absurd sizes: status --usage neither wraps nor fails
cp -r lst/done lst-bytes && python3 - lst-bytes/stages/a/0/done.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["manifest"] = [dict(j["manifest"][0], bytes=2**63 - 1), dict(j["manifest"][0], bytes=-5), dict(j["manifest"][0], bytes=2**63 - 1)]
json.dump(j, open(sys.argv[1], "w"))
PY
cairn status lst-bytes --usage --json >use.json 2>&1
check "status --usage: manifest sizes past the largest number add up to the largest, not below 0" python3 -c "
import json; u = json.load(open('use.json'))['usage']['a']; assert u['output_bytes'] == 2**63 - 1, u"
cairn runs lst/nowhere >runs.txt 2>&1
check_eq "runs: a folder that is not there is bad usage" "$?" 2
check_grep "runs: ... that names it" "lst/nowhere: no such folder" runs.txt
(cd lst/not-a-run && cairn runs) >runs.txt 2>&1
check_eq "runs: no runs folder here is bad usage" "$?" 2
check_grep "runs: ... that says where run folders go" "no runs folder here" runs.txt
(cd lst && cairn runs not-a-run) >runs.txt 2>&1
check_grep "runs: a folder without runs says so" "no run folders in not-a-run" runs.txt
mkdir -p lat && cp -r lst lat/runs
(cd lat && cairn status) >st.txt 2>st.err
check_eq "status without RUN: exit 0" "$?" 0
check_grep "status without RUN: the newest run folder in runs/ (the broken and the old passed over)" "the newest run, runs/failed$" st.err
check_grep "status without RUN: ... its counts" "^run dag: failed \(6 of 9 tasks done\)$" st.txt
(cd lat && cairn why a/2) >why.txt 2>why.err
check_eq "why STAGE/TASK without RUN: exit 0" "$?" 0
check_grep "why STAGE/TASK without RUN: that task of the newest run" "^a/2: failed: exit 3 on attempt 1" why.txt
check_grep "why STAGE/TASK without RUN: ... named on stderr" "the newest run, runs/failed$" why.err
(cd lat && cairn logs a/2 -n 2) >log.txt 2>/dev/null
check_grep "logs STAGE/TASK without RUN: that task's log" "a/2 exit \(exit 3" log.txt
(cd lat && cairn graph) >g.dot 2>/dev/null
check_grep "graph without RUN: the newest run's, its failed stage red" '"a" \[label="a\\n4 tasks\\n3/4 done, failed", fillcolor="#f4a6a6"\]' g.dot
(cd lat && cairn why runs/failed) >why.txt 2>&1
check_eq "why RUN without a task: bad usage" "$?" 2
check_grep "why RUN without a task: ... asks for one" "name a STAGE/TASK of runs/failed" why.txt
(cd lst/not-a-run && cairn status) >st.txt 2>&1
check_eq "status without RUN, no runs folder here: bad usage" "$?" 2
check_grep "status without RUN, no runs folder here: ... says so" "no RUN given, and no runs folder here" st.txt

# --- many failures at a glance: their kinds, most first ---
cat >kinds.ini <<'EOF'
[pipeline]
name = kinds
[stage a]
array = 12
command = case ${task} in 1|2|3|4|5|6|7) exit 3;; 8|9) exit 4;; 10) kill -9 $$;; *) true;; esac
EOF
cairn run kinds.ini --run-dir kinds >out.txt 2>&1
check_grep "failed by kind: counted, most first" "^  failed by kind: 7 exit 3, 2 exit 4, 1 signal 9$" out.txt
cairn status kinds --json >st.json
check "failed by kind: in status --json" python3 - st.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["failed_by_kind"] == {"exit 3": 7, "exit 4": 2, "signal 9": 1}, j
PY
cairn status r1 --json >st.json
check "failed by kind: not in a run without failures" bash -c "! grep -q failed_by_kind st.json"
cairn why kinds a >why.txt 2>&1
check_eq "why STAGE: the first 5 tasks not done explained" "$(grep -c '^  resume would' why.txt)" 5
check_grep "why STAGE: ... the others counted" "^and 5 more not done and valid .*cairn why .*/kinds a --all" why.txt
check_grep "why STAGE: ... grouped by why, each with its tasks" "^  2 failed, exit 3: a/6 a/7$" why.txt
check_grep "why STAGE: ... another kind" "^  1 failed, signal 9: a/10$" why.txt
check_grep "why STAGE: ... the stage's line last" "^a: 2 of 12 tasks done and valid; resume would run 10$" why.txt
cairn why kinds a --all >why.txt 2>&1
check_eq "why STAGE --all: every task explained" "$(grep -c '^  resume would' why.txt)" 10

# --- --until: a stage and what it needs, the rest held for a later resume ---
cat >until.ini <<EOF
[pipeline]
name = until
[stage a]
command = test \${task} != \${param.fail} || exit 3
    echo a\${task} >> $T/ucount
    echo a\${task} > \${out}/a
array = 3
[stage b]
after = a
command = echo b\${task} >> $T/ucount
    tr a b < \${in.a[task]}/a > \${out}/b
array = 3
[stage side]
command = echo side >> $T/ucount
[stage c]
after = b, side
command = echo c >> $T/ucount
[params]
fail = -1
EOF
cairn run until.ini --until b --run-dir rut --dry-run >plan.txt 2>&1
check_grep "until --dry-run: held back, counted" "would run 6 tasks, skip 2, wait for 0" plan.txt
check_grep "until --dry-run: ... and why" "1 beyond --until" plan.txt
: >ucount
cairn run until.ini --until b --run-dir rut >out.txt 2>&1
check_eq "until: exit 0 when its stages are done" "$?" 0
check_eq "until: ran a and b only, not the stage beside nor after" "$(sort ucount | tr '\n' ' ')" "a0 a1 a2 b0 b1 b2 "
check_grep "until: the run stays pending" "run until: pending \(6 of 8 tasks done\)" out.txt
check_grep "until: says what it held back and how to go on" "until b: all done; 2 tasks beyond it held back, .cairn resume .*/rut. runs them" out.txt
check_grep "until: events.log says so" "until b: 2 tasks of other stages held back" rut/events.log
cairn why rut c/0 >why.txt
check_grep "until: why of a held task: resume runs it" "resume would run it" why.txt
cairn run until.ini --until b,nope --run-dir rut2 >out.txt 2>&1
check_eq "until: a name that is no stage is bad usage" "$?" 2
check_grep "until: ... naming it and the stages" "'nope' is no stage of until \(its stages: a, b, side, c\)" out.txt
check "until: ... and no run folder is made" test ! -e rut2
cairn run until.ini --until sdie --dry-run >out.txt 2>&1
check_grep "until: a typo of a stage's name: did you mean" "'sdie' is no stage of until, did you mean 'side'\?" out.txt
: >ucount
cairn resume rut --until side >out.txt 2>&1
check_eq "resume --until: exit 0" "$?" 0
check_eq "resume --until: ran side alone" "$(cat ucount)" "side"
: >ucount
cairn resume rut >out.txt 2>&1
check_eq "resume: the held tasks run, nothing else" "$?:$(cat ucount)" "0:c"
cairn run until.ini --until a --set fail=1 --run-dir rut3 >out.txt 2>&1
check_eq "until: a failed task of its stages is exit 1" "$?" 1
check_grep "until: ... said as ever" "failed a/1: exit 3" out.txt

# --- resume --rerun: done tasks again; after them only what came out different ---
cairn resume rut --rerun a/1,side --dry-run >plan.txt 2>&1
check_grep "rerun --dry-run: counted, with why" "2 done, 1 asked by --rerun" plan.txt
: >ucount
cairn resume rut --rerun a/1,side >out.txt 2>&1
check_eq "rerun: exit 0; a/1 and side ran again, b/1 and c not: their inputs came out the same" \
	"$?:$(sort ucount | tr '\n' ' ')" "0:a1 side "
check_grep "rerun: b/1 kept as up to date" "up to date b/1" rut/events.log
check_grep "rerun: events.log says what was asked" "rerun a/1,side: 2 done tasks run again" rut/events.log
check "rerun: the rerun file is gone once it ran" test ! -e rut/stages/a/1/rerun
check_grep "rerun: a/1 is on its second attempt" '"attempt": 2' rut/stages/a/1/done.json
cairn resume rut --rerun a/7 >out.txt 2>&1
check_eq "rerun: a task that is not there is bad usage" "$?" 2
check_grep "rerun: ... naming it and the stages" "no stage or task a/7 in run until \(stages: a\[3\]" out.txt
cairn why rut sid/0 >out.txt 2>&1
check_grep "why: a typo of a stage's name: did you mean" "no stage or task sid/0 in run until, did you mean 'side'\?" out.txt
cairn stauts rut >out.txt 2>&1
check_grep "a typo of a command: did you mean" "'stauts' is not a command, did you mean 'status'\?" out.txt
cairn run until.ini --dryrun >out.txt 2>&1
check_eq "a typo of an option: bad usage" "$?" 2
check_grep "a typo of an option: did you mean" "cairn run: unexpected '--dryrun', did you mean '--dry-run'\?" out.txt
cairn logs rut a/0 --folow >out.txt 2>&1
check_grep "a typo of an option: did you mean (from the usage's words)" "did you mean '--follow'\?" out.txt
cairn status rut --json=1 >out.txt 2>&1
check_grep "a value given to a flag: says it takes none" "cairn status: option '--json' takes no value: write '--json' alone" out.txt
cairn why rut a/0 --lines >out.txt 2>&1
check_grep "an option's value left out: says it needs one" "cairn why: option '--lines' needs a value" out.txt
cairn logs rut a/0 -n >out.txt 2>&1
check_grep "a short option's value left out: says it needs one" "cairn logs: option '-n' needs a value" out.txt
cairn why rut a/0 --lines=1 >out.txt 2>&1
check_eq "why --lines=N is --lines N" "$?" 0
cairn resume rut --rerun "" >out.txt 2>&1
check_eq "rerun: nothing named is bad usage, not a plain resume" "$?" 2

# --- a task waiting for cores is not passed by later ones ---
# 2 cores: small/0 and small/1 run; when small/0 ends, wide (cpus = 2) is
# first in line and waits for small/1, and more/0, though it would fit, waits
# behind it (before, more's 4 tasks all went first).
cat >wide.ini <<EOF
[stage small]
array = 2
command = sleep 0.\${task}5
[stage wide]
cpus = 2
command = sleep 0.5
[stage more]
array = 4
command = sleep 0.5
EOF
cairn run wide.ini --run-dir rwide --jobs 2 >out.txt 2>&1
check_eq "a wide task first in line is not passed by smaller ones" \
	"$(grep -o 'start [a-z]*/[0-9]' rwide/events.log | head -3 | sort | tr '\n' ' ')" "start small/0 start small/1 start wide/0 "

# --- the local executor keeps the tasks' mem within --mem ---
# Each task holds a lock folder while it runs: a second task at once finds
# it taken and says so.
cat >mem.ini <<EOF
[stage m]
array = 4
mem = \${param.mem}
command = mkdir $T/memlock 2>/dev/null || echo overlap >> $T/memover
    sleep 0.4
    rmdir $T/memlock 2>/dev/null || true

[params]
mem = 600M
EOF
cairn run mem.ini --jobs 4 --mem 1G --run-dir rmem1 >out.txt 2>&1
check_eq "mem: 4 tasks of 600M under --mem 1G: exit 0" "$?" 0
check "mem: ... one at a time (no two held the lock)" test ! -e memover
check_grep "mem: events.log says the budget" "4 slots, 1024 MB of memory" rmem1/events.log
cairn run mem.ini --jobs 4 --mem 2400M --run-dir rmem2 >out.txt 2>&1
check_eq "mem: under --mem 2400M: exit 0" "$?" 0
check "mem: ... several at once" test -e memover
rm -f memover
cairn run mem.ini --jobs 4 --mem 1G --set mem=4G --run-dir rmem3 >out.txt 2>&1
check_eq "mem: tasks asking more than --mem: exit 0, they still run" "$?" 0
check_grep "mem: ... alone, and cairn says so" "note: stage 'm' asks mem = 4.00 GiB a task, more than the 1.00 GiB its tasks may hold here at once \(--mem\): they run alone, one at a time" out.txt
check "mem: ... one at a time" test ! -e memover
cairn run mem.ini --mem 4Q --dry-run >out.txt 2>&1
check_grep "mem: a bad --mem is bad usage, said" "cairn: --mem 4Q: want a size like 4G or 512M" out.txt
cairn run mem.ini --jobs 2 --run-dir rmem4 >out.txt 2>&1
check_grep "mem: by default the budget is this machine's memory" \
	"2 slots, $(awk '/^MemTotal/ {print int($2 / 1024)}' /proc/meminfo) MB of memory" rmem4/events.log

# --- dry run creates nothing; graph; help ---
cairn run dag.ini --dry-run --run-dir r-dry >plan.txt 2>&1
check "dry run: creates no run folder" test ! -e r-dry
check_grep "dry run: prints the plan" "would run 9 tasks, skip 0" plan.txt
SLURM_CONF=$T/no-slurm.conf cairn run dag.ini --executor slurm --dry-run --run-dir r-dry >plan.txt 2>&1
check_eq "dry run on Slurm, no cluster here: exit 0, no run folder" "$?:$(test -e r-dry && echo made)" "0:"
check_grep "dry run on Slurm: the sbatch lines, one per stage" "^#3: sbatch --job-name=cairn.RUN.[0-9a-f]+.c.2 --array=0 .*--dependency=afterok:#2 --kill-on-invalid-dep=yes RUN/slurm/c.sh$" plan.txt
check_grep "dry run on Slurm: ... with MaxArraySize assumed, said" "controller did not answer here: MaxArraySize taken as 1001" plan.txt
cairn graph dag.ini >g.dot
check_grep "graph: one-to-one edge" '"a" -> "b" \[label="1:1"\]' g.dot
check_grep "graph: gather edge" '"b" -> "c";' g.dot
cairn graph r2 >g.dot
check_grep "graph of a run: coloured by state" 'fillcolor="#a8e0a8"' g.dot
for c in run resume status runs why graph logs cancel exec; do
	cairn $c --help >help.txt 2>&1 && grep -q "example:" help.txt || not_ok "--help of $c has an example"
done
ok "--help on every command, each with an example"
