/* hyena.c: HyenaDNA (see derf/hyena.h) on the CPU ops: presets, tensor registration under upstream's
 * names, init, forward and backward (mirrors of each other), config metadata.
 *
 * Shape letters: B batch, T tokens, d width, O filter-MLP width, H MLP width, V vocabulary, L layers.
 * Activations are token-major [B,T,*]; the long filters are channel-major k[d,T] like upstream. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/hyena.h"
#include "derf/io.h"
#include "derf/modelutil.h"
#include "derf/ops.h"
#include "derf/rng.h"

#define EMB 5 /* positional features of the implicit filter: t, 2 cos, 2 sin */

/* ------------------------------------------------------------------------------- config */

int derf_hyena_preset(derf_hyena_config *c, const char *name, int l_max, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->vocab = 16;
    c->filter_order = 64;
    c->sin_w = 10.f;
    c->l_max = l_max;
    if (name && !strcmp(name, "tiny")) { c->d_model = 128; c->n_layer = 2; }
    else if (name && !strcmp(name, "small")) { c->d_model = 128; c->n_layer = 4; }
    else if (name && !strcmp(name, "test")) { c->d_model = 16; c->n_layer = 2; c->filter_order = 8; }
    else {
        derf_io_errf(err, errlen, "unknown HyenaDNA preset '%s' (known: tiny, small, test)", name ? name : "(null)");
        return -1;
    }
    c->d_inner = 4 * c->d_model;
    char perr[256];
    if (derf_norm_parse("layernorm", &c->norm, perr, sizeof perr)) { derf_io_errf(err, errlen, "%s", perr); return -1; }
    return 0;
}

int derf_hyena_check(const derf_hyena_config *c, char *err, size_t errlen) {
#define NEED(cond, ...) do { if (!(cond)) { derf_io_errf(err, errlen, __VA_ARGS__); return -1; } } while (0)
    NEED(c->vocab >= 12 && c->vocab <= 256, "HyenaDNA vocab must be in 12..256, not %d", c->vocab);
    NEED(c->d_model > 0 && c->d_model <= 8192, "HyenaDNA d_model must be in 1..8192, not %d", c->d_model);
    NEED(c->n_layer > 0 && c->n_layer <= 256, "HyenaDNA n_layer must be in 1..256, not %d", c->n_layer);
    NEED(c->d_inner > 0 && c->d_inner <= 65536, "HyenaDNA d_inner must be in 1..65536, not %d", c->d_inner);
    NEED(c->filter_order > 0 && c->filter_order <= 4096, "HyenaDNA filter_order must be in 1..4096, not %d", c->filter_order);
    NEED(c->l_max >= 2 && c->l_max <= (1 << 22), "HyenaDNA l_max must be in 2..4194304, not %d", c->l_max);
    NEED(isfinite(c->sin_w), "HyenaDNA sin_w must be finite");
    NEED(c->n_classes >= 0 && c->n_classes <= 4096, "HyenaDNA n_classes must be in 0..4096, not %d", c->n_classes);
    NEED(isfinite(c->emb_scale) && c->emb_scale >= 0, "HyenaDNA emb_scale must be >= 0 (0: none)");
#undef NEED
    return 0;
}

/* ------------------------------------------------------------------------------- parameters */

typedef struct {
    size_t n1, in_w, in_b, sf_w, sf_b, fbias, f0_w, f0_b, freq, f2_w, f2_b, f4_w, f4_b, f6_w, out_w, out_b, n2, fc1_w,
        fc1_b, fc2_w, fc2_b;
} layer_off;

typedef struct {
    float *n1, *in_w, *in_b, *sf_w, *sf_b, *fbias, *f0_w, *f0_b, *freq, *f2_w, *f2_b, *f4_w, *f4_b, *f6_w, *out_w, *out_b,
        *n2, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} layer_w;

