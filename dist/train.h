/* train: dist's hooks for nn/train.h's loop (struct nn_train_sync). A net's
 * flat buffers go through host memory (download, MPI, upload), so any
 * backend works; on the CPU the copies are memcpy. */
#ifndef DIST_TRAIN_H
#define DIST_TRAIN_H

#include <jansson.h>

#include "dist/dist.h"
#include "nn/train.h"

struct dist_train {
	struct dist *d;
	float *w, *g; /* host copies of the net's weights and gradients */
	size_t nw, ng;
	int attached;
};

/* Fill sync with d's hooks: rank d->rank of d->size takes that part of every
 * epoch, rank 0 alone tests each epoch; allreduce averages the gradients,
 * adpsgd the weights; the consensus model at the end. t must outlive the
 * training; release it after. */
void dist_train_hooks(struct dist_train *t, struct dist *d, struct nn_train_sync *sync);
void dist_train_release(struct dist_train *t);

/* What the ranks did together, for metrics.json: all ranks' samples per
 * second of the slowest rank's training, that time, the mean seconds inside
 * MPI. dist_train_totals is collective (every rank calls it after
 * training); on one process it gives back rate and seconds. */
struct dist_totals {
	double rate, slowest, comm_mean;
	double *steps; /* [ranks]: each rank's training steps (mem_alloc'ed; NULL: none) */
};
int dist_train_totals(struct dist *d, double rate, double seconds, struct dist_totals *t,
		      struct error *err);
void dist_totals_release(struct dist_totals *t);
/* metrics.json's "dist" object (NULL when out of memory): the algorithm,
 * how the batches were split, the ranks' steps ("steps_per_rank": with
 * shared batches a straggler's are fewer), time in MPI, exchanges. */
json_t *dist_train_json(const struct dist *d, const struct dist_totals *t);

#endif
