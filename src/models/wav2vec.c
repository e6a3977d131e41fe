/* wav2vec.c: wav2vec 2.0 pretraining (fairseq Wav2Vec2Model + the wav2vec criterion; see derf/wav2vec.h)
 * on the CPU ops: presets, tensor registration under fairseq's names, init, the mask / negative / Gumbel
 * draws, forward and backward (mirrors of each other, shapes at each step).
 *
 * Shapes: B rows, N samples, T_i frames after conv block i (T = T_last), C conv channels, d model width,
 * H ffn width, M = B*Mb masked frames (b-major), GV = G*V codebook logits, Dv = final/G, Fd = final_dim.
 *   z_0 = GELU(GN(conv_0(wav)));  z_i = GELU(conv_i(z_{i-1}))      [B,T_i,C]
 *   pen = mean(z^2);  F = LN(z) [B,T,C] (z's gradient x grad_mult)
 *   X = proj(F) [B,T,d];  X[mask] = mask_emb;  x_0 = X + GELU(posconv(X))
 *   x_{l+1} = m + fc2(GELU(fc1(N2(m)))),  m = x_l + out(Attn(qkv(N1(x_l))));  E = N_f(x_L)
 *   q = project_q(Gumbel(weight_proj(F[mask]))) [M,Fd];  c = final_proj(E[mask]) [M,Fd]
 *   loss = InfoNCE(c, q, negatives) + M (div_weight * diversity + pen_weight * pen) */
#include "derf/wav2vec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derf/io.h"
#include "derf/ops.h"
#include "derf/ops_audio.h"

/* ------------------------------------------------------------------------------- config */

typedef struct {
    const char *name;
    int C, d, L, NH, ffn, fd, pos_k, pos_g, V, K;
} w2v_preset;

static const w2v_preset PRESETS[] = {
    {"xxs", 16, 32, 2, 2, 64, 16, 16, 4, 8, 5},
    {"xs", 64, 128, 2, 2, 512, 64, 32, 16, 320, 100},
    {"s", 128, 256, 4, 4, 1024, 128, 128, 16, 320, 100},
};
#define N_PRESETS ((int)(sizeof PRESETS / sizeof PRESETS[0]))

int derf_w2v_preset(derf_w2v_config *c, const char *name, char *err, size_t errlen) {
    for (int i = 0; i < N_PRESETS; i++) {
        const w2v_preset *p = &PRESETS[i];
        if (!name || strcmp(name, p->name)) continue;
        memset(c, 0, sizeof *c);
        static const int k[7] = {10, 3, 3, 3, 3, 2, 2}, s[7] = {5, 2, 2, 2, 2, 2, 2};
        c->conv_dim = p->C;
        c->n_conv = 7;
        memcpy(c->conv_k, k, sizeof k);
        memcpy(c->conv_s, s, sizeof s);
        c->d = p->d;
        c->n_layer = p->L;
        c->n_head = p->NH;
        c->ffn = p->ffn;
        c->final_dim = p->fd;
        c->pos_k = p->pos_k;
        c->pos_groups = p->pos_g;
        c->groups = 2;
        c->vars = p->V;
        c->n_neg = p->K;
        c->logit_temp = 0.1f;
        c->mask_prob = 0.65f;
        c->mask_len = 10;
        c->div_weight = 0.1f;
        c->pen_weight = 10.0f;
        c->grad_mult = 0.1f;
        c->tau0 = 2.0f;
        c->tau_min = 0.5f;
        return derf_norm_parse("derf", &c->norm, err, errlen);
    }
    derf_io_errf(err, errlen, "unknown wav2vec preset '%s' (known: xxs, xs, s)", name ? name : "(null)");
    return -1;
}

int derf_w2v_check(const derf_w2v_config *c, char *err, size_t errlen) {
#define NEED(cond, ...) do { if (!(cond)) { derf_io_errf(err, errlen, __VA_ARGS__); return -1; } } while (0)
    NEED(c->conv_dim > 0 && c->conv_dim <= 4096, "wav2vec conv_dim must be in 1..4096");
    NEED(c->n_conv > 0 && c->n_conv <= DERF_W2V_MAX_CONV, "wav2vec n_conv must be in 1..%d", DERF_W2V_MAX_CONV);
    for (int i = 0; i < c->n_conv; i++) NEED(c->conv_k[i] > 0 && c->conv_s[i] > 0, "wav2vec conv %d: bad kernel/stride", i);
    NEED(c->d > 0 && c->n_head > 0 && c->d % c->n_head == 0, "wav2vec n_head must divide d");
    NEED(c->n_layer > 0 && c->ffn > 0, "wav2vec n_layer and ffn must be positive");
    NEED(c->pos_k > 0 && c->pos_groups > 0 && c->d % c->pos_groups == 0, "wav2vec pos_groups must divide d");
    NEED(c->groups > 0 && c->vars > 1 && c->final_dim % c->groups == 0, "wav2vec groups must divide final_dim");
    NEED(c->n_neg > 0, "wav2vec needs at least one negative");
    NEED(c->mask_len > 0 && c->mask_prob > 0 && c->mask_prob < 1, "wav2vec mask_prob must be in (0,1)");
    NEED(c->logit_temp > 0 && c->tau0 > 0 && c->tau_min > 0, "wav2vec temperatures must be positive");
#undef NEED
    return 0;
}

int derf_w2v_frames(const derf_w2v_config *c, int n) {
    for (int i = 0; i < c->n_conv; i++) n = derf_conv1d_len(n, c->conv_k[i], c->conv_s[i], 0);
    return n;
}

