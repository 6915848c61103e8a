#!/usr/bin/env bash
# The demo (make demo): the mapping pipeline, run locally with cairn
# (synthetic scenes, their noisy maps as labels, a U-Net trained on them,
# everything scored against the truth), then what cairn does when things go wrong: an output changed
# after the fact, and a task that fails, each followed by a resume that
# reruns only what must rerun.
set -u
: "${CAIRN_BIN:=$(cd "$(dirname "$0")/.." && pwd)/bin}"
export PATH="$CAIRN_BIN:$PATH"
cd "$(dirname "$0")/.."
stamp=$(date -u +%Y%m%dT%H%M%SZ)-$$
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

geo=runs/geo-demo-$stamp
say "cairn run configs/geo-demo.ini: synthetic aerial scenes -> rasterize their noisy maps -> refine them with a CycleGAN (about 80 s) -> train a U-Net on the maps (about a minute) -> score maps, refined labels and U-Net"
cairn run configs/geo-demo.ini --run-dir "$geo" || exit 1
say "the map as a label source, the refined labels, and a U-Net trained on the maps, against the truth ($geo/stages/report/0/out/report.txt)"
cat "$geo/stages/report/0/out/report.txt"
echo "(imagery and truth: $geo/stages/synth/*/out/; error pictures of the maps: $geo/stages/eval/*/out/errors.png,"
echo " of the refined labels: $geo/stages/refine_eval/*/out/errors.png, of the U-Net: $geo/stages/score/*/out/errors.png;"
echo " the CycleGAN: $geo/stages/gan/0/out/, the U-Net and its metrics: $geo/stages/train/0/out/)"

say "an output is deleted after the fact: rm $geo/stages/eval/1/out/metrics.json"
rm "$geo/stages/eval/1/out/metrics.json"
cairn why "$geo" eval/1
say "cairn resume $geo: reruns eval/1, after rasterize/1 (its label tiles were released once read: temp = yes), and nothing else (neither the CycleGAN nor the U-Net is trained again); report is kept if its inputs come out the same"
cairn resume "$geo" | tail -3 || exit 1

demo=runs/demo-$stamp
say "a task that fails: cairn run configs/demo.ini with count/2 failing on purpose"
DEMO_FAIL_TASK=2 cairn run configs/demo.ini --run-dir "$demo"
echo "(exit $?: 1 means some task failed)"
say "cairn why $demo count/2"
cairn why "$demo" count/2
say "cairn resume $demo --dry-run, then cairn resume $demo"
cairn resume "$demo" --dry-run | tail -2
cairn resume "$demo" | tail -2 || exit 1
say "events.log of $demo"
tail -6 "$demo/events.log"

say "cairn resume $demo --rerun count/1: a done task again; merge reruns only if count/1's output changed (it does not)"
cairn resume "$demo" --rerun count/1 | tail -2 || exit 1
grep -E 'count/1|merge/0' "$demo/events.log" | tail -3
say "cairn runs $geo $demo: the runs at a glance"
cairn runs "$geo" "$demo"
