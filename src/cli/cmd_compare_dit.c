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

/* what every DiT run of a comparison shares */
typedef struct {
    dit_args a;
    dit_sample_args s;
    float lrs[MAX_LRS];
    int nlr, fd_n;
    derf_fd_ctx fd;
    const char *out;
} dit_compare;

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

/* The runs of one norm and seed: the lr sweep on the first seed (unless the norm has its own lr), the kept lr after;
 * the best run (lowest eval-mode training loss) is sampled and scored. */
static int dit_run(void *ctx, compare_row *R, int seed, const char *base, double *v, double *seconds, int *ok) {
    dit_compare *C = ctx;
    const int first = seed == C->a.seed;
    float try_lr[MAX_LRS];
    int ntry = 1, rc;
    try_lr[0] = R->lr > 0 ? R->lr : C->a.o.lr;
    if (C->nlr && first && R->lr <= 0) { memcpy(try_lr, C->lrs, sizeof(float) * C->nlr); ntry = C->nlr; }
    derf_dit best = {0};
    float *best_ema = NULL;
    double best_score = INFINITY;
    derf_dit_train_result best_r = {0};
    char best_dir[1300] = "";
    for (int k = 0; k < ntry; k++) {
        dit_args b = C->a;
        b.norm = R->spec;
        b.seed = seed;
        b.o.lr = try_lr[k];
        if ((rc = dit_args_finish(&b, "compare"))) return rc;
        char dir[1300];
        if (ntry > 1) snprintf(dir, sizeof dir, "%s-lr%g", base, (double)try_lr[k]);
        else snprintf(dir, sizeof dir, "%s", base);
        if (!C->a.o.quiet) fprintf(stderr, "[derf] === %s, seed %d, lr %g ===\n", R->spec, seed, (double)try_lr[k]);
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
            if (first) R->lr = try_lr[k];
        } else {
            derf_dit_free(&m);
            free(ema);
        }
    }
    *ok = !best_r.diverged;
    v[1] = best_r.eval_loss_ema;
    v[2] = best_r.eval_loss;
    *seconds = best_r.seconds;
    rc = 0;
    if (*ok) {
        /* sample with the EMA weights unless the raw ones have the lower evaluation-mode loss (a short run under a long
         * EMA horizon: the EMA still holds much of the initialization) */
        int used_ema = best_ema && best_r.eval_loss_ema >= 0 && (best_r.eval_loss < 0 || best_r.eval_loss_ema <= best_r.eval_loss);
        char grid[160];
        rc = sample_and_score(&best, used_ema ? best_ema : NULL, &C->s.s, C->fd_n, &C->fd, best_dir, &v[0], grid, sizeof grid,
                              C->a.o.quiet);
        if (!rc) {
            printf("%s (lr %g, seed %d): FD-FMNIST %.3f on %d samples (%s weights, %d %s steps, cfg %g); grid %s\n", R->spec,
                   (double)R->lr, seed, v[0], C->fd_n, used_ema ? "EMA" : "raw", C->s.s.steps, C->s.sampler, (double)C->s.s.cfg,
                   grid);
            size_t skip = strncmp(grid, C->out, strlen(C->out)) ? 0 : strlen(C->out) + 1;
            if (first) snprintf(R->note, sizeof R->note, "%s | `%s`", used_ema ? "EMA" : "raw", grid + skip);
        }
    }
    derf_dit_free(&best);
    free(best_ema);
    return rc;
}

