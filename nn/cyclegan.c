/* cyclegan: CycleGAN training over nn nets (see cyclegan.h). */
#include "nn/cyclegan.h"

#include <string.h>

#include "core/mem.h"
#include "nn/model.h"

void nn_cyclegan_defaults(struct nn_cyclegan_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->gen = "cyclegan:base=64,blocks=9";
	cfg->disc = "patchgan:base=64,layers=3";
	cfg->channels[0] = cfg->channels[1] = 3;
	cfg->height = cfg->width = 256;
	cfg->batch = 1;
	cfg->lr = 2e-4f, cfg->b1 = 0.5f;
	cfg->cycle = 10, cfg->identity = 5;
	cfg->seed = 1;
}

/* A device buffer of n floats, all v. */
static float *filled(const struct nn_backend *be, size_t n, float v, struct error *err)
{
	float *d = be->alloc(n * sizeof(float));
	if (!d) {
		nn_alloc_failed(be, err, "CycleGAN: no memory for %zu floats", n);
		return NULL;
	}
	be->fill(d, n, v);
	return d;
}

/* One module and its uses: use `owner` keeps the weights and the optimizer,
 * the others share them. in/out: channels it takes and gives. */
static int module(struct nn_cyclegan *c, const char *spec, int in, int out, struct nn_net *use,
		  int nuses, int owner, struct nn_optim *o, uint64_t seed, struct error *err)
{
	const struct nn_cyclegan_config *cfg = &c->cfg;
	for (int u = 0; u < nuses; u++)
		if (nn_model_build(&use[u], cfg->be, spec, in, cfg->height, cfg->width, out, seed,
				   err) < 0 ||
		    nn_net_prepare(&use[u], cfg->batch, err) < 0)
			return -1;
	for (int u = 0; u < nuses; u++)
		if (u != owner && nn_net_share_weights(&use[u], &use[owner], err) < 0)
			return -1;
	nn_optim_defaults(o);
	o->kind = NN_OPT_ADAM, o->lr = cfg->lr, o->b1 = cfg->b1;
	return nn_optim_init(o, &use[owner], err);
}

int nn_cyclegan_init(struct nn_cyclegan *c, const struct nn_cyclegan_config *cfg, struct error *err)
{
	memset(c, 0, sizeof(*c));
	c->cfg = *cfg;
	const int *ch = cfg->channels;
	if (cfg->identity != 0 && ch[0] != ch[1])
		return error_set(
		    err,
		    "CycleGAN: an identity loss needs domains of the same channels (A has "
		    "%d, B %d): give it weight 0",
		    ch[0], ch[1]);
	c->uses = cfg->identity != 0 ? 3 : 2;
	for (int m = 0; m < 2; m++) {
		if (module(c, cfg->gen, ch[m], ch[1 - m], c->g[m], c->uses, NN_CG_TRANSLATE,
			   &c->og[m], cfg->seed + (uint64_t)m, err) < 0 ||
		    module(c, cfg->disc, ch[m], 1, c->d[m], 2, NN_CG_REAL, &c->od[m],
			   cfg->seed + 2 + (uint64_t)m, err) < 0) {
			error_prefix(err, "CycleGAN: ");
			return -1;
		}
		nn_net_want_input_grad(&c->d[m][NN_CG_FAKE], 1); /* for the generators' loss */
		nn_net_want_weight_grads(&c->d[m][NN_CG_FAKE], 0);
		nn_net_want_input_grad(&c->g[m][NN_CG_RECONSTRUCT], 1);
	}
	const struct nn_node *gout = &c->g[0][0].nodes[c->g[0][0].nnodes - 1];
	if (gout->h != cfg->height || gout->w != cfg->width) {
		int mult = nn_model_size_multiple(cfg->gen, err);
		return error_set(
		    err,
		    "CycleGAN: generator '%s' gives %dx%d for %dx%d inputs: give a size "
		    "it keeps (a multiple of %d)",
		    cfg->gen, gout->h, gout->w, cfg->height, cfg->width, mult);
	}
	const struct nn_node *dout = &c->d[0][0].nodes[c->d[0][0].nnodes - 1];
	for (int m = 0; m < 2; m++)
		c->img[m] = (size_t)cfg->batch * ch[m] * cfg->height * cfg->width;
	c->patch = (size_t)cfg->batch * dout->c * dout->h * dout->w;
	if (!(c->real[0] = filled(cfg->be, c->img[0], 0, err)) ||
	    !(c->real[1] = filled(cfg->be, c->img[1], 0, err)) ||
	    !(c->ones = filled(cfg->be, c->patch, 1, err)) ||
	    !(c->zeros = filled(cfg->be, c->patch, 0, err)))
		return -1;
	return 0;
}

