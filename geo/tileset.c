#include "geo/tileset.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cpl_error.h>
#include <gdal.h>

#include "core/fs.h"
#include "core/mem.h"
#include "geo/raster.h"
#include "geo/tile.h"
#include "geo/tiledir.h"

#define BAD(...) (error_set(err, __VA_ARGS__), TILESET_EBADINPUT)

void tileset_pack_opts_init(struct tileset_pack_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->zoom = -1;
	o->num_classes = 3;
	o->missing = TILESET_MISSING_ERROR;
	o->shard_i = 0;
	o->shard_n = 1;
	o->threads = 1;
}

static void report(const struct dataset_progress *pr, uint64_t done, uint64_t total)
{
	if (pr && pr->fn && (done % 64 == 0 || done == total))
		pr->fn(pr->ctx, done, total);
}

/* (x, y) order: the order of the DIR/Z/X/Y folders. */
static int cmp_xy(const void *a, const void *b)
{
	const struct tile *p = a, *q = b;
	if (p->x != q->x)
		return p->x < q->x ? -1 : 1;
	return p->y < q->y ? -1 : p->y > q->y;
}

/* What a raster is, as far as a shard cares. type is GDT_Unknown when the
 * bands have different types. */
struct desc {
	int w, h, bands;
	GDALDataType type;
};

static void desc_str(const struct desc *d, char *buf, size_t size)
{
	snprintf(buf, size, "%dx%d, %d band%s of %s", d->w, d->h, d->bands,
		 d->bands == 1 ? "" : "s",
		 d->type == GDT_Unknown ? "mixed types" : GDALGetDataTypeName(d->type));
}

static int desc_eq(const struct desc *a, const struct desc *b)
{
	return a->w == b->w && a->h == b->h && a->bands == b->bands && a->type == b->type;
}

/* Open a tile read-only and describe it; NULL (bad input, err says why:
 * missing, empty, not a raster) or the dataset to close. */
static GDALDatasetH tile_open(const char *path, struct desc *d, struct error *err)
{
	GDALDatasetH ds =
	    raster_open_quiet(path, GDAL_OF_RASTER | GDAL_OF_READONLY, path, NULL, err);
	if (!ds)
		return NULL;
	d->w = GDALGetRasterXSize(ds);
	d->h = GDALGetRasterYSize(ds);
	d->bands = GDALGetRasterCount(ds);
	d->type = GDT_Unknown;
	for (int b = 1; b <= d->bands; b++) {
		GDALDataType t = GDALGetRasterDataType(GDALGetRasterBand(ds, b));
		if (b == 1)
			d->type = t;
		else if (t != d->type)
			d->type = GDT_Unknown;
	}
	return ds;
}

/* The first error GDAL reports while a tile is read: the cause ("Read
 * error at scanline 40"), where the last is GDAL's summary ("IReadBlock
 * failed"). Warnings are not errors. GDAL's handler stack is per thread. */
struct first_error {
	int count;
	char msg[256];
};

static void on_gdal_error(CPLErr cls, CPLErrorNum num, const char *msg)
{
	(void)num;
	struct first_error *f = CPLGetErrorHandlerUserData();
	if (!f || (cls != CE_Failure && cls != CE_Fatal))
		return;
	if (f->count++ == 0) {
		snprintf(f->msg, sizeof(f->msg), "%s", msg);
		size_t n = strlen(f->msg);
		while (n && (f->msg[n - 1] == '\n' || f->msg[n - 1] == ' '))
			f->msg[--n] = '\0';
	}
}

/* Every band of an open tile described by d, band after band (CHW), as
 * Byte. A decoding error (a truncated or corrupt file whose header still
 * opened) is bad input naming the file. */
static int tile_read(GDALDatasetH ds, const char *path, const struct desc *d, uint8_t *buf,
		     struct error *err)
{
	struct first_error fe = {0, ""};
	CPLPushErrorHandlerEx(on_gdal_error, &fe);
	CPLErr e = GDALDatasetRasterIO(ds, GF_Read, 0, 0, d->w, d->h, buf, d->w, d->h, GDT_Byte,
				       d->bands, NULL, 0, 0, 0);
	CPLPopErrorHandler();
	if (e != CE_None || fe.count)
		return BAD("%s: cannot read its pixels (corrupt or truncated?): %s", path,
			   fe.count ? fe.msg : "GDAL gave no reason");
	return 0;
}

