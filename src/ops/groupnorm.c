/* groupnorm.c: GroupNorm on channels-last sequences (wav2vec 2.0 keeps it in the first conv block, with
 * groups = channels) and weight normalization (the positional convolution's weight, one gain per tap). */
#include <math.h>
#include <stdlib.h>
#include "derf/ops_audio.h"

/* x is channels-last ([B,T,C], a frame's C channels contiguous), so every pass walks whole frames: per-channel
 * double sums over t (contiguous, vectorized), then per-group totals. The work is split into (b, block of whole
 * groups) tasks of about 64 channels, in parallel; the backward's dgamma/dbeta go through per-batch-row
 * partials added in b order (deterministic for any thread count). */
static int gn_block(int C, int G) {
    const int Cg = C / G, per = Cg >= 64 ? 1 : 64 / Cg;
    return per * Cg; /* channels per task: whole groups */
}

void derf_groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                            const float *beta, float eps, int B, int T, int C, int G) {
    const int Cg = C / G, CB = gn_block(C, G), nblk = (C + CB - 1) / CB;
    const double n = (double)T * Cg;
    #pragma omp parallel for schedule(dynamic, 1) if ((long)B * T * C > 65536)
    for (int task = 0; task < B * nblk; task++) {
        const int b = task / nblk, c0 = (task % nblk) * CB, nc = C - c0 < CB ? C - c0 : CB, g0 = c0 / Cg;
        const float *xb = x + (size_t)b * T * C + c0;
        float *yb = y + (size_t)b * T * C + c0;
        double *s = malloc(sizeof(double) * (size_t)nc);
        float *m = malloc(sizeof(float) * (size_t)nc * 2), *r = m + nc;
        for (int c = 0; c < nc; c++) s[c] = 0;
        for (int t = 0; t < T; t++) {
            const float *xt = xb + (size_t)t * C;
            #pragma omp simd
            for (int c = 0; c < nc; c++) s[c] += xt[c];
        }
        for (int g = 0; g < nc / Cg; g++) {
            double tot = 0;
            for (int c = 0; c < Cg; c++) tot += s[g * Cg + c];
            for (int c = 0; c < Cg; c++) m[g * Cg + c] = (float)(tot / n);
        }
        for (int c = 0; c < nc; c++) s[c] = 0;
        for (int t = 0; t < T; t++) {
            const float *xt = xb + (size_t)t * C;
            #pragma omp simd
            for (int c = 0; c < nc; c++) {
                const double d = (double)xt[c] - m[c];
                s[c] += d * d;
            }
        }
        for (int g = 0; g < nc / Cg; g++) {
            double ss = 0;
            for (int c = 0; c < Cg; c++) ss += s[g * Cg + c];
            const float rs = (float)(1.0 / sqrt(ss / n + eps));
            for (int c = 0; c < Cg; c++) r[g * Cg + c] = rs;
            mean[b * G + g0 + g] = m[g * Cg];
            rstd[b * G + g0 + g] = rs;
        }
        for (int t = 0; t < T; t++) {
            const float *xt = xb + (size_t)t * C;
            float *yt = yb + (size_t)t * C;
            if (gamma) {
                #pragma omp simd
                for (int c = 0; c < nc; c++) yt[c] = (xt[c] - m[c]) * r[c] * gamma[c0 + c] + (beta ? beta[c0 + c] : 0.0f);
            } else {
                #pragma omp simd
                for (int c = 0; c < nc; c++) yt[c] = (xt[c] - m[c]) * r[c];
            }
        }
        free(s);
        free(m);
    }
}

