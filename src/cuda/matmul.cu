/* matmul.cu: matrix products on the GPU. Linear layers through cuBLASLt (inputs in the activation
 * dtype, fp32 accumulation; weight gradients accumulated into fp32 master gradients), bias
 * gradients by a fixed-order column sum, and attention on packed qkv through cuBLAS strided-batched
 * products (one call per batch row, the heads as the batch, so q, k, v are read in place with no
 * permutation) with a fused, optionally causal, softmax and its backward between them. */
#include <algorithm>
#include <math.h>
#include "cuda/common.cuh"

static cudaDataType cu_type(derf_dtype dt) { return dt == DERF_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

template <typename T> __global__ void add_bias_kernel(T *out, const float *b, size_t N, int OC) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < N * OC; i += (size_t)gridDim.x * blockDim.x)
        out[i] = from_f<T>(to_f(out[i]) + __ldg(b + i % OC));
}

/* the largest power of two (at most 256) dividing the address: what cuBLASLt may assume of a pointer
 * (weights in a bf16 copy of the fp32 slab start at any even address) */
static uint32_t ptr_align(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a) a >>= 1;
    return a;
}

/* Column-major D[m,n] = alpha op(A) op(B) + beta D. A: (transA ? k x m : m x k), B likewise.
 * bias (fp32, length m, added to every column) only when D is fp32. cuBLASLt is told the real
 * alignment of each pointer; where it has no algorithm for a shape (odd leading dimensions in bf16,
 * as the ViT's 49-wide patches or 10-class head), or refuses one, the product goes through
 * cublasGemmEx (same fp32 accumulation) and the bias is added by a kernel. */
static void lt_matmul(bool transA, bool transB, int m, int n, int k, const void *A, cudaDataType ta, int lda,
                      const void *B, cudaDataType tb, int ldb, void *D, cudaDataType td, int ldd, float beta,
                      const float *bias) {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulPreference_t pref;
    cublasOperation_t opa = transA ? CUBLAS_OP_T : CUBLAS_OP_N, opb = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    CKB(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CKB(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    CKB(cublasLtMatrixLayoutCreate(&la, ta, transA ? k : m, transA ? m : k, lda));
    CKB(cublasLtMatrixLayoutCreate(&lb, tb, transB ? n : k, transB ? k : n, ldb));
    CKB(cublasLtMatrixLayoutCreate(&ld, td, m, n, ldd));
    CKB(cublasLtMatmulPreferenceCreate(&pref));
    CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &derf_cu_lt_ws_bytes,
                                             sizeof derf_cu_lt_ws_bytes));
    const uint32_t al_a = ptr_align(A), al_b = ptr_align(B), al_d = ptr_align(D);
    CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d));
    CKB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    const float alpha = 1.0f;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(derf_cu_lt, op, la, lb, ld, ld, pref, 1, &heur, &found);
    if (st == CUBLAS_STATUS_SUCCESS && found)
        st = cublasLtMatmul(derf_cu_lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &heur.algo, derf_cu_lt_ws,
                            derf_cu_lt_ws_bytes, 0);
    if (st != CUBLAS_STATUS_SUCCESS || !found) { /* the fallback: plain cuBLAS takes any layout */
        CKB(cublasGemmEx(derf_cu_blas, opa, opb, m, n, k, &alpha, A, ta, lda, B, tb, ldb, &beta, D, td, ldd,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        if (bias) {
            add_bias_kernel<float><<<std::min<unsigned>(cdiv((size_t)m * n, 256), derf_cu_sms * 32u), 256>>>(
                (float *)D, bias, (size_t)n, m);
            CK_LAUNCH();
        }
    }
    CKB(cublasLtMatmulPreferenceDestroy(pref));
    CKB(cublasLtMatrixLayoutDestroy(la));
    CKB(cublasLtMatrixLayoutDestroy(lb));
    CKB(cublasLtMatrixLayoutDestroy(ld));
    CKB(cublasLtMatmulDescDestroy(op));
}

/* db[oc] += sum_n dout[n, oc] in two passes, enough blocks to fill the GPU (one block per 32 columns
 * x 256 rows: 1536 blocks at 16384 x 768, where one block per 32 columns made 24) and still a fixed
 * order: pass 1, block (32, 8): thread y sums rows y, y+8, ... of its 256-row chunk, then a fixed tree
 * over y -> part[chunk][oc]; pass 2: one thread per column adds the chunks in order. The chunk size is
 * a constant, so the bits do not depend on the GPU either. */
#define BIAS_ROWS 256
template <typename T> __global__ void bias_grad_part_kernel(float *part, const T *dout, int N, int OC) {
    __shared__ float sh[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x, r0 = blockIdx.y * BIAS_ROWS;
    const int r1 = min(N, r0 + BIAS_ROWS);
    float s = 0.f;
    if (c < OC)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) s += to_f(dout[(size_t)r * OC + c]);
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    for (int o = 4; o > 0; o >>= 1) {
        if (threadIdx.y < o) sh[threadIdx.y][threadIdx.x] += sh[threadIdx.y + o][threadIdx.x];
        __syncthreads();
    }
    if (threadIdx.y == 0 && c < OC) part[(size_t)blockIdx.y * OC + c] = sh[0][threadIdx.x];
}
__global__ void bias_grad_sum_kernel(float *db, const float *part, int chunks, int OC) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    float s = 0.f;
    for (int k = 0; k < chunks; k++) s += part[(size_t)k * OC + c];
    db[c] += s;
}

