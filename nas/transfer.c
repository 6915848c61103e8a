/* transfer: rank agreement and the search against random architectures
 * (transfer.h). */
#include "nas/transfer.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"

double nas_kendall_tau_b(const double *a, const double *b, int n)
{
	double conc = 0, disc = 0, ties_a = 0, ties_b = 0;
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++) {
			double da = a[i] - a[j], db = b[i] - b[j];
			if (da == 0 && db == 0)
				continue;
			if (da == 0)
				ties_a++;
			else if (db == 0)
				ties_b++;
			else if ((da > 0) == (db > 0))
				conc++;
			else
				disc++;
		}
	double den = sqrt((conc + disc + ties_a) * (conc + disc + ties_b));
	return den > 0 ? (conc - disc) / den : NAN;
}

double nas_kendall_p(double tau, int n)
{
	if (!isfinite(tau) || n < 2)
		return NAN;
	double z = 3 * tau * sqrt((double)n * (n - 1)) / sqrt(2.0 * (2 * n + 5));
	return erfc(fabs(z) / sqrt(2.0));
}

/* Ranks 1..n of v, ties given their mean rank. */
static void ranks(const double *v, int n, double *r)
{
	for (int i = 0; i < n; i++) {
		int below = 0, equal = 0;
		for (int j = 0; j < n; j++)
			below += v[j] < v[i], equal += v[j] == v[i];
		r[i] = below + (equal + 1) / 2.0;
	}
}

double nas_spearman_rho(const double *a, const double *b, int n)
{
	double *ra = mem_alloc((size_t)(n > 0 ? n : 1) * 2 * sizeof *ra);
	if (!ra || n < 2) {
		mem_free(ra);
		return NAN;
	}
	double *rb = ra + n, ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
	ranks(a, n, ra);
	ranks(b, n, rb);
	for (int i = 0; i < n; i++)
		ma += ra[i] / n, mb += rb[i] / n;
	for (int i = 0; i < n; i++) {
		sab += (ra[i] - ma) * (rb[i] - mb);
		saa += (ra[i] - ma) * (ra[i] - ma);
		sbb += (rb[i] - mb) * (rb[i] - mb);
	}
	mem_free(ra);
	return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double nas_expected_best_of(const double *v, int n, int k)
{
	if (n < 1 || k < 1 || k > n)
		return NAN;
	double *s = mem_alloc((size_t)n * sizeof *s);
	if (!s)
		return NAN;
	memcpy(s, v, (size_t)n * sizeof *s);
	qsort(s, (size_t)n, sizeof *s, cmp_double);
	/* P(max is the i-th smallest, 1-based) = C(i-1, k-1) / C(n, k), in logs
	 * (1 / C(2000, 1000) is below the smallest double). */
	double e = 0, log_cnk = lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0);
	for (int i = k; i <= n; i++)
		e += s[i - 1] *
		     exp(lgamma((double)i) - lgamma((double)k) - lgamma(i - k + 1.0) - log_cnk);
	mem_free(s);
	return e;
}

double nas_share_below(const double *v, int n, double x)
{
	if (n < 1 || isnan(x)) /* an architecture not trained on the target */
		return NAN;
	double below = 0;
	for (int i = 0; i < n; i++)
		below += v[i] < x ? 1 : v[i] == x ? 0.5 : 0;
	return below / n;
}

/* One architecture: its mean accuracy on each dataset (NAN: not trained
 * there), what it cost, and how it came to be trained. */
struct row {
	const char *arch;
	long long params;
	double proxy, target;
	int nproxy, ntarget;
	const char *proxy_method;
	int target_random, target_pick;
};

static struct row *row_of(struct row *rows, int *n, const struct nas_trial *t)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(rows[i].arch, t->arch) == 0)
			return &rows[i];
	struct row *r = &rows[(*n)++];
	memset(r, 0, sizeof *r);
	r->arch = t->arch;
	r->params = t->params;
	r->proxy = r->target = NAN;
	return r;
}

static void add(double *mean, int *count, double v)
{
	*mean = *count ? (*mean * *count + v) / (*count + 1) : v;
	++*count;
}

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* "0.874" or "-" */
static const char *fmt3(char *b, double v)
{
	if (isfinite(v))
		snprintf(b, 16, "%.4f", v);
	else
		strcpy(b, "-");
	return b;
}

/* The row with the highest proxy accuracy among those whose proxy method is
 * `method` (NULL: any), or NULL. */
