#!/usr/bin/env bash
# bench/data.sh: dataset import time and loader throughput (images/s) on
# Fashion-MNIST, with and without augmentation and prefetch, next to a memcpy
# baseline measured in the same run (bench/data_loader.c). Run by `make bench`.
set -eu
: "${CAIRN_BIN:?run through make bench}" "${CAIRN_BENCH:?run through make bench}"
D=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d /tmp/cairn-bench-data.XXXXXX)
trap 'rm -rf "$T"' EXIT
echo "== data: shard import and loader throughput"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the cores lowers every figure, the prefetch overlap most)"
if [ ! -f "$D/train-images-idx3-ubyte.gz" ]; then
	echo "skipped: no Fashion-MNIST in $D (apt-get install dataset-fashion-mnist)"
	exit 0
fi
t0=$(date +%s.%N)
"$CAIRN_BIN/cairn-dataset" import-idx --images "$D/train-images-idx3-ubyte.gz" \
	--labels "$D/train-labels-idx1-ubyte.gz" --out "$T/train.ds" >/dev/null
t1=$(date +%s.%N)
gzip -dc "$D/train-images-idx3-ubyte.gz" >/dev/null
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
	printf "import-idx train (60000 images, gzip): %.2f s; gzip -dc of the images alone (baseline): %.2f s\n", b - a, c - b }'
"$CAIRN_BENCH/data_loader" "$T/train.ds" "${DATA_EPOCHS:-3}" "${DATA_BATCH:-128}"
# larger images, where the per-image work dominates (an RGB 128x128 tile set)
"$CAIRN_BENCH/data_loader" --make-synthetic "$T/rgb.ds" 3 128 128 2000
"$CAIRN_BENCH/data_loader" "$T/rgb.ds" 3 32
