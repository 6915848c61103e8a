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
/* The GPUs the local executor gives out to tasks of stages with gpus = N,
 * each to one task at a time, through CUDA_VISIBLE_DEVICES. From opt
 * (--gpus: a count N for devices 0..N-1, a list "0,2", or "none"); without
 * it, the CUDA_VISIBLE_DEVICES cairn was started with, else /dev/nvidia0, 1, ... */
struct local_gpus {
	char **ids;
	int n;
};
int local_gpus_init(struct local_gpus *gp, const char *opt, struct error *err);
void local_gpus_release(struct local_gpus *gp);
/* Can a stage's gpus = N be given? If not, an error that says what to do. */
int local_gpus_fit(const struct local_gpus *gp, const char *stage, int gpus, struct error *err);

int local_run(const struct job_graph *g, const struct job_opts *o, struct job_counts *c,
	      struct error *err);

#endif
