#!/usr/bin/env bash
# dist/ over real Open MPI ranks: the collective unit checks with 2, 3 and 4
# ranks, then cairn-train-classifier --dist allreduce and adpsgd on a
# Fashion-MNIST subset (by hand with mpirun, and as a pipeline stage with
# `ranks = 2`): they learn, rank 0 alone writes, the same seed gives the same
# allreduce result, adpsgd's ranks share the batches (each trained once),
# and a rank's failure stops the job.
source "$(dirname "$0")/../lib.sh"
idx=/usr/share/datasets/fashion-mnist
if ! command -v mpirun >/dev/null; then
	skip dist "Open MPI (mpirun) not installed"
	exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# Under `make test ASAN=1`: Open MPI's components leave allocations that
# LeakSanitizer reports at exit (not cairn's); the other ASan checks stay on.
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
for np in 2 3 4; do
	mpirun --oversubscribe -np $np "$CAIRN_TESTS/test_dist" >$T/unit$np.out 2>&1
	rc=$?
	if [ $rc = 0 ] && ! grep -q "^not ok" $T/unit$np.out && [ "$(grep -c '^ok' $T/unit$np.out)" = 5 ]; then
		ok "test_dist on $np ranks: $(grep -o 'mean model.*' $T/unit$np.out); $(grep -o 'rank 0 took.*' $T/unit$np.out)"
	else
		not_ok "test_dist on $np ranks (exit $rc)"
		sed 's/^/#   /' $T/unit$np.out | head -20
	fi
done
if [ ! -f $idx/t10k-images-idx3-ubyte.gz ]; then
	skip "dist training" "dataset-fashion-mnist not installed"
	exit $failed
fi
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
cairn-dataset import-idx --images $idx/t10k-images-idx3-ubyte.gz --labels $idx/t10k-labels-idx1-ubyte.gz --out $T/all.ds >/dev/null
cairn-dataset split $T/all.ds --fraction 0.3 --seed 1 --out $T/train.ds --rest $T/rest.ds >/dev/null
cairn-dataset split $T/rest.ds --fraction 0.15 --seed 2 --out $T/test.ds --rest $T/unused.ds >/dev/null
train() { # ALGO NP OUT [extra]
	local algo=$1 np=$2 out=$3
	shift 3
	mpirun --oversubscribe -np $np cairn-train-classifier --dist $algo --train $T/train.ds --test $T/test.ds \
		--epochs 2 --batch 64 --threads 1 --seed 3 --out $out "$@"
}
for algo in allreduce adpsgd; do
	check_rc "$algo on 2 ranks" 0 train $algo 2 $T/$algo
	acc=$(json $T/$algo/metrics.json 'd["test_accuracy"]')
	check "$algo: accuracy $acc well above chance" python3 -c "import sys; sys.exit(0 if $acc > 0.6 else 1)"
	check_eq "$algo: metrics.json says how" "$(json $T/$algo/metrics.json 'd["dist"]["algorithm"], d["dist"]["ranks"], d["dist"]["exchanges_rank0"] > 0')" "('$algo', 2, True)"
	check_eq "$algo: one summary line, from rank 0" "$(grep -c 'GFLOP per sample' $T/.out)" 1
done
# 3000 images, 2 ranks, batch 64: 23 steps an epoch each
check_eq "allreduce: one allreduce a step" "$(json $T/allreduce/metrics.json 'd["dist"]["exchanges_rank0"]')" 47
check_eq "allreduce: every rank 23 steps an epoch" "$(json $T/allreduce/metrics.json 'd["dist"]["steps_per_rank"]')" "[46, 46]"
# adpsgd shares the 46 batches of an epoch of 3000 (batch 64): 92 in all,
# each trained once, the even rank averaging after each of its own (and
# one allreduce of the mean model at the end)
check_eq "adpsgd: the ranks' steps add up to 2 epochs of the whole shard" "$(json $T/adpsgd/metrics.json 'sum(d["dist"]["steps_per_rank"]), d["dist"]["steps_per_rank"][0] + 1 == d["dist"]["exchanges_rank0"]')" "(92, True)"
check_rc "allreduce again, same seed" 0 train allreduce 2 $T/allreduce2
check_eq "same seed, same allreduce result" "$(json $T/allreduce2/metrics.json 'd["test_accuracy"]')" "$(json $T/allreduce/metrics.json 'd["test_accuracy"]')"
# rank 0 tests 10,000 images after epoch 1 while rank 1 waits: that wait is
# testing, not training (it would be about a third of eval_time_s)
check_rc "allreduce, a large test shard" 0 train allreduce 2 $T/bigtest --test $T/all.ds
check "allreduce: the slowest rank's training leaves out rank 0's tests" python3 -c "import json,sys; d=json.load(open('$T/bigtest/metrics.json')); sys.exit(0 if d['dist']['train_time_slowest_rank_s'] - d['train_time_s'] < d['eval_time_s'] / 6 else 1)"
check_rc "adpsgd on 3 ranks (an odd ring)" 0 train adpsgd 3 $T/adpsgd3
check_rc "one process without --dist" 0 cairn-train-classifier --train $T/train.ds --test $T/test.ds --epochs 1 --threads 1 --out $T/one
check_eq "has no dist in its metrics" "$(json $T/one/metrics.json '"dist" in d')" False
# one rank alone: adpsgd's shared batches are every batch in order, with the
# dropout masks (the cnn's drop 0.25) and the schedule of their numbers, so
# the model is byte for byte the one process's; so is allreduce's
one2() { cairn-train-classifier "$@" --train $T/train.ds --test $T/test.ds --epochs 2 --threads 1 --seed 3; }
check_rc "one process, 2 epochs" 0 one2 --out $T/one2
for algo in adpsgd allreduce; do
	check_rc "one process with --dist $algo (a single rank)" 0 one2 --dist $algo --out $T/one2_$algo
	check "--dist $algo on one rank: the same model.ckpt as without --dist" cmp $T/one2/model.ckpt $T/one2_$algo/model.ckpt
