#include "geo/cog.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cpl_conv.h>
#include <cpl_string.h>
#include <gdal.h>
#include <gdal_utils.h>
#include <ogr_srs_api.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "geo/fetch.h"
#include "geo/manifest.h"
#include "geo/raster.h"

/* The source's extent in EPSG:3857, its edges densified (21 points a side)
 * so a curved edge in mercator is covered. */
static int source_extent(GDALDatasetH ds, struct bbox *m, struct error *err)
{
	double gt[6];
	const OGRSpatialReferenceH s0 = GDALGetSpatialRef(ds);
	if (GDALGetGeoTransform(ds, gt) != CE_None || !s0)
		return error_set(err, "source has no georeferencing; give --bbox and a CRS");
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
	if (ct)
		OCTDestroyCoordinateTransformation(ct);
out:
	if (src)
		OSRDestroySpatialReference(src);
	if (dst)
		OSRDestroySpatialReference(dst);
	return rc;
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
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return error_set(err, "%s: path too long", path);
	char *opts_tif[] = {"COMPRESS=DEFLATE", NULL};
	GDALDatasetH d = drv ? GDALCreateCopy(drv, tmp, mem, FALSE, png ? NULL : opts_tif, NULL, NULL)
			     : NULL;
	if (!d) {
		unlink(tmp);
		return error_set(err, "%s: cannot write: %s", path, CPLGetLastErrorMsg());
	}
	GDALClose(d);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return error_errno(err, "rename %s to %s", tmp, path);
	}
	return 0;
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
		return error_set(err, "--ext %s: the COG source writes tif or png", ext);
	char src[4200];
	int url = strncmp(o->src, "http://", 7) == 0 || strncmp(o->src, "https://", 8) == 0;
	snprintf(src, sizeof(src), "%s%s", url ? "/vsicurl/" : "", o->src);
	GDALDatasetH ds = GDALOpenEx(src, GDAL_OF_RASTER | GDAL_OF_READONLY, NULL, NULL, NULL);
	if (!ds)
		return error_set(err, "%s: cannot open: %s", o->src, CPLGetLastErrorMsg());
	struct tile_range range;
	struct manifest man = {0};
	FILE *journal = NULL;
	int rc = 0;
	if (o->have_bbox) {
		rc = tile_range_from_bbox(&o->bbox, o->zoom, &range, err);
	} else {
		struct bbox m;
		rc = source_extent(ds, &m, err);
		if (rc == 0)
			rc = tile_range_from_merc(&m, o->zoom, &range, err);
	}
	if (rc < 0)
		goto out;
	uint64_t begin, end;
	tile_shard(tile_range_count(&range), o->shard_i, o->shard_n > 0 ? o->shard_n : 1, &begin, &end);
	st->total = end - begin;
	char mname[64];
	fetch_manifest_name(o->shard_i, o->shard_n, mname, sizeof(mname));
	snprintf(st->manifest, sizeof(st->manifest), "%s/%s", o->out_dir, mname);
	if (fs_mkdir_p(o->out_dir, err) < 0 || manifest_load(&man, st->manifest, err) < 0) {
		rc = -1;
		goto out;
	}
	journal = fopen(st->manifest, "a");
	if (!journal) {
		rc = error_errno(err, "%s: cannot open for appending", st->manifest);
		goto out;
	}
	for (uint64_t i = begin; i < end && rc == 0; i++) {
		struct tile t;
		tile_range_nth(&range, i, &t);
		char rel[256], dir[4400], path[4700];
		snprintf(rel, sizeof(rel), "%d/%u/%u.%s", t.z, t.x, t.y, ext);
		snprintf(dir, sizeof(dir), "%s/%d/%u", o->out_dir, t.z, t.x);
		snprintf(path, sizeof(path), "%s/%u.%s", dir, t.y, ext);
		struct mentry *e = manifest_get(&man, rel);
		if (e && e->status == M_MISSING) {
			st->empty++;
			continue;
		}
		if (e && e->status == M_OK) {
			char sha[SHA256_HEX_LEN + 1];
			uint64_t bytes;
			struct error e2;
			if (sha256_file(path, sha, &bytes, &e2) == 0 && bytes == e->bytes &&
			    strcmp(sha, e->sha) == 0) {
				st->cached++;
				continue;
			}
		}
		GDALDatasetH mem = warp_tile(ds, &t, o->resampling ? o->resampling : "bilinear", err);
		if (!mem) {
			rc = -1;
			break;
		}
		int any = has_data(mem, err);
		if (any < 0) {
			rc = -1;
		} else if (!any) {
			st->empty++;
			manifest_put(&man, rel, 0, NULL, M_MISSING);
			fprintf(journal, "%s\t0\t-\tmissing\n", rel);
		} else if (fs_mkdir_p(dir, err) < 0 || write_copy(mem, path, ext, err) < 0) {
			rc = -1;
		} else {
			char sha[SHA256_HEX_LEN + 1];
			uint64_t bytes;
			if (sha256_file(path, sha, &bytes, err) < 0) {
				rc = -1;
			} else {
				manifest_put(&man, rel, bytes, sha, M_OK);
				fprintf(journal, "%s\t%llu\t%s\tok\n", rel, (unsigned long long)bytes, sha);
				st->written++;
			}
		}
		fflush(journal);
		GDALClose(mem);
	}
	if (rc == 0)
		rc = manifest_write(&man, st->manifest, err);
out:
	if (journal)
		fclose(journal);
	manifest_release(&man);
	GDALClose(ds);
	st->seconds = clock_now() - t0;
	return rc;
}
