/* derf/cuda.h: the CUDA backend (built with `make CUDA=1`, docs/cuda.md). The same ops as
 * derf/ops.h and derf/norm.h, on device pointers, with activations in float32 or bfloat16
 * (derf_dtype) and float32 math, parameters, parameter gradients and optimizer state.
 * Conventions follow the CPU ops: outputs first, sizes last, backward ADDS into the parameter
 * gradients. Every reduction over rows (alpha, s, gamma, beta, bias, norms, losses) is done in a
 * fixed order (per-block partial sums, then a second pass), so results are bitwise reproducible
 * run to run on the same GPU: no atomics on floats anywhere.
 * Errors (no device, CUDA or cuBLAS failures) print one line naming the call and exit(1), except
 * derf_cuda_init, which returns -1 with a message so callers can fall back or explain. */
#ifndef DERF_CUDA_H
#define DERF_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "derf/norm.h"
#include "derf/ops.h"
#include "derf/optim.h"
#include "derf/gpt2.h"
#include "derf/vit.h"

typedef enum { DERF_F32 = 0, DERF_BF16 = 1 } derf_dtype;

/* Picks device 0 (under mpirun: the GPU of the process's rank on its machine, derf_dist_gpu),
 * creates the cuBLAS / cuBLASLt handles and workspace. 0 on success; -1 (and a one-line reason in
 * err) when there is no usable device. Safe to call more than once. */
int derf_cuda_init(char *err, size_t errlen);
const char *derf_cuda_device_name(void);
void derf_cuda_sync(void);                           /* waits for the GPU, checks for errors */

void *derf_cuda_malloc(size_t bytes);                /* zero-filled */
void derf_cuda_free(void *p);
void derf_cuda_upload(void *dst, const void *src, size_t bytes);
void derf_cuda_download(void *dst, const void *src, size_t bytes);
void derf_cuda_zero(void *p, size_t bytes);
/* float32 <-> dtype conversions between device buffers (round to nearest even for bf16). */
void derf_cuda_convert(void *dst, derf_dtype dst_dt, const void *src, derf_dtype src_dt, size_t n);
size_t derf_dtype_size(derf_dtype dt);

/* Median time in ms of reps calls of fn(ctx) after warmup untimed ones (cudaEvent timing). */
float derf_cuda_time_ms(void (*fn)(void *ctx), void *ctx, int warmup, int reps);

/* ---- norms (every spec of derf/norm.h: point-wise family with transforms, LayerNorm, RMSNorm) */
/* x, y: N x C in dt; params, stats (derf_norm_stats_count floats; may be NULL for point-wise) fp32. */
void derf_cuda_norm_forward(const derf_norm_spec *spec, void *y, float *stats, const void *x,
                            const float *params, int N, int C, derf_dtype dt);
/* dparams (fp32, may be NULL) += parameter gradients; dx (dt, may be NULL) = or += (accumulate)
 * the input gradient. */
void derf_cuda_norm_backward(const derf_norm_spec *spec, void *dx, float *dparams, const void *dy,
                             const void *x, const float *params, const float *stats, int N, int C,
                             derf_dtype dt, int accumulate);

/* ---- element-wise and small ops ----------------------------------------------------------- */
void derf_cuda_gelu_forward(void *out, const void *inp, size_t n, derf_gelu_kind kind, derf_dtype dt);
void derf_cuda_gelu_backward(void *dinp, const void *dout, const void *inp, size_t n,
                             derf_gelu_kind kind, derf_dtype dt);          /* dinp += */
void derf_cuda_residual_forward(void *out, const void *a, const void *b, size_t n, derf_dtype dt);
/* out = s[0] * in (s: one fp32 on the device); backward: ds[0] += sum(dx * in) (fixed order), then
 * dx *= s[0] in place. */
void derf_cuda_scale_forward(void *out, const void *in, const float *s, size_t n, derf_dtype dt);
void derf_cuda_scale_backward(float *ds, void *dx, const void *in, const float *s, size_t n, derf_dtype dt);

/* out[B,T,C] (dt) = wte[tok] + wpe[t]; tok on the device, wte/wpe fp32. */
void derf_cuda_embed_forward(void *out, const int32_t *tok, const float *wte, const float *wpe,
                             int B, int T, int C, derf_dtype dt);
/* dwte[V,C] += scatter of dout by token, dwpe += sum over b. tok_host: the same tokens in HOST
 * memory (they are bucketed on the host so the sum per vocabulary row has a fixed order). */
