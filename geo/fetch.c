#include "geo/fetch.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/cpus.h"
#include "core/fs.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "geo/manifest.h"
#include "geo/raster.h"

#define MAX_BODY ((size_t)64 << 20)
#define MAX_HOSTS 64
#define JOURNAL_FLUSH_LINES 256
#define JOURNAL_FLUSH_S 0.25

void fetch_opts_init(struct fetch_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->shard_n = 1;
	o->concurrency = 16;
	o->retries = 5;
	o->backoff = 0.5;
	o->backoff_max = 30;
	o->max_retry_after = 120;
	o->stall = 15;
	o->timeout = 120;
	o->connect_timeout = 10;
	o->verify = FETCH_VERIFY_FULL;
	o->seed = 1;
}

/* ---- templates ---- */

int fetch_expand_url(const char *tmpl, const struct tile *t, char *out, size_t size,
		     struct error *err)
{
	struct buf b = BUF_INIT;
	int have_z = 0, have_x = 0, have_y = 0;
	for (const char *p = tmpl; *p;) {
		if (strncmp(p, "{z}", 3) == 0) {
			buf_addf(&b, "%d", t->z);
			have_z = 1;
			p += 3;
		} else if (strncmp(p, "{x}", 3) == 0) {
			buf_addf(&b, "%u", t->x);
			have_x = 1;
			p += 3;
		} else if (strncmp(p, "{y}", 3) == 0) {
			buf_addf(&b, "%u", t->y);
			have_y = 1;
			p += 3;
		} else if (strncmp(p, "{-y}", 4) == 0) {
			/* TMS numbers rows from the south: 2^z - 1 - y. */
			buf_addf(&b, "%llu", (unsigned long long)((1ull << t->z) - 1 - t->y));
			have_y = 1;
			p += 4;
		} else if (strncmp(p, "{q}", 3) == 0) {
			char qk[TILE_MAX_ZOOM + 1];
			tile_quadkey(t, qk);
			buf_adds(&b, qk);
			have_z = have_x = have_y = 1;
			p += 3;
		} else {
			buf_addc(&b, *p++);
		}
	}
	int rc = 0;
	if (b.failed)
		rc = error_set(err, "out of memory expanding '%s'", tmpl);
	else if (!have_z || !have_x || !have_y)
		rc = error_set(err, "url template '%s' needs {z}, {x} and {y} (or {-y}, or {q})",
			       tmpl);
	else if (b.len + 1 > size)
		rc = error_set(err, "url from '%s' longer than %zu bytes", tmpl, size - 1);
	else
		memcpy(out, buf_str(&b), b.len + 1);
	buf_release(&b);
	return rc;
}

