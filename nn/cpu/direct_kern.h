/* direct_kern: the SIMD micro-kernels of the direct convolution
 * (nn/cpu/direct.c), written once and included there once per instruction
 * set, under that set's `#pragma GCC target`. The includer defines the
 * vector type and operations (DK_V, dk_load, dk_set1, dk_fma, ...), the
 * lane count DK_VL, the register-block limits and the name suffix DK_SFX.
 * The bodies take their block sizes as constants; the dispatchers at the end
 * instantiate each (rows x vectors) block the drivers ask for, so the
 * accumulators are named registers, not memory. */

#define DK_CAT2(a, b) a##_##b
#define DK_CAT(a, b) DK_CAT2(a, b)
#define DK(name) DK_CAT(name, DK_SFX)

/* Output channels [co, co + MR) x flat positions [f0, f0 + NV VL) of one chunk:
 * acc[m][v] = bias + sum_k wp[k][m] * xb[off[k] + f0 + v VL + lane], then the
 * lanes that are real output pixels (column < wout, row < rows) are stored.
 * With a->pf, each tap's vectors a->pf floats further on (the next tiles'
 * input) are prefetched into L1. */
static inline __attribute__((always_inline)) void DK(fwd_body)(const struct dk_fwd *a,
							      const float *wp, const float *bias,
							      float *y, int f0, const int MR,
							      const int NV)
{
	DK_V acc[DK_MRMAX][DK_NVMAX];
#pragma GCC unroll 8
	for (int m = 0; m < MR; m++) {
		DK_V b0 = bias ? dk_set1(bias[m]) : dk_zero();
#pragma GCC unroll 8
		for (int v = 0; v < NV; v++)
			acc[m][v] = b0;
	}
	const float *xp = a->xb + f0;
	for (int k = 0; k < a->k; k++, wp += MR) {
		const float *s = xp + a->off[k];
		DK_V bv[DK_NVMAX];
		if (a->pf)
#pragma GCC unroll 8
			for (int v = 0; v < NV; v++)
				_mm_prefetch((const char *)(s + a->pf + v * DK_VL), _MM_HINT_T0);
#pragma GCC unroll 8
		for (int v = 0; v < NV; v++)
			bv[v] = dk_load(s + v * DK_VL);
#pragma GCC unroll 8
		for (int m = 0; m < MR; m++) {
			DK_V wv = dk_set1(wp[m]);
#pragma GCC unroll 8
			for (int v = 0; v < NV; v++)
				acc[m][v] = dk_fma(wv, bv[v], acc[m][v]);
		}
	}
	/* lane l of vector v is flat position f + l: row (f + l) / wp, column
	 * (f + l) % wp; in y it is at row * wout + column = f + l - row * gap */
	int gap = a->wp - a->wout;
#pragma GCC unroll 8
	for (int v = 0; v < NV; v++) {
		int f = f0 + v * DK_VL;
		for (int r = f / a->wp; r < a->rows && r * a->wp < f + DK_VL; r++) {
			int lo = r * a->wp - f, hi = lo + a->wout;
			lo = lo < 0 ? 0 : lo;
			hi = hi > DK_VL ? DK_VL : hi;
			if (hi <= lo)
				continue;
			float *o = y + f - (ptrdiff_t)r * gap;
			if (hi - lo == DK_VL) {
#pragma GCC unroll 8
				for (int m = 0; m < MR; m++)
					dk_store(o + (size_t)m * a->yplane, acc[m][v]);
				continue;
			}
#pragma GCC unroll 8
			for (int m = 0; m < MR; m++)
				dk_pstore(o + (size_t)m * a->yplane, lo, hi, acc[m][v]);
		}
	}
}

/* Weight gradient block, vectorized along output channels: for k in
 * [k0, k0 + KR) and dy channels [co, co + COV VL),
 * dwt[k ldw + ..] += sum over the chunk's pixels of xb[off[k] + pixel] * dyt[pixel][co..].
 * With a->pf, each tap's row a->pf floats on (the next block's taps) is
 * prefetched into L1, a line every 16 pixels. */
