/* speech_train.c: wav2vec 2.0 pre-training on the speech corpus (see derf/speech_train.h): batches of
 * randomly cropped utterances, the mask/negative/Gumbel draws, Adam with decoupled weight decay, linear
 * warmup + linear decay rescaled to the run, clipping, the Gumbel temperature schedule, fixed-draw
 * validation in bits per masked frame, the evaluation-mode training loss, a character-ID probe on the
 * frozen encoder (against a random network), checkpoints with exact resume, JSONL log, progress lines. */
#include "derf/diag.h"
#include "derf/speech_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "derf/dist.h"
#include "derf/fit.h"
#include "derf/io.h"
#include "derf/speech.h"
#include "derf/train.h"

#define VAL_SEED 0x5eed5eedULL /* the fixed masks/negatives of every evaluation */
#define FORMAT "derf-w2v-1"

void derf_speech_train_opts_default(derf_speech_train_opts *o) {
    memset(o, 0, sizeof *o);
    derf_w2v_preset(&o->model, "s", NULL, 0);
    o->data = "runs/data/speech";
    o->steps = 1000;
    o->batch = 8;
    o->crop = 64000;       /* 4 s (199 frames) */
    o->min_samples = 16000;
    o->lr = 1e-3f;
    o->warmup_frac = 0.08f;
    o->weight_decay = 0.01f;
    o->beta1 = 0.9f;
    o->beta2 = 0.98f;
    o->eps = 1e-6f;
    o->clip = 10.0f;
    o->eval_every = 200;
    o->val_utts = 0;
    o->train_eval_utts = 128;
    o->probe = 1;
    o->log_every = 10;
    o->ckpt_secs = -1;
}

static void to_float(float *dst, const int16_t *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = src[i] / 32768.0f;
}

typedef struct {
    int *idx, n;
} utt_list;

/* utterances of a split with at least min samples (the first limit of them spread evenly; 0: all) */
static utt_list pick(const derf_speech_corpus *c, int split, int min, int limit) {
    utt_list l = {malloc((c->n + 1) * sizeof(int)), 0};
    for (size_t i = 0; i < c->n; i++)
        if (c->u[i].split == split && (int)c->u[i].n >= min) l.idx[l.n++] = (int)i;
    if (limit > 0 && l.n > limit) {
        for (int k = 0; k < limit; k++) l.idx[k] = l.idx[(long)k * l.n / limit];
        l.n = limit;
    }
    return l;
}

typedef struct {
    derf_w2v_draws d;
    float *wav;
} w2v_bufs;

static void bufs_alloc(w2v_bufs *b, const derf_w2v *m) {
    const derf_w2v_config *c = &m->cfg;
    size_t BT = (size_t)m->max_batch * m->max_T;
    b->d.mask = malloc(BT);
    b->d.neg = malloc(BT * c->n_neg * sizeof(int32_t));
    b->d.gumbel_u = malloc(BT * c->groups * c->vars * sizeof(float));
    b->wav = malloc((size_t)m->max_batch * m->max_samples * sizeof(float));
}

static void bufs_free(w2v_bufs *b) {
    free(b->d.mask);
    free(b->d.neg);
    free(b->d.gumbel_u);
    free(b->wav);
}

/* Evaluation-mode measure over utterances (each centre-cropped to crop samples, alone in its batch), masks
 * and negatives from the fixed VAL_SEED stream. */
static derf_w2v_eval evaluate(derf_w2v *m, const derf_speech_corpus *c, const utt_list *l, int crop, w2v_bufs *b) {
    derf_rng r;
    derf_rng_seed(&r, VAL_SEED, 11);
    double loss = 0, con = 0, cp = 0;
    long frames = 0, correct = 0;
    float *u = b->d.gumbel_u;
    b->d.gumbel_u = NULL;
    for (int k = 0; k < l->n; k++) {
        const derf_utt *ut = &c->u[l->idx[k]];
        int n = (int)ut->n < crop ? (int)ut->n : crop;
        to_float(b->wav, c->audio + ut->offset + (ut->n - (uint32_t)n) / 2, n);
        int T = derf_w2v_frames(&m->cfg, n);
        derf_w2v_sample(&m->cfg, &b->d, 1, T, 0, &r);
        derf_w2v_out o = derf_w2v_forward(m, b->wav, 1, n, &b->d, 1.0f);
        loss += o.loss;
        con += o.contrastive;
        frames += o.M;
        correct += o.correct;
        cp += o.code_ppl;
    }
    b->d.gumbel_u = u;
    derf_w2v_eval e = {0};
    e.frames = frames;
    if (frames) {
        e.bits = loss / frames / log(2.0);
        e.contrastive_bits = con / frames / log(2.0);
        e.acc = (double)correct / frames;
        e.code_ppl = cp / l->n;
    }
    return e;
}

