/* cairn status RUN [--json] [--usage]: task counts per stage from the
 * markers alone (a stat per task; JSON is read only for failed and running
 * tasks), and with --usage what the done tasks used against what their
 * stage asks (every done.json read). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "jobs/job.h"
#include "pipeline/cli.h"
#include "pipeline/release.h"

/* One more failed task of its kind (exit and signal with their number). */
static void count_kind(struct run_status *st, const struct task_info *ti)
{
	char kind[32];
	task_kind_label(ti, kind, sizeof(kind));
	int max = (int)(sizeof(st->by_kind) / sizeof(st->by_kind[0]));
	for (int i = 0; i < st->nkinds; i++)
		if (!strcmp(st->by_kind[i].kind, kind)) {
			st->by_kind[i].n++;
			return;
		}
	if (st->nkinds == max) {
		st->other_kinds++;
		return;
	}
	struct kind_count *k = &st->by_kind[st->nkinds++];
	snprintf(k->kind, sizeof(k->kind), "%s", kind);
	k->n = 1;
}

static void describe_failure(const char *stage, int t, const struct task_info *ti, char out[200])
{
	char job[48] = "";
	if (ti->job[0])
		snprintf(job, sizeof(job), ", Slurm job %s", ti->job);
	if (!strcmp(ti->kind, "exit"))
		snprintf(out, 200, "failed %s/%d: exit %d (attempt %d%s)", stage, t, ti->exit_code,
			 ti->attempt, job);
	else if (!strcmp(ti->kind, "signal"))
		snprintf(out, 200, "failed %s/%d: signal %d (attempt %d%s)", stage, t, ti->signal,
			 ti->attempt, job);
	else
		snprintf(out, 200, "failed %s/%d: %s (attempt %d%s)", stage, t, ti->kind,
			 ti->attempt ? ti->attempt : 1, job);
}

void sched_warning(const struct sched_view *v, char *out, size_t size)
{
	if (!v->unreachable)
		*out = '\0';
	else
		snprintf(out, size,
			 "warning: Slurm unreachable (%.200s): queued and running states unknown, shown "
			 "from the markers alone; try `scontrol ping`; is SLURM_CONF set?",
			 v->error);
}

int status_count(const struct run *r, struct run_status *st, const struct sched_view *view,
		 struct error *err)
{
	static const struct sched_view markers; /* not slurm: the markers alone */
	const struct spec *s = &r->spec;
	memset(st, 0, sizeof(*st));
	if (!view)
		view = &markers;
	sched_warning(view, st->warning, sizeof(st->warning));
	st->nstages = s->nstages;
	st->stages = mem_calloc((size_t)s->nstages, sizeof(*st->stages));
	if (!st->stages)
		return error_set(err, "out of memory");
	for (int i = 0; i < s->nstages; i++) {
		struct stage_counts *c = &st->stages[i];
		c->tasks = s->stages[i].ntasks;
		for (int t = 0; t < s->stages[i].ntasks; t++) {
			struct task_info ti;
			if (task_read(r->dir, s->stages[i].name, t, 1, &ti, err) < 0)
				return -1;
			sched_view_apply(view, r, i, t, &ti);
			st->queued += ti.queued;
			if (ti.stuck) {
				if (!st->nfailures && !st->nstuck)
					snprintf(st->first, sizeof(st->first), "%s/%d",
						 s->stages[i].name, t);
				if (st->nstuck < 5)
					snprintf(st->stuck[st->nstuck++], 200,
						 "stuck %s/%d: Slurm job %s pending, reason %s, which does "
						 "not clear by itself",
						 s->stages[i].name, t, ti.job, ti.sched_reason);
				st->stuck_total++;
			}
			switch (ti.state) {
			case TASK_DONE:
				c->done++;
				c->released +=
				    s->stages[i].temp && release_done(r->dir, s->stages[i].name, t);
				break;
			case TASK_FAILED:
				c->failed++;
				count_kind(st, &ti);
				if (!st->nfailures)
					snprintf(st->first, sizeof(st->first), "%s/%d",
						 s->stages[i].name, t);
				if (st->nfailures < 5)
					describe_failure(s->stages[i].name, t, &ti,
							 st->failures[st->nfailures++]);
				break;
			case TASK_RUNNING:
				c->running++;
				break;
			case TASK_CANCELLED:
				c->cancelled++;
				break;
			case TASK_PENDING:
				c->pending++;
				break;
			}
		}
		st->total.tasks += c->tasks;
		st->total.done += c->done;
		st->total.failed += c->failed;
		st->total.running += c->running;
		st->total.cancelled += c->cancelled;
		st->total.pending += c->pending;
		st->total.released += c->released;
	}
	const struct stage_counts *t = &st->total;
	/* kinds most first; a tie keeps the order first seen (a stable sort) */
	for (int i = 1; i < st->nkinds; i++)
		for (int j = i; j > 0 && st->by_kind[j].n > st->by_kind[j - 1].n; j--) {
			struct kind_count k = st->by_kind[j];
			st->by_kind[j] = st->by_kind[j - 1];
			st->by_kind[j - 1] = k;
		}
	st->state = t->running	  ? "running"
		    : t->failed	   ? "failed"
		    : t->cancelled ? "cancelled"
		    : t->done == t->tasks ? "done"
					  : "pending";
	return 0;
}

