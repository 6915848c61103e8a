/* cairn run SPEC and cairn resume RUN: plan, then hand the tasks to an
 * executor. Both end with the run's status and, last, the run folder. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/cpus.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "jobs/local.h"
#include "jobs/slurm.h"
#include "pipeline/sched.h"
#include "pipeline/cli.h"
#include "pipeline/release.h"

struct run_opts {
	const char *spec;     /* run: the spec; resume: an optional new spec */
	const char *run_dir;
	const char *executor;
	char **sets;
	int nsets;
	int jobs;
	long mem_mb; /* --mem: local memory budget; 0 until defaulted */
	const char *gpus;
	int dry_run;
	int json;
	int verify;
	int wait;
	const char *until; /* --until STAGE[,STAGE...] */
	const char *rerun; /* resume --rerun STAGE[/TASK][,...] */
	unsigned char **rerun_marks; /* its tasks per stage; NULL: none of the stage */
	int nmarks;		     /* stages in rerun_marks */
};

static const char run_usage[] =
    "usage: cairn run SPEC [--executor local|slurm] [--set NAME=VALUE]... [--jobs N]\n"
    "                 [--mem SIZE] [--gpus G] [--run-dir DIR] [--until S[,S]]\n"
    "                 [--dry-run] [--wait] [--json]\n"
    "Runs a pipeline: creates a run folder (under runs/, or DIR) and runs every task.\n"
    "  --executor E   local (default: a pool of processes here) or slurm: submit every\n"
    "                 task as job arrays with dependencies, then exit\n"
    "  --wait         slurm: follow the run until it ends (one squeue per poll)\n"
    "  --set N=V      override a value of [params]; repeatable\n"
    "  --jobs N       local: tasks at once (default: the number of cores)\n"
    "  --mem SIZE     local: memory the running tasks may ask at once, by their\n"
    "                 stages' mem (4G, 512M; default: this machine's memory)\n"
    "  --gpus G       local: GPUs to give to stages with gpus = N: a count, a list of\n"
    "                 device ids (0,2) or none (default: CUDA_VISIBLE_DEVICES, else\n"
    "                 every /dev/nvidiaN); each task sees only its own\n"
    "  --run-dir DIR  put the run folder exactly at DIR\n"
    "  --until S[,S]  run only stage S and the stages it needs upstream; the\n"
    "                 others wait, pending, for a later `cairn resume RUN`\n"
    "  --dry-run      print the plan, run nothing, create nothing\n"
    "  --json         end with the status as JSON instead of a table\n"
    "Exit: 0 all tasks done (with --until, all of its stages'), 1 some task failed,\n"
    "2 bad usage or bad spec, 130 interrupted.\n"
    "The last line printed is the run folder.\n"
    "example: cairn run configs/demo.ini --set shards=8 --jobs 2\n";

