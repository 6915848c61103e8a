/* nn_conv: convolution speed of the fast CPU backend against the practical
 * sgemm peak of this machine and against oneDNN (libdnnl, loaded at run time
 * with dlopen when installed: it is a reference here, not a dependency), on
 * the layer shapes of a U-Net (256x256, base 16 and 32), a ResNet stage and
 * the Fashion-MNIST CNN; then one U-Net training step (batch 8, 256x256):
 * images/s and peak RSS. Timings are the minimum over repetitions, in wall
 * time and in process CPU time: on a shared machine the CPU-time figures
 * (GFLOP per CPU-second against one core's sgemm GFLOP per CPU-second) stay
 * meaningful when other jobs take the cores, the wall-time ones do not.
 * The last column names the kernel of each pass (forward/backward-data/
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

struct times {
	double fwd, bwd_data, bwd_filter;
	double cpu; /* CPU seconds of the fastest fwd + bwd_data + bwd_filter round */
};

static struct times time_cairn(const struct nn_conv_desc *d)
{
	const struct nn_backend *be = nn_backend_cpu();
	size_t nx = (size_t)d->n * d->cin * d->h * d->w, ny = (size_t)d->n * d->cout * d->hout * d->wout;
	size_t nw = (size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw;
	float *x = be->alloc(nx * 4), *y = be->alloc(ny * 4), *w = be->alloc(nw * 4);
	float *dx = be->alloc(nx * 4), *dw = be->alloc(nw * 4);
	void *ws = be->alloc(be->conv2d_workspace(d));
	fill(x, nx), fill(w, nw), fill(y, ny);
	struct times t = {1e9, 1e9, 1e9, 1e9};
	for (int r = 0; r < reps; r++) {
		double c0 = cpu_now(), t0 = clock_now();
		be->conv2d_fwd(d, x, w, NULL, y, ws);
		double t1 = clock_now();
		be->conv2d_bwd_data(d, y, w, dx, ws);
		double t2 = clock_now();
		be->conv2d_bwd_filter(d, x, y, dw, NULL, ws);
		double t3 = clock_now(), c1 = cpu_now() - c0;
		t.cpu = c1 < t.cpu ? c1 : t.cpu;
		t.fwd = t1 - t0 < t.fwd ? t1 - t0 : t.fwd;
		t.bwd_data = t2 - t1 < t.bwd_data ? t2 - t1 : t.bwd_data;
		t.bwd_filter = t3 - t2 < t.bwd_filter ? t3 - t2 : t.bwd_filter;
	}
	be->free(x), be->free(y), be->free(w), be->free(dx), be->free(dw), be->free(ws);
	return t;
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

static double run_prim(dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args, double *cpu)
{
	double best = 1e9, best_cpu = 1e9;
	for (int r = 0; r < reps + 1; r++) {
		double t = clock_now(), c = cpu_now();
		dn.execute(p, dn.stream, nargs, args);
		dn.stream_wait(dn.stream);
		t = clock_now() - t;
		c = cpu_now() - c;
		if (r > 0) {
			best = t < best ? t : best;
			best_cpu = c < best_cpu ? c : best_cpu;
		}
	}
	*cpu += best_cpu;
	return best;
}

/* Each pass in the memory formats oneDNN picks for it (tag dnnl_format_tag_any),
 * so reorders are not counted: oneDNN's best case; or (dnnl_nchw) on plain
 * NCHW tensors and OIHW weights, as cairn gets them: whatever oneDNN does to
 * reach its own layouts is then inside the timed call. */
static int time_dnnl(const struct nn_conv_desc *d, dnnl_format_tag_t tag, struct times *t)
{
	dnnl_memory_desc_t src, wei, dst;
	int g = d->groups;
	dnnl_dims_t sd = {d->n, d->cin, d->h, d->w}, wd = {d->cout, d->cin, d->kh, d->kw};
	/* grouped: weights with a groups dimension in front (g, cout/g, cin/g, kh, kw) */
	dnnl_dims_t gwd = {g, d->cout / g, d->cin / g, d->kh, d->kw};
	dnnl_dims_t dd = {d->n, d->cout, d->hout, d->wout};
	dnnl_dims_t st = {d->stride, d->stride}, dl = {d->dil - 1, d->dil - 1}, pd = {d->pad, d->pad};
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
	if (dn.fwd_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src, &wei, NULL, &dst, st, dl, pd, pr) ||
	    dn.bwd_data_init(&bd, dnnl_convolution_direct, &src, &wei, &dst, st, dl, pd, pr) ||
	    dn.bwd_w_init(&bw, dnnl_convolution_direct, &src, &wei, NULL, &dst, st, dl, pd, pr))
		return -1;
	dnnl_primitive_desc_t fpd, bpd, wpd;
	if (dn.pd_create(&fpd, &fd, NULL, dn.eng, NULL))
		return -1;
	if (dn.pd_create(&bpd, &bd, NULL, dn.eng, fpd) || dn.pd_create(&wpd, &bw, NULL, dn.eng, fpd))
		return -1;
	dnnl_primitive_t fp, bp, wp;
	if (dn.prim_create(&fp, fpd) || dn.prim_create(&bp, bpd) || dn.prim_create(&wp, wpd))
		return -1;
	dnnl_memory_t ms = mem_for(fpd, dnnl_query_src_md), mw = mem_for(fpd, dnnl_query_weights_md);
	dnnl_memory_t md = mem_for(fpd, dnnl_query_dst_md);
	dnnl_memory_t bds = mem_for(bpd, dnnl_query_diff_src_md), bww = mem_for(bpd, dnnl_query_weights_md);
	dnnl_memory_t bdd = mem_for(bpd, dnnl_query_diff_dst_md);
	dnnl_memory_t ws = mem_for(wpd, dnnl_query_src_md), wdw = mem_for(wpd, dnnl_query_diff_weights_md);
	dnnl_memory_t wdd = mem_for(wpd, dnnl_query_diff_dst_md);
	if (!ms || !mw || !md || !bds || !bww || !bdd || !ws || !wdw || !wdd)
		return -1;
	dnnl_exec_arg_t fa[] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}};
	dnnl_exec_arg_t ba[] = {{DNNL_ARG_DIFF_SRC, bds}, {DNNL_ARG_WEIGHTS, bww}, {DNNL_ARG_DIFF_DST, bdd}};
	dnnl_exec_arg_t wa[] = {{DNNL_ARG_SRC, ws}, {DNNL_ARG_DIFF_WEIGHTS, wdw}, {DNNL_ARG_DIFF_DST, wdd}};
	t->cpu = 0;
	t->fwd = run_prim(fp, 3, fa, &t->cpu);
	t->bwd_data = run_prim(bp, 3, ba, &t->cpu);
	t->bwd_filter = run_prim(wp, 3, wa, &t->cpu);
	dnnl_memory_t all[] = {ms, mw, md, bds, bww, bdd, ws, wdw, wdd};
	for (int i = 0; i < 9; i++)
		dn.mem_destroy(all[i]);
	dn.prim_destroy(fp), dn.prim_destroy(bp), dn.prim_destroy(wp);
	dn.pd_destroy(fpd), dn.pd_destroy(bpd), dn.pd_destroy(wpd);
	return 0;
}
#else
static int dnnl_load(void) { return -1; }
enum { dnnl_format_tag_any, dnnl_nchw };
static int time_dnnl(const struct nn_conv_desc *d, int tag, struct times *t)
{
	(void)d, (void)tag, (void)t;
	return -1;
}
#endif