/* out[N,OC] = inp[N,C] @ w[OC,C]^T + b. Column-major: out^T (OC x N) = w^T-view^T . inp^T-view. */
extern "C" void derf_cuda_linear_forward(void *out, const void *inp, const void *w, const float *b,
                                         int N, int C, int OC, derf_dtype dt) {
    derf_cu_require();
    cudaDataType t = cu_type(dt);
    const bool fused = b && dt == DERF_F32 && ptr_align(b) >= 16; /* the epilogue reads the bias as vectors */
    lt_matmul(true, false, OC, N, C, w, t, C, inp, t, C, out, t, OC, 0.0f, fused ? b : NULL);
    if (b && !fused) {
        size_t n = (size_t)N * OC;
        DERF_DISPATCH(dt, E, add_bias_kernel<E><<<std::min<unsigned>(cdiv(n, 256), derf_cu_sms * 32u), 256>>>(
                                 (E *)out, b, (size_t)N, OC));
        CK_LAUNCH();
    }
}

extern "C" void derf_cuda_linear_backward(void *dinp, float *dw, float *db, const void *dout, const void *inp,
                                          const void *w, int N, int C, int OC, derf_dtype dt) {
    derf_cu_require();
    cudaDataType t = cu_type(dt);
    /* dinp^T (C x N) += w^T-view (C x OC) . dout^T (OC x N) */
    if (dinp) lt_matmul(false, false, C, N, OC, w, t, C, dout, t, OC, dinp, t, C, 1.0f, NULL);
    /* dw^T (C x OC) += inp^T (C x N) . dout (N x OC) */
    if (dw) lt_matmul(false, true, C, OC, N, inp, t, C, dout, t, OC, dw, CUDA_R_32F, C, 1.0f, NULL);
    if (db && N > 0) {
        const unsigned chunks = cdiv(N, BIAS_ROWS);
        float *part = (float *)derf_cu_ws(WS_BIAS, (size_t)chunks * OC * sizeof(float));
        DERF_DISPATCH(dt, E, bias_grad_part_kernel<E><<<dim3(cdiv(OC, 32), chunks), dim3(32, 8)>>>(
                                 part, (const E *)dout, N, OC));
        CK_LAUNCH();
        bias_grad_sum_kernel<<<cdiv(OC, 256), 256>>>(db, part, (int)chunks, OC);
        CK_LAUNCH();
    }
}

/* ---- attention ------------------------------------------------------------------------------- */
/* The products run per (batch row b, head h) pair. Operand X of pair (b, h) starts at X.p + b X.sb + h X.sh
 * (bytes). All B x NH pairs go into one cublasGemmBatchedEx, its pointer arrays built on the device by one
 * small kernel (the ViT-S/16 step at B=128 made about 9,200 calls a step as one strided-batched call per
 * batch row, heads as the batch); DERF_CUDA_ATT_LOOP=1 in the environment takes that per-row loop instead
 * (cuda_check checks both). */
