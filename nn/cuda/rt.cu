/* rt: device set-up, error reporting, the caching allocator and the copies
 * between host and device. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unordered_map>
#include <vector>

#include <cuda.h>

#include "nn/cuda/rt.h"

struct cu_ctx cu;

/* Make the backend's device the calling thread's current one: pinned
 * buffers and their events are made and waited for on the loader's thread
 * too, whose current device is 0 until it says otherwise (events belong to
 * a device), and a device synchronization must be of the backend's. */
static void on_device(void)
{
	if (cudaSetDevice(cu.device) != cudaSuccess)
		cudaGetLastError(); /* the next call reports what is wrong */
}

/* ---- errors ---------------------------------------------------------- */

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[1024];
static int have_error;

static void default_fatal(const char *msg)
{
	fprintf(stderr, "cairn: cuda: %s\n", msg);
	exit(1);
}
static void (*fatal_fn)(const char *msg) = default_fatal;

extern "C" void nn_cuda_set_fatal(void (*fn)(const char *msg))
{
	fatal_fn = fn ? fn : default_fatal;
}

cu_fatal_fn cu_fatal_swap(cu_fatal_fn fn)
{
	cu_fatal_fn old = fatal_fn;
	fatal_fn = fn;
	return old;
}

/* Keep the first message; later ones are usually its consequences. */
static void keep(const char *msg)
{
	pthread_mutex_lock(&err_lock);
	if (!have_error) {
		size_t len = strlen(msg);
		if (len >= sizeof(first_error))
			len = sizeof(first_error) - 1;
		memcpy(first_error, msg, len);
		first_error[len] = 0;
		have_error = 1;
	}
	pthread_mutex_unlock(&err_lock);
}

static void vfail(const char *file, int line, const char *call, const char *why, const char *fmt,
		  va_list ap)
{
	char op[512], msg[1024];
	vsnprintf(op, sizeof(op), fmt, ap);
	snprintf(msg, sizeof(msg), "%s: %s failed: %s (%s:%d)", op, call, why, file, line);
	keep(msg);
	cu.failed = 1;
	fatal_fn(msg);
}

void cu_fail(const char *file, int line, const char *call, const char *why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(file, line, call, why, fmt, ap);
	va_end(ap);
}

int cu_check_rt(cudaError_t e, const char *call, const char *file, int line, const char *fmt, ...)
{
	if (e == cudaSuccess)
		return 0;
	va_list ap;
	va_start(ap, fmt);
	vfail(file, line, call, cudaGetErrorString(e), fmt, ap);
	va_end(ap);
	return -1;
}

int cu_check_dnn(cudnnStatus_t e, const char *call, const char *file, int line, const char *fmt,
		 ...)
{
	if (e == CUDNN_STATUS_SUCCESS) {
		/* cuDNN reports through its status; a runtime error it met and handled
		   inside (a failed trial allocation in cudnnFind*) must not be taken for
		   the next kernel's launch error */
		(void)cudaGetLastError();
		return 0;
	}
	va_list ap;
	va_start(ap, fmt);
	vfail(file, line, call, cudnnGetErrorString(e), fmt, ap);
	va_end(ap);
	return -1;
}

int cu_check_blas(cublasStatus_t e, const char *call, const char *file, int line, const char *fmt,
		  ...)
{
	if (e == CUBLAS_STATUS_SUCCESS) {
		(void)cudaGetLastError(); /* as in cu_check_dnn */
		return 0;
	}
	va_list ap;
	va_start(ap, fmt);
	vfail(file, line, call, cublasGetStatusString(e), fmt, ap);
	va_end(ap);
	return -1;
}

int cu_launched(const char *file, int line, const char *fmt, ...)
{
	cudaError_t e = cudaGetLastError();
	const char *call = "kernel launch";
	if (e == cudaSuccess && cu.debug_sync) {
		e = cudaStreamSynchronize(cu.compute);
		call = "kernel execution (CAIRN_CUDA_SYNC=1)";
	}
	if (e == cudaSuccess)
		return 0;
	va_list ap;
	va_start(ap, fmt);
	vfail(file, line, call, cudaGetErrorString(e), fmt, ap);
	va_end(ap);
	return -1;
}

extern "C" int nn_cuda_error(struct error *err)
{
	pthread_mutex_lock(&err_lock);
	int had = have_error;
	if (had)
		error_set(err, "cuda: %s", first_error);
	pthread_mutex_unlock(&err_lock);
	return had ? -1 : 0;
}

extern "C" void nn_cuda_clear_error(void)
{
	pthread_mutex_lock(&err_lock);
	have_error = 0;
	first_error[0] = 0;
	pthread_mutex_unlock(&err_lock);
	/* a sticky device error (illegal address) survives this: the next call fails again */
	cu.failed = 0;
}

/* ---- set-up ---------------------------------------------------------- */

extern "C" int nn_cuda_device_count(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		cudaGetLastError(); /* clear it: no driver is not an error here */
		return 0;
	}
	return n;
}

extern "C" int nn_cuda_parse_precision(const char *s, enum nn_cuda_precision *p,
				       struct error *err)
{
	if (!strcmp(s, "fp32"))
		*p = NN_CUDA_FP32;
	else if (!strcmp(s, "tf32"))
		*p = NN_CUDA_TF32;
	else if (!strcmp(s, "bf16"))
		*p = NN_CUDA_BF16;
	else
		return error_set(err, "cuda precision '%s': expected fp32, tf32 or bf16", s);
	return 0;
}

