/* cmd_compare_dit.c: `derf compare --model dit`: trains the same class-conditional DiT with several norms
 * (default layernorm, dyt, derf) and seeds on Fashion-MNIST, optionally sweeping the learning rate per norm
 * (the paper's {1e-4, 2e-4, 4e-4}, best eval-mode training loss kept), samples each kept run with its EMA
 * weights (or the raw ones when their eval-mode training loss is lower), and reports FD-FMNIST (Frechet distance on a frozen derf ViT classifier's features, vs the test
 * split) and the evaluation-mode training loss (Appendix E) in a table, report.md and sample grids.
 * --smoke shrinks everything to seconds (CI). cmd_compare dispatches here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "cli/dit_opts.h"
#include "cli/train_opts.h"
#include "derf/io.h"
#include "derf/strbuf.h"
#include "derf/train.h"

#define MAX_LRS 8

typedef struct {
    char spec[128];
    float lr;                           /* the kept learning rate (first seed's sweep) */
    int ok[MAX_SEEDS], diverged[MAX_SEEDS], used_ema[MAX_SEEDS];
    double fd[MAX_SEEDS], eval_loss[MAX_SEEDS], eval_loss_ema[MAX_SEEDS], seconds[MAX_SEEDS];
    char grid[MAX_SEEDS][160];
} dit_run;

/* Trains one run into dir; returns its eval-mode loss (EMA if on; +inf when it diverged), keeps the model. */
static int train_one(dit_args *b, const char *dir, derf_dit *m, float **ema, derf_dit_train_result *r, double *score) {
    char err[DERF_ERRLEN];
    b->o.out = dir;
    if (derf_dit_train(&b->o, r, m, ema, err, sizeof err)) return cli_fail("compare", "%s", err);
    *score = r->diverged ? INFINITY : (*ema && r->eval_loss_ema >= 0 ? r->eval_loss_ema : r->eval_loss);
    return 0;
}

/* Samples n images (labels cycling over the classes) with the given weights (ema, or the raw ones when NULL), writes the grid of the first
 * 10 per class into dir/samples.png, and measures FD-FMNIST. */
static int sample_and_score(derf_dit *m, float *ema, const derf_sample_opts *so, int n, derf_fd_ctx *fd_ctx,
                            const char *dir, double *fd, char *grid, size_t gridlen, int quiet) {
    char err[DERF_ERRLEN];
    const derf_dit_config *c = &m->cfg;
    const size_t np = (size_t)c->img * c->img;
    int32_t *lab = malloc(sizeof(int32_t) * n);
    float *x = malloc(sizeof(float) * np * n);
    uint8_t *px = malloc(np * (n < 100 ? n : 100));
    derf_diffusion base;
    int rc = 2;
    if (!lab || !x || !px) { cli_fail("compare", "out of memory for %d samples", n); goto out; }
    for (int i = 0; i < n; i++) lab[i] = i % c->classes;
    float *raw = m->params.params;
    if (ema) m->params.params = ema;
    int bad = derf_diffusion_linear(&base, 1000, err, sizeof err) ||
              derf_dit_sample(m, &base, so, lab, n, x, !quiet, err, sizeof err);
    m->params.params = raw;
    if (!bad) derf_diffusion_free(&base);
    if (bad) { cli_fail("compare", "%s", err); goto out; }
    derf_to_pixels(px, x, np * (n < 100 ? n : 100));
    snprintf(grid, gridlen, "%s/samples.png", dir);
    if (derf_png_grid(grid, px, n < 100 ? n : 100, c->img, c->img, c->classes, err, sizeof err) ||
        derf_fd_of_samples(fd_ctx, x, n, fd, err, sizeof err)) {
        cli_fail("compare", "%s", err);
        goto out;
    }
    rc = 0;
out:
    free(lab); free(x); free(px);
    return rc;
}

/* Trains the FD classifier (tiny ViT, LayerNorm) into dir unless it is there already; path gets its checkpoint. */
static int ensure_classifier(const char *dir, int epochs, int max_steps, int quiet, char *path, size_t len) {
    snprintf(path, len, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "rb");
    if (f) { fclose(f); return 0; }
    static train_args t;
    train_args_init(&t);
    t.norm = "layernorm";
    t.o.epochs = epochs;
    t.no_eval_train = 1;
    int rc = train_args_finish(&t, "compare");
    if (rc) return rc;
    t.o.out = dir;
    t.o.max_steps = max_steps;
    t.o.quiet = quiet;
    derf_cls_result r;
    char err[DERF_ERRLEN];
    if (!quiet) fprintf(stderr, "[derf] === the FD-FMNIST classifier: tiny ViT, layernorm, %d epochs -> %s ===\n", epochs, dir);
    if (derf_cls_train(&t.o, &r, err, sizeof err)) return cli_fail("compare", "classifier: %s", err);
    if (!quiet) print_result("classifier", &r);
    return 0;
}

