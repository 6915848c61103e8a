/* cairn exec RUN STAGE TASK: the wrapper every task runs in, locally or on a
 * Slurm node. It is the only writer of a task's markers: started.json when it
 * starts, then done.json (with the manifest of out/ and the task key) or
 * failed.json, each written atomically, done.json last of all. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "jobs/job.h"
#include "jobs/proc.h"
#include "jobs/slurm_cli.h"
#include "pipeline/cli.h"
#include "pipeline/run.h"
#include "pipeline/release.h"
#include "pipeline/task.h"

static volatile sig_atomic_t stop_signal;

enum { EXEC_BUSY = TASK_EXIT_BUSY }; /* exit code: another wrapper runs this task */

/* How long a wrapper on Slurm waits for the task's lock. The holder is most
 * often the wrapper of this task's previous job, stopped a moment ago
 * (scancel, or resume cancelling it to submit it again), which may take
 * scontrol's answer (<= 5 s) and up to KillWait (30 s by default) to end
 * while the new job has already started. CAIRN_LOCK_WAIT (seconds) sets it. */
#define LOCK_WAIT_SLURM 60.0
/* Locally the holder is a process of the task's previous attempt that left
 * its process group (setsid) and so outlived the attempt: the task's
 * processes inherit the lock. What stays in the group is ended with the
 * attempt (proc_wait), before its wrapper exits. */
#define LOCK_WAIT_LOCAL 5.0

struct exec_ctx {
	const struct run *run;
	int stage;
	int task;
	const struct spec_stage *st;
	int attempt;
	char host[128];
	char started[32];
	char job[64];
	int restarts; /* SLURM_RESTART_COUNT: requeues of this submission so far */
	int retry;    /* it failed and may be retried: requeue the job */
	int grouped;  /* one of the tasks of a Slurm job of several (group) */
	long mem_mb;  /* this attempt's mem: Slurm's --mem, or the local executor's
			 CAIRN_MEM_MB (which the wrapper enforces); 0 = none */
	long time_s;  /* this attempt's time (CAIRN_TIME_S from either executor); 0 = none */
	double t0;
	const struct rusage *ru; /* the task's, once it has ended */
	long rss_sum_kb;	 /* the mem watch's most for its processes together, or 0 */
};

/* CPU seconds (user + system) of the task and the processes it waited for. */
static double cpu_seconds(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
}

static void path_of(struct buf *b, const struct exec_ctx *x, const char *name)
{
	buf_reset(b);
	task_path(b, x->run->dir, x->st->name, x->task, name);
}

/* The attempt's mem and time, in its markers: the next attempt of a stage
 * with a range goes from them (job_next_limits). */
static void add_limits(json_t *j, const struct exec_ctx *x)
{
	if (j && x->mem_mb > 0)
		json_object_set_new(j, "mem_mb", json_integer(x->mem_mb));
	if (j && x->time_s > 0)
		json_object_set_new(j, "time_s", json_integer(x->time_s));
}

/* What the task used: CPU seconds, the largest process's max RSS, and with
 * the mem watch the most its processes held together (at least that). */
static void add_usage(json_t *j, const struct exec_ctx *x, const struct rusage *ru)
{
	long long max = ru->ru_maxrss;
	json_object_set_new(j, "cpu_s", json_real(cpu_seconds(ru)));
	json_object_set_new(j, "max_rss_kb", json_integer((json_int_t)max));
	if (x->rss_sum_kb > 0)
		json_object_set_new(j, "rss_sum_kb",
				    json_integer(x->rss_sum_kb > max ? x->rss_sum_kb : max));
}

static int write_failed(struct exec_ctx *x, const char *kind, int exit_code, int sig,
			const char *message, struct error *err)
{
	char finished[32];
	clock_utc(finished, sizeof(finished), 0);
	json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:f, s:s, s:i}", "kind", kind,
			      "exit_code", exit_code, "signal", sig, "attempt", x->attempt, "host",
			      x->host, "started", x->started, "finished", finished, "wall_s",
			      clock_now() - x->t0, "slurm_job", x->job, "slurm_restarts", x->restarts);
	if (!j)
		return error_set(err, "out of memory");
	if (message)
		json_object_set_new(j, "message", json_string(message));
	add_limits(j, x);
	if (x->ru) /* it ran: what it used, for `cairn status --usage` and why */
		add_usage(j, x, x->ru);
	struct buf p = BUF_INIT;
	path_of(&p, x, "failed.json");
	int rc = jsonio_write_replace(p.s, j, err);
	json_decref(j);
	buf_release(&p);
	run_event(x->run->dir, "failed %s/%d attempt %d: %s%s%s", x->st->name, x->task, x->attempt,
		  kind, message ? ": " : "", message ? message : "");
	return rc;
}

/* Remove what a previous attempt left: done.json first, so that a crash in
 * between never leaves a done marker beside changed outputs. */
