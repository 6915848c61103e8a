/* Unit tests for nas/: spaces, the spline surrogate, proposals, trial files,
 * and the NASTransfer statistics. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "nas/propose.h"
#include "nas/space.h"
#include "nas/spline.h"
#include "nas/transfer.h"
#include "nas/trial.h"

static char tmpdir[] = "/tmp/cairn-nas.XXXXXX";

static void test_space_parse_and_render(void)
{
	struct nas_space s;
	struct error err;
	CHECK_INT(nas_space_parse(&s, "cnn:widths={8|16|32}-{16|64},convs={1|2},fc=64", &err), 0);
	CHECK_INT(s.ndim, 3);
	CHECK_INT(s.nchoice[0], 3);
	CHECK_INT(s.nchoice[1], 2);
	CHECK_INT(nas_space_size(&s), 12);
	int c[3] = {2, 0, 1};
	char *spec = nas_space_render(&s, c);
	CHECK_STR(spec, "cnn:widths=32-16,convs=2,fc=64");
	mem_free(spec);
	double x[3];
	nas_space_encode(&s, c, x);
	CHECK_NEAR(x[0], 1.0, 0);
	CHECK_NEAR(x[1], 0.0, 0);
	CHECK_NEAR(x[2], 1.0, 0);
	char *text = nas_choice_format(&s, c);
	CHECK_STR(text, "2,0,1");
	int back[3];
	CHECK_INT(nas_choice_parse(&s, text, back, &err), 0);
	CHECK(back[0] == 2 && back[1] == 0 && back[2] == 1);
	mem_free(text);
	CHECK_INT(nas_choice_parse(&s, "2,2,1", back, &err), -1);
	CHECK(strstr(err.msg, "item 2 is not an index in 0..1") != NULL);
	CHECK_INT(nas_choice_parse(&s, "2,0", back, &err), -1);
	CHECK_INT(nas_choice_parse(&s, "2,0,1,0", back, &err), -1);
	CHECK_INT(nas_choice_parse(&s, "2,x,1", back, &err), -1);
	nas_space_release(&s);
}

static void test_space_errors_name_the_slot(void)
{
	static const struct {
		const char *text, *msg;
	} bad[] = {
	    {"cnn:widths=8-16", "no {a|b|...} choice slot"},
	    {"cnn:widths={8||16}", "slot 1 '{8||16}' has an empty choice"},
	    {"cnn:widths={8|16}-{}", "slot 2 '{}' has an empty choice"},
	    {"cnn:widths={8|16", "the '{' at offset 11 is not closed"},
	    {"cnn:widths={8|{16}}", "is not closed by a '}'"},
	    {"cnn:widths=8}", "a '}' without its '{'"},
	    {"cnn:widths={8|16|8}", "has '8' twice"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct nas_space s;
		struct error err;
		CHECK_INT(nas_space_parse(&s, bad[i].text, &err), -1);
		if (!strstr(err.msg, bad[i].msg) || !strstr(err.msg, bad[i].text))
			printf("#   '%s': got '%s'\n", bad[i].text, err.msg);
		CHECK(strstr(err.msg, bad[i].msg) != NULL);
		CHECK(strstr(err.msg, bad[i].text) != NULL);
	}
}

static void test_space_out_of_memory(void)
{
	for (long n = 0; n < 40; n++) {
		struct nas_space s;
		struct error err;
		mem_fail_after(n);
		int rc = nas_space_parse(&s, "cnn:widths={8|16}-{16|32},convs={1|2}", &err);
		mem_fail_after(-1);
		if (rc == 0) {
			CHECK_INT(s.ndim, 3);
			nas_space_release(&s);
		} else {
			CHECK(strstr(err.msg, "out of memory") != NULL);
		}
	}
}

static void test_arch_measure_checks_validity(void)
{
	struct nas_arch_cost cost;
	struct error err;
	CHECK_INT(nas_arch_measure("cnn:widths=8-16,convs=1,fc=0", 1, 28, 28, 10, &cost, &err), 0);
	CHECK_STR(cost.canonical, "cnn:widths=8-16,convs=1,fc=0,drop=0.25");
	/* conv 1->8 (72 + BN 16), conv 8->16 (1152 + 32), linear 16*7*7*10 + 10 */
	CHECK_INT(cost.params, 72 + 16 + 1152 + 32 + 7840 + 10);
	CHECK(cost.mflops > 0);
	mem_free(cost.canonical);
	CHECK_INT(nas_arch_measure("cnn:widths=8-16-32-64-128,convs=1", 1, 28, 28, 10, &cost, &err),
		  -1);
	CHECK_INT(nas_arch_measure("vgg:depth=3", 1, 28, 28, 10, &cost, &err), -1);
	CHECK(strstr(err.msg, "vgg") != NULL);
}

