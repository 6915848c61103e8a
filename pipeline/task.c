#include "pipeline/task.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "core/sha256.h"

long long task_rss_kb(const json_t *marker)
{
	long long sum = jsonio_int(marker, "rss_sum_kb", 0), max = jsonio_int(marker, "max_rss_kb", 0);
	return sum > max ? sum : max;
}

void task_kind_label(const struct task_info *ti, char *out, size_t size)
{
	if (!strcmp(ti->kind, "exit"))
		snprintf(out, size, "exit %d", ti->exit_code);
	else if (!strcmp(ti->kind, "signal"))
		snprintf(out, size, "signal %d", ti->signal);
	else
		snprintf(out, size, "%s", ti->kind);
}

const char *task_state_name(enum task_state s)
{
	static const char *names[] = {"pending", "running", "done", "failed", "cancelled"};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

void task_path(struct buf *b, const char *run, const char *stage, int task, const char *name)
{
	buf_addf(b, "%s/stages/%s/%d/%s", run, stage, task, name);
}

long long task_proc_start(long pid)
{
	char path[64], text[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	/* field 2 (comm) may hold spaces: count fields after its closing ')' */
	char *p = strrchr(text, ')');
	if (!p)
		return 0;
	long long v = 0;
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (p)
		v = atoll(p + 1);
	return v;
}

static int proc_alive(long pid, long long start)
{
	if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno == ESRCH))
		return 0;
	/* The pid may have been reused by another process since. */
	return !start || task_proc_start(pid) == start;
}

int task_lock(const char *run, const char *stage, int task, struct error *err)
{
	struct buf p = BUF_INIT;
	task_path(&p, run, stage, task, ".lock");
	if (p.failed)
		return error_set(err, "out of memory");
	/* Inherited: the task's processes keep it, so if the wrapper dies while
	 * its command goes on, the task still counts as running. */
	int fd = fs_trylock(p.s, 1, err);
	buf_release(&p);
	return fd == FS_LOCK_BUSY ? TASK_LOCK_BUSY : fd;
}

long task_lock_holder(const char *run, const char *stage, int task, char *comm, size_t size)
{
	struct buf p = BUF_INIT;
	task_path(&p, run, stage, task, ".lock");
	struct stat lk;
	DIR *proc = opendir("/proc");
	long found = 0;
	if (p.failed || stat(p.s, &lk) < 0 || !proc)
		goto out;
	struct dirent *e;
	while (!found && (e = readdir(proc))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0 || pid == (long)getpid())
			continue;
		char dir[64];
		snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
		DIR *fds = opendir(dir); /* another user's: not ours to see */
		struct dirent *f;
		while (fds && !found && (f = readdir(fds))) {
			char fd[320];
			struct stat st;
			snprintf(fd, sizeof(fd), "%s/%s", dir, f->d_name);
			if (f->d_name[0] != '.' && stat(fd, &st) == 0 && st.st_dev == lk.st_dev &&
			    st.st_ino == lk.st_ino)
				found = pid;
		}
		if (fds)
			closedir(fds);
	}
	if (found) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%ld/comm", found);
		FILE *c = fopen(path, "r");
		if (!c || !fgets(comm, (int)size, c))
			snprintf(comm, size, "?");
		comm[strcspn(comm, "\n")] = '\0';
		if (c)
			fclose(c);
	}
out:
	if (proc)
		closedir(proc);
	buf_release(&p);
	return found;
}