/* ---- the character-ID probe: mean-pooled encoder output -> softmax regression ---------------------- */

static int char_class(const char *font) { /* small fish, big fish, everyone else */
    return !strcmp(font, "font_small") ? 0 : !strcmp(font, "font_big") ? 1 : 2;
}

static void pooled_features(derf_w2v *m, const derf_speech_corpus *c, const utt_list *l, int crop, float *wav,
                            float *X) {
    const int d = m->cfg.d;
    for (int k = 0; k < l->n; k++) {
        const derf_utt *ut = &c->u[l->idx[k]];
        int n = (int)ut->n < crop ? (int)ut->n : crop, T;
        to_float(wav, c->audio + ut->offset + (ut->n - (uint32_t)n) / 2, n);
        derf_w2v_forward(m, wav, 1, n, NULL, 1.0f);
        const float *E = derf_w2v_encoder_out(m, &T);
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += E[(size_t)t * d + j];
            X[(size_t)k * d + j] = (float)(s / T);
        }
    }
}

/* Multinomial logistic regression (L2 1e-3) on standardised features, 300 full-batch Adam steps; returns
 * test accuracy. */
static float softmax_probe(const float *Xtr, const int *ytr, int ntr, const float *Xte, const int *yte, int nte, int d,
                           int K) {
    double *mu = calloc(d, sizeof *mu), *sd = calloc(d, sizeof *sd);
    for (int i = 0; i < ntr; i++)
        for (int j = 0; j < d; j++) mu[j] += Xtr[(size_t)i * d + j] / ntr;
    for (int i = 0; i < ntr; i++)
        for (int j = 0; j < d; j++) sd[j] += pow(Xtr[(size_t)i * d + j] - mu[j], 2) / ntr;
    for (int j = 0; j < d; j++) sd[j] = sqrt(sd[j]) + 1e-6;
    const int P = (d + 1) * K;
    double *w = calloc(P, sizeof *w), *g = calloc(P, sizeof *g), *m1 = calloc(P, sizeof *m1), *m2 = calloc(P, sizeof *m2);
    double z[16];
    for (int it = 1; it <= 300; it++) {
        memset(g, 0, P * sizeof *g);
        for (int i = 0; i < ntr; i++) {
            double mx = -1e300, s = 0;
            for (int k = 0; k < K; k++) {
                z[k] = w[d * K + k];
                for (int j = 0; j < d; j++) z[k] += w[j * K + k] * (Xtr[(size_t)i * d + j] - mu[j]) / sd[j];
                mx = z[k] > mx ? z[k] : mx;
            }
            for (int k = 0; k < K; k++) s += (z[k] = exp(z[k] - mx));
            for (int k = 0; k < K; k++) {
                double e = (z[k] / s - (k == ytr[i])) / ntr;
                g[d * K + k] += e;
                for (int j = 0; j < d; j++) g[j * K + k] += e * (Xtr[(size_t)i * d + j] - mu[j]) / sd[j];
            }
        }
        for (int p = 0; p < P; p++) {
            g[p] += 1e-3 * w[p];
            m1[p] = 0.9 * m1[p] + 0.1 * g[p];
            m2[p] = 0.999 * m2[p] + 0.001 * g[p] * g[p];
            w[p] -= 0.05 * (m1[p] / (1 - pow(0.9, it))) / (sqrt(m2[p] / (1 - pow(0.999, it))) + 1e-8);
        }
    }
    int ok = 0;
    for (int i = 0; i < nte; i++) {
        int best = 0;
        for (int k = 0; k < K; k++) {
            z[k] = w[d * K + k];
            for (int j = 0; j < d; j++) z[k] += w[j * K + k] * (Xte[(size_t)i * d + j] - mu[j]) / sd[j];
            if (z[k] > z[best]) best = k;
        }
        ok += best == yte[i];
    }
    free(mu); free(sd); free(w); free(g); free(m1); free(m2);
    return nte ? (float)ok / nte : 0;
}

