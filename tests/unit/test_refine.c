/* Tests for nn/cyclegan (the training step and its errors), nn/refine (the
 * encodings, training on a mask shard, the two fusion modes and their counts)
 * and nn_ckpt_open_size. The CycleGAN step itself is checked against the
 * reference PyTorch step in tests/integration/torch_mirror.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/fs.h"
#include "nn/backend.h"
#include "nn/ckpt.h"
#include "nn/cyclegan.h"
#include "nn/dataset.h"
#include "nn/model.h"
#include "nn/refine.h"

static char tmpdir[] = "/tmp/cairn-refine.XXXXXX";

static void tmp_path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", tmpdir, name);
}

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

/* n tiles of S x S: background, a road (class 1) across, a house (class 2);
 * the imagery is each class's colour plus noise; 'missing' drops the house
 * of one tile in four from its mask (a map that left it out) but not from
 * the imagery. */
static int write_tiles(const char *path, int n, int S, int missing)
{
	struct dataset_shape shape = {3, (uint32_t)S, (uint32_t)S, 3, DATASET_LABEL_MASK};
	static const int colour[3][3] = {{60, 110, 50}, {150, 150, 150}, {180, 70, 60}};
	struct dataset_writer w;
	struct error err;
	if (dataset_writer_open(&w, path, &shape, &err) < 0)
		return -1;
	size_t plane = (size_t)S * S;
	uint8_t *px = malloc(3 * plane), *mask = malloc(plane), *drawn = malloc(plane);
	uint32_t s = 7;
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		memset(mask, 0, plane);
		int r = (int)(lcg(&s) % (uint32_t)(S - 4)), hy = (int)(lcg(&s) % (uint32_t)(S - 9)),
		    hx = (int)(lcg(&s) % (uint32_t)(S - 9));
		for (int y = r; y < r + 3; y++)
			for (int x = 0; x < S; x++)
				mask[y * S + x] = 1;
		for (int y = hy; y < hy + 8; y++)
			for (int x = hx; x < hx + 8; x++)
				mask[y * S + x] = 2;
		for (size_t p = 0; p < plane; p++)
			for (int c = 0; c < 3; c++)
				px[c * plane + p] = (uint8_t)(colour[mask[p]][c] + lcg(&s) % 20);
		memcpy(drawn, mask, plane);
		if (missing && i % 4 == 1)
			for (size_t p = 0; p < plane; p++)
				if (drawn[p] == 2)
					drawn[p] = 0;
		struct dataset_key key = {17, 100u + (uint32_t)i, 200u};
		rc = dataset_writer_add_mask(&w, px, drawn, &key, &err);
	}
	free(px), free(mask), free(drawn);
	if (rc == 0)
		return dataset_writer_finish(&w, &err);
	dataset_writer_abort(&w);
	return rc;
}

static void tiny(struct nn_cyclegan_config *cfg, int size)
{
	nn_cyclegan_defaults(cfg);
	cfg->be = nn_backend_cpu();
	cfg->gen = "cyclegan:base=4,blocks=1";
	cfg->disc = "patchgan:base=4,layers=2";
	cfg->height = cfg->width = size;
	cfg->batch = 2;
}

static void test_cyclegan_errors(void)
{
	struct nn_cyclegan_config cfg;
	struct nn_cyclegan c;
	struct error err;
	tiny(&cfg, 16);
	cfg.channels[1] = 2; /* identity needs equal channels */
	CHECK(nn_cyclegan_init(&c, &cfg, &err) < 0);
	CHECK(strstr(err.msg, "identity loss needs domains of the same channels") != NULL);
	nn_cyclegan_release(&c);
	cfg.identity = 0; /* then they may differ */
	CHECK_INT(nn_cyclegan_init(&c, &cfg, &err), 0);
	CHECK_INT(c.uses, 2);
	CHECK_INT(c.img[0], 2 * 3 * 16 * 16);
	CHECK_INT(c.img[1], 2 * 2 * 16 * 16);
	nn_cyclegan_release(&c);
	tiny(&cfg, 18); /* two stride-2 halvings: 18 does not come back as 18 */
	CHECK(nn_cyclegan_init(&c, &cfg, &err) < 0);
	CHECK(strstr(err.msg, "a multiple of 4") != NULL);
	nn_cyclegan_release(&c);
	tiny(&cfg, 16);
	cfg.gen = "cyclegan:bogus=1";
	CHECK(nn_cyclegan_init(&c, &cfg, &err) < 0);
	CHECK(strstr(err.msg, "CycleGAN: ") == err.msg);
	nn_cyclegan_release(&c);
}

