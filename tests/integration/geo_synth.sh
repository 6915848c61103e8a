#!/usr/bin/env bash
# cairn-synth: same seed, same bytes; truth classes sane; the true vectors and
# an error-free map rasterize (through cairn-rasterize, via EPSG:4326 for the
# map) to exactly the truth tiles; map errors show up in the map's counts.
source "$(dirname "$0")/../lib.sh"
command -v gdalbuildvrt >/dev/null || { skip geo_synth "gdal-bin not installed"; exit 0; }

mosaic() { # DIR OUT.vrt
	(cd "$1" && find . -name '*.tif' | sort) | sed "s|^\\.|$1|" >"$T/list"
	gdalbuildvrt -q -input_file_list "$T/list" "$2"
}
differ() { # A B: differing pixels of two same-grid 1-band rasters
	paste <(gdal_translate -q -of XYZ "$1" /vsistdout/) <(gdal_translate -q -of XYZ "$2" /vsistdout/) |
		awk '$3 != $6 {n++} END {print n + 0}'
}
digest() { (cd "$1" && find imagery truth -name '*.tif' | sort | xargs sha256sum | sha256sum | cut -c1-16); }

check_rc "synth a 2x2-tile scene" 0 cairn-synth --out "$T/a" --tiles 2 --seed 5 --preview-size 256
check_grep "summary line" 'scene 0: 4 tiles at zoom 17 \(1.03 m/px\), [0-9]+ roads, [0-9]+ buildings' "$T/.out"
check_eq "4 imagery tiles" "$(find "$T/a/imagery" -name '*.tif' | wc -l | tr -d ' ')" 4
check_eq "4 truth tiles" "$(find "$T/a/truth" -name '*.tif' | wc -l | tr -d ' ')" 4
f=$(cd "$T/a/imagery" && find . -name '*.tif' | head -1)
check_grep "imagery: RGB Byte EPSG:3857 256x256" 'Band 3 Block=256x[0-9]+ Type=Byte, ColorInterp=Blue' <(gdalinfo "$T/a/imagery/$f")
check_grep "imagery georeferenced in EPSG:3857" 'Pseudo-Mercator' <(gdalinfo "$T/a/imagery/$f")
check "preview.png written" test -s "$T/a/preview.png"
check_grep "preview is 3 panels" 'Size is 768, 256' <(gdalinfo "$T/a/preview.png")
check_grep "scene.json documents classes" '"building": 2' "$T/a/scene.json"

check_rc "same seed again" 0 cairn-synth --out "$T/b" --tiles 2 --seed 5 --preview-size 0
check_eq "same seed, same tile bytes" "$(digest "$T/b")" "$(digest "$T/a")"
check_rc "another seed" 0 cairn-synth --out "$T/c" --tiles 2 --seed 6 --preview-size 0
check "another seed, other tiles" test "$(digest "$T/c")" != "$(digest "$T/a")"

mosaic "$T/a/truth" "$T/truth.vrt"
hist=$(gdalinfo -hist "$T/truth.vrt" | awk '/buckets from -0.5 to 255.5/{getline; print $1, $2, $3, $4}')
read -r bg road bld other <<<"$hist"
total=$((bg + road + bld))
check "classes 0/1/2 only, roads ${road}, buildings ${bld} of ${total} px" \
	test "$other" = 0 -a $((road * 100 / total)) -ge 5 -a $((road * 100 / total)) -le 40 -a $((bld * 100 / total)) -ge 4 -a $((bld * 100 / total)) -le 45

# The true vectors (EPSG:3857) rasterize to exactly the truth.
check_rc "rasterize truth.gpkg" 0 cairn-rasterize --vector "$T/a/truth.gpkg" --class-field class --width-field width \
	--zoom 17 --bbox "$(gdalinfo -json "$T/truth.vrt" | python3 -c "
import json, sys
c = json.load(sys.stdin)['wgs84Extent']['coordinates'][0]
xs = [p[0] for p in c]; ys = [p[1] for p in c]
print('%.9f,%.9f,%.9f,%.9f' % (min(xs) + 1e-6, min(ys) + 1e-6, max(xs) - 1e-6, max(ys) - 1e-6))")" --out "$T/rt"
mosaic "$T/rt" "$T/rt.vrt"
check_eq "truth.gpkg rasterizes to the truth tiles" "$(differ "$T/rt.vrt" "$T/truth.vrt")" 0

