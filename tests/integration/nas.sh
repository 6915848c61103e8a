#!/usr/bin/env bash
# cairn-nas by hand and configs/nastransfer.ini end to end on a Fashion-MNIST
# subset: proposals are valid, new and reproducible, trials record what they
# trained, the analysis matches the trials, and bad input is exit 2 with a
# message that names it.
source "$(dirname "$0")/../lib.sh"
idx=/usr/share/datasets/fashion-mnist
if [ ! -f $idx/t10k-images-idx3-ubyte.gz ]; then
	skip nas "dataset-fashion-mnist not installed"
	exit 0
fi
export OMP_NUM_THREADS=1
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
cairn-dataset import-idx --images $idx/t10k-images-idx3-ubyte.gz --labels $idx/t10k-labels-idx1-ubyte.gz --out $T/all.ds >/dev/null
cairn-dataset split $T/all.ds --fraction 0.2 --seed 1 --out $T/val.ds --rest $T/rest.ds >/dev/null
cairn-dataset split $T/rest.ds --fraction 0.1 --seed 1 --out $T/proxy.ds --rest $T/unused.ds >/dev/null
S='cnn:widths={8|16}-{8|16|32},convs={1|2},fc={0|32}'

# sample: distinct valid architectures, the same for the same seed
check_rc "sample" 0 cairn-nas sample --space "$S" --like $T/proxy.ds --count 5 --seed 3 --out $T/s
check_grep "the table lists each proposal" "^ +4  [0-9,]+ +[0-9]+ params .* cnn:widths=" $T/.out
check_eq "five distinct canonical architectures" \
	"$(json $T/s/proposals.json 'len(set(p["arch"] for p in d["proposals"]))')" 5
check_eq "each arch renders its choices" "$(json $T/s/proposals.json '
all(p["arch"].startswith("cnn:widths=%s-%s,convs=%s,fc=%s," % (["8","16"][p["choices"][0]],
    ["8","16","32"][p["choices"][1]], ["1","2"][p["choices"][2]], ["0","32"][p["choices"][3]]))
    for p in d["proposals"])')" True
check_rc "sample again" 0 cairn-nas sample --space "$S" --like $T/proxy.ds --count 5 --seed 3 --out $T/s2
check "same seed, same proposals" cmp $T/s/proposals.json $T/s2/proposals.json
check "a table for people" grep -q "^index	choices	params	mflops	arch" $T/s/proposals.tsv

# trial: records the proposal, runs the trainer with {arch} put in
for i in 0 1 2 3 4; do
	cairn-nas trial --proposals $T/s --index $i --out $T/p$i -- cairn-train-classifier \
		--arch {arch} --train $T/proxy.ds --test $T/val.ds --epochs 1 --threads 1 --out $T/p$i >$T/p$i.log 2>&1 ||
		not_ok "trial $i (exit $?)"
done
check_eq "the trial trained its proposal" "$(json $T/p2/metrics.json 'd["arch"]')" \
	"$(json $T/s/proposals.json 'd["proposals"][2]["arch"]')"
check_eq "proposal.json records index and method" "$(json $T/p2/proposal.json 'd["index"], d["method"]')" "(2, 'random')"

# propose: from the trials, never one of them
check_rc "propose" 0 cairn-nas propose --space "$S" --like $T/proxy.ds --count 3 --seed 1 --out $T/r1 $T/p0 $T/p1 $T/p2 $T/p3 $T/p4
check_eq "surrogate proposals are new" "$(python3 -c "
import json
tried = {json.load(open('$T/p%d/metrics.json' % i))['arch'] for i in range(5)}
new = [p['arch'] for p in json.load(open('$T/r1/proposals.json'))['proposals']]
print(len(new), len(set(new)), len(tried & set(new)), json.load(open('$T/r1/proposals.json'))['method'])")" "3 3 0 surrogate"
cairn-nas propose --space "$S" --like $T/proxy.ds --count 3 --seed 1 --out $T/r1b $T/p0 $T/p1 $T/p2 $T/p3 $T/p4 >/dev/null
check "propose is reproducible" cmp $T/r1/proposals.json $T/r1b/proposals.json

# top: the best trials' architectures
check_rc "top" 0 cairn-nas top --count 2 --out $T/top $T/p0 $T/p1 $T/p2 $T/p3 $T/p4
check_eq "top takes the two best" "$(json $T/top/proposals.json '[p["arch"] for p in d["proposals"]]')" "$(python3 -c "
import json
t = sorted((json.load(open('$T/p%d/metrics.json' % i)) for i in range(5)), key=lambda m: -m['test_accuracy'])
print([m['arch'] for m in t[:2]])")"

