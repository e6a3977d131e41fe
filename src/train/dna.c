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
#include "derf/dnatrain.h"
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

/* ------------------------------------------------------------------------------- shared pieces */

static int bad(float x) { return !isfinite(x) || x > 1e4f; }

static void diverge(derf_dna_train_result *res, FILE *log, int quiet, int step, const char *what, float v) {
    res->diverged = 1;
    snprintf(res->diverged_msg, sizeof res->diverged_msg, "diverged at step %d: %s is %g; no weights written", step, what, (double)v);
    if (!quiet) fprintf(stderr, "[derf] %s\n", res->diverged_msg);
    if (log) { fprintf(log, "{\"type\":\"diverged\",\"step\":%d,\"what\":\"%s\"}\n", step, what); fflush(log); }
}

static FILE *open_log(const char *out, int append, char *err, size_t errlen) {
    if (!out || derf_io_mkdirs(out, err, errlen)) return NULL;
    char path[1200];
    snprintf(path, sizeof path, "%s/log.jsonl", out);
    FILE *f = fopen(path, append ? "a" : "w");
    if (!f) derf_io_errf(err, errlen, "cannot write %s: does the folder exist and is it writable?", path);
    return f;
}

static int save_run(const derf_dna_train_opts *o, dmodel *m, int step, derf_rng rng, char *err, size_t errlen) {
    if (!o->out) return 0;
    char keys[16][32], vals[16][128];
    int nk = dm_meta(m, keys, vals, 16);
    derf_st_meta meta[48];
    int n = 0;
    for (int i = 0; i < nk; i++) meta[n++] = (derf_st_meta){keys[i], vals[i]};
    for (int i = 0; i < o->nmeta && n < 48; i++) meta[n++] = o->meta[i];
    derf_run_state s = {m->params, NULL, step, rng, "derf-dna-1", meta, n};
    return derf_run_save(o->out, &s, err, errlen);
}

/* the end of a run: the checkpoint (not after a divergence), the time, the log and the model freed.
 * Returns 0, or -1 when the checkpoint cannot be written. */
static int finish_run(const derf_dna_train_opts *o, FILE *log, dmodel *m, int step, derf_rng rng,
                      derf_dna_train_result *res, double t0, char *err, size_t errlen) {
    int rc = res->diverged ? 0 : save_run(o, m, step, rng, err, errlen);
    res->seconds = derf_now_s() - t0;
    if (log) fclose(log);
    dm_free(m);
    return rc;
}

/* progress line + log record every log_every steps */
static void progress(const derf_dna_train_opts *o, FILE *log, int step, int total, float loss, float lr, float gn,
                     double tok_s, double eta_s, double elapsed) {
    char eta[32];
    derf_fmt_eta(eta, sizeof eta, eta_s);
    if (!o->quiet)
        fprintf(stderr, "[derf] step %d/%d loss %.4f lr %.2e gn %.3f | %.0f tok/s | eta %s\n", step, total, (double)loss,
                (double)lr, (double)gn, tok_s, eta);
    if (log) {
        fprintf(log, "{\"type\":\"train\",\"step\":%d,\"loss\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,\"tokens_per_s\":%.1f,"
                     "\"elapsed_s\":%.2f}\n", step, (double)loss, (double)lr, (double)gn, tok_s, elapsed);
        fflush(log);
    }
}

/* one optimizer step on the batch in tok/tgt; returns the loss, sets *gn; NAN loss or gn: diverged */
static float train_step(dmodel *m, const int32_t *tok, const int32_t *tgt, int B, int T, derf_adamw_cfg *ac, float lr,
                        float clip, int step, float *gn) {
    derf_params_zero_grad(m->params);
    float l = dm_forward(m, tok, tgt, B, T);
    if (bad(l)) return l;
    dm_backward(m, 1.0f);
    *gn = derf_clip_grad_norm(m->params, clip);
    if (!isfinite(*gn)) return l;
    ac->lr = lr;
    derf_adamw_step(m->params, ac, step + 1);
    return l;
}

/* ------------------------------------------------------------------------------- pretraining */

/* --resume: the weights, AdamW moments, step and RNG of dir/state.safetensors (derf_run_load checks the format
 * and every tensor's shape); the model config in its metadata (architecture, sizes, norm) must be this run's,
 * and the run must not be past o->steps. */
