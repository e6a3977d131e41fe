/* caduceus.c: Caduceus-PS (see derf/caduceus.h): presets, tensors, init, forward and backward of the
 * bidirectional Mamba backbone run on both strands as one 2B batch (the selective scan and its exact
 * reverse-time adjoint are in scan.c), the RCPS LM head and the conjoined classifier, and BERT-style MLM masking.
 *
 * Shape letters: B sequences (2B rows inside: ids then rc(ids)), T tokens, d width, E = expand d, N state size,
 * R dt rank, K conv width, V vocabulary. Activations are token-major [2B,T,*]. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/caduceus.h"
#include "derf/dna.h"
#include "derf/io.h"
#include "derf/modelutil.h"
#include "derf/ops.h"
#include "models/scan.h"

/* ------------------------------------------------------------------------------- config */

int derf_caduceus_preset(derf_caduceus_config *c, const char *name, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->vocab = 16;
    c->d_state = 16;
    c->expand = 2;
    c->d_conv = 4;
    if (name && !strcmp(name, "ct")) { c->d_model = 64; c->n_layer = 4; }
    else if (name && !strcmp(name, "gb")) { c->d_model = 118; c->n_layer = 4; }
    else if (name && !strcmp(name, "test")) { c->d_model = 8; c->n_layer = 2; c->d_state = 4; }
    else {
        derf_io_errf(err, errlen, "unknown Caduceus preset '%s' (known: ct, gb, test)", name ? name : "(null)");
        return -1;
    }
    c->dt_rank = (c->d_model + 15) / 16;
    char perr[256];
    if (derf_norm_parse("rmsnorm", &c->norm, perr, sizeof perr)) { derf_io_errf(err, errlen, "%s", perr); return -1; }
    return 0;
}

int derf_caduceus_check(const derf_caduceus_config *c, char *err, size_t errlen) {
#define NEED(cond, ...) do { if (!(cond)) { derf_io_errf(err, errlen, __VA_ARGS__); return -1; } } while (0)
    NEED(c->vocab >= 12 && c->vocab <= 256, "Caduceus vocab must be in 12..256, not %d", c->vocab);
    NEED(c->d_model > 0 && c->d_model <= 8192, "Caduceus d_model must be in 1..8192, not %d", c->d_model);
    NEED(c->n_layer > 0 && c->n_layer <= 256, "Caduceus n_layer must be in 1..256, not %d", c->n_layer);
    NEED(c->d_state > 0 && c->d_state <= 256, "Caduceus d_state must be in 1..256, not %d", c->d_state);
    NEED(c->expand > 0 && c->expand <= 16, "Caduceus expand must be in 1..16, not %d", c->expand);
    NEED(c->dt_rank > 0 && c->dt_rank <= 4096, "Caduceus dt_rank must be in 1..4096, not %d", c->dt_rank);
    NEED(c->d_conv > 0 && c->d_conv <= 64, "Caduceus d_conv must be in 1..64, not %d", c->d_conv);
    NEED(c->n_classes >= 0 && c->n_classes <= 4096, "Caduceus n_classes must be in 0..4096, not %d", c->n_classes);
    NEED(isfinite(c->emb_scale) && c->emb_scale >= 0, "Caduceus emb_scale must be >= 0 (0: none)");
#undef NEED
    return 0;
}

/* ------------------------------------------------------------------------------- parameters */

typedef struct { size_t conv_w, conv_b, xproj, dt_w, dt_b, A_log, D; } dir_off;
typedef struct { size_t norm, in_w, out_w; dir_off dir[2]; } layer_off;

/* forward activations of one direction of one layer ([2B,T,*]) */
typedef struct { float *xz, *xconv, *xc, *dbc, *dpre, *delta, *y, *g, *ckpt; } dir_acts; /* ckpt: the scan's checkpoints */

struct derf_caduceus_acts {
    layer_off *lo;
    size_t emb, emb_scale, normf, head_w, head_b;
    float *res;        /* [L+1][2B,T,d] */
    float *hn, *st;    /* [L][2B,T,d] normed, [L] stats */
    dir_acts *da;      /* [L][2] */
    float *gsum;       /* [L][2B,T,E] g_fwd + flip(g_rev) */
    float *nf, *stf, *P;  /* [2B,T,d], stats, [2B,T,V] */
    float *pooled, *hl;   /* [2B,d], [2B,classes] */
    /* backward scratch */
    float *dres, *dA, *dgs, *dxz, *dxz2, *dxc, *ddbc, *ddelta, *dxconv, *dP, *dpool, *dhl, *dlog;
    int32_t *tok2, *targets;
};

