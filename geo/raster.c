#include "geo/raster.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cpl_conv.h>
#include <cpl_error.h>
#include <cpl_vsi.h>
#include <gdal.h>
#include <libdeflate.h>
#include <ogr_srs_api.h>

#include "core/fs.h"
#include "core/mem.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void)
{
	CPLSetConfigOption("GDAL_PAM_ENABLED", "NO");
	GDALAllRegister();
}

void raster_init(void)
{
	pthread_once(&init_once, do_init);
}

/* Collects GDAL's messages (errors and warnings) while a check runs; GDAL's
 * handler stack is per thread, so checks in parallel threads do not mix. */
struct gdal_msgs {
	int count;
	char first[256];
};

static void collect(CPLErr cls, CPLErrorNum num, const char *msg)
{
	(void)num;
	struct gdal_msgs *m = CPLGetErrorHandlerUserData();
	if (cls == CE_Debug || !m)
		return;
	if (m->count++ == 0) {
		/* Some drivers end their message with a newline (PNG's "Unable to
		 * create png file ...\n"): it would print as a blank line. */
		snprintf(m->first, sizeof(m->first), "%s", msg);
		size_t n = strlen(m->first);
		while (n && (m->first[n - 1] == '\n' || m->first[n - 1] == '\r' || m->first[n - 1] == ' '))
			m->first[--n] = '\0';
	}
}

/* A GDAL message about the temp file names the user's path instead. */
static void msg_untmp(char *msg, size_t size, const char *tmp, const char *path)
{
	char *p = strstr(msg, tmp);
	if (!p)
		return;
	char rest[256];
	snprintf(rest, sizeof(rest), "%s", p + strlen(tmp));
	snprintf(p, size - (size_t)(p - msg), "%s%s", path, rest);
}

static int ext_is(const char *ext, const char *a, const char *b)
{
	return ext && (strcasecmp(ext, a) == 0 || (b && strcasecmp(ext, b) == 0));
}

static int check_signature(const unsigned char *p, size_t len, const char *ext, const char **driver,
			   struct error *err)
{
	static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	*driver = NULL;
	if (ext_is(ext, "png", NULL)) {
		*driver = "PNG";
		if (len < 8 + 12 || memcmp(p, png_sig, 8) != 0)
			return error_set(err, "not a PNG (bad signature, %zu bytes)", len);
		/* The last chunk of a complete PNG is IEND: length 0, "IEND", CRC. */
		if (memcmp(p + len - 12, "\0\0\0\0IEND", 8) != 0)
			return error_set(err, "PNG truncated (no IEND chunk at the end)");
	} else if (ext_is(ext, "jpg", "jpeg")) {
		*driver = "JPEG";
		if (len < 4 || p[0] != 0xff || p[1] != 0xd8 || p[2] != 0xff)
			return error_set(err, "not a JPEG (bad signature, %zu bytes)", len);
		if (p[len - 2] != 0xff || p[len - 1] != 0xd9)
			return error_set(err, "JPEG truncated (no EOI marker at the end)");
	} else if (ext_is(ext, "webp", NULL)) {
		*driver = "WEBP";
		if (len < 12 || memcmp(p, "RIFF", 4) != 0 || memcmp(p + 8, "WEBP", 4) != 0)
			return error_set(err, "not a WebP (bad signature, %zu bytes)", len);
	} else if (ext_is(ext, "tif", "tiff")) {
		*driver = "GTiff";
		if (len < 8 || (memcmp(p, "II", 2) != 0 && memcmp(p, "MM", 2) != 0))
			return error_set(err, "not a TIFF (bad signature, %zu bytes)", len);
	}
	return 0;
}

/* PNG structure (ISO/IEC 15948): 8-byte signature, then chunks of
 * length(4) type(4) data crc(4), the CRC-32 over type and data; IHDR first,
 * the IDAT chunks one after the other, IEND last. */
struct png_info {
	uint32_t w, h;
	int depth, color, compression, filter, interlace;
	size_t idat_first, idat_bytes; /* offset of the first IDAT chunk; payload bytes in all */
	int nidat;
};

