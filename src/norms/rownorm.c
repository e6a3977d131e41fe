/* rownorm.c: LayerNorm and RMSNorm over the last dimension (rows of C), forward saving the row
 * statistics (mean and 1/std, or 1/rms) for backward.
 * Each row (C floats, in L1 for any practical width) is read from memory once per call: the statistics
 * are lane-parallel float sums (`omp simd reduction`, 16 lanes with AVX-512), two passes over the row in
 * cache for the variance (sum of (x - mean)^2, no cancellation), then one pass writing y. Backward: one
 * pass gives the row sums of dy*w and dy*w*xhat and the per-thread dgamma/dbeta partials, a second pass
 * over the cached row writes dx; the partials are added in thread order (deterministic). */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "derf/norm.h"

void derf_rownorm_forward(const derf_norm_spec *s, float *y, float *stats, const float *x,
                          const float *params, int N, int C);
void derf_rownorm_backward(const derf_norm_spec *s, float *dx, float *dparams, const float *dy,
                           const float *x, const float *params, const float *stats, int N, int C);

/* weight (ones when absent) and bias (zeros when absent) as plain vectors, so the loops have no
 * branches; one allocation, freed by the caller with free(*w). */
static void affine_vecs(const derf_norm_spec *s, const float *params, int C, float **w, float **b) {
    float *buf = malloc(sizeof(float) * 2 * (size_t)C);
    *w = buf;
    *b = buf + C;
    for (int c = 0; c < C; c++) {
        buf[c] = s->affine ? params[c] : 1.f;
        buf[C + c] = (s->affine && s->bias) ? params[C + c] : 0.f;
    }
}

/* sum_c x[c] and sum_c (x[c] - m)^2 over one row. With AVX-512: four 16-lane accumulators (the adds'
 * latency, not the loads, would bound one), the tail through a masked load; else an `omp simd`
 * reduction. Either way a fixed order for a given C. */
#if defined(__AVX512F__)
#include "norms/simd.h"
static float row_sum(const float *x, int C) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int c = 0;
    for (; c + 64 <= C; c += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + c));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + c + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + c + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + c + 48));
    }
    for (; c < C; c += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(derf_lane_mask(C - c), x + c));
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
static float row_sqdev(const float *x, float m, int C) {
    const __m512 vm = _mm512_set1_ps(m);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, d;
    int c = 0;
    for (; c + 64 <= C; c += 64) {
        d = _mm512_sub_ps(_mm512_loadu_ps(x + c), vm);      s0 = _mm512_fmadd_ps(d, d, s0);
        d = _mm512_sub_ps(_mm512_loadu_ps(x + c + 16), vm); s1 = _mm512_fmadd_ps(d, d, s1);
        d = _mm512_sub_ps(_mm512_loadu_ps(x + c + 32), vm); s2 = _mm512_fmadd_ps(d, d, s2);
        d = _mm512_sub_ps(_mm512_loadu_ps(x + c + 48), vm); s3 = _mm512_fmadd_ps(d, d, s3);
    }
    for (; c < C; c += 16) {
        __mmask16 k = derf_lane_mask(C - c);
        d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + c), vm);
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
#else
static float row_sum(const float *restrict x, int C) {
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += x[c];
    return s;
}
static float row_sqdev(const float *restrict x, float m, int C) {
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += (x[c] - m) * (x[c] - m);
    return s;
}
#endif

void derf_rownorm_forward(const derf_norm_spec *s, float *y, float *stats, const float *x,
                          const float *params, int N, int C) {
    const int ln = s->kind == DERF_NORM_LAYERNORM;
    float *w, *b;
    affine_vecs(s, params, C, &w, &b);
    const float *restrict wv = w, *restrict bv = b;
    const float inv_c = 1.f / (float)C, eps = s->eps;
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
    for (int n = 0; n < N; n++) {
        const float *restrict xr = x + (size_t)n * C;
        float *restrict yr = y + (size_t)n * C;
#if defined(__AVX512F__)
        for (int c = 0; c < C; c += 16) { DERF_PF_R(xr + c); DERF_PF_W(yr + c); } /* the rows ahead (simd.h) */
#endif
        const float m = ln ? row_sum(xr, C) * inv_c : 0.f;
        const float r = 1.f / sqrtf(row_sqdev(xr, m, C) * inv_c + eps);
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] = wv[c] * ((xr[c] - m) * r) + bv[c];
        if (stats) {
            if (ln) { stats[2 * (size_t)n] = m; stats[2 * (size_t)n + 1] = r; }
            else stats[n] = r;
        }
    }
    free(w);
}

