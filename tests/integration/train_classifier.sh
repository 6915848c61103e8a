#!/usr/bin/env bash
# cairn-train-classifier end to end on a Fashion-MNIST subset: two epochs on
# 3000 images must be far above chance (10%), write metrics.json and a
# checkpoint, give the same numbers with the same seed, and reject bad input
# with exit 2.
source "$(dirname "$0")/../lib.sh"
idx=/usr/share/datasets/fashion-mnist
if [ ! -f $idx/train-images-idx3-ubyte.gz ]; then
	skip train_classifier "dataset-fashion-mnist not installed"
	exit 0
fi
cairn-dataset import-idx --images $idx/t10k-images-idx3-ubyte.gz --labels $idx/t10k-labels-idx1-ubyte.gz --out $T/all.ds >/dev/null
cairn-dataset split $T/all.ds --fraction 0.3 --seed 1 --out $T/train.ds --rest $T/rest.ds >/dev/null
cairn-dataset split $T/rest.ds --fraction 0.15 --seed 2 --out $T/test.ds --rest $T/unused.ds >/dev/null

check_rc "two epochs on 3000 images" 0 cairn-train-classifier --train $T/train.ds --test $T/test.ds --epochs 2 --seed 3 --out $T/r1
acc=$(python3 -c "import json; print(json.load(open('$T/r1/metrics.json'))['test_accuracy'])")
check "accuracy $acc well above chance" python3 -c "import sys; sys.exit(0 if $acc > 0.6 else 1)"
check "metrics.json has the fields" python3 -c "
import json; m = json.load(open('$T/r1/metrics.json'))
assert len(m['per_class_accuracy']) == 10 and len(m['loss_per_epoch']) == 2
assert m['wall_time_s'] > 0 and m['train_images_per_s'] > 0 and m['params'] > 0"
check "checkpoint written" test -s $T/r1/model.ckpt
check_rc "same seed" 0 cairn-train-classifier --train $T/train.ds --test $T/test.ds --epochs 2 --seed 3 --out $T/r2
acc2=$(python3 -c "import json; print(json.load(open('$T/r2/metrics.json'))['test_accuracy'])")
check_eq "same seed, same accuracy" "$acc2" "$acc"
check_rc "resnet arch trains" 0 cairn-train-classifier --train $T/test.ds --test $T/test.ds --epochs 1 --batch 64 --arch resnet:depths=1-1,widths=8-16,stem=8 --out $T/r3
check_rc "unknown arch is bad input" 2 cairn-train-classifier --train $T/train.ds --test $T/test.ds --arch vgg16 --out $T/r4
check_grep "the error names the family" "unknown family 'vgg16'" $T/.out
echo garbage >$T/bad.ds
check_rc "corrupt shard is bad input" 2 cairn-train-classifier --train $T/bad.ds --test $T/test.ds --out $T/r5
check_rc "missing --out is bad usage" 2 cairn-train-classifier --train $T/train.ds --test $T/test.ds
check_rc "unknown device is bad usage" 2 cairn-train-classifier --train $T/train.ds --test $T/test.ds --device tpu --out $T/r6
check_grep "the error lists the devices" "cpu, cpu-ref, cuda, auto" $T/.out
if [ "$($CAIRN_TESTS/test_cuda_ops --gpu-count 2>/dev/null)" = 0 ]; then
	check_rc "--device cuda without a usable GPU is bad usage" 2 cairn-train-classifier \
		--train $T/train.ds --test $T/test.ds --device cuda --out $T/r6
	check_grep "the error says why" \
		"device cuda: (this build has no CUDA backend \(build with make CUDA=1\)|no usable CUDA backend: cuda: )" $T/.out
else
	skip "--device cuda without a usable GPU" "a GPU is usable here"