#define reg derf_model_reg
#define reg_norm derf_model_reg_norm
#define falloc derf_model_falloc

/* Weight decay on the Linear/conv weights and the head (not the embedding, A_log, D, biases, norms). */
static void register_tensors(derf_caduceus *m) {
    const derf_caduceus_config *c = &m->cfg;
    const int d = c->d_model, E = c->expand * d, N = c->d_state, R = c->dt_rank, K = c->d_conv;
    derf_params *p = &m->params;
    derf_caduceus_acts *a = m->a;
    char name[DERF_NAME_MAX];
    a->emb = reg(p, "backbone.embeddings.word_embeddings.weight", 2, c->vocab, d, 0, 0);
    if (c->emb_scale > 0) a->emb_scale = reg(p, "backbone.embeddings.scale", 1, 1, 0, 0, 0);
    for (int l = 0; l < c->n_layer; l++) {
        layer_off *o = &a->lo[l];
#define NM(s) (snprintf(name, sizeof name, "backbone.layers.%d.%s", l, s), name)
        o->norm = reg_norm(p, &c->norm, d, NM("norm"));
        o->in_w = reg(p, NM("mixer.mamba_fwd.in_proj.weight"), 2, 2 * E, d, 0, 1);
        for (int r = 0; r < 2; r++) {
            char pre[20];
            snprintf(pre, sizeof pre, "mixer.mamba_%s.", r ? "rev" : "fwd");
#define DN(s) (snprintf(name, sizeof name, "backbone.layers.%d.%s%s", l, pre, s), name)
            dir_off *q = &o->dir[r];
            q->conv_w = reg(p, DN("conv1d.weight"), 3, E, 1, K, 1);
            q->conv_b = reg(p, DN("conv1d.bias"), 1, E, 0, 0, 0);
            q->xproj = reg(p, DN("x_proj.weight"), 2, R + 2 * N, E, 0, 1);
            q->dt_w = reg(p, DN("dt_proj.weight"), 2, E, R, 0, 1);
            q->dt_b = reg(p, DN("dt_proj.bias"), 1, E, 0, 0, 0);
            q->A_log = reg(p, DN("A_log"), 2, E, N, 0, 0);
            q->D = reg(p, DN("D"), 1, E, 0, 0, 0);
#undef DN
        }
        o->out_w = reg(p, NM("mixer.mamba_fwd.out_proj.weight"), 2, d, E, 0, 1);
#undef NM
    }
    a->normf = reg_norm(p, &c->norm, d, "backbone.norm_f");
    if (c->n_classes) {
        a->head_w = reg(p, "head.weight", 2, c->n_classes, d, 0, 1);
        a->head_b = reg(p, "head.bias", 1, c->n_classes, 0, 0, 0);
    }
}

/* ------------------------------------------------------------------------------- build / free */


