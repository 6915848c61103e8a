/* cmd: subcommand dispatch for stage programs (cmd.h). */
#include "core/cmd.h"

#include <getopt.h>
#include <string.h>

int cmd_dispatch(const char *prog, int argc, char **argv, const struct cmd *cmds, size_t ncmds,
		 void (*usage)(FILE *f))
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < ncmds; i++)
		if (!strcmp(argv[1], cmds[i].name)) {
			optind = 1;
			return cmds[i].fn(argc - 1, argv + 1);
		}
	fprintf(stderr, "%s: unknown command '%s'\n", prog, argv[1]);
	usage(stderr);
	return 2;
}

int cmd_bad_usage(const char *prog, const char *cmd, const char *fmt, const char *arg)
{
	const char *sp = cmd ? " " : "";
	cmd = cmd ? cmd : "";
	fprintf(stderr, "%s%s%s: ", prog, sp, cmd);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (see '%s%s%s --help')\n", prog, sp, cmd);
	return 2;
}
