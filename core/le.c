/* le: little-endian writing and bounds-checked reading. */
#include "core/le.h"

#include <string.h>

void le_put_u32(struct buf *b, uint32_t v)
{
	unsigned char p[4] = {v & 255, (v >> 8) & 255, (v >> 16) & 255, v >> 24};
	buf_add(b, p, 4);
}

void le_put_u64(struct buf *b, uint64_t v)
{
	le_put_u32(b, (uint32_t)v);
	le_put_u32(b, (uint32_t)(v >> 32));
}

int le_read(struct le_reader *r, void *dst, size_t n, const char *what)
{
	if (r->off > r->len || n > r->len - r->off) /* off past len: a length cut shorter */
		return error_set(r->err,
				 "%s: truncated at byte %zu reading %s (file has %zu bytes)",
				 r->path, r->off, what, r->len);
	if (dst)
		memcpy(dst, r->p + r->off, n);
	r->off += n;
	return 0;
}

int le_read_u32(struct le_reader *r, uint32_t *v, const char *what)
{
	unsigned char b[4] = {0};
	if (le_read(r, b, 4, what) < 0)
		return -1;
	*v = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return 0;
}

int le_read_u64(struct le_reader *r, uint64_t *v, const char *what)
{
	uint32_t lo, hi;
	if (le_read_u32(r, &lo, what) < 0 || le_read_u32(r, &hi, what) < 0)
		return -1;
	*v = lo | (uint64_t)hi << 32;
	return 0;
}
