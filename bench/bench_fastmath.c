/* bench_fastmath.c: ns per element of libm expf/erff/tanhf vs derf_fast_* (src/norms/fastmath.h)
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
    struct { const char *name; loop_fn libm, fast; double lo, hi; } cases[] = {
        {"exp",  loop_libm_exp,  loop_fast_exp,  -20.0, 10.0},
        {"erf",  loop_libm_erf,  loop_fast_erf,  -5.0,  5.0},
        {"tanh", loop_libm_tanh, loop_fast_tanh, -5.0,  5.0},
    };
    printf("# %d elements, best of %d, single thread\n", N, reps);
    printf("%-5s %-14s %10s %10s %8s\n", "fn", "input range", "libm ns", "fast ns", "speedup");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < N; i++) { /* xorshift64 -> uniform [lo, hi) */
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            x[i] = (float)(cases[c].lo + (cases[c].hi - cases[c].lo) * (double)(s >> 11) * 0x1p-53);
        }
        double tl = best_ns(cases[c].libm, x, y, reps, &sink);
        double tf = best_ns(cases[c].fast, x, y, reps, &sink);
        char range[32];
        snprintf(range, sizeof range, "[%g,%g]", cases[c].lo, cases[c].hi);
        printf("%-5s %-14s %10.3f %10.3f %7.1fx\n", cases[c].name, range, tl, tf, tl / tf);
    }
    fprintf(stderr, "(sink %g)\n", sink);
    free(x); free(y);
    return 0;
}
