/* cuda_step: the cairn side of bench/cuda.sh (issue #8), beside PyTorch's
 * bench/cuda_torch.py in the same run. Tasks:
 *   step      one training step of any nn/ model spec (forward, softmax
 *             cross-entropy over the output channels, backward, SGD), run
 *             through the backend's step slot (a CUDA graph from the second
 *             step on unless CAIRN_CUDA_GRAPH=0);
 *   cyclegan  the CycleGAN step: two ResNet-9-block generators, two PatchGANs
 *             (see cyclegan_step for how nn's nets stand in for shared weights);
 *   conv      the U-Net's 3x3 convolutions (forward + backward data + backward
 *             filter), cairn's conv slots against bare cuDNN calls; with
 *             --shapes cyclegan the CycleGAN's, bare calls also in NHWC;
 *   gemm      sgemm 8192^3, cairn's gemm slot against bare cuBLAS;
 *   dump      one forward and backward pass of a model spec, written to
 *             --out DIR for bench/cuda_torch.py --check DIR: the input, the
 *             weights, the output, its gradient, the weight and input
 *             gradients (tests/integration/torch_mirror.sh: PyTorch's mirrors
 *             of the benchmark's networks compute what cairn's compute).
 * Prints one line per figure, e.g.
 *   cairn DEVICE PRECISION ARCH batch B CxHxW: X ms/step, Y images/s
 * Example: cuda_step --device cuda --arch unet:depth=4,base=16 --batch 8 --size 256 */
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/mem.h"
#include "nn/backend.h"
#include "nn/cyclegan.h"
#include "nn/model.h"
#include "nn/net.h"
#include "nn/optim.h"
#ifdef CAIRN_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "nn/cuda/cuda.h"
#endif

struct args {
	const char *device, *arch, *precision, *task, *out, *shapes;
	int batch, channels, size, classes, steps, warmup;
};

static int usage(const char *prog, int rc)
{
	fprintf(
	    rc ? stderr : stdout,
	    "usage: %s [--task step|cyclegan|conv|gemm|dump] [--device cpu|cuda] [--out DIR]\n"
	    "          [--precision fp32|tf32|bf16] [--arch SPEC] [--batch N] [--channels C]\n"
	    "          [--size S] [--classes K] [--steps N] [--warmup N] [--shapes unet|cyclegan]\n"
	    "example: %s --device cuda --arch unet:depth=4,base=16 --batch 8 --size 256 --classes "
	    "2\n",
	    prog, prog);
	return rc;
}

static void fill_host(float *x, size_t n, unsigned salt)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(((i + salt) * 2654435761u) % 1000) / 1000.0f - 0.5f;
}

/* A device buffer of n floats with fixed pseudo-random values (or v when
 * v is not NaN); NULL with a message when out of memory. */
static float *dev_buffer(const struct nn_backend *be, size_t n, unsigned salt, float v)
{
	float *d = be->alloc(n * sizeof(float)), *h = mem_alloc(n * sizeof(float));
	if (!d || !h) {
		fprintf(stderr, "cuda_step: out of memory for %zu floats\n", n);
		mem_free(h);
		return NULL;
	}
	if (v == v)
		be->fill(d, n, v);
	else {
		fill_host(h, n, salt);
		be->upload(d, h, n * sizeof(float));
	}
	mem_free(h);
	return d;
}

