/* norms.cuh: GPU forward and backward of every norm spec (derf/norm.h):
 *   point-wise family  y = gamma[c] g(alpha x + s) + beta[c], g = a base function of the registry
 *                      with the spec's transforms composed over it;
 *   LayerNorm, RMSNorm (warp per row).
 * The point-wise kernels are instantiated from the same X-macro list (DERF_FOR_EACH_FN) and the
 * same formulas (src/norms/functions.h, DERF_HOSTDEV) as the CPU ones: one vectorised kernel per
 * base function (16-byte loads, C a multiple of 4 floats / 8 bf16), and one generic kernel that
 * evaluates any spec through derf_compose_eval (transforms, or odd C).
 * Parameter gradients: each block of the backward kernel covers a tile of channels x a chunk of
 * rows and writes per-channel partial sums (gamma, beta, per-channel s) and two per-block scalars
 * (alpha, scalar s); a second kernel adds the partials in a fixed order. No atomics, so the
 * gradients are the same bits on every run.
 * Included once per activation dtype (norms_f32.cu, norms_bf16.cu: two translation units that nvcc
 * compiles in parallel); norms.cu holds the entry points. */
#ifndef DERF_CUDA_NORMS_CUH
#define DERF_CUDA_NORMS_CUH
#include <algorithm>
#include <string.h>
#include "cuda/common.cuh"
#include "norms/functions.h"

#define TILE_X 32 /* packs of channels per block (threadIdx.x) */
#define TILE_Y 8  /* row lanes per block (threadIdx.y) */
#define TILE_TARGET_BLOCKS 1024 /* fixed, so the summation order is the same on every GPU */

/* Device view of one point-wise layer. */
struct PwArgs {
    derf_tf tf[DERF_MAX_TF];
    int n_tf, fn, shift_per_channel;
    const float *alpha, *shift, *gamma, *beta;
};

template <int FN> __device__ __forceinline__ float pw_eval(const PwArgs &a, float u, float *df) {
    if (FN < 0) {
        float g;
        derf_compose_eval(a.tf, a.n_tf, a.fn, u, &g, df);
        return g;
    }
    return derf_fn_eval(FN, u, df);
}

__device__ __forceinline__ float pw_shift(const PwArgs &a, int c) {
    return a.shift ? __ldg(a.shift + (a.shift_per_channel ? c : 0)) : 0.f;
}
__device__ __forceinline__ float pw_gamma(const PwArgs &a, int c) { return a.gamma ? __ldg(a.gamma + c) : 1.f; }
__device__ __forceinline__ float pw_beta(const PwArgs &a, int c) { return a.beta ? __ldg(a.beta + c) : 0.f; }

/* ---- point-wise forward: grid-stride over groups of V consecutive elements of one row --------- */
template <int FN, typename T, bool VEC>
__global__ void pw_forward_kernel(T *__restrict__ y, const T *__restrict__ x, PwArgs a, size_t N, int C) {
    constexpr int V = VEC ? Pack<T>::N : 1;
    const float alpha = __ldg(a.alpha);
    const size_t groups = N * (size_t)C / V;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < groups; i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = i * V;
        const int c0 = (int)(e % (size_t)C);
        if (VEC) {
            Pack<T> xv = load_pack(x + e), yv;
#pragma unroll
            for (int j = 0; j < V; j++) {
                float df, f = pw_eval<FN>(a, alpha * xv[j] + pw_shift(a, c0 + j), &df);
                yv.set(j, pw_gamma(a, c0 + j) * f + pw_beta(a, c0 + j));
            }
            store_pack(y + e, yv);
        } else {
            float df, f = pw_eval<FN>(a, alpha * to_f(x[e]) + pw_shift(a, c0), &df);
            y[e] = from_f<T>(pw_gamma(a, c0) * f + pw_beta(a, c0));
        }
    }
}

/* ---- point-wise backward: block (TILE_X, TILE_Y) over channels [bx*TILE_X*V, ...) x rows
 * [by*rows, (by+1)*rows). part: [gy][3][C] (dgamma, dbeta, dshift per channel);
 * pscal: [gy*gx][2] (dalpha, dshift scalar). */
