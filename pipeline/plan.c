#include "pipeline/plan.h"

#include <stdio.h>
#include <string.h>

#include "core/jsonio.h"
#include "core/mem.h"
#include "pipeline/release.h"

const char *plan_reason_name(enum plan_reason w)
{
	static const char *names[WHY_LAST + 1] = {
	    "never ran",      "failed",		  "cancelled", "lost",	       "outputs changed",
	    "key changed",    "input reruns",	  "done",      "running",      "queued",
	    "beyond --until", "asked by --rerun", "released",  "needed again", "job cancelled"};
	return w >= 0 && w <= WHY_LAST ? names[w] : "?";
}

const char *plan_action_name(enum plan_action a)
{
	return a == PLAN_RUN ? "run" : a == PLAN_WAIT ? "wait" : "skip";
}

struct digests {
	const struct plan *p;
};

static int cached_digest(void *ctx, int stage, int task, char digest[65], struct error *err)
{
	const struct plan *p = ((struct digests *)ctx)->p;
	const char *d = p->stages[stage].digest ? p->stages[stage].digest[task] : "";
	if (!d[0])
		return error_set(err, "input task %d of stage %d is not done", task, stage);
	memcpy(digest, d, 65);
	return 0;
}

/* Does any input task of (stage, task) rerun or still run? */
static int upstream_moves(const struct plan *p, const struct spec_stage *st, int task)
{
	for (int e = 0; e < st->nin; e++) {
		const struct plan_stage *up = &p->stages[st->in[e].from];
		if (st->in[e].one_to_one) {
			if (up->action[task] != PLAN_SKIP)
				return 1;
		} else if (up->run + up->wait > 0) {
			return 1;
		}
	}
	return 0;
}

/* Does any input task of (stage, task) run again? */
static int upstream_reruns(const struct plan *p, const struct spec_stage *st, int task)
{
	for (int e = 0; e < st->nin; e++) {
		const struct plan_stage *up = &p->stages[st->in[e].from];
		/* A job that waits for all of an input (afterok on its arrays)
		 * also never runs when an element of those arrays is cancelled
		 * because the spec dropped it. */
		if (st->in[e].one_to_one ? up->action[task] == PLAN_RUN : up->run > 0 || up->dropped > 0)
			return 1;
	}
	return 0;
}

/* A done task: still valid? Fills the digest cache. */
static int check_done(struct plan *p, const struct run *r, int s, int t, int verify,
		      struct error *err)
{
	const struct spec_stage *st = &r->spec.stages[s];
	struct plan_stage *ps = &p->stages[s];
	struct buf path = BUF_INIT, why = BUF_INIT;
	task_path(&path, r->dir, st->name, t, "done.json");
	json_t *done = jsonio_load(path.s, err);
	buf_release(&path);
	if (!done) {
		/* Unreadable (a crash of the machine in the middle of writing it,
		 * on a file system that does not order data before renames): not
		 * done, so it runs again. */
		ps->action[t] = PLAN_RUN;
		ps->reason[t] = WHY_OUTPUT;
		ps->digest[t][0] = '\0';
		return 0;
	}
	const char *d = jsonio_str(done, "manifest_sha256", "");
	snprintf(ps->digest[t], 65, "%s", d);
	task_path(&path, r->dir, st->name, t, "out");
	/* Released: out/ is empty on purpose, the manifest says what was. */
	int released = ps->released[t] = (unsigned char)release_done(r->dir, st->name, t);
	int rc = released ? 0
			  : task_manifest_check(path.s, json_object_get(done, "manifest"), verify,
						&why, err);
	buf_release(&path);
	buf_release(&why);
	if (rc < 0) {
		json_decref(done);
		return -1;
	}
	if (rc > 0) {
		ps->action[t] = PLAN_RUN;
		ps->reason[t] = WHY_OUTPUT;
		ps->digest[t][0] = '\0';
	} else if (upstream_moves(p, st, t)) {
		ps->action[t] = PLAN_RUN;
		ps->reason[t] = WHY_UPSTREAM;
	} else {
		char key[65];
		struct digests dc = {p};
		if (task_key_with(&r->spec, r->dir, s, t, cached_digest, &dc, key, NULL, err) < 0) {
			/* an input is not done (deleted by hand?): rerun this one too */
			ps->action[t] = PLAN_RUN;
			ps->reason[t] = WHY_UPSTREAM;
		} else if (!task_key_same(&r->spec, r->dir, s, t, cached_digest, &dc,
					  jsonio_str(done, "key", ""), key)) {
			ps->action[t] = PLAN_RUN;
			ps->reason[t] = WHY_KEY;
		} else {
			ps->action[t] = PLAN_SKIP;
			ps->reason[t] = released ? WHY_RELEASED : WHY_DONE;
		}
	}
	json_decref(done);
	return 0;
}

