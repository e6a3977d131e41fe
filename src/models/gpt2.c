/* gpt2.c: GPT-2 as nanoGPT builds it (the paper's language-model runs, docs/paper.md section 5.3), on the
 * CPU ops: config presets and checks, tensor registration under HF GPT2Model's names (Linear
 * weights in nn.Linear layout [out,in]; see derf/gpt2.h), nanoGPT init, forward and backward (mirrors
 * of each other, shape comments at each step), and the config <-> safetensors metadata mapping.
 *
 * Shape letters: B batch, T tokens (T <= max_T <= block_size), C width, H = 4C MLP hidden width,
 * NH heads, V vocabulary, L layers.
 *
 *   emb[B,T,C] = wte[tok] + wpe[t];  x0 = shared_scale * emb (point-wise norms) or emb
 *   for l < L:  xmid = x + attn.c_proj(CausalAttn(attn.c_attn(ln_1(x))))
 *               x'   = xmid + mlp.c_proj(GELU_tanh(mlp.c_fc(ln_2(xmid))))
 *   logits[B,T,V] = ln_f(x_L) @ wte^T     (tied LM head, no bias)
 *   loss = mean cross-entropy over the targets >= 0
 *
 * Memory: the parameter table (one slab each for params, grads, AdamW m, v) and one activation arena
 * sized for max_batch x max_T, carved by gpt2_layout() below; forward and backward allocate nothing.
 * A per-layer buffer has L slices of max_batch*max_T rows; a smaller batch uses the front of each. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/dist.h"
#include "derf/gpt2.h"
#include "derf/io.h"
#include "derf/rng.h"
#include "models/gpt2_weights.h"

/* ------------------------------------------------------------------------------- presets */

typedef struct {
    const char *name;
    int vocab, block_size, n_layer, n_embd, n_head;
} gpt2_preset;

static const gpt2_preset PRESETS[] = {
    {"test",     64,   16,  2,  16,  2},
    {"mini",    256,  128,  4, 128,  4},
    {"tiny",    256,  256,  6, 192,  6},
    {"small",   256,  256,  6, 384,  6},   /* nanoGPT config/train_shakespeare_char.py's shape */
    {"124m",  50304, 1024, 12, 768, 12},   /* GPT-2 small; vocab 50257 padded to 50304 (nanoGPT) */
};
#define N_PRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

