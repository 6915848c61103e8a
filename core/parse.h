/* parse: numbers from command-line options, the whole string or nothing, so
 * that "8x", "" and an overflow are errors and not a quiet 8, 0 or LONG_MAX. */
#ifndef CORE_PARSE_H
#define CORE_PARSE_H

#include <stddef.h>

/* A base-10 integer in lo..hi into *out; -1 (and *out untouched) otherwise. */
int parse_long(const char *s, long lo, long hi, long *out);
/* A finite number >= 0 that a float holds (not inf, not 1e39, not nan). */
int parse_float(const char *s, float *out);
/* A number in [lo, hi] (nan never is). */
int parse_float_in(const char *s, float lo, float hi, float *out);

/* The nearest of some candidate words to a word that matched none of them,
 * for "did you mean ...?": init with the word, try each candidate; best is
 * the nearest one within a typo of it (one edit for a word of up to four
 * letters, two beyond; an edit inserts, deletes or changes a letter, or swaps
 * two neighbours; case does not count), or NULL. */
struct parse_near {
	const char *word;
	const char *best;
	int dist;
};
void parse_near_init(struct parse_near *n, const char *word);
void parse_near_try(struct parse_near *n, const char *candidate);
/* The same over a NULL-ended list. */
const char *parse_nearest(const char *word, const char *const *list);
/* ", did you mean 'BEST'?" in buf, for a message; "" when best is NULL. */
const char *parse_did_you_mean(char *buf, size_t size, const char *best);
/* s for a message: bytes outside printable ASCII as \xNN, so that a
 * control character or a non-breaking space in a name shows ('after\x01'
 * would print as 'after'). Returns buf (cut to size). */
const char *parse_visible(char *buf, size_t size, const char *s);

#endif