/* Does a task that runs read task t of stage u? */
static int read_by_running(const struct plan *p, const struct spec *s, int u, int t)
{
	for (int j = 0; j < s->nstages; j++)
		for (int e = 0; e < s->stages[j].nin; e++)
			if (s->stages[j].in[e].from == u &&
			    (s->stages[j].in[e].one_to_one ? p->stages[j].action[t] == PLAN_RUN
							   : p->stages[j].run > 0))
				return 1;
	return 0;
}

/* Mark in pull[stage][task] the released tasks that a task which runs
 * reads (whatever their own reason: one that runs only because its input
 * does would stay released if its key came out the same). Returns how many
 * it newly marked, -1 out of memory. */
static int pull_needed(const struct plan *p, const struct spec *s, unsigned char **pull)
{
	int n = 0;
	for (int u = 0; u < s->nstages; u++) {
		const struct plan_stage *pu = &p->stages[u];
		for (int t = 0; pu->released && t < pu->ntasks; t++) {
			if (!pu->released[t] || !read_by_running(p, s, u, t))
				continue;
			if (!pull[u] && !(pull[u] = mem_calloc((size_t)pu->ntasks, 1)))
				return -1;
			n += !pull[u][t];
			pull[u][t] = 1;
		}
	}
	return n;
}

/* Queued jobs of stage i are cancelled: the tasks of their groups (group =
 * K, one job runs K tasks) that were waited for go with them, so they are
 * sent again (before the stages after i are planned: their own jobs may
 * wait for these). */
static int regroup(struct plan *p, const struct run *r, int i, struct error *err)
{
	const struct spec_stage *st = &r->spec.stages[i];
	struct plan_stage *ps = &p->stages[i];
	for (int t = 0; t < st->ntasks; t++) {
		struct task_info ti;
		if (ps->action[t] != PLAN_WAIT)
			continue;
		if (task_read(r->dir, st->name, t, 1, &ti, err) < 0) {
			error_prefix(err, "%s/%d: ", st->name, t);
			return -1;
		}
		sched_view_apply(&p->view, r, i, t, &ti);
		if (ti.job[0] && buf_has_word(&p->cancel, ti.job)) {
			ps->action[t] = PLAN_RUN;
			ps->reason[t] = WHY_GROUP;
			ps->wait--;
			ps->run++;
		}
	}
	return 0;
}