# analyze: numbers that follow from the trials
for i in 0 1; do
	cairn-nas trial --proposals $T/top --index $i --out $T/t$i -- cairn-train-classifier \
		--arch {arch} --train $T/rest.ds --test $T/val.ds --epochs 1 --threads 1 --out $T/t$i >/dev/null 2>&1
done
for i in 0 1 2; do
	cairn-nas trial --proposals $T/s --index $i --out $T/q$i -- cairn-train-classifier \
		--arch {arch} --train $T/rest.ds --test $T/val.ds --epochs 1 --threads 1 --out $T/q$i >/dev/null 2>&1
done
check_rc "analyze" 0 cairn-nas analyze --out $T/an --proxy $T/p0 $T/p1 $T/p2 $T/p3 $T/p4 --target $T/q0 $T/q1 $T/q2 $T/t0 $T/t1
check_grep "the summary gives the rank agreement" "^ranks: Kendall's tau-b" $T/.out
check_eq "the analysis agrees with the trials" "$(python3 -c "
import json
acc = lambda d: json.load(open('$T/' + d + '/metrics.json'))
a = json.load(open('$T/an/analysis.json'))
proxy = {acc('p%d' % i)['arch']: acc('p%d' % i)['test_accuracy'] for i in range(5)}
target = {acc(d)['arch']: acc(d)['test_accuracy'] for d in ('q0', 'q1', 'q2', 't0', 't1')}
both = [k for k in target if k in proxy]
pick = max((acc(d) for d in ('t0', 't1')), key=lambda m: m['test_accuracy'])
rnd = [acc('q%d' % i)['test_accuracy'] for i in range(3)]
beats = (sum(r < pick['test_accuracy'] for r in rnd) + 0.5 * sum(r == pick['test_accuracy'] for r in rnd)) / 3
print(a['ranks']['paired'] == len(both), a['pick']['arch'] == pick['arch'],
      abs(a['pick']['beats_random'] - beats) < 1e-12, a['random_on_target']['count'] == 3,
      abs(a['random_on_target']['best'] - max(rnd)) < 1e-12)")" "True True True True True"
check "report.md and archs.tsv" test -s $T/an/report.md -a -s $T/an/archs.tsv

