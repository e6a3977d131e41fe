/* cmd_compare.c: `derf compare`, the main job: trains the same ViT with several norms (default
 * layernorm, dyt, derf) and seeds, prints a table (test accuracy mean +- std, EMA accuracy,
 * evaluation-mode training loss), and writes report.md and curves.svg into --out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "cli/dna_opts.h"
#include "cli/dit_opts.h"
#include "cli/lm_opts.h"
#include "cli/train_opts.h"
#include "derf/io.h"
#include "derf/strbuf.h"


/* one ViT run for the compare driver */
static int vit_run(void *ctx, compare_row *row, int seed, const char *dir, double *v, double *seconds, int *ok) {
    train_args b = *(const train_args *)ctx;
    b.norm = row->spec;
    b.seed = seed;
    if (row->lr > 0) b.o.lr = row->lr;
    int rc = train_args_finish(&b, "compare");
    if (rc) return rc;
    b.o.out = dir;
    char err[DERF_ERRLEN];
    derf_cls_result r;
    if (derf_cls_train(&b.o, &r, err, sizeof err)) return cli_fail("compare", "%s", err);
    print_result(row->spec, &r);
    *ok = !r.diverged;
    v[0] = 100 * r.test_acc;
    v[1] = r.test_acc_ema >= 0 ? 100 * r.test_acc_ema : -1;
    v[2] = r.train_loss_eval;
    v[3] = r.train_loss_eval_ema;
    *seconds = r.seconds;
    return 0;
}

int cmd_compare(int argc, char **argv) {
    const char *m = compare_model_arg(argc, argv); /* the other models have their own option tables */
    if (m && !strcmp(m, "gpt2")) return cmd_compare_lm(argc, argv);       /* cmd_compare_lm.c */
    if (m && !strcmp(m, "wav2vec")) return cmd_compare_speech(argc, argv); /* cmd_speech.c */
    if (m && (!strcmp(m, "hyena") || !strcmp(m, "caduceus"))) return cmd_compare_dna(argc, argv); /* cmd_compare_dna.c */
    if (m && !strcmp(m, "dit")) return cmd_compare_dit(argc, argv);        /* cmd_compare_dit.c */
    static train_args a;
    static compare_row rows[MAX_NORMS];
    train_args_init(&a);
    const char *norms = "layernorm,dyt,derf", *out = "runs/compare", *model = "vit";
    int seeds = 1;
    cli_opt opts[64];
    int n = train_opts_table(&a, opts, 60);
    opts[n++] = (cli_opt){"norms", CLI_STR, &norms, "comma-separated norm specs; SPEC@LR gives one its own learning rate", 0, -1};
    opts[n++] = (cli_opt){"seeds", CLI_INT, &seeds, "seeds per norm (seed, seed+1, ...)", 1, MAX_SEEDS};
    opts[n++] = (cli_opt){"out", CLI_STR, &out, "folder for the runs, report.md and curves.svg", 0, -1};
    opts[n++] = (cli_opt){"model", CLI_STR, &model, "vit (this page), gpt2 (language model), dit (diffusion), wav2vec (speech), hyena or caduceus (DNA); 'derf compare --model M --help' for each", 0, -1};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"compare", "[options]",
        "The main job: train the same ViT with several norms and seeds on Fashion-MNIST and compare test accuracy\n"
        "and evaluation-mode training loss (the paper's Tables 8 and 13 in miniature).",
        "Every training option of 'derf train' applies to all runs. Each run's checkpoints and log go to\n"
        "OUT/<norm>-s<seed>/; the table goes to OUT/report.md, the curves to OUT/curves.svg.", opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (strcmp(model, "vit") != 0) return cli_fail("compare", "--model must be " CLI_COMPARE_MODELS ", not '%s'", model);
    if ((rc = train_args_finish(&a, "compare"))) return rc;
    compare_norm list[MAX_NORMS];
    int nn = compare_parse_norms("compare", norms, list);
    if (nn < 0) return 2;
    if ((rc = compare_drive("compare", &a, vit_run, list, nn, seeds, a.seed, out, a.o.quiet, rows))) return rc;

    derf_strbuf md = {0};
    derf_sb_printf(&md, "# derf compare\n\nViT preset `%s` (dim %d, depth %d, heads %d, patch %d, %s pooling) on `%s`, "
                        "%d epochs, batch %d, lr %g, warmup %g epochs, wd %g, label smoothing %g, mixup %g, cutmix %g, "
                        "erase %g, drop path %g, EMA %g; seeds %d..%d.\n\n",
                   a.preset, a.o.model.dim, a.o.model.depth, a.o.model.heads, a.o.model.patch,
                   a.o.model.pool == DERF_POOL_AVG ? "average" : "class-token", a.o.data, a.o.epochs, a.o.batch,
                   (double)a.o.lr, (double)a.o.warmup_epochs, (double)a.o.weight_decay, (double)a.o.aug.smoothing,
                   (double)a.o.aug.mixup_alpha, (double)a.o.aug.cutmix_alpha, (double)a.o.aug.erase_prob,
                   (double)a.o.model.drop_path, (double)a.o.ema, a.seed, a.seed + seeds - 1);
    static const compare_col cols[] = {{"test acc %", "%.2f", 1}, {"EMA test acc %", "%.2f", 0},
                                       {"eval-mode train loss", "%.4f", 0}, {"EMA eval-mode train loss", "%.4f", 0}};
    compare_table(&md, cols, 4, NULL, rows, nn, seeds, a.o.lr);
    derf_sb_printf(&md, "\nThe evaluation-mode training loss is the paper's Appendix E measure: mean cross-entropy over the whole "
                        "training set with augmentation, mixup, label smoothing and drop path off.\n"
                        "Per-run logs: `<norm>-s<seed>/log.jsonl`. Curves (first seed): `curves.svg`.\n");
    derf_strbuf svg = {0};
    const compare_panel panels[2] = {
        {"train", NULL, "epoch", "loss", NULL, 1, "training loss (augmented batches)", "epoch", "loss", a.o.epochs},
        {"eval", "final", "epoch", "test_acc", "test_acc_ema", 100, "test accuracy (better of raw and EMA)", "epoch", "%", a.o.epochs}};
    compare_curves(&svg, rows, nn, panels);
    return compare_write_report("compare", out, &md, &svg);
}
