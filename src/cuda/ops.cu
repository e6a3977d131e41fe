/* ops.cu: GPU element-wise and small ops mirroring src/ops and src/core/params.c: GELU (the same
 * formulas as the CPU, src/ops/gelu_fn.h), residual add, token + position embedding (backward
 * bucketed by token on the host so each vocabulary row is summed in a fixed order), fused softmax
 * cross-entropy, AdamW, global gradient norm with clipping. Reductions: per-block partials, then
 * a fixed-order second pass; no float atomics. */
#include <algorithm>
#include <math.h>
#include <vector>
#include "cuda/common.cuh"
#include "ops/gelu_fn.h"
#include "core/adamw_fn.h"


/* ---- GELU ----------------------------------------------------------------------------------- */
template <typename T> __global__ void gelu_forward_kernel(T *out, const T *inp, size_t n, int tanh_form) {
    GRID_STRIDE(i, n) {
        float x = to_f(inp[i]);
        out[i] = from_f<T>(tanh_form ? derf_gelu_tanh_f(x) : derf_gelu_erf_f(x));
    }
}
template <typename T> __global__ void gelu_backward_kernel(T *dinp, const T *dout, const T *inp, size_t n, int tanh_form) {
    GRID_STRIDE(i, n) {
        float x = to_f(inp[i]);
        float d = tanh_form ? derf_gelu_tanh_df(x) : derf_gelu_erf_df(x);
        dinp[i] = from_f<T>(to_f(dinp[i]) + d * to_f(dout[i]));
    }
}
extern "C" void derf_cuda_gelu_forward(void *out, const void *inp, size_t n, derf_gelu_kind kind, derf_dtype dt) {
    if (!n) return;
    DERF_DISPATCH(dt, T, gelu_forward_kernel<T><<<grid_for(n, 256), 256>>>((T *)out, (const T *)inp, n,
                                                                            kind == DERF_GELU_TANH));
    CK_LAUNCH();
}
extern "C" void derf_cuda_gelu_backward(void *dinp, const void *dout, const void *inp, size_t n,
                                        derf_gelu_kind kind, derf_dtype dt) {
    if (!n || !dinp) return;
    DERF_DISPATCH(dt, T, gelu_backward_kernel<T><<<grid_for(n, 256), 256>>>((T *)dinp, (const T *)dout,
                                                                             (const T *)inp, n, kind == DERF_GELU_TANH));
    CK_LAUNCH();
}

template <typename T> __global__ void residual_kernel(T *out, const T *a, const T *b, size_t n) {
    GRID_STRIDE(i, n) out[i] = from_f<T>(to_f(a[i]) + to_f(b[i]));
}
extern "C" void derf_cuda_residual_forward(void *out, const void *a, const void *b, size_t n, derf_dtype dt) {
    if (!n) return;
    DERF_DISPATCH(dt, T, residual_kernel<T><<<grid_for(n, 256), 256>>>((T *)out, (const T *)a, (const T *)b, n));
    CK_LAUNCH();
}

/* ---- embeddings ------------------------------------------------------------------------------ */
template <typename T>
__global__ void embed_forward_kernel(T *out, const int32_t *tok, const float *wte, const float *wpe, int B, int T_, int C) {
    size_t n = (size_t)B * T_ * C;
    GRID_STRIDE(i, n) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T_);
        float v = __ldg(wte + (size_t)tok[bt] * C + c);
        if (wpe) v += __ldg(wpe + (size_t)t * C + c);
        out[i] = from_f<T>(v);
    }
}
extern "C" void derf_cuda_embed_forward(void *out, const int32_t *tok, const float *wte, const float *wpe,
                                        int B, int T, int C, derf_dtype dt) {
    size_t n = (size_t)B * T * C;
    if (!n) return;
    DERF_DISPATCH(dt, E, embed_forward_kernel<E><<<grid_for(n, 256), 256>>>((E *)out, tok, wte, wpe, B, T, C));
    CK_LAUNCH();
}

/* dwte: one block per distinct token u; bucket[start[u] .. start[u+1]) lists its positions in
 * increasing order, so the sum per (token, channel) always runs in the same order. */
