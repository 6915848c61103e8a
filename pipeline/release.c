#include "pipeline/release.h"

#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/jsonio.h"

static int task_has(const char *run, const char *stage, int task, const char *name)
{
	struct buf p = BUF_INIT;
	task_path(&p, run, stage, task, name);
	int yes = !p.failed && fs_exists(p.s);
	buf_release(&p);
	return yes;
}

int release_done(const char *run, const char *stage, int task)
{
	return task_has(run, stage, task, TASK_RELEASED_FILE);
}

/* Done as a reader: done.json, and no run or resume about to run it again. */
static int reader_done(const char *run, const char *stage, int task)
{
	return task_has(run, stage, task, "done.json") &&
	       !task_has(run, stage, task, TASK_PENDING_FILE);
}

/* Are the readers of all of stage u (${in.U}, or after = U alone) done?
 * From the last task down: arrays mostly end in order, so a reader that
 * is not done yet is most often found at once. */
static int whole_readers_done(const struct spec *s, const char *run, int u)
{
	for (int j = 0; j < s->nstages; j++)
		for (int e = 0; e < s->stages[j].nin; e++)
			if (s->stages[j].in[e].from == u && !s->stages[j].in[e].one_to_one)
				for (int t = s->stages[j].ntasks; t-- > 0;)
					if (!reader_done(run, s->stages[j].name, t))
						return 0;
	return 1;
}

/* Are the one-to-one readers of task t of stage u (${in.U[task]}) done? */
static int task_readers_done(const struct spec *s, const char *run, int u, int t)
{
	for (int j = 0; j < s->nstages; j++)
		for (int e = 0; e < s->stages[j].nin; e++)
			if (s->stages[j].in[e].from == u && s->stages[j].in[e].one_to_one &&
			    !reader_done(run, s->stages[j].name, t))
				return 0;
	return 1;
}

/* Release task t of stage u, under its lock (a wrapper running it again
 * holds that: then not now). 1 released, 0 not (running, not done, done
 * already, or a one-to-one reader not done), -1 with err. A reader that a
 * resume starts again between the look at its done.json and this release
 * finds its input released and fails saying so (cmd_exec.c); the next
 * resume runs the input first. */
static int release_one(const struct run *r, int u, int t, const char *by, struct error *err)
{
	const char *name = r->spec.stages[u].name;
	struct buf p = BUF_INIT;
	task_path(&p, r->dir, name, t, ".lock");
	int lock = p.failed ? error_set(err, "out of memory") : fs_trylock(p.s, 0, err);
	if (lock < 0) {
		buf_release(&p);
		return lock == FS_LOCK_BUSY ? 0 : -1;
	}
	int rc = 0;
	json_t *done = NULL, *mark = NULL;
	if (release_done(r->dir, name, t) || !task_readers_done(&r->spec, r->dir, u, t))
		goto out;
	buf_reset(&p);
	task_path(&p, r->dir, name, t, "done.json");
	struct error e2;
	if (!(done = jsonio_load(p.s, &e2)))
		goto out; /* not done (any more): nothing to release */
	long long files = 0, bytes = 0;
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(done, "manifest"), i, f)
	{
		files++;
		bytes += jsonio_int(f, "bytes", 0);
	}
	char now[32];
	clock_utc(now, sizeof(now), 0);
	mark = json_pack("{s:s, s:s, s:I, s:I, s:s}", "released", now, "by", by, "files",
			 (json_int_t)files, "bytes", (json_int_t)bytes, "manifest_sha256",
			 jsonio_str(done, "manifest_sha256", ""));
	buf_reset(&p);
	task_path(&p, r->dir, name, t, TASK_RELEASED_FILE);
	/* The mark first: a crash while out/ empties leaves a task that is
	 * released, never one whose half-gone outputs count as its result. */
	if (!mark || p.failed) {
		rc = error_set(err, "out of memory");
		goto out;
	}
	if (jsonio_write_replace(p.s, mark, err) < 0) {
		rc = -1;
		goto out;
	}
	buf_reset(&p);
	task_path(&p, r->dir, name, t, "out");
	if (fs_rm_rf(p.s, err) < 0 || fs_mkdir_p(p.s, err) < 0) {
		rc = -1;
		goto out;
	}
	run_event(r->dir, "released %s/%d: %lld file%s, %lld bytes (its readers are done; by %s)",
		  name, t, files, files == 1 ? "" : "s", bytes, by);
	rc = 1;
