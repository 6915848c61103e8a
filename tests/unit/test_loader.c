/* Unit tests for nn/loader: every record once per epoch, seeded determinism
 * (with and without the prefetch thread), seek, drop_last, normalization,
 * the flip and pad+crop augmentation on small known images, and mask shards:
 * masks move with their images under every symmetry and crop, ignored and
 * padded pixels are -1, a bad mask value is an error that names it, and
 * claimed batches (ranks sharing an epoch) come as their numbers say. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/fs.h"
#include "core/mem.h"
#include "nn/dataset.h"
#include "nn/loader.h"
#include "shard.h"

static char dir[] = "/tmp/cairn-loader.XXXXXX";

#define GOLDEN 0xbf592e8903060da4ull /* same with -march=x86-64, x86-64-v2 and native (AVX-512) */

/* Record i: pixel j = (i * 7 + j * 13) % 256, label i % K. */
static uint8_t pixel(uint64_t i, size_t j)
{
	return (uint8_t)((i * 7 + j * 13) % 256);
}

static int add_class_record(struct dataset_writer *w, const struct dataset_shape *s, uint64_t i,
			    uint8_t *px, const void *ctx, struct error *err)
{
	(void)ctx;
	size_t img = (size_t)s->channels * s->height * s->width;
	for (size_t j = 0; j < img; j++)
		px[j] = pixel(i, j);
	return dataset_writer_add(w, px, (uint32_t)(i % s->num_classes), err);
}

/* Writes the shard dir/name of n records made by add and opens it as *ds. */
static int open_new_shard(const char *name, const struct dataset_shape *s, uint64_t n,
			  shard_add_fn add, struct dataset *ds)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	struct error err;
	if (shard_write(path, s, n, add, NULL) < 0)
		return -1;
	return dataset_open(ds, path, 0, &err);
}

/* A class shard of n records C x H x W with K classes, as pixel() says. */
static int make_shard(const char *name, uint32_t C, uint32_t H, uint32_t W, uint32_t K, uint64_t n,
		      struct dataset *ds)
{
	struct dataset_shape s = {C, H, W, K, DATASET_LABEL_CLASS};
	return open_new_shard(name, &s, n, add_class_record, ds);
}

/* The config the tests start from: the defaults with this batch and seed. */
static struct loader_config config(uint32_t batch, uint64_t seed)
{
	struct loader_config cfg;
	loader_config_default(&cfg);
	cfg.batch = batch;
	cfg.seed = seed;
	return cfg;
}

/* A loader the test expects to get: a failure is a failed check. */
static struct loader *open_loader(const struct dataset *ds, const struct loader_config *cfg)
{
	struct error err = {{0}};
	struct loader *l = loader_new(ds, cfg, &err);
	CHECK(l != NULL);
	if (!l)
		printf("#   loader_new: %s\n", err.msg);
	return l;
}

/* A config loader_new must refuse, with a message that holds want (if not NULL). */
static void check_refused(const struct dataset *ds, const struct loader_config *cfg,
			  const char *want)
{
	struct error err = {{0}};
	struct loader *l = loader_new(ds, cfg, &err);
	CHECK(l == NULL);
	if (want) {
		if (!strstr(err.msg, want))
			printf("#   message '%s' lacks '%s'\n", err.msg, want);
		CHECK(strstr(err.msg, want) != NULL);
	}
	loader_free(l);
}

/* Reads `epochs` whole epochs and drops the batches. */
static void skip_epochs(struct loader *l, int epochs)
{
	struct error err;
	struct loader_batch b;
	for (int e = 0; e < epochs; e++)
		while (loader_next(l, &b, &err) == 1)
			;
}

static void test_epoch_covers_every_record_once(void)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(make_shard("a.ds", 1, 4, 4, 3, 103, &ds), 0);
	struct loader_config cfg = config(10, 5);
	struct loader *l = open_loader(&ds, &cfg);
	CHECK_INT(loader_batches_per_epoch(l), 11);
	uint64_t first[3];
	for (int epoch = 0; epoch < 3; epoch++) {
		int seen[103] = {0}, batches = 0, total = 0, pixels_ok = 1;
		struct loader_batch b;
		int rc;
		while ((rc = loader_next(l, &b, &err)) == 1) {
			CHECK_INT(b.epoch, epoch);
			CHECK_INT(b.index, batches);
			CHECK_INT(b.n, batches < 10 ? 10 : 3);
			if (batches == 0)
				first[epoch] = b.records[0];
			for (uint32_t k = 0; k < b.n; k++) {
				seen[b.records[k]]++;
				CHECK_INT(b.y[k], b.records[k] % 3);
				for (size_t j = 0; j < 16; j++)
					pixels_ok &=
					    b.x[k * 16 + j] ==
					    (float)pixel(b.records[k], j) * (1.0f / 255.0f);
			}
			total += b.n;
			batches++;
		}
		CHECK_INT(rc, 0);
		CHECK_INT(batches, 11);
		CHECK_INT(total, 103);
		CHECK(pixels_ok);
		int once = 1;
		for (int i = 0; i < 103; i++)
			once &= seen[i] == 1;
		CHECK(once);
	}
	/* a shuffle, and a different one each epoch */
	CHECK(!(first[0] == first[1] && first[1] == first[2]));
	loader_free(l);
	dataset_close(&ds);
}

