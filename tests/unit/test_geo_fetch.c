/* Unit tests for geo/fetch's helpers (URL templates, file types, manifest
 * names) and geo/raster's image check on good, short, HTML and corrupt bodies,
 * and on hand-built PNGs whose chunks are all intact but whose image data is
 * not (the full check must inflate it to see that). */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "check.h"
#include "core/fs.h"
#include "core/mem.h"
#include "geo/fetch.h"
#include "geo/raster.h"

static void test_expand_url(void)
{
	struct error err;
	char out[256];
	struct tile t = {3, 3, 5};
	CHECK_INT(fetch_expand_url("http://h/{z}/{x}/{y}.png?k=1", &t, out, sizeof(out), &err), 0);
	CHECK_STR(out, "http://h/3/3/5.png?k=1");
	CHECK_INT(fetch_expand_url("http://h/{z}/{x}/{-y}.jpg", &t, out, sizeof(out), &err), 0);
	CHECK_STR(out, "http://h/3/3/2.jpg"); /* TMS: 2^3 - 1 - 5 */
	CHECK_INT(fetch_expand_url("http://h/a{q}.jpeg", &t, out, sizeof(out), &err), 0);
	CHECK_STR(out, "http://h/a213.jpeg");
	CHECK_INT(fetch_expand_url("http://h/{z}/{x}.png", &t, out, sizeof(out), &err), -1);
	CHECK(strstr(err.msg, "{y}") != NULL);
	CHECK_INT(fetch_expand_url("http://h/{z}/{x}/{y}.png", &t, out, 10, &err), -1);
}

static void test_ext(void)
{
	struct error err;
	char ext[16];
	CHECK_INT(fetch_ext_from_template("http://h.org/{z}/{x}/{y}.png?key=a.b", ext, sizeof(ext), &err), 0);
	CHECK_STR(ext, "png");
	CHECK_INT(fetch_ext_from_template("http://h.org/{z}/{x}/{y}.jpeg", ext, sizeof(ext), &err), 0);
	CHECK_STR(ext, "jpeg");
	CHECK_INT(fetch_ext_from_template("http://h.org/tiles/{z}/{x}/{y}", ext, sizeof(ext), &err), -1);
	CHECK(strstr(err.msg, "--ext") != NULL);
	char name[64];
	fetch_manifest_name(0, 1, name, sizeof(name));
	CHECK_STR(name, "manifest.tsv");
	fetch_manifest_name(3, 16, name, sizeof(name));
	CHECK_STR(name, "manifest.3of16.tsv");
}

static void test_url_check(void)
{
	struct error err;
	CHECK_INT(fetch_check_url("https://tile.example.org/{z}/{x}/{y}.png", &err), 0);
	CHECK_INT(fetch_check_url("HTTP://h:8080/{q}.jpg", &err), 0);
	CHECK_INT(fetch_check_url("file:///srv/tiles/{z}/{x}/{y}.png", &err), 0);
	CHECK_INT(fetch_check_url("/{z}/{x}/{y}.png", &err), -1);
	CHECK(strstr(err.msg, "'/{z}/{x}/{y}.png' is not a URL") != NULL);
	CHECK_INT(fetch_check_url("tile.example.org/{z}/{x}/{y}.png", &err), -1);
	CHECK_INT(fetch_check_url("://h/{z}/{x}/{y}.png", &err), -1);
	CHECK_INT(fetch_check_url("https:///{z}/{x}/{y}.png", &err), -1);
	CHECK(strstr(err.msg, "has no host") != NULL);
	CHECK_INT(fetch_check_url("htp://h/{z}/{x}/{y}.png", &err), -1);
	CHECK(strstr(err.msg, "does not speak 'htp'") != NULL);
	CHECK_INT(fetch_check_url("http://h/{z}/{x}.png", &err), -1);
	CHECK(strstr(err.msg, "{y}") != NULL);
}

/* The manifest's source line: round trip (also a tab, a newline, a backslash
 * in a file name), a manifest without one (an earlier cairn-fetch), another
 * source (its ok tiles removed, every entry dropped), and a folder in the
 * manifest's place. */
