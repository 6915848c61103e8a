#!/usr/bin/env bash
# cairn-eval on real stage outputs: the truth against itself is perfect; the
# error-free map, rasterized, scores 1; the noisy map scores what its error
# rates imply; missing predictions are counted; the error picture is written.
# Then configs/geo-demo.ini end to end with the cairn orchestrator.
source "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || { skip geo_eval "python3 not installed"; exit 0; }
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$@"; }

check_rc "synth" 0 cairn-synth --out "$T/s" --tiles 2 --seed 9 --preview-size 0
check_rc "synth, error-free map" 0 cairn-synth --out "$T/z" --tiles 2 --seed 9 --preview-size 0 \
	--missing-buildings 0 --road-offset 0 --width-error 0 --outdated 0 --shift 0
check_rc "truth vs truth" 0 cairn-eval --pred "$T/s/truth" --truth "$T/s/truth" --out "$T/self.json"
check_eq "truth vs truth: road IoU 1" "$(jget "$T/self.json" "['classes']['road']['iou']")" 1.0
check_eq "truth vs truth: building F1 1" "$(jget "$T/self.json" "['building_instances']['f1']")" 1.0

check_rc "rasterize the error-free map like the imagery" 0 cairn-rasterize --vector "$T/z/map.gpkg" \
	--class-field class --width-field width --zoom 17 --like "$T/z/imagery" --out "$T/zl"
check_eq "--like: same 4 tiles" "$(cd "$T/zl" && find . -name '*.tif' | sort | md5sum)" "$(cd "$T/z/imagery" && find . -name '*.tif' | sort | md5sum)"
check_rc "eval the error-free map" 0 cairn-eval --pred "$T/zl" --truth "$T/z/truth" --out "$T/zero.json"
check "error-free map: mean IoU >= 0.999" python3 -c "import json; assert json.load(open('$T/zero.json'))['mean_iou'] >= 0.999"

check_rc "rasterize the noisy map" 0 cairn-rasterize --vector "$T/s/map.gpkg" --class-field class --width-field width \
	--zoom 17 --like "$T/s/imagery" --out "$T/sl"
