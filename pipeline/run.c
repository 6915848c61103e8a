#include "pipeline/run.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "core/sha256.h"

#define CAIRN_VERSION "0.1.0"

static int random_hex4(char out[5])
{
	unsigned char b[2];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, b, 2) != 2) {
		if (fd >= 0)
			close(fd);
		unsigned v = (unsigned)getpid() ^ (unsigned)(clock_wall() * 1e6);
		b[0] = (unsigned char)v;
		b[1] = (unsigned char)(v >> 8);
	} else {
		close(fd);
	}
	snprintf(out, 5, "%02x%02x", b[0], b[1]);
	return 0;
}

static int spec_hash(const char *path, char hex[65], struct error *err)
{
	return sha256_file(path, hex, NULL, err);
}

int run_check_path(const char *dir, struct error *err)
{
	/* Commands get ${out}, ${in.X} and ${run} as they are, unquoted (${in.X}
	   is a list of folders): a path the shell would split or expand would
	   run another command than the one written. */
	/* (no %: sbatch reads %j, %x, ... in --output as patterns) */
	size_t bad = strspn(dir, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				 "/._-+,:@=~");
	if (dir[bad] == '\0')
		return 0;
	char what[16];
	snprintf(what, sizeof(what), isgraph((unsigned char)dir[bad]) ? "'%c'" : "byte 0x%02x",
		 (unsigned char)dir[bad]);
	return error_set(err,
			 "%s: the run folder's path holds %s, which commands would get unquoted: "
			 "give it a path of letters, digits and / . _ - + , : @ = ~ only (cairn run "
			 "--run-dir, or move the run folder)",
			 dir, dir[bad] == ' ' ? "a space" : what);
}

/* The run folder is made under a temporary name and renamed into place once
 * spec.ini and run.json are in it: a cairn killed while creating it leaves
 * no half-made run at the path it prints. */
int run_create(struct run *r, const struct spec *s, const char *dir, const char *executor,
	       struct error *err)
{
	memset(r, 0, sizeof(*r));
	r->lock_fd = -1;
	struct buf path = BUF_INIT, tmp = BUF_INIT, p = BUF_INIT;
	int rc = -1;
	if (dir) {
		buf_adds(&path, dir);
		while (path.len > 1 && path.s[path.len - 1] == '/')
			path.s[--path.len] = '\0';
	} else {
		char stamp[32], hex[5];
		clock_utc(stamp, sizeof(stamp), 1);
		random_hex4(hex);
		buf_addf(&path, "runs/%s-%s-%s", s->name, stamp, hex);
	}
	buf_addf(&tmp, "%s.creating.%ld", path.s, (long)getpid());
	buf_addf(&p, "%s/run.json", path.s);
	if (path.failed || tmp.failed || p.failed) {
		error_set(err, "out of memory");
		goto out;
	}
	if (fs_exists(p.s)) {
		error_set(err,
			  "%s is already a run folder: resume it with `cairn resume %s`, or choose "
			  "another --run-dir",
			  path.s, path.s);
		goto out;
	}
	char cwd[4096];
	if (!getcwd(cwd, sizeof(cwd)))
		snprintf(cwd, sizeof(cwd), ".");
	if (run_check_path(path.s, err) < 0 || (path.s[0] != '/' && run_check_path(cwd, err) < 0) ||
	    fs_mkdir_p(tmp.s, err) < 0)
		goto out;
	r->dir = fs_abspath(path.s);
	if (!r->dir) {
		error_errno(err, "%s: cannot resolve the run folder", path.s);
		goto out;
	}
	if (run_check_path(r->dir, err) < 0)
		goto out;
	char hash[65], created[32];
	clock_utc(created, sizeof(created), 0);
	buf_reset(&p);
	buf_addf(&p, "%s/spec.ini", tmp.s);
	/* read back before the folder exists under its name: a frozen copy that
	   does not load would leave a run folder nothing can open */
	if (p.failed || spec_write_frozen(s, p.s, err) < 0 || spec_hash(p.s, hash, err) < 0 ||
	    spec_load_frozen(&r->spec, p.s, NULL, 0, err) < 0)
		goto out;
	r->info = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[]}", "cairn_version",
			    CAIRN_VERSION, "name", s->name, "spec_source", s->path, "spec_sha256",
			    hash, "executor", executor, "created", created, "workdir", cwd, "jobs");
	buf_reset(&p);
	buf_addf(&p, "%s/run.json", tmp.s);
	if (!r->info || p.failed) {
		error_set(err, "out of memory");
		goto out;
	}
	if (jsonio_write_atomic(p.s, r->info, err) < 0)
		goto out;
	/* rename() replaces an empty folder (a --run-dir made beforehand) but
	 * never one with files in it. */
	if (rename(tmp.s, path.s) < 0) {
		error_errno(err, "%s: cannot create the run folder", path.s);
		goto out;
	}
	buf_reset(&p);
	buf_addf(&p, "%s/spec.ini", r->dir);
	if (spec_set_path(&r->spec, p.s, err) < 0)
		goto out;
	run_event(r->dir, "created run %s (%lld tasks, executor %s)", s->name, s->ntasks, executor);
	rc = 0;
