/* Unit tests for geo/tileset: pack hand-made GeoTIFF tiles into a mask shard
 * (order, keys, bytes, --shard i/n, missing and out-of-range labels, bad and
 * mismatched tiles, allocation failures: never a shard left behind) and
 * unpack it (bytes, georeferencing, other tile sizes, keyless, duplicate,
 * class-label and foreign shards refused before a tile is written). */
#include "check.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <gdal.h>

#include "core/fs.h"
#include "core/mem.h"
#include "geo/raster.h"
#include "geo/tileset.h"

#define Z 10
#define PLANE (TILE_SIZE * TILE_SIZE)

static char root[64];

/* The 2 x 2 tiles x 5..6, y 7..8 at zoom Z, listed in pack order (x, y). */
static const struct tile tiles[4] = {{Z, 5, 7}, {Z, 5, 8}, {Z, 6, 7}, {Z, 6, 8}};

static uint8_t pixel(const struct tile *t, int band, size_t i)
{
	return (uint8_t)(i * 7 + band * 31 + t->x * 13 + t->y * 5);
}

/* classes 0..2 in stripes, and a corner of 255 (no label) */
static uint8_t label(const struct tile *t, size_t i)
{
	size_t row = i / TILE_SIZE, col = i % TILE_SIZE;
	if (row < 4 && col < 4)
		return 255;
	return (uint8_t)((col / 8 + t->x + t->y) % 3);
}

static void path_of(char *buf, size_t size, const char *dir, const struct tile *t)
{
	snprintf(buf, size, "%s/%s/%d/%u/%u.tif", root, dir, t->z, t->x, t->y);
}

static int write_tile(const char *dir, const struct tile *t, int bands, int size,
		      const uint8_t *data)
{
	char d[256], p[256];
	struct error err;
	snprintf(d, sizeof(d), "%s/%s/%d/%u", root, dir, t->z, t->x);
	path_of(p, sizeof(p), dir, t);
	if (fs_mkdir_p(d, &err) < 0 || raster_write_tile_sized(p, t, size, bands, data, &err) < 0) {
		printf("#   %s\n", err.msg);
		return -1;
	}
	return 0;
}

/* root/img (3 bands) and root/lab (1 band) for the four tiles */
static void make_scene(void)
{
	static uint8_t img[3 * PLANE], lab[PLANE];
	for (int k = 0; k < 4; k++) {
		for (int b = 0; b < 3; b++)
			for (size_t i = 0; i < PLANE; i++)
				img[b * PLANE + i] = pixel(&tiles[k], b, i);
		for (size_t i = 0; i < PLANE; i++)
			lab[i] = label(&tiles[k], i);
		CHECK_INT(write_tile("img", &tiles[k], 3, TILE_SIZE, img), 0);
		CHECK_INT(write_tile("lab", &tiles[k], 1, TILE_SIZE, lab), 0);
	}
}

static void sub(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", root, name);
}

/* No file in root whose name starts with name (the shard or its temp file). */
static int nothing_named(const char *name)
{
	DIR *d = opendir(root);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		n += strncmp(e->d_name, name, strlen(name)) == 0;
	if (d)
		closedir(d);
	return n == 0;
}

static struct tileset_pack_opts opts(const char *img, const char *lab)
{
	static char ib[128], lb[128];
	struct tileset_pack_opts o;
	tileset_pack_opts_init(&o);
	sub(ib, sizeof(ib), img);
	o.imagery = ib;
	if (lab) {
		sub(lb, sizeof(lb), lab);
		o.labels = lb;
	}
	return o;
}

