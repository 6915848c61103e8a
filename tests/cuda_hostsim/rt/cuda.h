/* The CUDA driver's virtual memory management on the host, for the host
 * simulation (tests/cuda_hostsim/sim_rt.cpp): rt.cu reaches these calls
 * through cudaGetDriverEntryPointByVersion, as on a GPU. A reservation is
 * host address space with no access (mmap PROT_NONE); a physical chunk is
 * counted against the simulated device memory; a mapped range becomes
 * readable, writable and a live device block only once cuMemSetAccess has
 * been called on it, and unmapping takes both away again, so a slot that
 * touches an unbacked part of a reservation stops the run. The granularity
 * is 64 KiB (a GPU's is 2 MiB), so that small test nets have blocks of
 * several granules; CAIRN_SIM_NO_VMM=1 reports a device without VMM, and
 * CAIRN_SIM_VMM_FAIL=1 one whose cuMemSetAccess fails (NOT_SUPPORTED). */
#ifndef SIM_CUDA_H
#define SIM_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cudaError_enum {
	CUDA_SUCCESS = 0,
	CUDA_ERROR_INVALID_VALUE = 1,
	CUDA_ERROR_OUT_OF_MEMORY = 2,
	CUDA_ERROR_NOT_SUPPORTED = 801,
} CUresult;
typedef unsigned long long CUdeviceptr;
typedef int CUdevice;
typedef unsigned long long CUmemGenericAllocationHandle;

typedef enum { CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 102 } CUdevice_attribute;
typedef enum { CU_MEM_ALLOCATION_TYPE_PINNED = 1 } CUmemAllocationType;
typedef enum { CU_MEM_LOCATION_TYPE_DEVICE = 1 } CUmemLocationType;
typedef enum { CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3 } CUmemAccess_flags;
typedef enum { CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 1 } CUmemAllocationGranularity_flags;

typedef struct {
	CUmemLocationType type;
	int id;
} CUmemLocation;
typedef struct {
	CUmemAllocationType type;
	int requestedHandleTypes;
	CUmemLocation location;
	void *win32HandleMetaData;
	struct {
		unsigned char compressionType, gpuDirectRDMACapable;
		unsigned short usage;
		unsigned char reserved[4];
	} allocFlags;
} CUmemAllocationProp;
typedef struct {
	CUmemLocation location;
	CUmemAccess_flags flags;
} CUmemAccessDesc;

#ifdef __cplusplus
}
#endif

#endif