/* Fixed batches: the cycle losses fall, every loss stays finite, each
 * module's weights move, and the paired term is reported only when on. */
static void test_cyclegan_learns_cycles(void)
{
	struct nn_cyclegan_config cfg;
	struct nn_cyclegan c;
	struct error err;
	tiny(&cfg, 16);
	if (nn_cyclegan_init(&c, &cfg, &err) < 0) {
		printf("# %s\n", err.msg);
		CHECK(0);
		return;
	}
	float *h = malloc(c.img[0] * sizeof(float));
	for (int m = 0; m < 2; m++) {
		for (size_t i = 0; i < c.img[m]; i++) /* 4 x 4 blocks of one value */
			h[i] = (float)((i / 4 % 4 + i / 64 % 4 + m) % 5) / 2.5f - 0.8f;
		c.cfg.be->upload(c.real[m], h, c.img[m] * sizeof(float));
	}
	float w0[4];
	struct nn_net *own[4] = {&c.g[0][0], &c.g[1][0], &c.d[0][NN_CG_REAL], &c.d[1][NN_CG_REAL]};
	for (int k = 0; k < 4; k++)
		w0[k] = own[k]->flat.w[7];
	nn_cyclegan_step(&c);
	float first = c.loss[NN_CG_LOSS_CYCLE_A] + c.loss[NN_CG_LOSS_CYCLE_B];
	CHECK(c.loss[NN_CG_LOSS_PAIRED] == 0);
	for (int i = 0; i < 150; i++)
		nn_cyclegan_step(&c);
	float last = c.loss[NN_CG_LOSS_CYCLE_A] + c.loss[NN_CG_LOSS_CYCLE_B];
	printf("# cycle L1 %.4f after 1 step, %.4f after 151\n", (double)first, (double)last);
	CHECK(last < 0.7f * first);
	for (int k = 0; k < NN_CG_LOSSES; k++)
		CHECK(isfinite(c.loss[k]));
	for (int k = 0; k < 4; k++)
		CHECK(own[k]->flat.w[7] != w0[k]);
	/* shared uses see their owner's weights */
	CHECK(c.g[0][NN_CG_RECONSTRUCT].flat.w == c.g[0][NN_CG_TRANSLATE].flat.w);
	CHECK_INT(nn_cyclegan_want_pairs(&c, 2, &err), 0);
	nn_cyclegan_step(&c);
	CHECK(c.loss[NN_CG_LOSS_PAIRED] > 0);
	free(h);
	nn_cyclegan_release(&c);
}

static void test_encodings(void)
{
	uint8_t px[3] = {0, 255, 51}, mask[3] = {0, 2, DATASET_MASK_IGNORE};
	float x[9];
	nn_refine_encode_image(px, 3, x);
	CHECK_NEAR(x[0], -1, 1e-6);
	CHECK_NEAR(x[1], 1, 1e-6);
	CHECK_NEAR(x[2], 51 / 127.5 - 1, 1e-6);
	nn_refine_encode_mask(mask, 3, 3, x);
	static const float want[9] = {1, -1, -1, -1, -1, -1, -1, 1, -1};
	for (int i = 0; i < 9; i++)
		CHECK_NEAR(x[i], want[i], 0);
}

static void test_check_inputs(void)
{
	char cls[4096], masks[4096];
	struct error err;
	struct dataset ds;
	tmp_path(cls, sizeof(cls), "class.ds");
	tmp_path(masks, sizeof(masks), "masks-only.ds");
	struct dataset_shape cs = {1, 4, 4, 3, DATASET_LABEL_CLASS},
			     ms = {0, 4, 4, 3, DATASET_LABEL_MASK};
	struct dataset_writer w;
	uint8_t px[16] = {0}, m[16] = {0};
	CHECK_INT(dataset_writer_open(&w, cls, &cs, &err), 0);
	CHECK_INT(dataset_writer_add(&w, px, 1, &err), 0);
	CHECK_INT(dataset_writer_finish(&w, &err), 0);
	CHECK_INT(dataset_writer_open(&w, masks, &ms, &err), 0);
	CHECK_INT(dataset_writer_add_mask(&w, NULL, m, NULL, &err), 0);
	CHECK_INT(dataset_writer_finish(&w, &err), 0);
	CHECK_INT(dataset_open(&ds, cls, 0, &err), 0);
	CHECK_INT(nn_refine_check(&ds, 1, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "class labels: give a mask shard") != NULL);
	dataset_close(&ds);
	CHECK_INT(dataset_open(&ds, masks, 0, &err), 0);
	CHECK_INT(nn_refine_check(&ds, 0, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "masks without imagery") != NULL);
	dataset_close(&ds);
}

