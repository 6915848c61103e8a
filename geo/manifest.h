/* manifest: the record of a tile folder: one TSV line per tile, "path bytes
 * sha256 status" (ok, missing, failed), appended as tiles finish and written
 * compactly at the end; later lines win, a torn last line is ignored. A
 * "# source\tSRC" line names where the tiles came from (a URL template or a
 * COG path). It is what lets a rerun skip tiles that are already there and
 * valid. */
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
	char *source; /* the recorded tile source; NULL: none (an earlier cairn-fetch) */
};

/* A missing file is an empty manifest. A folder in its place is
 * MANIFEST_EBADINPUT with a message that says so (the user's to move). */
#define MANIFEST_EBADINPUT (-2)
int manifest_load(struct manifest *m, const char *path, struct error *err);
struct mentry *manifest_get(struct manifest *m, const char *path);
/* Insert or replace (path copied); -1 when out of memory. */
int manifest_put(struct manifest *m, const char *path, uint64_t bytes, const char *sha, int status);
/* Record the tile source (copied); -1 when out of memory. */
int manifest_set_source(struct manifest *m, const char *source);
/* Drop every tile entry (the source stays). */
void manifest_clear(struct manifest *m);
int manifest_write(const struct manifest *m, const char *path, struct error *err);
void manifest_release(struct manifest *m);
const char *manifest_status_name(int status);

#endif
