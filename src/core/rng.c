/* rng.c: PCG32 (O'Neill, pcg32_random_r / pcg32_srandom_r) with uniform floats, bounded integers and
 * normals. The state is exactly {state, inc}: normals come from Box-Muller WITHOUT caching the second
 * value, so saving and restoring the struct reproduces the stream exactly. */
#include <math.h>
#include <stddef.h> /* size_t: derf/rng.h uses it without including <stddef.h> */
#include "derf/rng.h"

#define DERF_PCG_MULT 6364136223846793005ULL

/* Seeds generator r at position seed on stream `stream` (any two streams are independent). */
void derf_rng_seed(derf_rng *r, uint64_t seed, uint64_t stream) {
    r->state = 0u;
    r->inc = (stream << 1u) | 1u;
    derf_rng_u32(r);
    r->state += seed;
    derf_rng_u32(r);
}

uint32_t derf_rng_u32(derf_rng *r) {
    uint64_t old = r->state;
    r->state = old * DERF_PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

/* [0, 1): top 24 bits, so every value is exactly representable and 1.0 is never returned. */
float derf_rng_uniform(derf_rng *r) {
    return (float)(derf_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n), unbiased (PCG's threshold rejection). n = 0 returns 0. */
uint32_t derf_rng_below(derf_rng *r, uint32_t n) {
    if (n == 0) return 0;
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t x = derf_rng_u32(r);
        if (x >= threshold) return x % n;
    }
}

/* Box-Muller: two uniforms in, one normal out (the sine partner is dropped on purpose). */
float derf_rng_normal(derf_rng *r) {
    double u1 = ((double)derf_rng_u32(r) + 0.5) * (1.0 / 4294967296.0); /* (0,1): log finite */
    double u2 = (double)derf_rng_u32(r) * (1.0 / 4294967296.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* x[n] ~ N(mean, std^2), drawn in order (serial: the stream must not depend on thread count). */
void derf_rng_fill_normal(derf_rng *r, float *x, size_t n, float mean, float std) {
    for (size_t i = 0; i < n; i++) x[i] = mean + std * derf_rng_normal(r);
}

/* x[n] ~ U[lo, hi). */
void derf_rng_fill_uniform(derf_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * derf_rng_uniform(r);
}
