/* wtab.h: the named weight table of the inference models (src/infer): every tensor a name, a shape
 * and a view into memory the table owns; loaded from a safetensors checkpoint by name (shapes
 * checked), written back to one, and walked by the ONNX exporter. Also the folding primitive. */
#ifndef DERF_INFER_WTAB_H
#define DERF_INFER_WTAB_H

#include <stddef.h>
#include <stdint.h>
#include "derf/norm.h"
#include "derf/safetensors.h"

enum { IW_OPTIONAL = 1,   /* may be absent from the checkpoint (then zeros) */
       IW_NOWRITE = 2 };  /* not part of the model any more (folded away) or not in this config */

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
    size_t numel;
    float *data;
    int flags;
} iw_entry;

typedef struct {
    iw_entry *e;
    int n, cap;
    void **blocks;        /* the allocations the entries point into */
    int nblocks, capblocks;
    size_t bytes;         /* bytes allocated */
    int oom;              /* an allocation failed */
} iw_table;

/* A zero-filled block of n floats owned by the table (NULL and t->oom on failure). */
float *iw_alloc(iw_table *t, size_t n);
/* A new zero-filled tensor of shape (d0, d1, d2, d3)[:ndim]. */
float *iw_add(iw_table *t, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, int flags);
/* One norm layer's tensors "<prefix>.<param>" as views of one packed block (derf_norm_params'
 * layout, what derf_norm_forward reads); returns the block (NULL for a norm without parameters). */
float *iw_add_norm(iw_table *t, const derf_norm_spec *spec, int C, const char *prefix);
iw_entry *iw_find(iw_table *t, const char *name);
/* Marks a tensor as no longer part of the model (if present). */
void iw_drop(iw_table *t, const char *name);
/* Copies every tensor from st by name; a missing tensor is an error unless IW_OPTIONAL. */
int iw_load(iw_table *t, const derf_safetensors *st, const char *path, char *err, size_t errlen);
/* Writes the tensors without IW_NOWRITE, in table order, with the metadata, atomically. */
int iw_write(const iw_table *t, const char *path, const derf_st_meta *meta, int nmeta, char *err, size_t errlen);
/* iw_write with the metadata of a model: keys/vals[0..n) (the config), then folded=1 and norm_trained when folded. */
int iw_write_model(const iw_table *t, const char *path, char keys[][32], char vals[][128], int n, int folded,
                   const derf_norm_spec *trained, char *err, size_t errlen);
void iw_free(iw_table *t);
/* A checkpoint's folding state: *folded from metadata folded=1, *trained = norm_trained (folded) or norm. */
int iw_folded_meta(const derf_safetensors *st, const derf_norm_spec *norm, int *folded, derf_norm_spec *trained,
                   const char *path, char *err, size_t errlen);

/* out[N,OC] = inp[N,C] @ W^T + b (b may be NULL): derf_linear_forward, or one GEMV for a single row (a
 * decoded token), where OpenBLAS's GEMM spends its time packing. */
void iw_linear(float *out, const float *inp, const float *W, const float *b, int N, int C, int OC);

/* Folds y = gamma * n + beta (gamma, beta [C]; either may be NULL: 1 / 0) into the linear layer it
 * feeds, W [OC, C] (nn.Linear layout), b [OC]:  b += W beta (with the original W), W = W diag(gamma). */
void derf_fold_linear(float *W, float *b, const float *gamma, const float *beta, int OC, int C);
/* The gamma and beta of one packed norm block (NULL when the spec has none). */
void derf_norm_affine(const derf_norm_spec *spec, int C, float *block, float **gamma, float **beta);
/* The spec after folding: the same norm without gamma and beta. */
derf_norm_spec derf_norm_folded(const derf_norm_spec *spec);
/* Folds one norm layer "<prefix>" into the linear layers it feeds (W[i] [OC[i], C], b[i] [OC[i]])
 * and drops its gamma/beta tensors from the table. */
void iw_fold_norm(iw_table *t, const derf_norm_spec *spec, int C, float *block, const char *prefix,
                  float **W, float **b, const int *OC, int nlin);

#endif