extern "C" const char *nn_cuda_precision_name(enum nn_cuda_precision p)
{
	return p == NN_CUDA_FP32 ? "fp32" : p == NN_CUDA_TF32 ? "tf32" : "bf16";
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc = -1;

#define STAGE_BYTES ((size_t)8 << 20)
static void *stage[2];
static cudaEvent_t stage_done[2], compute_mark, copy_mark;
static double *host_scalars;
/* cuBLAS's workspace, ours: so that a captured step (nn/cuda/graph.cu) never
 * makes cuBLAS allocate one (32 MiB, NVIDIA's advice for Hopper) */
#define BLAS_WS_BYTES ((size_t)32 << 20)
static void *blas_ws;

/* The process's rank on its node, as MPI launchers and srun set it; -1
 * when none says. */
static int local_rank(void)
{
	static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
					   "SLURM_LOCALID"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		char *end;
		long r = v && *v ? strtol(v, &end, 10) : -1;
		if (v && *v && !*end && r >= 0 && r < (1 << 20))
			return (int)r;
	}
	return -1;
}

/* Which of the n visible devices this process uses: CAIRN_CUDA_DEVICE, else
 * its rank on the node modulo n (a stage with ranks = gpus = N gives each
 * rank its own GPU), else 0. -1 after keeping why. */
static int pick_device(int n)
{
	const char *env = getenv("CAIRN_CUDA_DEVICE");
	if (env && *env) {
		char *end, msg[256];
		long d = strtol(env, &end, 10);
		if (!*end && d >= 0 && d < n)
			return (int)d;
		snprintf(msg, sizeof(msg),
			 "CAIRN_CUDA_DEVICE=%s: want a device index from 0 to %d (%d visible; see "
			 "nvidia-smi and CUDA_VISIBLE_DEVICES)",
			 env, n - 1, n);
		keep(msg);
		return -1;
	}
	int r = local_rank();
	return r < 0 ? 0 : r % n;
}

#ifndef CAIRN_CUDA_ARCH
#define CAIRN_CUDA_ARCH "?" /* the Makefile's CUDA_ARCH */
#endif

/* A kernel of this build: asking for its attributes fails when the build
 * has no code this GPU can run. */
__global__ static void k_probe(void) {}

/* The GPU can run this build's kernels; else why not is kept. */
static int kernels_usable(void)
{
	int major = 0, minor = 0;
	if (CU_RT(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, cu.device),
		  "init: compute capability") ||
	    CU_RT(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, cu.device),
		  "init: compute capability"))
		return 0;
	cu.cc = major * 10 + minor;
	cudaFuncAttributes fa;
	cudaError_t e = cudaFuncGetAttributes(&fa, k_probe);
	if (e == cudaSuccess)
		return 1;
	cudaGetLastError();
	/* the architectures built, with this GPU's in ascending order (the
	   Makefile embeds PTX of the last) */
	char want[128] = "", msg[512];
	const char *at = CAIRN_CUDA_ARCH;
	int added = 0;
	for (;;) {
		char *end;
		while (*at && (*at < '0' || *at > '9'))
			at++;
		long a = strtol(at, &end, 10);
		int more = end != at;
		if (more && a == cu.cc)
			added = 1; /* built for it: the image is wrong some other way */
		if (!added && (!more || a > cu.cc)) {
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%d", *want ? " " : "",
				 cu.cc);
			added = 1;
		}
		if (!more)
			break;
		snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%ld", *want ? " " : "", a);
		at = end;
	}
	snprintf(msg, sizeof(msg),
		 "this build has no kernels for device %d (compute capability %d.%d): it was built "
		 "with CUDA_ARCH=\"%s\"; rebuild with make CUDA=1 CUDA_ARCH=\"%s\" (%s)",
		 cu.device, major, minor, CAIRN_CUDA_ARCH, want, cudaGetErrorString(e));
	keep(msg);
	return 0;
}

/* bf16 tensor-core math needs Ampere (8.0) or newer. */
static int precision_supported(enum nn_cuda_precision p, char *why, size_t cap)
{
	if (p != NN_CUDA_BF16 || cu.cc >= 80)
		return 1;
	snprintf(why, cap,
		 "cuda precision bf16: needs a GPU of compute capability 8.0 or newer (Ampere, "
		 "Hopper); device %d is %d.%d: use tf32 or fp32",
		 cu.device, cu.cc / 10, cu.cc % 10);
	return 0;
}

/* The precision at start: CAIRN_CUDA_PRECISION if set (and the GPU has
 * it; else 0, why kept), else tf32 from Ampere on and fp32 before (no
 * TF32 tensor cores there). */
static int init_precision(void)
{
	const char *env = getenv("CAIRN_CUDA_PRECISION");
	char why[256], msg[1100];
	struct error e;
	cu.precision = cu.cc >= 80 ? NN_CUDA_TF32 : NN_CUDA_FP32;
	if (!env || !*env)
		return 1;
	if (nn_cuda_parse_precision(env, &cu.precision, &e) < 0) {
		snprintf(msg, sizeof(msg), "CAIRN_CUDA_PRECISION: %s", e.msg);
		keep(msg);
		return 0;
	}
	if (precision_supported(cu.precision, why, sizeof(why)))
		return 1;
	snprintf(msg, sizeof(msg), "CAIRN_CUDA_PRECISION: %s", why);
	keep(msg);
	return 0;
}

/* nn_cuda_set_memory_limit, CAIRN_CUDA_MEMORY_LIMIT: the most device memory
 * the allocator holds (blocks and activation backing), 0 = no limit. */
static size_t mem_limit;

/* CAIRN_CUDA_MEMORY_LIMIT=SIZE: bytes, or a number with K, M, G or T
 * (powers of 1024); else 0, why kept. */
