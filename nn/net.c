/* net: graph building, parameter init, forward and backward dispatch. */
#include "nn/net.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/mem.h"

static int build_fail(struct nn_net *net, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int build_fail(struct nn_net *net, const char *fmt, ...)
{
	if (!net->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(net->build_err.msg, sizeof(net->build_err.msg), fmt, ap);
		va_end(ap);
	}
	net->failed = 1;
	return -1;
}

static struct nn_node *node_add(struct nn_net *net, enum nn_op op, int in0, int in1, int *id)
{
	*id = -1;
	if (net->failed)
		return NULL;
	if (net->finished) {
		build_fail(net, "net: layer added after nn_net_finish");
		return NULL;
	}
	if ((op != NN_OP_INPUT && (in0 < 0 || in0 >= net->nnodes)) || in1 >= net->nnodes) {
		build_fail(net, "net: layer %d: input %d does not exist", net->nnodes,
			   in0 < 0 || in0 >= net->nnodes ? in0 : in1);
		return NULL;
	}
	if (net->nnodes == net->node_cap) {
		int cap = net->node_cap ? 2 * net->node_cap : 32;
		struct nn_node *p = mem_realloc(net->nodes, sizeof(*p) * cap);
		if (!p) {
			build_fail(net, "net: out of memory adding layer %d", net->nnodes);
			return NULL;
		}
		net->nodes = p;
		net->node_cap = cap;
	}
	struct nn_node *nd = &net->nodes[net->nnodes];
	memset(nd, 0, sizeof(*nd));
	nd->op = op;
	nd->in[0] = in0;
	nd->in[1] = in1;
	for (int i = 0; i < 4; i++)
		nd->param[i] = -1;
	if (in0 >= 0) {
		const struct nn_node *a = &net->nodes[in0];
		nd->c = a->c, nd->h = a->h, nd->w = a->w;
	}
	*id = net->nnodes++;
	return nd;
}

static int param_add(struct nn_net *net, int node, const char *what, int n, int c, int h, int w,
		     int trainable, int decay)
{
	if (net->nparams == net->param_cap) {
		int cap = net->param_cap ? 2 * net->param_cap : 32;
		struct nn_param *p = mem_realloc(net->params, sizeof(*p) * cap);
		if (!p)
			return build_fail(net, "net: out of memory adding parameters");
		net->params = p;
		net->param_cap = cap;
	}
	struct nn_param *p = &net->params[net->nparams];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%d.%s", node, what);
	/* shapes only; nn_net_finish allocates */
	p->w.n = n, p->w.c = c, p->w.h = h, p->w.w = w;
	p->trainable = trainable;
	p->decay = decay;
	return net->nparams++;
}

int nn_net_init(struct nn_net *net, const struct nn_backend *be, int c, int h, int w,
		uint64_t seed, struct error *err)
{
	memset(net, 0, sizeof(*net));
	net->be = be;
	net->seed = seed;
	net->training = 1;
	if (c <= 0 || h <= 0 || w <= 0)
		return error_set(err, "net: bad input shape %dx%dx%d", c, h, w);
	int id;
	struct nn_node *nd = node_add(net, NN_OP_INPUT, -1, -1, &id);
	if (!nd) {
		*err = net->build_err;
		return -1;
	}
	nd->c = c, nd->h = h, nd->w = w;
	return 0;
}

int nn_conv(struct nn_net *net, int in, int cout, int k, int stride, int pad, int dil, int groups,
	    int bias)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_CONV, in, -1, &id);
	if (!nd)
		return -1;
	struct nn_conv_desc d = {.n = 1, .cin = nd->c, .h = nd->h, .w = nd->w, .cout = cout,
				 .kh = k, .kw = k, .stride = stride, .pad = pad, .dil = dil,
				 .groups = groups};
	struct error e;
	if (nn_conv_desc_init(&d, &e) < 0)
		return build_fail(net, "net: layer %d: %s", id, e.msg);
	nd->k = k, nd->stride = stride, nd->pad = pad, nd->dil = dil, nd->groups = groups;
	nd->bias = bias;
	nd->macs = nn_conv_macs(&d);
	nd->param[0] = param_add(net, id, "w", cout, d.cin / groups, k, k, 1, 1);
	if (bias)
		nd->param[1] = param_add(net, id, "b", 1, cout, 1, 1, 1, 0);
	nd->c = cout, nd->h = d.hout, nd->w = d.wout;
	return net->failed ? -1 : id;
}

/* The convolution whose data-gradient is this transposed convolution: its
 * input is the deconv's output and its output the deconv's input. */
static struct nn_conv_desc deconv_desc(const struct nn_net *net, const struct nn_node *nd, int n)
{
	const struct nn_node *a = &net->nodes[nd->in[0]];
	struct nn_conv_desc d = {.n = n, .cin = nd->c, .h = nd->h, .w = nd->w, .cout = a->c,
				 .kh = nd->k, .kw = nd->k, .stride = nd->stride, .pad = nd->pad,
				 .dil = 1, .groups = 1};
	d.hout = a->h, d.wout = a->w;
	return d;
}

int nn_deconv(struct nn_net *net, int in, int cout, int k, int stride, int pad, int bias)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_DECONV, in, -1, &id);
	if (!nd)
		return -1;
	int cin = nd->c, h = nd->h, w = nd->w;
	int ho = (h - 1) * stride - 2 * pad + k, wo = (w - 1) * stride - 2 * pad + k;
	if (cout <= 0 || k <= 0 || stride <= 0 || pad < 0 || ho <= 0 || wo <= 0)
		return build_fail(net, "net: layer %d: bad transposed conv (cout %d, k %d, stride %d, pad %d) on %dx%d",
				  id, cout, k, stride, pad, h, w);
	nd->k = k, nd->stride = stride, nd->pad = pad, nd->dil = 1, nd->groups = 1;
	nd->bias = bias;
	nd->c = cout, nd->h = ho, nd->w = wo;
	struct nn_conv_desc d = deconv_desc(net, nd, 1);
	struct error e;
	int hout = d.hout, wout = d.wout;
	if (nn_conv_desc_init(&d, &e) < 0 || d.hout != hout || d.wout != wout)
		return build_fail(net, "net: layer %d: transposed conv shape does not invert", id);
	nd->macs = nn_conv_macs(&d);
	nd->param[0] = param_add(net, id, "w", cin, cout, k, k, 1, 1);
	if (bias)
		nd->param[1] = param_add(net, id, "b", 1, cout, 1, 1, 1, 0);
	return net->failed ? -1 : id;
}

