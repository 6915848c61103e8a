#include "geo/cog.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cpl_conv.h>
#include <cpl_string.h>
#include <gdal.h>
#include <gdal_utils.h>
#include <ogr_srs_api.h>

#include "core/clock.h"
#include "core/cpus.h"
#include "core/fs.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "geo/fetch.h"
#include "geo/manifest.h"
#include "geo/raster.h"

/* The most a source's extent may reach in EPSG:3857, in metres: 100 worlds. */
#define COG_EXTENT_MAX (100 * TILE_ORIGIN)

/* The source's extent in EPSG:3857, its edges densified (21 points a side)
 * so a curved edge in mercator is covered. */
static int source_extent(GDALDatasetH ds, struct bbox *m, struct error *err)
{
	double gt[6];
	const OGRSpatialReferenceH s0 = GDALGetSpatialRef(ds);
	if (GDALGetGeoTransform(ds, gt) != CE_None || !s0)
		return error_set(err, "no georeferencing (a geotransform and a CRS); georeference it "
				      "first, e.g. gdal_translate -a_srs EPSG:4326 -a_ullr WEST NORTH "
				      "EAST SOUTH in.tif out.tif");
	int w = GDALGetRasterXSize(ds), h = GDALGetRasterYSize(ds);
	double xs[4] = {gt[0], gt[0] + w * gt[1] + h * gt[2]}, ys[4] = {gt[3], gt[3] + w * gt[4] + h * gt[5]};
	double x0 = xs[0] < xs[1] ? xs[0] : xs[1], x1 = xs[0] < xs[1] ? xs[1] : xs[0];
	double y0 = ys[0] < ys[1] ? ys[0] : ys[1], y1 = ys[0] < ys[1] ? ys[1] : ys[0];
	OGRSpatialReferenceH src = OSRClone(s0), dst = OSRNewSpatialReference(NULL);
	int rc = 0;
	if (!src || !dst || OSRImportFromEPSG(dst, 3857) != OGRERR_NONE) {
		rc = error_set(err, "cannot set up EPSG:3857");
		goto out;
	}
	OSRSetAxisMappingStrategy(src, OAMS_TRADITIONAL_GIS_ORDER);
	OSRSetAxisMappingStrategy(dst, OAMS_TRADITIONAL_GIS_ORDER);
	OGRCoordinateTransformationH ct = OCTNewCoordinateTransformation(src, dst);
	if (!ct || !OCTTransformBounds(ct, x0, y0, x1, y1, &m->w, &m->s, &m->e, &m->n, 21))
		rc = error_set(err, "cannot transform the source's extent to EPSG:3857");
	/* A world in EPSG:4326 reaches 12 worlds north and south in mercator;
	 * corners 1e300 m out (a damaged geotransform) kept GDAL's warp busy
	 * for minutes on the first tile */
	else if (!(fabs(m->w) < COG_EXTENT_MAX && fabs(m->e) < COG_EXTENT_MAX &&
		   fabs(m->s) < COG_EXTENT_MAX && fabs(m->n) < COG_EXTENT_MAX))
		rc = error_set(err,
			       "its extent in EPSG:3857 is %g, %g to %g, %g: far outside the world "
			       "(+-%.0f m); its geotransform or CRS is wrong (gdalinfo shows them)",
			       m->w, m->s, m->e, m->n, TILE_ORIGIN);
	if (ct)
		OCTDestroyCoordinateTransformation(ct);
out:
	if (src)
		OSRDestroySpatialReference(src);
	if (dst)
		OSRDestroySpatialReference(dst);
	return rc;
}

/* A tile warped from a source without overviews reads every source pixel
 * under it: a 100000 x 100000 source at zoom 3 read 12500 x 12500 pixels a
 * tile, 4.7 GB. At most COG_READ_MAX pixels a side, or overviews. */
