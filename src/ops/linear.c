/* linear.c: fully connected layer in nn.Linear layout (weight [OC, C]), forward and backward through
 * OpenBLAS cblas_sgemm. */
#include <cblas.h>
#include <string.h>
#include "derf/ops.h"

/* inp[N,C], w[OC,C], b[OC] or NULL -> out[N,OC] = inp @ w^T + b */
void derf_linear_forward(float *out, const float *inp, const float *w, const float *b,
                         int N, int C, int OC) {
    float beta = 0.0f;
    if (b) {
        #pragma omp parallel for schedule(static) if ((long)N * OC > 65536)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, b, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C,
                1.0f, inp, C, w, C, beta, out, OC);
}

/* dout[N,OC], inp[N,C], w[OC,C] -> dinp[N,C] += dout @ w; dw[OC,C] += dout^T @ inp; db[OC] += sum_n dout */
void derf_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, int N, int C, int OC) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC,
                    1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N,
                    1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
        #pragma omp parallel for schedule(static) if ((long)N * OC > 65536)
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + o];
            db[o] += (float)s;
        }
    }
}
