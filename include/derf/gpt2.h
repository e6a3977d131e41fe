/* derf/gpt2.h: GPT-2 as nanoGPT builds it (the paper's language-model runs, docs/paper.md section 5.3):
 * tied token embedding wte (also the LM head), learned positions wpe, pre-norm blocks
 *     x += attn.c_proj(CausalAttn(attn.c_attn(ln_1(x))));  x += mlp.c_proj(GELU_tanh(mlp.c_fc(ln_2(x))))
 * then ln_f and logits = ln_f(x) @ wte^T. Every norm (ln_1, ln_2, ln_f) is the same --norm spec.
 * With a point-wise norm (derf, dyt, any zoo function) the paper's recipe adds a learnable scalar
 * `shared_scale` (init sqrt(n_embd), no weight decay) multiplying (token emb + pos emb), and gives the
 * ln_1 / ln_2 / ln_f layers their own alpha inits (attn_alpha / ffn_alpha / final_alpha).
 * No dropout (nanoGPT's GPT-2 runs use dropout 0).
 *
 * Tensor names are HF GPT2Model's state-dict names: wte.weight [V,C], wpe.weight [maxT,C],
 * shared_scale [1] (only with a point-wise norm), h.{i}.ln_1.<p>, h.{i}.attn.c_attn.weight/bias,
 * h.{i}.attn.c_proj.weight/bias, h.{i}.ln_2.<p>, h.{i}.mlp.c_fc.weight/bias,
 * h.{i}.mlp.c_proj.weight/bias, ln_f.<p>   (<p>: the norm's tensors, see docs/norm-spec.md),
 * [lm_head.bias [V] with logit_bias].
 * WEIGHT LAYOUT: the linear weights are stored in nn.Linear layout [out, in] (c_attn [3C,C],
 * attn.c_proj [C,C], c_fc [4C,C], mlp.c_proj [C,4C]), as nanoGPT stores them. HF's Conv1D stores the
 * same four tensors transposed ([in, out]): transpose them when exchanging weights with HF. Only
 * names differ from nanoGPT (which prefixes `transformer.` and has a separate tied lm_head.weight). */
#ifndef DERF_GPT2_H
#define DERF_GPT2_H

#include <stddef.h>
#include <stdint.h>
#include "derf/norm.h"
#include "derf/ops.h"
#include "derf/optim.h"

typedef struct {
    int vocab;              /* V: rows of wte (tokens must be < V); nanoGPT pads 50257 to 50304 */
    int block_size;         /* maxT: rows of wpe, the longest context */
    int n_layer, n_head, n_embd;   /* L, NH, C (C % NH == 0); the MLP is 4C wide */
    int bias;               /* 1: the Linear layers have biases (HF GPT-2); 0: none (nanoGPT bias=False) */
    derf_norm_spec norm;    /* ln_1, ln_2 and ln_f */
    int shared_scale;       /* -1: auto (on exactly when the norm is point-wise: the paper's recipe);
                               0: off; 1: on. derf_gpt2_build stores the resolved 0 or 1. */
    /* alpha init of the point-wise ln_1 / ln_2 / ln_f layers (the Derf GPT-2 patch's attn_alpha,
     * ffn_alpha, dec_alpha; its defaults, and the presets', are 1.0). 0 means "the spec's alpha"
     * (norm.alpha_init, e.g. derf:alpha=0.5). Ignored by layernorm / rmsnorm. */
    float attn_alpha, ffn_alpha, final_alpha;
    float shared_scale_init;  /* init of shared_scale (0: sqrt(n_embd), the recipe's) */
    int logit_bias;           /* 1: a learnable bias on the logits, lm_head.bias [V] (no weight decay, init 0;
                                 derf's addition, not GPT-2's or the paper's: the trainer can start it at the
                                 data's unigram log-probabilities, docs/gpt2.md). CPU only. */
} derf_gpt2_config;

/* Fills every field of cfg from a preset (parameter counts with the derf norm / layernorm, bias on):
 *   "test"  V 64,    maxT 16,   L 2,  C 16,  NH 2   (unit tests; 7,883 / 7,872)
 *   "mini"  V 256,   maxT 128,  L 4,  C 128, NH 4   (842,515 / 842,496)
 *   "tiny"  V 256,   maxT 256,  L 6,  C 192, NH 6   (2,767,899 / 2,767,872)
 *   "small" V 256,   maxT 256,  L 6,  C 384, NH 6   (nanoGPT's shakespeare-char shape; 10,844,187 / 10,844,160)
 *   "124m"  V 50304, maxT 1024, L 12, C 768, NH 12  (GPT-2 small: 124,475,955 / 124,475,904; GPT-2's
 *                                                     50257 tokens padded to 50304, a multiple of 64,
 *                                                     as nanoGPT does; the padded rows are never targets)
 * The byte-level presets take V 256; set cfg->vocab for another tokenizer. Defaults: bias 1,
 * norm "derf" (overwrite cfg->norm to choose another), shared_scale auto, alphas 1.0 each.
 * Returns 0, or -1 with an error line naming the presets. */
int derf_gpt2_preset(derf_gpt2_config *cfg, const char *name, char *err, size_t errlen);
/* Checks a config (sizes positive and divisible, flags in range). Returns 0 or -1 with one error line. */
int derf_gpt2_check(const derf_gpt2_config *cfg, char *err, size_t errlen);

