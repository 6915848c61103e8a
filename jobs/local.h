/* local: the executor that runs a job graph on this machine, as a pool of
 * `cairn exec` processes (--jobs slots), honouring dependencies, per-stage
 * throttles and retries. Ctrl-C cancels the running tasks cleanly. */
#ifndef JOBS_LOCAL_H
#define JOBS_LOCAL_H

#include "jobs/job.h"

/* todo values in job_stage.todo for the local executor. */
enum { LOCAL_SKIP = 0, LOCAL_RUN = 1, LOCAL_WAIT = 2 /* running in a wrapper we did not start */ };
/* A wrapper's exit code when another wrapper already runs its task. */
enum { LOCAL_EXIT_BUSY = 75 };

/* Run the graph. Returns 0 when it ran to the end (c->failed may be > 0),
 * 1 when cancelled by a signal, -1 on an error of cairn itself. */
int local_run(const struct job_graph *g, const struct job_opts *o, struct job_counts *c,
	      struct error *err);

#endif