int derf_caduceus_build(derf_caduceus *m, const derf_caduceus_config *cfg, int max_B, int max_T, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (derf_caduceus_check(cfg, err, errlen)) return -1;
    if (max_B <= 0 || max_T <= 0 || (size_t)max_B * max_T > (1u << 28)) {
        derf_io_errf(err, errlen, "Caduceus: bad batch shape %d x %d", max_B, max_T);
        return -1;
    }
    m->cfg = *cfg;
    m->max_B = max_B;
    m->max_T = max_T;
    derf_caduceus_acts *a = m->a = calloc(1, sizeof *a);
    if (!a || !(a->lo = calloc((size_t)cfg->n_layer, sizeof *a->lo)) || !(a->da = calloc((size_t)cfg->n_layer * 2, sizeof *a->da))) {
        if (a) free(a->lo);
        free(a);
        m->a = NULL;
        derf_io_errf(err, errlen, "out of memory building Caduceus");
        return -1;
    }
    derf_params_init(&m->params);
    register_tensors(m);
    derf_params_alloc(&m->params);
    const size_t L = (size_t)cfg->n_layer, d = (size_t)cfg->d_model, E = (size_t)cfg->expand * d, N = (size_t)cfg->d_state,
                 R = (size_t)cfg->dt_rank, V = (size_t)cfg->vocab, BT = 2 * (size_t)max_B * max_T,
                 K = cfg->n_classes ? (size_t)cfg->n_classes : 1, ns = derf_norm_stats_count(&cfg->norm, (int)BT);
    int fail = 0;
    a->res = falloc((L + 1) * BT * d, &fail);
    a->hn = falloc(L * BT * d, &fail);
    a->st = falloc(L * ns, &fail);
    for (size_t i = 0; i < 2 * L; i++) {
        dir_acts *q = &a->da[i];
        q->xz = falloc(BT * 2 * E, &fail);
        q->xconv = falloc(BT * E, &fail);
        q->xc = falloc(BT * E, &fail);
        q->dbc = falloc(BT * (R + 2 * N), &fail);
        q->dpre = falloc(BT * E, &fail);
        q->delta = falloc(BT * E, &fail);
        q->y = falloc(BT * E, &fail);
        q->g = falloc(BT * E, &fail);
        const size_t nck = derf_scan_ckpt_floats(2 * max_B, max_T, (int)E, (int)N);
        if (!(q->ckpt = aligned_alloc(64, (nck * sizeof(float) + 63) / 64 * 64))) fail = 1;
    }
    a->gsum = falloc(L * BT * E, &fail);
    a->nf = falloc(BT * d, &fail);
    a->stf = falloc(ns, &fail);
    a->P = falloc(BT * V, &fail);
    a->pooled = falloc(2 * (size_t)max_B * d, &fail);
    a->hl = falloc(2 * (size_t)max_B * K, &fail);
    a->dres = falloc(BT * d, &fail);
    a->dA = falloc(BT * d, &fail);
    a->dgs = falloc(BT * E, &fail);
    a->dxz = falloc(BT * 2 * E, &fail);
    a->dxz2 = falloc(BT * 2 * E, &fail);
    a->dxc = falloc(BT * E, &fail);
    a->ddbc = falloc(BT * (R + 2 * N), &fail);
    a->ddelta = falloc(BT * E, &fail);
    a->dxconv = falloc(BT * E, &fail);
    a->dP = falloc(BT * V, &fail);
    a->dpool = falloc(2 * (size_t)max_B * d, &fail);
    a->dhl = falloc(2 * (size_t)max_B * K, &fail);
    a->dlog = falloc((size_t)max_B * max_T * V + (size_t)max_B * K, &fail);
    m->logits = falloc((size_t)max_B * max_T * V + (size_t)max_B * K, &fail);
    a->tok2 = calloc(BT, sizeof(int32_t));
    a->targets = calloc((size_t)max_B * max_T, sizeof(int32_t));
    if (fail || !a->tok2 || !a->targets) {
        derf_caduceus_free(m);
        derf_io_errf(err, errlen, "out of memory for Caduceus activations (batch %d x %d tokens)", max_B, max_T);
        return -1;
    }
    return 0;
}

