#!/usr/bin/env bash
# cairn-tileset on a real cairn-synth scene: pack imagery + truth into a mask
# shard whose keys and bytes are the tiles' own (read back with
# gdal_translate), unpack it into tiles byte-identical to the truth that
# cairn-eval scores IoU 1; unlabelled packs, --shard I/N, and every bad input
# (missing, out of range, truncated, garbage, mismatched tiles; keyless,
# duplicate and foreign shards) refused with exit 2 and nothing written.
source "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || { skip geo_tileset "python3 not installed"; exit 0; }
command -v gdal_translate >/dev/null || { skip geo_tileset "gdal_translate not installed"; exit 0; }
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d'+sys.argv[2]))" "$@"; }

# A mask shard as python sees it (docs/formats.md): 64-byte header, records of
# C*H*W pixels, H*W mask, z x y (uint32 little-endian).
cat >"$T/shard.py" <<'PY'
import struct, sys
def read(path):
    d = open(path, 'rb').read()
    count, = struct.unpack_from('<Q', d, 16)
    c, h, w = struct.unpack_from('<III', d, 24)
    rb, = struct.unpack_from('<I', d, 44)
    recs = []
    for i in range(count):
        r = d[64 + i * rb: 64 + (i + 1) * rb]
        img, mask = r[:c * h * w], r[c * h * w: c * h * w + h * w]
        recs.append((struct.unpack_from('<III', r, rb - 12), img, mask))
    return (c, h, w), recs