int fetch_ext_from_template(const char *tmpl, char *ext, size_t size, struct error *err)
{
	size_t end = strcspn(tmpl, "?#");
	const char *slash = NULL;
	for (size_t i = 0; i < end; i++)
		if (tmpl[i] == '/')
			slash = tmpl + i;
	const char *dot = NULL;
	for (const char *p = slash ? slash : tmpl; p < tmpl + end; p++)
		if (*p == '.')
			dot = p;
	size_t n = dot ? (size_t)(tmpl + end - dot - 1) : 0;
	if (!dot || n == 0 || n >= size || n > 5)
		return error_set(err, "cannot tell the file type from '%s': give --ext", tmpl);
	for (size_t i = 0; i < n; i++) {
		char c = dot[1 + i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return error_set(err, "cannot tell the file type from '%s': give --ext",
					 tmpl);
		ext[i] = c;
	}
	ext[n] = '\0';
	return 0;
}

int fetch_check_url(const char *tmpl, struct error *err)
{
	size_t n = 0;
	if (isalpha((unsigned char)tmpl[0]))
		while (isalnum((unsigned char)tmpl[n]) || tmpl[n] == '+' || tmpl[n] == '-' ||
		       tmpl[n] == '.')
			n++;
	if (n == 0 || strncmp(tmpl + n, "://", 3) != 0)
		return error_set(err,
				 "url template '%s' is not a URL: want SCHEME://HOST/PATH with {z}, "
				 "{x} and {y}, e.g. 'https://tile.example.org/{z}/{x}/{y}.png'",
				 tmpl);
	int known = 0;
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
	for (const char *const *p = vi ? vi->protocols : NULL; p && *p && !known; p++)
		known = strlen(*p) == n && strncasecmp(*p, tmpl, n) == 0;
	if (!known)
		return error_set(err, "url template '%s': libcurl does not speak '%.*s' (want http "
				      "or https)",
				 tmpl, (int)n, tmpl);
	const char *host = tmpl + n + 3;
	int file = n == 4 && strncasecmp(tmpl, "file", 4) == 0;
	if (!file && strcspn(host, "/?#") == 0)
		return error_set(err,
				 "url template '%s' has no host: want SCHEME://HOST/PATH, e.g. "
				 "'https://tile.example.org/{z}/{x}/{y}.png'",
				 tmpl);
	struct tile t = {1, 0, 0};
	char probe[2048];
	return fetch_expand_url(tmpl, &t, probe, sizeof(probe), err);
}

void fetch_manifest_name(int shard_i, int shard_n, char *out, size_t size)
{
	if (shard_n <= 1)
		snprintf(out, size, "manifest.tsv");
	else
		snprintf(out, size, "manifest.%dof%d.tsv", shard_i, shard_n);
}

/* Unlink the tiles m records ok; paths that leave out_dir are not touched. */
static uint64_t remove_recorded_tiles(const struct manifest *m, const char *out_dir)
{
	uint64_t removed = 0;
	for (size_t i = 0; i < m->n; i++) {
		const char *rel = m->e[i].path;
		char path[PATH_MAX];
		if (m->e[i].status != M_OK || rel[0] == '/' || strstr(rel, ".."))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", out_dir, rel) >= (int)sizeof(path))
			continue;
		if (unlink(path) == 0)
			removed++;
	}
	return removed;
}

int fetch_manifest_source(struct manifest *m, const char *mpath, const char *out_dir,
			  const char *source, int replace, char *note, size_t size,
			  struct error *err)
{
	note[0] = '\0';
	if (m->source && strcmp(m->source, source) == 0)
		return 0;
	if (m->source && !replace) {
		error_set(err,
			  "%s records another source, %s, for the tiles here: to replace them with "
			  "tiles of %s, add --refetch; to keep them, give that source or another --out",
			  mpath, m->source, source);
		return FETCH_EBADINPUT;
	}
	if (m->source) {
		uint64_t removed = remove_recorded_tiles(m, out_dir);
		snprintf(note, size,
			 "%s records another source, %s: its %llu tiles are removed and every tile "
			 "is fetched again from %s",
			 mpath, m->source, (unsigned long long)removed, source);
		manifest_clear(m);
	} else if (m->n) {
		snprintf(note, size,
			 "%s records no source (an earlier cairn-fetch wrote it): its %zu tiles "
			 "are taken as tiles of %s, now recorded; delete it to fetch them all again",
			 mpath, m->n, source);
	}
	if (manifest_set_source(m, source) < 0)
		return error_set(err, "%s: out of memory", mpath);
	return manifest_write(m, mpath, err);
}

/* ---- the run ---- */

enum { ST_TODO, ST_OK, ST_MISSING, ST_FAILED };

struct item {
	uint32_t attempts;
	uint8_t state;
	char *why; /* last reason it did not succeed */
};

struct host {
	char name[256];
	double next; /* earliest time the next request may start (rate limit, Retry-After) */
};

struct slot {
	CURL *easy;
	int busy;
	uint64_t idx;
	struct host *host;
	char *body;
	size_t len, cap;
	int too_big;
	int stalled;
	double last_data; /* when bytes last arrived (or the transfer started) */
	curl_off_t last_now;
	double stall;
	char url[2048];
};

struct job {
	struct job *next;
	uint64_t idx;
	char *body; /* back to the buffer pool when the job is collected */
	size_t len, cap;
	/* filled by the worker */
	int ok;
	int permanent; /* a local write error: retrying the download will not help */
	char sha[SHA256_HEX_LEN + 1];
	char why[1200];
};

struct retry {
	double ready;
	uint64_t idx;
};

struct run {
	const struct fetch_opts *o;
	char ext[16];
	uint64_t begin, total;
	struct item *items;
	struct retry *heap;
	size_t nheap, capheap;
	uint64_t next_new;
	struct host hosts[MAX_HOSTS];
	int nhosts;
	struct slot *slots;
	int nslots, active;
	CURLM *multi;
	/* worker pool: jobs in, finished jobs out */
	pthread_t *threads;
	int nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *in_head, *in_tail, *out_head;
	int quit;
	int wake_me; /* the fetching thread sleeps on nothing but the workers: wake it */
	uint64_t inflight_jobs, max_jobs; /* transfers wait while max_jobs bodies await a worker */
	/* body buffers finished with, for the next transfers (no malloc, no fresh pages) */
	char **pool;
	size_t *pool_cap;
	size_t npool, max_pool;
	char tmpdir[PATH_MAX];
	int tmp_fd, out_fd; /* tmpdir and out_dir, for openat/renameat */
	atomic_int unnamed_ok; /* tiles written as O_TMPFILE files (until that fails) */
	double journal_flushed; /* when the journal was last flushed */
	int journal_pending;    /* lines written since */
	struct manifest man;
	FILE *journal;
	uint64_t resolved;
	struct fetch_stats *st;
	uint64_t rng;
};

static double rand01(struct run *r)
{
	/* splitmix64: Steele, Lea, Flood 2014 */
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (double)(z >> 11) / 9007199254740992.0;
}

static void item_tile(const struct run *r, uint64_t idx, struct tile *t)
{
	tile_range_nth(&r->o->range, r->begin + idx, t);
}

static void item_path(const struct run *r, uint64_t idx, char *out, size_t size)
{
	struct tile t;
	item_tile(r, idx, &t);
	snprintf(out, size, "%d/%u/%u.%s", t.z, t.x, t.y, r->ext);
}

static void set_why(struct item *it, const char *why)
{
	char *w = mem_strdup(why);
	if (w) {
		mem_free(it->why);
		it->why = w;
	}
}

static void heap_push(struct run *r, double ready, uint64_t idx)
{
	if (r->nheap == r->capheap) {
		size_t nc = r->capheap ? r->capheap * 2 : 64;
		struct retry *nh = mem_realloc(r->heap, nc * sizeof(*nh));
		if (!nh) {
			/* Cannot queue the retry: give the tile up rather than lose track. */
			struct item *it = &r->items[idx];
			it->state = ST_FAILED;
			set_why(it, "out of memory queueing a retry");
			r->resolved++;
			return;
		}
		r->heap = nh;
		r->capheap = nc;
	}
	size_t i = r->nheap++;
	while (i > 0 && r->heap[(i - 1) / 2].ready > ready) {
		r->heap[i] = r->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	r->heap[i].ready = ready;
	r->heap[i].idx = idx;
}

static struct retry heap_pop(struct run *r)
{
	struct retry top = r->heap[0], last = r->heap[--r->nheap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= r->nheap)
			break;
		if (c + 1 < r->nheap && r->heap[c + 1].ready < r->heap[c].ready)
			c++;
		if (r->heap[c].ready >= last.ready)
			break;
		r->heap[i] = r->heap[c];
		i = c;
	}
	if (r->nheap)
		r->heap[i] = last;
	return top;
}

static struct host *host_of(struct run *r, const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	size_t n = strcspn(p, "/?#");
	char name[256];
	snprintf(name, sizeof(name), "%.*s", (int)(n < 255 ? n : 255), p);
	for (int i = 0; i < r->nhosts; i++)
		if (strcmp(r->hosts[i].name, name) == 0)
			return &r->hosts[i];
	if (r->nhosts == MAX_HOSTS)
		return &r->hosts[MAX_HOSTS - 1]; /* many hosts share the last gate */
	struct host *h = &r->hosts[r->nhosts++];
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->next = 0;
	return h;
}

/* One write for many lines: lines wait at most JOURNAL_FLUSH_S (plus the
 * fetching loop's longest sleep, 1 s); a crash loses those, and their tiles
 * are fetched again by the next run. */
static void journal_flush_due(struct run *r, double now)
{
	if (r->journal && r->journal_pending &&
	    (r->journal_pending >= JOURNAL_FLUSH_LINES || now - r->journal_flushed >= JOURNAL_FLUSH_S)) {
		fflush(r->journal);
		r->journal_pending = 0;
		r->journal_flushed = now;
	}
}

static void journal(struct run *r, const char *path, uint64_t bytes, const char *sha, int status)
{
	manifest_put(&r->man, path, bytes, sha, status);
	if (r->journal) {
		fprintf(r->journal, "%s\t%llu\t%s\t%s\n", path, (unsigned long long)bytes,
			sha ? sha : "-", manifest_status_name(status));
		r->journal_pending++;
		journal_flush_due(r, clock_now());
	}
}

static void resolve(struct run *r, uint64_t idx, int state, uint64_t bytes, const char *sha)
{
	char path[PATH_MAX];
	item_path(r, idx, path, sizeof(path));
	r->items[idx].state = (uint8_t)state;
	r->resolved++;
	if (state == ST_OK) {
		r->st->fetched++;
		r->st->bytes += bytes;
		journal(r, path, bytes, sha, M_OK);
	} else if (state == ST_MISSING) {
		r->st->missing++;
		journal(r, path, 0, NULL, M_MISSING);
	} else {
		r->st->failed++;
		journal(r, path, 0, NULL, M_FAILED);
	}
	if (r->o->on_progress)
		r->o->on_progress(r->o->ctx, r->resolved, r->total);
}

/* Retry later, or give up when the attempts are spent. retry_after < 0: none. */
static void retry_or_fail(struct run *r, uint64_t idx, const char *why, double retry_after)
{
	struct item *it = &r->items[idx];
	set_why(it, why);
	if (it->attempts > (uint32_t)r->o->retries) {
		resolve(r, idx, ST_FAILED, 0, NULL);
		return;
	}
	/* Exponential backoff with "equal jitter": half the delay fixed, half
	 * random, so clients that failed together do not retry together. */
	double d = r->o->backoff * ldexp(1.0, (int)it->attempts - 1);
	if (d > r->o->backoff_max)
		d = r->o->backoff_max;
	d = d * 0.5 + d * 0.5 * rand01(r);
	if (retry_after >= 0) {
		double ra = retry_after < r->o->max_retry_after ? retry_after : r->o->max_retry_after;
		if (ra > d)
			d = ra;
	}
	heap_push(r, clock_now() + d, idx);
}

/* ---- workers: decode check, hash, write ---- */

static int write_all(int fd, const char *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		off += (size_t)n;
	}
	return 0;
}

