/* nn_conv: convolution speed of the fast CPU backend against the practical
 * sgemm peak of this machine and against oneDNN (libdnnl, loaded at run time
 * with dlopen when installed: it is a reference here, not a dependency), on
 * the layer shapes of a U-Net (256x256, base 16 and 32), a ResNet stage and
 * the Fashion-MNIST CNN; then one U-Net training step (batch 8, 256x256):
 * images/s and peak RSS; then U-Net prediction (eval forward passes, batch
 * 8 and 32) with forward-only buffers against the training ones. Timings are the minimum over
 * repetitions, each repetition running each pass on cairn and on oneDNN in turns, in wall time and
 * in process CPU time: on a shared machine the CPU-time figures (GFLOP per CPU-second against one
 * core's sgemm GFLOP per CPU-second) stay meaningful when other jobs take the cores, the wall-time
 * ones do not. The last column names the kernel of each pass (forward/backward-data/
 * backward-filter): avx512 or avx2 (direct, nn/cpu/direct.c) or gemm.
 *   nn_conv [--reps N] [--threads N] [--no-unet] [--no-conv] [--only SUBSTRING] */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include <cblas.h>

#include "core/clock.h"
#include "core/mem.h"
#include "nn/backend.h"
#include "nn/model.h"
#include "nn/net.h"

#if __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>
#define HAVE_DNNL_HEADER 1
#endif

static int reps = 5;

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct shape {
	const char *name;
	int n, cin, h, w, cout, k, stride, pad, groups;
};

static const struct shape shapes[] = {
	{"unet16 enc0 3->16 256", 8, 3, 256, 256, 16, 3, 1, 1, 1},
	{"unet16 enc0 16->16 256", 8, 16, 256, 256, 16, 3, 1, 1, 1},
	{"unet16 dec0 32->16 256", 8, 32, 256, 256, 16, 3, 1, 1, 1},
	{"unet16 enc1 32->32 128", 8, 32, 128, 128, 32, 3, 1, 1, 1},
	{"unet16 enc2 64->64 64", 8, 64, 64, 64, 64, 3, 1, 1, 1},
	{"unet16 enc3 128->128 32", 8, 128, 32, 32, 128, 3, 1, 1, 1},
	{"unet16 bott 256->256 16", 8, 256, 16, 16, 256, 3, 1, 1, 1},
	{"unet32 enc0 32->32 256", 8, 32, 256, 256, 32, 3, 1, 1, 1},
	{"unet32 dec0 64->32 256", 8, 64, 256, 256, 32, 3, 1, 1, 1},
	{"unet32 enc2 128->128 64", 8, 128, 64, 64, 128, 3, 1, 1, 1},
	{"resnet s1 64->64 56", 8, 64, 56, 56, 64, 3, 1, 1, 1},
	{"resnet s3 256->256 14", 32, 256, 14, 14, 256, 3, 1, 1, 1},
	{"resnet 1x1 256->64 56", 8, 256, 56, 56, 64, 1, 1, 0, 1},
	{"resnext g32 128 28", 16, 128, 28, 28, 128, 3, 1, 1, 32},
	{"fmnist cnn 32->64 14", 128, 32, 14, 14, 64, 3, 1, 1, 1},
	/* cairn-refine's step: batch 1, 64 px crops (the reference nets' blocks,
	   then its own nets': cyclegan:base=16) */
	{"cyclegan n1 256->256 16", 1, 256, 16, 16, 256, 3, 1, 1, 1},
	{"cyclegan n1 64->64 16", 1, 64, 16, 16, 64, 3, 1, 1, 1},
	{"cyclegan n1 s2 64->128 64", 1, 64, 64, 64, 128, 3, 2, 1, 1},
};

static void fill(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
}

static double thread_cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* sgemm GFLOP/s on `threads` threads; per_cpu_s: GFLOP per CPU-second of
 * the calling thread when threads = 1 (OpenBLAS then computes in the caller;
 * its pool threads, still spinning after a threaded call, would otherwise be
 * counted: the process CPU time doubled this figure on an idle machine). */
