/* Unit tests for nn/loader: batches, shuffling, determinism, augmentation. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/fs.h"
#include "nn/dataset.h"
#include "nn/loader.h"

static char dir[] = "/tmp/cairn-loader.XXXXXX";

static int make_shard(const char *path, uint32_t C, uint32_t H, uint32_t W, uint32_t K, uint64_t n)
{
	struct dataset_shape s = {C, H, W, K};
	struct dataset_writer w;
	struct error err;
	if (dataset_writer_open(&w, path, &s, &err) < 0)
		return -1;
	size_t img = (size_t)C * H * W;
	uint8_t *px = malloc(img);
	for (uint64_t i = 0; i < n; i++) {
		for (size_t j = 0; j < img; j++)
			px[j] = (uint8_t)((i * 7 + j) % 256);
		if (dataset_writer_add(&w, px, (uint32_t)(i % K), &err) < 0) {
			free(px);
			dataset_writer_abort(&w);
			return -1;
		}
	}
	free(px);
	return dataset_writer_finish(&w, &err);
}

static void test_epoch_covers_every_record_once(void)
{
	char p[300];
	snprintf(p, sizeof(p), "%s/a.ds", dir);
	CHECK_INT(make_shard(p, 1, 4, 4, 3, 103), 0);
	struct dataset ds;
	struct error err;
	CHECK_INT(dataset_open(&ds, p, 0, &err), 0);
	struct loader_config cfg;
	loader_config_default(&cfg);
	cfg.batch = 10;
	cfg.seed = 5;
	struct loader *l = loader_new(&ds, &cfg, &err);
	CHECK(l != NULL);
	CHECK_INT(loader_batches_per_epoch(l), 11);
	for (int epoch = 0; epoch < 3; epoch++) {
		int seen[103] = {0}, batches = 0, total = 0;
		struct loader_batch b;
		int rc;
		while ((rc = loader_next(l, &b, &err)) == 1) {
			CHECK_INT(b.epoch, epoch);
			CHECK_INT(b.index, batches);
			for (uint32_t k = 0; k < b.n; k++) {
				seen[b.records[k]]++;
				CHECK_INT(b.y[k], b.records[k] % 3);
			}
			total += b.n;
			batches++;
		}
		CHECK_INT(rc, 0);
		CHECK_INT(batches, 11);
		CHECK_INT(total, 103);
		int once = 1;
		for (int i = 0; i < 103; i++)
			once &= seen[i] == 1;
		CHECK(once);
	}
	loader_free(l);
	dataset_close(&ds);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_epoch_covers_every_record_once);
	struct error err;
	fs_rm_rf(dir, &err);
	return CHECK_DONE();
}
