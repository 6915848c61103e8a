/* sim_rt: the CUDA runtime, cuDNN and cuBLAS calls of nn/cuda on the host,
 * for the host simulation of rt.cu, conv.cu and graph.cu (what each fake
 * promises: the headers in tests/cuda_hostsim/rt). Everything runs on the calling
 * thread under one lock; queued work runs only when something waits for it. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

extern "C" {
#include "core/error.h"
#include "nn/backend.h"
#include "nn/cpu/cpu_ops.h"
}
#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_runtime.h"
#include "cudnn.h"

static std::recursive_mutex mu;
#define LOCKED std::lock_guard<std::recursive_mutex> lock_(mu)

[[noreturn]] static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cuda sim: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

/* ---- errors ---------------------------------------------------------- */

static thread_local cudaError_t last_error = cudaSuccess;

cudaError_t sim_error(cudaError_t e)
{
	if (e != cudaSuccess)
		last_error = e;
	return e;
}

cudaError_t cudaGetLastError(void)
{
	cudaError_t e = last_error;
	last_error = cudaSuccess;
	return e;
}

const char *cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess:
		return "no error";
	case cudaErrorInvalidValue:
		return "invalid argument";
	case cudaErrorMemoryAllocation:
		return "out of memory";
	case cudaErrorInvalidConfiguration:
		return "invalid configuration argument";
	case cudaErrorInvalidDevicePointer:
		return "invalid device pointer";
	case cudaErrorNoDevice:
		return "no CUDA-capable device is detected";
	case cudaErrorInvalidResourceHandle:
		return "invalid resource handle";
	case cudaErrorStreamCaptureUnsupported:
		return "operation not permitted when stream is capturing";
	case cudaErrorStreamCaptureInvalidated:
		return "operation failed due to a previous error during capture";
	case cudaErrorNoKernelImageForDevice:
		return "no kernel image is available for execution on the device";
	case cudaErrorStreamCaptureWrongThread:
		return "attempt to terminate a thread-local capture sequence from another thread";
	}
	return "unknown error";
}

/* ---- memory ------------------------------------------------------------ */

static std::map<uintptr_t, size_t> dev_blocks, pinned_blocks;
/* the accessible ranges of VMM reservations, adjacent ones merged (cuda.h) */
static std::map<uintptr_t, size_t> vmm_blocks;
static size_t dev_used;

static size_t dev_total(void)
{
	const char *e = getenv("CAIRN_SIM_DEVICE_MB");
	return (size_t)(e && *e ? atol(e) : 16384) << 20;
}

static bool inside(const std::map<uintptr_t, size_t> &m, const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;
	auto it = m.upper_bound(a);
	if (it == m.begin())
		return false;
	--it;
	return a >= it->first && a - it->first <= it->second && n <= it->second - (a - it->first);
}

static bool dev_inside(const void *p, size_t n)
{
	return inside(dev_blocks, p, n) || inside(vmm_blocks, p, n);
}

/* Device memory a captured graph's copies and library calls use: checked
 * again at each launch (a graph holds raw addresses, so a buffer freed
 * after the capture is an illegal address on a GPU the next time the graph
 * runs). The kernels' own arguments are not checked. */
struct sim_use {
	const void *p;
	size_t n;
	const char *call, *arg;
};
static std::vector<sim_use> *capture_uses; /* the capture in progress, if any */

void sim_dev_check(const void *p, size_t n, const char *call, const char *arg)
{
	LOCKED;
	if (!dev_inside(p, n ? n : 1))
		die("%s: %s = %p (%zu bytes) is not inside a live device block (an illegal address "
		    "on a GPU)",
		    call, arg, p, n);
	if (capture_uses)
		capture_uses->push_back(sim_use{p, n, call, arg});
}

static bool is_pinned(const void *p, size_t n)
{
	return inside(pinned_blocks, p, n ? n : 1);
}

/* ---- streams, events, capture ------------------------------------------ */

struct sim_op {
	std::function<void()> fn;
	sim_stream *wait = nullptr; /* a cross-stream wait: run `wait` up to wait_seq first */
	size_t wait_seq = 0;
};
struct sim_graph {
	std::vector<std::function<void()>> ops;
	std::vector<sim_use> uses;
};
struct sim_stream {
	std::deque<sim_op> q;
	size_t enq = 0, done = 0;
	int running = 0;
	sim_graph *cap = nullptr;
	bool cap_bad = false;
	cudaStreamCaptureMode cap_mode = cudaStreamCaptureModeGlobal;
	std::thread::id cap_thread;
};
struct sim_event {
	sim_stream *s = nullptr;
	size_t seq = 0;
};
static std::vector<sim_stream *> streams;
static sim_stream legacy; /* the stream of a handle nobody set one on */

static void run_until(sim_stream *s, size_t seq)
{
	if (s->running && seq > s->done)
		die("streams wait on each other in a cycle (a deadlock on a GPU)");
	s->running++;
	while (s->done < seq) {
		sim_op o = std::move(s->q.front());
		s->q.pop_front();
		if (o.wait)
			run_until(o.wait, o.wait_seq);
		if (o.fn)
			o.fn();
		s->done++;
	}
	s->running--;
}

static void run_all(void)
{
	for (sim_stream *s : streams)
		run_until(s, s->enq);
	run_until(&legacy, legacy.enq);
}

int sim_capturing(cudaStream_t s)
{
	LOCKED;
	return s && s->cap != nullptr;
}

void sim_capture_refuse(cudaStream_t s)
{
	LOCKED;
	if (s && s->cap)
		s->cap_bad = true;
}

/* A call a capture in progress on this thread refuses (allocation, frees,
 * synchronization): the capture is invalidated, as on a GPU. */
static cudaError_t unsafe_during_capture(void)
{
	for (sim_stream *s : streams)
		if (s->cap && s->cap_mode != cudaStreamCaptureModeRelaxed &&
		    s->cap_thread == std::this_thread::get_id()) {
			s->cap_bad = true;
			return sim_error(cudaErrorStreamCaptureUnsupported);
		}
	return cudaSuccess;
}

void sim_enqueue(cudaStream_t s, std::function<void()> f)
{
	LOCKED;
	if (!s)
		s = &legacy;
	if (s->cap) {
		if (s->cap_bad)
			sim_error(cudaErrorStreamCaptureInvalidated);
		else
			s->cap->ops.push_back(std::move(f));
		return;
	}
	s->q.push_back(sim_op{std::move(f)});
	s->enq++;
}

