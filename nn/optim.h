/* optim: SGD (momentum, Nesterov, weight decay) and Adam/AdamW over every
 * trainable parameter of a net, with learning-rate schedules (constant, step,
 * cosine, each with optional linear warmup). The update itself is one call
 * of the backend's sgd_step / adam_step over the net's flat parameter
 * buffers (nn/net.h), so it runs where the parameters live, as one kernel. */
#ifndef NN_OPTIM_H
#define NN_OPTIM_H

#include "nn/net.h"

enum nn_optim_kind { NN_OPT_SGD = 0, NN_OPT_ADAM = 1 };
enum nn_lr_sched { NN_LR_CONST = 0, NN_LR_STEP = 1, NN_LR_COSINE = 2 };

struct nn_optim {
	enum nn_optim_kind kind;
	float lr;               /* base (peak) learning rate */
	float momentum;         /* SGD */
	int nesterov;           /* SGD */
	float wd;               /* weight decay on params with decay set */
	float b1, b2, eps;      /* Adam */
	int decoupled;          /* Adam: AdamW-style decay */
	enum nn_lr_sched sched;
	long warmup;            /* steps of linear warmup from lr/warmup to lr */
	long total;             /* cosine: steps to reach lr_min */
	long step_every;        /* step: multiply by gamma every step_every steps */
	float gamma, lr_min;
	long t;                 /* steps taken */
};

/* Defaults: SGD, lr 0.1, momentum 0.9, no decay, constant schedule;
 * Adam b1 0.9, b2 0.999, eps 1e-8. */
void nn_optim_defaults(struct nn_optim *o);
/* Allocate the optimizer state (momentum, Adam's second moment) as flat
 * buffers beside the net's gradients, zero it, and point every trainable
 * parameter's m and v at its part. */
int nn_optim_init(struct nn_optim *o, struct nn_net *net, struct error *err);
/* The learning rate at step t (0-based). */
float nn_optim_lr(const struct nn_optim *o, long t);
/* One update with the gradients in the net's params; advances t. */
void nn_optim_step(struct nn_optim *o, struct nn_net *net);

#endif
