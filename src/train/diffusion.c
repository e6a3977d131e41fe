/* diffusion.c: DDPM for DiT (ADM's gaussian_diffusion.py / respace.py as DiT uses them): the linear
 * schedule and its posterior in double, timestep respacing, DDPM ancestral and DDIM sampling with
 * classifier-free guidance, and the training loop (eps-prediction MSE, label dropout, AdamW with a constant
 * learning rate, EMA, JSONL log, checkpoints and exact resume through the run-folder helpers of common.c). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "derf/diffusion.h"
#include "derf/dist.h"
#include "derf/fit.h"
#include "derf/io.h"
#include "derf/train.h"

/* ------------------------------------------------------------------------------- schedule */

static int alloc_schedule(derf_diffusion *d, int n, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    double **fields[] = {&d->beta, &d->ac, &d->ac_prev, &d->coef1, &d->coef2, &d->var, &d->log_var_clipped};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) *fields[i] = calloc((size_t)n, sizeof(double));
    d->t_map = calloc((size_t)n, sizeof(int));
    d->n = n;
    int bad = !d->t_map;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) bad |= !*fields[i];
    if (bad) {
        derf_diffusion_free(d);
        derf_io_errf(err, errlen, "out of memory for a diffusion schedule of %d steps", n);
        return -1;
    }
    return 0;
}

/* ac, ac_prev, the posterior from beta[0..n) */
static void finish_schedule(derf_diffusion *d) {
    double prod = 1.0;
    for (int i = 0; i < d->n; i++) {
        d->ac_prev[i] = prod;
        prod *= 1.0 - d->beta[i];
        d->ac[i] = prod;
        d->coef1[i] = d->beta[i] * sqrt(d->ac_prev[i]) / (1.0 - d->ac[i]);
        d->coef2[i] = (1.0 - d->ac_prev[i]) * sqrt(1.0 - d->beta[i]) / (1.0 - d->ac[i]);
        d->var[i] = d->beta[i] * (1.0 - d->ac_prev[i]) / (1.0 - d->ac[i]);
    }
    for (int i = 0; i < d->n; i++) d->log_var_clipped[i] = log(d->var[d->n > 1 && i == 0 ? 1 : i]);
}

int derf_diffusion_linear(derf_diffusion *d, int T, char *err, size_t errlen) {
    if (T < 2 || T > 100000) {
        memset(d, 0, sizeof *d);
        derf_io_errf(err, errlen, "diffusion steps must be in 2..100000, not %d", T);
        return -1;
    }
    if (alloc_schedule(d, T, err, errlen)) return -1;
    const double scale = 1000.0 / T, b0 = scale * 1e-4, b1 = scale * 0.02;
    for (int i = 0; i < T; i++) {
        d->beta[i] = b0 + (b1 - b0) * i / (T - 1);
        d->t_map[i] = i;
    }
    finish_schedule(d);
    return 0;
}

int derf_diffusion_respace(derf_diffusion *out, const derf_diffusion *base, int steps, char *err, size_t errlen) {
    if (steps < 1 || steps > base->n) {
        memset(out, 0, sizeof *out);
        derf_io_errf(err, errlen, "sampling steps must be in 1..%d, not %d", base->n, steps);
        return -1;
    }
    if (alloc_schedule(out, steps, err, errlen)) return -1;
    const double stride = steps > 1 ? (double)(base->n - 1) / (steps - 1) : 0.0;
    double last = 1.0, cur = 0.0;
    for (int i = 0; i < steps; i++, cur += stride) {
        int t = (int)rint(cur);             /* ADM accumulates the stride; Python's round is half to even */
        out->t_map[i] = t;
        out->beta[i] = 1.0 - base->ac[t] / last;
        last = base->ac[t];
    }
    finish_schedule(out);
    return 0;
}

void derf_diffusion_free(derf_diffusion *d) {
    free(d->beta); free(d->ac); free(d->ac_prev); free(d->coef1); free(d->coef2); free(d->var);
    free(d->log_var_clipped); free(d->t_map);
    memset(d, 0, sizeof *d);
}

