#!/usr/bin/env bash
# cairn-refine end to end on a real synthetic scene (cairn-synth imagery, its
# noisy map rasterized by cairn-rasterize, packed by cairn-tileset): train
# writes two generators and metrics.json and gives the same numbers with the
# same seed; apply keeps the tiles, keys and imagery, relabels only
# background in add mode, counts what it changed, unpacks onto the imagery's
# grid and cairn-eval scores it; bad input is exit 2 with a message that says
# what to do and leaves nothing behind. (How much refinement helps is
# measured by bench/refine.sh and the mapping demo: docs/refine.md.)
source "$(dirname "$0")/../lib.sh"
D="--threads 2"

check_rc "synth a scene of 2x2 tiles" 0 cairn-synth --out $T/s --tiles 2 --seed 4 --preview-size 0
check_rc "rasterize its map" 0 cairn-rasterize --vector $T/s/map.gpkg --class-field class \
	--width-field width --zoom 17 --like $T/s/imagery --out $T/l --threads 2
check_rc "pack imagery and map labels" 0 cairn-tileset pack --imagery $T/s/imagery --labels $T/l --out $T/p.ds

check_rc "train 60 steps" 0 cairn-refine train --train $T/p.ds --out $T/g --steps 60 --crop 32 --paired 10 $D
check_grep "a closing line with the rate" "cairn-refine: 60 steps of 1 crops of 32 px in [0-9.]+ s \([0-9.]+ steps/s, cpu\)" $T/.out
check "map.ckpt, imagery.ckpt and metrics.json" test -s $T/g/map.ckpt -a -s $T/g/imagery.ckpt -a -s $T/g/metrics.json
check "metrics.json: settings and a loss history every 100 steps and at the end" python3 -c "
import json; m = json.load(open('$T/g/metrics.json'))
assert m['steps'] == 60 and m['crop'] == 32 and m['classes'] == 3 and m['tiles'] == 4, m
assert m['generator'].startswith('cyclegan:base=16,blocks=4') and m['paired_weight'] == 10
h = m['history']; assert len(h) == 1 and h[0]['step'] == 60, h
assert all(h[0][k] > 0 for k in ('cycle_imagery', 'cycle_map', 'paired_map', 'd_map_real')), h[0]"
check_rc "the same seed again" 0 cairn-refine train --train $T/p.ds --out $T/g2 --steps 60 --crop 32 --paired 10 $D
losses() { python3 -c "import json; h = json.load(open('$1'))['history']; [r.pop('wall_time_s') for r in h]; print(h)"; }
check_eq "same seed, same losses" "$(losses $T/g2/metrics.json)" "$(losses $T/g/metrics.json)"
check "the same generator" cmp $T/g/map.ckpt $T/g2/map.ckpt

# resumable: a state after every step, killed after one, the same command
# again goes on to the same generators and loss history
cairn-refine train --train $T/p.ds --out $T/g3 --steps 60 --crop 32 --paired 10 $D \
	--state $T/gst --state-every 0.000001 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do [ -f $T/gst/train.state ] && break; sleep 0.02; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
check "resume: the kill left a state" test -s $T/gst/train.state
check_rc "resume: the same command again goes on" 0 cairn-refine train --train $T/p.ds --out $T/g3 \
	--steps 60 --crop 32 --paired 10 $D --state $T/gst --state-every 0.000001
check_grep "resume: it says from where" "resumed after step [0-9]+ of 60 from $T/gst" $T/.out
check "resume: the same generators, byte for byte" cmp $T/g/map.ckpt $T/g3/map.ckpt
check "resume: ... both of them" cmp $T/g/imagery.ckpt $T/g3/imagery.ckpt
check_eq "resume: the same loss history" "$(losses $T/g3/metrics.json)" "$(losses $T/g/metrics.json)"
check_rc "resume: a state of other settings is refused" 2 cairn-refine train --train $T/p.ds \
	--out $T/g4 --steps 60 --crop 32 --paired 3 $D --state $T/gst
check_grep "resume: ... naming the setting" "its paired is 10.0, this one's 3.0: remove it" $T/.out

check_rc "apply (add)" 0 cairn-refine apply --model $T/g/map.ckpt --in $T/p.ds --out $T/r.ds --json $T/r.json $D
check_grep "what changed" "cairn-refine: 4 tiles in [0-9.]+ s \(cpu, mode add\): [0-9.]+% of pixels relabelled" $T/.out
check "add mode: only background relabelled, counted exactly, imagery and keys kept" python3 -c "
import json, struct
def shard(p):
    b = open(p, 'rb').read(); c, h, w = struct.unpack_from('<3I', b, 24)
    n = (len(b) - 64) // (c * h * w + h * w + 12); rec = c * h * w + h * w + 12
    return [(b[64 + i * rec: 64 + i * rec + c * h * w], b[64 + i * rec + c * h * w: 64 + (i + 1) * rec])
            for i in range(n)]