/* The first tile of the listing: Byte, 1..4 bands, square, a size a shard holds. */
static int check_reference(const char *path, const struct desc *d, struct error *err)
{
	char what[128];
	desc_str(d, what, sizeof(what));
	if (d->type != GDT_Byte)
		return BAD("%s: %s: imagery must be Byte (uint8) in every band", path, what);
	if (d->bands < 1 || d->bands > (int)DATASET_MAX_CHANNELS)
		return BAD("%s: %s: imagery must have 1 to %u bands", path, what,
			   DATASET_MAX_CHANNELS);
	if (d->w != d->h || d->w < 1 || d->w > 65535)
		return BAD("%s: %s: an XYZ tile is square, at most 65535 pixels a side", path,
			   what);
	return 0;
}

/* Read one label tile into mask (h x w of the imagery) and check its values. */
static int read_label(const char *path, const char *img_path, const struct desc *img,
		      uint32_t num_classes, uint8_t *mask, struct error *err)
{
	struct desc d;
	GDALDatasetH ds = tile_open(path, &d, err);
	if (!ds)
		return TILESET_EBADINPUT;
	int rc = 0;
	if (d.bands != 1 || d.type != GDT_Byte || d.w != img->w || d.h != img->h) {
		char got[128];
		desc_str(&d, got, sizeof(got));
		rc = BAD("%s: %s; a label tile is 1 band of Byte, %dx%d like its imagery %s", path,
			 got, img->w, img->h, img_path);
	}
	if (rc == 0)
		rc = tile_read(ds, path, &d, mask, err);
	GDALClose(ds);
	if (rc < 0)
		return rc;
	size_t n = (size_t)d.w * (size_t)d.h;
	for (size_t j = 0; j < n; j++)
		if (mask[j] >= num_classes && mask[j] != DATASET_MASK_IGNORE)
			return BAD(
			    "%s: value %d at pixel (col %zu, row %zu) is no class 0..%" PRIu32
			    " (%" PRIu32 " classes) nor %u (no label)",
			    path, mask[j], j % (size_t)d.w, j / (size_t)d.w, num_classes - 1,
			    num_classes, DATASET_MASK_IGNORE);
	return 0;
}

static int tile_path(char *buf, size_t size, const char *dir, const struct tile *t,
		     struct error *err)
{
	if (snprintf(buf, size, "%s/%d/%" PRIu32 "/%" PRIu32 ".tif", dir, t->z, t->x, t->y) >=
	    (int)size)
		return BAD("%s: path too long", dir);
	return 0;
}

/* What every tile of a pack shares. */
struct pack_ctx {
	const struct tileset_pack_opts *o;
	struct desc ref;
	char first[4400]; /* the tile ref was read from */
	size_t plane;
};

/* One tile decoded: pixels, mask, and whether its label tile was missing;
 * or the error of that tile. */
struct slot {
	struct tile t;
	uint8_t *pix, *mask;
	int rc, missing;
	struct error err;
};

static int decode(const struct pack_ctx *c, struct slot *s)
{
	const struct tileset_pack_opts *o = c->o;
	struct error *err = &s->err;
	char ipath[4400], lpath[4400];
	struct desc d;
	int rc;
	s->missing = 0;
	if ((rc = tile_path(ipath, sizeof(ipath), o->imagery, &s->t, err)) < 0)
		return rc;
	GDALDatasetH ds = tile_open(ipath, &d, err);
	if (!ds)
		return TILESET_EBADINPUT;
	if (!desc_eq(&d, &c->ref)) {
		char got[128], want[128];
		desc_str(&d, got, sizeof(got));
		desc_str(&c->ref, want, sizeof(want));
		rc = BAD("%s: %s, but the first tile %s is %s: all imagery tiles must match", ipath,
			 got, c->first, want);
	} else {
		rc = tile_read(ds, ipath, &d, s->pix, err);
	}
	GDALClose(ds);
	if (rc < 0)
		return rc;
	if (!o->labels) {
		memset(s->mask, DATASET_MASK_IGNORE, c->plane);
		return 0;
	}
	if ((rc = tile_path(lpath, sizeof(lpath), o->labels, &s->t, err)) < 0)
		return rc;
	if (fs_exists(lpath))
		return read_label(lpath, ipath, &c->ref, o->num_classes, s->mask, err);
	if (o->missing != TILESET_MISSING_IGNORE)
		return BAD("%s: missing: no label tile for %s; make labels for every imagery tile "
			   "(cairn-rasterize --like %s), or pack it unlabelled (--missing-labels "
			   "ignore: every pixel %u)",
			   lpath, ipath, o->imagery, DATASET_MASK_IGNORE);
	memset(s->mask, DATASET_MASK_IGNORE, c->plane);
	s->missing = 1;
	return 0;
}

