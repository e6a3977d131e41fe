/* wtab.c: the weight table of the inference models and the folding arithmetic (see wtab.h). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/io.h"
#include "derf/ops.h"
#include "infer/wtab.h"

float *iw_alloc(iw_table *t, size_t n) {
    if (t->nblocks == t->capblocks) {
        int cap = t->capblocks ? 2 * t->capblocks : 64;
        void **nb = realloc(t->blocks, sizeof(void *) * (size_t)cap);
        if (!nb) { t->oom = 1; return NULL; }
        t->blocks = nb;
        t->capblocks = cap;
    }
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) { t->oom = 1; return NULL; }
    t->blocks[t->nblocks++] = p;
    t->bytes += n * sizeof(float);
    return p;
}

static iw_entry *add_entry(iw_table *t, const char *name, int ndim, const int64_t *shape, float *data, int flags) {
    if (!data) return NULL;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        iw_entry *ne = realloc(t->e, sizeof(iw_entry) * (size_t)cap);
        if (!ne) { t->oom = 1; return NULL; }
        t->e = ne;
        t->cap = cap;
    }
    iw_entry *e = &t->e[t->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];
    }
    e->data = data;
    e->flags = flags;
    return e;
}

float *iw_add(iw_table *t, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int flags) {
    const int64_t shape[4] = {d0, d1, d2, d3};
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *p = iw_alloc(t, n);
    return add_entry(t, name, ndim, shape, p, flags) ? p : NULL;
}

float *iw_add_norm(iw_table *t, const derf_norm_spec *spec, int C, const char *prefix) {
    derf_norm_param np[4];
    const int k = derf_norm_params(spec, C, np);
    if (k == 0) return NULL;
    float *block = iw_alloc(t, derf_norm_param_count(spec, C));
    if (!block) return NULL;
    char name[128];
    for (int i = 0; i < k; i++) {
        const int64_t shape[1] = {(int64_t)np[i].numel};
        snprintf(name, sizeof name, "%s.%s", prefix, np[i].name);
        add_entry(t, name, 1, shape, block + np[i].offset, 0);
    }
    derf_norm_init(spec, C, block);
    return block;
}

iw_entry *iw_find(iw_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!(t->e[i].flags & IW_NOWRITE) && !strcmp(t->e[i].name, name)) return &t->e[i];
    return NULL;
}

void iw_drop(iw_table *t, const char *name) {
    iw_entry *e = iw_find(t, name);
    if (e) e->flags |= IW_NOWRITE;
}

int iw_load(iw_table *t, const derf_safetensors *st, const char *path, char *err, size_t errlen) {
    if (t->oom) { derf_io_errf(err, errlen, "out of memory for the model's weights"); return -1; }
    for (int i = 0; i < t->n; i++) {
        iw_entry *e = &t->e[i];
        if (e->flags & IW_NOWRITE) continue;
        const derf_st_tensor *s = derf_safetensors_find(st, e->name);
        if (!s) {
            if (e->flags & IW_OPTIONAL) continue;
            derf_io_errf(err, errlen, "%s: tensor '%s' is missing (is this a checkpoint of the same model?)", path, e->name);
            return -1;
        }
        int same = s->ndim == e->ndim;
        for (int j = 0; same && j < e->ndim; j++) same = s->shape[j] == e->shape[j];
        if (!same) {
            derf_io_errf(err, errlen, "%s: tensor '%s' has a different shape than the model expects", path, e->name);
            return -1;
        }
        memcpy(e->data, s->data, e->numel * sizeof(float));
    }
    return 0;
}

int iw_write(const iw_table *t, const char *path, const derf_st_meta *meta, int nmeta, char *err, size_t errlen) {
    derf_st_tensor_in *ts = malloc(sizeof *ts * (size_t)(t->n ? t->n : 1));
    if (!ts) { derf_io_errf(err, errlen, "out of memory"); return -1; }
    int n = 0;
    for (int i = 0; i < t->n; i++)
        if (!(t->e[i].flags & IW_NOWRITE))
            ts[n++] = (derf_st_tensor_in){t->e[i].name, t->e[i].ndim, t->e[i].shape, t->e[i].data};
    int rc = derf_safetensors_write(path, ts, n, meta, nmeta, err, errlen);
    free(ts);
    return rc;
}

int iw_write_model(const iw_table *t, const char *path, char keys[][32], char vals[][128], int n, int folded,
                   const derf_norm_spec *trained, char *err, size_t errlen) {
    derf_st_meta meta[64];
    char spec[256];
    if (n < 0 || n > 62) { derf_io_errf(err, errlen, "too much metadata"); return -1; }
    for (int i = 0; i < n; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    derf_norm_format(trained, spec, sizeof spec);
    if (folded) {
        meta[n++] = (derf_st_meta){"folded", "1"};
        meta[n++] = (derf_st_meta){"norm_trained", spec};
    }
    return iw_write(t, path, meta, n, err, errlen);
}

void iw_free(iw_table *t) {
    for (int i = 0; i < t->nblocks; i++) free(t->blocks[i]);
    free(t->blocks);
    free(t->e);
    memset(t, 0, sizeof *t);
}

void iw_linear(float *out, const float *inp, const float *W, const float *b, int N, int C, int OC) {
    if (N != 1) {
        derf_linear_forward(out, inp, W, b, N, C, OC);
        return;
    }
    if (b) memcpy(out, b, (size_t)OC * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, W, C, inp, 1, b ? 1.0f : 0.0f, out, 1);
}

int iw_folded_meta(const derf_safetensors *st, const derf_norm_spec *norm, int *folded, derf_norm_spec *trained,
                   const char *path, char *err, size_t errlen) {
    const char *f = derf_safetensors_meta(st, "folded"), *nt = derf_safetensors_meta(st, "norm_trained");
    char e[256];
    *trained = *norm;
    *folded = f && !strcmp(f, "1");
    if (*folded && (!nt || derf_norm_parse(nt, trained, e, sizeof e))) {
        derf_io_errf(err, errlen, "%s: folded checkpoint without a valid norm_trained in its metadata", path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------- folding */

