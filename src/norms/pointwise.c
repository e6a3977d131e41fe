/* pointwise.c: forward and backward of the point-wise norm layer
 *     u = alpha x + s,   y = gamma[c] g(u) + beta[c]
 * where g is a base function (functions.h) with the spec's transforms composed over it.
 * Specs without transforms get one specialised, vectorised loop per base function; specs with
 * transforms go through the scalar composition in derf_pointwise_eval. alpha and s gradients
 * are whole-tensor reductions: per-row float sums accumulated in double per thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "derf/norm.h"
#include "norms/functions.h"
#include "norms/simd.h"

/* ---- composition of transforms (see norm.h) ------------------------------------------------ */

void derf_pointwise_eval(const derf_norm_spec *s, float u, float *g, float *dg) {
    derf_compose_eval(s->tf, s->n_tf, s->fn, u, g, dg);
}

static double eval_f64_rec(const derf_norm_spec *s, int level, double u) {
    if (level == 0) return derf_fn_get(s->fn)->f64(u);
    const derf_tf *t = &s->tf[level - 1];
    double l = t->lambda, g;
    switch (t->kind) {
    case DERF_TF_HSHIFT: return eval_f64_rec(s, level - 1, u + l);
    case DERF_TF_VSHIFT: return eval_f64_rec(s, level - 1, u) + l;
    case DERF_TF_CLIP: g = eval_f64_rec(s, level - 1, u); return g > l ? l : (g < -l ? -l : g);
    case DERF_TF_MIX: return (1 - l) * eval_f64_rec(s, level - 1, u) + l * u;
    case DERF_TF_FLAT: return fabs(u) <= l ? 0.0 : eval_f64_rec(s, level - 1, u - l * (u > 0 ? 1 : -1));
    case DERF_TF_NEG: return -eval_f64_rec(s, level - 1, u);
    default: return NAN;
    }
}

double derf_pointwise_eval_f64(const derf_norm_spec *s, double u) { return eval_f64_rec(s, s->n_tf, u); }

/* ---- kernels ------------------------------------------------------------------------------- */

typedef struct {
    const float *alpha, *shift, *gamma, *beta;
    int shift_per_channel;
} pw_params;

static pw_params unpack(const derf_norm_spec *s, const float *params, int C) {
    derf_norm_param p[4];
    int k = derf_norm_params(s, C, p);
    pw_params r = {0};
    for (int i = 0; i < k; i++) {
        const float *ptr = params + p[i].offset;
        if (!strcmp(p[i].name, "alpha")) r.alpha = ptr;
        else if (!strcmp(p[i].name, "shift")) r.shift = ptr;
        else if (!strcmp(p[i].name, "weight")) r.gamma = ptr;
        else if (!strcmp(p[i].name, "bias")) r.beta = ptr;
    }
    r.shift_per_channel = s->shift == DERF_SHIFT_CHANNEL;
    return r;
}

typedef struct {
    float *alpha, *shift, *gamma, *beta;
} pw_grads;

static pw_grads unpack_grads(const derf_norm_spec *s, float *dparams, int C) {
    pw_grads r = {0};
    if (!dparams) return r;
    pw_params p = unpack(s, dparams, C);
    r.alpha = (float *)p.alpha; r.shift = (float *)p.shift;
    r.gamma = (float *)p.gamma; r.beta = (float *)p.beta;
    return r;
}

/* Per-call channel vectors so the inner loops have no branches: shift[c] (scalar broadcast or
 * per channel), gamma[c] (ones when absent), beta[c] (zeros when absent). */
typedef struct { float *shift, *gamma, *beta; } pw_vecs;

static pw_vecs make_vecs(const pw_params *p, int C) {
    pw_vecs v;
    float *buf = malloc(sizeof(float) * 3 * (size_t)C);
    v.shift = buf; v.gamma = buf + C; v.beta = buf + 2 * C;
    for (int c = 0; c < C; c++) {
        v.shift[c] = p->shift ? (p->shift_per_channel ? p->shift[c] : p->shift[0]) : 0.f;
        v.gamma[c] = p->gamma ? p->gamma[c] : 1.f;
        v.beta[c] = p->beta ? p->beta[c] : 0.f;
    }
    return v;
}

/* Adds the per-thread partials of backward into the gradients, in thread order (fixed for a given
 * thread count, so the result does not depend on scheduling). Thread t's dgamma, dbeta and per-channel
 * dshift rows start at part + t*stride (C floats each, one after the other); dsum[2t], dsum[2t+1] are
 * its dalpha and scalar-dshift sums. */
