/* direct: stride-1 convolution without im2col, for the fast CPU backend.
 * Each thread pads a chunk of input rows into its workspace (channel planes
 * of width w + 2 pad, so the inner loops have no border tests) and computes
 * the output as an implicit GEMM: output channels x flat positions of the
 * padded chunk, one tap (ci, p, q) per step, the tap being a fixed offset
 * into the padded planes. Forward and backward-data share one kernel
 * (backward-data of a stride-1 convolution is the forward convolution of dy
 * with the flipped, transposed weights and padding (k-1) dil - pad); the
 * weight gradient has its own, vectorized along output channels over a
 * pixel-major copy of dy. Kernels for AVX-512 and AVX2+FMA, chosen at run
 * time; 3x3 pad 1 forward and backward-data with channels in vectors run in
 * a channel-blocked copy instead (blk_part, at the end) on AVX2 from 32
 * pixels wide and on AVX-512 up to 64; on AVX2, passes with many input
 * channels go to sgemm (direct_pays); other shapes and CPUs take the im2col
 * + sgemm path (nn/cpu/fast.c). */
#pragma GCC optimize("O3")
#include <immintrin.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cpu/cpu_ops.h"
#include "nn/cpu/par.h"

struct dk_fwd {
	const float *xb; /* padded chunk of the group's input channels */
	const int *off;  /* tap -> offset in xb */
	int k;           /* taps: input channels of a group x kh x kw */
	int wp, wout, rows;
	int pf;        /* prefetch distance along each tap, floats (0: none) */
	size_t yplane; /* floats between output channel planes */
};

struct dk_bwdf {
	const float *xb, *dyt; /* padded input chunk; dy of the chunk, pixel-major, ldc per pixel */
	const int *off;
	int wp, wout, rows, ldc, ldw; /* floats per pixel in dyt, per tap in dwt */
	size_t pf; /* 1x1 in place: prefetch each row this many floats on (the next taps) */
	size_t dyplane; /* bwdp: floats between dy's channel planes */
};

#define DK_UPTO1(X, A) X(A, 1)
#define DK_UPTO2(X, A) DK_UPTO1(X, A) X(A, 2)
#define DK_UPTO3(X, A) DK_UPTO2(X, A) X(A, 3)
#define DK_UPTO4(X, A) DK_UPTO3(X, A) X(A, 4)
#define DK_UPTO5(X, A) DK_UPTO4(X, A) X(A, 5)
#define DK_UPTO6(X, A) DK_UPTO5(X, A) X(A, 6)
#define DK_UPTO7(X, A) DK_UPTO6(X, A) X(A, 7)
#define DK_UPTO8(X, A) DK_UPTO7(X, A) X(A, 8)
#define DK_UPTO9(X, A) DK_UPTO8(X, A) X(A, 9)
#define DK_UPTO14(X, A) DK_UPTO9(X, A) X(A, 10) X(A, 11) X(A, 12) X(A, 13) X(A, 14)
#define DK_BC(C, K) DK_B(K, C)
#define DK_PC(M, K) DK_BP(K, M)

/* ---- AVX-512: 32 registers of 16 floats ---- */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma")
#define DK_SFX avx512
#define DK_VL 16
#define DK_V __m512
#define dk_load _mm512_loadu_ps
#define dk_store _mm512_storeu_ps
#define dk_set1 _mm512_set1_ps
#define dk_fma _mm512_fmadd_ps
#define dk_fnma _mm512_fnmadd_ps
#define dk_add _mm512_add_ps
#define dk_zero _mm512_setzero_ps
#define dk_mask_t __mmask16
#define dk_mask(lo, hi) ((__mmask16)(((1u << (hi)) - 1) & ~((1u << (lo)) - 1)))
#define dk_pstore(o, lo, hi, v) _mm512_mask_storeu_ps(o, dk_mask(lo, hi), v)
#define dk_mload(p, mk) _mm512_maskz_loadu_ps(mk, p)
#define DK_MRMAX 8
#define DK_NVMAX 8
#define DK_KRMAX 9
#define DK_COVMAX 4
/* accumulators MR x NV <= 24 (+ NV loaded vectors; weights are broadcast from memory);
 * weight gradient KR x COV <= 27: 6 x 4 for 64 channels (one pass over the chunk's
 * taps, not two: 1x1 256->64 backward-filter 11% faster) */
#define DK_FWD_CASES                                                                             \
	DK_UPTO8(DK_F, 1) DK_UPTO8(DK_F, 2) DK_UPTO7(DK_F, 3) DK_UPTO6(DK_F, 4)                  \
	DK_UPTO4(DK_F, 5) DK_UPTO4(DK_F, 6) DK_UPTO3(DK_F, 7) DK_UPTO3(DK_F, 8)
#define DK_BWDF_CASES                                                                            \
	DK_UPTO9(DK_BC, 1) DK_UPTO9(DK_BC, 2) DK_UPTO9(DK_BC, 3) DK_UPTO6(DK_BC, 4)
/* along pixels: KR x MR accumulators + MR dy vectors + 1 input vector <= 32 */
#define DK_MPMAX 3
#define DK_BWDP_CASES DK_UPTO9(DK_PC, 1) DK_UPTO9(DK_PC, 2) DK_UPTO9(DK_PC, 3)
#define dk_hsum _mm512_reduce_add_ps
/* bwd3: 2 x 9 accumulators + 8 dy vectors + 1 broadcast */
#define DK_BWD3_J 8
/* blocked: 2 output blocks x 14 pixels + 2 weight vectors + 1 broadcast (a 14 or 28 wide row
 * in whole blocks) */
#define DK_BLK_UR 14
#define DK_BLK_CASES DK_UPTO14(DK_L, 1) DK_UPTO14(DK_L, 2)
/* r[i] = column i of the 16 x 16 block whose rows were r[0..15] (unpack,
 * then shuffles within and across 128-bit lanes). */
static inline __attribute__((always_inline)) void tr16_avx512(__m512 *r)
{
	__m512 t[16];
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
#pragma GCC unroll 4
	for (int g = 0; g < 4; g++) { /* r[4g + e]: rows 4g..4g+3 of columns 4 lane + e */
		r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
		r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
		r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
		r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
	}
#pragma GCC unroll 4
	for (int e = 0; e < 4; e++) {
		t[e] = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x88);
		t[4 + e] = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xdd);
		t[8 + e] = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x88);
		t[12 + e] = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xdd);
	}
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++) {
		r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
		r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
	}
}

#define dk_tr tr16_avx512

#include "nn/cpu/direct_kern.h" /* undefines its parameters at its end */
#pragma GCC pop_options

