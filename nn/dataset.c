#include "nn/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/fs.h"
#include "core/mem.h"

/* Malformed input (the user can fix it: exit 2) as opposed to I/O or memory failures. */
#define BAD(...) (error_set(err, __VA_ARGS__), DATASET_EBADINPUT)

/* Header fields, byte offsets (docs/formats.md, "Dataset shards"). */
enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 8,
	OFF_HEADER_BYTES = 12,
	OFF_COUNT = 16,
	OFF_CHANNELS = 24,
	OFF_HEIGHT = 28,
	OFF_WIDTH = 32,
	OFF_PIXEL = 36,
	OFF_CLASSES = 40,
	OFF_RECORD_BYTES = 44,
	OFF_DATA_CRC = 48,
	OFF_LABEL_KIND = 52, /* version 2; version 1: zero, part of the reserved bytes */
	OFF_RESERVED = 56,   /* 4 bytes, zero (version 1: 8 bytes from 52) */
	OFF_HEADER_CRC = 60,
};

/* Limits that keep every size computation far from overflow. */
#define MAX_SIDE 65535u
#define MAX_CLASSES (1u << 24)

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* zlib's crc32 takes a uInt length: feed large buffers in pieces. */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
	while (n > 0) {
		uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
		crc = (uint32_t)crc32(crc, p, k);
		p += k;
		n -= k;
	}
	return crc;
}

/* splitmix64 (Steele, Lea, Flood 2014): a tiny seeded generator, enough for shuffles. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n), no modulo bias (rejection on the top of the range). */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t r;
	do
		r = rng_next(s);
	while (r >= limit);
	return r % n;
}