void derf_diffusion_q_sample(float *xt, const float *x0, const float *eps, const derf_diffusion *d, int t, size_t n) {
    const float a = (float)sqrt(d->ac[t]), s = (float)sqrt(1.0 - d->ac[t]);
    for (size_t i = 0; i < n; i++) xt[i] = a * x0[i] + s * eps[i];
}

/* ------------------------------------------------------------------------------- sampling */

void derf_diffusion_step(float *x, const float *eps, const float *v, const derf_diffusion *d, int i,
                         const derf_sample_opts *o, derf_rng *r, size_t npix) {
    const double ac = d->ac[i], ac_prev = d->ac_prev[i];
    const double ra = sqrt(1.0 / ac), rm1 = sqrt(1.0 / ac - 1.0);
    double sigma = 0, log_var_fixed = log(i == 0 && d->n > 1 ? d->var[1] : d->beta[i]); /* ADM FIXED_LARGE */
    if (o->sampler == DERF_SAMPLER_DDIM)
        sigma = o->eta * sqrt((1 - ac_prev) / (1 - ac)) * sqrt(1 - ac / ac_prev);
    for (size_t k = 0; k < npix; k++) {
        double x0 = ra * x[k] - rm1 * eps[k];
        if (o->clip) x0 = x0 < -1 ? -1 : x0 > 1 ? 1 : x0;
        double z = i > 0 ? derf_rng_normal(r) : 0.0, nx;
        if (o->sampler == DERF_SAMPLER_DDIM) {
            double e = (ra * x[k] - x0) / rm1;                  /* eps consistent with the (clipped) x0 */
            nx = x0 * sqrt(ac_prev) + sqrt(fmax(1 - ac_prev - sigma * sigma, 0.0)) * e + sigma * z;
        } else {
            double lv = log_var_fixed;
            if (v) { /* LEARNED_RANGE: between log(posterior var, clipped) and log(beta) */
                double frac = (v[k] + 1.0) / 2.0;
                lv = frac * log(d->beta[i]) + (1 - frac) * d->log_var_clipped[i];
            }
            nx = d->coef1[i] * x0 + d->coef2[i] * x[k] + exp(0.5 * lv) * z;
        }
        x[k] = (float)nx;
    }
}

/* One sampler worker per thread: a copy of the model built for one sample (two rows with guidance: the
 * conditional one first, the null label second) and its scratch. */
typedef struct {
    derf_dit m;
    float *xin, *eps;
} dit_worker;

/* Sample i from its own noise stream (seed, i), written to x. Every call runs the same sequence of model
 * calls with the same shapes and the sample in the same rows, so the result depends on nothing else. */
static void sample_one(dit_worker *w, const derf_diffusion *d, const derf_sample_opts *o, int32_t label, int i,
                       float *x) {
    derf_dit *m = &w->m;
    const derf_dit_config *c = &m->cfg;
    const int guided = o->cfg != 1.0f, B = guided ? 2 : 1;
    const size_t npix = (size_t)c->chans * c->img * c->img, nout = (size_t)derf_dit_out_chans(c) * c->img * c->img;
    const int32_t y[2] = {label, c->classes};                               /* the null label second */
    derf_rng r;
    derf_rng_seed(&r, o->seed, (uint64_t)i);
    derf_rng_fill_normal(&r, x, npix, 0.0f, 1.0f);
    for (int s = d->n - 1; s >= 0; s--) {
        const float t[2] = {(float)d->t_map[s], (float)d->t_map[s]};
        for (int b = 0; b < B; b++) memcpy(w->xin + b * npix, x, sizeof(float) * npix);
        derf_dit_forward(m, w->xin, t, y, B);
        const float *cond = m->out, *unc = m->out + nout;
        for (size_t k = 0; k < npix; k++) w->eps[k] = guided ? unc[k] + o->cfg * (cond[k] - unc[k]) : cond[k];
        derf_diffusion_step(x, w->eps, c->learn_sigma ? cond + npix : NULL, d, s, o, &r, npix);
    }
}

