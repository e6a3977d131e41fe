/* vit_weights.h: views of one ViT parameter slab (params, grads, m, v, or a device copy laid out the
 * same way) as the named weights of each block and of the stem and head; shared by the CPU model
 * (vit.c) and the GPU one (src/cuda/vit.cu). A norm without parameters is NULL. */
#ifndef DERF_VIT_WEIGHTS_H
#define DERF_VIT_WEIGHTS_H
#include "derf/vit.h"

typedef struct {
    float *n1, *qkv_w, *qkv_b, *proj_w, *proj_b, *n2, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} vit_block_w;

typedef struct {
    float *cls, *pos, *pe_w, *pe_b, *fnorm, *head_w, *head_b;
} vit_top_w;

void derf_vit_block_weights(const derf_vit *m, float *slab, int l, vit_block_w *w);
void derf_vit_top_weights(const derf_vit *m, float *slab, vit_top_w *w);
/* drop-path rate of block l: linspace(0, drop_path, depth)[l] (timm) */
float derf_vit_block_drop_rate(const derf_vit_config *c, int l);
#endif
