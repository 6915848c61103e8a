/* cmd: subcommand dispatch for stage programs (cmd.h). */
#include "core/cmd.h"

#include <getopt.h>
#include <string.h>

#include "core/parse.h"

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
	struct parse_near near;
	parse_near_init(&near, argv[1]);
	for (size_t i = 0; i < ncmds; i++)
		parse_near_try(&near, cmds[i].name);
	char hint[128];
	fprintf(stderr, "%s: unknown command '%s'%s\n", prog, argv[1],
		parse_did_you_mean(hint, sizeof(hint), near.best));
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

int cmd_getopt(const char *prog, int argc, char **argv, const char *shortopts,
	       const struct option *longopts)
{
	opterr = 0;
	int c = getopt_long(argc, argv, shortopts, longopts, NULL);
	if (c != '?')
		return c;
	const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
	char word[64], hint[128];
	snprintf(word, sizeof(word), "%.*s", (int)strcspn(arg, "="), arg);
	if (optopt && strncmp(arg, "--", 2)) { /* a short option */
		fprintf(stderr, "%s: unknown option '-%c'\n", prog, optopt);
		return c;
	}
	for (int i = 0; optopt && longopts[i].name; i++)
		if (longopts[i].val == optopt && longopts[i].has_arg == required_argument) {
			fprintf(stderr, "%s: option '%s' needs a value\n", prog, word);
			return c;
		}
	if (strchr(arg, '=') && !strncmp(arg, "--", 2)) /* a value given to a flag */
		for (int i = 0; longopts[i].name; i++)
			if (longopts[i].has_arg == no_argument &&
			    (!strcmp(longopts[i].name, word + 2) ||
			     (optopt && longopts[i].val == optopt))) {
				fprintf(stderr, "%s: option '--%s' takes no value: write '--%s' alone\n",
					prog, longopts[i].name, longopts[i].name);
				return c;
			}
	int prefixed = 0; /* an abbreviation of two options or more */
	for (int i = 0; longopts[i].name; i++)
		prefixed +=
		    strlen(word) > 2 && !strncmp(longopts[i].name, word + 2, strlen(word) - 2);
	if (prefixed > 1) {
		fprintf(stderr, "%s: option '%s' is ambiguous: write it out:", prog, word);
		for (int i = 0; longopts[i].name; i++)
			if (!strncmp(longopts[i].name, word + 2, strlen(word) - 2))
				fprintf(stderr, " --%s", longopts[i].name);
		fputc('\n', stderr);
		return c;
	}
	struct parse_near near;
	char names[128][40];
	int n = 0;
	parse_near_init(&near, word);
	for (int i = 0; longopts[i].name && n < 128; i++, n++) {
		snprintf(names[n], sizeof(names[n]), "--%s", longopts[i].name);
		parse_near_try(&near, names[n]);
	}
	fprintf(stderr, "%s: unknown option '%s'%s\n", prog, word,
		parse_did_you_mean(hint, sizeof(hint), near.best));
	return c;
}
