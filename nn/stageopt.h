/* stageopt: the options the nn stages take alike (cairn-train-classifier,
 * cairn-train-unet, cairn-predict, cairn-refine): --threads, --device and
 * --precision, for those that train --state and --state-every, and for the
 * two trainers --epochs, --batch, --lr, --wd and --seed; parsed and checked
 * in one place, so that each says the same about a bad value. */
#ifndef NN_STAGEOPT_H
#define NN_STAGEOPT_H

#include <getopt.h>

#include "core/error.h"
#include "nn/backend.h"
#include "nn/train.h"

/* getopt_long values, outside any short option's range. */
enum {
	NN_OPT_THREADS = 0x1000,
	NN_OPT_DEVICE,
	NN_OPT_PRECISION,
	NN_OPT_STATE,
	NN_OPT_STATE_EVERY,
	NN_OPT_EPOCHS,
	NN_OPT_BATCH,
	NN_OPT_LR,
	NN_OPT_WD,
	NN_OPT_SEED,
};

/* Entries for a stage's longopts table. */
// clang-format off
#define NN_STAGE_DEVICE_OPTIONS \
	{"threads", required_argument, 0, NN_OPT_THREADS}, \
	{"device", required_argument, 0, NN_OPT_DEVICE}, \
	{"precision", required_argument, 0, NN_OPT_PRECISION}
#define NN_STAGE_STATE_OPTIONS \
	{"state", required_argument, 0, NN_OPT_STATE}, \
	{"state-every", required_argument, 0, NN_OPT_STATE_EVERY}
#define NN_STAGE_TRAIN_OPTIONS \
	{"epochs", required_argument, 0, NN_OPT_EPOCHS}, \
	{"batch", required_argument, 0, NN_OPT_BATCH}, \
	{"lr", required_argument, 0, NN_OPT_LR}, \
	{"wd", required_argument, 0, NN_OPT_WD}, \
	{"seed", required_argument, 0, NN_OPT_SEED}
// clang-format on

struct nn_stage_opts {
	long threads;		     /* --threads N, 1..1024; 0: cpus_default_threads() */
	const struct nn_backend *be; /* --device, default cpu */
	const char *precision;	     /* --precision; after setup, the one in use */
	const char *state_dir;	     /* --state DIR, or NULL */
	double state_every;	     /* --state-every S, default 600 */
	/* A trainer's fit, holding its defaults: where NN_STAGE_TRAIN_OPTIONS
	 * go, each checked (--epochs 1..100000, --batch 1..65536, --lr > 0,
	 * --wd >= 0, --seed 0..2^31-1); nn_stage_setup sets its be, state_dir
	 * and state_every. NULL for the other stages. */
	struct nn_fit *fit;
};

void nn_stage_opts_init(struct nn_stage_opts *o);
/* getopt_long's value c with its argument: 1 taken; 0 not one of these
 * options; -1 a bad value, err saying which ("--threads: 'x' is not an
 * integer in 1..1024"): the stage's bad usage. */
int nn_stage_opt(struct nn_stage_opts *o, int c, const char *arg, struct error *err);
/* After parsing: the threads set, the precision checked against the
 * device, o->precision becoming the name in use, and o->fit given the
 * device and the state; -1 with err ("--precision: ..."), bad usage. */
int nn_stage_setup(struct nn_stage_opts *o, struct error *err);

#endif