static void bwd_reduce(pw_grads *g, const pw_params *p, const float *part, size_t stride,
                       const double *dsum, int nt, int C) {
    double da = 0, ds = 0;
    for (int t = 0; t < nt; t++) {
        const float *pg = part + (size_t)t * stride, *pb = pg + C, *ps = pb + C;
        da += dsum[2 * t];
        ds += dsum[2 * t + 1];
        for (int c = 0; c < C; c++) {
            if (g->gamma) g->gamma[c] += pg[c];
            if (g->beta) g->beta[c] += pb[c];
            if (g->shift && p->shift_per_channel) g->shift[c] += ps[c];
        }
    }
    if (g->alpha) g->alpha[0] += (float)da;
    if (g->shift && !p->shift_per_channel) g->shift[0] += (float)ds;
}

/* Forward and backward loops for one evaluation function EVAL(spec, u, &df) -> f. */
#define DEFINE_PW_KERNELS(NAME, EVAL)                                                              \
static void fwd_##NAME(const derf_norm_spec *sp, float *restrict y, const float *restrict x,       \
                       const pw_params *p, int N, int C) {                                         \
    const float a = p->alpha[0];                                                                   \
    pw_vecs v = make_vecs(p, C);                                                                   \
    const float *restrict sv = v.shift, *restrict gm = v.gamma, *restrict bt = v.beta;             \
    _Pragma("omp parallel for schedule(static) if ((long)N * C > 4096)")                           \
    for (int n = 0; n < N; n++) {                                                                  \
        const float *restrict xr = x + (size_t)n * C;                                              \
        float *restrict yr = y + (size_t)n * C;                                                    \
        _Pragma("omp simd")                                                                        \
        for (int c = 0; c < C; c++) {                                                              \
            float df, f = EVAL(sp, a * xr[c] + sv[c], &df);                                        \
            yr[c] = gm[c] * f + bt[c];                                                             \
        }                                                                                          \
    }                                                                                              \
    free(v.shift);                                                                                 \
}                                                                                                  \
static void bwd_##NAME(const derf_norm_spec *sp, float *restrict dx, pw_grads *g,                  \
                       const float *restrict dy, const float *restrict x, const pw_params *p,      \
                       int N, int C) {                                                             \
    const float a = p->alpha[0];                                                                   \
    pw_vecs v = make_vecs(p, C);                                                                   \
    const float *restrict sv = v.shift, *restrict gm = v.gamma;                                    \
    int nt = omp_get_max_threads();                                                                \
    /* per thread: dgamma, dbeta, dshift partials, and a scratch row when dx is not wanted */      \
    float *part = calloc((size_t)nt * 4 * C, sizeof(float));                                       \
    double *dsum = calloc((size_t)nt * 2, sizeof(double));                                         \
    _Pragma("omp parallel if ((long)N * C > 4096)")                                                \
    {                                                                                              \
        int tid = omp_get_thread_num();                                                            \
        float *restrict pg = part + (size_t)tid * 4 * C, *restrict pb = pg + C;                    \
        float *restrict ps = pb + C, *restrict scratch = ps + C;                                   \
        double da = 0, ds = 0;                                                                     \
        _Pragma("omp for schedule(static)")                                                        \
        for (int n = 0; n < N; n++) {                                                              \
            const float *restrict xr = x + (size_t)n * C, *restrict dyr = dy + (size_t)n * C;      \
            float *restrict dxr = dx ? dx + (size_t)n * C : scratch;                               \
            float ra = 0.f, rs = 0.f;                                                              \
            _Pragma("omp simd reduction(+:ra, rs)")                                                \
            for (int c = 0; c < C; c++) {                                                          \
                float df, f = EVAL(sp, a * xr[c] + sv[c], &df);                                    \
                float t = dyr[c] * gm[c] * df;                                                     \
                dxr[c] += t * a;                                                                   \
                ra += t * xr[c];                                                                   \
                rs += t;                                                                           \
                pg[c] += dyr[c] * f;                                                               \
                pb[c] += dyr[c];                                                                   \
                ps[c] += t;                                                                        \
            }                                                                                      \
            da += ra;                                                                              \
            ds += rs;                                                                              \
        }                                                                                          \
        dsum[2 * tid] = da;                                                                        \
        dsum[2 * tid + 1] = ds;                                                                    \
    }                                                                                              \
    bwd_reduce(g, p, part, (size_t)4 * C, dsum, nt, C);                                            \
    free(part);                                                                                    \
    free(dsum);                                                                                    \
    free(v.shift);                                                                                 \
}

