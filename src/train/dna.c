/* dna.c: HyenaDNA pretraining (next-token, reverse-complement augmentation) and fine-tuning (mean pooling +
 * linear head) on the `derf data dna` files, plus the k-mer logistic-regression baseline (derf/dnatrain.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "derf/diag.h"
#include "derf/caduceus.h"
#include "derf/dna.h"
#include "derf/dist.h"
#include "derf/dnatrain.h"
#include "derf/fit.h"
#include "derf/io.h"
#include "derf/ops.h"
#include "derf/rng.h"
#include "derf/train.h"

void derf_dna_train_opts_default(derf_dna_train_opts *o) {
    memset(o, 0, sizeof *o);
    derf_hyena_preset(&o->model, "tiny", 1026, NULL, 0);
    derf_caduceus_preset(&o->cmodel, "ct", NULL, 0);
    o->mlm_prob = 0.15f;
    o->corpus = "runs/data/dna/human_chr22.dnac";
    o->steps = 500;
    o->epochs = 3;
    o->batch = 16;
    o->seq = 1024;
    o->lr = 6e-4f;              /* HyenaDNA's pretraining and GB fine-tuning peak (paper Table 20; docs/paper.md section 5.5) */
    o->min_lr = 1e-4f;
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->clip = 1.0f;
    o->warmup_frac = 0.1f;
    o->rc_aug = 1;
    o->eval_every = 0;
    o->eval_windows = 64;
    o->log_every = 10;
    o->ckpt_secs = -1;
}

/* ------------------------------------------------------------------------------- the model */

/* HyenaDNA or Caduceus-PS behind one interface (both: tokens [B,T]; per-token targets or class targets) */
typedef struct {
    int arch;
    derf_hyena h;
    derf_caduceus c;
    derf_params *params;
    int max_B;
} dmodel;

static int dm_build(dmodel *m, const derf_dna_train_opts *o, int ncls, int B, int T, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->arch = o->arch;
    m->max_B = B;
    if (o->arch == DERF_DNA_ARCH_CADUCEUS) {
        derf_caduceus_config c = o->cmodel;
        c.n_classes = ncls;
        if (derf_caduceus_build(&m->c, &c, B, T, err, errlen)) return -1;
        derf_caduceus_init(&m->c, o->seed);
        m->params = &m->c.params;
    } else {
        derf_hyena_config c = o->model;
        c.n_classes = ncls;
        if (c.l_max < T) c.l_max = T + 2;
        if (derf_hyena_build(&m->h, &c, B, T, err, errlen)) return -1;
        derf_hyena_init(&m->h, o->seed);
        m->params = &m->h.params;
    }
    return 0;
}
static float dm_forward(dmodel *m, const int32_t *tok, const int32_t *tgt, int B, int T) {
    return m->arch ? derf_caduceus_forward(&m->c, tok, tgt, B, T) : derf_hyena_forward(&m->h, tok, tgt, B, T);
}
static void dm_backward(dmodel *m, float scale) {
    if (m->arch) derf_caduceus_backward(&m->c, scale);
    else derf_hyena_backward(&m->h, scale);
}
static const float *dm_logits(const dmodel *m) { return m->arch ? m->c.logits : m->h.logits; }
static int dm_meta(const dmodel *m, char keys[][32], char vals[][128], int max) {
    return m->arch ? derf_caduceus_config_to_meta(&m->c.cfg, keys, vals, max) : derf_hyena_config_to_meta(&m->h.cfg, keys, vals, max);
}
static void dm_free(dmodel *m) {
    if (m->arch) derf_caduceus_free(&m->c);
    else derf_hyena_free(&m->h);
    m->params = NULL;
}
static void dm_describe(const dmodel *m, char *buf, size_t n) {
    char spec[200];
    if (m->arch) {
        derf_norm_format(&m->c.cfg.norm, spec, sizeof spec);
        snprintf(buf, n, "caduceus-ps d%d L%d N%d, %zu params, norm %s", m->c.cfg.d_model, m->c.cfg.n_layer, m->c.cfg.d_state,
                 m->params->total, spec);
    } else {
        derf_norm_format(&m->h.cfg.norm, spec, sizeof spec);
        snprintf(buf, n, "hyena d%d L%d O%d, %zu params, norm %s", m->h.cfg.d_model, m->h.cfg.n_layer, m->h.cfg.filter_order,
                 m->params->total, spec);
    }
}

