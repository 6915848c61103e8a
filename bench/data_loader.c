/* data_loader: images/s of nn/loader on a shard, against two baselines
 * measured in the same run: memcpy of the same records (a gather into a batch
 * buffer, the least any loader must do) and the loader's own work without
 * augmentation. Also the overlap the prefetch thread buys when the caller
 * spends time on each batch (a simulated training step).
 *   data_loader SHARD [EPOCHS] [BATCH]
 *   data_loader --make-synthetic OUT C H W N   (a shard of N pseudo-random images)
 * Each figure is the best of 3 runs: the machine is shared, and the best run
 * is the one least disturbed by others. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "nn/dataset.h"
#include "nn/loader.h"

static volatile float sink;

/* A stand-in for a training step: spin for `us` microseconds. */
static void busy(double us)
{
	double end = clock_now() + us * 1e-6;
	while (clock_now() < end)
		;
}

static double run_loader_once(const struct dataset *ds, const struct loader_config *cfg, int epochs,
			      double step_us)
{
	struct error err;
	struct loader *l = loader_new(ds, cfg, &err);
	if (!l) {
		fprintf(stderr, "data_loader: %s\n", err.msg);
		exit(1);
	}
	struct loader_batch b;
	uint64_t images = 0;
	double t0 = clock_now();
	for (int e = 0; e < epochs; e++)
		while (loader_next(l, &b, &err) == 1) {
			sink += b.x[0];
			images += b.n;
			if (step_us > 0)
				busy(step_us);
		}
	double dt = clock_now() - t0;
	loader_free(l);
	return (double)images / dt;
}

static double run_loader(const struct dataset *ds, const struct loader_config *cfg, int epochs,
			 double step_us)
{
	double best = 0;
	for (int r = 0; r < 3; r++) {
		double v = run_loader_once(ds, cfg, epochs, step_us);
		best = v > best ? v : best;
	}
	return best;
}