int status_collect(const struct run *r, struct run_status *st, struct error *err)
{
	memset(st, 0, sizeof(*st));
	struct sched_view view;
	int rc = sched_view_load(&view, r, err);
	if (rc == 0)
		rc = status_count(r, st, &view, err);
	sched_view_release(&view);
	return rc;
}

void status_release(struct run_status *st)
{
	mem_free(st->stages);
	memset(st, 0, sizeof(*st));
}

json_t *status_counts_json(const struct stage_counts *c)
{
	json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "tasks", (json_int_t)c->tasks,
			      "done", (json_int_t)c->done, "failed", (json_int_t)c->failed,
			      "running", (json_int_t)c->running, "pending", (json_int_t)c->pending,
			      "cancelled", (json_int_t)c->cancelled);
	if (j && c->released) /* of the done: only when some are */
		json_object_set_new(j, "released", json_integer(c->released));
	return j;
}

static json_t *status_json(const struct run *r, const struct run_status *st)
{
	const struct spec *s = &r->spec;
	json_t *stages = json_object();
	for (int k = 0; k < s->nstages; k++) {
		int i = s->order[k];
		json_object_set_new(stages, s->stages[i].name, status_counts_json(&st->stages[i]));
	}
	json_t *j =
	    json_pack("{s:s, s:s, s:o}", "run", r->dir, "state", st->state, "stages", stages);
	/* Only when there is something to say: the usual shape stays as it was. */
	if (j && st->stuck_total)
		json_object_set_new(j, "stuck", json_integer(st->stuck_total));
	if (j && st->nkinds) {
		json_t *kinds = json_object();
		for (int i = 0; i < st->nkinds; i++)
			json_object_set_new(kinds, st->by_kind[i].kind,
					    json_integer(st->by_kind[i].n));
		if (st->other_kinds)
			json_object_set_new(kinds, "other", json_integer(st->other_kinds));
		json_object_set_new(j, "failed_by_kind", kinds);
	}
	if (j && st->warning[0])
		json_object_set_new(j, "slurm_reachable", json_false());
	return j;
}

static void print_json(json_t *j)
{
	char *text = j ? json_dumps(j, JSON_PRESERVE_ORDER) : NULL;
	if (text)
		printf("%s\n", text);
	free(text);
	json_decref(j);
}