static void test_pack(void)
{
	struct tileset_pack_opts o = opts("img", "lab");
	char out[128];
	sub(out, sizeof(out), "a.ds");
	struct tileset_stats st;
	struct error err;
	CHECK_INT(tileset_pack(&o, out, NULL, &st, &err), 0);
	CHECK_INT(st.tiles, 4);
	CHECK_INT(st.listed, 4);
	CHECK_INT(st.zoom, Z);
	struct dataset ds;
	CHECK_INT(dataset_open(&ds, out, DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.count, 4);
	CHECK_INT(ds.shape.channels, 3);
	CHECK_INT(ds.shape.height, TILE_SIZE);
	CHECK_INT(ds.shape.width, TILE_SIZE);
	CHECK_INT(ds.shape.num_classes, 3);
	CHECK_INT(ds.shape.label_kind, DATASET_LABEL_MASK);
	for (uint64_t r = 0; r < ds.count && r < 4; r++) {
		struct dataset_key k = dataset_key(&ds, r);
		CHECK_INT(k.z, Z);
		CHECK_INT(k.x, tiles[r].x);
		CHECK_INT(k.y, tiles[r].y);
		const uint8_t *im = dataset_image(&ds, r), *m = dataset_mask(&ds, r);
		size_t bad_img = 0, bad_mask = 0;
		for (int b = 0; b < 3; b++)
			for (size_t i = 0; i < PLANE; i++)
				bad_img += im[b * PLANE + i] != pixel(&tiles[r], b, i);
		for (size_t i = 0; i < PLANE; i++)
			bad_mask += m[i] != label(&tiles[r], i);
		CHECK_INT(bad_img, 0);
		CHECK_INT(bad_mask, 0);
	}
	dataset_close(&ds);

	/* without labels: the same pixels, every mask 255 */
	o = opts("img", NULL);
	sub(out, sizeof(out), "p.ds");
	CHECK_INT(tileset_pack(&o, out, NULL, &st, &err), 0);
	CHECK_INT(dataset_open(&ds, out, DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.count, 4);
	size_t not255 = 0;
	for (uint64_t r = 0; r < ds.count; r++)
		for (size_t i = 0; i < PLANE; i++)
			not255 += dataset_mask(&ds, r)[i] != 255;
	CHECK_INT(not255, 0);
	CHECK_INT(dataset_image(&ds, 3)[PLANE + 5], pixel(&tiles[3], 1, 5));
	dataset_close(&ds);
}

static void test_shards(void)
{
	/* tile k goes to shard k mod n: 0/3 gets 0 and 3, 1/3 gets 1, 2/3 gets 2 */
	const int want[3][2] = {{0, 3}, {1, -1}, {2, -1}};
	for (int i = 0; i < 3; i++) {
		struct tileset_pack_opts o = opts("img", "lab");
		o.shard_i = i;
		o.shard_n = 3;
		char out[128];
		sub(out, sizeof(out), "s.ds");
		struct tileset_stats st;
		struct error err;
		CHECK_INT(tileset_pack(&o, out, NULL, &st, &err), 0);
		struct dataset ds;
		CHECK_INT(dataset_open(&ds, out, 0, &err), 0);
		CHECK_INT(ds.count, want[i][1] < 0 ? 1 : 2);
		for (uint64_t r = 0; r < ds.count && r < 2; r++) {
			CHECK_INT(dataset_key(&ds, r).x, tiles[want[i][r]].x);
			CHECK_INT(dataset_key(&ds, r).y, tiles[want[i][r]].y);
		}
		dataset_close(&ds);
	}
	/* a shard past the tiles: empty, with the scene's shape */
	struct tileset_pack_opts o = opts("img", NULL);
	o.shard_i = 7;
	o.shard_n = 8;
	char out[128];
	sub(out, sizeof(out), "e.ds");
	struct tileset_stats st;
	struct error err;
	CHECK_INT(tileset_pack(&o, out, NULL, &st, &err), 0);
	struct dataset ds;
	CHECK_INT(dataset_open(&ds, out, 0, &err), 0);
	CHECK_INT(ds.count, 0);
	CHECK_INT(ds.shape.channels, 3);
	CHECK_INT(ds.shape.width, TILE_SIZE);
	dataset_close(&ds);
}

/* Threads and batches change nothing: the same bytes, and the error of the
 * first bad tile in order, for 1..4 threads and batches of 1..8 tiles. */
static void test_threads(void)
{
	char ref[128], out[128], *a = NULL, *b = NULL;
	size_t na = 0, nb = 0;
	struct tileset_stats st;
	struct error err;
	sub(ref, sizeof(ref), "a.ds");
	sub(out, sizeof(out), "t.ds");
	CHECK_INT(fs_read_all(ref, &a, &na, &err), 0);
	const int cases[][2] = {{1, 1}, {2, 1}, {2, 3}, {4, 0}, {3, 8}};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct tileset_pack_opts o = opts("img", "lab");
		o.threads = cases[c][0];
		o.batch = cases[c][1];
		CHECK_INT(tileset_pack(&o, out, NULL, &st, &err), 0);
		CHECK_INT(fs_read_all(out, &b, &nb, &err), 0);
		CHECK(na == nb && a && b && memcmp(a, b, na) == 0);
		mem_free(b);
		b = NULL;
	}
	mem_free(a);
	/* tiles 1 and 3 garbage: tile 1 is named, whatever the threads */
	char p1[256], p3[256], k1[256], k3[256], want[400];
	path_of(p1, sizeof(p1), "img", &tiles[1]);
	path_of(p3, sizeof(p3), "img", &tiles[3]);
	sub(k1, sizeof(k1), "k1.tif");
	sub(k3, sizeof(k3), "k3.tif");
	CHECK_INT(rename(p1, k1), 0);
	CHECK_INT(rename(p3, k3), 0);
	CHECK_INT(fs_write_atomic(p1, "not a tiff", 10, &err), 0);
	CHECK_INT(fs_write_atomic(p3, "not a tiff", 10, &err), 0);
	snprintf(want, sizeof(want), "%s: cannot open", p1);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct tileset_pack_opts o = opts("img", "lab");
		o.threads = cases[c][0];
		o.batch = cases[c][1];
		CHECK_INT(tileset_pack(&o, out, NULL, &st, &err), TILESET_EBADINPUT);
		CHECK(strstr(err.msg, want) != NULL);
	}
	CHECK_INT(rename(k1, p1), 0);
	CHECK_INT(rename(k3, p3), 0);
	/* unpack with 3 threads: the same tiles as with 1 */
	char u3[128];
	sub(u3, sizeof(u3), "u3");
	CHECK_INT(tileset_unpack(ref, u3, NULL, 3, NULL, &st, &err), 0);
	CHECK_INT(st.tiles, 4);
	for (int k = 0; k < 4; k++) {
		path_of(p1, sizeof(p1), "u", &tiles[k]);
		path_of(p3, sizeof(p3), "u3", &tiles[k]);
		char *x = NULL, *y = NULL;
		size_t nx = 0, ny = 0;
		CHECK_INT(fs_read_all(p1, &x, &nx, &err), 0);
		CHECK_INT(fs_read_all(p3, &y, &ny, &err), 0);
		CHECK(nx == ny && x && y && memcmp(x, y, nx) == 0);
		mem_free(x);
		mem_free(y);
	}
}

