/* div: division and remainder by a divisor fixed for a kernel launch,
 * without a divide instruction. GPUs have none: a 64-bit `/` or `%` is a
 * subroutine of about a hundred instructions and a 32-bit one about twenty,
 * which in an element-wise kernel that computes its element's channel or
 * row costs more time than moving the element. Here q = umulhi(n, mul) >>
 * (shift - 1) with mul = ceil(2^(31 + shift) / d), shift = ceil(log2 d):
 * exact for every n < 2^31 (Granlund & Montgomery 1994, the "round up"
 * method; CUTLASS's FastDivmod is the same). So the kernels index elements
 * with 32 bits, and the slots refuse tensors of 2^31 values or more.
 * Included by nn/cuda/ops.cu and the host tests (tests/cuda_hostsim). */
#ifndef NN_CUDA_DIV_H
#define NN_CUDA_DIV_H

#include <stdint.h>

#ifdef __CUDACC__
#define CU_HD __host__ __device__
#else
#define CU_HD
#endif

struct cu_div {
	unsigned d, mul, shift;
};

/* d >= 1 */
static inline cu_div cu_div_of(unsigned d)
{
	unsigned s = 0;
	while (s < 31 && (1u << s) < d)
		s++;
	if (s == 0)
		return cu_div{d, 0, 0}; /* d = 1 */
	return cu_div{d, (unsigned)((((uint64_t)1 << (31 + s)) + d - 1) / d), s};
}

CU_HD static inline unsigned cu_umulhi(unsigned a, unsigned b)
{
#ifdef __CUDA_ARCH__
	return __umulhi(a, b);
#else
	return (unsigned)(((uint64_t)a * b) >> 32);
#endif
}

/* n / v.d and n % v.d, for n < 2^31 */
CU_HD static inline unsigned cu_quo(cu_div v, unsigned n)
{
	return v.shift ? cu_umulhi(n, v.mul) >> (v.shift - 1) : n;
}
CU_HD static inline unsigned cu_rem(cu_div v, unsigned n) { return n - cu_quo(v, n) * v.d; }

#endif
