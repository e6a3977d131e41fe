/* compare_util.h: what `derf compare` (ViT) and `derf compare --model gpt2` share: the --norms list
 * (SPEC or SPEC@LR, each spec validated), run-folder names, the output folder, mean and std. */
#ifndef DERF_CLI_COMPARE_UTIL_H
#define DERF_CLI_COMPARE_UTIL_H

#include <stddef.h>

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

#endif
