/* adamw_fn.h: the AdamW element update and its per-step coefficients, shared by the CPU step
 * (src/core/params.c) and the CUDA kernel (src/cuda/ops.cu), so both run the same arithmetic. */
#ifndef DERF_ADAMW_FN_H
#define DERF_ADAMW_FN_H
#include <math.h>
#include "derf/optim.h"
#include "norms/fastmath.h" /* DERF_HOSTDEV */

typedef struct { float b1, b2, eps, lr, step_size, inv_sqrt_bc2; } derf_adamw_coef;

/* PyTorch semantics: bias corrections 1 - beta^step in double, then float. step is 1-based. */
static inline derf_adamw_coef derf_adamw_coefs(const derf_adamw_cfg *cfg, int step) {
    derf_adamw_coef k;
    k.b1 = cfg->beta1; k.b2 = cfg->beta2; k.eps = cfg->eps; k.lr = cfg->lr;
    const float bc1 = (float)(1.0 - pow((double)k.b1, step));
    const float bc2 = (float)(1.0 - pow((double)k.b2, step));
    k.step_size = k.lr / bc1;
    k.inv_sqrt_bc2 = (float)(1.0 / sqrt((double)bc2));
    return k;
}

/* One parameter: moments updated in place, returns the new weight. decay_mul = 1 - lr*wd on
 * decayed tensors, 1 otherwise (decoupled decay). */
static inline DERF_HOSTDEV float derf_adamw_elem(float w, float g, float *m, float *v, derf_adamw_coef k,
                                                 float decay_mul) {
    float mi = k.b1 * *m + (1.0f - k.b1) * g;
    float vi = k.b2 * *v + (1.0f - k.b2) * g * g;
    *m = mi;
    *v = vi;
    float denom = sqrtf(vi) * k.inv_sqrt_bc2 + k.eps;
    return w * decay_mul - k.step_size * mi / denom;
}
#endif
