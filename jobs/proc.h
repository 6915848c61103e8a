/* proc: start a command in its own process group with its output going to a
 * log, wait for it with resource usage, and pass a stop request on to the
 * whole group (SIGTERM, then SIGKILL after a grace period). */
#ifndef JOBS_PROC_H
#define JOBS_PROC_H

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "core/error.h"

/* Start argv (searched in PATH) in cwd (NULL = here) with stdout and stderr
 * on out_fd and stdin from /dev/null, in a new process group. */
int proc_spawn(pid_t *pid, char *const argv[], const char *cwd, int out_fd, struct error *err);

/* What proc_wait enforces on a command's process group, and what it saw. */
struct proc_limits {
	long time_s;  /* > 0: SIGTERM after this many seconds, SIGKILL `grace` later */
	long mem_kb;  /* > 0: SIGKILL once the RSS of the task's processes together
			 (proc_task_rss_kb) is above it, polled each second (as Slurm's
			 OverMemoryKill) */
	int timed_out; /* out: time_s was reached */
	long over_kb;  /* out: the group's RSS when it was stopped for mem, or 0 */
	long peak_kb;  /* out: the largest RSS of them seen (with mem_kb) */
};

/* Wait for pid. While waiting, once *stop becomes non-zero (or lim->time_s
 * has passed) the process group gets SIGTERM, and SIGKILL `grace` seconds
 * later; over lim->mem_kb, SIGKILL at once. lim may be NULL. When pid has
 * ended, what is left of its group gets SIGKILL, as Slurm ends a step's
 * processes with the step. *status as from waitpid. Returns how many
 * processes were left and ended (those reaped here: see
 * proc_adopt_orphans), or -1. */
int proc_wait(pid_t pid, int *status, struct rusage *ru, volatile sig_atomic_t *stop, int grace,
	      struct proc_limits *lim, struct error *err);

/* How many processes of this process's memory cgroup the kernel's OOM
 * killer has killed so far: `oom_kill` of memory.events (cgroup v2) or of
 * memory.oom_control (v1); -1 when there is no such file to read. A task
 * killed by SIGKILL while it went up was killed for its cgroup's memory
 * limit (Slurm's task/cgroup), or the machine's. */
long proc_oom_kills(void);

/* The resident memory (KiB, from /proc/PID/stat) of a task's processes
 * together: those of process group pgid and their descendants in other
 * groups (mpirun gives each MPI rank its own); 0 when none is left. */
long proc_task_rss_kb(pid_t pgid);

/* Make this process the reaper of its descendants' orphans, so that
 * proc_wait can reap (and count) what a command left behind when its group
 * is ended. Linux only (PR_SET_CHILD_SUBREAPER). */
void proc_adopt_orphans(void);

/* Install handlers for SIGINT, SIGTERM, SIGHUP (and SIGUSR1, sent by Slurm
 * before a time limit when asked) that set *flag to the signal number. */
void proc_catch_stop(volatile sig_atomic_t *flag);

#endif