struct derf_hyena_acts {
    layer_off *lo;
    size_t emb, emb_scale, lnf, head_w, head_b;
    /* forward */
    float *z, *tn;                    /* [T,EMB] positional features, [T] t_norm */
    float *decay;                     /* [L][T,d] exp(-t_norm |delta_c|) */
    float *fa[3], *fs[3];             /* [L][T,O] pre-Sin and post-Sin of the filter MLP */
    float *kr, *k;                    /* [L][T,d] filter MLP output, [L][d,T] modulated filter */
    float *res;                       /* [L+1][BT,d] residual stream entering block l */
    float *n1, *u, *uc, *w, *vc, *yg, *xmid, *n2, *h1, *g1; /* per layer */
    float *st1, *st2, *stf;           /* norm statistics */
    float *nf;                        /* [BT,d] */
    float *pooled;                    /* [B,d] classifier */
    /* backward scratch */
    float *dres, *dA, *dB, *duc, *du, *dG, *dH, *dlogits, *dk, *dkr, *dfs, *dfa, *dpool;
    int32_t *tokens, *targets;
};

#define reg derf_model_reg
#define reg_norm derf_model_reg_norm
#define falloc derf_model_falloc

/* Weight decay: in_proj, short_filter, out_proj, fc1, fc2 and head weights; not the embedding (upstream's
 * blacklist), the implicit-filter MLP and its Sin (upstream's _optim hook), biases or norms. */
static void register_tensors(derf_hyena *m) {
    const derf_hyena_config *c = &m->cfg;
    const int d = c->d_model, O = c->filter_order, H = c->d_inner;
    derf_params *p = &m->params;
    derf_hyena_acts *a = m->a;
    char name[DERF_NAME_MAX];
    a->emb = reg(p, "backbone.embeddings.word_embeddings.weight", 2, c->vocab, d, 0, 0);
    if (c->emb_scale > 0) a->emb_scale = reg(p, "backbone.embeddings.scale", 1, 1, 0, 0, 0);
    for (int l = 0; l < c->n_layer; l++) {
        layer_off *o = &a->lo[l];
#define N(s) (snprintf(name, sizeof name, "backbone.layers.%d.%s", l, s), name)
        o->n1 = reg_norm(p, &c->norm, d, N("norm1"));
        o->in_w = reg(p, N("mixer.in_proj.weight"), 2, 3 * d, d, 0, 1);
        o->in_b = reg(p, N("mixer.in_proj.bias"), 1, 3 * d, 0, 0, 0);
        o->sf_w = reg(p, N("mixer.short_filter.weight"), 3, 3 * d, 1, 3, 1);
        o->sf_b = reg(p, N("mixer.short_filter.bias"), 1, 3 * d, 0, 0, 0);
        o->fbias = reg(p, N("mixer.filter_fn.bias"), 1, d, 0, 0, 0);
        o->f0_w = reg(p, N("mixer.filter_fn.implicit_filter.0.weight"), 2, O, EMB, 0, 0);
        o->f0_b = reg(p, N("mixer.filter_fn.implicit_filter.0.bias"), 1, O, 0, 0, 0);
        o->freq = reg(p, N("mixer.filter_fn.implicit_filter.1.freq"), 2, 1, O, 0, 0);
        o->f2_w = reg(p, N("mixer.filter_fn.implicit_filter.2.weight"), 2, O, O, 0, 0);
        o->f2_b = reg(p, N("mixer.filter_fn.implicit_filter.2.bias"), 1, O, 0, 0, 0);
        o->f4_w = reg(p, N("mixer.filter_fn.implicit_filter.4.weight"), 2, O, O, 0, 0);
        o->f4_b = reg(p, N("mixer.filter_fn.implicit_filter.4.bias"), 1, O, 0, 0, 0);
        o->f6_w = reg(p, N("mixer.filter_fn.implicit_filter.6.weight"), 2, d, O, 0, 0);
        o->out_w = reg(p, N("mixer.out_proj.weight"), 2, d, d, 0, 1);
        o->out_b = reg(p, N("mixer.out_proj.bias"), 1, d, 0, 0, 0);
        o->n2 = reg_norm(p, &c->norm, d, N("norm2"));
        o->fc1_w = reg(p, N("mlp.fc1.weight"), 2, H, d, 0, 1);
        o->fc1_b = reg(p, N("mlp.fc1.bias"), 1, H, 0, 0, 0);
        o->fc2_w = reg(p, N("mlp.fc2.weight"), 2, d, H, 0, 1);
        o->fc2_b = reg(p, N("mlp.fc2.bias"), 1, d, 0, 0, 0);
#undef N
    }
    a->lnf = reg_norm(p, &c->norm, d, "backbone.ln_f");
    if (c->n_classes) {
        a->head_w = reg(p, "head.weight", 2, c->n_classes, d, 0, 1);
        a->head_b = reg(p, "head.bias", 1, c->n_classes, 0, 0, 0);
    }
}