/* ---- AVX2 + FMA: 16 registers of 8 floats ---- */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
static inline __m256i avx2_mask(int lo, int hi)
{
	__m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	return _mm256_and_si256(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(lo - 1)),
				_mm256_cmpgt_epi32(_mm256_set1_epi32(hi), i));
}
/* o[l] = v[l] for l in [lo, hi): at most three plain stores, as AVX2's masked
 * store (vmaskmovps) takes 16-19 cycles on AMD Zen 3 (5.8-7.6 ns each, in a
 * loop of them), as long as 16 FMAs of a whole register block */
static inline void avx2_pstore(float *o, int lo, int hi, __m256 v)
{
	int n = hi - lo;
	o += lo;
	v = _mm256_permutevar8x32_ps(v, _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
							 _mm256_set1_epi32(lo)));
	__m128 x = _mm256_castps256_ps128(v);
	if (n & 4) {
		_mm_storeu_ps(o, x);
		o += 4;
		x = _mm256_extractf128_ps(v, 1);
	}
	if (n & 2) {
		_mm_storel_pi((__m64 *)o, x);
		o += 2;
		x = _mm_movehl_ps(x, x);
	}
	if (n & 1)
		_mm_store_ss(o, x);
}
#define DK_SFX avx2
#define DK_VL 8
#define DK_V __m256
#define dk_load _mm256_loadu_ps
#define dk_store _mm256_storeu_ps
#define dk_set1 _mm256_set1_ps
#define dk_fma _mm256_fmadd_ps
#define dk_fnma _mm256_fnmadd_ps
#define dk_add _mm256_add_ps
#define dk_zero _mm256_setzero_ps
#define dk_mask_t __m256i
#define dk_mask avx2_mask
#define dk_pstore avx2_pstore
#define dk_mload _mm256_maskload_ps
#define DK_MRMAX 4
#define DK_NVMAX 6
#define DK_KRMAX 9
#define DK_COVMAX 2
/* MR x NV accumulators + NV loads + 1 broadcast <= 16 registers */
#define DK_FWD_CASES DK_UPTO6(DK_F, 1) DK_UPTO4(DK_F, 2) DK_UPTO3(DK_F, 3) DK_UPTO3(DK_F, 4)
#define DK_BWDF_CASES DK_UPTO9(DK_BC, 1) DK_UPTO6(DK_BC, 2)
/* along pixels: KR x MR accumulators + MR dy vectors + 1 input vector <= 16 */
#define DK_MPMAX 2
#define DK_BWDP_CASES DK_UPTO6(DK_PC, 1) DK_UPTO6(DK_PC, 2)
/* blocked: 2 output blocks x 6 pixels + 2 weight vectors + 1 broadcast */
#define DK_BLK_UR 6
#define DK_BLK_CASES DK_UPTO6(DK_L, 1) DK_UPTO6(DK_L, 2)
static inline float avx2_hsum(__m256 v)
{
	__m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
#define dk_hsum avx2_hsum

/* r[i] = column i of the 8 x 8 block whose rows were r[0..7] */
static inline __attribute__((always_inline)) void tr8_avx2(__m256 *r)
{
	__m256 t[8], u[8];
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
#pragma GCC unroll 2
	for (int g = 0; g < 2; g++) { /* u[4g + e]: rows 4g..4g+3 of columns 4 half + e */
		u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
		u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
		u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
		u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
	}
#pragma GCC unroll 4
	for (int e = 0; e < 4; e++) {
		r[e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x20);
		r[4 + e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x31);
	}
}

#define dk_tr tr8_avx2
#include "nn/cpu/direct_kern.h" /* undefines its parameters at its end */
#pragma GCC pop_options

/* One instruction set's kernels and block limits. nvmax[mr]: vectors per
 * tile for mr output channels; krmax[cov]: taps per weight-gradient block. */
struct dk_isa {
	const char *name;
	int vl, mrmax, covmax;
	int nvmax[9], krmax[5];
	int bwdp_mr, bwdp_kr; /* bwdp's blocks: output channels, taps */
	void (*fwd)(const struct dk_fwd *a, const float *wp, const float *bias, float *y, int f0,
		    int mr, int nv);
	void (*bwdf)(const struct dk_bwdf *a, int k0, int co, float *dwt, int kr, int cov);
	/* along pixels, for few output channels (NULL: none) */
	void (*bwdp)(const struct dk_bwdf *a, int k0, const float *dy, float *dw, int kr, int mr);
	/* dy chunk to pixel-major (dy_chunk); NULL: the plain loops */
	void (*dyt)(const float *dy, size_t hw, int cout, int npx, float *dyt, int ldc);
	void (*fix)(const float *x, const float *wt, const float *bias, float *y, int cin,
		    int cout, int h, int w, int r0, int r1);
	void (*fix_bwdf)(const float *x, const float *dyt, int ldc, float *dwt, int ldw, int cin,
			 int h, int w, int i0, int rows);
	/* 3x3 weight gradient, one vector of output channels, ci input channels (NULL: none) */
	void (*bwd3)(const struct dk_bwdf *a, int k0, int co, float *dwt, int ci);
	/* a chunk's padded planes (pad_chunk) */
	void (*pad)(const float *in, size_t iplane, int h, int w, float *xb, size_t plane, int wp,
		    int pw, int r0, int xrows, int nc);
	/* rows of one image's 3x3 pad 1 convolution in the channel-blocked layout */
	void (*blk)(const float *x, const float *wk, const float *bias, float *y, int cin, int cout,
		    int h, int w, int i0, int rows, float *xb, float *yb);
};

static const struct dk_isa isa_avx512 = {"avx512", 16, 8, 4, {0, 8, 8, 7, 6, 4, 4, 3, 3},
					 {0, 9, 9, 9, 6}, 3, 9, fwd_tile_avx512, bwdf_tile_avx512, bwdp_tile_avx512,
					 dyt_avx512, fix_cols_avx512, fix_bwdf_avx512, bwd3_tile_avx512,
					 pad_rows_avx512, blk_image_avx512};
static const struct dk_isa isa_avx2 = {"avx2", 8, 4, 2, {0, 6, 4, 3, 3}, {0, 9, 6}, 2, 6,
				       fwd_tile_avx2, bwdf_tile_avx2, bwdp_tile_avx2, dyt_avx2,
				       fix_cols_avx2, fix_bwdf_avx2, NULL, pad_rows_avx2, blk_image_avx2};

/* ---- kernel choice ---- */

enum { KERN_GEMM = 0, KERN_AVX2 = 1, KERN_AVX512 = 2 };
static const char *const kern_names[] = {"gemm", "avx2", "avx512"};
static int kern = -1;    /* -1: not chosen yet */
static int kern_forced; /* named (CAIRN_CONV_KERNEL, nn_cpu_set_conv_kernel): every shape it can run */

static int kern_best(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("fma"))
		return KERN_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return KERN_AVX2;
	return KERN_GEMM;
}

