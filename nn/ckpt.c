/* ckpt: writing and checked reading of checkpoints. */
#include "nn/ckpt.h"

#include <string.h>

#include "core/buf.h"
#include "core/fs.h"
#include "core/le.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "nn/model.h"

int nn_ckpt_save(const struct nn_net *net, const char *path, struct error *err)
{
	const struct nn_node *in = &net->nodes[0], *out = &net->nodes[net->nnodes - 1];
	const char *arch = net->arch ? net->arch : "";
	struct buf b = BUF_INIT;
	buf_add(&b, NN_CKPT_MAGIC, 8);
	le_put_u32(&b, NN_CKPT_VERSION);
	le_put_u32(&b, in->c), le_put_u32(&b, in->h), le_put_u32(&b, in->w), le_put_u32(&b, out->c);
	le_put_u32(&b, (uint32_t)strlen(arch));
	buf_adds(&b, arch);
	le_put_u32(&b, net->nparams);
	for (int i = 0; i < net->nparams; i++) {
		const struct nn_param *p = &net->params[i];
		size_t count = nn_tensor_count(&p->w);
		le_put_u32(&b, (uint32_t)strlen(p->name));
		buf_adds(&b, p->name);
		le_put_u32(&b, p->w.n), le_put_u32(&b, p->w.c), le_put_u32(&b, p->w.h),
		    le_put_u32(&b, p->w.w);
		/* host floats are little-endian on x86-64 and aarch64 */
		float *tmp = mem_alloc(count * sizeof(float) + 1);
		if (!tmp) {
			buf_release(&b);
			return error_set(err, "%s: out of memory", path);
		}
		if (nn_tensor_download(&p->w, tmp, count, err) < 0) {
			mem_free(tmp);
			buf_release(&b);
			return -1;
		}
		buf_add(&b, tmp, count * sizeof(float));
		mem_free(tmp);
	}
	char hex[SHA256_HEX_LEN + 1];
	if (b.failed) {
		buf_release(&b);
		return error_set(err, "%s: out of memory", path);
	}
	if (sha256_buf(b.s, b.len, hex, err) < 0) {
		buf_release(&b);
		return -1;
	}
	buf_add(&b, hex, SHA256_HEX_LEN);
	int rc = b.failed ? error_set(err, "%s: out of memory", path)
			  : fs_write_atomic(path, b.s, b.len, err);
	buf_release(&b);
	return rc;
}

static int verify_checksum(struct le_reader *r)
{
	char hex[SHA256_HEX_LEN + 1];
	size_t body = r->len - SHA256_HEX_LEN;
	if (sha256_buf(r->p, body, hex, r->err) < 0)
		return -1;
	if (memcmp(hex, r->p + body, SHA256_HEX_LEN))
		return error_set(r->err, "%s: checksum mismatch (truncated or corrupt file)", r->path);
	return 0;
}

/* Check magic, version and checksum; read the header. */
static int read_header(struct le_reader *r, struct nn_ckpt_info *info)
{
	char magic[8];
	uint32_t version, v[4], alen, nt;
	memset(info, 0, sizeof(*info));
	if (r->len < 8 || memcmp(r->p, NN_CKPT_MAGIC, 8))
		return error_set(r->err, "%s: not a cairn checkpoint (bad magic at byte 0)", r->path);
	le_read(r, magic, 8, "magic");
	if (le_read_u32(r, &version, "version") < 0)
		return -1;
	if (version != NN_CKPT_VERSION)
		return error_set(r->err, "%s: checkpoint version %u, this build reads version %u",
				 r->path, version, NN_CKPT_VERSION);
	if (r->len < 8 + SHA256_HEX_LEN)
		return error_set(r->err, "%s: truncated (%zu bytes)", r->path, r->len);
	/* the whole file checked before anything is read from it: a net is
	 * built from this header, and a damaged checkpoint leaves a net as it
	 * was */
	if (verify_checksum(r) < 0)
		return -1;
	for (int i = 0; i < 4; i++)
		if (le_read_u32(r, &v[i], "input shape") < 0)
			return -1;
	if (le_read_u32(r, &alen, "architecture length") < 0)
		return -1;
	if (r->off > r->len || alen > r->len - r->off)
		return error_set(r->err, "%s: truncated or corrupt: architecture of %u bytes at byte %zu",
				 r->path, alen, r->off);
	info->arch = mem_strndup((const char *)r->p + r->off, alen);
	if (!info->arch)
		return error_set(r->err, "%s: out of memory", r->path);
	if (le_read(r, NULL, alen, "architecture") < 0 || le_read_u32(r, &nt, "tensor count") < 0) {
		mem_free(info->arch);
		info->arch = NULL;
		return -1;
	}
	/* bounds a net can have, so that no sum or product of them overflows */
	if (v[0] < 1 || v[0] > 4096 || v[1] < 1 || v[1] > 65536 || v[2] < 1 || v[2] > 65536 ||
	    v[3] < 1 || v[3] > 1000000 || nt > 1000000) {
		mem_free(info->arch);
		info->arch = NULL;
		return error_set(r->err,
				 "%s: corrupt: input %ux%ux%u, %u outputs, %u tensors (a net takes "
				 "1-4096 channels of 1-65536 x 1-65536 pixels, 1-1000000 outputs)",
				 r->path, v[0], v[1], v[2], v[3], nt);
	}
	info->c = (int)v[0], info->h = (int)v[1], info->w = (int)v[2], info->nout = (int)v[3];
	info->ntensors = (int)nt;
	return 0;
}

