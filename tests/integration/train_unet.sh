#!/usr/bin/env bash
# cairn-train-unet and cairn-predict end to end on small synthetic mask
# shards (test_segment --write-shards: roads, buildings and background told
# apart by colour, some tiles with unlabelled patches): training reaches a
# high IoU, writes metrics.json and a checkpoint, gives the same numbers with
# the same seed; prediction keeps the input's tiles, keys and order; bad
# input everywhere is exit 2 with a message that says what to do, and leaves
# nothing in --out.
source "$(dirname "$0")/../lib.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
"$CAIRN_TESTS/test_segment" --write-shards $T 32 64 || {
	not_ok "test_segment --write-shards"
	exit 1
}
D="--threads 2"

check_rc "20 epochs on 32 tiles of 64x64" 0 cairn-train-unet --train $T/train.ds --val $T/val.ds \
	--epochs 20 --seed 3 --class-weights auto $D --out $T/r1
check_grep "one line per epoch, with the IoUs" "^epoch 20/20: train loss [0-9.]+, val pixel accuracy [0-9.]+, mean IoU" $T/.out
check "metrics.json has the fields" python3 -c "
import json; m = json.load(open('$T/r1/metrics.json'))
assert len(m['per_epoch']) == 20 and len(m['loss_per_epoch']) == 20, m
e = m['per_epoch'][-1]
assert set(e) >= {'train_loss', 'val_pixel_accuracy', 'val_iou', 'val_mean_iou', 'wall_time_s'}, e
assert len(m['val_iou']) == 3 and len(m['val_confusion']) == 3 and len(m['class_weights']) == 3
assert m['class_weighting'] == 'auto' and m['class_weights'][0] < m['class_weights'][2]
assert m['wall_time_s'] > 0 and m['train_tiles_per_s'] > 0 and m['params'] > 0
assert m['arch'].startswith('unet:depth=3,base=8') and m['tile'] == [3, 64, 64]
assert m['loss_per_epoch'][-1] < m['loss_per_epoch'][0] / 2"
iou=$(python3 -c "import json; print(json.load(open('$T/r1/metrics.json'))['val_mean_iou'])")
check "mean IoU $iou is high" python3 -c "import sys; sys.exit(0 if $iou > 0.8 else 1)"
check "checkpoint written" test -s $T/r1/model.ckpt
check_rc "same seed" 0 cairn-train-unet --train $T/train.ds --val $T/val.ds --epochs 20 --seed 3 \
	--class-weights auto $D --out $T/r2
iou2=$(python3 -c "import json; print(json.load(open('$T/r2/metrics.json'))['val_mean_iou'])")
check_eq "same seed, same mean IoU" "$iou2" "$iou"
check_rc "without --val, given weights, no augmentation" 0 cairn-train-unet --train $T/val.ds \
	--epochs 1 --batch 4 --class-weights 1,2,2 --no-augment $D --out $T/r3
check "... metrics without val numbers" python3 -c "
import json; m = json.load(open('$T/r3/metrics.json'))
assert 'val_mean_iou' not in m and m['class_weights'] == [1, 2, 2] and not m['augment']"

# prediction: the input's keys and order, masks of classes only, no pixels
# unless --with-pixels
check_rc "predict unlabelled tiles" 0 cairn-predict --model $T/r1/model.ckpt --in $T/unlabeled.ds \
	--out $T/pred.ds --batch 3 $D
check_grep "it says how fast, and apart the first batch, which carries the setup" \
	"cairn-predict: 8 tiles in [0-9.]+ s \([0-9.]+ tiles/s; the first batch [0-9.]+ s, then [0-9.]+ tiles/s, cpu\)" $T/.out
check_rc "predict the labelled ones, with their pixels" 0 cairn-predict --model $T/r1/model.ckpt --in $T/val.ds --out $T/pred2.ds --with-pixels $D
check "keys and order kept, pixels only with --with-pixels; predictions agree with the masks as well as val said" python3 -c "
import struct
def records(p):
    d = open(p, 'rb').read()
    n, c, h, w, k, rb = struct.unpack_from('<QIIIxxxxII', d, 16)
    out = []
    for i in range(n):
        r = d[64 + i * rb: 64 + (i + 1) * rb]
        out.append((r[:c*h*w], r[c*h*w:c*h*w+h*w], struct.unpack('<III', r[-12:])))
    return out, k