/* One pass over every task, upstream first. */
static int plan_pass(struct plan *p, const struct run *r, int fresh, int verify,
		     unsigned char *const *rerun, unsigned char *const *pull, struct error *err)
{
	const struct spec *s = &r->spec;
	p->run = p->skip = p->wait = 0;
	for (int k = 0; k < s->nstages; k++) {
		int i = s->order[k];
		const struct spec_stage *st = &s->stages[i];
		struct plan_stage *ps = &p->stages[i];
		ps->run = ps->skip = ps->wait = 0;
		int cancelled = 0;
		for (int t = 0; t < st->ntasks; t++) {
			struct task_info ti;
			if (fresh) {
				memset(&ti, 0, sizeof(ti));
				ti.state = TASK_PENDING;
			} else if (task_read(r->dir, st->name, t, 1, &ti, err) < 0) {
				error_prefix(err, "%s/%d: ", st->name, t);
				return -1;
			} else {
				sched_view_apply(&p->view, r, i, t, &ti);
				ps->released[t] = 0; /* check_done says */
			}
			ps->state[t] = (unsigned char)ti.state;
			/* a range: what its last attempt had, doubled after an oom
			   (mem) or a timeout (time) */
			if (ps->limits) {
				struct job_limits had = {ti.mem_mb, ti.time_s};
				ps->limits[t] = job_next_limits(
				    &st->res, &had, ti.state == TASK_FAILED ? ti.kind : NULL);
			}
			switch (ti.state) {
			case TASK_PENDING:
				ps->action[t] = ti.queued ? PLAN_WAIT : PLAN_RUN;
				ps->reason[t] = ti.queued ? WHY_QUEUED : WHY_NEW;
				break;
			case TASK_RUNNING:
				ps->action[t] = PLAN_WAIT;
				ps->reason[t] = WHY_RUNNING;
				break;
			case TASK_FAILED:
				ps->action[t] = PLAN_RUN;
				ps->reason[t] = !strcmp(ti.kind, "lost") ? WHY_LOST : WHY_FAILED;
				break;
			case TASK_CANCELLED:
				ps->action[t] = PLAN_RUN;
				ps->reason[t] = WHY_CANCELLED;
				break;
			case TASK_DONE:
				if (check_done(p, r, i, t, verify, err) < 0) {
					error_prefix(err, "%s/%d: ", st->name, t);
					return -1;
				}
				if (rerun && rerun[i] && rerun[i][t] &&
				    ps->action[t] == PLAN_SKIP) {
					ps->action[t] = PLAN_RUN;
					ps->reason[t] = WHY_RERUN;
				}
				/* A task that reads it runs: it must run, whatever its
				 * own inputs do (release.h: a `rerun` mark) */
				if (pull[i] && pull[i][t] &&
				    (ps->action[t] == PLAN_SKIP || ps->reason[t] == WHY_UPSTREAM)) {
					if (ps->action[t] == PLAN_SKIP)
						ps->action[t] = PLAN_RUN;
					ps->reason[t] = WHY_NEEDED;
				}
				break;
			}
			if (ps->action[t] == PLAN_WAIT && ti.queued && ti.job[0] &&
			    upstream_reruns(p, st, t)) {
				/* Its job waits for the old job of an input that reruns:
				 * it would run too early, or be cancelled when that input
				 * failed. Cancel it and submit it again after the input. */
				ps->action[t] = PLAN_RUN;
				ps->reason[t] = WHY_UPSTREAM;
				/* once: the tasks of a group share their job */
				if (!buf_has_word(&p->cancel, ti.job)) {
					buf_addf(&p->cancel, "%s%s", p->cancel.len ? " " : "",
						 ti.job);
					p->ncancel++;
					cancelled = 1;
				}
			}
			if (ps->action[t] == PLAN_RUN)
				ps->run++;
			else if (ps->action[t] == PLAN_WAIT)
				ps->wait++;
			else
				ps->skip++;
		}
		if (cancelled && regroup(p, r, i, err) < 0)
			return -1;
		p->run += ps->run;
		p->skip += ps->skip;
		p->wait += ps->wait;
	}
	return 0;
}

int plan_make(struct plan *p, const struct run *r, int fresh, int verify, struct error *err)
{
	return plan_make_rerun(p, r, fresh, verify, NULL, err);
}

int plan_make_rerun(struct plan *p, const struct run *r, int fresh, int verify,
		    unsigned char *const *rerun, struct error *err)
{
	const struct spec *s = &r->spec;
	memset(p, 0, sizeof(*p));
	if (!fresh && sched_view_load(&p->view, r, err) < 0)
		return -1;
	p->nstages = s->nstages;
	p->stages = mem_calloc((size_t)s->nstages, sizeof(*p->stages));
	if (!p->stages)
		return error_set(err, "out of memory");
	for (int i = 0; i < s->nstages; i++) {
		struct plan_stage *ps = &p->stages[i];
		int n = s->stages[i].ntasks;
		ps->ntasks = n;
		ps->action = mem_calloc((size_t)n, 1);
		ps->reason = mem_calloc((size_t)n, 1);
		ps->state = mem_calloc((size_t)n, 1);
		if (!fresh) {
			ps->digest = mem_calloc((size_t)n, 65);
			ps->released = mem_calloc((size_t)n, 1);
		}
		int range = job_has_range(&s->stages[i].res);
		if (range)
			ps->limits = mem_calloc((size_t)n, sizeof(*ps->limits));
		if (!ps->action || !ps->reason || !ps->state ||
		    (!fresh && (!ps->digest || !ps->released)) || (range && !ps->limits))
			return error_set(err, "out of memory");
	}
	long long *dropped = mem_calloc((size_t)s->nstages + 1, sizeof(*dropped));
	if (!dropped)
		return error_set(err, "out of memory");
	if (!fresh)
		p->ncancel += sched_orphans(&p->view, r, &p->cancel, dropped);
	for (int i = 0; i < s->nstages; i++)
		p->stages[i].dropped = dropped[i];
	mem_free(dropped);
	/* Plan again while released tasks are found needed: each pass pulls
	 * back more (up a chain of temp stages), never fewer. */
	unsigned char **pull = mem_calloc((size_t)s->nstages + 1, sizeof(*pull));
	size_t cancel_len = p->cancel.len;
	long long ncancel = p->ncancel;
	int rc = pull ? 0 : error_set(err, "out of memory"), more = 1;
	while (rc == 0 && more) {
		p->cancel.len = cancel_len; /* what the pass before added goes */
		if (p->cancel.s)
			p->cancel.s[cancel_len] = '\0';
		p->ncancel = ncancel;
		rc = plan_pass(p, r, fresh, verify, rerun, pull, err);
		if (rc == 0 && (more = pull_needed(p, s, pull)) < 0)
			rc = error_set(err, "out of memory");
	}
	for (int i = 0; pull && i < s->nstages; i++)
		mem_free(pull[i]);
	mem_free(pull);
	if (rc == 0 && p->cancel.failed)
		return error_set(err, "out of memory");
	return rc;
}

