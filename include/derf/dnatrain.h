/* derf/dnatrain.h: HyenaDNA and Caduceus-PS training on the DNA data of `derf data dna` (docs/dna.md):
 *
 * Pretraining (derf_dna_pretrain): HyenaDNA next-token cross-entropy (Caduceus-PS: masked-LM cross-entropy over the
 * masked positions, derf_mlm_mask; validation masks from a fixed seed) on random windows of seq+1 bases drawn inside
 * the training segments of a .dnac corpus (a window never spans two segments), each reverse-complemented
 * with probability 1/2 when rc_aug is on; AdamW (beta1, beta2), weight decay on the tensors hyena.h lists,
 * linear warmup then cosine to min_lr, global-norm clipping. Validation: mean CE (nats/base; bits = nats /
 * ln 2) over a fixed grid of non-overlapping windows of the validation segments (no rc_aug); at the end
 * the same on a fixed grid of training windows (the evaluation-mode training loss) and, with an out-of-distribution
 * corpus (ood_corpus), on a fixed grid of its test-split windows (the OOD loss).
 *
 * Fine-tuning (derf_dna_finetune): a .dnat task; the backbone from a pretraining run (its
 * model.safetensors; every tensor but head.*) or random (init NULL: the randomly initialised baseline);
 * mean pooling + linear head; epochs over the training split in a seeded random order, rc_aug per
 * sequence, warmup over warmup_frac of the steps then cosine to min_lr; after each epoch val and test
 * accuracy; the reported test accuracy is the one at the best validation accuracy (model selection).
 *
 * Run folders (out): model.safetensors + state.safetensors (derf_run_save, format derf-dna-1: weights, AdamW
 * moments, step, RNG; resume continues a pretraining run from it exactly: the same batches, masks and updates
 * as an uninterrupted run) and log.jsonl ({"type":"start"|"train"|"val"|"epoch"|"final", ...}). NaN/inf losses or gradient norms
 * stop the run (res->diverged) without writing weights. */
#ifndef DERF_DNATRAIN_H
#define DERF_DNATRAIN_H

#include <stdint.h>
#include "derf/caduceus.h"
#include "derf/hyena.h"
#include "derf/safetensors.h"

enum { DERF_DNA_ARCH_HYENA = 0, DERF_DNA_ARCH_CADUCEUS = 1 };

/* `--emb-scale auto` for a point-wise norm with alpha init a: the learnable embedding scale starts at
 * 1 / (a * 0.02) (0.02: the embedding's init std), so the first point-wise function sees alpha*x ~ N(0, 1) at
 * init (100 for the default alpha 0.5); docs/dna.md shows why and what it changes. */
#define DERF_DNA_EMB_STD 0.02f

typedef struct {
    int arch;                   /* DERF_DNA_ARCH_HYENA (next-token pretraining) or _CADUCEUS (Caduceus-PS, masked LM) */
    derf_hyena_config model;    /* HyenaDNA; n_classes is set from the task when fine-tuning; l_max from seq */
    derf_caduceus_config cmodel;/* Caduceus-PS */
    float mlm_prob;             /* Caduceus masked-LM probability (0.15) */
    const char *corpus;         /* pretraining corpus (.dnac) */
    const char *ood_corpus;     /* out-of-distribution corpus (.dnac, its test split): NULL: umaydis.dnac beside corpus if
                                 * it exists; "" or "none": none */
    const char *task;           /* fine-tuning task (.dnat) */
    const char *init;           /* fine-tuning: model.safetensors of a pretraining run, or its folder; NULL: random */
    int steps;                  /* pretraining optimizer steps */
    int epochs;                 /* fine-tuning epochs */
    int batch, seq;             /* windows per step; bases per pretraining window (inputs; +1 for the targets) */
    float lr, min_lr, weight_decay, beta1, beta2, clip, warmup_frac;
    int rc_aug;
    int eval_every;             /* pretraining: steps between validations (0: only at the end) */
    int eval_windows;           /* pretraining: windows per validation / train-loss evaluation (0: all of the grid) */
    int train_limit;            /* fine-tuning: use at most this many training sequences (0: all) */
    int eval_limit;             /* fine-tuning: at most this many val and test sequences, evenly spaced (0: all) */
    uint64_t seed;
    int log_every, quiet;
    int diag_every;           /* steps between diagnostics (derf/diag.h; 0: none) */
    const char *out;            /* run folder (created); NULL: write nothing */
    const char *resume;         /* pretraining: continue the run in this folder exactly (its state.safetensors) */
    int max_steps;              /* pretraining: stop (and save) after this many steps of the schedule (0: all) */
    int ckpt_every;             /* steps between checkpoints besides the validations' (0: off) */
    double ckpt_secs;           /* seconds between checkpoints (< 0: DERF_FIT_CKPT_SECS; 0: off) */
    const derf_st_meta *meta;   /* extra metadata in the checkpoints */
    int nmeta;
} derf_dna_train_opts;

typedef struct {
    int steps, diverged;
    long long params;
    float final_loss;           /* mean training loss of the last log interval */
    float val_loss, train_loss_eval; /* pretraining (nats/base); -1: not measured */
    float ood_loss;             /* pretraining: the same measure on the out-of-distribution corpus; -1: none */
    float val_acc, test_acc;    /* fine-tuning, in [0,1], at the best validation epoch */
    int best_epoch;
    double seconds, tokens_per_s;
    char diverged_msg[200];
} derf_dna_train_result;

void derf_dna_train_opts_default(derf_dna_train_opts *o);
int derf_dna_pretrain(const derf_dna_train_opts *o, derf_dna_train_result *res, char *err, size_t errlen);
int derf_dna_finetune(const derf_dna_train_opts *o, derf_dna_train_result *res, char *err, size_t errlen);

/* Baseline: multinomial logistic regression on the frequencies of all k-mers (k = 1..8; k = 1 is base
 * composition, GC included), features standardised with the training statistics, AdamW full passes over the
 * training split for `epochs`; val/test accuracy at the best validation epoch. */
int derf_dna_kmer_baseline(const char *task, int k, int epochs, uint64_t seed, float *val_acc, float *test_acc,
                           char *err, size_t errlen);

#endif
