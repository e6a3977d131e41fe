/* fastmath.h: vectorizable float exp, erf and tanh (and erf') for the point-wise norm kernels and GELU.
 *
 * Header-only, static inline, branch-free. Two forms of each function, equal bit for bit:
 *   - scalar (derf_fast_expf / erff / tanhf / derf_du): only ternary selects and fmaf/fabsf/copysignf,
 *     so plain loops auto-vectorize (erf/tanh index 16-entry coefficient tables, which gcc turns into
 *     gathers: correct but slow; the fallback where AVX-512 is absent);
 *   - AVX-512 (derf_exp16 / erf16 / tanh16 / derf_du16, with __AVX512F__): 16 lanes, the tables
 *     fetched with one vpermps per coefficient; the norm kernels and GELU call these.
 * The method and the measured errors are in docs/fastmath.md; tests/test_fastmath.c checks the bounds
 * below and the bit-for-bit agreement of the two forms.
 *
 * Bounds asserted by the test (measured against double-precision libm, exhaustively over every
 * float in [-10,10] for erf/tanh and every float with a finite nonzero exp; docs/fastmath.md):
 *   derf_fast_expf : rel err <= 1.5e-7 for normal results; results below FLT_MIN (x < -87.34)
 *                    are denormal (abs err <= 1 denormal ulp), x <= -104 gives +0,
 *                    x > 88.7228 gives +inf (as expf does, no FLT_MAX clamp), NaN -> NaN.
 *   derf_fast_erff : rel err <= 1.5e-7, abs err <= 1.2e-7 (2.0e-7, 1.6e-7 without FMA);
 *                    exactly +-1 for |x| >= 3.9192059 and +-inf; NaN -> NaN.
 *   derf_fast_tanhf: rel err <= 1.5e-7, abs err <= 1.0e-7; exactly +-1 for |x| >= 9.0109138 and
 *                    +-inf; NaN -> NaN.
 *   derf_fast_derf_du: 2/sqrt(pi) exp(-u^2), rel err <= 2e-7 + 6e-8 u^2; 0 where u^2 >= 80 (and NaN).
 * exp's polynomial was fitted for this file (relative-error minimax, Lawson iteration in long
 * double, rounded to float); erf's and tanh's piecewise polynomials come from
 * tools/fit_fastmath_tables.py (fastmath_tables.h). Denormal x: erf/tanh results are correct to about
 * 1 denormal ulp. Assumes the default rounding mode (round to nearest) and no flush-to-zero (FTZ/DAZ)
 * for the denormal results; no function produces a denormal from a normal input except exp below
 * -87.3 (erf, tanh and erf' never call exp there). */
#ifndef DERF_FASTMATH_H
#define DERF_FASTMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "norms/fastmath_tables.h"

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

/* erf and tanh: piecewise polynomials. a = |x| falls in one of 16 intervals [k W, (k+1) W) (erf W = 1/4,
 * tanh W = 1/2; the last interval runs on to the saturation point); on interval k, f(a) ~ p_k(a - c_k),
 * p_k of degree 5 (erf) or 9 (tanh) from fastmath_tables.h (tools/fit_fastmath_tables.py), c_0 = 0 and
 * p_0(0) = 0 so relative accuracy holds down to the denormals. Horner down to the t^2 term, then
 * fma(t, c1, c0 + t^2 q): the last rounding is the only one at full size (on interval 0, where c0 = 0,
 * that keeps the relative error at about 1 ulp). No division, no exp:
 * the scalar form indexes the tables, the AVX-512 form below (same operations, same results bit for bit)
 * fetches the 16-entry coefficient rows with one permute each. Beyond the saturation point the result is
 * exactly 1; the sign is restored with copysign (so f(-0) = -0). NaN -> index 15 -> NaN. */
static inline float derf_pw_poly_(const float (*tab)[16], int deg, float inv_w, float sat, float x) {
    float a = fabsf(x);
    float aw = a * inv_w;
    int k = aw < 15.0f ? (int)aw : 15;
    float t = a - tab[0][k];
    float p = tab[deg + 1][k];
    for (int j = deg; j >= 3; j--) p = DERF_FMA(p, t, tab[j][k]);
    p = DERF_FMA(p, t * t, tab[1][k]);
    p = DERF_FMA(t, tab[2][k], p);
    p = a >= sat ? 1.0f : p;
    return copysignf(p, x);
}
/* In nvcc's device pass the tables (host memory) are out of reach: the GPU uses CUDA's erff/tanhf
 * (within 2 ulp), and cuda_check compares it with this CPU form at a tolerance. */
static inline DERF_HOSTDEV float derf_fast_erff(float x) {
#ifdef __CUDA_ARCH__
    return erff(x);
#else
    return derf_pw_poly_(derf_erf_tab, DERF_ERF_DEG, DERF_ERF_INV_W, DERF_ERF_SAT, x);
#endif
}
static inline DERF_HOSTDEV float derf_fast_tanhf(float x) {
#ifdef __CUDA_ARCH__
    return tanhf(x);
#else
    return derf_pw_poly_(derf_tanh_tab, DERF_TANH_DEG, DERF_TANH_INV_W, DERF_TANH_SAT, x);
#endif
}

/* erf'(u) = 2/sqrt(pi) exp(-u^2), 0 where u^2 >= 80 (exp(-80) = 1.8e-35: below, the value would be
 * denormal, which costs ~100 cycles per operation on x86; the argument is clamped so none appears). */
static inline DERF_HOSTDEV float derf_fast_derf_du(float u) {
    float u2 = u * u;
    float e = derf_fast_expf(-(u2 < 80.0f ? u2 : 80.0f));
    return u2 < 80.0f ? 0x1.20dd76p+0f * e : 0.0f;
}