/* ------------------------------------------------------------------------------- tensors */

typedef struct {
    float *n1, *qkv_w, *qkv_b, *out_w, *out_b, *n2, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} w2v_layer_w;

typedef struct {
    float *conv[DERF_W2V_MAX_CONV], *gn_w, *gn_b, *ln_w, *ln_b, *proj_w, *proj_b, *mask_emb;
    float *pos_g, *pos_v, *pos_b, *nf, *qv, *wq_w, *wq_b, *pq_w, *pq_b, *fp_w, *fp_b;
} w2v_top_w;

/* offsets recorded at registration (index into the tensor table) */
typedef struct {
    int conv[DERF_W2V_MAX_CONV], gn, ln, proj, mask_emb, pos, layer0, per_layer, nf, quant;
} w2v_index;

typedef struct {
    w2v_index ix;
    int Tmax[DERF_W2V_MAX_CONV]; /* frames after each conv block for max_samples */
    derf_norm_spec ln;        /* the kept LayerNorm */
    /* forward */
    float *conv_out[DERF_W2V_MAX_CONV], *gn_out, *gn_mean, *gn_rstd, *act[DERF_W2V_MAX_CONV], *cols, *dcols;
    float *F, *ln_st, *X, *Xm, *pos_w, *pos_norm, *pos_pre, *pos_act, *pcols, *pdcols;
    float **res, **n1, **st1, **qkv, **att, **atty, **mid, **n2, **st2, **h, **hg;
    float *E, *stf;
    float *y, *cm, *ql, *ys, *qraw, *q, *c, *logits;
    int32_t *idx, *rows, *neg;
    /* backward scratch */
    float *dres, *dln, *dqkv, *datt, *datty, *dh, *dhg, *dE, *dX, *dF, *dz, *dz2, *dpos_w;
    float *dq, *dc, *dqraw, *dql, *dy, *dcm;
    int B, N, T, M, train, Tcur[DERF_W2V_MAX_CONV];
    float *wav; /* copy of the last forward's input [B,N] */
    float tau;
} w2v_acts;

static void add_t(derf_params *p, const char *name, int ndim, int d0, int d1, int d2) {
    int shape[4] = {d0, d1, d2, 0};
    derf_params_add(p, name, ndim, shape, ndim >= 2);
}

static int add_norm(derf_params *p, const derf_norm_spec *spec, int C, const char *prefix) {
    derf_norm_param np[4];
    int k = derf_norm_params(spec, C, np), first = p->n;
    char name[DERF_NAME_MAX + 16];
    for (int i = 0; i < k; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, np[i].name);
        add_t(p, name, 1, (int)np[i].numel, 0, 0);
    }
    return k ? first : -1;
}

static void register_tensors(derf_w2v *m, w2v_index *ix) {
    const derf_w2v_config *c = &m->cfg;
    derf_params *p = &m->params;
    const int C = c->conv_dim, d = c->d, GV = c->groups * c->vars;
    char name[DERF_NAME_MAX];
    for (int i = 0; i < c->n_conv; i++) {
        ix->conv[i] = p->n;
        snprintf(name, sizeof name, "feature_extractor.conv_layers.%d.0.weight", i);
        add_t(p, name, 3, C, i ? C : 1, c->conv_k[i]);
        if (i == 0) {
            ix->gn = p->n;
            add_t(p, "feature_extractor.conv_layers.0.2.weight", 1, C, 0, 0);
            add_t(p, "feature_extractor.conv_layers.0.2.bias", 1, C, 0, 0);
        }
    }
    ix->ln = p->n;
    add_t(p, "layer_norm.weight", 1, C, 0, 0);
    add_t(p, "layer_norm.bias", 1, C, 0, 0);
    ix->proj = p->n;
    add_t(p, "post_extract_proj.weight", 2, d, C, 0);
    add_t(p, "post_extract_proj.bias", 1, d, 0, 0);
    ix->mask_emb = p->n;
    add_t(p, "mask_emb", 1, d, 0, 0);
    ix->pos = p->n;
    add_t(p, "encoder.pos_conv.0.weight_g", 3, 1, 1, c->pos_k);
    add_t(p, "encoder.pos_conv.0.weight_v", 3, d, d / c->pos_groups, c->pos_k);
    add_t(p, "encoder.pos_conv.0.bias", 1, d, 0, 0);
    ix->layer0 = p->n;
    for (int l = 0; l < c->n_layer; l++) {
#define LN(s) (snprintf(name, sizeof name, "encoder.layers.%d.%s", l, s), name)
        add_norm(p, &c->norm, d, LN("self_attn_layer_norm"));
        add_t(p, LN("self_attn.q_proj.weight"), 2, d, d, 0); /* q, k, v weights then biases: packed [3d,d] */
        add_t(p, LN("self_attn.k_proj.weight"), 2, d, d, 0);
        add_t(p, LN("self_attn.v_proj.weight"), 2, d, d, 0);
        add_t(p, LN("self_attn.q_proj.bias"), 1, d, 0, 0);
        add_t(p, LN("self_attn.k_proj.bias"), 1, d, 0, 0);
        add_t(p, LN("self_attn.v_proj.bias"), 1, d, 0, 0);
        add_t(p, LN("self_attn.out_proj.weight"), 2, d, d, 0);
        add_t(p, LN("self_attn.out_proj.bias"), 1, d, 0, 0);
        add_norm(p, &c->norm, d, LN("final_layer_norm"));
        add_t(p, LN("fc1.weight"), 2, c->ffn, d, 0);
        add_t(p, LN("fc1.bias"), 1, c->ffn, 0, 0);
        add_t(p, LN("fc2.weight"), 2, d, c->ffn, 0);
        add_t(p, LN("fc2.bias"), 1, d, 0, 0);
#undef LN
        if (l == 0) ix->per_layer = p->n - ix->layer0;
    }
    ix->nf = p->n;
    add_norm(p, &c->norm, d, "encoder.layer_norm");
    ix->quant = p->n;
    add_t(p, "quantizer.vars", 3, 1, GV, c->final_dim / c->groups);
    add_t(p, "quantizer.weight_proj.weight", 2, GV, C, 0);
    add_t(p, "quantizer.weight_proj.bias", 1, GV, 0, 0);
    add_t(p, "project_q.weight", 2, c->final_dim, c->final_dim, 0);
    add_t(p, "project_q.bias", 1, c->final_dim, 0, 0);
    add_t(p, "final_proj.weight", 2, c->final_dim, d, 0);
    add_t(p, "final_proj.bias", 1, c->final_dim, 0, 0);
}

