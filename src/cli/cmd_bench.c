/* cmd_bench.c: `derf bench`: the kernel and training-step benchmarks, each against PyTorch run in
 * the same invocation (tools/bench_torch.py through /usr/bin/python3, when it has torch):
 *   memcpy  a threaded copy of the N x C norm tensor: the bandwidth floor (GB/s, read + write)
 *   norms   layernorm, rmsnorm, dyt, derf forward and forward+backward at N x C: ms, effective GB/s
 *           (2 tensor passes forward, 6 forward+backward) as a fraction of the copy's, and the PyTorch ratio
 *   vit     one ViT training step (forward + label-smoothed cross-entropy + backward + AdamW) of the
 *           compare recipe (preset tiny, batch 128): images/s per norm, and PyTorch's
 *   gpt2    one GPT-2 training step (forward + backward + clip + AdamW) at B x T (124M, 4 x 64): ms/step
 * Every figure is the median of R timed runs after W untimed ones. Progress goes to stderr, the
 * tables to stdout. Nothing here asserts a timing: benchmarks are not tests (docs/performance.md). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cli/cli.h"
#include "derf/gpt2.h"
#include "derf/norm.h"
#include "derf/ops.h"
#include "derf/optim.h"
#include "derf/rng.h"
#include "derf/vit.h"

#define MAX_SPECS 16

/* ------------------------------------------------------------------------------------ timing */
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* --min: report the fastest timed run instead of the median (steadier where other jobs share the cores). */
static int stat_min;

/* Median (or, with --min, minimum) of reps sorted times (seconds), in ms. */
static double stat_ms(double *ts, int reps) {
    qsort(ts, (size_t)reps, sizeof *ts, cmp_double);
    return 1e3 * (stat_min ? ts[0] : reps % 2 ? ts[reps / 2] : 0.5 * (ts[reps / 2 - 1] + ts[reps / 2]));
}

/* Median (or, with --min, minimum) wall time (ms) of `reps` calls of fn after `warmup` untimed ones. */
static double median_ms(void (*fn)(void *), void *ctx, int warmup, int reps) {
    double *ts = malloc(sizeof(double) * (size_t)reps);
    for (int r = -warmup; r < reps; r++) {
        double t = now_s();
        fn(ctx);
        if (r >= 0) ts[r] = now_s() - t;
    }
    double m = stat_ms(ts, reps);
    free(ts);
    return m;
}

/* The same for n configurations at once, interleaved: each round runs every configuration once (in an
 * order rotated by one each round), so a change of load on a shared machine hits all of them alike and
 * their ratio stays meaningful. ms[i] gets configuration i's median (or minimum). */
static void median_ms_interleaved(void (*fn)(void *), void **ctx, int n, int warmup, int reps, double *ms) {
    double *ts = malloc(sizeof(double) * (size_t)reps * (size_t)n);
    for (int r = -warmup; r < reps; r++)
        for (int j = 0; j < n; j++) {
            int i = (j + (r < 0 ? 0 : r)) % n;
            double t = now_s();
            fn(ctx[i]);
            if (r >= 0) ts[(size_t)i * reps + r] = now_s() - t;
        }
    for (int i = 0; i < n; i++) ms[i] = stat_ms(ts + (size_t)i * reps, reps);
    free(ts);
}

/* "12.345" with the given format, or "-" for a missing (NAN) value. */
static const char *fmt(char *buf, size_t n, const char *f, double v) {
    if (isfinite(v)) snprintf(buf, n, f, v);
    else snprintf(buf, n, "-");
    return buf;
}

/* ------------------------------------------------------------------------------------ the peer */
typedef struct {
    const char *python, *script; /* interpreter and tools/bench_torch.py */
    int enabled;                 /* cleared by --no-torch or once a run shows torch is missing */
    int blas;                    /* --torch-blas: OPENBLAS_NUM_THREADS for the peer (0: per part) */
    int threads, reps[4], warmup[4];
    char version[64];            /* torch.__version__ once a run succeeded */
    char why[512];               /* why the peers were skipped */
} peer_t;

enum { PART_MEMCPY, PART_NORMS, PART_VIT, PART_GPT2 };

