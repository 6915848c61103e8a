#!/usr/bin/env bash
# cairn-fetch against real nginx on 127.0.0.1: tiles byte-identical, 404 recorded,
# keep-alive (few connections for many requests), shards, both --bbox forms with
# negative numbers, and a rerun that makes no request (counted in nginx's log).
source "$(dirname "$0")/../lib.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { skip fetch_nginx "nginx not installed (scripts/deps.sh: nginx-light)"; exit 0; }
command -v python3 >/dev/null || { skip fetch_nginx "python3 not installed"; exit 0; }
FIX=$ROOT/tests/fixtures

source "$FIX/nginx.sh"
requests() { [ -f "$ALOG" ] && wc -l <"$ALOG" | tr -d ' ' || echo 0; }

# Zoom 12 around Sao Paulo (W and S negative): columns 1514..1521, rows 2320..2327.
python3 "$FIX/make_tiles.py" "$T/www" 12 1514 2320 1521 2327 --skip 29
nginx_start "$T/www" || { not_ok "nginx did not start: $(tail -3 "$T/nginx/start.err")"; exit 0; }
URL="http://127.0.0.1:$PORT/{z}/{x}/{y}.png"
# The bbox of exactly those 64 tiles, from the tile math itself: west edge of
# column 1514, east edge of 1521, north of row 2320, south of 2327.
BBOX=$(python3 -c '
import math
def lon(x): return x / 4096 * 360 - 180
def lat(y): return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / 4096))))
print("%.10f,%.10f,%.10f,%.10f" % (lon(1514), lat(2328), lon(1522), lat(2320)))')

check_rc "fetch 64 tiles from nginx (--bbox=W,S,E,N)" 0 cairn-fetch --url "$URL" --zoom 12 --bbox="$BBOX" --out "$T/out" --concurrency 8
check_grep "summary: 62 fetched, 2 missing" '64 tiles: 62 fetched, 0 cached, 2 missing' "$T/.out"
same=0
for f in $(cd "$T/www" && find . -name '*.png'); do cmp -s "$T/www/$f" "$T/out/$f" && same=$((same + 1)); done
check_eq "62 tiles byte-identical to nginx's" "$same" 62
check_eq "nginx saw 64 requests" "$(requests)" 64
conns=$(awk '{print $1}' "$ALOG" | sort -u | wc -l | tr -d ' ')
check "keep-alive: $conns connections for 64 requests (<= 8)" test "$conns" -le 8
check_eq "404s recorded as missing" "$(grep -c $'\tmissing$' "$T/out/manifest.tsv")" 2

check_rc "rerun (--bbox W,S,E,N) exits 0" 0 cairn-fetch --url "$URL" --zoom 12 --bbox "$BBOX" --out "$T/out" --concurrency 8
check_grep "rerun: 62 cached" '0 fetched, 62 cached, 2 missing' "$T/.out"
check_eq "rerun made zero requests" "$(requests)" 64
# A damaged tile and a deleted one are fetched again; the damaged file is
# replaced in place (an existing name: linked beside it, then renamed over).
printf 'damaged' >"$T/out/12/1515/2321.png"
rm "$T/out/12/1516/2321.png"
check_rc "rerun after damage" 0 cairn-fetch --url "$URL" --zoom 12 --bbox="$BBOX" --out "$T/out" --concurrency 8
check_grep "rerun: 2 fetched" '2 fetched, 60 cached' "$T/.out"
check "damaged tile replaced" cmp -s "$T/www/12/1515/2321.png" "$T/out/12/1515/2321.png"
check "deleted tile back" cmp -s "$T/www/12/1516/2321.png" "$T/out/12/1516/2321.png"
check_eq "nothing left beside the tiles" "$(find "$T/out" -name '*.part' -o -name '.cairn-tmp*' | wc -l | tr -d ' ')" 0
check_eq "rerun asked for the 2 tiles" "$(requests)" 66

# Two shards into one folder: disjoint manifests that together cover the set.
check_rc "shard 0/2" 0 cairn-fetch --url "$URL" --zoom 12 --bbox="$BBOX" --out "$T/sh" --shard 0/2
check_rc "shard 1/2" 0 cairn-fetch --url "$URL" --zoom 12 --bbox "$BBOX" --out "$T/sh" --shard 1/2
a=$(grep -vc '^#' "$T/sh/manifest.0of2.tsv")
b=$(grep -vc '^#' "$T/sh/manifest.1of2.tsv")
check_eq "shards have 32 + 32 entries" "$a+$b" "32+32"
check_eq "shards are disjoint and cover all 64" "$(cat "$T"/sh/manifest.*of2.tsv | grep -v '^#' | cut -f1 | sort -u | wc -l | tr -d ' ')" 64
check_eq "shard tiles identical" "$(cd "$T/sh" && find . -name '*.png' | sort | md5sum)" "$(cd "$T/out" && find . -name '*.png' | sort | md5sum)"

# Rate limit: 40 requests/s for 22 tiles takes at least half a second.
t0=$(date +%s%N)
check_rc "rate-limited fetch" 0 cairn-fetch --url "$URL" --zoom 12 --bbox="$BBOX" --out "$T/rl" --rate 40 --shard 0/3 --json
ms=$((($(date +%s%N) - t0) / 1000000))
check "--rate 40 for 22 tiles took ${ms} ms (>= 450)" test "$ms" -ge 450
check_grep "--json summary" '"fetched": 2[0-9]' "$T/.out"