void derf_caduceus_free(derf_caduceus *m) {
    derf_caduceus_acts *a = m->a;
    if (a) {
        for (int i = 0; a->da && i < 2 * m->cfg.n_layer; i++) {
            dir_acts *q = &a->da[i];
            float *f[] = {q->xz, q->xconv, q->xc, q->dbc, q->dpre, q->delta, q->y, q->g, q->ckpt};
            for (size_t k = 0; k < sizeof f / sizeof *f; k++) free(f[k]);
        }
        float *all[] = {a->res, a->hn, a->st, a->gsum, a->nf, a->stf, a->P, a->pooled, a->hl, a->dres, a->dA, a->dgs, a->dxz,
                        a->dxz2, a->dxc, a->ddbc, a->ddelta, a->dxconv, a->dP, a->dpool, a->dhl, a->dlog};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
        free(a->tok2);
        free(a->targets);
        free(a->da);
        free(a->lo);
        free(a);
    }
    free(m->logits);
    derf_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

void derf_caduceus_init(derf_caduceus *m, uint64_t seed) {
    const derf_caduceus_config *c = &m->cfg;
    const int d = c->d_model, E = c->expand * d, N = c->d_state, R = c->dt_rank, K = c->d_conv;
    derf_rng r;
    derf_rng_seed(&r, seed, 0xCAD);
    float *s = m->params.params;
    memset(s, 0, m->params.total * sizeof(float));
    derf_rng_fill_normal(&r, s + m->a->emb, (size_t)c->vocab * d, 0, 0.02f);
    if (c->emb_scale > 0) s[m->a->emb_scale] = c->emb_scale;
    for (int l = 0; l < c->n_layer; l++) {
        const layer_off *o = &m->a->lo[l];
        derf_norm_init(&c->norm, d, s + o->norm);
        float bi = 1.f / sqrtf((float)d), bo = 1.f / sqrtf((float)E) / sqrtf((float)c->n_layer);
        derf_rng_fill_uniform(&r, s + o->in_w, (size_t)2 * E * d, -bi, bi);
        derf_rng_fill_uniform(&r, s + o->out_w, (size_t)d * E, -bo, bo);
        for (int q = 0; q < 2; q++) {
            const dir_off *p = &o->dir[q];
            float bc = 1.f / sqrtf((float)K), bx = 1.f / sqrtf((float)E), bd = 1.f / sqrtf((float)R);
            derf_rng_fill_uniform(&r, s + p->conv_w, (size_t)E * K, -bc, bc);
            derf_rng_fill_uniform(&r, s + p->conv_b, (size_t)E, -bc, bc);
            derf_rng_fill_uniform(&r, s + p->xproj, (size_t)(R + 2 * N) * E, -bx, bx);
            derf_rng_fill_uniform(&r, s + p->dt_w, (size_t)E * R, -bd, bd);
            for (int e = 0; e < E; e++) {
                double dt = exp(log(1e-3) + derf_rng_uniform(&r) * (log(1e-1) - log(1e-3)));
                if (dt < 1e-4) dt = 1e-4;
                s[p->dt_b + e] = (float)(dt + log(-expm1(-dt)));
                s[p->D + e] = 1.f;
                for (int n = 0; n < N; n++) s[p->A_log + (size_t)e * N + n] = logf((float)(n + 1));
            }
        }
    }
    derf_norm_init(&c->norm, d, s + m->a->normf);
    if (c->n_classes) derf_rng_fill_normal(&r, s + m->a->head_w, (size_t)c->n_classes * d, 0, 0.02f);
}

/* ------------------------------------------------------------------------------- pieces */


/* rows of [NB,T,C]: dst[b,t] = src[b,T-1-t] */
static void flip_T(float *dst, const float *src, int NB, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < NB * T; bt++) {
        int b = bt / T, t = bt % T;
        memcpy(dst + (size_t)bt * C, src + ((size_t)b * T + (T - 1 - t)) * C, sizeof(float) * (size_t)C);
    }
}

/* w [E,K] transposed to [K,E], so that the loops over channels read it contiguously (and vectorise) */
static float *transpose_w(const float *w, int E, int K) {
    float *wT = malloc(sizeof(float) * (size_t)E * K);
    if (!wT) { fprintf(stderr, "derf: out of memory in Caduceus' conv\n"); abort(); }
    for (int e = 0; e < E; e++)
        for (int j = 0; j < K; j++) wT[(size_t)j * E + e] = w[(size_t)e * K + j];
    return wT;
}

/* causal depthwise conv on channels [0,E) of rows of stride S: y[b,t,e] = bias[e] + sum_j w[e,j] x[b,t-K+1+j,e] */
static void dconv_forward(float *y, const float *x, int S, const float *w, const float *bias, int NB, int T, int E, int K) {
    float *wT = transpose_w(w, E, K);
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < NB * T; bt++) {
        const int t = bt % T;
        float *yr = y + (size_t)bt * E;
        for (int e = 0; e < E; e++) yr[e] = bias[e];
        for (int j = 0; j < K; j++) {
            int s = t - K + 1 + j;
            if (s < 0) continue;
            const float *xr = x + (size_t)(bt - t + s) * S, *wj = wT + (size_t)j * E;
            for (int e = 0; e < E; e++) yr[e] += wj[e] * xr[e];
        }
    }
    free(wT);
}

