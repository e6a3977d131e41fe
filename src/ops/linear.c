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

/* dout[N,OC], inp[N,C], w[OC,C] -> dinp[N,C] = dinp_beta * dinp + dout @ w; dw[OC,C] += dout^T @ inp;
 * db[OC] += sum_n dout */
static void linear_backward(float *dinp, float dinp_beta, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int N, int C, int OC) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC,
                    1.0f, dout, OC, w, C, dinp_beta, dinp, C);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N,
                    1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
        /* column sums in blocks of 64 outputs: rows are read contiguously, the block's sums stay in
         * registers (float per block of rows is fine: N is a batch of tokens) */
        #pragma omp parallel for schedule(static) if ((long)N * OC > 65536)
        for (int o0 = 0; o0 < OC; o0 += 64) {
            int ob = OC - o0 < 64 ? OC - o0 : 64;
            float acc[64] = {0};
            for (int n = 0; n < N; n++) {
                const float *r = dout + (size_t)n * OC + o0;
                #pragma omp simd
                for (int o = 0; o < ob; o++) acc[o] += r[o];
            }
            for (int o = 0; o < ob; o++) db[o0 + o] += acc[o];
        }
    }
}

void derf_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, int N, int C, int OC) {
    linear_backward(dinp, 1.0f, dw, db, dout, inp, w, N, C, OC);
}

void derf_linear_backward_set(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, int N, int C, int OC) {
    linear_backward(dinp, 0.0f, dw, db, dout, inp, w, N, C, OC);
}