cudaError_t sim_stream_flush(cudaStream_t s, const char *call)
{
	LOCKED;
	if (!s)
		s = &legacy;
	if (s->cap) {
		(void)call;
		s->cap_bad = true;
		return sim_error(cudaErrorStreamCaptureUnsupported);
	}
	run_until(s, s->enq);
	return cudaSuccess;
}

/* ---- the runtime API --------------------------------------------------- */

static int gpus(void)
{
	const char *e = getenv("CAIRN_SIM_GPUS");
	return e && *e ? atoi(e) : 1;
}

cudaError_t cudaGetDeviceCount(int *n)
{
	*n = gpus();
	return *n > 0 ? cudaSuccess : sim_error(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int d)
{
	return d >= 0 && d < gpus() ? cudaSuccess : sim_error(cudaErrorInvalidValue);
}

cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int d)
{
	(void)d;
	const char *cc = getenv("CAIRN_SIM_CC"); /* compute capability x 10; 90 by default */
	int c = cc && *cc ? atoi(cc) : 90;
	if (a == cudaDevAttrMultiProcessorCount)
		*v = 132; /* an H100 SXM's: the same launch geometry as there */
	else if (a == cudaDevAttrComputeCapabilityMajor)
		*v = c / 10;
	else if (a == cudaDevAttrComputeCapabilityMinor)
		*v = c % 10;
	else
		return sim_error(cudaErrorInvalidValue);
	return cudaSuccess;
}

cudaError_t sim_func_attributes(cudaFuncAttributes *a)
{
	const char *e = getenv("CAIRN_SIM_NO_IMAGE");
	if (e && *e && strcmp(e, "0"))
		return sim_error(cudaErrorNoKernelImageForDevice);
	a->maxThreadsPerBlock = 1024, a->numRegs = 32;
	return cudaSuccess;
}

static cudaError_t alloc_in(std::map<uintptr_t, size_t> &m, void **p, size_t n, bool device)
{
	LOCKED;
	*p = nullptr;
	if (cudaError_t e = unsafe_during_capture())
		return e;
	if (device && (n > dev_total() || dev_used > dev_total() - n))
		return sim_error(cudaErrorMemoryAllocation);
	void *q = malloc(n ? n : 1);
	if (!q)
		return sim_error(cudaErrorMemoryAllocation);
	memset(q, 0xff, n); /* NaN as floats: a read before any write shows */
	m[(uintptr_t)q] = n;
	if (device)
		dev_used += n;
	*p = q;
	return cudaSuccess;
}

static cudaError_t free_in(std::map<uintptr_t, size_t> &m, void *p, bool device)
{
	LOCKED;
	if (!p)
		return cudaSuccess;
	if (cudaError_t e = unsafe_during_capture())
		return e;
	auto it = m.find((uintptr_t)p);
	if (it == m.end())
		return sim_error(device ? cudaErrorInvalidDevicePointer : cudaErrorInvalidValue);
	run_all(); /* frees wait for the device */
	if (device)
		dev_used -= it->second;
	m.erase(it);
	free(p);
	return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n)
{
	return alloc_in(dev_blocks, p, n, true);
}
cudaError_t cudaFree(void *p)
{
	return free_in(dev_blocks, p, true);
}
cudaError_t cudaMallocHost(void **p, size_t n)
{
	return alloc_in(pinned_blocks, p, n, false);
}
cudaError_t cudaFreeHost(void *p)
{
	return free_in(pinned_blocks, p, false);
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
	LOCKED;
	*total = dev_total();
	*free_bytes = *total - dev_used;
	return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
	LOCKED;
	(void)flags;
	*s = new sim_stream();
	streams.push_back(*s);
	return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
	LOCKED;
	if (!s)
		s = &legacy;
	if (s->cap) {
		s->cap_bad = true;
		return sim_error(cudaErrorStreamCaptureUnsupported);
	}
	if (cudaError_t e = unsafe_during_capture())
		return e;
	run_until(s, s->enq);
	return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags)
{
	(void)flags;
	*e = new sim_event();
	return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
	delete e;
	return cudaSuccess;
}

/* Events inside a capture (a graph's fork and join) are not simulated: no
 * code of nn/cuda records one there, and one that did would fail here. */
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
	LOCKED;
	if (!e)
		return sim_error(cudaErrorInvalidResourceHandle);
	if (!s)
		s = &legacy;
	if (s->cap) {
		s->cap_bad = true;
		return sim_error(cudaErrorStreamCaptureUnsupported);
	}
	e->s = s;
	e->seq = s->enq;
	return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags)
{
	LOCKED;
	(void)flags;
	if (!e)
		return sim_error(cudaErrorInvalidResourceHandle);
	if (!s)
		s = &legacy;
	if (!e->s || e->s == s) /* never recorded, or in order already */
		return cudaSuccess;
	if (s->cap) {
		s->cap_bad = true;
		return sim_error(cudaErrorStreamCaptureUnsupported);
	}
	sim_op o;
	o.wait = e->s;
	o.wait_seq = e->seq;
	s->q.push_back(std::move(o));
	s->enq++;
	return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
	LOCKED;
	if (!e)
		return sim_error(cudaErrorInvalidResourceHandle);
	if (cudaError_t r = unsafe_during_capture())
		return r;
	if (e->s)
		run_until(e->s, e->seq);
	return cudaSuccess;
}

