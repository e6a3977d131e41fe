/* rownorm.c: LayerNorm and RMSNorm over the last dimension (rows of C), forward saving the row
 * statistics (mean and 1/std, or 1/rms) for backward. Statistics in double per row. */
#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include "derf/norm.h"

void derf_rownorm_forward(const derf_norm_spec *s, float *y, float *stats, const float *x,
                          const float *params, int N, int C);
void derf_rownorm_backward(const derf_norm_spec *s, float *dx, float *dparams, const float *dy,
                           const float *x, const float *params, const float *stats, int N, int C);

void derf_rownorm_forward(const derf_norm_spec *s, float *y, float *stats, const float *x,
                          const float *params, int N, int C) {
    const int ln = s->kind == DERF_NORM_LAYERNORM;
    const float *w = s->affine ? params : NULL;
    const float *b = (s->affine && s->bias) ? params + C : NULL;
    const double eps = s->eps;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = y + (size_t)n * C;
        double mean = 0, var = 0;
        if (ln) {
            for (int c = 0; c < C; c++) mean += xr[c];
            mean /= C;
        }
        for (int c = 0; c < C; c++) { double d = xr[c] - mean; var += d * d; }
        var /= C;
        float m = (float)mean, r = (float)(1.0 / sqrt(var + eps));
        for (int c = 0; c < C; c++) {
            float v = (xr[c] - m) * r;
            yr[c] = (w ? w[c] : 1.f) * v + (b ? b[c] : 0.f);
        }
        if (stats) {
            if (ln) { stats[2 * (size_t)n] = m; stats[2 * (size_t)n + 1] = r; }
            else stats[n] = r;
        }
    }
}

/* dx = r * (gdy - mean(gdy) - xhat * mean(gdy * xhat)) for LN (mean(gdy) term dropped for RMS),
 * with gdy = dy * w, xhat = (x - m) r. */
void derf_rownorm_backward(const derf_norm_spec *s, float *dx, float *dparams, const float *dy,
                           const float *x, const float *params, const float *stats, int N, int C) {
    const int ln = s->kind == DERF_NORM_LAYERNORM;
    const float *w = s->affine ? params : NULL;
    float *dw = (dparams && s->affine) ? dparams : NULL;
    float *db = (dparams && s->affine && s->bias) ? dparams + C : NULL;
    int nt = omp_get_max_threads();
    float *part = calloc((size_t)nt * 2 * C, sizeof(float));
#pragma omp parallel
    {
        float *pw = part + (size_t)omp_get_thread_num() * 2 * C, *pb = pw + C;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *dyr = dy + (size_t)n * C;
            float m = ln ? stats[2 * (size_t)n] : 0.f, r = ln ? stats[2 * (size_t)n + 1] : stats[n];
            double sg = 0, sgx = 0;
            for (int c = 0; c < C; c++) {
                float xh = (xr[c] - m) * r, gd = dyr[c] * (w ? w[c] : 1.f);
                sg += gd;
                sgx += gd * xh;
                pw[c] += dyr[c] * xh;
                pb[c] += dyr[c];
            }
            float mg = ln ? (float)(sg / C) : 0.f, mgx = (float)(sgx / C);
            if (dx) {
                float *dxr = dx + (size_t)n * C;
                for (int c = 0; c < C; c++) {
                    float xh = (xr[c] - m) * r, gd = dyr[c] * (w ? w[c] : 1.f);
                    dxr[c] += r * (gd - mg - xh * mgx);
                }
            }
        }
    }
    for (int t = 0; t < nt; t++)
        for (int c = 0; c < C; c++) {
            if (dw) dw[c] += part[(size_t)t * 2 * C + c];
            if (db) db[c] += part[(size_t)t * 2 * C + C + c];
        }
    free(part);
}
