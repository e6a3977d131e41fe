/* groupnorm.c: GroupNorm on channels-last sequences (wav2vec 2.0 keeps it in the first conv block, with
 * groups = channels) and weight normalization (the positional convolution's weight, one gain per tap). */
#include <math.h>
#include "derf/ops_audio.h"

void derf_groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                            const float *beta, float eps, int B, int T, int C, int G) {
    const int Cg = C / G;
    const double n = (double)T * Cg;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const float *xb = x + (size_t)b * T * C + (size_t)g * Cg;
            double s = 0, ss = 0;
            for (int t = 0; t < T; t++)
                for (int c = 0; c < Cg; c++) s += xb[(size_t)t * C + c];
            const double m = s / n;
            for (int t = 0; t < T; t++)
                for (int c = 0; c < Cg; c++) {
                    double d = xb[(size_t)t * C + c] - m;
                    ss += d * d;
                }
            const float r = (float)(1.0 / sqrt(ss / n + eps));
            mean[b * G + g] = (float)m;
            rstd[b * G + g] = r;
            float *yb = y + (size_t)b * T * C + (size_t)g * Cg;
            for (int t = 0; t < T; t++)
                for (int c = 0; c < Cg; c++) {
                    const int ch = g * Cg + c;
                    float v = (xb[(size_t)t * C + c] - (float)m) * r;
                    yb[(size_t)t * C + c] = gamma ? v * gamma[ch] + (beta ? beta[ch] : 0.0f) : v;
                }
        }
}

void derf_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                             const float *mean, const float *rstd, const float *gamma, int B, int T, int C, int G) {
    const int Cg = C / G;
    const double n = (double)T * Cg;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const size_t o = (size_t)b * T * C + (size_t)g * Cg;
            const float m = mean[b * G + g], r = rstd[b * G + g];
            double sd = 0, sdx = 0; /* sums of dxhat and dxhat * xhat */
            for (int t = 0; t < T; t++)
                for (int c = 0; c < Cg; c++) {
                    const size_t i = o + (size_t)t * C + c;
                    const int ch = g * Cg + c;
                    const float xh = (x[i] - m) * r, d = dy[i];
                    if (dgamma) dgamma[ch] += d * xh;
                    if (dbeta) dbeta[ch] += d;
                    const float dxh = gamma ? d * gamma[ch] : d;
                    sd += dxh;
                    sdx += (double)dxh * xh;
                }
            if (!dx) continue;
            const float a = (float)(sd / n), bq = (float)(sdx / n);
            for (int t = 0; t < T; t++)
                for (int c = 0; c < Cg; c++) {
                    const size_t i = o + (size_t)t * C + c;
                    const int ch = g * Cg + c;
                    const float xh = (x[i] - m) * r, dxh = gamma ? dy[i] * gamma[ch] : dy[i];
                    dx[i] += r * (dxh - a - xh * bq);
                }
        }
}

void derf_weight_norm_forward(float *w, float *norm, const float *v, const float *g, int R, int K) {
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (int r = 0; r < R; r++) s += (double)v[(size_t)r * K + k] * v[(size_t)r * K + k];
        norm[k] = (float)sqrt(s);
    }
    for (int r = 0; r < R; r++)
        for (int k = 0; k < K; k++) w[(size_t)r * K + k] = g[k] * v[(size_t)r * K + k] / norm[k];
}

/* w = g v / n: dg = sum_r dw v / n; dv = g/n dw - g (sum_r dw v) / n^3 v */
void derf_weight_norm_backward(float *dv, float *dg, const float *dw, const float *v, const float *g,
                               const float *norm, int R, int K) {
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (int r = 0; r < R; r++) s += (double)dw[(size_t)r * K + k] * v[(size_t)r * K + k];
        const double n = norm[k];
        if (dg) dg[k] += (float)(s / n);
        if (!dv) continue;
        const float a = (float)(g[k] / n), c = (float)(g[k] * s / (n * n * n));
        for (int r = 0; r < R; r++) dv[(size_t)r * K + k] += a * dw[(size_t)r * K + k] - c * v[(size_t)r * K + k];
    }
}
