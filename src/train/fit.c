/* fit.c: derf_fit, the one training loop every model goes through (derf/fit.h): run folder, periodic atomic
 * checkpoints, exact resume, the divergence rule, accumulation, clipping, schedule, AdamW, EMA, the MPI
 * all-reduce and drift check, progress lines and the run log. */
#include "derf/fit.h"

#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/dist.h"
#include "derf/io.h"
#include "derf/train.h"
#include <unistd.h>

void derf_fit_opts_default(derf_fit_opts *o) {
    memset(o, 0, sizeof *o);
    o->accum = 1;
    o->adamw = (derf_adamw_cfg){1e-3f, 0.9f, 0.999f, 1e-8f, 0.f};
    o->ckpt_secs = DERF_FIT_CKPT_SECS;
    o->log_every = 10;
    o->what = "derf";
}

/* the loop's running state */
typedef struct {
    derf_task *t;
    const derf_fit_opts *o;
    derf_fit_result *res;
    derf_runlog log;
    derf_rng rng;
    int step, stop, quiet, nevals;
    int diverge_at;            /* test hook DERF_TEST_DIVERGE_AT=K: the loss after K steps is NaN (-1: off) */
    double t0, eval_time, last_save;
    float lr;
    derf_diag *dg;             /* diagnostics (--diag-every) */
} fit_run;

static int save(fit_run *r, char *err, size_t errlen) {
    const derf_fit_opts *o = r->o;
    r->last_save = derf_now_s();
    if (!o->out || derf_dist_rank() != 0) return 0; /* rank 0 writes for everyone */
    char keys[64][32], vals[64][128];
    derf_st_meta meta[96];
    int nk = r->t->meta(r->t, keys, vals, 64), nm = 0;
    for (int i = 0; i < nk; i++) meta[nm++] = (derf_st_meta){keys[i], vals[i]};
    for (int i = 0; i < o->nmeta && nm < 96; i++) meta[nm++] = o->meta[i];
    derf_run_state s = {r->t->params, r->t->ema, r->step, r->rng, r->t->format, meta, nm};
    return derf_run_save(o->out, &s, err, errlen);
}

/* --resume: the state of o->resume (weights, moments, EMA, step, RNG), made by a run of this same model */
static int load(fit_run *r, char *err, size_t errlen) {
    char keys[64][32], vals[64][128];
    derf_st_meta want[64];
    int nk = r->t->meta(r->t, keys, vals, 64);
    for (int i = 0; i < nk; i++) want[i] = (derf_st_meta){keys[i], vals[i]};
    if (derf_run_load(r->o->resume, r->t->format, want, nk, r->t->params, r->t->ema, &r->step, &r->rng, err, errlen))
        return -1;
    if (r->step > r->o->steps) {
        derf_io_errf(err, errlen, "%s is at step %d, past --steps %d", r->o->resume, r->step, r->o->steps);
        return -1;
    }
    return 0;
}

static void diverge(fit_run *r, int step, const char *what, double value) {
    derf_fit_result *res = r->res;
    res->diverged = 1;
    snprintf(res->diverged_msg, sizeof res->diverged_msg,
             "training diverged at step %d (%s %g, lr %.3g): stopped; the last good checkpoint is kept; %s", step, what,
             value, (double)r->lr, r->o->hint ? r->o->hint : "lower --lr or lengthen --warmup");
    if (!r->quiet) fprintf(stderr, "[derf] %s\n", res->diverged_msg);
    derf_lf f[] = {DERF_LF_I("step", step), DERF_LF_S("what", what), DERF_LF_N("loss", value), DERF_LF_N("lr", r->lr)};
    derf_runlog_write(&r->log, "diverged", f, 4);
}

/* host weights that every process agrees on (drift: everyone continues from rank 0's) and that are finite */
static int check_weights(fit_run *r) {
    derf_task *t = r->t;
    if (t->sync_host) t->sync_host(t);
    if (derf_run_resync(t->params, t->ema, r->step, &r->log, r->quiet) && t->sync_device) t->sync_device(t);
    if (derf_all_finite(t->params->params, t->params->total)) return 0;
    diverge(r, r->step, "non-finite weights, loss", NAN);
    return -1;
}

/* an evaluation (final 0: periodic, record t->eval_type; 1: the record "final") and the divergence rule on its loss */
static int evaluate(fit_run *r, int final) {
    derf_task *t = r->t;
    if (check_weights(r)) return -1;
    derf_lf f[DERF_FIT_MAX_FIELDS + 4];
    int nf = 0;
    f[nf++] = DERF_LF_I("step", r->step);
    double ts = derf_now_s();
    int n = 0;
    double loss = t->eval ? t->eval(t, r->step, final, f + nf, &n) : 0;
    nf += n;
    r->eval_time += derf_now_s() - ts;
    r->nevals++;
    if (final) {
        const derf_fit_result *res = r->res;
        f[nf++] = DERF_LF_R(t->rate_key, res->train_seconds > 0 ? res->units / res->train_seconds : 0);
        f[nf++] = DERF_LF_R("seconds", derf_now_s() - r->t0);
        f[nf++] = DERF_LF_I("processes", derf_dist_size());
    }
    if (derf_loss_diverged(loss)) {
        diverge(r, r->step, final ? "final evaluation loss" : "evaluation loss", loss);
        return -1;
    }
    derf_runlog_write(&r->log, final ? "final" : t->eval_type, f, nf);
    return 0;
}

