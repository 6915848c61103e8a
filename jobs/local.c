#include "jobs/local.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"

enum tstate { T_SATISFIED, T_BLOCKED, T_READY, T_RUNNING, T_FAILED, T_NEVER, T_EXTERNAL };

struct ref {
	int stage, task;
};

struct pool {
	const struct job_graph *g;
	const struct job_opts *o;
	struct job_counts *c;
	unsigned char **state;  /* per stage, per task: enum tstate */
	int **deps_left;        /* per stage, per task: unsatisfied dependencies */
	int **attempts;         /* per stage, per task: attempts started here */
	struct job_limits **next; /* per stage with a mem or time range, per task:
				     what its next attempt asks (job_next_limits); NULL */
	long long *remaining;   /* per stage: tasks not yet satisfied */
	int *running_in_stage;
	int *failed_stage;      /* per stage: some task failed for good */
	struct ref *queue;      /* ready tasks, FIFO */
	long long qhead, qtail, qcap;
	pid_t *pids;            /* per slot */
	struct ref *slot_task;
	int *slot_weight;
	int nslots, free_weight;
	long *slot_mem;         /* per slot: the mem its task holds (MB) */
	long free_mem;          /* of job_opts.mem_mb */
	int *gpu_slot;          /* per GPU of job_opts.gpu_ids: the slot using it, or -1 */
	long long external;     /* tasks running in wrappers we did not start */
};

static volatile sig_atomic_t stop_sig;
static volatile sig_atomic_t tick;

static void on_stop(int sig)
{
	stop_sig = sig;
}

static void on_tick(int sig)
{
	(void)sig;
	tick = 1;
}

static int push(struct pool *p, int s, int t)
{
	if (p->qtail == p->qcap) {
		long long cap = p->qcap ? 2 * p->qcap : 1024;
		struct ref *q = mem_realloc(p->queue, (size_t)cap * sizeof(*q));
		if (!q)
			return -1;
		p->queue = q;
		p->qcap = cap;
	}
	p->queue[p->qtail].stage = s;
	p->queue[p->qtail].task = t;
	p->qtail++;
	p->state[s][t] = T_READY;
	return 0;
}

static void report(struct pool *p)
{
	if (p->o->progress)
		p->o->progress(p->o->progress_ctx, p->c);
}

static int weight_of(const struct pool *p, int s)
{
	const struct job_res *r = p->g->stages[s].res;
	int w = r->cpus * (r->ranks > 0 ? r->ranks : 1);
	if (w < 1)
		w = 1;
	return w > p->o->jobs ? p->o->jobs : w;
}

/* The mem and time task t of stage s asks: its stage's, or with a range
 * (mem = 1G..8G) what its failures so far call for. */
static struct job_limits task_limits(const struct pool *p, int s, int t)
{
	const struct job_res *r = p->g->stages[s].res;
	struct job_limits l = {r->mem_mb, r->time_s};
	return p->next[s] ? p->next[s][t] : l;
}

/* The memory a task holds of the budget while it runs: its mem, all of the
 * budget at most (a task asking more runs alone); 0 without a budget. */
static long mem_of(const struct pool *p, int s, int t)
{
	long m = task_limits(p, s, t).mem_mb;
	if (p->o->mem_mb <= 0)
		return 0;
	return m > p->o->mem_mb ? p->o->mem_mb : m;
}