int nn_cyclegan_want_cycle_weights(struct nn_cyclegan *c, int m, struct error *err)
{
	if (!c->cycle_w[m] && !(c->cycle_w[m] = filled(c->cfg.be, c->img[m], 1, err)))
		return -1;
	return 0;
}

int nn_cyclegan_want_pairs(struct nn_cyclegan *c, float weight, struct error *err)
{
	c->paired = weight;
	if (!c->pair_b && !(c->pair_b = filled(c->cfg.be, c->img[1], 0, err)))
		return -1;
	if (!c->pair_w && !(c->pair_w = filled(c->cfg.be, c->img[1], 1, err)))
		return -1;
	if (!c->pair_dy && !(c->pair_dy = filled(c->cfg.be, c->img[1], 0, err)))
		return -1;
	return 0;
}

/* Forward net on an input copied from src; its output. */
static const float *forward(struct nn_net *net, const float *src, size_t count, int n)
{
	net->be->copy(nn_net_input(net)->data, src, count);
	return nn_net_forward(net, n)->data;
}

/* A discriminator's LSGAN loss against target times w, after its forward
 * pass, and the backward pass. */
static void d_loss(struct nn_cyclegan *c, struct nn_net *d, const float *target, float w,
		   float *loss)
{
	float *dy = nn_net_output_grad(d)->data;
	d->be->mse(c->patch, d->nodes[d->nnodes - 1].y.data, target, dy, loss);
	if (w != 1)
		d->be->scale(dy, c->patch, w);
	nn_net_backward(d);
}

/* A discriminator use: forward on src (count floats), then d_loss. */
static void d_pass(struct nn_cyclegan *c, struct nn_net *d, const float *src, size_t count,
		   const float *target, float w, float *loss)
{
	forward(d, src, count, c->cfg.batch);
	d_loss(c, d, target, w, loss);
}

/* A generator use's loss: L1 to target (count floats), times w and the
 * per-value weights vw (may be NULL), into its output gradient; backward. */
static void l1_pass(struct nn_net *g, const float *target, size_t count, float w, const float *vw,
		    float *loss)
{
	float *dy = nn_net_output_grad(g)->data;
	g->be->l1(count, g->nodes[g->nnodes - 1].y.data, target, dy, loss);
	g->be->scale(dy, count, w);
	if (vw)
		g->be->mul(dy, vw, dy, count);
	nn_net_backward(g);
}