static void dconv_backward(float *dx, int S, float *dw, float *db, const float *dy, const float *x, const float *w, int NB, int T,
                           int E, int K) {
    float *wT = transpose_w(w, E, K);
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < NB * T; bt++) {
        const int t = bt % T;
        float *dxr = dx + (size_t)bt * S;
        for (int j = 0; j < K; j++) { /* x[s] feeds y[s + K - 1 - j] */
            int tt = t + K - 1 - j;
            if (tt >= T) continue;
            const float *dyr = dy + (size_t)(bt + K - 1 - j) * E, *wj = wT + (size_t)j * E;
            for (int e = 0; e < E; e++) dxr[e] += wj[e] * dyr[e];
        }
    }
    /* dw, db: sums over all rows, per thread into [K,E] / [E] (contiguous over channels), then added up */
#pragma omp parallel
    {
        float *acc = calloc((size_t)(K + 1) * E, sizeof(float));
        if (!acc) { fprintf(stderr, "derf: out of memory in Caduceus' conv\n"); abort(); }
        float *adb = acc + (size_t)K * E;
#pragma omp for schedule(static)
        for (int bt = 0; bt < NB * T; bt++) {
            const int t = bt % T;
            const float *dyr = dy + (size_t)bt * E;
            for (int e = 0; e < E; e++) adb[e] += dyr[e];
            for (int j = 0; j < K; j++) {
                int s = t - K + 1 + j;
                if (s < 0) continue;
                const float *xr = x + (size_t)(bt - t + s) * S;
                float *aj = acc + (size_t)j * E;
                for (int e = 0; e < E; e++) aj[e] += dyr[e] * xr[e];
            }
        }
#pragma omp critical(derf_caduceus_dconv)
        {
            for (int e = 0; e < E; e++) {
                db[e] += adb[e];
                for (int j = 0; j < K; j++) dw[(size_t)e * K + j] += acc[(size_t)j * E + e];
            }
        }
        free(acc);
    }
    free(wT);
}

/* ------------------------------------------------------------------------------- forward */

#define LD(buf, l, n) ((buf) + (size_t)(l) * (n))

/* one direction's core on xz [NB,T,2E]: writes q->{xconv,xc,dbc,dpre,delta,y,g} */
static void core_forward(const derf_caduceus *m, const float *P, const dir_off *o, dir_acts *q, int NB, int T) {
    const derf_caduceus_config *c = &m->cfg;
    const int d = c->d_model, E = c->expand * d, N = c->d_state, R = c->dt_rank, K = c->d_conv, NT = NB * T, Sd = R + 2 * N;
    dconv_forward(q->xconv, q->xz, 2 * E, P + o->conv_w, P + o->conv_b, NB, T, E, K);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < NT; i++)
        for (int e = 0; e < E; e++) q->xc[(size_t)i * E + e] = derf_siluf(q->xconv[(size_t)i * E + e]);
    derf_linear_forward(q->dbc, q->xc, P + o->xproj, NULL, NT, E, Sd);
    /* dt_proj on the first R columns of dbc (row stride Sd) */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < NT; i++) memcpy(q->dpre + (size_t)i * E, P + o->dt_b, sizeof(float) * (size_t)E);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, NT, E, R, 1.0f, q->dbc, Sd, P + o->dt_w, R, 1.0f, q->dpre, E);
    const float *dpre = q->dpre;
    float *delta = q->delta;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < NT; i++)
        for (int e = 0; e < E; e++) delta[(size_t)i * E + e] = derf_softplusf(dpre[(size_t)i * E + e]);
    derf_scan_forward(q->y, q->xc, q->delta, q->dbc, Sd, R, P + o->A_log, P + o->D, NB, T, E, N, q->ckpt);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < NT; i++)
        for (int e = 0; e < E; e++) q->g[(size_t)i * E + e] = q->y[(size_t)i * E + e] * derf_siluf(q->xz[(size_t)i * 2 * E + E + e]);
}

