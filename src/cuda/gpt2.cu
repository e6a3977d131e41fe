/* gpt2.cu: GPT-2 forward, backward and optimizer step on the GPU, op for op the CPU model of
 * src/models/gpt2.c (same tensor table and weight views, gpt2_weights.h) over the ops of derf/cuda.h:
 * activations in fp32 or bf16, fp32 master weights, gradients and AdamW state, and a copy of the
 * weights in the activation dtype for the matrix products. */
#include <math.h>
#include <string.h>
#include <vector>
#include "cuda/block.cuh"
extern "C" {
#include "models/gpt2_weights.h"
}

struct derf_gpt2_cuda {
    derf_gpt2 *host;
    derf_gpt2 view;             /* *host with the device layout's tensor table: weight views of device slabs */
    cu_master w;                /* fp32 params, grads, m, v and the dt copy of the weights */
    cu_block_store blk;         /* the blocks' activations and backward scratch */
    char *emb, *lnf, *logits, *dlogits;
    float *stf;
    int32_t *tok, *tgt;         /* device copies of the last batch */
    std::vector<int32_t> tok_host;
    int B, T, has_targets;
    float dlogits_scale;        /* the loss scale dlogits holds (0: none) */
};

static char *act(derf_gpt2_cuda *g, size_t n) { return (char *)derf_cuda_malloc(n * g->w.es); }
/* the dt copy of a weight given by its fp32 device pointer */
static const void *wd(const derf_gpt2_cuda *g, const float *p) { return derf_cu_master_wd(&g->w, p); }
/* block l's weights (matrices in dt) and gradients */
static cu_block_w block_w(const derf_gpt2_cuda *g, int l) {
    gpt2_block_w b;
    derf_gpt2_block_weights(&g->view, g->w.params, l, &b);
    return cu_block_w{b.ln1, b.ln2, b.attn_b, b.aproj_b, b.fc_b, b.mproj_b,
                      wd(g, b.attn_w), wd(g, b.aproj_w), wd(g, b.fc_w), wd(g, b.mproj_w)};
}
static cu_block_g block_g(const derf_gpt2_cuda *g, int l) {
    gpt2_block_w b;
    derf_gpt2_block_weights(&g->view, g->w.grads, l, &b);
    return cu_block_g{b.ln1, b.ln2, b.attn_w, b.attn_b, b.aproj_w, b.aproj_b, b.fc_w, b.fc_b, b.mproj_w, b.mproj_b};
}

extern "C" derf_gpt2_cuda *derf_gpt2_cuda_new(derf_gpt2 *host, derf_dtype dt, char *err, size_t errlen) {
    if (derf_cuda_init(err, errlen)) return NULL;
    derf_gpt2_cuda *g = new derf_gpt2_cuda();
    const derf_gpt2_config *c = &host->cfg;
    const size_t B = (size_t)host->max_batch, T = (size_t)host->max_T, C = (size_t)c->n_embd;
    const size_t L = (size_t)c->n_layer, NH = (size_t)c->n_head, V = (size_t)c->vocab;
    g->host = host;
    derf_cu_master_alloc(&g->w, &host->params, dt);
    g->view = *host;
    g->view.params = g->w.lay;
    derf_cu_block_store_alloc(&g->blk, &c->norm, (int)L, B, T, C, 4 * C, NH, dt);
    g->emb = c->shared_scale ? act(g, g->blk.btc) : NULL;
    g->lnf = act(g, g->blk.btc);
    g->logits = act(g, B * T * V);
    if (g->blk.bst) g->stf = (float *)derf_cuda_malloc(g->blk.bst * sizeof(float));
    g->dlogits = act(g, B * T * V);
    g->tok = (int32_t *)derf_cuda_malloc(B * T * sizeof(int32_t));
    g->tgt = (int32_t *)derf_cuda_malloc(B * T * sizeof(int32_t));
    g->tok_host.resize(B * T);
    derf_gpt2_cuda_upload(g);
    return g;
}

extern "C" void derf_gpt2_cuda_upload(derf_gpt2_cuda *g) { derf_cu_master_upload(&g->w); }
extern "C" void derf_gpt2_cuda_download(derf_gpt2_cuda *g) { derf_cu_master_download(&g->w); }