static const struct row *best_proxy(const struct row *rows, int n, const char *method)
{
	const struct row *best = NULL;
	for (int i = 0; i < n; i++)
		if (isfinite(rows[i].proxy) &&
		    (!method || strcmp(rows[i].proxy_method, method) == 0) &&
		    (!best || rows[i].proxy > best->proxy))
			best = &rows[i];
	return best;
}

struct summary {
	int nrows, paired, nrandom, k_equal;
	int failed;    /* trainings that failed (trial --keep-going): left out */
	double k_time; /* random trainings the search's time would buy, before the cap at nrandom */
	double tau, p, rho, search_s, random_mean_s, expected_equal, median;
	double *random; /* target accuracies of the random architectures, ascending */
	const struct row *pick, *best, *best_random, *best_surrogate;
};

static void line(struct buf *md, const char *what, const struct row *r, const struct summary *s)
{
	char a[16], b[16], c[16];
	double share = r ? nas_share_below(s->random, s->nrandom, r->target) : NAN;
	buf_addf(md, "| %s | %s | %s | %s | %s |\n", what, r ? r->arch : "-",
		 fmt3(a, r ? r->proxy : NAN), fmt3(b, r ? r->target : NAN),
		 isfinite(share) ? (snprintf(c, sizeof c, "%.0f%%", 100 * share), c) : "-");
}

static json_t *row_json(const struct row *r, const struct summary *s)
{
	if (!r)
		return json_null();
	return json_pack("{s:s, s:I, s:o, s:o, s:o}", "arch", r->arch, "params",
			 (json_int_t)r->params, "proxy", num(r->proxy), "target", num(r->target),
			 "beats_random", num(nas_share_below(s->random, s->nrandom, r->target)));
}

static void write_markdown(struct buf *md, const struct row *rows, const struct summary *s, int np,
			   int nt)
{
	char a[16], b[16];
	buf_addf(md,
		 "# NASTransfer: does the search on the proxy transfer to the target?\n\n"
		 "%d trainings on the proxy, %d on the target, %d architectures in all.%s\n\n"
		 "## Do architectures rank the same?\n\n",
		 np, nt, s->nrows,
		 s->failed ? " Some trainings failed (trial --keep-going recorded them) and are "
			     "left out: see analysis.json's failed_trainings."
			   : "");
	if (s->paired >= 2)
		buf_addf(md,
			 "Over the %d architectures trained on both: Kendall's tau-b %.3f "
			 "(two-sided p = %.2g under no association), Spearman's rho %.3f.\n\n",
			 s->paired, s->tau, s->p, s->rho);
	else
		buf_addf(md, "%d architectures trained on both: too few to rank.\n\n", s->paired);
	char verdict[512] = "";
	if (s->pick && s->nrandom > 0 && isfinite(s->expected_equal))
		snprintf(verdict, sizeof verdict,
			 "The search's pick reaches %.4f on the target: above %.0f%% of the random "
			 "architectures trained there, and %s the %.4f that random search on the "
			 "target reaches on average in the same training time.\n\n",
			 s->pick->target,
			 100 * nas_share_below(s->random, s->nrandom, s->pick->target),
			 s->pick->target > s->expected_equal   ? "above"
			 : s->pick->target < s->expected_equal ? "below"
							       : "level with",
			 s->expected_equal);
	buf_addf(md,
		 "## Does the search beat random architectures on the target?\n\n"
		 "%s"
		 "| | architecture | proxy | target | beats random on target |\n"
		 "|---|---|---|---|---|\n",
		 verdict);
	line(md, "the search's pick (best on the target of its picks)", s->pick, s);
	line(md, "best on the proxy", s->best, s);
	line(md, "best on the proxy of the random sample (random search)", s->best_random, s);
	line(md, "best on the proxy of the surrogate's proposals", s->best_surrogate, s);
	if (s->nrandom > 0) {
		double *v = s->random;
		buf_addf(
		    md,
		    "| random architectures on the target: median, best of %d | | | %s, %s | |\n",
		    s->nrandom, fmt3(a, s->median), fmt3(b, v[s->nrandom - 1]));
		buf_addf(
		    md,
		    "\nThe search took %.0f s of training (proxy trials and picks on the target); "
		    "a random architecture %.0f s on the target. For the same time, %d random "
		    "architectures%s trained on the target give on average a best of %s.\n\n",
		    s->search_s, s->random_mean_s, s->k_equal,
		    s->k_time > s->k_equal ? " (all there are: the time would buy more)" : "",
		    fmt3(a, s->expected_equal));
		buf_adds(md, "Expected best of k random architectures on the target:");
		for (int k = 1; k <= s->nrandom; k *= 2)
			buf_addf(md, " k=%d %s%s", k,
				 fmt3(a, nas_expected_best_of(v, s->nrandom, k)),
				 2 * k <= s->nrandom ? "," : ".");
		buf_adds(md, "\n");
	}
	buf_adds(md,
		 "\n## Architectures\n\n| architecture | params | proxy | target | proposed by |\n"
		 "|---|---|---|---|---|\n");
	for (int i = 0; i < s->nrows; i++)
		buf_addf(md, "| %s | %lld | %s | %s | %s%s%s |\n", rows[i].arch, rows[i].params,
			 fmt3(a, rows[i].proxy), fmt3(b, rows[i].target),
			 rows[i].proxy_method ? rows[i].proxy_method : "",
			 rows[i].proxy_method && rows[i].target_pick ? ", " : "",
			 rows[i].target_pick ? "picked for the target" : "");
}