#define COG_READ_MAX 4096
static int check_read_size(GDALDatasetH ds, const struct bbox *m, int zoom, struct error *err)
{
	int w = GDALGetRasterXSize(ds), h = GDALGetRasterYSize(ds);
	GDALRasterBandH b = GDALGetRasterCount(ds) > 0 ? GDALGetRasterBand(ds, 1) : NULL;
	if (w <= 0 || h <= 0 || !b)
		return 0;
	/* its pixels under one tile, at most all of them */
	double px = (m->e - m->w) / w, py = (m->n - m->s) / h, tile = 2 * TILE_ORIGIN / ldexp(1, zoom);
	if (!(px > 0 && py > 0))
		return 0;
	double nx = fmin(tile / px, w), ny = fmin(tile / py, h);
	if (nx * ny <= (double)COG_READ_MAX * COG_READ_MAX || GDALGetOverviewCount(b) > 0)
		return 0;
	int z = zoom;
	while (z < 30 && 2 * TILE_ORIGIN / ldexp(1, z) / fmin(px, py) > COG_READ_MAX)
		z++;
	return error_set(err,
			 "a tile of zoom %d covers about %.0f x %.0f of its pixels, and it has no "
			 "overviews to read instead (each tile would read them all): add them "
			 "(gdaladdo SRC), or ask zoom %d or more",
			 zoom, nx, ny, z);
}

/* Open the source (src: the path, or /vsicurl/URL) without GDAL printing;
 * NULL and "SRC: cannot open: REASON" in err when it fails. */
static GDALDatasetH open_source(const char *src, const char *name, struct error *err)
{
	return raster_open_quiet(src, GDAL_OF_RASTER | GDAL_OF_READONLY, name, NULL, err);
}

/* Warp the source onto one tile's grid in memory. */
static GDALDatasetH warp_tile(GDALDatasetH src, const struct tile *t, const char *resampling,
			      struct error *err)
{
	struct bbox b;
	tile_bounds(t, &b);
	char te[4][40];
	snprintf(te[0], sizeof(te[0]), "%.10f", b.w);
	snprintf(te[1], sizeof(te[1]), "%.10f", b.s);
	snprintf(te[2], sizeof(te[2]), "%.10f", b.e);
	snprintf(te[3], sizeof(te[3]), "%.10f", b.n);
	char *argv[] = {"-t_srs", "EPSG:3857", "-te", te[0], te[1], te[2], te[3], "-ts", "256", "256",
			"-r", (char *)resampling, "-of", "MEM", "-q", NULL};
	GDALWarpAppOptions *wo = GDALWarpAppOptionsNew(argv, NULL);
	if (!wo) {
		error_set(err, "bad warp options (resampling '%s'?)", resampling);
		return NULL;
	}
	int usage = 0;
	GDALDatasetH out = GDALWarp("", NULL, 1, &src, wo, &usage);
	GDALWarpAppOptionsFree(wo);
	if (!out)
		error_set(err, "tile %d/%u/%u: warp failed: %s", t->z, t->x, t->y, CPLGetLastErrorMsg());
	return out;
}

/* Any pixel of any band not 0 / not nodata? */
static int has_data(GDALDatasetH ds, struct error *err)
{
	int nb = GDALGetRasterCount(ds);
	double *buf = mem_alloc(256 * 256 * sizeof(double));
	if (!buf)
		return error_set(err, "out of memory");
	int any = 0;
	for (int b = 1; b <= nb && !any; b++) {
		GDALRasterBandH band = GDALGetRasterBand(ds, b);
		int has_nd = 0;
		double nd = GDALGetRasterNoDataValue(band, &has_nd);
		if (GDALRasterIO(band, GF_Read, 0, 0, 256, 256, buf, 256, 256, GDT_Float64, 0, 0) != CE_None) {
			mem_free(buf);
			return error_set(err, "reading a warped tile: %s", CPLGetLastErrorMsg());
		}
		for (int i = 0; i < 256 * 256 && !any; i++)
			any = buf[i] != 0 && !(has_nd && buf[i] == nd);
	}
	mem_free(buf);
	return any;
}

static int write_copy(GDALDatasetH mem, const char *path, const char *ext, struct error *err)
{
	int png = strcmp(ext, "png") == 0;
	GDALDriverH drv = GDALGetDriverByName(png ? "PNG" : "GTiff");
	char tmp[PATH_MAX];
	if (fs_tmp_name(path, tmp, sizeof(tmp), err) < 0)
		return -1;
	char *opts_tif[] = {"COMPRESS=DEFLATE", NULL};
	GDALDatasetH d = drv ? GDALCreateCopy(drv, tmp, mem, FALSE, png ? NULL : opts_tif, NULL, NULL)
			     : NULL;
	if (!d) {
		unlink(tmp);
		return error_set(err, "%s: cannot write: %s", path, CPLGetLastErrorMsg());
	}
	GDALClose(d);
	return fs_commit_tmp(tmp, path, 0, err);
}

/* One run: tiles are handed out by index to threads that each read the
 * source through their own dataset handle (GDAL handles are not shared
 * between threads); the manifest and its journal are shared, under mu. */
