/* cmd_compare_dna.c: `derf compare --model hyena`: for several norms (default layernorm, dyt, derf) and seeds,
 * pretrains HyenaDNA on human chr22, fine-tunes it on the DNA tasks, and reports the validation loss, the
 * evaluation-mode training loss and the task accuracies (mean +- std over seeds) beside the difficulty
 * baselines (k-mer logistic regression, a randomly initialised backbone fine-tuned the same way) in a table
 * and OUT/report.md. cmd_compare dispatches here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "cli/dna_opts.h"
#include "derf/io.h"
#include "derf/strbuf.h"

#define MAX_TASKS 4

/* what every DNA run of a comparison shares: the options and the tasks */
typedef struct {
    dna_args a;
    int nt, random_init;
    char tname[MAX_TASKS][64], tpath[MAX_TASKS][1200];
} dna_compare;

/* Pretraining (unless random_init) then fine-tuning on every task, into dir/{pretrain,<task>}. Columns: val loss, val
 * bits, eval-mode train loss, OOD loss, one accuracy (%) per task, their average; the parameter count last. */
static int dna_run(void *ctx, compare_row *R, int seed, const char *dir, double *v, double *seconds, int *ok) {
    const dna_compare *C = ctx;
    dna_args b = C->a;
    b.norm = R->spec;
    b.seed = seed;
    if (R->lr > 0) b.o.lr = R->lr;
    int rc = dna_args_finish(&b, "compare");
    if (rc) return rc;
    if (compare_make_dir("compare", dir)) return 2;
    char sub[1400], err[DERF_ERRLEN];
    for (int c = 0; c < 4; c++) v[c] = -1;
    *seconds = 0;
    if (!C->random_init) {
        if (!b.o.quiet) fprintf(stderr, "[derf] === %s, seed %d: pretraining ===\n", R->spec, seed);
        snprintf(sub, sizeof sub, "%s/pretrain", dir);
        derf_dna_train_opts po = b.o;
        po.out = sub;
        derf_dna_train_result r;
        if (derf_dna_pretrain(&po, &r, err, sizeof err)) return cli_fail("compare", "%s", err);
        if (r.diverged) return 0;
        double pre[] = {r.val_loss, r.val_loss / M_LN2, r.train_loss_eval, r.ood_loss};
        memcpy(v, pre, sizeof pre);
        v[MAX_COLS - 1] = (double)r.params;
        *seconds = r.seconds;
    }
    *ok = 1;
    v[4 + C->nt] = 0;
    for (int t = 0; t < C->nt; t++) {
        char init[1400];
        snprintf(init, sizeof init, "%s/pretrain", dir);
        snprintf(sub, sizeof sub, "%s/%.63s", dir, C->tname[t]);
        derf_dna_train_opts fo = b.o;
        fo.out = sub;
        fo.task = C->tpath[t];
        fo.init = C->random_init ? NULL : init;
        fo.lr = b.ft_lr;
        fo.min_lr = 0.1f * b.ft_lr;
        fo.warmup_frac = 0.01f;
        if (!b.o.quiet) fprintf(stderr, "[derf] === %s, seed %d: %s (%s) ===\n", R->spec, seed, C->tname[t],
                                C->random_init ? "random init" : "pretrained");
        derf_dna_train_result r;
        if (derf_dna_finetune(&fo, &r, err, sizeof err)) return cli_fail("compare", "%s", err);
        v[4 + t] = 100 * r.test_acc;
        v[4 + C->nt] += 100 * r.test_acc / C->nt;
        *seconds += r.seconds;
    }
    return 0;
}

