/* norms.cu: entry points of the GPU norm layers (derf/cuda.h); the kernels are in norms.cuh,
 * compiled once per activation dtype by norms_f32.cu and norms_bf16.cu. */
#include "cuda/common.cuh"

#define DECLARE(SUFFIX)                                                                                  \
    void derf_cu_norm_forward_##SUFFIX(const derf_norm_spec *s, void *y, float *stats, const void *x,    \
                                       const float *params, int N, int C);                               \
    void derf_cu_norm_backward_##SUFFIX(const derf_norm_spec *s, void *dx, float *dparams, const void *dy, \
                                        const void *x, const float *params, const float *stats, int N,    \
                                        int C, int accumulate);
DECLARE(f32)
DECLARE(bf16)

extern "C" void derf_cuda_norm_forward(const derf_norm_spec *s, void *y, float *stats, const void *x,
                                       const float *params, int N, int C, derf_dtype dt) {
    derf_cu_require();
    if (N <= 0 || C <= 0) return;
    (dt == DERF_BF16 ? derf_cu_norm_forward_bf16 : derf_cu_norm_forward_f32)(s, y, stats, x, params, N, C);
}

extern "C" void derf_cuda_norm_backward(const derf_norm_spec *s, void *dx, float *dparams, const void *dy,
                                        const void *x, const float *params, const float *stats, int N, int C,
                                        derf_dtype dt, int accumulate) {
    derf_cu_require();
    if (N <= 0 || C <= 0) return;
    (dt == DERF_BF16 ? derf_cu_norm_backward_bf16 : derf_cu_norm_backward_f32)(s, dx, dparams, dy, x, params, stats,
                                                                              N, C, accumulate);
}