int task_lock_held(const char *run, const char *stage, int task)
{
	struct buf p = BUF_INIT;
	task_path(&p, run, stage, task, ".lock");
	int fd = p.failed ? -1 : open(p.s, O_RDONLY | O_CLOEXEC);
	buf_release(&p);
	if (fd < 0)
		return 0;
	int held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

static void copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

/* RUN/stages/STAGE/TASK/ into dir; returns its length (names are appended
 * in place: status stats three markers of every task, so no formatting
 * per marker). */
static size_t task_dir_path(char *dir, size_t size, const char *run, const char *stage, int task)
{
	int n = snprintf(dir, size, "%s/stages/%s/%d/", run, stage, task);
	return n > 0 && (size_t)n < size - 16 ? (size_t)n : 0;
}

int task_read(const char *run, const char *stage, int task, int check_alive,
	      struct task_info *ti, struct error *err)
{
	memset(ti, 0, sizeof(*ti));
	ti->state = TASK_PENDING;
	char path[4096];
	size_t n = task_dir_path(path, sizeof(path), run, stage, task);
	if (!n)
		return error_set(err, "%s/stages/%s/%d: path too long", run, stage, task);
	struct stat st;
	memcpy(path + n, "done.json", 10);
	if (stat(path, &st) == 0) {
		ti->state = TASK_DONE;
		return 0;
	}
	memcpy(path + n, "failed.json", 12);
	if (stat(path, &st) == 0) {
		struct error bad;
		json_t *j = jsonio_load(path, &bad);
		if (j && !json_is_object(j)) {
			json_decref(j);
			j = NULL;
			error_set(&bad, "%s: not a JSON object", path);
		}
		if (!j) { /* damaged by hand or by the disk: failed, so resume reruns it */
			copy_str(ti->kind, sizeof(ti->kind), "unknown");
			snprintf(ti->message, sizeof(ti->message), "%.200s (resume reruns the task)",
				 bad.msg);
			ti->state = TASK_FAILED;
			return 0;
		}
		copy_str(ti->kind, sizeof(ti->kind), jsonio_str(j, "kind", "exit"));
		copy_str(ti->message, sizeof(ti->message), jsonio_str(j, "message", ""));
		ti->attempt = (int)jsonio_int(j, "attempt", 1);
		ti->exit_code = (int)jsonio_int(j, "exit_code", -1);
		ti->signal = (int)jsonio_int(j, "signal", 0);
		copy_str(ti->host, sizeof(ti->host), jsonio_str(j, "host", ""));
		copy_str(ti->job, sizeof(ti->job), jsonio_str(j, "slurm_job", ""));
		ti->restarts = (int)jsonio_int(j, "slurm_restarts", 0);
		ti->mem_mb = (long)jsonio_int(j, "mem_mb", 0);
		ti->time_s = (long)jsonio_int(j, "time_s", 0);
		ti->state = strcmp(ti->kind, "cancelled") ? TASK_FAILED : TASK_CANCELLED;
		json_decref(j);
		return 0;
	}
	memcpy(path + n, "started.json", 13);
	if (stat(path, &st) < 0)
		return 0;
	json_t *j = jsonio_load(path, err);
	if (!j) /* written with rename: never torn, so this is a real error */
		return -1;
	ti->state = TASK_RUNNING;
	ti->attempt = (int)jsonio_int(j, "attempt", 1);
	ti->pid = (long)jsonio_int(j, "pid", 0);
	ti->pid_start = jsonio_int(j, "pid_start", 0);
	copy_str(ti->host, sizeof(ti->host), jsonio_str(j, "host", ""));
	copy_str(ti->job, sizeof(ti->job), jsonio_str(j, "slurm_job", ""));
	ti->restarts = (int)jsonio_int(j, "slurm_restarts", 0);
	copy_str(ti->started, sizeof(ti->started), jsonio_str(j, "started", ""));
	ti->mem_mb = (long)jsonio_int(j, "mem_mb", 0);
	ti->time_s = (long)jsonio_int(j, "time_s", 0);
	json_decref(j);
	if (check_alive && !ti->job[0]) {
		char host[128] = "";
		gethostname(host, sizeof(host) - 1);
		if (!strcmp(host, ti->host) && !task_lock_held(run, stage, task) &&
		    !proc_alive(ti->pid, ti->pid_start)) {
			ti->state = TASK_FAILED;
			copy_str(ti->kind, sizeof(ti->kind), "lost");
		}
	}
	return 0;
}

/* ---- manifests ---- */

struct entry {
	char *path; /* relative to the folder */
};

struct walk {
	struct entry *e;
	size_t n, cap;
	int outputs; /* the wrapper's hash of what a command made: only files,
			folders and symlinks (a later check lists anything) */
};

static int walk_add(struct walk *w, const char *rel)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;
		struct entry *e = mem_realloc(w->e, cap * sizeof(*e));
		if (!e)
			return -1;
		w->e = e;
		w->cap = cap;
	}
	w->e[w->n].path = mem_strdup(rel);
	if (!w->e[w->n].path)
		return -1;
	w->n++;
	return 0;
}

