#include "jobs/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/fs.h"

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

int proc_wait(pid_t pid, int *status, struct rusage *ru, volatile sig_atomic_t *stop, int grace,
	      long limit_s, int *timed_out, struct error *err)
{
	int termed = 0, killed = 0;
	time_t term_at = 0, end = limit_s > 0 ? time(NULL) + limit_s : 0;
	if (timed_out)
		*timed_out = 0;
	if (end)
		alarm((unsigned)limit_s); /* wakes waitid at the limit */
	for (;;) {
		if (end && !termed && time(NULL) >= end && timed_out)
			*timed_out = 1;
		if (((stop && *stop) || (end && time(NULL) >= end)) && !termed) {
			kill(-pid, SIGTERM);
			kill(-pid, SIGCONT);
			termed = 1;
			term_at = time(NULL);
			alarm((unsigned)(grace > 0 ? grace : 1));
		}
		if (termed && !killed && time(NULL) - term_at >= grace) {
			kill(-pid, SIGKILL);
			killed = 1;
		}
		/* WNOWAIT: the command stays a zombie until its group is ended */
		siginfo_t si;
		si.si_pid = 0;
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0 && si.si_pid == pid)
			break;
		if (errno != EINTR) {
			alarm(0);
			return error_errno(err, "wait for pid %ld", (long)pid);
		}
		if (termed && !killed)
			alarm(1);
		else if (end && !termed)
			alarm(time(NULL) < end ? (unsigned)(end - time(NULL)) : 1);
	}
	alarm(0);
	/* The command is a zombie: its pid, the group's id, is not reused yet */
	int alone = kill(-pid, SIGKILL) < 0;
	if (wait4(pid, status, 0, ru) != pid)
		return error_errno(err, "wait for pid %ld", (long)pid);
	return alone ? 0 : reap_group(pid);
}
