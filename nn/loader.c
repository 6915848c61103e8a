#include "nn/loader.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include "core/mem.h"

#ifdef __SSE4_1__
#include <smmintrin.h>
#endif

/* Normalization of channel c: x = pixel * scale[c] + bias[c], with
 * scale = 1 / (255 std) and bias = -mean / std, i.e. (pixel/255 - mean) / std
 * up to float rounding. The table is made by the same vector code that
 * converts rows (convert16), so both paths give the same bits. */
struct norm {
	float scale[DATASET_MAX_CHANNELS], bias[DATASET_MAX_CHANNELS];
	float lut[DATASET_MAX_CHANNELS][256];
};

/* The q-th batch the caller gets (q = 0, 1, ... since the last start) is
 * batch t of the whole run (t = epoch * batches_per_epoch + index): base + q
 * in order, or the q-th claimed one (cfg.claim). It is built into slot q %
 * nslot, nslot = prefetch depth + 1. With prefetch, a worker thread builds
 * batches q+1 .. q+depth while the caller holds batch q; a depth above 1
 * lets it run ahead of a caller whose steps vary in length (bench/data.sh
 * measures the overlap). Everything a batch contains is a function of (seed,
 * epoch, position) only, so the thread changes timing, never numbers. */
struct slot {
	float *x;
	int32_t *y;
	int32_t *mask; /* mask shards: [batch, H, W] */
	uint64_t *records;
	uint32_t n;
	uint64_t t;
	int failed; /* building batch t found a bad mask: err says where */
	struct error err;
	int ready;  /* 1: holds batch t, not yet handed out or still held by the caller */
	int handed; /* x was handed out before (x_reuse before writing it again) */
};

struct loader {
	const struct dataset *ds;
	struct loader_config cfg;
	uint64_t nb;		       /* batches per epoch */
	uint64_t part_first, part_len; /* this part's positions in each epoch's order */
	size_t image;		       /* C*H*W */
	size_t plane;		       /* H*W */
	int masks;		       /* a mask shard */
	struct norm norm;

	struct slot *slot;
	uint32_t nslot;
	uint64_t *perm; /* order of the epoch the builder is in */
	uint64_t perm_epoch;
	int perm_valid;

	uint64_t base;	    /* in order: the batch of q = 0 */
	uint64_t *want;	    /* claimed: the t of q at want[q % nslot], for q < claimed */
	uint64_t claimed;   /* batches claimed so far (the last may be NO_BATCH) */
	uint64_t next_q;    /* the next batch the caller gets */
	uint64_t epoch;	    /* the epoch the caller is in */
	int held;	    /* slot the caller holds, -1 none */

	/* prefetch */
	pthread_t thread;
	int running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t build_q; /* next batch the worker builds */
	int stop;
	int sync_made; /* mu and cv exist */
};

/* splitmix64 (Steele, Lea, Flood 2014). */
static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* One 64-bit draw from (a, b, c): chained splitmix64, so nearby inputs give unrelated outputs. */
static uint64_t hash3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t s = a;
	s = mix(&s) ^ b;
	s = mix(&s) ^ c;
	return mix(&s);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % n, r;
	do
		r = mix(s);
	while (r >= limit);
	return r % n;
}

void loader_config_default(struct loader_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->batch = 64;
	cfg->shuffle = 1;
	cfg->prefetch = 2;
	for (unsigned c = 0; c < DATASET_MAX_CHANNELS; c++) {
		cfg->mean[c] = 0;
		cfg->std[c] = 1;
	}
}

#ifdef __SSE4_1__
/* 16 bytes -> 16 floats, x * scale + bias; rev: the bytes in reverse order
 * (d[k] from s[15 - k]), for mirrored rows. */
static inline void convert16(const uint8_t *s, float *d, __m128 vs, __m128 vb, int rev)
{
	__m128i v = _mm_loadu_si128((const __m128i *)s);
	if (rev)
		v = _mm_shuffle_epi8(
		    v, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
	for (int q = 0; q < 4; q++) {
		__m128 f = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(v));
		_mm_storeu_ps(d + 4 * q, _mm_add_ps(_mm_mul_ps(f, vs), vb));
		v = _mm_srli_si128(v, 4);
	}
}
#endif

