/* cairn cancel RUN: stop a run. Locally: ask the cairn that drives it to
 * cancel (its tasks are marked cancelled); if none drives it, stop the task
 * wrappers still running on this host. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"
#include "jobs/slurm_cli.h"
#include "pipeline/cli.h"
#include "pipeline/sched.h"

static const char cancel_usage[] =
	"usage: cairn cancel RUN\n"
	"Stops the run's running tasks; they are marked cancelled and `cairn resume RUN`\n"
	"continues from there.\n"
	"example: cairn cancel runs/demo-20261124T140000Z-1a2b\n";

int cmd_cancel(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, cancel_usage))
		return 0;
	if (argc != 2) {
		fputs(cancel_usage, stderr);
		return 2;
	}
	struct run r;
	struct error err;
	if (cli_open_run("cancel", argv[1], &r) < 0)
		return 2;
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
