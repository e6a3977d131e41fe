/* lm.c: the GPT-2 language-model trainer (see derf/lm.h): random windows of a token shard, gradient
 * accumulation, AdamW (0.9, 0.95) with weight decay on the 2-D tensors only, warmup + cosine, clipping,
 * validation on a fixed set of windows, the evaluation-mode training loss, checkpoints that never hold
 * diverged weights, exact resume, a JSONL log and progress lines; plus checkpoint loading and sampling
 * (temperature, top-k, top-p) for `derf sample`. Deterministic for a given seed and thread count.
 * Data-parallel under MPI (derf/dist.h): every process draws the window offsets of the whole global
 * micro-batch (the same draws as one process) and trains on its share; gradients are averaged once
 * per optimizer step (MPI; NCCL on GPUs); validation windows are sharded; only rank 0 writes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "derf/dist.h"
#include "derf/fit.h"
#include "derf/io.h"
#include "derf/lm.h"
#include "derf/rng.h"
#include "derf/tokenizer.h"
#include "derf/train.h"

void derf_lm_opts_default(derf_lm_opts *o) {
    memset(o, 0, sizeof *o);
    derf_gpt2_preset(&o->model, "tiny", NULL, 0);
    o->model.vocab = 0;            /* from the shards */
    o->data = "runs/data/text";
    o->steps = 1000;
    o->batch = 8;
    o->seq = 0;                    /* block_size */
    o->accum = 1;
    o->lr = 6e-4f;                 /* nanoGPT's GPT-2 peak and floor (docs/paper.md section 5.3) */
    o->min_lr = 6e-5f;
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->clip = 1.0f;
    o->warmup = 100;
    o->eval_every = 100;
    o->eval_windows = 32;
    o->eval_train_loss = 1;
    o->seed = 0;
    o->log_every = 10;
    o->device = "cpu";
    o->ckpt_secs = -1;
}

/* ------------------------------------------------------------------------------- evaluation */

float derf_lm_eval_loss(derf_gpt2 *m, const derf_shard *s, int T, int nwin) {
    const int B = m->max_batch;
    if (nwin < 1) nwin = 1;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T), *tgt = malloc(sizeof(int32_t) * (size_t)B * T);
    const uint64_t span = (uint64_t)(s->n - (size_t)T - 1);
    double total = 0;
    int lo, hi;
    derf_dist_range(nwin, &lo, &hi); /* this process's share of the windows */
    for (int w0 = lo; w0 < hi; w0 += B) {
        int b = hi - w0 < B ? hi - w0 : B;
        for (int i = 0; i < b; i++) {
            uint64_t off = nwin > 1 ? span * (uint64_t)(w0 + i) / (uint64_t)(nwin - 1) : 0;
            const uint16_t *src = s->tokens + off;
            for (int t = 0; t < T; t++) {
                tok[(size_t)i * T + t] = src[t];
                tgt[(size_t)i * T + t] = src[t + 1];
            }
        }
        total += (double)derf_gpt2_forward(m, tok, tgt, b, T) * b;
    }
    free(tok);
    free(tgt);
    derf_dist_sum_doubles(&total, 1);
    return (float)(total / nwin);
}

/* ------------------------------------------------------------------------------- data */

static int load_shard(const char *path, derf_shard *s, int T, const char *what, char *err, size_t errlen) {
    char e[DERF_ERRLEN];
    if (derf_shard_read(path, s, e, sizeof e)) {
        derf_io_errf(err, errlen, "%s (build the shards with 'derf data text', or point --data at a folder "
                     "holding train.bin and val.bin)", e);
        return -1;
    }
    if (s->n < (size_t)T + 1) {
        derf_io_errf(err, errlen, "%s: the %s shard has %zu tokens, fewer than one window of %d + 1: lower --seq",
                     path, what, s->n, T);
        derf_shard_free(s);
        return -1;
    }
    return 0;
}