/* Run `epochs` epochs and hash every x, y and record number. */
static uint64_t run_hash(const struct dataset *ds, const struct loader_config *cfg, int epochs)
{
	struct error err;
	struct loader *l = loader_new(ds, cfg, &err);
	if (!l)
		return 0;
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	struct loader_batch b;
	for (int e = 0; e < epochs; e++)
		while (loader_next(l, &b, &err) == 1) {
			const uint8_t *p[3] = {(const uint8_t *)b.x, (const uint8_t *)b.y,
					       (const uint8_t *)b.records};
			size_t n[3] = {sizeof(float) * b.n * ds->image_bytes, sizeof(int32_t) * b.n,
				       sizeof(uint64_t) * b.n};
			for (int k = 0; k < 3; k++)
				for (size_t i = 0; i < n[k]; i++)
					h = (h ^ p[k][i]) * 1099511628211ull;
		}
	loader_free(l);
	return h;
}

static void test_same_seed_same_batches_threads_or_not(void)
{
	struct dataset ds;
	CHECK_INT(make_shard("d.ds", 3, 6, 5, 4, 77, &ds), 0);
	struct loader_config cfg = config(8, 123);
	cfg.flip = 1;
	cfg.pad = 2;
	cfg.mean[0] = 0.5f, cfg.mean[1] = 0.4f, cfg.mean[2] = 0.3f;
	cfg.std[0] = 0.2f, cfg.std[1] = 0.25f, cfg.std[2] = 0.3f;
	uint64_t a = run_hash(&ds, &cfg, 3), b = run_hash(&ds, &cfg, 3);
	CHECK(a != 0);
	CHECK(a == b);
	int depths[] = {0, 1, 3, 8, 100};
	for (int i = 0; i < 5; i++) {
		cfg.prefetch = depths[i];
		CHECK(run_hash(&ds, &cfg, 3) == a);
	}
	cfg.seed = 124;
	CHECK(run_hash(&ds, &cfg, 3) != a);
	dataset_close(&ds);
}

/* The batches of a fixed shard and seed are pinned: a change to the shuffle,
 * the augmentation draws or the float conversion (SSE or plain C build)
 * shows up here. Update GOLDEN only for an intended change, and say so. */
static void test_golden_batches(void)
{
	struct dataset ds;
	CHECK_INT(make_shard("g.ds", 3, 5, 17, 4, 61, &ds), 0);
	struct loader_config cfg = config(8, 2026);
	cfg.flip = 1;
	cfg.pad = 3;
	cfg.mean[0] = 0.5f, cfg.mean[1] = 0.25f, cfg.mean[2] = 0.125f;
	cfg.std[0] = 0.3f, cfg.std[1] = 0.2f, cfg.std[2] = 0.1f;
	uint64_t h = run_hash(&ds, &cfg, 2);
	printf("# golden hash %016llx\n", (unsigned long long)h);
	CHECK(h == GOLDEN);
	dataset_close(&ds);
}

static void test_no_shuffle_is_file_order_and_drop_last(void)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(make_shard("o.ds", 1, 2, 2, 2, 25, &ds), 0);
	struct loader_config cfg = config(10, 0);
	cfg.shuffle = 0;
	cfg.drop_last = 1;
	struct loader *l = open_loader(&ds, &cfg);
	CHECK_INT(loader_batches_per_epoch(l), 2);
	struct loader_batch b;
	uint64_t next = 0;
	int in_order = 1, n = 0;
	while (loader_next(l, &b, &err) == 1) {
		for (uint32_t k = 0; k < b.n; k++)
			in_order &= b.records[k] == next++;
		n++;
	}
	CHECK(in_order);
	CHECK_INT(n, 2);
	CHECK_INT(next, 20);
	loader_free(l);
	/* batch larger than the shard with drop_last: no batches, no hang */
	cfg.batch = 100;
	l = open_loader(&ds, &cfg);
	CHECK_INT(loader_batches_per_epoch(l), 0);
	CHECK_INT(loader_next(l, &b, &err), 0);
	CHECK_INT(loader_next(l, &b, &err), 0);
	loader_free(l);
	dataset_close(&ds);
}

/* Two batches alike: the same place in the same epoch, the same images and labels. */
static int same_batch(const struct loader_batch *a, const struct loader_batch *b,
		      size_t image_floats)
{
	return a->epoch == b->epoch && a->index == b->index && a->n == b->n &&
	       memcmp(a->x, b->x, sizeof(float) * a->n * image_floats) == 0 &&
	       memcmp(a->y, b->y, sizeof(int32_t) * a->n) == 0;
}

