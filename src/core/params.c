/* params.c: the parameter table (named tensors as views into one slab each for params, grads,
 * AdamW m and v), the AdamW step (PyTorch torch.optim.AdamW semantics) and global-norm gradient
 * clipping (torch.nn.utils.clip_grad_norm_). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "derf/optim.h"
#include "core/adamw_fn.h"

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        fprintf(stderr, "derf: out of memory allocating %zu x %zu bytes\n", n, sz);
        exit(1);
    }
    return p;
}

void derf_params_init(derf_params *p) {
    memset(p, 0, sizeof *p);
}

/* Appends tensor `name` of shape[ndim]; returns its offset (in floats) into every slab. */
size_t derf_params_add(derf_params *p, const char *name, int ndim, const int *shape, int decay) {
    if (ndim < 0 || ndim > DERF_MAX_DIMS) {
        fprintf(stderr, "derf: tensor %s has %d dims (at most %d supported)\n", name, ndim, DERF_MAX_DIMS);
        exit(1);
    }
    if (strlen(name) >= DERF_NAME_MAX) {
        fprintf(stderr, "derf: tensor name %s is longer than %d characters\n", name, DERF_NAME_MAX - 1);
        exit(1);
    }
    if (p->params) {
        fprintf(stderr, "derf: derf_params_add(%s) after derf_params_alloc\n", name);
        exit(1);
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        derf_tensor *t = realloc(p->t, (size_t)cap * sizeof *t);
        if (!t) { fprintf(stderr, "derf: out of memory in derf_params_add\n"); exit(1); }
        p->t = t;
        p->cap = cap;
    }
    derf_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) {
            fprintf(stderr, "derf: tensor %s has non-positive dim %d = %d\n", name, i, shape[i]);
            exit(1);
        }
        t->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    t->numel = numel;
    t->offset = p->total;
    t->decay = decay ? 1 : 0;
    p->total += numel;
    return t->offset;
}

void derf_params_alloc(derf_params *p) {
    p->params = xcalloc(p->total, sizeof(float));
    p->grads = xcalloc(p->total, sizeof(float));
    p->m = xcalloc(p->total, sizeof(float));
    p->v = xcalloc(p->total, sizeof(float));
}

void derf_params_free(derf_params *p) {
    free(p->t);
    free(p->params);
    free(p->grads);
    free(p->m);
    free(p->v);
    memset(p, 0, sizeof *p);
}

void derf_params_layout_aligned(derf_params *dst, const derf_params *src, size_t align) {
    derf_params_init(dst);
    dst->t = malloc((size_t)(src->n ? src->n : 1) * sizeof *dst->t);
    if (!dst->t) { fprintf(stderr, "derf: out of memory in derf_params_layout_aligned\n"); exit(1); }
    dst->n = dst->cap = src->n;
    size_t off = 0;
    for (int i = 0; i < src->n; i++) {
        dst->t[i] = src->t[i];
        off = (off + align - 1) / align * align;
        dst->t[i].offset = off;
        off += src->t[i].numel;
    }
    dst->total = (off + align - 1) / align * align;
}

void derf_params_relayout(float *dst, const derf_params *to, const float *src, const derf_params *from, int zero_pad) {
    if (zero_pad) memset(dst, 0, to->total * sizeof(float));
    for (int i = 0; i < from->n; i++)
        memcpy(dst + to->t[i].offset, src + from->t[i].offset, from->t[i].numel * sizeof(float));
}

const derf_tensor *derf_params_find(const derf_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->t[i].name, name) == 0) return &p->t[i];
    return NULL;
}

/* One contiguous chunk per OpenMP thread: at GPT-2 124M the gradients are 500 MB, and one thread's
 * memset is bound by that core's bandwidth (about 50 ms a step on the development machine). */
void derf_params_zero_grad(derf_params *p) {
    if (!p->grads) return;
    const size_t n = p->total;
    float *g = p->grads;
    #pragma omp parallel if (n > ((size_t)1 << 20))
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        size_t lo = n * t / nt, hi = n * (t + 1) / nt;
        memset(g + lo, 0, (hi - lo) * sizeof(float));
    }
}

/* PyTorch AdamW, per element (t = step, 1-based):
 *   p *= 1 - lr*wd                     (decay tensors only)
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) */
void derf_adamw_step(derf_params *p, const derf_adamw_cfg *cfg, int step) {
    const derf_adamw_coef k = derf_adamw_coefs(cfg, step);
    /* One parallel region over the whole slab; each tensor's elements are split among threads
     * (nowait: tensors are independent, so threads move on without a barrier per tensor). */
    #pragma omp parallel
    for (int ti = 0; ti < p->n; ti++) {
        const derf_tensor *t = &p->t[ti];
        const float decay_mul = t->decay ? 1.0f - k.lr * cfg->weight_decay : 1.0f;
        float *w = p->params + t->offset, *g = p->grads + t->offset;
        float *m = p->m + t->offset, *v = p->v + t->offset;
        const long n = (long)t->numel;
        #pragma omp for schedule(static) nowait
        for (long i = 0; i < n; i++) w[i] = derf_adamw_elem(w[i], g[i], &m[i], &v[i], k, decay_mul);
    }
}

/* Global L2 norm over the whole grad slab (double accumulation); scales by max_norm/(norm+1e-6)
 * when that factor is below 1, as clip_grad_norm_ does. Returns the norm before clipping. */
float derf_clip_grad_norm(derf_params *p, float max_norm) {
    const long n = (long)p->total;
    float *g = p->grads;
    /* blocks of 4096 summed in float with SIMD lanes, blocks added in double */
    double ss = 0.0;
    #pragma omp parallel for reduction(+:ss) schedule(static)
    for (long b = 0; b < n; b += 4096) {
        const long e = b + 4096 < n ? b + 4096 : n;
        float s = 0.0f;
        #pragma omp simd reduction(+:s)
        for (long i = b; i < e; i++) s += g[i] * g[i];
        ss += s;
    }
    double norm = sqrt(ss);
    if (max_norm > 0.0f) {
        double coef = (double)max_norm / (norm + 1e-6);
        if (coef < 1.0) {
            const float c = (float)coef;
            #pragma omp parallel for schedule(static)
            for (long i = 0; i < n; i++) g[i] *= c;
        }
    }
    return (float)norm;
}
