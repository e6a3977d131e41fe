/* derf/modelutil.h: small helpers the DNA models (hyena.c, caduceus.c) share to register tensors and allocate
 * activation buffers. */
#ifndef DERF_MODELUTIL_H
#define DERF_MODELUTIL_H

#include <stddef.h>
#include <stdint.h>
#include "derf/norm.h"
#include "derf/optim.h"

/* Registers a tensor of shape (d0[, d1[, d2]]) with ndim dims; returns its offset in the slabs. */
size_t derf_model_reg(derf_params *p, const char *name, int ndim, int d0, int d1, int d2, int decay);
/* Registers the tensors of one norm layer of width C as "<prefix>.<name>" (no weight decay); returns the offset of
 * the first, i.e. the norm's parameter block (the tensors are consecutive). */
size_t derf_model_reg_norm(derf_params *p, const derf_norm_spec *spec, int C, const char *prefix);
/* calloc of n floats; sets *fail on failure */
float *derf_model_falloc(size_t n, int *fail);

/* Aborts with one line naming the model when B x T does not fit 1..maxB x 1..maxT or a token is outside [0, V). */
void derf_model_check_batch(const char *model, const int32_t *tokens, int B, int T, int maxB, int maxT, int V);
/* Appends key = printf(fmt, ...) to a metadata list; returns -1 (and appends nothing) when *n == max. */
int derf_model_meta_put(char keys[][32], char vals[][128], int *n, int max, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