u, k = records('$T/unlabeled.ds'); p, kp = records('$T/pred.ds'); v, _ = records('$T/val.ds'); p2, _ = records('$T/pred2.ds')
assert len(p) == len(u) == 8 and kp == k == 3
for i, (a, b) in enumerate(zip(u, p)):
    assert b[0] == b'' and a[2] == b[2] == (17, 1000 + i, 2000 + i), i
    assert max(b[1]) < 3 and set(a[1]) == {255}
assert all(a[0] == b[0] and a[2] == b[2] for a, b in zip(v, p2)), 'pixels or keys not kept'
assert [r[1] for r in p] == [r[1] for r in p2], 'masks of the input changed the prediction'
right = sum(x == y for a, b in zip(v, p2) for x, y in zip(a[1], b[1]) if x != 255)
total = sum(x != 255 for a in v for x in a[1])
assert right / total > 0.9, right / total"
check_rc "cairn-dataset reads the prediction" 0 cairn-dataset info $T/pred.ds
check_rc "a batch larger than the shard" 0 cairn-predict --model $T/r1/model.ckpt --in $T/unlabeled.ds \
	--out $T/pred3.ds --batch 65536 $D
check "... predicts the same masks" cmp $T/pred.ds $T/pred3.ds
check_rc "an empty shard (an array task that packed no tile)" 0 cairn-predict --model $T/r1/model.ckpt \
	--in $T/empty.ds --out $T/pred4.ds $D
check_grep "... predicts nothing" "cairn-predict: 0 tiles in" $T/.out
check "... into an empty shard that unpacks to no tile" cairn-tileset unpack --in $T/pred4.ds --out $T/u4

# bad input: exit 2, a message that says what to do, nothing written
check_rc "a class shard to cairn-train-unet" 2 cairn-train-unet --train $T/class.ds --out $T/e1
check_grep "... says what it is and what to use" "class.ds is a class shard \(one label per image\): cairn-train-unet needs a mask shard.*cairn-train-classifier" $T/.out
check "... and writes nothing" test ! -e $T/e1
check_rc "a mask shard to cairn-train-classifier" 2 cairn-train-classifier --train $T/train.ds --test $T/val.ds --out $T/e2
check_grep "... says to use cairn-train-unet" "train.ds is a mask shard .*: train it with cairn-train-unet" $T/.out
check_rc "an empty shard" 2 cairn-train-unet --train $T/empty.ds --out $T/e3
check_grep "... said so" "train shard .*empty.ds has 0 records" $T/.out
check_rc "a shard without labels (tiles to predict) to train on" 2 cairn-train-unet --train $T/unlabeled.ds \
	--batch 2 --out $T/e3
check_grep "... said so" "train shard .*unlabeled.ds has no labelled pixel \(every mask value is 255, .*nothing to learn" $T/.out
check_rc "... or to validate on" 2 cairn-train-unet --train $T/train.ds --val $T/unlabeled.ds --out $T/e3
check_grep "... said so" "validation shard .*unlabeled.ds has no labelled pixel .*nothing to score" $T/.out
check "... and nothing written" test ! -e $T/e3
check_rc "68x68 tiles for a depth-3 U-Net" 2 cairn-train-unet --train $T/odd.ds --batch 2 --out $T/e4
check_grep "... says the size needed" "68x68 tiles .* needs height and width divisible by 8: give tiles of 64 or 72 pixels, or a smaller depth" $T/.out
check_rc "unet:depth=0 is bad usage" 2 cairn-train-unet --train $T/train.ds --arch unet:depth=0 --out $T/e0
check_grep "... saying which value and its range" "arch 'unet:depth=0': depth 0: want 1..15" $T/.out
check "... and writes nothing" test ! -e $T/e4
check_rc "a validation shard of another size" 2 cairn-train-unet --train $T/train.ds --val $T/odd.ds --out $T/e5
check_grep "... names both" "validation shard .*odd.ds has 3x68x68" $T/.out
check_rc "a classifier arch" 2 cairn-train-unet --train $T/train.ds --arch cnn:widths=8 --out $T/e6
check_grep "... said to be one" "one output per image \(a classifier\), not one per pixel" $T/.out
check_rc "2 weights for 3 classes" 2 cairn-train-unet --train $T/train.ds --class-weights 1,2 --out $T/e7
check_grep "... says how many" "class weights: 2 given, but .*train.ds has 3 classes: give one per class" $T/.out
check_rc "a weight that is no number" 2 cairn-train-unet --train $T/train.ds --class-weights 1,x,2 --out $T/e7
check_grep "... says the forms" "class-weights: '1,x,2' is not none, auto, or a list" $T/.out
for opt in "--lr inf" "--lr 1e39" "--wd 1e39" "--class-weights 1,1e39,2"; do
	check_rc "$opt (inf as a float) is bad usage" 2 cairn-train-unet --train $T/train.ds $opt \
		--epochs 1 $D --out $T/e11
