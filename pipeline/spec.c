#include "pipeline/spec.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/fs.h"
#include "core/mem.h"
#include "core/parse.h"

/* libinih as Debian builds it reads lines of at most 199 characters
 * (INI_MAX_LINE 200) and does not report line numbers to the handler, so
 * cairn feeds it lines through its own reader: that reader counts lines,
 * rejects over-long ones instead of letting them be split, and notes whether
 * a line continues the previous value (indented). */

struct reader {
	FILE *f;
	const char *path;
	int line;
	int continuation; /* the line just read starts with white space */
	int too_long;     /* line number of the first over-long line */
	int header;       /* line of the last [section] header */
};

struct parser {
	struct spec *s;
	struct reader *r;
	struct error *err;
	int failed;
	const char *last_section;
	const char *last_key;
};

static char *read_line(char *str, int num, void *stream)
{
	struct reader *r = stream;
	if (!fgets(str, num, r->f))
		return NULL;
	r->line++;
	size_t len = strlen(str);
	int next = len > 0 && str[len - 1] != '\n' ? fgetc(r->f) : '\n';
	if (next == '\r') { /* CRLF: the line fits if \n follows */
		next = fgetc(r->f);
		if (next != '\n' && next != EOF)
			ungetc(next, r->f), next = '\r';
	}
	if (next != '\n' && next != EOF) { /* (a line of exactly num - 1 fits) */
		if (!r->too_long)
			r->too_long = r->line;
		int c;
		while ((c = fgetc(r->f)) != EOF && c != '\n')
			;
		str[0] = '\0'; /* drop it; reported after parsing */
		return str;
	}
	r->continuation = (str[0] == ' ' || str[0] == '\t') && str[strspn(str, " \t\r\n")] != '\0';
	/* an indented "[ -s f ]" continues a command; only a line of its own is a header */
	if (!r->continuation && str[strspn(str, " \t")] == '[')
		r->header = r->line;
	return str;
}

static int fail(struct parser *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct parser *p, int line, const char *fmt, ...)
{
	if (p->failed)
		return 0;
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	error_set(p->err, "%s:%d: %s", p->s->path, line, msg);
	p->failed = 1;
	return 0;
}

static int grow(void **arr, int n, size_t size)
{
	/* grow when n is 0 or a power of two */
	if (n & (n - 1))
		return 0;
	void *a = mem_realloc(*arr, (size_t)(n ? 2 * n : 1) * size);
	if (!a)
		return -1;
	*arr = a;
	return 0;
}

/* A line that can only be meant as a section header ("[ -s f ]" is shell). */
static int is_header(const char *v)
{
	size_t n = strlen(v);
	if (n < 3 || v[0] != '[' || v[n - 1] != ']')
		return 0;
	static const char *names[] = {"[pipeline]", "[params]", "[defaults]", "[slurm]"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(v, names[i]))
			return 1;
	return !strncmp(v, "[stage ", 7) && !strchr(v + 7, ' ');
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	struct spec *s = p->s;
	int line = p->r->line;
	if (p->failed)
		return 0;
	if (!section[0])
		return fail(p, line,
			    "'%s' comes before any section: put it under [pipeline], [params], "
			    "[defaults], [slurm] or a [stage NAME]",
			    name);
	struct spec_section *sec = s->nsections ? &s->sections[s->nsections - 1] : NULL;
	if (!sec || strcmp(sec->name, section) != 0 || sec->line != p->r->header) {
		for (int i = 0; i < s->nsections; i++) {
			if (strcmp(s->sections[i].name, section))
				continue;
			if (!strncmp(section, "stage ", 6))
				return fail(p, p->r->header, "duplicate stage '%s' (first at line %d)",
					    section + 6, s->sections[i].line);
			return fail(p, p->r->header, "section [%s] appears twice (first at line %d)",
				    section, s->sections[i].line);
		}
		if (grow((void **)&s->sections, s->nsections, sizeof(*s->sections)) < 0)
			return fail(p, line, "out of memory");
		sec = &s->sections[s->nsections++];
		memset(sec, 0, sizeof(*sec));
		sec->name = mem_strdup(section);
		sec->line = p->r->header ? p->r->header : line;
		if (!sec->name)
			return fail(p, line, "out of memory");
	}
	if (p->r->continuation && is_header(value))
		return fail(p, line,
			    "'%s' is indented, so it continues '%s' instead of starting a section: "
			    "write it at the start of the line",
			    value, name);
	if (p->r->continuation && sec->nkv > 0 && !strcmp(sec->kv[sec->nkv - 1].key, name)) {
		struct spec_kv *kv = &sec->kv[sec->nkv - 1];
		size_t a = strlen(kv->value), b = strlen(value);
		char *v = mem_realloc(kv->value, a + b + 2);
		if (!v)
			return fail(p, line, "out of memory");
		v[a] = '\n';
		memcpy(v + a + 1, value, b + 1);
		kv->value = v;
		return 1;
	}
	for (int i = 0; i < sec->nkv; i++)
		if (!strcmp(sec->kv[i].key, name))
			return fail(p, line, "[%s]: key '%s' given twice (first at line %d)", section,
				    name, sec->kv[i].line);
	if (grow((void **)&sec->kv, sec->nkv, sizeof(*sec->kv)) < 0)
		return fail(p, line, "out of memory");
	struct spec_kv *kv = &sec->kv[sec->nkv++];
	kv->key = mem_strdup(name);
	kv->value = mem_strdup(value);
	kv->line = line;
	if (!kv->key || !kv->value)
		return fail(p, line, "out of memory");
	return 1;
}

/* ---- values ---- */

static int parse_int(const char *v, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || end == v || *end != '\0' || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

/* "A" or "A..B", each read by fn: *lo = A, *hi = B or 0 without a range.
 * -1: not that, -2: B is below A, -3: A or B above the most fn takes. */
static int parse_range(const char *v, long (*fn)(const char *), long *lo, long *hi)
{
	char first[64];
	const char *dots = strstr(v, "..");
	size_t n = dots ? (size_t)(dots - v) : strlen(v);
	if (n >= sizeof(first))
		return -1;
	memcpy(first, v, n);
	first[n] = '\0';
	*hi = 0;
	if ((*lo = fn(first)) < 0 || (dots && (*hi = fn(dots + 2)) < 0))
		return *lo == -2 || *hi == -2 ? -3 : -1;
	return dots && *hi < *lo ? -2 : 0;
}

long spec_parse_mem_mb(const char *v)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (errno || end == v || !(x >= 0)) /* NaN too */
		return -1;
	double mb;
	switch (toupper((unsigned char)*end)) {
	case '\0':
	case 'M':
		mb = x;
		break;
	case 'K':
		mb = x / 1024;
		break;
	case 'G':
		mb = x * 1024;
		break;
	case 'T':
		mb = x * 1024 * 1024;
		break;
	default:
		return -1;
	}
	if (*end && end[1] != '\0' && !(toupper((unsigned char)end[1]) == 'B' && end[2] == '\0'))
		return -1;
	if (mb > (double)SPEC_MEM_MAX_MB)
		return -2;
	return mb > 0 && mb < 1 ? 1 : (long)mb;
}

