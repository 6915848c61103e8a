/* Unit tests for geo/fetch's helpers (URL templates, file types, manifest
 * names) and geo/raster's image check on good, short, HTML and corrupt bodies. */
#include <stdlib.h>
#include <unistd.h>

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
	/* a PNG where a JPEG is expected */
	CHECK_INT(raster_check_image(png, len, "jpg", &err), -1);
	mem_free(bad);
	mem_free(png);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	RUN(test_expand_url);
	RUN(test_ext);
	RUN(test_image_check);
	return CHECK_DONE();
}
