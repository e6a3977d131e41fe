/* gpt2_infer.c: forward-only GPT-2 with a KV cache (derf/infer.h). The weights sit in a named table
 * (HF GPT2Model names, as the training model's checkpoints); the cache holds every layer's keys and
 * values [L][B][NH][max_T][hs], so a new token costs one pass over the cached positions (O(T)) instead
 * of recomputing the whole context (O(T^2)); the scratch arena is sized for max_batch x max_T new
 * tokens (a prompt) and reused by every layer; only the last position of each sequence goes through
 * ln_f and the LM head.
 *
 * Folding: ln_1 -> attn.c_attn, ln_2 -> mlp.c_fc, ln_f -> the LM head. The head is tied to wte, so
 * folding ln_f gives it its own lm_head.weight = wte diag(gamma) and lm_head.bias = wte beta; with the
 * head untied, wte and wpe also absorb shared_scale. Without biases in the checkpoint (bias=0) the
 * folded linears get them (b = W beta), so a folded model always has bias=1. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/infer.h"
#include "derf/io.h"
#include "infer/models.h"
#include "norms/fastmath.h"

/* queries per attention chunk (attend below: its scratch is QCH x max_T floats per thread) */
enum { QCH = 64 };

static const char *st_get(void *ctx, const char *key) { return derf_safetensors_meta(ctx, key); }

static void register_weights(derf_infer_gpt2 *m) {
    const derf_gpt2_config *c = &m->cfg;
    const int C = c->n_embd, H = 4 * C;
    const int bf = c->bias ? 0 : IW_OPTIONAL | IW_NOWRITE;   /* biases exist here either way (folding fills them) */
    iw_table *t = &m->w;
    char n[128];
    m->wte = iw_add(t, "wte.weight", 2, c->vocab, C, 0, 0, 0);
    m->wpe = iw_add(t, "wpe.weight", 2, c->block_size, C, 0, 0, 0);
    if (c->shared_scale) m->scale = iw_add(t, "shared_scale", 1, 1, 0, 0, 0, 0);
    for (int l = 0; l < c->n_layer; l++) {
        gblk *b = &m->blk[l];
#define NM(s) (snprintf(n, sizeof n, "h.%d.%s", l, s), n)
        b->ln1 = iw_add_norm(t, &c->norm, C, NM("ln_1"));
        b->attn_w = iw_add(t, NM("attn.c_attn.weight"), 2, 3 * C, C, 0, 0, 0);
        b->attn_b = iw_add(t, NM("attn.c_attn.bias"), 1, 3 * C, 0, 0, 0, bf);
        b->aproj_w = iw_add(t, NM("attn.c_proj.weight"), 2, C, C, 0, 0, 0);
        b->aproj_b = iw_add(t, NM("attn.c_proj.bias"), 1, C, 0, 0, 0, bf);
        b->ln2 = iw_add_norm(t, &c->norm, C, NM("ln_2"));
        b->fc_w = iw_add(t, NM("mlp.c_fc.weight"), 2, H, C, 0, 0, 0);
        b->fc_b = iw_add(t, NM("mlp.c_fc.bias"), 1, H, 0, 0, 0, bf);
        b->mproj_w = iw_add(t, NM("mlp.c_proj.weight"), 2, C, H, 0, 0, 0);
        b->mproj_b = iw_add(t, NM("mlp.c_proj.bias"), 1, C, 0, 0, 0, bf);
#undef NM
    }
    m->lnf = iw_add_norm(t, &c->norm, C, "ln_f");
    if (m->folded) {
        m->head_w = iw_add(t, "lm_head.weight", 2, c->vocab, C, 0, 0, 0);
        m->head_b = iw_add(t, "lm_head.bias", 1, c->vocab, 0, 0, 0, 0);
    } else {
        m->head_w = m->wte;
        m->head_b = NULL;
    }
}

static int carve(derf_infer_gpt2 *m) {
    const derf_gpt2_config *c = &m->cfg;
    const size_t N = (size_t)m->max_batch * m->max_T, C = (size_t)c->n_embd, B = (size_t)m->max_batch;
    m->nthreads = omp_get_max_threads();
    const size_t sizes[10] = {N * C, N * C, 2 * N, 3 * N * C, N * C, N * C, 4 * N * C, B * C, B * C,
                              B * (size_t)c->vocab};
    float **dst[10] = {&m->x, &m->h, &m->st, &m->qkv, &m->atty, &m->br, &m->fc, &m->last, &m->lastn, &m->logits};
    const size_t nsc = (size_t)m->nthreads * QCH * m->max_T;
    m->cache_floats = 2 * (size_t)c->n_layer * N * C;
    size_t total = nsc + m->cache_floats;
    for (int i = 0; i < 10; i++) total += (sizes[i] + 15) & ~(size_t)15;
    m->arena = aligned_alloc(64, ((total + 15) & ~(size_t)15) * sizeof(float));
    if (!m->arena) return -1;
    m->arena_floats = total;
    size_t cur = 0;
    for (int i = 0; i < 10; i++) {
        *dst[i] = m->arena + cur;
        cur += (sizes[i] + 15) & ~(size_t)15;
    }
    m->kc = m->arena + cur;
    m->vc = m->kc + m->cache_floats / 2;
    m->scores = m->vc + m->cache_floats / 2;
    return 0;
}