void status_print(const struct run *r, const struct run_status *st, int json)
{
	const struct spec *s = &r->spec;
	if (st->warning[0])
		fprintf(stderr, "cairn: %s\n", st->warning);
	if (json) {
		print_json(status_json(r, st));
		return;
	}
	printf("%-20s %8s %8s %8s %8s %8s %9s\n", "stage", "tasks", "done", "failed", "running",
	       "pending", "cancelled");
	for (int k = 0; k < s->nstages; k++) {
		int i = s->order[k];
		const struct stage_counts *c = &st->stages[i];
		printf("%-20s %8lld %8lld %8lld %8lld %8lld %9lld\n", s->stages[i].name, c->tasks,
		       c->done, c->failed, c->running, c->pending, c->cancelled);
	}
	printf("run %s: %s (%lld of %lld tasks done)\n", r->spec.name, st->state, st->total.done,
	       st->total.tasks);
	if (st->total.released) {
		printf("  released (temp = yes, their readers done):");
		const char *sep = " ";
		for (int k = 0; k < s->nstages; k++) {
			const struct stage_counts *c = &st->stages[s->order[k]];
			if (c->released) {
				printf("%s%s %lld of %lld", sep, s->stages[s->order[k]].name,
				       c->released, c->tasks);
				sep = ", ";
			}
		}
		printf("\n");
	}
	/* Failed tasks at a glance: the first few, with why. */
	int shown = st->nfailures;
	for (int i = 0; i < shown; i++)
		printf("  %s\n", st->failures[i]);
	if (st->total.failed > shown)
		printf("  ... and %lld more failed tasks\n", st->total.failed - shown);
	/* many failures at a glance: what kinds they are */
	if (st->total.failed > shown || st->nkinds > 1) {
		printf("  failed by kind:");
		for (int i = 0; i < st->nkinds; i++)
			printf("%s %lld %s", i ? "," : "", st->by_kind[i].n, st->by_kind[i].kind);
		if (st->other_kinds)
			printf(", %lld of other kinds", st->other_kinds);
		printf("\n");
	}
	for (int i = 0; i < st->nstuck; i++)
		printf("  %s\n", st->stuck[i]);
	if (st->stuck_total > st->nstuck)
		printf("  ... and %lld more stuck tasks\n", st->stuck_total - st->nstuck);
	if (st->stuck_total)
		printf("stuck tasks wait forever: `cairn cancel %s`, fix their stage (cpus, mem, time, "
		       "partition...), then `cairn resume %s --spec FIXED.ini`\n",
		       r->dir, r->dir);
	if (st->first[0])
		printf("see why: cairn why %s %s%s\n", r->dir, st->first,
		       st->total.failed + st->stuck_total > 1 ? " (or another task above)" : "");
}

/* What the done tasks of one stage used (their done.json). */
struct stage_usage {
	long long tasks;
	double wall_sum, wall_max, cpu_sum;
	long long rss_max_kb;
	int cpu_known;	     /* every task's done.json had cpu_s (since session 18) */
	long long out_bytes; /* their outputs, by their manifests */
	long long freed;     /* of which released (temp): no longer on disk */
};

/* a + b bytes, b as a manifest says it: a negative b (a damaged done.json)
 * counts 0, and the sum stops at the largest long long rather than wrap */
static long long add_bytes(long long a, long long b)
{
	long long sum;
	if (b < 0)
		return a;
	return __builtin_add_overflow(a, b, &sum) ? LLONG_MAX : sum;
}

