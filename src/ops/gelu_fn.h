/* gelu_fn.h: the scalar GELU formulas (tanh approximation and exact erf form) with their
 * derivatives, shared by the CPU loops (src/ops/gelu.c) and the CUDA kernels (src/cuda/ops.cu). */
#ifndef DERF_GELU_FN_H
#define DERF_GELU_FN_H
#include "norms/fastmath.h"

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define GELU_C 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

static inline DERF_HOSTDEV float derf_gelu_tanh_f(float x) {
    return 0.5f * x * (1.0f + derf_fast_tanhf(GELU_K * (x + GELU_C * x * x * x)));
}
static inline DERF_HOSTDEV float derf_gelu_erf_f(float x) {
    return 0.5f * x * (1.0f + derf_fast_erff(x * INV_SQRT2));
}
static inline DERF_HOSTDEV float derf_gelu_tanh_df(float x) {
    float th = derf_fast_tanhf(GELU_K * (x + GELU_C * x * x * x));
    float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
}
static inline DERF_HOSTDEV float derf_gelu_erf_df(float x) {
    float h = 0.5f * x * x; /* beyond h = 80 the Gaussian term is below 1e-35: 0, no denormals */
    return 0.5f * (1.0f + derf_fast_erff(x * INV_SQRT2)) + (h < 80.f ? x * INV_SQRT_2PI * derf_fast_expf(-h) : 0.f);
}
#endif
