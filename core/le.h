/* le: little-endian numbers in binary files (checkpoints, training states):
 * appended to a buf, and read back through a bounds-checked reader whose
 * errors name the file, the byte offset and what was being read. */
#ifndef CORE_LE_H
#define CORE_LE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

void le_put_u32(struct buf *b, uint32_t v);
void le_put_u64(struct buf *b, uint64_t v);

struct le_reader {
	const char *path; /* for messages */
	const unsigned char *p;
	size_t len, off;
	struct error *err;
};

/* n bytes into dst (NULL: skipped), or -1: "PATH: truncated at byte N
 * reading WHAT (file has L bytes)". */
int le_read(struct le_reader *r, void *dst, size_t n, const char *what);
int le_read_u32(struct le_reader *r, uint32_t *v, const char *what);
int le_read_u64(struct le_reader *r, uint64_t *v, const char *what);

#endif
