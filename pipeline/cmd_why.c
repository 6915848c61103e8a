/* cairn why RUN STAGE[/TASK]: the state of a task, why, what resume would do
 * with it, and the end of its log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "jobs/job.h"
#include "jobs/slurm_cli.h"
#include "pipeline/cli.h"

static const char why_usage[] =
    "usage: cairn why [RUN] STAGE[/TASK] [--lines N] [--all]\n"
    "Says why a task is in its state and what `cairn resume` would do with it and\n"
    "why, with the last lines of its log (of a done task: where it ran, its wall and\n"
    "CPU time and max RSS). With STAGE alone: the first 5 tasks of the stage that\n"
    "are not done and valid, then the others counted by why (failed ones by kind),\n"
    "each with its first tasks; --all explains every one. Without RUN: the newest\n"
    "run folder in runs/.\n"
    "example: cairn why runs/demo-20261124T140000Z-1a2b fetch/3\n";

static void print_tail(const char *path, int lines)
{
	char *data;
	size_t len;
	struct error err;
	if (fs_read_all(path, &data, &len, &err) < 0)
		return;
	if (len == 0) {
		mem_free(data);
		return;
	}
	size_t start = cli_tail_start(data, len, lines);
	printf("  --- last lines of %s ---\n", path);
	for (char *line = strtok(data + start, "\n"); line; line = strtok(NULL, "\n"))
		printf("  | %s\n", line);
	mem_free(data);
}

/* The last time a Slurm job of this task found the task's lock held and left
 * the task to the wrapper that held it (exit 75, no marker: cmd_exec.c). The
 * markers are that wrapper's, so without this line the job would seem lost. */
static void print_lock_refusal(const struct run *r, const char *stage, int task)
{
	struct buf path = BUF_INIT, needle = BUF_INIT;
	buf_addf(&path, "%s/events.log", r->dir);
	buf_addf(&needle, " busy %s/%d: ", stage, task);
	char *data;
	size_t len;
	struct error err;
	if (fs_read_all(path.s, &data, &len, &err) == 0) {
		const char *last = NULL;
		for (const char *at = data; (at = strstr(at, needle.s)); at++)
			last = at;
		if (last) {
			const char *start = last, *end = strchr(last, '\n');
			while (start > data && start[-1] != '\n')
				start--;
			printf("  a wrapper of it found its lock held and left it (events.log):\n  "
			       "  %.*s\n",
			       (int)(end ? end - start : (long)strlen(start)), start);
		}
		mem_free(data);
	}
	buf_release(&path);
	buf_release(&needle);
}

/* Where a done task ran and what it used (done.json), against what its
 * stage asks. */
static void print_done_usage(const struct run *r, const struct spec_stage *st, int t)
{
	struct buf path = BUF_INIT;
	task_path(&path, r->dir, st->name, t, "done.json");
	struct error err;
	json_t *j = path.failed ? NULL : jsonio_load(path.s, &err);
	buf_release(&path);
	if (!j)
		return;
	const char *job = jsonio_str(j, "slurm_job", "");
	double cpu = jsonio_num(j, "cpu_s", -1);
	printf("  ran on %s (attempt %lld%s%s): %.2f s wall", jsonio_str(j, "host", "?"),
	       jsonio_int(j, "attempt", 1), job[0] ? ", Slurm job " : "", job,
	       jsonio_num(j, "wall_s", 0));
	if (cpu >= 0)
		printf(", %.2f s CPU", cpu);
	char rss[96];
	/* against the mem its attempt had (a range grows it) */
	job_format_rss((long)jsonio_int(j, "mem_mb", st->res.mem_mb), task_rss_kb(j), rss,
		       sizeof(rss));
	printf(", %s\n", rss);
	json_decref(j);
}

/* What to do about a failure of this kind, where the log does not say it:
 * the ones that come from outside the command. */
static void print_remedy(const struct run *r, const struct spec_stage *st,
			 const struct task_info *ti)
{
	char *spec = run_spec_source(r);
	struct job_limits last = {ti->mem_mb, ti->time_s};
	struct job_limit_view v;
	if (job_limit_view(&st->res, &last, ti->kind, &v)) {
		if (v.grows)
			printf("  to do: nothing in the spec: `cairn resume %s` gives it %s (it had "
			       "%s; %s = %s doubles it after %s)\n",
			       r->dir, v.next, v.had, v.key, v.spec, v.after);
		else if (v.range)
			printf("  to do: it had %s, the end of its range: raise the end of %s of %s "
			       "(now %s) and `cairn resume %s --spec %s`\n",
			       v.had, v.key, st->name, v.spec, r->dir, spec);
		else
			printf("  to do: raise %s of %s (now %s) and `cairn resume %s --spec %s` (or "
			       "--set, when a param gives it), or give a range (%s = %s) that resume "
			       "and retries double after %s; `cairn status %s --usage` shows what its "
			       "done tasks used%s\n",
			       v.key, st->name, v.had, r->dir, spec, v.key, v.spec, v.after, r->dir,
			       v.key[0] == 't' ? "; or let its retries go on where it stopped: "
						 "retry_on = timeout and a command that keeps its "
						 "progress in $CAIRN_STATE (docs/spec.md)"
					       : "");
	} else if (!strcmp(ti->kind, "node_fail") || !strcmp(ti->kind, "preempted")) {
		printf("  to do: nothing in the task: `cairn resume %s` runs it again; retries and "
		       "retry_on = node_fail,preempted would have by themselves\n",
		       r->dir);
	} else if (!strcmp(ti->kind, "lost")) {
		printf(
		    "  to do: its wrapper ended without a word (a reboot, kill -9, a node gone): "
		    "`cairn resume %s` runs it again\n",
		    r->dir);
	}
	mem_free(spec);
}

