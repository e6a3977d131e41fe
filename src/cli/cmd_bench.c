/* cmd_bench.c: `derf bench`: the kernel and training-step benchmarks, each against PyTorch run in the
 * same invocation (tools/bench_torch.py through /usr/bin/python3, when it has torch):
 *   memcpy  a threaded copy of the N x C norm tensor: the bandwidth floor (GB/s, read + write)
 *   norms   layernorm, rmsnorm, dyt, derf forward and forward+backward at N x C: ms, effective GB/s
 *           (2 tensor passes forward, 6 forward+backward) as a fraction of the copy's, and the PyTorch ratio
 *   vit     one ViT training step (forward + label-smoothed cross-entropy + backward + AdamW) of the
 *           compare recipe (preset tiny, batch 128): images/s per norm, and PyTorch's; the step's
 *           matrix-product GFLOP/s against the same sgemm calls alone
 *   gpt2    one GPT-2 training step (forward + backward + clip + AdamW) at B x T (124M, 4 x 64): ms/step
 *   dit, wav2vec, hyena, caduceus: one training step of each trainer's recipe: ms/step
 *   tok     the GPT-2 tokenizer (JS flavour) in MB/s against the npm gpt-3-encoder under node
 * The model parts interleave derf's and PyTorch's steps one by one (the peer runs as a server on a pipe)
 * and report ratios by wall and by process CPU time; a summary of every ratio ends the output. Every figure
 * is the median of R timed runs after W untimed ones. Progress goes to stderr, the tables to stdout.
 * Nothing here asserts a timing: benchmarks are not tests (docs/performance.md). */
#include <cblas.h>
#include <ctype.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cli/cli.h"
#include "derf/caduceus.h"
#include "derf/dit.h"
#include "derf/dnatrain.h"
#include "derf/gpt2.h"
#include "derf/hyena.h"
#include "derf/io.h"
#include "derf/norm.h"
#include "derf/ops.h"
#include "derf/optim.h"
#include "derf/rng.h"
#include "derf/tokenizer.h"
#include "derf/vit.h"
#include "derf/wav2vec.h"

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
    int threads;
    char version[64];            /* torch.__version__ once a run succeeded */
    char why[512];               /* why the peers were skipped */
} peer_t;

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

/* ------------------------------------------------------------------------------------ interleaved peer */
/* The model parts run the peer as a server (tools/bench_torch.py PART ... SPEC...: 'build I', 'run I K', 'free I',
 * 'quit' on its stdin) so that derf's steps and PyTorch's alternate one by one in the same invocation: a change of
 * load on a shared machine then hits both sides alike. */
typedef struct {
    pid_t pid;
    FILE *to, *from;
} peer_proc;

static double load_avg(void) {
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = NAN;
        fclose(f);
    }
    return l;
}

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Starts `OPENBLAS_NUM_THREADS=b PYTHON SCRIPT ARGS` with pipes both ways and reads its 'torch VERSION' line.
 * 0 on success; on failure the peer is disabled (peer_skip says why). */
static int peer_open(peer_t *p, int blas, const char *args, peer_proc *pp) {
    memset(pp, 0, sizeof *pp);
    if (!p->enabled) return -1;
    static char cmd[16384];
    snprintf(cmd, sizeof cmd, "OPENBLAS_NUM_THREADS=%d exec '%s' '%s' %s", blas, p->python, p->script, args);
    int in[2], out[2];
    signal(SIGPIPE, SIG_IGN); /* a peer that dies mid-run makes the next write fail, not end derf */
    if (pipe(in)) { peer_skip(p, "could not create a pipe"); return -1; }
    if (pipe(out)) { close(in[0]); close(in[1]); peer_skip(p, "could not create a pipe"); return -1; }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        peer_skip(p, "could not start the python subprocess");
        return -1;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    pp->pid = pid;
    pp->to = fdopen(in[1], "w");
    pp->from = fdopen(out[0], "r");
    char line[1024], notorch[400] = "";
    while (fgets(line, sizeof line, pp->from)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strncmp(line, "torch ", 6)) {
            snprintf(p->version, sizeof p->version, "%.60s", line + 6);
            return 0;
        }
        if (!strncmp(line, "notorch ", 8)) snprintf(notorch, sizeof notorch, "%.390s", line + 8);
    }
    char why[512];
    if (notorch[0]) snprintf(why, sizeof why, "%s cannot import torch (%s)", p->python, notorch);
    else snprintf(why, sizeof why, "%s %s ended before reporting a torch version", p->python, p->script);
    fclose(pp->to);
    fclose(pp->from);
    waitpid(pid, NULL, 0);
    pp->to = pp->from = NULL;
    peer_skip(p, why);
    return -1;
}

/* Sends one command line and reads the answer into buf. 0, or -1 if the peer has gone (then it is closed). */
static int peer_ask(peer_proc *pp, char *buf, size_t n, const char *fmtstr, int i, int k) {
    if (!pp->to) return -1;
    fprintf(pp->to, fmtstr, i, k);
    fputc('\n', pp->to);
    if (fflush(pp->to) == 0 && fgets(buf, (int)n, pp->from)) return 0;
    fprintf(stderr, "derf bench: the PyTorch peer ended early; its missing figures show '-'\n");
    fclose(pp->to);
    fclose(pp->from);
    waitpid(pp->pid, NULL, 0);
    pp->to = pp->from = NULL;
    return -1;
}

static void peer_close(peer_proc *pp) {
    if (!pp->to) return;
    fprintf(pp->to, "quit\n");
    fclose(pp->to);
    fclose(pp->from);
    int st;
    waitpid(pp->pid, &st, 0);
    pp->to = pp->from = NULL;
}

/* One model part: derf's step fn(ctx[i]) for each of ns built models and the peer's model i (built
 * one_at_a_time, or all at once), interleaved step by step in an order rotated each round. ours[i] and
 * torch[i] get {wall ms, process CPU ms} (median, or minimum with --min; NAN where the peer has nothing);
 * load[0..1] the load average before and after. */
