/* cmd_compare_lm.c: `derf compare --model gpt2`: trains the same GPT-2 language model with several
 * norms (default layernorm, dyt, derf) and seeds on the text shards, prints the validation-loss table
 * (val loss mean +- std, evaluation-mode training loss, time) and writes report.md and curves.svg
 * (training loss and validation loss vs step) into --out. cmd_compare dispatches here. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "cli/lm_opts.h"
#include "derf/io.h"
#include "derf/plot.h"
#include "derf/strbuf.h"


typedef struct {
    char spec[128];
    float lr;                       /* 0: the shared --lr */
    derf_lm_result r[MAX_SEEDS];
    double vs[MAX_PTS], vl[MAX_PTS], ts[MAX_PTS], tl[MAX_PTS];
    int nv, nt;                     /* curves of the first seed */
} lm_run;

/* training loss per logged step, from the run's log */
static void read_train_curve(lm_run *nr, const char *dir) {
    char path[1300];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(j, "type"));
        if (type && !strcmp(type, "train") && nr->nt < MAX_PTS) {
            nr->ts[nr->nt] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "step"));
            nr->tl[nr->nt++] = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "loss"));
        }
        cJSON_Delete(j);
    }
    fclose(f);
}

int cmd_compare_lm(int argc, char **argv) {
    static lm_args a;
    static lm_run runs[MAX_NORMS];
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
    for (int i = 0; i < nn; i++) {
        memset(&runs[i], 0, sizeof runs[i]);
        memcpy(runs[i].spec, list[i].spec, sizeof runs[i].spec); /* both 128 bytes */
        runs[i].lr = list[i].lr;
    }
    if (compare_make_dir("compare", out)) return 2;

    for (int i = 0; i < nn; i++)
        for (int s = 0; s < seeds; s++) {
            lm_args b = a;
            b.norm = runs[i].spec;
            b.seed = a.seed + s;
            if (runs[i].lr > 0) b.o.lr = runs[i].lr;
            if ((rc = lm_args_finish(&b, "compare"))) return rc;
            char name[200], dir[1200];
            compare_run_name(name, sizeof name, runs[i].spec, b.seed);
            snprintf(dir, sizeof dir, "%s/%s", out, name);
            b.o.out = dir;
            char err[DERF_ERRLEN];
            if (!a.o.quiet) fprintf(stderr, "[derf] === %s, seed %d (%d of %d) ===\n", runs[i].spec, b.seed, i * seeds + s + 1, nn * seeds);
            derf_lm_result *r = &runs[i].r[s];
            if (derf_lm_train(&b.o, r, err, sizeof err)) return cli_fail("compare", "%s", err);
            lm_print_result(runs[i].spec, r);
            if (s == 0) {
                for (int k = 0; k < r->ncurve && runs[i].nv < MAX_PTS; k++) {
                    runs[i].vs[runs[i].nv] = r->curve_step[k];
                    runs[i].vl[runs[i].nv++] = r->curve_val[k];
                }
                read_train_curve(&runs[i], dir);
            }
        }

    const derf_gpt2_config *c = &a.o.model;
    const derf_lm_result *r0 = &runs[0].r[0];
    const int T = a.o.seq > 0 ? a.o.seq : c->block_size;
    derf_strbuf md = {0};
    derf_sb_printf(&md, "# derf compare --model gpt2\n\nGPT-2 preset `%s` (%d layers, width %d, %d heads, context %d, vocabulary %d, "
                        "%lld parameters with `%s`) on `%s`; %d steps of %d x %d x %d = %d tokens, AdamW (%g, %g), lr %g -> %g "
                        "(warmup %d, cosine), wd %g on 2-D tensors, clip %g; alphas attn %g / ffn %g / final %g, shared_scale %s; "
                        "validation every %d steps on %d fixed windows; seeds %d..%d.\n\n",
                   a.preset, c->n_layer, c->n_embd, c->n_head, c->block_size, r0->vocab, r0->params, runs[0].spec,
                   a.o.data, a.o.steps, a.o.accum, a.o.batch, T, a.o.accum * a.o.batch * T, (double)a.o.beta1,
                   (double)a.o.beta2, (double)a.o.lr, (double)a.o.min_lr, a.o.warmup, (double)a.o.weight_decay,
                   (double)a.o.clip, (double)a.attn_alpha, (double)a.ffn_alpha, (double)a.final_alpha, a.shared_scale,
                   a.o.eval_every, a.o.eval_windows, a.seed, a.seed + seeds - 1);
    derf_sb_printf(&md, "| norm | lr | val loss (mean ± std) | eval-mode train loss | tokens/s | time/run |\n"
                        "|---|---|---|---|---|---|\n");
    printf("\n%-28s %-9s %-20s %-18s %-10s %s\n", "norm", "lr", "val loss", "eval train loss", "tokens/s", "time/run");
    for (int i = 0; i < nn; i++) {
        double vl[MAX_SEEDS], tl[MAX_SEEDS], t = 0, tps = 0;
        int k = 0, div = 0;
        for (int s = 0; s < seeds; s++) {
            const derf_lm_result *r = &runs[i].r[s];
            if (r->diverged) { div++; continue; }
            vl[k] = r->val_loss; tl[k] = r->train_loss_eval; t += r->seconds; tps += r->tokens_per_s;
            k++;
        }
        double lr = runs[i].lr > 0 ? runs[i].lr : a.o.lr;
        if (!k) {
            printf("%-28s %-9.2g diverged (x) in all %d runs\n", runs[i].spec, lr, seeds);
            derf_sb_printf(&md, "| %s | %g | × (diverged) | | | |\n", runs[i].spec, lr);
            continue;
        }
        double m, sd, ml, sdl;
        compare_mean_std(vl, k, &m, &sd);
        compare_mean_std(tl, k, &ml, &sdl);
        char a1[48], a3[48];
        snprintf(a1, sizeof a1, "%.4f ± %.4f", m, sd);
        snprintf(a3, sizeof a3, "%.4f", ml);
        printf("%-28s %-9.2g %-21s %-18s %-10.0f %.0f s%s\n", runs[i].spec, lr, a1, ml >= 0 ? a3 : "-", tps / k, t / k,
               div ? " (some runs diverged)" : "");
        derf_sb_printf(&md, "| %s | %g | %.4f ± %.4f | %s | %.0f | %.0f s%s |\n", runs[i].spec, lr, m, sd, ml >= 0 ? a3 : "-",
                       tps / k, t / k, div ? " (some runs diverged)" : "");
    }
    derf_sb_printf(&md, "\nValidation loss: mean next-token cross-entropy (nats) over %d fixed, evenly spaced windows of %d tokens of "
                        "the validation shard, after the last step. The evaluation-mode training loss is the same measure on %d "
                        "fixed windows of the training shard (the paper's Appendix E).\n"
                        "Per-run logs: `<norm>-s<seed>/log.jsonl`; checkpoints: `<norm>-s<seed>/model.safetensors` "
                        "(`derf sample`). Curves (first seed): `curves.svg`.\n",
                   a.o.eval_windows, T, a.o.eval_windows);

    derf_strbuf svg = {0};
    derf_series vs[MAX_NORMS], ts[MAX_NORMS];
    for (int i = 0; i < nn; i++) {
        vs[i] = (derf_series){runs[i].spec, runs[i].vs, runs[i].vl, runs[i].nv, 0};
        ts[i] = (derf_series){runs[i].spec, runs[i].ts, runs[i].tl, runs[i].nt, 0};
    }
    derf_svg_begin(&svg, 960, 380);
    derf_axes ax1 = {"training loss (random batches)", "step", "loss (nats)", 0, a.o.steps, 0, 0, 1};
    derf_axes ax2 = {"validation loss (fixed windows)", "step", "loss (nats)", 0, a.o.steps, 0, 0, 1};
    derf_svg_panel(&svg, 0, 0, 480, 380, &ax1, ts, nn);
    derf_svg_panel(&svg, 480, 0, 480, 380, &ax2, vs, nn);
    derf_svg_end(&svg);
    return compare_write_report("compare", out, &md, &svg);
}