/* What a tile may be at most: 8192 x 8192 pixels. A header that says more
 * (a server's garbage, with its checksums right) is refused before any
 * memory is asked for its pixels: every fetch thread decodes one tile. */
#define MAX_TILE_PIXELS ((size_t)64 << 20)

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Every chunk's CRC (libdeflate's crc32, carry-less multiplication: 1.5 us for
 * a 32 KB tile against zlib's 7 us), IHDR, where the IDAT run lies, and
 * nothing after IEND. */
static int png_scan(const unsigned char *p, size_t len, struct png_info *pi, struct error *err)
{
	memset(pi, 0, sizeof(*pi));
	size_t off = 8;
	int n = 0, idat_done = 0;
	while (off + 12 <= len) {
		uint32_t clen = be32(p + off);
		const unsigned char *type = p + off + 4;
		if (clen > len - off - 12)
			return error_set(err, "PNG chunk %d at byte %zu runs past the end", n, off);
		if (libdeflate_crc32(0, type, 4 + (size_t)clen) != be32(p + off + 8 + clen))
			return error_set(err, "PNG chunk %d (%.4s) at byte %zu: CRC mismatch", n,
					 (const char *)type, off);
		if (n == 0 && (memcmp(type, "IHDR", 4) != 0 || clen != 13))
			return error_set(err, "PNG: first chunk is not IHDR");
		if (n == 0) {
			pi->w = be32(type + 4);
			pi->h = be32(type + 8);
			pi->depth = type[12];
			pi->color = type[13];
			pi->compression = type[14];
			pi->filter = type[15];
			pi->interlace = type[16];
		}
		if (memcmp(type, "IDAT", 4) == 0) {
			if (idat_done)
				return error_set(err, "PNG: IDAT chunks not one after the other");
			if (!pi->nidat++)
				pi->idat_first = off;
			pi->idat_bytes += clen;
		} else if (pi->nidat) {
			idat_done = 1;
		}
		int iend = memcmp(type, "IEND", 4) == 0;
		off += 12 + (size_t)clen;
		n++;
		if (iend) {
			if (off != len)
				return error_set(err, "PNG: %zu bytes after IEND", len - off);
			if (!pi->nidat)
				return error_set(err, "PNG without image data (no IDAT)");
			return 0;
		}
	}
	return error_set(err, "PNG truncated (no IEND chunk)");
}

static int jpeg_markers(const unsigned char *p, size_t len, struct error *err)
{
	size_t off = 2;
	while (off + 4 <= len) {
		if (p[off] != 0xff)
			return error_set(err, "JPEG: no marker at byte %zu", off);
		unsigned m = p[off + 1];
		if (m == 0xda) /* start of scan: entropy-coded data follows */
			return 0;
		size_t seg = (size_t)p[off + 2] << 8 | p[off + 3];
		if (seg < 2 || off + 2 + seg > len)
			return error_set(err, "JPEG: segment %02x at byte %zu runs past the end", m, off);
		off += 2 + seg;
	}
	return error_set(err, "JPEG: no start of scan");
}

/* Opens the in-memory image with `driver` only and checks its size; with
 * `pixels`, also reads every pixel of every band (the driver decodes all of
 * it). Sibling files are not looked for (no world file, .aux.xml or .ovr
 * probes on /vsimem/). */