extern "C" float derf_gpt2_cuda_forward(derf_gpt2_cuda *g, const int32_t *tokens, const int32_t *targets, int B, int T) {
    derf_gpt2 *m = g->host;
    const derf_gpt2_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int C = c->n_embd, NH = c->n_head, V = c->vocab, BT = B * T;
    const derf_dtype dt = g->w.dt;
    if (B <= 0 || B > m->max_batch || T <= 0 || T > m->max_T) {
        fprintf(stderr, "derf: GPT-2 (GPU) forward with batch %d x %d tokens, built for 1..%d x 1..%d\n", B, T,
                m->max_batch, m->max_T);
        exit(1);
    }
    for (int i = 0; i < BT; i++)
        if (tokens[i] < 0 || tokens[i] >= V || (targets && targets[i] >= V)) {
            fprintf(stderr, "derf: GPT-2 token or target out of range [0, %d) at position %d\n", V, i);
            exit(1);
        }
    memcpy(g->tok_host.data(), tokens, (size_t)BT * sizeof(int32_t));
    derf_cuda_upload(g->tok, tokens, (size_t)BT * sizeof(int32_t));
    if (targets) derf_cuda_upload(g->tgt, targets, (size_t)BT * sizeof(int32_t));
    g->B = B;
    g->T = T;
    g->has_targets = targets != NULL;
    gpt2_top_w w;
    derf_gpt2_top_weights(&g->view, g->w.params, &w);
    const size_t btc = (size_t)BT * C;
    char *x0 = derf_cu_block_res(&g->blk, 0);

    if (w.scale) {
        derf_cuda_embed_forward(g->emb, g->tok, w.wte, w.wpe, B, T, C, dt);          /* emb[B,T,C] */
        derf_cuda_scale_forward(x0, g->emb, w.scale, btc, dt);                       /* x0 = s * emb */
    } else {
        derf_cuda_embed_forward(x0, g->tok, w.wte, w.wpe, B, T, C, dt);
    }
    const cu_block_shape sh = {B, T, C, 4 * C, NH, 1, DERF_GELU_TANH, dt};
    for (int l = 0; l < c->n_layer; l++)
        derf_cu_block_forward(ns, sh, block_w(g, l), derf_cu_block_layer(&g->blk, l), &g->blk, NULL, NULL);
    const char *xL = derf_cu_block_res(&g->blk, c->n_layer);
    derf_cuda_norm_forward(ns, g->lnf, g->stf, xL, w.lnf, BT, C, dt);
    derf_cuda_linear_forward(g->logits, g->lnf, wd(g, w.wte), NULL, BT, C, V, dt);
    /* with targets: the loss and, in the same pass, dlogits (scale 1, overwritten) for the backward */
    g->dlogits_scale = targets ? 1.0f : 0.0f;
    return targets ? derf_cuda_xent_forward_backward(g->dlogits, g->logits, g->tgt, 0.0f, 1.0f, BT, V, dt, 0) : NAN;
}

extern "C" void derf_gpt2_cuda_backward(derf_gpt2_cuda *g, float scale) {
    derf_gpt2 *m = g->host;
    const derf_gpt2_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int B = g->B, T = g->T, C = c->n_embd, NH = c->n_head, V = c->vocab, BT = B * T;
    const derf_dtype dt = g->w.dt;
    const size_t es = g->w.es, btc = (size_t)BT * C;
    cu_block_store *s = &g->blk;
    if (!g->has_targets || B <= 0) {
        fprintf(stderr, "derf: GPT-2 (GPU) backward needs a forward with targets first\n");
        exit(1);
    }
    gpt2_top_w w, dw;
    derf_gpt2_top_weights(&g->view, g->w.params, &w);
    derf_gpt2_top_weights(&g->view, g->w.grads, &dw);

    /* dlogits from the forward; recomputed (overwritten, no memset) only for another loss scale */
    if (scale != g->dlogits_scale) {
        derf_cuda_xent_forward_backward(g->dlogits, g->logits, g->tgt, 0.0f, scale, BT, V, dt, 0);
        g->dlogits_scale = scale;
    }
    derf_cuda_zero(s->dln, btc * es);
    derf_cuda_linear_backward(s->dln, dw.wte, NULL, g->dlogits, g->lnf, wd(g, w.wte), BT, C, V, dt);
    const char *xL = derf_cu_block_res(s, c->n_layer);
    derf_cuda_norm_backward(ns, s->dres, dw.lnf, s->dln, xL, w.lnf, g->stf, BT, C, dt, 0);
    const cu_block_shape sh = {B, T, C, 4 * C, NH, 1, DERF_GELU_TANH, dt};
    for (int l = c->n_layer - 1; l >= 0; l--)
        derf_cu_block_backward(ns, sh, block_w(g, l), block_g(g, l), derf_cu_block_layer(s, l), s, NULL, NULL);
    if (w.scale) derf_cuda_scale_backward(dw.scale, s->dres, g->emb, w.scale, btc, dt);
    derf_cuda_embed_backward(dw.wte, dw.wpe, s->dres, g->tok_host.data(), B, T, C, V, dt);
}

