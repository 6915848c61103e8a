/* cli: the `cairn` command: a table of subcommands (one file each, cmd_*.c)
 * and the few helpers they share. Exit codes: 0 ok, 1 the work failed,
 * 2 bad usage or bad input. */
#ifndef PIPELINE_CLI_H
#define PIPELINE_CLI_H

#include "pipeline/plan.h"
#include "pipeline/run.h"

int cli_main(int argc, char **argv);

int cmd_run(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_why(int argc, char **argv);
int cmd_graph(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_exec(int argc, char **argv);
/* The body of `cairn exec` for an open run: runs the tasks first .. first +
 * count - 1 (those the stage has) one after another, writes their markers,
 * returns the wrapper's exit code (1 when one failed). The local executor
 * calls it for one task in a forked child, so a task costs no exec of cairn
 * and no spec parse. */
int exec_task(const struct run *run, int stage, int first, int count);

/* Counts of task states per stage and the run's overall state. */
struct run_status {
	int nstages;
	struct stage_counts {
		long long tasks, done, failed, running, pending, cancelled;
		long long released; /* done tasks whose out/ was released (temp) */
	} *stages;
	struct stage_counts total;
	const char *state; /* pending, running, failed, done, cancelled */
	char failures[5][200]; /* the first failed tasks, one line each */
	int nfailures;
	char first[160];    /* STAGE/TASK of the first failed (else stuck) task, or "" */
	/* The failed tasks by kind ("timeout", "exit 3", "signal 9"), in the
	 * order first seen; kinds past the 8th counted in other_kinds. */
	struct kind_count {
		char kind[32];
		long long n;
	} by_kind[8];
	int nkinds;
	long long other_kinds;
	long long queued;   /* tasks the scheduler still holds (pending or running) */
	char stuck[5][200]; /* the first queued tasks whose reason never clears */
	int nstuck;
	long long stuck_total;
	char warning[400];  /* Slurm unreachable: states from the markers alone */
};

/* The markers as the scheduler corrects them: one squeue call for a Slurm
 * run (sched_view_load). */
int status_collect(const struct run *r, struct run_status *st, struct error *err);
/* The same with a view of the scheduler at hand (sched_view_pick), or view
 * NULL: the markers alone (Slurm not asked: its queued and lost tasks not
 * seen). */
int status_count(const struct run *r, struct run_status *st, const struct sched_view *view,
		 struct error *err);
/* "warning: Slurm unreachable ..." for a view that could not ask Slurm, else "". */
void sched_warning(const struct sched_view *v, char *out, size_t size);
void status_release(struct run_status *st);
/* {"tasks", "done", "failed", "running", "pending", "cancelled"} */
json_t *status_counts_json(const struct stage_counts *c);
/* Print the table (human) or the JSON object of `cairn status --json`. */
void status_print(const struct run *r, const struct run_status *st, int json);

/* Open a run folder for command `cmd`; dir NULL: the newest in runs/
 * (cli_latest_run), named on stderr. On error print it and return -1. */
int cli_open_run(const char *cmd, const char *dir, struct run *r);
/* The positional arguments of `cmd RUN STAGE/TASK` (why, logs) with RUN
 * left out: one argument that is not a run folder is STAGE/TASK of the
 * newest run (*run = NULL). 0, or -1 having printed usage. */
int cli_run_and_task(const char *cmd, const char *usage, const char **pos, int npos,
		     const char **run, const char **task);
/* The newest run folder in runs/ (by run.json's "created", then by name)
 * into out ("runs/NAME"): 0, or -1 with err saying there is none. */
int cli_latest_run(struct buf *out, struct error *err);
/* Whether dir holds a run.json (a run folder, readable or not). */
int cli_is_run(const char *dir);
/* Mark the task (or every task of the stage) arg names in marks[stage]
 * (one byte per task, allocated on first use; marks has a slot per
 * stage). 0, or -1 said: a name the run does not have, out of memory. */
int cli_mark_task(const char *cmd, const struct run *r, const char *arg, unsigned char **marks);
/* "STAGE" or "STAGE/TASK" of run r: *task = -1 when only a stage is named
 * (allowed only if !need_task). On error print what exists and return -1. */
int cli_parse_task(const char *cmd, const struct run *r, const char *arg, int need_task,
		   int *stage, int *task);
/* The start of the last `lines` lines of text[0..len). */
size_t cli_tail_start(const char *text, size_t len, long lines);

/* Is this --help? Prints usage to stdout and returns 1. */
int cli_wants_help(int argc, char **argv, const char *usage);
/* A count of lines (0 or more) given to `flag`; on a bad one, says so for
 * `cmd` and returns -1. */
/* "cairn CMD: unexpected 'ARG'", with the nearest option of usage (its
 * --words) when ARG is a typo of one, then usage, on stderr. */
void cli_unexpected(const char *cmd, const char *arg, const char *usage);
int cli_parse_lines(const char *cmd, const char *flag, const char *v, long *out);

#endif
