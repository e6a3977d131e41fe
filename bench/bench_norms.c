/* bench_norms.c: forward and forward+backward time of LayerNorm, RMSNorm, DyT and Derf on an
 * N x C tensor (default 8192 x 768, the anchors' shape), median of R runs, against PyTorch run in
 * the same invocation (tools/bench_torch_norms.py), with the ratio.
 * Build and run: make bench   (or: make build/bench/bench_norms && ./build/bench/bench_norms [N C R]) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <omp.h>
#include "derf/norm.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    int N = argc > 1 ? atoi(argv[1]) : 8192, C = argc > 2 ? atoi(argv[2]) : 768, R = argc > 3 ? atoi(argv[3]) : 30;
    const char *names[] = {"layernorm", "rmsnorm", "dyt", "derf"};
    size_t n = (size_t)N * C;
    float *x = malloc(n * 4), *y = malloc(n * 4), *dy = malloc(n * 4), *dx = malloc(n * 4);
    float *stats = malloc((size_t)N * 8), p[4096], dp[4096];
    srand(1);
    for (size_t i = 0; i < n; i++) { x[i] = (float)rand() / RAND_MAX * 4 - 2; dy[i] = (float)rand() / RAND_MAX - 0.5f; }
    double ours[4][2];
    double *ts = malloc(sizeof(double) * R);
    for (int k = 0; k < 4; k++) {
        derf_norm_spec s;
        derf_norm_parse(names[k], &s, NULL, 0);
        derf_norm_init(&s, C, p);
        for (int mode = 0; mode < 2; mode++) {
            for (int r = -3; r < R; r++) {
                double t = now();
                derf_norm_forward(&s, y, stats, x, p, N, C);
                if (mode) {
                    memset(dx, 0, n * 4);
                    memset(dp, 0, sizeof dp);
                    derf_norm_backward(&s, dx, dp, dy, x, p, stats, N, C);
                }
                if (r >= 0) ts[r] = now() - t;
            }
            qsort(ts, R, sizeof *ts, cmp);
            ours[k][mode] = 1e3 * ts[R / 2];
        }
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/bench_torch_norms.py %d %d %d %d", N, C, R, omp_get_max_threads());
    FILE *f = popen(cmd, "r");
    double torch[4][2] = {{0}};
    char name[32];
    double a, b;
    while (f && fscanf(f, "%31s %lf %lf", name, &a, &b) == 3)
        for (int k = 0; k < 4; k++)
            if (!strcmp(name, names[k])) { torch[k][0] = a; torch[k][1] = b; }
    if (f) pclose(f);
    printf("norms %d x %d fp32, %d threads, median of %d (ms); ratio = PyTorch / derf (higher is better for derf)\n", N, C,
           omp_get_max_threads(), R);
    printf("%-10s %10s %10s %7s %12s %12s %7s\n", "norm", "derf fwd", "torch fwd", "ratio", "derf fwd+bwd", "torch fwd+bwd", "ratio");
    for (int k = 0; k < 4; k++)
        printf("%-10s %10.3f %10.3f %6.1fx %12.3f %12.3f %6.1fx\n", names[k], ours[k][0], torch[k][0],
               torch[k][0] / ours[k][0], ours[k][1], torch[k][1], torch[k][1] / ours[k][1]);
    return 0;
}
