/* tensor: allocation through a backend, and arenas. */
#include "nn/tensor.h"

#include <string.h>

#include "nn/backend.h"

int nn_tensor_alloc(struct nn_tensor *t, const struct nn_backend *be, int n, int c, int h, int w,
		    struct error *err)
{
	memset(t, 0, sizeof(*t));
	if (n < 0 || c < 0 || h < 0 || w < 0)
		return error_set(err, "tensor: negative shape (%d, %d, %d, %d)", n, c, h, w);
	size_t count = (size_t)n * c * h * w;
	t->n = n, t->c = c, t->h = h, t->w = w;
	t->device = be->device;
	t->be = be;
	if (count == 0)
		return 0;
	t->data = be->alloc(count * sizeof(float));
	if (!t->data)
		return nn_alloc_failed(be, err,
				       "tensor: out of %s memory allocating %zu bytes (%d, %d, %d, %d)",
				       be->name, count * sizeof(float), n, c, h, w);
	t->owned = 1;
	return 0;
}

void nn_tensor_view(struct nn_tensor *t, const struct nn_backend *be, float *data, int n, int c,
		    int h, int w)
{
	memset(t, 0, sizeof(*t));
	t->n = n, t->c = c, t->h = h, t->w = w;
	t->device = be->device;
	t->be = be;
	t->data = data;
}

void nn_tensor_release(struct nn_tensor *t)
{
	if (t->owned && t->data)
		t->be->free(t->data);
	memset(t, 0, sizeof(*t));
}

int nn_tensor_upload(struct nn_tensor *t, const float *host, size_t count, struct error *err)
{
	if (count > nn_tensor_count(t))
		return error_set(err, "tensor: upload of %zu floats into a tensor of %zu", count,
				 nn_tensor_count(t));
	const struct nn_backend *be = t->be ? t->be : nn_backend_cpu();
	be->upload(t->data, host, count * sizeof(float));
	return 0;
}

int nn_tensor_download(const struct nn_tensor *t, float *host, size_t count, struct error *err)
{
	if (count > nn_tensor_count(t))
		return error_set(err, "tensor: download of %zu floats from a tensor of %zu", count,
				 nn_tensor_count(t));
	const struct nn_backend *be = t->be ? t->be : nn_backend_cpu();
	be->download(host, t->data, count * sizeof(float));
	return 0;
}

#define ARENA_ALIGN 64

size_t nn_arena_need(size_t count)
{
	return (count * sizeof(float) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

static int arena_init(struct nn_arena *a, const struct nn_backend *be, size_t bytes,
		      void *(*alloc)(size_t), const char *what, struct error *err)
{
	memset(a, 0, sizeof(*a));
	a->be = be;
	if (bytes == 0)
		return 0;
	a->base = alloc(bytes);
	if (!a->base)
		return nn_alloc_failed(be, err, "%s: out of %s memory allocating %zu bytes", what,
				       be->name, bytes);
	a->size = bytes;
	return 0;
}

int nn_arena_init(struct nn_arena *a, const struct nn_backend *be, size_t bytes, struct error *err)
{
	return arena_init(a, be, bytes, be->alloc, "arena", err);
}

int nn_arena_init_act(struct nn_arena *a, const struct nn_backend *be, size_t bytes,
		      struct error *err)
{
	return arena_init(a, be, bytes, be->act_alloc ? be->act_alloc : be->alloc,
			  "activation arena", err);
}

void *nn_arena_bytes(struct nn_arena *a, size_t bytes, struct error *err)
{
	size_t need = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
	if (need > a->size - a->used) {
		error_set(err, "arena: %zu bytes asked, %zu of %zu left", bytes, a->size - a->used,
			  a->size);
		return NULL;
	}
	void *p = a->base + a->used;
	a->used += need;
	return p;
}

int nn_arena_tensor(struct nn_arena *a, struct nn_tensor *t, int n, int c, int h, int w,
		    struct error *err)
{
	memset(t, 0, sizeof(*t));
	size_t count = (size_t)n * c * h * w;
	t->n = n, t->c = c, t->h = h, t->w = w;
	t->device = a->be->device;
	t->be = a->be;
	if (count == 0)
		return 0;
	t->data = nn_arena_bytes(a, count * sizeof(float), err);
	return t->data ? 0 : -1;
}

void nn_arena_release(struct nn_arena *a)
{
	if (a->base)
		a->be->free(a->base);
	memset(a, 0, sizeof(*a));
}
