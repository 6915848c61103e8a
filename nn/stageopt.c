/* stageopt: the options the nn stages take alike. */
#include "nn/stageopt.h"

#include "core/parse.h"

void nn_stage_opts_init(struct nn_stage_opts *o)
{
	*o = (struct nn_stage_opts){.be = nn_backend_cpu(), .state_every = 600};
}

int nn_stage_opt(struct nn_stage_opts *o, int c, const char *arg, struct error *err)
{
	struct error why;
	float every;
	switch (c) {
	case NN_OPT_THREADS:
		if (parse_long(arg, 1, 1024, &o->threads) < 0)
			return error_set(err, "--threads: '%s' is not an integer in 1..1024", arg);
		return 1;
	case NN_OPT_DEVICE:
		if (!(o->be = nn_backend_by_name(arg, &why)))
			return error_set(err, "--%s", why.msg);
		return 1;
	case NN_OPT_PRECISION:
		o->precision = arg;
		return 1;
	case NN_OPT_STATE:
		o->state_dir = arg;
		return 1;
	case NN_OPT_STATE_EVERY:
		if (parse_float(arg, &every) < 0 || !(every >= 0))
			return error_set(err, "--state-every: '%s' is not a number of seconds >= 0",
					 arg);
		o->state_every = every;
		return 1;
	}
	return 0;
}

int nn_stage_setup(struct nn_stage_opts *o, struct error *err)
{
	struct error why;
	nn_cpu_set_threads((int)o->threads);
	if (nn_backend_set_precision(o->be, &o->precision, &why) < 0)
		return error_set(err, "--precision: %s", why.msg);
	return 0;
}
