/* cmd_dit.c: the class-conditional diffusion commands: `derf train-dit` (a DiT on Fashion-MNIST / MNIST
 * with any --norm spec), `derf sample-dit` (DDPM or DDIM with classifier-free guidance, seeded, PNG grid and
 * optionally the raw samples) and `derf fd` (FD-FMNIST of saved samples, or of noise / the train split as
 * sanity checks). Also the option tables `derf compare --model dit` reuses. */
#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/dit_opts.h"
#include "derf/io.h"
#include "derf/train.h"

void dit_args_init(dit_args *a) {
    memset(a, 0, sizeof *a);
    derf_dit_train_opts_default(&a->o);
    a->norm = "derf";
    a->preset = "mini";
    a->size_class = "B";
}

int dit_opts_table(dit_args *a, cli_opt *t, int max) {
    const cli_opt opts[] = {
        {"norm", CLI_STR, &a->norm, "norm spec for every norm (layernorm, dyt, derf, ...; its affine part is dropped)", 0, -1},
        {"preset", CLI_STR, &a->preset, "model size: mini (patch 7), tiny (patch 4), small, test", 0, -1},
        {"size-class", CLI_STR, &a->size_class, "the paper's DiT size the model stands for (S, B, L, XL): sets the "
                                                "point-wise zero-init rule and alpha (XL: 1.0)", 0, -1},
        {"dim", CLI_INT, &a->dim, "override the preset's width", 0, 4096},
        {"depth", CLI_INT, &a->depth, "override the preset's number of blocks", 0, 64},
        {"heads", CLI_INT, &a->heads, "override the preset's attention heads", 0, 64},
        {"patch", CLI_INT, &a->patch, "override the preset's patch side", 0, 28},
        {"data", CLI_STR, &a->o.data, "fashion-mnist, mnist, or a folder with IDX files", 0, -1},
        {"steps", CLI_INT, &a->o.steps, "optimizer steps", 1, 100000000},
        {"batch", CLI_INT, &a->o.batch, "batch size", 1, 65536},
        {"lr", CLI_FLOAT, &a->o.lr, "constant learning rate (AdamW, no warmup, weight decay 0; paper: 1e-4, 2e-4 or 4e-4)", 0, 1},
        {"ema", CLI_FLOAT, &a->o.ema, "EMA decay (0: off)", 0, 0.999999},
        {"class-dropout", CLI_FLOAT, &a->o.class_dropout, "probability of the null label in training (for guidance)", 0, 0.99},
        {"diffusion-steps", CLI_INT, &a->o.T, "diffusion steps T of the linear schedule", 2, 100000},
        {"seed", CLI_INT, &a->seed, "random seed", 0, 2147483647},
        {"threads", CLI_INT, &a->threads, "OpenMP threads (0 or auto: every CPU this process may use)", 0, 1024},
        {"train-limit", CLI_INT, &a->o.train_limit, "use only the first N training images (0: all)", 0, 100000000},
        {"eval-train-n", CLI_INT, &a->o.eval_train_n, "training images for the evaluation-mode training loss (0: skip)", 0, 100000000},
        {"log-every", CLI_INT, &a->o.log_every, "steps between progress lines", 1, 1000000},
        {"diag-every", CLI_INT, &a->o.diag_every, "steps between diagnostics: norm saturation, residual stream (docs/diagnostics.md; 0: off)", 0, 100000000},
        {"quiet", CLI_FLAG, &a->o.quiet, "no progress lines", 0, -1},
    };
    return cli_copy_opts(t, max, opts, (int)(sizeof opts / sizeof opts[0]));
}

int dit_args_finish(dit_args *a, const char *cmd) {
    char err[DERF_ERRLEN];
    const char *sc = a->size_class;
    char cls = !strcmp(sc, "S") ? 'S' : !strcmp(sc, "B") ? 'B' : !strcmp(sc, "L") ? 'L' : !strcmp(sc, "XL") ? 'X' : 0;
    if (!cls) return cli_fail(cmd, "--size-class must be S, B, L or XL, not '%s'", sc);
    if (derf_dit_preset(&a->o.model, a->preset, err, sizeof err)) return cli_fail(cmd, "%s", err);
    if (derf_dit_set_norm(&a->o.model, a->norm, cls, err, sizeof err)) return cli_fail(cmd, "%s", err);
    if (a->dim) a->o.model.dim = a->dim;
    if (a->depth) a->o.model.depth = a->depth;
    if (a->heads) a->o.model.heads = a->heads;
    if (a->patch) a->o.model.patch = a->patch;
    if (derf_dit_check(&a->o.model, err, sizeof err)) return cli_fail(cmd, "%s", err);
    a->o.seed = (uint64_t)a->seed;
    if (a->threads > 0) omp_set_num_threads(a->threads);
    return 0;
}

