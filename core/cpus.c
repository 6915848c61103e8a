/* cpus: CPUs this process may use (cpus.h). */
#include "core/cpus.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

int cpus_usable(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int cpus_default_threads(void)
{
	const char *v = getenv("OMP_NUM_THREADS");
	char *end;
	long n = v ? strtol(v, &end, 10) : 0;
	if (v && end != v && *end == '\0' && n >= 1 && n <= 1024)
		return (int)n;
	return cpus_usable();
}
