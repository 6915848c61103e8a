/* space: a NAS search space written as an architecture spec (nn/model.h)
 * with choice slots, e.g. "cnn:widths={8|16|32}-{16|32|64},convs={1|2}".
 * Each {a|b|c} slot is one dimension; an architecture is one choice index
 * per slot, and renders back to a spec by putting the choices in. Choices
 * are ordered as written: the surrogate (nas/spline.h) treats index i of n
 * as the coordinate i / (n - 1), so write numbers in increasing order. */
#ifndef NAS_SPACE_H
#define NAS_SPACE_H

#include <stdint.h>

#include "core/error.h"

#define NAS_MAX_DIMS 32
#define NAS_MAX_CHOICES 32

struct nas_space {
	char *text; /* as given */
	int ndim;
	int nchoice[NAS_MAX_DIMS];
	char *choice[NAS_MAX_DIMS][NAS_MAX_CHOICES];
	char *lit[NAS_MAX_DIMS + 1]; /* text before slot i; lit[ndim] after the last */
};

/* Parse a space; errors name the space and the slot ("slot 2 '{8||16}' has
 * an empty choice"). A space needs at least one slot. */
int nas_space_parse(struct nas_space *s, const char *text, struct error *err);
void nas_space_release(struct nas_space *s);

/* The number of architectures (choices multiplied; saturates at 2^63). */
uint64_t nas_space_size(const struct nas_space *s);

/* The spec of choice vector c (ndim indexes), NULL when out of memory. */
char *nas_space_render(const struct nas_space *s, const int *c);

/* Coordinates in [0,1]^ndim: index / (choices - 1), 0 for a single choice. */
void nas_space_encode(const struct nas_space *s, const int *c, double *x);

/* "0,2,1" <-> choice vector; parse checks the count and each range. */
char *nas_choice_format(const struct nas_space *s, const int *c);
int nas_choice_parse(const struct nas_space *s, const char *text, int *c, struct error *err);

/* Uniform choice vector from a splitmix64 stream. */
void nas_space_sample(const struct nas_space *s, uint64_t *rng, int *c);
uint64_t nas_rng_next(uint64_t *state);
double nas_rng_uniform(uint64_t *state); /* [0, 1) */

/* What an architecture costs on inputs c x h x w with `classes` outputs:
 * builds it (nn_model_build on the CPU backend), which is also the check
 * that the spec is valid ("resnet: groups=3 does not divide ..."). canonical
 * gets the full spec (mem_free it), the key that names an architecture. */
struct nas_arch_cost {
	char *canonical;
	long long params;
	double mflops; /* forward, per sample */
};
int nas_arch_measure(const char *arch, int c, int h, int w, int classes, struct nas_arch_cost *cost,
		     struct error *err);

#endif
