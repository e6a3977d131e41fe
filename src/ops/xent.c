/* xent.c: softmax cross-entropy over logits[N,V], fused forward and backward, with hard targets
 * (label smoothing, ignored rows) or soft targets (mixup / cutmix). Row statistics in double.
 * With AVX-512 a row runs 16 logits a step: the float exp of norms/fastmath.h (rel err 1.5e-7) on
 * x - max, the sums in double lanes; elsewhere libm's double exp. At GPT-2's vocabulary (50304) the
 * scalar double exp was about 7% of a training step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "derf/ops.h"
#include "norms/fastmath.h"
#include "norms/simd.h"

/* One row: loss = logsumexp(x) - sum_v q_v x_v with q = (1-eps) onehot(tgt) + eps/V
 * (tgt < 0: q given by soft[V] instead). Adds gscale * (softmax - q) to d if d != NULL. */
#if defined(__AVX512F__)
/* exp(x - mx), 16 lanes; the argument is clamped at -87 (below, e^a < 1.7e-38 adds nothing to a sum
 * whose largest term is 1, and the clamp keeps the result a normal float) */
static inline __m512 exp_shifted16(__m512 x, __m512 vmx) {
    return derf_exp16(_mm512_max_ps(_mm512_sub_ps(x, vmx), _mm512_set1_ps(-87.0f)));
}
/* adds the 16 floats of v to the two 8-lane double accumulators */
static inline void add_pd16(__m512d *lo, __m512d *hi, __m512 v) {
    *lo = _mm512_add_pd(*lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    *hi = _mm512_add_pd(*hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
static inline double reduce_pd16(__m512d lo, __m512d hi) { return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi)); }

static double xent_row(float *d, const float *x, int tgt, const float *soft, double eps,
                       double gscale, int V) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 vmax = ninf;
    for (int v = 0; v < V; v += 16) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(ninf, derf_lane_mask(V - v), x + v));
    const float mx = _mm512_reduce_max_ps(vmax);
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512d s_lo = _mm512_setzero_pd(), s_hi = s_lo, x_lo = s_lo, x_hi = s_lo, q_lo = s_lo, q_hi = s_lo;
    for (int v = 0; v < V; v += 16) {
        __mmask16 m = derf_lane_mask(V - v);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + v);
        add_pd16(&s_lo, &s_hi, _mm512_maskz_mov_ps(m, exp_shifted16(xv, vmx)));
        add_pd16(&x_lo, &x_hi, xv);
        if (soft) add_pd16(&q_lo, &q_hi, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, soft + v), xv));
    }
    const double sum = reduce_pd16(s_lo, s_hi), sumx = reduce_pd16(x_lo, x_hi);
    const double lse = (double)mx + log(sum);
    const double qx = soft ? reduce_pd16(q_lo, q_hi) : (1.0 - eps) * x[tgt] + eps / V * sumx;
    if (d) {
        /* d += gscale * (p - q), q = soft or eps/V (the target's 1 - eps after the loop) */
        const __m512 vinv = _mm512_set1_ps((float)(1.0 / sum)), vgs = _mm512_set1_ps((float)gscale);
        const __m512 vq = _mm512_set1_ps((float)(eps / V));
        for (int v = 0; v < V; v += 16) {
            __mmask16 m = derf_lane_mask(V - v);
            __m512 p = _mm512_mul_ps(exp_shifted16(_mm512_maskz_loadu_ps(m, x + v), vmx), vinv);
            __m512 q = soft ? _mm512_maskz_loadu_ps(m, soft + v) : vq;
            _mm512_mask_storeu_ps(d + v, m, _mm512_fmadd_ps(vgs, _mm512_sub_ps(p, q), _mm512_maskz_loadu_ps(m, d + v)));
        }
        if (!soft) d[tgt] -= (float)(gscale * (1.0 - eps));
    }
    return lse - qx;
}
#else
static double xent_row(float *d, const float *x, int tgt, const float *soft, double eps,
                       double gscale, int V) {
    double mx = x[0];
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    double sum = 0.0, sumx = 0.0, qx = 0.0;
    for (int v = 0; v < V; v++) { sum += exp((double)x[v] - mx); sumx += x[v]; }
    const double lse = mx + log(sum);
    if (soft) {
        for (int v = 0; v < V; v++) qx += (double)soft[v] * x[v];
    } else {
        qx = (1.0 - eps) * x[tgt] + eps / V * sumx;
    }
    if (d) {
        const double inv = 1.0 / sum;
        for (int v = 0; v < V; v++) {
            double q = soft ? (double)soft[v] : eps / V + (v == tgt ? 1.0 - eps : 0.0);
            d[v] += (float)(gscale * (exp((double)x[v] - mx) * inv - q));
        }
    }
    return lse - qx;
}
#endif

/* logits[N,V], targets[N] (< 0: ignored) -> mean loss over kept rows; dlogits[N,V] += scale*(p-q)/Nkept */
float derf_xent_forward_backward(float *dlogits, const float *logits, const int32_t *targets,
                                 float smoothing, float scale, int N, int V) {
    int kept = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] >= V) {
            fprintf(stderr, "derf: cross-entropy target %d out of range [0, %d) at row %d\n",
                    (int)targets[n], V, n);
            exit(1);
        }
        kept += targets[n] >= 0;
    }
    if (kept == 0) return 0.0f;
    const double gscale = (double)scale / kept;
    double total = 0.0;
    #pragma omp parallel for reduction(+:total) schedule(static) if ((long)N * V > 16384)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        total += xent_row(dlogits ? dlogits + (size_t)n * V : NULL, logits + (size_t)n * V,
                          targets[n], NULL, smoothing, gscale, V);
    }
    return (float)(total / kept);
}

/* logits[N,V], q[N,V] (rows sum to 1) -> mean loss over N; dlogits[N,V] += scale*(p-q)/N */
float derf_xent_soft_forward_backward(float *dlogits, const float *logits, const float *q,
                                      float scale, int N, int V) {
    if (N <= 0) return 0.0f;
    const double gscale = (double)scale / N;
    double total = 0.0;
    #pragma omp parallel for reduction(+:total) schedule(static) if ((long)N * V > 16384)
    for (int n = 0; n < N; n++)
        total += xent_row(dlogits ? dlogits + (size_t)n * V : NULL, logits + (size_t)n * V,
                          -1, q + (size_t)n * V, 0.0, gscale, V);
    return (float)(total / N);
}