/* Pageable host memory as CUDA treats it: a host-to-device copy reads the
 * source before returning; a device-to-host copy waits for the stream and
 * copies before returning. Pinned memory is read and written when the copy
 * runs. In a capture only pinned memory may take part. */
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k,
			    cudaStream_t s)
{
	LOCKED;
	if (!s)
		s = &legacy;
	if (n == 0)
		return cudaSuccess;
	const char *what = "cudaMemcpyAsync";
	switch (k) {
	case cudaMemcpyHostToDevice:
		sim_dev_check(dst, n, what, "dst (host to device)");
		break;
	case cudaMemcpyDeviceToHost:
		sim_dev_check(src, n, what, "src (device to host)");
		break;
	case cudaMemcpyDeviceToDevice:
		sim_dev_check(dst, n, what, "dst (device to device)");
		sim_dev_check(src, n, what, "src (device to device)");
		break;
	default:
		return sim_error(cudaErrorInvalidValue);
	}
	const void *host = k == cudaMemcpyHostToDevice	 ? src
			   : k == cudaMemcpyDeviceToHost ? dst
							 : NULL;
	bool pinned = host && is_pinned(host, n);
	if (s->cap) {
		if (s->cap_bad)
			return sim_error(cudaErrorStreamCaptureInvalidated);
		if (host && !pinned) {
			s->cap_bad = true;
			return sim_error(cudaErrorStreamCaptureUnsupported);
		}
	}
	if (!host || pinned) {
		sim_enqueue(s, [=]() { memmove(dst, src, n); });
		return cudaSuccess;
	}
	if (k == cudaMemcpyHostToDevice) {
		auto copy =
		    std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
		sim_enqueue(s, [=]() { memcpy(dst, copy->data(), n); });
		return cudaSuccess;
	}
	run_until(s, s->enq);
	memcpy(dst, src, n);
	return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind k)
{
	cudaError_t e = cudaMemcpyAsync(dst, src, n, k, NULL);
	return e ? e : cudaDeviceSynchronize();
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode m)
{
	LOCKED;
	if (!s || s->cap)
		return sim_error(cudaErrorInvalidValue);
	s->cap = new sim_graph();
	capture_uses = &s->cap->uses;
	s->cap_bad = false;
	s->cap_mode = m;
	s->cap_thread = std::this_thread::get_id();
	return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g)
{
	LOCKED;
	*g = nullptr;
	if (!s || !s->cap)
		return sim_error(cudaErrorInvalidValue);
	if (s->cap_thread != std::this_thread::get_id())
		return sim_error(cudaErrorStreamCaptureWrongThread);
	sim_graph *c = s->cap;
	s->cap = nullptr;
	capture_uses = nullptr;
	if (s->cap_bad) {
		delete c;
		return sim_error(cudaErrorStreamCaptureInvalidated);
	}
	*g = c;
	return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags)
{
	(void)flags;
	if (!g)
		return sim_error(cudaErrorInvalidValue);
	*x = new sim_graph(*g);
	return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s)
{
	LOCKED;
	if (!x)
		return sim_error(cudaErrorInvalidValue);
	if (s && s->cap) {
		s->cap_bad = true;
		return sim_error(cudaErrorStreamCaptureUnsupported);
	}
	for (const sim_use &u : x->uses)
		if (!dev_inside(u.p, u.n ? u.n : 1))
			die("graph launch: %s: %s = %p (%zu bytes), live when the graph was captured, "
			    "has been freed since (an illegal address on a GPU)",
			    u.call, u.arg, u.p, u.n);
	for (auto &f : x->ops)
		sim_enqueue(s, f);
	return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x)
{
	delete x;
	return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
	delete g;
	return cudaSuccess;
}

/* The count only (nodes must be NULL: nn/cuda asks for nothing more). */
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *count)
{
	if (!g || nodes)
		return sim_error(cudaErrorInvalidValue);
	*count = g->ops.size();
	return cudaSuccess;
}

/* On the legacy stream, as CUDA does (nn/cuda never calls it: bench/cuda_step's bare calls do). */
cudaError_t cudaMemset(void *p, int v, size_t n)
{
	LOCKED;
	if (n)
		sim_dev_check(p, n, "cudaMemset", "p");
	sim_enqueue(nullptr, [=]() { memset(p, v, n); });
	return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
	LOCKED;
	if (cudaError_t e = unsafe_during_capture())
		return e;
	run_all();
	return cudaSuccess;
}

/* ---- the driver's virtual memory management (cuda.h) -------------------- */

#include <sys/mman.h>

#include "cuda.h"

static size_t vmm_gran(void) { return (size_t)64 << 10; }

struct sim_chunk {
	size_t size;
	int maps = 0;
};
struct sim_reservation {
	size_t size;
	std::map<uintptr_t, std::pair<size_t, sim_chunk *>> mapped; /* start: length, chunk */
};
static std::map<uintptr_t, sim_reservation> reservations;

/* The reservation [p, p + n) lies in; NULL if none. */
static sim_reservation *reservation_of(uintptr_t p, size_t n)
{
	auto it = reservations.upper_bound(p);
	if (it == reservations.begin())
		return nullptr;
	--it;
	if (p < it->first || p - it->first > it->second.size || n > it->second.size - (p - it->first))
		return nullptr;
	return &it->second;
}

static bool queued_work(void)
{
	for (sim_stream *s : streams)
		if (s->done < s->enq)
			return true;
	return legacy.done < legacy.enq;
}

static void range_add(std::map<uintptr_t, size_t> &m, uintptr_t a, size_t n)
{
	auto next = m.find(a + n);
	if (next != m.end()) {
		n += next->second;
		m.erase(next);
	}
	auto it = m.lower_bound(a);
	if (it != m.begin()) {
		--it;
		if (it->first + it->second == a) {
			it->second += n;
			return;
		}
	}
	m[a] = n;
}

static void range_remove(std::map<uintptr_t, size_t> &m, uintptr_t a, size_t n)
{
	auto it = m.upper_bound(a);
	if (it == m.begin())
		return;
	--it;
	uintptr_t s0 = it->first;
	size_t len = it->second;
	if (a + n > s0 + len)
		return;
	m.erase(it);
	if (a > s0)
		m[s0] = a - s0;
	if (s0 + len > a + n)
		m[a + n] = s0 + len - (a + n);
}

static CUresult sim_cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *prop,
						  CUmemAllocationGranularity_flags f)
{
	(void)prop, (void)f;
	*g = vmm_gran();
	return CUDA_SUCCESS;
}

static CUresult sim_cuDeviceGet(CUdevice *d, int ordinal)
{
	*d = ordinal;
	return CUDA_SUCCESS;
}

static CUresult sim_cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
	(void)d;
	if (a != CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED)
		return CUDA_ERROR_INVALID_VALUE;
	const char *e = getenv("CAIRN_SIM_NO_VMM");
	*v = !(e && *e && strcmp(e, "0"));
	return CUDA_SUCCESS;
}

static CUresult sim_cuGetErrorName(CUresult r, const char **s)
{
	*s = r == CUDA_SUCCESS		       ? "CUDA_SUCCESS"
	     : r == CUDA_ERROR_INVALID_VALUE   ? "CUDA_ERROR_INVALID_VALUE"
	     : r == CUDA_ERROR_OUT_OF_MEMORY   ? "CUDA_ERROR_OUT_OF_MEMORY"
	     : r == CUDA_ERROR_NOT_SUPPORTED   ? "CUDA_ERROR_NOT_SUPPORTED"
					       : "CUDA_ERROR_UNKNOWN";
	return CUDA_SUCCESS;
}

