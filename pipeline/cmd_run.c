/* cairn run SPEC and cairn resume RUN: plan, then hand the tasks to an
 * executor. Both end with the run's status and, last, the run folder. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "jobs/local.h"
#include "pipeline/cli.h"

struct run_opts {
	const char *spec;     /* run: the spec; resume: an optional new spec */
	const char *run_dir;
	const char *executor;
	char **sets;
	int nsets;
	int jobs;
	int dry_run;
	int json;
	int verify;
};

static const char run_usage[] =
	"usage: cairn run SPEC [--executor local|slurm] [--set NAME=VALUE]... [--jobs N]\n"
	"                 [--run-dir DIR] [--dry-run] [--json]\n"
	"Runs a pipeline: creates a run folder (under runs/, or DIR) and runs every task.\n"
	"  --executor E   local (default: a pool of processes here) or slurm\n"
	"  --set N=V      override a value of [params]; repeatable\n"
	"  --jobs N       local: tasks at once (default: the number of cores)\n"
	"  --run-dir DIR  put the run folder exactly at DIR\n"
	"  --dry-run      print the plan, run nothing, create nothing\n"
	"  --json         end with the status as JSON instead of a table\n"
	"Exit: 0 all tasks done, 1 some task failed, 2 bad usage or bad spec, 130 interrupted.\n"
	"The last line printed is the run folder.\n"
	"example: cairn run configs/demo.ini --set shards=8 --jobs 2\n";

static const char resume_usage[] =
	"usage: cairn resume RUN [--spec SPEC] [--set NAME=VALUE]... [--jobs N] [--verify]\n"
	"                        [--dry-run] [--json]\n"
	"Reruns only the tasks that failed, never ran, were cancelled or lost, whose\n"
	"outputs changed, or whose key changed (command, resources or inputs), then\n"
	"every task downstream of them whose inputs came out different. Done tasks\n"
	"are not touched.\n"
	"  --spec SPEC    use an edited spec instead of the run's frozen spec.ini\n"
	"  --set N=V      override a value of [params]\n"
	"  --verify       re-hash outputs (default: compare size and modification time)\n"
	"  --dry-run      print what would rerun and why, run nothing\n"
	"example: cairn resume runs/demo-20261124T140000Z-1a2b --dry-run\n";

static int parse_opts(int argc, char **argv, int resume, struct run_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->sets = mem_calloc((size_t)argc, sizeof(char *));
	if (!o->sets)
		return -1;
	const char *usage = resume ? resume_usage : run_usage;
	const char *pos = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
#define OPT(name) (!strcmp(a, name) ? (i + 1 < argc ? (val = argv[++i]) : NULL) : !strncmp(a, name "=", sizeof(name)) ? (val = a + sizeof(name)) : NULL)
		if (!strcmp(a, "--dry-run"))
			o->dry_run = 1;
		else if (!strcmp(a, "--json"))
			o->json = 1;
		else if (resume && !strcmp(a, "--verify"))
			o->verify = 1;
		else if (OPT("--set"))
			o->sets[o->nsets++] = (char *)val;
		else if (OPT("--jobs")) {
			char *end;
			long n = strtol(val, &end, 10);
			if (*end || n < 1 || n > 4096) {
				fprintf(stderr, "cairn: --jobs %s: want a number from 1 to 4096\n", val);
				return -1;
			}
			o->jobs = (int)n;
		} else if (!resume && OPT("--executor")) {
			if (strcmp(val, "local") && strcmp(val, "slurm")) {
				fprintf(stderr, "cairn: --executor %s: want local or slurm\n", val);
				return -1;
			}
			o->executor = val;
		} else if (!resume && OPT("--run-dir"))
			o->run_dir = val;
		else if (resume && OPT("--spec"))
			o->spec = val;
		else if (a[0] == '-' || pos) {
			fprintf(stderr, "cairn %s: unexpected '%s'\n%s", resume ? "resume" : "run", a,
				usage);
			return -1;
		} else
			pos = a;
#undef OPT
	}
	if (!pos) {
		fputs(usage, stderr);
		return -1;
	}
	if (resume)
		o->run_dir = pos;
	else
		o->spec = pos;
	if (!o->jobs) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o->jobs = n > 0 ? (int)n : 1;
	}
	return 0;
}

/* ---- plan printing ---- */