/* probe accuracy of model m: train on (up to 600) train utterances, test on the test split */
static float probe(derf_w2v *m, const derf_speech_corpus *c, int crop, int min, float *wav, float *chance) {
    utt_list tr = pick(c, DERF_SPLIT_TRAIN, min, 600), te = pick(c, DERF_SPLIT_TEST, min, 0);
    const int d = m->cfg.d;
    float *Xtr = malloc(((size_t)tr.n + 1) * d * sizeof(float)), *Xte = malloc(((size_t)te.n + 1) * d * sizeof(float));
    int *ytr = malloc((tr.n + 1) * sizeof(int)), *yte = malloc((te.n + 1) * sizeof(int)), cnt[3] = {0};
    for (int i = 0; i < tr.n; i++) ytr[i] = char_class(c->u[tr.idx[i]].character);
    for (int i = 0; i < te.n; i++) cnt[yte[i] = char_class(c->u[te.idx[i]].character)]++;
    int mx = cnt[0] > cnt[1] ? cnt[0] : cnt[1];
    mx = cnt[2] > mx ? cnt[2] : mx;
    if (chance) *chance = te.n ? (float)mx / te.n : 0;
    pooled_features(m, c, &tr, crop, wav, Xtr);
    pooled_features(m, c, &te, crop, wav, Xte);
    float acc = softmax_probe(Xtr, ytr, tr.n, Xte, yte, te.n, d, 3);
    free(Xtr); free(Xte); free(ytr); free(yte); free(tr.idx); free(te.idx);
    return acc;
}

/* ---- the task for derf_fit ------------------------------------------------------------------------ */

typedef struct {
    derf_w2v m;
    const derf_speech_train_opts *o;
    derf_speech_train_result *res;
    derf_speech_corpus c;
    utt_list tr, va, te;
    w2v_bufs b;
    derf_w2v_out out;          /* of the last micro-batch */
    double tau_decay, t0;
    float tau;
    int quiet;
    char spec[160];
} w2v_task;

/* random utterances cropped at random offsets to the shortest (<= crop), their mask/negative/Gumbel draws */
static float w2v_micro(derf_task *t, int step, derf_rng *rng, float scale, double *units) {
    w2v_task *W = t->ctx;
    const derf_speech_train_opts *o = W->o;
    const derf_speech_corpus *c = &W->c;
    W->tau = (float)fmax(W->m.cfg.tau0 * pow(W->tau_decay, step), W->m.cfg.tau_min);
    int n = o->crop, pick_i[256];
    for (int k = 0; k < o->batch; k++) {
        pick_i[k] = W->tr.idx[derf_rng_below(rng, (uint32_t)W->tr.n)];
        if ((int)c->u[pick_i[k]].n < n) n = (int)c->u[pick_i[k]].n;
    }
    for (int k = 0; k < o->batch; k++) {
        const derf_utt *u = &c->u[pick_i[k]];
        uint32_t off = derf_rng_below(rng, u->n - (uint32_t)n + 1);
        to_float(W->b.wav + (size_t)k * n, c->audio + u->offset + off, n);
    }
    const int T = derf_w2v_frames(&W->m.cfg, n);
    derf_w2v_sample(&W->m.cfg, &W->b.d, o->batch, T, 1, rng);
    W->out = derf_w2v_forward(&W->m, W->b.wav, o->batch, n, &W->b.d, W->tau);
    double bits = W->out.loss / W->out.M / M_LN2;
    if (!derf_loss_diverged(bits)) derf_w2v_backward(&W->m, scale);
    *units = (double)o->batch * T;
    return (float)bits;
}

static void eval_fields(const derf_w2v_eval *e, double elapsed, derf_lf *f, int *nf) {
    derf_lf g[] = {DERF_LF_N("loss_bits", e->bits), DERF_LF_N("contrastive_bits", e->contrastive_bits),
                   DERF_LF_N("acc", e->acc), DERF_LF_N("code_ppl", e->code_ppl), DERF_LF_I("frames", e->frames),
                   DERF_LF_T("elapsed_s", elapsed)};
    memcpy(f, g, sizeof g);
    *nf = 6;
}

/* periodic: the validation measure; final: the evaluation-mode training loss and the probe (against a random
 * network of the same shape; the trained weights are restored after it) */
