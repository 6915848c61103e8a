/* Tests for nn/trainstate: a state round-trips every parameter, the
 * momentum, the step counts and the figures; a state of another training,
 * of another net, a damaged or a missing one each get their own answer.
 * That a resumed training ends with the model of one never stopped is
 * checked end to end in tests/integration/train_resume.sh. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/fs.h"
#include "core/mem.h"
#include "nn/backend.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/trainstate.h"

static char tmpdir[] = "/tmp/cairn-trainstate.XXXXXX";

/* A small net with its optimizer state, every value set from seed. */
static int make(struct nn_net *net, struct nn_optim *opt, const char *arch, float seed)
{
	struct error err;
	memset(net, 0, sizeof(*net));
	if (nn_model_build(net, nn_backend_cpu(), arch, 1, 8, 8, 3, 1, &err) < 0 ||
	    nn_net_prepare(net, 2, &err) < 0)
		return -1;
	nn_optim_defaults(opt);
	if (nn_optim_init(opt, net, &err) < 0)
		return -1;
	for (size_t i = 0; i < net->flat.n; i++)
		net->flat.w[i] = seed + 0.001f * (float)i;
	for (size_t i = 0; i < net->flat.ntrain; i++)
		net->flat.m[i] = seed - 0.002f * (float)i;
	opt->t = (long)(seed * 10);
	net->step = (uint64_t)(seed * 3);
	return 0;
}

static void test_round_trip(void)
{
	struct nn_net a, b;
	struct nn_optim oa, ob;
	struct error err;
	CHECK_INT(make(&a, &oa, "cnn:widths=4-8,fc=16", 5), 0);
	CHECK_INT(make(&b, &ob, "cnn:widths=4-8,fc=16", 0), 0);
	json_t *what = json_pack("{s:s, s:i, s:f}", "arch", a.arch, "epochs", 7, "lr", 0.05);
	json_t *fig = json_object();
	double acc[3] = {0.5, NAN, 0.75};
	float loss[3] = {2.5f, 1.25f, 0.5f};
	nn_figures_put(fig, "accuracy", acc, 3);
	nn_figures_put_float(fig, "loss", loss, 3);
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/state", tmpdir); /* made by save */
	/* 3 whole epochs and 17 batches of the 4th */
	struct nn_trainstate pos = {.epochs_done = 3,
				    .batches = 17,
				    .loss_sum = 0.1 + 4.2,
				    .seconds = 12.5,
				    .figures = fig};
	struct nn_trainpart pa = {&a, &oa}, pb = {&b, &ob};
	CHECK_INT(nn_trainstate_save(dir, what, &pa, 1, &pos, &err), 0);

	struct nn_trainstate st;
	CHECK_INT(nn_trainstate_load(dir, what, &pb, 1, &st, &err), 1);
	CHECK_INT(st.epochs_done, 3);
	CHECK_INT((int)st.batches, 17);
	CHECK(st.loss_sum == 0.1 + 4.2); /* a double, exactly */
	CHECK(st.seconds == 12.5);
	CHECK_INT(ob.t, 50);
	CHECK_INT((int)b.step, 15);
	CHECK(!memcmp(a.flat.w, b.flat.w, a.flat.n * sizeof(float)));
	CHECK(!memcmp(a.flat.m, b.flat.m, a.flat.ntrain * sizeof(float)));
	double acc2[3];
	float loss2[3];
	CHECK_INT(nn_figures_get(st.figures, "accuracy", acc2, 3), 0);
	CHECK(acc2[0] == 0.5 && isnan(acc2[1]) && acc2[2] == 0.75); /* NAN went as null */
	CHECK_INT(nn_figures_get_float(st.figures, "loss", loss2, 3), 0);
	CHECK(!memcmp(loss, loss2, sizeof(loss)));
	CHECK_INT(nn_figures_get(st.figures, "accuracy", acc2, 4), -1); /* shorter */
	CHECK_INT(nn_figures_get(st.figures, "iou", acc2, 1), -1);	/* missing */
	nn_trainstate_release(&st);

	/* another training: the setting that differs is named, both values */
	json_t *other = json_pack("{s:s, s:i, s:f}", "arch", a.arch, "epochs", 9, "lr", 0.05);
	CHECK_INT(nn_trainstate_load(dir, other, &pb, 1, &st, &err), -1);
	CHECK(strstr(err.msg, "its epochs is 7, this one's 9") != NULL);
	json_object_del(other, "epochs");
	json_object_set_new(other, "epochs", json_integer(7));
	json_object_set_new(other, "seed", json_integer(2));
	CHECK_INT(nn_trainstate_load(dir, other, &pb, 1, &st, &err), -1);
	CHECK(strstr(err.msg, "its seed is not set, this one's 2") != NULL);
	json_object_del(other, "seed");
	json_object_del(other, "lr");
	CHECK_INT(nn_trainstate_load(dir, other, &pb, 1, &st, &err), -1);
	CHECK(strstr(err.msg, "its lr is 0.05, this one has none") != NULL);
	json_decref(other);

	/* the same settings but another net: the sizes are named */
	struct nn_net c;
	struct nn_optim oc;
	CHECK_INT(make(&c, &oc, "cnn:widths=4-16,fc=16", 0), 0);
	struct nn_trainpart pc = {&c, &oc}, two[2] = {{&b, &ob}, {&c, &oc}};
	CHECK_INT(nn_trainstate_load(dir, what, &pc, 1, &st, &err), -1);
	CHECK(strstr(err.msg, "net 0 holds") != NULL);
	CHECK_INT(nn_trainstate_load(dir, what, two, 2, &st, &err), -1); /* one net, not two */
	CHECK(strstr(err.msg, "holds 1 nets, this training has 2") != NULL);

	/* damaged: one byte flipped in the middle */
	char path[300];
	snprintf(path, sizeof(path), "%s/" NN_TRAINSTATE_FILE, dir);
	char *data;
	size_t len;
	CHECK_INT(fs_read_all(path, &data, &len, &err), 0);
	data[len / 2] ^= 1;
	CHECK_INT(fs_write_atomic(path, data, len, &err), 0);
	mem_free(data);
	CHECK_INT(nn_trainstate_load(dir, what, &pb, 1, &st, &err), -1);
	CHECK(strstr(err.msg, "checksum mismatch") != NULL);

	/* none: a fresh start */
	snprintf(path, sizeof(path), "%s/none", tmpdir);
	CHECK_INT(nn_trainstate_load(path, what, &pb, 1, &st, &err), 0);
	CHECK_INT(st.epochs_done, 0);
	CHECK(st.figures == NULL);

	json_decref(what);
	json_decref(fig);
	nn_net_release(&a), nn_net_release(&b), nn_net_release(&c);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(test_round_trip);
	struct error err;
	fs_rm_rf(tmpdir, &err);
	return CHECK_DONE();
}