/* A batch of slots decoded by several threads; written in order after. */
struct batch {
	const struct pack_ctx *c;
	struct slot *slots;
	size_t n;
	atomic_size_t next;
};

static void *decode_worker(void *arg)
{
	struct batch *b = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&b->next, 1);
		if (i >= b->n)
			break;
		b->slots[i].rc = decode(b->c, &b->slots[i]);
	}
	return NULL;
}

static void decode_batch(struct batch *b, int threads)
{
	pthread_t tid[TILESET_MAX_THREADS];
	int started = 0;
	atomic_store(&b->next, 0);
	for (int i = 1; i < threads && (size_t)i < b->n; i++)
		if (pthread_create(&tid[started], NULL, decode_worker, b) == 0)
			started++;
	decode_worker(b); /* this thread too; alone if no thread started */
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
}

int tileset_pack(const struct tileset_pack_opts *o, const char *out_path,
		 const struct dataset_progress *pr, struct tileset_stats *st, struct error *err)
{
	memset(st, 0, sizeof(*st));
	if (o->num_classes < 1 || o->num_classes > DATASET_MASK_MAX_CLASSES)
		return BAD("%" PRIu32 " classes: want 1..%u (mask value %u means no label)",
			   o->num_classes, DATASET_MASK_MAX_CLASSES, DATASET_MASK_IGNORE);
	if (o->shard_n < 1 || o->shard_i < 0 || o->shard_i >= o->shard_n)
		return BAD("shard %d/%d: want 0 <= I < N", o->shard_i, o->shard_n);
	if (o->threads < 1 || o->threads > TILESET_MAX_THREADS)
		return BAD("%d threads: want 1..%d", o->threads, TILESET_MAX_THREADS);
	raster_init();
	int z = o->zoom;
	struct tile *tiles = NULL;
	size_t n = 0;
	if (tiledir_list(o->imagery, "tif", &z, &tiles, &n, err) < 0)
		return TILESET_EBADINPUT;
	qsort(tiles, n, sizeof(*tiles), cmp_xy);
	st->zoom = z;
	st->listed = n;
	uint64_t mine =
	    n / (uint64_t)o->shard_n + ((uint64_t)o->shard_i < n % (uint64_t)o->shard_n);
	int rc = 0, opened = 0;
	struct dataset_writer w;
	struct slot *slots = NULL;
	size_t nslots = 0;
	struct pack_ctx *c = mem_calloc(1, sizeof(*c));
	if (!c) {
		rc = error_set(err, "out of memory");
		goto out;
	}
	c->o = o;
	if (mine > TILE_MAX_PER_RUN) {
		rc = BAD("%s/%d: %" PRIu64 " tiles in shard %d/%d, at most %llu in one: use "
			 "--shard I/N with a larger N",
			 o->imagery, z, mine, o->shard_i, o->shard_n, TILE_MAX_PER_RUN);
		goto out;
	}
	/* a folder name that is no XYZ tile (x or y >= 2^z) could get no key */
	for (size_t i = 0; i < n; i++)
		if (z > TILE_MAX_ZOOM || tiles[i].x >> z || tiles[i].y >> z) {
			rc = BAD("%s/%d/%" PRIu32 "/%" PRIu32 ".tif: %d/%" PRIu32 "/%" PRIu32
				 " is no XYZ tile (x and y are below 2^%d at zoom %d)",
				 o->imagery, z, tiles[i].x, tiles[i].y, z, tiles[i].x, tiles[i].y,
				 z, z);
			goto out;
		}
	if (o->labels) {
		char lz[4200];
		snprintf(lz, sizeof(lz), "%s/%d", o->labels, z);
		if (!fs_is_dir(lz)) {
			rc = BAD(
			    "%s: no zoom %d folder (%s) for the label tiles of %s/%d; labels go "
			    "in DIR/Z/X/Y.tif on the imagery's grid (cairn-rasterize --like)",
			    o->labels, z, lz, o->imagery, z);
			goto out;
		}
	}
	/* The reference shape, from the first tile of all shards. */
	if ((rc = tile_path(c->first, sizeof(c->first), o->imagery, &tiles[0], err)) < 0)
		goto out;
	GDALDatasetH ds = tile_open(c->first, &c->ref, err);
	if (!ds) {
		rc = TILESET_EBADINPUT;
		goto out;
	}
	GDALClose(ds);
	if ((rc = check_reference(c->first, &c->ref, err)) < 0)
		goto out;
	struct dataset_shape shape = {(uint32_t)c->ref.bands, (uint32_t)c->ref.h,
				      (uint32_t)c->ref.w, o->num_classes, DATASET_LABEL_MASK};
	st->shape = shape;
	c->plane = (size_t)c->ref.w * (size_t)c->ref.h;
	/* Slots for a batch: 16 per thread, at most 256 MB of tiles, at least
	 * one per thread. */
	size_t tile_bytes = c->plane * ((size_t)c->ref.bands + 1);
	nslots = o->batch > 0 ? (size_t)o->batch : (size_t)o->threads * 16;
	if (nslots * tile_bytes > ((size_t)256 << 20))
		nslots = ((size_t)256 << 20) / tile_bytes;
	if (nslots < (size_t)o->threads && o->batch <= 0)
		nslots = (size_t)o->threads;
	if (nslots > mine || nslots == 0) /* a tile over 256 MB: one at a time */
		nslots = mine ? (size_t)mine : 1;
	slots = mem_calloc(nslots, sizeof(*slots));
	if (!slots) {
		rc = error_set(err, "out of memory for %zu tiles of %dx%d", nslots, c->ref.w,
			       c->ref.h);
		nslots = 0;
		goto out;
	}
	for (size_t i = 0; i < nslots; i++) {
		slots[i].pix = mem_alloc(c->plane * (size_t)c->ref.bands);
		slots[i].mask = mem_alloc(c->plane);
		if (!slots[i].pix || !slots[i].mask) {
			rc = error_set(err, "out of memory for %zu tiles of %dx%d", nslots,
				       c->ref.w, c->ref.h);
			goto out;
		}
	}
	if ((rc = dataset_writer_open(&w, out_path, &shape, err)) < 0) {
		rc = rc == DATASET_EBADINPUT ? TILESET_EBADINPUT : -1;
		goto out;
	}
	opened = 1;
	/* Tiles k = shard_i, shard_i + shard_n, ...: decoded a batch at a time,
	 * written in order; the first failing tile in that order is reported,
	 * whatever the number of threads. */
	size_t k = (size_t)o->shard_i;
	while (k < n) {
		struct batch b = {c, slots, 0, 0};
		for (; b.n < nslots && k < n; k += (size_t)o->shard_n)
			slots[b.n++].t = tiles[k];
		decode_batch(&b, o->threads);
		for (size_t i = 0; i < b.n; i++) {
			struct slot *s = &slots[i];
			if (s->rc < 0) {
				rc = s->rc;
				*err = s->err;
				goto out;
			}
			struct dataset_key key = {(uint32_t)s->t.z, s->t.x, s->t.y};
			if (dataset_writer_add_mask(&w, s->pix, s->mask, &key, err) < 0) {
				rc = -1;
				goto out;
			}
			st->missing_labels += (uint64_t)s->missing;
			st->tiles++;
			report(pr, st->tiles, mine);
		}
	}
	report(pr, st->tiles, mine);
	opened = 0;
	if (dataset_writer_finish(&w, err) < 0)
		rc = -1;
out:
	if (opened)
		dataset_writer_abort(&w);
	for (size_t i = 0; i < nslots; i++) {
		mem_free(slots[i].pix);
		mem_free(slots[i].mask);
	}
	mem_free(slots);
	mem_free(c);
	mem_free(tiles);
	return rc;
}

