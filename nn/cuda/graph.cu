/* graph: a whole training step as one CUDA graph, so that small networks are
 * not bound by launch time (issue #8). nn/backend.h's `step` slot runs
 * fn(ctx) with the table's slots in record mode: every call is kept, its
 * arguments copied (descriptors by value), and appended to the step's
 * signature: the precision and the state of the bf16 activation storage
 * (rt.h), then the slot and the bytes of every argument
 * of each call, except the values that change from step to step by design
 * (the learning rate, Adam's step number, a dropout seed), which go to a
 * list of per-step values. Then:
 *
 *  - a step whose signature is new runs its calls as they are (eagerly): the
 *    warm-up, in which conv plans are made and the allocator, scratch and
 *    workspaces reach their sizes;
 *  - the next step with the same signature is captured: the graph starts
 *    with a copy of the per-step values from pinned memory into device
 *    memory, the calls run in capture mode (the varying values are read from
 *    that device memory; a loss is copied into pinned memory instead of read
 *    back), and the graph is launched;
 *  - a later step whose signature equals the captured one byte for byte
 *    writes its per-step values into the pinned buffer and launches the graph.
 *
 * After each launch the step synchronizes and computes the losses into the
 * caller's floats. Everything else runs eagerly, as without graphs: another
 * signature, a download, upload or sync inside the step (the calls recorded
 * so far run, then the rest of the step), CAIRN_CUDA_GRAPH=0,
 * CAIRN_CUDA_SYNC=1, CAIRN_NN_PROFILE=1, or a failed capture (reported once on stderr with the
 * reason; that step state stays eager). Buffers a graph holds the address of
 * (scratch, workspaces, bf16 copies) are not reused while a graph exists
 * (cu_retire). One thread runs steps, as one thread drives the stream. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <new>
#include <tuple>
#include <vector>

#include "nn/cuda/rt.h"

/* ---- recording ----------------------------------------------------------- */

static int recording;                           /* slots record instead of run */
static std::vector<std::function<void()>> *calls; /* the step's calls, in order */
static std::vector<unsigned char> *sig;         /* their signature */
static std::vector<uint64_t> *vals;             /* per-step values, 8 bytes each */
static const uint64_t *dev_vals;                /* where a capture reads them */

static void sig_add(const void *p, size_t n)
{
	const unsigned char *b = (const unsigned char *)p;
	sig->insert(sig->end(), b, b + n);
}

/* An argument kept for later: by value, descriptors copied. */
template <class T> struct held {
	T v;
	explicit held(T x) : v(x) {}
	T get() const { return v; }
	void sign() const { sig_add(&v, sizeof(v)); }
};
template <> struct held<const struct nn_conv_desc *> {
	struct nn_conv_desc v;
	explicit held(const struct nn_conv_desc *d) : v(*d) {}
	const struct nn_conv_desc *get() const { return &v; }
	void sign() const { sig_add(&v, sizeof(v)); }
};
template <> struct held<const struct nn_pool_desc *> {
	struct nn_pool_desc v;
	explicit held(const struct nn_pool_desc *d) : v(*d) {}
	const struct nn_pool_desc *get() const { return &v; }
	void sign() const { sig_add(&v, sizeof(v)); }
};

static void sign_slot(void (*f)())
{
	uintptr_t id = reinterpret_cast<uintptr_t>(f);
	sig_add(&id, sizeof(id));
}

/* A slot that records in record mode and runs otherwise; every argument is
 * part of the signature. */
template <auto F> struct slot;
template <class... A, void (*F)(A...)> struct slot<F> {
	static void call(A... a)
	{
		if (!recording) {
			F(a...);
			return;
		}
		sign_slot(reinterpret_cast<void (*)()>(F));
		auto t = std::make_tuple(held<A>(a)...);
		std::apply([](const auto &...h) { (h.sign(), ...); }, t);
		calls->emplace_back([t]() { std::apply([](const auto &...h) { F(h.get()...); }, t); });
	}
};

static void run_calls(void)
{
	for (auto &c : *calls)
		c();
	calls->clear();
}