static int norm_add(struct nn_net *net, int in, enum nn_op op)
{
	int id;
	struct nn_node *nd = node_add(net, op, in, -1, &id);
	if (!nd)
		return -1;
	nd->param[0] = param_add(net, id, "gamma", 1, nd->c, 1, 1, 1, 0);
	nd->param[1] = param_add(net, id, "beta", 1, nd->c, 1, 1, 1, 0);
	if (op == NN_OP_BN) {
		nd->param[2] = param_add(net, id, "mean", 1, nd->c, 1, 1, 0, 0);
		nd->param[3] = param_add(net, id, "var", 1, nd->c, 1, 1, 0, 0);
	}
	return net->failed ? -1 : id;
}

int nn_bn(struct nn_net *net, int in) { return norm_add(net, in, NN_OP_BN); }
int nn_inorm(struct nn_net *net, int in) { return norm_add(net, in, NN_OP_INORM); }

int nn_act(struct nn_net *net, int in, enum nn_act kind, float alpha)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_ACT, in, -1, &id);
	if (!nd)
		return -1;
	nd->act = kind;
	nd->alpha = alpha;
	return id;
}

static struct nn_pool_desc pool_desc(const struct nn_net *net, const struct nn_node *nd, int n)
{
	const struct nn_node *a = &net->nodes[nd->in[0]];
	struct nn_pool_desc d = {.kind = nd->pool, .n = n, .c = a->c, .h = a->h, .w = a->w,
				 .kh = nd->k, .kw = nd->k, .sh = nd->stride, .sw = nd->stride,
				 .ph = nd->pad, .pw = nd->pad, .hout = nd->h, .wout = nd->w};
	if (nd->op == NN_OP_GAP) {
		d.kind = NN_POOL_AVG;
		d.kh = d.sh = a->h;
		d.kw = d.sw = a->w;
		d.ph = d.pw = 0;
	}
	return d;
}

int nn_pool(struct nn_net *net, int in, enum nn_pool_kind kind, int k, int stride, int pad)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_POOL, in, -1, &id);
	if (!nd)
		return -1;
	nd->pool = kind, nd->k = k, nd->stride = stride, nd->pad = pad;
	struct nn_pool_desc d = pool_desc(net, nd, 1);
	struct error e;
	if (nn_pool_desc_init(&d, &e) < 0)
		return build_fail(net, "net: layer %d: %s", id, e.msg);
	nd->h = d.hout, nd->w = d.wout;
	return id;
}

int nn_gap(struct nn_net *net, int in)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_GAP, in, -1, &id);
	if (!nd)
		return -1;
	nd->h = nd->w = 1;
	return id;
}

int nn_linear(struct nn_net *net, int in, int out, int bias)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_LINEAR, in, -1, &id);
	if (!nd)
		return -1;
	if (out <= 0)
		return build_fail(net, "net: layer %d: linear with %d outputs", id, out);
	int fan = nd->c * nd->h * nd->w;
	nd->bias = bias;
	nd->macs = (double)fan * out;
	nd->param[0] = param_add(net, id, "w", 1, 1, out, fan, 1, 1);
	if (bias)
		nd->param[1] = param_add(net, id, "b", 1, out, 1, 1, 1, 0);
	nd->c = out, nd->h = 1, nd->w = 1;
	return net->failed ? -1 : id;
}

int nn_dropout(struct nn_net *net, int in, float p)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_DROPOUT, in, -1, &id);
	if (!nd)
		return -1;
	if (!(p >= 0 && p < 1))
		return build_fail(net, "net: layer %d: dropout probability %g not in [0, 1)", id, p);
	nd->p = p;
	return id;
}

int nn_concat(struct nn_net *net, int a, int b)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_CONCAT, a, b, &id);
	if (!nd)
		return -1;
	const struct nn_node *na = &net->nodes[a], *nb = &net->nodes[b];
	if (b < 0 || na->h != nb->h || na->w != nb->w)
		return build_fail(net, "net: layer %d: concat of %dx%d and %dx%d", id, na->h, na->w,
				  b < 0 ? 0 : nb->h, b < 0 ? 0 : nb->w);
	nd->c = na->c + nb->c;
	return id;
}

int nn_add(struct nn_net *net, int a, int b)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_ADD, a, b, &id);
	if (!nd)
		return -1;
	const struct nn_node *na = &net->nodes[a], *nb = &net->nodes[b];
	if (b < 0 || na->c != nb->c || na->h != nb->h || na->w != nb->w)
		return build_fail(net, "net: layer %d: add of %dx%dx%d and a different shape", id,
				  na->c, na->h, na->w);
	return id;
}

int nn_upsample(struct nn_net *net, int in, enum nn_upsample_mode mode, int scale)
{
	int id;
	struct nn_node *nd = node_add(net, NN_OP_UPSAMPLE, in, -1, &id);
	if (!nd)
		return -1;
	if (scale < 1)
		return build_fail(net, "net: layer %d: upsampling scale %d", id, scale);
	nd->up = mode, nd->scale = scale;
	nd->h *= scale, nd->w *= scale;
	return id;
}