static void print_plan(const struct run *r, const struct plan *p, const char *executor)
{
	const struct spec *s = &r->spec;
	printf("plan for %s: %d stages, %lld tasks, executor %s\n", s->name, s->nstages, s->ntasks,
	       executor);
	printf("  %-20s %8s %8s %8s %8s  %s\n", "stage", "tasks", "run", "skip", "wait", "after");
	for (int k = 0; k < s->nstages; k++) {
		int i = s->order[k];
		const struct spec_stage *st = &s->stages[i];
		const struct plan_stage *ps = &p->stages[i];
		printf("  %-20s %8d %8lld %8lld %8lld  ", st->name, st->ntasks, ps->run, ps->skip,
		       ps->wait);
		if (!st->nin)
			printf("-");
		for (int e = 0; e < st->nin; e++)
			printf("%s%s%s", e ? ", " : "", s->stages[st->in[e].from].name,
			       st->in[e].one_to_one ? " (1:1)" : "");
		printf("\n");
		/* Reasons, counted. */
		long long n[WHY_RUNNING + 1] = {0};
		for (int t = 0; t < st->ntasks; t++)
			n[ps->reason[t]]++;
		static const char *names[] = {"never ran",	 "failed",	    "cancelled",
					      "lost",		 "outputs changed", "key changed",
					      "input reruns",	 "done",	    "running"};
		if (n[WHY_NEW] == st->ntasks)
			continue;
		printf("  %20s ", "");
		for (int w = 0; w <= WHY_RUNNING; w++)
			if (n[w])
				printf(" %lld %s;", n[w], names[w]);
		printf("\n");
	}
	long long upstream = 0;
	for (int i = 0; i < s->nstages; i++)
		for (int t = 0; t < s->stages[i].ntasks; t++)
			upstream += p->stages[i].reason[t] == WHY_UPSTREAM;
	printf("would run %lld tasks, skip %lld, wait for %lld\n", p->run, p->skip, p->wait);
	if (upstream)
		printf("(%lld of them only if an input that reruns comes out different)\n", upstream);
}

/* ---- progress on a terminal ---- */

struct progress_ctx {
	int tty;
	double start, last;
	long long total;
};

static void on_progress(void *ctx, const struct job_counts *c)
{
	struct progress_ctx *pc = ctx;
	if (!pc->tty)
		return;
	double now = clock_now();
	long long ended = c->done + c->failed + c->cancelled;
	if (now - pc->last < 0.1 && ended < c->todo)
		return;
	pc->last = now;
	double rate = now > pc->start ? (double)ended / (now - pc->start) : 0;
	char eta[32] = "";
	if (rate > 0 && ended < c->todo)
		clock_format_duration((double)(c->todo - ended) / rate, eta, sizeof(eta));
	fprintf(stderr, "\r%lld/%lld done, %lld running, %lld failed  %.1f tasks/s%s%s\033[K",
		c->done, c->todo, c->running, c->failed, rate, *eta ? "  ETA " : "", eta);
}

/* ---- executing ---- */

static int run_in_child(void *ctx, int stage, int task)
{
	struct run *r = ctx;
	/* The wrapper must not keep the run's lock: it may outlive this cairn. */
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	r->lock_fd = -1;
	return exec_task(r, stage, task);
}