/* Inside a recorded step, an op that must happen now: run what was recorded,
 * and the rest of the step eagerly. */
static void break_recording(void)
{
	if (!recording)
		return;
	recording = 0;
	run_calls();
	cu.hold_cache = 0;
}

static void rec_upload(void *dst, const void *host, size_t bytes)
{
	break_recording();
	cu_upload(dst, host, bytes);
}
static void rec_download(void *host, const void *src, size_t bytes)
{
	break_recording();
	cu_download(host, src, bytes);
}
static void rec_sync(void)
{
	break_recording();
	cu_sync();
}

/* The per-step values: kept apart from the signature, read from device
 * memory inside a capture. */
static size_t val_add(const void *p, size_t bytes)
{
	size_t k = vals->size();
	uint64_t v[2] = {0, 0};
	memcpy(v, p, bytes);
	vals->insert(vals->end(), v, v + (bytes + 7) / 8);
	return k;
}
static const void *val_dev(size_t k) { return cu.capturing ? dev_vals + k : NULL; }

static void rec_dropout(size_t n, float p, uint64_t seed, const float *x, float *y, float *mask)
{
	if (!recording) {
		cu_dropout_fwd(n, p, seed, x, y, mask);
		return;
	}
	sign_slot(reinterpret_cast<void (*)()>(cu_dropout_fwd));
	sig_add(&n, sizeof(n)), sig_add(&p, sizeof(p));
	sig_add(&x, sizeof(x)), sig_add(&y, sizeof(y)), sig_add(&mask, sizeof(mask));
	uint64_t key = cu_mix64(seed);
	size_t k = val_add(&key, sizeof(key));
	calls->emplace_back([=]() {
		cu_dropout_fwd_at(n, p, seed, (const uint64_t *)val_dev(k), x, y, mask);
	});
}

static void rec_sgd(size_t n, size_t ndecay, float *w, const float *g, float *m, float lr,
		    float momentum, float wd, int nesterov)
{
	if (!recording) {
		cu_sgd_step(n, ndecay, w, g, m, lr, momentum, wd, nesterov);
		return;
	}
	sign_slot(reinterpret_cast<void (*)()>(cu_sgd_step));
	sig_add(&n, sizeof(n)), sig_add(&ndecay, sizeof(ndecay));
	sig_add(&w, sizeof(w)), sig_add(&g, sizeof(g)), sig_add(&m, sizeof(m));
	sig_add(&momentum, sizeof(momentum)), sig_add(&wd, sizeof(wd));
	sig_add(&nesterov, sizeof(nesterov));
	size_t k = val_add(&lr, sizeof(lr));
	calls->emplace_back([=]() {
		cu_sgd_step_at(n, ndecay, w, g, m, lr, (const float *)val_dev(k), momentum, wd,
			       nesterov);
	});
}

static void rec_adam(size_t n, size_t ndecay, float *w, const float *g, float *m, float *v,
		     float lr, float b1, float b2, float eps, float wd, int decoupled, int t)
{
	if (!recording) {
		cu_adam_step(n, ndecay, w, g, m, v, lr, b1, b2, eps, wd, decoupled, t);
		return;
	}
	sign_slot(reinterpret_cast<void (*)()>(cu_adam_step));
	sig_add(&n, sizeof(n)), sig_add(&ndecay, sizeof(ndecay));
	sig_add(&w, sizeof(w)), sig_add(&g, sizeof(g)), sig_add(&m, sizeof(m));
	sig_add(&v, sizeof(v)), sig_add(&b1, sizeof(b1)), sig_add(&b2, sizeof(b2));
	sig_add(&eps, sizeof(eps)), sig_add(&wd, sizeof(wd)), sig_add(&decoupled, sizeof(decoupled));
	/* as cu_adam_step computes them */
	float sc[3] = {lr, 1.0f - powf(b1, (float)t), 1.0f - powf(b2, (float)t)};
	size_t k = val_add(sc, sizeof(sc));
	calls->emplace_back([=]() {
		cu_adam_step_at(n, ndecay, w, g, m, v, lr, (const float *)val_dev(k), b1, b2, eps, wd,
				decoupled, t);
	});
}

