/* tensor: the one data layout of nn/. Every tensor is float32, NCHW
 * (batch, channels, rows, columns; the column index varies fastest), and has
 * exactly one owner. Memory comes from a backend's allocator (CPU heap now,
 * a CUDA caching allocator later) either per tensor (nn_tensor_alloc /
 * nn_tensor_release) or from an arena that frees many tensors at once. */
#ifndef NN_TENSOR_H
#define NN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

struct nn_backend;

/* Where a tensor's bytes live. Host code may only dereference NN_DEV_CPU data. */
enum nn_device { NN_DEV_CPU = 0, NN_DEV_CUDA = 1 };

struct nn_tensor {
	float *data;   /* NULL when empty; device memory when device != CPU */
	int n, c, h, w; /* NCHW; a vector of k floats is (1, k, 1, 1) */
	enum nn_device device;
	const struct nn_backend *be; /* the backend data belongs to (copies go through it) */
	int owned;                   /* 1: from nn_tensor_alloc, freed by nn_tensor_release */
};

static inline size_t nn_tensor_count(const struct nn_tensor *t)
{
	return (size_t)t->n * t->c * t->h * t->w;
}

/* Allocate an uninitialised (n, c, h, w) tensor from be's allocator. */
int nn_tensor_alloc(struct nn_tensor *t, const struct nn_backend *be, int n, int c, int h, int w,
		    struct error *err);
/* A tensor over memory someone else owns (data from be's allocator). */
void nn_tensor_view(struct nn_tensor *t, const struct nn_backend *be, float *data, int n, int c,
		    int h, int w);
/* Free a tensor from nn_tensor_alloc; only forgets an arena or borrowed one. */
void nn_tensor_release(struct nn_tensor *t);
/* Copy between host memory and the tensor (a memcpy on the CPU backend). */
int nn_tensor_upload(struct nn_tensor *t, const float *host, size_t count, struct error *err);
int nn_tensor_download(const struct nn_tensor *t, float *host, size_t count, struct error *err);

/* An arena: one allocation from a backend, carved into tensors by a bump
 * pointer, freed as a whole. Used for activations, gradients and workspaces,
 * so that a training step allocates nothing once the net is prepared. */
struct nn_arena {
	const struct nn_backend *be;
	char *base;
	size_t size, used;
};

int nn_arena_init(struct nn_arena *a, const struct nn_backend *be, size_t bytes, struct error *err);
/* An arena for activations and their gradients only: from the backend's
 * act_alloc, which may keep them in lower precision (nn/backend.h). */
int nn_arena_init_act(struct nn_arena *a, const struct nn_backend *be, size_t bytes,
		      struct error *err);
/* Bytes an arena needs for a tensor of count floats (aligned to 64 bytes). */
size_t nn_arena_need(size_t count);
/* Carve a tensor; fails with a message when the arena is too small. */
int nn_arena_tensor(struct nn_arena *a, struct nn_tensor *t, int n, int c, int h, int w,
		    struct error *err);
void *nn_arena_bytes(struct nn_arena *a, size_t bytes, struct error *err);
void nn_arena_release(struct nn_arena *a);

#endif
