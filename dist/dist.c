/* dist: allreduce and AD-PSGD over MPI (dist.h). */
#include "dist/dist.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/mem.h"

static const char *const names[] = {"none", "allreduce", "adpsgd"};
static const char *const batch_names[] = {"default", "fixed", "shared"};

int dist_algo_parse(const char *name, enum dist_algo *algo, struct error *err)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(name, names[i])) {
			*algo = (enum dist_algo)i;
			return 0;
		}
	return error_set(err, "unknown algorithm '%s' (known: none, allreduce, adpsgd)", name);
}

const char *dist_algo_name(enum dist_algo algo)
{
	return names[algo];
}

int dist_batches_parse(const char *name, enum dist_batches *b, struct error *err)
{
	for (int i = 1; i < 3; i++)
		if (!strcmp(name, batch_names[i])) {
			*b = (enum dist_batches)i;
			return 0;
		}
	return error_set(err, "unknown way '%s' (known: shared, fixed)", name);
}

const char *dist_batches_name(enum dist_batches b)
{
	return batch_names[b];
}

int dist_batches_check(enum dist_algo algo, enum dist_batches b, struct error *err)
{
	if (algo == DIST_ALLREDUCE && b == DIST_BATCHES_SHARED)
		return error_set(err, "allreduce steps every rank together, so each needs the same "
				      "number of batches: use --dist-batches fixed (the default), or "
				      "--dist adpsgd");
	return 0;
}

/* An MPI return code as an error naming the call. */
static int mpi_fail(struct error *err, int rc, const char *call)
{
	char s[MPI_MAX_ERROR_STRING];
	int len = 0;
	if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS)
		snprintf(s, sizeof s, "error %d", rc);
	return error_set(err, "%s: %s", call, s);
}

#define MPI_CHECK(call)                                                                            \
	do {                                                                                       \
		int rc_ = (call);                                                                  \
		if (rc_ != MPI_SUCCESS)                                                            \
			return mpi_fail(err, rc_, #call);                                          \
	} while (0)

/* Shared batches: rank 0's counter, at 0 before any rank claims. */
static int make_counter(struct dist *d, struct error *err)
{
	MPI_Aint bytes = d->rank == 0 ? (MPI_Aint)sizeof(uint64_t) : 0;
	MPI_CHECK(MPI_Win_allocate(bytes, sizeof(uint64_t), MPI_INFO_NULL, MPI_COMM_WORLD,
				   &d->count, &d->counter));
	d->counted = 1;
	MPI_CHECK(MPI_Win_set_errhandler(d->counter, MPI_ERRORS_RETURN));
	if (d->rank == 0) {
		MPI_CHECK(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, d->counter));
		*d->count = 0;
		MPI_CHECK(MPI_Win_unlock(0, d->counter));
	}
	MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
	return 0;
}

int dist_claim(struct dist *d, uint64_t *t, struct error *err)
{
	if (d->size < 2) {
		*t = d->claims++;
		return 0;
	}
	double t0 = clock_now();
	const uint64_t one = 1;
	MPI_CHECK(MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, d->counter));
	MPI_CHECK(MPI_Fetch_and_op(&one, t, MPI_UINT64_T, 0, 0, MPI_SUM, d->counter));
	MPI_CHECK(MPI_Win_unlock(0, d->counter));
	d->claims++;
	d->comm_seconds += clock_now() - t0;
	return 0;
}

int dist_init(struct dist *d, enum dist_algo algo, enum dist_batches batches, struct error *err)
{
	memset(d, 0, sizeof *d);
	d->algo = algo;
	d->win = d->counter = MPI_WIN_NULL;
	if (dist_batches_check(algo, batches, err) < 0)
		return -1;
	d->batches = batches != DIST_BATCHES_DEFAULT ? batches
		     : algo == DIST_ADPSGD	     ? DIST_BATCHES_SHARED
						     : DIST_BATCHES_FIXED;
	int on = 0;
	MPI_Initialized(&on);
	if (!on) {
		int provided;
		if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
			return error_set(err, "MPI_Init_thread failed");
		d->started_mpi = 1;
	}
	MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
	MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
	MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &d->size));
	/* The ring's bipartite split: even ranks average with their odd
	 * neighbours (an odd-sized ring's last rank has only one). */
	d->active = d->rank % 2 == 0;
	if (d->active && d->size > 1) {
		int left = (d->rank + d->size - 1) % d->size, right = (d->rank + 1) % d->size;
		if (left % 2)
			d->neighbours[d->nneighbours++] = left;
		if (right % 2 && right != left)
			d->neighbours[d->nneighbours++] = right;
	}
	if (d->batches == DIST_BATCHES_SHARED && d->size > 1)
		return make_counter(d, err);
	return 0;
}

