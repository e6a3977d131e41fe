/* gpt2_weights.h: views of one GPT-2 parameter slab (params, grads, m, v, or a device copy laid out
 * the same way) as the named weights of each block; shared by the CPU model (gpt2.c) and the GPU
 * one (src/cuda/gpt2.cu). Absent tensors (biases with bias=0, a norm without parameters,
 * shared_scale when off) are NULL. */
#ifndef DERF_GPT2_WEIGHTS_H
#define DERF_GPT2_WEIGHTS_H
#include "derf/gpt2.h"

typedef struct {
    float *ln1, *attn_w, *attn_b, *aproj_w, *aproj_b, *ln2, *fc_w, *fc_b, *mproj_w, *mproj_b;
} gpt2_block_w;

typedef struct {
    float *wte, *wpe, *scale, *lnf, *lmb; /* lmb: lm_head.bias (logit_bias; NULL without) */
} gpt2_top_w;

void derf_gpt2_block_weights(const derf_gpt2 *m, float *slab, int l, gpt2_block_w *w);
void derf_gpt2_top_weights(const derf_gpt2 *m, float *slab, gpt2_top_w *w);
#endif
