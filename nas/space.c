/* space: parsing and rendering of choice-slot spaces, sampling, and the
 * cost of an architecture (see space.h). */
#include "nas/space.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "nn/backend.h"
#include "nn/model.h"
#include "nn/net.h"

void nas_space_release(struct nas_space *s)
{
	mem_free(s->text);
	for (int i = 0; i < s->ndim; i++)
		for (int j = 0; j < s->nchoice[i]; j++)
			mem_free(s->choice[i][j]);
	for (int i = 0; i <= s->ndim && i <= NAS_MAX_DIMS; i++)
		mem_free(s->lit[i]);
	memset(s, 0, sizeof *s);
}

/* Split the inside of one slot "a|b|c" (len bytes) into dimension d. */
static int parse_slot(struct nas_space *s, const char *p, size_t len, struct error *err)
{
	int d = s->ndim;
	const char *end = p + len;
	s->nchoice[d] = 0;
	for (;;) {
		const char *bar = memchr(p, '|', (size_t)(end - p));
		const char *stop = bar ? bar : end;
		if (stop == p)
			return error_set(err, "slot %d '{%.*s}' has an empty choice", d + 1,
					 (int)len, end - len);
		if (s->nchoice[d] == NAS_MAX_CHOICES)
			return error_set(err, "slot %d has more than %d choices", d + 1,
					 NAS_MAX_CHOICES);
		char *c = mem_strndup(p, (size_t)(stop - p));
		if (!c)
			return error_set(err, "out of memory");
		for (int j = 0; j < s->nchoice[d]; j++)
			if (strcmp(s->choice[d][j], c) == 0) {
				error_set(err, "slot %d '{%.*s}' has '%s' twice", d + 1, (int)len,
					  end - len, c);
				mem_free(c);
				return -1;
			}
		s->choice[d][s->nchoice[d]++] = c;
		if (!bar)
			return 0;
		p = bar + 1;
	}
}

static int space_parse(struct nas_space *s, const char *text, struct error *err)
{
	if (!(s->text = mem_strdup(text)))
		return error_set(err, "out of memory");
	const char *p = text;
	for (;;) {
		const char *open = strchr(p, '{'), *close = strchr(p, '}');
		if (close && (!open || close < open))
			return error_set(err, "a '}' without its '{' at offset %d",
					 (int)(close - text));
		if (!open)
			break;
		if (s->ndim == NAS_MAX_DIMS)
			return error_set(err, "more than %d slots", NAS_MAX_DIMS);
		const char *nested = strchr(open + 1, '{');
		if (!close || (nested && nested < close))
			return error_set(err, "the '{' at offset %d is not closed by a '}'",
					 (int)(open - text));
		if (!(s->lit[s->ndim] = mem_strndup(p, (size_t)(open - p))))
			return error_set(err, "out of memory");
		if (parse_slot(s, open + 1, (size_t)(close - open - 1), err) < 0) {
			mem_free(s->lit[s->ndim]);
			s->lit[s->ndim] = NULL;
			for (int j = 0; j < s->nchoice[s->ndim]; j++)
				mem_free(s->choice[s->ndim][j]);
			return -1;
		}
		s->ndim++;
		p = close + 1;
	}
	if (s->ndim == 0)
		return error_set(err, "no {a|b|...} choice slot (a space of one architecture)");
	if (!(s->lit[s->ndim] = mem_strdup(p)))
		return error_set(err, "out of memory");
	return 0;
}

int nas_space_parse(struct nas_space *s, const char *text, struct error *err)
{
	memset(s, 0, sizeof *s);
	if (space_parse(s, text, err) < 0) {
		error_prefix(err, "search space '%s': ", text);
		nas_space_release(s);
		return -1;
	}
	return 0;
}

uint64_t nas_space_size(const struct nas_space *s)
{
	uint64_t n = 1;
	for (int i = 0; i < s->ndim; i++) {
		if (n > (UINT64_C(1) << 63) / (uint64_t)s->nchoice[i])
			return UINT64_C(1) << 63;
		n *= (uint64_t)s->nchoice[i];
	}
	return n;
}

char *nas_space_render(const struct nas_space *s, const int *c)
{
	struct buf b = BUF_INIT;
	for (int i = 0; i < s->ndim; i++) {
		buf_adds(&b, s->lit[i]);
		buf_adds(&b, s->choice[i][c[i]]);
	}
	buf_adds(&b, s->lit[s->ndim]);
	if (b.failed) {
		buf_release(&b);
		return NULL;
	}
	return buf_detach(&b);
}

void nas_space_encode(const struct nas_space *s, const int *c, double *x)
{
	for (int i = 0; i < s->ndim; i++)
		x[i] = s->nchoice[i] > 1 ? (double)c[i] / (s->nchoice[i] - 1) : 0;
}

char *nas_choice_format(const struct nas_space *s, const int *c)
{
	struct buf b = BUF_INIT;
	for (int i = 0; i < s->ndim; i++)
		buf_addf(&b, i ? ",%d" : "%d", c[i]);
	if (b.failed) {
		buf_release(&b);
		return NULL;
	}
	return buf_detach(&b);
}

int nas_choice_parse(const struct nas_space *s, const char *text, int *c, struct error *err)
{
	const char *p = text;
	for (int i = 0; i < s->ndim; i++) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 0 || v >= s->nchoice[i])
			return error_set(
			    err, "choices '%s': item %d is not an index in 0..%d of slot %d", text,
			    i + 1, s->nchoice[i] - 1, i + 1);
		c[i] = (int)v;
		p = end;
		if (i + 1 < s->ndim && *p++ != ',')
			return error_set(err, "choices '%s': %d comma-separated indexes expected",
					 text, s->ndim);
	}
	if (*p)
		return error_set(err, "choices '%s': %d indexes expected, more given", text,
				 s->ndim);
	return 0;
}

/* splitmix64 (Steele, Lea and Flood 2014): one 64-bit state, good enough
 * for drawing architectures and candidates. */
uint64_t nas_rng_next(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

double nas_rng_uniform(uint64_t *state)
{
	return (double)(nas_rng_next(state) >> 11) * 0x1.0p-53;
}

void nas_space_sample(const struct nas_space *s, uint64_t *rng, int *c)
{
	for (int i = 0; i < s->ndim; i++)
		c[i] = (int)(nas_rng_next(rng) % (uint64_t)s->nchoice[i]);
}

int nas_arch_measure(const char *arch, int c, int h, int w, int classes, struct nas_arch_cost *cost,
		     struct error *err)
{
	struct nn_net net;
	memset(cost, 0, sizeof *cost);
	if (nn_model_build(&net, nn_backend_cpu(), arch, c, h, w, classes, 1, err) < 0)
		return -1;
	cost->canonical = mem_strdup(net.arch);
	cost->params = nn_net_param_count(&net);
	cost->mflops = 2 * nn_net_macs(&net) / 1e6;
	nn_net_release(&net);
	if (!cost->canonical)
		return error_set(err, "out of memory");
	return 0;
}
