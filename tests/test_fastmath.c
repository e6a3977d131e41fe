/* test_fastmath.c: accuracy of src/norms/fastmath.h against double-precision libm.
 * Sweeps every 64th float bit pattern in [-10,10] (erf, tanh) and in [-104,89] (exp, i.e. every
 * input with a finite nonzero result), every 16th denormal, every bit pattern within 2^16 ulps of
 * an interval boundary of the piecewise polynomials (1 for erf, 0.5 for tanh), 1M uniform random
 * points, and the special values; prints the measured maxima (quoted in docs/fastmath.md) and
 * asserts the documented bounds. Parallel with OpenMP.
 * DERF_FASTMATH_STRIDE=1 makes the main sweeps exhaustive (every float; ~70 s on 2 cores). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "testutil.h"
#include "norms/fastmath.h"

/* Documented bounds (docs/fastmath.md, header comment of fastmath.h). Without FMA (e.g. no
 * -march=native) erf's last step rounds twice and its bounds are looser. */
#define EXP_MAX_REL   1.5e-7   /* normal results */
#if defined(__FMA__) || defined(__FMA4__) || defined(__aarch64__)
#define ERF_MAX_REL   1.5e-7
#define ERF_MAX_ABS   1.2e-7
#else
#define ERF_MAX_REL   2.0e-7
#define ERF_MAX_ABS   1.6e-7
#endif
#define TANH_MAX_REL  1.5e-7
#define TANH_MAX_ABS  1.0e-7
#define DENORM_ULP    0x1p-149 /* exp results below FLT_MIN: abs err <= 1 denormal ulp */

enum fn { F_EXP, F_ERF, F_TANH, F_EXPS };

typedef struct {
    double max_abs, max_rel, max_ulp, max_denorm_abs;
    float worst_abs_x, worst_rel_x;
    long n, nan_bad;
} stats;

static float bits2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f2bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static double ref_of(enum fn f, float x) {
    return f == F_EXP || f == F_EXPS ? exp((double)x) : f == F_ERF ? erf((double)x) : tanh((double)x);
}

/* The kernels as a loop over an array: with AVX-512 the 16-lane forms (what the norm kernels use),
 * else the scalar functions, which gcc auto-vectorizes. */
static void apply(enum fn f, const float *x, float *y, int n) {
#if defined(__AVX512F__)
    /* the 16-lane forms the kernels use; the tail through a masked load/store */
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        v = f == F_EXP ? derf_exp16(v) : f == F_EXPS ? derf_exp16s(v) : f == F_ERF ? derf_erf16(v) : derf_tanh16(v);
        _mm512_mask_storeu_ps(y + i, m, v);
    }
    return;
#endif
    if (f == F_EXP || f == F_EXPS)
        for (int i = 0; i < n; i++) y[i] = derf_fast_expf(x[i]);
    else if (f == F_ERF)
        for (int i = 0; i < n; i++) y[i] = derf_fast_erff(x[i]);
    else
        for (int i = 0; i < n; i++) y[i] = derf_fast_tanhf(x[i]);
}

static void account(stats *s, float x, float y, double r) {
    s->n++;
    if (isnan(r) || isnan(y)) { s->nan_bad += !(isnan(r) && isnan(y)); return; }
    if (isinf(r) || (double)fabs(r) > FLT_MAX) {      /* result overflows float */
        s->nan_bad += !(isinf(y) && (y > 0) == (r > 0));
        return;
    }
    double d = fabs((double)y - r), ar = fabs(r);
    if (d > s->max_abs) { s->max_abs = d; s->worst_abs_x = x; }
    if (ar >= FLT_MIN) {
        double rel = d / ar;
        if (rel > s->max_rel) { s->max_rel = rel; s->worst_rel_x = x; }
        double ulp = ldexp(1.0, ilogb(ar) - 23);
        if (d / ulp > s->max_ulp) s->max_ulp = d / ulp;
    } else if (d > s->max_denorm_abs) {
        s->max_denorm_abs = d;
    }
}