/* Z/X of the tile's Z/X/Y.EXT made (the first tile of its column). */
static int make_tile_dir(struct run *r, const char *rel, struct error *err)
{
	char dir[PATH_MAX];
	if (snprintf(dir, sizeof(dir), "%s/%s", r->o->out_dir, rel) >= (int)sizeof(dir)) {
		errno = ENAMETOOLONG;
		return error_errno(err, "%s/%s", r->o->out_dir, rel);
	}
	*strrchr(dir, '/') = '\0';
	return fs_mkdir_p(dir, err);
}

/* The body to TMPDIR/N.part, renamed to OUT/Z/X/Y.EXT: both relative to
 * directory descriptors, so the kernel does not walk the paths each time.
 * With fd >= 0 the body is already in that (unnamed) file: it is linked in
 * as N.part and renamed the same way. */
static int write_tile_renamed(struct run *r, struct job *j, const char *rel, int fd,
			      struct error *err)
{
	char tmp[64], proc[64];
	snprintf(tmp, sizeof(tmp), "%llu.part", (unsigned long long)j->idx);
	if (fd >= 0) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if (linkat(AT_FDCWD, proc, r->tmp_fd, tmp, AT_SYMLINK_FOLLOW) < 0)
			return error_errno(err, "%s/%s: cannot link", r->tmpdir, tmp);
	} else {
		fd = openat(r->tmp_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return error_errno(err, "%s/%s: cannot create", r->tmpdir, tmp);
		int bad = write_all(fd, j->body, j->len) < 0;
		if (close(fd) < 0 || bad) {
			error_errno(err, "%s/%s: write", r->tmpdir, tmp);
			unlinkat(r->tmp_fd, tmp, 0);
			return -1;
		}
	}
	if (renameat(r->tmp_fd, tmp, r->out_fd, rel) == 0)
		return 0;
	if (errno == ENOENT && make_tile_dir(r, rel, err) == 0 &&
	    renameat(r->tmp_fd, tmp, r->out_fd, rel) == 0)
		return 0;
	error_errno(err, "rename %s/%s to %s/%s", r->tmpdir, tmp, r->o->out_dir, rel);
	unlinkat(r->tmp_fd, tmp, 0);
	return -1;
}

