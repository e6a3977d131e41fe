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
#include <time.h>
#include "derf/dist.h"
#include "derf/io.h"
#include "derf/lm.h"
#include "derf/rng.h"
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
    o->lr = 6e-4f;                 /* nanoGPT's GPT-2 peak and floor (recipe.md section 6) */
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

/* ------------------------------------------------------------------------------- checkpoints */

typedef struct {
    derf_gpt2 *m;
    const derf_lm_opts *o;
    int step, data_vocab;
    derf_rng rng;
} lm_state;

static int all_finite(const float *x, size_t n) {
    int ok = 1;
#pragma omp parallel for reduction(&& : ok) schedule(static)
    for (size_t i = 0; i < n; i++) ok = ok && isfinite(x[i]);
    return ok;
}

static int save_all(const lm_state *rs, char *err, size_t errlen) {
    const derf_lm_opts *o = rs->o;
    if (!o->out || derf_dist_rank() != 0) return 0; /* rank 0 writes for everyone */
    char keys[48][32], vals[48][128];
    derf_st_meta meta[96];
    int nk = derf_gpt2_config_to_meta(&rs->m->cfg, keys, vals, 47), nm = 0;
    snprintf(keys[nk], 32, "data_vocab");
    snprintf(vals[nk++], 128, "%d", rs->data_vocab);
    for (int i = 0; i < nk; i++) meta[nm++] = (derf_st_meta){keys[i], vals[i]};
    for (int i = 0; i < o->nmeta && nm < 96; i++) meta[nm++] = o->meta[i];
    derf_run_state s = {&rs->m->params, NULL, rs->step, rs->rng, "derf-lm-1", meta, nm};
    return derf_run_save(o->out, &s, err, errlen);
}

/* ------------------------------------------------------------------------------- training */

/* a loss that means the run has diverged: NaN, inf, or beyond any real cross-entropy (1e4 nats) */
static int bad_loss(float l) { return !isfinite(l) || l > 1e4f; }

static void set_diverged(derf_lm_result *res, FILE *log, const derf_lm_opts *o, int step, const char *what,
                         double value, float lr) {
    res->diverged = 1;
    snprintf(res->diverged_msg, sizeof res->diverged_msg,
             "training diverged at step %d (%s %g, lr %.3g): stopped; the last good checkpoint is kept; "
             "lower --lr or lengthen --warmup", step, what, value, (double)lr);
    if (!o->quiet && derf_dist_rank() == 0) fprintf(stderr, "[derf] %s\n", res->diverged_msg);
    if (log) {
        fprintf(log, "{\"type\":\"diverged\",\"step\":%d,\"what\":\"%s\",\"lr\":%.6g}\n", step, what, (double)lr);
        fflush(log);
    }
}

/* What a validation needs; eval_time and nevals feed the ETA. */
typedef struct {
    derf_gpt2 *m;
    const derf_shard *va;
    int T;
    const derf_lm_opts *o;
    FILE *log;
    derf_lm_result *res;
    lm_state *rs;
    double t0, eval_time;
    int nevals;
    long long tps;
} lm_eval;

/* Validation loss (curve, log, progress line), then a checkpoint if do_save. Non-finite validation loss
 * or weights mark the run diverged and write nothing. Returns -1 only when a checkpoint cannot be written. */
static int validate(lm_eval *e, float lr, int do_save, char *err, size_t errlen) {
    derf_lm_result *res = e->res;
    const int step = e->rs->step;
    /* the weight check and the checkpoint read the host slabs: on a GPU, fetch them first, and send
     * rank 0's back when the processes had drifted apart */
    derf_gpt2_sync_host(e->m);
    if (derf_run_resync(&e->m->params, NULL, step, e->log, e->o->quiet || derf_dist_rank() != 0))
        derf_gpt2_sync_device(e->m);
    double ts = derf_now_s();
    float vl = derf_lm_eval_loss(e->m, e->va, e->T, e->o->eval_windows);
    e->eval_time += derf_now_s() - ts;
    e->nevals++;
    if (bad_loss(vl) || !all_finite(e->m->params.params, e->m->params.total)) {
        set_diverged(res, e->log, e->o, step, !bad_loss(vl) ? "non-finite weights, validation loss" : "validation loss",
                     vl, lr);
        return 0;
    }
    res->val_loss = vl;
    if (res->ncurve < DERF_LM_MAX_CURVE) {
        res->curve_step[res->ncurve] = step;
        res->curve_val[res->ncurve++] = vl;
    }
    if (!e->o->quiet && derf_dist_rank() == 0) fprintf(stderr, "[derf] step %d: val loss %.4f\n", step, (double)vl);
    if (e->log) {
        fprintf(e->log, "{\"type\":\"val\",\"step\":%d,\"tokens\":%lld,\"val_loss\":%.6g,\"elapsed_s\":%.2f}\n", step,
                step * e->tps, (double)vl, derf_now_s() - e->t0);
        fflush(e->log);
    }
    return do_save ? save_all(e->rs, err, errlen) : 0;
}