static void merge(stats *a, const stats *b) {
    if (b->max_abs > a->max_abs) { a->max_abs = b->max_abs; a->worst_abs_x = b->worst_abs_x; }
    if (b->max_rel > a->max_rel) { a->max_rel = b->max_rel; a->worst_rel_x = b->worst_rel_x; }
    if (b->max_ulp > a->max_ulp) a->max_ulp = b->max_ulp;
    if (b->max_denorm_abs > a->max_denorm_abs) a->max_denorm_abs = b->max_denorm_abs;
    a->n += b->n; a->nan_bad += b->nan_bad;
}

#define CHUNK 4096
/* Bit patterns lo, lo+stride, ... <= hi (as uint32). */
static void sweep_bits(enum fn f, uint32_t lo, uint32_t hi, uint32_t stride, stats *out) {
    uint64_t count = ((uint64_t)hi - lo) / stride + 1;
    uint64_t nchunks = (count + CHUNK - 1) / CHUNK;
    #pragma omp parallel
    {
        stats s = {0};
        float x[CHUNK], y[CHUNK];
        #pragma omp for schedule(dynamic, 64)
        for (long c = 0; c < (long)nchunks; c++) {
            uint64_t i0 = (uint64_t)c * CHUNK;
            int m = (int)(count - i0 < CHUNK ? count - i0 : CHUNK);
            for (int i = 0; i < m; i++) x[i] = bits2f((uint32_t)(lo + (i0 + i) * stride));
            apply(f, x, y, m);
            for (int i = 0; i < m; i++) account(&s, x[i], y[i], ref_of(f, x[i]));
        }
        #pragma omp critical
        merge(out, &s);
    }
}
/* Both signs of the magnitudes [a, b] (a, b >= 0). */
static void sweep_sym(enum fn f, float a, float b, uint32_t stride, stats *out) {
    sweep_bits(f, f2bits(a), f2bits(b), stride, out);
    sweep_bits(f, f2bits(a) | 0x80000000u, f2bits(b) | 0x80000000u, stride, out);
}
static void sweep_values(enum fn f, const float *x, int n, stats *out) {
    float *y = malloc(sizeof(float) * (size_t)n);
    apply(f, x, y, n);
    for (int i = 0; i < n; i++) account(out, x[i], y[i], ref_of(f, x[i]));
    free(y);
}
static void sweep_random(enum fn f, double lo, double hi, stats *out) {
    int n = 1 << 20;
    float *x = malloc(sizeof(float) * (size_t)n);
    uint64_t seed = tu_seed() + (uint64_t)f;
    tu_fill(x, (size_t)n, &seed, lo, hi);
    sweep_values(f, x, n, out);
    free(x);
}
/* Every bit pattern within 2^16 ulps of +-p. */
static void sweep_around(enum fn f, float p, stats *out) {
    uint32_t b = f2bits(p);
    sweep_sym(f, bits2f(b - 65536), bits2f(b + 65536), 1, out);
}

static uint32_t main_stride(void) {
    const char *e = getenv("DERF_FASTMATH_STRIDE");
    long v = e ? strtol(e, NULL, 10) : 64;
    return v >= 1 ? (uint32_t)v : 64;
}

static void report(const char *name, const stats *s) {
    printf("# %-5s n=%ld  max_abs=%.3e (x=%.9g)  max_rel=%.3e (x=%.9g)  max_ulp=%.2f"
           "  denorm_abs=%.3g  bad_special=%ld\n", name, s->n, s->max_abs, (double)s->worst_abs_x,
           s->max_rel, (double)s->worst_rel_x, s->max_ulp, s->max_denorm_abs, s->nan_bad);
    fflush(stdout);
}

static const float specials[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, 0x1p-149f, -0x1p-149f,
    1e30f, -1e30f, 1e10f, -1e10f, 88.72283f, 88.72284f, 89.0f, 104.0f, -87.33654f, -103.97208f,
    -104.0f, -110.0f, 3.92f, -3.92f, 9.02f, -9.02f, 0.75f, -0.75f, 1.0f, -1.0f, 10.0f, -10.0f,
};