static CUresult sim_cuMemAddressReserve(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr,
					unsigned long long flags)
{
	LOCKED;
	(void)align, (void)addr, (void)flags;
	if (!size || size % vmm_gran())
		return CUDA_ERROR_INVALID_VALUE;
	/* aligned to the granularity, as the driver's: trimmed from a larger range */
	size_t g = vmm_gran();
	char *q = (char *)mmap(NULL, size + g, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (q == MAP_FAILED)
		return CUDA_ERROR_OUT_OF_MEMORY;
	size_t lead = (g - (uintptr_t)q % g) % g;
	if (lead)
		munmap(q, lead);
	munmap(q + lead + size, g - lead);
	q += lead;
	reservations[(uintptr_t)q] = sim_reservation{size, {}};
	*p = (CUdeviceptr)(uintptr_t)q;
	return CUDA_SUCCESS;
}

static CUresult sim_cuMemAddressFree(CUdeviceptr p, size_t size)
{
	LOCKED;
	auto it = reservations.find((uintptr_t)p);
	if (it == reservations.end() || it->second.size != size)
		die("cuMemAddressFree(%#llx, %zu): not a reservation of that size", p, size);
	if (!it->second.mapped.empty())
		die("cuMemAddressFree(%#llx): ranges are still mapped", p);
	munmap((void *)(uintptr_t)p, size);
	reservations.erase(it);
	return CUDA_SUCCESS;
}

static CUresult sim_cuMemCreate(CUmemGenericAllocationHandle *h, size_t size,
				const CUmemAllocationProp *prop, unsigned long long flags)
{
	LOCKED;
	(void)flags;
	if (!size || size % vmm_gran() || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	if (size > dev_total() || dev_used > dev_total() - size)
		return CUDA_ERROR_OUT_OF_MEMORY;
	dev_used += size;
	*h = (CUmemGenericAllocationHandle)(uintptr_t) new sim_chunk{size};
	return CUDA_SUCCESS;
}

static CUresult sim_cuMemRelease(CUmemGenericAllocationHandle h)
{
	LOCKED;
	sim_chunk *c = (sim_chunk *)(uintptr_t)h;
	if (c->maps)
		die("cuMemRelease of a chunk still mapped (cairn unmaps first)");
	dev_used -= c->size;
	delete c;
	return CUDA_SUCCESS;
}

static CUresult sim_cuMemMap(CUdeviceptr p, size_t size, size_t off, CUmemGenericAllocationHandle h,
			     unsigned long long flags)
{
	LOCKED;
	(void)flags;
	sim_chunk *c = (sim_chunk *)(uintptr_t)h;
	sim_reservation *r = reservation_of((uintptr_t)p, size);
	if (!r || (uintptr_t)p % vmm_gran() || size % vmm_gran() || off || size != c->size)
		return CUDA_ERROR_INVALID_VALUE;
	for (auto &m : r->mapped)
		if (m.first < p + size && p < m.first + m.second.first)
			return CUDA_ERROR_INVALID_VALUE; /* already mapped */
	r->mapped[(uintptr_t)p] = {size, c};
	c->maps++;
	return CUDA_SUCCESS;
}

static CUresult sim_cuMemSetAccess(CUdeviceptr p, size_t size, const CUmemAccessDesc *d, size_t n)
{
	LOCKED;
	sim_reservation *r = reservation_of((uintptr_t)p, size);
	if (!r || n != 1 || d->flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
		return CUDA_ERROR_INVALID_VALUE;
	auto it = r->mapped.find((uintptr_t)p);
	if (it == r->mapped.end() || it->second.first != size)
		return CUDA_ERROR_INVALID_VALUE; /* cairn sets access on whole mapped chunks */
	const char *e = getenv("CAIRN_SIM_VMM_FAIL"); /* a driver that refuses */
	if (e && *e && strcmp(e, "0"))
		return CUDA_ERROR_NOT_SUPPORTED;
	if (mprotect((void *)(uintptr_t)p, size, PROT_READ | PROT_WRITE))
		die("cuMemSetAccess: mprotect failed");
	memset((void *)(uintptr_t)p, 0xff, size); /* NaN as floats, as cudaMalloc here */
	range_add(vmm_blocks, (uintptr_t)p, size);
	return CUDA_SUCCESS;
}

static CUresult sim_cuMemUnmap(CUdeviceptr p, size_t size)
{
	LOCKED;
	sim_reservation *r = reservation_of((uintptr_t)p, size);
	if (!r)
		return CUDA_ERROR_INVALID_VALUE;
	auto it = r->mapped.find((uintptr_t)p);
	if (it == r->mapped.end() || it->second.first != size)
		return CUDA_ERROR_INVALID_VALUE;
	/* not stream-ordered: work still queued could use the range */
	if (queued_work())
		die("cuMemUnmap(%#llx, %zu) with device work still queued (synchronize first)", p,
		    size);
	it->second.second->maps--;
	r->mapped.erase(it);
	range_remove(vmm_blocks, (uintptr_t)p, size);
	madvise((void *)(uintptr_t)p, size, MADV_DONTNEED);
	mprotect((void *)(uintptr_t)p, size, PROT_NONE);
	return CUDA_SUCCESS;
}

cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn, unsigned int version,
					     unsigned long long flags,
					     enum cudaDriverEntryPointQueryResult *status)
{
	(void)version, (void)flags;
	static const struct {
		const char *name;
		void *fn;
	} table[] = {
		{"cuMemGetAllocationGranularity", (void *)sim_cuMemGetAllocationGranularity},
		{"cuDeviceGet", (void *)sim_cuDeviceGet},
		{"cuDeviceGetAttribute", (void *)sim_cuDeviceGetAttribute},
		{"cuGetErrorName", (void *)sim_cuGetErrorName},
		{"cuMemAddressReserve", (void *)sim_cuMemAddressReserve},
		{"cuMemAddressFree", (void *)sim_cuMemAddressFree},
		{"cuMemCreate", (void *)sim_cuMemCreate},
		{"cuMemRelease", (void *)sim_cuMemRelease},
		{"cuMemMap", (void *)sim_cuMemMap},
		{"cuMemSetAccess", (void *)sim_cuMemSetAccess},
		{"cuMemUnmap", (void *)sim_cuMemUnmap},
	};
	*fn = nullptr;
	for (const auto &t : table)
		if (!strcmp(t.name, symbol)) {
			*fn = t.fn;
			if (status)
				*status = cudaDriverEntryPointSuccess;
			return cudaSuccess;
		}
	if (status)
		*status = cudaDriverEntryPointSymbolNotFound;
	return cudaSuccess;
}

/* ---- numbers as the libraries read them -------------------------------- */

static float tf32(float f) /* round to nearest even at 10 mantissa bits */
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7f800000u) != 0x7f800000u)
		u = (u + 0xfffu + ((u >> 13) & 1)) & ~0x1fffu;
	memcpy(&f, &u, 4);
	return f;
}