static int norm_count(const derf_norm_spec *s, int C) {
    derf_norm_param np[4];
    return derf_norm_params(s, C, np);
}

static float *at(const derf_w2v *m, float *slab, int i) { return slab + m->params.t[i].offset; }

static void top_w(const derf_w2v *m, const w2v_index *ix, float *s, w2v_top_w *w) {
    for (int i = 0; i < m->cfg.n_conv; i++) w->conv[i] = at(m, s, ix->conv[i]);
    w->gn_w = at(m, s, ix->gn);
    w->gn_b = at(m, s, ix->gn + 1);
    w->ln_w = at(m, s, ix->ln);
    w->ln_b = at(m, s, ix->ln + 1);
    w->proj_w = at(m, s, ix->proj);
    w->proj_b = at(m, s, ix->proj + 1);
    w->mask_emb = at(m, s, ix->mask_emb);
    w->pos_g = at(m, s, ix->pos);
    w->pos_v = at(m, s, ix->pos + 1);
    w->pos_b = at(m, s, ix->pos + 2);
    w->nf = norm_count(&m->cfg.norm, m->cfg.d) ? at(m, s, ix->nf) : NULL;
    w->qv = at(m, s, ix->quant);
    w->wq_w = at(m, s, ix->quant + 1);
    w->wq_b = at(m, s, ix->quant + 2);
    w->pq_w = at(m, s, ix->quant + 3);
    w->pq_b = at(m, s, ix->quant + 4);
    w->fp_w = at(m, s, ix->quant + 5);
    w->fp_b = at(m, s, ix->quant + 6);
}

static void layer_w(const derf_w2v *m, const w2v_index *ix, float *s, int l, w2v_layer_w *w) {
    const int kn = norm_count(&m->cfg.norm, m->cfg.d);
    int i = ix->layer0 + l * ix->per_layer;
    w->n1 = kn ? at(m, s, i) : NULL;
    i += kn;
    w->qkv_w = at(m, s, i);
    w->qkv_b = at(m, s, i + 3);
    w->out_w = at(m, s, i + 6);
    w->out_b = at(m, s, i + 7);
    i += 8;
    w->n2 = kn ? at(m, s, i) : NULL;
    i += kn;
    w->fc1_w = at(m, s, i);
    w->fc1_b = at(m, s, i + 1);
    w->fc2_w = at(m, s, i + 2);
    w->fc2_b = at(m, s, i + 3);
}

/* ------------------------------------------------------------------------------- build / init */

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        fprintf(stderr, "derf: out of memory (wav2vec activations, %.1f MB)\n", (double)n * sz / 1e6);
        abort();
    }
    return p;
}
#define FL(n) ((float *)xcalloc((size_t)(n), sizeof(float)))

static float **layers_of(int L, size_t n) {
    float **v = xcalloc((size_t)L + 1, sizeof *v);
    for (int l = 0; l <= L; l++) v[l] = FL(n);
    return v;
}