static void test_seek_matches_sequential(void)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(make_shard("s.ds", 1, 3, 3, 5, 40, &ds), 0);
	struct loader_config cfg = config(7, 77);
	cfg.flip = 1;
	cfg.pad = 1;
	struct loader *seq = open_loader(&ds, &cfg), *sk = open_loader(&ds, &cfg);
	struct loader_batch a, b;
	skip_epochs(seq, 2);
	CHECK_INT(loader_next(sk, &b, &err), 1); /* hold a batch, then seek */
	CHECK_INT(loader_seek(sk, 2, &err), 0);
	int same = 1, n = 0;
	while (loader_next(seq, &a, &err) == 1) {
		CHECK_INT(loader_next(sk, &b, &err), 1);
		same &= a.epoch == 2 && same_batch(&a, &b, 9);
		n++;
	}
	CHECK_INT(loader_next(sk, &b, &err), 0);
	CHECK(same);
	CHECK_INT(n, 6);
	/* into the middle of an epoch: batch 4 of epoch 1, then on into epoch 2 */
	CHECK_INT(loader_seek(seq, 1, &err), 0);
	for (int i = 0; i < 4; i++)
		CHECK_INT(loader_next(seq, &a, &err), 1);
	CHECK_INT(loader_seek_batch(sk, 1, 4, &err), 0);
	same = 1, n = 0;
	while (n < 6) {
		int ra = loader_next(seq, &a, &err), rb = loader_next(sk, &b, &err);
		CHECK_INT(rb, ra);
		if (ra == 0) /* the end of epoch 1, at the same place */
			continue;
		same &= same_batch(&a, &b, 9);
		n++;
	}
	CHECK(same);
	CHECK_INT((int)b.epoch, 2);
	CHECK_INT(loader_seek_batch(sk, 1, 6, &err), -1); /* an epoch has 6 batches */
	CHECK(strstr(err.msg, "batch 6 of an epoch of 6 batches") != NULL);
	loader_free(seq);
	loader_free(sk);
	dataset_close(&ds);
}

static void test_augment_on_known_image(void)
{
	/* 1 x 3 x 3 image, pixels 1..9 (times 10 so /255 stays readable) */
	uint8_t src[9];
	for (int i = 0; i < 9; i++)
		src[i] = (uint8_t)(10 * (i + 1));
	float mean[1] = {0}, std[1] = {1}, dst[9];
#define PX(v) ((float)(v) * (1.0f / 255.0f)) /* mean 0, std 1: scale 1/255, bias 0 */
	/* the output, to the bit, is the pixels of want / 255 (0: padding) */
	static const struct {
		uint32_t pad, dx, dy;
		int flip;
		uint8_t want[9];
	} cases[] = {
	    {0, 0, 0, 0, {10, 20, 30, 40, 50, 60, 70, 80, 90}}, /* identity */
	    {0, 0, 0, 1, {30, 20, 10, 60, 50, 40, 90, 80, 70}}, /* flip: rows mirrored */
	    /* pad 1, crop at (dx, dy) = (0, 0): image shifted right and down by one */
	    {1, 0, 0, 0, {0, 0, 0, 0, 10, 20, 0, 40, 50}},
	    /* pad 1, (dx, dy) = (1, 1): the centre crop is the image itself */
	    {1, 1, 1, 0, {10, 20, 30, 40, 50, 60, 70, 80, 90}},
	    /* pad 1, (dx, dy) = (2, 1), flipped: crop shifts left by one, then mirror */
	    {1, 2, 1, 1, {0, 30, 20, 0, 60, 50, 0, 90, 80}},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		loader_augment(src, dst, 1, 3, 3, cases[k].pad, cases[k].dx, cases[k].dy,
			       cases[k].flip, mean, std);
		float want[9];
		for (int i = 0; i < 9; i++)
			want[i] = PX(cases[k].want[i]);
		if (memcmp(dst, want, sizeof(want)) != 0)
			printf("#   pad %u, (dx, dy) = (%u, %u), flip %d: not as it should be\n",
			       cases[k].pad, cases[k].dx, cases[k].dy, cases[k].flip);
		CHECK(memcmp(dst, want, sizeof(want)) == 0);
	}
	/* normalization: padding is pixel 0, normalized like any pixel */
	float m2[1] = {0.5f}, s2[1] = {0.25f};
	loader_augment(src, dst, 1, 3, 3, 1, 0, 0, 0, m2, s2);
	CHECK_NEAR(dst[0], (0 - 0.5) / 0.25, 1e-6);
	CHECK_NEAR(dst[4], (10 / 255.0 - 0.5) / 0.25, 1e-6);
	/* two channels are treated alike, each with its own mean and std */
	uint8_t two[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* 2 x 2 x 2 */
	float m3[2] = {0, 0}, s3[2] = {1, 0.5f}, d2[8];
	loader_augment(two, d2, 2, 2, 2, 0, 0, 0, 1, m3, s3);
	float want2[8] = {PX(2),	PX(1),	      PX(4),	    PX(3),
			  PX(6) / 0.5f, PX(5) / 0.5f, PX(8) / 0.5f, PX(7) / 0.5f};
	for (int i = 0; i < 8; i++)
		CHECK_NEAR(d2[i], want2[i], 1e-6);
#undef PX
}

/* The fast row code against the formula in loader.h, for every offset and
 * flip, with padding up to the image size. */
/* One shape: every pad 0..5, offset and flip against the formula, and the
 * vector and table paths against each other (a flipped image must equal its
 * mirror image unflipped, bit for bit). */
static int augment_reference_errors(int C, int H, int W)
{
	size_t n = (size_t)C * H * W;
	uint8_t *src = malloc(n), *mirror = malloc(n);
	float *dst = malloc(sizeof(float) * n), *other = malloc(sizeof(float) * n);
	float mean[2] = {0.1f, 0.2f}, std[2] = {0.5f, 2.0f};
	for (size_t i = 0; i < n; i++)
		src[i] = (uint8_t)(i * 37 + 11);
	for (int c = 0; c < C; c++)
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++)
				mirror[(c * H + y) * W + x] = src[(c * H + y) * W + W - 1 - x];
	int bad = 0;
	for (int pad = 0; pad <= 5; pad++)
		for (int dy = 0; dy <= 2 * pad; dy++)
			for (int dx = 0; dx <= 2 * pad; dx++)
				for (int flip = 0; flip < 2; flip++) {
					loader_augment(src, dst, (uint32_t)C, (uint32_t)H,
						       (uint32_t)W, (uint32_t)pad, (uint32_t)dx,
						       (uint32_t)dy, flip, mean, std);
					for (size_t i = 0; i < n; i++) {
						int c = (int)(i / ((size_t)H * W)),
						    y = (int)(i / W % H), x = (int)(i % W);
						int py = y + dy - pad,
						    px = (flip ? W - 1 - x : x) + dx - pad;
						int v = py < 0 || py >= H || px < 0 || px >= W
							    ? 0
							    : src[((size_t)c * H + py) * W + px];
						double want = (v / 255.0 - mean[c]) / std[c];
						bad +=
						    fabs(dst[i] - want) > 1e-6 * (1 + fabs(want));
					}
					/* mirrored crop offset: dx' = 2 pad - dx */
					loader_augment(mirror, other, (uint32_t)C, (uint32_t)H,
						       (uint32_t)W, (uint32_t)pad,
						       (uint32_t)(2 * pad - dx), (uint32_t)dy,
						       !flip, mean, std);
					bad += memcmp(dst, other, sizeof(float) * n) != 0;
				}
	free(src), free(mirror), free(dst), free(other);
	return bad;
}

