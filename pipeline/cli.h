/* cli: the `cairn` command: a table of subcommands, one file each. */
#ifndef PIPELINE_CLI_H
#define PIPELINE_CLI_H

int cli_main(int argc, char **argv);

#endif
