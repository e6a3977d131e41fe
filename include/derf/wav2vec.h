/* derf/wav2vec.h: wav2vec 2.0 as fairseq's Wav2Vec2Model defines it (pretraining, the "wav2vec"
 * criterion with InfoNCE), scaled in width, not in structure (docs/paper.md section 5.4):
 *   7-block strided conv feature encoder (no bias; block 0: conv -> GroupNorm(C groups, C) -> GELU,
 *   others conv -> GELU), feature penalty mean(z^2), gradient x grad_mult into the encoder,
 *   LayerNorm(C) on the features (both norms KEPT as real normalization), post_extract_proj C -> d,
 *   time masking with a learned mask_emb, grouped conv positional embedding (weight norm over the
 *   kernel axis, SamePad, GELU, added), pre-norm Transformer (N1/N2 per layer and the final N_f take any
 *   --norm spec), Gumbel product quantizer of the masked LayerNorm'd features (G groups x V entries,
 *   project_q), final_proj of the masked encoder outputs, cosine InfoNCE over K negatives / logit_temp,
 *   diversity penalty (G*V - prob_perplexity)/(G*V) and the feature penalty:
 *     loss = sum_masked CE + M * (div_weight * diversity + pen_weight * feature_pen),  M = masked frames.
 * Dropout and LayerDrop are not implemented (0; see docs/speech.md). Random draws (masks, negatives,
 * Gumbel uniforms) are inputs, so a reference can replay them.
 *
 * Tensor names are fairseq's state-dict names: feature_extractor.conv_layers.{i}.0.weight [C,Cin,K],
 * feature_extractor.conv_layers.0.2.{weight,bias}, layer_norm.*, post_extract_proj.*, mask_emb,
 * encoder.pos_conv.0.{weight_g [1,1,K], weight_v [d,d/G,K], bias}, encoder.layers.{l}.self_attn.{q,k,v}_proj.*
 * (registered q,k,v weights then q,k,v biases, so they pack into one [3d,d] matrix),
 * encoder.layers.{l}.self_attn.out_proj.*, .self_attn_layer_norm.<p>, .fc1.*, .fc2.*, .final_layer_norm.<p>,
 * encoder.layer_norm.<p> (N_f), quantizer.vars [1,G*V,final/G], quantizer.weight_proj.*, project_q.*,
 * final_proj.*. */
#ifndef DERF_WAV2VEC_H
#define DERF_WAV2VEC_H

#include <stddef.h>
#include <stdint.h>
#include "derf/norm.h"
#include "derf/optim.h"
#include "derf/rng.h"

#define DERF_W2V_MAX_CONV 8

typedef struct {
    int conv_dim, n_conv;                               /* C, number of conv blocks (7) */
    int conv_k[DERF_W2V_MAX_CONV], conv_s[DERF_W2V_MAX_CONV];
    int d, n_layer, n_head, ffn;                        /* Transformer */
    int final_dim;                                      /* = vq_dim; codebook entries are final_dim/G wide */
    int pos_k, pos_groups;                              /* conv positional embedding */
    int groups, vars;                                   /* quantizer G x V */
    int n_neg;                                          /* K negatives per masked frame */
    float logit_temp, mask_prob, div_weight, pen_weight, grad_mult;
    int mask_len;
    float tau0, tau_min;                                /* Gumbel temperature schedule ends */
    derf_norm_spec norm;                                /* N1, N2 (per layer) and N_f */
} derf_w2v_config;

/* Presets (docs/speech.md): "xxs" (C 16, d 32, L 2, 2 heads, ffn 64, final 16, pos k 16 / 4 groups,
 * G 2 x V 8, K 5; verification), "xs" (C 64, d 128, L 2, 2 heads, ffn 512, final 64, pos k 32 / 16,
 * V 320, K 100), "s" (W-S: C 128, d 256, L 4, 4 heads, ffn 1024, final 128, pos k 128 / 16, V 320, K 100).
 * All keep fairseq's conv geometry (10/5, 3/2 x4, 2/2 x2), mask 0.65 x 10, logit temp 0.1, loss weights
 * 0.1 / 10, grad mult 0.1, tau 2 -> 0.5, norm "derf". */
