/* cairn cancel RUN [STAGE[/TASK]]...: stop a run, or some of its tasks.
 * Locally: ask the cairn that drives it to cancel (its tasks are marked
 * cancelled); if none drives it, stop the task wrappers still running on
 * this host. Tasks named: their running wrappers stopped, and those the
 * driving cairn has not started marked so that they never start; on Slurm
 * one scancel of their queued or running array elements. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "jobs/slurm_cli.h"
#include "pipeline/cli.h"
#include "pipeline/sched.h"

static const char cancel_usage[] =
    "usage: cairn cancel RUN [STAGE[/TASK]]...\n"
    "Stops the run's running tasks; they are marked cancelled and `cairn resume RUN`\n"
    "continues from there. With tasks named (a STAGE: all of its tasks): only\n"
    "those stop, running or not yet started, and what needs them does not run;\n"
    "the rest of the run goes on.\n"
    "example: cairn cancel runs/demo-20261124T140000Z-1a2b train/3\n";

/* A task the driving cairn (pid driver) has not started: a cancel mark in
 * its folder, which its wrapper obeys; then a second look, since the
 * wrapper may have looked for the mark already: its started.json is then
 * there, and it gets SIGTERM. 0 marked, 1 signalled, -1 with err. */
static int stop_unstarted(const struct run *r, int s, int t, long driver, const char *host,
			  struct error *err)
{
	const char *stage = r->spec.stages[s].name;
	struct buf path = BUF_INIT;
	task_path(&path, r->dir, stage, t, "");
	fs_mkdir_p(path.s, err);
	buf_adds(&path, TASK_CANCEL_FILE);
	json_t *mark = json_pack("{s:I}", "driver_pid", (json_int_t)driver);
	int rc = !mark || path.failed ? error_set(err, "out of memory")
				      : jsonio_write_replace(path.s, mark, err);
	json_decref(mark);
	buf_release(&path);
	struct task_info now;
	if (rc == 0 && task_read(r->dir, stage, t, 1, &now, err) == 0 &&
	    now.state == TASK_RUNNING && !strcmp(now.host, host))
		rc = kill((pid_t)now.pid, SIGTERM) == 0;
	return rc;
}

/* Cancel the tasks marked. Slurm: one scancel of their queued and running
 * array elements. Locally: SIGTERM to their wrappers running on this host;
 * with a cairn driving the run (driver > 0), a cancel mark in the folders
 * of those it has not started. Says what it did; 0, 1 the work failed. */
static int cancel_tasks(const struct run *r, unsigned char **marks, long driver)
{
	struct error err;
	struct sched_view view;
	memset(&view, 0, sizeof(view));
	int slurm = run_is_slurm(r);
	if (slurm && sched_view_load(&view, r, &err) < 0) {
		fprintf(stderr, "cairn cancel: %s\n", err.msg);
		return 1;
	}
	if (slurm && view.unreachable) {
		fprintf(stderr, "cairn cancel: cannot reach Slurm (%s): nothing was cancelled\n",
			view.error);
		sched_view_release(&view);
		return 1;
	}
	char host[128] = "";
	gethostname(host, sizeof(host) - 1);
	struct buf ids = BUF_INIT;
	long long running = 0, unstarted = 0, ended = 0;
	int rc = 0, grouped = 0, group = 0;
	for (int s = 0; s < r->spec.nstages; s++)
		for (int t = 0; marks[s] && t < r->spec.stages[s].ntasks; t++) {
			struct task_info ti;
			if (!marks[s][t] ||
			    task_read(r->dir, r->spec.stages[s].name, t, 1, &ti, &err) < 0)
				continue;
			sched_view_apply(&view, r, s, t, &ti);
			int live = ti.state == TASK_RUNNING || ti.state == TASK_PENDING;
			if (!live) {
				ended++;
			} else if (slurm && ti.queued) {
				if (!buf_has_word(&ids, ti.job)) /* a group's tasks share a job */
					buf_addf(&ids, "%s%s", ids.len ? " " : "", ti.job);
				ti.state == TASK_RUNNING ? running++ : unstarted++;
				if (ti.group >
				    1) /* as submitted: --spec may have changed it since */
					grouped = s + 1, group = ti.group;
			} else if (ti.state == TASK_RUNNING && !strcmp(ti.host, host) &&
				   !ti.job[0]) {
				running += kill((pid_t)ti.pid, SIGTERM) == 0;
			} else if (ti.state == TASK_PENDING && !slurm && driver > 0) {
				int got = stop_unstarted(r, s, t, driver, host, &err);
				if (got < 0)
					fprintf(stderr, "cairn cancel: %s/%d: %s\n",
						r->spec.stages[s].name, t, err.msg),
					    rc = 1;
				else
					got ? running++ : unstarted++;
			} else {
				ended++; /* not started, and nothing will start it */
			}
		}
	if (ids.len && slurm_cancel_text(ids.s, &err) < 0) {
		fprintf(stderr, "cairn cancel: %s\nnothing was cancelled\n", err.msg);
		rc = 1;
	} else {
		printf(
		    "cancelled %lld task%s of %s: %lld running, %lld not yet started%s; %lld named "
		    "had ended or were not going to run\n",
		    running + unstarted, running + unstarted == 1 ? "" : "s", r->dir, running,
		    unstarted, slurm ? " (one scancel)" : "", ended);
		if (grouped)
			printf(
			    "note: a Slurm job of %s runs %d of its tasks one after another "
			    "(group): "
			    "the tasks of those jobs that had not ended were cancelled with them\n",
			    r->spec.stages[grouped - 1].name, group);
		run_event(r->dir,
			  "cancel: %lld tasks named, %lld running and %lld unstarted cancelled",
			  running + unstarted + ended, running, unstarted);
	}
	buf_release(&ids);
	sched_view_release(&view);
	return rc;
}

