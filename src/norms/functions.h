/* functions.h: float kernels of every base point-wise function, f and f' computed together.
 * Each fn_<name>(u, &df) returns f(u) and stores f'(u). Branch-free where it matters so the
 * loops in pointwise.c vectorize. Singular points: exproot and power23 have an infinite slope at
 * u = 0; their derivative is evaluated at max(|u|, DERF_SINGULAR_EPS), which keeps it finite
 * (at most ~500 for exproot, ~67 for power23). PyTorch's autograd gives NaN there instead.
 * Everything here is DERF_HOSTDEV: the CUDA kernels (src/cuda/norms.cu) instantiate the same list. */
#ifndef DERF_FUNCTIONS_H
#define DERF_FUNCTIONS_H

#include <math.h>
#include "derf/norm.h"
#include "norms/fastmath.h"

#define DERF_SINGULAR_EPS 1e-6f
#define DERF_2_SQRTPI 1.1283791670955126f
#define DERF_2_PI 0.63661977236758134f
#define DERF_HALF_PI 1.5707963267948966f
#define DERF_E 2.718281828459045f

static inline DERF_HOSTDEV float fsgn(float u) { return u > 0.f ? 1.f : (u < 0.f ? -1.f : 0.f); }
static inline DERF_HOSTDEV float fclamp1(float v) { return v > 1.f ? 1.f : (v < -1.f ? -1.f : v); }
/* clip(v, -1, 1) passes the gradient where -1 <= v <= 1 (inclusive, as PyTorch's clamp). */
static inline DERF_HOSTDEV float fin1(float v) { return (v <= 1.f && v >= -1.f) ? 1.f : 0.f; }
/* The clipped functions clip(h(u), -1, 1) decide that on u, in closed form, not on the computed h(u):
 * |h(u)| <= 1 exactly when |u| <= the boundary below (asinh: sinh 1; sign ln(1+|u|): e - 1; sign ln(1+u^2):
 * sqrt(e - 1); sign |u|^(2/3): 1), each constant the largest float not above the real boundary. So the
 * mask is exact for every float u and the same on the CPU and the GPU, whose libm results differ by an
 * ulp or two (a mask on h(u) flips for a u within ulps of the boundary on one side only). */
#define DERF_CLIPU_ASINH 1.17520118f    /* sinh(1) = 1.1752011936... rounded down */
#define DERF_CLIPU_LOGSIGN 1.71828175f  /* e - 1 = 1.7182818284... rounded down */
#define DERF_CLIPU_LOGQUAD 1.31083238f  /* sqrt(e - 1) = 1.3108324944... rounded down */
static inline DERF_HOSTDEV float fin_u(float u, float bound) { return fabsf(u) <= bound ? 1.f : 0.f; }

