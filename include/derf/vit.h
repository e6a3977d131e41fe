/* derf/vit.h: Vision Transformer as the paper uses it (timm vit with global_pool='avg'):
 * patch embedding, class token, learned position embedding, pre-norm blocks
 *     x += DropPath(Attn(norm1(x)));  x += DropPath(MLP(norm2(x)))   (MLP: fc1, GELU, fc2)
 * then either global average pooling over the patch tokens + fc_norm (the paper's setting), or the
 * class token after a final `norm` (pool = CLS), and a linear head. Every norm is the same spec
 * (any --norm spec: layernorm, derf, dyt, ...). Tensor names follow timm's state dict. */
#ifndef DERF_VIT_H
#define DERF_VIT_H

#include <stddef.h>
#include "derf/norm.h"
#include "derf/ops.h"
#include "derf/optim.h"
#include "derf/rng.h"

typedef enum { DERF_POOL_AVG, DERF_POOL_CLS } derf_pool;

typedef struct {
    int img, chans, patch;    /* image side, input channels, patch side (img % patch == 0) */
    int dim, depth, heads;    /* width, blocks, attention heads (dim % heads == 0) */
    int mlp_ratio;            /* hidden = mlp_ratio * dim */
    int classes;
    derf_pool pool;
    derf_norm_spec norm;      /* every norm layer; alpha init is norm.alpha_init */
    derf_gelu_kind gelu;      /* timm: exact erf form */
    float drop_path;          /* max rate; block i gets drop_path * i / (depth - 1) (timm) */
} derf_vit_config;

/* Fills every field of cfg from a preset: "tiny" (28x28x1, patch 4, dim 64, depth 4, heads 4),
 * "small" (dim 96, depth 6), "base-mini" (dim 128, depth 8), "test" (8x8x1, dim 16, depth 2, heads 2,
 * 5 classes; for unit tests); see vit.c. Defaults: pool AVG, exact GELU, drop_path 0, norm "derf"
 * (overwrite cfg->norm afterwards to choose another). Returns 0, or -1 with an error line naming
 * the presets. */
int derf_vit_preset(derf_vit_config *cfg, const char *name, char *err, size_t errlen);
/* Checks a config (sizes positive and divisible). Returns 0 or -1 with one error line. */
int derf_vit_check(const derf_vit_config *cfg, char *err, size_t errlen);

/* A device that runs the model instead of the CPU (derf_vit_cuda_attach installs the GPU one). The
 * host slabs stay the checkpoint format: to_host / to_device move params, m, v and the EMA weights
 * given at attach (and the grads, to the host) between them and the device. forward writes the
 * host m->logits and m->features; ema_update / swap_ema work on the device copy of the EMA. */
typedef struct derf_vit_dev {
    void *ctx;
    void (*forward)(void *ctx, const float *images, int B, int train, derf_rng *rng);
    void (*backward)(void *ctx, const float *dlogits, int B);
    void (*zero_grad)(void *ctx);
    float (*clip_grad_norm)(void *ctx, float max_norm);
    void (*adamw_step)(void *ctx, const derf_adamw_cfg *cfg, int step);
    void (*ema_update)(void *ctx, float decay);
    void (*swap_ema)(void *ctx);
    void (*to_host)(void *ctx);
    void (*to_device)(void *ctx);
    void (*free)(void *ctx);
} derf_vit_dev;

typedef struct {
    derf_vit_config cfg;
    derf_params params;       /* named tensors (timm names), slabs for params/grads/m/v */
    int max_batch;
    int T;                    /* tokens = 1 + patches */
    /* activations for backward, sized for max_batch (opaque to users) */
    float *acts;
    size_t acts_size;
    float *logits;            /* [B, classes] after forward */
    /* data-parallel shard (0, 0: none): this model's batch is samples [shard_off, shard_off + B) of a
     * global batch of shard_total, and drop-path masks are drawn for the whole global batch */
    int shard_total, shard_off;
    float *features;          /* [B, dim] after forward: the head's input (fc_norm / norm output) */
    derf_vit_dev *dev;        /* NULL: the CPU; else forward/backward/optimizer run there */
} derf_vit;

/* Registers the tensors and allocates everything for batches up to max_batch. */
int derf_vit_build(derf_vit *m, const derf_vit_config *cfg, int max_batch, char *err, size_t errlen);
/* timm-style init: trunc_normal(std .02) Linear weights and pos_embed, zero biases, cls_token
 * normal(1e-6), conv default (uniform +-1/sqrt(fan_in)), norm parameters from the spec. */
void derf_vit_init(derf_vit *m, uint64_t seed);
/* images: [B, chans, img, img] floats (already normalized). train = 1 enables drop path (rng used).
 * Writes m->logits. */
void derf_vit_forward(derf_vit *m, const float *images, int B, int train, derf_rng *rng);
/* dlogits: [B, classes]. ADDS into m->params.grads (zero them first for a fresh step). */
void derf_vit_backward(derf_vit *m, const float *dlogits, int B);
void derf_vit_free(derf_vit *m);   /* frees the device side too */

/* The training step's parameter operations, on the CPU slabs or on the attached device. */
void derf_vit_zero_grad(derf_vit *m);
float derf_vit_clip_grad_norm(derf_vit *m, float max_norm);
void derf_vit_adamw_step(derf_vit *m, const derf_adamw_cfg *cfg, int step);
void derf_vit_ema_update(derf_vit *m, float *ema, float decay);   /* ema = decay*ema + (1-decay)*params */
/* Swaps the live weights with the EMA ones (call again to swap back): on the CPU the slab pointers
 * m->params.params and *ema, on a device its two buffers. */
void derf_vit_swap_ema(derf_vit *m, float **ema);
void derf_vit_sync_host(derf_vit *m);    /* device params, grads, m, v, EMA -> host slabs (no-op on the CPU) */
void derf_vit_sync_device(derf_vit *m);  /* host params, m, v, EMA -> device */
/* The drop-path scales one training forward draws, in derf_vit_forward's order and with its rng
 * draws: keep[(2*l + j) * B + b] (j 0: attention branch, 1: MLP branch of block l). All 1 unless
 * train and rng. Used by the device forward so both devices drop the same samples. */
void derf_vit_drop_path_draw(const derf_vit *m, float *keep, int B, int train, derf_rng *rng);
/* Moves the model onto the first CUDA GPU (src/cuda/vit.cu; a build without `make CUDA=1` answers -1
 * with "built without CUDA"). bf16: 1 for bf16 activations (fp32 master weights either way), 0 for
 * fp32. ema: the host EMA slab (params.total floats) or NULL. Uploads params, m, v and the EMA.
 * Returns 0, or -1 with one error line. m NULL: only checks that a GPU is usable. */
int derf_vit_cuda_attach(derf_vit *m, int bf16, float *ema, char *err, size_t errlen);

/* Config <-> safetensors __metadata__ (key/value strings), so checkpoints describe their model. */
int derf_vit_config_to_meta(const derf_vit_config *cfg, char keys[][32], char vals[][128], int max);
int derf_vit_config_from_meta(derf_vit_config *cfg, const char *(*get)(void *ctx, const char *key),
                              void *ctx, char *err, size_t errlen);

#endif
