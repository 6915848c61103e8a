/* trial: proposals and trial folders on disk (trial.h). */
#include "nas/trial.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"

void nas_proposals_release(struct nas_proposals *ps)
{
	for (int i = 0; i < ps->n; i++)
		mem_free(ps->p[i].arch);
	mem_free(ps->p);
	mem_free(ps->space);
	mem_free(ps->method);
	memset(ps, 0, sizeof *ps);
}

static char *path_in(const char *dir, const char *name)
{
	struct buf b = BUF_INIT;
	buf_addf(&b, "%s/%s", dir, name);
	return b.failed ? (buf_release(&b), NULL) : buf_detach(&b);
}

static int ndim_of(const char *space)
{
	int n = 0;
	for (const char *p = space; *p; p++)
		n += *p == '{';
	return n;
}

int nas_proposals_write(const char *dir, const struct nas_proposals *ps, uint64_t seed, int ntried,
			struct error *err)
{
	int d = ndim_of(ps->space), rc = -1;
	json_t *j =
	    json_pack("{s:i, s:s, s:s, s:I, s:i, s:[]}", "version", 1, "space", ps->space, "method",
		      ps->method, "seed", (json_int_t)seed, "tried", ntried, "proposals");
	struct buf tsv = BUF_INIT;
	char *jp = path_in(dir, NAS_PROPOSALS_FILE), *tp = path_in(dir, "proposals.tsv");
	if (!j || !jp || !tp) {
		error_set(err, "out of memory");
		goto out;
	}
	buf_addf(&tsv, "# %s proposals from %s\nindex\tchoices\tparams\tmflops\tarch\n", ps->method,
		 ps->space);
	json_t *list = json_object_get(j, "proposals");
	for (int i = 0; i < ps->n; i++) {
		const struct nas_proposal *p = &ps->p[i];
		json_t *c = json_array();
		buf_addf(&tsv, "%d\t", i);
		for (int k = 0; k < d; k++) {
			json_array_append_new(c, json_integer(p->choice[k]));
			buf_addf(&tsv, k ? ",%d" : "%d", p->choice[k]);
		}
		buf_addf(&tsv, "\t%lld\t%.3f\t%s\n", p->params, p->mflops, p->arch);
		json_array_append_new(list, json_pack("{s:i, s:o, s:s, s:I, s:f}", "index", i,
						      "choices", c, "arch", p->arch, "params",
						      (json_int_t)p->params, "mflops", p->mflops));
	}
	if (tsv.failed || json_array_size(list) != (size_t)ps->n) {
		error_set(err, "out of memory");
		goto out;
	}
	if (fs_mkdir_p(dir, err) < 0 || jsonio_write_atomic(jp, j, err) < 0 ||
	    fs_write_atomic(tp, tsv.s, tsv.len, err) < 0)
		goto out;
	rc = 0;
out:
	json_decref(j);
	buf_release(&tsv);
	mem_free(jp);
	mem_free(tp);
	return rc;
}

static int proposals_parse(struct nas_proposals *ps, const json_t *j, struct error *err)
{
	const char *space = jsonio_str(j, "space", NULL), *method = jsonio_str(j, "method", NULL);
	const json_t *list = json_object_get(j, "proposals");
	if (jsonio_int(j, "version", 0) != 1 || !space || !method || !json_is_array(list))
		return error_set(err, "not a version-1 proposals file (space, method, proposals)");
	/* The choices index the space's slots: `trial` records them and the
	 * surrogate learns from them, so a hand-edited 9 or "1" is an error. */
	struct nas_space sp;
	if (nas_space_parse(&sp, space, err) < 0)
		return -1;
	int d = sp.ndim, nchoice[NAS_MAX_DIMS];
	memcpy(nchoice, sp.nchoice, sizeof nchoice);
	nas_space_release(&sp);
	ps->space = mem_strdup(space);
	ps->method = mem_strdup(method);
	ps->p = mem_calloc(json_array_size(list) + 1, sizeof *ps->p);
	if (!ps->space || !ps->method || !ps->p)
		return error_set(err, "out of memory");
	size_t i;
	const json_t *e;
	json_array_foreach(list, i, e)
	{
		struct nas_proposal *p = &ps->p[ps->n];
		const json_t *c = json_object_get(e, "choices");
		const char *arch = jsonio_str(e, "arch", NULL);
		if (!arch || !json_is_array(c) || json_array_size(c) != (size_t)d)
			return error_set(err, "proposal %zu: no arch, or not %d choices", i, d);
		for (int k = 0; k < d; k++) {
			const json_t *v = json_array_get(c, (size_t)k);
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) >= nchoice[k])
				return error_set(err,
						 "proposal %zu: choice %d is not an index in 0..%d",
						 i, k + 1, nchoice[k] - 1);
			p->choice[k] = (int)json_integer_value(v);
		}
		if (!(p->arch = mem_strdup(arch)))
			return error_set(err, "out of memory");
		p->params = jsonio_int(e, "params", 0);
		p->mflops = jsonio_num(e, "mflops", 0);
		ps->n++;
	}
	return 0;
}