out:
	json_decref(done);
	json_decref(mark);
	close(lock);
	buf_release(&p);
	return rc;
}

int release_inputs(const struct run *r, int stage, int task, struct error *err)
{
	const struct spec *s = &r->spec;
	const struct spec_stage *st = &s->stages[stage];
	char by[160];
	snprintf(by, sizeof(by), "%s/%d", st->name, task);
	int n = 0;
	for (int e = 0; e < st->nin; e++) {
		int u = st->in[e].from;
		if (!s->stages[u].temp || !whole_readers_done(s, r->dir, u))
			continue;
		int first = st->in[e].one_to_one ? task : 0;
		int last = st->in[e].one_to_one ? task : s->stages[u].ntasks - 1;
		for (int t = first; t <= last; t++) {
			int rc = release_one(r, u, t, by, err);
			if (rc < 0)
				return -1;
			n += rc;
		}
	}
	return n;
}

long long release_read(const struct run *r, int stage, int task, char *first, size_t size)
{
	const struct spec *s = &r->spec;
	const struct spec_stage *st = &s->stages[stage];
	long long n = 0;
	for (int e = 0; e < st->nin; e++) {
		int u = st->in[e].from;
		if (!s->stages[u].temp)
			continue;
		int from = st->in[e].one_to_one ? task : 0;
		int to = st->in[e].one_to_one ? task : s->stages[u].ntasks - 1;
		for (int t = from; t <= to; t++)
			if (release_done(r->dir, s->stages[u].name, t) && !n++)
				snprintf(first, size, "%s/%d", s->stages[u].name, t);
	}
	return n;
}

/* An empty file NAME in stage/task's folder. */
static int touch(const struct run *r, const char *stage, int task, const char *name,
		 struct error *err)
{
	struct buf path = BUF_INIT;
	task_path(&path, r->dir, stage, task, name);
	int rc =
	    path.failed ? error_set(err, "out of memory") : fs_write_atomic(path.s, "", 0, err);
	buf_release(&path);
	return rc;
}

int release_mark(const struct run *r, const struct plan *p, struct error *err)
{
	const struct spec *s = &r->spec;
	int rc = 0;
	for (int i = 0; rc == 0 && i < s->nstages; i++) {
		const struct spec_stage *st = &s->stages[i];
		int reads_temp = 0;
		for (int e = 0; e < st->nin; e++)
			reads_temp |= s->stages[st->in[e].from].temp;
		const struct plan_stage *ps = &p->stages[i];
		for (int t = 0; rc == 0 && t < ps->ntasks; t++) {
			if (ps->state[t] != TASK_DONE)
				continue;
			if (ps->action[t] == PLAN_SKIP && reads_temp) {
				/* a mark of a run or resume that stopped before this
				 * task started: its inputs would stay for ever */
				struct buf path = BUF_INIT;
				task_path(&path, r->dir, st->name, t, TASK_PENDING_FILE);
				if (!path.failed)
					unlink(path.s);
				buf_release(&path);
			}
			if (ps->action[t] != PLAN_RUN)
				continue;
			if (ps->reason[t] == WHY_NEEDED)
				rc = touch(r, st->name, t, "rerun", err);
			if (rc == 0 && reads_temp)
				rc = touch(r, st->name, t, TASK_PENDING_FILE, err);
		}
	}
	return rc;
}

int release_sweep(const struct run *r, struct error *err)
{
	const struct spec *s = &r->spec;
	int n = 0;
	for (int u = 0; u < s->nstages; u++) {
		const char *name = s->stages[u].name;
		if (!s->stages[u].temp || !whole_readers_done(s, r->dir, u))
			continue;
		for (int t = 0; t < s->stages[u].ntasks; t++) {
			if (!task_has(r->dir, name, t, "done.json") ||
			    release_done(r->dir, name, t) || !task_readers_done(s, r->dir, u, t))
				continue;
			int rc = release_one(r, u, t, "resume", err);
			if (rc < 0)
				return -1;
			n += rc;
		}
	}
	return n;
}

long long release_bytes(const char *run, const char *stage, int task, long long *files)
{
	struct buf p = BUF_INIT;
	struct error err;
	task_path(&p, run, stage, task, TASK_RELEASED_FILE);
	json_t *mark = p.failed ? NULL : jsonio_load(p.s, &err);
	buf_release(&p);
	long long bytes = jsonio_int(mark, "bytes", 0);
	if (files)
		*files = jsonio_int(mark, "files", 0);
	json_decref(mark);
	return bytes;
}
