/* vit.cu: the ViT on the GPU, op for op the CPU model of src/models/vit.c (same tensor table and
 * weight views, vit_weights.h) over the ops of derf/cuda.h, plus the ViT's own small kernels: patch
 * im2col (the patch embedding is then one linear over the unfolded patches), class token + position
 * embedding and its backward, mean / class-token pooling and its backward, drop-path row scaling,
 * and the EMA update. Activations in fp32 or bf16; fp32 master weights, gradients, AdamW m, v and EMA;
 * a copy of the weights in the activation dtype for the matrix products. Every reduction runs in a
 * fixed order (no float atomics): bitwise reproducible run to run. */
#include <math.h>
#include <string.h>
#include <utility>
#include <vector>
#include "cuda/block.cuh"
extern "C" {
#include "models/vit_weights.h"
}

/* ---- ViT kernels --------------------------------------------------------------------------------- */
/* one thread per element of cols[B*NP, K]; K = (ci, ky, kx), rows = (b, py, px) */
template <typename T>
__global__ void patch_cols_kernel(T *cols, const float *img, int B, int Cin, int H, int W, int P) {
    const int GW = W / P, NP = (H / P) * GW, K = Cin * P * P;
    const size_t n = (size_t)B * NP * K;
    GRID_STRIDE(i, n) {
        const size_t row = i / K;
        const int k = (int)(i % K), b = (int)(row / NP), pi = (int)(row % NP);
        const int ci = k / (P * P), ky = (k / P) % P, kx = k % P, py = pi / GW, px = pi % GW;
        cols[i] = from_f<T>(img[(((size_t)b * Cin + ci) * H + (size_t)py * P + ky) * W + (size_t)px * P + kx]);
    }
}

template <typename T>
__global__ void tokens_forward_kernel(T *x0, const T *pe, const float *cls, const float *pos, int B, int T_, int D) {
    const size_t n = (size_t)B * T_ * D;
    GRID_STRIDE(i, n) {
        const int d = (int)(i % D), t = (int)((i / D) % T_);
        const size_t b = i / ((size_t)T_ * D);
        const float v = t == 0 ? cls[d] : to_f(pe[(b * (T_ - 1) + (t - 1)) * D + d]);
        x0[i] = from_f<T>(v + pos[(size_t)t * D + d]);
    }
}

/* one thread per (t, d): sums over b in order (as derf_add_pos_backward and the CPU class-token loop) */
template <typename T>
__global__ void tokens_backward_kernel(float *dpos, float *dcls, T *dpe, const T *dx0, int B, int T_, int D) {
    const size_t n = (size_t)T_ * D;
    GRID_STRIDE(i, n) {
        const int d = (int)(i % D), t = (int)(i / D);
        float s = 0.f;
        for (int b = 0; b < B; b++) {
            const T g = dx0[((size_t)b * T_ + t) * D + d];
            s += to_f(g);
            if (t > 0) dpe[((size_t)b * (T_ - 1) + (t - 1)) * D + d] = g;
        }
        if (dpos) dpos[i] += s;
        if (t == 0 && dcls) dcls[d] += s;
    }
}

/* one thread per (b, d): the sum over tokens in order, then * 1/(T-1) (derf_mean_pool_forward) */
template <typename T> __global__ void pool_forward_kernel(T *pooled, const T *x, int B, int T_, int D, int avg) {
    const size_t n = (size_t)B * D;
    GRID_STRIDE(i, n) {
        const size_t b = i / D;
        const int d = (int)(i % D);
        const T *xb = x + b * T_ * D + d;
        if (avg) {
            const float inv = 1.0f / (float)(T_ - 1);
            float s = 0.f;
            for (int t = 1; t < T_; t++) s += to_f(xb[(size_t)t * D]);
            pooled[i] = from_f<T>(s * inv);
        } else {
            pooled[i] = xb[0];
        }
    }
}

template <typename T> __global__ void pool_backward_kernel(T *dx, const T *dpooled, int B, int T_, int D, int avg) {
    const size_t n = (size_t)B * T_ * D;
    GRID_STRIDE(i, n) {
        const int d = (int)(i % D), t = (int)((i / D) % T_);
        const size_t b = i / ((size_t)T_ * D);
        const float g = to_f(dpooled[b * D + d]);
        float v;
        if (avg) v = t == 0 ? 0.f : g * (1.0f / (float)(T_ - 1));
        else v = t == 0 ? g : 0.f;
        dx[i] = from_f<T>(v);
    }
}

