/* bench/conv_blk: a spike, not a kernel of cairn's. A 3x3, pad 1, stride 1
 * forward convolution on AVX2 in oneDNN's channel-blocked layout (nChw8c:
 * 8 channels of a pixel in one vector), beside cairn's own forward
 * (nn_backend_cpu, one thread, one image) on the same input.
 *
 * Why: on AMD Zen 3 (AVX2, 32 KiB L1, 512 KiB L2) cairn's direct kernel,
 * which vectorizes along pixels of NCHW rows, runs the 16- and 32-channel
 * U-Net layers at 45-72% of the sgemm peak (docs/benchmarks.md). Here the
 * weights are vectors along output channels and the input is broadcast one
 * channel of one pixel at a time, so a register block of 6 pixels x 16
 * output channels reads its input from a few lines in L1; the price is the
 * layout copy in and the transpose back to NCHW, both timed.
 *
 *   build/b/conv_blk [--reps N]
 *
 * Each line: the largest difference from cairn's output, then milliseconds
 * and GFLOP/s of both. */
#pragma GCC optimize("O3")
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "nn/backend.h"

#define UR 6 /* pixels a register block: 6 x 2 accumulators + 2 weights + 1 broadcast */

static double clock_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

#pragma GCC push_options
#pragma GCC target("avx2,fma")