static int gdal_check(const void *data, size_t len, const char *ext, const char *driver,
		      int pixels, int *w_out, int *h_out, int *nb_out, struct error *err)
{
	static atomic_ulong counter;
	raster_init();
	char name[96];
	snprintf(name, sizeof(name), "/vsimem/cairn-check-%ld-%lu.%s", (long)getpid(),
		 atomic_fetch_add(&counter, 1), ext && *ext ? ext : "img");
	VSILFILE *f = VSIFileFromMemBuffer(name, (GByte *)data, (vsi_l_offset)len, FALSE);
	if (!f)
		return error_set(err, "cannot map %zu bytes into %s", len, name);
	VSIFCloseL(f);
	struct gdal_msgs msgs = {0, ""};
	CPLPushErrorHandlerEx(collect, &msgs);
	const char *drivers[] = {driver, NULL};
	const char *no_siblings[] = {NULL};
	int rc = 0;
	uint8_t *pix = NULL;
	GDALDatasetH ds = GDALOpenEx(name, GDAL_OF_RASTER | GDAL_OF_READONLY | GDAL_OF_VERBOSE_ERROR,
				     driver ? drivers : NULL, NULL, no_siblings);
	if (!ds) {
		rc = error_set(err, "does not decode as %s: %s", driver ? driver : "an image",
			       msgs.count ? msgs.first : "unrecognized data");
		goto out;
	}
	int w = GDALGetRasterXSize(ds), h = GDALGetRasterYSize(ds), nb = GDALGetRasterCount(ds);
	if (w <= 0 || h <= 0 || nb <= 0 || (size_t)w * (size_t)h > MAX_TILE_PIXELS) {
		rc = error_set(err, "image of %dx%d pixels, %d bands: not a tile", w, h, nb);
		goto out;
	}
	*w_out = w;
	*h_out = h;
	*nb_out = nb;
	if (!pixels)
		goto out;
	/* Reading every band decodes every byte: a corrupt stream fails here.
	 * All bands in one call, pixel-interleaved like the file, so the image
	 * is decoded once (band by band, GDAL's PNG driver decodes it per band). */
	pix = mem_alloc((size_t)w * (size_t)h * (size_t)nb);
	if (!pix) {
		rc = error_set(err, "out of memory decoding a %dx%d image", w, h);
		goto out;
	}
	CPLErr e = GDALDatasetRasterIO(ds, GF_Read, 0, 0, w, h, pix, w, h, GDT_Byte, nb, NULL, nb,
				       (GSpacing)w * nb, 1);
	if (e != CE_None || msgs.count)
		rc = error_set(err, "corrupt %s: %s", driver ? driver : "image",
			       msgs.count ? msgs.first : "read failed");
out:
	if (ds)
		GDALClose(ds);
	if (rc == 0 && msgs.count)
		rc = error_set(err, "suspicious %s: %s", driver ? driver : "image", msgs.first);
	CPLPopErrorHandler();
	VSIUnlink(name);
	mem_free(pix);
	return rc;
}

static int scratch_reserve(struct raster_scratch *s, size_t n)
{
	if (s->cap >= n)
		return 0;
	uint8_t *p = mem_realloc(s->p, n);
	if (!p)
		return -1;
	s->p = p;
	s->cap = n;
	return 0;
}

void raster_scratch_release(struct raster_scratch *s)
{
	mem_free(s->p);
	s->p = NULL;
	s->cap = 0;
}

/* IHDR as libpng's png_check_IHDR sees it: a size within libpng's default
 * limits, a bit depth the colour type allows, compression and filter method 0,
 * interlace 0 or 1. */
static int png_ihdr_check(const struct png_info *pi, struct error *err)
{
	/* the bit depths each colour type allows, a mask of 1, 2, 4, 8, 16 */
	static const unsigned char depths[7] = {0x1f, 0, 0x18, 0x0f, 0x18, 0, 0x18};
	int bit = -1;
	for (int b = 0; b < 5; b++)
		if (pi->depth == 1 << b)
			bit = b;
	if (pi->w == 0 || pi->h == 0 || pi->w > 1000000 || pi->h > 1000000)
		return error_set(err, "PNG: IHDR size %ux%u out of range", pi->w, pi->h);
	if (pi->color > 6 || bit < 0 || !(depths[pi->color] >> bit & 1))
		return error_set(err, "PNG: IHDR bit depth %d with colour type %d", pi->depth,
				 pi->color);
	if (pi->compression || pi->filter || pi->interlace > 1)
		return error_set(err, "PNG: IHDR compression %d, filter %d, interlace %d "
				 "(want 0, 0, 0 or 1)", pi->compression, pi->filter, pi->interlace);
	return 0;
}

/* The PNG decode without the driver's unfiltering: GDAL's CPLZLibInflate
 * (libdeflate where GDAL has it) inflates the whole IDAT stream, which checks
 * every code, the window references and the Adler-32; the result must be
 * exactly the rows IHDR promises, each starting with a filter type 0..4.
 * Undoing the filters is arithmetic that cannot fail, so what libpng would
 * reject while reading pixels, this rejects too. Only for non-interlaced
 * grey/RGB(A) images (palette indices would need unfiltering to check). */