template <typename T> __global__ void row_scale_kernel(T *out, const T *in, const float *keep, size_t n, size_t rest) {
    GRID_STRIDE(i, n) out[i] = from_f<T>(to_f(in[i]) * keep[i / rest]);
}

__global__ void ema_kernel(float *ema, const float *p, size_t n, float decay) {
    GRID_STRIDE(i, n) ema[i] = decay * ema[i] + (1.f - decay) * p[i];
}

extern "C" void derf_cuda_patch_cols(void *cols, const float *img, int B, int Cin, int H, int W, int P, derf_dtype dt) {
    derf_cu_require();
    const size_t n = (size_t)B * (H / P) * (W / P) * Cin * P * P;
    if (!n) return;
    DERF_DISPATCH(dt, E, patch_cols_kernel<E><<<grid_for(n, 256), 256>>>((E *)cols, img, B, Cin, H, W, P));
    CK_LAUNCH();
}

extern "C" void derf_cuda_vit_tokens_forward(void *x0, const void *pe, const float *cls, const float *pos, int B,
                                             int T, int D, derf_dtype dt) {
    derf_cu_require();
    const size_t n = (size_t)B * T * D;
    if (!n) return;
    DERF_DISPATCH(dt, E, tokens_forward_kernel<E><<<grid_for(n, 256), 256>>>((E *)x0, (const E *)pe, cls, pos, B, T, D));
    CK_LAUNCH();
}

extern "C" void derf_cuda_vit_tokens_backward(float *dpos, float *dcls, void *dpe, const void *dx0, int B, int T,
                                              int D, derf_dtype dt) {
    derf_cu_require();
    const size_t n = (size_t)T * D;
    if (!n || B <= 0) return;
    DERF_DISPATCH(dt, E, tokens_backward_kernel<E><<<cdiv(n, 128), 128>>>(dpos, dcls, (E *)dpe, (const E *)dx0, B, T, D));
    CK_LAUNCH();
}

extern "C" void derf_cuda_pool_forward(void *pooled, const void *x, int B, int T, int D, int avg, derf_dtype dt) {
    derf_cu_require();
    const size_t n = (size_t)B * D;
    if (!n) return;
    DERF_DISPATCH(dt, E, pool_forward_kernel<E><<<cdiv(n, 128), 128>>>((E *)pooled, (const E *)x, B, T, D, avg));
    CK_LAUNCH();
}

extern "C" void derf_cuda_pool_backward(void *dx, const void *dpooled, int B, int T, int D, int avg, derf_dtype dt) {
    derf_cu_require();
    const size_t n = (size_t)B * T * D;
    if (!n) return;
    DERF_DISPATCH(dt, E, pool_backward_kernel<E><<<grid_for(n, 256), 256>>>((E *)dx, (const E *)dpooled, B, T, D, avg));
    CK_LAUNCH();
}

extern "C" void derf_cuda_row_scale(void *out, const void *in, const float *keep, int B, size_t rest, derf_dtype dt) {
    derf_cu_require();
    const size_t n = (size_t)B * rest;
    if (!n) return;
    DERF_DISPATCH(dt, E, row_scale_kernel<E><<<grid_for(n, 256), 256>>>((E *)out, (const E *)in, keep, n, rest));
    CK_LAUNCH();
}

extern "C" void derf_cuda_ema_update(float *ema, const float *params, size_t n, float decay) {
    derf_cu_require();
    if (!n) return;
    ema_kernel<<<grid_for(n, 256), 256>>>(ema, params, n, decay);
    CK_LAUNCH();
}

/* ---- the model ------------------------------------------------------------------------------------- */
struct derf_vit_cuda {
    derf_vit *host;
    derf_vit view;              /* *host with the device layout's tensor table: weight views of device slabs */
    cu_master w;                /* fp32 params, grads, m, v and the dt copy of the weights */
    float *ema_host, *ema;      /* the trainer's EMA slab and its device copy (NULL: no EMA) */
    float *img;                 /* [B, chans, img, img] */
    cu_block_store blk;         /* the blocks' activations and backward scratch */
    char *cols, *pe, *pooled, *fnorm, *logits, *dpe, *dfnorm, *dpooled, *dlogits;
    float *fst;
    float *keep;                /* [2L][max_batch] drop-path scales of the last forward */
    float *outf;                /* fp32 staging of logits / features / dlogits (bf16 runs) */
    std::vector<float> keep_h;  /* host copy, [2L][B] of the last forward */
    std::vector<char> dropped;  /* [2L]: some scale of that branch is not 1 */
    int B;
};