int derf_w2v_build(derf_w2v *m, const derf_w2v_config *cfg, int max_batch, int max_samples, char *err,
                   size_t errlen) {
    memset(m, 0, sizeof *m);
    if (derf_w2v_check(cfg, err, errlen)) return -1;
    int T = derf_w2v_frames(cfg, max_samples);
    if (max_batch <= 0 || T < 2 * cfg->mask_len) {
        derf_io_errf(err, errlen, "wav2vec: batch %d x %d samples gives %d frames; need a positive batch and at "
                     "least %d frames", max_batch, max_samples, T, 2 * cfg->mask_len);
        return -1;
    }
    m->cfg = *cfg;
    m->max_batch = max_batch;
    m->max_samples = max_samples;
    m->max_T = T;
    w2v_acts *a = xcalloc(1, sizeof *a);
    m->acts = a;
    derf_params_init(&m->params);
    register_tensors(m, &a->ix);
    derf_params_alloc(&m->params);
    derf_norm_parse("layernorm", &a->ln, err, errlen);
    const int B = max_batch, C = cfg->conv_dim, d = cfg->d, H = cfg->ffn, NH = cfg->n_head, L = cfg->n_layer;
    const int GV = cfg->groups * cfg->vars, Fd = cfg->final_dim, K = cfg->n_neg;
    size_t maxcol = 0, maxz = 0;
    for (int i = 0, n = max_samples, cin = 1; i < cfg->n_conv; i++, cin = C) {
        a->Tmax[i] = n = derf_conv1d_len(n, cfg->conv_k[i], cfg->conv_s[i], 0);
        size_t col = (size_t)n * cin * cfg->conv_k[i];
        if (col > maxcol) maxcol = col;
        if ((size_t)n * C > maxz) maxz = (size_t)n * C;
        a->conv_out[i] = FL((size_t)B * n * C);
        a->act[i] = FL((size_t)B * n * C);
    }
    a->gn_out = FL((size_t)B * a->Tmax[0] * C);
    a->wav = FL((size_t)B * max_samples);
    a->gn_mean = FL(B * C);
    a->gn_rstd = FL(B * C);
    a->cols = FL(maxcol);
    a->dcols = FL(maxcol);
    const size_t BT = (size_t)B * T, M = BT;
    a->F = FL(BT * C);
    a->ln_st = FL(2 * BT);
    a->X = FL(BT * d);
    a->Xm = FL(BT * d);
    a->pos_w = FL((size_t)d * (d / cfg->pos_groups) * cfg->pos_k);
    a->dpos_w = FL((size_t)d * (d / cfg->pos_groups) * cfg->pos_k);
    a->pos_norm = FL(cfg->pos_k);
    a->pos_pre = FL(BT * d);
    a->pos_act = FL(BT * d);
    a->pcols = FL((size_t)T * (d / cfg->pos_groups) * cfg->pos_k);
    a->pdcols = FL((size_t)T * (d / cfg->pos_groups) * cfg->pos_k);
    size_t nst = derf_norm_stats_count(&cfg->norm, (int)BT);
    a->res = layers_of(L, BT * d);
    a->n1 = layers_of(L, BT * d);
    a->st1 = layers_of(L, nst);
    a->qkv = layers_of(L, 3 * BT * d);
    a->att = layers_of(L, BT * NH * T);
    a->atty = layers_of(L, BT * d);
    a->mid = layers_of(L, BT * d);
    a->n2 = layers_of(L, BT * d);
    a->st2 = layers_of(L, nst);
    a->h = layers_of(L, BT * H);
    a->hg = layers_of(L, BT * H);
    a->E = FL(BT * d);
    a->stf = FL(nst);
    a->y = FL(M * C);
    a->cm = FL(M * d);
    a->ql = FL(M * GV);
    a->ys = FL(M * GV);
    a->qraw = FL(M * Fd);
    a->q = FL(M * Fd);
    a->c = FL(M * Fd);
    a->logits = FL(M * (K + 1));
    a->idx = xcalloc(M * cfg->groups, sizeof(int32_t));
    a->rows = xcalloc(M, sizeof(int32_t));
    a->neg = xcalloc(M * K, sizeof(int32_t));
    a->dres = FL(BT * d);
    a->dln = FL(BT * d);
    a->dqkv = FL(3 * BT * d);
    a->datt = FL(BT * NH * T);
    a->datty = FL(BT * d);
    a->dh = FL(BT * H);
    a->dhg = FL(BT * H);
    a->dE = FL(BT * d);
    a->dX = FL(BT * d);
    a->dF = FL(BT * C);
    a->dz = FL((size_t)B * maxz);
    a->dz2 = FL((size_t)B * maxz);
    a->dq = FL(M * Fd);
    a->dc = FL(M * Fd);
    a->dqraw = FL(M * Fd);
    a->dql = FL(M * GV);
    a->dy = FL(M * C);
    a->dcm = FL(M * d);
    return 0;
}

static void free_layers(float **v, int L) {
    if (!v) return;
    for (int l = 0; l <= L; l++) free(v[l]);
    free(v);
}

void derf_w2v_free(derf_w2v *m) {
    w2v_acts *a = m->acts;
    if (a) {
        const int L = m->cfg.n_layer;
        for (int i = 0; i < m->cfg.n_conv; i++) { free(a->conv_out[i]); free(a->act[i]); }
        float *fs[] = {a->gn_out, a->gn_mean, a->gn_rstd, a->cols, a->dcols, a->F, a->ln_st, a->X, a->Xm, a->pos_w,
                       a->dpos_w, a->pos_norm, a->pos_pre, a->pos_act, a->pcols, a->pdcols, a->E, a->stf, a->y, a->cm,
                       a->ql, a->ys, a->qraw, a->q, a->c, a->logits, a->dres, a->dln, a->dqkv, a->datt, a->datty,
                       a->dh, a->dhg, a->dE, a->dX, a->dF, a->dz, a->dz2, a->wav, a->dq, a->dc, a->dqraw, a->dql, a->dy, a->dcm};
        for (size_t i = 0; i < sizeof fs / sizeof *fs; i++) free(fs[i]);
        float **ls[] = {a->res, a->n1, a->st1, a->qkv, a->att, a->atty, a->mid, a->n2, a->st2, a->h, a->hg};
        for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) free_layers(ls[i], L);
        free(a->idx);
        free(a->rows);
        free(a->neg);
        free(a);
    }
    derf_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

static void linear_default(derf_rng *r, float *w, float *b, int out, int in) { /* nn.Linear's own init */
    const float bound = 1.0f / sqrtf((float)in);
    derf_rng_fill_uniform(r, w, (size_t)out * in, -bound, bound);
    derf_rng_fill_uniform(r, b, (size_t)out, -bound, bound);
}