/* Count initial unsatisfied dependencies; mark the ready ones. */
static int setup(struct pool *p, struct error *err)
{
	const struct job_graph *g = p->g;
	int n = g->nstages;
	p->state = mem_calloc((size_t)n, sizeof(*p->state));
	p->deps_left = mem_calloc((size_t)n, sizeof(*p->deps_left));
	p->attempts = mem_calloc((size_t)n, sizeof(*p->attempts));
	p->next = mem_calloc((size_t)n, sizeof(*p->next));
	p->remaining = mem_calloc((size_t)n, sizeof(*p->remaining));
	p->running_in_stage = mem_calloc((size_t)n, sizeof(int));
	p->failed_stage = mem_calloc((size_t)n, sizeof(int));
	if (!p->state || !p->deps_left || !p->attempts || !p->next || !p->remaining ||
	    !p->running_in_stage || !p->failed_stage)
		return error_set(err, "out of memory");
	for (int s = 0; s < n; s++) {
		const struct job_stage *st = &g->stages[s];
		p->state[s] = mem_calloc((size_t)st->ntasks, 1);
		p->deps_left[s] = mem_calloc((size_t)st->ntasks, sizeof(int));
		p->attempts[s] = mem_calloc((size_t)st->ntasks, sizeof(int));
		if (!p->state[s] || !p->deps_left[s] || !p->attempts[s])
			return error_set(err, "out of memory");
		if (job_has_range(st->res)) {
			if (!(p->next[s] = mem_alloc((size_t)st->ntasks * sizeof(**p->next))))
				return error_set(err, "out of memory");
			for (int t = 0; t < st->ntasks; t++)
				p->next[s][t] = st->limits ? st->limits[t]
							   : job_next_limits(st->res, NULL, NULL);
		}
		for (int t = 0; t < st->ntasks; t++) {
			int todo = st->todo ? st->todo[t] : LOCAL_RUN;
			if (todo == LOCAL_SKIP) {
				p->state[s][t] = T_SATISFIED;
				p->c->skipped++;
			} else {
				p->remaining[s]++;
				p->c->todo++;
				p->state[s][t] = todo == LOCAL_WAIT ? T_EXTERNAL : T_BLOCKED;
				if (todo == LOCAL_WAIT) {
					p->external++;
					p->c->running++;
				}
			}
		}
	}
	for (int k = 0; k < n; k++) {
		int s = g->order[k];
		const struct job_stage *st = &g->stages[s];
		for (int t = 0; t < st->ntasks; t++) {
			if (p->state[s][t] != T_BLOCKED)
				continue;
			int left = 0;
			for (int d = 0; d < st->ndeps; d++) {
				int u = st->deps[d].stage;
				if (st->deps[d].one_to_one)
					left += p->state[u][t] != T_SATISFIED;
				else
					left += p->remaining[u] > 0;
			}
			p->deps_left[s][t] = left;
			if (left == 0 && push(p, s, t) < 0)
				return error_set(err, "out of memory");
		}
	}
	struct local_gpus gp = {p->o->gpu_ids, p->o->ngpus};
	for (int s = 0; s < n; s++)
		if (p->remaining[s] > 0 &&
		    local_gpus_fit(&gp, g->stages[s].name, g->stages[s].res->gpus, err) < 0)
			return -1;
	p->gpu_slot = mem_calloc((size_t)p->o->ngpus + 1, sizeof(int));
	if (!p->gpu_slot)
		return error_set(err, "out of memory");
	for (int i = 0; i < p->o->ngpus; i++)
		p->gpu_slot[i] = -1;
	p->nslots = p->o->jobs;
	p->free_weight = p->o->jobs;
	p->pids = mem_calloc((size_t)p->nslots, sizeof(pid_t));
	p->slot_task = mem_calloc((size_t)p->nslots, sizeof(struct ref));
	p->slot_weight = mem_calloc((size_t)p->nslots, sizeof(int));
	p->slot_mem = mem_calloc((size_t)p->nslots, sizeof(long));
	p->free_mem = p->o->mem_mb;
	if (!p->pids || !p->slot_task || !p->slot_weight || !p->slot_mem)
		return error_set(err, "out of memory");
	return 0;
}

static void release(struct pool *p)
{
	for (int s = 0; p->state && s < p->g->nstages; s++) {
		mem_free(p->state[s]);
		mem_free(p->deps_left ? p->deps_left[s] : NULL);
		mem_free(p->attempts ? p->attempts[s] : NULL);
		mem_free(p->next ? p->next[s] : NULL);
	}
	mem_free(p->state);
	mem_free(p->deps_left);
	mem_free(p->attempts);
	mem_free(p->next);
	mem_free(p->remaining);
	mem_free(p->running_in_stage);
	mem_free(p->failed_stage);
	mem_free(p->queue);
	mem_free(p->pids);
	mem_free(p->slot_task);
	mem_free(p->slot_weight);
	mem_free(p->slot_mem);
	mem_free(p->gpu_slot);
}