/* Slurm's forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. */
long spec_parse_time_s(const char *v)
{
	long days = 0, f[3];
	int n = 0;
	const char *p = v;
	const char *dash = strchr(v, '-');
	char *end;
	int big = 0; /* a field above the most: said once the form is known good */
	if (dash) {
		errno = 0;
		days = strtol(v, &end, 10);
		if ((errno && errno != ERANGE) || end != dash || days < 0 || !isdigit((unsigned char)*v))
			return -1;
		big |= errno == ERANGE || days > SPEC_TIME_MAX_S / 86400;
		p = dash + 1;
	}
	while (n < 3) {
		if (!isdigit((unsigned char)*p))
			return -1;
		errno = 0;
		f[n] = strtol(p, &end, 10);
		big |= errno == ERANGE || f[n] > SPEC_TIME_MAX_S;
		n++;
		p = end;
		if (*p == '\0')
			break;
		if (*p != ':')
			return -1;
		p++;
	}
	if (*p != '\0')
		return -1;
	/* every field but the first is on a clock: minutes and seconds below
	   60, the hours of D-HH below 24 */
	for (int i = dash ? 0 : 1; i < n; i++)
		if (f[i] >= (dash && i == 0 ? 24 : 60))
			return -1;
	if (big) /* every field is now small enough for the sums below */
		return -2;
	long s;
	if (dash) /* D-HH[:MM[:SS]] */
		s = f[0] * 3600 + (n > 1 ? f[1] * 60 : 0) + (n > 2 ? f[2] : 0);
	else if (n == 1) /* minutes */
		s = f[0] * 60;
	else if (n == 2) /* MM:SS */
		s = f[0] * 60 + f[1];
	else
		s = f[0] * 3600 + f[1] * 60 + f[2];
	s += days * 86400;
	return s > SPEC_TIME_MAX_S ? -2 : s;
}

/* ---- what a spec file can hold ---- */

/* Why `key = v` cannot be written to a spec and read back the same (libinih
 * strips lines, drops blank and comment lines, ends a value at " ;"), or
 * NULL. The reason is for "cannot be kept in the run's spec.ini: ...". */
static const char *value_unwritable(const char *key, const char *v)
{
	static char why[160];
	size_t room = SPEC_LINE_MAX - strlen(key) - 1; /* the shortest form, key=v */
	if (*v && v[strlen(v) - 1] == '\n')
		return "an empty line inside a value is dropped by a spec";
	for (int n = 0; *v; n++) {
		size_t len = strcspn(v, "\n");
		if (len > room) {
			snprintf(why, sizeof(why),
				 "a line of %zu characters; with the key a spec line holds %d: put a "
				 "long value in a file and pass its path",
				 len, SPEC_LINE_MAX);
			return why;
		}
		if (n > 0 && len == 0)
			return "an empty line inside a value is dropped by a spec";
		if (len > 0 && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[len - 1])))
			return "white space at the start or end of a line is dropped by a spec";
		if (n > 0 && (v[0] == ';' || v[0] == '#'))
			return "a line that starts with ';' or '#' is a comment in a spec";
		for (size_t i = 1; i < len; i++)
			if (v[i] == ';' && isspace((unsigned char)v[i - 1]))
				return "' ;' starts a comment in a spec: write ';' without the space before it";
		v += len;
		if (*v == '\n')
			v++;
	}
	return NULL;
}

/* ---- ${param.X} in values other than commands ---- */

/* ", did you mean 'X'?" for an unknown param name X, or "". */
static const char *param_hint(const struct spec *s, const char *name, char *buf, size_t size)
{
	struct parse_near n;
	parse_near_init(&n, name);
	for (int k = 0; k < s->nparams; k++)
		parse_near_try(&n, s->params[k].key);
	return parse_did_you_mean(buf, size, n.best);
}

const char *spec_stage_hint(const struct spec *s, const char *name, char *buf, size_t size)
{
	struct parse_near n;
	parse_near_init(&n, name);
	for (int i = 0; i < s->nstages; i++)
		parse_near_try(&n, s->stages[i].name);
	return parse_did_you_mean(buf, size, n.best);
}

const char *spec_param(const struct spec *s, const char *name)
{
	for (int i = 0; i < s->nparams; i++)
		if (!strcmp(s->params[i].key, name))
			return s->params[i].value;
	return NULL;
}

/* Values and commands are walked piece by piece, the same way wherever
 * they are read: text, a variable ${...}, or a ${ with no } after it. $${
 * is text: the two characters ${. */
enum piece { PIECE_END, PIECE_TEXT, PIECE_VAR, PIECE_OPEN };

/* The piece at *p, moving *p past it: (at, n) is the text to copy, or the
 * whole variable with its ${ and } (the rest of the string for an OPEN). */
static enum piece next_piece(const char **p, const char **at, size_t *n)
{
	const char *c = *p;
	if (!*c)
		return PIECE_END;
	if (c[0] == '$' && c[1] == '$' && c[2] == '{') {
		*at = c + 1;
		*n = 2;
		*p = c + 3;
		return PIECE_TEXT;
	}
	if (c[0] == '$' && c[1] == '{') {
		const char *close = strchr(c + 2, '}');
		*at = c;
		*n = close ? (size_t)(close - c + 1) : strlen(c);
		*p = c + *n;
		return close ? PIECE_VAR : PIECE_OPEN;
	}
	size_t k = 1;
	while (c[k] && !(c[k] == '$' && (c[k + 1] == '{' || (c[k + 1] == '$' && c[k + 2] == '{'))))
		k++;
	*at = c;
	*n = k;
	*p = c + k;
	return PIECE_TEXT;
}

/* A variable piece ${param.NAME}: NAME's length, else -1. */
static int param_name_len(const char *at, size_t n)
{
	return n > 9 && !strncmp(at + 2, "param.", 6) ? (int)(n - 9) : -1;
}

/* Expand only ${param.X} (and $${ as an escape); used for every value but commands. */
static int expand_params(const struct spec *s, const char *v, int line, int keep_other,
			 char **out, struct error *err)
{
	struct buf b = BUF_INIT;
	const char *at;
	size_t n;
	enum piece k;
	for (const char *p = v; (k = next_piece(&p, &at, &n)) != PIECE_END;) {
		int len = k == PIECE_VAR ? param_name_len(at, n) : -1;
		if (k == PIECE_TEXT || (len < 0 && keep_other)) {
			buf_add(&b, at, n); /* keep_other: a frozen spec's ${HOME}, kept as text */
			continue;
		}
		if (len < 0) {
			buf_release(&b);
			return error_set(err,
					 "%s:%d: only ${param.NAME} may be used here, not '%.*s'",
					 s->path, line, (int)n, at);
		}
		char name[256];
		snprintf(name, sizeof(name), "%.*s", len, at + 8);
		const char *val = spec_param(s, name);
		if (!val) {
			char hint[320];
			buf_release(&b);
			return error_set(
			    err, "%s:%d: unknown variable ${param.%s}: no '%s' in [params]%s",
			    s->path, line, name, name, param_hint(s, name, hint, sizeof(hint)));
		}
		buf_adds(&b, val);
		if (b.len > SPEC_VALUE_MAX) { /* params that use each other over and over */
			buf_release(&b);
			return error_set(err,
					 "%s:%d: this value grows past %d MiB as its ${param.%s} "
					 "expand: do params use each other many times over?",
					 s->path, line, SPEC_VALUE_MAX >> 20, name);
		}
	}
	if (b.failed) {
		buf_release(&b);
		return error_set(err, "out of memory");
	}
	*out = buf_detach(&b);
	return *out ? 0 : error_set(err, "out of memory");
}

