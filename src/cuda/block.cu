/* block.cu: the pieces the GPU models share (block.cuh): master weights, and the pre-norm Transformer
 * block, op for op the blocks of the CPU models (src/models/gpt2.c, vit.c) over the ops of derf/cuda.h. */
#include "cuda/block.cuh"
#include <vector>

/* ---- master weights ---------------------------------------------------------------------------- */
void derf_cu_master_alloc(cu_master *w, const derf_params *host, derf_dtype dt) {
    derf_params_layout_aligned(&w->lay, host, 64);
    const size_t n = w->lay.total;
    w->host = host;
    w->dt = dt;
    w->es = derf_dtype_size(dt);
    w->params = (float *)derf_cuda_malloc(n * sizeof(float));
    w->grads = (float *)derf_cuda_malloc(n * sizeof(float));
    w->m = (float *)derf_cuda_malloc(n * sizeof(float));
    w->v = (float *)derf_cuda_malloc(n * sizeof(float));
    w->wdt = dt == DERF_F32 ? (char *)w->params : (char *)derf_cuda_malloc(n * w->es);
    /* the padding stays 0 in every slab (AdamW, clipping and the EMA run over whole slabs) */
    for (float *b : {w->params, w->grads, w->m, w->v}) derf_cuda_zero(b, n * sizeof(float));
}

void derf_cu_master_free(cu_master *w) {
    if (w->dt != DERF_F32) derf_cuda_free(w->wdt);
    void *bufs[] = {w->params, w->grads, w->m, w->v};
    for (void *b : bufs) derf_cuda_free(b);
    derf_params_free(&w->lay);
}

void derf_cu_master_refresh(cu_master *w) {
    if (w->dt == DERF_F32) w->wdt = (char *)w->params;
    else derf_cuda_convert(w->wdt, w->dt, w->params, DERF_F32, w->lay.total);
}

/* host slab (packed, host layout) <-> device slab (aligned layout) through one staging copy */
void derf_cu_master_put(const cu_master *w, float *dev, const float *host_slab) {
    std::vector<float> st(w->lay.total);
    derf_params_relayout(st.data(), &w->lay, host_slab, w->host, 1);
    derf_cuda_upload(dev, st.data(), st.size() * sizeof(float));
}

void derf_cu_master_get(const cu_master *w, float *host_slab, const float *dev) {
    std::vector<float> st(w->lay.total);
    derf_cuda_download(st.data(), dev, st.size() * sizeof(float));
    derf_params_relayout(host_slab, w->host, st.data(), &w->lay, 0);
}

void derf_cu_master_upload(cu_master *w) {
    derf_cu_master_put(w, w->params, w->host->params);
    derf_cu_master_put(w, w->m, w->host->m);
    derf_cu_master_put(w, w->v, w->host->v);
    derf_cu_master_refresh(w);
}

void derf_cu_master_download(cu_master *w) {
    derf_cu_master_get(w, w->host->params, w->params);
    derf_cu_master_get(w, w->host->grads, w->grads);
    derf_cu_master_get(w, w->host->m, w->m);
    derf_cu_master_get(w, w->host->v, w->v);
}

const void *derf_cu_master_wd(const cu_master *w, const float *p) {
    return p ? w->wdt + (size_t)(p - w->params) * w->es : NULL;
}

void derf_cu_master_zero_grad(cu_master *w) { derf_cuda_zero(w->grads, w->lay.total * sizeof(float)); }

float derf_cu_master_clip(cu_master *w, float max_norm) {
    return derf_cuda_clip_grad_norm(w->grads, w->lay.total, max_norm);
}

void derf_cu_master_adamw(cu_master *w, const derf_adamw_cfg *cfg, int step) {
    derf_cuda_adamw_step(&w->lay, w->params, w->grads, w->m, w->v, cfg, step);
    derf_cu_master_refresh(w);
}

/* ---- the block --------------------------------------------------------------------------------- */

