/* gelu.c: GELU activation, tanh approximation (GPT-2 "gelu_new") or exact erf form (timm ViT),
 * forward and backward, element-wise over n values. */
#include <math.h>
#include "derf/ops.h"
#include "ops/gelu_fn.h"

/* inp[n] -> out[n] = gelu(inp) */
void derf_gelu_forward(float *out, const float *inp, size_t n, derf_gelu_kind kind) {
    const long nn = (long)n;
    if (kind == DERF_GELU_TANH) {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            out[i] = derf_gelu_tanh_f(inp[i]);
        }
    } else {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            out[i] = derf_gelu_erf_f(inp[i]);
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
            dinp[i] += derf_gelu_tanh_df(inp[i]) * dout[i];
        }
    } else {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            dinp[i] += derf_gelu_erf_df(inp[i]) * dout[i];
        }
    }
}
