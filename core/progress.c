#include "core/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "core/clock.h"

void progress_init(struct progress *p, const char *label, const char *unit, uint64_t total)
{
	p->label = label;
	p->unit = unit;
	p->total = total;
	p->done = 0;
	p->start = clock_now();
	p->last_draw = 0;
	p->tty = isatty(STDERR_FILENO);
}

static void draw(struct progress *p, double now)
{
	double dt = now - p->start;
	double rate = dt > 0 ? (double)p->done / dt : 0;
	char eta[32] = "";
	if (p->total && rate > 0 && p->done < p->total)
		clock_format_duration((double)(p->total - p->done) / rate, eta, sizeof(eta));
	if (p->total)
		fprintf(stderr, "\r%s %llu/%llu %s (%.0f%%) %.1f/s%s%s\033[K", p->label,
			(unsigned long long)p->done, (unsigned long long)p->total, p->unit,
			100.0 * (double)p->done / (double)p->total, rate, *eta ? " ETA " : "", eta);
	else
		fprintf(stderr, "\r%s %llu %s %.1f/s\033[K", p->label, (unsigned long long)p->done,
			p->unit, rate);
	p->last_draw = now;
}

void progress_update(struct progress *p, uint64_t done)
{
	p->done = done;
	if (!p->tty)
		return;
	double now = clock_now();
	if (now - p->last_draw >= 0.1)
		draw(p, now);
}

void progress_finish(struct progress *p)
{
	if (!p->tty)
		return;
	draw(p, clock_now());
	fputc('\n', stderr);
}
