/* manifest: the record of a tile folder: one TSV line per tile, "path bytes
 * sha256 status" (ok, missing, failed), appended as tiles finish and written
 * compactly at the end; later lines win, a torn last line is ignored. It is
 * what lets a rerun skip tiles that are already there and valid. */
#ifndef GEO_MANIFEST_H
#define GEO_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/sha256.h"

enum { M_OK, M_MISSING, M_FAILED };

struct mentry {
	char *path;
	uint64_t bytes;
	char sha[SHA256_HEX_LEN + 1];
	int status;
};

struct manifest {
	struct mentry *e;
	size_t n, cap;
	size_t *slot; /* open-addressing index into e, SIZE_MAX = empty */
	size_t nslot;
};

/* A missing file is an empty manifest. */
int manifest_load(struct manifest *m, const char *path, struct error *err);
struct mentry *manifest_get(struct manifest *m, const char *path);
/* Insert or replace (path copied); -1 when out of memory. */
int manifest_put(struct manifest *m, const char *path, uint64_t bytes, const char *sha, int status);
int manifest_write(const struct manifest *m, const char *path, struct error *err);
void manifest_release(struct manifest *m);
const char *manifest_status_name(int status);

#endif