float derf_caduceus_forward(derf_caduceus *m, const int32_t *tokens, const int32_t *targets, int B, int T) {
    const derf_caduceus_config *c = &m->cfg;
    derf_caduceus_acts *a = m->a;
    const derf_norm_spec *ns = &c->norm;
    const int d = c->d_model, E = c->expand * d, V = c->vocab, NB = 2 * B, NT = NB * T;
    derf_model_check_batch("Caduceus", tokens, B, T, m->max_B, m->max_T, V);
    m->B = B;
    m->T = T;
    m->has_targets = targets != NULL;
    if (targets) memcpy(a->targets, targets, sizeof(int32_t) * (size_t)(c->n_classes ? B : B * T));
    /* rows 0..B-1: ids; rows B..2B-1: rc(ids) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            a->tok2[(size_t)b * T + t] = tokens[(size_t)b * T + t];
            a->tok2[(size_t)(B + b) * T + t] = derf_dna_complement(tokens[(size_t)b * T + (T - 1 - t)]);
        }
    const size_t sd = (size_t)NT * d, sE = (size_t)NT * E, sst = derf_norm_stats_count(ns, NT);
    float *P = m->params.params;
    derf_embed_forward(a->res, a->tok2, P + a->emb, NULL, NB, T, d);
    if (c->emb_scale > 0) derf_scalar_scale_forward(a->res, a->res, P[a->emb_scale], sd);
    for (int l = 0; l < c->n_layer; l++) {
        const layer_off *o = &a->lo[l];
        float *x = LD(a->res, l, sd), *hn = LD(a->hn, l, sd), *gs = LD(a->gsum, l, sE), *xo = LD(a->res, l + 1, sd);
        dir_acts *qf = &a->da[2 * l], *qr = &a->da[2 * l + 1];
        derf_norm_forward(ns, hn, LD(a->st, l, sst), x, P + o->norm, NT, d);
        derf_linear_forward(qf->xz, hn, P + o->in_w, NULL, NT, d, 2 * E);
        flip_T(qr->xz, qf->xz, NB, T, 2 * E);
        core_forward(m, P, &o->dir[0], qf, NB, T);
        core_forward(m, P, &o->dir[1], qr, NB, T);
        flip_T(gs, qr->g, NB, T, E);
        derf_residual_forward(gs, gs, qf->g, sE);
        derf_linear_forward(xo, gs, P + o->out_w, NULL, NT, E, d);
        derf_residual_forward(xo, xo, x, sd);
    }
    derf_norm_forward(ns, a->nf, a->stf, LD(a->res, c->n_layer, sd), P + a->normf, NT, d);
    if (c->n_classes) {
        const int K = c->n_classes;
        derf_mean_pool_forward(a->pooled, a->nf, NB, T, 0, d);
        derf_linear_forward(a->hl, a->pooled, P + a->head_w, P + a->head_b, NB, d, K);
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++)
                m->logits[(size_t)b * K + k] = 0.5f * (a->hl[(size_t)b * K + k] + a->hl[(size_t)(B + b) * K + k]);
        m->loss = targets ? derf_xent_forward_backward(NULL, m->logits, targets, 0, 1, B, K) : NAN;
    } else {
        derf_linear_forward(a->P, a->nf, P + a->emb, NULL, NT, d, V);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int v = 0; v < V; v++)
                    m->logits[((size_t)b * T + t) * V + v] =
                        a->P[((size_t)b * T + t) * V + v] + a->P[((size_t)(B + b) * T + (T - 1 - t)) * V + derf_dna_complement(v)];
        m->loss = targets ? derf_xent_forward_backward(NULL, m->logits, targets, 0, 1, B * T, V) : NAN;
    }
    return m->loss;
}

/* ------------------------------------------------------------------------------- backward */

/* one direction's core backward: from dg [NB,T,E] into dxz [NB,T,2E] (overwritten) and the parameter grads */
static void core_backward(derf_caduceus *m, const dir_off *o, const dir_acts *q, const float *dg, float *dxz, int NB, int T) {
    const derf_caduceus_config *c = &m->cfg;
    derf_caduceus_acts *a = m->a;
    const int d = c->d_model, E = c->expand * d, N = c->d_state, R = c->dt_rank, K = c->d_conv, NT = NB * T, Sd = R + 2 * N;
    const float *P = m->params.params;
    float *G = m->params.grads;
    memset(dxz, 0, sizeof(float) * (size_t)NT * 2 * E);
    float *dy = a->dxconv; /* scratch: dy of the scan */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < NT; i++)
        for (int e = 0; e < E; e++) {
            size_t k = (size_t)i * E + e;
            float z = q->xz[(size_t)i * 2 * E + E + e];
            dy[k] = dg[k] * derf_siluf(z);
            dxz[(size_t)i * 2 * E + E + e] = dg[k] * q->y[k] * derf_dsiluf(z);
        }
    memset(a->ddbc, 0, sizeof(float) * (size_t)NT * Sd);
    derf_scan_backward(a->dxc, a->ddelta, a->ddbc, G + o->A_log, G + o->D, dy, q->xc, q->delta, q->dbc, Sd, R, P + o->A_log, P + o->D,
                       NB, T, E, N, q->ckpt);
    /* delta = softplus(dpre); dpre = dt_w . dbc[:R] + dt_b: dp = ddelta * sigmoid(dpre) (in place), then
     * ddbc[:, :R] += dp dt_w, dt_w' += dp^T dbc[:, :R], dt_b' += sum_i dp */
    float *dp = a->ddelta;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < NT; i++)
        for (int e = 0; e < E; e++) dp[(size_t)i * E + e] *= derf_sigmoidf(q->dpre[(size_t)i * E + e]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, NT, R, E, 1.0f, dp, E, P + o->dt_w, R, 1.0f, a->ddbc, Sd);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, R, NT, 1.0f, dp, E, q->dbc, Sd, 1.0f, G + o->dt_w, R);
    derf_linear_backward(NULL, NULL, G + o->dt_b, dp, NULL, NULL, NT, 0, E);
    derf_linear_backward(a->dxc, G + o->xproj, NULL, a->ddbc, q->xc, P + o->xproj, NT, E, Sd); /* adds into dxc */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < NT; i++)
        for (int e = 0; e < E; e++) a->dxc[(size_t)i * E + e] *= derf_dsiluf(q->xconv[(size_t)i * E + e]);
    dconv_backward(dxz, 2 * E, G + o->conv_w, G + o->conv_b, a->dxc, q->xz, P + o->conv_w, NB, T, E, K);
}