static int png_inflate_check(const unsigned char *p, const struct png_info *pi,
			     struct raster_scratch *s, struct error *err)
{
	static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
	uint64_t rowbytes = ((uint64_t)pi->w * (uint64_t)channels[pi->color] * (uint64_t)pi->depth + 7) / 8;
	uint64_t raw = (uint64_t)pi->h * (1 + rowbytes);
	if ((uint64_t)pi->w * pi->h > MAX_TILE_PIXELS) /* before any memory is asked for it */
		return error_set(err, "image of %ux%u pixels: not a tile", pi->w, pi->h);
	/* one IDAT: inflate in place; several: their payloads one after the other */
	size_t out_cap = (size_t)raw + 1, in_off = out_cap;
	if (scratch_reserve(s, out_cap + (pi->nidat > 1 ? pi->idat_bytes : 0)) < 0)
		return error_set(err, "out of memory decoding a %ux%u PNG", pi->w, pi->h);
	const unsigned char *z = p + pi->idat_first + 8;
	if (pi->nidat > 1) {
		size_t off = pi->idat_first, k = 0;
		for (int i = 0; i < pi->nidat; i++) {
			uint32_t clen = be32(p + off);
			memcpy(s->p + in_off + k, p + off + 8, clen);
			k += clen;
			off += 12 + (size_t)clen;
		}
		z = s->p + in_off;
	}
	size_t got = 0;
	/* one byte more than the image needs: a stream that fills it is too long */
	if (!CPLZLibInflate(z, pi->idat_bytes, s->p, out_cap, &got))
		return error_set(err, "corrupt PNG: image data does not inflate (%s)",
				 got == 0 ? "bad deflate stream or Adler-32" : "too long");
	if (got != raw)
		return error_set(err, "corrupt PNG: image data inflates to %zu bytes, %llu expected",
				 got, (unsigned long long)raw);
	for (uint64_t r = 0; r < pi->h; r++)
		if (s->p[r * (1 + rowbytes)] > 4)
			return error_set(err, "corrupt PNG: row %llu has filter type %d",
					 (unsigned long long)r, s->p[r * (1 + rowbytes)]);
	return 0;
}

int raster_check_image_with(const void *data, size_t len, const char *ext,
			    struct raster_scratch *s, struct error *err)
{
	const char *driver;
	if (check_signature(data, len, ext, &driver, err) < 0)
		return -1;
	int w, h, nb;
	struct png_info pi;
	if (!driver || strcmp(driver, "PNG") != 0)
		return gdal_check(data, len, ext, driver, 1, &w, &h, &nb, err);
	if (png_scan(data, len, &pi, err) < 0 || png_ihdr_check(&pi, err) < 0)
		return -1;
	/* palette or interlaced: the driver decodes it */
	if (pi.interlace || pi.color == 3)
		return gdal_check(data, len, ext, driver, 1, &w, &h, &nb, err);
	/* IHDR checked as libpng checks it and the image data inflated and
	 * measured here: opening the header through GDAL's PNG driver as well
	 * cost about 20 us of CPU a tile in cairn-fetch (libpng and zlib set up,
	 * GDAL's global locks) and checked nothing more. */
	return png_inflate_check(data, &pi, s, err);
}

int raster_check_image(const void *data, size_t len, const char *ext, struct error *err)
{
	struct raster_scratch s = {NULL, 0};
	int rc = raster_check_image_with(data, len, ext, &s, err);
	raster_scratch_release(&s);
	return rc;
}

int raster_check_image_gdal(const void *data, size_t len, const char *ext, struct error *err)
{
	const char *driver;
	int w, h, nb;
	if (check_signature(data, len, ext, &driver, err) < 0)
		return -1;
	return gdal_check(data, len, ext, driver, 1, &w, &h, &nb, err);
}