/* replaces both GPT-2 shards by their bytes (the byte-level model reads the same text) */
static int to_bytes(derf_shard *tr, derf_shard *va, const char *gpt2, char *err, size_t errlen) {
    char e[DERF_ERRLEN];
    derf_tokenizer *tk = derf_tok_load_dir(gpt2, DERF_TOK_GPT2, e, sizeof e);
    if (!tk) { derf_io_errf(err, errlen, "--bytes decodes the GPT-2 shards: %s", e); return -1; }
    derf_shard *s[2] = {tr, va};
    for (int i = 0; i < 2; i++) {
        derf_shard b;
        if (derf_shard_to_bytes(s[i], tk, &b, e, sizeof e)) {
            derf_io_errf(err, errlen, "--bytes: the %s shard: %s", i ? "validation" : "training", e);
            derf_tok_free(tk);
            return -1;
        }
        derf_shard_free(s[i]);
        *s[i] = b;
    }
    derf_tok_free(tk);
    return 0;
}

int derf_lm_read_data(const derf_lm_opts *o, int T, derf_shard *tr, derf_shard *va, char *tpath, char *vpath,
                      size_t pathlen, char *err, size_t errlen) {
    const char *dir = o->data ? o->data : "runs/data/text";
    if (o->train_path) snprintf(tpath, pathlen, "%s", o->train_path);
    else snprintf(tpath, pathlen, "%s/train.bin", dir);
    if (o->val_path) snprintf(vpath, pathlen, "%s", o->val_path);
    else snprintf(vpath, pathlen, "%s/val.bin", dir);
    if (load_shard(tpath, tr, T, "training", err, errlen)) return -1;
    if (load_shard(vpath, va, T, "validation", err, errlen)) { derf_shard_free(tr); return -1; }
    if (o->bytes && to_bytes(tr, va, o->gpt2, err, errlen)) { derf_shard_free(tr); derf_shard_free(va); return -1; }
    return 0;
}

/* lm_head.bias = the training shard's unigram log-probabilities, centred over the vocabulary */
static void unigram_logit_bias(derf_gpt2 *m, const derf_shard *tr) {
    const int V = m->cfg.vocab;
    const derf_tensor *t = derf_params_find(&m->params, "lm_head.bias");
    double *lp = malloc(sizeof(double) * (size_t)V), mean = 0;
    derf_diag_unigram(tr->tokens, tr->n, V, lp);
    for (int v = 0; v < V; v++) mean += lp[v] / V;
    for (int v = 0; v < V; v++) m->params.params[t->offset + v] = (float)(lp[v] - mean);
    free(lp);
}

/* every token of the shard must be a row of the model's embedding */
static int check_vocab(const derf_shard *s, const char *path, int V, char *err, size_t errlen) {
    for (size_t i = 0; i < s->n; i++)
        if (s->tokens[i] >= V) {
            derf_io_errf(err, errlen, "%s: token %d at position %zu is outside the model's vocabulary of %d "
                         "(the shard's vocabulary is %d): use --vocab 0 (the shards' own) or a larger --vocab",
                         path, (int)s->tokens[i], i, V, s->vocab);
            return -1;
        }
    return 0;
}

/* B random windows of T+1 tokens (tokens = w[0..T), targets = w[1..T]), of which windows
 * [off, off + Bl) are copied out (a data-parallel share; the other offsets are drawn and dropped) */
static void sample_batch(const derf_shard *s, int B, int T, derf_rng *r, int off, int Bl, int32_t *tok, int32_t *tgt) {
    const uint32_t span = (uint32_t)(s->n - (size_t)T); /* offsets 0 .. n-T-1 */
    for (int g = 0; g < B; g++) {
        const uint16_t *src = s->tokens + derf_rng_below(r, span);
        if (g < off || g >= off + Bl) continue;
        const size_t b = (size_t)(g - off);
        for (int t = 0; t < T; t++) {
            tok[b * T + t] = src[t];
            tgt[b * T + t] = src[t + 1];
        }
    }
}

/* ------------------------------------------------------------------------------- the task for derf_fit */

typedef struct {
    derf_gpt2 m;
    const derf_lm_opts *o;
    derf_lm_result *res;
    derf_shard tr, va;
    int T, off, Bl, data_vocab, quiet;
    long long tps;            /* tokens per optimizer step */
    int32_t *tok, *tgt;
    double *unigram;          /* the training shard's unigram log-probabilities (diagnostics) */
    double t0;
    char spec[256];
} lm_task;

