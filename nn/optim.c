/* optim: schedules and the per-parameter dispatch of updates. */
#include "nn/optim.h"

#include <math.h>

void nn_optim_defaults(struct nn_optim *o)
{
	*o = (struct nn_optim){.kind = NN_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .b1 = 0.9f,
			       .b2 = 0.999f, .eps = 1e-8f, .sched = NN_LR_CONST, .gamma = 0.1f};
}

/* One optimizer state buffer over the trainable part of the flat layout,
 * zeroed; kept as it is when it exists already (a second init). */
static int state_alloc(struct nn_net *net, float **buf, const char *what, struct error *err)
{
	size_t n = net->flat.ntrain;
	if (*buf || !n)
		return 0;
	if (!(*buf = net->be->alloc(n * sizeof(float))))
		return nn_alloc_failed(net->be, err, "optimizer: out of %s memory for %zu floats of %s",
				       net->be->name, n, what);
	net->be->fill(*buf, n, 0);
	return 0;
}

int nn_optim_init(struct nn_optim *o, struct nn_net *net, struct error *err)
{
	struct nn_flat *f = &net->flat;
	if (state_alloc(net, &f->m, "momentum", err) < 0 ||
	    (o->kind == NN_OPT_ADAM && state_alloc(net, &f->v, "second moments", err) < 0))
		return -1;
	for (int i = 0; i < net->nparams; i++) {
		struct nn_param *p = &net->params[i];
		const struct nn_tensor *w = &p->w;
		if (!p->trainable)
			continue;
		nn_tensor_view(&p->m, net->be, f->m + p->off, w->n, w->c, w->h, w->w);
		if (f->v)
			nn_tensor_view(&p->v, net->be, f->v + p->off, w->n, w->c, w->h, w->w);
	}
	o->t = 0;
	return 0;
}

float nn_optim_lr(const struct nn_optim *o, long t)
{
	if (o->warmup > 0 && t < o->warmup)
		return o->lr * (float)(t + 1) / (float)o->warmup;
	switch (o->sched) {
	case NN_LR_STEP:
		return o->step_every > 0 ? o->lr * powf(o->gamma, (float)(t / o->step_every)) : o->lr;
	case NN_LR_COSINE: {
		/* Loshchilov & Hutter 2017, SGDR eq. 5, one cycle after the warmup */
		long span = o->total - o->warmup;
		double f = span > 0 ? (double)(t - o->warmup) / span : 1;
		if (f > 1)
			f = 1;
		return (float)(o->lr_min + (o->lr - o->lr_min) * 0.5 * (1 + cos(M_PI * f)));
	}
	case NN_LR_CONST:
	default:
		return o->lr;
	}
}

/* One backend call over the flat buffers updates every trainable parameter. */
void nn_optim_step(struct nn_optim *o, struct nn_net *net)
{
	const struct nn_flat *f = &net->flat;
	float lr = nn_optim_lr(o, o->t);
	o->t++;
	if (!f->ntrain)
		return;
	if (o->kind == NN_OPT_ADAM)
		net->be->adam_step(f->ntrain, f->ndecay, f->w, f->g, f->m, f->v, lr, o->b1, o->b2,
				   o->eps, o->wd, o->decoupled, (int)o->t);
	else
		net->be->sgd_step(f->ntrain, f->ndecay, f->w, f->g, f->m, lr, o->momentum, o->wd,
				  o->nesterov);
}