static void peer_skip(peer_t *p, const char *why) {
    p->enabled = 0;
    snprintf(p->why, sizeof p->why, "%.500s", why);
    fprintf(stderr, "derf bench: PyTorch peers skipped: %s; the PyTorch columns show '-'\n", why);
}

/* Runs `OPENBLAS_NUM_THREADS=b PYTHON SCRIPT ARGS` and reads its lines ('torch VERSION', then
 * 'r INDEX V1 [V2]' per spec, '-' for a value it could not measure). vals[i][k] stays NAN where
 * nothing came back. Returns 0 if the peer ran. */
static int peer_run(peer_t *p, int blas, const char *args, int nspec, double vals[][2]) {
    for (int i = 0; i < nspec; i++) vals[i][0] = vals[i][1] = NAN;
    if (!p->enabled) return -1;
    static char cmd[16384];
    snprintf(cmd, sizeof cmd, "OPENBLAS_NUM_THREADS=%d '%s' '%s' %s%s", blas, p->python, p->script, args,
             stat_min ? " --min" : "");
    FILE *f = popen(cmd, "r");
    if (!f) { peer_skip(p, "could not start the python subprocess"); return -1; }
    char line[1024], notorch[400] = "";
    int got_version = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strncmp(line, "torch ", 6)) { snprintf(p->version, sizeof p->version, "%.60s", line + 6); got_version = 1; continue; }
        if (!strncmp(line, "notorch ", 8)) { snprintf(notorch, sizeof notorch, "%.390s", line + 8); continue; }
        if (strncmp(line, "r ", 2)) continue;
        char *s = line + 2, *end;
        long i = strtol(s, &end, 10);
        if (end == s || i < 0 || i >= nspec) continue;
        for (int k = 0; k < 2; k++) {
            s = end;
            double v = strtod(s, &end);
            if (end == s) break; /* '-' or nothing: stays NAN */
            vals[i][k] = v;
        }
    }
    int st = pclose(f);
    if (!got_version) {
        char why[512];
        if (notorch[0]) snprintf(why, sizeof why, "%s cannot import torch (%s)", p->python, notorch);
        else snprintf(why, sizeof why, "%s %s exited with status %d before reporting a torch version", p->python, p->script,
                      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        peer_skip(p, why);
        return -1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "derf bench: the PyTorch peer exited with status %d; missing figures show '-'\n",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

/* Appends " 'SPEC'" for each spec (canonical spec strings hold no quote). */
static void append_specs(char *buf, size_t n, char canon[][256], int nspec) {
    for (int i = 0; i < nspec; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, " '%s'", canon[i]);
    }
}

static const char *peer_title(const peer_t *p, int blas, char *buf, size_t n) {
    if (p->enabled && p->version[0]) snprintf(buf, n, "PyTorch %s, OPENBLAS_NUM_THREADS=%d", p->version, blas);
    else snprintf(buf, n, "PyTorch not run");
    return buf;
}

/* ------------------------------------------------------------------------------------ specs */
/* Splits a comma-separated spec list; each must parse. Returns the count, or -1 after an error line. */
static int parse_specs(const char *opt, const char *list, derf_norm_spec *specs, char names[][64], char canon[][256]) {
    char buf[1024], err[512];
    snprintf(buf, sizeof buf, "%s", list);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_SPECS) { cli_fail("bench", "--%s: at most %d norms", opt, MAX_SPECS); return -1; }
        if (derf_norm_parse(tok, &specs[n], err, sizeof err)) { cli_fail("bench", "--%s: %s", opt, err); return -1; }
        snprintf(names[n], 64, "%s", tok);
        derf_norm_format(&specs[n], canon[n], 256);
        if (strchr(canon[n], '\'')) { cli_fail("bench", "--%s: a spec may not contain a quote", opt); return -1; }
        n++;
    }
    if (n == 0) { cli_fail("bench", "--%s is empty; e.g. --%s layernorm,derf", opt, opt); return -1; }
    return n;
}

/* ------------------------------------------------------------------------------------ memcpy */
typedef struct { float *dst; const float *src; size_t n; } copy_ctx;