done
check_rc "--dist with an unknown algorithm is bad usage" 2 cairn-train-classifier --dist ring --train $T/train.ds --test $T/test.ds --out $T/x
check_grep "the error lists the algorithms" "known: none, allreduce, adpsgd" $T/.out
# 3000 images on 2 ranks: 1500 each, fewer than a batch (no step would be taken)
check_rc "a batch larger than a rank's part is bad input" 2 train allreduce 2 $T/bigbatch --batch 2000
check_grep "the error says so" "1500 records each of 2 ranks gets" $T/.out
check "and nothing is written" test ! -e $T/bigbatch/metrics.json
# shared batches (adpsgd's default): the ranks take the whole shard's batches between them
check_rc "adpsgd shares a batch of 2000 of the 3000 images" 0 train adpsgd 2 $T/sharedbig --batch 2000 --epochs 3
check_eq "three steps in all, one an epoch, and it says it shared them" "$(json $T/sharedbig/metrics.json 'sum(d["dist"]["steps_per_rank"]), d["dist"]["batches"]')" "(3, 'shared')"
check_grep "rank 0 says how the batches go" "adpsgd over 2 ranks: they share every epoch's batches as they go" $T/.out
check_rc "--dist-batches shared with allreduce is bad usage" 2 train allreduce 2 $T/x --dist-batches shared
check_grep "and says why" "allreduce steps every rank together, so each needs the same number of batches" $T/.out
check_rc "--dist-batches without --dist is bad usage" 2 cairn-train-classifier --dist-batches fixed --train $T/train.ds --test $T/test.ds --out $T/x
check_grep "and says why" "without --dist there are no ranks" $T/.out
check_rc "adpsgd with fixed parts" 0 train adpsgd 2 $T/adfixed --dist-batches fixed
check_eq "each rank 23 steps an epoch" "$(json $T/adfixed/metrics.json 'd["dist"]["steps_per_rank"], d["dist"]["batches"]')" "([46, 46], 'fixed')"
check_rc "a rank's failure stops the job" 1 train adpsgd 2 $T/diverge --lr 1e30
check_grep "the error names the rank" "rank [01] of 2: training diverged" $T/.out

# cairn-train-unet --dist: the U-Net on synthetic mask shards
mkdir -p $T/seg && "$CAIRN_TESTS/test_segment" --write-shards $T/seg 32 64 >/dev/null 2>&1 || not_ok "test_segment --write-shards"
for algo in allreduce adpsgd; do
	check_rc "cairn-train-unet --dist $algo on 2 ranks" 0 mpirun --oversubscribe -np 2 cairn-train-unet --dist $algo \
		--train $T/seg/train.ds --val $T/seg/val.ds --epochs 20 --seed 3 --class-weights auto --threads 1 --out $T/u_$algo
	check_eq "$algo: learns (mean IoU > 0.6), says how, and the ranks stepped 4 x 20 times in all" "$(json $T/u_$algo/metrics.json '
d["val_mean_iou"] > 0.6, d["dist"]["algorithm"], d["dist"]["ranks"], sum(d["dist"]["steps_per_rank"])')" "(True, '$algo', 2, 80)"
done
check_rc "a batch larger than a rank's part is bad input" 2 mpirun --oversubscribe -np 2 cairn-train-unet --dist adpsgd \
	--dist-batches fixed --train $T/seg/train.ds --epochs 1 --batch 20 --threads 1 --out $T/u_big
check_grep "and says what to do" "--batch 20 is larger than a rank's part of train shard .*train.ds \(32 records over 2 ranks\): give a smaller --batch or fewer ranks" $T/.out

# As a pipeline stage (configs/fashion-mnist-dist.ini, ranks = 2): the task
# runs under mpirun, rank 0 writes.
cd $T
check_rc "configs/fashion-mnist-dist.ini, small" 0 cairn run $ROOT/configs/fashion-mnist-dist.ini \
	--set train_images=$idx/t10k-images-idx3-ubyte.gz --set train_labels=$idx/t10k-labels-idx1-ubyte.gz \
	--set epochs=1
check_eq "its metrics are rank 0's, over 2 ranks" "$(json $T/runs/fashion-mnist-dist-*/stages/train/0/out/metrics.json 'd["dist"]["algorithm"], d["dist"]["ranks"], d["train_records"]')" "('adpsgd', 2, 10000)"
exit $failed
