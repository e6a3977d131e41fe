/* derf/fit.h: the one training loop. A model enters it through a derf_task (its parameter table, one
 * micro-batch forward+backward, its evaluation as named fields, its config as checkpoint metadata, and
 * optional device hooks); derf_fit owns everything around that: the run folder, periodic atomic
 * checkpoints, exact resume (the log cut back to the resumed step), the divergence rule (derf/runlog.h: the
 * last good checkpoint is kept), gradient accumulation, clipping, the schedule, AdamW, the EMA, the MPI
 * all-reduce and weight checks, progress lines with throughput and ETA, and the JSONL log records:
 *   start   {step, steps, resumed, processes, <task start fields>}
 *   train   {step, <task train fields>, loss, lr, grad_norm, <rate key>, elapsed_s}   every log_every steps
 *   <eval>  {step, <task eval fields>}                                                   every eval_every steps
 *   final   {step, <task final fields>, <rate key>, seconds, processes}
 *   diverged{step, what, lr}; resync {step} */
#ifndef DERF_FIT_H
#define DERF_FIT_H

#include <stdint.h>
#include "derf/diag.h"
#include "derf/optim.h"
#include "derf/rng.h"
#include "derf/runlog.h"
#include "derf/safetensors.h"

#define DERF_FIT_MAX_FIELDS 16

typedef struct derf_task derf_task;
struct derf_task {
    void *ctx;                 /* the model adapter's state */
    derf_params *params;       /* host parameter table: what checkpoints hold */
    const char *format;        /* training-state tag, e.g. "derf-vit-1" */
    const char *unit;          /* progress-line throughput unit: "img", "tok", "frames" */
    const char *rate_key;      /* its log key: "images_per_s", "tokens_per_s", ... */
    const char *eval_type;     /* record type of the periodic evaluation ("eval", "val") */
    float *ema;                /* allocated by derf_fit when o->ema > 0 (NULL: off); the caller frees it */
    double window_loss;        /* set by derf_fit: mean training loss since the last window start */

    /* Required. One micro-batch of optimizer step `step`: draws it from rng, runs forward, and (unless the loss
     * has diverged: derf_loss_diverged) backward with the loss scaled by `scale`, ADDING into the gradients.
     * Returns the loss averaged over the global batch (every process); *units: samples/tokens it held, global. */
    float (*micro)(derf_task *t, int step, derf_rng *rng, float scale, double *units);
    /* Config as checkpoint metadata (keys/vals up to max); also checked against a resumed state. */
    int (*meta)(derf_task *t, char keys[][32], char vals[][128], int max);

    /* Optional (NULL: the host default on params / nothing). */
    int (*begin)(derf_task *t, char *err, size_t errlen);    /* after the state is loaded: attach a device */
    void (*zero_grad)(derf_task *t);
    void (*mean_grads)(derf_task *t);                        /* default: MPI mean of the grads slab */
    float (*clip)(derf_task *t, float max_norm);              /* returns the norm before clipping */
    void (*adamw)(derf_task *t, const derf_adamw_cfg *c, int step);
    void (*ema_update)(derf_task *t, float decay);
    void (*sync_host)(derf_task *t);                         /* device -> host before checks and checkpoints */
    void (*sync_device)(derf_task *t);                       /* host -> device after a resync */
    /* Evaluation at `step`: fields of the record (at most DERF_FIT_MAX_FIELDS); returns the loss the divergence rule
     * checks (0 when none). final 0: a periodic one (record eval_type); final 1: the end of the run (record final). */
    double (*eval)(derf_task *t, int step, int final, derf_lf *f, int *nf);
    /* Fields of the train record written at `step` (before loss), and of the start record. */
    int (*train_fields)(derf_task *t, int step, derf_lf *f, int max);
    int (*start_fields)(derf_task *t, derf_lf *f, int max);
    /* Diagnostics (derf/diag.h): called after the diagnosed micro-batch, before the report (a language model sets
     * its loss and unigram gap here: derf_diag_set_lm). */
    void (*diag)(derf_task *t, derf_diag *d, int step);
};

typedef struct {
    int steps;                 /* optimizer steps of the schedule */
    int max_steps;             /* stop (and save) after this many (0: steps) */
    int accum;                 /* micro-batches per optimizer step (0: 1) */
    derf_sched sched;          /* total 0: steps */
    derf_adamw_cfg adamw;      /* lr: set from sched every step */
    float clip;                /* global gradient-norm clip (0: measured, not clipped) */
    float ema;                 /* EMA decay (0: off) */
    int eval_every;            /* steps between periodic evaluations + checkpoints (0: none) */
    int eval_at_start;         /* a periodic evaluation at step 0 of a fresh run */
    int eval_at_end;           /* a periodic evaluation record at the end too (before the final one) */
    int ckpt_every;            /* steps between checkpoints (0: off) */
    double ckpt_secs;          /* seconds between checkpoints (0: off); either gives periodic saves */
    int loss_window;           /* steps over which final_loss / window_loss average (0: log_every) */
    int log_every;
    int diag_every;            /* steps between diagnostics of the first micro-batch (derf/diag.h; 0: none) */
    int quiet;
    const char *out;           /* run folder (created); NULL: write nothing */
    const char *resume;        /* run folder to continue from */
    uint64_t seed, stream;     /* the run's RNG (batches, masks, augmentation): seed, stream */
    const char *what;          /* command name in messages ("lower --lr" hints follow it) */
    const char *hint;          /* the advice of the divergence message (NULL: lower --lr or lengthen --warmup) */
    const derf_st_meta *meta;  /* extra metadata stored in checkpoints (the CLI options) */
    int nmeta;
} derf_fit_opts;

typedef struct {
    int steps, start_step, diverged;
    float final_loss;          /* mean training loss of the last window */
    double seconds;            /* this call, evaluations included */
    double train_seconds;      /* the steps alone */
    double units, units_per_s; /* trained this call; per training second */
    char diverged_msg[200];
} derf_fit_result;

void derf_fit_opts_default(derf_fit_opts *o);
/* Copies the run options that every trainer's options struct o has under the same names (max_steps, ckpt_every,
 * ckpt_secs (< 0: keep the default), log_every, diag_every, quiet, out, resume, seed, meta, nmeta) into fo. */
#define DERF_FIT_RUN_OPTS(fo, o)                                                                                     \
    do {                                                                                                             \
        (fo).max_steps = (o)->max_steps; (fo).ckpt_every = (o)->ckpt_every;                                         \
        if ((o)->ckpt_secs >= 0) (fo).ckpt_secs = (o)->ckpt_secs;                                                    \
        (fo).log_every = (o)->log_every; (fo).diag_every = (o)->diag_every; (fo).quiet = (o)->quiet;                \
        (fo).out = (o)->out; (fo).resume = (o)->resume;                                                              \
        (fo).seed = (o)->seed; (fo).meta = (o)->meta; (fo).nmeta = (o)->nmeta;                                       \
    } while (0)
/* Trains task t from its current weights (or o->resume's state), evaluates, writes o->out. Returns 0, or -1 with
 * one error line; a divergence is not an error (res->diverged, res->diverged_msg; exit 3 in the commands). */
int derf_fit(derf_task *t, const derf_fit_opts *o, derf_fit_result *res, char *err, size_t errlen);

/* Default checkpoint period of the trainers (seconds): a killed run loses at most this much. */
#define DERF_FIT_CKPT_SECS 300.0

#endif