void dit_sample_args_init(dit_sample_args *a) {
    memset(a, 0, sizeof *a);
    a->s = (derf_sample_opts){.steps = 50, .cfg = 1.0f, .sampler = DERF_SAMPLER_DDPM, .eta = 0.f, .clip = 1, .seed = 0};
    a->sampler = "ddpm";
}

int dit_sample_opts_table(dit_sample_args *a, cli_opt *t, int max) {
    const cli_opt opts[] = {
        {"sample-steps", CLI_INT, &a->s.steps, "sampling steps (timesteps respaced evenly, as DiT's space_timesteps)", 1, 100000},
        {"sampler", CLI_STR, &a->sampler, "ddpm (ancestral) or ddim", 0, -1},
        {"eta", CLI_FLOAT, &a->s.eta, "DDIM eta (0: deterministic)", 0, 1},
        {"cfg", CLI_FLOAT, &a->s.cfg, "classifier-free guidance scale (1: none; the paper's FID setting)", 0, 100},
        {"no-clip", CLI_FLAG, &a->no_clip, "do not clip the predicted x0 to [-1, 1]", 0, -1},
        {"sample-seed", CLI_INT, &a->seed, "sampling seed (sample i uses stream i: independent of the batch size)", 0, 2147483647},
    };
    return cli_copy_opts(t, max, opts, (int)(sizeof opts / sizeof opts[0]));
}

int dit_sample_args_finish(dit_sample_args *a, const char *cmd) {
    if (!strcmp(a->sampler, "ddpm")) a->s.sampler = DERF_SAMPLER_DDPM;
    else if (!strcmp(a->sampler, "ddim")) a->s.sampler = DERF_SAMPLER_DDIM;
    else return cli_fail(cmd, "--sampler must be ddpm or ddim, not '%s'", a->sampler);
    a->s.clip = !a->no_clip;
    a->s.seed = (uint64_t)a->seed;
    return 0;
}

static void reset_args(void *a) { dit_args_init((dit_args *)a); }

int cmd_train_dit(int argc, char **argv) {
    static dit_args a;
    dit_args_init(&a);
    cli_run run = {"runs/dit", NULL, 0, 0, CLI_CKPT_SECS};
    cli_opt opts[64];
    int n = dit_opts_table(&a, opts, 58);
    n += cli_run_opts(opts + n, &run, "run folder: model.safetensors, model_ema.safetensors, state.safetensors, log.jsonl");
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"train-dit", "[options]",
        "Train a class-conditional DiT (pixel space, DDPM, eps-prediction MSE, label dropout for guidance, EMA) on\n"
        "Fashion-MNIST with any --norm spec, and report the evaluation-mode training loss (paper Appendix E).",
        "Sample it with 'derf sample-dit OUT/model_ema.safetensors'. Resume: 'derf train-dit --resume DIR\n"
        "[--max-steps N]' replays DIR's options and continues exactly. docs/dit.md has the recipe and its sources.", opts};
    char *stored = NULL;
    int rc = cli_parse_resumable(&cmd, argc, argv, reset_args, &a, &run, "runs/dit", &stored);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = dit_args_finish(&a, "train-dit"))) { free(stored); return rc; }
    derf_st_meta meta = {"train_args", stored};
    CLI_SET_RUN(a.o, run, &meta);
    derf_dit_train_result r;
    char err[DERF_ERRLEN];
    rc = derf_dit_train(&a.o, &r, NULL, NULL, err, sizeof err);
    free(stored);
    if (rc) return cli_fail("train-dit", "%s", err);
    if (r.diverged) { printf("%s: %s\n", a.norm, r.diverged_msg); return 3; }
    printf("%s: %d steps in %.0f s (%.0f img/s), last training loss %.5f, eval-mode training loss %.5f (EMA %.5f)\n",
           a.norm, r.steps, r.seconds, r.images_per_s, (double)r.final_loss, (double)r.eval_loss, (double)r.eval_loss_ema);
    printf("wrote %s/{model,model_ema,state}.safetensors and %s/log.jsonl\n", run.out, run.out);
    return 0;
}

/* labels: "cycle" (i % classes) or a comma-separated list repeated to n */
static int parse_labels(const char *text, int n, int classes, int32_t *out) {
    if (!strcmp(text, "cycle")) {
        for (int i = 0; i < n; i++) out[i] = i % classes;
        return 0;
    }
    int32_t list[1024];
    int k = 0;
    const char *p = text;
    while (*p && k < 1024) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= classes || (*end && *end != ',')) return -1;
        list[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!k || *p) return -1;
    for (int i = 0; i < n; i++) out[i] = list[i % k];
    return 0;
}