/* the k-mer logistic-regression baselines (k = 1, 4), one row each */
static int kmer_rows(const dna_compare *C, int seeds, int smoke, compare_row *rows) {
    static const int K[2] = {1, 4};
    char err[DERF_ERRLEN];
    for (int q = 0; q < 2; q++) {
        compare_row *R = &rows[q];
        memset(R, 0, sizeof *R);
        snprintf(R->spec, sizeof R->spec, "%d-mer logistic regression", K[q]);
        for (int s = 0; s < seeds; s++) {
            R->ok[s] = 1;
            for (int c = 0; c < 4; c++) R->v[s][c] = -1;
            for (int t = 0; t < C->nt; t++) {
                float va, ta;
                if (derf_dna_kmer_baseline(C->tpath[t], K[q], smoke ? 2 : 20, (uint64_t)(C->a.seed + s), &va, &ta, err, sizeof err))
                    return cli_fail("compare", "%s", err);
                R->v[s][4 + t] = 100 * ta;
                R->v[s][4 + C->nt] += 100 * ta / C->nt;
                if (!C->a.o.quiet) fprintf(stderr, "[derf] %s: %d-mer logistic regression, seed %d: test acc %.2f%%\n",
                                           C->tname[t], K[q], C->a.seed + s, 100 * ta);
            }
        }
    }
    return 0;
}

/* --tasks: DATA/<name>.dnat each; a missing default task (e.g. built without r-bioc-biostrings) is skipped with a
 * warning. 0, or an exit status after an error line. */
static int parse_tasks(dna_compare *C, const char *tasks, int defaults, const char *data) {
    char miss[MAX_TASKS][1200];
    int nmiss = 0;
    C->nt = 0;
    for (const char *p = tasks; *p && C->nt < MAX_TASKS;) {
        size_t k = strcspn(p, ",");
        if (k == 0 || k >= sizeof C->tname[0]) return cli_fail("compare", "--tasks: bad name in '%s'", tasks);
        char name[64];
        memcpy(name, p, k);
        name[k] = 0;
        p += k + (p[k] == ',');
        memcpy(C->tname[C->nt], name, sizeof name);
        snprintf(C->tpath[C->nt], sizeof C->tpath[0], "%s/%s.dnat", data, name);
        if (defaults && access(C->tpath[C->nt], F_OK)) memcpy(miss[nmiss++], C->tpath[C->nt], sizeof miss[0]);
        else C->nt++;
    }
    if (!C->nt) return cli_fail("compare", "no task file in %s; run 'derf data dna'", data);
    for (int i = 0; i < nmiss; i++)
        fprintf(stderr, "[derf] compare: %s is missing, skipping the task (run 'derf data dna'; see docs/dna.md)\n", miss[i]);
    return 0;
}

