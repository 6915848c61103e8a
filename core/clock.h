/* clock: monotonic seconds for durations, UTC wall time for records. */
#ifndef CORE_CLOCK_H
#define CORE_CLOCK_H

#include <stddef.h>

double clock_now(void);      /* monotonic seconds */
double clock_wall(void);     /* seconds since the epoch */
/* "2026-11-24T13:56:26Z" (compact=0) or "20261124T135626Z" (compact=1). */
void clock_utc(char *out, size_t size, int compact);
/* "1:02:03" or "2:03" for a duration in seconds. */
void clock_format_duration(double seconds, char *out, size_t size);

#endif
