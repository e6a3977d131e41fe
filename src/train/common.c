/* common.c: pieces every trainer shares: LR schedule, EMA, checkpoints of a derf_params table. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "derf/dist.h"
#include "derf/io.h"
#include "derf/train.h"

float derf_lr_at(int step, int warmup, int total, float lr, float min_lr) {
    derf_sched s = {DERF_SCHED_COSINE, lr, min_lr, warmup, total};
    return derf_sched_lr(&s, step);
}

void derf_ema_update(float *ema, const float *params, size_t n, float decay) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) ema[i] = decay * ema[i] + (1.f - decay) * params[i];
}

int derf_ckpt_save(const char *path, const derf_params *p, const derf_ckpt_slab *slabs, int nslabs,
                   const derf_st_meta *meta, int nmeta, char *err, size_t errlen) {
    int n = p->n * nslabs;
    derf_st_tensor_in *t = calloc((size_t)n, sizeof *t);
    int64_t *shapes = calloc((size_t)n * DERF_MAX_DIMS, sizeof *shapes);
    char (*names)[DERF_NAME_MAX + 32] = calloc((size_t)n, sizeof *names);
    if (!t || !shapes || !names) {
        free(t); free(shapes); free(names);
        derf_io_errf(err, errlen, "out of memory writing %s", path);
        return -1;
    }
    int k = 0;
    for (int s = 0; s < nslabs; s++)
        for (int i = 0; i < p->n; i++, k++) {
            const derf_tensor *d = &p->t[i];
            snprintf(names[k], sizeof names[k], "%s%s", slabs[s].prefix, d->name);
            for (int j = 0; j < d->ndim; j++) shapes[(size_t)k * DERF_MAX_DIMS + j] = d->shape[j];
            t[k] = (derf_st_tensor_in){names[k], d->ndim, shapes + (size_t)k * DERF_MAX_DIMS, slabs[s].values + d->offset};
        }
    int rc = derf_safetensors_write(path, t, n, meta, nmeta, err, errlen);
    free(t); free(shapes); free(names);
    return rc;
}

/* ---- the checkpoint validation policy (docs/formats.md, "What a loader accepts") ------------------------
 * Every loader (eval, fd, sample, sample-dit, fine-tuning from a backbone, every --resume) goes through here:
 * each tensor the model expects is present with its shape and finite (NaN/Inf refused with the tensor's name
 * unless derf_ckpt_allow_nonfinite(1), the commands' --allow-nonfinite), AdamW second moments are >= 0, a
 * tensor the model does not have (or an empty one) is refused with its name, and metadata numbers are
 * range-checked (derf_meta_*). */
static int allow_nonfinite;

void derf_ckpt_allow_nonfinite(int on) { allow_nonfinite = on; }

int derf_ckpt_check_values(const char *name, const float *x, size_t n, int nonneg, const char *path, char *err,
                           size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!allow_nonfinite && !isfinite(v)) {
            derf_io_errf(err, errlen, "%s: tensor '%.80s' holds %s at element %zu: the weights are not finite (a diverged "
                         "run?); eval, fd, sample and sample-dit load them with --allow-nonfinite", path, name, isnan(v) ? "NaN" : "an infinity", i);
            return -1;
        }
        if (nonneg && v < 0) {
            derf_io_errf(err, errlen, "%s: tensor '%.80s' holds %g at element %zu: AdamW second moments are never negative "
                         "(a corrupt training state)", path, name, (double)v, i);
            return -1;
        }
    }
    return 0;
}

int derf_ckpt_check_names(const derf_safetensors *st, const derf_params *p, const char *const *prefixes, int nprefix,
                          const char *path, char *err, size_t errlen) {
    for (int k = 0; k < st->ntensors; k++) {
        const derf_st_tensor *t = &st->tensors[k];
        int known = 0;
        for (int j = 0; j < nprefix && !known; j++) {
            size_t pl = strlen(prefixes[j]);
            if (strncmp(t->name, prefixes[j], pl) != 0) continue;
            for (int i = 0; i < p->n && !known; i++) known = strcmp(t->name + pl, p->t[i].name) == 0;
        }
        if (!known || t->numel == 0) {
            derf_io_errf(err, errlen, "%s: tensor '%.80s' %s (%d tensors in the file): is this a checkpoint of this model, "
                         "written by derf?", path, t->name, known ? "is empty" : "is not part of the model", st->ntensors);
            return -1;
        }
    }
    return 0;
}