static void layer_weights(const derf_hyena *m, float *s, int l, layer_w *w) {
    const layer_off *o = &m->a->lo[l];
    *w = (layer_w){s + o->n1, s + o->in_w, s + o->in_b, s + o->sf_w, s + o->sf_b, s + o->fbias, s + o->f0_w, s + o->f0_b,
                   s + o->freq, s + o->f2_w, s + o->f2_b, s + o->f4_w, s + o->f4_b, s + o->f6_w, s + o->out_w, s + o->out_b,
                   s + o->n2, s + o->fc1_w, s + o->fc1_b, s + o->fc2_w, s + o->fc2_b};
}

/* ------------------------------------------------------------------------------- build / free */


int derf_hyena_build(derf_hyena *m, const derf_hyena_config *cfg, int max_B, int max_T, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (derf_hyena_check(cfg, err, errlen)) return -1;
    if (!derf_fftconv_available()) {
        derf_io_errf(err, errlen, "HyenaDNA's long convolution needs FFTW: this derf was built with AUDIO=0; rebuild "
                     "with `make`");
        return -1;
    }
    if (max_B <= 0 || max_T <= 0 || max_T > cfg->l_max) {
        derf_io_errf(err, errlen, "HyenaDNA: batch %d x %d tokens does not fit (tokens must be 1..l_max %d)", max_B, max_T,
                     cfg->l_max);
        return -1;
    }
    m->cfg = *cfg;
    m->max_B = max_B;
    m->max_T = max_T;
    derf_hyena_acts *a = m->a = calloc(1, sizeof *a);
    if (!a || !(a->lo = calloc((size_t)cfg->n_layer, sizeof *a->lo))) {
        free(a);
        derf_io_errf(err, errlen, "out of memory building HyenaDNA");
        return -1;
    }
    derf_params_init(&m->params);
    register_tensors(m);
    derf_params_alloc(&m->params);
    const size_t L = (size_t)cfg->n_layer, d = (size_t)cfg->d_model, O = (size_t)cfg->filter_order, H = (size_t)cfg->d_inner,
                 T = (size_t)max_T, BT = (size_t)max_B * T, V = (size_t)cfg->vocab;
    const size_t ns = derf_norm_stats_count(&cfg->norm, (int)BT);
    int fail = 0;
    a->z = falloc(T * EMB, &fail);
    a->tn = falloc(T, &fail);
    a->decay = falloc(L * T * d, &fail);
    for (int i = 0; i < 3; i++) { a->fa[i] = falloc(L * T * O, &fail); a->fs[i] = falloc(L * T * O, &fail); }
    a->kr = falloc(L * T * d, &fail);
    a->k = falloc(L * T * d, &fail);
    a->res = falloc((L + 1) * BT * d, &fail);
    a->n1 = falloc(L * BT * d, &fail);
    a->u = falloc(L * BT * 3 * d, &fail);
    a->uc = falloc(L * BT * 3 * d, &fail);
    a->w = falloc(L * BT * d, &fail);
    a->vc = falloc(L * BT * d, &fail);
    a->yg = falloc(L * BT * d, &fail);
    a->xmid = falloc(L * BT * d, &fail);
    a->n2 = falloc(L * BT * d, &fail);
    a->h1 = falloc(L * BT * H, &fail);
    a->g1 = falloc(L * BT * H, &fail);
    a->st1 = falloc(L * ns, &fail);
    a->st2 = falloc(L * ns, &fail);
    a->stf = falloc(ns, &fail);
    a->nf = falloc(BT * d, &fail);
    a->pooled = falloc((size_t)max_B * d, &fail);
    a->dres = falloc(BT * d, &fail);
    a->dA = falloc(BT * d, &fail);
    a->dB = falloc(BT * d, &fail);
    a->duc = falloc(BT * 3 * d, &fail);
    a->du = falloc(BT * 3 * d, &fail);
    a->dG = falloc(BT * H, &fail);
    a->dH = falloc(BT * H, &fail);
    a->dlogits = falloc(BT * V, &fail);
    a->dk = falloc(T * d, &fail);
    a->dkr = falloc(T * d, &fail);
    a->dfs = falloc(T * O, &fail);
    a->dfa = falloc(T * O, &fail);
    a->dpool = falloc((size_t)max_B * d, &fail);
    m->logits = falloc(BT * V, &fail);
    a->tokens = calloc(BT, sizeof(int32_t));
    a->targets = calloc(BT, sizeof(int32_t));
    if (fail || !a->tokens || !a->targets) {
        derf_hyena_free(m);
        derf_io_errf(err, errlen, "out of memory for HyenaDNA activations (batch %d x %d tokens)", max_B, max_T);
        return -1;
    }
    return 0;
}

