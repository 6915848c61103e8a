#include "jobs/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/mem.h"

extern char **environ;

static volatile sig_atomic_t *stop_flag;

static void on_stop(int sig)
{
	if (stop_flag)
		*stop_flag = sig;
}

static void on_alarm(int sig)
{
	(void)sig;
}

void proc_catch_stop(volatile sig_atomic_t *flag)
{
	stop_flag = flag;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: waits return EINTR so the caller sees the flag */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
}

int proc_spawn(pid_t *pid, char *const argv[], const char *cwd, int out_fd, struct error *err)
{
	/* posix_spawn (vfork underneath): a task's start costs no copy of the
	 * caller's page tables, which counts when tasks are short. */
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return error_set(err, "cannot start %s: out of memory", argv[0]);
	if (posix_spawnattr_init(&attr) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return error_set(err, "cannot start %s: out of memory", argv[0]);
	}
	int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (rc == 0 && out_fd >= 0)
		rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	if (rc == 0 && out_fd >= 0)
		rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
	if (rc == 0 && cwd)
		rc = posix_spawn_file_actions_addchdir_np(&fa, cwd);
	sigset_t all, none;
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	sigemptyset(&none);
	if (rc == 0)
		rc = posix_spawnattr_setsigdefault(&attr, &all);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (rc == 0)
		rc = posix_spawnattr_setpgroup(&attr, 0);
	if (rc == 0)
		rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
							     POSIX_SPAWN_SETPGROUP);
	if (rc == 0)
		rc = posix_spawnp(pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		errno = rc;
		if (cwd && rc == ENOENT && !fs_is_dir(cwd))
			return error_errno(err, "cannot start %s in %s", argv[0], cwd);
		return error_errno(err, "cannot start %s", argv[0]);
	}
	return 0;
}

void proc_adopt_orphans(void)
{
	prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* Reap what is left of the group pgid, already sent SIGKILL: those of its
 * processes that are ours (all of them after proc_adopt_orphans), for at
 * most 5 s (one in uninterruptible sleep may take longer, and is left). */
static int reap_group(pid_t pgid)
{
	int n = 0;
	for (int waited_ms = 0; waited_ms < 5000;) {
		int st;
		pid_t w = waitpid(-pgid, &st, WNOHANG);
		if (w > 0) {
			n++;
		} else if (w == 0) {
			usleep(10000);
			waited_ms += 10;
		} else if (errno != EINTR) {
			break; /* ECHILD: none of the group is ours any more */
		}
	}
	return n;
}

/* "oom_kill N" in a memory.events or memory.oom_control file; -1 if none. */
static long oom_kill_in(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	char line[128];
	long n = -1;
	while (n < 0 && fgets(line, sizeof(line), f))
		if (!strncmp(line, "oom_kill ", 9))
			n = atol(line + 9);
	fclose(f);
	return n;
}

long proc_oom_kills(void)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return -1;
	char line[1024], path[1200];
	long n = -1;
	/* "4:memory:/slurm/uid_0/job_42/step_batch" (v1) or "0::/system.slice/..." (v2) */
	while (n < 0 && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *ctl = strchr(line, ':'), *cg = ctl ? strchr(ctl + 1, ':') : NULL;
		if (!cg)
			continue;
		*cg++ = '\0';
		ctl++;
		if (!*ctl) { /* v2: the unified mount, alone or beside v1 ones */
			snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.events", cg);
			if ((n = oom_kill_in(path)) < 0) {
				snprintf(path, sizeof(path), "/sys/fs/cgroup/unified%s/memory.events", cg);
				n = oom_kill_in(path);
			}
			continue;
		}
		for (char *save, *c = strtok_r(ctl, ",", &save); c; c = strtok_r(NULL, ",", &save))
			if (!strcmp(c, "memory")) {
				snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.oom_control", cg);
				n = oom_kill_in(path);
			}
	}
	fclose(f);
	return n;
}

struct ps {
	long pid, ppid, pgrp, rss;
	int in; /* one of the task's */
};

/* Every process of this machine (from /proc/PID/stat), those of the task
 * marked: of process group pgid, or a descendant of one (mpirun gives each
 * MPI rank its own group). One that left the group and lost its parent
 * (setsid and a parent that ended) is no longer the task's, as locally it
 * never was (cmd_exec.c: such a process keeps the task's lock). Returns how
 * many are in *out (free it), 0 when /proc cannot be read. */
