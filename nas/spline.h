/* spline: the surrogate of the architecture search, a polyharmonic (cubic
 * radial basis) spline with a linear tail fitted to the accuracies seen so
 * far, as in Regis and Shoemaker's RBF search and HORD (Ilievski et al.
 * 2017):
 *   s(x) = sum_i lambda_i |x - x_i|^3 + c_0 + sum_k c_k x_k
 * with sum_i lambda_i = 0 and sum_i lambda_i x_ik = 0 (Wahba 1990, ch. 2).
 * It interpolates (up to `ridge`) and reproduces linear functions exactly. */
#ifndef NAS_SPLINE_H
#define NAS_SPLINE_H

#include "core/error.h"

struct nas_spline {
	int n, d;
	double *x;	/* n x d centres */
	double *lambda; /* n */
	double *c;	/* 1 + d tail coefficients (0 for a dimension left out) */
};

/* Fit to n points x (n x d, row-major) with values y. ridge >= 0 is added to
 * the kernel's diagonal (smoothing noisy values; 0 interpolates). A tail
 * dimension that does not vary over the points, or too few points for a
 * linear tail (n < d + 1), leaves it out; duplicate points need ridge > 0. */
int nas_spline_fit(struct nas_spline *s, const double *x, const double *y, int n, int d,
		   double ridge, struct error *err);
double nas_spline_eval(const struct nas_spline *s, const double *x);
void nas_spline_release(struct nas_spline *s);

#endif