int plan_until(struct plan *p, const struct spec *s, const char *list, unsigned char *keep,
	       struct error *err)
{
	memset(keep, 0, (size_t)s->nstages);
	for (const char *a = list;;) {
		size_t n = strcspn(a, ",");
		if (!n)
			return error_set(err, "--until %s: an empty stage name", list);
		int found = -1;
		for (int i = 0; i < s->nstages && found < 0; i++)
			if (strlen(s->stages[i].name) == n && !strncmp(s->stages[i].name, a, n))
				found = i;
		if (found < 0) {
			struct buf names = BUF_INIT;
			char word[256], hint[320];
			snprintf(word, sizeof(word), "%.*s", (int)n, a);
			for (int i = 0; i < s->nstages; i++)
				buf_addf(&names, "%s%s", i ? ", " : "", s->stages[i].name);
			error_set(err, "--until: '%.*s' is no stage of %s%s (its stages: %s)",
				  (int)n, a, s->name, spec_stage_hint(s, word, hint, sizeof(hint)),
				  names.failed ? "?" : buf_str(&names));
			buf_release(&names);
			return -1;
		}
		keep[found] = 1;
		if (!a[n])
			break;
		a += n + 1;
	}
	/* downstream first: a kept stage keeps its inputs */
	for (int k = s->nstages; k-- > 0;) {
		const struct spec_stage *st = &s->stages[s->order[k]];
		if (keep[s->order[k]])
			for (int e = 0; e < st->nin; e++)
				keep[st->in[e].from] = 1;
	}
	for (int i = 0; p && i < s->nstages; i++) {
		struct plan_stage *ps = &p->stages[i];
		for (int t = 0; !keep[i] && t < ps->ntasks; t++)
			if (ps->action[t] == PLAN_RUN) {
				ps->action[t] = PLAN_SKIP;
				ps->reason[t] = WHY_UNTIL;
				ps->run--, ps->skip++;
				p->run--, p->skip++, p->held++;
			}
	}
	/* Released tasks pulled back for readers now held stay released, and
	 * so on up the chain. */
	for (int changed = p != NULL; changed;) {
		changed = 0;
		for (int u = 0; u < s->nstages; u++) {
			struct plan_stage *pu = &p->stages[u];
			for (int t = 0; t < pu->ntasks; t++)
				if (pu->reason[t] == WHY_NEEDED && pu->action[t] == PLAN_RUN &&
				    !read_by_running(p, s, u, t)) {
					pu->action[t] = PLAN_SKIP;
					pu->reason[t] = WHY_RELEASED;
					pu->run--, pu->skip++;
					p->run--, p->skip++;
					changed = 1;
				}
		}
	}
	return 0;
}

