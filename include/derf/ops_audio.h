/* derf/ops_audio.h: the CPU ops wav2vec 2.0 adds to ops.h: grouped strided 1-D convolution (im2col +
 * cblas), GroupNorm, weight normalization, the Gumbel product quantizer with its straight-through
 * gradient and diversity penalty, and the InfoNCE contrastive loss over given negatives.
 * Conventions as in ops.h: outputs first, sizes last; every backward ADDS into the gradients it is
 * given, any gradient pointer may be NULL. Sequences are channels-last: x[B,T,C]. */
#ifndef DERF_OPS_AUDIO_H
#define DERF_OPS_AUDIO_H

#include <stddef.h>
#include <stdint.h>

/* Output length of a conv: floor((T + 2P - K)/S) + 1 (0 when T + 2P < K). */
int derf_conv1d_len(int T, int K, int S, int P);

/* Grouped 1-D convolution, PyTorch Conv1d(Cin, Cout, K, stride S, padding P, groups G) on channels-last
 * data: x[B,T,Cin] -> y[B,To,Cout], w[Cout, Cin/G, K] (PyTorch layout), b[Cout] or NULL. To may be smaller
 * than derf_conv1d_len (the trailing frames are dropped: fairseq's SamePad for an even kernel).
 * cols: scratch of To * (Cin/G) * K floats. */
void derf_conv1d_forward(float *y, float *cols, const float *x, const float *w, const float *b, int B, int T,
                         int Cin, int Cout, int K, int S, int P, int G, int To);
/* dy[B,To,Cout] -> dx[B,T,Cin] += ..., dw += ..., db += ... . cols, dcols: scratch of To*(Cin/G)*K floats each. */
void derf_conv1d_backward(float *dx, float *dw, float *db, float *cols, float *dcols, const float *dy,
                          const float *x, const float *w, int B, int T, int Cin, int Cout, int K, int S, int P,
                          int G, int To);

/* GroupNorm(G, C) over x[B,T,C]: each group of C/G channels is normalised over its channels and all T
 * frames, then y = xhat * gamma[c] + beta[c] (gamma/beta may be NULL: no affine). mean, rstd: [B*G]. */
void derf_groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                            const float *beta, float eps, int B, int T, int C, int G);
void derf_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                             const float *mean, const float *rstd, const float *gamma, int B, int T, int C, int G);

/* Weight normalization along the last axis (torch weight_norm(dim=-1) of a [R..., K] tensor seen as
 * v[R,K]): w[r,k] = g[k] * v[r,k] / ||v[:,k]||. norm[K] is saved for backward. */
void derf_weight_norm_forward(float *w, float *norm, const float *v, const float *g, int R, int K);
void derf_weight_norm_backward(float *dv, float *dg, const float *dw, const float *v, const float *g,
                               const float *norm, int R, int K);

/* Gumbel product quantizer (fairseq GumbelVectorQuantizer after its weight projection): logits
 * l[N, G*V], codebook cb[G*V, Dv] -> q[N, G*Dv], the concatenation over groups of the selected entries.
 * Training (u != NULL, uniforms in (0,1)): the entry is argmax of y = softmax((l - log(-log u))/tau)
 * and ysoft[N,G*V] keeps y for the straight-through backward. Evaluation (u == NULL): argmax of l,
 * ysoft unused. idx[N*G] receives the selected entry of each group. */
void derf_gumbel_quant_forward(float *q, int32_t *idx, float *ysoft, const float *l, const float *u,
                               const float *cb, float tau, int N, int G, int V, int Dv);
/* Straight-through: the forward used one-hot(idx) = hard - soft.detach() + soft, so
 * dl += softmax-Jacobian(ysoft)/tau applied to dy[v] = dq_g . cb[g,v] (skipped when dl or ysoft is NULL),
 * dcb[g,idx] += dq_g. */
void derf_gumbel_quant_backward(float *dl, float *dcb, const float *dq, const int32_t *idx, const float *ysoft,
                                const float *cb, float tau, int N, int G, int V, int Dv);

/* Diversity penalty: p_g = mean over the N rows of softmax(l[n, g, :]); prob_perplexity =
 * sum_g exp(-sum_v p log(p + 1e-7)); returns (G*V - prob_perplexity)/(G*V) and writes prob_perplexity
 * to *ppl (may be NULL). If dl is non-NULL, ADDS scale * d(return)/dl. */
float derf_quant_diversity(float *dl, float *ppl, const float *l, float scale, int N, int G, int V);

/* InfoNCE (fairseq wav2vec criterion, infonce): c[M,F] predictions, q[M,F] targets, codes[M*G] the quantizer's
 * code index of each target in each of its G groups, neg[M*K] row indices into q. logits[M,K+1]: column 0
 * cos(c_m, q_m)/temp, column 1+j cos(c_m, q_neg[m,j])/temp, -inf where the negative has the positive's code in
 * every group. fairseq masks negatives whose target vector equals the positive's; targets of equal codes are
 * equal by construction, and deciding on the codes keeps the mask independent of how a BLAS kernel rounds
 * identical rows at different positions (bit-equality of sgemm rows is not promised). Returns sum_m
 * cross-entropy(logits_m, class 0). *correct (may be NULL) counts rows whose argmax is 0 and whose argmin is
 * not (fairseq's accuracy). If dc/dq are non-NULL, ADDS scale * the gradient of the returned sum (dq gets both
 * positive and negative terms). */
double derf_infonce(float *logits, int *correct, float *dc, float *dq, const float *c, const float *q,
                    const int32_t *codes, int G, const int32_t *neg, int M, int F, int K, float temp, float scale);

#endif