static int resume_run(const derf_dna_train_opts *o, dmodel *m, int *step, derf_rng *rng, char *err, size_t errlen) {
    char path[1200], keys[16][32], vals[16][128];
    snprintf(path, sizeof path, "%s/state.safetensors", o->resume);
    derf_safetensors st;
    if (derf_safetensors_read(&st, path, (size_t)1 << 36, err, errlen)) return -1;
    const int nk = dm_meta(m, keys, vals, 16);
    int rc = 0;
    for (int i = 0; i < nk && !rc; i++) {
        const char *v = derf_safetensors_meta(&st, keys[i]);
        if (!v || strcmp(v, vals[i])) {
            derf_io_errf(err, errlen, "%s: a run with %s=%s, not %s (resume with the run's own options)", path, keys[i],
                         v ? v : "(none)", vals[i]);
            rc = -1;
        }
    }
    derf_safetensors_free(&st);
    if (rc || derf_run_load(o->resume, "derf-dna-1", m->params, NULL, step, rng, err, errlen)) return -1;
    if (*step > o->steps) {
        derf_io_errf(err, errlen, "%s is at step %d, past --steps %d", path, *step, o->steps);
        return -1;
    }
    return 0;
}

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

int derf_dna_pretrain(const derf_dna_train_opts *o, derf_dna_train_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->val_loss = res->train_loss_eval = res->ood_loss = -1.f;
    res->val_acc = res->test_acc = -1.f;
    const int B = o->batch, T = o->seq, W = T + 1;
    if (B < 1 || T < 2 || o->steps < 1) { derf_io_errf(err, errlen, "--batch, --steps must be >= 1 and --seq >= 2"); return -1; }
    derf_dna_corpus c, oc = {0};
    char oodbuf[1200];
    const char *ood = ood_path(o, oodbuf, sizeof oodbuf);
    if (derf_dna_corpus_read(o->corpus, &c, err, errlen)) return -1;
    if (ood && derf_dna_corpus_read(ood, &oc, err, errlen)) { derf_dna_corpus_free(&c); return -1; }
    /* sampling table: cumulative count of window starts over training segments long enough */
    size_t *seg = malloc(c.nseg * sizeof *seg), nseg = 0;
    uint64_t *cum = malloc((c.nseg + 1) * sizeof *cum);
    cum[0] = 0;
    for (size_t s = 0; s < c.nseg; s++)
        if (c.seg[s].split == DERF_DNA_TRAIN && c.seg[s].length >= (uint32_t)W) {
            seg[nseg] = s;
            cum[nseg + 1] = cum[nseg] + (c.seg[s].length - (uint32_t)W + 1);
            nseg++;
        }
    grid gv = make_grid(&c, DERF_DNA_VAL, W, o->eval_windows), gt = make_grid(&c, DERF_DNA_TRAIN, W, o->eval_windows),
         go = make_grid(&oc, DERF_DNA_TEST, W, o->eval_windows);
    int rc = -1;
    FILE *log = NULL;
    dmodel m = {0};
    static derf_diag dg; /* --diag-every; names from m.params once built */
    derf_diag_init(&dg, o->diag_every, NULL);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T), *tgt = malloc(sizeof(int32_t) * (size_t)B * T);
    uint8_t *win = malloc((size_t)W);
    if (!nseg || !gv.n) {
        derf_io_errf(err, errlen, "%s: no training segment of %d bases or no validation window (is it a split corpus from "
                     "'derf data dna'? try a shorter --seq)", o->corpus, W);
        goto done;
    }
    if (ood && !go.n) { derf_io_errf(err, errlen, "%s: no test-split window of %d bases (out-of-distribution corpus)", ood, W); goto done; }
    if (dm_build(&m, o, 0, B, T, err, errlen)) goto done;
    dg.names = m.params;
    res->params = (long long)m.params->total;
    derf_rng rng;
    derf_rng_seed(&rng, o->seed, 0xD7A);
    int step = 0;
    if (o->resume && resume_run(o, &m, &step, &rng, err, errlen)) goto done;
    if (o->out && !(log = open_log(o->out, o->resume != NULL, err, errlen))) goto done;
    char desc[300];
    dm_describe(&m, desc, sizeof desc);
    const int warm = (int)(o->warmup_frac * o->steps);
    if (!o->quiet)
        fprintf(stderr, "[derf] %s | %s: %s, %llu train window starts, %zu val windows | %d x %d tokens/step, %d steps, "
                        "rc_aug %d%s\n", desc, o->corpus, m.arch ? "masked LM" : "next-token", (unsigned long long)cum[nseg], gv.n, B,
                T, o->steps, o->rc_aug, o->resume ? " (resumed)" : "");
    if (log)
        fprintf(log, "{\"type\":\"start\",\"model\":\"%s\",\"tokens_per_step\":%d,\"step\":%d,\"steps\":%d,\"resumed\":%s}\n", desc,
                B * T, step, o->steps, o->resume ? "true" : "false");
    derf_adamw_cfg ac = {o->lr, o->beta1, o->beta2, 1e-8f, o->weight_decay};
    double t0 = derf_now_s(), ttrain = 0, lsum = 0;
    const int start = step, stop = o->max_steps > 0 && o->max_steps < o->steps ? o->max_steps : o->steps;
    int ln = 0;
    float lr = o->lr;
    for (; step < stop; step++) {
        double ts = derf_now_s();
        for (int b = 0; b < B; b++) {
            uint64_t r = (((uint64_t)derf_rng_u32(&rng) << 32) | derf_rng_u32(&rng)) % cum[nseg];
            size_t lo = 0, hi = nseg;
            while (hi - lo > 1) { size_t mid = (lo + hi) / 2; if (cum[mid] <= r) lo = mid; else hi = mid; }
            memcpy(win, c.tok + c.seg[seg[lo]].offset + (r - cum[lo]), (size_t)W);
            if (o->rc_aug && (derf_rng_u32(&rng) & 1)) derf_dna_revcomp(win, win, (size_t)W);
            make_example(&m, win, T, o->mlm_prob, &rng, tok + (size_t)b * T, tgt + (size_t)b * T);
        }
        lr = derf_lr_at(step, warm, o->steps, o->lr, o->min_lr);
        derf_diag_maybe_begin(&dg, step);
        float gn = 0, l = train_step(&m, tok, tgt, B, T, &ac, lr, o->clip, step, &gn); /* hook: its forward */
        derf_diag_maybe_end(&dg, step, log, o->quiet ? NULL : stderr);
        if (bad(l)) { diverge(res, log, o->quiet, step, "loss", l); break; }
        if (!isfinite(gn)) { diverge(res, log, o->quiet, step, "gradient norm", gn); break; }
        ttrain += derf_now_s() - ts;
        lsum += l;
        ln++;
        if (o->log_every > 0 && ((step + 1) % o->log_every == 0 || step + 1 == stop)) {
            double tok_s = (step + 1 - start) * (double)B * T / (ttrain + 1e-9);
            progress(o, log, step + 1, o->steps, (float)(lsum / ln), lr, gn, tok_s, (stop - step - 1) * (double)B * T / tok_s,
                     derf_now_s() - t0);
            res->final_loss = (float)(lsum / ln);
            lsum = 0;
            ln = 0;
        }
        if (o->eval_every > 0 && (step + 1) % o->eval_every == 0 && step + 1 < o->steps) {
            float vl = eval_grid(&m, &c, &gv, T, o->mlm_prob, tok, tgt);
            if (!o->quiet) fprintf(stderr, "[derf] step %d: val loss %.4f nats/base (%.4f bits)\n", step + 1, (double)vl, vl / M_LN2);
            if (log) fprintf(log, "{\"type\":\"val\",\"step\":%d,\"val_loss\":%.6g}\n", step + 1, (double)vl);
            if (bad(vl)) { diverge(res, log, o->quiet, step + 1, "validation loss", vl); break; }
            if (save_run(o, &m, step + 1, rng, err, errlen)) goto done;
        }
    }
    res->steps = step;
    res->tokens_per_s = ttrain > 0 ? (step - start) * (double)B * T / ttrain : 0;
    if (ln) res->final_loss = (float)(lsum / ln);
    if (!res->diverged) {
        res->val_loss = eval_grid(&m, &c, &gv, T, o->mlm_prob, tok, tgt);
        if (bad(res->val_loss)) diverge(res, log, o->quiet, step, "validation loss", res->val_loss);
    }
    if (!res->diverged) {
        res->train_loss_eval = eval_grid(&m, &c, &gt, T, o->mlm_prob, tok, tgt);
        if (ood) res->ood_loss = eval_grid(&m, &oc, &go, T, o->mlm_prob, tok, tgt);
        res->seconds = derf_now_s() - t0;
        if (!o->quiet)
            fprintf(stderr, "[derf] done: val loss %.4f nats/base (%.4f bits), eval-mode train loss %.4f, %.0f tok/s, %.0f s\n",
                    (double)res->val_loss, res->val_loss / M_LN2, (double)res->train_loss_eval, res->tokens_per_s, res->seconds);
        if (!o->quiet && ood)
            fprintf(stderr, "[derf] out-of-distribution loss on %s: %.4f nats/base (%.4f bits)\n", ood, (double)res->ood_loss,
                    res->ood_loss / M_LN2);
        if (log)
            fprintf(log, "{\"type\":\"final\",\"step\":%d,\"val_loss\":%.6g,\"val_bits\":%.6g,\"train_loss_eval\":%.6g,"
                         "\"ood_loss\":%.6g,\"tokens_per_s\":%.1f,\"seconds\":%.1f}\n", step, (double)res->val_loss,
                    res->val_loss / M_LN2, (double)res->train_loss_eval, (double)res->ood_loss, res->tokens_per_s, res->seconds);
    }
    rc = finish_run(o, log, &m, step, rng, res, t0, err, errlen);
    log = NULL;
