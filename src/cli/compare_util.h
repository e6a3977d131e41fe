/* compare_util.h: what the `derf compare` variants (vit, gpt2, dit, wav2vec, hyena/caduceus) share: the --model
 * dispatch, the --norms list (SPEC or SPEC@LR, each spec validated), run-folder names, the output folder, mean and
 * std, and writing OUT/report.md (and OUT/curves.svg). */
#ifndef DERF_CLI_COMPARE_UTIL_H
#define DERF_CLI_COMPARE_UTIL_H

#include <stddef.h>
#include "derf/strbuf.h"

#define MAX_NORMS 16
#define MAX_SEEDS 16
#define MAX_PTS 4096

typedef struct { char spec[128]; float lr; /* 0: the shared --lr */ } compare_norm;

/* Parses "a,b@1e-3,c" into out (at most MAX_NORMS). Returns the count (>= 1), or -1 after printing
 * one error line for the command cmd. */
int compare_parse_norms(const char *cmd, const char *norms, compare_norm *out);
/* Creates the folder (if needed); 0, or -1 after an error line. */
int compare_make_dir(const char *cmd, const char *dir);
/* "<spec with unsafe characters as _>-s<seed>" */
void compare_run_name(char *out, size_t n, const char *spec, int seed);
void compare_mean_std(const double *x, int n, double *mean, double *std);
/* The value of the last --model X / --model=X in argv, or NULL (for dispatching before the options are parsed). */
const char *compare_model_arg(int argc, char **argv);
/* Writes md to OUT/report.md and, if svg is non-NULL, svg to OUT/curves.svg (atomically), frees both buffers and
 * prints "wrote ..."; 0, or 2 after an error line for the command cmd. */
int compare_write_report(const char *cmd, const char *out, derf_strbuf *md, derf_strbuf *svg);

/* ---- the compare driver: norms x seeds over any model, one table, curves from the run logs ---------------- */
#define MAX_COLS 10

/* a metric column: header, value format (e.g. "%.2f"), 1: shown as mean ± std over the seeds */
typedef struct { const char *head, *fmt; int std; } compare_col;

typedef struct {
    char spec[128];
    float lr;                          /* the run's learning rate (0: the shared one) */
    int ok[MAX_SEEDS];                 /* the seed's run finished (did not diverge) */
    double v[MAX_SEEDS][MAX_COLS];     /* the metrics; < 0: not measured ('-') */
    double seconds[MAX_SEEDS];
    char dir[1200];                    /* the first seed's run folder (its log draws the curves) */
    char note[160];                    /* an extra markdown cell (NULL column header: none) */
} compare_row;

/* Trains one run of row's norm with `seed` into dir: fills v (one value per column) and *seconds, sets *ok (0:
 * diverged). Returns 0, or an exit status after an error line. */
typedef int (*compare_run_fn)(void *ctx, compare_row *row, int seed, const char *dir, double *v, double *seconds, int *ok);

/* Fills rows from the norm list, makes OUT, and trains every norm x seed (seeds seed0, seed0+1, ...) into
 * OUT/<norm>-s<seed>. Returns 0 or an exit status. */
int compare_drive(const char *cmd, void *ctx, compare_run_fn fn, const compare_norm *list, int nn, int seeds, int seed0,
                  const char *out, int quiet, compare_row *rows);
/* The table of rows (norm, lr, the columns as mean [± std] over the finished seeds, time per run, and note_head's
 * cell if non-NULL), printed to stdout and appended to md. lr0: the shared learning rate. */
void compare_table(derf_strbuf *md, const compare_col *cols, int ncols, const char *note_head, const compare_row *rows,
                   int nn, int seeds, double lr0);

/* A curve panel from the first seed's log: records of `type` (and of type2 if non-NULL), x = field x, y = the larger
 * of the fields y and y2 (y2 may be NULL) times scale. */
typedef struct { const char *type, *type2, *x, *y, *y2; double scale; const char *title, *xlabel, *ylabel; double xmax; } compare_panel;
/* Two panels side by side into svg. */
void compare_curves(derf_strbuf *svg, const compare_row *rows, int nn, const compare_panel *p);

#endif