static int init_memory_limit(void)
{
	const char *env = getenv("CAIRN_CUDA_MEMORY_LIMIT");
	if (!env || !*env)
		return 1;
	char *end;
	errno = 0;
	double v = strtod(env, &end);
	const char *units = "KMGT";
	const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
	if (u && *u)
		v *= pow(1024.0, (double)(u - units + 1)), end++;
	if (errno || end == env || *end || !(v >= 1) || v > 1e18) {
		char msg[200];
		snprintf(
		    msg, sizeof(msg),
		    "CAIRN_CUDA_MEMORY_LIMIT: '%.40s' is not a size (bytes, or a number with K, M, "
		    "G or T, e.g. 40G)",
		    env);
		keep(msg);
		return 0;
	}
	mem_limit = (size_t)v;
	return 1;
}

static void init_now(void)
{
	int n = nn_cuda_device_count();
	if (n <= 0) {
		keep("no CUDA device visible (cudaGetDeviceCount found none; check the driver and CUDA_VISIBLE_DEVICES)");
		return;
	}
	if ((cu.device = pick_device(n)) < 0)
		return;
	const char *env = getenv("CAIRN_CUDA_SYNC");
	cu.debug_sync = env && *env && strcmp(env, "0");
	if (CU_RT(cudaSetDevice(cu.device), "init device %d", cu.device) ||
	    CU_RT(cudaDeviceGetAttribute(&cu.sms, cudaDevAttrMultiProcessorCount, cu.device),
		  "init: multiprocessor count") ||
	    !kernels_usable() || !init_precision() || !init_memory_limit() ||
	    CU_RT(cudaStreamCreateWithFlags(&cu.compute, cudaStreamNonBlocking),
		  "init: compute stream") ||
	    CU_RT(cudaStreamCreateWithFlags(&cu.copy, cudaStreamNonBlocking),
		  "init: copy stream") ||
	    CU_RT(cudaEventCreateWithFlags(&compute_mark, cudaEventDisableTiming), "init: event") ||
	    CU_RT(cudaEventCreateWithFlags(&copy_mark, cudaEventDisableTiming), "init: event") ||
	    CU_RT(cudaMallocHost((void **)&host_scalars, 64 * sizeof(double)),
		  "init: pinned scalars"))
		return;
	for (int i = 0; i < 2; i++)
		if (CU_RT(cudaMallocHost(&stage[i], STAGE_BYTES), "init: pinned staging buffer of %zu bytes",
			  STAGE_BYTES) ||
		    CU_RT(cudaEventCreateWithFlags(&stage_done[i], cudaEventDisableTiming), "init: event"))
			return;
	if (CU_DNN(cudnnCreate(&cu.dnn), "init: cuDNN handle") ||
	    CU_DNN(cudnnSetStream(cu.dnn, cu.compute), "init: cuDNN stream") ||
	    CU_BLAS(cublasCreate(&cu.blas), "init: cuBLAS handle") ||
	    CU_BLAS(cublasSetStream(cu.blas, cu.compute), "init: cuBLAS stream") ||
	    CU_RT(cudaMalloc(&blas_ws, BLAS_WS_BYTES), "init: cuBLAS workspace of %zu bytes",
		  BLAS_WS_BYTES) ||
	    CU_BLAS(cublasSetWorkspace(cu.blas, blas_ws, BLAS_WS_BYTES), "init: cuBLAS workspace") ||
	    cu_blas_set_math() < 0 || cu_conv_init() < 0)
		return;
	cu.ready = 1;
	init_rc = 0;
}

/* Init failures are kept, never fatal: the caller falls back or says why. */
static void quiet_fatal(const char *msg) { (void)msg; }

extern "C" int cu_init(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&lock);
	void (*saved)(const char *) = fatal_fn;
	fatal_fn = quiet_fatal;
	pthread_once(&init_once, init_now);
	fatal_fn = saved;
	if (init_rc < 0)
		cu.failed = 0; /* the table is not handed out; keep the message only */
	pthread_mutex_unlock(&lock);
	return init_rc;
}

extern "C" enum nn_cuda_precision nn_cuda_get_precision(void) { return cu.precision; }

extern "C" int nn_cuda_device(void) { return cu.ready ? cu.device : -1; }

double *cu_host_scalars(void) { return host_scalars; }

/* ---- caching allocator ------------------------------------------------ */

/* Blocks are kept per size class and handed out again on the same stream
 * order (every kernel runs on cu.compute, so a block freed by the host while
 * kernels that read it are queued is only reused by later kernels). Classes:
 * multiples of 512 bytes up to 64 KiB, above that 4 steps per power of two
 * (at most 25% waste, as PyTorch's roundup_power2_divisions = 4). */
static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static std::unordered_map<size_t, std::vector<void *>> *free_blocks;
static std::unordered_map<void *, size_t> *live_blocks;
static struct nn_cuda_mem_stats stats;
static char alloc_msg[512]; /* why the last allocation failed (alloc_why) */
/* activation storage through the driver's virtual memory management */
enum { VMM_UNKNOWN = -2, VMM_FAILED = -1, VMM_NO = 0, VMM_YES = 1 };
static int vmm_ok = VMM_UNKNOWN;

static size_t size_class(size_t bytes)
{
	if (bytes <= 65536)
		return bytes <= 512 ? 512 : (bytes + 511) / 512 * 512;
	size_t p = 65536;
	while (p * 2 <= bytes && p < ((size_t)1 << 62))
		p *= 2;
	size_t step = p / 4;
	return (bytes + step - 1) / step * step;
}