/* splitmix64 and Box-Muller: a seeded normal stream for weight init. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double rng_normal(uint64_t *s)
{
	double u1 = ((rng_next(s) >> 11) + 1.0) / 9007199254740993.0;
	double u2 = (rng_next(s) >> 11) / 9007199254740992.0;
	return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* The group of a parameter in the flat layout (struct nn_flat). */
static int flat_group(const struct nn_param *p)
{
	return !p->trainable ? 2 : p->decay ? 0 : 1;
}

/* Lay the parameters out in the flat buffers, allocate w and g, zero them
 * (padding included) and make every parameter's w and g views into them. */
static int flat_alloc(struct nn_net *net, struct error *err)
{
	struct nn_flat *f = &net->flat;
	size_t at = 0;
	for (int group = 0; group < 3; group++) {
		if (group == 1)
			f->ndecay = at;
		if (group == 2)
			f->ntrain = at;
		for (int i = 0; i < net->nparams; i++) {
			struct nn_param *p = &net->params[i];
			if (flat_group(p) != group)
				continue;
			p->off = at;
			at += nn_arena_need(nn_tensor_count(&p->w)) / sizeof(float);
		}
	}
	f->n = at;
	const struct nn_backend *be = net->be;
	if (f->n && !(f->w = be->alloc(f->n * sizeof(float))))
		return nn_alloc_failed(be, err, "net: out of %s memory for %zu parameter values",
				       be->name, f->n);
	if (f->ntrain && !(f->g = be->alloc(f->ntrain * sizeof(float))))
		return nn_alloc_failed(be, err, "net: out of %s memory for %zu parameter gradients",
				       be->name, f->ntrain);
	if (f->n)
		be->fill(f->w, f->n, 0);
	if (f->ntrain)
		be->fill(f->g, f->ntrain, 0);
	for (int i = 0; i < net->nparams; i++) {
		struct nn_param *p = &net->params[i];
		int n = p->w.n, c = p->w.c, h = p->w.h, w = p->w.w;
		nn_tensor_view(&p->w, be, f->w + p->off, n, c, h, w);
		if (p->trainable)
			nn_tensor_view(&p->g, be, f->g + p->off, n, c, h, w);
	}
	return 0;
}

/* A batch or instance norm, or a residual add, whose output only an
 * activation reads computes that activation itself (the norm slots and
 * add_act take it): one pass over the tensor instead of two, forward and
 * backward, and no tensor between them. The activation node then does
 * nothing; its output and gradient are the fused node's (nn_net_prepare
 * makes them one). ReLU and LeakyReLU with alpha < 0 stay apart: the fused
 * backward tells the sign of the activation's input from its output. The
 * values are the same as unfused, bit for bit. */
static int fusion = 1;

void nn_net_set_fusion(int on) { fusion = on; }

/* nd computes the activation after it (a fused norm or add) */
static int computes_act(const struct nn_node *nd) { return nd->fused && nd->op != NN_OP_ACT; }

static void fuse_activations(struct nn_net *net)
{
	int *readers = mem_calloc((size_t)net->nnodes, sizeof(int));
	if (!readers)
		return; /* nothing fused: slower, not wrong */
	for (int j = 0; j < net->nnodes; j++)
		for (int k = 0; k < 2; k++)
			if (net->nodes[j].in[k] >= 0)
				readers[net->nodes[j].in[k]]++;
	for (int a = 1; fusion && a < net->nnodes; a++) {
		struct nn_node *act = &net->nodes[a], *src = &net->nodes[act->in[0]];
		int sign_safe = (act->act != NN_ACT_RELU && act->act != NN_ACT_LEAKY) || act->alpha >= 0;
		if (act->op == NN_OP_ACT && act->act != NN_ACT_NONE && sign_safe &&
		    (src->op == NN_OP_BN || src->op == NN_OP_INORM || src->op == NN_OP_ADD) &&
		    readers[act->in[0]] == 1) {
			src->fused = a;
			act->fused = act->in[0];
		}
	}
	mem_free(readers);
}

int nn_net_finish(struct nn_net *net, struct error *err)
{
	if (net->failed) {
		*err = net->build_err;
		return -1;
	}
	if (net->finished)
		return 0;
	uint64_t rng = net->seed;
	if (flat_alloc(net, err) < 0)
		return -1;
	for (int id = 0; id < net->nnodes; id++) {
		struct nn_node *nd = &net->nodes[id];
		for (int k = 0; k < 4; k++) {
			if (nd->param[k] < 0)
				continue;
			struct nn_param *p = &net->params[nd->param[k]];
			size_t count = nn_tensor_count(&p->w);
			const char *what = strchr(p->name, '.') + 1;
			if (!strcmp(what, "w")) {
				float *host = mem_alloc(count * sizeof(float));
				if (!host)
					return error_set(err, "net: out of memory initialising %s", p->name);
				/* fan_in: inputs feeding one output (for a transposed conv, the
				 * weight is (cin, cout, k, k) and each output sees cin k k / stride^2) */
				double fan = nd->op == NN_OP_DECONV
						     ? (double)p->w.n * p->w.h * p->w.w / (nd->stride * nd->stride)
						     : (double)count / (nd->op == NN_OP_LINEAR ? p->w.h : p->w.n);
				double sd = sqrt((nd->op == NN_OP_LINEAR ? 1.0 : 2.0) / fan);
				for (size_t j = 0; j < count; j++)
					host[j] = (float)(sd * rng_normal(&rng));
				net->be->upload(p->w.data, host, count * sizeof(float));
				mem_free(host);
			} else {
				int one = !strcmp(what, "gamma") || !strcmp(what, "var");
				net->be->fill(p->w.data, count, one ? 1.0f : 0.0f);
			}
		}
	}
	net->written = mem_calloc(net->nnodes, 1);
	if (!net->written)
		return error_set(err, "net: out of memory");
	fuse_activations(net);
	net->finished = 1;
	return 0;
}

