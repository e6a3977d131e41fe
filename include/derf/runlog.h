/* derf/runlog.h: what every trainer shares below the loop itself: the learning-rate schedule (warmup then
 * cosine, linear or constant), the one rule that says a run has diverged, and the JSONL run log
 * (log.jsonl) written AND read through the same field definitions (docs/formats.md lists the records). */
#ifndef DERF_RUNLOG_H
#define DERF_RUNLOG_H

#include <stddef.h>
#include <stdio.h>

/* ---- learning-rate schedule ----------------------------------------------------------------------
 * Linear warmup lr * (step + 1) / warmup over the first `warmup` steps, then
 *   COSINE:   min_lr + (lr - min_lr) (1 + cos(pi t)) / 2, t = (step - warmup) / (total - warmup) in [0, 1]
 *   LINEAR:   lr (total - step) / (total - warmup) (fairseq's polynomial decay, power 1; ends at 0)
 *   CONSTANT: lr */
typedef enum { DERF_SCHED_COSINE, DERF_SCHED_LINEAR, DERF_SCHED_CONSTANT } derf_sched_kind;
typedef struct {
    derf_sched_kind kind;
    float lr, min_lr;
    int warmup, total;
} derf_sched;
float derf_sched_lr(const derf_sched *s, int step);

/* ---- the divergence rule (every model) -----------------------------------------------------------
 * A run has diverged when a training or evaluation loss is NaN, infinite or above DERF_LOSS_CAP, when the
 * gradient norm is not finite, or when a weight is not finite. */
#define DERF_LOSS_CAP 1e4
int derf_loss_diverged(double loss);
int derf_all_finite(const float *x, size_t n);

/* ---- the run log ---------------------------------------------------------------------------------
 * One JSON object per line: {"type":TYPE, FIELD, ...}. A field is a key and a value of one kind; numbers
 * that are not finite are written as null. The reader returns the numeric fields of every record of a
 * type, so a key is spelled where the record is written and where it is read, and nowhere else. */
typedef enum {
    DERF_LF_INT,  /* integer (%lld) */
    DERF_LF_NUM,  /* 6 significant digits */
    DERF_LF_RATE, /* one decimal (throughput, seconds of a run) */
    DERF_LF_SECS, /* two decimals (elapsed seconds) */
    DERF_LF_STR,
    DERF_LF_BOOL
} derf_lf_kind;
typedef struct {
    const char *key;
    derf_lf_kind kind;
    double v;
    const char *s;
} derf_lf;
#define DERF_LF_I(k, x) ((derf_lf){(k), DERF_LF_INT, (double)(x), NULL})
#define DERF_LF_N(k, x) ((derf_lf){(k), DERF_LF_NUM, (double)(x), NULL})
#define DERF_LF_R(k, x) ((derf_lf){(k), DERF_LF_RATE, (double)(x), NULL})
#define DERF_LF_T(k, x) ((derf_lf){(k), DERF_LF_SECS, (double)(x), NULL})
#define DERF_LF_S(k, x) ((derf_lf){(k), DERF_LF_STR, 0, (x)})
#define DERF_LF_B(k, x) ((derf_lf){(k), DERF_LF_BOOL, (double)(x), NULL})

typedef struct {
    FILE *f;
} derf_runlog;

/* Opens dir/log.jsonl: a new log (resume_step < 0), or the log of a run resumed at resume_step, from which
 * every record of a later step is dropped first (a run killed after its last checkpoint logged steps that
 * the resumed run repeats). dir NULL: a log that writes nothing. 0, or -1 with an error line. */
int derf_runlog_open(derf_runlog *l, const char *dir, int resume_step, char *err, size_t errlen);
void derf_runlog_write(derf_runlog *l, const char *type, const derf_lf *f, int n); /* and flushes */
void derf_runlog_close(derf_runlog *l);
/* The numeric values of keys[0..nkeys) for every record of `type` in dir/log.jsonl, in file order, into
 * v[record * nkeys + key] (NAN when absent or null), at most maxrec records. Returns the record count, or -1
 * when the log cannot be read. */
int derf_runlog_read(const char *dir, const char *type, const char *const *keys, int nkeys, double *v, int maxrec);

#endif