static int check_device(const struct nn_backend *be)
{
#ifdef CAIRN_CUDA
	struct error err;
	if (be->device == NN_DEV_CUDA && nn_cuda_error(&err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
#else
	(void)be;
#endif
	return 0;
}

/* ---- step: one training step of a model spec ---------------------------- */

struct step_ctx {
	struct nn_net *net;
	struct nn_optim *opt;
	const int32_t *labels;
	int n, hw;
	float loss;
};

/* Seconds per step of fn(ctx) run through the backend's step slot (from the
 * second step on, a CUDA graph replay): a->warmup steps, then a->steps timed. */
static double timed_steps(const struct nn_backend *be, const struct args *a, void (*fn)(void *),
			  void *ctx)
{
	void *graph = NULL;
	double t0 = 0;
#ifdef CAIRN_CUDA
	struct nn_cuda_graph_stats g0, g1;
	nn_cuda_get_graph_stats(&g0);
#endif
	for (int s = 0; s < a->warmup + a->steps; s++) {
		if (s == a->warmup) {
			be->sync();
			nn_net_profile_reset(); /* CAIRN_NN_PROFILE: the timed steps only */
			t0 = clock_now();
		}
		nn_backend_step(be, &graph, fn, ctx);
	}
	be->sync();
	double dt = (clock_now() - t0) / a->steps;
	nn_backend_step_release(be, &graph);
#ifdef CAIRN_CUDA
	nn_cuda_get_graph_stats(&g1); /* how the steps ran: graphs or not, and why not */
	if (be->device == NN_DEV_CUDA)
		printf("# %zu steps: %zu eager, %zu captured, %zu replayed, %zu failed captures; "
		       "%zu graph nodes\n",
		       g1.steps - g0.steps, g1.eager - g0.eager, g1.captures - g0.captures,
		       g1.replays - g0.replays, g1.failures - g0.failures,
		       g1.captures > g0.captures ? g1.nodes : 0);
#endif
	return dt;
}

static void one_step(void *p)
{
	struct step_ctx *c = p;
	const struct nn_tensor *y = nn_net_forward(c->net, c->n);
	c->net->be->softmax_xent(c->n, y->c, c->hw, y->data, c->labels, NULL,
				 nn_net_output_grad(c->net)->data, &c->loss);
	nn_net_backward(c->net);
	nn_optim_step(c->opt, c->net);
}

static int task_step(const struct nn_backend *be, const struct args *a)
{
	struct error err;
	struct nn_net net;
	if (nn_model_build(&net, be, a->arch, a->channels, a->size, a->size, a->classes, 1, &err) < 0 ||
	    nn_net_prepare(&net, a->batch, &err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
	struct nn_optim opt;
	nn_optim_defaults(&opt);
	opt.lr = 1e-3f;
	if (nn_optim_init(&opt, &net, &err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
	struct nn_tensor *in = nn_net_input(&net);
	size_t nin = (size_t)a->batch * in->c * in->h * in->w;
	float *host = mem_alloc(nin * sizeof(float));
	if (!host) {
		fprintf(stderr, "cuda_step: out of memory\n");
		return 1;
	}
	fill_host(host, nin, 0);
	if (nn_tensor_upload(in, host, nin, &err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
	/* labels over the output's pixels, one per (sample, pixel) */
	const struct nn_tensor *y = nn_net_forward(&net, a->batch);
	int hw = y->h * y->w;
	size_t nl = (size_t)a->batch * hw;
	int32_t *labels = mem_alloc(nl * sizeof(int32_t)), *dlabels = be->alloc(nl * sizeof(int32_t));
	if (!labels || !dlabels) {
		fprintf(stderr, "cuda_step: out of memory for %zu labels\n", nl);
		return 1;
	}
	for (size_t i = 0; i < nl; i++)
		labels[i] = (int32_t)(i % (size_t)y->c);
	be->upload(dlabels, labels, nl * sizeof(int32_t));
	struct step_ctx c = {&net, &opt, dlabels, a->batch, hw, 0};
	double dt = timed_steps(be, a, one_step, &c);
	if (check_device(be))
		return 1;
	printf("cairn %s %s %s batch %d %dx%dx%d: %.3f ms/step, %.0f images/s (loss %.4f)\n",
	       be->name, a->precision, net.arch, a->batch, a->channels, a->size, a->size, dt * 1e3,
	       a->batch / dt, (double)c.loss);
#ifdef CAIRN_CUDA
	if (be->device == NN_DEV_CUDA) { /* bf16 backs half of the activation arena */
		struct nn_cuda_mem_stats m;
		nn_cuda_get_mem_stats(&m);
		printf("# device memory: activation arena %.1f MiB, backed by %.1f MiB%s; peak in use "
		       "%.1f MiB\n",
		       net.act.size / 1048576.0, m.act_backed / 1048576.0,
		       m.act_vmm ? "" : " (no VMM: backed in full, not counted)",
		       m.peak_in_use / 1048576.0);
	}
#endif
	be->free(dlabels);
	mem_free(labels), mem_free(host);
	nn_net_release(&net);
	return 0;
}

/* ---- cyclegan: the CycleGAN step ------------------------------------------
 * The step of Zhu et al.'s reference implementation (LSGAN losses, cycle
 * weight 10, identity weight 5, Adam 2e-4 with beta1 0.5), as nn/cyclegan
 * runs it for cairn-refine: nn_cyclegan_defaults are the reference's
 * settings. */

static int dump_params(struct nn_net *net, const char *dir, const char *name, int what);
static int dump_masks(struct nn_net *const *nets, int k, const char *dir, const char *name);
static int dump_tensor(const struct nn_backend *be, const char *dir, const char *name,
		       const float *d, size_t n);

/* --out DIR: one step, for bench/cuda_torch.py --check-cyclegan DIR: the
 * four modules' weights before (G_A.bin, G_B.bin, D_A.bin, D_B.bin) and
 * after it (the same names with -after), the two image batches (real_A.bin,
 * real_B.bin), masks.bin (the ReLU masks of the twelve uses, in the order
 * the reference runs them), cyclegan.txt (the size, the batch, then the step's ten
 * losses: the generators' LSGAN terms for D_B and D_A, the cycles A and B,
 * the identities B and A (L1 means, before their weights), D_A on real and
 * generated, D_B on real and generated (MSE means, before the 0.5)). */
static int cg_dump(struct nn_cyclegan *c, const struct args *a)
{
	static const char *names[4] = {"G_A", "G_B", "D_A", "D_B"};
	struct nn_net *owner[4] = {&c->g[NN_CG_GA][NN_CG_TRANSLATE],
				   &c->g[NN_CG_GB][NN_CG_TRANSLATE], &c->d[NN_CG_DA][NN_CG_REAL],
				   &c->d[NN_CG_DB][NN_CG_REAL]};
	const struct nn_backend *be = owner[0]->be;
	char name[64];
	int rc = dump_tensor(be, a->out, "real_A.bin", c->real[0], c->img[0]) ||
		 dump_tensor(be, a->out, "real_B.bin", c->real[1], c->img[1]);
	for (int i = 0; i < 4 && !rc; i++) {
		snprintf(name, sizeof(name), "%s.bin", names[i]);
		rc = dump_params(owner[i], a->out, name, 0);
	}
	nn_cyclegan_step(c);
	/* the ReLU masks of the twelve uses, in the order the reference step
	   runs them (bench/cuda_torch.py cyclegan_step_fn) */
	struct nn_net(*g)[3] = c->g, (*d)[2] = c->d;
	/* the generated images' pass of a discriminator serves two uses of the
	   reference (the generators' loss, then its own), with the same masks */
	struct nn_net *order[12] = {&g[NN_CG_GA][NN_CG_TRANSLATE], &g[NN_CG_GB][NN_CG_RECONSTRUCT],
				    &g[NN_CG_GB][NN_CG_TRANSLATE], &g[NN_CG_GA][NN_CG_RECONSTRUCT],
				    &d[NN_CG_DB][NN_CG_FAKE],	   &d[NN_CG_DA][NN_CG_FAKE],
				    &g[NN_CG_GA][NN_CG_IDENTITY],  &g[NN_CG_GB][NN_CG_IDENTITY],
				    &d[NN_CG_DA][NN_CG_REAL],	   &d[NN_CG_DA][NN_CG_FAKE],
				    &d[NN_CG_DB][NN_CG_REAL],	   &d[NN_CG_DB][NN_CG_FAKE]};
	rc = rc || dump_masks(order, 12, a->out, "masks.bin");
	for (int i = 0; i < 4 && !rc; i++) {
		snprintf(name, sizeof(name), "%s-after.bin", names[i]);
		rc = dump_params(owner[i], a->out, name, 0);
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/cyclegan.txt", a->out);
	FILE *f = rc ? NULL : fopen(path, "w");
	if (f) {
		fprintf(f, "size %d\nbatch %d\nlosses", a->size, a->batch);
		for (int i = 0; i < 10; i++)
			fprintf(f, " %.9g", (double)c->loss[i]);
		fputc('\n', f);
		rc = fclose(f) != 0;
	} else {
		rc = 1;
	}
	if (rc)
		fprintf(stderr, "cuda_step: cannot write the CycleGAN step in %s\n", a->out);
	else
		printf("cairn %s cyclegan step dumped to %s\n", be->name, a->out);
	return rc;
}

static void cyclegan_step(void *c)
{
	nn_cyclegan_step(c);
}

/* Fixed pseudo-random batches, as before the step moved into nn/cyclegan. */
static int cg_fill(const struct nn_backend *be, float *d, size_t n, unsigned salt)
{
	float *h = mem_alloc(n * sizeof(float));
	if (!h) {
		fprintf(stderr, "cuda_step: out of memory for %zu floats\n", n);
		return -1;
	}
	fill_host(h, n, salt);
	be->upload(d, h, n * sizeof(float));
	mem_free(h);
	return 0;
}

static int task_cyclegan(const struct nn_backend *be, const struct args *a)
{
	struct nn_cyclegan *c = mem_calloc(1, sizeof(*c));
	if (!c) {
		fprintf(stderr, "cuda_step: out of memory\n");
		return 1;
	}
	struct nn_cyclegan_config cfg;
	nn_cyclegan_defaults(&cfg);
	cfg.be = be, cfg.height = cfg.width = a->size, cfg.batch = a->batch;
	struct error err;
	int rc = 1;
	if (nn_cyclegan_init(c, &cfg, &err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		goto out;
	}
	if (cg_fill(be, c->real[0], c->img[0], 1) < 0 || cg_fill(be, c->real[1], c->img[1], 2) < 0)
		goto out;
	if (a->out) { /* one step, for bench/cuda_torch.py --check-cyclegan */
		rc = cg_dump(c, a) || check_device(be);
	} else {
		double dt = timed_steps(be, a, cyclegan_step, c);
		rc = check_device(be);
		if (!rc)
			printf("cairn %s %s cyclegan-step (2 x cyclegan:base=64,blocks=9 + 2 x "
			       "patchgan) "
			       "batch %d 3x%dx%d: %.3f ms/step, %.1f images/s (cycle L1 %.4f)\n",
			       be->name, a->precision, a->batch, a->size, a->size, dt * 1e3,
			       a->batch / dt, (double)c->loss[NN_CG_LOSS_CYCLE_A]);
	}
out:
	nn_cyclegan_release(c);
	mem_free(c);
	return rc;
}

/* ---- dump: one pass of a model spec, for PyTorch's mirror ----------------
 * Files in a->out (floats in native byte order): meta.txt (the canonical
 * arch, the precision, the batch, the input and output shapes, then one line
 * per trainable parameter: name, shape n c h w, and 1 when weight decay
 * applies, in the order of the other files), in.bin, params.bin, out.bin,
 * dy.bin (the output gradient given: fixed pseudo-random values over the
 * output's size divided by the batch, so that the loss is sum(out dy)),
 * grads.bin (the parameters' gradients), dx.bin (the input's gradient),
 * stats.bin (batch norm's running statistics after the pass, as they are
 * ordered among the parameters: each norm's means, then its variances),
 * masks.bin (one byte per value of every ReLU or LeakyReLU output in node
 * order: 1 where it is positive), the losses on the output (dump_losses),
 * optimizer steps from the weights with the gradients (dump_optim) and a
 * pass in evaluation mode (dump_eval). Training
 * mode: batch norm uses the batch's statistics. The masks let the mirror
 * take the same side of every kink: a pre-activation within rounding of 0
 * may come out positive here and negative there, and that one value's
 * gradient, let through or not, then moves every gradient below it by far
 * more than rounding. */

/* n values of `size` bytes at x, written as name. */
static int dump_write(const char *dir, const char *name, const void *x, size_t size, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(x, size, n, f) == n;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok)
		fprintf(stderr, "cuda_step: cannot write %s\n", path);
	return ok ? 0 : -1;
}

/* n floats of backend memory d, written as name. */
static int dump_tensor(const struct nn_backend *be, const char *dir, const char *name,
		       const float *d, size_t n)
{
	float *h = mem_alloc(n * sizeof(float));
	if (!h) {
		fprintf(stderr, "cuda_step: out of memory for %zu floats\n", n);
		return -1;
	}
	be->download(h, d, n * sizeof(float));
	int rc = dump_write(dir, name, h, sizeof(float), n);
	mem_free(h);
	return rc;
}

/* The trainable parameters' values (what 0) or gradients (1), or the
 * statistics' values (what 2: batch norm's running means and variances), one
 * file, in the order of the net's parameters. */
static int dump_params(struct nn_net *net, const char *dir, const char *name, int what)
{
	size_t total = 0;
	for (int i = 0; i < net->nparams; i++)
		if (net->params[i].trainable == (what < 2))
			total += nn_tensor_count(&net->params[i].w);
	float *h = mem_alloc((total ? total : 1) * sizeof(float)), *at = h;
	if (!h) {
		fprintf(stderr, "cuda_step: out of memory for %zu floats\n", total);
		return -1;
	}
	for (int i = 0; i < net->nparams; i++) {
		const struct nn_param *p = &net->params[i];
		if (p->trainable != (what < 2))
			continue;
		size_t n = nn_tensor_count(&p->w);
		net->be->download(at, what == 1 ? p->g.data : p->w.data, n * sizeof(float));
		at += n;
	}
	int rc = dump_write(dir, name, h, sizeof(float), total);
	mem_free(h);
	return rc;
}

/* The ReLU or LeakyReLU outputs of net, every such node in order, as bytes:
 * 1 where positive. */
static int masks_write(struct nn_net *net, FILE *f)
{
	int ok = 1;
	for (int i = 1; ok && i < net->nnodes; i++) {
		const struct nn_node *nd = &net->nodes[i];
		if (nd->op != NN_OP_ACT || (nd->act != NN_ACT_RELU && nd->act != NN_ACT_LEAKY))
			continue;
		size_t n = (size_t)net->n * nd->c * nd->h * nd->w;
		float *h = mem_alloc(n * sizeof(float));
		if (!h) {
			ok = 0;
			break;
		}
		net->be->download(h, nd->y.data, n * sizeof(float));
		unsigned char *m = (unsigned char *)h; /* in place: byte i after float i is read */
		for (size_t k = 0; k < n; k++)
			m[k] = h[k] > 0;
		ok = fwrite(m, 1, n, f) == n;
		mem_free(h);
	}
	return ok ? 0 : -1;
}

/* 1 where a ReLU or LeakyReLU output is positive, every such node of each
 * of the k nets in order. */
static int dump_masks(struct nn_net *const *nets, int k, const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	int ok = f != NULL;
	for (int j = 0; ok && j < k; j++)
		ok = masks_write(nets[j], f) == 0;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok)
		fprintf(stderr, "cuda_step: cannot write %s\n", path);
	return ok ? 0 : -1;
}

/* The four losses on the net's output, for the mirror to recompute with
 * PyTorch's (F.cross_entropy with class weights and an ignored label,
 * F.binary_cross_entropy_with_logits with per-element weights, F.l1_loss,
 * F.mse_loss): labels.bin (int32, one per sample and pixel, every fifth -1),
 * cw.bin (class weights), t.bin (targets in [0, 1)), w.bin (per-element
 * weights), losses.txt (one "name value" line each), and each loss's
 * gradient with respect to the output (dxent.bin; dbce.bin, dl1.bin, dmse.bin). */
static int dump_losses(const struct nn_backend *be, const char *dir, const struct nn_tensor *y,
		       int n)
{
	int hw = y->h * y->w, c = y->c;
	size_t nl = (size_t)n * hw, nout = nl * c;
	int32_t *labels = mem_alloc(nl * sizeof(int32_t)), *dl = be->alloc(nl * sizeof(int32_t));
	float *cw = mem_alloc(c * sizeof(float)), *dcw = be->alloc(c * sizeof(float));
	float *t = dev_buffer(be, nout, 11, NAN), *w = dev_buffer(be, nout, 13, NAN);
	float *g = be->alloc(nout * sizeof(float));
	int rc = -1;
	if (!labels || !dl || !cw || !dcw || !t || !w || !g) {
		fprintf(stderr, "cuda_step: out of memory for the losses\n");
		goto out;
	}
	for (size_t i = 0; i < nl; i++)
		labels[i] = i % 5 == 4 ? -1 : (int32_t)((i * 7 + 3) % (size_t)c);
	for (int k = 0; k < c; k++)
		cw[k] = 0.5f + (float)k / (float)c;
	be->upload(dl, labels, nl * sizeof(int32_t));
	be->upload(dcw, cw, c * sizeof(float));
	be->fill(g, nout, 0.5f);
	be->add(t, g, t, nout); /* fill values are in [-0.5, 0.5): targets in [0, 1) */
	be->fill(g, nout, 1.0f);
	be->add(w, g, w, nout); /* weights in [0.5, 1.5) */
	if (dump_write(dir, "labels.bin", labels, sizeof(int32_t), nl) ||
	    dump_write(dir, "cw.bin", cw, sizeof(float), c) || dump_tensor(be, dir, "t.bin", t, nout) ||
	    dump_tensor(be, dir, "w.bin", w, nout))
		goto out;
	char path[4096];
	snprintf(path, sizeof(path), "%s/losses.txt", dir);
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "cuda_step: cannot write %s\n", path);
		goto out;
	}
	float loss;
	int ok = 1;
	if (c >= 2) {
		be->softmax_xent(n, c, hw, y->data, dl, dcw, g, &loss);
		fprintf(f, "xent %.9g\n", (double)loss);
		ok = !dump_tensor(be, dir, "dxent.bin", g, nout);
	}
	be->bce_logits(nout, y->data, t, w, g, &loss);
	fprintf(f, "bce %.9g\n", (double)loss);
	ok = ok && !dump_tensor(be, dir, "dbce.bin", g, nout);
	be->l1(nout, y->data, t, g, &loss);
	fprintf(f, "l1 %.9g\n", (double)loss);
	ok = ok && !dump_tensor(be, dir, "dl1.bin", g, nout);
	be->mse(nout, y->data, t, g, &loss);
	fprintf(f, "mse %.9g\n", (double)loss);
	ok = ok && !dump_tensor(be, dir, "dmse.bin", g, nout);
	if (fclose(f) != 0 || !ok)
		fprintf(stderr, "cuda_step: cannot write the losses in %s\n", dir);
	else
		rc = 0;
out:
	mem_free(labels), mem_free(cw);
	be->free(dl), be->free(dcw), be->free(t), be->free(w), be->free(g);
	return rc;
}

/* The optimizers on the gradients of the pass: from the dumped weights, each
 * configuration below takes OPT_STEPS steps of nn_optim_step with the same
 * gradients (cosine schedule with warmup), for the mirror to repeat with
 * torch.optim: opt-NAME.bin (the weights after them, as params.bin),
 * optim.txt (per configuration: name, kind, momentum, nesterov, weight decay,
 * decoupled, then the learning rate of each step). Weight decay applies to
 * the parameters meta.txt marks (conv and linear weights). */
#define OPT_STEPS 5

static int dump_optim(struct nn_net *net, const char *dir)
{
	static const struct {
		const char *name;
		enum nn_optim_kind kind;
		float lr, momentum, wd;
		int nesterov, decoupled;
	} cfg[] = {{"sgd", NN_OPT_SGD, 0.05f, 0.9f, 1e-2f, 0, 0},
		   {"nesterov", NN_OPT_SGD, 0.05f, 0.9f, 1e-2f, 1, 0},
		   {"adam", NN_OPT_ADAM, 1e-3f, 0, 1e-2f, 0, 0},
		   {"adamw", NN_OPT_ADAM, 1e-3f, 0, 1e-2f, 0, 1}};
	const struct nn_backend *be = net->be;
	struct nn_flat *f = &net->flat;
	float *w0 = mem_alloc(f->n * sizeof(float));
	char path[4096];
	snprintf(path, sizeof(path), "%s/optim.txt", dir);
	FILE *txt = w0 ? fopen(path, "w") : NULL;
	int rc = txt ? 0 : -1;
	if (w0)
		be->download(w0, f->w, f->n * sizeof(float));
	for (size_t i = 0; !rc && i < sizeof(cfg) / sizeof(cfg[0]); i++) {
		struct nn_optim o;
		struct error err;
		nn_optim_defaults(&o);
		o.kind = cfg[i].kind, o.lr = cfg[i].lr, o.momentum = cfg[i].momentum;
		o.wd = cfg[i].wd, o.nesterov = cfg[i].nesterov, o.decoupled = cfg[i].decoupled;
		o.sched = NN_LR_COSINE, o.warmup = 2, o.total = OPT_STEPS, o.lr_min = 0;
		be->upload(f->w, w0, f->n * sizeof(float));
		if (f->m)
			be->fill(f->m, f->ntrain, 0);
		if (f->v)
			be->fill(f->v, f->ntrain, 0);
		if (nn_optim_init(&o, net, &err) < 0) {
			fprintf(stderr, "cuda_step: %s\n", err.msg);
			rc = -1;
			break;
		}
		fprintf(txt, "%s %s %g %d %g %d", cfg[i].name, o.kind == NN_OPT_SGD ? "sgd" : "adam",
			(double)o.momentum, o.nesterov, (double)o.wd, o.decoupled);
		for (long t = 0; t < OPT_STEPS; t++) {
			fprintf(txt, " %.9g", (double)nn_optim_lr(&o, t));
			nn_optim_step(&o, net);
		}
		fputc('\n', txt);
		snprintf(path, sizeof(path), "opt-%s.bin", cfg[i].name);
		rc = dump_params(net, dir, path, 0);
	}
	if (txt && fclose(txt) != 0)
		rc = -1;
	if (rc)
		fprintf(stderr, "cuda_step: cannot write the optimizer steps in %s\n", dir);
	else
		be->upload(f->w, w0, f->n * sizeof(float));
	mem_free(w0);
	return rc;
}

/* A forward pass in evaluation mode (batch norm with the running statistics
 * the training pass updated): eval.bin and its ReLU masks, eval-masks.bin. */
static int dump_eval(struct nn_net *net, const char *dir, int n)
{
	nn_net_train(net, 0);
	const struct nn_tensor *y = nn_net_forward(net, n);
	int rc = dump_tensor(net->be, dir, "eval.bin", y->data, (size_t)n * y->c * y->h * y->w) ||
		 dump_masks(&net, 1, dir, "eval-masks.bin");
	nn_net_train(net, 1);
	return rc;
}

static int dump_meta(const struct nn_net *net, const struct args *a, const struct nn_tensor *in,
		     const struct nn_tensor *y)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/meta.txt", a->out);
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "cuda_step: cannot write %s\n", path);
		return -1;
	}
	fprintf(f, "arch %s\nprecision %s\nbatch %d\ninput %d %d %d\noutput %d %d %d\n", net->arch,
		a->precision, a->batch, in->c, in->h, in->w, y->c, y->h, y->w);
	for (int i = 0; i < net->nparams; i++) {
		const struct nn_param *p = &net->params[i];
		if (p->trainable)
			fprintf(f, "param %s %d %d %d %d %d\n", p->name, p->w.n, p->w.c, p->w.h, p->w.w,
				p->decay);
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "cuda_step: cannot write %s\n", path);
		return -1;
	}
	return 0;
}

static int task_dump(const struct nn_backend *be, const struct args *a)
{
	struct error err;
	struct nn_net net;
	if (!a->out) {
		fprintf(stderr, "cuda_step: --task dump needs --out DIR\n");
		return 2;
	}
	if (nn_model_build(&net, be, a->arch, a->channels, a->size, a->size, a->classes, 1, &err) < 0 ||
	    nn_net_prepare(&net, a->batch, &err) < 0) {
		fprintf(stderr, "cuda_step: %s\n", err.msg);
		return 1;
	}
	nn_net_want_input_grad(&net, 1);
	struct nn_tensor *in = nn_net_input(&net);
	size_t nin = (size_t)a->batch * in->c * in->h * in->w;
	float *x = dev_buffer(be, nin, 0, NAN);
	if (!x)
		return 1;
	be->copy(in->data, x, nin);
	const struct nn_tensor *y = nn_net_forward(&net, a->batch);
	size_t nout = (size_t)a->batch * y->c * y->h * y->w;
	float *dy = dev_buffer(be, nout, 7, NAN);
	if (!dy)
		return 1;
	be->scale(dy, nout, 1.0f / (float)a->batch);
	be->copy(nn_net_output_grad(&net)->data, dy, nout);
	int rc = dump_tensor(be, a->out, "in.bin", x, nin) ||
		 dump_params(&net, a->out, "params.bin", 0) ||
		 dump_tensor(be, a->out, "out.bin", y->data, nout) ||
		 dump_tensor(be, a->out, "dy.bin", dy, nout) ||
		 dump_masks((struct nn_net *[]){&net}, 1, a->out, "masks.bin") ||
		 dump_params(&net, a->out, "stats.bin", 2) || dump_losses(be, a->out, y, a->batch);
	nn_net_backward(&net);
	rc = rc || dump_params(&net, a->out, "grads.bin", 1) || dump_optim(&net, a->out) ||
	     dump_eval(&net, a->out, a->batch) ||
	     dump_tensor(be, a->out, "dx.bin", nn_net_input_grad(&net)->data, nin) ||
	     dump_meta(&net, a, in, y) || check_device(be);
	if (!rc)
		printf("cairn %s dump %s batch %d %dx%dx%d: %lld parameters, written to %s\n", be->name,
		       net.arch, a->batch, a->channels, a->size, a->size, nn_net_param_count(&net),
		       a->out);
	be->free(x), be->free(dy);
	nn_net_release(&net);
	return rc ? 1 : 0;
}

/* ---- conv and gemm: cairn's slots against the bare libraries ------------- */

#ifdef CAIRN_CUDA
/* A convolution layer of a benchmark's net, as nn/net.c hands it to the
 * conv slots (a transposed convolution as the convolution whose passes it
 * runs: its input is that one's output), and how often it occurs. */
struct conv_layer {
	int cin, cout, size, k, stride, pad, count;
};
/* The 3x3 convolutions of unet:depth=4,base=16 on 3x256x256 inputs:
 * encoder, then decoder (after each concat). */
static const struct conv_layer unet_convs[] = {
    {3, 16, 256, 3, 1, 1, 1},	{16, 16, 256, 3, 1, 1, 1},  {16, 32, 128, 3, 1, 1, 1},
    {32, 32, 128, 3, 1, 1, 1},	{32, 64, 64, 3, 1, 1, 1},   {64, 64, 64, 3, 1, 1, 1},
    {64, 128, 32, 3, 1, 1, 1},	{128, 128, 32, 3, 1, 1, 1}, {128, 256, 16, 3, 1, 1, 1},
    {256, 256, 16, 3, 1, 1, 1}, {256, 128, 32, 3, 1, 1, 1}, {128, 64, 64, 3, 1, 1, 1},
    {64, 32, 128, 3, 1, 1, 1},	{32, 16, 256, 3, 1, 1, 1},
};
/* The convolutions of the CycleGAN step's modules at 256x256 (nn/model.c
 * build_cyclegan with base 64, 9 blocks, 2 down; build_patchgan with base
 * 64, 3 layers), each counted as often as one generator and one
 * discriminator have it (a step runs each module's forward and backward six
 * times: three uses of each of two). */
static const struct conv_layer cyclegan_convs[] = {
    {3, 64, 256, 7, 1, 3, 1},	 /* generator: c7s1-64 */
    {64, 128, 256, 3, 2, 1, 1},	 /* d128 */
    {128, 256, 128, 3, 2, 1, 1}, /* d256 */
    {256, 256, 64, 3, 1, 1, 18}, /* 9 residual blocks */
    {128, 256, 128, 4, 2, 1, 1}, /* u128: 4x4 stride-2 deconv 256 -> 128, 64 -> 128 px */
    {64, 128, 256, 4, 2, 1, 1},	 /* u64: 128 -> 64, 128 -> 256 px */
    {64, 3, 256, 7, 1, 3, 1},	 /* c7s1-3 */
    {3, 64, 256, 4, 2, 1, 1},	 /* patchgan: C64 */
    {64, 128, 128, 4, 2, 1, 1},	 /* C128 */
    {128, 256, 64, 4, 2, 1, 1},	 /* C256 */
    {256, 512, 32, 4, 1, 1, 1},	 /* C512 */
    {512, 1, 31, 4, 1, 1, 1},	 /* the patch logits */
};

#define CHK(call)                                                                             \
	do {                                                                                  \
		if ((call) != 0) {                                                            \
			fprintf(stderr, "cuda_step: %s failed (line %d)\n", #call, __LINE__);   \
			return -1;                                                            \
		}                                                                             \
	} while (0)

/* The math of a bare call: FMA in fp32 (a result's DEFAULT math allows TF32
 * on Ampere and Hopper, which cairn's fp32 does not use either), the
 * measured one otherwise. */
static cudnnMathType_t call_math(enum nn_cuda_precision prec, cudnnMathType_t m)
{
	return prec == NN_CUDA_FP32 ? CUDNN_FMA_MATH : m;
}

/* The FFT and Winograd algorithms, which cairn's fp32 leaves out (their
 * errors near 1e-4 would break fp32's promise of the reference within
 * 1e-5; nn/cuda/conv.cu algo_allowed), for each pass. */
static bool fast_fwd(int a)
{
	return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
	       a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD ||
	       a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
static bool fast_data(int a)
{
	return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT ||
	       a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
	       a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD ||
	       a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
static bool fast_filter(int a)
{
	return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT ||
	       a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
	       a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

/* One entry of a cudnnFind* list, whichever pass (the three Perf structs
 * have the same fields). */
struct perf {
	int algo, status, math;
	float time;
	size_t memory;
};
#define MAX_SEARCHES 9
/* src[0..n) of a cudnnFind* list into dst */
#define TO_PERF(dst, src, n)                                                                       \
	for (int q_ = 0; q_ < (n); q_++) {                                                         \
		(dst)[q_].algo = (int)(src)[q_].algo, (dst)[q_].status = (int)(src)[q_].status;    \
		(dst)[q_].math = (int)(src)[q_].mathType, (dst)[q_].time = (src)[q_].time;         \
		(dst)[q_].memory = (src)[q_].memory;                                               \
	}

/* How many searches a bare pass gets: as many as cairn's plans
 * (CAIRN_CUDA_CONV_SEARCH, default 3), so that both sides choose alike. */
static int bare_searches(void)
{
	const char *env = getenv("CAIRN_CUDA_CONV_SEARCH");
	int r = env && *env ? atoi(env) : 3;
	return r < 1 ? 1 : r > MAX_SEARCHES ? MAX_SEARCHES : r;
}

/* The usable algorithm of l[0..runs) (runs searches of one pass) with the
 * smallest median time, as nn/cuda/conv.cu ranks them: a usable entry has
 * succeeded, has FMA (or default) math in fp32, and is not one of `fast`
 * when strict. -1 when none is usable. */
static int bare_pick(struct perf (*l)[16], const int *got, int runs, enum nn_cuda_precision prec,
		     bool strict, bool (*fast)(int), struct perf *out)
{
	float best = 0;
	int found = -1;
	for (int i = 0; i < got[0]; i++) {
		const struct perf *c = &l[0][i];
		if (c->status || (strict && fast(c->algo)) ||
		    (prec == NN_CUDA_FP32 && c->math != CUDNN_FMA_MATH &&
		     c->math != CUDNN_DEFAULT_MATH))
			continue;
		float t[MAX_SEARCHES];
		int n = 0;
		for (int k = 0; k < runs; k++)
			for (int j = 0; j < got[k]; j++)
				if (l[k][j].algo == c->algo && l[k][j].math == c->math &&
				    !l[k][j].status)
					t[n++] = l[k][j].time;
		for (int a = 1; a < n; a++)
			for (int b = a; b > 0 && t[b] < t[b - 1]; b--) {
				float x = t[b];
				t[b] = t[b - 1], t[b - 1] = x;
			}
		float med = n % 2 ? t[n / 2] : 0.5f * (t[n / 2 - 1] + t[n / 2]);
		if (found < 0 || med < best)
			found = i, best = med, *out = *c;
	}
	return found;
}

/* How a bare call keeps its tensors: NCHW, as cairn does; NHWC (and the
 * filter KRSC), the layout of cuDNN's tensor-core kernels; or NCHW in
 * memory and NHWC for the calls, through cudnnTransformTensor around each
 * pass (what a backend keeping NCHW would pay to use those kernels: x, w
 * and dy transposed in, y, dx and dw back; x's copy kept from the forward
 * pass for the backward-filter one). */
enum bare_layout { BARE_NCHW, BARE_NHWC, BARE_NHWC_T };

/* n values of es bytes (4: float, 2: bf16) on the device, from fill_host's
 * pattern (salt) or zero (salt 0); NULL on failure. */
static void *bare_buffer(size_t n, size_t es, unsigned salt)
{
	void *p;
	if (cudaMalloc(&p, n * es) != cudaSuccess)
		return NULL;
	if (!salt)
		return cudaMemset(p, 0, n * es) == cudaSuccess ? p : (cudaFree(p), NULL);
	float *h = mem_alloc(n * sizeof(float));
	fill_host(h, n, salt);
	if (es == 2) /* bf16: the top half of each float */
		for (size_t i = 0; i < n; i++) {
			uint32_t u;
			memcpy(&u, &h[i], 4);
			((uint16_t *)h)[i] = (uint16_t)(u >> 16);
		}
	cudaError_t st = cudaMemcpy(p, h, n * es, cudaMemcpyHostToDevice);
	mem_free(h);
	return st == cudaSuccess ? p : (cudaFree(p), NULL);
}

/* n values of es bytes on the device, as floats on the host (out). */
static int bare_read(float *out, const void *p, size_t n, size_t es)
{
	if (cudaMemcpy(out, p, n * es, cudaMemcpyDeviceToHost) != cudaSuccess)
		return -1;
	if (es == 2) /* widen in place, from the back */
		for (size_t i = n; i-- > 0;) {
			uint32_t u = (uint32_t)((uint16_t *)out)[i] << 16;
			memcpy(&out[i], &u, 4);
		}
	return 0;
}

/* Seconds of one forward + backward-data + backward-filter through bare
 * cuDNN calls: the fastest algorithm cudnnFind* measures for each pass (FMA
 * math in fp32, any math in tf32 and bf16), bf16 tensors in bf16; in fp32
 * without FFT and Winograd when same_algos (the algorithms cairn's fp32
 * allows: what its layers cost beside the bare calls), with them otherwise
 * (what that choice costs); tensors in the given layout. x, w and dy hold
 * fixed pseudo-random values; out (NULL: not wanted) gets y, dx and dw in
 * NCHW order, one after the other, so that layouts can be compared. */
static double bare_conv(const struct nn_conv_desc *d, enum nn_cuda_precision prec, int iters,
			bool same_algos, enum bare_layout layout, float *out)
{
	bool strict = same_algos && prec == NN_CUDA_FP32;
	static cudnnHandle_t h;
	if (!h && cudnnCreate(&h) != CUDNN_STATUS_SUCCESS)
		return -1;
	cudnnDataType_t t = prec == NN_CUDA_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
	cudnnTensorFormat_t fmt = layout == BARE_NCHW ? CUDNN_TENSOR_NCHW : CUDNN_TENSOR_NHWC;
	size_t es = prec == NN_CUDA_BF16 ? 2 : 4;
	size_t nx = (size_t)d->n * d->cin * d->h * d->w, ny = (size_t)d->n * d->cout * d->hout * d->wout;
	size_t nw = (size_t)d->cout * d->cin * d->kh * d->kw;
	/* xd, yd, wd: the calls' descriptors (in fmt); xn, yn, wtn: NCHW views
	   of the same shapes, and wt the filter as a tensor in fmt, the two
	   sides of the transposes */
	cudnnTensorDescriptor_t xd, yd, xn, yn, wt, wtn;
	cudnnFilterDescriptor_t wd;
	cudnnConvolutionDescriptor_t cd;
	CHK(cudnnCreateTensorDescriptor(&xd));
	CHK(cudnnCreateTensorDescriptor(&yd));
	CHK(cudnnCreateTensorDescriptor(&xn));
	CHK(cudnnCreateTensorDescriptor(&yn));
	CHK(cudnnCreateTensorDescriptor(&wt));
	CHK(cudnnCreateTensorDescriptor(&wtn));
	CHK(cudnnCreateFilterDescriptor(&wd));
	CHK(cudnnCreateConvolutionDescriptor(&cd));
	CHK(cudnnSetTensor4dDescriptor(xd, fmt, t, d->n, d->cin, d->h, d->w));
	CHK(cudnnSetTensor4dDescriptor(yd, fmt, t, d->n, d->cout, d->hout, d->wout));
	CHK(cudnnSetTensor4dDescriptor(xn, CUDNN_TENSOR_NCHW, t, d->n, d->cin, d->h, d->w));
	CHK(cudnnSetTensor4dDescriptor(yn, CUDNN_TENSOR_NCHW, t, d->n, d->cout, d->hout, d->wout));
	CHK(cudnnSetTensor4dDescriptor(wt, fmt, t, d->cout, d->cin, d->kh, d->kw));
	CHK(cudnnSetTensor4dDescriptor(wtn, CUDNN_TENSOR_NCHW, t, d->cout, d->cin, d->kh, d->kw));
	CHK(cudnnSetFilter4dDescriptor(wd, t, fmt, d->cout, d->cin, d->kh, d->kw));
	CHK(cudnnSetConvolution2dDescriptor(cd, d->pad, d->pad, d->stride, d->stride, 1, 1,
					    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
	/* cairn's base math types (nn/cuda/conv.cu make_plan): bf16 tensor-core kernels
	   are searched only under TENSOR_OP */
	CHK(cudnnSetConvolutionMathType(cd, prec == NN_CUDA_FP32   ? CUDNN_FMA_MATH
					    : prec == NN_CUDA_BF16 ? CUDNN_TENSOR_OP_MATH
								   : CUDNN_DEFAULT_MATH));
	/* the NCHW tensors; x, w and dy with values */
	void *x = bare_buffer(nx, es, 1), *dx = bare_buffer(nx, es, 0), *y = bare_buffer(ny, es, 0);
	void *dy = bare_buffer(ny, es, 3), *w = bare_buffer(nw, es, 2),
	     *dw = bare_buffer(nw, es, 0);
	/* the calls' tensors: the same in NCHW, NHWC copies otherwise */
	bool nhwc = layout != BARE_NCHW, tr = layout == BARE_NHWC_T;
	void *xh = nhwc ? bare_buffer(nx, es, 0) : x, *dxh = nhwc ? bare_buffer(nx, es, 0) : dx;
	void *yh = nhwc ? bare_buffer(ny, es, 0) : y, *dyh = nhwc ? bare_buffer(ny, es, 0) : dy;
	void *wh = nhwc ? bare_buffer(nw, es, 0) : w, *dwh = nhwc ? bare_buffer(nw, es, 0) : dw;
	void *ws = NULL;
	if (!x || !dx || !y || !dy || !w || !dw || !xh || !dxh || !yh || !dyh || !wh || !dwh)
		return -1;
	const float one = 1, zero = 0;
	if (nhwc) { /* NHWC storage: the inputs are there before the clock starts */
		CHK(cudnnTransformTensor(h, &one, xn, x, &zero, xd, xh));
		CHK(cudnnTransformTensor(h, &one, wtn, w, &zero, wt, wh));
		CHK(cudnnTransformTensor(h, &one, yn, dy, &zero, yd, dyh));
	}
	int runs = bare_searches(), got[MAX_SEARCHES];
	struct perf l[MAX_SEARCHES][16], f, b, fw;
	cudnnConvolutionFwdAlgoPerf_t fr[16];
	cudnnConvolutionBwdDataAlgoPerf_t br[16];
	cudnnConvolutionBwdFilterAlgoPerf_t wr[16];
	for (int k = 0; k < runs; k++) {
		CHK(cudnnFindConvolutionForwardAlgorithm(h, xd, wd, cd, yd, 16, &got[k], fr));
		TO_PERF(l[k], fr, got[k]);
	}
	if (bare_pick(l, got, runs, prec, strict, fast_fwd, &f) < 0)
		return -1;
	for (int k = 0; k < runs; k++) {
		CHK(cudnnFindConvolutionBackwardDataAlgorithm(h, wd, yd, cd, xd, 16, &got[k], br));
		TO_PERF(l[k], br, got[k]);
	}
	if (bare_pick(l, got, runs, prec, strict, fast_data, &b) < 0)
		return -1;
	for (int k = 0; k < runs; k++) {
		CHK(cudnnFindConvolutionBackwardFilterAlgorithm(h, xd, yd, cd, wd, 16, &got[k],
								wr));
		TO_PERF(l[k], wr, got[k]);
	}
	if (bare_pick(l, got, runs, prec, strict, fast_filter, &fw) < 0)
		return -1;
	size_t wsb = f.memory > b.memory ? f.memory : b.memory;
	wsb = fw.memory > wsb ? fw.memory : wsb;
	if (wsb)
		CHK(cudaMalloc(&ws, wsb));
	double t0 = 0;
	for (int it = -3; it < iters; it++) {
		if (it == 0) {
			CHK(cudaDeviceSynchronize());
			t0 = clock_now();
		}
		if (tr) {
			CHK(cudnnTransformTensor(h, &one, xn, x, &zero, xd, xh));
			CHK(cudnnTransformTensor(h, &one, wtn, w, &zero, wt, wh));
		}
		CHK(cudnnSetConvolutionMathType(cd, call_math(prec, f.math)));
		CHK(cudnnConvolutionForward(h, &one, xd, xh, wd, wh, cd,
					    (cudnnConvolutionFwdAlgo_t)f.algo, ws, wsb, &zero, yd,
					    yh));
		if (tr) {
			CHK(cudnnTransformTensor(h, &one, yd, yh, &zero, yn, y));
			CHK(cudnnTransformTensor(h, &one, yn, dy, &zero, yd, dyh));
		}
		CHK(cudnnSetConvolutionMathType(cd, call_math(prec, b.math)));
		CHK(cudnnConvolutionBackwardData(h, &one, wd, wh, yd, dyh, cd,
						 (cudnnConvolutionBwdDataAlgo_t)b.algo, ws, wsb,
						 &zero, xd, dxh));
		CHK(cudnnSetConvolutionMathType(cd, call_math(prec, fw.math)));
		CHK(cudnnConvolutionBackwardFilter(h, &one, xd, xh, yd, dyh, cd,
						   (cudnnConvolutionBwdFilterAlgo_t)fw.algo, ws,
						   wsb, &zero, wd, dwh));
		if (tr) {
			CHK(cudnnTransformTensor(h, &one, xd, dxh, &zero, xn, dx));
			CHK(cudnnTransformTensor(h, &one, wt, dwh, &zero, wtn, dw));
		}
	}
	CHK(cudaDeviceSynchronize());
	double dt = (clock_now() - t0) / iters;
	if (nhwc && !tr) { /* the results back in NCHW, for out */
		CHK(cudnnTransformTensor(h, &one, yd, yh, &zero, yn, y));
		CHK(cudnnTransformTensor(h, &one, xd, dxh, &zero, xn, dx));
		CHK(cudnnTransformTensor(h, &one, wt, dwh, &zero, wtn, dw));
	}
	if (out && (bare_read(out, y, ny, es) < 0 || bare_read(out + ny, dx, nx, es) < 0 ||
		    bare_read(out + ny + nx, dw, nw, es) < 0))
		return -1;
	cudaFree(x), cudaFree(dx), cudaFree(y), cudaFree(dy), cudaFree(w), cudaFree(dw), cudaFree(ws);
	if (nhwc)
		cudaFree(xh), cudaFree(dxh), cudaFree(yh), cudaFree(dyh), cudaFree(wh),
		    cudaFree(dwh);
	cudnnDestroyTensorDescriptor(xd), cudnnDestroyTensorDescriptor(yd);
	cudnnDestroyTensorDescriptor(xn), cudnnDestroyTensorDescriptor(yn);
	cudnnDestroyTensorDescriptor(wt), cudnnDestroyTensorDescriptor(wtn);
	cudnnDestroyFilterDescriptor(wd), cudnnDestroyConvolutionDescriptor(cd);
	return dt;
}

/* Seconds of one forward + backward-data + backward-filter through cairn's
 * slots (plan cache, shared workspace, bf16 casts in BF16). */
static double cairn_conv(const struct nn_backend *be, const struct nn_conv_desc *d, int iters)
{
	size_t nx = (size_t)d->n * d->cin * d->h * d->w, ny = (size_t)d->n * d->cout * d->hout * d->wout;
	size_t nw = (size_t)d->cout * d->cin * d->kh * d->kw;
	float *x = dev_buffer(be, nx, 1, 0), *dx = dev_buffer(be, nx, 1, 0);
	float *y = dev_buffer(be, ny, 1, 0), *dy = dev_buffer(be, ny, 1, 0);
	float *w = dev_buffer(be, nw, 1, 0), *dw = dev_buffer(be, nw, 1, 0);
	size_t wsb = be->conv2d_workspace(d);
	void *ws = wsb ? be->alloc(wsb) : NULL;
	if (!x || !dx || !y || !dy || !w || !dw || (wsb && !ws))
		return -1;
	double t0 = 0;
	for (int it = -3; it < iters; it++) {
		if (it == 0) {
			be->sync();
			t0 = clock_now();
		}
		be->conv2d_fwd(d, x, w, NULL, y, ws);
		be->conv2d_bwd_data(d, dy, w, dx, ws);
		be->conv2d_bwd_filter(d, x, dy, dw, NULL, ws);
	}
	be->sync();
	double dt = (clock_now() - t0) / iters;
	be->free(x), be->free(dx), be->free(y), be->free(dy), be->free(w), be->free(dw);
	if (ws)
		be->free(ws);
	return dt;
}

static struct nn_conv_desc layer_desc(const struct conv_layer *l, int batch)
{
	struct nn_conv_desc d = {.n = batch,
				 .cin = l->cin,
				 .h = l->size,
				 .w = l->size,
				 .cout = l->cout,
				 .kh = l->k,
				 .kw = l->k,
				 .stride = l->stride,
				 .pad = l->pad,
				 .dil = 1,
				 .groups = 1};
	struct error err;
	nn_conv_desc_init(&d, &err); /* the tables' shapes are valid */
	return d;
}

/* The U-Net's 3x3 layers: cairn's conv slots against the bare calls (the
 * goal: under 5% lost). */
static int task_conv_unet(const struct nn_backend *be, const struct args *a,
			  enum nn_cuda_precision prec)
{
	double cairn_sum = 0, bare_sum = 0, any_sum = 0;
	bool fp32 = prec == NN_CUDA_FP32;
	for (size_t k = 0; k < sizeof(unet_convs) / sizeof(unet_convs[0]); k++) {
		const struct conv_layer *l = &unet_convs[k];
		struct nn_conv_desc d = layer_desc(l, a->batch);
		double flop = 3 * 2 * nn_conv_macs(&d);
		double tc = cairn_conv(be, &d, a->steps);
		double tb = bare_conv(&d, prec, a->steps, true, BARE_NCHW, NULL);
		double ta = fp32 ? bare_conv(&d, prec, a->steps, false, BARE_NCHW, NULL) : tb;
		if (tc < 0 || tb < 0 || ta < 0 || check_device(be)) {
			fprintf(stderr, "cuda_step: conv %d->%d at %d failed\n", d.cin, d.cout, d.h);
			return 1;
		}
		cairn_sum += tc, bare_sum += tb, any_sum += ta;
		char any[80] = "";
		if (fp32)
			snprintf(any, sizeof(any), " (with FFT and Winograd %.3f ms)", ta * 1e3);
		printf("conv %s 3x3 %d->%d %dx%d batch %d fwd+bwd: cairn %.3f ms %.1f TFLOP/s, "
		       "bare cuDNN %.3f ms %.1f TFLOP/s%s, cairn/bare time %.3f\n",
		       a->precision, d.cin, d.cout, d.h, d.w, d.n, tc * 1e3, flop / tc / 1e12,
		       tb * 1e3, flop / tb / 1e12, any, tc / tb);
	}
	char any[80] = "";
	if (fp32)
		snprintf(any, sizeof(any), " (with FFT and Winograd %.3f ms)", any_sum * 1e3);
	printf(
	    "conv %s U-Net 3x3 layers, all: cairn %.3f ms, bare cuDNN %.3f ms%s, cairn/bare time "
	    "%.3f\n",
	    a->precision, cairn_sum * 1e3, bare_sum * 1e3, any, cairn_sum / bare_sum);
	return 0;
}

/* The largest difference between a and b (n values), relative to the
 * largest magnitude in a. */
static double rel_diff(const float *a, const float *b, size_t n)
{
	double big = 0, diff = 0;
	for (size_t i = 0; i < n; i++) {
		big = fabs(a[i]) > big ? fabs(a[i]) : big;
		double e = fabs((double)a[i] - b[i]);
		diff = e > diff || e != e ? e : diff;
	}
	return big > 0 ? diff / big : diff;
}

/* The CycleGAN's layers in the three layouts of bare calls (bare_layout),
 * beside cairn's slots: what NHWC storage, or transposes around each
 * convolution, would gain over NCHW; the NHWC results (y, dx, dw) against
 * the NCHW ones. --size scales the layers' images (256: the benchmark's).
 * Lines begin with "layout", not "conv": a question to answer, not a goal
 * (bench/cuda_goals.py). */
static int task_conv_cyclegan(const struct nn_backend *be, const struct args *a,
			      enum nn_cuda_precision prec)
{
	double sum[4] = {0}, worst = 0;
	/* tf32 and bf16 round differently in different algorithms */
	double tol = prec == NN_CUDA_FP32 ? 1e-4 : prec == NN_CUDA_TF32 ? 1e-2 : 5e-2;
	for (size_t k = 0; k < sizeof(cyclegan_convs) / sizeof(cyclegan_convs[0]); k++) {
		struct conv_layer l = cyclegan_convs[k];
		l.size = l.size * a->size / 256;
		struct nn_conv_desc d = layer_desc(&l, a->batch);
		if (d.hout < 1 || d.wout < 1)
			continue; /* a --size too small for the patchgan's last layers */
		size_t nv = (size_t)d.n * (d.cout * d.hout * d.wout + d.cin * d.h * d.w) +
			    (size_t)d.cout * d.cin * d.kh * d.kw;
		float *r[3] = {mem_alloc(nv * sizeof(float)), mem_alloc(nv * sizeof(float)),
			       mem_alloc(nv * sizeof(float))};
		double t[4] = {cairn_conv(be, &d, a->steps),
			       bare_conv(&d, prec, a->steps, true, BARE_NCHW, r[0]),
			       bare_conv(&d, prec, a->steps, true, BARE_NHWC, r[1]),
			       bare_conv(&d, prec, a->steps, true, BARE_NHWC_T, r[2])};
		double e1 = t[2] >= 0 ? rel_diff(r[0], r[1], nv) : 0;
		double e2 = t[3] >= 0 ? rel_diff(r[0], r[2], nv) : 0;
		mem_free(r[0]), mem_free(r[1]), mem_free(r[2]);
		if (t[0] < 0 || t[1] < 0 || check_device(be)) {
			fprintf(stderr, "cuda_step: conv %d->%d k%d at %d failed\n", d.cin, d.cout,
				d.kh, d.h);
			return 1;
		}
		if (t[2] < 0 || t[3] < 0) { /* NHWC refused: say so, and leave the layer out of
					       the sums, so that they compare the same layers */
			printf("layout %s k%d s%d %d->%d %dx%d: a bare NHWC call failed (above); "
			       "left out of the sums\n",
			       a->precision, d.kh, d.stride, d.cin, d.cout, d.h, d.w);
			continue;
		}
		for (int i = 0; i < 4; i++)
			sum[i] += l.count * t[i];
		worst = e1 > worst || e1 != e1 ? e1 : worst;
		worst = e2 > worst || e2 != e2 ? e2 : worst;
		printf(
		    "layout %s k%d s%d %d->%d %dx%d batch %d fwd+bwd (x%d): cairn %.3f ms, "
		    "bare NCHW %.3f ms, NHWC %.3f ms (%.3f), NHWC with transposes %.3f ms (%.3f); "
		    "NHWC results differ by %.1e, %.1e\n",
		    a->precision, d.kh, d.stride, d.cin, d.cout, d.h, d.w, d.n, l.count, t[0] * 1e3,
		    t[1] * 1e3, t[2] * 1e3, t[2] / t[1], t[3] * 1e3, t[3] / t[1], e1, e2);
	}
	printf("layout %s CycleGAN layers (a generator and a discriminator), all: cairn %.3f ms, "
	       "bare NCHW %.3f ms, NHWC %.3f ms (%.3f), NHWC with transposes %.3f ms (%.3f)\n",
	       a->precision, sum[0] * 1e3, sum[1] * 1e3, sum[2] * 1e3, sum[2] / sum[1],
	       sum[3] * 1e3, sum[3] / sum[1]);
	if (!(worst <= tol)) {
		printf("layout %s: NHWC results differ from NCHW by %.1e (over %.0e)\n",
		       a->precision, worst, tol);
		return 1;
	}
	printf("layout %s: NHWC results agree with NCHW within %.1e\n", a->precision, worst);
	return 0;
}

static int task_conv(const struct nn_backend *be, const struct args *a, enum nn_cuda_precision prec)
{
	if (!strcmp(a->shapes, "unet"))
		return task_conv_unet(be, a, prec);
	if (!strcmp(a->shapes, "cyclegan"))
		return task_conv_cyclegan(be, a, prec);
	fprintf(stderr, "cuda_step: --shapes '%s' unknown (unet, cyclegan)\n", a->shapes);
	return 2;
}

/* sgemm m = n = k = size: cairn's slot, then bare cublasSgemm (pedantic math
 * in fp32, TF32 tensor ops in tf32; in bf16 cairn casts, bare is cublasGemmEx
 * on bf16 operands). */
static int task_gemm(const struct nn_backend *be, const struct args *a, enum nn_cuda_precision prec)
{
	int s = a->size;
	size_t n = (size_t)s * s;
	float *x = dev_buffer(be, n, 1, NAN), *y = dev_buffer(be, n, 2, NAN), *z = dev_buffer(be, n, 3, 0);
	if (!x || !y || !z)
		return 1;
	double flop = 2.0 * s * s * s, t0 = 0;
	for (int it = -2; it < a->steps; it++) {
		if (it == 0) {
			be->sync();
			t0 = clock_now();
		}
		be->gemm(0, 0, s, s, s, 1, x, s, y, s, 0, z, s);
	}
	be->sync();
	double tc = (clock_now() - t0) / a->steps;
	cublasHandle_t h;
	void *xb = NULL, *yb = NULL;
	CHK(cublasCreate(&h));
	CHK(cublasSetMathMode(h, prec == NN_CUDA_FP32 ? CUBLAS_PEDANTIC_MATH
			      : prec == NN_CUDA_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH
						     : CUBLAS_DEFAULT_MATH));
	if (prec == NN_CUDA_BF16) {
		CHK(cudaMalloc(&xb, n * 2));
		CHK(cudaMalloc(&yb, n * 2));
		CHK(cudaMemset(xb, 0, n * 2));
		CHK(cudaMemset(yb, 0, n * 2));
	}
	const float one = 1, zero = 0;
	for (int it = -2; it < a->steps; it++) {
		if (it == 0) {
			CHK(cudaDeviceSynchronize());
			t0 = clock_now();
		}
		if (prec == NN_CUDA_BF16)
			CHK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, s, s, s, &one, yb, CUDA_R_16BF, s, xb,
					 CUDA_R_16BF, s, &zero, z, CUDA_R_32F, s, CUBLAS_COMPUTE_32F,
					 CUBLAS_GEMM_DEFAULT));
		else
			CHK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, s, s, s, &one, y, s, x, s, &zero, z, s));
	}
	CHK(cudaDeviceSynchronize());
	double tb = (clock_now() - t0) / a->steps;
	cublasDestroy(h);
	cudaFree(xb), cudaFree(yb);
	if (check_device(be))
		return 1;
	printf("gemm %s %d^3: cairn %.3f ms %.1f TFLOP/s, bare cuBLAS %.3f ms %.1f TFLOP/s, "
	       "cairn/bare time %.3f\n",
	       a->precision, s, tc * 1e3, flop / tc / 1e12, tb * 1e3, flop / tb / 1e12, tc / tb);
	be->free(x), be->free(y), be->free(z);
	return 0;
}
#endif

int main(int argc, char **argv)
{
	nn_cpu_blas_check(argv);
	struct args a = {.device = "cpu",
			 .arch = NN_MODEL_DEFAULT,
			 .precision = "tf32",
			 .task = "step",
			 .shapes = "unet",
			 .batch = 128,
			 .channels = 1,
			 .size = 28,
			 .classes = 10,
			 .steps = 50,
			 .warmup = 5};
	static const struct option opts[] = {
	    {"device", required_argument, 0, 'd'},   {"precision", required_argument, 0, 'p'},
	    {"arch", required_argument, 0, 'a'},     {"batch", required_argument, 0, 'b'},
	    {"channels", required_argument, 0, 'c'}, {"size", required_argument, 0, 's'},
	    {"classes", required_argument, 0, 'k'},  {"steps", required_argument, 0, 'n'},
	    {"warmup", required_argument, 0, 'w'},   {"task", required_argument, 0, 't'},
	    {"out", required_argument, 0, 'o'},	     {"shapes", required_argument, 0, 'S'},
	    {"help", no_argument, 0, 'h'},	     {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'd': a.device = optarg; break;
		case 'p': a.precision = optarg; break;
		case 'a': a.arch = optarg; break;
		case 'b': a.batch = atoi(optarg); break;
		case 'c': a.channels = atoi(optarg); break;
		case 's': a.size = atoi(optarg); break;
		case 'k': a.classes = atoi(optarg); break;
		case 'n': a.steps = atoi(optarg); break;
		case 'w': a.warmup = atoi(optarg); break;
		case 't': a.task = optarg; break;
		case 'o': a.out = optarg; break;
		case 'S':
			a.shapes = optarg;
			break;
		case 'h': return usage(argv[0], 0);
		default: return usage(argv[0], 2);
		}
	}
	if (a.batch < 1 || a.channels < 1 || a.size < 1 || a.classes < 2 || a.steps < 1 ||
	    a.warmup < 0)
		return usage(argv[0], 2);
	struct error berr;
	const struct nn_backend *be = nn_backend_by_name(a.device, &berr);
	if (!be) {
		fprintf(stderr, "cuda_step: %s\n", berr.msg);
		return 2;
	}
#ifdef CAIRN_CUDA
	enum nn_cuda_precision prec = NN_CUDA_FP32;
	if (be->device == NN_DEV_CUDA) {
		struct error err;
		if (nn_cuda_parse_precision(a.precision, &prec, &err) < 0 ||
		    nn_cuda_set_precision(prec, &err) < 0) {
			fprintf(stderr, "cuda_step: %s\n", err.msg);
			return 2;
		}
	}
#endif
	if (be->device == NN_DEV_CPU)
		a.precision = "fp32";
	if (!strcmp(a.task, "step"))
		return task_step(be, &a);
	if (!strcmp(a.task, "cyclegan"))
		return task_cyclegan(be, &a);
	if (!strcmp(a.task, "dump"))
		return task_dump(be, &a);
#ifdef CAIRN_CUDA
	if (be->device == NN_DEV_CUDA && !strcmp(a.task, "conv"))
		return task_conv(be, &a, prec);
	if (be->device == NN_DEV_CUDA && !strcmp(a.task, "gemm"))
		return task_gemm(be, &a, prec);
#endif
	fprintf(stderr, "cuda_step: task '%s' unknown (step, cyclegan, dump; conv, gemm on cuda)\n", a.task);
	return 2;
}
