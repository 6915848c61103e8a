/* stage: what the data-parallel training stages do alike around training. */
#include "dist/stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/jsonio.h"
#include "nn/ckpt.h"
#include "nn/dataset.h"
#include "nn/trainstate.h"
#ifdef CAIRN_CUDA
#include "nn/cuda/cuda.h"
#endif

enum { EXIT_USAGE = 2 };

int dist_stage_opt(struct dist_opts *o, int c, const char *arg, struct error *err)
{
	struct error why;
	if (c == DIST_OPT_ALGO) {
		if (dist_algo_parse(arg, &o->algo, &why) < 0)
			return error_set(err, "--dist: %s", why.msg);
		return 1;
	}
	if (c == DIST_OPT_BATCHES) {
		if (dist_batches_parse(arg, &o->batches, &why) < 0)
			return error_set(err, "--dist-batches: %s", why.msg);
		return 1;
	}
	return 0;
}

int dist_stage_opts_check(const struct dist_opts *o, struct error *err)
{
	struct error why;
	if (o->batches != DIST_BATCHES_DEFAULT && o->algo == DIST_NONE)
		return error_set(err, "--dist-batches %s: without --dist there are no ranks to "
				      "split batches between",
				 dist_batches_name(o->batches));
	if (dist_batches_check(o->algo, o->batches, &why) < 0)
		return error_set(err, "--dist-batches shared: %s", why.msg);
	return 0;
}

void dist_stage_init(struct dist_stage *s, const char *prog, const struct nn_stage_opts *opts,
		     const struct dist_opts *dist)
{
	*s = (struct dist_stage){
	    .prog = prog, .opts = opts, .algo = dist->algo, .batches = dist->batches, .load = -1};
	s->dist.size = 1;
}

int dist_stage_join(struct dist_stage *s)
{
	struct error err;
	if (s->algo == DIST_NONE)
		return 0;
	if (dist_init(&s->dist, s->algo, s->batches, &err) < 0) {
		fprintf(stderr, "%s: --dist %s: %s\n", s->prog, dist_algo_name(s->algo), err.msg);
		return -1;
	}
	dist_train_hooks(&s->dt, &s->dist, &s->sync);
	s->rank = s->dist.rank;
	return 0;
}

int dist_stage_begin(struct dist_stage *s, const char *summary, int batch, int epochs,
		     const char *out)
{
	struct error err;
	s->out = out;
	s->epochs = epochs;
	if (s->rank == 0) {
		fprintf(stderr, "%s\n", summary);
		if (s->algo != DIST_NONE && s->dist.batches == DIST_BATCHES_SHARED)
			fprintf(stderr,
				"%s over %d ranks: they share every epoch's batches as they go (a "
				"faster rank takes more), batch %d\n",
				dist_algo_name(s->algo), s->dist.size, batch);
		else if (s->algo != DIST_NONE)
			fprintf(stderr, "%s over %d ranks: each takes 1/%d of every epoch, batch %d\n",
				dist_algo_name(s->algo), s->dist.size, s->dist.size, batch);
		s->made_out = !fs_exists(out);
		if (fs_mkdir_p(out, &err) < 0) {
			s->made_out = 0;
			fprintf(stderr, "%s: %s\n", s->prog, err.msg);
			dist_abort(&s->dist, 1);
			return 1;
		}
	}
	double load[3];
	if (getloadavg(load, 3) > 0)
		s->load = load[0];
	s->t0 = clock_now();
	return 0;
}

double dist_stage_wall(const struct dist_stage *s) { return clock_now() - s->t0; }

void dist_stage_on_batch(void *ctx, int epoch, uint64_t batch, uint64_t batches, float loss)
{
	struct dist_stage *s = ctx;
	(void)loss;
	if (!s->per_epoch) {
		s->per_epoch = batches;
		progress_init(&s->bar, "train", "batch", batches * (uint64_t)s->epochs);
	}
	progress_update(&s->bar, (uint64_t)epoch * batches + batch);
}

void dist_stage_epoch_head(struct dist_stage *s, int epoch, float loss)
{
	if (s->bar.tty)
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "epoch %d/%d: train loss %.4f", epoch + 1, s->epochs, loss);
}

void dist_stage_epoch_tail(double seconds)
{
	char t[32];
	clock_format_duration(seconds, t, sizeof(t));
	fprintf(stderr, " (%s)\n", t);
}

/* The bar's last line, once training has ended either way. */
static void end_bar(struct dist_stage *s)
{
	if (s->per_epoch)
		progress_finish(&s->bar);
	s->per_epoch = 0;
}