static void copy_run(void *c) {
    copy_ctx *k = c;
#pragma omp parallel
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        size_t lo = k->n * t / nt, hi = k->n * (t + 1) / nt;
        memcpy(k->dst + lo, k->src + lo, (hi - lo) * sizeof(float));
    }
}

/* Fills with values in [lo, hi), in parallel (first touch by the threads that will use them). */
static void fill(float *x, size_t n, float lo, float hi, uint64_t seed) {
#pragma omp parallel
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        derf_rng r;
        derf_rng_seed(&r, seed, t);
        for (size_t i = n * t / nt; i < n * (t + 1) / nt; i++) x[i] = lo + (hi - lo) * derf_rng_uniform(&r);
    }
}

static double bench_memcpy(int N, int C, int warmup, int reps) {
    size_t n = (size_t)N * C;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    if (!a || !b) { free(a); free(b); return NAN; }
    fill(a, n, -1, 1, 1);
    fill(b, n, -1, 1, 2);
    copy_ctx k = {b, a, n};
    fprintf(stderr, "[bench] memcpy %d x %d ...\n", N, C);
    double ms = median_ms(copy_run, &k, warmup, reps);
    free(a);
    free(b);
    return ms;
}

/* ------------------------------------------------------------------------------------ norms */
typedef struct {
    const derf_norm_spec *s;
    float *y, *stats, *dx, *dp;
    const float *x, *dy, *p;
    int N, C, backward;
} norm_ctx;

static void norm_run(void *c) {
    norm_ctx *k = c;
    derf_norm_forward(k->s, k->y, k->stats, k->x, k->p, k->N, k->C);
    /* backward ADDS into dx and dparams, as in the models (the residual stream): no zeroing pass */
    if (k->backward) derf_norm_backward(k->s, k->dx, k->dp, k->dy, k->x, k->p, k->stats, k->N, k->C);
}

