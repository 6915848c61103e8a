#include "jobs/slurm_cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/mem.h"

static const char *const cmd_names[SLURM_NCMDS] = {"sbatch", "squeue", "scontrol", "scancel"};
static long call_count[SLURM_NCMDS];
static double cmd_timeout = 60;
static int retry_attempts = 6;
static double retry_first = 1, retry_max = 30;

/* One argument may hold at most MAX_ARG_STRLEN = 32 pages = 128 KiB on
 * Linux; stay well below it for --jobs=a,b,c and for scancel's id list. */
#define ID_LIST_MAX 100000

const char *slurm_cmd_name(enum slurm_cmd cmd)
{
	return cmd >= 0 && cmd < SLURM_NCMDS ? cmd_names[cmd] : "?";
}

long slurm_calls(enum slurm_cmd cmd)
{
	return cmd >= 0 && cmd < SLURM_NCMDS ? call_count[cmd] : 0;
}

void slurm_calls_reset(void)
{
	memset(call_count, 0, sizeof(call_count));
}

void slurm_set_timeout(double seconds)
{
	cmd_timeout = seconds > 0 ? seconds : 60;
}

void slurm_set_retry(int attempts, double first_delay, double max_delay)
{
	retry_attempts = attempts >= 1 ? attempts : 1;
	retry_first = first_delay >= 0 ? first_delay : 0;
	retry_max = max_delay >= retry_first ? max_delay : retry_first;
}

/* ---- running a command ------------------------------------------------- */

struct cmd_result {
	struct buf out, err;
	int status; /* exit status, or 128 + signal */
	int timed_out;
};

static void result_release(struct cmd_result *r)
{
	buf_release(&r->out);
	buf_release(&r->err);
}

/* A command's stderr on one line ("a; b"), trimmed, for error messages. */
static const char *first_line(const struct buf *b, char *line, size_t size)
{
	const char *s = buf_str(b);
	size_t k = 0;
	while (*s && k + 3 < size) {
		size_t n = strcspn(s, "\n");
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
			n--;
		if (n) {
			if (k)
				line[k++] = ';', line[k++] = ' ';
			if (n > size - 1 - k)
				n = size - 1 - k;
			memcpy(line + k, s, n);
			k += n;
		}
		s += strcspn(s, "\n");
		if (*s)
			s++;
	}
	line[k] = '\0';
	return k ? line : "(no message)";
}

/* The first line of a command's stderr, or its "fatal:" line (the one that
 * says why, after the errors that led to it), and how many more there are:
 * scancel says the same for every job id ("Kill job error on job id 7: ..."). */
static const char *one_line(const struct buf *b, char *line, size_t size)
{
	const char *s = buf_str(b), *fatal = strstr(s, ": fatal: ");
	if (fatal) {
		while (fatal > s && fatal[-1] != '\n')
			fatal--;
		s = fatal;
	}
	while (*s == '\n' || *s == ' ')
		s++;
	size_t n = strcspn(s, "\n"), more = 0;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
		n--;
	for (const char *p = buf_str(b); *p; p++)
		more += p[0] != '\n' && (p[1] == '\n' || !p[1]); /* line ends */
	more = more ? more - 1 : 0;
	if (!n)
		return "(no message)";
	int k = snprintf(line, size, "%.*s", (int)n, s);
	if (more && k >= 0 && (size_t)k < size)
		snprintf(line + k, size - (size_t)k, " (and %zu more line%s)", more, more == 1 ? "" : "s");
	return line;
}

