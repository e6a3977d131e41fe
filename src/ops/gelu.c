/* gelu.c: GELU activation, tanh approximation (GPT-2 "gelu_new") or exact erf form (timm ViT),
 * forward and backward, element-wise over n values. */
#include <math.h>
#include "derf/ops.h"
#include "ops/gelu_fn.h"

#if defined(__AVX512F__)
/* 16 values a step with the AVX-512 erf/tanh/exp of fastmath.h (the scalar forms would vectorize
 * only through gathers of their coefficient tables); the last block through a mask. */
static inline __mmask16 gelu_mask(long left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}
/* tanh form: th = tanh(K (x + C x^3)) */
static inline __m512 gelu_th16(__m512 x) {
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    return derf_tanh16(_mm512_mul_ps(_mm512_set1_ps(GELU_K), _mm512_fmadd_ps(_mm512_set1_ps(GELU_C), x3, x)));
}
static void gelu_forward16(float *out, const float *inp, long nn, derf_gelu_kind kind) {
    const long nb = (nn + 15) / 16;
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    #pragma omp parallel for schedule(static) if (nn > 16384)
    for (long b = 0; b < nb; b++) {
        __mmask16 m = gelu_mask(nn - 16 * b);
        __m512 x = _mm512_maskz_loadu_ps(m, inp + 16 * b);
        __m512 g = kind == DERF_GELU_TANH ? gelu_th16(x) : derf_erf16(_mm512_mul_ps(x, _mm512_set1_ps(INV_SQRT2)));
        _mm512_mask_storeu_ps(out + 16 * b, m, _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, g)));
    }
}
/* erf form: gelu' = 0.5 (1 + erf(z)) + x/sqrt(2pi) exp(-x^2/2), z = x/sqrt(2); the Gaussian term is
 * 0.5 x/sqrt(2) erf'(z) (derf_derf_du16: 0 where z^2 >= 80, no denormals). */
static void gelu_backward16(float *dinp, const float *dout, const float *inp, long nn, derf_gelu_kind kind, int add) {
    const long nb = (nn + 15) / 16;
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    #pragma omp parallel for schedule(static) if (nn > 16384)
    for (long b = 0; b < nb; b++) {
        __mmask16 m = gelu_mask(nn - 16 * b);
        __m512 x = _mm512_maskz_loadu_ps(m, inp + 16 * b), d;
        if (kind == DERF_GELU_TANH) {
            __m512 th = gelu_th16(x);
            __m512 sech2 = _mm512_fnmadd_ps(th, th, one);
            __m512 inner = _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_C), _mm512_mul_ps(x, x), one);
            __m512 slope = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(half, x), sech2),
                                         _mm512_mul_ps(_mm512_set1_ps(GELU_K), inner));
            d = _mm512_fmadd_ps(half, _mm512_add_ps(one, th), slope);
        } else {
            __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(INV_SQRT2));
            __m512 gauss = _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f * INV_SQRT2)), derf_derf_du16(z));
            d = _mm512_fmadd_ps(half, _mm512_add_ps(one, derf_erf16(z)), gauss);
        }
        __m512 acc = add ? _mm512_maskz_loadu_ps(m, dinp + 16 * b) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(dinp + 16 * b, m, _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, dout + 16 * b), acc));
    }
}
#endif

/* inp[n] -> out[n] = gelu(inp) */
void derf_gelu_forward(float *out, const float *inp, size_t n, derf_gelu_kind kind) {
    const long nn = (long)n;
#if defined(__AVX512F__)
    gelu_forward16(out, inp, nn, kind);
    return;
#endif
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

/* dout[n], inp[n] -> dinp[n] = (add ? dinp : 0) + gelu'(inp) * dout (each element read before it is written) */
static void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, derf_gelu_kind kind, int add) {
    if (!dinp) return;
    const long nn = (long)n;
#if defined(__AVX512F__)
    gelu_backward16(dinp, dout, inp, nn, kind, add);
    return;
#endif
    if (kind == DERF_GELU_TANH) {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            dinp[i] = (add ? dinp[i] : 0.0f) + derf_gelu_tanh_df(inp[i]) * dout[i];
        }
    } else {
        #pragma omp parallel for schedule(static) if (nn > 16384)
        for (long i = 0; i < nn; i++) {
            dinp[i] = (add ? dinp[i] : 0.0f) + derf_gelu_erf_df(inp[i]) * dout[i];
        }
    }
}

void derf_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, derf_gelu_kind kind) {
    gelu_backward(dinp, dout, inp, n, kind, 1);
}

void derf_gelu_backward_set(float *dinp, const float *dout, const float *inp, size_t n, derf_gelu_kind kind) {
    gelu_backward(dinp, dout, inp, n, kind, 0);
}
