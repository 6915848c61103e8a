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
	int offset;            /* the first task of the array's element 0 */
	const char *array;     /* borrowed from run.json */
	int group;             /* tasks per element: element i runs offset + i * group .. + group - 1 */
};

struct sched_view {
	int slurm;               /* the run was submitted to Slurm */
	struct slurm_jobs jobs;  /* sorted by (array_job_id, array_task) */
	struct sched_sub *subs;  /* in submission order */
	int nsubs;
	int unreachable;         /* squeue failed: only the markers are known */
	char error[256];         /* then: why */
};

/* Query the scheduler once (nothing for a local run). When Slurm cannot be
 * reached this still succeeds, with v->unreachable set and v->error saying
 * why: callers show the markers and warn (sched_warning). */
int sched_view_load(struct sched_view *v, const struct run *r, struct error *err);
/* The same from jobs one squeue call gave of several runs at once (those of
 * r picked by the job ids in its run.json), or, with unreachable (that
 * call's error), Slurm unreachable: no scheduler call. */
int sched_view_pick(struct sched_view *v, const struct run *r, const struct slurm_jobs *all,
		    const char *unreachable, struct error *err);
void sched_view_release(struct sched_view *v);

/* Correct what the markers of a task say with what the scheduler knows: a
 * queued task is pending, a running job running, a job that ended without a
 * marker failed with its kind (timeout, node_fail, dependency...), a job the
 * scheduler forgot and that left no marker lost (or cancelled, when it never
 * started; or the kind in Slurm's own log of the job, such as oom). A marker
 * of an earlier submission gives way to the latest job while that is queued
 * or running. A job that ended without a marker gets Slurm's verdict written
 * as its failed.json (the only write; once per such job). Fills ti->job
 * with the latest job's id ("123_4") when the task was submitted. */
void sched_view_apply(const struct sched_view *v, const struct run *r, int stage, int task,
		      struct task_info *ti);

/* Record one submission in run.json (atomically): stage, job id, offset,
 * array, and group (tasks per element) when over 1. */
int sched_record(struct run *r, const char *stage, long job_id, int offset, const char *array,
		 int group, struct error *err);
/* The submission's tasks that array element `index` runs: first .. first + n - 1. */
void sched_sub_tasks(const struct sched_sub *sub, int index, int ntasks, int *first, int *n);
/* Queued or running jobs of tasks the spec no longer has (a stage removed,
 * an array shrunk by resume --spec): appended to ids ("12_7 15"), counted,
 * and counted per stage in per_stage[stage] (when not NULL) for stages the
 * spec still has. */
long long sched_orphans(const struct sched_view *v, const struct run *r, struct buf *ids,
			long long *per_stage);
/* All job ids recorded in run.json; *ids is freed by the caller. */
int sched_job_ids(const struct run *r, long **ids, size_t *n, struct error *err);

#endif
