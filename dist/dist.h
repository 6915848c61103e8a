/* dist: data-parallel training over MPI ranks, two ways.
 *   allreduce  synchronous SGD: after every backward pass the gradients are
 *              averaged over all ranks (MPI_Allreduce), so every rank takes the
 *              same step: the baseline, as fast as the slowest rank.
 *   adpsgd     asynchronous decentralized parallel SGD (Lian et al., "Asynchronous
 *              Decentralized Parallel Stochastic Gradient Descent", ICML 2018):
 *              no rank waits for all the others. Ranks form a ring split in two:
 *              an even ("active") rank, after each local step, averages its
 *              weights with one odd neighbour's, x_i = x_j = (x_i + x_j) / 2, in
 *              one exclusive lock of that neighbour's window (MPI one-sided,
 *              passive target); an odd ("passive") rank adds its own update
 *              to its window under the same lock and goes on from what the
 *              window holds, so no update is lost. The bipartite split is the
 *              paper's way to avoid deadlock (section 4).
 * Weights and gradients are float buffers (a net's flat buffers, nn/net.h);
 * nn/train.h calls these through its sync hooks. */
#ifndef DIST_DIST_H
#define DIST_DIST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

enum dist_algo { DIST_NONE = 0, DIST_ALLREDUCE = 1, DIST_ADPSGD = 2 };

/* How the ranks split an epoch's batches. fixed: rank r of N takes part r
 * (the same number each; allreduce steps all ranks together, so it must).
 * shared: every rank takes the next batch not yet taken from one counter
 * (dist_claim) as it goes, so a fast rank trains more of them than a slow
 * one and nobody waits for a straggler: AD-PSGD's point (Lian et al.,
 * section 1: "faster workers ... do more updates"); adpsgd's default. */
enum dist_batches { DIST_BATCHES_DEFAULT = 0, DIST_BATCHES_FIXED = 1, DIST_BATCHES_SHARED = 2 };

struct dist {
	enum dist_algo algo;
	int rank, size;
	int active; /* adpsgd: this rank averages with its neighbours */
	int neighbours[2], nneighbours, next;
	size_t n;	    /* floats of the weights (attach) */
	MPI_Win win;	    /* adpsgd: every rank's public weights */
	float *pub;	    /* this rank's part of win */
	float *prev, *peer; /* adpsgd: the weights a passive step began at; a peer's */
	enum dist_batches batches; /* after dist_init: fixed or shared, never default */
	MPI_Win counter;	   /* shared: the next batch not taken (a uint64 on rank 0) */
	uint64_t *count;	   /* this rank's part of counter (rank 0: the count) */
	int counted;		   /* counter was made (dist_release frees it) */
	uint64_t claims;	   /* shared: batches this rank took */
	int started_mpi;    /* dist_init called MPI_Init (and release calls MPI_Finalize) */
	/* what it cost: seconds inside MPI calls, exchanges (adpsgd) or
	 * allreduces, bytes moved by this rank */
	double comm_seconds;
	uint64_t steps; /* training steps this rank took (dist/train.h counts them) */
	uint64_t exchanges;
	double bytes;
};

/* "none", "allreduce", "adpsgd" */
int dist_algo_parse(const char *name, enum dist_algo *algo, struct error *err);
const char *dist_algo_name(enum dist_algo algo);

/* "fixed", "shared"; and whether algo may split batches so: allreduce
 * needs fixed (0, or -1 with err saying why). */
int dist_batches_parse(const char *name, enum dist_batches *b, struct error *err);
const char *dist_batches_name(enum dist_batches b);
int dist_batches_check(enum dist_algo algo, enum dist_batches b, struct error *err);

/* Join MPI_COMM_WORLD (MPI_Init_thread, funneled, unless the caller did);
 * errors come back as return values, not aborts. batches: DEFAULT is
 * shared for adpsgd, fixed for allreduce (shared makes the counter: a
 * collective call). */
int dist_init(struct dist *d, enum dist_algo algo, enum dist_batches batches, struct error *err);
/* Shared batches: *t = the next batch number of the whole training not yet
 * taken by any rank (0, 1, 2, ... over all ranks, each once; one atomic
 * MPI_Fetch_and_op on rank 0's counter; a single process counts alone). */
int dist_claim(struct dist *d, uint64_t *t, struct error *err);
/* Before training: n floats of weights, the same w on every rank (the same
 * seed). adpsgd creates the window (collective). */
int dist_attach(struct dist *d, const float *w, size_t n, struct error *err);
/* After one local step of weights w (n floats, host memory): an active
 * rank averages w with a neighbour's window (w gets the average); a passive
 * one adds its step (w - where the step began) to its window, and w gets
 * the window's weights to go on from. */
int dist_step_end(struct dist *d, float *w, struct error *err);
/* buf = the mean of buf over all ranks (gradients each step; the consensus
 * model at the end). Collective. */
int dist_mean(struct dist *d, float *buf, size_t n, struct error *err);
/* After the last step: w (the n floats attached) becomes the mean of every
 * rank's model, on every rank (a passive rank's model is its window, which
 * holds the averages made into it since its last step). Collective. */
int dist_consensus(struct dist *d, float *w, struct error *err);
/* Wait for every rank (collective); not counted in comm_seconds. */
int dist_barrier(struct dist *d, struct error *err);
/* The sum (the maximum) of v over all ranks, on every rank (reporting). Collective. */
int dist_sum(struct dist *d, double *v, int count, struct error *err);
int dist_max(struct dist *d, double *v, int count, struct error *err);
/* Free the window (collective) and leave MPI if dist_init joined it. */
void dist_release(struct dist *d);
/* Stop every rank: one rank's failure would leave the others waiting. */
void dist_abort(struct dist *d, int code);

#endif
