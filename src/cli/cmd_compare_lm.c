/* cmd_compare_lm.c: `derf compare --model gpt2`: trains the same GPT-2 language model with several
 * norms (default layernorm, dyt, derf) and seeds on the text shards, prints the validation-loss table
 * (val loss mean +- std, evaluation-mode training loss, time) and writes report.md and curves.svg
 * (training loss and validation loss vs step) into --out. cmd_compare dispatches here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "cli/lm_opts.h"
#include "derf/io.h"
#include "derf/strbuf.h"


/* one GPT-2 run for the compare driver */
static int lm_run(void *ctx, compare_row *row, int seed, const char *dir, double *v, double *seconds, int *ok) {
    lm_args b = *(const lm_args *)ctx;
    b.norm = row->spec;
    b.seed = seed;
    if (row->lr > 0) b.o.lr = row->lr;
    int rc = lm_args_finish(&b, "compare");
    if (rc) return rc;
    b.o.out = dir;
    char err[DERF_ERRLEN];
    static derf_lm_result r;
    if (derf_lm_train(&b.o, &r, err, sizeof err)) return cli_fail("compare", "%s", err);
    lm_print_result(row->spec, &r);
    *ok = !r.diverged;
    v[0] = r.val_loss;
    v[1] = r.train_loss_eval;
    v[2] = r.tokens_per_s;
    v[3] = r.vocab;  /* not columns: the header's sizes */
    v[4] = (double)r.params;
    *seconds = r.seconds;
    return 0;
}

int cmd_compare_lm(int argc, char **argv) {
    static lm_args a;
    static compare_row rows[MAX_NORMS];
    lm_args_init(&a);
    const char *norms = "layernorm,dyt,derf", *out = "runs/compare-lm", *model = "gpt2";
    int seeds = 1;
    cli_opt opts[64];
    int n = lm_opts_table(&a, opts, 60);
    opts[n++] = (cli_opt){"model", CLI_STR, &model, "gpt2 here (all: " CLI_COMPARE_MODELS "; see 'derf compare --help')", 0, -1};
    opts[n++] = (cli_opt){"norms", CLI_STR, &norms, "comma-separated norm specs; SPEC@LR gives one its own learning rate", 0, -1};
    opts[n++] = (cli_opt){"seeds", CLI_INT, &seeds, "seeds per norm (seed, seed+1, ...)", 1, MAX_SEEDS};
    opts[n++] = (cli_opt){"out", CLI_STR, &out, "folder for the runs, report.md and curves.svg", 0, -1};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"compare", "--model gpt2 [options]",
        "Train the same GPT-2 language model with several norms and seeds on the text shards ('derf data text') and\n"
        "compare validation loss and evaluation-mode training loss (the paper's GPT-2 table in miniature).",
        "Every option of 'derf train-lm' applies to all runs. Each run's checkpoints and log go to\n"
        "OUT/<norm>-s<seed>/; the table goes to OUT/report.md, the curves to OUT/curves.svg. See docs/gpt2.md.", opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (strcmp(model, "gpt2") != 0) return cli_fail("compare", "--model must be " CLI_COMPARE_MODELS ", not '%s'", model);
    if ((rc = lm_args_finish(&a, "compare"))) return rc;

    compare_norm list[MAX_NORMS];
    int nn = compare_parse_norms("compare", norms, list);
    if (nn < 0) return 2;
    if ((rc = compare_drive("compare", &a, lm_run, list, nn, seeds, a.seed, out, a.o.quiet, rows))) return rc;
    const int vocab = (int)rows[0].v[0][3]; /* the first run's sizes (the vocabulary comes from the shards) */
    const long long params = (long long)rows[0].v[0][4];
    const derf_gpt2_config *c = &a.o.model;
    const int T = a.o.seq > 0 ? a.o.seq : c->block_size;
    derf_strbuf md = {0};
    derf_sb_printf(&md, "# derf compare --model gpt2\n\nGPT-2 preset `%s` (%d layers, width %d, %d heads, context %d, vocabulary %d, "
                        "%lld parameters with `%s`) on `%s`; %d steps of %d x %d x %d = %d tokens, AdamW (%g, %g), lr %g -> %g "
                        "(warmup %d, cosine), wd %g on 2-D tensors, clip %g; alphas attn %g / ffn %g / final %g, shared_scale %s; "
                        "validation every %d steps on %d fixed windows; seeds %d..%d.\n\n",
                   a.preset, c->n_layer, c->n_embd, c->n_head, c->block_size, vocab, params, rows[0].spec,
                   a.o.data, a.o.steps, a.o.accum, a.o.batch, T, a.o.accum * a.o.batch * T, (double)a.o.beta1,
                   (double)a.o.beta2, (double)a.o.lr, (double)a.o.min_lr, a.o.warmup, (double)a.o.weight_decay,
                   (double)a.o.clip, (double)a.attn_alpha, (double)a.ffn_alpha, (double)a.final_alpha, a.shared_scale,
                   a.o.eval_every, a.o.eval_windows, a.seed, a.seed + seeds - 1);
    static const compare_col cols[] = {{"val loss", "%.4f", 1}, {"eval-mode train loss", "%.4f", 0}, {"tokens/s", "%.0f", 0}};
    compare_table(&md, cols, 3, NULL, rows, nn, seeds, a.o.lr);
    derf_sb_printf(&md, "\nValidation loss: mean next-token cross-entropy (nats) over %d fixed, evenly spaced windows of %d tokens of "
                        "the validation shard, after the last step. The evaluation-mode training loss is the same measure on %d "
                        "fixed windows of the training shard (the paper's Appendix E).\n"
                        "Per-run logs: `<norm>-s<seed>/log.jsonl`; checkpoints: `<norm>-s<seed>/model.safetensors` "
                        "(`derf sample`). Curves (first seed): `curves.svg`.\n",
                   a.o.eval_windows, T, a.o.eval_windows);

    derf_strbuf svg = {0};
    const compare_panel panels[2] = {
        {"train", NULL, "step", "loss", NULL, 1, "training loss (random batches)", "step", "loss (nats)", a.o.steps},
        {"val", NULL, "step", "val_loss", NULL, 1, "validation loss (fixed windows)", "step", "loss (nats)", a.o.steps}};
    compare_curves(&svg, rows, nn, panels);
    return compare_write_report("compare", out, &md, &svg);
}