void derf_w2v_init(derf_w2v *m, uint64_t seed) {
    const derf_w2v_config *c = &m->cfg;
    w2v_acts *a = m->acts;
    const int C = c->conv_dim, d = c->d, GV = c->groups * c->vars, Fd = c->final_dim, K = c->pos_k;
    derf_rng r;
    derf_rng_seed(&r, seed, 0x7732u /* "w2" */);
    memset(m->params.params, 0, m->params.total * sizeof(float));
    w2v_top_w w;
    top_w(m, &a->ix, m->params.params, &w);
    for (int i = 0; i < c->n_conv; i++) {
        int fan_in = (i ? C : 1) * c->conv_k[i];
        derf_rng_fill_normal(&r, w.conv[i], (size_t)C * fan_in, 0.0f, sqrtf(2.0f / fan_in));
    }
    for (int i = 0; i < C; i++) w.gn_w[i] = w.ln_w[i] = 1.0f;
    linear_default(&r, w.proj_w, w.proj_b, d, C);
    derf_rng_fill_uniform(&r, w.mask_emb, d, 0.0f, 1.0f);
    const size_t R = (size_t)d * (d / c->pos_groups);
    derf_rng_fill_normal(&r, w.pos_v, R * K, 0.0f, sqrtf(4.0f / (K * d)));
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (size_t i = 0; i < R; i++) s += (double)w.pos_v[i * K + k] * w.pos_v[i * K + k];
        w.pos_g[k] = (float)sqrt(s);
    }
    for (int l = 0; l < c->n_layer; l++) {
        w2v_layer_w lw;
        layer_w(m, &a->ix, m->params.params, l, &lw);
        if (lw.n1) derf_norm_init(&c->norm, d, lw.n1);
        if (lw.n2) derf_norm_init(&c->norm, d, lw.n2);
        derf_rng_fill_normal(&r, lw.qkv_w, (size_t)3 * d * d, 0.0f, 0.02f);
        derf_rng_fill_normal(&r, lw.out_w, (size_t)d * d, 0.0f, 0.02f);
        derf_rng_fill_normal(&r, lw.fc1_w, (size_t)c->ffn * d, 0.0f, 0.02f);
        derf_rng_fill_normal(&r, lw.fc2_w, (size_t)c->ffn * d, 0.0f, 0.02f);
    }
    if (w.nf) derf_norm_init(&c->norm, d, w.nf);
    derf_rng_fill_uniform(&r, w.qv, (size_t)GV * (Fd / c->groups), 0.0f, 1.0f);
    derf_rng_fill_normal(&r, w.wq_w, (size_t)GV * C, 0.0f, 1.0f);
    linear_default(&r, w.pq_w, w.pq_b, Fd, Fd);
    linear_default(&r, w.fp_w, w.fp_b, Fd, d);
}

/* ------------------------------------------------------------------------------- draws */

void derf_w2v_sample(const derf_w2v_config *c, derf_w2v_draws *dr, int B, int T, int train, derf_rng *rng) {
    const int len = c->mask_len, K = c->n_neg, GV = c->groups * c->vars;
    int minc = T + 1;
    int *cnt = xcalloc((size_t)B, sizeof(int)), *starts = xcalloc((size_t)T, sizeof(int));
    /* fairseq draws the span count once per batch when there is no padding */
    int ns = (int)(c->mask_prob * T / (float)len + derf_rng_uniform(rng));
    if (ns < 2) ns = 2;
    if (ns > T - 1) ns = T - 1;
    int range = T - len; /* np.random.choice(sz - min_len, num_mask, replace=False) */
    if (range <= ns) range = ns + 1;
    for (int b = 0; b < B; b++) {
        uint8_t *mk = dr->mask + (size_t)b * T;
        memset(mk, 0, (size_t)T);
        for (int i = 0; i < range; i++) starts[i] = i;
        for (int i = 0; i < ns; i++) { /* partial Fisher-Yates: ns distinct starts */
            int j = i + (int)derf_rng_below(rng, (uint32_t)(range - i)), t = starts[i];
            starts[i] = starts[j];
            starts[j] = t;
            for (int k = 0; k < len && starts[i] + k < T; k++) mk[starts[i] + k] = 1;
        }
        for (int t = 0; t < T; t++) cnt[b] += mk[t];
        if (cnt[b] < minc) minc = cnt[b];
    }
    for (int b = 0; b < B; b++) /* require_same_masks: unmask random frames down to the batch minimum */
        for (uint8_t *mk = dr->mask + (size_t)b * T; cnt[b] > minc; cnt[b]--) {
            int k = (int)derf_rng_below(rng, (uint32_t)cnt[b]), t = 0;
            for (;; t++)
                if (mk[t] && k-- == 0) break;
            mk[t] = 0;
        }
    dr->M = B * minc;
    for (int b = 0; b < B; b++) /* negatives: other masked frames of the same row, with replacement */
        for (int i = 0; i < minc; i++)
            for (int k = 0; k < K; k++) {
                int j = minc > 1 ? (int)derf_rng_below(rng, (uint32_t)(minc - 1)) : 0;
                if (j >= i && minc > 1) j++;
                dr->neg[((size_t)b * minc + i) * K + k] = b * minc + j;
            }
    if (train && dr->gumbel_u)
        for (size_t i = 0; i < (size_t)dr->M * GV; i++) {
            float u;
            do u = derf_rng_uniform(rng); while (u <= 0.0f);
            dr->gumbel_u[i] = u;
        }
    free(cnt);
    free(starts);
}

/* ------------------------------------------------------------------------------- forward */