struct bh_op { const void *p; size_t sb, sh; };

__global__ void bh_ptrs_kernel(const void **ptr, bh_op a, bh_op b, bh_op c, int NH, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const size_t bb = (size_t)(i / NH), h = (size_t)(i % NH);
    ptr[i] = (const char *)a.p + bb * a.sb + h * a.sh;
    ptr[n + i] = (const char *)b.p + bb * b.sb + h * b.sh;
    ptr[2 * n + i] = (const char *)c.p + bb * c.sb + h * c.sh;
}

static size_t type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

static bool att_loop(void) {
    const char *e = getenv("DERF_CUDA_ATT_LOOP");
    return e && *e == '1';
}

static void att_gemm(bool ta, bool tb, int m, int n, int k, float alpha, bh_op A, cudaDataType at, int lda, bh_op Bm,
                     cudaDataType bt, int ldb, float beta, bh_op Cm, cudaDataType ct, int ldc, int B, int NH) {
    const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (att_loop()) {
        for (int b = 0; b < B; b++)
            CKB(cublasGemmStridedBatchedEx(derf_cu_blas, oa, ob, m, n, k, &alpha, (const char *)A.p + b * A.sb, at, lda,
                                           (long long)(A.sh / type_size(at)), (const char *)Bm.p + b * Bm.sb, bt, ldb,
                                           (long long)(Bm.sh / type_size(bt)), &beta, (char *)Cm.p + b * Cm.sb, ct, ldc,
                                           (long long)(Cm.sh / type_size(ct)), NH, CUBLAS_COMPUTE_32F,
                                           CUBLAS_GEMM_DEFAULT));
        return;
    }
    const int nb = B * NH;
    const void **ptr = (const void **)derf_cu_ws(WS_ATT_PTR, 3 * (size_t)nb * sizeof(void *));
    bh_ptrs_kernel<<<cdiv(nb, 256), 256>>>(ptr, A, Bm, Cm, NH, nb);
    CK_LAUNCH();
    CKB(cublasGemmBatchedEx(derf_cu_blas, oa, ob, m, n, k, &alpha, ptr, at, lda, ptr + nb, bt, ldb, &beta,
                            (void *const *)(ptr + 2 * nb), ct, ldc, nb, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* Warp per row of pre[rows, T] (fp32, already scaled): att = softmax over the first n columns
 * (n = t + 1 when causal), zero beyond. */
template <typename T>
__global__ void softmax_kernel(T *att, const float *pre, size_t rows, int T_, int causal) {
    const size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int n = causal ? (int)(row % T_) + 1 : T_;
    const float *p = pre + row * T_;
    T *a = att + row * T_;
    float mx = -INFINITY;
    for (int j = lane; j < n; j += 32) mx = fmaxf(mx, p[j]);
    mx = warp_max(mx);
    float s = 0.f;
    for (int j = lane; j < n; j += 32) s += expf(p[j] - mx);
    const float inv = 1.f / warp_sum(s);
    for (int j = lane; j < T_; j += 32) a[j] = from_f<T>(j < n ? expf(p[j] - mx) * inv : 0.f);
}

/* dpre = scale * att * (datt - sum_j att_j datt_j) over the unmasked columns, zero beyond. */
template <typename T>
__global__ void softmax_backward_kernel(T *dpre, const float *datt, const T *att, size_t rows, int T_, int causal,
                                        float scale) {
    const size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int n = causal ? (int)(row % T_) + 1 : T_;
    const float *d = datt + row * T_;
    const T *a = att + row * T_;
    float s = 0.f;
    for (int j = lane; j < n; j += 32) s += to_f(a[j]) * d[j];
    s = warp_sum(s);
    for (int j = lane; j < T_; j += 32) dpre[row * T_ + j] = from_f<T>(j < n ? scale * to_f(a[j]) * (d[j] - s) : 0.f);
}

extern "C" void derf_cuda_attention_forward(void *out, void *att, const void *qkv, int B, int T, int C, int NH,
                                            int causal, derf_dtype dt) {
    derf_cu_require();
    const int hs = C / NH, C3 = 3 * C;
    const size_t es = derf_dtype_size(dt), TT = (size_t)T * T, rows = (size_t)B * NH * T;
    const cudaDataType t = cu_type(dt);
    const float scale = 1.0f / sqrtf((float)hs);
    float *pre = (float *)derf_cu_ws(WS_ATT_D, sizeof(float) * rows * T);
    const char *q = (const char *)qkv;
    const size_t rq = (size_t)T * C3 * es, hq = (size_t)hs * es; /* per batch row / per head in qkv */
    /* pre[b, h] (T x T) = scale * Q K^T: column-major K^T-view^T . Q^T-view */
    att_gemm(true, false, T, T, hs, scale, bh_op{q + (size_t)C * es, rq, hq}, t, C3, bh_op{q, rq, hq}, t, C3, 0.0f,
             bh_op{pre, NH * TT * sizeof(float), TT * sizeof(float)}, CUDA_R_32F, T, B, NH);
    DERF_DISPATCH(dt, E, softmax_kernel<E><<<cdiv(rows, 8), 256>>>((E *)att, pre, rows, T, causal));
    CK_LAUNCH();
    /* out[b, :, h] (T x hs) = att V */
    att_gemm(false, false, hs, T, T, 1.0f, bh_op{q + 2 * (size_t)C * es, rq, hq}, t, C3,
             bh_op{att, NH * TT * es, TT * es}, t, T, 0.0f, bh_op{out, (size_t)T * C * es, hq}, t, C, B, NH);
}

extern "C" void derf_cuda_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *att, int B,
                                             int T, int C, int NH, int causal, derf_dtype dt) {
    derf_cu_require();
    if (!dqkv) return;
    const int hs = C / NH, C3 = 3 * C;
    const size_t es = derf_dtype_size(dt), TT = (size_t)T * T, rows = (size_t)B * NH * T;
    const cudaDataType t = cu_type(dt);
    const float scale = 1.0f / sqrtf((float)hs);
    float *datt = (float *)derf_cu_ws(WS_ATT_D, sizeof(float) * rows * T);
    char *dpre = (char *)derf_cu_ws(WS_ATT_P, es * rows * T);
    const char *q = (const char *)qkv;
    char *dq = (char *)dqkv;
    const size_t rq = (size_t)T * C3 * es, hq = (size_t)hs * es, ro = (size_t)T * C * es;
    const bh_op Q{q, rq, hq}, K{q + (size_t)C * es, rq, hq}, V{q + 2 * (size_t)C * es, rq, hq}, dO{dout, ro, hq};
    const bh_op A{att, NH * TT * es, TT * es}, P{dpre, NH * TT * es, TT * es};
    /* datt (T x T) = dO V^T */
    att_gemm(true, false, T, T, hs, 1.0f, V, t, C3, dO, t, C, 0.0f, bh_op{datt, NH * TT * sizeof(float), TT * sizeof(float)},
             CUDA_R_32F, T, B, NH);
    /* dV += att^T dO */
    att_gemm(false, true, hs, T, T, 1.0f, dO, t, C, A, t, T, 1.0f, bh_op{dq + 2 * (size_t)C * es, rq, hq}, t, C3, B, NH);
    DERF_DISPATCH(dt, E, softmax_backward_kernel<E><<<cdiv(rows, 8), 256>>>((E *)dpre, datt, (const E *)att, rows, T,
                                                                             causal, scale));
    CK_LAUNCH();
    /* dQ += dpre K ; dK += dpre^T Q */
    att_gemm(false, false, hs, T, T, 1.0f, K, t, C3, P, t, T, 1.0f, bh_op{dq, rq, hq}, t, C3, B, NH);
    att_gemm(false, true, hs, T, T, 1.0f, Q, t, C3, P, t, T, 1.0f, bh_op{dq + (size_t)C * es, rq, hq}, t, C3, B, NH);
}
