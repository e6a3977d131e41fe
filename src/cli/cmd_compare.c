/* cmd_compare.c: `derf compare`, the main job: trains the same ViT with several norms (default
 * layernorm, dyt, derf) and seeds, prints a table (test accuracy mean +- std, EMA accuracy,
 * evaluation-mode training loss), and writes report.md and curves.svg into --out. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "cli/dna_opts.h"
#include "cli/dit_opts.h"
#include "cli/lm_opts.h"
#include "cli/train_opts.h"
#include "derf/io.h"
#include "derf/plot.h"
#include "derf/strbuf.h"


typedef struct {
    char spec[128];
    float lr;                  /* 0: the shared --lr */
    derf_cls_result r[MAX_SEEDS];
    double ep[MAX_PTS], acc[MAX_PTS], lep[MAX_PTS], loss[MAX_PTS];
    int nacc, nloss;           /* curves of the first seed */
} norm_run;

/* Reads the eval (accuracy per epoch) and train (loss per step) records of a run's log. */
static void read_curves(norm_run *nr, const char *dir) {
    char path[1300];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(j, "type"));
        if (type && !strcmp(type, "eval") && nr->nacc < MAX_PTS) {
            nr->ep[nr->nacc] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "epoch"));
            double a = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "test_acc"));
            double ae = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "test_acc_ema"));
            nr->acc[nr->nacc++] = 100 * fmax(a, ae);
        } else if (type && !strcmp(type, "train") && nr->nloss < MAX_PTS) {
            nr->lep[nr->nloss] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "epoch"));
            nr->loss[nr->nloss++] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "loss"));
        } else if (type && !strcmp(type, "final") && nr->nacc < MAX_PTS && nr->nacc > 0) {
            nr->ep[nr->nacc] = nr->ep[nr->nacc - 1] + 1;
            double a = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "test_acc"));
            double ae = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "test_acc_ema"));
            nr->acc[nr->nacc++] = 100 * fmax(a, ae);
        }
        cJSON_Delete(j);
    }
    fclose(f);
}