static void test_augment_matches_reference(void)
{
	CHECK_INT(augment_reference_errors(2, 5, 7), 0);  /* narrower than a vector */
	CHECK_INT(augment_reference_errors(1, 3, 37), 0); /* two vectors and a tail */
	CHECK_INT(augment_reference_errors(2, 2, 32), 0); /* whole vectors */
}

/* One augmentation of a 1 x 4 x 5 image: loader_augment's pad, offset and flip. */
struct crop {
	uint32_t pad, dx, dy;
	int flip;
};

/* hits[o] += the images of batch b that are crops[o] of their record, to the
 * bit (the first of the n that fits); returns how many are none of them. */
static int count_crops(const struct dataset *ds, const struct loader_batch *b,
		       const struct crop *crops, int n, int *hits)
{
	float mean[1] = {0}, std[1] = {1}, want[20];
	int none = 0;
	for (uint32_t k = 0; k < b->n; k++) {
		const uint8_t *src = dataset_image(ds, b->records[k]);
		int found = -1;
		for (int o = 0; o < n && found < 0; o++) {
			loader_augment(src, want, 1, 4, 5, crops[o].pad, crops[o].dx, crops[o].dy,
				       crops[o].flip, mean, std);
			if (memcmp(want, b->x + k * 20, sizeof(want)) == 0)
				found = o;
		}
		if (found < 0)
			none++;
		else
			hits[found]++;
	}
	return none;
}

/* In a batch with flip on, every image is the record or its mirror, about half each. */
static void test_loader_applies_flip_and_crop(void)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(make_shard("f.ds", 1, 4, 5, 2, 400, &ds), 0);
	struct loader_config cfg = config(400, 0);
	cfg.flip = 1;
	struct loader *l = open_loader(&ds, &cfg);
	struct loader_batch b;
	CHECK_INT(loader_next(l, &b, &err), 1);
	const struct crop flips[2] = {{0, 0, 0, 0}, {0, 0, 0, 1}};
	int kind[2] = {0}; /* as it is, mirrored */
	CHECK_INT(count_crops(&ds, &b, flips, 2, kind), 0);
	CHECK(kind[1] > 150 && kind[1] < 250); /* binomial(400, 1/2): 5 sigma = 50 */
	loader_free(l);
	/* pad 1: every image is one of the 9 crops; all 9 offsets occur */
	cfg.flip = 0;
	cfg.pad = 1;
	l = open_loader(&ds, &cfg);
	CHECK_INT(loader_next(l, &b, &err), 1);
	struct crop crops[9];
	for (uint32_t o = 0; o < 9; o++)
		crops[o] = (struct crop){1, o % 3, o / 3, 0};
	int hits[9] = {0};
	CHECK_INT(count_crops(&ds, &b, crops, 9, hits), 0);
	for (int o = 0; o < 9; o++)
		CHECK(hits[o] > 10);
	loader_free(l);
	dataset_close(&ds);
}

/* Three ranks with the same seed split each epoch into disjoint equal parts. */
static void test_parts_cover_the_epoch(void)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(make_shard("p.ds", 1, 2, 2, 3, 100, &ds), 0);
	struct loader_config cfg = config(8, 3);
	cfg.parts = 3;
	for (int epoch = 0; epoch < 2; epoch++) {
		int seen[100] = {0};
		for (uint32_t p = 0; p < 3; p++) {
			cfg.part = p;
			struct loader *l = open_loader(&ds, &cfg);
			if (!l)
				continue;
			CHECK_INT(loader_batches_per_epoch(l), 5); /* 33 records each */
			CHECK_INT(loader_seek(l, (uint64_t)epoch, &err), 0);
			struct loader_batch b;
			uint64_t total = 0;
			while (loader_next(l, &b, &err) == 1) {
				for (uint32_t k = 0; k < b.n; k++)
					seen[b.records[k]]++;
				total += b.n;
			}
			CHECK_INT(total, 33);
			loader_free(l);
		}
		int once = 0, twice = 0;
		for (int i = 0; i < 100; i++) {
			once += seen[i] == 1;
			twice += seen[i] > 1;
		}
		CHECK_INT(once, 99);
		CHECK_INT(twice, 0);
	}
	cfg.part = 3;
	check_refused(&ds, &cfg, NULL);
	dataset_close(&ds);
}