void derf_hyena_free(derf_hyena *m) {
    derf_hyena_acts *a = m->a;
    if (a) {
        float *all[] = {a->z, a->tn, a->decay, a->fa[0], a->fa[1], a->fa[2], a->fs[0], a->fs[1], a->fs[2], a->kr, a->k, a->res,
                        a->n1, a->u, a->uc, a->w, a->vc, a->yg, a->xmid, a->n2, a->h1, a->g1, a->st1, a->st2, a->stf, a->nf,
                        a->pooled, a->dres, a->dA, a->dB, a->duc, a->du, a->dG, a->dH, a->dlogits, a->dk, a->dkr, a->dfs,
                        a->dfa, a->dpool};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
        free(a->tokens);
        free(a->targets);
        free(a->lo);
        free(a);
    }
    free(m->logits);
    derf_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

void derf_hyena_init(derf_hyena *m, uint64_t seed) {
    const derf_hyena_config *c = &m->cfg;
    const int d = c->d_model, O = c->filter_order, H = c->d_inner;
    const float std = 0.02f, proj = 0.02f / sqrtf(2.0f * (float)c->n_layer), sf = 1.0f / sqrtf(3.0f);
    derf_rng r;
    derf_rng_seed(&r, seed, 0x4879u /* "Hy" */);
    float *s = m->params.params;
    memset(s, 0, m->params.total * sizeof(float));
    derf_rng_fill_normal(&r, s + m->a->emb, (size_t)c->vocab * d, 0, std);
    if (c->emb_scale > 0) s[m->a->emb_scale] = c->emb_scale;
    for (int l = 0; l < c->n_layer; l++) {
        layer_w w;
        layer_weights(m, s, l, &w);
        derf_norm_init(&c->norm, d, w.n1);
        derf_rng_fill_normal(&r, w.in_w, (size_t)3 * d * d, 0, std);
        derf_rng_fill_uniform(&r, w.sf_w, (size_t)3 * d * 3, -sf, sf);
        derf_rng_fill_uniform(&r, w.sf_b, (size_t)3 * d, -sf, sf);
        derf_rng_fill_normal(&r, w.fbias, (size_t)d, 0, 1);
        derf_rng_fill_normal(&r, w.f0_w, (size_t)O * EMB, 0, std);
        for (int i = 0; i < O; i++) w.freq[i] = c->sin_w;
        derf_rng_fill_normal(&r, w.f2_w, (size_t)O * O, 0, std);
        derf_rng_fill_normal(&r, w.f4_w, (size_t)O * O, 0, std);
        derf_rng_fill_normal(&r, w.f6_w, (size_t)d * O, 0, std);
        derf_rng_fill_normal(&r, w.out_w, (size_t)d * d, 0, proj);
        derf_norm_init(&c->norm, d, w.n2);
        derf_rng_fill_normal(&r, w.fc1_w, (size_t)H * d, 0, std);
        derf_rng_fill_normal(&r, w.fc2_w, (size_t)d * H, 0, proj);
    }
    derf_norm_init(&c->norm, d, s + m->a->lnf);
    if (c->n_classes) derf_rng_fill_normal(&r, s + m->a->head_w, (size_t)c->n_classes * d, 0, std);
}

/* ------------------------------------------------------------------------------- pieces */

/* positional features z[T,EMB], t_norm[T] and the modulation decay[T,d] (buffers upstream) */
static void positions(derf_hyena *m, int T) {
    derf_hyena_acts *a = m->a;
    const int d = m->cfg.d_model, lm = m->cfg.l_max;
    const double f[2] = {(double)1e-4f, 1.0}, pi = 3.14159265358979323846;
    for (int t = 0; t < T; t++) {
        double tn = (double)t / (double)(lm - 1), w = 2 * pi * t / lm;
        float *z = a->z + (size_t)t * EMB;
        z[0] = (float)tn;
        z[1] = (float)cos(f[0] * w);
        z[2] = (float)cos(f[1] * w);
        z[3] = (float)-sin(f[0] * w);
        z[4] = (float)-sin(f[1] * w);
        a->tn[t] = (float)tn;
    }
    const double lo = log(1e-2) / 1.5, hi = log(1e-2) / 0.3;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < d; c++) {
                double delta = d > 1 ? lo + (hi - lo) * c / (d - 1) : lo;
                m->a->decay[((size_t)l * T + t) * d + c] = (float)exp(-a->tn[t] * fabs(delta));
            }
}