/* ------------------------------------------------------------------------------- pretraining */

/* windows of W = T+1 bases: a fixed grid (non-overlapping, segment by segment) of one split */
typedef struct { uint64_t *pos; size_t n; } grid;

static grid make_grid(const derf_dna_corpus *c, int split, int W, int limit) {
    grid g = {0};
    size_t n = 0;
    for (size_t s = 0; s < c->nseg; s++)
        if (c->seg[s].split == split) n += c->seg[s].length / (size_t)W;
    uint64_t *all = malloc((n ? n : 1) * sizeof *all);
    size_t k = 0;
    for (size_t s = 0; s < c->nseg; s++)
        if (c->seg[s].split == split)
            for (size_t a = 0; a + (size_t)W <= c->seg[s].length; a += (size_t)W) all[k++] = c->seg[s].offset + a;
    if (limit > 0 && (size_t)limit < n) { /* evenly spaced subset */
        g.pos = malloc((size_t)limit * sizeof *g.pos);
        for (int i = 0; i < limit; i++) g.pos[i] = all[(size_t)i * n / (size_t)limit];
        g.n = (size_t)limit;
        free(all);
    } else {
        g.pos = all;
        g.n = n;
    }
    return g;
}

/* a window of T+1 bases as a training example: next-token (inputs [0,T), targets [1,T]) for HyenaDNA, masked LM
 * over [0,T) for Caduceus (masks from r) */
static void make_example(const dmodel *m, const uint8_t *src, int T, float mlm_prob, derf_rng *r, int32_t *tok, int32_t *tgt) {
    if (m->arch) {
        for (int t = 0; t < T; t++) tok[t] = src[t];
        derf_mlm_mask(tok, tgt, T, mlm_prob, r);
    } else {
        for (int t = 0; t < T; t++) { tok[t] = src[t]; tgt[t] = src[t + 1]; }
    }
}

/* mean loss over a fixed grid of windows; MLM masks come from a fixed seed, so every evaluation (and every norm)
 * sees the same masks */
static float eval_grid(dmodel *m, const derf_dna_corpus *c, const grid *g, int T, float mlm_prob, int32_t *tok, int32_t *tgt) {
    const int B = m->max_B;
    derf_rng r;
    derf_rng_seed(&r, 0x5EED, 7);
    double tot = 0;
    for (size_t w0 = 0; w0 < g->n; w0 += (size_t)B) {
        int b = g->n - w0 < (size_t)B ? (int)(g->n - w0) : B;
        for (int i = 0; i < b; i++) make_example(m, c->tok + g->pos[w0 + (size_t)i], T, mlm_prob, &r, tok + (size_t)i * T, tgt + (size_t)i * T);
        tot += (double)dm_forward(m, tok, tgt, b, T) * b;
    }
    return g->n ? (float)(tot / (double)g->n) : NAN;
}

/* the out-of-distribution corpus: o->ood_corpus, or (NULL) umaydis.dnac beside the corpus when it exists; "" or "none":
 * none (NULL) */
static const char *ood_path(const derf_dna_train_opts *o, char *buf, size_t n) {
    if (o->ood_corpus) return *o->ood_corpus && strcmp(o->ood_corpus, "none") ? o->ood_corpus : NULL;
    const char *sl = strrchr(o->corpus, '/');
    snprintf(buf, n, "%.*sumaydis.dnac", sl ? (int)(sl - o->corpus + 1) : 0, o->corpus);
    return access(buf, F_OK) ? NULL : buf;
}

/* This process's share [lo, hi) of the b examples in tok/tgt (targets per example: tpe; targets < 0 are ignored):
 * forward, and backward weighted so that the gradients averaged over the processes are those of the mean over every
 * counted target of the whole batch (shares may count different numbers of targets: masked LM, a last partial
 * batch). Returns that global mean loss. */
static float share_step(dmodel *m, const int32_t *tok, const int32_t *tgt, int b, int T, int tpe, float scale) {
    int lo, hi;
    derf_dist_range(b, &lo, &hi);
    double n = 0, sum[2];
    for (size_t i = (size_t)lo * tpe; i < (size_t)hi * tpe; i++) n += tgt[i] >= 0;
    float l = n > 0 ? dm_forward(m, tok + (size_t)lo * T, tgt + (size_t)lo * tpe, hi - lo, T) : 0.f;
    sum[0] = (double)l * n;
    sum[1] = n;
    derf_dist_sum_doubles(sum, 2);
    const float loss = sum[1] > 0 ? (float)(sum[0] / sum[1]) : NAN;
    if (n > 0 && !derf_loss_diverged(loss)) dm_backward(m, (float)(scale * n * derf_dist_size() / sum[1]));
    return loss;
}