static double w2v_eval(derf_task *t, int step, int final, derf_lf *f, int *nf) {
    w2v_task *W = t->ctx;
    const derf_speech_train_opts *o = W->o;
    derf_speech_train_result *res = W->res;
    if (!final) {
        res->val = evaluate(&W->m, &W->c, &W->va, o->crop, &W->b);
        if (!W->quiet) fprintf(stderr, "[derf] step %d: val %.4f bits/frame, acc %.3f\n", step, res->val.bits, res->val.acc);
        eval_fields(&res->val, derf_now_s() - W->t0, f, nf);
        return res->val.bits;
    }
    if (W->te.n && o->train_eval_utts > 0) res->train_eval = evaluate(&W->m, &W->c, &W->te, o->crop, &W->b);
    if (o->probe) {
        derf_params *p = &W->m.params;
        float *keep = malloc(p->total * sizeof(float));
        res->probe_acc = probe(&W->m, &W->c, o->crop, o->min_samples, W->b.wav, &res->probe_chance);
        if (keep) {
            memcpy(keep, p->params, p->total * sizeof(float));
            derf_w2v_init(&W->m, o->seed + 1000003); /* the control: a random network of the same shape */
            res->probe_acc_random = probe(&W->m, &W->c, o->crop, o->min_samples, W->b.wav, NULL);
            memcpy(p->params, keep, p->total * sizeof(float));
            free(keep);
        }
    }
    derf_lf g[] = {DERF_LF_N("val_bits", res->val.bits), DERF_LF_N("val_contrastive_bits", res->val.contrastive_bits),
                   DERF_LF_N("val_acc", res->val.acc), DERF_LF_N("val_code_ppl", res->val.code_ppl),
                   DERF_LF_N("train_eval_bits", res->train_eval.frames ? res->train_eval.bits : -1.0),
                   DERF_LF_N("probe_acc", res->probe_acc), DERF_LF_N("probe_acc_random", res->probe_acc_random),
                   DERF_LF_N("probe_chance", res->probe_chance)};
    memcpy(f, g, sizeof g);
    *nf = 8;
    return res->train_eval.frames ? res->train_eval.bits : 0;
}

static int w2v_train_fields(derf_task *t, int step, derf_lf *f, int max) {
    w2v_task *W = t->ctx;
    derf_lf g[] = {DERF_LF_N("loss_bits", t->window_loss), DERF_LF_N("acc", (double)W->out.correct / W->out.M),
                   DERF_LF_N("code_ppl", W->out.code_ppl), DERF_LF_N("prob_ppl", W->out.prob_ppl), DERF_LF_N("tau", W->tau)};
    memcpy(f, g, sizeof g);
    return 5;
}
static int w2v_start_fields(derf_task *t, derf_lf *f, int max) {
    w2v_task *W = t->ctx;
    derf_lf g[] = {DERF_LF_I("params", W->m.params.total), DERF_LF_S("norm", W->spec), DERF_LF_I("batch", W->o->batch),
                   DERF_LF_I("crop", W->o->crop)};
    memcpy(f, g, sizeof g);
    return 4;
}
static int w2v_meta(derf_task *t, char keys[][32], char vals[][128], int max) {
    return derf_w2v_config_to_meta(&((w2v_task *)t->ctx)->m.cfg, keys, vals, max);
}

static int w2v_setup(w2v_task *W, const derf_speech_train_opts *o, char *err, size_t errlen) {
    if (derf_speech_read(o->data, &W->c, err, errlen)) return -1;
    if (W->c.rate != DERF_SPEECH_RATE) {
        derf_io_errf(err, errlen, "%s: the corpus is sampled at %d Hz; wav2vec 2.0 trains on %d Hz audio (rebuild it with "
                     "'derf data speech')", o->data, W->c.rate, DERF_SPEECH_RATE);
        return -1;
    }
    W->tr = pick(&W->c, DERF_SPLIT_TRAIN, o->min_samples, 0);
    W->va = pick(&W->c, DERF_SPLIT_VAL, o->min_samples, o->val_utts);
    W->te = pick(&W->c, DERF_SPLIT_TRAIN, o->min_samples, o->train_eval_utts);
    if (W->tr.n < o->batch || W->va.n < 1) {
        derf_io_errf(err, errlen, "%s: %d training and %d validation utterances of at least %d samples; need %d and 1",
                     o->data, W->tr.n, W->va.n, o->min_samples, o->batch);
        return -1;
    }
    if (derf_w2v_build(&W->m, &o->model, o->batch, o->crop, err, errlen)) return -1;
    derf_w2v_init(&W->m, o->seed);
    bufs_alloc(&W->b, &W->m);
    W->tau_decay = pow(W->m.cfg.tau_min / W->m.cfg.tau0, 1.0 / (0.69 * o->steps));
    derf_norm_format(&W->m.cfg.norm, W->spec, sizeof W->spec);
    return 0;
}