static int parse_lrs(const char *text, float *out) {
    int k = 0;
    const char *p = text;
    while (*p && k < MAX_LRS) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0 && v < 1) || (*end && *end != ',')) return -1;
        out[k++] = (float)v;
        p = *end ? end + 1 : end;
    }
    return *p || !k ? -1 : k;
}

int cmd_compare_dit(int argc, char **argv) {
    static dit_args a;
    static dit_sample_args s;
    static dit_run runs[MAX_NORMS];
    dit_args_init(&a);
    dit_sample_args_init(&s);
    const char *norms = "layernorm,dyt,derf", *out = "runs/compare-dit", *model = "dit", *clf = NULL, *lrs = NULL;
    int seeds = 1, fd_n = 10000, clf_epochs = 3, smoke = 0;
    cli_opt opts[80];
    int n = dit_opts_table(&a, opts, 40);
    n += dit_sample_opts_table(&s, opts + n, 20);
    opts[n++] = (cli_opt){"model", CLI_STR, &model, "dit here (all: " CLI_COMPARE_MODELS "; see 'derf compare --help')", 0, -1};
    opts[n++] = (cli_opt){"norms", CLI_STR, &norms, "comma-separated norm specs; SPEC@LR gives one its own learning rate", 0, -1};
    opts[n++] = (cli_opt){"lr-sweep", CLI_STR, &lrs, "learning rates to try per norm (paper: 1e-4,2e-4,4e-4); the best "
                                                     "evaluation-mode training loss is kept", 0, -1};
    opts[n++] = (cli_opt){"seeds", CLI_INT, &seeds, "seeds per norm (seed, seed+1, ...)", 1, MAX_SEEDS};
    opts[n++] = (cli_opt){"fd-n", CLI_INT, &fd_n, "samples per run for FD-FMNIST (at least 10000 for a reported number)", 2, 1000000};
    opts[n++] = (cli_opt){"classifier", CLI_STR, &clf, "FD feature extractor (ViT checkpoint); default: OUT/classifier, "
                                                        "trained first if missing", 0, -1};
    opts[n++] = (cli_opt){"clf-epochs", CLI_INT, &clf_epochs, "epochs of the default classifier", 1, 1000};
    opts[n++] = (cli_opt){"smoke", CLI_FLAG, &smoke, "a seconds-long run of the whole pipeline (CI): tiny steps, samples, classifier", 0, -1};
    opts[n++] = (cli_opt){"out", CLI_STR, &out, "folder for the runs, report.md and the sample grids", 0, -1};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"compare", "--model dit [options]",
        "Train the same class-conditional DiT with several norms and seeds on Fashion-MNIST and compare FD-FMNIST of\n"
        "their samples and the evaluation-mode training loss (the paper's DiT table in miniature).",
        "Every option of 'derf train-dit' and the sampling options of 'derf sample-dit' apply to all runs. Each run goes\n"
        "to OUT/<norm>-s<seed>[-lr<LR>]/ (checkpoints, log.jsonl, samples.png); the table to OUT/report.md. FD-FMNIST\n"
        "is not the Inception FID: numbers compare only under the same classifier. See docs/dit.md.", opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (strcmp(model, "dit") != 0) return cli_fail("compare", "--model must be " CLI_COMPARE_MODELS ", not '%s'", model);
    if (smoke) {
        a.o.steps = 3; a.o.batch = 4; a.o.eval_train_n = 8; a.o.log_every = 1000;
        s.s.steps = 2; fd_n = 20; clf_epochs = 1;
    }
    if ((rc = dit_args_finish(&a, "compare")) || (rc = dit_sample_args_finish(&s, "compare"))) return rc;
    float lr_list[MAX_LRS];
    int nlr = lrs ? parse_lrs(lrs, lr_list) : 0;
    if (nlr < 0) return cli_fail("compare", "--lr-sweep must be a comma-separated list of learning rates in (0, 1), not '%s'", lrs);
    compare_norm list[MAX_NORMS];
    int nn = compare_parse_norms("compare", norms, list);
    if (nn < 0) return 2;
    if (compare_make_dir("compare", out)) return 2;
    char clf_path[1200], clf_dir[1100], err[DERF_ERRLEN];
    if (clf) snprintf(clf_path, sizeof clf_path, "%s", clf);
    else {
        snprintf(clf_dir, sizeof clf_dir, "%s/classifier", out);
        if ((rc = ensure_classifier(clf_dir, clf_epochs, smoke ? 5 : 0, a.o.quiet, clf_path, sizeof clf_path))) return rc;
    }
    static derf_fd_ctx fd_ctx;
    if (derf_fd_open(&fd_ctx, clf_path, a.o.data, err, sizeof err)) return cli_fail("compare", "%s", err);

    for (int i = 0; i < nn; i++) {
        dit_run *R = &runs[i];
        memset(R, 0, sizeof *R);
        memcpy(R->spec, list[i].spec, sizeof R->spec);
        R->lr = list[i].lr > 0 ? list[i].lr : a.o.lr;
        for (int sd = 0; sd < seeds; sd++) {
            /* the learning rates to try: the sweep on the first seed, then the kept one */
            float try_lr[MAX_LRS];
            int ntry = 1;
            try_lr[0] = R->lr;
            if (nlr && sd == 0 && list[i].lr <= 0) { memcpy(try_lr, lr_list, sizeof(float) * nlr); ntry = nlr; }
            derf_dit best = {0};
            float *best_ema = NULL;
            double best_score = INFINITY;
            derf_dit_train_result best_r = {0};
            char best_dir[1300] = "";
            for (int k = 0; k < ntry; k++) {
                dit_args b = a;
                b.norm = R->spec;
                b.seed = a.seed + sd;
                b.o.lr = try_lr[k];
                if ((rc = dit_args_finish(&b, "compare"))) return rc;
                char name[200], dir[1300];
                compare_run_name(name, sizeof name, R->spec, b.seed);
                if (ntry > 1) snprintf(dir, sizeof dir, "%s/%s-lr%g", out, name, (double)try_lr[k]);
                else snprintf(dir, sizeof dir, "%s/%s", out, name);
                if (!a.o.quiet)
                    fprintf(stderr, "[derf] === %s, seed %d, lr %g ===\n", R->spec, b.seed, (double)try_lr[k]);
                derf_dit m;
                float *ema;
                derf_dit_train_result r;
                double score = INFINITY;
                if ((rc = train_one(&b, dir, &m, &ema, &r, &score))) return rc;
                printf("%s lr %g: %s", R->spec, (double)try_lr[k], r.diverged ? r.diverged_msg : "");
                if (!r.diverged) printf("eval-mode training loss %.5f (EMA %.5f), %.0f s", (double)r.eval_loss, (double)r.eval_loss_ema, r.seconds);
                printf("\n");
                if (score < best_score || k == 0) {
                    if (k) { derf_dit_free(&best); free(best_ema); }
                    best = m; best_ema = ema; best_score = score; best_r = r;
                    snprintf(best_dir, sizeof best_dir, "%s", dir);
                    if (sd == 0) R->lr = try_lr[k];
                } else {
                    derf_dit_free(&m);
                    free(ema);
                }
            }
            R->diverged[sd] = best_r.diverged;
            R->eval_loss[sd] = best_r.eval_loss;
            R->eval_loss_ema[sd] = best_r.eval_loss_ema;
            R->seconds[sd] = best_r.seconds;
            if (!best_r.diverged) {
                /* sample with the EMA weights unless the raw ones have the lower evaluation-mode loss (a short run
                 * under a long EMA horizon: the EMA still holds much of the initialization) */
                R->used_ema[sd] = best_ema && best_r.eval_loss_ema >= 0 &&
                                  (best_r.eval_loss < 0 || best_r.eval_loss_ema <= best_r.eval_loss);
                rc = sample_and_score(&best, R->used_ema[sd] ? best_ema : NULL, &s.s, fd_n, &fd_ctx, best_dir, &R->fd[sd], R->grid[sd],
                                      sizeof R->grid[sd], a.o.quiet);
                if (rc) { derf_dit_free(&best); free(best_ema); derf_fd_close(&fd_ctx); return rc; }
                R->ok[sd] = 1;
                printf("%s (lr %g, seed %d): FD-FMNIST %.3f on %d samples (%s weights, %d %s steps, cfg %g); grid %s\n",
                       R->spec, (double)R->lr, a.seed + sd, R->fd[sd], fd_n, R->used_ema[sd] ? "EMA" : "raw", s.s.steps,
                       s.sampler, (double)s.s.cfg, R->grid[sd]);
            }
            derf_dit_free(&best);
            free(best_ema);
        }
    }
    const long ref_n = fd_ctx.ref.n;
    const int ref_dim = fd_ctx.ref.dim;
    derf_fd_close(&fd_ctx);

    /* the table */
    const derf_dit_config *c = &a.o.model;
    derf_strbuf md = {0};
    derf_sb_printf(&md, "# derf compare --model dit\n\nDiT preset `%s` (patch %d, width %d, depth %d, heads %d; size class %s "
                        "for the zero-init rule) on `%s`; %d steps of batch %d, AdamW constant lr (wd 0), EMA %g, label "
                        "dropout %g, T = %d linear betas; sampling: %d %s steps, cfg %g, x0 clip %s, the EMA or raw weights "
                        "(whichever has the lower evaluation-mode training loss), %d samples "
                        "per run (classes cycled), sample seed %d; seeds %d..%d%s%s.\n\n"
                        "FD-FMNIST: Frechet distance to the %ld test images on the %d-d penultimate features of `%s` "
                        "(a tiny derf ViT with LayerNorm). Not the Inception FID.\n\n",
                   a.preset, c->patch, c->dim, c->depth, c->heads, a.size_class, a.o.data, a.o.steps, a.o.batch,
                   (double)a.o.ema, (double)a.o.class_dropout, a.o.T, s.s.steps, s.sampler, (double)s.s.cfg,
                   s.s.clip ? "on" : "off", fd_n, s.seed, a.seed, a.seed + seeds - 1, lrs ? "; lr sweep " : "",
                   lrs ? lrs : "", ref_n, ref_dim, clf_path);
    derf_sb_printf(&md, "| norm | lr | FD-FMNIST (mean ± std) | eval-mode train loss (EMA) | eval-mode train loss (raw) | time/run | sampled with | samples |\n"
                        "|---|---|---|---|---|---|---|---|\n");
    printf("\n%-28s %-9s %-22s %-16s %-16s %s\n", "norm", "lr", "FD-FMNIST", "eval loss EMA", "eval loss raw", "time/run");
    for (int i = 0; i < nn; i++) {
        dit_run *R = &runs[i];
        double fd[MAX_SEEDS], le[MAX_SEEDS], lr_[MAX_SEEDS], t = 0;
        int k = 0;
        for (int sd = 0; sd < seeds; sd++)
            if (R->ok[sd]) { fd[k] = R->fd[sd]; le[k] = R->eval_loss_ema[sd]; lr_[k] = R->eval_loss[sd]; t += R->seconds[sd]; k++; }
        if (!k) {
            printf("%-28s %-9.2g diverged in all %d runs\n", R->spec, (double)R->lr, seeds);
            derf_sb_printf(&md, "| %s | %g | × (diverged) | | | | | |\n", R->spec, (double)R->lr);
            continue;
        }
        double mf, sf, ml, sl, mr, sr;
        compare_mean_std(fd, k, &mf, &sf);
        compare_mean_std(le, k, &ml, &sl);
        compare_mean_std(lr_, k, &mr, &sr);
        printf("%-28s %-9.2g %8.3f ± %-11.3f %-16.5f %-16.5f %.0f s\n", R->spec, (double)R->lr, mf, sf, ml, mr, t / k);
        int ne = 0;
        for (int sd = 0; sd < seeds; sd++) ne += R->ok[sd] && R->used_ema[sd];
        derf_sb_printf(&md, "| %s | %g | %.3f ± %.3f | %.5f | %.5f | %.0f s | %s | `%s` |\n", R->spec, (double)R->lr, mf, sf, ml,
                       mr, t / k, ne == k ? "EMA" : ne ? "EMA / raw" : "raw", R->grid[0] + (strncmp(R->grid[0], out, strlen(out)) ? 0 : strlen(out) + 1));
    }
    derf_sb_printf(&md, "\nThe evaluation-mode training loss is the paper's Appendix E measure for diffusion: the eps-MSE on the "
                        "first %d training images with fixed timesteps and noise (the same for every run) and no label "
                        "dropout. Sample grids: one column per class, first 100 samples.\n", a.o.eval_train_n);
    return compare_write_report("compare", out, &md, NULL);
}
