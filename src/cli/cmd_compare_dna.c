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

typedef struct {
    char spec[128];
    float lr;
    derf_dna_train_result pre[MAX_SEEDS], ft[MAX_TASKS][MAX_SEEDS];
    int ok[MAX_SEEDS];
} dna_run;

static void ms(const double *x, int n, char *buf, size_t len, double scale, int prec) {
    if (n <= 0) { snprintf(buf, len, "-"); return; }
    double m, s;
    compare_mean_std(x, n, &m, &s);
    snprintf(buf, len, "%.*f ± %.*f", prec, m * scale, prec, s * scale);
}

int cmd_compare_dna(int argc, char **argv) {
    static dna_args a;
    static dna_run runs[MAX_NORMS], rnd; /* rnd: the randomly initialised baseline (first norm) */
    dna_args_init(&a);
    const char *const default_tasks = "human_repeat_500,bact_species_200,dmel_promoter_300";
    const char *norms = NULL, *out = NULL, *model = "hyena", *tasks = default_tasks, *data = "runs/data/dna";
    int seeds = 1, smoke = 0, kmer_k[2] = {1, 4};
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
    char tname[MAX_TASKS][64], tpath[MAX_TASKS][1200];
    int nt = 0, nmiss = 0;
    char miss[MAX_TASKS][1200];
    for (const char *p = tasks; *p && nt < MAX_TASKS;) {
        size_t k = strcspn(p, ",");
        if (k == 0 || k >= sizeof tname[0]) return cli_fail("compare", "--tasks: bad name in '%s'", tasks);
        memcpy(tname[nt], p, k);
        tname[nt][k] = 0;
        snprintf(tpath[nt], sizeof tpath[nt], "%s/%s.dnat", data, tname[nt]);
        p += k + (p[k] == ',');
        if (tasks == default_tasks && access(tpath[nt], F_OK)) { /* a default task that was not built (e.g. no r-bioc-biostrings) */
            memcpy(miss[nmiss++], tpath[nt], sizeof miss[0]);
            continue;
        }
        nt++;
    }
    compare_norm list[MAX_NORMS];   /* the norms first: a bad spec is reported before anything about the data */
    int nn = compare_parse_norms("compare", norms, list);
    if (nn < 0) return 2;
    if (nt == 0) return cli_fail("compare", "no task file in %s; run 'derf data dna'", data);
    for (int i = 0; i < nmiss; i++)
        fprintf(stderr, "[derf] compare: %s is missing, skipping the task (run 'derf data dna'; see docs/dna.md)\n", miss[i]);
    if (compare_make_dir("compare", out)) return 2;
    char err[DERF_ERRLEN];
    /* baselines first (cheap): k-mer logistic regression per task and seed */
    double km[MAX_TASKS][2][MAX_SEEDS];
    for (int t = 0; t < nt; t++)
        for (int q = 0; q < 2; q++)
            for (int s = 0; s < seeds; s++) {
                float va, ta;
                if (derf_dna_kmer_baseline(tpath[t], kmer_k[q], smoke ? 2 : 20, (uint64_t)(a.seed + s), &va, &ta, err, sizeof err))
                    return cli_fail("compare", "%s", err);
                km[t][q][s] = ta;
                if (!a.o.quiet) fprintf(stderr, "[derf] %s: %d-mer logistic regression, seed %d: test acc %.2f%%\n", tname[t],
                                        kmer_k[q], a.seed + s, 100 * ta);
            }
    for (int i = 0; i <= nn; i++) {
        const int is_rnd = i == nn;
        dna_run *R = is_rnd ? &rnd : &runs[i];
        memset(R, 0, sizeof *R);
        memcpy(R->spec, list[is_rnd ? 0 : i].spec, sizeof R->spec);
        R->lr = list[is_rnd ? 0 : i].lr;
        for (int s = 0; s < seeds; s++) {
            dna_args b = a;
            b.norm = R->spec;
            b.seed = a.seed + s;
            if (R->lr > 0) b.o.lr = R->lr;
            if ((rc = dna_args_finish(&b, "compare"))) return rc;
            char name[200], dir[1200], sub[1400];
            compare_run_name(name, sizeof name, R->spec, b.seed);
            snprintf(dir, sizeof dir, "%s/%s%s", out, is_rnd ? "random-init-" : "", name);
            if (compare_make_dir("compare", dir)) return 2;
            if (!is_rnd) {
                if (!a.o.quiet) fprintf(stderr, "[derf] === %s, seed %d: pretraining ===\n", R->spec, b.seed);
                snprintf(sub, sizeof sub, "%s/pretrain", dir);
                derf_dna_train_opts po = b.o;
                po.out = sub;
                if (derf_dna_pretrain(&po, &R->pre[s], err, sizeof err)) return cli_fail("compare", "%s", err);
                if (R->pre[s].diverged) continue;
            }
            R->ok[s] = 1;
            for (int t = 0; t < nt; t++) {
                char init[1400];
                snprintf(init, sizeof init, "%s/pretrain", dir);
                snprintf(sub, sizeof sub, "%s/%.63s", dir, tname[t]);
                derf_dna_train_opts fo = b.o;
                fo.out = sub;
                fo.task = tpath[t];
                fo.init = is_rnd ? NULL : init;
                fo.lr = b.ft_lr;
                fo.min_lr = 0.1f * b.ft_lr;
                fo.warmup_frac = 0.01f;
                if (!a.o.quiet) fprintf(stderr, "[derf] === %s, seed %d: %s (%s) ===\n", R->spec, b.seed, tname[t],
                                        is_rnd ? "random init" : "pretrained");
                if (derf_dna_finetune(&fo, &R->ft[t][s], err, sizeof err)) return cli_fail("compare", "%s", err);
            }
        }
    }

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
                   model, arch, runs[0].pre[0].params, runs[0].spec, a.o.corpus, a.o.steps, a.o.batch, a.o.seq,
                   (double)a.o.beta1, (double)a.o.beta2, (double)a.o.lr, (double)a.o.min_lr, 100 * a.o.warmup_frac,
                   (double)a.o.weight_decay, (double)a.o.clip, a.o.rc_aug, a.o.epochs, a.o.batch, (double)a.ft_lr, 0.1 * a.ft_lr,
                   a.o.rc_aug, a.o.train_limit ? ", at most --train-limit training sequences" : "",
                   a.o.eval_limit ? ", at most --eval-limit val/test sequences" : "", a.seed, a.seed + seeds - 1,
                   smoke ? " **Smoke run: the numbers mean nothing.**" : "");
    derf_sb_printf(&md, "| norm | val loss (nats/base) | val bits/base | eval-mode train loss | OOD loss (nats/base) |");
    printf("\n%-22s %-17s %-17s %-17s %-17s", "norm", "val loss", "bits/base", "eval train loss", "OOD loss");
    for (int t = 0; t < nt; t++) { derf_sb_printf(&md, " %s acc (%%) |", tname[t]); printf(" %-22s", tname[t]); }
    derf_sb_printf(&md, " average acc (%%) |\n|---|---|---|---|---|");
    printf(" %s\n", "average");
    for (int t = 0; t <= nt; t++) derf_sb_printf(&md, "---|");
    derf_sb_printf(&md, "\n");
    for (int i = 0; i <= nn; i++) {
        const int is_rnd = i == nn;
        dna_run *R = is_rnd ? &rnd : &runs[i];
        double vl[MAX_SEEDS], vb[MAX_SEEDS], tl[MAX_SEEDS], ol[MAX_SEEDS], acc[MAX_TASKS][MAX_SEEDS], avg[MAX_SEEDS];
        int k = 0, ko = 0;
        for (int s = 0; s < seeds; s++) {
            if (!R->ok[s]) continue;
            vl[k] = R->pre[s].val_loss;
            vb[k] = R->pre[s].val_loss / M_LN2;
            tl[k] = R->pre[s].train_loss_eval;
            if (R->pre[s].ood_loss >= 0) ol[ko++] = R->pre[s].ood_loss;
            avg[k] = 0;
            for (int t = 0; t < nt; t++) { acc[t][k] = R->ft[t][s].test_acc; avg[k] += acc[t][k] / nt; }
            k++;
        }
        char label[200], c1[64], c2[64], c3[64], c4[64], ca[64];
        snprintf(label, sizeof label, "%s%s", is_rnd ? "random init, " : "", R->spec);
        snprintf(c4, sizeof c4, "-");
        if (is_rnd) { snprintf(c1, sizeof c1, "-"); snprintf(c2, sizeof c2, "-"); snprintf(c3, sizeof c3, "-"); }
        else { ms(vl, k, c1, sizeof c1, 1, 4); ms(vb, k, c2, sizeof c2, 1, 4); ms(tl, k, c3, sizeof c3, 1, 4); ms(ol, ko, c4, sizeof c4, 1, 4); }
        printf("%-22s %-17s %-17s %-17s %-17s", label, c1, c2, c3, c4);
        derf_sb_printf(&md, "| %s | %s | %s | %s | %s |", label, c1, c2, c3, c4);
        for (int t = 0; t < nt; t++) {
            ms(acc[t], k, ca, sizeof ca, 100, 2);
            printf(" %-22s", ca);
            derf_sb_printf(&md, " %s |", ca);
        }
        ms(avg, k, ca, sizeof ca, 100, 2);
        printf(" %s%s\n", ca, k < seeds ? " (some runs diverged)" : "");
        derf_sb_printf(&md, " %s%s |\n", ca, k < seeds ? " (some runs diverged)" : "");
    }
    for (int q = 0; q < 2; q++) {
        char ca[64];
        printf("%d-mer logistic regr.   %-17s %-17s %-17s %-17s", kmer_k[q], "-", "-", "-", "-");
        derf_sb_printf(&md, "| %d-mer logistic regression | - | - | - | - |", kmer_k[q]);
        double avg[MAX_SEEDS] = {0};
        for (int t = 0; t < nt; t++) {
            ms(km[t][q], seeds, ca, sizeof ca, 100, 2);
            for (int s = 0; s < seeds; s++) avg[s] += km[t][q][s] / nt;
            printf(" %-22s", ca);
            derf_sb_printf(&md, " %s |", ca);
        }
        ms(avg, seeds, ca, sizeof ca, 100, 2);
        printf(" %s\n", ca);
        derf_sb_printf(&md, " %s |\n", ca);
    }
    derf_sb_printf(&md, "\nValidation loss: %s cross-entropy over %s non-overlapping windows of the held-out 1-Mbp bins "
                        "(no augmentation); the evaluation-mode training loss is the same measure on training windows (paper "
                        "Appendix E); the OOD loss the same measure on a fixed grid of windows of the "
                        "out-of-distribution corpus (`--ood-corpus`, by default the fungus U. maydis, umaydis.dnac). Accuracies: test split (held-out bins for the human task, held-out strains for the bacterial "
                        "one, the held-out arm chr3R for the Drosophila promoters). Paper (Derf Table 11, GenomicBenchmarks average): HyenaDNA Norm 85.2 / DyT 85.2 / Derf 85.7; "
                        "Caduceus Norm 86.9 / DyT 86.9 / Derf 87.3.\n", cad ? "masked-LM (masks from a fixed seed)" : "next-token",
                   a.o.eval_windows ? "fixed, evenly spaced" : "all");
    return compare_write_report("compare", out, &md, NULL);
}
