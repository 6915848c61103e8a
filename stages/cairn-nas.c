/* cairn-nas: neural architecture search as pipeline stages (nas/).
 *   sample    random architectures of a search space
 *   propose   the next ones, from the surrogate fitted to finished trials
 *   top       the best trials' architectures, to train again elsewhere
 *   trial     run a trainer on one proposal (records which one)
 *   analyze   NASTransfer: proxy against target, search against random
 * Exit 0 ok, 1 failure of the work (I/O), 2 bad usage or bad input. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/cmd.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "core/parse.h"
#include "nas/propose.h"
#include "nas/space.h"
#include "nas/transfer.h"
#include "nas/trial.h"
#include "nn/dataset.h"

#define EXIT_USAGE 2

static const char *prog = "cairn-nas";

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: %s COMMAND [options]\n"
	    "\n"
	    "Neural architecture search as pipeline stages: propose architectures, train\n"
	    "each in a trial, propose again from the results, and ask whether what was\n"
	    "found on a small proxy dataset holds on the large target (NASTransfer).\n"
	    "\n"
	    "commands:\n"
	    "  sample  --space S --like SHARD --count N --out DIR [--seed N]\n"
	    "  propose --space S --like SHARD --count N --out DIR [--seed N] [--metric KEY] "
	    "TRIAL...\n"
	    "  top     --count N --out DIR [--metric KEY] TRIAL...\n"
	    "  trial   --proposals DIR --index I --out DIR [--keep-going] -- COMMAND ... {arch} "
	    "...\n"
	    "  analyze --out DIR [--metric KEY] --proxy TRIAL... --target TRIAL...\n"
	    "\n"
	    "A space is an architecture spec with choice slots, e.g.\n"
	    "  'cnn:widths={8|16|32}-{16|32|64},convs={1|2},fc={0|64|128}'\n"
	    "'%s COMMAND --help' describes each command; docs/nas.md the whole.\n"
	    "\n"
	    "example (configs/nastransfer.ini runs all of it):\n"
	    "  %s sample --space 'cnn:widths={8|16}-{16|32}' --like proxy.ds --count 4 --out s\n"
	    "  %s trial --proposals s --index 0 --out t0 -- \\\n"
	    "      cairn-train-classifier --arch {arch} --train proxy.ds --test val.ds --out t0\n"
	    "\n"
	    "exit status: 0 ok, 1 the work failed (I/O), 2 bad usage or bad input.\n",
	    prog, prog, prog, prog);
}

static int bad_usage(const char *cmd, const char *fmt, const char *arg)
{
	return cmd_bad_usage(prog, cmd, fmt, arg);
}

static int fail(const char *cmd, int rc, const struct error *err)
{
	fprintf(stderr, "%s %s: %s\n", prog, cmd, err->msg);
	return rc;
}

/* Options shared by the commands; each takes the ones it names. */
struct opts {
	const char *space, *like, *out, *metric, *proposals;
	long count, index, seed;
	int help, keep_going;
};

enum {
	O_SPACE = 256,
	O_LIKE,
	O_COUNT,
	O_OUT,
	O_SEED,
	O_METRIC,
	O_PROPOSALS,
	O_INDEX,
	O_KEEP_GOING
};

/* Parse argv's options ("+": stop at the first non-option for trial);
 * returns optind, or -1 after a usage message. */