/* the task for derf_fit: pretraining (next-token or masked LM) on random windows of the training segments */
typedef struct {
    dmodel m;
    const derf_dna_train_opts *o;
    derf_dna_train_result *res;
    derf_dna_corpus c, oc;
    const char *ood;
    size_t *seg, nseg;
    uint64_t *cum;
    grid gv, gt, go;
    int32_t *tok, *tgt;
    uint8_t *win;
    int quiet;
    char desc[300];
} pre_task;

static float pre_micro(derf_task *t, int step, derf_rng *rng, float scale, double *units) {
    pre_task *P = t->ctx;
    const derf_dna_train_opts *o = P->o;
    const int B = o->batch, T = o->seq, W = T + 1;
    const derf_dna_corpus *c = &P->c;
    for (int b = 0; b < B; b++) {
        uint64_t r = (((uint64_t)derf_rng_u32(rng) << 32) | derf_rng_u32(rng)) % P->cum[P->nseg];
        size_t lo = 0, hi = P->nseg;
        while (hi - lo > 1) { size_t mid = (lo + hi) / 2; if (P->cum[mid] <= r) lo = mid; else hi = mid; }
        memcpy(P->win, c->tok + c->seg[P->seg[lo]].offset + (r - P->cum[lo]), (size_t)W);
        if (o->rc_aug && (derf_rng_u32(rng) & 1)) derf_dna_revcomp(P->win, P->win, (size_t)W);
        make_example(&P->m, P->win, T, o->mlm_prob, rng, P->tok + (size_t)b * T, P->tgt + (size_t)b * T);
    }
    *units = (double)B * T;
    return share_step(&P->m, P->tok, P->tgt, B, T, T, scale);
}

/* periodic: the validation loss; final: validation, evaluation-mode training and out-of-distribution losses */
static double pre_eval(derf_task *t, int step, int final, derf_lf *f, int *nf) {
    pre_task *P = t->ctx;
    const derf_dna_train_opts *o = P->o;
    derf_dna_train_result *res = P->res;
    float vl = eval_grid(&P->m, &P->c, &P->gv, o->seq, o->mlm_prob, P->tok, P->tgt);
    if (!final) {
        if (!P->quiet) fprintf(stderr, "[derf] step %d: val loss %.4f nats/base (%.4f bits)\n", step, (double)vl, vl / M_LN2);
        f[0] = DERF_LF_N("val_loss", vl);
        *nf = 1;
        return vl;
    }
    res->val_loss = vl;
    if (derf_loss_diverged(vl)) return vl;
    res->train_loss_eval = eval_grid(&P->m, &P->c, &P->gt, o->seq, o->mlm_prob, P->tok, P->tgt);
    if (P->ood) res->ood_loss = eval_grid(&P->m, &P->oc, &P->go, o->seq, o->mlm_prob, P->tok, P->tgt);
    derf_lf g[] = {DERF_LF_N("val_loss", vl), DERF_LF_N("val_bits", vl / M_LN2), DERF_LF_N("train_loss_eval", res->train_loss_eval),
                   DERF_LF_N("ood_loss", res->ood_loss)};
    memcpy(f, g, sizeof g);
    *nf = 4;
    return vl;
}

static int dna_meta(derf_task *t, char keys[][32], char vals[][128], int max) { return dm_meta(t->ctx, keys, vals, max); }
static int pre_start_fields(derf_task *t, derf_lf *f, int max) {
    pre_task *P = t->ctx;
    f[0] = DERF_LF_S("model", P->desc);
    f[1] = DERF_LF_I("tokens_per_step", P->o->batch * P->o->seq);
    return 2;
}

/* the corpora, the sampling table (cumulative count of window starts over training segments long enough), the
 * evaluation grids, the model */
