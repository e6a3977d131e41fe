/* derf/hyena.h: HyenaDNA (the Caduceus repo's ConvLMHeadModel + HyenaOperator, order 2, one head; the
 * Derf DNA runs use this code path; docs/paper.md section 5.5):
 *
 *   x = Emb(tokens)  (no positions)
 *   per block:  x = x + Hyena(N1(x));  x = x + fc2(GELU_tanh(fc1(N2(x))))
 *   y = Nf(x);  LM: logits = y Emb^T (tied)     classifier: mean over tokens, then head (Linear d -> classes)
 *   Hyena(h):   u = in_proj(h) [T,3d]; uc = short causal depthwise conv (kernel 3, bias) of u;
 *               x0, x1, v = split(uc); w = v * x1; vc = causalconv(w, k) + Dbias * w; out_proj(x0 * vc)
 *   filter k[c,t] = MLP(z_t)[c] * exp(-t_norm * |delta_c|): z_t = [t_norm, cos(f w_t), -sin(f w_t)]
 *               (f = {1e-4, 1}, t_norm = t/(l_max-1), w_t = 2 pi t / l_max), MLP = Linear(5,O) Sin
 *               Linear(O,O) Sin Linear(O,O) Sin Linear(O,d, no bias), Sin(a) = sin(freq * a) with ONE freq
 *               vector shared by the three places; delta = linspace(ln(1e-2)/1.5, ln(1e-2)/0.3, d).
 * Every norm (N1, N2, Nf; LayerNorm upstream) is the same --norm spec. Dropout is off (upstream: 0.1
 * on the embedding only). The causal long convolution runs through FFTW (derf_fftconv_*).
 *
 * Tensor names (upstream's): backbone.embeddings.word_embeddings.weight [V,d]; [backbone.embeddings.scale [1]];
 * backbone.layers.{i}.norm1.<p>, .mixer.in_proj.weight [3d,d] / .bias, .mixer.short_filter.weight [3d,1,3] / .bias,
 * .mixer.filter_fn.bias [d] (the D term), .mixer.filter_fn.implicit_filter.{0,2,4}.weight/bias,
 * .mixer.filter_fn.implicit_filter.1.freq [1,O], .mixer.filter_fn.implicit_filter.6.weight [d,O],
 * .mixer.out_proj.weight/bias, .norm2.<p>, .mlp.fc1.weight/bias, .mlp.fc2.weight/bias; backbone.ln_f.<p>;
 * with classes: head.weight [classes,d], head.bias. */
#ifndef DERF_HYENA_H
#define DERF_HYENA_H

#include <stdint.h>
#include "derf/norm.h"
#include "derf/optim.h"

typedef struct {
    int vocab;        /* 16 (12 ids padded to a multiple of 8) */
    int d_model, n_layer, d_inner;   /* d, L, MLP width (4d) */
    int filter_order; /* O: width of the implicit filter MLP (64) */
    int l_max;        /* positional-feature length (upstream: max_length + 2); sequences must be <= l_max */
    float sin_w;      /* init of the Sin frequencies (10) */
    int n_classes;    /* 0: language model; > 0: mean pooling + linear head */
    float emb_scale;  /* > 0: a learnable scalar backbone.embeddings.scale, initialised to this, multiplies the
                       * embedding (derf_scalar_scale_*); 0: none (upstream) */
    derf_norm_spec norm;
} derf_hyena_config;

/* Presets: "tiny" = hyenadna-tiny-1k (d 128, L 2, MLP 512, order 64; 436,096 params with layernorm),
 * "small" (d 128, L 4), "test" (d 16, L 2, MLP 64, order 8, l_max 66). Norm "layernorm" (upstream). */
int derf_hyena_preset(derf_hyena_config *c, const char *name, int l_max, char *err, size_t errlen);
int derf_hyena_check(const derf_hyena_config *c, char *err, size_t errlen);

typedef struct derf_hyena_acts derf_hyena_acts; /* opaque */

typedef struct {
    derf_hyena_config cfg;
    derf_params params;
    int max_B, max_T;
    derf_hyena_acts *a;
    int B, T, has_targets;
    float *logits;   /* LM: [B,T,V]; classifier: [B,classes] */
    float loss;
} derf_hyena;

int derf_hyena_build(derf_hyena *m, const derf_hyena_config *cfg, int max_B, int max_T, char *err, size_t errlen);
/* Upstream init: every Linear (filter MLP included) N(0, 0.02), biases 0, embedding N(0, 0.02), out_proj and
 * fc2 weights N(0, 0.02/sqrt(2L)); short conv like PyTorch's Conv1d default (U(+-1/sqrt(3)) for weight and
 * bias); filter bias D ~ N(0,1); Sin freq = sin_w; norms from the spec. Deterministic in seed. */
void derf_hyena_init(derf_hyena *m, uint64_t seed);
/* tokens [B,T]. LM: targets [B,T] (< 0 ignored). Classifier: targets [B] (class ids). targets NULL: logits
 * only (returns NAN). Returns the mean cross-entropy. */
float derf_hyena_forward(derf_hyena *m, const int32_t *tokens, const int32_t *targets, int B, int T);
/* Backward of scale * the last loss; ADDS into m->params.grads. */
void derf_hyena_backward(derf_hyena *m, float scale);
void derf_hyena_free(derf_hyena *m);
/* Config as safetensors metadata (model=hyena, ...). Returns the count or -1 if max is too small. */
int derf_hyena_config_to_meta(const derf_hyena_config *c, char keys[][32], char vals[][128], int max);

#endif