/* ---- resources ---- */

static const char *res_keys[] = {"cpus",    "mem",	"time",	       "gpus",	"ranks",
				 "retries", "retry_on", "throttle",    "group", "partition",
				 "account", "qos",	"sbatch_args", NULL};

static const char *slurm_keys[] = {"partition", "account", "qos", "sbatch_args", NULL};
static const char *pipeline_keys[] = {"name", "executor", "description", NULL};
static const char *stage_keys[] = {"command", "after", "array", "temp", NULL};

/* "'KEY', did you mean 'X'? (known: A, B, ...)" for an unknown key, from
 * the keys its section knows: one or two NULL-ended lists (b may be NULL). */
static const char *unknown_key(char *buf, size_t size, const char *key, const char *const *a,
			       const char *const *b)
{
	/* the words of Slurm, Snakemake and PBS for cairn's keys */
	static const char *aliases[][2] = {
	    {"memory", "mem"},	       {"mem_mb", "mem"},	  {"walltime", "time"},
	    {"time_limit", "time"},    {"cores", "cpus"},	  {"threads", "cpus"},
	    {"cpus_per_task", "cpus"}, {"cpus-per-task", "cpus"}, {"ntasks", "ranks"},
	    {"gres", "gpus"},	       {"retry", "retries"},	  {"depends", "after"},
	    {"depends_on", "after"},   {"needs", "after"},	  {"requires", "after"},
	    {"cmd", "command"},	       {"shell", "command"},	  {"tasks", "array"}};
	const char *const *lists[] = {a, b};
	struct parse_near n;
	parse_near_init(&n, key);
	for (int l = 0; l < 2; l++)
		for (int i = 0; lists[l] && lists[l][i]; i++) {
			parse_near_try(&n, lists[l][i]);
			for (size_t k = 0; k < sizeof(aliases) / sizeof(aliases[0]); k++)
				if (!strcasecmp(key, aliases[k][0]) &&
				    !strcmp(lists[l][i], aliases[k][1]))
					n.best = lists[l][i], n.dist = 0;
		}
	char hint[128], shown[256];
	size_t len = (size_t)snprintf(buf, size, "'%s'%s", parse_visible(shown, sizeof(shown), key),
				      parse_did_you_mean(hint, sizeof(hint), n.best));
	const char *sep = " (known: ";
	for (int l = 0; l < 2; l++)
		for (int i = 0; lists[l] && lists[l][i]; i++, sep = ", ")
			if (len < size)
				len += (size_t)snprintf(buf + len, size - len, "%s%s", sep,
							lists[l][i]);
	if (len < size)
		snprintf(buf + len, size - len, ")");
	return buf;
}

static int in_list(const char *k, const char *const *list)
{
	for (int i = 0; list[i]; i++)
		if (!strcmp(list[i], k))
			return 1;
	return 0;
}

static int set_str(char **dst, const char *v)
{
	char *d = mem_strdup(v);
	if (!d)
		return -1;
	mem_free(*dst);
	*dst = d;
	return 0;
}

