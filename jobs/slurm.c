#include "jobs/slurm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/mem.h"
#include "jobs/local.h"
#include "jobs/slurm_cli.h"

char *slurm_array_spec(const int *idx, int n)
{
	struct buf b = BUF_INIT;
	for (int i = 0; i < n;) {
		int j = i;
		while (j + 1 < n && idx[j + 1] == idx[j] + 1)
			j++;
		if (b.len)
			buf_addc(&b, ',');
		if (j == i)
			buf_addf(&b, "%d", idx[i]);
		else
			buf_addf(&b, "%d-%d", idx[i], idx[j]);
		i = j + 1;
	}
	if (b.failed) {
		buf_release(&b);
		return NULL;
	}
	return buf_detach(&b);
}

/* What one stage sent: per chunk (MaxArraySize apart) its job id and indices. */
struct sent {
	int nchunks;
	long *job;      /* per chunk, 0 if nothing was sent for it */
	char **indices; /* per chunk: the array spec sent, to match aftercorr */
};

static void sent_release(struct sent *s)
{
	for (int c = 0; s->indices && c < s->nchunks; c++)
		mem_free(s->indices[c]);
	mem_free(s->indices);
	mem_free(s->job);
	memset(s, 0, sizeof(*s));
}

/* Tasks one array element of the stage runs, one after another (group). */
static int group_of(const struct job_res *r)
{
	return r->group > 1 ? r->group : 1;
}

static int write_script(const struct job_graph *g, const struct slurm_opts *o, int s,
			struct buf *path, struct error *err)
{
	buf_reset(path);
	buf_addf(path, "%s/%s.sh", o->script_dir, g->stages[s].name);
	if (o->dry) /* its path alone */
		return path->failed ? error_set(err, "out of memory") : 0;
	struct buf text = BUF_INIT;
	int k = group_of(g->stages[s].res);
	if (k == 1)
		buf_addf(
		    &text,
		    "#!/bin/sh\n"
		    "# cairn: stage %s of run %s. Each array element runs one task:\n"
		    "# task = CAIRN_TASK_OFFSET + SLURM_ARRAY_TASK_ID.\n"
		    "exec '%s' exec '%s' '%s' $((${CAIRN_TASK_OFFSET:-0} + SLURM_ARRAY_TASK_ID))\n",
		    g->stages[s].name, g->name, g->cairn, g->run_dir, g->stages[s].name);
	else
		buf_addf(&text,
			 "#!/bin/sh\n"
			 "# cairn: stage %s of run %s. Each array element runs %d tasks (group),\n"
			 "# one after another, from CAIRN_TASK_OFFSET + SLURM_ARRAY_TASK_ID * %d.\n"
			 "exec '%s' exec '%s' '%s' $((${CAIRN_TASK_OFFSET:-0} + "
			 "SLURM_ARRAY_TASK_ID * %d)) "
			 "%d\n",
			 g->stages[s].name, g->name, k, k, g->cairn, g->run_dir, g->stages[s].name,
			 k, k);
	int rc = text.failed || path->failed ? error_set(err, "out of memory")
					     : fs_write_atomic(path->s, text.s, text.len, err);
	buf_release(&text);
	return rc;
}

/* Time for sbatch: minutes, rounded up (Slurm's smallest unit). */
static void add_time(struct buf *b, long seconds)
{
	buf_addf(b, "--time=%ld", (seconds + 59) / 60);
}

struct args {
	char **v;
	int n, cap;
};

static int args_add(struct args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int args_add(struct args *a, const char *fmt, ...)
{
	if (a->n + 2 > a->cap) {
		int cap = a->cap ? 2 * a->cap : 32;
		char **v = mem_realloc(a->v, (size_t)cap * sizeof(char *));
		if (!v)
			return -1;
		a->v = v;
		a->cap = cap;
	}
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
	return 0;
}

static void args_release(struct args *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->v[i]);
	mem_free(a->v);
	memset(a, 0, sizeof(*a));
}

static const char *pick(const char *stage, const char *site)
{
	return stage && *stage ? stage : site && *site ? site : NULL;
}