static char *act(derf_vit_cuda *g, size_t n) { return (char *)derf_cuda_malloc(n * g->w.es); }
static const void *wd(const derf_vit_cuda *g, const float *p) { return derf_cu_master_wd(&g->w, p); }
/* block l's weights (matrices in dt) and gradients */
static cu_block_w block_w(const derf_vit_cuda *g, int l) {
    vit_block_w b;
    derf_vit_block_weights(&g->view, g->w.params, l, &b);
    return cu_block_w{b.n1, b.n2, b.qkv_b, b.proj_b, b.fc1_b, b.fc2_b,
                      wd(g, b.qkv_w), wd(g, b.proj_w), wd(g, b.fc1_w), wd(g, b.fc2_w)};
}
static cu_block_g block_g(const derf_vit_cuda *g, int l) {
    vit_block_w b;
    derf_vit_block_weights(&g->view, g->w.grads, l, &b);
    return cu_block_g{b.n1, b.n2, b.qkv_w, b.qkv_b, b.proj_w, b.proj_b, b.fc1_w, b.fc1_b, b.fc2_w, b.fc2_b};
}
/* the drop-path scales of branch j (2l: attention, 2l+1: MLP of block l) on the device, NULL if all 1 */
static const float *keep_of(const derf_vit_cuda *g, int j) {
    return g->dropped[j] ? g->keep + (size_t)j * g->B : NULL;
}

extern "C" derf_vit_cuda *derf_vit_cuda_new(derf_vit *host, derf_dtype dt, float *ema, char *err, size_t errlen) {
    if (derf_cuda_init(err, errlen)) return NULL;
    derf_vit_cuda *g = new derf_vit_cuda();
    const derf_vit_config *c = &host->cfg;
    const size_t B = (size_t)host->max_batch, T = (size_t)host->T, NP = T - 1, D = (size_t)c->dim;
    const size_t H = (size_t)c->mlp_ratio * D, L = (size_t)c->depth, NH = (size_t)c->heads, V = (size_t)c->classes;
    const size_t K = (size_t)c->chans * c->patch * c->patch;
    g->host = host;
    derf_cu_master_alloc(&g->w, &host->params, dt);
    g->view = *host;
    g->view.params = g->w.lay;
    const size_t n = g->w.lay.total;
    g->ema_host = ema;
    g->ema = ema ? (float *)derf_cuda_malloc(n * sizeof(float)) : NULL;
    derf_cu_block_store_alloc(&g->blk, &c->norm, (int)L, B, T, D, H, NH, dt);
    g->img = (float *)derf_cuda_malloc(B * c->chans * c->img * c->img * sizeof(float));
    g->cols = act(g, B * NP * K);
    g->pe = act(g, B * NP * D);
    g->pooled = act(g, B * D);
    g->fnorm = act(g, B * D);
    g->logits = act(g, B * V);
    const size_t fs = derf_norm_stats_count(&c->norm, (int)B);
    if (fs) g->fst = (float *)derf_cuda_malloc(fs * sizeof(float));
    g->dpe = act(g, B * NP * D);
    g->dfnorm = act(g, B * D);
    g->dpooled = act(g, B * D);
    g->dlogits = act(g, B * V);
    g->keep = (float *)derf_cuda_malloc(2 * L * B * sizeof(float));
    g->outf = (float *)derf_cuda_malloc(B * (V + D) * sizeof(float));
    g->keep_h.assign(2 * L * B, 1.0f);
    g->dropped.assign(2 * L, 0);
    derf_vit_cuda_upload(g);
    return g;
}

extern "C" void derf_vit_cuda_upload(derf_vit_cuda *g) {
    derf_cu_master_upload(&g->w);
    if (g->ema) derf_cu_master_put(&g->w, g->ema, g->ema_host);
}

extern "C" void derf_vit_cuda_download(derf_vit_cuda *g) {
    derf_cu_master_download(&g->w);
    if (g->ema) derf_cu_master_get(&g->w, g->ema_host, g->ema);
}

/* the model's sizes for a batch of B: tokens T = 1 + NP patches, width D, MLP H, heads NH, classes V,
 * depth L, flattened patch K, and the blocks' shape */
struct vit_dims {
    int T, NP, D, H, NH, V, L, K;
    cu_block_shape sh;
};
static vit_dims dims_of(const derf_vit_cuda *g, int B) {
    const derf_vit_config *c = &g->host->cfg;
    vit_dims d;
    d.T = g->host->T;
    d.NP = d.T - 1;
    d.D = c->dim;
    d.H = c->mlp_ratio * c->dim;
    d.NH = c->heads;
    d.V = c->classes;
    d.L = c->depth;
    d.K = c->chans * c->patch * c->patch;
    d.sh = cu_block_shape{B, d.T, d.D, d.H, d.NH, 0, c->gelu, g->w.dt};
    return d;
}

