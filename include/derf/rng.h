/* derf/rng.h: seeded, reproducible random numbers (PCG32), with normals and a state that can be
 * saved in a training-state file. */
#ifndef DERF_RNG_H
#define DERF_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct { uint64_t state, inc; } derf_rng;

void derf_rng_seed(derf_rng *r, uint64_t seed, uint64_t stream);
uint32_t derf_rng_u32(derf_rng *r);
float derf_rng_uniform(derf_rng *r);                 /* [0, 1) */
float derf_rng_normal(derf_rng *r);                  /* N(0, 1) */
uint32_t derf_rng_below(derf_rng *r, uint32_t n);    /* uniform integer in [0, n) */
void derf_rng_fill_normal(derf_rng *r, float *x, size_t n, float mean, float std);
void derf_rng_fill_uniform(derf_rng *r, float *x, size_t n, float lo, float hi);

#endif