/* y at point i of an n x d row-major array */
static void test_spline_interpolates_and_keeps_linear(void)
{
	enum { n = 12, d = 3 };
	double x[n * d], y[n];
	uint64_t rng = 7;
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < d; k++)
			x[i * d + k] = nas_rng_uniform(&rng);
		y[i] = sin(3 * x[i * d]) + x[i * d + 1] * x[i * d + 2];
	}
	struct nas_spline s;
	struct error err;
	CHECK_INT(nas_spline_fit(&s, x, y, n, d, 0, &err), 0);
	for (int i = 0; i < n; i++)
		CHECK_NEAR(nas_spline_eval(&s, x + i * d), y[i], 1e-9);
	nas_spline_release(&s);
	/* A linear function is reproduced everywhere, not only at the points. */
	for (int i = 0; i < n; i++)
		y[i] = 0.5 + 2 * x[i * d] - x[i * d + 1] + 0.25 * x[i * d + 2];
	CHECK_INT(nas_spline_fit(&s, x, y, n, d, 0, &err), 0);
	double at[d] = {0.3, 0.9, 0.1};
	CHECK_NEAR(nas_spline_eval(&s, at), 0.5 + 0.6 - 0.9 + 0.025, 1e-9);
	nas_spline_release(&s);
}

static void test_spline_degenerate_points(void)
{
	struct nas_spline s;
	struct error err;
	/* The second coordinate never varies: left out of the tail, not singular. */
	double x[] = {0, 0.5, 0.5, 0.5, 1, 0.5, 0.25, 0.5};
	double y[] = {1, 2, 3, 2.5};
	CHECK_INT(nas_spline_fit(&s, x, y, 4, 2, 0, &err), 0);
	for (int i = 0; i < 4; i++)
		CHECK_NEAR(nas_spline_eval(&s, x + 2 * i), y[i], 1e-9);
	nas_spline_release(&s);
	/* The first two coordinates are equal at every point: that tail is
	 * singular, though LAPACK meets no pivot of exactly 0. The fit falls
	 * back to the constant tail and interpolates, not 1e15 off. */
	double xl[6][4] = {{0, 0, 0.5, 1}, {1, 1, 0, 0.5}, {0.5, 0.5, 1, 0},
			   {0, 0, 1, 1},   {1, 1, 0.5, 0}, {0.5, 0.5, 0, 0.5}};
	double yl[] = {0.5, 0.7, 0.6, 0.55, 0.8, 0.65};
	CHECK_INT(nas_spline_fit(&s, xl[0], yl, 6, 4, 1e-6, &err), 0);
	for (int i = 0; i < 6; i++)
		CHECK_NEAR(nas_spline_eval(&s, xl[i]), yl[i], 1e-4);
	double between[] = {0.25, 0.75, 0.5, 0.5};
	CHECK(fabs(nas_spline_eval(&s, between)) < 2);
	nas_spline_release(&s);
	/* One point: a constant. */
	CHECK_INT(nas_spline_fit(&s, x, y, 1, 2, 0, &err), 0);
	CHECK_NEAR(nas_spline_eval(&s, x + 4), 1, 1e-12);
	nas_spline_release(&s);
	/* The same point twice with two values: singular without a ridge. */
	double xd[] = {0.2, 0.2, 0.2, 0.2, 0.9, 0.1};
	double yd[] = {1, 2, 0};
	CHECK_INT(nas_spline_fit(&s, xd, yd, 3, 2, 0, &err), -1);
	CHECK(strstr(err.msg, "singular") != NULL);
	CHECK_INT(nas_spline_fit(&s, xd, yd, 3, 2, 1e-3, &err), 0);
	CHECK(fabs(nas_spline_eval(&s, xd) - 1.5) < 0.01);
	nas_spline_release(&s);
}