static int usage_collect(const struct run *r, struct stage_usage *u)
{
	const struct spec *s = &r->spec;
	struct buf p = BUF_INIT;
	for (int i = 0; i < s->nstages; i++) {
		u[i] = (struct stage_usage){.cpu_known = 1};
		for (int t = 0; t < s->stages[i].ntasks; t++) {
			buf_reset(&p);
			task_path(&p, r->dir, s->stages[i].name, t, "done.json");
			if (p.failed)
				break;
			struct error e;
			json_t *j = fs_exists(p.s) ? jsonio_load(p.s, &e) : NULL;
			if (!j)
				continue; /* not done, or torn: status counts it as not done */
			double wall = jsonio_num(j, "wall_s", 0), cpu = jsonio_num(j, "cpu_s", -1);
			long long rss = task_rss_kb(j), bytes = 0;
			size_t k;
			json_t *f;
			json_array_foreach(json_object_get(j, "manifest"), k, f) /* damaged: 0 */
			    bytes = add_bytes(bytes, jsonio_int(f, "bytes", 0));
			json_decref(j);
			u[i].out_bytes = add_bytes(u[i].out_bytes, bytes);
			if (s->stages[i].temp && release_done(r->dir, s->stages[i].name, t))
				u[i].freed = add_bytes(u[i].freed, bytes);
			u[i].tasks++;
			u[i].wall_sum += wall;
			u[i].wall_max = wall > u[i].wall_max ? wall : u[i].wall_max;
			u[i].cpu_sum += cpu > 0 ? cpu : 0;
			u[i].cpu_known &= cpu >= 0;
			u[i].rss_max_kb = rss > u[i].rss_max_kb ? rss : u[i].rss_max_kb;
		}
	}
	int failed = p.failed;
	buf_release(&p);
	return failed ? -1 : 0;
}

/* A mem value for the spec: 1.5 times what was used, rounded up to 256 MiB. */
static void suggest_mem(long long kib, char *out, size_t size)
{
	long long mb = (long long)ceil(kib * 1.5 / 1024 / 256) * 256;
	if (mb % 1024 == 0)
		snprintf(out, size, "%lldG", mb / 1024);
	else
		snprintf(out, size, "%lldM", mb);
}

/* "4.0 s" and "16.0 s": "4.0 s..16.0 s"; hi "" for no range. */
static void append_range(char *text, size_t size, const char *hi)
{
	size_t len = strlen(text);
	if (hi[0] && len + 2 < size)
		snprintf(text + len, size - len, "..%s", hi);
}

/* The advice of one stage's usage against what it asks; n lines, 200 each. */
static int usage_advice(const char *name, const struct job_res *res, const struct stage_usage *u,
			char out[][200], int n)
{
	int k = 0;
	char a[32], b[32], c[32];
	long long mem_kib = res->mem_mb * 1024;
	int range = res->mem_max_mb > res->mem_mb; /* mem = 1G..8G: near its end? */
	long long most_kib = range ? res->mem_max_mb * 1024 : mem_kib;
	if (!u->tasks)
		return 0;
	job_format_kib(u->rss_max_kb, a, sizeof(a));
	job_format_kib(most_kib, b, sizeof(b));
	if (most_kib && u->rss_max_kb >= 0.9 * most_kib && k < n)
		snprintf(out[k++], 200,
			 "%s: a task used %s of its mem = %s%s (%.0f%%): raise mem before a larger "
			 "input is killed for it",
			 name, a, range ? ".." : "", b, 100.0 * u->rss_max_kb / most_kib);
	job_format_kib(mem_kib, b, sizeof(b));
	if (mem_kib >= 1024 * 1024 && u->rss_max_kb * 4 < mem_kib && k < n) {
		suggest_mem(u->rss_max_kb, c, sizeof(c));
		snprintf(out[k++], 200,
			 "%s: asks mem = %s, its tasks used %s at most: mem = %s would do, and "
			 "Slurm could place more of them per node",
			 name, b, a, c);
	}
	int trange = res->time_max_s > res->time_s; /* time = 1:00:00..8:00:00 */
	double most_s = (double)(trange ? res->time_max_s : res->time_s);
	if (most_s > 0 && u->wall_max >= 0.9 * most_s && k < n) {
		job_format_seconds(u->wall_max, a, sizeof(a));
		job_format_seconds(most_s, b, sizeof(b));
		snprintf(out[k++], 200,
			 "%s: a task ran %s of its time = %s%s (%.0f%%): raise time before one is "
			 "stopped by it",
			 name, a, trange ? ".." : "", b, 100.0 * u->wall_max / most_s);
	}
	double busy = u->wall_sum > 0 ? u->cpu_sum / u->wall_sum : 0;
	if (res->cpus > 1 && u->cpu_known && u->wall_sum >= 1 && busy < 0.5 * res->cpus && k < n)
		snprintf(
		    out[k++], 200,
		    "%s: asks cpus = %d, its tasks kept %.1f busy on average: the rest sat idle",
		    name, res->cpus, busy);
	return k;
}