static void copy_field(char *dst, size_t size, const char *src, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void sleep_seconds(double s)
{
	if (s <= 0)
		return;
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Slurm 22.05's clients retry a refused connection to slurmctld once a
 * second for MessageTimeout seconds (10 by default), and squeue's job query
 * does so twice: with the controller down, squeue takes 18 s and scancel 9 s
 * before they say so. No option or environment variable of squeue, scancel
 * or scontrol shortens that: MessageTimeout (slurm.conf only) also bounds
 * the wait for a slow controller's answer. `scontrol ping` does not retry: it
 * answers "Slurmctld(primary) at HOST is DOWN" (exit 1) within milliseconds
 * when nothing listens, and "UP" from a busy controller too (slurmctld
 * answers pings without taking its job locks). So a status command that has
 * not answered after PROBE_AFTER seconds is checked on with one ping; only a
 * ping that says every controller is DOWN, within PING_LIMIT, stops it. */
#define PROBE_AFTER 1.0
#define PING_LIMIT 5.0

static int run_cmd_limits(enum slurm_cmd cmd, const char *const *args, double timeout, int probe,
			  struct cmd_result *r, struct error *err);

/* 1 when `scontrol ping` says that no slurmctld is up (why: its line). */
static int controller_down(char *why, size_t size)
{
	const char *args[] = {"ping", NULL};
	struct cmd_result r;
	struct error err;
	if (run_cmd_limits(SLURM_SCONTROL, args, PING_LIMIT, 0, &r, &err) < 0)
		return 0;
	const char *out = buf_str(&r.out);
	int down = !r.timed_out && r.status != 0 && strstr(out, " is DOWN") && !strstr(out, " is UP");
	if (down) {
		size_t n = strcspn(out, "\n");
		copy_field(why, size, out, n);
	}
	result_release(&r);
	return down;
}

/* Runs the Slurm command `cmd` with args (NULL-terminated, without argv[0]),
 * stdin from /dev/null, stdout and stderr captured, killed after cmd_timeout.
 * Returns 0 when it ran (whatever its exit status), -1 when it could not be
 * started or read. */
static int run_cmd(enum slurm_cmd cmd, const char *const *args, struct cmd_result *r, struct error *err)
{
	return run_cmd_limits(cmd, args, cmd_timeout, 0, r, err);
}

/* The same for the commands that ask the controller about jobs (squeue,
 * scontrol show job, scancel): fails fast, -1 with a message that says so,
 * when slurmctld is down (see PROBE_AFTER) or SLURM_CONF names no file
 * (Slurm's commands would wait 60 s for it to appear). sbatch keeps Slurm's
 * own patience: it retries anyway. */
static int run_query(enum slurm_cmd cmd, const char *const *args, struct cmd_result *r, struct error *err)
{
	const char *conf = getenv("SLURM_CONF");
	struct stat st;
	if (conf && *conf && stat(conf, &st) < 0)
		return error_errno(err, "%s: SLURM_CONF=%s", cmd_names[cmd], conf);
	return run_cmd_limits(cmd, args, cmd_timeout, 1, r, err);
}

static int run_cmd_limits(enum slurm_cmd cmd, const char *const *args, double timeout, int probe,
			  struct cmd_result *r, struct error *err)
{
	memset(r, 0, sizeof(*r));
	const char *name = cmd_names[cmd];
	const char *dir = getenv("CAIRN_SLURM_BIN");
	char path[4096];
	if (dir && *dir) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
			return error_set(err, "%s: CAIRN_SLURM_BIN too long", name);
	} else {
		snprintf(path, sizeof(path), "%s", name);
	}
	size_t nargs = 0;
	while (args && args[nargs])
		nargs++;
	char **argv = mem_calloc(nargs + 2, sizeof(*argv));
	if (!argv)
		return error_set(err, "%s: out of memory", name);
	argv[0] = path;
	for (size_t i = 0; i < nargs; i++)
		argv[i + 1] = (char *)args[i];

	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) < 0) {
		mem_free(argv);
		return error_errno(err, "%s: pipe", name);
	}
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]), close(po[1]);
		mem_free(argv);
		return error_errno(err, "%s: pipe", name);
	}
	call_count[cmd]++;
	pid_t pid = fork();
	if (pid < 0) {
		close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
		mem_free(argv);
		return error_errno(err, "%s: fork", name);
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		if (dir && *dir)
			execv(path, argv);
		else
			execvp(path, argv);
		dprintf(2, "cannot run %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	mem_free(argv);
	close(po[1]);
	close(pe[1]);

	struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
	struct buf *bufs[2] = {&r->out, &r->err};
	int open_fds = 2, rc = 0, killed = 0;
	double start = clock_now(), deadline = start + timeout;
	char down[256] = "";
	while (open_fds > 0) {
		double now = clock_now(), left = deadline - now;
		if (probe == 1 && now - start >= PROBE_AFTER) {
			probe = 2; /* once */
			if (controller_down(down, sizeof(down))) {
				kill(pid, SIGKILL);
				killed = 1;
				deadline = clock_now();
				left = 0;
			}
		}
		if (left <= 0 && !killed) {
			/* Kill it but keep reading until the pipes close. */
			kill(pid, SIGKILL);
			killed = r->timed_out = 1;
		}
		if (killed && left < -5)
			break; /* a child of the command still holds the pipes */
		int ms = killed ? 1000 : (int)(left * 1000) + 1;
		if (probe == 1 && ms > (int)((PROBE_AFTER - (now - start)) * 1000) + 1)
			ms = (int)((PROBE_AFTER - (now - start)) * 1000) + 1;
		int n = poll(fds, 2, ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = error_errno(err, "%s: poll", name);
			kill(pid, SIGKILL);
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !fds[i].revents)
				continue;
			char chunk[8192];
			ssize_t got = read(fds[i].fd, chunk, sizeof(chunk));
			if (got > 0) {
				buf_add(bufs[i], chunk, (size_t)got);
			} else if (got == 0 || errno != EINTR) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_fds--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (fds[i].fd >= 0)
			close(fds[i].fd);
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			result_release(r);
			return error_errno(err, "%s: waitpid", name);
		}
	}
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (rc == 0 && down[0])
		rc = error_set(err, "%s: no answer within %.0f s and `scontrol ping` says \"%s\"", name,
			       PROBE_AFTER, down);
	if (rc == 0 && (r->out.failed || r->err.failed))
		rc = error_set(err, "%s: out of memory reading its output", name);
	if (rc < 0)
		result_release(r);
	return rc;
}