/* A task is satisfied: release what waited for it. */
static int satisfied(struct pool *p, int s, int t)
{
	const struct job_graph *g = p->g;
	p->state[s][t] = T_SATISFIED;
	p->remaining[s]--;
	for (int k = 0; k < g->nstages; k++) {
		int d = g->order[k];
		const struct job_stage *st = &g->stages[d];
		for (int e = 0; e < st->ndeps; e++) {
			if (st->deps[e].stage != s)
				continue;
			if (st->deps[e].one_to_one) {
				if (p->state[d][t] == T_BLOCKED && --p->deps_left[d][t] == 0 &&
				    push(p, d, t) < 0)
					return -1;
			} else if (p->remaining[s] == 0) {
				for (int i = 0; i < st->ntasks; i++)
					if (p->state[d][i] == T_BLOCKED && --p->deps_left[d][i] == 0 &&
					    push(p, d, i) < 0)
						return -1;
			}
		}
	}
	return 0;
}

/* A task failed for good: everything downstream of it will never run. */
static void never(struct pool *p, int s, int t)
{
	const struct job_graph *g = p->g;
	for (int k = 0; k < g->nstages; k++) {
		int d = g->order[k];
		const struct job_stage *st = &g->stages[d];
		for (int e = 0; e < st->ndeps; e++) {
			if (st->deps[e].stage != s)
				continue;
			for (int i = 0; i < st->ntasks; i++) {
				if (st->deps[e].one_to_one && i != t)
					continue;
				if (p->state[d][i] != T_BLOCKED)
					continue;
				p->state[d][i] = T_NEVER;
				never(p, d, i);
			}
		}
	}
}

static int free_gpus(const struct pool *p)
{
	int n = 0;
	for (int i = 0; i < p->o->ngpus; i++)
		n += p->gpu_slot[i] < 0;
	return n;
}

/* Give the slot the first free GPUs its stage asks for; list their ids in
 * ids ("" for none) for the task's CUDA_VISIBLE_DEVICES. */
static void take_gpus(struct pool *p, int slot, int want, char *ids, size_t cap)
{
	size_t len = 0;
	ids[0] = '\0';
	for (int i = 0; i < p->o->ngpus && want > 0; i++) {
		if (p->gpu_slot[i] >= 0)
			continue;
		p->gpu_slot[i] = slot;
		want--;
		len += (size_t)snprintf(ids + len, len < cap ? cap - len : 0, "%s%s",
					len ? "," : "", p->o->gpu_ids[i]);
	}
}

static int launch(struct pool *p, int slot, int s, int t, struct error *err)
{
	const struct job_graph *g = p->g;
	char task[16], gpus[256];
	snprintf(task, sizeof(task), "%d", t);
	take_gpus(p, slot, g->stages[s].res->gpus, gpus, sizeof(gpus));
	char memv[32], timev[32];
	struct job_limits lim = task_limits(p, s, t);
	snprintf(memv, sizeof(memv), "%ld", lim.mem_mb);
	snprintf(timev, sizeof(timev), "%ld", lim.time_s);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return error_errno(err, "fork");
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGALRM, SIG_DFL);
		/* With GPUs to give out, a task sees only its own (none when its
		 * stage asks for none), as under Slurm's --gres. */
		if (p->o->ngpus > 0)
			setenv("CUDA_VISIBLE_DEVICES", gpus, 1);
		/* the task's mem and time, which its wrapper enforces (cmd_exec.c) */
		if (lim.mem_mb > 0)
			setenv("CAIRN_MEM_MB", memv, 1);
		else
			unsetenv("CAIRN_MEM_MB");
		if (lim.time_s > 0)
			setenv("CAIRN_TIME_S", timev, 1);
		else
			unsetenv("CAIRN_TIME_S");
		if (g->run_task)
			_exit(g->run_task(g->run_ctx, s, t));
		execl(g->cairn, g->cairn, "exec", g->run_dir, g->stages[s].name, task, (char *)NULL);
		fprintf(stderr, "cairn: cannot run %s exec: %s\n", g->cairn, strerror(errno));
		_exit(127);
	}
	p->pids[slot] = pid;
	p->slot_task[slot].stage = s;
	p->slot_task[slot].task = t;
	p->slot_weight[slot] = weight_of(p, s);
	p->free_weight -= p->slot_weight[slot];
	p->slot_mem[slot] = mem_of(p, s, t);
	p->free_mem -= p->slot_mem[slot];
	p->running_in_stage[s]++;
	p->attempts[s][t]++;
	p->state[s][t] = T_RUNNING;
	p->c->running++;
	return 0;
}