static int bench_norms(peer_t *peer, const char *list, int N, int C, double copy_ms, int warmup, int reps) {
    derf_norm_spec specs[MAX_SPECS];
    char names[MAX_SPECS][64], canon[MAX_SPECS][256];
    int ns = parse_specs("norms", list, specs, names, canon);
    if (ns < 0) return 2;
    size_t n = (size_t)N * C;
    float *x = malloc(n * 4), *y = malloc(n * 4), *dy = malloc(n * 4), *dx = malloc(n * 4);
    float *stats = malloc((size_t)N * 2 * sizeof(float));
    if (!x || !y || !dy || !dx || !stats) {
        free(x); free(y); free(dy); free(dx); free(stats);
        return cli_fail("bench", "out of memory for a %d x %d tensor", N, C);
    }
    fill(x, n, -2, 2, 3);
    fill(dy, n, -0.5f, 0.5f, 4);
    fill(y, n, 0, 0, 5);
    fill(dx, n, 0, 0, 6);
    double ours[MAX_SPECS][2], torch[MAX_SPECS][2];
    for (int i = 0; i < ns; i++) {
        size_t np = derf_norm_param_count(&specs[i], C);
        float *p = malloc((np + 1) * sizeof(float)), *dp = calloc(np + 1, sizeof(float));
        derf_norm_init(&specs[i], C, p);
        for (int b = 0; b < 2; b++) {
            fprintf(stderr, "[bench] norm %s %s %d x %d ...\n", names[i], b ? "forward+backward" : "forward", N, C);
            norm_ctx k = {&specs[i], y, stats, dx, dp, x, dy, p, N, C, b};
            ours[i][b] = median_ms(norm_run, &k, warmup, reps);
        }
        free(p);
        free(dp);
    }
    free(x); free(y); free(dy); free(dx); free(stats);

    int blas = peer->blas > 0 ? peer->blas : 1;
    char args[8192];
    snprintf(args, sizeof args, "norms --rows %d --cols %d --reps %d --warmup %d --threads %d", N, C, reps, warmup, peer->threads);
    append_specs(args, sizeof args, canon, ns);
    if (peer->enabled) fprintf(stderr, "[bench] PyTorch norms ...\n");
    peer_run(peer, blas, args, ns, torch);

    double bytes = (double)n * sizeof(float), copy_gbs = 2 * bytes / (copy_ms * 1e-3) / 1e9;
    char t[128];
    printf("\nnorms %d x %d fp32, ms; GB/s counts 2 tensor passes forward (x read, y written), 6 forward+backward (the\n"
           "backward reads x, dy and dx and writes dx: it adds into dx); %%copy = that GB/s over the memcpy's (2 passes);\n"
           "ratio = PyTorch ms over derf ms (>1: derf faster)\npeer: %s\n", N, C, peer_title(peer, blas, t, sizeof t));
    printf("%-14s %9s %7s %6s %9s %7s | %9s %7s %6s %9s %7s\n", "norm", "fwd", "GB/s", "%copy", "torch", "ratio",
           "fwd+bwd", "GB/s", "%copy", "torch", "ratio");
    for (int i = 0; i < ns; i++) {
        printf("%-14s", names[i]);
        for (int b = 0; b < 2; b++) {
            double gbs = (b ? 6 : 2) * bytes / (ours[i][b] * 1e-3) / 1e9;
            char c1[32], c2[32], c3[32];
            printf("%s %9.3f %7.1f %6s %9s %7s", b ? " |" : "", ours[i][b], gbs, fmt(c1, sizeof c1, "%.0f%%", 100 * gbs / copy_gbs),
                   fmt(c2, sizeof c2, "%.3f", torch[i][b]), fmt(c3, sizeof c3, "%.2fx", torch[i][b] / ours[i][b]));
        }
        printf("\n");
    }
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------------------ ViT step */
typedef struct {
    derf_vit *m;
    const float *img;
    const int32_t *labels;
    float *dlogits;
    derf_rng rng;
    derf_adamw_cfg a;
    int B, step;
} vit_ctx;

/* One training step as `derf train` takes it with the compare defaults (no clipping, fixed lr). */
static void vit_step(void *c) {
    vit_ctx *k = c;
    derf_vit *m = k->m;
    int V = m->cfg.classes;
    derf_vit_forward(m, k->img, k->B, 1, &k->rng);
    memset(k->dlogits, 0, sizeof(float) * (size_t)k->B * V);
    derf_xent_forward_backward(k->dlogits, m->logits, k->labels, 0.1f, 1.f, k->B, V);
    derf_params_zero_grad(&m->params);
    derf_vit_backward(m, k->dlogits, k->B);
    derf_adamw_step(&m->params, &k->a, ++k->step);
}

static int bench_vit(peer_t *peer, const char *preset, const char *list, int B, int warmup, int reps) {
    derf_norm_spec specs[MAX_SPECS];
    char names[MAX_SPECS][64], canon[MAX_SPECS][256], err[512];
    int ns = parse_specs("vit-norms", list, specs, names, canon);
    if (ns < 0) return 2;
    derf_vit_config cfg;
    if (derf_vit_preset(&cfg, preset, err, sizeof err)) return cli_fail("bench", "--vit-preset: %s", err);
    size_t npix = (size_t)B * cfg.chans * cfg.img * cfg.img;
    float *img = malloc(npix * sizeof(float)), *dlogits = malloc(sizeof(float) * (size_t)B * cfg.classes);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)B);
    derf_rng r;
    derf_rng_seed(&r, 7, 0);
    derf_rng_fill_normal(&r, img, npix, 0.f, 1.f);
    for (int b = 0; b < B; b++) labels[b] = (int32_t)derf_rng_below(&r, (uint32_t)cfg.classes);
    double ours[MAX_SPECS], torch[MAX_SPECS][2];
    long long nparams = 0;
    derf_vit *ms = calloc((size_t)ns, sizeof *ms);
    vit_ctx *ks = calloc((size_t)ns, sizeof *ks);
    void *ctx[MAX_SPECS];
    int built = 0, rc = 0;
    for (int i = 0; i < ns; i++, built++) { /* all built first, steps interleaved (as for gpt2) */
        cfg.norm = specs[i];
        if (derf_vit_check(&cfg, err, sizeof err) || derf_vit_build(&ms[i], &cfg, B, err, sizeof err)) {
            rc = cli_fail("bench", "vit %s: %s", names[i], err);
            break;
        }
        derf_vit_init(&ms[i], 0);
        nparams = (long long)ms[i].params.total;
        ks[i] = (vit_ctx){&ms[i], img, labels, dlogits, {0, 0}, {4e-3f, 0.9f, 0.999f, 1e-8f, 0.05f}, B, 0};
        derf_rng_seed(&ks[i].rng, 1, 0);
        ctx[i] = &ks[i];
    }
    if (!rc) {
        fprintf(stderr, "[bench] vit %s, %s, batch %d: %d warm-up + %d timed steps each, interleaved ...\n", preset, list, B,
                warmup, reps);
        median_ms_interleaved(vit_step, ctx, ns, warmup, reps, ours);
    }
    for (int i = 0; i < built; i++) derf_vit_free(&ms[i]);
    free(ms); free(ks);
    if (rc) { free(img); free(dlogits); free(labels); return rc; }
    free(img); free(dlogits); free(labels);

    int blas = peer->blas > 0 ? peer->blas : 1;
    char args[8192];
    snprintf(args, sizeof args,
             "vit --batch %d --reps %d --warmup %d --threads %d --img %d --chans %d --patch %d --dim %d --depth %d "
             "--heads %d --mlp-ratio %d --classes %d --pool %s --gelu %s",
             B, reps, warmup, peer->threads, cfg.img, cfg.chans, cfg.patch, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio,
             cfg.classes, cfg.pool == DERF_POOL_AVG ? "avg" : "cls", cfg.gelu == DERF_GELU_TANH ? "tanh" : "erf");
    append_specs(args, sizeof args, canon, ns);
    if (peer->enabled) fprintf(stderr, "[bench] PyTorch vit ...\n");
    peer_run(peer, blas, args, ns, torch);

    char t[128];
    printf("\nvit %s (img %d, patch %d, dim %d, depth %d, heads %d; %.4gM params), batch %d, training step = forward\n"
           "+ label-smoothed cross-entropy + backward + AdamW; ratio = derf images/s over PyTorch's (>1: derf faster)\npeer: %s\n",
           preset, cfg.img, cfg.patch, cfg.dim, cfg.depth, cfg.heads, nparams / 1e6, B, peer_title(peer, blas, t, sizeof t));
    printf("%-14s %12s %10s %12s %10s %7s\n", "norm", "images/s", "ms/step", "torch img/s", "torch ms", "ratio");
    for (int i = 0; i < ns; i++) {
        char c1[32], c2[32], c3[32];
        printf("%-14s %12.0f %10.2f %12s %10s %7s\n", names[i], B / (ours[i] * 1e-3), ours[i],
               fmt(c1, sizeof c1, "%.0f", B / (torch[i][0] * 1e-3)), fmt(c2, sizeof c2, "%.2f", torch[i][0]),
               fmt(c3, sizeof c3, "%.2fx", torch[i][0] / ours[i]));
    }
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------------------ GPT-2 step */
typedef struct {
    derf_gpt2 *m;
    const int32_t *tok, *tgt;
    derf_adamw_cfg a;
    int B, T, step;
} gpt2_ctx;