out:
	if (rc < 0 && tmp.s && fs_is_dir(tmp.s)) {
		struct error e2;
		fs_rm_rf(tmp.s, &e2);
	}
	buf_release(&path);
	buf_release(&tmp);
	buf_release(&p);
	return rc;
}

const char *run_executor(const struct run *r)
{
	return jsonio_str(r->info, "executor", "local");
}

int run_is_slurm(const struct run *r)
{
	return !strcmp(run_executor(r), "slurm");
}

int run_save_info(struct run *r, struct error *err)
{
	struct buf p = BUF_INIT;
	buf_addf(&p, "%s/run.json", r->dir);
	int rc = p.failed ? error_set(err, "out of memory") : jsonio_write_atomic(p.s, r->info, err);
	buf_release(&p);
	return rc;
}

char *run_spec_source(const struct run *r)
{
	const char *spec = jsonio_str(r->info, "spec_source", NULL);
	const char *wd = jsonio_str(r->info, "workdir", NULL);
	if (!spec)
		return mem_strdup("SPEC");
	char *here = fs_abspath(".");
	int rel = spec[0] != '/' && wd && here && strcmp(wd, here) != 0;
	mem_free(here);
	if (!rel)
		return mem_strdup(spec);
	struct buf b = BUF_INIT;
	buf_addf(&b, "%s/%s", wd, spec);
	return buf_detach(&b);
}

/* err's message, and what the damaged file was for: "MSG (the run folder
 * is damaged: WHAT)". */
static void damaged(struct error *err, const char *what)
{
	char msg[sizeof(err->msg)];
	snprintf(msg, sizeof(msg), "%s", err->msg);
	error_set(err, "%s (the run folder is damaged: %s)", msg, what);
}

int run_open(struct run *r, const char *dir, struct error *err)
{
	memset(r, 0, sizeof(*r));
	r->lock_fd = -1;
	if (!fs_is_dir(dir))
		return error_set(err, "%s: no such run folder", dir);
	r->dir = fs_abspath(dir);
	if (!r->dir)
		return error_errno(err, "%s", dir);
	struct buf p = BUF_INIT;
	buf_addf(&p, "%s/run.json", r->dir);
	if (!fs_exists(p.s)) {
		error_set(err, "%s: not a cairn run folder (no run.json)", dir);
		buf_release(&p);
		return -1;
	}
	r->info = jsonio_load(p.s, err);
	if (!r->info) {
		damaged(err, "run.json is the run's record (its pipeline, executor and jobs); "
			     "the tasks' outputs are still in stages/STAGE/N/out");
		buf_release(&p);
		return -1;
	}
	buf_reset(&p);
	buf_addf(&p, "%s/spec.ini", r->dir);
	int rc = !p.failed ? spec_load_frozen(&r->spec, p.s, NULL, 0, err) : -1;
	if (rc < 0 && !p.failed) {
		char why[600];
		char *src = run_spec_source(r);
		snprintf(why, sizeof(why),
			 "spec.ini is the run's own copy of its spec: put the pipeline's spec (%s) "
			 "back in its place, with the --set values the run was given, and try again",
			 src ? src : "its spec file");
		mem_free(src);
		damaged(err, why);
	}
	buf_release(&p);
	return rc;
}

void run_release(struct run *r)
{
	run_unlock(r);
	spec_release(&r->spec);
	json_decref(r->info);
	mem_free(r->dir);
	memset(r, 0, sizeof(*r));
	r->lock_fd = -1;
}