static void test_manifest_source(void)
{
	char dir[] = "/tmp/cairn-geo-man.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char mpath[256], tile[256], sub[256];
	snprintf(mpath, sizeof(mpath), "%s/manifest.tsv", dir);
	snprintf(sub, sizeof(sub), "%s/3", dir);
	snprintf(tile, sizeof(tile), "%s/3/1.png", dir);
	struct error err;
	CHECK_INT(fs_mkdir_p(sub, &err), 0);
	CHECK_INT(fs_write_atomic(tile, "x", 1, &err), 0);
	const char *odd = "/data/a\tb\nc\\d.tif";
	struct manifest m = {0};
	char note[8192];
	CHECK_INT(manifest_load(&m, mpath, &err), 0);
	CHECK_INT(fetch_manifest_source(&m, mpath, dir, odd, 0, note, sizeof(note), &err), 0);
	CHECK_STR(note, ""); /* a new folder: nothing to say */
	CHECK_INT(manifest_put(&m, "3/1.png", 1, "ab", M_OK), 0);
	CHECK_INT(manifest_put(&m, "3/2.png", 0, NULL, M_MISSING), 0);
	CHECK_INT(manifest_write(&m, mpath, &err), 0);
	manifest_release(&m);
	char *data;
	size_t len;
	CHECK_INT(fs_read_all(mpath, &data, &len, &err), 0);
	CHECK(strstr(data, "\n# source\t/data/a\\tb\\nc\\\\d.tif\n") != NULL);
	mem_free(data);
	CHECK_INT(manifest_load(&m, mpath, &err), 0);
	CHECK_STR(m.source, odd);
	CHECK_INT(m.n, 2);
	CHECK_INT(fetch_manifest_source(&m, mpath, dir, odd, 0, note, sizeof(note), &err), 0);
	CHECK_STR(note, ""); /* the same source */
	CHECK_INT(m.n, 2);
	CHECK_INT(access(tile, F_OK), 0);
	/* another source: refused, nothing touched, unless replace */
	CHECK_INT(fetch_manifest_source(&m, mpath, dir, "http://b/{z}/{x}/{y}.png", 0, note,
					sizeof(note), &err),
		  FETCH_EBADINPUT);
	CHECK(strstr(err.msg, "records another source, /data/a") != NULL);
	CHECK(strstr(err.msg, "add --refetch") != NULL);
	CHECK_INT(m.n, 2);
	CHECK_INT(access(tile, F_OK), 0);
	/* with replace: the ok tile is removed, the entries dropped, the new
	 * source written before any tile line */
	CHECK_INT(fetch_manifest_source(&m, mpath, dir, "http://b/{z}/{x}/{y}.png", 1, note,
					sizeof(note), &err),
		  0);
	CHECK(strstr(note, "records another source, /data/a") != NULL);
	CHECK(strstr(note, "its 1 tiles are removed and every tile is fetched again from "
			   "http://b/") != NULL);
	CHECK_INT(m.n, 0);
	CHECK(access(tile, F_OK) != 0);
	manifest_release(&m);
	CHECK_INT(manifest_load(&m, mpath, &err), 0);
	CHECK_STR(m.source, "http://b/{z}/{x}/{y}.png");
	CHECK_INT(m.n, 0);
	manifest_release(&m);
	/* a manifest of the previous version: no source line; kept, source added */
	const char *old = "# cairn-fetch manifest v1: path\tbytes\tsha256\tstatus\n"
			  "3/1.png\t1\tab\tok\n";
	CHECK_INT(fs_write_atomic(mpath, old, strlen(old), &err), 0);
	CHECK_INT(manifest_load(&m, mpath, &err), 0);
	CHECK(m.source == NULL);
	CHECK_INT(fetch_manifest_source(&m, mpath, dir, "http://c/{z}/{x}/{y}.png", 0, note,
					sizeof(note), &err),
		  0);
	CHECK(strstr(note, "records no source (an earlier cairn-fetch wrote it): its 1 tiles are "
			   "taken as tiles of http://c/") != NULL);
	CHECK_INT(m.n, 1);
	manifest_release(&m);
	CHECK_INT(manifest_load(&m, mpath, &err), 0);
	CHECK_STR(m.source, "http://c/{z}/{x}/{y}.png");
	CHECK_INT(m.n, 1);
	manifest_release(&m);
	/* a folder where the manifest goes */
	CHECK_INT(unlink(mpath), 0);
	CHECK_INT(mkdir(mpath, 0755), 0);
	CHECK_INT(manifest_load(&m, mpath, &err), MANIFEST_EBADINPUT);
	CHECK(strstr(err.msg, "manifest.tsv: is a folder") != NULL);
	manifest_release(&m);
	CHECK_INT(fs_rm_rf(dir, &err), 0);
}