static int pre_setup(pre_task *P, const derf_dna_train_opts *o, char *oodbuf, size_t n, char *err, size_t errlen) {
    const int B = o->batch, T = o->seq, W = T + 1;
    P->ood = ood_path(o, oodbuf, n);
    if (derf_dna_corpus_read(o->corpus, &P->c, err, errlen) || (P->ood && derf_dna_corpus_read(P->ood, &P->oc, err, errlen)))
        return -1;
    const derf_dna_corpus *c = &P->c;
    P->seg = malloc((c->nseg + 1) * sizeof *P->seg);
    P->cum = malloc((c->nseg + 1) * sizeof *P->cum);
    P->tok = malloc(sizeof(int32_t) * (size_t)B * T);
    P->tgt = malloc(sizeof(int32_t) * (size_t)B * T);
    P->win = malloc((size_t)W);
    if (!P->seg || !P->cum || !P->tok || !P->tgt || !P->win) { derf_io_errf(err, errlen, "out of memory"); return -1; }
    P->cum[0] = 0;
    for (size_t s = 0; s < c->nseg; s++)
        if (c->seg[s].split == DERF_DNA_TRAIN && c->seg[s].length >= (uint32_t)W) {
            P->seg[P->nseg] = s;
            P->cum[P->nseg + 1] = P->cum[P->nseg] + (c->seg[s].length - (uint32_t)W + 1);
            P->nseg++;
        }
    P->gv = make_grid(c, DERF_DNA_VAL, W, o->eval_windows);
    P->gt = make_grid(c, DERF_DNA_TRAIN, W, o->eval_windows);
    P->go = make_grid(&P->oc, DERF_DNA_TEST, W, o->eval_windows);
    if (!P->nseg || !P->gv.n) {
        derf_io_errf(err, errlen, "%s: no training segment of %d bases or no validation window (is it a split corpus from "
                     "'derf data dna'? try a shorter --seq)", o->corpus, W);
        return -1;
    }
    if (P->ood && !P->go.n) {
        derf_io_errf(err, errlen, "%s: no test-split window of %d bases (out-of-distribution corpus)", P->ood, W);
        return -1;
    }
    if (dm_build(&P->m, o, 0, B, T, err, errlen)) return -1;
    dm_describe(&P->m, P->desc, sizeof P->desc);
    return 0;
}

/* what both DNA trainers hand derf_fit */
static void dna_fit_opts(derf_fit_opts *fo, const derf_dna_train_opts *o, int steps) {
    derf_fit_opts_default(fo);
    fo->steps = steps;
    fo->sched = (derf_sched){DERF_SCHED_COSINE, o->lr, o->min_lr, (int)(o->warmup_frac * steps), steps};
    fo->adamw = (derf_adamw_cfg){o->lr, o->beta1, o->beta2, 1e-8f, o->weight_decay};
    fo->clip = o->clip;
    DERF_FIT_RUN_OPTS(*fo, o);
    fo->hint = "lower --lr";
}

static void copy_result(derf_dna_train_result *res, const derf_fit_result *fr) {
    res->steps = fr->steps;
    res->final_loss = fr->final_loss;
    res->tokens_per_s = fr->units_per_s;
    res->seconds = fr->seconds;
    res->diverged = fr->diverged;
    snprintf(res->diverged_msg, sizeof res->diverged_msg, "%s", fr->diverged_msg);
}

int derf_dna_pretrain(const derf_dna_train_opts *o, derf_dna_train_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->val_loss = res->train_loss_eval = res->ood_loss = -1.f;
    res->val_acc = res->test_acc = -1.f;
    if (o->batch < 1 || o->seq < 2 || o->steps < 1) { derf_io_errf(err, errlen, "--batch, --steps must be >= 1 and --seq >= 2"); return -1; }
    pre_task P = {.o = o, .res = res, .quiet = o->quiet};
    derf_task t = {.ctx = &P, .params = NULL, .format = "derf-dna-1", .unit = "tok", .rate_key = "tokens_per_s",
                   .eval_type = "val", .micro = pre_micro, .meta = dna_meta, .eval = pre_eval,
                   .start_fields = pre_start_fields};
    char oodbuf[1200];
    int rc = -1;
    if (pre_setup(&P, o, oodbuf, sizeof oodbuf, err, errlen)) goto done;
    t.params = P.m.params;
    res->params = (long long)P.m.params->total;
    derf_fit_opts fo;
    dna_fit_opts(&fo, o, o->steps);
    fo.eval_every = o->eval_every;
    fo.stream = 0xD7A;
    if (!o->quiet)
        fprintf(stderr, "[derf] %s | %s: %s, %llu train window starts, %zu val windows | %d x %d tokens/step, %d steps, "
                        "rc_aug %d%s\n", P.desc, o->corpus, P.m.arch ? "masked LM" : "next-token",
                (unsigned long long)P.cum[P.nseg], P.gv.n, o->batch, o->seq, o->steps, o->rc_aug, o->resume ? " (resumed)" : "");
    derf_fit_result fr;
    rc = derf_fit(&t, &fo, &fr, err, errlen);
    copy_result(res, &fr);
    if (!rc && !res->diverged && !o->quiet) {
        fprintf(stderr, "[derf] done: val loss %.4f nats/base (%.4f bits), eval-mode train loss %.4f, %.0f tok/s, %.0f s\n",
                (double)res->val_loss, res->val_loss / M_LN2, (double)res->train_loss_eval, res->tokens_per_s, res->seconds);
        if (P.ood)
            fprintf(stderr, "[derf] out-of-distribution loss on %s: %.4f nats/base (%.4f bits)\n", P.ood, (double)res->ood_loss,
                    res->ood_loss / M_LN2);
    }
done:
    dm_free(&P.m);
    derf_dna_corpus_free(&P.c);
    derf_dna_corpus_free(&P.oc);
    free(P.seg); free(P.cum); free(P.gv.pos); free(P.gt.pos); free(P.go.pos); free(P.tok); free(P.tgt); free(P.win);
    return rc;
}

