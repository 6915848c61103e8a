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
	long v;
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
	case NN_OPT_EPOCHS:
		if (parse_long(arg, 1, 100000, &v) < 0)
			return error_set(err, "--epochs: '%s' is not an integer in 1..100000", arg);
		o->fit->epochs = (int)v;
		return 1;
	case NN_OPT_BATCH:
		if (parse_long(arg, 1, 65536, &v) < 0)
			return error_set(err, "--batch: '%s' is not an integer in 1..65536", arg);
		o->fit->batch = (int)v;
		return 1;
	case NN_OPT_LR:
		if (parse_float(arg, &o->fit->lr) < 0 || !(o->fit->lr > 0))
			return error_set(err, "--lr: '%s' is not a finite positive number", arg);
		return 1;
	case NN_OPT_WD:
		if (parse_float(arg, &o->fit->wd) < 0 || !(o->fit->wd >= 0))
			return error_set(err, "--wd: '%s' is not a finite number >= 0", arg);
		return 1;
	case NN_OPT_SEED:
		if (parse_long(arg, 0, 0x7fffffffL, &v) < 0)
			return error_set(err, "--seed: '%s' is not an integer in 0..2147483647",
					 arg);
		o->fit->seed = (uint64_t)v;
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
	if (o->fit) {
		o->fit->be = o->be;
		o->fit->state_dir = o->state_dir;
		o->fit->state_every = o->state_every;
	}
	return 0;
}