static size_t scan_task(pid_t pgid, struct ps **out)
{
	*out = NULL;
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	struct ps *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		char path[64], text[512];
		snprintf(path, sizeof(path), "/proc/%.20s/stat", e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* gone since readdir */
		ssize_t len = read(fd, text, sizeof(text) - 1);
		close(fd);
		text[len > 0 ? len : 0] = '\0';
		/* "pid (comm) state ppid pgrp ... rss": fields 3.. after the last ')' */
		char *p = strrchr(text, ')');
		long field[22];
		int k = 0;
		for (p = p ? p + 2 : NULL; p && k < 22; k++) {
			field[k] = k == 0 ? 0 : strtol(p, NULL, 10); /* field 3, the state, is a letter */
			p = strchr(p, ' ');
			p = p ? p + 1 : NULL;
		}
		if (k < 22)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			struct ps *w = mem_realloc(v, cap * sizeof(*v));
			if (!w)
				break;
			v = w;
		}
		/* field 4: ppid, 5: pgrp, 24: rss */
		v[n] = (struct ps){atol(e->d_name), field[1], field[2], field[21], 0};
		v[n].in = v[n].pgrp == (long)pgid;
		n++;
	}
	closedir(d);
	/* then their children, and theirs, until no more are found: a few
	   processes are in, so each pass is n times those found last */
	size_t *in = mem_alloc((n ? n : 1) * sizeof(*in)), m = 0;
	for (size_t i = 0; in && i < n; i++)
		if (v[i].in)
			in[m++] = i;
	for (size_t done = 0; in && done < m;) {
		size_t from = done;
		done = m;
		for (size_t i = 0; i < n; i++)
			for (size_t k = from; !v[i].in && k < done; k++)
				if (v[in[k]].pid == v[i].ppid) {
					v[i].in = 1;
					in[m++] = i;
				}
	}
	mem_free(in);
	*out = v;
	return n;
}

long proc_task_rss_kb(pid_t pgid)
{
	struct ps *v;
	size_t n = scan_task(pgid, &v);
	long pages = 0;
	for (size_t i = 0; i < n; i++)
		pages += v[i].in ? v[i].rss : 0;
	mem_free(v);
	return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Signal the task's processes: those in other groups (MPI ranks), then
 * its group. In that order: once their parent (mpirun) is gone, ranks are
 * no longer its descendants (they are adopted here) and would be missed. */
static int kill_task(pid_t pgid, int sig)
{
	int n = 0;
	struct ps *v;
	size_t np = scan_task(pgid, &v);
	for (size_t i = 0; i < np; i++)
		if (v[i].in && v[i].pgrp != (long)pgid)
			n += kill((pid_t)v[i].pid, sig) == 0;
	mem_free(v);
	return n + (kill(-pgid, sig) == 0);
}

int proc_wait(pid_t pid, int *status, struct rusage *ru, volatile sig_atomic_t *stop, int grace,
	      struct proc_limits *lim, struct error *err)
{
	int termed = 0, killed = 0;
	long limit_s = lim ? lim->time_s : 0, mem_kb = lim ? lim->mem_kb : 0;
	time_t term_at = 0, end = limit_s > 0 ? time(NULL) + limit_s : 0;
	if (lim)
		lim->timed_out = 0, lim->over_kb = 0, lim->peak_kb = 0;
	/* SIGALRM wakes the wait below: caught, not the default (which ends
	   this process), and without SA_RESTART */
	struct sigaction sa, old_sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old_sa);
	for (;;) {
		time_t now = time(NULL);
		if (end && !termed && now >= end)
			lim->timed_out = 1;
		if (((stop && *stop) || (end && now >= end)) && !termed) {
			kill_task(pid, SIGTERM);
			kill_task(pid, SIGCONT);
			termed = 1;
			term_at = now;
		}
		if (termed && !killed && now - term_at >= grace) {
			kill_task(pid, SIGKILL);
			killed = 1;
		}
		if (mem_kb > 0 && !killed) {
			long rss = proc_task_rss_kb(pid);
			lim->peak_kb = rss > lim->peak_kb ? rss : lim->peak_kb;
			if (rss > mem_kb) {
				kill_task(pid, SIGKILL);
				killed = 1;
				lim->over_kb = rss;
			}
		}
		/* wake for what comes next: the grace's end, the time limit, the
		 * next look at the memory */
		long next = 0;
		if (termed && !killed)
			next = 1;
		else if (end && !termed)
			next = end > now ? end - now : 1;
		if (mem_kb > 0 && !killed)
			next = 1;
		alarm((unsigned)next);
		/* WNOWAIT: the command stays a zombie until its group is ended */
		siginfo_t si;
		si.si_pid = 0;
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0 && si.si_pid == pid)
			break;
		if (errno != EINTR) {
			alarm(0);
			sigaction(SIGALRM, &old_sa, NULL);
			return error_errno(err, "wait for pid %ld", (long)pid);
		}
	}
	alarm(0);
	sigaction(SIGALRM, &old_sa, NULL);
	/* The command is a zombie: its pid, the group's id, is not reused yet */
	int alone = kill_task(pid, SIGKILL) == 0;
	if (wait4(pid, status, 0, ru) != pid)
		return error_errno(err, "wait for pid %ld", (long)pid);
	return alone ? 0 : reap_group(pid);
}
