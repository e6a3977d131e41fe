/* gelu.c: GELU activation, tanh approximation (GPT-2 "gelu_new") or exact erf form (timm ViT),
 * forward and backward, element-wise over n values. */
#include <math.h>
#include "derf/ops.h"
#include "norms/fastmath.h"

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define GELU_C 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

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
static void gelu_backward16(float *dinp, const float *dout, const float *inp, long nn, derf_gelu_kind kind) {
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
        __m512 acc = _mm512_maskz_loadu_ps(m, dinp + 16 * b);
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
#if defined(__AVX512F__)
    gelu_backward16(dinp, dout, inp, nn, kind);
    return;
#endif
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