static int parse_opts(const char *cmd, int argc, char **argv, const char *allowed, struct opts *o)
{
	static const struct option longopts[] = {{"space", required_argument, 0, O_SPACE},
						 {"like", required_argument, 0, O_LIKE},
						 {"count", required_argument, 0, O_COUNT},
						 {"out", required_argument, 0, O_OUT},
						 {"seed", required_argument, 0, O_SEED},
						 {"metric", required_argument, 0, O_METRIC},
						 {"proposals", required_argument, 0, O_PROPOSALS},
						 {"index", required_argument, 0, O_INDEX},
						 {"keep-going", no_argument, 0, O_KEEP_GOING},
						 {"help", no_argument, 0, 'h'},
						 {0, 0, 0, 0}};
	memset(o, 0, sizeof *o);
	o->count = o->index = -1;
	o->seed = 1;
	o->metric = NAS_DEFAULT_METRIC;
	int c, trial = !strcmp(cmd, "trial");
	while ((c = cmd_getopt(prog, argc, argv, trial ? "+h" : "h", longopts)) != -1) {
		const char *name = NULL;
		for (const struct option *lo = longopts; lo->name; lo++)
			if (lo->val == c)
				name = lo->name;
		if (c != 'h' && (c == '?' || !strstr(allowed, name))) {
			if (c != '?')
				bad_usage(cmd, "--%s is not an option of this command", name);
			else
				fprintf(stderr, "(see '%s %s --help')\n", prog, cmd);
			return -1;
		}
		switch (c) {
		case 'h':
			o->help = 1;
			break;
		case O_SPACE:
			o->space = optarg;
			break;
		case O_LIKE:
			o->like = optarg;
			break;
		case O_OUT:
			o->out = optarg;
			break;
		case O_METRIC:
			o->metric = optarg;
			break;
		case O_PROPOSALS:
			o->proposals = optarg;
			break;
		case O_KEEP_GOING:
			o->keep_going = 1;
			break;
		case O_COUNT:
			if (parse_long(optarg, 1, 100000, &o->count) < 0)
				return bad_usage(cmd,
						 "--count: '%s' is not an integer in 1..100000",
						 optarg),
				       -1;
			break;
		case O_INDEX:
			if (parse_long(optarg, 0, 10000000, &o->index) < 0)
				return bad_usage(cmd,
						 "--index: '%s' is not an integer in 0..10000000",
						 optarg),
				       -1;
			break;
		case O_SEED:
			if (parse_long(optarg, 0, 2147483647, &o->seed) < 0)
				return bad_usage(cmd,
						 "--seed: '%s' is not an integer in 0..2147483647",
						 optarg),
				       -1;
			break;
		}
	}
	return optind;
}

/* The proposal's cost and validity: each accepted architecture lands in
 * `found`, in the order the search accepts them. */
struct check {
	const struct nas_space *space;
	int c, h, w, classes;
	char **tried; /* canonical specs already trained */
	int ntried;
	struct nas_proposal *found;
	int nfound, invalid;
	char last_invalid[sizeof(struct error)];
};

static int check_arch(void *ctx, const int *choice, struct error *err)
{
	struct check *k = ctx;
	char *spec = nas_space_render(k->space, choice);
	struct nas_arch_cost cost;
	struct error why;
	if (!spec)
		return error_set(err, "out of memory");
	int rc = nas_arch_measure(spec, k->c, k->h, k->w, k->classes, &cost, &why);
	mem_free(spec);
	if (rc < 0) {
		k->invalid++;
		snprintf(k->last_invalid, sizeof k->last_invalid, "%s", why.msg);
		return 0;
	}
	/* Two choice vectors that build the same net are one architecture. */
	int dup = 0;
	for (int i = 0; i < k->ntried && !dup; i++)
		dup = !strcmp(k->tried[i], cost.canonical);
	for (int i = 0; i < k->nfound && !dup; i++)
		dup = !strcmp(k->found[i].arch, cost.canonical);
	if (dup) {
		mem_free(cost.canonical);
		return 0;
	}
	struct nas_proposal *p = &k->found[k->nfound++];
	memcpy(p->choice, choice, (size_t)k->space->ndim * sizeof *choice);
	p->arch = cost.canonical;
	p->params = cost.params;
	p->mflops = cost.mflops;
	return 1;
}

/* Input shape and classes from a shard (--like). */
static int shape_of(const char *path, struct check *k, struct error *err)
{
	struct dataset ds;
	if (dataset_open(&ds, path, 0, err) < 0)
		return -1;
	k->c = (int)ds.shape.channels;
	k->h = (int)ds.shape.height;
	k->w = (int)ds.shape.width;
	k->classes = (int)ds.shape.num_classes;
	dataset_close(&ds);
	return 0;
}

static void print_proposals(const struct nas_proposals *ps, int ndim)
{
	printf("%d %s proposals from %s\n", ps->n, ps->method, ps->space);
	for (int i = 0; i < ps->n; i++) {
		printf("%4d  ", i);
		for (int k = 0; k < ndim; k++)
			printf(k ? ",%d" : "%d", ps->p[i].choice[k]);
		printf("  %9lld params  %8.2f MFLOP  %s\n", ps->p[i].params, ps->p[i].mflops,
		       ps->p[i].arch);
	}
}