template <int FN, typename T, bool VEC>
__global__ void __launch_bounds__(TILE_X * TILE_Y)
pw_backward_kernel(T *__restrict__ dx, float *__restrict__ part, float *__restrict__ pscal,
                   const T *__restrict__ dy, const T *__restrict__ x, PwArgs a, int N, int C,
                   int rows, int accumulate) {
    constexpr int V = VEC ? Pack<T>::N : 1;
    __shared__ float sh[3][TILE_Y][TILE_X * V];
    __shared__ float shs[32];
    const int c0 = (blockIdx.x * TILE_X + threadIdx.x) * V;
    const bool active = c0 < C;
    const int r0 = blockIdx.y * rows, r1 = min(N, r0 + rows);
    const float alpha = __ldg(a.alpha);
    float sv[V], gm[V], ag[V], ab[V], as[V], sa = 0.f, ss = 0.f;
#pragma unroll
    for (int j = 0; j < V; j++) {
        sv[j] = active ? pw_shift(a, c0 + j) : 0.f;
        gm[j] = active ? pw_gamma(a, c0 + j) : 0.f;
        ag[j] = ab[j] = as[j] = 0.f;
    }
    if (active) {
#pragma unroll 2
        for (int r = r0 + threadIdx.y; r < r1; r += TILE_Y) {
            const size_t e = (size_t)r * C + c0;
            float xv[V], dv[V], ov[V];
            if (VEC) {
                Pack<T> xp = load_pack(x + e), dp = load_pack(dy + e);
#pragma unroll
                for (int j = 0; j < V; j++) { xv[j] = xp[j]; dv[j] = dp[j]; }
                if (dx && accumulate) {
                    Pack<T> op = load_pack(dx + e);
#pragma unroll
                    for (int j = 0; j < V; j++) ov[j] = op[j];
                }
            } else {
                xv[0] = to_f(x[e]); dv[0] = to_f(dy[e]);
                if (dx && accumulate) ov[0] = to_f(dx[e]);
            }
            Pack<T> outp;
#pragma unroll
            for (int j = 0; j < V; j++) {
                float df, f = pw_eval<FN>(a, alpha * xv[j] + sv[j], &df);
                float t = dv[j] * gm[j] * df;
                float d = t * alpha;
                if (dx && accumulate) d += ov[j];
                if (VEC) outp.set(j, d);
                else ov[j] = d;
                sa += t * xv[j];
                ss += t;
                ag[j] += dv[j] * f;
                ab[j] += dv[j];
                as[j] += t;
            }
            if (dx) {
                if (VEC) store_pack(dx + e, outp);
                else dx[e] = from_f<T>(ov[0]);
            }
        }
    }
    if (!part) return; /* no parameter gradients wanted (uniform over the grid) */
#pragma unroll
    for (int j = 0; j < V; j++) {
        sh[0][threadIdx.y][threadIdx.x * V + j] = ag[j];
        sh[1][threadIdx.y][threadIdx.x * V + j] = ab[j];
        sh[2][threadIdx.y][threadIdx.x * V + j] = as[j];
    }
    __syncthreads();
    /* channel partials: rows of the tile summed in the fixed order 0..TILE_Y-1 */
    const int tid = threadIdx.y * TILE_X + threadIdx.x;
    for (int k = tid; k < 3 * TILE_X * V; k += TILE_X * TILE_Y) {
        int arr = k / (TILE_X * V), cc = k % (TILE_X * V);
        int c = blockIdx.x * TILE_X * V + cc;
        if (c >= C) continue;
        float s = 0.f;
        for (int y = 0; y < TILE_Y; y++) s += sh[arr][y][cc];
        part[((size_t)blockIdx.y * 3 + arr) * C + c] = s;
    }
    /* block scalars (block_sum works on the linear thread index) */
    const int bid = blockIdx.y * gridDim.x + blockIdx.x;
    {
        int lane = tid & 31, warp = tid >> 5;
        float v1 = warp_sum(sa), v2 = warp_sum(ss);
        __syncthreads();
        if (lane == 0) { shs[warp] = v1; shs[16 + warp] = v2; }
        __syncthreads();
        if (tid == 0) {
            float t1 = 0.f, t2 = 0.f;
            for (int w = 0; w < TILE_X * TILE_Y / 32; w++) { t1 += shs[w]; t2 += shs[16 + w]; }
            pscal[2 * (size_t)bid] = t1;
            pscal[2 * (size_t)bid + 1] = t2;
        }
    }
}

/* Second pass over per-chunk channel partials part[gy][K][C]: dst[k][c] += sum_g part[g][k][c].
 * Block (32, 32): threadIdx.x = channel, threadIdx.y strides over g; then a fixed tree over y. */
