#!/usr/bin/env bash
# cairn-fetch --cog: a Landsat-7 GeoTIFF in UTM 25S (Debian's r-cran-stars,
# extracted without installing R), made a COG and served by nginx; read with
# range requests, reprojected to EPSG:3857, cut into XYZ tiles identical to
# gdalwarp's; the same from the local path; a rerun reads nothing.
source "$(dirname "$0")/../lib.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { skip fetch_cog "nginx not installed"; exit 0; }
command -v gdalwarp >/dev/null || { skip fetch_cog "gdal-bin not installed"; exit 0; }
FIX=$ROOT/tests/fixtures
source "$FIX/nginx.sh"
CACHE=${CAIRN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn}/debian-r
fetch_stars() {
	mkdir -p "$CACHE" && cd "$CACHE" || return 1
	if ! ls r-cran-stars_*.deb >/dev/null 2>&1; then
		apt-get download r-cran-stars >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null 2>&1 && apt-get download r-cran-stars >/dev/null 2>&1; } || return 1
	fi
	[ -f x/usr/lib/R/site-library/stars/tif/L7_ETMs.tif ] || dpkg-deb -x r-cran-stars_*.deb x || return 1
}
# Unreadable sources are bad input (exit 2) with the reason, before any download.
: >"$T/zero.tif"
gdal_create -q -of GTiff -outsize 16 16 -bands 1 "$T/plain.tif"
check_rc "a missing source is bad input" 2 cairn-fetch --cog "$T/nope.tif" --zoom 13 --out "$T/e"
check_grep "a missing source: the reason" 'nope.tif: cannot open: No such file or directory' "$T/.out"
check_rc "an empty source is bad input" 2 cairn-fetch --cog "$T/zero.tif" --zoom 13 --out "$T/e"
check_grep "an empty source: the reason" 'zero.tif: cannot open: an empty file' "$T/.out"
check_rc "a source without georeferencing is bad input" 2 cairn-fetch --cog "$T/plain.tif" --zoom 13 --out "$T/e"
check_grep "no georeferencing: advice that works" 'plain.tif: no georeferencing.*gdal_translate -a_srs' "$T/.out"
check_rc "... also with --bbox" 2 cairn-fetch --cog "$T/plain.tif" --zoom 13 --bbox=-35,-9,-34,-8 --out "$T/e"
check_grep "... with --bbox: the same advice, not a warp error" 'plain.tif: no georeferencing' "$T/.out"
gdal_translate -q -a_srs EPSG:4326 -a_ullr -35 -8 -34.99 -8.01 "$T/plain.tif" "$T/geo.tif"
check_rc "following the advice works" 0 cairn-fetch --cog "$T/geo.tif" --zoom 13 --out "$T/e"
# The manifest records the source (a local path made absolute, and the
# resampling): another source into the same folder is refused, or with
# --refetch makes every tile again.
gdal_create -q -of GTiff -outsize 16 16 -bands 1 -burn 50 -a_srs EPSG:4326 -a_ullr -35 -8 -34.99 -8.01 "$T/a.tif"
gdal_create -q -of GTiff -outsize 16 16 -bands 1 -burn 90 -a_srs EPSG:4326 -a_ullr -35 -8 -34.99 -8.01 "$T/b.tif"
check_rc "tiles from a.tif" 0 cairn-fetch --cog "$T/a.tif" --zoom 13 --out "$T/ab"
check_grep "... written" ': [1-9][0-9]* written' "$T/.out"
n=$(grep -vc '^#' "$T/ab/manifest.tsv")
check_grep "the manifest records a.tif's absolute path and the resampling" "^# source	$T/a.tif \(resampling bilinear\)\$" "$T/ab/manifest.tsv"
check_rc "a.tif again, named from another folder" 0 sh -c "cd '$T' && cairn-fetch --cog ./a.tif --zoom 13 --out ab"
check_grep "... is the same source: 0 written" ': 0 written' "$T/.out"
check_rc "a.tif with another --resampling: refused" 2 cairn-fetch --cog "$T/a.tif" --zoom 13 --out "$T/ab" --resampling near
check_grep "... it is another source" "records another source, $T/a.tif \(resampling bilinear\), for the tiles here: to replace them with tiles of $T/a.tif \(resampling near\)" "$T/.out"
sum_a=$(cd "$T/ab" && find . -name '*.tif' | sort | xargs cat | sha256sum)
check_rc "b.tif into the same folder: refused" 2 cairn-fetch --cog "$T/b.tif" --zoom 13 --out "$T/ab"
check_grep "... says to add --refetch" "records another source, $T/a.tif \(resampling bilinear\), for the tiles here: to replace them with tiles of $T/b.tif \(resampling bilinear\), add --refetch" "$T/.out"
check_rc "b.tif into the same folder, --refetch" 0 cairn-fetch --cog "$T/b.tif" --zoom 13 --out "$T/ab" --refetch
check_grep "... says the source changed and all is made again" "ab/manifest.tsv records another source, $T/a.tif \(resampling bilinear\): its $n tiles are removed and every tile is fetched again from $T/b.tif" "$T/.out"
check_grep "... every tile written again" ": $n written, 0 cached" "$T/.out"
check "... the tiles are b.tif's" test "$(cd "$T/ab" && find . -name '*.tif' | sort | xargs cat | sha256sum)" != "$sum_a"
check_grep "... a tile holds b.tif's value" 'STATISTICS_MAXIMUM=90' <(gdalinfo -stats "$(find "$T/ab" -name '*.tif' | head -1)")
check_rc "the world at zoom 30 is too many tiles (exit 2)" 2 cairn-fetch --cog "$T/a.tif" --zoom 30 --bbox=-180,-85,180,85 --out "$T/big"
check_grep "... with the limit and what to do" 'too many tiles \([0-9]+; at most 16777216\): use a smaller --bbox, a lower --zoom, or --shard' "$T/.out"

