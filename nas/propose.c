/* propose: random and surrogate proposals (propose.h). */
#include "nas/propose.h"

#include <math.h>
#include <string.h>

#include "core/mem.h"
#include "nas/spline.h"

static int same(const int *a, const int *b, int d)
{
	return memcmp(a, b, (size_t)d * sizeof *a) == 0;
}

static int among(const int *c, const int *set, int n, int d)
{
	for (int i = 0; i < n; i++)
		if (same(c, set + (size_t)i * d, d))
			return 1;
	return 0;
}

/* -1 with the message when ntried + count architectures do not fit in s. */
static int too_many(const struct nas_space *s, int ntried, int count, struct error *err)
{
	uint64_t size = nas_space_size(s);
	if ((uint64_t)ntried + (uint64_t)count <= size)
		return 0;
	return error_set(err,
			 "the space has %llu architectures, %d tried: %d more cannot be "
			 "proposed (ask for fewer, or widen the space)",
			 (unsigned long long)size, ntried, count);
}

int nas_propose_random(const struct nas_space *s, const int *tried, int ntried, int count,
		       uint64_t seed, nas_valid_fn *valid, void *ctx, int *out, struct error *err)
{
	int d = s->ndim;
	if (too_many(s, ntried, count, err) < 0)
		return -1;
	uint64_t rng = seed, draws = 0, limit = 1000 * (uint64_t)count + 10000;
	int got = 0;
	while (got < count) {
		if (draws++ == limit)
			return error_set(err,
					 "%d of %d architectures found after %llu draws: nearly "
					 "every choice is untried-and-invalid or taken",
					 got, count, (unsigned long long)limit);
		int *c = out + (size_t)got * d;
		nas_space_sample(s, &rng, c);
		if (among(c, tried, ntried, d) || among(c, out, got, d))
			continue;
		int ok = valid(ctx, c, err);
		if (ok < 0)
			return -1;
		got += ok;
	}
	return 0;
}

static double dist(const double *a, const double *b, int d)
{
	double r2 = 0;
	for (int k = 0; k < d; k++)
		r2 += (a[k] - b[k]) * (a[k] - b[k]);
	return sqrt(r2);
}

/* Candidate j: a perturbation of one of the best points (even j), or a
 * uniform draw (odd j). A perturbation moves each slot with probability
 * min(1, 3/d) by one or two choices, and at least one slot. */
static void candidate(const struct nas_space *s, const int *best, uint64_t *rng, int j, int *c)
{
	int d = s->ndim;
	if (j % 2) {
		nas_space_sample(s, rng, c);
		return;
	}
	memcpy(c, best, (size_t)d * sizeof *c);
	double p = d > 3 ? 3.0 / d : 1.0;
	int moved = 0;
	for (int k = 0; k < d; k++) {
		int n = s->nchoice[k];
		if (n < 2 || nas_rng_uniform(rng) >= p)
			continue;
		int step = nas_rng_uniform(rng) < 0.7 ? 1 : 2;
		int v = c[k] + (nas_rng_next(rng) & 1 ? step : -step);
		if (v < 0 || v >= n)
			v = c[k] + (v < 0 ? step : -step);
		c[k] = v < 0 ? 0 : v >= n ? n - 1 : v;
		moved |= c[k] != best[k];
	}
	if (!moved) {
		int k = (int)(nas_rng_next(rng) % (uint64_t)d);
		for (int t = 0; t < d && s->nchoice[k] < 2; t++)
			k = (k + 1) % d;
		int n = s->nchoice[k];
		if (n > 1)
			c[k] = (c[k] + 1 + (int)(nas_rng_next(rng) % (uint64_t)(n - 1))) % n;
	}
}

struct pool {
	int n, d, *c;
	double *x, *pred, *dist;
	char *live;
};

static void pool_release(struct pool *p)
{
	mem_free(p->c);
	mem_free(p->x);
	mem_free(p->pred);
	mem_free(p->dist);
	mem_free(p->live);
}

/* Unique tried points (encoded) and their mean accuracy. */
static int unique_points(const struct nas_space *s, const int *tried, const double *y, int ntried,
			 double *x, double *ym, int *order)
{
	int d = s->ndim, n = 0;
	int *cnt = mem_calloc((size_t)ntried, sizeof *cnt);
	const int **rep = mem_calloc((size_t)ntried, sizeof *rep);
	if (!cnt || !rep) {
		mem_free(cnt);
		mem_free(rep);
		return -1;
	}
	for (int i = 0; i < ntried; i++) {
		const int *c = tried + (size_t)i * d;
		int u = 0;
		while (u < n && !same(rep[u], c, d))
			u++;
		if (u == n) {
			rep[n] = c;
			ym[n] = 0;
			nas_space_encode(s, c, x + (size_t)n * d);
			n++;
		}
		ym[u] += y[i];
		cnt[u]++;
	}
	for (int u = 0; u < n; u++)
		ym[u] /= cnt[u];
	/* order: the unique points by accuracy, best first (index of rep) */
	for (int u = 0; u < n; u++)
		order[u] = u;
	for (int a = 1; a < n; a++)
		for (int b = a; b > 0 && ym[order[b]] > ym[order[b - 1]]; b--) {
			int t = order[b];
			order[b] = order[b - 1];
			order[b - 1] = t;
		}
	for (int u = 0; u < n; u++) /* the caller wants choice vectors: rep */
		cnt[u] = (int)(rep[order[u]] - tried) / d;
	memcpy(order, cnt, (size_t)n * sizeof *order);
	mem_free(cnt);
	mem_free(rep);
	return n;
}