rm "$T/sl/17/$(ls "$T/sl/17" | head -1)"/*.tif # one column of predictions lost
check_rc "eval the noisy map" 0 cairn-eval --pred "$T/sl" --truth "$T/s/truth" --out "$T/noisy.json" --errors "$T/err.png" --border 16
check_eq "2 truth tiles without prediction reported" "$(jget "$T/noisy.json" "['missing_pred_tiles']")" 2
check_grep "summary line" 'cairn-eval: 4 tiles, road IoU 0\.[0-9]+, building IoU 0\.[0-9]+, building F1@0.5' "$T/.out"
biou=$(jget "$T/noisy.json" "['classes']['building']['iou']")
recall=$(jget "$T/noisy.json" "['building_instances']['recall']")
check "noisy map: building IoU $biou in 0.2..0.9" python3 -c "assert 0.2 < $biou < 0.9"
check "noisy map: building recall $recall < 0.9 (15% missing, a column lost)" python3 -c "assert $recall < 0.9"
check_grep "seam metric present" '"interior_minus_border_mean_iou"' "$T/noisy.json"
# Buildings crossing tile edges are one instance whatever the block: one tile
# per block gives the same instance counts as the whole 2x2 mosaic in one block.
check_rc "eval with --block 1" 0 cairn-eval --pred "$T/sl" --truth "$T/s/truth" --out "$T/b1.json" --block 1
check_eq "--block 1: same building instances as --block 16" \
	"$(jget "$T/b1.json" "['building_instances']")" "$(jget "$T/noisy.json" "['building_instances']")"
edge=0
for f in "$T"/s/truth/17/*/*.tif; do
	gdal_translate -q -of ENVI "$f" "$T/raw.bin" >/dev/null 2>&1
	# building pixels (2) in the last column or the last row of the tile
	n=$(python3 -c "
d = open('$T/raw.bin', 'rb').read()
print(sum(d[y * 256 + 255] == 2 for y in range(256)) + sum(v == 2 for v in d[255 * 256:]))")
	edge=$((edge + n))
done
check "the scene has building pixels on tile edges ($edge), so --block 1 joins across them" test "$edge" -gt 0
check_grep "error picture 512x512" 'Size is 512, 512' <(gdalinfo "$T/err.png")
# FIFOs (like /dev/null or /dev/stdout) as outputs are written into, not replaced
mkfifo "$T/m.fifo" "$T/e.fifo"
cat "$T/m.fifo" >"$T/m.bytes" &
cat "$T/e.fifo" >"$T/e.bytes" &
check_rc "eval --out FIFO --errors FIFO" 0 cairn-eval --pred "$T/sl" --truth "$T/s/truth" \
	--out "$T/m.fifo" --errors "$T/e.fifo"
wait
check "--out FIFO is still a FIFO" test -p "$T/m.fifo"
check "--errors FIFO is still a FIFO" test -p "$T/e.fifo"
check_eq "the --out reader got the metrics" "$(jget "$T/m.bytes" "['missing_pred_tiles']")" 2
check_grep "the --errors reader got the picture" 'Size is 512, 512' <(gdalinfo "$T/e.bytes")
check_rc "no --pred folder is bad input" 2 cairn-eval --pred "$T/nope" --truth "$T/s/truth" --out "$T/x.json"
check_grep "no --pred folder: message" 'pred .*/nope: no such folder' "$T/.out"
mkdir -p "$T/p16/16"
check_rc "--pred without the truth's zoom is bad input" 2 cairn-eval --pred "$T/p16" --truth "$T/s/truth"
check_grep "--pred without the zoom: message" 'has no zoom 17 folder' "$T/.out"
check_rc "3-band imagery as --pred is bad input" 2 cairn-eval --pred "$T/s/imagery" --truth "$T/s/truth"
check_grep "3-band --pred: message" 'with 3 bands, want 256x256 with 1' "$T/.out"
cp -r "$T/sl" "$T/bad"
f=$(find "$T/bad" -name '*.tif' | head -1)
: >"$f"
check_rc "an empty prediction tile is bad input" 2 cairn-eval --pred "$T/bad" --truth "$T/s/truth"
check_grep "empty tile: the reason" 'cannot open: an empty file' "$T/.out"
head -c 500 /dev/urandom >"$f"
check_rc "a garbage prediction tile is bad input" 2 cairn-eval --pred "$T/bad" --truth "$T/s/truth"
check_grep "garbage tile: GDAL's reason, not '?'" 'cannot open: .*not recognized' "$T/.out"
check_rc "no truth folder is bad input" 2 cairn-eval --pred "$T/sl" --truth "$T/nope"
check_rc "--errors into a missing folder fails" 1 cairn-eval --pred "$T/sl" --truth "$T/s/truth" \
	--out "$T/ok.json" --errors "$T/nodir/e.png"
check_grep "... naming the user's path, not a temp file" 'nodir/e.png: cannot write PNG: .*nodir/e.png: No such file' "$T/.out"
check "... no temp name" bash -c "! grep -q 'e.png.tmp' '$T/.out'"
check_eq "... and no stray blank line" "$(grep -c '^$' "$T/.out")" 0
check_rc "--help exits 0" 0 cairn-eval --help

# The shipped pipeline, end to end, with the orchestrator.
if command -v cairn >/dev/null && [ -f "$ROOT/configs/geo-demo.ini" ]; then
	check_rc "cairn run configs/geo-demo.ini (2 scenes of 2x2 tiles, 5 epochs, 100 CycleGAN steps)" 0 \
		cairn run "$ROOT/configs/geo-demo.ini" --set scenes=2 --set tiles=2 --set epochs=5 \
		--set gan_steps=100 --run-dir "$T/run" --jobs 2
	rep="$T/run/stages/report/0/out/report.txt"
	check_eq "report: the map, the refined labels and the U-Net per scene" "$(grep -c 'building F1' "$rep" 2>/dev/null)" 6
	check_grep "report: scene 1 is held out" "^scene 1 \(held out\): U-Net   4 tiles, road IoU" "$rep"
	check_grep "report: scene 0 was trained on" "^scene 0 \(trained on\): map     4 tiles" "$rep"
	check_grep "report: scene 0's refined labels" "^scene 0 \(trained on\): refined 4 tiles, road IoU" "$rep"
	check_grep "report: what the U-Net learned" "^\(the U-Net learned the map labels\)" "$rep"
	check "gan: the generators and metrics.json, no merged shard left" bash -c \
		"test -s $T/run/stages/gan/0/out/map.ckpt -a -s $T/run/stages/gan/0/out/metrics.json -a ! -e $T/run/stages/gan/0/out/all.ds"
	check "refine: what changed, per scene" python3 -c \
		"import json; j = json.load(open('$T/run/stages/refine/1/out/changed.json')); assert j['tiles'] == 4 and j['mode'] == 'add', j"
	check_eq "refine: label tiles on the imagery's grid" \
		"$(cd "$T/run/stages/refine/0/out/labels" 2>/dev/null && find . -name '*.tif' | sort | md5sum)" \
		"$(cd "$T/run/stages/synth/0/out/imagery" && find . -name '*.tif' | sort | md5sum)"
	check_eq "predict: label tiles on the imagery's grid" \
		"$(cd "$T/run/stages/predict/1/out/labels" 2>/dev/null && find . -name '*.tif' | sort | md5sum)" \
		"$(cd "$T/run/stages/synth/1/out/imagery" && find . -name '*.tif' | sort | md5sum)"
	check "train: metrics.json with 5 epochs of validation" python3 -c \
		"import json; m = json.load(open('$T/run/stages/train/0/out/metrics.json')); assert m['epochs'] == 5 and len(m['per_epoch']) == 5 and 'val_mean_iou' in m, m.keys()"
	check "train and predict: the temporary shards are gone" \
		bash -c "! ls $T/run/stages/train/0/out/*.ds $T/run/stages/predict/*/out/*.ds 2>/dev/null | grep -q ."
	check_eq "rasterize (temp = yes): its label tiles released once eval and pack were done" \
		"$(ls $T/run/stages/rasterize/*/released.json | wc -l) $(ls -A $T/run/stages/rasterize/0/out | wc -l)" "2 0"
	# resume after a lost prediction reruns predict/0 and what reads it, never the training
	rm -r "$T/run/stages/predict/0/out/labels"
	check_rc "resume after a lost prediction" 0 cairn resume "$T/run"
	check_grep "resume: predict/0 reran" "start predict/0 attempt 2" "$T/run/events.log"
	check "resume: the U-Net was not trained again" bash -c "! grep -q 'start train/0 attempt 2' $T/run/events.log"
	check "resume: nor the CycleGAN" bash -c "! grep -q 'start gan/0 attempt 2' $T/run/events.log"
	check "resume: nor the released rasterize (nothing that reads it reran)" bash -c "! grep -q 'start rasterize/0 attempt 2' $T/run/events.log"
	check_rc "labels=refined: the U-Net learns the refined labels" 0 cairn run "$ROOT/configs/geo-demo.ini" \
		--set scenes=2 --set tiles=2 --set epochs=1 --set gan_steps=10 --set labels=refined --run-dir "$T/runm" --jobs 2
	check_grep "... and the report says so" "^\(the U-Net learned the refined labels\)" "$T/runm/stages/report/0/out/report.txt"
	check "... from the refine stage's shards" grep -q "stages/refine/0/out" "$T/runm/stages/train/0/log"
	check_rc "labels=bogus fails the training" 1 cairn run "$ROOT/configs/geo-demo.ini" \
		--set scenes=1 --set tiles=2 --set epochs=1 --set gan_steps=10 --set holdout=0 --set labels=bogus --run-dir "$T/runb"
	check_grep "... saying what to give" "labels = bogus: give refined or map" "$T/runb/stages/train/0/log"
	check_rc "geo-demo with holdout=0: train on every scene, no validation" 0 cairn run "$ROOT/configs/geo-demo.ini" \
		--set scenes=1 --set tiles=2 --set epochs=1 --set gan_steps=10 --set holdout=0 --run-dir "$T/run0"
	check_grep "holdout=0: the one scene was trained on" "^scene 0 \(trained on\): U-Net   4 tiles" "$T/run0/stages/report/0/out/report.txt"
else
	skip "geo-demo pipeline" "cairn orchestrator not built"
fi
