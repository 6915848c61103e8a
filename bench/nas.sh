#!/usr/bin/env bash
# bench/nas.sh: what a search round costs beside what it searches for:
# `cairn-nas propose` (the spline fit and scoring) after 100, 500 and 2000
# trials, next to one real proxy training of the NASTransfer benchmark
# measured in the same run (the baseline: a round must cost little against one
# of its trainings). Run by `make bench`.   NAS_BENCH_SIZES="100 500 2000"
set -u
: "${CAIRN_BIN:?run through make bench}"
export PATH=$CAIRN_BIN:$PATH
T=$(mktemp -d /tmp/cairn-bench-nas.XXXXXX)
trap 'rm -rf "$T"' EXIT
idx=/usr/share/datasets/fashion-mnist
echo "== nas: a surrogate round against one training"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ -f $idx/train-images-idx3-ubyte.gz ] || { echo "skipped: dataset-fashion-mnist not installed"; exit 0; }
cairn-dataset import-idx --images $idx/train-images-idx3-ubyte.gz --labels $idx/train-labels-idx1-ubyte.gz --out $T/all.ds >/dev/null
cairn-dataset split $T/all.ds --fraction 0.1 --seed 1 --out $T/val.ds --rest $T/target.ds >/dev/null
cairn-dataset split $T/target.ds --fraction 0.05 --seed 1 --out $T/proxy.ds --rest $T/unused.ds >/dev/null
# A space of 7 slots, 27,648 architectures.
S='cnn:widths={8|16|24|32}-{16|24|32|48}-{32|48|64|96}-{64|96|128|192},convs={1|2|3},fc={0|16|32|64|128|256},drop={0|0.1|0.2|0.3|0.4|0.5}'
S5='cnn:widths={8|16|32}-{16|32|64},convs={1|2},fc={0|64|128},drop={0|0.25|0.5}'

# Baseline: one proxy training of configs/nastransfer.ini's default architecture.
cairn-nas sample --space "$S5" --like $T/proxy.ds --count 1 --seed 1 --out $T/one >/dev/null
start=$(date +%s%N)
OMP_NUM_THREADS=1 cairn-nas trial --proposals $T/one --index 0 --out $T/t -- cairn-train-classifier --arch {arch} \
	--train $T/proxy.ds --test $T/val.ds --epochs 2 --threads 1 --out $T/t >/dev/null 2>&1
train_ms=$((($(date +%s%N) - start) / 1000000))
echo "baseline: one proxy training ($(python3 -c "import json; print(json.load(open('$T/t/metrics.json'))['arch'])"), 2,700 images x 2 epochs): $train_ms ms"

for n in ${NAS_BENCH_SIZES:-100 500 2000}; do
	# n finished trials of random architectures with a made-up smooth score
	cairn-nas sample --space "$S" --like $T/proxy.ds --count $n --seed 2 --out $T/s$n >/dev/null
	python3 - "$T" "$n" <<'PYEOF'
import json, os, sys
t, n = sys.argv[1], int(sys.argv[2])
props = json.load(open(f"{t}/s{n}/proposals.json"))
for p in props["proposals"]:
    d = f"{t}/tr{n}/{p['index']}"
    os.makedirs(d)
    c = p["choices"]
    json.dump({"index": p["index"], "choices": c, "arch": p["arch"], "space": props["space"],
               "method": "random"}, open(f"{d}/proposal.json", "w"))
    score = 0.9 - sum((x - 1.5) ** 2 for x in c) / 100
    json.dump({"test_accuracy": score, "arch": p["arch"], "params": p["params"],
               "train_time_s": 1.0}, open(f"{d}/metrics.json", "w"))
PYEOF
	start=$(date +%s%N)
	cairn-nas propose --space "$S" --like $T/proxy.ds --count 16 --seed 3 --out $T/r$n $T/tr$n/* >/dev/null || echo "propose failed"
	ms=$((($(date +%s%N) - start) / 1000000))
	echo "propose 16 after $n trials (7 slots): $ms ms = $(python3 -c "print(f'{$ms / $train_ms:.3f}')") of one proxy training"
done
