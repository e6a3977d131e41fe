/* runtime.cu: device setup (handles, cuBLASLt workspace), memory and transfers, dtype conversion,
 * scratch buffers, cudaEvent timing, and the fixed-order second-pass sum used by the reductions. */
#include <algorithm>
#include <string.h>
#include <vector>
#include "cuda/common.cuh"
#include "derf/dist.h"

cublasHandle_t derf_cu_blas;
cublasLtHandle_t derf_cu_lt;
void *derf_cu_lt_ws;
size_t derf_cu_lt_ws_bytes = 32u << 20;
int derf_cu_sms;
static int g_ready;
static char g_name[320];
static void *g_ws[WS_COUNT];
static size_t g_ws_bytes[WS_COUNT];

/* one line, then the whole job ends (every process under mpirun, derf/dist.h) */
void derf_cu_fail(const char *what, const char *detail, const char *file, int line) {
    derf_dist_abort(1, "CUDA error in %s (%s:%d): %s", what, file, line, detail);
}

void derf_cu_require(void) {
    if (g_ready) return;
    fprintf(stderr, "derf: the CUDA backend is not initialised (derf_cuda_init was not called or failed)\n");
    exit(1);
}

extern "C" int derf_cuda_init(char *err, size_t errlen) {
    if (g_ready) return 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (err && errlen)
            snprintf(err, errlen, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
        return -1;
    }
    /* one process: GPU 0; under mpirun: the GPU of this process's rank on its machine (one GPU per process) */
    const int dev = derf_dist_size() > 1 ? derf_dist_gpu(derf_dist_local_rank(), derf_dist_local_size(), n, err, errlen) : 0;
    if (dev < 0) return -1;
    cudaDeviceProp prop;
    CK(cudaSetDevice(dev));
    CK(cudaGetDeviceProperties(&prop, dev));
    snprintf(g_name, sizeof g_name, "%.256s (GPU %d, sm_%d%d, %d SMs, %.0f GiB)", prop.name, dev, prop.major,
             prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
    if (prop.major < 9) {
        if (err && errlen)
            snprintf(err, errlen, "%s: this build targets sm_90 (H100/H200); rebuild with CUDA_ARCH set for this GPU", g_name);
        return -1;
    }
    derf_cu_sms = prop.multiProcessorCount;
    CKB(cublasCreate(&derf_cu_blas));
    CKB(cublasLtCreate(&derf_cu_lt));
    CK(cudaMalloc(&derf_cu_lt_ws, derf_cu_lt_ws_bytes));
    CKB(cublasSetWorkspace(derf_cu_blas, derf_cu_lt_ws, derf_cu_lt_ws_bytes));
    /* the default math mode with CUBLAS_COMPUTE_32F (used by every call) keeps fp32 products in fp32,
     * no TF32; bf16 products use the tensor cores with fp32 accumulation */
    CKB(cublasSetMathMode(derf_cu_blas, CUBLAS_DEFAULT_MATH));
    g_ready = 1;
    return 0;
}

extern "C" const char *derf_cuda_device_name(void) { return g_ready ? g_name : "none"; }
extern "C" void derf_cuda_sync(void) { CK(cudaDeviceSynchronize()); CK_LAUNCH(); }

extern "C" void *derf_cuda_malloc(size_t bytes) {
    derf_cu_require();
    void *p = NULL;
    if (bytes == 0) bytes = 16;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        fprintf(stderr, "derf: cannot allocate %.1f MiB on the GPU: %s\n", bytes / 1048576.0, cudaGetErrorString(e));
        exit(1);
    }
    CK(cudaMemset(p, 0, bytes));
    return p;
}
extern "C" void derf_cuda_free(void *p) { if (p) CK(cudaFree(p)); }
extern "C" void derf_cuda_upload(void *dst, const void *src, size_t bytes) {
    CK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
extern "C" void derf_cuda_download(void *dst, const void *src, size_t bytes) {
    CK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
extern "C" void derf_cuda_zero(void *p, size_t bytes) { CK(cudaMemset(p, 0, bytes)); }
extern "C" size_t derf_dtype_size(derf_dtype dt) { return dt == DERF_BF16 ? 2 : 4; }

void *derf_cu_ws(int slot, size_t bytes) {
    if (bytes > g_ws_bytes[slot]) {
        if (g_ws[slot]) CK(cudaFree(g_ws[slot]));
        size_t grow = std::max(bytes, g_ws_bytes[slot] + g_ws_bytes[slot] / 2);
        CK(cudaMalloc(&g_ws[slot], grow));
        g_ws_bytes[slot] = grow;
    }
    return g_ws[slot];
}

template <typename D, typename S> __global__ void convert_kernel(D *dst, const S *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f<D>(to_f(src[i]));
}

extern "C" void derf_cuda_convert(void *dst, derf_dtype dst_dt, const void *src, derf_dtype src_dt, size_t n) {
    if (n == 0) return;
    unsigned grid = std::min<unsigned>(cdiv(n, 256), 65535u * 4);
    DERF_DISPATCH(dst_dt, D, DERF_DISPATCH(src_dt, S,
        convert_kernel<D, S><<<grid, 256>>>((D *)dst, (const S *)src, n)));
    CK_LAUNCH();
}

extern "C" float derf_cuda_time_ms(void (*fn)(void *ctx), void *ctx, int warmup, int reps) {
    for (int i = 0; i < warmup; i++) fn(ctx);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> ms((size_t)std::max(reps, 1));
    for (size_t i = 0; i < ms.size(); i++) {
        CK(cudaEventRecord(a));
        fn(ctx);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms[i], a, b));
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

/* One block of 1024 threads: thread i sums a[i], a[i+1024], ... in order, then a fixed tree. */
__global__ void sum_f64_kernel(double *out, const double *a, int n) {
    __shared__ double sh[32];
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += a[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[0] = s;
}
void derf_cu_sum_f64(double *out, const double *a, int n) {
    sum_f64_kernel<<<1, 1024>>>(out, a, n);
    CK_LAUNCH();
}
