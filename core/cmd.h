/* cmd: the subcommand table of a stage program with several commands
 * (cairn-dataset import-idx|info|..., cairn-tileset pack|unpack, cairn-nas
 * sample|propose|...), so that each parses, helps and fails alike. */
#ifndef CORE_CMD_H
#define CORE_CMD_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv); /* argv[0] is the command's name */
};

/* Run the command argv[1] names with (argc - 1, argv + 1), getopt reset.
 * "--help", "-h" and "help" print usage on stdout (0); no command or an
 * unknown one print it on stderr (2). */
int cmd_dispatch(const char *prog, int argc, char **argv, const struct cmd *cmds, size_t ncmds,
		 void (*usage)(FILE *f));

/* "PROG CMD: " fmt with arg " (see 'PROG CMD --help')" on stderr; returns
 * 2, the exit status of bad usage. cmd NULL: a program of one command
 * ("PROG: ...", "see 'PROG --help'"). */
int cmd_bad_usage(const char *prog, const char *cmd, const char *fmt, const char *arg);

/* getopt_long, with its errors said by prog: "PROG: unknown option
 * '--epoch', did you mean '--epochs'?" (the nearest long option, when it is
 * a typo of one) and "PROG: option '--out' needs a value"; returns '?' for
 * both, as getopt_long does. */
int cmd_getopt(const char *prog, int argc, char **argv, const char *shortopts,
	       const struct option *longopts);

#endif