template <typename T>
__global__ void embed_wte_backward_kernel(float *dwte, const T *dout, const int32_t *uniq, const int32_t *start,
                                          const int32_t *pos, int C) {
    const int u = blockIdx.x, tok = uniq[u], p0 = start[u], p1 = start[u + 1];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.f;
        for (int p = p0; p < p1; p++) s += to_f(dout[(size_t)pos[p] * C + c]);
        dwte[(size_t)tok * C + c] += s;
    }
}
/* dwpe[t,c] += sum_b dout[b,t,c] (b in order). */
template <typename T> __global__ void embed_wpe_backward_kernel(float *dwpe, const T *dout, int B, int T_, int C) {
    size_t n = (size_t)T_ * C;
    GRID_STRIDE(i, n) {
        float s = 0.f;
        for (int b = 0; b < B; b++) s += to_f(dout[(size_t)b * n + i]);
        dwpe[i] += s;
    }
}
extern "C" void derf_cuda_embed_backward(float *dwte, float *dwpe, const void *dout, const int32_t *tok_host,
                                         int B, int T, int C, int V, derf_dtype dt) {
    const int n = B * T;
    if (n <= 0) return;
    if (dwte) {
        /* counting sort of positions by token (stable: positions stay increasing within a token) */
        std::vector<int32_t> count((size_t)V + 1, 0), uniq, start, pos((size_t)n);
        for (int i = 0; i < n; i++) {
            if (tok_host[i] < 0 || tok_host[i] >= V) {
                fprintf(stderr, "derf: token %d out of range [0, %d) at position %d\n", (int)tok_host[i], V, i);
                exit(1);
            }
            count[(size_t)tok_host[i] + 1]++;
        }
        for (int v = 0; v < V; v++) {
            if (count[(size_t)v + 1]) { uniq.push_back(v); start.push_back(count[v]); }
            count[(size_t)v + 1] += count[v];
        }
        start.push_back(n);
        std::vector<int32_t> fill(count.begin(), count.end() - 1);
        for (int i = 0; i < n; i++) pos[(size_t)fill[(size_t)tok_host[i]]++] = i;
        const size_t nu = uniq.size();
        int32_t *d = (int32_t *)derf_cu_ws(WS_EMBED, sizeof(int32_t) * (2 * nu + 1 + (size_t)n));
        CK(cudaMemcpy(d, uniq.data(), sizeof(int32_t) * nu, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d + nu, start.data(), sizeof(int32_t) * (nu + 1), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d + 2 * nu + 1, pos.data(), sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice));
        DERF_DISPATCH(dt, E, embed_wte_backward_kernel<E><<<(unsigned)nu, 256>>>(dwte, (const E *)dout, d, d + nu,
                                                                               d + 2 * nu + 1, C));
        CK_LAUNCH();
    }
    if (dwpe) {
        DERF_DISPATCH(dt, E, embed_wpe_backward_kernel<E><<<grid_for((size_t)T * C, 256), 256>>>(dwpe, (const E *)dout,
                                                                                                B, T, C));
        CK_LAUNCH();
    }
}

/* ---- softmax cross-entropy ------------------------------------------------------------------- */
/* stat[0] = kept rows (targets >= 0), stat[1] = first out-of-range row + 1 (0: none). */
__global__ void xent_count_kernel(int *stat, const int32_t *targets, int N, int V) {
    __shared__ int sh[32];
    int kept = 0, bad = 0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        kept += targets[i] >= 0;
        if (targets[i] >= V && !bad) bad = i + 1;
    }
    kept = block_sum(kept, sh);
    /* smallest bad row: a max-reduction over -(row) would do too; a second sum pass keeps it simple */
    __syncthreads();
    int b = bad ? bad : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) b = min(b, __shfl_xor_sync(0xffffffffu, b, o));
    __shared__ int shb[32];
    if ((threadIdx.x & 31) == 0) shb[threadIdx.x >> 5] = b;
    __syncthreads();
    if (threadIdx.x == 0) {
        int m = 0x7fffffff;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) m = min(m, shb[w]);
        stat[0] = kept;
        stat[1] = m == 0x7fffffff ? 0 : m;
    }
}

/* One block per row: loss[row] and dlogits[row] += (scale / kept) (softmax - q), or = when !acc
 * (ignored rows: 0). */