# An error-free map, written in EPSG:4326 like OSM, also rasterizes to the truth.
check_rc "synth with every map error at 0" 0 cairn-synth --out "$T/z" --tiles 2 --seed 5 --preview-size 0 \
	--missing-buildings 0 --road-offset 0 --width-error 0 --outdated 0 --shift 0
check_grep "map.gpkg is EPSG:4326" 'EPSG.*4326|WGS 84' <(ogrinfo -so "$T/z/map.gpkg" roads)
BBOX=$(gdalinfo -json "$T/truth.vrt" | python3 -c "
import json, sys
c = json.load(sys.stdin)['wgs84Extent']['coordinates'][0]
xs = [p[0] for p in c]; ys = [p[1] for p in c]
print('%.9f,%.9f,%.9f,%.9f' % (min(xs) + 1e-6, min(ys) + 1e-6, max(xs) - 1e-6, max(ys) - 1e-6))")
check_rc "rasterize the error-free map" 0 cairn-rasterize --vector "$T/z/map.gpkg" --class-field class --width-field width \
	--zoom 17 --bbox "$BBOX" --out "$T/rz"
mosaic "$T/rz" "$T/rz.vrt"
d=$(differ "$T/rz.vrt" "$T/truth.vrt")
check "error-free map = truth (differing px: $d of $total, <= 0.01%)" test $((d * 10000)) -le "$total"

# With errors: the map lacks buildings and has demolished ones; rasterized it differs.
nb_true=$(ogrinfo -so "$T/a/truth.gpkg" buildings | awk '/Feature Count/{print $3}')
nb_map=$(ogrinfo -so "$T/a/map.gpkg" buildings | awk '/Feature Count/{print $3}')
miss=$(python3 -c "import json; print(json.load(open('$T/a/scene.json'))['counts']['missing_in_map'])")
ghost=$(python3 -c "import json; print(json.load(open('$T/a/scene.json'))['counts']['demolished_in_map'])")
check_eq "map buildings = true - missing + demolished" "$nb_map" "$((nb_true - miss + ghost))"
check "about 15% missing ($miss of $nb_true)" test $((miss * 100 / nb_true)) -ge 8 -a $((miss * 100 / nb_true)) -le 22
check_rc "rasterize the noisy map" 0 cairn-rasterize --vector "$T/a/map.gpkg" --class-field class --width-field width \
	--zoom 17 --bbox "$BBOX" --out "$T/rn"
mosaic "$T/rn" "$T/rn.vrt"
d=$(differ "$T/rn.vrt" "$T/truth.vrt")
check "noisy map differs from truth ($d px, >= 3%)" test $((d * 100)) -ge $((3 * total))
check_rc "bad option is a usage error" 2 cairn-synth --out "$T/x" --missing-buildings 2
# a rerun into the same folder leaves no tiles of the earlier scene
check_rc "rerun into the same folder, 1 tile" 0 cairn-synth --out "$T/c" --tiles 1 --seed 6 --preview-size 0
check_eq "only the new scene's truth tile" "$(find "$T/c/truth" -name '*.tif' | wc -l)" 1
check_eq "only the new scene's imagery tile" "$(find "$T/c/imagery" -name '*.tif' | wc -l)" 1
mkdir -p "$T/mine/imagery"
touch "$T/mine/imagery/keep.tif"
check_rc "a folder with imagery/ that is not a synth output is refused" 2 cairn-synth --out "$T/mine" --tiles 1
check "... and left alone" test -f "$T/mine/imagery/keep.tif"
# a scene off the edge of the world is a usage error, not a wrapped tile number
check_rc "zoom 1, 4 tiles: usage error" 2 cairn-synth --out "$T/w" --zoom 1 --tiles 4
check_grep "zoom 1, 4 tiles: says why" 'runs off the 2 x 2 tile world at zoom 1' "$T/.out"
check_rc "centre at the antimeridian: usage error" 2 cairn-synth --out "$T/w" --center -179.999,0 --tiles 2
check_rc "latitude 85.05: usage error naming the limit" 2 cairn-synth --out "$T/w" --center 0,85.05
check_grep "latitude limit named" 'LAT in -85..85' "$T/.out"