int derf_w2v_preset(derf_w2v_config *cfg, const char *name, char *err, size_t errlen);
int derf_w2v_check(const derf_w2v_config *cfg, char *err, size_t errlen);
/* Frames the conv encoder makes of n samples (0 if too short). */
int derf_w2v_frames(const derf_w2v_config *cfg, int n);

typedef struct {
    derf_w2v_config cfg;
    derf_params params;
    int max_batch, max_samples, max_T;
    void *acts; /* opaque activation store (wav2vec.c) */
} derf_w2v;

int derf_w2v_build(derf_w2v *m, const derf_w2v_config *cfg, int max_batch, int max_samples, char *err,
                   size_t errlen);
/* fairseq init: conv Kaiming-normal, GN/LN 1/0, post_extract_proj / project_q / final_proj PyTorch Linear
 * default, mask_emb U[0,1), pos conv v ~ N(0, sqrt(4/(k d))) with g = |v| per tap and bias 0, encoder
 * Linears N(0, 0.02) bias 0, norms from the spec, quantizer weight_proj N(0,1) bias 0, vars U[0,1). */
void derf_w2v_init(derf_w2v *m, uint64_t seed);
void derf_w2v_free(derf_w2v *m);

/* Random draws of one batch of B rows of T frames. */
typedef struct {
    uint8_t *mask;   /* [B*T] 1 = masked; every row has the same count Mb (fairseq require_same_masks) */
    int32_t *neg;    /* [M*K] global row index (into the M = B*Mb masked frames, b-major) of each negative */
    float *gumbel_u; /* [M*G*V] uniforms in (0,1), or NULL: evaluation (argmax, no noise) */
    int M;
} derf_w2v_draws;

/* fairseq compute_mask_indices ("static", no_overlap off, min_masks 2, require_same_masks, no padding): one
 * n_span = max(2, floor(mask_prob*T/mask_len + U)) for the batch; per row n_span span starts without
 * replacement in [0, T-mask_len), union of [start, start+mask_len); then every row is thinned at random to the
 * smallest count.
 * Then negatives: per masked frame K draws with replacement from the other masked frames of the same row.
 * And (train) Gumbel uniforms. Buffers must hold B*T mask bytes, B*T*K negatives, B*T*G*V uniforms. */
void derf_w2v_sample(const derf_w2v_config *cfg, derf_w2v_draws *d, int B, int T, int train, derf_rng *rng);

typedef struct {
    double loss;        /* the fairseq loss sum (see above); loss / M / ln 2 = bits per masked frame */
    double contrastive; /* sum of the InfoNCE cross-entropies */
    float diversity, feature_pen, prob_ppl, code_ppl;
    int M, correct;     /* masked frames; rows whose argmax is the positive (fairseq accuracy) */
} derf_w2v_out;

/* wav[B,N] (one row per utterance, all N samples long). Returns out.loss. Allocates nothing.
 * d == NULL: no masking, no targets or loss: only the encoder output (derf_w2v_encoder_out). */
derf_w2v_out derf_w2v_forward(derf_w2v *m, const float *wav, int B, int N, const derf_w2v_draws *d, float tau);
/* Backward of scale * loss / M (fairseq divides by the sample size M); ADDS into m->params.grads.
 * Needs the last forward to have had Gumbel uniforms (training mode). */
void derf_w2v_backward(derf_w2v *m, float scale);

/* The last forward's encoder output E = N_f(x_L) [B,T,d]; *T gets T. */
const float *derf_w2v_encoder_out(const derf_w2v *m, int *T);

int derf_w2v_config_to_meta(const derf_w2v_config *cfg, char keys[][32], char vals[][128], int max);

#endif