int cmd_sample_dit(int argc, char **argv) {
    static dit_sample_args s;
    dit_sample_args_init(&s);
    const char *png = "samples.png", *raw = NULL, *labels = "cycle";
    int nimg = 100, cols = 0, threads = 0, allow_nf = 0, old_batch = 0;
    cli_opt opts[32];
    int n = dit_sample_opts_table(&s, opts, 24);
    opts[n++] = (cli_opt){"n", CLI_INT, &nimg, "number of samples", 1, 10000000};
    opts[n++] = (cli_opt){"labels", CLI_STR, &labels, "cycle (sample i gets class i % classes) or a list such as 3,3,7", 0, -1};
    opts[n++] = (cli_opt){"png", CLI_STR, &png, "sample grid (PNG; at most the first 1024 samples)", 0, -1};
    opts[n++] = (cli_opt){"cols", CLI_INT, &cols, "grid columns (0: the number of classes)", 0, 1024};
    opts[n++] = (cli_opt){"save", CLI_STR, &raw, "also write the samples and labels (safetensors: samples [n,1,H,W] in [-1,1], labels [n])", 0, -1};
    opts[n++] = (cli_opt){"threads", CLI_INT, &threads, "OpenMP threads, one sample each (0 or auto: every CPU this process may use; the samples do not depend on it)", 0, 1024};
    opts[n++] = (cli_opt){"allow-nonfinite", CLI_FLAG, &allow_nf, "load a checkpoint whose weights hold NaN or Inf (refused by default)", 0, -1};
    /* --batch set the model batch until the samples became independent of it; accepted so that old scripts run */
    opts[n++] = (cli_opt){"batch", CLI_INT, &old_batch, "no effect (kept for old scripts): every sample runs on its own, the samples do not depend on a batch", 0, 65536};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"sample-dit", "CHECKPOINT [options]",
        "Sample a DiT checkpoint of 'derf train-dit' (DDPM ancestral or DDIM, classifier-free guidance, seeded)\n"
        "into a PNG grid, one class per column with --labels cycle.", NULL, opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos != 1) return cli_fail("sample-dit", "which checkpoint? e.g. derf sample-dit runs/dit/model_ema.safetensors");
    if ((rc = dit_sample_args_finish(&s, "sample-dit"))) return rc;
    derf_ckpt_allow_nonfinite(allow_nf);
    if (threads > 0) omp_set_num_threads(threads);
    char err[DERF_ERRLEN];
    derf_dit m;
    if (derf_dit_load(&m, pos[0], 1, err, sizeof err)) return cli_fail("sample-dit", "%s", err);
    const derf_dit_config *c = &m.cfg;
    const size_t npix = (size_t)c->chans * c->img * c->img;
    int32_t *lab = malloc(sizeof(int32_t) * nimg);
    float *x = malloc(sizeof(float) * npix * nimg);
    uint8_t *px = malloc(npix * nimg);
    derf_diffusion base;
    rc = 2;
    if (!lab || !x || !px) { cli_fail("sample-dit", "out of memory for %d samples", nimg); goto out; }
    if (parse_labels(labels, nimg, c->classes, lab)) {
        cli_fail("sample-dit", "--labels must be 'cycle' or a comma-separated list of classes in 0..%d, not '%s'", c->classes - 1, labels);
        goto out;
    }
    if (derf_diffusion_linear(&base, 1000, err, sizeof err) ||
        derf_dit_sample(&m, &base, &s.s, lab, nimg, x, 1, err, sizeof err)) {
        cli_fail("sample-dit", "%s", err);
        goto out;
    }
    derf_diffusion_free(&base);
    derf_to_pixels(px, x, npix * nimg);
    if (c->chans == 1 && derf_png_grid(png, px, nimg < 1024 ? nimg : 1024, c->img, c->img, cols ? cols : c->classes, err, sizeof err)) {
        cli_fail("sample-dit", "%s", err);
        goto out;
    }
    if (raw) {
        float *lf = malloc(sizeof(float) * nimg);
        for (int i = 0; i < nimg; i++) lf[i] = (float)lab[i];
        int64_t shs[4] = {nimg, c->chans, c->img, c->img}, shl[1] = {nimg};
        derf_st_tensor_in t[2] = {{"samples", 4, shs, x}, {"labels", 1, shl, lf}};
        int wr = derf_safetensors_write(raw, t, 2, NULL, 0, err, sizeof err);
        free(lf);
        if (wr) { cli_fail("sample-dit", "%s", err); goto out; }
    }
    printf("wrote %s (%d samples, %d %s steps, cfg %g, seed %d)%s%s\n", png, nimg, s.s.steps, s.sampler, (double)s.s.cfg,
           s.seed, raw ? " and " : "", raw ? raw : "");
    rc = 0;
