/* buf: a growable byte string, always NUL-terminated. Appends never fail
 * loudly: an allocation failure sets `failed`, later appends do nothing, and
 * the caller checks `failed` once when the string is complete. */
#ifndef CORE_BUF_H
#define CORE_BUF_H

#include <stddef.h>

struct buf {
	char *s; /* NULL until the first append; buf_str() never returns NULL */
	size_t len;
	size_t cap;
	int failed;
};

#define BUF_INIT {NULL, 0, 0, 0}

void buf_add(struct buf *b, const void *data, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *buf_str(const struct buf *b);
/* Is w one of the words of b, a list separated by single spaces ("12_0 15")? */
int buf_has_word(const struct buf *b, const char *w);
void buf_reset(struct buf *b); /* len = 0, memory kept */
/* Hand the string to the caller (free with mem_free); the buf is empty after. */
char *buf_detach(struct buf *b);
void buf_release(struct buf *b);

#endif
