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

/* Channels go in blocks of CB = 16 (one cache line of a channels-last row): a block's T x CB tile of u (or dy)
 * is gathered row by row into CB contiguous signals and the outputs scattered back the same way, so every
 * cache line is read once per block instead of once per channel (a per-channel gather walks T rows C floats
 * apart). Blocks run in parallel; within one the (batch row, channel) order of the sums is the old one. */
#define CB 16
/* per-signal strides rounded up to 64 bytes: a plan runs on other arrays only at its planning alignment */
static int pad_real(int n) { return (n + 15) & ~15; }
static int pad_cplx(int n) { return (n + 7) & ~7; }

/* sig[j*pad_real(N) + t] = x[b][t][c0 + j] for t < T, zero to N, for the w channels of the block */
static void gather(float *sig, const float *x, int b, int T, int C, int c0, int w, int N) {
    const float *xb = x + (size_t)b * T * C + c0;
    const size_t NS = (size_t)pad_real(N);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < w; j++) sig[(size_t)j * NS + t] = xb[(size_t)t * C + j];
    for (int j = 0; j < w; j++) memset(sig + (size_t)j * NS + T, 0, sizeof(float) * (size_t)(N - T));
}

typedef struct { float *sig, *out; fftwf_complex *K, *X, *A; } fft_scratch;

static fft_scratch scratch_alloc(int N, int F, int with_a) {
    fft_scratch s;
    const size_t NS = (size_t)pad_real(N), FS = (size_t)pad_cplx(F);
    s.sig = fftwf_alloc_real(CB * NS);
    s.out = fftwf_alloc_real(CB * NS);
    s.K = fftwf_alloc_complex(CB * FS);
    s.X = fftwf_alloc_complex(2 * FS);
    s.A = with_a ? fftwf_alloc_complex(CB * FS) : NULL;
    return s;
}

static void scratch_free(fft_scratch *s) {
    fftwf_free(s->sig); fftwf_free(s->out); fftwf_free(s->K); fftwf_free(s->X);
    if (s->A) fftwf_free(s->A);
}

/* K[j] = rfft of the block's filters k[c0 + j, 0..T) zero-padded to N */
static void filter_spectra(const plan_pair *p, fft_scratch *s, const float *k, int T, int c0, int w, int N, int F) {
    for (int j = 0; j < w; j++) {
        memcpy(s->sig, k + (size_t)(c0 + j) * T, sizeof(float) * (size_t)T);
        memset(s->sig + T, 0, sizeof(float) * (size_t)(N - T));
        fftwf_execute_dft_r2c(p->r2c, s->sig, s->K + (size_t)j * pad_cplx(F));
    }
}

int derf_fftconv_available(void) { return 1; }

void derf_fftconv_forward(float *y, const float *u, const float *k, const float *D, int B, int T, int C) {
    const int N = 2 * T, F = T + 1, nblk = (C + CB - 1) / CB;
    const size_t NS = (size_t)pad_real(N), FS = (size_t)pad_cplx(F);
    const plan_pair *p = get_plans(N);
    const float inv = 1.0f / (float)N;
#pragma omp parallel
    {
        fft_scratch s = scratch_alloc(N, F, 0);
        fftwf_complex *U = s.X;
#pragma omp for schedule(dynamic, 1)
        for (int blk = 0; blk < nblk; blk++) {
            const int c0 = blk * CB, w = C - c0 < CB ? C - c0 : CB;
            filter_spectra(p, &s, k, T, c0, w, N, F);
            for (int b = 0; b < B; b++) {
                gather(s.sig, u, b, T, C, c0, w, N);
                for (int j = 0; j < w; j++) {
                    const fftwf_complex *Kj = s.K + (size_t)j * FS;
                    fftwf_execute_dft_r2c(p->r2c, s.sig + (size_t)j * NS, U);
                    for (int f = 0; f < F; f++) {
                        float re = U[f][0] * Kj[f][0] - U[f][1] * Kj[f][1], im = U[f][0] * Kj[f][1] + U[f][1] * Kj[f][0];
                        U[f][0] = re * inv;
                        U[f][1] = im * inv;
                    }
                    fftwf_execute_dft_c2r(p->c2r, U, s.out + (size_t)j * NS);
                }
                const float *ub = u + (size_t)b * T * C + c0;
                float *yb = y + (size_t)b * T * C + c0;
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < w; j++)
                        yb[(size_t)t * C + j] = s.out[(size_t)j * NS + t] + (D ? D[c0 + j] : 0.f) * ub[(size_t)t * C + j];
            }
        }
        scratch_free(&s);
    }
}