/* ---- sbatch ------------------------------------------------------------ */

int slurm_parse_sbatch(const char *out, long *jobid)
{
	const char *p = out;
	while (isspace((unsigned char)*p))
		p++;
	static const char prefix[] = "Submitted batch job ";
	if (strncmp(p, prefix, sizeof(prefix) - 1) == 0)
		p += sizeof(prefix) - 1;
	if (!isdigit((unsigned char)*p))
		return -1;
	char *end;
	errno = 0;
	long id = strtol(p, &end, 10);
	if (errno || id <= 0)
		return -1;
	/* --parsable: "ID" or "ID;CLUSTER"; the plain form may name a cluster too. */
	if (*end != '\0' && *end != '\n' && *end != ';' && *end != ' ' && *end != '\r')
		return -1;
	*jobid = id;
	return 0;
}

int slurm_is_unreachable(const char *text)
{
	static const char *const down[] = {
		"`scontrol ping` says",
		"SLURM_CONF=",
		"unable to contact slurm controller",
		"could not establish a configuration source",
		"unable to process configuration file",
		"connection refused",
	};
	for (size_t i = 0; text && i < sizeof(down) / sizeof(down[0]); i++)
		if (strcasestr(text, down[i]))
			return 1;
	return 0;
}

int slurm_is_transient(const char *text)
{
	static const char *const transient[] = {
		"socket timed out",
		"resource temporarily unavailable",
		"try again",
		"not responding",
		"unable to contact slurm controller",
		"connection refused",
		"communication connection failure",
		"zero bytes were transmitted",
		"slurmctld is busy",
		"temporarily unable to accept job",
	};
	for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
		if (strcasestr(text, transient[i]))
			return 1;
	return 0;
}

/* Does Slurm know a job of this name? Then *jobid is its id. */
static int accepted_already(const char *name, long *jobid)
{
	struct slurm_jobs jobs;
	struct error err;
	slurm_jobs_init(&jobs);
	const char *names[1] = {name};
	int found = slurm_squeue_names(names, 1, &jobs, &err) == 0 && jobs.n > 0;
	if (found)
		*jobid = jobs.v[0].array_job_id;
	slurm_jobs_release(&jobs);
	return found;
}

int slurm_sbatch(const char *script, const char *const *extra, long *jobid, struct error *err)
{
	size_t nextra = 0;
	while (extra && extra[nextra])
		nextra++;
	const char **args = mem_calloc(nextra + 3, sizeof(*args));
	if (!args)
		return error_set(err, "sbatch %s: out of memory", script);
	args[0] = "--parsable";
	for (size_t i = 0; i < nextra; i++)
		args[i + 1] = extra[i];
	args[nextra + 1] = script;

	/* A unique --job-name lets a retry see whether the controller accepted
	 * the job although sbatch did not say so (a time-out): then it is not
	 * submitted twice. */
	const char *name = NULL;
	for (size_t i = 0; i < nextra; i++)
		if (!strncmp(extra[i], "--job-name=", 11))
			name = extra[i] + 11;
	double delay = retry_first;
	int rc = -1;
	for (int attempt = 1;; attempt++) {
		if (attempt > 1 && name && accepted_already(name, jobid)) {
			rc = 0;
			break;
		}
		struct cmd_result r;
		if (run_cmd(SLURM_SBATCH, args, &r, err) < 0) {
			error_prefix(err, "sbatch %s: ", script);
			break;
		}
		char line[512];
		int transient = 0;
		if (r.timed_out) {
			transient = 1;
			error_set(err, "sbatch %s: no answer within %.0f s (attempt %d)", script, cmd_timeout,
				  attempt);
		} else if (r.status != 0) {
			transient = slurm_is_transient(buf_str(&r.err));
			error_set(err, "sbatch %s: %s (exit %d, attempt %d)", script,
				  first_line(&r.err, line, sizeof(line)), r.status, attempt);
		} else if (slurm_parse_sbatch(buf_str(&r.out), jobid) == 0) {
			rc = 0;
		} else {
			error_set(err, "sbatch %s: unexpected output '%.200s'", script, buf_str(&r.out));
		}
		result_release(&r);
		if (rc == 0 || !transient || attempt >= retry_attempts)
			break;
		/* Exponential backoff: first, 2*first, 4*first, ... capped. */
		sleep_seconds(delay);
		delay = delay * 2 > retry_max ? retry_max : delay * 2;
	}
	mem_free(args);
	return rc;
}