/* d[k] = norm(s[k]) for k < n, or norm(s[-k]) when rev (s is then the
 * rightmost source byte). Lanes compute exactly what the table holds, so the
 * vector body and the table tail agree bit for bit. */
static void convert_row(const uint8_t *s, float *d, size_t n, int rev, const struct norm *nm,
			uint32_t c)
{
	const float *l = nm->lut[c];
	size_t k = 0;
#ifdef __SSE4_1__
	const __m128 vs = _mm_set1_ps(nm->scale[c]), vb = _mm_set1_ps(nm->bias[c]);
	for (; k + 16 <= n; k += 16)
		convert16(rev ? s - k - 15 : s + k, d + k, vs, vb, rev);
#endif
	if (rev)
		for (; k < n; k++)
			d[k] = l[*(s - k)];
	else
		for (; k < n; k++)
			d[k] = l[s[k]];
}

static void norm_init(struct norm *nm, uint32_t C, const float *mean, const float *std)
{
	for (uint32_t c = 0; c < C; c++) {
		nm->scale[c] = 1.0f / (255.0f * std[c]);
		nm->bias[c] = -mean[c] / std[c];
#ifdef __SSE4_1__
		uint8_t all[256];
		for (int v = 0; v < 256; v++)
			all[v] = (uint8_t)v;
		const __m128 vs = _mm_set1_ps(nm->scale[c]), vb = _mm_set1_ps(nm->bias[c]);
		for (int v = 0; v < 256; v += 16)
			convert16(all + v, nm->lut[c] + v, vs, vb, 0);
#else
		/* -std=c11 keeps the compiler from fusing this into an fma, so
		 * the table equals the SSE one bit for bit (test_golden_batches). */
		for (int v = 0; v < 256; v++)
			nm->lut[c][v] = (float)v * nm->scale[c] + nm->bias[c];
#endif
	}
}

/* Where output pixel (y, x) reads the cropped image under symmetry sym
 * (loader.h: loader_augment_sym). */
static inline void sym_source(unsigned sym, uint32_t H, uint32_t W, uint32_t y, uint32_t x,
			      uint32_t *sy, uint32_t *sx)
{
	uint32_t u = sym & LOADER_FLIP_Y ? H - 1 - y : y, v = sym & LOADER_FLIP_X ? W - 1 - x : x;
	*sy = sym & LOADER_TRANSPOSE ? v : u;
	*sx = sym & LOADER_TRANSPOSE ? u : v;
}

/* Transposed symmetries (H == W): output row y reads source column
 * u(y) + dx - pad, its pixels down the rows v(x) + dy - pad. A strided read,
 * pixel by pixel through the table. */
static void augment_transposed(const uint8_t *src, float *dst, uint32_t C, uint32_t H, uint32_t W,
			       uint32_t pad, uint32_t dx, uint32_t dy, unsigned sym,
			       const struct norm *nm)
{
	size_t plane = (size_t)H * W;
	for (uint32_t c = 0; c < C; c++) {
		const float *l = nm->lut[c];
		const uint8_t *s = src + c * plane;
		float *d = dst + c * plane;
		for (uint32_t y = 0; y < H; y++) {
			float *row = d + (size_t)y * W;
			uint32_t cy, cx;
			sym_source(sym, H, W, y, 0, &cy, &cx);
			int64_t sx = (int64_t)cx + dx - pad;
			if (sx < 0 || sx >= W) {
				for (uint32_t x = 0; x < W; x++)
					row[x] = l[0];
				continue;
			}
			for (uint32_t x = 0; x < W; x++) {
				sym_source(sym, H, W, y, x, &cy, &cx);
				int64_t sy = (int64_t)cy + dy - pad;
				row[x] = sy < 0 || sy >= H ? l[0] : l[s[(size_t)sy * W + sx]];
			}
		}
	}
}

