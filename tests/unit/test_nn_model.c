/* Unit tests for nn/model (specs, sizes), nn/ckpt (round trip, checked
 * errors), nn/optim (update rules, schedules) and nn/train (a tiny problem
 * learned, same seed same numbers). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/fs.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "nn/ckpt.h"
#include "nn/dataset.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/train.h"

static char tmpdir[] = "/tmp/cairn-nn-model.XXXXXX";

static void test_cnn_size(void)
{
	struct nn_net net;
	struct error err;
	CHECK(nn_model_build(&net, nn_backend_cpu(), "cnn", 1, 28, 28, 10, 1, &err) == 0);
	/* conv 32x1x3x3 + BN(32) + conv 64x32x3x3 + BN(64) + fc 3136x128 + 128 + fc 128x10 + 10 */
	CHECK_INT(nn_net_param_count(&net), 288 + 64 + 18432 + 128 + 401408 + 128 + 1280 + 10);
	/* multiply-adds: 28*28*32*9 + 14*14*64*32*9 + 3136*128 + 128*10 */
	CHECK_NEAR(nn_net_macs(&net), 225792.0 + 3612672 + 401408 + 1280, 1e-9);
	CHECK_STR(net.arch, "cnn:widths=32-64,convs=1,fc=128,drop=0.25");
	nn_net_release(&net);
	/* the classifier default: two 3x3 convs per stage, widths 16 and 32 */
	CHECK(nn_model_build(&net, nn_backend_cpu(), NN_MODEL_DEFAULT, 1, 28, 28, 10, 1, &err) == 0);
	CHECK_INT(nn_net_param_count(&net), 144 + 32 + 2304 + 32 + 4608 + 64 + 9216 + 64 +
						    1568 * 128 + 128 + 1290);
	nn_net_release(&net);
}

static void test_resnet_sizes(void)
{
	struct nn_net net;
	struct error err;
	CHECK(nn_model_build(&net, nn_backend_cpu(), "resnet:depths=1,widths=8,stem=8", 1, 8, 8, 10,
			     1, &err) == 0);
	/* stem 8x1x3x3 + BN, block 2 x (8x8x3x3 + BN), fc 8x10 + 10 */
	CHECK_INT(nn_net_param_count(&net), 72 + 16 + 2 * (576 + 16) + 90);
	nn_net_release(&net);
	/* ResNeXt bottleneck: 1x1 to 8, 3x3 with 4 groups (8 x 2 x 3 x 3), 1x1 to 16;
	 * projection shortcut 16x8 */
	CHECK(nn_model_build(&net, nn_backend_cpu(),
			     "resnet:depths=1,widths=16,stem=8,groups=4,bottleneck=2", 1, 8, 8, 3, 1,
			     &err) == 0);
	CHECK_INT(nn_net_param_count(&net),
		  72 + 16 + (64 + 16) + (144 + 16) + (128 + 32) + (128 + 32) + 16 * 3 + 3);
	nn_net_release(&net);
	/* strided stages halve the resolution: 32 -> 16 -> 8 before pooling */
	CHECK(nn_model_build(&net, nn_backend_cpu(), "resnet:depths=1-1-1,widths=8-16-32,stem=8", 3,
			     32, 32, 10, 1, &err) == 0);
	int gap = -1;
	for (int i = 0; i < net.nnodes; i++)
		if (net.nodes[i].op == NN_OP_GAP)
			gap = i;
	CHECK(gap > 0);
	CHECK_INT(net.nodes[net.nodes[gap].in[0]].h, 8);
	CHECK_INT(net.nodes[net.nodes[gap].in[0]].c, 32);
	nn_net_release(&net);
}

static const struct nn_node *out_node(const struct nn_net *net)
{
	return &net->nodes[net->nnodes - 1];
}

static void test_dense_models_shapes(void)
{
	struct nn_net net;
	struct error err;
	CHECK(nn_model_build(&net, nn_backend_cpu(), "unet:depth=3,base=4", 3, 32, 32, 2, 1, &err) == 0);
	CHECK_INT(out_node(&net)->c, 2);
	CHECK_INT(out_node(&net)->h, 32);
	CHECK_INT(out_node(&net)->w, 32);
	nn_net_release(&net);
	CHECK(nn_model_build(&net, nn_backend_cpu(), "unet:depth=2,base=4,bilinear=1", 1, 16, 16, 1,
			     1, &err) == 0);
	CHECK_INT(out_node(&net)->h, 16);
	nn_net_release(&net);
	CHECK(nn_model_build(&net, nn_backend_cpu(), "cyclegan:base=8,blocks=2", 3, 32, 32, 3, 1,
			     &err) == 0);
	CHECK_INT(out_node(&net)->c, 3);
	CHECK_INT(out_node(&net)->h, 32);
	CHECK_INT(out_node(&net)->op, NN_OP_ACT);
	nn_net_release(&net);
	/* 64 -> 32 -> 16 -> 8 (stride 2), -> 7 (4x4 stride 1), -> 6 (the logit conv) */
	CHECK(nn_model_build(&net, nn_backend_cpu(), "patchgan:base=8", 3, 64, 64, 1, 1, &err) == 0);
	CHECK_INT(out_node(&net)->c, 1);
	CHECK_INT(out_node(&net)->h, 6);
	nn_net_release(&net);
}

/* One small net of each family, with its input channels and size and its
 * outputs, for the tests of the buffer planning below. */
static const struct {
	const char *spec;
	int c, hw, nout;
} nets[] = {{"unet:depth=3,base=4", 3, 32, 1},
	    {"resnet:depths=1-1,widths=8-16,stem=8", 1, 16, 10},
	    {"cyclegan:base=8,blocks=2", 3, 32, 3},
	    {"patchgan:base=8,layers=2", 3, 32, 1},
	    {"cnn:widths=8-16,convs=2", 1, 16, 10}};

/* Gradient buffers shared between nodes not live at once (nn_net_prepare)
 * give exactly the gradients of one buffer per node, in less memory: for
 * skip connections (U-Net concat), residual adds and a plain chain. */
