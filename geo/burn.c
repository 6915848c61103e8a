#include "geo/burn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cpl_conv.h>
#include <cpl_error.h>
#include <gdal.h>
#include <gdal_alg.h>
#include <ogr_srs_api.h>

#include "core/mem.h"
#include "geo/raster.h"

#define EARTH_A 6378137.0

void burn_set_init(struct burn_set *s)
{
	memset(s, 0, sizeof(*s));
}

static void index_release(struct burn_set *s)
{
	mem_free(s->cell_start);
	mem_free(s->cell_items);
	mem_free(s->big);
	s->cell_start = s->cell_items = s->big = NULL;
	s->nbig = 0;
	s->gw = s->gh = 0;
	s->sorted = 0;
}

void burn_set_release(struct burn_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		OGR_G_DestroyGeometry(s->f[i].geom);
	mem_free(s->f);
	index_release(s);
	memset(s, 0, sizeof(*s));
}

double burn_merc_scale(double y)
{
	return cosh(y / EARTH_A);
}

int burn_set_add_polygon(struct burn_set *s, OGRGeometryH geom, uint8_t value, struct error *err)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 256;
		struct burn_feature *nf = mem_realloc(s->f, nc * sizeof(*nf));
		if (!nf) {
			OGR_G_DestroyGeometry(geom);
			return error_set(err, "out of memory for %zu features", nc);
		}
		s->f = nf;
		s->cap = nc;
	}
	OGREnvelope e;
	OGR_G_GetEnvelope(geom, &e);
	struct burn_feature *f = &s->f[s->n];
	f->geom = geom;
	f->env = (struct bbox){e.MinX, e.MinY, e.MaxX, e.MaxY};
	f->value = value;
	f->order = s->n++;
	if (s->sorted)
		index_release(s);
	return 0;
}

/* A long line is buffered in pieces of at most PIECE segments that share
 * their end points: the union of the pieces' buffers is the line's buffer
 * (a buffer distributes over a union), and each tile then hands GDAL only
 * the pieces near it instead of a polygon the length of the street. Where
 * two pieces meet, their round caps approximate the round join with other
 * vertices: a sliver of at most r(1 - cos(pi/16)) ~ 2% of the half-width. */
#define PIECE 64

static int add_line_part(struct burn_set *s, OGRGeometryH part, double dist, uint8_t value,
			 struct error *err)
{
	int n = OGR_G_GetPointCount(part);
	for (int a = 0; a < n - 1 || (n == 1 && a == 0); a += PIECE) {
		int b = a + PIECE < n - 1 ? a + PIECE : n - 1;
		OGRGeometryH piece = OGR_G_CreateGeometry(wkbLineString);
		if (!piece)
			return error_set(err, "out of memory");
		for (int i = a; i <= b; i++)
			OGR_G_AddPoint_2D(piece, OGR_G_GetX(part, i), OGR_G_GetY(part, i));
		OGRGeometryH buf = OGR_G_Buffer(piece, dist, 8);
		OGR_G_DestroyGeometry(piece);
		if (!buf || OGR_G_IsEmpty(buf)) {
			if (buf)
				OGR_G_DestroyGeometry(buf);
			return error_set(err, "cannot buffer a line (GEOS missing from GDAL?)");
		}
		if (burn_set_add_polygon(s, buf, value, err) < 0)
			return -1;
		if (n == 1)
			break;
	}
	return 0;
}