struct reject_ctx {
	const struct nas_space *s;
	int calls;
};

/* Every architecture whose first choice is 0 "does not build". */
static int reject_first_zero(void *ctx, const int *c, struct error *err)
{
	(void)err;
	((struct reject_ctx *)ctx)->calls++;
	return c[0] != 0;
}

static int accept_all(void *ctx, const int *c, struct error *err)
{
	(void)ctx, (void)c, (void)err;
	return 1;
}

static void test_random_proposals(void)
{
	struct nas_space s;
	struct error err;
	CHECK_INT(nas_space_parse(&s, "x:a={0|1|2},b={0|1|2|3}", &err), 0);
	struct reject_ctx ctx = {&s, 0};
	int tried[] = {1, 1, 2, 3};
	int out[8 * 2];
	CHECK_INT(nas_propose_random(&s, tried, 2, 6, 5, reject_first_zero, &ctx, out, &err), 0);
	for (int i = 0; i < 6; i++) {
		CHECK(out[2 * i] != 0);
		CHECK(!(out[2 * i] == 1 && out[2 * i + 1] == 1));
		CHECK(!(out[2 * i] == 2 && out[2 * i + 1] == 3));
		for (int j = 0; j < i; j++)
			CHECK(out[2 * i] != out[2 * j] || out[2 * i + 1] != out[2 * j + 1]);
	}
	/* 8 valid architectures, 2 tried: 6 is all that is left. */
	CHECK_INT(nas_propose_random(&s, tried, 2, 7, 5, reject_first_zero, &ctx, out, &err), -1);
	CHECK(strstr(err.msg, "7 of 7") != NULL || strstr(err.msg, "6 of 7") != NULL);
	CHECK_INT(nas_propose_random(&s, tried, 2, 11, 5, reject_first_zero, &ctx, out, &err), -1);
	CHECK(strstr(err.msg, "the space has 12 architectures, 2 tried") != NULL);
	/* The surrogate says so before it searches, counting each tried
	 * architecture once (1,1 trained twice). */
	int tried3[] = {1, 1, 2, 3, 1, 1}, all[10 * 2];
	double y3[] = {0.5, 0.6, 0.7};
	CHECK_INT(nas_propose_surrogate(&s, tried3, y3, 3, 11, 5, accept_all, NULL, all, &err), -1);
	CHECK(strstr(err.msg,
		     "the space has 12 architectures, 2 tried: 11 more cannot be proposed") !=
	      NULL);
	CHECK_INT(nas_propose_surrogate(&s, tried3, y3, 3, 10, 5, accept_all, NULL, all, &err), 0);
	/* Same seed, same proposals. */
	int again[6 * 2];
	CHECK_INT(nas_propose_random(&s, tried, 2, 6, 5, reject_first_zero, &ctx, again, &err), 0);
	CHECK(memcmp(out, again, sizeof again) == 0);
	nas_space_release(&s);
}

/* A smooth objective over 5 slots of 6 choices, best at (4, 1, 5, 2, 3). */
static double objective(const int *c)
{
	static const int best[5] = {4, 1, 5, 2, 3};
	double v = 1;
	for (int k = 0; k < 5; k++)
		v -= 0.02 * (c[k] - best[k]) * (c[k] - best[k]);
	return v;
}

