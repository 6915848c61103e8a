/* sched: what the scheduler knows about a run's tasks, next to what the
 * markers say. For a Slurm run: the submissions recorded in run.json and ONE
 * squeue call for all of their jobs, however many tasks the run has. */
#ifndef PIPELINE_SCHED_H
#define PIPELINE_SCHED_H

#include "jobs/slurm_cli.h"
#include "pipeline/run.h"
#include "pipeline/task.h"

struct sched_sub {             /* one recorded submission (run.json "jobs") */
	int stage;
	long job_id;
	int offset;
	const char *array;     /* borrowed from run.json */
};

struct sched_view {
	int slurm;               /* the run was submitted to Slurm */
	struct slurm_jobs jobs;  /* sorted by (array_job_id, array_task) */
	struct sched_sub *subs;  /* in submission order */
	int nsubs;
};

/* Query the scheduler once (nothing for a local run). */
int sched_view_load(struct sched_view *v, const struct run *r, struct error *err);
void sched_view_release(struct sched_view *v);

/* Correct what the markers of a task say with what the scheduler knows: a
 * queued task is pending, a running job running, a job that ended without a
 * marker failed with its kind (timeout, node_fail, dependency...), a job the
 * scheduler forgot and that left no marker lost. Fills ti->job with the
 * job's id ("123_4") when the task was submitted. */
void sched_view_apply(const struct sched_view *v, const struct run *r, int stage, int task,
		      struct task_info *ti);

/* Record one submission in run.json (atomically): stage, job id, offset, array. */
int sched_record(struct run *r, const char *stage, long job_id, int offset, const char *array,
		 struct error *err);
/* The job ids of a stage's submissions that the scheduler still holds. */
int sched_queued_jobs(const struct sched_view *v, const struct run *r, const char *stage,
		      long **ids, int *n, struct error *err);
/* All job ids recorded in run.json; *ids is freed by the caller. */
int sched_job_ids(const struct run *r, long **ids, size_t *n, struct error *err);

#endif