extern "C" void derf_gpt2_cuda_zero_grad(derf_gpt2_cuda *g) { derf_cu_master_zero_grad(&g->w); }

extern "C" void derf_gpt2_cuda_mean_grads(derf_gpt2_cuda *g) {
    derf_cuda_dist_mean_floats(g->w.grads, g->w.lay.total);
}

extern "C" float derf_gpt2_cuda_clip_grad_norm(derf_gpt2_cuda *g, float max_norm) {
    return derf_cu_master_clip(&g->w, max_norm);
}
extern "C" void derf_gpt2_cuda_adamw_step(derf_gpt2_cuda *g, const derf_adamw_cfg *cfg, int step) {
    derf_cu_master_adamw(&g->w, cfg, step);
}

extern "C" void derf_gpt2_cuda_free(derf_gpt2_cuda *g) {
    if (!g) return;
    void *bufs[] = {g->emb, g->lnf, g->logits, g->stf, g->dlogits, g->tok, g->tgt};
    for (void *b : bufs) derf_cuda_free(b);
    derf_cu_block_store_free(&g->blk);
    derf_cu_master_free(&g->w);
    delete g;
}

/* ---- the derf_gpt2_dev hooks: derf_gpt2_forward & co. run here once attached ----------------------- */
static float dev_forward(void *c, const int32_t *tok, const int32_t *tgt, int B, int T) {
    return derf_gpt2_cuda_forward((derf_gpt2_cuda *)c, tok, tgt, B, T);
}
static void dev_backward(void *c, float scale) { derf_gpt2_cuda_backward((derf_gpt2_cuda *)c, scale); }
static void dev_zero_grad(void *c) { derf_gpt2_cuda_zero_grad((derf_gpt2_cuda *)c); }
static void dev_mean_grads(void *c) { derf_gpt2_cuda_mean_grads((derf_gpt2_cuda *)c); }
static float dev_clip(void *c, float max_norm) { return derf_gpt2_cuda_clip_grad_norm((derf_gpt2_cuda *)c, max_norm); }
static void dev_adamw(void *c, const derf_adamw_cfg *cfg, int step) {
    derf_gpt2_cuda_adamw_step((derf_gpt2_cuda *)c, cfg, step);
}
static void dev_to_host(void *c) { derf_gpt2_cuda_download((derf_gpt2_cuda *)c); }
static void dev_to_device(void *c) { derf_gpt2_cuda_upload((derf_gpt2_cuda *)c); }
static void dev_free(void *c) {
    derf_gpt2_cuda *g = (derf_gpt2_cuda *)c;
    derf_gpt2_dev *d = g->host->dev;
    g->host->dev = NULL;
    derf_gpt2_cuda_free(g);
    delete d;
}

extern "C" int derf_gpt2_cuda_attach(derf_gpt2 *m, int bf16, char *err, size_t errlen) {
    if (!m) return derf_cuda_dist_init(derf_cuda_init(err, errlen), err, errlen); /* + NCCL under mpirun */
    if (m->dev) return 0;
    derf_gpt2_cuda *g = derf_gpt2_cuda_new(m, bf16 ? DERF_BF16 : DERF_F32, err, errlen);
    if (!g) return -1;
    derf_gpt2_dev *d = new derf_gpt2_dev();
    d->ctx = g;
    d->forward = dev_forward;
    d->backward = dev_backward;
    d->zero_grad = dev_zero_grad;
    d->mean_grads = dev_mean_grads;
    d->clip_grad_norm = dev_clip;
    d->adamw_step = dev_adamw;
    d->to_host = dev_to_host;
    d->to_device = dev_to_device;
    d->free = dev_free;
    m->dev = d;
    fprintf(stderr, "[derf] GPT-2 on %s, %s activations, fp32 master weights\n", derf_cuda_device_name(),
            bf16 ? "bf16" : "fp32");
    return 0;
}