/* sin(freq[j] * x[t,j]) */
static void sin_forward(float *y, const float *x, const float *freq, int T, int O) {
    for (int t = 0; t < T; t++)
        for (int j = 0; j < O; j++) y[(size_t)t * O + j] = sinf(freq[j] * x[(size_t)t * O + j]);
}
/* dx = dy * freq cos(freq x) (overwrites dx); dfreq += sum_t dy x cos(freq x) */
static void sin_backward(float *dx, float *dfreq, const float *dy, const float *x, const float *freq, int T, int O) {
    for (int j = 0; j < O; j++) {
        double df = 0;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)t * O + j;
            float cs = cosf(freq[j] * x[i]);
            dx[i] = dy[i] * freq[j] * cs;
            df += (double)dy[i] * x[i] * cs;
        }
        dfreq[j] += (float)df;
    }
}

/* the implicit filter of layer l for T taps: k[d,T] */
static void filter_forward(derf_hyena *m, const layer_w *w, int l, int T) {
    derf_hyena_acts *a = m->a;
    const int d = m->cfg.d_model, O = m->cfg.filter_order;
    const size_t to = (size_t)l * T * O, td = (size_t)l * T * d;
    derf_linear_forward(a->fa[0] + to, a->z, w->f0_w, w->f0_b, T, EMB, O);
    sin_forward(a->fs[0] + to, a->fa[0] + to, w->freq, T, O);
    derf_linear_forward(a->fa[1] + to, a->fs[0] + to, w->f2_w, w->f2_b, T, O, O);
    sin_forward(a->fs[1] + to, a->fa[1] + to, w->freq, T, O);
    derf_linear_forward(a->fa[2] + to, a->fs[1] + to, w->f4_w, w->f4_b, T, O, O);
    sin_forward(a->fs[2] + to, a->fa[2] + to, w->freq, T, O);
    derf_linear_forward(a->kr + td, a->fs[2] + to, w->f6_w, NULL, T, O, d);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < d; c++) a->k[td + (size_t)c * T + t] = a->kr[td + (size_t)t * d + c] * a->decay[td + (size_t)t * d + c];
}

/* from dk[d,T] (the gradient of layer l's filter) into the filter MLP's parameter gradients */
static void filter_backward(derf_hyena *m, const layer_w *w, const layer_w *g, int l, int T) {
    derf_hyena_acts *a = m->a;
    const int d = m->cfg.d_model, O = m->cfg.filter_order;
    const size_t to = (size_t)l * T * O, td = (size_t)l * T * d;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < d; c++) a->dkr[(size_t)t * d + c] = a->dk[(size_t)c * T + t] * a->decay[td + (size_t)t * d + c];
    memset(a->dfs, 0, sizeof(float) * (size_t)T * O);
    derf_linear_backward(a->dfs, g->f6_w, NULL, a->dkr, a->fs[2] + to, w->f6_w, T, O, d);
    sin_backward(a->dfa, g->freq, a->dfs, a->fa[2] + to, w->freq, T, O);
    memset(a->dfs, 0, sizeof(float) * (size_t)T * O);
    derf_linear_backward(a->dfs, g->f4_w, g->f4_b, a->dfa, a->fs[1] + to, w->f4_w, T, O, O);
    sin_backward(a->dfa, g->freq, a->dfs, a->fa[1] + to, w->freq, T, O);
    memset(a->dfs, 0, sizeof(float) * (size_t)T * O);
    derf_linear_backward(a->dfs, g->f2_w, g->f2_b, a->dfa, a->fs[0] + to, w->f2_w, T, O, O);
    sin_backward(a->dfa, g->freq, a->dfs, a->fa[0] + to, w->freq, T, O);
    derf_linear_backward(NULL, g->f0_w, g->f0_b, a->dfa, a->z, w->f0_w, T, EMB, O);
}

