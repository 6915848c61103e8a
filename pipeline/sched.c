#include "pipeline/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"

int sched_record(struct run *r, const char *stage, long job_id, int offset, const char *array,
		 int group, struct error *err)
{
	json_t *jobs = json_object_get(r->info, "jobs");
	if (!json_is_array(jobs)) {
		jobs = json_array();
		json_object_set_new(r->info, "jobs", jobs);
	}
	char when[32];
	clock_utc(when, sizeof(when), 0);
	json_t *rec = json_pack("{s:s, s:I, s:i, s:s, s:s}", "stage", stage, "job_id",
				(json_int_t)job_id, "offset", offset, "array", array, "submitted", when);
	if (rec && group > 1)
		json_object_set_new(rec, "group", json_integer(group));
	if (!rec || json_array_append_new(jobs, rec) < 0)
		return error_set(err, "out of memory");
	if (group > 1)
		run_event(r->dir,
			  "submitted %s: Slurm job %ld, array %s (tasks from %d, %d an element)",
			  stage, job_id, array, offset, group);
	else
		run_event(r->dir, "submitted %s: Slurm job %ld, array %s (tasks from %d)", stage,
			  job_id, array, offset);
	return run_save_info(r, err);
}

int sched_job_ids(const struct run *r, long **ids, size_t *n, struct error *err)
{
	json_t *jobs = json_object_get(r->info, "jobs");
	size_t count = json_is_array(jobs) ? json_array_size(jobs) : 0;
	*ids = mem_calloc(count + 1, sizeof(long));
	*n = 0;
	if (!*ids)
		return error_set(err, "out of memory");
	for (size_t i = 0; i < count; i++)
		(*ids)[(*n)++] = (long)jsonio_int(json_array_get(jobs, i), "job_id", 0);
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

static int cmp_job(const void *a, const void *b)
{
	const struct slurm_job *x = a, *y = b;
	if (x->array_job_id != y->array_job_id)
		return x->array_job_id < y->array_job_id ? -1 : 1;
	return (x->array_task > y->array_task) - (x->array_task < y->array_task);
}

static void copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* The rest of a view once its jobs are in: r's submissions, the jobs
 * sorted. */
static int view_finish(struct sched_view *v, const struct run *r, struct error *err)
{
	json_t *jobs = json_object_get(r->info, "jobs");
	size_t n = json_is_array(jobs) ? json_array_size(jobs) : 0;
	v->subs = mem_calloc(n + 1, sizeof(*v->subs));
	if (!v->subs)
		return error_set(err, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *rec = json_array_get(jobs, i);
		struct sched_sub *sub = &v->subs[v->nsubs];
		sub->stage = spec_stage_index(&r->spec, jsonio_str(rec, "stage", ""));
		sub->job_id = (long)jsonio_int(rec, "job_id", 0);
		sub->offset = (int)jsonio_int(rec, "offset", 0);
		sub->array = jsonio_str(rec, "array", "");
		sub->group = (int)jsonio_int(rec, "group", 1);
		if (sub->stage >= 0)
			v->nsubs++;
	}
	/* squeue usually lists them in order already: sort only if not. */
	for (size_t i = 1; i < v->jobs.n; i++)
		if (cmp_job(&v->jobs.v[i - 1], &v->jobs.v[i]) > 0) {
			qsort(v->jobs.v, v->jobs.n, sizeof(*v->jobs.v), cmp_job);
			break;
		}
	return 0;
}

int sched_view_load(struct sched_view *v, const struct run *r, struct error *err)
{
	memset(v, 0, sizeof(*v));
	slurm_jobs_init(&v->jobs);
	v->slurm = run_is_slurm(r);
	if (!v->slurm)
		return 0;
	long *ids;
	size_t n;
	if (sched_job_ids(r, &ids, &n, err) < 0)
		return -1;
	struct error qerr;
	int rc = n ? slurm_squeue(ids, n, &v->jobs, &qerr) : 0;
	mem_free(ids);
	if (rc < 0) {
		/* Slurm down or unreachable: the markers still say a lot. */
		v->unreachable = 1;
		copy(v->error, sizeof(v->error), qerr.msg);
	}
	return view_finish(v, r, err);
}

int sched_view_pick(struct sched_view *v, const struct run *r, const struct slurm_jobs *all,
		    const char *unreachable, struct error *err)
{
	memset(v, 0, sizeof(*v));
	slurm_jobs_init(&v->jobs);
	v->slurm = run_is_slurm(r);
	if (!v->slurm)
		return 0;
	if (unreachable) {
		v->unreachable = 1;
		copy(v->error, sizeof(v->error), unreachable);
		return view_finish(v, r, err);
	}
	long *ids;
	size_t n;
	if (sched_job_ids(r, &ids, &n, err) < 0)
		return -1;
	/* all holds every element of many runs' arrays: a search of this
	 * run's sorted ids for each, not a scan of them */
	qsort(ids, n, sizeof(*ids), cmp_id);
	for (size_t k = 0; k < all->n; k++)
		if (bsearch(&all->v[k].array_job_id, ids, n, sizeof(*ids), cmp_id) &&
		    slurm_jobs_push(&v->jobs, &all->v[k]) < 0) {
			mem_free(ids);
			return error_set(err, "out of memory");
		}
	mem_free(ids);
	return view_finish(v, r, err);
}

void sched_view_release(struct sched_view *v)
{
	slurm_jobs_release(&v->jobs);
	mem_free(v->subs);
	memset(v, 0, sizeof(*v));
}

/* Is index i in an --array spec like "0-3,7,9-10"? */
static int in_array_spec(const char *spec, long i)
{
	const char *p = spec;
	while (*p) {
		char *end;
		long a = strtol(p, &end, 10), b = a;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		if (i >= a && i <= b)
			return 1;
		if (*end != ',')
			break;
		p = end + 1;
	}
	return 0;
}

/* Tasks an element of the submission runs (0 reads as 1: one). */
static int group_of(const struct sched_sub *sub)
{
	return sub->group > 1 ? sub->group : 1;
}

void sched_sub_tasks(const struct sched_sub *sub, int index, int ntasks, int *first, int *n)
{
	long a = sub->offset + (long)(index < 0 ? 0 : index) * group_of(sub);
	long b = a + group_of(sub) < ntasks ? a + group_of(sub) : ntasks;
	*first = (int)a;
	*n = b > a ? (int)(b - a) : 0;
}

/* The latest submission of this task: its job id and array index. */
static const struct sched_sub *find_submission(const struct sched_view *v, int stage, int task,
					       long *job, int *index)
{
	for (int i = v->nsubs; i-- > 0;) {
		const struct sched_sub *sub = &v->subs[i];
		if (sub->stage != stage || task < sub->offset ||
		    !in_array_spec(sub->array, (task - sub->offset) / group_of(sub)))
			continue;
		*job = sub->job_id;
		*index = (task - sub->offset) / group_of(sub);
		return sub;
	}
	return NULL;
}

static const struct slurm_job *lookup(const struct sched_view *v, long job, int index)
{
	struct slurm_job key;
	memset(&key, 0, sizeof(key));
	key.array_job_id = job;
	key.array_task = index;
	return v->jobs.n ? bsearch(&key, v->jobs.v, v->jobs.n, sizeof(key), cmp_job) : NULL;
}


static int has_marker(const struct run *r, const char *stage, int task, const char *name)
{
	struct buf p = BUF_INIT;
	task_path(&p, r->dir, stage, task, name);
	struct stat st;
	int yes = !p.failed && stat(p.s, &st) == 0;
	buf_release(&p);
	return yes;
}

static int is_live(const struct slurm_job *sj)
{
	static const char *const live[] = {"PENDING",	  "REQUEUED",	"REQUEUE_HOLD", "SUSPENDED",
					   "RUNNING",	  "CONFIGURING", "COMPLETING",	 "RESIZING",
					   "STAGE_OUT", "SIGNALING"};
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (!strcmp(sj->state, live[i]))
			return 1 + (i >= 4); /* 1 waiting, 2 running */
	return 0;
}

/* The job is queued or running: so is the task, whatever older markers say. */
static void set_live(struct task_info *ti, const struct slurm_job *sj)
{
	copy(ti->sched_state, sizeof(ti->sched_state), sj->state);
	copy(ti->sched_reason, sizeof(ti->sched_reason), sj->reason);
	ti->state = is_live(sj) == 2 ? TASK_RUNNING : TASK_PENDING;
	ti->queued = 1;
	ti->stuck = slurm_reason_stuck(sj->reason);
}

/* Slurm's stderr file of the job (sbatch --output), read for slurmstepd's
 * "exceeded memory limit" and "DUE TO ..." lines; -1 when it says nothing. */
static int log_kind(const struct run *r, const char *stage, long job, int index)
{
	struct buf p = BUF_INIT;
	char *text;
	size_t len;
	struct error err;
	int kind = -1;
	buf_addf(&p, "%s/slurm/%s-%ld_%d.out", r->dir, stage, job, index);
	if (!p.failed && fs_read_all(p.s, &text, &len, &err) == 0) {
		kind = slurm_log_failure_kind(text);
		mem_free(text);
	}
	buf_release(&p);
	return kind;
}

/* The latest job ended without a marker of its own: write Slurm's verdict as
 * the task's failed.json (replacing one of an earlier submission), so that it
 * outlives Slurm's memory of the job (MinJobAge). The job has ended, so no
 * wrapper of it writes there any more; a done.json is never touched. Best
 * effort: a run folder that cannot be written is read again next time. */
static void record_verdict(const struct run *r, const char *stage, int task,
			   const struct task_info *ti, const struct slurm_job *sj, int unreached)
{
	struct buf p = BUF_INIT;
	struct error err;
	task_path(&p, r->dir, stage, task, "");
	if (p.failed || fs_mkdir_p(p.s, &err) < 0 || has_marker(r, stage, task, "done.json")) {
		buf_release(&p);
		return;
	}
	char msg[320];
	snprintf(msg, sizeof(msg), "Slurm job %s %s: %s, reason %s%s (recorded by cairn)", ti->job,
		 unreached	? "of its group ended before it came to this task"
		 : sj->nodes[0] ? "ended without a marker"
				: "never started",
		 sj->state, sj->reason,
		 slurm_failure_kind(sj->state, sj->reason, 0, 0) == SLURM_FAIL_DEPENDENCY
		     ? ", an input failed"
		     : "");
	json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:s, s:i, s:s, s:s, s:s}", "kind", ti->kind,
			      "exit_code", sj->exit_code, "signal", sj->signal, "attempt", ti->attempt,
			      "slurm_job", ti->job, "slurm_restarts", sj->restarts, "slurm_state",
			      sj->state, "slurm_reason", sj->reason, "message", msg);
	/* what its attempt had: resume doubles it after an oom or a timeout */
	if (j && ti->mem_mb > 0)
		json_object_set_new(j, "mem_mb", json_integer(ti->mem_mb));
	if (j && ti->time_s > 0)
		json_object_set_new(j, "time_s", json_integer(ti->time_s));
	buf_reset(&p);
	task_path(&p, r->dir, stage, task, "failed.json");
	if (j && !p.failed && jsonio_write_replace(p.s, j, &err) == 0)
		run_event(r->dir, "recorded %s/%d: Slurm job %s %s (%s), no marker", stage, task, ti->job,
			  sj->state, sj->reason);
	json_decref(j);
	buf_release(&p);
}

