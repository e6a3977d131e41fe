/* fastmath.h: vectorizable float exp, erf and tanh for the point-wise norm kernels.
 *
 * Header-only, static inline, branch-free (only ternary selects, no calls besides fmaf/fabsf/
 * copysignf, which gcc inlines), so a plain loop `y[i] = derf_fast_erff(x[i])` auto-vectorizes
 * (AVX2 / AVX-512) with -O3 -march=native -fno-math-errno, without -ffast-math. The method and
 * the measured errors are in docs/fastmath.md; tests/test_fastmath.c checks the bounds below.
 *
 * Bounds asserted by the test (measured against double-precision libm, exhaustively over every
 * float in [-10,10] for erf/tanh and every float with a finite nonzero exp; docs/fastmath.md):
 *   derf_fast_expf : rel err <= 1.5e-7 for normal results; results below FLT_MIN (x < -87.34)
 *                    are denormal (abs err <= 1 denormal ulp), x <= -104 gives +0,
 *                    x > 88.7228 gives +inf (as expf does, no FLT_MAX clamp), NaN -> NaN.
 *   derf_fast_erff : rel err <= 1.5e-7, abs err <= 1.2e-7 (2.0e-7, 1.6e-7 without FMA);
 *                    exactly +-1 for |x| >= 3.92 and +-inf; NaN -> NaN.
 *   derf_fast_tanhf: rel err <= 1.5e-7, abs err <= 1.0e-7; exactly +-1 for |x| >= 9.02 and
 *                    +-inf; NaN -> NaN.
 * The polynomial coefficients were fitted for this file (relative-error minimax, Lawson
 * iteration in long double, then rounded to float); the erfc form is the Chebyshev-style fit
 * from Numerical Recipes (erfcc, fractional error < 1.2e-7).
 * Denormal x: erf/tanh results are correct to about 1 denormal ulp (rel err reaches 1.1e-7 just
 * above FLT_MIN). Assumes the default rounding mode (round to nearest) and no flush-to-zero
 * (FTZ/DAZ) for the denormal results. */
#ifndef DERF_FASTMATH_H
#define DERF_FASTMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* DERF_HOSTDEV marks the kernels usable from CUDA device code too (src/cuda compiles these very
 * formulas with nvcc, so the GPU and the CPU share one definition of every function). */
#ifdef __CUDACC__
#define DERF_HOSTDEV __host__ __device__
#else
#define DERF_HOSTDEV
#endif

/* a*b+c: one fused instruction where the target has FMA (gcc does not contract a*b+c itself in
 * -std=c11 mode), two roundings otherwise. */
#if defined(__CUDA_ARCH__) || defined(__FMA__) || defined(__FMA4__) || defined(__aarch64__)
#define DERF_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define DERF_FMA(a, b, c) ((a) * (b) + (c))
#endif

