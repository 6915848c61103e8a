/* bf16 as cuda_bf16.h defines it, on the host (the host simulation): the top
 * 16 bits of a float, rounded to nearest even (__float2bfloat16_rn); NaN
 * stays a quiet NaN. */
#ifndef SIM_CUDA_BF16_H
#define SIM_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

typedef struct __nv_bfloat16 {
	uint16_t x;
} __nv_bfloat16;
static inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	__nv_bfloat16 b;
	if ((u & 0x7fffffffu) > 0x7f800000u)
		b.x = (uint16_t)((u >> 16) | 0x40);
	else
		b.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
	return b;
}
static inline float __bfloat162float(__nv_bfloat16 b)
{
	uint32_t u = (uint32_t)b.x << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

#endif
