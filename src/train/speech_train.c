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
}

/* linear warmup to lr, then linear decay to 0 at total (fairseq polynomial_decay, power 1) */
static float lr_linear(int step, int warmup, int total, float lr) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    return total > warmup ? lr * (float)(total - step) / (float)(total - warmup) : lr;
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

/* ---- training ------------------------------------------------------------------------------------ */

static int save_run(const derf_speech_train_opts *o, derf_w2v *m, int step, derf_rng rng, char *err, size_t errlen) {
    if (!o->out) return 0;
    char keys[40][32], vals[40][128];
    derf_st_meta meta[80];
    int nk = derf_w2v_config_to_meta(&m->cfg, keys, vals, 40), nm = 0;
    for (int i = 0; i < nk; i++) meta[nm++] = (derf_st_meta){keys[i], vals[i]};
    for (int i = 0; i < o->nmeta && nm < 80; i++) meta[nm++] = o->meta[i];
    derf_run_state s = {&m->params, NULL, step, rng, FORMAT, meta, nm};
    return derf_run_save(o->out, &s, err, errlen);
}

static void log_eval(FILE *log, const char *type, int step, const derf_w2v_eval *e, double elapsed) {
    if (!log) return;
    fprintf(log, "{\"type\":\"%s\",\"step\":%d,\"loss_bits\":%.6g,\"contrastive_bits\":%.6g,\"acc\":%.6g,"
                 "\"code_ppl\":%.6g,\"frames\":%ld,\"elapsed_s\":%.2f}\n",
            type, step, e->bits, e->contrastive_bits, e->acc, e->code_ppl, e->frames, elapsed);
    fflush(log);
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
    derf_speech_corpus c;
    if (derf_speech_read(o->data, &c, err, errlen)) return -1;
    if (c.rate != DERF_SPEECH_RATE) {
        derf_io_errf(err, errlen, "%s: the corpus is sampled at %d Hz; wav2vec 2.0 trains on %d Hz audio (rebuild it with "
                     "'derf data speech')", o->data, c.rate, DERF_SPEECH_RATE);
        derf_speech_free(&c);
        return -1;
    }
    utt_list tr = pick(&c, DERF_SPLIT_TRAIN, o->min_samples, 0), va = pick(&c, DERF_SPLIT_VAL, o->min_samples, o->val_utts);
    utt_list te = pick(&c, DERF_SPLIT_TRAIN, o->min_samples, o->train_eval_utts);
    int rc = -1;
    FILE *log = NULL;
    derf_w2v m;
    static derf_diag dg; /* --diag-every */
    derf_diag_init(&dg, o->diag_every, &m.params);
    w2v_bufs b = {0};
    memset(&m, 0, sizeof m);
    if (tr.n < o->batch || va.n < 1) {
        derf_io_errf(err, errlen, "%s: %d training and %d validation utterances of at least %d samples; need %d and 1",
                     o->data, tr.n, va.n, o->min_samples, o->batch);
        goto done;
    }
    if (derf_w2v_build(&m, &o->model, o->batch, o->crop, err, errlen)) goto done;
    derf_w2v_init(&m, o->seed);
    bufs_alloc(&b, &m);
    derf_rng rng;
    derf_rng_seed(&rng, o->seed, 5);
    int step = 0;
    if (o->resume && derf_run_load(o->resume, FORMAT, &m.params, NULL, &step, &rng, err, errlen)) goto done;
    if (o->out) {
        if (derf_io_mkdirs(o->out, err, errlen)) goto done;
        char path[1200];
        snprintf(path, sizeof path, "%s/log.jsonl", o->out);
        log = fopen(path, o->resume ? "a" : "w");
        if (!log) { derf_io_errf(err, errlen, "cannot write %s", path); goto done; }
    }
    res->params = (long long)m.params.total;
    res->total_steps = o->steps;
    const int stop = o->max_steps > 0 && o->max_steps < o->steps ? o->max_steps : o->steps, start = step;
    const int warm = (int)ceilf(o->warmup_frac * o->steps) > 0 ? (int)ceilf(o->warmup_frac * o->steps) : 1;
    const double tau_decay = pow(m.cfg.tau_min / m.cfg.tau0, 1.0 / (0.69 * o->steps));
    char spec[160];
    derf_norm_format(&m.cfg.norm, spec, sizeof spec);
    if (!o->quiet)
        fprintf(stderr, "[derf] wav2vec C%d d%d L%d, %lld params, norm %s | %d train / %d val utterances | batch %d x <= %d "
                        "samples, %d steps%s\n", m.cfg.conv_dim, m.cfg.d, m.cfg.n_layer, res->params, spec, tr.n, va.n,
                o->batch, o->crop, o->steps, start ? " (resumed)" : "");
    if (log)
        fprintf(log, "{\"type\":\"start\",\"step\":%d,\"params\":%lld,\"norm\":\"%s\",\"steps\":%d,\"batch\":%d,\"crop\":%d,"
                     "\"resumed\":%s}\n", start, res->params, spec, o->steps, o->batch, o->crop, start ? "true" : "false");
    derf_adamw_cfg acfg = {o->lr, o->beta1, o->beta2, o->eps, o->weight_decay};
    double t0 = derf_now_s(), train_time = 0, int_time = 0, lsum = 0;
    long frames = 0, int_frames = 0;
    int ln = 0;
    while (step < stop) {
        double ts = derf_now_s();
        float lr = lr_linear(step, warm, o->steps, o->lr);
        float tau = (float)fmax(m.cfg.tau0 * pow(tau_decay, step), m.cfg.tau_min);
        /* a batch: random utterances, cropped at random offsets to the shortest (<= crop) */
        int n = o->crop, pick_i[256];
        for (int k = 0; k < o->batch; k++) {
            pick_i[k] = tr.idx[derf_rng_below(&rng, (uint32_t)tr.n)];
            if ((int)c.u[pick_i[k]].n < n) n = (int)c.u[pick_i[k]].n;
        }
        for (int k = 0; k < o->batch; k++) {
            const derf_utt *u = &c.u[pick_i[k]];
            uint32_t off = derf_rng_below(&rng, u->n - (uint32_t)n + 1);
            to_float(b.wav + (size_t)k * n, c.audio + u->offset + off, n);
        }
        const int T = derf_w2v_frames(&m.cfg, n);
        derf_w2v_sample(&m.cfg, &b.d, o->batch, T, 1, &rng);
        derf_params_zero_grad(&m.params);
        derf_diag_maybe_begin(&dg, step);
        derf_w2v_out out = derf_w2v_forward(&m, b.wav, o->batch, n, &b.d, tau);
        derf_diag_maybe_end(&dg, step, log, o->quiet ? NULL : stderr);
        double bits = out.loss / out.M / M_LN2;
        if (!isfinite(bits)) {
            res->diverged = 1;
            snprintf(res->diverged_msg, sizeof res->diverged_msg, "training diverged at step %d (loss %g): stopped", step, bits);
            break;
        }
        derf_w2v_backward(&m, 1.0f);
        float gn = derf_clip_grad_norm(&m.params, o->clip);
        if (!isfinite(gn)) {
            res->diverged = 1;
            snprintf(res->diverged_msg, sizeof res->diverged_msg, "training diverged at step %d (gradient norm %g)", step, gn);
            break;
        }
        acfg.lr = lr;
        derf_adamw_step(&m.params, &acfg, step + 1);
        step++;
        double dt = derf_now_s() - ts;
        train_time += dt;
        int_time += dt;
        frames += (long)o->batch * T;
        int_frames += (long)o->batch * T;
        lsum += bits;
        ln++;
        if (o->log_every > 0 && (step % o->log_every == 0 || step == stop)) {
            double fps = int_frames / (int_time + 1e-9);
            char eta[32];
            derf_fmt_eta(eta, sizeof eta, (stop - step) * (int_time / ln));
            res->final_loss = (float)(lsum / ln);
            if (!o->quiet)
                fprintf(stderr, "[derf] step %d/%d loss %.3f bits acc %.2f ppl %.0f tau %.3f lr %.2e gn %.2f | %.0f frames/s | eta %s\n",
                        step, o->steps, res->final_loss, (double)out.correct / out.M, (double)out.code_ppl, (double)tau,
                        (double)lr, (double)gn, fps, eta);
            if (log)
                fprintf(log, "{\"type\":\"train\",\"step\":%d,\"loss_bits\":%.6g,\"acc\":%.6g,\"code_ppl\":%.6g,\"prob_ppl\":%.6g,"
                             "\"tau\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,\"frames_per_s\":%.1f,\"elapsed_s\":%.2f}\n",
                        step, res->final_loss, (double)out.correct / out.M, (double)out.code_ppl, (double)out.prob_ppl,
                        (double)tau, (double)lr, (double)gn, fps, derf_now_s() - t0);
            lsum = 0; ln = 0; int_time = 0; int_frames = 0;
        }
        if (o->eval_every > 0 && step % o->eval_every == 0 && step < stop) {
            res->val = evaluate(&m, &c, &va, o->crop, &b);
            if (!o->quiet) fprintf(stderr, "[derf] step %d: val %.4f bits/frame, acc %.3f\n", step, res->val.bits, res->val.acc);
            log_eval(log, "val", step, &res->val, derf_now_s() - t0);
            if (save_run(o, &m, step, rng, err, errlen)) goto done;
        }
    }
    res->steps = step;
    res->frames_per_s = train_time > 0 ? frames / train_time : 0;
    if (!res->diverged) {
        res->val = evaluate(&m, &c, &va, o->crop, &b);
        log_eval(log, "val", step, &res->val, derf_now_s() - t0);
        if (te.n && o->train_eval_utts > 0) res->train_eval = evaluate(&m, &c, &te, o->crop, &b);
        if (save_run(o, &m, step, rng, err, errlen)) goto done;
        if (o->probe) {
            res->probe_acc = probe(&m, &c, o->crop, o->min_samples, b.wav, &res->probe_chance);
            derf_w2v_init(&m, o->seed + 1000003); /* the control: a random network of the same shape */
            res->probe_acc_random = probe(&m, &c, o->crop, o->min_samples, b.wav, NULL);
        }
        res->seconds = derf_now_s() - t0;
        if (log)
            fprintf(log, "{\"type\":\"final\",\"step\":%d,\"val_bits\":%.6g,\"val_contrastive_bits\":%.6g,\"val_acc\":%.6g,"
                         "\"val_code_ppl\":%.6g,\"train_eval_bits\":%.6g,\"probe_acc\":%.6g,\"probe_acc_random\":%.6g,"
                         "\"probe_chance\":%.6g,\"frames_per_s\":%.1f,\"seconds\":%.1f}\n",
                    step, res->val.bits, res->val.contrastive_bits, res->val.acc, res->val.code_ppl,
                    res->train_eval.frames ? res->train_eval.bits : -1.0, (double)res->probe_acc,
                    (double)res->probe_acc_random, (double)res->probe_chance, res->frames_per_s, res->seconds);
    } else if (log) {
        fprintf(log, "{\"type\":\"diverged\",\"step\":%d}\n", step);
    }
    if (res->diverged && !o->quiet) fprintf(stderr, "[derf] %s\n", res->diverged_msg);
    res->seconds = derf_now_s() - t0;
    rc = 0;
done:
    if (log) fclose(log);
    derf_diag_free(&dg);
    bufs_free(&b);
    derf_w2v_free(&m);
    free(tr.idx);
    free(va.idx);
    free(te.idx);
    derf_speech_free(&c);
    return rc;
}
