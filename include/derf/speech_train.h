/* derf/speech_train.h: the wav2vec 2.0 pre-training loop on the speech corpus (`derf train-speech`,
 * `derf compare --model wav2vec`), after fairseq's wav2vec2 base recipe rescaled to the run length
 * (docs/paper.md section 5.4):
 *   batches of `batch` random training utterances of at least min_samples, each cropped at a random offset
 *   to the shortest one of the batch (at most crop samples; fairseq's pad=false), int16 / 32768;
 *   masks, negatives and Gumbel uniforms from the run's PCG32 (saved in every checkpoint: exact resume);
 *   Adam (betas 0.9/0.98, eps 1e-6) with decoupled weight decay on the >= 2-D tensors, linear warmup over
 *   warmup_frac of the steps then linear decay to 0, global-norm clipping, Gumbel temperature
 *   max(tau0 * decay^step, tau_min) with decay chosen so tau reaches tau_min at 69% of the run.
 * Validation: every validation utterance (at least min_samples), centre-cropped to crop samples, one per
 * forward, in evaluation mode (argmax codes, no noise) with masks and negatives from a FIXED seed, so every
 * norm and every validation sees the same draws. Reported: loss in bits per masked frame (fairseq's logged
 * valid loss: contrastive + weighted diversity and feature penalty), the contrastive part alone, accuracy,
 * code perplexity; at the end the same measure on a fixed set of training utterances (the
 * evaluation-mode training loss) and, with probe on, a linear character-ID probe on the frozen encoder
 * beside the same probe on a randomly initialised network. */
#ifndef DERF_SPEECH_TRAIN_H
#define DERF_SPEECH_TRAIN_H

#include "derf/safetensors.h"
#include "derf/wav2vec.h"

typedef struct {
    derf_w2v_config model;
    const char *data;       /* corpus folder (derf data speech); default runs/data/speech */
    int steps, batch, crop, min_samples;
    float lr, warmup_frac, weight_decay, beta1, beta2, eps, clip;
    int eval_every;         /* steps between validations + checkpoints (0: only at the end) */
    int val_utts;           /* validation utterances used (0: all) */
    int train_eval_utts;    /* utterances of the evaluation-mode training loss (0: skip) */
    int probe;              /* 1: character-ID probe at the end */
    uint64_t seed;
    int max_steps, log_every, quiet;
    int ckpt_every;             /* steps between checkpoints besides the validations' (0: off) */
    double ckpt_secs;           /* seconds between checkpoints (< 0: DERF_FIT_CKPT_SECS; 0: off) */
    int diag_every;           /* steps between diagnostics (derf/diag.h; 0: none) */
    const char *out, *resume;
    const derf_st_meta *meta;
    int nmeta;
} derf_speech_train_opts;

typedef struct {
    double bits, contrastive_bits, acc, code_ppl; /* per masked frame; acc in [0,1] */
    long frames;                                 /* masked frames measured */
} derf_w2v_eval;

typedef struct {
    int steps, total_steps, diverged;
    long long params;
    float final_loss;             /* mean training loss (bits per masked frame) of the last log interval */
    derf_w2v_eval val, train_eval; /* train_eval.frames 0: not run */
    float probe_acc, probe_acc_random, probe_chance; /* -1: not run */
    double seconds, frames_per_s;
    char diverged_msg[200];
} derf_speech_train_result;

void derf_speech_train_opts_default(derf_speech_train_opts *o);
int derf_speech_train(const derf_speech_train_opts *o, derf_speech_train_result *res, char *err, size_t errlen);

#endif