/* count values at p of type bf16 or float into a float vector, TF32-rounded
 * when asked */
static std::vector<float> read_vals(const void *p, size_t count, bool is_bf16, bool round_tf32)
{
	std::vector<float> v(count);
	for (size_t i = 0; i < count; i++) {
		float f = is_bf16 ? __bfloat162float(((const __nv_bfloat16 *)p)[i])
				  : ((const float *)p)[i];
		v[i] = round_tf32 ? tf32(f) : f;
	}
	return v;
}

static void write_vals(void *p, const float *v, size_t count, bool is_bf16, float alpha, float beta)
{
	for (size_t i = 0; i < count; i++) {
		if (is_bf16) {
			__nv_bfloat16 *q = (__nv_bfloat16 *)p + i;
			float old = beta != 0 ? __bfloat162float(*q) : 0;
			*q = __float2bfloat16_rn(alpha * v[i] + (beta != 0 ? beta * old : 0));
		} else {
			float *q = (float *)p + i;
			*q = alpha * v[i] + (beta != 0 ? beta * *q : 0);
		}
	}
}

/* ---- cuDNN ------------------------------------------------------------- */

struct sim_dnn {
	cudaStream_t s;
};
struct sim_tensor_desc {
	int set;
	cudnnDataType_t t;
	int n, c, h, w;
	int nhwc; /* CUDNN_TENSOR_NHWC (a filter's: KRSC) */
};
struct sim_conv_desc {
	int set;
	int pad_h, pad_w, u, v, dil_h, dil_w;
	cudnnConvolutionMode_t mode;
	cudnnDataType_t compute;
	int groups;
	cudnnMathType_t math;
};

const char *cudnnGetErrorString(cudnnStatus_t s)
{
	switch (s) {
	case CUDNN_STATUS_SUCCESS:
		return "CUDNN_STATUS_SUCCESS";
	case CUDNN_STATUS_NOT_INITIALIZED:
		return "CUDNN_STATUS_NOT_INITIALIZED";
	case CUDNN_STATUS_BAD_PARAM:
		return "CUDNN_STATUS_BAD_PARAM";
	case CUDNN_STATUS_NOT_SUPPORTED:
		return "CUDNN_STATUS_NOT_SUPPORTED";
	case CUDNN_STATUS_EXECUTION_FAILED:
		return "CUDNN_STATUS_EXECUTION_FAILED";
	}
	return "CUDNN_STATUS_UNKNOWN";
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *h)
{
	*h = new sim_dnn{nullptr};
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s)
{
	h->s = s;
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d)
{
	*d = new sim_tensor_desc();
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d)
{
	*d = new sim_tensor_desc();
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d)
{
	*d = new sim_conv_desc();
	(*d)->groups = 1;
	(*d)->math = CUDNN_DEFAULT_MATH;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d)
{
	delete d;
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d)
{
	delete d;
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d)
{
	delete d;
	return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t set4d(sim_tensor_desc *d, cudnnTensorFormat_t f, cudnnDataType_t t, int n,
			   int c, int h, int w)
{
	if ((f != CUDNN_TENSOR_NCHW && f != CUDNN_TENSOR_NHWC) ||
	    (t != CUDNN_DATA_FLOAT && t != CUDNN_DATA_BFLOAT16) || n <= 0 || c <= 0 || h <= 0 ||
	    w <= 0)
		return CUDNN_STATUS_BAD_PARAM;
	*d = sim_tensor_desc{1, t, n, c, h, w, f == CUDNN_TENSOR_NHWC};
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f,
					 cudnnDataType_t t, int n, int c, int h, int w)
{
	return set4d(d, f, t, n, c, h, w);
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t,
					 cudnnTensorFormat_t f, int k, int c, int h, int w)
{
	return set4d(d, f, t, k, c, h, w);
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w,
					      int u, int v, int dil_h, int dil_w,
					      cudnnConvolutionMode_t mode, cudnnDataType_t compute)
{
	if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dil_h <= 0 || dil_w <= 0)
		return CUDNN_STATUS_BAD_PARAM;
	d->set = 1;
	d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v, d->dil_h = dil_h, d->dil_w = dil_w;
	d->mode = mode, d->compute = compute;
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups)
{
	if (groups <= 0)
		return CUDNN_STATUS_BAD_PARAM;
	d->groups = groups;
	return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m)
{
	d->math = m;
	return CUDNN_STATUS_SUCCESS;
}

static int out_dim(int in, int pad, int k, int dil, int stride)
{
	return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t c,
						    cudnnTensorDescriptor_t x,
						    cudnnFilterDescriptor_t w, int *n, int *ch,
						    int *h, int *wd)
{
	if (!c->set || !x->set || !w->set || x->c != w->c * c->groups)
		return CUDNN_STATUS_BAD_PARAM;
	*n = x->n, *ch = w->n;
	*h = out_dim(x->h, c->pad_h, w->h, c->dil_h, c->u);
	*wd = out_dim(x->w, c->pad_w, w->w, c->dil_w, c->v);
	return *h > 0 && *wd > 0 ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_BAD_PARAM;
}

/* The shape in nn's terms: x, w, y agree with each other and the descriptor. */
static cudnnStatus_t shape_of(const sim_tensor_desc *x, const sim_tensor_desc *w,
			      const sim_conv_desc *c, const sim_tensor_desc *y,
			      struct nn_conv_desc *d)
{
	if (!x->set || !w->set || !c->set || !y->set || x->t != w->t || x->t != y->t ||
	    c->compute != CUDNN_DATA_FLOAT || c->mode != CUDNN_CROSS_CORRELATION)
		return CUDNN_STATUS_BAD_PARAM;
	if (c->pad_h != c->pad_w || c->u != c->v || c->dil_h != c->dil_w)
		return CUDNN_STATUS_NOT_SUPPORTED; /* nn's descriptors are square */
	if (x->nhwc != w->nhwc || x->nhwc != y->nhwc)
		return CUDNN_STATUS_NOT_SUPPORTED; /* one layout for the three */
	int on, oc, oh, ow;
	if (cudnnGetConvolution2dForwardOutputDim(
		(cudnnConvolutionDescriptor_t)c, (cudnnTensorDescriptor_t)x,
		(cudnnFilterDescriptor_t)w, &on, &oc, &oh, &ow) != CUDNN_STATUS_SUCCESS ||
	    y->n != on || y->c != oc || y->h != oh || y->w != ow || oc % c->groups)
		return CUDNN_STATUS_BAD_PARAM;
	*d = nn_conv_desc{x->n, x->c,	  x->h,	    x->w,      w->n, w->h, w->w,
			  c->u, c->pad_h, c->dil_h, c->groups, 0,    0};
	struct error e;
	return nn_conv_desc_init(d, &e) == 0 ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_BAD_PARAM;
}