#define EVAL_BASE(NAME) static inline float eval_##NAME(const derf_norm_spec *sp, float u, float *df) \
    { (void)sp; return fn_##NAME(u, df); }
#define X(E, n) EVAL_BASE(n) DEFINE_PW_KERNELS(n, eval_##n)
DERF_FOR_EACH_FN(X)
#undef X

static inline float eval_composed(const derf_norm_spec *sp, float u, float *df) {
    float f;
    derf_pointwise_eval(sp, u, &f, df);
    return f;
}
DEFINE_PW_KERNELS(composed, eval_composed)

#if defined(__AVX512F__)
/* AVX-512 kernels for erf (Derf) and tanh (DyT), the norms the models use: 16 channels per step, the
 * channel tail through masked loads and stores. Forward reads x once and writes y once. Backward makes
 * one pass over x and dy: it adds into dx and accumulates per-thread partials (dgamma, dbeta, per-channel
 * dshift in float rows of C; dalpha and scalar dshift as one 16-lane float sum per row, added into a
 * double per thread), reduced in thread order by bwd_reduce. VF(u) gives f(u); VFD(u, f, d) f and f'. */
#define VF_ERF(u) derf_erf16(u)
#define VFD_ERF(u, f, d) do { f = derf_erf16(u); d = derf_derf_du16(u); } while (0)
#define VF_TANH(u) derf_tanh16(u)
#define VFD_TANH(u, f, d) do { f = derf_tanh16(u); d = _mm512_sub_ps(one, _mm512_mul_ps(f, f)); } while (0)

#define DEFINE_PW_AVX512(NAME, VF, VFD)                                                            \
static void fwd16_##NAME(const derf_norm_spec *sp, float *restrict y, const float *restrict x,     \
                         const pw_params *p, int N, int C) {                                       \
    const __m512 va = _mm512_set1_ps(p->alpha[0]);                                                 \
    pw_vecs v = make_vecs(p, C);                                                                   \
    const float *sv = v.shift, *gm = v.gamma, *bt = v.beta;                                        \
    _Pragma("omp parallel for schedule(static) if ((long)N * C > 16384)")                          \
    for (int n = 0; n < N; n++) {                                                                  \
        const float *xr = x + (size_t)n * C;                                                       \
        float *yr = y + (size_t)n * C;                                                             \
        for (int c = 0; c < C; c += 16) {                                                          \
            __mmask16 m = derf_lane_mask(C - c);                                                        \
            DERF_PF_R(xr + c); DERF_PF_W(yr + c);                                                  \
            __m512 u = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, xr + c),                       \
                                       _mm512_maskz_loadu_ps(m, sv + c));                          \
            __m512 f = VF(u);                                                                      \
            _mm512_mask_storeu_ps(yr + c, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, gm + c), f,   \
                                                             _mm512_maskz_loadu_ps(m, bt + c)));   \
        }                                                                                          \
    }                                                                                              \
    free(v.shift);                                                                                 \
}                                                                                                  \
static void bwd16_##NAME(const derf_norm_spec *sp, float *restrict dx, pw_grads *g,                \
                         const float *restrict dy, const float *restrict x, const pw_params *p,    \
                         int N, int C) {                                                           \
    const __m512 va = _mm512_set1_ps(p->alpha[0]), one = _mm512_set1_ps(1.0f);                     \
    (void)one;                                                                                     \
    pw_vecs v = make_vecs(p, C);                                                                   \
    const float *sv = v.shift, *gm = v.gamma;                                                      \
    int nt = omp_get_max_threads();                                                                \
    size_t stride = (size_t)3 * C + 16; /* dgamma, dbeta, dshift rows + room for a masked tail */ \
    float *part = calloc((size_t)nt * stride, sizeof(float));                                      \
    double *dsum = calloc((size_t)nt * 2, sizeof(double));                                         \
    _Pragma("omp parallel if ((long)N * C > 16384)")                                               \
    {                                                                                              \
        int tid = omp_get_thread_num();                                                            \
        float *pg = part + (size_t)tid * stride, *pb = pg + C, *ps = pb + C;                       \
        const int psc = p->shift_per_channel;                                                      \
        double da = 0, ds = 0;                                                                     \
        _Pragma("omp for schedule(static)")                                                        \
        for (int n = 0; n < N; n++) {                                                              \
            const float *xr = x + (size_t)n * C, *dyr = dy + (size_t)n * C;                        \
            float *dxr = dx ? dx + (size_t)n * C : NULL;                                           \
            __m512 ra = _mm512_setzero_ps(), rs = _mm512_setzero_ps();                             \
            for (int c = 0; c < C; c += 16) {                                                      \
                __mmask16 m = derf_lane_mask(C - c);                                                    \
                DERF_PF_R(xr + c); DERF_PF_R(dyr + c); if (dxr) DERF_PF_W(dxr + c);                \
                __m512 xv = _mm512_maskz_loadu_ps(m, xr + c), dyv = _mm512_maskz_loadu_ps(m, dyr + c); \
                __m512 u = _mm512_fmadd_ps(va, xv, _mm512_maskz_loadu_ps(m, sv + c)), f, d;        \
                VFD(u, f, d);                                                                      \
                __m512 t = _mm512_mul_ps(_mm512_mul_ps(dyv, _mm512_maskz_loadu_ps(m, gm + c)), d); \
                if (dxr)                                                                           \
                    _mm512_mask_storeu_ps(dxr + c, m, _mm512_fmadd_ps(t, va,                       \
                                                      _mm512_maskz_loadu_ps(m, dxr + c)));         \
                ra = _mm512_fmadd_ps(t, xv, ra);                                                   \
                rs = _mm512_add_ps(rs, t);                                                         \
                /* full-width read-add-write: masked-off lanes (dy = 0, f(0) finite) add 0 to the  \
                 * next row (dbeta after dgamma, ...) or the 16 floats of padding after the last */ \
                _mm512_storeu_ps(pg + c, _mm512_fmadd_ps(dyv, f, _mm512_loadu_ps(pg + c)));        \
                _mm512_storeu_ps(pb + c, _mm512_add_ps(dyv, _mm512_loadu_ps(pb + c)));             \
                if (psc) _mm512_storeu_ps(ps + c, _mm512_add_ps(t, _mm512_loadu_ps(ps + c)));      \
            }                                                                                      \
            da += _mm512_reduce_add_ps(ra);                                                        \
            ds += _mm512_reduce_add_ps(rs);                                                        \
        }                                                                                          \
        dsum[2 * tid] = da;                                                                        \
        dsum[2 * tid + 1] = ds;                                                                    \
    }                                                                                              \
    bwd_reduce(g, p, part, stride, dsum, nt, C);                                                   \
    free(part);                                                                                    \
    free(dsum);                                                                                    \
    free(v.shift);                                                                                 \
}
DEFINE_PW_AVX512(erf, VF_ERF, VFD_ERF)
DEFINE_PW_AVX512(tanh, VF_TANH, VFD_TANH)
#endif