struct ColDst { float *d[3]; };
static __global__ void col_reduce_kernel(ColDst dst, const float *__restrict__ part, int gy, int K, int C) {
    __shared__ float sh[32][33];
    const int c = blockIdx.x * 32 + threadIdx.x, k = blockIdx.y;
    float s = 0.f;
    if (c < C)
        for (int g = threadIdx.y; g < gy; g += 32) s += part[((size_t)g * K + k) * C + c];
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    for (int o = 16; o > 0; o >>= 1) {
        if (threadIdx.y < o) sh[threadIdx.y][threadIdx.x] += sh[threadIdx.y + o][threadIdx.x];
        __syncthreads();
    }
    if (threadIdx.y == 0 && c < C && dst.d[k]) dst.d[k][c] += sh[0][threadIdx.x];
}

/* dalpha[0] += sum of pscal[2i], dshift[0] += sum of pscal[2i+1] (double, fixed order). */
static __global__ void scalar_reduce_kernel(float *da, float *ds, const float *__restrict__ pscal, int nb) {
    __shared__ double sh[32];
    double s1 = 0, s2 = 0;
    for (int i = threadIdx.x; i < nb; i += blockDim.x) { s1 += pscal[2 * i]; s2 += pscal[2 * i + 1]; }
    s1 = block_sum(s1, sh);
    s2 = block_sum(s2, sh);
    if (threadIdx.x == 0) {
        if (da) da[0] += (float)s1;
        if (ds) ds[0] += (float)s2;
    }
}

static void col_reduce(ColDst dst, const float *part, int gy, int K, int C) {
    col_reduce_kernel<<<dim3(cdiv(C, 32), K), dim3(32, 32)>>>(dst, part, gy, K, C);
    CK_LAUNCH();
}

/* Tiling of the backward grid: gx channel tiles, gy row chunks of `rows` rows. */
struct Tiling { int gx, gy, rows; };
static Tiling tiling(int N, int C, int V) {
    Tiling t;
    t.gx = (int)cdiv(C, (size_t)TILE_X * V);
    int gy = std::max(1, std::min((int)cdiv(N, TILE_Y), (TILE_TARGET_BLOCKS + t.gx - 1) / t.gx));
    t.rows = (int)cdiv(cdiv(N, gy), TILE_Y) * TILE_Y;
    t.gy = std::max(1, (int)cdiv(N, t.rows));
    return t;
}

static PwArgs pw_args(const derf_norm_spec *s, const float *params, int C) {
    PwArgs a;
    memset(&a, 0, sizeof a);
    memcpy(a.tf, s->tf, sizeof a.tf);
    a.n_tf = s->n_tf;
    a.fn = s->fn;
    a.shift_per_channel = s->shift == DERF_SHIFT_CHANNEL;
    if (!params) return a;
    derf_norm_param p[4];
    int k = derf_norm_params(s, C, p);
    for (int i = 0; i < k; i++) {
        const float *ptr = params + p[i].offset;
        if (!strcmp(p[i].name, "alpha")) a.alpha = ptr;
        else if (!strcmp(p[i].name, "shift")) a.shift = ptr;
        else if (!strcmp(p[i].name, "weight")) a.gamma = ptr;
        else if (!strcmp(p[i].name, "bias")) a.beta = ptr;
    }
    return a;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

template <int FN, typename T, bool VEC>
static void pw_forward_launch(T *y, const T *x, const PwArgs &a, int N, int C) {
    constexpr int V = VEC ? Pack<T>::N : 1;
    size_t groups = (size_t)N * C / V;
    unsigned grid = std::min<unsigned>(cdiv(groups, 256), (unsigned)derf_cu_sms * 16);
    pw_forward_kernel<FN, T, VEC><<<std::max(grid, 1u), 256>>>(y, x, a, (size_t)N, C);
    CK_LAUNCH();
}

template <int FN, typename T, bool VEC>
static void pw_backward_launch(T *dx, float *dparams, const T *dy, const T *x, const PwArgs &a,
                               const PwArgs &g, int N, int C, int accumulate) {
    constexpr int V = VEC ? Pack<T>::N : 1;
    Tiling t = tiling(N, C, V);
    float *part = NULL, *pscal = NULL;
    if (dparams) {
        part = (float *)derf_cu_ws(WS_NORM_PART, sizeof(float) * ((size_t)t.gy * 3 * C + 2 * (size_t)t.gx * t.gy));
        pscal = part + (size_t)t.gy * 3 * C;
    }
    pw_backward_kernel<FN, T, VEC><<<dim3(t.gx, t.gy), dim3(TILE_X, TILE_Y)>>>(
        dx, part, pscal, dy, x, a, N, C, t.rows, accumulate);
    CK_LAUNCH();
    if (!dparams) return;
    ColDst d = {{(float *)g.gamma, (float *)g.beta, g.shift_per_channel ? (float *)g.shift : NULL}};
    if (d.d[0] || d.d[1] || d.d[2]) col_reduce(d, part, t.gy, 3, C);
    float *ds = g.shift_per_channel ? NULL : (float *)g.shift;
    scalar_reduce_kernel<<<1, 1024>>>((float *)g.alpha, ds, pscal, t.gx * t.gy);
    CK_LAUNCH();
}

/* Picks the specialised kernel of the spec's base function, or the generic one. */
template <typename T, bool FWD>
static void pw_dispatch(const derf_norm_spec *s, T *out, float *dparams, const T *dy, const T *x,
                        const PwArgs &a, const PwArgs &g, int N, int C, int accumulate) {
    const bool vec = C % Pack<T>::N == 0 && aligned16(x) && aligned16(out) && (FWD || aligned16(dy));
    const int fn = (s->n_tf == 0 && vec) ? (int)s->fn : -1;
#define LAUNCH(FNV, VECV) do { \
        if (FWD) pw_forward_launch<FNV, T, VECV>(out, x, a, N, C); \
        else pw_backward_launch<FNV, T, VECV>(out, dparams, dy, x, a, g, N, C, accumulate); } while (0)
    switch (fn) {
#define X(E, n) case E: LAUNCH(E, true); break;
        DERF_FOR_EACH_FN(X)
#undef X
    default:
        if (vec) LAUNCH(-1, true);
        else LAUNCH(-1, false);
    }
#undef LAUNCH
}