/* ---- squeue ------------------------------------------------------------ */

/* Every field ends in '|' so that no field is padded; order is what
 * slurm_parse_squeue_line expects. exit_code is the raw wait status. */
const char slurm_squeue_format[] =
	"JobID:|,JobArrayID:|,ArrayJobID:|,ArrayTaskID:|,State:|,Reason:|,exit_code:|,RestartCnt:|,NodeList:|";
#define SQUEUE_FIELDS 9

void slurm_jobs_init(struct slurm_jobs *jobs)
{
	memset(jobs, 0, sizeof(*jobs));
}

void slurm_jobs_release(struct slurm_jobs *jobs)
{
	mem_free(jobs->v);
	memset(jobs, 0, sizeof(*jobs));
}

static int parse_long(const char *s, long *v)
{
	char *end;
	errno = 0;
	long x = strtol(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*v = x;
	return 0;
}

int slurm_parse_squeue_line(const char *line, struct slurm_job *job, struct error *err)
{
	char f[SQUEUE_FIELDS][128];
	const char *p = line;
	int i;
	for (i = 0; i < SQUEUE_FIELDS; i++) {
		const char *bar = strchr(p, '|');
		if (!bar)
			break;
		copy_field(f[i], sizeof(f[i]), p, (size_t)(bar - p));
		p = bar + 1;
	}
	if (i < SQUEUE_FIELDS)
		return error_set(err, "squeue: %d fields instead of %d in '%.200s'", i, SQUEUE_FIELDS, line);
	memset(job, 0, sizeof(*job));
	long v, status, restarts;
	if (parse_long(f[0], &job->job_id) < 0 || parse_long(f[2], &job->array_job_id) < 0 ||
	    parse_long(f[6], &status) < 0 || parse_long(f[7], &restarts) < 0)
		return error_set(err, "squeue: bad number in '%.200s'", line);
	job->array_task = -1;
	if (strcmp(f[3], "N/A") != 0) {
		if (parse_long(f[3], &v) < 0 || v < 0)
			return error_set(err, "squeue: bad ArrayTaskID '%s' in '%.200s'", f[3], line);
		job->array_task = (int)v;
	}
	copy_field(job->state, sizeof(job->state), f[4], strlen(f[4]));
	copy_field(job->reason, sizeof(job->reason), f[5], strlen(f[5]));
	/* exit_code is the wait(2) status: exit status in bits 8-15, signal in 0-6. */
	job->exit_code = (int)((status >> 8) & 0xff);
	job->signal = (int)(status & 0x7f);
	job->restarts = (int)restarts;
	copy_field(job->nodes, sizeof(job->nodes), f[8], strlen(f[8]));
	return 0;
}

int slurm_jobs_push(struct slurm_jobs *jobs, const struct slurm_job *job)
{
	if (jobs->n == jobs->cap) {
		size_t cap = jobs->cap ? jobs->cap * 2 : 64;
		struct slurm_job *v = mem_realloc(jobs->v, cap * sizeof(*v));
		if (!v)
			return -1;
		jobs->v = v;
		jobs->cap = cap;
	}
	jobs->v[jobs->n++] = *job;
	return 0;
}

static int is_unknown_job_error(const char *text)
{
	return strstr(text, "Invalid job id specified") != NULL;
}

/* One squeue call; select is "--jobs=a,b" or "--name=x,y". */
static int squeue_chunk(const char *select, struct slurm_jobs *out, struct error *err)
{
	struct buf jobs_arg = BUF_INIT, fmt_arg = BUF_INIT;
	buf_adds(&jobs_arg, select);
	buf_addf(&fmt_arg, "--Format=%s", slurm_squeue_format);
	if (jobs_arg.failed || fmt_arg.failed) {
		buf_release(&jobs_arg);
		buf_release(&fmt_arg);
		return error_set(err, "squeue: out of memory");
	}
	const char *args[] = {"--states=all", "--array", "--noheader", buf_str(&jobs_arg), buf_str(&fmt_arg), NULL};
	struct cmd_result r;
	int rc = run_query(SLURM_SQUEUE, args, &r, err);
	buf_release(&jobs_arg);
	buf_release(&fmt_arg);
	if (rc < 0)
		return rc;
	char line[512];
	if (r.timed_out) {
		rc = error_set(err, "squeue: no answer within %.0f s", cmd_timeout);
	} else if (r.status != 0) {
		/* All ids unknown (purged after MinJobAge): exit 1, nothing known. */
		if (!is_unknown_job_error(buf_str(&r.err)))
			rc = error_set(err, "squeue: %s (exit %d)", one_line(&r.err, line, sizeof(line)),
				       r.status);
	} else {
		char *s = r.out.s;
		while (s && *s) {
			char *nl = strchr(s, '\n');
			if (nl)
				*nl = '\0';
			size_t n = strlen(s);
			while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
				s[--n] = '\0';
			if (n) {
				struct slurm_job job;
				if (slurm_parse_squeue_line(s, &job, err) < 0) {
					rc = -1;
					break;
				}
				if (slurm_jobs_push(out, &job) < 0) {
					rc = error_set(err, "squeue: out of memory");
					break;
				}
			}
			if (!nl)
				break;
			s = nl + 1;
		}
	}
	result_release(&r);
	return rc;
}

/* Calls fn(list, ctx) for comma-separated chunks of ids, each under ID_LIST_MAX. */
static int for_id_chunks(const long *ids, size_t n, char sep, int (*fn)(const char *, void *), void *ctx,
			 struct error *err)
{
	struct buf list = BUF_INIT;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (list.len)
			buf_addc(&list, sep);
		buf_addf(&list, "%ld", ids[i]);
		if (list.failed) {
			rc = error_set(err, "out of memory listing job ids");
			break;
		}
		if (list.len > ID_LIST_MAX || i + 1 == n) {
			rc = fn(buf_str(&list), ctx);
			buf_reset(&list);
		}
	}
	buf_release(&list);
	return rc;
}