static inline __attribute__((always_inline)) void DK(bwdf_body)(const struct dk_bwdf *a, int k0,
							       int co, float *dwt, const int KR,
							       const int COV)
{
	DK_V acc[DK_KRMAX][DK_COVMAX];
#pragma GCC unroll 16
	for (int r = 0; r < KR; r++)
#pragma GCC unroll 4
		for (int c = 0; c < COV; c++)
			acc[r][c] = dk_zero();
	/* the block's sums, read at the end: from L3 when dwt outgrows L2 (2304 taps x 256) */
#pragma GCC unroll 16
	for (int r = 0; r < KR; r++)
#pragma GCC unroll 4
		for (int c = 0; c < COV; c++)
			_mm_prefetch((const char *)(dwt + (size_t)(k0 + r) * a->ldw + c * DK_VL),
				     _MM_HINT_T0);
	const float *dp = a->dyt + co;
	for (int i = 0; i < a->rows; i++) {
		const float *xr[DK_KRMAX];
#pragma GCC unroll 16
		for (int r = 0; r < KR; r++)
			xr[r] = a->xb + a->off[k0 + r] + (size_t)i * a->wp;
		for (int j = 0; j < a->wout; j++, dp += a->ldc) {
			if (a->pf && !(j & 15))
#pragma GCC unroll 16
				for (int r = 0; r < KR; r++)
					_mm_prefetch((const char *)(xr[r] + a->pf + j),
						     _MM_HINT_T0);
			DK_V dv[DK_COVMAX];
#pragma GCC unroll 4
			for (int c = 0; c < COV; c++)
				dv[c] = dk_load(dp + c * DK_VL);
#pragma GCC unroll 16
			for (int r = 0; r < KR; r++) {
				DK_V xs = dk_set1(xr[r][j]);
#pragma GCC unroll 4
				for (int c = 0; c < COV; c++)
					acc[r][c] = dk_fma(xs, dv[c], acc[r][c]);
			}
		}
	}
#pragma GCC unroll 16
	for (int r = 0; r < KR; r++)
#pragma GCC unroll 4
		for (int c = 0; c < COV; c++) {
			float *o = dwt + (size_t)(k0 + r) * a->ldw + c * DK_VL;
			dk_store(o, dk_add(dk_load(o), acc[r][c]));
		}
}

#ifdef DK_BWD3_J
/* Weight gradient of a 3x3 (dilation 1) block for one vector of output
 * channels, CI input channels (taps [k0, k0 + 9 CI)): the same sums as
 * bwdf_body, but DK_BWD3_J pixels' dy vectors held in registers, so each
 * input value broadcast feeds the up to 3 taps of its row (q = 0, 1, 2)
 * that pair it with one of them: 8 + 3 CI (J + 2) loads per 9 CI J FMAs
 * (CI = 2, J = 8: 68 per 144) against bwdf_body's 10 per 9. */
static inline __attribute__((always_inline)) void DK(bwd3_body)(const struct dk_bwdf *a, int k0,
							       int co, float *dwt, const int CI)
{
	enum { J = DK_BWD3_J };
	DK_V acc[18]; /* tap k0 + r: input channel r / 9, row r / 3 % 3, column r % 3 */
#pragma GCC unroll 18
	for (int r = 0; r < 9 * CI; r++) {
		acc[r] = dk_zero();
		_mm_prefetch((const char *)(dwt + (size_t)(k0 + r) * a->ldw), _MM_HINT_T0);
	}
	int jv = a->wout - a->wout % J;
	for (int i = 0; i < a->rows; i++) {
		const float *xr[2][3];
#pragma GCC unroll 2
		for (int c = 0; c < CI; c++)
#pragma GCC unroll 3
			for (int p = 0; p < 3; p++)
				xr[c][p] = a->xb + a->off[k0 + c * 9 + p * 3] + (size_t)i * a->wp;
		const float *dp = a->dyt + co + (size_t)i * a->wout * a->ldc;
		for (int j = 0; j < jv; j += J) {
			DK_V dv[J];
#pragma GCC unroll 8
			for (int t = 0; t < J; t++)
				dv[t] = dk_load(dp + (size_t)(j + t) * a->ldc);
#pragma GCC unroll 2
			for (int c = 0; c < CI; c++)
#pragma GCC unroll 3
				for (int p = 0; p < 3; p++)
#pragma GCC unroll 10
					for (int u = 0; u < J + 2; u++) {
						/* x at column j + u pairs with dy at j + u - q */
						DK_V xs = dk_set1(xr[c][p][j + u]);
						__asm__("" : "+v"(xs)); /* one load, not one per FMA */
#pragma GCC unroll 3
						for (int q = 0; q < 3; q++)
							if (u - q >= 0 && u - q < J)
								acc[c * 9 + p * 3 + q] =
									dk_fma(xs, dv[u - q],
									       acc[c * 9 + p * 3 + q]);
					}
		}
		for (int j = jv; j < a->wout; j++) { /* the row's last wout % J pixels */
			DK_V d = dk_load(dp + (size_t)j * a->ldc);
#pragma GCC unroll 2
			for (int c = 0; c < CI; c++)
#pragma GCC unroll 3
				for (int p = 0; p < 3; p++)
#pragma GCC unroll 3
					for (int q = 0; q < 3; q++)
						acc[c * 9 + p * 3 + q] =
							dk_fma(dk_set1(xr[c][p][j + q]), d,
							       acc[c * 9 + p * 3 + q]);
		}
	}
#pragma GCC unroll 18
	for (int r = 0; r < 9 * CI; r++) {
		float *o = dwt + (size_t)(k0 + r) * a->ldw;
		dk_store(o, dk_add(dk_load(o), acc[r]));
	}
}

