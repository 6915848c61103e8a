#!/usr/bin/env bash
# cairn-fetch against a fault-injecting tile server (tests/fixtures/fault_server.py):
# 500, 503 and 429 with Retry-After, truncated bodies, HTML with status 200,
# corrupt PNGs, stalls, dropped connections. Every tile must end up identical
# to the server's, nothing partial may stay, and a rerun must ask nothing.
source "$(dirname "$0")/../lib.sh"
command -v python3 >/dev/null || { skip fetch_faults "python3 not installed (scripts/deps.sh)"; exit 0; }
FIX=$ROOT/tests/fixtures

# Zoom 6, columns 10..13, rows 20..23: 16 tiles, every 13th left out (a 404).
python3 "$FIX/make_tiles.py" "$T/www" 6 10 20 13 23 --skip 13
BBOX=-123.75,40.9799,-101.25,55.776573 # exactly those 16 tiles at zoom 6
# start_server LOG PORTFILE extra args...: sets PORT. Not to be run in $(...):
# the server would hold the substitution's pipe open, and on_exit would be lost.
start_server() {
	local log=$1 pf=$2
	shift 2
	python3 "$FIX/fault_server.py" "$T/www" "$pf" "$log" "$@" >>"$T/server.err" 2>&1 &
	SERVER_PID=$!
	on_exit "kill $! 2>/dev/null"
	for _ in $(seq 50); do [ -s "$pf" ] && break; sleep 0.1; done
	PORT=$(cat "$pf")
}
requests() { wc -l <"$1" | tr -d ' '; }
start_server "$T/log" "$T/port"
URL="http://127.0.0.1:$PORT/{z}/{x}/{y}.png"
FETCH=(cairn-fetch --url "$URL" --zoom 6 --concurrency 8 --retries 4 --backoff 0.05 --stall 1 --timeout 20)

check_rc "fetch through faults exits 0" 0 "${FETCH[@]}" --bbox=$BBOX --out "$T/out"
cp "$T/.out" "$T/run1.out"
check_grep "summary counts 15 fetched, 1 missing" '16 tiles: 15 fetched, 0 cached, 1 missing \(404\), 0 failed' "$T/run1.out"
for k in 500 503 429 trunc trunc-nocl html corrupt stall drop; do
	check_grep "server injected '$k'" " $k\$" "$T/log"
done
same=0 total=0
while read -r f; do
	total=$((total + 1))
	cmp -s "$T/www/$f" "$T/out/$f" && same=$((same + 1))
done < <(cd "$T/www" && find . -name '*.png' | sed 's|^\./||')
check_eq "every served tile is byte-identical" "$same" "$total"
check_eq "15 tiles on disk" "$(find "$T/out" -name '*.png' | wc -l | tr -d ' ')" 15
check_eq "no temp or partial files stay" "$(find "$T/out" -name '*.part' -o -name '*.tmp*' -o -name '.cairn-tmp*' | wc -l | tr -d ' ')" 0
gone=$(for x in 10 11 12 13; do for y in 20 21 22 23; do [ -e "$T/www/6/$x/$y.png" ] || echo "6/$x/$y.png"; done; done)
missing=$(awk -F'\t' '$4=="missing"{print $1}' "$T/out/manifest.tsv")
check_eq "the 404 is recorded as missing" "$missing" "$gone"
check "the 404 is not a file" test ! -e "$T/out/$gone"
check_eq "manifest: 15 ok" "$(awk -F'\t' '$4=="ok"' "$T/out/manifest.tsv" | wc -l | tr -d ' ')" 15
# sha256 in the manifest is the file's.
bad=0
while IFS=$'\t' read -r p bytes sha st; do
	[ "$st" = ok ] || continue
	[ "$(sha256sum "$T/out/$p" | cut -d' ' -f1)" = "$sha" ] || bad=$((bad + 1))
	[ "$(stat -c %s "$T/out/$p")" = "$bytes" ] || bad=$((bad + 1))
