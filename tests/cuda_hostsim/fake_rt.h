/* fake_rt: what nn/cuda/rt.h gives ops.cu, on the host, for the host
 * simulation of the kernels (tests/integration/cuda_hostsim.sh): one thread
 * per block, launches as loops over the grid, device memory is host memory. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
extern "C" {
#include "core/error.h"
#include "nn/backend.h"
}
#include "nn/cuda/cuda_ops.h"
#define __global__
#define __device__
#define __host__
#define __launch_bounds__(x)
struct dim3 {
	unsigned x, y, z;
	dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
static dim3 blockIdx(0, 0, 0), threadIdx(0, 0, 0), blockDim(1, 1, 1), gridDim(1, 1, 1);
template <class F> struct Launcher {
	dim3 g;
	F f;
	template <class... A> void operator()(A... a)
	{
		gridDim = g;
		for (unsigned y = 0; y < g.y; y++)
			for (unsigned x = 0; x < g.x; x++) {
				blockIdx = dim3(x, y, 0);
				f(a...);
			}
	}
};
#define LAUNCH(k, G) Launcher<decltype(&k)>{dim3(G), &k}
struct fake_cu {
	int sms, failed, compute, capturing;
};
static fake_cu cu = {132, 0, 0, 0}; /* an H100's multiprocessors: the same launch geometry */
/* No graphs on the host: nothing is ever captured. */
static double *cu_graph_loss(int, float *, int, size_t) { return NULL; }
static inline float cu_loss_value(const double *h, int kind, size_t n)
{
	return kind == 0 ? (h[0] > 0 ? (float)(h[1] / h[0]) : 0) : (float)(h[0] / n);
}
#include "rt/cuda_bf16.h" /* bf16 as cuda_bf16.h defines it */
/* No activation storage here: every array is fp32 (the simulated runtime,
 * part 3 of cuda_hostsim.sh, runs the bf16 paths). */
struct cu_arr {
	void *p;
	int bf;
};
static cu_arr cu_arr_of(const void *p) { return cu_arr{(void *)p, 0}; }
#define CU_ENTER()                                                                          \
	do {                                                                                \
		if (cu.failed)                                                              \
			return;                                                             \
	} while (0)
#define CU_LAUNCHED(...) 0
/* a slot's refusal (a tensor too large): no test here provokes one */
static void cu_fail(const char *file, int line, const char *call, const char *why,
		    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s:%d: %s: %s: ", file, line, call, why);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	abort();
}
#define CU_RT(call, ...) ((call), 0)
#define CU_THREADS 256
enum { cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
static int cudaMemcpyAsync(void *d, const void *s, size_t n, int, int)
{
	memmove(d, s, n);
	return 0;
}
static int cudaStreamSynchronize(int) { return 0; }
static unsigned cu_blocks(size_t n)
{
	size_t b = (n + CU_THREADS - 1) / CU_THREADS, cap = (size_t)cu.sms * 16;
	if (b > cap)
		b = cap;
	return b ? (unsigned)b : 1;
}
/* scratch starts as NaN, so a partial sum read before it is written shows */
static void *scratch_p;
static size_t scratch_n;
static void *cu_scratch(size_t bytes)
{
	if (bytes > scratch_n) {
		free(scratch_p);
		scratch_p = malloc(bytes);
		if (!scratch_p)
			abort();
		scratch_n = bytes;
		for (size_t i = 0; i < bytes / sizeof(double); i++)
			((double *)scratch_p)[i] = NAN;
	}
	return scratch_p;
}
static double host_scalars[64];
static double *cu_host_scalars(void) { return host_scalars; }
