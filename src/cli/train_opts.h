/* train_opts.h: the ViT training options shared by `derf train` and `derf compare`. */
#ifndef DERF_CLI_TRAIN_OPTS_H
#define DERF_CLI_TRAIN_OPTS_H

#include "cli/cli.h"
#include "derf/train.h"

typedef struct {
    derf_cls_opts o;
    const char *norm, *preset, *pool;
    float alpha;                 /* -1: keep the spec's */
    int dim, depth, heads, patch, translate, hflip, seed, threads, no_eval_train;
} train_args;

void train_args_init(train_args *a);
int train_opts_table(train_args *a, cli_opt *t, int max); /* fills t, returns the count */
int train_args_finish(train_args *a, const char *cmd);    /* 0, or an exit status after an error line */
void print_result(const char *label, const derf_cls_result *r);
void study_smoke_defaults(train_args *a);                 /* --smoke of `derf study` (cmd_study.c) */

#endif
