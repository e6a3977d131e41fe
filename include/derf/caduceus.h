/* derf/caduceus.h: Caduceus-PS (kuleshov-group/caduceus; docs/paper.md section 5.6): bidirectional Mamba blocks
 * with reverse-complement parameter sharing (RCPS), RMSNorm upstream; masked-LM pretraining or a
 * classification head.
 *
 *   per strand (the backbone runs on ids and on rc(ids) as one 2B batch: exactly RCPS's two channel halves):
 *     x = Emb(ids);  per block: x = x + BiMamba(N(x));  H = Nf(x)      (residual add and norm explicit)
 *   BiMamba(h) = out_proj(g_fwd(xz) + flip_T(g_rev(flip_T(xz)))),  xz = in_proj(h)   (in/out_proj tied)
 *   g(xz): x, z = split(xz); xc = SiLU(causal depthwise conv4(x) + b); [dr, B, C] = x_proj(xc);
 *          delta = softplus(dt_proj(dr) + b_dt); A = -exp(A_log);
 *          s_t = exp(delta_t A) s_{t-1} + delta_t B_t xc_t;  y_t = C_t . s_t + D xc_t;  g = y * SiLU(z)
 *   LM logits_t[v] = w_v . H(ids)_t + w_comp(v) . H(rc ids)_{T-1-t}   (tied embedding, RCPS head)
 *   classifier: 0.5 (head(mean_t H(ids)) + head(mean_t H(rc ids)))    (Caduceus-PS "conjoin" of the strands)
 * so logits(rc(x)) = rc(logits(x)) and the classifier is invariant to rc(x).
 * The scan stores no states: the backward recomputes each (sequence, channel)'s states, then runs the exact
 * reverse-time adjoint.
 *
 * Tensor names: backbone.embeddings.word_embeddings.weight [V,d]; [backbone.embeddings.scale [1]]; backbone.layers.{i}.norm.<p>;
 * backbone.layers.{i}.mixer.mamba_fwd.{in_proj.weight [2E,d], conv1d.weight [E,1,4], conv1d.bias, x_proj.weight
 * [R+2N,E], dt_proj.weight [E,R], dt_proj.bias, A_log [E,N], D [E], out_proj.weight [d,E]};
 * backbone.layers.{i}.mixer.mamba_rev.{conv1d.*, x_proj.weight, dt_proj.*, A_log, D} (in_proj/out_proj tied to
 * mamba_fwd's); backbone.norm_f.<p>; with classes head.weight [classes,d], head.bias. */
#ifndef DERF_CADUCEUS_H
#define DERF_CADUCEUS_H

#include <stdint.h>
#include "derf/norm.h"
#include "derf/optim.h"
#include "derf/rng.h"

typedef struct {
    int vocab;         /* 16 */
    int d_model;       /* d per strand */
    int n_layer;
    int d_state;       /* N (16) */
    int expand;        /* E = expand * d (2) */
    int dt_rank;       /* R = ceil(d/16) */
    int d_conv;        /* 4 */
    int n_classes;     /* 0: masked LM */
    float emb_scale;   /* > 0: a learnable scalar backbone.embeddings.scale, initialised to this, multiplies the
                        * embedding (derf_scalar_scale_*); 0: none (upstream) */
    derf_norm_spec norm;   /* rmsnorm upstream */
} derf_caduceus_config;

/* "ct" (C-T: d 64, L 4), "gb" (C-GB: d 118, L 4), "test" (d 8, L 2, N 4). Norm rmsnorm. */
int derf_caduceus_preset(derf_caduceus_config *c, const char *name, char *err, size_t errlen);
int derf_caduceus_check(const derf_caduceus_config *c, char *err, size_t errlen);

typedef struct derf_caduceus_acts derf_caduceus_acts;

typedef struct {
    derf_caduceus_config cfg;
    derf_params params;
    int max_B, max_T;
    derf_caduceus_acts *a;
    int B, T, has_targets;
    float *logits;    /* LM [B,T,V]; classifier [B,classes] */
    float loss;
} derf_caduceus;

int derf_caduceus_build(derf_caduceus *m, const derf_caduceus_config *cfg, int max_B, int max_T, char *err, size_t errlen);
/* Upstream init: embedding N(0,0.02); Linear weights U(+-1/sqrt(fan_in)) (PyTorch default), out_proj divided by
 * sqrt(n_layer); conv1d U(+-1/sqrt(4)) weight and bias; dt_proj.weight U(+-R^-1/2), dt_proj.bias the inverse
 * softplus of dt ~ exp(U[ln 1e-3, ln 1e-1]) (>= 1e-4); A_log[e,n] = ln(n+1); D = 1; norms from the spec;
 * head N(0,0.02), bias 0. Deterministic in seed. */
void derf_caduceus_init(derf_caduceus *m, uint64_t seed);
/* tokens [B,T] (< vocab); LM targets [B,T] (< 0 ignored), classifier targets [B]; NULL: logits only. */
float derf_caduceus_forward(derf_caduceus *m, const int32_t *tokens, const int32_t *targets, int B, int T);
void derf_caduceus_backward(derf_caduceus *m, float scale);
void derf_caduceus_free(derf_caduceus *m);
int derf_caduceus_config_to_meta(const derf_caduceus_config *c, char keys[][32], char vals[][128], int max);

/* BERT-style masking of a batch for MLM (mlm_probability p): each base position is chosen with probability p;
 * a chosen one becomes [MASK] with probability 0.8, a random base (A C G T) with 0.1, stays with 0.1; targets
 * are the original ids at chosen positions and -1 elsewhere. in and out may alias. */
void derf_mlm_mask(int32_t *tokens, int32_t *targets, int n, float p, derf_rng *r);

#endif