done < <(grep -v '^#' "$T/out/manifest.tsv")
check_eq "manifest sha256 and bytes match the files" "$bad" 0
# Retry-After: 1 is honoured: the second request for a 429 tile comes >= 1 s later.
t429=$(awk '$3=="429"{print $2; exit}' "$T/log")
gap=$(awk -v p="$t429" '$2==p{t[n++]=$1} END{printf "%d", (t[1]-t[0])*1000}' "$T/log")
check "Retry-After honoured for $t429 (gap ${gap} ms >= 950)" test "$gap" -ge 950

before=$(requests "$T/log")
check_rc "rerun exits 0" 0 "${FETCH[@]}" --bbox "$BBOX" --out "$T/out"
check_grep "rerun: everything cached" '15 fetched|0 fetched, 15 cached, 1 missing' "$T/.out"
check_eq "rerun makes zero requests" "$(requests "$T/log")" "$before"

# A tile that always fails: exit 1, listed, status failed, asked 1 + retries times.
start_server "$T/log2" "$T/port2" --always-500 /6/11/22.png --clean
PORT2=$PORT
check_rc "a tile that always fails gives exit 1" 1 cairn-fetch --url "http://127.0.0.1:$PORT2/{z}/{x}/{y}.png" \
	--zoom 6 --bbox=$BBOX --out "$T/out2" --retries 2 --backoff 0.02
check_grep "the failed tile is listed with its reason" 'failed: 6/11/22.png: .*HTTP 500' "$T/.out"
check_eq "it was asked 3 times (1 + 2 retries)" "$(grep -c '/6/11/22.png' "$T/log2")" 3
check_eq "its status is failed" "$(awk -F'\t' '$4=="failed"{print $1}' "$T/out2/manifest.tsv")" "6/11/22.png"
check "no file for the failed tile" test ! -e "$T/out2/6/11/22.png"
# Fix the server (restarted at the same URL: another URL is another source,
# whose rerun fetches every tile): a rerun asks only for the failed tile.
before=$(requests "$T/log2")
kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null
start_server "$T/log3" "$T/port3" --clean --port "$PORT2"
PORT3=$PORT
check_eq "the fixed server is at the same URL" "$PORT3" "$PORT2"
check_rc "rerun after the server recovers exits 0" 0 cairn-fetch --url "http://127.0.0.1:$PORT3/{z}/{x}/{y}.png" \
	--zoom 6 --bbox=$BBOX --out "$T/out2"
check_eq "the rerun asked for the one failed tile only" "$(cat "$T/log3" | awk '{print $2}' | tr '\n' ' ')" "/6/11/22.png "
check "now identical" cmp -s "$T/www/6/11/22.png" "$T/out2/6/11/22.png"

# A corrupted tile on disk is noticed (sha256) and fetched again.
printf 'garbage' >"$T/out2/6/10/20.png"
check_rc "rerun with a damaged tile exits 0" 0 cairn-fetch --url "http://127.0.0.1:$PORT3/{z}/{x}/{y}.png" \
	--zoom 6 --bbox=$BBOX --out "$T/out2"
check "damaged tile replaced" cmp -s "$T/www/6/10/20.png" "$T/out2/6/10/20.png"
check_eq "only it was asked for" "$(awk '{print $2}' "$T/log3" | tail -1)" "/6/10/20.png"

# Killed mid-run (SIGKILL): no partial tile under its final name; a rerun finishes
# and asks only for what the manifest does not hold.
start_server "$T/log4" "$T/port4" --clean --delay 0.3
PORT4=$PORT
cairn-fetch --url "http://127.0.0.1:$PORT4/{z}/{x}/{y}.png" --zoom 6 --bbox=$BBOX --out "$T/out4" \
	--concurrency 2 >/dev/null 2>&1 &