int cmd_cancel(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, cancel_usage))
		return 0;
	if (argc < 2 || argv[1][0] == '-') {
		fputs(cancel_usage, stderr);
		return 2;
	}
	struct run r;
	struct error err;
	if (cli_open_run("cancel", argv[1], &r) < 0)
		return 2;
	if (argc > 2) {
		unsigned char **marks = mem_calloc((size_t)r.spec.nstages + 1, sizeof(*marks));
		int rc = marks ? 0 : -1;
		for (int i = 2; rc == 0 && i < argc; i++)
			rc = cli_mark_task("cancel", &r, argv[i], marks);
		long driver = 0;
		if (rc == 0 && !run_is_slurm(&r)) {
			/* who drives the run: its unstarted tasks get marks naming it */
			int got = run_lock(&r, &driver, &err);
			if (got == 1)
				run_unlock(&r), driver = 0;
			else if (got < 0)
				driver = 0;
		}
		if (rc == 0)
			rc = cancel_tasks(&r, marks, driver);
		else
			rc = 2;
		for (int s = 0; marks && s < r.spec.nstages; s++)
			mem_free(marks[s]);
		mem_free(marks);
		run_release(&r);
		return rc;
	}
	if (run_is_slurm(&r)) {
		long *ids;
		size_t n;
		int rc = sched_job_ids(&r, &ids, &n, &err);
		if (rc == 0 && n)
			rc = slurm_cancel(ids, n, &err);
		mem_free(ids);
		if (rc < 0) {
			/* Nothing was written to the run folder: the same command
			 * works once Slurm answers again. */
			const char *conf = getenv("SLURM_CONF");
			if (slurm_is_unreachable(err.msg))
				fprintf(stderr,
					"cairn cancel: cannot reach Slurm (%s)\n"
					"nothing was cancelled and %s is unchanged; check that slurmctld is up "
					"(`scontrol ping`) and that SLURM_CONF (%s) names this cluster's "
					"slurm.conf, then run `cairn cancel %s` again\n",
					err.msg, r.dir, conf && *conf ? conf : "unset", argv[1]);
			else
				fprintf(stderr,
					"cairn cancel: %s\n%s is unchanged; `cairn status %s` shows which of "
					"its jobs are still queued or running\n",
					err.msg, r.dir, argv[1]);
			run_release(&r);
			return 1;
		}
		printf("cancelled the %zu Slurm job%s of %s (one scancel)\n", n, n == 1 ? "" : "s", r.dir);
		run_event(r.dir, "cancel: scancel of %zu jobs", n);
		run_release(&r);
		return 0;
	}
	long holder = 0;
	int got = run_lock(&r, &holder, &err);
	if (got < 0) {
		fprintf(stderr, "cairn cancel: %s\n", err.msg);
		run_release(&r);
		return 1;
	}
	if (got == 0 && holder > 0) {
		if (kill((pid_t)holder, SIGTERM) < 0) {
			fprintf(stderr, "cairn cancel: cannot signal cairn pid %ld: %s\n", holder,
				strerror(errno));
			run_release(&r);
			return 1;
		}
		printf("asked cairn (pid %ld) to cancel %s\n", holder, r.dir);
		run_release(&r);
		return 0;
	}
	/* Nobody drives the run: stop wrappers left running on this host. */
	char host[128] = "";
	gethostname(host, sizeof(host) - 1);
	int n = 0;
	for (int s = 0; s < r.spec.nstages; s++)
		for (int t = 0; t < r.spec.stages[s].ntasks; t++) {
			struct task_info ti;
			if (task_read(r.dir, r.spec.stages[s].name, t, 1, &ti, &err) < 0 ||
			    ti.state != TASK_RUNNING || strcmp(ti.host, host) || ti.job[0])
				continue;
			if (kill((pid_t)ti.pid, SIGTERM) == 0)
				n++;
		}
	printf("cancelled %d running task%s of %s\n", n, n == 1 ? "" : "s", r.dir);
	run_event(r.dir, "cancel: %d running tasks signalled", n);
	run_release(&r);
	return 0;
}