/* The body to an unnamed file in the tile's own folder (O_TMPFILE), linked
 * in under its name once complete: one change to one folder per tile, as
 * when a file is simply created. Through a shared temp folder, the two
 * workers spun on its lock and on the file system's rename lock (a rename
 * between folders takes both): 15% of cairn-fetch's CPU at concurrency 64.
 * A killed run leaves no trace of an unnamed file. 1: this file system or
 * /proc cannot do it, use write_tile_renamed. */
static int write_tile_unnamed(struct run *r, struct job *j, const char *rel, struct error *err)
{
	char dir[PATH_MAX], proc[64];
	snprintf(dir, sizeof(dir), "%s", rel);
	*strrchr(dir, '/') = '\0';
	int fd = openat(r->out_fd, dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0 && errno == ENOENT) {
		if (make_tile_dir(r, rel, err) < 0)
			return -1;
		fd = openat(r->out_fd, dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
	}
	if (fd < 0)
		return errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL
			       ? 1
			       : error_errno(err, "%s/%s: cannot create a file", r->o->out_dir, dir);
	if (write_all(fd, j->body, j->len) < 0) {
		error_errno(err, "%s/%s: write", r->o->out_dir, rel);
		close(fd);
		return -1;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	int rc = 0;
	if (linkat(AT_FDCWD, proc, r->out_fd, rel, AT_SYMLINK_FOLLOW) < 0) {
		if (errno == EEXIST) /* a damaged tile is there: replace it atomically */
			rc = write_tile_renamed(r, j, rel, fd, err);
		else if (errno == ENOENT) /* no /proc */
			rc = 1;
		else
			rc = error_errno(err, "%s/%s: cannot link", r->o->out_dir, rel);
	}
	if (close(fd) < 0 && rc == 0)
		rc = error_errno(err, "%s/%s: close", r->o->out_dir, rel);
	return rc;
}

static int write_tile(struct run *r, struct job *j, struct error *err)
{
	char rel[PATH_MAX];
	item_path(r, j->idx, rel, sizeof(rel));
	if (atomic_load_explicit(&r->unnamed_ok, memory_order_relaxed)) {
		int rc = write_tile_unnamed(r, j, rel, err);
		if (rc <= 0)
			return rc;
		atomic_store_explicit(&r->unnamed_ok, 0, memory_order_relaxed);
	}
	return write_tile_renamed(r, j, rel, -1, err);
}

static int check_body(struct run *r, struct job *j, struct raster_scratch *scratch,
		      struct error *err)
{
	switch (r->o->verify) {
	case FETCH_VERIFY_NONE: return 0;
	case FETCH_VERIFY_FAST: return raster_check_image_fast(j->body, j->len, r->ext, err);
	case FETCH_VERIFY_GDAL: return raster_check_image_gdal(j->body, j->len, r->ext, err);
	default: return raster_check_image_with(j->body, j->len, r->ext, scratch, err);
	}
}

static void work(struct run *r, struct job *j, struct raster_scratch *scratch)
{
	struct error err;
	j->ok = 0;
	j->permanent = 0;
	if (check_body(r, j, scratch, &err) < 0) {
		snprintf(j->why, sizeof(j->why), "rejected body (%zu bytes): %s", j->len, err.msg);
		return;
	}
	if (sha256_buf(j->body, j->len, j->sha, &err) < 0 || write_tile(r, j, &err) < 0) {
		snprintf(j->why, sizeof(j->why), "%s", err.msg);
		j->permanent = 1;
		return;
	}
	j->ok = 1;
}

static void *worker_main(void *arg)
{
	struct run *r = arg;
	struct raster_scratch scratch = {NULL, 0}; /* this worker's decode buffer */
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->in_head && !r->quit)
			pthread_cond_wait(&r->cv, &r->mu);
		if (!r->in_head)
			break;
		struct job *j = r->in_head;
		r->in_head = j->next;
		if (!r->in_head)
			r->in_tail = NULL;
		pthread_mutex_unlock(&r->mu);
		work(r, j, &scratch);
		pthread_mutex_lock(&r->mu);
		j->next = r->out_head;
		r->out_head = j;
		if (r->wake_me) {
			curl_multi_wakeup(r->multi);
			r->wake_me = 0;
		}
	}
	pthread_mutex_unlock(&r->mu);
	raster_scratch_release(&scratch);
	return NULL;
}

/* ---- body buffers: reused from transfer to transfer ---- */

static void pool_give(struct run *r, char *buf, size_t cap)
{
	if (buf && r->npool < r->max_pool) {
		r->pool[r->npool] = buf;
		r->pool_cap[r->npool++] = cap;
	} else {
		mem_free(buf);
	}
}

static void pool_take(struct run *r, struct slot *s)
{
	if (s->body || !r->npool)
		return;
	s->body = r->pool[--r->npool];
	s->cap = r->pool_cap[r->npool];
}