/* A record's tile and its index, sorted to find two records of one tile. */
struct keyed {
	struct dataset_key k;
	uint64_t i;
};

static int cmp_keyed(const void *a, const void *b)
{
	const struct keyed *p = a, *q = b;
	if (p->k.z != q->k.z)
		return p->k.z < q->k.z ? -1 : 1;
	if (p->k.x != q->k.x)
		return p->k.x < q->k.x ? -1 : 1;
	if (p->k.y != q->k.y)
		return p->k.y < q->k.y ? -1 : 1;
	return p->i < q->i ? -1 : p->i > q->i;
}

/* Every record has a key, no two the same tile, each in like_dir if given. */
static int check_keys(const struct dataset *ds, const char *like_dir, struct error *err)
{
	struct keyed *ks = mem_alloc((ds->count ? ds->count : 1) * sizeof(*ks));
	if (!ks)
		return error_set(err, "%s: out of memory for %" PRIu64 " keys", ds->path,
				 ds->count);
	int rc = 0;
	for (uint64_t i = 0; i < ds->count && rc == 0; i++) {
		ks[i].k = dataset_key(ds, i);
		ks[i].i = i;
		if (ks[i].k.z == DATASET_KEY_NONE)
			rc = BAD("%s: record %" PRIu64
				 " has no tile key (z/x/y), so it has no place "
				 "on the map; unpack needs the keys cairn-tileset pack writes",
				 ds->path, i);
	}
	if (rc == 0)
		qsort(ks, ds->count, sizeof(*ks), cmp_keyed);
	for (uint64_t i = 1; i < ds->count && rc == 0; i++)
		if (ks[i].k.z == ks[i - 1].k.z && ks[i].k.x == ks[i - 1].k.x &&
		    ks[i].k.y == ks[i - 1].k.y)
			rc = BAD("%s: records %" PRIu64 " and %" PRIu64 " are both tile %" PRIu32
				 "/%" PRIu32 "/%" PRIu32,
				 ds->path, ks[i - 1].i, ks[i].i, ks[i].k.z, ks[i].k.x, ks[i].k.y);
	for (uint64_t i = 0; i < ds->count && rc == 0 && like_dir; i++) {
		struct tile t = {(int)ks[i].k.z, ks[i].k.x, ks[i].k.y};
		char path[4400];
		if ((rc = tile_path(path, sizeof(path), like_dir, &t, err)) < 0)
			break;
		if (!fs_exists(path))
			rc = BAD("%s: record %" PRIu64 " is tile %d/%" PRIu32 "/%" PRIu32
				 ", but %s does not exist: a shard of another scene?",
				 ds->path, ks[i].i, t.z, t.x, t.y, path);
	}
	mem_free(ks);
	return rc;
}

