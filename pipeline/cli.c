#include "pipeline/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "core/parse.h"

#define CAIRN_VERSION "0.1.0"

static const struct command {
	const char *name;
	int (*fn)(int, char **);
	const char *summary;
} commands[] = {
    {"run", cmd_run, "run a pipeline spec (locally, or submit it to Slurm)"},
    {"resume", cmd_resume, "rerun only what failed, never ran, or changed"},
    {"status", cmd_status, "tasks per stage and the run's state"},
    {"runs", cmd_runs, "the run folders under runs/, a line each: state and counts"},
    {"why", cmd_why, "why a task is in its state, and what resume would do"},
    {"graph", cmd_graph, "the stage graph in Graphviz DOT"},
    {"logs", cmd_logs, "a task's log"},
    {"cancel", cmd_cancel, "stop a run's running tasks"},
    {"exec", cmd_exec, "run one task and write its markers (used by executors)"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: cairn COMMAND [ARGS]\n\n"
		   "cairn runs pipelines of batch stages, written as INI files, on this machine\n"
		   "or on a Slurm cluster, and resumes them by rerunning only what must rerun.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'cairn COMMAND --help' for one command. Example:\n"
		   "  cairn run configs/demo.ini && cairn status runs/demo-*\n");
}

int cli_wants_help(int argc, char **argv, const char *text)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(text, stdout);
			return 1;
		}
	}
	return 0;
}

int cli_open_run(const char *cmd, const char *dir, struct run *r)
{
	struct error err;
	struct buf latest = BUF_INIT;
	if (!dir) {
		if (cli_latest_run(&latest, &err) < 0) {
			fprintf(stderr, "cairn %s: no RUN given, and %s\n", cmd, err.msg);
			buf_release(&latest);
			memset(r, 0, sizeof(*r));
			return -1;
		}
		dir = latest.s;
		fprintf(stderr, "cairn %s: the newest run, %s\n", cmd, dir);
	}
	int rc = run_open(r, dir, &err);
	if (rc < 0) {
		fprintf(stderr, "cairn %s: %s\n", cmd, err.msg);
		run_release(r);
	}
	buf_release(&latest);
	return rc < 0 ? -1 : 0;
}

int cli_run_and_task(const char *cmd, const char *usage, const char **pos, int npos,
		     const char **run, const char **task)
{
	int is_run = npos == 1 && cli_is_run(pos[0]);
	if (npos == 2) {
		*run = pos[0], *task = pos[1];
		return 0;
	}
	if (npos == 1 && !is_run) {
		*run = NULL, *task = pos[0];
		return 0;
	}
	if (is_run)
		fprintf(stderr, "cairn %s: name a STAGE/TASK of %s\n", cmd, pos[0]);
	fputs(usage, stderr);
	return -1;
}

int cli_parse_task(const char *cmd, const struct run *r, const char *arg, int need_task,
		   int *stage, int *task)
{
	char name[256];
	const char *slash = strchr(arg, '/');
	snprintf(name, sizeof(name), "%.*s", slash ? (int)(slash - arg) : (int)strlen(arg), arg);
	*stage = spec_stage_index(&r->spec, name);
	*task = -1;
	int ok = *stage >= 0 && (slash || !need_task);
	if (ok && slash) {
		char *end;
		long t = strtol(slash + 1, &end, 10);
		ok = slash[1] && !*end && t >= 0 && t < r->spec.stages[*stage].ntasks;
		*task = (int)t;
	}
	if (ok)
		return 0;
	char hint[320];
	fprintf(stderr, "cairn %s: no %s %s in run %s%s (stages:", cmd,
		need_task ? "task" : "stage or task", arg, r->spec.name,
		*stage < 0 ? spec_stage_hint(&r->spec, name, hint, sizeof(hint)) : "");
	for (int i = 0; i < r->spec.nstages; i++)
		fprintf(stderr, " %s[%d]", r->spec.stages[i].name, r->spec.stages[i].ntasks);
	fprintf(stderr, ")\n");
	return -1;
}