void sched_view_apply(const struct sched_view *v, const struct run *r, int stage, int task,
		      struct task_info *ti)
{
	if (!v->slurm)
		return;
	const char *name = r->spec.stages[stage].name;
	long job;
	int index;
	const struct sched_sub *sub = find_submission(v, stage, task, &job, &index);
	if (!sub)
		return; /* never submitted: the markers say all there is */
	ti->group = group_of(sub);
	char latest[32];
	snprintf(latest, sizeof(latest), "%ld_%d", job, index);
	if (v->unreachable) {
		if (!ti->job[0])
			snprintf(ti->job, sizeof(ti->job), "%s", latest);
		return; /* Slurm could not be asked: the markers alone */
	}
	const struct slurm_job *sj = lookup(v, job, index);
	int ended = ti->state == TASK_DONE || ti->state == TASK_FAILED || ti->state == TASK_CANCELLED;
	if (ended && !strcmp(ti->job, latest)) {
		/* The latest job wrote this marker: it is the truth, unless the job
		 * was requeued since (a retry) and is queued again, or Slurm knows
		 * better why the wrapper was stopped (markers written before the
		 * wrapper asked Slurm, or when it could not). */
		int stopped = ti->state == TASK_CANCELLED ||
			      (ti->state == TASK_FAILED && !strcmp(ti->kind, "signal") && ti->signal == 15);
		if (sj && ti->state != TASK_DONE) {
			copy(ti->sched_state, sizeof(ti->sched_state), sj->state);
			copy(ti->sched_reason, sizeof(ti->sched_reason), sj->reason);
		}
		if (sj && stopped) {
			int k = slurm_failure_kind(sj->state, sj->reason, sj->exit_code, sj->signal);
			if (k == SLURM_FAIL_DEPENDENCY)
				snprintf(ti->kind, sizeof(ti->kind), "dependency");
			if (k == SLURM_FAIL_NODE_FAIL || k == SLURM_FAIL_PREEMPTED || k == SLURM_FAIL_TIMEOUT ||
			    k == SLURM_FAIL_OOM) {
				ti->state = TASK_FAILED;
				snprintf(ti->kind, sizeof(ti->kind), "%s", slurm_failure_name(k));
				copy(ti->sched_state, sizeof(ti->sched_state), sj->state);
				copy(ti->sched_reason, sizeof(ti->sched_reason), sj->reason);
			}
		}
		if (ti->state != TASK_DONE && sj && is_live(sj) && sj->restarts > ti->restarts) {
			/* Requeued since (a retry): the marker's attempt ended, and
			 * its host, pid and start time are not the retry's. While
			 * Slurm still ends the old attempt (COMPLETING, Restarts
			 * already counted) the retry is queued, not running. */
			set_live(ti, sj);
			ti->host[0] = ti->started[0] = '\0';
			ti->pid = 0;
			if (!strcmp(sj->state, "COMPLETING"))
				ti->state = TASK_PENDING;
			if (ti->state == TASK_RUNNING && group_of(sub) > 1) {
				/* the retry runs its group, not yet this task (whose
				 * start would have replaced the marker) */
				ti->state = TASK_PENDING;
				ti->in_group = group_of(sub);
			}
		}
		return;
	}
	/* No end marker, or one left by an earlier submission (or a local run):
	 * the latest job says where the task stands. */
	if (sj && !is_live(sj) && !strcmp(sj->state, "FAILED") && sj->exit_code == TASK_EXIT_BUSY &&
	    !sj->signal) {
		/* Its wrapper found the task's lock held by another wrapper (of
		 * an earlier job, still ending) past its wait, ran nothing and
		 * wrote nothing: that wrapper's markers say where the task stands. */
		return;
	}
	int own = !strcmp(ti->job, latest); /* its started.json is this job's */
	snprintf(ti->job, sizeof(ti->job), "%s", latest);
	if (!sj) {
		if (ended)
			return; /* Slurm forgot the newer job: the older marker is all there is */
		/* Slurm forgot it (MinJobAge) and it left no end marker. */
		int k = log_kind(r, name, job, index);
		if (has_marker(r, name, task, "done.json")) {
			ti->state = TASK_DONE;
		} else if (k >= 0) {
			ti->state = TASK_FAILED;
			snprintf(ti->kind, sizeof(ti->kind), "%s", slurm_failure_name(k));
		} else if (ti->state == TASK_PENDING) {
			/* Never started (no started.json): cancelled while queued, by
			 * `cairn cancel` or because an input failed. */
			ti->state = TASK_CANCELLED;
			snprintf(ti->kind, sizeof(ti->kind), "cancelled");
			snprintf(ti->message, sizeof(ti->message),
				 "Slurm job %s never started and Slurm no longer knows it (purged "
				 "MinJobAge after it ended): it was cancelled while queued",
				 latest);
		} else {
			ti->state = TASK_FAILED;
			snprintf(ti->kind, sizeof(ti->kind), "lost");
		}
		return;
	}
	if (is_live(sj)) {
		set_live(ti, sj);
		if (ti->state == TASK_RUNNING && group_of(sub) > 1 && !own) {
			/* Its job runs the tasks of its group one after another and
			 * has not come to this one (no started.json of it yet). */
			ti->state = TASK_PENDING;
			ti->in_group = group_of(sub);
		}
		return;
	}
	copy(ti->sched_state, sizeof(ti->sched_state), sj->state);
	copy(ti->sched_reason, sizeof(ti->sched_reason), sj->reason);
	/* The job ended. A marker may have landed since we looked. */
	if (has_marker(r, name, task, "done.json")) {
		ti->state = TASK_DONE;
		return;
	}
	int kind = slurm_failure_kind(sj->state, sj->reason, sj->exit_code, sj->signal);
	if (kind < 0)
		kind = SLURM_FAIL_LOST; /* COMPLETED yet no marker: the wrapper never wrote one */
	if (kind == SLURM_FAIL_SIGNAL && sj->signal == 9) {
		/* Without cgroups an over-memory job is just killed: Slurm's log says why. */
		int k = log_kind(r, name, job, index);
		if (k >= 0)
			kind = k;
	}
	/* Cancelled, by scancel or because an input failed (dependency): it did
	 * not fail itself, and counting it as failed would hide the real failure. */
	ti->state = kind == SLURM_FAIL_CANCELLED || kind == SLURM_FAIL_DEPENDENCY ? TASK_CANCELLED
										 : TASK_FAILED;
	snprintf(ti->kind, sizeof(ti->kind), "%s", slurm_failure_name(kind));
	ti->exit_code = sj->exit_code;
	ti->signal = sj->signal;
	if (kind != SLURM_FAIL_LOST) {
		struct task_info rec = *ti;
		/* read back as a marker: "dependency" would read as failed */
		if (kind == SLURM_FAIL_DEPENDENCY)
			snprintf(rec.kind, sizeof(rec.kind), "cancelled");
		/* a task of a group its job never came to (it ran others) */
		record_verdict(r, name, task, &rec, sj, group_of(sub) > 1 && !own && sj->nodes[0]);
	}
}

