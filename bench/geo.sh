#!/usr/bin/env bash
# bench/geo.sh: cairn-fetch tiles/s from nginx on loopback at concurrency 1, 16
# and 64, next to curl --parallel and xargs -P + curl (the two peers the issue
# names) fetching the same tiles in the same run; then
# cairn-synth and cairn-rasterize tiles/s. Run by `make bench`.
#   GEO_BENCH_TILES=4096 (a square number) GEO_BENCH_NOISE=2 (about 32 KB a tile)
#   GEO_BENCH_REPS=3 (runs of each fetch; the median is shown)
#   GEO_BENCH_ONLY=fetch|raster (one half)  GEO_BENCH_BIG=16 (a bigger scene to rasterize)
#   GEO_BENCH_XARGS_TILES=512 (tiles fetched by xargs -P curl: a process a tile is slow)
set -u
: "${CAIRN_BIN:?run through make bench}"
ROOT=${CAIRN_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
FIX=$ROOT/tests/fixtures
T=$(mktemp -d /tmp/cairn-bench-geo.XXXXXX)
cleanup_hooks=()
on_exit() { cleanup_hooks+=("$1"); }
trap 'for h in "${cleanup_hooks[@]}"; do eval "$h"; done; rm -rf "$T"' EXIT
source "$FIX/nginx.sh"
echo "== geo: tile download, synth and rasterize throughput"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (client, nginx and other work share the cores)"
for need in python3 curl; do
	command -v $need >/dev/null || { echo "skipped: $need not installed (scripts/deps.sh bench)"; exit 0; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "skipped: nginx not installed"; exit 0; }

bench_fetch() {
	N=${GEO_BENCH_TILES:-4096}
	side=$(python3 -c "import math; print(int(math.isqrt($N)))")
	N=$((side * side))
	Z=14
	python3 "$FIX/make_tiles.py" "$T/www" $Z 0 0 $((side - 1)) $((side - 1)) --noise "${GEO_BENCH_NOISE:-2}"
	bytes=$(du -sb "$T/www" | cut -f1)
	# A tile server as it is run in production (sendfile, open_file_cache, no
	# access log): the same server for every client.
	NGINX_TILE_SERVER=1 nginx_start "$T/www" || { echo "skipped: nginx did not start"; return 0; }
	sleep 0.2
	nginx_workers=$(pgrep -P "$(cat "$T/nginx/nginx.pid")")
	URL="http://127.0.0.1:$PORT/{z}/{x}/{y}.png"
	# the bbox of exactly tiles 0..side-1 at zoom Z (north-west corner of the world)
	BBOX=$(python3 -c "
import math
n = 2 ** $Z
lon = lambda x: x / n * 360 - 180
lat = lambda y: math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))
print('%.10f,%.10f,%.10f,%.10f' % (lon(0), lat($side), lon($side), lat(0)))")
	# curl's config: one url + output per tile, the same tiles
	for x in $(seq 0 $((side - 1))); do
		for y in $(seq 0 $((side - 1))); do
			printf 'url = "http://127.0.0.1:%s/%d/%d/%d.png"\noutput = "%d/%d/%d.png"\n' "$PORT" $Z "$x" "$y" $Z "$x" "$y"
		done
	done >"$T/curl.cfg"
	# xargs -P C curl: one curl process a tile, as a shell script would do it
	sed -n 's/^url = "\(.*\)"$/\1/p' "$T/curl.cfg" | paste - <(sed -n 's/^output = "\(.*\)"$/\1/p' "$T/curl.cfg") |
		awk '{ print "-o", $2, $1 }' | head -n "${GEO_BENCH_XARGS_TILES:-512}" >"$T/xargs.list"
	NX=$(wc -l <"$T/xargs.list") # a process a tile is slow: fewer tiles, the rate per tile is what counts
	awk -v n="$N" -v b="$bytes" 'BEGIN { printf "%d tiles of %.0f KB on average (PNG 256x256), nginx on 127.0.0.1\n", n, b / n / 1024 }'
	R=${GEO_BENCH_REPS:-3}
	now() { date +%s.%N; }
	# nginx's CPU time (ns, its workers' schedstat)
	nginx_ns() { local p s=0; for p in $nginx_workers; do s=$((s + $(cut -d' ' -f1 "/proc/$p/schedstat"))); done; echo $s; }
	# the whole machine's busy CPU time (clock ticks): what other work took
	busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
	# run NAME OUTDIR cmd...: appends to $T/NAME.times the wall seconds, the
	# client's user and sys CPU seconds, nginx's CPU seconds, the cores the
	# two kept busy and the cores busy on the whole machine. Every run writes into a new folder and nothing is
	# deleted until the end: this VM's ext4 has no journal, and without one the
	# inode allocator steps over every inode deleted in the last 60 s (360 s
	# while its inode table block is dirty), reading each one's deletion time:
	# creating files after an rm -rf of thousands costs several times more.
	# A sync before each run (not timed) keeps one tool's dirty pages from
	# being written back during the next tool's run (cairn-fetch ends with a
	# syncfs, which would otherwise write the previous curl run's files too).
	run() {
		local name=$1 out=$2 n0 n1 m0 m1
		shift 2
		mkdir -p "$out"
		sync
		n0=$(nginx_ns)
		m0=$(busy_ticks)
		/usr/bin/time -f '%e %U %S' -o "$T/time" "$@" >"$T/$name.log" 2>&1 || { echo "$name failed:"; tail -5 "$T/$name.log"; }
		n1=$(nginx_ns)
		m1=$(busy_ticks)
		awk -v ng=$((n1 - n0)) -v m=$((m1 - m0)) -v hz="$(getconf CLK_TCK)" \
			'{ print $1, $2, $3, ng / 1e9, ($2 + $3 + ng / 1e9) / $1, m / hz / $1 }' "$T/time" >>"$T/$name.times"
	}
	# median of column k of a times file: tiles/s (k=1), CPU us per tile
	# (k=2 user, 3 sys, 4 nginx), cores busy (k=5 client + nginx, 6 machine)
	med() { sort -g -k"$2" "$T/$1.times" | awk -v k="$2" -v n="$([ "$1" = xargs ] && echo "$NX" || echo "$N")" '{ v[NR] = $k } END { m = v[int((NR + 1) / 2)]; if (k == 1) printf "%d", n / m; else if (k >= 5) printf "%.2f", m; else printf "%d", m / n * 1e6 }'; }
	cpu() { echo "$(med "$1" 2)+$(med "$1" 3)"; }
	rate() { med "$1" 1; }
	ngx() { med "$1" 4; }
	busy() { med "$1" 5; }
	machine() { med "$1" 6; }
	tools="full fast none curl curlsync xargs"
	row() { local t; printf '%-14s' "$1"; for t in $tools; do printf ' %11s %-3s' "$("$3" "$t")" "$2"; done; echo; }
	echo "median of $R runs each (the six take turns; xargs -P curl fetches the first $NX tiles only); tiles/s;"
	echo "the client's CPU per tile, user+sys"
	echo "(sys is mostly ext4 creating the files, the same work for every tool); nginx's CPU per tile;"
	echo "cores busy = (client + nginx CPU) / wall time, of 2; machine: all CPU time on the machine / wall time"
	printf '%-14s %15s %15s %15s %15s %15s %15s\n' concurrency "cairn-fetch" "--verify fast" "--verify none" "curl --parallel" "curl + sync -f" "xargs -P curl"
	for c in 1 16 64; do
		rm -f "$T"/*.times
		FETCH=("$CAIRN_BIN/cairn-fetch" --url "$URL" --zoom $Z --bbox="$BBOX" --concurrency $c)
		for i in $(seq "$R"); do
			o=$T/out.$c.$i
			run full "$o.a" "${FETCH[@]}" --out "$o.a"
			got=$(grep -c $'\tok$' "$o.a/manifest.tsv")
			[ "$got" = "$N" ] || echo "warning: cairn-fetch got $got of $N tiles"
			run fast "$o.f" "${FETCH[@]}" --out "$o.f" --verify fast
			run none "$o.b" "${FETCH[@]}" --out "$o.b" --verify none
			CURL="curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max $c --create-dirs -K '$T/curl.cfg'"
			run curl "$o.c" sh -c "cd '$o.c' && $CURL"
			# the same durability as cairn-fetch's (its syncfs before the manifest)
			run curlsync "$o.s" sh -c "cd '$o.s' && $CURL && sync -f ."
			run xargs "$o.x" sh -c "cd '$o.x' && xargs -P $c -L 1 curl -s --create-dirs <'$T/xargs.list'"
		done
		row "$c" t/s rate
		row "  client CPU" us cpu
		row "  nginx CPU" us ngx
		row "  cores busy" "" busy
		row "  machine" "" machine
	done
	echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
	last=$T/out.64.$R.a
	same=$(cd "$T/www" && find . -name '*.png' | while read -r f; do cmp -s "$f" "$last/$f" && echo; done | wc -l)
	echo "cairn-fetch tiles identical to the server's: $same of $N (times include process start and the final syncfs)"
	t0=$(now)
	"$CAIRN_BIN/cairn-fetch" --url "$URL" --zoom $Z --bbox="$BBOX" --out "$last" --concurrency 16 >/dev/null 2>&1
	t1=$(now)
	echo "rerun of a complete folder (manifest + sha256 of every tile, no request): $(awk -v n=$N -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f tiles/s", n / (b - a) }')"
	rm -rf "$T"/out.*
	sync
}
[ "${GEO_BENCH_ONLY:-fetch}" = raster ] || bench_fetch
[ "${GEO_BENCH_ONLY:-raster}" = fetch ] && exit 0

# synth and rasterize
"$CAIRN_BIN/cairn-synth" --out "$T/s" --tiles 8 --seed 3 --preview-size 0 >"$T/s.log" || cat "$T/s.log"
sed 's/^cairn-synth: /synth:     /' "$T/s.log"
"$CAIRN_BIN/cairn-rasterize" --vector "$T/s/map.gpkg" --class-field class --width-field width --zoom 17 \
	--like "$T/s/imagery" --out "$T/r1" --threads 1 | sed 's/^cairn-rasterize: /rasterize (1 thread): /'
"$CAIRN_BIN/cairn-rasterize" --vector "$T/s/map.gpkg" --class-field class --width-field width --zoom 17 \
	--like "$T/s/imagery" --out "$T/r2" | sed 's/^cairn-rasterize: /rasterize (all cores): /'
# a bigger scene's map (GEO_BENCH_BIG, default 16 x 16 tiles; 0: skip) at zoom 17 and 18
big=${GEO_BENCH_BIG:-16}
if [ "$big" -gt 0 ]; then
	"$CAIRN_BIN/cairn-synth" --out "$T/sb" --tiles "$big" --seed 3 --preview-size 0 >"$T/sb.log" || cat "$T/sb.log"
	sed 's/^cairn-synth: /synth:     /' "$T/sb.log"
	for z in 17 18; do
		"$CAIRN_BIN/cairn-rasterize" --vector "$T/sb/map.gpkg" --class-field class --width-field width \
			--zoom $z --out "$T/rb$z" --threads 1 | sed "s/^cairn-rasterize: /rasterize (1 thread, zoom $z): /"
		rm -rf "$T/rb$z"
	done
fi
if command -v gdal_rasterize >/dev/null; then
	# baseline: gdal_rasterize of the same map into one raster covering the same 64 tiles
	read -r w s e n < <(python3 -c "
import json
j = json.load(open('$T/s/scene.json')); z = j['zoom']; x0 = j['origin_x']; y0 = j['origin_y']; k = j['tiles_per_side']
o = 20037508.342789244; t = 2 * o / 2 ** z
print(-o + x0 * t, o - (y0 + k) * t, -o + (x0 + k) * t, o - y0 * t)")
	ogr2ogr -f GPKG "$T/m3857.gpkg" "$T/s/map.gpkg" -t_srs EPSG:3857 buildings 2>/dev/null
	t0=$(now)
	gdal_rasterize -q -burn 2 -ot Byte -te "$w" "$s" "$e" "$n" -ts 2048 2048 -co COMPRESS=DEFLATE "$T/m3857.gpkg" "$T/g.tif"
	t1=$(now)
	echo "baseline: gdal_rasterize of the map's buildings alone into one 2048x2048 DEFLATE GeoTIFF (64 tiles' area): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s, %.0f tiles/s", b - a, 64 / (b - a) }')"
fi