done
check_grep "... said so" "--class-weights: '1,1e39,2' is not none, auto, or a list" $T/.out
for opt in "--lr 1e39" "--wd 1e39"; do
	check_rc "$opt is bad usage for the classifier too" 2 cairn-train-classifier --train $T/class.ds \
		--test $T/class.ds $opt --epochs 1 --batch 4 $D --out $T/e11
	check_grep "... said so" "${opt%% *}: '1e39' is not a finite" $T/.out
done
check "... and nothing written" test ! -e $T/e11
check_rc "a mask value that is no class" 2 cairn-train-unet --train $T/bad.ds --epochs 1 $D --out $T/e8
check_grep "... named with its record and pixel" "bad.ds: byte [0-9]+: record 1 has mask value 7 at pixel \(row 2, col 3\), but the shard has 3 classes" $T/.out
check "... and nothing written" test ! -e $T/e8
check_rc "a diverging run is exit 1" 1 cairn-train-unet --train $T/train.ds --epochs 2 --lr 1e30 $D --out $T/e9
check_grep "... that says so" "training diverged: loss -?nan at epoch 1" $T/.out
check "... and leaves no checkpoint" test ! -e $T/e9/model.ckpt
check_rc "bf16 on the cpu" 2 cairn-train-unet --train $T/train.ds --precision bf16 --out $T/e10
check_grep "... says why" "cpu devices compute in fp32 only" $T/.out

check_rc "a missing checkpoint" 2 cairn-predict --model $T/nope.ckpt --in $T/val.ds --out $T/p1.ds
check_grep "... names it and what to give" "cannot use model .*nope.ckpt: .*give the model.ckpt that cairn-train-unet wrote" $T/.out
head -c 1000 $T/r1/model.ckpt >$T/cut.ckpt
check_rc "a truncated checkpoint" 2 cairn-predict --model $T/cut.ckpt --in $T/val.ds --out $T/p1.ds
check_grep "... names it" "cannot use model .*cut.ckpt: " $T/.out
check "... and nothing written" test ! -e $T/p1.ds
check_rc "tiles of another size than the model's" 2 cairn-predict --model $T/r1/model.ckpt --in $T/odd.ds --out $T/p1.ds
check_grep "... names both" "model .*model.ckpt takes 3x64x64 tiles, shard .*odd.ds has 3x68x68" $T/.out
check_rc "a class shard to cairn-predict" 2 cairn-predict --model $T/r1/model.ckpt --in $T/class.ds --out $T/p1.ds
check_grep "... says what it needs" "class.ds is a class shard .*cairn-predict needs a mask shard" $T/.out
check "... and nothing written" test ! -e $T/p1.ds
# a checkpoint of another class count: a 2-class shard from the same tiles
python3 - "$T/val.ds" "$T/two.ds" <<'PY'
import struct, sys, zlib
d = bytearray(open(sys.argv[1], 'rb').read())
n, c, h, w, k, rb = struct.unpack_from('<QIIIxxxxII', d, 16)
for i in range(n):  # classes 0..2 -> 0..1
    o = 64 + i * rb + c * h * w
    d[o:o + h * w] = bytes(min(x, 1) if x != 255 else 255 for x in d[o:o + h * w])
struct.pack_into('<I', d, 40, 2)
struct.pack_into('<I', d, 48, zlib.crc32(bytes(d[64:])))
struct.pack_into('<I', d, 60, zlib.crc32(bytes(d[:60])))
open(sys.argv[2], 'wb').write(d)
PY
check_rc "a model of 3 classes on a 2-class shard" 2 cairn-predict --model $T/r1/model.ckpt --in $T/two.ds --out $T/p1.ds
check_grep "... names both counts, and how to pack tiles to predict" "model .*model.ckpt predicts 3 classes, shard .*two.ds has 2: .*cairn-tileset pack --classes 3\)" $T/.out
check_rc "missing --model is bad usage" 2 cairn-predict --in $T/val.ds --out $T/p1.ds
check_rc "cairn-train-unet --help" 0 cairn-train-unet --help
check_rc "cairn-predict --help" 0 cairn-predict --help
check_grep "... its example unpacks as cairn-tileset takes it" "^  cairn-tileset unpack --in pred.ds --out " $T/.out
check "the training programs link no GDAL" bash -c "! ldd $CAIRN_BIN/cairn-train-unet $CAIRN_BIN/cairn-predict | grep -qi gdal"
exit $failed