int derf_gpt2_preset(derf_gpt2_config *cfg, const char *name, char *err, size_t errlen) {
    for (int i = 0; i < N_PRESETS; i++) {
        const gpt2_preset *p = &PRESETS[i];
        if (!name || strcmp(name, p->name) != 0) continue;
        memset(cfg, 0, sizeof *cfg);
        cfg->vocab = p->vocab;
        cfg->block_size = p->block_size;
        cfg->n_layer = p->n_layer;
        cfg->n_embd = p->n_embd;
        cfg->n_head = p->n_head;
        cfg->bias = 1;
        cfg->shared_scale = -1;
        cfg->attn_alpha = cfg->ffn_alpha = cfg->final_alpha = 1.0f;   /* the Derf GPT-2 patch defaults */
        char perr[256];
        if (derf_norm_parse("derf", &cfg->norm, perr, sizeof perr)) { /* cannot fail */
            derf_io_errf(err, errlen, "%s", perr);
            return -1;
        }
        return 0;
    }
    char names[256];
    size_t n = 0;
    names[0] = 0;
    for (int i = 0; i < N_PRESETS; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", PRESETS[i].name);
    derf_io_errf(err, errlen, "unknown GPT-2 preset '%s' (known: %s)", name ? name : "(null)", names);
    return -1;
}

int derf_gpt2_check(const derf_gpt2_config *c, char *err, size_t errlen) {
#define NEED(cond, ...) do { if (!(cond)) { derf_io_errf(err, errlen, __VA_ARGS__); return -1; } } while (0)
    NEED(c->vocab > 0 && c->vocab <= (1 << 24), "GPT-2 vocab must be in 1..16777216, not %d", c->vocab);
    NEED(c->block_size > 0 && c->block_size <= 65536, "GPT-2 block_size must be in 1..65536, not %d", c->block_size);
    NEED(c->n_layer > 0 && c->n_layer <= 1024, "GPT-2 n_layer must be in 1..1024, not %d", c->n_layer);
    NEED(c->n_embd > 0 && c->n_embd <= 65536, "GPT-2 n_embd must be in 1..65536, not %d", c->n_embd);
    NEED(c->n_head > 0 && c->n_embd % c->n_head == 0, "GPT-2 n_head %d must be positive and divide n_embd %d",
         c->n_head, c->n_embd);
    NEED(c->bias == 0 || c->bias == 1, "GPT-2 bias must be 0 or 1, not %d", c->bias);
    NEED(c->shared_scale >= -1 && c->shared_scale <= 1, "GPT-2 shared_scale must be -1 (auto), 0 or 1, not %d",
         c->shared_scale);
    NEED(c->logit_bias == 0 || c->logit_bias == 1, "GPT-2 logit_bias must be 0 or 1, not %d", c->logit_bias);
    NEED(isfinite(c->attn_alpha) && c->attn_alpha >= 0, "GPT-2 attn_alpha must be >= 0 (0: the spec's alpha)");
    NEED(isfinite(c->ffn_alpha) && c->ffn_alpha >= 0, "GPT-2 ffn_alpha must be >= 0 (0: the spec's alpha)");
    NEED(isfinite(c->final_alpha) && c->final_alpha >= 0, "GPT-2 final_alpha must be >= 0 (0: the spec's alpha)");
#undef NEED
    return 0;
}

static int resolve_scale(const derf_gpt2_config *c) {
    return c->shared_scale < 0 ? c->norm.kind == DERF_NORM_POINTWISE : c->shared_scale;
}

/* ------------------------------------------------------------------------------- parameters */

/* Registration order (HF GPT2Model's, with shared_scale after wpe):
 *   wte.weight, wpe.weight, [shared_scale], then per block (NB = 2*kn + 4 or 8 with biases):
 *     ln_1.* (kn), attn.c_attn.weight, [.bias], attn.c_proj.weight, [.bias],
 *     ln_2.* (kn), mlp.c_fc.weight, [.bias], mlp.c_proj.weight, [.bias],
 *   then ln_f.* (kn). A norm layer's tensors are consecutive, packed as derf_norm_params lays them
 *   out, so the first one's offset is the norm's parameter block. */
static int norm_tensors(const derf_gpt2 *m) {
    derf_norm_param np[4];
    return derf_norm_params(&m->cfg.norm, m->cfg.n_embd, np);
}

static int block_tensors(const derf_gpt2 *m) { return 2 * norm_tensors(m) + (m->cfg.bias ? 8 : 4); }
static int first_block(const derf_gpt2 *m) { return 2 + m->cfg.shared_scale; }

/* walks the tensor table from *idx: a norm (kn tensors, NULL when kn == 0), a weight, an optional bias */
static float *take_norm(const derf_gpt2 *m, float *slab, int *idx) {
    const int kn = norm_tensors(m);
    float *p = kn ? slab + m->params.t[*idx].offset : NULL;
    *idx += kn;
    return p;
}
static float *take(const derf_gpt2 *m, float *slab, int *idx) { return slab + m->params.t[(*idx)++].offset; }
static float *take_bias(const derf_gpt2 *m, float *slab, int *idx) {
    return m->cfg.bias ? take(m, slab, idx) : NULL;
}

void derf_gpt2_block_weights(const derf_gpt2 *m, float *slab, int l, gpt2_block_w *w) {
    int i = first_block(m) + l * block_tensors(m);
    w->ln1 = take_norm(m, slab, &i);
    w->attn_w = take(m, slab, &i);
    w->attn_b = take_bias(m, slab, &i);
    w->aproj_w = take(m, slab, &i);
    w->aproj_b = take_bias(m, slab, &i);
    w->ln2 = take_norm(m, slab, &i);
    w->fc_w = take(m, slab, &i);
    w->fc_b = take_bias(m, slab, &i);
    w->mproj_w = take(m, slab, &i);
    w->mproj_b = take_bias(m, slab, &i);
}

void derf_gpt2_top_weights(const derf_gpt2 *m, float *slab, gpt2_top_w *w) {
    w->wte = slab + m->params.t[0].offset;
    w->wpe = slab + m->params.t[1].offset;
    w->scale = m->cfg.shared_scale ? slab + m->params.t[2].offset : NULL;
    int i = first_block(m) + m->cfg.n_layer * block_tensors(m);
    w->lnf = take_norm(m, slab, &i);
    w->lmb = m->cfg.logit_bias ? take(m, slab, &i) : NULL;
}

static void add_tensor(derf_params *p, const char *name, int ndim, int d0, int d1, int decay) {
    int shape[4] = {d0, d1, 0, 0};
    derf_params_add(p, name, ndim, shape, decay);
}

#define add_norm derf_norm_register /* the tensors of one norm layer called prefix */

/* Weight decay on the 2-D tensors only (nanoGPT's rule): wte, wpe and the Linear weights. */
static void register_tensors(derf_gpt2 *m) {
    const derf_gpt2_config *c = &m->cfg;
    const int C = c->n_embd, H = 4 * C;
    derf_params *p = &m->params;
    char name[DERF_NAME_MAX];
    add_tensor(p, "wte.weight", 2, c->vocab, C, 1);
    add_tensor(p, "wpe.weight", 2, c->block_size, C, 1);
    if (c->shared_scale) add_tensor(p, "shared_scale", 1, 1, 0, 0);
    for (int l = 0; l < c->n_layer; l++) {
#define BLK(suffix) (snprintf(name, sizeof name, "h.%d.%s", l, suffix), name)
        add_norm(p, &c->norm, C, BLK("ln_1"));
        add_tensor(p, BLK("attn.c_attn.weight"), 2, 3 * C, C, 1);
        if (c->bias) add_tensor(p, BLK("attn.c_attn.bias"), 1, 3 * C, 0, 0);
        add_tensor(p, BLK("attn.c_proj.weight"), 2, C, C, 1);
        if (c->bias) add_tensor(p, BLK("attn.c_proj.bias"), 1, C, 0, 0);
        add_norm(p, &c->norm, C, BLK("ln_2"));
        add_tensor(p, BLK("mlp.c_fc.weight"), 2, H, C, 1);
        if (c->bias) add_tensor(p, BLK("mlp.c_fc.bias"), 1, H, 0, 0);
        add_tensor(p, BLK("mlp.c_proj.weight"), 2, C, H, 1);
        if (c->bias) add_tensor(p, BLK("mlp.c_proj.bias"), 1, C, 0, 0);
#undef BLK
    }
    add_norm(p, &c->norm, C, "ln_f");
    if (c->logit_bias) add_tensor(p, "lm_head.bias", 1, c->vocab, 0, 0);
}

/* ------------------------------------------------------------------------------- activations */

/* Views into the arena. Per-layer buffers are one region of L slices each: field + l * (slice). */
typedef struct {
    /* forward, kept for backward */
    float *emb;     /* [B,T,C]  wte[tok] + wpe (before shared_scale; only with shared_scale) */
    float *res;     /* [L+1][B,T,C]  residual stream entering block l (l = L: after the last block) */
    float *xmid;    /* [L][B,T,C]  residual stream between attention and MLP */
    float *ln1;     /* [L][B,T,C]  ln_1 output */
    float *st1;     /* [L][stats(B*T)] */
    float *qkv;     /* [L][B,T,3C] */
    float *att;     /* [L][B,NH,T,T] softmax probabilities (causal) */
    float *atty;    /* [L][B,T,C]  attention output before c_proj */
    float *ln2;     /* [L][B,T,C]  ln_2 output */
    float *st2;     /* [L][stats(B*T)] */
    float *fch;     /* [L][B,T,H]  c_fc output (GELU input) */
    float *fcg;     /* [L][B,T,H]  GELU output */
    float *lnf;     /* [B,T,C]  ln_f output (LM head input) */
    float *stf;     /* [stats(B*T)] */
    float *logits;  /* [B,T,V] */
    /* scratch: forward branch outputs, backward gradients (shared by all layers) */
    float *branch;  /* [B,T,C]  c_proj outputs */
    float *dres;    /* [B,T,C]  gradient of the residual stream */
    float *dln;     /* [B,T,C]  gradient of a norm output */
    float *dqkv;    /* [B,T,3C] */
    float *datt;    /* [B,NH,T,T] */
    float *datty;   /* [B,T,C] */
    float *dfcg;    /* [B,T,H] */
    float *dfch;    /* [B,T,H] */
    float *dlogits; /* [B,T,V] */
    size_t btc, bth, batt, bst, total;   /* per-layer slice sizes (max shape) and arena floats */
} gpt2_acts;

/* Carves the arena for max_batch x max_T; with base == NULL only computes a->total. */
static void gpt2_layout(const derf_gpt2 *m, float *base, gpt2_acts *a) {
    const derf_gpt2_config *c = &m->cfg;
    const size_t B = (size_t)m->max_batch, T = (size_t)m->max_T, C = (size_t)c->n_embd, L = (size_t)c->n_layer;
    const size_t H = 4 * C, NH = (size_t)c->n_head, V = (size_t)c->vocab;
    size_t cur = 0;
    memset(a, 0, sizeof *a);
    a->btc = B * T * C;
    a->bth = B * T * H;
    a->batt = B * NH * T * T;
    a->bst = derf_norm_stats_count(&c->norm, (int)(B * T));
#define TAKE(field, n) do { a->field = base ? base + cur : NULL; cur += (n); cur = (cur + 15) & ~(size_t)15; } while (0)
    TAKE(emb, c->shared_scale ? a->btc : 0);
    TAKE(res, (L + 1) * a->btc);
    TAKE(xmid, L * a->btc);
    TAKE(ln1, L * a->btc);
    TAKE(st1, L * a->bst);
    TAKE(qkv, L * 3 * a->btc);
    TAKE(att, L * a->batt);
    TAKE(atty, L * a->btc);
    TAKE(ln2, L * a->btc);
    TAKE(st2, L * a->bst);
    TAKE(fch, L * a->bth);
    TAKE(fcg, L * a->bth);
    TAKE(lnf, a->btc);
    TAKE(stf, a->bst);
    TAKE(logits, B * T * V);
    TAKE(branch, a->btc);
    TAKE(dres, a->btc);
    TAKE(dln, a->btc);
    TAKE(dqkv, 3 * a->btc);
    TAKE(datt, a->batt);
    TAKE(datty, a->btc);
    TAKE(dfcg, a->bth);
    TAKE(dfch, a->bth);
    TAKE(dlogits, B * T * V);
#undef TAKE
    a->total = cur;
    if (!c->shared_scale) a->emb = NULL;
    if (a->bst == 0) a->st1 = a->st2 = a->stf = NULL;   /* point-wise norms keep no statistics */
}

/* One layer's slices of the per-layer buffers. */
typedef struct {
    float *x, *xmid, *xout, *ln1, *st1, *qkv, *att, *atty, *ln2, *st2, *fch, *fcg;
} gpt2_layer_acts;

static void layer_acts(const gpt2_acts *a, int l, gpt2_layer_acts *y) {
    const size_t L = (size_t)l;
    y->x = a->res + L * a->btc;
    y->xout = a->res + (L + 1) * a->btc;
    y->xmid = a->xmid + L * a->btc;
    y->ln1 = a->ln1 + L * a->btc;
    y->st1 = a->st1 ? a->st1 + L * a->bst : NULL;
    y->qkv = a->qkv + L * 3 * a->btc;
    y->att = a->att + L * a->batt;
    y->atty = a->atty + L * a->btc;
    y->ln2 = a->ln2 + L * a->btc;
    y->st2 = a->st2 ? a->st2 + L * a->bst : NULL;
    y->fch = a->fch + L * a->bth;
    y->fcg = a->fcg + L * a->bth;
}

/* ------------------------------------------------------------------------------- build / init / free */

int derf_gpt2_build(derf_gpt2 *m, const derf_gpt2_config *cfg, int max_batch, int max_T,
                    char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (derf_gpt2_check(cfg, err, errlen)) return -1;
    if (max_batch <= 0) {
        derf_io_errf(err, errlen, "GPT-2 max_batch must be positive, not %d", max_batch);
        return -1;
    }
    if (max_T <= 0 || max_T > cfg->block_size) {
        derf_io_errf(err, errlen, "GPT-2 max_T must be in 1..block_size (%d), not %d", cfg->block_size, max_T);
        return -1;
    }
    m->cfg = *cfg;
    m->cfg.shared_scale = resolve_scale(cfg);
    m->max_batch = max_batch;
    m->max_T = max_T;
    derf_params_init(&m->params);
    register_tensors(m);
    derf_params_alloc(&m->params);

    gpt2_acts a;
    gpt2_layout(m, NULL, &a);
    const size_t ntok = (size_t)max_batch * max_T;
    m->acts_size = a.total;
    m->acts = calloc(a.total, sizeof(float));
    m->tokens = calloc(ntok, sizeof(int32_t));
    m->targets = calloc(ntok, sizeof(int32_t));
    if (!m->acts || !m->tokens || !m->targets) {
        derf_io_errf(err, errlen, "out of memory: the GPT-2 activations for batch %d x %d tokens need %.1f MB; "
                     "use a smaller batch or context", max_batch, max_T, (double)a.total * 4 / 1e6);
        derf_gpt2_free(m);
        return -1;
    }
    gpt2_layout(m, m->acts, &a);
    m->logits = a.logits;
    m->loss = NAN;
    return 0;
}

void derf_gpt2_free(derf_gpt2 *m) {
    if (m->dev) m->dev->free(m->dev->ctx);
    derf_params_free(&m->params);
    free(m->acts);
    free(m->tokens);
    free(m->targets);
    memset(m, 0, sizeof *m);
}

/* inits one norm layer from the spec, with alpha (if > 0) replacing the spec's alpha init */
static void init_norm(const derf_norm_spec *spec, int C, float *p, float alpha) {
    if (!p) return;
    derf_norm_spec s = *spec;
    if (alpha > 0) s.alpha_init = alpha;
    derf_norm_init(&s, C, p);
}

void derf_gpt2_init(derf_gpt2 *m, uint64_t seed) {
    const derf_gpt2_config *c = &m->cfg;
    const int C = c->n_embd, H = 4 * C;
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    derf_rng r;
    derf_rng_seed(&r, seed, 0x6770u /* "gp" */);
    memset(m->params.params, 0, m->params.total * sizeof(float));   /* every bias starts at 0 */
    gpt2_top_w w;
    derf_gpt2_top_weights(m, m->params.params, &w);
    derf_rng_fill_normal(&r, w.wte, (size_t)c->vocab * C, 0.0f, std);
    derf_rng_fill_normal(&r, w.wpe, (size_t)c->block_size * C, 0.0f, std);
    if (w.scale) w.scale[0] = c->shared_scale_init > 0 ? c->shared_scale_init : sqrtf((float)C);
    for (int l = 0; l < c->n_layer; l++) {
        gpt2_block_w b;
        derf_gpt2_block_weights(m, m->params.params, l, &b);
        init_norm(&c->norm, C, b.ln1, c->attn_alpha);
        derf_rng_fill_normal(&r, b.attn_w, (size_t)3 * C * C, 0.0f, std);
        derf_rng_fill_normal(&r, b.aproj_w, (size_t)C * C, 0.0f, proj_std);
        init_norm(&c->norm, C, b.ln2, c->ffn_alpha);
        derf_rng_fill_normal(&r, b.fc_w, (size_t)H * C, 0.0f, std);
        derf_rng_fill_normal(&r, b.mproj_w, (size_t)C * H, 0.0f, proj_std);
    }
    init_norm(&c->norm, C, w.lnf, c->final_alpha);
}

/* ------------------------------------------------------------------------------- forward */

float derf_gpt2_forward(derf_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    if (m->dev) return m->loss = m->dev->forward(m->dev->ctx, tokens, targets, B, T);
    const derf_gpt2_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int C = c->n_embd, H = 4 * C, NH = c->n_head, V = c->vocab, BT = B * T;
    if (B <= 0 || B > m->max_batch || T <= 0 || T > m->max_T) {
        fprintf(stderr, "derf: GPT-2 forward with batch %d x %d tokens, built for 1..%d x 1..%d\n", B, T,
                m->max_batch, m->max_T);
        abort();
    }
    for (int i = 0; i < BT; i++) {
        if (tokens[i] < 0 || tokens[i] >= V) {
            fprintf(stderr, "derf: GPT-2 token %d out of range [0, %d) at position %d\n", (int)tokens[i], V, i);
            abort();
        }
        if (targets && targets[i] >= V) {
            fprintf(stderr, "derf: GPT-2 target %d out of range [0, %d) at position %d\n", (int)targets[i], V, i);
            abort();
        }
    }
    memcpy(m->tokens, tokens, (size_t)BT * sizeof(int32_t));
    if (targets) memcpy(m->targets, targets, (size_t)BT * sizeof(int32_t));
    m->B = B;
    m->T = T;
    m->has_targets = targets != NULL;

    gpt2_acts a;
    gpt2_layout(m, m->acts, &a);
    gpt2_top_w w;
    derf_gpt2_top_weights(m, m->params.params, &w);
    const size_t btc = (size_t)BT * C, bth = (size_t)BT * H;

    /* x0[B,T,C] = shared_scale * (wte[tok] + wpe[t]), or the plain sum without shared_scale */
    if (w.scale) {
        derf_embed_forward(a.emb, tokens, w.wte, w.wpe, B, T, C);                    /* emb[B,T,C] */
        derf_scalar_scale_forward(a.res, a.emb, w.scale[0], btc);
    } else {
        derf_embed_forward(a.res, tokens, w.wte, w.wpe, B, T, C);
    }

    for (int l = 0; l < c->n_layer; l++) {
        gpt2_block_w bw;
        gpt2_layer_acts y;
        derf_gpt2_block_weights(m, m->params.params, l, &bw);
        layer_acts(&a, l, &y);
        /* attention branch: xmid[B,T,C] = x + c_proj(CausalAttn(c_attn(ln_1(x)))) */
        derf_norm_forward(ns, y.ln1, y.st1, y.x, bw.ln1, BT, C);                     /* ln1[B,T,C] */
        derf_linear_forward(y.qkv, y.ln1, bw.attn_w, bw.attn_b, BT, C, 3 * C);       /* qkv[B,T,3C] */
        derf_attention_forward(y.atty, y.att, y.qkv, B, T, C, NH, 1);               /* atty[B,T,C] */
        derf_linear_forward(a.branch, y.atty, bw.aproj_w, bw.aproj_b, BT, C, C);     /* branch[B,T,C] */
        derf_residual_forward(y.xmid, y.x, a.branch, btc);                           /* xmid[B,T,C] */
        /* MLP branch: xout[B,T,C] = xmid + c_proj(GELU(c_fc(ln_2(xmid)))) */
        derf_norm_forward(ns, y.ln2, y.st2, y.xmid, bw.ln2, BT, C);                  /* ln2[B,T,C] */
        derf_linear_forward(y.fch, y.ln2, bw.fc_w, bw.fc_b, BT, C, H);               /* fch[B,T,H] */
        derf_gelu_forward(y.fcg, y.fch, bth, DERF_GELU_TANH);                        /* fcg[B,T,H] */
        derf_linear_forward(a.branch, y.fcg, bw.mproj_w, bw.mproj_b, BT, H, C);      /* branch[B,T,C] */
        derf_residual_forward(y.xout, y.xmid, a.branch, btc);                        /* xout[B,T,C] */
    }

    const float *xL = a.res + (size_t)c->n_layer * a.btc;
    derf_norm_forward(ns, a.lnf, a.stf, xL, w.lnf, BT, C);                           /* lnf[B,T,C] */
    derf_linear_forward(a.logits, a.lnf, w.wte, w.lmb, BT, C, V);                       /* logits[B,T,V] */
    m->loss = targets ? derf_xent_forward_backward(NULL, a.logits, targets, 0.0f, 1.0f, BT, V) : NAN;
    return m->loss;
}

/* ------------------------------------------------------------------------------- backward */

void derf_gpt2_backward(derf_gpt2 *m, float scale) {
    if (m->dev) {
        m->dev->backward(m->dev->ctx, scale);
        return;
    }
    const derf_gpt2_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int B = m->B, T = m->T, C = c->n_embd, H = 4 * C, NH = c->n_head, V = c->vocab, BT = B * T;
    if (!m->has_targets || B <= 0) {
        fprintf(stderr, "derf: GPT-2 backward needs a forward with targets first\n");
        abort();
    }
    gpt2_acts a;
    gpt2_layout(m, m->acts, &a);
    gpt2_top_w w, dw;
    derf_gpt2_top_weights(m, m->params.params, &w);
    derf_gpt2_top_weights(m, m->params.grads, &dw);
    const size_t btc = (size_t)BT * C, bth = (size_t)BT * H;

    /* loss -> dlogits[B,T,V] = scale * (softmax - onehot) / kept */
    memset(a.dlogits, 0, (size_t)BT * V * sizeof(float));
    derf_xent_forward_backward(a.dlogits, a.logits, m->targets, 0.0f, scale, BT, V);
    /* tied LM head: dlnf[B,T,C], dwte[V,C] += dlogits^T lnf */
    derf_linear_backward_set(a.dln, dw.wte, dw.lmb, a.dlogits, a.lnf, w.wte, BT, C, V);
    /* ln_f: dlnf -> dres = dL/dx_L[B,T,C] */
    const float *xL = a.res + (size_t)c->n_layer * a.btc;
    memset(a.dres, 0, btc * sizeof(float));
    derf_norm_backward(ns, a.dres, dw.lnf, a.dln, xL, w.lnf, a.stf, BT, C);

    for (int l = c->n_layer - 1; l >= 0; l--) {
        gpt2_block_w bw, bg;
        gpt2_layer_acts y;
        derf_gpt2_block_weights(m, m->params.params, l, &bw);
        derf_gpt2_block_weights(m, m->params.grads, l, &bg);
        layer_acts(&a, l, &y);
        /* MLP branch: dres = dL/dxout[B,T,C]; the identity path keeps it, ln_2's input gradient adds */
        derf_linear_backward_set(a.dfcg, bg.mproj_w, bg.mproj_b, a.dres, y.fcg, bw.mproj_w, BT, H, C); /* dfcg[B,T,H] */
        derf_gelu_backward_set(a.dfch, a.dfcg, y.fch, bth, DERF_GELU_TANH);                         /* dfch[B,T,H] */
        derf_linear_backward_set(a.dln, bg.fc_w, bg.fc_b, a.dfch, y.ln2, bw.fc_w, BT, C, H);          /* dln2[B,T,C] */
        derf_norm_backward(ns, a.dres, bg.ln2, a.dln, y.xmid, bw.ln2, y.st2, BT, C);               /* dres = dL/dxmid */
        /* attention branch: dres = dL/dxmid[B,T,C] -> dL/dx */
        derf_linear_backward_set(a.datty, bg.aproj_w, bg.aproj_b, a.dres, y.atty, bw.aproj_w, BT, C, C); /* datty */
        memset(a.dqkv, 0, 3 * btc * sizeof(float));
        derf_attention_backward(a.dqkv, a.datt, a.datty, y.qkv, y.att, B, T, C, NH, 1);          /* dqkv[B,T,3C] */
        derf_linear_backward_set(a.dln, bg.attn_w, bg.attn_b, a.dqkv, y.ln1, bw.attn_w, BT, C, 3 * C); /* dln1[B,T,C] */
        derf_norm_backward(ns, a.dres, bg.ln1, a.dln, y.x, bw.ln1, y.st1, BT, C);                  /* dres = dL/dx */
    }

    /* x0 = s * emb: ds += sum(dx0 * emb) (double), demb = s * dx0 (in place); then the embedding */
    if (w.scale) derf_scalar_scale_backward(a.dres, dw.scale, a.emb, w.scale[0], btc);
    derf_embed_backward(dw.wte, dw.wpe, a.dres, m->tokens, B, T, C);     /* dwte[V,C], dwpe[T,C] += */
}

/* ------------------------------------------------------------------------------- optimizer, device */

void derf_gpt2_zero_grad(derf_gpt2 *m) {
    if (m->dev) m->dev->zero_grad(m->dev->ctx);
    else derf_params_zero_grad(&m->params);
}

void derf_gpt2_mean_grads(derf_gpt2 *m) {
    if (m->dev) m->dev->mean_grads(m->dev->ctx);
    else derf_dist_mean_floats(m->params.grads, m->params.total);
}

float derf_gpt2_clip_grad_norm(derf_gpt2 *m, float max_norm) {
    return m->dev ? m->dev->clip_grad_norm(m->dev->ctx, max_norm) : derf_clip_grad_norm(&m->params, max_norm);
}

void derf_gpt2_adamw_step(derf_gpt2 *m, const derf_adamw_cfg *cfg, int step) {
    if (m->dev) m->dev->adamw_step(m->dev->ctx, cfg, step);
    else derf_adamw_step(&m->params, cfg, step);
}

void derf_gpt2_sync_host(derf_gpt2 *m) {
    if (m->dev) m->dev->to_host(m->dev->ctx);
}

void derf_gpt2_sync_device(derf_gpt2 *m) {
    if (m->dev) m->dev->to_device(m->dev->ctx);
}

/* ------------------------------------------------------------------------------- metadata */

int derf_gpt2_config_to_meta(const derf_gpt2_config *cfg, char keys[][32], char vals[][128], int max) {
    int n = 0;
#define PUT(k, ...) do { if (n >= max) return -1; snprintf(keys[n], 32, "%s", k); \
                         snprintf(vals[n], 128, __VA_ARGS__); n++; } while (0)
    PUT("model", "gpt2");
    PUT("vocab", "%d", cfg->vocab);
    PUT("block_size", "%d", cfg->block_size);
    PUT("n_layer", "%d", cfg->n_layer);
    PUT("n_head", "%d", cfg->n_head);
    PUT("n_embd", "%d", cfg->n_embd);
    PUT("bias", "%d", cfg->bias);
    if (n >= max) return -1;
    snprintf(keys[n], 32, "norm");
    derf_norm_format(&cfg->norm, vals[n], 128);
    n++;
    PUT("shared_scale", "%d", resolve_scale(cfg));
    PUT("attn_alpha", "%.9g", (double)cfg->attn_alpha);
    PUT("ffn_alpha", "%.9g", (double)cfg->ffn_alpha);
    PUT("final_alpha", "%.9g", (double)cfg->final_alpha);
    if (cfg->logit_bias) PUT("logit_bias", "%d", 1); /* absent: 0 (checkpoints from before it existed) */
#undef PUT
    return n;
}

