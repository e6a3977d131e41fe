/* dna_opts.h: the HyenaDNA / Caduceus-PS training options shared by `derf train-dna` and `derf compare --model hyena`
 * (cmd_train_dna.c, cmd_compare_dna.c). */
#ifndef DERF_CLI_DNA_OPTS_H
#define DERF_CLI_DNA_OPTS_H

#include "cli/cli.h"
#include "derf/dnatrain.h"

typedef struct {
    derf_dna_train_opts o;
    const char *norm, *preset, *arch;   /* norm / preset NULL: the architecture's default */
    const char *emb_scale;              /* auto, off or a number (--emb-scale) */
    int dim, layers, seed, threads, no_rc_aug;
    float ft_lr;
} dna_args;

void dna_args_init(dna_args *a);
int dna_opts_table(dna_args *a, cli_opt *t, int max); /* fills t, returns the count */
int dna_args_finish(dna_args *a, const char *cmd);    /* 0, or an exit status after an error line */
int cmd_compare_dna(int argc, char **argv);

#endif