/* depthwise causal conv, kernel 3: y[b,t,c] = bias[c] + sum_j w[c,j] x[b,t-2+j,c]   (x, y: [B,T,C]) */
static void short_conv_forward(float *y, const float *x, const float *w, const float *bias, int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        const int t = bt % T;
        float *yr = y + (size_t)bt * C;
        for (int c = 0; c < C; c++) yr[c] = bias[c];
        for (int j = 0; j < 3; j++) {
            const int s = t - 2 + j;
            if (s < 0) continue;
            const float *xr = x + (size_t)(bt - t + s) * C;
            for (int c = 0; c < C; c++) yr[c] += w[c * 3 + j] * xr[c];
        }
    }
}

static void short_conv_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w, int B, int T,
                                int C) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        const int t = bt % T;
        float *dxr = dx + (size_t)bt * C;
        for (int j = 0; j < 3; j++) { /* x[s] feeds y[s + 2 - j] */
            const int tt = t + 2 - j;
            if (tt >= T) continue;
            const float *dyr = dy + (size_t)(bt + 2 - j) * C;
            for (int c = 0; c < C; c++) dxr[c] += w[c * 3 + j] * dyr[c];
        }
    }
    /* db and the three taps' dw as contiguous rows (dw's [C,3] layout would make every add a stride-3 scatter),
     * one partial per sequence, added in sequence order (the same sums for any thread count) */
    float *acc = calloc((size_t)B * 4 * C, sizeof(float));
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *a = acc + (size_t)b * 4 * C;
        for (int t = 0; t < T; t++) {
            const int bt = b * T + t;
            const float *dyr = dy + (size_t)bt * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) a[c] += dyr[c];
            for (int j = 0; j < 3; j++) {
                const int s = t - 2 + j;
                if (s < 0) continue;
                const float *xr = x + (size_t)(bt - t + s) * C;
                float *aj = a + (size_t)(1 + j) * C;
                #pragma omp simd
                for (int c = 0; c < C; c++) aj[c] += dyr[c] * xr[c];
            }
        }
    }
    for (int b = 0; b < B; b++) {
        const float *a = acc + (size_t)b * 4 * C;
        for (int c = 0; c < C; c++) {
            db[c] += a[c];
            for (int j = 0; j < 3; j++) dw[c * 3 + j] += a[(size_t)(1 + j) * C + c];
        }
    }
    free(acc);
}

/* ------------------------------------------------------------------------------- forward */

#define LD(buf, l, n) ((buf) + (size_t)(l) * (n))