typedef void (*fwd_fn)(const derf_norm_spec *, float *, const float *, const pw_params *, int, int);
typedef void (*bwd_fn)(const derf_norm_spec *, float *, pw_grads *, const float *, const float *,
                       const pw_params *, int, int);
static const fwd_fn FWD[DERF_FN_COUNT] = {
#define X(E, n) [E] = fwd_##n,
    DERF_FOR_EACH_FN(X)
#undef X
};
static const bwd_fn BWD[DERF_FN_COUNT] = {
#define X(E, n) [E] = bwd_##n,
    DERF_FOR_EACH_FN(X)
#undef X
};
#if defined(__AVX512F__)
static fwd_fn fwd_of(derf_fn_id fn) {
    return fn == DERF_FN_ERF ? fwd16_erf : fn == DERF_FN_TANH ? fwd16_tanh : FWD[fn];
}
static bwd_fn bwd_of(derf_fn_id fn) {
    return fn == DERF_FN_ERF ? bwd16_erf : fn == DERF_FN_TANH ? bwd16_tanh : BWD[fn];
}
#else
static fwd_fn fwd_of(derf_fn_id fn) { return FWD[fn]; }
static bwd_fn bwd_of(derf_fn_id fn) { return BWD[fn]; }
#endif

void derf_rownorm_forward(const derf_norm_spec *s, float *y, float *stats, const float *x,
                          const float *params, int N, int C);
void derf_rownorm_backward(const derf_norm_spec *s, float *dx, float *dparams, const float *dy,
                           const float *x, const float *params, const float *stats, int N, int C);

void (*derf_norm_forward_hook)(const derf_norm_spec *, const float *, const float *, const float *, int, int);

void derf_norm_forward(const derf_norm_spec *s, float *y, float *stats, const float *x,
                       const float *params, int N, int C) {
    if (s->kind != DERF_NORM_POINTWISE) {
        derf_rownorm_forward(s, y, stats, x, params, N, C);
    } else {
        pw_params p = unpack(s, params, C);
        (s->n_tf ? fwd_composed : fwd_of(s->fn))(s, y, x, &p, N, C);
    }
    if (derf_norm_forward_hook) derf_norm_forward_hook(s, y, x, params, N, C);
}

void derf_norm_backward(const derf_norm_spec *s, float *dx, float *dparams, const float *dy,
                        const float *x, const float *params, const float *stats, int N, int C) {
    if (s->kind != DERF_NORM_POINTWISE) {
        derf_rownorm_backward(s, dx, dparams, dy, x, params, stats, N, C);
        return;
    }
    pw_params p = unpack(s, params, C);
    pw_grads g = unpack_grads(s, dparams, C);
    (s->n_tf ? bwd_composed : bwd_of(s->fn))(s, dx, &g, dy, x, &p, N, C);
}