/* Give cached blocks back; caller holds alloc_lock. */
static void release_cached(void)
{
	for (auto &kv : *free_blocks) {
		for (void *p : kv.second) {
			/* cudaFree waits for the device; a failure here is reported, not fatal
			   to the caller's allocation that triggered it */
			if (cudaFree(p) != cudaSuccess)
				cudaGetLastError();
			stats.reserved -= kv.first;
		}
		kv.second.clear();
	}
}

/* The allocator may hold add more bytes; caller holds alloc_lock. */
static bool under_limit(size_t add)
{
	return !mem_limit || stats.reserved + add <= mem_limit;
}

static const char *limit_why(void)
{
	static char why[96];
	snprintf(why, sizeof(why), "over the memory limit of %zu bytes (CAIRN_CUDA_MEMORY_LIMIT)",
		 mem_limit);
	return why;
}

/* cudaMalloc within the limit; caller holds alloc_lock. */
static cudaError_t dev_malloc(void **p, size_t bytes)
{
	return under_limit(bytes) ? cudaMalloc(p, bytes) : cudaErrorMemoryAllocation;
}

/* Keep why an allocation failed (alloc_why, nn_cuda_error): what was asked,
 * what is free, what cairn holds. */
static void out_of_memory(size_t bytes, const char *what, const char *why)
{
	size_t fr = 0, total = 0;
	cudaMemGetInfo(&fr, &total);
	cudaGetLastError();
	char msg[512];
	snprintf(msg, sizeof(msg),
		 "out of device memory: asked %zu bytes (%s), %zu of %zu bytes free, %zu held by "
		 "cairn (%zu in use): %s",
		 bytes, what, fr, total, stats.reserved, stats.in_use, why);
	keep(msg);
	memcpy(alloc_msg, msg, sizeof(alloc_msg));
}

extern "C" void *cu_alloc(size_t bytes)
{
	if (!cu.ready && cu_init() < 0)
		return NULL;
	size_t cls = size_class(bytes);
	void *p = NULL;
	pthread_mutex_lock(&alloc_lock);
	if (!free_blocks) {
		free_blocks = new std::unordered_map<size_t, std::vector<void *>>();
		live_blocks = new std::unordered_map<void *, size_t>();
	}
	auto it = free_blocks->find(cls);
	if (it != free_blocks->end() && !it->second.empty()) {
		p = it->second.back();
		it->second.pop_back();
		stats.cache_hits++;
	} else {
		cudaError_t e = dev_malloc(&p, cls);
		if (e == cudaErrorMemoryAllocation && !cu.hold_cache) {
			cudaGetLastError();
			release_cached();
			e = dev_malloc(&p, cls);
		}
		if (e != cudaSuccess) {
			cudaGetLastError();
			char what[64];
			snprintf(what, sizeof(what), "%zu with rounding", cls);
			out_of_memory(bytes, what,
				      under_limit(cls) ? cudaGetErrorString(e) : limit_why());
			pthread_mutex_unlock(&alloc_lock);
			return NULL;
		}
		stats.cuda_mallocs++;
		stats.reserved += cls;
	}
	(*live_blocks)[p] = cls;
	stats.in_use += cls;
	if (stats.in_use > stats.peak_in_use)
		stats.peak_in_use = stats.in_use;
	pthread_mutex_unlock(&alloc_lock);
	return p;
}

extern "C" const char *cu_alloc_why(void) { return alloc_msg; }

static int act_free(void *p);

extern "C" void cu_free(void *p)
{
	if (!p || act_free(p))
		return;
	pthread_mutex_lock(&alloc_lock);
	if (!live_blocks || live_blocks->find(p) == live_blocks->end()) {
		pthread_mutex_unlock(&alloc_lock);
		char why[64];
		snprintf(why, sizeof(why), "pointer %p", p);
		cu_fail(__FILE__, __LINE__, "cu_free", why, "free: not a block of the cuda allocator");
		return;
	}
	auto it = live_blocks->find(p);
	size_t cls = it->second;
	live_blocks->erase(it);
	(*free_blocks)[cls].push_back(p);
	stats.in_use -= cls;
	pthread_mutex_unlock(&alloc_lock);
}

extern "C" void nn_cuda_get_mem_stats(struct nn_cuda_mem_stats *s)
{
	pthread_mutex_lock(&alloc_lock);
	*s = stats;
	pthread_mutex_unlock(&alloc_lock);
	s->act_vmm = vmm_ok == VMM_UNKNOWN ? 0 : vmm_ok;
	s->device_free = s->device_total = 0;
	if (cu.ready) {
		on_device();
		if (cudaMemGetInfo(&s->device_free, &s->device_total) != cudaSuccess)
			cudaGetLastError();
	}
}

extern "C" void nn_cuda_set_memory_limit(size_t bytes)
{
	pthread_mutex_lock(&alloc_lock);
	mem_limit = bytes;
	pthread_mutex_unlock(&alloc_lock);
}

extern "C" void nn_cuda_empty_cache(void)
{
	pthread_mutex_lock(&alloc_lock);
	if (free_blocks && !cu.hold_cache)
		release_cached();
	pthread_mutex_unlock(&alloc_lock);
}

/* Blocks retired while a CUDA graph exists: a replay may still use them. */
static std::vector<void *> *retired;

void cu_retire(void *p)
{
	if (!cu.graphs_live) {
		cu_free(p);
		return;
	}
	if (!retired)
		retired = new std::vector<void *>();
	retired->push_back(p);
}

void cu_retired_free(void)
{
	if (!retired || cu.graphs_live)
		return;
	for (void *p : *retired)
		cu_free(p);
	retired->clear();
}

static void *scratch;
static size_t scratch_bytes;