/* pack fails with bad input, err containing want, and leaves no x.ds */
static void pack_fails(struct tileset_pack_opts *o, const char *want)
{
	char out[128];
	sub(out, sizeof(out), "x.ds");
	struct tileset_stats st;
	struct error err;
	CHECK_INT(tileset_pack(o, out, NULL, &st, &err), TILESET_EBADINPUT);
	if (!strstr(err.msg, want))
		printf("#   message '%s' lacks '%s'\n", err.msg, want);
	CHECK(strstr(err.msg, want) != NULL);
	CHECK(nothing_named("x.ds"));
}

static void test_pack_errors(void)
{
	static uint8_t buf[4 * PLANE];
	char p[256], want[400];
	struct error err;
	/* a missing label tile (the last one: three records were written) */
	path_of(p, sizeof(p), "lab", &tiles[3]);
	char saved[256];
	sub(saved, sizeof(saved), "saved.tif");
	CHECK_INT(rename(p, saved), 0);
	struct tileset_pack_opts o = opts("img", "lab");
	snprintf(want, sizeof(want), "%s: missing: no label tile for ", p);
	pack_fails(&o, want);
	pack_fails(&o, "--missing-labels ignore");
	o.missing = TILESET_MISSING_IGNORE;
	char out[128];
	sub(out, sizeof(out), "m.ds");
	struct tileset_stats st;
	CHECK_INT(tileset_pack(&o, out, NULL, &st, &err), 0);
	CHECK_INT(st.missing_labels, 1);
	struct dataset ds;
	CHECK_INT(dataset_open(&ds, out, 0, &err), 0);
	CHECK_INT(ds.count, 4);
	CHECK_INT(dataset_mask(&ds, 3)[1000], 255);
	CHECK_INT(dataset_mask(&ds, 2)[1000], label(&tiles[2], 1000));
	dataset_close(&ds);
	CHECK_INT(rename(saved, p), 0);

	/* a label 3 with 3 classes at (col 17, row 9) of tile 1; 4 classes take it */
	for (size_t i = 0; i < PLANE; i++)
		buf[i] = label(&tiles[1], i);
	buf[9 * TILE_SIZE + 17] = 3;
	CHECK_INT(write_tile("lab", &tiles[1], 1, TILE_SIZE, buf), 0);
	o = opts("img", "lab");
	path_of(p, sizeof(p), "lab", &tiles[1]);
	snprintf(want, sizeof(want), "%s: value 3 at pixel (col 17, row 9) is no class 0..2", p);
	pack_fails(&o, want);
	o.num_classes = 4;
	CHECK_INT(tileset_pack(&o, out, NULL, &st, &err), 0);
	/* a label tile of 3 bands */
	CHECK_INT(write_tile("lab", &tiles[1], 3, TILE_SIZE, buf), 0);
	o.num_classes = 3;
	pack_fails(&o, "3 bands of Byte; a label tile is 1 band of Byte, 256x256");
	for (size_t i = 0; i < PLANE; i++)
		buf[i] = label(&tiles[1], i);
	CHECK_INT(write_tile("lab", &tiles[1], 1, TILE_SIZE, buf), 0);

	/* imagery: garbage, then 4 bands where the first tile has 3 */
	path_of(p, sizeof(p), "img", &tiles[2]);
	char keep[256];
	sub(keep, sizeof(keep), "keep.tif");
	CHECK_INT(rename(p, keep), 0);
	CHECK_INT(fs_write_atomic(p, "II*\0garbage, not a TIFF directory", 34, &err), 0);
	o = opts("img", "lab");
	snprintf(want, sizeof(want), "%s: cannot ", p);
	pack_fails(&o, want);
	memset(buf, 9, sizeof(buf));
	CHECK_INT(write_tile("img", &tiles[2], 4, TILE_SIZE, buf), 0);
	snprintf(want, sizeof(want), "%s: 256x256, 4 bands of Byte, but the first tile ", p);
	pack_fails(&o, want);
	CHECK_INT(rename(keep, p), 0);
	/* no folder, no zoom folder for the labels */
	o = opts("nothing", NULL);
	pack_fails(&o, "nothing");
	o = opts("img", "nolab");
	pack_fails(&o, "no zoom 10 folder");
	o = opts("img", "lab");
	o.num_classes = 0;
	pack_fails(&o, "0 classes");
}