int raster_check_image_fast(const void *data, size_t len, const char *ext, struct error *err)
{
	const char *driver;
	struct png_info pi;
	int w, h, nb;
	if (check_signature(data, len, ext, &driver, err) < 0)
		return -1;
	if (driver && strcmp(driver, "PNG") == 0 && png_scan(data, len, &pi, err) < 0)
		return -1;
	if (driver && strcmp(driver, "JPEG") == 0 && jpeg_markers(data, len, err) < 0)
		return -1;
	return gdal_check(data, len, ext, driver, 0, &w, &h, &nb, err);
}

static int write_dataset(const char *path, const char *drv_name, int w, int h, int bands,
			 const uint8_t *data, const double *gt, char **create_opts, struct error *err)
{
	raster_init();
	GDALDriverH drv = GDALGetDriverByName(drv_name);
	GDALDriverH mem = GDALGetDriverByName("MEM");
	if (!drv || !mem)
		return error_set(err, "%s: GDAL has no %s driver", path, drv_name);
	char tmp[PATH_MAX];
	if (fs_tmp_name(path, tmp, sizeof(tmp), err) < 0)
		return -1;
	struct gdal_msgs msgs = {0, ""};
	CPLPushErrorHandlerEx(collect, &msgs);
	int rc = 0;
	GDALDatasetH src = NULL, dst = NULL;
	int is_tiff = strcmp(drv_name, "GTiff") == 0;
	if (is_tiff)
		dst = GDALCreate(drv, tmp, w, h, bands, GDT_Byte, create_opts);
	else
		src = GDALCreate(mem, "", w, h, bands, GDT_Byte, NULL);
	GDALDatasetH ds = is_tiff ? dst : src;
	if (!ds) {
		rc = error_set(err, "%s: cannot create: %s", path, msgs.first);
		goto out;
	}
	if (gt) {
		OGRSpatialReferenceH srs = OSRNewSpatialReference(NULL);
		char *wkt = NULL;
		if (!srs || OSRImportFromEPSG(srs, 3857) != OGRERR_NONE ||
		    OSRExportToWkt(srs, &wkt) != OGRERR_NONE || GDALSetProjection(ds, wkt) != CE_None ||
		    GDALSetGeoTransform(ds, (double *)gt) != CE_None)
			rc = error_set(err, "%s: cannot set EPSG:3857 georeferencing: %s", path,
				       msgs.first);
		CPLFree(wkt);
		if (srs)
			OSRDestroySpatialReference(srs);
		if (rc)
			goto out;
	}
	int map[4] = {1, 2, 3, 4};
	if (GDALDatasetRasterIO(ds, GF_Write, 0, 0, w, h, (void *)data, w, h, GDT_Byte, bands, map,
				0, 0, 0) != CE_None) {
		rc = error_set(err, "%s: write failed: %s", path, msgs.first);
		goto out;
	}
	if (!is_tiff) {
		dst = GDALCreateCopy(drv, tmp, src, FALSE, create_opts, NULL, NULL);
		if (!dst) {
			rc = error_set(err, "%s: cannot write %s: %s", path, drv_name, msgs.first);
			goto out;
		}
	}
out:
	if (src)
		GDALClose(src);
	if (dst) {
		/* GDALClose flushes; its errors only show up in the handler. */
		int before = msgs.count;
		GDALClose(dst);
		if (msgs.count > before && rc == 0)
			rc = error_set(err, "%s: close failed: %s", path, msgs.first);
	}
	CPLPopErrorHandler();
	if (rc == 0)
		return fs_commit_tmp(tmp, path, 0, err);
	msg_untmp(err->msg, sizeof(err->msg), tmp, path);
	unlink(tmp);
	return rc;
}

int raster_write_tile_sized(const char *path, const struct tile *t, int size, int bands,
			    const uint8_t *data, struct error *err)
{
	if (bands < 1 || bands > 4)
		return error_set(err, "%s: %d bands (want 1..4)", path, bands);
	if (size < 1 || size > 65535)
		return error_set(err, "%s: tiles of %d pixels a side (want 1..65535)", path, size);
	struct bbox b;
	tile_bounds(t, &b);
	double res = (b.e - b.w) / size;
	double gt[6] = {b.w, res, 0, b.n, 0, -res};
	char *opts[] = {"COMPRESS=DEFLATE", "PREDICTOR=1",
			bands == 3 ? "PHOTOMETRIC=RGB" : "PHOTOMETRIC=MINISBLACK", NULL};
	return write_dataset(path, "GTiff", size, size, bands, data, gt, opts, err);
}