/* Start ready tasks while slots, weights and throttles allow. Tasks that
 * do not fit now go back to the end of the queue. The first of them that
 * waits only for cores or memory is not passed by later tasks that would
 * keep it waiting: they start only if they leave it what it needs (else a
 * task of cpus = 8 or mem = 16G could wait behind small tasks until the
 * last of them has run). */
static int fill(struct pool *p, struct error *err)
{
	long long tries = p->qtail - p->qhead;
	int reserve_w = 0;     /* cores held for the first task that waits for them */
	long reserve_mem = 0;  /* memory held alike */
	while (tries-- > 0 && p->free_weight > 0 && !stop_sig) {
		struct ref r = p->queue[p->qhead++];
		const struct job_res *res = p->g->stages[r.stage].res;
		int slot = -1;
		for (int i = 0; i < p->nslots && slot < 0; i++)
			if (!p->pids[i])
				slot = i;
		int w = weight_of(p, r.stage);
		long m = mem_of(p, r.stage, r.task);
		int other = slot >= 0 && res->gpus <= free_gpus(p) &&
			    (!res->throttle || p->running_in_stage[r.stage] < res->throttle);
		int fits = other && w + reserve_w <= p->free_weight &&
			   (m == 0 || m + reserve_mem <= p->free_mem);
		if (!fits) {
			if (other && !reserve_w && !reserve_mem &&
			    (w > p->free_weight || m > p->free_mem)) {
				reserve_w = w;
				reserve_mem = m;
			}
			if (push(p, r.stage, r.task) < 0)
				return error_set(err, "out of memory");
			continue;
		}
		if (launch(p, slot, r.stage, r.task, err) < 0)
			return -1;
	}
	/* Compact the queue now and then. */
	if (p->qhead > 4096 && p->qhead * 2 > p->qtail) {
		memmove(p->queue, p->queue + p->qhead, (size_t)(p->qtail - p->qhead) * sizeof(*p->queue));
		p->qtail -= p->qhead;
		p->qhead = 0;
	}
	return 0;
}

/* Read failed.json of a task: kind, exit code, attempt and the attempt's
 * mem and time (best effort). */
static void failure_of(const struct pool *p, int s, int t, char kind[16], int *exit_code,
		       int *attempt, struct job_limits *had)
{
	struct buf path = BUF_INIT;
	buf_addf(&path, "%s/stages/%s/%d/failed.json", p->g->run_dir, p->g->stages[s].name, t);
	struct error err;
	json_t *j = path.failed ? NULL : jsonio_load(path.s, &err);
	snprintf(kind, 16, "%s", j ? jsonio_str(j, "kind", "exit") : "lost");
	*exit_code = j ? (int)jsonio_int(j, "exit_code", -1) : -1;
	*attempt = j ? (int)jsonio_int(j, "attempt", 1) : 1;
	had->mem_mb = j ? (long)jsonio_int(j, "mem_mb", 0) : 0;
	had->time_s = j ? (long)jsonio_int(j, "time_s", 0) : 0;
	json_decref(j);
	buf_release(&path);
}

static int finished(struct pool *p, int slot, int status, struct error *err)
{
	struct ref r = p->slot_task[slot];
	p->pids[slot] = 0;
	p->free_weight += p->slot_weight[slot];
	p->free_mem += p->slot_mem[slot];
	for (int i = 0; i < p->o->ngpus; i++)
		if (p->gpu_slot[i] == slot)
			p->gpu_slot[i] = -1;
	p->running_in_stage[r.stage]--;
	p->c->running--;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		p->c->done++;
		return satisfied(p, r.stage, r.task) < 0 ? error_set(err, "out of memory") : 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == LOCAL_EXIT_BUSY) {
		/* Another wrapper (left by a cairn that was killed) runs it: watch
		 * its markers instead. */
		p->state[r.stage][r.task] = T_EXTERNAL;
		p->external++;
		p->c->running++;
		struct itimerval it = {{0, 200000}, {0, 200000}};
		setitimer(ITIMER_REAL, &it, NULL);
		return 0;
	}
	char kind[16];
	int code, attempt;
	struct job_limits had;
	failure_of(p, r.stage, r.task, kind, &code, &attempt, &had);
	const struct job_res *res = p->g->stages[r.stage].res;
	if (p->next[r.stage])
		p->next[r.stage][r.task] = job_next_limits(res, &had, kind);
	if (!stop_sig && strcmp(kind, "cancelled") && p->attempts[r.stage][r.task] <= res->retries &&
	    job_retry_allowed(res->retry_on, kind, code)) {
		return push(p, r.stage, r.task) < 0 ? error_set(err, "out of memory") : 0;
	}
	if (!strcmp(kind, "cancelled"))
		p->c->cancelled++;
	else
		p->c->failed++;
	p->state[r.stage][r.task] = T_FAILED;
	p->failed_stage[r.stage] = 1;
	never(p, r.stage, r.task);
	return 0;
}