derf_infer_gpt2 *derf_infer_gpt2_load(const char *path, int max_batch, int max_T, char *err, size_t errlen) {
    if (max_batch < 1) { derf_io_errf(err, errlen, "inference batch must be at least 1, not %d", max_batch); return NULL; }
    derf_safetensors st;
    if (derf_safetensors_read(&st, path, (size_t)1 << 36, err, errlen)) return NULL;
    derf_infer_gpt2 *m = calloc(1, sizeof *m);
    char e[DERF_ERRLEN];
    if (!m) { derf_safetensors_free(&st); derf_io_errf(err, errlen, "out of memory"); return NULL; }
    if (derf_gpt2_config_from_meta(&m->cfg, st_get, &st, e, sizeof e)) {
        derf_io_errf(err, errlen, "%s: %s", path, e);
        goto fail;
    }
    if (iw_folded_meta(&st, &m->cfg.norm, &m->folded, &m->trained, path, err, errlen)) goto fail;
    const char *dv = derf_safetensors_meta(&st, "data_vocab");
    long x = dv ? strtol(dv, NULL, 10) : 0;
    m->data_vocab = x > 0 && x <= m->cfg.vocab ? (int)x : m->cfg.vocab;
    if (max_T <= 0) max_T = m->cfg.block_size;
    if (max_T > m->cfg.block_size) {
        derf_io_errf(err, errlen, "%s: context %d is longer than the model's block_size %d", path, max_T, m->cfg.block_size);
        goto fail;
    }
    m->max_batch = max_batch;
    m->max_T = max_T;
    m->blk = calloc((size_t)m->cfg.n_layer, sizeof *m->blk);
    if (!m->blk) { derf_io_errf(err, errlen, "out of memory"); goto fail; }
    register_weights(m);
    if (iw_load(&m->w, &st, path, err, errlen)) goto fail;
    if (carve(m)) { derf_io_errf(err, errlen, "out of memory for %d x %d tokens", max_batch, max_T); goto fail; }
    derf_safetensors_free(&st);
    return m;
fail:
    derf_safetensors_free(&st);
    derf_infer_gpt2_free(m);
    return NULL;
}

const derf_gpt2_config *derf_infer_gpt2_config(const derf_infer_gpt2 *m) { return &m->cfg; }
int derf_infer_gpt2_folded(const derf_infer_gpt2 *m) { return m->folded; }
int derf_infer_gpt2_data_vocab(const derf_infer_gpt2 *m) { return m->data_vocab; }
int derf_infer_gpt2_pos(const derf_infer_gpt2 *m) { return m->pos; }
size_t derf_infer_gpt2_bytes(const derf_infer_gpt2 *m) { return m->w.bytes + m->arena_floats * sizeof(float); }
void derf_infer_gpt2_reset(derf_infer_gpt2 *m) { m->pos = 0; m->B = 0; }

void derf_infer_gpt2_fold(derf_infer_gpt2 *m) {
    if (m->folded) return;
    derf_gpt2_config *c = &m->cfg;
    const int C = c->n_embd, H = 4 * C, V = c->vocab;
    char n[128];
    for (int l = 0; l < c->n_layer; l++) {
        gblk *b = &m->blk[l];
        int oc1 = 3 * C, oc2 = H;
        snprintf(n, sizeof n, "h.%d.ln_1", l);
        iw_fold_norm(&m->w, &c->norm, C, b->ln1, n, &b->attn_w, &b->attn_b, &oc1, 1);
        snprintf(n, sizeof n, "h.%d.ln_2", l);
        iw_fold_norm(&m->w, &c->norm, C, b->ln2, n, &b->fc_w, &b->fc_b, &oc2, 1);
    }
    /* the head: untie from wte (a copy), then fold ln_f into the copy */
    float *hw = iw_add(&m->w, "lm_head.weight", 2, V, C, 0, 0, 0), *hb = iw_add(&m->w, "lm_head.bias", 1, V, 0, 0, 0, 0);
    if (!hw || !hb) { fprintf(stderr, "derf: out of memory folding the LM head\n"); abort(); }
    memcpy(hw, m->wte, (size_t)V * C * sizeof(float));
    iw_fold_norm(&m->w, &c->norm, C, m->lnf, "ln_f", &hw, &hb, &V, 1);
    m->head_w = hw;
    m->head_b = hb;
    /* the embedding alone now reads wte: it absorbs shared_scale (x0 = s wte[tok] + s wpe[t]) */
    if (m->scale) {
        const float s = m->scale[0];
        for (size_t i = 0; i < (size_t)V * C; i++) m->wte[i] *= s;
        for (size_t i = 0; i < (size_t)c->block_size * C; i++) m->wpe[i] *= s;
        iw_drop(&m->w, "shared_scale");
        m->scale = NULL;
        c->shared_scale = 0;
    }
    /* every bias is part of the folded model (zeros where the checkpoint had none) */
    for (int i = 0; i < m->w.n; i++)
        if (m->w.e[i].flags & IW_OPTIONAL) m->w.e[i].flags &= ~(IW_OPTIONAL | IW_NOWRITE);
    c->bias = 1;
    c->norm = derf_norm_folded(&c->norm);
    m->folded = 1;
}