void *cu_grow(void **buf, size_t *cap, size_t need, const char *what)
{
	if (need <= *cap)
		return *buf;
	void *p = cu_alloc(need);
	if (!p) {
		struct error e;
		nn_cuda_error(&e);
		cu_fail(__FILE__, __LINE__, "cu_alloc", e.msg, "%s of %zu bytes", what, need);
		return NULL;
	}
	if (*buf)
		cu_retire(*buf); /* stream order: later kernels only */
	*buf = p, *cap = need;
	return p;
}

void *cu_scratch(size_t bytes)
{
	return cu_grow(&scratch, &scratch_bytes, bytes < 65536 ? 65536 : bytes, "scratch buffer");
}

/* ---- activation storage (rt.h) ------------------------------------------ */

/* A block of act_alloc. In bf16 storage float element i of the block is
 * bf16 element i, at byte 2i: the values need only the first half of the
 * block. So the block is a reserved range of device addresses (CUDA's
 * virtual memory management) backed by two physical chunks: the first
 * [0, low), low the half rounded up to the mapping granularity, is always
 * mapped; the second [low, size) only while the block holds fp32 values.
 * In bf16 the second half of the addresses stays reserved and unbacked: no
 * other allocation can land there (so cu_arr_of never mistakes another
 * pointer for a name in the block), and a slot that touched it without
 * going through cu_arr_of would fault instead of reading garbage. Without
 * VMM (a driver without it, or its calls not found) a block is an ordinary
 * one of the caching allocator, backed in full (vmm = 0). */
struct act_region {
	char *base;
	size_t bytes; /* asked */
	size_t size;  /* reserved: bytes rounded up to the granularity */
	size_t low;   /* the first chunk; == size: one chunk only */
	CUmemGenericAllocationHandle chunk[2];
	int high; /* the second chunk is mapped */
	int vmm;
};
static std::vector<act_region> *act_regions;
static unsigned act_gen;
static int act_off = -1; /* CAIRN_CUDA_BF16_ACT=0, read at first use */

static int act_enabled(void)
{
	if (act_off < 0) {
		const char *env = getenv("CAIRN_CUDA_BF16_ACT");
		act_off = env && !strcmp(env, "0");
	}
	return !act_off && cu.precision == NN_CUDA_BF16;
}

unsigned cu_act_generation(void) { return act_gen; }

cu_arr cu_arr_of(const void *p)
{
	const char *c = (const char *)p;
	if (c && act_regions && act_enabled())
		for (const act_region &r : *act_regions)
			if (c >= r.base && c < r.base + r.bytes)
				return cu_arr{r.base + (c - r.base) / 2, 1};
	return cu_arr{(void *)p, 0};
}

/* The driver's virtual memory calls, found through the runtime (cairn links
 * no libcuda of its own). */