#if defined(__AVX512F__)
/* 16-lane AVX-512 versions: the same operations in the same order as the scalar functions above, so
 * the results agree bit for bit (tests/test_fastmath.c checks it). */
#include <immintrin.h>

/* exp's reduction and polynomial (see derf_fast_expf): returns p = e^r and sets *n, x = n ln2 + r. */
static inline __m512 derf_exp16_poly_(__m512 x, __m512 *n_out) {
    const __m512 SHIFT = _mm512_set1_ps(0x1.8p23f);
    __m512 k = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), SHIFT);
    __m512 n = _mm512_sub_ps(k, SHIFT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e400p-1f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), r);
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(0x1.6a1a8ep-10f), r, _mm512_set1_ps(0x1.123fb4p-7f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0x1.555916p-5f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0x1.55548ap-3f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0x1.fffffcp-2f));
    *n_out = n;
    return _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_mul_ps(r, r), q, r));
}

static inline __m512 derf_exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);     /* min/max return the 2nd operand on NaN: */
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);   /* NaN passes as in the scalar ternaries */
    __m512 n, p = derf_exp16_poly_(x, &n);
    __m512i ni = _mm512_cvtps_epi32(n);              /* n is an integer in [-150, 128] (or NaN) */
    __m512i n1 = _mm512_srai_epi32(ni, 1), n2 = _mm512_sub_epi32(ni, n1);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, _mm512_set1_epi32(127)), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, _mm512_set1_epi32(127)), 23));
    return _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
}

/* derf_exp16 with the 2^n scaling done by one vscalefps (one rounding, so a denormal result is rounded
 * once from p; Mamba's selective scan uses it, src/models/scan.c): the same value bit for bit wherever
 * the result is a normal float, abs err <= 1 denormal ulp below FLT_MIN, +0 for x <= -104, +inf above
 * 88.7228, NaN -> NaN (tests/test_fastmath.c). About 8 instructions fewer than derf_exp16. */
static inline __m512 derf_exp16s(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    __m512 n, p = derf_exp16_poly_(x, &n);
    return _mm512_scalef_ps(p, n);
}

/* One piecewise polynomial on |x| (see derf_fast_erff): min(a*INV_W, 15) truncated is the interval
 * (min_ps returns 15 for NaN, as the scalar form does). */
#define DERF_PW_POLY16_(TAB, DEG, INV_W, SAT, x, out)                                          \
    do {                                                                                       \
        const __m512i SIGN_ = _mm512_set1_epi32((int)0x80000000u);                             \
        __m512 a_ = _mm512_castsi512_ps(_mm512_andnot_si512(SIGN_, _mm512_castps_si512(x)));   \
        __m512i k_ = _mm512_cvttps_epi32(                                                      \
            _mm512_min_ps(_mm512_mul_ps(a_, _mm512_set1_ps(INV_W)), _mm512_set1_ps(15.0f)));    \
        __m512 t_ = _mm512_sub_ps(a_, _mm512_permutexvar_ps(k_, _mm512_loadu_ps(TAB[0])));     \
        __m512 p_ = _mm512_permutexvar_ps(k_, _mm512_loadu_ps(TAB[(DEG) + 1]));               \
        for (int j_ = (DEG); j_ >= 3; j_--)                                                    \
            p_ = _mm512_fmadd_ps(p_, t_, _mm512_permutexvar_ps(k_, _mm512_loadu_ps(TAB[j_]))); \
        p_ = _mm512_fmadd_ps(p_, _mm512_mul_ps(t_, t_),                                        \
                             _mm512_permutexvar_ps(k_, _mm512_loadu_ps(TAB[1])));              \
        p_ = _mm512_fmadd_ps(t_, _mm512_permutexvar_ps(k_, _mm512_loadu_ps(TAB[2])), p_);      \
        p_ = _mm512_mask_mov_ps(p_, _mm512_cmp_ps_mask(a_, _mm512_set1_ps(SAT), _CMP_GE_OQ),   \
                                _mm512_set1_ps(1.0f));                                         \
        /* p_ >= 0 (or NaN): p_ | (x & SIGN), one ternary-logic op */                           \
        out = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(                                   \
            _mm512_castps_si512(p_), _mm512_castps_si512(x), SIGN_, 0xF8));                    \
    } while (0)

static inline __m512 derf_erf16(__m512 x) {
    __m512 y;
    DERF_PW_POLY16_(derf_erf_tab, DERF_ERF_DEG, DERF_ERF_INV_W, DERF_ERF_SAT, x, y);
    return y;
}
static inline __m512 derf_tanh16(__m512 x) {
    __m512 y;
    DERF_PW_POLY16_(derf_tanh_tab, DERF_TANH_DEG, DERF_TANH_INV_W, DERF_TANH_SAT, x, y);
    return y;
}
/* derf_fast_derf_du: the exponent -min(u^2, 80) is in [-80, 0], so exp's result is a normal float and
 * its scaling by 2^n is exact: one vscalefps replaces the two-factor scaling and the clamps of
 * derf_exp16 (same value bit for bit). */
static inline __m512 derf_derf_du16(__m512 u) {
    __m512 u2 = _mm512_mul_ps(u, u);
    __mmask16 live = _mm512_cmp_ps_mask(u2, _mm512_set1_ps(80.0f), _CMP_LT_OQ);
    __m512 n, p = derf_exp16_poly_(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_min_ps(u2, _mm512_set1_ps(80.0f))), &n);
    return _mm512_maskz_mul_ps(live, _mm512_set1_ps(0x1.20dd76p+0f), _mm512_scalef_ps(p, n));
}
#endif
#endif