static void summarize(struct row *rows, struct summary *s, const struct nas_trial *proxy, int np,
		      const struct nas_trial *target, int nt, double *a, double *b)
{
	for (int i = 0; i < s->nrows; i++) {
		const struct row *r = &rows[i];
		if (isfinite(r->proxy) && isfinite(r->target))
			a[s->paired] = r->proxy, b[s->paired++] = r->target;
		if (r->target_random)
			s->random[s->nrandom++] = r->target;
		if (r->target_pick && (!s->pick || r->target > s->pick->target))
			s->pick = r;
	}
	s->tau = nas_kendall_tau_b(a, b, s->paired);
	s->p = nas_kendall_p(s->tau, s->paired);
	s->rho = nas_spearman_rho(a, b, s->paired);
	s->best = best_proxy(rows, s->nrows, NULL);
	s->best_random = best_proxy(rows, s->nrows, "random");
	s->best_surrogate = best_proxy(rows, s->nrows, "surrogate");
	qsort(s->random, (size_t)s->nrandom, sizeof *s->random, cmp_double);
	int n = s->nrandom;
	s->median = n ? (s->random[(n - 1) / 2] + s->random[n / 2]) / 2 : NAN;
	/* Training time: the search is every proxy trial and every pick on the
	 * target; a random architecture costs the mean of the random ones. */
	double random_s = 0;
	for (int i = 0; i < np; i++)
		s->search_s += proxy[i].train_s;
	for (int i = 0; i < nt; i++) {
		if (target[i].failed)
			continue;
		if (strcmp(target[i].method, "top") == 0)
			s->search_s += target[i].train_s;
		else if (strcmp(target[i].method, "random") == 0)
			random_s += target[i].train_s, s->random_mean_s += 1;
	}
	s->random_mean_s = s->random_mean_s > 0 ? random_s / s->random_mean_s : NAN;
	s->k_equal = 0;
	s->expected_equal = NAN;
	if (n > 0 && s->random_mean_s > 0) {
		double k = s->k_time = floor(s->search_s / s->random_mean_s);
		s->k_equal = k < 1 ? 1 : k > n ? n : (int)k;
		s->expected_equal = nas_expected_best_of(s->random, n, s->k_equal);
	}
}

static char *json_text(const struct row *rows, const struct summary *s, int np, int nt)
{
	json_t *best_of = json_object(), *archs = json_array();
	char key[16];
	for (int k = 1; k <= s->nrandom; k *= 2) {
		snprintf(key, sizeof key, "%d", k);
		json_object_set_new(best_of, key,
				    num(nas_expected_best_of(s->random, s->nrandom, k)));
	}
	for (int i = 0; i < s->nrows; i++)
		json_array_append_new(
		    archs,
		    json_pack("{s:s, s:I, s:o, s:o, s:s?, s:b}", "arch", rows[i].arch, "params",
			      (json_int_t)rows[i].params, "proxy", num(rows[i].proxy), "target",
			      num(rows[i].target), "proposed_by", rows[i].proxy_method, "picked",
			      rows[i].target_pick));
	json_t *j = json_pack(
	    "{s:i, s:i, s:i, s:i, s:{s:i, s:o, s:o, s:o}, s:o, s:o, s:o, s:o, "
	    "s:{s:i, s:o, s:o, s:o}, s:{s:o, s:o, s:i, s:o}, s:o}",
	    "proxy_trainings", np, "target_trainings", nt, "failed_trainings", s->failed,
	    "architectures", s->nrows, "ranks", "paired", s->paired, "kendall_tau_b", num(s->tau),
	    "kendall_p", num(s->p), "spearman_rho", num(s->rho), "pick", row_json(s->pick, s),
	    "best_on_proxy", row_json(s->best, s), "random_search_on_proxy",
	    row_json(s->best_random, s), "surrogate_best_on_proxy", row_json(s->best_surrogate, s),
	    "random_on_target", "count", s->nrandom, "median", num(s->median), "best",
	    num(s->nrandom ? s->random[s->nrandom - 1] : NAN), "expected_best_of", best_of,
	    "same_training_time", "search_s", num(s->search_s), "random_mean_s",
	    num(s->random_mean_s), "k", s->k_equal, "expected_best", num(s->expected_equal),
	    "archs", archs);
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	return text;
}

