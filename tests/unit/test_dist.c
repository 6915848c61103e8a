/* Unit tests for dist/. Run alone (as `make test` runs every unit test) it
 * checks what one process can; under mpirun (tests/integration/dist.sh runs
 * it with 2, 3 and 4 ranks) it checks the collective parts: the mean, and
 * that AD-PSGD's averaging loses no update and reaches consensus, and that
 * shared batches go to the ranks each once, more to the faster. Rank 0
 * prints the TAP lines; a check fails if it failed on any rank. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "core/mem.h"
#include "dist/dist.h"

static struct dist d;

/* Under ASan: Open MPI's dlopen'ed components leave allocations that
 * LeakSanitizer reports at exit (not dist's); the other checks stay on. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "detect_leaks=0";
}

static void test_algo_names(void)
{
	enum dist_algo a;
	struct error err;
	CHECK_INT(dist_algo_parse("adpsgd", &a, &err), 0);
	CHECK_INT(a, DIST_ADPSGD);
	CHECK_STR(dist_algo_name(DIST_ALLREDUCE), "allreduce");
	CHECK_INT(dist_algo_parse("ring", &a, &err), -1);
	CHECK(strstr(err.msg, "unknown algorithm 'ring' (known: none, allreduce, adpsgd)") != NULL);
	enum dist_batches b;
	CHECK_INT(dist_batches_parse("shared", &b, &err), 0);
	CHECK_INT(b, DIST_BATCHES_SHARED);
	CHECK_STR(dist_batches_name(DIST_BATCHES_FIXED), "fixed");
	CHECK_INT(dist_batches_parse("dynamic", &b, &err), -1);
	CHECK(strstr(err.msg, "unknown way 'dynamic' (known: shared, fixed)") != NULL);
	CHECK_INT(dist_batches_check(DIST_ALLREDUCE, DIST_BATCHES_SHARED, &err), -1);
	CHECK(strstr(err.msg, "use --dist-batches fixed") != NULL);
	CHECK_INT(dist_batches_check(DIST_ADPSGD, DIST_BATCHES_FIXED, &err), 0);
	CHECK_INT(d.batches, DIST_BATCHES_FIXED); /* allreduce's default */
}

/* Shared batches: the ranks take the numbers 0 .. total-1 from the counter,
 * each number once over all ranks, increasing on each; rank 1, slowed by a
 * sleep per batch, takes fewer than rank 0, which does not wait for it. */
static void test_claims_share_the_batches(void)
{
	enum { total = 600 };
	struct dist c;
	struct error err;
	CHECK_INT(dist_init(&c, DIST_ADPSGD, DIST_BATCHES_DEFAULT, &err), 0);
	CHECK_INT(c.batches, DIST_BATCHES_SHARED);
	double *got = mem_calloc(total, sizeof *got);
	uint64_t t, last = 0;
	int increasing = 1, mine = 0;
	while (dist_claim(&c, &t, &err) == 0 && t < total) {
		increasing &= mine == 0 || t > last;
		last = t;
		got[t] += 1;
		mine++;
		if (c.rank == 1)
			usleep(2000); /* a straggler */
	}
	CHECK(increasing);
	CHECK_INT(c.claims, mine + 1); /* and the one past the end */
	CHECK_INT(dist_sum(&c, got, total, &err), 0);
	int once = 0;
	for (int i = 0; i < total; i++)
		once += got[i] == 1;
	CHECK_INT(once, total);
	double counts[2] = {c.rank == 0 ? mine : 0, c.rank == 1 ? mine : 0};
	CHECK_INT(dist_sum(&c, counts, 2, &err), 0);
	if (c.size > 1) {
		printf("#   %d ranks: rank 0 took %.0f batches, the slowed rank 1 %.0f\n", c.size,
		       counts[0], counts[1]);
		CHECK(counts[1] < counts[0]);
	}
	mem_free(got);
	dist_release(&c);
}

/* The ring's bipartite split: every even rank has one or two odd
 * neighbours (none alone), odd ranks none of their own. */
