/* trainstate: writing and checked reading of a training's state. */
#include "nn/trainstate.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/le.h"
#include "core/jsonio.h"
#include "core/mem.h"
#include "core/sha256.h"

#define MAGIC "CAIRNTST"
#define VERSION 1u

/* Append count floats of device memory (host floats are little-endian on
 * x86-64 and aarch64). */
static void put_floats(struct buf *b, const struct nn_backend *be, const float *src, size_t count)
{
	if (!count)
		return;
	float *tmp = mem_alloc(count * sizeof(float));
	if (!tmp) {
		b->failed = 1;
		return;
	}
	be->download(tmp, src, count * sizeof(float));
	buf_add(b, tmp, count * sizeof(float));
	mem_free(tmp);
}

static void state_path(struct buf *p, const char *dir)
{
	buf_reset(p);
	buf_addf(p, "%s/%s", dir, NN_TRAINSTATE_FILE);
}

int nn_trainstate_save(const char *dir, const json_t *what, const struct nn_trainpart *parts,
		       int nparts, const struct nn_trainstate *st, struct error *err)
{
	for (int i = 0; i < nparts; i++)
		if (parts[i].net->flat.ntrain && !parts[i].net->flat.m)
			return error_set(err,
					 "train state: the optimizer of part %d has no state "
					 "yet (nn_optim_init)",
					 i);
	struct buf path = BUF_INIT;
	state_path(&path, dir);
	json_t *steps = json_array(), *net_steps = json_array();
	for (int i = 0; i < nparts; i++) {
		json_array_append_new(steps, json_integer((json_int_t)parts[i].opt->t));
		json_array_append_new(net_steps, json_integer((json_int_t)parts[i].net->step));
	}
	json_t *head =
	    json_pack("{s:O, s:i, s:I, s:f, s:o, s:o, s:f, s:O}", "what", what, "epochs_done",
		      st->epochs_done, "batches", (json_int_t)st->batches, "loss_sum", st->loss_sum,
		      "steps", steps, "net_steps", net_steps, "seconds", st->seconds, "figures",
		      st->figures ? st->figures : json_null());
	char *text = head ? json_dumps(head, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(head);
	struct buf b = BUF_INIT;
	int rc = -1;
	if (!text || path.failed) {
		error_set(err, "%s: out of memory", dir);
		goto out;
	}
	buf_add(&b, MAGIC, 8);
	le_put_u32(&b, VERSION);
	le_put_u32(&b, (uint32_t)strlen(text));
	buf_adds(&b, text);
	le_put_u32(&b, (uint32_t)nparts);
	for (int i = 0; i < nparts; i++) {
		const struct nn_flat *f = &parts[i].net->flat;
		size_t moments = f->v ? f->ntrain : 0;
		le_put_u64(&b, f->n), le_put_u64(&b, f->ntrain), le_put_u64(&b, moments);
		put_floats(&b, parts[i].net->be, f->w, f->n);
		put_floats(&b, parts[i].net->be, f->m, f->ntrain);
		put_floats(&b, parts[i].net->be, f->v, moments);
	}
	char hex[SHA256_HEX_LEN + 1];
	if (b.failed) {
		error_set(err, "%s: out of memory", path.s);
		goto out;
	}
	if (sha256_buf(b.s, b.len, hex, err) < 0)
		goto out;
	buf_add(&b, hex, SHA256_HEX_LEN);
	if (b.failed)
		error_set(err, "%s: out of memory", path.s);
	else if (fs_mkdir_p(dir, err) == 0)
		rc = fs_write_atomic(path.s, b.s, b.len, err);
out:
	free(text);
	buf_release(&b);
	buf_release(&path);
	return rc;
}

static char *dump(const json_t *v)
{
	return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS |
				     JSON_REAL_PRECISION(7))
		 : NULL;
}

/* The first setting of now that the state's differs in (or lacks), named. */
static int same_training(const char *path, const json_t *was, const json_t *now, struct error *err)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)now, key, v)
	{
		json_t *w = json_object_get(was, key);
		if (w && json_equal(w, v))
			continue;
		char *a = dump(w), *b = dump(v);
		error_set(err,
			  "%s holds another training: its %s is %s, this one's %s: remove it to "
			  "start over, or give another state folder",
			  path, key, a ? a : "not set", b ? b : "?");
		free(a), free(b);
		return -1;
	}
	json_object_foreach((json_t *)was, key, v)
	{
		if (json_object_get(now, key))
			continue;
		char *a = dump(v);
		error_set(err,
			  "%s holds another training: its %s is %s, this one has none: remove "
			  "it to start over, or give another state folder",
			  path, key, a ? a : "?");
		free(a);
		return -1;
	}
	return 0;
}

/* The floats of n values into device memory at dst (NULL: skipped). */
static int read_floats(struct le_reader *r, const struct nn_backend *be, float *dst, uint64_t n,
		       const char *what)
{
	if (n > (r->len - r->off) / sizeof(float))
		return le_read(r, NULL, r->len - r->off + 1, what);
	if (n)
		be->upload(dst, r->p + r->off, n * sizeof(float));
	r->off += n * sizeof(float);
	return 0;
}