void derf_fftconv_backward(float *du, float *dk, float *dD, const float *dy, const float *u, const float *k,
                           const float *D, int B, int T, int C) {
    const int N = 2 * T, F = T + 1, nblk = (C + CB - 1) / CB;
    const size_t NS = (size_t)pad_real(N), FS = (size_t)pad_cplx(F);
    const plan_pair *p = get_plans(N);
    const float inv = 1.0f / (float)N;
#pragma omp parallel
    {
        fft_scratch s = scratch_alloc(N, F, 1);
        float *usig = fftwf_alloc_real(CB * NS);
        fftwf_complex *G = s.X, *U = s.X + FS;
#pragma omp for schedule(dynamic, 1)
        for (int blk = 0; blk < nblk; blk++) {
            const int c0 = blk * CB, w = C - c0 < CB ? C - c0 : CB;
            double dd[CB] = {0};
            filter_spectra(p, &s, k, T, c0, w, N, F);
            memset(s.A, 0, sizeof(fftwf_complex) * CB * FS);
            for (int b = 0; b < B; b++) {
                gather(s.sig, dy, b, T, C, c0, w, N);
                if (dk || (dD && D)) gather(usig, u, b, T, C, c0, w, N);
                for (int j = 0; j < w; j++) {
                    const float *gs = s.sig + (size_t)j * NS, *us = usig + (size_t)j * NS;
                    if (dD && D) {
                        double acc = 0;
                        for (int t = 0; t < T; t++) acc += (double)gs[t] * us[t];
                        dd[j] += acc;
                    }
                    fftwf_execute_dft_r2c(p->r2c, (float *)gs, G);
                    if (dk) { /* dk accumulates G conj(U) over the batch; one inverse transform per channel */
                        fftwf_complex *Aj = s.A + (size_t)j * FS;
                        fftwf_execute_dft_r2c(p->r2c, (float *)us, U);
                        for (int f = 0; f < F; f++) {
                            Aj[f][0] += G[f][0] * U[f][0] + G[f][1] * U[f][1];
                            Aj[f][1] += G[f][1] * U[f][0] - G[f][0] * U[f][1];
                        }
                    }
                    if (du) { /* du = correlation of dy with k: G conj(K) */
                        const fftwf_complex *Kj = s.K + (size_t)j * FS;
                        for (int f = 0; f < F; f++) {
                            float re = G[f][0] * Kj[f][0] + G[f][1] * Kj[f][1], im = G[f][1] * Kj[f][0] - G[f][0] * Kj[f][1];
                            G[f][0] = re * inv;
                            G[f][1] = im * inv;
                        }
                        fftwf_execute_dft_c2r(p->c2r, G, s.out + (size_t)j * NS);
                    }
                }
                if (du) {
                    float *db = du + (size_t)b * T * C + c0;
                    for (int t = 0; t < T; t++)
                        for (int j = 0; j < w; j++)
                            db[(size_t)t * C + j] += s.out[(size_t)j * NS + t] + (D ? D[c0 + j] : 0.f) * s.sig[(size_t)j * NS + t];
                }
            }
            for (int j = 0; j < w; j++) {
                if (dk) {
                    fftwf_complex *Aj = s.A + (size_t)j * FS;
                    for (int f = 0; f < F; f++) { Aj[f][0] *= inv; Aj[f][1] *= inv; }
                    fftwf_execute_dft_c2r(p->c2r, Aj, s.out);
                    for (int t = 0; t < T; t++) dk[(size_t)(c0 + j) * T + t] += s.out[t];
                }
                if (dD && D) dD[c0 + j] += (float)dd[j];
            }
        }
        fftwf_free(usig);
        scratch_free(&s);
    }
}