int derf_dit_sample(derf_dit *m, const derf_diffusion *base, const derf_sample_opts *o, const int32_t *labels, int n,
                    float *out, int progress, char *err, size_t errlen) {
    const derf_dit_config *c = &m->cfg;
    const size_t npix = (size_t)c->chans * c->img * c->img;
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c->classes)
            return derf_io_errf(err, errlen, "sample label %d outside 0..%d", labels[i], c->classes - 1), -1;
    derf_diffusion d;
    if (derf_diffusion_respace(&d, base, o->steps, err, errlen)) return -1;
    int nw = omp_get_max_threads();
    nw = nw < n ? nw : n > 0 ? n : 1;
    dit_worker *w = calloc((size_t)nw, sizeof *w);
    int rc = w ? 0 : -1;
    if (!w) derf_io_errf(err, errlen, "out of memory for sampling");
    for (int k = 0; k < nw && !rc; k++) {
        if (derf_dit_build(&w[k].m, c, o->cfg != 1.0f ? 2 : 1, err, errlen)) { rc = -1; break; }
        memcpy(w[k].m.params.params, m->params.params, m->params.total * sizeof(float));
        w[k].xin = malloc(sizeof(float) * 2 * npix);
        w[k].eps = malloc(sizeof(float) * npix);
        if (!w[k].xin || !w[k].eps) rc = -1, derf_io_errf(err, errlen, "out of memory for sampling");
    }
    /* samples in parallel, one per thread (the model's own loops and OpenBLAS run single-threaded inside) */
    const double t0 = derf_now_s();
    double last = t0;
    int done = 0;
    if (!rc) {
        #pragma omp parallel for schedule(dynamic, 1) num_threads(nw)
        for (int i = 0; i < n; i++) {
            sample_one(&w[omp_get_thread_num()], &d, o, labels[i], i, out + (size_t)i * npix);
            if (progress) {
                #pragma omp critical(dit_sample_progress)
                {
                    const double now = derf_now_s();
                    if (++done == n || now - last >= 2.0) {
                        double ips = done / (now - t0 + 1e-9);
                        char eta[32];
                        derf_fmt_eta(eta, sizeof eta, (n - done) / (ips > 0 ? ips : 1));
                        fprintf(stderr, "[derf] sampled %d/%d | %.1f img/s | eta %s\n", done, n, ips, eta);
                        last = now;
                    }
                }
            }
        }
    }
    for (int k = 0; w && k < nw; k++) {
        if (w[k].m.acts) derf_dit_free(&w[k].m);
        free(w[k].xin); free(w[k].eps);
    }
    free(w);
    derf_diffusion_free(&d);
    return rc;
}

/* ------------------------------------------------------------------------------- training */

void derf_dit_train_opts_default(derf_dit_train_opts *o) {
    memset(o, 0, sizeof *o);
    derf_dit_preset(&o->model, "mini", NULL, 0);
    o->data = "fashion-mnist";
    o->steps = 2000;
    o->batch = 64;
    o->T = 1000;
    o->lr = 1e-4f;             /* DiT's default; the paper sweeps {1e-4, 2e-4, 4e-4} */
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->weight_decay = 0.f;
    o->ema = 0.999f;           /* DiT: 0.9999 over 400k steps; short runs need a shorter horizon */
    o->class_dropout = 0.1f;
    o->eval_train_n = 2000;
    o->log_every = 50;
    o->ckpt_secs = -1;
}

void derf_dit_batch(float *out, const derf_dataset *ds, const int *idx, int B) {
    const size_t np = (size_t)ds->rows * ds->cols;
    for (int b = 0; b < B; b++) {
        const uint8_t *p = ds->images + (size_t)idx[b] * np;
        for (size_t k = 0; k < np; k++) out[b * np + k] = p[k] / 127.5f - 1.0f;
    }
}