/* Records written by several threads; the failure of the lowest record wins. */
struct unpack_job {
	const struct dataset *ds;
	const char *out_dir;
	atomic_uint_least64_t next, done;
	atomic_int failed;
	pthread_mutex_t mu;
	uint64_t fail_at;
	int rc;
	struct error err;
	int zoom;
};

static int write_record(struct unpack_job *j, uint64_t i, struct error *err)
{
	struct dataset_key k = dataset_key(j->ds, i);
	struct tile t = {(int)k.z, k.x, k.y};
	char dir[4200], path[4400];
	if (snprintf(dir, sizeof(dir), "%s/%d/%" PRIu32, j->out_dir, t.z, t.x) >= (int)sizeof(dir))
		return BAD("%s: path too long", j->out_dir);
	snprintf(path, sizeof(path), "%s/%" PRIu32 ".tif", dir, t.y);
	if (fs_mkdir_p(dir, err) < 0 || raster_write_tile_sized(path, &t, (int)j->ds->shape.width,
								1, dataset_mask(j->ds, i), err) < 0)
		return -1;
	return 0;
}

static void *unpack_worker(void *arg)
{
	struct unpack_job *j = arg;
	struct error err;
	for (;;) {
		uint64_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->ds->count || atomic_load(&j->failed))
			break;
		int rc = write_record(j, i, &err);
		if (rc < 0) {
			pthread_mutex_lock(&j->mu);
			if (!atomic_load(&j->failed) || i < j->fail_at) {
				j->fail_at = i;
				j->rc = rc;
				j->err = err;
			}
			atomic_store(&j->failed, 1);
			pthread_mutex_unlock(&j->mu);
			break;
		}
		atomic_fetch_add(&j->done, 1);
	}
	return NULL;
}