#ifdef __CUDA_ARCH__
static inline DERF_HOSTDEV uint32_t derf_f2u_(float f) { return __float_as_uint(f); }
static inline DERF_HOSTDEV float derf_u2f_(uint32_t u) { return __uint_as_float(u); }
#else
static inline DERF_HOSTDEV uint32_t derf_f2u_(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline DERF_HOSTDEV float derf_u2f_(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
#endif

/* exp(x) = 2^n * e^r, n = round(x/ln2), r = x - n*ln2 in [-0.35, 0.35].
 * n comes from the "add 1.5*2^23" trick: the float sum holds n in its low mantissa bits, so no
 * float->int conversion (and no UB for NaN) is needed. r uses a two-constant Cody-Waite split
 * (LN2_HI has 15 significant bits, so n*LN2_HI is exact for |n| <= 512). e^r = 1 + r + r^2*q(r)
 * with q of degree 4 (relative minimax error 4.8e-9 on [-0.35,0.35]). 2^n is applied as two
 * factors 2^(n>>1) * 2^(n-(n>>1)), each a normal float, so results in the denormal range round
 * correctly-ish (one extra rounding) and overflow reaches +inf. The input is clamped to
 * [-104, 89] first (NaN passes through the clamps: comparisons with NaN are false). */
static inline DERF_HOSTDEV float derf_fast_expf(float x) {
    const float LOG2E = 0x1.715476p+0f, LN2_HI = 0x1.62e400p-1f, LN2_LO = 0x1.7f7d1cp-20f;
    const float SHIFT = 0x1.8p23f;
    x = x > 89.0f ? 89.0f : x;
    x = x < -104.0f ? -104.0f : x;
    float k = DERF_FMA(x, LOG2E, SHIFT);             /* SHIFT + round(x*log2e) */
    float n = k - SHIFT;                             /* exact */
    float r = DERF_FMA(-n, LN2_HI, x);
    r = DERF_FMA(-n, LN2_LO, r);
    float q = DERF_FMA(0x1.6a1a8ep-10f, r, 0x1.123fb4p-7f);
    q = DERF_FMA(q, r, 0x1.555916p-5f);
    q = DERF_FMA(q, r, 0x1.55548ap-3f);
    q = DERF_FMA(q, r, 0x1.fffffcp-2f);
    float p = 1.0f + DERF_FMA(r * r, q, r);
    int32_t ni = (int32_t)derf_f2u_(k) - (int32_t)0x4B400000; /* bits(SHIFT) */
    int32_t n1 = ni >> 1, n2 = ni - n1;               /* gcc: arithmetic shift */
    float s1 = derf_u2f_((uint32_t)(n1 + 127) << 23);
    float s2 = derf_u2f_((uint32_t)(n2 + 127) << 23);
    return (p * s1) * s2;
}

/* erf: |x| < 1: x*P(x^2), P(u) = 2/sqrt(pi) + u*P'(u), P' of degree 5 (relative minimax with the
 * constant term fixed, 1.4e-8 with float coefficients); 2/sqrt(pi) is split into a hi+lo float
 * pair and the last step is one fma with the exact product x*HI, so the result is rounded about
 * once and relative accuracy holds down to the denormals.
 * |x| >= 1: 1 - erfc(|x|) with erfc(z) ~ t*exp(-z^2 + R(t)), t = 1/(1+z/2), R the degree-9
 * Numerical Recipes polynomial; |x| is clamped to 10 (erf is exactly 1.0f beyond 3.92). Both
 * halves work on |x|, are always computed and one is selected; copysign restores the sign (so
 * erf(-0) = -0). */
static inline DERF_HOSTDEV float derf_fast_erff(float x) {
    const float C0_HI = 0x1.20dd76p+0f, C0_LO = -0x1.f7ac92p-25f; /* 2/sqrt(pi) = HI + LO */
    float a = fabsf(x);
    float u = a * a;
    float ps = DERF_FMA(0x1.4b4b94p-14f, u, -0x1.a4bb4ap-11f);
    ps = DERF_FMA(ps, u, 0x1.54247ap-8f);
    ps = DERF_FMA(ps, u, -0x1.b7fdaep-6f);
    ps = DERF_FMA(ps, u, 0x1.ce2d4ep-4f);
    ps = DERF_FMA(ps, u, -0x1.81274p-2f);
    ps = DERF_FMA(ps, u, C0_LO);                      /* u*P'(u) + LO, small */
    ps = DERF_FMA(a, C0_HI, a * ps);                  /* a*HI exact inside the fma */

    /* erf is exactly 1.0f from |x| = 3.92 on; clamping at 4.5 keeps exp's argument above -21.5 so no
     * denormal intermediate appears (denormals cost ~100 cycles each on x86). */
    float z = a > 4.5f ? 4.5f : a;
    float t = 1.0f / DERF_FMA(0.5f, z, 1.0f);
    float q = DERF_FMA(0.17087277f, t, -0.82215223f);
    q = DERF_FMA(q, t, 1.48851587f);
    q = DERF_FMA(q, t, -1.13520398f);
    q = DERF_FMA(q, t, 0.27886807f);
    q = DERF_FMA(q, t, -0.18628806f);
    q = DERF_FMA(q, t, 0.09678418f);
    q = DERF_FMA(q, t, 0.37409196f);
    q = DERF_FMA(q, t, 1.00002368f);
    q = DERF_FMA(q, t, -1.26551223f);
    float erfc = t * derf_fast_expf(DERF_FMA(-z, z, q));
    float pl = 1.0f - erfc;
    return copysignf(a < 1.0f ? ps : pl, x);
}

/* tanh: |x| < 0.75: x*Q(x^2), Q of degree 6 (relative minimax, 3.2e-9 with float coefficients).
 * |x| >= 0.75: 1 - 2/(exp(2|x|)+1) with |x| clamped to 9.5 (tanh is exactly 1.0f beyond 9.011).
 * Both use |x|; the sign is restored at the end with copysign (so tanh(-0) = -0). */
static inline DERF_HOSTDEV float derf_fast_tanhf(float x) {
    float a = fabsf(x);
    float u = a * a;
    float ps = DERF_FMA(0x1.c2fb04p-10f, u, -0x1.f3d852p-8f);
    ps = DERF_FMA(ps, u, 0x1.5f1f9ap-6f);
    ps = DERF_FMA(ps, u, -0x1.b96e5cp-5f);
    ps = DERF_FMA(ps, u, 0x1.110d1cp-3f);
    ps = DERF_FMA(ps, u, -0x1.555544p-2f);
    ps = DERF_FMA(ps * u, a, a);                      /* a + a*u*Q'(u): Q(0) = 1 exactly */

    float z = a > 9.5f ? 9.5f : a;
    float e = derf_fast_expf(2.0f * z);
    float pl = 1.0f - 2.0f / (e + 1.0f);
    return copysignf(a < 0.75f ? ps : pl, x);
}
#endif
