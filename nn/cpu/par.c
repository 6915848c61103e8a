/* par: fork-join over a fixed set of pthreads, woken by a condition variable. */
#include "nn/cpu/par.h"

#include <cblas.h>
#include <pthread.h>
#include <unistd.h>

#define PAR_MAX 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static int nthreads;        /* 0 until first use */
static int started;
static unsigned long generation;
static int pending;
static struct {
	par_fn fn;
	void *ctx;
	int n, parts;
} job;
/* serializes par_for callers (the backend may be used from several threads) */
static pthread_mutex_t call_mu = PTHREAD_MUTEX_INITIALIZER;
/* Set on pool threads and while a par_for runs: a nested par_for runs inline. */
static _Thread_local int inside;

void par_chunk(int n, int parts, int t, int *b, int *e)
{
	*b = (int)((long long)n * t / parts);
	*e = (int)((long long)n * (t + 1) / parts);
}

static void *worker(void *arg)
{
	int tid = (int)(long)arg;
	unsigned long seen = 0;
	inside = 1;
	for (;;) {
		pthread_mutex_lock(&mu);
		while (generation == seen)
			pthread_cond_wait(&wake, &mu);
		seen = generation;
		par_fn fn = job.fn;
		void *ctx = job.ctx;
		int n = job.n, parts = job.parts;
		pthread_mutex_unlock(&mu);
		if (tid < parts) {
			int b, e;
			par_chunk(n, parts, tid, &b, &e);
			fn(ctx, b, e, tid);
		}
		pthread_mutex_lock(&mu);
		if (--pending == 0)
			pthread_cond_signal(&done_cv);
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

void par_set_threads(int n)
{
	pthread_mutex_lock(&mu);
	if (!started) {
		if (n <= 0) {
			long c = sysconf(_SC_NPROCESSORS_ONLN);
			n = c > 0 ? (int)c : 1;
		}
		nthreads = n > PAR_MAX ? PAR_MAX : n;
	}
	pthread_mutex_unlock(&mu);
}

int par_threads(void)
{
	if (!nthreads)
		par_set_threads(0);
	return nthreads;
}

/* Start the workers once; if a thread cannot be created, run with fewer. */
static void start(void)
{
	openblas_set_num_threads(1);
	int made = 1;
	for (int t = 1; t < nthreads; t++) {
		pthread_t th;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &a, worker, (void *)(long)t) == 0)
			made++;
		pthread_attr_destroy(&a);
		if (made != t + 1)
			break;
	}
	nthreads = made;
	started = 1;
}

void par_for(int n, par_fn fn, void *ctx)
{
	if (n <= 0)
		return;
	if (inside) {
		fn(ctx, 0, n, 0);
		return;
	}
	par_threads();
	pthread_mutex_lock(&call_mu);
	pthread_mutex_lock(&mu);
	if (!started)
		start();
	int parts = n < nthreads ? n : nthreads;
	if (parts <= 1) {
		pthread_mutex_unlock(&mu);
		inside = 1;
		fn(ctx, 0, n, 0);
		inside = 0;
		pthread_mutex_unlock(&call_mu);
		return;
	}
	job.fn = fn, job.ctx = ctx, job.n = n, job.parts = parts;
	pending = nthreads - 1;
	generation++;
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&mu);
	int b, e;
	par_chunk(n, parts, 0, &b, &e);
	inside = 1;
	fn(ctx, b, e, 0);
	inside = 0;
	pthread_mutex_lock(&mu);
	while (pending > 0)
		pthread_cond_wait(&done_cv, &mu);
	pthread_mutex_unlock(&mu);
	pthread_mutex_unlock(&call_mu);
}
