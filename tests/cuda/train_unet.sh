#!/usr/bin/env bash
# cairn-train-unet and cairn-predict --device cuda against --device cpu, same
# seed, on synthetic 256x256 mask shards (test_segment --write-shards): the
# validation scores agree, the steps run as CUDA graph replays, predictions
# agree pixel for pixel but for rounding; the training and prediction rates
# are reported. Run on an H200 in session 16 (docs/cuda.md).
source "$(dirname "$0")/../lib.sh"
need_gpu train_unet_cuda
epochs=${CUDA_TEST_EPOCHS:-10}
"$CAIRN_TESTS/test_segment" --write-shards $T 64 256 || {
	not_ok "test_segment --write-shards"
	exit 1
}
run() { cairn-train-unet --train $T/train.ds --val $T/val.ds --epochs $epochs --seed 3 --out $T/$1 "${@:2}"; }
check_rc "cuda: $epochs epochs" 0 run gpu --device cuda
check_rc "cpu: $epochs epochs" 0 run cpu --device cpu
check_rc "cuda bf16: $epochs epochs" 0 run bf16 --device cuda --precision bf16
for r in gpu bf16 cpu; do
	python3 -c "
import json; m = json.load(open('$T/$r/metrics.json'))
print('# $r: val mean IoU %.4f, pixel accuracy %.4f, %.1f tiles/s, wall %.1f s' % (m['val_mean_iou'], m['val_pixel_accuracy'], m['train_tiles_per_s'], m['wall_time_s']))"
done
check "cuda's val mean IoU within 1 point of cpu's" python3 -c "
import json; g, c = (json.load(open('$T/%s/metrics.json' % r))['val_mean_iou'] for r in ('gpu', 'cpu'))
assert abs(g - c) <= 0.01, (g, c)"
check "the steps ran as CUDA graph replays, none failed" python3 -c "
import json; c = json.load(open('$T/gpu/metrics.json'))['cuda']
print('# cuda:', c)
assert c['graph_failures'] == 0 and c['graph_captures'] == 1 and c['graph_replays'] == c['steps'] - 2"
check_rc "predict on cuda" 0 cairn-predict --model $T/cpu/model.ckpt --in $T/train.ds --out $T/gpu.ds --device cuda --batch 16 --with-pixels
grep -h "tiles/s" $T/.out | sed 's/^/# /'
check_rc "predict on cpu" 0 cairn-predict --model $T/cpu/model.ckpt --in $T/train.ds --out $T/cpu.ds --device cpu --batch 16 --with-pixels
grep -h "tiles/s" $T/.out | sed 's/^/# /'
check "the predicted masks agree (> 99.9% of pixels)" python3 -c "
a, b = open('$T/gpu.ds', 'rb').read(), open('$T/cpu.ds', 'rb').read()
assert len(a) == len(b)
img, hw = 3 * 256 * 256, 256 * 256; rb = img + hw + 12
n = (len(a) - 64) // rb
same = sum(a[64 + i * rb + img + j] == b[64 + i * rb + img + j] for i in range(n) for j in range(0, hw, 7))
total = n * len(range(0, hw, 7))
print('# %d of %d sampled pixels agree' % (same, total)); assert same >= 0.999 * total"
exit $failed