void derf_cuda_embed_backward(float *dwte, float *dwpe, const void *dout, const int32_t *tok_host,
                              int B, int T, int C, int V, derf_dtype dt);

/* Fused softmax cross-entropy (derf_xent_forward_backward): targets on the device (< 0: row
 * ignored); dlogits (dt, may be NULL) += scale * (softmax - q) / kept, or = that (ignored rows 0)
 * when !accumulate (no memset before). Returns the mean loss (synchronizes). */
float derf_cuda_xent_forward_backward(void *dlogits, const void *logits, const int32_t *targets,
                                      float smoothing, float scale, int N, int V, derf_dtype dt, int accumulate);

/* ---- ViT stem, pooling, drop path, EMA (src/cuda/vit.cu) ------------------------------------ */
/* im2col of images[B,Cin,H,W] (fp32) into cols[B*NP, Cin*P*P] (dt), rows in patch order, columns in
 * (channel, ky, kx) order: derf_patch_embed_forward's layout, so cols @ w^T is the patch embedding. */
void derf_cuda_patch_cols(void *cols, const float *img, int B, int Cin, int H, int W, int P, derf_dtype dt);
/* x0[B,T,D] (dt) = [cls ; pe[B,T-1,D]] + pos[T,D] (cls, pos fp32). Backward: dpos += sum_b dx0,
 * dcls += sum_b dx0[b,0], dpe = dx0[:,1:] (fixed order over b). */
void derf_cuda_vit_tokens_forward(void *x0, const void *pe, const float *cls, const float *pos, int B, int T,
                                  int D, derf_dtype dt);
void derf_cuda_vit_tokens_backward(float *dpos, float *dcls, void *dpe, const void *dx0, int B, int T, int D,
                                   derf_dtype dt);
/* pooled[B,D] = mean of x[B,T,D] over tokens 1..T-1 (avg) or token 0 (avg = 0). Backward SETS
 * dx[B,T,D] (zero where the pooling did not look). */
void derf_cuda_pool_forward(void *pooled, const void *x, int B, int T, int D, int avg, derf_dtype dt);
void derf_cuda_pool_backward(void *dx, const void *dpooled, int B, int T, int D, int avg, derf_dtype dt);
/* out[b, :] = in[b, :] * keep[b] over rows of `rest` elements (keep on the device; out may be in). */
void derf_cuda_row_scale(void *out, const void *in, const float *keep, int B, size_t rest, derf_dtype dt);
/* ema[n] = decay * ema + (1 - decay) * params (derf_ema_update) */
void derf_cuda_ema_update(float *ema, const float *params, size_t n, float decay);

/* ---- matrix products (cuBLASLt, fp32 accumulation) ----------------------------------------- */
/* out[N,OC] (dt) = inp[N,C] @ w[OC,C]^T + b[OC]; inp, w in dt; b fp32 or NULL. */
void derf_cuda_linear_forward(void *out, const void *inp, const void *w, const float *b,
                              int N, int C, int OC, derf_dtype dt);
/* dinp (dt) += dout @ w; dw (fp32) += dout^T @ inp; db (fp32) += column sums. Any may be NULL. */
void derf_cuda_linear_backward(void *dinp, float *dw, float *db, const void *dout, const void *inp,
                               const void *w, int N, int C, int OC, derf_dtype dt);

/* Attention on packed qkv[B,T,3C] (derf_attention_forward): cuBLAS strided-batched products and a
 * fused (causal) softmax. out[B,T,C], att[B,NH,T,T] (softmax, kept for backward), all in dt. */
void derf_cuda_attention_forward(void *out, void *att, const void *qkv, int B, int T, int C, int NH,
                                 int causal, derf_dtype dt);
void derf_cuda_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *att,
                                  int B, int T, int C, int NH, int causal, derf_dtype dt); /* dqkv += */

/* ---- optimizer on device slabs laid out as `layout` (derf_params: only t[], n, total used) ---- */
void derf_cuda_adamw_step(const derf_params *layout, float *params, const float *grads, float *m,
                          float *v, const derf_adamw_cfg *cfg, int step);
/* Global L2 norm of grads[n] (double partials, fixed order); scales like derf_clip_grad_norm. */
float derf_cuda_clip_grad_norm(float *grads, size_t n, float max_norm);