static const char resume_usage[] =
    "usage: cairn resume RUN [--spec SPEC] [--set NAME=VALUE]... [--executor E] [--jobs N]\n"
    "                        [--mem SIZE] [--gpus G] [--verify] [--until S[,S]]\n"
    "                        [--rerun T[,T]] [--dry-run] [--wait] [--json]\n"
    "Reruns only the tasks that failed, never ran, were cancelled or lost, whose\n"
    "outputs changed, or whose key changed (command, resources or inputs), then\n"
    "every task downstream of them whose inputs came out different. Done tasks\n"
    "are not touched.\n"
    "  --spec SPEC    use an edited spec instead of the run's frozen spec.ini\n"
    "  --set N=V      override a value of [params]\n"
    "  --verify       re-hash outputs (default: compare size and modification time)\n"
    "  --until S[,S]  rerun only within stage S and the stages it needs upstream\n"
    "  --rerun T[,T]  run these again though done and valid: a task (train/0) or a\n"
    "                 whole stage (train); what comes after reruns only where its\n"
    "                 inputs came out different\n"
    "  --executor E   local or slurm (default: the run's). On Slurm, tasks still queued\n"
    "                 are not submitted again: what reruns waits for them\n"
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
		else if (!strcmp(a, "--wait"))
			o->wait = 1;
		else if (OPT("--set"))
			o->sets[o->nsets++] = (char *)val;
		else if (OPT("--until")) {
			if (!*val) {
				fprintf(stderr,
					"cairn: --until: give a stage name (or several: a,b)\n");
				return -1;
			}
			o->until = val;
		} else if (OPT("--jobs")) {
			char *end;
			long n = strtol(val, &end, 10);
			if (*end || n < 1 || n > 4096) {
				fprintf(stderr, "cairn: --jobs %s: want a number from 1 to 4096\n", val);
				return -1;
			}
			o->jobs = (int)n;
		} else if (OPT("--mem")) {
			o->mem_mb = spec_parse_mem_mb(val);
			if (o->mem_mb <= 0) {
				fprintf(stderr, "cairn: --mem %s: want a size like 4G or 512M, at most 1024T\n",
					val);
				return -1;
			}
		} else if (OPT("--gpus"))
			o->gpus = val;
		else if (OPT("--executor")) {
			if (strcmp(val, "local") && strcmp(val, "slurm")) {
				fprintf(stderr, "cairn: --executor %s: want local or slurm\n", val);
				return -1;
			}
			o->executor = val;
		} else if (!resume && OPT("--run-dir"))
			o->run_dir = val;
		else if (resume && OPT("--spec"))
			o->spec = val;
		else if (resume && OPT("--rerun")) {
			if (!*val) {
				fprintf(stderr,
					"cairn: --rerun: give a task (train/0) or a stage\n");
				return -1;
			}
			o->rerun = val;
		} else if (a[0] == '-' || pos) {
			cli_unexpected(resume ? "resume" : "run", a, usage);
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
		o->jobs = cpus_usable();
	}
	if (!o->mem_mb) { /* this machine's memory */
		long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
		o->mem_mb = pages > 0 && size > 0 ? (long)((double)pages * (double)size / 1048576) : 0;
	}
	return 0;
}

/* ---- plan printing ---- */

static void print_plan(const struct run *r, const struct plan *p, const char *executor)
{
	const struct spec *s = &r->spec;
	printf("plan for %s: %d stage%s, %lld task%s, executor %s\n", s->name, s->nstages,
	       s->nstages == 1 ? "" : "s", s->ntasks, s->ntasks == 1 ? "" : "s", executor);
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
		long long n[WHY_LAST + 1] = {0};
		for (int t = 0; t < st->ntasks; t++)
			n[ps->reason[t]]++;
		if (n[WHY_NEW] == st->ntasks)
			continue;
		printf("  %20s ", "");
		const char *sep = " ";
		for (int w = 0; w <= WHY_LAST; w++)
			if (n[w]) {
				printf("%s%lld %s", sep, n[w],
				       plan_reason_name((enum plan_reason)w));
				sep = ", ";
			}
		printf("\n");
	}
	long long upstream = 0;
	for (int i = 0; i < s->nstages; i++)
		for (int t = 0; t < s->stages[i].ntasks; t++)
			upstream += p->stages[i].reason[t] == WHY_UPSTREAM;
	if (p->ncancel)
		printf("would first cancel %lld queued Slurm job%s: %s\n", p->ncancel,
		       p->ncancel == 1 ? "" : "s", buf_str(&p->cancel));
	printf("would run %lld tasks, skip %lld, wait for %lld\n", p->run, p->skip, p->wait);
	if (p->held)
		printf("(--until holds back %lld of the skipped: a later resume runs them)\n",
		       p->held);
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
	return exec_task(r, stage, task, 1);
}

/* The job graph of a planned run, shared by both executors. */
struct graph {
	struct job_graph g;
	struct job_stage *stages;
	struct job_dep **deps;
	char self[PATH_MAX];
};

static void graph_release(struct graph *gr, int nstages)
{
	for (int i = 0; gr->deps && i < nstages; i++)
		mem_free(gr->deps[i]);
	mem_free(gr->deps);
	mem_free(gr->stages);
}

