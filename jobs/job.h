/* job: what an executor is asked to run, independent of how the pipeline was
 * written: stages of tasks with resources and dependencies, each task run as
 * `cairn exec RUN STAGE TASK`. Executors (local, slurm) implement job_ops. */
#ifndef JOBS_JOB_H
#define JOBS_JOB_H

#include <stddef.h>

#include "core/error.h"

/* Resources a task asks for. */
struct job_res {
	int cpus;
	long mem_mb;       /* 0 = not set; with mem_max_mb, the first attempt's */
	long mem_max_mb;   /* mem = 1G..8G: the most a retry after oom may ask; 0 = no range */
	long time_s;       /* 0 = not set; with time_max_s, the first attempt's */
	long time_max_s;   /* time = 1:00:00..8:00:00: the most a retry after a timeout may get */
	int gpus;
	int ranks;         /* MPI ranks; 1 = not an MPI stage */
	int retries;
	int throttle;      /* at most this many tasks of the stage at once; 0 = no limit */
	int group;         /* Slurm: tasks one array element runs, one after another; 0, 1 = one */
	char *retry_on;    /* "timeout,node_fail,exit:75"; NULL = any failure but cancel */
	char *partition, *account, *qos, *sbatch_args;
};

struct job_dep {
	int stage;      /* index into job_graph.stages */
	int one_to_one; /* task i waits for task i only */
};

struct job_stage {
	const char *name;
	int ntasks;
	const unsigned char *todo; /* todo[i] != 0: run task i; others count as done */
	const struct job_dep *deps;
	int ndeps;
	const struct job_res *res;
	const struct job_limits *limits; /* per task: what its next attempt asks
					    (job_next_limits); NULL: res's for every task */
};

struct job_graph {
	const char *run_dir;
	const char *name;
	const char *cairn;  /* path of the cairn binary that runs `cairn exec` */
	const struct job_stage *stages;
	int nstages;
	const int *order;   /* stage indices, upstream first */
	/* Optional: run a task in a forked child of this process instead of
	 * exec'ing `cairn exec` (the same code, without a new program, its
	 * dynamic loading and a spec parse per task). Returns the exit code. */
	int (*run_task)(void *ctx, int stage, int task);
	void *run_ctx;
};

/* Counts an executor reports while it works and when it ends. */
struct job_counts {
	long long todo, done, failed, cancelled, running, skipped;
};

typedef void (*job_progress_fn)(void *ctx, const struct job_counts *c);

struct job_opts {
	int jobs;             /* local: concurrent slots */
	char **gpu_ids;       /* local: GPUs tasks may be given (CUDA_VISIBLE_DEVICES names) */
	int ngpus;
	long mem_mb;          /* local: memory the running tasks may ask at once; 0: no limit */
	job_progress_fn progress;
	void *progress_ctx;
};

/* Does a failure of this kind (and exit code) allow a retry under retry_on? */
int job_retry_allowed(const char *retry_on, const char *kind, int exit_code);

/* The mem and time of one attempt of a task; 0 = none. */
struct job_limits {
	long mem_mb;
	long time_s;
};

/* Does the stage give mem or time as a range (`mem = 1G..8G`)? */
int job_has_range(const struct job_res *res);

/* What the next attempt of a task asks: res's mem and time; after an
 * attempt that failed "oom", twice the mem that attempt had, at most
 * mem_max_mb; after a "timeout", twice its time, at most time_max_s; else
 * what it had. last: the last attempt's (NULL or 0s when unknown);
 * last_kind: its failure kind, or NULL. */
struct job_limits job_next_limits(const struct job_res *res, const struct job_limits *last,
				  const char *last_kind);

/* The limit that stopped a task (mem after an "oom", time after a
 * "timeout"), as messages say it: what the attempt had, what the next gets,
 * and the stage's range as the spec writes it ("40M..200M", "0:01..0:04"),
 * or, without one, a range to suggest (from its value to 8 times it). */
struct job_limit_view {
	const char *key;   /* "mem", "time" */
	const char *after; /* "an oom", "a timeout" */
	long lo;           /* the stage's value (MiB, s); 0 = not set */
	int range;         /* the stage gives a range */
	int grows;         /* the range gives the next attempt more than this one had */
	char had[32], next[32], spec[64]; /* "40.0 MiB" ("not set"), "80.0 MiB", "40M..200M" */
};

/* Fills v for a failure of kind "oom" or "timeout" and returns 1; 0 for
 * other kinds. last: the attempt's limits (NULL or 0s: the stage's). */
int job_limit_view(const struct job_res *res, const struct job_limits *last, const char *kind,
		   struct job_limit_view *v);

/* What a task used, said alike by cairn exec, why and status --usage:
 * "12.3 MiB" or "1.25 GiB"; "42.0 s" or "1:02:03"; "max RSS 12.3 MiB of
 * mem = 256 MiB" (the "of mem" part when mem_mb is not 0). */
void job_format_kib(long long kib, char *out, size_t size);
/* "512 B", "3.0 KiB", "1.2 MiB", "4.00 GiB", "1.50 TiB": a size on disk. */
void job_format_bytes(long long bytes, char *out, size_t size);
void job_format_seconds(double seconds, char *out, size_t size);
void job_format_rss(long mem_mb, long long kib, char *out, size_t size);

#endif