static int clear_previous(struct exec_ctx *x, struct error *err)
{
	struct buf p = BUF_INIT;
	static const char *names[] = {"done.json", "failed.json", "rerun", TASK_PENDING_FILE,
				      TASK_RELEASED_FILE};
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		path_of(&p, x, names[i]);
		if (unlink(p.s) < 0 && errno != ENOENT) {
			error_errno(err, "%s", p.s);
			buf_release(&p);
			return -1;
		}
	}
	/* No fsync of the folder here: if a power cut undoes the unlink, the old
	 * done.json comes back beside an emptied out/, which its manifest check
	 * rejects, so the task still reruns. */
	path_of(&p, x, "out");
	int rc = fs_rm_rf(p.s, err);
	if (rc == 0)
		rc = fs_mkdir_p(p.s, err);
	buf_release(&p);
	return rc;
}

/* `cairn cancel RUN STAGE/TASK` of this task before it started: a mark that
 * names the cairn that drives the run (this wrapper's parent; a mark of an
 * earlier drive is stale, removed). Looked at after started.json is
 * written: cancel writes the mark, then signals the wrapper if started.json
 * has appeared, so one of the two stops the task. 1 cancelled (failed.json
 * written, err says so), 0 not. */
static int cancelled_before_start(struct exec_ctx *x, struct error *err)
{
	struct buf p = BUF_INIT;
	path_of(&p, x, TASK_CANCEL_FILE);
	int cancelled = 0;
	if (!p.failed && fs_exists(p.s)) {
		struct error e2;
		json_t *mark = jsonio_load(p.s, &e2);
		long by = (long)jsonio_int(mark, "driver_pid", 0);
		json_decref(mark);
		unlink(p.s);
		if (by == (long)getppid()) {
			cancelled = 1;
			if (write_failed(x, "cancelled", -1, 0,
					 "cancelled by `cairn cancel` before it started", &e2) < 0)
				error_set(err, "%s; and failed.json could not be written", e2.msg);
			else
				error_set(err, "%s/%d: cancelled before it started", x->st->name,
					  x->task);
		}
	}
	buf_release(&p);
	return cancelled;
}

/* state/: the task's folder that outlives its attempts (CAIRN_STATE), for a
 * command that can go on where an earlier attempt stopped (a trainer's
 * --state). It belongs to one task key: made empty when the key changed
 * (another command or other inputs: nothing there may be reused), and
 * removed once the task is done (out/ holds the result). */
static int prepare_state(struct exec_ctx *x, const char *key, struct error *err)
{
	struct buf p = BUF_INIT;
	char *had = NULL;
	size_t len = 0;
	path_of(&p, x, "state/.cairn-key");
	int same =
	    fs_read_all(p.s, &had, &len, err) == 0 && len == strlen(key) && !memcmp(had, key, len);
	mem_free(had);
	path_of(&p, x, "state");
	int rc = 0;
	if (!same) {
		if (fs_is_dir(p.s))
			run_event(x->run->dir, "state %s/%d: emptied, it was of another task key",
				  x->st->name, x->task);
		rc = fs_rm_rf(p.s, err);
		if (rc == 0)
			rc = fs_mkdir_p(p.s, err);
		path_of(&p, x, "state/.cairn-key");
		if (rc == 0)
			rc = fs_write_replace(p.s, key, strlen(key), err);
	}
	buf_release(&p);
	return rc;
}

/* done.json exists, has this key, and out/ still matches its manifest, or
 * was released (temp): then no task that reads it runs now, or this one
 * would have a `rerun` mark (release.h). */
static int up_to_date(struct exec_ctx *x, const char *key)
{
	struct buf p = BUF_INIT, why = BUF_INIT;
	struct error err;
	path_of(&p, x, "done.json");
	if (!fs_exists(p.s)) {
		buf_release(&p);
		return 0;
	}
	json_t *done = jsonio_load(p.s, &err);
	int ok = done && task_key_same(&x->run->spec, x->run->dir, x->stage, x->task, NULL, NULL,
				       jsonio_str(done, "key", ""), key);
	if (ok && !release_done(x->run->dir, x->st->name, x->task)) {
		path_of(&p, x, "out");
		ok = task_manifest_check(p.s, json_object_get(done, "manifest"), 0, &why, &err) == 0;
	}
	json_decref(done);
	buf_release(&p);
	buf_release(&why);
	return ok;
}

/* This task is done: release the temp inputs whose readers are all done
 * now. Their failure to go does not undo the task: only said (in the task's
 * log when log_fd >= 0, else on stderr). */