static void grads_of(const char *spec, int c, int hw, int nout, int share, int fuse, float **g,
		     size_t *arena)
{
	struct nn_net net;
	struct error err;
	nn_net_set_grad_sharing(share);
	nn_net_set_fusion(fuse);
	CHECK(nn_model_build(&net, nn_backend_cpu(), spec, c, hw, hw, nout, 5, &err) == 0);
	CHECK(nn_net_prepare(&net, 2, &err) == 0);
	nn_net_set_grad_sharing(1);
	nn_net_set_fusion(1);
	nn_net_train(&net, 1);
	struct nn_tensor *x = nn_net_input(&net);
	for (size_t i = 0; i < nn_tensor_count(x); i++)
		x->data[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1;
	const struct nn_tensor *y = nn_net_forward(&net, 2);
	struct nn_tensor *dy = nn_net_output_grad(&net);
	for (size_t i = 0; i < nn_tensor_count(y); i++)
		dy->data[i] = y->data[i] * 0.5f + (float)(i % 7) * 0.01f;
	nn_net_backward(&net);
	*g = malloc(net.flat.ntrain * sizeof(float));
	memcpy(*g, net.flat.g, net.flat.ntrain * sizeof(float));
	*arena = nn_net_arena_bytes(&net);
	nn_net_release(&net);
}

/* Each model's gradients with the planning option `what` off (0) and on
 * (1) must be equal bit for bit (and not mostly zero), and the arena
 * smaller with it on. what: 0 gradient sharing, 1 norm + activation fusion. */
static void compare_plans(int what)
{
	for (size_t k = 0; k < sizeof(nets) / sizeof(nets[0]); k++) {
		float *g[2];
		size_t arena[2];
		for (int on = 0; on < 2; on++)
			grads_of(nets[k].spec, nets[k].c, nets[k].hw, nets[k].nout, what == 0 ? on : 1,
				 what == 1 ? on : 1, &g[on], &arena[on]);
		struct nn_net net;
		struct error err;
		CHECK(nn_model_build(&net, nn_backend_cpu(), nets[k].spec, nets[k].c, nets[k].hw,
				     nets[k].hw, nets[k].nout, 5, &err) == 0);
		size_t n = net.flat.ntrain;
		int fused = 0;
		for (int i = 0; i < net.nnodes; i++)
			fused += net.nodes[i].op == NN_OP_ACT && net.nodes[i].fused;
		nn_net_release(&net);
		size_t diff = 0, nonzero = 0;
		for (size_t i = 0; i < n; i++) {
			diff += memcmp(&g[0][i], &g[1][i], sizeof(float)) != 0;
			nonzero += g[0][i] != 0;
		}
		if (what == 0)
			printf("# %s: gradient buffers shared; arena %zu -> %zu bytes\n", nets[k].spec,
			       arena[0], arena[1]);
		else
			printf("# %s: %d activations fused into their norm or add; arena %zu -> %zu bytes\n",
			       nets[k].spec, fused, arena[0], arena[1]);
		if (diff)
			printf("#   %zu of %zu gradients differ\n", diff, n);
		CHECK(diff == 0);
		CHECK(nonzero > n / 4); /* the comparison compared gradients, not zeros */
		CHECK(arena[1] < arena[0]);
		CHECK(what == 0 || fused > 0);
		free(g[0]);
		free(g[1]);
	}
}

static void test_shared_gradient_buffers(void) { compare_plans(0); }

/* A norm or residual add fused with the activation after it (nn_net_finish)
 * gives exactly the gradients of the two apart, in less memory: U-Net (batch
 * norm + ReLU), ResNet (that, and add + ReLU), CycleGAN generator (instance
 * norm + ReLU), PatchGAN (norm + LeakyReLU 0.2), CNN. */
static void test_fused_norm_act(void) { compare_plans(1); }

/* A net prepared for forward passes only (prediction: nn_net_prepare_forward,
 * and nn_net_prepare_eval on a fresh net) computes exactly the outputs of
 * one prepared for training, in eval and in training mode, in less memory
 * (no gradients; outputs sharing buffers where their lifetimes allow, skip
 * connections kept live); its backward does nothing, and nn_net_prepare
 * makes it trainable again, with the gradients of a net never forward-only. */
static void test_forward_only(void)
{
	struct error err;
	for (size_t k = 0; k < sizeof(nets) / sizeof(nets[0]); k++) {
		struct nn_net a, b;
		CHECK(nn_model_build(&a, nn_backend_cpu(), nets[k].spec, nets[k].c, nets[k].hw,
				     nets[k].hw, nets[k].nout, 5, &err) == 0);
		CHECK(nn_model_build(&b, nn_backend_cpu(), nets[k].spec, nets[k].c, nets[k].hw,
				     nets[k].hw, nets[k].nout, 5, &err) == 0);
		CHECK(nn_net_prepare(&a, 3, &err) == 0);
		CHECK(nn_net_prepare_eval(&b, 3, &err) == 0); /* fresh: forward only */
		CHECK(b.forward_only == 1);
		size_t full = nn_net_arena_bytes(&a), fwd = nn_net_arena_bytes(&b);
		printf("# %s batch 3: arenas %zu bytes for training, %zu forward only (activations "
		       "%zu, %zu)\n",
		       nets[k].spec, full, fwd, a.act.size, b.act.size);
		CHECK(fwd < full);
		CHECK(b.act.size < a.act.size / 2); /* the other arena (input, saved values,
						       workspace) is the same */
		size_t nx = nn_tensor_count(nn_net_input(&a)), ny = 0, diff = 0;
		for (int mode = 0; mode < 2; mode++) { /* eval, then training (batch statistics) */
			nn_net_train(&a, mode), nn_net_train(&b, mode);
			for (size_t i = 0; i < nx; i++)
				nn_net_input(&a)->data[i] = nn_net_input(&b)->data[i] =
				    (float)((i * 2654435761u + (size_t)mode) % 1000) / 500.0f - 1;
			const struct nn_tensor *ya = nn_net_forward(&a, 3),
					       *yb = nn_net_forward(&b, 3);
			ny = nn_tensor_count(ya);
			CHECK(nn_tensor_count(yb) == ny);
			for (size_t i = 0; i < ny; i++)
				diff += memcmp(&ya->data[i], &yb->data[i], sizeof(float)) != 0;
		}
		CHECK(diff == 0);
		/* backward does nothing; the eval helper leaves a training net as it is */
		nn_net_backward(&b);
		CHECK(nn_net_output_grad(&b)->data == NULL);
		CHECK(nn_net_prepare_eval(&a, 3, &err) == 0 && a.forward_only == 0);
		CHECK(nn_net_arena_bytes(&a) == full);
		/* trainable again: the same gradients as the net that always was */
		CHECK(nn_net_prepare(&b, 3, &err) == 0 && b.forward_only == 0);
		CHECK(nn_net_arena_bytes(&b) == full);
		nn_net_train(&a, 1), nn_net_train(&b, 1);
		for (size_t i = 0; i < nx; i++)
			nn_net_input(&a)->data[i] = nn_net_input(&b)->data[i] =
			    (float)(i % 13) / 6.0f - 1;
		const struct nn_tensor *ya = nn_net_forward(&a, 3);
		const struct nn_tensor *yb = nn_net_forward(&b, 3);
		for (size_t i = 0; i < ny; i++)
			nn_net_output_grad(&a)->data[i] = nn_net_output_grad(&b)->data[i] =
			    ya->data[i] * 0.5f + (float)(i % 5) * 0.01f;
		(void)yb;
		nn_net_backward(&a), nn_net_backward(&b);
		CHECK(memcmp(a.flat.g, b.flat.g, a.flat.ntrain * sizeof(float)) == 0);
		nn_net_release(&a);
		nn_net_release(&b);
	}
}

/* dL/dinput of a PatchGAN discriminator (what trains a GAN's generator)
 * against central differences of L = sum r_i y_i, on the double-accumulating
 * reference backend. */
static float loss_of(struct nn_net *net, const float *r, int n)
{
	const struct nn_tensor *y = nn_net_forward(net, n);
	double l = 0;
	for (size_t i = 0; i < nn_tensor_count(y) / (size_t)net->batch * (size_t)n; i++)
		l += (double)r[i] * y->data[i];
	return (float)l;
}

static void test_input_gradient(void)
{
	struct nn_net net;
	struct error err;
	int n = 2;
	CHECK(nn_model_build(&net, nn_backend_cpu_ref(), "patchgan:base=4", 3, 32, 32, 1, 9, &err) ==
	      0);
	CHECK(nn_net_prepare(&net, n, &err) == 0);
	nn_net_train(&net, 1);
	nn_net_want_input_grad(&net, 1);
	struct nn_tensor *x = nn_net_input(&net);
	size_t nx = nn_tensor_count(x);
	for (size_t i = 0; i < nx; i++)
		x->data[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1;
	const struct nn_tensor *y = nn_net_forward(&net, n);
	size_t ny = nn_tensor_count(y);
	float *r = malloc(ny * sizeof(float)), *g = malloc(nx * sizeof(float));
	for (size_t i = 0; i < ny; i++)
		r[i] = (float)((i * 40503u) % 100) / 50.0f - 1;
	struct nn_tensor *dy = nn_net_output_grad(&net);
	memcpy(dy->data, r, ny * sizeof(float));
	nn_net_backward(&net);
	memcpy(g, nn_net_input_grad(&net)->data, nx * sizeof(float));
	int bad = 0, nonzero = 0;
	for (size_t k = 0; k < 24; k++) {
		size_t i = (k * 977 + 13) % nx;
		float keep = x->data[i], e = 1e-2f;
		x->data[i] = keep + e;
		float lp = loss_of(&net, r, n);
		x->data[i] = keep - e;
		float lm = loss_of(&net, r, n);
		x->data[i] = keep;
		float fd = (lp - lm) / (2 * e);
		nonzero += g[i] != 0;
		if (fabsf(fd - g[i]) > 2e-2f * fmaxf(1, fmaxf(fabsf(fd), fabsf(g[i])))) {
			printf("#   input %zu: backward %g, central difference %g\n", i, g[i], fd);
			bad++;
		}
	}
	CHECK_INT(bad, 0);
	CHECK(nonzero > 12);
	free(r);
	free(g);
	nn_net_release(&net);
}

/* Two uses of one module (nn_net_share_weights): a CycleGAN generator (instance
 * norm: every sample on its own) run as two tied nets of batch 1 on a and b
 * gives the outputs and, summed with nn_net_add_grads, the weight gradients of
 * one net on the batch [a; b]; after the owner's optimizer step both compute
 * with the new weights; a net of another spec is refused. */
static double max_rel(const float *a, const float *b, size_t n)
{
	double m = 0, e = 0;
	for (size_t i = 0; i < n; i++) {
		m = fmax(m, fabs(b[i]));
		e = fmax(e, fabs(a[i] - b[i]));
	}
	return e / fmax(m, 1e-30);
}

static void test_shared_weights(void)
{
	const struct nn_backend *be = nn_backend_cpu();
	const char *spec = "cyclegan:base=4,blocks=1";
	struct nn_net one, u[2], other;
	struct error err;
	CHECK(nn_model_build(&one, be, spec, 3, 16, 16, 3, 5, &err) == 0 && nn_net_prepare(&one, 2, &err) == 0);
	for (int k = 0; k < 2; k++)
		CHECK(nn_model_build(&u[k], be, spec, 3, 16, 16, 3, 7 + k, &err) == 0 &&
		      nn_net_prepare(&u[k], 1, &err) == 0);
	/* u[0] takes one's weights, u[1] shares u[0]'s */
	memcpy(u[0].flat.w, one.flat.w, one.flat.n * sizeof(float));
	CHECK(nn_net_share_weights(&u[1], &u[0], &err) == 0);
	CHECK(u[1].flat.w == u[0].flat.w && u[1].params[0].w.data == u[0].params[0].w.data);
	CHECK(nn_net_share_weights(&u[1], &u[0], &err) < 0);
	size_t img = 3 * 16 * 16;
	float *x = nn_net_input(&one)->data;
	for (size_t i = 0; i < 2 * img; i++)
		x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1;
	memcpy(nn_net_input(&u[0])->data, x, img * sizeof(float));
	memcpy(nn_net_input(&u[1])->data, x + img, img * sizeof(float));
	const struct nn_tensor *y = nn_net_forward(&one, 2);
	const struct nn_tensor *y0 = nn_net_forward(&u[0], 1), *y1 = nn_net_forward(&u[1], 1);
	CHECK(max_rel(y0->data, y->data, img) < 1e-6 && max_rel(y1->data, y->data + img, img) < 1e-6);
	float *dy = nn_net_output_grad(&one)->data;
	for (size_t i = 0; i < 2 * img; i++)
		dy[i] = (float)((i * 40503u) % 100) / 50.0f - 1;
	memcpy(nn_net_output_grad(&u[0])->data, dy, img * sizeof(float));
	memcpy(nn_net_output_grad(&u[1])->data, dy + img, img * sizeof(float));
	nn_net_backward(&one);
	nn_net_backward(&u[0]);
	nn_net_backward(&u[1]);
	double before = max_rel(u[0].flat.g, one.flat.g, one.flat.ntrain);
	nn_net_add_grads(&u[0], &u[1]);
	double after = max_rel(u[0].flat.g, one.flat.g, one.flat.ntrain);
	printf("# weight gradients of two tied uses against one net on both: %.2g apart, %.2g summed\n",
	       before, after);
	CHECK(before > 0.1 && after < 1e-5);
	/* an update of the owner's weights is the other's too */
	struct nn_optim o;
	nn_optim_defaults(&o);
	CHECK(nn_optim_init(&o, &u[0], &err) == 0);
	nn_optim_step(&o, &u[0]);
	memcpy(nn_net_input(&u[1])->data, x, img * sizeof(float));
	y0 = nn_net_forward(&u[0], 1);
	float *keep = malloc(img * sizeof(float));
	memcpy(keep, y0->data, img * sizeof(float));
	y1 = nn_net_forward(&u[1], 1);
	CHECK(max_rel(y1->data, keep, img) == 0 && max_rel(keep, y->data, img) > 1e-3);
	free(keep);
	CHECK(nn_model_build(&other, be, "cyclegan:base=8,blocks=1", 3, 16, 16, 3, 1, &err) == 0);
	CHECK(nn_net_share_weights(&other, &u[0], &err) < 0);
	CHECK(strstr(err.msg, "not the same network") != NULL);
	nn_net_release(&other);
	nn_net_release(&u[1]); /* first: it leaves the weights to their owner */
	nn_net_release(&u[0]);
	nn_net_release(&one);
}

static void test_spec_errors(void)
{
	struct nn_net net;
	struct error err;
	CHECK(nn_model_build(&net, nn_backend_cpu(), "vgg", 1, 28, 28, 10, 1, &err) < 0);
	CHECK(strstr(err.msg, "unknown family 'vgg'") != NULL);
	CHECK(nn_model_build(&net, nn_backend_cpu(), "resnet:depth=2", 1, 28, 28, 10, 1, &err) < 0);
	CHECK(strstr(err.msg, "unknown key 'depth'") != NULL && strstr(err.msg, "depths") != NULL);
	CHECK(nn_model_build(&net, nn_backend_cpu(), "cnn:widths=32-x", 1, 28, 28, 10, 1, &err) < 0);
	CHECK(strstr(err.msg, "widths") != NULL);
	CHECK(nn_model_build(&net, nn_backend_cpu(), "cnn:fc", 1, 28, 28, 10, 1, &err) < 0);
	CHECK(strstr(err.msg, "key=value") != NULL);
	CHECK(nn_model_build(&net, nn_backend_cpu(), "resnet:widths=16,groups=3", 1, 28, 28, 10, 1,
			     &err) < 0);
	CHECK(strstr(err.msg, "groups") != NULL);
	/* too many poolings for the input */
	CHECK(nn_model_build(&net, nn_backend_cpu(), "cnn:widths=8-8-8-8-8-8", 1, 28, 28, 10, 1,
			     &err) < 0);
}

static void randomize(struct nn_net *net, unsigned seed)
{
	srand(seed);
	for (int i = 0; i < net->nparams; i++) {
		struct nn_tensor *w = &net->params[i].w;
		for (size_t k = 0; k < nn_tensor_count(w); k++)
			w->data[k] = (float)rand() / RAND_MAX;
	}
}

static void test_checkpoint_round_trip(void)
{
	struct nn_net a, b;
	struct error err;
	char path[256];
	snprintf(path, sizeof(path), "%s/m.ckpt", tmpdir);
	const char *spec = "resnet:depths=1-1,widths=4-8,stem=4";
	CHECK(nn_model_build(&a, nn_backend_cpu(), spec, 1, 12, 12, 5, 1, &err) == 0);
	randomize(&a, 3);
	CHECK(nn_ckpt_save(&a, path, &err) == 0);
	struct nn_ckpt_info info;
	CHECK(nn_ckpt_info(path, &info, &err) == 0);
	CHECK_STR(info.arch, a.arch);
	CHECK_INT(info.h, 12);
	CHECK_INT(info.nout, 5);
	mem_free(info.arch);
	CHECK(nn_ckpt_open(&b, nn_backend_cpu(), path, &err) == 0);
	CHECK_INT(b.nparams, a.nparams);
	int same = 1;
	for (int i = 0; i < a.nparams; i++)
		same &= !memcmp(a.params[i].w.data, b.params[i].w.data,
				nn_tensor_count(&a.params[i].w) * sizeof(float));
	CHECK(same);
	nn_net_release(&b);
	nn_net_release(&a);
}

static void write_bytes(const char *path, const char *data, size_t len)
{
	struct error err;
	CHECK(fs_write_atomic(path, data, len, &err) == 0);
}

static void test_checkpoint_errors(void)
{
	struct nn_net a, b;
	struct error err;
	char path[256], bad[256];
	snprintf(path, sizeof(path), "%s/e.ckpt", tmpdir);
	snprintf(bad, sizeof(bad), "%s/bad.ckpt", tmpdir);
	CHECK(nn_model_build(&a, nn_backend_cpu(), "cnn:widths=4,fc=0", 1, 8, 8, 3, 1, &err) == 0);
	CHECK(nn_ckpt_save(&a, path, &err) == 0);
	char *data;
	size_t len;
	CHECK(fs_read_all(path, &data, &len, &err) == 0);

	write_bytes(bad, "GIF89a-not-a-checkpoint", 23);
	CHECK(nn_ckpt_load(&a, bad, &err) < 0);
	CHECK(strstr(err.msg, "bad magic") != NULL);

	write_bytes(bad, data, len / 2);
	CHECK(nn_ckpt_load(&a, bad, &err) < 0);
	CHECK(strstr(err.msg, "truncated") != NULL);
	CHECK(strstr(err.msg, bad) != NULL);

	data[len - 100] ^= 1; /* a flipped bit in the last tensor */
	write_bytes(bad, data, len);
	CHECK(nn_ckpt_load(&a, bad, &err) < 0);
	CHECK(strstr(err.msg, "checksum") != NULL);
	data[len - 100] ^= 1;

	data[8] = 9; /* version 9 */
	write_bytes(bad, data, len);
	CHECK(nn_ckpt_load(&a, bad, &err) < 0);
	CHECK(strstr(err.msg, "version 9") != NULL);
	data[8] = NN_CKPT_VERSION;

	/* a header a net cannot have, under a good checksum (the fuzzer's: a
	 * height of INT_MAX overflowed the net's shapes, 2^24 outputs built a
	 * net of 6.7 GB before the checksum was read): refused, by
	 * nn_ckpt_open too, which builds the net from the header */
	struct nn_ckpt_info info;
	for (int field = 0; field < 2; field++) {
		uint32_t big = field ? 1u << 24 : 0x7fffffffu; /* nout, h */
		memcpy(data + 12 + (field ? 12 : 4), &big, 4);
		char hex[SHA256_HEX_LEN + 1];
		CHECK(sha256_buf(data, len - SHA256_HEX_LEN, hex, &err) == 0);
		memcpy(data + len - SHA256_HEX_LEN, hex, SHA256_HEX_LEN);
		write_bytes(bad, data, len);
		CHECK(nn_ckpt_info(bad, &info, &err) < 0);
		CHECK(strstr(err.msg, "corrupt: input") != NULL);
		CHECK(nn_ckpt_open(&b, nn_backend_cpu(), bad, &err) < 0);
		CHECK(strstr(err.msg, field ? "16777216 outputs" : "2147483647x8") != NULL);
	}
	/* and a damaged one is called damaged before its header is believed */
	data[len - SHA256_HEX_LEN - 1] ^= 1;
	write_bytes(bad, data, len);
	CHECK(nn_ckpt_open(&b, nn_backend_cpu(), bad, &err) < 0);
	CHECK(strstr(err.msg, "checksum mismatch") != NULL);
	mem_free(data);

	/* another architecture */
	CHECK(nn_model_build(&b, nn_backend_cpu(), "cnn:widths=6,fc=0", 1, 8, 8, 3, 1, &err) == 0);
	CHECK(nn_ckpt_load(&b, path, &err) < 0);
	CHECK(strstr(err.msg, "architecture") != NULL);
	/* same layer names, other shapes, no arch string to compare: the shape check speaks */
	mem_free(b.arch);
	b.arch = NULL;
	CHECK(nn_ckpt_load(&b, path, &err) < 0);
	CHECK(strstr(err.msg, "has shape (4, 1, 3, 3)") != NULL);
	CHECK(strstr(err.msg, "expects (6, 1, 3, 3)") != NULL);
	nn_net_release(&b);
	nn_net_release(&a);
}

/* A checkpoint damaged at random (bytes flipped, mostly in its header and
 * index, or cut short): a load fails with a message that names the file,
 * or (a byte nothing reads) succeeds; never a crash, never a net half
 * loaded without an error. Deterministic (a fixed seed). */
static void test_checkpoint_random_damage(void)
{
	struct nn_net a;
	struct error err;
	char path[256], bad[256];
	snprintf(path, sizeof(path), "%s/d.ckpt", tmpdir);
	snprintf(bad, sizeof(bad), "%s/dbad.ckpt", tmpdir);
	CHECK(nn_model_build(&a, nn_backend_cpu(), "resnet:depths=1-1,widths=4-8,stem=4", 1, 8, 8,
			     3, 1, &err) == 0);
	CHECK(nn_ckpt_save(&a, path, &err) == 0);
	char *data;
	size_t len;
	CHECK(fs_read_all(path, &data, &len, &err) == 0);
	char *copy = mem_alloc(len);
	/* the net's weights, changed so that a load that gets through shows */
	for (size_t i = 0; i < a.flat.n; i++)
		a.flat.w[i] = 0.5f;
	uint64_t x = 0x9e3779b97f4a7c15ull;
	int refused = 0, accepted = 0, unnamed = 0;
	for (int it = 0; it < 1500; it++) {
		memcpy(copy, data, len);
		size_t n = len;
		check_rand(&x);
		if (x % 5 == 0) {
			n = (size_t)(x >> 16) % len; /* cut short */
		} else {
			int flips = 1 + (int)((x >> 8) % 3);
			for (int f = 0; f < flips; f++) {
				check_rand(&x);
				/* most in the first 1 KiB: magic, version, arch, index */
				size_t at =
				    (size_t)(x >> 20) % (x % 4 ? (len < 1024 ? len : 1024) : len);
				copy[at] ^= (char)(1 + (x >> 40) % 255);
			}
		}
		write_bytes(bad, copy, n);
		err.msg[0] = '\0';
		if (nn_ckpt_load(&a, bad, &err) < 0) {
			refused++;
			if (!strstr(err.msg, bad))
				unnamed++, printf("#   no file named: %s\n", err.msg);
		} else {
			accepted++;
		}
	}
	printf("# checkpoint damage: %d refused, %d loaded (a byte nothing reads)\n", refused,
	       accepted);
	CHECK(refused > 1400);
	CHECK_INT(unnamed, 0);
	size_t touched = 0; /* by a refused load: none */
	for (size_t i = 0; i < a.flat.n; i++)
		touched += a.flat.w[i] != 0.5f;
	CHECK_INT((int)touched, 0);
	mem_free(copy);
	mem_free(data);
	nn_net_release(&a);
}

/* One parameter tensor of two values, updated by hand-computed rules. */
static void test_sgd_and_adam_rules(void)
{
	const struct nn_backend *be = nn_backend_cpu();
	float w[2] = {1, -2}, g[2] = {0.5f, 0.25f}, m[2] = {0, 0}, v[2] = {0, 0};
	be->sgd_step(2, 2, w, g, m, 0.1f, 0.9f, 0.0f, 0);
	CHECK_NEAR(w[0], 1 - 0.05, 1e-6);
	be->sgd_step(2, 2, w, g, m, 0.1f, 0.9f, 0.0f, 0);
	CHECK_NEAR(m[0], 0.9 * 0.5 + 0.5, 1e-6);
	CHECK_NEAR(w[0], 0.95 - 0.1 * 0.95, 1e-6);
	/* Nesterov from zero momentum: step g + mu g */
	float wn[1] = {1}, gn[1] = {1}, mn[1] = {0};
	be->sgd_step(1, 1, wn, gn, mn, 0.1f, 0.9f, 0.0f, 1);
	CHECK_NEAR(wn[0], 1 - 0.1 * 1.9, 1e-6);
	/* weight decay adds wd w to the gradient */
	float wd[1] = {2}, gd[1] = {0}, md[1] = {0};
	be->sgd_step(1, 1, wd, gd, md, 0.1f, 0.0f, 0.5f, 0);
	CHECK_NEAR(wd[0], 2 - 0.1 * 1.0, 1e-6);
	/* Adam's first step is lr * sign(g) (bias-corrected m / sqrt(v)) */
	float wa[2] = {1, 1}, ma[2] = {0, 0};
	be->adam_step(2, 2, wa, g, ma, v, 0.01f, 0.9f, 0.999f, 1e-8f, 0, 0, 1);
	CHECK_NEAR(wa[0], 1 - 0.01, 1e-5);
	CHECK_NEAR(wa[1], 1 - 0.01, 1e-5);
}

/* The CPU backend's Adam (vectors of the kernels' ISA, threads) gives the
 * reference loop's numbers bit for bit: every ISA this CPU runs, odd sizes
 * and decay splits (the vectors' tails), coupled and decoupled decay, a few
 * steps, zeros of both signs among the values. */
static void test_adam_matches_reference(void)
{
	const struct nn_backend *ref = nn_backend_cpu_ref(), *be = nn_backend_cpu();
	const char *kernels[] = {"avx512", "avx2", "gemm"};
	const size_t sizes[][2] = {{1, 1}, {37, 20}, {1037, 517}, {300007, 123457}};
	for (int kk = 0; kk < 3; kk++) {
		if (nn_cpu_set_conv_kernel(kernels[kk]) < 0)
			continue;
		int same = 1;
		for (int si = 0; si < 4; si++)
			for (int dec = 0; dec < 2; dec++) {
				size_t n = sizes[si][0], nd = sizes[si][1];
				float *a = mem_alloc(6 * n * sizeof(float)), *g = mem_alloc(n * sizeof(float));
				uint64_t r = 0x9e3779b97f4a7c15ull * (n + dec);
				for (size_t i = 0; i < n; i++) {
					r = r * 6364136223846793005ull + 1442695040888963407ull;
					float u = (float)((r >> 40) % 20001) / 10000 - 1;
					a[i] = a[3 * n + i] = i % 97 == 0 ? -0.0f : u;     /* w */
					a[n + i] = a[4 * n + i] = 0;		      /* m */
					a[2 * n + i] = a[5 * n + i] = 0;		      /* v */
					g[i] = i % 89 == 0 ? 0.0f : u * 0.3f - 0.01f;
				}
				for (int t = 1; t <= 3; t++) {
					ref->adam_step(n, nd, a, g, a + n, a + 2 * n, 2e-3f, 0.5f, 0.999f,
						       1e-8f, 0.01f, dec, t);
					be->adam_step(n, nd, a + 3 * n, g, a + 4 * n, a + 5 * n, 2e-3f, 0.5f,
						      0.999f, 1e-8f, 0.01f, dec, t);
				}
				same &= memcmp(a, a + 3 * n, 3 * n * sizeof(float)) == 0;
				mem_free(a);
				mem_free(g);
			}
		if (!same)
			printf("#   adam with the %s kernels differs from the reference\n", kernels[kk]);
		CHECK(same);
	}
	CHECK(nn_cpu_set_conv_kernel("auto") == 0);
}

/* The CPU table with its optimizer slots counted. */
static struct nn_backend counted;
static int opt_calls;

static void counted_sgd(size_t n, size_t nd, float *w, const float *g, float *m, float lr,
			float mu, float wd, int nesterov)
{
	opt_calls++;
	nn_backend_cpu()->sgd_step(n, nd, w, g, m, lr, mu, wd, nesterov);
}

static void counted_adam(size_t n, size_t nd, float *w, const float *g, float *m, float *v,
			 float lr, float b1, float b2, float eps, float wd, int decoupled, int t)
{
	opt_calls++;
	nn_backend_cpu()->adam_step(n, nd, w, g, m, v, lr, b1, b2, eps, wd, decoupled, t);
}

/* The flat layout (nn/net.h): every parameter a 64-byte aligned view, no two
 * overlapping; decayed ones before ndecay, other trainable ones before ntrain
 * with their gradient and state at the same offset, statistics after. */
static void check_flat_layout(const struct nn_net *net)
{
	const struct nn_flat *f = &net->flat;
	for (int i = 0; i < net->nparams; i++) {
		const struct nn_param *p = &net->params[i];
		size_t end = p->off + nn_tensor_count(&p->w);
		CHECK(p->w.data == f->w + p->off && !p->w.owned);
		CHECK(((uintptr_t)p->w.data & 63) == 0);
		if (p->trainable) {
			CHECK(p->g.data == f->g + p->off && p->m.data == f->m + p->off);
			CHECK(p->decay ? end <= f->ndecay : p->off >= f->ndecay && end <= f->ntrain);
		} else {
			CHECK(p->g.data == NULL && p->off >= f->ntrain && end <= f->n);
		}
		for (int j = 0; j < i; j++) {
			const struct nn_param *q = &net->params[j];
			CHECK(end <= q->off || q->off + nn_tensor_count(&q->w) <= p->off);
		}
	}
}

/* nn_optim_step over the flat buffers: one backend call per step, and bit for
 * bit the numbers of the per-tensor updates it replaced (each parameter on its
 * own, weight decay only where decay is set), for SGD, Adam and AdamW. */
static void test_flat_optimizer(void)
{
	counted = *nn_backend_cpu();
	counted.sgd_step = counted_sgd;
	counted.adam_step = counted_adam;
	for (int kind = 0; kind < 3; kind++) {
		struct nn_net a, b;
		struct error err;
		struct nn_net *nets[2] = {&a, &b};
		for (int k = 0; k < 2; k++) {
			CHECK(nn_model_build(nets[k], &counted, "resnet:depths=1-1,widths=8-16,stem=8", 1,
					     16, 16, 4, 1, &err) == 0);
			CHECK(nn_net_prepare(nets[k], 6, &err) == 0);
		}
		struct nn_optim oa, ob;
		nn_optim_defaults(&oa);
		oa.nesterov = 1, oa.lr = 0.05f, oa.wd = 5e-4f;
		if (kind > 0)
			oa.kind = NN_OPT_ADAM, oa.lr = 1e-3f, oa.wd = 0.01f, oa.decoupled = kind == 2;
		ob = oa;
		CHECK(nn_optim_init(&oa, &a, &err) == 0);
		CHECK(nn_optim_init(&ob, &b, &err) == 0);
		check_flat_layout(&a);
		int32_t labels[6] = {0, 1, 2, 3, 0, 1};
		for (int step = 0; step < 4; step++) {
			for (int k = 0; k < 2; k++) {
				struct nn_tensor *in = nn_net_input(nets[k]);
				for (size_t i = 0; i < nn_tensor_count(in); i++)
					in->data[i] = (float)((i + step) % 13) / 13;
				const struct nn_tensor *y = nn_net_forward(nets[k], 6);
				float loss;
				counted.softmax_xent(6, y->c, 1, y->data, labels, NULL,
						     nn_net_output_grad(nets[k])->data, &loss);
				nn_net_backward(nets[k]);
			}
			opt_calls = 0;
			nn_optim_step(&oa, &a);
			CHECK_INT(opt_calls, 1);
			float lr = nn_optim_lr(&ob, ob.t++);
			for (int i = 0; i < b.nparams; i++) {
				struct nn_param *p = &b.params[i];
				size_t n = nn_tensor_count(&p->w);
				float wd = p->decay ? ob.wd : 0;
				if (!p->trainable)
					continue;
				if (kind == 0)
					counted.sgd_step(n, n, p->w.data, p->g.data, p->m.data, lr,
							 ob.momentum, wd, ob.nesterov);
				else
					counted.adam_step(n, n, p->w.data, p->g.data, p->m.data, p->v.data,
							  lr, ob.b1, ob.b2, ob.eps, wd, ob.decoupled,
							  (int)ob.t);
			}
		}
		size_t differ = 0;
		for (int i = 0; i < a.nparams; i++)
			differ += memcmp(a.params[i].w.data, b.params[i].w.data,
					 nn_tensor_count(&a.params[i].w) * sizeof(float)) != 0;
		if (differ)
			printf("#   optimizer kind %d: %zu tensors differ\n", kind, differ);
		CHECK(differ == 0);
		nn_net_release(&a);
		nn_net_release(&b);
	}
}

static void test_lr_schedules(void)
{
	struct nn_optim o;
	nn_optim_defaults(&o);
	o.lr = 1;
	o.warmup = 4;
	o.sched = NN_LR_COSINE;
	o.total = 104;
	CHECK_NEAR(nn_optim_lr(&o, 0), 0.25, 1e-6);
	CHECK_NEAR(nn_optim_lr(&o, 3), 1.0, 1e-6);
	CHECK_NEAR(nn_optim_lr(&o, 4), 1.0, 1e-6);
	CHECK_NEAR(nn_optim_lr(&o, 54), 0.5, 1e-6);
	CHECK_NEAR(nn_optim_lr(&o, 104), 0.0, 1e-6);
	o.sched = NN_LR_STEP;
	o.warmup = 0;
	o.step_every = 10;
	o.gamma = 0.1f;
	CHECK_NEAR(nn_optim_lr(&o, 9), 1.0, 1e-6);
	CHECK_NEAR(nn_optim_lr(&o, 10), 0.1, 1e-6);
	CHECK_NEAR(nn_optim_lr(&o, 25), 0.01, 1e-6);
}

/* A shard of 8x8 images: class 0 bright on the left, 1 bright on the right,
 * 2 bright on top; with noise. */
static void make_shard(const char *path, int count, unsigned seed)
{
	struct dataset_writer w;
	struct dataset_shape s = {1, 8, 8, 3, DATASET_LABEL_CLASS};
	struct error err;
	CHECK(dataset_writer_open(&w, path, &s, &err) == 0);
	srand(seed);
	for (int i = 0; i < count; i++) {
		uint8_t px[64];
		int label = i % 3;
		for (int y = 0; y < 8; y++)
			for (int x = 0; x < 8; x++) {
				int on = label == 0 ? x < 4 : label == 1 ? x >= 4 : y < 4;
				px[y * 8 + x] = (uint8_t)((on ? 150 : 40) + rand() % 100);
			}
		CHECK(dataset_writer_add(&w, px, (uint32_t)label, &err) == 0);
	}
	CHECK(dataset_writer_finish(&w, &err) == 0);
}

static void test_train_learns_and_is_deterministic(void)
{
	char tr[256], te[256];
	snprintf(tr, sizeof(tr), "%s/train.ds", tmpdir);
	snprintf(te, sizeof(te), "%s/test.ds", tmpdir);
	make_shard(tr, 300, 1);
	make_shard(te, 90, 2);
	struct dataset train, test;
	struct error err;
	CHECK(dataset_open(&train, tr, 0, &err) == 0);
	CHECK(dataset_open(&test, te, 0, &err) == 0);
	struct nn_train_config cfg;
	nn_train_defaults(&cfg);
	cfg.fit.arch = "cnn:widths=4,fc=0,drop=0";
	cfg.fit.epochs = 3;
	cfg.fit.batch = 16;
	cfg.flip = 0; /* flips would swap classes 0 and 1 */
	cfg.pad = 0;
	struct nn_net n1, n2;
	struct nn_train_result r1, r2;
	CHECK(nn_train_classifier(&cfg, &train, &test, &n1, &r1, &err) == 0);
	CHECK(r1.test_accuracy > 0.9);
	CHECK(r1.epoch_loss[2] < r1.epoch_loss[0]);
	CHECK(nn_train_classifier(&cfg, &train, &test, &n2, &r2, &err) == 0);
	CHECK(r1.epoch_loss[2] == r2.epoch_loss[2]);
	CHECK(r1.test_accuracy == r2.test_accuracy);
	nn_train_result_release(&r1);
	nn_train_result_release(&r2);
	nn_net_release(&n1);
	nn_net_release(&n2);
	dataset_close(&train);
	dataset_close(&test);
}

/* After nn_net_prepare and nn_optim_init, a training step allocates nothing:
 * neither through core/mem (the hook makes any such allocation fail) nor in
 * the backend. */
static void test_training_step_does_not_allocate(void)
{
	struct nn_net net;
	struct error err;
	CHECK(nn_model_build(&net, nn_backend_cpu(), "resnet:depths=1-1,widths=8-16,stem=8", 1, 16,
			     16, 4, 1, &err) == 0);
	CHECK(nn_net_prepare(&net, 6, &err) == 0);
	struct nn_optim opt;
	nn_optim_defaults(&opt);
	opt.kind = NN_OPT_ADAM;
	CHECK(nn_optim_init(&opt, &net, &err) == 0);
	int32_t labels[6] = {0, 1, 2, 3, 0, 1};
	struct nn_tensor *in = nn_net_input(&net);
	randomize(&net, 5);
	for (size_t i = 0; i < nn_tensor_count(in); i++)
		in->data[i] = (float)(i % 13) / 13;
	size_t before = 0;
	for (int step = 0; step < 3; step++) {
		if (step == 1) {
			before = nn_cpu_allocations();
			mem_fail_after(0);
		}
		int n = step == 2 ? 5 : 6; /* a smaller last batch reuses the same memory */
		const struct nn_tensor *y = nn_net_forward(&net, n);
		float loss;
		net.be->softmax_xent(n, y->c, 1, y->data, labels, NULL, nn_net_output_grad(&net)->data,
				     &loss);
		nn_net_backward(&net);
		nn_optim_step(&opt, &net);
	}
	mem_fail_after(-1);
	CHECK_INT(nn_cpu_allocations(), before);
	nn_net_release(&net);
}

/* nn_net_prepare reserves the workspace it carves, whatever size the backend
 * asks (a 64 KiB + 61..63 byte workspace once failed prepare: it reserved
 * ws/4 + 1 floats and carved ws + 4 bytes). A copy of the CPU backend asks
 * for its own size plus extra bytes. */
static size_t ws_extra;
static size_t (*ws_real)(const struct nn_conv_desc *d);
static size_t ws_padded(const struct nn_conv_desc *d) { return ws_real(d) + ws_extra; }

static void test_workspace_any_size(void)
{
	struct nn_backend be = *nn_backend_cpu();
	ws_real = be.conv2d_workspace;
	be.conv2d_workspace = ws_padded;
	size_t extras[140];
	int n = 0;
	for (size_t k = 0; k < 128; k++)
		extras[n++] = k;
	for (size_t k = 56; k < 68; k++)
		extras[n++] = 65536 + k;
	for (int i = 0; i < n; i++) {
		ws_extra = extras[i];
		struct nn_net net;
		struct error err;
		CHECK(nn_model_build(&net, &be, "cnn:widths=4-8,fc=16", 1, 12, 12, 3, 1, &err) == 0);
		int ok = nn_net_prepare(&net, 2, &err) == 0;
		if (!ok)
			fprintf(stderr, "workspace of real + %zu bytes: %s\n", extras[i], err.msg);
		CHECK(ok);
		if (ok)
			CHECK(nn_net_forward(&net, 2) != NULL);
		nn_net_release(&net);
	}
}

/* A batch whose largest output would pass 2^31 - 1 values is refused by
 * prepare, before anything is allocated, with the largest batch that fits;
 * that batch prepares (the check only, on a net too small to matter). */
static void test_batch_too_large(void)
{
	struct nn_net net;
	struct error err;
	/* the first conv's output: 512 x 28 x 28 = 401,408 values a sample */
	CHECK(nn_model_build(&net, nn_backend_cpu(), "cnn:widths=512-8,fc=16", 1, 28, 28, 10, 1,
			     &err) == 0);
	CHECK(nn_net_prepare(&net, 60000, &err) < 0);
	CHECK(strstr(err.msg, "24084480000 values") != NULL); /* 60000 x 401408 */
	CHECK(strstr(err.msg, "use a batch of at most 5349") != NULL);
	CHECK(nn_net_prepare(&net, 5350, &err) < 0);
	nn_net_release(&net);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(test_cnn_size);
	RUN(test_batch_too_large);
	RUN(test_resnet_sizes);
	RUN(test_dense_models_shapes);
	RUN(test_shared_gradient_buffers);
	RUN(test_fused_norm_act);
	RUN(test_forward_only);
	RUN(test_input_gradient);
	RUN(test_shared_weights);
	RUN(test_spec_errors);
	RUN(test_checkpoint_round_trip);
	RUN(test_checkpoint_errors);
	RUN(test_checkpoint_random_damage);
	RUN(test_sgd_and_adam_rules);
	RUN(test_adam_matches_reference);
	RUN(test_flat_optimizer);
	RUN(test_lr_schedules);
	RUN(test_train_learns_and_is_deterministic);
	RUN(test_training_step_does_not_allocate);
	RUN(test_workspace_any_size);
	struct error err;
	fs_rm_rf(tmpdir, &err);
	return CHECK_DONE();
}
