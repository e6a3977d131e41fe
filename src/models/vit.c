/* vit.c: the Vision Transformer of the paper's ViT runs (timm VisionTransformer, global_pool='avg'),
 * on the CPU ops: config presets and checks, tensor registration under timm's state-dict names,
 * timm-style init, forward and backward (mirrors of each other, shape comments at each step),
 * and the config <-> safetensors metadata mapping.
 *
 * Shape letters: B batch, T = 1 + NP tokens (class token first), NP patches, D width, H = mlp_ratio*D
 * MLP hidden width, NH heads, K = chans*patch*patch (one flattened patch), V classes, L depth.
 *
 *   images[B,C,img,img] -patch_embed-> pe[B*NP,D]; x0[B,T,D] = [cls ; pe] + pos_embed
 *   for l < L:  xmid = x + DropPath_l(proj(Attn(qkv(norm1(x)))))
 *               x'   = xmid + DropPath_l(fc2(GELU(fc1(norm2(xmid)))))
 *   pool AVG: pooled[B,D] = mean over the NP patch tokens (class token excluded), then fc_norm
 *   pool CLS: pooled[B,D] = token 0, then norm (timm norms every token and takes token 0; the norms
 *             here are row-wise or point-wise, so norming token 0 only gives the same values and grads)
 *   logits[B,V] = head(normed pooled)
 *
 * Memory: the parameter table (one slab each for params, grads, AdamW m, v) and one activation arena
 * sized for max_batch, carved by vit_layout() below; forward and backward allocate nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/io.h"
#include "derf/train.h"
#include "derf/vit.h"
#include "models/vit_weights.h"

/* ------------------------------------------------------------------------------- presets */

typedef struct {
    const char *name;
    int img, chans, patch, dim, depth, heads, mlp_ratio, classes;
    const char *about;
} vit_preset;

/* The image presets are for the project's 28x28 grey datasets (MNIST, Fashion-MNIST). tiny uses 7x7
 * patches (16 + class token = 17 tokens: the PyTorch yardstick model of docs/performance.md's reference figures, fast enough
 * for the 15-minute compare); the larger ones 4x4 patches (49 + 1 = 50 tokens). Parameter counts are
 * with a derf norm (alpha, s, gamma, beta). */
static const vit_preset PRESETS[] = {
    {"tiny",      28, 1, 7,  64, 4, 4, 4, 10, "28x28x1, patch 7, dim 64, depth 4, heads 4 (~0.20M params)"},
    {"small",     28, 1, 4,  96, 6, 4, 4, 10, "28x28x1, patch 4, dim 96, depth 6, heads 4 (~0.68M params)"},
    {"base-mini", 28, 1, 4, 128, 8, 4, 4, 10, "28x28x1, patch 4, dim 128, depth 8, heads 4 (~1.6M params)"},
    {"test",       8, 1, 4,  16, 2, 2, 4,  5, "8x8x1, patch 4, dim 16, depth 2, heads 2 (unit tests)"},
};
#define N_PRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

