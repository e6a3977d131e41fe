/* derf/dit.h: DiT (Peebles & Xie, "Scalable Diffusion Models with Transformers") in pixel space for
 * the project's 28x28 grey datasets, as the Derf paper's DiT runs use it (docs/paper.md section 5.2):
 *   x_embedder (patchify conv) + fixed 2-D sin-cos positions; c = t_embedder(t) + y_embedder(y);
 *   adaLN-Zero blocks  x += gate_msa * Attn(modulate(norm1(x), shift_msa, scale_msa))
 *                      x += gate_mlp * MLP(modulate(norm2(x), shift_mlp, scale_mlp))
 *   with (shift, scale, gate) x 2 = adaLN_modulation(SiLU(c)); final layer modulate(norm_final(x)) -> linear,
 *   then unpatchify. modulate(h, shift, scale) = h * (1 + scale) + shift.
 * Every norm is the same spec with NO affine part (DiT's LayerNorms have elementwise_affine=False, so a
 * point-wise norm keeps only alpha and s). Tensor names follow facebookresearch/DiT models.py. */
#ifndef DERF_DIT_H
#define DERF_DIT_H

#include <stddef.h>
#include <stdint.h>
#include "derf/norm.h"
#include "derf/ops.h"
#include "derf/optim.h"

typedef struct {
    int img, chans, patch;    /* image side, channels, patch side (img % patch == 0) */
    int dim, depth, heads;    /* width, blocks, heads (dim % heads == 0) */
    int mlp_ratio;            /* MLP hidden = mlp_ratio * dim (DiT: 4) */
    int classes;              /* the label table has classes + 1 rows: the last is the null label (CFG) */
    int freq_dim;             /* sinusoidal timestep features (DiT: 256) */
    int learn_sigma;          /* 1: output 2*chans channels (eps and the variance interpolation v) */
    derf_norm_spec norm;      /* every norm, without affine (derf_dit_check refuses an affine one) */
    int zero_blocks;          /* zero-init every block's adaLN_modulation.1 (W and b) */
    int zero_final;           /* zero-init final_layer.adaLN_modulation.1 and final_layer.linear */
} derf_dit_config;

/* Presets (28x28x1, 10 classes): "tiny" (patch 4, dim 64, depth 4, heads 4), "mini" (patch 7, dim 64,
 * depth 4, heads 4: 16 tokens, for CPU comparisons), "small" (patch 4, dim 128, depth 6, heads 4),
 * "test" (8x8x1, patch 4, dim 16, depth 2, heads 2, 5 classes, freq_dim 16; unit tests).
 * Norm "layernorm:noaffine:eps=1e-6"; zero-inits as for LayerNorm. Use derf_dit_set_norm to change it. */
int derf_dit_preset(derf_dit_config *cfg, const char *name, char *err, size_t errlen);

/* Sets the norm from a --norm spec (affine dropped; LayerNorm / RMSNorm get DiT's eps 1e-6 unless the spec
 * names eps=) and the paper's init rules for it (docs/paper.md section 5.2), given the paper's size class the model
 * stands for ('S', 'B', 'L' or 'X' for XL):
 *   LayerNorm / RMSNorm: every adaLN zero-init kept;
 *   point-wise: blocks zero-initialised only for class B, the final layer never; alpha init 1.0 for XL
 *   unless the spec names alpha=. */
int derf_dit_set_norm(derf_dit_config *cfg, const char *spec, char size_class, char *err, size_t errlen);
int derf_dit_check(const derf_dit_config *cfg, char *err, size_t errlen);

typedef struct {
    derf_dit_config cfg;
    derf_params params;       /* named tensors (DiT names), slabs for params/grads/m/v */
    int max_batch;
    int T;                    /* tokens = (img/patch)^2 */
    float *pos;               /* [T, dim] fixed sin-cos positions (not a parameter) */
    int32_t *labels;          /* [max_batch] the labels of the last forward */
    float *acts;              /* activation arena (opaque) */
    size_t acts_size;
    float *out;               /* [B, out_chans, img, img] after forward */
} derf_dit;

int derf_dit_build(derf_dit *m, const derf_dit_config *cfg, int max_batch, char *err, size_t errlen);
/* DiT initialize_weights: xavier_uniform Linear weights (x_embedder's conv as a [D, C*p*p] matrix),
 * zero biases, y/t embedders normal(0.02), norms from the spec, then the zero-inits of cfg. */
void derf_dit_init(derf_dit *m, uint64_t seed);
/* x: [B, chans, img, img]; t: [B] timesteps (as floats, 0..T-1); y: [B] labels in 0..classes
 * (classes = the null label). Writes m->out [B, out_chans, img, img]. */
void derf_dit_forward(derf_dit *m, const float *x, const float *t, const int32_t *y, int B);
/* dout: [B, out_chans, img, img]. ADDS into m->params.grads. */
void derf_dit_backward(derf_dit *m, const float *dout, int B);
void derf_dit_free(derf_dit *m);
int derf_dit_out_chans(const derf_dit_config *cfg);

/* The fixed 2-D sin-cos position table of DiT (get_2d_sincos_pos_embed): pos[g*g, D], D % 4 == 0. */
void derf_dit_sincos_pos(float *pos, int D, int g);
/* DiT's timestep_embedding: out[B, F] = [cos(t*f_i) | sin(t*f_i)], f_i = 10000^(-i/(F/2)). */
void derf_dit_timestep_features(float *out, const float *t, int B, int F);

int derf_dit_config_to_meta(const derf_dit_config *cfg, char keys[][32], char vals[][128], int max);
int derf_dit_config_from_meta(derf_dit_config *cfg, const char *(*get)(void *ctx, const char *key),
                              void *ctx, char *err, size_t errlen);

#endif