static void DK(bwd3_tile)(const struct dk_bwdf *a, int k0, int co, float *dwt, int ci)
{
	if (ci == 2)
		DK(bwd3_body)(a, k0, co, dwt, 2);
	else
		DK(bwd3_body)(a, k0, co, dwt, 1);
}
#endif

#ifdef DK_BWDP_CASES
/* bwdp_body's step: pixels [j, j + DK_VL) of one row (MASKED: those in mk) */
static inline __attribute__((always_inline)) void DK(bwdp_step)(DK_V (*acc)[DK_MPMAX],
							       const float *const *xr,
							       const float *const *dr, int j,
							       dk_mask_t mk, const int MASKED,
							       const int KR, const int MR)
{
	DK_V dv[DK_MPMAX];
#pragma GCC unroll 4
	for (int m = 0; m < MR; m++)
		dv[m] = MASKED ? dk_mload(dr[m] + j, mk) : dk_load(dr[m] + j);
#pragma GCC unroll 16
	for (int r = 0; r < KR; r++) {
		DK_V xv = MASKED ? dk_mload(xr[r] + j, mk) : dk_load(xr[r] + j);
		/* one load for MR FMAs: folded into each FMA, it was MR loads,
		 * each split across two cache lines */
		__asm__("" : "+v"(xv));
#pragma GCC unroll 4
		for (int m = 0; m < MR; m++)
			acc[r][m] = dk_fma(xv, dv[m], acc[r][m]);
	}
}

/* Weight gradient block for few output channels (8 or fewer per group:
 * ResNeXt's 4), vectorized along pixels: for taps [k0, k0 + KR) and dy channels
 * m < MR, dw[k ldw + m] += sum over the chunk's pixels of
 * xb[off[k] + pixel] * dy[m dyplane + pixel], dy read in its own layout
 * (rows of wout): no transpose, and no lanes spent on channels that do not
 * fill a vector; the sums are reduced across lanes once per block. */
static inline __attribute__((always_inline)) void DK(bwdp_body)(const struct dk_bwdf *a, int k0,
							       const float *dy, float *dw,
							       const int KR, const int MR)
{
	DK_V acc[DK_KRMAX][DK_MPMAX];
#pragma GCC unroll 16
	for (int r = 0; r < KR; r++)
#pragma GCC unroll 4
		for (int m = 0; m < MR; m++)
			acc[r][m] = dk_zero();
	int tail = a->wout % DK_VL, jv = a->wout - tail;
	dk_mask_t mk = dk_mask(0, tail);
	for (int i = 0; i < a->rows; i++) {
		const float *xr[DK_KRMAX], *dr[DK_MPMAX];
#pragma GCC unroll 16
		for (int r = 0; r < KR; r++)
			xr[r] = a->xb + a->off[k0 + r] + (size_t)i * a->wp;
#pragma GCC unroll 4
		for (int m = 0; m < MR; m++)
			dr[m] = dy + m * a->dyplane + (size_t)i * a->wout;
		for (int j = 0; j < jv; j += DK_VL)
			DK(bwdp_step)(acc, xr, dr, j, mk, 0, KR, MR);
		if (tail) /* the row's last pixels: masked, so nothing past the chunk is read */
			DK(bwdp_step)(acc, xr, dr, jv, mk, 1, KR, MR);
	}
#pragma GCC unroll 16
	for (int r = 0; r < KR; r++)
#pragma GCC unroll 4
		for (int m = 0; m < MR; m++)
			dw[(size_t)(k0 + r) * a->ldw + m] += dk_hsum(acc[r][m]);
}