/* device rows (dt) -> host fp32 */
static void to_host_f32(derf_vit_cuda *g, float *dst, const void *src, size_t n) {
    if (g->w.dt == DERF_F32) {
        derf_cuda_download(dst, src, n * sizeof(float));
    } else {
        derf_cuda_convert(g->outf, DERF_F32, src, g->w.dt, n);
        derf_cuda_download(dst, g->outf, n * sizeof(float));
    }
}

extern "C" void derf_vit_cuda_forward(derf_vit_cuda *g, const float *images, int B, int train, derf_rng *rng) {
    derf_vit *m = g->host;
    const derf_vit_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const vit_dims d = dims_of(g, B);
    const int T = d.T, D = d.D, L = d.L;
    const derf_dtype dt = g->w.dt;
    if (B <= 0 || B > m->max_batch) {
        fprintf(stderr, "derf: ViT (GPU) forward with batch %d, built for 1..%d\n", B, m->max_batch);
        exit(1);
    }
    g->B = B;
    /* drop path: the CPU model's draws, in its order, so both devices drop the same samples */
    derf_vit_drop_path_draw(m, g->keep_h.data(), B, train, rng);
    int any = 0;
    for (int j = 0; j < 2 * L; j++) {
        char dr = 0;
        for (int b = 0; b < B; b++) dr |= g->keep_h[(size_t)j * B + b] != 1.0f;
        g->dropped[j] = dr;
        any |= dr;
    }
    if (any) derf_cuda_upload(g->keep, g->keep_h.data(), (size_t)2 * L * B * sizeof(float));
    derf_cuda_upload(g->img, images, (size_t)B * c->chans * c->img * c->img * sizeof(float));
    vit_top_w w;
    derf_vit_top_weights(&g->view, g->w.params, &w);

    /* patch embedding: images -> cols[B*NP,K] -> pe[B*NP,D]; x0 = [cls ; pe] + pos */
    derf_cuda_patch_cols(g->cols, g->img, B, c->chans, c->img, c->img, c->patch, dt);
    derf_cuda_linear_forward(g->pe, g->cols, wd(g, w.pe_w), w.pe_b, B * d.NP, d.K, D, dt);
    derf_cuda_vit_tokens_forward(derf_cu_block_res(&g->blk, 0), g->pe, w.cls, w.pos, B, T, D, dt);
    for (int l = 0; l < L; l++)
        derf_cu_block_forward(ns, d.sh, block_w(g, l), derf_cu_block_layer(&g->blk, l), &g->blk, keep_of(g, 2 * l),
                              keep_of(g, 2 * l + 1));
    const char *xL = derf_cu_block_res(&g->blk, L);
    derf_cuda_pool_forward(g->pooled, xL, B, T, D, c->pool == DERF_POOL_AVG, dt);
    derf_cuda_norm_forward(ns, g->fnorm, g->fst, g->pooled, w.fnorm, B, D, dt);
    derf_cuda_linear_forward(g->logits, g->fnorm, wd(g, w.head_w), w.head_b, B, D, d.V, dt);
    to_host_f32(g, m->logits, g->logits, (size_t)B * d.V);
    to_host_f32(g, m->features, g->fnorm, (size_t)B * D);
}

extern "C" void derf_vit_cuda_backward(derf_vit_cuda *g, const float *dlogits, int B) {
    derf_vit *m = g->host;
    const derf_vit_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const vit_dims d = dims_of(g, B);
    const int T = d.T, D = d.D, V = d.V;
    const derf_dtype dt = g->w.dt;
    if (B <= 0 || B != g->B) {
        fprintf(stderr, "derf: ViT (GPU) backward with batch %d after a forward of %d\n", B, g->B);
        exit(1);
    }
    vit_top_w w, dw;
    derf_vit_top_weights(&g->view, g->w.params, &w);
    derf_vit_top_weights(&g->view, g->w.grads, &dw);
    if (dt == DERF_F32) {
        derf_cuda_upload(g->dlogits, dlogits, (size_t)B * V * sizeof(float));
    } else {
        derf_cuda_upload(g->outf, dlogits, (size_t)B * V * sizeof(float));
        derf_cuda_convert(g->dlogits, dt, g->outf, DERF_F32, (size_t)B * V);
    }
    /* head, final norm, pooling: dlogits[B,V] -> dfnorm[B,D] -> dpooled[B,D] -> dres[B,T,D] */
    derf_cuda_zero(g->dfnorm, (size_t)B * D * g->w.es);
    derf_cuda_linear_backward(g->dfnorm, dw.head_w, dw.head_b, g->dlogits, g->fnorm, wd(g, w.head_w), B, D, V, dt);
    derf_cuda_norm_backward(ns, g->dpooled, dw.fnorm, g->dfnorm, g->pooled, w.fnorm, g->fst, B, D, dt, 0);
    derf_cuda_pool_backward(g->blk.dres, g->dpooled, B, T, D, c->pool == DERF_POOL_AVG, dt);
    for (int l = d.L - 1; l >= 0; l--)
        derf_cu_block_backward(ns, d.sh, block_w(g, l), block_g(g, l), derf_cu_block_layer(&g->blk, l), &g->blk,
                               keep_of(g, 2 * l), keep_of(g, 2 * l + 1));
    /* x0 = [cls ; pe] + pos: dpos, dcls, dpe[B*NP,D]; then the patch embedding's weight gradients */
    derf_cuda_vit_tokens_backward(dw.pos, dw.cls, g->dpe, g->blk.dres, B, T, D, dt);
    derf_cuda_linear_backward(NULL, dw.pe_w, dw.pe_b, g->dpe, g->cols, NULL, B * d.NP, d.K, D, dt);
}