fi
check_rc "bf16 on the cpu is bad usage" 2 cairn-train-classifier --train $T/train.ds --test $T/test.ds --precision bf16 --out $T/r7
check_grep "the error says why" "cpu devices compute in fp32 only" $T/.out
check_rc "an unknown precision is bad usage" 2 cairn-train-classifier --train $T/train.ds --test $T/test.ds --precision fp8 --out $T/r7
check_grep "... said to be unknown, with the known ones" "unknown precision 'fp8' \(known: fp32, tf32, bf16\)" $T/.out
check "... not blamed on the cpu" bash -c "! grep -q 'fp32 only' $T/.out"
check_rc "--batch 100000 is bad usage" 2 cairn-train-classifier --train $T/train.ds --test $T/test.ds --batch 100000 --out $T/r7
check_grep "... that says the limit" "batch: '100000' is not an integer in 1..65536" $T/.out
check_rc "--threads 100000 is bad usage" 2 cairn-train-classifier --train $T/train.ds --test $T/test.ds --threads 100000 --out $T/r7
check_grep "... that says the limit" "threads: '100000' is not an integer in 1..1024" $T/.out
check_rc "--epochs 0 is bad usage" 2 cairn-train-classifier --train $T/train.ds --test $T/test.ds --epochs 0 --out $T/r7
check_grep "... that says the range" "epochs: '0' is not an integer in 1..100000" $T/.out
# shards that cannot train or test: bad input (exit 2) that says what to change
cairn-dataset split $T/all.ds --fraction 0.01 --seed 1 --out $T/small.ds --rest $T/unused2.ds >/dev/null
cairn-dataset split $T/test.ds --fraction 0 --seed 1 --out $T/empty.ds --rest $T/unused3.ds >/dev/null
cairn-dataset import-idx --images $idx/t10k-images-idx3-ubyte.gz --labels $idx/t10k-labels-idx1-ubyte.gz \
	--classes 12 --out $T/k12.ds >/dev/null
check_rc "batch larger than the training shard is bad input" 2 cairn-train-classifier --train $T/small.ds \
	--test $T/test.ds --out $T/r8
check_grep "the error names the fix" "batch 128 is larger than the 100 records of train shard .*: give --batch 100 or less" $T/.out
check_rc "empty test shard is bad input" 2 cairn-train-classifier --train $T/train.ds --test $T/empty.ds --out $T/r9
check_grep "the error says it is empty" "test shard .*empty.ds has 0 records" $T/.out
check_rc "empty train shard is bad input" 2 cairn-train-classifier --train $T/empty.ds --test $T/test.ds --out $T/r9
check_rc "10 vs 12 classes is bad input" 2 cairn-train-classifier --train $T/train.ds --test $T/k12.ds --out $T/r9
check_grep "the error names the class counts" "has 10 classes, test shard .*k12.ds has 12" $T/.out
# a diverging run fails (exit 1) and leaves no checkpoint
check_rc "--lr 1e30 diverges: exit 1" 1 cairn-train-classifier --train $T/small.ds --test $T/small.ds \
	--batch 50 --epochs 1 --lr 1e30 --out $T/r10
check_grep "the error says it diverged" "training diverged: loss -?nan at epoch 1" $T/.out
check "no checkpoint of a diverged run" test ! -e $T/r10/model.ckpt
check "nor the folder it made" test ! -e $T/r10
# model.ckpt and metrics.json: both or neither (metrics.json cannot be
# written where a folder of that name stands); a folder it did not make stays
mkdir -p $T/r12/metrics.json
check_rc "metrics.json not writable: exit 1" 1 cairn-train-classifier --train $T/small.ds --test $T/small.ds \
	--batch 50 --epochs 1 --out $T/r12
check "no checkpoint without its metrics" test ! -e $T/r12/model.ckpt
check "the folder it did not make stays" test -d $T/r12/metrics.json
# CAIRN_NN_PROFILE=1: the time by op and pass on stderr at exit
CAIRN_NN_PROFILE=1 cairn-train-classifier --train $T/small.ds --test $T/small.ds --batch 50 --epochs 1 \
	--out $T/r11 >$T/prof.out 2>$T/prof.err
check_eq "a profiled run trains" "$?" 0
check_grep "the profile is printed" "^cairn: profile \(CAIRN_NN_PROFILE\): the nets' passes, [0-9.]+ ms in all" $T/prof.err
check_grep "with the convolutions forward" "^  conv +forward +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+%$" $T/prof.err
check_grep "and backward" "^  conv +backward +[0-9]+ +[0-9.]+ " $T/prof.err
check_rc "--help" 0 cairn-train-classifier --help
