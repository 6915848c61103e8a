/* plan: what `run`, `resume` and `why` decide for every task of a run: run
 * it, skip it (done and still valid), or wait for it (running elsewhere),
 * with the reason. Done tasks are checked against their manifest and key. */
#ifndef PIPELINE_PLAN_H
#define PIPELINE_PLAN_H

#include "core/buf.h"
#include "pipeline/run.h"
#include "pipeline/sched.h"
#include "pipeline/task.h"

enum plan_action { PLAN_SKIP, PLAN_RUN, PLAN_WAIT };

enum plan_reason {
	WHY_NEW,    /* never ran */
	WHY_FAILED, /* failed (see its failed.json) */
	WHY_CANCELLED,
	WHY_LOST,     /* started, wrapper gone, no end marker */
	WHY_OUTPUT,   /* out/ no longer matches the manifest */
	WHY_KEY,      /* command, resources or inputs changed */
	WHY_UPSTREAM, /* an input task reruns */
	WHY_DONE,     /* done and valid: skipped */
	WHY_RUNNING,  /* still running: wait */
	WHY_QUEUED,   /* submitted, still queued: wait */
	WHY_UNTIL,    /* would run, but its stage is beyond --until */
	WHY_RERUN,    /* done and valid, but asked for by --rerun */
	WHY_RELEASED, /* done and valid, its outputs released (temp): skipped */
	WHY_NEEDED,   /* released, and a task that reads it runs: run it first */
	WHY_GROUP,    /* queued in a Slurm job cancelled for another task of its group */
	WHY_LAST = WHY_GROUP,
};
/* "never ran", "failed", ... "asked by --rerun": a reason in a few words. */
const char *plan_reason_name(enum plan_reason w);

struct plan_stage {
	int ntasks;
	unsigned char *action;   /* enum plan_action per task */
	unsigned char *reason;   /* enum plan_reason per task */
	unsigned char *state;    /* enum task_state per task */
	char (*digest)[65];      /* manifest digest of done tasks (NULL for a new run) */
	unsigned char *released; /* done tasks whose out/ was released (NULL: new run) */
	struct job_limits *limits; /* with a mem or time range (mem = 1G..8G): what
				      each task's next attempt asks, job_next_limits(); else NULL */
	long long run, skip, wait;
	long long dropped;       /* queued or running elements beyond ntasks
				    (resume --spec shrank the array): cancelled */
};

struct plan {
	int nstages;
	struct plan_stage *stages;
	long long run, skip, wait;
	struct sched_view view; /* what the scheduler said (Slurm runs) */
	struct buf cancel;      /* Slurm jobs to scancel before resubmitting ("12_3 14"):
				   queued tasks whose input reruns, and jobs of tasks or
				   stages the spec no longer has */
	long long ncancel;
	long long held; /* tasks --until holds back */
};

/* A plan for a run folder. fresh: the run was just created, nothing to read.
 * verify: re-hash outputs instead of comparing size and time. A released
 * task (release.h) is skipped, unless a task that reads it runs: then it
 * runs again first (WHY_NEEDED), and so on up a chain of temp stages. */
int plan_make(struct plan *p, const struct run *r, int fresh, int verify, struct error *err);
/* The same, with rerun[stage][task] != 0 (rerun NULL, or rerun[stage] NULL:
 * none of that stage) for the tasks to run again though done and valid
 * (WHY_RERUN); a marked task that runs anyway keeps its reason. */
int plan_make_rerun(struct plan *p, const struct run *r, int fresh, int verify,
		    unsigned char *const *rerun, struct error *err);
void plan_release(struct plan *p);
/* --until STAGE[,STAGE...]: keep[i] = 1 for the stages named and every stage
 * they need upstream, 0 for the others (keep has s->nstages entries). With p
 * (planned for s), tasks of the other stages that would run are skipped
 * instead (WHY_UNTIL), counted in p->held. -1 with err for a name that is
 * no stage of s. */
int plan_until(struct plan *p, const struct spec *s, const char *list, unsigned char *keep,
	       struct error *err);

const char *plan_action_name(enum plan_action a);
/* The Slurm jobs that tasks resubmitted now must wait for, for one stage:
 * "36:40_0:40_2" (afterok ids). A whole array when none of its elements
 * failed or is cancelled now, else its queued elements one by one: afterok
 * on an array with a failed element would never be satisfied. */
int plan_waits(const struct plan *p, int stage, struct buf *ids);
/* One line saying why, e.g. "failed: exit 3 on attempt 2". Reads markers again
 * for the details. */
void plan_explain(const struct plan *p, const struct run *r, int stage, int task, struct buf *out);

#endif
