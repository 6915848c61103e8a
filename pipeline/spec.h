/* spec: a pipeline written as an INI file (docs/spec.md), parsed with
 * libinih, checked (unknown keys, unknown variables, cycles, missing stages)
 * and expanded per task. Errors read "FILE:LINE: message". */
#ifndef PIPELINE_SPEC_H
#define PIPELINE_SPEC_H

#include "core/buf.h"
#include "core/error.h"
#include "jobs/job.h"


enum { SPEC_MAX_ARRAY = 10000000 };

struct spec_edge {
	int from;          /* upstream stage index */
	int one_to_one;    /* task i needs only upstream task i (${in.X[task]}) */
};

struct spec_stage {
	char *name;
	int line;          /* line of [stage NAME] */
	char *command;
	int command_line;
	int ntasks;        /* array size; 1 when not an array */
	struct job_res res;
	char **after;      /* names as written */
	int nafter;
	int after_line;
	struct spec_edge *in; /* resolved edges, one per `after` name */
	int nin;
	int temp; /* temp = yes: a task's out/ is released (emptied) once
		     every task that reads it is done (pipeline/release.h) */
	int temp_line;
};

/* The longest line a spec may have: libinih as Debian builds it reads at
 * most 199 characters (INI_MAX_LINE 200). */
#define SPEC_LINE_MAX 199
/* The most a value may grow to as its ${param.NAME} expand (1 MiB). */
#define SPEC_VALUE_MAX (1 << 20)

struct spec_kv {
	char *key, *value;
	int line;
};

/* A section as written, kept to write the frozen copy back. */
struct spec_section {
	char *name;
	int line;
	struct spec_kv *kv;
	int nkv;
};

struct spec {
	char *path;
	char *name;
	char *executor;     /* "local" or "slurm" */
	struct spec_kv *params;
	int nparams;
	struct job_res defaults;
	struct job_res slurm; /* the [slurm] section: partition, account, qos, sbatch_args */
	struct spec_stage *stages;
	int nstages;
	int *order;         /* stage indices, upstream first */
	struct spec_section *sections;
	int nsections;
	long long ntasks;   /* all tasks of all stages */
	int frozen;         /* read as a run's spec.ini (spec_load_frozen) */
};

/* Parse and check. `sets` are "NAME=VALUE" overrides of [params] (--set). */
int spec_load(struct spec *s, const char *path, char *const *sets, int nsets, struct error *err);
/* A run's frozen spec.ini: as spec_load, but a param may hold ${X} other
 * than ${param.Y}, kept as text (runs made before params were checked wrote
 * them so, and the shell expanded them); a run must always open. */
int spec_load_frozen(struct spec *s, const char *path, char *const *sets, int nsets,
		     struct error *err);
/* 1 when the spec gives [pipeline] name itself (else it is the file's). */
int spec_names_itself(const struct spec *s);
/* The file the spec's messages name (a frozen copy read at another path). */
int spec_set_path(struct spec *s, const char *path, struct error *err);
void spec_release(struct spec *s);

int spec_stage_index(const struct spec *s, const char *name);
/* ", did you mean 'fetch'?" in buf when name is a typo of a stage's name
 * (core/parse.h's parse_near), "" otherwise: for messages. */
const char *spec_stage_hint(const struct spec *s, const char *name, char *buf, size_t size);
const char *spec_param(const struct spec *s, const char *name);

/* What a task's command can refer to. */
struct spec_ctx {
	const char *run;     /* run folder (absolute) */
	int task;            /* this task's index */
};

/* The output folder of a task: RUN/stages/STAGE/TASK/out */
void spec_task_dir(struct buf *b, const char *run, const char *stage, int task);
void spec_out_dir(struct buf *b, const char *run, const char *stage, int task);
/* Expand the stage's command for one task into b. */
int spec_expand_command(const struct spec *s, int stage, const struct spec_ctx *ctx,
			struct buf *b, struct error *err);

/* Write the spec back as INI (the run's frozen spec.ini): as written, with
 * --set applied and the name filled in; fails, naming the key, on a value a
 * spec file cannot hold (a line too long, " ;", blank or comment lines). */
int spec_write_frozen(const struct spec *s, const char *path, struct error *err);

/* "2G" -> 2048 (MB); "01:30:00" -> 5400 (s). -1 on bad input, -2 above
 * the most a spec takes (SPEC_MEM_MAX_MB, SPEC_TIME_MAX_S: more is a typo,
 * and would overflow the limits' arithmetic further on). */
#define SPEC_MEM_MAX_MB (1024L * 1024 * 1024) /* 1P */
#define SPEC_TIME_MAX_S (365L * 86400)	      /* 365 days */
long spec_parse_mem_mb(const char *v);
long spec_parse_time_s(const char *v);

#endif