extern "C" void derf_vit_cuda_free(derf_vit_cuda *g) {
    if (!g) return;
    void *bufs[] = {g->ema, g->img, g->cols, g->pe, g->pooled, g->fnorm, g->logits, g->fst, g->dpe, g->dfnorm,
                    g->dpooled, g->dlogits, g->keep, g->outf};
    for (void *b : bufs) derf_cuda_free(b);
    derf_cu_block_store_free(&g->blk);
    derf_cu_master_free(&g->w);
    delete g;
}

/* ---- the derf_vit_dev hooks: derf_vit_forward & co. run here once attached ------------------------- */
static void dev_forward(void *c, const float *img, int B, int train, derf_rng *rng) {
    derf_vit_cuda_forward((derf_vit_cuda *)c, img, B, train, rng);
}
static void dev_backward(void *c, const float *dlogits, int B) { derf_vit_cuda_backward((derf_vit_cuda *)c, dlogits, B); }
static void dev_zero_grad(void *c) { derf_cu_master_zero_grad(&((derf_vit_cuda *)c)->w); }
static float dev_clip(void *c, float max_norm) { return derf_cu_master_clip(&((derf_vit_cuda *)c)->w, max_norm); }
static void dev_adamw(void *c, const derf_adamw_cfg *cfg, int step) {
    derf_cu_master_adamw(&((derf_vit_cuda *)c)->w, cfg, step);
}
static void dev_ema_update(void *c, float decay) {
    derf_vit_cuda *g = (derf_vit_cuda *)c;
    if (g->ema) derf_cuda_ema_update(g->ema, g->w.params, g->w.lay.total, decay);
}
static void dev_swap_ema(void *c) {
    derf_vit_cuda *g = (derf_vit_cuda *)c;
    if (!g->ema) return;
    std::swap(g->w.params, g->ema);
    derf_cu_master_refresh(&g->w);
}
static void dev_to_host(void *c) { derf_vit_cuda_download((derf_vit_cuda *)c); }
static void dev_to_device(void *c) { derf_vit_cuda_upload((derf_vit_cuda *)c); }
static void dev_free(void *c) {
    derf_vit_cuda *g = (derf_vit_cuda *)c;
    derf_vit_dev *d = g->host->dev;
    g->host->dev = NULL;
    derf_vit_cuda_free(g);
    delete d;
}

extern "C" int derf_vit_cuda_attach(derf_vit *m, int bf16, float *ema, char *err, size_t errlen) {
    if (!m) return derf_cuda_init(err, errlen);
    if (m->dev) return 0;
    derf_vit_cuda *g = derf_vit_cuda_new(m, bf16 ? DERF_BF16 : DERF_F32, ema, err, errlen);
    if (!g) return -1;
    derf_vit_dev *d = new derf_vit_dev();
    d->ctx = g;
    d->forward = dev_forward;
    d->backward = dev_backward;
    d->zero_grad = dev_zero_grad;
    d->clip_grad_norm = dev_clip;
    d->adamw_step = dev_adamw;
    d->ema_update = dev_ema_update;
    d->swap_ema = dev_swap_ema;
    d->to_host = dev_to_host;
    d->to_device = dev_to_device;
    d->free = dev_free;
    m->dev = d;
    fprintf(stderr, "[derf] ViT on %s, %s activations, fp32 master weights\n", derf_cuda_device_name(),
            bf16 ? "bf16" : "fp32");
    return 0;
}