int derf_lm_train(const derf_lm_opts *o, derf_lm_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->val_loss = NAN;
    res->final_loss = NAN;
    res->train_loss_eval = -1.f;
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
    if (cuda && derf_gpt2_cuda_attach(NULL, 1, err, errlen)) return -1;
    derf_gpt2_config cfg = o->model;
    const int T = o->seq > 0 ? o->seq : cfg.block_size;
    if (T > cfg.block_size) {
        derf_io_errf(err, errlen, "--seq %d is longer than the model's context (block_size %d)", T, cfg.block_size);
        return -1;
    }
    char tpath[1100], vpath[1100];
    const char *dir = o->data ? o->data : "runs/data/text";
    if (o->train_path) snprintf(tpath, sizeof tpath, "%s", o->train_path);
    else snprintf(tpath, sizeof tpath, "%s/train.bin", dir);
    if (o->val_path) snprintf(vpath, sizeof vpath, "%s", o->val_path);
    else snprintf(vpath, sizeof vpath, "%s/val.bin", dir);
    derf_shard tr, va;
    if (load_shard(tpath, &tr, T, "training", err, errlen)) return -1;
    if (load_shard(vpath, &va, T, "validation", err, errlen)) { derf_shard_free(&tr); return -1; }
    const int data_vocab = tr.vocab > va.vocab ? tr.vocab : va.vocab;
    if (cfg.vocab <= 0) cfg.vocab = (data_vocab + 63) / 64 * 64;
    if (check_vocab(&tr, tpath, cfg.vocab, err, errlen) || check_vocab(&va, vpath, cfg.vocab, err, errlen)) {
        derf_shard_free(&tr); derf_shard_free(&va);
        return -1;
    }
    int off, Bl; /* this process's share of every global micro-batch: windows [off, off + Bl) */
    derf_gpt2 m;
    if (derf_dist_shard(o->batch, &off, &Bl, err, errlen) || derf_gpt2_build(&m, &cfg, Bl, T, err, errlen)) {
        derf_shard_free(&tr); derf_shard_free(&va);
        return -1;
    }
    derf_gpt2_init(&m, o->seed);
    derf_params *p = &m.params;
    lm_state rs = {&m, o, 0, data_vocab, {0, 0}};
    derf_rng_seed(&rs.rng, o->seed, 2);
    res->params = (long long)p->total;
    res->vocab = cfg.vocab;
    res->data_vocab = data_vocab;
    res->total_steps = o->steps;

    int rc = -1;
    FILE *log = NULL;
    const int B = o->batch, quiet = o->quiet || derf_dist_rank() != 0;
    const long long tps = (long long)o->accum * B * T; /* tokens per optimizer step */
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)Bl * T), *tgt = malloc(sizeof(int32_t) * (size_t)Bl * T);
    if (o->resume && derf_run_load(o->resume, "derf-lm-1", &m.params, NULL, &rs.step, &rs.rng, err, errlen)) goto done;
    derf_run_bcast(p, NULL, &rs.step, &rs.rng); /* every process starts from rank 0's state */
    if (cuda && derf_gpt2_cuda_attach(&m, 1, err, errlen)) goto done; /* uploads the (resumed) weights and moments */
    if (o->out && derf_dist_rank() == 0) {
        mkdir(o->out, 0777);
        char path[1200];
        snprintf(path, sizeof path, "%s/log.jsonl", o->out);
        log = fopen(path, o->resume ? "a" : "w");
        if (!log) { derf_io_errf(err, errlen, "cannot write %s: does the directory exist and is it writable?", path); goto done; }
    }
    const int stop = o->max_steps > 0 && o->max_steps < o->steps ? o->max_steps : o->steps;
    const int start = rs.step;
    char spec[256];
    derf_norm_format(&cfg.norm, spec, sizeof spec);
    if (!quiet)
        fprintf(stderr, "[derf] gpt2 L%d C%d H%d V%d ctx %d, %lld params, norm %s%s | %zu train / %zu val tokens | "
                        "%d x %d x %d = %lld tokens/step, %d steps%s\n",
                cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab, cfg.block_size, res->params, spec,
                m.cfg.shared_scale ? " + shared_scale" : "", tr.n, va.n, o->accum, B, T, tps, o->steps,
                start ? " (resumed)" : "");
    if (!quiet && derf_dist_size() > 1)
        fprintf(stderr, "[derf] data-parallel over %d processes: %d windows each per micro-batch\n", derf_dist_size(), Bl);
    if (log)
        fprintf(log, "{\"type\":\"start\",\"step\":%d,\"params\":%lld,\"vocab\":%d,\"norm\":\"%s\",\"tokens_per_step\":%lld,"
                     "\"steps\":%d,\"resumed\":%s,\"processes\":%d}\n",
                start, res->params, cfg.vocab, spec, tps, o->steps, start ? "true" : "false", derf_dist_size());
    derf_adamw_cfg acfg = {o->lr, o->beta1, o->beta2, 1e-8f, o->weight_decay};
    double t0 = derf_now_s(), train_time = 0, int_time = 0, loss_sum = 0;
    int loss_n = 0, int_steps = 0;

    lm_eval ev = {&m, &va, T, o, log, res, &rs, t0, 0, 0, tps};
    if (start == 0 && o->eval_every > 0 && validate(&ev, acfg.lr, 0, err, errlen)) goto done;
    while (!res->diverged && rs.step < stop) {
        double ts = derf_now_s();
        float lr = derf_lr_at(rs.step, o->warmup, o->steps, o->lr, o->min_lr);
        if (derf_dist_fail_hook(rs.step + 1, err, errlen)) goto done;
        derf_gpt2_zero_grad(&m);
        double lsum = 0;
        for (int a = 0; a < o->accum; a++) {
            sample_batch(&tr, B, T, &rs.rng, off, Bl, tok, tgt);
            float l = derf_dist_mean_float(derf_gpt2_forward(&m, tok, tgt, Bl, T)); /* over the global batch */
            if (bad_loss(l)) { set_diverged(res, log, o, rs.step, "loss", l, lr); break; }
            derf_gpt2_backward(&m, 1.0f / (float)o->accum);
            lsum += l;
        }
        if (res->diverged) break;
        derf_gpt2_mean_grads(&m); /* the one all-reduce of the step (MPI, or NCCL on GPUs) */
        float loss = (float)(lsum / o->accum);
        float gn = derf_gpt2_clip_grad_norm(&m, o->clip);
        if (!isfinite(gn)) { set_diverged(res, log, o, rs.step, "gradient norm", gn, lr); break; }
        acfg.lr = lr;
        derf_gpt2_adamw_step(&m, &acfg, rs.step + 1);
        derf_dist_perturb_hook(rs.step + 1, p->params);
        rs.step++;
        double dt = derf_now_s() - ts;
        train_time += dt;
        int_time += dt;
        int_steps++;
        loss_sum += loss;
        loss_n++;
        if (o->log_every > 0 && (rs.step % o->log_every == 0 || rs.step == stop)) {
            double tok_s = int_steps * (double)tps / (int_time + 1e-9);
            int evals_left = o->eval_every > 0 ? (stop - 1) / o->eval_every - rs.step / o->eval_every : 0;
            double per_eval = ev.nevals ? ev.eval_time / ev.nevals : 0;
            char eta[32];
            derf_fmt_eta(eta, sizeof eta, (stop - rs.step) * (double)tps / (tok_s > 0 ? tok_s : 1) +
                                         (evals_left + 1) * per_eval);
            if (!quiet)
                fprintf(stderr, "[derf] step %d/%d loss %.4f lr %.2e gn %.3f | %.0f tok/s | eta %s\n", rs.step, o->steps,
                        (double)loss, (double)lr, (double)gn, tok_s, eta);
            if (log)
                fprintf(log, "{\"type\":\"train\",\"step\":%d,\"tokens\":%lld,\"loss\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,"
                             "\"tokens_per_s\":%.1f,\"elapsed_s\":%.2f}\n",
                        rs.step, rs.step * tps, (double)loss, (double)lr, (double)gn, tok_s, derf_now_s() - t0);
            res->final_loss = (float)(loss_sum / loss_n);
            loss_sum = 0; loss_n = 0; int_time = 0; int_steps = 0;
        }
        if (o->eval_every > 0 && rs.step % o->eval_every == 0 && rs.step < stop) {
            if (validate(&ev, lr, 1, err, errlen)) goto done;
        }
    }
    if (loss_n) res->final_loss = (float)(loss_sum / loss_n);
    res->steps = rs.step;
    res->tokens = rs.step * tps;
    res->tokens_per_s = train_time > 0 ? (rs.step - start) * (double)tps / train_time : 0;
    if (!res->diverged) {
        if (validate(&ev, acfg.lr, 0, err, errlen)) goto done;
        if (!res->diverged) {
            if (o->eval_train_loss) res->train_loss_eval = derf_lm_eval_loss(&m, &tr, T, o->eval_windows);
            res->seconds = derf_now_s() - t0;
            if (log)
                fprintf(log, "{\"type\":\"final\",\"step\":%d,\"tokens\":%lld,\"val_loss\":%.6g,\"train_loss_eval\":%.6g,"
                             "\"tokens_per_s\":%.1f,\"seconds\":%.1f}\n",
                        rs.step, res->tokens, (double)res->val_loss, (double)res->train_loss_eval, res->tokens_per_s,
                        res->seconds);
            if (save_all(&rs, err, errlen)) goto done;
        }
    }
    res->seconds = derf_now_s() - t0;
    rc = 0;
done:
    if (log) fclose(log);
    free(tok);
    free(tgt);
    derf_gpt2_free(&m);
    derf_shard_free(&tr);
    derf_shard_free(&va);
    return rc;
}

/* ------------------------------------------------------------------------------- loading, sampling */

static const char *st_get(void *ctx, const char *key) { return derf_safetensors_meta((const derf_safetensors *)ctx, key); }

int derf_lm_load(derf_gpt2 *m, const char *path, int max_batch, int max_T, int *data_vocab,
                 char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
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
        if (derf_ckpt_load_slab(&st, &m->params, "", m->params.params, path, err, errlen)) {
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