int derf_vit_preset(derf_vit_config *cfg, const char *name, char *err, size_t errlen) {
    for (int i = 0; i < N_PRESETS; i++) {
        const vit_preset *p = &PRESETS[i];
        if (!name || strcmp(name, p->name) != 0) continue;
        memset(cfg, 0, sizeof *cfg);
        cfg->img = p->img; cfg->chans = p->chans; cfg->patch = p->patch;
        cfg->dim = p->dim; cfg->depth = p->depth; cfg->heads = p->heads;
        cfg->mlp_ratio = p->mlp_ratio; cfg->classes = p->classes;
        cfg->pool = DERF_POOL_AVG;        /* the paper's setting (global_pool='avg') */
        cfg->gelu = DERF_GELU_ERF;        /* timm nn.GELU */
        cfg->drop_path = 0.0f;
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
    derf_io_errf(err, errlen, "unknown ViT preset '%s' (known: %s)", name ? name : "(null)", names);
    return -1;
}

int derf_vit_check(const derf_vit_config *c, char *err, size_t errlen) {
#define NEED(cond, ...) do { if (!(cond)) { derf_io_errf(err, errlen, __VA_ARGS__); return -1; } } while (0)
    NEED(c->img > 0 && c->img <= 4096, "ViT img must be in 1..4096, not %d", c->img);
    NEED(c->chans > 0 && c->chans <= 64, "ViT chans must be in 1..64, not %d", c->chans);
    NEED(c->patch > 0 && c->img % c->patch == 0, "ViT patch %d must be positive and divide img %d", c->patch, c->img);
    NEED(c->dim > 0 && c->dim <= 65536, "ViT dim must be in 1..65536, not %d", c->dim);
    NEED(c->depth > 0 && c->depth <= 1024, "ViT depth must be in 1..1024, not %d", c->depth);
    NEED(c->heads > 0 && c->dim % c->heads == 0, "ViT heads %d must be positive and divide dim %d", c->heads, c->dim);
    NEED(c->mlp_ratio > 0 && c->mlp_ratio <= 64, "ViT mlp_ratio must be in 1..64, not %d", c->mlp_ratio);
    NEED(c->classes > 0 && c->classes <= 1000000, "ViT classes must be in 1..1000000, not %d", c->classes);
    NEED(c->pool == DERF_POOL_AVG || c->pool == DERF_POOL_CLS, "ViT pool must be avg or cls");
    NEED(c->gelu == DERF_GELU_ERF || c->gelu == DERF_GELU_TANH, "ViT gelu must be erf or tanh");
    NEED(c->drop_path >= 0.0f && c->drop_path < 1.0f, "ViT drop_path must be in [0, 1), not %g", (double)c->drop_path);
    long np = (long)(c->img / c->patch) * (c->img / c->patch);
    NEED(np + 1 <= 65536, "ViT has %ld patches; at most 65535 are supported (use a larger patch)", np);
#undef NEED
    return 0;
}

/* ------------------------------------------------------------------------------- parameters */

/* Tensors are registered in timm's state-dict order:
 *   0 cls_token, 1 pos_embed, 2 patch_embed.proj.weight, 3 patch_embed.proj.bias,
 *   then per block (NB = 2*kn + 8 tensors, kn = tensors of one norm layer):
 *     norm1.* (kn), attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias,
 *     norm2.* (kn), mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias,
 *   then fc_norm.* or norm.* (kn), head.weight, head.bias.
 * A norm layer's tensors are consecutive in the slab, packed as derf_norm_params lays them out, so
 * the first one's offset is the norm's parameter block. */
enum { T_CLS, T_POS, T_PE_W, T_PE_B, T_BLOCKS };

static int norm_tensors(const derf_vit *m) {
    derf_norm_param np[4];
    return derf_norm_params(&m->cfg.norm, m->cfg.dim, np);
}

/* pointer to tensor idx in slab (params or grads); a norm with no tensors gets NULL */
static float *tensor_at(const derf_vit *m, float *slab, int idx, int is_norm) {
    if (is_norm && norm_tensors(m) == 0) return NULL;
    return slab + m->params.t[idx].offset;
}

void derf_vit_block_weights(const derf_vit *m, float *slab, int l, vit_block_w *w) {
    const int kn = norm_tensors(m), base = T_BLOCKS + l * (2 * kn + 8);
    w->n1 = tensor_at(m, slab, base, 1);
    w->qkv_w = tensor_at(m, slab, base + kn, 0);
    w->qkv_b = tensor_at(m, slab, base + kn + 1, 0);
    w->proj_w = tensor_at(m, slab, base + kn + 2, 0);
    w->proj_b = tensor_at(m, slab, base + kn + 3, 0);
    w->n2 = tensor_at(m, slab, base + kn + 4, 1);
    w->fc1_w = tensor_at(m, slab, base + 2 * kn + 4, 0);
    w->fc1_b = tensor_at(m, slab, base + 2 * kn + 5, 0);
    w->fc2_w = tensor_at(m, slab, base + 2 * kn + 6, 0);
    w->fc2_b = tensor_at(m, slab, base + 2 * kn + 7, 0);
}

void derf_vit_top_weights(const derf_vit *m, float *slab, vit_top_w *w) {
    const int kn = norm_tensors(m), fin = T_BLOCKS + m->cfg.depth * (2 * kn + 8);
    w->cls = tensor_at(m, slab, T_CLS, 0);
    w->pos = tensor_at(m, slab, T_POS, 0);
    w->pe_w = tensor_at(m, slab, T_PE_W, 0);
    w->pe_b = tensor_at(m, slab, T_PE_B, 0);
    w->fnorm = tensor_at(m, slab, fin, 1);
    w->head_w = tensor_at(m, slab, fin + kn, 0);
    w->head_b = tensor_at(m, slab, fin + kn + 1, 0);
}

static void add_tensor(derf_params *p, const char *name, int ndim, int d0, int d1, int d2, int d3, int decay) {
    int shape[4] = {d0, d1, d2, d3};
    derf_params_add(p, name, ndim, shape, decay);
}

#define add_norm derf_norm_register /* the tensors of one norm layer called prefix */

static void register_tensors(derf_vit *m) {
    const derf_vit_config *c = &m->cfg;
    const int D = c->dim, H = c->mlp_ratio * c->dim, P = c->patch;
    derf_params *p = &m->params;
    char name[DERF_NAME_MAX];
    add_tensor(p, "cls_token", 3, 1, 1, D, 0, 0);
    add_tensor(p, "pos_embed", 3, 1, m->T, D, 0, 0);
    add_tensor(p, "patch_embed.proj.weight", 4, D, c->chans, P, P, 1);
    add_tensor(p, "patch_embed.proj.bias", 1, D, 0, 0, 0, 0);
    for (int l = 0; l < c->depth; l++) {
#define BLK(suffix) (snprintf(name, sizeof name, "blocks.%d.%s", l, suffix), name)
        add_norm(p, &c->norm, D, BLK("norm1"));
        add_tensor(p, BLK("attn.qkv.weight"), 2, 3 * D, D, 0, 0, 1);
        add_tensor(p, BLK("attn.qkv.bias"), 1, 3 * D, 0, 0, 0, 0);
        add_tensor(p, BLK("attn.proj.weight"), 2, D, D, 0, 0, 1);
        add_tensor(p, BLK("attn.proj.bias"), 1, D, 0, 0, 0, 0);
        add_norm(p, &c->norm, D, BLK("norm2"));
        add_tensor(p, BLK("mlp.fc1.weight"), 2, H, D, 0, 0, 1);
        add_tensor(p, BLK("mlp.fc1.bias"), 1, H, 0, 0, 0, 0);
        add_tensor(p, BLK("mlp.fc2.weight"), 2, D, H, 0, 0, 1);
        add_tensor(p, BLK("mlp.fc2.bias"), 1, D, 0, 0, 0, 0);
#undef BLK
    }
    add_norm(p, &c->norm, D, c->pool == DERF_POOL_AVG ? "fc_norm" : "norm");
    add_tensor(p, "head.weight", 2, c->classes, D, 0, 0, 1);
    add_tensor(p, "head.bias", 1, c->classes, 0, 0, 0, 0);
}

/* ------------------------------------------------------------------------------- activations */

/* Views into the arena. Per-layer buffers are one region of L slices each: field + l * (slice). */
typedef struct {
    /* forward, kept for backward */
    float *cols;    /* [B*NP, K]  im2col of the images */
    float *pe;      /* [B*NP, D]  patch embeddings */
    float *res;     /* [L+1][B,T,D]  residual stream entering block l (l = L: after the last block) */
    float *xmid;    /* [L][B,T,D]  residual stream between attention and MLP */
    float *ln1;     /* [L][B,T,D]  norm1 output */
    float *st1;     /* [L][stats(B*T)] */
    float *qkv;     /* [L][B,T,3D] */
    float *att;     /* [L][B,NH,T,T] softmax probabilities */
    float *atty;    /* [L][B,T,D]  attention output before proj */
    float *ln2;     /* [L][B,T,D]  norm2 output */
    float *st2;     /* [L][stats(B*T)] */
    float *fch;     /* [L][B,T,H]  fc1 output (GELU input) */
    float *fcg;     /* [L][B,T,H]  GELU output */
    float *keep1;   /* [L][B]      drop-path scale of the attention branch */
    float *keep2;   /* [L][B]      ... and of the MLP branch */
    float *pooled;  /* [B,D]       pooled tokens (mean of patches, or the class token) */
    float *fnorm;   /* [B,D]       fc_norm / norm output (head input) */
    float *fst;     /* [stats(B)] */
    float *logits;  /* [B,V] */
    /* scratch: forward branch outputs, backward gradients (shared by all layers) */
    float *branch;  /* [B,T,D]  attn proj / fc2 output; backward: drop-path-scaled branch gradient */
    float *dres;    /* [B,T,D]  gradient of the residual stream */
    float *dln;     /* [B,T,D]  gradient of a norm output; also dpe [B*NP,D] at the end */
    float *dqkv;    /* [B,T,3D] */
    float *datt;    /* [B,NH,T,T] */
    float *datty;   /* [B,T,D] */
    float *dfcg;    /* [B,T,H] */
    float *dfch;    /* [B,T,H] */
    float *dpooled; /* [B,D] */
    float *dfnorm;  /* [B,D] */
    size_t btd, bth, batt, bst, total;   /* per-layer slice sizes (max_batch) and arena floats */
} vit_acts;

/* Carves the arena for max_batch; with base == NULL only computes a->total. */
static void vit_layout(const derf_vit *m, float *base, vit_acts *a) {
    const derf_vit_config *c = &m->cfg;
    const size_t B = (size_t)m->max_batch, T = (size_t)m->T, D = (size_t)c->dim, L = (size_t)c->depth;
    const size_t H = (size_t)c->mlp_ratio * D, NH = (size_t)c->heads, NP = T - 1;
    const size_t K = (size_t)c->chans * c->patch * c->patch;
    size_t cur = 0;
    memset(a, 0, sizeof *a);
    a->btd = B * T * D;
    a->bth = B * T * H;
    a->batt = B * NH * T * T;
    a->bst = derf_norm_stats_count(&c->norm, (int)(B * T));
#define TAKE(field, n) do { a->field = base ? base + cur : NULL; cur += (n); cur = (cur + 15) & ~(size_t)15; } while (0)
    TAKE(cols, B * NP * K);
    TAKE(pe, B * NP * D);
    TAKE(res, (L + 1) * a->btd);
    TAKE(xmid, L * a->btd);
    TAKE(ln1, L * a->btd);
    TAKE(st1, L * a->bst);
    TAKE(qkv, L * 3 * a->btd);
    TAKE(att, L * a->batt);
    TAKE(atty, L * a->btd);
    TAKE(ln2, L * a->btd);
    TAKE(st2, L * a->bst);
    TAKE(fch, L * a->bth);
    TAKE(fcg, L * a->bth);
    TAKE(keep1, L * B);
    TAKE(keep2, L * B);
    TAKE(pooled, B * D);
    TAKE(fnorm, B * D);
    TAKE(fst, derf_norm_stats_count(&c->norm, (int)B));
    TAKE(logits, B * (size_t)c->classes);
    TAKE(branch, a->btd);
    TAKE(dres, a->btd);
    TAKE(dln, a->btd);
    TAKE(dqkv, 3 * a->btd);
    TAKE(datt, a->batt);
    TAKE(datty, a->btd);
    TAKE(dfcg, a->bth);
    TAKE(dfch, a->bth);
    TAKE(dpooled, B * D);
    TAKE(dfnorm, B * D);
#undef TAKE
    a->total = cur;
    if (a->bst == 0) a->st1 = a->st2 = NULL;       /* point-wise norms keep no statistics */
    if (derf_norm_stats_count(&c->norm, 1) == 0) a->fst = NULL;
}

/* One layer's slices of the per-layer buffers. */
typedef struct {
    float *x, *xmid, *xout, *ln1, *st1, *qkv, *att, *atty, *ln2, *st2, *fch, *fcg, *keep1, *keep2;
} vit_layer_acts;

static void layer_acts(const derf_vit *m, const vit_acts *a, int l, vit_layer_acts *y) {
    const size_t L = (size_t)l, B = (size_t)m->max_batch;
    y->x = a->res + L * a->btd;
    y->xout = a->res + (L + 1) * a->btd;
    y->xmid = a->xmid + L * a->btd;
    y->ln1 = a->ln1 + L * a->btd;
    y->st1 = a->st1 ? a->st1 + L * a->bst : NULL;
    y->qkv = a->qkv + L * 3 * a->btd;
    y->att = a->att + L * a->batt;
    y->atty = a->atty + L * a->btd;
    y->ln2 = a->ln2 + L * a->btd;
    y->st2 = a->st2 ? a->st2 + L * a->bst : NULL;
    y->fch = a->fch + L * a->bth;
    y->fcg = a->fcg + L * a->bth;
    y->keep1 = a->keep1 + L * B;
    y->keep2 = a->keep2 + L * B;
}

/* ------------------------------------------------------------------------------- build / init / free */

int derf_vit_build(derf_vit *m, const derf_vit_config *cfg, int max_batch, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (derf_vit_check(cfg, err, errlen)) return -1;
    if (max_batch <= 0) {
        derf_io_errf(err, errlen, "ViT max_batch must be positive, not %d", max_batch);
        return -1;
    }
    m->cfg = *cfg;
    m->max_batch = max_batch;
    const int g = cfg->img / cfg->patch;
    m->T = 1 + g * g;
    derf_params_init(&m->params);
    register_tensors(m);
    derf_params_alloc(&m->params);

    vit_acts a;
    vit_layout(m, NULL, &a);
    m->acts_size = a.total;
    m->acts = calloc(a.total, sizeof(float));
    if (!m->acts) {
        derf_io_errf(err, errlen, "out of memory: the ViT activations for batch %d need %.1f MB; "
                     "use a smaller batch", max_batch, (double)a.total * 4 / 1e6);
        derf_params_free(&m->params);
        memset(m, 0, sizeof *m);
        return -1;
    }
    vit_layout(m, m->acts, &a);
    m->logits = a.logits;
    m->features = a.fnorm;
    return 0;
}

void derf_vit_free(derf_vit *m) {
    if (m->dev) m->dev->free(m->dev->ctx);
    derf_params_free(&m->params);
    free(m->acts);
    memset(m, 0, sizeof *m);
}

/* timm trunc_normal_(std): normal(0, std) resampled outside the absolute bounds [-2, 2] */
static void trunc_normal(derf_rng *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) {
        float v;
        do v = std * derf_rng_normal(r); while (v < -2.0f || v > 2.0f);
        x[i] = v;
    }
}

