#include "geo/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

void eval_opts_init(struct eval_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->nclasses = 3;
	o->names[0] = "background";
	o->names[1] = "road";
	o->names[2] = "building";
	o->building_class = 2;
	o->iou_threshold = 0.5;
	o->min_area = 1;
	o->border = 16;
}

void eval_add_tile(const struct eval_opts *o, const uint8_t *pred, const uint8_t *truth, int size,
		   struct eval_result *r)
{
	int nc = o->nclasses;
	for (int y = 0; y < size; y++)
		for (int x = 0; x < size; x++) {
			size_t i = (size_t)y * size + x;
			int p = pred[i], t = truth[i];
			if (p >= nc || t >= nc) {
				r->bad_values++;
				p = p >= nc ? 0 : p;
				t = t >= nc ? 0 : t;
			}
			int edge = x < o->border || y < o->border || x >= size - o->border ||
				   y >= size - o->border;
			struct eval_counts *band = edge ? &r->border : &r->interior;
			if (p == t) {
				r->all.tp[p]++;
				band->tp[p]++;
			} else {
				r->all.fp[p]++;
				r->all.fn[t]++;
				band->fp[p]++;
				band->fn[t]++;
			}
		}
	r->pixels += (uint64_t)size * size;
	r->tiles++;
}

/* ---- connected components (two-pass, union-find, 8-connectivity) ---- */

static uint32_t uf_find(uint32_t *par, uint32_t a)
{
	while (par[a] != a) {
		par[a] = par[par[a]];
		a = par[a];
	}
	return a;
}

static void uf_union(uint32_t *par, uint32_t a, uint32_t b)
{
	a = uf_find(par, a);
	b = uf_find(par, b);
	if (a < b)
		par[b] = a;
	else if (b < a)
		par[a] = b;
}

/* Labels 1..*n (0 = not the class) of a w x h window with row stride
 * `stride`; areas[l] pixels. Caller frees lab (w x h, packed) and areas. */
static int components(const uint8_t *img, size_t stride, int w, int h, int cls,
		      uint32_t **lab_out, uint64_t **areas_out, uint32_t *n_out)
{
	size_t np = (size_t)w * h;
	uint32_t *lab = mem_calloc(np ? np : 1, sizeof(*lab));
	size_t cap = 1024, next = 1;
	uint32_t *par = mem_alloc(cap * sizeof(*par));
	if (!lab || !par) {
		mem_free(lab);
		mem_free(par);
		return -1;
	}
	par[0] = 0;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			size_t i = (size_t)y * w + x;
			if (img[(size_t)y * stride + x] != cls)
				continue;
			uint32_t nb[4];
			int k = 0;
			if (x > 0 && lab[i - 1])
				nb[k++] = lab[i - 1];
			if (y > 0) {
				size_t up = i - (size_t)w;
				if (lab[up])
					nb[k++] = lab[up];
				if (x > 0 && lab[up - 1])
					nb[k++] = lab[up - 1];
				if (x + 1 < w && lab[up + 1])
					nb[k++] = lab[up + 1];
			}
			if (k == 0) {
				if (next == cap) {
					uint32_t *np2 = mem_realloc(par, cap * 2 * sizeof(*par));
					if (!np2) {
						mem_free(lab);
						mem_free(par);
						return -1;
					}
					par = np2;
					cap *= 2;
				}
				par[next] = (uint32_t)next;
				lab[i] = (uint32_t)next++;
			} else {
				uint32_t m = nb[0];
				for (int j = 1; j < k; j++)
					m = nb[j] < m ? nb[j] : m;
				lab[i] = m;
				for (int j = 0; j < k; j++)
					uf_union(par, m, nb[j]);
			}
		}
	/* compact the roots to 1..n */
	uint32_t *map = mem_calloc(next, sizeof(*map));
	uint32_t n = 0;
	if (!map) {
		mem_free(lab);
		mem_free(par);
		return -1;
	}
	for (size_t l = 1; l < next; l++) {
		uint32_t r = uf_find(par, (uint32_t)l);
		if (!map[r])
			map[r] = ++n;
		map[l] = map[r];
	}
	uint64_t *areas = mem_calloc((size_t)n + 1, sizeof(*areas));
	if (!areas) {
		mem_free(lab);
		mem_free(par);
		mem_free(map);
		return -1;
	}
	for (size_t i = 0; i < np; i++)
		if (lab[i]) {
			lab[i] = map[lab[i]];
			areas[lab[i]]++;
		}
	mem_free(par);
	mem_free(map);
	*lab_out = lab;
	*areas_out = areas;
	*n_out = n;
	return 0;
}