/* The usage table and its advice; with j, into that JSON object instead. */
static void usage_print(const struct run *r, const struct stage_usage *u, json_t *j)
{
	int json = j != NULL;
	const struct spec *s = &r->spec;
	int slurm = run_is_slurm(r);
	char advice[64][200];
	int nadvice = 0;
	json_t *stages = json ? json_object() : NULL, *lines = json ? json_array() : NULL;
	if (!json)
		printf("\n%-20s %8s %10s %10s %8s %11s %11s %11s  %s\n", "usage of done tasks",
		       "tasks", "wall sum", "wall max", "cpu/wall", "max RSS", "outputs", "on disk",
		       "asked");
	for (int k = 0; k < s->nstages; k++) {
		int i = s->order[k];
		const struct stage_usage *x = &u[i];
		const struct job_res *res = &s->stages[i].res;
		nadvice += usage_advice(s->stages[i].name, res, x, advice + nadvice, 64 - nadvice);
		if (slurm && res->ranks > 1 && x->tasks && nadvice < 64)
			snprintf(
			    advice[nadvice++], 200,
			    "%s: its ranks run under srun, outside the wrapper: their CPU time and "
			    "memory are Slurm's to tell (sacct -j JOB --format=TotalCPU,MaxRSS)",
			    s->stages[i].name);
		if (json) {
			json_t *o = json_pack(
			    "{s:I, s:f, s:f, s:I, s:I, s:I}", "tasks", (json_int_t)x->tasks,
			    "wall_s", x->wall_sum, "wall_s_max", x->wall_max, "max_rss_kb",
			    (json_int_t)x->rss_max_kb, "output_bytes", (json_int_t)x->out_bytes,
			    "released_bytes", (json_int_t)x->freed);
			if (o && x->cpu_known)
				json_object_set_new(o, "cpu_s", json_real(x->cpu_sum));
			json_object_set_new(stages, s->stages[i].name, o);
			continue;
		}
		char ws[32], wm[32], rss[32], busy[16] = "-", asked[160] = "", m[64], t[64], ob[32],
					      kept[32];
		job_format_seconds(x->wall_sum, ws, sizeof(ws));
		job_format_seconds(x->wall_max, wm, sizeof(wm));
		job_format_kib(x->rss_max_kb, rss, sizeof(rss));
		job_format_bytes(x->out_bytes, ob, sizeof(ob));
		job_format_bytes(x->out_bytes - x->freed, kept, sizeof(kept));
		if (x->cpu_known && x->wall_sum > 0)
			snprintf(busy, sizeof(busy), "%.2f", x->cpu_sum / x->wall_sum);
		/* a range: "40.0 MiB..200.0 MiB" */
		char mhi[32] = "", thi[32] = "";
		job_format_kib(res->mem_mb * 1024, m, sizeof(m));
		if (res->mem_max_mb > res->mem_mb)
			job_format_kib(res->mem_max_mb * 1024, mhi, sizeof(mhi));
		append_range(m, sizeof(m), mhi);
		job_format_seconds((double)res->time_s, t, sizeof(t));
		if (res->time_max_s > res->time_s)
			job_format_seconds((double)res->time_max_s, thi, sizeof(thi));
		append_range(t, sizeof(t), thi);
		snprintf(asked, sizeof(asked), "cpus %d%s%s%s%s", res->cpus ? res->cpus : 1,
			 res->mem_mb ? ", mem " : "", res->mem_mb ? m : "",
			 res->time_s ? ", time " : "", res->time_s ? t : "");
		printf("%-20s %8lld %10s %10s %8s %11s %11s %11s  %s\n", s->stages[i].name,
		       x->tasks, ws, wm, busy, rss, ob, kept, asked);
	}
	for (int i = 0; i < nadvice; i++) {
		if (json)
			json_array_append_new(lines, json_string(advice[i]));
		else
			printf("  %s\n", advice[i]);
	}
	/* Where the outputs go: is there room for what comes next? */
	struct statvfs fs;
	int have_fs = statvfs(r->dir, &fs) == 0;
	long long avail = have_fs ? (long long)fs.f_bavail * (long long)fs.f_frsize : 0,
		  size = have_fs ? (long long)fs.f_blocks * (long long)fs.f_frsize : 0;
	if (json) {
		json_object_set_new(j, "usage", stages);
		json_object_set_new(j, "usage_advice", lines);
		if (have_fs)
			json_object_set_new(j, "disk",
					    json_pack("{s:I, s:I}", "available_bytes",
						      (json_int_t)avail, "size_bytes",
						      (json_int_t)size));
	} else if (have_fs) {
		char a[32], b[32];
		job_format_bytes(avail, a, sizeof(a));
		job_format_bytes(size, b, sizeof(b));
		printf("the run folder's file system: %s free of %s\n", a, b);
	}
}