/* eps-MSE of the model on x0 at timesteps t with noise eps; writes dout = d(loss)/d(out) when non-NULL */
static double diffusion_loss(derf_dit *m, const derf_diffusion *d, const float *x0, const float *eps, const int *t,
                             const int32_t *y, float *xt, float *tf, float *dout, float gscale, int B) {
    const derf_dit_config *c = &m->cfg;
    const size_t npix = (size_t)c->chans * c->img * c->img, nout = (size_t)derf_dit_out_chans(c) * c->img * c->img;
    for (int b = 0; b < B; b++) {
        derf_diffusion_q_sample(xt + b * npix, x0 + b * npix, eps + b * npix, d, t[b], npix);
        tf[b] = (float)t[b];
    }
    derf_dit_forward(m, xt, tf, y, B);
    double sum = 0;
    const double scale = 2.0 * gscale / ((double)B * npix);
    for (int b = 0; b < B; b++)
        for (size_t k = 0; k < nout; k++) {
            const size_t o = b * nout + k;
            if (k >= npix) { if (dout) dout[o] = 0.f; continue; }  /* the variance channels get no MSE */
            double e = (double)m->out[o] - eps[b * npix + k];
            sum += e * e;
            if (dout) dout[o] = (float)(scale * e);
        }
    return sum / ((double)B * npix);
}

double derf_dit_eval_loss(derf_dit *m, const derf_dataset *ds, int n, int T, uint64_t seed) {
    const derf_dit_config *c = &m->cfg;
    const int B = m->max_batch;
    const size_t npix = (size_t)c->chans * c->img * c->img;
    if (n > ds->n) n = ds->n;
    derf_diffusion d;
    char err[DERF_ERRLEN];
    if (n <= 0 || derf_diffusion_linear(&d, T, err, sizeof err)) return NAN;
    float *x0 = malloc(sizeof(float) * npix * B), *eps = malloc(sizeof(float) * npix * B);
    float *xt = malloc(sizeof(float) * npix * B), *tf = malloc(sizeof(float) * B);
    int *idx = malloc(sizeof(int) * B), *t = malloc(sizeof(int) * B);
    int32_t *y = malloc(sizeof(int32_t) * B);
    derf_rng r;
    derf_rng_seed(&r, seed, 0x65766c /* "evl" */);
    double total = 0;
    for (int s = 0; s < n; s += B) {
        const int nb = n - s < B ? n - s : B;
        for (int b = 0; b < nb; b++) {
            idx[b] = s + b;
            y[b] = ds->labels[s + b];
            t[b] = (int)derf_rng_below(&r, (uint32_t)T);
        }
        derf_rng_fill_normal(&r, eps, npix * nb, 0.f, 1.f);
        derf_dit_batch(x0, ds, idx, nb);
        total += diffusion_loss(m, &d, x0, eps, t, y, xt, tf, NULL, 1.f, nb) * nb;
    }
    free(x0); free(eps); free(xt); free(tf); free(idx); free(t); free(y);
    derf_diffusion_free(&d);
    return total / n;
}

/* ------------------------------------------------------------------------------- the task for derf_fit */

typedef struct {
    derf_dit m;
    const derf_dit_train_opts *o;
    derf_dit_train_result *res;
    derf_dataset tr;
    derf_diffusion d;
    int off, Bl, quiet;
    float *x0, *eps, *xt, *tf, *dout;
    int *idx, *t;
    int32_t *y;
} dit_task;