static size_t node_count(const struct nn_node *nd, int batch)
{
	return (size_t)batch * nd->c * nd->h * nd->w;
}

static struct nn_conv_desc conv_desc(const struct nn_net *net, const struct nn_node *nd, int n)
{
	const struct nn_node *a = &net->nodes[nd->in[0]];
	struct nn_conv_desc d = {.n = n, .cin = a->c, .h = a->h, .w = a->w, .cout = nd->c,
				 .kh = nd->k, .kw = nd->k, .stride = nd->stride, .pad = nd->pad,
				 .dil = nd->dil, .groups = nd->groups, .hout = nd->h, .wout = nd->w};
	return d;
}

/* Floats of the saved values of a node: (aux, aux2). */
static void aux_counts(const struct nn_net *net, const struct nn_node *nd, int batch, size_t *a,
		       size_t *b)
{
	*a = *b = 0;
	switch (nd->op) {
	case NN_OP_BN:
		*a = *b = nd->c;
		break;
	case NN_OP_INORM:
		*a = *b = (size_t)batch * nd->c;
		break;
	case NN_OP_POOL:
		*a = nd->pool == NN_POOL_MAX ? node_count(nd, batch) : 0;
		break;
	case NN_OP_DROPOUT:
		*a = node_count(nd, batch);
		break;
	default:
		break;
	}
	(void)net;
}

/* Gradient buffers are shared between nodes whose gradients are never live
 * at the same time. The backward pass visits nodes from the last to the
 * first; node i's gradient is written first when its last consumer is
 * visited (the loss writes the output's before the pass) and read for the
 * last time when i itself is visited: it lives over [i, last consumer].
 * A fused activation's gradient is read by the visit of the node that
 * computes it (a norm or an add), so it lives from there, and that node has
 * none of its own (it uses the activation's). Nodes are placed largest
 * first at the lowest offset that overlaps no placed node living at the
 * same time (an interval-graph packing, as framework memory planners do).
 * Returns the region's size in floats and each node's offset in off[];
 * (size_t)-1 when out of memory. */
static int share_grads = 1;

void nn_net_set_grad_sharing(int on) { share_grads = on; }

/* Place blocks len[i] living over [first[i], last[i]] (inclusive) in one
 * region: largest first, each at the lowest offset that overlaps no placed
 * block living at the same time (sharing off: none shares). Returns the
 * region's size (the units of len) and each block's offset in off[];
 * (size_t)-1 when out of memory. */
static size_t pack_intervals(int n, const int *first, const int *last, const size_t *len,
			     int sharing, size_t *off)
{
	int *order = mem_alloc((size_t)n * sizeof(int));
	if (!order)
		return (size_t)-1;
	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int i = 1; i < n; i++) /* largest first, stable: insertion sort */
		for (int j = i; j > 0 && len[order[j]] > len[order[j - 1]]; j--) {
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	size_t total = 0;
	for (int a = 0; a < n; a++) {
		int i = order[a];
		size_t at = 0;
		for (int moved = 1; moved;) { /* lowest offset clear of every live placed block */
			moved = 0;
			for (int b = 0; b < a; b++) {
				int j = order[b];
				int live = !sharing || !(last[i] < first[j] || last[j] < first[i]);
				if (live && at < off[j] + len[j] && off[j] < at + len[i]) {
					at = off[j] + len[j];
					moved = 1;
				}
			}
		}
		off[i] = at;
		total = at + len[i] > total ? at + len[i] : total;
	}
	mem_free(order);
	return total;
}

/* The buffers of a pass: each node's gradient (backward) or output (a
 * forward-only net), lengths in 64-byte steps. A fused activation's buffer
 * is first written by the node that computes it (a norm or an add), which
 * has none of its own. backward: node i's gradient lives over [i, last
 * consumer] (see above); forward: node i's output over [i, last consumer],
 * the last node's to the end (the caller reads it), the input's elsewhere. */
static size_t plan_buffers(const struct nn_net *net, int batch, int forward, size_t *off)
{
	int n = net->nnodes;
	int *last = mem_alloc((size_t)n * sizeof(int)), *first = mem_alloc((size_t)n * sizeof(int));
	size_t *len = mem_alloc((size_t)n * sizeof(size_t));
	size_t total = (size_t)-1;
	if (last && first && len) {
		for (int i = 0; i < n; i++) {
			const struct nn_node *nd = &net->nodes[i];
			first[i] = nd->op == NN_OP_ACT && nd->fused ? nd->fused : i;
			last[i] = i;
			len[i] = computes_act(nd) || (forward && i == 0)
				     ? 0
				     : (node_count(nd, batch) + 15) / 16 * 16;
		}
		for (int j = 0; j < n; j++)
			for (int k = 0; k < 2; k++)
				if (net->nodes[j].in[k] >= 0 && last[net->nodes[j].in[k]] < j)
					last[net->nodes[j].in[k]] = j;
		last[n - 1] = n; /* backward: the loss writes it first; forward: read after */
		total = pack_intervals(n, first, last, len, share_grads, off);
	}
	mem_free(last), mem_free(first), mem_free(len);
	return total;
}

static void arena_release(struct nn_net *net)
{
	nn_arena_release(&net->act);
	nn_arena_release(&net->arena);
}