static void walk_release(struct walk *w)
{
	for (size_t i = 0; i < w->n; i++)
		mem_free(w->e[i].path);
	mem_free(w->e);
	memset(w, 0, sizeof(*w));
}

/* Collect regular files below root/rel (symlinks are listed, not followed). */
static int walk_dir(const char *root, const char *rel, struct walk *w, struct error *err)
{
	struct buf p = BUF_INIT;
	buf_addf(&p, "%s%s%s", root, *rel ? "/" : "", rel);
	DIR *d = opendir(p.s);
	if (!d) {
		error_errno(err, "%s", p.s);
		buf_release(&p);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct buf child = BUF_INIT;
		buf_addf(&child, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		struct buf full = BUF_INIT;
		buf_addf(&full, "%s/%s", root, child.s);
		struct stat st;
		if (child.failed || full.failed)
			rc = error_set(err, "out of memory");
		else if (lstat(full.s, &st) < 0)
			rc = error_errno(err, "%s", full.s);
		else if (S_ISDIR(st.st_mode))
			rc = walk_dir(root, child.s, w, err);
		else if (w->outputs && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
			rc = error_set(err,
				       "out/%s is a %s: a task's outputs are files, folders and "
				       "symlinks (remove it before the command ends)",
				       child.s,
				       S_ISFIFO(st.st_mode)   ? "FIFO"
				       : S_ISSOCK(st.st_mode) ? "socket"
							      : "device file");
		else if (walk_add(w, child.s) < 0)
			rc = error_set(err, "out of memory");
		buf_release(&child);
		buf_release(&full);
	}
	closedir(d);
	buf_release(&p);
	return rc;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static long long mtime_ns(const struct stat *st)
{
	return (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

int task_manifest_build(const char *dir, json_t **manifest, char digest[65], struct error *err)
{
	struct walk w = {0};
	w.outputs = 1;
	*manifest = NULL;
	if (fs_is_dir(dir) && walk_dir(dir, "", &w, err) < 0) {
		walk_release(&w);
		return -1;
	}
	if (w.n > 1)
		qsort(w.e, w.n, sizeof(*w.e), cmp_entry);
	json_t *list = json_array();
	struct sha256 h;
	if (!list || sha256_init(&h, err) < 0) {
		json_decref(list);
		walk_release(&w);
		return list ? -1 : error_set(err, "out of memory");
	}
	int rc = 0;
	for (size_t i = 0; i < w.n && rc == 0; i++) {
		struct buf full = BUF_INIT;
		buf_addf(&full, "%s/%s", dir, w.e[i].path);
		char hex[65];
		uint64_t bytes = 0;
		struct stat st;
		if (full.failed)
			rc = error_set(err, "out of memory");
		else if (lstat(full.s, &st) < 0)
			rc = error_errno(err, "%s", full.s);
		else if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t n = readlink(full.s, target, sizeof(target) - 1);
			if (n < 0)
				rc = error_errno(err, "%s", full.s);
			else
				rc = sha256_buf(target, (size_t)n, hex, err);
			bytes = 0;
		} else {
			rc = sha256_file(full.s, hex, &bytes, err);
		}
		if (rc == 0) {
			json_t *e = json_pack("{s:s, s:I, s:s, s:I}", "path", w.e[i].path, "bytes",
					      (json_int_t)bytes, "sha256", hex, "mtime_ns",
					      (json_int_t)mtime_ns(&st));
			if (!e || json_array_append_new(list, e) < 0)
				rc = error_set(err, "out of memory");
			char line[128];
			int n = snprintf(line, sizeof(line), "\t%llu\t%s\n", (unsigned long long)bytes, hex);
			sha256_update(&h, w.e[i].path, strlen(w.e[i].path));
			sha256_update(&h, line, (size_t)n);
		}
		buf_release(&full);
	}
	walk_release(&w);
	if (rc < 0) {
		sha256_release(&h);
		json_decref(list);
		return -1;
	}
	sha256_final(&h, digest);
	*manifest = list;
	return 0;
}

int task_manifest_check(const char *dir, const json_t *manifest, int full, struct buf *why,
			struct error *err)
{
	if (!json_is_array(manifest)) { /* a damaged marker: its outputs cannot be vouched for */
		buf_adds(why, "its done.json has no manifest (damaged), so its outputs cannot be "
			      "checked");
		return 1;
	}
	size_t i;
	const json_t *e;
	json_array_foreach(manifest, i, e)
	{
		const char *rel = jsonio_str(e, "path", "");
		struct buf p = BUF_INIT;
		buf_addf(&p, "%s/%s", dir, rel);
		struct stat st;
		int bad = 0;
		if (lstat(p.s, &st) < 0) {
			buf_addf(why, "out/%s was deleted", rel);
			bad = 1;
		} else if (!S_ISLNK(st.st_mode) && (long long)st.st_size != jsonio_int(e, "bytes", -1)) {
			buf_addf(why, "out/%s was modified (%lld bytes, manifest says %lld)", rel,
				 (long long)st.st_size, jsonio_int(e, "bytes", -1));
			bad = 1;
		} else if (mtime_ns(&st) != jsonio_int(e, "mtime_ns", -1)) {
			if (!full) {
				buf_addf(why, "out/%s was modified (its time changed)", rel);
				bad = 1;
			}
		}
		if (!bad && full && !S_ISLNK(st.st_mode)) {
			char hex[65];
			if (sha256_file(p.s, hex, NULL, err) < 0) {
				buf_release(&p);
				return -1;
			}
			if (strcmp(hex, jsonio_str(e, "sha256", ""))) {
				buf_addf(why, "out/%s was modified (sha256 differs)", rel);
				bad = 1;
			}
		}
		buf_release(&p);
		if (bad)
			return 1;
	}
	/* A file added to out/ also changes what downstream tasks read. */
	struct walk w = {0};
	if (fs_is_dir(dir) && walk_dir(dir, "", &w, err) < 0) {
		walk_release(&w);
		return -1;
	}
	int extra = w.n != json_array_size(manifest);
	if (extra) {
		if (w.n > 1)
			qsort(w.e, w.n, sizeof(*w.e), cmp_entry);
		for (size_t k = 0; k < w.n; k++) {
			const json_t *m = json_array_get(manifest, k);
			if (!m || strcmp(jsonio_str(m, "path", ""), w.e[k].path)) {
				buf_addf(why, "out/%s was added after the task finished", w.e[k].path);
				break;
			}
		}
	}
	walk_release(&w);
	return extra;
}

/* ---- task keys ---- */

struct file_digests {
	const struct spec *s;
	const char *run;
};

/* Read an upstream task's manifest digest from its done.json. */
static int digest_from_file(void *ctx, int stage, int task, char digest[65], struct error *err)
{
	struct file_digests *fd = ctx;
	const char *name = fd->s->stages[stage].name;
	struct buf p = BUF_INIT;
	task_path(&p, fd->run, name, task, "done.json");
	if (p.failed)
		return error_set(err, "out of memory");
	struct stat st;
	if (stat(p.s, &st) < 0) {
		buf_release(&p);
		return error_set(err, "input %s/%d is not done", name, task);
	}
	json_t *j = jsonio_load(p.s, err);
	buf_release(&p);
	if (!j)
		return -1;
	const char *d = jsonio_str(j, "manifest_sha256", NULL);
	int rc = d && strlen(d) == 64 ? 0
				       : error_set(err, "%s/%d: done.json has no manifest_sha256",
						   name, task);
	if (rc == 0)
		memcpy(digest, d, 65);
	json_decref(j);
	return rc;
}

/* One input as task `task` sees it: the upstream task's digest (one-to-one)
 * or a digest over all upstream tasks' digests. */
static int input_digest(const struct spec *s, const struct spec_edge *edge, int task,
			task_digest_fn fn, void *ctx, char digest[65], struct error *err)
{
	if (edge->one_to_one)
		return fn(ctx, edge->from, task, digest, err);
	struct sha256 h;
	if (sha256_init(&h, err) < 0)
		return -1;
	for (int t = 0; t < s->stages[edge->from].ntasks; t++) {
		char d[65];
		if (fn(ctx, edge->from, t, d, err) < 0) {
			sha256_release(&h);
			return -1;
		}
		sha256_update(&h, d, 64);
	}
	sha256_final(&h, digest);
	return 0;
}

int task_key(const struct spec *s, const char *run, int stage, int task, char key[65],
	     json_t **parts, struct error *err)
{
	struct file_digests fd = {s, run};
	return task_key_with(s, run, stage, task, digest_from_file, &fd, key, parts, err);
}

static int make_key(const struct spec *s, const char *run, int stage, int task, task_digest_fn fn,
		    void *fnctx, int legacy, char key[65], json_t **parts, struct error *err);

int task_key_with(const struct spec *s, const char *run, int stage, int task, task_digest_fn fn,
		  void *fnctx, char key[65], json_t **parts, struct error *err)
{
	return make_key(s, run, stage, task, fn, fnctx, 0, key, parts, err);
}

int task_key_same(const struct spec *s, const char *run, int stage, int task, task_digest_fn fn,
		  void *fnctx, const char *stored, const char *now)
{
	char old[65];
	struct error err;
	struct file_digests fd = {s, run};
	if (!fn)
		fn = digest_from_file, fnctx = &fd;
	return !strcmp(stored, now) ||
	       (make_key(s, run, stage, task, fn, fnctx, 1, old, NULL, &err) == 0 &&
		!strcmp(stored, old));
}

int task_command_sha(const struct spec *s, const char *run, int stage, int task, int legacy,
		     char sha[65], struct error *err)
{
	struct buf cmd = BUF_INIT;
	/* the run folder as a name no command can expand to ("${run}" can:
	   $${run} is a literal ${run}) */
	struct spec_ctx ctx = {legacy ? run : "\001run\001", task};
	int rc = 0;
	if (spec_expand_command(s, stage, &ctx, &cmd, err) < 0 ||
	    sha256_buf(cmd.s, cmd.len, sha, err) < 0)
		rc = -1;
	buf_release(&cmd);
	return rc;
}

static int make_key(const struct spec *s, const char *run, int stage, int task, task_digest_fn fn,
		    void *fnctx, int legacy, char key[65], json_t **parts, struct error *err)
{
	const struct spec_stage *st = &s->stages[stage];
	struct buf text = BUF_INIT;
	char cmd_sha[65];
	if (task_command_sha(s, run, stage, task, legacy, cmd_sha, err) < 0)
		return -1;
	char res[64];
	/* Resources that change results: the number of MPI ranks and of GPUs. */
	snprintf(res, sizeof(res), "ranks=%d gpus=%d", st->res.ranks, st->res.gpus);
	buf_addf(&text, "cairn-key-%d\ncommand %s\nresources %s\n", legacy ? 1 : 2, cmd_sha, res);
	json_t *inputs = parts ? json_object() : NULL;
	for (int e = 0; e < st->nin; e++) {
		char d[65], name[300];
		if (input_digest(s, &st->in[e], task, fn, fnctx, d, err) < 0) {
			buf_release(&text);
			json_decref(inputs);
			return -1;
		}
		if (st->in[e].one_to_one)
			snprintf(name, sizeof(name), "%s/%d", s->stages[st->in[e].from].name, task);
		else
			snprintf(name, sizeof(name), "%s", s->stages[st->in[e].from].name);
		buf_addf(&text, "input %s %s\n", name, d);
		if (inputs)
			json_object_set_new(inputs, name, json_string(d));
	}
	int rc = text.failed ? error_set(err, "out of memory") : sha256_buf(text.s, text.len, key, err);
	buf_release(&text);
	if (rc == 0 && parts) {
		*parts = json_pack("{s:s, s:s, s:o}", "command", cmd_sha, "resources", res, "inputs",
				   inputs);
		if (!*parts)
			rc = error_set(err, "out of memory");
	} else {
		json_decref(inputs);
	}
	return rc;
}
