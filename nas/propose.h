/* propose: the next architectures of a search. Random sampling (distinct,
 * valid, not tried before), and the surrogate search of Regis and Shoemaker
 * (2007, "stochastic RBF"; DYCORS 2013; HORD, Ilievski et al. 2017):
 * candidates made by perturbing the best architectures so far, plus uniform
 * ones, scored by a weighted sum of the spline's predicted accuracy and the
 * distance to everything tried, the weight cycling from exploring to
 * exploiting over the batch. */
#ifndef NAS_PROPOSE_H
#define NAS_PROPOSE_H

#include <stdint.h>

#include "nas/space.h"

/* Is choice vector c an architecture that builds? 1 yes, 0 no, -1 on an
 * error that stops the search (message in err). */
typedef int nas_valid_fn(void *ctx, const int *c, struct error *err);

/* count distinct valid choice vectors (count x ndim into out), none among
 * the ntried of tried (ntried x ndim). Errors: the space has too few
 * architectures left, or nearly every draw is invalid. */
int nas_propose_random(const struct nas_space *s, const int *tried, int ntried, int count,
		       uint64_t seed, nas_valid_fn *valid, void *ctx, int *out, struct error *err);

/* The same from the surrogate fitted to the tried vectors and their
 * accuracies y (higher is better); ntried >= 1. */
int nas_propose_surrogate(const struct nas_space *s, const int *tried, const double *y, int ntried,
			  int count, uint64_t seed, nas_valid_fn *valid, void *ctx, int *out,
			  struct error *err);

#endif