/* The fusion, by hand: 5 pixels of 3 classes. */
static void test_fuse_hand_checked(void)
{
	/* planes: background, road, house; pixel 0 draws a house, 1 a road, 2
	   nothing above 0, 3 a house (ties with road: the lower class, road), 4 a house */
	static const float y[15] = {0.5f, -1,	-0.2f, -1,   -1,    /* background */
				    -1,	  0.9f, -0.5f, 0.7f, -1,    /* road */
				    0.8f, -1,	-0.3f, 0.7f, 0.6f}; /* house */
	const uint8_t map[5] = {0, 0, 1, 2, DATASET_MASK_IGNORE};
	uint8_t out[5];
	struct nn_refine_stats st;
	memset(&st, 0, sizeof(st));
	nn_refine_fuse(y, map, 5, 3, NN_REFINE_ADD, 0, out, &st);
	static const uint8_t add[5] = {2, 1, 1, 2, DATASET_MASK_IGNORE};
	CHECK(memcmp(out, add, 5) == 0);
	CHECK_INT(st.changed[0][2], 1);
	CHECK_INT(st.changed[0][1], 1);
	CHECK_INT(st.pixels, 5);
	memset(&st, 0, sizeof(st));
	nn_refine_fuse(y, map, 5, 3, NN_REFINE_REPLACE, 0, out, &st);
	static const uint8_t rep[5] = {2, 1, 0, 1, 2};
	CHECK(memcmp(out, rep, 5) == 0);
	CHECK_INT(st.changed[1][0], 1);
	CHECK_INT(st.changed[2][1], 1);
	CHECK_INT(st.changed[0][2] + st.changed[0][1], 2);
	memset(&st, 0, sizeof(st));
	nn_refine_fuse(y, map, 5, 3, NN_REFINE_ADD, 0.85f, out, &st); /* only the 0.9 road */
	static const uint8_t high[5] = {0, 1, 1, 2, DATASET_MASK_IGNORE};
	CHECK(memcmp(out, high, 5) == 0);
	CHECK_INT(st.changed[0][1], 1);
	CHECK_INT(st.changed[0][2], 0);
}

static int read_masks(const char *path, uint8_t **out, uint64_t *count, size_t *hw)
{
	struct dataset ds;
	struct error err;
	if (dataset_open(&ds, path, DATASET_VERIFY, &err) < 0)
		return -1;
	*hw = (size_t)ds.shape.height * ds.shape.width;
	*count = ds.count;
	*out = malloc(ds.count * *hw);
	for (uint64_t i = 0; i < ds.count; i++)
		memcpy(*out + i * *hw, dataset_mask(&ds, i), *hw);
	dataset_close(&ds);
	return 0;
}

/* Share of pixels where mode replace (the drawing alone) differs from the
 * map, for the generator in ckpt. */
static double disagreement(const char *ckpt, const struct dataset *ds, const char *out)
{
	struct nn_net gen;
	struct error err;
	struct nn_refine_stats st;
	if (nn_ckpt_open_size(&gen, nn_backend_cpu(), ckpt, 32, 32, &err) < 0 ||
	    nn_refine_apply(&gen, ds, out, NN_REFINE_REPLACE, 0, 5, &st, NULL, NULL, &err) < 0) {
		printf("# %s\n", err.msg);
		nn_net_release(&gen);
		return 1;
	}
	nn_net_release(&gen);
	uint64_t changed = 0;
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++)
			changed += st.changed[a][b];
	return (double)changed / st.pixels;
}

