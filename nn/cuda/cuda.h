/* cuda: the CUDA backend of nn/ (cuDNN convolutions, cuBLAS gemm, own
 * kernels for the rest) and the few switches a program or test may set on it.
 * The table itself is reached through nn_backend_cuda() / nn_backend_by_name
 * ("cuda") in nn/backend.h; only builds with `make CUDA=1` have this module. */
#ifndef NN_CUDA_H
#define NN_CUDA_H

#include <stddef.h>

#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible CUDA devices; 0 when there is no driver, no device, or
 * CUDA_VISIBLE_DEVICES hides them all (never fails). */
int nn_cuda_device_count(void);
/* The visible device the backend uses (-1 before it is set up): the one
 * CAIRN_CUDA_DEVICE names, else the process's rank on its node (Open MPI's
 * OMPI_COMM_WORLD_LOCAL_RANK, MPICH's MPI_LOCALRANKID, srun's SLURM_LOCALID)
 * modulo the visible devices, so that the ranks of a stage with ranks = N
 * and gpus = N each take their own GPU; else device 0. A CAIRN_CUDA_DEVICE
 * out of range makes the backend unusable, and nn_cuda_error says why. */
int nn_cuda_device(void);

/* Math of convolutions and gemm. FP32: plain FMA (cuDNN CUDNN_FMA_MATH,
 * cuBLAS pedantic), results within 1e-5 of the CPU reference. TF32: tensor
 * cores with 10-bit mantissas on Ampere and Hopper (within 5e-3). BF16: mixed
 * precision: convolutions and gemms read bf16 copies of a net's weights (cast
 * once per forward pass from its flat buffer) and accumulate in fp32; a
 * net's activations and their gradients are kept in bf16 (act_alloc in
 * nn/backend.h: half the bytes moved and half the memory), every other op
 * computes in fp32 on them; master weights, weight gradients and optimizer
 * state stay fp32 (within 3e-2). No loss scaling: bf16 has fp32's 8-bit
 * exponent, so the small gradients fp16 would flush to zero stay
 * representable. A change of precision re-backs activation blocks (fp32
 * needs their whole size) and fails, the precision unchanged, when that does
 * not fit. The default is TF32 (FP32 on GPUs older than Ampere, which have no
 * TF32), or what CAIRN_CUDA_PRECISION=fp32|tf32|bf16 says at first use. BF16
 * needs compute capability 8.0: asked of an older GPU it is refused. */
enum nn_cuda_precision { NN_CUDA_FP32 = 0, NN_CUDA_TF32 = 1, NN_CUDA_BF16 = 2 };
int nn_cuda_set_precision(enum nn_cuda_precision p, struct error *err);
enum nn_cuda_precision nn_cuda_get_precision(void);
/* "fp32", "tf32" or "bf16" -> the enum; -1 with a message otherwise. */
int nn_cuda_parse_precision(const char *s, enum nn_cuda_precision *p, struct error *err);
/* The name of a precision ("fp32", "tf32", "bf16"). */
const char *nn_cuda_precision_name(enum nn_cuda_precision p);

/* The backend slots return nothing (see nn/backend.h), so a failed CUDA,
 * cuDNN or cuBLAS call is reported here: the message names the call, the op
 * and its shapes. The first failure is kept (later ones would only be its
 * consequences); nn_cuda_error copies it and returns -1, or returns 0. */
int nn_cuda_error(struct error *err);
void nn_cuda_clear_error(void);

/* What happens after a failure inside a slot. The default handler prints
 * "cairn: cuda: MESSAGE" on stderr and exits with status 1: the device state
 * is undefined after most CUDA errors and the training loops have no error
 * path through the table, so going on would only compute garbage (and the
 * checkpoint writer is atomic, so nothing is left half written). A test may
 * install its own handler, which must not return into the failed slot if it
 * wants to stop there (longjmp), or may return to let the slot go on as a
 * no-op. Allocation failures never call it: alloc returns NULL and the
 * message (bytes asked, bytes free) is kept for nn_cuda_error. */
void nn_cuda_set_fatal(void (*fn)(const char *msg));

/* Allocator statistics: device bytes held (from cudaMalloc, and the
 * device memory backing activation storage), bytes handed out now and at
 * most, and the number of cudaMalloc calls so far (a training step's steady
 * state makes none). act_backed: the device memory behind the blocks of
 * act_alloc (counted in reserved and in_use too); in bf16 about half their
 * size. act_vmm: 1 when the driver's virtual memory management backs them
 * (so that bf16 can give half back); 0 when the driver has none, and -1
 * when its calls failed (stderr said which): the blocks are then ordinary
 * ones of the allocator, backed in full and not counted in act_backed.
 * device_free, device_total: what cudaMemGetInfo says now. */
struct nn_cuda_mem_stats {
	size_t reserved, in_use, peak_in_use;
	size_t cuda_mallocs, cache_hits;
	size_t act_backed;
	int act_vmm;
	size_t device_free, device_total;
};
void nn_cuda_get_mem_stats(struct nn_cuda_mem_stats *s);
/* Give every cached, unused block back to the driver. */
void nn_cuda_empty_cache(void);
/* The most device memory the allocator may hold (its blocks, cached or in
 * use, and the memory behind activation storage; not what cuDNN and cuBLAS
 * take for themselves), for stages sharing a GPU; 0: no limit (the
 * default). An allocation over it fails as out of memory does, its message
 * naming the limit. CAIRN_CUDA_MEMORY_LIMIT=SIZE (bytes, or with K, M, G
 * or T: 40G) sets it at start; a bad value makes the backend unusable. */
void nn_cuda_set_memory_limit(size_t bytes);

/* Convolution algorithms. A shape gets its plan the first time it is seen:
 * for each pass the algorithm with the smallest median time over `runs`
 * cudnnFind* searches (default 3, or CAIRN_CUDA_CONV_SEARCH=1..9 at start;
 * one search alone ranks passes of a fraction of a millisecond differently
 * from call to call). Plans made after a change keep it; earlier ones stay.
 * CAIRN_CUDA_CONV_LOG=1 prints each plan as it is made on stderr: the
 * shape, each pass's algorithm, math type and median time, the workspace. */
struct nn_conv_desc;
void nn_cuda_set_conv_search(int runs);
/* The plan of d in the current precision (made now when there is none):
 * cuDNN's forward, backward-data and backward-filter algorithm numbers,
 * and its workspace in bytes (ws may be NULL); -1 when the backend is
 * unusable or the plan cannot be made (nn_cuda_error says why). */
int nn_cuda_conv_algos(const struct nn_conv_desc *d, int algo[3], size_t *ws);

/* What nn/backend.h's step slot did so far (nn/cuda/graph.cu): steps run,
 * of which eagerly (warm-up, a new signature, graphs off), captured, and
 * replayed from a graph; failed captures (each then runs eagerly); the size
 * of the last graph (what a launch-bound step would cost in launches without
 * it). Graphs are on unless CAIRN_CUDA_GRAPH=0 or CAIRN_CUDA_SYNC=1. */
struct nn_cuda_graph_stats {
	size_t steps, eager, captures, replays, failures;
	size_t nodes; /* kernels, copies and library kernels in the graph captured last */
};
void nn_cuda_get_graph_stats(struct nn_cuda_graph_stats *s);

#ifdef __cplusplus
}
#endif

#endif
