/* dit.c: DiT (facebookresearch/DiT models.py) in pixel space on the CPU ops, with any norm spec
 * without affine (docs/paper.md section 5.2): presets, the paper's init rules per norm, tensor registration under
 * DiT's state-dict names, forward and backward (mirrors of each other), config <-> metadata.
 *
 * Shape letters: B batch, T = (img/p)^2 tokens, D width, H = mlp_ratio*D, F freq_dim, K = chans*p*p,
 * O = p*p*out_chans (one output patch), L depth.
 *
 *   x[B,C,img,img] -x_embedder-> pe[B*T,D]; x0 = pe + pos (fixed sin-cos)
 *   c[B,D] = t_embedder.mlp.2(SiLU(t_embedder.mlp.0(tfreq(t)))) + y_embedder.embedding_table[y]
 *   sc = SiLU(c) (shared by every adaLN_modulation)
 *   for l < L:  mod[B,6D] = blocks.l.adaLN_modulation.1(sc) = shift1 | scale1 | gate1 | shift2 | scale2 | gate2
 *               xmid = x + gate1 * proj(Attn(qkv(modulate(norm1(x), shift1, scale1))))
 *               x'   = xmid + gate2 * fc2(GELU_tanh(fc1(modulate(norm2(xmid), shift2, scale2))))
 *   fmod[B,2D] = final_layer.adaLN_modulation.1(sc) = shift | scale
 *   fout[B*T,O] = final_layer.linear(modulate(norm_final(xL), shift, scale)); out = unpatchify(fout)
 * unpatchify (DiT): token (hy,hx), entry (py*p + px)*OC + ch -> out[b, ch, hy*p+py, hx*p+px]. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/dit.h"
#include "derf/io.h"
#include "derf/rng.h"

/* ------------------------------------------------------------------------------- presets */

typedef struct {
    const char *name;
    int img, chans, patch, dim, depth, heads, classes, freq_dim;
} dit_preset;

static const dit_preset PRESETS[] = {
    {"tiny",  28, 1, 4,  64, 4, 4, 10, 256},
    {"mini",  28, 1, 7,  64, 4, 4, 10, 256},
    {"small", 28, 1, 4, 128, 6, 4, 10, 256},
    {"test",   8, 1, 4,  16, 2, 2,  5,  16},
};
#define N_PRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

int derf_dit_preset(derf_dit_config *cfg, const char *name, char *err, size_t errlen) {
    for (int i = 0; i < N_PRESETS; i++) {
        const dit_preset *p = &PRESETS[i];
        if (!name || strcmp(name, p->name)) continue;
        memset(cfg, 0, sizeof *cfg);
        cfg->img = p->img; cfg->chans = p->chans; cfg->patch = p->patch;
        cfg->dim = p->dim; cfg->depth = p->depth; cfg->heads = p->heads;
        cfg->mlp_ratio = 4; cfg->classes = p->classes; cfg->freq_dim = p->freq_dim;
        return derf_dit_set_norm(cfg, "layernorm", 'B', err, errlen);
    }
    derf_io_errf(err, errlen, "unknown DiT preset '%s' (known: tiny, mini, small, test)", name ? name : "(null)");
    return -1;
}

int derf_dit_set_norm(derf_dit_config *cfg, const char *spec, char size_class, char *err, size_t errlen) {
    derf_norm_spec s;
    char perr[400];
    if (derf_norm_parse(spec, &s, perr, sizeof perr)) {
        derf_io_errf(err, errlen, "%s", perr);
        return -1;
    }
    if (!strchr("SBLX", size_class) || !size_class) {
        derf_io_errf(err, errlen, "DiT size class must be S, B, L or XL, not '%c'", size_class ? size_class : '?');
        return -1;
    }
    s.affine = 0;
    s.bias = 0;
    const int pointwise = s.kind == DERF_NORM_POINTWISE;
    if (!pointwise && !strstr(spec, "eps=")) s.eps = 1e-6f;          /* DiT's LayerNorm eps */
    if (pointwise && size_class == 'X' && !strstr(spec, "alpha=")) s.alpha_init = 1.0f;
    cfg->norm = s;
    cfg->zero_blocks = !pointwise || size_class == 'B';
    cfg->zero_final = !pointwise;
    return 0;
}

int derf_dit_out_chans(const derf_dit_config *cfg) { return cfg->learn_sigma ? 2 * cfg->chans : cfg->chans; }

int derf_dit_check(const derf_dit_config *c, char *err, size_t errlen) {
#define NEED(cond, ...) do { if (!(cond)) { derf_io_errf(err, errlen, __VA_ARGS__); return -1; } } while (0)
    NEED(c->img > 0 && c->img <= 1024, "DiT img must be in 1..1024, not %d", c->img);
    NEED(c->chans > 0 && c->chans <= 16, "DiT chans must be in 1..16, not %d", c->chans);
    NEED(c->patch > 0 && c->img % c->patch == 0, "DiT patch %d must be positive and divide img %d", c->patch, c->img);
    NEED(c->dim > 0 && c->dim <= 8192 && c->dim % 4 == 0, "DiT dim must be a multiple of 4 in 4..8192, not %d", c->dim);
    NEED(c->depth > 0 && c->depth <= 256, "DiT depth must be in 1..256, not %d", c->depth);
    NEED(c->heads > 0 && c->dim % c->heads == 0, "DiT heads %d must be positive and divide dim %d", c->heads, c->dim);
    NEED(c->mlp_ratio > 0 && c->mlp_ratio <= 16, "DiT mlp_ratio must be in 1..16, not %d", c->mlp_ratio);
    NEED(c->classes > 0 && c->classes <= 100000, "DiT classes must be in 1..100000, not %d", c->classes);
    NEED(c->freq_dim >= 2 && c->freq_dim % 2 == 0 && c->freq_dim <= 4096, "DiT freq_dim must be even in 2..4096, not %d", c->freq_dim);
    NEED(c->learn_sigma == 0 || c->learn_sigma == 1, "DiT learn_sigma must be 0 or 1");
    NEED(!c->norm.affine, "DiT norms have no affine part (use a spec with :noaffine)");
    long g = c->img / c->patch;
    NEED(g * g <= 16384, "DiT has %ld tokens; at most 16384 are supported (use a larger patch)", g * g);
#undef NEED
    return 0;
}

