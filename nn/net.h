/* net: a network as a static graph of layers, built once, then run forward
 * and backward any number of times. Nodes are added in topological order
 * (each names its inputs by index), so forward runs them in order and
 * backward in reverse; every op goes through the net's backend table.
 *
 * Life cycle: nn_net_init, add layers (nn_conv, nn_bn, ...; errors are
 * sticky and reported by nn_net_finish), nn_net_finish (parameters, seeded
 * init), nn_net_prepare (activations and workspace for a batch size, one
 * arena: nothing is allocated after this), then forward/backward/optimizer
 * steps, nn_net_release. */
#ifndef NN_NET_H
#define NN_NET_H

#include <stdint.h>

#include "nn/backend.h"
#include "nn/tensor.h"

enum nn_op {
	NN_OP_INPUT, NN_OP_CONV, NN_OP_DECONV, NN_OP_BN, NN_OP_INORM, NN_OP_ACT, NN_OP_POOL,
	NN_OP_GAP, NN_OP_LINEAR, NN_OP_DROPOUT, NN_OP_CONCAT, NN_OP_ADD, NN_OP_UPSAMPLE
};

/* A learned tensor (trainable) or a saved statistic (BN running mean/var).
 * Its tensors are views into the net's flat buffers (struct nn_flat). */
struct nn_param {
	char name[48];
	struct nn_tensor w, g;  /* value, gradient (g empty when not trainable) */
	struct nn_tensor m, v;  /* optimizer state, allocated by nn/optim */
	int trainable;
	int decay;              /* weight decay applies (weights yes, biases and norms no) */
	size_t off;             /* offset in floats of w (and g, m, v) in the flat buffers */
};

/* Every parameter of a net lives in one contiguous buffer per kind, so that
 * one backend call (one kernel on CUDA) updates all of them and bf16 casts
 * them in one go. Layout of w: the trainable parameters with weight decay,
 * then the trainable ones without, then the statistics; each tensor starts on
 * a 64-byte boundary and the padding is zero (and stays zero under the
 * optimizers: its gradient is zero). g, m and v cover the trainable part only,
 * at the same offsets. */
struct nn_flat {
	float *w, *g, *m, *v;   /* m, v: allocated by nn_optim_init (v for Adam only) */
	size_t n;               /* floats of w */
	size_t ntrain;          /* floats of g, m, v: the trainable parameters */
	size_t ndecay;          /* the first ndecay of them have weight decay */
};

struct nn_node {
	enum nn_op op;
	int in[2];
	int c, h, w;            /* output shape of one sample */
	int k, stride, pad, dil, groups, bias; /* conv, deconv, pool */
	enum nn_act act;
	float alpha;            /* LeakyReLU slope */
	enum nn_pool_kind pool;
	enum nn_upsample_mode up;
	int scale;
	float p;                /* dropout probability */
	int param[4];           /* indexes in net->params, -1 when unused */
	double macs;            /* multiply-adds of one sample's forward pass */
	int fused;              /* a norm or add and the activation that is its only
				   consumer, computed as one (nn_net_finish): the norm or
				   add node's activation node, or the activation node's
				   norm or add node; 0 when not fused */
	struct nn_tensor y, dy, aux, aux2; /* output, its gradient (shared, see prepare), saved values */
};

struct nn_net {
	const struct nn_backend *be;
	struct nn_node *nodes;
	int nnodes, node_cap;
	struct nn_param *params;
	int nparams, param_cap;
	struct nn_flat flat;    /* the parameters' memory (nn_net_finish) */
	char *arch;             /* the spec the net was built from (checkpoints) */
	uint64_t seed;          /* weight init and dropout masks */
	uint64_t step;          /* forward passes in training mode (dropout stream) */
	int training;           /* batch norm statistics, dropout */
	int batch, n;           /* prepared batch size; current one (<= batch) */
	int forward_only;	/* prepared by nn_net_prepare_forward */
	int finished;
	struct nn_arena act;    /* gradients, outputs, scratch (act_alloc) */
	struct nn_arena arena;  /* input, saved values, workspace */
	void *ws;
	float *scratch;
	unsigned char *written;
	int input_grad;         /* nn_net_want_input_grad */
	int no_weight_grads;    /* nn_net_want_weight_grads(net, 0) */
	int shares_weights;     /* flat.w is another net's (nn_net_share_weights) */
	int failed;
	struct error build_err;
};

/* Node 0 is the input: (batch, c, h, w). */
int nn_net_init(struct nn_net *net, const struct nn_backend *be, int c, int h, int w,
		uint64_t seed, struct error *err);
void nn_net_release(struct nn_net *net);

/* Layers: each returns the new node's index, or -1 (the error is kept and
 * returned by nn_net_finish). */
int nn_conv(struct nn_net *net, int in, int cout, int k, int stride, int pad, int dil, int groups,
	    int bias);