static const char status_usage[] =
    "usage: cairn status [RUN] [--json] [--usage]\n"
    "Counts tasks per stage (done, failed, running, pending, cancelled) from the\n"
    "run folder's markers, and says the run's state. Without RUN: the newest run\n"
    "folder in runs/ (cairn runs lists them all).\n"
    "  --json   one JSON object: {\"run\", \"state\", \"stages\": {NAME: counts}}, and\n"
    "           with failures \"failed_by_kind\": {\"timeout\": N, \"exit 3\": N, ...},\n"
    "           on Slurm \"stuck\": N when tasks wait for what never comes,\n"
    "           \"slurm_reachable\": false when squeue failed\n"
    "  --usage  also what the done tasks used per stage (wall time, CPU time over\n"
    "           wall time, the largest max RSS, their outputs' size and how much\n"
    "           of it is still on disk: temp stages release theirs) beside what\n"
    "           the stage asks (cpus, mem, time), and advice where they part: a\n"
    "           task near its mem or time, mem asked 4x over, cpus that sat idle.\n"
    "           With --json: \"usage\": {NAME: {\"tasks\", \"wall_s\", \"wall_s_max\",\n"
    "           \"max_rss_kb\", \"output_bytes\", \"released_bytes\", \"cpu_s\"}},\n"
    "           \"usage_advice\": [lines], \"disk\": {\"available_bytes\", \"size_bytes\"}\n"
    "           (the run folder's file system: free space for what comes next)\n"
    "example: cairn status runs/demo-20261124T140000Z-1a2b --json\n";

int cmd_status(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, status_usage))
		return 0;
	const char *dir = NULL;
	int json = 0, usage = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "--usage"))
			usage = 1;
		else if (argv[i][0] == '-' || dir) {
			cli_unexpected("status", argv[i], status_usage);
			return 2;
		} else
			dir = argv[i];
	}
	struct run r;
	struct error err;
	if (cli_open_run("status", dir, &r) < 0) /* no dir: the newest run */
		return 2;
	struct run_status st;
	struct stage_usage *u = NULL;
	int rc = status_collect(&r, &st, &err);
	if (rc == 0 && usage) {
		u = mem_calloc((size_t)r.spec.nstages, sizeof(*u));
		if (!u || usage_collect(&r, u) < 0)
			rc = error_set(&err, "out of memory");
	}
	if (rc < 0) {
		fprintf(stderr, "cairn status: %s\n", err.msg);
	} else if (usage && json) {
		if (st.warning[0])
			fprintf(stderr, "cairn: %s\n", st.warning);
		json_t *j = status_json(&r, &st);
		if (j)
			usage_print(&r, u, j);
		print_json(j);
	} else {
		status_print(&r, &st, json);
		if (usage)
			usage_print(&r, u, NULL);
	}
	mem_free(u);
	status_release(&st);
	run_release(&r);
	return rc < 0 ? 1 : 0;
}