static void release_trials(struct nas_trial *t, int n)
{
	for (int i = 0; i < n; i++)
		nas_trial_release(&t[i]);
	mem_free(t);
}

/* Load trial folders; NULL after printing why. */
static struct nas_trial *load_trials(const char *cmd, char **dirs, int n, const char *metric)
{
	struct nas_trial *t = mem_calloc((size_t)n + 1, sizeof *t);
	struct error err;
	if (!t) {
		fprintf(stderr, "%s %s: out of memory\n", prog, cmd);
		return NULL;
	}
	for (int i = 0; i < n; i++)
		if (nas_trial_load(&t[i], dirs[i], metric, &err) < 0) {
			fail(cmd, EXIT_USAGE, &err);
			release_trials(t, i);
			return NULL;
		}
	return t;
}

/* 0, or -1 after saying which trial folder is given twice ("t/0" and "t/0/"
 * are one folder): its training would count twice, in the means, in `top`'s
 * "2 trainings" and in the search's training time. */
static int once_each(const char *cmd, char **dirs, int n)
{
	struct stat *st = mem_calloc((size_t)n + 1, sizeof *st);
	int rc = 0;
	if (!st) {
		fprintf(stderr, "%s %s: out of memory\n", prog, cmd);
		return -1;
	}
	for (int i = 0; i < n && rc == 0; i++) {
		if (stat(dirs[i], &st[i]) < 0)
			continue; /* loaded just now: gone since, nothing to compare */
		for (int j = 0; j < i && rc == 0; j++)
			if (st[j].st_ino == st[i].st_ino && st[j].st_dev == st[i].st_dev) {
				fprintf(stderr, "%s %s: trial %s is given twice (also as %s)\n",
					prog, cmd, dirs[i], dirs[j]);
				rc = -1;
			}
	}
	mem_free(st);
	return rc;
}

static const char sample_help[] =
    "usage: %s sample --space S --like SHARD --count N --out DIR [--seed N]\n"
    "\n"
    "Draw N distinct architectures of space S uniformly at random (the random\n"
    "baseline, and the first round of a search). Each is built once for inputs\n"
    "shaped like SHARD's records (that is the check that it is valid: invalid\n"
    "combinations are skipped; two choices that build the same net count once).\n"
    "Writes DIR/proposals.json and DIR/proposals.tsv.\n";

static const char propose_help[] =
    "usage: %s propose --space S --like SHARD --count N --out DIR [--seed N] [--metric KEY]\n"
    "                   TRIAL...\n"
    "\n"
    "The next N architectures of space S to train: a cubic polyharmonic spline fitted\n"
    "to the trials' results (metrics.json KEY, default test_accuracy; higher is\n"
    "better) scores candidates near the best so far and drawn at random, weighing\n"
    "predicted accuracy against distance to what was tried. Never proposes an\n"
    "architecture a TRIAL trained. Writes DIR/proposals.json and DIR/proposals.tsv.\n";