done:
    if (log) fclose(log);
    derf_diag_free(&dg);
    dm_free(&m);
    derf_dna_corpus_free(&c);
    derf_dna_corpus_free(&oc);
    free(go.pos);
    free(seg); free(cum); free(gv.pos); free(gt.pos); free(tok); free(tgt); free(win);
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

int derf_dna_finetune(const derf_dna_train_opts *o, derf_dna_train_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->val_loss = res->train_loss_eval = res->ood_loss = -1.f;
    res->val_acc = res->test_acc = -1.f;
    if (o->batch < 1 || o->epochs < 1) { derf_io_errf(err, errlen, "--batch and --epochs must be >= 1"); return -1; }
    if (o->resume || o->max_steps) { derf_io_errf(err, errlen, "--resume and --max-steps are for pretraining runs (not --task)"); return -1; }
    derf_dna_task t;
    if (derf_dna_task_read(o->task, &t, err, errlen)) return -1;
    int ntr, nva, nte;
    int *itr = split_index(&t, DERF_DNA_TRAIN, o->train_limit, &ntr), *iva = split_index(&t, DERF_DNA_VAL, o->eval_limit, &nva),
        *ite = split_index(&t, DERF_DNA_TEST, o->eval_limit, &nte);
    const int B = o->batch, L = t.len;
    int rc = -1;
    FILE *log = NULL;
    dmodel m = {0};
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * L), *lab = malloc(sizeof(int32_t) * (size_t)B);
    uint8_t *win = malloc((size_t)L);
    if (!ntr || !nva || !nte) { derf_io_errf(err, errlen, "%s: a split is empty (train %d, val %d, test %d)", o->task, ntr, nva, nte); goto done; }
    if (dm_build(&m, o, t.nclass, B, L, err, errlen)) goto done;
    if (o->init && load_backbone(&m, o->init, err, errlen)) goto done;
    res->params = (long long)m.params->total;
    if (o->out && !(log = open_log(o->out, 0, err, errlen))) goto done;
    derf_rng rng;
    derf_rng_seed(&rng, o->seed, 0xF17E);
    const int spe = (ntr + B - 1) / B, total = spe * o->epochs, warm = (int)(o->warmup_frac * total);
    char desc[300];
    dm_describe(&m, desc, sizeof desc);
    if (!o->quiet)
        fprintf(stderr, "[derf] fine-tune %s (%d classes, %d bp; train %d / val %d / test %d) from %s | %s | %d epochs x %d steps, "
                        "batch %d\n", t.name, t.nclass, L, ntr, nva, nte, o->init ? o->init : "random init", desc, o->epochs, spe, B);
    if (log)
        fprintf(log, "{\"type\":\"start\",\"task\":\"%s\",\"model\":\"%s\",\"init\":\"%s\",\"steps\":%d}\n", t.name, desc,
                o->init ? "pretrained" : "random", total);
    derf_adamw_cfg ac = {o->lr, o->beta1, o->beta2, 1e-8f, o->weight_decay};
    double t0 = derf_now_s(), ttrain = 0, lsum = 0;
    int step = 0, ln = 0;
    float best_val = -1;
    for (int ep = 0; ep < o->epochs && !res->diverged; ep++) {
        for (int i = ntr; i > 1; i--) { int j = (int)derf_rng_below(&rng, (uint32_t)i), x = itr[i - 1]; itr[i - 1] = itr[j]; itr[j] = x; }
        for (int s = 0; s < spe; s++, step++) {
            double ts = derf_now_s();
            int b = ntr - s * B < B ? ntr - s * B : B;
            for (int i = 0; i < b; i++) {
                int id = itr[s * B + i];
                memcpy(win, t.tok + (size_t)id * L, (size_t)L);
                if (o->rc_aug && (derf_rng_u32(&rng) & 1)) derf_dna_revcomp(win, win, (size_t)L);
                for (int q = 0; q < L; q++) tok[(size_t)i * L + q] = win[q];
                lab[i] = t.label[id];
            }
            float lr = derf_lr_at(step, warm, total, o->lr, o->min_lr), gn = 0;
            float l = train_step(&m, tok, lab, b, L, &ac, lr, o->clip, step, &gn);
            if (bad(l)) { diverge(res, log, o->quiet, step, "loss", l); break; }
            if (!isfinite(gn)) { diverge(res, log, o->quiet, step, "gradient norm", gn); break; }
            ttrain += derf_now_s() - ts;
            lsum += l;
            ln++;
            if (o->log_every > 0 && (step + 1) % o->log_every == 0) {
                double tok_s = (step + 1) * (double)B * L / (ttrain + 1e-9);
                progress(o, log, step + 1, total, (float)(lsum / ln), lr, gn, tok_s, (total - step - 1) * (double)B * L / tok_s,
                         derf_now_s() - t0);
                res->final_loss = (float)(lsum / ln);
                lsum = 0;
                ln = 0;
            }
        }
        if (res->diverged) break;
        float vl, va = eval_cls(&m, &t, iva, nva, tok, lab, &vl), ta = eval_cls(&m, &t, ite, nte, tok, lab, NULL);
        if (!o->quiet) fprintf(stderr, "[derf] epoch %d: val acc %.2f%% (loss %.4f), test acc %.2f%%\n", ep + 1, 100 * va, (double)vl, 100 * ta);
        if (log) { fprintf(log, "{\"type\":\"epoch\",\"epoch\":%d,\"val_acc\":%.6g,\"val_loss\":%.6g,\"test_acc\":%.6g}\n", ep + 1, va, vl, ta); fflush(log); }
        if (va > best_val) { best_val = va; res->val_acc = va; res->test_acc = ta; res->best_epoch = ep + 1; }
    }
    res->steps = step;
    res->tokens_per_s = ttrain > 0 ? step * (double)B * L / ttrain : 0;
    if (!res->diverged) {
        int ne = ntr < 2000 ? ntr : 2000;
        eval_cls(&m, &t, itr, ne, tok, lab, &res->train_loss_eval);
        res->seconds = derf_now_s() - t0;
        if (!o->quiet)
            fprintf(stderr, "[derf] done: test acc %.2f%% at the best val epoch %d (val %.2f%%); eval-mode train loss %.4f; %.0f s\n",
                    100 * res->test_acc, res->best_epoch, 100 * res->val_acc, (double)res->train_loss_eval, res->seconds);
        if (log)
            fprintf(log, "{\"type\":\"final\",\"val_acc\":%.6g,\"test_acc\":%.6g,\"best_epoch\":%d,\"train_loss_eval\":%.6g,"
                         "\"seconds\":%.1f}\n", res->val_acc, res->test_acc, res->best_epoch, (double)res->train_loss_eval, res->seconds);
    }
    rc = finish_run(o, log, &m, step, rng, res, t0, err, errlen);
    log = NULL;
done:
    if (log) fclose(log);
    dm_free(&m);
    derf_dna_task_free(&t);
    free(itr); free(iva); free(ite); free(tok); free(lab); free(win);
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
