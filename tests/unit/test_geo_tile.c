/* Unit tests for geo/tile: known values from mercantile's README (tile
 * 486/332 at z10 = Ireland), Bing's quadkey example, edge and shard rules. */
#include "check.h"
#include "geo/tile.h"

static void test_known_tile_corner_and_bounds(void)
{
	double lon, lat;
	tile_corner_lonlat(10, 486, 332, &lon, &lat);
	CHECK_NEAR(lon, -9.140625, 1e-12);
	CHECK_NEAR(lat, 53.33087298301705, 1e-12);
	struct tile t = {10, 486, 332};
	struct bbox b;
	tile_bounds_lonlat(&t, &b);
	CHECK_NEAR(b.w, -9.140625, 1e-12);
	CHECK_NEAR(b.s, 53.12040528310657, 1e-12);
	CHECK_NEAR(b.e, -8.7890625, 1e-12);
	CHECK_NEAR(b.n, 53.33087298301705, 1e-12);
	tile_bounds(&t, &b); /* mercantile.xy_bounds(486, 332, 10) */
	CHECK_NEAR(b.w, -1017529.7205322663, 1e-12);
	CHECK_NEAR(b.s, 7005300.768279833, 1e-12);
	CHECK_NEAR(b.e, -978393.962050256, 1e-12);
	CHECK_NEAR(b.n, 7044436.526761846, 1e-12);
	double x, y;
	tile_lonlat_to_merc(-9.140625, 53.33087298301705, &x, &y);
	CHECK_NEAR(x, -1017529.7205322663, 1e-12);
	CHECK_NEAR(y, 7044436.526761846, 1e-12);
	tile_merc_to_lonlat(x, y, &lon, &lat);
	CHECK_NEAR(lon, -9.140625, 1e-12);
	CHECK_NEAR(lat, 53.33087298301705, 1e-12);
}

static void test_point_to_tile(void)
{
	struct error err;
	struct tile t;
	CHECK_INT(tile_from_lonlat(-105.0, 40.0, 1, &t, &err), 0); /* mercantile: (0, 0, 1) */
	CHECK_INT(t.x, 0);
	CHECK_INT(t.y, 0);
	/* The upper-left corner of a tile lies in that tile. */
	double lon, lat;
	tile_corner_lonlat(10, 486, 332, &lon, &lat);
	CHECK_INT(tile_from_lonlat(lon + 1e-9, lat - 1e-9, 10, &t, &err), 0);
	CHECK_INT(t.x, 486);
	CHECK_INT(t.y, 332);
	CHECK_INT(tile_from_lonlat(0, 0, 0, &t, &err), 0);
	CHECK_INT(t.x + t.y, 0);
	CHECK_INT(tile_from_lonlat(180, -90, 3, &t, &err), 0); /* clamped into the grid */
	CHECK_INT(t.x, 7);
	CHECK_INT(t.y, 7);
	CHECK_INT(tile_from_lonlat(0, 0, 31, &t, &err), -1);
	CHECK(strstr(err.msg, "zoom 31") != NULL);
	CHECK_INT(tile_from_lonlat(200, 0, 3, &t, &err), -1);
	CHECK_NEAR(tile_resolution(0), 156543.03392804097, 1e-12);
	CHECK_NEAR(tile_resolution(17), 1.194328566955879, 1e-12);
}

static void test_neighbours_share_edges(void)
{
	struct tile a = {17, 70406, 42987}, b = {17, 70407, 42988};
	struct bbox ba, bb;
	tile_bounds(&a, &ba);
	tile_bounds(&b, &bb);
	CHECK(ba.e == bb.w);
	CHECK(ba.s == bb.n);
	CHECK_NEAR(ba.e - ba.w, 256 * tile_resolution(17), 1e-12);
}

static void test_bbox_to_range(void)
{
	struct error err;
	struct tile_range r;
	struct bbox world = {-180, -85.0511287798066, 180, 85.0511287798066};
	CHECK_INT(tile_range_from_bbox(&world, 2, &r, &err), 0);
	CHECK_INT(r.x0, 0);
	CHECK_INT(r.y0, 0);
	CHECK_INT(r.x1, 3);
	CHECK_INT(r.y1, 3);
	CHECK_INT(tile_range_count(&r), 16);
	/* The bounds of one tile give that tile only, not its east/south neighbours. */
	struct tile t = {10, 486, 332};
	struct bbox b;
	tile_bounds_lonlat(&t, &b);
	CHECK_INT(tile_range_from_bbox(&b, 10, &r, &err), 0);
	CHECK_INT(r.x0, 486);
	CHECK_INT(r.x1, 486);
	CHECK_INT(r.y0, 332);
	CHECK_INT(r.y1, 332);
	/* One level deeper it is the 2x2 children. */
	CHECK_INT(tile_range_from_bbox(&b, 11, &r, &err), 0);
	CHECK_INT(r.x0, 972);
	CHECK_INT(r.x1, 973);
	CHECK_INT(r.y0, 664);
	CHECK_INT(r.y1, 665);
	tile_range_nth(&r, 3, &t);
	CHECK_INT(t.x, 973);
	CHECK_INT(t.y, 665);
	tile_range_nth(&r, 1, &t);
	CHECK_INT(t.x, 973);
	CHECK_INT(t.y, 664);
	struct bbox bad = {10, 0, 5, 1};
	CHECK_INT(tile_range_from_bbox(&bad, 3, &r, &err), -1);
	CHECK(strstr(err.msg, "west < east") != NULL);
	/* Southern and western hemisphere: Sao Paulo area. */
	struct bbox sp = {-46.7, -23.6, -46.6, -23.5};
	CHECK_INT(tile_range_from_bbox(&sp, 12, &r, &err), 0);
	CHECK_INT(r.x0, 1516);
	CHECK_INT(r.x1, 1517);
	CHECK_INT(r.y0, 2323);
	CHECK_INT(r.y1, 2324);
}

