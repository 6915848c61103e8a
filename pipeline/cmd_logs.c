/* cairn logs RUN STAGE/TASK [-n N] [-f]: a task's log (all attempts), and
 * with -f what it writes next, until it ends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/mem.h"
#include "pipeline/cli.h"
#include "pipeline/sched.h"

static const char logs_usage[] =
    "usage: cairn logs [RUN] STAGE/TASK [-n LINES] [-f]\n"
    "Prints a task's log: its stdout and stderr, every attempt, each starting with\n"
    "a '=== cairn: ...' line. -n prints only the last LINES lines.\n"
    "-f (--follow): then prints what the task writes, as it writes it, until it\n"
    "ends (waiting first for a task that has not started); exits 0 when it ended\n"
    "done, 1 when it failed or was cancelled. Without RUN: the newest run folder\n"
    "in runs/.\n"
    "example: cairn logs runs/demo-20261124T140000Z-1a2b train/0 -n 50 -f\n";

/* Print path from *off to its end; *off moves on. */
static void drain(const char *path, size_t *off)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return;
	char chunk[65536];
	size_t n;
	if (fseek(f, (long)*off, SEEK_SET) == 0)
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
			fwrite(chunk, 1, n, stdout);
			*off += n;
		}
	fclose(f);
	fflush(stdout);
}

static int has_ended(enum task_state s)
{
	return s == TASK_DONE || s == TASK_FAILED || s == TASK_CANCELLED;
}

/* -f: print what the log gains until the task has ended. On Slurm the
 * markers alone can mislead (an earlier job's marker while the task's new
 * job is queued; a job killed before it could write one): there the end is
 * Slurm's word too, asked at most every 5 s (one squeue call). */
static int follow(const struct run *r, int s, int t, const char *path, size_t off)
{
	const char *stage = r->spec.stages[s].name;
	int slurm = run_is_slurm(r);
	double asked = 0;
	int said = 0;
	for (;;) {
		struct task_info ti;
		struct error err;
		if (task_read(r->dir, stage, t, 1, &ti, &err) < 0) {
			fprintf(stderr, "cairn logs: %s\n", err.msg);
			return 1;
		}
		int ended = has_ended(ti.state);
		if (slurm && clock_now() - asked >= 5) {
			struct sched_view v;
			if (sched_view_load(&v, r, &err) == 0) {
				sched_view_apply(&v, r, s, t, &ti);
				sched_view_release(&v);
			}
			asked = clock_now();
			ended = has_ended(ti.state);
		} else if (slurm) {
			ended = 0; /* Slurm's word at the next call */
		}
		if (!ended && !said && !fs_exists(path)) {
			fprintf(stderr, "cairn logs: %s/%d has not started: waiting for it\n",
				stage, t);
			said = 1;
		}
		drain(path, &off);
		if (ended) {
			usleep(300000); /* the wrapper's last log line follows its marker */
			drain(path, &off);
			fprintf(stderr, "cairn logs: %s/%d %s\n", stage, t,
				task_state_name(ti.state));
			return ti.state == TASK_DONE ? 0 : 1;
		}
		usleep(250000);
	}
}

int cmd_logs(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, logs_usage))
		return 0;
	const char *pos[2] = {NULL, NULL};
	int npos = 0;
	long lines = -1;
	int follow_it = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow")) {
			follow_it = 1;
		} else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			if (cli_parse_lines("logs", "-n", argv[++i], &lines) < 0)
				return 2;
		} else if (argv[i][0] != '-' && npos < 2)
			pos[npos++] = argv[i];
		else {
			cli_unexpected("logs", argv[i], logs_usage);
			return 2;
		}
	}
	const char *dir, *task_arg;
	if (cli_run_and_task("logs", logs_usage, pos, npos, &dir, &task_arg) < 0)
		return 2;
	struct run r;
	struct error err;
	int s, t;
	if (cli_open_run("logs", dir, &r) < 0)
		return 2;
	if (cli_parse_task("logs", &r, task_arg, 1, &s, &t) < 0) {
		run_release(&r);
		return 2;
	}
	const char *stage = r.spec.stages[s].name;
	struct buf path = BUF_INIT;
	task_path(&path, r.dir, stage, t, "log");
	char *data;
	size_t len;
	int rc = 0;
	size_t off = 0;
	if (fs_read_all(path.s, &data, &len, &err) < 0) {
		if (!follow_it) {
			fprintf(stderr, "cairn logs: %s/%d has no log yet (it has not started)\n",
				stage, t);
			rc = 1;
		}
	} else {
		size_t start = cli_tail_start(data, len, lines);
		fwrite(data + start, 1, len - start, stdout);
		mem_free(data);
		off = len;
	}
	if (follow_it)
		rc = follow(&r, s, t, path.s, off);
	buf_release(&path);
	run_release(&r);
	return rc;
}