derf_w2v_out derf_w2v_forward(derf_w2v *m, const float *wav, int B, int N, const derf_w2v_draws *dr, float tau) {
    const derf_w2v_config *c = &m->cfg;
    w2v_acts *a = m->acts;
    const int C = c->conv_dim, d = c->d, H = c->ffn, NH = c->n_head, L = c->n_layer, G = c->groups, V = c->vars;
    const int GV = G * V, Fd = c->final_dim, Dv = Fd / G, K = c->n_neg;
    const int T = derf_w2v_frames(c, N);
    if (B <= 0 || B > m->max_batch || N > m->max_samples || T < 1) {
        fprintf(stderr, "derf: wav2vec forward with %d x %d samples, built for %d x %d\n", B, N, m->max_batch,
                m->max_samples);
        abort();
    }
    derf_w2v_out o = {0};
    w2v_top_w w;
    top_w(m, &a->ix, m->params.params, &w);
    a->B = B;
    a->N = N;
    a->T = T;
    a->train = dr && dr->gumbel_u != NULL;
    a->tau = tau;
    /* conv feature encoder [B,T_i,C] */
    memcpy(a->wav, wav, (size_t)B * N * sizeof(float));
    const float *in = a->wav;
    int Tin = N;
    for (int i = 0; i < c->n_conv; i++) {
        const int cin = i ? C : 1, To = derf_conv1d_len(Tin, c->conv_k[i], c->conv_s[i], 0);
        derf_conv1d_forward(a->conv_out[i], a->cols, in, w.conv[i], NULL, B, Tin, cin, C, c->conv_k[i], c->conv_s[i],
                            0, 1, To);
        const float *pre = a->conv_out[i];
        if (i == 0) {
            derf_groupnorm_forward(a->gn_out, a->gn_mean, a->gn_rstd, pre, w.gn_w, w.gn_b, 1e-5f, B, To, C, C);
            pre = a->gn_out;
        }
        derf_gelu_forward(a->act[i], pre, (size_t)B * To * C, DERF_GELU_ERF);
        in = a->act[i];
        Tin = a->Tcur[i] = To;
    }
    const float *z = in;
    const size_t BT = (size_t)B * T;
    double pen = 0;
    for (size_t i = 0; i < BT * C; i++) pen += (double)z[i] * z[i];
    o.feature_pen = (float)(pen / (double)(BT * C));
    derf_norm_forward(&a->ln, a->F, a->ln_st, z, w.ln_w, (int)BT, C);
    /* projection, masking, positional convolution */
    derf_linear_forward(a->X, a->F, w.proj_w, w.proj_b, (int)BT, C, d);
    memcpy(a->Xm, a->X, BT * d * sizeof(float));
    int M = 0;
    for (size_t r = 0; dr && r < BT; r++)
        if (dr->mask[r]) {
            memcpy(a->Xm + r * d, w.mask_emb, (size_t)d * sizeof(float));
            a->rows[M++] = (int32_t)r;
        }
    if (dr && (M != dr->M || M == 0)) {
        fprintf(stderr, "derf: wav2vec draws hold %d masked frames, the mask %d\n", dr->M, M);
        abort();
    }
    a->M = o.M = M;
    if (dr) memcpy(a->neg, dr->neg, (size_t)M * K * sizeof(int32_t));
    const int R = d * (d / c->pos_groups);
    derf_weight_norm_forward(a->pos_w, a->pos_norm, w.pos_v, w.pos_g, R, c->pos_k);
    derf_conv1d_forward(a->pos_pre, a->pcols, a->Xm, a->pos_w, w.pos_b, B, T, d, d, c->pos_k, 1, c->pos_k / 2,
                        c->pos_groups, T);
    derf_gelu_forward(a->pos_act, a->pos_pre, BT * d, DERF_GELU_ERF);
    derf_residual_forward(a->res[0], a->Xm, a->pos_act, BT * d);
    /* Transformer, pre-norm */
    for (int l = 0; l < L; l++) {
        w2v_layer_w lw;
        layer_w(m, &a->ix, m->params.params, l, &lw);
        derf_norm_forward(&c->norm, a->n1[l], a->st1[l], a->res[l], lw.n1, (int)BT, d);
        derf_linear_forward(a->qkv[l], a->n1[l], lw.qkv_w, lw.qkv_b, (int)BT, d, 3 * d);
        derf_attention_forward(a->atty[l], a->att[l], a->qkv[l], B, T, d, NH, 0);
        derf_linear_forward(a->dres, a->atty[l], lw.out_w, lw.out_b, (int)BT, d, d); /* dres: scratch here */
        derf_residual_forward(a->mid[l], a->res[l], a->dres, BT * d);
        derf_norm_forward(&c->norm, a->n2[l], a->st2[l], a->mid[l], lw.n2, (int)BT, d);
        derf_linear_forward(a->h[l], a->n2[l], lw.fc1_w, lw.fc1_b, (int)BT, d, H);
        derf_gelu_forward(a->hg[l], a->h[l], BT * H, DERF_GELU_ERF);
        derf_linear_forward(a->dres, a->hg[l], lw.fc2_w, lw.fc2_b, (int)BT, H, d);
        derf_residual_forward(a->res[l + 1], a->mid[l], a->dres, BT * d);
    }
    derf_norm_forward(&c->norm, a->E, a->stf, a->res[L], w.nf, (int)BT, d);
    if (!dr) return o; /* features only (derf_w2v_encoder_out) */
    /* targets: quantized masked features; predictions: projected masked encoder outputs */
    for (int i = 0; i < M; i++) {
        memcpy(a->y + (size_t)i * C, a->F + (size_t)a->rows[i] * C, (size_t)C * sizeof(float));
        memcpy(a->cm + (size_t)i * d, a->E + (size_t)a->rows[i] * d, (size_t)d * sizeof(float));
    }
    derf_linear_forward(a->ql, a->y, w.wq_w, w.wq_b, M, C, GV);
    derf_gumbel_quant_forward(a->qraw, a->idx, a->ys, a->ql, dr->gumbel_u, w.qv, tau, M, G, V, Dv);
    derf_linear_forward(a->q, a->qraw, w.pq_w, w.pq_b, M, Fd, Fd);
    derf_linear_forward(a->c, a->cm, w.fp_w, w.fp_b, M, d, Fd);
    o.diversity = derf_quant_diversity(NULL, &o.prob_ppl, a->ql, 0, M, G, V);
    double cp = 0; /* code perplexity of the hard choices */
    for (int g = 0; g < G; g++) {
        double h = 0;
        for (int v = 0; v < V; v++) {
            int n = 0;
            for (int i = 0; i < M; i++) n += a->idx[i * G + g] == v;
            double p = (double)n / M;
            h -= p * log(p + 1e-7);
        }
        cp += exp(h);
    }
    o.code_ppl = (float)cp;
    o.contrastive = derf_infonce(a->logits, &o.correct, NULL, NULL, a->c, a->q, a->idx, G, a->neg, M, Fd, K, c->logit_temp, 0);
    o.loss = o.contrastive + (double)M * (c->div_weight * o.diversity + c->pen_weight * o.feature_pen);
    return o;
}

