/* data_loader: images/s of nn/loader on a shard, against a baseline measured
 * in the same run: memcpy of the same records in the same shuffled order (a
 * gather into a batch buffer, the least any loader must do). Also the overlap
 * the prefetch thread buys when the caller spends time on each batch (a
 * simulated training step).
 *   data_loader SHARD [EPOCHS] [BATCH]
 *   data_loader --make-synthetic OUT C H W N   (a shard of N pseudo-random images)
 * Two figures per row: images per second of wall time, and images per
 * second of CPU time (all threads of the process), which other work on a
 * shared machine disturbs much less. Each is the best of 3 runs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "nn/dataset.h"
#include "nn/loader.h"

static volatile float sink;

struct rate {
	double wall, cpu; /* images per second of wall time / of process CPU time */
};

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A stand-in for a training step: spin for `us` microseconds. */
static void busy(double us)
{
	double end = clock_now() + us * 1e-6;
	while (clock_now() < end)
		;
}

static struct rate run_loader_once(const struct dataset *ds, const struct loader_config *cfg,
				   int epochs, double step_us)
{
	struct error err;
	struct loader *l = loader_new(ds, cfg, &err);
	if (!l) {
		fprintf(stderr, "data_loader: %s\n", err.msg);
		exit(1);
	}
	struct loader_batch b;
	uint64_t images = 0;
	double t0 = clock_now(), c0 = cpu_now();
	for (int e = 0; e < epochs; e++)
		while (loader_next(l, &b, &err) == 1) {
			sink += b.x[0];
			images += b.n;
			if (step_us > 0)
				busy(step_us);
		}
	struct rate r = {(double)images / (clock_now() - t0), (double)images / (cpu_now() - c0)};
	loader_free(l);
	return r;
}

static struct rate
best3(struct rate (*fn)(const struct dataset *, const struct loader_config *, int, double),
      const struct dataset *ds, const struct loader_config *cfg, int epochs, double step_us)
{
	struct rate best = {0, 0};
	for (int i = 0; i < 3; i++) {
		struct rate r = fn(ds, cfg, epochs, step_us);
		best.wall = r.wall > best.wall ? r.wall : best.wall;
		best.cpu = r.cpu > best.cpu ? r.cpu : best.cpu;
	}
	return best;
}

/* memcpy baseline: the same shuffled gather of record bytes, no conversion. */
static struct rate run_memcpy_once(const struct dataset *ds, const struct loader_config *cfg,
				   int epochs, double step_us)
{
	(void)step_us;
	uint32_t batch = cfg->batch;
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
	double t0 = clock_now(), c0 = cpu_now();
	for (int e = 0; e < epochs; e++)
		for (uint64_t i = 0; i < n; i += batch) {
			uint64_t m = n - i < batch ? n - i : batch;
			for (uint64_t k = 0; k < m; k++)
				memcpy(buf + k * ds->image_bytes, dataset_image(ds, perm[i + k]),
				       ds->image_bytes);
			sink += buf[0];
			images += m;
		}
	struct rate r = {(double)images / (clock_now() - t0), (double)images / (cpu_now() - c0)};
	free(perm);
	free(buf);
	return r;
}

static int make_synthetic(char **argv)
{
	struct dataset_shape s = {(uint32_t)atoi(argv[3]), (uint32_t)atoi(argv[4]),
				  (uint32_t)atoi(argv[5]), 10, DATASET_LABEL_CLASS};
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
		       "       data_loader --make-synthetic OUT C H W N\n"
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
	struct loader_config cfg;
	loader_config_default(&cfg);
	cfg.batch = batch;
	cfg.seed = 1;
	printf("shard %s: %" PRIu64 " images %ux%ux%u, batch %u, %d epochs, best of 3\n", argv[1],
	       ds.count, ds.shape.channels, ds.shape.height, ds.shape.width, batch, epochs);
	run_memcpy_once(&ds, &cfg, 1, 0); /* warm the page cache */
	printf("%-44s %14s %14s %10s\n", "", "images/s wall", "images/s CPU", "CPU vs memcpy");
	struct rate base = best3(run_memcpy_once, &ds, &cfg, epochs, 0);
	printf("%-44s %14.0f %14.0f %10.2fx\n", "memcpy gather of uint8 records (baseline)",
	       base.wall, base.cpu, 1.0);
	struct {
		const char *name;
		int flip;
		uint32_t pad;
		int prefetch;
	} rows[] = {
	    {"loader: float32, no augmentation, no thread", 0, 0, 0},
	    {"loader: float32, no augmentation, prefetch 2", 0, 0, 2},
	    {"loader: flip + pad 4 crop, no thread", 1, 4, 0},
	    {"loader: flip + pad 4 crop, prefetch 1", 1, 4, 1},
	    {"loader: flip + pad 4 crop, prefetch 2", 1, 4, 2},
	};
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		cfg.flip = rows[r].flip;
		cfg.pad = rows[r].pad;
		cfg.prefetch = rows[r].prefetch;
		struct rate v = best3(run_loader_once, &ds, &cfg, epochs, 0);
		printf("%-44s %14.0f %14.0f %10.2fx\n", rows[r].name, v.wall, v.cpu,
		       v.cpu / base.cpu);
	}
	/* Overlap: a caller that spends as long on a batch as the augmented loader
	 * takes to build one. Without the thread the two add; with it they overlap,
	 * if a second core is free. */
	cfg.flip = 1;
	cfg.pad = 4;
	cfg.prefetch = 0;
	struct rate aug = best3(run_loader_once, &ds, &cfg, 1, 0);
	double step_us = batch / aug.cpu * 1e6;
	struct rate seq = best3(run_loader_once, &ds, &cfg, 1, step_us);
	printf("with a simulated %.0f us training step per batch (as long as building it):\n",
	       step_us);
	printf("%-44s %14.0f\n", "  augmented loader, no thread", seq.wall);
	for (int depth = 1; depth <= 2; depth++) {
		cfg.prefetch = depth;
		struct rate pre = best3(run_loader_once, &ds, &cfg, 1, step_us);
		char name[64];
		snprintf(name, sizeof(name), "  augmented loader, prefetch %d", depth);
		printf("%-44s %14.0f  (%.2fx wall; 2.00x is perfect overlap)\n", name, pre.wall,
		       pre.wall / seq.wall);
	}
	dataset_close(&ds);
	return 0;
}
