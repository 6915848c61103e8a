/* transfer: the NASTransfer questions (Panda et al., AAAI 2021) asked of a
 * finished search. Do architectures rank the same on the small proxy dataset
 * as on the large target (Kendall's tau-b, Spearman's rho)? Does what the
 * search found on the proxy beat random architectures trained on the target
 * (its share of them beaten, the expected best of k random ones for the same
 * training time)? */
#ifndef NAS_TRANSFER_H
#define NAS_TRANSFER_H

#include "core/error.h"
#include "nas/trial.h"

/* Kendall's tau-b (ties in either list counted as in Kendall 1945); NAN when
 * n < 2 or one list is constant. */
double nas_kendall_tau_b(const double *a, const double *b, int n);
/* Two-sided p-value of tau under no association, normal approximation
 * z = 3 tau sqrt(n (n - 1)) / sqrt(2 (2n + 5)) (Kendall 1970). */
double nas_kendall_p(double tau, int n);
/* Spearman's rho: Pearson's correlation of the ranks (ties: mean rank). */
double nas_spearman_rho(const double *a, const double *b, int n);
/* The expected maximum of k values drawn without replacement from v[0..n):
 * sum over the sorted v_(i) of v_(i) C(i-1, k-1) / C(n, k), 1 <= k <= n. */
double nas_expected_best_of(const double *v, int n, int k);
/* The share of v below x, ties counted half; NAN when n < 1 or x is NAN. */
double nas_share_below(const double *v, int n, double x);

struct nas_transfer_report {
	char *markdown; /* report.md */
	char *tsv;	/* archs.tsv: one line per architecture */
	char *json;	/* analysis.json */
	char *summary;	/* three lines for the terminal */
};

/* proxy: the trials of the search on the proxy dataset (methods random and
 * surrogate); target: trainings on the target (random ones, and the search's
 * picks: method top). Architectures are matched by their canonical spec;
 * failed trainings (nas_trial.failed) are counted and left out. */
int nas_transfer_analyze(const struct nas_trial *proxy, int np, const struct nas_trial *target,
			 int nt, struct nas_transfer_report *r, struct error *err);
void nas_transfer_report_release(struct nas_transfer_report *r);

#endif