static inline DERF_HOSTDEV float fn_erf(float u, float *df) {
    *df = derf_fast_derf_du(u); /* 0 where exp(-u^2) < 1e-35 (no denormals, fastmath.h) */
    return derf_fast_erff(u);
}
static inline DERF_HOSTDEV float fn_tanh(float u, float *df) {
    float t = derf_fast_tanhf(u);
    *df = 1.f - t * t;
    return t;
}
static inline DERF_HOSTDEV float fn_satursin(float u, float *df) {
    float c = u > DERF_HALF_PI ? DERF_HALF_PI : (u < -DERF_HALF_PI ? -DERF_HALF_PI : u);
    *df = (u <= DERF_HALF_PI && u >= -DERF_HALF_PI) ? cosf(u) : 0.f;
    return sinf(c);
}
static inline DERF_HOSTDEV float fn_arcsinh(float u, float *df) {
    *df = 1.f / sqrtf(1.f + u * u);
    return asinhf(u);
}
static inline DERF_HOSTDEV float fn_arcsinhclip(float u, float *df) {
    float d, a = fn_arcsinh(u, &d);
    *df = d * fin_u(u, DERF_CLIPU_ASINH);
    return fclamp1(a);
}
static inline DERF_HOSTDEV float fn_isru(float u, float *df) {
    float r = 1.f / sqrtf(1.f + u * u);
    *df = r * r * r;
    return u * r;
}
static inline DERF_HOSTDEV float fn_exproot(float u, float *df) {
    float a = fabsf(u), r = sqrtf(a), e = derf_fast_expf(-r);
    float rs = sqrtf(a > DERF_SINGULAR_EPS ? a : DERF_SINGULAR_EPS);
    *df = derf_fast_expf(-rs) / (2.f * rs);
    return fsgn(u) * (1.f - e);
}
static inline DERF_HOSTDEV float fn_linear(float u, float *df) { *df = 1.f; return u; }
static inline DERF_HOSTDEV float fn_linearclip(float u, float *df) { *df = fin1(u); return fclamp1(u); }
static inline DERF_HOSTDEV float fn_expsign(float u, float *df) {
    float e = derf_fast_expf(-fabsf(u));
    *df = e;
    return fsgn(u) * (1.f - e);
}
static inline DERF_HOSTDEV float fn_logsign(float u, float *df) {
    float a = fabsf(u);
    *df = 1.f / (1.f + a);
    return fsgn(u) * log1pf(a);
}
static inline DERF_HOSTDEV float fn_logsignclip(float u, float *df) {
    float d, l = fn_logsign(u, &d);
    *df = d * fin_u(u, DERF_CLIPU_LOGSIGN);
    return fclamp1(l);
}
static inline DERF_HOSTDEV float fn_relsign(float u, float *df) {
    float r = sqrtf(u * u + 1.f);
    *df = 1.f / (r * (r + 1.f));
    return u / (r + 1.f);
}
static inline DERF_HOSTDEV float fn_arctan(float u, float *df) {
    *df = DERF_2_PI / (1.f + u * u);
    return DERF_2_PI * atanf(u);
}
static inline DERF_HOSTDEV float fn_smoothsign(float u, float *df) {
    float d = 1.f / (1.f + fabsf(u));
    *df = d * d;
    return u * d;
}
static inline DERF_HOSTDEV float fn_logquad(float u, float *df) {
    float q = 1.f + u * u;
    *df = 2.f * fabsf(u) / q;
    return fsgn(u) * log1pf(u * u);
}
static inline DERF_HOSTDEV float fn_logquadclip(float u, float *df) {
    float d, l = fn_logquad(u, &d);
    *df = d * fin_u(u, DERF_CLIPU_LOGQUAD);
    return fclamp1(l);
}
static inline DERF_HOSTDEV float fn_power23(float u, float *df) {
    float a = fabsf(u);
    float as = a > DERF_SINGULAR_EPS ? a : DERF_SINGULAR_EPS;
    *df = (2.f / 3.f) / cbrtf(as);
    return fsgn(u) * cbrtf(a * a);
}
static inline DERF_HOSTDEV float fn_power23clip(float u, float *df) {
    float d, p = fn_power23(u, &d);
    *df = d * fin_u(u, 1.f);
    return fclamp1(p);
}
static inline DERF_HOSTDEV float fn_saturlog(float u, float *df) {
    float a = fabsf(u), l = log1pf(a), l1 = l + 1.f;
    *df = 1.f / ((1.f + a) * l1 * l1);
    return fsgn(u) * l / l1;
}
static inline DERF_HOSTDEV float fn_cubsign(float u, float *df) {
    float a = fabsf(u), a3 = a * a * a, q = 1.f + a3;
    *df = 3.f * u * u / (q * q);
    return u * u * u / q;
}
static inline DERF_HOSTDEV float fn_sin(float u, float *df) { *df = cosf(u); return sinf(u); }
static inline DERF_HOSTDEV float fn_dampx(float u, float *df) {
    float q = 1.f + u * u;
    *df = 2.f * (1.f - u * u) / (q * q);
    return 2.f * u / q;
}
static inline DERF_HOSTDEV float fn_dampexp(float u, float *df) {
    float a = fabsf(u), e = DERF_E * derf_fast_expf(-a);
    *df = e * (1.f - a);
    return u * e;
}

