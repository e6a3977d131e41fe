/* nccl.cu: the GPU side of data-parallel training (docs/distributed.md): one NCCL communicator over
 * the MPI processes, each on its own GPU (derf_cuda_init picks it by the process's rank on its
 * machine). Rank 0 makes the ncclUniqueId and MPI broadcasts it (derf_dist_bcast); the gradient slab
 * is averaged by one ncclAllReduce (sum) on the stream every kernel of the backend runs on (the
 * default stream), then scaled by 1/N: the CPU path's sum-then-scale (derf_dist_mean_floats).
 * The Makefile defines DERF_NCCL when it finds nccl.h and libnccl; without them the init refuses a
 * run of several processes with one line. */
#include <algorithm>
#include <string.h>
#include "cuda/common.cuh"
#include "derf/dist.h"
#ifdef DERF_NCCL
#include <nccl.h>

static ncclComm_t g_comm;
static int g_on;

/* one line naming the call and NCCL's reason, then the whole job ends */
#define CKN(call) do { ncclResult_t r_ = (call); \
    if (r_ != ncclSuccess) derf_dist_abort(1, "NCCL error in %s (%s:%d): %s%s%s", #call, __FILE__, __LINE__, \
                                           ncclGetErrorString(r_), *ncclGetLastError(NULL) ? ": " : "", \
                                           ncclGetLastError(NULL)); } while (0)

static __global__ void mean_scale_kernel(float *x, size_t n, float s) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

/* before MPI_Finalize (derf_dist_finalize): every process leaves the communicator */
static void nccl_end(void) {
    if (!g_on) return;
    g_on = 0;
    CKN(ncclCommDestroy(g_comm));
}
#endif

extern "C" int derf_cuda_dist_init(int local_rc, char *err, size_t errlen) {
    const int N = derf_dist_size();
    if (N == 1) return local_rc;
    /* every process learns whether all have their GPU before any blocks in ncclCommInitRank */
    double bad = local_rc ? 1 : 0;
    derf_dist_sum_doubles(&bad, 1);
    if (local_rc) return -1; /* err says why */
    if (bad > 0) {
        if (err && errlen)
            snprintf(err, errlen, "%.0f of the %d processes could not start their GPU (their message names why)", bad, N);
        return -1;
    }
#ifdef DERF_NCCL
    if (g_on) return 0;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (derf_dist_rank() == 0) CKN(ncclGetUniqueId(&id));
    derf_dist_bcast(&id, sizeof id);
    CKN(ncclCommInitRank(&g_comm, N, id, derf_dist_rank()));
    g_on = 1;
    derf_dist_before_finalize(nccl_end);
    return 0;
#else
    if (err && errlen)
        snprintf(err, errlen, "--device cuda under mpirun averages the gradients with NCCL, and this derf was built "
                              "without it (no nccl.h and libnccl under CUDA_HOME at 'make CUDA=1'): install NCCL "
                              "(libnccl-dev), then 'make clean-cuda && make CUDA=1'");
    return -1;
#endif
}

extern "C" void derf_cuda_dist_mean_floats(float *x, size_t n) {
    const int N = derf_dist_size();
    if (N == 1 || n == 0) return;
#ifdef DERF_NCCL
    if (!g_on) derf_dist_abort(1, "the gradients cannot be averaged: no NCCL communicator (derf_cuda_dist_init not called)");
    CKN(ncclAllReduce(x, x, n, ncclFloat, ncclSum, g_comm, 0));
    const unsigned grid = (unsigned)std::min<size_t>(cdiv(n, 256), (size_t)65535 * 4);
    mean_scale_kernel<<<grid, 256>>>(x, n, 1.0f / (float)N); /* the CPU's x *= 1/N */
    CK_LAUNCH();
#else
    derf_dist_abort(1, "the gradients cannot be averaged over %d processes: this derf was built without NCCL", N);
#endif
}
