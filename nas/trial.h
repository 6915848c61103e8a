/* trial: the files of a search. A proposals folder (proposals.json, and
 * proposals.tsv for people) lists architectures to train; a trial folder is
 * one training of one of them: proposal.json (which architecture, from which
 * proposals, written by `cairn-nas trial`) beside the trainer's metrics.json. */
#ifndef NAS_TRIAL_H
#define NAS_TRIAL_H

#include "core/error.h"
#include "nas/space.h"

#define NAS_PROPOSALS_FILE "proposals.json"
#define NAS_PROPOSAL_FILE "proposal.json"
#define NAS_FAILED_FILE "trial-failed.json" /* cairn-nas trial --keep-going: the trainer failed */

struct nas_proposal {
	int choice[NAS_MAX_DIMS];
	char *arch; /* canonical */
	long long params;
	double mflops;
};

struct nas_proposals {
	char *space;  /* the space's text */
	char *method; /* "random", "surrogate", "top" */
	int n;
	struct nas_proposal *p;
};

/* Write DIR/proposals.json and DIR/proposals.tsv (atomically each). */
int nas_proposals_write(const char *dir, const struct nas_proposals *ps, uint64_t seed, int ntried,
			struct error *err);
/* Read DIR/proposals.json; each choice must be an index of its slot. */
int nas_proposals_read(struct nas_proposals *ps, const char *dir, struct error *err);
void nas_proposals_release(struct nas_proposals *ps);

struct nas_trial {
	char *dir;
	char *arch;	 /* canonical, as trained (metrics.json) */
	char *space;	 /* proposal.json */
	char *method;	 /* how it was proposed */
	char *choices;	 /* "0,2,1" */
	int index;	 /* in its proposals */
	double accuracy; /* metrics.json's metric (test_accuracy: on the held-out shard given to the
			    trainer) */
	long long params;
	double mflops; /* forward, per sample */
	double train_s;
	int failed;    /* the trainer failed and trial --keep-going recorded it: no
			  metrics, accuracy NAN */
	char *failure; /* then how: "exit 1", "signal 9" */
};

/* Load a trial folder; errors name the folder and the missing or wrong file
 * ("trial t/3: no metrics.json (did its training finish?)"), and a trial that
 * trained another architecture than its proposal. A recorded failure
 * (NAS_FAILED_FILE) loads as a failed trial. */
#define NAS_DEFAULT_METRIC "test_accuracy"
int nas_trial_load(struct nas_trial *t, const char *dir, const char *metric, struct error *err);
void nas_trial_release(struct nas_trial *t);

#endif
