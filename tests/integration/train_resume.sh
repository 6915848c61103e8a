#!/usr/bin/env bash
# Resumable training (--state, nn/trainstate.h): a trainer killed with
# SIGKILL after some epochs and started again with the same state folder goes
# on after its last finished epoch and ends with the very model (same bytes)
# and figures of a training never stopped; a state of other settings, a
# damaged one and --state with --dist are refused (exit 2, named). In a
# pipeline, CAIRN_STATE outlives the task's attempts: a retry and a resume go
# on from it, a changed task key empties it, a done task has none left.
source "$(dirname "$0")/../lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cd "$T"

# kill_after_state DIR CMD...: run CMD, SIGKILL it once DIR/train.state exists
# (at least one epoch done), wait for it.
kill_after_state() {
	local dir=$1
	shift
	"$@" >/dev/null 2>&1 &
	local pid=$! i
	for i in $(seq 600); do
		[ -f "$dir/train.state" ] && break
		sleep 0.02
	done
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
}
json() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

# --- U-Net: killed, resumed, the same model ---
"$CAIRN_TESTS/test_segment" --write-shards $T 32 64 || {
	not_ok "test_segment --write-shards"
	exit 1
}
U="--train $T/train.ds --val $T/val.ds --epochs 30 --seed 3 --class-weights auto --threads 2"
check_rc "unet: a training never stopped" 0 cairn-train-unet $U --out u1
kill_after_state ust cairn-train-unet $U --out u2 --state ust
check "unet: the kill left a state of some epochs" test -s ust/train.state
check_rc "unet: the same command again goes on" 0 cairn-train-unet $U --out u2 --state ust
from=$(json u2/metrics.json "['resumed_from_epoch']")
check "unet: resumed after epoch $from (>= 1)" test "$from" -ge 1
check_grep "unet: it says where it went on from" "resumed after epoch $from of 30 from ust" .out
check "unet: the same model, byte for byte" cmp u1/model.ckpt u2/model.ckpt
check "unet: the same figures of every epoch" python3 -c "
import json; a = json.load(open('u1/metrics.json')); b = json.load(open('u2/metrics.json'))
assert a['loss_per_epoch'] == b['loss_per_epoch'], (a['loss_per_epoch'], b['loss_per_epoch'])
assert [e['val_iou'] for e in a['per_epoch']] == [e['val_iou'] for e in b['per_epoch']]
assert a['val_confusion'] == b['val_confusion'] and a['resumed_from_epoch'] == 0"
# a state after every batch: killed wherever, mostly within an epoch
kill_after_state ust2 cairn-train-unet $U --out u7 --state ust2 --state-every 0.000001
check_rc "unet: states within epochs: the same command again goes on" 0 \
	cairn-train-unet $U --out u7 --state ust2 --state-every 0.000001
check_grep "unet: ... saying where" "resumed after epoch [0-9]+ (and [0-9]+ batches of epoch [0-9]+ )?of 30 from ust2" .out
check "unet: ... to the same model, byte for byte" cmp u1/model.ckpt u7/model.ckpt
check_rc "unet: --state-every below 0 is bad usage" 2 cairn-train-unet $U --out u8 --state ust2 --state-every -1
check_grep "unet: ... saying so" "--state-every: '-1' is not a number of seconds >= 0" .out
check_rc "unet: a state of all epochs gives the model at once" 0 \
	cairn-train-unet $U --out u3 --state ust
check "unet: ... the same model" cmp u1/model.ckpt u3/model.ckpt
check_eq "unet: ... and the last validation" "$(json u3/metrics.json "['val_mean_iou']")" \
	"$(json u1/metrics.json "['val_mean_iou']")"
check_rc "unet: a state of other settings is refused" 2 cairn-train-unet $U --lr 0.1 --out u4 --state ust
check_grep "unet: ... naming the setting and both values" \
	"ust/train.state holds another training: its lr is 0.05, this one's 0.1: remove it" .out
check "unet: ... and leaves the state alone" test -s ust/train.state
check_rc "unet: --state with --dist is bad usage" 2 cairn-train-unet $U --dist allreduce --out u5 --state ust
check_grep "unet: ... saying why" "not of --dist ranks" .out
cp ust/train.state good.state
head -c 3000 good.state >ust/train.state
check_rc "unet: a truncated state is refused" 2 cairn-train-unet $U --out u6 --state ust
check_grep "unet: ... naming the file and what to do" "ust/train.state: checksum mismatch .*remove it to start over" .out
printf 'CAIRNTSTjunk' >ust/train.state
check_rc "unet: a state that is not one is refused" 2 cairn-train-unet $U --out u6 --state ust
check_grep "unet: ... saying so" "ust/train.state: truncated \(12 bytes\): remove it to start over" .out