/* Training on a shard: the paired and cycle terms teach the generator the
 * maps (its drawing alone disagrees with them on few pixels, an untrained
 * one on many); apply keeps the tiles, keys and imagery, counts exactly
 * what it changed, keeps every label but background in add mode, draws
 * nothing with threshold 1, and refuses a generator for other tiles
 * without writing anything. How much the maps of real scenes improve is
 * measured by the mapping demo (docs/refine.md). */
static void test_refine_trains_and_applies(void)
{
	char path[4096], out[4096], ckpt[4096], raw[4096];
	tmp_path(path, sizeof(path), "tiles.ds");
	tmp_path(out, sizeof(out), "refined.ds");
	tmp_path(ckpt, sizeof(ckpt), "map.ckpt");
	tmp_path(raw, sizeof(raw), "untrained.ckpt");
	if (write_tiles(path, 12, 32, 1) < 0) {
		CHECK(0);
		return;
	}
	struct error err;
	struct dataset ds;
	CHECK_INT(dataset_open(&ds, path, 0, &err), 0);
	struct nn_refine_config cfg;
	nn_refine_defaults(&cfg);
	cfg.gan.be = nn_backend_cpu();
	cfg.gan.gen = "cyclegan:base=8,blocks=2";
	cfg.gan.disc = "patchgan:base=8,layers=2";
	cfg.crop = 32, cfg.steps = 1, cfg.paired = 10;
	struct nn_cyclegan c;
	CHECK_INT(nn_refine_train(&cfg, &ds, &c, NULL, &err), 0);
	CHECK_INT(nn_ckpt_save(&c.g[NN_CG_GA][NN_CG_TRANSLATE], raw, &err), 0);
	nn_cyclegan_release(&c);
	cfg.steps = 1500;
	int rc = nn_refine_train(&cfg, &ds, &c, NULL, &err);
	if (rc < 0)
		printf("# %s\n", err.msg);
	CHECK_INT(rc, 0);
	CHECK(c.loss[NN_CG_LOSS_PAIRED] > 0);
	CHECK_INT(nn_ckpt_save(&c.g[NN_CG_GA][NN_CG_TRANSLATE], ckpt, &err), 0);
	nn_cyclegan_release(&c);
	double before = disagreement(raw, &ds, out), after = disagreement(ckpt, &ds, out);
	printf("# the drawing alone against the map: %.1f%% of pixels differ untrained, %.1f%% "
	       "after 1500 steps\n",
	       100 * before, 100 * after);
	CHECK(before > 0.2);
	CHECK(after < 0.05);

	struct nn_net gen;
	CHECK_INT(nn_ckpt_open_size(&gen, nn_backend_cpu(), raw, 32, 32, &err), 0);
	struct nn_refine_stats st;
	CHECK_INT(nn_refine_apply(&gen, &ds, out, NN_REFINE_ADD, 0, 5, &st, NULL, NULL, &err), 0);
	uint8_t *a = NULL, *b = NULL;
	uint64_t na = 0, nb = 0, diff[3][3] = {{0}};
	size_t hw = 0;
	int kept = 1;
	CHECK_INT(read_masks(path, &a, &na, &hw), 0);
	CHECK_INT(read_masks(out, &b, &nb, &hw), 0);
	CHECK_INT(nb, na);
	for (size_t p = 0; a && b && p < na * hw; p++) {
		kept &= a[p] == 0 || a[p] == b[p]; /* add: every label but background stays */
		if (a[p] != b[p])
			diff[a[p]][b[p]]++;
	}
	CHECK(kept);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			CHECK_INT(st.changed[i][j], diff[i][j]);
	CHECK(diff[0][1] + diff[0][2] > 0); /* the untrained generator draws something */
	CHECK_INT(st.tiles, 12);
	CHECK_INT(st.pixels, 12 * 32 * 32);
	struct dataset in2, out2;
	CHECK_INT(dataset_open(&in2, path, 0, &err), 0);
	CHECK_INT(dataset_open(&out2, out, 0, &err), 0);
	for (uint64_t i = 0; i < 12 && out2.count == 12; i++) {
		CHECK(memcmp(dataset_image(&in2, i), dataset_image(&out2, i), in2.image_bytes) ==
		      0);
		CHECK_INT(dataset_key(&out2, i).x, dataset_key(&in2, i).x);
	}
	dataset_close(&in2), dataset_close(&out2);
	free(b);
	/* threshold 1: nothing is drawn; add keeps the map, replace leaves background */
	CHECK_INT(nn_refine_apply(&gen, &ds, out, NN_REFINE_ADD, 1, 4, &st, NULL, NULL, &err), 0);
	CHECK_INT(read_masks(out, &b, &nb, &hw), 0);
	CHECK(b && memcmp(a, b, na * hw) == 0);
	free(b);
	CHECK_INT(nn_refine_apply(&gen, &ds, out, NN_REFINE_REPLACE, 1, 4, &st, NULL, NULL, &err),
		  0);
	CHECK_INT(read_masks(out, &b, &nb, &hw), 0);
	size_t nonzero = 0;
	for (size_t p = 0; b && p < nb * hw; p++)
		nonzero += b[p] != 0;
	CHECK_INT(nonzero, 0);
	free(a), free(b);
	/* the wrong generator for these tiles is refused, and nothing is written */
	nn_net_release(&gen);
	CHECK_INT(nn_ckpt_open_size(&gen, nn_backend_cpu(), ckpt, 16, 16, &err), 0);
	remove(out);
	CHECK_INT(nn_refine_apply(&gen, &ds, out, NN_REFINE_ADD, 0, 4, &st, NULL, NULL, &err),
		  DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "give the generator trained on such tiles") != NULL);
	CHECK(!fs_exists(out));
	nn_net_release(&gen);
	/* crops larger than the tiles */
	cfg.crop = 64;
	CHECK_INT(nn_refine_train(&cfg, &ds, &c, NULL, &err), DATASET_EBADINPUT);
	CHECK(strstr(err.msg, "crops of 64 px do not fit its 32x32 tiles") != NULL);
	dataset_close(&ds);
}