void derf_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                             const float *mean, const float *rstd, const float *gamma, int B, int T, int C, int G) {
    const int Cg = C / G, CB = gn_block(C, G), nblk = (C + CB - 1) / CB;
    const double n = (double)T * Cg;
    /* per-b partials of dgamma and dbeta, summed in b order below */
    double *part = malloc(sizeof(double) * (size_t)B * C * 2);
    #pragma omp parallel for schedule(dynamic, 1) if ((long)B * T * C > 65536)
    for (int task = 0; task < B * nblk; task++) {
        const int b = task / nblk, c0 = (task % nblk) * CB, nc = C - c0 < CB ? C - c0 : CB, g0 = c0 / Cg;
        const size_t o = (size_t)b * T * C + c0;
        double *pg = part + ((size_t)b * C + c0) * 2, *pb = pg + nc; /* this task's slice: nc + nc values */
        double *sd = malloc(sizeof(double) * (size_t)nc * 2), *sdx = sd + nc;
        float *m = malloc(sizeof(float) * (size_t)nc * 4), *r = m + nc, *ga = r + nc, *k = ga + nc;
        for (int c = 0; c < nc; c++) {
            const int g = g0 + c / Cg;
            m[c] = mean[b * G + g];
            r[c] = rstd[b * G + g];
            ga[c] = gamma ? gamma[c0 + c] : 1.0f;
            pg[c] = pb[c] = sd[c] = sdx[c] = 0;
        }
        for (int t = 0; t < T; t++) {
            const float *xt = x + o + (size_t)t * C, *dt = dy + o + (size_t)t * C;
            #pragma omp simd
            for (int c = 0; c < nc; c++) {
                const double xh = (double)((xt[c] - m[c]) * r[c]), d = dt[c];
                pg[c] += d * xh;
                pb[c] += d;
            }
        }
        /* sums of dxhat = dy * gamma and of dxhat * xhat, per group */
        for (int g = 0; g < nc / Cg; g++) {
            double a = 0, bq = 0;
            for (int c = g * Cg; c < (g + 1) * Cg; c++) {
                a += pb[c] * ga[c];
                bq += pg[c] * ga[c];
            }
            for (int c = g * Cg; c < (g + 1) * Cg; c++) {
                sd[c] = a / n;
                sdx[c] = bq / n;
            }
        }
        if (dx) {
            for (int c = 0; c < nc; c++) k[c] = (float)sd[c];
            for (int t = 0; t < T; t++) {
                const float *xt = x + o + (size_t)t * C, *dt = dy + o + (size_t)t * C;
                float *dxt = dx + o + (size_t)t * C;
                #pragma omp simd
                for (int c = 0; c < nc; c++) {
                    const float xh = (xt[c] - m[c]) * r[c];
                    dxt[c] += r[c] * (dt[c] * ga[c] - k[c] - xh * (float)sdx[c]);
                }
            }
        }
        free(sd);
        free(m);
    }
    for (int b = 0; b < B; b++)
        for (int blk = 0; blk < nblk; blk++) {
            const int c0 = blk * CB, nc = C - c0 < CB ? C - c0 : CB;
            const double *pg = part + ((size_t)b * C + c0) * 2, *pb = pg + nc;
            for (int c = 0; c < nc; c++) {
                if (dgamma) dgamma[c0 + c] += (float)pg[c];
                if (dbeta) dbeta[c0 + c] += (float)pb[c];
            }
        }
    free(part);
}

void derf_weight_norm_forward(float *w, float *norm, const float *v, const float *g, int R, int K) {
    double *s = calloc((size_t)K, sizeof(double));
    for (int r = 0; r < R; r++) {   /* rows contiguous: K column sums side by side */
        const float *vr = v + (size_t)r * K;
        #pragma omp simd
        for (int k = 0; k < K; k++) s[k] += (double)vr[k] * vr[k];
    }
    for (int k = 0; k < K; k++) norm[k] = (float)sqrt(s[k]);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < K; k++) w[(size_t)r * K + k] = g[k] * v[(size_t)r * K + k] / norm[k];
    free(s);
}

/* w = g v / n: dg = sum_r dw v / n; dv = g/n dw - g (sum_r dw v) / n^3 v */
void derf_weight_norm_backward(float *dv, float *dg, const float *dw, const float *v, const float *g,
                               const float *norm, int R, int K) {
    double *s = calloc((size_t)K, sizeof(double));
    float *a = malloc(sizeof(float) * (size_t)K * 2), *c = a + K;
    for (int r = 0; r < R; r++) {
        const float *dr = dw + (size_t)r * K, *vr = v + (size_t)r * K;
        #pragma omp simd
        for (int k = 0; k < K; k++) s[k] += (double)dr[k] * vr[k];
    }
    for (int k = 0; k < K; k++) {
        const double n = norm[k];
        if (dg) dg[k] += (float)(s[k] / n);
        a[k] = (float)(g[k] / n);
        c[k] = (float)(g[k] * s[k] / (n * n * n));
    }
    if (dv)
        for (int r = 0; r < R; r++) {
            const float *dr = dw + (size_t)r * K, *vr = v + (size_t)r * K;
            float *o = dv + (size_t)r * K;
            #pragma omp simd
            for (int k = 0; k < K; k++) o[k] += a[k] * dr[k] - c[k] * vr[k];
        }
    free(s);
    free(a);
}