/* ---- instances over a mosaic fed in blocks ---- */

struct eval_pair {
	uint32_t p, t;  /* component ids in the mosaic: prediction, truth */
	uint64_t inter; /* pixels in both */
	double iou;
	uint64_t first_p, first_t; /* their first pixels in raster order: ties */
};

static int cmp_key(const void *a, const void *b)
{
	const struct eval_pair *x = a, *y = b;
	if (x->p != y->p)
		return x->p < y->p ? -1 : 1;
	return x->t < y->t ? -1 : x->t > y->t;
}

static int cmp_iou(const void *a, const void *b)
{
	const struct eval_pair *x = a, *y = b;
	if (x->iou != y->iou)
		return x->iou > y->iou ? -1 : 1;
	/* ties in an order of the mosaic's, not of the ids: same for any block size */
	if (x->first_p != y->first_p)
		return x->first_p < y->first_p ? -1 : 1;
	return x->first_t < y->first_t ? -1 : x->first_t > y->first_t;
}

/* Sort pairs[from..n) by key and add up the duplicates; returns the new n. */
static size_t merge_pairs(struct eval_pair *pairs, size_t from, size_t n)
{
	if (n - from > 1)
		qsort(pairs + from, n - from, sizeof(*pairs), cmp_key);
	size_t m = from;
	for (size_t i = from; i < n; i++) {
		if (m > from && pairs[m - 1].p == pairs[i].p && pairs[m - 1].t == pairs[i].t)
			pairs[m - 1].inter += pairs[i].inter;
		else
			pairs[m++] = pairs[i];
	}
	return m;
}

int eval_instances_init(struct eval_instances *ei, int width, struct error *err)
{
	memset(ei, 0, sizeof(*ei));
	ei->width = width;
	ei->row_y = ei->above_y = ei->below_y = -2;
	ei->left_x = -2;
	for (int k = 0; k < 2; k++) {
		ei->above[k] = mem_calloc((size_t)width, sizeof(uint32_t));
		ei->below[k] = mem_calloc((size_t)width, sizeof(uint32_t));
		ei->par[k] = mem_alloc(sizeof(uint32_t));
		ei->area[k] = mem_calloc(1, sizeof(uint64_t));
		ei->first[k] = mem_calloc(1, sizeof(uint64_t));
		if (!ei->above[k] || !ei->below[k] || !ei->par[k] || !ei->area[k] || !ei->first[k]) {
			eval_instances_release(ei);
			return error_set(err, "out of memory for a mosaic %d px wide", width);
		}
		ei->par[k][0] = 0;
		ei->n[k] = ei->cap[k] = 1; /* id 0: no component */
	}
	return 0;
}

void eval_instances_release(struct eval_instances *ei)
{
	for (int k = 0; k < 2; k++) {
		mem_free(ei->above[k]);
		mem_free(ei->below[k]);
		mem_free(ei->left[k]);
		mem_free(ei->par[k]);
		mem_free(ei->area[k]);
		mem_free(ei->first[k]);
	}
	mem_free(ei->pairs);
	memset(ei, 0, sizeof(*ei));
}

/* Room for `more` new component ids of image k. */
static int grow_ids(struct eval_instances *ei, int k, size_t more)
{
	size_t need = ei->n[k] + more;
	if (need <= ei->cap[k])
		return 0;
	if (need > UINT32_MAX)
		return -1;
	size_t nc = ei->cap[k] * 2 > need ? ei->cap[k] * 2 : need;
	uint32_t *par = mem_realloc(ei->par[k], nc * sizeof(*par));
	if (!par)
		return -1;
	ei->par[k] = par;
	uint64_t *area = mem_realloc(ei->area[k], nc * sizeof(*area));
	if (!area)
		return -1;
	ei->area[k] = area;
	uint64_t *first = mem_realloc(ei->first[k], nc * sizeof(*first));
	if (!first)
		return -1;
	ei->first[k] = first;
	ei->cap[k] = nc;
	return 0;
}

static int add_pair(struct eval_instances *ei, uint32_t p, uint32_t t, uint64_t inter)
{
	if (ei->npairs == ei->cappairs) {
		size_t nc = ei->cappairs ? ei->cappairs * 2 : 4096;
		struct eval_pair *q = mem_realloc(ei->pairs, nc * sizeof(*q));
		if (!q)
			return -1;
		ei->pairs = q;
		ei->cappairs = nc;
	}
	ei->pairs[ei->npairs++] = (struct eval_pair){p, t, inter, 0, 0, 0};
	return 0;
}