float derf_hyena_forward(derf_hyena *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    const derf_hyena_config *c = &m->cfg;
    derf_hyena_acts *a = m->a;
    const derf_norm_spec *ns = &c->norm;
    const int d = c->d_model, H = c->d_inner, V = c->vocab, BT = B * T;
    derf_model_check_batch("HyenaDNA", tokens, B, T, m->max_B, m->max_T, V);
    m->B = B;
    m->T = T;
    m->has_targets = targets != NULL;
    memcpy(a->tokens, tokens, sizeof(int32_t) * (size_t)BT);
    if (targets) memcpy(a->targets, targets, sizeof(int32_t) * (size_t)(c->n_classes ? B : BT));
    const size_t sd = (size_t)BT * d, s3 = 3 * sd, sH = (size_t)BT * H, sst = derf_norm_stats_count(ns, BT);
    float *P = m->params.params;
    positions(m, T);
    derf_embed_forward(a->res, tokens, P + a->emb, NULL, B, T, d);
    if (c->emb_scale > 0) derf_scalar_scale_forward(a->res, a->res, P[a->emb_scale], sd);
    for (int l = 0; l < c->n_layer; l++) {
        layer_w w;
        layer_weights(m, P, l, &w);
        float *x = LD(a->res, l, sd), *n1 = LD(a->n1, l, sd), *u = LD(a->u, l, s3), *uc = LD(a->uc, l, s3), *ww = LD(a->w, l, sd),
              *vc = LD(a->vc, l, sd), *yg = LD(a->yg, l, sd), *xm = LD(a->xmid, l, sd), *n2 = LD(a->n2, l, sd),
              *h1 = LD(a->h1, l, sH), *g1 = LD(a->g1, l, sH), *xo = LD(a->res, l + 1, sd);
        filter_forward(m, &w, l, T);
        derf_norm_forward(ns, n1, LD(a->st1, l, sst), x, w.n1, BT, d);
        derf_linear_forward(u, n1, w.in_w, w.in_b, BT, d, 3 * d);
        short_conv_forward(uc, u, w.sf_w, w.sf_b, B, T, 3 * d);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < BT; i++) /* w = v * x1 */
            for (int ch = 0; ch < d; ch++) ww[(size_t)i * d + ch] = uc[(size_t)i * 3 * d + 2 * d + ch] * uc[(size_t)i * 3 * d + d + ch];
        derf_fftconv_forward(vc, ww, LD(a->k, l, (size_t)T * d), w.fbias, B, T, d);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < BT; i++) /* y = x0 * vc */
            for (int ch = 0; ch < d; ch++) yg[(size_t)i * d + ch] = uc[(size_t)i * 3 * d + ch] * vc[(size_t)i * d + ch];
        derf_linear_forward(xm, yg, w.out_w, w.out_b, BT, d, d);
        derf_residual_forward(xm, xm, x, sd);
        derf_norm_forward(ns, n2, LD(a->st2, l, sst), xm, w.n2, BT, d);
        derf_linear_forward(h1, n2, w.fc1_w, w.fc1_b, BT, d, H);
        derf_gelu_forward(g1, h1, sH, DERF_GELU_TANH);
        derf_linear_forward(xo, g1, w.fc2_w, w.fc2_b, BT, H, d);
        derf_residual_forward(xo, xo, xm, sd);
    }
    derf_norm_forward(ns, a->nf, a->stf, LD(a->res, c->n_layer, sd), P + a->lnf, BT, d);
    if (c->n_classes) {
        derf_mean_pool_forward(a->pooled, a->nf, B, T, 0, d);
        derf_linear_forward(m->logits, a->pooled, P + a->head_w, P + a->head_b, B, d, c->n_classes);
        m->loss = targets ? derf_xent_forward_backward(NULL, m->logits, targets, 0, 1, B, c->n_classes) : NAN;
    } else {
        derf_linear_forward(m->logits, a->nf, P + a->emb, NULL, BT, d, V);
        m->loss = targets ? derf_xent_forward_backward(NULL, m->logits, targets, 0, 1, BT, V) : NAN;
    }
    return m->loss;
}

/* ------------------------------------------------------------------------------- backward */

