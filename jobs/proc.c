#include "jobs/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return error_errno(err, "pipe");
	pid_t p = fork();
	if (p < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return error_errno(err, "fork");
	}
	if (p == 0) {
		setpgid(0, 0);
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (int s = 1; s < 32; s++)
			sigaction(s, &sa, NULL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int in = open("/dev/null", O_RDONLY);
		if (in >= 0) {
			dup2(in, 0);
			if (in > 2)
				close(in);
		}
		if (out_fd >= 0) {
			dup2(out_fd, 1);
			dup2(out_fd, 2);
		}
		const char *what = "chdir";
		if (!cwd || chdir(cwd) == 0) {
			what = "exec";
			execvp(argv[0], argv);
		}
		/* Tell the parent why through the pipe; it reports the error. */
		char msg[512];
		int n = snprintf(msg, sizeof(msg), "%s %s: %s", what, !cwd || strcmp(what, "chdir") ? argv[0] : cwd,
				 strerror(errno));
		ssize_t w = write(pipefd[1], msg, (size_t)n);
		(void)w;
		_exit(127);
	}
	setpgid(p, p); /* also from the parent: no race with an early kill(-p) */
	close(pipefd[1]);
	char msg[512];
	ssize_t n;
	do
		n = read(pipefd[0], msg, sizeof(msg) - 1);
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	if (n > 0) {
		msg[n] = '\0';
		int st;
		while (waitpid(p, &st, 0) < 0 && errno == EINTR)
			;
		return error_set(err, "cannot start %s: %s", argv[0], msg);
	}
	*pid = p;
	return 0;
}

int proc_wait(pid_t pid, int *status, struct rusage *ru, volatile sig_atomic_t *stop, int grace,
	      struct error *err)
{
	int termed = 0, killed = 0;
	time_t term_at = 0;
	for (;;) {
		if (stop && *stop && !termed) {
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
		pid_t w = wait4(pid, status, 0, ru);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			alarm(0);
			return error_errno(err, "wait for pid %ld", (long)pid);
		}
		if (termed && !killed)
			alarm(1);
	}
	alarm(0);
	if (termed && !killed)
		kill(-pid, SIGKILL); /* leftovers of the group */
	return 0;
}