/* Every allocation of pack failing in turn: an error, never a crash, and no
 * shard left; once enough succeed, the same shard as without failures. */
static void test_pack_oom(void)
{
	struct tileset_pack_opts o = opts("img", "lab");
	char out[128];
	sub(out, sizeof(out), "oom.ds");
	struct tileset_stats st;
	struct error err;
	int rc = -1, k;
	for (k = 0; k < 200 && rc != 0; k++) {
		mem_fail_after(k);
		rc = tileset_pack(&o, out, NULL, &st, &err);
		mem_fail_after(-1);
		if (rc != 0)
			CHECK(nothing_named("oom.ds"));
	}
	CHECK_INT(rc, 0);
	CHECK(k > 1);
	char *a = NULL, *b = NULL, ap[128];
	size_t na = 0, nb = 0;
	sub(ap, sizeof(ap), "a.ds");
	CHECK_INT(fs_read_all(out, &a, &na, &err), 0);
	CHECK_INT(fs_read_all(ap, &b, &nb, &err), 0);
	CHECK(na == nb && a && b && memcmp(a, b, na) == 0);
	mem_free(a);
	mem_free(b);
}

static void test_unpack(void)
{
	char in[128], out[128], p[256];
	sub(in, sizeof(in), "a.ds");
	sub(out, sizeof(out), "u");
	struct tileset_stats st;
	struct error err;
	char like[128];
	sub(like, sizeof(like), "img");
	CHECK_INT(tileset_unpack(in, out, like, 1, NULL, &st, &err), 0);
	CHECK_INT(st.tiles, 4);
	static uint8_t got[PLANE];
	for (int k = 0; k < 4; k++) {
		path_of(p, sizeof(p), "u", &tiles[k]);
		CHECK_INT(raster_read_tile(p, 1, got, &err), 0);
		size_t bad = 0;
		for (size_t i = 0; i < PLANE; i++)
			bad += got[i] != label(&tiles[k], i);
		CHECK_INT(bad, 0);
	}
	/* georeferenced like raster_write_tile: the tile's bounds, EPSG:3857 */
	path_of(p, sizeof(p), "u", &tiles[3]);
	GDALDatasetH ds = GDALOpen(p, GA_ReadOnly);
	CHECK(ds != NULL);
	if (ds) {
		double gt[6];
		struct bbox b;
		tile_bounds(&tiles[3], &b);
		CHECK_INT(GDALGetGeoTransform(ds, gt), CE_None);
		CHECK_NEAR(gt[0], b.w, 1e-12);
		CHECK_NEAR(gt[3], b.n, 1e-12);
		CHECK_NEAR(gt[1], (b.e - b.w) / TILE_SIZE, 1e-12);
		CHECK_NEAR(gt[5], -(b.n - b.s) / TILE_SIZE, 1e-12);
		CHECK(strstr(GDALGetProjectionRef(ds), "3857") != NULL);
		GDALClose(ds);
	}
}