static float lm_micro(derf_task *t, int step, derf_rng *rng, float scale, double *units) {
    lm_task *L = t->ctx;
    sample_batch(&L->tr, L->o->batch, L->T, rng, L->off, L->Bl, L->tok, L->tgt);
    float l = derf_dist_mean_float(derf_gpt2_forward(&L->m, L->tok, L->tgt, L->Bl, L->T)); /* over the global batch */
    if (!derf_loss_diverged(l)) derf_gpt2_backward(&L->m, scale);
    *units = (double)L->o->batch * L->T;
    return l;
}

/* periodic: the validation loss (curve, progress line); final: the evaluation-mode training loss */
static double lm_eval(derf_task *t, int step, int final, derf_lf *f, int *nf) {
    lm_task *L = t->ctx;
    derf_lm_result *res = L->res;
    if (final) {
        if (L->o->eval_train_loss) res->train_loss_eval = derf_lm_eval_loss(&L->m, &L->tr, L->T, L->o->eval_windows);
        derf_lf g[] = {DERF_LF_I("tokens", step * L->tps), DERF_LF_N("val_loss", res->val_loss),
                       DERF_LF_N("train_loss_eval", res->train_loss_eval)};
        memcpy(f, g, sizeof g);
        *nf = 3;
        return L->o->eval_train_loss ? res->train_loss_eval : 0;
    }
    float vl = derf_lm_eval_loss(&L->m, &L->va, L->T, L->o->eval_windows);
    if (derf_loss_diverged(vl)) return vl;
    res->val_loss = vl;
    if (res->ncurve < DERF_LM_MAX_CURVE) {
        res->curve_step[res->ncurve] = step;
        res->curve_val[res->ncurve++] = vl;
    }
    if (!L->quiet) fprintf(stderr, "[derf] step %d: val loss %.4f\n", step, (double)vl);
    derf_lf g[] = {DERF_LF_I("tokens", step * L->tps), DERF_LF_N("val_loss", vl), DERF_LF_T("elapsed_s", derf_now_s() - L->t0)};
    memcpy(f, g, sizeof g);
    *nf = 3;
    return vl;
}

/* diagnostics: the model's loss beside the unigram loss of the same targets (the gap alarm from half the schedule on),
 * and the summary in the result */
static void lm_diag(derf_task *t, derf_diag *d, int step) {
    lm_task *L = t->ctx;
    derf_diag_set_lm(d, L->m.loss, derf_diag_unigram_xent(L->unigram, L->tgt, (size_t)L->Bl * L->T), step >= L->o->steps / 2);
    derf_lm_result *res = L->res;
    res->diag_step = step;
    res->diag_alarm = derf_diag_alarm(d);
    res->diag_sat_max = NAN;
    for (int i = 0; i < d->nlayer; i++) {
        double sat = derf_diag_sat(&d->layer[i]);
        if (isfinite(sat) && !(sat <= res->diag_sat_max)) res->diag_sat_max = sat;
    }
    if (d->nlayer) {
        res->diag_rms_last = derf_diag_rms_in(&d->layer[d->nlayer - 1]);
        res->diag_share_last = derf_diag_share_in(&d->layer[d->nlayer - 1]);
    }
    res->diag_gap = d->unigram - d->loss;
}

static int lm_train_fields(derf_task *t, int step, derf_lf *f, int max) {
    f[0] = DERF_LF_I("tokens", step * ((lm_task *)t->ctx)->tps);
    return 1;
}
static int lm_start_fields(derf_task *t, derf_lf *f, int max) {
    lm_task *L = t->ctx;
    derf_lf g[] = {DERF_LF_I("params", L->m.params.total), DERF_LF_I("vocab", L->m.cfg.vocab), DERF_LF_S("norm", L->spec),
                   DERF_LF_I("tokens_per_step", L->tps)};
    memcpy(f, g, sizeof g);
    return 4;
}
static int lm_meta(derf_task *t, char keys[][32], char vals[][128], int max) {
    lm_task *L = t->ctx;
    int nk = derf_gpt2_config_to_meta(&L->m.cfg, keys, vals, max - 1);
    snprintf(keys[nk], 32, "data_vocab");
    snprintf(vals[nk++], 128, "%d", L->data_vocab);
    return nk;
}
static int lm_begin_cuda(derf_task *t, char *err, size_t errlen) { /* uploads the (resumed) weights and moments */
    return derf_gpt2_cuda_attach(&((lm_task *)t->ctx)->m, 1, err, errlen);
}
static void lm_zero_grad(derf_task *t) { derf_gpt2_zero_grad(&((lm_task *)t->ctx)->m); }
static void lm_mean_grads(derf_task *t) { derf_gpt2_mean_grads(&((lm_task *)t->ctx)->m); } /* MPI, or NCCL on GPUs */
static float lm_clip(derf_task *t, float c) { return derf_gpt2_clip_grad_norm(&((lm_task *)t->ctx)->m, c); }
static void lm_adamw(derf_task *t, const derf_adamw_cfg *c, int s) { derf_gpt2_adamw_step(&((lm_task *)t->ctx)->m, c, s); }
static void lm_sync_host(derf_task *t) { derf_gpt2_sync_host(&((lm_task *)t->ctx)->m); }
static void lm_sync_device(derf_task *t) { derf_gpt2_sync_device(&((lm_task *)t->ctx)->m); }

