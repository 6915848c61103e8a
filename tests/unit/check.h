/* check.h: the unit-test harness. Each test is a function run by RUN();
 * it prints TAP lines ("ok - name", "not ok - name") that tests/run.sh counts.
 * A failed CHECK prints the expression, file and line and the test goes on. */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int check_failures_;
static int check_tests_failed_;

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);   \
			check_failures_++;                                                \
		}                                                                         \
	} while (0)

#define CHECK_INT(a, b)                                                                   \
	do {                                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);                       \
		if (a_ != b_) {                                                           \
			printf("#   %s:%d: %s == %lld, expected %s == %lld\n", __FILE__,      \
			       __LINE__, #a, a_, #b, b_);                                 \
			check_failures_++;                                                \
		}                                                                         \
	} while (0)

#define CHECK_STR(a, b)                                                                   \
	do {                                                                              \
		const char *a_ = (a), *b_ = (b);                                          \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                  \
			printf("#   %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__,        \
			       __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");     \
			check_failures_++;                                                \
		}                                                                         \
	} while (0)

/* |a - b| <= tol * max(1, |b|); NaN never passes. */
#define CHECK_NEAR(a, b, tol)                                                             \
	do {                                                                              \
		double a_ = (double)(a), b_ = (double)(b);                                \
		double s_ = fabs(b_) > 1 ? fabs(b_) : 1;                                  \
		if (!(fabs(a_ - b_) <= (tol) * s_)) {                                     \
			printf("#   %s:%d: %s == %.9g, expected %.9g (tol %g)\n", __FILE__,   \
			       __LINE__, #a, a_, b_, (double)(tol));                      \
			check_failures_++;                                                \
		}                                                                         \
	} while (0)

/* A seeded stream of pseudo-random numbers for tests that damage inputs at
 * random (xorshift64, Marsaglia 2003): the same seed, the same damages. */
static inline uint64_t check_rand(uint64_t *x)
{
	*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
	return *x;
}

/* A file may define CHECK_SELECTED(name) before including this one to run
 * only some tests (it prints their skip lines itself). */
#ifndef CHECK_SELECTED
#define CHECK_SELECTED(name) 1
#endif

#define RUN(fn)                                                                           \
	do {                                                                              \
		if (!CHECK_SELECTED(#fn))                                                 \
			break;                                                            \
		int before_ = check_failures_;                                            \
		fflush(stdout);                                                           \
		fn();                                                                     \
		int bad_ = check_failures_ != before_;                                    \
		check_tests_failed_ += bad_;                                              \
		printf("%s - %s\n", bad_ ? "not ok" : "ok", #fn);                         \
		fflush(stdout);                                                           \
	} while (0)

#define SKIP(name, why) printf("ok - %s # SKIP %s\n", name, why)

/* Return this from main(). */
#define CHECK_DONE() (check_tests_failed_ ? 1 : 0)

#endif