/* the draws of the whole global batch (the same as one process), then this process's share */
static float dit_micro(derf_task *t, int step, derf_rng *rng, float scale, double *units) {
    dit_task *D = t->ctx;
    const derf_dit_train_opts *o = D->o;
    const int B = o->batch;
    const size_t npix = (size_t)o->model.img * o->model.img, nout = npix * derf_dit_out_chans(&o->model);
    for (int b = 0; b < B; b++) {
        D->idx[b] = (int)derf_rng_below(rng, (uint32_t)D->tr.n);
        D->t[b] = (int)derf_rng_below(rng, (uint32_t)o->T);
        D->y[b] = derf_rng_uniform(rng) < o->class_dropout ? o->model.classes : D->tr.labels[D->idx[b]];
    }
    derf_rng_fill_normal(rng, D->eps, npix * B, 0.f, 1.f);
    derf_dit_batch(D->x0, &D->tr, D->idx, B);
    const int k = D->off;
    float loss = (float)diffusion_loss(&D->m, &D->d, D->x0 + k * npix, D->eps + k * npix, D->t + k, D->y + k, D->xt, D->tf,
                                       D->dout, scale, D->Bl);
    loss = derf_dist_mean_float(loss); /* equal shares: the mean over the global batch */
    if (!derf_loss_diverged(loss)) derf_dit_backward(&D->m, D->dout, D->Bl);
    (void)nout;
    *units = B;
    return loss;
}

/* the evaluation-mode training loss, raw and EMA */
static double dit_eval(derf_task *t, int step, int final, derf_lf *f, int *nf) {
    dit_task *D = t->ctx;
    const derf_dit_train_opts *o = D->o;
    derf_dit_train_result *res = D->res;
    if (o->eval_train_n > 0) {
        res->eval_loss = (float)derf_dit_eval_loss(&D->m, &D->tr, o->eval_train_n, o->T, 1234);
        if (t->ema) {
            float *raw = D->m.params.params;
            D->m.params.params = t->ema;
            res->eval_loss_ema = (float)derf_dit_eval_loss(&D->m, &D->tr, o->eval_train_n, o->T, 1234);
            D->m.params.params = raw;
        }
        if (!D->quiet) fprintf(stderr, "[derf] eval-mode training loss (%d images): %.5f, EMA %.5f\n", o->eval_train_n,
                               (double)res->eval_loss, (double)res->eval_loss_ema);
    }
    f[0] = DERF_LF_N("eval_loss", res->eval_loss);
    f[1] = DERF_LF_N("eval_loss_ema", res->eval_loss_ema);
    *nf = 2;
    return res->eval_loss;
}

static int dit_meta(derf_task *t, char keys[][32], char vals[][128], int max) {
    return derf_dit_config_to_meta(&((dit_task *)t->ctx)->m.cfg, keys, vals, max);
}

static int dit_setup(dit_task *D, const derf_dit_train_opts *o, char *err, size_t errlen) {
    if (derf_dataset_open(&D->tr, o->data, "train", err, errlen)) return -1;
    if (o->train_limit > 0 && o->train_limit < D->tr.n) D->tr.n = o->train_limit;
    if (D->tr.rows != o->model.img || D->tr.cols != o->model.img || o->model.chans != 1) {
        derf_io_errf(err, errlen, "the data has %dx%d grey images but the DiT expects %dx%dx%d", D->tr.rows, D->tr.cols,
                     o->model.img, o->model.img, o->model.chans);
        return -1;
    }
    /* the model takes the whole global batch (the evaluation's batches do not depend on the process count) */
    if (derf_dist_shard(o->batch, &D->off, &D->Bl, err, errlen) || derf_diffusion_linear(&D->d, o->T, err, errlen) ||
        derf_dit_build(&D->m, &o->model, o->batch, err, errlen))
        return -1;
    derf_dit_init(&D->m, o->seed);
    const int B = o->batch;
    const size_t npix = (size_t)o->model.img * o->model.img, nout = npix * derf_dit_out_chans(&o->model);
    D->x0 = malloc(sizeof(float) * npix * B);
    D->eps = malloc(sizeof(float) * npix * B);
    D->xt = malloc(sizeof(float) * npix * B);
    D->tf = malloc(sizeof(float) * B);
    D->dout = malloc(sizeof(float) * nout * B);
    D->idx = malloc(sizeof(int) * B);
    D->t = malloc(sizeof(int) * B);
    D->y = malloc(sizeof(int32_t) * B);
    if (!D->x0 || !D->eps || !D->xt || !D->tf || !D->dout || !D->idx || !D->t || !D->y) {
        derf_io_errf(err, errlen, "out of memory for the batches");
        return -1;
    }
    return 0;
}

