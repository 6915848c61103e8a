/* cuda_runtime_api.h of the simulated runtime: the same declarations. */
#include "cuda_runtime.h"
