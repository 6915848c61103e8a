/* div: nn/cuda/div.h's division by invariant integers against the CPU's
 * divide, on the host (the same code the kernels run, with umulhi computed
 * in 64 bits as the GPU instruction does): every divisor up to 5,000, then
 * sparser ones up to 2^31 - 1, each with dividends 0-999, the largest 1,000
 * below 2^31, the multiples of the divisor and their neighbours, and
 * random ones. TAP output. */
#include <stdio.h>

#include "nn/cuda/div.h"

static uint64_t rng = 20261203;

static unsigned next31(void)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)(rng >> 33);
}

int main(void)
{
	unsigned long long tests = 0, bad = 0;
	for (uint64_t d = 1; d < 0x80000000u; d += d < 5000 ? 1 : d / 97) {
		cu_div v = cu_div_of((unsigned)d);
		for (int k = 0; k < 4000; k++) {
			unsigned n = k < 1000   ? (unsigned)k
				     : k < 2000 ? 0x7fffffffu - (unsigned)(k - 1000)
				     : k < 3000 ? (unsigned)((d * (uint64_t)next31() + (k % 3) - 1) & 0x7fffffffu)
						: next31();
			unsigned q = cu_quo(v, n), r = cu_rem(v, n);
			tests++;
			if (q != n / d || r != n % d) {
				if (bad++ < 5)
					printf("# %u / %llu: %u rem %u, expected %u rem %u\n", n,
					       (unsigned long long)d, q, r, (unsigned)(n / d), (unsigned)(n % d));
			}
		}
	}
	printf("# %llu divisions, %llu wrong\n", tests, bad);
	printf("%s - fast division by invariant integers\n", bad ? "not ok" : "ok");
	return bad != 0;
}