static int prepare(struct nn_net *net, int batch, int forward, struct error *err)
{
	if (!net->finished)
		return error_set(err, "net: prepare before finish");
	if (batch <= 0)
		return error_set(err, "net: batch size %d", batch);
	if (batch == net->batch && forward == net->forward_only)
		return 0;
	/* one tensor is indexed with int in the kernels and in cuDNN's 4-d
	   descriptors: say so before anything is allocated */
	for (int id = 0; id < net->nnodes; id++) {
		const struct nn_node *nd = &net->nodes[id];
		size_t per = node_count(nd, 1);
		if (per && node_count(nd, batch) > INT_MAX)
			return error_set(
			    err,
			    "net: batch %d: layer %d's output holds %zu values, more than "
			    "the 2^31 - 1 one tensor may hold; use a batch of at most %zu",
			    batch, id, node_count(nd, batch), (size_t)INT_MAX / per);
	}
	arena_release(net);
	net->batch = 0; /* until this succeeds */
	size_t *off = mem_alloc((size_t)net->nnodes * sizeof(size_t));
	size_t planned = off ? plan_buffers(net, batch, forward, off) : (size_t)-1;
	if (planned == (size_t)-1) {
		mem_free(off);
		return error_set(err, "net: out of memory planning buffers");
	}
	/* Two arenas. The activation span holds the gradients, the outputs of
	 * every node but the input, and the scratch where gradients are summed
	 * (forward only: the outputs, sharing memory as planned, and nothing
	 * else); it holds nothing else, so the backend may keep it in lower
	 * precision (act_alloc). The other holds the input, the saved values
	 * (statistics, pool indices, dropout masks) and the workspace. */
	size_t span = nn_arena_need(planned), need = 0, ws = 0, maxc = 0;
	for (int id = 0; id < net->nnodes; id++) {
		struct nn_node *nd = &net->nodes[id];
		size_t cnt = node_count(nd, batch), a, b;
		aux_counts(net, nd, batch, &a, &b);
		/* a node computing its activation has no output of its own */
		if (id == 0)
			need += nn_arena_need(cnt);
		else if (!computes_act(nd) && !forward)
			span += nn_arena_need(cnt);
		need += nn_arena_need(a) + nn_arena_need(b);
		maxc = cnt > maxc ? cnt : maxc;
		if (nd->op == NN_OP_CONV || nd->op == NN_OP_DECONV) {
			struct nn_conv_desc d = nd->op == NN_OP_CONV ? conv_desc(net, nd, batch)
								     : deconv_desc(net, nd, batch);
			size_t s = net->be->conv2d_workspace(&d);
			ws = s > ws ? s : ws;
		}
	}
	if (!forward)
		span += nn_arena_need(maxc);
	need += nn_arena_need((ws + 4 + sizeof(float) - 1) / sizeof(float)); /* carved: ws + 4 */
	float *base = NULL; /* the planned buffers: gradients, or forward's outputs */
	if (nn_arena_init_act(&net->act, net->be, span, err) < 0 ||
	    nn_arena_init(&net->arena, net->be, need, err) < 0 ||
	    !(base = nn_arena_bytes(&net->act, planned * sizeof(float), err))) {
		mem_free(off);
		return -1;
	}
	for (int id = 0; id < net->nnodes; id++) {
		struct nn_node *nd = &net->nodes[id];
		if (forward) {
			memset(&nd->dy, 0, sizeof(nd->dy));
			if (id > 0 && !computes_act(nd))
				nn_tensor_view(&nd->y, net->be, base + off[id], batch, nd->c, nd->h,
					       nd->w);
			continue;
		}
		nn_tensor_view(&nd->dy, net->be, base + off[id], batch, nd->c, nd->h, nd->w);
		if (id > 0 && !computes_act(nd) && /* else the activation's, below */
		    nn_arena_tensor(&net->act, &nd->y, batch, nd->c, nd->h, nd->w, err) < 0) {
			mem_free(off);
			return -1;
		}
	}
	mem_free(off);
	for (int id = 1; id < net->nnodes; id++) {
		struct nn_node *nd = &net->nodes[id];
		if (computes_act(nd)) {
			nd->y = net->nodes[nd->fused].y;
			nd->dy = net->nodes[nd->fused].dy;
		}
	}
	net->scratch = forward ? NULL : nn_arena_bytes(&net->act, maxc * sizeof(float), err);
	if (!forward && !net->scratch)
		return -1;
	struct nn_node *in = &net->nodes[0];
	if (nn_arena_tensor(&net->arena, &in->y, batch, in->c, in->h, in->w, err) < 0)
		return -1;
	for (int id = 0; id < net->nnodes; id++) {
		struct nn_node *nd = &net->nodes[id];
		size_t a, b;
		aux_counts(net, nd, batch, &a, &b);
		if (nn_arena_tensor(&net->arena, &nd->aux, 1, (int)a, 1, 1, err) < 0 ||
		    nn_arena_tensor(&net->arena, &nd->aux2, 1, (int)b, 1, 1, err) < 0)
			return -1;
	}
	net->ws = nn_arena_bytes(&net->arena, ws + 4, err);
	if (!net->ws)
		return -1;
	net->batch = batch;
	net->n = batch;
	net->forward_only = forward;
	return 0;
}

int nn_net_prepare(struct nn_net *net, int batch, struct error *err)
{
	return prepare(net, batch, 0, err);
}

int nn_net_prepare_forward(struct nn_net *net, int batch, struct error *err)
{
	return prepare(net, batch, 1, err);
}

int nn_net_prepare_eval(struct nn_net *net, int batch, struct error *err)
{
	return prepare(net, batch, net->batch == 0 || net->forward_only, err);
}

struct nn_tensor *nn_net_input(struct nn_net *net) { return &net->nodes[0].y; }
void nn_net_train(struct nn_net *net, int training) { net->training = training; }

static float *P(struct nn_net *net, const struct nn_node *nd, int k)
{
	return nd->param[k] < 0 ? NULL : net->params[nd->param[k]].w.data;
}

static float *G(struct nn_net *net, const struct nn_node *nd, int k)
{
	return nd->param[k] < 0 ? NULL : net->params[nd->param[k]].g.data;
}

/* The activation a norm or add node computes (fuse_activations). */
static enum nn_act fused_act(const struct nn_net *net, const struct nn_node *nd)
{
	return nd->fused ? net->nodes[nd->fused].act : NN_ACT_NONE;
}
static float fused_alpha(const struct nn_net *net, const struct nn_node *nd)
{
	return nd->fused ? net->nodes[nd->fused].alpha : 0;
}