static void augment(const uint8_t *src, float *dst, uint32_t C, uint32_t H, uint32_t W,
		    uint32_t pad, uint32_t dx, uint32_t dy, unsigned sym, const struct norm *nm)
{
	size_t plane = (size_t)H * W;
	int flip = (sym & LOADER_FLIP_X) != 0;
	if (pad == 0 && !sym) {
		for (uint32_t c = 0; c < C; c++)
			convert_row(src + c * plane, dst + c * plane, plane, 0, nm, c);
		return;
	}
	if (sym & LOADER_TRANSPOSE) {
		augment_transposed(src, dst, C, H, W, pad, dx, dy, sym, nm);
		return;
	}
	for (uint32_t c = 0; c < C; c++) {
		const float *l = nm->lut[c];
		const uint8_t *s = src + c * plane;
		float *d = dst + c * plane;
		for (uint32_t y = 0; y < H; y++) {
			float *row = d + (size_t)y * W;
			/* padded(u + dy) = src(u + dy - pad), u = y or H-1-y (flip up-down) */
			uint32_t u = sym & LOADER_FLIP_Y ? H - 1 - y : y;
			int64_t sy = (int64_t)u + dy - pad;
			if (sy < 0 || sy >= H) {
				for (uint32_t x = 0; x < W; x++)
					row[x] = l[0];
				continue;
			}
			const uint8_t *srow = s + (size_t)sy * W;
			/* Output x reads source column sx = x + off (no flip) or
			 * W - 1 - x + off (flip), off = dx - pad; columns outside
			 * 0..W-1 are padding. [lo, hi) is where sx is inside. */
			int64_t off = (int64_t)dx - pad, lo, hi;
			if (!flip) {
				lo = off < 0 ? -off : 0;
				hi = off > 0 ? (int64_t)W - off : W;
			} else {
				lo = off > 0 ? off : 0;
				hi = off < 0 ? (int64_t)W + off : W;
			}
			if (hi < lo)
				hi = lo;
			for (int64_t x = 0; x < lo; x++)
				row[x] = l[0];
			/* non-flip: x reads x + off; flip: x reads W - 1 + off - x */
			if (hi > lo)
				convert_row(srow + (flip ? (int64_t)W - 1 + off - lo : lo + off),
					    row + lo, (size_t)(hi - lo), flip, nm, c);
			for (int64_t x = hi; x < W; x++)
				row[x] = l[0];
		}
	}
}

void loader_augment(const uint8_t *src, float *dst, uint32_t C, uint32_t H, uint32_t W,
		    uint32_t pad, uint32_t dx, uint32_t dy, int flip, const float *mean,
		    const float *std)
{
	loader_augment_sym(src, dst, C, H, W, pad, dx, dy, flip ? LOADER_FLIP_X : 0, mean, std);
}

void loader_augment_sym(const uint8_t *src, float *dst, uint32_t C, uint32_t H, uint32_t W,
			uint32_t pad, uint32_t dx, uint32_t dy, unsigned sym, const float *mean,
			const float *std)
{
	struct norm nm;
	norm_init(&nm, C, mean, std);
	augment(src, dst, C, H, W, pad, dx, dy, sym & 7u, &nm);
}

void loader_augment_mask(const uint8_t *src, int32_t *dst, uint32_t H, uint32_t W, uint32_t pad,
			 uint32_t dx, uint32_t dy, unsigned sym)
{
	sym &= 7u;
	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++) {
			uint32_t cy, cx;
			sym_source(sym, H, W, y, x, &cy, &cx);
			int64_t sy = (int64_t)cy + dy - pad, sx = (int64_t)cx + dx - pad;
			int32_t v = sy < 0 || sy >= H || sx < 0 || sx >= W
					? -1
					: (int32_t)src[(size_t)sy * W + sx];
			dst[(size_t)y * W + x] = v == (int32_t)DATASET_MASK_IGNORE ? -1 : v;
		}
}