/* sample and propose: one body, propose fits the surrogate to the trials. */
static int cmd_propose(int argc, char **argv)
{
	const char *cmd = argv[0];
	int is_sample = !strcmp(cmd, "sample");
	struct opts o;
	int first = parse_opts(
	    cmd, argc, argv,
	    is_sample ? "space like count out seed" : "space like count out seed metric", &o);
	if (first < 0)
		return EXIT_USAGE;
	if (o.help)
		return printf(is_sample ? sample_help : propose_help, prog), 0;
	if (!o.space || !o.like || o.count < 0 || !o.out)
		return bad_usage(cmd, "%s", "--space, --like, --count and --out are required");
	if (is_sample && first < argc)
		return bad_usage(cmd, "unexpected argument '%s'", argv[first]);
	if (!is_sample && first == argc)
		return bad_usage(cmd, "%s", "no TRIAL folder to learn from");
	struct nas_space space;
	struct check k = {0};
	struct error err;
	int ntrials = argc - first, rc = EXIT_USAGE;
	struct nas_trial *t = NULL;
	int *tried = NULL, *out = NULL;
	double *y = NULL;
	if (nas_space_parse(&space, o.space, &err) < 0)
		return fail(cmd, EXIT_USAGE, &err);
	if (shape_of(o.like, &k, &err) < 0) {
		fail(cmd, EXIT_USAGE, &err);
		goto out;
	}
	if (!is_sample && (!(t = load_trials(cmd, argv + first, ntrials, o.metric)) ||
			   once_each(cmd, argv + first, ntrials) < 0))
		goto out;
	if (is_sample)
		ntrials = 0;
	k.space = &space;
	k.found = mem_calloc((size_t)o.count, sizeof *k.found);
	k.tried = mem_calloc((size_t)ntrials + 1, sizeof *k.tried);
	tried = mem_calloc(((size_t)ntrials + 1) * space.ndim, sizeof *tried);
	y = mem_calloc((size_t)ntrials + 1, sizeof *y);
	out = mem_calloc((size_t)o.count * space.ndim, sizeof *out);
	if (!k.found || !k.tried || !tried || !y || !out) {
		error_set(&err, "out of memory");
		rc = fail(cmd, 1, &err);
		goto out;
	}
	for (int i = 0; i < ntrials; i++) {
		if (strcmp(t[i].space, o.space) != 0) {
			fprintf(stderr, "%s %s: trial %s was proposed from space '%s', not '%s'\n",
				prog, cmd, t[i].dir, t[i].space, o.space);
			goto out;
		}
		if (nas_choice_parse(&space, t[i].choices, tried + (size_t)i * space.ndim, &err) <
		    0) {
			error_prefix(&err, "trial %s: ", t[i].dir);
			fail(cmd, EXIT_USAGE, &err);
			goto out;
		}
		y[i] = t[i].accuracy;
		k.tried[k.ntried++] = t[i].arch;
	}
	/* A failed training (trial --keep-going) scores as the worst one seen:
	 * the surrogate steers away from it, and it is never proposed again. */
	double worst = INFINITY;
	for (int i = 0; i < ntrials; i++)
		worst = t[i].failed ? worst : fmin(worst, y[i]);
	for (int i = 0; i < ntrials; i++)
		if (t[i].failed)
			y[i] = isfinite(worst) ? worst : 0;
	int r = is_sample ? nas_propose_random(&space, tried, 0, (int)o.count, (uint64_t)o.seed,
					       check_arch, &k, out, &err)
			  : nas_propose_surrogate(&space, tried, y, ntrials, (int)o.count,
						  (uint64_t)o.seed, check_arch, &k, out, &err);
	if (r < 0) {
		if (k.invalid)
			fprintf(stderr, "%s %s: %d invalid architectures skipped, the last: %s\n",
				prog, cmd, k.invalid, k.last_invalid);
		fail(cmd, EXIT_USAGE, &err);
		goto out;
	}
	struct nas_proposals ps = {.space = (char *)o.space,
				   .method = is_sample ? "random" : "surrogate",
				   .n = k.nfound,
				   .p = k.found};
	if (nas_proposals_write(o.out, &ps, (uint64_t)o.seed, ntrials, &err) < 0) {
		rc = fail(cmd, 1, &err);
		goto out;
	}
	print_proposals(&ps, space.ndim);
	if (k.invalid)
		printf("(%d invalid combinations skipped, the last: %s)\n", k.invalid,
		       k.last_invalid);
	rc = 0;
out:
	for (int i = 0; i < k.nfound; i++)
		mem_free(k.found[i].arch);
	mem_free(k.found);
	mem_free(k.tried);
	mem_free(tried);
	mem_free(y);
	mem_free(out);
	if (t)
		release_trials(t, ntrials ? ntrials : argc - first);
	nas_space_release(&space);
	return rc;
}

static const char top_help[] =
    "usage: %s top --count N --out DIR [--metric KEY] TRIAL...\n"
    "\n"
    "The N best architectures of the TRIALs (metrics.json KEY, default test_accuracy;\n"
    "an architecture trained twice counts once, with its mean) as proposals, to\n"
    "train again elsewhere: the search's picks, moved from the proxy to the target.\n"
    "Writes DIR/proposals.json and DIR/proposals.tsv (method top).\n";