/* ---- CAIRN_NN_PROFILE=1: time by op ------------------------------------
 * Every node's pass timed, the backend synchronized before and after it
 * (slower; and nn/cuda/graph.cu runs every step eagerly then); the sums by
 * op and direction go to stderr when the process exits. */
enum { NOPS = NN_OP_UPSAMPLE + 1 };
static const char *const op_names[NOPS] = {
    "input",	   "conv",   "deconv",	"batch norm", "instance norm", "activation", "pool",
    "global pool", "linear", "dropout", "concat",     "add",	       "upsample",
};
static int profiling = -1;
static double prof_ms[NOPS][2], prof_last;
static long prof_calls[NOPS][2];

static void prof_report(void)
{
	double total = 0;
	for (int op = 0; op < NOPS; op++)
		total += prof_ms[op][0] + prof_ms[op][1];
	fprintf(stderr,
		"cairn: profile (CAIRN_NN_PROFILE): the nets' passes, %.1f ms in all, by op; the "
		"backend synchronized after each node\n"
		"  %-14s %-8s %8s %10s %9s %6s\n",
		total, "op", "pass", "calls", "total ms", "ms/call", "share");
	for (;;) { /* the largest left first */
		int best = -1;
		for (int k = 0; k < 2 * NOPS; k++)
			if (prof_calls[k / 2][k % 2] &&
			    (best < 0 || prof_ms[k / 2][k % 2] > prof_ms[best / 2][best % 2]))
				best = k;
		if (best < 0)
			break;
		int op = best / 2, dir = best % 2;
		fprintf(stderr, "  %-14s %-8s %8ld %10.2f %9.4f %5.1f%%\n", op_names[op],
			dir ? "backward" : "forward", prof_calls[op][dir], prof_ms[op][dir],
			prof_ms[op][dir] / prof_calls[op][dir], 100 * prof_ms[op][dir] / total);
		prof_calls[op][dir] = 0;
	}
}

void nn_net_profile_reset(void)
{
	memset(prof_ms, 0, sizeof(prof_ms));
	memset(prof_calls, 0, sizeof(prof_calls));
}

static int prof_on(const struct nn_backend *be)
{
	if (profiling < 0) {
		const char *env = getenv("CAIRN_NN_PROFILE");
		profiling = env && *env && strcmp(env, "0");
		if (profiling)
			atexit(prof_report);
	}
	if (profiling) {
		be->sync();
		prof_last = clock_now();
	}
	return profiling;
}

static void prof_tick(const struct nn_backend *be, enum nn_op op, int dir)
{
	be->sync();
	double t = clock_now();
	prof_ms[op][dir] += (t - prof_last) * 1e3;
	prof_calls[op][dir]++;
	prof_last = t;
}

const struct nn_tensor *nn_net_forward(struct nn_net *net, int n)
{
	const struct nn_backend *be = net->be;
	net->n = n;
	if (net->training)
		net->step++;
	if (be->params_ready && net->flat.n)
		be->params_ready(net->flat.w, net->flat.n);
	int prof = prof_on(be);
	for (int id = 1; id < net->nnodes; id++) {
		struct nn_node *nd = &net->nodes[id];
		struct nn_node *a = &net->nodes[nd->in[0]];
		const float *x = a->y.data;
		float *y = nd->y.data;
		size_t cnt = node_count(nd, n);
		int hw = nd->h * nd->w;
		switch (nd->op) {
		case NN_OP_INPUT:
			break;
		case NN_OP_CONV: {
			struct nn_conv_desc d = conv_desc(net, nd, n);
			be->conv2d_fwd(&d, x, P(net, nd, 0), P(net, nd, 1), y, net->ws);
			break;
		}
		case NN_OP_DECONV: {
			struct nn_conv_desc d = deconv_desc(net, nd, n);
			be->conv2d_bwd_data(&d, x, P(net, nd, 0), y, net->ws);
			if (nd->bias)
				be->bias_add(n, nd->c, hw, y, P(net, nd, 1));
			break;
		}
		case NN_OP_BN:
			if (net->training)
				be->bn_fwd_train(n, nd->c, hw, fused_act(net, nd), fused_alpha(net, nd), x,
						 P(net, nd, 0), P(net, nd, 1), 1e-5f, 0.1f, y,
						 nd->aux.data, nd->aux2.data, P(net, nd, 2),
						 P(net, nd, 3));
			else
				be->bn_fwd_eval(n, nd->c, hw, fused_act(net, nd), fused_alpha(net, nd), x,
						P(net, nd, 0), P(net, nd, 1), P(net, nd, 2),
						P(net, nd, 3), 1e-5f, y);
			break;
		case NN_OP_INORM:
			be->in_fwd(n, nd->c, hw, fused_act(net, nd), fused_alpha(net, nd), x,
				   P(net, nd, 0), P(net, nd, 1), 1e-5f, y, nd->aux.data, nd->aux2.data);
			break;
		case NN_OP_ACT:
			if (!nd->fused) /* else its norm or add computed it */
				be->act_fwd(nd->act, nd->alpha, x, y, cnt);
			break;
		case NN_OP_POOL:
		case NN_OP_GAP: {
			struct nn_pool_desc d = pool_desc(net, nd, n);
			be->pool_fwd(&d, x, y, (int32_t *)nd->aux.data);
			break;
		}
		case NN_OP_LINEAR: {
			int fan = a->c * a->h * a->w;
			be->gemm(0, 1, n, nd->c, fan, 1, x, fan, P(net, nd, 0), fan, 0, y, nd->c);
			if (nd->bias)
				be->bias_add(n, nd->c, 1, y, P(net, nd, 1));
			break;
		}
		case NN_OP_DROPOUT:
			if (net->training && nd->p > 0)
				be->dropout_fwd(cnt, nd->p, net->seed ^ (net->step * 1000003ULL + id), x, y,
						nd->aux.data);
			else
				be->copy(y, x, cnt);
			break;
		case NN_OP_CONCAT: {
			struct nn_node *b = &net->nodes[nd->in[1]];
			be->channel_copy(n, hw, a->c, x, nd->c, 0, y, 0);
			be->channel_copy(n, hw, b->c, b->y.data, nd->c, a->c, y, 0);
			break;
		}
		case NN_OP_ADD:
			be->add_act(fused_act(net, nd), fused_alpha(net, nd), x,
				    net->nodes[nd->in[1]].y.data, y, cnt);
			break;
		case NN_OP_UPSAMPLE:
			be->upsample_fwd(nd->up, n, a->c, a->h, a->w, nd->scale, x, y);
			break;
		}
		if (prof)
			prof_tick(be, nd->op, 0);
	}
	return &net->nodes[net->nnodes - 1].y;
}

