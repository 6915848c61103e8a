#include "jobs/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"

int job_retry_allowed(const char *retry_on, const char *kind, int exit_code)
{
	if (!strcmp(kind, "cancelled") || !strcmp(kind, "dependency"))
		return 0;
	if (!retry_on || !*retry_on)
		return 1;
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s", retry_on);
	for (char *save, *t = strtok_r(tmp, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		if (!strcmp(t, "any") || !strcmp(t, kind))
			return 1;
		if (!strncmp(t, "exit:", 5) && !strcmp(kind, "exit") && atoi(t + 5) == exit_code)
			return 1;
	}
	return 0;
}

int job_has_range(const struct job_res *res)
{
	return res->mem_max_mb > res->mem_mb || res->time_max_s > res->time_s;
}

/* From `first`, up to `most`: `last` (when known), doubled when `grow`. */
static long next_limit(long first, long most, long last, int grow)
{
	long hi = most > first ? most : first;
	if (first <= 0)
		return 0;
	long v = last > 0 ? last : first;
	if (grow)
		v = v > hi / 2 ? hi : 2 * v;
	return v < first ? first : v > hi ? hi : v;
}

struct job_limits job_next_limits(const struct job_res *res, const struct job_limits *last,
				  const char *last_kind)
{
	const char *k = last_kind ? last_kind : "";
	struct job_limits n = {
	    next_limit(res->mem_mb, res->mem_max_mb, last ? last->mem_mb : 0, !strcmp(k, "oom")),
	    next_limit(res->time_s, res->time_max_s, last ? last->time_s : 0,
		       !strcmp(k, "timeout"))};
	return n;
}

/* A limit's value as people read it, and as the spec writes it. */
static void limit_text(int mem, long v, char *out, size_t size)
{
	if (!v)
		snprintf(out, size, "not set");
	else if (mem)
		job_format_kib((long long)v * 1024, out, size);
	else
		job_format_seconds((double)v, out, size);
}

static void limit_spec(int mem, long lo, long hi, char *out, size_t size)
{
	char a[24], b[24];
	if (mem) {
		snprintf(out, size, "%ldM..%ldM", lo, hi);
		return;
	}
	clock_format_duration((double)lo, a, sizeof(a));
	clock_format_duration((double)hi, b, sizeof(b));
	snprintf(out, size, "%s..%s", a, b);
}

int job_limit_view(const struct job_res *res, const struct job_limits *last, const char *kind,
		   struct job_limit_view *v)
{
	int mem = !strcmp(kind, "oom");
	if (!mem && strcmp(kind, "timeout"))
		return 0;
	memset(v, 0, sizeof(*v));
	v->key = mem ? "mem" : "time";
	v->after = mem ? "an oom" : "a timeout";
	v->lo = mem ? res->mem_mb : res->time_s;
	long hi = mem ? res->mem_max_mb : res->time_max_s;
	long had = last ? (mem ? last->mem_mb : last->time_s) : 0;
	if (!had)
		had = v->lo;
	struct job_limits l = {mem ? had : 0, mem ? 0 : had};
	struct job_limits n = job_next_limits(res, &l, kind);
	long next = mem ? n.mem_mb : n.time_s;
	v->range = hi > v->lo;
	v->grows = v->range && next > had;
	limit_text(mem, had, v->had, sizeof(v->had));
	limit_text(mem, next, v->next, sizeof(v->next));
	if (v->range)
		limit_spec(mem, v->lo, hi, v->spec, sizeof(v->spec));
	else if (v->lo)
		limit_spec(mem, v->lo, 8 * v->lo, v->spec, sizeof(v->spec));
	else
		snprintf(v->spec, sizeof(v->spec), mem ? "1G..8G" : "1:00:00..8:00:00");
	return 1;
}

void job_format_kib(long long kib, char *out, size_t size)
{
	if (kib < 1024 * 1024)
		snprintf(out, size, "%.1f MiB", kib / 1024.0);
	else
		snprintf(out, size, "%.2f GiB", kib / (1024.0 * 1024.0));
}

void job_format_bytes(long long bytes, char *out, size_t size)
{
	static const char *unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	if (bytes < 1024) {
		snprintf(out, size, "%lld B", bytes);
		return;
	}
	double v = bytes / 1024.0;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, size, u >= 2 ? "%.2f %s" : "%.1f %s", v, unit[u]);
}

void job_format_seconds(double seconds, char *out, size_t size)
{
	if (seconds < 60)
		snprintf(out, size, "%.1f s", seconds);
	else
		clock_format_duration(seconds, out, size);
}

void job_format_rss(long mem_mb, long long kib, char *out, size_t size)
{
	char used[32];
	job_format_kib(kib, used, sizeof(used));
	int n = snprintf(out, size, "max RSS %s", used);
	if (mem_mb && n >= 0 && (size_t)n < size)
		snprintf(out + n, size - (size_t)n, " of mem = %ld MiB", mem_mb);
}
