/* Unit tests for nn/dataset: shard round trip, header and size checks with
 * byte offsets, IDX import (plain and gzip, truncated, wrong magic), split,
 * Zipf imbalance, channel statistics, mask shards, out-of-memory paths. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "core/fs.h"
#include "core/mem.h"
#include "nn/dataset.h"
#include "shard.h"

static char dir[] = "/tmp/cairn-dataset.XXXXXX";

static const char *tmp(const char *name)
{
	static char bufs[8][512];
	static int k;
	char *b = bufs[k++ % 8];
	snprintf(b, 512, "%s/%s", dir, name);
	return b;
}

/* Record i of the synthetic shards: pixels 0 and 1 hold i (so every record is
 * recognizable), pixel j >= 2 is (i * 7 + j) % 256; label = labels ? labels[i] : i % K. */
static void fill(uint8_t *px, size_t img, uint64_t i)
{
	for (size_t j = 0; j < img; j++)
		px[j] = (uint8_t)((i * 7 + j) % 256);
	px[0] = (uint8_t)(i & 255);
	if (img > 1)
		px[1] = (uint8_t)(i >> 8);
}

static uint64_t record_id(const struct dataset *ds, uint64_t i)
{
	const uint8_t *p = dataset_image(ds, i);
	return p[0] | (uint64_t)p[1] << 8;
}

/* ctx: the labels, or NULL for i % K */
static int add_class_record(struct dataset_writer *w, const struct dataset_shape *s, uint64_t i,
			    uint8_t *px, const void *ctx, struct error *err)
{
	const uint32_t *labels = ctx;
	fill(px, (size_t)s->channels * s->height * s->width, i);
	return dataset_writer_add(w, px, labels ? labels[i] : (uint32_t)(i % s->num_classes), err);
}

static int make_shard_labels(const char *path, uint32_t C, uint32_t H, uint32_t W, uint32_t K,
			     uint64_t n, const uint32_t *labels)
{
	struct dataset_shape s = {C, H, W, K, DATASET_LABEL_CLASS};
	return shard_write(path, &s, n, add_class_record, labels);
}

static int make_shard(const char *path, uint32_t C, uint32_t H, uint32_t W, uint32_t K, uint64_t n)
{
	return make_shard_labels(path, C, H, W, K, n, NULL);
}

/* Mask record i of make_mask_shard: pixels as fill(); mask pixel j is
 * (i + j) % (K + 1), with K read as 255 (ignored); key 5/i/(31 - i), record 3
 * without a key. */
static void mask_of(uint8_t *m, size_t plane, uint64_t i, uint32_t K)
{
	for (size_t j = 0; j < plane; j++) {
		uint32_t v = (uint32_t)((i + j) % (K + 1));
		m[j] = (uint8_t)(v == K ? DATASET_MASK_IGNORE : v);
	}
}

static int add_mask_record(struct dataset_writer *w, const struct dataset_shape *s, uint64_t i,
			   uint8_t *px, const void *ctx, struct error *err)
{
	(void)ctx;
	size_t plane = (size_t)s->height * s->width, img = s->channels * plane;
	fill(px, img, i);
	mask_of(px + img, plane, i, s->num_classes);
	struct dataset_key k = {5, (uint32_t)i, (uint32_t)(31 - i)};
	return dataset_writer_add_mask(w, px, px + img, i == 3 ? NULL : &k, err);
}

static int make_mask_shard(const char *path, uint32_t C, uint32_t H, uint32_t W, uint32_t K,
			   uint64_t n)
{
	struct dataset_shape s = {C, H, W, K, DATASET_LABEL_MASK};
	return shard_write(path, &s, n, add_mask_record, NULL);
}

static int file_bytes(const char *path, uint8_t **data, size_t *len)
{
	struct error err;
	return fs_read_all(path, (char **)data, len, &err);
}