int cmd_compare_dit(int argc, char **argv) {
    static dit_compare C;
    static compare_row rows[MAX_NORMS];
    dit_args_init(&C.a);
    dit_sample_args_init(&C.s);
    dit_args *const pa = &C.a;
    const char *norms = "layernorm,dyt,derf", *out = "runs/compare-dit", *model = "dit", *clf = NULL, *lrs = NULL;
    int seeds = 1, clf_epochs = 3, smoke = 0;
    C.fd_n = 10000;
    cli_opt opts[80];
    int n = dit_opts_table(pa, opts, 40);
    n += dit_sample_opts_table(&C.s, opts + n, 20);
    opts[n++] = (cli_opt){"model", CLI_STR, &model, "dit here (all: " CLI_COMPARE_MODELS "; see 'derf compare --help')", 0, -1};
    opts[n++] = (cli_opt){"norms", CLI_STR, &norms, "comma-separated norm specs; SPEC@LR gives one its own learning rate", 0, -1};
    opts[n++] = (cli_opt){"lr-sweep", CLI_STR, &lrs, "learning rates to try per norm (paper: 1e-4,2e-4,4e-4); the best "
                                                     "evaluation-mode training loss is kept", 0, -1};
    opts[n++] = (cli_opt){"seeds", CLI_INT, &seeds, "seeds per norm (seed, seed+1, ...)", 1, MAX_SEEDS};
    opts[n++] = (cli_opt){"fd-n", CLI_INT, &C.fd_n, "samples per run for FD-FMNIST (at least 10000 for a reported number)", 2, 1000000};
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
        pa->o.steps = 3; pa->o.batch = 4; pa->o.eval_train_n = 8; pa->o.log_every = 1000;
        C.s.s.steps = 2; C.fd_n = 20; clf_epochs = 1;
    }
    if ((rc = dit_args_finish(pa, "compare")) || (rc = dit_sample_args_finish(&C.s, "compare"))) return rc;
    C.nlr = lrs ? parse_lrs(lrs, C.lrs) : 0;
    C.out = out;
    if (C.nlr < 0) return cli_fail("compare", "--lr-sweep must be a comma-separated list of learning rates in (0, 1), not '%s'", lrs);
    compare_norm list[MAX_NORMS];
    int nn = compare_parse_norms("compare", norms, list);
    if (nn < 0) return 2;
    if (compare_make_dir("compare", out)) return 2;
    char clf_path[1200], clf_dir[1100], err[DERF_ERRLEN];
    if (clf) snprintf(clf_path, sizeof clf_path, "%s", clf);
    else {
        snprintf(clf_dir, sizeof clf_dir, "%s/classifier", out);
        if ((rc = ensure_classifier(clf_dir, clf_epochs, smoke ? 5 : 0, pa->o.quiet, clf_path, sizeof clf_path))) return rc;
    }
    if (derf_fd_open(&C.fd, clf_path, pa->o.data, err, sizeof err)) return cli_fail("compare", "%s", err);
    rc = compare_drive("compare", &C, dit_run, list, nn, seeds, pa->seed, out, pa->o.quiet, rows);
    const long ref_n = C.fd.ref.n;
    const int ref_dim = C.fd.ref.dim;
    derf_fd_close(&C.fd);
    if (rc) return rc;

    /* the table */
    const derf_dit_config *c = &C.a.o.model;
    derf_strbuf md = {0};
    derf_sb_printf(&md, "# derf compare --model dit\n\nDiT preset `%s` (patch %d, width %d, depth %d, heads %d; size class %s "
                        "for the zero-init rule) on `%s`; %d steps of batch %d, AdamW constant lr (wd 0), EMA %g, label "
                        "dropout %g, T = %d linear betas; sampling: %d %s steps, cfg %g, x0 clip %s, the EMA or raw weights "
                        "(whichever has the lower evaluation-mode training loss), %d samples "
                        "per run (classes cycled), sample seed %d; seeds %d..%d%s%s.\n\n"
                        "FD-FMNIST: Frechet distance to the %ld test images on the %d-d penultimate features of `%s` "
                        "(a tiny derf ViT with LayerNorm). Not the Inception FID.\n\n",
                   C.a.preset, c->patch, c->dim, c->depth, c->heads, C.a.size_class, C.a.o.data, C.a.o.steps, C.a.o.batch,
                   (double)C.a.o.ema, (double)C.a.o.class_dropout, C.a.o.T, C.s.s.steps, C.s.sampler, (double)C.s.s.cfg,
                   C.s.s.clip ? "on" : "off", C.fd_n, C.s.seed, C.a.seed, C.a.seed + seeds - 1, lrs ? "; lr sweep " : "",
                   lrs ? lrs : "", ref_n, ref_dim, clf_path);
    static const compare_col cols[] = {{"FD-FMNIST", "%.3f", 1}, {"eval-mode train loss (EMA)", "%.5f", 0},
                                       {"eval-mode train loss (raw)", "%.5f", 0}};
    compare_table(&md, cols, 3, "sampled with | samples", rows, nn, seeds, pa->o.lr);
    derf_sb_printf(&md, "\nThe evaluation-mode training loss is the paper's Appendix E measure for diffusion: the eps-MSE on the "
                        "first %d training images with fixed timesteps and noise (the same for every run) and no label "
                        "dropout. Sample grids: one column per class, first 100 samples.\n", C.a.o.eval_train_n);
    return compare_write_report("compare", out, &md, NULL);
}