/* Causal attention of the n new tokens of each sequence over the cache (positions 0..pos+i), per head in
 * chunks of QCH queries: S = scale Q K^T and O = P V as GEMMs against the cached keys and values, the
 * softmax in between (fast exp, as derf_attention_forward). Scratch: QCH x max_T floats per thread. */
static void attend(derf_infer_gpt2 *m, int l, int B, int n) {
    const int C = m->cfg.n_embd, NH = m->cfg.n_head, hs = C / NH, mT = m->max_T, C3 = 3 * C;
    const float sc = 1.0f / sqrtf((float)hs);
    const size_t lay = (size_t)l * m->max_batch * NH * mT * hs;
    /* append the new keys and values */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) {
            const float *q = m->qkv + ((size_t)b * n + i) * C3;
            for (int h = 0; h < NH; h++) {
                const size_t at = lay + (((size_t)b * NH + h) * mT + m->pos + i) * hs;
                memcpy(m->kc + at, q + C + h * hs, (size_t)hs * sizeof(float));
                memcpy(m->vc + at, q + 2 * C + h * hs, (size_t)hs * sizeof(float));
            }
        }
    #pragma omp parallel for collapse(2) schedule(static) if ((long)B * NH * n * (m->pos + n) * hs > 32768)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *K = m->kc + lay + ((size_t)b * NH + h) * mT * hs, *Vv = m->vc + lay + ((size_t)b * NH + h) * mT * hs;
            float *S = m->scores + (size_t)omp_get_thread_num() * QCH * mT;
            for (int i0 = 0; i0 < n; i0 += QCH) {
                const int nq = n - i0 < QCH ? n - i0 : QCH, nk = m->pos + i0 + nq;   /* keys the chunk sees */
                const float *q = m->qkv + ((size_t)b * n + i0) * C3 + h * hs;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs, sc, q, C3, K, hs, 0.0f, S, nk);
                for (int i = 0; i < nq; i++) {
                    float *row = S + (size_t)i * nk;
                    const int P = m->pos + i0 + i + 1;                               /* causal: keys 0..pos+i */
                    float mx = row[0], z = 0.0f;
                    for (int j = 1; j < P; j++) mx = row[j] > mx ? row[j] : mx;
                    #pragma omp simd reduction(+:z)
                    for (int j = 0; j < P; j++) { row[j] = derf_fast_expf(row[j] - mx); z += row[j]; }
                    const float iz = 1.0f / z;
                    for (int j = 0; j < P; j++) row[j] *= iz;
                    for (int j = P; j < nk; j++) row[j] = 0.0f;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk, 1.0f, S, nk, Vv, hs, 0.0f,
                            m->atty + ((size_t)b * n + i0) * C + h * hs, C);
            }
        }
}