/* ------------------------------------------------------------------------------- parameters */

/* Registration order is DiT's state dict (pos_embed left out: it is fixed): x_embedder, t_embedder, y_embedder,
 * blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2, adaLN_modulation.1}, final_layer.{norm_final,
 * linear, adaLN_modulation.1}. */

typedef struct {
    float *n1, *qkv_w, *qkv_b, *proj_w, *proj_b, *n2, *fc1_w, *fc1_b, *fc2_w, *fc2_b, *ada_w, *ada_b;
} dit_block_w;

typedef struct {
    float *xe_w, *xe_b, *t0_w, *t0_b, *t2_w, *t2_b, *ytab, *fn, *lin_w, *lin_b, *ada_w, *ada_b;
} dit_top_w;

/* Weight views are looked up by name from a table of (field, name suffix): one place that knows the names. */
typedef struct { size_t field; const char *suffix; int is_norm; } dit_name;

static const dit_name BLOCK_NAMES[] = {
    {offsetof(dit_block_w, n1), "norm1", 1},
    {offsetof(dit_block_w, qkv_w), "attn.qkv.weight", 0}, {offsetof(dit_block_w, qkv_b), "attn.qkv.bias", 0},
    {offsetof(dit_block_w, proj_w), "attn.proj.weight", 0}, {offsetof(dit_block_w, proj_b), "attn.proj.bias", 0},
    {offsetof(dit_block_w, n2), "norm2", 1},
    {offsetof(dit_block_w, fc1_w), "mlp.fc1.weight", 0}, {offsetof(dit_block_w, fc1_b), "mlp.fc1.bias", 0},
    {offsetof(dit_block_w, fc2_w), "mlp.fc2.weight", 0}, {offsetof(dit_block_w, fc2_b), "mlp.fc2.bias", 0},
    {offsetof(dit_block_w, ada_w), "adaLN_modulation.1.weight", 0},
    {offsetof(dit_block_w, ada_b), "adaLN_modulation.1.bias", 0},
};

static const dit_name TOP_NAMES[] = {
    {offsetof(dit_top_w, xe_w), "x_embedder.proj.weight", 0}, {offsetof(dit_top_w, xe_b), "x_embedder.proj.bias", 0},
    {offsetof(dit_top_w, t0_w), "t_embedder.mlp.0.weight", 0}, {offsetof(dit_top_w, t0_b), "t_embedder.mlp.0.bias", 0},
    {offsetof(dit_top_w, t2_w), "t_embedder.mlp.2.weight", 0}, {offsetof(dit_top_w, t2_b), "t_embedder.mlp.2.bias", 0},
    {offsetof(dit_top_w, ytab), "y_embedder.embedding_table.weight", 0},
    {offsetof(dit_top_w, fn), "final_layer.norm_final", 1},
    {offsetof(dit_top_w, lin_w), "final_layer.linear.weight", 0},
    {offsetof(dit_top_w, lin_b), "final_layer.linear.bias", 0},
    {offsetof(dit_top_w, ada_w), "final_layer.adaLN_modulation.1.weight", 0},
    {offsetof(dit_top_w, ada_b), "final_layer.adaLN_modulation.1.bias", 0},
};

/* Fills the float* fields of views (a dit_block_w or dit_top_w) with pointers into slab. A norm's pointer is
 * its first tensor (its parameters are packed consecutively), or NULL when the norm has none. */
static void lookup(const derf_dit *m, float *slab, const char *prefix, const dit_name *names, int n, void *views) {
    derf_norm_param np[4];
    const int kn = derf_norm_params(&m->cfg.norm, m->cfg.dim, np);
    char name[DERF_NAME_MAX + 32];
    for (int i = 0; i < n; i++) {
        float **dst = (float **)((char *)views + names[i].field);
        *dst = NULL;
        if (names[i].is_norm && kn == 0) continue;
        if (names[i].is_norm) snprintf(name, sizeof name, "%s%s.%s", prefix, names[i].suffix, np[0].name);
        else snprintf(name, sizeof name, "%s%s", prefix, names[i].suffix);
        const derf_tensor *t = derf_params_find(&m->params, name);
        if (t) *dst = slab + t->offset;
    }
}

static void block_weights(const derf_dit *m, float *slab, int l, dit_block_w *w) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "blocks.%d.", l);
    lookup(m, slab, prefix, BLOCK_NAMES, (int)(sizeof BLOCK_NAMES / sizeof BLOCK_NAMES[0]), w);
}

