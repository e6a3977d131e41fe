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

#endif
