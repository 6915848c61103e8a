/* mem_watch: what the local mem limit costs. The task's wrapper looks at
 * every /proc/PID/stat once a second to add up the RSS of the task's
 * processes (proc_task_rss_kb, as Slurm's jobacct_gather/linux does);
 * this times one look with the processes this machine has now, beside the
 * least such a look could cost: reading this process's own stat file once.
 *   mem_watch [LOOKS] */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/clock.h"
#include "jobs/proc.h"

int main(int argc, char **argv)
{
	int looks = argc > 1 ? atoi(argv[1]) : 2000;
	int nproc = 0;
	DIR *d = opendir("/proc");
	for (struct dirent *e; d && (e = readdir(d));)
		nproc += e->d_name[0] >= '1' && e->d_name[0] <= '9';
	if (d)
		closedir(d);
	long kb = 0;
	double t0 = clock_now();
	for (int i = 0; i < looks; i++)
		kb += proc_task_rss_kb(getpgrp());
	double look = (clock_now() - t0) / looks;
	char text[512];
	t0 = clock_now();
	for (int i = 0; i < looks; i++) {
		int fd = open("/proc/self/stat", O_RDONLY);
		if (fd >= 0 && read(fd, text, sizeof(text)) < 0)
			kb--;
		close(fd);
	}
	double one = (clock_now() - t0) / looks;
	printf("mem watch: one look at %d processes %.1f us (%.3f%% of a core at one look a "
	       "second); baseline, one stat file: %.1f us (%ld KiB seen)\n",
	       nproc, look * 1e6, look * 100, one * 1e6, kb / looks);
	return 0;
}