/* Claims from a list (ctx), then none left; a negative entry fails. */
struct claims {
	const long *t;
	int n, next, calls;
};
static int claim_from_list(void *ctx, uint64_t *t, struct error *err)
{
	struct claims *c = ctx;
	c->calls++;
	if (c->next == c->n)
		return 0;
	long v = c->t[c->next++];
	if (v < 0)
		return error_set(err, "claim %d refused", c->next - 1);
	*t = (uint64_t)v;
	return 1;
}

/* Claimed batches (dist's shared epochs): the batches claimed and no others,
 * each the same as the in-order loader's batch of that number, the epochs
 * ending where the claims cross into the next one (once for an epoch with
 * none claimed here), then nothing; alike with and without the prefetch
 * thread, which claims at most its depth ahead. */
static void test_claimed_batches(void)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(make_shard("c.ds", 1, 3, 3, 4, 40, &ds), 0); /* batch 7: 5 an epoch */
	struct loader_config cfg = config(7, 9);
	cfg.flip = 1;
	cfg.drop_last = 1;
	static const long list[] = {1, 2, 4, 12, 13, 19, 20}; /* epochs 0, 2, 3, 4; none of 1 */
	/* what loader_next gives, epoch by epoch: batch numbers, 0 ends an epoch */
	static const long want[] = {1, 2, 4, -1, -1, 12, 13, -1, 19, -1, 20, -1, -1, -1};
	for (int prefetch = 0; prefetch <= 3; prefetch += 3) {
		cfg.prefetch = prefetch;
		cfg.claim = NULL;
		struct loader *seq = open_loader(&ds, &cfg);
		struct claims c = {list, 7, 0, 0};
		cfg.claim = claim_from_list;
		cfg.claim_ctx = &c;
		struct loader *cl = open_loader(&ds, &cfg);
		if (!seq || !cl)
			return;
		CHECK_INT(c.calls, 0); /* nothing claimed before the first batch */
		int same = 1, order = 1;
		for (int i = 0; i < 14; i++) {
			struct loader_batch a, b;
			int rc = loader_next(cl, &b, &err);
			order &= rc == (want[i] >= 0);
			if (rc != 1)
				continue;
			order &= b.epoch * 5 + b.index == (uint64_t)want[i];
			CHECK_INT(loader_seek_batch(seq, b.epoch, b.index, &err), 0);
			CHECK_INT(loader_next(seq, &a, &err), 1);
			same &= same_batch(&a, &b, 9);
			/* claims run ahead by the depth at most */
			order &= c.next <= (i < 7 ? i + 1 : 7) + prefetch;
		}
		CHECK(order);
		CHECK(same);
		CHECK_INT(c.calls, 8); /* the seven, and one that found none left */
		CHECK_INT(loader_seek(cl, 0, &err), -1);
		CHECK(strstr(err.msg, "claimed batches") != NULL);
		loader_free(seq);
		loader_free(cl);
	}
	/* a claim that fails is the loader's failure; claims that go back are refused */
	static const long bad[] = {0, -1}, back[] = {3, 2};
	struct claims cb = {bad, 2, 0, 0}, cbk = {back, 2, 0, 0};
	cfg.prefetch = 0;
	cfg.claim_ctx = &cb;
	struct loader *l = open_loader(&ds, &cfg);
	struct loader_batch b;
	CHECK_INT(loader_next(l, &b, &err), 1);
	CHECK_INT(loader_next(l, &b, &err), -1);
	CHECK(strstr(err.msg, "claim 1 refused") != NULL);
	loader_free(l);
	cfg.claim_ctx = &cbk;
	l = open_loader(&ds, &cfg);
	CHECK_INT(loader_next(l, &b, &err), 1);
	CHECK_INT(loader_next(l, &b, &err), -1);
	CHECK(strstr(err.msg, "claimed batch 2 after 3") != NULL);
	loader_free(l);
	cfg.parts = 2;
	check_refused(&ds, &cfg, "claimed batches are of the whole epoch");
	dataset_close(&ds);
}

static int x_allocs, x_frees, x_reuses, x_reuse_held;
static const float *held_x; /* the batch the test holds (atomic: read by the prefetch thread) */
static void count_reuse(void *p, void *ctx)
{
	(void)ctx;
	__atomic_add_fetch(&x_reuses, 1, __ATOMIC_SEQ_CST);
	if (p == __atomic_load_n(&held_x, __ATOMIC_SEQ_CST))
		__atomic_add_fetch(&x_reuse_held, 1, __ATOMIC_SEQ_CST);
}
static void *count_alloc(size_t n, void *ctx)
{
	(*(size_t *)ctx) += n;
	x_allocs++;
	return malloc(n);
}
static void count_free(void *p, void *ctx)
{
	(void)ctx;
	x_frees++;
	free(p);
}

/* Batch buffers from count_alloc and count_free, their bytes added to *bytes. */
static void count_allocations(struct loader_config *cfg, size_t *bytes)
{
	x_allocs = x_frees = 0;
	*bytes = 0;
	cfg->x_alloc = count_alloc;
	cfg->x_free = count_free;
	cfg->x_ctx = bytes;
}

/* The float buffers come from the caller's allocator (pinned memory for a GPU),
 * once per slot, never per batch. */
