/* slurm_cli: the Slurm commands (sbatch, squeue, scontrol, scancel) as C calls.
 * Each call runs the real command (fork/exec, no shell) with a time limit,
 * captures its output and parses it; sbatch is retried with backoff on
 * transient errors. Every command run is counted, so callers can report how
 * many scheduler calls they made. Parsing follows slurm-wlm 22.05 output. */
#ifndef JOBS_SLURM_CLI_H
#define JOBS_SLURM_CLI_H

#include <stddef.h>

#include "core/error.h"

/* ---- commands, counters, settings ------------------------------------- */

enum slurm_cmd { SLURM_SBATCH, SLURM_SQUEUE, SLURM_SCONTROL, SLURM_SCANCEL, SLURM_NCMDS };

const char *slurm_cmd_name(enum slurm_cmd cmd); /* "sbatch", ... */
/* Commands started since the program began (or the last reset), retries included. */
long slurm_calls(enum slurm_cmd cmd);
void slurm_calls_reset(void);

/* Where the binaries are: $CAIRN_SLURM_BIN/NAME when that variable is set and
 * not empty, otherwise NAME looked up on PATH. Read at every call. */

/* Each command is killed (SIGKILL) after this many seconds; default 60.
 * squeue, `scontrol show job` and scancel fail sooner when Slurm cannot be
 * reached: when one has not answered after 1 s, one `scontrol ping` is
 * asked, and if it says every slurmctld is DOWN the command is stopped (its
 * own retries would take MessageTimeout seconds or twice that); a SLURM_CONF
 * that names no file fails at once. A slow controller that answers the
 * ping is waited for, up to this limit. */
void slurm_set_timeout(double seconds);
/* sbatch retry policy: at most `attempts` runs in all (>= 1), waiting
 * first_delay, 2*first_delay, 4*first_delay, ... capped at max_delay seconds
 * between them. Default 6 attempts, 1 s, 30 s. */
void slurm_set_retry(int attempts, double first_delay, double max_delay);

/* ---- submission ----------------------------------------------------- */

/* sbatch --parsable EXTRA... SCRIPT. extra is NULL-terminated (or NULL) and
 * holds whole arguments ("--array=0-9%2", "--job-name=x"). On success sets
 * *jobid. Transient failures (socket timed out, "Resource temporarily
 * unavailable", "try again", controller not responding or unreachable, the
 * command timing out) are retried per slurm_set_retry(); anything else
 * (invalid partition, bad array spec, ...) fails at once with sbatch's message.
 * Caution: after a time-out the controller may have accepted the job anyway;
 * a caller that must never submit twice should give jobs a unique --job-name
 * and look for it with squeue before it resubmits. */
int slurm_sbatch(const char *script, const char *const *extra, long *jobid, struct error *err);

/* Job id from sbatch output: "Submitted batch job 123", "123" or
 * "123;cluster" (--parsable). 0 ok, -1 not recognised. */
int slurm_parse_sbatch(const char *out, long *jobid);

/* True when sbatch's stderr says the failure may go away if retried. */
int slurm_is_transient(const char *stderr_text);

/* True when an error of squeue, scontrol or scancel (a message of this
 * module) says Slurm could not be reached at all: slurmctld down (`scontrol
 * ping`), SLURM_CONF naming no file, or unset without DNS SRV records.
 * Then the command did nothing. (A time-out is not one of them: a slow
 * controller may have acted on it.) */
int slurm_is_unreachable(const char *message);

/* ---- one squeue call for many jobs ------------------------------------ */

/* One line of squeue: a plain job or one array element. */
struct slurm_job {
	long job_id;       /* the element's own id (== array_job_id until it has one) */
	long array_job_id; /* the id sbatch printed; == job_id for a plain job */
	int array_task;    /* -1 for a plain job */
	char state[24];    /* PENDING RUNNING COMPLETED FAILED TIMEOUT CANCELLED NODE_FAIL ... */
	char reason[64];   /* None, Dependency, BeginTime, DependencyNeverSatisfied, ... */
	int exit_code;     /* exit status, 0 when killed by a signal */
	int signal;        /* signal that ended it, 0 if none */
	int restarts;      /* RestartCnt: how many times it was requeued */
	char nodes[128];   /* NodeList, empty while pending */
};

struct slurm_jobs {
	struct slurm_job *v;
	size_t n, cap;
};

void slurm_jobs_init(struct slurm_jobs *jobs);
void slurm_jobs_release(struct slurm_jobs *jobs);
/* Append a copy of job: 0, or -1 out of memory. */
int slurm_jobs_push(struct slurm_jobs *jobs, const struct slurm_job *job);

/* Appends to `out` every job and array element (one per element, also while
 * pending) that Slurm still knows among ids[0..n). Finished jobs stay known
 * for MinJobAge seconds after they end; ids Slurm no longer knows are simply
 * absent. One squeue call (--states=all --array --jobs=a,b,c); more only when
 * the id list exceeds what one argument may hold (~100 KB, ~12,000 ids). */
int slurm_squeue(const long *ids, size_t n, struct slurm_jobs *out, struct error *err);

/* Same for jobs by name (--name=a,b,c), one squeue call: lets a caller find
 * what an interrupted submission already submitted under names it chose. */
int slurm_squeue_names(const char *const *names, size_t n, struct slurm_jobs *out, struct error *err);

/* The squeue -O format slurm_squeue uses, and its line parser
 * (exposed for tests). Returns 0, or -1 with err naming the line. */
extern const char slurm_squeue_format[];
int slurm_parse_squeue_line(const char *line, struct slurm_job *job, struct error *err);

/* ---- scontrol -------------------------------------------------------- */

