/* stage: what cairn-train-classifier and cairn-train-unet do alike around
 * their training loop. With --dist the ranks join once the input is known
 * good and rank 0 alone reports and writes (docs/dist.md); the output folder
 * is made, and removed again after a failure when this run made it and it
 * is empty; a failure is said with the rank and passed on to the other
 * ranks; model.ckpt and metrics.json are written both or neither, metrics
 * with the fields every training stage records (wall and CPU time, load,
 * device, precision, and the "dist" and "cuda" objects). */
#ifndef DIST_STAGE_H
#define DIST_STAGE_H

#include <jansson.h>

#include "core/progress.h"
#include "dist/dist.h"
#include "dist/train.h"
#include "nn/net.h"
#include "nn/stageopt.h"

/* --dist A and --dist-batches B, parsed alike by every training stage:
 * getopt_long values past nn/stageopt.h's, and the table's entries. */
enum { DIST_OPT_ALGO = 0x1100, DIST_OPT_BATCHES };
// clang-format off
#define DIST_STAGE_OPTIONS \
	{"dist", required_argument, 0, DIST_OPT_ALGO}, \
	{"dist-batches", required_argument, 0, DIST_OPT_BATCHES}
// clang-format on
struct dist_opts {
	enum dist_algo algo;	   /* DIST_NONE unless --dist */
	enum dist_batches batches; /* DEFAULT unless --dist-batches */
};
/* 1: c was one of them (taken), 0: not, -1: a bad value (err says it). */
int dist_stage_opt(struct dist_opts *o, int c, const char *arg, struct error *err);
/* After parsing: -1 with err when they do not go together (shared batches
 * with allreduce, --dist-batches without --dist). */
int dist_stage_opts_check(const struct dist_opts *o, struct error *err);

struct dist_stage {
	const char *prog, *out;
	const struct nn_stage_opts *opts; /* device, precision in use, state */
	enum dist_algo algo;
	enum dist_batches batches; /* --dist-batches; DEFAULT: the algorithm's */
	struct dist dist;
	struct dist_train dt;
	struct nn_train_sync sync;
	struct dist_totals tot;
	int rank, made_out;
	double t0, load; /* the training's start; the load average then (-1: unknown) */
	/* rank 0's progress bar over all epochs' batches */
	struct progress bar;
	int epochs;
	uint64_t per_epoch; /* batches; 0 until the first batch */
};

void dist_stage_init(struct dist_stage *s, const char *prog, const struct nn_stage_opts *opts,
		     const struct dist_opts *dist);
/* Join the ranks (nothing without --dist) and fill s->sync with their
 * hooks: 0, or -1 said on stderr (exit status 1). */
int dist_stage_join(struct dist_stage *s);
/* Rank 0: the model's summary, how the ranks split the work (batch per
 * rank), the output folder made; every rank: the clock started. 0, or the
 * exit status after saying why. */
int dist_stage_begin(struct dist_stage *s, const char *summary, int batch, int epochs,
		     const char *out);
/* The trainers' hooks on rank 0, with the stage as their ctx: a progress
 * bar over all epochs' batches (on a terminal), and an epoch's line, which
 * the stage's own on_epoch hook writes between head ("epoch 3/15: train
 * loss 0.4123", the bar's line cleared) and tail (" (1:02)" and a newline). */
void dist_stage_on_batch(void *ctx, int epoch, uint64_t batch, uint64_t batches, float loss);
void dist_stage_epoch_head(struct dist_stage *s, int epoch, float loss);
void dist_stage_epoch_tail(double seconds);
/* The training failed with rc and err (the bar ended first): said (with the rank when there are
 * several), the other ranks stopped; the exit status (2 for bad input). */
int dist_stage_failed(struct dist_stage *s, int rc, const struct error *err);
/* After training, on every rank (collective): the bar ended, all ranks'
 * rate over the slowest one's seconds into s->tot; 0 or the exit status
 * (said). */
int dist_stage_totals(struct dist_stage *s, double rate, double seconds);
/* Rank 0: net to OUT/model.ckpt, then m to OUT/metrics.json with wall_time_s,
 * cpu_time_s, load_average_at_start, device, precision, "dist" (with
 * --dist) and "cuda" (on a GPU) added; both files or neither. 0, or 1 after
 * saying why. m is released. */
int dist_stage_save(struct dist_stage *s, const struct nn_net *net, json_t *m);
/* The seconds since dist_stage_begin. */
double dist_stage_wall(const struct dist_stage *s);
/* Rank 0, after the result line: "(resumed at epoch 3 of 15 from DIR)" when
 * the training went on from --state; nothing when it started afresh. */
void dist_stage_resumed(const struct dist_stage *s, int from_epoch, uint64_t batches);
/* After a failure (status != 0) the output folder goes when this run made
 * it and nothing is in it. */
void dist_stage_release(struct dist_stage *s, int status);

#endif