static char *act(size_t n, size_t es) { return (char *)derf_cuda_malloc(n * es); }

void derf_cu_block_store_alloc(cu_block_store *s, const derf_norm_spec *ns, int L, size_t B, size_t T, size_t C,
                               size_t H, size_t NH, derf_dtype dt) {
    const size_t es = derf_dtype_size(dt), l = (size_t)L;
    s->es = es;
    s->btc = B * T * C;
    s->bth = B * T * H;
    s->batt = B * NH * T * T;
    s->bst = derf_norm_stats_count(ns, (int)(B * T));
    s->res = act((l + 1) * s->btc, es);
    s->xmid = act(l * s->btc, es);
    s->ln1 = act(l * s->btc, es);
    s->qkv = act(l * 3 * s->btc, es);
    s->att = act(l * s->batt, es);
    s->atty = act(l * s->btc, es);
    s->ln2 = act(l * s->btc, es);
    s->fch = act(l * s->bth, es);
    s->fcg = act(l * s->bth, es);
    s->st1 = s->st2 = NULL;
    if (s->bst) {
        s->st1 = (float *)derf_cuda_malloc(l * s->bst * sizeof(float));
        s->st2 = (float *)derf_cuda_malloc(l * s->bst * sizeof(float));
    }
    s->branch = act(s->btc, es);
    s->dres = act(s->btc, es);
    s->dln = act(s->btc, es);
    s->dqkv = act(3 * s->btc, es);
    s->datty = act(s->btc, es);
    s->dfcg = act(s->bth, es);
    s->dfch = act(s->bth, es);
}

void derf_cu_block_store_free(cu_block_store *s) {
    void *bufs[] = {s->res, s->xmid, s->ln1, s->qkv, s->att, s->atty, s->ln2, s->fch, s->fcg, s->st1, s->st2,
                    s->branch, s->dres, s->dln, s->dqkv, s->datty, s->dfcg, s->dfch};
    for (void *b : bufs) derf_cuda_free(b);
}

char *derf_cu_block_res(const cu_block_store *s, int l) { return s->res + (size_t)l * s->btc * s->es; }

cu_block_acts derf_cu_block_layer(const cu_block_store *s, int l) {
    const size_t L = (size_t)l, es = s->es;
    cu_block_acts a;
    a.x = derf_cu_block_res(s, l);
    a.xout = derf_cu_block_res(s, l + 1);
    a.xmid = s->xmid + L * s->btc * es;
    a.ln1 = s->ln1 + L * s->btc * es;
    a.qkv = s->qkv + L * 3 * s->btc * es;
    a.att = s->att + L * s->batt * es;
    a.atty = s->atty + L * s->btc * es;
    a.ln2 = s->ln2 + L * s->btc * es;
    a.fch = s->fch + L * s->bth * es;
    a.fcg = s->fcg + L * s->bth * es;
    a.st1 = s->st1 ? s->st1 + L * s->bst : NULL;
    a.st2 = s->st2 ? s->st2 + L * s->bst : NULL;
    return a;
}

