/* scan.h: Mamba's selective scan (Caduceus-PS, src/models/caduceus.c) and its exact reverse-time adjoint.
 * Internal to the library (tests include it).
 *
 * Shapes: NB sequences of T steps, E channels, N states; x, delta, y, dy, dx, ddelta [NB,T,E]; the rows of
 * dbc [NB*T, Sd] hold B at columns [R, R+N) and C at [R+N, R+2N); A_log [E,N], D [E]. A = -exp(A_log),
 *   s_t[e,n] = exp(delta_t[e] A[e,n]) s_{t-1}[e,n] + delta_t[e] B_t[n] x_t[e],  s_{-1} = 0,
 *   y_t[e]   = sum_n C_t[n] s_t[e,n] + D[e] x_t[e].
 * Backward: from dy, writes dx and ddelta, ADDS into the B and C columns of ddbc and into dA_log, dD; no states
 * are kept between the calls but checkpoints (the backward recomputes the rest).
 *
 * derf_scan_forward/backward: with AVX-512, 16 channels per vector (one sequence and a block of 16
 * channels at a time; the tail block masked), exp by derf_exp16s, the per-step sums over channels for dB and
 * dC by a 16-way transposing reduction, the backward in 64-step segments restarted from checkpoints; parallel
 * over (sequence, channel block) forward, over sequences backward. Without AVX-512 they are the _ref forms: plain loops per (sequence, channel) with
 * derf_fast_expf (what the vector form computes, in another summation order). tests/test_caduceus.c checks
 * both against a double-precision loop. */
#ifndef DERF_SCAN_H
#define DERF_SCAN_H
#include <math.h>
#include "norms/fastmath.h"

#include <stddef.h>

/* ckpt: NULL, or derf_scan_ckpt_floats(NB, T, E, N) floats (64-byte aligned) that the forward fills with the
 * states the backward restarts from (then the backward gets the same pointer and inputs); with NULL the backward
 * recomputes them (one more pass over the sequence). The _ref forms take none. */
size_t derf_scan_ckpt_floats(int NB, int T, int E, int N);
void derf_scan_forward(float *y, const float *x, const float *delta, const float *dbc, int Sd, int R, const float *A_log,
                       const float *D, int NB, int T, int E, int N, float *ckpt);
void derf_scan_backward(float *dx, float *ddelta, float *ddbc, float *dA_log, float *dD, const float *dy, const float *x,
                        const float *delta, const float *dbc, int Sd, int R, const float *A_log, const float *D, int NB, int T,
                        int E, int N, const float *ckpt);
void derf_scan_forward_ref(float *y, const float *x, const float *delta, const float *dbc, int Sd, int R, const float *A_log,
                           const float *D, int NB, int T, int E, int N);
void derf_scan_backward_ref(float *dx, float *ddelta, float *ddbc, float *dA_log, float *dD, const float *dy, const float *x,
                            const float *delta, const float *dbc, int Sd, int R, const float *A_log, const float *D, int NB,
                            int T, int E, int N);

/* Mamba's point-wise functions, branch-free on derf_fast_expf so that loops over arrays vectorize (gcc -O3).
 * softplus(x) = max(x,0) + log1p(z), z = exp(-|x|) in (0,1]: log1p(z) = 2 atanh(w), w = z/(2+z) <= 1/3, by the
 * atanh series to w^13 (truncation < 2e-8 relative). tests/test_caduceus.c measures them against double libm on
 * [-40, 40]: relative error of silu, sigmoid, softplus <= 4e-7 (measured 1.7e-7, 1.4e-7, 2.3e-7); silu' =
 * sg (1 + x (1 - sg)) crosses 0, so its error is taken relative to sg (1 + |x| (1 - sg)): <= 1.5e-6 (9.8e-7). */
static inline float derf_sigmoidf(float x) { return 1.f / (1.f + derf_fast_expf(-x)); }
static inline float derf_siluf(float x) { return x / (1.f + derf_fast_expf(-x)); }
static inline float derf_dsiluf(float x) { float sg = derf_sigmoidf(x); return sg * (1.f + x * (1.f - sg)); }
static inline float derf_softplusf(float x) {
    const float z = derf_fast_expf(-fabsf(x)), w = z / (2.f + z), w2 = w * w;
    float p = 1.f / 13;
    p = DERF_FMA(p, w2, 1.f / 11);
    p = DERF_FMA(p, w2, 1.f / 9);
    p = DERF_FMA(p, w2, 1.f / 7);
    p = DERF_FMA(p, w2, 1.f / 5);
    p = DERF_FMA(p, w2, 1.f / 3);
    p = DERF_FMA(p, w2, 1.f);
    return (x > 0.f ? x : 0.f) + 2.f * w * p;
}

#endif