static int graph_build(struct graph *gr, struct run *r, const struct plan *p, struct error *err)
{
	const struct spec *s = &r->spec;
	memset(gr, 0, sizeof(*gr));
	gr->stages = mem_calloc((size_t)s->nstages, sizeof(*gr->stages));
	gr->deps = mem_calloc((size_t)s->nstages, sizeof(*gr->deps));
	if (!gr->stages || !gr->deps)
		return error_set(err, "out of memory");
	for (int i = 0; i < s->nstages; i++) {
		const struct spec_stage *st = &s->stages[i];
		gr->deps[i] = mem_calloc((size_t)st->nin + 1, sizeof(**gr->deps));
		if (!gr->deps[i])
			return error_set(err, "out of memory");
		for (int e = 0; e < st->nin; e++) {
			gr->deps[i][e].stage = st->in[e].from;
			gr->deps[i][e].one_to_one = st->in[e].one_to_one;
		}
		/* plan actions map to the executors' todo values */
		unsigned char *todo = p->stages[i].action;
		for (int t = 0; t < st->ntasks; t++)
			todo[t] = todo[t] == PLAN_RUN ? LOCAL_RUN : todo[t] == PLAN_WAIT ? LOCAL_WAIT : LOCAL_SKIP;
		gr->stages[i].name = st->name;
		gr->stages[i].ntasks = st->ntasks;
		gr->stages[i].todo = todo;
		gr->stages[i].deps = gr->deps[i];
		gr->stages[i].ndeps = st->nin;
		gr->stages[i].res = &st->res;
		gr->stages[i].limits = p->stages[i].limits;
	}
	ssize_t n = readlink("/proc/self/exe", gr->self, sizeof(gr->self) - 1);
	gr->self[n > 0 ? n : 0] = '\0';
	struct job_graph g = {r->dir, s->name, gr->self, gr->stages, s->nstages, s->order, run_in_child, r};
	gr->g = g;
	return 0;
}

static int execute_local(struct run *r, const struct plan *p, const struct run_opts *o,
			 int *cancelled, struct error *err)
{
	struct graph gr;
	int rc = graph_build(&gr, r, p, err);
	struct progress_ctx pc = {isatty(2), clock_now(), 0, p->run};
	struct local_gpus gpus = {NULL, 0};
	struct job_counts c;
	if (rc == 0)
		rc = local_gpus_init(&gpus, o->gpus, err);
	struct job_opts jo = {o->jobs, gpus.ids, gpus.n, o->mem_mb, on_progress, &pc};
	for (int i = 0; rc == 0 && i < r->spec.nstages; i++) {
		long m = r->spec.stages[i].res.mem_mb;
		if (p->stages[i].run == 0 || o->mem_mb <= 0 || m <= o->mem_mb)
			continue;
		char want[32], have[32];
		job_format_kib((long long)m * 1024, want, sizeof(want));
		job_format_kib((long long)o->mem_mb * 1024, have, sizeof(have));
		fprintf(stderr,
			"cairn: note: stage '%s' asks mem = %s a task, more than the %s its tasks "
			"may hold here at once (--mem): they run alone, one at a time\n",
			r->spec.stages[i].name, want, have);
	}
	if (rc == 0) {
		run_event(r->dir,
			  "local executor: %lld tasks to run, %lld skipped, %d slots, %ld MB of "
			  "memory, %d GPUs",
			  p->run, p->skip, o->jobs, o->mem_mb, gpus.n);
		rc = local_run(&gr.g, &jo, &c, err);
		if (pc.tty)
			fprintf(stderr, "\n");
		if (rc == 1) {
			*cancelled = 1;
			rc = 0;
		}
		run_event(r->dir, "local executor ended: %lld done, %lld failed, %lld cancelled%s",
			  c.done, c.failed, c.cancelled, *cancelled ? " (interrupted)" : "");
	}
	graph_release(&gr, r->spec.nstages);
	local_gpus_release(&gpus);
	return rc;
}

static int record_submission(void *ctx, const struct slurm_submission *sub, struct error *err)
{
	struct run *r = ctx;
	return sched_record(r, r->spec.stages[sub->stage].name, sub->job_id, sub->offset,
			    sub->array, sub->group, err);
}

/* Submit every task the plan runs; those still queued from an earlier
 * submission are waited for through their job ids. dry: print the sbatch
 * command lines there instead, and cancel, write and record nothing. */
