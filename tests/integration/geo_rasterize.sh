#!/usr/bin/env bash
# cairn-rasterize agrees with gdal_rasterize on the same XYZ grid: for a small
# hand-made map in EPSG:4326 (polygons with a class field, a polygon with a hole,
# roads as lines with a width field), the same map in UTM and in Lambert-93,
# and for real files from Debian's R packages (London building footprints in
# the British national grid; North Carolina counties in NAD27, lat/lon order).
source "$(dirname "$0")/../lib.sh"
command -v gdal_rasterize >/dev/null || { skip geo_rasterize "gdal-bin not installed"; exit 0; }

# pixels_differ A B: how many pixels of two 1-band rasters of the same grid differ.
pixels_differ() {
	paste <(gdal_translate -q -of XYZ "$1" /vsistdout/) <(gdal_translate -q -of XYZ "$2" /vsistdout/) |
		awk '$3 != $6 {n++} END {print n + 0}'
}
# mosaic DIR OUT.vrt: the tiles of DIR as one raster (they share one grid).
mosaic() {
	(cd "$1" && find . -name '*.tif' | sort) | sed "s|^\.|$1|" >"$T/list"
	gdalbuildvrt -q -input_file_list "$T/list" "$2"
}
# reference DIR REFGPKG SQL: gdal_rasterize the reference over exactly the
# tiles cairn-rasterize wrote in DIR (same origin, size, pixel grid) and compare;
# prints "tiles differing_pixels labelled_pixels".
reference() {
	local dir=$1 ref=$2 sql=$3 tiles
	mosaic "$dir" "$T/mine.vrt"
	tiles=$(wc -l <"$T/list" | tr -d ' ')
	read -r w s e n nx ny < <(gdalinfo -json "$T/mine.vrt" | python3 -c "
import json, sys
j = json.load(sys.stdin); g = j['geoTransform']; nx, ny = j['size']
print('%.10f %.10f %.10f %.10f %d %d' % (g[0], g[3] + ny * g[5], g[0] + nx * g[1], g[3], nx, ny))")
	gdal_rasterize -q -init 0 -a class -ot Byte -te "$w" "$s" "$e" "$n" -ts "$nx" "$ny" \
		-a_srs EPSG:3857 -dialect SQLite -sql "$sql" "$ref" "$T/ref.tif"
	paste <(gdal_translate -q -of XYZ "$T/mine.vrt" /vsistdout/) <(gdal_translate -q -of XYZ "$T/ref.tif" /vsistdout/) |
		awk -v t="$tiles" '$3 != $6 {d++} $6 != 0 {l++} END {print t, d + 0, l + 0}'
}
# buffered_ref SRC OUT: the lines of SRC buffered in EPSG:3857 by width/2 ground
# metres (times 1/cos(lat) = cosh(y/R) at the centroid), polygons as they are.
buffered_ref() {
	ogr2ogr -f GPKG "$T/3857.gpkg" "$1" -t_srs EPSG:3857 -nln m
	ogr2ogr -f GPKG "$2" "$T/3857.gpkg" -nln ref -dialect SQLite -sql "
		SELECT CASE WHEN GeometryType(geom) LIKE '%LINESTRING%'
			THEN ST_Buffer(geom, width / 2.0 * (exp(ST_Y(ST_Centroid(geom)) / 6378137.0)
				+ exp(-ST_Y(ST_Centroid(geom)) / 6378137.0)) / 2.0, 8)
			ELSE geom END AS geom, class FROM m WHERE GeometryType(geom) NOT LIKE '%POINT%'"
	rm -f "$T/3857.gpkg"
}

# A small map in Paris: two buildings (class 2), one with a courtyard (a hole),
# an L-shaped one, two roads (class 1) 8 m and 14 m wide, a point (skipped).
cat >"$T/map.geojson" <<'JSON'
{"type": "FeatureCollection", "features": [
{"type": "Feature", "properties": {"class": 2, "width": null}, "geometry": {"type": "Polygon", "coordinates": [
  [[2.3410, 48.8510], [2.3440, 48.8510], [2.3440, 48.8530], [2.3410, 48.8530], [2.3410, 48.8510]],
  [[2.3420, 48.8516], [2.3430, 48.8516], [2.3430, 48.8524], [2.3420, 48.8524], [2.3420, 48.8516]]]}},
{"type": "Feature", "properties": {"class": 2, "width": null}, "geometry": {"type": "Polygon", "coordinates": [
  [[2.3460, 48.8540], [2.3490, 48.8540], [2.3490, 48.8545], [2.3470, 48.8545], [2.3470, 48.8560], [2.3460, 48.8560], [2.3460, 48.8540]]]}},
{"type": "Feature", "properties": {"class": 1, "width": 8}, "geometry": {"type": "LineString", "coordinates": [
  [2.3390, 48.8500], [2.3450, 48.8535], [2.3510, 48.8520]]}},
{"type": "Feature", "properties": {"class": 1, "width": 14}, "geometry": {"type": "MultiLineString", "coordinates": [
  [[2.3400, 48.8570], [2.3500, 48.8565]], [[2.3455, 48.8500], [2.3452, 48.8575]]]}},
{"type": "Feature", "properties": {"class": 3, "width": null}, "geometry": {"type": "Point", "coordinates": [2.345, 48.853]}}
]}
JSON
buffered_ref "$T/map.geojson" "$T/ref.gpkg"
SQL="SELECT * FROM ref ORDER BY class"
check_rc "rasterize a GeoJSON map at zoom 17" 0 cairn-rasterize --vector "$T/map.geojson" --class-field class \
	--width-field width --zoom 17 --out "$T/r4326"
check_grep "1 point skipped" 'skipped: 1 points' "$T/.out"
read -r tiles diff lab < <(reference "$T/r4326" "$T/ref.gpkg" "$SQL")
check "tiles written ($tiles) and labels in them ($lab px)" test "$tiles" -ge 4 -a "$lab" -gt 5000
check_eq "identical to gdal_rasterize on $tiles tiles" "$diff" 0
f=$(cd "$T/r4326" && find . -name '*.tif' | head -1)
check_grep "EPSG:3857 tile" 'Pseudo-Mercator|3857' <(gdalsrsinfo -o epsg "$T/r4326/$f"; gdalinfo "$T/r4326/$f")
check_grep "256x256 Byte" 'Size is 256, 256' <(gdalinfo "$T/r4326/$f")
# The geotransform is the tile's exact bounds.
z=$(echo "$f" | cut -d/ -f2) x=$(echo "$f" | cut -d/ -f3) y=$(basename "$f" .tif)
want=$(python3 -c "o=20037508.342789244; t=2*o/2**$z; print('%.6f,%.6f' % (-o+$x*t, o-$y*t))")
got=$(gdalinfo -json "$T/r4326/$f" | python3 -c "import json,sys; g=json.load(sys.stdin)['geoTransform']; print('%.6f,%.6f' % (g[0], g[3]))")
check_eq "geotransform origin is the tile corner" "$got" "$want"

# Shards: two halves into one folder give the same tiles as one run.
check_rc "shard 0/2" 0 cairn-rasterize --vector "$T/map.geojson" --class-field class --width-field width --zoom 17 --out "$T/sh" --shard 0/2
check_rc "shard 1/2" 0 cairn-rasterize --vector "$T/map.geojson" --class-field class --width-field width --zoom 17 --out "$T/sh" --shard 1/2
check_eq "shards = one run" "$(cd "$T/sh" && find . -name '*.tif' | sort | xargs sha256sum | sha256sum)" \
	"$(cd "$T/r4326" && find . -name '*.tif' | sort | xargs sha256sum | sha256sum)"

# The same map in other CRSs gives the same tiles (up to reprojection rounding).
ogr2ogr -f GPKG "$T/map_utm.gpkg" "$T/map.geojson" -t_srs EPSG:32631
ogr2ogr -f GeoJSON "$T/map_l93.json" "$T/map.geojson" -t_srs EPSG:2154
for m in map_utm.gpkg map_l93.json; do
	check_rc "rasterize $m" 0 cairn-rasterize --vector "$T/$m" --class-field class --width-field width \
		--zoom 17 --out "$T/r_$m"
	mosaic "$T/r4326" "$T/a.vrt"
	mosaic "$T/r_$m" "$T/b.vrt"
	total=$(pixels_differ "$T/a.vrt" "$T/b.vrt")
	check "$m gives the EPSG:4326 tiles (differing px $total <= 20)" test "$total" -le 20
done
check_rc "a layer that is not there is bad input" 2 cairn-rasterize --vector "$T/map_utm.gpkg" --layer nope --zoom 17 --out "$T/x"
# A wrong CRS (UTM metres declared as degrees) is bad input, said once, not
# empty tiles after a flood of PROJ errors.
ogr2ogr -f GeoJSON "$T/wrong.geojson" "$T/map_utm.gpkg" -a_srs EPSG:4326
check_rc "wrong CRS: exit 2" 2 cairn-rasterize --vector "$T/wrong.geojson" --zoom 17 \
	--bbox=2.33,48.84,2.36,48.86 --out "$T/wrong"
check_grep "wrong CRS: one line with the count and the advice" \
	'5 of 5 features could not be transformed from EPSG:4326 .*wrong CRS\? give the data.s CRS with --srs' "$T/.out"
check_eq "wrong CRS: no PROJ error flood" "$(wc -l <"$T/.out")" 1
check "wrong CRS: no tiles" test ! -e "$T/wrong"
# A misspelt or non-integer field is bad input, not a silent default.
check_rc "--class-field misspelt: exit 2" 2 cairn-rasterize --vector "$T/map.geojson" --class-field clas \
	--zoom 17 --out "$T/x"
check_grep "--class-field misspelt: names the field and lists the fields" \
	"has no integer field 'clas' \(fields: class, width\)" "$T/.out"
ogr2ogr -f GeoJSON "$T/kind.geojson" "$T/map.geojson" -dialect SQLite -sql "SELECT *, 'house' AS kind FROM map"
check_rc "--class-field not an integer: exit 2" 2 cairn-rasterize --vector "$T/kind.geojson" \
	--class-field kind --zoom 17 --out "$T/x"
check_grep "--class-field not an integer: message" "field 'kind' is String, not an integer" "$T/.out"
check_rc "--width-field misspelt: exit 2" 2 cairn-rasterize --vector "$T/map.geojson" --class-field class \
	--width-field widht --zoom 17 --out "$T/x"
check_grep "--width-field misspelt: message" "no layer has a field 'widht'" "$T/.out"
check_rc "a missing vector file is bad input" 2 cairn-rasterize --vector "$T/nope.gpkg" --zoom 17 --out "$T/x"
check_grep "a missing vector file: the reason" 'nope.gpkg: cannot open as vector data: No such file or directory' "$T/.out"
check_rc "--like a missing folder is bad input" 2 cairn-rasterize --vector "$T/map.geojson" --zoom 17 \
	--like "$T/nolike" --out "$T/x"
check "--like a missing folder: the message does not blame the vector file" \
	bash -c "! grep -q 'map.geojson' '$T/.out' && grep -q 'nolike' '$T/.out'"
check_rc "--like with --bbox is a usage error" 2 cairn-rasterize --vector "$T/map.geojson" --zoom 17 \
	--like "$T/r4326" --bbox=2.33,48.84,2.36,48.86 --out "$T/x"
check_rc "--road-width 1e9 is a usage error" 2 cairn-rasterize --vector "$T/map.geojson" --zoom 17 \
	--road-width 1e9 --out "$T/x"
check_grep "... that says the limit" "road-width '1e9': want ground metres > 0 and < 1000" "$T/.out"
check_rc "the world at zoom 30 is too many tiles (exit 2)" 2 cairn-rasterize --vector "$T/map.geojson" \
	--zoom 30 --bbox=-180,-85,180,85 --out "$T/big"
check_grep "... with the limit and what to do" 'too many tiles \([0-9]+; at most 16777216\): use a smaller --bbox, a lower --zoom, or --shard' "$T/.out"
check "... and no tile written" test ! -e "$T/big"
check_rc "... also in one of 2 shards of zoom 13's world" 2 cairn-rasterize --vector "$T/map.geojson" \
	--zoom 13 --bbox=-180,-85,180,85 --shard 1/2 --out "$T/big"
check_rc "--help exits 0" 0 cairn-rasterize --help

# Real files: Debian's r-cran-sf ships London buildings (British national grid)
# and North Carolina counties (NAD27). Extracted without installing R.
CACHE=${CAIRN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn}/debian-r
fetch_r_data() {
	mkdir -p "$CACHE" && cd "$CACHE" || return 1
	if ! ls r-cran-sf_*.deb >/dev/null 2>&1; then
		apt-get download r-cran-sf >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null 2>&1 && apt-get download r-cran-sf >/dev/null 2>&1; } || return 1
	fi
	[ -d x/usr/lib/R/site-library/sf ] || dpkg-deb -x r-cran-sf_*.deb x || return 1
}
if ! (fetch_r_data); then
	skip "geo_rasterize real files" "cannot apt-get download r-cran-sf (no Debian mirror?)"
	exit 0
