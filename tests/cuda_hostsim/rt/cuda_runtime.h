/* A CUDA runtime on the host, for the host simulation of nn/cuda's host code
 * (tests/integration/cuda_hostsim.sh, part 2; tests/cuda_hostsim/sim_rt.cpp):
 * the calls rt.cu, conv.cu and graph.cu make, with the semantics they rely
 * on, made strict where a GPU is lenient by chance:
 *
 *  - device memory is host memory that the simulator hands out and bounds-
 *    checks (a library call on memory that is not a live device block stops
 *    the run); new blocks are filled with 0xff bytes (NaN as floats);
 *  - work queued on a stream runs as late as allowed: only when something
 *    waits for it (a stream or event synchronization, a cross-stream wait
 *    reached, a blocking call), so a host buffer rewritten before the copy
 *    that reads it has run, or a missing wait between the two streams, gives
 *    wrong numbers here even where a GPU would usually have been fast enough;
 *  - stream capture records the work into a graph that a launch queues
 *    again; calls a real capture refuses (allocation, frees, synchronization,
 *    copies from pageable memory, cuDNN's algorithm search) fail with
 *    cudaErrorStreamCaptureUnsupported and invalidate the capture, as they do
 *    on a GPU;
 *  - a kernel launch is checked against the hardware limits (grid, block)
 *    and queued; it runs with one thread per block (block_sum is replaced by
 *    the identity, tests/cuda_hostsim/transform.py --sim).
 * One lock serializes every call (the loader's thread may wait on an event
 * while the main thread queues work). */
#ifndef SIM_CUDA_RUNTIME_H
#define SIM_CUDA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include <functional>
extern "C" {
#endif

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(x)

enum cudaError {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInvalidConfiguration = 9,
	cudaErrorInvalidDevicePointer = 17,
	cudaErrorNoKernelImageForDevice = 209,
	cudaErrorNoDevice = 100,
	cudaErrorInvalidResourceHandle = 400,
	cudaErrorStreamCaptureUnsupported = 900,
	cudaErrorStreamCaptureInvalidated = 901,
	cudaErrorStreamCaptureWrongThread = 908,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
	cudaMemcpyHostToHost = 0,
	cudaMemcpyHostToDevice = 1,
	cudaMemcpyDeviceToHost = 2,
	cudaMemcpyDeviceToDevice = 3,
};
enum cudaStreamCaptureMode {
	cudaStreamCaptureModeGlobal = 0,
	cudaStreamCaptureModeThreadLocal = 1,
	cudaStreamCaptureModeRelaxed = 2,
};
enum cudaDeviceAttr {
	cudaDevAttrMultiProcessorCount = 16,
	cudaDevAttrComputeCapabilityMajor = 75,
	cudaDevAttrComputeCapabilityMinor = 76,
};
struct cudaFuncAttributes {
	int maxThreadsPerBlock, numRegs;
};
#define cudaStreamNonBlocking 0x01u
#define cudaEventDisableTiming 0x02u

typedef struct sim_stream *cudaStream_t;
typedef struct sim_event *cudaEvent_t;
typedef struct sim_graph *cudaGraph_t;
typedef struct sim_graph *cudaGraphExec_t;

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int d);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
/* blocking: the copy, after everything queued before it (bench/cuda_step) */
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k,
			    cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode m);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
typedef struct sim_graph_node *cudaGraphNode_t;
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *count);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaDeviceSynchronize(void);
/* The driver's calls by name (tests/cuda_hostsim/rt/cuda.h has those the
 * simulation offers: its virtual memory management). */
enum cudaDriverEntryPointQueryResult {
	cudaDriverEntryPointSuccess = 0,
	cudaDriverEntryPointSymbolNotFound = 1,
	cudaDriverEntryPointVersionNotSufficent = 2,
};
#define cudaEnableDefault 0x0ull
#define CUDART_VERSION 13000
cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn, unsigned int version,
					     unsigned long long flags,
					     enum cudaDriverEntryPointQueryResult *status);

/* ---- for the other fakes and the kernels ---- */

/* Run s's queued work (a blocking library call: cuDNN's algorithm search). */
cudaError_t sim_stream_flush(cudaStream_t s, const char *call);
/* Whether s is being captured; a call a capture refuses invalidates it. */
int sim_capturing(cudaStream_t s);
void sim_capture_refuse(cudaStream_t s);
/* [p, p + n) lies in one live device block; otherwise the run stops with a
 * message naming the call and the argument (what a GPU reports as an illegal
 * address, or memcheck as an invalid access). */
void sim_dev_check(const void *p, size_t n, const char *call, const char *arg);
/* Sets the sticky last error (cudaGetLastError) and returns e. */
cudaError_t sim_error(cudaError_t e);

#ifdef __cplusplus
}

/* A kernel's attributes: the simulated GPU runs every kernel, unless
 * CAIRN_SIM_NO_IMAGE=1 plays a build without code for it. */
cudaError_t sim_func_attributes(cudaFuncAttributes *a);
template <class F> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, F *f)
{
	(void)f;
	return sim_func_attributes(a);
}

/* Queue f on s (into its graph while s is being captured); the lock is taken. */
void sim_enqueue(cudaStream_t s, std::function<void()> f);

/* ---- kernels: one thread per block ---- */

struct dim3 {
	unsigned x, y, z;
	dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline dim3 blockIdx(0, 0, 0), threadIdx(0, 0, 0), blockDim(1, 1, 1), gridDim(1, 1, 1);
static inline void __syncthreads(void) {}

/* k<<<grid, block, 0, stream>>>(args) becomes SIM_LAUNCH(k, grid, block, stream)(args):
 * the launch limits are checked now, the blocks run when the stream gets there. */
template <class F> struct sim_launcher {
	dim3 g;
	unsigned threads;
	cudaStream_t s;
	F f;
	template <class... A> void operator()(A... a)
	{
		if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535 ||
		    g.z > 65535 || threads == 0 || threads > 1024) {
			sim_error(cudaErrorInvalidConfiguration);
			return;
		}
		dim3 grid = g;
		F fn = f;
		sim_enqueue(s, [=]() {
			gridDim = grid;
			for (unsigned y = 0; y < grid.y; y++)
				for (unsigned x = 0; x < grid.x; x++) {
					blockIdx = dim3(x, y, 0);
					fn(a...);
				}
		});
	}
};
#define SIM_LAUNCH(k, G, B, S) sim_launcher<decltype(&k)>{dim3(G), (unsigned)(B), S, &k}
#endif /* __cplusplus */

#endif