/* Whether a and b are one folder (b may not exist yet). */
static int same_dir(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

int tileset_unpack(const char *shard_path, const char *out_dir, const char *like_dir, int threads,
		   const struct dataset_progress *pr, struct tileset_stats *st, struct error *err)
{
	memset(st, 0, sizeof(*st));
	st->zoom = -1;
	if (threads < 1 || threads > TILESET_MAX_THREADS)
		return BAD("%d threads: want 1..%d", threads, TILESET_MAX_THREADS);
	struct dataset ds;
	int rc = dataset_open(&ds, shard_path, DATASET_VERIFY, err);
	if (rc < 0)
		return rc == DATASET_EBADINPUT ? TILESET_EBADINPUT : -1;
	st->shape = ds.shape;
	st->listed = ds.count;
	if (ds.shape.label_kind != DATASET_LABEL_MASK)
		rc = BAD("%s: a shard of class labels (one per record), not of masks: no tiles "
			 "in it",
			 shard_path);
	else if (ds.shape.height != ds.shape.width)
		rc = BAD("%s: masks of %" PRIu32 "x%" PRIu32 " pixels; an XYZ tile is square",
			 shard_path, ds.shape.width, ds.shape.height);
	else if (like_dir && !fs_is_dir(like_dir))
		rc = BAD("--like %s: no such folder", like_dir);
	else if (like_dir && same_dir(like_dir, out_dir))
		rc = BAD("--out %s is the --like folder %s: its tiles would be replaced by "
			 "the masks; unpack into another folder",
			 out_dir, like_dir);
	if (rc == 0)
		rc = check_keys(&ds, like_dir, err);
	if (rc == 0 && fs_mkdir_p(out_dir, err) < 0)
		rc = -1;
	if (rc < 0) {
		dataset_close(&ds);
		return rc;
	}
	raster_init();
	static const struct unpack_job zero;
	struct unpack_job *j = mem_alloc(sizeof(*j));
	if (!j) {
		dataset_close(&ds);
		return error_set(err, "out of memory");
	}
	*j = zero;
	j->ds = &ds;
	j->out_dir = out_dir;
	pthread_mutex_init(&j->mu, NULL);
	pthread_t tid[TILESET_MAX_THREADS];
	int started = 0;
	/* threads writers, this thread reporting progress; or this thread alone */
	for (int i = 0; threads > 1 && i < threads && (uint64_t)i < ds.count; i++)
		if (pthread_create(&tid[started], NULL, unpack_worker, j) == 0)
			started++;
	if (!started) {
		for (uint64_t i = 0; i < ds.count; i++) {
			if ((j->rc = write_record(j, i, &j->err)) < 0) {
				atomic_store(&j->failed, 1);
				break;
			}
			atomic_store(&j->done, i + 1);
			report(pr, i + 1, ds.count);
		}
	} else {
		while (atomic_load(&j->done) < ds.count && !atomic_load(&j->failed)) {
			if (pr && pr->fn)
				pr->fn(pr->ctx, atomic_load(&j->done), ds.count);
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		for (int i = 0; i < started; i++)
			pthread_join(tid[i], NULL);
	}
	st->tiles = atomic_load(&j->done);
	if (atomic_load(&j->failed)) {
		rc = j->rc;
		*err = j->err;
	} else {
		if (ds.count)
			st->zoom = (int)dataset_key(&ds, ds.count - 1).z;
		report(pr, st->tiles, ds.count);
	}
	pthread_mutex_destroy(&j->mu);
	mem_free(j);
	dataset_close(&ds);
	return rc;
}