# The manifest records its source. Another server (here a second tree, other
# pixels, other 404s) into the same folder: every tile is fetched again and
# the old server's tiles are gone, also where the new one has none.
python3 "$FIX/make_tiles.py" "$T/www/alt" 12 1514 2320 1521 2327 --skip 17 --noise 5
URL2="http://127.0.0.1:$PORT/alt/{z}/{x}/{y}.png"
check_grep "the manifest records the source" "^# source	$URL\$" "$T/out/manifest.tsv"
before=$(requests)
check_rc "another --url into the same folder: refused (exit 2)" 2 cairn-fetch --url "$URL2" --zoom 12 --bbox="$BBOX" --out "$T/out"
check_grep "... says why and what to do" "manifest.tsv records another source, http://127.0.0.1:$PORT/\{z\}.*, for the tiles here: to replace them with tiles of .*/alt/.*, add --refetch" "$T/.out"
check_eq "... asks nothing" "$(($(requests) - before))" 0
check_eq "... keeps every tile" "$(find "$T/out" -name '*.png' | wc -l | tr -d ' ')" 62
check_rc "fetch from another --url with --refetch" 0 cairn-fetch --url "$URL2" --zoom 12 --bbox="$BBOX" --out "$T/out" --refetch
check_grep "it says so, in one line" "manifest.tsv records another source, http://127.0.0.1:$PORT/\{z\}.*: its 62 tiles are removed and every tile is fetched again from .*/alt/" "$T/.out"
check_grep "new source: 61 fetched, 3 missing" '64 tiles: 61 fetched, 0 cached, 3 missing' "$T/.out"
check_eq "it asked for all 64 tiles" "$(($(requests) - before))" 64
same=0
for f in $(cd "$T/www/alt" && find . -name '*.png'); do cmp -s "$T/www/alt/$f" "$T/out/$f" && same=$((same + 1)); done
check_eq "61 tiles identical to the new server's" "$same" 61
check_eq "no tile of the old server stays (61 on disk)" "$(find "$T/out" -name '*.png' | wc -l | tr -d ' ')" 61
check_grep "the new source is recorded" "^# source	$URL2\$" "$T/out/manifest.tsv"
# A manifest of the previous cairn-fetch (no source line) keeps working: its
# tiles are taken as this source's, the source is recorded, nothing is asked.
grep -v '^# source' "$T/out/manifest.tsv" >"$T/old.tsv" && cp "$T/old.tsv" "$T/out/manifest.tsv"
before=$(requests)
check_rc "rerun over a manifest without a source" 0 cairn-fetch --url "$URL2" --zoom 12 --bbox="$BBOX" --out "$T/out"
check_grep "it says what it does" "manifest.tsv records no source \(an earlier cairn-fetch wrote it\): its 64 tiles are taken as tiles of .*/alt/.*, now recorded; delete it to fetch them all again" "$T/.out"
check_grep "old manifest: all cached" '0 fetched, 61 cached, 3 missing' "$T/.out"
check_eq "old manifest: no request" "$(requests)" "$before"
check_grep "old manifest: the source is recorded now" "^# source	$URL2\$" "$T/out/manifest.tsv"
check_rc "a rerun after that says nothing more" 0 cairn-fetch --url "$URL2" --zoom 12 --bbox="$BBOX" --out "$T/out"
check "... no line about the source" test -z "$(grep 'source' "$T/.out")"

# Bad input is exit 2 up front, naming the thing.
check_rc "a template with no scheme or host is a usage error" 2 cairn-fetch --url '/{z}/{x}/{y}.png' --zoom 12 --bbox="$BBOX" --out "$T/u"
check_grep "... naming the template" "url template '/\{z\}/\{x\}/\{y\}.png' is not a URL: want SCHEME://HOST/PATH" "$T/.out"
check "... before any tile or folder" test ! -e "$T/u"
check_rc "a template with no host is a usage error" 2 cairn-fetch --url 'http:///{z}/{x}/{y}.png' --zoom 12 --bbox="$BBOX" --out "$T/u"
check_grep "... saying so" "has no host" "$T/.out"
check_rc "a scheme libcurl does not speak is a usage error" 2 cairn-fetch --url 'htp://h/{z}/{x}/{y}.png' --zoom 12 --bbox="$BBOX" --out "$T/u"
check_grep "... naming it" "libcurl does not speak 'htp'" "$T/.out"
check_rc "the world at zoom 30 is too many tiles (exit 2)" 2 cairn-fetch --url "$URL" --zoom 30 --bbox=-180,-85,180,85 --out "$T/u"
check_grep "... with the limit and what to do" 'too many tiles \([0-9]+; at most 16777216\): use a smaller --bbox, a lower --zoom, or --shard' "$T/.out"
check_rc "... and so is half of the world at zoom 13 (33 million)" 2 cairn-fetch --url "$URL" --zoom 13 --bbox=-180,-85,180,85 --shard 0/2 --out "$T/u"
check_grep "... its count" 'too many tiles \(33[0-9]{6}; at most' "$T/.out"
mkdir -p "$T/d/manifest.tsv"
check_rc "a manifest.tsv that is a folder is bad input" 2 cairn-fetch --url "$URL" --zoom 12 --bbox="$BBOX" --out "$T/d"
check_grep "... with the reason" 'd/manifest.tsv: is a folder, not a manifest file' "$T/.out"