static void progress(fit_run *r, float loss, float gn, double units, double secs, int steps) {
    const derf_fit_opts *o = r->o;
    derf_task *t = r->t;
    double rate = units / (secs + 1e-9), per_step = secs / (steps > 0 ? steps : 1);
    int evals_left = o->eval_every > 0 ? (r->stop - 1) / o->eval_every - r->step / o->eval_every : 0;
    double per_eval = r->nevals ? r->eval_time / r->nevals : 0;
    char eta[32];
    derf_fmt_eta(eta, sizeof eta, (r->stop - r->step) * per_step + (evals_left + 1) * per_eval);
    if (!r->quiet)
        fprintf(stderr, "[derf] step %d/%d loss %.4f lr %.2e gn %.3f | %.0f %s/s | eta %s\n", r->step, o->steps,
                (double)loss, (double)r->lr, (double)gn, rate, t->unit, eta);
    derf_lf f[DERF_FIT_MAX_FIELDS + 8];
    int nf = 0;
    f[nf++] = DERF_LF_I("step", r->step);
    if (t->train_fields) nf += t->train_fields(t, r->step, f + nf, DERF_FIT_MAX_FIELDS);
    f[nf++] = DERF_LF_N("loss", loss);
    f[nf++] = DERF_LF_N("lr", r->lr);
    f[nf++] = DERF_LF_N("grad_norm", gn);
    f[nf++] = DERF_LF_R(t->rate_key, rate);
    f[nf++] = DERF_LF_T("elapsed_s", derf_now_s() - r->t0);
    derf_runlog_write(&r->log, "train", f, nf);
}

/* One optimizer step: accum micro-batches, the all-reduce, clipping, AdamW, EMA. Returns the mean loss; a
 * diverged loss or gradient norm stops before the update (res->diverged). */
static float one_step(fit_run *r, float *gn, double *units) {
    derf_task *t = r->t;
    const derf_fit_opts *o = r->o;
    derf_params *p = t->params;
    const int accum = o->accum > 0 ? o->accum : 1;
    double lsum = 0;
    if (t->zero_grad) t->zero_grad(t);
    else derf_params_zero_grad(p);
    const int diag = derf_diag_due(r->dg, r->step); /* the weights after r->step updates, on this batch */
    for (int a = 0; a < accum; a++) {
        double u = 0;
        if (diag && a == 0) derf_diag_begin(r->dg);
        float l = t->micro(t, r->step, &r->rng, 1.0f / (float)accum, &u);
        if (diag && a == 0) {
            derf_diag_end(r->dg);
            if (t->diag) t->diag(t, r->dg, r->step);
            if (derf_dist_rank() == 0) derf_diag_report(r->dg, r->step, r->log.f, r->quiet ? NULL : stderr, 0);
        }
        if (r->step == r->diverge_at) l = NAN;
        if (derf_loss_diverged(l)) { diverge(r, r->step, "loss", l); return l; }
        lsum += l;
        *units += u;
    }
    if (t->mean_grads) t->mean_grads(t); /* the one all-reduce of the step */
    else derf_dist_mean_floats(p->grads, p->total);
    *gn = t->clip ? t->clip(t, o->clip) : derf_clip_grad_norm(p, o->clip);
    if (!isfinite(*gn)) { diverge(r, r->step, "gradient norm", *gn); return NAN; }
    derf_adamw_cfg ac = o->adamw;
    ac.lr = r->lr;
    if (t->adamw) t->adamw(t, &ac, r->step + 1);
    else derf_adamw_step(p, &ac, r->step + 1);
    derf_dist_perturb_hook(r->step + 1, p->params);
    if (t->ema && t->ema_update) t->ema_update(t, o->ema);
    else if (t->ema) derf_ema_update(t->ema, p->params, p->total, o->ema);
    return (float)(lsum / accum);
}

/* A killed run leaves the temporary files of the checkpoint it was writing (NAME.tmp.PID, never under a final
 * name): removed when a run starts in its folder (resumed, or started again before its first checkpoint). */
static void remove_stale_temps(const char *dir) {
    static const char *const names[] = {"model.safetensors", "model_ema.safetensors", "state.safetensors", "log.jsonl"};
    for (int i = 0; i < 4; i++) {
        char pat[1300];
        glob_t g;
        snprintf(pat, sizeof pat, "%s/%s.tmp.[0-9]*", dir, names[i]);
        if (glob(pat, 0, NULL, &g) == 0)
            for (size_t k = 0; k < g.gl_pathc; k++) unlink(g.gl_pathv[k]);
        globfree(&g);
    }
}