/* A device that runs the model instead of the CPU (derf_gpt2_cuda_attach installs the GPU one). The
 * host slabs stay the model's checkpoint format: to_host / to_device move params, m, v (and grads to
 * the host) between them and the device. */
typedef struct derf_gpt2_dev {
    void *ctx;
    float (*forward)(void *ctx, const int32_t *tokens, const int32_t *targets, int B, int T);
    void (*backward)(void *ctx, float scale);
    void (*zero_grad)(void *ctx);
    void (*mean_grads)(void *ctx);   /* average the gradients over the MPI processes (NCCL) */
    float (*clip_grad_norm)(void *ctx, float max_norm);
    void (*adamw_step)(void *ctx, const derf_adamw_cfg *cfg, int step);
    void (*to_host)(void *ctx);
    void (*to_device)(void *ctx);
    void (*free)(void *ctx);
} derf_gpt2_dev;

typedef struct {
    derf_gpt2_config cfg;   /* shared_scale resolved to 0 or 1 */
    derf_params params;     /* named tensors (HF names), slabs for params/grads/m/v */
    int max_batch, max_T;   /* activation arena capacity */
    float *acts;            /* one arena for every activation and backward scratch (opaque) */
    size_t acts_size;       /* floats */
    int32_t *tokens, *targets;   /* [max_batch*max_T] copies of the last forward's batch */
    int B, T, has_targets;  /* shape of the last forward */
    float *logits;          /* [B,T,V] after forward (rows of the last forward's shape, contiguous) */
    float loss;             /* mean loss of the last forward (NAN without targets) */
    derf_gpt2_dev *dev;     /* NULL: the CPU; else forward/backward/optimizer run there (logits stay there) */
} derf_gpt2;

/* Registers the tensors and allocates everything for batches up to max_batch x max_T
 * (max_T <= block_size). Returns 0 or -1 with an error line. */
int derf_gpt2_build(derf_gpt2 *m, const derf_gpt2_config *cfg, int max_batch, int max_T,
                    char *err, size_t errlen);
/* nanoGPT init: wte, wpe and every Linear weight ~ N(0, 0.02), except attn.c_proj and mlp.c_proj
 * weights ~ N(0, 0.02/sqrt(2*n_layer)); biases 0; norms from the spec with the per-position alpha;
 * shared_scale = sqrt(n_embd). Deterministic in seed. */
void derf_gpt2_init(derf_gpt2 *m, uint64_t seed);
/* tokens [B,T] in [0, V); targets [B,T] (a target < 0 is ignored; targets may be NULL: logits only).
 * Writes m->logits [B,T,V]; returns the mean cross-entropy over the kept targets (NAN when targets
 * is NULL, 0 when every target is ignored). Allocates nothing. Out-of-range tokens or shapes
 * print a message and abort. */
float derf_gpt2_forward(derf_gpt2 *m, const int32_t *tokens, const int32_t *targets, int B, int T);
/* Backward of scale * (the last forward's mean loss); scale 1 for one batch, 1/accum for gradient
 * accumulation. The forward must have had targets. ADDS into m->params.grads (zero them first for a
 * fresh step). Allocates nothing. */
void derf_gpt2_backward(derf_gpt2 *m, float scale);
void derf_gpt2_free(derf_gpt2 *m);   /* frees the device side too */

/* The training step's parameter operations, on the CPU slabs or on the attached device. */
void derf_gpt2_zero_grad(derf_gpt2 *m);
/* The gradients = their mean over the MPI processes (derf/dist.h; no-op on one process): one
 * all-reduce of the slab, MPI on the CPU, NCCL on the device. */
void derf_gpt2_mean_grads(derf_gpt2 *m);
float derf_gpt2_clip_grad_norm(derf_gpt2 *m, float max_norm);
void derf_gpt2_adamw_step(derf_gpt2 *m, const derf_adamw_cfg *cfg, int step);
void derf_gpt2_sync_host(derf_gpt2 *m);    /* device params, grads, m, v -> host slabs (no-op on the CPU) */
void derf_gpt2_sync_device(derf_gpt2 *m);  /* host params, m, v -> device (after init or a checkpoint load) */
/* Moves the model onto a CUDA GPU (src/cuda/gpt2.cu; a build without `make CUDA=1` answers -1 with
 * "built without CUDA"): GPU 0, or under mpirun the GPU of the process's rank on its machine.
 * bf16: 1 for bf16 activations (fp32 master weights either way), 0 for fp32. Uploads the current
 * host params, m, v. Returns 0, or -1 with one error line. m NULL: only checks that a GPU is usable
 * (under mpirun: on every process, then joins them in an NCCL communicator; every process must
 * call it). */
int derf_gpt2_cuda_attach(derf_gpt2 *m, int bf16, char *err, size_t errlen);

/* Config <-> safetensors __metadata__ (key/value strings), so checkpoints describe their model.
 * Keys: model=gpt2, vocab, block_size, n_layer, n_head, n_embd, bias, norm, shared_scale,
 * attn_alpha, ffn_alpha, final_alpha. to_meta returns the count or -1 if max is too small. */
int derf_gpt2_config_to_meta(const derf_gpt2_config *cfg, char keys[][32], char vals[][128], int max);
int derf_gpt2_config_from_meta(derf_gpt2_config *cfg, const char *(*get)(void *ctx, const char *key),
                               void *ctx, char *err, size_t errlen);

#endif