/* The table's slots in their recording form (nn/cuda/cuda.c). */
extern "C" void cu_graph_wrap(struct nn_backend *t)
{
	const struct nn_backend before = *t;
	t->upload = rec_upload;
	t->download = rec_download;
	t->sync = rec_sync;
	t->params_ready = slot<cu_params_ready>::call;
	t->fill = slot<cu_fill>::call;
	t->copy = slot<cu_copy>::call;
	t->add = slot<cu_add>::call;
	t->add_act = slot<cu_add_act>::call;
	t->add_act_bwd = slot<cu_add_act_bwd>::call;
	t->axpy = slot<cu_axpy>::call;
	t->mul = slot<cu_mul>::call;
	t->scale = slot<cu_scale>::call;
	t->gemm = slot<cu_gemm>::call;
	t->bias_add = slot<cu_bias_add>::call;
	t->bias_grad = slot<cu_bias_grad>::call;
	t->conv2d_fwd = slot<cu_conv2d_fwd>::call;
	t->conv2d_bwd_data = slot<cu_conv2d_bwd_data>::call;
	t->conv2d_bwd_filter = slot<cu_conv2d_bwd_filter>::call;
	t->act_fwd = slot<cu_act_fwd>::call;
	t->act_bwd = slot<cu_act_bwd>::call;
	t->bn_fwd_train = slot<cu_bn_fwd_train>::call;
	t->bn_fwd_eval = slot<cu_bn_fwd_eval>::call;
	t->bn_bwd = slot<cu_bn_bwd>::call;
	t->in_fwd = slot<cu_in_fwd>::call;
	t->in_bwd = slot<cu_in_bwd>::call;
	t->pool_fwd = slot<cu_pool_fwd>::call;
	t->pool_bwd = slot<cu_pool_bwd>::call;
	t->upsample_fwd = slot<cu_upsample_fwd>::call;
	t->upsample_bwd = slot<cu_upsample_bwd>::call;
	t->channel_copy = slot<cu_channel_copy>::call;
	t->channel_slice = slot<cu_channel_slice>::call;
	t->dropout_fwd = rec_dropout;
	t->softmax_xent = slot<cu_softmax_xent>::call;
	t->bce_logits = slot<cu_bce_logits>::call;
	t->l1 = slot<cu_l1>::call;
	t->mse = slot<cu_mse>::call;
	t->argmax = slot<cu_argmax>::call;
	t->sgd_step = rec_sgd;
	t->adam_step = rec_adam;
	/* Host work acts at once. Every other slot must have a recording form
	   above: one that ran at once inside a recorded step would run before
	   the calls recorded ahead of it. A slot added to nn/backend.h without
	   one stops here, at the first nn_backend_cuda(), in every test run. */
	static const size_t host_work[] = {
		offsetof(struct nn_backend, alloc),	   offsetof(struct nn_backend, free),
		offsetof(struct nn_backend, alloc_why),	   offsetof(struct nn_backend, host_alloc),
		offsetof(struct nn_backend, host_wait),	   offsetof(struct nn_backend, host_free),
		offsetof(struct nn_backend, act_alloc),	   offsetof(struct nn_backend, step),
		offsetof(struct nn_backend, step_release),
		offsetof(struct nn_backend, conv2d_workspace)};
	typedef void (*any_fn)(void);
	for (size_t off = offsetof(struct nn_backend, alloc);
	     off <= offsetof(struct nn_backend, adam_step); off += sizeof(any_fn)) {
		bool host = false;
		for (size_t i = 0; i < sizeof(host_work) / sizeof(host_work[0]); i++)
			host |= host_work[i] == off;
		if (!host && !memcmp((const char *)&before + off, (const char *)t + off, sizeof(any_fn))) {
			fprintf(stderr, "nn/cuda/graph.cu: the slot at byte %zu of struct nn_backend has no "
					"recording form in cu_graph_wrap\n", off);
			abort();
		}
	}
}

/* ---- graphs -------------------------------------------------------------- */

struct deferred_loss {
	float *loss;
	const double *h;
	int kind;
	size_t n;
};