static int submit_slurm(struct run *r, struct plan *p, FILE *dry, struct error *err)
{
	const struct spec *s = &r->spec;
	struct graph gr;
	struct slurm_waits waits = {NULL};
	struct buf *ids = mem_calloc((size_t)s->nstages, sizeof(struct buf));
	int rc = graph_build(&gr, r, p, err);
	waits.ids = mem_calloc((size_t)s->nstages, sizeof(char *));
	if (rc == 0 && (!waits.ids || !ids))
		rc = error_set(err, "out of memory");
	for (int i = 0; rc == 0 && i < s->nstages; i++) {
		if (p->stages[i].wait > 0 && plan_waits(p, i, &ids[i]) < 0)
			rc = error_set(err, "out of memory");
		waits.ids[i] = ids[i].s;
	}
	for (int i = 0; rc == 0 && i < s->nstages; i++) {
		const struct job_res *res = &s->stages[i].res;
		long k = res->group > 1 ? res->group : 1, limit = res->time_s * k;
		if (p->stages[i].run > 0 && limit % 60 && !dry)
			fprintf(stderr,
				"cairn: note: stage %s: time = %ld s%s becomes %ld min on Slurm, "
				"which counts "
				"whole minutes (and checks limits about every 30 s)\n",
				s->stages[i].name, res->time_s, k > 1 ? " a task (x group)" : "",
				(limit + 59) / 60);
	}
	/* Queued jobs that must go first: their input reruns, or the spec
	 * dropped their task. */
	if (rc == 0 && p->ncancel > 0 && !dry) {
		rc = slurm_cancel_text(buf_str(&p->cancel), err);
		if (rc == 0) {
			printf("cancelled %lld queued Slurm job%s first: %s\n", p->ncancel,
			       p->ncancel == 1 ? "" : "s", buf_str(&p->cancel));
			run_event(r->dir, "slurm executor: scancel %s", buf_str(&p->cancel));
		}
	}
	char prefix[300];
	const char *base = strrchr(r->dir, '/');
	/* With a hash of the folder's path (FNV-1a): runs in a/x and b/x must not
	 * share job names, by which sbatch finds a job it submitted before a
	 * time-out instead of submitting it twice. */
	unsigned hash = 2166136261u;
	for (const char *c = r->dir; *c; c++)
		hash = (hash ^ (unsigned char)*c) * 16777619u;
	snprintf(prefix, sizeof(prefix), "cairn.%s.%04x", base ? base + 1 : r->dir, hash & 0xffff);
	struct buf scripts = BUF_INIT;
	buf_addf(&scripts, "%s/slurm", r->dir);
	json_t *recorded = json_object_get(r->info, "jobs");
	struct slurm_opts so = {jsonio_str(r->info, "workdir", "."),
				scripts.s,
				prefix,
				json_is_array(recorded) ? (int)json_array_size(recorded) : 0,
				&s->slurm,
				&waits,
				record_submission,
				r,
				dry};
	double t0 = clock_now();
	long calls0 = slurm_calls(SLURM_SBATCH);
	int n = rc == 0 ? slurm_submit(&gr.g, &so, err) : -1;
	if (dry) {
		rc = n < 0 ? -1 : 0;
	} else if (n >= 0) {
		printf("submitted %lld tasks in %d job arrays (%ld sbatch calls, %.2f s); nothing of "
		       "cairn keeps running\n",
		       p->run, n, slurm_calls(SLURM_SBATCH) - calls0, clock_now() - t0);
		run_event(r->dir, "slurm executor: %lld tasks submitted in %d arrays, %lld skipped",
			  p->run, n, p->skip);
	} else {
		run_event(r->dir, "slurm executor: submission failed: %s", err->msg);
		rc = -1;
	}
	buf_release(&scripts);
	for (int i = 0; ids && i < s->nstages; i++)
		buf_release(&ids[i]);
	mem_free(ids);
	mem_free(waits.ids);
	graph_release(&gr, s->nstages);
	return rc;
}