int derf_dit_train(const derf_dit_train_opts *o, derf_dit_train_result *res, derf_dit *m_out, float **ema_out,
                   char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->eval_loss = res->eval_loss_ema = -1.f;
    if (ema_out) *ema_out = NULL;
    if (o->batch < 1 || o->steps < 1) return derf_io_errf(err, errlen, "batch and steps must be at least 1"), -1;
    if (!(o->class_dropout >= 0 && o->class_dropout < 1)) return derf_io_errf(err, errlen, "class dropout must be in [0, 1)"), -1;
    if (derf_dit_check(&o->model, err, errlen)) return -1;
    dit_task D = {.o = o, .res = res, .quiet = o->quiet || derf_dist_rank() != 0};
    derf_task t = {.ctx = &D, .params = &D.m.params, .format = "derf-dit-1", .unit = "img", .rate_key = "images_per_s",
                   .eval_type = "eval", .micro = dit_micro, .meta = dit_meta, .eval = dit_eval};
    int rc = -1;
    if (dit_setup(&D, o, err, errlen)) goto done;
    derf_fit_opts fo;
    derf_fit_opts_default(&fo);
    fo.steps = o->steps;
    fo.sched = (derf_sched){DERF_SCHED_CONSTANT, o->lr, o->lr, 0, o->steps};
    fo.adamw = (derf_adamw_cfg){o->lr, o->beta1, o->beta2, 1e-8f, o->weight_decay};
    fo.ema = o->ema;
    fo.stream = 1;
    fo.hint = "lower --lr";
    DERF_FIT_RUN_OPTS(fo, o);
    char spec[256];
    derf_norm_format(&o->model.norm, spec, sizeof spec);
    if (!D.quiet)
        fprintf(stderr, "[derf] dit %d params (dim %d, depth %d, patch %d), norm %s, zero-init blocks %d final %d | "
                        "%d train images, batch %d, %d steps, lr %g%s\n",
                (int)D.m.params.total, o->model.dim, o->model.depth, o->model.patch, spec, o->model.zero_blocks,
                o->model.zero_final, D.tr.n, o->batch, o->steps, (double)o->lr, o->resume ? " (resumed)" : "");
    derf_fit_result fr;
    rc = derf_fit(&t, &fo, &fr, err, errlen);
    res->steps = fr.steps;
    res->final_loss = fr.final_loss;
    res->seconds = fr.seconds;
    res->images_per_s = fr.units_per_s;
    res->diverged = fr.diverged;
    snprintf(res->diverged_msg, sizeof res->diverged_msg, "%s", fr.diverged_msg);
done:
    free(D.x0); free(D.eps); free(D.xt); free(D.tf); free(D.dout); free(D.idx); free(D.t); free(D.y);
    derf_diffusion_free(&D.d);
    derf_dataset_free(&D.tr);
    if (rc == 0 && m_out) {
        *m_out = D.m;
        if (ema_out) *ema_out = t.ema;
        else free(t.ema);
    } else {
        derf_dit_free(&D.m);
        free(t.ema);
    }
    return rc;
}

static const char *st_meta(void *ctx, const char *key) { return derf_safetensors_meta(ctx, key); }

int derf_dit_load(derf_dit *m, const char *path, int max_batch, char *err, size_t errlen) {
    derf_safetensors st;
    derf_dit_config cfg;
    memset(m, 0, sizeof *m);
    if (derf_safetensors_read(&st, path, (size_t)1 << 34, err, errlen)) return -1;
    int rc = derf_dit_config_from_meta(&cfg, st_meta, &st, err, errlen);
    if (!rc) rc = derf_dit_build(m, &cfg, max_batch, err, errlen);
    if (!rc && (rc = derf_ckpt_load_model(&st, &m->params, path, err, errlen))) derf_dit_free(m);
    derf_safetensors_free(&st);
    return rc;
}
