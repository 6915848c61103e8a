/* train: the nn_train_sync hooks over dist (train.h). */
#include "dist/train.h"

#include <string.h>

#include "core/mem.h"
#include "nn/backend.h"
#include "nn/net.h"

/* The first step attaches the weights (every rank has built the same net
 * from the same seed by then). */
static int attach(struct dist_train *t, struct nn_net *net, struct error *err)
{
	if (t->attached)
		return 0;
	t->nw = net->flat.n;
	t->ng = net->flat.ntrain;
	t->w = mem_alloc((t->nw ? t->nw : 1) * sizeof *t->w);
	t->g = mem_alloc((t->ng ? t->ng : 1) * sizeof *t->g);
	if (!t->w || !t->g)
		return error_set(err, "dist: out of memory for %zu weights", t->nw);
	net->be->download(t->w, net->flat.w, t->nw * sizeof *t->w);
	if (dist_attach(t->d, t->w, t->nw, err) < 0)
		return -1;
	t->attached = 1;
	return 0;
}

static int on_begin(void *ctx, struct nn_net *net, struct error *err)
{
	struct dist_train *t = ctx;
	t->d->steps++;
	return attach(t, net, err);
}

static int on_grads(void *ctx, struct nn_net *net, struct error *err)
{
	struct dist_train *t = ctx;
	if (t->d->algo != DIST_ALLREDUCE || t->d->size < 2)
		return 0;
	net->be->download(t->g, net->flat.g, t->ng * sizeof *t->g);
	if (dist_mean(t->d, t->g, t->ng, err) < 0)
		return -1;
	net->be->upload(net->flat.g, t->g, t->ng * sizeof *t->g);
	return 0;
}

static int on_end(void *ctx, struct nn_net *net, struct error *err)
{
	struct dist_train *t = ctx;
	if (t->d->algo != DIST_ADPSGD || t->d->size < 2)
		return 0;
	net->be->download(t->w, net->flat.w, t->nw * sizeof *t->w);
	if (dist_step_end(t->d, t->w, err) < 0)
		return -1;
	net->be->upload(net->flat.w, t->w, t->nw * sizeof *t->w);
	return 0;
}

static int on_claim(void *ctx, uint64_t *t, struct error *err)
{
	struct dist_train *dt = ctx;
	return dist_claim(dt->d, t, err);
}

/* allreduce: the other ranks would wait for rank 0's test in the next
 * step's allreduce, and count it as training; adpsgd's do not wait */
static int on_tested(void *ctx, struct nn_net *net, struct error *err)
{
	struct dist_train *t = ctx;
	(void)net;
	if (t->d->algo != DIST_ALLREDUCE)
		return 0;
	return dist_barrier(t->d, err);
}

static int on_finish(void *ctx, struct nn_net *net, struct error *err)
{
	struct dist_train *t = ctx;
	if (attach(t, net, err) < 0) /* an epoch of no steps: nothing attached yet */
		return -1;
	net->be->download(t->w, net->flat.w, t->nw * sizeof *t->w);
	if (dist_consensus(t->d, t->w, err) < 0)
		return -1;
	net->be->upload(net->flat.w, t->w, t->nw * sizeof *t->w);
	return 0;
}

void dist_train_hooks(struct dist_train *t, struct dist *d, struct nn_train_sync *sync)
{
	memset(t, 0, sizeof *t);
	t->d = d;
	memset(sync, 0, sizeof *sync);
	sync->part = d->rank;
	sync->parts = d->size;
	if (d->batches == DIST_BATCHES_SHARED)
		sync->claim = on_claim;
	sync->evaluate = d->rank == 0;
	sync->begin = on_begin;
	sync->grads = on_grads;
	sync->end = on_end;
	sync->tested = on_tested;
	sync->finish = on_finish;
	sync->ctx = t;
}

void dist_train_release(struct dist_train *t)
{
	mem_free(t->w);
	mem_free(t->g);
	t->w = t->g = NULL;
}

int dist_train_totals(struct dist *d, double rate, double seconds, struct dist_totals *t,
		      struct error *err)
{
	double sums[2] = {rate * seconds, d->comm_seconds};
	t->slowest = seconds;
	t->steps = mem_calloc((size_t)d->size, sizeof *t->steps);
	if (!t->steps)
		return error_set(err, "dist: out of memory for %d ranks' figures", d->size);
	t->steps[d->rank] = (double)d->steps;
	if (dist_sum(d, sums, 2, err) < 0 || dist_max(d, &t->slowest, 1, err) < 0 ||
	    dist_sum(d, t->steps, d->size, err) < 0)
		return -1;
	t->rate = t->slowest > 0 ? sums[0] / t->slowest : rate;
	t->comm_mean = sums[1] / d->size;
	return 0;
}

void dist_totals_release(struct dist_totals *t)
{
	mem_free(t->steps);
	t->steps = NULL;
}

json_t *dist_train_json(const struct dist *d, const struct dist_totals *t)
{
	json_t *steps = json_array();
	for (int r = 0; steps && t->steps && r < d->size; r++)
		json_array_append_new(steps, json_integer((json_int_t)t->steps[r]));
	return json_pack("{s:s, s:s, s:i, s:o*, s:f, s:f, s:f, s:I, s:f}", "algorithm",
			 dist_algo_name(d->algo), "batches", dist_batches_name(d->batches),
			 "ranks", d->size, "steps_per_rank", steps, "train_time_slowest_rank_s",
			 t->slowest, "comm_seconds_rank0", d->comm_seconds, "comm_seconds_mean",
			 t->comm_mean, "exchanges_rank0", (json_int_t)d->exchanges,
			 "megabytes_rank0", d->bytes / 1e6);
}