int plan_waits(const struct plan *p, int stage, struct buf *ids)
{
	const struct sched_view *v = &p->view;
	const struct plan_stage *ps = &p->stages[stage];
	for (int k = 0; k < v->nsubs; k++) {
		const struct sched_sub *sub = &v->subs[k];
		if (sub->stage != stage)
			continue;
		int whole = 1, any = 0;
		size_t mark = ids->len;
		for (size_t i = 0; i < v->jobs.n; i++) {
			const struct slurm_job *j = &v->jobs.v[i];
			if (j->array_job_id != sub->job_id)
				continue;
			int first, n, wait = 0;
			sched_sub_tasks(sub, j->array_task, ps->ntasks, &first, &n);
			for (int t = first; t < first + n; t++)
				wait |= ps->action[t] == PLAN_WAIT;
			if (wait) {
				any = 1;
				buf_addf(ids, "%s%ld", ids->len ? ":" : "", j->array_job_id);
				if (j->array_task >= 0)
					buf_addf(ids, "_%d", j->array_task);
			} else if (strcmp(j->state, "COMPLETED") || j->exit_code || j->signal) {
				whole = 0; /* failed, cancelled now, or not waited for */
			}
		}
		if (any && whole) { /* the array's id alone */
			ids->len = mark;
			buf_addf(ids, "%s%ld", ids->len ? ":" : "", sub->job_id);
		} else if (!any) {
			ids->len = mark;
		}
		if (ids->s)
			ids->s[ids->len] = '\0';
	}
	return ids->failed ? -1 : 0;
}

void plan_release(struct plan *p)
{
	for (int i = 0; p->stages && i < p->nstages; i++) { /* stages NULL: out of memory */
		mem_free(p->stages[i].action);
		mem_free(p->stages[i].reason);
		mem_free(p->stages[i].state);
		mem_free(p->stages[i].digest);
		mem_free(p->stages[i].released);
		mem_free(p->stages[i].limits);
	}
	mem_free(p->stages);
	sched_view_release(&p->view);
	buf_release(&p->cancel);
	memset(p, 0, sizeof(*p));
}

/* Which key part changed: compare the done.json's key_parts with now. */
/* Whether `was` is the command's hash as cairn-key-1 made it (with the
 * run's path in it): a run made before keys left the path out. */
static int legacy_command(const struct run *r, int s, int t, const char *was)
{
	struct error err;
	char sha[65];
	return task_command_sha(&r->spec, r->dir, s, t, 1, sha, &err) == 0 && !strcmp(sha, was);
}

static void explain_key(const struct run *r, int s, int t, const json_t *done, struct buf *out)
{
	json_t *now = NULL;
	char key[65];
	struct error err;
	if (task_key(&r->spec, r->dir, s, t, key, &now, &err) < 0) {
		buf_addf(out, "its inputs changed (%s)", err.msg);
		return;
	}
	const json_t *was = json_object_get(done, "key_parts");
	const char *sep = "";
	if (strcmp(jsonio_str(was, "command", ""), jsonio_str(now, "command", "")) &&
	    !legacy_command(r, s, t, jsonio_str(was, "command", ""))) {
		buf_adds(out, "its command changed");
		sep = "; ";
	}
	if (strcmp(jsonio_str(was, "resources", ""), jsonio_str(now, "resources", ""))) {
		buf_addf(out, "%sits resources changed (%s -> %s)", sep, jsonio_str(was, "resources", "?"),
			 jsonio_str(now, "resources", "?"));
		sep = "; ";
	}
	const json_t *wi = json_object_get(was, "inputs"), *ni = json_object_get(now, "inputs");
	const char *name;
	const json_t *v;
	json_object_foreach((json_t *)ni, name, v)
	{
		const char *old = jsonio_str(wi, name, NULL);
		if (!old)
			buf_addf(out, "%sinput %s is new", sep, name);
		else if (strcmp(old, json_string_value(v)))
			buf_addf(out, "%sinput %s changed", sep, name);
		else
			continue;
		sep = "; ";
	}
	if (!*sep)
		buf_adds(out, "its key changed");
	json_decref(now);
}

/* "exit 3", "signal 9", "timeout": how an attempt failed. */
static void add_failure(struct buf *out, const struct task_info *ti)
{
	if (!strcmp(ti->kind, "exit"))
		buf_addf(out, "exit %d", ti->exit_code);
	else if (!strcmp(ti->kind, "signal"))
		buf_addf(out, "signal %d", ti->signal);
	else
		buf_adds(out, ti->kind);
}

