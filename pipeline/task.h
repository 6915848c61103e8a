/* task: one task's folder and markers (started.json, done.json, failed.json),
 * the manifest of its out/ folder, and its task key: a hash of the resolved
 * command, the resources that change results, and its inputs' manifests.
 * docs/run-folder.md describes the files. */
#ifndef PIPELINE_TASK_H
#define PIPELINE_TASK_H

/* In a task folder: `cairn cancel RUN STAGE/TASK` of a task not yet started
 * by the cairn that drives the run ({"driver_pid": N}); its wrapper, started
 * by that cairn, writes failed.json (kind cancelled) instead of running. */
#define TASK_CANCEL_FILE "cancel"

#include <jansson.h>

#include "core/buf.h"
#include "core/error.h"
#include "pipeline/spec.h"

enum task_state {
	TASK_PENDING,   /* never started (or started markers removed) */
	TASK_RUNNING,   /* started.json, no end marker, process alive or job queued */
	TASK_DONE,      /* done.json */
	TASK_FAILED,    /* failed.json with a kind other than cancelled, or lost */
	TASK_CANCELLED, /* failed.json with kind cancelled */
};

const char *task_state_name(enum task_state s);

/* What the markers say, read cheaply (stat first, JSON only when needed). */
struct task_info {
	enum task_state state;
	int attempt;
	int exit_code;     /* -1 when killed by a signal */
	int signal;
	char kind[16];     /* failure kind: exit, signal, oom, timeout, preempted,
			      node_fail, cancelled, dependency, lost */
	long pid;          /* of the cairn exec wrapper */
	long long pid_start; /* its start time, task_proc_start() */
	char host[128];
	char job[32];      /* Slurm job id "123_4" or "" */
	int restarts;      /* the job's restart count when that attempt began */
	char message[256]; /* failed.json's message: what the wrapper saw, or "" */
	char started[32];
	int queued;           /* the scheduler still holds it (pending or running) */
	char sched_state[24]; /* what the scheduler says, when asked (sched.h) */
	char sched_reason[64];
	int stuck;            /* queued with a reason that never clears by itself */
	int in_group;         /* pending in a running job of `group` tasks, not reached yet: the group */
	int group;	      /* tasks per Slurm job of its latest submission (sched.h), or 0 */
	long mem_mb;          /* the mem its latest attempt had (MB), 0 when not said */
	long time_s;          /* and its time limit (s), 0 when not said */
};
/* A failed task's kind as people say it: "exit 3", "signal 9", "timeout". */
void task_kind_label(const struct task_info *ti, char *out, size_t size);

/* The memory a task's marker (done.json, failed.json) says it held: with
 * the mem watch, its processes together at most (rss_sum_kb), else its
 * largest process's max RSS (max_rss_kb); 0 when not said. */
long long task_rss_kb(const json_t *marker);

/* Read the markers of a task. With check_alive, a task that started on this
 * host and whose wrapper process is gone is reported FAILED with kind lost. */
int task_read(const char *run, const char *stage, int task, int check_alive,
	      struct task_info *ti, struct error *err);

/* The manifest of a folder: [{path, bytes, sha256, mtime_ns}] sorted by path,
 * and a digest over (path, bytes, sha256) of all entries. */
int task_manifest_build(const char *dir, json_t **manifest, char digest[65], struct error *err);
/* Compare a folder with a manifest without hashing (size, mtime and the set
 * of files), or with hashing when `full`. Returns 0 if it matches, 1 if not
 * (why says what differs; a manifest that is not a list, from a damaged
 * done.json, is 1 too: the task runs again), -1 on error. */
int task_manifest_check(const char *dir, const json_t *manifest, int full, struct buf *why,
			struct error *err);

/* The key of a task, computed from the spec and its inputs' done.json. Fails
 * if an input task is not done. `parts` (optional) gets
 * {"command": sha, "resources": "...", "inputs": {"a/3": digest, "b": digest}}.
 * The command is hashed with the run folder's path left out (a name no
 * command expands to in its place), so a run folder moved or copied
 * elsewhere keeps its keys. */
int task_key(const struct spec *s, const char *run, int stage, int task, char key[65],
	     json_t **parts, struct error *err);

/* Where task_key_with gets an upstream task's manifest digest from. */
typedef int (*task_digest_fn)(void *ctx, int stage, int task, char digest[65], struct error *err);
/* task_key with upstream digests from `fn` (a planner's cache) instead of
 * reading done.json files. */
int task_key_with(const struct spec *s, const char *run, int stage, int task, task_digest_fn fn,
		  void *ctx, char key[65], json_t **parts, struct error *err);
/* sha256 of the task's command as its key hashes it (legacy: as cairn-key-1
 * did, with the run's path in it). */
int task_command_sha(const struct spec *s, const char *run, int stage, int task, int legacy,
		     char sha[65], struct error *err);
/* Whether a done.json's key `stored` is the task's key `now`, or the key
 * cairn wrote before keys left out the run folder (cairn-key-1: the command
 * with the run's path in it), so that runs made then are not rerun whole.
 * fn NULL: the inputs' digests from their done.json, as task_key. */
int task_key_same(const struct spec *s, const char *run, int stage, int task, task_digest_fn fn,
		  void *ctx, const char *stored, const char *now);

/* The task's lock (RUN/stages/S/T/.lock), held by the wrapper that runs it
 * and inherited by the task's processes, so a task is never run twice at
 * once. Returns the open fd, TASK_LOCK_BUSY if someone holds it, -1 on error. */
enum { TASK_LOCK_BUSY = -2 };
int task_lock(const char *run, const char *stage, int task, struct error *err);
/* cairn exec's exit status when another wrapper kept the task's lock: it ran
 * nothing and wrote no marker (Slurm shows its job FAILED, ExitCode 75:0). */
enum { TASK_EXIT_BUSY = 75 };
/* A process on this machine with the task's lock file open (any fd: the
 * lock is inherited), and its name in comm; 0 when none is found (or none
 * that this user may look into). Scans /proc: for messages, not a loop. */
long task_lock_holder(const char *run, const char *stage, int task, char *comm, size_t size);
/* Is the task's lock held by a process on this machine? */
int task_lock_held(const char *run, const char *stage, int task);

/* A process's start time in clock ticks since boot (/proc/PID/stat field 22),
 * 0 if unknown: with the pid it names a process even after pid reuse. */
long long task_proc_start(long pid);

/* Path helpers: RUN/stages/STAGE/TASK/NAME */
void task_path(struct buf *b, const char *run, const char *stage, int task, const char *name);

#endif
