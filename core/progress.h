/* progress: one self-rewriting line with count, rate and ETA on a terminal;
 * silent when stderr is a file (a Slurm log), so logs stay readable. */
#ifndef CORE_PROGRESS_H
#define CORE_PROGRESS_H

#include <stdint.h>

struct progress {
	const char *label;
	const char *unit;   /* "tiles", "img", ... */
	uint64_t total;     /* 0 = unknown */
	uint64_t done;
	double start;
	double last_draw;
	int tty;
};

void progress_init(struct progress *p, const char *label, const char *unit, uint64_t total);
void progress_update(struct progress *p, uint64_t done); /* redraws at most 10 times a second */
void progress_finish(struct progress *p);                 /* final line + newline on a tty */

#endif