/* the shards (every token inside the model's vocabulary) and the model for this process's share */
static int lm_setup(lm_task *L, const derf_lm_opts *o, char *err, size_t errlen) {
    derf_gpt2_config cfg = o->model;
    L->T = o->seq > 0 ? o->seq : cfg.block_size;
    if (L->T > cfg.block_size) {
        derf_io_errf(err, errlen, "--seq %d is longer than the model's context (block_size %d)", L->T, cfg.block_size);
        return -1;
    }
    char tpath[1100], vpath[1100];
    if (derf_lm_read_data(o, L->T, &L->tr, &L->va, tpath, vpath, sizeof tpath, err, errlen)) return -1;
    L->data_vocab = L->tr.vocab > L->va.vocab ? L->tr.vocab : L->va.vocab;
    if (cfg.vocab <= 0) cfg.vocab = (L->data_vocab + 63) / 64 * 64;
    if (check_vocab(&L->tr, tpath, cfg.vocab, err, errlen) || check_vocab(&L->va, vpath, cfg.vocab, err, errlen) ||
        derf_dist_shard(o->batch, &L->off, &L->Bl, err, errlen) || derf_gpt2_build(&L->m, &cfg, L->Bl, L->T, err, errlen))
        return -1;
    derf_gpt2_init(&L->m, o->seed);
    if (cfg.logit_bias && o->logit_bias_unigram) unigram_logit_bias(&L->m, &L->tr);
    if (o->diag_every) {
        if (!(L->unigram = malloc(sizeof(double) * (size_t)cfg.vocab))) { derf_io_errf(err, errlen, "out of memory"); return -1; }
        derf_diag_unigram(L->tr.tokens, L->tr.n, cfg.vocab, L->unigram);
    }
    L->tok = malloc(sizeof(int32_t) * (size_t)L->Bl * L->T);
    L->tgt = malloc(sizeof(int32_t) * (size_t)L->Bl * L->T);
    if (!L->tok || !L->tgt) { derf_io_errf(err, errlen, "out of memory for the batches"); return -1; }
    L->tps = (long long)o->accum * o->batch * L->T;
    derf_norm_format(&cfg.norm, L->spec, sizeof L->spec);
    return 0;
}