int nn_ckpt_info(const char *path, struct nn_ckpt_info *info, struct error *err)
{
	char *data;
	size_t len;
	if (fs_read_all(path, &data, &len, err) < 0)
		return -1;
	struct le_reader r = {path, (const unsigned char *)data, len, 0, err};
	int rc = read_header(&r, info);
	mem_free(data);
	return rc;
}

/* One tensor of a checkpoint: its name and shape checked against net's,
 * its values uploaded when upload. */
static int read_tensor(struct le_reader *r, struct nn_net *net, int upload)
{
	uint32_t nlen, s[4];
	char name[64];
	if (le_read_u32(r, &nlen, "tensor name length") < 0)
		return -1;
	if (nlen >= sizeof(name))
		return error_set(r->err, "%s: corrupt: tensor name of %u bytes at byte %zu",
				 r->path, nlen, r->off);
	if (le_read(r, name, nlen, "tensor name") < 0)
		return -1;
	name[nlen] = 0;
	for (int k = 0; k < 4; k++)
		if (le_read_u32(r, &s[k], "tensor shape") < 0)
			return -1;
	struct nn_param *p = nn_net_param(net, name);
	if (!p)
		return error_set(r->err, "%s: tensor '%s' is not in the net", r->path, name);
	if ((int)s[0] != p->w.n || (int)s[1] != p->w.c || (int)s[2] != p->w.h ||
	    (int)s[3] != p->w.w)
		return error_set(r->err,
				 "%s: tensor '%s' has shape (%u, %u, %u, %u), the net expects (%d, "
				 "%d, %d, %d)",
				 r->path, name, s[0], s[1], s[2], s[3], p->w.n, p->w.c, p->w.h,
				 p->w.w);
	size_t count = nn_tensor_count(&p->w), at = r->off;
	if (le_read(r, NULL, count * sizeof(float), name) < 0)
		return -1;
	if (!upload)
		return 0;
	float *tmp = mem_alloc(count * sizeof(float) + 1); /* aligned for the upload */
	if (!tmp)
		return error_set(r->err, "%s: out of memory", r->path);
	memcpy(tmp, r->p + at, count * sizeof(float));
	int rc = nn_tensor_upload(&p->w, tmp, count, r->err);
	mem_free(tmp);
	return rc;
}

/* any_size: the net may take another height and width than the checkpoint's
 * (a fully convolutional net built for other tiles). */
static int load(struct nn_net *net, const char *path, int any_size, struct error *err)
{
	char *data;
	size_t len;
	if (fs_read_all(path, &data, &len, err) < 0)
		return -1;
	struct le_reader r = {path, (const unsigned char *)data, len, 0, err};
	struct nn_ckpt_info info;
	int rc = -1;
	if (read_header(&r, &info) < 0)
		goto out;
	r.len = len - SHA256_HEX_LEN; /* tensors may not run into the checksum */
	const struct nn_node *in = &net->nodes[0];
	if (net->arch && strcmp(info.arch, net->arch)) {
		error_set(err, "%s: architecture '%s' does not match the net's '%s'", path, info.arch,
			  net->arch);
		goto out;
	}
	if (info.c != in->c || (!any_size && (info.h != in->h || info.w != in->w))) {
		error_set(err, "%s: input %dx%dx%d, the net takes %dx%dx%d", path, info.c, info.h,
			  info.w, in->c, in->h, in->w);
		goto out;
	}
	if (info.ntensors != net->nparams) {
		error_set(err, "%s: %d tensors, the net has %d", path, info.ntensors, net->nparams);
		goto out;
	}
	/* pass 0 checks every tensor's name, shape and size, pass 1 uploads:
	 * a checkpoint that does not fit leaves the net as it was */
	size_t start = r.off;
	for (int pass = 0; pass < 2; pass++) {
		r.off = start;
		for (int i = 0; i < info.ntensors; i++)
			if (read_tensor(&r, net, pass) < 0)
				goto out;
		if (r.off != r.len) {
			error_set(err, "%s: %zu unexpected bytes after the last tensor", path,
				  r.len - r.off);
			goto out;
		}
	}
	rc = 0;
out:
	mem_free(info.arch);
	mem_free(data);
	return rc;
}

int nn_ckpt_load(struct nn_net *net, const char *path, struct error *err)
{
	return load(net, path, 0, err);
}

int nn_ckpt_open_size(struct nn_net *net, const struct nn_backend *be, const char *path, int h,
		      int w, struct error *err)
{
	struct nn_ckpt_info info;
	if (nn_ckpt_info(path, &info, err) < 0)
		return -1;
	int rc = 0, any_size = h > 0 && (h != info.h || w != info.w);
	if (any_size) {
		int mult = nn_model_size_multiple(info.arch, err);
		if (mult <= 0 || h % mult || w % mult)
			rc = mult < 0
				 ? -1
				 : error_set(
				       err,
				       "a '%s' net (trained on %dx%d) cannot take %dx%d inputs%s",
				       info.arch, info.h, info.w, h, w,
				       mult ? ": give sizes that are multiples of its own" : "");
	} else {
		h = info.h, w = info.w;
	}
	if (rc == 0)
		rc = nn_model_build(net, be, info.arch, info.c, h, w, info.nout, 0, err);
	if (rc < 0)
		error_prefix(err, "%s: ", path);
	mem_free(info.arch);
	if (rc < 0)
		return -1;
	if (load(net, path, any_size, err) < 0) {
		nn_net_release(net);
		return -1;
	}
	return 0;
}

int nn_ckpt_open(struct nn_net *net, const struct nn_backend *be, const char *path,
		 struct error *err)
{
	return nn_ckpt_open_size(net, be, path, 0, 0, err);
}