/* ---- LayerNorm / RMSNorm --------------------------------------------------------------------- */
/* Warp per row. stats: LN [N][2] (mean, 1/std), RMS [N] (1/rms). */
template <typename T>
__global__ void rownorm_forward_kernel(T *__restrict__ y, float *__restrict__ stats, const T *__restrict__ x,
                                       const float *__restrict__ w, const float *__restrict__ b,
                                       int N, int C, float eps, int ln) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= N) return;
    const T *xr = x + (size_t)row * C;
    T *yr = y + (size_t)row * C;
    float mean = 0.f;
    if (ln) {
        float s = 0.f;
        for (int c = lane; c < C; c += 32) s += to_f(xr[c]);
        mean = warp_sum(s) / C;
    }
    float v = 0.f;
    for (int c = lane; c < C; c += 32) { float d = to_f(xr[c]) - mean; v += d * d; }
    const float r = rsqrtf(warp_sum(v) / C + eps);
    for (int c = lane; c < C; c += 32) {
        float o = (to_f(xr[c]) - mean) * r;
        yr[c] = from_f<T>((w ? __ldg(w + c) : 1.f) * o + (b ? __ldg(b + c) : 0.f));
    }
    if (stats && lane == 0) {
        if (ln) { stats[2 * (size_t)row] = mean; stats[2 * (size_t)row + 1] = r; }
        else stats[row] = r;
    }
}

__device__ __forceinline__ void row_stats(const float *stats, int ln, int row, float *m, float *r) {
    *m = ln ? stats[2 * (size_t)row] : 0.f;
    *r = ln ? stats[2 * (size_t)row + 1] : stats[row];
}

/* dx = r (gdy - mean(gdy) - xhat mean(gdy xhat)), gdy = dy w (mean(gdy) dropped for RMS). */
template <typename T>
__global__ void rownorm_dx_kernel(T *__restrict__ dx, const T *__restrict__ dy, const T *__restrict__ x,
                                  const float *__restrict__ w, const float *__restrict__ stats,
                                  int N, int C, int ln, int accumulate) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= N) return;
    const size_t o = (size_t)row * C;
    float m, r;
    row_stats(stats, ln, row, &m, &r);
    float sg = 0.f, sgx = 0.f;
    for (int c = lane; c < C; c += 32) {
        float gd = to_f(dy[o + c]) * (w ? __ldg(w + c) : 1.f), xh = (to_f(x[o + c]) - m) * r;
        sg += gd;
        sgx += gd * xh;
    }
    const float mg = ln ? warp_sum(sg) / C : 0.f, mgx = warp_sum(sgx) / C;
    for (int c = lane; c < C; c += 32) {
        float gd = to_f(dy[o + c]) * (w ? __ldg(w + c) : 1.f), xh = (to_f(x[o + c]) - m) * r;
        float d = r * (gd - mg - xh * mgx);
        if (accumulate) d += to_f(dx[o + c]);
        dx[o + c] = from_f<T>(d);
    }
}

