/* gpt2.cu: GPT-2 forward, backward and optimizer step on the GPU, op for op the CPU model of
 * src/models/gpt2.c (same tensor table and weight views, gpt2_weights.h) over the ops of derf/cuda.h:
 * activations in fp32 or bf16, fp32 master weights, gradients and AdamW state, and a copy of the
 * weights in the activation dtype for the matrix products. */
#include <math.h>
#include <string.h>
#include <vector>
#include "cuda/common.cuh"
extern "C" {
#include "models/gpt2_weights.h"
}

struct derf_gpt2_cuda {
    derf_gpt2 *host;
    derf_dtype dt;
    size_t es;                  /* bytes per activation element */
    float *params, *grads, *m, *v;
    char *wdt;                  /* weights in dt (== params when dt is fp32) */
    /* activations, per layer l at [l * slice] */
    char *emb, *res, *xmid, *ln1, *qkv, *att, *atty, *ln2, *fch, *fcg, *lnf, *logits;
    float *st1, *st2, *stf;
    char *branch, *dres, *dln, *dqkv, *datty, *dfcg, *dfch, *dlogits;
    int32_t *tok, *tgt;         /* device copies of the last batch */
    std::vector<int32_t> tok_host;
    size_t btc, bth, batt, bst; /* per-layer slice sizes (elements) at the maximum shape */
    int B, T, has_targets;
};

static char *act(derf_gpt2_cuda *g, size_t n) { return (char *)derf_cuda_malloc(n * g->es); }
/* the dt copy of a weight given by its fp32 device pointer */
static const void *wd(const derf_gpt2_cuda *g, const float *p) {
    return p ? g->wdt + (size_t)(p - g->params) * g->es : NULL;
}
static char *at(const derf_gpt2_cuda *g, char *base, size_t slice, int l) { return base + (size_t)l * slice * g->es; }
static float *atf(float *base, size_t slice, int l) { return base ? base + (size_t)l * slice : NULL; }

extern "C" derf_gpt2_cuda *derf_gpt2_cuda_new(derf_gpt2 *host, derf_dtype dt, char *err, size_t errlen) {
    if (derf_cuda_init(err, errlen)) return NULL;
    derf_gpt2_cuda *g = new derf_gpt2_cuda();
    const derf_gpt2_config *c = &host->cfg;
    const size_t B = (size_t)host->max_batch, T = (size_t)host->max_T, C = (size_t)c->n_embd;
    const size_t L = (size_t)c->n_layer, NH = (size_t)c->n_head, V = (size_t)c->vocab, n = host->params.total;
    g->host = host;
    g->dt = dt;
    g->es = derf_dtype_size(dt);
    g->params = (float *)derf_cuda_malloc(n * sizeof(float));
    g->grads = (float *)derf_cuda_malloc(n * sizeof(float));
    g->m = (float *)derf_cuda_malloc(n * sizeof(float));
    g->v = (float *)derf_cuda_malloc(n * sizeof(float));
    g->wdt = dt == DERF_F32 ? (char *)g->params : (char *)derf_cuda_malloc(n * g->es);
    g->btc = B * T * C;
    g->bth = B * T * 4 * C;
    g->batt = B * NH * T * T;
    g->bst = derf_norm_stats_count(&c->norm, (int)(B * T));
    g->emb = c->shared_scale ? act(g, g->btc) : NULL;
    g->res = act(g, (L + 1) * g->btc);
    g->xmid = act(g, L * g->btc);
    g->ln1 = act(g, L * g->btc);
    g->qkv = act(g, L * 3 * g->btc);
    g->att = act(g, L * g->batt);
    g->atty = act(g, L * g->btc);
    g->ln2 = act(g, L * g->btc);
    g->fch = act(g, L * g->bth);
    g->fcg = act(g, L * g->bth);
    g->lnf = act(g, g->btc);
    g->logits = act(g, B * T * V);
    if (g->bst) {
        g->st1 = (float *)derf_cuda_malloc(L * g->bst * sizeof(float));
        g->st2 = (float *)derf_cuda_malloc(L * g->bst * sizeof(float));
        g->stf = (float *)derf_cuda_malloc(g->bst * sizeof(float));
    }
    g->branch = act(g, g->btc);
    g->dres = act(g, g->btc);
    g->dln = act(g, g->btc);
    g->dqkv = act(g, 3 * g->btc);
    g->datty = act(g, g->btc);
    g->dfcg = act(g, g->bth);
    g->dfch = act(g, g->bth);
    g->dlogits = act(g, B * T * V);
    g->tok = (int32_t *)derf_cuda_malloc(B * T * sizeof(int32_t));
    g->tgt = (int32_t *)derf_cuda_malloc(B * T * sizeof(int32_t));
    g->tok_host.resize(B * T);
    derf_gpt2_cuda_upload(g);
    return g;
}

