/* cairn runs [DIR]... [--json]: the run folders in DIR (default runs/), a
 * line each, oldest first (unreadable ones last): when made, executor,
 * state and task counts, and a failed run's first failure. From the
 * markers (a stat per task); the Slurm runs whose markers are not all done
 * ask squeue, all of them in one call. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "jobs/slurm_cli.h"
#include "pipeline/cli.h"
#include "pipeline/sched.h"

static const char runs_usage[] =
    "usage: cairn runs [DIR]... [--json]\n"
    "Lists the run folders in DIR (default: runs, where cairn run makes them) and\n"
    "those named, oldest first (unreadable ones last), a line each: when made,\n"
    "executor, state, tasks done of all, failed; under a failed run its first\n"
    "failed task and why.\n"
    "From the markers; the Slurm runs whose markers are not all done ask squeue,\n"
    "all in one call.\n"
    "  --json   one JSON array: [{\"run\", \"name\", \"created\", \"executor\", \"state\",\n"
    "           \"tasks\", \"done\", \"failed\", \"running\", \"pending\", \"cancelled\"}];\n"
    "           and of a failed run \"first_failure\"; a folder that cannot be read\n"
    "           has \"state\": \"unreadable\" and \"error\"\n"
    "Exit: 0 listed (whatever the runs' states), 2 no such folder.\n"
    "example: cairn runs; cairn runs /scratch/$USER/runs --json\n";

/* One run folder and what its markers say. */
struct entry {
	char *path;	  /* as the user would name it: DIR/NAME */
	char created[32]; /* run.json "created" (UTC, sorts as text) */
	char name[128], executor[16];
	const char *state; /* "unreadable" when the folder could not be read */
	struct stage_counts total;
	char failure[200]; /* the first failed task, or "" */
	char error[256];   /* why unreadable */
	int ask;	   /* a Slurm run with tasks open: squeue knows more */
};

struct list {
	struct entry *v;
	size_t n, cap;
	long *ids; /* the job ids of the runs to ask squeue about */
	size_t nids, capids;
};

int cli_is_run(const char *dir)
{
	struct buf p = BUF_INIT;
	buf_addf(&p, "%s/run.json", dir);
	int yes = !p.failed && fs_exists(p.s);
	buf_release(&p);
	return yes;
}

/* src cut to what dst holds */
static void copy(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* e's counts from r's markers, as view corrects them (NULL: the markers
 * alone). */
static void count(struct entry *e, const struct run *r, const struct sched_view *view)
{
	struct run_status st;
	struct error err;
	e->failure[0] = '\0';
	if (status_count(r, &st, view, &err) < 0) {
		e->state = "unreadable";
		copy(e->error, sizeof(e->error), err.msg);
	} else {
		e->state = st.state; /* a string literal */
		e->total = st.total;
		if (st.nfailures)
			copy(e->failure, sizeof(e->failure), st.failures[0]);
	}
	status_release(&st);
}

/* r's job ids onto l->ids: 0, -1 out of memory. */
static int add_ids(struct list *l, const struct run *r)
{
	long *ids;
	size_t n;
	struct error err;
	if (sched_job_ids(r, &ids, &n, &err) < 0)
		return -1;
	if (l->nids + n > l->capids) {
		size_t cap = 2 * (l->nids + n);
		long *v = mem_realloc(l->ids, cap * sizeof(*v));
		if (!v) {
			mem_free(ids);
			return -1;
		}
		l->ids = v, l->capids = cap;
	}
	if (n) /* none recorded: ids may be NULL */
		memcpy(l->ids + l->nids, ids, n * sizeof(*ids));
	l->nids += n;
	mem_free(ids);
	return 0;
}

/* Read one run folder into a new entry, from its markers: -1 only when out
 * of memory. */
static int add_run(struct list *l, const char *path)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct entry *v = mem_realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -1;
		l->v = v, l->cap = cap;
	}
	struct entry *e = &l->v[l->n];
	memset(e, 0, sizeof(*e));
	if (!(e->path = mem_strdup(path)))
		return -1;
	l->n++;
	struct run r;
	struct error err;
	if (run_open(&r, path, &err) < 0) {
		e->state = "unreadable";
		copy(e->error, sizeof(e->error), err.msg);
		run_release(&r);
		return 0;
	}
	copy(e->created, sizeof(e->created), jsonio_str(r.info, "created", ""));
	copy(e->name, sizeof(e->name), r.spec.name);
	copy(e->executor, sizeof(e->executor), run_executor(&r));
	count(e, &r, NULL);
	/* A done run needs no scheduler: ask Slurm only when the markers
	 * leave something open (queued, running, or lost without a marker). */
	e->ask = !e->error[0] && run_is_slurm(&r) && e->total.done < e->total.tasks;
	int rc = e->ask ? add_ids(l, &r) : 0;
	run_release(&r);
	return rc;
}