static void top_weights(const derf_dit *m, float *slab, dit_top_w *w) {
    lookup(m, slab, "", TOP_NAMES, (int)(sizeof TOP_NAMES / sizeof TOP_NAMES[0]), w);
}

static void add_tensor(derf_params *p, const char *name, int ndim, int d0, int d1, int d2, int d3) {
    int shape[4] = {d0, d1, d2, d3};
    derf_params_add(p, name, ndim, shape, 0); /* DiT trains with weight decay 0: one group, no decay */
}

#define add_norm derf_norm_register /* the tensors of one norm layer called prefix */

static void register_tensors(derf_dit *m) {
    const derf_dit_config *c = &m->cfg;
    const int D = c->dim, H = c->mlp_ratio * D, P = c->patch, O = P * P * derf_dit_out_chans(c);
    derf_params *p = &m->params;
    char name[DERF_NAME_MAX];
    add_tensor(p, "x_embedder.proj.weight", 4, D, c->chans, P, P);
    add_tensor(p, "x_embedder.proj.bias", 1, D, 0, 0, 0);
    add_tensor(p, "t_embedder.mlp.0.weight", 2, D, c->freq_dim, 0, 0);
    add_tensor(p, "t_embedder.mlp.0.bias", 1, D, 0, 0, 0);
    add_tensor(p, "t_embedder.mlp.2.weight", 2, D, D, 0, 0);
    add_tensor(p, "t_embedder.mlp.2.bias", 1, D, 0, 0, 0);
    add_tensor(p, "y_embedder.embedding_table.weight", 2, c->classes + 1, D, 0, 0);
    for (int l = 0; l < c->depth; l++) {
#define BLK(suffix) (snprintf(name, sizeof name, "blocks.%d.%s", l, suffix), name)
        add_norm(p, &c->norm, D, BLK("norm1"));
        add_tensor(p, BLK("attn.qkv.weight"), 2, 3 * D, D, 0, 0);
        add_tensor(p, BLK("attn.qkv.bias"), 1, 3 * D, 0, 0, 0);
        add_tensor(p, BLK("attn.proj.weight"), 2, D, D, 0, 0);
        add_tensor(p, BLK("attn.proj.bias"), 1, D, 0, 0, 0);
        add_norm(p, &c->norm, D, BLK("norm2"));
        add_tensor(p, BLK("mlp.fc1.weight"), 2, H, D, 0, 0);
        add_tensor(p, BLK("mlp.fc1.bias"), 1, H, 0, 0, 0);
        add_tensor(p, BLK("mlp.fc2.weight"), 2, D, H, 0, 0);
        add_tensor(p, BLK("mlp.fc2.bias"), 1, D, 0, 0, 0);
        add_tensor(p, BLK("adaLN_modulation.1.weight"), 2, 6 * D, D, 0, 0);
        add_tensor(p, BLK("adaLN_modulation.1.bias"), 1, 6 * D, 0, 0, 0);
#undef BLK
    }
    add_norm(p, &c->norm, D, "final_layer.norm_final");
    add_tensor(p, "final_layer.linear.weight", 2, O, D, 0, 0);
    add_tensor(p, "final_layer.linear.bias", 1, O, 0, 0, 0);
    add_tensor(p, "final_layer.adaLN_modulation.1.weight", 2, 2 * D, D, 0, 0);
    add_tensor(p, "final_layer.adaLN_modulation.1.bias", 1, 2 * D, 0, 0, 0);
}

/* ------------------------------------------------------------------------------- activations */

typedef struct {
    /* forward, kept for backward */
    float *cols, *pe;                 /* [B*T,K], [B*T,D] */
    float *tfreq, *th, *ths;          /* [B,F], [B,D] mlp.0 output, [B,D] SiLU of it */
    float *c, *sc;                    /* [B,D] conditioning and SiLU(c) */
    float *res;                       /* [L+1][B,T,D] residual stream entering block l */
    float *xmid;                      /* [L][B,T,D] */
    float *mod;                       /* [L][B,6D] */
    float *n1, *h1, *n2, *h2;         /* [L][B,T,D] norm outputs and modulated norm outputs */
    float *st1, *st2;                 /* [L][stats] */
    float *qkv;                       /* [L][B,T,3D] */
    float *att;                       /* [L][B,NH,T,T] */
    float *atty, *pa, *pm;            /* [L][B,T,D] attention output, proj output, fc2 output */
    float *fch, *fcg;                 /* [L][B,T,H] */
    float *fmod;                      /* [B,2D] */
    float *fn, *fh;                   /* [B,T,D] final norm output, modulated */
    float *fst;
    float *fout;                      /* [B*T,O] */
    float *out;                       /* [B,OC,img,img] */
    /* backward scratch */
    float *dres, *dn, *dh, *dbr, *dqkv, *datt, *datty, *dfcg, *dfch, *dmod, *dsc, *dc, *dth, *dfout;
    size_t btd, bth, batt, bst, total;
} dit_acts;

/* the next n floats of the arena (16-float aligned); with base == NULL only counts */
static float *carve(float *base, size_t *cur, size_t n) {
    float *p = base ? base + *cur : NULL;
    *cur = (*cur + n + 15) & ~(size_t)15;
    return p;
}

