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