void derf_vit_init(derf_vit *m, uint64_t seed) {
    const derf_vit_config *c = &m->cfg;
    const int D = c->dim, H = c->mlp_ratio * c->dim, K = c->chans * c->patch * c->patch;
    derf_rng r;
    derf_rng_seed(&r, seed, 0x7669u /* "vi" */);
    memset(m->params.params, 0, m->params.total * sizeof(float));   /* every bias starts at 0 */
    vit_top_w w;
    derf_vit_top_weights(m, m->params.params, &w);
    derf_rng_fill_normal(&r, w.cls, (size_t)D, 0.0f, 1e-6f);         /* cls_token ~ N(0, 1e-6) */
    trunc_normal(&r, w.pos, (size_t)m->T * D, 0.02f);               /* pos_embed */
    const float bound = 1.0f / sqrtf((float)K);                      /* nn.Conv2d default init */
    derf_rng_fill_uniform(&r, w.pe_w, (size_t)D * K, -bound, bound);
    derf_rng_fill_uniform(&r, w.pe_b, (size_t)D, -bound, bound);
    for (int l = 0; l < c->depth; l++) {
        vit_block_w b;
        derf_vit_block_weights(m, m->params.params, l, &b);
        if (b.n1) derf_norm_init(&c->norm, D, b.n1);
        trunc_normal(&r, b.qkv_w, (size_t)3 * D * D, 0.02f);
        trunc_normal(&r, b.proj_w, (size_t)D * D, 0.02f);
        if (b.n2) derf_norm_init(&c->norm, D, b.n2);
        trunc_normal(&r, b.fc1_w, (size_t)H * D, 0.02f);
        trunc_normal(&r, b.fc2_w, (size_t)D * H, 0.02f);
    }
    if (w.fnorm) derf_norm_init(&c->norm, D, w.fnorm);
    trunc_normal(&r, w.head_w, (size_t)c->classes * D, 0.02f);
}