int cmd_compare(int argc, char **argv) {
    const char *m = compare_model_arg(argc, argv); /* the other models have their own option tables */
    if (m && !strcmp(m, "gpt2")) return cmd_compare_lm(argc, argv);       /* cmd_compare_lm.c */
    if (m && !strcmp(m, "wav2vec")) return cmd_compare_speech(argc, argv); /* cmd_speech.c */
    if (m && (!strcmp(m, "hyena") || !strcmp(m, "caduceus"))) return cmd_compare_dna(argc, argv); /* cmd_compare_dna.c */
    if (m && !strcmp(m, "dit")) return cmd_compare_dit(argc, argv);        /* cmd_compare_dit.c */
    static train_args a;
    static norm_run runs[MAX_NORMS];
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

    /* parse the norm list (each must be a valid spec) */
    compare_norm list[MAX_NORMS];
    int nn = compare_parse_norms("compare", norms, list);
    if (nn < 0) return 2;
    for (int i = 0; i < nn; i++) {
        memset(&runs[i], 0, sizeof runs[i]);
        memcpy(runs[i].spec, list[i].spec, sizeof runs[i].spec); /* both 128 bytes */
        runs[i].lr = list[i].lr;
    }
    if (compare_make_dir("compare", out)) return 2;

    for (int i = 0; i < nn; i++)
        for (int s = 0; s < seeds; s++) {
            train_args b = a;
            b.norm = runs[i].spec;
            b.seed = a.seed + s;
            if (runs[i].lr > 0) b.o.lr = runs[i].lr;
            if ((rc = train_args_finish(&b, "compare"))) return rc;
            char name[200], dir[1200];
            compare_run_name(name, sizeof name, runs[i].spec, b.seed);
            snprintf(dir, sizeof dir, "%s/%s", out, name);
            b.o.out = dir;
            char err[DERF_ERRLEN];
            if (!a.o.quiet) fprintf(stderr, "[derf] === %s, seed %d (%d of %d) ===\n", runs[i].spec, b.seed, i * seeds + s + 1, nn * seeds);
            if (derf_cls_train(&b.o, &runs[i].r[s], err, sizeof err)) return cli_fail("compare", "%s", err);
            print_result(runs[i].spec, &runs[i].r[s]);
            if (s == 0) read_curves(&runs[i], dir);
        }

    /* table (stdout and report.md) */
    derf_strbuf md = {0};
    derf_sb_printf(&md, "# derf compare\n\nViT preset `%s` (dim %d, depth %d, heads %d, patch %d, %s pooling) on `%s`, "
                        "%d epochs, batch %d, lr %g, warmup %g epochs, wd %g, label smoothing %g, mixup %g, cutmix %g, "
                        "erase %g, drop path %g, EMA %g; seeds %d..%d.\n\n",
                   a.preset, a.o.model.dim, a.o.model.depth, a.o.model.heads, a.o.model.patch,
                   a.o.model.pool == DERF_POOL_AVG ? "average" : "class-token", a.o.data, a.o.epochs, a.o.batch,
                   (double)a.o.lr, (double)a.o.warmup_epochs, (double)a.o.weight_decay, (double)a.o.aug.smoothing,
                   (double)a.o.aug.mixup_alpha, (double)a.o.aug.cutmix_alpha, (double)a.o.aug.erase_prob,
                   (double)a.o.model.drop_path, (double)a.o.ema, a.seed, a.seed + seeds - 1);
    derf_sb_printf(&md, "| norm | lr | test acc %% (mean ± std) | EMA test acc %% | eval-mode train loss | EMA eval-mode train loss | time/run |\n"
                        "|---|---|---|---|---|---|---|\n");
    printf("\n%-28s %-9s %-20s %-16s %-18s %s\n", "norm", "lr", "test acc %", "EMA acc %", "eval train loss", "time/run");
    for (int i = 0; i < nn; i++) {
        double acc[MAX_SEEDS], acce[MAX_SEEDS], tl[MAX_SEEDS], tle[MAX_SEEDS], t = 0;
        int k = 0, div = 0;
        for (int s = 0; s < seeds; s++) {
            derf_cls_result *r = &runs[i].r[s];
            if (r->diverged) { div++; continue; }
            acc[k] = 100 * r->test_acc; acce[k] = 100 * r->test_acc_ema;
            tl[k] = r->train_loss_eval; tle[k] = r->train_loss_eval_ema; t += r->seconds;
            k++;
        }
        double lr = runs[i].lr > 0 ? runs[i].lr : a.o.lr;
        if (!k) {
            printf("%-28s %-9.2g diverged (x) in all %d runs\n", runs[i].spec, lr, seeds);
            derf_sb_printf(&md, "| %s | %g | × (diverged) | | | | |\n", runs[i].spec, lr);
            continue;
        }
        double m, sd, me, sde, ml, sdl, mle, sdle;
        compare_mean_std(acc, k, &m, &sd); compare_mean_std(acce, k, &me, &sde); compare_mean_std(tl, k, &ml, &sdl); compare_mean_std(tle, k, &mle, &sdle);
        char a1[48], a2[48], a3[48];
        snprintf(a1, sizeof a1, "%.2f ± %.2f", m, sd);
        snprintf(a2, sizeof a2, "%.2f", me);
        snprintf(a3, sizeof a3, "%.4f", ml);
        printf("%-28s %-9.2g %-21s %-16s %-18s %.0f s%s\n", runs[i].spec, lr, a1, me >= 0 ? a2 : "-", ml >= 0 ? a3 : "-", t / k,
               div ? " (some runs diverged)" : "");
        char c1[32] = "-", c2[32] = "-", c3[32] = "-"; /* EMA or eval-mode loss not measured: '-' */
        if (me >= 0) snprintf(c1, sizeof c1, "%.2f", me);
        if (ml >= 0) snprintf(c2, sizeof c2, "%.4f", ml);
        if (mle >= 0) snprintf(c3, sizeof c3, "%.4f", mle);
        derf_sb_printf(&md, "| %s | %g | %.2f ± %.2f | %s | %s | %s | %.0f s |\n", runs[i].spec, lr, m, sd, c1, c2, c3, t / k);
    }
    derf_sb_printf(&md, "\nThe evaluation-mode training loss is the paper's Appendix E measure: mean cross-entropy over the whole "
                        "training set with augmentation, mixup, label smoothing and drop path off.\n"
                        "Per-run logs: `<norm>-s<seed>/log.jsonl`. Curves (first seed): `curves.svg`.\n");

    /* curves */
    derf_strbuf svg = {0};
    derf_series acc_s[MAX_NORMS], loss_s[MAX_NORMS];
    for (int i = 0; i < nn; i++) {
        acc_s[i] = (derf_series){runs[i].spec, runs[i].ep, runs[i].acc, runs[i].nacc, 0};
        loss_s[i] = (derf_series){runs[i].spec, runs[i].lep, runs[i].loss, runs[i].nloss, 0};
    }
    derf_svg_begin(&svg, 960, 380);
    derf_axes ax1 = {"training loss (augmented batches)", "epoch", "loss", 0, a.o.epochs, 0, 0, 1};
    derf_axes ax2 = {"test accuracy (better of raw and EMA)", "epoch", "%", 0, a.o.epochs, 0, 0, 1};
    derf_svg_panel(&svg, 0, 0, 480, 380, &ax1, loss_s, nn);
    derf_svg_panel(&svg, 480, 0, 480, 380, &ax2, acc_s, nn);
    derf_svg_end(&svg);
    return compare_write_report("compare", out, &md, &svg);
}