int derf_lm_train(const derf_lm_opts *o, derf_lm_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->val_loss = NAN;
    res->final_loss = NAN;
    res->train_loss_eval = -1.f;
    res->diag_step = res->diag_alarm = -1;
    res->diag_sat_max = res->diag_rms_last = res->diag_share_last = res->diag_gap = NAN;
    if (o->batch < 1 || o->steps < 1 || o->accum < 1) {
        derf_io_errf(err, errlen, "--batch, --steps and --accum must be at least 1");
        return -1;
    }
    const int cuda = o->device && strcmp(o->device, "cpu") != 0;
    if (cuda && strcmp(o->device, "cuda") != 0) {
        derf_io_errf(err, errlen, "--device must be cpu or cuda, not '%s'", o->device);
        return -1;
    }
    /* is a GPU usable at all? (under mpirun: one per process, joined by NCCL; every process calls it) */
    if (cuda && o->model.logit_bias) {
        derf_io_errf(err, errlen, "--logit-bias runs on the CPU only: drop it or use --device cpu");
        return -1;
    }
    if (cuda && derf_gpt2_cuda_attach(NULL, 1, err, errlen)) return -1;
    lm_task L = {.o = o, .res = res, .quiet = o->quiet || derf_dist_rank() != 0, .t0 = derf_now_s()};
    derf_task t = {.ctx = &L, .params = &L.m.params, .format = "derf-lm-1", .unit = "tok", .rate_key = "tokens_per_s",
                   .eval_type = "val", .micro = lm_micro, .meta = lm_meta, .begin = cuda ? lm_begin_cuda : NULL,
                   .zero_grad = lm_zero_grad, .mean_grads = lm_mean_grads, .clip = lm_clip, .adamw = lm_adamw,
                   .sync_host = lm_sync_host, .sync_device = lm_sync_device, .eval = lm_eval,
                   .train_fields = lm_train_fields, .start_fields = lm_start_fields, .diag = lm_diag};
    int rc = -1;
    if (lm_setup(&L, o, err, errlen)) goto done;
    res->params = (long long)L.m.params.total;
    res->vocab = L.m.cfg.vocab;
    res->data_vocab = L.data_vocab;
    res->total_steps = o->steps;
    derf_fit_opts fo;
    derf_fit_opts_default(&fo);
    fo.steps = o->steps;
    fo.accum = o->accum;
    fo.sched = (derf_sched){DERF_SCHED_COSINE, o->lr, o->min_lr, o->warmup, o->steps};
    fo.adamw = (derf_adamw_cfg){o->lr, o->beta1, o->beta2, 1e-8f, o->weight_decay};
    fo.clip = o->clip;
    fo.eval_every = o->eval_every;
    fo.eval_at_start = fo.eval_at_end = 1;
    fo.stream = 2;
    DERF_FIT_RUN_OPTS(fo, o);
    if (cuda) fo.diag_every = 0; /* the CPU forward only */
    const derf_gpt2_config *c = &L.m.cfg;
    if (!L.quiet)
        fprintf(stderr, "[derf] gpt2 L%d C%d H%d V%d ctx %d, %lld params, norm %s%s | %zu train / %zu val tokens | "
                        "%d x %d x %d = %lld tokens/step, %d steps%s\n",
                c->n_layer, c->n_embd, c->n_head, c->vocab, c->block_size, res->params, L.spec,
                c->shared_scale ? " + shared_scale" : "", L.tr.n, L.va.n, o->accum, o->batch, L.T, L.tps, o->steps,
                o->resume ? " (resumed)" : "");
    if (!L.quiet && derf_dist_size() > 1)
        fprintf(stderr, "[derf] data-parallel over %d processes: %d windows each per micro-batch\n", derf_dist_size(), L.Bl);
    derf_fit_result fr;
    rc = derf_fit(&t, &fo, &fr, err, errlen);
    res->steps = fr.steps;
    res->tokens = fr.steps * L.tps;
    res->tokens_per_s = fr.units_per_s;
    res->final_loss = fr.final_loss;
    res->seconds = fr.seconds;
    res->diverged = fr.diverged;
    snprintf(res->diverged_msg, sizeof res->diverged_msg, "%s", fr.diverged_msg);
done:
    free(L.tok);
    free(L.tgt);
    free(L.unigram);
    derf_gpt2_free(&L.m);
    derf_shard_free(&L.tr);
    derf_shard_free(&L.va);
    return rc;
}

/* ------------------------------------------------------------------------------- loading, sampling */

static const char *st_get(void *ctx, const char *key) { return derf_safetensors_meta((const derf_safetensors *)ctx, key); }

int derf_lm_load(derf_gpt2 *m, const char *path, int max_batch, int max_T, int *data_vocab,
                 char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    char file[1200];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(file, sizeof file, "%s/model.safetensors", path);
    else snprintf(file, sizeof file, "%s", path);
    path = file;
    derf_safetensors st;
    if (derf_safetensors_read(&st, path, (size_t)1 << 36, err, errlen)) return -1;
    derf_gpt2_config cfg;
    char e[DERF_ERRLEN];
    int rc = -1;
    const char *folded = derf_safetensors_meta(&st, "folded");
    if (folded && !strcmp(folded, "1")) {   /* its LM head is untied: only the inference path reads it */
        derf_io_errf(err, errlen, "%s is a folded (inference-only) checkpoint of 'derf export --fold'; "
                     "train from the run it came from", path);
    } else if (derf_gpt2_config_from_meta(&cfg, st_get, &st, e, sizeof e)) {
        derf_io_errf(err, errlen, "%s: %s", path, e);
    } else if (!derf_gpt2_build(m, &cfg, max_batch, max_T > 0 ? max_T : cfg.block_size, err, errlen)) {
        if (derf_ckpt_load_model(&st, &m->params, path, err, errlen)) {
            derf_gpt2_free(m);
        } else {
            rc = 0;
            if (data_vocab) {
                const char *dv = derf_safetensors_meta(&st, "data_vocab");
                long x = dv ? strtol(dv, NULL, 10) : 0;
                *data_vocab = x > 0 && x <= cfg.vocab ? (int)x : cfg.vocab;
            }
        }
    }
    derf_safetensors_free(&st);
    return rc;
}