struct squeue_ctx {
	struct slurm_jobs *out;
	struct error *err;
};

static int squeue_fn(const char *list, void *ctx)
{
	struct squeue_ctx *c = ctx;
	struct buf arg = BUF_INIT;
	buf_addf(&arg, "--jobs=%s", list);
	int rc = arg.failed ? error_set(c->err, "squeue: out of memory") : squeue_chunk(buf_str(&arg), c->out, c->err);
	buf_release(&arg);
	return rc;
}

int slurm_squeue_names(const char *const *names, size_t n, struct slurm_jobs *out, struct error *err)
{
	struct buf arg = BUF_INIT;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!names[i][0] || strchr(names[i], ',')) {
			rc = error_set(err, "squeue: bad job name '%s'", names[i]);
			break;
		}
		buf_adds(&arg, arg.len ? "," : "--name=");
		buf_adds(&arg, names[i]);
		if (arg.failed) {
			rc = error_set(err, "squeue: out of memory");
		} else if (arg.len > ID_LIST_MAX || i + 1 == n) {
			rc = squeue_chunk(buf_str(&arg), out, err);
			buf_reset(&arg);
		}
	}
	buf_release(&arg);
	return rc;
}

int slurm_squeue(const long *ids, size_t n, struct slurm_jobs *out, struct error *err)
{
	struct squeue_ctx c = {out, err};
	return for_id_chunks(ids, n, ',', squeue_fn, &c, err);
}

/* ---- scontrol ---------------------------------------------------------- */

/* A token starts a new KEY=VALUE pair when KEY is made of letters, digits
 * and the characters scontrol uses in keys (AllocNode:Sid, CPUs/Task). */
static int starts_pair(const char *tok, size_t len, size_t *keylen)
{
	size_t i = 0;
	if (!len || !isalpha((unsigned char)tok[0]))
		return 0;
	while (i < len && (isalnum((unsigned char)tok[i]) || tok[i] == '_' || tok[i] == ':' || tok[i] == '/'))
		i++;
	if (i < len && tok[i] == '=') {
		*keylen = i;
		return 1;
	}
	return 0;
}