const float *derf_infer_gpt2_step(derf_infer_gpt2 *m, const int32_t *tokens, int B, int n, char *err, size_t errlen) {
    const derf_gpt2_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int C = c->n_embd, H = 4 * C, V = c->vocab, N = B * n;
    if (B < 1 || B > m->max_batch || (m->pos > 0 && B != m->B)) {
        derf_io_errf(err, errlen, "GPT-2 inference with %d sequences (loaded for 1..%d; the cache holds %d)", B,
                     m->max_batch, m->pos > 0 ? m->B : B);
        return NULL;
    }
    if (n < 1 || m->pos + n > m->max_T) {
        derf_io_errf(err, errlen, "GPT-2 inference: %d new tokens after %d cached ones exceed the context of %d",
                     n, m->pos, m->max_T);
        return NULL;
    }
    for (int i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= V) {
            derf_io_errf(err, errlen, "token %d at position %d is outside the model's vocabulary of %d", (int)tokens[i], i, V);
            return NULL;
        }
    m->B = B;
    /* x[b,i] = s * (wte[tok] + wpe[pos + i]) (s = shared_scale, or 1) */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) {
            float *o = m->x + ((size_t)b * n + i) * C;
            const float *e = m->wte + (size_t)tokens[(size_t)b * n + i] * C, *p = m->wpe + (size_t)(m->pos + i) * C;
            for (int k = 0; k < C; k++) o[k] = e[k] + p[k];
            if (m->scale) for (int k = 0; k < C; k++) o[k] *= m->scale[0];
        }
    const size_t nc = (size_t)N * C;
    for (int l = 0; l < c->n_layer; l++) {
        const gblk *w = &m->blk[l];
        derf_norm_forward(ns, m->h, m->st, m->x, w->ln1, N, C);
        iw_linear(m->qkv, m->h, w->attn_w, w->attn_b, N, C, 3 * C);
        attend(m, l, B, n);
        iw_linear(m->br, m->atty, w->aproj_w, w->aproj_b, N, C, C);
        derf_residual_forward(m->x, m->x, m->br, nc);
        derf_norm_forward(ns, m->h, m->st, m->x, w->ln2, N, C);
        iw_linear(m->fc, m->h, w->fc_w, w->fc_b, N, C, H);
        derf_gelu_forward(m->fc, m->fc, (size_t)N * H, DERF_GELU_TANH);
        iw_linear(m->br, m->fc, w->mproj_w, w->mproj_b, N, H, C);
        derf_residual_forward(m->x, m->x, m->br, nc);
    }
    for (int b = 0; b < B; b++) memcpy(m->last + (size_t)b * C, m->x + ((size_t)b * n + n - 1) * C, (size_t)C * sizeof(float));
    derf_norm_forward(ns, m->lastn, m->st, m->last, m->lnf, B, C);
    iw_linear(m->logits, m->lastn, m->head_w, m->head_b, B, C, V);
    m->pos += n;
    return m->logits;
}

int derf_infer_gpt2_sample(derf_infer_gpt2 *m, const int32_t *prompt, int n_prompt, int length,
                           const derf_lm_sample_opts *so, int32_t *out, char *err, size_t errlen) {
    const int V = m->cfg.vocab, W = m->max_T;
    const int Vl = so->vocab_limit > 0 && so->vocab_limit < V ? so->vocab_limit : V;
    if (derf_lm_sample_check(so, n_prompt, length, err, errlen)) return -1;
    int32_t *ctx = malloc(sizeof(int32_t) * ((size_t)n_prompt + length + 1));
    derf_lm_scored *sc = malloc(sizeof(derf_lm_scored) * (size_t)Vl);
    if (!ctx || !sc) { free(ctx); free(sc); derf_io_errf(err, errlen, "out of memory"); return -1; }
    memcpy(ctx, prompt, sizeof(int32_t) * (size_t)n_prompt);
    derf_rng r;
    derf_rng_seed(&r, so->seed, 3);
    int n = n_prompt, s0 = n > W ? n - W : 0, rc = 0;
    derf_infer_gpt2_reset(m);
    const float *lg = length > 0 ? derf_infer_gpt2_step(m, ctx + s0, 1, n - s0, err, errlen) : NULL;
    for (int step = 0; step < length; step++) {
        if (!lg) { rc = -1; break; }
        const int next = derf_lm_pick(lg, Vl, so, &r, sc);
        ctx[n++] = next;
        out[step] = next;
        if (step + 1 == length) break;
        if (n - s0 > W) { /* the window slides: refill the cache with the last W tokens */
            s0 = n - W;
            derf_infer_gpt2_reset(m);
            lg = derf_infer_gpt2_step(m, ctx + s0, 1, W, err, errlen);
        } else {
            lg = derf_infer_gpt2_step(m, ctx + n - 1, 1, 1, err, errlen);
        }
    }
    free(ctx);
    free(sc);
    return rc;
}

int derf_infer_gpt2_save(const derf_infer_gpt2 *m, const char *path, char *err, size_t errlen) {
    char keys[48][32], vals[48][128];
    int n = derf_gpt2_config_to_meta(&m->cfg, keys, vals, 47);
    if (n >= 0) { /* the vocabulary the data used (derf sample refuses models of another tokenizer) */
        snprintf(keys[n], sizeof keys[n], "data_vocab");
        snprintf(vals[n], sizeof vals[n], "%d", m->data_vocab);
        n++;
    }
    return iw_write_model(&m->w, path, keys, vals, n, m->folded, &m->trained, err, errlen);
}

void derf_infer_gpt2_free(derf_infer_gpt2 *m) {
    if (!m) return;
    iw_free(&m->w);
    free(m->blk);
    free(m->arena);
    free(m);
}
