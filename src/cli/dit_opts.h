/* dit_opts.h: the DiT training and sampling options shared by `derf train-dit`, `derf sample-dit` and
 * `derf compare --model dit` (cmd_dit.c, cmd_compare_dit.c). */
#ifndef DERF_CLI_DIT_OPTS_H
#define DERF_CLI_DIT_OPTS_H

#include "cli/cli.h"
#include "derf/diffusion.h"

typedef struct {
    derf_dit_train_opts o;
    const char *norm, *preset, *size_class;
    int dim, depth, heads, patch, seed, threads;
} dit_args;

void dit_args_init(dit_args *a);
int dit_opts_table(dit_args *a, cli_opt *t, int max);   /* fills t, returns the count */
int dit_args_finish(dit_args *a, const char *cmd);      /* 0, or an exit status after an error line */

/* sampling options (steps, sampler, cfg, eta, clip, seed) */
typedef struct { derf_sample_opts s; const char *sampler; int no_clip, seed; } dit_sample_args;
void dit_sample_args_init(dit_sample_args *a);
int dit_sample_opts_table(dit_sample_args *a, cli_opt *t, int max);
int dit_sample_args_finish(dit_sample_args *a, const char *cmd);

/* `derf compare --model dit` (cmd_compare dispatches here) */
int cmd_compare_dit(int argc, char **argv);

#endif
