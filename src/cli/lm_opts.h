/* lm_opts.h: the GPT-2 language-model training options shared by `derf train-lm` and
 * `derf compare --model gpt2` (cmd_lm.c, cmd_compare_lm.c). */
#ifndef DERF_CLI_LM_OPTS_H
#define DERF_CLI_LM_OPTS_H

#include "cli/cli.h"
#include "derf/lm.h"

typedef struct {
    derf_lm_opts o;
    const char *norm, *preset, *shared_scale;
    float attn_alpha, ffn_alpha, final_alpha;
    int vocab, layers, dim, heads, seed, threads, no_eval_train;
    const char *text;   /* --text gpt2 | bytes */
    const char *bias;   /* --bias on | off */
    float shared_scale_init;
    const char *logit_bias;   /* --logit-bias off | zero | unigram */
} lm_args;

void lm_args_init(lm_args *a);
int lm_opts_table(lm_args *a, cli_opt *t, int max);   /* fills t, returns the count */
int lm_args_finish(lm_args *a, const char *cmd);      /* 0, or an exit status after an error line */
void lm_print_result(const char *label, const derf_lm_result *r);
/* `derf compare --model gpt2` (cmd_compare dispatches here) */
int cmd_compare_lm(int argc, char **argv);

#endif
