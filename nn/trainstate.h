/* trainstate: what a training needs to go on where it was stopped (a Slurm
 * time limit, a preemption, a node failure, kill -9) instead of from epoch 0.
 * After every epoch a trainer given a state folder writes DIR/train.state:
 * the net's flat parameters (weights and statistics), the optimizer's state
 * (momentum, Adam's second moments) and step count, the dropout stream, the
 * epochs done and their figures, and what the training is (its settings and
 * inputs). Its next start with the same folder and settings loads it and
 * goes on with the next epoch. The loader's order of epoch e depends only on
 * (seed, e), so a resumed training ends with the same weights, bit for bit,
 * as one that was never stopped (same backend and thread count).
 *
 * File, little-endian: "CAIRNTST" | u32 version (1) | u32 json_len | JSON |
 * u32 nparts | per part (a net and its optimizer): u64 n, ntrain, nmoments |
 * n + ntrain + nmoments float32 | 64 hex chars: sha256 of every byte before
 * them. The JSON: {"what": {...}, "epochs_done", "batches", "loss_sum",
 * "steps": [per part], "net_steps": [per part], "seconds", "figures": {...}}.
 * Written to a temp file, synced and renamed: a process killed at any moment leaves the previous
 * epoch's state or this one's, never a torn file. */
#ifndef NN_TRAINSTATE_H
#define NN_TRAINSTATE_H

#include <jansson.h>

#include "nn/net.h"
#include "nn/optim.h"

#define NN_TRAINSTATE_FILE "train.state"

struct nn_trainstate {
	int epochs_done;  /* whole epochs done (0 and batches 0: nothing loaded) */
	uint64_t batches; /* batches done of the epoch under way (a state written
			     within epoch epochs_done + 1), or 0 */
	double loss_sum;  /* the sum of their losses */
	double seconds;	  /* training seconds before the stop (eval excluded) */
	json_t *figures;  /* the trainer's per-epoch figures so far (NULL if none) */
};

/* One net of a training and its optimizer. A training may have several
 * (a CycleGAN: two generators, two discriminators, an Adam each). */
struct nn_trainpart {
	struct nn_net *net;
	struct nn_optim *opt;
};

/* Write DIR/train.state (DIR is made when missing) at the position st says,
 * with st's figures (may be NULL). what: an object of the settings and
 * inputs that make this training this one (architecture, shards, epochs,
 * batch, learning rate, seed, ...). */
int nn_trainstate_save(const char *dir, const json_t *what, const struct nn_trainpart *parts,
		       int nparts, const struct nn_trainstate *st, struct error *err);

/* Load DIR/train.state into the parts' nets and optimizers (set up for this
 * training: built and prepared, nn_optim_init done). 1: loaded, st filled
 * (its figures owned: nn_trainstate_release); 0: DIR or its state does not
 * exist (a fresh start, st zeroed); -1: the file is damaged, holds other
 * nets, or another training (the first setting of `what` that differs is
 * named, with both values): the message says to remove the folder or give
 * another one. */
int nn_trainstate_load(const char *dir, const json_t *what, const struct nn_trainpart *parts,
		       int nparts, struct nn_trainstate *st, struct error *err);

void nn_trainstate_release(struct nn_trainstate *st);

/* "after epoch 3 of 30" or "after epoch 3 and 17 batches of epoch 4 of 30":
 * where a resumed training went on from, for its messages. */
void nn_trainstate_where(char *out, size_t size, int epochs_done, uint64_t batches, int epochs);

/* Per-epoch figures as JSON arrays: put sets figures[key] to v[0..n) (a
 * value that is not finite becomes null); get fills v[0..n) from it (null:
 * NAN) and is -1 when the array is missing or shorter. */
void nn_figures_put(json_t *figures, const char *key, const double *v, size_t n);
void nn_figures_put_float(json_t *figures, const char *key, const float *v, size_t n);
int nn_figures_get(const json_t *figures, const char *key, double *v, size_t n);
int nn_figures_get_float(const json_t *figures, const char *key, float *v, size_t n);

#endif