static void test_caller_allocator_for_batches(void)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(make_shard("x.ds", 1, 3, 3, 2, 50, &ds), 0);
	struct loader_config cfg = config(4, 0);
	cfg.prefetch = 2;
	size_t bytes;
	count_allocations(&cfg, &bytes);
	struct loader *l = open_loader(&ds, &cfg);
	skip_epochs(l, 3);
	loader_free(l);
	CHECK_INT(x_allocs, 3); /* prefetch + 1 slots */
	CHECK_INT(x_frees, 3);
	CHECK_INT(bytes, 3 * 4 * 9 * sizeof(float));

	/* x_reuse: before every rebuild of a buffer handed out, never for the
	   one the caller holds; 39 batches in 3 slots, without and with a thread */
	cfg.x_reuse = count_reuse;
	for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
		cfg.prefetch = prefetch;
		x_reuses = x_reuse_held = 0;
		l = open_loader(&ds, &cfg);
		int batches = 0;
		struct loader_batch b;
		for (int e = 0; e < 3; e++) {
			__atomic_store_n(&held_x, NULL, __ATOMIC_SEQ_CST);
			while (loader_next(l, &b, &err) == 1) {
				__atomic_store_n(&held_x, b.x, __ATOMIC_SEQ_CST);
				batches++;
				usleep(100); /* let the thread run ahead */
				__atomic_store_n(&held_x, NULL, __ATOMIC_SEQ_CST);
			}
		}
		loader_free(l);
		CHECK_INT(batches, 39);
		CHECK_INT(x_reuse_held, 0);
		if (prefetch == 0)
			CHECK_INT(x_reuses, 38); /* one buffer: every batch but the first */
		else
			/* 3 buffers, the thread builds up to 3 batches past the last one */
			CHECK(x_reuses >= 36 && x_reuses <= 39);
	}
	cfg.x_reuse = NULL;
	cfg.x_free = NULL;
	check_refused(&ds, &cfg, NULL);
	dataset_close(&ds);
}

static void test_bad_config_and_out_of_memory(void)
{
	struct dataset ds;
	struct error err;
	CHECK_INT(make_shard("c.ds", 1, 4, 4, 2, 10, &ds), 0);
	struct loader_config cfg = config(0, 0);
	check_refused(&ds, &cfg, "batch");
	cfg.batch = 4;
	cfg.std[0] = 0;
	check_refused(&ds, &cfg, NULL);
	cfg.std[0] = 1;
	cfg.pad = 5;
	check_refused(&ds, &cfg, NULL);
	cfg.pad = 0;
	for (long k = 0; k < 8; k++) {
		mem_fail_after(k);
		struct loader *l = loader_new(&ds, &cfg, &err);
		mem_fail_after(-1);
		if (!l)
			CHECK(strstr(err.msg, "out of memory") != NULL);
		loader_free(l);
	}
	dataset_close(&ds);
}

/* ---- mask shards ---------------------------------------------------------- */

/* The definition in loader.h: where output (y, x) reads the cropped image. */
static void ref_source(unsigned sym, int H, int W, int y, int x, int *sy, int *sx)
{
	int u = sym & LOADER_FLIP_Y ? H - 1 - y : y, v = sym & LOADER_FLIP_X ? W - 1 - x : x;
	*sy = sym & LOADER_TRANSPOSE ? v : u;
	*sx = sym & LOADER_TRANSPOSE ? u : v;
}

/* Every symmetry, pad and offset of loader_augment_sym and
 * loader_augment_mask against the formula (square shapes around the
 * 16-pixel vector width; non-square ones without transposes). */
static int sym_reference_errors(int C, int H, int W)
{
	size_t plane = (size_t)H * W, n = (size_t)C * plane;
	uint8_t *src = malloc(n), *msrc = malloc(plane);
	float *dst = malloc(sizeof(float) * n);
	int32_t *mdst = malloc(sizeof(int32_t) * plane);
	float mean[3] = {0.1f, 0.2f, 0.3f}, std[3] = {0.5f, 2.0f, 1.0f};
	for (size_t i = 0; i < n; i++)
		src[i] = (uint8_t)(i * 37 + 11);
	for (size_t i = 0; i < plane; i++)
		msrc[i] = i % 7 == 3 ? DATASET_MASK_IGNORE : (uint8_t)(i % 5);
	int bad = 0;
	for (unsigned sym = 0; sym < 8; sym++) {
		if ((sym & LOADER_TRANSPOSE) && H != W)
			continue;
		for (int pad = 0; pad <= 3; pad++)
			for (int dy = 0; dy <= 2 * pad; dy++)
				for (int dx = 0; dx <= 2 * pad; dx++) {
					loader_augment_sym(src, dst, (uint32_t)C, (uint32_t)H,
							   (uint32_t)W, (uint32_t)pad, (uint32_t)dx,
							   (uint32_t)dy, sym, mean, std);
					loader_augment_mask(msrc, mdst, (uint32_t)H, (uint32_t)W,
							    (uint32_t)pad, (uint32_t)dx,
							    (uint32_t)dy, sym);
					for (size_t i = 0; i < n; i++) {
						int c = (int)(i / plane), y = (int)(i / W % H),
						    x = (int)(i % W), cy, cx;
						ref_source(sym, H, W, y, x, &cy, &cx);
						int py = cy + dy - pad, px = cx + dx - pad;
						int in = py >= 0 && py < H && px >= 0 && px < W;
						int v = in ? src[((size_t)c * H + py) * W + px] : 0;
						double want = (v / 255.0 - mean[c]) / std[c];
						bad +=
						    fabs(dst[i] - want) > 1e-6 * (1 + fabs(want));
						if (c == 0) {
							int m =
							    in ? msrc[(size_t)py * W + px] : 255;
							bad += mdst[i] != (m == 255 ? -1 : m);
						}
					}
				}
	}
	free(src), free(msrc), free(dst), free(mdst);
	return bad;
}