int run_replace_spec(struct run *r, const char *spec_path, char *const *sets, int nsets,
		     struct error *err)
{
	struct spec s;
	const char *src = spec_path;
	struct buf frozen = BUF_INIT;
	buf_addf(&frozen, "%s/spec.ini", r->dir);
	if (!src)
		src = frozen.s;
	/* the run's own spec.ini (only --set): as frozen, so an old run's
	   params keep opening; an edited spec: checked as any new one */
	if ((spec_path ? spec_load(&s, src, sets, nsets, err)
		       : spec_load_frozen(&s, src, sets, nsets, err)) < 0) {
		spec_release(&s);
		buf_release(&frozen);
		return -1;
	}
	/* a spec without a name of its own takes the run's (the default name
	   from the file name changed once: v1.2.ini was v1, now v1_2) */
	if (!spec_names_itself(&s) && strcmp(s.name, r->spec.name)) {
		char *name = mem_strdup(r->spec.name);
		if (!name) {
			spec_release(&s);
			buf_release(&frozen);
			return error_set(err, "out of memory");
		}
		mem_free(s.name);
		s.name = name;
	}
	if (strcmp(s.name, r->spec.name)) {
		error_set(err, "%s: pipeline '%s' is not this run's pipeline '%s'", src, s.name,
			  r->spec.name);
		spec_release(&s);
		buf_release(&frozen);
		return -1;
	}
	/* written beside, read back, then put in place: the run keeps its
	   spec.ini when the new one cannot be kept */
	struct buf next = BUF_INIT;
	buf_addf(&next, "%s.new", frozen.s);
	struct spec loaded;
	int rc = next.failed ? error_set(err, "out of memory")
			     : spec_write_frozen(&s, next.s, err);
	spec_release(&s);
	if (rc == 0 && spec_load_frozen(&loaded, next.s, NULL, 0, err) < 0) {
		spec_release(&loaded);
		rc = -1;
	}
	if (rc == 0 && (spec_set_path(&loaded, frozen.s, err) < 0 ||
			(rename(next.s, frozen.s) < 0 &&
			 error_errno(err, "%s: cannot replace it", frozen.s) < 0))) {
		spec_release(&loaded);
		rc = -1;
	}
	if (rc == 0) {
		spec_release(&r->spec);
		r->spec = loaded;
	}
	unlink(next.s);
	buf_release(&next);
	char hash[65];
	if (rc == 0 && spec_hash(frozen.s, hash, err) == 0) {
		json_object_set_new(r->info, "spec_sha256", json_string(hash));
		rc = run_save_info(r, err);
	}
	buf_release(&frozen);
	return rc;
}

int run_lock(struct run *r, long *holder, struct error *err)
{
	struct buf p = BUF_INIT;
	buf_addf(&p, "%s/.lock", r->dir);
	if (p.failed)
		return error_set(err, "out of memory");
	int fd = fs_trylock(p.s, 0, err);
	if (fd == FS_LOCK_BUSY) {
		/* the holder writes its pid just after taking the lock: give it a
		   moment rather than report pid 0 */
		*holder = 0;
		for (int tries = 0; tries < 50 && *holder <= 0; tries++) {
			char *text;
			struct error e2;
			if (tries)
				usleep(10000);
			if (fs_read_all(p.s, &text, NULL, &e2) == 0) {
				*holder = atol(text);
				mem_free(text);
			}
		}
		buf_release(&p);
		return 0;
	}
	buf_release(&p);
	if (fd < 0)
		return -1;
	char text[32];
	int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)n, 0) != n) {
		close(fd);
		return error_errno(err, "%s/.lock: write", r->dir);
	}
	r->lock_fd = fd;
	return 1;
}

void run_unlock(struct run *r)
{
	if (r->lock_fd >= 0) {
		if (ftruncate(r->lock_fd, 0) < 0) {
			/* the flock is what counts; a stale pid in the file is harmless */
		}
		close(r->lock_fd);
	}
	r->lock_fd = -1;
}

void run_event(const char *run_dir, const char *fmt, ...)
{
	char line[1024];
	char stamp[32];
	clock_utc(stamp, sizeof(stamp), 0);
	int n = snprintf(line, sizeof(line), "%s ", stamp);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	char path[4096];
	snprintf(path, sizeof(path), "%s/events.log", run_dir);
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	/* After a torn last line (a disk that filled up, an edit by hand), start
	   on a line of its own. */
	struct stat st;
	char last = '\n';
	if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 &&
	    last != '\n') {
		ssize_t w0 = write(fd, "\n", 1);
		(void)w0;
	}
	/* One write() with O_APPEND: lines from concurrent tasks do not interleave. */
	ssize_t w = write(fd, line, (size_t)n);
	(void)w;
	close(fd);
}