# bad input: exit 2, named
check_rc "a space without slots" 2 cairn-nas sample --space 'cnn:widths=8-16' --like $T/proxy.ds --count 2 --out $T/x
check_grep "says what a space needs" "no \{a\|b\|...\} choice slot" $T/.out
check_rc "more than the space holds" 2 cairn-nas sample --space 'cnn:widths={8|16}-16' --like $T/proxy.ds --count 3 --out $T/x
check_grep "says how many there are" "the space has 2 architectures, 0 tried: 3 more cannot be proposed" $T/.out
check_rc "a space of invalid architectures" 2 cairn-nas sample --space 'cnn:widths={8|16}-16-16-16-16-16,convs=1' --like $T/proxy.ds --count 1 --out $T/x
check_grep "says why they are invalid" "invalid architectures skipped, the last: .*arch 'cnn:widths=" $T/.out
check_rc "a missing --like shard" 2 cairn-nas sample --space "$S" --like $T/none.ds --count 1 --out $T/x
check_grep "names the shard" "none.ds" $T/.out
check_rc "an index past the proposals" 2 cairn-nas trial --proposals $T/s --index 5 --out $T/x -- true {arch}
check_grep "gives the range" "--index 5, but .* has 5 proposals \(0..4\)" $T/.out
check_rc "a command without {arch}" 2 cairn-nas trial --proposals $T/s --index 0 --out $T/x -- true
check_grep "says so" "no \{arch\} to put the architecture in" $T/.out
check_rc "no proposals folder" 2 cairn-nas trial --proposals $T/nowhere --index 0 --out $T/x -- true {arch}
check_grep "names the file" "nowhere/proposals.json" $T/.out
mkdir -p $T/edited && python3 -c "
import json
d = json.load(open('$T/s/proposals.json'))
d['proposals'][1]['choices'][1] = 7
json.dump(d, open('$T/edited/proposals.json', 'w'))"
check_rc "a hand-edited choice out of its slot" 2 cairn-nas trial --proposals $T/edited --index 0 --out $T/x -- true {arch}
check_grep "names the proposal and the choice" "edited/proposals.json: proposal 1: choice 2 is not an index in 0..2" $T/.out
mkdir -p $T/empty && printf '{"version": 1, "space": "%s", "method": "random", "proposals": []}' "$S" >$T/empty/proposals.json
check_rc "no proposals at all" 2 cairn-nas trial --proposals $T/empty --index 0 --out $T/x -- true {arch}
check_grep "says so, not 0..-1" "empty has no proposals$" $T/.out
check_rc "a trainer that is not there" 127 cairn-nas trial --proposals $T/s --index 0 --out $T/x -- no-such-trainer {arch}
check_rc "the trainer's failure is the trial's" 3 cairn-nas trial --proposals $T/s --index 0 --out $T/x -- sh -c 'exit 3' {arch}
mkdir -p $T/unfinished && cp $T/p0/proposal.json $T/unfinished/
check_rc "a trial without metrics" 2 cairn-nas propose --space "$S" --like $T/proxy.ds --count 1 --out $T/x $T/p0 $T/unfinished
check_grep "names the trial" "trial .*unfinished: no metrics.json \(did its training finish\?\)" $T/.out
check_rc "trials of another space" 2 cairn-nas propose --space 'cnn:widths={8|16}-{8|16|32},convs={1|2},fc={0|64}' --like $T/proxy.ds --count 1 --out $T/x $T/p0
check_grep "names both spaces" "was proposed from space 'cnn:widths=\{8\|16\}-\{8\|16\|32\},convs=\{1\|2\},fc=\{0\|32\}', not" $T/.out
check_rc "top of more than were trained" 2 cairn-nas top --count 6 --out $T/x $T/p0 $T/p1
check_grep "says how many" "--count 6, but the trials trained 2 architectures" $T/.out
check_rc "a trial folder given twice" 2 cairn-nas top --count 1 --out $T/x $T/p0 $T/p1 $T/p0/
check_grep "names it" "trial $T/p0/ is given twice \(also as $T/p0\)" $T/.out
check_rc "a proxy trial as a target trial" 2 cairn-nas analyze --out $T/x --proxy $T/p0 $T/p1 --target $T/q0 $T/./p1
check_grep "names it" "trial $T/./p1 is given twice \(also as $T/p1\)" $T/.out
check_rc "analyze without target trials" 2 cairn-nas analyze --out $T/x --proxy $T/p0
check_rc "an option of another command" 2 cairn-nas top --space "$S" --count 1 --out $T/x $T/p0
check_grep "is named" "--space is not an option of this command" $T/.out
# trial --keep-going: a failed training is recorded and the search goes on
echo '{"old": 1}' >$T/pf-metrics.json && mkdir -p $T/pf && cp $T/pf-metrics.json $T/pf/metrics.json
check_rc "a diverged training, kept going" 0 cairn-nas trial --keep-going --proposals $T/s --index 4 --out $T/pf -- sh -c 'exit 1' {arch}
check_grep "says it is recorded" "the trainer failed \(exit 1\): recorded in .*trial-failed.json" $T/.out
check "an old metrics.json is gone" test ! -e $T/pf/metrics.json
check_eq "trial-failed.json says how" "$(json $T/pf/trial-failed.json 'd["failure"], d["index"]')" "('exit 1', 4)"
check_rc "a trainer killed by a signal, kept going" 0 cairn-nas trial --keep-going --proposals $T/s --index 4 --out $T/pk -- sh -c 'kill -9 $$' {arch}
check_eq "recorded as a signal" "$(json $T/pk/trial-failed.json 'd["failure"]')" "signal 9 (Killed)"
check_rc "bad usage is not the architecture's failure" 2 cairn-nas trial --keep-going --proposals $T/s --index 4 --out $T/pu -- sh -c 'exit 2' {arch}
check "and records nothing" test ! -e $T/pu/trial-failed.json
cairn-nas trial --keep-going --proposals $T/s --index 4 --out $T/pt -- sh -c 'sleep 30' {arch} >$T/pt.log 2>&1 &
tpid=$!
sleep 1
kill -TERM $tpid
wait $tpid
check_eq "a trial stopped from outside stops as stopped" "$?" 143
check "and records nothing" test ! -e $T/pt/trial-failed.json
check_rc "propose learns past a failed trial" 0 cairn-nas propose --space "$S" --like $T/proxy.ds --count 3 --seed 1 --out $T/rf $T/p0 $T/p1 $T/p2 $T/p3 $T/pf
check_eq "and never proposes the failed architecture again" "$(python3 -c "
import json
failed = json.load(open('$T/pf/proposal.json'))['arch']
print(failed in [p['arch'] for p in json.load(open('$T/rf/proposals.json'))['proposals']])")" False
check_rc "top leaves it out" 0 cairn-nas top --count 4 --out $T/topf $T/p0 $T/p1 $T/p2 $T/p3 $T/pf
check_rc "top says when failures leave too few" 2 cairn-nas top --count 5 --out $T/x $T/p0 $T/p1 $T/p2 $T/p3 $T/pf
check_grep "and counts them" "the trials trained 4 architectures \(and 1 trainings failed\)" $T/.out
check_rc "analyze leaves it out" 0 cairn-nas analyze --out $T/anf --proxy $T/p0 $T/p1 $T/p2 $T/p3 $T/pf --target $T/q0 $T/q1 $T/q2 $T/t0 $T/t1
check_eq "and counts it" "$(json $T/anf/analysis.json 'd["failed_trainings"], d["proxy_trainings"]')" "(1, 5)"
for c in sample propose top trial analyze; do
	check_rc "$c --help" 0 cairn-nas $c --help