static void test_symmetries_match_reference(void)
{
	CHECK_INT(sym_reference_errors(2, 5, 5), 0);
	CHECK_INT(sym_reference_errors(1, 20, 20), 0); /* a vector and a tail per row */
	CHECK_INT(sym_reference_errors(3, 4, 7), 0);   /* flips only */
	/* sym = FLIP_X is loader_augment's flip, bit for bit */
	uint8_t src[2 * 9 * 9];
	float a[2 * 81], b[2 * 81], mean[2] = {0.5f, 0.5f}, std[2] = {0.5f, 0.5f};
	for (int i = 0; i < 162; i++)
		src[i] = (uint8_t)(i * 13);
	loader_augment(src, a, 2, 9, 9, 2, 3, 1, 1, mean, std);
	loader_augment_sym(src, b, 2, 9, 9, 2, 3, 1, LOADER_FLIP_X, mean, std);
	CHECK(memcmp(a, b, sizeof(a)) == 0);
}

/* Tiles of S x S that say where each pixel came from: channel 0 = y S + x
 * (S <= 16), channel 1 = 1 (0 only in padding), channel 2 = 1 where the mask
 * is not labelled; mask = y S + x, or 255 on about one pixel in five. */
static int add_position_record(struct dataset_writer *w, const struct dataset_shape *s, uint64_t i,
			       uint8_t *px, const void *ctx, struct error *err)
{
	(void)ctx;
	size_t plane = (size_t)s->height * s->width;
	uint8_t *mask = px + 3 * plane;
	for (size_t j = 0; j < plane; j++) {
		int ignore = (j * 3 + i) % 5 == 0;
		px[j] = (uint8_t)j;
		px[plane + j] = 1;
		px[2 * plane + j] = (uint8_t)ignore;
		mask[j] = ignore ? DATASET_MASK_IGNORE : (uint8_t)j;
	}
	struct dataset_key key = {4, (uint32_t)i % 16, 3};
	return dataset_writer_add_mask(w, px, mask, &key, err);
}

static int make_position_shard(const char *name, uint32_t S, uint64_t n, struct dataset *ds)
{
	struct dataset_shape s = {3, S, S, S * S, DATASET_LABEL_MASK};
	return open_new_shard(name, &s, n, add_position_record, ds);
}

/* The mask of every pixel of every batch is what the image says it should
 * be: the label of the source pixel the image shows, -1 where that pixel is
 * not labelled or is padding. Over 3 epochs with the 8 symmetries, a crop
 * and the prefetch thread; then, without a crop, every symmetry occurs. */
static void test_mask_follows_image(void)
{
	struct dataset ds;
	struct error err;
	const uint32_t S = 8;
	CHECK_INT(make_position_shard("pos.ds", S, 50, &ds), 0);
	struct loader_config cfg = config(16, 9);
	cfg.dihedral = 1;
	cfg.pad = 2;
	struct loader *l = open_loader(&ds, &cfg);
	int bad = 0, padded = 0, ignored = 0, moved = 0;
	size_t plane = S * S;
	struct loader_batch b;
	for (int e = 0; e < 3 && l; e++)
		while (loader_next(l, &b, &err) == 1) {
			CHECK(b.mask != NULL && b.y == NULL);
			for (uint32_t k = 0; k < b.n; k++)
				for (size_t j = 0; j < plane; j++) {
					const float *x = b.x + (size_t)k * 3 * plane;
					int pos = (int)lrintf(x[j] * 255), real = x[plane + j] > 0,
					    ign = x[2 * plane + j] > 0;
					int32_t m = b.mask[(size_t)k * plane + j];
					int32_t want = !real || ign ? -1 : pos;
					bad += m != want;
					padded += !real;
					ignored += real && ign;
					moved += real && pos != (int)j;
				}
		}
	loader_free(l);
	CHECK_INT(bad, 0);
	CHECK(padded > 1000 && ignored > 1000 && moved > 1000);

	/* pad 0: each tile is one of the 8 symmetries of the record, all occur */
	cfg.pad = 0;
	cfg.batch = 50;
	l = open_loader(&ds, &cfg);
	int hits[8] = {0}, none = 0;
	for (int e = 0; e < 8 && l; e++)
		while (loader_next(l, &b, &err) == 1)
			for (uint32_t k = 0; k < b.n; k++) {
				int found = -1;
				for (unsigned sym = 0; sym < 8 && found < 0; sym++) {
					int same = 1;
					for (int y = 0; y < (int)S; y++)
						for (int x = 0; x < (int)S; x++) {
							int sy, sx;
							ref_source(sym, (int)S, (int)S, y, x, &sy,
								   &sx);
							same &= (int)lrintf(
								    b.x[k * 3 * plane + y * S + x] *
								    255) == sy * (int)S + sx;
						}
					if (same)
						found = (int)sym;
				}
				if (found < 0)
					none++;
				else
					hits[found]++;
			}
	loader_free(l);
	CHECK_INT(none, 0);
	for (int s = 0; s < 8; s++)
		CHECK(hits[s] > 20); /* binomial(400, 1/8): mean 50, 5 sigma 33 */
	/* dihedral needs square tiles */
	struct dataset rect;
	CHECK_INT(make_shard("rect.ds", 1, 4, 6, 2, 4, &rect), 0);
	cfg.dihedral = 1;
	check_refused(&rect, &cfg, "needs square images, these are 4x6");
	dataset_close(&rect);
	dataset_close(&ds);
}