static void set_key(struct slurm_job_info *info, const char *key, size_t klen, const char *val, size_t vlen)
{
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
	char v[512];
	while (vlen && val[vlen - 1] == ' ')
		vlen--;
	copy_field(v, sizeof(v), val, vlen);
	long x;
	if (KEY("JobId")) {
		if (parse_long(v, &x) == 0)
			info->job_id = x;
	} else if (KEY("ArrayJobId")) {
		if (parse_long(v, &x) == 0)
			info->array_job_id = x;
	} else if (KEY("ArrayTaskId")) {
		/* "4" for an element; "0-9%2" for a pending array's remaining range. */
		if (parse_long(v, &x) == 0)
			info->array_task = (int)x;
	} else if (KEY("JobName")) {
		copy_field(info->name, sizeof(info->name), v, strlen(v));
	} else if (KEY("JobState")) {
		copy_field(info->state, sizeof(info->state), v, strlen(v));
	} else if (KEY("Reason")) {
		copy_field(info->reason, sizeof(info->reason), v, strlen(v));
	} else if (KEY("ExitCode")) {
		int code = 0, sig = 0;
		if (sscanf(v, "%d:%d", &code, &sig) == 2)
			info->exit_code = code, info->signal = sig;
	} else if (KEY("Restarts")) {
		if (parse_long(v, &x) == 0)
			info->restarts = (int)x;
	} else if (KEY("Requeue")) {
		info->requeue = strcmp(v, "1") == 0;
	} else if (KEY("NodeList")) {
		copy_field(info->nodes, sizeof(info->nodes), v, strcmp(v, "(null)") ? strlen(v) : 0);
	} else if (KEY("StartTime")) {
		copy_field(info->start_time, sizeof(info->start_time), v, strlen(v));
	} else if (KEY("EndTime")) {
		copy_field(info->end_time, sizeof(info->end_time), v, strlen(v));
	} else if (KEY("RunTime")) {
		copy_field(info->run_time, sizeof(info->run_time), v, strlen(v));
	} else if (KEY("TimeLimit")) {
		copy_field(info->time_limit, sizeof(info->time_limit), v, strlen(v));
	} else if (KEY("StdOut")) {
		copy_field(info->std_out, sizeof(info->std_out), v, strlen(v));
	}
#undef KEY
}

int slurm_parse_show_job(const char *line, struct slurm_job_info *info, struct error *err)
{
	memset(info, 0, sizeof(*info));
	info->array_task = -1;
	size_t end = strcspn(line, "\n");
	const char *key = NULL, *val = NULL;
	size_t klen = 0;
	size_t i = 0;
	while (i < end) {
		while (i < end && line[i] == ' ')
			i++;
		size_t start = i;
		while (i < end && line[i] != ' ')
			i++;
		size_t kl;
		if (i > start && starts_pair(line + start, i - start, &kl)) {
			if (key)
				set_key(info, key, klen, val, (size_t)(line + start - 1 - val));
			key = line + start;
			klen = kl;
			val = key + kl + 1;
		}
		/* A token without KEY= belongs to the previous value ("JobName=a b"). */
	}
	if (key) {
		size_t vend = end;
		while (vend > 0 && line[vend - 1] == ' ')
			vend--;
		set_key(info, key, klen, val, vend > (size_t)(val - line) ? vend - (size_t)(val - line) : 0);
	}
	if (info->job_id <= 0 || !info->state[0])
		return error_set(err, "scontrol show job: no JobId/JobState in '%.200s'", line);
	return 0;
}

int slurm_show_job(const char *id, struct slurm_job_info *info, struct error *err)
{
	const char *args[] = {"show", "job", "-o", id, NULL};
	struct cmd_result r;
	if (run_query(SLURM_SCONTROL, args, &r, err) < 0)
		return -1;
	int rc;
	char line[512];
	if (r.timed_out)
		rc = error_set(err, "scontrol show job %s: no answer within %.0f s", id, cmd_timeout);
	else if (r.status != 0 && is_unknown_job_error(buf_str(&r.err)))
		rc = 1;
	else if (r.status != 0)
		rc = error_set(err, "scontrol show job %s: %s (exit %d)", id, one_line(&r.err, line, sizeof(line)),
			       r.status);
	else
		rc = slurm_parse_show_job(buf_str(&r.out), info, err);
	result_release(&r);
	return rc;
}