int dist_attach(struct dist *d, const float *w, size_t n, struct error *err)
{
	if (n > INT_MAX)
		return error_set(err, "%zu weights: more than an MPI count holds", n);
	d->n = n;
	if (d->algo != DIST_ADPSGD || d->size < 2)
		return 0;
	d->prev = mem_alloc(n * sizeof *d->prev);
	d->peer = mem_alloc(n * sizeof *d->peer);
	if (!d->prev || !d->peer)
		return error_set(err, "adpsgd: out of memory for %zu weights", n);
	MPI_CHECK(MPI_Win_allocate((MPI_Aint)(n * sizeof(float)), sizeof(float), MPI_INFO_NULL,
				   MPI_COMM_WORLD, &d->pub, &d->win));
	MPI_CHECK(MPI_Win_set_errhandler(d->win, MPI_ERRORS_RETURN));
	MPI_CHECK(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, d->rank, 0, d->win));
	memcpy(d->pub, w, n * sizeof *w);
	MPI_CHECK(MPI_Win_unlock(d->rank, d->win));
	memcpy(d->prev, w, n * sizeof *w);
	/* nobody averages into a window before its owner filled it */
	MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
	return 0;
}

int dist_step_end(struct dist *d, float *w, struct error *err)
{
	if (d->algo != DIST_ADPSGD || d->size < 2)
		return 0;
	double t = clock_now();
	size_t n = d->n;
	if (!d->active) {
		/* Add this step's update to whatever the window holds now (its
		 * neighbours' averages since), and go on from there: one lock. */
		MPI_CHECK(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, d->rank, 0, d->win));
		MPI_CHECK(MPI_Win_sync(d->win));
		for (size_t i = 0; i < n; i++) {
			d->pub[i] += w[i] - d->prev[i];
			w[i] = d->prev[i] = d->pub[i];
		}
		MPI_CHECK(MPI_Win_sync(d->win));
		MPI_CHECK(MPI_Win_unlock(d->rank, d->win));
	} else if (d->nneighbours) { /* x_i = x_j = (x_i + x_j) / 2, atomically for j */
		int j = d->neighbours[d->next++ % d->nneighbours];
		MPI_CHECK(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, j, 0, d->win));
		MPI_CHECK(MPI_Get(d->peer, (int)n, MPI_FLOAT, j, 0, (int)n, MPI_FLOAT, d->win));
		MPI_CHECK(MPI_Win_flush(j, d->win));
		for (size_t i = 0; i < n; i++)
			w[i] = 0.5f * (w[i] + d->peer[i]);
		MPI_CHECK(MPI_Put(w, (int)n, MPI_FLOAT, j, 0, (int)n, MPI_FLOAT, d->win));
		MPI_CHECK(MPI_Win_unlock(j, d->win));
		d->exchanges++;
		d->bytes += 2.0 * n * sizeof(float);
	}
	d->comm_seconds += clock_now() - t;
	return 0;
}

int dist_mean(struct dist *d, float *buf, size_t n, struct error *err)
{
	if (d->size < 2)
		return 0;
	if (n > INT_MAX)
		return error_set(err, "%zu floats: more than an MPI count holds", n);
	double t = clock_now();
	MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
	float s = 1.0f / d->size;
	for (size_t i = 0; i < n; i++)
		buf[i] *= s;
	d->comm_seconds += clock_now() - t;
	d->exchanges++;
	/* a ring allreduce sends and receives 2 (p - 1) / p of the buffer */
	d->bytes += 2.0 * (d->size - 1) / d->size * n * sizeof(float);
	return 0;
}

int dist_consensus(struct dist *d, float *w, struct error *err)
{
	if (d->size < 2)
		return 0;
	if (d->algo == DIST_ADPSGD) {
		double t = clock_now();
		MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); /* no rank averages any more */
		if (!d->active) {
			MPI_CHECK(MPI_Win_lock(MPI_LOCK_EXCLUSIVE, d->rank, 0, d->win));
			MPI_CHECK(MPI_Win_sync(d->win));
			memcpy(w, d->pub, d->n * sizeof *w);
			MPI_CHECK(MPI_Win_unlock(d->rank, d->win));
		}
		d->comm_seconds += clock_now() - t;
	}
	return dist_mean(d, w, d->n, err);
}

int dist_barrier(struct dist *d, struct error *err)
{
	if (d->size < 2)
		return 0;
	MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
	return 0;
}

static int reduce(struct dist *d, double *v, int count, MPI_Op op, struct error *err)
{
	if (d->size < 2)
		return 0;
	MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, count, MPI_DOUBLE, op, MPI_COMM_WORLD));
	return 0;
}

int dist_sum(struct dist *d, double *v, int count, struct error *err)
{
	return reduce(d, v, count, MPI_SUM, err);
}

int dist_max(struct dist *d, double *v, int count, struct error *err)
{
	return reduce(d, v, count, MPI_MAX, err);
}

void dist_release(struct dist *d)
{
	if (d->pub) /* a window was made (not win != MPI_WIN_NULL: a zeroed struct dist has none) */
		MPI_Win_free(&d->win);
	d->pub = NULL;
	if (d->counted)
		MPI_Win_free(&d->counter);
	d->counted = 0;
	mem_free(d->prev);
	mem_free(d->peer);
	d->prev = d->peer = NULL;
	if (d->started_mpi) {
		int done = 0;
		MPI_Finalized(&done);
		if (!done)
			MPI_Finalize();
		d->started_mpi = 0;
	}
}

void dist_abort(struct dist *d, int code)
{
	if (d->size > 1)
		MPI_Abort(MPI_COMM_WORLD, code);
}