static void DK(bwdp_tile)(const struct dk_bwdf *a, int k0, const float *dy, float *dw, int kr,
			  int mr)
{
	switch (kr * 16 + mr) {
#define DK_BP(K, M)                                     \
	case K * 16 + M:                                \
		DK(bwdp_body)(a, k0, dy, dw, K, M); \
		break;
		DK_BWDP_CASES
#undef DK_BP
	}
}
#endif

/* Padded rows: for c < nc and r < xrows, xb[c plane + r wp + x] = in[c iplane +
 * (r0 + r) w + x - pw] where that is inside the image (rows [0, h), columns
 * [0, w)), else 0, for x < wp; whole vectors, loaded under a mask (nothing
 * outside the image is read) and stored whole: a row's last vector runs into
 * the next row, written after it, and the last row's up to DK_VL - 1 floats
 * past the last plane (zeros). For rows of 28 floats, memcpy and memset per
 * row cost as much as the ResNeXt forward's arithmetic. */
static void DK(pad_rows)(const float *in, size_t iplane, int h, int w, float *xb, size_t plane,
			 int wp, int pw, int r0, int xrows, int nc)
{
	for (int c = 0; c < nc; c++)
		for (int r = 0; r < xrows; r++) {
			int sr = r0 + r;
			float *o = xb + c * plane + (size_t)r * wp;
			if (sr < 0 || sr >= h) {
				for (int x0 = 0; x0 < wp; x0 += DK_VL)
					dk_store(o + x0, dk_zero());
				continue;
			}
			/* column x0 + lane of o is column x0 + lane - pw of the row */
			const float *s = in + c * iplane + (size_t)sr * w;
			for (int x0 = 0; x0 < wp; x0 += DK_VL) {
				int lo = pw - x0, hi = pw + w - x0;
				lo = lo < 0 ? 0 : lo > DK_VL ? DK_VL : lo;
				hi = hi < lo ? lo : hi > DK_VL ? DK_VL : hi;
				dk_store(o + x0, dk_mload(s + x0 - pw, dk_mask(lo, hi)));
			}
		}
}

/* One input channel's taps of fix_cols: acc[i] (column 0) and acc[4 + i]
 * (column w - 1) of rows r + i, i < nr; xc at row r - 1, column -1. */
static inline __attribute__((always_inline)) void DK(fix_taps)(DK_V *acc, const float *xc,
							      const float *wc, int w, int cout,
							      dk_mask_t mk, int nr)
{
#pragma GCC unroll 3
	for (int pp = 0; pp < 3; pp++)
#pragma GCC unroll 3
		for (int q = 0; q < 3; q++) {
			DK_V wv = dk_mload(wc + (pp * 3 + q) * cout, mk);
#pragma GCC unroll 4
			for (int i = 0; i < 4 && i < nr; i++) {
				const float *xi = xc + (size_t)(pp + i) * w + q;
				if (q > 0) /* column 0: taps q = 1, 2 */
					acc[i] = dk_fma(wv, dk_set1(xi[0]), acc[i]);
				if (q < 2) /* column w - 1: taps q = 0, 1 */
					acc[4 + i] = dk_fma(wv, dk_set1(xi[w - 1]), acc[4 + i]);
			}
		}
}

/* Output columns 0 and w - 1 of rows [r0, r1) of a 3x3, pad 1, stride 1
 * convolution (groups 1) whose chunk was read in place, where the taps of
 * the missing columns read the neighbouring rows' ends: recomputed here,
 * vectorized along output channels. x: the image (cin planes of h x w,
 * rows r0 - 1 .. r1 inside it), wt[tap][co] (tap = (ci 3 + p) 3 + q),
 * y: the image's output (cout planes of h x w). */