static void check_specials_common(enum fn f, stats *s) {
    int n = (int)(sizeof specials / sizeof specials[0]);
    sweep_values(f, specials, n, s);
    float nans[4] = {NAN, -NAN, bits2f(0x7f800001u), bits2f(0xffc12345u)}, y[4];
    apply(f, nans, y, 4);
    for (int i = 0; i < 4; i++) assert_true(isnan(y[i]));
}

/* The array loop (vectorized) and an out-of-line scalar call must agree bit for bit. */
static float (*volatile scalar_fn[3])(float) = {derf_fast_expf, derf_fast_erff, derf_fast_tanhf};
static void check_scalar_matches_vector(enum fn f) {
    enum { N = 10007 };
    static float x[N], y[N];
    uint64_t seed = tu_seed() + 17;
    tu_fill(x, N, &seed, f == F_EXP ? -110.0 : -12.0, f == F_EXP ? 95.0 : 12.0);
    apply(f, x, y, N);
    for (int i = 0; i < N; i++) {
        float z = scalar_fn[f](x[i]);
        if (f2bits(z) != f2bits(y[i]) && !(isnan(z) && isnan(y[i]))) {
            fprintf(stderr, "scalar/vector mismatch at x=%.9g: %.9g vs %.9g\n", (double)x[i],
                    (double)z, (double)y[i]);
            fail();
        }
    }
}

static void exp_test(enum fn f, const char *name) {
    stats s = {0};
    sweep_bits(f, f2bits(0.0f), f2bits(89.0f), main_stride(), &s);       /* [0, 89] */
    sweep_bits(f, f2bits(-0.0f), f2bits(-104.0f), main_stride(), &s);     /* [-104, -0] */
    sweep_sym(f, 0x1p-149f, 0x1p-126f, 16, &s);                            /* denormals */
    sweep_random(f, -104.0, 89.0, &s);
    check_specials_common(f, &s);
    report(name, &s);
    assert_true(s.max_rel <= EXP_MAX_REL);
    assert_true(s.max_denorm_abs <= DENORM_ULP);
    assert_int_equal(s.nan_bad, 0);
    /* documented edges */
    float big[3] = {88.73f, 1e30f, INFINITY}, small[3] = {-104.0f, -1e30f, -INFINITY}, y[3];
    apply(f, big, y, 3);
    for (int i = 0; i < 3; i++) assert_true(isinf(y[i]) && y[i] > 0);
    apply(f, small, y, 3);
    for (int i = 0; i < 3; i++) assert_true(y[i] == 0.0f && !signbit(y[i]));
    assert_true(derf_fast_expf(0.0f) == 1.0f);
}

static void test_expf(void **state) {
    (void)state;
    exp_test(F_EXP, "expf");
    check_scalar_matches_vector(F_EXP);
}

/* derf_exp16s (vscalefps form, the selective scan's exp): the same bounds, and bit for bit derf_exp16's
 * value wherever that is a normal float */
static void test_exp16s(void **state) {
    (void)state;
    exp_test(F_EXPS, "exp16s");
    enum { N = 20000 };
    static float x[N], a[N], b[N];
    uint64_t seed = tu_seed() + 23;
    tu_fill(x, N, &seed, -100.0, 95.0);
    apply(F_EXP, x, a, N);
    apply(F_EXPS, x, b, N);
    long mism = 0;
    for (int i = 0; i < N; i++) mism += fabsf(a[i]) >= FLT_MIN && f2bits(a[i]) != f2bits(b[i]);
    assert_int_equal(mism, 0);
}

