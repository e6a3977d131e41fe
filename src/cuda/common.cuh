/* common.cuh: shared pieces of the CUDA backend: error checks, the library's handles and grow-only
 * scratch buffers, float/bf16 loads and stores (scalar and 16-byte vectors), deterministic
 * warp/block sums, and the dtype dispatch. Included by every .cu file of src/cuda. */
#ifndef DERF_CUDA_COMMON_CUH
#define DERF_CUDA_COMMON_CUH

#include <stdio.h>
#include <stdlib.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include "derf/cuda.h"

typedef __nv_bfloat16 bf16;

void derf_cu_fail(const char *what, const char *detail, const char *file, int line);
#define CK(call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) derf_cu_fail(#call, cudaGetErrorString(e_), __FILE__, __LINE__); } while (0)
#define CKB(call) do { cublasStatus_t s_ = (call); \
    if (s_ != CUBLAS_STATUS_SUCCESS) derf_cu_fail(#call, cublasGetStatusString(s_), __FILE__, __LINE__); } while (0)
#define CK_LAUNCH() CK(cudaGetLastError())

/* State set up by derf_cuda_init (runtime.cu). */
extern cublasHandle_t derf_cu_blas;
extern cublasLtHandle_t derf_cu_lt;
extern void *derf_cu_lt_ws;
extern size_t derf_cu_lt_ws_bytes;
extern int derf_cu_sms;
void derf_cu_require(void); /* exits with a message unless derf_cuda_init succeeded */

/* Scratch buffer `slot` of at least `bytes` (grow-only, kept between calls; contents undefined).
 * Ops use distinct slots for buffers that live at the same time. */
enum { WS_NORM_PART, WS_REDUCE, WS_ATT_D, WS_ATT_P, WS_EMBED, WS_XENT, WS_BIAS, WS_ATT_PTR, WS_COUNT };
void *derf_cu_ws(int slot, size_t bytes);

static inline unsigned cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }
/* blocks for a grid-stride loop over n elements: enough to fill the GPU, at most 32 per SM */
static inline unsigned grid_for(size_t n, int threads) {
    unsigned b = cdiv(n, threads), cap = (unsigned)derf_cu_sms * 32u;
    unsigned r = b < cap ? b : cap;
    return r ? r : 1u;
}
#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ---- loads and stores --------------------------------------------------------------------- */
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float v) { return __float2bfloat16_rn(v); }

/* 16 bytes of T: 4 floats or 8 bf16, moved with one 128-bit load / store. */
template <typename T> struct alignas(16) Pack {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
    __device__ __forceinline__ float operator[](int i) const { return to_f(v[i]); }
    __device__ __forceinline__ void set(int i, float f) { v[i] = from_f<T>(f); }
};
template <typename T> __device__ __forceinline__ Pack<T> load_pack(const T *p) {
    Pack<T> r;
    *reinterpret_cast<int4 *>(&r) = __ldg(reinterpret_cast<const int4 *>(p));
    return r;
}
template <typename T> __device__ __forceinline__ void store_pack(T *p, const Pack<T> &r) {
    *reinterpret_cast<int4 *>(p) = *reinterpret_cast<const int4 *>(&r);
}

/* ---- deterministic sums (fixed shuffle tree, fixed shared-memory order) -------------------- */
template <typename A> __device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename A> __device__ __forceinline__ A warp_max(A v) {
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Sum over the whole block (any blockDim multiple of 32, at most 1024); every thread gets it.
 * sh: 32 entries of shared memory. */
template <typename A> __device__ A block_sum(A v, A *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    A t = lane < nw ? sh[lane] : A(0);
    return warp_sum(t);
}

/* Sum of a[n] (double) into out[0], one block, fixed order: the second pass of the reductions. */
void derf_cu_sum_f64(double *out, const double *a, int n);

/* dtype dispatch: DISPATCH(dt, T, body) runs body with T = float or bf16. */
#define DERF_DISPATCH(dt, T, ...) do { \
    if ((dt) == DERF_BF16) { typedef bf16 T; __VA_ARGS__; } \
    else { typedef float T; __VA_ARGS__; } } while (0)

#endif