static int execute(struct run *r, const struct plan *p, const struct run_opts *o, int *cancelled,
		   struct error *err)
{
	const struct spec *s = &r->spec;
	struct job_stage *stages = mem_calloc((size_t)s->nstages, sizeof(*stages));
	struct job_dep **deps = mem_calloc((size_t)s->nstages, sizeof(*deps));
	if (!stages || !deps) {
		mem_free(stages);
		mem_free(deps);
		return error_set(err, "out of memory");
	}
	int rc = 0;
	for (int i = 0; i < s->nstages && rc == 0; i++) {
		const struct spec_stage *st = &s->stages[i];
		deps[i] = mem_calloc((size_t)st->nin + 1, sizeof(**deps));
		if (!deps[i]) {
			rc = error_set(err, "out of memory");
			break;
		}
		for (int e = 0; e < st->nin; e++) {
			deps[i][e].stage = st->in[e].from;
			deps[i][e].one_to_one = st->in[e].one_to_one;
		}
		/* plan actions map to the executor's todo values */
		unsigned char *todo = p->stages[i].action;
		for (int t = 0; t < st->ntasks; t++)
			todo[t] = todo[t] == PLAN_RUN ? LOCAL_RUN : todo[t] == PLAN_WAIT ? LOCAL_WAIT : LOCAL_SKIP;
		stages[i].name = st->name;
		stages[i].ntasks = st->ntasks;
		stages[i].todo = todo;
		stages[i].deps = deps[i];
		stages[i].ndeps = st->nin;
		stages[i].res = &st->res;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	struct job_graph g = {r->dir, s->name, self, stages, s->nstages, s->order, run_in_child, r};
	struct progress_ctx pc = {isatty(2), clock_now(), 0, p->run};
	struct job_opts jo = {o->jobs, on_progress, &pc};
	struct job_counts c;
	if (rc == 0) {
		run_event(r->dir, "local executor: %lld tasks to run, %lld skipped, %d slots", p->run,
			  p->skip, o->jobs);
		rc = local_run(&g, &jo, &c, err);
		if (pc.tty)
			fprintf(stderr, "\n");
		if (rc == 1) {
			*cancelled = 1;
			rc = 0;
		}
		run_event(r->dir, "local executor ended: %lld done, %lld failed, %lld cancelled%s",
			  c.done, c.failed, c.cancelled, *cancelled ? " (interrupted)" : "");
	}
	for (int i = 0; i < s->nstages; i++)
		mem_free(deps[i]);
	mem_free(deps);
	mem_free(stages);
	return rc;
}

/* The part shared by run and resume once the run folder is open and locked. */
static int drive(struct run *r, const struct run_opts *o, int fresh)
{
	struct error err;
	struct plan p;
	const char *executor = jsonio_str(r->info, "executor", "local");
	if (plan_make(&p, r, fresh, o->verify, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		plan_release(&p);
		return 1;
	}
	if (!strcmp(executor, "slurm")) {
		fprintf(stderr, "cairn: the slurm executor is not available in this build yet; "
				"use --executor local\n");
		plan_release(&p);
		return 2;
	}
	int cancelled = 0;
	int rc = execute(r, &p, o, &cancelled, &err);
	plan_release(&p);
	if (rc < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		return 1;
	}
	struct run_status st;
	if (status_collect(r, &st, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		status_release(&st);
		return 1;
	}
	status_print(r, &st, o->json);
	int code = cancelled ? 130 : !strcmp(st.state, "done") ? 0 : 1;
	if (cancelled)
		fprintf(stderr, "cancelled; continue with: cairn resume %s\n", r->dir);
	else if (code)
		fprintf(stderr, "some tasks failed; after fixing, continue with: cairn resume %s\n",
			r->dir);
	status_release(&st);
	if (!o->json)
		printf("%s\n", r->dir);
	return code;
}

static int take_lock(struct run *r)
{
	long holder = 0;
	struct error err;
	int got = run_lock(r, &holder, &err);
	if (got < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		return -1;
	}
	if (got == 0) {
		fprintf(stderr,
			"cairn: %s is being run by another cairn (pid %ld): wait for it, or stop it "
			"with `cairn cancel %s`\n",
			r->dir, holder, r->dir);
		return -1;
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, run_usage))
		return 0;
	struct run_opts o;
	if (parse_opts(argc, argv, 0, &o) < 0) {
		mem_free(o.sets);
		return 2;
	}
	struct spec s;
	struct error err;
	int rc = 2;
	if (spec_load(&s, o.spec, o.sets, o.nsets, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		goto out_spec;
	}
	const char *executor = o.executor ? o.executor : s.executor;
	if (o.dry_run) {
		struct run r;
		memset(&r, 0, sizeof(r));
		r.spec = s;
		r.dir = "(new run)";
		struct plan p;
		if (plan_make(&p, &r, 1, 0, &err) < 0) {
			fprintf(stderr, "cairn: %s\n", err.msg);
			rc = 1;
		} else {
			print_plan(&r, &p, executor);
			rc = 0;
		}
		plan_release(&p);
		goto out_spec;
	}
	struct run r;
	if (run_create(&r, &s, o.run_dir, executor, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		run_release(&r);
		goto out_spec;
	}
	rc = take_lock(&r) < 0 ? 2 : drive(&r, &o, 1);
	run_release(&r);
out_spec:
	spec_release(&s);
	mem_free(o.sets);
	return rc;
}

int cmd_resume(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, resume_usage))
		return 0;
	struct run_opts o;
	if (parse_opts(argc, argv, 1, &o) < 0) {
		mem_free(o.sets);
		return 2;
	}
	struct run r;
	struct error err;
	int rc = 2;
	if (run_open(&r, o.run_dir, &err) < 0) {
		fprintf(stderr, "cairn resume: %s\n", err.msg);
		goto out;
	}
	if (!o.dry_run && take_lock(&r) < 0)
		goto out;
	if ((o.spec || o.nsets) && !o.dry_run &&
	    run_replace_spec(&r, o.spec, o.sets, o.nsets, &err) < 0) {
		fprintf(stderr, "cairn resume: %s\n", err.msg);
		goto out;
	}
	if (o.dry_run) {
		struct plan p;
		if (o.spec || o.nsets) {
			/* Plan with the edited spec without writing it into the run. */
			struct spec edited;
			if (spec_load(&edited, o.spec ? o.spec : r.spec.path, o.sets, o.nsets, &err) < 0) {
				fprintf(stderr, "cairn resume: %s\n", err.msg);
				spec_release(&edited);
				goto out;
			}
			spec_release(&r.spec);
			r.spec = edited;
		}
		if (plan_make(&p, &r, 0, o.verify, &err) < 0) {
			fprintf(stderr, "cairn resume: %s\n", err.msg);
			rc = 1;
		} else {
			print_plan(&r, &p, jsonio_str(r.info, "executor", "local"));
			rc = 0;
		}
		plan_release(&p);
		goto out;
	}
	run_event(r.dir, "resume");
	rc = drive(&r, &o, 0);
out:
	run_release(&r);
	mem_free(o.sets);
	return rc;
}