int burn_set_add_line(struct burn_set *s, OGRGeometryH line, double width_m, uint8_t value,
		      struct error *err)
{
	if (!(width_m > 0))
		return error_set(err, "road width %g m: must be > 0", width_m);
	OGRGeometryH c = OGR_G_CreateGeometry(wkbPoint);
	if (!c)
		return error_set(err, "out of memory");
	double y = 0;
	if (OGR_G_Centroid(line, c) == OGRERR_NONE)
		y = OGR_G_GetY(c, 0);
	OGR_G_DestroyGeometry(c);
	double dist = 0.5 * width_m * burn_merc_scale(y);
	OGRwkbGeometryType t = wkbFlatten(OGR_G_GetGeometryType(line));
	if (t == wkbLineString)
		return add_line_part(s, line, dist, value, err);
	if (t == wkbMultiLineString) {
		for (int i = 0; i < OGR_G_GetGeometryCount(line); i++)
			if (add_line_part(s, OGR_G_GetGeometryRef(line, i), dist, value, err) < 0)
				return -1;
		return 0;
	}
	/* curves: buffer whole */
	OGRGeometryH b = OGR_G_Buffer(line, dist, 8);
	if (!b || OGR_G_IsEmpty(b)) {
		if (b)
			OGR_G_DestroyGeometry(b);
		return error_set(err, "cannot buffer a line (GEOS missing from GDAL?)");
	}
	return burn_set_add_polygon(s, b, value, err);
}

