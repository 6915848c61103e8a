/* par: fork-join over a fixed set of pthreads, woken by a condition variable. */
#include "nn/cpu/par.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "core/cpus.h"

#define PAR_MAX 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static int nthreads;        /* 0 until first use */
static int started;
static int spins;           /* threads <= usable CPUs: waits spin a while first (spin) */
static unsigned long generation;
static unsigned long pending; /* workers yet to finish the job */
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

/* Wait while *v still equals `is`, at most SPIN_NS, before the caller sleeps on its condition variable:
 * a training step's next par_for most often comes within microseconds, and
 * a wake-up through the kernel costs as much as a small convolution
 * (cairn-refine's nets: 16% of the step in the scheduler's wake-up and
 * switch; 200 steps alone 12.0 s without the wait, 6.7 s with it, session
 * 25). It yields rather than spins: with another process's threads on the
 * same cores a spinning wait took the CPU they needed (two trainings at
 * once, 2 threads each on 2 cores: 18.1 s spinning, 10.7 s without the
 * wait, 9.6 s yielding). */
#define SPIN_NS 50000
static void spin(const unsigned long *v, unsigned long is)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 1;; i++) {
		if (__atomic_load_n(v, __ATOMIC_ACQUIRE) != is)
			return;
		sched_yield();
		if (i % 8 == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if ((t.tv_sec - t0.tv_sec) * 1000000000L + t.tv_nsec - t0.tv_nsec > SPIN_NS)
				return;
		}
	}
}

static void *worker(void *arg)
{
	int tid = (int)(long)arg;
	unsigned long seen = 0;
	inside = 1;
	for (;;) {
		if (spins)
			spin(&generation, seen);
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
		if (__atomic_sub_fetch(&pending, 1, __ATOMIC_ACQ_REL) == 0)
			pthread_cond_signal(&done_cv);
		pthread_mutex_unlock(&mu);
	}
	return NULL;
}

void par_set_threads(int n)
{
	pthread_mutex_lock(&mu);
	if (!started) {
		if (n <= 0)
			n = cpus_default_threads();
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
	spins = nthreads <= cpus_usable(); /* not when threads would wait for a CPU */
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
	__atomic_store_n(&pending, (unsigned long)nthreads - 1, __ATOMIC_RELEASE);
	__atomic_store_n(&generation, generation + 1, __ATOMIC_RELEASE); /* workers spin on it */
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&mu);
	int b, e;
	par_chunk(n, parts, 0, &b, &e);
	inside = 1;
	fn(ctx, b, e, 0);
	inside = 0;
	for (unsigned long left; spins && (left = __atomic_load_n(&pending, __ATOMIC_ACQUIRE)) > 0;) {
		spin(&pending, left); /* until one more is done, or SPIN_NS */
		if (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) == left)
			break;
	}
	pthread_mutex_lock(&mu);
	while (pending > 0)
		pthread_cond_wait(&done_cv, &mu);
	pthread_mutex_unlock(&mu);
	pthread_mutex_unlock(&call_mu);
}