/* X-macro over every base function: X(ENUM, name, kernel). Order = derf_fn_id order. */
#define DERF_FOR_EACH_FN(X) \
    X(DERF_FN_ERF, erf) X(DERF_FN_TANH, tanh) X(DERF_FN_SATURSIN, satursin) \
    X(DERF_FN_ARCSINHCLIP, arcsinhclip) X(DERF_FN_ISRU, isru) X(DERF_FN_EXPROOT, exproot) \
    X(DERF_FN_LINEARCLIP, linearclip) X(DERF_FN_EXPSIGN, expsign) X(DERF_FN_LOGSIGNCLIP, logsignclip) \
    X(DERF_FN_RELSIGN, relsign) X(DERF_FN_ARCTAN, arctan) X(DERF_FN_SMOOTHSIGN, smoothsign) \
    X(DERF_FN_LOGQUADCLIP, logquadclip) X(DERF_FN_POWER23CLIP, power23clip) \
    X(DERF_FN_SATURLOG, saturlog) X(DERF_FN_CUBSIGN, cubsign) \
    X(DERF_FN_ARCSINH, arcsinh) X(DERF_FN_LOGSIGN, logsign) X(DERF_FN_LOGQUAD, logquad) \
    X(DERF_FN_POWER23, power23) X(DERF_FN_LINEAR, linear) X(DERF_FN_SIN, sin) \
    X(DERF_FN_DAMPX, dampx) X(DERF_FN_DAMPEXP, dampexp)

/* Scalar dispatch (used by the transform path and by tools). */
static inline DERF_HOSTDEV float derf_fn_eval(int id, float u, float *df) {
    switch (id) {
#define X(E, n) case E: return fn_##n(u, df);
        DERF_FOR_EACH_FN(X)
#undef X
    default: *df = NAN; return NAN;
    }
}

/* Composition of the spec's transforms over base fn (see norm.h): g(u) and g'(u). tf[0] is the
 * innermost transform. Used by the CPU kernels for specs with transforms and by the GPU kernels. */
static inline DERF_HOSTDEV void derf_compose_eval(const derf_tf *tf, int n, int fn, float u, float *g,
                                                  float *dg) {
    float uin[DERF_MAX_TF + 1]; /* uin[k]: input of level k (level n = outermost) */
    int zero_from = -1;         /* outermost flat level whose dead zone u falls in */
    uin[n] = u;
    for (int k = n - 1; k >= 0; k--) {
        float v = uin[k + 1];
        const derf_tf *t = &tf[k];
        if (t->kind == DERF_TF_HSHIFT) v += t->lambda;
        else if (t->kind == DERF_TF_FLAT) {
            if (fabsf(v) <= t->lambda) { if (zero_from < 0) zero_from = k; v = 0.f; }
            else v -= t->lambda * fsgn(v);
        }
        uin[k] = v;
    }
    float d, f = derf_fn_eval(fn, uin[0], &d);
    for (int k = 0; k < n; k++) {
        const derf_tf *t = &tf[k];
        float l = t->lambda;
        switch (t->kind) {
        case DERF_TF_VSHIFT: f += l; break;
        case DERF_TF_CLIP:
            if (f > l || f < -l) { f = f > l ? l : -l; d = 0.f; }
            break;
        case DERF_TF_MIX: f = (1.f - l) * f + l * uin[k + 1]; d = (1.f - l) * d + l; break;
        case DERF_TF_NEG: f = -f; d = -d; break;
        case DERF_TF_FLAT: if (k == zero_from) { f = 0.f; d = 0.f; } break;
        default: break;
        }
        /* once the outermost dead zone is reached everything inside it is constant 0 */
    }
    *g = f;
    *dg = d;
}

#endif
