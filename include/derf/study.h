/* derf/study.h: the paper's experiments as resumable sweeps (`derf study NAME`).
 *
 * A study is a list of cases (one norm spec each, grouped into the paper's tables, with the paper's
 * reference numbers), trained for several seeds with the same ViT options. Each finished run leaves
 * OUT/runs/<case id>-s<seed>/result.json (written atomically), so an interrupted sweep restarts where
 * it stopped: finished runs are read back, never retrained. Cases of different tables that share a
 * spec (e.g. the `erf:noshift` baseline of Tables 1, 3, 5 and 6) share one run.
 * The report (report.md), the per-run table (results.csv) and the plot (plot.svg) go into OUT. */
#ifndef DERF_STUDY_H
#define DERF_STUDY_H

#include <stddef.h>
#include "derf/train.h"

#define DERF_STUDY_MAX_SEEDS 16
#define DERF_STUDY_DIVERGED (-1.0) /* a paper value that is "×" (the run failed or diverged) */
/* Paper value NAN: the paper has no number for this cell. */

typedef struct {
    char table[32];      /* report section: "Table 1", ... */
    char title[96];      /* what that table studies (repeated on every case of the table) */
    char row[48];        /* row label in the paper's layout: "erf horizontal" */
    char col[32];        /* column label: "-0.5", "−" (unclipped), "f_neg(x)" */
    double x;            /* numeric column value for plots; NAN: categorical */
    char spec[96];       /* norm spec (docs/norm-spec.md) */
    char id[112];        /* run folder name, derived from the spec */
    double paper_acc;    /* paper's ViT-B top-1 %, NAN: none, DERF_STUDY_DIVERGED: × */
    double paper_loss;   /* paper's ViT-B eval-mode training loss (Table 13), NAN: none */
    int base;            /* index of the case this one is compared with; -1: none; its own index: a baseline */
} derf_study_case;

/* ---- case lists (src/study/cases.c) ------------------------------------------------------------
 * Studies: "properties" (Tables 1-6, no shift s), "search" (Table 7), "fitting" (Table 13),
 * "shift" (Tables 14-15), "approx" (Table 16).
 * table: properties only, 1..6 selects one sub-table, 0 all of them.
 * lambdas/nlambdas: properties only, replace the lambda list of Tables 1, 2, 3 and 5 (nlambdas 0: the
 * paper's lists). tanh_eps: approx only, the fitted epsilon of tanh(eps x).
 * Returns the number of cases (malloc'd array in *out, free() it), or -1 with one error line. */
typedef struct {
    int table;
    const double *lambdas;
    int nlambdas;
    double tanh_eps;
} derf_study_select;

int derf_study_cases(const char *study, const derf_study_select *sel, derf_study_case **out,
                     char *err, size_t errlen);
const char *derf_study_names(void); /* "properties, search, fitting, shift, approx" */
/* One-line description of a study, NULL if unknown. */
const char *derf_study_about(const char *study);
/* Run folder name of a spec: letters, digits, '.', '-' kept, everything else '_'. */
void derf_study_case_id(const char *spec, char *out, size_t n);

/* ---- the sweep engine (src/study/sweep.c) ----------------------------------------------------- */
/* Trains one run; the default is derf_cls_train. Tests substitute a counting or fake trainer. */
typedef int (*derf_study_trainer)(const derf_cls_opts *o, derf_cls_result *r, char *err, size_t errlen, void *ctx);

typedef struct {
    const char *study;         /* name, for the report */
    const char *out;           /* folder: runs/, results.csv, report.md, plot.svg */
    derf_cls_opts base;        /* options of every run; norm, seed and out are set per run */
    int seeds, seed0;          /* seeds seed0 .. seed0+seeds-1 */
    derf_study_trainer train;  /* NULL: derf_cls_train */
    void *ctx;
    int quiet;                 /* no progress lines on stderr */
    int keep_checkpoints;      /* keep each run's *.safetensors (default: only log.jsonl and result.json stay) */
    const char *setting;       /* markdown paragraph describing the setting (report.md), may be NULL */
} derf_study_cfg;

typedef struct {
    derf_cls_result r;
    int done;                  /* a result exists (trained now or read back) */
    int trained;               /* trained by this call (0: read back from result.json) */
} derf_study_result;

/* Option fingerprint of a run (everything that changes the result except the norm, the seed and the
 * output folder). Stored in every result.json; a finished run whose fingerprint differs is refused
 * (it belongs to another setting: use another --out). */
void derf_study_fingerprint(const derf_cls_opts *o, char *buf, size_t n);

/* Runs every case x seed that has no result yet. res: ncases * seeds entries, res[c * seeds + s].
 * *ntrained (may be NULL) gets the number of trainings done. Returns 0, or -1 with one error line
 * (a failed training; the finished runs stay on disk for the next attempt). */
int derf_study_run(const derf_study_cfg *cfg, const derf_study_case *cases, int ncases,
                   derf_study_result *res, int *ntrained, char *err, size_t errlen);
/* Number of distinct runs (case id x seed) of a case list that have no result.json yet. */
int derf_study_pending(const derf_study_cfg *cfg, const derf_study_case *cases, int ncases);

/* result.json of one run: save (atomic) and load. load returns 1 when found and valid, 0 when the
 * file does not exist, -1 with an error line when it is unreadable or belongs to another spec/setting. */
int derf_study_result_save(const char *path, const char *spec, int seed, const char *fingerprint,
                           const derf_cls_result *r, char *err, size_t errlen);
int derf_study_result_load(const char *path, const char *spec, int seed, const char *fingerprint,
                           derf_cls_result *r, char *err, size_t errlen);

/* ---- statistics and reports (src/study/report.c) ---------------------------------------------- */
typedef struct {
    int n_ok, n_div, n_missing;
    double acc_mean, acc_sd;       /* test accuracy %, over the runs that did not diverge */
    double loss_mean, loss_sd;     /* evaluation-mode training loss; NAN when not measured */
} derf_study_stat;

void derf_study_stats(const derf_study_result *r, int seeds, derf_study_stat *st);
/* Whether case c differs from baseline b by more than the seed spread: |mean_c - mean_b| >
 * 2 * sqrt(sd_c^2/n_c + sd_b^2/n_b). Returns 1 (beyond), 0 (within), -1 (cannot tell: fewer than
 * 2 finished seeds on either side). */
int derf_study_beyond_spread(const derf_study_stat *c, const derf_study_stat *b);

/* Writes OUT/results.csv (one row per case and seed, RFC 4180 quoting), OUT/report.md (ours beside
 * the paper's, per table; × for diverged runs) and OUT/plot.svg. */
int derf_study_write_reports(const derf_study_cfg *cfg, const derf_study_case *cases, int ncases,
                             const derf_study_result *res, char *err, size_t errlen);

/* ---- tanh(eps x) as an approximation of erf (Table 16; src/study/tanh_fit.c) ------------------
 * gap(eps) = integral over the real line of |tanh(eps x) - erf(x)|^p (p = 1: the paper's Eq. 11,
 * p = 2: least squares), by Gauss-Legendre quadrature between the crossing points. fit minimises
 * it over eps in [lo, hi] by golden-section search. */
double derf_tanh_erf_gap(double eps, int p);
double derf_tanh_erf_fit(int p, double lo, double hi, double *gap);

#endif