/* The surrogate search against random search, the same number of trainings
 * (8 random, then 6 rounds of 4), over 8 seeds: it must find better
 * architectures on average, and propose only new ones. */
static void test_surrogate_beats_random(void)
{
	struct nas_space s;
	struct error err;
	CHECK_INT(nas_space_parse(&s,
				  "x:a={0|1|2|3|4|5},b={0|1|2|3|4|5},c={0|1|2|3|4|5},"
				  "d={0|1|2|3|4|5},e={0|1|2|3|4|5}",
				  &err),
		  0);
	enum { init = 8, rounds = 6, batch = 4, total = init + rounds * batch };
	double sum_surrogate = 0, sum_random = 0;
	for (uint64_t seed = 1; seed <= 8; seed++) {
		int c[total * 5];
		double y[total];
		CHECK_INT(nas_propose_random(&s, NULL, 0, init, seed, accept_all, NULL, c, &err),
			  0);
		for (int i = 0; i < init; i++)
			y[i] = objective(c + 5 * i);
		int n = init;
		for (int r = 0; r < rounds; r++) {
			CHECK_INT(nas_propose_surrogate(&s, c, y, n, batch, seed * 100 + r,
							accept_all, NULL, c + 5 * n, &err),
				  0);
			for (int i = n; i < n + batch; i++) {
				for (int j = 0; j < i; j++)
					CHECK(memcmp(c + 5 * i, c + 5 * j, 5 * sizeof *c) != 0);
				y[i] = objective(c + 5 * i);
			}
			n += batch;
		}
		double best = -1e9, best_random = -1e9;
		for (int i = 0; i < total; i++)
			best = fmax(best, y[i]);
		int rnd[total * 5];
		CHECK_INT(nas_propose_random(&s, NULL, 0, total, seed + 1000, accept_all, NULL, rnd,
					     &err),
			  0);
		for (int i = 0; i < total; i++)
			best_random = fmax(best_random, objective(rnd + 5 * i));
		sum_surrogate += best;
		sum_random += best_random;
	}
	printf(
	    "#   mean best over 8 seeds, %d trainings: surrogate %.4f, random %.4f (optimum 1)\n",
	    total, sum_surrogate / 8, sum_random / 8);
	CHECK(sum_surrogate > sum_random);
	CHECK(sum_surrogate / 8 > 0.97);
	nas_space_release(&s);
}

static void test_rank_statistics(void)
{
	double a[] = {1, 2, 3, 4}, b[] = {1, 3, 2, 4}, rev[] = {4, 3, 2, 1};
	CHECK_NEAR(nas_kendall_tau_b(a, b, 4), 4.0 / 6, 1e-12);
	CHECK_NEAR(nas_kendall_tau_b(a, rev, 4), -1, 1e-12);
	CHECK_NEAR(nas_spearman_rho(a, b, 4), 0.8, 1e-12);
	CHECK_NEAR(nas_spearman_rho(a, rev, 4), -1, 1e-12);
	/* ties: scipy.stats.kendalltau([1,2,2,3], [1,2,3,4]) = 0.9128709 */
	double t1[] = {1, 2, 2, 3};
	CHECK_NEAR(nas_kendall_tau_b(t1, a, 4), 0.912870929175, 1e-9);
	/* scipy.stats.spearmanr([1,2,2,3], [1,2,3,4]) = 0.9486833 */
	CHECK_NEAR(nas_spearman_rho(t1, a, 4), 0.948683298, 1e-8);
	double flat[] = {5, 5, 5, 5};
	CHECK(isnan(nas_kendall_tau_b(flat, a, 4)));
	CHECK(isnan(nas_spearman_rho(flat, a, 4)));
	CHECK(isnan(nas_kendall_tau_b(a, b, 1)));
	CHECK_NEAR(nas_kendall_p(0, 10), 1, 1e-12);
	/* tau 0.6 over 10: z = 3*0.6*sqrt(90)/sqrt(50) = 2.4150; p = 0.01573 */
	CHECK_NEAR(nas_kendall_p(0.6, 10), 0.015730, 1e-3);
	CHECK_NEAR(nas_share_below(a, 4, 2), 0.375, 1e-12);
	CHECK_NEAR(nas_share_below(a, 4, 9), 1, 1e-12);
	CHECK(isnan(nas_share_below(a, 4, NAN))); /* not trained there: not "beats 0%" */
}

