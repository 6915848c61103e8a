/* ckpt: the one checkpoint format of cairn models, the same for CPU and
 * CUDA. Little-endian:
 *   "CAIRNCKP" | u32 version (1) | u32 in_c, in_h, in_w, nout |
 *   u32 arch_len | arch (canonical model spec, no NUL) | u32 ntensors |
 *   per tensor: u32 name_len | name | u32 n, c, h, w | n*c*h*w float32 |
 *   64 hex chars: sha256 of every byte before them.
 * Loading checks all of it and says what is wrong: bad magic, newer version,
 * truncated file, checksum, architecture or tensor shape mismatch. */
#ifndef NN_CKPT_H
#define NN_CKPT_H

#include "nn/net.h"

#define NN_CKPT_MAGIC "CAIRNCKP"
#define NN_CKPT_VERSION 1u

struct nn_ckpt_info {
	char *arch; /* mem_free */
	int c, h, w, nout;
	int ntensors;
};

/* Every parameter (trainable and statistics) of a net built by nn_model_build. */
int nn_ckpt_save(const struct nn_net *net, const char *path, struct error *err);
int nn_ckpt_info(const char *path, struct nn_ckpt_info *info, struct error *err);
/* Load into a net of the same architecture. */
int nn_ckpt_load(struct nn_net *net, const char *path, struct error *err);
/* Build the net the checkpoint describes, then load it. */
int nn_ckpt_open(struct nn_net *net, const struct nn_backend *be, const char *path,
		 struct error *err);
/* The same for inputs of h x w instead of the checkpoint's (h = 0: its own).
 * Per-pixel nets (unet, cyclegan) are fully convolutional: their weights fit
 * any size that is a multiple of nn_model_size_multiple; other nets are refused. */
int nn_ckpt_open_size(struct nn_net *net, const struct nn_backend *be, const char *path, int h,
		      int w, struct error *err);

#endif
