/* derf/autosearch.h: `derf study autosearch`, an automated search for a point-wise function.
 *
 * 1. Candidates are generated from the spec grammar (docs/norm-spec.md): every registered base, bare and
 *    under each transform of a grid (clip, mix, shifts, flat zone, negation), at each alpha init of a grid.
 * 2. Duplicates by shape are merged: two specs whose g(u) and g'(u) agree on a dense grid of u (and that
 *    have the same alpha init and shift) are one candidate (e.g. erf+clip=2 is erf).
 * 3. The property filter keeps the candidates with the paper's four properties, measured on the double
 *    reference (derf_pointwise_props): zero-centred, bounded, center-sensitive, monotone increasing.
 * 4. Successive halving on the ViT proxy: every survivor at a short budget and one seed (rung 0); the best
 *    1/eta by mean test accuracy go on to a longer budget with more seeds, and so on; the last rung is the
 *    full budget with the final number of seeds. The controls (Derf, DyT, LayerNorm) run at every rung.
 *    Each rung is a `derf study` sweep in OUT/rung<k> (result.json per run), so an interrupted search
 *    continues where it stopped, and the promotions are recomputed from the results.
 * 5. Finalists get the CPU cost of their fused forward+backward kernel, relative to erf's in the same run.
 * The report (OUT/report.md, OUT/ranking.csv, OUT/pareto.svg) ranks the finalists with mean ± std and a
 * Welch t-test against erf, and states the verdict. */
#ifndef DERF_AUTOSEARCH_H
#define DERF_AUTOSEARCH_H

#include <stddef.h>
#include "derf/study.h"

#define DERF_AS_MAX_RUNGS 6

typedef struct {
    char spec[96];
    const char *why;   /* NULL: kept; else why it was removed ("unbounded", "same shape as erf", ...) */
    char dup_of[96];   /* the kept spec it duplicates, when why says so */
} derf_as_cand;

typedef struct {
    int generated, duplicates, kept;
    int not_zero_centred, unbounded, not_center_sensitive, not_monotone;
} derf_as_filter_stats;

/* The candidate grid. Zero-length lists use the defaults (derf_as_grid_default). */
typedef struct {
    double clip[8];  int nclip;   /* clip=L levels */
    double mix[8];   int nmix;    /* mix=L */
    double shift[8]; int nshift;  /* hshift=L and vshift=L */
    double flat[8];  int nflat;   /* flat=L */
    int neg;                      /* also the negated bases */
    double alpha[8]; int nalpha;  /* alpha inits */
} derf_as_grid;

void derf_as_grid_default(derf_as_grid *g);
/* Generates, deduplicates and filters. *out: malloc'd array of every generated candidate (kept ones
 * have why == NULL, in generation order); returns their number or -1 with an error line. */
int derf_as_candidates(const derf_as_grid *g, derf_as_cand **out, derf_as_filter_stats *st, char *err, size_t errlen);

typedef struct {
    const char *out;             /* search folder */
    derf_cls_opts base;          /* options of the full-budget runs (epochs = the last rung's) */
    int nrungs;
    int epochs[DERF_AS_MAX_RUNGS];   /* per rung; the last is the full budget */
    int seeds[DERF_AS_MAX_RUNGS];
    int train_limit[DERF_AS_MAX_RUNGS]; /* 0: all images */
    double eta;                  /* keep the best 1/eta of a rung (at least min_keep) */
    int min_keep;
    int seed0;
    double budget_hours;         /* CPU-hours (wall x threads) for the whole search; 0: no limit */
    int threads;                 /* for the CPU-hour accounting */
    int quiet;
    derf_study_trainer train;    /* NULL: derf_cls_train (tests substitute a fake) */
    void *ctx;
} derf_as_cfg;

/* One finalist (or control) of the last rung that ran. */
typedef struct {
    char spec[96];
    int control;                 /* 1: Derf, DyT or LayerNorm */
    derf_study_stat st;
    double t, df;                /* Welch t statistic and degrees of freedom against erf (NAN: n/a) */
    int beyond;                  /* 1 better than erf beyond noise, -1 worse beyond noise, 0 within */
    double cost_rel;             /* kernel fwd+bwd time / erf's (NAN: not measured, LayerNorm measured too) */
} derf_as_final;

typedef struct {
    derf_as_filter_stats filter;
    int rungs_done;              /* rungs whose every run has a result */
    int rung_size[DERF_AS_MAX_RUNGS];
    double cpu_hours;            /* spent by the runs found (trained now or before) */
    int stopped_by_budget;
    derf_as_final *final;        /* malloc'd, nfinal entries, ranked by mean test accuracy */
    int nfinal;
} derf_as_outcome;

/* Runs (or continues) the search and writes the report. 0, or -1 with an error line. */
int derf_as_run(const derf_as_cfg *cfg, const derf_as_grid *grid, derf_as_outcome *res, char *err, size_t errlen);
void derf_as_outcome_free(derf_as_outcome *res);

/* Welch's two-sample t-test of mean a vs mean b (sample sds, counts): t, Welch-Satterthwaite df, and
 * whether |t| exceeds the two-sided 5% critical value of Student's t at floor(df). Returns 1 (beyond),
 * 0 (within), -1 (fewer than 2 samples on a side). */
int derf_welch(double ma, double sa, int na, double mb, double sb, int nb, double *t, double *df);

/* Seconds of one fused forward+backward of a norm spec on N x C (min over reps). */
double derf_as_kernel_seconds(const char *spec, int N, int C, int reps);

#endif