const char *direct_best_isa(void) { return kern_names[kern_best()]; }

/* a kernel named, not left to choose (NULL, "" or "auto") */
static int kern_named(const char *name) { return name && *name && strcmp(name, "auto"); }

static int kern_by_name(const char *name)
{
	int best = kern_best();
	if (!kern_named(name))
		return best;
	for (int i = 0; i <= KERN_AVX512; i++)
		if (!strcmp(name, kern_names[i]))
			return i <= best ? i : -1;
	return -1;
}

int nn_cpu_set_conv_kernel(const char *name)
{
	int k = kern_by_name(name);
	if (k < 0)
		return -1;
	kern = k;
	kern_forced = kern_named(name);
	return 0;
}

static int kern_now(void)
{
	if (kern < 0) {
		const char *e = getenv("CAIRN_CONV_KERNEL");
		int k = kern_by_name(e);
		kern = k < 0 ? kern_best() : k;
		kern_forced = k >= 0 && kern_named(e);
	}
	return kern;
}

int direct_isa_level(void)
{
	return kern_now();
}

static const struct dk_isa *isa_now(void)
{
	int k = kern_now();
	return k == KERN_AVX512 ? &isa_avx512 : k == KERN_AVX2 ? &isa_avx2 : NULL;
}

/* ---- plans ---- */

enum { PASS_FWD, PASS_BWD_DATA, PASS_BWD_FILTER };

/* Whether the direct kernels beat im2col + OpenBLAS sgemm on this pass, when
 * the kernel was not named. AVX2's 16 registers hold a block of 4 output
 * channels x 24 pixels, so each input vector loaded feeds 4 FMAs (AVX-512's
 * up to 8 x 16 lanes); with many input channels per group the taps of a tile
 * outgrow L1 and the chunk a 512 KiB L2 (AMD Zen 3), and OpenBLAS's packed
 * panels win. Measured on Zen 3, 2 threads, bench/nn_conv, both paths in
 * turns (docs/benchmarks.md): forward and backward-data faster through
 * sgemm from 128 input channels per group, and from 64 on images of
 * 32 x 32 and more (1x1 256->64: 13.6-14.8 -> 8.3-11.5 ms forward; 64->32
 * at 256 x 256: 331-342 -> 205-215; 256->256 at 14 x 14: 71-82 -> 55-69),
 * not at 14 x 14 from 64 (32->64 backward-data: 10.3-10.7 direct, 12.0-12.7
 * sgemm); the weight gradient from 128 input and 64 output
 * channels per group. Grouped convolutions stay direct (ResNeXt g32: 3 ms
 * against 6-8). AVX-512 takes the direct kernels everywhere. */
static int direct_pays(const struct nn_conv_desc *d, int pass)
{
	if (kern_forced || kern_now() != KERN_AVX2 || d->groups > 1)
		return 1;
	int bd = pass == PASS_BWD_DATA, cin = bd ? d->cout : d->cin, cout = bd ? d->cin : d->cout;
	if (pass == PASS_BWD_FILTER)
		return !(cin >= 128 && cout >= 64);
	return !(cin >= 128 || (cin >= 64 && (long)d->h * d->w >= 1024));
}

/* One pass as a forward convolution: `in` (cin channels, h x w) padded by
 * ph, pw and convolved into `out` (cout channels, hout x wout). */
struct dplan {
	int n, groups, cin, cout, cig, cog;
	int h, w, hout, wout, kh, kw, dil, ph, pw;
	int k;                   /* taps per group */
	int wp, rows, xrows, nchunks;
	size_t plane, xfloats;   /* per thread: the padded chunk */
	int nocopy;              /* no padding: most chunks are read in place (plane h w) */
	int inplace3;            /* 3x3 pad 1: chunks away from the top and bottom read in place */
	int bwdp;                /* weight gradient along pixels (few output channels per group) */
	int bwd3;                /* weight gradient 3x3 dil 1: isa->bwd3 for one vector of channels */
	int slices;              /* weight gradient of fewer images than threads: the threads
				    take slices of the output channels, not chunks (bwdf_slices) */
	int ldc, ldg;            /* weight gradient: output channels (of a group) rounded up to 16 */
	size_t tfloats, dwfloats; /* per thread: pixel-major dy chunk, weight gradient */
	size_t per_thread;
	int blk; /* forward / backward-data in the channel-blocked layout (AVX2, blk_part) */
};

#define CHUNK_BYTES (512 * 1024) /* padded chunk (+ dy copy), kept in L2 */
/* narrower images keep the NCHW kernel on AVX2: at 14 x 14 (32->64) the
 * blocked copy, transposes and a row's ragged last block made the forward
 * 11-12 ms against 8-11 (Zen 3) */
#define BLK_MIN_W 32
/* AVX-512 (Zen 5, 2 threads, both layouts in turns, best of 48 runs): the
 * blocked layout from 64 wide down: 0.74-0.86x the NCHW kernel's time at
 * 14 x 14 (32->64), 0.89-0.93 at 28, 0.79-0.98 at 56, 0.91 at 64; even at
 * 128 and 16; slower at 256 with 16 channels (1.13-1.23x: one vector of
 * output channels, one weight load per FMA row of 14 broadcasts) */
#define BLK_MAX_W512 64
/* Chunks read in place come from memory through one stream per tap (256
 * for a 1x1 conv from 256 channels), more than the hardware prefetcher
 * follows: the forward kernel prefetches each tap's next tiles itself, this
 * many floats on (the weight gradient prefetches the next block of taps). */
#define PF_FLOATS 128
/* 3x3 pad 1 reads inner chunks in place from this width on (the border
 * columns recomputed weigh more on narrow images: measured slower at 56,
 * faster at 128 and 256) */
#define INPLACE_MIN_W 128

/* the weight gradient runs along pixels (bwdp) up to this many output
 * channels per group, in blocks of isa->bwdp_mr: ResNeXt g32 (4 per group)
 * 2.6-5.9 -> 1.5 ms (AVX-512); at 16 channels the kernel along channels stays
 * faster (11.4 against 13.7 ms on unet16 enc0 16->16 256: bwdp's unaligned
 * input vectors split across cache lines) */
#define BWDP_MAXC 8

static size_t al16(size_t n) { return (n + 15) / 16 * 16; }