struct step_graph {
	std::vector<unsigned char> sig, warm_sig; /* captured; last eager step's */
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	int has_graph, off;
	uint64_t *pinned_vals, *dev;
	size_t nvals;
	double *loss_h; /* pinned: two doubles per possible loss */
	size_t loss_cap;
	std::vector<deferred_loss> losses;
};

static step_graph *capturing_state;
static struct nn_cuda_graph_stats stats;

extern "C" void nn_cuda_get_graph_stats(struct nn_cuda_graph_stats *s) { *s = stats; }

double *cu_graph_loss(int nsums, float *loss, int kind, size_t n)
{
	step_graph *g = capturing_state;
	size_t at = g ? 2 * g->losses.size() : 0;
	if (!g || nsums > 2 || at + 2 > g->loss_cap) {
		cu_fail(__FILE__, __LINE__, "cu_graph_loss", "more losses than calls recorded",
			"capturing a step");
		return NULL;
	}
	g->losses.push_back(deferred_loss{loss, g->loss_h + at, kind, n});
	return g->loss_h + at;
}

static int graphs_wanted(void)
{
	static int wanted = -1;
	if (wanted < 0) {
		const char *env = getenv("CAIRN_CUDA_GRAPH"), *prof = getenv("CAIRN_NN_PROFILE");
		/* the profile (nn/net.c) synchronizes after every node */
		wanted = !(env && !strcmp(env, "0")) && !(prof && *prof && strcmp(prof, "0"));
	}
	return wanted && !cu.debug_sync;
}

static char capture_msg[1024];
static void capture_fatal(const char *msg)
{
	if (!capture_msg[0])
		snprintf(capture_msg, sizeof(capture_msg), "%s", msg);
}

static void free_graph(step_graph *g)
{
	if (g->has_graph) {
		cudaGraphExecDestroy(g->exec);
		cudaGraphDestroy(g->graph);
		g->has_graph = 0;
		cu.graphs_live--;
	}
	if (g->pinned_vals)
		cudaFreeHost(g->pinned_vals);
	if (g->loss_h)
		cudaFreeHost(g->loss_h);
	if (g->dev)
		cu_free(g->dev);
	cudaGetLastError();
	g->pinned_vals = NULL, g->loss_h = NULL, g->dev = NULL;
	g->losses.clear();
	cu_retired_free();
}

/* Launch the graph, wait, and compute the losses. */
static void launch(step_graph *g)
{
	memcpy(g->pinned_vals, vals->data(), g->nvals * sizeof(uint64_t));
	if (CU_RT(cudaGraphLaunch(g->exec, cu.compute), "step graph launch (%zu calls)",
		  g->sig.size()) ||
	    CU_RT(cudaStreamSynchronize(cu.compute), "step graph: waiting for the step"))
		return;
	for (const deferred_loss &l : g->losses)
		*l.loss = cu_loss_value(l.h, l.kind, l.n);
}

/* Give up on graphs for this state: say why (once per process), clear the
 * error the capture left, and run the step's calls eagerly. */
static void capture_failed(step_graph *g, const char *why)
{
	static int told;
	stats.failures++;
	if (!told) {
		fprintf(stderr, "cairn: cuda: capturing the training step as a CUDA graph failed (%s); "
				"steps run without a graph\n",
			why);
		told = 1;
	}
	free_graph(g);
	g->off = 1;
	nn_cuda_clear_error();
	cudaGetLastError();
	run_calls();
}