static int cmd_top(int argc, char **argv)
{
	const char *cmd = argv[0];
	struct opts o;
	int first = parse_opts(cmd, argc, argv, "count out metric", &o);
	if (first < 0)
		return EXIT_USAGE;
	if (o.help)
		return printf(top_help, prog), 0;
	if (o.count < 0 || !o.out)
		return bad_usage(cmd, "%s", "--count and --out are required");
	int n = argc - first, rc = EXIT_USAGE, nu = 0, nfailed = 0;
	if (n == 0)
		return bad_usage(cmd, "%s", "no TRIAL folder to choose from");
	struct nas_trial *t = load_trials(cmd, argv + first, n, o.metric);
	if (!t)
		return EXIT_USAGE;
	if (once_each(cmd, argv + first, n) < 0) {
		release_trials(t, n);
		return EXIT_USAGE;
	}
	struct nas_space space;
	struct error err;
	if (nas_space_parse(&space, t[0].space, &err) < 0) {
		release_trials(t, n);
		return fail(cmd, EXIT_USAGE, &err);
	}
	struct nas_proposal *p = mem_calloc((size_t)n, sizeof *p);
	double *sum = mem_calloc((size_t)n, sizeof *sum);
	int *cnt = mem_calloc((size_t)n, sizeof *cnt),
	    *order = mem_calloc((size_t)n, sizeof *order);
	if (!p || !sum || !cnt || !order) {
		error_set(&err, "out of memory");
		rc = fail(cmd, 1, &err);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		if (strcmp(t[i].space, t[0].space) != 0) {
			fprintf(stderr, "%s %s: trials of two spaces: %s ('%s') and %s ('%s')\n",
				prog, cmd, t[0].dir, t[0].space, t[i].dir, t[i].space);
			goto out;
		}
		if (t[i].failed) { /* its training failed: nothing to move elsewhere */
			nfailed++;
			continue;
		}
		int u = 0;
		while (u < nu && strcmp(p[u].arch, t[i].arch) != 0)
			u++;
		if (u == nu) {
			if (nas_choice_parse(&space, t[i].choices, p[u].choice, &err) < 0) {
				error_prefix(&err, "trial %s: ", t[i].dir);
				fail(cmd, EXIT_USAGE, &err);
				goto out;
			}
			p[u].arch = t[i].arch; /* borrowed from t */
			p[u].params = t[i].params;
			p[u].mflops = t[i].mflops;
			nu++;
		}
		sum[u] += t[i].accuracy;
		cnt[u]++;
	}
	if (o.count > nu) {
		fprintf(stderr, "%s %s: --count %ld, but the trials trained %d architectures", prog,
			cmd, o.count, nu);
		fprintf(stderr, nfailed ? " (and %d trainings failed)\n" : "\n", nfailed);
		goto out;
	}
	/* Best mean first; ties keep the trials' order (a stable insertion sort). */
	for (int u = 0; u < nu; u++) {
		int v = u;
		order[u] = u;
		for (;
		     v > 0 && sum[order[v]] / cnt[order[v]] > sum[order[v - 1]] / cnt[order[v - 1]];
		     v--) {
			int x = order[v];
			order[v] = order[v - 1];
			order[v - 1] = x;
		}
	}
	struct nas_proposal *best = mem_calloc((size_t)o.count, sizeof *best);
	if (!best) {
		error_set(&err, "out of memory");
		rc = fail(cmd, 1, &err);
		goto out;
	}
	for (int i = 0; i < o.count; i++)
		best[i] = p[order[i]];
	struct nas_proposals ps = {
	    .space = t[0].space, .method = "top", .n = (int)o.count, .p = best};
	if (nas_proposals_write(o.out, &ps, 0, n, &err) < 0)
		rc = fail(cmd, 1, &err);
	else {
		print_proposals(&ps, space.ndim);
		for (int i = 0; i < o.count; i++)
			printf("%4d  %s %.4f (%d training%s)\n", i, o.metric,
			       sum[order[i]] / cnt[order[i]], cnt[order[i]],
			       cnt[order[i]] > 1 ? "s" : "");
		rc = 0;
	}
	mem_free(best);
out:
	mem_free(p);
	mem_free(sum);
	mem_free(cnt);
	mem_free(order);
	release_trials(t, n);
	nas_space_release(&space);
	return rc;
}

