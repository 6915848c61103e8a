/* parse: numbers from command-line options, the whole string or nothing, so
 * that "8x", "" and an overflow are errors and not a quiet 8, 0 or LONG_MAX. */
#ifndef CORE_PARSE_H
#define CORE_PARSE_H

/* A base-10 integer in lo..hi into *out; -1 (and *out untouched) otherwise. */
int parse_long(const char *s, long lo, long hi, long *out);
/* A finite number >= 0 that a float holds (not inf, not 1e39, not nan). */
int parse_float(const char *s, float *out);

#endif
