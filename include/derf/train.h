/* derf/train.h: what every trainer shares (learning-rate schedule, EMA, checkpoints of a
 * derf_params table, a JSONL run log, progress lines) and the image-classification trainer
 * (ViT on Fashion-MNIST / MNIST). */
#ifndef DERF_TRAIN_H
#define DERF_TRAIN_H

#include <stdint.h>
#include <stdio.h>
#include "derf/augment.h"
#include "derf/optim.h"
#include "derf/rng.h"
#include "derf/runlog.h"
#include "derf/safetensors.h"
#include "derf/vit.h"

/* Linear warmup from 0 to lr over `warmup` steps, then cosine decay to min_lr at `total`. */
float derf_lr_at(int step, int warmup, int total, float lr, float min_lr);

/* Monotonic seconds, and a remaining time as "12m05s" / "1h02m" for progress lines. */
double derf_now_s(void);
void derf_fmt_eta(char *buf, size_t n, double seconds);

/* ema = decay * ema + (1 - decay) * params, over the whole slab. */
void derf_ema_update(float *ema, const float *params, size_t n, float decay);

/* ---- checkpoints: safetensors files of a derf_params table --------------------------------------
 * Tensors are written under prefix + name, one slab at a time (values: p->params, an EMA copy,
 * p->m, p->v). load checks that every tensor of the table is present with the same shape. */
typedef struct { const char *prefix; const float *values; } derf_ckpt_slab;
int derf_ckpt_save(const char *path, const derf_params *p, const derf_ckpt_slab *slabs, int nslabs,
                   const derf_st_meta *meta, int nmeta, char *err, size_t errlen);
int derf_ckpt_load_slab(const derf_safetensors *st, const derf_params *p, const char *prefix,
                        float *dst, const char *path, char *err, size_t errlen);
/* The checkpoint validation policy, used by every loader: derf_ckpt_load_slab refuses a tensor that is missing,
 * of another shape, or not finite (unless derf_ckpt_allow_nonfinite(1): the commands' --allow-nonfinite), and
 * negative values under "adam_v."; derf_ckpt_check_names refuses a tensor of the file that is not prefix + the
 * name of a tensor of p for one of the prefixes, or is empty. derf_ckpt_load_model: both, for a model file
 * (no prefix) into p->params. derf_ckpt_check_values: the value check alone (nonneg: also refuse x < 0). */
void derf_ckpt_allow_nonfinite(int on);
int derf_ckpt_check_names(const derf_safetensors *st, const derf_params *p, const char *const *prefixes, int nprefix,
                          const char *path, char *err, size_t errlen);
int derf_ckpt_check_values(const char *name, const float *x, size_t n, int nonneg, const char *path, char *err,
                           size_t errlen);
int derf_ckpt_load_model(const derf_safetensors *st, const derf_params *p, const char *path, char *err, size_t errlen);
/* A metadata number: decimal digits only, in [lo, hi]. 0, or -1 if empty, garbage, overflowing or out of range. */
int derf_meta_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* ---- a run folder: model.safetensors (+ model_ema.safetensors) and state.safetensors ----------
 * state.safetensors holds the weights, the AdamW moments (adam_m., adam_v.), the EMA (ema.) and, in
 * the metadata, the step, the RNG state and a format tag, plus the caller's metadata (the model
 * config, the original options). model*.safetensors carry the same metadata. */
typedef struct {
    const derf_params *p;
    const float *ema;           /* NULL: no EMA */
    int step;
    derf_rng rng;
    const char *format;         /* e.g. "derf-vit-1" */
    const derf_st_meta *meta;   /* model config and extra metadata */
    int nmeta;
} derf_run_state;

int derf_run_save(const char *dir, const derf_run_state *s, char *err, size_t errlen);
/* Restores dir/state.safetensors into p (params, m, v) and ema (if non-NULL), checking the format
 * tag, that the metadata holds want[0..nwant) (the model config) and that every tensor matches; returns the
 * step and the RNG state. */
int derf_run_load(const char *dir, const char *format, const derf_st_meta *want, int nwant, derf_params *p,
                  float *ema, int *step, derf_rng *rng, char *err, size_t errlen);

