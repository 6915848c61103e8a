/* run: the run folder, the single source of truth of a pipeline run
 * (docs/run-folder.md): the frozen spec, run.json, events.log, and one folder
 * per task with the markers `cairn exec` writes. */
#ifndef PIPELINE_RUN_H
#define PIPELINE_RUN_H

#include <jansson.h>

#include "core/error.h"
#include "pipeline/spec.h"

struct run {
	char *dir;        /* absolute path */
	struct spec spec; /* loaded from dir/spec.ini */
	json_t *info;     /* run.json */
	int lock_fd;      /* held while a cairn process drives the run; -1 if not */
};

/* Create a run folder for a loaded spec: `dir` exactly, or a new
 * runs/<name>-<UTC>-<4 hex> when dir is NULL. Writes spec.ini and run.json. */
int run_create(struct run *r, const struct spec *s, const char *dir, const char *executor,
	       struct error *err);
/* Open an existing run folder (reads spec.ini and run.json). */
int run_open(struct run *r, const char *dir, struct error *err);
/* 0 when dir (absolute) can be pasted into a shell command as it is. */
int run_check_path(const char *dir, struct error *err);
void run_release(struct run *r);

/* Replace the frozen spec (resume with an edited spec or new --set values). */
int run_replace_spec(struct run *r, const char *spec_path, char *const *sets, int nsets,
		     struct error *err);
int run_save_info(struct run *r, struct error *err);
/* The run's spec file (run.json's spec_source) as a path from here: it is
 * kept as given to `cairn run`, relative to the folder it ran from
 * ("workdir"). mem_free it; "SPEC" when run.json has none. */
char *run_spec_source(const struct run *r);
/* The executor the run was made with (run.json): "local" or "slurm". */
const char *run_executor(const struct run *r);
int run_is_slurm(const struct run *r);

/* Take the run's lock (flock, released when the process dies). Returns 1 if
 * taken, 0 if another process holds it (its pid in *holder), -1 on error. */
int run_lock(struct run *r, long *holder, struct error *err);
void run_unlock(struct run *r);

/* Append one line to events.log: "<UTC> <what>". Best effort: an events.log
 * that cannot be written never fails a task. */
void run_event(const char *run_dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