static struct {
	size_t gran;
	CUmemAllocationProp prop;
	CUmemAccessDesc access;
	CUresult (*create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
			   unsigned long long);
	CUresult (*release)(CUmemGenericAllocationHandle);
	CUresult (*reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
	CUresult (*unreserve)(CUdeviceptr, size_t);
	CUresult (*map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
	CUresult (*unmap)(CUdeviceptr, size_t);
	CUresult (*set_access)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
	CUresult (*granularity)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);
	CUresult (*device_get)(CUdevice *, int);
	CUresult (*attribute)(int *, CUdevice_attribute, CUdevice);
	CUresult (*error_name)(CUresult, const char **);
} vmm;

static int vmm_find(const char *sym, void *fn)
{
	cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
	/* the ABI as of CUDA 12.0 (these signatures have not changed since
	   10.2): a version newer than the driver would fail the lookup */
	if (cudaGetDriverEntryPointByVersion(sym, (void **)fn, 12000, cudaEnableDefault, &q) !=
		    cudaSuccess ||
	    q != cudaDriverEntryPointSuccess) {
		cudaGetLastError();
		return -1;
	}
	return 0;
}

static int vmm_usable(void)
{
	if (vmm_ok != VMM_UNKNOWN)
		return vmm_ok == VMM_YES;
	vmm_ok = VMM_NO;
	int has = 0;
	CUdevice dev = 0;
	if (vmm_find("cuMemCreate", &vmm.create) || vmm_find("cuMemRelease", &vmm.release) ||
	    vmm_find("cuMemAddressReserve", &vmm.reserve) ||
	    vmm_find("cuMemAddressFree", &vmm.unreserve) || vmm_find("cuMemMap", &vmm.map) ||
	    vmm_find("cuMemUnmap", &vmm.unmap) || vmm_find("cuMemSetAccess", &vmm.set_access) ||
	    vmm_find("cuMemGetAllocationGranularity", &vmm.granularity) ||
	    vmm_find("cuDeviceGet", &vmm.device_get) ||
	    vmm_find("cuDeviceGetAttribute", &vmm.attribute) ||
	    vmm_find("cuGetErrorName", &vmm.error_name) ||
	    vmm.device_get(&dev, cu.device) != CUDA_SUCCESS ||
	    vmm.attribute(&has, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev) !=
		    CUDA_SUCCESS ||
	    !has)
		return 0;
	memset(&vmm.prop, 0, sizeof(vmm.prop));
	vmm.prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	vmm.prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	vmm.prop.location.id = cu.device;
	vmm.access.location = vmm.prop.location;
	vmm.access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	if (vmm.granularity(&vmm.gran, &vmm.prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) !=
		    CUDA_SUCCESS ||
	    !vmm.gran)
		return 0;
	vmm_ok = VMM_YES;
	return 1;
}

static const char *vmm_why(CUresult r)
{
	const char *s = NULL;
	if (vmm.error_name(r, &s) != CUDA_SUCCESS || !s)
		s = "unknown driver error";
	return s;
}

static void act_oom(const char *what, size_t bytes, CUresult r)
{
	pthread_mutex_lock(&alloc_lock);
	bool under = under_limit(bytes);
	pthread_mutex_unlock(&alloc_lock);
	out_of_memory(bytes, what, under ? vmm_why(r) : limit_why());
}

/* A physical chunk of len bytes within the limit. */
static CUresult chunk_create(CUmemGenericAllocationHandle *h, size_t len)
{
	pthread_mutex_lock(&alloc_lock);
	bool under = under_limit(len);
	pthread_mutex_unlock(&alloc_lock);
	return under ? vmm.create(h, len, &vmm.prop, 0) : CUDA_ERROR_OUT_OF_MEMORY;
}

static void act_count(long bytes)
{
	pthread_mutex_lock(&alloc_lock);
	stats.reserved += bytes, stats.in_use += bytes, stats.act_backed += bytes;
	if (stats.in_use > stats.peak_in_use)
		stats.peak_in_use = stats.in_use;
	pthread_mutex_unlock(&alloc_lock);
}

/* Back [off, off + len) of r with a new chunk k: 0, or -1 with nothing
 * changed and the driver's result in *res. Out of memory, the cached
 * blocks of the allocator are given back first, as in cu_alloc. */
static int chunk_map(act_region &r, int k, size_t off, size_t len, CUresult *res)
{
	CUdeviceptr at = (CUdeviceptr)(uintptr_t)(r.base + off);
	CUresult e = chunk_create(&r.chunk[k], len);
	if (e == CUDA_ERROR_OUT_OF_MEMORY && !cu.hold_cache) {
		pthread_mutex_lock(&alloc_lock);
		if (free_blocks)
			release_cached();
		pthread_mutex_unlock(&alloc_lock);
		e = chunk_create(&r.chunk[k], len);
	}
	if (e == CUDA_SUCCESS) {
		e = vmm.map(at, len, 0, r.chunk[k], 0);
		if (e == CUDA_SUCCESS) {
			e = vmm.set_access(at, len, &vmm.access, 1);
			if (e == CUDA_SUCCESS) {
				act_count((long)len);
				return 0;
			}
			vmm.unmap(at, len);
		}
		vmm.release(r.chunk[k]);
	}
	*res = e;
	return -1;
}

/* The device has finished with the chunk (the caller synchronized). */
static void chunk_unmap(act_region &r, int k, size_t off, size_t len)
{
	vmm.unmap((CUdeviceptr)(uintptr_t)(r.base + off), len);
	vmm.release(r.chunk[k]);
	act_count(-(long)len);
}

static int wants_high(void) { return !act_enabled(); }

/* r (bytes set) reserved and backed: 0, or -1 with nothing held and what
 * failed in *res, *what and *asked. */
static int act_back(act_region &r, CUresult *res, const char **what, size_t *asked)
{
	r.vmm = 1;
	r.size = (r.bytes + vmm.gran - 1) / vmm.gran * vmm.gran;
	r.low = (r.bytes / 2 + vmm.gran - 1) / vmm.gran * vmm.gran;
	if (r.low > r.size)
		r.low = r.size;
	CUdeviceptr at = 0;
	*what = "addresses for activation storage", *asked = r.size;
	if ((*res = vmm.reserve(&at, r.size, 0, 0, 0)) != CUDA_SUCCESS)
		return -1;
	r.base = (char *)(uintptr_t)at;
	*what = "activation storage, its first half", *asked = r.low;
	if (chunk_map(r, 0, 0, r.low, res) < 0) {
		vmm.unreserve(at, r.size);
		return -1;
	}
	if (r.low < r.size && wants_high()) {
		/* said as the whole block: the first half is given back before the
		   message measures what is free */
		*what = "activation storage in fp32", *asked = r.size;
		if (chunk_map(r, 1, r.low, r.size - r.low, res) < 0) {
			chunk_unmap(r, 0, 0, r.low);
			vmm.unreserve(at, r.size);
			return -1;
		}
		r.high = 1;
	}
	return 0;
}

/* nn/backend.h act_alloc. A failure of the driver's calls other than out
 * of memory (cairn's use of them wrong on some driver) is said once on
 * stderr, and every block from then on is an ordinary one: training goes
 * on, with activations backed in full (nn_cuda_mem_stats.act_vmm -1). */
extern "C" void *cu_act_alloc(size_t bytes)
{
	if (!cu.ready && cu_init() < 0)
		return NULL;
	if (!act_regions)
		act_regions = new std::vector<act_region>();
	act_region r = {};
	r.bytes = bytes;
	if (bytes && vmm_usable()) {
		CUresult e;
		const char *what;
		size_t asked;
		if (act_back(r, &e, &what, &asked) == 0) {
			act_regions->push_back(r);
			act_gen++;
			return r.base;
		}
		if (e == CUDA_ERROR_OUT_OF_MEMORY) {
			act_oom(what, asked, e);
			return NULL;
		}
		fprintf(stderr,
			"cairn: cuda: the driver's virtual memory management failed (%s) for %s "
			"(%zu bytes); activation storage is backed in full from now on\n",
			vmm_why(e), what, asked);
		vmm_ok = VMM_FAILED;
		r = act_region{};
		r.bytes = bytes;
	}
	if (!(r.base = (char *)cu_alloc(bytes)))
		return NULL;
	act_regions->push_back(r);
	act_gen++;
	return r.base;
}

/* cu_free of an act_alloc block: 1 when p was one. */
static int act_free(void *p)
{
	if (!act_regions)
		return 0;
	for (size_t i = 0; i < act_regions->size(); i++) {
		act_region r = (*act_regions)[i];
		if (r.base != p)
			continue;
		if ((cu.capturing || cu.hold_cache) && r.vmm) { /* kept: it cannot be unmapped now */
			cu_fail(__FILE__, __LINE__, "cu_free", "inside a recorded or captured step",
				"free of activation storage of %zu bytes", r.bytes);
			return 1;
		}
		act_regions->erase(act_regions->begin() + i);
		act_gen++;
		if (!r.vmm) {
			cu_free(p);
			return 1;
		}
		/* unmapping is not stream-ordered: the device must be done with it */
		on_device();
		if (cudaDeviceSynchronize() != cudaSuccess)
			cudaGetLastError();
		if (r.high)
			chunk_unmap(r, 1, r.low, r.size - r.low);
		chunk_unmap(r, 0, 0, r.low);
		vmm.unreserve((CUdeviceptr)(uintptr_t)r.base, r.size);
		return 1;
	}
	return 0;
}

/* After a change of precision: the second chunks mapped where blocks hold
 * fp32, given back where they hold bf16. 0, or -1 after reporting that fp32
 * storage does not fit (some blocks may be re-backed already: the caller
 * restores the precision and calls this again). */
static int act_remap(void)
{
	if (!act_regions)
		return 0;
	int want = wants_high(), synced = 0;
	for (act_region &r : *act_regions) {
		if (!r.vmm || r.low == r.size || r.high == want)
			continue;
		if (!synced++) {
			on_device();
			if (cudaDeviceSynchronize() != cudaSuccess)
				cudaGetLastError();
		}
		CUresult e;
		if (!want)
			chunk_unmap(r, 1, r.low, r.size - r.low);
		else if (chunk_map(r, 1, r.low, r.size - r.low, &e) < 0) {
			act_oom("activation storage in fp32, a second half", r.size - r.low, e);
			return -1;
		}
		r.high = want;
	}
	act_gen++;
	return 0;
}

extern "C" int nn_cuda_set_precision(enum nn_cuda_precision p, struct error *err)
{
	if (p != NN_CUDA_FP32 && p != NN_CUDA_TF32 && p != NN_CUDA_BF16)
		return error_set(err, "cuda precision %d: expected fp32, tf32 or bf16", (int)p);
	if (cu_init() < 0)
		return nn_cuda_error(err);
	char why[256];
	if (!precision_supported(p, why, sizeof(why)))
		return error_set(err, "%s", why);
	if (p == cu.precision)
		return 0;
	enum nn_cuda_precision was = cu.precision;
	cu.precision = p;
	pthread_mutex_lock(&err_lock);
	int had = have_error;
	pthread_mutex_unlock(&err_lock);
	if (act_remap() < 0) { /* fp32 activations do not fit */
		cu.precision = was;
		act_remap();
		if (!had) /* nothing failed: the precision stays as it was */
			nn_cuda_clear_error();
		return error_set(err,
				 "cuda precision %s: the prepared nets' activations do not fit in fp32 "
				 "(%s); stay in %s, or release the nets or prepare them for a smaller "
				 "batch first",
				 nn_cuda_precision_name(p), alloc_msg, nn_cuda_precision_name(was));
	}
	cu_bf16_forget_casts(); /* casts made for another precision are not current */
	if (cu_blas_set_math() < 0)
		return nn_cuda_error(err);
	return 0;
}

/* A device buffer of fp32 values for a copy to or from bf16 storage, grown
 * through the caching allocator (never inside a captured step: uploads and
 * downloads are not part of one). NULL after a reported failure. */
static void *act_stage;
static size_t act_stage_bytes;

static float *act_stage_for(size_t bytes, const char *what)
{
	return (float *)cu_grow(&act_stage, &act_stage_bytes, bytes, what);
}

/* ---- copies ----------------------------------------------------------- */

/* Page-locked host buffers of host_alloc (a loader's batches), each with the
 * event of the last copy that reads it. A buffer the driver would not pin
 * comes from malloc (pinned = 0) and uploads through the staging buffers. */
struct host_block {
	char *p;
	size_t n;
	int pinned;
	cudaEvent_t read; /* recorded after each upload straight from it */
};
static pthread_mutex_t host_lock = PTHREAD_MUTEX_INITIALIZER;
static std::vector<host_block> *host_blocks;

/* 1 with a copy of the block holding [p, p + n) in *out (a copy: the vector
 * may grow meanwhile), or 0. */
static int host_find(const void *p, size_t n, host_block *out)
{
	const char *c = (const char *)p;
	int found = 0;
	pthread_mutex_lock(&host_lock);
	for (size_t i = 0; host_blocks && i < host_blocks->size() && !found; i++) {
		host_block &b = (*host_blocks)[i];
		if (c >= b.p && c < b.p + b.n && n <= (size_t)(b.p + b.n - c)) {
			*out = b;
			found = 1;
		}
	}
	pthread_mutex_unlock(&host_lock);
	return found;
}

extern "C" void *cu_host_alloc(size_t bytes)
{
	if (!cu.ready && cu_init() < 0)
		return NULL;
	on_device();
	host_block b = {NULL, bytes ? bytes : 1, 1, NULL};
	if (cudaMallocHost((void **)&b.p, b.n) != cudaSuccess ||
	    cudaEventCreateWithFlags(&b.read, cudaEventDisableTiming) != cudaSuccess) {
		cudaGetLastError(); /* the locked-memory limit, say: plain memory works too */
		if (b.p)
			cudaFreeHost(b.p);
		b.p = (char *)malloc(b.n);
		b.pinned = 0;
		b.read = NULL;
		if (!b.p)
			return NULL;
	}
	pthread_mutex_lock(&host_lock);
	if (!host_blocks)
		host_blocks = new std::vector<host_block>();
	host_blocks->push_back(b);
	pthread_mutex_unlock(&host_lock);
	return b.p;
}

/* The uploads that read p are done (CU_ENTER: after a failure nothing runs). */
extern "C" void cu_host_wait(const void *p)
{
	CU_ENTER();
	host_block b;
	on_device();
	if (host_find(p, 1, &b) && b.pinned)
		CU_RT(cudaEventSynchronize(b.read), "waiting for the uploads from host buffer %p", p);
}

extern "C" void cu_host_free(void *p)
{
	if (!p)
		return;
	host_block b = {NULL, 0, 0, NULL};
	pthread_mutex_lock(&host_lock);
	for (size_t i = 0; host_blocks && i < host_blocks->size(); i++)
		if ((*host_blocks)[i].p == p) {
			b = (*host_blocks)[i];
			host_blocks->erase(host_blocks->begin() + (long)i);
			break;
		}
	pthread_mutex_unlock(&host_lock);
	if (!b.p) {
		char why[64];
		snprintf(why, sizeof(why), "pointer %p", p);
		cu_fail(__FILE__, __LINE__, "cu_host_free", why, "host free: not a buffer of host_alloc");
		return;
	}
	if (!b.pinned) {
		free(b.p);
		return;
	}
	/* cudaFreeHost waits for the device; errors here change nothing for the caller */
	on_device();
	if (cudaEventSynchronize(b.read) != cudaSuccess || cudaEventDestroy(b.read) != cudaSuccess ||
	    cudaFreeHost(b.p) != cudaSuccess)
		cudaGetLastError();
}

/* Host to device on the copy stream, after the compute stream's work queued
 * so far (it may still read dst); the compute stream waits for the copy.
 * From a pinned buffer of host_alloc, straight: the copy may run after this
 * returns (host_wait). From any other memory, through two pinned staging
 * buffers: the caller's buffer may be reused as soon as this returns, and the
 * copy of one chunk overlaps the host memcpy of the next and the kernels
 * still queued on the compute stream. */
static void upload_raw(void *dst, const void *host, size_t bytes)
{
	if (!bytes)
		return;
	if (CU_RT(cudaEventRecord(compute_mark, cu.compute), "upload of %zu bytes", bytes) ||
	    CU_RT(cudaStreamWaitEvent(cu.copy, compute_mark, 0), "upload of %zu bytes", bytes))
		return;
	host_block hb;
	if (host_find(host, bytes, &hb) && hb.pinned) {
		(void)(CU_RT(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, cu.copy),
			     "upload of %zu bytes from pinned memory", bytes) ||
		       CU_RT(cudaEventRecord(hb.read, cu.copy), "upload of %zu bytes", bytes) ||
		       CU_RT(cudaEventRecord(copy_mark, cu.copy), "upload of %zu bytes", bytes) ||
		       CU_RT(cudaStreamWaitEvent(cu.compute, copy_mark, 0), "upload of %zu bytes",
			     bytes));
		return;
	}
	const char *src = (const char *)host;
	char *d = (char *)dst;
	static int k; /* the staging buffer used least recently, across calls */
	for (size_t off = 0; off < bytes; off += STAGE_BYTES, k ^= 1) {
		size_t len = bytes - off < STAGE_BYTES ? bytes - off : STAGE_BYTES;
		if (CU_RT(cudaEventSynchronize(stage_done[k]), "upload of %zu bytes (chunk at %zu)", bytes,
			  off))
			return;
		memcpy(stage[k], src + off, len);
		if (CU_RT(cudaMemcpyAsync(d + off, stage[k], len, cudaMemcpyHostToDevice, cu.copy),
			  "upload of %zu bytes (chunk at %zu)", bytes, off) ||
		    CU_RT(cudaEventRecord(stage_done[k], cu.copy), "upload of %zu bytes", bytes))
			return;
	}
	if (CU_RT(cudaEventRecord(copy_mark, cu.copy), "upload of %zu bytes", bytes) ||
	    CU_RT(cudaStreamWaitEvent(cu.compute, copy_mark, 0), "upload of %zu bytes", bytes))
		return;
}