/* r[i] = column i of the 8 x 8 block whose rows were r[0..7] */
static void tr8(__m256 *r)
{
	__m256 t[8], u[8];
	for (int i = 0; i < 4; i++) {
		t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	for (int g = 0; g < 2; g++) {
		u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
		u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
		u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
		u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
	}
	for (int e = 0; e < 4; e++) {
		r[e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x20);
		r[4 + e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x31);
	}
}

/* xb[cb][row][col][8] over the padded image (rows h + 2, columns w + 2),
 * from x (cin planes of h x w; cin and w multiples of 8 here) */
static void to_blocked(const float *x, int cin, int h, int w, float *xb)
{
	int hp = h + 2, wp = w + 2;
	memset(xb, 0, sizeof(float) * (size_t)cin * hp * wp);
	for (int cb = 0; cb < cin / 8; cb++)
		for (int r = 0; r < h; r++) {
			float *o = xb + ((size_t)(cb * hp + r + 1) * wp + 1) * 8;
			for (int x0 = 0; x0 < w; x0 += 8) {
				__m256 v[8];
				for (int i = 0; i < 8; i++)
					v[i] = _mm256_loadu_ps(x + ((size_t)(cb * 8 + i) * h + r) * w + x0);
				tr8(v);
				for (int i = 0; i < 8; i++)
					_mm256_storeu_ps(o + (size_t)(x0 + i) * 8, v[i]);
			}
		}
}

/* wk[ob][cb][tap][i][o]: weight of output channel 8 ob + o, input 8 cb + i */
static void pack_weights(const float *w, int cin, int cout, float *wk)
{
	int ncb = cin / 8;
	for (int co = 0; co < cout; co++)
		for (int ci = 0; ci < cin; ci++)
			for (int t = 0; t < 9; t++)
				wk[((((size_t)(co / 8) * ncb + ci / 8) * 9 + t) * 8 + ci % 8) * 8 + co % 8] =
					w[((size_t)co * cin + ci) * 9 + t];
}

/* Output row r, every pair of output blocks, into yb[ob][col][8]: for each
 * block of UR pixels, all pairs, so the block's input stays in L1. */
static void row_blocked(const float *xb, const float *wk, int ncb, int nob, int h, int w, int r,
			float *yb)
{
	size_t wob = (size_t)ncb * 9 * 64; /* floats from one output block's weights to the next */
	int hp = h + 2, wp = w + 2;
	for (int x0 = 0; x0 < w; x0 += UR)
		for (int ob = 0; ob < nob; ob += 2) {
			__m256 a0[UR], a1[UR];
#pragma GCC unroll 6
			for (int u = 0; u < UR; u++)
				a0[u] = a1[u] = _mm256_setzero_ps();
			for (int cb = 0; cb < ncb; cb++)
				for (int p = 0; p < 3; p++) {
					const float *xr = xb + ((size_t)(cb * hp + r + p) * wp + x0) * 8;
					const float *wr = wk + ((size_t)ob * ncb + cb) * 9 * 64 + p * 3 * 64;
					for (int q = 0; q < 3; q++)
						for (int i = 0; i < 8; i++) {
							__m256 w0 = _mm256_loadu_ps(wr + q * 64 + i * 8);
							__m256 w1 = _mm256_loadu_ps(wr + wob + q * 64 + i * 8);
#pragma GCC unroll 6
							for (int u = 0; u < UR; u++) {
								__m256 xs = _mm256_broadcast_ss(xr + (u + q) * 8 + i);
								a0[u] = _mm256_fmadd_ps(w0, xs, a0[u]);
								a1[u] = _mm256_fmadd_ps(w1, xs, a1[u]);
							}
						}
				}
			float *o = yb + (size_t)ob * (w + UR) * 8 + (size_t)x0 * 8;
#pragma GCC unroll 6
			for (int u = 0; u < UR; u++) {
				_mm256_storeu_ps(o + u * 8, a0[u]);
				_mm256_storeu_ps(o + (size_t)(w + UR) * 8 + u * 8, a1[u]);
			}
		}
}

/* y (cout planes of h x w) = conv(x, w), through the blocked layout */
static void conv_blocked(const float *x, float *y, int cin, int cout, int h, int w, float *xb,
			 const float *wk, float *yb)
{
	int ncb = cin / 8, nob = cout / 8;
	to_blocked(x, cin, h, w, xb);
	for (int r = 0; r < h; r++) {
		row_blocked(xb, wk, ncb, nob, h, w, r, yb);
		for (int ob = 0; ob < nob; ob++)
			for (int x0 = 0; x0 < w; x0 += 8) {
				__m256 v[8];
				for (int i = 0; i < 8; i++)
					v[i] = _mm256_loadu_ps(yb + ((size_t)ob * (w + UR) + x0 + i) * 8);
				tr8(v);
				for (int i = 0; i < 8; i++)
					_mm256_storeu_ps(y + ((size_t)(ob * 8 + i) * h + r) * w + x0, v[i]);
			}
	}
}
#pragma GCC pop_options

static void fill(float *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
}

int main(int argc, char **argv)
{
	int reps = 8;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
		printf("conv_blk: this CPU has no AVX2 + FMA, skipped\n");
		return 0;
	}
	nn_cpu_set_threads(1);
	static const int shapes[][3] = {{16, 16, 256}, {32, 16, 256}, {32, 32, 256}, {32, 32, 128},
					{64, 32, 256}, {32, 64, 56}};
	const struct nn_backend *be = nn_backend_cpu();
	printf("3x3 pad 1, one image, one thread    max |diff|   cairn ms  GFLOP/s  blocked ms  GFLOP/s\n");
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int cin = shapes[s][0], cout = shapes[s][1], h = shapes[s][2], w = h;
		struct nn_conv_desc d = {.n = 1, .cin = cin, .h = h, .w = w, .cout = cout, .kh = 3,
					 .kw = 3, .stride = 1, .pad = 1, .dil = 1, .groups = 1};
		struct error err;
		if (nn_conv_desc_init(&d, &err) < 0) {
			fprintf(stderr, "conv_blk: %s\n", err.msg);
			return 1;
		}
		size_t nx = (size_t)cin * h * w, ny = (size_t)cout * h * w, nw = (size_t)cout * cin * 9;
		float *x = be->alloc(nx * 4), *wt = be->alloc(nw * 4), *y0 = be->alloc(ny * 4);
		float *y1 = be->alloc(ny * 4), *wk = be->alloc(nw * 4);
		float *xb = be->alloc((size_t)cin * (h + 2) * (w + 2 + UR) * 4);
		float *yb = be->alloc((size_t)cout * (w + UR) * 4);
		void *ws = be->alloc(be->conv2d_workspace(&d));
		fill(x, nx), fill(wt, nw);
		pack_weights(wt, cin, cout, wk);
		double tc = 1e9, tb = 1e9, diff = 0;
		for (int r = 0; r < reps; r++) {
			double t0 = clock_now();
			be->conv2d_fwd(&d, x, wt, NULL, y0, ws);
			double t1 = clock_now();
			conv_blocked(x, y1, cin, cout, h, w, xb, wk, yb);
			double t2 = clock_now();
			tc = t1 - t0 < tc ? t1 - t0 : tc;
			tb = t2 - t1 < tb ? t2 - t1 : tb;
		}
		for (size_t i = 0; i < ny; i++) {
			double dd = y0[i] > y1[i] ? y0[i] - y1[i] : y1[i] - y0[i];
			diff = dd > diff ? dd : diff;
		}
		double gf = 2.0 * nw * h * w / 1e9;
		printf("%3d -> %3d, %3d x %3d %19.1e %10.2f %8.1f %11.2f %8.1f\n", cin, cout, h, w, diff,
		       tc * 1e3, gf / tc, tb * 1e3, gf / tb);
		be->free(x), be->free(wt), be->free(y0), be->free(y1), be->free(wk), be->free(xb);
		be->free(yb), be->free(ws);
	}
	return 0;
}