long long sched_orphans(const struct sched_view *v, const struct run *r, struct buf *ids,
			long long *per_stage)
{
	json_t *jobs = json_object_get(r->info, "jobs");
	long long n = 0;
	for (size_t i = 0; !v->unreachable && i < json_array_size(jobs); i++) {
		const json_t *rec = json_array_get(jobs, i);
		/* every submission, also of stages the spec no longer has (not
		 * in v->subs) */
		struct sched_sub sub = {spec_stage_index(&r->spec, jsonio_str(rec, "stage", "")),
					(long)jsonio_int(rec, "job_id", 0),
					(int)jsonio_int(rec, "offset", 0), NULL,
					(int)jsonio_int(rec, "group", 1)};
		int stage = sub.stage;
		long id = sub.job_id;
		for (size_t k = 0; k < v->jobs.n; k++) {
			const struct slurm_job *j = &v->jobs.v[k];
			int first, ntasks = 0;
			if (j->array_job_id != id || !is_live(j))
				continue;
			if (stage >= 0)
				sched_sub_tasks(&sub, j->array_task, r->spec.stages[stage].ntasks,
						&first, &ntasks);
			if (ntasks > 0)
				continue; /* it runs tasks the spec has */
			buf_addf(ids, "%s%ld", ids->len ? " " : "", id);
			if (j->array_task >= 0)
				buf_addf(ids, "_%d", j->array_task);
			if (per_stage && stage >= 0)
				per_stage[stage]++;
			n++;
		}
	}
	return n;
}
