#include "core/parse.h"

#include <errno.h>
#include <float.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int parse_float_in(const char *s, float lo, float hi, float *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || !*s || *end || !(v >= lo && v <= hi)) /* nan, inf, or inf as a float */
		return -1;
	*out = (float)v;
	return 0;
}

int parse_float(const char *s, float *out)
{
	return parse_float_in(s, 0, FLT_MAX, out);
}

enum { NEAR_MAX = 64 }; /* longer words get no suggestion */

/* Edits from a to b (optimal string alignment), case aside. */
static int edits(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);
	int d[NEAR_MAX + 1][NEAR_MAX + 1];
	for (size_t i = 0; i <= n; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= m; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= n; i++) {
		for (size_t j = 1; j <= m; j++) {
			int ca = tolower((unsigned char)a[i - 1]),
			    cb = tolower((unsigned char)b[j - 1]);
			int best = d[i - 1][j - 1] + (ca != cb);
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
			    cb == tolower((unsigned char)a[i - 2]) && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[n][m];
}

void parse_near_init(struct parse_near *n, const char *word)
{
	n->word = word;
	n->best = NULL;
	size_t len = strlen(word);
	/* a typo: at most 1 edit in a short word, 2 in a longer one, and
	 * fewer edits than letters ("b" is no typo of "a") */
	n->dist = len > NEAR_MAX ? -1 : len <= 4 ? (len > 1 ? 1 : 0) : 2;
}

void parse_near_try(struct parse_near *n, const char *candidate)
{
	if (strlen(candidate) > NEAR_MAX || n->dist < 0)
		return;
	int d = edits(n->word, candidate);
	if (d <= n->dist && (!n->best || d < n->dist)) {
		n->best = candidate;
		n->dist = d;
	}
}

const char *parse_nearest(const char *word, const char *const *list)
{
	struct parse_near n;
	parse_near_init(&n, word);
	for (int i = 0; list[i]; i++)
		parse_near_try(&n, list[i]);
	return n.best;
}

const char *parse_did_you_mean(char *buf, size_t size, const char *best)
{
	if (!best)
		return "";
	snprintf(buf, size, ", did you mean '%s'?", best);
	return buf;
}

const char *parse_visible(char *buf, size_t size, const char *s)
{
	size_t n = 0;
	for (; *s && n + 5 <= size; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x20 && c < 0x7f)
			buf[n++] = (char)c;
		else
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
	}
	if (size)
		buf[n < size ? n : size - 1] = '\0';
	return buf;
}
