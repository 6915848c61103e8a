/* reduce: the block reduction of nn/cuda/ops.cu (block_sum, sum_partials)
 * with real threads: one std::thread per CUDA thread, __syncthreads as a
 * barrier, warp shuffles through a per-warp exchange, __shared__ as
 * block-wide statics (one block runs at a time). Checks the sums against a
 * sequential sum for several block sizes and counts, and two reductions in a
 * row (the reuse of the shared slots). Prints TAP lines. */
#include <barrier>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <thread>
#include <vector>

struct dim3 {
	unsigned x, y, z;
	dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
static thread_local dim3 threadIdx(0, 0, 0);
static dim3 blockIdx(0, 0, 0), blockDim(1, 1, 1), gridDim(1, 1, 1);
static std::barrier<> *block_bar;
static std::barrier<> *warp_bar[32];
static double warp_slot[32][32];

#define __global__
#define __device__
#define __shared__ static
#define CU_THREADS 256
static void __syncthreads() { block_bar->arrive_and_wait(); }
static double __shfl_down_sync(unsigned mask, double v, int o)
{
	(void)mask;
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
	warp_slot[w][lane] = v;
	warp_bar[w]->arrive_and_wait();
	double r = lane + o < 32 ? warp_slot[w][lane + o] : v;
	warp_bar[w]->arrive_and_wait();
	return r;
}

#include "reduce_kernels.cpp"

template <class F> static void run_block(unsigned bx, unsigned threads, F body)
{
	blockIdx = dim3(bx, 0, 0);
	blockDim = dim3(threads, 1, 1);
	std::barrier<> bar(threads);
	block_bar = &bar;
	std::vector<std::barrier<> *> wb;
	for (unsigned w = 0; w < threads / 32; w++)
		warp_bar[w] = new std::barrier<>(32);
	std::vector<std::thread> ts;
	for (unsigned t = 0; t < threads; t++)
		ts.emplace_back([t, &body] {
			threadIdx = dim3(t, 0, 0);
			body();
		});
	for (auto &t : ts)
		t.join();
	for (unsigned w = 0; w < threads / 32; w++)
		delete warp_bar[w];
}

/* Two reductions in a row in one block, as the norm kernels do. */
static void two_sums(const double *a, const double *b, int n, double *out)
{
	double s = 0, t = 0;
	for (int i = threadIdx.x; i < n; i += blockDim.x)
		s += a[i], t += b[i];
	s = block_sum(s);
	t = block_sum(t);
	if (threadIdx.x == 0)
		out[0] = s, out[1] = t;
	if (threadIdx.x == blockDim.x - 1) /* every thread sees the totals */
		out[2] = s, out[3] = t;
}

int main()
{
	int bad = 0;
	unsigned sizes[] = {32, 256, 512};
	int counts[] = {1, 5, 255, 256, 257, 1000, 1024};
	for (unsigned threads : sizes)
		for (int count : counts) {
			std::vector<double> part(2 * count), out(4, NAN);
			double want = 0, want2 = 0;
			for (int i = 0; i < count; i++) {
				part[i] = (double)rand() / RAND_MAX - 0.3;
				part[count + i] = (double)rand() / RAND_MAX;
				want += part[i], want2 += part[count + i];
			}
			gridDim = dim3(2, 1, 1);
			/* sum_partials: block k sums part[k * stride, k * stride + count) */
			for (unsigned k = 0; k < 2; k++)
				run_block(k, threads, [&] { sum_partials(part.data(), count, count, out.data()); });
			int ok = fabs(out[0] - want) <= 1e-12 * (1 + fabs(want)) &&
				 fabs(out[1] - want2) <= 1e-12 * (1 + fabs(want2));
			printf("%s - sum_partials %u threads, %d values\n", ok ? "ok" : "not ok", threads, count);
			if (!ok)
				printf("#   got %.17g %.17g, want %.17g %.17g\n", out[0], out[1], want, want2), bad++;
			std::fill(out.begin(), out.end(), NAN);
			gridDim = dim3(1, 1, 1);
			run_block(0, threads, [&] { two_sums(part.data(), part.data() + count, count, out.data()); });
			ok = fabs(out[0] - want) <= 1e-12 * (1 + fabs(want)) &&
			     fabs(out[1] - want2) <= 1e-12 * (1 + fabs(want2)) && out[2] == out[0] &&
			     out[3] == out[1];
			printf("%s - two block sums in a row, %u threads, %d values\n", ok ? "ok" : "not ok",
			       threads, count);
			if (!ok)
				printf("#   got %.17g %.17g (last thread %.17g %.17g), want %.17g %.17g\n", out[0],
				       out[1], out[2], out[3], want, want2), bad++;
		}
	return bad != 0;
}