static void test_neighbours(void)
{
	if (d.rank % 2 || d.size == 1) {
		CHECK_INT(d.nneighbours, 0);
		return;
	}
	CHECK(d.nneighbours >= 1 && d.nneighbours <= 2);
	for (int i = 0; i < d.nneighbours; i++) {
		CHECK(d.neighbours[i] % 2 == 1);
		int diff = abs(d.neighbours[i] - d.rank);
		CHECK(diff == 1 || diff == d.size - 1);
	}
}

static void test_mean(void)
{
	enum { n = 1001 };
	float buf[n];
	struct error err;
	for (int i = 0; i < n; i++)
		buf[i] = (float)(d.rank + i);
	CHECK_INT(dist_mean(&d, buf, n, &err), 0);
	for (int i = 0; i < n; i++)
		CHECK_NEAR(buf[i], (d.size - 1) / 2.0 + i, 1e-6);
}

/* Every even rank adds 1 to its model each step, every odd one 2, while
 * AD-PSGD averages, no rank waiting for another. Pairwise averaging keeps
 * the sum of the models and a passive rank adds its update to whatever its
 * window holds, so the mean model must be the start's mean plus the steps'
 * mean update (a lost update or a lost average would change it). A passive
 * (odd) rank runs ahead of its neighbours, so every average into its window
 * pulls it back and none cancel out (with 1 on every rank, 3 ranks start
 * symmetric about rank 1, and a rank 1 that overwrote its window with its
 * own model passed). Then steps without updates,
 * the ranks in step (a barrier each): the averaging alone must bring every
 * model to that mean. */
static void test_adpsgd_loses_nothing(void)
{
	enum { n = 4096, steps = 200, settle = 300 };
	struct dist a;
	struct error err;
	CHECK_INT(dist_init(&a, DIST_ADPSGD, DIST_BATCHES_FIXED, &err), 0);
	float *w = mem_alloc(n * sizeof *w);
	for (int i = 0; i < n; i++)
		w[i] = (float)a.rank + 0.001f * i;
	CHECK_INT(dist_attach(&a, w, n, &err), 0);
	for (int s = 0; s < steps + settle; s++) {
		if (s < steps)
			for (int i = 0; i < n; i++)
				w[i] += 1 + a.rank % 2;
		CHECK_INT(dist_step_end(&a, w, &err), 0);
		if (s >= steps)
			MPI_Barrier(MPI_COMM_WORLD);
	}
	if (a.active && a.size > 1)
		CHECK_INT(a.exchanges, steps + settle);
	float mine = w[7]; /* a passive rank's is its window's, as of its last step */
	CHECK_INT(dist_consensus(&a, w, &err), 0);
	double expect = (a.size - 1) / 2.0 + steps * (1 + (double)(a.size / 2) / a.size);
	for (int i = 0; i < n; i++)
		CHECK_NEAR(w[i], expect + 0.001 * i, 1e-4);
	double spread = fabs(mine - w[7]);
	double worst = spread;
	CHECK_INT(dist_max(&a, &worst, 1, &err), 0);
	if (a.rank == 0)
		printf(
		    "#   %d ranks: mean model %.6f (want %.6f), largest distance of a rank's model "
		    "from it %.2e\n",
		    a.size, w[0], expect, worst);
	CHECK(worst < 1e-3);
	mem_free(w);
	MPI_Win_free(&a.win); /* dist_release would also leave MPI: d still needs it */
	a.pub = NULL;
	dist_release(&a);
}

int main(void)
{
	struct error err;
	if (dist_init(&d, DIST_ALLREDUCE, DIST_BATCHES_DEFAULT, &err) < 0) {
		printf("not ok - dist_init: %s\n", err.msg);
		return 1;
	}
	if (d.rank != 0) /* rank 0 speaks for all */
		if (!freopen("/dev/null", "w", stdout))
			return 1;
	RUN(test_algo_names);
	RUN(test_neighbours);
	RUN(test_mean);
	RUN(test_adpsgd_loses_nothing);
	RUN(test_claims_share_the_batches);
	if (d.size == 1)
		SKIP("collective checks with several ranks",
		     "one process: tests/integration/dist.sh runs this under mpirun");
	double failed = check_tests_failed_;
	dist_sum(&d, &failed, 1, &err);
	if (d.rank == 0 && failed > check_tests_failed_)
		printf("not ok - checks failed on other ranks (%.0f tests)\n",
		       failed - check_tests_failed_);
	dist_release(&d);
	return failed > 0;
}
