/* modelutil.c: tensor registration and buffer helpers shared by the DNA models (see derf/modelutil.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "derf/modelutil.h"

size_t derf_model_reg(derf_params *p, const char *name, int ndim, int d0, int d1, int d2, int decay) {
    int shape[4] = {d0, d1, d2, 0};
    return derf_params_add(p, name, ndim, shape, decay);
}

size_t derf_model_reg_norm(derf_params *p, const derf_norm_spec *spec, int C, const char *prefix) {
    derf_norm_param np[4];
    int k = derf_norm_params(spec, C, np);
    size_t first = p->total;
    char name[DERF_NAME_MAX + 16];
    for (int i = 0; i < k; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, np[i].name);
        size_t off = derf_model_reg(p, name, 1, (int)np[i].numel, 0, 0, 0);
        if (i == 0) first = off;
    }
    return first;
}

float *derf_model_falloc(size_t n, int *fail) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) *fail = 1;
    return p;
}

void derf_model_check_batch(const char *model, const int32_t *tokens, int B, int T, int maxB, int maxT, int V) {
    if (B <= 0 || B > maxB || T <= 0 || T > maxT) {
        fprintf(stderr, "derf: %s forward with batch %d x %d tokens, built for 1..%d x 1..%d\n", model, B, T, maxB, maxT);
        abort();
    }
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= V) {
            fprintf(stderr, "derf: %s token %d out of range [0, %d) at position %zu\n", model, (int)tokens[i], V, i);
            abort();
        }
}

int derf_model_meta_put(char keys[][32], char vals[][128], int *n, int max, const char *key, const char *fmt, ...) {
    if (*n >= max) return -1;
    snprintf(keys[*n], 32, "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vals[*n], 128, fmt, ap);
    va_end(ap);
    (*n)++;
    return 0;
}