static void dit_layout(const derf_dit *m, float *base, dit_acts *a) {
    const derf_dit_config *c = &m->cfg;
    const size_t B = (size_t)m->max_batch, T = (size_t)m->T, D = (size_t)c->dim, L = (size_t)c->depth;
    const size_t H = (size_t)c->mlp_ratio * D, NH = (size_t)c->heads, F = (size_t)c->freq_dim;
    const size_t K = (size_t)c->chans * c->patch * c->patch, O = (size_t)c->patch * c->patch * derf_dit_out_chans(c);
    size_t cur = 0;
    memset(a, 0, sizeof *a);
    a->btd = B * T * D;
    a->bth = B * T * H;
    a->batt = B * NH * T * T;
    a->bst = derf_norm_stats_count(&c->norm, (int)(B * T));
    a->cols = carve(base, &cur, B * T * K);
    a->pe = carve(base, &cur, a->btd);
    a->tfreq = carve(base, &cur, B * F);
    a->th = carve(base, &cur, B * D);
    a->ths = carve(base, &cur, B * D);
    a->c = carve(base, &cur, B * D);
    a->sc = carve(base, &cur, B * D);
    a->res = carve(base, &cur, (L + 1) * a->btd);
    a->xmid = carve(base, &cur, L * a->btd);
    a->mod = carve(base, &cur, L * B * 6 * D);
    a->n1 = carve(base, &cur, L * a->btd);
    a->h1 = carve(base, &cur, L * a->btd);
    a->n2 = carve(base, &cur, L * a->btd);
    a->h2 = carve(base, &cur, L * a->btd);
    a->st1 = carve(base, &cur, L * a->bst);
    a->st2 = carve(base, &cur, L * a->bst);
    a->qkv = carve(base, &cur, L * 3 * a->btd);
    a->att = carve(base, &cur, L * a->batt);
    a->atty = carve(base, &cur, L * a->btd);
    a->pa = carve(base, &cur, L * a->btd);
    a->pm = carve(base, &cur, L * a->btd);
    a->fch = carve(base, &cur, L * a->bth);
    a->fcg = carve(base, &cur, L * a->bth);
    a->fmod = carve(base, &cur, B * 2 * D);
    a->fn = carve(base, &cur, a->btd);
    a->fh = carve(base, &cur, a->btd);
    a->fst = carve(base, &cur, a->bst);
    a->fout = carve(base, &cur, B * T * O);
    a->out = carve(base, &cur, B * T * O);
    a->dres = carve(base, &cur, a->btd);
    a->dn = carve(base, &cur, a->btd);
    a->dh = carve(base, &cur, a->btd);
    a->dbr = carve(base, &cur, a->btd);
    a->dqkv = carve(base, &cur, 3 * a->btd);
    a->datt = carve(base, &cur, a->batt);
    a->datty = carve(base, &cur, a->btd);
    a->dfcg = carve(base, &cur, a->bth);
    a->dfch = carve(base, &cur, a->bth);
    a->dmod = carve(base, &cur, B * 6 * D);
    a->dsc = carve(base, &cur, B * D);
    a->dc = carve(base, &cur, B * D);
    a->dth = carve(base, &cur, B * D);
    a->dfout = carve(base, &cur, B * T * O);
    a->total = cur;
    if (a->bst == 0) a->st1 = a->st2 = a->fst = NULL;
}

typedef struct { float *x, *xmid, *xout, *mod, *n1, *h1, *n2, *h2, *st1, *st2, *qkv, *att, *atty, *pa, *pm, *fch, *fcg; } dit_layer_acts;

static void layer_acts(const derf_dit *m, const dit_acts *a, int l, dit_layer_acts *y) {
    const size_t L = (size_t)l, B = (size_t)m->max_batch, D = (size_t)m->cfg.dim;
    y->x = a->res + L * a->btd;
    y->xout = a->res + (L + 1) * a->btd;
    y->xmid = a->xmid + L * a->btd;
    y->mod = a->mod + L * B * 6 * D;
    y->n1 = a->n1 + L * a->btd;
    y->h1 = a->h1 + L * a->btd;
    y->n2 = a->n2 + L * a->btd;
    y->h2 = a->h2 + L * a->btd;
    y->st1 = a->st1 ? a->st1 + L * a->bst : NULL;
    y->st2 = a->st2 ? a->st2 + L * a->bst : NULL;
    y->qkv = a->qkv + L * 3 * a->btd;
    y->att = a->att + L * a->batt;
    y->atty = a->atty + L * a->btd;
    y->pa = a->pa + L * a->btd;
    y->pm = a->pm + L * a->btd;
    y->fch = a->fch + L * a->bth;
    y->fcg = a->fcg + L * a->bth;
}

/* ------------------------------------------------------------------------------- fixed embeddings */

/* get_1d_sincos_pos_embed_from_grid: half the channels sin(pos*omega_i), half cos, omega_i = 10000^(-i/(Dh/2)) */
static void sincos_1d(float *out, int Dh, double pos) {
    const int h = Dh / 2;
    for (int i = 0; i < h; i++) {
        double om = 1.0 / pow(10000.0, (double)i / h);
        out[i] = (float)sin(pos * om);
        out[h + i] = (float)cos(pos * om);
    }
}

void derf_dit_sincos_pos(float *pos, int D, int g) {
    /* DiT: grid = meshgrid(w, h); emb = [1d(D/2, grid[0] = column index) | 1d(D/2, grid[1] = row index)] */
    for (int i = 0; i < g; i++)
        for (int j = 0; j < g; j++) {
            float *row = pos + ((size_t)i * g + j) * D;
            sincos_1d(row, D / 2, j);
            sincos_1d(row + D / 2, D / 2, i);
        }
}

