#!/usr/bin/env bash
# cairn-train-classifier --device cuda on Fashion-MNIST against --device cpu,
# same seed: test accuracy within 0.5 points (issue #8). Also: the metrics
# name the device, and an unusable device is bad usage; reported beside: the
# PyTorch script the stage replaces, on the GPU.
source "$(dirname "$0")/../lib.sh"
idx=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
need_gpu train_classifier_cuda
if [ ! -f $idx/train-images-idx3-ubyte.gz ]; then
	skip train_classifier_cuda "Fashion-MNIST not found in $idx (set FASHION_MNIST)"
	exit 0
fi
epochs=${CUDA_TEST_EPOCHS:-3}
cairn-dataset import-idx --images $idx/train-images-idx3-ubyte.gz --labels $idx/train-labels-idx1-ubyte.gz --out $T/train.ds >/dev/null
cairn-dataset import-idx --images $idx/t10k-images-idx3-ubyte.gz --labels $idx/t10k-labels-idx1-ubyte.gz --out $T/test.ds >/dev/null
check_rc "cuda: $epochs epochs" 0 cairn-train-classifier --train $T/train.ds --test $T/test.ds --epochs $epochs --seed 3 --device cuda --out $T/gpu
check_rc "cpu: $epochs epochs" 0 cairn-train-classifier --train $T/train.ds --test $T/test.ds --epochs $epochs --seed 3 --device cpu --out $T/cpu
g=$(python3 -c "import json; print(json.load(open('$T/gpu/metrics.json'))['test_accuracy'])")
c=$(python3 -c "import json; print(json.load(open('$T/cpu/metrics.json'))['test_accuracy'])")
echo "# accuracy: cuda $g, cpu $c"
# the 0.5 points hold from 3 epochs on (the issue's check; measured on an
# H200: 0.9112 and 0.9111): after 1 epoch the runs, whose cuDNN passes sum
# in no fixed order, still differ by up to 2 points, so fewer epochs report
within() { # name a b: a and b within 0.5 points, checked from 3 epochs on
	if [ "$epochs" -ge 3 ]; then
		check "$1" python3 -c "import sys; sys.exit(0 if abs($2 - $3) <= 0.005 else 1)"
	else
		echo "# not checked with $epochs epochs (3 or more): $1"
	fi
}
within "cuda accuracy $g within 0.5 points of cpu $c" "$g" "$c"
check "metrics say cuda" python3 -c "import json; assert json.load(open('$T/gpu/metrics.json'))['device'] == 'cuda'"
check "the steps ran as CUDA graph replays, none failed" python3 -c "
import json; c = json.load(open('$T/gpu/metrics.json'))['cuda']
print('# cuda:', c)
assert c['graph_failures'] == 0 and c['graph_captures'] == 1 and c['graph_replays'] == c['steps'] - 2"
# the same run without CUDA graphs, and in bf16: reported beside the others
check_rc "cuda without graphs: $epochs epochs" 0 env CAIRN_CUDA_GRAPH=0 cairn-train-classifier --train $T/train.ds --test $T/test.ds --epochs $epochs --seed 3 --device cuda --out $T/nograph
check_rc "cuda bf16: $epochs epochs" 0 cairn-train-classifier --train $T/train.ds --test $T/test.ds --epochs $epochs --seed 3 --device cuda --precision bf16 --out $T/bf16
for r in gpu nograph bf16 cpu; do
	[ -f $T/$r/metrics.json ] && python3 -c "import json; m = json.load(open('$T/$r/metrics.json')); print('# %s: %s %s accuracy %.4f, %.0f train images/s, loss per epoch %s' % ('$r', m['device'], m.get('precision'), m['test_accuracy'], m['train_images_per_s'], m['loss_per_epoch']))"
	[ -n "${CUDA_CHECK_OUT:-}" ] && [ -f $T/$r/metrics.json ] && cp $T/$r/metrics.json "$CUDA_CHECK_OUT/train-$r-metrics.json"
done
check "bf16: the activation arena backed by about half its size" python3 -c "
import json; c = json.load(open('$T/bf16/metrics.json'))['cuda']
print('# bf16 activation arena %.1f MiB, backed by %.1f MiB' % (c['activation_arena_mib'], c['activation_backed_mib']))
assert c['activation_arena_mib'] / 2 <= c['activation_backed_mib'] <= c['activation_arena_mib'] / 2 + 2"
n=$(python3 -c "import json; print(json.load(open('$T/nograph/metrics.json'))['test_accuracy'])" 2>/dev/null || echo nan)
within "cuda without graphs $n within 0.5 points of cuda with graphs $g" "$n" "$g"
check "checkpoint written" test -s $T/gpu/model.ckpt
ips=$(python3 -c "import json; print(json.load(open('$T/gpu/metrics.json'))['train_images_per_s'])")
echo "# cuda training: $ips images/s"
# out of device memory: a clean failure, nothing written; the activations of
# batch 60000 (about 20 GB) over a limit of 1 GiB, so that it fails on any GPU
env CAIRN_CUDA_PRECISION=fp32 CAIRN_CUDA_MEMORY_LIMIT=1G cairn-train-classifier --train $T/train.ds \
	--test $T/test.ds --device cuda --batch 60000 --epochs 1 --out $T/oom >$T/oom.out 2>&1
rc=$?
check "out of memory exits non-zero ($rc)" test "$rc" -ne 0
check_grep "out of memory is named" "out of (cuda|device) memory" $T/oom.out
check_grep "the error says what was asked and what is free" "asked [0-9]+ bytes.*[0-9]+ of [0-9]+ bytes free" $T/oom.out
check_grep "the error names the limit" "CAIRN_CUDA_MEMORY_LIMIT" $T/oom.out
check "no metrics.json after out of memory" test ! -e $T/oom/metrics.json
check "no checkpoint after out of memory" test ! -e $T/oom/model.ckpt
# a batch whose tensors pass 2^31 values: refused before anything is asked
cairn-train-classifier --train $T/train.ds --test $T/test.ds --device cuda \
	--arch cnn:widths=512-1024,convs=1 --batch 60000 --epochs 1 --out $T/big >$T/big.out 2>&1
rc=$?
check "a batch too large exits non-zero ($rc)" test "$rc" -ne 0
check_grep "it says which batch would do" "use a batch of at most [0-9]+" $T/big.out
check "no metrics.json after a batch too large" test ! -e $T/big/metrics.json
check_rc "no GPU is bad usage" 2 env CUDA_VISIBLE_DEVICES= cairn-train-classifier --train $T/train.ds --test $T/test.ds --device cuda --out $T/none
# the PyTorch script the stage replaces, on the GPU, the same recipe and
# epochs (bench/torch_classifier.py): reported beside cairn's, not checked
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
	timeout 60 python3 "$ROOT/bench/torch_classifier.py" --data "$idx" --epochs $epochs --device cuda 2>&1 |
		sed 's/^/# /'
	python3 -c "import json; m = json.load(open('$T/gpu/metrics.json')); print('# cairn cuda classifier %s $epochs epochs: test accuracy %.4f, training %.1f s (%.0f images/s)' % (m['arch'], m['test_accuracy'], m['train_time_s'], m['train_images_per_s']))"
fi