/* nn_ckpt_open_size: a per-pixel net at another multiple of its size; not a
 * size it cannot take; not a net with one output per image. */
static void test_ckpt_open_size(void)
{
	char u[4096], k[4096];
	tmp_path(u, sizeof(u), "unet.ckpt");
	tmp_path(k, sizeof(k), "cnn.ckpt");
	struct nn_net net;
	struct error err;
	CHECK_INT(
	    nn_model_build(&net, nn_backend_cpu(), "unet:depth=2,base=4", 3, 16, 16, 3, 1, &err),
	    0);
	CHECK_INT(nn_ckpt_save(&net, u, &err), 0);
	nn_net_release(&net);
	CHECK_INT(
	    nn_model_build(&net, nn_backend_cpu(), "cnn:widths=4,convs=1", 3, 16, 16, 3, 1, &err),
	    0);
	CHECK_INT(nn_ckpt_save(&net, k, &err), 0);
	nn_net_release(&net);
	CHECK_INT(nn_ckpt_open_size(&net, nn_backend_cpu(), u, 40, 24, &err), 0);
	CHECK_INT(net.nodes[0].h, 40);
	CHECK_INT(net.nodes[net.nnodes - 1].w, 24);
	nn_net_release(&net);
	CHECK(nn_ckpt_open_size(&net, nn_backend_cpu(), u, 18, 16, &err) < 0);
	CHECK(strstr(err.msg, "cannot take 18x16 inputs: give sizes that are multiples") != NULL);
	CHECK(nn_ckpt_open_size(&net, nn_backend_cpu(), k, 32, 32, &err) < 0);
	CHECK(strstr(err.msg, "cannot take 32x32") != NULL);
	CHECK_INT(nn_ckpt_open_size(&net, nn_backend_cpu(), k, 16, 16, &err), 0);
	nn_net_release(&net);
}

/* A log of on_steps that travels in the state: the steps reported and
 * their first mean loss. */
static json_t *steps_log;
static void log_step(void *ctx, long step, long steps, const float *loss, double seconds)
{
	(void)ctx, (void)steps, (void)seconds;
	json_array_append_new(steps_log, json_pack("[I, f]", (json_int_t)step, (double)loss[0]));
}

/* The child of test_refine_resumes exits in this step's report, as under
 * kill -9, before logging it. */
static long die_step;
static void die_at(void *ctx, long step, long steps, const float *loss, double seconds)
{
	if (step == die_step)
		_exit(0);
	log_step(ctx, step, steps, loss, seconds);
}
static json_t *log_save(void *ctx)
{
	(void)ctx;
	return json_incref(steps_log);
}
static int log_load(void *ctx, const json_t *log)
{
	(void)ctx;
	if (!json_is_array(log))
		return -1;
	json_decref(steps_log);
	steps_log = json_deep_copy(log);
	return 0;
}