static void run_models(peer_t *peer, int blas, const char *part, const char *args, int ns, void **ctx,
                       void (*fn)(void *), int one_at_a_time, int warmup, int reps, double ours[][2], double torch[][2],
                       double load[2]) {
    peer_proc pp;
    load[0] = load_avg();
    if (peer->enabled) fprintf(stderr, "[bench] starting the PyTorch %s peer ...\n", part);
    peer_open(peer, blas, args, &pp);
    double *ts = malloc(sizeof(double) * 4 * (size_t)reps * (size_t)ns); /* [side][wall/cpu][i][r] */
    for (size_t k = 0; k < 4 * (size_t)reps * (size_t)ns; k++) ts[k] = NAN;
#define TS(side, w, i, r) ts[((size_t)((side) * 2 + (w)) * (size_t)ns + (size_t)(i)) * (size_t)reps + (size_t)(r)]
    char line[65536];
    for (int g0 = 0; g0 < ns; g0 += one_at_a_time ? 1 : ns) {
        int g1 = one_at_a_time ? g0 + 1 : ns, units[2 * MAX_SPECS], nu = 0, ready[MAX_SPECS] = {0};
        for (int i = g0; i < g1; i++) {
            units[nu++] = 2 * i;
            if (!peer_ask(&pp, line, sizeof line, "build %d", i, 0) && !strncmp(line, "ready", 5)) {
                ready[i] = 1;
                units[nu++] = 2 * i + 1;
            }
        }
        fprintf(stderr, "[bench] %s: %d warm-up + %d timed steps of each of %d model%s (derf%s), interleaved ...\n", part,
                warmup, reps, g1 - g0, g1 - g0 == 1 ? "" : "s", pp.to ? " and PyTorch" : " only");
        for (int r = -warmup; r < reps; r++)
            for (int j = 0; j < nu; j++) {
                int u = units[(j + (r < 0 ? 0 : r)) % nu], i = u / 2;
                if (u % 2 == 0) {
                    double t = now_s(), c = cpu_s();
                    fn(ctx[i]);
                    if (r >= 0) { TS(0, 0, i, r) = now_s() - t; TS(0, 1, i, r) = cpu_s() - c; }
                } else if (ready[i]) {
                    double w, cp;
                    if (peer_ask(&pp, line, sizeof line, "run %d %d", i, 1) || sscanf(line, "t %lf %lf", &w, &cp) != 2) {
                        ready[i] = 0;
                        continue;
                    }
                    if (r >= 0) { TS(1, 0, i, r) = w * 1e-3; TS(1, 1, i, r) = cp * 1e-3; }
                }
            }
        for (int i = g0; i < g1; i++)
            if (ready[i]) peer_ask(&pp, line, sizeof line, "free %d", i, 0);
    }
    peer_close(&pp);
    for (int i = 0; i < ns; i++)
        for (int w = 0; w < 2; w++) {
            ours[i][w] = stat_ms(&TS(0, w, i, 0), reps);
            torch[i][w] = isfinite(TS(1, w, i, reps - 1)) ? stat_ms(&TS(1, w, i, 0), reps) : NAN;
        }
#undef TS
    free(ts);
    load[1] = load_avg();
}

/* The summary at the end: every model part's ratios of this run. */
typedef struct { char model[32], norm[64]; double wall, cpu; } summary_row;
static summary_row summary[64];
static int nsummary;

static void summary_add(const char *model, const char *norm /* a --*-norms token: < 64 bytes */, const double ours[2], const double torch[2]) {
    if (nsummary == 64) return;
    summary_row *s = &summary[nsummary++];
    snprintf(s->model, sizeof s->model, "%s", model);
    snprintf(s->norm, sizeof s->norm, "%.63s", norm);
    s->wall = torch[0] / ours[0];
    s->cpu = torch[1] / ours[1];
}