/* ------------------------------------------------------------------------------- fine-tuning */

/* accuracy (and mean loss) of the classifier on the sequences idx[0..n) */
static float eval_cls(dmodel *m, const derf_dna_task *t, const int *idx, int n, int32_t *tok, int32_t *lab, float *loss) {
    const int B = m->max_B, L = t->len, K = t->nclass;
    int right = 0;
    double ls = 0;
    for (int i0 = 0; i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        for (int i = 0; i < b; i++) {
            const uint8_t *src = t->tok + (size_t)idx[i0 + i] * L;
            for (int q = 0; q < L; q++) tok[(size_t)i * L + q] = src[q];
            lab[i] = t->label[idx[i0 + i]];
        }
        ls += (double)dm_forward(m, tok, lab, b, L) * b;
        const float *lg = dm_logits(m);
        for (int i = 0; i < b; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (lg[(size_t)i * K + k] > lg[(size_t)i * K + best]) best = k;
            right += best == lab[i];
        }
    }
    if (loss) *loss = n ? (float)(ls / n) : NAN;
    return n ? (float)right / (float)n : NAN;
}

/* copies every backbone tensor (all but head.*) of a pretraining checkpoint into m */
static int load_backbone(dmodel *m, const char *init, char *err, size_t errlen) {
    char path[1200];
    struct stat st;
    if (!stat(init, &st) && S_ISDIR(st.st_mode)) snprintf(path, sizeof path, "%s/model.safetensors", init);
    else snprintf(path, sizeof path, "%s", init);
    derf_safetensors f;
    if (derf_safetensors_read(&f, path, (size_t)1 << 32, err, errlen)) return -1;
    int rc = 0;
    for (int i = 0; i < m->params->n && !rc; i++) {
        const derf_tensor *d = &m->params->t[i];
        if (!strncmp(d->name, "head.", 5)) continue;
        const derf_st_tensor *t = derf_safetensors_find(&f, d->name);
        if (!t || t->numel != d->numel) {
            derf_io_errf(err, errlen, "%s: tensor '%s' %s (a pretraining checkpoint of the same model, size and --norm?)", path, d->name,
                         t ? "has another shape" : "is missing");
            rc = -1;
        } else if (derf_ckpt_check_values(d->name, t->data, t->numel, 0, path, err, errlen)) {
            rc = -1;
        } else {
            memcpy(m->params->params + d->offset, t->data, d->numel * sizeof(float));
        }
    }
    derf_safetensors_free(&f);
    return rc;
}

/* the sequences of one split; with limit > 0 at most limit of them, evenly spaced over the split (tasks are
 * stored class by class, so the first N would not be a fair sample) */
static int *split_index(const derf_dna_task *t, int split, int limit, int *n) {
    int *v = malloc(sizeof(int) * (size_t)(t->n ? t->n : 1)), k = 0;
    for (int i = 0; i < t->n; i++)
        if (t->split[i] == split) v[k++] = i;
    if (limit > 0 && limit < k) {
        for (int i = 0; i < limit; i++) v[i] = v[(size_t)i * (size_t)k / (size_t)limit];
        k = limit;
    }
    *n = k;
    return v;
}