static void explain(const struct run *r, const struct plan *p, int s, int t, int lines)
{
	const struct spec_stage *st = &r->spec.stages[s];
	struct buf b = BUF_INIT;
	plan_explain(p, r, s, t, &b);
	enum task_state state = p->stages[s].state[t];
	struct task_info ti;
	struct error err;
	if (task_read(r->dir, st->name, t, 1, &ti, &err) == 0) {
		sched_view_apply(&p->view, r, s, t, &ti);
		state = ti.state;
	}
	const char *text = buf_str(&b);
	printf("%s/%d: %s%s%s\n", st->name, t, task_state_name(state),
	       strncmp(text, "but ", 4) ? ": " : ", ", text);
	/* Retries count per submission on Slurm (the job's restarts), per cairn
	 * run or resume locally (attempts count on across them). */
	int retries_left = ti.job[0] ? ti.restarts < st->res.retries : ti.attempt <= st->res.retries;
	if (state == TASK_FAILED && retries_left &&
	    !job_retry_allowed(st->res.retry_on, ti.kind, ti.exit_code)) {
		char what[48];
		task_kind_label(&ti, what, sizeof(what));
		printf("  not retried: retry_on = %s does not cover %s\n", st->res.retry_on, what);
	}
	if (state == TASK_FAILED)
		print_remedy(r, st, &ti);
	if (state == TASK_DONE)
		print_done_usage(r, st, t);
	if (ti.in_group)
		printf("  its Slurm job %s runs %d tasks of %s one after another (group = %d) and "
		       "has not "
		       "come to it yet\n",
		       ti.job, ti.in_group, st->name, ti.in_group);
	print_lock_refusal(r, st->name, t);
	enum plan_action a = p->stages[s].action[t];
	printf("  resume would %s it\n", a == PLAN_WAIT		  ? "wait for"
					  : a != PLAN_RUN		  ? "skip"
					  : state == TASK_PENDING ? "run"
								  : "rerun");
	if (ti.job[0] && (state == TASK_FAILED || state == TASK_CANCELLED)) {
		/* What Slurm still knows about the job (scontrol, until MinJobAge). */
		struct slurm_job_info info;
		struct error e2;
		int known = slurm_show_job(ti.job, &info, &e2);
		int started = info.start_time[0] && strcmp(info.start_time, "Unknown") &&
			      strcmp(info.start_time, "None") && info.nodes[0];
		if (known == 0 && started)
			printf("  Slurm job %s: %s, reason %s, exit %d:%d, node %s, ran %s of %s, %d restarts\n",
			       ti.job, info.state, info.reason, info.exit_code, info.signal, info.nodes,
			       info.run_time, info.time_limit, info.restarts);
		else if (known == 0)
			printf("  Slurm job %s: %s, reason %s, never started\n", ti.job, info.state,
			       info.reason);
		if (known == 0 && started && !strcmp(ti.kind, "exit") && info.exit_code == 1)
			printf("  (Slurm's exit 1 is the wrapper's, cairn exec: the task's own exit code "
			       "is above)\n");
		else if (known == 1)
			printf("  Slurm job %s: no longer known to Slurm (purged after MinJobAge)\n", ti.job);
	}
	if (state == TASK_FAILED || state == TASK_CANCELLED || state == TASK_RUNNING) {
		buf_reset(&b);
		task_path(&b, r->dir, st->name, t, "log");
		print_tail(b.s, lines);
	}
	if (ti.job[0] && (state == TASK_FAILED || state == TASK_CANCELLED)) {
		/* Slurm's own file for the job: slurmstepd says there why it killed it. */
		buf_reset(&b);
		buf_addf(&b, "%s/slurm/%s-%s.out", r->dir, st->name, ti.job);
		print_tail(b.s, lines);
	}
	buf_release(&b);
}

/* The first task of a stage whose outputs were released, or -1. */
static int first_released(const struct plan_stage *ps)
{
	for (int t = 0; t < ps->ntasks; t++)
		if (ps->reason[t] == WHY_RELEASED)
			return t;
	return -1;
}