/* What each listed algorithm needs: the fixed list of every search, fastest
 * first, so that the precision rules decide: a Winograd with tensor cores
 * (tf32 and bf16 take it; a big workspace), one that converts to FP16
 * (nobody may take it), a GEMM with an im2col workspace (fp32 takes it), an
 * implicit GEMM without workspace (the last resort). */
static size_t need_ws(const struct nn_conv_desc *d, int rank)
{
	size_t esz = 4;
	switch (rank) {
	case 0:
		return esz * (size_t)d->n * (d->cin + d->cout) * (d->h + 2) * (d->w + 2) + 4096;
	case 1:
		return 1024;
	case 2:
		return esz * (size_t)(d->cin / d->groups) * d->kh * d->kw * d->hout * d->wout;
	default:
		return 0;
	}
}
static const cudnnMathType_t rank_math[4] = {
    CUDNN_TENSOR_OP_MATH, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, CUDNN_FMA_MATH, CUDNN_FMA_MATH};
static const int fwd_algos[4] = {
    CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
    CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM};
static const int data_algos[4] = {
    CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
    CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0};
static const int filter_algos[4] = {
    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0};

static int rank_of(const int *algos, int a)
{
	for (int i = 0; i < 4; i++)
		if (algos[i] == a)
			return i;
	return -1;
}

/* sim_cudnn_find_noise(1): from now on every third search (the first, the
 * fourth, ...) finds the last algorithm fastest (a timing hiccup, as
 * cudnnFind* shows on a GPU for short passes), the others the usual order. */
static int find_noise, find_calls;
extern "C" void sim_cudnn_find_noise(int on)
{
	find_noise = on, find_calls = 0;
}

template <typename Perf>
static cudnnStatus_t list(cudnnHandle_t h, bool search, const int *algos,
			  const struct nn_conv_desc *d, int want, int *got, Perf *r)
{
	if (search) { /* cudnnFind* runs the candidates: blocking, refused in a capture */
		if (sim_stream_flush(h->s, "cudnnFind*") != cudaSuccess)
			return CUDNN_STATUS_EXECUTION_FAILED;
	}
	bool hiccup = search && find_noise && find_calls++ % 3 == 0;
	int n = want < 4 ? want : 4;
	for (int i = 0; i < n; i++) {
		int k = hiccup ? (i + 3) % 4 : i; /* the list sorted by time, as cuDNN's */
		memset(&r[i], 0, sizeof(r[i]));
		r[i].algo = (decltype(r[i].algo))algos[k];
		r[i].status = CUDNN_STATUS_SUCCESS;
		r[i].time = hiccup && k == 3 ? 0.05f : 0.1f * (float)(k + 1);
		r[i].memory = need_ws(d, k);
		r[i].mathType = rank_math[k];
	}
	*got = n;
	return CUDNN_STATUS_SUCCESS;
}

/* cuDNN's legacy API leaves tensor-core kernels out of its search unless
 * the convolution descriptor allows them: a bf16 plan made under DEFAULT or
 * FMA math runs on CUDA cores, slower than tf32 (a GPU would only be slow;
 * here it stops the run). */