static double sgemm_peak(int threads, double *per_cpu_s)
{
	int n = 1024;
	float *a = mem_alloc(sizeof(float) * n * n), *b = mem_alloc(sizeof(float) * n * n);
	float *c = mem_alloc(sizeof(float) * n * n);
	fill(a, (size_t)n * n), fill(b, (size_t)n * n);
	openblas_set_num_threads(threads);
	double best = 1e9, best_cpu = 1e9;
	double (*cpu)(void) = threads == 1 ? thread_cpu_now : cpu_now;
	for (int r = 0; r < reps + 2; r++) {
		double t = clock_now(), c0 = cpu();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
		t = clock_now() - t;
		c0 = cpu() - c0;
		best = t < best ? t : best;
		best_cpu = c0 < best_cpu ? c0 : best_cpu;
	}
	mem_free(a), mem_free(b), mem_free(c);
	*per_cpu_s = 2.0 * n * n * n / best_cpu / 1e9;
	return 2.0 * n * n * n / best / 1e9;
}

/* Best wall and CPU seconds of each pass (forward, backward-data,
 * backward-filter) over the repetitions. */
struct times {
	double wall[3], cpu[3];
};

static void times_reset(struct times *t)
{
	for (int i = 0; i < 3; i++)
		t->wall[i] = t->cpu[i] = 1e9;
}

static double times_wall(const struct times *t) { return t->wall[0] + t->wall[1] + t->wall[2]; }
static double times_cpu(const struct times *t) { return t->cpu[0] + t->cpu[1] + t->cpu[2]; }

/* Runs pass i of one side once. */
typedef void (*pass_fn)(void *side, int pass);

static void time_pass(pass_fn fn, void *side, int pass, struct times *t)
{
	double c = cpu_now(), w = clock_now();
	fn(side, pass);
	w = clock_now() - w;
	c = cpu_now() - c;
	t->wall[pass] = w < t->wall[pass] ? w : t->wall[pass];
	t->cpu[pass] = c < t->cpu[pass] ? c : t->cpu[pass];
}

/* cairn's side: the fast CPU backend on NCHW tensors. */
struct cairn_side {
	const struct nn_conv_desc *d;
	const struct nn_backend *be;
	float *x, *y, *w, *dx, *dw;
	void *ws;
};