/* ---- data-parallel training over GPUs (src/cuda/nccl.cu; docs/distributed.md) --------------------
 * One NCCL communicator over the MPI processes, one GPU each. derf_cuda_dist_init(rc, ...) is called
 * by every process with the result of its own derf_cuda_init: the processes first agree (a small MPI
 * all-reduce) that every one has its GPU, so none is left waiting in NCCL; then rank 0 makes the
 * ncclUniqueId, MPI broadcasts it and ncclCommInitRank joins them. Returns 0 (also on one process,
 * where it does nothing), or -1 with one error line (a process without a GPU; built without NCCL).
 * derf_cuda_dist_mean_floats: x[n] on the device = the mean over the processes (one ncclAllReduce,
 * sum, on the stream every kernel runs on, then x *= 1/N, as derf_dist_mean_floats does on the CPU).
 * NCCL failures print one line (ncclGetErrorString) and end the job (derf_dist_abort). */
int derf_cuda_dist_init(int local_rc, char *err, size_t errlen);
void derf_cuda_dist_mean_floats(float *x, size_t n);

/* ---- GPT-2 on the GPU (src/cuda/gpt2.cu) --------------------------------------------------------
 * Wraps a built CPU model (derf/gpt2.h): its config, tensor table and host slabs stay the source
 * of truth for init and checkpoints (upload after init/resume, download before saving: the
 * checkpoint files are the CPU ones). On the device: fp32 params, grads, AdamW m and v in the same
 * layout, a copy of the weights in the activation dtype for the matrix products (refreshed by
 * derf_gpt2_cuda_adamw_step), and the activations of batches up to the model's max_batch x max_T. */
typedef struct derf_gpt2_cuda derf_gpt2_cuda;
derf_gpt2_cuda *derf_gpt2_cuda_new(derf_gpt2 *host, derf_dtype dt, char *err, size_t errlen);
void derf_gpt2_cuda_upload(derf_gpt2_cuda *g);    /* host params, m, v -> device */
void derf_gpt2_cuda_download(derf_gpt2_cuda *g);  /* device params, m, v (and grads) -> host slabs */
/* tokens, targets: host arrays [B,T] (targets may be NULL); returns the mean loss (NAN without targets) */
float derf_gpt2_cuda_forward(derf_gpt2_cuda *g, const int32_t *tokens, const int32_t *targets, int B, int T);
void derf_gpt2_cuda_backward(derf_gpt2_cuda *g, float scale);   /* grads += d(scale * loss) */
void derf_gpt2_cuda_zero_grad(derf_gpt2_cuda *g);
void derf_gpt2_cuda_mean_grads(derf_gpt2_cuda *g);              /* over the MPI processes (NCCL) */
float derf_gpt2_cuda_clip_grad_norm(derf_gpt2_cuda *g, float max_norm);
void derf_gpt2_cuda_adamw_step(derf_gpt2_cuda *g, const derf_adamw_cfg *cfg, int step);
void derf_gpt2_cuda_free(derf_gpt2_cuda *g);

/* ---- ViT on the GPU (src/cuda/vit.cu) ----------------------------------------------------------
 * Wraps a built CPU model (derf/vit.h) like derf_gpt2_cuda: the host slabs (and the trainer's EMA
 * slab, ema, may be NULL) are the source of truth for init and checkpoints; on the device: fp32
 * params, grads, AdamW m, v and EMA, a dt copy of the weights for the products, and the activations
 * of batches up to the model's max_batch. forward takes host images and writes the host logits and
 * features (m->logits, m->features); the loss (soft targets: mixup, smoothing) is the CPU's, on the
 * host, and backward takes the host dlogits. */
typedef struct derf_vit_cuda derf_vit_cuda;
derf_vit_cuda *derf_vit_cuda_new(derf_vit *host, derf_dtype dt, float *ema, char *err, size_t errlen);
void derf_vit_cuda_upload(derf_vit_cuda *g);      /* host params, m, v, EMA -> device */
void derf_vit_cuda_download(derf_vit_cuda *g);    /* device params, grads, m, v, EMA -> host */
void derf_vit_cuda_forward(derf_vit_cuda *g, const float *images, int B, int train, derf_rng *rng);
void derf_vit_cuda_backward(derf_vit_cuda *g, const float *dlogits, int B);   /* grads += */
void derf_vit_cuda_free(derf_vit_cuda *g);
/* zeroing the gradients, clipping, AdamW, the EMA update and swap: through the derf_vit_* functions of
 * derf/vit.h once derf_vit_cuda_attach has attached the model (what the trainer and cuda_check use) */

#ifdef __cplusplus
}
#endif
#endif