void derf_caduceus_backward(derf_caduceus *m, float scale) {
    const derf_caduceus_config *c = &m->cfg;
    derf_caduceus_acts *a = m->a;
    const derf_norm_spec *ns = &c->norm;
    if (!m->has_targets) { fprintf(stderr, "derf: Caduceus backward without targets in the forward\n"); abort(); }
    const int B = m->B, T = m->T, d = c->d_model, E = c->expand * d, V = c->vocab, NB = 2 * B, NT = NB * T;
    const size_t sd = (size_t)NT * d, sE = (size_t)NT * E, sst = derf_norm_stats_count(ns, NT);
    float *P = m->params.params, *G = m->params.grads;
    memset(a->dA, 0, sizeof(float) * sd);
    if (c->n_classes) {
        const int K = c->n_classes;
        memset(a->dlog, 0, sizeof(float) * (size_t)B * K);
        derf_xent_forward_backward(a->dlog, m->logits, a->targets, 0, scale, B, K);
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) a->dhl[(size_t)b * K + k] = a->dhl[(size_t)(B + b) * K + k] = 0.5f * a->dlog[(size_t)b * K + k];
        memset(a->dpool, 0, sizeof(float) * (size_t)NB * d);
        derf_linear_backward(a->dpool, G + a->head_w, G + a->head_b, a->dhl, a->pooled, P + a->head_w, NB, d, K);
        derf_mean_pool_backward(a->dA, a->dpool, NB, T, 0, d);
    } else {
        memset(a->dlog, 0, sizeof(float) * (size_t)B * T * V);
        derf_xent_forward_backward(a->dlog, m->logits, a->targets, 0, scale, B * T, V);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int v = 0; v < V; v++) {
                    float g = a->dlog[((size_t)b * T + t) * V + v];
                    a->dP[((size_t)b * T + t) * V + v] = g;
                    a->dP[((size_t)(B + b) * T + (T - 1 - t)) * V + derf_dna_complement(v)] = g;
                }
        derf_linear_backward(a->dA, G + a->emb, NULL, a->dP, a->nf, P + a->emb, NT, d, V);
    }
    memset(a->dres, 0, sizeof(float) * sd);
    derf_norm_backward(ns, a->dres, G + a->normf, a->dA, LD(a->res, c->n_layer, sd), P + a->normf, a->stf, NT, d);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        const layer_off *o = &a->lo[l];
        dir_acts *qf = &a->da[2 * l], *qr = &a->da[2 * l + 1];
        /* x_out = x + out_proj(gsum): dres is d(x_out), and also d(x) through the residual */
        memset(a->dgs, 0, sizeof(float) * sE);
        derf_linear_backward(a->dgs, G + o->out_w, NULL, a->dres, LD(a->gsum, l, sE), P + o->out_w, NT, E, d);
        core_backward(m, &o->dir[0], qf, a->dgs, a->dxz, NB, T);
        /* the reverse direction saw flip_T(xz) and produced g_rev, added as flip_T(g_rev): its dg is flip_T(dgs)
         * (core_backward uses dxconv as scratch, so flip through it before the call) */
        flip_T(a->dxconv, a->dgs, NB, T, E);
        memcpy(a->dgs, a->dxconv, sizeof(float) * sE);
        core_backward(m, &o->dir[1], qr, a->dgs, a->dxz2, NB, T);
        /* dxz = dxz_fwd + flip_T(dxz_rev) */
        for (int bt = 0; bt < NT; bt++) {
            int b = bt / T, t = bt % T;
            const float *src = a->dxz2 + ((size_t)b * T + (T - 1 - t)) * 2 * E;
            float *dst = a->dxz + (size_t)bt * 2 * E;
            for (int k = 0; k < 2 * E; k++) dst[k] += src[k];
        }
        memset(a->dA, 0, sizeof(float) * sd);
        derf_linear_backward(a->dA, G + o->in_w, NULL, a->dxz, LD(a->hn, l, sd), P + o->in_w, NT, d, 2 * E);
        derf_norm_backward(ns, a->dres, G + o->norm, a->dA, LD(a->res, l, sd), P + o->norm, LD(a->st, l, sst), NT, d);
    }
    if (c->emb_scale > 0) { /* the unscaled embedding, gathered again into the free scratch dA */
        derf_embed_forward(a->dA, a->tok2, P + a->emb, NULL, NB, T, d);
        derf_scalar_scale_backward(a->dres, G + a->emb_scale, a->dA, P[a->emb_scale], sd);
    }
    derf_embed_backward(G + a->emb, NULL, a->dres, a->tok2, NB, T, d);
}