int derf_ckpt_load_slab(const derf_safetensors *st, const derf_params *p, const char *prefix,
                        float *dst, const char *path, char *err, size_t errlen) {
    for (int i = 0; i < p->n; i++) {
        const derf_tensor *d = &p->t[i];
        char name[DERF_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%s", prefix, d->name);
        const derf_st_tensor *t = derf_safetensors_find(st, name);
        if (!t) {
            derf_io_errf(err, errlen, "%s: tensor '%s' is missing (is this a checkpoint of the same model?)", path, name);
            return -1;
        }
        int same = t->ndim == d->ndim;
        for (int j = 0; same && j < d->ndim; j++) same = t->shape[j] == d->shape[j];
        if (!same) {
            derf_io_errf(err, errlen, "%s: tensor '%s' has a different shape than the model expects", path, name);
            return -1;
        }
        if (derf_ckpt_check_values(name, t->data, t->numel, strcmp(prefix, "adam_v.") == 0, path, err, errlen)) return -1;
        memcpy(dst + d->offset, t->data, d->numel * sizeof(float));
    }
    return 0;
}

int derf_ckpt_load_model(const derf_safetensors *st, const derf_params *p, const char *path, char *err, size_t errlen) {
    static const char *const plain[] = {""};
    if (derf_ckpt_check_names(st, p, plain, 1, path, err, errlen)) return -1;
    return derf_ckpt_load_slab(st, p, "", p->params, path, err, errlen);
}

/* A metadata value that is a decimal integer in [lo, hi], digits only (no sign, space or exponent). */
int derf_meta_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (!s || !*s || strlen(s) > 20) return -1;
    uint64_t v = 0;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9') return -1;
        uint64_t d = (uint64_t)(*c - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

double derf_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void derf_fmt_eta(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) s = 0;
    int m = (int)(s / 60), sec = (int)s % 60;
    if (m >= 60) snprintf(buf, n, "%dh%02dm", m / 60, m % 60);
    else snprintf(buf, n, "%dm%02ds", m, sec);
}

int derf_run_save(const char *dir, const derf_run_state *s, char *err, size_t errlen) {
    char step[32], rs[32], ri[32], path[1200];
    snprintf(step, sizeof step, "%d", s->step);
    snprintf(rs, sizeof rs, "%llu", (unsigned long long)s->rng.state);
    snprintf(ri, sizeof ri, "%llu", (unsigned long long)s->rng.inc);
    int nm = s->nmeta + 4;
    derf_st_meta *meta = malloc(sizeof *meta * (size_t)nm);
    if (!meta) { derf_io_errf(err, errlen, "out of memory saving %s", dir); return -1; }
    for (int i = 0; i < s->nmeta; i++) meta[i] = s->meta[i];
    meta[s->nmeta] = (derf_st_meta){"step", step};
    meta[s->nmeta + 1] = (derf_st_meta){"rng_state", rs};
    meta[s->nmeta + 2] = (derf_st_meta){"rng_inc", ri};
    meta[s->nmeta + 3] = (derf_st_meta){"format", s->format};
    const derf_params *p = s->p;
    derf_ckpt_slab model = {"", p->params}, ema = {"", s->ema};
    derf_ckpt_slab state[4] = {{"", p->params}, {"adam_m.", p->m}, {"adam_v.", p->v}, {"ema.", s->ema}};
    int rc;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rc = derf_ckpt_save(path, p, &model, 1, meta, nm, err, errlen);
    if (!rc && s->ema) {
        snprintf(path, sizeof path, "%s/model_ema.safetensors", dir);
        rc = derf_ckpt_save(path, p, &ema, 1, meta, nm, err, errlen);
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/state.safetensors", dir);
        rc = derf_ckpt_save(path, p, state, s->ema ? 4 : 3, meta, nm, err, errlen);
    }
    free(meta);
    return rc;
}

/* the model config a resumed state was made with must be this run's */
static int meta_differs(const derf_safetensors *st, const derf_st_meta *want, int n, const char *path, char *err,
                        size_t errlen) {
    for (int i = 0; i < n; i++) {
        const char *v = derf_safetensors_meta(st, want[i].key);
        if (!v || strcmp(v, want[i].value)) {
            derf_io_errf(err, errlen, "%s: a run with %s=%s, not %s (resume with the run's own options)", path,
                         want[i].key, v ? v : "(none)", want[i].value);
            return 1;
        }
    }
    return 0;
}

int derf_run_load(const char *dir, const char *format, const derf_st_meta *want, int nwant, derf_params *p,
                  float *ema, int *step, derf_rng *rng, char *err, size_t errlen) {
    char path[1200];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    derf_safetensors st;
    if (derf_safetensors_read(&st, path, (size_t)1 << 36, err, errlen)) return -1;
    const char *sv = derf_safetensors_meta(&st, "step"), *rs = derf_safetensors_meta(&st, "rng_state"),
               *ri = derf_safetensors_meta(&st, "rng_inc"), *fmt = derf_safetensors_meta(&st, "format");
    static const char *const prefixes[] = {"", "adam_m.", "adam_v.", "ema."};
    int rc = -1;
    uint64_t s = 0, state = 0, inc = 0;
    if (!sv || !rs || !ri || !fmt || strcmp(fmt, format) != 0) {
        derf_io_errf(err, errlen, "%s: not a %s training state (format '%.40s'; no step/rng metadata?)", path, format,
                     fmt ? fmt : "none");
    } else if (derf_meta_u64(sv, 0, INT32_MAX, &s)) {
        derf_io_errf(err, errlen, "%s: bad step '%.40s' in the metadata (an integer 0..2^31-1); the state is corrupt", path, sv);
    } else if (derf_meta_u64(rs, 0, UINT64_MAX, &state) || derf_meta_u64(ri, 1, UINT64_MAX, &inc) || !(inc & 1)) {
        derf_io_errf(err, errlen, "%s: bad RNG state '%.40s' / '%.40s' in the metadata (decimal integers, the second odd); "
                     "the state is corrupt", path, rs, ri);
    } else if (meta_differs(&st, want, nwant, path, err, errlen)) {
    } else if (!derf_ckpt_check_names(&st, p, prefixes, ema ? 4 : 3, path, err, errlen) &&
               !derf_ckpt_load_slab(&st, p, "", p->params, path, err, errlen) &&
               !derf_ckpt_load_slab(&st, p, "adam_m.", p->m, path, err, errlen) &&
               !derf_ckpt_load_slab(&st, p, "adam_v.", p->v, path, err, errlen) &&
               (!ema || !derf_ckpt_load_slab(&st, p, "ema.", ema, path, err, errlen))) {
        *step = (int)s;
        rng->state = state;
        rng->inc = inc;
        rc = 0;
    }
    derf_safetensors_free(&st);
    return rc;
}

void derf_run_bcast(derf_params *p, float *ema, int *step, derf_rng *rng) {
    if (derf_dist_size() == 1) return;
    derf_dist_bcast(p->params, p->total * sizeof(float));
    derf_dist_bcast(p->m, p->total * sizeof(float));
    derf_dist_bcast(p->v, p->total * sizeof(float));
    if (ema) derf_dist_bcast(ema, p->total * sizeof(float));
    derf_dist_bcast(step, sizeof *step);
    derf_dist_bcast(rng, sizeof *rng);
}

int derf_run_resync(derf_params *p, float *ema, int step, derf_runlog *log, int quiet) {
    if (derf_dist_same(p->params, p->total)) return 0;
    if (!quiet)
        fprintf(stderr, "[derf] step %d: the weights of the %d processes differ (different --threads or machines "
                        "round differently?); all continue from rank 0's\n", step, derf_dist_size());
    derf_lf f = DERF_LF_I("step", step);
    derf_runlog_write(log, "resync", &f, 1);
    derf_rng unused = {0, 0};
    derf_run_bcast(p, ema, &step, &unused);
    return 1;
}
