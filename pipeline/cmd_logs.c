/* cairn logs RUN STAGE/TASK [-n N]: a task's log (all attempts). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fs.h"
#include "core/mem.h"
#include "pipeline/cli.h"

static const char logs_usage[] =
	"usage: cairn logs RUN STAGE/TASK [-n LINES]\n"
	"Prints a task's log: its stdout and stderr, every attempt, each starting with\n"
	"a '=== cairn: ...' line. -n prints only the last LINES lines.\n"
	"example: cairn logs runs/demo-20261124T140000Z-1a2b train/0 -n 50\n";

int cmd_logs(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, logs_usage))
		return 0;
	const char *pos[2] = {NULL, NULL};
	int npos = 0;
	long lines = -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			if (cli_parse_lines("logs", "-n", argv[++i], &lines) < 0)
				return 2;
		} else if (argv[i][0] != '-' && npos < 2)
			pos[npos++] = argv[i];
		else {
			fprintf(stderr, "cairn logs: unexpected '%s'\n%s", argv[i], logs_usage);
			return 2;
		}
	}
	if (npos != 2) {
		fputs(logs_usage, stderr);
		return 2;
	}
	struct run r;
	struct error err;
	int s, t;
	if (cli_open_run("logs", pos[0], &r) < 0)
		return 2;
	if (cli_parse_task("logs", &r, pos[1], 1, &s, &t) < 0) {
		run_release(&r);
		return 2;
	}
	const char *stage = r.spec.stages[s].name;
	struct buf path = BUF_INIT;
	task_path(&path, r.dir, stage, t, "log");
	char *data;
	size_t len;
	int rc = 0;
	if (fs_read_all(path.s, &data, &len, &err) < 0) {
		fprintf(stderr, "cairn logs: %s/%d has no log yet (it has not started)\n", stage, t);
		rc = 1;
	} else {
		size_t start = cli_tail_start(data, len, lines);
		fwrite(data + start, 1, len - start, stdout);
		mem_free(data);
	}
	buf_release(&path);
	run_release(&r);
	return rc;
}