static int by_score(const void *a, const void *b) {
    const derf_lm_scored *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i - y->i;
}

int derf_lm_sample_check(const derf_lm_sample_opts *so, int n_prompt, int length, char *err, size_t errlen) {
    if (n_prompt < 1 || length < 0) { derf_io_errf(err, errlen, "sampling needs at least one prompt token"); return -1; }
    if (!(so->temperature >= 0) || !(so->top_p > 0 && so->top_p <= 1) || so->top_k < 0) {
        derf_io_errf(err, errlen, "sampling needs temperature >= 0, top-k >= 0 and top-p in (0, 1]");
        return -1;
    }
    return 0;
}

int derf_lm_pick(const float *lg, int Vl, const derf_lm_sample_opts *so, derf_rng *r, derf_lm_scored *sc) {
    int next = 0;
    if (so->temperature <= 0 || so->top_k == 1) {
        for (int v = 1; v < Vl; v++) if (lg[v] > lg[next]) next = v;
        return next;
    }
    for (int v = 0; v < Vl; v++) sc[v] = (derf_lm_scored){lg[v] / so->temperature, v};
    qsort(sc, (size_t)Vl, sizeof *sc, by_score);
    int k = so->top_k > 0 && so->top_k < Vl ? so->top_k : Vl;
    double z = 0;
    for (int i = 0; i < k; i++) z += exp((double)sc[i].v - sc[0].v);
    if (so->top_p < 1) { /* the smallest prefix whose probability reaches top_p */
        double cum = 0;
        int kk = 0;
        while (kk < k) {
            cum += exp((double)sc[kk].v - sc[0].v) / z;
            kk++;
            if (cum >= so->top_p) break;
        }
        k = kk;
        z = 0;
        for (int i = 0; i < k; i++) z += exp((double)sc[i].v - sc[0].v);
    }
    double u = derf_rng_uniform(r) * z, c = 0;
    next = sc[k - 1].i;
    for (int i = 0; i < k; i++) {
        c += exp((double)sc[i].v - sc[0].v);
        if (u < c) { next = sc[i].i; break; }
    }
    return next;
}

int derf_lm_sample(derf_gpt2 *m, const int32_t *prompt, int n_prompt, int length, const derf_lm_sample_opts *so,
                   int32_t *out, char *err, size_t errlen) {
    const int V = m->cfg.vocab, W = m->max_T;
    const int Vl = so->vocab_limit > 0 && so->vocab_limit < V ? so->vocab_limit : V;
    if (derf_lm_sample_check(so, n_prompt, length, err, errlen)) return -1;
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V) {
            derf_io_errf(err, errlen, "prompt token %d at position %d is outside the model's vocabulary of %d",
                         (int)prompt[i], i, V);
            return -1;
        }
    int32_t *ctx = malloc(sizeof(int32_t) * ((size_t)n_prompt + length));
    derf_lm_scored *sc = malloc(sizeof(derf_lm_scored) * (size_t)Vl);
    if (!ctx || !sc) { free(ctx); free(sc); derf_io_errf(err, errlen, "out of memory"); return -1; }
    memcpy(ctx, prompt, sizeof(int32_t) * (size_t)n_prompt);
    derf_rng r;
    derf_rng_seed(&r, so->seed, 3);
    int n = n_prompt;
    for (int step = 0; step < length; step++) {
        const int s0 = n > W ? n - W : 0, T = n - s0;
        derf_gpt2_forward(m, ctx + s0, NULL, 1, T);
        const float *lg = m->logits + (size_t)(T - 1) * V;
        const int next = derf_lm_pick(lg, Vl, so, &r, sc);
        ctx[n++] = next;
        out[step] = next;
    }
    free(ctx);
    free(sc);
    return 0;
}