static int start(fit_run *r, char *err, size_t errlen) {
    derf_task *t = r->t;
    const derf_fit_opts *o = r->o;
    if (o->resume && load(r, err, errlen)) return -1;
    derf_run_bcast(t->params, t->ema, &r->step, &r->rng); /* every process starts from rank 0's state */
    if (t->begin && t->begin(t, err, errlen)) return -1;
    if (o->out && derf_dist_rank() == 0) {
        remove_stale_temps(o->out);
        if (derf_io_mkdirs(o->out, err, errlen) || derf_runlog_open(&r->log, o->out, o->resume ? r->step : -1, err, errlen))
            return -1;
    }
    derf_lf f[DERF_FIT_MAX_FIELDS + 4];
    int nf = 0;
    f[nf++] = DERF_LF_I("step", r->step);
    if (t->start_fields) nf += t->start_fields(t, f + nf, DERF_FIT_MAX_FIELDS);
    f[nf++] = DERF_LF_I("steps", o->steps);
    f[nf++] = DERF_LF_B("resumed", r->step > 0);
    f[nf++] = DERF_LF_I("processes", derf_dist_size());
    derf_runlog_write(&r->log, "start", f, nf);
    return 0;
}

int derf_fit(derf_task *t, const derf_fit_opts *o, derf_fit_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    res->final_loss = NAN;
    const char *hook = getenv("DERF_TEST_DIVERGE_AT");
    fit_run r = {t, o, res, {NULL}, {0, 0}, 0, 0, o->quiet || derf_dist_rank() != 0, 0, hook ? atoi(hook) : -1,
                 derf_now_s(), 0, 0, 0, NULL};
    r.last_save = r.t0;
    r.stop = o->max_steps > 0 && o->max_steps < o->steps ? o->max_steps : o->steps;
    derf_rng_seed(&r.rng, o->seed, o->stream);
    derf_sched sc = o->sched;
    if (sc.total <= 0) sc.total = o->steps;
    const derf_params *p = t->params;
    static derf_diag dg; /* large: static (one training loop runs at a time) */
    derf_diag_init(&dg, o->diag_every, p);
    r.dg = &dg;
    t->ema = NULL;
    int rc = -1;
    if (o->ema > 0) {
        if (!(t->ema = malloc(p->total * sizeof(float)))) { derf_io_errf(err, errlen, "out of memory for the EMA"); return -1; }
        memcpy(t->ema, p->params, p->total * sizeof(float));
    }
    if (start(&r, err, errlen)) goto done;
    res->start_step = r.step;
    r.lr = derf_sched_lr(&sc, r.step);
    if (r.step == 0 && o->eval_every > 0 && o->eval_at_start) evaluate(&r, 0);
    const int window = o->loss_window > 0 ? o->loss_window : o->log_every > 0 ? o->log_every : 1;
    double wsum = 0, int_units = 0, int_time = 0;
    int wn = 0, int_steps = 0;
    while (!res->diverged && r.step < r.stop) {
        if (derf_dist_fail_hook(r.step + 1, err, errlen)) goto done;
        double ts = derf_now_s(), units = 0;
        float gn = 0;
        r.lr = derf_sched_lr(&sc, r.step);
        if (r.step % window == 0) { wsum = 0; wn = 0; }
        float loss = one_step(&r, &gn, &units);
        if (res->diverged) break;
        r.step++;
        double dt = derf_now_s() - ts;
        res->train_seconds += dt;
        res->units += units;
        int_time += dt;
        int_units += units;
        int_steps++;
        wsum += loss;
        wn++;
        t->window_loss = wsum / wn;
        res->final_loss = (float)t->window_loss;
        if (o->log_every > 0 && (r.step % o->log_every == 0 || r.step == r.stop)) {
            progress(&r, loss, gn, int_units, int_time, int_steps);
            int_units = 0;
            int_time = 0;
            int_steps = 0;
        }
        int eval_now = o->eval_every > 0 && r.step % o->eval_every == 0 && r.step < r.stop;
        if (eval_now && evaluate(&r, 0)) break;
        int ckpt_now = (o->ckpt_every > 0 && r.step % o->ckpt_every == 0) ||
                       (o->ckpt_secs > 0 && derf_now_s() - r.last_save >= o->ckpt_secs);
        if (o->ckpt_secs > 0 && derf_dist_size() > 1) derf_dist_bcast(&ckpt_now, sizeof ckpt_now); /* rank 0's clock */
        if (eval_now || ckpt_now) {
            if (!eval_now && check_weights(&r)) break;
            if (save(&r, err, errlen)) goto done;
        }
    }
    res->steps = r.step;
    res->units_per_s = res->train_seconds > 0 ? res->units / res->train_seconds : 0;
    if (!res->diverged && (!o->eval_at_end || !evaluate(&r, 0)) && !evaluate(&r, 1) && save(&r, err, errlen))
        goto done;
    rc = 0;
done:
    res->seconds = derf_now_s() - r.t0;
    derf_runlog_close(&r.log);
    derf_diag_free(&dg);
    return rc;
}