static void odd_fn_test(enum fn f, const char *name, float sw, double max_abs, double max_rel,
                        float one_beyond) {
    stats s = {0};
    sweep_sym(f, 0.0f, 10.0f, main_stride(), &s);
    sweep_sym(f, 0x1p-149f, 0x1p-126f, 16, &s);
    sweep_around(f, sw, &s);
    sweep_random(f, -10.0, 10.0, &s);
    sweep_random(f, -1.5, 1.5, &s);
    check_specials_common(f, &s);
    report(name, &s);
    assert_true(s.max_abs <= max_abs);
    assert_true(s.max_rel <= max_rel);
    assert_int_equal(s.nan_bad, 0);
    /* odd symmetry, signed zero, saturation to exactly +-1 */
    float x[6] = {0.0f, -0.0f, one_beyond, -one_beyond, INFINITY, -INFINITY}, y[6];
    apply(f, x, y, 6);
    assert_true(y[0] == 0.0f && !signbit(y[0]));
    assert_true(y[1] == 0.0f && signbit(y[1]));
    assert_true(y[2] == 1.0f && y[3] == -1.0f && y[4] == 1.0f && y[5] == -1.0f);
    enum { N = 4096 };
    static float a[N], b[N], ya[N], yb[N];
    uint64_t seed = tu_seed() + 99;
    tu_fill(a, N, &seed, -6.0, 6.0);
    for (int i = 0; i < N; i++) b[i] = -a[i];
    apply(f, a, ya, N);
    apply(f, b, yb, N);
    for (int i = 0; i < N; i++) assert_true(ya[i] == -yb[i]);
    check_scalar_matches_vector(f);
}

static void test_erff(void **state) {
    (void)state;
    odd_fn_test(F_ERF, "erff", 1.0f, ERF_MAX_ABS, ERF_MAX_REL, 3.92f);
}
static void test_tanhf(void **state) {
    (void)state;
    odd_fn_test(F_TANH, "tanhf", 0.5f, TANH_MAX_ABS, TANH_MAX_REL, 9.02f);
}

/* erf'(u) = 2/sqrt(pi) exp(-u^2) as the Derf backward computes it: against double libm over every 64th
 * float in [-10, 10] (0 where u^2 >= 80, by design); the AVX-512 form equal bit for bit. The error is
 * that of exp plus the rounding of u^2 (relative 2^-24 of u^2, so up to 5e-6 at u^2 = 80). */
#define DERF_DU_MAX_REL(u2) (2.0e-7 + 6.0e-8 * (u2))
static void test_derf_du(void **state) {
    (void)state;
    long bad = 0, mism = 0;
    double worst = 0;
    uint32_t stride = main_stride();
    for (int sign = 0; sign < 2; sign++)
        for (uint32_t b = 0; b <= f2bits(10.0f); b += stride) {
            float u = bits2f(b | (sign ? 0x80000000u : 0u));
            float d = derf_fast_derf_du(u);
            double u2 = (double)u * u, ref = 1.1283791670955126 * exp(-u2);
            if ((float)u2 >= 80.0f) { bad += d != 0.0f; continue; }
            double rel = fabs(d - ref) / ref;
            if (rel > worst) worst = rel;
            bad += rel > DERF_DU_MAX_REL(u2);
#if defined(__AVX512F__)
            float v[16];
            _mm512_storeu_ps(v, derf_derf_du16(_mm512_set1_ps(u)));
            mism += f2bits(v[3]) != f2bits(d);
#endif
        }
    printf("# derf_du max_rel=%.3e (bound 2e-7 + 6e-8 u^2)\n", worst);
    assert_int_equal(bad, 0);
    assert_int_equal(mism, 0);
    assert_true(derf_fast_derf_du(0.0f) == 0x1.20dd76p+0f);
    assert_true(derf_fast_derf_du(INFINITY) == 0.0f && derf_fast_derf_du(-1e30f) == 0.0f);
    assert_true(derf_fast_derf_du(NAN) == 0.0f); /* u^2 < 80 is false for NaN (the forward gives NaN) */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf),
        cmocka_unit_test(test_exp16s),
        cmocka_unit_test(test_erff),
        cmocka_unit_test(test_tanhf),
        cmocka_unit_test(test_derf_du),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