static void capture(step_graph *g)
{
	size_t nv = vals->size(), lc = 2 * calls->size();
	g->nvals = nv;
	/* a failure here must still run the recorded step (capture_failed does) */
	g->pinned_vals = NULL, g->loss_h = NULL;
	if (cudaMallocHost((void **)&g->pinned_vals, (nv ? nv : 1) * sizeof(uint64_t)) != cudaSuccess ||
	    cudaMallocHost((void **)&g->loss_h, (lc ? lc : 1) * sizeof(double)) != cudaSuccess) {
		capture_failed(g, "out of pinned host memory for the step values");
		return;
	}
	g->loss_cap = lc;
	g->dev = (uint64_t *)cu_alloc((nv ? nv : 1) * sizeof(uint64_t));
	if (!g->dev) {
		capture_failed(g, "out of device memory for the step values");
		return;
	}
	memcpy(g->pinned_vals, vals->data(), nv * sizeof(uint64_t));
	capture_msg[0] = 0;
	void (*saved)(const char *) = cu_fatal_swap(capture_fatal);
	cudaGetLastError();
	cudaError_t e = cudaStreamBeginCapture(cu.compute, cudaStreamCaptureModeThreadLocal);
	if (e == cudaSuccess) {
		if (nv)
			CU_RT(cudaMemcpyAsync(g->dev, g->pinned_vals, nv * sizeof(uint64_t),
					      cudaMemcpyHostToDevice, cu.compute),
			      "step graph: copying %zu step values", nv);
		dev_vals = g->dev;
		capturing_state = g;
		cu.capturing = 1;
		for (auto &c : *calls)
			c();
		cu.capturing = 0;
		capturing_state = NULL;
		e = cudaStreamEndCapture(cu.compute, &g->graph);
	}
	cu_fatal_swap(saved);
	if (!capture_msg[0] && e != cudaSuccess)
		snprintf(capture_msg, sizeof(capture_msg), "%s", cudaGetErrorString(e));
	if (capture_msg[0]) {
		if (e == cudaSuccess)
			cudaGraphDestroy(g->graph);
		capture_failed(g, capture_msg);
		return;
	}
	e = cudaGraphInstantiate(&g->exec, g->graph, 0);
	if (e != cudaSuccess) {
		cudaGraphDestroy(g->graph);
		snprintf(capture_msg, sizeof(capture_msg), "cudaGraphInstantiate: %s",
			 cudaGetErrorString(e));
		capture_failed(g, capture_msg);
		return;
	}
	g->has_graph = 1;
	cu.graphs_live++;
	stats.captures++;
	size_t nodes = 0;
	if (cudaGraphGetNodes(g->graph, NULL, &nodes) == cudaSuccess)
		stats.nodes = nodes;
	cudaGetLastError();
	g->sig.swap(*sig);
	calls->clear();
	launch(g);
}

extern "C" void cu_step(void **state, void (*fn)(void *ctx), void *ctx)
{
	step_graph *g = (step_graph *)*state;
	stats.steps++;
	if (!g && graphs_wanted() && !cu.failed) {
		if (!calls) {
			calls = new (std::nothrow) std::vector<std::function<void()>>();
			sig = new (std::nothrow) std::vector<unsigned char>();
			vals = new (std::nothrow) std::vector<uint64_t>();
		}
		g = calls && sig && vals ? new (std::nothrow) step_graph() : NULL;
		*state = g;
	}
	if (!g || g->off || !graphs_wanted() || cu.failed) {
		stats.eager++;
		fn(ctx);
		return;
	}
	calls->clear(), sig->clear(), vals->clear();
	/* the precision and the bf16 activation storage decide what a slot
	   does without being arguments */
	sig_add(&cu.precision, sizeof(cu.precision));
	unsigned gen = cu_act_generation();
	sig_add(&gen, sizeof(gen));
	recording = 1;
	cu.hold_cache = 1; /* frees act now, the recorded calls run later */
	fn(ctx);
	if (!recording) { /* broken by a download, upload or sync: it all ran */
		g->warm_sig.clear();
		stats.eager++;
		return;
	}
	recording = 0;
	if (g->has_graph && *sig == g->sig) {
		calls->clear();
		stats.replays++;
		launch(g);
	} else if (*sig == g->warm_sig) {
		free_graph(g); /* a graph of another signature, if any */
		capture(g);
	} else {
		stats.eager++;
		run_calls();
		g->warm_sig.swap(*sig);
	}
	cu.hold_cache = 0;
}

extern "C" void cu_step_release(void *state)
{
	step_graph *g = (step_graph *)state;
	if (!g)
		return;
	cudaStreamSynchronize(cu.compute);
	free_graph(g);
	delete g;
}