struct cog_run {
	const struct cog_opts *o;
	const char *src, *ext, *resampling;
	struct tile_range range;
	uint64_t next, end;
	struct manifest man;
	FILE *journal;
	struct cog_stats *st;
	pthread_mutex_t mu;
	int failed;       /* the first error stops every thread */
	struct error err; /* that error */
};

static void cog_fail(struct cog_run *c, const struct error *e)
{
	pthread_mutex_lock(&c->mu);
	if (!c->failed) {
		c->failed = 1;
		c->err = *e;
	}
	pthread_mutex_unlock(&c->mu);
}

/* Record a tile (mu held). */
static void cog_record(struct cog_run *c, const char *rel, uint64_t bytes, const char *sha)
{
	if (sha) {
		manifest_put(&c->man, rel, bytes, sha, M_OK);
		fprintf(c->journal, "%s\t%llu\t%s\tok\n", rel, (unsigned long long)bytes, sha);
		c->st->written++;
	} else {
		manifest_put(&c->man, rel, 0, NULL, M_MISSING);
		fprintf(c->journal, "%s\t0\t-\tmissing\n", rel);
		c->st->empty++;
	}
	fflush(c->journal);
}

static int cog_tile(struct cog_run *c, GDALDatasetH ds, uint64_t i, struct error *err)
{
	const struct cog_opts *o = c->o;
	struct tile t;
	tile_range_nth(&c->range, i, &t);
	char rel[256], dir[4400], path[4700];
	snprintf(rel, sizeof(rel), "%d/%u/%u.%s", t.z, t.x, t.y, c->ext);
	snprintf(dir, sizeof(dir), "%s/%d/%u", o->out_dir, t.z, t.x);
	snprintf(path, sizeof(path), "%s/%u.%s", dir, t.y, c->ext);
	pthread_mutex_lock(&c->mu);
	struct mentry *e = manifest_get(&c->man, rel), old = {0};
	if (e)
		old = *e;
	if (e && e->status == M_MISSING)
		c->st->empty++;
	pthread_mutex_unlock(&c->mu);
	if (e && old.status == M_MISSING)
		return 0;
	if (e && old.status == M_OK) {
		char sha[SHA256_HEX_LEN + 1];
		uint64_t bytes;
		struct error e2;
		if (sha256_file(path, sha, &bytes, &e2) == 0 && bytes == old.bytes &&
		    strcmp(sha, old.sha) == 0) {
			pthread_mutex_lock(&c->mu);
			c->st->cached++;
			pthread_mutex_unlock(&c->mu);
			return 0;
		}
	}
	GDALDatasetH mem = warp_tile(ds, &t, c->resampling, err);
	if (!mem)
		return -1;
	int rc = 0, any = has_data(mem, err);
	char sha[SHA256_HEX_LEN + 1];
	uint64_t bytes = 0;
	if (any < 0 || (any && (fs_mkdir_p(dir, err) < 0 || write_copy(mem, path, c->ext, err) < 0 ||
				 sha256_file(path, sha, &bytes, err) < 0)))
		rc = -1;
	GDALClose(mem);
	if (rc == 0) {
		pthread_mutex_lock(&c->mu);
		cog_record(c, rel, bytes, any ? sha : NULL);
		pthread_mutex_unlock(&c->mu);
	}
	return rc;
}

static void *cog_worker(void *arg)
{
	struct cog_run *c = arg;
	struct error err;
	GDALDatasetH ds = open_source(c->src, c->o->src, &err);
	if (!ds) {
		cog_fail(c, &err);
		return NULL;
	}
	for (;;) {
		pthread_mutex_lock(&c->mu);
		uint64_t i = c->next++;
		int stop = c->failed || i >= c->end;
		pthread_mutex_unlock(&c->mu);
		if (stop)
			break;
		if (cog_tile(c, ds, i, &err) < 0) {
			cog_fail(c, &err);
			break;
		}
	}
	GDALClose(ds);
	return NULL;
}