/* Record rec's mask holds only classes and DATASET_MASK_IGNORE: 0, or
 * DATASET_EBADINPUT with the first bad pixel named. */
static int check_mask(const struct dataset *ds, uint64_t rec, struct error *err)
{
	const uint8_t *m = dataset_mask(ds, rec);
	size_t plane = (size_t)ds->shape.height * ds->shape.width;
	uint32_t k = ds->shape.num_classes;
	for (size_t j = 0; j < plane; j++)
		if (m[j] >= k && m[j] != DATASET_MASK_IGNORE) {
			error_set(err,
				  "%s: byte %" PRIu64 ": record %" PRIu64
				  " has mask value %d at pixel (row %zu, col %zu), but the "
				  "shard has %" PRIu32 " classes (%u: no label)",
				  ds->path,
				  (uint64_t)DATASET_HEADER_BYTES + rec * ds->record_bytes +
				      ds->image_bytes + j,
				  rec, m[j], j / ds->shape.width, j % ds->shape.width, k,
				  DATASET_MASK_IGNORE);
			return DATASET_EBADINPUT;
		}
	return 0;
}

/* The record order of epoch e: file order, or a Fisher-Yates shuffle seeded by (seed, e). */
static void make_perm(struct loader *l, uint64_t epoch)
{
	if (l->perm_valid && l->perm_epoch == epoch)
		return;
	uint64_t n = l->ds->count;
	for (uint64_t i = 0; i < n; i++)
		l->perm[i] = i;
	if (l->cfg.shuffle) {
		uint64_t s = hash3(l->cfg.seed, 0x7065726d /* "perm" */, epoch);
		for (uint64_t i = n; i > 1; i--) {
			uint64_t j = below(&s, i), t = l->perm[i - 1];
			l->perm[i - 1] = l->perm[j];
			l->perm[j] = t;
		}
	}
	l->perm_epoch = epoch;
	l->perm_valid = 1;
}

static void build(struct loader *l, struct slot *s, uint64_t t)
{
	const struct dataset *ds = l->ds;
	uint64_t epoch = t / l->nb, index = t % l->nb;
	make_perm(l, epoch);
	uint64_t first = l->part_first + index * l->cfg.batch;
	uint64_t left = l->part_first + l->part_len - first;
	uint64_t n = left < l->cfg.batch ? left : l->cfg.batch;
	uint32_t C = ds->shape.channels, H = ds->shape.height, W = ds->shape.width, P = l->cfg.pad;
	int augmenting = l->cfg.flip || l->cfg.dihedral || P > 0;
	if (l->cfg.x_reuse && s->handed) {
		l->cfg.x_reuse(s->x, l->cfg.x_ctx);
		if (s->mask)
			l->cfg.x_reuse(s->mask, l->cfg.x_ctx);
	}
	s->failed = 0;
	for (uint64_t k = 0; k < n; k++) {
		uint64_t pos = first + k, rec = l->perm[pos];
		uint32_t dx = 0, dy = 0;
		unsigned sym = 0;
		if (augmenting) {
			/* bit 0 is the flip of the flip option (as before the
			 * dihedral one), bits 1 and 2 the rest of the group */
			uint64_t r = hash3(l->cfg.seed, epoch, pos);
			sym = l->cfg.dihedral ? (unsigned)(r & 7)
			      : l->cfg.flip   ? (unsigned)(r & 1)
					      : 0;
			if (P > 0) {
				dx = (uint32_t)((r >> 8) % (2 * (uint64_t)P + 1));
				dy = (uint32_t)((r >> 32) % (2 * (uint64_t)P + 1));
			}
		}
		augment(dataset_image(ds, rec), s->x + k * l->image, C, H, W, P, dx, dy, sym,
			&l->norm);
		if (l->masks) {
			if (!s->failed && check_mask(ds, rec, &s->err) < 0)
				s->failed = 1;
			loader_augment_mask(dataset_mask(ds, rec), s->mask + k * l->plane, H, W, P,
					    dx, dy, sym);
		} else {
			s->y[k] = (int32_t)dataset_label(ds, rec);
		}
		s->records[k] = rec;
	}
	s->n = (uint32_t)n;
	s->t = t;
}