extern "C" void derf_gpt2_cuda_upload(derf_gpt2_cuda *g) {
    const derf_params *p = &g->host->params;
    const size_t b = p->total * sizeof(float);
    derf_cuda_upload(g->params, p->params, b);
    derf_cuda_upload(g->m, p->m, b);
    derf_cuda_upload(g->v, p->v, b);
    if (g->dt != DERF_F32) derf_cuda_convert(g->wdt, g->dt, g->params, DERF_F32, p->total);
}

extern "C" void derf_gpt2_cuda_download(derf_gpt2_cuda *g) {
    derf_params *p = &g->host->params;
    const size_t b = p->total * sizeof(float);
    derf_cuda_download(p->params, g->params, b);
    derf_cuda_download(p->grads, g->grads, b);
    derf_cuda_download(p->m, g->m, b);
    derf_cuda_download(p->v, g->v, b);
}

extern "C" float derf_gpt2_cuda_forward(derf_gpt2_cuda *g, const int32_t *tokens, const int32_t *targets, int B, int T) {
    derf_gpt2 *m = g->host;
    const derf_gpt2_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int C = c->n_embd, H = 4 * C, NH = c->n_head, V = c->vocab, BT = B * T;
    const derf_dtype dt = g->dt;
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
    derf_gpt2_top_weights(m, g->params, &w);
    const size_t btc = (size_t)BT * C, bth = (size_t)BT * H;

    if (w.scale) {
        derf_cuda_embed_forward(g->emb, g->tok, w.wte, w.wpe, B, T, C, dt);          /* emb[B,T,C] */
        derf_cuda_scale_forward(g->res, g->emb, w.scale, btc, dt);                   /* x0 = s * emb */
    } else {
        derf_cuda_embed_forward(g->res, g->tok, w.wte, w.wpe, B, T, C, dt);
    }
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_block_w bw;
        derf_gpt2_block_weights(m, g->params, l, &bw);
        char *x = at(g, g->res, g->btc, l), *xout = at(g, g->res, g->btc, l + 1), *xmid = at(g, g->xmid, g->btc, l);
        char *ln1 = at(g, g->ln1, g->btc, l), *qkv = at(g, g->qkv, 3 * g->btc, l), *att = at(g, g->att, g->batt, l);
        char *atty = at(g, g->atty, g->btc, l), *ln2 = at(g, g->ln2, g->btc, l);
        char *fch = at(g, g->fch, g->bth, l), *fcg = at(g, g->fcg, g->bth, l);
        float *st1 = atf(g->st1, g->bst, l), *st2 = atf(g->st2, g->bst, l);
        derf_cuda_norm_forward(ns, ln1, st1, x, bw.ln1, BT, C, dt);
        derf_cuda_linear_forward(qkv, ln1, wd(g, bw.attn_w), bw.attn_b, BT, C, 3 * C, dt);
        derf_cuda_attention_forward(atty, att, qkv, B, T, C, NH, 1, dt);
        derf_cuda_linear_forward(g->branch, atty, wd(g, bw.aproj_w), bw.aproj_b, BT, C, C, dt);
        derf_cuda_residual_forward(xmid, x, g->branch, btc, dt);
        derf_cuda_norm_forward(ns, ln2, st2, xmid, bw.ln2, BT, C, dt);
        derf_cuda_linear_forward(fch, ln2, wd(g, bw.fc_w), bw.fc_b, BT, C, H, dt);
        derf_cuda_gelu_forward(fcg, fch, bth, DERF_GELU_TANH, dt);
        derf_cuda_linear_forward(g->branch, fcg, wd(g, bw.mproj_w), bw.mproj_b, BT, H, C, dt);
        derf_cuda_residual_forward(xout, xmid, g->branch, btc, dt);
    }
    const char *xL = at(g, g->res, g->btc, c->n_layer);
    derf_cuda_norm_forward(ns, g->lnf, g->stf, xL, w.lnf, BT, C, dt);
    derf_cuda_linear_forward(g->logits, g->lnf, wd(g, w.wte), NULL, BT, C, V, dt);
    return targets ? derf_cuda_xent_forward_backward(NULL, g->logits, g->tgt, 0.0f, 1.0f, BT, V, dt) : NAN;
}