/* 64 x 64 tiles: packed at their size, unpacked with the resolution of it */
static void test_other_size(void)
{
	static uint8_t img[64 * 64], got[64 * 64];
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < sizeof(img); i++)
			img[i] = (uint8_t)(i % 3 == 0 ? 255 : (i + k) % 3);
		CHECK_INT(write_tile("small", &tiles[k], 1, 64, img), 0);
	}
	struct tileset_pack_opts o = opts("small", "small");
	char shard[128], out[128], p[256];
	sub(shard, sizeof(shard), "small.ds");
	sub(out, sizeof(out), "su");
	struct tileset_stats st;
	struct error err;
	CHECK_INT(tileset_pack(&o, shard, NULL, &st, &err), 0);
	CHECK_INT(st.shape.width, 64);
	CHECK_INT(st.shape.channels, 1);
	CHECK_INT(tileset_unpack(shard, out, NULL, 1, NULL, &st, &err), 0);
	path_of(p, sizeof(p), "su", &tiles[1]);
	GDALDatasetH ds = GDALOpen(p, GA_ReadOnly);
	CHECK(ds != NULL);
	if (ds) {
		double gt[6];
		struct bbox b;
		tile_bounds(&tiles[1], &b);
		CHECK_INT(GDALGetRasterXSize(ds), 64);
		CHECK_INT(GDALGetGeoTransform(ds, gt), CE_None);
		CHECK_NEAR(gt[1], (b.e - b.w) / 64, 1e-12);
		CHECK_INT(GDALRasterIO(GDALGetRasterBand(ds, 1), GF_Read, 0, 0, 64, 64, got, 64, 64,
				       GDT_Byte, 0, 0),
			  CE_None);
		for (size_t i = 0; i < sizeof(img); i++)
			img[i] = (uint8_t)(i % 3 == 0 ? 255 : (i + 1) % 3);
		CHECK(memcmp(got, img, sizeof(img)) == 0);
		GDALClose(ds);
	}
}

