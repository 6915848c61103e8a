/* spline: fitting and evaluating the cubic polyharmonic spline (spline.h). */
#include "nas/spline.h"

#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "core/mem.h"

static double kernel(const double *a, const double *b, int d)
{
	double r2 = 0;
	for (int k = 0; k < d; k++)
		r2 += (a[k] - b[k]) * (a[k] - b[k]);
	return r2 * sqrt(r2); /* phi(r) = r^3 */
}

void nas_spline_release(struct nas_spline *s)
{
	mem_free(s->x);
	mem_free(s->lambda);
	mem_free(s->c);
	memset(s, 0, sizeof *s);
}

/* Solve [Phi + ridge I, P; P^T, 0] [lambda; c] = [y; 0] with P = [1, x_k for
 * the k in use]: symmetric indefinite, so LAPACK's Bunch-Kaufman dsysv. */
static int solve(struct nas_spline *s, const double *y, const int *use, int m, double ridge)
{
	int n = s->n, d = s->d, size = n + m;
	double *a = mem_calloc((size_t)size * size, sizeof *a);
	double *rhs = mem_calloc((size_t)size, sizeof *rhs);
	lapack_int *piv = mem_calloc((size_t)size, sizeof *piv);
	int rc = -2;
	if (!a || !rhs || !piv)
		goto out;
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < n; j++)
			a[(size_t)i * size + j] =
			    kernel(s->x + (size_t)i * d, s->x + (size_t)j * d, d);
		a[(size_t)i * size + i] += ridge;
		for (int t = 0; t < m; t++) {
			double p = use[t] < 0 ? 1 : s->x[(size_t)i * d + use[t]];
			a[(size_t)i * size + n + t] = p;
			a[(size_t)(n + t) * size + i] = p;
		}
		rhs[i] = y[i];
	}
	/* dsysv in its two halves, the reciprocal condition number between: a
	 * singular system (a tail column that is a combination of the others, a
	 * point twice without a ridge) seldom meets a pivot of exactly 0, and
	 * solving it gives coefficients of 1e16 that interpolate nothing. The
	 * systems of a search have rcond above 1e-9 (900 points on a 32 x 32
	 * grid). */
	double anorm = LAPACKE_dlansy(LAPACK_ROW_MAJOR, '1', 'U', size, a, size), rcond = 0;
	rc = -1;
	if (LAPACKE_dsytrf(LAPACK_ROW_MAJOR, 'U', size, a, size, piv) == 0 &&
	    LAPACKE_dsycon(LAPACK_ROW_MAJOR, 'U', size, a, size, piv, anorm, &rcond) == 0 &&
	    rcond > 1e-13 &&
	    LAPACKE_dsytrs(LAPACK_ROW_MAJOR, 'U', size, 1, a, size, piv, rhs, 1) == 0)
		rc = 0;
	if (rc == 0) {
		for (int i = 0; i < n; i++)
			rc = isfinite(rhs[i]) ? rc : -1;
		memcpy(s->lambda, rhs, (size_t)n * sizeof *rhs);
		memset(s->c, 0, (size_t)(d + 1) * sizeof *s->c);
		for (int t = 0; t < m; t++)
			s->c[use[t] + 1] = rhs[n + t];
	}
out:
	mem_free(a);
	mem_free(rhs);
	mem_free(piv);
	return rc;
}

int nas_spline_fit(struct nas_spline *s, const double *x, const double *y, int n, int d,
		   double ridge, struct error *err)
{
	memset(s, 0, sizeof *s);
	if (n < 1 || d < 1)
		return error_set(err, "surrogate: %d points of %d dimensions", n, d);
	s->n = n;
	s->d = d;
	s->x = mem_alloc((size_t)n * d * sizeof *s->x);
	s->lambda = mem_alloc((size_t)n * sizeof *s->lambda);
	s->c = mem_alloc((size_t)(d + 1) * sizeof *s->c);
	int *use = mem_alloc((size_t)(d + 1) * sizeof *use);
	if (!s->x || !s->lambda || !s->c || !use) {
		mem_free(use);
		nas_spline_release(s);
		return error_set(err, "surrogate: out of memory");
	}
	memcpy(s->x, x, (size_t)n * d * sizeof *x);
	/* The tail: the constant, and each dimension that varies (a constant
	 * column would make the system singular). */
	int m = 0;
	use[m++] = -1;
	for (int k = 0; k < d && n >= d + 1; k++) {
		int varies = 0;
		for (int i = 1; i < n && !varies; i++)
			varies = x[(size_t)i * d + k] != x[k];
		if (varies)
			use[m++] = k;
	}
	/* Linear dependence among the tail's columns (two dimensions that move
	 * together) is singular too: fall back to the constant tail. */
	int rc = solve(s, y, use, m, ridge);
	if (rc == -1 && m > 1)
		rc = solve(s, y, use, 1, ridge);
	mem_free(use);
	if (rc < 0) {
		nas_spline_release(s);
		if (rc == -2)
			return error_set(err, "surrogate: out of memory");
		return error_set(err,
				 "surrogate: the spline system of %d points is singular (the same "
				 "point twice? give a ridge > 0)",
				 n);
	}
	return 0;
}

double nas_spline_eval(const struct nas_spline *s, const double *x)
{
	double v = s->c[0];
	for (int k = 0; k < s->d; k++)
		v += s->c[k + 1] * x[k];
	for (int i = 0; i < s->n; i++)
		v += s->lambda[i] * kernel(x, s->x + (size_t)i * s->d, s->d);
	return v;
}
