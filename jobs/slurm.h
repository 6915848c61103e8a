/* slurm: the executor that submits a whole job graph to Slurm at once and
 * exits: one job array per stage (split at MaxArraySize), chained with
 * afterok/aftercorr dependencies and --kill-on-invalid-dep=yes. Every task
 * runs `cairn exec RUN STAGE TASK`; nothing of cairn stays running. */
#ifndef JOBS_SLURM_H
#define JOBS_SLURM_H

#include <stdio.h>

#include "jobs/job.h"

/* One sbatch: a stage's tasks offset .. offset + (array indices). */
struct slurm_submission {
	int stage;
	long job_id;
	int offset;      /* task = offset + SLURM_ARRAY_TASK_ID * group (+ 0 .. group - 1) */
	char *array;     /* the --array spec without the throttle, e.g. "0-999" or "2,5,7-9" */
	int group;       /* tasks per array element (the stage's group), >= 1 */
};

/* Jobs of an earlier submission still queued or running, that resubmitted
 * tasks must wait for (resume of a run that still runs). */
struct slurm_waits {
	char **ids; /* per stage: afterok ids, whole arrays or elements ("36:40_2"), or NULL */
};

/* Called after each successful sbatch so that the caller records the job id
 * at once: a submission that fails half-way leaves a record of what went out. */
typedef int (*slurm_record_fn)(void *ctx, const struct slurm_submission *sub, struct error *err);

struct slurm_opts {
	const char *workdir;        /* --chdir */
	const char *script_dir;     /* where the batch scripts and Slurm's own logs go */
	const char *job_prefix;     /* job names: PREFIX.STAGE.SERIAL, unique in the run */
	int first_serial;           /* SERIAL of the first sbatch (jobs recorded before) */
	const struct job_res *site; /* the [slurm] section: partition, account, qos, sbatch_args */
	const struct slurm_waits *waits;
	slurm_record_fn record;
	void *record_ctx;
	FILE *dry; /* set: print each sbatch command line there instead (jobs
		      named #1, #2, ... in the dependencies), write and record nothing */
};

/* Submit every task whose todo is LOCAL_RUN (jobs/local.h values) of every
 * stage, upstream first. Returns the number of sbatch calls, or -1. */
int slurm_submit(const struct job_graph *g, const struct slurm_opts *o, struct error *err);

/* "0-3,7,9-10" from sorted indices; the caller frees the string. */
char *slurm_array_spec(const int *idx, int n);

#endif