/* The runs to ask about, counted again as one squeue call of all their
 * jobs corrects their markers (Slurm unreachable: said once, the markers
 * kept). 0, -1 out of memory. */
static int ask_slurm(struct list *l)
{
	struct slurm_jobs jobs;
	slurm_jobs_init(&jobs);
	struct error qerr;
	const char *unreachable = NULL;
	if (l->nids && slurm_squeue(l->ids, l->nids, &jobs, &qerr) < 0)
		unreachable = qerr.msg;
	int rc = 0, warned = 0;
	for (size_t i = 0; rc == 0 && i < l->n; i++) {
		struct entry *e = &l->v[i];
		struct run r;
		struct error err;
		struct sched_view view = {0};
		if (!e->ask)
			continue;
		if (run_open(&r, e->path, &err) < 0) { /* gone or broken since */
			e->state = "unreadable";
			copy(e->error, sizeof(e->error), err.msg);
		} else if ((rc = sched_view_pick(&view, &r, &jobs, unreachable, &err)) == 0) {
			count(e, &r, &view);
			if (view.unreachable && !warned++) {
				char warning[400];
				sched_warning(&view, warning, sizeof(warning));
				fprintf(stderr, "cairn: %s\n", warning);
			}
		}
		sched_view_release(&view);
		run_release(&r);
	}
	slurm_jobs_release(&jobs);
	return rc;
}

/* The run folders in dir; 0, -1 out of memory. */
static int add_folder(struct list *l, const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) { /* a folder that exists but cannot be listed: said, the others listed */
		fprintf(stderr, "cairn runs: %s: %s\n", dir, strerror(errno));
		return 0;
	}
	struct dirent *de;
	int rc = 0;
	struct buf p = BUF_INIT;
	while (rc == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		buf_reset(&p);
		/* "runs/x", not "runs//x" */
		size_t n = strlen(dir);
		buf_addf(&p, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", de->d_name);
		if (p.failed)
			rc = -1;
		else if (fs_is_dir(p.s) && cli_is_run(p.s))
			rc = add_run(l, p.s);
	}
	closedir(d);
	buf_release(&p);
	return rc;
}

int cli_latest_run(struct buf *out, struct error *err)
{
	DIR *d = opendir("runs");
	if (!d)
		return error_set(err,
				 "no runs folder here (cairn run makes its run folders in runs/)");
	char best[32] = "";
	struct buf p = BUF_INIT, json = BUF_INIT;
	struct dirent *de;
	buf_reset(out);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		buf_reset(&p);
		buf_addf(&p, "runs/%s", de->d_name);
		if (p.failed || !fs_is_dir(p.s) || !cli_is_run(p.s))
			continue;
		buf_reset(&json);
		buf_addf(&json, "%s/run.json", p.s);
		struct error ignored; /* a broken run.json: not the newest run */
		json_t *info = jsonio_load(json.s, &ignored);
		const char *created = jsonio_str(info, "created", "");
		int c = strcmp(created, best);
		if (created[0] && (c > 0 || (c == 0 && strcmp(p.s, buf_str(out)) > 0))) {
			copy(best, sizeof(best), created);
			buf_reset(out);
			buf_adds(out, p.s);
		}
		json_decref(info);
	}
	closedir(d);
	buf_release(&p);
	buf_release(&json);
	if (out->failed)
		return error_set(err, "out of memory");
	if (!best[0])
		return error_set(err, "no run folder in runs/");
	return 0;
}

