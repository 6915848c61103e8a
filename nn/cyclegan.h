/* cyclegan: CycleGAN training (Zhu et al. 2017) over nn nets, for the label
 * refinement stage (cairn-refine) and the GPU benchmark (bench/cuda_step):
 * generators A -> B and B -> A, a PatchGAN per domain, LSGAN losses, cycle
 * and identity L1 terms, Adam. The cycle loss of a domain may weigh every
 * value (the feature-weighted cycle loss of Zhang et al., KDD 2020: roads
 * and houses count more than the background they are drawn on, so a
 * generator cannot buy a small cycle loss by leaving them out). */
#ifndef NN_CYCLEGAN_H
#define NN_CYCLEGAN_H

#include <stdint.h>

#include "nn/net.h"
#include "nn/optim.h"

enum { NN_CG_GA, NN_CG_GB };				     /* generators: A -> B, B -> A */
enum { NN_CG_TRANSLATE, NN_CG_RECONSTRUCT, NN_CG_IDENTITY }; /* their uses */
enum { NN_CG_DA, NN_CG_DB };				     /* discriminators of A, B */
enum { NN_CG_FAKE, NN_CG_REAL };			     /* their uses (below) */

/* The step's losses (means, before their weights), in nn_cyclegan.loss. */
enum {
	NN_CG_LOSS_G_DB,    /* LSGAN: D_B(G_A(A)) against 1 */
	NN_CG_LOSS_G_DA,    /* LSGAN: D_A(G_B(B)) against 1 */
	NN_CG_LOSS_CYCLE_A, /* L1: G_B(G_A(A)) against A (unweighted mean) */
	NN_CG_LOSS_CYCLE_B, /* L1: G_A(G_B(B)) against B (unweighted mean) */
	NN_CG_LOSS_IDT_B,   /* L1: G_A(B) against B (0 without identity) */
	NN_CG_LOSS_IDT_A,   /* L1: G_B(A) against A */
	NN_CG_LOSS_DA_REAL, /* MSE: D_A(A) against 1 */
	NN_CG_LOSS_DA_FAKE, /* MSE: D_A(G_B(B)) against 0 */
	NN_CG_LOSS_DB_REAL, /* MSE: D_B(B) against 1 */
	NN_CG_LOSS_DB_FAKE, /* MSE: D_B(G_A(A)) against 0 */
	NN_CG_LOSS_PAIRED,  /* L1: G_A(A) against A's own B (unweighted mean; 0 without) */
	NN_CG_LOSSES
};

struct nn_cyclegan_config {
	const struct nn_backend *be;
	const char *gen, *disc; /* model specs: a cyclegan (or unet) family and a patchgan */
	int channels[2];	/* of domains A and B */
	int height, width, batch;
	float lr, b1;	       /* Adam */
	float cycle, identity; /* loss weights; identity 0: no identity uses (then A and B
				  may differ in channels) */
	uint64_t seed;	       /* G_A, G_B, D_A, D_B get seed, seed + 1, + 2, + 3 */
};

/* Zhu et al.'s reference settings: cyclegan:base=64,blocks=9 and
 * patchgan:base=64,layers=3, 3 channels each side, 256 x 256, batch 1,
 * Adam lr 2e-4 with beta1 0.5, cycle weight 10, identity 5 (the reference's
 * 0.5 times the cycle weight), seed 1. */
void nn_cyclegan_defaults(struct nn_cyclegan_config *cfg);

/* Each module is used several times a step (a generator translates,
 * reconstructs and maps its own domain to itself); an nn net keeps one set of
 * activations, so each use is a net of its own, the uses of one module
 * sharing its weights (nn_net_share_weights; the translating use and the
 * real pass own them) and their weight gradients summed before the module's
 * update (nn_net_add_grads), as PyTorch's autograd sums a module's uses.
 * A discriminator has two uses: on the real images, and on the generated
 * ones, whose one forward pass serves two backward passes: the generators'
 * loss (the gradient for the images only: the discriminator's weights are
 * not trained by it) and then the discriminator's own (for its weights).
 * The reference implementation runs that forward pass twice; the
 * discriminator has not changed in between. */
struct nn_cyclegan {
	struct nn_cyclegan_config cfg; /* spec strings not owned */
	struct nn_net g[2][3], d[2][2];
	struct nn_optim og[2], od[2];
	int uses;		/* generator uses: 3, or 2 without identity */
	float *real[2];		/* device: the step's batches of A and B (the caller fills) */
	float *cycle_w[2];	/* device: weights of domain m's cycle loss, per value, or NULL */
	float paired;		/* weight of the paired term (nn_cyclegan_want_pairs), or 0 */
	float *pair_b, *pair_w; /* device: real[0]'s own B and per-value weights (the caller
				   fills), *pair_dy scratch */
	float *pair_dy;
	float *ones, *zeros;  /* device: LSGAN targets */
	size_t img[2], patch; /* floats in a batch of A, of B, of a discriminator's output */
	float loss[NN_CG_LOSSES];
};

/* Build the four modules and their uses, the optimizers and the buffers.
 * Errors (a bad spec, a size the generator cannot take, identity with
 * domains of different channels, no memory) name what to change. */
int nn_cyclegan_init(struct nn_cyclegan *c, const struct nn_cyclegan_config *cfg,
		     struct error *err);
/* Give domain m's cycle loss per-value weights (c->cycle_w[m], img[m]
 * floats, all 1 until the caller uploads others). */
int nn_cyclegan_want_cycle_weights(struct nn_cyclegan *c, int m, struct error *err);
/* A paired term beside the unpaired ones: G_A(A) against c->pair_b, A's own
 * (noisy) B, L1 times weight and the per-value c->pair_w (all 1 until the
 * caller uploads others), where a pairing is known but not trusted: noisy
 * map labels of the same tiles (nn/refine). */
int nn_cyclegan_want_pairs(struct nn_cyclegan *c, float weight, struct error *err);
/* One training step on c->real[0] and c->real[1]: the generators' loss
 * (LSGAN through the discriminators, cycles, identities) back through every
 * generator use and one Adam step per generator; then each discriminator's
 * 0.5 (real + generated) and one Adam step each. No host sync: it can run
 * through nn_backend_step (a CUDA graph). ctx is the struct nn_cyclegan. */
void nn_cyclegan_step(void *ctx);
void nn_cyclegan_release(struct nn_cyclegan *c);

#endif