void dist_stage_resumed(const struct dist_stage *s, int from_epoch, uint64_t batches)
{
	if (!from_epoch && !batches)
		return;
	char where[128];
	nn_trainstate_where(where, sizeof(where), from_epoch, batches, s->epochs);
	fprintf(stderr, "(resumed %s from %s)\n", where, s->opts->state_dir);
}

int dist_stage_failed(struct dist_stage *s, int rc, const struct error *err)
{
	end_bar(s);
	if (s->dist.size > 1)
		fprintf(stderr, "%s: rank %d of %d: %s\n", s->prog, s->rank, s->dist.size, err->msg);
	else
		fprintf(stderr, "%s: %s\n", s->prog, err->msg);
	int status = rc == DATASET_EBADINPUT ? EXIT_USAGE : 1;
	dist_abort(&s->dist, status); /* the other ranks would wait for this one */
	return status;
}

int dist_stage_totals(struct dist_stage *s, double rate, double seconds)
{
	struct error err;
	end_bar(s);
	if (dist_train_totals(&s->dist, rate, seconds, &s->tot, &err) < 0) {
		fprintf(stderr, "%s: %s\n", s->prog, err.msg);
		dist_abort(&s->dist, 1);
		return 1;
	}
	return 0;
}

#ifdef CAIRN_CUDA
/* How the steps ran and what the device held (metrics.json "cuda"). */
static json_t *cuda_json(const struct nn_net *net)
{
	struct nn_cuda_graph_stats gs;
	struct nn_cuda_mem_stats ms;
	nn_cuda_get_graph_stats(&gs);
	nn_cuda_get_mem_stats(&ms);
	json_t *c = json_object();
	json_object_set_new(c, "device_index", json_integer(nn_cuda_device()));
	json_object_set_new(c, "steps", json_integer((json_int_t)gs.steps));
	json_object_set_new(c, "graph_captures", json_integer((json_int_t)gs.captures));
	json_object_set_new(c, "graph_replays", json_integer((json_int_t)gs.replays));
	json_object_set_new(c, "eager_steps", json_integer((json_int_t)gs.eager));
	json_object_set_new(c, "graph_failures", json_integer((json_int_t)gs.failures));
	json_object_set_new(c, "graph_nodes", json_integer((json_int_t)gs.nodes));
	json_object_set_new(c, "device_peak_mib", json_real(ms.peak_in_use / 1048576.0));
	/* the activation arena's device memory: about half of it in bf16 */
	json_object_set_new(c, "activation_arena_mib", json_real(net->act.size / 1048576.0));
	json_object_set_new(c, "activation_backed_mib", json_real(ms.act_backed / 1048576.0));
	json_object_set_new(c, "cuda_mallocs", json_integer((json_int_t)ms.cuda_mallocs));
	return c;
}
#endif

int dist_stage_save(struct dist_stage *s, const struct nn_net *net, json_t *m)
{
	struct error err;
	char ckpt[4096], metrics[4096];
	json_object_set_new(m, "wall_time_s", json_real(dist_stage_wall(s)));
	/* CPU time of all threads: on a shared machine, wall time depends on
	   the other jobs, CPU time much less */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		json_object_set_new(m, "cpu_time_s",
				    json_real(ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
					      ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6));
	json_object_set_new(m, "load_average_at_start", json_real(s->load));
	json_object_set_new(m, "device", json_string(s->opts->be->name));
	json_object_set_new(m, "precision", json_string(s->opts->precision));
	if (s->algo != DIST_NONE) /* how the ranks trained together */
		json_object_set_new(m, "dist", dist_train_json(&s->dist, &s->tot));
#ifdef CAIRN_CUDA
	if (s->opts->be->device == NN_DEV_CUDA)
		json_object_set_new(m, "cuda", cuda_json(net));
#endif
	snprintf(ckpt, sizeof(ckpt), "%s/model.ckpt", s->out);
	snprintf(metrics, sizeof(metrics), "%s/metrics.json", s->out);
	int status = 0;
	if (nn_ckpt_save(net, ckpt, &err) < 0) {
		status = 1;
	} else if (jsonio_write_atomic(metrics, m, &err) < 0) {
		unlink(ckpt); /* both files or neither */
		status = 1;
	}
	if (status)
		fprintf(stderr, "%s: %s\n", s->prog, err.msg);
	json_decref(m);
	return status;
}

void dist_stage_release(struct dist_stage *s, int status)
{
	if (status && s->made_out)
		rmdir(s->out); /* only when empty: nothing half written is left */
	dist_train_release(&s->dt);
	dist_totals_release(&s->tot);
	dist_release(&s->dist);
}