/* Fisher-Yates. */
static void shuffle(uint64_t *a, uint64_t n, uint64_t *s)
{
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = rng_below(s, i);
		uint64_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

static void report(const struct dataset_progress *pr, uint64_t done, uint64_t total)
{
	if (pr && pr->fn && (done % 4096 == 0 || done == total))
		pr->fn(pr->ctx, done, total);
}

/* Bytes of a record's label: a uint32, or a mask and its key. */
static size_t label_bytes(const struct dataset_shape *s)
{
	if (s->label_kind == DATASET_LABEL_MASK)
		return (size_t)s->height * s->width + DATASET_KEY_BYTES;
	return 4;
}

static int check_shape(const struct dataset_shape *s, const char *what, struct error *err)
{
	if (s->label_kind != DATASET_LABEL_CLASS && s->label_kind != DATASET_LABEL_MASK)
		return BAD("%s: label kind %" PRIu32 ", expected %d (class) or %d (mask)", what,
			   s->label_kind, DATASET_LABEL_CLASS, DATASET_LABEL_MASK);
	if (s->label_kind == DATASET_LABEL_MASK && s->num_classes > DATASET_MASK_MAX_CLASSES)
		return BAD("%s: %" PRIu32 " classes: a mask holds at most %u (value %u means "
			   "no label)",
			   what, s->num_classes, DATASET_MASK_MAX_CLASSES, DATASET_MASK_IGNORE);
	/* 0 channels: masks without their imagery (predictions) */
	if ((s->channels == 0 && s->label_kind != DATASET_LABEL_MASK) ||
	    s->channels > DATASET_MAX_CHANNELS)
		return BAD("%s: %" PRIu32 " channels, expected 1 to %u (0 only in a mask shard)",
			   what, s->channels, DATASET_MAX_CHANNELS);
	if (s->height == 0 || s->height > MAX_SIDE || s->width == 0 || s->width > MAX_SIDE)
		return BAD("%s: image size %" PRIu32 "x%" PRIu32 ", expected 1 to %u on each side",
			   what, s->height, s->width, MAX_SIDE);
	if (s->num_classes == 0 || s->num_classes > MAX_CLASSES)
		return BAD("%s: %" PRIu32 " classes, expected 1 to %u", what, s->num_classes,
			   MAX_CLASSES);
	/* the header holds the record size in 32 bits */
	uint64_t rb = (uint64_t)s->channels * s->height * s->width + label_bytes(s);
	if (rb > UINT32_MAX)
		return BAD("%s: records of %" PRIu64 " bytes (%" PRIu32 "x%" PRIu32 "x%" PRIu32
			   " images%s), a shard holds at most %" PRIu32 " bytes a record",
			   what, rb, s->channels, s->height, s->width,
			   s->label_kind == DATASET_LABEL_MASK ? " and their masks" : "",
			   UINT32_MAX);
	return 0;
}

static void encode_header(uint8_t *h, const struct dataset_shape *s, uint64_t count,
			  uint32_t data_crc)
{
	memset(h, 0, DATASET_HEADER_BYTES);
	memcpy(h + OFF_MAGIC, DATASET_MAGIC, 8);
	int mask = s->label_kind == DATASET_LABEL_MASK;
	put32(h + OFF_VERSION, mask ? DATASET_VERSION_MASK : DATASET_VERSION);
	put32(h + OFF_HEADER_BYTES, DATASET_HEADER_BYTES);
	put64(h + OFF_COUNT, count);
	put32(h + OFF_CHANNELS, s->channels);
	put32(h + OFF_HEIGHT, s->height);
	put32(h + OFF_WIDTH, s->width);
	put32(h + OFF_PIXEL, DATASET_PIXEL_U8);
	put32(h + OFF_CLASSES, s->num_classes);
	put32(h + OFF_RECORD_BYTES,
	      (uint32_t)((size_t)s->channels * s->height * s->width + label_bytes(s)));
	if (mask)
		put32(h + OFF_LABEL_KIND, s->label_kind);
	put32(h + OFF_DATA_CRC, data_crc);
	put32(h + OFF_HEADER_CRC, crc_update(0, h, OFF_HEADER_CRC));
}

/* ---- reading ---- */

static int parse_header(struct dataset *ds, const uint8_t *h, uint64_t file_size, struct error *err)
{
	const char *p = ds->path;
	if (file_size < DATASET_HEADER_BYTES)
		return BAD("%s: truncated at byte %" PRIu64
			   ": a shard starts with a %u-byte header",
			   p, file_size, DATASET_HEADER_BYTES);
	if (memcmp(h + OFF_MAGIC, DATASET_MAGIC, 8) != 0)
		return BAD("%s: byte 0: not a cairn dataset shard (bad magic)", p);
	uint32_t version = get32(h + OFF_VERSION);
	if (version != DATASET_VERSION && version != DATASET_VERSION_MASK)
		return BAD("%s: byte %d: shard version %" PRIu32
			   ", this build reads versions %u and %u",
			   p, OFF_VERSION, version, DATASET_VERSION, DATASET_VERSION_MASK);
	uint32_t stored = get32(h + OFF_HEADER_CRC), actual = crc_update(0, h, OFF_HEADER_CRC);
	if (stored != actual)
		return BAD("%s: byte %d: header checksum mismatch (stored %08" PRIx32
			   ", computed %08" PRIx32 "): the header is corrupt",
			   p, OFF_HEADER_CRC, stored, actual);
	ds->shape.label_kind = version == DATASET_VERSION_MASK ? get32(h + OFF_LABEL_KIND) : 0;
	if ((version == DATASET_VERSION && get32(h + OFF_LABEL_KIND) != 0) ||
	    get32(h + OFF_RESERVED) != 0)
		return BAD(
		    "%s: byte %d: reserved header bytes are set (a shard from a newer cairn?)", p,
		    version == DATASET_VERSION ? OFF_LABEL_KIND : OFF_RESERVED);
	if (version == DATASET_VERSION_MASK && ds->shape.label_kind != DATASET_LABEL_MASK)
		return BAD("%s: byte %d: label kind %" PRIu32
			   ", expected %d (mask) in a version %u shard",
			   p, OFF_LABEL_KIND, ds->shape.label_kind, DATASET_LABEL_MASK,
			   DATASET_VERSION_MASK);
	if (get32(h + OFF_HEADER_BYTES) != DATASET_HEADER_BYTES)
		return BAD("%s: byte %d: header size %" PRIu32 ", expected %u", p, OFF_HEADER_BYTES,
			   get32(h + OFF_HEADER_BYTES), DATASET_HEADER_BYTES);
	if (get32(h + OFF_PIXEL) != DATASET_PIXEL_U8)
		return BAD("%s: byte %d: pixel type %" PRIu32 ", expected %u (uint8)", p, OFF_PIXEL,
			   get32(h + OFF_PIXEL), DATASET_PIXEL_U8);
	ds->shape.channels = get32(h + OFF_CHANNELS);
	ds->shape.height = get32(h + OFF_HEIGHT);
	ds->shape.width = get32(h + OFF_WIDTH);
	ds->shape.num_classes = get32(h + OFF_CLASSES);
	const struct dataset_shape *sh = &ds->shape;
	if ((sh->channels == 0 && sh->label_kind != DATASET_LABEL_MASK) ||
	    sh->channels > DATASET_MAX_CHANNELS)
		return BAD("%s: byte %d: %" PRIu32 " channels, expected 1 to %u (0 only in a mask "
			   "shard)",
			   p, OFF_CHANNELS, sh->channels, DATASET_MAX_CHANNELS);
	if (sh->height == 0 || sh->height > MAX_SIDE)
		return BAD("%s: byte %d: height %" PRIu32 ", expected 1 to %u", p, OFF_HEIGHT,
			   sh->height, MAX_SIDE);
	if (sh->width == 0 || sh->width > MAX_SIDE)
		return BAD("%s: byte %d: width %" PRIu32 ", expected 1 to %u", p, OFF_WIDTH,
			   sh->width, MAX_SIDE);
	uint32_t max_classes =
	    sh->label_kind == DATASET_LABEL_MASK ? DATASET_MASK_MAX_CLASSES : MAX_CLASSES;
	if (sh->num_classes == 0 || sh->num_classes > max_classes)
		return BAD("%s: byte %d: %" PRIu32 " classes, expected 1 to %u", p, OFF_CLASSES,
			   sh->num_classes, max_classes);
	ds->image_bytes = (size_t)ds->shape.channels * ds->shape.height * ds->shape.width;
	ds->record_bytes = ds->image_bytes + label_bytes(sh);
	if (get32(h + OFF_RECORD_BYTES) != ds->record_bytes)
		return BAD("%s: byte %d: record size %" PRIu32 ", expected %zu (%s)", p,
			   OFF_RECORD_BYTES, get32(h + OFF_RECORD_BYTES), ds->record_bytes,
			   sh->label_kind == DATASET_LABEL_MASK ? "C*H*W + H*W + 12" : "C*H*W + 4");
	ds->count = get64(h + OFF_COUNT);
	ds->data_crc32 = get32(h + OFF_DATA_CRC);
	uint64_t max_count = (UINT64_MAX / 2 - DATASET_HEADER_BYTES) / ds->record_bytes;
	if (ds->count > max_count)
		return BAD("%s: byte %d: record count %" PRIu64 " is impossible", p, OFF_COUNT,
			   ds->count);
	uint64_t expect = DATASET_HEADER_BYTES + ds->count * ds->record_bytes;
	if (file_size < expect) {
		uint64_t whole = (file_size - DATASET_HEADER_BYTES) / ds->record_bytes;
		return BAD("%s: truncated at byte %" PRIu64 ": expected %" PRIu64
			   " bytes (%u-byte header + %" PRIu64
			   " records of %zu bytes); record %" PRIu64 " at byte %" PRIu64
			   " is incomplete",
			   p, file_size, expect, DATASET_HEADER_BYTES, ds->count, ds->record_bytes,
			   whole, DATASET_HEADER_BYTES + whole * ds->record_bytes);
	}
	if (file_size > expect)
		return BAD("%s: %" PRIu64
			   " unexpected bytes after the last record, at byte %" PRIu64,
			   p, file_size - expect, expect);
	return 0;
}

/* Every key is an XYZ tile (z <= 30, x and y < 2^z) or says none. */
static int check_keys(const struct dataset *ds, struct error *err)
{
	for (uint64_t i = 0; i < ds->count; i++) {
		struct dataset_key k = dataset_key(ds, i);
		if (k.z == DATASET_KEY_NONE)
			continue;
		if (k.z > 30 || k.x >> k.z || k.y >> k.z)
			return BAD("%s: byte %" PRIu64 ": record %" PRIu64 " has tile key %" PRIu32
				   "/%" PRIu32 "/%" PRIu32 ", which is no XYZ tile",
				   ds->path,
				   DATASET_HEADER_BYTES + (i + 1) * ds->record_bytes -
				       DATASET_KEY_BYTES,
				   i, k.z, k.x, k.y);
	}
	return 0;
}

/* Every mask value is a class or DATASET_MASK_IGNORE. */
static int check_masks(const struct dataset *ds, struct error *err)
{
	size_t plane = (size_t)ds->shape.height * ds->shape.width;
	for (uint64_t i = 0; i < ds->count; i++) {
		const uint8_t *m = dataset_mask(ds, i);
		for (size_t j = 0; j < plane; j++)
			if (m[j] >= ds->shape.num_classes && m[j] != DATASET_MASK_IGNORE)
				return BAD("%s: byte %" PRIu64 ": record %" PRIu64
					   " has mask value %d at pixel (row %zu, col %zu), but the "
					   "shard has %" PRIu32 " classes (%u: no label)",
					   ds->path,
					   DATASET_HEADER_BYTES + i * ds->record_bytes +
					       ds->image_bytes + j,
					   i, m[j], j / ds->shape.width, j % ds->shape.width,
					   ds->shape.num_classes, DATASET_MASK_IGNORE);
	}
	return 0;
}

int dataset_open(struct dataset *ds, const char *path, unsigned flags, struct error *err)
{
	int rc = -1;
	memset(ds, 0, sizeof(*ds));
	ds->path = mem_strdup(path);
	if (!ds->path)
		return error_set(err, "%s: out of memory", path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		error_errno(err, "%s: cannot open", path);
		rc = errno == ENOENT || errno == EACCES || errno == EISDIR ? DATASET_EBADINPUT : -1;
		goto fail;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		error_errno(err, "%s: cannot stat", path);
		close(fd);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		error_set(err, "%s: not a regular file", path);
		rc = DATASET_EBADINPUT;
		close(fd);
		goto fail;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (size >= DATASET_HEADER_BYTES) {
		ds->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (ds->map == MAP_FAILED) {
			ds->map = NULL;
			error_errno(err, "%s: cannot mmap %" PRIu64 " bytes", path, size);
			close(fd);
			goto fail;
		}
		ds->map_len = (size_t)size;
	}
	close(fd); /* the mapping keeps the file */
	uint8_t small[DATASET_HEADER_BYTES] = {0};
	rc = parse_header(ds, ds->map ? ds->map : small, size, err);
	if (rc < 0)
		goto fail;
	ds->records = (const uint8_t *)ds->map + DATASET_HEADER_BYTES;
	if (ds->shape.label_kind == DATASET_LABEL_MASK) {
		if ((rc = check_keys(ds, err)) < 0)
			goto fail;
		if ((flags & DATASET_VERIFY) && (rc = check_masks(ds, err)) < 0)
			goto fail;
	}
	for (uint64_t i = 0; ds->shape.label_kind == DATASET_LABEL_CLASS && i < ds->count; i++) {
		uint32_t label = dataset_label(ds, i);
		if (label >= ds->shape.num_classes) {
			error_set(err,
				  "%s: byte %" PRIu64 ": record %" PRIu64 " has label %" PRIu32
				  ", but the shard has %" PRIu32 " classes",
				  path,
				  DATASET_HEADER_BYTES + i * ds->record_bytes + ds->image_bytes, i,
				  label, ds->shape.num_classes);
			rc = DATASET_EBADINPUT;
			goto fail;
		}
	}
	if ((flags & DATASET_VERIFY) && (rc = dataset_verify(ds, err)) < 0)
		goto fail;
	return 0;
fail:
	dataset_close(ds);
	return rc;
}

void dataset_close(struct dataset *ds)
{
	if (ds->map)
		munmap(ds->map, ds->map_len);
	mem_free(ds->path);
	memset(ds, 0, sizeof(*ds));
}

int dataset_verify(const struct dataset *ds, struct error *err)
{
	uint32_t crc = crc_update(0, ds->records, (size_t)(ds->count * ds->record_bytes));
	if (crc != ds->data_crc32)
		return BAD("%s: data checksum mismatch (header byte %d says %08" PRIx32
			   ", records give %08" PRIx32 "): records between byte %u and %" PRIu64
			   " are corrupt",
			   ds->path, OFF_DATA_CRC, ds->data_crc32, crc, DATASET_HEADER_BYTES,
			   (uint64_t)DATASET_HEADER_BYTES + ds->count * ds->record_bytes);
	return 0;
}

void dataset_histogram(const struct dataset *ds, uint64_t *counts)
{
	memset(counts, 0, sizeof(*counts) * ds->shape.num_classes);
	if (ds->shape.label_kind == DATASET_LABEL_MASK) {
		uint64_t h[256] = {0};
		size_t plane = (size_t)ds->shape.height * ds->shape.width;
		for (uint64_t i = 0; i < ds->count; i++) {
			const uint8_t *m = dataset_mask(ds, i);
			for (size_t j = 0; j < plane; j++)
				h[m[j]]++;
		}
		for (uint32_t k = 0; k < ds->shape.num_classes; k++)
			counts[k] = h[k];
		return;
	}
	for (uint64_t i = 0; i < ds->count; i++)
		counts[dataset_label(ds, i)]++;
}

void dataset_channel_stats(const struct dataset *ds, float *mean, float *std)
{
	/* Exact: count each byte value per channel, then mean and variance of v/255
	 * from the 256-bin histogram. */
	uint32_t C = ds->shape.channels;
	size_t plane = (size_t)ds->shape.height * ds->shape.width;
	uint64_t hist[DATASET_MAX_CHANNELS][256];
	memset(hist, 0, sizeof(hist));
	for (uint64_t i = 0; i < ds->count; i++) {
		const uint8_t *img = dataset_image(ds, i);
		for (uint32_t c = 0; c < C; c++)
			for (size_t k = 0; k < plane; k++)
				hist[c][img[c * plane + k]]++;
	}
	for (uint32_t c = 0; c < C; c++) {
		double n = 0, s = 0;
		for (int v = 0; v < 256; v++) {
			n += (double)hist[c][v];
			s += (double)hist[c][v] * v / 255.0;
		}
		double m = n > 0 ? s / n : 0, var = 0;
		for (int v = 0; v < 256; v++) {
			double d = v / 255.0 - m;
			var += (double)hist[c][v] * d * d;
		}
		mean[c] = (float)m;
		std[c] = (float)(n > 0 ? sqrt(var / n) : 1);
		if (std[c] == 0)
			std[c] = 1; /* a constant channel: do not divide by zero */
	}
}

/* ---- writing ---- */

int dataset_writer_open(struct dataset_writer *w, const char *path,
			const struct dataset_shape *shape, struct error *err)
{
	memset(w, 0, sizeof(*w));
	int rc = check_shape(shape, path, err);
	if (rc < 0)
		return rc;
	w->shape = *shape;
	w->image_bytes = (size_t)shape->channels * shape->height * shape->width;
	w->path = mem_strdup(path);
	w->tmp_path = mem_alloc(PATH_MAX);
	if (!w->path || !w->tmp_path) {
		dataset_writer_abort(w);
		return error_set(err, "%s: out of memory", path);
	}
	if (fs_tmp_name(path, w->tmp_path, PATH_MAX, err) < 0) {
		mem_free(w->tmp_path);
		w->tmp_path = NULL; /* not created */
		dataset_writer_abort(w);
		return -1;
	}
	FILE *f = fopen(w->tmp_path, "wb");
	if (!f) {
		error_errno(err, "%s: cannot create (temp file %s)", path, w->tmp_path);
		dataset_writer_abort(w);
		return -1;
	}
	w->file = f;
	uint8_t h[DATASET_HEADER_BYTES] = {0}; /* placeholder until finish */
	if (fwrite(h, 1, sizeof(h), f) != sizeof(h)) {
		error_errno(err, "%s: write failed", w->path);
		dataset_writer_abort(w);
		return -1;
	}
	return 0;
}

/* Append a record's bytes: the image, then its label part (n bytes). */
static int writer_put(struct dataset_writer *w, const uint8_t *pixels, const uint8_t *label,
		      size_t n, struct error *err)
{
	if (fwrite(pixels, 1, w->image_bytes, w->file) != w->image_bytes ||
	    fwrite(label, 1, n, w->file) != n)
		return error_errno(err, "%s: write failed at record %" PRIu64, w->path, w->count);
	w->crc = crc_update(w->crc, pixels, w->image_bytes);
	w->crc = crc_update(w->crc, label, n);
	w->count++;
	return 0;
}

/* Record i of ds, as it is (shapes agree: split, imbalance, merge). */
static int writer_copy(struct dataset_writer *w, const struct dataset *ds, uint64_t i,
		       struct error *err)
{
	return writer_put(w, dataset_image(ds, i), dataset_image(ds, i) + ds->image_bytes,
			  ds->record_bytes - ds->image_bytes, err);
}

int dataset_writer_add_mask(struct dataset_writer *w, const uint8_t *pixels, const uint8_t *mask,
			    const struct dataset_key *key, struct error *err)
{
	if (w->shape.label_kind != DATASET_LABEL_MASK)
		return error_set(err, "%s: a mask for a shard of class labels", w->path);
	size_t plane = (size_t)w->shape.height * w->shape.width;
	for (size_t j = 0; j < plane; j++)
		if (mask[j] >= w->shape.num_classes && mask[j] != DATASET_MASK_IGNORE)
			return error_set(err,
					 "%s: record %" PRIu64 ": mask value %d at pixel (row %zu, col "
					 "%zu) >= %" PRIu32 " classes",
					 w->path, w->count, mask[j], j / w->shape.width,
					 j % w->shape.width, w->shape.num_classes);
	uint8_t k[DATASET_KEY_BYTES];
	put32(k, key ? key->z : DATASET_KEY_NONE);
	put32(k + 4, key ? key->x : 0);
	put32(k + 8, key ? key->y : 0);
	if (key && key->z != DATASET_KEY_NONE &&
	    (key->z > 30 || key->x >> key->z || key->y >> key->z))
		return error_set(err,
				 "%s: record %" PRIu64 ": %" PRIu32 "/%" PRIu32 "/%" PRIu32
				 " is no XYZ tile",
				 w->path, w->count, key->z, key->x, key->y);
	/* pixels (none in a masks-only shard), mask, key: three writes, no copy */
	if ((w->image_bytes && fwrite(pixels, 1, w->image_bytes, w->file) != w->image_bytes) ||
	    fwrite(mask, 1, plane, w->file) != plane ||
	    fwrite(k, 1, sizeof(k), w->file) != sizeof(k))
		return error_errno(err, "%s: write failed at record %" PRIu64, w->path, w->count);
	w->crc = crc_update(w->crc, pixels, w->image_bytes);
	w->crc = crc_update(w->crc, mask, plane);
	w->crc = crc_update(w->crc, k, sizeof(k));
	w->count++;
	return 0;
}

int dataset_writer_add(struct dataset_writer *w, const uint8_t *pixels, uint32_t label,
		       struct error *err)
{
	if (w->shape.label_kind != DATASET_LABEL_CLASS)
		return error_set(err, "%s: a class label for a shard of masks", w->path);
	if (label >= w->shape.num_classes)
		return error_set(err,
				 "%s: record %" PRIu64 ": label %" PRIu32 " >= %" PRIu32 " classes",
				 w->path, w->count, label, w->shape.num_classes);
	uint8_t l[4];
	put32(l, label);
	return writer_put(w, pixels, l, 4, err);
}

/* Finalize the header and close the temp file, without putting it in place. */
static int writer_seal(struct dataset_writer *w, struct error *err)
{
	FILE *f = w->file;
	uint8_t h[DATASET_HEADER_BYTES];
	encode_header(h, &w->shape, w->count, w->crc);
	if (fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    fwrite(h, 1, sizeof(h), f) != sizeof(h) || fflush(f) != 0 || fsync(fileno(f)) != 0)
		return error_errno(err, "%s: write failed", w->path);
	w->file = NULL;
	if (fclose(f) != 0)
		return error_errno(err, "%s: close failed", w->path);
	return 0;
}

static int writer_commit(struct dataset_writer *w, struct error *err)
{
	int rc = fs_commit_tmp(w->tmp_path, w->path, 1, err);
	mem_free(w->tmp_path);
	w->tmp_path = NULL; /* put in place, or removed by fs_commit_tmp */
	return rc;
}

int dataset_writer_finish(struct dataset_writer *w, struct error *err)
{
	int rc = writer_seal(w, err);
	if (rc == 0)
		rc = writer_commit(w, err);
	dataset_writer_abort(w);
	return rc;
}

void dataset_writer_abort(struct dataset_writer *w)
{
	if (w->file)
		fclose(w->file);
	if (w->tmp_path)
		unlink(w->tmp_path);
	mem_free(w->tmp_path);
	mem_free(w->path);
	memset(w, 0, sizeof(*w));
}

/* ---- IDX import ---- */

/* gzerror's message starts with the file name, which our messages already give. */
static const char *gz_msg(gzFile gz, const char *path)
{
	int zerr;
	const char *msg = gzerror(gz, &zerr);
	if (zerr == Z_ERRNO)
		return strerror(errno);
	size_t n = strlen(path);
	if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
		msg += n + 2;
	return msg;
}

/* An IDX file being read through zlib (which reads plain files as they are). */
struct idx {
	const char *path;
	gzFile gz;
	uint64_t off; /* bytes consumed so far, in the uncompressed stream */
};

static int idx_read(struct idx *x, void *buf, size_t n, const char *what, struct error *err)
{
	size_t got = 0;
	while (got < n) {
		unsigned k = n - got > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
		int r = gzread(x->gz, (char *)buf + got, k);
		if (r < 0)
			return BAD("%s: byte %" PRIu64 "%s: reading %s: %s", x->path, x->off + got,
				   gzdirect(x->gz) ? "" : " (uncompressed)", what,
				   gz_msg(x->gz, x->path));
		if (r == 0) {
			int zerr;
			gzerror(x->gz, &zerr);
			return BAD("%s: truncated at byte %" PRIu64 "%s: reading %s%s%s", x->path,
				   x->off + got, gzdirect(x->gz) ? "" : " (uncompressed)", what,
				   zerr != Z_OK ? ": " : "",
				   zerr != Z_OK ? gz_msg(x->gz, x->path) : "");
		}
		got += (size_t)r;
	}
	x->off += n;
	return 0;
}

static int idx_open(struct idx *x, const char *path, int want_dims, uint32_t *dims,
		    struct error *err)
{
	x->path = path;
	x->off = 0;
	x->gz = gzopen(path, "rb");
	if (!x->gz) {
		error_errno(err, "%s: cannot open", path);
		return errno == ENOMEM ? -1 : DATASET_EBADINPUT;
	}
	gzbuffer(x->gz, 1u << 17);
	uint8_t h[4];
	int rc;
	if ((rc = idx_read(x, h, 4, "the IDX magic", err)) < 0)
		return rc; /* an empty or short file is bad input */
	if (h[0] != 0 || h[1] != 0)
		return BAD("%s: byte 0: not an IDX file (magic %02x%02x%02x%02x)", path, h[0], h[1],
			   h[2], h[3]);
	if (h[2] != 0x08)
		return BAD(
		    "%s: byte 2: IDX element type 0x%02x, only 0x08 (unsigned byte) is supported",
		    path, h[2]);
	if (h[3] != want_dims)
		return BAD("%s: byte 3: %d dimensions, expected %d (%s)", path, h[3], want_dims,
			   want_dims == 3 ? "images N x H x W" : "labels N");
	for (int i = 0; i < want_dims; i++) {
		uint8_t d[4];
		if ((rc = idx_read(x, d, 4, "the IDX dimensions", err)) < 0)
			return rc;
		dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
	}
	return 0;
}

static int idx_expect_end(struct idx *x, struct error *err)
{
	char c;
	int r = gzread(x->gz, &c, 1);
	if (r == 1)
		return BAD("%s: byte %" PRIu64 "%s: unexpected data after the last item", x->path,
			   x->off, gzdirect(x->gz) ? "" : " (uncompressed)");
	if (r < 0)
		return BAD("%s: byte %" PRIu64 "%s: %s", x->path, x->off,
			   gzdirect(x->gz) ? "" : " (uncompressed)", gz_msg(x->gz, x->path));
	return 0;
}

static void idx_close(struct idx *x)
{
	if (x->gz)
		gzclose(x->gz);
	x->gz = NULL;
}

int dataset_import_idx(const char *images_path, const char *labels_path, const char *out_path,
		       uint32_t num_classes, const struct dataset_progress *pr, struct error *err)
{
	struct idx li = {0}, ii = {0};
	struct dataset_writer w = {0};
	uint8_t *labels = NULL, *pix = NULL;
	uint32_t ldims[1], idims[3];
	int rc = -1;
	int bad = DATASET_EBADINPUT;

	if ((rc = idx_open(&li, labels_path, 1, ldims, err)) < 0)
		goto out;
	rc = -1;
	uint64_t n = ldims[0];
	labels = mem_alloc(n ? n : 1);
	if (!labels) {
		error_set(err, "%s: out of memory for %" PRIu64 " labels", labels_path, n);
		goto out;
	}
	if ((rc = idx_read(&li, labels, n, "labels", err)) < 0 ||
	    (rc = idx_expect_end(&li, err)) < 0)
		goto out;
	rc = -1;
	uint32_t max_label = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (num_classes && labels[i] >= num_classes) {
			error_set(err,
				  "%s: byte %" PRIu64 ": label %d of item %" PRIu64 " >= %" PRIu32
				  " classes",
				  labels_path, 8 + i, labels[i], i, num_classes);
			rc = bad;
			goto out;
		}
		if (labels[i] > max_label)
			max_label = labels[i];
	}
	if ((rc = idx_open(&ii, images_path, 3, idims, err)) < 0)
		goto out;
	rc = -1;
	if (idims[0] != n) {
		error_set(err, "%s: byte 4: %" PRIu32 " images, but %s has %" PRIu64 " labels",
			  images_path, idims[0], labels_path, n);
		rc = bad;
		goto out;
	}
	if (idims[1] == 0 || idims[1] > MAX_SIDE || idims[2] == 0 || idims[2] > MAX_SIDE) {
		error_set(err, "%s: byte 8: image size %" PRIu32 "x%" PRIu32 " is not plausible",
			  images_path, idims[1], idims[2]);
		rc = bad;
		goto out;
	}
	struct dataset_shape shape = {
	    1, idims[1], idims[2], num_classes ? num_classes : max_label + 1, DATASET_LABEL_CLASS};
	size_t img = (size_t)idims[1] * idims[2];
	pix = mem_alloc(img);
	if (!pix) {
		error_set(err, "%s: out of memory", images_path);
		goto out;
	}
	if (dataset_writer_open(&w, out_path, &shape, err) < 0)
		goto out;
	for (uint64_t i = 0; i < n; i++) {
		if ((rc = idx_read(&ii, pix, img, "images", err)) < 0) {
			error_prefix(err, "image %" PRIu64 " of %" PRIu64 ": ", i, n);
			goto out;
		}
		if ((rc = dataset_writer_add(&w, pix, labels[i], err)) < 0)
			goto out;
		report(pr, i + 1, n);
	}
	if ((rc = idx_expect_end(&ii, err)) < 0)
		goto out;
	rc = -1;
	if (dataset_writer_finish(&w, err) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		dataset_writer_abort(&w);
	idx_close(&li);
	idx_close(&ii);
	mem_free(labels);
	mem_free(pix);
	return rc;
}

/* ---- split and imbalance ---- */

/* Records grouped by class: idx[start[k] .. start[k+1]) are class k's, in file order. */
struct by_class {
	uint64_t *idx, *start;
};

static int by_class_build(const struct dataset *ds, struct by_class *b, struct error *err)
{
	int mask = ds->shape.label_kind == DATASET_LABEL_MASK;
	uint32_t K = mask ? 1 : ds->shape.num_classes; /* a mask shard is one group */
	b->idx = mem_alloc(sizeof(uint64_t) * (ds->count ? ds->count : 1));
	b->start = mem_calloc((size_t)K + 1, sizeof(uint64_t));
	uint64_t *fill = mem_calloc(K, sizeof(uint64_t));
	if (!b->idx || !b->start || !fill) {
		mem_free(b->idx);
		mem_free(b->start);
		mem_free(fill);
		return error_set(err, "%s: out of memory grouping %" PRIu64 " records by class",
				 ds->path, ds->count);
	}
	for (uint64_t i = 0; i < ds->count; i++)
		b->start[(mask ? 0 : dataset_label(ds, i)) + 1]++;
	for (uint32_t k = 0; k < K; k++)
		b->start[k + 1] += b->start[k];
	for (uint64_t i = 0; i < ds->count; i++) {
		uint32_t k = mask ? 0 : dataset_label(ds, i);
		b->idx[b->start[k] + fill[k]++] = i;
	}
	mem_free(fill);
	return 0;
}

static void by_class_release(struct by_class *b)
{
	mem_free(b->idx);
	mem_free(b->start);
}

/* Write the records marked k (1..n) to paths[k-1], in file order, all outputs
 * in one pass. Every output's temp file is created before any work, and none
 * is put in place unless all were written completely. */
static int write_marked(const struct dataset *ds, const uint8_t *mark, const char *const *paths,
			int n, const struct dataset_progress *pr, struct error *err)
{
	struct dataset_writer w[2];
	int opened = 0, rc = -1;
	for (; opened < n; opened++)
		if (dataset_writer_open(&w[opened], paths[opened], &ds->shape, err) < 0)
			goto out;
	for (uint64_t i = 0; i < ds->count; i++) {
		if (mark[i] && writer_copy(&w[mark[i] - 1], ds, i, err) < 0)
			goto out;
		report(pr, i + 1, ds->count);
	}
	for (int k = 0; k < n; k++)
		if (writer_seal(&w[k], err) < 0)
			goto out;
	for (int k = 0; k < n; k++)
		if (writer_commit(&w[k], err) < 0)
			goto out;
	rc = 0;
out:
	for (int k = 0; k < opened; k++)
		dataset_writer_abort(&w[k]);
	return rc;
}

/* Two output paths that name one file (also through links or "./" spellings). */
static int same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	char *ra = fs_abspath(a), *rb = fs_abspath(b);
	int same = ra && rb ? strcmp(ra, rb) == 0 : strcmp(a, b) == 0;
	mem_free(ra);
	mem_free(rb);
	return same;
}

int dataset_split(const struct dataset *ds, double fraction, uint64_t seed, const char *out_a,
		  const char *out_b, const struct dataset_progress *pr, struct error *err)
{
	if (!(fraction >= 0 && fraction <= 1))
		return BAD("split fraction %g: expected a number from 0 to 1", fraction);
	if (same_file(out_a, out_b))
		return BAD("split: %s and %s are the same file: give two different outputs", out_a,
			   out_b);
	struct by_class b;
	if (by_class_build(ds, &b, err) < 0)
		return -1;
	uint8_t *mark = mem_calloc(ds->count ? ds->count : 1, 1);
	if (!mark) {
		by_class_release(&b);
		return error_set(err, "%s: out of memory", ds->path);
	}
	uint64_t s = seed;
	uint32_t groups = ds->shape.label_kind == DATASET_LABEL_MASK ? 1 : ds->shape.num_classes;
	for (uint32_t k = 0; k < groups; k++) {
		uint64_t *c = b.idx + b.start[k], n = b.start[k + 1] - b.start[k];
		shuffle(c, n, &s);
		uint64_t na = (uint64_t)llround(fraction * (double)n);
		for (uint64_t j = 0; j < n; j++)
			mark[c[j]] = j < na ? 1 : 2;
	}
	const char *paths[2] = {out_a, out_b};
	int rc = write_marked(ds, mark, paths, 2, pr, err);
	mem_free(mark);
	by_class_release(&b);
	return rc;
}

int dataset_imbalance_plan(const struct dataset *ds, const struct dataset_imbalance *opt,
			   uint64_t *keep, struct error *err)
{
	uint32_t K = ds->shape.num_classes;
	if (ds->shape.label_kind != DATASET_LABEL_CLASS)
		return BAD("%s holds per-pixel masks: imbalance works on shards of class labels",
			   ds->path);
	if (!(opt->zipf_s >= 0 && opt->zipf_s <= 100))
		return BAD("zipf exponent %g: expected a number from 0 to 100", opt->zipf_s);
	uint64_t *counts = mem_calloc(K, sizeof(uint64_t));
	uint64_t *rank = mem_alloc(sizeof(uint64_t) * K);
	if (!counts || !rank) {
		mem_free(counts);
		mem_free(rank);
		return error_set(err, "%s: out of memory", ds->path);
	}
	dataset_histogram(ds, counts);
	uint64_t head = 0;
	for (uint32_t k = 0; k < K; k++)
		if (counts[k] > 0 && (head == 0 || counts[k] < head))
			head = counts[k];
	if (opt->head > 0)
		head = opt->head;
	/* rank[j] = the class with rank j+1: a seeded permutation, so which classes
	 * form the head does not depend on how the labels were numbered. */
	for (uint32_t k = 0; k < K; k++)
		rank[k] = k;
	uint64_t s = opt->seed;
	shuffle(rank, K, &s);
	for (uint32_t j = 0; j < K; j++) {
		/* Zipf's law: frequency of rank r proportional to r^-s. The 1e-9 keeps
		 * exact products (6000 * 2^-1) from flooring one below. */
		double q = floor((double)head * pow((double)(j + 1), -opt->zipf_s) + 1e-9);
		uint64_t n = (uint64_t)q;
		if (n < opt->min_keep)
			n = opt->min_keep;
		uint32_t k = (uint32_t)rank[j];
		keep[k] = n < counts[k] ? n : counts[k];
	}
	mem_free(counts);
	mem_free(rank);
	return 0;
}

int dataset_imbalance(const struct dataset *ds, const struct dataset_imbalance *opt,
		      const char *out_path, const struct dataset_progress *pr, struct error *err)
{
	uint32_t K = ds->shape.num_classes;
	uint64_t *keep = mem_alloc(sizeof(uint64_t) * K);
	uint8_t *mark = mem_calloc(ds->count ? ds->count : 1, 1);
	struct by_class b = {0};
	int rc = -1;
	if (!keep || !mark) {
		error_set(err, "%s: out of memory", ds->path);
		goto out;
	}
	if ((rc = dataset_imbalance_plan(ds, opt, keep, err)) < 0 ||
	    (rc = by_class_build(ds, &b, err)) < 0)
		goto out;
	rc = -1;
	/* A seed stream apart from the ranking's, so the two choices do not correlate. */
	uint64_t s = opt->seed ^ 0x5bd1e9955bd1e995ull;
	for (uint32_t k = 0; k < K; k++) {
		uint64_t *c = b.idx + b.start[k], n = b.start[k + 1] - b.start[k];
		shuffle(c, n, &s);
		for (uint64_t j = 0; j < keep[k]; j++)
			mark[c[j]] = 1;
	}
	rc = write_marked(ds, mark, &out_path, 1, pr, err);
out:
	by_class_release(&b);
	mem_free(keep);
	mem_free(mark);
	return rc;
}

int dataset_merge(const char *const *inputs, int n, const char *out_path,
		  const struct dataset_progress *pr, struct error *err)
{
	if (n < 1)
		return BAD("merge: no input shards");
	struct dataset_shape shape = {0, 0, 0, 0, DATASET_LABEL_CLASS};
	uint64_t total = 0;
	int rc;
	/* First pass: check every input, its data checksum too (a corrupt record
	 * must not come out under a fresh, valid checksum), and agree on the shape. */
	for (int i = 0; i < n; i++) {
		struct dataset ds;
		if ((rc = dataset_open(&ds, inputs[i], DATASET_VERIFY, err)) < 0)
			return rc;
		struct dataset_shape got = ds.shape;
		total += ds.count;
		dataset_close(&ds);
		if (i == 0)
			shape = got;
		if (got.channels != shape.channels || got.height != shape.height ||
		    got.width != shape.width)
			return BAD("%s: shape %" PRIu32 "x%" PRIu32 "x%" PRIu32
				   ", but %s has %" PRIu32 "x%" PRIu32 "x%" PRIu32,
				   inputs[i], got.channels, got.height, got.width, inputs[0],
				   shape.channels, shape.height, shape.width);
		if (got.label_kind != shape.label_kind)
			return BAD(
			    "%s holds %s, but %s holds %s: merge shards of one kind", inputs[i],
			    got.label_kind == DATASET_LABEL_MASK ? "masks" : "class labels",
			    inputs[0],
			    shape.label_kind == DATASET_LABEL_MASK ? "masks" : "class labels");
		if (got.num_classes > shape.num_classes)
			shape.num_classes = got.num_classes;
	}
	struct dataset_writer w;
	if (dataset_writer_open(&w, out_path, &shape, err) < 0)
		return -1;
	uint64_t done = 0;
	for (int i = 0; i < n; i++) {
		struct dataset ds;
		if ((rc = dataset_open(&ds, inputs[i], 0, err)) < 0) {
			dataset_writer_abort(&w);
			return rc;
		}
		for (uint64_t r = 0; r < ds.count; r++) {
			if (writer_copy(&w, &ds, r, err) < 0) {
				dataset_close(&ds);
				dataset_writer_abort(&w);
				return -1;
			}
			report(pr, ++done, total);
		}
		dataset_close(&ds);
	}
	return dataset_writer_finish(&w, err);
}

static int by_count_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

void dataset_zipf_fit(const uint64_t *counts, uint32_t num_classes, double *s)
{
	*s = 0;
	uint64_t *c = mem_alloc(sizeof(uint64_t) * (num_classes ? num_classes : 1));
	if (!c)
		return;
	uint32_t m = 0;
	for (uint32_t k = 0; k < num_classes; k++)
		if (counts[k] > 0)
			c[m++] = counts[k];
	if (m >= 2) {
		qsort(c, m, sizeof(uint64_t), by_count_desc);
		/* ordinary least squares of y = log count on x = log rank; s = -slope */
		double sx = 0, sy = 0, sxx = 0, sxy = 0;
		for (uint32_t r = 0; r < m; r++) {
			double x = log((double)(r + 1)), y = log((double)c[r]);
			sx += x, sy += y, sxx += x * x, sxy += x * y;
		}
		double den = m * sxx - sx * sx;
		*s = den > 0 ? (sx * sy - m * sxy) / den : 0;
		if (fabs(*s) < 1e-9)
			*s = 0; /* equal counts: rounding noise, not a tail */
	}
	mem_free(c);
}