extern "C" void derf_gpt2_cuda_backward(derf_gpt2_cuda *g, float scale) {
    derf_gpt2 *m = g->host;
    const derf_gpt2_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int B = g->B, T = g->T, C = c->n_embd, H = 4 * C, NH = c->n_head, V = c->vocab, BT = B * T;
    const derf_dtype dt = g->dt;
    const size_t es = g->es, btc = (size_t)BT * C, bth = (size_t)BT * H;
    if (!g->has_targets || B <= 0) {
        fprintf(stderr, "derf: GPT-2 (GPU) backward needs a forward with targets first\n");
        exit(1);
    }
    gpt2_top_w w, dw;
    derf_gpt2_top_weights(m, g->params, &w);
    derf_gpt2_top_weights(m, g->grads, &dw);

    derf_cuda_zero(g->dlogits, (size_t)BT * V * es);
    derf_cuda_xent_forward_backward(g->dlogits, g->logits, g->tgt, 0.0f, scale, BT, V, dt);
    derf_cuda_zero(g->dln, btc * es);
    derf_cuda_linear_backward(g->dln, dw.wte, NULL, g->dlogits, g->lnf, wd(g, w.wte), BT, C, V, dt);
    const char *xL = at(g, g->res, g->btc, c->n_layer);
    derf_cuda_norm_backward(ns, g->dres, dw.lnf, g->dln, xL, w.lnf, g->stf, BT, C, dt, 0);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        gpt2_block_w bw, bg;
        derf_gpt2_block_weights(m, g->params, l, &bw);
        derf_gpt2_block_weights(m, g->grads, l, &bg);
        char *x = at(g, g->res, g->btc, l), *xmid = at(g, g->xmid, g->btc, l);
        char *ln1 = at(g, g->ln1, g->btc, l), *qkv = at(g, g->qkv, 3 * g->btc, l), *att = at(g, g->att, g->batt, l);
        char *atty = at(g, g->atty, g->btc, l), *ln2 = at(g, g->ln2, g->btc, l);
        char *fch = at(g, g->fch, g->bth, l), *fcg = at(g, g->fcg, g->bth, l);
        float *st1 = atf(g->st1, g->bst, l), *st2 = atf(g->st2, g->bst, l);
        derf_cuda_zero(g->dfcg, bth * es);
        derf_cuda_linear_backward(g->dfcg, bg.mproj_w, bg.mproj_b, g->dres, fcg, wd(g, bw.mproj_w), BT, H, C, dt);
        derf_cuda_zero(g->dfch, bth * es);
        derf_cuda_gelu_backward(g->dfch, g->dfcg, fch, bth, DERF_GELU_TANH, dt);
        derf_cuda_zero(g->dln, btc * es);
        derf_cuda_linear_backward(g->dln, bg.fc_w, bg.fc_b, g->dfch, ln2, wd(g, bw.fc_w), BT, C, H, dt);
        derf_cuda_norm_backward(ns, g->dres, bg.ln2, g->dln, xmid, bw.ln2, st2, BT, C, dt, 1);
        derf_cuda_zero(g->datty, btc * es);
        derf_cuda_linear_backward(g->datty, bg.aproj_w, bg.aproj_b, g->dres, atty, wd(g, bw.aproj_w), BT, C, C, dt);
        derf_cuda_zero(g->dqkv, 3 * btc * es);
        derf_cuda_attention_backward(g->dqkv, g->datty, qkv, att, B, T, C, NH, 1, dt);
        derf_cuda_zero(g->dln, btc * es);
        derf_cuda_linear_backward(g->dln, bg.attn_w, bg.attn_b, g->dqkv, ln1, wd(g, bw.attn_w), BT, C, 3 * C, dt);
        derf_cuda_norm_backward(ns, g->dres, bg.ln1, g->dln, x, bw.ln1, st1, BT, C, dt, 1);
    }
    if (w.scale) derf_cuda_scale_backward(dw.scale, g->dres, g->emb, w.scale, btc, dt);
    derf_cuda_embed_backward(dw.wte, dw.wpe, g->dres, g->tok_host.data(), B, T, C, V, dt);
}

extern "C" void derf_gpt2_cuda_zero_grad(derf_gpt2_cuda *g) {
    derf_cuda_zero(g->grads, g->host->params.total * sizeof(float));
}

extern "C" void derf_gpt2_cuda_mean_grads(derf_gpt2_cuda *g) {
    derf_cuda_dist_mean_floats(g->grads, g->host->params.total);
}

extern "C" float derf_gpt2_cuda_clip_grad_norm(derf_gpt2_cuda *g, float max_norm) {
    return derf_cuda_clip_grad_norm(g->grads, g->host->params.total, max_norm);
}

extern "C" void derf_gpt2_cuda_adamw_step(derf_gpt2_cuda *g, const derf_adamw_cfg *cfg, int step) {
    derf_cuda_adamw_step(&g->host->params, g->params, g->grads, g->m, g->v, cfg, step);
    if (g->dt != DERF_F32) derf_cuda_convert(g->wdt, g->dt, g->params, DERF_F32, g->host->params.total);
}

extern "C" void derf_gpt2_cuda_free(derf_gpt2_cuda *g) {
    if (!g) return;
    void *bufs[] = {g->params, g->grads, g->m, g->v, g->emb, g->res, g->xmid, g->ln1, g->qkv, g->att, g->atty,
                    g->ln2, g->fch, g->fcg, g->lnf, g->logits, g->st1, g->st2, g->stf, g->branch, g->dres, g->dln,
                    g->dqkv, g->datty, g->dfcg, g->dfch, g->dlogits, g->tok, g->tgt};
    for (void *b : bufs) derf_cuda_free(b);
    if (g->dt != DERF_F32) derf_cuda_free(g->wdt);
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