int nn_trainstate_load(const char *dir, const json_t *what, const struct nn_trainpart *parts,
		       int nparts, struct nn_trainstate *st, struct error *err)
{
	memset(st, 0, sizeof(*st));
	struct buf path = BUF_INIT;
	state_path(&path, dir);
	if (path.failed)
		return error_set(err, "%s: out of memory", dir);
	if (!fs_exists(path.s)) {
		buf_release(&path);
		return 0;
	}
	char *data = NULL;
	size_t len;
	json_t *head = NULL;
	int rc = -1;
	if (fs_read_all(path.s, &data, &len, err) < 0)
		goto out;
	struct le_reader r = {path.s, (const unsigned char *)data, len, 0, err};
	char magic[8], hex[SHA256_HEX_LEN + 1];
	uint32_t version, json_len;
	if (le_read(&r, magic, 8, "the magic") < 0)
		goto out;
	if (memcmp(magic, MAGIC, 8)) {
		error_set(err, "%s: not a cairn training state (bad magic)", path.s);
		goto out;
	}
	if (len < 8 + SHA256_HEX_LEN) {
		error_set(err, "%s: truncated (%zu bytes): remove it to start over", path.s, len);
		goto out;
	}
	if (sha256_buf(data, len - SHA256_HEX_LEN, hex, err) < 0)
		goto out;
	if (memcmp(hex, data + len - SHA256_HEX_LEN, SHA256_HEX_LEN)) {
		error_set(err,
			  "%s: checksum mismatch (damaged, or truncated): remove it to start over",
			  path.s);
		goto out;
	}
	r.len = len - SHA256_HEX_LEN;
	if (le_read_u32(&r, &version, "the version") < 0 ||
	    le_read_u32(&r, &json_len, "the header") < 0)
		goto out;
	if (version != VERSION) {
		error_set(err, "%s: version %u, this cairn reads version %u", path.s, version,
			  VERSION);
		goto out;
	}
	if (json_len > r.len - r.off) {
		le_read(&r, NULL, json_len, "the header");
		goto out;
	}
	json_error_t jerr;
	head = json_loadb(data + r.off, json_len, 0, &jerr);
	r.off += json_len;
	if (!json_is_object(head)) {
		error_set(err, "%s: header is not a JSON object (%s)", path.s, jerr.text);
		goto out;
	}
	if (same_training(path.s, json_object_get(head, "what"), what, err) < 0)
		goto out;
	uint32_t np;
	if (le_read_u32(&r, &np, "the part count") < 0)
		goto out;
	if ((int)np != nparts) {
		error_set(err, "%s: holds %u nets, this training has %d", path.s, np, nparts);
		goto out;
	}
	for (int i = 0; i < nparts; i++) {
		const struct nn_flat *f = &parts[i].net->flat;
		const struct nn_backend *be = parts[i].net->be;
		uint64_t n, ntrain, moments;
		if (le_read_u64(&r, &n, "the sizes") < 0 ||
		    le_read_u64(&r, &ntrain, "the sizes") < 0 ||
		    le_read_u64(&r, &moments, "the sizes") < 0)
			goto out;
		if (n != f->n || ntrain != f->ntrain || moments != (f->v ? f->ntrain : 0)) {
			error_set(
			    err,
			    "%s: net %d holds %" PRIu64 " parameters (%" PRIu64
			    " trainable, %" PRIu64 " second moments), this one has %zu (%zu, %zu)",
			    path.s, i, n, ntrain, moments, f->n, f->ntrain, f->v ? f->ntrain : 0);
			goto out;
		}
		if (read_floats(&r, be, f->w, n, "the parameters") < 0 ||
		    read_floats(&r, be, f->m, ntrain, "the momentum") < 0 ||
		    read_floats(&r, be, f->v, moments, "the second moments") < 0)
			goto out;
	}
	if (r.off != r.len) {
		error_set(err, "%s: %zu bytes past the end of its contents", path.s, r.len - r.off);
		goto out;
	}
	st->epochs_done = (int)jsonio_int(head, "epochs_done", 0);
	st->batches = (uint64_t)jsonio_int(head, "batches", 0);
	st->loss_sum = jsonio_num(head, "loss_sum", 0);
	st->seconds = jsonio_num(head, "seconds", 0);
	for (int i = 0; i < nparts; i++) {
		parts[i].opt->t =
		    (long)json_integer_value(json_array_get(json_object_get(head, "steps"), i));
		parts[i].net->step = (uint64_t)json_integer_value(
		    json_array_get(json_object_get(head, "net_steps"), i));
	}
	json_t *figures = json_object_get(head, "figures");
	st->figures = json_is_null(figures) ? NULL : json_incref(figures);
	rc = 1;
out:
	json_decref(head);
	mem_free(data);
	buf_release(&path);
	return rc;
}

void nn_trainstate_release(struct nn_trainstate *st)
{
	json_decref(st->figures);
	memset(st, 0, sizeof(*st));
}

void nn_trainstate_where(char *out, size_t size, int epochs_done, uint64_t batches, int epochs)
{
	if (batches)
		snprintf(out, size, "after epoch %d and %" PRIu64 " batches of epoch %d of %d",
			 epochs_done, batches, epochs_done + 1, epochs);
	else
		snprintf(out, size, "after epoch %d of %d", epochs_done, epochs);
}

void nn_figures_put(json_t *figures, const char *key, const double *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, isfinite(v[i]) ? json_real(v[i]) : json_null());
	json_object_set_new(figures, key, a);
}

void nn_figures_put_float(json_t *figures, const char *key, const float *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, isfinite(v[i]) ? json_real(v[i]) : json_null());
	json_object_set_new(figures, key, a);
}

int nn_figures_get(const json_t *figures, const char *key, double *v, size_t n)
{
	const json_t *a = json_object_get(figures, key);
	if (!json_is_array(a) || json_array_size(a) < n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const json_t *x = json_array_get(a, i);
		v[i] = json_is_number(x) ? json_number_value(x) : NAN;
	}
	return 0;
}

int nn_figures_get_float(const json_t *figures, const char *key, float *v, size_t n)
{
	const json_t *a = json_object_get(figures, key);
	if (!json_is_array(a) || json_array_size(a) < n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const json_t *x = json_array_get(a, i);
		v[i] = json_is_number(x) ? (float)json_number_value(x) : NAN;
	}
	return 0;
}