/* Tasks run by wrappers we did not start (a previous cairn that was killed):
 * watch their markers. */
static int poll_external(struct pool *p, struct error *err)
{
	for (int s = 0; s < p->g->nstages && p->external > 0; s++) {
		const struct job_stage *st = &p->g->stages[s];
		for (int t = 0; t < st->ntasks; t++) {
			if (p->state[s][t] != T_EXTERNAL)
				continue;
			struct buf path = BUF_INIT;
			struct stat sb;
			buf_addf(&path, "%s/stages/%s/%d/done.json", p->g->run_dir, st->name, t);
			int done = stat(path.s, &sb) == 0;
			buf_reset(&path);
			buf_addf(&path, "%s/stages/%s/%d/failed.json", p->g->run_dir, st->name, t);
			int failed = !done && stat(path.s, &sb) == 0;
			int gone = 0;
			if (!done && !failed) {
				/* No marker: is anyone still holding the task's lock? If
				 * not, its wrapper died without one: run it here. */
				buf_reset(&path);
				buf_addf(&path, "%s/stages/%s/%d/.lock", p->g->run_dir, st->name, t);
				struct error e2;
				int fd = path.failed ? -1 : fs_trylock(path.s, 0, &e2);
				gone = fd >= 0;
				if (gone)
					close(fd);
			}
			buf_release(&path);
			if (gone) {
				p->external--;
				p->c->running--;
				if (push(p, s, t) < 0)
					return error_set(err, "out of memory");
				continue;
			}
			if (!done && !failed)
				continue;
			p->external--;
			p->c->running--;
			if (done) {
				p->c->done++;
				if (satisfied(p, s, t) < 0)
					return error_set(err, "out of memory");
			} else {
				p->c->failed++;
				p->state[s][t] = T_FAILED;
				never(p, s, t);
			}
		}
	}
	return 0;
}

int local_run(const struct job_graph *g, const struct job_opts *o, struct job_counts *c,
	      struct error *err)
{
	struct pool p;
	memset(&p, 0, sizeof(p));
	memset(c, 0, sizeof(*c));
	p.g = g;
	p.o = o;
	p.c = c;
	stop_sig = 0;
	struct sigaction sa, old_int, old_term, old_alrm;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sa.sa_handler = on_tick;
	sigaction(SIGALRM, &sa, &old_alrm);
	int rc = setup(&p, err);
	if (rc == 0 && p.external > 0) {
		struct itimerval it = {{0, 200000}, {0, 200000}};
		setitimer(ITIMER_REAL, &it, NULL);
	}
	report(&p);
	int running = 0, cancel_sent = 0;
	while (rc == 0) {
		if (!stop_sig)
			rc = fill(&p, err);
		running = 0;
		for (int i = 0; i < p.nslots; i++)
			running += p.pids[i] != 0;
		if (rc < 0 || (running == 0 && (stop_sig || p.qhead == p.qtail) && p.external == 0))
			break;
		if (stop_sig && !cancel_sent) {
			/* Wrappers pass SIGTERM on to their task's process group and
			 * write failed.json with kind cancelled. */
			for (int i = 0; i < p.nslots; i++)
				if (p.pids[i])
					kill(p.pids[i], SIGTERM);
			cancel_sent = 1;
			if (running == 0)
				break;
		}
		int status;
		pid_t pid = running ? waitpid(-1, &status, 0) : (pause(), -1);
		if (pid < 0) {
			if (errno != EINTR && errno != ECHILD && running)
				rc = error_errno(err, "waitpid");
			if (tick) {
				tick = 0;
				rc = poll_external(&p, err);
				report(&p);
			}
			continue;
		}
		for (int i = 0; i < p.nslots; i++) {
			if (p.pids[i] == pid) {
				rc = finished(&p, i, status, err);
				report(&p);
				break;
			}
		}
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGALRM, &old_alrm, NULL);
	int cancelled = stop_sig != 0;
	release(&p);
	if (rc < 0)
		return -1;
	return cancelled ? 1 : 0;
}

