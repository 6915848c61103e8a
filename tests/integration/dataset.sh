#!/usr/bin/env bash
# cairn-dataset on the real Fashion-MNIST (Debian package dataset-fashion-mnist):
# import, info, split, imbalance, and clear errors (exit 2) on damaged input.
source "$(dirname "$0")/../lib.sh"

D=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$D/train-images-idx3-ubyte.gz" ]; then
	skip "fashion-mnist import" "no $D/train-images-idx3-ubyte.gz (apt-get install dataset-fashion-mnist)"
	exit 0
fi
json_field() { # FILE KEY: a top-level value from cairn-dataset info --json
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if not isinstance(v,list) else " ".join(map(str,v)))' "$1" "$2"
}

# training machines have no GDAL: the data tools must not need it
if command -v ldd >/dev/null; then
	check "cairn-dataset does not link GDAL" bash -c "! ldd '$(command -v cairn-dataset)' | grep -q gdal"
fi
check_rc "help" 0 cairn-dataset --help
check_grep "help has an example" 'example' "$T/.out"
for c in import-idx info split imbalance merge; do
	check_rc "$c --help" 0 cairn-dataset $c --help
	check_grep "$c --help has an example" 'example' "$T/.out"
done
check_rc "no command: usage error" 2 cairn-dataset
check_rc "unknown command: usage error" 2 cairn-dataset frobnicate
check_rc "import-idx without --out: usage error" 2 cairn-dataset import-idx --images x --labels y

check_rc "import train" 0 cairn-dataset import-idx --images "$D/train-images-idx3-ubyte.gz" \
	--labels "$D/train-labels-idx1-ubyte.gz" --out "$T/train.ds"
check_rc "import test" 0 cairn-dataset import-idx --images "$D/t10k-images-idx3-ubyte.gz" \
	--labels "$D/t10k-labels-idx1-ubyte.gz" --out "$T/test.ds"
cairn-dataset info "$T/train.ds" --json >"$T/train.json"
cairn-dataset info "$T/test.ds" --json >"$T/test.json"
check_eq "train records" "$(json_field "$T/train.json" records)" 60000
check_eq "test records" "$(json_field "$T/test.json" records)" 10000
check_eq "train shape" "$(json_field "$T/train.json" channels)x$(json_field "$T/train.json" height)x$(json_field "$T/train.json" width)" 1x28x28
check_eq "classes" "$(json_field "$T/train.json" classes)" 10
check_eq "train histogram: 6000 per class" "$(json_field "$T/train.json" histogram)" "$(printf '6000 %.0s' {1..10} | sed 's/ $//')"
check_eq "test histogram: 1000 per class" "$(json_field "$T/test.json" histogram)" "$(printf '1000 %.0s' {1..10} | sed 's/ $//')"
check_eq "checksum verified" "$(json_field "$T/train.json" checksum)" ok
check_eq "shard size" "$(stat -c %s "$T/train.ds")" $((64 + 60000 * 788))
# Fashion-MNIST's published pixel mean/std (x/255): 0.2860 / 0.3530
check_eq "train pixel mean" "$(python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["mean"][0])' "$T/train.json")" 0.2860
check_rc "info (human)" 0 cairn-dataset info "$T/test.ds"
check_grep "info shows the shape" '1 x 28 x 28' "$T/.out"

# the uncompressed IDX gives the same shard, byte for byte
gzip -dc "$D/t10k-images-idx3-ubyte.gz" >"$T/t10k-images-idx3-ubyte"
gzip -dc "$D/t10k-labels-idx1-ubyte.gz" >"$T/t10k-labels-idx1-ubyte"
check_rc "import uncompressed" 0 cairn-dataset import-idx --images "$T/t10k-images-idx3-ubyte" \
	--labels "$T/t10k-labels-idx1-ubyte" --out "$T/test-raw.ds"
check "gzip and plain give the same shard" cmp -s "$T/test.ds" "$T/test-raw.ds"

# split: stratified, seeded
check_rc "split 0.9" 0 cairn-dataset split "$T/train.ds" --fraction 0.9 --seed 1 --out "$T/a.ds" --rest "$T/b.ds"
cairn-dataset info "$T/a.ds" --json >"$T/a.json"
cairn-dataset info "$T/b.ds" --json >"$T/b.json"
check_eq "split: 54000 in A" "$(json_field "$T/a.json" records)" 54000
check_eq "split: 600 per class in B" "$(json_field "$T/b.json" histogram)" "$(printf '600 %.0s' {1..10} | sed 's/ $//')"
cairn-dataset split "$T/train.ds" --fraction 0.9 --seed 1 --out "$T/a2.ds" --rest "$T/b2.ds" >/dev/null
check "split: same seed, same bytes" cmp -s "$T/b.ds" "$T/b2.ds"
check_rc "split: bad fraction" 2 cairn-dataset split "$T/train.ds" --fraction 1.5 --seed 1 --out "$T/x" --rest "$T/y"

# imbalance: zipf s=1 over 10 classes of 6000: sorted counts 6000/r
check_rc "imbalance" 0 cairn-dataset imbalance "$T/train.ds" --zipf 1 --seed 7 --out "$T/lt.ds"
cairn-dataset info "$T/lt.ds" --json >"$T/lt.json"
check_eq "imbalance: sorted counts are floor(6000 / r)" \
	"$(json_field "$T/lt.json" histogram | tr ' ' '\n' | sort -rn | tr '\n' ' ' | sed 's/ $//')" \
	"6000 3000 2000 1500 1200 1000 857 750 666 600"

check_eq "imbalance: info fits s = 1" "$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["zipf_s"])' "$T/lt.json")" 1.00
check_eq "balanced: info fits s = 0" "$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["zipf_s"])' "$T/train.json")" 0.00