static void submit_job(struct run *r, uint64_t idx, char *body, size_t len, size_t cap)
{
	struct job *j = mem_calloc(1, sizeof(*j));
	if (!j) {
		pool_give(r, body, cap);
		retry_or_fail(r, idx, "out of memory", -1);
		return;
	}
	j->idx = idx;
	j->body = body;
	j->len = len;
	j->cap = cap;
	pthread_mutex_lock(&r->mu);
	if (r->in_tail)
		r->in_tail->next = j;
	else
		r->in_head = j;
	r->in_tail = j;
	r->inflight_jobs++;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void collect_jobs(struct run *r)
{
	pthread_mutex_lock(&r->mu);
	struct job *list = r->out_head;
	r->out_head = NULL;
	pthread_mutex_unlock(&r->mu);
	while (list) {
		struct job *j = list;
		list = j->next;
		r->inflight_jobs--;
		if (j->ok) {
			resolve(r, j->idx, ST_OK, j->len, j->sha);
		} else if (j->permanent) {
			set_why(&r->items[j->idx], j->why);
			resolve(r, j->idx, ST_FAILED, 0, NULL);
		} else {
			r->st->rejected++;
			retry_or_fail(r, j->idx, j->why, -1);
		}
		pool_give(r, j->body, j->cap);
		mem_free(j);
	}
}

/* ---- transfers ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct slot *s = arg;
	size_t n = size * nmemb;
	if (s->len + n > MAX_BODY) {
		s->too_big = 1;
		return 0;
	}
	if (s->len + n > s->cap) {
		size_t nc = s->cap ? s->cap : 65536;
		while (nc < s->len + n)
			nc *= 2;
		char *nb = mem_realloc(s->body, nc);
		if (!nb)
			return 0;
		s->body = nb;
		s->cap = nc;
	}
	memcpy(s->body + s->len, data, n);
	s->len += n;
	return n;
}

/* A stall is `stall` seconds without a byte. curl's LOW_SPEED_* averages over
 * a window of several seconds, so a burst then silence goes unnoticed for too
 * long; this callback, called at least once a second, watches the last byte. */
static int on_xfer(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		   curl_off_t ulnow)
{
	(void)dltotal;
	(void)ultotal;
	(void)ulnow;
	struct slot *s = arg;
	double now = clock_now();
	if (dlnow != s->last_now) {
		s->last_now = dlnow;
		s->last_data = now;
		return 0;
	}
	if (now - s->last_data > s->stall) {
		s->stalled = 1;
		return 1;
	}
	return 0;
}

static int slot_setup(struct run *r, struct slot *s, struct error *err)
{
	const struct fetch_opts *o = r->o;
	s->easy = curl_easy_init();
	if (!s->easy)
		return error_set(err, "curl_easy_init failed");
	s->stall = o->stall;
	CURL *e = s->easy;
	if (curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, s) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PRIVATE, s) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_USERAGENT, "cairn-fetch/1") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout * 1000)) !=
		    CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(o->timeout * 1000)) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_xfer) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_XFERINFODATA, s) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK)
		return error_set(err, "curl_easy_setopt failed");
	return 0;
}

/* Take the next tile that may start now: a due retry first, then a new one. */
static int pick(struct run *r, double now, uint64_t *idx, int *from_heap)
{
	if (r->nheap && r->heap[0].ready <= now) {
		*idx = heap_pop(r).idx;
		*from_heap = 1;
		return 1;
	}
	while (r->next_new < r->total && r->items[r->next_new].state != ST_TODO)
		r->next_new++;
	if (r->next_new < r->total) {
		*idx = r->next_new++;
		*from_heap = 0;
		return 1;
	}
	return 0;
}

/* Start transfers until all slots are busy or nothing may start yet;
 * *wake is lowered to when something could start next. */
static void start_transfers(struct run *r, double now, double *wake)
{
	for (int si = 0; si < r->nslots && r->active < r->nslots; si++) {
		struct slot *s = &r->slots[si];
		if (s->busy)
			continue;
		/* The workers are behind: finish their queue before downloading more
		 * (memory stays bounded; a finished job wakes the poll). */
		if (r->inflight_jobs + (uint64_t)r->active >= r->max_jobs)
			break;
		uint64_t idx;
		int from_heap;
		if (!pick(r, now, &idx, &from_heap))
			break;
		struct tile t;
		struct error err;
		item_tile(r, idx, &t);
		if (fetch_expand_url(r->o->url, &t, s->url, sizeof(s->url), &err) < 0) {
			set_why(&r->items[idx], err.msg);
			resolve(r, idx, ST_FAILED, 0, NULL);
			continue;
		}
		struct host *h = host_of(r, s->url);
		if (h->next > now) {
			/* The host is paused or rate limited: put the tile back. */
			if (from_heap)
				heap_push(r, h->next, idx);
			else
				r->next_new = idx;
			if (h->next < *wake)
				*wake = h->next;
			break;
		}
		if (r->o->rate > 0)
			h->next = (h->next > now - 1.0 / r->o->rate ? h->next : now) + 1.0 / r->o->rate;
		s->idx = idx;
		s->host = h;
		pool_take(r, s);
		s->len = 0;
		s->too_big = 0;
		s->stalled = 0;
		s->last_now = 0;
		s->last_data = now;
		r->items[idx].attempts++;
		if (r->items[idx].attempts > 1)
			r->st->retries++;
		r->st->requests++;
		if (curl_easy_setopt(s->easy, CURLOPT_URL, s->url) != CURLE_OK ||
		    curl_multi_add_handle(r->multi, s->easy) != CURLM_OK) {
			set_why(&r->items[idx], "curl could not start the transfer");
			resolve(r, idx, ST_FAILED, 0, NULL);
			continue;
		}
		s->busy = 1;
		r->active++;
	}
	if (r->nheap && r->heap[0].ready < *wake)
		*wake = r->heap[0].ready;
}