static int cmp_feature(const void *a, const void *b)
{
	const struct burn_feature *x = a, *y = b;
	if (x->value != y->value)
		return x->value < y->value ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* The cells [*x0, *x1] x [*y0, *y1] an envelope touches (clamped to the grid). */
static void cell_span(const struct burn_set *s, const struct bbox *e, int *x0, int *y0, int *x1,
		      int *y1)
{
	double fx0 = floor((e->w - s->grid.w) / s->cw), fx1 = floor((e->e - s->grid.w) / s->cw);
	double fy0 = floor((e->s - s->grid.s) / s->ch), fy1 = floor((e->n - s->grid.s) / s->ch);
	*x0 = fx0 < 0 ? 0 : fx0 >= s->gw ? s->gw - 1 : (int)fx0;
	*x1 = fx1 < 0 ? 0 : fx1 >= s->gw ? s->gw - 1 : (int)fx1;
	*y0 = fy0 < 0 ? 0 : fy0 >= s->gh ? s->gh - 1 : (int)fy0;
	*y1 = fy1 < 0 ? 0 : fy1 >= s->gh ? s->gh - 1 : (int)fy1;
}

static int is_big(int x0, int y0, int x1, int y1)
{
	return (double)(x1 - x0 + 1) * (double)(y1 - y0 + 1) > BURN_BIG_CELLS;
}

/* Two passes over the features (count per cell, then fill), so each cell's
 * list comes out in burn order without sorting. */
static int index_build(struct burn_set *s, struct error *err)
{
	struct bbox env;
	if (burn_set_extent(s, &env, err) < 0)
		return -1;
	double w = env.e - env.w, h = env.n - env.s;
	/* about one cell per feature, square cells, at most 4096 a side */
	double cell = sqrt(w * h / (double)s->n);
	if (!(cell > 0))
		cell = fmax(w, h) > 0 ? fmax(w, h) / 64 : 1;
	double gw = ceil(w / cell), gh = ceil(h / cell);
	s->gw = gw < 1 ? 1 : gw > 4096 ? 4096 : (int)gw;
	s->gh = gh < 1 ? 1 : gh > 4096 ? 4096 : (int)gh;
	s->grid = env;
	s->cw = w > 0 ? w / s->gw : 1;
	s->ch = h > 0 ? h / s->gh : 1;
	size_t ncell = (size_t)s->gw * (size_t)s->gh;
	s->cell_start = mem_calloc(ncell + 1, sizeof(*s->cell_start));
	if (!s->cell_start)
		goto oom;
	size_t items = 0;
	for (size_t i = 0; i < s->n; i++) {
		int x0, y0, x1, y1;
		cell_span(s, &s->f[i].env, &x0, &y0, &x1, &y1);
		if (is_big(x0, y0, x1, y1)) {
			s->nbig++;
			continue;
		}
		for (int y = y0; y <= y1; y++)
			for (int x = x0; x <= x1; x++)
				s->cell_start[(size_t)y * s->gw + x + 1]++;
		items += (size_t)(x1 - x0 + 1) * (size_t)(y1 - y0 + 1);
	}
	for (size_t c = 0; c < ncell; c++)
		s->cell_start[c + 1] += s->cell_start[c];
	s->cell_items = mem_alloc((items ? items : 1) * sizeof(*s->cell_items));
	s->big = mem_alloc((s->nbig ? s->nbig : 1) * sizeof(*s->big));
	size_t *fill = mem_alloc(ncell * sizeof(*fill));
	if (!s->cell_items || !s->big || !fill) {
		mem_free(fill);
		goto oom;
	}
	memcpy(fill, s->cell_start, ncell * sizeof(*fill));
	s->nbig = 0;
	for (size_t i = 0; i < s->n; i++) {
		int x0, y0, x1, y1;
		cell_span(s, &s->f[i].env, &x0, &y0, &x1, &y1);
		if (is_big(x0, y0, x1, y1)) {
			s->big[s->nbig++] = i;
			continue;
		}
		for (int y = y0; y <= y1; y++)
			for (int x = x0; x <= x1; x++)
				s->cell_items[fill[(size_t)y * s->gw + x]++] = i;
	}
	mem_free(fill);
	return 0;
oom:
	index_release(s);
	return error_set(err, "out of memory indexing %zu features", s->n);
}

int burn_set_prepare(struct burn_set *s, struct error *err)
{
	if (s->sorted)
		return 0;
	if (!s->n) {
		s->sorted = 1;
		return 0;
	}
	qsort(s->f, s->n, sizeof(*s->f), cmp_feature);
	if (index_build(s, err) < 0)
		return -1;
	s->sorted = 1;
	return 0;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static int touches(const struct bbox *e, const struct bbox *win)
{
	return !(e->e < win->w || e->w > win->e || e->n < win->s || e->s > win->n);
}

/* The features whose envelope touches win, in burn order; *out is the
 * caller's to free. */
static int window_features(const struct burn_set *s, const struct bbox *win, size_t **out,
			   size_t *nout)
{
	*nout = 0;
	*out = NULL;
	if (!s->n || !touches(&s->grid, win))
		return 0;
	int x0, y0, x1, y1;
	cell_span(s, win, &x0, &y0, &x1, &y1);
	size_t cap = s->nbig;
	for (int y = y0; y <= y1; y++)
		cap += s->cell_start[(size_t)y * s->gw + x1 + 1] - s->cell_start[(size_t)y * s->gw + x0];
	size_t *v = mem_alloc((cap ? cap : 1) * sizeof(*v)), n = 0;
	if (!v)
		return -1;
	for (size_t i = 0; i < s->nbig; i++)
		if (touches(&s->f[s->big[i]].env, win))
			v[n++] = s->big[i];
	for (int y = y0; y <= y1; y++)
		for (size_t k = s->cell_start[(size_t)y * s->gw + x0];
		     k < s->cell_start[(size_t)y * s->gw + x1 + 1]; k++)
			if (touches(&s->f[s->cell_items[k]].env, win))
				v[n++] = s->cell_items[k];
	/* a feature in several cells comes once; burn order is position order */
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_size);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (m == 0 || v[m - 1] != v[i])
			v[m++] = v[i];
	*out = v;
	*nout = m;
	return 0;
}

int burn_set_extent(const struct burn_set *s, struct bbox *env, struct error *err)
{
	if (!s->n)
		return error_set(err, "no features to burn");
	*env = s->f[0].env;
	for (size_t i = 1; i < s->n; i++) {
		const struct bbox *e = &s->f[i].env;
		env->w = fmin(env->w, e->w);
		env->s = fmin(env->s, e->s);
		env->e = fmax(env->e, e->e);
		env->n = fmax(env->n, e->n);
	}
	return 0;
}

static int add_geometry(struct burn_set *s, OGRGeometryH g, uint8_t value, double width,
			struct error *err)
{
	if (!g || OGR_G_IsEmpty(g)) {
		s->skipped_empty++;
		return 0;
	}
	OGRwkbGeometryType t = wkbFlatten(OGR_G_GetGeometryType(g));
	switch (t) {
	case wkbPolygon:
	case wkbMultiPolygon:
	case wkbCurvePolygon:
	case wkbMultiSurface: {
		OGRGeometryH c = OGR_G_Clone(g);
		if (!c)
			return error_set(err, "out of memory");
		if (t == wkbCurvePolygon || t == wkbMultiSurface) {
			OGRGeometryH lin = OGR_G_GetLinearGeometry(c, 0, NULL);
			OGR_G_DestroyGeometry(c);
			c = lin;
			if (!c)
				return error_set(err, "cannot linearize a curved polygon");
		}
		return burn_set_add_polygon(s, c, value, err);
	}
	case wkbLineString:
	case wkbMultiLineString:
	case wkbCircularString:
	case wkbCompoundCurve:
	case wkbMultiCurve:
		return burn_set_add_line(s, g, width, value, err);
	case wkbPoint:
	case wkbMultiPoint:
		s->skipped_points++;
		return 0;
	case wkbGeometryCollection:
		for (int i = 0; i < OGR_G_GetGeometryCount(g); i++)
			if (add_geometry(s, OGR_G_GetGeometryRef(g, i), value, width, err) < 0)
				return -1;
		return 0;
	default:
		s->skipped_bad++;
		return 0;
	}
}

/* "class, width, kind": the layer's field names, for error messages. */
static void field_names(OGRFeatureDefnH defn, char *out, size_t size)
{
	size_t len = 0;
	out[0] = '\0';
	for (int i = 0; i < OGR_FD_GetFieldCount(defn) && len < size; i++)
		len += (size_t)snprintf(out + len, size - len, "%s%s", i ? ", " : "",
					OGR_Fld_GetNameRef(OGR_FD_GetFieldDefn(defn, i)));
	if (!out[0])
		snprintf(out, size, "none");
}

static int is_int_field(OGRFieldType t)
{
	return t == OFTInteger || t == OFTInteger64;
}

/* The index of field `name` in the layer, -1 when the layer lacks it, or an
 * error when its type does not fit (real allowed: a width, not a class). */
static int find_field(OGRFeatureDefnH defn, const char *name, int real_ok, const char *path,
		      const char *lname, int *index, struct error *err)
{
	*index = name ? OGR_FD_GetFieldIndex(defn, name) : -1;
	if (*index < 0)
		return 0;
	OGRFieldType t = OGR_Fld_GetType(OGR_FD_GetFieldDefn(defn, *index));
	if (is_int_field(t) || (real_ok && t == OFTReal))
		return 0;
	char names[512];
	field_names(defn, names, sizeof(names));
	return error_set(err, "%s: layer '%s': field '%s' is %s, not %s (fields: %s)", path, lname,
			 name, OGR_GetFieldTypeName(t), real_ok ? "a number" : "an integer",
			 names);
}

static int load_layer(struct burn_set *s, OGRLayerH layer, const char *path,
		      const struct burn_load_opts *o, OGRSpatialReferenceH dst, int *has_width,
		      struct error *err)
{
	const char *lname = OGR_L_GetName(layer);
	OGRFeatureDefnH defn = OGR_L_GetLayerDefn(layer);
	int class_i, width_i;
	if (find_field(defn, o->class_field, 0, path, lname, &class_i, err) < 0 ||
	    find_field(defn, o->width_field, 1, path, lname, &width_i, err) < 0)
		return -1;
	if (o->class_field && class_i < 0) {
		char names[512];
		field_names(defn, names, sizeof(names));
		return error_set(err,
				 "%s: layer '%s' has no integer field '%s' (fields: %s); "
				 "check --class-field, or pick layers with --layer",
				 path, lname, o->class_field, names);
	}
	*has_width |= width_i >= 0;
	OGRSpatialReferenceH src = NULL;
	if (o->srs) {
		src = OSRNewSpatialReference(NULL);
		if (!src || OSRSetFromUserInput(src, o->srs) != OGRERR_NONE) {
			if (src)
				OSRDestroySpatialReference(src);
			return error_set(err, "--srs '%s': unknown CRS", o->srs);
		}
	} else {
		OGRSpatialReferenceH l = OGR_L_GetSpatialRef(layer);
		if (!l)
			return error_set(err, "%s: layer '%s' has no CRS; give one with --srs", path,
					 lname);
		src = OSRClone(l);
		if (!src)
			return error_set(err, "out of memory");
	}
	/* x = easting/longitude, y = northing/latitude whatever the CRS's
	 * official axis order (EPSG:4326 is lat,lon; GDAL 3 honours that). */
	OSRSetAxisMappingStrategy(src, OAMS_TRADITIONAL_GIS_ORDER);
	OGRCoordinateTransformationH ct = NULL;
	if (!OSRIsSame(src, dst)) {
		ct = OCTNewCoordinateTransformation(src, dst);
		if (!ct) {
			OSRDestroySpatialReference(src);
			return error_set(err, "%s: layer '%s': no transformation to EPSG:3857", path,
					 lname);
		}
	}
	OGR_L_ResetReading(layer);
	OGRFeatureH feat;
	int rc = 0;
	size_t tried = 0, failed = 0;
	/* A wrong CRS makes PROJ report every point it cannot take; the count
	 * below says it once. */
	CPLPushErrorHandler(CPLQuietErrorHandler);
	while (rc == 0 && (feat = OGR_L_GetNextFeature(layer))) {
		OGRGeometryH g = OGR_F_GetGeometryRef(feat);
		int value = 1;
		if (class_i >= 0 && OGR_F_IsFieldSetAndNotNull(feat, class_i))
			value = OGR_F_GetFieldAsInteger(feat, class_i);
		double width = o->road_width > 0 ? o->road_width : 6.0;
		if (width_i >= 0 && OGR_F_IsFieldSetAndNotNull(feat, width_i) &&
		    OGR_F_GetFieldAsDouble(feat, width_i) > 0)
			width = OGR_F_GetFieldAsDouble(feat, width_i);
		if (value < 0 || value > 255) {
			rc = error_set(err, "%s: layer '%s' feature %lld: class %d not in 0..255",
				       path, lname, (long long)OGR_F_GetFID(feat), value);
		} else if (!g) {
			s->skipped_empty++;
		} else if (ct) {
			OGRGeometryH c = OGR_G_Clone(g);
			tried++;
			if (!c || OGR_G_Transform(c, ct) != OGRERR_NONE) {
				s->skipped_bad++; /* outside the mercator square, say */
				failed++;
			} else {
				rc = add_geometry(s, c, (uint8_t)value, width, err);
			}
			if (c)
				OGR_G_DestroyGeometry(c);
		} else {
			rc = add_geometry(s, g, (uint8_t)value, width, err);
		}
		OGR_F_Destroy(feat);
	}
	CPLPopErrorHandler();
	if (rc < 0)
		error_prefix(err, "%s: layer '%s': ", path, lname);
	else if (failed > 0 && 2 * failed > tried) {
		/* Most features outside the CRS's area: the CRS is wrong, not the data. */
		const char *auth = OSRGetAuthorityName(src, NULL), *code = OSRGetAuthorityCode(src, NULL);
		char crs[128];
		if (auth && code)
			snprintf(crs, sizeof(crs), "%s:%s", auth, code);
		else
			snprintf(crs, sizeof(crs), "'%s'", OSRGetName(src) ? OSRGetName(src) : "?");
		rc = error_set(err,
			       "%s: layer '%s': %zu of %zu features could not be transformed from %s "
			       "to EPSG:3857 (wrong CRS? give the data's CRS with --srs)",
			       path, lname, failed, tried, crs);
	}
	if (ct)
		OCTDestroyCoordinateTransformation(ct);
	OSRDestroySpatialReference(src);
	return rc;
}

int burn_load_ogr(struct burn_set *s, const char *path, const struct burn_load_opts *o,
		  struct error *err)
{
	GDALDatasetH ds = raster_open_quiet(path, GDAL_OF_VECTOR | GDAL_OF_READONLY, path,
					    "vector data", err);
	if (!ds)
		return -1;
	OGRSpatialReferenceH dst = OSRNewSpatialReference(NULL);
	int rc = 0;
	if (!dst || OSRImportFromEPSG(dst, 3857) != OGRERR_NONE) {
		rc = error_set(err, "EPSG:3857 unknown to PROJ (proj-data missing?)");
		goto out;
	}
	OSRSetAxisMappingStrategy(dst, OAMS_TRADITIONAL_GIS_ORDER);
	int has_width = 0;
	if (o->layer) {
		OGRLayerH l = GDALDatasetGetLayerByName(ds, o->layer);
		if (!l)
			rc = error_set(err, "%s: no layer '%s'", path, o->layer);
		else
			rc = load_layer(s, l, path, o, dst, &has_width, err);
	} else {
		int n = GDALDatasetGetLayerCount(ds);
		if (n == 0)
			rc = error_set(err, "%s: no layers", path);
		for (int i = 0; rc == 0 && i < n; i++)
			rc = load_layer(s, GDALDatasetGetLayer(ds, i), path, o, dst, &has_width, err);
	}
	/* Polygon layers need no width: only a width field no layer has is an error. */
	if (rc == 0 && o->width_field && !has_width)
		rc = error_set(err, "%s: no layer has a field '%s'; check --width-field", path,
			       o->width_field);
out:
	if (dst)
		OSRDestroySpatialReference(dst);
	GDALClose(ds);
	return rc;
}

int burn_window(struct burn_set *s, const double gt[6], int w, int h, uint8_t *out,
		struct error *err)
{
	raster_init();
	if (!s->sorted && burn_set_prepare(s, err) < 0)
		return -1;
	memset(out, 0, (size_t)w * (size_t)h);
	struct bbox win = {gt[0], gt[3] + h * gt[5], gt[0] + w * gt[1], gt[3]};
	size_t n = 0, *idx = NULL;
	if (window_features(s, &win, &idx, &n) < 0)
		return error_set(err, "out of memory");
	OGRGeometryH *geoms = mem_alloc((n ? n : 1) * sizeof(*geoms));
	double *vals = mem_alloc((n ? n : 1) * sizeof(*vals));
	if (!geoms || !vals) {
		mem_free(idx);
		mem_free(geoms);
		mem_free(vals);
		return error_set(err, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		geoms[i] = s->f[idx[i]].geom;
		vals[i] = s->f[idx[i]].value;
	}
	mem_free(idx);
	int rc = 0;
	if (n) {
		GDALDatasetH ds = GDALCreate(GDALGetDriverByName("MEM"), "", w, h, 1, GDT_Byte, NULL);
		int band = 1;
		if (!ds) {
			rc = error_set(err, "cannot create a %dx%d MEM raster", w, h);
		} else {
			GDALSetGeoTransform(ds, (double *)gt);
			if (GDALRasterizeGeometries(ds, 1, &band, (int)n, geoms, NULL, NULL, vals,
						    NULL, NULL, NULL) != CE_None ||
			    GDALRasterIO(GDALGetRasterBand(ds, 1), GF_Read, 0, 0, w, h, out, w, h,
					 GDT_Byte, 0, 0) != CE_None)
				rc = error_set(err, "rasterizing %zu features: %s", n,
					       CPLGetLastErrorMsg());
			GDALClose(ds);
		}
	}
	mem_free(geoms);
	mem_free(vals);
	return rc;
}

int burn_tile(struct burn_set *s, const struct tile *t, uint8_t *out, struct error *err)
{
	struct bbox b;
	tile_bounds(t, &b);
	double res = (b.e - b.w) / TILE_SIZE;
	double gt[6] = {b.w, res, 0, b.n, 0, -res};
	return burn_window(s, gt, TILE_SIZE, TILE_SIZE, out, err);
}