/* One optimizer step of the train-lm recipe (no accumulation): forward, backward, clip 1, AdamW. */
static void gpt2_step(void *c) {
    gpt2_ctx *k = c;
    derf_params_zero_grad(&k->m->params);
    derf_gpt2_forward(k->m, k->tok, k->tgt, k->B, k->T);
    derf_gpt2_backward(k->m, 1.f);
    derf_clip_grad_norm(&k->m->params, 1.f);
    derf_adamw_step(&k->m->params, &k->a, ++k->step);
}

static int bench_gpt2(peer_t *peer, const char *preset, const char *list, int B, int T, int warmup, int reps) {
    derf_norm_spec specs[MAX_SPECS];
    char names[MAX_SPECS][64], canon[MAX_SPECS][256], err[512];
    int ns = parse_specs("gpt2-norms", list, specs, names, canon);
    if (ns < 0) return 2;
    derf_gpt2_config cfg;
    if (derf_gpt2_preset(&cfg, preset, err, sizeof err)) return cli_fail("bench", "--gpt2-preset: %s", err);
    if (T > cfg.block_size) return cli_fail("bench", "--gpt2-seq %d exceeds the %s preset's context of %d", T, preset, cfg.block_size);
    size_t nt = (size_t)B * T;
    int32_t *tok = malloc(nt * sizeof(int32_t)), *tgt = malloc(nt * sizeof(int32_t));
    derf_rng r;
    derf_rng_seed(&r, 11, 0);
    int vmax = cfg.vocab == 50304 ? 50257 : cfg.vocab; /* GPT-2's padded rows are never tokens */
    for (size_t i = 0; i < nt; i++) {
        tok[i] = (int32_t)derf_rng_below(&r, (uint32_t)vmax);
        tgt[i] = (int32_t)derf_rng_below(&r, (uint32_t)vmax);
    }
    /* every model is built first and the steps interleaved (median_ms_interleaved): the norms' ratio is
     * what matters, and a load change mid-run would otherwise land on one norm only */
    double ours[MAX_SPECS], torch[MAX_SPECS][2];
    long long nparams = 0;
    derf_gpt2 *ms = calloc((size_t)ns, sizeof *ms);
    gpt2_ctx *ks = calloc((size_t)ns, sizeof *ks);
    void *ctx[MAX_SPECS];
    int built = 0, rc = 0;
    for (int i = 0; i < ns; i++, built++) {
        cfg.norm = specs[i];
        if (derf_gpt2_check(&cfg, err, sizeof err) || derf_gpt2_build(&ms[i], &cfg, B, T, err, sizeof err)) {
            rc = cli_fail("bench", "gpt2 %s: %s", names[i], err);
            break;
        }
        derf_gpt2_init(&ms[i], 0);
        nparams = (long long)ms[i].params.total;
        ks[i] = (gpt2_ctx){&ms[i], tok, tgt, {6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f}, B, T, 0};
        ctx[i] = &ks[i];
    }
    if (!rc) {
        fprintf(stderr, "[bench] gpt2 %s, %s, B %d T %d: %d warm-up + %d timed steps each, interleaved ...\n", preset, list, B,
                T, warmup, reps);
        median_ms_interleaved(gpt2_step, ctx, ns, warmup, reps, ours);
    }
    for (int i = 0; i < built; i++) derf_gpt2_free(&ms[i]);
    free(ms); free(ks); free(tok); free(tgt);
    if (rc) return rc;

    /* the GPT-2 step's matrices are large: PyTorch runs them faster with OpenBLAS threaded (docs/performance.md, reference figures) */
    int blas = peer->blas > 0 ? peer->blas : peer->threads;
    char args[8192];
    snprintf(args, sizeof args,
             "gpt2 --batch %d --seq %d --reps %d --warmup %d --threads %d --vocab %d --block-size %d --n-layer %d "
             "--n-head %d --n-embd %d --bias %d",
             B, T, reps, warmup, peer->threads, cfg.vocab, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.bias);
    append_specs(args, sizeof args, canon, ns);
    if (peer->enabled) fprintf(stderr, "[bench] PyTorch gpt2 ...\n");
    peer_run(peer, blas, args, ns, torch);

    char t[128];
    printf("\ngpt2 %s (L %d, C %d, NH %d, V %d; %.4gM params), B %d T %d, training step = forward + backward + clip\n"
           "+ AdamW; ratio = PyTorch ms over derf ms (>1: derf faster)\npeer: %s\n",
           preset, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab, nparams / 1e6, B, T, peer_title(peer, blas, t, sizeof t));
    printf("%-14s %10s %10s %10s %7s\n", "norm", "ms/step", "tokens/s", "torch ms", "ratio");
    for (int i = 0; i < ns; i++) {
        char c1[32], c2[32];
        printf("%-14s %10.2f %10.0f %10s %7s\n", names[i], ours[i], (double)nt / (ours[i] * 1e-3),
               fmt(c1, sizeof c1, "%.2f", torch[i][0]), fmt(c2, sizeof c2, "%.2fx", torch[i][0] / ours[i]));
    }
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------------------ command */
/* tools/bench_torch.py relative to the working directory, else next to the derf binary. */
static int find_script(char *buf, size_t n) {
    if (access("tools/bench_torch.py", R_OK) == 0) { snprintf(buf, n, "tools/bench_torch.py"); return 0; }
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(buf, n, "%s/tools/bench_torch.py", exe);
        if (access(buf, R_OK) == 0) return 0;
    }
    return -1;
}