/* Without augmentation the mask is the record's, 255 -> -1; class shards
 * have y and no mask; the mask buffers come from the caller's allocator too. */
static void test_mask_values_and_ignore(void)
{
	struct dataset ds, cls;
	struct error err;
	CHECK_INT(make_position_shard("pos2.ds", 4, 10, &ds), 0);
	CHECK_INT(make_shard("cls.ds", 1, 4, 4, 3, 10, &cls), 0);
	struct loader_config cfg = config(10, 0);
	cfg.shuffle = 0;
	size_t bytes;
	count_allocations(&cfg, &bytes);
	struct loader *l = open_loader(&ds, &cfg);
	struct loader_batch b;
	CHECK_INT(loader_next(l, &b, &err), 1);
	int bad = 0, minus = 0;
	for (uint32_t k = 0; k < 10; k++) {
		const uint8_t *m = dataset_mask(&ds, k);
		for (int j = 0; j < 16; j++) {
			int32_t want = m[j] == 255 ? -1 : m[j];
			bad += b.mask[k * 16 + j] != want;
			minus += b.mask[k * 16 + j] == -1;
		}
	}
	CHECK_INT(bad, 0);
	CHECK(minus > 20);
	loader_free(l);
	CHECK_INT(x_allocs, 6); /* 3 slots: x and mask each */
	CHECK_INT(x_frees, 6);
	CHECK_INT(bytes, 3 * 10 * 16 * (3 * sizeof(float) + sizeof(int32_t)));
	cfg.x_alloc = NULL, cfg.x_free = NULL;
	l = open_loader(&cls, &cfg);
	CHECK_INT(loader_next(l, &b, &err), 1);
	CHECK(b.mask == NULL && b.y != NULL);
	loader_free(l);
	dataset_close(&ds);
	dataset_close(&cls);
}

/* A mask value that is no class (9 in a 3-class shard, in record 4 at
 * pixel (2, 1)): the batch that holds it is an error naming the shard,
 * record, pixel and byte, with and without the prefetch thread, and it stays. */
static void test_bad_mask_value(void)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/badmask.ds", dir);
	struct dataset_shape s = {1, 4, 4, 3, DATASET_LABEL_MASK};
	struct dataset_writer w;
	struct error err;
	CHECK_INT(dataset_writer_open(&w, path, &s, &err), 0);
	uint8_t px[16] = {0}, mask[16] = {0};
	for (int i = 0; i < 6; i++)
		CHECK_INT(dataset_writer_add_mask(&w, px, mask, NULL, &err), 0);
	CHECK_INT(dataset_writer_finish(&w, &err), 0);
	size_t rec = 16 + 16 + DATASET_KEY_BYTES;
	off_t at = (off_t)(DATASET_HEADER_BYTES + 4 * rec + 16 + 2 * 4 + 1);
	int fd = open(path, O_WRONLY);
	uint8_t nine = 9;
	CHECK(fd >= 0 && pwrite(fd, &nine, 1, at) == 1);
	close(fd);
	struct dataset ds;
	CHECK_INT(dataset_open(&ds, path, 0, &err), 0); /* masks are the loader's to check */
	char want[800];
	snprintf(want, sizeof(want),
		 "%s: byte %lld: record 4 has mask value 9 at pixel (row 2, col 1), but the "
		 "shard has 3 classes (255: no label)",
		 path, (long long)at);
	for (int prefetch = 0; prefetch <= 2; prefetch += 2) {
		struct loader_config cfg = config(2, 0);
		cfg.shuffle = 0;
		cfg.prefetch = prefetch;
		struct loader *l = open_loader(&ds, &cfg);
		struct loader_batch b;
		CHECK_INT(loader_next(l, &b, &err), 1);
		CHECK_INT(loader_next(l, &b, &err), 1);
		for (int again = 0; again < 2; again++) {
			error_clear(&err);
			CHECK_INT(loader_next(l, &b, &err), DATASET_EBADINPUT);
			CHECK_STR(err.msg, want);
		}
		loader_free(l);
	}
	dataset_close(&ds);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_epoch_covers_every_record_once);
	RUN(test_same_seed_same_batches_threads_or_not);
	RUN(test_golden_batches);
	RUN(test_no_shuffle_is_file_order_and_drop_last);
	RUN(test_seek_matches_sequential);
	RUN(test_augment_on_known_image);
	RUN(test_augment_matches_reference);
	RUN(test_loader_applies_flip_and_crop);
	RUN(test_parts_cover_the_epoch);
	RUN(test_claimed_batches);
	RUN(test_caller_allocator_for_batches);
	RUN(test_bad_config_and_out_of_memory);
	RUN(test_symmetries_match_reference);
	RUN(test_mask_follows_image);
	RUN(test_mask_values_and_ignore);
	RUN(test_bad_mask_value);
	struct error err;
	fs_rm_rf(dir, &err);
	return CHECK_DONE();
}
