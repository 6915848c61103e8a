/* optim: schedules and the per-parameter dispatch of updates. */
#include "nn/optim.h"

#include <math.h>

void nn_optim_defaults(struct nn_optim *o)
{
	*o = (struct nn_optim){.kind = NN_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .b1 = 0.9f,
			       .b2 = 0.999f, .eps = 1e-8f, .sched = NN_LR_CONST, .gamma = 0.1f};
}

int nn_optim_init(struct nn_optim *o, struct nn_net *net, struct error *err)
{
	for (int i = 0; i < net->nparams; i++) {
		struct nn_param *p = &net->params[i];
		if (!p->trainable || p->m.data)
			continue;
		const struct nn_tensor *w = &p->w;
		if (nn_tensor_alloc(&p->m, net->be, w->n, w->c, w->h, w->w, err) < 0)
			return -1;
		net->be->fill(p->m.data, nn_tensor_count(w), 0);
		if (o->kind == NN_OPT_ADAM) {
			if (nn_tensor_alloc(&p->v, net->be, w->n, w->c, w->h, w->w, err) < 0)
				return -1;
			net->be->fill(p->v.data, nn_tensor_count(w), 0);
		}
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

void nn_optim_step(struct nn_optim *o, struct nn_net *net)
{
	float lr = nn_optim_lr(o, o->t);
	o->t++;
	for (int i = 0; i < net->nparams; i++) {
		struct nn_param *p = &net->params[i];
		if (!p->trainable)
			continue;
		size_t n = nn_tensor_count(&p->w);
		float wd = p->decay ? o->wd : 0;
		if (o->kind == NN_OPT_ADAM)
			net->be->adam_step(n, p->w.data, p->g.data, p->m.data, p->v.data, lr, o->b1,
					   o->b2, o->eps, wd, o->decoupled, (int)o->t);
		else
			net->be->sgd_step(n, p->w.data, p->g.data, p->m.data, lr, o->momentum, wd,
					  o->nesterov);
	}
}