/* dx = r * (gdy - mean(gdy) - xhat * mean(gdy * xhat)) for LN (mean(gdy) term dropped for RMS),
 * with gdy = dy * w, xhat = (x - m) r. */
void derf_rownorm_backward(const derf_norm_spec *s, float *dx, float *dparams, const float *dy,
                           const float *x, const float *params, const float *stats, int N, int C) {
    const int ln = s->kind == DERF_NORM_LAYERNORM;
    float *w, *b;
    affine_vecs(s, params, C, &w, &b);
    const float *restrict wv = w;
    float *dw = (dparams && s->affine) ? dparams : NULL;
    float *db = (dparams && s->affine && s->bias) ? dparams + C : NULL;
    const float inv_c = 1.f / (float)C;
    int nt = omp_get_max_threads();
    float *part = calloc((size_t)nt * 2 * C, sizeof(float));
#pragma omp parallel if ((long)N * C > 16384)
    {
        float *restrict pw = part + (size_t)omp_get_thread_num() * 2 * C, *restrict pb = pw + C;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *restrict xr = x + (size_t)n * C, *restrict dyr = dy + (size_t)n * C;
            const float m = ln ? stats[2 * (size_t)n] : 0.f, r = ln ? stats[2 * (size_t)n + 1] : stats[n];
            float sg = 0.f, sgx = 0.f;
#if defined(__AVX512F__)
            const __m512 vm = _mm512_set1_ps(m), vr = _mm512_set1_ps(r);
            __m512 g0 = _mm512_setzero_ps(), gx0 = g0;
            for (int c = 0; c < C; c += 16) {
                __mmask16 k = derf_lane_mask(C - c);
                DERF_PF_R(xr + c); DERF_PF_R(dyr + c);
                __m512 dyv = _mm512_maskz_loadu_ps(k, dyr + c);
                __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), vm), vr);
                __m512 gd = _mm512_mul_ps(dyv, _mm512_maskz_loadu_ps(k, wv + c));
                g0 = _mm512_add_ps(g0, gd);
                gx0 = _mm512_fmadd_ps(gd, xh, gx0);
                _mm512_mask_storeu_ps(pw + c, k, _mm512_fmadd_ps(dyv, xh, _mm512_maskz_loadu_ps(k, pw + c)));
                _mm512_mask_storeu_ps(pb + c, k, _mm512_add_ps(dyv, _mm512_maskz_loadu_ps(k, pb + c)));
            }
            sg = _mm512_reduce_add_ps(g0);
            sgx = _mm512_reduce_add_ps(gx0);
            const float mg = ln ? sg * inv_c : 0.f, mgx = sgx * inv_c;
            if (dx) {
                float *restrict dxr = dx + (size_t)n * C;
                const __m512 vmg = _mm512_set1_ps(mg), vmgx = _mm512_set1_ps(mgx);
                for (int c = 0; c < C; c += 16) {
                    __mmask16 k = derf_lane_mask(C - c);
                    DERF_PF_W(dxr + c);
                    __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), vm), vr);
                    __m512 gd = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dyr + c), _mm512_maskz_loadu_ps(k, wv + c));
                    __m512 v = _mm512_fnmadd_ps(xh, vmgx, _mm512_sub_ps(gd, vmg));
                    _mm512_mask_storeu_ps(dxr + c, k, _mm512_fmadd_ps(vr, v, _mm512_maskz_loadu_ps(k, dxr + c)));
                }
            }
#else
#pragma omp simd reduction(+ : sg, sgx)
            for (int c = 0; c < C; c++) {
                float xh = (xr[c] - m) * r, gd = dyr[c] * wv[c];
                sg += gd;
                sgx += gd * xh;
                pw[c] += dyr[c] * xh;
                pb[c] += dyr[c];
            }
            const float mg = ln ? sg * inv_c : 0.f, mgx = sgx * inv_c;
            if (dx) {
                float *restrict dxr = dx + (size_t)n * C;
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    float xh = (xr[c] - m) * r, gd = dyr[c] * wv[c];
                    dxr[c] += r * (gd - mg - xh * mgx);
                }
            }
#endif
        }
    }
    for (int t = 0; t < nt; t++)
        for (int c = 0; c < C; c++) {
            if (dw) dw[c] += part[(size_t)t * 2 * C + c];
            if (db) db[c] += part[(size_t)t * 2 * C + C + c];
        }
    free(part);
    free(w);
}