int derf_speech_train(const derf_speech_train_opts *o, derf_speech_train_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->final_loss = NAN;
    res->probe_acc = res->probe_acc_random = res->probe_chance = -1;
    if (o->batch < 1 || o->batch > 256 || o->steps < 1) {
        derf_io_errf(err, errlen, "--batch must be in 1..256 and --steps at least 1");
        return -1;
    }
    if (derf_w2v_frames(&o->model, o->crop) < 2 * o->model.mask_len) {
        int lo = 1, hi = 1 << 24; /* the shortest crop that gives enough frames (frames grow with the crop) */
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (derf_w2v_frames(&o->model, mid) < 2 * o->model.mask_len) lo = mid + 1;
            else hi = mid;
        }
        int need = lo;
        derf_io_errf(err, errlen, "--crop %d gives %d frames after the feature encoder; the masking needs at least %d "
                     "(use --crop %d or more)", o->crop, derf_w2v_frames(&o->model, o->crop),
                     2 * o->model.mask_len, need);
        return -1;
    }
    if (o->min_samples > o->crop || derf_w2v_frames(&o->model, o->min_samples) < 2 * o->model.mask_len) {
        derf_io_errf(err, errlen, "--min-samples %d must be at most --crop %d and give at least %d frames", o->min_samples,
                     o->crop, 2 * o->model.mask_len);
        return -1;
    }
    if (derf_dist_size() > 1) { /* the codebook diversity penalty is a statistic of the whole batch */
        derf_io_errf(err, errlen, "train-speech does not train data-parallel: run it as one process (no mpirun)");
        return -1;
    }
    w2v_task W = {.o = o, .res = res, .quiet = o->quiet, .t0 = derf_now_s()};
    derf_task t = {.ctx = &W, .params = &W.m.params, .format = FORMAT, .unit = "frames", .rate_key = "frames_per_s",
                   .eval_type = "val", .micro = w2v_micro, .meta = w2v_meta, .eval = w2v_eval,
                   .train_fields = w2v_train_fields, .start_fields = w2v_start_fields};
    int rc = -1;
    if (w2v_setup(&W, o, err, errlen)) goto done;
    res->params = (long long)W.m.params.total;
    res->total_steps = o->steps;
    const int warm = (int)ceilf(o->warmup_frac * o->steps) > 0 ? (int)ceilf(o->warmup_frac * o->steps) : 1;
    derf_fit_opts fo;
    derf_fit_opts_default(&fo);
    fo.steps = o->steps;
    fo.sched = (derf_sched){DERF_SCHED_LINEAR, o->lr, 0, warm, o->steps};
    fo.adamw = (derf_adamw_cfg){o->lr, o->beta1, o->beta2, o->eps, o->weight_decay};
    fo.clip = o->clip;
    fo.eval_every = o->eval_every;
    fo.eval_at_end = 1;
    fo.stream = 5;
    fo.hint = "lower --lr";
    DERF_FIT_RUN_OPTS(fo, o);
    if (!o->quiet)
        fprintf(stderr, "[derf] wav2vec C%d d%d L%d, %lld params, norm %s | %d train / %d val utterances | batch %d x <= %d "
                        "samples, %d steps%s\n", W.m.cfg.conv_dim, W.m.cfg.d, W.m.cfg.n_layer, res->params, W.spec, W.tr.n,
                W.va.n, o->batch, o->crop, o->steps, o->resume ? " (resumed)" : "");
    derf_fit_result fr;
    rc = derf_fit(&t, &fo, &fr, err, errlen);
    res->steps = fr.steps;
    res->final_loss = fr.final_loss;
    res->frames_per_s = fr.units_per_s;
    res->seconds = fr.seconds;
    res->diverged = fr.diverged;
    snprintf(res->diverged_msg, sizeof res->diverged_msg, "%s", fr.diverged_msg);
done:
    bufs_free(&W.b);
    derf_w2v_free(&W.m);
    free(W.tr.idx);
    free(W.va.idx);
    free(W.te.idx);
    derf_speech_free(&W.c);
    return rc;
}