# sources that would keep the warp busy for minutes or take gigabytes (the fuzzer's)
gdal_translate -q -a_srs EPSG:3857 -a_ullr -1e300 1e300 1e300 -1e300 "$T/a.tif" "$T/farout.tif"
check_rc "a source whose corners are 1e300 m out is bad input" 2 timeout 60 cairn-fetch --cog "$T/farout.tif" --zoom 0 --out "$T/far"
check_grep "... saying so" 'far outside the world .*its geotransform or CRS is wrong' "$T/.out"
gdal_create -q -of GTiff -outsize 100000 100000 -bands 1 -ot Byte -a_srs EPSG:3857 \
	-a_ullr -10880963 3538728 -10760000 3418000 -co TILED=YES -co SPARSE_OK=YES "$T/huge.tif"
check_rc "a 100000 x 100000 source without overviews at zoom 3 is bad input" 2 timeout 60 cairn-fetch --cog "$T/huge.tif" --zoom 3 --out "$T/hg"
check_grep "... with what to do" 'covers about 100000 x 100000 of its pixels, and it has no overviews .*gdaladdo SRC.*zoom 13 or more' "$T/.out"

if ! (fetch_stars); then
	skip fetch_cog "cannot apt-get download r-cran-stars (no Debian mirror?)"
	exit 0
fi
L7=$CACHE/x/usr/lib/R/site-library/stars/tif/L7_ETMs.tif
mkdir -p "$T/www"
gdal_translate -q -of COG -co COMPRESS=DEFLATE "$L7" "$T/www/l7.tif"
check_grep "source is a COG in UTM 25S" 'UTM zone 25S' <(gdalinfo "$T/www/l7.tif")
nginx_start "$T/www" || { not_ok "nginx did not start"; exit 0; }

check_rc "fetch the COG over http at zoom 13" 0 cairn-fetch --cog "http://127.0.0.1:$PORT/l7.tif" --zoom 13 --out "$T/c"
check_grep "tiles written" 'tiles from http.*: [1-9][0-9]* written' "$T/.out"
check_grep "read with range requests (206)" ' 206 /l7.tif' "$ALOG"
n=$(find "$T/c" -name '*.tif' | wc -l | tr -d ' ')
check "at least 4 tiles ($n)" test "$n" -ge 4
f=$(cd "$T/c" && find . -name '*.tif' | sort | head -1 | sed 's|^\./||')
check_grep "a tile is 256x256, 6 bands, EPSG:3857" 'Size is 256, 256' <(gdalinfo "$T/c/$f")
check_grep "6 bands" 'Band 6 ' <(gdalinfo "$T/c/$f")
z=${f%%/*} x=${f#*/} x=${x%%/*} y=$(basename "$f" .tif)
read -r w s e n < <(python3 -c "
o = 20037508.342789244; t = 2 * o / 2 ** $z
print('%.10f %.10f %.10f %.10f' % (-o + $x * t, o - ($y + 1) * t, -o + ($x + 1) * t, o - $y * t))")
gdalwarp -q -t_srs EPSG:3857 -te "$w" "$s" "$e" "$n" -ts 256 256 -r bilinear "$T/www/l7.tif" "$T/ref.tif"
d=$(paste <(gdal_translate -q -b 3 -of XYZ "$T/c/$f" /vsistdout/) <(gdal_translate -q -b 3 -of XYZ "$T/ref.tif" /vsistdout/) | awk '$3 != $6 {n++} END {print n + 0}')
check_eq "tile $f band 3 identical to gdalwarp's" "$d" 0

before=$(wc -l <"$ALOG")
check_rc "rerun" 0 cairn-fetch --cog "http://127.0.0.1:$PORT/l7.tif" --zoom 13 --out "$T/c"
check_grep "rerun: all cached or empty, none written" ': 0 written' "$T/.out"
# a rerun opens the source once to learn its extent (a few header reads), no tile reads
after=$(wc -l <"$ALOG")
check "rerun read no more than the header ($((after - before)) requests <= 3)" test $((after - before)) -le 3
check_rc "the same from the local path" 0 cairn-fetch --cog "$T/www/l7.tif" --zoom 13 --out "$T/d"
check_eq "same tiles, same bytes" "$(cd "$T/d" && find . -name '*.tif' | sort | xargs sha256sum | sha256sum)" \
	"$(cd "$T/c" && find . -name '*.tif' | sort | xargs sha256sum | sha256sum)"