#define NO_BATCH UINT64_MAX

/* The t of the caller's q-th batch; NO_BATCH: none (claims ran out), or
 * not claimed yet. Claimed ones under mu when the worker runs. */
static uint64_t batch_of(const struct loader *l, uint64_t q)
{
	if (!l->cfg.claim)
		return l->base + q;
	return q < l->claimed ? l->want[q % l->nslot] : NO_BATCH;
}

static void *worker(void *arg)
{
	struct loader *l = arg;
	pthread_mutex_lock(&l->mu);
	for (;;) {
		struct slot *s = &l->slot[l->build_q % l->nslot];
		while (!l->stop && (s->ready || batch_of(l, l->build_q) == NO_BATCH))
			pthread_cond_wait(&l->cv, &l->mu);
		if (l->stop)
			break;
		uint64_t t = batch_of(l, l->build_q);
		pthread_mutex_unlock(&l->mu);
		build(l, s, t);
		pthread_mutex_lock(&l->mu);
		s->ready = 1;
		l->build_q++;
		pthread_cond_broadcast(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

static void stop_worker(struct loader *l)
{
	if (!l->running)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	l->running = 0;
	l->stop = 0;
}

static int start_at(struct loader *l, uint64_t t, struct error *err)
{
	l->base = t;
	l->next_q = l->build_q = l->claimed = 0;
	l->epoch = l->nb ? t / l->nb : 0;
	l->held = -1;
	for (uint32_t i = 0; i < l->nslot; i++)
		l->slot[i].ready = 0;
	if (!l->cfg.prefetch || l->nb == 0)
		return 0;
	int rc = pthread_create(&l->thread, NULL, worker, l);
	if (rc != 0) {
		errno = rc;
		return error_errno(err, "%s: cannot start the prefetch thread", l->ds->path);
	}
	l->running = 1;
	return 0;
}

struct loader *loader_new(const struct dataset *ds, const struct loader_config *cfg,
			  struct error *err)
{
	if (!cfg->x_alloc != !cfg->x_free)
		return error_set(err, "loader: x_alloc and x_free go together"), NULL;
	if (cfg->batch == 0)
		return error_set(err, "loader: batch size 0"), NULL;
	if (ds->shape.channels > DATASET_MAX_CHANNELS)
		return error_set(err, "%s: %u channels, the loader takes at most %u", ds->path,
				 ds->shape.channels, DATASET_MAX_CHANNELS),
		       NULL;
	if (cfg->claim && cfg->parts > 1)
		return error_set(err, "loader: claimed batches are of the whole epoch, not of "
				      "part %u of %u",
				 cfg->part, cfg->parts),
		       NULL;
	if (cfg->parts > 0 && cfg->part >= cfg->parts)
		return error_set(err, "loader: part %u of %u: expected part < parts", cfg->part,
				 cfg->parts),
		       NULL;
	if (cfg->pad > ds->shape.height || cfg->pad > ds->shape.width)
		return error_set(err, "loader: padding %u is larger than the %ux%u image", cfg->pad,
				 ds->shape.height, ds->shape.width),
		       NULL;
	if (cfg->dihedral && ds->shape.height != ds->shape.width)
		return error_set(
			   err,
			   "%s: the dihedral augmentation (rotations, transposes) needs square "
			   "images, these are %ux%u (H x W)",
			   ds->path, ds->shape.height, ds->shape.width),
		       NULL;
	for (uint32_t c = 0; c < ds->shape.channels; c++)
		if (!(cfg->std[c] > 0))
			return error_set(err, "loader: std[%u] = %g, expected > 0", c,
					 (double)cfg->std[c]),
			       NULL;
	struct loader *l = mem_calloc(1, sizeof(*l));
	if (!l)
		return error_set(err, "loader: out of memory"), NULL;
	l->ds = ds;
	l->cfg = *cfg;
	l->image = (size_t)ds->shape.channels * ds->shape.height * ds->shape.width;
	l->plane = (size_t)ds->shape.height * ds->shape.width;
	l->masks = ds->shape.label_kind == DATASET_LABEL_MASK;
	uint32_t parts = cfg->parts ? cfg->parts : 1;
	/* Part p of P: positions [p m, (p + 1) m) of the shared epoch order,
	 * m = floor(n / P), so every rank has the same number of batches (a
	 * synchronous allreduce needs that); the last n - P m positions are left
	 * out, other records each epoch when shuffling. */
	l->part_len = ds->count / parts;
	l->part_first = l->part_len * (parts > 1 ? cfg->part : 0);
	l->nb =
	    cfg->drop_last ? l->part_len / cfg->batch : (l->part_len + cfg->batch - 1) / cfg->batch;
	norm_init(&l->norm, ds->shape.channels, cfg->mean, cfg->std);
	l->held = -1;
	l->cfg.prefetch = cfg->prefetch < 0			? 0
			  : cfg->prefetch > LOADER_MAX_PREFETCH ? LOADER_MAX_PREFETCH
								: cfg->prefetch;
	l->nslot = l->cfg.prefetch > 0 ? (uint32_t)l->cfg.prefetch + 1 : 1;
	l->perm = mem_alloc(sizeof(uint64_t) * (ds->count ? ds->count : 1));
	l->slot = mem_calloc(l->nslot, sizeof(struct slot));
	l->want = mem_calloc(l->nslot, sizeof(uint64_t));
	int ok = l->perm && l->slot && l->want;
	for (uint32_t i = 0; i < l->nslot && ok; i++) {
		size_t xb = sizeof(float) * l->image * cfg->batch;
		l->slot[i].x = cfg->x_alloc ? cfg->x_alloc(xb, cfg->x_ctx) : mem_alloc(xb);
		l->slot[i].y = mem_alloc(sizeof(int32_t) * cfg->batch);
		l->slot[i].records = mem_alloc(sizeof(uint64_t) * cfg->batch);
		ok = l->slot[i].x && l->slot[i].y && l->slot[i].records;
		if (ok && l->masks) {
			size_t mb = sizeof(int32_t) * l->plane * cfg->batch;
			l->slot[i].mask =
			    cfg->x_alloc ? cfg->x_alloc(mb, cfg->x_ctx) : mem_alloc(mb);
			ok = l->slot[i].mask != NULL;
		}
	}
	if (!ok) {
		error_set(err, "%s: out of memory for loader buffers (batch %u)", ds->path,
			  cfg->batch);
		loader_free(l);
		return NULL;
	}
	int rc = pthread_mutex_init(&l->mu, NULL);
	if (rc == 0) {
		rc = pthread_cond_init(&l->cv, NULL);
		if (rc != 0)
			pthread_mutex_destroy(&l->mu);
	}
	if (rc != 0) {
		errno = rc;
		error_errno(err, "loader: cannot create a mutex");
		loader_free(l);
		return NULL;
	}
	l->sync_made = 1;
	if (start_at(l, 0, err) < 0) {
		loader_free(l);
		return NULL;
	}
	return l;
}

uint64_t loader_batches_per_epoch(const struct loader *l)
{
	return l->nb;
}

/* Claimed batches: claim those up to the prefetch depth past the caller's
 * next one, unless the claims ran out. Each goes to the worker under mu. */
static int claim_ahead(struct loader *l, struct error *err)
{
	uint64_t upto = l->next_q + (l->running ? l->nslot - 1 : 0);
	while (l->claimed <= upto) {
		uint64_t last = l->claimed ? l->want[(l->claimed - 1) % l->nslot] : 0, t;
		if (last == NO_BATCH)
			break;
		int rc = l->cfg.claim(l->cfg.claim_ctx, &t, err);
		if (rc < 0)
			return -1;
		if (rc == 0)
			t = NO_BATCH;
		else if (t == NO_BATCH || (l->claimed && t <= last))
			return error_set(err, "loader: claimed batch %" PRIu64 " after %" PRIu64
					      ": claims must increase",
					 t, last);
		if (l->running)
			pthread_mutex_lock(&l->mu);
		l->want[l->claimed % l->nslot] = t;
		l->claimed++;
		if (l->running) {
			pthread_cond_broadcast(&l->cv);
			pthread_mutex_unlock(&l->mu);
		}
	}
	return 0;
}

int loader_next(struct loader *l, struct loader_batch *b, struct error *err)
{
	/* building a batch fails only on a bad mask value: all memory is in place */
	memset(b, 0, sizeof(*b));
	if (l->held >= 0) {
		pthread_mutex_lock(&l->mu);
		l->slot[l->held].ready = 0;
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
		l->held = -1;
	}
	if (l->nb == 0)
		return 0;
	if (l->cfg.claim && claim_ahead(l, err) < 0)
		return -1;
	uint64_t t = batch_of(l, l->next_q);
	if (t == NO_BATCH)
		return 0;
	if (t / l->nb > l->epoch) { /* this epoch's batches are done (or had none here) */
		l->epoch++;
		return 0;
	}
	struct slot *s = &l->slot[l->next_q % l->nslot];
	if (l->running) {
		pthread_mutex_lock(&l->mu);
		while (!(s->ready && s->t == t))
			pthread_cond_wait(&l->cv, &l->mu);
		pthread_mutex_unlock(&l->mu);
	} else {
		build(l, s, t);
		s->ready = 1;
	}
	if (s->failed) {
		/* not handed out: the next call waits for this batch again and
		 * says the same (the worker never rebuilds a ready slot) */
		*err = s->err;
		return DATASET_EBADINPUT;
	}
	l->held = (int)(l->next_q % l->nslot);
	s->handed = 1;
	l->next_q++;
	b->x = s->x;
	b->y = l->masks ? NULL : s->y;
	b->mask = l->masks ? s->mask : NULL;
	b->records = s->records;
	b->n = s->n;
	b->epoch = t / l->nb;
	b->index = t % l->nb;
	return 1;
}

int loader_seek(struct loader *l, uint64_t epoch, struct error *err)
{
	return loader_seek_batch(l, epoch, 0, err);
}

int loader_seek_batch(struct loader *l, uint64_t epoch, uint64_t batch, struct error *err)
{
	if (l->cfg.claim)
		return error_set(err, "loader: claimed batches come in the claims' order, not "
				      "from a seek");
	stop_worker(l);
	if (l->nb > 0 && epoch > UINT64_MAX / l->nb - 1)
		return error_set(err, "loader: epoch %" PRIu64 " is out of range", epoch);
	if (batch > 0 && batch >= l->nb)
		return error_set(err,
				 "loader: batch %" PRIu64 " of an epoch of %" PRIu64 " batches",
				 batch, l->nb);
	return start_at(l, epoch * l->nb + batch, err);
}

void loader_free(struct loader *l)
{
	if (!l)
		return;
	if (l->running)
		stop_worker(l);
	if (l->sync_made) {
		pthread_cond_destroy(&l->cv);
		pthread_mutex_destroy(&l->mu);
	}
	for (uint32_t i = 0; l->slot && i < l->nslot; i++) {
		if (l->slot[i].x && l->cfg.x_free)
			l->cfg.x_free(l->slot[i].x, l->cfg.x_ctx);
		else
			mem_free(l->slot[i].x);
		if (l->slot[i].mask && l->cfg.x_free)
			l->cfg.x_free(l->slot[i].mask, l->cfg.x_ctx);
		else
			mem_free(l->slot[i].mask);
		mem_free(l->slot[i].y);
		mem_free(l->slot[i].records);
	}
	mem_free(l->slot);
	mem_free(l->want);
	mem_free(l->perm);
	mem_free(l);
}
