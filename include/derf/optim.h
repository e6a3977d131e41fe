/* derf/optim.h: parameters as a table of named tensors over contiguous slabs, AdamW with a
 * per-tensor weight-decay flag, and global-norm gradient clipping. */
#ifndef DERF_OPTIM_H
#define DERF_OPTIM_H

#include <stddef.h>

#define DERF_NAME_MAX 96
#define DERF_MAX_DIMS 4

typedef struct {
    char name[DERF_NAME_MAX]; /* PyTorch state-dict name, e.g. "blocks.0.norm1.weight" */
    int ndim;
    int shape[DERF_MAX_DIMS];
    size_t offset, numel;     /* in floats, into each slab */
    int decay;                /* 1: AdamW applies weight decay to this tensor */
} derf_tensor;

/* One slab each for params, grads, AdamW m and v; tensors are views by offset. */
typedef struct {
    derf_tensor *t;
    int n, cap;
    size_t total;
    float *params, *grads, *m, *v;
} derf_params;

void derf_params_init(derf_params *p);
/* Adds a tensor description; returns its offset. Call derf_params_alloc after the last add. */
size_t derf_params_add(derf_params *p, const char *name, int ndim, const int *shape, int decay);
void derf_params_alloc(derf_params *p);   /* zero-filled slabs */
void derf_params_free(derf_params *p);
const derf_tensor *derf_params_find(const derf_params *p, const char *name);
void derf_params_zero_grad(derf_params *p);
/* A copy of src's tensor table (no slabs) in which every tensor starts at a multiple of `align` floats
 * (the GPU's slabs: 64, so fp32 tensors are 256-byte and their bf16 copies 128-byte aligned); dst->total
 * counts the padding. Free with derf_params_free. The checkpoint layout stays src's. */
void derf_params_layout_aligned(derf_params *dst, const derf_params *src, size_t align);
/* Copies a slab between two layouts of the same tensors (to: every tensor of `from`'s slab at its place
 * in `to`'s; to's padding set to 0 when zero_pad). */
void derf_params_relayout(float *dst, const derf_params *to, const float *src, const derf_params *from, int zero_pad);

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} derf_adamw_cfg;

/* One AdamW step (PyTorch semantics: decoupled decay p -= lr*wd*p on decay tensors, bias-corrected
 * moments). step is 1-based. */
void derf_adamw_step(derf_params *p, const derf_adamw_cfg *cfg, int step);

/* Global L2 norm of all gradients; if max_norm > 0 and the norm exceeds it, scales the gradients
 * by max_norm / (norm + 1e-6) (PyTorch clip_grad_norm_). Returns the norm before clipping. */
float derf_clip_grad_norm(derf_params *p, float max_norm);

#endif