void derf_dit_timestep_features(float *out, const float *t, int B, int F) {
    const int half = F / 2;
    const float nl = (float)(-log(10000.0));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < half; i++) {
            /* float32 as in PyTorch: exp(-ln(10000) * i / half), then t * freq */
            float f = expf(nl * (float)i / (float)half), arg = t[b] * f;
            out[(size_t)b * F + i] = cosf(arg);
            out[(size_t)b * F + half + i] = sinf(arg);
        }
}

/* ------------------------------------------------------------------------------- build / init */

int derf_dit_build(derf_dit *m, const derf_dit_config *cfg, int max_batch, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (max_batch <= 0) return derf_io_errf(err, errlen, "DiT max_batch must be positive, not %d", max_batch), -1;
    if (derf_dit_check(cfg, err, errlen)) return -1;
    const int g = cfg->img / cfg->patch;
    *m = (derf_dit){.cfg = *cfg, .max_batch = max_batch, .T = g * g};
    derf_params_init(&m->params);
    register_tensors(m);
    derf_params_alloc(&m->params);
    dit_acts a;
    dit_layout(m, NULL, &a);
    m->acts_size = a.total;
    m->acts = calloc(a.total, sizeof(float));
    m->pos = malloc((size_t)m->T * cfg->dim * sizeof(float));
    m->labels = malloc((size_t)max_batch * sizeof(int32_t));
    if (!m->acts || !m->pos || !m->labels) {
        derf_io_errf(err, errlen, "out of memory: the DiT activations for batch %d need %.1f MB; use a smaller batch",
                     max_batch, (double)a.total * 4 / 1e6);
        derf_dit_free(m);
        return -1;
    }
    derf_dit_sincos_pos(m->pos, cfg->dim, g);
    dit_layout(m, m->acts, &a);
    m->out = a.out;
    return 0;
}

void derf_dit_free(derf_dit *m) {
    derf_params_free(&m->params);
    free(m->acts);
    free(m->pos);
    free(m->labels);
    memset(m, 0, sizeof *m);
}

static void xavier(derf_rng *r, float *w, int fan_out, int fan_in) {
    const float bound = sqrtf(6.0f / (float)(fan_in + fan_out));
    derf_rng_fill_uniform(r, w, (size_t)fan_out * fan_in, -bound, bound);
}

void derf_dit_init(derf_dit *m, uint64_t seed) {
    const derf_dit_config *c = &m->cfg;
    const int D = c->dim, H = c->mlp_ratio * D, K = c->chans * c->patch * c->patch;
    const int O = c->patch * c->patch * derf_dit_out_chans(c);
    derf_rng r;
    derf_rng_seed(&r, seed, 0x6474u /* "dt" */);
    memset(m->params.params, 0, m->params.total * sizeof(float));   /* every bias starts at 0 */
    dit_top_w w;
    top_weights(m, m->params.params, &w);
    xavier(&r, w.xe_w, D, K);
    derf_rng_fill_normal(&r, w.t0_w, (size_t)D * c->freq_dim, 0.0f, 0.02f);
    derf_rng_fill_normal(&r, w.t2_w, (size_t)D * D, 0.0f, 0.02f);
    derf_rng_fill_normal(&r, w.ytab, (size_t)(c->classes + 1) * D, 0.0f, 0.02f);
    for (int l = 0; l < c->depth; l++) {
        dit_block_w b;
        block_weights(m, m->params.params, l, &b);
        if (b.n1) derf_norm_init(&c->norm, D, b.n1);
        if (b.n2) derf_norm_init(&c->norm, D, b.n2);
        xavier(&r, b.qkv_w, 3 * D, D);
        xavier(&r, b.proj_w, D, D);
        xavier(&r, b.fc1_w, H, D);
        xavier(&r, b.fc2_w, D, H);
        if (!c->zero_blocks) xavier(&r, b.ada_w, 6 * D, D);             /* else stays 0 (adaLN-Zero) */
    }
    if (w.fn) derf_norm_init(&c->norm, D, w.fn);
    if (!c->zero_final) {
        xavier(&r, w.ada_w, 2 * D, D);
        xavier(&r, w.lin_w, O, D);
    }
}

/* ------------------------------------------------------------------------------- small kernels */

static void silu_fwd(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

/* dx += dy * silu'(x), silu'(x) = s (1 + x (1 - s)), s = sigmoid(x) */
static void silu_bwd(float *dx, const float *dy, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

/* h[b,t,:] = n[b,t,:] * (1 + scale[b,:]) + shift[b,:]; shift/scale rows have stride S floats */
static void modulate_fwd(float *h, const float *n, const float *shift, const float *scale, int B, int T, int D, int S) {
    #pragma omp parallel for schedule(static) if ((long)B * T * D > 16384)
    for (int b = 0; b < B; b++) {
        const float *sh = shift + (size_t)b * S, *sc = scale + (size_t)b * S;
        for (int t = 0; t < T; t++) {
            const size_t o = ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) h[o + d] = n[o + d] * (1.0f + sc[d]) + sh[d];
        }
    }
}

/* dn = dh * (1 + scale) (written); dshift += sum_t dh; dscale += sum_t dh * n (rows b apart: one thread per b) */
static void modulate_bwd(float *dn, float *dshift, float *dscale, const float *dh, const float *n, const float *scale,
                         int B, int T, int D, int S) {
    #pragma omp parallel for schedule(static) if ((long)B * T * D > 16384)
    for (int b = 0; b < B; b++) {
        const float *sc = scale + (size_t)b * S;
        float *dsh = dshift + (size_t)b * S, *dsc = dscale + (size_t)b * S;
        for (int t = 0; t < T; t++) {
            const size_t o = ((size_t)b * T + t) * D;
            #pragma omp simd
            for (int d = 0; d < D; d++) {
                dn[o + d] = dh[o + d] * (1.0f + sc[d]);
                dsh[d] += dh[o + d];
                dsc[d] += dh[o + d] * n[o + d];
            }
        }
    }
}

/* y = x + gate[b,:] * br */
static void gate_fwd(float *y, const float *x, const float *gate, const float *br, int B, int T, int D, int S) {
    #pragma omp parallel for schedule(static) if ((long)B * T * D > 16384)
    for (int b = 0; b < B; b++) {
        const float *g = gate + (size_t)b * S;
        for (int t = 0; t < T; t++) {
            const size_t o = ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) y[o + d] = x[o + d] + g[d] * br[o + d];
        }
    }
}

