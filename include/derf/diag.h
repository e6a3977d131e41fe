/* derf/diag.h: training diagnostics that every trainer logs (`--diag-every N`): per norm layer the
 * fraction of saturated point-wise inputs and the rms and token-independent share of its input (the
 * residual stream, in a pre-norm Transformer) and of its output; for language models the loss gap to
 * the best constant (unigram) prediction; and a collapse alarm. See docs/diagnostics.md.
 *
 * Collection is generic and free when off: derf_diag_begin installs a hook that derf_norm_forward
 * calls for every norm layer (src/norms), so any model gets it; derf_diag_end removes it. A layer is
 * recognised by its parameter pointer and named after its tensor in the model's derf_params table
 * ("h.3.ln_2"). Statistics accumulate over every forward between begin and end (several micro-batches,
 * an evaluation loop). One collector is active at a time, on the CPU (the CUDA forward has no hook).
 *
 * Definitions (N rows of C channels; a row is one token / position / patch):
 *   saturated:   a point-wise norm's element with |g'(u)| < DERF_DIAG_SAT_FRAC * max_u |g'(u)|,
 *                u = alpha x + s, g the composed function (erf: |u| > 1.73; tanh: |u| > 2.18);
 *                n/a (NAN, JSON null) for LayerNorm / RMSNorm, which are scale-invariant per row.
 *   rms:         sqrt(sum ||x_r||^2 / (N C)).
 *   token-independent share: ||mean_r x_r||^2 / mean_r ||x_r||^2, in [0, 1]: 1 when every row is the
 *                same vector, about 1/N for independent zero-mean rows.
 *   unigram gap: (cross-entropy of the training-set unigram distribution on the same targets) minus
 *                the model's loss; about 0 or negative for a model that ignores its context.
 *   alarm:       some point-wise layer has saturated fraction >= 0.5 and output share >= 0.9 (every
 *                token is mapped to nearly the same vector through a flat part of the function), or the
 *                model's loss is within DERF_DIAG_GAP_ALARM nats of the unigram loss (either side) where
 *                the caller says it should be past it (derf_diag_set_lm with check_gap 1; train-lm: from
 *                half the schedule on). */
#ifndef DERF_DIAG_H
#define DERF_DIAG_H

#include <stdint.h>
#include <stdio.h>
#include "derf/norm.h"
#include "derf/optim.h"

#define DERF_DIAG_MAX_LAYERS 256
#define DERF_DIAG_SAT_FRAC 0.05
#define DERF_DIAG_GAP_ALARM 0.05

typedef struct {
    char name[DERF_NAME_MAX];
    const float *key;          /* the layer's parameter pointer */
    int pointwise, C;
    double thr;                /* |g'| threshold of saturation */
    double n_sat, n_el;        /* saturated / all elements (point-wise layers) */
    double rows, sumsq_in, sumsq_out;
    double *sum_in, *sum_out;  /* [C] sums over rows */
} derf_diag_layer;

typedef struct {
    int every;                 /* steps between diagnostics; 0: off */
    const derf_params *names;  /* tensor table that names the layers (may be NULL: "norm<i>") */
    int nlayer;
    derf_diag_layer layer[DERF_DIAG_MAX_LAYERS];
    double loss, unigram;      /* language models (NAN: not set) */
    int check_gap;
    int open;                  /* a collection begun by derf_diag_maybe_begin */
} derf_diag;

void derf_diag_init(derf_diag *d, int every, const derf_params *names);
void derf_diag_free(derf_diag *d);
/* 1 when `every` > 0 and step is a multiple of it. */
int derf_diag_due(const derf_diag *d, int step);
/* Clears the statistics and installs the norm hook (begin) / removes it (end). */
void derf_diag_begin(derf_diag *d);
void derf_diag_end(derf_diag *d);
/* Language models: the model's mean loss on the diagnosed targets and the unigram cross-entropy of
 * the same targets; check_gap 1 lets |gap| < DERF_DIAG_GAP_ALARM raise the alarm. */
void derf_diag_set_lm(derf_diag *d, double loss, double unigram, int check_gap);

/* Per-layer values (NAN where not defined). */
double derf_diag_sat(const derf_diag_layer *l);
double derf_diag_rms_in(const derf_diag_layer *l);
double derf_diag_share_in(const derf_diag_layer *l);
double derf_diag_share_out(const derf_diag_layer *l);
/* 1 when the collapse alarm fires (definition above). */
int derf_diag_alarm(const derf_diag *d);

/* Writes {"type":"diag","step":S,...,"layers":[...]} to log (may be NULL) and, when progress is not
 * NULL, a summary line "[derf] diag step S: ..." (the most saturated layer, the last layer's input rms
 * and share, the unigram gap, COLLAPSE when the alarm fires); and the full table when verbose. */
void derf_diag_report(const derf_diag *d, int step, FILE *log, FILE *progress, int verbose);

/* The two calls a trainer makes around its training forward: maybe_begin begins a collection when
 * step is due (returns 1), maybe_end ends it and reports (derf_diag_report, not verbose; progress NULL
 * for a quiet run) when one is open; both do nothing otherwise. */
int derf_diag_maybe_begin(derf_diag *d, int step);
void derf_diag_maybe_end(derf_diag *d, int step, FILE *log, FILE *progress);

/* Unigram model of a token stream: logp[V] = log((count + 0.5) / (n + 0.5 V)). xent: mean -logp of
 * targets (entries < 0 are skipped; 0 when none). */
void derf_diag_unigram(const uint16_t *tokens, size_t n, int V, double *logp);
double derf_diag_unigram_xent(const double *logp, const int32_t *targets, size_t n);

/* The hook itself (installed by begin; exposed for tests): one norm layer's forward. */
void derf_diag_norm_hook(const derf_norm_spec *s, const float *y, const float *x, const float *params, int N, int C);

#endif