static void cairn_open(struct cairn_side *c, const struct nn_conv_desc *d)
{
	const struct nn_backend *be = nn_backend_cpu();
	size_t nx = (size_t)d->n * d->cin * d->h * d->w, ny = (size_t)d->n * d->cout * d->hout * d->wout;
	size_t nw = (size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw;
	c->d = d, c->be = be;
	c->x = be->alloc(nx * 4), c->y = be->alloc(ny * 4), c->w = be->alloc(nw * 4);
	c->dx = be->alloc(nx * 4), c->dw = be->alloc(nw * 4);
	c->ws = be->alloc(be->conv2d_workspace(d));
	fill(c->x, nx), fill(c->w, nw), fill(c->y, ny);
}

static void cairn_pass(void *side, int pass)
{
	struct cairn_side *c = side;
	if (pass == 0)
		c->be->conv2d_fwd(c->d, c->x, c->w, NULL, c->y, c->ws);
	else if (pass == 1)
		c->be->conv2d_bwd_data(c->d, c->y, c->w, c->dx, c->ws);
	else
		c->be->conv2d_bwd_filter(c->d, c->x, c->y, c->dw, NULL, c->ws);
}

static void cairn_close(struct cairn_side *c)
{
	const struct nn_backend *be = c->be;
	be->free(c->x), be->free(c->y), be->free(c->w), be->free(c->dx), be->free(c->dw), be->free(c->ws);
}

#ifdef HAVE_DNNL_HEADER
/* The oneDNN C API (v2.x) through dlopen. */
static struct {
	void *h;
	__typeof__(dnnl_engine_create) *engine_create;
	__typeof__(dnnl_stream_create) *stream_create;
	__typeof__(dnnl_stream_wait) *stream_wait;
	__typeof__(dnnl_memory_desc_init_by_tag) *md_init;
	__typeof__(dnnl_dilated_convolution_forward_desc_init) *fwd_init;
	__typeof__(dnnl_dilated_convolution_backward_data_desc_init) *bwd_data_init;
	__typeof__(dnnl_dilated_convolution_backward_weights_desc_init) *bwd_w_init;
	__typeof__(dnnl_primitive_desc_create) *pd_create;
	__typeof__(dnnl_primitive_desc_query_md) *pd_query_md;
	__typeof__(dnnl_primitive_desc_destroy) *pd_destroy;
	__typeof__(dnnl_primitive_create) *prim_create;
	__typeof__(dnnl_primitive_destroy) *prim_destroy;
	__typeof__(dnnl_primitive_execute) *execute;
	__typeof__(dnnl_memory_create) *mem_create;
	__typeof__(dnnl_memory_destroy) *mem_destroy;
	dnnl_engine_t eng;
	dnnl_stream_t stream;
} dn;

static int dnnl_load(void)
{
	dn.h = dlopen("libdnnl.so.2", RTLD_NOW);
	if (!dn.h)
		return -1;
#define SYM(field, name)                                 \
	if (!(*(void **)&dn.field = dlsym(dn.h, name))) \
		return -1;
	SYM(engine_create, "dnnl_engine_create");
	SYM(stream_create, "dnnl_stream_create");
	SYM(stream_wait, "dnnl_stream_wait");
	SYM(md_init, "dnnl_memory_desc_init_by_tag");
	SYM(fwd_init, "dnnl_dilated_convolution_forward_desc_init");
	SYM(bwd_data_init, "dnnl_dilated_convolution_backward_data_desc_init");
	SYM(bwd_w_init, "dnnl_dilated_convolution_backward_weights_desc_init");
	SYM(pd_create, "dnnl_primitive_desc_create");
	SYM(pd_query_md, "dnnl_primitive_desc_query_md");
	SYM(pd_destroy, "dnnl_primitive_desc_destroy");
	SYM(prim_create, "dnnl_primitive_create");
	SYM(prim_destroy, "dnnl_primitive_destroy");
	SYM(execute, "dnnl_primitive_execute");
	SYM(mem_create, "dnnl_memory_create");
	SYM(mem_destroy, "dnnl_memory_destroy");
#undef SYM
	if (dn.engine_create(&dn.eng, dnnl_cpu, 0) || dn.stream_create(&dn.stream, dn.eng, dnnl_stream_default_flags))
		return -1;
	return 0;
}

static dnnl_memory_t mem_for(const_dnnl_primitive_desc_t pd, dnnl_query_t q)
{
	dnnl_memory_t m = NULL;
	const dnnl_memory_desc_t *md = dn.pd_query_md(pd, q, 0);
	if (md && dn.mem_create(&m, md, dn.eng, DNNL_MEMORY_ALLOCATE))
		m = NULL;
	return m;
}

/* Each pass in the memory formats oneDNN picks for it (tag dnnl_format_tag_any),
 * so reorders are not counted: oneDNN's best case; or (dnnl_nchw) on plain
 * NCHW tensors and OIHW weights, as cairn gets them: whatever oneDNN does to
 * reach its own layouts is then inside the timed call. */
struct dnnl_side {
	dnnl_primitive_desc_t pd[3];
	dnnl_primitive_t prim[3];
	dnnl_memory_t mem[9];
	dnnl_exec_arg_t args[3][3];
};

static void dnnl_close(struct dnnl_side *o)
{
	for (int i = 0; i < 9; i++)
		if (o->mem[i])
			dn.mem_destroy(o->mem[i]);
	for (int i = 0; i < 3; i++) {
		if (o->prim[i])
			dn.prim_destroy(o->prim[i]);
		if (o->pd[i])
			dn.pd_destroy(o->pd[i]);
	}
	memset(o, 0, sizeof(*o));
}

static int dnnl_open(struct dnnl_side *o, const struct nn_conv_desc *d, dnnl_format_tag_t tag)
{
	memset(o, 0, sizeof(*o));
	dnnl_memory_desc_t src, wei, dst;
	int g = d->groups;
	dnnl_dims_t sd = {d->n, d->cin, d->h, d->w}, wd = {d->cout, d->cin, d->kh, d->kw};
	/* grouped: weights with a groups dimension in front (g, cout/g, cin/g, kh, kw) */
	dnnl_dims_t gwd = {g, d->cout / g, d->cin / g, d->kh, d->kw};
	dnnl_dims_t dd = {d->n, d->cout, d->hout, d->wout};
	dnnl_dims_t st = {d->stride, d->stride}, dl = {d->dil - 1, d->dil - 1}, pl = {d->pad, d->pad};
	/* right padding so that the output size matches exactly */
	dnnl_dims_t pr = {(d->hout - 1) * d->stride + (d->kh - 1) * d->dil + 1 - d->h - d->pad,
			  (d->wout - 1) * d->stride + (d->kw - 1) * d->dil + 1 - d->w - d->pad};
	dn.md_init(&src, 4, sd, dnnl_f32, tag);
	if (g == 1)
		dn.md_init(&wei, 4, wd, dnnl_f32, tag == dnnl_nchw ? dnnl_oihw : tag);
	else
		dn.md_init(&wei, 5, gwd, dnnl_f32, tag == dnnl_nchw ? dnnl_goihw : tag);
	dn.md_init(&dst, 4, dd, dnnl_f32, tag);
	dnnl_convolution_desc_t fd, bd, bw;
	if (dn.fwd_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src, &wei, NULL, &dst, st, dl, pl, pr) ||
	    dn.bwd_data_init(&bd, dnnl_convolution_direct, &src, &wei, &dst, st, dl, pl, pr) ||
	    dn.bwd_w_init(&bw, dnnl_convolution_direct, &src, &wei, NULL, &dst, st, dl, pl, pr))
		return -1;
	dnnl_primitive_desc_t *pd = o->pd;
	if (dn.pd_create(&pd[0], &fd, NULL, dn.eng, NULL) ||
	    dn.pd_create(&pd[1], &bd, NULL, dn.eng, pd[0]) ||
	    dn.pd_create(&pd[2], &bw, NULL, dn.eng, pd[0]))
		goto fail;
	for (int i = 0; i < 3; i++)
		if (dn.prim_create(&o->prim[i], pd[i]))
			goto fail;
	static const dnnl_query_t q[3][3] = {
		{dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
		{dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md},
		{dnnl_query_src_md, dnnl_query_diff_weights_md, dnnl_query_diff_dst_md}};
	static const int arg[3][3] = {
		{DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
		{DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST},
		{DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST}};
	for (int i = 0; i < 3; i++)
		for (int a = 0; a < 3; a++) {
			dnnl_memory_t m = mem_for(pd[i], q[i][a]);
			if (!(o->mem[i * 3 + a] = m))
				goto fail;
			o->args[i][a] = (dnnl_exec_arg_t){arg[i][a], m};
		}
	return 0;
fail:
	dnnl_close(o);
	return -1;
}

static void dnnl_pass(void *side, int pass)
{
	struct dnnl_side *o = side;
	dn.execute(o->prim[pass], dn.stream, 3, o->args[pass]);
	dn.stream_wait(dn.stream);
}
#else
static int dnnl_load(void) { return -1; }
enum { dnnl_format_tag_any, dnnl_nchw };
struct dnnl_side {
	int unused;
};
static int dnnl_open(struct dnnl_side *o, const struct nn_conv_desc *d, int tag)
{
	(void)o, (void)d, (void)tag;
	return -1;
}
static void dnnl_pass(void *side, int pass) { (void)side, (void)pass; }
static void dnnl_close(struct dnnl_side *o) { (void)o; }
#endif

/* One-thread sgemm 1024^3 timed in the caller's thread, called between the
 * convolutions so that the peak is sampled under the same conditions. */
struct sgemm_probe {
	float *a, *b, *c;
	double best; /* GFLOP per CPU-second, the best call so far */
};

static void probe_open(struct sgemm_probe *p)
{
	size_t nn = (size_t)1024 * 1024;
	p->a = mem_alloc(sizeof(float) * nn), p->b = mem_alloc(sizeof(float) * nn);
	p->c = mem_alloc(sizeof(float) * nn);
	fill(p->a, nn), fill(p->b, nn);
	p->best = 0;
}

static void probe_once(struct sgemm_probe *p)
{
	int n = 1024;
	double c0 = thread_cpu_now();
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, p->a, n, p->b, n, 0, p->c, n);
	double g = 2.0 * n * n * n / (thread_cpu_now() - c0) / 1e9;
	p->best = g > p->best ? g : p->best;
}

static void probe_close(struct sgemm_probe *p) { mem_free(p->a), mem_free(p->b), mem_free(p->c); }

/* The convolution table. Each repetition runs each pass on every side in
 * turn (cairn, oneDNN in its own formats, oneDNN on NCHW), so a slow spell
 * of a shared host falls on all sides alike; each side's figure per pass is
 * its best. So is the peak: one one-thread sgemm after each repetition, the
 * best of those and of the reading before the table is the one used (a
 * single reading moved 10-30% between runs). */
static int conv_table(const char *only, double *cpu_peak)
{
	int have_dnnl = dnnl_load() == 0;
	if (!have_dnnl)
		printf("oneDNN: not available (libdnnl.so.2 not found: scripts/deps.sh bench installs it)\n");
	struct row {
		const char *name, *kern[3];
		struct times t, o, on;
		int have_o, have_on;
		double flop;
	} rows[sizeof(shapes) / sizeof(shapes[0])];
	int nrows = 0;
	struct sgemm_probe probe;
	probe_open(&probe);
	openblas_set_num_threads(1);
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		const struct shape *s = &shapes[i];
		if (only && !strstr(s->name, only))
			continue;
		struct nn_conv_desc d = {.n = s->n, .cin = s->cin, .h = s->h, .w = s->w, .cout = s->cout,
					 .kh = s->k, .kw = s->k, .stride = s->stride, .pad = s->pad,
					 .dil = 1, .groups = s->groups};
		struct error err;
		if (nn_conv_desc_init(&d, &err) < 0)
			return -1;
		struct row *r = &rows[nrows++];
		struct cairn_side c;
		struct dnnl_side o, on;
		cairn_open(&c, &d);
		r->name = s->name, r->flop = 6 * nn_conv_macs(&d);
		r->have_o = have_dnnl && dnnl_open(&o, &d, dnnl_format_tag_any) == 0;
		r->have_on = have_dnnl && dnnl_open(&on, &d, dnnl_nchw) == 0;
		times_reset(&r->t), times_reset(&r->o), times_reset(&r->on);
		for (int rep = 0; rep <= reps; rep++) { /* the first: warm-up, not counted */
			struct times *tt = rep ? &r->t : &(struct times){0};
			for (int pass = 0; pass < 3; pass++) {
				time_pass(cairn_pass, &c, pass, tt);
				if (r->have_o)
					time_pass(dnnl_pass, &o, pass, rep ? &r->o : tt);
				if (r->have_on)
					time_pass(dnnl_pass, &on, pass, rep ? &r->on : tt);
			}
			probe_once(&probe);
		}
		for (int pass = 0; pass < 3; pass++)
			r->kern[pass] = nn_cpu_conv_kernel(&d, pass);
		cairn_close(&c);
		if (r->have_o)
			dnnl_close(&o);
		if (r->have_on)
			dnnl_close(&on);
		fprintf(stderr, "\r%-26s timed", s->name);
	}
	fprintf(stderr, "\r%-40s\r", "");
	probe_close(&probe);
	printf("sgemm GFLOP per CPU-second on 1 thread, the best of one call after each repetition: "
	       "%.1f; the per-core peak used (the better of that and the first reading): %.1f\n",
	       probe.best, probe.best > *cpu_peak ? probe.best : *cpu_peak);
	if (probe.best > *cpu_peak)
		*cpu_peak = probe.best;
	/* nchw ms, x nchw: oneDNN on plain NCHW tensors (context; the goal is against dnnl ms) */
	/* dnnl %pk: oneDNN's GFLOP per CPU-second against the same peak */
	printf("%-26s %7s %7s %7s %7s %7s %6s %9s %7s %7s %9s %8s %7s  %s\n",
	       "conv (fwd+bwd, batch n)", "fwd ms", "bdat ms", "bfil ms", "GFLOP/s", "GF/cpus",
	       "%peak", "dnnl ms", "x wall", "x cpu", "dnnl %pk", "nchw ms", "x nchw", "kernels");
	struct times sum = {{0}, {0}}, osum = {{0}, {0}};
	double flop = 0, oflop = 0;
	int nover = 0, nunder = 0;
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		double w = times_wall(&r->t), c = times_cpu(&r->t), gfc = r->flop / c / 1e9;
		printf("%-26s %7.1f %7.1f %7.1f %7.1f %7.1f %5.0f%%", r->name, r->t.wall[0] * 1e3,
		       r->t.wall[1] * 1e3, r->t.wall[2] * 1e3, r->flop / w / 1e9, gfc,
		       100 * gfc / *cpu_peak);
		nunder += gfc < 0.8 * *cpu_peak;
		for (int p = 0; p < 3; p++)
			sum.wall[p] += r->t.wall[p], sum.cpu[p] += r->t.cpu[p];
		flop += r->flop;
		if (r->have_o) {
			double ow = times_wall(&r->o), oc = times_cpu(&r->o);
			printf(" %9.1f %7.2f %7.2f %8.0f%%", ow * 1e3, w / ow, c / oc,
			       100 * r->flop / oc / 1e9 / *cpu_peak);
			nover += c / oc > 1.25;
			for (int p = 0; p < 3; p++)
				osum.wall[p] += r->o.wall[p], osum.cpu[p] += r->o.cpu[p];
			oflop += r->flop;
		} else {
			printf(" %9s %7s %7s %9s", "-", "-", "-", "-");
		}
		if (r->have_on)
			printf(" %8.1f %7.2f", times_wall(&r->on) * 1e3, c / times_cpu(&r->on));
		else
			printf(" %8s %7s", "-", "-");
		printf("  %s/%s/%s\n", r->kern[0], r->kern[1], r->kern[2]);
	}
	if (nrows > 1) {
		double w = times_wall(&sum), c = times_cpu(&sum), gfc = flop / c / 1e9;
		printf("%-26s %7.1f %7.1f %7.1f %7.1f %7.1f %5.0f%%", "all of the above",
		       sum.wall[0] * 1e3, sum.wall[1] * 1e3, sum.wall[2] * 1e3, flop / w / 1e9, gfc,
		       100 * gfc / *cpu_peak);
		if (oflop == flop)
			printf(" %9.1f %7.2f %7.2f %8.0f%%", times_wall(&osum) * 1e3,
			       w / times_wall(&osum), c / times_cpu(&osum),
			       100 * oflop / times_cpu(&osum) / 1e9 / *cpu_peak);
		printf("\n");
		printf("shapes under 80%% of the peak: %d of %d", nunder, nrows);
		if (oflop == flop)
			printf("; over 1.25x oneDNN's CPU time: %d of %d", nover, nrows);
		printf("\n");
	}
	fflush(stdout);
	return 0;
}