struct nn_tensor *nn_net_output_grad(struct nn_net *net) { return &net->nodes[net->nnodes - 1].dy; }

/* Where the gradient for input node `in` goes: its own dy if nothing has
 * written it yet in this pass, else the scratch buffer, added in afterwards
 * (a node read by several layers gets the sum of their gradients). */
static float *grad_dst(struct nn_net *net, int in, int *acc)
{
	if (!net->written[in]) {
		net->written[in] = 1;
		*acc = 0;
		return net->nodes[in].dy.data;
	}
	*acc = 1;
	return net->scratch;
}

static void grad_done(struct nn_net *net, int in, int acc)
{
	if (acc)
		net->be->axpy(node_count(&net->nodes[in], net->n), 1, net->scratch,
			      net->nodes[in].dy.data);
}

void nn_net_backward(struct nn_net *net)
{
	if (net->forward_only)
		return; /* no gradient buffers (nn_net_prepare_forward) */
	const struct nn_backend *be = net->be;
	int n = net->n, acc, acc2;
	memset(net->written, 0, net->nnodes);
	net->written[net->nnodes - 1] = 1;
	int prof = prof_on(be);
	for (int id = net->nnodes - 1; id >= 1; id--) {
		struct nn_node *nd = &net->nodes[id];
		if (nd->op == NN_OP_ACT && nd->fused) { /* its norm's or add's backward does it */
			net->written[nd->fused] = net->written[id];
			continue;
		}
		if (!net->written[id]) { /* not on a path to the output: no gradient */
			for (int k = 0; k < 4; k++)
				if (nd->param[k] >= 0 && net->params[nd->param[k]].trainable) {
					struct nn_tensor *g = &net->params[nd->param[k]].g;
					be->fill(g->data, nn_tensor_count(g), 0);
				}
			continue;
		}
		int ia = nd->in[0];
		struct nn_node *a = &net->nodes[ia];
		const float *x = a->y.data, *y = nd->y.data, *dy = nd->dy.data;
		size_t cnt = node_count(nd, n);
		int hw = nd->h * nd->w;
		switch (nd->op) {
		case NN_OP_INPUT:
			break;
		case NN_OP_CONV: {
			struct nn_conv_desc d = conv_desc(net, nd, n);
			if (!net->no_weight_grads)
				be->conv2d_bwd_filter(&d, x, dy, G(net, nd, 0), G(net, nd, 1),
						      net->ws);
			if (ia == 0 && !net->input_grad)
				break; /* no one needs the input's gradient */
			float *dx = grad_dst(net, ia, &acc);
			be->conv2d_bwd_data(&d, dy, P(net, nd, 0), dx, net->ws);
			grad_done(net, ia, acc);
			break;
		}
		case NN_OP_DECONV: {
			struct nn_conv_desc d = deconv_desc(net, nd, n);
			if (!net->no_weight_grads) {
				be->conv2d_bwd_filter(&d, dy, x, G(net, nd, 0), NULL, net->ws);
				if (nd->bias)
					be->bias_grad(n, nd->c, hw, dy, G(net, nd, 1));
			}
			if (ia == 0 && !net->input_grad)
				break;
			float *dx = grad_dst(net, ia, &acc);
			be->conv2d_fwd(&d, dy, P(net, nd, 0), NULL, dx, net->ws);
			grad_done(net, ia, acc);
			break;
		}
		case NN_OP_BN: {
			float *dx = grad_dst(net, ia, &acc);
			be->bn_bwd(n, nd->c, hw, fused_act(net, nd), fused_alpha(net, nd), x, y, dy,
				   P(net, nd, 0), nd->aux.data, nd->aux2.data, dx, G(net, nd, 0),
				   G(net, nd, 1));
			grad_done(net, ia, acc);
			break;
		}
		case NN_OP_INORM: {
			float *dx = grad_dst(net, ia, &acc);
			be->in_bwd(n, nd->c, hw, fused_act(net, nd), fused_alpha(net, nd), x, y, dy,
				   P(net, nd, 0), nd->aux.data, nd->aux2.data, dx, G(net, nd, 0),
				   G(net, nd, 1));
			grad_done(net, ia, acc);
			break;
		}
		case NN_OP_ACT: {
			float *dx = grad_dst(net, ia, &acc);
			be->act_bwd(nd->act, nd->alpha, x, y, dy, dx, cnt);
			grad_done(net, ia, acc);
			break;
		}
		case NN_OP_POOL:
		case NN_OP_GAP: {
			struct nn_pool_desc d = pool_desc(net, nd, n);
			float *dx = grad_dst(net, ia, &acc);
			be->pool_bwd(&d, dy, (const int32_t *)nd->aux.data, dx);
			grad_done(net, ia, acc);
			break;
		}
		case NN_OP_LINEAR: {
			int fan = a->c * a->h * a->w;
			if (!net->no_weight_grads) {
				be->gemm(1, 0, nd->c, fan, n, 1, dy, nd->c, x, fan, 0, G(net, nd, 0),
					 fan);
				if (nd->bias)
					be->bias_grad(n, nd->c, 1, dy, G(net, nd, 1));
			}
			if (ia == 0 && !net->input_grad)
				break;
			float *dx = grad_dst(net, ia, &acc);
			be->gemm(0, 0, n, fan, nd->c, 1, dy, nd->c, P(net, nd, 0), fan, 0, dx, fan);
			grad_done(net, ia, acc);
			break;
		}
		case NN_OP_DROPOUT: {
			float *dx = grad_dst(net, ia, &acc);
			if (net->training && nd->p > 0)
				be->mul(dy, nd->aux.data, dx, cnt);
			else
				be->copy(dx, dy, cnt);
			grad_done(net, ia, acc);
			break;
		}
		case NN_OP_CONCAT: {
			int ib = nd->in[1];
			struct nn_node *b = &net->nodes[ib];
			float *da = grad_dst(net, ia, &acc);
			be->channel_slice(n, hw, nd->c, 0, dy, a->c, da, 0);
			grad_done(net, ia, acc);
			float *db = grad_dst(net, ib, &acc2);
			be->channel_slice(n, hw, nd->c, a->c, dy, b->c, db, 0);
			grad_done(net, ib, acc2);
			break;
		}
		case NN_OP_ADD: { /* both inputs get dy (through the fused activation) */
			int ib = nd->in[1];
			float *da = grad_dst(net, ia, &acc), *db = grad_dst(net, ib, &acc2);
			be->add_act_bwd(fused_act(net, nd), fused_alpha(net, nd), y, dy, da, db, cnt);
			grad_done(net, ia, acc);
			grad_done(net, ib, acc2);
			break;
		}
		case NN_OP_UPSAMPLE: {
			float *dx = grad_dst(net, ia, &acc);
			be->upsample_bwd(nd->up, n, a->c, a->h, a->w, nd->scale, dy, dx);
			grad_done(net, ia, acc);
			break;
		}
		}
		if (prof)
			prof_tick(be, nd->op, 1);
	}
	if (net->input_grad && !net->written[0]) /* the output does not depend on it */
		be->fill(net->nodes[0].dy.data, node_count(&net->nodes[0], n), 0);
}