static void test_image_check(void)
{
	char dir[] = "/tmp/cairn-geo-fetch.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/a.png", dir);
	static uint8_t pix[3 * 64 * 64];
	for (size_t i = 0; i < sizeof(pix); i++)
		pix[i] = (uint8_t)(i * 7 + (i >> 5));
	struct error err;
	CHECK_INT(raster_write_png(path, 64, 64, 3, pix, &err), 0);
	char *png;
	size_t len;
	CHECK_INT(fs_read_all(path, &png, &len, &err), 0);
	CHECK_INT(raster_check_image(png, len, "png", &err), 0);
	/* cut short */
	CHECK_INT(raster_check_image(png, len / 2, "png", &err), -1);
	CHECK(strstr(err.msg, "truncated") != NULL);
	/* an HTML error page served as 200 */
	const char *html = "<!DOCTYPE html><html><body>Rate limit</body></html>";
	CHECK_INT(raster_check_image(html, strlen(html), "png", &err), -1);
	CHECK(strstr(err.msg, "not a PNG") != NULL);
	/* right length, damaged middle: zlib or CRC error */
	char *bad = mem_alloc(len);
	memcpy(bad, png, len);
	for (size_t i = len / 2; i < len / 2 + 32; i++)
		bad[i] ^= 0x5a;
	CHECK_INT(raster_check_image(bad, len, "png", &err), -1);
	printf("#   corrupt PNG: %s\n", err.msg);
	/* the fast check: CRCs catch the same damage without inflating */
	CHECK_INT(raster_check_image_fast(png, len, "png", &err), 0);
	CHECK_INT(raster_check_image_fast(bad, len, "png", &err), -1);
	CHECK(strstr(err.msg, "CRC mismatch") != NULL);
	CHECK_INT(raster_check_image_fast(png, len - 5, "png", &err), -1);
	CHECK_INT(raster_check_image_fast(html, strlen(html), "png", &err), -1);
	/* grey, grey + alpha, RGBA, odd sizes: the rows IHDR promises differ */
	for (int nb = 1; nb <= 4; nb++) {
		char p2[300];
		snprintf(p2, sizeof(p2), "%s/b%d.png", dir, nb);
		CHECK_INT(raster_write_png(p2, 37, 23, nb, pix, &err), 0);
		char *q;
		size_t qlen;
		CHECK_INT(fs_read_all(p2, &q, &qlen, &err), 0);
		CHECK_INT(raster_check_image(q, qlen, "png", &err), 0);
		CHECK_INT(raster_check_image_gdal(q, qlen, "png", &err), 0);
		mem_free(q);
		unlink(p2);
	}
	/* a PNG where a JPEG is expected */
	CHECK_INT(raster_check_image(png, len, "jpg", &err), -1);
	mem_free(bad);
	mem_free(png);
	unlink(path);
	rmdir(dir);
}

/* A w x h RGB PNG from raw scanlines (filter byte + 3w bytes each, `rows` of
 * them), its zlib stream split over `nidat` IDAT chunks, a tEXt chunk after
 * the first IDAT when `text_between`; every CRC right. Returns the length. */
static size_t put_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t n)
{
	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	memcpy(out + 4, type, 4);
	if (n)
		memcpy(out + 8, data, n);
	uint32_t c = (uint32_t)crc32(0L, out + 4, 4 + n);
	out[8 + n] = (uint8_t)(c >> 24);
	out[9 + n] = (uint8_t)(c >> 16);
	out[10 + n] = (uint8_t)(c >> 8);
	out[11 + n] = (uint8_t)c;
	return 12 + (size_t)n;
}

static size_t build_png(uint8_t *out, int w, int h, const uint8_t *raw, size_t rawlen, int nidat,
			int text_between)
{
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	uint8_t ihdr[13] = {0, 0, 0, 0, 0, 0, 0, 0, 8, 2, 0, 0, 0};
	ihdr[2] = (uint8_t)(w >> 8);
	ihdr[3] = (uint8_t)w;
	ihdr[6] = (uint8_t)(h >> 8);
	ihdr[7] = (uint8_t)h;
	uLongf zlen = compressBound(rawlen);
	uint8_t *z = mem_alloc(zlen);
	CHECK(compress2(z, &zlen, raw, rawlen, 6) == Z_OK);
	size_t n = 8;
	memcpy(out, sig, 8);
	n += put_chunk(out + n, "IHDR", ihdr, 13);
	size_t part = (zlen + nidat - 1) / nidat, off = 0;
	for (int i = 0; i < nidat; i++) {
		size_t k = zlen - off < part ? zlen - off : part;
		n += put_chunk(out + n, "IDAT", z + off, (uint32_t)k);
		off += k;
		if (i == 0 && text_between)
			n += put_chunk(out + n, "tEXt", (const uint8_t *)"k\0v", 3);
	}
	n += put_chunk(out + n, "IEND", NULL, 0);
	mem_free(z);
	return n;
}