static int curl_permanent(CURLcode c)
{
	return c == CURLE_UNSUPPORTED_PROTOCOL || c == CURLE_URL_MALFORMAT ||
	       c == CURLE_COULDNT_RESOLVE_HOST || c == CURLE_TOO_MANY_REDIRECTS ||
	       c == CURLE_FILESIZE_EXCEEDED || c == CURLE_OUT_OF_MEMORY;
}

static void transfer_done(struct run *r, struct slot *s, CURLcode code)
{
	curl_multi_remove_handle(r->multi, s->easy);
	s->busy = 0;
	r->active--;
	uint64_t idx = s->idx;
	char why[2400];
	if (s->too_big)
		code = CURLE_FILESIZE_EXCEEDED;
	if (code != CURLE_OK) {
		if (s->stalled)
			snprintf(why, sizeof(why), "%s: stalled (nothing received for %.1f s)",
				 s->url, s->stall);
		else
			snprintf(why, sizeof(why), "%s: %s", s->url, curl_easy_strerror(code));
		if (curl_permanent(code)) {
			set_why(&r->items[idx], why);
			resolve(r, idx, ST_FAILED, 0, NULL);
		} else {
			retry_or_fail(r, idx, why, -1);
		}
		return;
	}
	long status = 0;
	curl_off_t clen = -1, retry_after = 0;
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
	curl_easy_getinfo(s->easy, CURLINFO_RETRY_AFTER, &retry_after);
	if (status == 200) {
		if (s->len == 0 || (clen >= 0 && (curl_off_t)s->len != clen)) {
			r->st->rejected++;
			snprintf(why, sizeof(why), "%s: body of %zu bytes, Content-Length %lld", s->url,
				 s->len, (long long)clen);
			retry_or_fail(r, idx, why, -1);
			return;
		}
		/* The body goes to a worker; the slot takes a pooled buffer next time. */
		char *body = s->body;
		size_t len = s->len, cap = s->cap;
		s->body = NULL;
		s->len = s->cap = 0;
		submit_job(r, idx, body, len, cap);
		return;
	}
	if (status == 404 || status == 410 || status == 204) {
		snprintf(why, sizeof(why), "%s: HTTP %ld (no tile)", s->url, status);
		set_why(&r->items[idx], why);
		resolve(r, idx, ST_MISSING, 0, NULL);
		return;
	}
	snprintf(why, sizeof(why), "%s: HTTP %ld", s->url, status);
	if (status == 408 || status == 425 || status == 429 || status >= 500) {
		double ra = retry_after > 0 ? (double)retry_after : -1;
		if (ra > 0) {
			/* Retry-After speaks for the whole server: pause the host. */
			double cap = ra < r->o->max_retry_after ? ra : r->o->max_retry_after;
			double until = clock_now() + cap;
			if (s->host->next < until)
				s->host->next = until;
		}
		retry_or_fail(r, idx, why, ra);
		return;
	}
	set_why(&r->items[idx], why);
	resolve(r, idx, ST_FAILED, 0, NULL);
}

/* Tiles valid in the manifest are not asked for again: the file must be there
 * with the recorded size and sha256; a recorded 404 stays a 404. */
static int use_manifest(struct run *r, struct error *err)
{
	for (uint64_t i = 0; i < r->total; i++) {
		char rel[PATH_MAX / 2], path[PATH_MAX];
		item_path(r, i, rel, sizeof(rel));
		struct mentry *e = manifest_get(&r->man, rel);
		if (!e)
			continue;
		if (e->status == M_MISSING) {
			r->items[i].state = ST_MISSING;
			r->st->missing++;
			r->resolved++;
			continue;
		}
		if (e->status != M_OK)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", r->o->out_dir, rel) >= (int)sizeof(path))
			continue;
		struct stat sb;
		if (stat(path, &sb) < 0 || (uint64_t)sb.st_size != e->bytes)
			continue;
		char sha[SHA256_HEX_LEN + 1];
		uint64_t bytes;
		struct error e2;
		if (sha256_file(path, sha, &bytes, &e2) < 0 || strcmp(sha, e->sha) != 0)
			continue;
		r->items[i].state = ST_OK;
		r->st->cached++;
		r->resolved++;
	}
	(void)err;
	return 0;
}

static void run_release(struct run *r)
{
	if (r->threads) {
		pthread_mutex_lock(&r->mu);
		r->quit = 1;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		for (int i = 0; i < r->nthreads; i++)
			pthread_join(r->threads[i], NULL);
		mem_free(r->threads);
		pthread_mutex_destroy(&r->mu);
		pthread_cond_destroy(&r->cv);
	}
	for (struct job *j = r->out_head; j;) {
		struct job *n = j->next;
		mem_free(j->body);
		mem_free(j);
		j = n;
	}
	for (size_t i = 0; i < r->npool; i++)
		mem_free(r->pool[i]);
	mem_free(r->pool);
	mem_free(r->pool_cap);
	if (r->tmp_fd >= 0)
		close(r->tmp_fd);
	if (r->out_fd >= 0)
		close(r->out_fd);
	for (int i = 0; r->slots && i < r->nslots; i++) {
		if (r->slots[i].busy)
			curl_multi_remove_handle(r->multi, r->slots[i].easy);
		if (r->slots[i].easy)
			curl_easy_cleanup(r->slots[i].easy);
		mem_free(r->slots[i].body);
	}
	mem_free(r->slots);
	if (r->multi)
		curl_multi_cleanup(r->multi);
	if (r->journal)
		fclose(r->journal);
	if (r->items)
		for (uint64_t i = 0; i < r->total; i++)
			mem_free(r->items[i].why);
	mem_free(r->items);
	mem_free(r->heap);
	manifest_release(&r->man);
	if (r->tmpdir[0]) {
		struct error e;
		fs_rm_rf(r->tmpdir, &e);
	}
}