/* One U-Net training step: forward, BCE loss with per-pixel weights, backward, SGD. */
static int unet_step(int base, int batch)
{
	struct nn_net net;
	struct error err;
	char spec[64];
	snprintf(spec, sizeof(spec), "unet:depth=4,base=%d", base);
	if (nn_model_build(&net, nn_backend_cpu(), spec, 3, 256, 256, 1, 1, &err) < 0 ||
	    nn_net_prepare(&net, batch, &err) < 0) {
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
	printf("unet base %-2d batch %d 256x256 train step: %.2f s wall, %.2f CPU s; %.2f images/s wall, "
	       "%.2f per CPU-second; %.1f conv GFLOP per CPU-second; activations arena %.0f MiB, "
	       "peak RSS %.0f MiB\n",
	       base, batch, best, best_cpu, batch / best, batch / best_cpu,
	       6 * conv * batch / best_cpu / 1e9, nn_net_arena_bytes(&net) / 1048576.0,
	       ru.ru_maxrss / 1024.0);
	be->free(target), be->free(wt);
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
	       "GFLOP per CPU-second %.1f on %d threads, %.1f on 1 (the per-core peak used below)\n",
	       load[0], peak, nthr, peak1, cpu_peak_n, nthr, cpu_peak);
	int have_dnnl = dnnl_load() == 0;
	if (!have_dnnl)
		printf("oneDNN: not available (libdnnl.so.2 not found: scripts/deps.sh bench installs it)\n");
	/* nchw ms, x nchw: oneDNN on plain NCHW tensors (context; the goal is against dnnl ms) */
	/* dnnl %pk: oneDNN's GFLOP per CPU-second against the same peak */
	printf("%-26s %7s %7s %7s %7s %7s %6s %9s %7s %7s %9s %8s %7s  %s\n",
	       "conv (fwd+bwd, batch n)", "fwd ms", "bdat ms", "bfil ms", "GFLOP/s", "GF/cpus",
	       "%peak", "dnnl ms", "x wall", "x cpu", "dnnl %pk", "nchw ms", "x nchw", "kernels");
	for (size_t i = 0; conv && i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		const struct shape *s = &shapes[i];
		if (only && !strstr(s->name, only))
			continue;
		struct nn_conv_desc d = {.n = s->n, .cin = s->cin, .h = s->h, .w = s->w, .cout = s->cout,
					 .kh = s->k, .kw = s->k, .stride = s->stride, .pad = s->pad,
					 .dil = 1, .groups = s->groups};
		struct error err;
		if (nn_conv_desc_init(&d, &err) < 0)
			return 1;
		struct times t = time_cairn(&d), o;
		double total = t.fwd + t.bwd_data + t.bwd_filter, gf = 6 * nn_conv_macs(&d) / total / 1e9;
		double gfc = 6 * nn_conv_macs(&d) / t.cpu / 1e9;
		printf("%-26s %7.1f %7.1f %7.1f %7.1f %7.1f %5.0f%%", s->name, t.fwd * 1e3,
		       t.bwd_data * 1e3, t.bwd_filter * 1e3, gf, gfc, 100 * gfc / cpu_peak);
		if (have_dnnl && time_dnnl(&d, dnnl_format_tag_any, &o) == 0) {
			double ot = o.fwd + o.bwd_data + o.bwd_filter;
			printf(" %9.1f %7.2f %7.2f %8.0f%%", ot * 1e3, total / ot, t.cpu / o.cpu,
			       100 * 6 * nn_conv_macs(&d) / o.cpu / 1e9 / cpu_peak);
		} else {
			printf(" %9s %7s %7s %9s", "-", "-", "-", "-");
		}
		if (have_dnnl && time_dnnl(&d, dnnl_nchw, &o) == 0)
			printf(" %8.1f %7.2f", (o.fwd + o.bwd_data + o.bwd_filter) * 1e3, t.cpu / o.cpu);
		else
			printf(" %8s %7s", "-", "-");
		printf("  %s/%s/%s\n", nn_cpu_conv_kernel(&d, 0), nn_cpu_conv_kernel(&d, 1),
		       nn_cpu_conv_kernel(&d, 2));
		fflush(stdout);
	}
	if (unet) {
		if (unet_step(16, 8) < 0 || unet_step(32, 8) < 0)
			return 1;
	}
	return 0;
}
