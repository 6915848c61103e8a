#include "jobs/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int job_retry_allowed(const char *retry_on, const char *kind, int exit_code)
{
	if (!strcmp(kind, "cancelled") || !strcmp(kind, "dependency"))
		return 0;
	if (!retry_on || !*retry_on)
		return 1;
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s", retry_on);
	for (char *save, *t = strtok_r(tmp, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		if (!strcmp(t, "any") || !strcmp(t, kind))
			return 1;
		if (!strncmp(t, "exit:", 5) && !strcmp(kind, "exit") && atoi(t + 5) == exit_code)
			return 1;
	}
	return 0;
}