static const char trial_help[] =
    "usage: %s trial --proposals DIR --index I --out OUT [--keep-going] -- COMMAND [ARG...]\n"
    "\n"
    "Train proposal I of DIR: records it in OUT/proposal.json (and removes an old\n"
    "OUT/metrics.json), then runs COMMAND (no shell) with every '{arch}' in its\n"
    "arguments replaced by the architecture, in place of this process: its exit\n"
    "status is the trial's. COMMAND should write its metrics.json into OUT\n"
    "(cairn-train-classifier --out OUT, or cairn-train-unet). In a pipeline:\n"
    "array = the number of proposals, --index ${task}.\n"
    "\n"
    "--keep-going: if the training fails (exit 1: diverged; or killed by a signal\n"
    "of its own, e.g. for memory), record it in OUT/trial-failed.json and exit 0:\n"
    "the search goes on without that architecture (propose scores it as the worst\n"
    "seen, top and analyze leave it out). Exit 2 (bad usage or input) and a\n"
    "COMMAND that cannot run are still the trial's failure; a signal to the trial\n"
    "itself (cancel, time limit) stops it as stopped, recording nothing.\n";

/* Remove DIR/NAME if it is there. */
static int remove_in(const char *dir, const char *name, struct error *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		return error_errno(err, "removing %s", path);
	return 0;
}

static volatile sig_atomic_t stop_signal;
static volatile pid_t trainer_pid;

/* A signal to the trial (Slurm's cancel or time limit, Ctrl-C) goes on to
 * the trainer, and the trial then stops as stopped, not as a failed
 * architecture. */
static void forward_signal(int sig)
{
	stop_signal = sig;
	if (trainer_pid > 0)
		kill(trainer_pid, sig);
}

/* trial --keep-going: run the trainer as a child; if it fails (exit 1, the
 * work failed: a diverged loss; or a signal of its own: killed for memory),
 * record that in OUT/trial-failed.json and end with 0, so that the search
 * goes on without this architecture. Usage errors (2) and a trainer that
 * cannot run (126, 127) are the command's fault, not the architecture's:
 * passed on. */
static int run_keeping_going(const char *cmd, char **args, const struct opts *o, const char *arch)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = forward_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "%s %s: fork: %s\n", prog, cmd, strerror(errno));
		return 1;
	}
	if (pid == 0) {
		execvp(args[0], args);
		fprintf(stderr, "%s %s: cannot run '%s': %s\n", prog, cmd, args[0],
			strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	trainer_pid = pid;
	if (stop_signal) /* a signal before trainer_pid was set */
		kill(pid, stop_signal);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			fprintf(stderr, "%s %s: waitpid: %s\n", prog, cmd, strerror(errno));
			return 1;
		}
	if (stop_signal)
		return 128 + stop_signal;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	if (code == 0 || code == EXIT_USAGE || code == 126 || code == 127)
		return code;
	char how[64];
	if (code > 0)
		snprintf(how, sizeof how, "exit %d", code);
	else
		snprintf(how, sizeof how, "signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", o->out, NAS_FAILED_FILE);
	json_t *j =
	    json_pack("{s:s, s:s, s:i}", "failure", how, "arch", arch, "index", (int)o->index);
	struct error err;
	if (!j || jsonio_write_atomic(path, j, &err) < 0) {
		fprintf(stderr, "%s %s: %s\n", prog, cmd, j ? err.msg : "out of memory");
		json_decref(j);
		return 1;
	}
	json_decref(j);
	printf("trial %ld: the trainer failed (%s): recorded in %s, the search goes on without "
	       "this architecture (--keep-going)\n",
	       o->index, how, path);
	return 0;
}

