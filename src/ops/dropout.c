/* dropout.c: dropout, drop path (stochastic depth, timm DropPath with scale_by_keep) and the
 * residual add. Masks are drawn serially from the caller's rng so a seed fixes them regardless of
 * the thread count; the arithmetic runs under OpenMP. */
#include <string.h>
#include "derf/ops.h"

/* inp[n] -> mask[n] in {0, 1/(1-p)}, out[n] = inp * mask. p <= 0: mask = 1, no draws. p >= 1: all 0. */
void derf_dropout_forward(float *out, float *mask, const float *inp, float p, size_t n, derf_rng *rng) {
    const long nn = (long)n;
    if (p <= 0.0f) {
        for (long i = 0; i < nn; i++) mask[i] = 1.0f;
        if (out != inp) memcpy(out, inp, n * sizeof(float));
        return;
    }
    const float keep = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    for (long i = 0; i < nn; i++) mask[i] = derf_rng_uniform(rng) < p ? 0.0f : keep;
    #pragma omp parallel for schedule(static) if (nn > 65536)
    for (long i = 0; i < nn; i++) out[i] = inp[i] * mask[i];
}

/* dout[n], mask[n] -> dinp[n] += dout * mask */
void derf_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n) {
    if (!dinp) return;
    const long nn = (long)n;
    #pragma omp parallel for schedule(static) if (nn > 65536)
    for (long i = 0; i < nn; i++) dinp[i] += dout[i] * mask[i];
}

/* x[B,rest] in place: keep[b] in {0, 1/(1-p)}, x[b,:] *= keep[b]. p <= 0: keep = 1, no draws. */
void derf_drop_path_forward(float *x, float *keep, float p, int B, size_t rest, derf_rng *rng) {
    derf_drop_path_forward_shard(x, keep, p, B, rest, rng, B, 0);
}

/* keep[b] for samples off..off+B-1 of `total`; the draws of the others are made and dropped. */
void derf_drop_path_forward_shard(float *x, float *keep, float p, int B, size_t rest, derf_rng *rng,
                                  int total, int off) {
    if (p <= 0.0f) {
        for (int b = 0; b < B; b++) keep[b] = 1.0f;
        return;
    }
    const float k = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    for (int g = 0; g < total; g++) {
        const float u = derf_rng_uniform(rng);
        if (g >= off && g < off + B) keep[g - off] = u < p ? 0.0f : k;
    }
    derf_drop_path_backward(x, keep, B, rest);
}

/* dx[B,rest] in place: dx[b,:] *= keep[b] */
void derf_drop_path_backward(float *dx, const float *keep, int B, size_t rest) {
    if (!dx) return;
    #pragma omp parallel for schedule(static) if ((long)B * (long)rest > 65536)
    for (int b = 0; b < B; b++) {
        const float k = keep[b];
        if (k == 1.0f) continue;
        float *row = dx + (size_t)b * rest;
        for (size_t i = 0; i < rest; i++) row[i] *= k;
    }
}

/* a[n], b[n] -> out[n] = a + b (out may alias a or b) */
void derf_residual_forward(float *out, const float *a, const float *b, size_t n) {
    const long nn = (long)n;
    #pragma omp parallel for schedule(static) if (nn > 65536)
    for (long i = 0; i < nn; i++) out[i] = a[i] + b[i];
}