/* E[max of k of n without replacement] against every subset. */
static void test_expected_best_of_k(void)
{
	enum { n = 7 };
	double v[n] = {0.3, 0.9, 0.1, 0.5, 0.5, 0.7, 0.2};
	for (int k = 1; k <= n; k++) {
		double sum = 0;
		int subsets = 0;
		for (unsigned m = 0; m < 1u << n; m++) {
			if (__builtin_popcount(m) != k)
				continue;
			double best = -1;
			for (int i = 0; i < n; i++)
				if (m >> i & 1)
					best = fmax(best, v[i]);
			sum += best;
			subsets++;
		}
		CHECK_NEAR(nas_expected_best_of(v, n, k), sum / subsets, 1e-12);
	}
	CHECK(isnan(nas_expected_best_of(v, n, 0)));
	CHECK(isnan(nas_expected_best_of(v, n, n + 1)));
	/* large n stays finite: k = n/2 of 2000 equal values is that value */
	static double many[2000];
	for (int i = 0; i < 2000; i++)
		many[i] = 0.25;
	CHECK_NEAR(nas_expected_best_of(many, 2000, 1000), 0.25, 1e-9);
}

static void write_text(const char *dir, const char *name, const char *text)
{
	char path[512];
	struct error err;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	CHECK_INT(fs_mkdir_p(dir, &err), 0);
	CHECK_INT(fs_write_atomic(path, text, strlen(text), &err), 0);
}

static void write_trial(const char *dir, const char *arch, const char *trained, const char *method,
			double acc)
{
	char text[1024];
	snprintf(text, sizeof text,
		 "{\"index\": 0, \"choices\": [1, 0], \"arch\": \"%s\", \"space\": "
		 "\"x:a={0|1},b={0|1}\", "
		 "\"method\": \"%s\"}",
		 arch, method);
	write_text(dir, NAS_PROPOSAL_FILE, text);
	snprintf(
	    text, sizeof text,
	    "{\"test_accuracy\": %.17g, \"arch\": \"%s\", \"params\": 100, \"train_time_s\": 2.0, "
	    "\"gflops_per_image\": 0.002}",
	    acc, trained);
	write_text(dir, "metrics.json", text);
}

static void test_trial_files(void)
{
	char dir[512];
	struct nas_trial t;
	struct error err;
	snprintf(dir, sizeof dir, "%s/t0", tmpdir);
	write_trial(dir, "x:a=1,b=0", "x:a=1,b=0", "random", 0.75);
	CHECK_INT(nas_trial_load(&t, dir, NAS_DEFAULT_METRIC, &err), 0);
	CHECK_STR(t.choices, "1,0");
	CHECK_STR(t.method, "random");
	CHECK_NEAR(t.accuracy, 0.75, 0);
	CHECK_NEAR(t.mflops, 2, 1e-12);
	nas_trial_release(&t);
	CHECK_INT(nas_trial_load(&t, dir, "val_mean_iou", &err), -1);
	CHECK(strstr(err.msg, "no number 'val_mean_iou'") != NULL);
	write_trial(dir, "x:a=1,b=0", "x:a=0,b=0", "random", 0.75);
	CHECK_INT(nas_trial_load(&t, dir, NAS_DEFAULT_METRIC, &err), -1);
	CHECK(strstr(err.msg, "trained 'x:a=0,b=0', not its proposal 'x:a=1,b=0'") != NULL);
	snprintf(dir, sizeof dir, "%s/t1", tmpdir);
	write_text(dir, NAS_PROPOSAL_FILE, "{}");
	CHECK_INT(nas_trial_load(&t, dir, NAS_DEFAULT_METRIC, &err), -1);
	CHECK(strstr(err.msg, "no metrics.json (did its training finish?)") != NULL);
	snprintf(dir, sizeof dir, "%s/none", tmpdir);
	CHECK_INT(nas_trial_load(&t, dir, NAS_DEFAULT_METRIC, &err), -1);
	CHECK(strstr(err.msg, "no proposal.json") != NULL);
}

