#!/usr/bin/env bash
# bench/refine.sh: how much cairn-refine improves noisy map labels, next to
# the map itself (the baseline, scored in the same run), over seeds and
# settings; and its training speed. Synthetic scenes (cairn-synth: the truth
# is known), their maps rasterized and packed as the mapping demo does, one
# CycleGAN per setting and seed trained on all scenes' imagery and maps,
# applied to every scene, scored against the truth. Run by `make bench`.
#   REFINE_BENCH_SCENES=3 REFINE_BENCH_TILES=4 (tiles per side) REFINE_BENCH_STEPS=2000
#   REFINE_BENCH_SEEDS="1 2 3"
#   REFINE_BENCH_SETTINGS="paired10|--paired 10;cycle0|--paired 10 --cycle 0" (name|options,
#   ';' between rows; " ": none, the speed line alone)
set -u
: "${CAIRN_BIN:?run through make bench}"
export PATH="$CAIRN_BIN:$PATH"
T=$(mktemp -d /tmp/cairn-bench-refine.XXXXXX)
trap 'rm -rf "$T"' EXIT
scenes=${REFINE_BENCH_SCENES:-3}
tiles=${REFINE_BENCH_TILES:-4}
steps=${REFINE_BENCH_STEPS:-2000}
seeds=${REFINE_BENCH_SEEDS:-1 2 3}
settings=${REFINE_BENCH_SETTINGS:-"paired10|--paired 10;paired3|--paired 3;cycle0|--paired 10 --cycle 0;unpaired|--paired 0"}
echo "== refine: CycleGAN label refinement against the map it refines"
echo "machine: $(getconf _NPROCESSORS_ONLN) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $scenes scenes of ${tiles}x$tiles tiles, $steps steps of 64 px crops"
# speed first: the CycleGAN step of Zhu et al.'s reference nets (2 x
# cyclegan:base=64,blocks=9, 2 x patchgan, identity loss on) at 64 px, batch 1,
# cairn's (nn/cyclegan, what cairn-refine runs) next to the reference code's
# step in PyTorch, both on this CPU with the same threads
py=
for p in python3 /usr/bin/python3; do
	command -v "$p" >/dev/null && "$p" -c "import torch" 2>/dev/null && { py=$p; break; }
done
step=${CAIRN_BENCH:+$CAIRN_BENCH/cuda_step}
threads=$(getconf _NPROCESSORS_ONLN)
if [ -n "$step" ] && [ -x "$step" ]; then
	OMP_NUM_THREADS=$threads "$step" --device cpu --precision fp32 --task cyclegan --size 64 --batch 1 \
		--steps 10 --warmup 2 | grep '^cairn'
else
	echo "cairn's step: skipped (run through make bench: it builds bench/cuda_step)"
fi
if [ -n "$py" ]; then
	OMP_NUM_THREADS=$threads "$py" "$(dirname "$0")/cuda_torch.py" --device cpu --precision fp32 --task cyclegan \
		--size 64 --batch 1 --steps 10 --warmup 2 | grep '^torch'
else
	echo "PyTorch's step: skipped (no python3 with torch: scripts/deps.sh installs python3-torch)"
fi
packs=()
for s in $(seq 0 $((scenes - 1))); do
	cairn-synth --out "$T/s$s" --scene "$s" --tiles "$tiles" --seed 1 --preview-size 0 >/dev/null 2>&1 &&
		cairn-rasterize --vector "$T/s$s/map.gpkg" --class-field class --width-field width --zoom 17 \
			--like "$T/s$s/imagery" --out "$T/l$s" --threads 2 >/dev/null 2>&1 &&
		cairn-tileset pack --imagery "$T/s$s/imagery" --labels "$T/l$s" --out "$T/p$s.ds" >/dev/null 2>&1 ||
		{ echo "refine bench: cannot make scene $s" >&2; exit 1; }
	packs+=("$T/p$s.ds")
done
cairn-dataset merge --out "$T/all.ds" "${packs[@]}" >/dev/null 2>&1 || exit 1

# mean road IoU, building IoU, building F1 over the scenes of label folder prefix $1
score() {
	for s in $(seq 0 $((scenes - 1))); do
		cairn-eval --pred "$1$s" --truth "$T/s$s/truth" --out "$T/m.json" >/dev/null 2>&1 || return 1
		python3 -c "
import json; m = json.load(open('$T/m.json'))
print(m['classes']['road']['iou'], m['classes']['building']['iou'], m['building_instances']['f1'])"
	done | awk '{r += $1; b += $2; f += $3; n++} END {printf "road IoU %.3f  building IoU %.3f  building F1 %.3f", r / n, b / n, f / n}'
}
printf '%-10s %-5s %s\n' setting seed "labels against the truth (mean over $scenes scenes)"
printf '%-10s %-5s %s   (the baseline)\n' map - "$(score "$T/l")"
IFS=';' read -r -a rows <<<"$settings"
for row in "${rows[@]}"; do
	name=${row%%|*} opts=${row#*|}
	[ -n "${name// /}" ] || continue
	for seed in $seeds; do
		# shellcheck disable=SC2086 # opts is a list of options
		if ! cairn-refine train --train "$T/all.ds" --out "$T/g" --steps "$steps" --crop 64 --seed "$seed" \
			$opts >"$T/train.log" 2>&1; then
			echo "refine bench: training failed:" >&2
			tail -3 "$T/train.log" >&2
			exit 1
		fi
		rate=$(python3 -c "import json; print('%.1f' % json.load(open('$T/g/metrics.json'))['steps_per_second'])")
		for s in $(seq 0 $((scenes - 1))); do
			rm -rf "$T/r$s"
			cairn-refine apply --model "$T/g/map.ckpt" --in "$T/p$s.ds" --out "$T/r$s.ds" >/dev/null 2>&1 &&
				cairn-tileset unpack --in "$T/r$s.ds" --out "$T/r$s" --threads 2 >/dev/null 2>&1 || exit 1
		done
		printf '%-10s %-5s %s   (%s steps/s)\n' "$name" "$seed" "$(score "$T/r")" "$rate"
	done
done