/* The candidates: perturbations and draws, distinct and untried. */
static int make_pool(const struct nas_space *s, const int *tried, int ntried, const int *top,
		     int ntop, uint64_t *rng, struct pool *p)
{
	int d = s->ndim;
	int want = 50 * d < 300 ? 300 : 50 * d > 2000 ? 2000 : 50 * d;
	p->d = d;
	p->c = mem_alloc((size_t)want * d * sizeof *p->c);
	p->x = mem_alloc((size_t)want * d * sizeof *p->x);
	p->pred = mem_alloc((size_t)want * sizeof *p->pred);
	p->dist = mem_alloc((size_t)want * sizeof *p->dist);
	p->live = mem_alloc((size_t)want);
	if (!p->c || !p->x || !p->pred || !p->dist || !p->live)
		return -1;
	for (int j = 0; j < 4 * want && p->n < want; j++) {
		int *c = p->c + (size_t)p->n * d;
		candidate(s, tried + (size_t)top[j / 2 % ntop] * d, rng, j, c);
		if (among(c, tried, ntried, d) || among(c, p->c, p->n, d))
			continue;
		nas_space_encode(s, c, p->x + (size_t)p->n * d);
		p->live[p->n++] = 1;
	}
	return 0;
}

/* The live candidate with the lowest w * V_s + (1 - w) * V_d, V_s the
 * predicted accuracy scaled to [0,1] (0: the best), V_d the distance to the
 * nearest point tried or chosen scaled to [0,1] (0: the farthest). */
static int pick(const struct pool *p, double w)
{
	double smin = INFINITY, smax = -INFINITY, dmin = INFINITY, dmax = -INFINITY;
	for (int j = 0; j < p->n; j++) {
		if (!p->live[j])
			continue;
		smin = fmin(smin, p->pred[j]), smax = fmax(smax, p->pred[j]);
		dmin = fmin(dmin, p->dist[j]), dmax = fmax(dmax, p->dist[j]);
	}
	int best = -1;
	double best_score = INFINITY;
	for (int j = 0; j < p->n; j++) {
		if (!p->live[j])
			continue;
		double vs = smax > smin ? (smax - p->pred[j]) / (smax - smin) : 0;
		double vd = dmax > dmin ? (dmax - p->dist[j]) / (dmax - dmin) : 0;
		double score = w * vs + (1 - w) * vd;
		if (score < best_score)
			best = j, best_score = score;
	}
	return best;
}

int nas_propose_surrogate(const struct nas_space *s, const int *tried, const double *y, int ntried,
			  int count, uint64_t seed, nas_valid_fn *valid, void *ctx, int *out,
			  struct error *err)
{
	static const double weights[] = {0.3, 0.5, 0.8, 0.95};
	int d = s->ndim, rc = -1, got = 0;
	uint64_t rng = seed;
	struct pool p = {0};
	struct nas_spline sp = {0};
	double *x = mem_alloc((size_t)ntried * d * sizeof *x);
	double *ym = mem_alloc((size_t)ntried * sizeof *ym);
	int *top = mem_alloc((size_t)ntried * sizeof *top);
	int *all = mem_alloc(((size_t)ntried + count) * d * sizeof *all);
	if (ntried < 1) {
		error_set(err, "the surrogate needs at least one tried architecture");
		goto out;
	}
	int nu;
	if (!x || !ym || !top || !all ||
	    (nu = unique_points(s, tried, y, ntried, x, ym, top)) < 0 ||
	    make_pool(s, tried, ntried, top, nu < 3 ? nu : 3, &rng, &p) < 0) {
		error_set(err, "surrogate search: out of memory");
		goto out;
	}
	/* Before the search, not when its random fill-in finds the space full
	 * ("24 tried: 1 more" for 5 trials and 19 proposed). */
	if (too_many(s, nu, count, err) < 0)
		goto out;
	if (nas_spline_fit(&sp, x, ym, nu, d, 1e-6, err) < 0)
		goto out;
	for (int j = 0; j < p.n; j++) {
		const double *xj = p.x + (size_t)j * d;
		p.pred[j] = nas_spline_eval(&sp, xj);
		p.dist[j] = INFINITY;
		for (int u = 0; u < nu; u++)
			p.dist[j] = fmin(p.dist[j], dist(xj, x + (size_t)u * d, d));
	}
	while (got < count) {
		int j = pick(&p, weights[got % 4]);
		if (j < 0)
			break; /* the pool ran dry: random draws fill the rest below */
		p.live[j] = 0;
		int ok = valid(ctx, p.c + (size_t)j * d, err);
		if (ok < 0)
			goto out;
		if (!ok)
			continue;
		memcpy(out + (size_t)got * d, p.c + (size_t)j * d, (size_t)d * sizeof *out);
		got++;
		const double *xj = p.x + (size_t)j * d;
		for (int i = 0; i < p.n; i++)
			p.dist[i] = fmin(p.dist[i], dist(p.x + (size_t)i * d, xj, d));
	}
	if (got < count) {
		memcpy(all, tried, (size_t)ntried * d * sizeof *all);
		memcpy(all + (size_t)ntried * d, out, (size_t)got * d * sizeof *all);
		if (nas_propose_random(s, all, ntried + got, count - got, nas_rng_next(&rng), valid,
				       ctx, out + (size_t)got * d, err) < 0)
			goto out;
	}
	rc = 0;
out:
	nas_spline_release(&sp);
	pool_release(&p);
	mem_free(x);
	mem_free(ym);
	mem_free(top);
	mem_free(all);
	return rc;
}