/* The dependency clause of one chunk of stage s. */
static void dependency(const struct job_graph *g, const struct slurm_opts *o,
		       const struct sent *sent, int s, int chunk, const char *indices, struct buf *dep)
{
	const struct job_stage *st = &g->stages[s];
	for (int e = 0; e < st->ndeps; e++) {
		int u = st->deps[e].stage;
		const struct sent *up = &sent[u];
		/* aftercorr: element i waits for element i of the upstream chunk;
		 * only right when that chunk holds exactly the same indices, of
		 * elements of as many tasks. */
		int corr = st->deps[e].one_to_one &&
			   group_of(st->res) == group_of(g->stages[u].res) && chunk < up->nchunks &&
			   up->job[chunk] && !strcmp(up->indices[chunk], indices);
		const char *id = o->dry ? "#" : ""; /* a dry run's jobs: #1, #2, ... */
		if (corr) {
			buf_addf(dep, "%saftercorr:%s%ld", dep->len ? "," : "", id, up->job[chunk]);
		} else {
			for (int c = 0; c < up->nchunks; c++)
				if (up->job[c])
					buf_addf(dep, "%safterok:%s%ld", dep->len ? "," : "", id,
						 up->job[c]);
		}
		if (o->waits && o->waits->ids[u] && *o->waits->ids[u])
			buf_addf(dep, "%safterok:%s", dep->len ? "," : "", o->waits->ids[u]);
	}
}

