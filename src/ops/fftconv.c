/* fftconv.c: HyenaDNA's causal long convolution (one filter as long as the sequence per channel) in
 * O(T log T) with FFTW single precision: zero-pad to N = 2T, multiply spectra, transform back, keep the
 * first T outputs (see derf/ops.h). Correlations for the backward use the conjugate spectra. */
#include <fftw3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/ops.h"

/* FFTW planning is not thread-safe; executing a plan on new (equally aligned) arrays is. Plans are
 * made once per size with FFTW_ESTIMATE (deterministic, no timing runs) and kept for the process. */
typedef struct { int n; fftwf_plan r2c, c2r; } plan_pair;
#define MAX_PLANS 16
static plan_pair plans[MAX_PLANS];
static int nplans;

static const plan_pair *get_plans(int n) {
    const plan_pair *found = NULL;
#pragma omp critical(derf_fftw_plan)
    {
        for (int i = 0; i < nplans && !found; i++)
            if (plans[i].n == n) found = &plans[i];
        if (!found) {
            if (nplans == MAX_PLANS) { /* forget the oldest size */
                fftwf_destroy_plan(plans[0].r2c);
                fftwf_destroy_plan(plans[0].c2r);
                memmove(plans, plans + 1, sizeof plans[0] * (MAX_PLANS - 1));
                nplans--;
            }
            float *r = fftwf_alloc_real((size_t)n);
            fftwf_complex *c = fftwf_alloc_complex((size_t)n / 2 + 1);
            plan_pair *p = &plans[nplans];
            p->n = n;
            p->r2c = fftwf_plan_dft_r2c_1d(n, r, c, FFTW_ESTIMATE);
            p->c2r = fftwf_plan_dft_c2r_1d(n, c, r, FFTW_ESTIMATE);
            fftwf_free(r);
            fftwf_free(c);
            if (!p->r2c || !p->c2r) { fprintf(stderr, "derf: FFTW could not plan a size-%d transform\n", n); abort(); }
            found = p;
            nplans++;
        }
    }
    return found;
}

/* buf[0..T) = x[t*stride] (strided gather), buf[T..N) = 0; then the forward transform into X */
static void load_fft(const plan_pair *p, float *buf, fftwf_complex *X, const float *x, int T, size_t stride) {
    for (int t = 0; t < T; t++) buf[t] = x[(size_t)t * stride];
    memset(buf + T, 0, sizeof(float) * (size_t)(p->n - T));
    fftwf_execute_dft_r2c(p->r2c, buf, X);
}

int derf_fftconv_available(void) { return 1; }

void derf_fftconv_forward(float *y, const float *u, const float *k, const float *D, int B, int T, int C) {
    const int N = 2 * T, F = T + 1;
    const plan_pair *p = get_plans(N);
    const float inv = 1.0f / (float)N;
#pragma omp parallel
    {
        float *buf = fftwf_alloc_real((size_t)N);
        fftwf_complex *K = fftwf_alloc_complex((size_t)F), *U = fftwf_alloc_complex((size_t)F);
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            load_fft(p, buf, K, k + (size_t)c * T, T, 1);
            for (int b = 0; b < B; b++) {
                const float *ub = u + (size_t)b * T * C + c;
                load_fft(p, buf, U, ub, T, (size_t)C);
                for (int f = 0; f < F; f++) {
                    float re = U[f][0] * K[f][0] - U[f][1] * K[f][1], im = U[f][0] * K[f][1] + U[f][1] * K[f][0];
                    U[f][0] = re * inv;
                    U[f][1] = im * inv;
                }
                fftwf_execute_dft_c2r(p->c2r, U, buf);
                float *yb = y + (size_t)b * T * C + c;
                const float d = D ? D[c] : 0.f;
                for (int t = 0; t < T; t++) yb[(size_t)t * C] = buf[t] + d * ub[(size_t)t * C];
            }
        }
        fftwf_free(buf);
        fftwf_free(K);
        fftwf_free(U);
    }
}

void derf_fftconv_backward(float *du, float *dk, float *dD, const float *dy, const float *u, const float *k,
                           const float *D, int B, int T, int C) {
    const int N = 2 * T, F = T + 1;
    const plan_pair *p = get_plans(N);
    const float inv = 1.0f / (float)N;
#pragma omp parallel
    {
        float *buf = fftwf_alloc_real((size_t)N);
        fftwf_complex *K = fftwf_alloc_complex((size_t)F), *G = fftwf_alloc_complex((size_t)F),
                      *U = fftwf_alloc_complex((size_t)F), *A = fftwf_alloc_complex((size_t)F);
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            load_fft(p, buf, K, k + (size_t)c * T, T, 1);
            memset(A, 0, sizeof(fftwf_complex) * (size_t)F);
            double dd = 0;
            for (int b = 0; b < B; b++) {
                const float *gb = dy + (size_t)b * T * C + c, *ub = u + (size_t)b * T * C + c;
                load_fft(p, buf, G, gb, T, (size_t)C);
                if (dk) { /* dk accumulates G conj(U) over the batch; one inverse transform per channel */
                    load_fft(p, buf, U, ub, T, (size_t)C);
                    for (int f = 0; f < F; f++) {
                        A[f][0] += G[f][0] * U[f][0] + G[f][1] * U[f][1];
                        A[f][1] += G[f][1] * U[f][0] - G[f][0] * U[f][1];
                    }
                }
                if (du) { /* du = correlation of dy with k: G conj(K) */
                    for (int f = 0; f < F; f++) {
                        float re = G[f][0] * K[f][0] + G[f][1] * K[f][1], im = G[f][1] * K[f][0] - G[f][0] * K[f][1];
                        G[f][0] = re * inv;
                        G[f][1] = im * inv;
                    }
                    fftwf_execute_dft_c2r(p->c2r, G, buf);
                    float *db = du + (size_t)b * T * C + c;
                    const float d = D ? D[c] : 0.f;
                    for (int t = 0; t < T; t++) db[(size_t)t * C] += buf[t] + d * gb[(size_t)t * C];
                }
                if (dD && D)
                    for (int t = 0; t < T; t++) dd += (double)gb[(size_t)t * C] * ub[(size_t)t * C];
            }
            if (dk) {
                for (int f = 0; f < F; f++) { A[f][0] *= inv; A[f][1] *= inv; }
                fftwf_execute_dft_c2r(p->c2r, A, buf);
                for (int j = 0; j < T; j++) dk[(size_t)c * T + j] += buf[j];
            }
            if (dD && D) dD[c] += (float)dd;
        }
        fftwf_free(buf);
        fftwf_free(K);
        fftwf_free(G);
        fftwf_free(U);
        fftwf_free(A);
    }
}