/* ------------------------------------------------------------------------------- forward */

/* drop-path rate of block l: linspace(0, drop_path, depth)[l] (timm). Drop path is active only when
 * train != 0 and rng != NULL; otherwise every keep scale is 1 (eval mode). */
float derf_vit_block_drop_rate(const derf_vit_config *c, int l) {
    return c->depth > 1 ? c->drop_path * (float)l / (float)(c->depth - 1) : 0.0f;
}

void derf_vit_forward(derf_vit *m, const float *images, int B, int train, derf_rng *rng) {
    const derf_vit_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int T = m->T, NP = T - 1, D = c->dim, H = c->mlp_ratio * D, NH = c->heads, V = c->classes;
    const int BT = B * T;
    const int gB = m->shard_total > 0 ? m->shard_total : B, gO = m->shard_total > 0 ? m->shard_off : 0;
    if (B <= 0 || B > m->max_batch || gO + B > gB) {
        fprintf(stderr, "derf: ViT forward with batch %d, built for 1..%d\n", B, m->max_batch);
        abort();
    }
    if (m->dev) {
        m->dev->forward(m->dev->ctx, images, B, train, rng);
        return;
    }
    vit_acts a;
    vit_layout(m, m->acts, &a);
    vit_top_w w;
    derf_vit_top_weights(m, m->params.params, &w);

    /* patch embedding: images[B,C,img,img] -> cols[B*NP,K] -> pe[B*NP,D] */
    derf_patch_embed_forward(a.pe, a.cols, images, w.pe_w, w.pe_b, B, c->chans, c->img, c->img, c->patch, D);
    /* x0[B,T,D]: token 0 = cls_token, tokens 1.. = patches; then += pos_embed[T,D] */
    float *x0 = a.res;
    for (int b = 0; b < B; b++) {
        memcpy(x0 + (size_t)b * T * D, w.cls, (size_t)D * sizeof(float));
        memcpy(x0 + ((size_t)b * T + 1) * D, a.pe + (size_t)b * NP * D, (size_t)NP * D * sizeof(float));
    }
    derf_add_pos_forward(x0, w.pos, B, T, D);

    for (int l = 0; l < c->depth; l++) {
        vit_block_w bw;
        vit_layer_acts y;
        derf_vit_block_weights(m, m->params.params, l, &bw);
        layer_acts(m, &a, l, &y);
        const float p = (train && rng) ? derf_vit_block_drop_rate(c, l) : 0.0f;
        /* attention branch: xmid[B,T,D] = x + DropPath(proj(Attn(qkv(norm1(x))))) */
        derf_norm_forward(ns, y.ln1, y.st1, y.x, bw.n1, BT, D);                    /* ln1[B,T,D] */
        derf_linear_forward(y.qkv, y.ln1, bw.qkv_w, bw.qkv_b, BT, D, 3 * D);       /* qkv[B,T,3D] */
        derf_attention_forward(y.atty, y.att, y.qkv, B, T, D, NH, 0);             /* atty[B,T,D], att[B,NH,T,T] */
        derf_linear_forward(a.branch, y.atty, bw.proj_w, bw.proj_b, BT, D, D);     /* branch[B,T,D] */
        derf_drop_path_forward_shard(a.branch, y.keep1, p, B, (size_t)T * D, rng, gB, gO);
        derf_residual_forward(y.xmid, y.x, a.branch, (size_t)BT * D);              /* xmid[B,T,D] */
        /* MLP branch: xout[B,T,D] = xmid + DropPath(fc2(GELU(fc1(norm2(xmid))))) */
        derf_norm_forward(ns, y.ln2, y.st2, y.xmid, bw.n2, BT, D);                 /* ln2[B,T,D] */
        derf_linear_forward(y.fch, y.ln2, bw.fc1_w, bw.fc1_b, BT, D, H);           /* fch[B,T,H] */
        derf_gelu_forward(y.fcg, y.fch, (size_t)BT * H, c->gelu);                 /* fcg[B,T,H] */
        derf_linear_forward(a.branch, y.fcg, bw.fc2_w, bw.fc2_b, BT, H, D);        /* branch[B,T,D] */
        derf_drop_path_forward_shard(a.branch, y.keep2, p, B, (size_t)T * D, rng, gB, gO);
        derf_residual_forward(y.xout, y.xmid, a.branch, (size_t)BT * D);           /* xout[B,T,D] */
    }

    /* pooling: pooled[B,D] = mean of the patch tokens (AVG) or the class token (CLS) */
    const float *xL = a.res + (size_t)c->depth * a.btd;
    if (c->pool == DERF_POOL_AVG) {
        derf_mean_pool_forward(a.pooled, xL, B, T, 1, D);
    } else {
        for (int b = 0; b < B; b++)
            memcpy(a.pooled + (size_t)b * D, xL + (size_t)b * T * D, (size_t)D * sizeof(float));
    }
    derf_norm_forward(ns, a.fnorm, a.fst, a.pooled, w.fnorm, B, D);                /* fnorm[B,D] */
    derf_linear_forward(a.logits, a.fnorm, w.head_w, w.head_b, B, D, V);           /* logits[B,V] */
}