template <typename T>
__global__ void xent_row_kernel(T *dlogits, double *loss, const T *logits, const int32_t *targets, const int *stat,
                                float smoothing, float scale, int V, int acc) {
    __shared__ float shf[32];
    const int row = blockIdx.x, tgt = targets[row];
    if (tgt < 0 || tgt >= V) {
        if (threadIdx.x == 0) loss[row] = 0.0;
        if (dlogits && !acc)
            for (int v = threadIdx.x; v < V; v += blockDim.x) dlogits[(size_t)row * V + v] = from_f<T>(0.f);
        return;
    }
    const T *x = logits + (size_t)row * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, to_f(x[v]));
    mx = warp_max(mx);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) shf[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = (threadIdx.x & 31) < (blockDim.x >> 5) ? shf[threadIdx.x & 31] : -INFINITY;
    mx = warp_max(mx);
    float se = 0.f, sx = 0.f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float xv = to_f(x[v]);
        se += expf(xv - mx);
        sx += xv;
    }
    se = block_sum(se, shf);
    sx = block_sum(sx, shf);
    const float lse = mx + logf(se);
    if (threadIdx.x == 0)
        loss[row] = (double)lse - ((1.0 - smoothing) * to_f(x[tgt]) + (double)smoothing / V * sx);
    if (!dlogits) return;
    const float gscale = scale / (float)stat[0], inv = 1.f / se, qo = smoothing / V;
    T *d = dlogits + (size_t)row * V;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float q = qo + (v == tgt ? 1.f - smoothing : 0.f);
        const float gv = gscale * (expf(to_f(x[v]) - mx) * inv - q);
        d[v] = from_f<T>(acc ? to_f(d[v]) + gv : gv);
    }
}