static void test_png_image_data(void)
{
	enum { W = 40, H = 30, ROW = 1 + 3 * W };
	static uint8_t raw[H * ROW], png[2 * H * ROW + 4096];
	for (int y = 0; y < H; y++) {
		raw[y * ROW] = (uint8_t)(y % 5); /* every filter type */
		for (int x = 1; x < ROW; x++)
			raw[y * ROW + x] = (uint8_t)(x * 13 + y * 7);
	}
	struct error err;
	struct raster_scratch s = {NULL, 0};
	size_t n = build_png(png, W, H, raw, sizeof(raw), 1, 0);
	CHECK_INT(raster_check_image(png, n, "png", &err), 0);
	CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), 0);
	CHECK_INT(raster_check_image_gdal(png, n, "png", &err), 0);
	CHECK_INT(raster_check_image_fast(png, n, "png", &err), 0);
	/* IHDR fields libpng refuses, each with the CRC made right: rejected
	 * without GDAL opening the header (the full check parses IHDR itself) */
	static const struct { int at, value; const char *what; } bad_ihdr[] = {
		{24, 7, "bit depth"}, {24, 4, "bit depth"}, {25, 5, "bit depth"},
		{26, 1, "compression"}, {27, 1, "filter"}, {28, 2, "interlace"},
		{16, 1, "size"}, {20, 1, "size"}, {23, 0, "size"}};
	for (size_t i = 0; i < sizeof(bad_ihdr) / sizeof(bad_ihdr[0]); i++) {
		n = build_png(png, W, H, raw, sizeof(raw), 1, 0);
		png[bad_ihdr[i].at] = (uint8_t)bad_ihdr[i].value;
		put_chunk(png + 8, "IHDR", png + 16, 13);
		CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), -1);
		CHECK(strstr(err.msg, bad_ihdr[i].what) != NULL);
		CHECK_INT(raster_check_image_gdal(png, n, "png", &err), -1);
	}
	/* 9000 x 9000, within libpng's limits: not a tile, refused before any
	 * memory is asked for its pixels */
	n = build_png(png, W, H, raw, sizeof(raw), 1, 0);
	png[18] = png[22] = 0x23, png[19] = png[23] = 0x28;
	put_chunk(png + 8, "IHDR", png + 16, 13);
	CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), -1);
	CHECK(strstr(err.msg, "image of 9000x9000 pixels: not a tile") != NULL);
	CHECK(s.cap < (size_t)1 << 20);
	CHECK_INT(raster_check_image_gdal(png, n, "png", &err), -1);
	CHECK(strstr(err.msg, "not a tile") != NULL);
	/* the stream over 4 IDAT chunks: fine; IDATs with another chunk between: not */
	n = build_png(png, W, H, raw, sizeof(raw), 4, 0);
	CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), 0);
	n = build_png(png, W, H, raw, sizeof(raw), 4, 1);
	CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), -1);
	CHECK(strstr(err.msg, "IDAT") != NULL);
	/* one row short: every chunk intact, the image data is not all there */
	n = build_png(png, W, H, raw, sizeof(raw) - ROW, 1, 0);
	CHECK_INT(raster_check_image_fast(png, n, "png", &err), 0);
	CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), -1);
	printf("#   short image data: %s\n", err.msg);
	CHECK(strstr(err.msg, "expected") != NULL);
	CHECK_INT(raster_check_image_gdal(png, n, "png", &err), -1);
	/* one row too many */
	static uint8_t longer[(H + 1) * ROW];
	memcpy(longer, raw, sizeof(raw));
	memcpy(longer + sizeof(raw), raw, ROW);
	n = build_png(png, W, H, longer, sizeof(longer), 1, 0);
	CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), -1);
	/* a filter type that does not exist */
	raw[7 * ROW] = 9;
	n = build_png(png, W, H, raw, sizeof(raw), 1, 0);
	CHECK_INT(raster_check_image_fast(png, n, "png", &err), 0);
	CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), -1);
	CHECK(strstr(err.msg, "filter type") != NULL);
	CHECK_INT(raster_check_image_gdal(png, n, "png", &err), -1);
	raw[7 * ROW] = 0;
	/* damaged deflate data with the chunk CRC recomputed: only inflating sees it */
	n = build_png(png, W, H, raw, sizeof(raw), 1, 0);
	size_t idat = 8 + 25, dlen = (size_t)png[idat] << 24 | (size_t)png[idat + 1] << 16 |
				       (size_t)png[idat + 2] << 8 | png[idat + 3];
	for (size_t i = idat + 8 + dlen / 2; i < idat + 8 + dlen / 2 + 8; i++)
		png[i] ^= 0x33;
	put_chunk(png + idat, "IDAT", png + idat + 8, (uint32_t)dlen);
	CHECK_INT(raster_check_image_fast(png, n, "png", &err), 0);
	CHECK_INT(raster_check_image_with(png, n, "png", &s, &err), -1);
	printf("#   damaged deflate data: %s\n", err.msg);
	CHECK_INT(raster_check_image_gdal(png, n, "png", &err), -1);
	raster_scratch_release(&s);
}