void derf_fold_linear(float *W, float *b, const float *gamma, const float *beta, int OC, int C) {
    #pragma omp parallel for schedule(static) if ((long)OC * C > 65536)
    for (int o = 0; o < OC; o++) {
        float *w = W + (size_t)o * C;
        if (beta && b) {
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)w[c] * beta[c];
            b[o] = (float)((double)b[o] + s);
        }
        if (gamma)
            for (int c = 0; c < C; c++) w[c] *= gamma[c];
    }
}

void derf_norm_affine(const derf_norm_spec *spec, int C, float *block, float **gamma, float **beta) {
    derf_norm_param np[4];
    const int k = derf_norm_params(spec, C, np);
    *gamma = *beta = NULL;
    for (int i = 0; i < k && block; i++) {
        if (!strcmp(np[i].name, "weight")) *gamma = block + np[i].offset;
        if (!strcmp(np[i].name, "bias")) *beta = block + np[i].offset;
    }
}

derf_norm_spec derf_norm_folded(const derf_norm_spec *spec) {
    derf_norm_spec f = *spec;
    f.affine = 0;
    f.bias = 0;
    return f;
}

void iw_fold_norm(iw_table *t, const derf_norm_spec *spec, int C, float *block, const char *prefix,
                  float **W, float **b, const int *OC, int nlin) {
    float *gamma, *beta;
    derf_norm_affine(spec, C, block, &gamma, &beta);
    for (int i = 0; i < nlin; i++) derf_fold_linear(W[i], b[i], gamma, beta, OC[i], C);
    char name[128];
    snprintf(name, sizeof name, "%s.weight", prefix);
    iw_drop(t, name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    iw_drop(t, name);
}
