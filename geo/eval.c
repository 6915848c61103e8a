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

/* Labels 1..*n (0 = not the class); areas[l] pixels. Caller frees lab, areas. */
static int components(const uint8_t *img, int w, int h, int cls, uint32_t **lab_out,
		      uint64_t **areas_out, uint32_t *n_out)
{
	size_t np = (size_t)w * h;
	uint32_t *lab = mem_calloc(np, sizeof(*lab));
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
			if (img[i] != cls)
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

struct pair {
	uint32_t p, t;
	uint64_t inter;
	double iou;
};

static int cmp_key(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	if (x->p != y->p)
		return x->p < y->p ? -1 : 1;
	return x->t < y->t ? -1 : x->t > y->t;
}

static int cmp_iou(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	return x->iou > y->iou ? -1 : x->iou < y->iou;
}

int eval_add_instances(const struct eval_opts *o, const uint8_t *pred, const uint8_t *truth, int w,
		       int h, struct eval_result *r, struct error *err)
{
	if (o->building_class < 0)
		return 0;
	uint32_t *lp = NULL, *lt = NULL, np = 0, nt = 0;
	uint64_t *ap = NULL, *at = NULL;
	struct pair *pairs = NULL;
	uint8_t *used_p = NULL, *used_t = NULL;
	int rc = 0;
	if (components(pred, w, h, o->building_class, &lp, &ap, &np) < 0 ||
	    components(truth, w, h, o->building_class, &lt, &at, &nt) < 0) {
		rc = error_set(err, "out of memory labelling components of %dx%d", w, h);
		goto out;
	}
	/* overlapping pixels as (pred label, truth label) keys, sorted and run-length counted */
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < (size_t)w * h; i++) {
		if (!lp[i] || !lt[i])
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			struct pair *q = mem_realloc(pairs, cap * sizeof(*q));
			if (!q) {
				rc = error_set(err, "out of memory matching components");
				goto out;
			}
			pairs = q;
		}
		pairs[n++] = (struct pair){lp[i], lt[i], 1, 0};
	}
	if (n)
		qsort(pairs, n, sizeof(*pairs), cmp_key);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && pairs[m - 1].p == pairs[i].p && pairs[m - 1].t == pairs[i].t)
			pairs[m - 1].inter++;
		else
			pairs[m++] = pairs[i];
	}
	for (size_t i = 0; i < m; i++) {
		struct pair *q = &pairs[i];
		q->iou = (double)q->inter / (double)(ap[q->p] + at[q->t] - q->inter);
	}
	if (m)
		qsort(pairs, m, sizeof(*pairs), cmp_iou);
	used_p = mem_calloc((size_t)np + 1, 1);
	used_t = mem_calloc((size_t)nt + 1, 1);
	if (!used_p || !used_t) {
		rc = error_set(err, "out of memory matching components");
		goto out;
	}
	uint64_t tp = 0;
	for (size_t i = 0; i < m && pairs[i].iou >= o->iou_threshold; i++) {
		struct pair *q = &pairs[i];
		if (used_p[q->p] || used_t[q->t] || ap[q->p] < (uint64_t)o->min_area ||
		    at[q->t] < (uint64_t)o->min_area)
			continue;
		used_p[q->p] = used_t[q->t] = 1;
		tp++;
	}
	for (uint32_t l = 1; l <= np; l++)
		r->inst_pred += ap[l] >= (uint64_t)o->min_area;
	for (uint32_t l = 1; l <= nt; l++)
		r->inst_truth += at[l] >= (uint64_t)o->min_area;
	r->inst_tp += tp;
out:
	mem_free(lp);
	mem_free(lt);
	mem_free(ap);
	mem_free(at);
	mem_free(pairs);
	mem_free(used_p);
	mem_free(used_t);
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
