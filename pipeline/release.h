/* release: the outputs of a temp stage's task (its out/) emptied once every
 * task that reads them is done, so that country-scale intermediates (raw
 * tiles, packed shards) do not outlive their use. No process watches the
 * run: the wrapper of the last reader to finish releases (cairn exec, on
 * the compute node). The task stays done: its done.json and manifest stay,
 * so its readers' keys do not change; released.json says when and how much
 * went. A reader that must run again later pulls it back: the plan runs the
 * released task first (plan.h, WHY_NEEDED). */
#ifndef PIPELINE_RELEASE_H
#define PIPELINE_RELEASE_H

#include "core/error.h"
#include "pipeline/plan.h"
#include "pipeline/run.h"

/* In a released task's folder: {"released", "by", "files", "bytes",
 * "manifest_sha256"}. Written before out/ is emptied. */
#define TASK_RELEASED_FILE "released.json"
/* In a done task's folder: run or resume planned it again, and its
 * done.json is the earlier run's until its wrapper starts: as a reader it
 * does not count as done (the inputs it will read stay). */
#define TASK_PENDING_FILE "pending"

/* Has stage/task's out/ been released? */
int release_done(const char *run, const char *stage, int task);

/* Called by the wrapper of stage/task once it is done: release each task
 * of a temp stage it reads whose readers are now all done. Returns how many
 * it released, -1 with err (what was released stays released). */
int release_inputs(const struct run *r, int stage, int task, struct error *err);

/* How many of the tasks stage/task reads are released, the first as
 * "STAGE/TASK" in first (size bytes): a task about to run needs none. */
long long release_read(const struct run *r, int stage, int task, char *first, size_t size);

/* Before run or resume starts what the plan runs: a `pending` file for each
 * done task that will run again and reads a temp stage (and none for one
 * that will not, left by a run stopped early), and a `rerun` file
 * for each released task needed again (WHY_NEEDED: its wrapper runs it even
 * though its key is unchanged; a released task that runs only because an
 * input runs again stays released when its key comes out the same). */
int release_mark(const struct run *r, const struct plan *p, struct error *err);

/* At resume, after release_mark: release what the wrappers left (a job
 * stopped while it released, a run stopped before a marked reader ran).
 * Returns how many it released, -1 with err. */
int release_sweep(const struct run *r, struct error *err);

/* Bytes and files a released task freed, from its released.json (0 when
 * not released or unreadable). */
long long release_bytes(const char *run, const char *stage, int task, long long *files);

#endif