int raster_write_tile(const char *path, const struct tile *t, int bands, const uint8_t *data,
		      struct error *err)
{
	return raster_write_tile_sized(path, t, TILE_SIZE, bands, data, err);
}

const char *raster_open_reason(const char *path, const char *gdal_msg, char *buf, size_t size)
{
	struct stat st;
	int fd = stat(path, &st) == 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0 && strncmp(path, "/vsi", 4) != 0)
		snprintf(buf, size, "%s", strerror(errno));
	else if (fd >= 0 && S_ISDIR(st.st_mode))
		snprintf(buf, size, "a folder, not a file");
	else if (fd >= 0 && S_ISREG(st.st_mode) && st.st_size == 0)
		snprintf(buf, size, "an empty file (0 bytes)");
	else if (gdal_msg && *gdal_msg)
		snprintf(buf, size, "%s", gdal_msg);
	else
		snprintf(buf, size, "not a format GDAL reads");
	if (fd >= 0)
		close(fd);
	return buf;
}

void *raster_open_quiet(const char *path, unsigned flags, const char *name, const char *what,
			struct error *err)
{
	raster_init();
	CPLPushErrorHandler(CPLQuietErrorHandler);
	CPLErrorReset();
	GDALDatasetH ds = GDALOpenEx(path, flags | GDAL_OF_VERBOSE_ERROR, NULL, NULL, NULL);
	CPLPopErrorHandler();
	if (!ds) {
		char why[512];
		error_set(err, "%s: cannot open%s%s: %s", name, what ? " as " : "", what ? what : "",
			  raster_open_reason(path, CPLGetLastErrorMsg(), why, sizeof(why)));
	}
	return ds;
}

int raster_read_tile(const char *path, int bands, uint8_t *data, struct error *err)
{
	raster_init();
	struct gdal_msgs msgs = {0, ""};
	CPLPushErrorHandlerEx(collect, &msgs);
	int rc = 0;
	GDALDatasetH ds = GDALOpenEx(path, GDAL_OF_RASTER | GDAL_OF_READONLY | GDAL_OF_VERBOSE_ERROR,
				     NULL, NULL, NULL);
	if (!ds) {
		char why[512];
		rc = error_set(err, "%s: cannot open: %s", path,
			       raster_open_reason(path, msgs.count ? msgs.first : NULL, why,
						  sizeof(why)));
		goto out;
	}
	if (GDALGetRasterXSize(ds) != TILE_SIZE || GDALGetRasterYSize(ds) != TILE_SIZE ||
	    GDALGetRasterCount(ds) != bands) {
		rc = error_set(err, "%s: %dx%d with %d bands, want %dx%d with %d", path,
			       GDALGetRasterXSize(ds), GDALGetRasterYSize(ds), GDALGetRasterCount(ds),
			       TILE_SIZE, TILE_SIZE, bands);
		goto out;
	}
	int map[4] = {1, 2, 3, 4};
	if (GDALDatasetRasterIO(ds, GF_Read, 0, 0, TILE_SIZE, TILE_SIZE, data, TILE_SIZE, TILE_SIZE,
				GDT_Byte, bands, map, 0, 0, 0) != CE_None)
		rc = error_set(err, "%s: read failed: %s", path, msgs.first);
out:
	if (ds)
		GDALClose(ds);
	CPLPopErrorHandler();
	return rc;
}

int raster_write_png(const char *path, int w, int h, int bands, const uint8_t *data,
		     struct error *err)
{
	if (bands < 1 || bands > 4 || w <= 0 || h <= 0)
		return error_set(err, "%s: bad picture %dx%d with %d bands", path, w, h, bands);
	char *opts[] = {"ZLEVEL=9", NULL};
	return write_dataset(path, "PNG", w, h, bands, data, NULL, opts, err);
}