/* Into bf16 activation storage, the values go through an fp32 stage and a
 * cast on the compute stream (which waits for the copy). */
extern "C" void cu_upload(void *dst, const void *host, size_t bytes)
{
	CU_ENTER();
	cu_arr a = cu_arr_of(dst);
	if (!a.bf) {
		upload_raw(dst, host, bytes);
		return;
	}
	float *st = act_stage_for(bytes, "upload into bf16 activation storage: fp32 stage");
	if (!st)
		return;
	upload_raw(st, host, bytes);
	cu_to_bf16(st, a.p, bytes / sizeof(float));
}

/* Device to host waits for everything queued before it (the caller reads host next). */
extern "C" void cu_download(void *host, const void *src, size_t bytes)
{
	CU_ENTER();
	if (!bytes)
		return;
	cu_arr a = cu_arr_of(src);
	if (a.bf) { /* from bf16 activation storage: widened first */
		float *st = act_stage_for(bytes, "download from bf16 activation storage: fp32 stage");
		if (!st)
			return;
		cu_from_bf16(a.p, st, bytes / sizeof(float));
		src = st;
	}
	if (CU_RT(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, cu.compute),
		  "download of %zu bytes", bytes) ||
	    CU_RT(cudaStreamSynchronize(cu.compute), "download of %zu bytes (waits for all queued work)",
		  bytes))
		return;
}

extern "C" void cu_sync(void)
{
	CU_ENTER();
	CU_RT(cudaStreamSynchronize(cu.compute), "sync (waits for all queued work)");
}