/* dbr = dy * gate (written); dgate += sum_t dy * br */
static void gate_bwd(float *dbr, float *dgate, const float *dy, const float *gate, const float *br, int B, int T, int D, int S) {
    #pragma omp parallel for schedule(static) if ((long)B * T * D > 16384)
    for (int b = 0; b < B; b++) {
        const float *g = gate + (size_t)b * S;
        float *dg = dgate + (size_t)b * S;
        for (int t = 0; t < T; t++) {
            const size_t o = ((size_t)b * T + t) * D;
            #pragma omp simd
            for (int d = 0; d < D; d++) {
                dbr[o + d] = dy[o + d] * g[d];
                dg[d] += dy[o + d] * br[o + d];
            }
        }
    }
}

/* fout[b*T + hy*g + hx, (py*p + px)*OC + ch] <-> out[b, ch, hy*p + py, hx*p + px]; dir 0: fout -> out */
static void unpatchify(float *fout, float *out, int B, int g, int p, int OC, int dir) {
    const int W = g * p, O = p * p * OC;
    for (int b = 0; b < B; b++)
        for (int hy = 0; hy < g; hy++)
            for (int hx = 0; hx < g; hx++)
                for (int py = 0; py < p; py++)
                    for (int px = 0; px < p; px++)
                        for (int ch = 0; ch < OC; ch++) {
                            float *f = fout + ((size_t)b * g * g + hy * g + hx) * O + (py * p + px) * OC + ch;
                            float *o = out + (((size_t)b * OC + ch) * W + hy * p + py) * W + hx * p + px;
                            if (dir == 0) *o = *f; else *f = *o;
                        }
}

/* ------------------------------------------------------------------------------- forward */

static void check_batch(const derf_dit *m, int B, const char *what) {
    if (B <= 0 || B > m->max_batch) {
        fprintf(stderr, "derf: DiT %s with batch %d, built for 1..%d\n", what, B, m->max_batch);
        abort();
    }
}

void derf_dit_forward(derf_dit *m, const float *x, const float *t, const int32_t *y, int B) {
    const derf_dit_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int T = m->T, D = c->dim, H = c->mlp_ratio * D, NH = c->heads, F = c->freq_dim, BT = B * T;
    const int OC = derf_dit_out_chans(c), O = c->patch * c->patch * OC;
    check_batch(m, B, "forward");
    for (int b = 0; b < B; b++)
        if (y[b] < 0 || y[b] > c->classes) {
            fprintf(stderr, "derf: DiT label %d outside 0..%d\n", y[b], c->classes);
            abort();
        }
    dit_acts a;
    dit_layout(m, m->acts, &a);
    dit_top_w w;
    top_weights(m, m->params.params, &w);

    /* x0[B,T,D] = x_embedder(x) + pos */
    derf_patch_embed_forward(a.res, a.cols, x, w.xe_w, w.xe_b, B, c->chans, c->img, c->img, c->patch, D);
    derf_add_pos_forward(a.res, m->pos, B, T, D);
    /* c[B,D] = t_embedder(t) + y_embedder(y); sc = SiLU(c) */
    derf_dit_timestep_features(a.tfreq, t, B, F);
    derf_linear_forward(a.th, a.tfreq, w.t0_w, w.t0_b, B, F, D);
    silu_fwd(a.ths, a.th, (size_t)B * D);
    derf_linear_forward(a.c, a.ths, w.t2_w, w.t2_b, B, D, D);
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) a.c[(size_t)b * D + d] += w.ytab[(size_t)y[b] * D + d];
    silu_fwd(a.sc, a.c, (size_t)B * D);
    memcpy(m->labels, y, (size_t)B * sizeof *y);

    for (int l = 0; l < c->depth; l++) {
        dit_block_w bw;
        dit_layer_acts z;
        block_weights(m, m->params.params, l, &bw);
        layer_acts(m, &a, l, &z);
        const int S = 6 * D;
        derf_linear_forward(z.mod, a.sc, bw.ada_w, bw.ada_b, B, D, S);                 /* mod[B,6D] */
        /* attention branch */
        derf_norm_forward(ns, z.n1, z.st1, z.x, bw.n1, BT, D);
        modulate_fwd(z.h1, z.n1, z.mod, z.mod + D, B, T, D, S);
        derf_linear_forward(z.qkv, z.h1, bw.qkv_w, bw.qkv_b, BT, D, 3 * D);
        derf_attention_forward(z.atty, z.att, z.qkv, B, T, D, NH, 0);
        derf_linear_forward(z.pa, z.atty, bw.proj_w, bw.proj_b, BT, D, D);
        gate_fwd(z.xmid, z.x, z.mod + 2 * D, z.pa, B, T, D, S);
        /* MLP branch */
        derf_norm_forward(ns, z.n2, z.st2, z.xmid, bw.n2, BT, D);
        modulate_fwd(z.h2, z.n2, z.mod + 3 * D, z.mod + 4 * D, B, T, D, S);
        derf_linear_forward(z.fch, z.h2, bw.fc1_w, bw.fc1_b, BT, D, H);
        derf_gelu_forward(z.fcg, z.fch, (size_t)BT * H, DERF_GELU_TANH);
        derf_linear_forward(z.pm, z.fcg, bw.fc2_w, bw.fc2_b, BT, H, D);
        gate_fwd(z.xout, z.xmid, z.mod + 5 * D, z.pm, B, T, D, S);
    }

    /* final layer */
    const float *xL = a.res + (size_t)c->depth * a.btd;
    derf_linear_forward(a.fmod, a.sc, w.ada_w, w.ada_b, B, D, 2 * D);
    derf_norm_forward(ns, a.fn, a.fst, xL, w.fn, BT, D);
    modulate_fwd(a.fh, a.fn, a.fmod, a.fmod + D, B, T, D, 2 * D);
    derf_linear_forward(a.fout, a.fh, w.lin_w, w.lin_b, BT, D, O);
    unpatchify(a.fout, a.out, B, c->img / c->patch, c->patch, OC, 0);
}