int slurm_parse_config(const char *text, struct slurm_config *cfg, struct error *err)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_array_size = -1;
	cfg->min_job_age = -1;
	const char *p = text;
	while (*p) {
		size_t n = strcspn(p, "\n");
		char line[512];
		copy_field(line, sizeof(line), p, n);
		char *eq = strstr(line, " = ");
		if (eq) {
			char *k = line, *v = eq + 3, *ke = eq;
			while (ke > k && ke[-1] == ' ')
				ke--;
			*ke = '\0';
			if (strcmp(k, "MaxArraySize") == 0)
				cfg->max_array_size = strtol(v, NULL, 10);
			else if (strcmp(k, "MinJobAge") == 0) /* "300 sec" */
				cfg->min_job_age = strtol(v, NULL, 10);
			else if (strcmp(k, "MpiDefault") == 0)
				copy_field(cfg->mpi_default, sizeof(cfg->mpi_default), v, strlen(v));
			else if (strcmp(k, "SLURM_VERSION") == 0)
				copy_field(cfg->version, sizeof(cfg->version), v, strlen(v));
		}
		p += n;
		if (*p)
			p++;
	}
	if (cfg->max_array_size < 0)
		return error_set(err, "scontrol show config: no MaxArraySize line");
	return 0;
}

int slurm_read_config(struct slurm_config *cfg, struct error *err)
{
	const char *args[] = {"show", "config", NULL};
	struct cmd_result r;
	if (run_cmd(SLURM_SCONTROL, args, &r, err) < 0)
		return -1;
	int rc;
	char line[512];
	if (r.timed_out)
		rc = error_set(err, "scontrol show config: no answer within %.0f s", cmd_timeout);
	else if (r.status != 0)
		rc = error_set(err, "scontrol show config: %s (exit %d)", first_line(&r.err, line, sizeof(line)),
			       r.status);
	else
		rc = slurm_parse_config(buf_str(&r.out), cfg, err);
	result_release(&r);
	return rc;
}

int slurm_max_array_size(long *size, struct error *err)
{
	struct slurm_config cfg;
	if (slurm_read_config(&cfg, err) < 0)
		return -1;
	*size = cfg.max_array_size;
	return 0;
}

int slurm_requeue(const char *id, struct error *err)
{
	const char *args[] = {"requeue", id, NULL};
	struct cmd_result r;
	if (run_cmd(SLURM_SCONTROL, args, &r, err) < 0)
		return -1;
	int rc = 0;
	char line[512];
	if (r.timed_out)
		rc = error_set(err, "scontrol requeue %s: no answer within %.0f s", id, cmd_timeout);
	else if (r.status != 0)
		rc = error_set(err, "scontrol requeue %s: %s (exit %d)", id, first_line(&r.err, line, sizeof(line)),
			       r.status);
	result_release(&r);
	return rc;
}

/* ---- scancel ----------------------------------------------------------- */

/* scancel's complaints about jobs that are gone or already ending. */
static int only_harmless(const char *text)
{
	const char *p = text;
	while (*p) {
		size_t n = strcspn(p, "\n");
		char line[512];
		copy_field(line, sizeof(line), p, n);
		if (n && !strstr(line, "already completing or completed") && !strstr(line, "Invalid job id"))
			return 0;
		p += n;
		if (*p)
			p++;
	}
	return 1;
}

struct cancel_ctx {
	struct error *err;
};

