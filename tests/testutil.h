/* testutil.h: small helpers shared by the cmocka tests: seeded random fills and a closeness check
 * that reports the worst element. Header-only. */
#ifndef DERF_TESTUTIL_H
#define DERF_TESTUTIL_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <stdint.h>
#include <string.h>
#include "derf/optim.h"

/* Fresh inputs every run unless DERF_TEST_SEED is set (printed so a failure can be replayed). */
static inline uint64_t tu_seed(void) {
    static uint64_t seed = 0;
    if (!seed) {
        const char *s = getenv("DERF_TEST_SEED");
        seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
        fprintf(stderr, "# DERF_TEST_SEED=%llu\n", (unsigned long long)seed);
    }
    return seed;
}

static inline double tu_uniform(uint64_t *s) { /* splitmix64 -> [0,1) */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}
static inline void tu_fill(float *x, size_t n, uint64_t *s, double lo, double hi) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * tu_uniform(s));
}

/* |a-b| <= atol + rtol*|b| everywhere; prints the worst element on failure. Returns 1 if close. */
static inline int tu_close(const char *what, const float *a, const double *b, size_t n,
                           double atol, double rtol) {
    size_t worst = 0; double wexcess = -1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]), lim = atol + rtol * fabs(b[i]);
        double excess = (d != d) ? 1e30 : d - lim;
        if (excess > wexcess) { wexcess = excess; worst = i; }
    }
    if (wexcess > 0) {
        fprintf(stderr, "%s: element %zu: got %.9g want %.9g (atol %g rtol %g)\n", what, worst,
                (double)a[worst], b[worst], atol, rtol);
        return 0;
    }
    return 1;
}

/* Path of `name` inside the folder `dir` (8 rotating buffers, so a few can be used in one call). */
static inline const char *tu_path(const char *dir, const char *name) {
    static char buf[8][512];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}
/* Writes len bytes to path (no atomic rename: a test fixture). Returns 0, or -1 on any failure. */
static inline int tu_write_raw(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int bad = len && fwrite(data, 1, len, f) != len;
    return (fclose(f) || bad) ? -1 : 0;
}
/* Random values for every norm parameter of a model's table (gamma in [0.5, 1.5], beta and s in
 * [-0.5, 0.5], alpha in [0.3, 1.3]; tensors named *norm* or *ln_*), so that folding has work to do. */
static inline void tu_shake_norms(derf_params *p, uint64_t *s) {
    for (int i = 0; i < p->n; i++) {
        const derf_tensor *t = &p->t[i];
        const char *dot = strrchr(t->name, '.');
        if (!(strstr(t->name, "norm") || strstr(t->name, "ln_")) || !dot) continue;
        float *v = p->params + t->offset;
        if (!strcmp(dot, ".weight")) tu_fill(v, t->numel, s, 0.5, 1.5);
        else if (!strcmp(dot, ".bias") || !strcmp(dot, ".shift")) tu_fill(v, t->numel, s, -0.5, 0.5);
        else if (!strcmp(dot, ".alpha")) tu_fill(v, t->numel, s, 0.3, 1.3);
    }
}

/* tu_close of float arrays a against b, labelled "what (spec)". */
static inline int tu_close_f(const char *what, const char *spec, const float *a, const float *b, size_t n,
                             double atol, double rtol) {
    double *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = b[i];
    char label[200];
    snprintf(label, sizeof label, "%s (%s)", what, spec);
    int ok = tu_close(label, a, w, n, atol, rtol);
    free(w);
    return ok;
}

#endif
