#include "geo/manifest.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/mem.h"

static const char *const status_names[] = {"ok", "missing", "failed"};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static size_t *manifest_find_slot(struct manifest *m, const char *path)
{
	size_t i = hash_str(path) & (m->nslot - 1);
	while (m->slot[i] != SIZE_MAX && strcmp(m->e[m->slot[i]].path, path) != 0)
		i = (i + 1) & (m->nslot - 1);
	return &m->slot[i];
}

static int manifest_grow_index(struct manifest *m)
{
	size_t ns = m->nslot ? m->nslot * 2 : 1024;
	size_t *slot = mem_alloc(ns * sizeof(*slot));
	if (!slot)
		return -1;
	for (size_t i = 0; i < ns; i++)
		slot[i] = SIZE_MAX;
	mem_free(m->slot);
	m->slot = slot;
	m->nslot = ns;
	for (size_t k = 0; k < m->n; k++)
		*manifest_find_slot(m, m->e[k].path) = k;
	return 0;
}

struct mentry *manifest_get(struct manifest *m, const char *path)
{
	if (!m->nslot)
		return NULL;
	size_t k = *manifest_find_slot(m, path);
	return k == SIZE_MAX ? NULL : &m->e[k];
}

/* Insert or replace; path is copied. */
int manifest_put(struct manifest *m, const char *path, uint64_t bytes, const char *sha,
			int status)
{
	if ((m->n + 1) * 2 > m->nslot && manifest_grow_index(m) < 0)
		return -1;
	size_t *s = manifest_find_slot(m, path);
	struct mentry *e;
	if (*s != SIZE_MAX) {
		e = &m->e[*s];
	} else {
		if (m->n == m->cap) {
			size_t nc = m->cap ? m->cap * 2 : 256;
			struct mentry *ne = mem_realloc(m->e, nc * sizeof(*ne));
			if (!ne)
				return -1;
			m->e = ne;
			m->cap = nc;
		}
		char *p = mem_strdup(path);
		if (!p)
			return -1;
		e = &m->e[m->n];
		e->path = p;
		*s = m->n++;
	}
	e->bytes = bytes;
	snprintf(e->sha, sizeof(e->sha), "%s", sha ? sha : "-");
	e->status = status;
	return 0;
}

void manifest_clear(struct manifest *m)
{
	for (size_t i = 0; i < m->n; i++)
		mem_free(m->e[i].path);
	m->n = 0;
	for (size_t i = 0; i < m->nslot; i++)
		m->slot[i] = SIZE_MAX;
}

void manifest_release(struct manifest *m)
{
	manifest_clear(m);
	mem_free(m->e);
	mem_free(m->slot);
	mem_free(m->source);
	memset(m, 0, sizeof(*m));
}

int manifest_set_source(struct manifest *m, const char *source)
{
	char *s = mem_strdup(source);
	if (!s)
		return -1;
	mem_free(m->source);
	m->source = s;
	return 0;
}

/* The source line is one line: a tab, newline, CR or backslash in the source
 * (a file name may hold any of them) is written as \t, \n, \r, \\. */
static void source_escape(struct buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '\\': buf_adds(b, "\\\\"); break;
		case '\t': buf_adds(b, "\\t"); break;
		case '\n': buf_adds(b, "\\n"); break;
		case '\r': buf_adds(b, "\\r"); break;
		default: buf_addc(b, *s);
		}
	}
}

static void source_unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			*o++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

static const char source_tag[] = "# source\t";

/* Later lines win: the file is a journal appended as tiles finish, compacted
 * at the end of a run. A torn last line (a crash mid-append) is ignored. */
int manifest_load(struct manifest *m, const char *path, struct error *err)
{
	if (!fs_exists(path))
		return 0;
	if (fs_is_dir(path)) {
		error_set(err, "%s: is a folder, not a manifest file: move it out of the way "
			  "(cairn-fetch keeps its record of the tiles there)", path);
		return MANIFEST_EBADINPUT;
	}
	char *data;
	size_t len;
	if (fs_read_all(path, &data, &len, err) < 0)
		return -1;
	int rc = 0;
	char *line = data;
	while (rc == 0 && line < data + len) {
		char *nl = strchr(line, '\n');
		if (!nl)
			break; /* torn last line */
		*nl = '\0';
		if (strncmp(line, source_tag, sizeof(source_tag) - 1) == 0) {
			source_unescape(line + sizeof(source_tag) - 1);
			if (manifest_set_source(m, line + sizeof(source_tag) - 1) < 0)
				rc = error_set(err, "%s: out of memory", path);
		} else if (line[0] != '#' && line[0] != '\0') {
			char p[PATH_MAX], sha[80], st[16];
			unsigned long long bytes;
			if (sscanf(line, "%4095[^\t]\t%llu\t%79[^\t]\t%15s", p, &bytes, sha, st) == 4) {
				int s = strcmp(st, "ok") == 0 ? M_OK
					: strcmp(st, "missing") == 0 ? M_MISSING
								     : M_FAILED;
				if (manifest_put(m, p, bytes, sha, s) < 0)
					rc = error_set(err, "%s: out of memory", path);
			}
		}
		line = nl + 1;
	}
	mem_free(data);
	return rc;
}

int manifest_write(const struct manifest *m, const char *path, struct error *err)
{
	struct buf b = BUF_INIT;
	buf_adds(&b, "# cairn-fetch manifest v1: path\tbytes\tsha256\tstatus\n");
	if (m->source) {
		buf_adds(&b, source_tag);
		source_escape(&b, m->source);
		buf_addc(&b, '\n');
	}
	for (size_t i = 0; i < m->n; i++)
		buf_addf(&b, "%s\t%llu\t%s\t%s\n", m->e[i].path, (unsigned long long)m->e[i].bytes,
			 m->e[i].sha, status_names[m->e[i].status]);
	if (b.failed) {
		buf_release(&b);
		return error_set(err, "%s: out of memory", path);
	}
	int rc = fs_write_atomic(path, b.s, b.len, err);
	buf_release(&b);
	return rc;
}

const char *manifest_status_name(int status)
{
	return status >= 0 && status <= M_FAILED ? status_names[status] : "failed";
}