static void release_after(struct exec_ctx *x, int log_fd)
{
	struct error err;
	if (release_inputs(x->run, x->stage, x->task, &err) < 0) {
		if (log_fd >= 0)
			dprintf(log_fd, "cairn: releasing its temp inputs: %s\n", err.msg);
		else
			fprintf(stderr, "cairn exec: releasing its temp inputs: %s\n", err.msg);
		run_event(x->run->dir, "release after %s/%d: %s", x->st->name, x->task, err.msg);
	}
}

/* Retry inside Slurm with no cairn running: put this job back in the queue.
 * Slurm kills this attempt at once and starts the job again later; its
 * afterok dependents keep waiting (docs/slurm.md). */
static void requeue(void)
{
	const char *id = getenv("SLURM_JOB_ID");
	if (!id)
		return;
	char *argv[] = {"scontrol", "requeue", (char *)id, NULL};
	pid_t pid;
	struct error err;
	int status;
	struct rusage ru;
	if (proc_spawn(&pid, argv, NULL, -1, &err) == 0)
		proc_wait(pid, &status, &ru, NULL, 10, NULL, &err);
}

/* Why Slurm stops this job: one scontrol call, made when the wrapper got
 * SIGTERM. Slurm sends SIGTERM alike for scancel, a time limit, a node going
 * down and a preemption; only its view of the job tells them apart. Sets
 * *requeued when Slurm already put the job back in the queue itself. When
 * Slurm cannot be asked, the stop counts as cancelled: never retried. */
static const char *slurm_stop(const struct exec_ctx *x, int *requeued, char *msg, size_t size)
{
	struct slurm_job_info info;
	struct error err;
	*requeued = 0;
	slurm_set_timeout(5); /* Slurm sends SIGKILL KillWait seconds after SIGTERM */
	const char *id = getenv("SLURM_JOB_ID");
	int rc = slurm_show_job(id ? id : x->job, &info, &err);
	if (rc != 0) {
		snprintf(msg, size, "stopped by SIGTERM; Slurm could not say why (%.150s): counted as cancelled",
			 rc < 0 ? err.msg : "job unknown");
		return "cancelled";
	}
	int kind = slurm_stop_kind(&info, x->restarts, requeued);
	if (*requeued)
		snprintf(msg, size, "Slurm requeued job %s itself (JobState=%s, Restarts=%d): it runs again",
			 x->job, info.state, info.restarts);
	else if (kind == SLURM_FAIL_TIMEOUT)
		snprintf(msg, size, "Slurm's time limit of %s reached (time = %ld s; Slurm counts whole minutes)",
			 info.time_limit, x->st->res.time_s);
	else
		snprintf(msg, size, "stopped by Slurm: JobState=%s Reason=%s", info.state, info.reason);
	return slurm_failure_name(kind);
}

static int previous_attempt(struct exec_ctx *x)
{
	struct task_info ti;
	struct error err;
	if (task_read(x->run->dir, x->st->name, x->task, 0, &ti, &err) < 0)
		return 0;
	if (ti.state != TASK_DONE)
		return ti.attempt;
	/* Attempts count on across reruns of a done task. */
	struct buf p = BUF_INIT;
	path_of(&p, x, "done.json");
	json_t *done = jsonio_load(p.s, &err);
	int attempt = done ? (int)jsonio_int(done, "attempt", 1) : 1;
	json_decref(done);
	buf_release(&p);
	return attempt;
}