/* ------------------------------------------------------------------------------- backward */

void derf_dit_backward(derf_dit *m, const float *dout, int B) {
    const derf_dit_config *c = &m->cfg;
    const derf_norm_spec *ns = &c->norm;
    const int T = m->T, D = c->dim, H = c->mlp_ratio * D, NH = c->heads, F = c->freq_dim, BT = B * T;
    const int OC = derf_dit_out_chans(c), O = c->patch * c->patch * OC;
    check_batch(m, B, "backward");
    dit_acts a;
    dit_layout(m, m->acts, &a);
    dit_top_w w, dw;
    top_weights(m, m->params.params, &w);
    top_weights(m, m->params.grads, &dw);
    const size_t btd = (size_t)BT * D, bth = (size_t)BT * H;

    /* final layer: dout -> dfout[B*T,O] -> dfh -> dfn, dfmod -> dres (dL/dxL) */
    unpatchify(a.dfout, (float *)dout, B, c->img / c->patch, c->patch, OC, 1);
    derf_linear_backward_set(a.dh, dw.lin_w, dw.lin_b, a.dfout, a.fh, w.lin_w, BT, D, O);
    memset(a.dmod, 0, (size_t)B * 2 * D * sizeof(float));
    modulate_bwd(a.dn, a.dmod, a.dmod + D, a.dh, a.fn, a.fmod + D, B, T, D, 2 * D);
    memset(a.dres, 0, btd * sizeof(float));
    derf_norm_backward(ns, a.dres, dw.fn, a.dn, a.res + (size_t)c->depth * a.btd, w.fn, a.fst, BT, D);
    memset(a.dsc, 0, (size_t)B * D * sizeof(float));
    derf_linear_backward(a.dsc, dw.ada_w, dw.ada_b, a.dmod, a.sc, w.ada_w, B, D, 2 * D);

    for (int l = c->depth - 1; l >= 0; l--) {
        dit_block_w bw, bg;
        dit_layer_acts z;
        block_weights(m, m->params.params, l, &bw);
        block_weights(m, m->params.grads, l, &bg);
        layer_acts(m, &a, l, &z);
        const int S = 6 * D;
        memset(a.dmod, 0, (size_t)B * S * sizeof(float));
        /* MLP branch: dres = dL/dxout; identity path keeps it */
        gate_bwd(a.dbr, a.dmod + 5 * D, a.dres, z.mod + 5 * D, z.pm, B, T, D, S);
        derf_linear_backward_set(a.dfcg, bg.fc2_w, bg.fc2_b, a.dbr, z.fcg, bw.fc2_w, BT, H, D);
        derf_gelu_backward_set(a.dfch, a.dfcg, z.fch, bth, DERF_GELU_TANH);
        derf_linear_backward_set(a.dh, bg.fc1_w, bg.fc1_b, a.dfch, z.h2, bw.fc1_w, BT, D, H);
        modulate_bwd(a.dn, a.dmod + 3 * D, a.dmod + 4 * D, a.dh, z.n2, z.mod + 4 * D, B, T, D, S);
        derf_norm_backward(ns, a.dres, bg.n2, a.dn, z.xmid, bw.n2, z.st2, BT, D);     /* dres = dL/dxmid */
        /* attention branch */
        gate_bwd(a.dbr, a.dmod + 2 * D, a.dres, z.mod + 2 * D, z.pa, B, T, D, S);
        derf_linear_backward_set(a.datty, bg.proj_w, bg.proj_b, a.dbr, z.atty, bw.proj_w, BT, D, D);
        derf_attention_backward_set(a.dqkv, a.datt, a.datty, z.qkv, z.att, B, T, D, NH, 0);
        derf_linear_backward_set(a.dh, bg.qkv_w, bg.qkv_b, a.dqkv, z.h1, bw.qkv_w, BT, D, 3 * D);
        modulate_bwd(a.dn, a.dmod, a.dmod + D, a.dh, z.n1, z.mod + D, B, T, D, S);
        derf_norm_backward(ns, a.dres, bg.n1, a.dn, z.x, bw.n1, z.st1, BT, D);         /* dres = dL/dx */
        /* adaLN: mod = ada(sc) */
        derf_linear_backward(a.dsc, bg.ada_w, bg.ada_b, a.dmod, a.sc, bw.ada_w, B, D, S);
    }

    /* x0 = x_embedder(x) + pos: only the embedder's weights get gradients (pos is fixed, x is a leaf) */
    derf_patch_embed_backward(dw.xe_w, dw.xe_b, a.dres, a.cols, B, c->chans, c->img, c->img, c->patch, D);
    /* sc = SiLU(c); c = mlp.2(SiLU(mlp.0(tfreq))) + ytab[y] */
    memset(a.dc, 0, (size_t)B * D * sizeof(float));
    silu_bwd(a.dc, a.dsc, a.c, (size_t)B * D);
    memset(a.dth, 0, (size_t)B * D * sizeof(float));
    float *dths = a.dsc;   /* dsc is consumed: reuse it for dL/d(SiLU(th)) */
    memset(dths, 0, (size_t)B * D * sizeof(float));
    derf_linear_backward(dths, dw.t2_w, dw.t2_b, a.dc, a.ths, w.t2_w, B, D, D);
    silu_bwd(a.dth, dths, a.th, (size_t)B * D);
    derf_linear_backward(NULL, dw.t0_w, dw.t0_b, a.dth, a.tfreq, w.t0_w, B, F, D);
    /* label rows of the embedding table */
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) dw.ytab[(size_t)m->labels[b] * D + d] += a.dc[(size_t)b * D + d];
}

