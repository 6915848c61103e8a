# temp = yes: a stage's outputs released (out/ emptied, released.json) once
# every task that reads them is done, by the wrapper of the last reader; a
# resume that reruns a reader runs the released inputs again first, up a
# chain of temp stages; a reader that failed keeps its inputs; specs that
# misuse temp are refused. The real cairn on the local executor.
source "$(dirname "$0")/../lib.sh"
cd "$T"

# a[4] (temp) -> b[4] one-to-one (temp) -> c gathers b; d reads all of a
# and runs after b too (so d's old done.json must not count while a resume
# runs it again: the `pending` mark). Every task appends its name to count.
cat >tmp.ini <<EOF
[pipeline]
name = tmp

[params]
dfail = 0

[stage a]
array = 4
temp = yes
command = echo a\${task} >> $T/count
    echo a\${task} > \${out}/a
    head -c 100000 /dev/zero > \${out}/blob

[stage b]
array = 4
after = a
temp = yes
command = echo b\${task} >> $T/count
    tr a b < \${in.a[task]}/a > \${out}/b

[stage c]
after = b
command = echo c >> $T/count
    cat \${in.b/b} > \${out}/c

[stage d]
after = a, b
command = echo d >> $T/count
    test \${param.dfail} = 0
    cat \${in.a/a} > \${out}/d
EOF
runs() { grep -c "^$1\$" "$T/count" 2>/dev/null || true; }
released() { ls "$1"/stages/"$2"/*/released.json 2>/dev/null | wc -l; }
empty_outs() { # RUN STAGE: how many of the stage's out/ folders are empty
	local n=0 d
	for d in "$1"/stages/"$2"/*/out; do [ -z "$(ls -A "$d")" ] && n=$((n + 1)); done
	echo $n
}

# --- a run: both temp stages released once their readers are done ---
: >count
check_rc "run with temp stages: exit 0" 0 cairn run tmp.ini --run-dir r1
check_eq "c gathered b in order" "$(tr '\n' ' ' <r1/stages/c/0/out/c)" "b0 b1 b2 b3 "
check_eq "d read all of a" "$(tr '\n' ' ' <r1/stages/d/0/out/d)" "a0 a1 a2 a3 "
check_eq "a: every task released" "$(released r1 a)" 4
check_eq "a: every out/ emptied" "$(empty_outs r1 a)" 4
check_eq "b: every task released" "$(released r1 b)" 4
check_eq "c and d kept (not temp)" "$(released r1 c)$(released r1 d)$(cat r1/stages/c/0/out/c | wc -l)" "004"
check "a's done.json stays (the task is done)" test -f r1/stages/a/2/done.json
check_eq "released.json: the bytes that went (the manifest's)" \
	"$(python3 -c "import json; print(json.load(open('r1/stages/a/1/released.json'))['bytes'])")" 100003
check_grep "released.json: the reader that released it" '"by": "(b/1|d/0)"' r1/stages/a/1/released.json
check_grep "events.log: a release line" "released a/3: 2 files, 100003 bytes" r1/events.log
cairn status r1 >st.txt
check_grep "status: says which stages were released" "released \(temp = yes, their readers done\): a 4 of 4, b 4 of 4" st.txt
cairn graph r1 >graph.dot
check_grep "graph: a temp stage dashed, with how much was released" '"a" \[label="a\\n4 tasks, temp\\n4/4 done, released", fillcolor="#a8e0a8", style="rounded,filled,dashed"\]' graph.dot
check_grep "graph: the others as before" '"c" \[label="c\\n1 task\\n1/1 done", fillcolor="#a8e0a8"\];' graph.dot
cairn status r1 --json >st.json
check_grep "status --json: released among the done" '"a": \{"tasks": 4, "done": 4, "failed": 0, "running": 0, "pending": 0, "cancelled": 0, "released": 4\}' st.json
check_grep "status --json: no released key where none was" '"c": \{"tasks": 1, "done": 1, "failed": 0, "running": 0, "pending": 0, "cancelled": 0\}' st.json
cairn status r1 --usage >use.txt
check_grep "status --usage: a's outputs, none left on disk" "^a +4 .* 390\.6 KiB +0 B  cpus 1" use.txt
check_grep "status --usage: c's kept" "^c +1 .* 12 B +12 B  cpus 1" use.txt
cairn status r1 --usage --json >use.json
check "status --usage --json: output and released bytes" python3 -c "
import json; u = json.load(open('use.json'))['usage']
assert u['a']['output_bytes'] == u['a']['released_bytes'] == 400012, u['a']
assert u['c']['output_bytes'] == 12 and u['c']['released_bytes'] == 0, u['c']"
cairn why r1 a/2 >why.txt
check_grep "why a released task: when, how much, by whom" "a/2: done: its outputs \(2 files, 100003 bytes\) were released at .*, once (b/2|d/0) and every other task that reads them were done" why.txt
check_grep "why a released task: resume skips it" "resume would skip it" why.txt
cairn why r1 a >why.txt
check_grep "why STAGE: released tasks counted, not explained one by one" "a: 4 of 4 tasks done and valid \(4 of them released" why.txt