void nn_net_want_input_grad(struct nn_net *net, int on) { net->input_grad = on; }

void nn_net_want_weight_grads(struct nn_net *net, int on) { net->no_weight_grads = !on; }

struct nn_tensor *nn_net_input_grad(struct nn_net *net) { return &net->nodes[0].dy; }

long long nn_net_param_count(const struct nn_net *net)
{
	long long s = 0;
	for (int i = 0; i < net->nparams; i++)
		if (net->params[i].trainable)
			s += (long long)nn_tensor_count(&net->params[i].w);
	return s;
}

double nn_net_macs(const struct nn_net *net)
{
	double s = 0;
	for (int i = 0; i < net->nnodes; i++)
		s += net->nodes[i].macs;
	return s;
}

size_t nn_net_arena_bytes(const struct nn_net *net) { return net->act.size + net->arena.size; }

struct nn_param *nn_net_param(struct nn_net *net, const char *name)
{
	for (int i = 0; i < net->nparams; i++)
		if (!strcmp(net->params[i].name, name))
			return &net->params[i];
	return NULL;
}

int nn_net_share_weights(struct nn_net *net, struct nn_net *src, struct error *err)
{
	struct nn_flat *f = &net->flat;
	const struct nn_flat *s = &src->flat;
	if (!net->finished || !src->finished || net == src)
		return error_set(err, "net: sharing weights needs two finished nets");
	if (net->be != src->be || strcmp(net->arch ? net->arch : "", src->arch ? src->arch : "") ||
	    net->nparams != src->nparams || f->n != s->n || f->ntrain != s->ntrain ||
	    net->nodes[0].c != src->nodes[0].c || net->nodes[0].h != src->nodes[0].h ||
	    net->nodes[0].w != src->nodes[0].w)
		return error_set(err, "net: cannot share weights between '%s' (%dx%dx%d) and '%s' (%dx%dx%d): "
				      "not the same network on the same backend",
				 net->arch ? net->arch : "?", net->nodes[0].c, net->nodes[0].h,
				 net->nodes[0].w, src->arch ? src->arch : "?", src->nodes[0].c,
				 src->nodes[0].h, src->nodes[0].w);
	if (net->shares_weights)
		return error_set(err, "net: '%s' already shares another net's weights", net->arch);
	if (f->w) {
		if (net->be->params_ready)
			net->be->params_ready(f->w, 0);
		net->be->free(f->w);
	}
	f->w = s->w;
	for (int i = 0; i < net->nparams; i++) {
		struct nn_param *p = &net->params[i];
		nn_tensor_view(&p->w, net->be, f->w + p->off, p->w.n, p->w.c, p->w.h, p->w.w);
	}
	net->shares_weights = 1;
	return 0;
}

void nn_net_add_grads(struct nn_net *dst, const struct nn_net *src)
{
	if (dst->flat.ntrain && dst->flat.ntrain == src->flat.ntrain)
		dst->be->axpy(dst->flat.ntrain, 1, src->flat.g, dst->flat.g);
}

void nn_net_release(struct nn_net *net)
{
	struct nn_flat *f = &net->flat;
	if (net->shares_weights)
		f->w = NULL; /* its owner's */
	if (f->w && net->be->params_ready)
		net->be->params_ready(f->w, 0);
	float *bufs[4] = {f->w, f->g, f->m, f->v};
	for (int k = 0; k < 4; k++)
		if (bufs[k])
			net->be->free(bufs[k]);
	arena_release(net);
	mem_free(net->nodes);
	mem_free(net->params);
	mem_free(net->arch);
	mem_free(net->written);
	memset(net, 0, sizeof(*net));
}
