/* bench_gpt2_phases.c: where a GPT-2 124M training step (B 4, T 64) spends its time, LayerNorm against
 * Derf, for a machine shared with other jobs. Both models are built first and their steps interleaved;
 * each phase (zero_grad, forward with the loss, backward, clip + AdamW) is timed as process CPU time
 * (CLOCK_PROCESS_CPUTIME_ID; run it with OMP_NUM_THREADS=1, where time-slicing by other processes does
 * not count), and the minimum over the steps after the first is reported. FTZ/DAZ as in the CLI.
 *
 *   make build/bench/bench_gpt2_phases && OMP_NUM_THREADS=1 ./build/bench/bench_gpt2_phases 5 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#include "derf/gpt2.h"
#include "derf/norm.h"
#include "derf/optim.h"
#include "derf/rng.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
#if defined(__SSE__)
    _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
    const int reps = argc > 1 ? atoi(argv[1]) : 5, B = 4, T = 64;
    if (reps < 2) { fprintf(stderr, "bench_gpt2_phases: at least 2 steps\n"); return 2; }
    const char *norms[2] = {"layernorm", "derf"};
    derf_gpt2 m[2];
    char err[256];
    int32_t tok[4 * 64], tgt[4 * 64];
    derf_rng r;
    derf_rng_seed(&r, 11, 0);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)derf_rng_below(&r, 50257);
        tgt[i] = (int32_t)derf_rng_below(&r, 50257);
    }
    for (int i = 0; i < 2; i++) {
        derf_gpt2_config c;
        if (derf_gpt2_preset(&c, "124m", err, sizeof err) || derf_norm_parse(norms[i], &c.norm, err, sizeof err) ||
            derf_gpt2_build(&m[i], &c, B, T, err, sizeof err)) {
            fprintf(stderr, "bench_gpt2_phases: %s\n", err);
            return 1;
        }
        derf_gpt2_init(&m[i], 0);
    }
    const derf_adamw_cfg a = {6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    double best[2][4];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) best[i][k] = 1e9;
    for (int rep = 0; rep < reps; rep++)
        for (int i = 0; i < 2; i++) {
            double t0 = now();
            derf_gpt2_zero_grad(&m[i]);
            double t1 = now();
            derf_gpt2_forward(&m[i], tok, tgt, B, T);
            double t2 = now();
            derf_gpt2_backward(&m[i], 1.f);
            double t3 = now();
            derf_clip_grad_norm(&m[i].params, 1.f);
            derf_adamw_step(&m[i].params, &a, rep + 1);
            double t4 = now(), d[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
            for (int k = 0; rep > 0 && k < 4; k++) best[i][k] = d[k] < best[i][k] ? d[k] : best[i][k];
        }
    for (int i = 0; i < 2; i++)
        printf("%-10s zero_grad %6.1f  forward %6.1f  backward %7.1f  clip+adamw %6.1f  sum %7.1f ms\n", norms[i],
               best[i][0] * 1e3, best[i][1] * 1e3, best[i][2] * 1e3, best[i][3] * 1e3,
               (best[i][0] + best[i][1] + best[i][2] + best[i][3]) * 1e3);
    for (int i = 0; i < 2; i++) derf_gpt2_free(&m[i]);
    return 0;
}