static int collect_failures(struct run *r, struct fetch_result *res, struct error *err)
{
	if (!r->st->failed)
		return 0;
	res->failures = mem_calloc(r->st->failed, sizeof(*res->failures));
	if (!res->failures)
		return error_set(err, "out of memory listing failures");
	for (uint64_t i = 0; i < r->total; i++) {
		if (r->items[i].state != ST_FAILED)
			continue;
		char rel[PATH_MAX], url[2048];
		struct tile t;
		struct error e;
		item_path(r, i, rel, sizeof(rel));
		item_tile(r, i, &t);
		if (fetch_expand_url(r->o->url, &t, url, sizeof(url), &e) < 0)
			url[0] = '\0';
		struct fetch_failure *f = &res->failures[res->nfailures++];
		f->path = mem_strdup(rel);
		f->url = mem_strdup(url);
		f->why = mem_strdup(r->items[i].why ? r->items[i].why : "unknown");
	}
	return 0;
}

/* Temp folders of killed runs on this host (their pid is gone) hold at most
 * partial .part files: remove them. Another host's or a live run's stay. */
static void remove_stale_tmp(const char *out_dir, const char *host)
{
	DIR *d = opendir(out_dir);
	if (!d)
		return;
	char prefix[200];
	snprintf(prefix, sizeof(prefix), ".cairn-tmp-%s-", host);
	size_t pl = strlen(prefix);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, pl) != 0)
			continue;
		char *end;
		long pid = strtol(e->d_name + pl, &end, 10);
		if (*end || pid <= 0 || pid == (long)getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		char path[PATH_MAX];
		struct error e2;
		if (snprintf(path, sizeof(path), "%s/%s", out_dir, e->d_name) < (int)sizeof(path))
			fs_rm_rf(path, &e2);
	}
	closedir(d);
}

