/* bench_fastmath.c: ns per element of libm expf/erff/tanhf vs derf_fast_* (src/norms/fastmath.h)
 * and, with AVX-512, their 16-lane forms derf_exp16/erf16/tanh16 (what the norm kernels call),
 * over a 1M-element float array, single thread, best of several repetitions.
 *
 * Build and run (from the repository root):
 *   mkdir -p build && gcc -std=c11 -O3 -march=native -fopenmp -fno-math-errno -Isrc -Iinclude \
 *       bench/bench_fastmath.c -o build/bench_fastmath -lm && ./build/bench_fastmath
 * Add -fopt-info-vec-optimized to see that the three fast loops are vectorized (the libm loops
 * are not: without -ffast-math glibc declares no SIMD variants). Optional argument: repetitions. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "norms/fastmath.h"

#define N (1 << 20)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* noinline so each loop is compiled (and vectorized) on its own, as in a kernel. */
#define LOOP(name, fn)                                                                         \
    static __attribute__((noinline)) void name(const float *restrict x, float *restrict y,  \
                                               int n) {                                       \
        for (int i = 0; i < n; i++) y[i] = fn(x[i]);                                          \
    }
LOOP(loop_libm_exp, expf)
LOOP(loop_fast_exp, derf_fast_expf)
LOOP(loop_libm_erf, erff)
LOOP(loop_fast_erf, derf_fast_erff)
LOOP(loop_libm_tanh, tanhf)
LOOP(loop_fast_tanh, derf_fast_tanhf)

#if defined(__AVX512F__)
/* the 16-lane forms the norm kernels call (N is a multiple of 16) */
#define LOOP16(name, fn)                                                                       \
    static __attribute__((noinline)) void name(const float *restrict x, float *restrict y,  \
                                               int n) {                                       \
        for (int i = 0; i < n; i += 16) _mm512_storeu_ps(y + i, fn(_mm512_loadu_ps(x + i))); \
    }
LOOP16(loop_v16_exp, derf_exp16)
LOOP16(loop_v16_erf, derf_erf16)
LOOP16(loop_v16_tanh, derf_tanh16)
#define V16(f) f
#else
#define V16(f) NULL
#endif

typedef void (*loop_fn)(const float *restrict, float *restrict, int);

static double best_ns(loop_fn f, const float *x, float *y, int reps, double *sink) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        f(x, y, N);
        double t = now() - t0;
        if (t < best) best = t;
        *sink += y[r % N];
    }
    return best * 1e9 / N;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps < 1) reps = 1;
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    if (!x || !y) return 1;
    uint64_t s = 12345;
    double sink = 0;
    struct { const char *name; loop_fn libm, fast, v16; double lo, hi; } cases[] = {
        {"exp",  loop_libm_exp,  loop_fast_exp,  V16(loop_v16_exp),  -20.0, 10.0},
        {"erf",  loop_libm_erf,  loop_fast_erf,  V16(loop_v16_erf),  -5.0,  5.0},
        {"tanh", loop_libm_tanh, loop_fast_tanh, V16(loop_v16_tanh), -5.0,  5.0},
    };
    printf("# %d elements, best of %d, single thread\n", N, reps);
    printf("%-5s %-14s %10s %10s %8s %10s %8s\n", "fn", "input range", "libm ns", "fast ns", "speedup",
           "avx512 ns", "speedup");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < N; i++) { /* xorshift64 -> uniform [lo, hi) */
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            x[i] = (float)(cases[c].lo + (cases[c].hi - cases[c].lo) * (double)(s >> 11) * 0x1p-53);
        }
        double tl = best_ns(cases[c].libm, x, y, reps, &sink);
        double tf = best_ns(cases[c].fast, x, y, reps, &sink);
        char range[32];
        snprintf(range, sizeof range, "[%g,%g]", cases[c].lo, cases[c].hi);
        double tv = cases[c].v16 ? best_ns(cases[c].v16, x, y, reps, &sink) : NAN;
        printf("%-5s %-14s %10.3f %10.3f %7.1fx %10.3f %7.1fx\n", cases[c].name, range, tl, tf, tl / tf, tv, tl / tv);
    }
    fprintf(stderr, "(sink %g)\n", sink);
    free(x); free(y);
    return 0;
}
