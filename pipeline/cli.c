#include "pipeline/cli.h"

#include <stdio.h>
#include <string.h>

int cli_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "cairn: not yet\n");
	return 2;
}