/* Whether forward / backward-data run in the channel-blocked layout (blk_part). */
static int blk_pays(const struct dplan *p, const struct dk_isa *isa)
{
	if (p->groups != 1 || p->kh != 3 || p->kw != 3 || p->dil != 1 || p->ph != 1 ||
	    p->pw != 1 || p->cin % isa->vl || p->cout % isa->vl)
		return 0;
	return isa == &isa_avx2 ? p->w >= BLK_MIN_W : p->w <= BLK_MAX_W512;
}

static size_t blk_xfloats(const struct dplan *p);

static int plan_init(const struct nn_conv_desc *d, int pass, struct dplan *p)
{
	if (d->stride != 1 || d->n < 1 || d->dil < 1)
		return -1;
	memset(p, 0, sizeof(*p));
	p->n = d->n, p->groups = d->groups, p->kh = d->kh, p->kw = d->kw, p->dil = d->dil;
	if (pass == PASS_BWD_DATA) {
		p->cin = d->cout, p->cout = d->cin, p->h = d->hout, p->w = d->wout;
		p->hout = d->h, p->wout = d->w;
		p->ph = (d->kh - 1) * d->dil - d->pad, p->pw = (d->kw - 1) * d->dil - d->pad;
		if (p->ph < 0 || p->pw < 0)
			return -1;
	} else {
		p->cin = d->cin, p->cout = d->cout, p->h = d->h, p->w = d->w;
		p->hout = d->hout, p->wout = d->wout, p->ph = p->pw = d->pad;
	}
	p->cig = p->cin / p->groups, p->cog = p->cout / p->groups;
	p->k = p->cig * p->kh * p->kw;
	/* a padded row is its pw zero columns, then its w pixels: the right
	 * padding of row r is the left padding of row r + 1 (the taps reach at
	 * most pw columns past a row, stride 1), so the lanes computed for the
	 * columns past wout, and the chunk, are pw columns a row fewer than with
	 * both sides padded (16x16 3x3: 17 lanes a row for 16 pixels, not 18).
	 * An output row must fit in a padded one: pad > (k - 1) dil pads both. */
	p->wp = p->w + p->pw;
	if (p->wp < p->wout)
		p->wp = p->w + 2 * p->pw;
	p->nocopy = p->ph == 0 && p->pw == 0;
	p->inplace3 = p->groups == 1 && p->kh == 3 && p->kw == 3 &&
		      p->dil == 1 && p->ph == 1 && p->pw == 1 && p->w >= INPLACE_MIN_W;
	int halo = (p->kh - 1) * p->dil;
	if (pass == PASS_BWD_FILTER) {
		p->ldc = (p->cout + 15) / 16 * 16, p->ldg = (p->cog + 15) / 16 * 16;
		p->bwdp = isa_now() && isa_now()->bwdp && p->cog <= BWDP_MAXC;
		p->bwd3 = isa_now() && isa_now()->bwd3 && !p->bwdp && p->kh == 3 && p->kw == 3 &&
			  p->dil == 1;
	}
	size_t per_row = (size_t)p->cin * p->wp + (size_t)p->wout * p->ldc;
	long rows = (long)(CHUNK_BYTES / sizeof(float) / per_row) - halo;
	rows = rows < 1 ? 1 : rows > p->hout ? p->hout : rows;
	int t = par_threads();
	if (pass == PASS_BWD_FILTER && p->n < t && t > 1 && p->groups == 1 && !p->bwdp &&
	    !p->inplace3 && isa_now() && p->ldg / isa_now()->vl >= t)
		p->slices = t;
	while (!p->slices && rows > 1 && (long)p->n * ((p->hout + rows - 1) / rows) < t)
		rows = (rows + 1) / 2;
	/* the weight gradient takes a whole image rather than a chunk and a thin
	 * rest (16x16 256->256: 13 + 3 rows; a chunk rereads and rewrites the
	 * thread's dwt, 2.4 MB there): 4% faster */
	if (pass == PASS_BWD_FILTER && rows * 2 > p->hout && (long)p->n >= t)
		rows = p->hout;
	p->rows = (int)rows;
	p->nchunks = (p->hout + p->rows - 1) / p->rows;
	p->xrows = p->rows + halo;
	p->plane = (size_t)p->xrows * p->wp;
	/* tap offsets are ints */
	if ((size_t)p->cin * p->plane + p->wp >= INT_MAX)
		return -1;
	if ((size_t)p->cin * p->h * p->w + p->w >= INT_MAX)
		p->nocopy = 0, p->inplace3 = 0;
	/* the last vector of a chunk reads up to (kw-1) dil + 16 floats past the last plane */
	p->xfloats = al16((size_t)p->cin * p->plane + (size_t)(p->kw - 1) * p->dil + 32);
	if (pass == PASS_BWD_FILTER) {
		/* + 16: a group's vectors start at its first channel and may read past the last pixel */
		p->tfloats = al16((size_t)p->rows * p->wout * p->ldc + 16);
		p->dwfloats = al16((size_t)p->groups * p->k * p->ldg);
	}
	const struct dk_isa *isa = isa_now();
	p->blk = pass != PASS_BWD_FILTER && isa && blk_pays(p, isa);
	if (p->blk) { /* blocked padded rows, then one output row */
		size_t need = blk_xfloats(p) + (size_t)p->cout * al16(p->w);
		p->xfloats = al16(need > p->xfloats ? need : p->xfloats);
	}
	p->per_thread = p->xfloats + p->tfloats + p->dwfloats;
	return 0;
}

/* Workspace: packed weights, the weights tap-major (the border columns of
 * in-place chunks), the tap offsets (in the padded chunk, in the unpadded
 * input), then one slice per thread. */
static size_t taps_max(const struct nn_conv_desc *d)
{
	return al16((size_t)(d->cin > d->cout ? d->cin : d->cout) * d->kh * d->kw);
}