void nas_transfer_report_release(struct nas_transfer_report *r)
{
	mem_free(r->markdown);
	mem_free(r->tsv);
	free(r->json); /* jansson's */
	mem_free(r->summary);
	memset(r, 0, sizeof *r);
}

int nas_transfer_analyze(const struct nas_trial *proxy, int np, const struct nas_trial *target,
			 int nt, struct nas_transfer_report *r, struct error *err)
{
	memset(r, 0, sizeof *r);
	int cap = np + nt, rc = -1;
	struct row *rows = mem_calloc((size_t)cap + 1, sizeof *rows);
	double *a = mem_calloc((size_t)cap + 1, sizeof *a),
	       *b = mem_calloc((size_t)cap + 1, sizeof *b);
	struct summary s = {0};
	s.random = mem_calloc((size_t)cap + 1, sizeof *s.random);
	struct buf md = BUF_INIT, tsv = BUF_INIT, sum = BUF_INIT;
	if (!rows || !a || !b || !s.random)
		goto oom;
	for (int i = 0; i < np; i++) {
		if (proxy[i].failed) {
			s.failed++;
			continue;
		}
		struct row *w = row_of(rows, &s.nrows, &proxy[i]);
		add(&w->proxy, &w->nproxy, proxy[i].accuracy);
		if (!w->proxy_method)
			w->proxy_method = proxy[i].method;
	}
	for (int i = 0; i < nt; i++) {
		if (target[i].failed) {
			s.failed++;
			continue;
		}
		struct row *w = row_of(rows, &s.nrows, &target[i]);
		add(&w->target, &w->ntarget, target[i].accuracy);
		w->target_random |= strcmp(target[i].method, "random") == 0;
		w->target_pick |= strcmp(target[i].method, "top") == 0;
	}
	summarize(rows, &s, proxy, np, target, nt, a, b);
	write_markdown(&md, rows, &s, np, nt);
	buf_adds(&tsv, "arch\tparams\tproxy\ttarget\tproposed_by\tpicked\n");
	char x[16], y[16];
	for (int i = 0; i < s.nrows; i++)
		buf_addf(&tsv, "%s\t%lld\t%s\t%s\t%s\t%d\n", rows[i].arch, rows[i].params,
			 fmt3(x, rows[i].proxy), fmt3(y, rows[i].target),
			 rows[i].proxy_method ? rows[i].proxy_method : "-", rows[i].target_pick);
	if (s.paired >= 2)
		buf_addf(&sum,
			 "ranks: Kendall's tau-b %.3f (p %.3g), Spearman's rho %.3f over %d "
			 "architectures trained on both\n",
			 s.tau, s.p, s.rho, s.paired);
	else /* as report.md says it, not "tau-b nan (p nan)" */
		buf_addf(&sum, "ranks: %d architectures trained on both: too few to rank\n",
			 s.paired);
	if (s.pick && s.nrandom)
		buf_addf(&sum,
			 "search's pick: %s on the target, above %.0f%% of %d random architectures "
			 "(median %s)\n",
			 fmt3(x, s.pick->target),
			 100 * nas_share_below(s.random, s.nrandom, s.pick->target), s.nrandom,
			 fmt3(y, s.median));
	if (s.failed)
		buf_addf(&sum, "%d failed trainings left out\n", s.failed);
	if (s.k_equal)
		buf_addf(&sum,
			 "random search on the target for the same training time (%d "
			 "architectures): expected best %s\n",
			 s.k_equal, fmt3(x, s.expected_equal));
	if (md.failed || tsv.failed || sum.failed || !(r->json = json_text(rows, &s, np, nt)))
		goto oom;
	r->markdown = buf_detach(&md);
	r->tsv = buf_detach(&tsv);
	r->summary = buf_detach(&sum);
	rc = 0;
	goto out;
oom:
	error_set(err, "analysis: out of memory");
out:
	buf_release(&md);
	buf_release(&tsv);
	buf_release(&sum);
	mem_free(rows);
	mem_free(a);
	mem_free(b);
	mem_free(s.random);
	return rc;
}