int cmd_compare_dna(int argc, char **argv) {
    static dna_args a;
    static dna_compare C;
    static compare_row rows[MAX_NORMS + 3]; /* the norms, a random-init backbone, two k-mer baselines */
    dna_args_init(&a);
    const char *const default_tasks = "human_repeat_500,bact_species_200,dmel_promoter_300";
    const char *norms = NULL, *out = NULL, *model = "hyena", *tasks = default_tasks, *data = "runs/data/dna";
    int seeds = 1, smoke = 0;
    cli_opt opts[64];
    int n = dna_opts_table(&a, opts, 50);
    opts[n++] = (cli_opt){"model", CLI_STR, &model, "hyena or caduceus here (all: " CLI_COMPARE_MODELS "; see 'derf compare --help')", 0, -1};
    opts[n++] = (cli_opt){"norms", CLI_STR, &norms, "comma-separated norm specs; SPEC@LR gives one its own pretraining learning rate "
                                                    "(default layernorm,dyt,derf for hyena, rmsnorm,dyt,derf for caduceus)", 0, -1};
    opts[n++] = (cli_opt){"seeds", CLI_INT, &seeds, "seeds per norm (seed, seed+1, ...)", 1, MAX_SEEDS};
    opts[n++] = (cli_opt){"tasks", CLI_STR, &tasks, "comma-separated task names (DATA/NAME.dnat; default human_repeat_500,"
                                                    "bact_species_200,dmel_promoter_300, a missing default skipped with a warning)", 0, -1};
    opts[n++] = (cli_opt){"data", CLI_STR, &data, "folder of 'derf data dna' (the corpus is DATA/human_chr22.dnac unless --corpus)", 0, -1};
    opts[n++] = (cli_opt){"smoke", CLI_FLAG, &smoke, "a seconds-long check of the whole pipeline (test preset, a few steps)", 0, -1};
    opts[n++] = (cli_opt){"out", CLI_STR, &out, "folder for the runs and report.md (default runs/compare-MODEL)", 0, -1};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"compare", "--model hyena|caduceus [options]",
        "HyenaDNA or Caduceus-PS with several norms and seeds: pretraining on human chr22 (validation loss on held-out bins,\n"
        "evaluation-mode training loss), then fine-tuning on each task (test accuracy, average over tasks as in the\n"
        "paper's Table 11), beside k-mer logistic regression (k = 1, 4) and a randomly initialised backbone.",
        "Every option of 'derf train-dna' applies to all runs. Runs go to OUT/<norm>-s<seed>/{pretrain,<task>}/, the\n"
        "table to OUT/report.md. See docs/dna.md.", opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (strcmp(model, "hyena") && strcmp(model, "caduceus"))
        return cli_fail("compare", "--model must be " CLI_COMPARE_MODELS ", not '%s'", model);
    const int cad = !strcmp(model, "caduceus");
    a.arch = model;
    if (!norms) norms = cad ? "rmsnorm,dyt,derf" : "layernorm,dyt,derf";
    char outbuf[64];
    if (!out) { snprintf(outbuf, sizeof outbuf, "runs/compare-%s", model); out = outbuf; }
    char corpus[1100];
    if (!strcmp(a.o.corpus, "runs/data/dna/human_chr22.dnac")) {
        snprintf(corpus, sizeof corpus, "%s/human_chr22.dnac", data);
        a.o.corpus = corpus;
    }
    if (smoke) {
        a.preset = "test";
        a.norm = NULL;
        a.o.steps = 4;
        a.o.batch = 4;
        a.o.seq = 128;
        a.o.epochs = 1;
        a.o.train_limit = 32;
        a.o.eval_limit = 48;
        a.o.eval_windows = 8;
        a.o.log_every = 1000;
    }
    if ((rc = dna_args_finish(&a, "compare"))) return rc;
    C.a = a;
    compare_norm list[MAX_NORMS];   /* the norms first: a bad spec is reported before anything about the data */
    int nn = compare_parse_norms("compare", norms, list);
    if (nn < 0) return 2;
    if ((rc = parse_tasks(&C, tasks, tasks == default_tasks, data))) return rc;
    if (compare_make_dir("compare", out)) return 2;
    /* baselines first (cheap), then the norms, then a randomly initialised backbone of the first norm */
    compare_row *R = &rows[nn];
    if ((rc = kmer_rows(&C, seeds, smoke, rows + nn + 1)) ||
        (rc = compare_drive("compare", &C, dna_run, list, nn, seeds, a.seed, out, a.o.quiet, rows)))
        return rc;
    memset(R, 0, sizeof *R);
    snprintf(R->spec, sizeof R->spec, "%s", list[0].spec);
    R->lr = list[0].lr;
    C.random_init = 1;
    for (int s = 0; s < seeds; s++) {
        char name[200], dir[1200];
        compare_run_name(name, sizeof name, R->spec, a.seed + s);
        snprintf(dir, sizeof dir, "%s/random-init-%s", out, name);
        if ((rc = dna_run(&C, R, a.seed + s, dir, R->v[s], &R->seconds[s], &R->ok[s]))) return rc;
    }
    snprintf(R->spec, sizeof R->spec, "random init, %.100s", list[0].spec);

    derf_strbuf md = {0};
    char arch[200];
    if (cad)
        snprintf(arch, sizeof arch, "Caduceus-PS preset `%s` (d %d per strand, %d layers, d_state %d, expand %d; masked LM p %g)",
                 a.preset ? a.preset : "ct", a.o.cmodel.d_model, a.o.cmodel.n_layer, a.o.cmodel.d_state, a.o.cmodel.expand,
                 (double)a.o.mlm_prob);
    else
        snprintf(arch, sizeof arch, "HyenaDNA preset `%s` (d %d, %d layers, MLP %d, filter order %d; next-token)",
                 a.preset ? a.preset : "tiny", a.o.model.d_model, a.o.model.n_layer, a.o.model.d_inner, a.o.model.filter_order);
    derf_sb_printf(&md, "# derf compare --model %s\n\n%s, %lld parameters with `%s`. Pretraining on `%s`: %d steps of %d x %d "
                        "bases, AdamW (%g, %g) lr %g -> %g (warmup %.0f%%, cosine), wd %g, clip %g, rc_aug %d. Fine-tuning: %d "
                        "epoch(s), batch %d, lr %g -> %g, mean pooling + linear head, rc_aug %d%s%s; test accuracy at the best "
                        "validation epoch. Seeds %d..%d.%s\n\n",
                   model, arch, (long long)rows[0].v[0][MAX_COLS - 1], rows[0].spec, a.o.corpus, a.o.steps, a.o.batch, a.o.seq,
                   (double)a.o.beta1, (double)a.o.beta2, (double)a.o.lr, (double)a.o.min_lr, 100 * a.o.warmup_frac,
                   (double)a.o.weight_decay, (double)a.o.clip, a.o.rc_aug, a.o.epochs, a.o.batch, (double)a.ft_lr, 0.1 * a.ft_lr,
                   a.o.rc_aug, a.o.train_limit ? ", at most --train-limit training sequences" : "",
                   a.o.eval_limit ? ", at most --eval-limit val/test sequences" : "", a.seed, a.seed + seeds - 1,
                   smoke ? " **Smoke run: the numbers mean nothing.**" : "");
    compare_col cols[MAX_COLS] = {{"val loss (nats/base)", "%.4f", 1}, {"val bits/base", "%.4f", 1},
                                  {"eval-mode train loss", "%.4f", 1}, {"OOD loss (nats/base)", "%.4f", 1}};
    char heads[MAX_TASKS][80];
    for (int t = 0; t < C.nt; t++) {
        snprintf(heads[t], sizeof heads[t], "%s acc (%%)", C.tname[t]);
        cols[4 + t] = (compare_col){heads[t], "%.2f", 1};
    }
    cols[4 + C.nt] = (compare_col){"average acc (%)", "%.2f", 1};
    compare_table(&md, cols, 5 + C.nt, NULL, rows, nn + 3, seeds, a.o.lr);
    derf_sb_printf(&md, "\nValidation loss: %s cross-entropy over %s non-overlapping windows of the held-out 1-Mbp bins "
                        "(no augmentation); the evaluation-mode training loss is the same measure on training windows (paper "
                        "Appendix E); the OOD loss the same measure on a fixed grid of windows of the "
                        "out-of-distribution corpus (`--ood-corpus`, by default the fungus U. maydis, umaydis.dnac). Accuracies: test split (held-out bins for the human task, held-out strains for the bacterial "
                        "one, the held-out arm chr3R for the Drosophila promoters). Paper (Derf Table 11, GenomicBenchmarks average): HyenaDNA Norm 85.2 / DyT 85.2 / Derf 85.7; "
                        "Caduceus Norm 86.9 / DyT 86.9 / Derf 87.3.\n", cad ? "masked-LM (masks from a fixed seed)" : "next-token",
                   a.o.eval_windows ? "fixed, evenly spaced" : "all");
    return compare_write_report("compare", out, &md, NULL);
}
