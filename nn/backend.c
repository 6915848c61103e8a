/* backend: descriptor arithmetic shared by every backend, and lookup by name. */
#include "nn/backend.h"
#ifdef CAIRN_CUDA
#include "nn/cuda/cuda.h"
#endif

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int nn_conv_desc_init(struct nn_conv_desc *d, struct error *err)
{
	if (d->n < 0 || d->cin <= 0 || d->h <= 0 || d->w <= 0 || d->cout <= 0 || d->kh <= 0 ||
	    d->kw <= 0 || d->stride <= 0 || d->pad < 0 || d->dil <= 0 || d->groups <= 0)
		return error_set(err, "conv: bad shape (cin %d, %dx%d, cout %d, k %dx%d, stride %d, pad %d, dil %d, groups %d)",
				 d->cin, d->h, d->w, d->cout, d->kh, d->kw, d->stride, d->pad,
				 d->dil, d->groups);
	if (d->cin % d->groups || d->cout % d->groups)
		return error_set(err, "conv: %d groups do not divide cin %d and cout %d", d->groups,
				 d->cin, d->cout);
	int eh = d->dil * (d->kh - 1) + 1, ew = d->dil * (d->kw - 1) + 1;
	if (d->h + 2 * d->pad < eh || d->w + 2 * d->pad < ew)
		return error_set(err, "conv: kernel %dx%d (dilated %dx%d) larger than padded input %dx%d",
				 d->kh, d->kw, eh, ew, d->h + 2 * d->pad, d->w + 2 * d->pad);
	d->hout = (d->h + 2 * d->pad - eh) / d->stride + 1;
	d->wout = (d->w + 2 * d->pad - ew) / d->stride + 1;
	return 0;
}

double nn_conv_macs(const struct nn_conv_desc *d)
{
	return (double)d->n * d->cout * d->hout * d->wout * (d->cin / d->groups) * d->kh * d->kw;
}

int nn_pool_desc_init(struct nn_pool_desc *d, struct error *err)
{
	if (d->kh <= 0 || d->kw <= 0 || d->sh <= 0 || d->sw <= 0 || d->ph < 0 || d->pw < 0 ||
	    d->ph >= d->kh || d->pw >= d->kw || d->h + 2 * d->ph < d->kh || d->w + 2 * d->pw < d->kw)
		return error_set(err, "pool: bad window %dx%d stride %dx%d pad %dx%d on %dx%d", d->kh,
				 d->kw, d->sh, d->sw, d->ph, d->pw, d->h, d->w);
	d->hout = (d->h + 2 * d->ph - d->kh) / d->sh + 1;
	d->wout = (d->w + 2 * d->pw - d->kw) / d->sw + 1;
	return 0;
}

#ifdef CAIRN_CUDA
/* The CUDA table, or NULL with why in err. auto: only when a GPU is visible. */
static const struct nn_backend *cuda_or_why(const char *name, int any, struct error *err)
{
	if (any && nn_cuda_device_count() <= 0)
		return nn_backend_cpu();
	const struct nn_backend *be = nn_backend_cuda();
	if (!be && err) {
		struct error why;
		if (nn_cuda_error(&why) == 0) /* the reason was cleared since */
			snprintf(why.msg, sizeof(why.msg), "set-up failed earlier");
		error_set(err, "device %s: no usable CUDA backend: %s", name, why.msg);
	}
	return be;
}
#else
/* Built without nn/cuda: never a GPU. */
const struct nn_backend *nn_backend_cuda(void) { return NULL; }

static const struct nn_backend *cuda_or_why(const char *name, int any, struct error *err)
{
	if (any)
		return nn_backend_cpu();
	if (err)
		error_set(err, "device %s: this build has no CUDA backend (build with make CUDA=1)",
			  name);
	return NULL;
}
#endif

const struct nn_backend *nn_backend_by_name(const char *name, struct error *err)
{
	if (!strcmp(name, "cpu"))
		return nn_backend_cpu();
	if (!strcmp(name, "cpu-ref"))
		return nn_backend_cpu_ref();
	if (!strcmp(name, "cuda") || !strcmp(name, "auto"))
		return cuda_or_why(name, !strcmp(name, "auto"), err);
	if (err)
		error_set(err, "device '%s': unknown (cpu, cpu-ref, cuda, auto)", name);
	return NULL;
}

int nn_backend_set_precision(const struct nn_backend *be, const char **name, struct error *err)
{
	const char *p = *name;
	if (p && strcmp(p, "fp32") && strcmp(p, "tf32") && strcmp(p, "bf16"))
		return error_set(err, "unknown precision '%s' (known: fp32, tf32, bf16)", p);
#ifdef CAIRN_CUDA
	if (be->device == NN_DEV_CUDA) {
		enum nn_cuda_precision v;
		if (p && (nn_cuda_parse_precision(p, &v, err) < 0 || nn_cuda_set_precision(v, err) < 0))
			return -1;
		*name = nn_cuda_precision_name(nn_cuda_get_precision());
		return 0;
	}
#endif
	(void)be;
	if (p && strcmp(p, "fp32"))
		return error_set(err, "%s on a cpu device: the cpu devices compute in fp32 only", p);
	*name = "fp32";
	return 0;
}

void nn_backend_step(const struct nn_backend *be, void **state, void (*fn)(void *ctx), void *ctx)
{
	if (be->step)
		be->step(state, fn, ctx);
	else
		fn(ctx);
}

void nn_backend_step_release(const struct nn_backend *be, void **state)
{
	if (be->step_release && *state)
		be->step_release(*state);
	*state = NULL;
}

int nn_alloc_failed(const struct nn_backend *be, struct error *err, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	const char *why = be->alloc_why ? be->alloc_why() : NULL;
	if (why && *why)
		return error_set(err, "%s (%s)", what, why);
	return error_set(err, "%s", what);
}