/* ------------------------------------------------------------------------------- MLM, metadata */

void derf_mlm_mask(int32_t *tokens, int32_t *targets, int n, float p, derf_rng *r) {
    for (int i = 0; i < n; i++) {
        int32_t id = tokens[i];
        targets[i] = -1;
        if (id < DERF_DNA_A || id > DERF_DNA_N || derf_rng_uniform(r) >= p) continue;
        targets[i] = id;
        float u = derf_rng_uniform(r);
        if (u < 0.8f) tokens[i] = DERF_DNA_MASK;
        else if (u < 0.9f) tokens[i] = DERF_DNA_A + (int32_t)derf_rng_below(r, 4);
    }
}

int derf_caduceus_config_to_meta(const derf_caduceus_config *c, char keys[][32], char vals[][128], int max) {
    int n = 0;
#define PUT(k, ...) do { if (derf_model_meta_put(keys, vals, &n, max, k, __VA_ARGS__)) return -1; } while (0)
    PUT("model", "caduceus");
    PUT("vocab", "%d", c->vocab);
    PUT("d_model", "%d", c->d_model);
    PUT("n_layer", "%d", c->n_layer);
    PUT("d_state", "%d", c->d_state);
    PUT("expand", "%d", c->expand);
    PUT("dt_rank", "%d", c->dt_rank);
    PUT("d_conv", "%d", c->d_conv);
    PUT("n_classes", "%d", c->n_classes);
    PUT("emb_scale", "%.9g", (double)c->emb_scale);
    char spec[128];
    derf_norm_format(&c->norm, spec, sizeof spec);
    PUT("norm", "%s", spec);
#undef PUT
    return n;
}