/* ------------------------------------------------------------------------------- backward */

/* Gradient for a drop-path branch: dres itself when nothing was dropped, else a scaled copy. */
static const float *branch_grad(float *scratch, const float *dres, const float *keep, int B, size_t rest) {
    int all_kept = 1;
    for (int b = 0; b < B; b++) all_kept &= keep[b] == 1.0f;
    if (all_kept) return dres;
    memcpy(scratch, dres, (size_t)B * rest * sizeof(float));
    derf_drop_path_backward(scratch, keep, B, rest);
    return scratch;
}

void derf_vit_backward(derf_vit *m, const float *dlogits, int B) {
    const derf_vit_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int T = m->T, NP = T - 1, D = c->dim, H = c->mlp_ratio * D, NH = c->heads, V = c->classes;
    const int BT = B * T;
    if (B <= 0 || B > m->max_batch) {
        fprintf(stderr, "derf: ViT backward with batch %d, built for 1..%d\n", B, m->max_batch);
        abort();
    }
    if (m->dev) {
        m->dev->backward(m->dev->ctx, dlogits, B);
        return;
    }
    vit_acts a;
    vit_layout(m, m->acts, &a);
    vit_top_w w, dw;
    derf_vit_top_weights(m, m->params.params, &w);
    derf_vit_top_weights(m, m->params.grads, &dw);
    const size_t btd = (size_t)BT * D, bth = (size_t)BT * H;

    /* head: dlogits[B,V] -> dfnorm[B,D] */
    derf_linear_backward_set(a.dfnorm, dw.head_w, dw.head_b, dlogits, a.fnorm, w.head_w, B, D, V);
    /* final norm: dfnorm[B,D] -> dpooled[B,D] */
    memset(a.dpooled, 0, (size_t)B * D * sizeof(float));
    derf_norm_backward(ns, a.dpooled, dw.fnorm, a.dfnorm, a.pooled, w.fnorm, a.fst, B, D);
    /* pooling: dpooled[B,D] -> dres[B,T,D] (gradient of the last residual stream) */
    memset(a.dres, 0, btd * sizeof(float));
    if (c->pool == DERF_POOL_AVG) {
        derf_mean_pool_backward(a.dres, a.dpooled, B, T, 1, D);
    } else {
        for (int b = 0; b < B; b++)
            memcpy(a.dres + (size_t)b * T * D, a.dpooled + (size_t)b * D, (size_t)D * sizeof(float));
    }

    for (int l = c->depth - 1; l >= 0; l--) {
        vit_block_w bw, bg;
        vit_layer_acts y;
        derf_vit_block_weights(m, m->params.params, l, &bw);
        derf_vit_block_weights(m, m->params.grads, l, &bg);
        layer_acts(m, &a, l, &y);
        /* MLP branch: dres = dL/dxout[B,T,D]; the identity path keeps it, norm2's input gradient adds */
        const float *dbr = branch_grad(a.branch, a.dres, y.keep2, B, (size_t)T * D);
        derf_linear_backward_set(a.dfcg, bg.fc2_w, bg.fc2_b, dbr, y.fcg, bw.fc2_w, BT, H, D);  /* dfcg[B,T,H] */
        derf_gelu_backward_set(a.dfch, a.dfcg, y.fch, bth, c->gelu);                         /* dfch[B,T,H] */
        derf_linear_backward_set(a.dln, bg.fc1_w, bg.fc1_b, a.dfch, y.ln2, bw.fc1_w, BT, D, H); /* dln2[B,T,D] */
        derf_norm_backward(ns, a.dres, bg.n2, a.dln, y.xmid, bw.n2, y.st2, BT, D);          /* dres = dL/dxmid */
        /* attention branch: dres = dL/dxmid[B,T,D] -> dL/dx */
        dbr = branch_grad(a.branch, a.dres, y.keep1, B, (size_t)T * D);
        derf_linear_backward_set(a.datty, bg.proj_w, bg.proj_b, dbr, y.atty, bw.proj_w, BT, D, D); /* datty[B,T,D] */
        derf_attention_backward_set(a.dqkv, a.datt, a.datty, y.qkv, y.att, B, T, D, NH, 0);   /* dqkv[B,T,3D] */
        derf_linear_backward_set(a.dln, bg.qkv_w, bg.qkv_b, a.dqkv, y.ln1, bw.qkv_w, BT, D, 3 * D); /* dln1[B,T,D] */
        derf_norm_backward(ns, a.dres, bg.n1, a.dln, y.x, bw.n1, y.st1, BT, D);             /* dres = dL/dx */
    }

    /* x0 = [cls ; pe] + pos: dpos[T,D] += sum_b dres; dcls[D] += sum_b dres[b,0]; dpe gathered */
    derf_add_pos_backward(dw.pos, a.dres, B, T, D);
    for (int b = 0; b < B; b++) {
        const float *g = a.dres + (size_t)b * T * D;
        for (int d = 0; d < D; d++) dw.cls[d] += g[d];
        memcpy(a.dln + (size_t)b * NP * D, g + D, (size_t)NP * D * sizeof(float));      /* dpe[B*NP,D] */
    }
    derf_patch_embed_backward(dw.pe_w, dw.pe_b, a.dln, a.cols, B, c->chans, c->img, c->img, c->patch, D);
}

