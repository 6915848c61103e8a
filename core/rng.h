/* rng: splitmix64 (Steele, Lea, Flood 2014), the small seeded generator for
 * shuffles, crops and pairings: the same seed gives the same stream on every
 * machine. Older modules (nn/dataset, nn/loader, nn/net) keep private copies. */
#ifndef CORE_RNG_H
#define CORE_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform in 0..n-1 (n > 0; the modulo bias is below 2^-32 for n < 2^32). */
static inline uint32_t rng_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

#endif