/* ---- GPUs ---- */

static int add_gpu(struct local_gpus *gp, const char *name, size_t len)
{
	char **ids = mem_realloc(gp->ids, (size_t)(gp->n + 1) * sizeof(char *));
	if (!ids)
		return -1;
	gp->ids = ids;
	if (!(gp->ids[gp->n] = mem_alloc(len + 1)))
		return -1;
	memcpy(gp->ids[gp->n], name, len);
	gp->ids[gp->n++][len] = '\0';
	return 0;
}

/* A device id: a number, or a GPU-/MIG- UUID as nvidia-smi -L prints it. */
static int gpu_name_ok(const char *a, size_t len)
{
	if (len > 4 && (!strncmp(a, "GPU-", 4) || !strncmp(a, "MIG-", 4)))
		return 1;
	for (size_t i = 0; i < len; i++)
		if (a[i] < '0' || a[i] > '9')
			return 0;
	return len > 0;
}

static int add_gpu_list(struct local_gpus *gp, const char *list, const char *what,
			struct error *err)
{
	for (const char *a = list; *a;) {
		size_t len = strcspn(a, ",");
		if (!gpu_name_ok(a, len))
			return error_set(err,
					 "%s %s: '%.*s' is not a device id (want a count like 2, "
					 "a list like 0,2, or none)",
					 what, list, (int)len, a);
		if (add_gpu(gp, a, len) < 0)
			return error_set(err, "out of memory");
		a += len + (a[len] == ',');
	}
	return 0;
}

static int add_gpu_count(struct local_gpus *gp, long n, struct error *err)
{
	for (long i = 0; i < n; i++) {
		char name[24];
		int len = snprintf(name, sizeof(name), "%ld", i);
		if (add_gpu(gp, name, (size_t)len) < 0)
			return error_set(err, "out of memory");
	}
	return 0;
}

int local_gpus_init(struct local_gpus *gp, const char *opt, struct error *err)
{
	memset(gp, 0, sizeof(*gp));
	int rc = 0;
	if (opt) {
		char *end;
		long n = strtol(opt, &end, 10);
		if (!strcmp(opt, "none"))
			return 0;
		if (!strchr(opt, ',') && !*end && *opt) {
			if (n < 0 || n > 1024)
				return error_set(err,
						 "--gpus %s: want a count from 0 to 1024, a list "
						 "of device ids like 0,1, or none",
						 opt);
			rc = add_gpu_count(gp, n, err);
		} else
			rc = add_gpu_list(gp, opt, "--gpus", err);
	} else {
		const char *env = getenv("CUDA_VISIBLE_DEVICES");
		if (env) {
			/* set: exactly those (empty, -1 or NoDevFiles: none) */
			if (strcmp(env, "-1") && strcmp(env, "NoDevFiles"))
				rc = add_gpu_list(gp, env, "CUDA_VISIBLE_DEVICES", err);
		} else {
			long n = 0;
			char dev[32];
			for (;; n++) {
				snprintf(dev, sizeof(dev), "/dev/nvidia%ld", n);
				if (access(dev, F_OK) != 0)
					break;
			}
			rc = add_gpu_count(gp, n, err);
		}
	}
	if (rc < 0)
		local_gpus_release(gp);
	return rc;
}

int local_gpus_fit(const struct local_gpus *gp, const char *stage, int gpus, struct error *err)
{
	if (gpus <= gp->n)
		return 0;
	return error_set(err,
			 "stage '%s' asks for gpus = %d, but %d GPU%s can be given out here "
			 "(CUDA_VISIBLE_DEVICES, /dev/nvidia*, or --gpus); lower gpus in the spec "
			 "(0 runs it without one), name the GPUs with --gpus, or run it with "
			 "--executor slurm",
			 stage, gpus, gp->n, gp->n == 1 ? "" : "s");
}

void local_gpus_release(struct local_gpus *gp)
{
	for (int i = 0; i < gp->n; i++)
		mem_free(gp->ids[i]);
	mem_free(gp->ids);
	memset(gp, 0, sizeof(*gp));
}