const float *derf_w2v_encoder_out(const derf_w2v *m, int *T) {
    const w2v_acts *a = m->acts;
    if (T) *T = a->T;
    return a->E;
}

/* ------------------------------------------------------------------------------- backward */

void derf_w2v_backward(derf_w2v *m, float scale) {
    const derf_w2v_config *c = &m->cfg;
    w2v_acts *a = m->acts;
    const int C = c->conv_dim, d = c->d, H = c->ffn, NH = c->n_head, L = c->n_layer, G = c->groups, V = c->vars;
    const int GV = G * V, Fd = c->final_dim, Dv = Fd / G, K = c->n_neg, B = a->B, T = a->T, M = a->M;
    const size_t BT = (size_t)B * T;
    if (!a->train) {
        fprintf(stderr, "derf: wav2vec backward needs a training-mode forward (Gumbel uniforms)\n");
        abort();
    }
    w2v_top_w w, gw;
    top_w(m, &a->ix, m->params.params, &w);
    top_w(m, &a->ix, m->params.grads, &gw);
    const float s = scale / (float)M; /* gradient of scale * loss / M */
    /* InfoNCE -> predictions and targets */
    memset(a->dc, 0, (size_t)M * Fd * sizeof(float));
    memset(a->dq, 0, (size_t)M * Fd * sizeof(float));
    derf_infonce(a->logits, NULL, a->dc, a->dq, a->c, a->q, a->idx, G, a->neg, M, Fd, K, c->logit_temp, s);
    memset(a->dcm, 0, (size_t)M * d * sizeof(float));
    derf_linear_backward(a->dcm, gw.fp_w, gw.fp_b, a->dc, a->cm, w.fp_w, M, d, Fd);
    memset(a->dqraw, 0, (size_t)M * Fd * sizeof(float));
    derf_linear_backward(a->dqraw, gw.pq_w, gw.pq_b, a->dq, a->qraw, w.pq_w, M, Fd, Fd);
    memset(a->dql, 0, (size_t)M * GV * sizeof(float));
    derf_gumbel_quant_backward(a->dql, gw.qv, a->dqraw, a->idx, a->ys, w.qv, a->tau, M, G, V, Dv);
    derf_quant_diversity(a->dql, NULL, a->ql, scale * c->div_weight, M, G, V); /* M * w * div, over M */
    memset(a->dy, 0, (size_t)M * C * sizeof(float));
    derf_linear_backward(a->dy, gw.wq_w, gw.wq_b, a->dql, a->y, w.wq_w, M, C, GV);
    memset(a->dF, 0, BT * C * sizeof(float));
    memset(a->dE, 0, BT * d * sizeof(float));
    for (int i = 0; i < M; i++) {
        float *df = a->dF + (size_t)a->rows[i] * C, *de = a->dE + (size_t)a->rows[i] * d;
        for (int j = 0; j < C; j++) df[j] += a->dy[(size_t)i * C + j];
        for (int j = 0; j < d; j++) de[j] += a->dcm[(size_t)i * d + j];
    }
    /* encoder */
    memset(a->dres, 0, BT * d * sizeof(float));
    derf_norm_backward(&c->norm, a->dres, gw.nf, a->dE, a->res[L], w.nf, a->stf, (int)BT, d);
    for (int l = L - 1; l >= 0; l--) {
        w2v_layer_w lw, lg;
        layer_w(m, &a->ix, m->params.params, l, &lw);
        layer_w(m, &a->ix, m->params.grads, l, &lg);
        /* dres holds d res[l+1] = d mid (residual) + MLP branch */
        derf_linear_backward_set(a->dhg, lg.fc2_w, lg.fc2_b, a->dres, a->hg[l], lw.fc2_w, (int)BT, H, d);
        derf_gelu_backward_set(a->dh, a->dhg, a->h[l], BT * H, DERF_GELU_ERF);
        derf_linear_backward_set(a->dln, lg.fc1_w, lg.fc1_b, a->dh, a->n2[l], lw.fc1_w, (int)BT, d, H);
        derf_norm_backward(&c->norm, a->dres, lg.n2, a->dln, a->mid[l], lw.n2, a->st2[l], (int)BT, d);
        /* dres = d mid = d res[l] (residual) + attention branch */
        derf_linear_backward_set(a->datty, lg.out_w, lg.out_b, a->dres, a->atty[l], lw.out_w, (int)BT, d, d);
        derf_attention_backward_set(a->dqkv, a->datt, a->datty, a->qkv[l], a->att[l], B, T, d, NH, 0);
        derf_linear_backward_set(a->dln, lg.qkv_w, lg.qkv_b, a->dqkv, a->n1[l], lw.qkv_w, (int)BT, d, 3 * d);
        derf_norm_backward(&c->norm, a->dres, lg.n1, a->dln, a->res[l], lw.n1, a->st1[l], (int)BT, d);
    }
    /* positional convolution: res0 = Xm + GELU(conv(Xm)) */
    memcpy(a->dX, a->dres, BT * d * sizeof(float));
    derf_gelu_backward_set(a->dln, a->dres, a->pos_pre, BT * d, DERF_GELU_ERF);
    const int R = d * (d / c->pos_groups);
    memset(a->dpos_w, 0, (size_t)R * c->pos_k * sizeof(float));
    derf_conv1d_backward(a->dX, a->dpos_w, gw.pos_b, a->pcols, a->pdcols, a->dln, a->Xm, a->pos_w, B, T, d, d,
                         c->pos_k, 1, c->pos_k / 2, c->pos_groups, T);
    derf_weight_norm_backward(gw.pos_v, gw.pos_g, a->dpos_w, w.pos_v, w.pos_g, a->pos_norm, R, c->pos_k);
    /* masking: masked rows came from mask_emb */
    for (int i = 0; i < M; i++) {
        float *dx = a->dX + (size_t)a->rows[i] * d;
        for (int j = 0; j < d; j++) { gw.mask_emb[j] += dx[j]; dx[j] = 0; }
    }
    derf_linear_backward(a->dF, gw.proj_w, gw.proj_b, a->dX, a->F, w.proj_w, (int)BT, C, d);
    /* feature LayerNorm and penalty, then x grad_mult into the conv encoder */
    const int last = c->n_conv - 1;
    const float *z = a->act[last];
    float *dz = a->dz;
    memset(dz, 0, BT * C * sizeof(float));
    derf_norm_backward(&a->ln, dz, gw.ln_w, a->dF, z, w.ln_w, a->ln_st, (int)BT, C);
    const float pk = scale * c->pen_weight * 2.0f / (float)(BT * C);
    for (size_t i = 0; i < BT * C; i++) dz[i] = (dz[i] + pk * z[i]) * c->grad_mult;
    /* conv encoder, last block first: P holds d act[i], Q the gradient before GELU */
    float *P = dz, *Q = a->dz2;
    for (int i = last; i >= 0; i--) {
        const int Tin = i ? a->Tcur[i - 1] : a->N, Ti = a->Tcur[i], cin = i ? C : 1;
        const size_t n = (size_t)B * Ti * C;
        derf_gelu_backward_set(Q, P, i ? a->conv_out[i] : a->gn_out, n, DERF_GELU_ERF);
        float *dconv = Q, *other = P;
        if (i == 0) { /* GroupNorm: P = d conv_out[0] */
            memset(P, 0, n * sizeof(float));
            derf_groupnorm_backward(P, gw.gn_w, gw.gn_b, Q, a->conv_out[0], a->gn_mean, a->gn_rstd, w.gn_w, B, Ti, C, C);
            dconv = P;
            other = Q;
        }
        if (i) memset(other, 0, (size_t)B * Tin * cin * sizeof(float));
        derf_conv1d_backward(i ? other : NULL, gw.conv[i], NULL, a->cols, a->dcols, dconv, i ? a->act[i - 1] : a->wav,
                             w.conv[i], B, Tin, cin, C, c->conv_k[i], c->conv_s[i], 0, 1, Ti);
        P = other;
        Q = dconv;
    }
}

