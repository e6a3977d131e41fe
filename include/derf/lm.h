/* derf/lm.h: the GPT-2 language-model trainer (the paper's Table 21 recipe, scaled down) and sampling.
 *
 * Training (recipe.md 3.3 and 6): random windows of seq+1 tokens from a token shard (offsets from a
 * seeded PCG32 whose state is saved with every checkpoint, so a resumed run draws the same batches),
 * gradient accumulation of `accum` micro-batches of `batch` windows per optimizer step, AdamW
 * (0.9, 0.95, eps 1e-8) with weight decay only on the 2-D tensors (wte, wpe, Linear weights), linear
 * warmup then cosine decay to min_lr, global-norm clipping. Validation loss every eval_every steps on
 * a fixed set of eval_windows windows of the validation shard (evenly spaced, no randomness), and at
 * the end the evaluation-mode training loss on a fixed set of windows of the training shard.
 *
 * Run folder (o->out): model.safetensors (weights + model config metadata, what `derf sample` reads),
 * state.safetensors (weights, adam_m.*, adam_v.*, metadata step / rng_state / rng_inc / format
 * derf-lm-1 / data_vocab and the caller's extra metadata, e.g. the CLI options), log.jsonl. Both
 * files are written at every validation and at the end; writes are atomic. A NaN/inf loss, gradient
 * norm or parameter stops the run (res->diverged) WITHOUT writing: the last good checkpoint stays.
 *
 * Under mpirun (derf/dist.h, docs/distributed.md) training is data-parallel: `batch` is the global
 * micro-batch, split evenly over the processes; only rank 0 writes. */
#ifndef DERF_LM_H
#define DERF_LM_H

#include <stddef.h>
#include <stdint.h>
#include "derf/gpt2.h"
#include "derf/rng.h"
#include "derf/safetensors.h"
#include "derf/textdata.h"

typedef struct {
    derf_gpt2_config model;   /* model.vocab 0: the shards' vocabulary rounded up to a multiple of 64
                                 (GPT-2's 50257 -> 50304, as nanoGPT pads it) */
    const char *data;         /* folder with train.bin and val.bin (derf shards; `derf data text`) */
    const char *train_path, *val_path; /* override the two shard paths (NULL: data/train.bin, data/val.bin) */
    int steps;                /* optimizer steps of the schedule */
    int batch, seq, accum;    /* windows per micro-batch, tokens per window (0: block_size), micro-batches per step */
    float lr, min_lr, weight_decay, beta1, beta2, clip;
    int warmup;               /* linear warmup steps */
    int eval_every;           /* steps between validations + checkpoints (0: only at the end) */
    int eval_windows;         /* windows of seq tokens in each validation / the final train-loss evaluation */
    int eval_train_loss;      /* 1: evaluation-mode training loss at the end */
    uint64_t seed;            /* init and batch sampling */
    int max_steps;            /* stop (and save) after this many steps of the schedule (0: all) */
    int log_every;            /* steps between progress lines and train log records */
    int quiet;
    const char *out;          /* run folder (created); NULL: write nothing */
    const char *resume;       /* run folder to continue from (its state.safetensors) */
    const char *device;       /* "cpu" (NULL too) or "cuda" (bf16 activations, fp32 master weights; needs
                                 `make CUDA=1`); checkpoints are the same files either way */
    const derf_st_meta *meta; /* extra metadata stored in both checkpoint files */
    int nmeta;
} derf_lm_opts;

#define DERF_LM_MAX_CURVE 4096

typedef struct {
    int steps, total_steps, diverged;
    long long params;                 /* parameter count */
    int vocab, data_vocab;            /* the model's vocabulary and the shards' */
    float final_loss;                 /* mean training loss of the last log interval */
    float val_loss;                   /* last validation loss (NAN if none) */
    float train_loss_eval;            /* evaluation-mode training loss at the end (-1: not run) */
    double seconds, tokens_per_s;     /* wall time of this call; training throughput (no evaluation time) */
    long long tokens;                 /* tokens trained on, over the whole run (resumed runs included) */
    int ncurve;                       /* validation curve of this call */
    int curve_step[DERF_LM_MAX_CURVE];
    float curve_val[DERF_LM_MAX_CURVE];
    char diverged_msg[200];
} derf_lm_result;

void derf_lm_opts_default(derf_lm_opts *o);

/* Trains (or continues o->resume), evaluates, writes o->out. Returns 0, or -1 with one error line
 * (missing or malformed shards, tokens outside the model's vocabulary, sizes). Divergence is not an
 * error: it is reported in res->diverged / res->diverged_msg. */
int derf_lm_train(const derf_lm_opts *o, derf_lm_result *res, char *err, size_t errlen);

/* Mean next-token loss over nwin windows of T+1 tokens of s, evenly spaced from its start to its end
 * (a fixed set), evaluated in micro-batches of up to m->max_batch. T <= m->max_T, s->n >= T+1.
 * In a data-parallel run (derf/dist.h) every process must call it: the windows are split over them. */
float derf_lm_eval_loss(derf_gpt2 *m, const derf_shard *s, int T, int nwin);

/* Loads a GPT-2 checkpoint (model.safetensors or state.safetensors of a run) into a freshly built
 * model (batch max_batch x max_T; max_T 0: block_size). *data_vocab (may be NULL) gets the metadata's
 * data_vocab, or the model's vocab when absent. Returns 0 or -1 with one error line. */
int derf_lm_load(derf_gpt2 *m, const char *path, int max_batch, int max_T, int *data_vocab,
                 char *err, size_t errlen);

typedef struct {
    float temperature;   /* 0: greedy (argmax) */
    int top_k;           /* keep the k most likely tokens (0: all) */
    float top_p;         /* nucleus: the smallest set with probability >= top_p (1: all) */
    uint64_t seed;
    int vocab_limit;     /* only ids < vocab_limit are sampled (the padded rows never are); 0: the model's */
} derf_lm_sample_opts;

/* Picks the next token from one position's logits lg[0..Vl) as derf_lm_sample does (greedy, or
 * temperature + top-k + top-p with one draw of r); sc: Vl entries of scratch. */
typedef struct { float v; int i; } derf_lm_scored;
int derf_lm_pick(const float *lg, int Vl, const derf_lm_sample_opts *so, derf_rng *r, derf_lm_scored *sc);
/* Checks sampling options and lengths (n_prompt >= 1, length >= 0): 0, or -1 with one error line. */
int derf_lm_sample_check(const derf_lm_sample_opts *so, int n_prompt, int length, char *err, size_t errlen);

/* Appends `length` sampled tokens to the n_prompt prompt ids (n_prompt >= 1): each step runs the whole
 * context (its last block_size tokens) through the model (no KV cache) and samples from the last
 * position's logits. out gets the `length` new ids. The model needs max_batch >= 1 and
 * max_T = block_size. Deterministic for a seed. Returns 0 or -1 with one error line. */
int derf_lm_sample(derf_gpt2 *m, const int32_t *prompt, int n_prompt, int length, const derf_lm_sample_opts *so,
                   int32_t *out, char *err, size_t errlen);

#endif