static const char *meta_get(const char *(*get)(void *, const char *), void *ctx, const char *key,
                            char *err, size_t errlen) {
    const char *v = get(ctx, key);
    if (!v) derf_io_errf(err, errlen, "GPT-2 metadata: key '%s' is missing (not a derf GPT-2 checkpoint?)", key);
    return v;
}

/* an integer in [lo, hi] */
static int meta_int(const char *(*get)(void *, const char *), void *ctx, const char *key, long lo, long hi,
                    int *out, char *err, size_t errlen) {
    const char *v = meta_get(get, ctx, key, err, errlen);
    if (!v) return -1;
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        derf_io_errf(err, errlen, "GPT-2 metadata: '%s' = '%s' is not an integer in %ld..%ld", key, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int meta_alpha(const char *(*get)(void *, const char *), void *ctx, const char *key, float *out,
                      char *err, size_t errlen) {
    const char *v = meta_get(get, ctx, key, err, errlen);
    if (!v) return -1;
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= 0.0 && x < 1e30)) {
        derf_io_errf(err, errlen, "GPT-2 metadata: '%s' = '%s' is not a number >= 0", key, v);
        return -1;
    }
    *out = (float)x;
    return 0;
}

int derf_gpt2_config_from_meta(derf_gpt2_config *cfg, const char *(*get)(void *ctx, const char *key),
                               void *ctx, char *err, size_t errlen) {
    derf_gpt2_config c;
    memset(&c, 0, sizeof c);
    const char *v = meta_get(get, ctx, "model", err, errlen);
    if (!v) return -1;
    if (strcmp(v, "gpt2") != 0) {
        derf_io_errf(err, errlen, "GPT-2 metadata: model is '%s', not 'gpt2'", v);
        return -1;
    }
    const long big = 1000000000L;
    if (meta_int(get, ctx, "vocab", 1, big, &c.vocab, err, errlen) ||
        meta_int(get, ctx, "block_size", 1, big, &c.block_size, err, errlen) ||
        meta_int(get, ctx, "n_layer", 1, big, &c.n_layer, err, errlen) ||
        meta_int(get, ctx, "n_head", 1, big, &c.n_head, err, errlen) ||
        meta_int(get, ctx, "n_embd", 1, big, &c.n_embd, err, errlen) ||
        meta_int(get, ctx, "bias", 0, 1, &c.bias, err, errlen) ||
        meta_int(get, ctx, "shared_scale", 0, 1, &c.shared_scale, err, errlen))
        return -1;
    if (!(v = meta_get(get, ctx, "norm", err, errlen))) return -1;
    char nerr[400];
    if (derf_norm_parse(v, &c.norm, nerr, sizeof nerr)) {
        derf_io_errf(err, errlen, "GPT-2 metadata: norm: %s", nerr);
        return -1;
    }
    if (meta_alpha(get, ctx, "attn_alpha", &c.attn_alpha, err, errlen) ||
        meta_alpha(get, ctx, "ffn_alpha", &c.ffn_alpha, err, errlen) ||
        meta_alpha(get, ctx, "final_alpha", &c.final_alpha, err, errlen))
        return -1;
    if (get(ctx, "logit_bias") && meta_int(get, ctx, "logit_bias", 0, 1, &c.logit_bias, err, errlen)) return -1;
    char cerr[256];
    if (derf_gpt2_check(&c, cerr, sizeof cerr)) {
        derf_io_errf(err, errlen, "GPT-2 metadata: %s", cerr);
        return -1;
    }
    *cfg = c;
    return 0;
}