static int write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static void test_round_trip(void)
{
	const char *p = tmp("rt.ds");
	CHECK_INT(make_shard(p, 3, 4, 5, 7, 100), 0);
	struct dataset ds;
	struct error err;
	CHECK_INT(dataset_open(&ds, p, DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.count, 100);
	CHECK_INT(ds.shape.channels, 3);
	CHECK_INT(ds.shape.height, 4);
	CHECK_INT(ds.shape.width, 5);
	CHECK_INT(ds.shape.num_classes, 7);
	CHECK_INT(ds.record_bytes, 64);
	CHECK_INT(ds.map_len, 64 + 100 * 64);
	int good = 1;
	uint8_t want[60];
	for (uint64_t i = 0; i < 100; i++) {
		fill(want, 60, i);
		good &= memcmp(dataset_image(&ds, i), want, 60) == 0;
		good &= dataset_label(&ds, i) == i % 7;
	}
	CHECK(good);
	uint64_t h[7];
	dataset_histogram(&ds, h);
	CHECK_INT(h[0], 15);
	CHECK_INT(h[1], 15);
	CHECK_INT(h[2], 14);
	CHECK_INT(h[6], 14);
	dataset_close(&ds);
	/* no temp file left behind */
	char tmpname[600];
	snprintf(tmpname, sizeof(tmpname), "%s.tmp.%ld", p, (long)getpid());
	CHECK(!fs_exists(tmpname));
}

static void test_header_bytes_are_as_documented(void)
{
	const char *p = tmp("hdr.ds");
	CHECK_INT(make_shard(p, 1, 2, 3, 4, 5), 0);
	uint8_t *d;
	size_t n;
	CHECK_INT(file_bytes(p, &d, &n), 0);
	CHECK_INT(n, 64 + 5 * 10);
	CHECK(memcmp(d, "CAIRNDS\0", 8) == 0);
	CHECK_INT(d[8], 1);   /* version */
	CHECK_INT(d[12], 64); /* header bytes */
	CHECK_INT(d[16], 5);  /* count */
	CHECK_INT(d[24], 1);  /* C */
	CHECK_INT(d[28], 2);  /* H */
	CHECK_INT(d[32], 3);  /* W */
	CHECK_INT(d[36], 1);  /* uint8 */
	CHECK_INT(d[40], 4);  /* classes */
	CHECK_INT(d[44], 10); /* record bytes */
	uint32_t crc = (uint32_t)crc32(0, d + 64, 50);
	CHECK_INT(d[48] | d[49] << 8 | d[50] << 16 | (uint32_t)d[51] << 24, crc);
	uint32_t hcrc = (uint32_t)crc32(0, d, 60);
	CHECK_INT(d[60] | d[61] << 8 | d[62] << 16 | (uint32_t)d[63] << 24, hcrc);
	/* record 1: 6 pixels then label 1 as uint32 little-endian */
	CHECK_INT(d[64 + 10 + 6], 1);
	CHECK_INT(d[64 + 10 + 7], 0);
	mem_free(d);
}

static void test_empty_shard(void)
{
	const char *p = tmp("empty.ds");
	CHECK_INT(make_shard(p, 1, 2, 2, 3, 0), 0);
	struct dataset ds;
	struct error err;
	CHECK_INT(dataset_open(&ds, p, DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.count, 0);
	dataset_close(&ds);
}

/* Open a damaged copy; expect DATASET_EBADINPUT and a message containing want. */
static void expect_open_error(const uint8_t *data, size_t len, unsigned flags, const char *want)
{
	const char *p = tmp("bad.ds");
	CHECK_INT(write_bytes(p, data, len), 0);
	struct dataset ds;
	struct error err = {{0}};
	CHECK_INT(dataset_open(&ds, p, flags, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, p) != NULL);
	if (!strstr(err.msg, want))
		printf("#   message '%s' lacks '%s'\n", err.msg, want);
	CHECK(strstr(err.msg, want) != NULL);
}

/* Recompute the header CRC after editing a field, so the field check itself is reached. */
static void fix_header_crc(uint8_t *h)
{
	uint32_t c = (uint32_t)crc32(0, h, 60);
	for (int i = 0; i < 4; i++)
		h[60 + i] = (uint8_t)(c >> (8 * i));
}

static void test_truncated_and_corrupt_shards(void)
{
	const char *p = tmp("good.ds");
	CHECK_INT(make_shard(p, 1, 4, 4, 3, 20), 0); /* records of 20 bytes */
	uint8_t *d;
	size_t n;
	CHECK_INT(file_bytes(p, &d, &n), 0);
	CHECK_INT(n, 64 + 400);
	expect_open_error(d, 0, 0, "truncated at byte 0");
	expect_open_error(d, 30, 0, "truncated at byte 30");
	/* 64 + 5 records + 7 bytes: record 5 at byte 164 is incomplete */
	expect_open_error(d, 64 + 107, 0, "truncated at byte 171");
	expect_open_error(d, 64 + 107, 0, "record 5 at byte 164 is incomplete");
	uint8_t *big = malloc(n + 3);
	memcpy(big, d, n);
	memset(big + n, 0, 3);
	expect_open_error(big, n + 3, 0, "3 unexpected bytes after the last record, at byte 464");
	free(big);

	/* one byte set, then (fix_crc) the header checksum made to match */
	static const struct {
		size_t at;
		uint8_t value;
		int fix_crc;
		const char *want;
	} edits[] = {
	    {0, 'X', 0, "byte 0: not a cairn dataset shard"},
	    {8, 9, 0, "byte 8: shard version 9"},
	    {17, 1, 0, "byte 60: header checksum mismatch"}, /* the count */
	    {24, 9, 1, "byte 24: 9 channels, expected 1 to 4"},
	    {32, 0, 1, "byte 32: width 0"},
	    {44, 21, 1, "byte 44: record size 21, expected 20"},
	    {55, 1, 1, "byte 52: reserved header bytes are set"},
	    {64 + 20 * 7 + 16, 3, 0, "byte 220: record 7 has label 3"}, /* of 3 classes */
	};
	uint8_t *c = malloc(n);
	for (size_t k = 0; k < sizeof(edits) / sizeof(edits[0]); k++) {
		memcpy(c, d, n);
		c[edits[k].at] = edits[k].value;
		if (edits[k].fix_crc)
			fix_header_crc(c);
		expect_open_error(c, n, 0, edits[k].want);
	}
	memcpy(c, d, n);
	c[64 + 20 * 3 + 5] ^= 0xff; /* a pixel of record 3 */
	expect_open_error(c, n, DATASET_VERIFY, "data checksum mismatch");
	{ /* without DATASET_VERIFY the pixel damage is not seen (by design: no full read) */
		struct dataset ds;
		struct error err;
		CHECK_INT(dataset_open(&ds, tmp("bad.ds"), 0, &err), 0);
		dataset_close(&ds);
	}
	free(c);
	mem_free(d);

	struct dataset ds;
	struct error err;
	CHECK_INT(dataset_open(&ds, tmp("no-such.ds"), 0, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "no-such.ds: cannot open") != NULL);
}

static void test_writer_rejects_bad_shape_and_label(void)
{
	struct dataset_writer w;
	struct error err;
	struct dataset_shape s = {5, 2, 2, 3, DATASET_LABEL_CLASS};
	CHECK(dataset_writer_open(&w, tmp("x.ds"), &s, &err) < 0);
	CHECK(strstr(err.msg, "5 channels") != NULL);
	s.channels = 1;
	CHECK_INT(dataset_writer_open(&w, tmp("x.ds"), &s, &err), 0);
	uint8_t px[4] = {0};
	CHECK(dataset_writer_add(&w, px, 3, &err) < 0);
	CHECK(strstr(err.msg, "label 3") != NULL);
	dataset_writer_abort(&w);
	CHECK(!fs_exists(tmp("x.ds")));
}

/* ---- IDX ---- */

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* IDX images: n x 3 x 2, pixel j of image i = i * 10 + j. Labels: i % 4. */
static size_t make_idx(uint8_t *img, uint8_t *lab, uint32_t n)
{
	be32(img, 0x803);
	be32(img + 4, n);
	be32(img + 8, 3);
	be32(img + 12, 2);
	for (uint32_t i = 0; i < n; i++)
		for (int j = 0; j < 6; j++)
			img[16 + i * 6 + j] = (uint8_t)(i * 10 + j);
	be32(lab, 0x801);
	be32(lab + 4, n);
	for (uint32_t i = 0; i < n; i++)
		lab[8 + i] = (uint8_t)(i % 4);
	return 16 + (size_t)n * 6;
}

static int write_gz(const char *path, const void *data, size_t len)
{
	gzFile g = gzopen(path, "wb");
	if (!g)
		return -1;
	int ok = gzwrite(g, data, (unsigned)len) == (int)len;
	return gzclose(g) == Z_OK && ok ? 0 : -1;
}

static void check_imported(const char *path, uint32_t n, uint32_t classes)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(dataset_open(&ds, path, DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.count, n);
	CHECK_INT(ds.shape.channels, 1);
	CHECK_INT(ds.shape.height, 3);
	CHECK_INT(ds.shape.width, 2);
	CHECK_INT(ds.shape.num_classes, classes);
	int good = 1;
	for (uint32_t i = 0; i < ds.count; i++) {
		for (int j = 0; j < 6; j++)
			good &= dataset_image(&ds, i)[j] == (uint8_t)(i * 10 + j);
		good &= dataset_label(&ds, i) == i % 4;
	}
	CHECK(good);
	dataset_close(&ds);
}

static void test_idx_import_plain_and_gzip(void)
{
	uint8_t img[16 + 9 * 6], lab[8 + 9];
	size_t ni = make_idx(img, lab, 9);
	CHECK_INT(write_bytes(tmp("i.idx"), img, ni), 0);
	CHECK_INT(write_bytes(tmp("l.idx"), lab, sizeof(lab)), 0);
	CHECK_INT(write_gz(tmp("i.idx.gz"), img, ni), 0);
	CHECK_INT(write_gz(tmp("l.idx.gz"), lab, sizeof(lab)), 0);
	struct error err;
	CHECK_INT(dataset_import_idx(tmp("i.idx"), tmp("l.idx"), tmp("plain.ds"), 0, NULL, &err),
		  0);
	check_imported(tmp("plain.ds"), 9, 4);
	CHECK_INT(
	    dataset_import_idx(tmp("i.idx.gz"), tmp("l.idx.gz"), tmp("gz.ds"), 10, NULL, &err), 0);
	check_imported(tmp("gz.ds"), 9, 10);
}

static void expect_import_error(const char *images, const char *labels, uint32_t classes,
				const char *want)
{
	struct error err = {{0}};
	CHECK_INT(dataset_import_idx(images, labels, tmp("fail.ds"), classes, NULL, &err),
		  DATASET_EBADINPUT);
	if (!strstr(err.msg, want))
		printf("#   message '%s' lacks '%s'\n", err.msg, want);
	CHECK(strstr(err.msg, want) != NULL);
	CHECK(!fs_exists(tmp("fail.ds")));
}

static void test_idx_errors_name_file_and_offset(void)
{
	uint8_t img[16 + 9 * 6], lab[8 + 9];
	size_t ni = make_idx(img, lab, 9);
	CHECK_INT(write_bytes(tmp("l.idx"), lab, sizeof(lab)), 0);
	/* truncated plain: 16 + 4 whole images + 3 bytes */
	CHECK_INT(write_bytes(tmp("t.idx"), img, 16 + 27), 0);
	char want[600];
	snprintf(want, sizeof(want), "%s: truncated at byte 43", tmp("t.idx"));
	expect_import_error(tmp("t.idx"), tmp("l.idx"), 0, want);
	/* truncated gzip: the compressed stream cut short */
	uint8_t big[16 + 200 * 6], biglab[8 + 200];
	size_t nb = make_idx(big, biglab, 200);
	CHECK_INT(write_gz(tmp("big.gz"), big, nb), 0);
	CHECK_INT(write_bytes(tmp("bl.idx"), biglab, sizeof(biglab)), 0);
	uint8_t *gz;
	size_t gzlen;
	CHECK_INT(file_bytes(tmp("big.gz"), &gz, &gzlen), 0);
	CHECK_INT(write_bytes(tmp("tbig.gz"), gz, gzlen / 2), 0);
	mem_free(gz);
	snprintf(want, sizeof(want), "%s: truncated at byte ", tmp("tbig.gz"));
	expect_import_error(tmp("tbig.gz"), tmp("bl.idx"), 0, want);
	expect_import_error(tmp("tbig.gz"), tmp("bl.idx"), 0, "(uncompressed)");
	/* wrong magic: a label file given as images */
	snprintf(want, sizeof(want), "%s: byte 3: 1 dimensions, expected 3", tmp("l.idx"));
	expect_import_error(tmp("l.idx"), tmp("l.idx"), 0, want);
	uint8_t junk[32] = "PK\3\4 not an idx file at all....";
	CHECK_INT(write_bytes(tmp("junk"), junk, sizeof(junk)), 0);
	expect_import_error(tmp("junk"), tmp("l.idx"), 0, "byte 0: not an IDX file");
	/* counts differ */
	uint8_t lab8[8 + 8];
	memcpy(lab8, lab, sizeof(lab8));
	be32(lab8 + 4, 8);
	CHECK_INT(write_bytes(tmp("l8.idx"), lab8, sizeof(lab8)), 0);
	CHECK_INT(write_bytes(tmp("i.idx"), img, ni), 0);
	expect_import_error(tmp("i.idx"), tmp("l8.idx"), 0, "byte 4: 9 images, but");
	/* trailing data */
	uint8_t longer[sizeof(img) + 2];
	memcpy(longer, img, ni);
	longer[ni] = longer[ni + 1] = 0;
	CHECK_INT(write_bytes(tmp("long.idx"), longer, ni + 2), 0);
	expect_import_error(tmp("long.idx"), tmp("l.idx"), 0,
			    "byte 70: unexpected data after the last item");
	/* label beyond --classes: item 3 has label 3 at byte 11 */
	expect_import_error(tmp("i.idx"), tmp("l.idx"), 3,
			    "byte 11: label 3 of item 3 >= 3 classes");
	/* missing file */
	expect_import_error(tmp("none.idx"), tmp("l.idx"), 0, "none.idx: cannot open");
	/* empty and short-header files are bad input (DATASET_EBADINPUT), not I/O failures */
	CHECK_INT(write_bytes(tmp("zero.idx"), "", 0), 0);
	CHECK_INT(write_bytes(tmp("short.idx"), "\0\0\x08\x03\0\0", 6), 0);
	struct error e2;
	CHECK_INT(dataset_import_idx(tmp("zero.idx"), tmp("l.idx"), tmp("z.ds"), 0, NULL, &e2),
		  DATASET_EBADINPUT);
	CHECK(strstr(e2.msg, "zero.idx: truncated at byte 0") != NULL);
	CHECK_INT(dataset_import_idx(tmp("short.idx"), tmp("l.idx"), tmp("z.ds"), 0, NULL, &e2),
		  DATASET_EBADINPUT);
	CHECK(strstr(e2.msg, "short.idx: truncated at byte 6") != NULL);
}

/* ---- split ---- */

static void test_split_is_stratified_and_seeded(void)
{
	/* 10 classes with 20..29 records, labels interleaved */
	uint32_t labels[245];
	uint64_t n = 0;
	for (uint32_t r = 0; r < 29; r++)
		for (uint32_t k = 0; k < 10; k++)
			if (r < 20 + k)
				labels[n++] = k;
	CHECK_INT(n, 245);
	CHECK_INT(make_shard_labels(tmp("s.ds"), 1, 2, 2, 10, n, labels), 0);
	struct dataset ds, a, b;
	struct error err;
	CHECK_INT(dataset_open(&ds, tmp("s.ds"), 0, &err), 0);
	CHECK_INT(dataset_split(&ds, 0.3, 42, tmp("a.ds"), tmp("b.ds"), NULL, &err), 0);
	CHECK_INT(dataset_open(&a, tmp("a.ds"), DATASET_VERIFY, &err), 0);
	CHECK_INT(dataset_open(&b, tmp("b.ds"), DATASET_VERIFY, &err), 0);
	uint64_t ha[10], hb[10];
	dataset_histogram(&a, ha);
	dataset_histogram(&b, hb);
	for (uint32_t k = 0; k < 10; k++) {
		uint64_t nk = 20 + k, want = (uint64_t)llround(0.3 * (double)nk);
		CHECK_INT(ha[k], want);
		CHECK_INT(hb[k], nk - want);
	}
	/* every record in exactly one output, in file order, label kept */
	int seen[245] = {0}, ordered = 1, labels_ok = 1;
	const struct dataset *parts[2] = {&a, &b};
	for (int p = 0; p < 2; p++) {
		uint64_t prev = 0;
		for (uint64_t i = 0; i < parts[p]->count; i++) {
			uint64_t id = record_id(parts[p], i);
			seen[id]++;
			ordered &= i == 0 || id > prev;
			labels_ok &= dataset_label(parts[p], i) == labels[id];
			prev = id;
		}
	}
	int once = 1;
	for (int i = 0; i < 245; i++)
		once &= seen[i] == 1;
	CHECK(once);
	CHECK(ordered);
	CHECK(labels_ok);
	/* same seed, same bytes; another seed, another split */
	CHECK_INT(dataset_split(&ds, 0.3, 42, tmp("a2.ds"), tmp("b2.ds"), NULL, &err), 0);
	CHECK_INT(dataset_split(&ds, 0.3, 43, tmp("a3.ds"), tmp("b3.ds"), NULL, &err), 0);
	uint8_t *x, *y, *z;
	size_t nx, ny, nz;
	CHECK_INT(file_bytes(tmp("a.ds"), &x, &nx), 0);
	CHECK_INT(file_bytes(tmp("a2.ds"), &y, &ny), 0);
	CHECK_INT(file_bytes(tmp("a3.ds"), &z, &nz), 0);
	CHECK(nx == ny && memcmp(x, y, nx) == 0);
	CHECK(nx == nz && memcmp(x, z, nx) != 0);
	mem_free(x);
	mem_free(y);
	mem_free(z);
	CHECK_INT(dataset_split(&ds, 1.5, 1, tmp("a4.ds"), tmp("b4.ds"), NULL, &err),
		  DATASET_EBADINPUT);
	dataset_close(&a);
	dataset_close(&b);
	dataset_close(&ds);
}

/* Split writes both outputs or neither; one file named twice is refused. */
static void test_split_outputs_both_or_neither(void)
{
	CHECK_INT(make_shard(tmp("sp.ds"), 1, 2, 2, 3, 30), 0);
	struct dataset ds;
	struct error err;
	CHECK_INT(dataset_open(&ds, tmp("sp.ds"), 0, &err), 0);
	CHECK_INT(dataset_split(&ds, 0.5, 1, tmp("same.ds"), tmp("same.ds"), NULL, &err),
		  DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "same file") != NULL);
	CHECK_INT(dataset_split(&ds, 0.5, 1, tmp("same.ds"), tmp("./same.ds"), NULL, &err),
		  DATASET_EBADINPUT);
	CHECK(!fs_exists(tmp("same.ds")));
	/* the second output cannot be created: the first is not written either */
	CHECK(dataset_split(&ds, 0.5, 1, tmp("first.ds"), tmp("nodir/rest.ds"), NULL, &err) < 0);
	CHECK(strstr(err.msg, "nodir/rest.ds") != NULL);
	CHECK(!fs_exists(tmp("first.ds")));
	/* a FIFO as --rest: written in place, still a FIFO */
	CHECK_INT(mkfifo(tmp("rest.fifo"), 0644), 0);
	int rd = open(tmp("rest.fifo"), O_RDONLY | O_NONBLOCK);
	CHECK(rd >= 0);
	CHECK_INT(dataset_split(&ds, 0.5, 1, tmp("half.ds"), tmp("rest.fifo"), NULL, &err), 0);
	uint8_t buf[1024];
	CHECK_INT(read(rd, buf, sizeof(buf)), 64 + 15 * 8);
	CHECK(memcmp(buf, DATASET_MAGIC, 8) == 0);
	close(rd);
	struct stat st;
	CHECK(lstat(tmp("rest.fifo"), &st) == 0 && S_ISFIFO(st.st_mode));
	dataset_close(&ds);
}

/* merge reads every byte: a data checksum mismatch in an input is an error,
 * not a corrupt record under a fresh checksum. */
static void test_merge_verifies_inputs(void)
{
	CHECK_INT(make_shard(tmp("mv.ds"), 1, 2, 2, 3, 10), 0);
	uint8_t *d;
	size_t n;
	CHECK_INT(file_bytes(tmp("mv.ds"), &d, &n), 0);
	d[64 + 8 * 2] ^= 0xff; /* a pixel of record 2 */
	CHECK_INT(write_bytes(tmp("mvbad.ds"), d, n), 0);
	mem_free(d);
	struct error err;
	const char *in[2] = {tmp("mv.ds"), tmp("mvbad.ds")};
	CHECK_INT(dataset_merge(in, 2, tmp("mvout.ds"), NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "mvbad.ds: data checksum mismatch") != NULL);
	CHECK(!fs_exists(tmp("mvout.ds")));
}

/* ---- imbalance ---- */

struct last_progress {
	uint64_t done, total;
	int calls;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct last_progress *p = ctx;
	p->done = done;
	p->total = total;
	p->calls++;
}

static void test_zipf_counts_follow_the_curve(void)
{
	/* 12 classes of 200 records each */
	CHECK_INT(make_shard(tmp("z.ds"), 1, 2, 2, 12, 2400), 0);
	struct dataset ds, out;
	struct error err;
	CHECK_INT(dataset_open(&ds, tmp("z.ds"), 0, &err), 0);
	struct dataset_imbalance opt = {.zipf_s = 1.2, .seed = 9, .min_keep = 1};
	uint64_t keep[12];
	CHECK_INT(dataset_imbalance_plan(&ds, &opt, keep, &err), 0);
	/* sorted quotas are floor(200 * r^-1.2), r = 1..12 */
	uint64_t sorted[12];
	memcpy(sorted, keep, sizeof(sorted));
	for (int i = 0; i < 12; i++)
		for (int j = i + 1; j < 12; j++)
			if (sorted[j] > sorted[i]) {
				uint64_t t = sorted[i];
				sorted[i] = sorted[j];
				sorted[j] = t;
			}
	for (int r = 1; r <= 12; r++)
		CHECK_INT(sorted[r - 1], (uint64_t)floor(200 * pow(r, -1.2) + 1e-9));
	CHECK_INT(sorted[0], 200);
	CHECK_INT(sorted[1], 87);  /* 200 / 2^1.2 = 87.05 */
	CHECK_INT(sorted[11], 10); /* 200 / 12^1.2 = 10.17 */
	/* the written shard has exactly those counts; progress ends at done == total */
	struct last_progress lp = {0, 0, 0};
	struct dataset_progress prog = {on_progress, &lp};
	CHECK_INT(dataset_imbalance(&ds, &opt, tmp("zo.ds"), &prog, &err), 0);
	CHECK_INT(lp.done, 2400);
	CHECK_INT(lp.total, 2400);
	CHECK_INT(lp.calls, 1); /* 2400 < 4096: only the final report */
	CHECK_INT(dataset_open(&out, tmp("zo.ds"), DATASET_VERIFY, &err), 0);
	uint64_t h[12];
	dataset_histogram(&out, h);
	int same = 1;
	for (int k = 0; k < 12; k++)
		same &= h[k] == keep[k];
	CHECK(same);
	dataset_close(&out);
	/* seed decides which class is the head; same seed, same plan */
	uint64_t again[12], other[12];
	CHECK_INT(dataset_imbalance_plan(&ds, &opt, again, &err), 0);
	CHECK(memcmp(again, keep, sizeof(keep)) == 0);
	opt.seed = 10;
	CHECK_INT(dataset_imbalance_plan(&ds, &opt, other, &err), 0);
	CHECK(memcmp(other, keep, sizeof(keep)) != 0);
	/* s = 0: every class keeps the head count; head and min options */
	struct dataset_imbalance flat = {.zipf_s = 0, .seed = 1, .head = 50, .min_keep = 0};
	CHECK_INT(dataset_imbalance_plan(&ds, &flat, keep, &err), 0);
	for (int k = 0; k < 12; k++)
		CHECK_INT(keep[k], 50);
	struct dataset_imbalance steep = {.zipf_s = 3, .seed = 1, .min_keep = 5};
	CHECK_INT(dataset_imbalance_plan(&ds, &steep, keep, &err), 0);
	uint64_t fives = 0;
	for (int k = 0; k < 12; k++)
		fives += keep[k] == 5;
	CHECK_INT(fives, 9); /* 200 / r^3 < 5 for r >= 4: 9 of 12 classes */
	struct dataset_imbalance bad = {.zipf_s = -1};
	CHECK_INT(dataset_imbalance_plan(&ds, &bad, keep, &err), DATASET_EBADINPUT);
	dataset_close(&ds);
}

static void test_merge_and_zipf_fit(void)
{
	CHECK_INT(make_shard(tmp("m1.ds"), 1, 2, 3, 3, 10), 0);
	CHECK_INT(make_shard(tmp("m2.ds"), 1, 2, 3, 5, 7), 0);
	CHECK_INT(make_shard(tmp("m3.ds"), 1, 3, 2, 5, 7), 0); /* other shape */
	const char *in[2] = {tmp("m1.ds"), tmp("m2.ds")};
	struct error err;
	CHECK_INT(dataset_merge(in, 2, tmp("m12.ds"), NULL, &err), 0);
	struct dataset ds;
	CHECK_INT(dataset_open(&ds, tmp("m12.ds"), DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.count, 17);
	CHECK_INT(ds.shape.num_classes, 5);
	int good = 1;
	for (uint64_t i = 0; i < 17; i++) {
		uint64_t j = i < 10 ? i : i - 10; /* record j of its input */
		good &= record_id(&ds, i) == j;
		good &= dataset_label(&ds, i) == (i < 10 ? j % 3 : j % 5);
	}
	CHECK(good);
	dataset_close(&ds);
	const char *bad[2] = {tmp("m1.ds"), tmp("m3.ds")};
	CHECK_INT(dataset_merge(bad, 2, tmp("mx.ds"), NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "m3.ds: shape 1x3x2, but") != NULL);
	CHECK(!fs_exists(tmp("mx.ds")));

	/* exact power laws come back; equal counts give 0 */
	uint64_t c[50];
	double fit;
	for (int r = 1; r <= 50; r++)
		c[r - 1] = (uint64_t)llround(1e6 * pow(r, -1.5));
	dataset_zipf_fit(c, 50, &fit);
	CHECK_NEAR(fit, 1.5, 1e-4);
	uint64_t shuffled[5] = {10, 1000, 0, 100, 1}; /* ranks by count; zeros ignored */
	dataset_zipf_fit(shuffled, 5, &fit);
	CHECK_NEAR(fit, log(1000.0) / log(4.0), 0.2); /* roughly: 3 decades over 4 ranks */
	uint64_t flat[4] = {7, 7, 7, 7};
	dataset_zipf_fit(flat, 4, &fit);
	CHECK(fit == 0);
	dataset_zipf_fit(flat, 1, &fit);
	CHECK(fit == 0);
}

static void test_channel_stats(void)
{
	/* 2 channels: channel 0 all 255, channel 1 alternating 0 and 255 */
	struct dataset_shape s = {2, 1, 2, 1, DATASET_LABEL_CLASS};
	struct dataset_writer w;
	struct error err;
	CHECK_INT(dataset_writer_open(&w, tmp("st.ds"), &s, &err), 0);
	uint8_t px[4] = {255, 255, 0, 255};
	CHECK_INT(dataset_writer_add(&w, px, 0, &err), 0);
	CHECK_INT(dataset_writer_add(&w, px, 0, &err), 0);
	CHECK_INT(dataset_writer_finish(&w, &err), 0);
	struct dataset ds;
	CHECK_INT(dataset_open(&ds, tmp("st.ds"), 0, &err), 0);
	float mean[2], std[2];
	dataset_channel_stats(&ds, mean, std);
	CHECK_NEAR(mean[0], 1.0, 1e-6);
	CHECK_NEAR(std[0], 1.0, 1e-6); /* constant channel: std forced to 1 */
	CHECK_NEAR(mean[1], 0.5, 1e-6);
	CHECK_NEAR(std[1], 0.5, 1e-6);
	dataset_close(&ds);
}

/* Random damage never crashes the reader or the importer (run under ASan in
 * CI): every outcome is success or an error that names the file. */
static void test_random_damage_is_an_error_not_a_crash(void)
{
	const char *good = tmp("fz.ds"), *bad = tmp("fzbad.ds");
	uint8_t *d, *c;
	size_t n;
	for (int mask = 0; mask < 2; mask++) {
		if (mask)
			CHECK_INT(make_mask_shard(good, 2, 3, 3, 4, 12), 0);
		else
			CHECK_INT(make_shard(good, 2, 3, 3, 4, 12), 0);
		CHECK_INT(file_bytes(good, &d, &n), 0);
		c = malloc(n + 16);
		uint64_t s = 12345;
		int crashes_avoided = 0, named = 1;
		for (int it = 0; it < 400; it++) {
			memcpy(c, d, n);
			size_t len = n;
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			int kind = (int)(s >> 60) % 3;
			size_t at = (size_t)((s >> 20) % n);
			if (kind == 0)
				c[at] ^= (uint8_t)(1 + (s >> 8) % 255); /* flip bits of one byte */
			else if (kind == 1)
				len = at; /* truncate */
			else
				len = n + (size_t)(s >> 8) % 16; /* grow with junk */
			if (write_bytes(bad, c, len) < 0)
				continue;
			struct dataset ds;
			struct error err = {{0}};
			int rc = dataset_open(&ds, bad, DATASET_VERIFY, &err);
			if (rc == 0)
				dataset_close(&ds);
			else
				named &= rc == DATASET_EBADINPUT && strstr(err.msg, bad) != NULL;
			crashes_avoided++;
		}
		CHECK_INT(crashes_avoided, 400);
		CHECK(named);
		free(c);
		mem_free(d);
	}

	/* gzip IDX: cut or damaged anywhere */
	uint8_t img[16 + 50 * 6], lab[8 + 50];
	size_t ni = make_idx(img, lab, 50);
	CHECK_INT(write_gz(tmp("fz.gz"), img, ni), 0);
	CHECK_INT(write_bytes(tmp("fzl.idx"), lab, sizeof(lab)), 0);
	CHECK_INT(file_bytes(tmp("fz.gz"), &d, &n), 0);
	c = malloc(n);
	int ok_or_named = 1, good_imports = 0;
	for (size_t cut = 0; cut <= n; cut += 3) {
		for (int flip = 0; flip < 2; flip++) {
			memcpy(c, d, n);
			size_t len = flip ? n : cut;
			if (flip && cut < n)
				c[cut] ^= 0x5a;
			CHECK_INT(write_bytes(tmp("fzc.gz"), c, len), 0);
			struct error err = {{0}};
			int rc = dataset_import_idx(tmp("fzc.gz"), tmp("fzl.idx"), tmp("fzo.ds"), 0,
						    NULL, &err);
			if (rc == 0)
				good_imports++;
			else
				ok_or_named &= strstr(err.msg, "fzc.gz") != NULL;
		}
	}
	CHECK(ok_or_named);
	CHECK(good_imports >= 1); /* at least the undamaged file */
	free(c);
	mem_free(d);
}

static void test_mask_shards(void)
{
	char p[512]; /* tmp()'s buffers are reused below */
	snprintf(p, sizeof(p), "%s", tmp("mask.ds"));
	CHECK_INT(make_mask_shard(p, 2, 3, 4, 3, 20), 0);
	struct dataset ds;
	struct error err = {{0}};
	CHECK_INT(dataset_open(&ds, p, DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.shape.label_kind, DATASET_LABEL_MASK);
	CHECK_INT(ds.record_bytes, 24 + 12 + 12);
	int good = 1;
	uint8_t want[24], wm[12];
	uint64_t hist[3] = {0};
	for (uint64_t i = 0; i < 20; i++) {
		fill(want, 24, i);
		mask_of(wm, 12, i, 3);
		good &= memcmp(dataset_image(&ds, i), want, 24) == 0;
		good &= memcmp(dataset_mask(&ds, i), wm, 12) == 0;
		struct dataset_key k = dataset_key(&ds, i);
		if (i == 3)
			good &= k.z == DATASET_KEY_NONE;
		else
			good &= k.z == 5 && k.x == i && k.y == 31 - i;
		for (int j = 0; j < 12; j++)
			if (wm[j] != DATASET_MASK_IGNORE)
				hist[wm[j]]++;
	}
	CHECK(good);
	uint64_t h[3];
	dataset_histogram(&ds, h);
	CHECK_INT(h[0], hist[0]);
	CHECK_INT(h[1], hist[1]);
	CHECK_INT(h[2], hist[2]);
	CHECK(h[0] + h[1] + h[2] < 20 * 12); /* ignored pixels are not counted */

	/* header: version 2, label kind 1 at byte 52, reserved 56..59 zero */
	uint8_t *d;
	size_t n;
	CHECK_INT(file_bytes(p, &d, &n), 0);
	CHECK_INT(n, 64 + 20 * 48);
	CHECK_INT(d[8], 2);
	CHECK_INT(d[44], 48);
	CHECK_INT(d[52], 1);
	CHECK_INT(d[56] | d[57] | d[58] | d[59], 0);
	/* record 1's key at its last 12 bytes: z 5, x 1, y 30 */
	const uint8_t *key1 = d + 64 + 2 * 48 - 12;
	CHECK_INT(key1[0], 5);
	CHECK_INT(key1[4], 1);
	CHECK_INT(key1[8], 30);

	/* split: one group, round(0.25 * 20) = 5 records in A, records unchanged */
	CHECK_INT(dataset_split(&ds, 0.25, 9, tmp("ma.ds"), tmp("mb.ds"), NULL, &err), 0);
	struct dataset a, b;
	CHECK_INT(dataset_open(&a, tmp("ma.ds"), DATASET_VERIFY, &err), 0);
	CHECK_INT(dataset_open(&b, tmp("mb.ds"), DATASET_VERIFY, &err), 0);
	CHECK_INT(a.count, 5);
	CHECK_INT(b.count, 15);
	CHECK_INT(a.shape.label_kind, DATASET_LABEL_MASK);
	int kept = 1;
	for (uint64_t i = 0; i < a.count; i++) {
		uint64_t r = record_id(&a, i);
		kept &= memcmp(dataset_image(&a, i), dataset_image(&ds, r), ds.record_bytes) == 0;
	}
	CHECK(kept);
	dataset_close(&b);

	/* merge: masks with masks (the keys go along), not with class labels */
	const char *two[2] = {tmp("ma.ds"), p};
	CHECK_INT(dataset_merge(two, 2, tmp("mm.ds"), NULL, &err), 0);
	struct dataset mm;
	CHECK_INT(dataset_open(&mm, tmp("mm.ds"), DATASET_VERIFY, &err), 0);
	CHECK_INT(mm.count, 25);
	CHECK(memcmp(dataset_image(&mm, 5), dataset_image(&ds, 0), ds.record_bytes) == 0);
	dataset_close(&mm);
	CHECK_INT(make_shard(tmp("cls.ds"), 2, 3, 4, 3, 4), 0);
	const char *mixed[2] = {p, tmp("cls.ds")};
	CHECK_INT(dataset_merge(mixed, 2, tmp("mx.ds"), NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "cls.ds holds class labels") != NULL);
	CHECK(!fs_exists(tmp("mx.ds")));

	/* imbalance is for class labels */
	struct dataset_imbalance im = {1, 1, 0, 0};
	CHECK_INT(dataset_imbalance(&ds, &im, tmp("mi.ds"), NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "per-pixel masks") != NULL);
	dataset_close(&a);
	dataset_close(&ds);

	/* a mask value out of range: found with DATASET_VERIFY (before the
	 * checksum), named by record and pixel; a bad key on every open */
	uint8_t *c = malloc(n);
	memcpy(c, d, n);
	c[64 + 2 * 48 + 24 + 5] = 7; /* record 2, pixel (1, 1) */
	CHECK_INT(write_bytes(tmp("mbad.ds"), c, n), 0);
	CHECK_INT(dataset_open(&ds, tmp("mbad.ds"), 0, &err), 0);
	dataset_close(&ds);
	CHECK_INT(dataset_open(&ds, tmp("mbad.ds"), DATASET_VERIFY, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "record 2 has mask value 7 at pixel (row 1, col 1)") != NULL);
	memcpy(c, d, n);
	c[64 + 48 - 12] = 31; /* record 0: z 31 */
	CHECK_INT(write_bytes(tmp("mbad.ds"), c, n), 0);
	CHECK_INT(dataset_open(&ds, tmp("mbad.ds"), 0, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "record 0 has tile key 31/0/31, which is no XYZ tile") != NULL);
	/* a version-1 header with byte 52 set is from a newer cairn */
	memcpy(c, d, n);
	c[8] = 1;
	fix_header_crc(c);
	CHECK_INT(write_bytes(tmp("mbad.ds"), c, n), 0);
	CHECK_INT(dataset_open(&ds, tmp("mbad.ds"), 0, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "byte 52: reserved header bytes are set") != NULL);
	free(c);
	mem_free(d);

	/* the writer: masks only in a mask shard, labels only in a class shard,
	 * mask values < K or 255, keys that are tiles; 255 classes at most */
	struct dataset_writer w;
	struct dataset_shape s = {1, 1, 2, 2, DATASET_LABEL_MASK};
	CHECK_INT(dataset_writer_open(&w, tmp("mw.ds"), &s, &err), 0);
	uint8_t px[2] = {1, 2}, bad[2] = {0, 2}, ok[2] = {1, 255};
	CHECK(dataset_writer_add(&w, px, 0, &err) < 0);
	CHECK(dataset_writer_add_mask(&w, px, bad, NULL, &err) < 0);
	CHECK(strstr(err.msg, "mask value 2 at pixel (row 0, col 1) >= 2 classes") != NULL);
	struct dataset_key nokey = {3, 8, 0};
	CHECK(dataset_writer_add_mask(&w, px, ok, &nokey, &err) < 0);
	CHECK(strstr(err.msg, "3/8/0 is no XYZ tile") != NULL);
	CHECK_INT(dataset_writer_add_mask(&w, px, ok, NULL, &err), 0);
	CHECK_INT(dataset_writer_finish(&w, &err), 0);
	s.num_classes = 256;
	CHECK(dataset_writer_open(&w, tmp("mw2.ds"), &s, &err) < 0);
	CHECK(strstr(err.msg, "a mask holds at most 255") != NULL);
	/* a record size the header's 32 bits cannot hold: (3 + 1) x 40000^2 + 12 */
	struct dataset_shape huge = {3, 40000, 40000, 3, DATASET_LABEL_MASK};
	CHECK_INT(dataset_writer_open(&w, tmp("mw2.ds"), &huge, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "records of 6400000012 bytes (3x40000x40000 images and their "
			      "masks), a shard holds at most 4294967295") != NULL);
	huge.label_kind = DATASET_LABEL_CLASS, huge.channels = 4, huge.height = 32768;
	CHECK(dataset_writer_open(&w, tmp("mw2.ds"), &huge, &err) < 0);
	s.num_classes = 2, s.label_kind = 7;
	CHECK(dataset_writer_open(&w, tmp("mw2.ds"), &s, &err) < 0);
	CHECK(!fs_exists(tmp("mw2.ds")));
	/* 0 channels: masks only (predictions), never class labels alone */
	struct dataset_shape s0 = {0, 1, 2, 2, DATASET_LABEL_MASK};
	CHECK_INT(dataset_writer_open(&w, tmp("m0.ds"), &s0, &err), 0);
	CHECK_INT(dataset_writer_add_mask(&w, NULL, ok, NULL, &err), 0);
	CHECK_INT(dataset_writer_finish(&w, &err), 0);
	CHECK_INT(dataset_open(&ds, tmp("m0.ds"), DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.record_bytes, 2 + 12);
	CHECK_INT(dataset_mask(&ds, 0)[1], 255);
	dataset_close(&ds);
	s0.label_kind = DATASET_LABEL_CLASS;
	CHECK(dataset_writer_open(&w, tmp("m0c.ds"), &s0, &err) < 0);
	CHECK(strstr(err.msg, "0 channels, expected 1 to 4 (0 only in a mask shard)") != NULL);
	s.label_kind = DATASET_LABEL_CLASS;
	CHECK_INT(dataset_writer_open(&w, tmp("mw2.ds"), &s, &err), 0);
	CHECK(dataset_writer_add_mask(&w, px, ok, NULL, &err) < 0);
	dataset_writer_abort(&w);
}

static void test_out_of_memory_is_an_error(void)
{
	CHECK_INT(make_shard(tmp("m.ds"), 1, 2, 2, 3, 30), 0);
	struct dataset ds;
	struct error err;
	for (long k = 0; k < 6; k++) {
		CHECK_INT(dataset_open(&ds, tmp("m.ds"), 0, &err), 0);
		mem_fail_after(k);
		int rc = dataset_split(&ds, 0.5, 1, tmp("ma.ds"), tmp("mb.ds"), NULL, &err);
		mem_fail_after(-1);
		CHECK(rc == 0 || rc == -1);
		dataset_close(&ds);
	}
	mem_fail_after(0);
	int rc = dataset_open(&ds, tmp("m.ds"), 0, &err);
	mem_fail_after(-1);
	CHECK_INT(rc, -1);
	CHECK(strstr(err.msg, "out of memory") != NULL);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_round_trip);
	RUN(test_header_bytes_are_as_documented);
	RUN(test_empty_shard);
	RUN(test_truncated_and_corrupt_shards);
	RUN(test_writer_rejects_bad_shape_and_label);
	RUN(test_idx_import_plain_and_gzip);
	RUN(test_idx_errors_name_file_and_offset);
	RUN(test_split_is_stratified_and_seeded);
	RUN(test_split_outputs_both_or_neither);
	RUN(test_merge_verifies_inputs);
	RUN(test_zipf_counts_follow_the_curve);
	RUN(test_merge_and_zipf_fit);
	RUN(test_channel_stats);
	RUN(test_random_damage_is_an_error_not_a_crash);
	RUN(test_mask_shards);
	RUN(test_out_of_memory_is_an_error);
	struct error err;
	fs_rm_rf(dir, &err);
	return CHECK_DONE();
}
