/* models.h: the inference models' structs, shared by their forward passes (vit_infer.c,
 * gpt2_infer.c) and the ONNX exporter (onnx.c); opaque to users (derf/infer.h). */
#ifndef DERF_INFER_MODELS_H
#define DERF_INFER_MODELS_H
#include "derf/infer.h"
#include "infer/wtab.h"

typedef struct {
    float *n1, *qkv_w, *qkv_b, *proj_w, *proj_b, *n2, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} vblk;

struct derf_infer_vit {
    derf_vit_config cfg;      /* cfg.norm: the spec the forward runs (no affine once folded) */
    derf_norm_spec trained;   /* the spec the model was trained with */
    int folded, max_batch, T;
    iw_table w;
    vblk *blk;
    float *cls, *pos, *pe_w, *pe_b, *fnorm, *head_w, *head_b;
    float *arena;
    size_t arena_floats;
    float *cols, *pe, *x, *h, *st, *qkv, *att, *atty, *br, *fc, *pooled, *fn, *logits;
};

typedef struct {
    float *ln1, *attn_w, *attn_b, *aproj_w, *aproj_b, *ln2, *fc_w, *fc_b, *mproj_w, *mproj_b;
} gblk;

struct derf_infer_gpt2 {
    derf_gpt2_config cfg;     /* cfg.norm: the spec the forward runs (no affine once folded) */
    derf_norm_spec trained;
    int folded, max_batch, max_T, data_vocab;
    iw_table w;
    gblk *blk;
    float *wte, *wpe, *scale, *lnf, *head_w, *head_b;
    float *kc, *vc;           /* [L][max_batch][NH][max_T][hs] */
    int B, pos;               /* sequences and positions in the cache */
    float *arena;
    size_t arena_floats, cache_floats;
    float *x, *h, *st, *qkv, *atty, *br, *fc, *last, *lastn, *logits, *scores;
    int nthreads;
};

#endif