int cmd_bench(int argc, char **argv) {
    const char *only = "memcpy,norms,vit,gpt2", *norms = "layernorm,rmsnorm,dyt,derf";
    const char *vit_preset = "tiny", *vit_norms = "layernorm,dyt,derf";
    const char *gpt2_preset = "124m", *gpt2_norms = "layernorm,derf", *python = "/usr/bin/python3";
    int threads = omp_get_max_threads(), reps = 0, warmup = -1, rows = 8192, cols = 768;
    int vit_batch = 128, gpt2_batch = 4, gpt2_seq = 64, no_torch = 0, torch_blas = 0, quick = 0;
    for (int i = 1; i < argc; i++) /* --quick sets small defaults first; options given beside it still win */
        if (!strcmp(argv[i], "--quick")) {
            rows = 1024, cols = 256, reps = 3, warmup = 1, vit_batch = 16, gpt2_batch = 2, gpt2_seq = 16;
            vit_preset = "test", gpt2_preset = "test";
        }
    const cli_opt opts[] = {
        {"only", CLI_STR, &only, "comma-separated parts: memcpy, norms, vit, gpt2", 0, -1},
        {"threads", CLI_INT, &threads, "OpenMP threads for derf, torch.set_num_threads for PyTorch", 1, 1024},
        {"reps", CLI_INT, &reps, "timed repetitions per figure, median reported (0: 30 memcpy/norms, 10 vit, 5 gpt2)", 0, 100000},
        {"warmup", CLI_INT, &warmup, "untimed runs before them (-1: 3 memcpy/norms, 2 vit, 1 gpt2)", -1, 10000},
        {"rows", CLI_INT, &rows, "N: rows of the norm tensor (memcpy, norms)", 1, 1 << 24},
        {"cols", CLI_INT, &cols, "C: channels of the norm tensor (memcpy, norms)", 1, 1 << 20},
        {"norms", CLI_STR, &norms, "norm specs of the kernel benchmark", 0, -1},
        {"vit-preset", CLI_STR, &vit_preset, "ViT preset (tiny, small, base-mini, test)", 0, -1},
        {"vit-batch", CLI_INT, &vit_batch, "ViT batch", 1, 65536},
        {"vit-norms", CLI_STR, &vit_norms, "norm specs of the ViT step", 0, -1},
        {"gpt2-preset", CLI_STR, &gpt2_preset, "GPT-2 preset (124m, small, tiny, mini, test)", 0, -1},
        {"gpt2-batch", CLI_INT, &gpt2_batch, "GPT-2 batch B", 1, 4096},
        {"gpt2-seq", CLI_INT, &gpt2_seq, "GPT-2 sequence length T", 1, 1 << 16},
        {"gpt2-norms", CLI_STR, &gpt2_norms, "norm specs of the GPT-2 step", 0, -1},
        {"python", CLI_STR, &python, "interpreter for the PyTorch peers (tools/bench_torch.py)", 0, -1},
        {"torch-blas", CLI_INT, &torch_blas, "OPENBLAS_NUM_THREADS for PyTorch (0: 1 for norms and vit, --threads for gpt2)", 0, 1024},
        {"no-torch", CLI_FLAG, &no_torch, "skip the PyTorch peers", 0, -1},
        {"quick", CLI_FLAG, &quick, "a seconds-long check of every part (rows 1024, cols 256, test presets, ViT batch 16, GPT-2 2 x 16, 3 reps after 1 warm-up); not for figures", 0, -1},
        {"min", CLI_FLAG, &stat_min, "report the fastest timed run, not the median (both sides; for a loaded machine)", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"bench", "[options]",
        "Benchmark derf's kernels and training steps against PyTorch run in the same invocation (when the --python\n"
        "interpreter has torch): the memcpy floor, the norms at N x C, a ViT training step (the compare recipe)\n"
        "and a GPT-2 training step. Medians of --reps timed runs; progress on stderr, tables on stdout.",
        "Ratios compare figures of this one run only; timings on a loaded machine mean little.\n"
        "What each part measures and the fair-comparison settings: docs/performance.md.",
        opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;

    int want[4] = {0};
    const char *parts[4] = {"memcpy", "norms", "vit", "gpt2"};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", only);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < 4 && strcmp(tok, parts[k])) k++;
        if (k == 4) return cli_fail("bench", "unknown part '%s' in --only (known: memcpy, norms, vit, gpt2)", tok);
        want[k] = 1;
    }
    if (!want[0] && !want[1] && !want[2] && !want[3])
        return cli_fail("bench", "--only is empty; e.g. --only norms,vit");
    /* validate every spec list up front, so a typo fails before minutes of timing */
    {
        derf_norm_spec s[MAX_SPECS];
        char nm[MAX_SPECS][64], cn[MAX_SPECS][256];
        if ((want[1] && parse_specs("norms", norms, s, nm, cn) < 0) ||
            (want[2] && parse_specs("vit-norms", vit_norms, s, nm, cn) < 0) ||
            (want[3] && parse_specs("gpt2-norms", gpt2_norms, s, nm, cn) < 0))
            return 2;
    }
    const int def_reps[4] = {30, 30, 10, 5}, def_warm[4] = {3, 3, 2, 1};
    peer_t peer = {.python = python, .enabled = !no_torch, .blas = torch_blas, .threads = threads};
    for (int k = 0; k < 4; k++) {
        peer.reps[k] = reps > 0 ? reps : def_reps[k];
        peer.warmup[k] = warmup >= 0 ? warmup : def_warm[k];
    }
    static char script[1200];
    if (no_torch) snprintf(peer.why, sizeof peer.why, "--no-torch");
    else if (access(python, X_OK) != 0) {
        char why[600];
        snprintf(why, sizeof why, "%s is not an executable", python);
        peer_skip(&peer, why);
    } else if (find_script(script, sizeof script)) {
        peer_skip(&peer, "tools/bench_torch.py not found (run derf from the repository root)");
    }
    peer.script = script;

    omp_set_num_threads(threads);
    printf("derf bench: %d thread%s, fp32; each figure is the %s of its timed runs after untimed warm-up runs\n"
           "(memcpy/norms %d after %d, vit %d after %d, gpt2 %d after %d); PyTorch peers %s\n",
           threads, threads == 1 ? "" : "s", stat_min ? "minimum" : "median", peer.reps[1], peer.warmup[1], peer.reps[2], peer.warmup[2], peer.reps[3],
           peer.warmup[3], peer.enabled ? python : "skipped");
    fflush(stdout);

    double copy_ms = NAN;
    if (want[0] || want[1]) {
        copy_ms = bench_memcpy(rows, cols, peer.warmup[0], peer.reps[0]);
        if (!isfinite(copy_ms)) return cli_fail("bench", "out of memory for a %d x %d tensor", rows, cols);
        double bytes = (double)rows * cols * sizeof(float);
        printf("\nmemcpy %d x %d fp32 (%.1f MB; GB/s counts the read and the write), %d thread%s: %.3f ms, %.1f GB/s\n", rows,
               cols, bytes / 1e6, threads, threads == 1 ? "" : "s", copy_ms, 2 * bytes / (copy_ms * 1e-3) / 1e9);
        fflush(stdout);
    }
    if (want[1] && (rc = bench_norms(&peer, norms, rows, cols, copy_ms, peer.warmup[1], peer.reps[1]))) return rc;
    if (want[2] && (rc = bench_vit(&peer, vit_preset, vit_norms, vit_batch, peer.warmup[2], peer.reps[2]))) return rc;
    if (want[3] && (rc = bench_gpt2(&peer, gpt2_preset, gpt2_norms, gpt2_batch, gpt2_seq, peer.warmup[3], peer.reps[3]))) return rc;
    if (!peer.enabled && (want[1] || want[2] || want[3])) printf("\nnote: PyTorch peers not run: %s\n", peer.why);
    return 0;
}