void plan_explain(const struct plan *p, const struct run *r, int s, int t, struct buf *out)
{
	const struct spec_stage *st = &r->spec.stages[s];
	enum plan_reason why = p->stages[s].reason[t];
	struct task_info ti;
	struct error err;
	if (task_read(r->dir, st->name, t, 1, &ti, &err) < 0) {
		buf_addf(out, "cannot read its markers: %s", err.msg);
		return;
	}
	sched_view_apply(&p->view, r, s, t, &ti);
	switch (why) {
	case WHY_NEW: {
		buf_adds(out, "never ran");
		const char *sep = ": waits for";
		for (int e = 0; e < st->nin; e++) {
			int u = st->in[e].from;
			const struct plan_stage *up = &p->stages[u];
			if (st->in[e].one_to_one && up->action[t] != PLAN_SKIP)
				buf_addf(out, "%s %s/%d (%s)", sep, r->spec.stages[u].name, t,
					 task_state_name(up->state[t]));
			else if (!st->in[e].one_to_one && up->run + up->wait > 0)
				buf_addf(out, "%s %s (%lld of %d tasks not done)", sep,
					 r->spec.stages[u].name, up->run + up->wait, up->ntasks);
			else
				continue;
			sep = ",";
		}
		break;
	}
	case WHY_FAILED:
		if (!strcmp(ti.kind, "exit"))
			buf_addf(out, "exit %d on attempt %d", ti.exit_code, ti.attempt);
		else if (!strcmp(ti.kind, "signal"))
			buf_addf(out, "killed by signal %d on attempt %d", ti.signal, ti.attempt);
		else if (ti.sched_state[0])
			buf_addf(out, "%s: Slurm job %s ended %s (reason %s, exit %d, signal %d)",
				 ti.kind, ti.job, ti.sched_state, ti.sched_reason, ti.exit_code, ti.signal);
		else
			buf_addf(out, "%s on attempt %d%s%s", ti.kind, ti.attempt,
				 ti.job[0] ? ", Slurm job " : "", ti.job);
		if (ti.message[0])
			buf_addf(out, ": %s", ti.message);
		break;
	case WHY_CANCELLED:
		if (ti.sched_state[0] && !strcmp(ti.kind, "dependency"))
			buf_addf(out, "an input failed: Slurm cancelled job %s (%s, reason %s)", ti.job,
				 ti.sched_state, ti.sched_reason);
		else if (ti.sched_state[0])
			buf_addf(out, "Slurm job %s ended %s (reason %s): scancel or `cairn cancel`", ti.job,
				 ti.sched_state, ti.sched_reason);
		else if (ti.message[0])
			buf_adds(out, ti.message);
		else
			buf_addf(out, "on attempt %d", ti.attempt);
		break;
	case WHY_LOST:
		if (ti.host[0])
			buf_addf(out, "lost: started on %s (pid %ld) at %s, and that process is gone without a marker",
				 ti.host, ti.pid, ti.started);
		else
			buf_addf(out, "lost: Slurm job %s ended without a marker, and Slurm no longer knows it",
				 ti.job);
		break;
	case WHY_OUTPUT: {
		struct buf path = BUF_INIT;
		task_path(&path, r->dir, st->name, t, "done.json");
		json_t *done = jsonio_load(path.s, &err);
		buf_reset(&path);
		task_path(&path, r->dir, st->name, t, "out");
		buf_adds(out, "but ");
		size_t said = out->len;
		if (!done || task_manifest_check(path.s, json_object_get(done, "manifest"), 1, out, &err) < 0)
			buf_addf(out, "its outputs cannot be checked: %s", err.msg);
		else if (out->len == said) /* what resume saw: times only */
			buf_adds(out, "its files' modification times changed, not their contents (a copy "
				      "that did not keep times?): resume --verify keeps it");
		json_decref(done);
		buf_release(&path);
		break;
	}
	case WHY_KEY: {
		struct buf path = BUF_INIT;
		task_path(&path, r->dir, st->name, t, "done.json");
		json_t *done = jsonio_load(path.s, &err);
		buf_adds(out, "but ");
		if (done)
			explain_key(r, s, t, done, out);
		else
			buf_adds(out, err.msg);
		json_decref(done);
		buf_release(&path);
		break;
	}
	case WHY_UPSTREAM: {
		buf_adds(out, "an input reruns:");
		for (int e = 0; e < st->nin; e++) {
			int u = st->in[e].from;
			const struct plan_stage *up = &p->stages[u];
			if (st->in[e].one_to_one && up->action[t] != PLAN_SKIP)
				buf_addf(out, " %s/%d", r->spec.stages[u].name, t);
			else if (!st->in[e].one_to_one && up->run + up->wait > 0)
				buf_addf(out, " %s (%lld of %d tasks)", r->spec.stages[u].name,
					 up->run + up->wait, up->ntasks);
		}
		break;
	}
	case WHY_DONE:
		buf_adds(out, "done; outputs and key unchanged");
		break;
	case WHY_RELEASED: {
		long long files, bytes = release_bytes(r->dir, st->name, t, &files);
		struct buf path = BUF_INIT;
		task_path(&path, r->dir, st->name, t, TASK_RELEASED_FILE);
		json_t *mark = jsonio_load(path.s, &err);
		const char *by = jsonio_str(mark, "by", "?");
		buf_addf(out, "its outputs (%lld files, %lld bytes) were released at %s", files,
			 bytes, jsonio_str(mark, "released", "?"));
		if (strchr(by, '/')) /* a reader's wrapper */
			buf_addf(out, ", once %s and every other task that reads them were done",
				 by);
		else
			buf_addf(out, " by %s, every task that reads them being done", by);
		buf_adds(out, " (temp = yes); if one of those runs again, this runs again first");
		json_decref(mark);
		buf_release(&path);
		break;
	}
	case WHY_GROUP: {
		struct task_info ti;
		if (task_read(r->dir, st->name, t, 1, &ti, &err) == 0)
			sched_view_apply(&p->view, r, s, t, &ti);
		else
			ti.job[0] = '\0';
		buf_addf(
		    out,
		    "its Slurm job %s, which runs %d tasks of %s (group), is cancelled because "
		    "another of them reruns: sent again with it",
		    ti.job, st->res.group, st->name);
		break;
	}
	case WHY_NEEDED: {
		buf_adds(out, "its outputs were released (temp = yes), and a task that reads them "
			      "runs:");
		for (int j = 0; j < r->spec.nstages; j++) {
			const struct spec_stage *rd = &r->spec.stages[j];
			const struct plan_stage *pj = &p->stages[j];
			for (int e = 0; e < rd->nin; e++) {
				if (rd->in[e].from != s)
					continue;
				if (rd->in[e].one_to_one && pj->action[t] == PLAN_RUN)
					buf_addf(out, " %s/%d", rd->name, t);
				else if (!rd->in[e].one_to_one && pj->run > 0)
					buf_addf(out, " %s (%lld of %d tasks)", rd->name, pj->run,
						 pj->ntasks);
			}
		}
		buf_adds(out, "; it runs again first");
		break;
	}
	case WHY_UNTIL:
		buf_adds(out, "its stage is beyond --until: held back");
		break;
	case WHY_RERUN:
		buf_adds(out, "done and valid, run again as --rerun asks");
		break;
	case WHY_RUNNING:
		if (ti.host[0])
			buf_addf(out, "running on %s since %s (pid %ld%s%s)", ti.host, ti.started,
				 ti.pid, ti.job[0] ? ", Slurm job " : "", ti.job);
		else
			buf_addf(out, "running as Slurm job %s", ti.job);
		break;
	case WHY_QUEUED:
		buf_addf(out, "queued as Slurm job %s (%s, reason %s)", ti.job, ti.sched_state,
			 ti.sched_reason);
		if (ti.stuck)
			buf_addf(out, "; Slurm cannot run it as asked and %s does not clear by itself: "
				      "`cairn cancel %s`, fix the stage, then `cairn resume %s --spec FIXED.ini`",
				 ti.sched_reason, r->dir, r->dir);
		if (ti.kind[0]) {
			buf_addf(out, "; attempt %d failed (", ti.attempt);
			add_failure(out, &ti);
			buf_adds(out, !strcmp(ti.sched_reason, "BeginTime")
					      ? ") and its retry waits for its start time"
				      : !strcmp(ti.sched_state, "COMPLETING")
					      ? ") and Slurm is requeueing it for its retry"
					      : "), this is its retry");
		}
		break;
	}
}
