/* derf/ops.h: CPU reference ops, forward and backward, llm.c style: outputs first, sizes last.
 * Shape letters: B batch, T tokens, C channels, OC output channels, NH heads, V classes/vocab.
 * Every backward ADDS into the gradients it is given; any gradient pointer may be NULL (skipped).
 * Tensors are float32, row-major, contiguous. */
#ifndef DERF_OPS_H
#define DERF_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "derf/rng.h"

/* Linear, nn.Linear layout: out[N,OC] = inp[N,C] @ w[OC,C]^T + b[OC] (b may be NULL). cblas sgemm. */
void derf_linear_forward(float *out, const float *inp, const float *w, const float *b,
                         int N, int C, int OC);
void derf_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, int N, int C, int OC);
/* The same with dinp OVERWRITTEN (dinp = dout @ w; dw, db still added to): spares the caller the
 * zeroing pass over a scratch input gradient (the models' step loops). */
void derf_linear_backward_set(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, int N, int C, int OC);

/* GELU: tanh approximation (GPT-2, "gelu_new") or the exact erf form (timm ViT default). */
typedef enum { DERF_GELU_TANH, DERF_GELU_ERF } derf_gelu_kind;
void derf_gelu_forward(float *out, const float *inp, size_t n, derf_gelu_kind kind);
void derf_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, derf_gelu_kind kind);
/* The same writing dinp = gelu'(inp) * dout instead of adding (no zeroing pass; dinp may be dout itself). */
void derf_gelu_backward_set(float *dinp, const float *dout, const float *inp, size_t n, derf_gelu_kind kind);

/* Multi-head softmax attention on packed qkv[B,T,3C] (q | k | v, head h uses channels h*hs..).
 * out[B,T,C]; att[B,NH,T,T] saves the softmax probabilities for backward (zero above the
 * diagonal when causal). Scale 1/sqrt(hs). */
void derf_attention_forward(float *out, float *att, const float *qkv,
                            int B, int T, int C, int NH, int causal);
/* datt_scratch: B*NH*T*T floats of scratch. */
void derf_attention_backward(float *dqkv, float *datt_scratch, const float *dout,
                             const float *qkv, const float *att, int B, int T, int C, int NH, int causal);
/* The same writing dqkv instead of adding into it (no zeroing pass). */
void derf_attention_backward_set(float *dqkv, float *datt_scratch, const float *dout,
                                 const float *qkv, const float *att, int B, int T, int C, int NH, int causal);

/* Token + learned position embedding: out[B,T,C] = wte[tok[b,t]] + wpe[t] (wpe may be NULL). */
void derf_embed_forward(float *out, const int32_t *tok, const float *wte, const float *wpe,
                        int B, int T, int C);
void derf_embed_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                         int B, int T, int C);
/* A learnable scalar s on a tensor (GPT-2's shared_scale, the DNA models' embedding scale): y[i] = s x[i] (y may be x).
 * Backward: *ds += sum dy[i] x[i] (summed in double), then dy[i] *= s in place, so dy becomes dx. x: the unscaled input. */
void derf_scalar_scale_forward(float *y, const float *x, float s, size_t n);
void derf_scalar_scale_backward(float *dy, float *ds, const float *x, float s, size_t n);

/* Position embedding added in place: x[B,T,C] += pos[T,C]; backward dpos += sum_b dx. */
void derf_add_pos_forward(float *x, const float *pos, int B, int T, int C);
void derf_add_pos_backward(float *dpos, const float *dx, int B, int T, int C);

/* Patch embedding: conv with kernel = stride = P (timm patch_embed.proj).
 * img[B,Cin,H,W] -> out[B,NP,D], NP = (H/P)*(W/P), patches in row-major order.
 * w[D, Cin*P*P] (= PyTorch [D,Cin,P,P]), b[D]. cols: scratch of B*NP*Cin*P*P floats (im2col),
 * kept from forward for backward. No input gradient (images are leaves). */
void derf_patch_embed_forward(float *out, float *cols, const float *img, const float *w, const float *b,
                              int B, int Cin, int H, int W, int P, int D);
void derf_patch_embed_backward(float *dw, float *db, const float *dout, const float *cols,
                               int B, int Cin, int H, int W, int P, int D);

/* Softmax cross-entropy over logits[N,V].
 * Hard targets with label smoothing eps: q = (1-eps) onehot + eps/V. Soft targets: q[N,V] given
 * (mixup / cutmix). Returns the mean loss over N rows; if dlogits is non-NULL it ADDS
 * scale * (softmax - q) / N into it (scale 1 for a plain mean loss).
 * A target < 0 marks a row ignored (not counted in N). */
float derf_xent_forward_backward(float *dlogits, const float *logits, const int32_t *targets,
                                 float smoothing, float scale, int N, int V);
float derf_xent_soft_forward_backward(float *dlogits, const float *logits, const float *q,
                                      float scale, int N, int V);

/* Dropout: mask[n] holds 0 or 1/(1-p) drawn from rng; out = inp * mask. p = 0 copies. */
void derf_dropout_forward(float *out, float *mask, const float *inp, float p, size_t n, derf_rng *rng);
void derf_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);

/* Drop path (stochastic depth) on a residual branch x[B, rest]: keep[b] = 0 or 1/(1-p) per sample.
 * In place: x[b,:] *= keep[b]. Backward: dx[b,:] *= keep[b] (in place as well). */
void derf_drop_path_forward(float *x, float *keep, float p, int B, size_t rest, derf_rng *rng);
/* The same for samples [off, off+B) of a global batch of `total` (data-parallel shards): draws the
 * masks of all `total` samples in order and keeps this share's, so every shard sees the masks a
 * single process with the whole batch would. total = B, off = 0 is derf_drop_path_forward. */
void derf_drop_path_forward_shard(float *x, float *keep, float p, int B, size_t rest, derf_rng *rng,
                                  int total, int off);
void derf_drop_path_backward(float *dx, const float *keep, int B, size_t rest);

/* out = a + b (out may alias a). */
void derf_residual_forward(float *out, const float *a, const float *b, size_t n);

/* Mean over tokens: out[B,C] = mean_t x[B,T0..T,C] (tokens before T0 skipped: class token). */
void derf_mean_pool_forward(float *out, const float *x, int B, int T, int T0, int C);
void derf_mean_pool_backward(float *dx, const float *dout, int B, int T, int T0, int C);

/* Causal long convolution per channel through FFTW (HyenaDNA's fftconv, FFT size 2T, so nothing wraps):
 *     y[b,t,c] = sum_{s<=t} k[c,t-s] u[b,s,c]  (+ D[c] u[b,t,c] when D is non-NULL)
 * u, y: [B,T,C] token-major; k: [C,T] (one filter of T taps per channel). Backward ADDS:
 *     du[b,s,c] += sum_{t>=s} k[c,t-s] dy[b,t,c] + D[c] dy[b,s,c];   dk[c,j] += sum_b sum_t dy[b,t,c] u[b,t-j,c];
 *     dD[c] += sum_{b,t} dy[b,t,c] u[b,t,c]. Plans are cached per size (created under a lock). */
void derf_fftconv_forward(float *y, const float *u, const float *k, const float *D, int B, int T, int C);
void derf_fftconv_backward(float *du, float *dk, float *dD, const float *dy, const float *u, const float *k,
                           const float *D, int B, int T, int C);
/* 1 when the FFTW convolution above is built in; 0 in a `make AUDIO=0` build (src/data/noaudio.c) */
int derf_fftconv_available(void);

#endif
