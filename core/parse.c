#include "core/parse.h"

#include <errno.h>
#include <float.h>
#include <stdlib.h>

int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int parse_float(const char *s, float *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || !*s || *end || !(v >= 0) || v > FLT_MAX) /* inf, or inf as a float */
		return -1;
	*out = (float)v;
	return 0;
}