/* ------------------------------------------------------------------------------- optimizer, device */

void derf_vit_drop_path_draw(const derf_vit *m, float *keep, int B, int train, derf_rng *rng) {
    const int gB = m->shard_total > 0 ? m->shard_total : B, gO = m->shard_total > 0 ? m->shard_off : 0;
    for (int l = 0; l < m->cfg.depth; l++) {
        const float p = (train && rng) ? derf_vit_block_drop_rate(&m->cfg, l) : 0.0f;
        for (int j = 0; j < 2; j++) /* as the forward: attention branch, then MLP branch */
            derf_drop_path_forward_shard(NULL, keep + (size_t)(2 * l + j) * B, p, B, 0, rng, gB, gO);
    }
}

void derf_vit_zero_grad(derf_vit *m) {
    if (m->dev) m->dev->zero_grad(m->dev->ctx);
    else derf_params_zero_grad(&m->params);
}

float derf_vit_clip_grad_norm(derf_vit *m, float max_norm) {
    return m->dev ? m->dev->clip_grad_norm(m->dev->ctx, max_norm) : derf_clip_grad_norm(&m->params, max_norm);
}

void derf_vit_adamw_step(derf_vit *m, const derf_adamw_cfg *cfg, int step) {
    if (m->dev) m->dev->adamw_step(m->dev->ctx, cfg, step);
    else derf_adamw_step(&m->params, cfg, step);
}