static void set_env(struct exec_ctx *x, const char *self_dir)
{
	char v[64];
	struct buf b = BUF_INIT;
	setenv("CAIRN_RUN", x->run->dir, 1);
	setenv("CAIRN_STAGE", x->st->name, 1);
	snprintf(v, sizeof(v), "%d", x->task);
	setenv("CAIRN_TASK", v, 1);
	snprintf(v, sizeof(v), "%d", x->st->ntasks);
	setenv("CAIRN_NTASKS", v, 1);
	snprintf(v, sizeof(v), "%d", x->attempt);
	setenv("CAIRN_ATTEMPT", v, 1);
	spec_out_dir(&b, x->run->dir, x->st->name, x->task);
	setenv("CAIRN_OUT", buf_str(&b), 1);
	path_of(&b, x, "state");
	setenv("CAIRN_STATE", buf_str(&b), 1);
	/* The stage programs (cairn-*) live beside cairn. */
	buf_reset(&b);
	buf_addf(&b, "%s:%s", self_dir, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", buf_str(&b), 1);
	buf_release(&b);
	/* Threaded libraries use the cores the task asked for, not the machine's. */
	snprintf(v, sizeof(v), "%d", x->st->res.cpus);
	setenv("OMP_NUM_THREADS", v, 0);
	setenv("OPENBLAS_NUM_THREADS", v, 0);
	/* The task's memory limit, for commands that size buffers by it. */
	if (x->mem_mb > 0) {
		snprintf(v, sizeof(v), "%ld", x->mem_mb);
		setenv("CAIRN_MEM_MB", v, 1);
	} else {
		unsetenv("CAIRN_MEM_MB");
	}
	if (x->st->res.ranks > 1 && geteuid() == 0) {
		setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
		setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
	}
}

/* On Slurm, a requeued job keeps its --mem: after an oom that a range would
 * grow, leave the retry to `cairn resume`, which submits it with more (a
 * requeue would only fail the same way). A timeout is still requeued: its
 * command may go on from $CAIRN_STATE. */
static int grows(const struct exec_ctx *x, const char *kind)
{
	struct job_limits had = {x->mem_mb, x->time_s};
	return !strcmp(kind, "oom") && job_next_limits(&x->st->res, &had, kind).mem_mb > x->mem_mb;
}

/* A task stopped by its mem or time (kind "oom" or "timeout"): `what`
 * stopped it, then what its next attempt gets or what to change. */
static void over_limit(const struct exec_ctx *x, const char *kind, const char *what, char *msg,
		       size_t size)
{
	struct job_limits had = {x->mem_mb, x->time_s};
	struct job_limit_view v;
	job_limit_view(&x->st->res, &had, kind, &v);
	if (v.grows)
		snprintf(msg, size, "%s; its next attempt gets %s (%s = %s)", what, v.next, v.key,
			 v.spec);
	else if (v.range)
		snprintf(msg, size, "%s; that is the end of its range (%s = %s): raise it", what,
			 v.key, v.spec);
	else if (v.lo)
		snprintf(msg, size, "%s; raise %s, or give a range (%s = %s) for retries to double it",
			 what, v.key, v.key, v.spec);
	else
		snprintf(msg, size, "%s; give its stage a %s it fits in, or a range (%s = %s)", what,
			 v.key, v.key, v.spec);
}

static const char *kind_of_status(int status, int *exit_code, int *sig)
{
	*exit_code = -1;
	*sig = 0;
	if (WIFEXITED(status)) {
		*exit_code = WEXITSTATUS(status);
		return "exit";
	}
	*sig = WTERMSIG(status);
	return "signal";
}

static int run_task(struct exec_ctx *x, const char *self_dir, struct error *err)
{
	struct buf p = BUF_INIT, cmd = BUF_INIT;
	char key[65];
	json_t *parts = NULL;
	int rc = -1;

	/* One wrapper per task at a time, wherever it was started from. The
	 * holder is most often what is left of the task's previous attempt or
	 * job, still ending: wait for it a while. */
	double t0 = clock_now();
	double limit = getenv("CAIRN_LOCK_WAIT") ? atof(getenv("CAIRN_LOCK_WAIT"))
		       : x->job[0]		 ? LOCK_WAIT_SLURM
						 : LOCK_WAIT_LOCAL;
	int lock, waiting = 0;
	char who[96];
	if (x->job[0])
		snprintf(who, sizeof(who), "job %s", x->job);
	else
		snprintf(who, sizeof(who), "attempt %d", x->attempt);
	while ((lock = task_lock(x->run->dir, x->st->name, x->task, err)) == TASK_LOCK_BUSY &&
	       clock_now() - t0 < limit && !stop_signal) {
		if (!waiting++) {
			run_event(x->run->dir,
				  "wait %s/%d: %s waits for the task's lock (another wrapper of it, "
				  "or what is left of its previous attempt, still ending)",
				  x->st->name, x->task, who);
		}
		usleep(200000);
	}
	if (lock == TASK_LOCK_BUSY) {
		/* Leave the task to the wrapper that holds it: no marker here, so
		 * status and resume go by that wrapper's (sched.c). */
		char comm[64], by[256] = "";
		long holder =
		    task_lock_holder(x->run->dir, x->st->name, x->task, comm, sizeof(comm));
		if (holder)
			snprintf(by, sizeof(by), " (by pid %ld, %s, on %s)", holder, comm, x->host);
		run_event(x->run->dir,
			  "busy %s/%d: its lock is still held after %.0f s%s; %s leaves it to that "
			  "wrapper (exit %d, no marker)",
			  x->st->name, x->task, clock_now() - t0, by, who, EXEC_BUSY);
		error_set(err, "%s/%d is already running in another wrapper", x->st->name, x->task);
		return EXEC_BUSY;
	}
	if (lock < 0)
		return -1;
	if (waiting) {
		run_event(x->run->dir, "lock %s/%d: job %s got the task's lock after %.1f s", x->st->name,
			  x->task, x->job, clock_now() - t0);
		/* The attempt starts now: its wall time is the task's. */
		x->t0 = clock_now();
		clock_utc(x->started, sizeof(x->started), 0);
	}

	/* The key needs every input to be done: if one is not, this task cannot run. */
	if (task_key(&x->run->spec, x->run->dir, x->stage, x->task, key, &parts, err) < 0) {
		struct error e2;
		if (write_failed(x, "dependency", -1, 0, err->msg, &e2) < 0)
			error_prefix(err, "%s; and failed.json could not be written: ", e2.msg);
		return -1;
	}
	path_of(&p, x, "rerun"); /* resume --rerun: run it whatever up_to_date says */
	if (!fs_exists(p.s) && up_to_date(x, key)) {
		/* Done already with this very key and intact outputs (another
		 * wrapper finished it, or an input reran to identical bytes). */
		run_event(x->run->dir, "up to date %s/%d: kept its done.json", x->st->name, x->task);
		path_of(&p, x, TASK_PENDING_FILE);
		unlink(p.s); /* if it stayed, its inputs would only stay longer */
		release_after(x, -1);
		rc = 0;
		goto out;
	}
	if (clear_previous(x, err) < 0 || prepare_state(x, key, err) < 0)
		goto out;
	/* An input released while this task was not planned to run (a resume
	 * beside the run, a `pending` mark removed by hand): say so, rather
	 * than let the command fail on files that are gone. */
	char gone[160];
	long long ngone = release_read(x->run, x->stage, x->task, gone, sizeof(gone));
	if (ngone) {
		char msg[400];
		snprintf(msg, sizeof(msg),
			 "%lld of its inputs (%s%s) were released (temp = yes): `cairn resume %s` "
			 "runs them again first",
			 ngone, gone, ngone > 1 ? ", ..." : "", x->run->dir);
		struct error e2;
		if (write_failed(x, "dependency", -1, 0, msg, &e2) < 0)
			error_set(err, "%s; and failed.json could not be written: %s", msg, e2.msg);
		else
			error_set(err, "%s/%d: %s", x->st->name, x->task, msg);
		goto out;
	}

	/* task.sh: exactly what runs. */
	struct spec_ctx ctx = {x->run->dir, x->task};
	buf_addf(&cmd, "#!/bin/sh\n# cairn: task %s/%d of run %s, attempt %d\nset -e\n", x->st->name,
		 x->task, x->run->spec.name, x->attempt);
	if (spec_expand_command(&x->run->spec, x->stage, &ctx, &cmd, err) < 0)
		goto out;
	buf_addc(&cmd, '\n');
	path_of(&p, x, "task.sh");
	if (cmd.failed || fs_write_replace(p.s, cmd.s, cmd.len, err) < 0)
		goto out;

	json_t *started = json_pack("{s:s, s:i, s:I, s:i, s:s, s:s, s:i, s:s}", "host", x->host, "pid",
				    (int)getpid(), "pid_start", (json_int_t)task_proc_start((long)getpid()),
				    "attempt", x->attempt, "started", x->started, "slurm_job", x->job,
				    "slurm_restarts", x->restarts, "key", key);
	add_limits(started, x);
	path_of(&p, x, "started.json");
	int wrc = started ? jsonio_write_replace(p.s, started, err) : error_set(err, "out of memory");
	json_decref(started);
	if (wrc < 0)
		goto out;
	run_event(x->run->dir, "start %s/%d attempt %d on %s pid %ld%s%s", x->st->name, x->task,
		  x->attempt, x->host, (long)getpid(), x->job[0] ? " job " : "", x->job);
	if (cancelled_before_start(x, err))
		goto out;

	path_of(&p, x, "log");
	int log_fd = open(p.s, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		error_errno(err, "%s", p.s);
		goto out;
	}
	dprintf(log_fd, "=== cairn: %s/%d attempt %d on %s at %s ===\n", x->st->name, x->task,
		x->attempt, x->host, x->started);
	set_env(x, self_dir);

	struct buf script = BUF_INIT;
	path_of(&script, x, "task.sh");
	char ranks[16];
	snprintf(ranks, sizeof(ranks), "%d", x->st->res.ranks);
	char *argv_plain[] = {"/bin/sh", script.s, NULL};
	char *argv_srun[] = {"srun", "--mpi=pmix", "-n", ranks, "/bin/sh", script.s, NULL};
	char *argv_mpirun[] = {"mpirun", "--oversubscribe", "-np", ranks, "/bin/sh", script.s, NULL};
	char **argv = argv_plain;
	if (x->st->res.ranks > 1)
		argv = getenv("SLURM_JOB_ID") ? argv_srun : argv_mpirun;
	const char *workdir = jsonio_str(x->run->info, "workdir", NULL);
	long kills0 = proc_oom_kills(); /* did the OOM killer end it? (below) */
	pid_t pid;
	if (proc_spawn(&pid, argv, workdir, log_fd, err) < 0) {
		dprintf(log_fd, "cairn: %s\n", err->msg);
		close(log_fd);
		buf_release(&script);
		struct error e2;
		write_failed(x, "exit", 127, 0, err->msg, &e2);
		goto out;
	}
	int status;
	struct rusage ru;
	memset(&ru, 0, sizeof(ru));
	/* Slurm enforces `time` itself; here the wrapper does, the same way
	   (SIGTERM, SIGKILL 10 s later), and in a group on Slurm too: one
	   task stuck past its time must not take the whole job's. */
	/* Slurm enforces mem itself; locally the wrapper does, as Slurm does
	   without cgroups: the RSS of the task's processes together, polled
	   each second, SIGKILL over it (failure kind oom). */
	struct proc_limits lim = {x->job[0] && !x->grouped ? 0 : x->time_s,
				  x->job[0] ? 0 : x->mem_mb * 1024, 0, 0, 0};
	int left = proc_wait(pid, &status, &ru, &stop_signal, 10, &lim, err);
	int timed_out = lim.timed_out;
	x->rss_sum_kb = lim.peak_kb;
	if (left < 0) {
		close(log_fd);
		buf_release(&script);
		goto out;
	}
	if (left > 0 && !stop_signal && !timed_out && !lim.over_kb) {
		/* Left running, they would hold the task's lock (inherited) and
		 * whatever else the task had open: end them, as Slurm does. */
		dprintf(
		    log_fd,
		    "=== cairn: the task left %d process%s running (started in the background and "
		    "not waited for); ended with it, as Slurm ends a step's processes ===\n",
		    left, left == 1 ? "" : "es");
	}
	buf_release(&script);
	double wall = clock_now() - x->t0;
	x->ru = &ru;

	if (stop_signal || timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		int code, sig;
		const char *kind = kind_of_status(status, &code, &sig);
		char msg[512] = "";
		/* On Slurm every stop (scancel, time limit, node down, preemption)
		 * sends SIGTERM to all of the job's processes: the task may die of it
		 * before this wrapper's own handler has run. */
		if (!stop_signal && !timed_out && x->job[0] &&
		    (sig == SIGTERM || code == 128 + SIGTERM))
			stop_signal = SIGTERM; /* killed, or its shell reporting a SIGTERM-ed child */
		int requeued = 0; /* by Slurm itself: preemption, node failure */
		if (stop_signal && x->job[0]) {
			kind = slurm_stop(x, &requeued, msg, sizeof(msg));
		} else if (timed_out) {
			kind = "timeout";
			char what[64];
			snprintf(what, sizeof(what), "time limit of %ld s reached", x->time_s);
			over_limit(x, kind, what, msg, sizeof(msg));
		} else if (lim.over_kb) {
			kind = "oom";
			char used[32], had[32], what[200];
			job_format_kib(lim.over_kb, used, sizeof(used));
			job_format_kib((long long)x->mem_mb * 1024, had, sizeof(had));
			snprintf(what, sizeof(what),
				 "its processes used %s together, over its mem of %s: stopped, as "
				 "Slurm stops a job over its --mem",
				 used, had);
			over_limit(x, kind, what, msg, sizeof(msg));
			dprintf(log_fd, "cairn: %s\n", msg);
		} else if (stop_signal) {
			kind = "cancelled";
			snprintf(msg, sizeof(msg), "cairn exec got signal %d", (int)stop_signal);
		} else if (sig == SIGKILL || code == 128 + SIGKILL) { /* or its shell saying so */
			/* the largest process's peak, against the stage's mem: is it
			 * the memory? The kernel's OOM killer counts its kills in the
			 * memory cgroup (Slurm's task/cgroup, or the machine's). */
			char rss[96], what[200];
			job_format_rss(x->mem_mb, ru.ru_maxrss, rss, sizeof(rss));
			long kills = proc_oom_kills();
			if (kills0 >= 0 && kills > kills0) {
				kind = "oom";
				snprintf(what, sizeof(what),
					 "killed by the kernel's OOM killer (its memory cgroup counted "
					 "%ld kill%s); %s",
					 kills - kills0, kills - kills0 > 1 ? "s" : "", rss);
				over_limit(x, kind, what, msg, sizeof(msg));
				dprintf(log_fd, "cairn: %s\n", msg);
			} else {
				snprintf(msg, sizeof(msg),
					 "killed by SIGKILL (out of memory, or kill -9); %s", rss);
			}
		}
		dprintf(log_fd, "=== cairn: %s/%d %s (exit %d, signal %d) after %.1f s ===\n",
			x->st->name, x->task, kind, code, sig, wall);
		close(log_fd);
		/* The task failed, not cairn: failed.json and the log say so; stay quiet. */
		rc = write_failed(x, kind, code, sig, msg[0] ? msg : NULL, err) < 0 ? -1 : 1;
		/* Retries count per submission (SLURM_RESTART_COUNT), as locally
		 * per cairn run or resume: a resume gets its retries again. */
		x->retry = rc == 1 && x->job[0] && !requeued && x->restarts < x->st->res.retries &&
			   job_retry_allowed(x->st->res.retry_on, kind, code) && !grows(x, kind);
		goto out;
	}

	/* Success: hash out/, then write done.json last. */
	json_t *manifest = NULL;
	char digest[65];
	path_of(&p, x, "out");
	if (task_manifest_build(p.s, &manifest, digest, err) < 0) {
		dprintf(log_fd, "cairn: %s\n", err->msg);
		close(log_fd);
		struct error e2;
		write_failed(x, "output", 0, 0, err->msg, &e2);
		goto out;
	}
	/* Test hook: a window between hashing and done.json, to prove that a
	 * wrapper killed here leaves nothing that counts as done. */
	if (getenv("CAIRN_TEST_PAUSE_BEFORE_DONE"))
		sleep((unsigned)atoi(getenv("CAIRN_TEST_PAUSE_BEFORE_DONE")));
	char finished[32];
	clock_utc(finished, sizeof(finished), 0);
	json_t *done = json_pack("{s:i, s:i, s:s, s:s, s:s, s:f, s:s, s:O, s:s, s:o, s:s}",
				 "exit_code", 0, "attempt", x->attempt, "host", x->host, "started",
				 x->started, "finished", finished, "wall_s", wall, "key", key,
				 "key_parts", parts, "manifest_sha256", digest, "manifest", manifest,
				 "slurm_job", x->job);
	if (done)
		add_usage(done, x, &ru);
	add_limits(done, x);
	path_of(&p, x, "done.json");
	/* Temp file + rename, no fsync: a process killed at any moment leaves
	 * the old state or the new, never a torn file. fsync would only matter
	 * in a power cut, and there it buys nothing: the outputs themselves are
	 * not synced, a done.json lost with the cut just reruns its task, and a
	 * torn one is read as not done (plan.c). It cost a disk flush per task. */
	if (!done || jsonio_write_replace(p.s, done, err) < 0) {
		if (!done)
			error_set(err, "out of memory");
		dprintf(log_fd, "cairn: cannot write done.json: %s\n", err->msg);
		close(log_fd);
		json_decref(done);
		struct error e2;
		write_failed(x, "exit", 0, 0, err->msg, &e2);
		goto out;
	}
	json_decref(done);
	path_of(&p, x, "state");
	struct error e2;
	if (fs_rm_rf(p.s, &e2) < 0) /* best effort: the task is done */
		dprintf(log_fd, "cairn: %s\n", e2.msg);
	dprintf(log_fd, "=== cairn: %s/%d done after %.1f s ===\n", x->st->name, x->task, wall);
	run_event(x->run->dir, "done %s/%d attempt %d in %.2f s", x->st->name, x->task, x->attempt, wall);
	release_after(x, log_fd);
	close(log_fd);
	rc = 0;
out:
	x->ru = NULL; /* it was this function's */
	json_decref(parts);
	buf_release(&p);
	buf_release(&cmd);
	return rc;
}

/* A retry of a job that runs a group of tasks: did this task fail in an
 * earlier attempt of this very job with a failure that is not retried? Then
 * it stays failed; only the tasks that may retry (and those that did not
 * run) run again. */
static int failed_for_good(const struct exec_ctx *x)
{
	struct task_info ti;
	struct error err;
	return x->restarts > 0 && task_read(x->run->dir, x->st->name, x->task, 0, &ti, &err) == 0 &&
	       ti.state == TASK_FAILED && !strcmp(ti.job, x->job) &&
	       !job_retry_allowed(x->st->res.retry_on, ti.kind, ti.exit_code);
}

/* One task: 0 done (or up to date), 1 failed, EXEC_BUSY, -1 cairn's own
 * error (said on stderr). *retry is set when it failed and may retry. */
static int exec_one(const struct run *run, int stage, int task, int grouped, const char *self,
		    int *retry)
{
	struct exec_ctx x;
	memset(&x, 0, sizeof(x));
	struct error err;
	error_clear(&err);
	x.run = run;
	x.stage = stage;
	x.task = task;
	x.st = &run->spec.stages[stage];
	x.grouped = grouped;
	x.t0 = clock_now();
	gethostname(x.host, sizeof(x.host) - 1);
	clock_utc(x.started, sizeof(x.started), 0);
	const char *aj = getenv("SLURM_ARRAY_JOB_ID"), *at = getenv("SLURM_ARRAY_TASK_ID");
	if (aj && at)
		snprintf(x.job, sizeof(x.job), "%s_%s", aj, at);
	else if (getenv("SLURM_JOB_ID"))
		snprintf(x.job, sizeof(x.job), "%s", getenv("SLURM_JOB_ID"));
	x.attempt = previous_attempt(&x) + 1;
	if (x.job[0] && getenv("SLURM_RESTART_COUNT"))
		x.restarts = atoi(getenv("SLURM_RESTART_COUNT"));
	const char *mem = getenv(x.job[0] ? "SLURM_MEM_PER_NODE" : "CAIRN_MEM_MB");
	x.mem_mb = mem ? atol(mem) : x.job[0] ? 0 : x.st->res.mem_mb;
	const char *tv = getenv("CAIRN_TIME_S"); /* "" for none */
	x.time_s = tv ? atol(tv) : x.st->res.time_s;
	/* the task's time, for commands that checkpoint before it runs out */
	if (x.time_s > 0) {
		char v[32];
		snprintf(v, sizeof(v), "%ld", x.time_s);
		setenv("CAIRN_TIME_S", v, 1);
	} else {
		unsetenv("CAIRN_TIME_S");
	}
	if (failed_for_good(&x)) {
		run_event(run->dir, "skip %s/%d: it failed in job %s with a failure not retried",
			  x.st->name, task, x.job);
		return 1;
	}
	struct buf dir = BUF_INIT;
	spec_task_dir(&dir, run->dir, x.st->name, x.task);
	if (dir.failed || fs_mkdir_p(dir.s, &err) < 0) {
		fprintf(stderr, "cairn exec: %s\n", dir.failed ? "out of memory" : err.msg);
		buf_release(&dir);
		return -1;
	}
	buf_release(&dir);
	int rc = run_task(&x, self, &err);
	if (rc < 0 && err.msg[0])
		fprintf(stderr, "cairn exec: %s\n", err.msg);
	*retry = x.retry;
	return rc;
}

int exec_task(const struct run *run, int stage, int first, int count)
{
	proc_catch_stop(&stop_signal);
	proc_adopt_orphans();
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	char *slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';

	/* A group runs its tasks one after another, each whatever the others
	 * did (they are independent); a stop (scancel, time limit) ends it. */
	int ntasks = run->spec.stages[stage].ntasks, failed = 0, busy = 0, retry = -1;
	for (int t = first; t < first + count && t < ntasks && !stop_signal; t++) {
		int again = 0, rc = exec_one(run, stage, t, count > 1, self, &again);
		failed |= rc != 0 && rc != EXEC_BUSY;
		busy |= rc == EXEC_BUSY;
		if (again && retry < 0)
			retry = t;
	}
	/* Retries count per submission (SLURM_RESTART_COUNT), as locally per
	 * cairn run or resume: a resume gets its retries again. A group is
	 * requeued once, after all of its tasks ran, or when Slurm stopped it
	 * for a cause that may be retried (its time limit: kind timeout). */
	if (retry >= 0) {
		const char *id = getenv("SLURM_JOB_ID");
		if (count > 1)
			run_event(run->dir,
				  "retry %s/%d: requeue of Slurm job %s, which runs %s/%d-%d",
				  run->spec.stages[stage].name, retry, id ? id : "?",
				  run->spec.stages[stage].name, first,
				  (first + count < ntasks ? first + count : ntasks) - 1);
		else
			run_event(run->dir, "retry %s/%d: requeue of Slurm job %s",
				  run->spec.stages[stage].name, retry, id ? id : "?");
		requeue();
	}
	if (stop_signal)
		return 128 + (int)stop_signal;
	return failed ? 1 : busy ? EXEC_BUSY : 0;
}

int cmd_exec(int argc, char **argv)
{
	if ((argc != 4 && argc != 5) || !strcmp(argv[1], "--help")) {
		fprintf(
		    argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
		    "usage: cairn exec RUN STAGE TASK [COUNT]\n"
		    "Runs one task of a run and writes its markers; with COUNT, the COUNT tasks\n"
		    "from TASK one after another (a Slurm job of a stage with group = COUNT).\n"
		    "cairn run and the Slurm jobs call it; you rarely need to.\n"
		    "example: cairn exec runs/demo-20261124T140000Z-1a2b fetch 3\n");
		return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
	}
	struct run run;
	struct error err;
	if (run_open(&run, argv[1], &err) < 0) {
		fprintf(stderr, "cairn exec: %s\n", err.msg);
		run_release(&run);
		return 2;
	}
	int stage = spec_stage_index(&run.spec, argv[2]);
	char *end, *end2 = "";
	long t = strtol(argv[3], &end, 10);
	long count = argc == 5 ? strtol(argv[4], &end2, 10) : 1;
	if (stage < 0 || *end || t < 0 || t >= run.spec.stages[stage].ntasks) {
		fprintf(stderr, "cairn exec: %s: no task %s/%s in this run\n", argv[1], argv[2], argv[3]);
		run_release(&run);
		return 2;
	}
	if (*end2 || count < 1 || count > 1000000) {
		fprintf(stderr, "cairn exec: COUNT '%s': want a whole number >= 1\n", argv[4]);
		run_release(&run);
		return 2;
	}
	int rc = exec_task(&run, stage, (int)t, (int)count);
	run_release(&run);
	return rc;
}