static void test_proposals_round_trip(void)
{
	char dir[512];
	struct error err;
	snprintf(dir, sizeof dir, "%s/props", tmpdir);
	struct nas_proposal p[2] = {{{1, 0}, "x:a=1,b=0", 10, 0.5}, {{0, 1}, "x:a=0,b=1", 20, 1.5}};
	struct nas_proposals ps = {"x:a={0|1},b={0|1}", "random", 2, p}, back;
	CHECK_INT(nas_proposals_write(dir, &ps, 3, 0, &err), 0);
	CHECK_INT(nas_proposals_read(&back, dir, &err), 0);
	CHECK_INT(back.n, 2);
	CHECK_STR(back.space, ps.space);
	CHECK_STR(back.p[1].arch, "x:a=0,b=1");
	CHECK(back.p[1].choice[0] == 0 && back.p[1].choice[1] == 1);
	CHECK_INT(back.p[1].params, 20);
	nas_proposals_release(&back);
	/* Hand-edited choices: out of their slot, or not integers. */
	static const char *bad[] = {"[1, 2]", "[-1, 0]", "[1, \"1\"]", "[1, 0.5]", "[1, [0]]"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[512];
		snprintf(text, sizeof text,
			 "{\"version\": 1, \"space\": \"x:a={0|1},b={0|1}\", \"method\": "
			 "\"random\", \"proposals\": [{\"arch\": \"x:a=1,b=0\", \"choices\": "
			 "[1, 0]}, {\"arch\": \"x:a=1,b=1\", \"choices\": %s}]}",
			 bad[i]);
		write_text(dir, NAS_PROPOSALS_FILE, text);
		CHECK_INT(nas_proposals_read(&back, dir, &err), -1);
		CHECK(strstr(err.msg, "proposal 1: choice ") != NULL &&
		      strstr(err.msg, "is not an index in 0..1") != NULL);
	}
	write_text(dir, NAS_PROPOSALS_FILE,
		   "{\"version\": 1, \"space\": \"x:a=1\", \"method\": \"random\", "
		   "\"proposals\": []}");
	CHECK_INT(nas_proposals_read(&back, dir, &err), -1);
	CHECK(strstr(err.msg, "no {a|b|...} choice slot") != NULL);
	write_text(dir, NAS_PROPOSALS_FILE, "{\"version\": 2}");
	CHECK_INT(nas_proposals_read(&back, dir, &err), -1);
	CHECK(strstr(err.msg, "not a version-1 proposals file") != NULL);
}

/* Six random architectures and two of the search's, ranked alike on both
 * datasets: tau 1, the pick above every random one. */