/* A new row of blocks: the last mosaic row of the previous block row becomes
 * `above` when it is the row just over this one (else nothing is above). */
static void start_block_row(struct eval_instances *ei, int y0, int h)
{
	for (int k = 0; k < 2; k++) {
		uint32_t *t = ei->above[k];
		ei->above[k] = ei->below[k];
		ei->below[k] = t;
		memset(ei->below[k], 0, (size_t)ei->width * sizeof(uint32_t));
	}
	ei->above_y = ei->below_y;
	ei->below_y = y0 + h - 1;
	ei->row_y = y0;
	ei->row_h = h;
	ei->left_x = -2;
}

/* Union the block's components of image k with those across its top seam
 * (row y0 - 1, columns x0 - 1 .. x0 + w) and its left seam (column x0 - 1),
 * 8-connectivity; then remember its bottom row and right column. */
static void join_seams(struct eval_instances *ei, int k, const uint32_t *g, int x0, int y0,
		       int w, int h)
{
	uint32_t *par = ei->par[k];
	if (ei->above_y == y0 - 1)
		for (int x = 0; x < w; x++) {
			if (!g[x])
				continue;
			for (int dx = -1; dx <= 1; dx++) {
				int ax = x0 + x + dx;
				if (ax >= 0 && ax < ei->width && ei->above[k][ax])
					uf_union(par, g[x], ei->above[k][ax]);
			}
		}
	if (ei->left_x == x0 - 1)
		for (int y = 0; y < h; y++) {
			uint32_t a = g[(size_t)y * w];
			if (!a)
				continue;
			for (int dy = -1; dy <= 1; dy++)
				if (y + dy >= 0 && y + dy < h && ei->left[k][y + dy])
					uf_union(par, a, ei->left[k][y + dy]);
		}
	for (int x = 0; x < w; x++)
		ei->below[k][x0 + x] = g[(size_t)(h - 1) * w + x];
	for (int y = 0; y < h; y++)
		ei->left[k][y] = g[(size_t)y * w + w - 1];
}

int eval_instances_add(const struct eval_opts *o, struct eval_instances *ei, const uint8_t *pred,
		       const uint8_t *truth, size_t stride, int x0, int y0, int w, int h,
		       struct error *err)
{
	if (o->building_class < 0)
		return 0;
	if (w <= 0 || h <= 0 || x0 < 0 || x0 + w > ei->width)
		return error_set(err, "block %dx%d at x %d outside a mosaic %d px wide", w, h, x0,
				 ei->width);
	if (y0 != ei->row_y) {
		if (y0 < ei->row_y + ei->row_h)
			return error_set(err, "block rows out of order (y %d after %d)", y0,
					 ei->row_y);
		start_block_row(ei, y0, h);
	} else if (h != ei->row_h || x0 <= ei->left_x) {
		return error_set(err, "blocks of one row must share y and height, left to right");
	}
	if (ei->left_cap < (size_t)h) {
		for (int k = 0; k < 2; k++) {
			uint32_t *l = mem_realloc(ei->left[k], (size_t)h * sizeof(*l));
			if (!l)
				return error_set(err, "out of memory");
			ei->left[k] = l;
		}
		ei->left_cap = (size_t)h;
	}
	const uint8_t *img[2] = {pred, truth};
	uint32_t *g[2] = {NULL, NULL};
	int rc = 0;
	for (int k = 0; k < 2 && rc == 0; k++) {
		uint64_t *areas = NULL;
		uint32_t nl = 0;
		if (components(img[k], stride, w, h, o->building_class, &g[k], &areas, &nl) < 0 ||
		    grow_ids(ei, k, nl) < 0) {
			mem_free(areas);
			rc = error_set(err, "out of memory labelling components of %dx%d", w, h);
			break;
		}
		/* local label l becomes mosaic id base + l */
		uint32_t base = (uint32_t)ei->n[k] - 1;
		for (uint32_t l = 1; l <= nl; l++) {
			ei->par[k][base + l] = base + l;
			ei->area[k][base + l] = areas[l];
			ei->first[k][base + l] = UINT64_MAX;
		}
		ei->n[k] += nl;
		mem_free(areas);
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++) {
				uint32_t *id = &g[k][(size_t)y * w + x];
				if (!*id)
					continue;
				*id += base;
				uint64_t at = (uint64_t)(y0 + y) * (uint64_t)ei->width + (uint64_t)(x0 + x);
				if (at < ei->first[k][*id])
					ei->first[k][*id] = at;
			}
	}
	/* overlaps, one entry per run of equal (pred, truth) ids along a row */
	size_t from = ei->npairs;
	for (int y = 0; rc == 0 && y < h; y++) {
		const uint32_t *gp = g[0] + (size_t)y * w, *gt = g[1] + (size_t)y * w;
		for (int x = 0; x < w; x++) {
			if (!gp[x] || !gt[x])
				continue;
			int x1 = x + 1;
			while (x1 < w && gp[x1] == gp[x] && gt[x1] == gt[x])
				x1++;
			if (add_pair(ei, gp[x], gt[x], (uint64_t)(x1 - x)) < 0) {
				rc = error_set(err, "out of memory matching components");
				break;
			}
			x = x1 - 1;
		}
	}
	if (rc == 0) {
		ei->npairs = merge_pairs(ei->pairs, from, ei->npairs);
		for (int k = 0; k < 2; k++)
			join_seams(ei, k, g[k], x0, y0, w, h);
		ei->left_x = x0 + w - 1;
	}
	mem_free(g[0]);
	mem_free(g[1]);
	return rc;
}