# --- classifier (with dropout): killed, resumed, the same model ---
idx=/usr/share/datasets/fashion-mnist
if [ -f $idx/t10k-images-idx3-ubyte.gz ]; then
	cairn-dataset import-idx --images $idx/t10k-images-idx3-ubyte.gz \
		--labels $idx/t10k-labels-idx1-ubyte.gz --out all.ds >/dev/null
	cairn-dataset split all.ds --fraction 0.3 --seed 1 --out ctrain.ds --rest rest.ds >/dev/null
	cairn-dataset split rest.ds --fraction 0.15 --seed 2 --out ctest.ds --rest unused.ds >/dev/null
	C="--train $T/ctrain.ds --test $T/ctest.ds --epochs 6 --seed 3 --threads 2"
	check_rc "classifier: a training never stopped" 0 cairn-train-classifier $C --out c1
	kill_after_state cst cairn-train-classifier $C --out c2 --state cst
	check_rc "classifier: the same command again goes on" 0 cairn-train-classifier $C --out c2 --state cst
	from=$(json c2/metrics.json "['resumed_from_epoch']")
	check "classifier: resumed after epoch $from (>= 1)" test "$from" -ge 1
	check "classifier: the same model, byte for byte (dropout included)" cmp c1/model.ckpt c2/model.ckpt
	check "classifier: the same accuracies" python3 -c "
import json; a = json.load(open('c1/metrics.json')); b = json.load(open('c2/metrics.json'))
assert a['test_accuracy_per_epoch'] == b['test_accuracy_per_epoch']
assert a['per_class_accuracy'] == b['per_class_accuracy'] and a['loss_per_epoch'] == b['loss_per_epoch']"
	check_rc "classifier: a state of other settings is refused" 2 \
		cairn-train-classifier $C --epochs 7 --out c3 --state cst
	check_grep "classifier: ... naming the setting" "its epochs is 6, this one's 7" .out
else
	skip "classifier resume" "dataset-fashion-mnist not installed"
fi

# --- in a pipeline: CAIRN_STATE across a retry, a resume, a changed key ---
# Attempt 1 is killed after an epoch (kill -9, as a node failure would) while
# $T/kill-once exists; the retry, or a resume, must go on from CAIRN_STATE.
cat >p.ini <<EOF
[pipeline]
name = resumable
[params]
epochs = 30
retries = 1
[stage train]
retries = \${param.retries}
command = A="--train $T/train.ds --val $T/val.ds --epochs \${param.epochs} --seed 3 --class-weights auto --threads 2"
    echo "state: \$CAIRN_STATE"
    if [ -f $T/kill-once ]; then
      rm -f $T/kill-once
      cairn-train-unet \$A --out \${out} --state "\$CAIRN_STATE" & pid=\$!
      i=0; while [ ! -f "\$CAIRN_STATE/train.state" ] && [ \$i -lt 600 ]; do sleep 0.02; i=\$((i+1)); done
      kill -9 \$pid; exit 9
    fi
    cairn-train-unet \$A --out \${out} --state "\$CAIRN_STATE"
EOF
touch kill-once
cairn run p.ini --run-dir r1 >out.txt 2>&1
check_eq "pipeline: the retry finished the task" "$?" 0
check_grep "pipeline: the task saw CAIRN_STATE, its own folder" "state: $T/r1/stages/train/0/state" r1/stages/train/0/log
check_grep "pipeline: attempt 2 went on from attempt 1's state" "resumed after epoch [1-9][0-9]* of 30" r1/stages/train/0/log
check "pipeline: the same model as a training never stopped" cmp u1/model.ckpt r1/stages/train/0/out/model.ckpt
check "pipeline: a done task keeps no state" test ! -e r1/stages/train/0/state

touch kill-once
cairn run p.ini --run-dir r2 --set retries=0 >out.txt 2>&1
check_eq "pipeline: without retries the killed task fails" "$?" 1
check "pipeline: ... and its state stays" test -s r2/stages/train/0/state/train.state
cairn resume r2 >out.txt 2>&1
check_eq "pipeline: resume finishes it" "$?" 0
check_grep "pipeline: ... going on from the state" "resumed after epoch [1-9][0-9]* of 30" r2/stages/train/0/log
check "pipeline: ... to the same model" cmp u1/model.ckpt r2/stages/train/0/out/model.ckpt

touch kill-once
cairn run p.ini --run-dir r3 --set retries=0 >out.txt 2>&1
cairn resume r3 --set epochs=20 >out.txt 2>&1
check_eq "pipeline: resume with another key finishes it" "$?" 0
check_grep "pipeline: ... after emptying the state of the old key" "state train/0: emptied" r3/events.log
check_eq "pipeline: ... and trains from epoch 0" \
	"$(json r3/stages/train/0/out/metrics.json "['resumed_from_epoch']")" 0
rm -f kill-once
exit $failed