/* memcpy baseline: the same shuffled gather of record bytes, no conversion. */
static double run_memcpy_once(const struct dataset *ds, uint32_t batch, int epochs)
{
	uint64_t n = ds->count;
	uint64_t *perm = malloc(sizeof(uint64_t) * n);
	uint8_t *buf = malloc(ds->image_bytes * batch);
	if (!perm || !buf) {
		fprintf(stderr, "data_loader: out of memory\n");
		exit(1);
	}
	uint64_t s = 1;
	for (uint64_t i = 0; i < n; i++)
		perm[i] = i;
	for (uint64_t i = n; i > 1; i--) { /* a shuffle, as the loader's (an LCG is enough here) */
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t j = (s >> 33) % i, t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	uint64_t images = 0;
	double t0 = clock_now();
	for (int e = 0; e < epochs; e++)
		for (uint64_t i = 0; i < n; i += batch) {
			uint64_t m = n - i < batch ? n - i : batch;
			for (uint64_t k = 0; k < m; k++)
				memcpy(buf + k * ds->image_bytes, dataset_image(ds, perm[i + k]),
				       ds->image_bytes);
			sink += buf[0];
			images += m;
		}
	double dt = clock_now() - t0;
	free(perm);
	free(buf);
	return (double)images / dt;
}

static double run_memcpy(const struct dataset *ds, uint32_t batch, int epochs)
{
	double best = 0;
	for (int r = 0; r < 3; r++) {
		double v = run_memcpy_once(ds, batch, epochs);
		best = v > best ? v : best;
	}
	return best;
}

static int make_synthetic(char **argv)
{
	struct dataset_shape s = {(uint32_t)atoi(argv[3]), (uint32_t)atoi(argv[4]),
				  (uint32_t)atoi(argv[5]), 10};
	long n = atol(argv[6]);
	struct dataset_writer w;
	struct error err;
	if (n < 1 || dataset_writer_open(&w, argv[2], &s, &err) < 0) {
		fprintf(stderr, "data_loader: %s\n", n < 1 ? "N must be positive" : err.msg);
		return 2;
	}
	size_t img = (size_t)s.channels * s.height * s.width;
	uint8_t *px = malloc(img);
	if (!px)
		return 1;
	uint64_t x = 88172645463325252ull;
	for (long i = 0; i < n; i++) {
		for (size_t j = 0; j < img; j++) { /* xorshift64 (Marsaglia 2003) */
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			px[j] = (uint8_t)x;
		}
		if (dataset_writer_add(&w, px, (uint32_t)(i % 10), &err) < 0) {
			fprintf(stderr, "data_loader: %s\n", err.msg);
			free(px);
			dataset_writer_abort(&w);
			return 1;
		}
	}
	free(px);
	if (dataset_writer_finish(&w, &err) < 0) {
		fprintf(stderr, "data_loader: %s\n", err.msg);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 7 && !strcmp(argv[1], "--make-synthetic"))
		return make_synthetic(argv);
	if (argc < 2 || !strcmp(argv[1], "--help")) {
		printf("usage: data_loader SHARD [EPOCHS] [BATCH]\n"
		       "Loader images/s vs a memcpy baseline on the same shard.\n"
		       "example: data_loader train.ds 3 128\n");
		return argc < 2 ? 2 : 0;
	}
	int epochs = argc > 2 ? atoi(argv[2]) : 3;
	uint32_t batch = argc > 3 ? (uint32_t)atoi(argv[3]) : 128;
	if (epochs < 1 || batch < 1) {
		fprintf(stderr, "data_loader: EPOCHS and BATCH must be positive\n");
		return 2;
	}
	struct dataset ds;
	struct error err;
	if (dataset_open(&ds, argv[1], 0, &err) < 0) {
		fprintf(stderr, "data_loader: %s\n", err.msg);
		return 2;
	}
	printf("shard %s: %" PRIu64 " images %ux%ux%u, batch %u, %d epochs\n", argv[1], ds.count,
	       ds.shape.channels, ds.shape.height, ds.shape.width, batch, epochs);
	run_memcpy(&ds, batch, 1); /* warm the page cache */

	struct loader_config cfg;
	loader_config_default(&cfg);
	cfg.batch = batch;
	cfg.seed = 1;
	double base = run_memcpy(&ds, batch, epochs);
	printf("%-46s %12.0f images/s  (1.00x memcpy)\n",
	       "memcpy gather of uint8 records (baseline)", base);
	struct {
		const char *name;
		int flip;
		uint32_t pad;
		int prefetch;
	} rows[] = {
	    {"loader: float32, no augmentation, no thread", 0, 0, 0},
	    {"loader: float32, no augmentation, prefetch 1", 0, 0, 1},
	    {"loader: float32, no augmentation, prefetch 2", 0, 0, 2},
	    {"loader: flip + pad 4 crop, no thread", 1, 4, 0},
	    {"loader: flip + pad 4 crop, prefetch 1", 1, 4, 1},
	    {"loader: flip + pad 4 crop, prefetch 2", 1, 4, 2},
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		cfg.flip = rows[r].flip;
		cfg.pad = rows[r].pad;
		cfg.prefetch = rows[r].prefetch;
		double v = run_loader(&ds, &cfg, epochs, 0);
		printf("%-46s %12.0f images/s  (%.2fx memcpy)\n", rows[r].name, v, v / base);
	}
	/* Overlap: a caller that spends as long on a batch as the augmented loader
	 * takes to build one. Without the thread the two add; with it they overlap. */
	cfg.flip = 1;
	cfg.pad = 4;
	cfg.prefetch = 0;
	double aug = run_loader_once(&ds, &cfg, 1, 0);
	double step_us = batch / aug * 1e6;
	double seq = run_loader(&ds, &cfg, 1, step_us);
	printf("with a simulated %.0f us training step per batch (as long as building it):\n",
	       step_us);
	printf("%-46s %12.0f images/s\n", "  augmented loader, no thread", seq);
	for (int depth = 1; depth <= 2; depth++) {
		cfg.prefetch = depth;
		double pre = run_loader(&ds, &cfg, 1, step_us);
		char name[64];
		snprintf(name, sizeof(name), "  augmented loader, prefetch %d", depth);
		printf("%-46s %12.0f images/s  (%.2fx; 2.00x is perfect overlap)\n", name, pre,
		       pre / seq);
	}
	dataset_close(&ds);
	return 0;
}