int eval_instances_finish(const struct eval_opts *o, struct eval_instances *ei,
			  struct eval_result *r, struct error *err)
{
	if (o->building_class < 0)
		return 0;
	/* every id's area goes to its root; pairs are keyed by roots */
	for (int k = 0; k < 2; k++)
		for (size_t id = 1; id < ei->n[k]; id++) {
			uint32_t root = uf_find(ei->par[k], (uint32_t)id);
			if (root != id) {
				ei->area[k][root] += ei->area[k][id];
				ei->area[k][id] = 0;
				if (ei->first[k][id] < ei->first[k][root])
					ei->first[k][root] = ei->first[k][id];
			}
		}
	for (size_t i = 0; i < ei->npairs; i++) {
		ei->pairs[i].p = uf_find(ei->par[0], ei->pairs[i].p);
		ei->pairs[i].t = uf_find(ei->par[1], ei->pairs[i].t);
	}
	size_t m = merge_pairs(ei->pairs, 0, ei->npairs);
	ei->npairs = m;
	const uint64_t *ap = ei->area[0], *at = ei->area[1];
	for (size_t i = 0; i < m; i++) {
		struct eval_pair *q = &ei->pairs[i];
		q->iou = (double)q->inter / (double)(ap[q->p] + at[q->t] - q->inter);
		q->first_p = ei->first[0][q->p];
		q->first_t = ei->first[1][q->t];
	}
	if (m)
		qsort(ei->pairs, m, sizeof(*ei->pairs), cmp_iou);
	uint8_t *used_p = mem_calloc(ei->n[0], 1), *used_t = mem_calloc(ei->n[1], 1);
	if (!used_p || !used_t) {
		mem_free(used_p);
		mem_free(used_t);
		return error_set(err, "out of memory matching components");
	}
	/* greedy one-to-one matching, highest IoU first */
	uint64_t tp = 0, min = (uint64_t)(o->min_area > 0 ? o->min_area : 0);
	for (size_t i = 0; i < m && ei->pairs[i].iou >= o->iou_threshold; i++) {
		struct eval_pair *q = &ei->pairs[i];
		if (used_p[q->p] || used_t[q->t] || ap[q->p] < min || at[q->t] < min)
			continue;
		used_p[q->p] = used_t[q->t] = 1;
		tp++;
	}
	for (size_t id = 1; id < ei->n[0]; id++)
		r->inst_pred += ei->par[0][id] == id && ap[id] >= min && ap[id] > 0;
	for (size_t id = 1; id < ei->n[1]; id++)
		r->inst_truth += ei->par[1][id] == id && at[id] >= min && at[id] > 0;
	r->inst_tp += tp;
	mem_free(used_p);
	mem_free(used_t);
	return 0;
}

int eval_add_instances(const struct eval_opts *o, const uint8_t *pred, const uint8_t *truth, int w,
		       int h, struct eval_result *r, struct error *err)
{
	if (o->building_class < 0)
		return 0;
	struct eval_instances ei;
	if (eval_instances_init(&ei, w, err) < 0)
		return -1;
	int rc = eval_instances_add(o, &ei, pred, truth, (size_t)w, 0, 0, w, h, err);
	if (rc == 0)
		rc = eval_instances_finish(o, &ei, r, err);
	eval_instances_release(&ei);
	return rc;
}