/* A dry run on Slurm: the sbatch command lines it would run. */
static int dry_sbatch(struct run *r, struct plan *p)
{
	struct error err;
	if (p->run == 0)
		return 0;
	printf("sbatch calls it would make%s:\n",
	       strcmp(r->dir, "RUN") ? "" : " (RUN: the run folder, made when it runs)");
	fflush(stdout);
	if (submit_slurm(r, p, stdout, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		return -1;
	}
	return 0;
}

/* --wait: follow a Slurm run with one squeue per poll, 5 s apart at first,
 * backing off by 1.2 to 30 s, until nothing of it is queued or running. */
static int follow(struct run *r, struct run_status *st, struct error *err)
{
	double delay = 5, t0 = clock_now();
	int tty = isatty(2), warned = 0;
	for (;;) {
		if (status_collect(r, st, err) < 0)
			return -1;
		if (st->warning[0] && !warned++)
			fprintf(stderr, "%scairn: %s; still waiting\n", tty ? "\n" : "", st->warning);
		if (!st->warning[0])
			warned = 0;
		if (tty)
			fprintf(stderr, "\r%lld/%lld done, %lld running, %lld queued, %lld failed  (%.0f s)\033[K",
				st->total.done, st->total.tasks, st->total.running, st->queued,
				st->total.failed, clock_now() - t0);
		if (st->total.running == 0 && st->queued == 0 && !st->warning[0])
			break;
		if (st->total.running == 0 && st->queued > 0 && st->queued == st->stuck_total) {
			fprintf(stderr, "%scairn: every task still queued waits for something Slurm will "
					"never give it; stopped waiting\n",
				tty ? "\n" : "");
			break;
		}
		status_release(st);
		sleep((unsigned)delay);
		delay = delay * 1.2 > 30 ? 30 : delay * 1.2;
	}
	if (tty)
		fprintf(stderr, "\n");
	return 0;
}

/* Local runs: can every stage's gpus = N be given here? Found before a
 * run folder is made, so a spec that cannot run is bad usage (exit 2). */
static int check_gpus(const struct spec *s, const struct run_opts *o, struct error *err)
{
	struct local_gpus gp;
	if (local_gpus_init(&gp, o->gpus, err) < 0)
		return -1;
	int rc = 0;
	for (int i = 0; i < s->nstages && rc == 0; i++)
		rc = local_gpus_fit(&gp, s->stages[i].name, s->stages[i].res.gpus, err);
	local_gpus_release(&gp);
	return rc;
}

/* --rerun's list into o->rerun_marks for r's spec: 0, or -1 said (bad
 * usage: no such stage or task). */
static int rerun_marks(const struct run *r, struct run_opts *o)
{
	if (!o->rerun)
		return 0;
	char *list = mem_strdup(o->rerun), *save = NULL;
	o->nmarks = r->spec.nstages;
	o->rerun_marks = mem_calloc((size_t)o->nmarks, sizeof(*o->rerun_marks));
	int rc = list && o->rerun_marks ? 0 : -1;
	if (rc < 0)
		fprintf(stderr, "cairn: out of memory\n");
	for (char *t = list ? strtok_r(list, ",", &save) : NULL; rc == 0 && t;
	     t = strtok_r(NULL, ",", &save)) {
		rc = cli_mark_task("resume --rerun", r, t, o->rerun_marks);
	}
	mem_free(list);
	return rc;
}

static void rerun_marks_free(struct run_opts *o)
{
	for (int i = 0; o->rerun_marks && i < o->nmarks; i++)
		mem_free(o->rerun_marks[i]);
	mem_free(o->rerun_marks);
	o->rerun_marks = NULL;
}

/* A done task that --rerun runs again gets a `rerun` file beside its
 * markers: its wrapper then runs it even when its key and outputs are
 * unchanged (it would keep it otherwise), and removes the file. */
static int write_rerun_files(const struct run *r, const struct plan *p, const struct run_opts *o,
			     struct error *err)
{
	long long n = 0, busy = 0;
	struct buf path = BUF_INIT;
	int rc = 0;
	for (int i = 0; rc == 0 && o->rerun_marks && i < o->nmarks; i++) {
		const struct plan_stage *ps = &p->stages[i];
		for (int t = 0; rc == 0 && o->rerun_marks[i] && t < ps->ntasks; t++) {
			busy += o->rerun_marks[i][t] && ps->action[t] == PLAN_WAIT;
			if (!o->rerun_marks[i][t] || ps->state[t] != TASK_DONE ||
			    ps->action[t] != PLAN_RUN)
				continue;
			buf_reset(&path);
			task_path(&path, r->dir, r->spec.stages[i].name, t, "rerun");
			rc = path.failed ? error_set(err, "out of memory")
					 : fs_write_atomic(path.s, "", 0, err);
			n++;
		}
	}
	buf_release(&path);
	if (rc == 0 && n)
		run_event(r->dir, "--rerun %s: %lld done tasks run again", o->rerun, n);
	if (busy)
		fprintf(stderr,
			"cairn: --rerun: %lld of its tasks are running or queued now: not "
			"started twice; ask again once they have ended\n",
			busy);
	return rc;
}

/* plan_make, then --until: 0; or the exit status after saying why (1 the
 * plan could not be made, 2 --until names no stage). *keep (with --until:
 * its stages, else NULL) is the caller's to free. */
static int make_plan(struct plan *p, const struct run *r, const struct run_opts *o, int fresh,
		     unsigned char **keep)
{
	struct error err;
	*keep = NULL;
	if (plan_make_rerun(p, r, fresh, o->verify, o->rerun_marks, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		return 1;
	}
	if (!o->until)
		return 0;
	if (!(*keep = mem_calloc((size_t)r->spec.nstages, 1))) {
		fprintf(stderr, "cairn: out of memory\n");
		return 1;
	}
	if (plan_until(p, &r->spec, o->until, *keep, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		return 2;
	}
	return 0;
}

/* Are all tasks of the stages kept by --until (all stages without) done? */
static int all_done(const struct run_status *st, const unsigned char *keep)
{
	if (!keep)
		return !strcmp(st->state, "done");
	for (int i = 0; i < st->nstages; i++)
		if (keep[i] && st->stages[i].done < st->stages[i].tasks)
			return 0;
	return 1;
}

/* The part shared by run and resume once the run folder is open and locked. */
static int drive(struct run *r, const struct run_opts *o, int fresh)
{
	struct error err;
	struct plan p;
	const char *executor = run_executor(r);
	unsigned char *keep;
	int rc = make_plan(&p, r, o, fresh, &keep);
	if (rc) {
		plan_release(&p);
		mem_free(keep);
		return rc;
	}
	if (p.held)
		run_event(r->dir, "--until %s: %lld tasks of other stages held back", o->until,
			  p.held);
	if (write_rerun_files(r, &p, o, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		plan_release(&p);
		mem_free(keep);
		return 1;
	}
	long long held = p.held;
	int cancelled = 0;
	int slurm = !strcmp(executor, "slurm");
	if (slurm && p.view.unreachable) {
		/* Without Slurm's view, queued tasks look failed or lost: submitting
		 * them again would run them twice. */
		fprintf(stderr, "cairn: cannot reach Slurm (%s); nothing submitted: try `scontrol ping`; is "
				"SLURM_CONF set?\n%s\n",
			p.view.error, r->dir);
		plan_release(&p);
		mem_free(keep);
		return 1;
	}
	/* Done tasks that run again and read a temp stage are not done
	 * readers till they end; released tasks needed again must run. */
	if (release_mark(r, &p, &err) < 0) {
		rc = -1;
	} else {
		/* what an earlier drive or job left unreleased; its failure is
		 * not worth stopping for */
		if (!fresh && release_sweep(r, &err) < 0)
			fprintf(stderr, "cairn: releasing temp outputs: %s\n", err.msg);
		if (slurm)
			rc = submit_slurm(r, &p, NULL, &err);
		else
			rc = execute_local(r, &p, o, &cancelled, &err);
	}
	plan_release(&p);
	if (rc < 0) {
		mem_free(keep);
		fprintf(stderr, "cairn: %s\n", err.msg);
		json_t *jobs = json_object_get(r->info, "jobs");
		if (slurm && fresh && json_array_size(jobs) == 0) {
			/* Nothing went out and nothing ran: leave no run folder behind,
			 * so the same command (--run-dir too) can simply be run again. */
			struct error e2;
			if (fs_rm_rf(r->dir, &e2) == 0) {
				fprintf(stderr, "nothing was submitted; the run folder %s was removed\n", r->dir);
				return 1;
			}
		}
		if (slurm && json_array_size(jobs) > 0)
			fprintf(stderr, "what was submitted is recorded: `cairn resume %s` submits the "
					"rest (add `--spec FIXED.ini` if the spec must change), `cairn cancel "
					"%s` cancels it\n",
				r->dir, r->dir);
		printf("%s\n", r->dir);
		return 1;
	}
	struct run_status st;
	if (slurm && !o->wait) {
		mem_free(keep);
		printf("follow it with: cairn status %s\n%s\n", r->dir, r->dir);
		return 0;
	}
	if (slurm ? follow(r, &st, &err) < 0 : status_collect(r, &st, &err) < 0) {
		mem_free(keep);
		fprintf(stderr, "cairn: %s\n", err.msg);
		status_release(&st);
		return 1;
	}
	status_print(r, &st, o->json);
	int code = cancelled ? 130 : all_done(&st, keep) ? 0 : 1;
	mem_free(keep);
	if (!code && held)
		fprintf(stderr,
			"--until %s: all done; %lld tasks beyond it held back, `cairn "
			"resume %s` runs them\n",
			o->until, held, r->dir);
	if (cancelled)
		fprintf(stderr, "cancelled; continue with: cairn resume %s\n", r->dir);
	else if (code && st.stuck_total && !st.total.failed)
		fprintf(stderr, "some tasks can never start as asked; `cairn cancel %s`, fix them, then "
				"`cairn resume %s --spec FIXED.ini`\n",
			r->dir, r->dir);
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
		r.dir = "RUN";
		char cwd[PATH_MAX];
		r.info = json_pack("{s:s}", "workdir", getcwd(cwd, sizeof(cwd)) ? cwd : ".");
		struct plan p;
		unsigned char *keep;
		if ((rc = make_plan(&p, &r, &o, 1, &keep)) == 0) {
			print_plan(&r, &p, executor);
			if (!strcmp(executor, "slurm") && dry_sbatch(&r, &p) < 0)
				rc = 1;
		}
		plan_release(&p);
		mem_free(keep);
		json_decref(r.info);
		goto out_spec;
	}
	if (o.until) { /* a name that is no stage: said before a run folder is made */
		unsigned char *keep = mem_calloc((size_t)s.nstages, 1);
		int bad = !keep || plan_until(NULL, &s, o.until, keep, &err) < 0;
		mem_free(keep);
		if (bad) {
			fprintf(stderr, "cairn: %s\n", keep ? err.msg : "out of memory");
			goto out_spec;
		}
	}
	if (strcmp(executor, "slurm") && check_gpus(&s, &o, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		goto out_spec;
	}
	struct run r;
	if (run_create(&r, &s, o.run_dir, executor, &err) < 0) {
		fprintf(stderr, "cairn: %s\n", err.msg);
		run_release(&r);
		goto out_spec;
	}
	rc = take_lock(&r) < 0 ? 1 : drive(&r, &o, 1);
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
	if (run_open(&r, o.run_dir, &err) < 0 || run_check_path(r.dir, &err) < 0) {
		fprintf(stderr, "cairn resume: %s\n", err.msg);
		goto out;
	}
	if (!o.dry_run && take_lock(&r) < 0) {
		rc = 1; /* could not do its work now; the run is fine */
		goto out;
	}
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
			if ((o.spec ? spec_load(&edited, o.spec, o.sets, o.nsets, &err)
				    : spec_load_frozen(&edited, r.spec.path, o.sets, o.nsets, &err)) < 0) {
				fprintf(stderr, "cairn resume: %s\n", err.msg);
				spec_release(&edited);
				goto out;
			}
			spec_release(&r.spec);
			r.spec = edited;
		}
		unsigned char *keep = NULL;
		if (rerun_marks(&r, &o) < 0)
			goto out;
		if ((rc = make_plan(&p, &r, &o, 0, &keep)) == 0) {
			char warning[400];
			sched_warning(&p.view, warning, sizeof(warning));
			if (warning[0])
				fprintf(stderr, "cairn resume: %s\n", warning);
			print_plan(&r, &p, run_executor(&r));
			if (!strcmp(o.executor ? o.executor : run_executor(&r), "slurm") &&
			    dry_sbatch(&r, &p) < 0)
				rc = 1;
		}
		plan_release(&p);
		mem_free(keep);
		goto out;
	}
	if (o.executor && strcmp(o.executor, run_executor(&r))) {
		json_object_set_new(r.info, "executor", json_string(o.executor));
		if (run_save_info(&r, &err) < 0) {
			fprintf(stderr, "cairn resume: %s\n", err.msg);
			goto out;
		}
	}
	if (rerun_marks(&r, &o) < 0)
		goto out;
	run_event(r.dir, "resume (executor %s)", run_executor(&r));
	rc = drive(&r, &o, 0);
out:
	rerun_marks_free(&o);
	run_release(&r);
	mem_free(o.sets);
	return rc;
}