static int cancel_fn(const char *list, void *ctx)
{
	struct error *err = ((struct cancel_ctx *)ctx)->err;
	/* for_id_chunks joined the ids with spaces; scancel wants them apart. */
	size_t n = 1;
	for (const char *p = list; *p; p++)
		n += *p == ' ';
	char *copy = mem_strdup(list);
	const char **args = mem_calloc(n + 1, sizeof(*args));
	if (!copy || !args) {
		mem_free(copy);
		mem_free(args);
		return error_set(err, "scancel: out of memory");
	}
	size_t k = 0;
	for (char *save, *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
		args[k++] = t;
	struct cmd_result r;
	int rc = run_query(SLURM_SCANCEL, args, &r, err);
	if (rc == 0) {
		char line[512];
		if (r.timed_out)
			rc = error_set(err, "scancel: no answer within %.0f s", cmd_timeout);
		else if (r.status != 0 && !only_harmless(buf_str(&r.err)))
			rc = error_set(err, "scancel: %s (exit %d)", one_line(&r.err, line, sizeof(line)),
				       r.status);
		result_release(&r);
	}
	mem_free(copy);
	mem_free(args);
	return rc;
}

int slurm_cancel(const long *ids, size_t n, struct error *err)
{
	struct cancel_ctx c = {err};
	return for_id_chunks(ids, n, ' ', cancel_fn, &c, err);
}

int slurm_cancel_text(const char *ids, struct error *err)
{
	struct cancel_ctx c = {err};
	return ids && *ids ? cancel_fn(ids, &c) : 0;
}

/* ---- failure kinds ------------------------------------------------------ */

static const char *const failure_names[SLURM_NFAILURES] = {
	"exit", "signal", "oom", "timeout", "preempted", "node_fail", "cancelled", "dependency", "lost",
};

const char *slurm_failure_name(enum slurm_failure kind)
{
	return kind >= 0 && kind < SLURM_NFAILURES ? failure_names[kind] : "?";
}

int slurm_failure_from_name(const char *name)
{
	for (int i = 0; i < SLURM_NFAILURES; i++)
		if (strcmp(name, failure_names[i]) == 0)
			return i;
	return -1;
}

int slurm_failure_kind(const char *state, const char *reason, int exit_code, int signal)
{
	if (!state || !*state)
		return SLURM_FAIL_LOST;
	if (!reason)
		reason = "";
	/* Without --kill-on-invalid-dep the dependent stays PENDING forever. */
	if (strcmp(reason, "DependencyNeverSatisfied") == 0)
		return SLURM_FAIL_DEPENDENCY;
	if (strcmp(state, "OUT_OF_MEMORY") == 0 || strcmp(reason, "OutOfMemory") == 0)
		return SLURM_FAIL_OOM;
	if (strcmp(state, "TIMEOUT") == 0 || strcmp(state, "DEADLINE") == 0)
		return SLURM_FAIL_TIMEOUT;
	if (strcmp(state, "PREEMPTED") == 0)
		return SLURM_FAIL_PREEMPTED;
	if (strcmp(state, "NODE_FAIL") == 0 || strcmp(state, "BOOT_FAIL") == 0)
		return SLURM_FAIL_NODE_FAIL;
	if (strcmp(state, "CANCELLED") == 0 || strcmp(state, "REVOKED") == 0)
		return SLURM_FAIL_CANCELLED;
	if (strcmp(state, "FAILED") == 0 || strcmp(state, "SPECIAL_EXIT") == 0 ||
	    (strcmp(state, "COMPLETED") == 0 && (exit_code || signal))) {
		if (signal)
			return SLURM_FAIL_SIGNAL;
		return SLURM_FAIL_EXIT;
	}
	return -1; /* PENDING, RUNNING, COMPLETING, REQUEUED, SUSPENDED, COMPLETED ... */
}

int slurm_log_failure_kind(const char *text)
{
	if (!text)
		return -1;
	/* slurmstepd's messages, 22.05: jobacct_gather OverMemoryKill, the cgroup
	 * OOM notice, and the "*** JOB N ON host CANCELLED AT t DUE TO X ***" lines. */
	if (strstr(text, "exceeded memory limit") || strstr(text, "Exceeded job memory limit") ||
	    strstr(text, "oom-kill event") || strstr(text, "oom_kill event"))
		return SLURM_FAIL_OOM;
	if (strstr(text, "DUE TO TIME LIMIT"))
		return SLURM_FAIL_TIMEOUT;
	if (strstr(text, "DUE TO NODE FAILURE"))
		return SLURM_FAIL_NODE_FAIL;
	if (strstr(text, "DUE TO PREEMPTION"))
		return SLURM_FAIL_PREEMPTED;
	return -1;
}

int slurm_stop_kind(const struct slurm_job_info *info, int restarts, int *requeued)
{
	*requeued = info->restarts > restarts;
	if (!strcmp(info->state, "NODE_FAIL") || !strcmp(info->reason, "NodeDown"))
		return SLURM_FAIL_NODE_FAIL;
	if (*requeued || !strcmp(info->state, "PREEMPTED"))
		return SLURM_FAIL_PREEMPTED;
	if (!strcmp(info->state, "TIMEOUT") || !strcmp(info->state, "DEADLINE") ||
	    !strcmp(info->reason, "TimeLimit"))
		return SLURM_FAIL_TIMEOUT;
	return SLURM_FAIL_CANCELLED;
}

int slurm_reason_stuck(const char *reason)
{
	static const char *const stuck[] = {"PartitionConfig",    "PartitionNodeLimit", "PartitionTimeLimit",
					    "BadConstraints",     "InvalidAccount",     "InvalidQOS",
					    "ReqNodeNotAvail",    "JobHeldAdmin",       "JobHeldUser",
					    "PartitionDown",      "PartitionInactive"};
	for (size_t i = 0; reason && i < sizeof(stuck) / sizeof(stuck[0]); i++)
		if (!strncmp(reason, stuck[i], strlen(stuck[i])))
			return 1;
	return 0;
}
