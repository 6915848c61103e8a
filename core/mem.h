/* mem: the allocator every library uses, with a test hook that makes the
 * n-th allocation from now fail, so tests can prove that out-of-memory
 * paths return errors instead of crashing. */
#ifndef CORE_MEM_H
#define CORE_MEM_H

#include <stddef.h>

void *mem_alloc(size_t n);
void *mem_calloc(size_t count, size_t size);
void *mem_realloc(void *p, size_t n);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);
void mem_free(void *p);

/* Test hook: allocation number n (0 = the next one) and every later one fail.
 * n < 0 turns the hook off. Not thread-safe; for single-threaded tests. */
void mem_fail_after(long n);

#endif