# --- resume of a done run: released tasks are not run again ---
: >count
check_rc "resume of a done run with released tasks: exit 0" 0 cairn resume r1
check_eq "resume: nothing ran" "$(wc -l <count)" 0

# --- a reader runs again: its released inputs first ---
# b/2 runs again; d runs after b, so d may run again too (if b/2 comes out
# different), and d reads all of a and runs after all of b: every a and b
# task is needed again. c and d find themselves up to date (their inputs
# came out the same) and keep their done.json.
cairn resume r1 --rerun b/2 --dry-run >plan.txt
check_eq "dry run: all of a and b needed again" "$(grep -c '^ *4 needed again$' plan.txt)" 2
: >count
check_rc "resume --rerun b/2: exit 0" 0 cairn resume r1 --rerun b/2
check_eq "every a ran again (d may read them)" "$(runs a0)$(runs a1)$(runs a2)$(runs a3)" 1111
check_eq "b ran again; c and d were up to date" "$(runs b2)$(runs b0)$(runs c)$(runs d)" 1100
check_grep "events: d kept its done.json" "up to date d/0: kept its done.json" r1/events.log
check_eq "d's result is there" "$(tr '\n' ' ' <r1/stages/d/0/out/d)" "a0 a1 a2 a3 "
check_eq "a released again after" "$(released r1 a)$(empty_outs r1 a)" 44
check "no pending mark left" test -z "$(ls r1/stages/*/*/pending 2>/dev/null)"

: >count
check_rc "resume --rerun c: exit 0" 0 cairn resume r1 --rerun c
check_eq "c pulls all of b back, and b all of a" "$(runs a0)$(runs a3)$(runs b0)$(runs b3)$(runs c)" 11111
check_eq "c's result the same" "$(tr '\n' ' ' <r1/stages/c/0/out/c)" "b0 b1 b2 b3 "
check_eq "all released again" "$(released r1 a)$(released r1 b)$(empty_outs r1 b)" 444

# --- a task started by hand whose input was released: said, and resume mends ---
touch r1/stages/b/1/rerun
check_rc "cairn exec of b/1, its input a/1 released: exit 1" 1 cairn exec r1 b 1
check_grep "the wrapper says which input and what to do" "b/1: 1 of its inputs \(a/1\) were released \(temp = yes\): .cairn resume .*/r1. runs them again first" "$T/.out"
check_grep "failed.json: kind dependency, with that message" '"kind": "dependency"' r1/stages/b/1/failed.json
: >count
check_rc "resume after it: exit 0" 0 cairn resume r1
check_eq "resume ran a/1, then b/1" "$(runs a1)$(runs b1)" 11
check_eq "and released again" "$(released r1 a)$(released r1 b)" 44

# --- a chain of one-to-one temp stages: only what the rerun task reads ---
cat >chain.ini <<EOF
[stage p]
array = 3
temp = yes
command = echo p\${task} >> $T/count; echo p\${task} > \${out}/p

[stage q]
array = 3
after = p
temp = yes
command = echo q\${task} >> $T/count; tr p q < \${in.p[task]}/p > \${out}/q