/* why STAGE explains its first WHY_SHOWN tasks that are not done and
 * valid (each may ask Slurm about its job), and groups the others by why,
 * each group with its first few tasks; --all explains every one. */
enum { WHY_SHOWN = 5, GROUPS = 16, GROUP_TASKS = 8 };

struct groups {
	struct group {
		char label[64]; /* "failed, exit 3", "never ran", "key changed" */
		long long n;
		int tasks[GROUP_TASKS];
	} v[GROUPS];
	int n;
	long long other; /* tasks past the GROUPS-th label */
};

static void group_add(struct groups *g, const struct run *r, const struct plan *p, int s, int t)
{
	enum plan_reason why = p->stages[s].reason[t];
	char label[64];
	snprintf(label, sizeof(label), "%s", plan_reason_name(why));
	struct task_info ti;
	struct error err;
	if (why == WHY_FAILED && task_read(r->dir, r->spec.stages[s].name, t, 1, &ti, &err) == 0) {
		sched_view_apply(&p->view, r, s, t, &ti);
		char kind[40];
		task_kind_label(&ti, kind, sizeof(kind));
		snprintf(label, sizeof(label), "failed, %s", kind);
	}
	int i;
	for (i = 0; i < g->n && strcmp(g->v[i].label, label); i++)
		;
	if (i == g->n) {
		if (g->n == GROUPS) {
			g->other++;
			return;
		}
		snprintf(g->v[g->n++].label, sizeof(label), "%s", label);
	}
	struct group *k = &g->v[i];
	if (k->n < GROUP_TASKS)
		k->tasks[k->n] = t;
	k->n++;
}

static void group_print(const struct groups *g, const struct run *r, const char *stage)
{
	long long more = g->other;
	for (int i = 0; i < g->n; i++)
		more += g->v[i].n;
	if (!more)
		return;
	printf("and %lld more not done and valid (`cairn why %s %s --all` explains each):\n", more,
	       r->dir, stage);
	for (int i = 0; i < g->n; i++) {
		const struct group *k = &g->v[i];
		printf("  %lld %s:", k->n, k->label);
		for (long long j = 0; j < k->n && j < GROUP_TASKS; j++)
			printf(" %s/%d", stage, k->tasks[j]);
		printf("%s\n", k->n > GROUP_TASKS ? " ..." : "");
	}
	if (g->other)
		printf("  %lld for other reasons\n", g->other);
}

int cmd_why(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, why_usage))
		return 0;
	const char *pos[2] = {NULL, NULL};
	int npos = 0;
	long lines = 10;
	int all = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--all")) {
			all = 1;
		} else if ((!strcmp(argv[i], "--lines") && i + 1 < argc) ||
			   !strncmp(argv[i], "--lines=", 8)) {
			const char *v = argv[i][7] == '=' ? argv[i] + 8 : argv[++i];
			if (cli_parse_lines("why", "--lines", v, &lines) < 0)
				return 2;
		} else if (argv[i][0] != '-' && npos < 2)
			pos[npos++] = argv[i];
		else {
			cli_unexpected("why", argv[i], why_usage);
			return 2;
		}
	}
	const char *dir, *task_arg;
	if (cli_run_and_task("why", why_usage, pos, npos, &dir, &task_arg) < 0)
		return 2;
	struct run r;
	struct error err;
	int s, task;
	if (cli_open_run("why", dir, &r) < 0)
		return 2;
	if (cli_parse_task("why", &r, task_arg, 0, &s, &task) < 0) {
		run_release(&r);
		return 2;
	}
	const char *stage = r.spec.stages[s].name;
	struct plan p;
	if (plan_make(&p, &r, 0, 0, &err) < 0) {
		fprintf(stderr, "cairn why: %s\n", err.msg);
		plan_release(&p);
		run_release(&r);
		return 1;
	}
	char warning[400];
	sched_warning(&p.view, warning, sizeof(warning));
	if (warning[0])
		fprintf(stderr, "cairn why: %s\n", warning);
	if (task >= 0) {
		explain(&r, &p, s, task, lines);
	} else {
		const struct plan_stage *ps = &p.stages[s];
		struct groups g = {0};
		int shown = 0;
		long long released = 0;
		for (int t = 0; t < ps->ntasks; t++) {
			released += ps->reason[t] == WHY_RELEASED;
			if (ps->reason[t] == WHY_DONE || ps->reason[t] == WHY_RELEASED)
				continue;
			if (all || shown < WHY_SHOWN) {
				explain(&r, &p, s, t, lines);
				shown++;
			} else {
				group_add(&g, &r, &p, s, t);
			}
		}
		group_print(&g, &r, stage);
		printf("%s: %lld of %d tasks done and valid", stage, ps->skip, ps->ntasks);
		if (released)
			printf(" (%lld of them released: their outputs went once their readers "
			       "were done; `cairn why %s %s/%d` says more)",
			       released, r.dir, stage, first_released(ps));
		printf("; resume would run %lld\n", ps->run);
	}
	plan_release(&p);
	run_release(&r);
	return 0;
}