static int by_created(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	/* those without a date (unreadable) last */
	int c = !x->created[0] - !y->created[0];
	if (!c)
		c = strcmp(x->created, y->created);
	return c ? c : strcmp(x->path, y->path);
}

static void print_table(const struct list *l)
{
	int w = 3;
	for (size_t i = 0; i < l->n; i++) {
		int n = (int)strlen(l->v[i].path);
		w = n > w ? n : w;
	}
	printf("%-*s  %-20s  %-8s  %-10s %13s %8s\n", w, "run", "created", "executor", "state",
	       "done/tasks", "failed");
	for (size_t i = 0; i < l->n; i++) {
		const struct entry *e = &l->v[i];
		if (e->error[0]) {
			printf("%-*s  %-20s  %-8s  %-10s\n  %s\n", w, e->path, "-", "-", e->state,
			       e->error);
			continue;
		}
		char counts[48];
		snprintf(counts, sizeof(counts), "%lld/%lld", e->total.done, e->total.tasks);
		printf("%-*s  %-20s  %-8s  %-10s %13s %8lld\n", w, e->path, e->created, e->executor,
		       e->state, counts, e->total.failed);
		if (e->failure[0])
			printf("  %s\n", e->failure);
	}
}

static json_t *entry_json(const struct entry *e)
{
	if (e->error[0])
		return json_pack("{s:s, s:s, s:s}", "run", e->path, "state", e->state, "error",
				 e->error);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "run", e->path, "name", e->name,
			      "created", e->created, "executor", e->executor, "state", e->state);
	if (o)
		json_object_update_new(o, status_counts_json(&e->total));
	if (o && e->failure[0])
		json_object_set_new(o, "first_failure", json_string(e->failure));
	return o;
}

static void print_json(const struct list *l)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < l->n; i++)
		json_array_append_new(a, entry_json(&l->v[i]));
	char *text = a ? json_dumps(a, JSON_PRESERVE_ORDER) : NULL;
	printf("%s\n", text ? text : "[]");
	free(text);
	json_decref(a);
}

int cmd_runs(int argc, char **argv)
{
	if (cli_wants_help(argc, argv, runs_usage))
		return 0;
	int json = 0, ndirs = 0;
	const char *where = "runs";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (argv[i][0] == '-') {
			cli_unexpected("runs", argv[i], runs_usage);
			return 2;
		} else
			ndirs++, where = argv[i];
	}
	/* Every folder named must exist: a typo is not "no runs". */
	for (int i = 1; i < argc; i++)
		if (argv[i][0] != '-' && !fs_is_dir(argv[i])) {
			fprintf(stderr, "cairn runs: %s: no such folder\n", argv[i]);
			return 2;
		}
	if (!ndirs && !fs_is_dir("runs")) {
		fprintf(stderr,
			"cairn runs: no runs folder here: `cairn run SPEC` makes its run folders "
			"in runs/; name the folder that holds yours: cairn runs DIR\n");
		return 2;
	}
	struct list l = {0};
	int rc = ndirs ? 0 : add_folder(&l, "runs");
	for (int i = 1; rc == 0 && i < argc; i++)
		if (argv[i][0] != '-')
			rc = cli_is_run(argv[i]) ? add_run(&l, argv[i]) : add_folder(&l, argv[i]);
	if (rc == 0)
		rc = ask_slurm(&l);
	if (rc < 0) {
		fprintf(stderr, "cairn runs: out of memory\n");
	} else {
		if (l.n) /* qsort of NULL: undefined, even for none */
			qsort(l.v, l.n, sizeof(*l.v), by_created);
		if (json)
			print_json(&l);
		else if (!l.n)
			printf("no run folders in %s\n", ndirs > 1 ? "the folders named" : where);
		else
			print_table(&l);
	}
	for (size_t i = 0; i < l.n; i++)
		mem_free(l.v[i].path);
	mem_free(l.v);
	mem_free(l.ids);
	return rc < 0 ? 1 : 0;
}
