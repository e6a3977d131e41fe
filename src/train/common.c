/* common.c: pieces every trainer shares: LR schedule, EMA, checkpoints of a derf_params table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/io.h"
#include "derf/train.h"

float derf_lr_at(int step, int warmup, int total, float lr, float min_lr) {
    if (warmup > 0 && step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (total <= warmup) return lr;
    double t = (double)(step - warmup) / (double)(total - warmup);
    if (t > 1) t = 1;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1 + cos(M_PI * t)));
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
        memcpy(dst + d->offset, t->data, d->numel * sizeof(float));
    }
    return 0;
}