out:
    free(lab); free(x); free(px);
    derf_dit_free(&m);
    return rc;
}

int cmd_fd(int argc, char **argv) {
    const char *clf = NULL, *data = "fashion-mnist", *samples = NULL;
    int noise = 0, train = 0, limit = 10000, allow_nf = 0;
    const cli_opt opts[] = {
        {"classifier", CLI_STR, &clf, "the frozen feature extractor: a ViT checkpoint of 'derf train' (required)", 0, -1},
        {"data", CLI_STR, &data, "fashion-mnist, mnist, or a folder with IDX files (reference: its test split)", 0, -1},
        {"samples", CLI_STR, &samples, "samples written by 'derf sample-dit --save'", 0, -1},
        {"noise", CLI_FLAG, &noise, "sanity check: FD of uniform noise images", 0, -1},
        {"train", CLI_FLAG, &train, "sanity check: FD of the first N training images", 0, -1},
        {"n", CLI_INT, &limit, "images for --noise / --train", 2, 10000000},
        {"allow-nonfinite", CLI_FLAG, &allow_nf, "load a classifier whose weights hold NaN or Inf (refused by default)", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"fd", "--classifier CKPT (--samples FILE | --noise | --train) [options]",
        "FD-FMNIST: the Frechet distance between an image set and the test split on the penultimate-layer features\n"
        "of a frozen derf ViT classifier. Not the Inception FID: compare numbers only under the same classifier.",
        NULL, opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (!clf) return cli_fail("fd", "--classifier is required (train one with: derf train --norm layernorm --out runs/fd-clf)");
    if ((samples != NULL) + noise + train != 1) return cli_fail("fd", "give exactly one of --samples, --noise, --train");
    derf_ckpt_allow_nonfinite(allow_nf);
    char err[DERF_ERRLEN];
    static derf_fd_ctx ctx;
    if (derf_fd_open(&ctx, clf, data, err, sizeof err)) return cli_fail("fd", "%s", err);
    const int side = ctx.clf.cfg.img;
    const size_t np = (size_t)side * side;
    float *x = NULL;
    long n = 0;
    const char *what = samples;
    derf_safetensors st = {0};
    if (samples) {
        if (derf_safetensors_read(&st, samples, (size_t)1 << 34, err, sizeof err)) { derf_fd_close(&ctx); return cli_fail("fd", "%s", err); }
        const derf_st_tensor *t = derf_safetensors_find(&st, "samples");
        if (!t || t->ndim != 4 || t->shape[1] != 1 || t->shape[2] != side || t->shape[3] != side || t->shape[0] < 2) {
            derf_safetensors_free(&st); derf_fd_close(&ctx);
            return cli_fail("fd", "%s: no 'samples' tensor of shape [n,1,%d,%d] (n >= 2)", samples, side, side);
        }
        n = (long)t->shape[0];
        x = malloc(sizeof(float) * np * n);
        if (x) memcpy(x, t->data, sizeof(float) * np * n);
        derf_safetensors_free(&st);
        for (size_t i = 0; x && i < np * (size_t)n; i++)
            if (!isfinite(x[i])) {
                free(x); derf_fd_close(&ctx);
                return cli_fail("fd", "%s: 'samples' holds a NaN or infinite value (image %zu): diverged samples have no "
                                "Frechet distance", samples, i / np);
            }
    } else {
        n = limit;
        x = malloc(sizeof(float) * np * n);
        derf_dataset tr = {0};
        if (x && noise) {
            derf_rng r;
            derf_rng_seed(&r, 0, 0x6e6f);
            derf_rng_fill_uniform(&r, x, np * n, -1.f, 1.f);
            what = "uniform noise";
        } else if (x) {
            if (derf_dataset_open(&tr, data, "train", err, sizeof err)) { free(x); derf_fd_close(&ctx); return cli_fail("fd", "%s", err); }
            if (n > tr.n) n = tr.n;
            for (long i = 0; i < (long)np * n; i++) x[i] = tr.images[i] / 127.5f - 1.0f;
            derf_dataset_free(&tr);
            what = "training images";
        }
    }
    double fd = 0;
    if (!x) rc = cli_fail("fd", "out of memory for %ld images", n);
    else if (derf_fd_of_samples(&ctx, x, n, &fd, err, sizeof err)) rc = cli_fail("fd", "%s", err);
    else printf("FD-FMNIST %.4f (%ld %s vs %d test images; features: %s, dim %d)\n", fd, n, what, (int)ctx.ref.n, clf, ctx.ref.dim);
    free(x);
    derf_fd_close(&ctx);
    return rc;
}