/* A tile server's garbage at random: a PNG with bytes flipped (half of
 * the time with the damaged chunk's CRC made right, so that IHDR's checks
 * and the inflate see it), or cut short. The full check and the fast one
 * refuse it with a message or (a byte nothing reads) pass it; never a
 * crash (ASan in make test ASAN=1). Deterministic (a fixed seed). */
static void test_png_random_damage(void)
{
	enum { W = 40, H = 30, ROW = 1 + 3 * W };
	static uint8_t raw[H * ROW], good[2 * H * ROW + 4096], png[sizeof(good)];
	for (int y = 0; y < H; y++) {
		raw[y * ROW] = (uint8_t)(y % 5);
		for (int x = 1; x < ROW; x++)
			raw[y * ROW + x] = (uint8_t)(x * 13 + y * 7);
	}
	size_t len = build_png(good, W, H, raw, sizeof(raw), 3, 0);
	struct error err;
	struct raster_scratch s = {NULL, 0};
	uint64_t x = 0x2545f4914f6cdd1dull;
	int refused = 0, passed = 0, silent = 0;
	for (int it = 0; it < 3000; it++) {
		memcpy(png, good, len);
		size_t n = len;
		check_rand(&x);
		if (x % 6 == 0) {
			n = (size_t)(x >> 16) % len;
		} else {
			size_t at = 8 + (size_t)(x >> 20) % (len - 8);
			png[at] ^= (uint8_t)(1 + (x >> 40) % 255);
			if (x & 0x100) { /* make the CRC of the chunk holding it right */
				size_t off = 8;
				while (off + 12 <= len) {
					size_t clen = (size_t)good[off] << 24 |
						      (size_t)good[off + 1] << 16 |
						      (size_t)good[off + 2] << 8 | good[off + 3];
					if (at < off + 12 + clen) {
						if (at >= off + 8 && at < off + 8 + clen)
							put_chunk(png + off,
								  (const char *)png + off + 4,
								  png + off + 8, (uint32_t)clen);
						break;
					}
					off += 12 + clen;
				}
			}
		}
		err.msg[0] = '\0';
		int full = raster_check_image_with(png, n, "png", &s, &err);
		if (full < 0 && !err.msg[0])
			silent++;
		int fast = raster_check_image_fast(png, n, "png", &err);
		if (fast < 0 && !err.msg[0])
			silent++;
		full < 0 ? refused++ : passed++;
		if (full == 0 &&
		    fast < 0) /* the full check never passes what the fast one refuses */
			silent++, printf("#   full passed what fast refused: %s\n", err.msg);
	}
	printf("# PNG damage: %d refused, %d passed (bytes nothing reads)\n", refused, passed);
	CHECK(refused > 2500);
	CHECK_INT(silent, 0);
	raster_scratch_release(&s);
}

int main(void)
{
	RUN(test_expand_url);
	RUN(test_ext);
	RUN(test_url_check);
	RUN(test_manifest_source);
	RUN(test_image_check);
	RUN(test_png_image_data);
	RUN(test_png_random_damage);
	return CHECK_DONE();
}