/* the task for derf_fit: epochs over the training split in a seeded random order; after each epoch val and test
 * accuracy; the reported test accuracy is the one at the best validation accuracy */
typedef struct {
    dmodel m;
    const derf_dna_train_opts *o;
    derf_dna_train_result *res;
    derf_dna_task d;
    int *itr, *iva, *ite, ntr, nva, nte, spe, quiet;
    int32_t *tok, *lab;
    uint8_t *win;
    float best_val;
    char desc[300];
} ft_task;

static float ft_micro(derf_task *t, int step, derf_rng *rng, float scale, double *units) {
    ft_task *F = t->ctx;
    const int B = F->o->batch, L = F->d.len, s = step % F->spe;
    if (s == 0) /* a new epoch: a new order */
        for (int i = F->ntr; i > 1; i--) {
            int j = (int)derf_rng_below(rng, (uint32_t)i), x = F->itr[i - 1];
            F->itr[i - 1] = F->itr[j];
            F->itr[j] = x;
        }
    int b = F->ntr - s * B < B ? F->ntr - s * B : B;
    for (int i = 0; i < b; i++) {
        int id = F->itr[s * B + i];
        memcpy(F->win, F->d.tok + (size_t)id * L, (size_t)L);
        if (F->o->rc_aug && (derf_rng_u32(rng) & 1)) derf_dna_revcomp(F->win, F->win, (size_t)L);
        for (int q = 0; q < L; q++) F->tok[(size_t)i * L + q] = F->win[q];
        F->lab[i] = F->d.label[id];
    }
    *units = (double)b * L;
    return share_step(&F->m, F->tok, F->lab, b, L, 1, scale);
}

static double ft_eval(derf_task *t, int step, int final, derf_lf *f, int *nf) {
    ft_task *F = t->ctx;
    derf_dna_train_result *res = F->res;
    if (final) {
        int ne = F->ntr < 2000 ? F->ntr : 2000;
        eval_cls(&F->m, &F->d, F->itr, ne, F->tok, F->lab, &res->train_loss_eval);
        derf_lf g[] = {DERF_LF_N("val_acc", res->val_acc), DERF_LF_N("test_acc", res->test_acc), DERF_LF_I("best_epoch", res->best_epoch),
                       DERF_LF_N("train_loss_eval", res->train_loss_eval)};
        memcpy(f, g, sizeof g);
        *nf = 4;
        return res->train_loss_eval;
    }
    const int ep = (step + F->spe - 1) / F->spe;
    float vl, va = eval_cls(&F->m, &F->d, F->iva, F->nva, F->tok, F->lab, &vl);
    float ta = eval_cls(&F->m, &F->d, F->ite, F->nte, F->tok, F->lab, NULL);
    if (!F->quiet) fprintf(stderr, "[derf] epoch %d: val acc %.2f%% (loss %.4f), test acc %.2f%%\n", ep, 100 * va, (double)vl, 100 * ta);
    if (va > F->best_val) { F->best_val = va; res->val_acc = va; res->test_acc = ta; res->best_epoch = ep; }
    derf_lf g[] = {DERF_LF_I("epoch", ep), DERF_LF_N("val_acc", va), DERF_LF_N("val_loss", vl), DERF_LF_N("test_acc", ta)};
    memcpy(f, g, sizeof g);
    *nf = 4;
    return vl;
}

static int ft_start_fields(derf_task *t, derf_lf *f, int max) {
    ft_task *F = t->ctx;
    f[0] = DERF_LF_S("task", F->d.name);
    f[1] = DERF_LF_S("model", F->desc);
    f[2] = DERF_LF_S("init", F->o->init ? "pretrained" : "random");
    return 3;
}

static int ft_setup(ft_task *F, const derf_dna_train_opts *o, char *err, size_t errlen) {
    if (derf_dna_task_read(o->task, &F->d, err, errlen)) return -1;
    F->itr = split_index(&F->d, DERF_DNA_TRAIN, o->train_limit, &F->ntr);
    F->iva = split_index(&F->d, DERF_DNA_VAL, o->eval_limit, &F->nva);
    F->ite = split_index(&F->d, DERF_DNA_TEST, o->eval_limit, &F->nte);
    const int B = o->batch, L = F->d.len;
    F->tok = malloc(sizeof(int32_t) * (size_t)B * L);
    F->lab = malloc(sizeof(int32_t) * (size_t)B);
    F->win = malloc((size_t)L);
    if (!F->tok || !F->lab || !F->win) { derf_io_errf(err, errlen, "out of memory"); return -1; }
    if (!F->ntr || !F->nva || !F->nte) {
        derf_io_errf(err, errlen, "%s: a split is empty (train %d, val %d, test %d)", o->task, F->ntr, F->nva, F->nte);
        return -1;
    }
    if (dm_build(&F->m, o, F->d.nclass, B, L, err, errlen) || (o->init && load_backbone(&F->m, o->init, err, errlen))) return -1;
    F->spe = (F->ntr + B - 1) / B;
    F->best_val = -1;
    dm_describe(&F->m, F->desc, sizeof F->desc);
    return 0;
}