static void DK(fix_cols)(const float *x, const float *wt, const float *bias, float *y, int cin,
			 int cout, int h, int w, int r0, int r1)
{
	size_t hw = (size_t)h * w;
	for (int co = 0; co < cout; co += DK_VL) {
		int nl = cout - co < DK_VL ? cout - co : DK_VL;
		dk_mask_t mk = dk_mask(0, nl);
		DK_V b0 = bias ? dk_mload(bias + co, mk) : dk_zero();
		/* 4 rows x 2 sides at once: 8 independent sums */
		for (int r = r0; r < r1; r += 4) {
			int nr = r1 - r < 4 ? r1 - r : 4;
			DK_V acc[8];
#pragma GCC unroll 8
			for (int i = 0; i < 8; i++)
				acc[i] = b0;
			for (int ci = 0; ci < cin; ci++)
				DK(fix_taps)(acc, x + ci * hw + (size_t)(r - 1) * w - 1,
					     wt + (size_t)ci * 9 * cout + co, w, cout, mk, nr);
			for (int i = 0; i < nr; i++)
				for (int sd = 0; sd < 2; sd++) {
					float o[DK_VL];
					dk_store(o, acc[sd * 4 + i]);
					float *yo = y + (size_t)(r + i) * w + (sd ? w - 1 : 0);
					for (int l = 0; l < nl; l++)
						yo[(co + l) * hw] = o[l];
				}
		}
	}
}

/* The weight gradient's side of an in-place chunk (3x3 pad 1, groups 1):
 * bwdf_body read, for the taps of column offset -1 at output column 0, the
 * previous row's last pixel instead of the zero padding, and for offset +1
 * at column w - 1 the next row's first: those products are taken back out
 * of dwt. x: the image; dyt: the chunk's dy, pixel-major (ldc per pixel),
 * rows [i0, i0 + rows). */
static void DK(fix_bwdf)(const float *x, const float *dyt, int ldc, float *dwt, int ldw, int cin,
			 int h, int w, int i0, int rows)
{
	size_t hw = (size_t)h * w;
	for (int i = 0; i < rows; i++) {
		int r = i0 + i;
		const float *d0 = dyt + (size_t)i * w * ldc, *d1 = d0 + (size_t)(w - 1) * ldc;
		for (int c = 0; c < cin; c++)
			for (int pp = 0; pp < 3; pp++) {
				DK_V xa = dk_set1(x[c * hw + (size_t)(r + pp - 1) * w - 1]);
				DK_V xz = dk_set1(x[c * hw + (size_t)(r + pp) * w]);
				float *o0 = dwt + (size_t)(c * 9 + pp * 3) * ldw;
				float *o2 = o0 + 2 * (size_t)ldw;
				for (int co = 0; co < ldw; co += DK_VL) {
					DK_V a0 = dk_load(o0 + co), a2 = dk_load(o2 + co);
					dk_store(o0 + co, dk_fnma(xa, dk_load(d0 + co), a0));
					dk_store(o2 + co, dk_fnma(xz, dk_load(d1 + co), a2));
				}
			}
	}
}

/* dyt[px][c] = dy[c hw + px] for px < npx, c < ldc (0 for c >= cout), in
 * blocks of DK_VL x DK_VL transposed in registers (dk_tr). */
static void DK(dyt)(const float *dy, size_t hw, int cout, int npx, float *dyt, int ldc)
{
	for (int px0 = 0; px0 < npx; px0 += DK_VL) {
		int np = npx - px0 < DK_VL ? npx - px0 : DK_VL;
		dk_mask_t lm = dk_mask(0, np);
		for (int c0 = 0; c0 < ldc; c0 += DK_VL) {
			DK_V r[DK_VL];
#pragma GCC unroll 16
			for (int i = 0; i < DK_VL; i++)
				r[i] = c0 + i < cout ? dk_mload(dy + (c0 + i) * hw + px0, lm) : dk_zero();
			dk_tr(r);
#pragma GCC unroll 16
			for (int i = 0; i < DK_VL; i++)
				if (i < np)
					dk_store(dyt + (size_t)(px0 + i) * ldc + c0, r[i]);
		}
	}
}

static void DK(fwd_tile)(const struct dk_fwd *a, const float *wp, const float *bias, float *y,
			 int f0, int mr, int nv)
{
	switch (mr * 16 + nv) {
#define DK_F(M, N)                                              \
	case M * 16 + N:                                        \
		DK(fwd_body)(a, wp, bias, y, f0, M, N); \
		break;
		DK_FWD_CASES
#undef DK_F
	}
}