/* Transposed convolution, output (h - 1) stride - 2 pad + k; weight (cin, cout, k, k). */
int nn_deconv(struct nn_net *net, int in, int cout, int k, int stride, int pad, int bias);
int nn_bn(struct nn_net *net, int in);
int nn_inorm(struct nn_net *net, int in);
int nn_act(struct nn_net *net, int in, enum nn_act kind, float alpha);
int nn_pool(struct nn_net *net, int in, enum nn_pool_kind kind, int k, int stride, int pad);
int nn_gap(struct nn_net *net, int in);
int nn_linear(struct nn_net *net, int in, int out, int bias); /* flattens c*h*w */
int nn_dropout(struct nn_net *net, int in, float p);
int nn_concat(struct nn_net *net, int a, int b); /* along channels */
int nn_add(struct nn_net *net, int a, int b);
int nn_upsample(struct nn_net *net, int in, enum nn_upsample_mode mode, int scale);

/* Allocate parameters and initialise them from net->seed: conv weights
 * He-normal (He et al. 2015, std = sqrt(2 / fan_in), for the ReLUs after
 * them), linear weights LeCun-normal (std = sqrt(1 / fan_in)), biases 0,
 * norm scales 1. */
int nn_net_finish(struct nn_net *net, struct error *err);
/* Allocate activations, gradients and workspace for batches up to `batch`.
 * Nodes whose gradients are never live at once share their memory, so a
 * node's dy holds its gradient only during nn_net_backward (from its last
 * consumer's visit to its own); after the pass, the first layer's is intact. */
int nn_net_prepare(struct nn_net *net, int batch, struct error *err);
/* The same for forward passes only (prediction, evaluation): no gradient
 * buffers, and outputs share memory where their lifetimes in the forward
 * pass do not overlap (the interval packing of the gradients above), so
 * that only the last node's output is kept after nn_net_forward. Saved
 * values are still kept (a training-mode forward pass works). On such a
 * net nn_net_backward does nothing and nn_net_output_grad and
 * nn_net_input_grad are empty; nn_net_prepare makes it trainable again. */
int nn_net_prepare_forward(struct nn_net *net, int batch, struct error *err);
/* For evaluation and prediction: a net not prepared yet (from a checkpoint)
 * gets nn_net_prepare_forward's buffers; one prepared for training keeps
 * its gradient buffers (nn_net_prepare at this batch). */
int nn_net_prepare_eval(struct nn_net *net, int batch, struct error *err);
/* Tests: 0 gives every node a gradient buffer of its own (nets prepared after). */
void nn_net_set_grad_sharing(int on);
/* Tests: 0 keeps every norm or add and its activation apart (nets finished after). */
void nn_net_set_fusion(int on);

/* CAIRN_NN_PROFILE=1 in the environment times every node's forward and
 * backward pass, the backend synchronized after each (slower; CUDA graphs
 * off), and prints the sums by op and pass on stderr at exit; reset starts
 * the sums again (after a warm-up, say). */
void nn_net_profile_reset(void);

/* Input tensor (node 0, capacity `batch`); fill the first n samples. */
struct nn_tensor *nn_net_input(struct nn_net *net);
/* Forward n samples (n <= batch); returns the last node's output. */
const struct nn_tensor *nn_net_forward(struct nn_net *net, int n);
/* Gradient of the loss with respect to the output: write it, then backward. */
struct nn_tensor *nn_net_output_grad(struct nn_net *net);
void nn_net_backward(struct nn_net *net);
/* Also compute the gradient with respect to the input (off by default: it
 * costs the first layer's backward-data pass), for a net trained through
 * another one: a GAN's generator through its discriminator. After
 * nn_net_backward, nn_net_input_grad holds dL/dinput for the n samples. */
void nn_net_want_input_grad(struct nn_net *net, int on);
struct nn_tensor *nn_net_input_grad(struct nn_net *net);
/* Weight gradients, on by default. Off, nn_net_backward skips the
 * convolutions' and linear layers' weight and bias gradients (they keep
 * what they held; the norms still write theirs): for a pass through weights
 * that this loss does not train, as a discriminator's in its generator's
 * loss (PyTorch's requires_grad = False). A second nn_net_backward after the
 * same forward pass, with another output gradient, is allowed: the forward
 * pass's values are left intact. */
void nn_net_want_weight_grads(struct nn_net *net, int on);
void nn_net_train(struct nn_net *net, int training);

/* Totals: trainable parameters, and forward multiply-adds per sample. */
long long nn_net_param_count(const struct nn_net *net);
double nn_net_macs(const struct nn_net *net);
/* Bytes of the prepared arenas (activations, gradients, saved values and
 * workspace; in bf16 on CUDA the activations' need half of their part). */
size_t nn_net_arena_bytes(const struct nn_net *net);
/* One module used several times in a step (a CycleGAN generator translates,
 * reconstructs and maps to itself): a net keeps one set of activations, so
 * each use is a net of its own, and these make them one module. After both
 * are finished, nn_net_share_weights makes net compute with src's weights
 * (and statistics) instead of its own: the same spec and input shape, -1
 * with a message otherwise. net keeps its own gradients: after the backward
 * passes of every use, nn_net_add_grads(src, net) adds net's into src's, and
 * src's optimizer updates the weights every use reads (PyTorch's autograd
 * sums a module's uses the same way). Release net before src; net's release
 * leaves the weights alone. */
int nn_net_share_weights(struct nn_net *net, struct nn_net *src, struct error *err);
void nn_net_add_grads(struct nn_net *dst, const struct nn_net *src);
/* A parameter by name, or NULL. */
struct nn_param *nn_net_param(struct nn_net *net, const char *name);

#endif