int derf_dna_finetune(const derf_dna_train_opts *o, derf_dna_train_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->val_loss = res->train_loss_eval = res->ood_loss = -1.f;
    res->val_acc = res->test_acc = -1.f;
    if (o->batch < 1 || o->epochs < 1) { derf_io_errf(err, errlen, "--batch and --epochs must be >= 1"); return -1; }
    if (o->resume || o->max_steps) { derf_io_errf(err, errlen, "--resume and --max-steps are for pretraining runs (not --task)"); return -1; }
    ft_task F = {.o = o, .res = res, .quiet = o->quiet};
    derf_task t = {.ctx = &F, .format = "derf-dna-1", .unit = "tok", .rate_key = "tokens_per_s", .eval_type = "epoch",
                   .micro = ft_micro, .meta = dna_meta, .eval = ft_eval, .start_fields = ft_start_fields};
    int rc = -1;
    if (ft_setup(&F, o, err, errlen)) goto done;
    t.params = F.m.params;
    res->params = (long long)F.m.params->total;
    derf_fit_opts fo;
    dna_fit_opts(&fo, o, F.spe * o->epochs);
    fo.eval_every = F.spe;
    fo.eval_at_end = 1;
    fo.stream = 0xF17E;
    if (!o->quiet)
        fprintf(stderr, "[derf] fine-tune %s (%d classes, %d bp; train %d / val %d / test %d) from %s | %s | %d epochs x %d steps, "
                        "batch %d\n", F.d.name, F.d.nclass, F.d.len, F.ntr, F.nva, F.nte, o->init ? o->init : "random init", F.desc,
                o->epochs, F.spe, o->batch);
    derf_fit_result fr;
    rc = derf_fit(&t, &fo, &fr, err, errlen);
    copy_result(res, &fr);
    if (!rc && !res->diverged && !o->quiet)
        fprintf(stderr, "[derf] done: test acc %.2f%% at the best val epoch %d (val %.2f%%); eval-mode train loss %.4f; %.0f s\n",
                100 * res->test_acc, res->best_epoch, 100 * res->val_acc, (double)res->train_loss_eval, res->seconds);
done:
    dm_free(&F.m);
    derf_dna_task_free(&F.d);
    free(F.itr); free(F.iva); free(F.ite); free(F.tok); free(F.lab); free(F.win);
    return rc;
}

/* ------------------------------------------------------------------------------- k-mer baseline */

/* frequencies of the k-mers of one sequence (k-mers with N skipped) into f[4^k] */
static void kmer_freq(const uint8_t *s, int L, int k, float *f) {
    const size_t F = (size_t)1 << (2 * k);
    memset(f, 0, F * sizeof *f);
    int n = 0;
    for (int i = 0; i + k <= L; i++) {
        size_t code = 0;
        int ok = 1;
        for (int j = 0; j < k && ok; j++) {
            int b = s[i + j] - DERF_DNA_A;
            if (b < 0 || b > 3) ok = 0;
            code = code << 2 | (size_t)b;
        }
        if (ok) { f[code] += 1; n++; }
    }
    if (n) for (size_t i = 0; i < F; i++) f[i] /= (float)n;
}

static float lr_accuracy(const float *X, const derf_dna_task *t, const int *idx, int n, const float *W, const float *b, int F,
                         float *logit) {
    int right = 0;
    for (int i = 0; i < n; i++) {
        derf_linear_forward(logit, X + (size_t)idx[i] * F, W, b, 1, F, t->nclass);
        int best = 0;
        for (int k = 1; k < t->nclass; k++) if (logit[k] > logit[best]) best = k;
        right += best == t->label[idx[i]];
    }
    return n ? (float)right / (float)n : NAN;
}