/* ------------------------------------------------------------------------------- metadata */

/* The integer fields, in metadata order, with their smallest legal value (derf_dit_check does the rest). */
static const struct { const char *key; size_t off; int lo; } META_INTS[] = {
    {"img", offsetof(derf_dit_config, img), 1}, {"chans", offsetof(derf_dit_config, chans), 1},
    {"patch", offsetof(derf_dit_config, patch), 1}, {"dim", offsetof(derf_dit_config, dim), 1},
    {"depth", offsetof(derf_dit_config, depth), 1}, {"heads", offsetof(derf_dit_config, heads), 1},
    {"mlp_ratio", offsetof(derf_dit_config, mlp_ratio), 1}, {"classes", offsetof(derf_dit_config, classes), 1},
    {"freq_dim", offsetof(derf_dit_config, freq_dim), 2}, {"learn_sigma", offsetof(derf_dit_config, learn_sigma), 0},
    {"zero_blocks", offsetof(derf_dit_config, zero_blocks), 0}, {"zero_final", offsetof(derf_dit_config, zero_final), 0},
};
#define N_META_INTS ((int)(sizeof META_INTS / sizeof META_INTS[0]))

int derf_dit_config_to_meta(const derf_dit_config *cfg, char keys[][32], char vals[][128], int max) {
    if (max < N_META_INTS + 2) return -1;
    snprintf(keys[0], 32, "model");
    snprintf(vals[0], 128, "dit");
    for (int i = 0; i < N_META_INTS; i++) {
        snprintf(keys[1 + i], 32, "%s", META_INTS[i].key);
        snprintf(vals[1 + i], 128, "%d", *(const int *)((const char *)cfg + META_INTS[i].off));
    }
    snprintf(keys[N_META_INTS + 1], 32, "norm");
    derf_norm_format(&cfg->norm, vals[N_META_INTS + 1], 128);
    return N_META_INTS + 2;
}

int derf_dit_config_from_meta(derf_dit_config *cfg, const char *(*get)(void *ctx, const char *key),
                              void *ctx, char *err, size_t errlen) {
    derf_dit_config c;
    memset(&c, 0, sizeof c);
    const char *v = get(ctx, "model");
    if (!v || strcmp(v, "dit")) {
        derf_io_errf(err, errlen, "not a DiT checkpoint (metadata model is '%s', expected 'dit')", v ? v : "missing");
        return -1;
    }
    for (int i = 0; i < N_META_INTS; i++) {
        const char *key = META_INTS[i].key;
        if (!(v = get(ctx, key))) {
            derf_io_errf(err, errlen, "DiT metadata: key '%s' is missing (not a derf DiT checkpoint?)", key);
            return -1;
        }
        char *end;
        long x = strtol(v, &end, 10);
        if (end == v || *end || x < META_INTS[i].lo || x > 1000000000L) {
            derf_io_errf(err, errlen, "DiT metadata: '%s' = '%s' is not an integer >= %d", key, v, META_INTS[i].lo);
            return -1;
        }
        *(int *)((char *)&c + META_INTS[i].off) = (int)x;
    }
    if (!(v = get(ctx, "norm"))) {
        derf_io_errf(err, errlen, "DiT metadata: key 'norm' is missing");
        return -1;
    }
    char nerr[400];
    if (derf_norm_parse(v, &c.norm, nerr, sizeof nerr)) {
        derf_io_errf(err, errlen, "DiT metadata: norm: %s", nerr);
        return -1;
    }
    char cerr[256];
    if (derf_dit_check(&c, cerr, sizeof cerr)) {
        derf_io_errf(err, errlen, "DiT metadata: %s", cerr);
        return -1;
    }
    *cfg = c;
    return 0;
}