static void DK(bwdf_tile)(const struct dk_bwdf *a, int k0, int co, float *dwt, int kr, int cov)
{
	switch (kr * 16 + cov) {
#define DK_B(K, C)                                      \
	case K * 16 + C:                                \
		DK(bwdf_body)(a, k0, co, dwt, K, C); \
		break;
		DK_BWDF_CASES
#undef DK_B
	}
}

/* ---- the channel-blocked 3x3 pad 1 path (direct.c blk_part) ----
 * Input channels in blocks of DK_VL, each block's rows padded: xb[cb][row][col][DK_VL],
 * rows of w + 2 (columns 0 and w + 1 zero). Weights wk[ob][cb][tap][ci][co] (blocks of
 * DK_VL x DK_VL per tap). One output row goes to yb[ob][col][DK_VL], ys pixels a block. */

/* Pixels [0, UR) of an output row, output blocks [0, OB): xr is the row's first pixel
 * (column 0 of the padded row above it) in input block 0, xcb floats between input
 * blocks, wq pixels a padded row; wk the first output block's weights, wob
 * floats between output blocks; o the first pixel's output in block 0. Each input
 * value broadcast feeds OB FMAs; each weight vector loaded, UR. */
static inline __attribute__((always_inline)) void DK(blk_body)(const float *xr, size_t xcb,
							      int wq, int ncb, const float *wk,
							      size_t wob, float *o, size_t ys,
							      const int UR, const int OB)
{
	DK_V acc[2][DK_BLK_UR];
#pragma GCC unroll 2
	for (int b = 0; b < OB; b++)
#pragma GCC unroll 16
		for (int u = 0; u < UR; u++)
			acc[b][u] = dk_zero();
	for (int cb = 0; cb < ncb; cb++, xr += xcb, wk += 9 * DK_VL * DK_VL)
		for (int pp = 0; pp < 3; pp++)
			for (int q = 0; q < 3; q++) {
				const float *x = xr + ((size_t)pp * wq + q) * DK_VL;
				const float *w = wk + (pp * 3 + q) * DK_VL * DK_VL;
#pragma GCC unroll 2
				for (int i = 0; i < DK_VL; i++) {
					DK_V w0 = dk_load(w + i * DK_VL), w1 = w0;
					if (OB > 1)
						w1 = dk_load(w + wob + i * DK_VL);
#pragma GCC unroll 16
					for (int u = 0; u < UR; u++) {
						DK_V xs = dk_set1(x[u * DK_VL + i]);
						acc[0][u] = dk_fma(w0, xs, acc[0][u]);
						if (OB > 1)
							acc[1][u] = dk_fma(w1, xs, acc[1][u]);
					}
				}
			}
#pragma GCC unroll 2
	for (int b = 0; b < OB; b++)
#pragma GCC unroll 16
		for (int u = 0; u < UR; u++)
			dk_store(o + ((size_t)b * ys + u) * DK_VL, acc[b][u]);
}

static void DK(blk_tile)(const float *xr, size_t xcb, int wq, int ncb, const float *wk,
			 size_t wob, float *o, size_t ys, int ur, int ob)
{
	switch (ur * 4 + ob) {
#define DK_L(O, U)                                                      \
	case U * 4 + O:                                                 \
		DK(blk_body)(xr, xcb, wq, ncb, wk, wob, o, ys, U, O); \
		break;
		DK_BLK_CASES
#undef DK_L
	}
}

/* Rows [i0, i0 + rows) of one image's 3x3 pad 1 convolution, groups 1: x the
 * image (cin planes of h x w, cin a multiple of DK_VL), y its output (cout
 * planes, a multiple of DK_VL), bias or NULL. xb: room for cin (rows + 2)
 * (w + 2) floats, yb for cout x (w rounded up to DK_VL) (plan_init). */