static int res_set(const struct spec *s, struct job_res *r, const char *key, const char *v,
		   int line, struct error *err)
{
	long x;
	if (!strcmp(key, "cpus") || !strcmp(key, "gpus") || !strcmp(key, "ranks") ||
	    !strcmp(key, "retries") || !strcmp(key, "throttle") || !strcmp(key, "group")) {
		long lo = (!strcmp(key, "cpus") || !strcmp(key, "ranks") || !strcmp(key, "group"))
			      ? 1
			      : 0;
		if (parse_int(v, lo, 100000, &x) < 0)
			return error_set(err, "%s:%d: %s = '%s': want a whole number >= %ld",
					 s->path, line, key, v, lo);
		int *dst = !strcmp(key, "cpus")	     ? &r->cpus
			   : !strcmp(key, "gpus")    ? &r->gpus
			   : !strcmp(key, "ranks")   ? &r->ranks
			   : !strcmp(key, "retries") ? &r->retries
			   : !strcmp(key, "group")   ? &r->group
						     : &r->throttle;
		*dst = (int)x;
		return 0;
	}
	if (!strcmp(key, "mem") || !strcmp(key, "time")) {
		/* 4G, or 1G..8G: 1G first; after running out of it, twice as much */
		int mem = !strcmp(key, "mem");
		long lo, hi;
		int rc = parse_range(v, mem ? spec_parse_mem_mb : spec_parse_time_s, &lo, &hi);
		if (rc == -1)
			return error_set(
			    err, "%s:%d: %s = '%s': want %s, or a range like %s (%s first; after %s, twice as much, up to %s)",
			    s->path, line, key, v,
			    mem ? "a size like 512M or 4G" : "minutes or [D-]HH:MM:SS, like 30 or 01:30:00",
			    mem ? "1G..8G" : "1:00:00..8:00:00", mem ? "1G" : "1:00:00",
			    mem ? "running out of it" : "reaching it", mem ? "8G" : "8:00:00");
		if (rc == -2)
			return error_set(err,
					 "%s:%d: %s = '%s': the range ends below its start; write "
					 "the first %s first (%s)",
					 s->path, line, key, v, mem ? "size" : "time",
					 mem ? "1G..8G" : "1:00:00..8:00:00");
		if (rc == -3)
			return error_set(err, "%s:%d: %s = '%s': more than %s, the most a spec takes",
					 s->path, line, key, v, mem ? "1024T" : "365 days (365-00)");
		if (lo == 0) /* as --mem 0 is refused: no limit is no key */
			return error_set(err, "%s:%d: %s = '%s': want more than 0 (leave %s out for "
					      "no limit)",
					 s->path, line, key, v, key);
		*(mem ? &r->mem_mb : &r->time_s) = lo;
		*(mem ? &r->mem_max_mb : &r->time_max_s) = hi;
		return 0;
	}
	if (!strcmp(key, "retry_on")) {
		/* validate each item */
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s", v);
		for (char *save, *t = strtok_r(tmp, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
			static const char *kinds[] = {"any",	   "exit",	"signal", "oom",
						      "timeout",   "preempted", "node_fail", "lost",
						      "output",	   NULL};
			int ok = 0;
			for (int i = 0; kinds[i]; i++)
				ok |= !strcmp(t, kinds[i]);
			if (!strncmp(t, "exit:", 5) && parse_int(t + 5, 0, 255, &x) == 0)
				ok = 1;
			if (!ok)
				return error_set(err,
						 "%s:%d: retry_on: unknown failure kind '%s' (known: any, "
						 "exit, exit:N, signal, oom, timeout, preempted, node_fail, "
						 "lost, output)",
						 s->path, line, t);
		}
		return set_str(&r->retry_on, v) < 0 ? error_set(err, "out of memory") : 0;
	}
	char **dst = !strcmp(key, "partition") ? &r->partition
		     : !strcmp(key, "account") ? &r->account
		     : !strcmp(key, "qos")     ? &r->qos
					       : &r->sbatch_args;
	return set_str(dst, v) < 0 ? error_set(err, "out of memory") : 0;
}

static int res_copy(struct job_res *dst, const struct job_res *src)
{
	*dst = *src;
	dst->retry_on = src->retry_on ? mem_strdup(src->retry_on) : NULL;
	dst->partition = src->partition ? mem_strdup(src->partition) : NULL;
	dst->account = src->account ? mem_strdup(src->account) : NULL;
	dst->qos = src->qos ? mem_strdup(src->qos) : NULL;
	dst->sbatch_args = src->sbatch_args ? mem_strdup(src->sbatch_args) : NULL;
	if ((src->retry_on && !dst->retry_on) || (src->partition && !dst->partition) ||
	    (src->account && !dst->account) || (src->qos && !dst->qos) ||
	    (src->sbatch_args && !dst->sbatch_args))
		return -1;
	return 0;
}

static void res_release(struct job_res *r)
{
	mem_free(r->retry_on);
	mem_free(r->partition);
	mem_free(r->account);
	mem_free(r->qos);
	mem_free(r->sbatch_args);
	memset(r, 0, sizeof(*r));
}

/* ---- sections ---- */

static int valid_name(const char *n)
{
	if (!*n)
		return 0;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			return 0;
	return 1;
}

static int load_pipeline(struct spec *s, struct spec_section *sec, struct error *err)
{
	for (int i = 0; i < sec->nkv; i++) {
		struct spec_kv *kv = &sec->kv[i];
		char **dst;
		if (!strcmp(kv->key, "name"))
			dst = &s->name;
		else if (!strcmp(kv->key, "executor"))
			dst = &s->executor;
		else if (!strcmp(kv->key, "description"))
			continue;
		else {
			char what[512];
			return error_set(
			    err, "%s:%d: [pipeline]: unknown key %s", s->path, kv->line,
			    unknown_key(what, sizeof(what), kv->key, pipeline_keys, NULL));
		}
		if (set_str(dst, kv->value) < 0)
			return error_set(err, "out of memory");
	}
	if (s->name && !valid_name(s->name))
		return error_set(err, "%s:%d: [pipeline]: name '%s': use letters, digits, '-' and '_'",
				 s->path, sec->line, s->name);
	if (s->executor && strcmp(s->executor, "local") && strcmp(s->executor, "slurm"))
		return error_set(err, "%s:%d: [pipeline]: executor '%s': want local or slurm", s->path,
				 sec->line, s->executor);
	return 0;
}

static int load_res_section(struct spec *s, struct spec_section *sec, struct job_res *r,
			    int slurm_only, struct error *err)
{
	for (int i = 0; i < sec->nkv; i++) {
		struct spec_kv *kv = &sec->kv[i];
		const char **known = slurm_only ? slurm_keys : res_keys;
		char what[512];
		if (!in_list(kv->key, known))
			return error_set(err, "%s:%d: [%s]: unknown key %s", s->path, kv->line,
					 sec->name,
					 unknown_key(what, sizeof(what), kv->key, known, NULL));
		char *v;
		if (expand_params(s, kv->value, kv->line, 0, &v, err) < 0)
			return -1;
		int rc = res_set(s, r, kv->key, v, kv->line, err);
		mem_free(v);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int split_after(struct spec_stage *st, const char *v)
{
	char *tmp = mem_strdup(v);
	if (!tmp)
		return -1;
	for (char *save, *t = strtok_r(tmp, ", \t\n", &save); t; t = strtok_r(NULL, ", \t\n", &save)) {
		if (grow((void **)&st->after, st->nafter, sizeof(char *)) < 0 ||
		    !(st->after[st->nafter] = mem_strdup(t))) {
			mem_free(tmp);
			return -1;
		}
		st->nafter++;
	}
	mem_free(tmp);
	return 0;
}

static int load_stage(struct spec *s, struct spec_section *sec, const char *name, struct error *err)
{
	if (!valid_name(name))
		return error_set(err, "%s:%d: [stage %s]: stage names use letters, digits, '-' and '_'",
				 s->path, sec->line, name);
	for (int i = 0; i < s->nstages; i++)
		if (!strcmp(s->stages[i].name, name))
			return error_set(err, "%s:%d: duplicate stage '%s' (first at line %d)", s->path,
					 sec->line, name, s->stages[i].line);
	if (grow((void **)&s->stages, s->nstages, sizeof(*s->stages)) < 0)
		return error_set(err, "out of memory");
	struct spec_stage *st = &s->stages[s->nstages++];
	memset(st, 0, sizeof(*st));
	st->name = mem_strdup(name);
	st->line = sec->line;
	st->ntasks = 1;
	if (!st->name || res_copy(&st->res, &s->defaults) < 0)
		return error_set(err, "out of memory");
	for (int i = 0; i < sec->nkv; i++) {
		struct spec_kv *kv = &sec->kv[i];
		if (!strcmp(kv->key, "command")) {
			if (set_str(&st->command, kv->value) < 0)
				return error_set(err, "out of memory");
			st->command_line = kv->line;
		} else if (!strcmp(kv->key, "after")) {
			char *v;
			if (expand_params(s, kv->value, kv->line, 0, &v, err) < 0)
				return -1;
			int rc = split_after(st, v);
			mem_free(v);
			if (rc < 0)
				return error_set(err, "out of memory");
			st->after_line = kv->line;
		} else if (!strcmp(kv->key, "array")) {
			char *v;
			long x;
			if (expand_params(s, kv->value, kv->line, 0, &v, err) < 0)
				return -1;
			int rc = parse_int(v, 1, SPEC_MAX_ARRAY, &x);
			if (rc < 0)
				error_set(err, "%s:%d: stage '%s': bad array size '%s': want 1 to %d",
					  s->path, kv->line, name, v, SPEC_MAX_ARRAY);
			mem_free(v);
			if (rc < 0)
				return -1;
			st->ntasks = (int)x;
		} else if (!strcmp(kv->key, "temp")) {
			char *v;
			if (expand_params(s, kv->value, kv->line, 0, &v, err) < 0)
				return -1;
			int yes = !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1");
			int no = !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0");
			if (!yes && !no)
				error_set(err, "%s:%d: stage '%s': temp = %s: want yes or no",
					  s->path, kv->line, name, v);
			mem_free(v);
			if (!yes && !no)
				return -1;
			st->temp = yes;
			st->temp_line = kv->line;
		} else if (in_list(kv->key, res_keys)) {
			char *v;
			if (expand_params(s, kv->value, kv->line, 0, &v, err) < 0)
				return -1;
			int rc = res_set(s, &st->res, kv->key, v, kv->line, err);
			mem_free(v);
			if (rc < 0)
				return -1;
		} else {
			char what[512];
			return error_set(
			    err, "%s:%d: stage '%s': unknown key %s", s->path, kv->line, name,
			    unknown_key(what, sizeof(what), kv->key, stage_keys, res_keys));
		}
	}
	if (!st->command)
		return error_set(err, "%s:%d: stage '%s' has no command", s->path, sec->line, name);
	if (!st->command[strspn(st->command, " \t\r\n")])
		return error_set(err,
				 "%s:%d: stage '%s': command is empty: give what a task runs (`true` "
				 "for one that does nothing)",
				 s->path, st->command_line, name);
	return 0;
}

/* ---- variables in commands ---- */

enum var_kind { VAR_OUT, VAR_TASK, VAR_NTASKS, VAR_RUN, VAR_PARAM, VAR_IN_ALL, VAR_IN_TASK };

struct var {
	enum var_kind kind;
	char name[128]; /* param or stage name */
	char path[256]; /* ${in.STAGE/PATH}: PATH, joined to each folder; or "" */
};

/* A path under an input folder: no empty part, no "..", and only the
 * characters run folders may have (they are pasted unquoted), plus the
 * shell's * and ? for a glob. */
static int valid_in_path(const char *p)
{
	if (!*p || *p == '/')
		return 0;
	for (const char *c = p; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("/._-+,:@=~*?", *c))
			return 0;
	for (const char *c = p; *c;) {
		size_t n = strcspn(c, "/");
		if (n == 0 || (n == 2 && !memcmp(c, "..", 2)))
			return 0;
		c += n;
		if (*c == '/' && !*++c)
			return 0; /* a trailing / */
	}
	return 1;
}

/* Parse the text between "${" and "}": 0, -1 not a variable, -2 an input
 * with a path it may not have. */
/* ", did you mean '${task}'?" for an unknown ${...} whose first word is a
 * typo of a variable's (${tsk}, ${params.x}, ${input.a}), or "". */
static const char *var_hint(const char *p, size_t n, char *buf, size_t size)
{
	static const char *words[] = {"out", "task", "ntasks", "run", "param", "in", NULL};
	char word[64];
	size_t w = strcspn(p, ".[/}");
	if (w > n)
		w = n;
	if (w >= sizeof(word))
		return "";
	snprintf(word, sizeof(word), "%.*s", (int)w, p);
	int shell = w == n && w > 0 && !isdigit((unsigned char)word[0]);
	for (size_t i = 0; i < w; i++)
		shell &= isupper((unsigned char)word[i]) || isdigit((unsigned char)word[i]) ||
			 word[i] == '_';
	if (shell) { /* ${HOME}: the shell's, which cairn would take as its own */
		snprintf(buf, size, ", for the shell's variable write '$%s' or '$${%s}'", word,
			 word);
		return buf;
	}
	const char *best = parse_nearest(word, words);
	if (!strcasecmp(word, "input") || !strcasecmp(word, "inputs"))
		best = "in";
	if (!strcasecmp(word, "output") || !strcasecmp(word, "outdir"))
		best = "out";
	if (!best || !strcmp(best, word))
		return "";
	int dotted = !strcmp(best, "param") || !strcmp(best, "in");
	if (dotted != (w < n && p[w] == '.'))
		return ""; /* ${param} or ${task.x}: not a typo of a name */
	snprintf(buf, size, ", did you mean '${%s%.*s}'?", best, (int)(n - w), p + w);
	return buf;
}

static int parse_var(const char *p, size_t n, struct var *v)
{
	if (n >= sizeof(v->name) + sizeof(v->path))
		return -1;
	v->name[0] = v->path[0] = '\0';
#define IS(lit) (n == sizeof(lit) - 1 && !memcmp(p, lit, n))
	if (IS("out"))
		v->kind = VAR_OUT;
	else if (IS("task"))
		v->kind = VAR_TASK;
	else if (IS("ntasks"))
		v->kind = VAR_NTASKS;
	else if (IS("run"))
		v->kind = VAR_RUN;
	else if (n > 6 && !memcmp(p, "param.", 6)) {
		v->kind = VAR_PARAM;
		snprintf(v->name, sizeof(v->name), "%.*s", (int)(n - 6), p + 6);
	} else if (n > 3 && !memcmp(p, "in.", 3)) {
		/* in.STAGE, in.STAGE[task], each with an optional /PATH */
		const char *q = p + 3, *end = p + n;
		size_t m = strcspn(q, "[/}");
		if (q + m > end || m >= sizeof(v->name))
			return -1;
		snprintf(v->name, sizeof(v->name), "%.*s", (int)m, q);
		q += m;
		v->kind = VAR_IN_ALL;
		if (end - q >= 6 && !memcmp(q, "[task]", 6)) {
			v->kind = VAR_IN_TASK;
			q += 6;
		}
		if (q < end) {
			if (*q != '/')
				return -1;
			if ((size_t)(end - q) >= sizeof(v->path))
				return -2;
			snprintf(v->path, sizeof(v->path), "%.*s", (int)(end - q - 1), q + 1);
			if (!valid_in_path(v->path))
				return -2;
		}
		if (!valid_name(v->name))
			return -1;
	} else {
		return -1;
	}
#undef IS
	return 0;
}

void spec_task_dir(struct buf *b, const char *run, const char *stage, int task)
{
	buf_addf(b, "%s/stages/%s/%d", run, stage, task);
}

void spec_out_dir(struct buf *b, const char *run, const char *stage, int task)
{
	buf_addf(b, "%s/stages/%s/%d/out", run, stage, task);
}

static int is_after(const struct spec_stage *st, const char *name)
{
	for (int i = 0; i < st->nafter; i++)
		if (!strcmp(st->after[i], name))
			return 1;
	return 0;
}

int spec_expand_command(const struct spec *s, int stage, const struct spec_ctx *ctx,
			struct buf *b, struct error *err)
{
	const struct spec_stage *st = &s->stages[stage];
	const char *at;
	size_t n;
	enum piece k;
	for (const char *p = st->command; (k = next_piece(&p, &at, &n)) != PIECE_END;) {
		if (k == PIECE_TEXT) {
			buf_add(b, at, n);
			continue;
		}
		struct var v;
		int bad = k == PIECE_VAR ? parse_var(at + 2, n - 3, &v) : -1;
		if (bad == -2)
			return error_set(
			    err,
			    "%s:%d: stage '%s': %.*s: a path under an input may have "
			    "letters, digits and / . _ - + , : @ = ~ * ? (no empty or .. "
			    "part, under 256 characters)",
			    s->path, st->command_line, st->name, (int)n, at);
		char hint[320];
		if (bad < 0)
			return error_set(
			    err,
			    "%s:%d: stage '%s': unknown variable '%.*s'%s (known: ${out}, "
			    "${task}, ${ntasks}, ${run}, ${param.NAME}, ${in.STAGE}, "
			    "${in.STAGE[task]}, each ${in...} with a /PATH under it; "
			    "write $${ for a literal ${)",
			    s->path, st->command_line, st->name, (int)n, at,
			    k == PIECE_VAR ? var_hint(at + 2, n - 3, hint, sizeof(hint)) : "");
		int up;
		switch (v.kind) {
		case VAR_OUT:
			spec_out_dir(b, ctx->run, st->name, ctx->task);
			break;
		case VAR_TASK:
			buf_addf(b, "%d", ctx->task);
			break;
		case VAR_NTASKS:
			buf_addf(b, "%d", st->ntasks);
			break;
		case VAR_RUN:
			buf_adds(b, ctx->run);
			break;
		case VAR_PARAM: {
			const char *val = spec_param(s, v.name);
			char hint[320];
			if (!val)
				return error_set(
				    err,
				    "%s:%d: stage '%s': unknown variable ${param.%s}: no "
				    "'%s' in [params]%s",
				    s->path, st->command_line, st->name, v.name, v.name,
				    param_hint(s, v.name, hint, sizeof(hint)));
			buf_adds(b, val);
			break;
		}
		case VAR_IN_ALL:
		case VAR_IN_TASK:
			up = spec_stage_index(s, v.name);
			if (up < 0) {
				char hint[320];
				return error_set(
				    err, "%s:%d: stage '%s': ${in.%s}: no stage '%s'%s", s->path,
				    st->command_line, st->name, v.name, v.name,
				    spec_stage_hint(s, v.name, hint, sizeof(hint)));
			}
			if (!is_after(st, v.name))
				return error_set(err,
						 "%s:%d: stage '%s' reads ${in.%s} but does not run "
						 "after it: add 'after = %s'",
						 s->path, st->command_line, st->name, v.name, v.name);
			if (v.kind == VAR_IN_TASK) {
				if (s->stages[up].ntasks != st->ntasks)
					return error_set(err,
							 "%s:%d: stage '%s': ${in.%s[task]} needs arrays "
							 "of equal size, but '%s' has %d tasks and '%s' %d: "
							 "give '%s' array = %d, or read all of them with "
							 "${in.%s}",
							 s->path, st->command_line, st->name, v.name,
							 v.name, s->stages[up].ntasks, st->name,
							 st->ntasks, st->name, s->stages[up].ntasks,
							 v.name);
				spec_out_dir(b, ctx->run, v.name, ctx->task);
				if (v.path[0])
					buf_addf(b, "/%s", v.path);
			} else {
				for (int t = 0; t < s->stages[up].ntasks; t++) {
					if (t)
						buf_addc(b, ' ');
					spec_out_dir(b, ctx->run, v.name, t);
					if (v.path[0])
						buf_addf(b, "/%s", v.path);
				}
			}
			break;
		}
	}
	if (b->failed)
		return error_set(err, "out of memory expanding the command of stage '%s'", st->name);
	return 0;
}

int spec_names_itself(const struct spec *s)
{
	for (int i = 0; i < s->nsections; i++)
		for (int k = 0; k < s->sections[i].nkv; k++)
			if (!strcmp(s->sections[i].name, "pipeline") &&
			    !strcmp(s->sections[i].kv[k].key, "name"))
				return 1;
	return 0;
}

int spec_set_path(struct spec *s, const char *path, struct error *err)
{
	char *copy = mem_strdup(path);
	if (!copy)
		return error_set(err, "out of memory");
	mem_free(s->path);
	s->path = copy;
	return 0;
}

int spec_stage_index(const struct spec *s, const char *name)
{
	for (int i = 0; i < s->nstages; i++)
		if (!strcmp(s->stages[i].name, name))
			return i;
	return -1;
}

/* How a command reads stage X: *all for a ${in.X...} of every task, *one
 * for a ${in.X[task]...} of its own (a variable that does not parse is
 * the expansion's error, said at load). */
static void in_uses(const char *cmd, const char *x, int *all, int *one)
{
	*all = *one = 0;
	const char *at;
	size_t n;
	enum piece k;
	for (const char *p = cmd; (k = next_piece(&p, &at, &n)) != PIECE_END;) {
		struct var v;
		if (k == PIECE_VAR && parse_var(at + 2, n - 3, &v) == 0 && !strcmp(v.name, x)) {
			*all |= v.kind == VAR_IN_ALL;
			*one |= v.kind == VAR_IN_TASK;
		}
	}
}

/* Resolve `after` names into edges; one_to_one when the command only uses
 * ${in.X[task]} for X. */
static int resolve_edges(struct spec *s, struct error *err)
{
	for (int i = 0; i < s->nstages; i++) {
		struct spec_stage *st = &s->stages[i];
		if (st->nafter == 0)
			continue;
		st->in = mem_calloc((size_t)st->nafter, sizeof(*st->in));
		if (!st->in)
			return error_set(err, "out of memory");
		for (int a = 0; a < st->nafter; a++) {
			int up = spec_stage_index(s, st->after[a]);
			char hint[320];
			if (up < 0)
				return error_set(
				    err, "%s:%d: stage '%s': after = %s: no stage named '%s'%s",
				    s->path, st->after_line, st->name, st->after[a], st->after[a],
				    spec_stage_hint(s, st->after[a], hint, sizeof(hint)));
			if (up == i)
				return error_set(err, "%s:%d: stage '%s' cannot run after itself",
						 s->path, st->after_line, st->name);
			for (int b = 0; b < a; b++)
				if (st->in[b].from == up)
					return error_set(err, "%s:%d: stage '%s': '%s' is listed twice in after",
							 s->path, st->after_line, st->name, st->after[a]);
			int all, one;
			in_uses(st->command, st->after[a], &all, &one);
			st->in[st->nin].from = up;
			st->in[st->nin].one_to_one = one && !all;
			st->nin++;
		}
	}
	/* A temp stage's outputs go when its readers are done: one that nothing
	 * reads would hold the run's result, and would never be released. */
	for (int i = 0; i < s->nstages; i++) {
		int read = !s->stages[i].temp;
		for (int j = 0; j < s->nstages && !read; j++)
			for (int e = 0; e < s->stages[j].nin; e++)
				read |= s->stages[j].in[e].from == i;
		if (!read)
			return error_set(
			    err,
			    "%s:%d: stage '%s': temp = yes, but no stage runs after it: "
			    "its outputs are the run's result; drop temp, or add the stage "
			    "that reads them",
			    s->path, s->stages[i].temp_line, s->stages[i].name);
	}
	return 0;
}

/* Kahn's algorithm; on a cycle, name its stages in order. */
static int topo_sort(struct spec *s, struct error *err)
{
	int n = s->nstages;
	int *indeg = mem_calloc((size_t)n + 1, sizeof(int));
	s->order = mem_calloc((size_t)n + 1, sizeof(int));
	if (!indeg || !s->order) {
		mem_free(indeg);
		return error_set(err, "out of memory");
	}
	for (int i = 0; i < n; i++)
		indeg[i] = s->stages[i].nin;
	int head = 0, tail = 0;
	for (int i = 0; i < n; i++)
		if (indeg[i] == 0)
			s->order[tail++] = i;
	while (head < tail) {
		int u = s->order[head++];
		for (int i = 0; i < n; i++)
			for (int e = 0; e < s->stages[i].nin; e++)
				if (s->stages[i].in[e].from == u && --indeg[i] == 0)
					s->order[tail++] = i;
	}
	if (tail == n) {
		mem_free(indeg);
		return 0;
	}
	/* Walk back along edges from a stage left on the cycle until a stage repeats. */
	int start = -1;
	for (int i = 0; i < n && start < 0; i++)
		if (indeg[i] > 0)
			start = i;
	int *seen = mem_calloc((size_t)n, sizeof(int));
	int *path = mem_calloc((size_t)n + 1, sizeof(int));
	if (!seen || !path) {
		mem_free(indeg);
		mem_free(seen);
		mem_free(path);
		return error_set(err, "out of memory");
	}
	int len = 0, cur = start;
	while (!seen[cur]) {
		seen[cur] = len + 1;
		path[len++] = cur;
		int next = -1;
		for (int e = 0; e < s->stages[cur].nin && next < 0; e++)
			if (indeg[s->stages[cur].in[e].from] > 0)
				next = s->stages[cur].in[e].from;
		cur = next;
	}
	struct buf b = BUF_INIT;
	for (int k = len - 1; k >= seen[cur] - 1; k--)
		buf_addf(&b, "%s -> ", s->stages[path[k]].name);
	buf_adds(&b, s->stages[path[len - 1]].name);
	error_set(err, "%s:%d: cycle in the stages: %s", s->path, s->stages[cur].after_line,
		  buf_str(&b));
	buf_release(&b);
	mem_free(indeg);
	mem_free(seen);
	mem_free(path);
	return -1;
}

static int apply_sets(struct spec *s, char *const *sets, int nsets, struct error *err)
{
	for (int i = 0; i < nsets; i++) {
		const char *eq = strchr(sets[i], '=');
		if (!eq || eq == sets[i])
			return error_set(err, "--set %s: want NAME=VALUE", sets[i]);
		char name[256];
		snprintf(name, sizeof(name), "%.*s", (int)(eq - sets[i]), sets[i]);
		int found = 0;
		for (int k = 0; k < s->nparams; k++) {
			if (strcmp(s->params[k].key, name))
				continue;
			if (set_str(&s->params[k].value, eq + 1) < 0)
				return error_set(err, "out of memory");
			found = 1;
		}
		/* and as written, for the frozen copy */
		for (int j = 0; j < s->nsections; j++)
			for (int k = 0; k < s->sections[j].nkv; k++)
				if (!strcmp(s->sections[j].name, "params") &&
				    !strcmp(s->sections[j].kv[k].key, name) &&
				    set_str(&s->sections[j].kv[k].value, eq + 1) < 0)
					return error_set(err, "out of memory");
		char hint[320];
		if (!found)
			return error_set(err, "--set %s: %s has no param '%s' in [params]%s",
					 sets[i], s->path, name,
					 param_hint(s, name, hint, sizeof(hint)));
		const char *why = value_unwritable(name, eq + 1);
		if (why)
			return error_set(err, "--set %s: cannot be kept in the run's spec.ini: %s", name,
					 why);
	}
	return 0;
}

/* [params] values may use ${param.Y} (and $${ for a literal ${), nothing
 * else: a param is text, resolved once here, so that every use pastes
 * plain text. state: 0 not yet, 1 being resolved (a cycle if met again). */
static int resolve_param(struct spec *s, int i, char *state, struct error *err)
{
	struct spec_kv *kv = &s->params[i];
	if (state[i] == 2)
		return 0;
	if (state[i] == 1)
		return error_set(err, "%s:%d: [params] %s refers back to itself (a cycle of ${param.X})",
				 s->path, kv->line, kv->key);
	state[i] = 1;
	const char *at;
	size_t n;
	enum piece k;
	for (const char *p = kv->value; (k = next_piece(&p, &at, &n)) != PIECE_END;) {
		int len = k == PIECE_VAR ? param_name_len(at, n) : -1;
		if (k == PIECE_TEXT || (len < 0 && s->frozen))
			continue; /* frozen: an old run's ${HOME}, text as it was */
		if (len < 0)
			return error_set(
			    err,
			    "%s:%d: [params] %s: only ${param.NAME} may be used in a "
			    "param, not '%.*s' (use it in the command itself; $${ for a "
			    "literal ${)",
			    s->path, kv->line, kv->key, (int)n, at);
		for (int j = 0; j < s->nparams; j++)
			if ((size_t)len == strlen(s->params[j].key) &&
			    !strncmp(at + 8, s->params[j].key, (size_t)len) &&
			    resolve_param(s, j, state, err) < 0)
				return -1;
	}
	char *v;
	if (expand_params(s, kv->value, kv->line, s->frozen, &v, err) < 0)
		return -1;
	mem_free(kv->value);
	kv->value = v;
	state[i] = 2;
	return 0;
}

static int resolve_params(struct spec *s, struct error *err)
{
	char *state = mem_calloc((size_t)s->nparams + 1, 1);
	if (!state)
		return error_set(err, "out of memory");
	int rc = 0;
	for (int i = 0; i < s->nparams && rc == 0; i++)
		rc = resolve_param(s, i, state, err);
	mem_free(state);
	return rc;
}

static int load(struct spec *s, const char *path, char *const *sets, int nsets, int frozen,
		struct error *err);

int spec_load(struct spec *s, const char *path, char *const *sets, int nsets, struct error *err)
{
	return load(s, path, sets, nsets, 0, err);
}

int spec_load_frozen(struct spec *s, const char *path, char *const *sets, int nsets,
		     struct error *err)
{
	return load(s, path, sets, nsets, 1, err);
}

/* ", did you mean '[stage a]'?" for an unknown section ([stages a],
 * [Pipeline], [param]), or "". */
static const char *section_hint(const char *name, char *buf, size_t size)
{
	static const char *words[] = {"pipeline", "params", "defaults", "slurm", "stage", NULL};
	char word[64];
	size_t w = strcspn(name, " ");
	if (w >= sizeof(word))
		return "";
	snprintf(word, sizeof(word), "%.*s", (int)w, name);
	const char *best = parse_nearest(word, words);
	if (!best || (!strcmp(best, "stage") != (name[w] == ' ')))
		return "";
	snprintf(buf, size, ", did you mean '[%s%s]'?", best, name + w);
	return buf;
}

static int load(struct spec *s, const char *path, char *const *sets, int nsets, int frozen,
		struct error *err)
{
	memset(s, 0, sizeof(*s));
	s->frozen = frozen;
	s->path = mem_strdup(path);
	if (!s->path)
		return error_set(err, "out of memory");
	struct reader r = {0};
	r.path = path;
	r.f = fopen(path, "r");
	if (!r.f)
		return error_errno(err, "%s: cannot read the spec", path);
	struct stat st = {0};
	char head[4096];
	size_t got = fstat(fileno(r.f), &st) == 0 && S_ISREG(st.st_mode)
			     ? fread(head, 1, sizeof(head), r.f)
			     : 0;
	if (S_ISDIR(st.st_mode) || memchr(head, '\0', got)) {
		fclose(r.f);
		return error_set(err, "%s: %s, not a spec (an INI text file)", path,
				 S_ISDIR(st.st_mode) ? "a folder" : "a binary file");
	}
	rewind(r.f);
	struct parser p = {s, &r, err, 0, NULL, NULL};
	int rc = ini_parse_stream(read_line, &r, on_pair, &p);
	int read_failed = ferror(r.f);
	fclose(r.f);
	if (read_failed)
		return error_set(err, "%s: read error", path);
	if (p.failed)
		return -1;
	if (r.too_long)
		return error_set(err,
				 "%s:%d: line longer than %d characters: continue a long value on "
				 "indented lines",
				 path, r.too_long, SPEC_LINE_MAX);
	if (rc > 0)
		return error_set(err, "%s:%d: not INI: want [section] or key = value", path, rc);
	if (rc < 0)
		return error_set(err, "%s: cannot parse (out of memory)", path);

	/* [params] first: every other value may use ${param.X}. */
	for (int i = 0; i < s->nsections; i++) {
		struct spec_section *sec = &s->sections[i];
		if (strcmp(sec->name, "params"))
			continue;
		s->params = mem_calloc((size_t)sec->nkv + 1, sizeof(*s->params));
		if (!s->params)
			return error_set(err, "out of memory");
		for (int k = 0; k < sec->nkv; k++) {
			s->params[k].key = mem_strdup(sec->kv[k].key);
			s->params[k].value = mem_strdup(sec->kv[k].value);
			s->params[k].line = sec->kv[k].line;
			s->nparams++; /* counted first: spec_release frees a half-made pair */
			if (!s->params[k].key || !s->params[k].value)
				return error_set(err, "out of memory");
		}
	}
	if (apply_sets(s, sets, nsets, err) < 0 || resolve_params(s, err) < 0)
		return -1;
	s->defaults.cpus = 1;
	s->defaults.ranks = 1;
	for (int i = 0; i < s->nsections; i++) {
		struct spec_section *sec = &s->sections[i];
		if (!strcmp(sec->name, "defaults") &&
		    load_res_section(s, sec, &s->defaults, 0, err) < 0)
			return -1;
		if (!strcmp(sec->name, "slurm") && load_res_section(s, sec, &s->slurm, 1, err) < 0)
			return -1;
	}
	for (int i = 0; i < s->nsections; i++) {
		struct spec_section *sec = &s->sections[i];
		if (!strcmp(sec->name, "pipeline")) {
			if (load_pipeline(s, sec, err) < 0)
				return -1;
		} else if (!strncmp(sec->name, "stage ", 6)) {
			const char *name = sec->name + 6;
			while (*name == ' ')
				name++;
			if (load_stage(s, sec, name, err) < 0)
				return -1;
		} else if (strcmp(sec->name, "params") && strcmp(sec->name, "defaults") &&
			   strcmp(sec->name, "slurm")) {
			char hint[320];
			return error_set(
			    err,
			    "%s:%d: unknown section [%s]%s (known: [pipeline], [params], "
			    "[defaults], [slurm], [stage NAME])",
			    path, sec->line, sec->name,
			    section_hint(sec->name, hint, sizeof(hint)));
		}
	}
	if (s->nstages == 0)
		return error_set(err, "%s: no [stage NAME] sections: nothing to run", path);
	if (!s->name) {
		/* default name: the file's base name without .ini */
		const char *base = strrchr(path, '/');
		base = base ? base + 1 : path;
		size_t n = strlen(base);
		if (n > 4 && !strcmp(base + n - 4, ".ini"))
			n -= 4;
		s->name = mem_strndup(base, n);
		if (!s->name)
			return error_set(err, "out of memory");
		for (char *c = s->name; *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
				*c = '_';
	}
	if (!s->executor && set_str(&s->executor, "local") < 0)
		return error_set(err, "out of memory");
	if (resolve_edges(s, err) < 0 || topo_sort(s, err) < 0)
		return -1;
	/* Every command must expand for task 0 (and equal arrays where [task] is used). */
	struct buf b = BUF_INIT;
	for (int i = 0; i < s->nstages; i++) {
		struct spec_ctx ctx = {"RUN", 0};
		buf_reset(&b);
		if (spec_expand_command(s, i, &ctx, &b, err) < 0) {
			buf_release(&b);
			return -1;
		}
		s->ntasks += s->stages[i].ntasks;
	}
	buf_release(&b);
	return 0;
}

static void kv_release(struct spec_kv *kv, int n)
{
	for (int i = 0; i < n; i++) {
		mem_free(kv[i].key);
		mem_free(kv[i].value);
	}
	mem_free(kv);
}

void spec_release(struct spec *s)
{
	for (int i = 0; i < s->nstages; i++) {
		struct spec_stage *st = &s->stages[i];
		mem_free(st->name);
		mem_free(st->command);
		res_release(&st->res);
		for (int a = 0; a < st->nafter; a++)
			mem_free(st->after[a]);
		mem_free(st->after);
		mem_free(st->in);
	}
	mem_free(s->stages);
	for (int i = 0; i < s->nsections; i++) {
		mem_free(s->sections[i].name);
		kv_release(s->sections[i].kv, s->sections[i].nkv);
	}
	mem_free(s->sections);
	kv_release(s->params, s->nparams);
	res_release(&s->defaults);
	res_release(&s->slurm);
	mem_free(s->order);
	mem_free(s->path);
	mem_free(s->name);
	mem_free(s->executor);
	memset(s, 0, sizeof(*s));
}

/* key = v, continued on indented lines; the short forms where a line would
 * be too long (value_unwritable has checked that key=v fits). */
static void write_value(struct buf *b, const char *key, const char *v)
{
	for (int n = 0; *v; n++) {
		size_t len = strcspn(v, "\n");
		size_t lead = n == 0 ? strlen(key) + 3 : 4;
		if (n == 0) /* "k = ;x" would read as k = "" with a comment */
			buf_addf(b, lead + len <= SPEC_LINE_MAX && v[0] != ';' ? "%s = " : "%s=", key);
		else
			buf_adds(b, lead + len <= SPEC_LINE_MAX ? "\n    " : "\n ");
		buf_addf(b, "%.*s", (int)len, v);
		v += len;
		if (*v == '\n')
			v++;
	}
	if (b->len == 0 || b->s[b->len - 1] == '\n')
		buf_addf(b, "%s =", key); /* an empty value */
	buf_addc(b, '\n');
}

/* Read the frozen copy back: every value as written, or an error naming the
 * first that is not (value_unwritable's rules should leave none). */
static int same_when_read(const struct spec *s, const char *path, struct error *err)
{
	struct spec back;
	if (spec_load_frozen(&back, path, NULL, 0, err) < 0) {
		spec_release(&back);
		return -1;
	}
	int rc = 0;
	for (int i = 0; i < s->nsections && rc == 0; i++) {
		const struct spec_section *sec = &s->sections[i];
		for (int k = 0; k < sec->nkv && rc == 0; k++) {
			const char *want = sec->kv[k].value, *got = NULL;
			if (!strcmp(sec->name, "pipeline") && !strcmp(sec->kv[k].key, "name"))
				want = s->name;
			for (int j = 0; j < back.nsections; j++)
				for (int m = 0; m < back.sections[j].nkv; m++)
					if (!strcmp(back.sections[j].name, sec->name) &&
					    !strcmp(back.sections[j].kv[m].key, sec->kv[k].key))
						got = back.sections[j].kv[m].value;
			if (!got || strcmp(got, want))
				rc = error_set(err,
					       "[%s] %s: cannot be kept in the run's spec.ini: it reads "
					       "back as '%.200s'",
					       sec->name, sec->kv[k].key, got ? got : "(nothing)");
		}
	}
	spec_release(&back);
	return rc;
}

int spec_write_frozen(const struct spec *s, const char *path, struct error *err)
{
	struct buf b = BUF_INIT;
	buf_addf(&b, "; frozen copy of %s, with --set applied, written by cairn\n", s->path);
	int has_name = spec_names_itself(s);
	int has_pipeline = 0;
	for (int i = 0; i < s->nsections; i++)
		has_pipeline |= !strcmp(s->sections[i].name, "pipeline");
	if (!has_pipeline)
		buf_addf(&b, "\n[pipeline]\nname = %s\n", s->name);
	for (int i = 0; i < s->nsections; i++) {
		const struct spec_section *sec = &s->sections[i];
		buf_addf(&b, "\n[%s]\n", sec->name);
		if (!strcmp(sec->name, "pipeline") && !has_name)
			buf_addf(&b, "name = %s\n", s->name);
		for (int k = 0; k < sec->nkv; k++) {
			const char *v = sec->kv[k].value; /* params: as written, --set applied */
			if (!strcmp(sec->name, "pipeline") && !strcmp(sec->kv[k].key, "name"))
				v = s->name;
			const char *why = value_unwritable(sec->kv[k].key, v);
			if (!why)
				write_value(&b, sec->kv[k].key, v);
			else {
				buf_release(&b);
				return error_set(err, "[%s] %s: cannot be kept in the run's spec.ini: %s",
						 sec->name, sec->kv[k].key, why);
			}
		}
	}
	int rc = b.failed ? error_set(err, "out of memory") : fs_write_atomic(path, b.s, b.len, err);
	buf_release(&b);
	return rc < 0 ? -1 : same_when_read(s, path, err);
}