static size_t head_floats(const struct nn_conv_desc *d)
{
	size_t nw = (size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw;
	return 2 * al16(nw) + 2 * taps_max(d);
}

size_t direct_conv2d_workspace(const struct nn_conv_desc *d)
{
	size_t per = 0;
	for (int pass = PASS_FWD; pass <= PASS_BWD_FILTER; pass++) {
		struct dplan p;
		if (plan_init(d, pass, &p) == 0 && p.per_thread > per)
			per = p.per_thread;
	}
	if (!per)
		return 0;
	return (head_floats(d) + (size_t)par_threads() * per) * sizeof(float) + 64;
}

struct djob {
	const struct dplan *p;
	const struct dk_isa *isa;
	const float *in, *w, *bias, *dy;
	float *out, *dw;
	float *wpack, *wt, *thr;
	int *off, *off_in; /* tap offsets in the padded chunk, in the input itself */
	int nparts;
};

static float *ws_align(void *ws) { return (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63); }

static void job_init(struct djob *j, const struct dplan *p, void *ws, const struct nn_conv_desc *d)
{
	float *base = ws_align(ws);
	size_t nw = (size_t)d->cout * (d->cin / d->groups) * d->kh * d->kw;
	j->p = p;
	j->isa = isa_now();
	j->wpack = base;
	j->wt = base + al16(nw);
	j->off = (int *)(base + 2 * al16(nw));
	j->off_in = j->off + taps_max(d);
	j->thr = base + head_floats(d);
	size_t iplane = (size_t)p->h * p->w;
	for (int c = 0, k = 0; c < p->cig; c++)
		for (int q0 = 0; q0 < p->kh; q0++)
			for (int q1 = 0; q1 < p->kw; q1++, k++) {
				int at = q0 * p->dil * p->wp + q1 * p->dil;
				j->off[k] = (int)(c * p->plane + at);
				j->off_in[k] = (int)(c * iplane + q0 * p->dil * p->w + q1 * p->dil);
			}
}

static void pad_chunk(const struct djob *j, const float *in, float *xb, int i0);

/* The chunk at output row i0 of image n: in place when unpadded (the last
 * chunk of the batch excepted: the forward kernel's last vectors read up to
 * 16 + (kw-1) dil floats past it) or, for 3x3 pad 1 (inplace3), when it is
 * two rows or more from the image's top and bottom (the taps of the
 * missing columns then read the neighbouring rows' ends: fwd_part
 * recomputes those columns, bwdf_part takes their products back out), else
 * padded into xb. Sets the plane stride
 * and the tap offsets to use. */
static const float *chunk_at(const struct djob *j, int n, int i0, float *xb, int overread,
			     size_t *plane, const int **off)
{
	const struct dplan *p = j->p;
	const float *in = j->in + (size_t)n * p->cin * p->h * p->w;
	if (p->nocopy && !(overread && n == p->n - 1 && i0 + p->rows >= p->hout)) {
		*plane = (size_t)p->h * p->w, *off = j->off_in;
		return in + (size_t)i0 * p->w;
	}
	if (p->inplace3 && i0 >= 2 && i0 + p->rows + 2 < p->h) {
		*plane = (size_t)p->h * p->w, *off = j->off_in;
		return in + (size_t)(i0 - 1) * p->w - 1;
	}
	pad_chunk(j, in, xb, i0);
	*plane = p->plane, *off = j->off;
	return xb;
}

static int items(const struct dplan *p) { return p->n * p->nchunks; }

/* Block b of [0, c) split evenly in nb blocks. */
static void block(int c, int nb, int b, int *start, int *len)
{
	*len = c / nb + (b < c % nb);
	*start = b * (c / nb) + (b < c % nb ? b : c % nb);
}

/* Packed weights: for each group and block of mr output channels starting at
 * oc, wpack[(g cog + oc) k + tap mr + m] = weight of (oc + m, tap); blocks
 * [b, e) of all groups' (backward-data gathers the flipped, transposed
 * weights: 0.5 ms for 256 x 256 x 3 x 3 on one core, so both take part). */
struct pack_job {
	const struct djob *j;
	const struct nn_conv_desc *d;
	int pass;
};

static void pack_part(void *ctx, int b, int e, int tid)
{
	const struct pack_job *pj = ctx;
	const struct djob *j = pj->j;
	const struct nn_conv_desc *d = pj->d;
	const struct dplan *p = j->p;
	int nb = (p->cog + j->isa->mrmax - 1) / j->isa->mrmax, khw = d->kh * d->kw;
	int cig_d = d->cin / d->groups, cog_d = d->cout / d->groups;
	(void)tid;
	for (int it = b; it < e; it++) {
		int g = it / nb, oc, mr;
		block(p->cog, nb, it % nb, &oc, &mr);
		float *o = j->wpack + ((size_t)g * p->cog + oc) * p->k;
		if (pj->pass == PASS_FWD) {
			for (int k = 0; k < p->k; k++)
				for (int m = 0; m < mr; m++)
					o[(size_t)k * mr + m] = j->w[((size_t)g * p->cog + oc + m) * p->k + k];
			continue;
		}
		/* tap (co, p', q') of dx channel ci: w[co][ci][kh-1-p'][kw-1-q'] (co and
		 * p' q' as loops: k / khw and k % khw cost 0.3 ms a call for 256 x 256 x 3 x 3) */
		for (int co = 0, k = 0; co < cog_d; co++)
			for (int pq = 0; pq < khw; pq++, k++)
				for (int m = 0; m < mr; m++)
					o[(size_t)k * mr + m] =
						j->w[(((size_t)g * cog_d + co) * cig_d + oc + m) * khw +
						     khw - 1 - pq];
	}
}

static void pack_weights(const struct djob *j, const struct nn_conv_desc *d, int pass)
{
	struct pack_job pj = {j, d, pass};
	int nb = (j->p->cog + j->isa->mrmax - 1) / j->isa->mrmax;
	par_for(j->p->groups * nb, pack_part, &pj);
}

/* wt[tap][co] = the packed weight of (co, tap), for fix_cols (groups 1). */
static void weights_tap_major(const struct djob *j)
{
	const struct dplan *p = j->p;
	int nb = (p->cout + j->isa->mrmax - 1) / j->isa->mrmax;
	for (int b = 0; b < nb; b++) {
		int oc, mr;
		block(p->cout, nb, b, &oc, &mr);
		const float *s = j->wpack + (size_t)oc * p->k;
		for (int k = 0; k < p->k; k++)
			for (int m = 0; m < mr; m++)
				j->wt[(size_t)k * p->cout + oc + m] = s[(size_t)k * mr + m];
	}
}

/* Input rows [i0 - ph, i0 - ph + xrows) of every channel, zero-padded, and
 * zeros after the last plane (the forward kernel's last vectors read them). */
static void pad_chunk(const struct djob *j, const float *in, float *xb, int i0)
{
	const struct dplan *p = j->p;
	size_t used = (size_t)p->cin * p->plane;
	memset(xb + used, 0, sizeof(float) * (p->xfloats - used));
	j->isa->pad(in, (size_t)p->h * p->w, p->h, p->w, xb, p->plane, p->wp, p->pw, i0 - p->ph,
		    p->xrows, p->cin);
}

/* Output channel block bi of group g, flat vectors [v0, v0 + nv) of the chunk at row i0. */
static void fwd_block(const struct djob *j, const struct dk_fwd *a, int n, int g, int bi, int nb,
		      int i0, int v0, int nv)
{
	const struct dplan *p = j->p;
	int oc, mr;
	block(p->cog, nb, bi, &oc, &mr);
	int co = g * p->cog + oc;
	const float *bias = j->bias ? j->bias + co : NULL;
	float *y = j->out + (((size_t)n * p->cout + co) * p->hout + i0) * p->wout;
	j->isa->fwd(a, j->wpack + (size_t)co * p->k, bias, y, v0 * j->isa->vl, mr, nv);
}

static void fwd_part(void *ctx, int b, int e, int tid)
{
	const struct djob *j = ctx;
	const struct dplan *p = j->p;
	const struct dk_isa *isa = j->isa;
	float *xb = j->thr + tid * p->per_thread;
	size_t yplane = (size_t)p->hout * p->wout;
	int nb = (p->cog + isa->mrmax - 1) / isa->mrmax;
	for (int it = b; it < e; it++) {
		int n = it / p->nchunks, i0 = it % p->nchunks * p->rows;
		int rows = p->hout - i0 < p->rows ? p->hout - i0 : p->rows;
		size_t plane;
		const int *off;
		const float *x = chunk_at(j, n, i0, xb, 1, &plane, &off);
		/* in place, 3x3 pad 1: rows of w, every column stored, the first and last fixed below */
		int fix = off == j->off_in && p->inplace3, wp = fix ? p->w : p->wp;
		struct dk_fwd a = {.off = off, .k = p->k, .wp = wp, .wout = p->wout,
				   .rows = rows, .yplane = yplane,
				   .pf = off == j->off_in ? PF_FLOATS : 0};
		int nvec = (rows * wp + isa->vl - 1) / isa->vl;
		for (int g = 0; g < p->groups; g++) {
			a.xb = x + (size_t)g * p->cig * plane;
			for (int bi = 0; bi < nb; bi++) { /* the block's weights stay in L1 */
				int oc, mr;
				block(p->cog, nb, bi, &oc, &mr);
				int nt = (nvec + isa->nvmax[mr] - 1) / isa->nvmax[mr];
				for (int t = 0; t < nt; t++) {
					int v0, nv;
					block(nvec, nt, t, &v0, &nv);
					fwd_block(j, &a, n, g, bi, nb, i0, v0, nv);
				}
			}
		}
		if (fix)
			isa->fix(j->in + (size_t)n * p->cin * plane, j->wt, j->bias,
				 j->out + (size_t)n * p->cout * yplane, p->cin, p->cout, p->h, p->w,
				 i0, i0 + rows);
	}
}

/* dy rows [i0, i0 + rows) of image n, pixel-major: dyt[px][co], ldc floats per
 * pixel, channels past cout zero. */
static void dy_chunk(const struct djob *j, const float *dy, float *dyt, int rows)
{
	const struct dplan *p = j->p;
	size_t hw = (size_t)p->hout * p->wout;
	int npx = rows * p->wout;
	if (j->isa->dyt) {
		j->isa->dyt(dy, hw, p->cout, npx, dyt, p->ldc);
		return;
	}
	for (int px0 = 0; px0 < npx; px0 += 16) {
		int pe = px0 + 16 < npx ? px0 + 16 : npx;
		for (int co = 0; co < p->cout; co++) {
			const float *s = dy + co * hw;
			for (int px = px0; px < pe; px++)
				dyt[(size_t)px * p->ldc + co] = s[px];
		}
		for (int px = px0; px < pe; px++)
			for (int co = p->cout; co < p->ldc; co++)
				dyt[(size_t)px * p->ldc + co] = 0;
	}
}

/* For fix_bwdf after bwdp: the pixels of columns 0 and w - 1 of dy's rows
 * [i0, i0 + rows) (dy: the chunk's first row) into dyt, pixel-major, as
 * dy_chunk would have put them; nothing else of dyt is read. */
static void dy_edges(const struct djob *j, const float *dy, float *dyt, int rows)
{
	const struct dplan *p = j->p;
	size_t hw = (size_t)p->hout * p->wout;
	for (int i = 0; i < rows; i++)
		for (int sd = 0; sd < 2; sd++) {
			size_t px = (size_t)i * p->wout + (sd ? p->wout - 1 : 0);
			for (int co = 0; co < p->ldc; co++)
				dyt[px * p->ldc + co] = co < p->cout ? dy[co * hw + px] : 0;
		}
}

/* The chunk's weight gradient along pixels (bwdp): each group's output
 * channels in blocks of up to isa->bwdp_mr, its taps in blocks of isa->bwdp_kr. */
static void bwdp_chunk(const struct djob *j, struct dk_bwdf *a, const float *x, size_t plane,
		       const float *dy, float *dwt)
{
	const struct dplan *p = j->p;
	int mrmax = j->isa->bwdp_mr, kr = j->isa->bwdp_kr;
	int nb = (p->cog + mrmax - 1) / mrmax;
	for (int g = 0; g < p->groups; g++) {
		a->xb = x + (size_t)g * p->cig * plane;
		for (int bi = 0; bi < nb; bi++) {
			int c0, mr;
			block(p->cog, nb, bi, &c0, &mr);
			const float *dyb = dy + (g * p->cog + c0) * a->dyplane;
			float *dw = dwt + (size_t)g * p->k * p->ldg + c0;
			for (int k0 = 0; k0 < p->k; k0 += kr)
				j->isa->bwdp(a, k0, dyb, dw, p->k - k0 < kr ? p->k - k0 : kr, mr);
		}
	}
}

/* The chunk's weight gradient along output channels (bwdf, or bwd3 for one
 * vector of them): per group, the taps of its input channels, vectors from
 * its first output channel; lanes past the group's channels are computed
 * and ignored. */
/* Blocks of output-channel vectors of a group: at most covmax vectors each,
 * and at least one a slice (p->slices). */
static int bwdc_blocks(const struct dplan *p, const struct dk_isa *isa)
{
	int nvv = p->ldg / isa->vl, nb = (nvv + isa->covmax - 1) / isa->covmax;
	return nb < p->slices ? p->slices : nb;
}

/* The weight gradient of a chunk, for blocks [b0, b1) of each group's
 * output-channel vectors. */
static void bwdc_chunk(const struct djob *j, struct dk_bwdf *a, const float *x, size_t plane,
		       int in_place, float *dwt, int b0, int b1)
{
	const struct dplan *p = j->p;
	const struct dk_isa *isa = j->isa;
	int nvv = p->ldg / isa->vl, nb = bwdc_blocks(p, isa);
	for (int g = 0; g < p->groups; g++) {
		a->xb = x + (size_t)g * p->cig * plane;
		float *dwg = dwt + (size_t)g * p->k * p->ldg;
		for (int bi = b0; bi < b1; bi++) {
			int v0, cov;
			block(nvv, nb, bi, &v0, &cov);
			int kr = isa->krmax[cov], co = g * p->cog + v0 * isa->vl;
			/* 1x1 read in place: tap k + kr is plane kr planes on */
			a->pf = p->kh * p->kw == 1 && in_place ? kr * plane : 0;
			if (cov == 1 && p->bwd3) {
				for (int c = 0; c < p->cig; c += 2)
					isa->bwd3(a, c * 9, co, dwg + v0 * isa->vl, p->cig - c < 2 ? 1 : 2);
				continue;
			}
			for (int k0 = 0; k0 < p->k; k0 += kr)
				isa->bwdf(a, k0, co, dwg + v0 * isa->vl, p->k - k0 < kr ? p->k - k0 : kr,
					  cov);
		}
	}
}

/* Chunk `it` (image it / nchunks) into dwt, blocks [b0, b1) of the output
 * channels; xb and dyt: the thread's. */
static void bwdf_item(const struct djob *j, int it, float *xb, float *dyt, float *dwt, int b0,
		      int b1)
{
	const struct dplan *p = j->p;
	size_t out_img = (size_t)p->cout * p->hout * p->wout;
	int n = it / p->nchunks, i0 = it % p->nchunks * p->rows;
	int rows = p->hout - i0 < p->rows ? p->hout - i0 : p->rows;
	size_t plane;
	const int *off; /* this kernel reads only real pixels: never past the chunk */
	const float *x = chunk_at(j, n, i0, xb, 0, &plane, &off);
	const float *dyc = j->dy + n * out_img + (size_t)i0 * p->wout;
	/* fix: read in place with rows of w, see fix_bwdf */
	int in_place = off == j->off_in, fix = in_place && p->inplace3;
	struct dk_bwdf a = {.dyt = dyt, .off = off, .wp = fix ? p->w : p->wp,
			    .wout = p->wout, .rows = rows, .ldc = p->ldc, .ldw = p->ldg,
			    .dyplane = (size_t)p->hout * p->wout};
	if (p->bwdp) {
		if (fix)
			dy_edges(j, dyc, dyt, rows);
		bwdp_chunk(j, &a, x, plane, dyc, dwt);
	} else {
		dy_chunk(j, dyc, dyt, rows);
		bwdc_chunk(j, &a, x, plane, in_place, dwt, b0, b1);
	}
	if (fix)
		j->isa->fix_bwdf(j->in + (size_t)n * p->cin * plane, dyt, p->ldc, dwt, p->ldg,
				 p->cin, p->h, p->w, i0, rows);
}

/* Chunks [b, e) into the thread's own weight gradient (dw_sum_part sums them). */
static void bwdf_part(void *ctx, int b, int e, int tid)
{
	const struct djob *j = ctx;
	const struct dplan *p = j->p;
	float *xb = j->thr + tid * p->per_thread, *dyt = xb + p->xfloats, *dwt = dyt + p->tfloats;
	memset(dwt, 0, sizeof(float) * p->dwfloats);
	for (int it = b; it < e; it++)
		bwdf_item(j, it, xb, dyt, dwt, 0, bwdc_blocks(p, j->isa));
}

/* Slices [b, e) of the output channels over every chunk, into the first
 * thread's weight gradient, which the slices share (their columns apart:
 * whole vectors). With fewer images than threads, slices of channels leave
 * no partial gradients to sum (cairn-refine's batch 1: each thread's was the
 * whole gradient, 2.4 MB for 256 -> 256 3x3, written, read and added; a
 * slice reads the chunk it pads and its dy once more instead). */
static void bwdf_slices(void *ctx, int b, int e, int tid)
{
	const struct djob *j = ctx;
	const struct dplan *p = j->p;
	float *xb = j->thr + tid * p->per_thread, *dyt = xb + p->xfloats;
	float *dwt = j->thr + p->xfloats + p->tfloats;
	int nb = bwdc_blocks(p, j->isa), nvv = p->ldg / j->isa->vl;
	for (int sl = b; sl < e; sl++) {
		int b0, nbs, v0, v1, len;
		block(nb, p->slices, sl, &b0, &nbs);
		block(nvv, nb, b0, &v0, &len);
		block(nvv, nb, b0 + nbs - 1, &v1, &len);
		v1 += len;
		for (int k = 0; k < p->k; k++)
			memset(dwt + (size_t)k * p->ldg + v0 * j->isa->vl, 0,
			       sizeof(float) * (size_t)(v1 - v0) * j->isa->vl);
		for (int it = 0; it < items(p); it++)
			bwdf_item(j, it, xb, dyt, dwt, b0, b0 + nbs);
	}
}

/* dw[co][k] = sum over threads of dwt[g][k][co - g cog], in thread order,
 * for taps [b, e), in tiles of 16 taps x 16 channels: summed along channels
 * (vectors) and written along taps, so that the lines of dwt read (ldg
 * floats apart) and of dw written serve 16 floats each before they leave
 * L1 (one tap at a time read a line per float: 2304 taps x 256 channels
 * took milliseconds; a tile summed a float at a time, 11% of cairn-refine's
 * batch-1 step, 1.5 times what this takes, session 25). */
static void dw_sum_part(void *ctx, int b, int e, int tid)
{
	const struct djob *j = ctx;
	const struct dplan *p = j->p;
	float tile[16][16];
	(void)tid;
	for (int k0 = b; k0 < e; k0 += 16) {
		int nk = e - k0 < 16 ? e - k0 : 16;
		for (int g = 0; g < p->groups; g++)
			for (int c0 = 0; c0 < p->cog; c0 += 16) { /* rows hold ldg >= c0 + 16 */
				int nc = p->cog - c0 < 16 ? p->cog - c0 : 16;
				const float *src = j->thr + p->xfloats + p->tfloats +
						   ((size_t)g * p->k + k0) * p->ldg + c0;
				for (int k = 0; k < nk; k++) {
					const float *r = src + (size_t)k * p->ldg;
					for (int c = 0; c < 16; c++)
						tile[k][c] = r[c];
					for (int t = 1; t < j->nparts; t++)
						for (int c = 0; c < 16; c++)
							tile[k][c] += r[(size_t)t * p->per_thread + c];
				}
				for (int c = 0; c < nc; c++) {
					float *o = j->dw + ((size_t)g * p->cog + c0 + c) * p->k + k0;
					for (int k = 0; k < nk; k++)
						o[k] = tile[k][c];
				}
			}
	}
}

/* ---- the channel-blocked forward ----
 * The kernels above, vectorized along pixels of NCHW rows, reread their
 * chunk from beyond L2 once per block of output channels on AVX2 CPUs with
 * small caches (AMD Zen 3: 32 KiB L1, 512 KiB L2), and on small images
 * (14 x 14) waste the lanes of each row's padding and last vector. For 3x3,
 * pad 1 convolutions with channels in vectors the forward and backward-data
 * passes instead copy each chunk into oneDNN's blocked layout (a vector's
 * channels of one pixel together: xb[cb][row][col][vl], padded), hold a
 * block of a row's pixels x 2 vectors of output channels in registers with
 * the weights as vectors along output channels and the input broadcast, one
 * channel of one pixel at a time (AVX2: 6 pixels, 2 weight loads and 6
 * broadcasts per 12 FMAs, all from L1; AVX-512: up to 14 pixels, 2 + 14 per
 * 28), and transpose each output row back to NCHW (isa->blk, direct_kern.h). */

/* wk[ob][cb][tap][i][o]: the pass's weight of output channel vl ob + o from
 * input channel vl cb + i (backward-data: flipped and transposed) */
/* The weights in the blocked layout: per vector of output channels (ob)
 * and of input channels (ib), [tap][ci lane][co lane], flipped and
 * transposed for backward-data. A block of vl x vl x 9 at a time, so that
 * what it reads (vl runs of 9 vl floats) and writes stay in L1, and the
 * vectors of output channels in parallel: packed once per call, the weights
 * of a 256 -> 256 layer (2.4 MB) cost as much as its convolution of one
 * 16 x 16 image when packed a float at a time in row order on one core
 * (cairn-refine's batch 1, session 25). */
static void blk_pack_part(void *ctx, int b, int e, int tid)
{
	const struct pack_job *pj = ctx;
	const struct djob *j = pj->j;
	const struct dplan *p = j->p;
	int vl = j->isa->vl, ncb = p->cin / vl, cin = pj->d->cin, fwd = pj->pass == PASS_FWD;
	(void)tid;
	for (int ob = b; ob < e; ob++)
		for (int ib = 0; ib < ncb; ib++) {
			float *o = j->wpack + ((size_t)ob * ncb + ib) * 9 * vl * vl;
			for (int cl = 0; cl < vl; cl++)
				for (int il = 0; il < vl; il++) {
					size_t co = (size_t)ob * vl + cl, ci = (size_t)ib * vl + il;
					const float *src = j->w + (fwd ? co * cin + ci : ci * cin + co) * 9;
					for (int t = 0; t < 9; t++)
						o[(t * vl + il) * vl + cl] = src[fwd ? t : 8 - t];
				}
		}
}

static void blk_pack(const struct djob *j, const struct nn_conv_desc *d, int pass)
{
	struct pack_job pj = {j, d, pass};
	par_for(j->p->cout / j->isa->vl, blk_pack_part, &pj);
}

static size_t blk_xfloats(const struct dplan *p)
{
	return al16((size_t)p->cin * p->xrows * (p->w + 2));
}

static void blk_part(void *ctx, int b, int e, int tid)
{
	const struct djob *j = ctx;
	const struct dplan *p = j->p;
	float *xb = j->thr + tid * p->per_thread;
	float *yb = xb + blk_xfloats(p);
	size_t hw = (size_t)p->h * p->w;
	for (int it = b; it < e; it++) {
		int n = it / p->nchunks, i0 = it % p->nchunks * p->rows;
		int rows = p->h - i0 < p->rows ? p->h - i0 : p->rows;
		j->isa->blk(j->in + (size_t)n * p->cin * hw, j->wpack, j->bias,
			    j->out + (size_t)n * p->cout * hw, p->cin, p->cout, p->h, p->w, i0, rows,
			    xb, yb);
	}
}

/* The blocked path for this pass when its plan takes it (p->blk). */
static int blk_run(struct djob *j, const struct nn_conv_desc *d, int pass)
{
	if (!j->p->blk)
		return 0;
	blk_pack(j, d, pass);
	par_for(items(j->p), blk_part, j);
	return 1;
}

int direct_conv2d_fwd(const struct nn_conv_desc *d, const float *x, const float *w,
		      const float *b, float *y, void *ws)
{
	struct dplan p;
	if (!isa_now() || !direct_pays(d, PASS_FWD) || plan_init(d, PASS_FWD, &p) < 0)
		return -1;
	struct djob j = {.in = x, .w = w, .bias = b, .out = y};
	job_init(&j, &p, ws, d);
	if (blk_run(&j, d, PASS_FWD))
		return 0;
	pack_weights(&j, d, PASS_FWD);
	if (p.inplace3)
		weights_tap_major(&j);
	par_for(items(&p), fwd_part, &j);
	return 0;
}

int direct_conv2d_bwd_data(const struct nn_conv_desc *d, const float *dy, const float *w,
			   float *dx, void *ws)
{
	struct dplan p;
	if (!isa_now() || !direct_pays(d, PASS_BWD_DATA) || plan_init(d, PASS_BWD_DATA, &p) < 0)
		return -1;
	struct djob j = {.in = dy, .w = w, .out = dx};
	job_init(&j, &p, ws, d);
	if (blk_run(&j, d, PASS_BWD_DATA))
		return 0;
	pack_weights(&j, d, PASS_BWD_DATA);
	if (p.inplace3)
		weights_tap_major(&j);
	par_for(items(&p), fwd_part, &j);
	return 0;
}

int direct_conv2d_bwd_filter(const struct nn_conv_desc *d, const float *x, const float *dy,
			     float *dw, float *db, void *ws)
{
	struct dplan p;
	if (!isa_now() || !direct_pays(d, PASS_BWD_FILTER) ||
	    plan_init(d, PASS_BWD_FILTER, &p) < 0)
		return -1;
	struct djob j = {.in = x, .dy = dy, .dw = dw};
	job_init(&j, &p, ws, d);
	int t = par_threads();
	if (p.slices) {
		j.nparts = 1;
		par_for(p.slices, bwdf_slices, &j);
	} else {
		j.nparts = items(&p) < t ? items(&p) : t;
		par_for(items(&p), bwdf_part, &j);
	}
	par_for(p.k, dw_sum_part, &j);
	if (db)
		fast_bias_grad(d->n, d->cout, d->hout * d->wout, dy, db);
	return 0;
}

const char *direct_conv2d_kernel(const struct nn_conv_desc *d, int pass)
{
	struct dplan p;
	const struct dk_isa *isa = isa_now();
	if (!isa || !direct_pays(d, pass) || plan_init(d, pass, &p) < 0)
		return "gemm";
	return isa->name;
}