a, r = shard('$T/p.ds'), shard('$T/r.ds')
assert len(a) == len(r) == 4
changed = [[0] * 3 for _ in range(3)]
for (pa, ma), (pr, mr) in zip(a, r):
    assert pa == pr and ma[-12:] == mr[-12:]
    for x, y in zip(ma[:-12], mr[:-12]):
        if x != y:
            assert x == 0, (x, y); changed[x][y] += 1
j = json.load(open('$T/r.json'))
assert j['changed'] == changed and j['tiles'] == 4 and j['pixels'] == 4 * 256 * 256 and j['mode'] == 'add', (j, changed)"
check_rc "unpack the refined labels" 0 cairn-tileset unpack --in $T/r.ds --out $T/rl --threads 2
check_eq "on the imagery's grid" "$(cd $T/rl && find . -name '*.tif' | sort | md5sum)" \
	"$(cd $T/s/imagery && find . -name '*.tif' | sort | md5sum)"
check_rc "cairn-eval scores them" 0 cairn-eval --pred $T/rl --truth $T/s/truth --out $T/m.json
check_rc "apply (replace, threshold 1: nothing drawn)" 0 cairn-refine apply --model $T/g/map.ckpt \
	--in $T/p.ds --out $T/z.ds --mode replace --threshold 1 --json $T/z.json $D
check "replace with nothing drawn: every feature pixel became background" python3 -c "
import json; j = json.load(open('$T/z.json'))
assert j['changed'][1][0] > 0 and j['changed'][2][0] > 0 and j['changed'][0] == [0, 0, 0], j"
check_rc "apply with a negative threshold (the help's -1..1; the fuzzer found every one refused)" 0 \
	cairn-refine apply --model $T/g/map.ckpt --in $T/p.ds --out $T/zn.ds --mode add --threshold -0.5 --json $T/zn.json $D
check "a lower threshold draws at least as much" python3 -c "
import json; a, b = json.load(open('$T/zn.json')), json.load(open('$T/r.json'))
assert sum(a['changed'][0]) >= sum(b['changed'][0]), (a, b)"

# bad input: exit 2, a message naming the thing and what to do, nothing left behind
check_rc "a missing shard" 2 cairn-refine train --train $T/none.ds --out $T/x
check_grep "... named" "none.ds" $T/.out
check "... and no --out made" test ! -e $T/x
check_rc "predictions without imagery (0 channels)" 2 bash -c "
cairn-train-unet --train $T/p.ds --out $T/u --epochs 1 --batch 2 --threads 2 >/dev/null 2>&1 &&
cairn-predict --model $T/u/model.ckpt --in $T/p.ds --out $T/pred.ds >/dev/null 2>&1 &&
cairn-refine apply --model $T/g/map.ckpt --in $T/pred.ds --out $T/x.ds"
check_grep "... says to give the packed imagery" "masks without imagery \(0 channels\): give the shard cairn-tileset pack wrote" $T/.out
check "... and writes nothing" test ! -e $T/x.ds
head -c 1000 $T/g/map.ckpt >$T/cut.ckpt
check_rc "a truncated generator" 2 cairn-refine apply --model $T/cut.ckpt --in $T/p.ds --out $T/x.ds
check_grep "... named, with what to give" "cannot use model .*cut.ckpt: .*give the map.ckpt that 'cairn-refine train' wrote" $T/.out
check_rc "crops the generator cannot keep" 2 cairn-refine train --train $T/p.ds --out $T/x --crop 30
check_grep "... says the multiple" "--crop 30 is not a multiple of 4" $T/.out
check_rc "crops larger than the tiles" 2 cairn-refine train --train $T/p.ds --out $T/x --crop 512
check_grep "... says so" "crops of 512 px do not fit its 256x256 tiles" $T/.out
check_rc "a discriminator spec that is wrong" 2 cairn-refine train --train $T/p.ds --out $T/x --disc patchgan:layerz=2
check_rc "--mode bogus" 2 cairn-refine apply --model $T/g/map.ckpt --in $T/p.ds --out $T/x.ds --mode bogus
check_grep "... names the modes" "--mode: 'bogus' is not add or replace" $T/.out
check_rc "an unknown command" 2 cairn-refine refine
check_rc "--help" 0 cairn-refine --help
check_grep "... with an example" "cairn-refine train --train tiles.ds --out gan" $T/.out
check_rc "train --help" 0 cairn-refine train --help
check_rc "apply --help" 0 cairn-refine apply --help
check "no temp files left by the failures" bash -c "! ls $T/*.tmp* $T/g/*.tmp* 2>/dev/null | grep -q ."
check "cairn-refine links no GDAL" bash -c "! ldd $CAIRN_BIN/cairn-refine | grep -qi gdal"
exit $failed