static void test_transfer_analysis(void)
{
	struct nas_trial proxy[8], target[8];
	static const char *arch[8] = {"r0", "r1", "r2", "r3", "r4", "r5", "s0", "s1"};
	memset(proxy, 0, sizeof proxy);
	memset(target, 0, sizeof target);
	for (int i = 0; i < 8; i++) {
		proxy[i].arch = (char *)arch[i];
		proxy[i].method = i < 6 ? "random" : "surrogate";
		proxy[i].accuracy = 0.5 + 0.01 * i;
		proxy[i].train_s = 1;
		target[i].arch = (char *)arch[i];
		target[i].method = i < 6 ? "random" : "top";
		target[i].accuracy = 0.7 + 0.02 * i;
		target[i].train_s = 4;
	}
	struct nas_transfer_report r;
	struct error err;
	CHECK_INT(nas_transfer_analyze(proxy, 8, target, 8, &r, &err), 0);
	json_error_t je;
	json_t *j = json_loads(r.json, 0, &je);
	CHECK(j != NULL);
	const json_t *ranks = json_object_get(j, "ranks");
	CHECK_INT(jsonio_int(ranks, "paired", 0), 8);
	CHECK_NEAR(jsonio_num(ranks, "kendall_tau_b", 0), 1, 1e-12);
	CHECK_STR(jsonio_str(json_object_get(j, "pick"), "arch", ""), "s1");
	CHECK_NEAR(jsonio_num(json_object_get(j, "pick"), "beats_random", 0), 1, 0);
	CHECK_STR(jsonio_str(json_object_get(j, "random_search_on_proxy"), "arch", ""), "r5");
	const json_t *rt = json_object_get(j, "random_on_target");
	CHECK_INT(jsonio_int(rt, "count", 0), 6);
	CHECK_NEAR(jsonio_num(rt, "median", 0), 0.75, 1e-12);
	/* search: 8 proxy s + 2 picks x 4 s = 16 s; a random one 4 s: k = 4 */
	const json_t *same = json_object_get(j, "same_training_time");
	CHECK_INT(jsonio_int(same, "k", 0), 4);
	double v[6] = {0.7, 0.72, 0.74, 0.76, 0.78, 0.8};
	CHECK_NEAR(jsonio_num(same, "expected_best", 0), nas_expected_best_of(v, 6, 4), 1e-12);
	CHECK(strstr(r.markdown, "Kendall's tau-b 1.000") != NULL);
	CHECK(strstr(r.tsv, "s1\t0\t0.5700\t0.8400\tsurrogate\t1\n") != NULL);
	json_decref(j);
	nas_transfer_report_release(&r);
	/* The best on the proxy never trained on the target beats no share of
	 * the random ones: null, and "-" in the report, not 0. */
	proxy[7].arch = "p7";
	CHECK_INT(nas_transfer_analyze(proxy, 8, target, 8, &r, &err), 0);
	j = json_loads(r.json, 0, &je);
	const json_t *best = json_object_get(j, "best_on_proxy");
	CHECK_STR(jsonio_str(best, "arch", ""), "p7");
	CHECK(json_is_null(json_object_get(best, "beats_random")));
	CHECK(strstr(r.markdown, "| best on the proxy | p7 | 0.5700 | - | - |\n") != NULL);
	json_decref(j);
	nas_transfer_report_release(&r);
	proxy[7].arch = (char *)arch[7];
	/* One architecture on both: too few to rank, said so, not "nan". */
	CHECK_INT(nas_transfer_analyze(proxy, 1, target, 6, &r, &err), 0);
	CHECK(strstr(r.summary, "ranks: 1 architectures trained on both: too few to rank\n") !=
	      NULL);
	CHECK(strstr(r.summary, "nan") == NULL);
	nas_transfer_report_release(&r);
	/* Out of memory anywhere: an error, never a crash. */
	for (long n = 0; n < 60; n++) {
		mem_fail_after(n);
		int rc = nas_transfer_analyze(proxy, 8, target, 8, &r, &err);
		mem_fail_after(-1);
		if (rc == 0)
			nas_transfer_report_release(&r);
		else
			CHECK(strstr(err.msg, "out of memory") != NULL);
	}
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(test_space_parse_and_render);
	RUN(test_space_errors_name_the_slot);
	RUN(test_space_out_of_memory);
	RUN(test_arch_measure_checks_validity);
	RUN(test_spline_interpolates_and_keeps_linear);
	RUN(test_spline_degenerate_points);
	RUN(test_random_proposals);
	RUN(test_surrogate_beats_random);
	RUN(test_rank_statistics);
	RUN(test_expected_best_of_k);
	RUN(test_trial_files);
	RUN(test_proposals_round_trip);
	RUN(test_transfer_analysis);
	struct error err;
	fs_rm_rf(tmpdir, &err);
	return CHECK_DONE();
}