int cli_mark_task(const char *cmd, const struct run *r, const char *arg, unsigned char **marks)
{
	int s, t;
	if (cli_parse_task(cmd, r, arg, 0, &s, &t) < 0)
		return -1;
	int n = r->spec.stages[s].ntasks;
	if (!marks[s] && !(marks[s] = mem_calloc((size_t)n, 1))) {
		fprintf(stderr, "cairn %s: out of memory\n", cmd);
		return -1;
	}
	if (t < 0)
		memset(marks[s], 1, (size_t)n);
	else
		marks[s][t] = 1;
	return 0;
}

size_t cli_tail_start(const char *text, size_t len, long lines)
{
	if (lines < 0)
		return 0;
	size_t start = len;
	long n = 0;
	while (start > 0) {
		if (text[start - 1] == '\n' && start != len && ++n >= lines)
			break;
		start--;
	}
	return start;
}

int cli_main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("cairn %s\n", CAIRN_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	struct parse_near near;
	parse_near_init(&near, argv[1]);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		parse_near_try(&near, commands[i].name);
	char hint[128];
	fprintf(stderr, "cairn: '%s' is not a command%s\n\n", argv[1],
		parse_did_you_mean(hint, sizeof(hint), near.best));
	usage(stderr);
	return 2;
}

/* whether the usage shows OPT followed by a value: "--lines N" */
static int takes_value(const char *usage, const char *opt)
{
	size_t len = strlen(opt);
	for (const char *p = strstr(usage, opt); p; p = strstr(p + len, opt))
		if (p[len] == ' ' && isupper((unsigned char)p[len + 1]))
			return 1;
	return 0;
}

void cli_unexpected(const char *cmd, const char *arg, const char *usage)
{
	struct parse_near near;
	char opts[64][32];
	int n = 0;
	parse_near_init(&near, arg);
	for (const char *p = strchr(usage, '-'); p && n < 64; p = strchr(p + 1, '-')) {
		size_t dashes = p[1] == '-' ? 2 : 1;
		size_t len = dashes + strspn(p + dashes, "abcdefghijklmnopqrstuvwxyz-");
		if (len > dashes && (dashes == 2 || len == 2) && len < sizeof(opts[0]) &&
		    (p == usage || strchr(" [(", p[-1]))) {
			snprintf(opts[n], sizeof(opts[0]), "%.*s", (int)len, p);
			if (dashes == 2) /* one letter apart is no hint for '-x' */
				parse_near_try(&near, opts[n]);
			n++;
		}
	}
	const char *eq = arg[0] == '-' ? strchr(arg, '=') : NULL;
	for (int i = 0; eq && i < n; i++)
		if (strlen(opts[i]) == (size_t)(eq - arg) && !strncmp(opts[i], arg, eq - arg) &&
		    !takes_value(usage, opts[i])) {
			fprintf(stderr, "cairn %s: option '%s' takes no value: write '%s' alone\n%s",
				cmd, opts[i], opts[i], usage);
			return;
		}
	for (int i = 0; i < n; i++)
		if (!strcmp(opts[i], arg) && takes_value(usage, arg)) {
			fprintf(stderr, "cairn %s: option '%s' needs a value\n%s", cmd, arg, usage);
			return;
		}
	char hint[128];
	fprintf(stderr, "cairn %s: unexpected '%s'%s\n%s", cmd, arg,
		arg[0] == '-' ? parse_did_you_mean(hint, sizeof(hint), near.best) : "", usage);
}

int cli_parse_lines(const char *cmd, const char *flag, const char *v, long *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 0) {
		fprintf(stderr, "cairn %s: %s '%s': want a number of lines, 0 or more\n", cmd, flag,
			v);
		return -1;
	}
	*out = n < 1000000000 ? n : 1000000000;
	return 0;
}