void nn_cyclegan_step(void *ctx)
{
	struct nn_cyclegan *c = ctx;
	const struct nn_backend *be = c->cfg.be;
	struct nn_net(*g)[3] = c->g, (*d)[2] = c->d;
	const float *real_a = c->real[0], *real_b = c->real[1];
	const size_t na = c->img[0], nb = c->img[1];
	const int n = c->cfg.batch;
	float *loss = c->loss;
	/* fake_B = G_A(A), fake_A = G_B(B), rec_A = G_B(fake_B), rec_B = G_A(fake_A),
	   idt_B = G_A(B), idt_A = G_B(A) */
	const float *fake_b = forward(&g[NN_CG_GA][NN_CG_TRANSLATE], real_a, na, n);
	const float *fake_a = forward(&g[NN_CG_GB][NN_CG_TRANSLATE], real_b, nb, n);
	forward(&g[NN_CG_GB][NN_CG_RECONSTRUCT], fake_b, nb, n);
	forward(&g[NN_CG_GA][NN_CG_RECONSTRUCT], fake_a, na, n);
	if (c->uses == 3) {
		forward(&g[NN_CG_GA][NN_CG_IDENTITY], real_b, nb, n);
		forward(&g[NN_CG_GB][NN_CG_IDENTITY], real_a, na, n);
	}
	/* the generators' loss: D_B(fake_B) and D_A(fake_A) as real, cycles, identities */
	d_pass(c, &d[NN_CG_DB][NN_CG_FAKE], fake_b, nb, c->ones, 1, &loss[NN_CG_LOSS_G_DB]);
	d_pass(c, &d[NN_CG_DA][NN_CG_FAKE], fake_a, na, c->ones, 1, &loss[NN_CG_LOSS_G_DA]);
	l1_pass(&g[NN_CG_GB][NN_CG_RECONSTRUCT], real_a, na, c->cfg.cycle, c->cycle_w[0],
		&loss[NN_CG_LOSS_CYCLE_A]);
	l1_pass(&g[NN_CG_GA][NN_CG_RECONSTRUCT], real_b, nb, c->cfg.cycle, c->cycle_w[1],
		&loss[NN_CG_LOSS_CYCLE_B]);
	if (c->uses == 3) {
		l1_pass(&g[NN_CG_GA][NN_CG_IDENTITY], real_b, nb, c->cfg.identity, NULL,
			&loss[NN_CG_LOSS_IDT_B]);
		l1_pass(&g[NN_CG_GB][NN_CG_IDENTITY], real_a, na, c->cfg.identity, NULL,
			&loss[NN_CG_LOSS_IDT_A]);
	} else {
		loss[NN_CG_LOSS_IDT_B] = loss[NN_CG_LOSS_IDT_A] = 0;
	}
	if (c->paired == 0)
		loss[NN_CG_LOSS_PAIRED] = 0;
	for (int m = 0; m < 2; m++) { /* G_A's output feeds D_B and G_B's reconstruction */
		struct nn_net *t = &g[m][NN_CG_TRANSLATE];
		size_t count = c->img[1 - m];
		float *dy = nn_net_output_grad(t)->data;
		be->copy(dy, nn_net_input_grad(&d[1 - m][NN_CG_FAKE])->data, count);
		be->axpy(count, 1, nn_net_input_grad(&g[1 - m][NN_CG_RECONSTRUCT])->data, dy);
		if (m == NN_CG_GA && c->paired != 0) { /* G_A(A) against A's own B */
			be->l1(count, fake_b, c->pair_b, c->pair_dy, &loss[NN_CG_LOSS_PAIRED]);
			be->mul(c->pair_dy, c->pair_w, c->pair_dy, count);
			be->axpy(count, c->paired, c->pair_dy, dy);
		}
		nn_net_backward(t);
	}
	for (int m = 0; m < 2; m++) {
		for (int u = 1; u < c->uses; u++)
			nn_net_add_grads(&g[m][NN_CG_TRANSLATE], &g[m][u]);
		nn_optim_step(&c->og[m], &g[m][NN_CG_TRANSLATE]);
	}
	/* the discriminators' loss on real and (the step's) generated images:
	   on these, the forward pass above, now for the weights */
	for (int m = 0; m < 2; m++) {
		struct nn_net *fake = &d[m][NN_CG_FAKE];
		d_pass(c, &d[m][NN_CG_REAL], c->real[m], c->img[m], c->ones, 0.5f,
		       &loss[NN_CG_LOSS_DA_REAL + 2 * m]);
		nn_net_want_input_grad(fake, 0), nn_net_want_weight_grads(fake, 1);
		d_loss(c, fake, c->zeros, 0.5f, &loss[NN_CG_LOSS_DA_FAKE + 2 * m]);
		nn_net_want_input_grad(fake, 1), nn_net_want_weight_grads(fake, 0);
		nn_net_add_grads(&d[m][NN_CG_REAL], fake);
		nn_optim_step(&c->od[m], &d[m][NN_CG_REAL]);
	}
}

void nn_cyclegan_release(struct nn_cyclegan *c)
{
	const struct nn_backend *be = c->cfg.be;
	for (int m = 0; m < 2; m++) { /* the uses that share weights before their owners */
		for (int u = 0; u < 3; u++)
			if (u != NN_CG_TRANSLATE)
				nn_net_release(&c->g[m][u]);
		nn_net_release(&c->d[m][NN_CG_FAKE]);
	}
	for (int m = 0; m < 2; m++)
		nn_net_release(&c->g[m][NN_CG_TRANSLATE]), nn_net_release(&c->d[m][NN_CG_REAL]);
	if (be) {
		float *bufs[9] = {c->real[0], c->real[1], c->cycle_w[0], c->cycle_w[1], c->ones,
				  c->zeros,   c->pair_b,  c->pair_w,	 c->pair_dy};
		for (int i = 0; i < 9; i++)
			if (bufs[i])
				be->free(bufs[i]);
	}
	memset(c, 0, sizeof(*c));
}