int fetch_run(const struct fetch_opts *o, struct fetch_result *res, struct error *err)
{
	memset(res, 0, sizeof(*res));
	struct run r;
	memset(&r, 0, sizeof(r));
	r.tmp_fd = r.out_fd = -1;
	atomic_init(&r.unnamed_ok, 1);
	r.o = o;
	r.st = &res->stats;
	r.rng = o->seed;
	double t0 = clock_now();
	if (fetch_check_url(o->url, err) < 0)
		return FETCH_EBADINPUT;
	if (o->ext)
		snprintf(r.ext, sizeof(r.ext), "%s", o->ext);
	else if (fetch_ext_from_template(o->url, r.ext, sizeof(r.ext), err) < 0)
		return FETCH_EBADINPUT;
	if (o->concurrency < 1 || o->concurrency > 4096)
		return error_set(err, "concurrency %d out of range 1..4096", o->concurrency);
	uint64_t end;
	tile_shard(tile_range_count(&o->range), o->shard_i, o->shard_n ? o->shard_n : 1, &r.begin,
		   &end);
	r.total = end - r.begin;
	res->stats.total = r.total;
	if (tile_check_run_size(r.total, err) < 0)
		return FETCH_EBADINPUT;
	if (fs_mkdir_p(o->out_dir, err) < 0)
		return -1;
	char mname[64];
	fetch_manifest_name(o->shard_i, o->shard_n, mname, sizeof(mname));
	snprintf(res->manifest, sizeof(res->manifest), "%s/%s", o->out_dir, mname);

	int rc = -1;
	r.items = mem_calloc(r.total ? r.total : 1, sizeof(*r.items));
	if (!r.items) {
		error_set(err, "out of memory for %llu tiles", (unsigned long long)r.total);
		goto out;
	}
	int lrc = manifest_load(&r.man, res->manifest, err);
	if (lrc < 0) {
		rc = lrc == MANIFEST_EBADINPUT ? FETCH_EBADINPUT : -1;
		goto out;
	}
	char note[PATH_MAX + 2200];
	int src = fetch_manifest_source(&r.man, res->manifest, o->out_dir, o->url, o->refetch, note,
					sizeof(note), err);
	if (src < 0) {
		rc = src;
		goto out;
	}
	if (note[0] && o->on_note)
		o->on_note(o->ctx, note);
	if (use_manifest(&r, err) < 0)
		goto out;
	char host[128] = "host";
	gethostname(host, sizeof(host) - 1);
	remove_stale_tmp(o->out_dir, host);
	if (snprintf(r.tmpdir, sizeof(r.tmpdir), "%s/.cairn-tmp-%s-%ld", o->out_dir, host,
		     (long)getpid()) >= (int)sizeof(r.tmpdir)) {
		r.tmpdir[0] = '\0';
		error_set(err, "%s: path too long", o->out_dir);
		goto out;
	}
	if (fs_mkdir_p(r.tmpdir, err) < 0) {
		r.tmpdir[0] = '\0';
		goto out;
	}
	r.tmp_fd = open(r.tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r.out_fd = open(o->out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r.tmp_fd < 0 || r.out_fd < 0) {
		error_errno(err, "%s: cannot open the folder", r.tmp_fd < 0 ? r.tmpdir : o->out_dir);
		goto out;
	}
	r.journal = fopen(res->manifest, "a");
	if (!r.journal) {
		error_errno(err, "%s: cannot open for appending", res->manifest);
		goto out;
	}
	if (ftell(r.journal) == 0)
		fprintf(r.journal, "# cairn-fetch manifest v1: path\tbytes\tsha256\tstatus\n");

	r.multi = curl_multi_init();
	if (!r.multi) {
		error_set(err, "curl_multi_init failed");
		goto out;
	}
	curl_multi_setopt(r.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->concurrency);
	curl_multi_setopt(r.multi, CURLMOPT_MAXCONNECTS, (long)o->concurrency);
	r.nslots = o->concurrency;
	r.slots = mem_calloc((size_t)r.nslots, sizeof(*r.slots));
	if (!r.slots) {
		error_set(err, "out of memory");
		goto out;
	}
	for (int i = 0; i < r.nslots; i++)
		if (slot_setup(&r, &r.slots[i], err) < 0)
			goto out;
	int nthreads = o->threads;
	if (nthreads <= 0) {
		int n = cpus_default_threads();
		nthreads = n > 8 ? 8 : n;
	}
	/* Bodies waiting for a worker, plus transfers, at most this many. */
	r.max_jobs = (uint64_t)r.nslots + 4 * (uint64_t)nthreads + 16;
	r.max_pool = (size_t)r.max_jobs;
	r.pool = mem_calloc(r.max_pool, sizeof(*r.pool));
	r.pool_cap = mem_calloc(r.max_pool, sizeof(*r.pool_cap));
	if (!r.pool || !r.pool_cap) {
		error_set(err, "out of memory");
		goto out;
	}
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	r.threads = mem_calloc((size_t)nthreads, sizeof(*r.threads));
	if (!r.threads) {
		pthread_mutex_destroy(&r.mu);
		pthread_cond_destroy(&r.cv);
		error_set(err, "out of memory");
		goto out;
	}
	raster_init();
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&r.threads[i], NULL, worker_main, &r) != 0) {
			error_set(err, "cannot start worker thread %d", i);
			goto out;
		}
		r.nthreads++;
	}

	while (r.resolved < r.total || r.active || r.inflight_jobs) {
		if (o->stop && *o->stop) {
			res->stats.interrupted = 1;
			break;
		}
		double now = clock_now(), wake = now + 1.0;
		start_transfers(&r, now, &wake);
		int running;
		if (curl_multi_perform(r.multi, &running) != CURLM_OK) {
			error_set(err, "curl_multi_perform failed");
			goto out;
		}
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(r.multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct slot *s;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			transfer_done(&r, s, m->data.result);
		}
		collect_jobs(&r);
		journal_flush_due(&r, clock_now());
		if (r.resolved >= r.total && !r.active && !r.inflight_jobs)
			break;
		/* Fill the slots that just freed before sleeping: the poll below
		 * then waits on their sockets instead of on a worker's wakeup. */
		now = clock_now();
		wake = now + 1.0;
		start_transfers(&r, now, &wake);
		int ms = r.active < r.nslots && (r.nheap || r.next_new < r.total)
				 ? (int)((wake - now) * 1000)
				 : 1000;
		if (ms < 0)
			ms = 0;
		if (ms > 1000)
			ms = 1000;
		/* A finished job is collected when the sockets next wake this thread;
		 * the workers wake it themselves (one write and one more poll return
		 * per tile otherwise) only when no transfer will: none in flight, or
		 * new ones held back until the workers catch up. */
		pthread_mutex_lock(&r.mu);
		r.wake_me = !r.active || r.inflight_jobs + (uint64_t)r.active >= r.max_jobs;
		if (r.wake_me && r.out_head)
			ms = 0;
		pthread_mutex_unlock(&r.mu);
		if (curl_multi_poll(r.multi, NULL, 0, ms, NULL) != CURLM_OK) {
			error_set(err, "curl_multi_poll failed");
			goto out;
		}
	}
	/* Interrupted: let the workers finish what they hold so no tile is lost. */
	while (r.inflight_jobs) {
		pthread_mutex_lock(&r.mu);
		r.wake_me = 1;
		int ms = r.out_head ? 0 : 100;
		pthread_mutex_unlock(&r.mu);
		curl_multi_poll(r.multi, NULL, 0, ms, NULL);
		collect_jobs(&r);
	}
	/* Make the tiles durable before the manifest says they are there. */
	int dfd = open(o->out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		syncfs(dfd);
		close(dfd);
	}
	if (r.journal) {
		fclose(r.journal);
		r.journal = NULL;
	}
	if (manifest_write(&r.man, res->manifest, err) < 0 || collect_failures(&r, res, err) < 0)
		goto out;
	rc = 0;
out:
	res->stats.seconds = clock_now() - t0;
	run_release(&r);
	return rc;
}

void fetch_result_release(struct fetch_result *res)
{
	for (size_t i = 0; i < res->nfailures; i++) {
		mem_free(res->failures[i].path);
		mem_free(res->failures[i].url);
		mem_free(res->failures[i].why);
	}
	mem_free(res->failures);
	res->failures = NULL;
	res->nfailures = 0;
}