static int cmd_trial(int argc, char **argv)
{
	const char *cmd = argv[0];
	struct opts o;
	int first = parse_opts(cmd, argc, argv, "proposals index out keep-going", &o);
	if (first < 0)
		return EXIT_USAGE;
	if (o.help)
		return printf(trial_help, prog), 0;
	if (!o.proposals || o.index < 0 || !o.out)
		return bad_usage(cmd, "%s", "--proposals, --index and --out are required");
	if (first == argc)
		return bad_usage(cmd, "%s", "no COMMAND after '--'");
	int placeholders = 0;
	for (int i = first; i < argc; i++)
		placeholders += strstr(argv[i], "{arch}") != NULL;
	if (!placeholders)
		return bad_usage(cmd, "%s", "the COMMAND has no {arch} to put the architecture in");
	struct nas_proposals ps;
	struct error err;
	if (nas_proposals_read(&ps, o.proposals, &err) < 0)
		return fail(cmd, EXIT_USAGE, &err);
	if (o.index >= ps.n) {
		if (ps.n == 0) /* hand-made: sample, propose and top write at least one */
			fprintf(stderr, "%s %s: %s has no proposals\n", prog, cmd, o.proposals);
		else
			fprintf(stderr, "%s %s: --index %ld, but %s has %d proposals (0..%d)\n",
				prog, cmd, o.index, o.proposals, ps.n, ps.n - 1);
		nas_proposals_release(&ps);
		return EXIT_USAGE;
	}
	const struct nas_proposal *p = &ps.p[o.index];
	int d = 0;
	for (const char *s = ps.space; *s; s++)
		d += *s == '{';
	json_t *c = json_array();
	for (int k = 0; k < d; k++)
		json_array_append_new(c, json_integer(p->choice[k]));
	char *src = fs_abspath(o.proposals), *path = NULL;
	json_t *j =
	    json_pack("{s:i, s:o, s:s, s:s, s:s, s:s?}", "index", (int)o.index, "choices", c,
		      "arch", p->arch, "space", ps.space, "method", ps.method, "proposals", src);
	struct buf b = BUF_INIT;
	buf_addf(&b, "%s/%s", o.out, NAS_PROPOSAL_FILE);
	char **args = mem_calloc((size_t)(argc - first) + 1, sizeof *args);
	int rc = 1;
	if (!j || b.failed || !args) {
		error_set(&err, "out of memory");
		fail(cmd, 1, &err);
		goto out;
	}
	path = buf_detach(&b);
	if (fs_mkdir_p(o.out, &err) < 0 || jsonio_write_atomic(path, j, &err) < 0) {
		fail(cmd, 1, &err);
		goto out;
	}
	for (int i = first; i < argc; i++) {
		struct buf a = BUF_INIT;
		for (const char *s = argv[i], *hit; *s; s = hit + 6) {
			if (!(hit = strstr(s, "{arch}"))) {
				buf_adds(&a, s);
				break;
			}
			buf_add(&a, s, (size_t)(hit - s));
			buf_adds(&a, p->arch);
		}
		if (a.failed || !(args[i - first] = buf_detach(&a))) {
			error_set(&err, "out of memory");
			fail(cmd, 1, &err);
			goto out;
		}
	}
	/* The folder's results are this run's: none left from an earlier one. */
	if (remove_in(o.out, "metrics.json", &err) < 0 ||
	    remove_in(o.out, NAS_FAILED_FILE, &err) < 0) {
		fail(cmd, 1, &err);
		goto out;
	}
	printf("trial %ld of %s: %s\n", o.index, o.proposals, p->arch);
	fflush(stdout);
	if (o.keep_going) {
		rc = run_keeping_going(cmd, args, &o, p->arch);
		goto out;
	}
	execvp(args[0], args);
	fprintf(stderr, "%s %s: cannot run '%s': %s\n", prog, cmd, args[0], strerror(errno));
	rc = errno == ENOENT ? 127 : 126;
out:
	for (int i = 0; args && i < argc - first; i++)
		mem_free(args[i]);
	mem_free(args);
	json_decref(j);
	mem_free(src);
	mem_free(path);
	buf_release(&b);
	nas_proposals_release(&ps);
	return rc;
}

static const char analyze_help[] =
    "usage: %s analyze --out DIR [--metric KEY] --proxy TRIAL... --target TRIAL...\n"
    "\n"
    "The NASTransfer questions of a finished search: do the architectures trained\n"
    "on both the proxy and the target rank the same (Kendall's tau-b, Spearman's\n"
    "rho)? Does the search's pick (the best on the target of the `top` proposals)\n"
    "beat random architectures trained on the target (the share it beats; the\n"
    "expected best of k random ones for the training time the search took)?\n"
    "--proxy: the search's trials on the proxy (sample and propose); --target:\n"
    "trials on the target (the random sample's, and the picks'). Writes\n"
    "DIR/report.md, DIR/analysis.json and DIR/archs.tsv; prints a summary.\n";