/* ------------------------------------------------------------------------------- metadata */

int derf_w2v_config_to_meta(const derf_w2v_config *c, char keys[][32], char vals[][128], int max) {
    int n = 0;
#define KV(k, ...) do { if (n >= max) return -1; snprintf(keys[n], 32, "%s", k); snprintf(vals[n], 128, __VA_ARGS__); n++; } while (0)
    char norm[128], conv[128] = "";
    derf_norm_format(&c->norm, norm, sizeof norm);
    for (int i = 0, k = 0; i < c->n_conv; i++)
        k += snprintf(conv + k, sizeof conv - (size_t)k, "%s%d:%d", i ? "," : "", c->conv_k[i], c->conv_s[i]);
    KV("model", "wav2vec2");
    KV("conv", "%s", conv);
    KV("conv_dim", "%d", c->conv_dim);
    KV("d", "%d", c->d);
    KV("n_layer", "%d", c->n_layer);
    KV("n_head", "%d", c->n_head);
    KV("ffn", "%d", c->ffn);
    KV("final_dim", "%d", c->final_dim);
    KV("pos_k", "%d", c->pos_k);
    KV("pos_groups", "%d", c->pos_groups);
    KV("groups", "%d", c->groups);
    KV("vars", "%d", c->vars);
    KV("n_neg", "%d", c->n_neg);
    KV("logit_temp", "%.9g", (double)c->logit_temp);
    KV("div_weight", "%.9g", (double)c->div_weight);
    KV("pen_weight", "%.9g", (double)c->pen_weight);
    KV("grad_mult", "%.9g", (double)c->grad_mult);
    KV("norm", "%s", norm);
#undef KV
    return n;
}