void derf_cu_block_forward(const derf_norm_spec *ns, const cu_block_shape &sh, const cu_block_w &w,
                           const cu_block_acts &a, cu_block_store *s, const float *keep1, const float *keep2) {
    const int BT = sh.B * sh.T, C = sh.C, H = sh.H;
    const derf_dtype dt = sh.dt;
    const size_t btc = (size_t)BT * C, rest = (size_t)sh.T * C;
    /* attention branch: xmid = x + keep1 * proj(Attn(qkv(norm1(x)))) */
    derf_cuda_norm_forward(ns, a.ln1, a.st1, a.x, w.n1, BT, C, dt);
    derf_cuda_linear_forward(a.qkv, a.ln1, w.qkv_w, w.qkv_b, BT, C, 3 * C, dt);
    derf_cuda_attention_forward(a.atty, a.att, a.qkv, sh.B, sh.T, C, sh.NH, sh.causal, dt);
    derf_cuda_linear_forward(s->branch, a.atty, w.proj_w, w.proj_b, BT, C, C, dt);
    if (keep1) derf_cuda_row_scale(s->branch, s->branch, keep1, sh.B, rest, dt);
    derf_cuda_residual_forward(a.xmid, a.x, s->branch, btc, dt);
    /* MLP branch: xout = xmid + keep2 * fc2(GELU(fc1(norm2(xmid)))) */
    derf_cuda_norm_forward(ns, a.ln2, a.st2, a.xmid, w.n2, BT, C, dt);
    derf_cuda_linear_forward(a.fch, a.ln2, w.fc1_w, w.fc1_b, BT, C, H, dt);
    derf_cuda_gelu_forward(a.fcg, a.fch, (size_t)BT * H, sh.gelu, dt);
    derf_cuda_linear_forward(s->branch, a.fcg, w.fc2_w, w.fc2_b, BT, H, C, dt);
    if (keep2) derf_cuda_row_scale(s->branch, s->branch, keep2, sh.B, rest, dt);
    derf_cuda_residual_forward(a.xout, a.xmid, s->branch, btc, dt);
}

/* the gradient entering a branch: dres itself, or a drop-path-scaled copy in s->branch */
static const char *branch_grad(cu_block_store *s, const float *keep, int B, size_t rest, derf_dtype dt) {
    if (!keep) return s->dres;
    derf_cuda_row_scale(s->branch, s->dres, keep, B, rest, dt);
    return s->branch;
}

void derf_cu_block_backward(const derf_norm_spec *ns, const cu_block_shape &sh, const cu_block_w &w,
                            const cu_block_g &g, const cu_block_acts &a, cu_block_store *s, const float *keep1,
                            const float *keep2) {
    const int BT = sh.B * sh.T, C = sh.C, H = sh.H;
    const derf_dtype dt = sh.dt;
    const size_t es = s->es, btc = (size_t)BT * C, bth = (size_t)BT * H, rest = (size_t)sh.T * C;
    /* MLP branch: dres = dL/dxout; norm2's input gradient adds into it -> dL/dxmid */
    const char *dbr = branch_grad(s, keep2, sh.B, rest, dt);
    derf_cuda_zero(s->dfcg, bth * es);
    derf_cuda_linear_backward(s->dfcg, g.fc2_w, g.fc2_b, dbr, a.fcg, w.fc2_w, BT, H, C, dt);
    derf_cuda_zero(s->dfch, bth * es);
    derf_cuda_gelu_backward(s->dfch, s->dfcg, a.fch, bth, sh.gelu, dt);
    derf_cuda_zero(s->dln, btc * es);
    derf_cuda_linear_backward(s->dln, g.fc1_w, g.fc1_b, s->dfch, a.ln2, w.fc1_w, BT, C, H, dt);
    derf_cuda_norm_backward(ns, s->dres, g.n2, s->dln, a.xmid, w.n2, a.st2, BT, C, dt, 1);
    /* attention branch: dres = dL/dxmid -> dL/dx */
    dbr = branch_grad(s, keep1, sh.B, rest, dt);
    derf_cuda_zero(s->datty, btc * es);
    derf_cuda_linear_backward(s->datty, g.proj_w, g.proj_b, dbr, a.atty, w.proj_w, BT, C, C, dt);
    derf_cuda_zero(s->dqkv, 3 * btc * es);
    derf_cuda_attention_backward(s->dqkv, s->datty, a.qkv, a.att, sh.B, sh.T, C, sh.NH, sh.causal, dt);
    derf_cuda_zero(s->dln, btc * es);
    derf_cuda_linear_backward(s->dln, g.qkv_w, g.qkv_b, s->dqkv, a.ln1, w.qkv_w, BT, C, 3 * C, dt);
    derf_cuda_norm_backward(ns, s->dres, g.n1, s->dln, a.x, w.n1, a.st1, BT, C, dt, 1);
}