/* Per-chunk channel partials of dweight (dy xhat) and dbias (dy): part[gy][2][C]. */
template <typename T>
__global__ void rownorm_param_kernel(float *__restrict__ part, const T *__restrict__ dy, const T *__restrict__ x,
                                     const float *__restrict__ stats, int N, int C, int rows, int ln) {
    __shared__ float sh[2][TILE_Y][TILE_X];
    const int c = blockIdx.x * TILE_X + threadIdx.x;
    const int r0 = blockIdx.y * rows, r1 = min(N, r0 + rows);
    float pw = 0.f, pb = 0.f;
    if (c < C)
        for (int r = r0 + threadIdx.y; r < r1; r += TILE_Y) {
            float m, rs;
            row_stats(stats, ln, r, &m, &rs);
            float d = to_f(dy[(size_t)r * C + c]);
            pw += d * (to_f(x[(size_t)r * C + c]) - m) * rs;
            pb += d;
        }
    sh[0][threadIdx.y][threadIdx.x] = pw;
    sh[1][threadIdx.y][threadIdx.x] = pb;
    __syncthreads();
    if (threadIdx.y < 2 && c < C) {
        float s = 0.f;
        for (int y = 0; y < TILE_Y; y++) s += sh[threadIdx.y][y][threadIdx.x];
        part[((size_t)blockIdx.y * 2 + threadIdx.y) * C + c] = s;
    }
}

template <typename T>
static void rownorm_forward(const derf_norm_spec *s, T *y, float *stats, const T *x, const float *params, int N, int C) {
    const float *w = s->affine ? params : NULL;
    const float *b = (s->affine && s->bias) ? params + C : NULL;
    rownorm_forward_kernel<T><<<cdiv(N, 8), 256>>>(y, stats, x, w, b, N, C, s->eps, s->kind == DERF_NORM_LAYERNORM);
    CK_LAUNCH();
}

template <typename T>
static void rownorm_backward(const derf_norm_spec *s, T *dx, float *dparams, const T *dy, const T *x,
                             const float *params, const float *stats, int N, int C, int accumulate) {
    const int ln = s->kind == DERF_NORM_LAYERNORM;
    const float *w = s->affine ? params : NULL;
    if (dx) {
        rownorm_dx_kernel<T><<<cdiv(N, 8), 256>>>(dx, dy, x, w, stats, N, C, ln, accumulate);
        CK_LAUNCH();
    }
    if (!dparams || !s->affine) return;
    Tiling t = tiling(N, C, 1);
    float *part = (float *)derf_cu_ws(WS_NORM_PART, sizeof(float) * (size_t)t.gy * 2 * C);
    rownorm_param_kernel<T><<<dim3(t.gx, t.gy), dim3(TILE_X, TILE_Y)>>>(part, dy, x, stats, N, C, t.rows, ln);
    CK_LAUNCH();
    ColDst d = {{dparams, s->bias ? dparams + C : NULL, NULL}};
    col_reduce(d, part, t.gy, 2, C);
}

/* ---- one dtype's entry points (called by norms.cu) ------------------------------------------------ */
template <typename T>
static void norm_forward_t(const derf_norm_spec *s, void *y, float *stats, const void *x, const float *params, int N,
                           int C) {
    if (s->kind != DERF_NORM_POINTWISE) {
        rownorm_forward<T>(s, (T *)y, stats, (const T *)x, params, N, C);
        return;
    }
    PwArgs a = pw_args(s, params, C);
    pw_dispatch<T, true>(s, (T *)y, NULL, NULL, (const T *)x, a, a, N, C, 0);
}

template <typename T>
static void norm_backward_t(const derf_norm_spec *s, void *dx, float *dparams, const void *dy, const void *x,
                            const float *params, const float *stats, int N, int C, int accumulate) {
    if (s->kind != DERF_NORM_POINTWISE) {
        rownorm_backward<T>(s, (T *)dx, dparams, (const T *)dy, (const T *)x, params, stats, N, C, accumulate);
        return;
    }
    PwArgs a = pw_args(s, params, C), g = pw_args(s, dparams, C);
    pw_dispatch<T, false>(s, (T *)dx, dparams, (const T *)dy, (const T *)x, a, g, N, C, accumulate);
}

#define DERF_NORMS_INSTANTIATE(T, SUFFIX)                                                                     \
    void derf_cu_norm_forward_##SUFFIX(const derf_norm_spec *s, void *y, float *stats, const void *x,         \
                                       const float *params, int N, int C) {                                   \
        norm_forward_t<T>(s, y, stats, x, params, N, C);                                                      \
    }                                                                                                         \
    void derf_cu_norm_backward_##SUFFIX(const derf_norm_spec *s, void *dx, float *dparams, const void *dy,    \
                                        const void *x, const float *params, const float *stats, int N, int C, \
                                        int accumulate) {                                                     \
        norm_backward_t<T>(s, dx, dparams, dy, x, params, stats, N, C, accumulate);                           \
    }
#endif