fpid=$!
# kill it once a few tiles are in (the server answers 2 every 0.3 s)
for _ in $(seq 100); do
	[ "$(grep -c $'\tok$' "$T/out4/manifest.tsv" 2>/dev/null)" -ge 2 ] 2>/dev/null && break
	sleep 0.1
done
kill -9 $fpid
wait $fpid 2>/dev/null
have=$(find "$T/out4" -name '*.png' | wc -l | tr -d ' ')
check "the killed run left its temp folder" test -n "$(find "$T/out4" -maxdepth 1 -name '.cairn-tmp-*')"
# a partial download there, as a kill during a write would leave
tmpd=$(find "$T/out4" -maxdepth 1 -name '.cairn-tmp-*' | head -1)
printf 'half a tile' >"$tmpd/999.part"
bad=0
for f in $(cd "$T/out4" && find . -name '*.png'); do cmp -s "$T/www/$f" "$T/out4/$f" || bad=$((bad + 1)); done
check "killed run left some tiles ($have) and none partial" test "$have" -gt 0 -a "$have" -lt 15 -a "$bad" -eq 0
journal=$(grep -c -E $'\t(ok|missing)$' "$T/out4/manifest.tsv")
before=$(requests "$T/log4")
check_rc "rerun after SIGKILL exits 0" 0 cairn-fetch --url "http://127.0.0.1:$PORT4/{z}/{x}/{y}.png" \
	--zoom 6 --bbox=$BBOX --out "$T/out4" --concurrency 8
check_eq "rerun asked only for tiles not in the manifest" "$(($(requests "$T/log4") - before))" "$((16 - journal))"
check_eq "the rerun removed the dead run's temp folder and its partial file" \
	"$(find "$T/out4" -name '*.part' -o -name '.cairn-tmp-*' | wc -l | tr -d ' ')" 0

# The same faults with --verify fast (CRCs and a header read instead of a decode).
start_server "$T/log5" "$T/port5"
check_rc "fetch through faults with --verify fast" 0 cairn-fetch --url "http://127.0.0.1:$PORT/{z}/{x}/{y}.png" --zoom 6 \
	--concurrency 8 --retries 4 --backoff 0.05 --stall 1 --timeout 20 --bbox=$BBOX --out "$T/out5" --verify fast
check_grep "--verify fast rejected the html, corrupt and cut bodies" 'bodies rejected' "$T/.out"
same=0
for f in $(cd "$T/www" && find . -name '*.png'); do cmp -s "$T/www/$f" "$T/out5/$f" && same=$((same + 1)); done
check_eq "--verify fast: every served tile byte-identical" "$same" 15
# And with --verify gdal (GDAL's PNG driver reads every pixel).
start_server "$T/log6" "$T/port6"
check_rc "fetch through faults with --verify gdal" 0 cairn-fetch --url "http://127.0.0.1:$PORT/{z}/{x}/{y}.png" --zoom 6 \
	--concurrency 8 --retries 4 --backoff 0.05 --stall 1 --timeout 20 --bbox=$BBOX --out "$T/out6" --verify gdal
check_grep "--verify gdal rejected the html, corrupt and cut bodies" 'bodies rejected' "$T/.out"
same=0
for f in $(cd "$T/www" && find . -name '*.png'); do cmp -s "$T/www/$f" "$T/out6/$f" && same=$((same + 1)); done
check_eq "--verify gdal: every served tile byte-identical" "$same" 15
check_rc "--verify with a bad value is a usage error" 2 cairn-fetch --url "$URL" --zoom 6 --bbox=$BBOX --out "$T/x" --verify maybe

check_rc "bad bbox is a usage error" 2 cairn-fetch --url "$URL" --zoom 6 --bbox=1,2,3 --out "$T/x"
check_rc "template without {y} is a usage error" 2 cairn-fetch --url "http://127.0.0.1:1/{z}/{x}.png" --zoom 6 --bbox=$BBOX --out "$T/x"
check_rc "--help exits 0" 0 cairn-fetch --help