PY
shardpy() { python3 -c "import sys; sys.path.insert(0, '$T'); from shard import read; $1" "${@:2}"; }
# every tile of DIR as z/x/y lines, in (x, y) order
tiles_of() { (cd "$1" && find . -name '*.tif' | sed 's|^\./||; s|\.tif$||' | sort -t/ -k1,1n -k2,2n -k3,3n); }
keys_of() { shardpy "
for k, _, _ in read(sys.argv[1])[1]: print('%d/%d/%d' % k)" "$1"; }
# no shard and no temp file of it left
nothing_at() { ! ls "$1"* >/dev/null 2>&1; }

check_rc "help" 0 cairn-tileset --help
check_grep "help has an example" 'example' "$T/.out"
for c in pack unpack; do
	check_rc "$c --help" 0 cairn-tileset $c --help
	check_grep "$c --help has an example" 'example' "$T/.out"
done
check_rc "no command: usage error" 2 cairn-tileset
check_rc "unknown command: usage error" 2 cairn-tileset frobnicate
check_rc "pack without --out: usage error" 2 cairn-tileset pack --imagery x
check_rc "pack --classes 0: usage error" 2 cairn-tileset pack --imagery x --out y --classes 0
check_rc "pack --classes 256: usage error" 2 cairn-tileset pack --imagery x --out y --classes 256
check_rc "pack --shard 2/2: usage error" 2 cairn-tileset pack --imagery x --out y --shard 2/2
check_rc "pack --missing-labels maybe: usage error" 2 cairn-tileset pack --imagery x --labels z --out y --missing-labels maybe
check_rc "unpack without --in: usage error" 2 cairn-tileset unpack --out y

# 3 x 3 tiles: an odd count, so the two shards differ in size
check_rc "synth" 0 cairn-synth --out "$T/s" --tiles 3 --seed 5 --preview-size 0
check_rc "pack imagery + truth" 0 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/s/truth" --out "$T/t.ds"
check_grep "pack: summary line" '9 of 9 tiles at zoom 17 \(shard 0/1\) -> .*t.ds: 3x256x256, 3 classes, labelled' "$T/.out"
check_rc "pack --threads 1" 0 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/s/truth" --out "$T/t1.ds" --threads 1
check_rc "pack --threads 3" 0 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/s/truth" --out "$T/t3.ds" --threads 3
check "the same shard for 1, 3 and the default threads" bash -c "cmp '$T/t.ds' '$T/t1.ds' && cmp '$T/t.ds' '$T/t3.ds'"
check_rc "pack --threads 0: usage error" 2 cairn-tileset pack --imagery "$T/s/imagery" --out "$T/t0.ds" --threads 0
check_rc "cairn-dataset info reads it" 0 cairn-dataset info "$T/t.ds" --json
cp "$T/.out" "$T/info.json"
check_eq "9 records" "$(jget "$T/info.json" "['records']")" 9
check_eq "3 x 256 x 256, 3 classes" \
	"$(jget "$T/info.json" "['channels']")x$(jget "$T/info.json" "['height']")x$(jget "$T/info.json" "['width']") $(jget "$T/info.json" "['classes']")" \
	"3x256x256 3"
check_eq "keys: every tile, in (x, y) order" "$(keys_of "$T/t.ds")" "$(tiles_of "$T/s/imagery")"
# the bytes of every record: the tile's pixels as GDAL reads them (band after band)
same=0
for k in $(tiles_of "$T/s/imagery"); do
	gdal_translate -q -of ENVI -co INTERLEAVE=BSQ "$T/s/imagery/$k.tif" "$T/img.raw" && gdal_translate -q -of ENVI "$T/s/truth/$k.tif" "$T/lab.raw" || break
	shardpy "
_, recs = read(sys.argv[1])
r = [r for r in recs if '%d/%d/%d' % r[0] == sys.argv[2]][0]
sys.exit(not (r[1] == open(sys.argv[3], 'rb').read() and r[2] == open(sys.argv[4], 'rb').read()))" \
		"$T/t.ds" "$k" "$T/img.raw" "$T/lab.raw" && same=$((same + 1))
done
check_eq "pixels and mask of all 9 records equal gdal_translate's bytes of the tiles" "$same" 9
check "the truth has roads and buildings (the comparison is not of empty masks)" shardpy "
import collections
n = collections.Counter(b''.join(m for _, _, m in read(sys.argv[1])[1]))
sys.exit(not (n[1] > 1000 and n[2] > 1000))" "$T/t.ds"

check_rc "unpack --like the imagery" 0 cairn-tileset unpack --in "$T/t.ds" --out "$T/u" --like "$T/s/imagery"
check_grep "unpack: summary line" '9 tiles of 256x256 in' "$T/.out"
check_eq "unpack: the truth's tiles" "$(tiles_of "$T/u")" "$(tiles_of "$T/s/truth")"
ident=0
for k in $(tiles_of "$T/s/truth"); do cmp -s "$T/u/$k.tif" "$T/s/truth/$k.tif" && ident=$((ident + 1)); done
check_eq "unpacked tiles byte-identical to the truth tiles (same writer, georeferencing, compression)" "$ident" 9
check_grep "unpacked tile: EPSG:3857" 'ID\["EPSG",3857\]' <(gdalinfo "$T/u/$(tiles_of "$T/u" | head -1).tif")
check_rc "unpack --threads 1" 0 cairn-tileset unpack --in "$T/t.ds" --out "$T/u1" --threads 1
check "the same tiles with 1 thread" diff -r "$T/u" "$T/u1"
check_rc "cairn-eval of the round trip" 0 cairn-eval --pred "$T/u" --truth "$T/s/truth" --out "$T/rt.json"
check_eq "round trip: mean IoU 1" "$(jget "$T/rt.json" "['mean_iou']")" 1.0
check_eq "round trip: road IoU 1" "$(jget "$T/rt.json" "['classes']['road']['iou']")" 1.0
check_eq "round trip: building IoU 1" "$(jget "$T/rt.json" "['classes']['building']['iou']")" 1.0
check_eq "round trip: no bad values, no missing tile" "$(jget "$T/rt.json" "['bad_values']") $(jget "$T/rt.json" "['missing_pred_tiles']")" "0 0"
ls "$T/u"/*/*/*.tmp* >/dev/null 2>&1 && not_ok "unpack left temp files" || ok "unpack left no temp files"

# without labels: imagery to predict on
check_rc "pack without --labels" 0 cairn-tileset pack --imagery "$T/s/imagery" --out "$T/p.ds"
check_grep "unlabelled summary" 'unlabelled \(masks 255\)' "$T/.out"
check "without labels: every mask byte 255, the same keys and pixels" shardpy "
_, a = read(sys.argv[1]); _, b = read(sys.argv[2])
sys.exit(not (len(a) == 9 and all(m == b'\xff' * 65536 for _, _, m in a)
              and [(k, i) for k, i, _ in a] == [(k, i) for k, i, _ in b]))" "$T/p.ds" "$T/t.ds"
check_rc "unpack the unlabelled shard" 0 cairn-tileset unpack --in "$T/p.ds" --out "$T/pu"
check_rc "cairn-eval of all-255 tiles" 0 cairn-eval --pred "$T/pu" --truth "$T/s/truth" --out "$T/pu.json"
check_eq "255 is written as it is: every pixel a bad value for cairn-eval" "$(jget "$T/pu.json" "['bad_values']")" $((9 * 65536))

# --shard I/N: tile k goes to shard k mod N
check_rc "pack --shard 0/2" 0 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/s/truth" --out "$T/s0.ds" --shard 0/2
check_grep "shard 0/2: 5 of 9" '5 of 9 tiles' "$T/.out"
check_rc "pack --shard 1/2" 0 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/s/truth" --out "$T/s1.ds" --shard 1/2
check_grep "shard 1/2: 4 of 9" '4 of 9 tiles' "$T/.out"
check_eq "shard 0/2: tiles 0, 2, 4, 6, 8" "$(keys_of "$T/s0.ds")" "$(tiles_of "$T/s/imagery" | sed -n '1~2p')"
check_eq "shard 1/2: tiles 1, 3, 5, 7" "$(keys_of "$T/s1.ds")" "$(tiles_of "$T/s/imagery" | sed -n '2~2p')"
check_eq "shards disjoint and covering every tile" "$( (keys_of "$T/s0.ds"; keys_of "$T/s1.ds") | sort)" "$(tiles_of "$T/s/imagery" | sort)"
check "a shard's records are those of the whole pack" shardpy "
_, a = read(sys.argv[1]); _, b = read(sys.argv[2])
sys.exit(not (a == b[1::2]))" "$T/s1.ds" "$T/t.ds"
check_rc "pack --shard 12/16: no tile of 9" 0 cairn-tileset pack --imagery "$T/s/imagery" --out "$T/e.ds" --shard 12/16
check_eq "an empty shard still has the scene's shape" "$(shardpy "print(read(sys.argv[1])[0], len(read(sys.argv[1])[1]))" "$T/e.ds")" "(3, 256, 256) 0"

# --zoom: with two zoom folders one must be chosen
mkdir -p "$T/z2"
cp -r "$T/s/imagery/17" "$T/z2/17"
cp -r "$T/s/imagery/17" "$T/z2/16"
check_rc "two zoom folders without --zoom: bad input" 2 cairn-tileset pack --imagery "$T/z2" --out "$T/z.ds"
check_grep "... says pick one" 'several zoom folders.*--zoom' "$T/.out"
check_rc "--zoom 17 picks one" 0 cairn-tileset pack --imagery "$T/z2" --out "$T/z.ds" --zoom 17

# bad input: exit 2, the file named, no shard (and no temp file) left
first=$(tiles_of "$T/s/imagery" | head -1)
mid=$(tiles_of "$T/s/imagery" | sed -n 5p)
cp -r "$T/s/truth" "$T/lab"
rm "$T/lab/$mid.tif"
check_rc "a missing label tile: bad input" 2 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/lab" --out "$T/x.ds"
check_grep "... names it and says what to do" "lab/$mid.tif: missing: no label tile for .*imagery/$mid.tif; .*cairn-rasterize --like.*--missing-labels ignore" "$T/.out"
check "... no shard left" nothing_at "$T/x.ds"
check_rc "--missing-labels ignore packs it unlabelled" 0 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/lab" --out "$T/x.ds" --missing-labels ignore
check_grep "... and says so" '1 tiles had no label tile' "$T/.out"
check "... its mask all 255, the others the truth" shardpy "
_, a = read(sys.argv[1]); _, b = read(sys.argv[2])
sys.exit(not (a[4][2] == b'\xff' * 65536 and a[:4] == b[:4] and a[5:] == b[5:]))" "$T/x.ds" "$T/t.ds"
rm -f "$T/x.ds"
check_rc "a missing --labels folder: bad input" 2 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/nolabels" --out "$T/x.ds"
check_grep "... names it" 'nolabels: no zoom 17 folder' "$T/.out"

# a label value out of range: 7 at (col 10, row 20) of one tile
python3 -c "
import sys
d = bytearray(65536); d[20 * 256 + 10] = 7
open(sys.argv[1], 'wb').write(d)" "$T/bad.raw"
printf 'ENVI\nsamples = 256\nlines = 256\nbands = 1\nheader offset = 0\ndata type = 1\ninterleave = bsq\nbyte order = 0\n' >"$T/bad.hdr"
cp "$T/s/truth/$mid.tif" "$T/lab/$mid.tif"
gdal_translate -q -of GTiff "$T/bad.raw" "$T/lab/$mid.tif"
check_rc "a label value 7 with 3 classes: bad input" 2 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/lab" --out "$T/x.ds"
check_grep "... names the tile and the pixel" "lab/$mid.tif: value 7 at pixel \(col 10, row 20\) is no class 0..2 \(3 classes\) nor 255" "$T/.out"
check "... no shard left" nothing_at "$T/x.ds"
check_rc "--classes 8 takes it" 0 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/lab" --out "$T/x.ds" --classes 8
rm -f "$T/x.ds"
gdal_translate -q -b 1 -b 2 "$T/s/imagery/$mid.tif" "$T/lab/$mid.tif"
check_rc "a 2-band label tile: bad input" 2 cairn-tileset pack --imagery "$T/s/imagery" --labels "$T/lab" --out "$T/x.ds"
check_grep "... says what a label tile is" "lab/$mid.tif: 256x256, 2 bands of Byte; a label tile is 1 band of Byte, 256x256" "$T/.out"

# damaged or mismatched imagery; an earlier shard at --out is left as it was
cp "$T/t.ds" "$T/keep.ds"
cp -r "$T/s/imagery" "$T/im"
f="$T/im/$mid.tif"
head -c $(($(stat -c %s "$T/s/imagery/$mid.tif") / 2)) "$T/s/imagery/$mid.tif" >"$f"
check_rc "a truncated imagery tile: bad input" 2 cairn-tileset pack --imagery "$T/im" --out "$T/keep.ds"
check_grep "... names it" "im/$mid.tif: cannot read its pixels \(corrupt or truncated\?\): .*Read error" "$T/.out"
check "... the earlier shard untouched, no temp file" bash -c "cmp -s '$T/t.ds' '$T/keep.ds' && ! ls '$T'/keep.ds.* 2>/dev/null"
head -c 300 "$T/s/imagery/$mid.tif" >"$f"
check_rc "a tile cut in its header: bad input" 2 cairn-tileset pack --imagery "$T/im" --out "$T/x.ds"
check_grep "... names it" "im/$mid.tif: cannot (open|read)" "$T/.out"
head -c 5000 /dev/urandom >"$f"
check_rc "a garbage .tif: bad input" 2 cairn-tileset pack --imagery "$T/im" --out "$T/x.ds"
check_grep "... names it with GDAL's reason" "im/$mid.tif: cannot open: .*not recognized" "$T/.out"
: >"$f"
check_rc "an empty .tif: bad input" 2 cairn-tileset pack --imagery "$T/im" --out "$T/x.ds"
check_grep "... says so" "im/$mid.tif: cannot open: an empty file" "$T/.out"
gdal_translate -q -outsize 128 128 "$T/s/imagery/$mid.tif" "$f"
check_rc "an imagery tile of another size: bad input" 2 cairn-tileset pack --imagery "$T/im" --out "$T/x.ds"
check_grep "... names both tiles" "im/$mid.tif: 128x128, 3 bands of Byte, but the first tile .*im/$first.tif is 256x256, 3 bands of Byte" "$T/.out"
gdal_translate -q -ot UInt16 "$T/s/imagery/$mid.tif" "$f"
check_rc "an imagery tile of another type: bad input" 2 cairn-tileset pack --imagery "$T/im" --out "$T/x.ds"
check_grep "... names both" "im/$mid.tif: 256x256, 3 bands of UInt16, but the first tile" "$T/.out"
rm -f "$f"
mkdir -p "$T/im/17/999999"
cp "$T/s/imagery/$mid.tif" "$T/im/17/999999/5.tif"
check_rc "a folder name that is no XYZ tile: bad input" 2 cairn-tileset pack --imagery "$T/im" --out "$T/x.ds"
check_grep "... names it" "im/17/999999/5.tif: 17/999999/5 is no XYZ tile" "$T/.out"
check "no shard left by any of them" nothing_at "$T/x.ds"
rm -rf "$T/im"

# unpack: bad shards refused before any tile is written
check_rc "synth another scene" 0 cairn-synth --out "$T/o" --tiles 2 --seed 5 --scene 3 --preview-size 0
check_rc "unpack --like the other scene's imagery: bad input" 2 cairn-tileset unpack --in "$T/t.ds" --out "$T/v" --like "$T/o/imagery"
check_grep "... names the tile missing there" 'record 0 is tile 17/[0-9]+/[0-9]+, but .*o/imagery/17/.* does not exist: a shard of another scene' "$T/.out"
check "... and writes no tile" bash -c "! find '$T/v' -name '*.tif' 2>/dev/null | grep -q ."
cp -r "$T/s/imagery" "$T/im2"
check_rc "unpack --out the --like folder: bad input" 2 cairn-tileset unpack --in "$T/t.ds" --out "$T/im2/" --like "$T/im2"
check_grep "... says the tiles would be replaced" "is the --like folder .*im2: its tiles would be replaced" "$T/.out"
check "... and leaves the imagery as it was" diff -r "$T/s/imagery" "$T/im2"
rm -rf "$T/im2"
python3 -c "
import struct, sys, zlib
d = bytearray(open(sys.argv[1], 'rb').read())
rb, = struct.unpack_from('<I', d, 44)
struct.pack_into('<III', d, 64 + 3 * rb - 12, 0xFFFFFFFF, 0, 0)  # record 2: no key
struct.pack_into('<I', d, 48, zlib.crc32(bytes(d[64:])))
struct.pack_into('<I', d, 60, zlib.crc32(bytes(d[:60])))
open(sys.argv[2], 'wb').write(d)" "$T/t.ds" "$T/nokey.ds"
check_rc "a valid shard with a keyless record (cairn-dataset verifies it)" 0 cairn-dataset info "$T/nokey.ds"
check_rc "unpack of a record without a key: bad input" 2 cairn-tileset unpack --in "$T/nokey.ds" --out "$T/v"
check_grep "... names the record" 'nokey.ds: record 2 has no tile key' "$T/.out"
check "... and writes no tile" bash -c "! find '$T/v' -name '*.tif' 2>/dev/null | grep -q ."
check_rc "merge a shard with itself" 0 cairn-dataset merge --out "$T/dup.ds" "$T/t.ds" "$T/t.ds"
check_rc "unpack of two records of one tile: bad input" 2 cairn-tileset unpack --in "$T/dup.ds" --out "$T/v"
check_grep "... names both" 'dup.ds: records 0 and 9 are both tile' "$T/.out"
head -c 1000 "$T/t.ds" >"$T/short.ds"
check_rc "unpack of a truncated shard: bad input" 2 cairn-tileset unpack --in "$T/short.ds" --out "$T/v"
check_grep "... says so" 'short.ds: truncated' "$T/.out"
check_rc "unpack of a missing shard: bad input" 2 cairn-tileset unpack --in "$T/none.ds" --out "$T/v"
exit $failed