# merge: test + test = 20000 records, 2000 per class
check_rc "merge" 0 cairn-dataset merge --out "$T/m.ds" "$T/test.ds" "$T/test.ds"
cairn-dataset info "$T/m.ds" --json >"$T/m.json"
check_eq "merge: histogram" "$(json_field "$T/m.json" histogram)" "$(printf '2000 %.0s' {1..10} | sed 's/ $//')"
check_rc "merge: missing input, exit 2" 2 cairn-dataset merge --out "$T/m2.ds" "$T/test.ds" "$T/nope.ds"
check "merge: no output on failure" test ! -e "$T/m2.ds"

# damaged input: clear message naming the file and offset, exit 2
head -c 3000000 "$D/train-images-idx3-ubyte.gz" >"$T/cut-images.gz"
check_rc "truncated IDX (gzip): exit 2" 2 cairn-dataset import-idx --images "$T/cut-images.gz" \
	--labels "$D/train-labels-idx1-ubyte.gz" --out "$T/cut.ds"
check_grep "truncated IDX (gzip): message names file and byte" 'cut-images.gz: truncated at byte [0-9]+ \(uncompressed\)' "$T/.out"
check "truncated IDX: no shard left behind" test ! -e "$T/cut.ds"
head -c 100000 "$T/t10k-images-idx3-ubyte" >"$T/cut-images"
check_rc "truncated IDX (plain): exit 2" 2 cairn-dataset import-idx --images "$T/cut-images" \
	--labels "$T/t10k-labels-idx1-ubyte" --out "$T/cut.ds"
check_grep "truncated IDX (plain): message names file and byte" 'cut-images: truncated at byte 100000' "$T/.out"
check_rc "labels as images: exit 2" 2 cairn-dataset import-idx --images "$T/t10k-labels-idx1-ubyte" \
	--labels "$T/t10k-labels-idx1-ubyte" --out "$T/cut.ds"
check_grep "labels as images: message" 'byte 3: 1 dimensions, expected 3' "$T/.out"
head -c 1000000 "$T/test.ds" >"$T/cut.ds"
check_rc "truncated shard: exit 2" 2 cairn-dataset info "$T/cut.ds"
check_grep "truncated shard: message names file and byte" 'cut.ds: truncated at byte 1000000' "$T/.out"
cp "$T/test.ds" "$T/flip.ds"
printf '\x55' | dd of="$T/flip.ds" bs=1 seek=500000 conv=notrunc 2>/dev/null
check_rc "corrupt shard: exit 2" 2 cairn-dataset info "$T/flip.ds"
check_grep "corrupt shard: checksum message" 'flip.ds: data checksum mismatch' "$T/.out"
check_rc "missing file: exit 2" 2 cairn-dataset info "$T/nope.ds"
check_rc "unwritable output: exit 1" 1 cairn-dataset split "$T/test.ds" --fraction 0.5 --seed 1 \
	--out "$T/test.ds/a.ds" --rest "$T/b3.ds"
check_grep "unwritable output: message names the output" 'test.ds/a.ds: cannot create' "$T/.out"

# split, merge and imbalance read every byte: they check the data checksum
check_rc "split a corrupt shard: exit 2" 2 cairn-dataset split "$T/flip.ds" --fraction 0.5 --seed 1 \
	--out "$T/fa.ds" --rest "$T/fb.ds"
check_grep "split a corrupt shard: message" 'flip.ds: data checksum mismatch' "$T/.out"
check "split a corrupt shard: no output" test ! -e "$T/fa.ds" -a ! -e "$T/fb.ds"
check_rc "merge a corrupt shard: exit 2" 2 cairn-dataset merge --out "$T/fm.ds" "$T/test.ds" "$T/flip.ds"
check_grep "merge a corrupt shard: message" 'flip.ds: data checksum mismatch' "$T/.out"
check "merge a corrupt shard: no output" test ! -e "$T/fm.ds"
check_rc "imbalance a corrupt shard: exit 2" 2 cairn-dataset imbalance "$T/flip.ds" --zipf 1 --seed 1 --out "$T/fi.ds"

# split: both outputs or neither; one file named twice is refused
check_rc "split --out X --rest X: exit 2" 2 cairn-dataset split "$T/test.ds" --fraction 0.5 --seed 1 \
	--out "$T/same.ds" --rest "$T/./same.ds"
check_grep "split --out X --rest X: message" 'same.ds are the same file' "$T/.out"
check "split --out X --rest X: nothing written" test ! -e "$T/same.ds"
check_rc "split, --rest in a missing folder: exit 1" 1 cairn-dataset split "$T/test.ds" --fraction 0.5 \
	--seed 1 --out "$T/first.ds" --rest "$T/nodir/rest.ds"
check "split, --rest in a missing folder: --out not written either" test ! -e "$T/first.ds"

# a FIFO (like /dev/null or /dev/stdout) as an output is written into, not replaced
mkfifo "$T/rest.fifo"
cat "$T/rest.fifo" >"$T/rest.bytes" &
check_rc "split --rest FIFO" 0 cairn-dataset split "$T/test.ds" --fraction 0.5 --seed 1 \
	--out "$T/half.ds" --rest "$T/rest.fifo"
wait
check "split --rest FIFO: still a FIFO" test -p "$T/rest.fifo"
check_eq "split --rest FIFO: the reader got the shard" "$(stat -c %s "$T/rest.bytes")" $((64 + 5000 * 788))
cairn-dataset split "$T/test.ds" --fraction 0.5 --seed 1 --out "$T/h2.ds" --rest "$T/r2.ds" >/dev/null
check "split --rest FIFO: same bytes as a file" cmp -s "$T/rest.bytes" "$T/r2.ds"