fi
SF=$CACHE/x/usr/lib/R/site-library/sf
ogr2ogr -f GPKG "$T/b.gpkg" "$SF/gpkg/buildings.gpkg" -t_srs EPSG:3857 -nln ref -sql "SELECT *, 1 AS class FROM buildings"
check_rc "rasterize London buildings (British grid) at zoom 17" 0 cairn-rasterize --vector "$SF/gpkg/buildings.gpkg" --zoom 17 --out "$T/lon"
check_grep "158 features" '158 features' "$T/.out"
read -r tiles diff lab < <(reference "$T/lon" "$T/b.gpkg" "SELECT * FROM ref")
check "London: $tiles tiles, $lab building px" test "$tiles" -ge 4 -a "$lab" -gt 20000
check_eq "London: identical to gdal_rasterize" "$diff" 0
ogr2ogr -f GPKG "$T/nc.gpkg" "$SF/gpkg/nc.gpkg" -t_srs EPSG:3857 -nln ref -sql "SELECT *, 1 AS class FROM \"nc.gpkg\""
check_rc "rasterize NC counties (NAD27) at zoom 8" 0 cairn-rasterize --vector "$SF/gpkg/nc.gpkg" --zoom 8 --out "$T/nc"
read -r tiles diff lab < <(reference "$T/nc" "$T/nc.gpkg" "SELECT * FROM ref")
check "NC: $tiles tiles, $lab px" test "$tiles" -ge 10 -a "$lab" -gt 50000
check_eq "NC: identical to gdal_rasterize (axis order right)" "$diff" 0