/* A shard of n 8x8 (or h x w) masks, keys from keys[] (NULL entries: none). */
static void write_shard(const char *name, uint32_t h, uint32_t w, uint32_t kind,
			const struct dataset_key *keys, int n)
{
	char p[128];
	sub(p, sizeof(p), name);
	struct dataset_shape s = {1, h, w, 3, kind};
	struct dataset_writer wr;
	struct error err;
	uint8_t px[64] = {0}, m[64] = {0};
	CHECK_INT(dataset_writer_open(&wr, p, &s, &err), 0);
	for (int i = 0; i < n; i++) {
		if (kind == DATASET_LABEL_MASK)
			CHECK_INT(
			    dataset_writer_add_mask(&wr, px, m, keys[i].z ? &keys[i] : NULL, &err),
			    0);
		else
			CHECK_INT(dataset_writer_add(&wr, px, 1, &err), 0);
	}
	CHECK_INT(dataset_writer_finish(&wr, &err), 0);
}

/* unpack fails with bad input, err containing want, and writes no tile */
static void unpack_fails(const char *name, const char *like, const char *want)
{
	char in[128], out[128], lk[128];
	sub(in, sizeof(in), name);
	sub(out, sizeof(out), "bad-out");
	if (like)
		sub(lk, sizeof(lk), like);
	struct tileset_stats st;
	struct error err;
	CHECK_INT(tileset_unpack(in, out, like ? lk : NULL, 2, NULL, &st, &err), TILESET_EBADINPUT);
	if (!strstr(err.msg, want))
		printf("#   message '%s' lacks '%s'\n", err.msg, want);
	CHECK(strstr(err.msg, want) != NULL);
	CHECK(!fs_exists(out));
}

static void test_unpack_errors(void)
{
	const struct dataset_key k[3] = {{Z, 5, 7}, {0, 0, 0}, {Z, 5, 7}};
	const struct dataset_key far[1] = {{Z, 100, 100}};
	write_shard("nokey.ds", 8, 8, DATASET_LABEL_MASK, k, 2);
	unpack_fails("nokey.ds", NULL, "nokey.ds: record 1 has no tile key");
	write_shard("dup.ds", 8, 8, DATASET_LABEL_MASK, (const struct dataset_key[]){k[0], k[2]},
		    2);
	unpack_fails("dup.ds", NULL, "dup.ds: records 0 and 1 are both tile 10/5/7");
	write_shard("class.ds", 8, 8, DATASET_LABEL_CLASS, k, 2);
	unpack_fails("class.ds", NULL, "a shard of class labels");
	write_shard("rect.ds", 4, 8, DATASET_LABEL_MASK, k, 1);
	unpack_fails("rect.ds", NULL, "masks of 8x4 pixels; an XYZ tile is square");
	write_shard("far.ds", 8, 8, DATASET_LABEL_MASK, far, 1);
	unpack_fails("far.ds", "img", "far.ds: record 0 is tile 10/100/100, but ");
	unpack_fails("far.ds", "noimg", "--like");
	unpack_fails("none.ds", NULL, "none.ds");
}

/* A tile larger than the 256 MB a batch may hold, with a batch asked for:
 * still one tile a batch (0 slots never advanced: pack spun forever). */
static void test_huge_tile(void)
{
	const int size = 11600; /* 1 band + mask: 269 MB */
	uint8_t *img = calloc((size_t)size * size, 1);
	CHECK(img != NULL);
	if (!img)
		return;
	CHECK_INT(write_tile("huge", &tiles[0], 1, size, img), 0);
	free(img);
	struct tileset_pack_opts o = opts("huge", NULL);
	o.batch = 4;
	char shard[128];
	sub(shard, sizeof(shard), "huge.ds");
	struct tileset_stats st;
	struct error err;
	alarm(30); /* fail, not hang */
	CHECK_INT(tileset_pack(&o, shard, NULL, &st, &err), 0);
	alarm(0);
	CHECK_INT(st.tiles, 1);
	unlink(shard);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/cairn-tileset.XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	raster_init();
	make_scene();
	RUN(test_pack);
	RUN(test_shards);
	RUN(test_pack_errors);
	RUN(test_pack_oom);
	RUN(test_unpack);
	RUN(test_threads);
	RUN(test_other_size);
	RUN(test_unpack_errors);
	RUN(test_huge_tile);
	struct error err;
	if (!getenv("KEEP_TMP"))
		fs_rm_rf(root, &err);
	return CHECK_DONE();
}
