#!/usr/bin/env bash
# bench/dist.sh: data-parallel training over MPI ranks (dist/): images/s and
# test accuracy of cairn-train-classifier --dist allreduce and --dist adpsgd
# on 2 ranks, next to one process (the baseline) in the same run; then the
# same with a straggler (a busy loop sharing rank 1's core): allreduce waits
# for the slowest rank every step; AD-PSGD with shared batches (its default)
# lets the fast rank take more of them, with fixed parts (--dist-batches
# fixed, the naive split) both end with the slow rank's part (docs/dist.md).
# "train": the slowest rank's training time (rank 0's tests left out); "wall":
# rank 0's start to end, tests included; "steps": each rank's.
# Run by `make bench`.   DIST_BENCH_EPOCHS=3
set -u
: "${CAIRN_BIN:?run through make bench}"
export PATH=$CAIRN_BIN:$PATH OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
T=$(mktemp -d /tmp/cairn-bench-dist.XXXXXX)
hog=
trap '[ -n "$hog" ] && kill $hog 2>/dev/null; rm -rf "$T"' EXIT
idx=/usr/share/datasets/fashion-mnist
echo "== dist: allreduce and AD-PSGD on 2 ranks against one process"
echo "machine: $(getconf _NPROCESSORS_ONLN) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
command -v mpirun >/dev/null || { echo "skipped: Open MPI not installed"; exit 0; }
[ -f $idx/train-images-idx3-ubyte.gz ] || { echo "skipped: dataset-fashion-mnist not installed"; exit 0; }
[ "$(getconf _NPROCESSORS_ONLN)" -ge 2 ] || { echo "skipped: needs 2 cores"; exit 0; }
cairn-dataset import-idx --images $idx/train-images-idx3-ubyte.gz --labels $idx/train-labels-idx1-ubyte.gz --out $T/all.ds >/dev/null
cairn-dataset split $T/all.ds --fraction 0.2 --seed 1 --out $T/train.ds --rest $T/rest.ds >/dev/null
cairn-dataset import-idx --images $idx/t10k-images-idx3-ubyte.gz --labels $idx/t10k-labels-idx1-ubyte.gz --out $T/test.ds >/dev/null
E=${DIST_BENCH_EPOCHS:-3}
args="--train $T/train.ds --test $T/test.ds --epochs $E --batch 64 --threads 1 --seed 1"
report() { # LABEL DIR
	python3 - "$1" "$2/metrics.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[2]))
d = m.get("dist", {})
comm = f", {d['comm_seconds_mean']:.1f} s a rank in MPI, steps {'+'.join(map(str, d['steps_per_rank']))}" if d else ""
t = d.get("train_time_slowest_rank_s", m["train_time_s"])
print(f"{sys.argv[1]:<40} {m['train_images_per_s']:7.0f} images/s, test accuracy {m['test_accuracy']:.4f}, train {t:.1f} s, wall {m['wall_time_s']:.1f} s{comm}")
PYEOF
}
run_all() { # SUFFIX
	taskset -c 0 cairn-train-classifier $args --out $T/one$1 >/dev/null 2>&1 && report "one process, 1 thread (core 0)" $T/one$1
	for a in allreduce adpsgd "adpsgd --dist-batches fixed"; do
		o=$T/${a// /}$1
		mpirun --oversubscribe --bind-to core -np 2 cairn-train-classifier --dist $a $args --out $o >/dev/null 2>&1 &&
			report "${a/ --dist-batches/}, 2 ranks (cores 0, 1)" $o
	done
}
echo "-- $E epochs of 12,000 images, batch 64 a rank, test on 10,000"
run_all ""
echo "-- the same, with a busy loop sharing core 1 (rank 1 a straggler)"
taskset -c 1 sh -c 'while :; do :; done' &
hog=$!
run_all "-s"