static void DK(blk_image)(const float *x, const float *wk, const float *bias, float *y, int cin,
			  int cout, int h, int w, int i0, int rows, float *xb, float *yb)
{
	size_t hw = (size_t)h * w;
	int wq = w + 2, xrows = rows + 2, ncb = cin / DK_VL, nob = cout / DK_VL;
	int ys = (w + DK_VL - 1) / DK_VL * DK_VL;
	size_t xcb = (size_t)xrows * wq * DK_VL, wob = (size_t)ncb * 9 * DK_VL * DK_VL;
	/* rows i0 - 1 .. i0 + rows into xb, blocked: a transpose of DK_VL channels x
	 * DK_VL pixels at a time */
	for (int cb = 0; cb < ncb; cb++)
		for (int r = 0; r < xrows; r++) {
			float *o = xb + ((size_t)cb * xrows + r) * wq * DK_VL;
			int sr = i0 - 1 + r;
			if (sr < 0 || sr >= h) {
				for (int c = 0; c < wq; c++)
					dk_store(o + c * DK_VL, dk_zero());
				continue;
			}
			const float *s = x + (size_t)cb * DK_VL * hw + (size_t)sr * w;
			dk_store(o, dk_zero());
			dk_store(o + (size_t)(wq - 1) * DK_VL, dk_zero());
			for (int c0 = 0; c0 < w; c0 += DK_VL) {
				int np = w - c0 < DK_VL ? w - c0 : DK_VL;
				dk_mask_t lm = dk_mask(0, np);
				DK_V v[DK_VL];
#pragma GCC unroll 16
				for (int i = 0; i < DK_VL; i++)
					v[i] = dk_mload(s + i * hw + c0, lm);
				dk_tr(v);
#pragma GCC unroll 16
				for (int i = 0; i < DK_VL; i++)
					if (i < np)
						dk_store(o + (size_t)(1 + c0 + i) * DK_VL, v[i]);
			}
		}
	/* a row in blocks of at most DK_BLK_UR pixels, as even as can be */
	int nbl = (w + DK_BLK_UR - 1) / DK_BLK_UR, ur = (w + nbl - 1) / nbl;
	for (int r = 0; r < rows; r++) {
		for (int c0 = 0; c0 < w; c0 += ur) {
			int nu = w - c0 < ur ? w - c0 : ur;
			const float *xr = xb + ((size_t)r * wq + c0) * DK_VL;
			for (int ob = 0; ob < nob; ob += 2) { /* the pixels' input stays in L1 */
				int no = nob - ob < 2 ? nob - ob : 2;
				DK(blk_tile)(xr, xcb, wq, ncb, wk + ob * wob, wob,
					     yb + ((size_t)ob * ys + c0) * DK_VL, ys, nu, no);
			}
		}
		/* the row back to NCHW: DK_VL pixels x DK_VL channels at a time */
		float *yr = y + (size_t)(i0 + r) * w;
		for (int ob = 0; ob < nob; ob++)
			for (int c0 = 0; c0 < w; c0 += DK_VL) {
				int np = w - c0 < DK_VL ? w - c0 : DK_VL;
				DK_V v[DK_VL];
#pragma GCC unroll 16
				for (int i = 0; i < DK_VL; i++) /* up to DK_VL - 1 pixels past w: in yb */
					v[i] = dk_load(yb + ((size_t)ob * ys + c0 + i) * DK_VL);
				dk_tr(v);
#pragma GCC unroll 16
				for (int i = 0; i < DK_VL; i++) {
					int co = ob * DK_VL + i;
					DK_V out = bias ? dk_add(v[i], dk_set1(bias[co])) : v[i];
					float *o = yr + co * hw + c0;
					if (np == DK_VL)
						dk_store(o, out);
					else
						dk_pstore(o, 0, np, out);
				}
			}
	}
}

#undef DK
#undef DK_CAT
#undef DK_CAT2

/* the parameters, so that the next instruction set can define its own */
#undef DK_SFX
#undef DK_VL
#undef DK_V
#undef dk_load
#undef dk_store
#undef dk_set1
#undef dk_fma
#undef dk_fnma
#undef dk_add
#undef dk_zero
#undef dk_mask_t
#undef dk_mask
#undef dk_pstore
#undef dk_mload
#undef DK_MRMAX
#undef DK_NVMAX
#undef DK_KRMAX
#undef DK_COVMAX
#undef DK_FWD_CASES
#undef DK_BWDF_CASES
#undef DK_BWDP_CASES
#undef DK_BWD3_J
#undef DK_BLK_UR
#undef DK_BLK_CASES
#undef DK_MPMAX
#undef dk_hsum
#undef dk_tr