[stage r]
array = 3
after = q
command = echo r\${task} >> $T/count; tr q r < \${in.q[task]}/q > \${out}/r
EOF
check_rc "chain: run, exit 0" 0 cairn run chain.ini --run-dir r3
check_eq "chain: p and q released" "$(released r3 p)$(released r3 q)$(released r3 r)" 330
: >count
check_rc "chain: resume --rerun r/1, exit 0" 0 cairn resume r3 --rerun r/1
check_eq "chain: p/1, q/1, r/1 ran, in that order, and nothing else" "$(tr '\n' ' ' <count)" "p1 q1 r1 "
check_eq "chain: r/1's result" "$(cat r3/stages/r/1/out/r)" r1
check_eq "chain: released again" "$(released r3 p)$(released r3 q)$(empty_outs r3 q)" 333

# r/1 runs again only because p/1 does, but r's command changed too: r/1
# must run, so q/1 (released, itself run only because p/1 does) must
# really run, not stay released because its key came out the same.
sed 's/tr q r/tr q R/' chain.ini >chain2.ini
: >count
check_rc "chain: resume --spec (r changed) --rerun p/1, exit 0" 0 cairn resume r3 --spec chain2.ini --rerun p/1
check_eq "chain: every task ran (every r reads its q)" "$(sort count | tr '\n' ' ')" "p0 p1 p2 q0 q1 q2 r0 r1 r2 "
check_eq "chain: r's new results" "$(cat r3/stages/r/*/out/r | tr '\n' ' ')" "R0 R1 R2 "

# temp given after the fact (resume --spec): the keys do not change, nothing
# runs, and resume releases what every reader is done with
grep -v '^temp = yes$' chain.ini >chain0.ini
check_rc "chain without temp: run, exit 0" 0 cairn run chain0.ini --run-dir r5
check_eq "chain without temp: nothing released" "$(released r5 p)$(released r5 q)" 00
: >count
check_rc "resume --spec with temp = yes: exit 0" 0 cairn resume r5 --spec chain.ini
check_eq "resume --spec with temp: nothing ran" "$(wc -l <count)" 0
check_eq "resume --spec with temp: p and q released by resume" "$(released r5 p)$(released r5 q)$(empty_outs r5 p)" 333
check_grep "events: by resume" "released q/2: 1 file, 3 bytes \(its readers are done; by resume\)" r5/events.log

# --- a reader that fails keeps its inputs; the resume that fixes it releases ---
: >count
check_rc "run where d fails: exit 1" 1 cairn run tmp.ini --run-dir r2 --set dfail=1
check_eq "a kept: d, its reader, is not done" "$(released r2 a)$(empty_outs r2 a)" 00
check_eq "b kept too: d runs after it" "$(released r2 b)" 0
: >count
check_rc "resume with d fixed: exit 0" 0 cairn resume r2 --set dfail=0
check_eq "only d ran" "$(tr '\n' ' ' <count)" "d "
check_eq "then a and b released" "$(released r2 a)$(released r2 b)" 44

# a `pending` mark left by a run stopped before its task started: the next
# resume, which does not run that task, clears it, so the inputs still go
check_rc "run where d fails, again: exit 1" 1 cairn run tmp.ini --run-dir r4 --set dfail=1
touch r4/stages/b/1/pending
check_rc "resume with d fixed and a stale pending mark on b/1: exit 0" 0 cairn resume r4 --set dfail=0
check_eq "a/1 released all the same" "$(released r4 a)" 4
check "the stale mark is gone" test ! -e r4/stages/b/1/pending

# --- outputs of a released task changed by hand: no matter, nothing reads them ---
echo junk >r2/stages/a/0/out/junk
: >count
check_rc "resume after a file appeared in a released out/: exit 0" 0 cairn resume r2
check_eq "nothing ran for it" "$(wc -l <count)" 0

# --- temp misused ---
cat >x.ini <<EOF
[stage a]
temp = yes
command = true

[stage b]
after = a
temp = yes
command = true
EOF
check_rc "temp stage that nothing reads: refused (exit 2)" 2 cairn run x.ini --run-dir rx
check_grep "the message names the stage and the fix" "stage 'b': temp = yes, but no stage runs after it: its outputs are the run's result; drop temp" "$T/.out"
sed 's/^temp = yes$/temp = maybe/' tmp.ini >y.ini
check_rc "temp = maybe: refused" 2 cairn run y.ini --run-dir ry
check_grep "the message says what temp takes" "temp = maybe: want yes or no" "$T/.out"
check "a refused spec made no run folder" test ! -e rx -a ! -e ry

exit $failed