double eval_iou(uint64_t tp, uint64_t fp, uint64_t fn)
{
	uint64_t d = tp + fp + fn;
	return d ? (double)tp / (double)d : NAN;
}

double eval_f1(uint64_t tp, uint64_t fp, uint64_t fn)
{
	uint64_t d = 2 * tp + fp + fn;
	return d ? 2.0 * (double)tp / (double)d : NAN;
}

static json_t *num(double v)
{
	return isnan(v) ? json_null() : json_real(round(v * 1e6) / 1e6);
}

static json_t *class_json(const struct eval_counts *c, int k)
{
	uint64_t tp = c->tp[k], fp = c->fp[k], fn = c->fn[k];
	return json_pack("{s:o s:o s:o s:o s:I s:I s:I}", "iou", num(eval_iou(tp, fp, fn)),
			 "precision", num(tp + fp ? (double)tp / (double)(tp + fp) : NAN), "recall",
			 num(tp + fn ? (double)tp / (double)(tp + fn) : NAN), "f1",
			 num(eval_f1(tp, fp, fn)), "tp", (json_int_t)tp, "fp", (json_int_t)fp, "fn",
			 (json_int_t)fn);
}

static double mean_iou(const struct eval_opts *o, const struct eval_counts *c)
{
	double sum = 0;
	int n = 0;
	for (int k = 1; k < o->nclasses; k++) {
		double v = eval_iou(c->tp[k], c->fp[k], c->fn[k]);
		if (!isnan(v)) {
			sum += v;
			n++;
		}
	}
	return n ? sum / n : NAN;
}

static json_t *band_json(const struct eval_opts *o, const struct eval_counts *c)
{
	json_t *j = json_object();
	for (int k = 1; k < o->nclasses; k++)
		json_object_set_new(j, o->names[k], num(eval_iou(c->tp[k], c->fp[k], c->fn[k])));
	json_object_set_new(j, "mean_iou", num(mean_iou(o, c)));
	return j;
}

json_t *eval_to_json(const struct eval_opts *o, const struct eval_result *r)
{
	json_t *classes = json_object();
	for (int k = 0; k < o->nclasses; k++)
		json_object_set_new(classes, o->names[k], class_json(&r->all, k));
	uint64_t tp = r->inst_tp, fp = r->inst_pred - tp, fn = r->inst_truth - tp;
	double mb = mean_iou(o, &r->border), mi = mean_iou(o, &r->interior);
	json_t *j = json_pack(
		"{s:I s:I s:I s:I s:o s:o s:{s:s s:f s:i s:I s:I s:I s:I s:I s:o s:o s:o} "
		"s:{s:i s:o s:o s:o}}",
		"tiles", (json_int_t)r->tiles, "missing_pred_tiles", (json_int_t)r->missing_pred,
		"pixels", (json_int_t)r->pixels, "bad_values", (json_int_t)r->bad_values, "classes",
		classes, "mean_iou", num(mean_iou(o, &r->all)), "building_instances", "class",
		o->building_class >= 0 ? o->names[o->building_class] : "none", "iou_threshold",
		o->iou_threshold, "min_area", o->min_area, "truth", (json_int_t)r->inst_truth, "pred",
		(json_int_t)r->inst_pred, "tp", (json_int_t)tp, "fp", (json_int_t)fp, "fn",
		(json_int_t)fn, "precision", num(r->inst_pred ? (double)tp / r->inst_pred : NAN),
		"recall", num(r->inst_truth ? (double)tp / r->inst_truth : NAN), "f1",
		num(eval_f1(tp, fp, fn)), "seam", "border_px", o->border, "border",
		band_json(o, &r->border), "interior", band_json(o, &r->interior),
		"interior_minus_border_mean_iou", num(mi - mb));
	return j;
}

void eval_error_color(uint8_t pred, uint8_t truth, uint8_t rgb[3])
{
	static const uint8_t correct[4][3] = {{0, 0, 0}, {120, 120, 120}, {235, 235, 235}, {90, 160, 90}};
	const uint8_t *c;
	static const uint8_t fp[3] = {230, 40, 40}, fn[3] = {40, 90, 240}, wrong[3] = {240, 210, 40};
	if (pred == truth)
		c = correct[pred < 4 ? pred : 3];
	else if (truth == 0)
		c = fp;
	else if (pred == 0)
		c = fn;
	else
		c = wrong;
	memcpy(rgb, c, 3);
}