/* ---- data-parallel runs (derf/dist.h; no-ops on one process) ----------------------------------
 * derf_run_bcast: rank 0's weights, AdamW moments, EMA (if non-NULL), step and RNG to every process.
 * derf_run_resync: checks that the processes still hold the same weights (they should: every one
 * applies the same averaged gradients; different --threads on different machines can round the
 * gradient norm differently); if not, warns on rank 0 ("[derf] ..." and a {"type":"resync"} record in
 * log, if non-NULL) and continues everyone from rank 0's state. Returns 1 if they had drifted. */
void derf_run_bcast(derf_params *p, float *ema, int *step, derf_rng *rng);
int derf_run_resync(derf_params *p, float *ema, int step, derf_runlog *log, int quiet);

/* ---- the ViT classification trainer --------------------------------------------------------- */
typedef struct {
    derf_vit_config model;
    const char *data;         /* "fashion-mnist", "mnist", or a directory of IDX files */
    int epochs, batch;
    float lr, min_lr, warmup_epochs, weight_decay, beta1, beta2, clip;
    derf_aug_cfg aug;
    float ema;                /* EMA decay, 0: off */
    uint64_t seed;
    int train_limit;          /* use only the first N training images (0: all) */
    int test_limit;           /* evaluate on the first N test images (0: all) */
    int max_steps;            /* stop after this many steps (0: run the whole schedule) */
    int eval_train_loss;      /* 1: measure the evaluation-mode training loss at the end */
    int log_every;            /* steps between progress lines and log records */
    int ckpt_every;           /* steps between checkpoints besides the one per epoch (0: off) */
    double ckpt_secs;         /* seconds between checkpoints (< 0: DERF_FIT_CKPT_SECS; 0: off) */
    int diag_every;           /* steps between diagnostics (derf/diag.h; 0: none) */
    int quiet;
    const char *out;          /* run directory (created); NULL: write nothing */
    const char *resume;       /* run directory to continue from (its state.safetensors) */
    const char *device;       /* "cpu" (NULL too), "cuda" (bf16 activations, fp32 master weights) or
                                 "cuda:fp32" (fp32 activations); needs `make CUDA=1`; checkpoints are
                                 the same files either way (docs/cuda.md) */
    const derf_st_meta *meta; /* extra metadata stored in checkpoints (e.g. the CLI options) */
    int nmeta;
} derf_cls_opts;

typedef struct {
    int steps, total_steps, epochs_done, diverged;
    float final_loss;                          /* mean training loss over the last epoch's steps */
    float test_acc, test_acc_ema;              /* top-1, in [0, 1]; ema: -1 when off */
    float test_loss, test_loss_ema;
    float class_acc[DERF_DATASET_CLASSES];     /* per-class test accuracy (of the better of raw/EMA) */
    float train_loss_eval, train_loss_eval_ema;/* evaluation-mode training loss (Appendix E); -1: not run */
    double seconds, images_per_s;              /* the training loop, per-epoch evaluations included */
    char diverged_msg[200];
} derf_cls_result;

void derf_cls_opts_default(derf_cls_opts *o);
/* Trains (or continues a run), evaluates, writes out/ (model.safetensors, model_ema.safetensors,
 * state.safetensors, log.jsonl). Under mpirun (derf/dist.h, docs/distributed.md) data-parallel: o->batch
 * is the global batch, split evenly over the processes; only rank 0 writes. Returns 0, or -1 with one error line (divergence is not an error:
 * it is reported in res->diverged). */
int derf_cls_train(const derf_cls_opts *o, derf_cls_result *res, char *err, size_t errlen);

/* Evaluates params on a dataset split: mean cross-entropy (no smoothing) and top-1 accuracy;
 * per-class accuracy if class_acc is non-NULL. In a data-parallel run (derf/dist.h) every process
 * must call it: each evaluates its share of the images and the sums are reduced. */
void derf_cls_evaluate(derf_vit *m, const derf_dataset *ds, derf_pixel_stats st, int limit,
                       float *loss, float *acc, float *class_acc);
/* Loads a ViT checkpoint (model.safetensors / model_ema.safetensors; config from its metadata), built for
 * batches up to max_batch. 0, or -1 with an error line. */
int derf_vit_load(derf_vit *m, const char *path, int max_batch, char *err, size_t errlen);

#endif