/* The training of test_refine_resumes on dir/rtiles.ds; stop > 0: a state
 * after every step, and an exit in step `stop`. */
static int resume_train(const char *dir, const char *state, long stop, struct nn_cyclegan *c,
			long *resumed)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/rtiles.ds", dir);
	struct error err;
	struct dataset ds;
	if (dataset_open(&ds, path, 0, &err) < 0)
		return -1;
	struct nn_refine_config cfg;
	nn_refine_defaults(&cfg);
	cfg.gan.be = nn_backend_cpu();
	cfg.gan.gen = "cyclegan:base=4,blocks=1";
	cfg.gan.disc = "patchgan:base=4,layers=2";
	cfg.crop = 16, cfg.steps = 12, cfg.every = 2;
	cfg.state_dir = state, cfg.state_every = 1e-9;
	cfg.on_steps = stop > 0 ? die_at : log_step;
	cfg.log_save = log_save, cfg.log_load = log_load;
	die_step = stop;
	int rc = nn_refine_train(&cfg, &ds, c, resumed, &err);
	if (rc < 0)
		printf("# %s\n", err.msg);
	dataset_close(&ds);
	return rc;
}

/* Stopped after step 7 of 12 (a child that exits in step 8, a state after
 * every step): the next start goes on from step 8 and ends with the four
 * nets of a training never stopped, bit for bit, and the caller's log of
 * every report. The child is this program run again (--refine-until): a fork
 * would inherit a thread pool without its threads. */
static void test_refine_resumes(void)
{
	char path[4096], st[4096], none[4096];
	tmp_path(path, sizeof(path), "rtiles.ds");
	tmp_path(st, sizeof(st), "state");
	tmp_path(none, sizeof(none), "state-none");
	CHECK_INT(write_tiles(path, 6, 32, 1), 0);
	struct nn_cyclegan a, b;
	long resumed = -1;
	steps_log = json_array();
	CHECK_INT(resume_train(tmpdir, none, 0, &a, &resumed), 0);
	CHECK_INT((int)resumed, 0);
	json_t *full = steps_log;
	steps_log = json_array();
	char cmd[9000];
	snprintf(cmd, sizeof(cmd), "/proc/%d/exe --refine-until %s %s 8", (int)getpid(), tmpdir,
		 st);
	CHECK_INT(system(cmd), 0);
	CHECK_INT(resume_train(tmpdir, st, 0, &b, &resumed), 0);
	CHECK_INT((int)resumed, 7);
	for (int m = 0; m < 2; m++) {
		const struct nn_flat *ga = &a.g[m][NN_CG_TRANSLATE].flat,
				     *gb = &b.g[m][NN_CG_TRANSLATE].flat;
		const struct nn_flat *da = &a.d[m][NN_CG_REAL].flat, *db = &b.d[m][NN_CG_REAL].flat;
		CHECK(ga->n == gb->n && !memcmp(ga->w, gb->w, ga->n * sizeof(float)));
		CHECK(da->n == db->n && !memcmp(da->w, db->w, da->n * sizeof(float)));
	}
	CHECK(json_equal(full, steps_log)); /* the reports of steps 2 .. 12, the same */
	CHECK_INT((int)json_array_size(steps_log), 6);
	json_decref(full), json_decref(steps_log);
	nn_cyclegan_release(&a), nn_cyclegan_release(&b);
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "--refine-until")) { /* test_refine_resumes */
		struct nn_cyclegan c;
		nn_cpu_set_threads(2);
		steps_log = json_array();
		resume_train(argv[2], argv[3], atol(argv[4]), &c, NULL);
		return 1; /* die_at exits 0 first */
	}
	if (!mkdtemp(tmpdir))
		return 1;
	nn_cpu_set_threads(2);
	RUN(test_cyclegan_errors);
	RUN(test_cyclegan_learns_cycles);
	RUN(test_encodings);
	RUN(test_check_inputs);
	RUN(test_fuse_hand_checked);
	RUN(test_refine_trains_and_applies);
	RUN(test_ckpt_open_size);
	RUN(test_refine_resumes);
	struct error err;
	fs_rm_rf(tmpdir, &err);
	return CHECK_DONE();
}