/* What `scontrol show job -o` says about one job (or array element). */
struct slurm_job_info {
	long job_id;
	long array_job_id; /* 0 when not an array element */
	int array_task;    /* -1 when not an array element */
	char name[128];
	char state[24];  /* JobState */
	char reason[64]; /* Reason */
	int exit_code;   /* ExitCode=N:S, N */
	int signal;      /* ExitCode=N:S, S */
	int restarts;    /* Restarts */
	int requeue;     /* Requeue=1: a node failure requeues it */
	char nodes[128]; /* NodeList */
	char start_time[32], end_time[32], run_time[32], time_limit[32];
	char std_out[512];
};

/* scontrol show job -o ID, where ID is "123" or "123_4". Returns 0 when
 * Slurm knows the job, 1 when it does not (never existed or purged after
 * MinJobAge), -1 on error. An array job id gives its first element. */
int slurm_show_job(const char *id, struct slurm_job_info *info, struct error *err);
/* Parser for one `scontrol show job -o` line (exposed for tests). */
int slurm_parse_show_job(const char *line, struct slurm_job_info *info, struct error *err);

/* From `scontrol show config` (one scontrol call). */
struct slurm_config {
	long max_array_size; /* MaxArraySize: array indices must be < this */
	long min_job_age;    /* MinJobAge in seconds: how long finished jobs stay visible */
	char mpi_default[32];
	char version[32];
};
int slurm_read_config(struct slurm_config *cfg, struct error *err);
int slurm_parse_config(const char *text, struct slurm_config *cfg, struct error *err);
/* MaxArraySize alone (one scontrol call). */
int slurm_max_array_size(long *size, struct error *err);

/* scontrol requeue ID: the job goes back to PENDING (Restarts + 1) and runs
 * again after cred_expire + 1 s; its afterok dependents keep waiting. Called
 * from inside the job this kills the running attempt at once. Note that
 * Slurm also requeues a job that already COMPLETED. */
int slurm_requeue(const char *id, struct error *err);

/* ---- scancel --------------------------------------------------------- */

/* scancel ids[0..n) in one call (more only beyond ~100 KB of ids). Jobs that
 * already ended or that Slurm no longer knows are not an error. */
int slurm_cancel(const long *ids, size_t n, struct error *err);
/* The same for ids given as text, apart by spaces: "12 13_4 13_7". */
int slurm_cancel_text(const char *ids, struct error *err);

/* ---- failure kinds --------------------------------------------------- */

enum slurm_failure {
	SLURM_FAIL_EXIT,       /* nonzero exit status */
	SLURM_FAIL_SIGNAL,     /* killed by a signal */
	SLURM_FAIL_OOM,        /* over its memory limit */
	SLURM_FAIL_TIMEOUT,    /* over its time limit */
	SLURM_FAIL_PREEMPTED,  /* preempted by a higher-priority job */
	SLURM_FAIL_NODE_FAIL,  /* its node failed or was set DOWN */
	SLURM_FAIL_CANCELLED,  /* scancel, or the run was cancelled */
	SLURM_FAIL_DEPENDENCY, /* an upstream job failed: dependency never satisfied */
	SLURM_FAIL_LOST,       /* Slurm no longer knows it and it left no marker */
	SLURM_NFAILURES
};

/* Exactly: exit, signal, oom, timeout, preempted, node_fail, cancelled,
 * dependency, lost. */
const char *slurm_failure_name(enum slurm_failure kind);
/* Kind from a name above; -1 when unknown. */
int slurm_failure_from_name(const char *name);

/* The failure kind of a job from its state, reason, exit code and signal, as
 * squeue or scontrol report them. state NULL or "" means Slurm does not know
 * the job: lost. Returns -1 when the state is not a failure (pending,
 * running, completing, completed with exit 0). */
int slurm_failure_kind(const char *state, const char *reason, int exit_code, int signal);

/* Slurm writes why it killed a job into the job's own stderr
 * ("slurmstepd: error: ... exceeded memory limit", "... DUE TO TIME LIMIT ***").
 * Without cgroups an over-memory job ends FAILED with signal 9, not
 * OUT_OF_MEMORY, so this is the only place that says oom. Returns the kind
 * the text shows, or -1. */
int slurm_log_failure_kind(const char *log_text);

/* True for a pending job's Reason that does not clear by itself: the job
 * asks for more than the partition or the cluster has (PartitionConfig,
 * PartitionNodeLimit, PartitionTimeLimit, BadConstraints), names something
 * that does not exist or is not allowed (InvalidAccount, InvalidQOS), needs
 * nodes that are not available (ReqNodeNotAvail, often a node down or
 * drained: it may clear when an admin brings the node back), or is held
 * (JobHeldAdmin, JobHeldUser). */
int slurm_reason_stuck(const char *reason);

/* Why Slurm is stopping a job, from `scontrol show job -o` asked inside the
 * job when its wrapper gets SIGTERM. `restarts` is the job's restart count
 * when this attempt began (SLURM_RESTART_COUNT, 0 when unset). While the
 * job's processes are being killed, JobState says COMPLETING whatever the
 * cause (verified on 22.05), so the cause comes from Reason and Restarts:
 * Restarts above `restarts`: Slurm requeued the job itself (preemption or a
 * node failure; *requeued = 1, the job runs again by itself);
 * Reason=TimeLimit or TIMEOUT: timeout; NODE_FAIL or Reason=NodeDown:
 * node_fail; PREEMPTED: preempted; anything else, scancel and
 * `cairn cancel` among them: cancelled. */
int slurm_stop_kind(const struct slurm_job_info *info, int restarts, int *requeued);

#endif