extern "C" float derf_cuda_xent_forward_backward(void *dlogits, const void *logits, const int32_t *targets,
                                                 float smoothing, float scale, int N, int V, derf_dtype dt,
                                                 int accumulate) {
    derf_cu_require();
    if (N <= 0) return 0.f;
    char *ws = (char *)derf_cu_ws(WS_XENT, sizeof(double) * ((size_t)N + 1) + 16);
    double *loss = (double *)ws, *total = loss + N;
    int *stat = (int *)(total + 1);
    xent_count_kernel<<<1, 1024>>>(stat, targets, N, V);
    CK_LAUNCH();
    DERF_DISPATCH(dt, E, xent_row_kernel<E><<<N, 512>>>((E *)dlogits, loss, (const E *)logits, targets, stat,
                                                        smoothing, scale, V, accumulate));
    CK_LAUNCH();
    derf_cu_sum_f64(total, loss, N);
    double h_total;
    int h_stat[2];
    CK(cudaMemcpy(&h_total, total, sizeof h_total, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(h_stat, stat, sizeof h_stat, cudaMemcpyDeviceToHost));
    if (h_stat[1]) {
        fprintf(stderr, "derf: cross-entropy target out of range [0, %d) at row %d\n", V, h_stat[1] - 1);
        exit(1);
    }
    return h_stat[0] ? (float)(h_total / h_stat[0]) : 0.f;
}

/* ---- AdamW and gradient clipping ------------------------------------------------------------- */
/* derf_adamw_step (src/core/params.c) element for element: the same derf_adamw_elem. */
__global__ void adamw_kernel(float *w, const float *g, float *m, float *v, size_t n, derf_adamw_coef k,
                             float decay_mul) {
    GRID_STRIDE(i, n) w[i] = derf_adamw_elem(w[i], g[i], &m[i], &v[i], k, decay_mul);
}

extern "C" void derf_cuda_adamw_step(const derf_params *layout, float *params, const float *grads, float *m,
                                     float *v, const derf_adamw_cfg *cfg, int step) {
    derf_cu_require();
    const derf_adamw_coef k = derf_adamw_coefs(cfg, step);
    /* one launch per run of consecutive tensors with the same decay flag; a run spans the alignment
     * padding of the device layout (derf_params_layout_aligned: < 64 floats, 0 in every slab, and AdamW
     * keeps 0 at 0: m, v and the step stay 0, decay scales 0) */
    for (int i = 0; i < layout->n;) {
        int j = i + 1;
        while (j < layout->n && layout->t[j].decay == layout->t[i].decay &&
               layout->t[j].offset >= layout->t[j - 1].offset + layout->t[j - 1].numel &&
               layout->t[j].offset < layout->t[j - 1].offset + layout->t[j - 1].numel + 64) j++;
        size_t off = layout->t[i].offset, n = layout->t[j - 1].offset + layout->t[j - 1].numel - off;
        float decay_mul = layout->t[i].decay ? 1.0f - k.lr * cfg->weight_decay : 1.0f;
        if (n) {
            adamw_kernel<<<grid_for(n, 256), 256>>>(params + off, grads + off, m + off, v + off, n, k, decay_mul);
            CK_LAUNCH();
        }
        i = j;
    }
}

/* Per block: sum of squares of its 4096-element chunks (each chunk summed in float, as the CPU
 * does, the chunks added in double). */
__global__ void sumsq_kernel(double *part, const float *g, size_t n) {
    __shared__ double sh[32];
    __shared__ float shf[32];
    double acc = 0;
    for (size_t b = (size_t)blockIdx.x * 4096; b < n; b += (size_t)gridDim.x * 4096) {
        float s = 0.f;
        for (size_t i = b + threadIdx.x; i < b + 4096 && i < n; i += blockDim.x) s += g[i] * g[i];
        acc += (double)block_sum(s, shf);
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}
__global__ void scale_kernel(float *g, size_t n, float c) { GRID_STRIDE(i, n) g[i] *= c; }

extern "C" float derf_cuda_clip_grad_norm(float *grads, size_t n, float max_norm) {
    derf_cu_require();
    const unsigned nb = std::max(1u, std::min<unsigned>(cdiv(n, 4096), (unsigned)derf_cu_sms * 4));
    double *part = (double *)derf_cu_ws(WS_REDUCE, sizeof(double) * (nb + 1));
    sumsq_kernel<<<nb, 256>>>(part, grads, n);
    CK_LAUNCH();
    derf_cu_sum_f64(part + nb, part, (int)nb);
    double ss;
    CK(cudaMemcpy(&ss, part + nb, sizeof ss, cudaMemcpyDeviceToHost));
    double norm = sqrt(ss);
    if (max_norm > 0.0f) {
        double coef = (double)max_norm / (norm + 1e-6);
        if (coef < 1.0) {
            scale_kernel<<<grid_for(n, 256), 256>>>(grads, n, (float)coef);
            CK_LAUNCH();
        }
    }
    return (float)norm;
}

/* ---- learnable scalar multiplier (GPT-2's shared_scale) --------------------------------------- */
template <typename T> __global__ void scale_forward_kernel(T *out, const T *in, const float *s, size_t n) {
    const float sv = __ldg(s);
    GRID_STRIDE(i, n) out[i] = from_f<T>(sv * to_f(in[i]));
}
/* part[block] = sum of dx*in over the block's elements (double); dx *= s in place */
template <typename T> __global__ void scale_backward_kernel(double *part, T *dx, const T *in, const float *s, size_t n) {
    __shared__ double sh[32];
    const float sv = __ldg(s);
    double acc = 0;
    GRID_STRIDE(i, n) {
        float d = to_f(dx[i]);
        acc += (double)d * to_f(in[i]);
        dx[i] = from_f<T>(d * sv);
    }
    acc = block_sum(acc, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}
__global__ void add_f64_kernel(float *dst, const double *src) { dst[0] += (float)src[0]; }

extern "C" void derf_cuda_scale_forward(void *out, const void *in, const float *s, size_t n, derf_dtype dt) {
    if (!n) return;
    DERF_DISPATCH(dt, E, scale_forward_kernel<E><<<grid_for(n, 256), 256>>>((E *)out, (const E *)in, s, n));
    CK_LAUNCH();
}
extern "C" void derf_cuda_scale_backward(float *ds, void *dx, const void *in, const float *s, size_t n, derf_dtype dt) {
    if (!n) return;
    const unsigned nb = std::max(1u, std::min<unsigned>(cdiv(n, 256), (unsigned)derf_cu_sms * 4));
    double *part = (double *)derf_cu_ws(WS_REDUCE, sizeof(double) * (nb + 1));
    DERF_DISPATCH(dt, E, scale_backward_kernel<E><<<nb, 256>>>(part, (E *)dx, (const E *)in, s, n));
    CK_LAUNCH();
    derf_cu_sum_f64(part + nb, part, (int)nb);
    if (ds) {
        add_f64_kernel<<<1, 1>>>(ds, part + nb);
        CK_LAUNCH();
    }
}