static void test_quadkey(void)
{
	char qk[TILE_MAX_ZOOM + 1];
	struct tile t = {3, 3, 5}; /* Bing Maps tile system doc: "213" */
	tile_quadkey(&t, qk);
	CHECK_STR(qk, "213");
	t = (struct tile){10, 486, 332};
	tile_quadkey(&t, qk);
	CHECK_STR(qk, "0313102310");
	struct error err;
	struct tile u;
	CHECK_INT(tile_from_quadkey("0313102310", &u, &err), 0);
	CHECK_INT(u.z, 10);
	CHECK_INT(u.x, 486);
	CHECK_INT(u.y, 332);
	CHECK_INT(tile_from_quadkey("", &u, &err), 0);
	CHECK_INT(u.z, 0);
	CHECK_INT(tile_from_quadkey("0149", &u, &err), -1);
	CHECK(strstr(err.msg, "'4'") != NULL);
}

static void test_shards_cover_once(void)
{
	for (int n = 1; n <= 7; n++) {
		uint64_t next = 0;
		for (int i = 0; i < n; i++) {
			uint64_t b, e;
			tile_shard(20, i, n, &b, &e);
			CHECK_INT(b, next);
			CHECK(e - b == 20 / (uint64_t)n || e - b == 20 / (uint64_t)n + 1);
			next = e;
		}
		CHECK_INT(next, 20);
	}
	uint64_t b, e;
	tile_shard(2, 4, 5, &b, &e); /* more shards than items: empty shards */
	CHECK_INT(e - b, 0);
}

/* The per-run limit: the count of a run (a shard) is checked, not the set's. */
static void test_run_size(void)
{
	struct error err;
	CHECK_INT(tile_check_run_size(TILE_MAX_PER_RUN, &err), 0);
	CHECK_INT(tile_check_run_size(TILE_MAX_PER_RUN + 1, &err), -1);
	CHECK(strstr(err.msg, "too many tiles (16777217; at most 16777216): use a smaller --bbox, "
			      "a lower --zoom, or --shard") != NULL);
	/* France's bbox at zoom 18 in 8 shards fits; the world at zoom 30 does not. */
	struct bbox fr = {-5.2, 41.3, 9.6, 51.1}, world = {-180, -85, 180, 85};
	struct tile_range r;
	uint64_t b, e;
	CHECK_INT(tile_range_from_bbox(&fr, 18, &r, &err), 0);
	CHECK(tile_range_count(&r) > 100000000ull);
	tile_shard(tile_range_count(&r), 7, 8, &b, &e);
	CHECK_INT(tile_check_run_size(e - b, &err), 0);
	CHECK_INT(tile_range_from_bbox(&world, 30, &r, &err), 0);
	CHECK_INT(tile_check_run_size(tile_range_count(&r), &err), -1);
	CHECK(strstr(err.msg, "too many tiles (1149") != NULL);
}

static void test_parsing(void)
{
	struct error err;
	struct bbox b;
	CHECK_INT(tile_parse_bbox("-46.7,-23.6,-46.6,-23.5", &b, &err), 0);
	CHECK_NEAR(b.w, -46.7, 0);
	CHECK_NEAR(b.n, -23.5, 0);
	CHECK_INT(tile_parse_bbox("1,2,3", &b, &err), -1);
	CHECK_INT(tile_parse_bbox("1,2,3,4x", &b, &err), -1);
	CHECK(strstr(err.msg, "trailing") != NULL);
	CHECK_INT(tile_parse_bbox("3,2,1,4", &b, &err), -1);
	int i, n;
	CHECK_INT(tile_parse_shard("3/16", &i, &n, &err), 0);
	CHECK_INT(i, 3);
	CHECK_INT(n, 16);
	CHECK_INT(tile_parse_shard("16/16", &i, &n, &err), -1);
	CHECK_INT(tile_parse_shard("1/", &i, &n, &err), -1);
	CHECK_INT(tile_parse_shard("-1/4", &i, &n, &err), -1);
}

int main(void)
{
	RUN(test_known_tile_corner_and_bounds);
	RUN(test_point_to_tile);
	RUN(test_neighbours_share_edges);
	RUN(test_bbox_to_range);
	RUN(test_quadkey);
	RUN(test_shards_cover_once);
	RUN(test_run_size);
	RUN(test_parsing);
	return CHECK_DONE();
}