int derf_dna_kmer_baseline(const char *task, int k, int epochs, uint64_t seed, float *val_acc, float *test_acc, char *err,
                           size_t errlen) {
    if (k < 1 || k > 8 || epochs < 1) { derf_io_errf(err, errlen, "k-mer baseline: k must be 1..8 and epochs >= 1"); return -1; }
    derf_dna_task t;
    if (derf_dna_task_read(task, &t, err, errlen)) return -1;
    const int F = 1 << (2 * k), K = t.nclass, B = 64;
    if (k > t.len || (uint64_t)t.n * (uint64_t)F > ((uint64_t)1 << 30)) { /* 4 GiB of features at most */
        derf_io_errf(err, errlen, "%s: k-mer baseline with k = %d: %s", task, k,
                     k > t.len ? "longer than the task's sequences (use a smaller k)" : "the feature table would exceed 4 GiB (use a smaller k)");
        derf_dna_task_free(&t);
        return -1;
    }
    int ntr, nva, nte;
    int *itr = split_index(&t, DERF_DNA_TRAIN, 0, &ntr), *iva = split_index(&t, DERF_DNA_VAL, 0, &nva), *ite = split_index(&t, DERF_DNA_TEST, 0, &nte);
    float *X = malloc(sizeof(float) * (size_t)t.n * F), *mu = calloc((size_t)F, sizeof(float)), *sd = calloc((size_t)F, sizeof(float));
    float *xb = malloc(sizeof(float) * (size_t)B * F), *logit = malloc(sizeof(float) * (size_t)B * K), *dl = malloc(sizeof(float) * (size_t)B * K);
    int32_t *yb = malloc(sizeof(int32_t) * B);
    for (int i = 0; i < t.n; i++) kmer_freq(t.tok + (size_t)i * t.len, t.len, k, X + (size_t)i * F);
    for (int i = 0; i < ntr; i++) for (int f = 0; f < F; f++) mu[f] += X[(size_t)itr[i] * F + f] / (float)ntr;
    for (int i = 0; i < ntr; i++) for (int f = 0; f < F; f++) { float d = X[(size_t)itr[i] * F + f] - mu[f]; sd[f] += d * d / (float)ntr; }
    for (int f = 0; f < F; f++) sd[f] = sqrtf(sd[f]) + 1e-6f;
    for (size_t i = 0; i < (size_t)t.n; i++) for (int f = 0; f < F; f++) X[i * F + f] = (X[i * F + f] - mu[f]) / sd[f];
    derf_params p;
    derf_params_init(&p);
    int sw[2] = {K, F}, sb[1] = {K};
    size_t ow = derf_params_add(&p, "weight", 2, sw, 1), ob = derf_params_add(&p, "bias", 1, sb, 0);
    derf_params_alloc(&p);
    derf_rng rng;
    derf_rng_seed(&rng, seed, 0x6B3E);
    derf_adamw_cfg ac = {1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f};
    float best = -1;
    int step = 0;
    for (int ep = 0; ep < epochs; ep++) {
        for (int i = ntr; i > 1; i--) { int j = (int)derf_rng_below(&rng, (uint32_t)i), x = itr[i - 1]; itr[i - 1] = itr[j]; itr[j] = x; }
        for (int s = 0; s < ntr; s += B) {
            int b = ntr - s < B ? ntr - s : B;
            for (int i = 0; i < b; i++) { memcpy(xb + (size_t)i * F, X + (size_t)itr[s + i] * F, sizeof(float) * F); yb[i] = t.label[itr[s + i]]; }
            derf_params_zero_grad(&p);
            derf_linear_forward(logit, xb, p.params + ow, p.params + ob, b, F, K);
            memset(dl, 0, sizeof(float) * (size_t)b * K);
            derf_xent_forward_backward(dl, logit, yb, 0, 1, b, K);
            derf_linear_backward(NULL, p.grads + ow, p.grads + ob, dl, xb, p.params + ow, b, F, K);
            derf_adamw_step(&p, &ac, ++step);
        }
        float va = lr_accuracy(X, &t, iva, nva, p.params + ow, p.params + ob, F, logit);
        if (va > best) { best = va; *val_acc = va; *test_acc = lr_accuracy(X, &t, ite, nte, p.params + ow, p.params + ob, F, logit); }
    }
    derf_params_free(&p);
    derf_dna_task_free(&t);
    free(itr); free(iva); free(ite); free(X); free(mu); free(sd); free(xb); free(logit); free(dl); free(yb);
    return 0;
}