static void search_math(cudnnTensorDescriptor_t x, cudnnConvolutionDescriptor_t c)
{
	if (x->t == CUDNN_DATA_BFLOAT16 && c->math != CUDNN_TENSOR_OP_MATH &&
	    c->math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
		die("cudnnFind/Get*Algorithm on bf16 tensors under math type %d: tensor-core "
		    "kernels are searched only under CUDNN_TENSOR_OP_MATH",
		    (int)c->math);
}

#define FIND_FWD(name, search)                                                                     \
	cudnnStatus_t name(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,  \
			   cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t y, int want,    \
			   int *got, cudnnConvolutionFwdAlgoPerf_t *r)                             \
	{                                                                                          \
		struct nn_conv_desc d;                                                             \
		search_math(x, c);                                                                 \
		cudnnStatus_t st = shape_of(x, w, c, y, &d);                                       \
		return st ? st : list(h, search, fwd_algos, &d, want, got, r);                     \
	}
FIND_FWD(cudnnFindConvolutionForwardAlgorithm, true)
FIND_FWD(cudnnGetConvolutionForwardAlgorithm_v7, false)
#define FIND_DATA(name, search)                                                                    \
	cudnnStatus_t name(cudnnHandle_t h, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy, \
			   cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t dx, int want,   \
			   int *got, cudnnConvolutionBwdDataAlgoPerf_t *r)                         \
	{                                                                                          \
		struct nn_conv_desc d;                                                             \
		search_math(dx, c);                                                                \
		cudnnStatus_t st = shape_of(dx, w, c, dy, &d);                                     \
		return st ? st : list(h, search, data_algos, &d, want, got, r);                    \
	}
FIND_DATA(cudnnFindConvolutionBackwardDataAlgorithm, true)
FIND_DATA(cudnnGetConvolutionBackwardDataAlgorithm_v7, false)
#define FIND_FILTER(name, search)                                                                  \
	cudnnStatus_t name(cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy, \
			   cudnnConvolutionDescriptor_t c, cudnnFilterDescriptor_t dw, int want,   \
			   int *got, cudnnConvolutionBwdFilterAlgoPerf_t *r)                       \
	{                                                                                          \
		struct nn_conv_desc d;                                                             \
		search_math(x, c);                                                                 \
		cudnnStatus_t st = shape_of(x, dw, c, dy, &d);                                     \
		return st ? st : list(h, search, filter_algos, &d, want, got, r);                  \
	}
FIND_FILTER(cudnnFindConvolutionBackwardFilterAlgorithm, true)
FIND_FILTER(cudnnGetConvolutionBackwardFilterAlgorithm_v7, false)

static cudnnStatus_t ws_size(const int *algos, int a, const struct nn_conv_desc *d, size_t *bytes)
{
	int rank = rank_of(algos, a);
	*bytes = rank >= 0 ? need_ws(d, rank) : 0;
	return rank >= 0 ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, cudnnTensorDescriptor_t x,
						      cudnnFilterDescriptor_t w,
						      cudnnConvolutionDescriptor_t c,
						      cudnnTensorDescriptor_t y,
						      cudnnConvolutionFwdAlgo_t a, size_t *bytes)
{
	(void)h;
	struct nn_conv_desc d;
	cudnnStatus_t st = shape_of(x, w, c, y, &d);
	return st ? st : ws_size(fwd_algos, a, &d, bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t h, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnTensorDescriptor_t dx, cudnnConvolutionBwdDataAlgo_t a,
    size_t *bytes)
{
	(void)h;
	struct nn_conv_desc d;
	cudnnStatus_t st = shape_of(dx, w, c, dy, &d);
	return st ? st : ws_size(data_algos, a, &d, bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t h, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t c, cudnnFilterDescriptor_t dw, cudnnConvolutionBwdFilterAlgo_t a,
    size_t *bytes)
{
	(void)h;
	struct nn_conv_desc d;
	cudnnStatus_t st = shape_of(x, dw, c, dy, &d);
	return st ? st : ws_size(filter_algos, a, &d, bytes);
}

/* v, a tensor of t's shape, from NHWC to NCHW (nhwc false) or back. */
static std::vector<float> to_layout(const std::vector<float> &v, const sim_tensor_desc &t,
				    bool nhwc)
{
	std::vector<float> r(v.size());
	size_t hw = (size_t)t.h * t.w;
	for (int n = 0; n < t.n; n++)
		for (int c = 0; c < t.c; c++)
			for (size_t i = 0; i < hw; i++) {
				size_t nchw = ((size_t)n * t.c + c) * hw + i,
				       nhwc_i = ((size_t)n * hw + i) * t.c + c;
				if (nhwc)
					r[nhwc_i] = v[nchw];
				else
					r[nchw] = v[nhwc_i];
			}
	return r;
}

/* y = alpha x + beta y, x and y of one shape in either layout. */
cudnnStatus_t cudnnTransformTensor(cudnnHandle_t h, const void *alpha, cudnnTensorDescriptor_t xd,
				   const void *x, const void *beta, cudnnTensorDescriptor_t yd,
				   void *y)
{
	if (!xd->set || !yd->set || xd->t != yd->t || xd->n != yd->n || xd->c != yd->c ||
	    xd->h != yd->h || xd->w != yd->w)
		return CUDNN_STATUS_BAD_PARAM;
	bool b16 = xd->t == CUDNN_DATA_BFLOAT16;
	size_t count = (size_t)xd->n * xd->c * xd->h * xd->w, esz = b16 ? 2 : 4;
	sim_dev_check(x, count * esz, "cudnnTransformTensor", "x");
	sim_dev_check(y, count * esz, "cudnnTransformTensor", "y");
	float a = *(const float *)alpha, b = *(const float *)beta;
	sim_tensor_desc sx = *xd, sy = *yd;
	sim_enqueue(h->s, [=]() {
		std::vector<float> v = read_vals(x, count, b16, false);
		if (sx.nhwc != sy.nhwc)
			v = to_layout(v, sx, sy.nhwc);
		write_vals(y, v.data(), count, b16, a, b);
	});
	return CUDNN_STATUS_SUCCESS;
}

enum pass { FWD, DATA, FILTER };

/* One pass: checks now, the arithmetic when the stream gets there. in1, in2
 * and out are (x, w, y), (dy, w, dx) or (x, dy, dw). */
static cudnnStatus_t conv_pass(cudnnHandle_t h, enum pass p, const int *algos, int algo,
			       const sim_tensor_desc *xd, const sim_tensor_desc *wd,
			       const sim_conv_desc *c, const sim_tensor_desc *yd, const void *alpha,
			       const void *beta, const void *in1, const void *in2, void *out,
			       void *ws, size_t ws_bytes)
{
	static const char *names[3] = {"cudnnConvolutionForward", "cudnnConvolutionBackwardData",
				       "cudnnConvolutionBackwardFilter"};
	const char *call = names[p];
	struct nn_conv_desc d;
	cudnnStatus_t st = shape_of(xd, wd, c, yd, &d);
	if (st)
		return st;
	int rank = rank_of(algos, algo);
	if (rank < 0)
		return CUDNN_STATUS_NOT_SUPPORTED;
	size_t need = need_ws(&d, rank);
	if (ws_bytes < need || (need && !ws))
		return CUDNN_STATUS_BAD_PARAM;
	bool b16 = xd->t == CUDNN_DATA_BFLOAT16;
	size_t esz = b16 ? 2 : 4;
	size_t nx = (size_t)d.n * d.cin * d.h * d.w, ny = (size_t)d.n * d.cout * d.hout * d.wout;
	size_t nw = (size_t)d.cout * (d.cin / d.groups) * d.kh * d.kw;
	size_t n1 = p == DATA ? ny : nx, n2 = p == FILTER ? ny : nw,
	       no = p == FWD	? ny
		    : p == DATA ? nx
				: nw;
	sim_dev_check(in1, n1 * esz, call, p == FWD ? "x" : p == DATA ? "dy" : "x");
	sim_dev_check(in2, n2 * esz, call, p == FILTER ? "dy" : "w");
	sim_dev_check(out, no * esz, call, p == FWD ? "y" : p == DATA ? "dx" : "dw");
	if (need)
		sim_dev_check(ws, need, call, "workspace");
	/* float tensors with tensor-op or default math: TF32 on Hopper */
	bool round = !b16 && c->math != CUDNN_FMA_MATH;
	float a = *(const float *)alpha, b = *(const float *)beta;
	/* NHWC: the reference convolution on NCHW copies */
	const sim_tensor_desc *d1 = p == DATA ? yd : xd, *d2 = p == FILTER ? yd : wd,
			      *dout = p == FWD	  ? yd
				      : p == DATA ? xd
						  : wd;
	sim_tensor_desc s1 = *d1, s2 = *d2, so = *dout;
	sim_enqueue(h->s, [=]() {
		std::vector<float> v1 = read_vals(in1, n1, b16, round),
				   v2 = read_vals(in2, n2, b16, round);
		if (s1.nhwc) {
			v1 = to_layout(v1, s1, false);
			v2 = to_layout(v2, s2, false);
		}
		std::vector<float> r(no);
		std::vector<char> tmp(ref_conv2d_workspace(&d) + 1);
		if (p == FWD)
			ref_conv2d_fwd(&d, v1.data(), v2.data(), NULL, r.data(), tmp.data());
		else if (p == DATA)
			ref_conv2d_bwd_data(&d, v1.data(), v2.data(), r.data(), tmp.data());
		else
			ref_conv2d_bwd_filter(&d, v1.data(), v2.data(), r.data(), NULL, tmp.data());
		if (so.nhwc)
			r = to_layout(r, so, true);
		write_vals(out, r.data(), no, b16, a, b);
		if (need)
			memset(ws, 0xff, need); /* cuDNN leaves its workspace as it likes */
	});
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
				      cudnnTensorDescriptor_t xd, const void *x,
				      cudnnFilterDescriptor_t wd, const void *w,
				      cudnnConvolutionDescriptor_t c, cudnnConvolutionFwdAlgo_t a,
				      void *ws, size_t ws_bytes, const void *beta,
				      cudnnTensorDescriptor_t yd, void *y)
{
	return conv_pass(h, FWD, fwd_algos, a, xd, wd, c, yd, alpha, beta, x, w, y, ws, ws_bytes);
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha,
					   cudnnFilterDescriptor_t wd, const void *w,
					   cudnnTensorDescriptor_t dyd, const void *dy,
					   cudnnConvolutionDescriptor_t c,
					   cudnnConvolutionBwdDataAlgo_t a, void *ws,
					   size_t ws_bytes, const void *beta,
					   cudnnTensorDescriptor_t dxd, void *dx)
{
	return conv_pass(h, DATA, data_algos, a, dxd, wd, c, dyd, alpha, beta, dy, w, dx, ws,
			 ws_bytes);
}
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha,
					     cudnnTensorDescriptor_t xd, const void *x,
					     cudnnTensorDescriptor_t dyd, const void *dy,
					     cudnnConvolutionDescriptor_t c,
					     cudnnConvolutionBwdFilterAlgo_t a, void *ws,
					     size_t ws_bytes, const void *beta,
					     cudnnFilterDescriptor_t dwd, void *dw)
{
	return conv_pass(h, FILTER, filter_algos, a, xd, dwd, c, dyd, alpha, beta, x, dy, dw, ws,
			 ws_bytes);
}

/* ---- cuBLAS ------------------------------------------------------------ */

struct sim_blas {
	cudaStream_t s;
	void *ws;
	size_t ws_bytes;
	cublasMath_t math;
};

const char *cublasGetStatusString(cublasStatus_t s)
{
	switch (s) {
	case CUBLAS_STATUS_SUCCESS:
		return "the operation completed successfully";
	case CUBLAS_STATUS_NOT_INITIALIZED:
		return "the library was not initialized";
	case CUBLAS_STATUS_INVALID_VALUE:
		return "the function received an invalid value";
	case CUBLAS_STATUS_NOT_SUPPORTED:
		return "the functionality requested is not supported";
	}
	return "unknown error";
}

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
	*h = new sim_blas{nullptr, nullptr, 0, CUBLAS_DEFAULT_MATH};
	return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
	delete h;
	return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
	h->s = s;
	return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes)
{
	if (bytes)
		sim_dev_check(ws, bytes, "cublasSetWorkspace", "workspace");
	h->ws = ws, h->ws_bytes = bytes;
	return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m)
{
	h->math = m;
	return CUBLAS_STATUS_SUCCESS;
}

/* Column-major C = alpha op(A) op(B) + beta C; element types float or bf16
 * (beta 0: C is not read, as in cuBLAS). */
static cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
			   int n, int k, float alpha, const void *a, bool a16, int lda,
			   const void *b, bool b16, int ldb, float beta, void *c, bool c16, int ldc,
			   const char *call)
{
	int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
	int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
	if (m < 0 || n < 0 || k < 0 || lda < (arows > 1 ? arows : 1) ||
	    ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
		return CUBLAS_STATUS_INVALID_VALUE;
	if (m == 0 || n == 0)
		return CUBLAS_STATUS_SUCCESS;
	if (sim_capturing(h->s) && !h->ws) { /* it would allocate a workspace inside the capture */
		sim_capture_refuse(h->s);
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
	size_t na = k ? (size_t)(acols - 1) * lda + arows : 0,
	       nb = k ? (size_t)(bcols - 1) * ldb + brows : 0;
	if (na)
		sim_dev_check(a, na * (a16 ? 2 : 4), call, "A");
	if (nb)
		sim_dev_check(b, nb * (b16 ? 2 : 4), call, "B");
	sim_dev_check(c, ((size_t)(n - 1) * ldc + m) * (c16 ? 2 : 4), call, "C");
	bool round = h->math == CUBLAS_TF32_TENSOR_OP_MATH;
	sim_enqueue(h->s, [=]() {
		std::vector<float> av = read_vals(a, na, a16, round && !a16);
		std::vector<float> bv = read_vals(b, nb, b16, round && !b16);
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				double s = 0;
				for (int l = 0; l < k; l++) {
					float x = ta == CUBLAS_OP_N ? av[(size_t)l * lda + i]
								    : av[(size_t)i * lda + l];
					float y = tb == CUBLAS_OP_N ? bv[(size_t)j * ldb + l]
								    : bv[(size_t)l * ldb + j];
					s += (double)x * y;
				}
				size_t at = (size_t)j * ldc + i;
				if (c16) {
					__nv_bfloat16 *cij = (__nv_bfloat16 *)c + at;
					double old = beta != 0 ? __bfloat162float(*cij) : 0;
					*cij = __float2bfloat16_rn((float)(alpha * s + beta * old));
				} else {
					float *cij = (float *)c + at;
					*cij = (float)(alpha * s + (beta != 0 ? (double)beta * *cij : 0));
				}
			}
	});
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
			   int n, int k, const float *alpha, const float *a, int lda,
			   const float *b, int ldb, const float *beta, float *c, int ldc)
{
	return gemm(h, ta, tb, m, n, k, *alpha, a, false, lda, b, false, ldb, *beta, c, false, ldc,
		    "cublasSgemm");
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
			    int n, int k, const void *alpha, const void *a, cudaDataType at,
			    int lda, const void *b, cudaDataType bt, int ldb, const void *beta,
			    void *c, cudaDataType ct, int ldc, cublasComputeType_t compute,
			    cublasGemmAlgo_t algo)
{
	(void)algo;
	/* cuBLAS takes C in bf16 only with A and B in bf16 (its table of
	   supported type combinations for CUBLAS_COMPUTE_32F) */
	bool ok = compute == CUBLAS_COMPUTE_32F &&
		  ((at == CUDA_R_16BF && bt == CUDA_R_16BF &&
		    (ct == CUDA_R_16BF || ct == CUDA_R_32F)) ||
		   (at == CUDA_R_32F && bt == CUDA_R_32F && ct == CUDA_R_32F));
	if (!ok)
		return CUBLAS_STATUS_NOT_SUPPORTED;
	return gemm(h, ta, tb, m, n, k, *(const float *)alpha, a, at == CUDA_R_16BF, lda, b,
		    bt == CUDA_R_16BF, ldb, *(const float *)beta, c, ct == CUDA_R_16BF, ldc,
		    "cublasGemmEx");
}
