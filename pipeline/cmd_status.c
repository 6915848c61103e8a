/* cairn status RUN [--json]: task counts per stage from the markers alone
 * (a stat per task; JSON is read only for failed and running tasks). */
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "pipeline/cli.h"

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

int status_collect(const struct run *r, struct run_status *st, struct error *err)
{
	const struct spec *s = &r->spec;
	memset(st, 0, sizeof(*st));
	struct sched_view view;
	long calls0 = slurm_calls(SLURM_SQUEUE);
	if (sched_view_load(&view, r, err) < 0)
		return -1;
	st->sched_calls = slurm_calls(SLURM_SQUEUE) - calls0;
	sched_warning(&view, st->warning, sizeof(st->warning));
	st->nstages = s->nstages;
	st->stages = mem_calloc((size_t)s->nstages, sizeof(*st->stages));
	if (!st->stages) {
		sched_view_release(&view);
		return error_set(err, "out of memory");
	}
	for (int i = 0; i < s->nstages; i++) {
		struct stage_counts *c = &st->stages[i];
		c->tasks = s->stages[i].ntasks;
		for (int t = 0; t < s->stages[i].ntasks; t++) {
			struct task_info ti;
			if (task_read(r->dir, s->stages[i].name, t, 1, &ti, err) < 0) {
				sched_view_release(&view);
				return -1;
			}
			sched_view_apply(&view, r, i, t, &ti);
			st->queued += ti.queued;
			if (ti.stuck) {
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
				break;
			case TASK_FAILED:
				c->failed++;
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
	}
	sched_view_release(&view);
	const struct stage_counts *t = &st->total;
	st->state = t->running	  ? "running"
		    : t->failed	   ? "failed"
		    : t->cancelled ? "cancelled"
		    : t->done == t->tasks ? "done"
					  : "pending";
	return 0;
}

void status_release(struct run_status *st)
{
	mem_free(st->stages);
	memset(st, 0, sizeof(*st));
}

void status_print(const struct run *r, const struct run_status *st, int json)
{
	const struct spec *s = &r->spec;
	if (st->warning[0])
		fprintf(stderr, "cairn: %s\n", st->warning);
	if (json) {
		json_t *stages = json_object();
		for (int k = 0; k < s->nstages; k++) {
			int i = s->order[k];
			const struct stage_counts *c = &st->stages[i];
			json_object_set_new(stages, s->stages[i].name,
					    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "tasks",
						      (json_int_t)c->tasks, "done", (json_int_t)c->done,
						      "failed", (json_int_t)c->failed, "running",
						      (json_int_t)c->running, "pending",
						      (json_int_t)c->pending, "cancelled",
						      (json_int_t)c->cancelled));
		}
		json_t *j = json_pack("{s:s, s:s, s:o}", "run", r->dir, "state", st->state, "stages",
				      stages);
		/* Only when there is something to say: the usual shape stays as it was. */
		if (j && st->stuck_total)
			json_object_set_new(j, "stuck", json_integer(st->stuck_total));
		if (j && st->warning[0])
			json_object_set_new(j, "slurm_reachable", json_false());
		char *text = j ? json_dumps(j, JSON_PRESERVE_ORDER) : NULL;
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(j);
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
	/* Failed tasks at a glance: the first few, with why. */
	int shown = st->nfailures;
	for (int i = 0; i < shown; i++)
		printf("  %s\n", st->failures[i]);
	if (st->total.failed > shown)
		printf("  ... and %lld more failed tasks\n", st->total.failed - shown);
	for (int i = 0; i < st->nstuck; i++)
		printf("  %s\n", st->stuck[i]);
	if (st->stuck_total > st->nstuck)
		printf("  ... and %lld more stuck tasks\n", st->stuck_total - st->nstuck);
	if (st->stuck_total)
		printf("stuck tasks wait forever: `cairn cancel %s`, fix their stage (cpus, mem, time, "
		       "partition...), then `cairn resume %s --spec FIXED.ini`\n",
		       r->dir, r->dir);
	if (st->total.failed || st->stuck_total)
		printf("see why: cairn why %s STAGE/TASK\n", r->dir);
}

static const char status_usage[] =
	"usage: cairn status RUN [--json]\n"
	"Counts tasks per stage (done, failed, running, pending, cancelled) from the\n"
	"run folder's markers, and says the run's state.\n"
	"  --json   one JSON object: {\"run\", \"state\", \"stages\": {NAME: counts}}, and\n"
	"           on Slurm \"stuck\": N when tasks wait for what never comes,\n"
	"           \"slurm_reachable\": false when squeue failed\n"
	"example: cairn status runs/demo-20261124T140000Z-1a2b --json\n";

int cmd_status(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, status_usage))
		return 0;
	const char *dir = NULL;
	int json = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (argv[i][0] == '-' || dir) {
			fprintf(stderr, "cairn status: unexpected '%s'\n%s", argv[i], status_usage);
			return 2;
		} else
			dir = argv[i];
	}
	if (!dir) {
		fputs(status_usage, stderr);
		return 2;
	}
	struct run r;
	struct error err;
	if (cli_open_run("status", dir, &r) < 0)
		return 2;
	struct run_status st;
	int rc = status_collect(&r, &st, &err);
	if (rc < 0)
		fprintf(stderr, "cairn status: %s\n", err.msg);
	else
		status_print(&r, &st, json);
	status_release(&st);
	run_release(&r);
	return rc < 0 ? 1 : 0;
}