int nas_proposals_read(struct nas_proposals *ps, const char *dir, struct error *err)
{
	memset(ps, 0, sizeof *ps);
	char *path = path_in(dir, NAS_PROPOSALS_FILE);
	if (!path)
		return error_set(err, "out of memory");
	json_t *j = jsonio_load(path, err);
	int rc = j ? proposals_parse(ps, j, err) : -1;
	if (rc < 0) {
		if (j)
			error_prefix(err, "%s: ", path);
		nas_proposals_release(ps);
	}
	json_decref(j);
	mem_free(path);
	return rc;
}

void nas_trial_release(struct nas_trial *t)
{
	mem_free(t->dir);
	mem_free(t->arch);
	mem_free(t->space);
	mem_free(t->method);
	mem_free(t->choices);
	mem_free(t->failure);
	memset(t, 0, sizeof *t);
}

/* proposal.json's part of a trial */
static int proposal_parse(struct nas_trial *t, const json_t *prop, struct error *err)
{
	const char *space = jsonio_str(prop, "space", NULL), *arch = jsonio_str(prop, "arch", NULL);
	const char *method = jsonio_str(prop, "method", NULL);
	const json_t *c = json_object_get(prop, "choices");
	if (!space || !arch || !method || !json_is_array(c))
		return error_set(err, "%s lacks space, arch, method or choices", NAS_PROPOSAL_FILE);
	t->index = (int)jsonio_int(prop, "index", -1);
	t->arch = mem_strdup(arch);
	t->space = mem_strdup(space);
	t->method = mem_strdup(method);
	struct buf b = BUF_INIT;
	size_t i;
	const json_t *e;
	json_array_foreach(c, i, e)
	    buf_addf(&b, i ? ",%lld" : "%lld", (long long)json_integer_value(e));
	t->choices = b.failed ? NULL : buf_detach(&b);
	buf_release(&b);
	if (!t->arch || !t->space || !t->method || !t->choices)
		return error_set(err, "out of memory");
	return 0;
}

/* metrics.json's part: the trainer's result for that proposal */
static int metrics_parse(struct nas_trial *t, const json_t *m, const char *metric,
			 struct error *err)
{
	const char *arch = t->arch;
	const char *trained = jsonio_str(m, "arch", NULL);
	if (!trained)
		return error_set(err, "metrics.json has no arch");
	if (strcmp(trained, arch) != 0)
		return error_set(err,
				 "trained '%s', not its proposal '%s' (does the command pass "
				 "--arch {arch}?)",
				 trained, arch);
	const json_t *v = json_object_get(m, metric);
	if (!json_is_number(v) || !isfinite(json_number_value(v)))
		return error_set(err, "metrics.json has no number '%s'", metric);
	t->accuracy = json_number_value(v);
	t->params = jsonio_int(m, "params", 0);
	t->train_s = jsonio_num(m, "train_time_s", 0);
	t->mflops = 1e3 * jsonio_num(m, "gflops_per_image", jsonio_num(m, "gflops_per_tile", 0));
	return 0;
}

int nas_trial_load(struct nas_trial *t, const char *dir, const char *metric, struct error *err)
{
	memset(t, 0, sizeof *t);
	char *pp = path_in(dir, NAS_PROPOSAL_FILE), *mp = path_in(dir, "metrics.json");
	char *fp = path_in(dir, NAS_FAILED_FILE);
	json_t *prop = NULL, *m = NULL;
	int rc = -1;
	t->accuracy = NAN;
	if (!pp || !mp || !fp || !(t->dir = mem_strdup(dir))) {
		error_set(err, "out of memory");
		goto out;
	}
	if (!fs_exists(pp)) {
		error_set(err, "trial %s: no %s (not a folder that `cairn-nas trial` wrote)", dir,
			  NAS_PROPOSAL_FILE);
		goto out;
	}
	t->failed = fs_exists(fp);
	if (!t->failed && !fs_exists(mp)) {
		error_set(err, "trial %s: no metrics.json (did its training finish?)", dir);
		goto out;
	}
	if (!(prop = jsonio_load(pp, err)) || !(m = jsonio_load(t->failed ? fp : mp, err)))
		goto out;
	if (proposal_parse(t, prop, err) < 0 ||
	    (!t->failed && metrics_parse(t, m, metric, err) < 0)) {
		error_prefix(err, "trial %s: ", dir);
		goto out;
	}
	if (t->failed && !(t->failure = mem_strdup(jsonio_str(m, "failure", "failed")))) {
		error_set(err, "out of memory");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		nas_trial_release(t);
	json_decref(prop);
	json_decref(m);
	mem_free(pp);
	mem_free(mp);
	mem_free(fp);
	return rc;
}
