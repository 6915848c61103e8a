/* shard.h: small synthetic shards for the unit tests. shard_write() runs a
 * dataset_writer over n records that the test's add() makes; a failed record
 * aborts the writer, so nothing is left behind, and the message is printed. */
#ifndef TESTS_SHARD_H
#define TESTS_SHARD_H

#include <stdio.h>
#include <stdlib.h>

#include "nn/dataset.h"

/* Writes record i with dataset_writer_add or dataset_writer_add_mask. buf is
 * scratch space for it: C x H x W bytes for the image, then H x W for a mask. */
typedef int (*shard_add_fn)(struct dataset_writer *w, const struct dataset_shape *s, uint64_t i,
			    uint8_t *buf, const void *ctx, struct error *err);

static inline int shard_write(const char *path, const struct dataset_shape *s, uint64_t n,
			      shard_add_fn add, const void *ctx)
{
	size_t plane = (size_t)s->height * s->width;
	uint8_t *buf = malloc((s->channels + 1) * plane);
	struct dataset_writer w;
	struct error err = {{0}};
	int rc = !buf ? -1 : dataset_writer_open(&w, path, s, &err);
	for (uint64_t i = 0; i < n && rc == 0; i++)
		if (add(&w, s, i, buf, ctx, &err) < 0) {
			dataset_writer_abort(&w);
			rc = -1;
		}
	if (rc == 0)
		rc = dataset_writer_finish(&w, &err);
	if (rc < 0)
		printf("#   %s: cannot write the shard: %s\n", path,
		       buf ? err.msg : "out of memory");
	free(buf);
	return rc;
}

#endif