static const char *peer_title2(const peer_t *p, int blas, const double load[2], char *buf, size_t n) {
    char t[160];
    snprintf(buf, n, "%s; load average %.2f -> %.2f", peer_title(p, blas, t, sizeof t), load[0], load[1]);
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

static int threads_now(void) { return omp_get_max_threads(); }

/* The ViT step's matrix products: every Linear's forward, input-gradient and weight-gradient products
 * (2 N C OC flops each; the patch embedding and the head included) and the attention's QK^T and AV
 * products and their gradients. useful = their flops per step; the reference runs the Linears' sgemm
 * calls alone, at the same shapes, with the same threads: ref GFLOP/s = what OpenBLAS reaches on them. */
typedef struct { int N, C, OC; } gemm_shape;

static int vit_gemms(const derf_vit_config *c, int T, int B, gemm_shape *g, double *attn_flops) {
    const int D = c->dim, H = c->mlp_ratio * D, BT = B * T, P = (c->img / c->patch) * (c->img / c->patch);
    int n = 0;
    g[n++] = (gemm_shape){B * P, c->chans * c->patch * c->patch, D};
    g[n++] = (gemm_shape){B, D, c->classes};
    for (int l = 0; l < c->depth; l++) {
        g[n++] = (gemm_shape){BT, D, 3 * D};
        g[n++] = (gemm_shape){BT, D, D};
        g[n++] = (gemm_shape){BT, D, H};
        g[n++] = (gemm_shape){BT, H, D};
    }
    /* QK^T and AV: 2 T T hs flops each per (b, head), times 3 (forward, two gradients) */
    *attn_flops = (double)c->depth * 3 * 2 * 2 * (double)B * T * T * D;
    return n;
}

typedef struct { const gemm_shape *g; int n; float *a, *b, *c; } gemm_ctx;

static void gemm_run(void *p) {
    gemm_ctx *k = p;
    for (int i = 0; i < k->n; i++) {
        const gemm_shape *s = &k->g[i];
        /* forward out = in w^T, input gradient din = dout w, weight gradient dw = dout^T in */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->N, s->OC, s->C, 1.f, k->a, s->C, k->b, s->C, 0.f, k->c, s->OC);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->N, s->C, s->OC, 1.f, k->c, s->OC, k->b, s->C, 0.f, k->a, s->C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->OC, s->C, s->N, 1.f, k->c, s->OC, k->a, s->C, 0.f, k->b, s->C);
    }
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
    double ours[MAX_SPECS][2], torch[MAX_SPECS][2];
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
    int blas = peer->blas > 0 ? peer->blas : 1;
    char args[8192];
    snprintf(args, sizeof args,
             "vit --batch %d --threads %d --img %d --chans %d --patch %d --dim %d --depth %d "
             "--heads %d --mlp-ratio %d --classes %d --pool %s --gelu %s",
             B, peer->threads, cfg.img, cfg.chans, cfg.patch, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio,
             cfg.classes, cfg.pool == DERF_POOL_AVG ? "avg" : "cls", cfg.gelu == DERF_GELU_TANH ? "tanh" : "erf");
    append_specs(args, sizeof args, canon, ns);
    double load[2];
    if (!rc) run_models(peer, blas, "vit", args, ns, ctx, vit_step, 0, warmup, reps, ours, torch, load);
    gemm_shape gs[4 + 4 * 64];
    double attn_flops = 0, lin_flops = 0, gemm_ms = NAN, gemm_cpu_ms = NAN;
    int ng = cfg.depth <= 64 && built ? vit_gemms(&cfg, ms[0].T, B, gs, &attn_flops) : 0;
    if (ng) {
        size_t big = 0;
        for (int i = 0; i < ng; i++) {
            lin_flops += 6.0 * gs[i].N * gs[i].C * gs[i].OC;
            size_t z = (size_t)gs[i].N * (gs[i].C > gs[i].OC ? gs[i].C : gs[i].OC);
            if (z > big) big = z;
            if ((size_t)gs[i].C * gs[i].OC > big) big = (size_t)gs[i].C * gs[i].OC;
        }
        gemm_ctx g = {gs, ng, malloc(big * sizeof(float)), malloc(big * sizeof(float)), malloc(big * sizeof(float))};
        fill(g.a, big, -1, 1, 21);
        fill(g.b, big, -1, 1, 22);
        fill(g.c, big, -1, 1, 23);
        fprintf(stderr, "[bench] vit: the Linears' sgemm calls alone ...\n");
        double *ts = malloc(sizeof(double) * 2 * (size_t)reps);
        for (int r = -warmup; r < reps; r++) {
            double t = now_s(), c = cpu_s();
            gemm_run(&g);
            if (r >= 0) { ts[r] = now_s() - t; ts[reps + r] = cpu_s() - c; }
        }
        gemm_ms = stat_ms(ts, reps);
        gemm_cpu_ms = stat_ms(ts + reps, reps);
        free(ts);
        free(g.a); free(g.b); free(g.c);
    }
    for (int i = 0; i < built; i++) derf_vit_free(&ms[i]);
    free(ms); free(ks);
    free(img); free(dlogits); free(labels);
    if (rc) return rc;

    char t[256];
    printf("\nvit %s (img %d, patch %d, dim %d, depth %d, heads %d; %.4gM params), batch %d, training step = forward\n"
           "+ label-smoothed cross-entropy + backward + AdamW; ratio = derf images/s over PyTorch's (>1: derf faster), by\n"
           "wall time and by process CPU time; the two sides' steps interleaved\npeer: %s\n",
           preset, cfg.img, cfg.patch, cfg.dim, cfg.depth, cfg.heads, nparams / 1e6, B, peer_title2(peer, blas, load, t, sizeof t));
    printf("%-14s %12s %10s %12s %10s %7s %9s %9s %7s\n", "norm", "images/s", "ms/step", "torch img/s", "torch ms", "ratio",
           "cpu ms", "torch cpu", "cpu");
    for (int i = 0; i < ns; i++) {
        char c1[32], c2[32], c3[32], c4[32], c5[32];
        printf("%-14s %12.0f %10.2f %12s %10s %7s %9.2f %9s %7s\n", names[i], B / (ours[i][0] * 1e-3), ours[i][0],
               fmt(c1, sizeof c1, "%.0f", B / (torch[i][0] * 1e-3)), fmt(c2, sizeof c2, "%.2f", torch[i][0]),
               fmt(c3, sizeof c3, "%.2fx", torch[i][0] / ours[i][0]), ours[i][1], fmt(c4, sizeof c4, "%.2f", torch[i][1]),
               fmt(c5, sizeof c5, "%.2fx", torch[i][1] / ours[i][1]));
        summary_add("vit", names[i], ours[i], torch[i]);
    }
    if (ng) {
        const double useful = lin_flops + attn_flops, ref = lin_flops / (gemm_ms * 1e-3) / 1e9;
        const double ref_cpu = lin_flops / (gemm_cpu_ms * 1e-3) / 1e9;
        printf("matrix products: %.3f GFLOP per step (Linears %.3f, attention %.3f); the Linears' sgemm calls alone at the\n"
               "same shapes (the reference): %.2f ms = %.1f GFLOP/s, by CPU time %.2f ms = %.1f GFLOP/s per thread\n",
               useful / 1e9, lin_flops / 1e9, attn_flops / 1e9, gemm_ms, ref, gemm_cpu_ms, ref_cpu / threads_now());
        printf("useful GFLOP/s of the step (its matrix products over its time) and its fraction of the reference, by wall\n"
               "and by CPU time:");
        for (int i = 0; i < ns; i++)
            printf("%s %s %.1f (%.0f%%; cpu %.0f%%)", i ? "," : "", names[i], useful / (ours[i][0] * 1e-3) / 1e9,
                   100 * useful / (ours[i][0] * 1e-3) / 1e9 / ref, 100 * useful / (ours[i][1] * 1e-3) / 1e9 / ref_cpu);
        printf("\n");
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
    /* every model is built first and the steps interleaved (run_models): a load change mid-run would otherwise
     * land on one norm or one side only */
    double ours[MAX_SPECS][2], torch[MAX_SPECS][2];
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
    /* the GPT-2 step's matrices are large: PyTorch runs them faster with OpenBLAS threaded (docs/performance.md) */
    int blas = peer->blas > 0 ? peer->blas : peer->threads;
    char args[8192];
    snprintf(args, sizeof args,
             "gpt2 --batch %d --seq %d --threads %d --vocab %d --block-size %d --n-layer %d "
             "--n-head %d --n-embd %d --bias %d",
             B, T, peer->threads, cfg.vocab, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.bias);
    append_specs(args, sizeof args, canon, ns);
    double load[2];
    /* PyTorch's models one at a time (about 2 GB each at 124M) */
    if (!rc) run_models(peer, blas, "gpt2", args, ns, ctx, gpt2_step, 1, warmup, reps, ours, torch, load);
    for (int i = 0; i < built; i++) derf_gpt2_free(&ms[i]);
    free(ms); free(ks); free(tok); free(tgt);
    if (rc) return rc;

    char t[256];
    printf("\ngpt2 %s (L %d, C %d, NH %d, V %d; %.4gM params), B %d T %d, training step = forward + backward + clip\n"
           "+ AdamW; ratio = PyTorch ms over derf ms (>1: derf faster), by wall time and by process CPU time; the two\n"
           "sides' steps interleaved\npeer: %s\n",
           preset, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab, nparams / 1e6, B, T, peer_title2(peer, blas, load, t, sizeof t));
    printf("%-14s %10s %10s %10s %7s %9s %9s %7s\n", "norm", "ms/step", "tokens/s", "torch ms", "ratio", "cpu ms", "torch cpu", "cpu");
    for (int i = 0; i < ns; i++) {
        char c1[32], c2[32], c3[32], c4[32];
        printf("%-14s %10.2f %10.0f %10s %7s %9.2f %9s %7s\n", names[i], ours[i][0], (double)nt / (ours[i][0] * 1e-3),
               fmt(c1, sizeof c1, "%.2f", torch[i][0]), fmt(c2, sizeof c2, "%.2fx", torch[i][0] / ours[i][0]), ours[i][1],
               fmt(c3, sizeof c3, "%.2f", torch[i][1]), fmt(c4, sizeof c4, "%.2fx", torch[i][1] / ours[i][1]));
        summary_add("gpt2", names[i], ours[i], torch[i]);
    }
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------------------ the other models */
/* The table of a model part: ms/step and a throughput per norm, PyTorch's, the ratios by wall and CPU time. */
static void model_table(const char *head, const char *unit, double per_step, int ns, char names[][64], double ours[][2],
                        double torch[][2], const peer_t *peer, int blas, const double load[2], const char *model) {
    char t[256];
    printf("\n%s; ratio = PyTorch ms over derf ms (>1: derf faster), by wall time and by process CPU time;\n"
           "the two sides' steps interleaved\npeer: %s\n", head, peer_title2(peer, blas, load, t, sizeof t));
    printf("%-18s %10s %12s %10s %7s %9s %9s %7s\n", "norm", "ms/step", unit, "torch ms", "ratio", "cpu ms", "torch cpu", "cpu");
    for (int i = 0; i < ns; i++) {
        char c1[32], c2[32], c3[32], c4[32];
        printf("%-18s %10.2f %12.0f %10s %7s %9.2f %9s %7s\n", names[i], ours[i][0], per_step / (ours[i][0] * 1e-3),
               fmt(c1, sizeof c1, "%.2f", torch[i][0]), fmt(c2, sizeof c2, "%.2fx", torch[i][0] / ours[i][0]), ours[i][1],
               fmt(c3, sizeof c3, "%.2f", torch[i][1]), fmt(c4, sizeof c4, "%.2fx", torch[i][1] / ours[i][1]));
        summary_add(model, names[i], ours[i], torch[i]);
    }
    fflush(stdout);
}

/* DiT: one train-dit step without the data preparation and the EMA: forward, eps-MSE on the noise channels,
 * backward, AdamW (lr 1e-4, no weight decay). */
typedef struct {
    derf_dit *m;
    const float *x, *t, *eps;
    const int32_t *y;
    float *dout;
    derf_adamw_cfg a;
    int B, step;
} dit_ctx;

static void dit_step(void *c) {
    dit_ctx *k = c;
    derf_dit *m = k->m;
    const derf_dit_config *cf = &m->cfg;
    const size_t npix = (size_t)cf->chans * cf->img * cf->img, nout = (size_t)derf_dit_out_chans(cf) * cf->img * cf->img;
    derf_params_zero_grad(&m->params);
    derf_dit_forward(m, k->x, k->t, k->y, k->B);
    const float scale = 2.f / ((float)k->B * (float)npix);
    for (int b = 0; b < k->B; b++)
        for (size_t j = 0; j < nout; j++)
            k->dout[b * nout + j] = j < npix ? scale * (m->out[b * nout + j] - k->eps[b * npix + j]) : 0.f;
    derf_dit_backward(m, k->dout, k->B);
    derf_adamw_step(&m->params, &k->a, ++k->step);
}

static int bench_dit(peer_t *peer, const char *preset, const char *list, int B, int warmup, int reps) {
    derf_norm_spec specs[MAX_SPECS];
    char names[MAX_SPECS][64], canon[MAX_SPECS][256], err[512];
    int ns = parse_specs("dit-norms", list, specs, names, canon);
    if (ns < 0) return 2;
    derf_dit_config cfg;
    if (derf_dit_preset(&cfg, preset, err, sizeof err)) return cli_fail("bench", "--dit-preset: %s", err);
    const size_t npix = (size_t)cfg.chans * cfg.img * cfg.img;
    float *x = malloc(sizeof(float) * npix * B), *eps = malloc(sizeof(float) * npix * B), *t = malloc(sizeof(float) * B);
    float *dout = malloc(sizeof(float) * 2 * npix * B);
    int32_t *y = malloc(sizeof(int32_t) * B);
    derf_rng r;
    derf_rng_seed(&r, 13, 0);
    derf_rng_fill_normal(&r, x, npix * B, 0.f, 1.f);
    derf_rng_fill_normal(&r, eps, npix * B, 0.f, 1.f);
    for (int b = 0; b < B; b++) {
        t[b] = (float)derf_rng_below(&r, 1000);
        y[b] = (int32_t)derf_rng_below(&r, (uint32_t)cfg.classes + 1);
    }
    double ours[MAX_SPECS][2], torch[MAX_SPECS][2], load[2];
    long long nparams = 0;
    derf_dit *ms = calloc((size_t)ns, sizeof *ms);
    dit_ctx *ks = calloc((size_t)ns, sizeof *ks);
    void *ctx[MAX_SPECS];
    int built = 0, rc = 0;
    for (int i = 0; i < ns; i++, built++) {
        derf_dit_config c = cfg;
        /* the compare recipe's rules for the norm (affine dropped, size class B's zero-inits) */
        if (derf_dit_set_norm(&c, names[i], 'B', err, sizeof err) || derf_dit_check(&c, err, sizeof err) ||
            derf_dit_build(&ms[i], &c, B, err, sizeof err)) {
            rc = cli_fail("bench", "dit %s: %s", names[i], err);
            break;
        }
        derf_norm_format(&c.norm, canon[i], 256);
        derf_dit_init(&ms[i], 0);
        nparams = (long long)ms[i].params.total;
        ks[i] = (dit_ctx){&ms[i], x, t, eps, y, dout, {1e-4f, 0.9f, 0.999f, 1e-8f, 0.f}, B, 0};
        ctx[i] = &ks[i];
    }
    int blas = peer->blas > 0 ? peer->blas : 1;
    char args[8192];
    snprintf(args, sizeof args,
             "dit --batch %d --threads %d --img %d --chans %d --patch %d --dim %d --depth %d --heads %d --mlp-ratio %d "
             "--classes %d --freq-dim %d --learn-sigma %d",
             B, peer->threads, cfg.img, cfg.chans, cfg.patch, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio, cfg.classes,
             cfg.freq_dim, cfg.learn_sigma);
    append_specs(args, sizeof args, canon, ns);
    if (!rc) run_models(peer, blas, "dit", args, ns, ctx, dit_step, 0, warmup, reps, ours, torch, load);
    for (int i = 0; i < built; i++) derf_dit_free(&ms[i]);
    free(ms); free(ks); free(x); free(eps); free(t); free(dout); free(y);
    if (rc) return rc;
    char head[512];
    snprintf(head, sizeof head, "dit %s (img %d, patch %d, dim %d, depth %d, heads %d; %.4gM params), batch %d, training step = "
             "forward\n+ eps-MSE + backward + AdamW", preset, cfg.img, cfg.patch, cfg.dim, cfg.depth, cfg.heads, nparams / 1e6, B);
    model_table(head, "images/s", B, ns, names, ours, torch, peer, blas, load, "dit");
    return 0;
}

/* wav2vec 2.0: one train-speech step with fixed draws (mask, negatives, Gumbel uniforms): forward with the fairseq
 * loss, backward of loss / M, clip 10, AdamW. */
typedef struct {
    derf_w2v *m;
    const float *wav;
    const derf_w2v_draws *d;
    derf_adamw_cfg a;
    int B, N, step;
} w2v_ctx;

static void w2v_step(void *c) {
    w2v_ctx *k = c;
    derf_params_zero_grad(&k->m->params);
    derf_w2v_forward(k->m, k->wav, k->B, k->N, k->d, 2.0f);
    derf_w2v_backward(k->m, 1.0f);
    derf_clip_grad_norm(&k->m->params, 10.f);
    derf_adamw_step(&k->m->params, &k->a, ++k->step);
}

static int bench_w2v(peer_t *peer, const char *preset, const char *list, int B, int N, int warmup, int reps) {
    derf_norm_spec specs[MAX_SPECS];
    char names[MAX_SPECS][64], canon[MAX_SPECS][256], err[512];
    int ns = parse_specs("w2v-norms", list, specs, names, canon);
    if (ns < 0) return 2;
    derf_w2v_config cfg;
    if (derf_w2v_preset(&cfg, preset, err, sizeof err)) return cli_fail("bench", "--w2v-preset: %s", err);
    const int T = derf_w2v_frames(&cfg, N);
    if (T < 2 * cfg.mask_len + 2) return cli_fail("bench", "--w2v-samples %d gives %d frames; use at least 8000", N, T);
    float *wav = malloc(sizeof(float) * (size_t)B * N);
    derf_w2v_draws d = {malloc((size_t)B * T), malloc(sizeof(int32_t) * (size_t)B * T * cfg.n_neg),
                        malloc(sizeof(float) * (size_t)B * T * cfg.groups * cfg.vars), 0};
    derf_rng r;
    derf_rng_seed(&r, 17, 0);
    derf_rng_fill_normal(&r, wav, (size_t)B * N, 0.f, 1.f);
    derf_w2v_sample(&cfg, &d, B, T, 1, &r);
    double ours[MAX_SPECS][2], torch[MAX_SPECS][2], load[2];
    long long nparams = 0;
    derf_w2v *ms = calloc((size_t)ns, sizeof *ms);
    w2v_ctx *ks = calloc((size_t)ns, sizeof *ks);
    void *ctx[MAX_SPECS];
    int built = 0, rc = 0;
    for (int i = 0; i < ns; i++, built++) {
        derf_w2v_config c = cfg;
        c.norm = specs[i];
        if (derf_w2v_check(&c, err, sizeof err) || derf_w2v_build(&ms[i], &c, B, N, err, sizeof err)) {
            rc = cli_fail("bench", "wav2vec %s: %s", names[i], err);
            break;
        }
        derf_w2v_init(&ms[i], 0);
        nparams = (long long)ms[i].params.total;
        ks[i] = (w2v_ctx){&ms[i], wav, &d, {5e-4f, 0.9f, 0.98f, 1e-6f, 0.01f}, B, N, 0};
        ctx[i] = &ks[i];
    }
    int blas = peer->blas > 0 ? peer->blas : 1;
    char args[8192], conv[256] = "";
    for (int l = 0; l < cfg.n_conv; l++) {
        size_t len = strlen(conv);
        snprintf(conv + len, sizeof conv - len, "%s%d:%d", l ? "," : "", cfg.conv_k[l], cfg.conv_s[l]);
    }
    snprintf(args, sizeof args,
             "wav2vec --batch %d --samples %d --masked %d --threads %d --conv-dim %d --d %d --n-layer %d --n-head %d --ffn %d "
             "--final-dim %d --pos-k %d --pos-groups %d --groups %d --vars %d --n-neg %d --logit-temp %g --div-weight %g "
             "--pen-weight %g --grad-mult %g --conv %s",
             B, N, d.M / B, peer->threads, cfg.conv_dim, cfg.d, cfg.n_layer, cfg.n_head, cfg.ffn, cfg.final_dim, cfg.pos_k,
             cfg.pos_groups, cfg.groups, cfg.vars, cfg.n_neg, (double)cfg.logit_temp, (double)cfg.div_weight,
             (double)cfg.pen_weight, (double)cfg.grad_mult, conv);
    append_specs(args, sizeof args, canon, ns);
    if (!rc) run_models(peer, blas, "wav2vec", args, ns, ctx, w2v_step, 0, warmup, reps, ours, torch, load);
    for (int i = 0; i < built; i++) derf_w2v_free(&ms[i]);
    free(ms); free(ks); free(wav); free(d.mask); free(d.neg); free(d.gumbel_u);
    if (rc) return rc;
    char head[512];
    snprintf(head, sizeof head, "wav2vec %s (conv C %d, d %d, %d layers, %d heads, G %d x V %d, K %d; %.4gM params), batch %d x %d "
             "samples\n(%d frames, %d masked), training step = forward + loss + backward + clip + AdamW", preset, cfg.conv_dim, cfg.d,
             cfg.n_layer, cfg.n_head, cfg.groups, cfg.vars, cfg.n_neg, nparams / 1e6, B, N, T, d.M);
    model_table(head, "seconds/s", (double)B * N / 16000., ns, names, ours, torch, peer, blas, load, "wav2vec");
    return 0;
}

/* HyenaDNA and Caduceus-PS: one train-dna pretraining step (next-token or masked LM): forward, backward, clip 1,
 * AdamW (betas 0.9/0.95, wd 0.1). */
typedef struct {
    derf_hyena *h;
    derf_caduceus *c;
    derf_params *p;
    const int32_t *tok, *tgt;
    derf_adamw_cfg a;
    int B, T, step;
} dna_ctx;

static void dna_step(void *c) {
    dna_ctx *k = c;
    derf_params_zero_grad(k->p);
    if (k->h) {
        derf_hyena_forward(k->h, k->tok, k->tgt, k->B, k->T);
        derf_hyena_backward(k->h, 1.f);
    } else {
        derf_caduceus_forward(k->c, k->tok, k->tgt, k->B, k->T);
        derf_caduceus_backward(k->c, 1.f);
    }
    derf_clip_grad_norm(k->p, 1.f);
    derf_adamw_step(k->p, &k->a, ++k->step);
}

static int bench_dna(peer_t *peer, int caduceus, const char *preset, const char *list, int B, int T, int warmup, int reps) {
    const char *part = caduceus ? "caduceus" : "hyena";
    derf_norm_spec specs[MAX_SPECS];
    char names[MAX_SPECS][64], canon[MAX_SPECS][256], err[512], opt[32];
    snprintf(opt, sizeof opt, "%s-norms", part);
    int ns = parse_specs(opt, list, specs, names, canon);
    if (ns < 0) return 2;
    derf_hyena_config hc;
    derf_caduceus_config cc;
    if (caduceus ? derf_caduceus_preset(&cc, preset, err, sizeof err) : derf_hyena_preset(&hc, preset, T + 2, err, sizeof err))
        return cli_fail("bench", "--%s-preset: %s", part, err);
    size_t n = (size_t)B * T;
    int32_t *tok = malloc(sizeof(int32_t) * n), *tgt = malloc(sizeof(int32_t) * n);
    derf_rng r;
    derf_rng_seed(&r, 19, 0);
    for (size_t j = 0; j < n; j++) tok[j] = tgt[j] = 7 + (int32_t)derf_rng_below(&r, 4); /* A C G T */
    if (caduceus) derf_mlm_mask(tok, tgt, (int)n, 0.15f, &r);
    else for (size_t j = 0; j < n; j++) tgt[j] = 7 + (int32_t)derf_rng_below(&r, 4);
    double ours[MAX_SPECS][2], torch[MAX_SPECS][2], load[2], emb_scale[MAX_SPECS];
    long long nparams = 0;
    derf_hyena *hm = calloc((size_t)ns, sizeof *hm);
    derf_caduceus *cm = calloc((size_t)ns, sizeof *cm);
    dna_ctx *ks = calloc((size_t)ns, sizeof *ks);
    void *ctx[MAX_SPECS];
    int built = 0, rc = 0;
    for (int i = 0; i < ns; i++, built++) {
        const derf_norm_spec *sp = &specs[i];
        /* train-dna's --emb-scale auto: point-wise norms get the learnable embedding scale */
        float es = sp->kind == DERF_NORM_POINTWISE && sp->alpha_init > 0 ? 1.f / (sp->alpha_init * DERF_DNA_EMB_STD) : 0.f;
        emb_scale[i] = es;
        ks[i] = (dna_ctx){NULL, NULL, NULL, tok, tgt, {caduceus ? 8e-3f : 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f}, B, T, 0};
        if (caduceus) {
            derf_caduceus_config c = cc;
            c.norm = *sp;
            c.emb_scale = es;
            if (derf_caduceus_check(&c, err, sizeof err) || derf_caduceus_build(&cm[i], &c, B, T, err, sizeof err)) {
                rc = cli_fail("bench", "caduceus %s: %s", names[i], err);
                break;
            }
            derf_caduceus_init(&cm[i], 0);
            ks[i].c = &cm[i];
            ks[i].p = &cm[i].params;
        } else {
            derf_hyena_config c = hc;
            c.norm = *sp;
            c.emb_scale = es;
            if (derf_hyena_check(&c, err, sizeof err) || derf_hyena_build(&hm[i], &c, B, T, err, sizeof err)) {
                rc = cli_fail("bench", "hyena %s: %s", names[i], err);
                break;
            }
            derf_hyena_init(&hm[i], 0);
            ks[i].h = &hm[i];
            ks[i].p = &hm[i].params;
        }
        nparams = (long long)ks[i].p->total;
        ctx[i] = &ks[i];
    }
    int blas = peer->blas > 0 ? peer->blas : 1;
    /* one peer per norm (the embedding scale is per norm): derf's and PyTorch's steps interleave per norm */
    char args[8192];
    double loads[2] = {NAN, NAN};
    for (int i = 0; i < ns && !rc; i++) {
        if (caduceus)
            snprintf(args, sizeof args, "caduceus --batch %d --seq %d --threads %d --vocab %d --d-model %d --n-layer %d --d-state %d "
                     "--expand %d --dt-rank %d --d-conv %d --emb-scale %.9g '%s'",
                     B, T, peer->threads, cc.vocab, cc.d_model, cc.n_layer, cc.d_state, cc.expand, cc.dt_rank, cc.d_conv,
                     emb_scale[i], canon[i]);
        else
            snprintf(args, sizeof args, "hyena --batch %d --seq %d --threads %d --vocab %d --d-model %d --n-layer %d --d-inner %d "
                     "--filter-order %d --l-max %d --sin-w %.9g --emb-scale %.9g '%s'",
                     B, T, peer->threads, hc.vocab, hc.d_model, hc.n_layer, hc.d_inner, hc.filter_order, hc.l_max,
                     (double)hc.sin_w, emb_scale[i], canon[i]);
        double o[1][2], tt[1][2];
        run_models(peer, blas, part, args, 1, &ctx[i], dna_step, 1, warmup, reps, o, tt, load);
        ours[i][0] = o[0][0]; ours[i][1] = o[0][1]; torch[i][0] = tt[0][0]; torch[i][1] = tt[0][1];
        if (i == 0) loads[0] = load[0];
        loads[1] = load[1];
    }
    for (int i = 0; i < built; i++) {
        if (caduceus) derf_caduceus_free(&cm[i]);
        else derf_hyena_free(&hm[i]);
    }
    free(hm); free(cm); free(ks); free(tok); free(tgt);
    if (rc) return rc;
    char head[512];
    if (caduceus)
        snprintf(head, sizeof head, "caduceus %s (d %d, %d layers, state %d, expand %d; %.4gM params), B %d T %d, masked-LM training "
                 "step =\nforward + backward + clip + AdamW", preset, cc.d_model, cc.n_layer, cc.d_state, cc.expand, nparams / 1e6, B, T);
    else
        snprintf(head, sizeof head, "hyena %s (d %d, %d layers, MLP %d, filter order %d; %.4gM params), B %d T %d, next-token "
                 "training step =\nforward + backward + clip + AdamW", preset, hc.d_model, hc.n_layer, hc.d_inner, hc.filter_order,
                 nparams / 1e6, B, T);
    model_table(head, "tokens/s", (double)B * T, ns, names, ours, torch, peer, blas, loads, part);
    return 0;
}

/* ------------------------------------------------------------------------------------ tokenizer */
/* The GPT-2 tokenizer (JS flavour: byte-identical to the npm gpt-3-encoder) on a text file, against that
 * package's own encode() under node (tools/gpt2_tokenize_ref.js --bench). Both single-threaded; MB/s by wall
 * and by CPU time (the thread's, and node's process), the cache warm (one untimed pass first). */
static double thread_cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int bench_tok(const char *node, const char *script, const char *file, size_t max_bytes, int warmup, int reps) {
    char err[512];
    void *buf;
    size_t len;
    if (derf_io_read_file(file, (size_t)1 << 30, &buf, &len, err, sizeof err))
        return cli_fail("bench", "--tok-file: %s", err);
    if (max_bytes && len > max_bytes) { /* cut at a whitespace after a non-space (a pre-token boundary) */
        size_t cut = max_bytes;
        while (cut < len && !(isspace((unsigned char)((char *)buf)[cut]) && !isspace((unsigned char)((char *)buf)[cut - 1]))) cut++;
        len = cut;
    }
    derf_tokenizer *tk = derf_tok_load_dir(NULL, DERF_TOK_JS, err, sizeof err);
    if (!tk) { free(buf); return cli_fail("bench", "tok: %s", err); }
    fprintf(stderr, "[bench] tokenizer on %s (%.2f MB) ...\n", file, len / 1e6);
    double *ts = malloc(sizeof(double) * 2 * (size_t)reps), ntok = 0;
    for (int r = -(warmup > 0 ? warmup : 1); r < reps; r++) {
        derf_tok_ids ids = {0};
        double t = now_s(), c = thread_cpu_s();
        if (derf_tok_encode(tk, buf, len, &ids, err, sizeof err)) {
            free(ids.ids); free(ts); free(buf); derf_tok_free(tk);
            return cli_fail("bench", "tok: %s", err);
        }
        if (r >= 0) { ts[r] = now_s() - t; ts[reps + r] = thread_cpu_s() - c; }
        ntok = (double)ids.n;
        free(ids.ids);
    }
    derf_tok_free(tk);
    double ours[2] = {stat_ms(ts, reps), stat_ms(ts + reps, reps)}, js[2] = {NAN, NAN};
    free(ts);
    char why[600] = "";
    if (!node) snprintf(why, sizeof why, "--no-node");
    else if (!script) snprintf(why, sizeof why, "tools/gpt2_tokenize_ref.js not found");
    else {
        /* the text as cut above goes to the peer through a temporary file */
        char tmp[] = "/tmp/derf-bench-tok-XXXXXX";
        int fd = mkstemp(tmp);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f || fwrite(buf, 1, len, f) != len) snprintf(why, sizeof why, "cannot write a temporary file");
        if (f) fclose(f);
        if (!why[0]) {
            char cmd[4096], line[256];
            snprintf(cmd, sizeof cmd, "'%s' '%s' --bench %d '%s' 2>&1", node, script, reps, tmp);
            fprintf(stderr, "[bench] the JS encoder (gpt-3-encoder under node) ...\n");
            FILE *p = popen(cmd, "r");
            double *w = malloc(sizeof(double) * 2 * (size_t)reps);
            int got = 0;
            while (p && fgets(line, sizeof line, p))
                if (got < reps && sscanf(line, "t %lf %lf", &w[got], &w[reps + got]) == 2) {
                    w[got] *= 1e-3; /* ms -> s, as stat_ms takes them */
                    w[reps + got] *= 1e-3;
                    got++;
                }
                else if (!why[0] && strncmp(line, "t ", 2)) snprintf(why, sizeof why, "%.*s", (int)strcspn(line, "\n"), line);
            int st = p ? pclose(p) : -1;
            if (got == reps) {
                js[0] = stat_ms(w, reps);
                js[1] = stat_ms(w + reps, reps);
                why[0] = 0;
            } else if (!why[0]) snprintf(why, sizeof why, "%s exited with status %d", node, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            free(w);
        }
        if (fd >= 0) unlink(tmp);
    }
    free(buf);
    double mb = len / 1e6;
    printf("\ntokenizer: GPT-2 BPE (JS flavour) on %.2f MB of text (%.0f tokens), one thread, cache warm; ratio = derf MB/s over\n"
           "the npm gpt-3-encoder's under node (>1: derf faster), by wall and by CPU time\npeer: %s\n",
           mb, ntok, why[0] ? why : "gpt-3-encoder 1.1.4 (tools/gpt2_tokenize_ref.js)");
    printf("%-18s %10s %10s %10s %7s %10s %10s %7s\n", "encoder", "MB/s", "ms", "js MB/s", "ratio", "cpu MB/s", "js cpu", "cpu");
    char c1[32], c2[32], c3[32], c4[32];
    printf("%-18s %10.2f %10.1f %10s %7s %10.2f %10s %7s\n", "gpt2-js", mb / (ours[0] * 1e-3), ours[0],
           fmt(c1, sizeof c1, "%.2f", mb / (js[0] * 1e-3)), fmt(c2, sizeof c2, "%.2fx", js[0] / ours[0]), mb / (ours[1] * 1e-3),
           fmt(c3, sizeof c3, "%.2f", mb / (js[1] * 1e-3)), fmt(c4, sizeof c4, "%.2fx", js[1] / ours[1]));
    summary_add("tokenizer", "gpt2-js", ours, js);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------------------ command */
/* FILE relative to the working directory, else next to the derf binary. */
static int find_tool(const char *file, char *buf, size_t n) {
    if (access(file, R_OK) == 0) { snprintf(buf, n, "%s", file); return 0; }
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(buf, n, "%s/%s", exe, file);
        if (access(buf, R_OK) == 0) return 0;
    }
    return -1;
}

enum { P_MEMCPY, P_NORMS, P_VIT, P_GPT2, P_DIT, P_W2V, P_HYENA, P_CADUCEUS, P_TOK, NPARTS };

int cmd_bench(int argc, char **argv) {
    const char *only = "memcpy,norms,vit,gpt2,dit,wav2vec,hyena,caduceus,tok", *norms = "layernorm,rmsnorm,dyt,derf";
    const char *vit_preset = "tiny", *vit_norms = "layernorm,dyt,derf";
    const char *gpt2_preset = "124m", *gpt2_norms = "layernorm,derf", *python = "/usr/bin/python3";
    const char *dit_preset = "mini", *dit_norms = "layernorm,derf", *w2v_preset = "s", *w2v_norms = "layernorm,derf";
    const char *hyena_preset = "tiny", *hyena_norms = "layernorm,derf", *cad_preset = "ct", *cad_norms = "rmsnorm,derf";
    const char *node = "node", *tok_file = "/usr/local/share/derf/text-src/moby-dick/data.txt";
    int threads = omp_get_max_threads(), reps = 0, warmup = -1, rows = 8192, cols = 768;
    int vit_batch = 128, gpt2_batch = 4, gpt2_seq = 64, no_torch = 0, torch_blas = 0, quick = 0, no_node = 0;
    int dit_batch = 64, w2v_batch = 8, w2v_samples = 64000, hyena_batch = 16, hyena_seq = 1024, cad_batch = 8, cad_seq = 256;
    int tok_bytes = 0;
    const cli_opt opts[] = {
        {"only", CLI_STR, &only, "comma-separated parts: memcpy, norms, vit, gpt2, dit, wav2vec, hyena, caduceus, tok", 0, -1},
        {"threads", CLI_INT, &threads, "OpenMP threads for derf, torch.set_num_threads for PyTorch", 1, 1024},
        {"reps", CLI_INT, &reps, "timed repetitions per figure (0: 30 memcpy/norms, 10 vit/dit, 5 gpt2/wav2vec/hyena/tok, 3 caduceus)", 0, 100000},
        {"warmup", CLI_INT, &warmup, "untimed runs before them (-1: 3 memcpy/norms, 2 vit/dit, 1 the others)", -1, 10000},
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
        {"dit-preset", CLI_STR, &dit_preset, "DiT preset (mini, tiny, small, test)", 0, -1},
        {"dit-batch", CLI_INT, &dit_batch, "DiT batch", 1, 65536},
        {"dit-norms", CLI_STR, &dit_norms, "norm specs of the DiT step (affine dropped, as train-dit does)", 0, -1},
        {"w2v-preset", CLI_STR, &w2v_preset, "wav2vec 2.0 preset (s, xs, xxs)", 0, -1},
        {"w2v-batch", CLI_INT, &w2v_batch, "wav2vec 2.0 utterances per step", 1, 256},
        {"w2v-samples", CLI_INT, &w2v_samples, "wav2vec 2.0 samples per utterance (16 kHz)", 400, 1 << 24},
        {"w2v-norms", CLI_STR, &w2v_norms, "norm specs of the wav2vec 2.0 step", 0, -1},
        {"hyena-preset", CLI_STR, &hyena_preset, "HyenaDNA preset (tiny, small, test)", 0, -1},
        {"hyena-batch", CLI_INT, &hyena_batch, "HyenaDNA sequences per step", 1, 65536},
        {"hyena-seq", CLI_INT, &hyena_seq, "HyenaDNA bases per sequence", 2, 1 << 20},
        {"hyena-norms", CLI_STR, &hyena_norms, "norm specs of the HyenaDNA step", 0, -1},
        {"caduceus-preset", CLI_STR, &cad_preset, "Caduceus-PS preset (ct, gb, test)", 0, -1},
        {"caduceus-batch", CLI_INT, &cad_batch, "Caduceus-PS sequences per step", 1, 65536},
        {"caduceus-seq", CLI_INT, &cad_seq, "Caduceus-PS bases per sequence", 2, 1 << 20},
        {"caduceus-norms", CLI_STR, &cad_norms, "norm specs of the Caduceus-PS step", 0, -1},
        {"tok-file", CLI_STR, &tok_file, "text the tokenizer part encodes (default: Moby Dick of make deps)", 0, -1},
        {"tok-bytes", CLI_INT, &tok_bytes, "encode only about the first N bytes of it (0: all)", 0, 1 << 30},
        {"node", CLI_STR, &node, "node for the JS tokenizer peer", 0, -1},
        {"no-node", CLI_FLAG, &no_node, "skip the JS tokenizer peer", 0, -1},
        {"python", CLI_STR, &python, "interpreter for the PyTorch peers (tools/bench_torch.py)", 0, -1},
        {"torch-blas", CLI_INT, &torch_blas, "OPENBLAS_NUM_THREADS for PyTorch (0: 1, but --threads for gpt2)", 0, 1024},
        {"no-torch", CLI_FLAG, &no_torch, "skip the PyTorch peers", 0, -1},
        {"min", CLI_FLAG, &stat_min, "report the fastest timed run, not the median (both sides; for a loaded machine)", 0, -1},
        {"quick", CLI_FLAG, &quick, "every part at toy sizes, 2 timed runs after 1: a smoke test of seconds (no timing meaning)", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"bench", "[options]",
        "Benchmark derf's kernels and training steps against PyTorch run in the same invocation (when the --python\n"
        "interpreter has torch): the memcpy floor, the norms at N x C, the training step of every model (ViT, GPT-2,\n"
        "DiT, wav2vec 2.0, HyenaDNA, Caduceus-PS; derf's and PyTorch's steps interleaved) and the GPT-2 tokenizer\n"
        "against the npm JS encoder (when node has it). Medians of --reps timed runs; progress on stderr, tables on\n"
        "stdout, a summary of every ratio at the end.",
        "Ratios compare figures of this one run only; timings on a loaded machine mean little.\n"
        "What each part measures and the fair-comparison settings: docs/performance.md.",
        opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (quick) { /* toy sizes everywhere: checks that every part and peer runs, in seconds */
        rows = 256; cols = 64; vit_preset = "test"; vit_batch = 4; gpt2_preset = "test"; gpt2_batch = 2; gpt2_seq = 8;
        dit_preset = "test"; dit_batch = 4; w2v_preset = "xxs"; w2v_batch = 1; w2v_samples = 8000; hyena_preset = "test";
        hyena_batch = 2; hyena_seq = 32; cad_preset = "test"; cad_batch = 2; cad_seq = 16; tok_bytes = 20000;
        if (!reps) reps = 2;
        if (warmup < 0) warmup = 1;
    }

    int want[NPARTS] = {0}, any = 0;
    const char *parts[NPARTS] = {"memcpy", "norms", "vit", "gpt2", "dit", "wav2vec", "hyena", "caduceus", "tok"};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", only);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < NPARTS && strcmp(tok, parts[k])) k++;
        if (k == NPARTS)
            return cli_fail("bench", "unknown part '%s' in --only (known: memcpy, norms, vit, gpt2, dit, wav2vec, hyena, caduceus, tok)", tok);
        want[k] = any = 1;
    }
    if (!any) return cli_fail("bench", "--only is empty; e.g. --only norms,vit");
    /* validate every spec list up front, so a typo fails before minutes of timing */
    {
        derf_norm_spec s[MAX_SPECS];
        char nm[MAX_SPECS][64], cn[MAX_SPECS][256];
        if ((want[P_NORMS] && parse_specs("norms", norms, s, nm, cn) < 0) ||
            (want[P_VIT] && parse_specs("vit-norms", vit_norms, s, nm, cn) < 0) ||
            (want[P_GPT2] && parse_specs("gpt2-norms", gpt2_norms, s, nm, cn) < 0) ||
            (want[P_DIT] && parse_specs("dit-norms", dit_norms, s, nm, cn) < 0) ||
            (want[P_W2V] && parse_specs("w2v-norms", w2v_norms, s, nm, cn) < 0) ||
            (want[P_HYENA] && parse_specs("hyena-norms", hyena_norms, s, nm, cn) < 0) ||
            (want[P_CADUCEUS] && parse_specs("caduceus-norms", cad_norms, s, nm, cn) < 0))
            return 2;
        if (want[P_TOK] && access(tok_file, R_OK) != 0)
            return cli_fail("bench", "--tok-file %s cannot be read (make deps installs the default; or --only without tok)", tok_file);
    }
    const int def_reps[NPARTS] = {30, 30, 10, 5, 10, 5, 5, 3, 5}, def_warm[NPARTS] = {3, 3, 2, 1, 2, 1, 1, 1, 1};
    int preps[NPARTS], pwarm[NPARTS];
    for (int k = 0; k < NPARTS; k++) {
        preps[k] = reps > 0 ? reps : def_reps[k];
        pwarm[k] = warmup >= 0 ? warmup : def_warm[k];
    }
    peer_t peer = {.python = python, .enabled = !no_torch, .blas = torch_blas, .threads = threads};
    static char script[1200], jsref[1200];
    if (no_torch) snprintf(peer.why, sizeof peer.why, "--no-torch");
    else if (access(python, X_OK) != 0) {
        char why[600];
        snprintf(why, sizeof why, "%s is not an executable", python);
        peer_skip(&peer, why);
    } else if (find_tool("tools/bench_torch.py", script, sizeof script)) {
        peer_skip(&peer, "tools/bench_torch.py not found (run derf from the repository root)");
    }
    peer.script = script;
    int have_js = !find_tool("tools/gpt2_tokenize_ref.js", jsref, sizeof jsref);

    omp_set_num_threads(threads);
    printf("derf bench: %d thread%s, fp32; each figure is the %s of its timed runs after untimed warm-up runs; PyTorch\n"
           "peers %s; load average %.2f at the start\n",
           threads, threads == 1 ? "" : "s", stat_min ? "minimum" : "median", peer.enabled ? python : "skipped", load_avg());
    fflush(stdout);

    double copy_ms = NAN;
    if (want[P_MEMCPY] || want[P_NORMS]) {
        copy_ms = bench_memcpy(rows, cols, pwarm[P_MEMCPY], preps[P_MEMCPY]);
        if (!isfinite(copy_ms)) return cli_fail("bench", "out of memory for a %d x %d tensor", rows, cols);
        double bytes = (double)rows * cols * sizeof(float);
        printf("\nmemcpy %d x %d fp32 (%.1f MB; GB/s counts the read and the write), %d thread%s: %.3f ms, %.1f GB/s\n", rows,
               cols, bytes / 1e6, threads, threads == 1 ? "" : "s", copy_ms, 2 * bytes / (copy_ms * 1e-3) / 1e9);
        fflush(stdout);
    }
    if (want[P_NORMS] && (rc = bench_norms(&peer, norms, rows, cols, copy_ms, pwarm[P_NORMS], preps[P_NORMS]))) return rc;
    if (want[P_VIT] && (rc = bench_vit(&peer, vit_preset, vit_norms, vit_batch, pwarm[P_VIT], preps[P_VIT]))) return rc;
    if (want[P_GPT2] && (rc = bench_gpt2(&peer, gpt2_preset, gpt2_norms, gpt2_batch, gpt2_seq, pwarm[P_GPT2], preps[P_GPT2])))
        return rc;
    if (want[P_DIT] && (rc = bench_dit(&peer, dit_preset, dit_norms, dit_batch, pwarm[P_DIT], preps[P_DIT]))) return rc;
    if (want[P_W2V] && (rc = bench_w2v(&peer, w2v_preset, w2v_norms, w2v_batch, w2v_samples, pwarm[P_W2V], preps[P_W2V])))
        return rc;
    if (want[P_HYENA] && (rc = bench_dna(&peer, 0, hyena_preset, hyena_norms, hyena_batch, hyena_seq, pwarm[P_HYENA], preps[P_HYENA])))
        return rc;
    if (want[P_CADUCEUS] &&
        (rc = bench_dna(&peer, 1, cad_preset, cad_norms, cad_batch, cad_seq, pwarm[P_CADUCEUS], preps[P_CADUCEUS])))
        return rc;
    if (want[P_TOK] &&
        (rc = bench_tok(no_node ? NULL : node, have_js ? jsref : NULL, tok_file, (size_t)tok_bytes, pwarm[P_TOK], preps[P_TOK])))
        return rc;
    if (nsummary) {
        printf("\nsummary: PyTorch (tokenizer: JS) time over derf's, by wall time and by CPU time (>1: derf faster); load average "
               "%.2f at the end\n%-10s %-18s %8s %8s\n", load_avg(), "model", "norm", "wall", "cpu");
        for (int i = 0; i < nsummary; i++) {
            char c1[32], c2[32];
            printf("%-10s %-18s %8s %8s\n", summary[i].model, summary[i].norm, fmt(c1, sizeof c1, "%.2fx", summary[i].wall),
                   fmt(c2, sizeof c2, "%.2fx", summary[i].cpu));
        }
    }
    if (!peer.enabled && (want[P_NORMS] || want[P_VIT] || want[P_GPT2] || want[P_DIT] || want[P_W2V] || want[P_HYENA] ||
                          want[P_CADUCEUS]))
        printf("\nnote: PyTorch peers not run: %s\n", peer.why);
    return 0;
}