/* One U-Net training step: forward, BCE loss with per-pixel weights,
 * backward, SGD; with each batch norm and its ReLU fused (the default) or,
 * as the baseline, apart. */
static int unet_step(int base, int batch, int fuse)
{
	struct nn_net net;
	struct error err;
	char spec[64];
	snprintf(spec, sizeof(spec), "unet:depth=4,base=%d", base);
	nn_net_set_fusion(fuse);
	int rc = nn_model_build(&net, nn_backend_cpu(), spec, 3, 256, 256, 1, 1, &err);
	nn_net_set_fusion(1);
	if (rc < 0 || nn_net_prepare(&net, batch, &err) < 0) {
		fprintf(stderr, "nn_conv: %s\n", err.msg);
		return -1;
	}
	const struct nn_backend *be = net.be;
	size_t npx = (size_t)batch * 256 * 256;
	float *target = be->alloc(npx * 4), *wt = be->alloc(npx * 4);
	struct nn_tensor *in = nn_net_input(&net);
	fill(in->data, nn_tensor_count(in));
	for (size_t i = 0; i < npx; i++)
		target[i] = (float)(i % 7 == 0), wt[i] = target[i] ? 5.0f : 1.0f;
	double best = 1e9, best_cpu = 1e9;
	for (int r = 0; r < 3; r++) {
		double t = clock_now(), c = cpu_now();
		const struct nn_tensor *y = nn_net_forward(&net, batch);
		float loss;
		be->bce_logits(npx, y->data, target, wt, nn_net_output_grad(&net)->data, &loss);
		nn_net_backward(&net);
		for (int i = 0; i < net.nparams; i++) /* plain SGD without state: the step's cost */
			if (net.params[i].trainable)
				be->axpy(nn_tensor_count(&net.params[i].w), -1e-3f, net.params[i].g.data,
					 net.params[i].w.data);
		t = clock_now() - t;
		c = cpu_now() - c;
		best = t < best ? t : best;
		best_cpu = c < best_cpu ? c : best_cpu;
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double conv = 0;
	for (int i = 0; i < net.nnodes; i++)
		conv += net.nodes[i].macs;
	printf("unet base %-2d batch %d 256x256 train step, norm+ReLU %s: %.2f s wall, %.2f CPU s; "
	       "%.2f images/s wall, %.2f per CPU-second; %.1f conv GFLOP per CPU-second; "
	       "activations arena %.0f MiB, peak RSS %.0f MiB\n",
	       base, batch, fuse ? "fused" : "apart", best, best_cpu, batch / best, batch / best_cpu,
	       6 * conv * batch / best_cpu / 1e9, nn_net_arena_bytes(&net) / 1048576.0,
	       ru.ru_maxrss / 1024.0);
	be->free(target), be->free(wt);
	nn_net_release(&net);
	return 0;
}

/* U-Net prediction: forward passes in eval mode, the net prepared for
 * forward passes only (nn_net_prepare_forward: outputs sharing memory, no
 * gradients; cairn-predict since session 17) or, as the baseline, with the
 * training buffers (what cairn-predict prepared before): the first pass
 * (fresh memory: page faults) and the best of three after it, and the
 * arenas' size. */
static int unet_predict(int base, int batch, int forward_only)
{
	struct nn_net net;
	struct error err;
	char spec[64];
	snprintf(spec, sizeof(spec), "unet:depth=4,base=%d", base);
	if (nn_model_build(&net, nn_backend_cpu(), spec, 3, 256, 256, 2, 1, &err) < 0 ||
	    (forward_only ? nn_net_prepare_forward(&net, batch, &err)
			  : nn_net_prepare(&net, batch, &err)) < 0) {
		fprintf(stderr, "nn_conv: %s\n", err.msg);
		return -1;
	}
	nn_net_train(&net, 0);
	struct nn_tensor *in = nn_net_input(&net);
	fill(in->data, nn_tensor_count(in));
	double first = 0, best = 1e9, best_cpu = 1e9;
	for (int r = 0; r < 4; r++) {
		double t = clock_now(), c = cpu_now();
		nn_net_forward(&net, batch);
		t = clock_now() - t;
		c = cpu_now() - c;
		if (r == 0)
			first = t;
		else {
			best = t < best ? t : best;
			best_cpu = c < best_cpu ? c : best_cpu;
		}
	}
	printf("unet base %-2d batch %-2d 256x256 predict (eval forward), %s: first pass %.3f s, "
	       "then %.3f s wall, %.3f CPU s; %.1f tiles/s; arenas %.0f MiB\n",
	       base, batch, forward_only ? "forward-only buffers" : "training buffers (baseline)",
	       first, best, best_cpu, batch / best, nn_net_arena_bytes(&net) / 1048576.0);
	nn_net_release(&net);
	return 0;
}

int main(int argc, char **argv)
{
	nn_cpu_blas_check(argv);
	int threads = 0, unet = 1, conv = 1;
	const char *only = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--no-unet"))
			unet = 0;
		else if (!strcmp(argv[i], "--no-conv"))
			conv = 0;
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: nn_conv [--reps N] [--threads N] [--no-unet] [--no-conv] [--only SUBSTRING]\n");
			return 2;
		}
	}
	if (reps < 1)
		reps = 1;
	nn_cpu_set_threads(threads);
	double load[3] = {0};
	if (getloadavg(load, 3) < 0)
		load[0] = -1;
	int nthr = threads > 0 ? threads : openblas_get_num_procs();
	double cpu_peak_n, cpu_peak;
	double peak = sgemm_peak(nthr, &cpu_peak_n);
	double peak1 = sgemm_peak(1, &cpu_peak); /* also lets the pool's spinning threads settle */
	printf("load average %.2f; OpenBLAS sgemm 1024^3: %.1f GFLOP/s wall on %d threads, %.1f on 1; "
	       "GFLOP per CPU-second %.1f on %d threads, %.1f on 1\n",
	       load[0], peak, nthr, peak1, cpu_peak_n, nthr, cpu_peak);
	if (conv && conv_table(only, &cpu_peak) < 0)
		return 1;
	if (unet) {
		if (unet_step(16, 8, 0) < 0 || unet_step(16, 8, 1) < 0 || unet_step(32, 8, 0) < 0 ||
		    unet_step(32, 8, 1) < 0)
			return 1;
		for (int b = 8; b <= 32; b *= 4)
			if (unet_predict(16, b, 0) < 0 || unet_predict(16, b, 1) < 0)
				return 1;
	}
	return 0;
}