static int submit_chunk(const struct job_graph *g, const struct slurm_opts *o, struct sent *sent,
			int s, int chunk, long max_array, const int *idx, int n,
			struct job_limits lim, const char *script, int serial, struct error *err)
{
	const struct job_stage *st = &g->stages[s];
	const struct job_res *r = st->res;
	const struct job_res *site = o->site;
	char *indices = slurm_array_spec(idx, n);
	if (!indices)
		return error_set(err, "out of memory");
	struct args a = {0};
	struct buf dep = BUF_INIT, t = BUF_INIT;
	int rc = 0;
	rc |= args_add(&a, "--job-name=%s.%s.%d", o->job_prefix, st->name, serial);
	if (r->throttle > 0)
		rc |= args_add(&a, "--array=%s%%%d", indices, r->throttle);
	else
		rc |= args_add(&a, "--array=%s", indices);
	int k = group_of(r);
	char tv[32];
	snprintf(tv, sizeof(tv), "%ld", lim.time_s);
	/* CAIRN_TIME_S: a task's time, which the wrapper records (and enforces
	   in a group); empty for none, over one from the submitting shell */
	rc |= args_add(&a, "--export=ALL,CAIRN_TASK_OFFSET=%ld,CAIRN_TIME_S=%s",
		       (long)chunk * max_array * k, lim.time_s > 0 ? tv : "");
	rc |= args_add(&a, "--output=%s/%s-%%A_%%a.out", o->script_dir, st->name);
	rc |= args_add(&a, "--open-mode=append");
	rc |= args_add(&a, "--chdir=%s", o->workdir);
	rc |= args_add(&a, "--cpus-per-task=%d", r->cpus > 0 ? r->cpus : 1);
	if (r->ranks > 1)
		rc |= args_add(&a, "--ntasks=%d", r->ranks);
	if (lim.mem_mb > 0)
		rc |= args_add(&a, "--mem=%ldM", lim.mem_mb);
	if (lim.time_s > 0) { /* `time` is a task's: an element runs k */
		add_time(&t, lim.time_s * k);
		rc |= args_add(&a, "%s", t.s);
	}
	if (r->gpus > 0)
		rc |= args_add(&a, "--gres=gpu:%d", r->gpus);
	const char *v;
	if ((v = pick(r->partition, site ? site->partition : NULL)))
		rc |= args_add(&a, "--partition=%s", v);
	if ((v = pick(r->account, site ? site->account : NULL)))
		rc |= args_add(&a, "--account=%s", v);
	if ((v = pick(r->qos, site ? site->qos : NULL)))
		rc |= args_add(&a, "--qos=%s", v);
	/* A node failure or preemption requeues the task when it may retry. */
	rc |= args_add(&a, r->retries > 0 ? "--requeue" : "--no-requeue");
	dependency(g, o, sent, s, chunk, indices, &dep);
	if (dep.len) {
		rc |= args_add(&a, "--dependency=%s", dep.s);
		rc |= args_add(&a, "--kill-on-invalid-dep=yes");
	}
	/* Free-form arguments last, so they can override: site first, then stage. */
	const char *extra[2] = {site ? site->sbatch_args : NULL, r->sbatch_args};
	for (int k = 0; k < 2; k++) {
		if (!extra[k])
			continue;
		char *copy = mem_strdup(extra[k]);
		if (!copy) {
			rc = -1;
			break;
		}
		for (char *save, *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
			rc |= args_add(&a, "%s", w);
		mem_free(copy);
	}
	buf_release(&t);
	buf_release(&dep);
	if (rc) {
		args_release(&a);
		mem_free(indices);
		return error_set(err, "out of memory");
	}
	long job = 0;
	if (o->dry) { /* what would go out, as a shell would take it */
		job = serial - o->first_serial + 1;
		fprintf(o->dry, "#%ld: sbatch", job);
		for (int i = 0; i < a.n; i++)
			fprintf(o->dry, strpbrk(a.v[i], " \t'\"$&;|<>()*?") ? " '%s'" : " %s",
				a.v[i]);
		fprintf(o->dry, " %s\n", script);
	} else {
		rc = slurm_sbatch(script, (const char *const *)a.v, &job, err);
	}
	args_release(&a);
	if (rc < 0) {
		error_prefix(err, "stage %s: ", st->name);
		mem_free(indices);
		return -1;
	}
	sent[s].job[chunk] = job;
	sent[s].indices[chunk] = indices;
	struct slurm_submission sub = {s, job, (int)(chunk * max_array * k), indices, k};
	if (!o->dry && o->record && o->record(o->record_ctx, &sub, err) < 0) {
		error_prefix(err, "job %ld of stage %s was submitted but not recorded: ", job, st->name);
		return -1;
	}
	return 0;
}

int slurm_submit(const struct job_graph *g, const struct slurm_opts *o, struct error *err)
{
	long max_array;
	if (slurm_max_array_size(&max_array, err) < 0) {
		if (!o->dry) {
			error_prefix(err,
				     "cannot reach the Slurm controller (try `scontrol ping`; is "
				     "SLURM_CONF set?): ");
			return -1;
		}
		fprintf(o->dry,
			"(Slurm's controller did not answer here: MaxArraySize taken as 1001)\n");
		max_array = 1001;
	}
	if (max_array < 1)
		max_array = 1001;
	struct sent *sent = mem_calloc((size_t)g->nstages, sizeof(*sent));
	struct buf script = BUF_INIT;
	int calls = 0, rc = 0;
	if (!sent)
		return error_set(err, "out of memory");
	if (!o->dry && fs_mkdir_p(o->script_dir, err) < 0) {
		mem_free(sent);
		return -1;
	}
	for (int k = 0; k < g->nstages && rc == 0; k++) {
		int s = g->order[k];
		const struct job_stage *st = &g->stages[s];
		/* Array elements of `group` tasks each, cut in chunks of max_array. */
		long grp = group_of(st->res);
		long nelem = (st->ntasks + grp - 1) / grp;
		int nchunks = (int)((nelem + max_array - 1) / max_array);
		sent[s].nchunks = nchunks;
		sent[s].job = mem_calloc((size_t)nchunks, sizeof(long));
		sent[s].indices = mem_calloc((size_t)nchunks, sizeof(char *));
		int *idx = mem_alloc((size_t)(max_array < nelem ? max_array : nelem) * sizeof(int));
		if (!sent[s].job || !sent[s].indices || !idx) {
			mem_free(idx);
			rc = error_set(err, "out of memory");
			break;
		}
		int wrote_script = 0;
		for (int c = 0; c < nchunks && rc == 0; c++) {
			int n = 0;
			/* one --mem and --time for the array: the most a task of it asks */
			struct job_limits lim = job_next_limits(st->res, NULL, NULL);
			long end = (c + 1) * max_array < nelem ? (c + 1) * max_array : nelem;
			for (long e = c * max_array; e < end; e++) {
				/* an element goes out when one of its tasks is to run */
				int any = 0;
				for (long t = e * grp; t < (e + 1) * grp && t < st->ntasks; t++) {
					int run = !st->todo || st->todo[t] == LOCAL_RUN;
					any |= run;
					if (run && st->limits) {
						const struct job_limits *l = &st->limits[t];
						lim.mem_mb = l->mem_mb > lim.mem_mb ? l->mem_mb : lim.mem_mb;
						lim.time_s = l->time_s > lim.time_s ? l->time_s : lim.time_s;
					}
				}
				if (any)
					idx[n++] = (int)(e - c * max_array);
			}
			if (n == 0)
				continue;
			if (!wrote_script) {
				rc = write_script(g, o, s, &script, err);
				wrote_script = 1;
				if (rc < 0)
					break;
			}
			rc = submit_chunk(g, o, sent, s, c, max_array, idx, n, lim, script.s,
					  o->first_serial + calls, err);
			calls++;
		}
		mem_free(idx);
	}
	for (int s = 0; s < g->nstages; s++)
		sent_release(&sent[s]);
	mem_free(sent);
	buf_release(&script);
	return rc < 0 ? -1 : calls;
}