void derf_hyena_backward(derf_hyena *m, float scale) {
    const derf_hyena_config *c = &m->cfg;
    derf_hyena_acts *a = m->a;
    const derf_norm_spec *ns = &c->norm;
    if (!m->has_targets) { fprintf(stderr, "derf: HyenaDNA backward without targets in the forward\n"); abort(); }
    const int B = m->B, T = m->T, d = c->d_model, H = c->d_inner, V = c->vocab, BT = B * T;
    const size_t sd = (size_t)BT * d, s3 = 3 * sd, sH = (size_t)BT * H, sst = derf_norm_stats_count(ns, BT);
    float *P = m->params.params, *G = m->params.grads;
    if (c->n_classes) {
        const int K = c->n_classes;
        memset(a->dA, 0, sizeof(float) * sd);
        memset(a->dlogits, 0, sizeof(float) * (size_t)B * K);
        derf_xent_forward_backward(a->dlogits, m->logits, a->targets, 0, scale, B, K);
        memset(a->dpool, 0, sizeof(float) * (size_t)B * d);
        derf_linear_backward(a->dpool, G + a->head_w, G + a->head_b, a->dlogits, a->pooled, P + a->head_w, B, d, K);
        derf_mean_pool_backward(a->dA, a->dpool, B, T, 0, d);
    } else {
        memset(a->dlogits, 0, sizeof(float) * (size_t)BT * V);
        derf_xent_forward_backward(a->dlogits, m->logits, a->targets, 0, scale, BT, V);
        derf_linear_backward_set(a->dA, G + a->emb, NULL, a->dlogits, a->nf, P + a->emb, BT, d, V);
    }
    memset(a->dres, 0, sizeof(float) * sd);
    derf_norm_backward(ns, a->dres, G + a->lnf, a->dA, LD(a->res, c->n_layer, sd), P + a->lnf, a->stf, BT, d);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        layer_w w, g;
        layer_weights(m, P, l, &w);
        layer_weights(m, G, l, &g);
        float *x = LD(a->res, l, sd), *n1 = LD(a->n1, l, sd), *u = LD(a->u, l, s3), *uc = LD(a->uc, l, s3), *ww = LD(a->w, l, sd),
              *vc = LD(a->vc, l, sd), *yg = LD(a->yg, l, sd), *xm = LD(a->xmid, l, sd), *n2 = LD(a->n2, l, sd),
              *h1 = LD(a->h1, l, sH), *g1 = LD(a->g1, l, sH);
        /* MLP branch: dres is d(x_out); x_out = xm + fc2(gelu(fc1(N2(xm)))) */
        derf_linear_backward_set(a->dG, g.fc2_w, g.fc2_b, a->dres, g1, w.fc2_w, BT, H, d);
        derf_gelu_backward_set(a->dH, a->dG, h1, sH, DERF_GELU_TANH);
        derf_linear_backward_set(a->dA, g.fc1_w, g.fc1_b, a->dH, n2, w.fc1_w, BT, d, H);
        derf_norm_backward(ns, a->dres, g.n2, a->dA, xm, w.n2, LD(a->st2, l, sst), BT, d); /* dres = d(xm) */
        /* Hyena branch: xm = x + out_proj(x0 * vc) */
        derf_linear_backward_set(a->dA, g.out_w, g.out_b, a->dres, yg, w.out_w, BT, d, d); /* dA = d(yg) */
        float *duc = a->duc, *dvc = a->dB;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < BT; i++)
            for (int ch = 0; ch < d; ch++) {
                size_t k = (size_t)i * d + ch;
                duc[(size_t)i * 3 * d + ch] = a->dA[k] * vc[k];         /* d x0 */
                dvc[k] = a->dA[k] * uc[(size_t)i * 3 * d + ch];         /* d vc */
            }
        memset(a->dA, 0, sizeof(float) * sd);
        memset(a->dk, 0, sizeof(float) * (size_t)T * d);
        derf_fftconv_backward(a->dA, a->dk, g.fbias, dvc, ww, LD(a->k, l, (size_t)T * d), w.fbias, B, T, d); /* dA = d(w) */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < BT; i++)
            for (int ch = 0; ch < d; ch++) {
                size_t k = (size_t)i * d + ch, r = (size_t)i * 3 * d;
                duc[r + d + ch] = a->dA[k] * uc[r + 2 * d + ch];     /* d x1 = dw * v */
                duc[r + 2 * d + ch] = a->dA[k] * uc[r + d + ch];     /* d v = dw * x1 */
            }
        memset(a->du, 0, sizeof(float) * s3);
        short_conv_backward(a->du, g.sf_w, g.sf_b, duc, u, w.sf_w, B, T, 3 * d);
        derf_linear_backward_set(a->dA, g.in_w, g.in_b, a->du, n1, w.in_w, BT, d, 3 * d);
        derf_norm_backward(ns, a->dres, g.n1, a->dA, x, w.n1, LD(a->st1, l, sst), BT, d); /* dres = d(x) */
        filter_backward(m, &w, &g, l, T);
    }
    if (c->emb_scale > 0) { /* the unscaled embedding, gathered again into the free scratch dA */
        derf_embed_forward(a->dA, a->tokens, P + a->emb, NULL, B, T, d);
        derf_scalar_scale_backward(a->dres, G + a->emb_scale, a->dA, P[a->emb_scale], sd);
    }
    derf_embed_backward(G + a->emb, NULL, a->dres, a->tokens, B, T, d);
}

/* ------------------------------------------------------------------------------- metadata */

int derf_hyena_config_to_meta(const derf_hyena_config *c, char keys[][32], char vals[][128], int max) {
    int n = 0;
#define PUT(k, ...) do { if (derf_model_meta_put(keys, vals, &n, max, k, __VA_ARGS__)) return -1; } while (0)
    PUT("model", "hyena");
    PUT("vocab", "%d", c->vocab);
    PUT("d_model", "%d", c->d_model);
    PUT("n_layer", "%d", c->n_layer);
    PUT("d_inner", "%d", c->d_inner);
    PUT("filter_order", "%d", c->filter_order);
    PUT("l_max", "%d", c->l_max);
    PUT("sin_w", "%.9g", (double)c->sin_w);
    PUT("n_classes", "%d", c->n_classes);
    PUT("emb_scale", "%.9g", (double)c->emb_scale);
    char spec[128];
    derf_norm_format(&c->norm, spec, sizeof spec);
    PUT("norm", "%s", spec);
#undef PUT
    return n;
}
