/* cairn: the command-line entry point; subcommands live in pipeline/cli.c. */
#include "pipeline/cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