static int cmd_analyze(int argc, char **argv)
{
	const char *cmd = argv[0];
	struct opts o = {.metric = NAS_DEFAULT_METRIC};
	char **proxy = mem_calloc((size_t)argc, sizeof *proxy);
	char **target = mem_calloc((size_t)argc, sizeof *target);
	int np = 0, nt = 0, rc = EXIT_USAGE;
	char ***list = NULL;
	int *count = NULL;
	struct nas_trial *tp = NULL, *tt = NULL;
	if (!proxy || !target) {
		fprintf(stderr, "%s %s: out of memory\n", prog, cmd);
		goto out;
	}
	/* --proxy and --target each take the folders that follow them. */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			printf(analyze_help, prog);
			rc = 0;
			goto out;
		} else if (!strcmp(a, "--proxy")) {
			list = &proxy, count = &np;
		} else if (!strcmp(a, "--target")) {
			list = &target, count = &nt;
		} else if (!strcmp(a, "--out") || !strcmp(a, "--metric")) {
			if (i + 1 == argc) {
				rc = bad_usage(cmd, "%s needs a value", a);
				goto out;
			}
			*(a[2] == 'o' ? &o.out : &o.metric) = argv[++i];
			list = NULL;
		} else if (a[0] == '-' && a[1] == '-') {
			rc = bad_usage(cmd, "unknown option '%s'", a);
			goto out;
		} else if (!list) {
			rc = bad_usage(cmd, "'%s' follows neither --proxy nor --target", a);
			goto out;
		} else {
			(*list)[(*count)++] = argv[i];
		}
	}
	if (!o.out || np == 0 || nt == 0) {
		rc = bad_usage(cmd, "%s",
			       "--out, and trials after --proxy and after --target, are required");
		goto out;
	}
	if (!(tp = load_trials(cmd, proxy, np, o.metric)) ||
	    !(tt = load_trials(cmd, target, nt, o.metric)))
		goto out;
	/* one list: a proxy trial is not a target trial either */
	memcpy(proxy + np, target, (size_t)nt * sizeof *proxy);
	if (once_each(cmd, proxy, np + nt) < 0)
		goto out;
	struct nas_transfer_report r;
	struct error err;
	if (nas_transfer_analyze(tp, np, tt, nt, &r, &err) < 0) {
		rc = fail(cmd, 1, &err);
		goto out;
	}
	struct buf p1 = BUF_INIT, p2 = BUF_INIT, p3 = BUF_INIT;
	buf_addf(&p1, "%s/report.md", o.out);
	buf_addf(&p2, "%s/analysis.json", o.out);
	buf_addf(&p3, "%s/archs.tsv", o.out);
	if (p1.failed || p2.failed || p3.failed) {
		error_set(&err, "out of memory");
		rc = fail(cmd, 1, &err);
	} else if (fs_mkdir_p(o.out, &err) < 0 ||
		   fs_write_atomic(p1.s, r.markdown, strlen(r.markdown), &err) < 0 ||
		   fs_write_atomic(p2.s, r.json, strlen(r.json), &err) < 0 ||
		   fs_write_atomic(p3.s, r.tsv, strlen(r.tsv), &err) < 0) {
		rc = fail(cmd, 1, &err);
	} else {
		fputs(r.summary, stdout);
		printf("report: %s\n", p1.s);
		rc = 0;
	}
	buf_release(&p1);
	buf_release(&p2);
	buf_release(&p3);
	nas_transfer_report_release(&r);
out:
	if (tp)
		release_trials(tp, np);
	if (tt)
		release_trials(tt, nt);
	mem_free(proxy);
	mem_free(target);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct cmd cmds[] = {{"sample", cmd_propose},
					  {"propose", cmd_propose},
					  {"top", cmd_top},
					  {"trial", cmd_trial},
					  {"analyze", cmd_analyze}};
	return cmd_dispatch(prog, argc, argv, cmds, sizeof cmds / sizeof cmds[0], usage);
}