done

# the whole benchmark, small: every stage done, the report there, and a
# resume after a lost report reruns only the analysis
cd $T
check_rc "nastransfer.ini runs" 0 env OMP_NUM_THREADS=1 cairn run $ROOT/configs/nastransfer.ini --jobs 2 \
	--set images=$idx/t10k-images-idx3-ubyte.gz --set labels=$idx/t10k-labels-idx1-ubyte.gz \
	--set proxy=0.1 --set proxy_epochs=1 --set target_epochs=1 --set random=4 --set batch=2 --set picks=1
run=$(ls -d $T/runs/nastransfer-*)
check_grep "every task done" "done \(19 of 19 tasks done\)" $T/.out
check_eq "the analysis saw every training" "$(json $run/stages/analyze/0/out/analysis.json 'd["proxy_trainings"], d["target_trainings"], d["ranks"]["paired"]')" "(8, 5, 4)"
check_eq "the pick is the best on the proxy" "$(json $run/stages/analyze/0/out/analysis.json 'd["pick"]["arch"] == d["best_on_proxy"]["arch"]')" True
check_eq "round 2 learned from round 1" "$(json $run/stages/round2/0/out/proposals.json 'd["tried"]')" 6
rm $run/stages/analyze/0/out/report.md
check_rc "resume after a lost report" 0 cairn resume $run
check_grep "only the analysis reran" "done \(19 of 19 tasks done\)" $T/.out
check_eq "one attempt more, of analyze only" "$(grep -c 'attempt 2' $run/stages/*/*/log | grep -v ':0$' | sed 's|.*/stages/||')" "analyze/0/log:1"
check "the report is back" test -s $run/stages/analyze/0/out/report.md

# the same benchmark as Slurm job arrays on a private cluster: the same search
if [ "$(id -u)" -ne 0 ] || ! [ -x /usr/sbin/slurmctld ] || ! [ -x /usr/sbin/munged ]; then
	skip "nastransfer.ini on Slurm" "needs root, slurm-wlm and munge"
	exit $failed
fi
C=$T/cluster
on_exit "bash '$ROOT/tests/slurm/cluster.sh' stop '$C'"
if ! bash "$ROOT/tests/slurm/cluster.sh" start "$C" 2>"$T/start.err"; then
	not_ok "private cluster starts"
	sed 's/^/#   /' "$T/start.err"
	exit 1
fi
eval "$(bash "$ROOT/tests/slurm/cluster.sh" env "$C")"
check_rc "nastransfer.ini on Slurm" 0 env OMP_NUM_THREADS=1 cairn run $ROOT/configs/nastransfer.ini \
	--executor slurm --wait --run-dir $T/slurm-run \
	--set images=$idx/t10k-images-idx3-ubyte.gz --set labels=$idx/t10k-labels-idx1-ubyte.gz \
	--set proxy=0.1 --set proxy_epochs=1 --set target_epochs=1 --set random=4 --set batch=2 --set picks=1
check_grep "every task done" "done \(19 of 19 tasks done\)" $T/.out
check_eq "one job array per stage" "$(grep -c '"job_id"' $T/slurm-run/run.json)" 11
check_eq "the same architectures and accuracies as the local run" "$(python3 -c "
import json
a, b = (json.load(open(r + '/stages/analyze/0/out/analysis.json'))['archs'] for r in ('$run', '$T/slurm-run'))
print(a == b)")" True
exit $failed
