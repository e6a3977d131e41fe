/* attention.c: multi-head scaled dot-product softmax attention on packed qkv, causal or
 * bidirectional, forward and backward. Per (batch, head): two sgemm calls forward, four backward,
 * with the softmax (and its backward) in between; (b, h) pairs run in parallel under OpenMP
 * (OpenBLAS then runs each sgemm on one thread). */
#include <cblas.h>
#include <math.h>
#include <string.h>
#include "derf/ops.h"
#include "norms/fastmath.h"

/* qkv[B,T,3C] -> out[B,T,C], att[B,NH,T,T] (softmax probabilities; zero above the diagonal if causal) */
void derf_attention_forward(float *out, float *att, const float *qkv,
                            int B, int T, int C, int NH, int causal) {
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
            const float *k = q + C, *v = q + 2 * C;
            float *P = att + ((size_t)b * NH + h) * T * T;
            /* S[T,T] = scale * Q K^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs,
                        scale, q, C3, k, C3, 0.0f, P, T);
            for (int t = 0; t < T; t++) {
                float *row = P + (size_t)t * T;
                const int n = causal ? t + 1 : T;
                float mx = row[0];
                for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
                float sum = 0.0f;
                #pragma omp simd reduction(+:sum)
                for (int j = 0; j < n; j++) { row[j] = derf_fast_expf(row[j] - mx); sum += row[j]; }
                const float inv = 1.0f / sum;
                for (int j = 0; j < n; j++) row[j] *= inv;
                for (int j = n; j < T; j++) row[j] = 0.0f;
            }
            /* out_h[T,hs] = P V */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T,
                        1.0f, P, T, v, C3, 0.0f, out + (size_t)b * T * C + (size_t)h * hs, C);
        }
    }
}

/* dout[B,T,C], qkv[B,T,3C], att[B,NH,T,T] -> dqkv[B,T,3C] += d(q|k|v); datt_scratch[B,NH,T,T] */
static void attention_backward(float *dqkv, float beta, float *datt_scratch, const float *dout,
                               const float *qkv, const float *att, int B, int T, int C, int NH, int causal) {
    if (!dqkv) return;
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t qo = (size_t)b * T * C3 + (size_t)h * hs;
            const float *q = qkv + qo, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + qo, *dk = dq + C, *dv = dq + 2 * C;
            const float *P = att + ((size_t)b * NH + h) * T * T;
            float *dP = datt_scratch + ((size_t)b * NH + h) * T * T;
            const float *dO = dout + (size_t)b * T * C + (size_t)h * hs;
            /* dP[T,T] = dO V^T ; dV += P^T dO */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs,
                        1.0f, dO, C, v, C3, 0.0f, dP, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T,
                        1.0f, P, T, dO, C, beta, dv, C3);
            /* softmax backward: dS = P * (dP - sum_j P dP); masked entries have P = 0 -> dS = 0 */
            for (int t = 0; t < T; t++) {
                const float *prow = P + (size_t)t * T;
                float *drow = dP + (size_t)t * T;
                const int n = causal ? t + 1 : T;
                float dot = 0.0f;
                for (int j = 0; j < n; j++) dot += prow[j] * drow[j];
                for (int j = 0; j < n; j++) drow[j] = prow[j] * (drow[j] - dot);
                for (int j = n; j < T; j++) drow[j] = 0.0f;
            }
            /* dQ += scale dS K ; dK += scale dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T,
                        scale, dP, T, k, C3, beta, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T,
                        scale, dP, T, q, C3, beta, dk, C3);
        }
    }
}

void derf_attention_backward(float *dqkv, float *datt_scratch, const float *dout,
                             const float *qkv, const float *att, int B, int T, int C, int NH, int causal) {
    attention_backward(dqkv, 1.0f, datt_scratch, dout, qkv, att, B, T, C, NH, causal);
}

void derf_attention_backward_set(float *dqkv, float *datt_scratch, const float *dout,
                                 const float *qkv, const float *att, int B, int T, int C, int NH, int causal) {
    attention_backward(dqkv, 0.0f, datt_scratch, dout, qkv, att, B, T, C, NH, causal);
}