void derf_vit_ema_update(derf_vit *m, float *ema, float decay) {
    if (!ema) return;
    if (m->dev) m->dev->ema_update(m->dev->ctx, decay);
    else derf_ema_update(ema, m->params.params, m->params.total, decay);
}

void derf_vit_swap_ema(derf_vit *m, float **ema) {
    if (m->dev) {
        m->dev->swap_ema(m->dev->ctx);
        return;
    }
    float *t = m->params.params;
    m->params.params = *ema;
    *ema = t;
}

void derf_vit_sync_host(derf_vit *m) {
    if (m->dev) m->dev->to_host(m->dev->ctx);
}

void derf_vit_sync_device(derf_vit *m) {
    if (m->dev) m->dev->to_device(m->dev->ctx);
}

/* ------------------------------------------------------------------------------- metadata */

int derf_vit_config_to_meta(const derf_vit_config *cfg, char keys[][32], char vals[][128], int max) {
    int n = 0;
#define PUT(k, ...) do { if (n >= max) return -1; snprintf(keys[n], 32, "%s", k); \
                         snprintf(vals[n], 128, __VA_ARGS__); n++; } while (0)
    PUT("model", "vit");
    PUT("img", "%d", cfg->img);
    PUT("chans", "%d", cfg->chans);
    PUT("patch", "%d", cfg->patch);
    PUT("dim", "%d", cfg->dim);
    PUT("depth", "%d", cfg->depth);
    PUT("heads", "%d", cfg->heads);
    PUT("mlp_ratio", "%d", cfg->mlp_ratio);
    PUT("classes", "%d", cfg->classes);
    PUT("pool", "%s", cfg->pool == DERF_POOL_CLS ? "cls" : "avg");
    if (n >= max) return -1;
    snprintf(keys[n], 32, "norm");
    derf_norm_format(&cfg->norm, vals[n], 128);
    n++;
    PUT("gelu", "%s", cfg->gelu == DERF_GELU_TANH ? "tanh" : "erf");
    PUT("drop_path", "%.9g", (double)cfg->drop_path);