int cog_run(const struct cog_opts *o, struct cog_stats *st, struct error *err)
{
	memset(st, 0, sizeof(*st));
	double t0 = clock_now();
	raster_init();
	/* Range reads through /vsicurl/: no folder listing, a block cache. */
	CPLSetConfigOption("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR");
	CPLSetConfigOption("VSI_CACHE", "TRUE");
	const char *ext = o->ext ? o->ext : "tif";
	if (strcmp(ext, "tif") != 0 && strcmp(ext, "png") != 0)
	{
		error_set(err, "--ext %s: the COG source writes tif or png", ext);
		return COG_EBADINPUT;
	}
	char src[4200];
	int url = strncmp(o->src, "http://", 7) == 0 || strncmp(o->src, "https://", 8) == 0;
	snprintf(src, sizeof(src), "%s%s", url ? "/vsicurl/" : "", o->src);
	GDALDatasetH ds = open_source(src, o->src, err);
	if (!ds)
		return COG_EBADINPUT;
	/* Every tile is warped from the source's georeferencing, so it is needed
	 * with --bbox too. */
	struct bbox m;
	if (source_extent(ds, &m, err) < 0) {
		error_prefix(err, "%s: ", o->src);
		GDALClose(ds);
		return COG_EBADINPUT;
	}
	if (check_read_size(ds, &m, o->zoom, err) < 0) {
		error_prefix(err, "%s: ", o->src);
		GDALClose(ds);
		return COG_EBADINPUT;
	}
	struct cog_run c;
	memset(&c, 0, sizeof(c));
	c.o = o;
	c.src = src;
	c.ext = ext;
	c.resampling = o->resampling ? o->resampling : "bilinear";
	c.st = st;
	int rc = 0;
	if (o->have_bbox)
		rc = tile_range_from_bbox(&o->bbox, o->zoom, &c.range, err);
	else
		rc = tile_range_from_merc(&m, o->zoom, &c.range, err);
	GDALClose(ds); /* each thread opens its own */
	if (rc < 0)
		goto out;
	tile_shard(tile_range_count(&c.range), o->shard_i, o->shard_n > 0 ? o->shard_n : 1, &c.next,
		   &c.end);
	st->total = c.end - c.next;
	if (tile_check_run_size(st->total, err) < 0) {
		rc = COG_EBADINPUT;
		goto out;
	}
	char mname[64];
	fetch_manifest_name(o->shard_i, o->shard_n, mname, sizeof(mname));
	snprintf(st->manifest, sizeof(st->manifest), "%s/%s", o->out_dir, mname);
	if (fs_mkdir_p(o->out_dir, err) < 0) {
		rc = -1;
		goto out;
	}
	rc = manifest_load(&c.man, st->manifest, err);
	if (rc < 0) {
		rc = rc == MANIFEST_EBADINPUT ? COG_EBADINPUT : -1;
		goto out;
	}
	/* The source as recorded: a local path made absolute, so the same file
	 * named from another folder is the same source, and the resampling,
	 * which makes other pixels of it. */
	char path[PATH_MAX], srcid[PATH_MAX + 64], note[PATH_MAX + 2300];
	if (url || !realpath(o->src, path))
		snprintf(path, sizeof(path), "%s", o->src);
	snprintf(srcid, sizeof(srcid), "%s (resampling %s)", path, c.resampling);
	rc = fetch_manifest_source(&c.man, st->manifest, o->out_dir, srcid, o->refetch, note,
				   sizeof(note), err);
	if (rc == FETCH_EBADINPUT)
		rc = COG_EBADINPUT;
	if (rc < 0)
		goto out;
	if (note[0] && o->on_note)
		o->on_note(o->ctx, note);
	c.journal = fopen(st->manifest, "a");
	if (!c.journal) {
		rc = error_errno(err, "%s: cannot open for appending", st->manifest);
		goto out;
	}
	int nthreads = o->threads;
	if (nthreads <= 0) {
		int n = cpus_default_threads();
		nthreads = n > 8 ? 8 : n;
	}
	if ((uint64_t)nthreads > st->total)
		nthreads = st->total ? (int)st->total : 1;
	pthread_t tid[64];
	if (nthreads > 64)
		nthreads = 64;
	pthread_mutex_init(&c.mu, NULL);
	int started = 0;
	for (; started < nthreads; started++)
		if (pthread_create(&tid[started], NULL, cog_worker, &c) != 0)
			break;
	if (started == 0)
		cog_worker(&c); /* no thread to be had: this one does it all */
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	pthread_mutex_destroy(&c.mu);
	if (c.failed) {
		*err = c.err;
		rc = -1;
	}
	if (rc == 0)
		rc = manifest_write(&c.man, st->manifest, err);
out:
	if (c.journal)
		fclose(c.journal);
	manifest_release(&c.man);
	st->seconds = clock_now() - t0;
	return rc;
}
