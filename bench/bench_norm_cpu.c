/* bench_norm_cpu.c: the norm kernels timed by CPU time, for a machine shared with other jobs.
 * With OMP_NUM_THREADS=1 every figure is the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which
 * time-slicing by other processes does not inflate (cache and memory sharing still do); with more
 * threads it is wall time. Minimum over REPS runs of: a copy of the N x 768 tensor (memcpy, one chunk
 * per thread), and derf_norm_forward and derf_norm_backward of each SPEC (backward adds into dx).
 * %copy as in `derf bench`: forward 2 tensor passes, forward+backward 6, over the copy's 2.
 *
 *   make build/bench/bench_norm_cpu
 *   OMP_NUM_THREADS=1 ./build/bench/bench_norm_cpu 8192 20 layernorm rmsnorm dyt derf   # beyond L2
 *   OMP_NUM_THREADS=1 ./build/bench/bench_norm_cpu 64 2000 derf                         # in cache */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "derf/norm.h"

static double now(int cpu) {
    struct timespec t;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s ROWS REPS SPEC...\n", argv[0]);
        return 2;
    }
    const int N = atoi(argv[1]), C = 768, reps = atoi(argv[2]), cpu = omp_get_max_threads() == 1;
    if (N <= 0 || reps <= 0) { fprintf(stderr, "bench_norm_cpu: ROWS and REPS must be positive\n"); return 2; }
    const size_t n = (size_t)N * C;
    float *x = malloc(n * 4), *y = malloc(n * 4), *dy = malloc(n * 4), *dx = malloc(n * 4), *st = malloc((size_t)N * 8);
    if (!x || !y || !dy || !dx || !st) { fprintf(stderr, "bench_norm_cpu: out of memory\n"); return 1; }
    srand(1);
    for (size_t i = 0; i < n; i++) {
        x[i] = 4.f * (float)rand() / (float)RAND_MAX - 2.f;
        dy[i] = (float)rand() / (float)RAND_MAX - .5f;
        y[i] = dx[i] = 0.f;
    }
    double cp = 1e9;
    for (int r = 0; r < reps; r++) {
        double t = now(cpu);
#pragma omp parallel
        {
            size_t k = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
            memcpy(y + n * k / nt, x + n * k / nt, (n * (k + 1) / nt - n * k / nt) * 4);
        }
        t = now(cpu) - t;
        cp = t < cp ? t : cp;
    }
    printf("%d x %d, %s, min of %d: memcpy %.3f ms (%.3f ns/element)\n", N, C, cpu ? "thread CPU time" : "wall time", reps,
           cp * 1e3, cp * 1e9 / (double)n);
    for (int a = 3; a < argc; a++) {
        derf_norm_spec s;
        char err[256];
        if (derf_norm_parse(argv[a], &s, err, sizeof err)) { fprintf(stderr, "bench_norm_cpu: %s\n", err); return 2; }
        size_t np = derf_norm_param_count(&s, C);
        float *p = malloc(np * 4 + 4), *dp = calloc(np + 1, 4);
        derf_norm_init(&s, C, p);
        double bf = 1e9, bb = 1e9;
        for (int r = 0; r < reps; r++) {
            double t = now(cpu);
            derf_norm_forward(&s, y, st, x, p, N, C);
            t = now(cpu) - t;
            bf = t < bf ? t : bf;
            t = now(cpu);
            derf_norm_backward(&s, dx, dp, dy, x, p, st, N, C);
            t = now(cpu) - t;
            bb = t < bb ? t : bb;
        }
        printf("%-10s fwd %.3f ms (%.3f ns/el, %3.0f%% copy)  bwd %.3f ms (%.3f ns/el)  fwd+bwd %.3f ms (%3.0f%% copy)\n",
               argv[a], bf * 1e3, bf * 1e9 / (double)n, 100 * cp / bf, bb * 1e3, bb * 1e9 / (double)n, (bf + bb) * 1e3,
               100 * 3 * cp / (bf + bb));
        free(p);
        free(dp);
    }
    free(x); free(y); free(dy); free(dx); free(st);
    return 0;
}
