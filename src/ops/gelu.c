/* gelu.c: GELU activation, tanh approximation (GPT-2 "gelu_new") or exact erf form (timm ViT),
 * forward and backward, element-wise over n values. */
#include <math.h>
#include "derf/ops.h"
#include "norms/fastmath.h"

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define GELU_C 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

/* inp[n] -> out[n] = gelu(inp) */
void derf_gelu_forward(float *out, const float *inp, size_t n, derf_gelu_kind kind) {
    const long nn = (long)n;
    if (kind == DERF_GELU_TANH) {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + derf_fast_tanhf(GELU_K * (x + GELU_C * x * x * x)));
        }
    } else {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + derf_fast_erff(x * INV_SQRT2));
        }
    }
}

/* dout[n], inp[n] -> dinp[n] += gelu'(inp) * dout */
void derf_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, derf_gelu_kind kind) {
    if (!dinp) return;
    const long nn = (long)n;
    if (kind == DERF_GELU_TANH) {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            float x = inp[i];
            float th = derf_fast_tanhf(GELU_K * (x + GELU_C * x * x * x));
            float sech2 = 1.0f - th * th;
            float d = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
            dinp[i] += d * dout[i];
        }
    } else {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            float x = inp[i];
            float h = 0.5f * x * x; /* beyond h = 80 the Gaussian term is below 1e-35: 0, no denormals */
            float d = 0.5f * (1.0f + derf_fast_erff(x * INV_SQRT2)) + (h < 80.f ? x * INV_SQRT_2PI * derf_fast_expf(-h) : 0.f);
            dinp[i] += d * dout[i];
        }
    }
}