#undef PUT
    return n;
}

static const char *meta_get(const char *(*get)(void *, const char *), void *ctx, const char *key,
                            char *err, size_t errlen) {
    const char *v = get(ctx, key);
    if (!v) derf_io_errf(err, errlen, "ViT metadata: key '%s' is missing (not a derf ViT checkpoint?)", key);
    return v;
}

static int meta_int(const char *(*get)(void *, const char *), void *ctx, const char *key, int *out,
                    char *err, size_t errlen) {
    const char *v = meta_get(get, ctx, key, err, errlen);
    if (!v) return -1;
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x <= 0 || x > 1000000000L) {
        derf_io_errf(err, errlen, "ViT metadata: '%s' = '%s' is not a positive integer", key, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int derf_vit_config_from_meta(derf_vit_config *cfg, const char *(*get)(void *ctx, const char *key),
                              void *ctx, char *err, size_t errlen) {
    derf_vit_config c;
    memset(&c, 0, sizeof c);
    const char *v = meta_get(get, ctx, "model", err, errlen);
    if (!v) return -1;
    if (strcmp(v, "vit") != 0) {
        derf_io_errf(err, errlen, "ViT metadata: model is '%s', not 'vit'", v);
        return -1;
    }
    if (meta_int(get, ctx, "img", &c.img, err, errlen) || meta_int(get, ctx, "chans", &c.chans, err, errlen) ||
        meta_int(get, ctx, "patch", &c.patch, err, errlen) || meta_int(get, ctx, "dim", &c.dim, err, errlen) ||
        meta_int(get, ctx, "depth", &c.depth, err, errlen) || meta_int(get, ctx, "heads", &c.heads, err, errlen) ||
        meta_int(get, ctx, "mlp_ratio", &c.mlp_ratio, err, errlen) ||
        meta_int(get, ctx, "classes", &c.classes, err, errlen))
        return -1;
    if (!(v = meta_get(get, ctx, "pool", err, errlen))) return -1;
    if (strcmp(v, "avg") == 0) c.pool = DERF_POOL_AVG;
    else if (strcmp(v, "cls") == 0) c.pool = DERF_POOL_CLS;
    else { derf_io_errf(err, errlen, "ViT metadata: pool = '%s' (expected avg or cls)", v); return -1; }
    if (!(v = meta_get(get, ctx, "norm", err, errlen))) return -1;
    char nerr[400];
    if (derf_norm_parse(v, &c.norm, nerr, sizeof nerr)) {
        derf_io_errf(err, errlen, "ViT metadata: norm: %s", nerr);
        return -1;
    }
    if (!(v = meta_get(get, ctx, "gelu", err, errlen))) return -1;
    if (strcmp(v, "erf") == 0) c.gelu = DERF_GELU_ERF;
    else if (strcmp(v, "tanh") == 0) c.gelu = DERF_GELU_TANH;
    else { derf_io_errf(err, errlen, "ViT metadata: gelu = '%s' (expected erf or tanh)", v); return -1; }
    if (!(v = meta_get(get, ctx, "drop_path", err, errlen))) return -1;
    char *end;
    double dp = strtod(v, &end);
    if (end == v || *end || !(dp >= 0.0 && dp < 1.0)) {
        derf_io_errf(err, errlen, "ViT metadata: drop_path = '%s' (expected a number in [0, 1))", v);
        return -1;
    }
    c.drop_path = (float)dp;
    char cerr[256];
    if (derf_vit_check(&c, cerr, sizeof cerr)) {
        derf_io_errf(err, errlen, "ViT metadata: %s", cerr);
        return -1;
    }
    *cfg = c;
    return 0;
}
