/* bench_infer.c: inference benchmark (docs/inference.md): the forward-only path of src/infer, folded and
 * unfolded, against the training models' forward (the path `derf eval` and the old `derf sample` used)
 * and against PyTorch under torch.no_grad() (tools/bench_infer_torch.py, /usr/bin/python3 with Debian's
 * torch), on the same checkpoints, each measurement in a fresh process (its peak RSS is its own), the
 * rounds interleaved (derf and PyTorch alternate, so a load change on the shared machine hits both), timed
 * in process CPU time (both sides; meant for --threads 1, where it is the work done on a busy machine).
 *
 *   ViT (preset small by default): images/s at batch B (default 256) and one image at a time; peak RSS
 *   GPT-2 (preset small): prefill tokens/s (B x T tokens, one causal forward) and decode tokens/s (greedy,
 *   one sequence, G tokens after a P-token prompt: KV cache on the inference path and in PyTorch, the
 *   whole context recomputed per token on the training model); peak RSS
 *
 *   norm   one norm pass over the ViT activation, trained spec vs folded spec (what folding removes)
 *
 * Usage: build/bench/bench_infer [--rounds R] [--threads N] [--norms a,b,c] [--only vit,gpt2,norm]
 *        [--vit PRESET] [--gpt2 PRESET] [--batch B] [--python PATH]
 * The checkpoints are random (normal init, norm parameters shaken so folding has work to do): speed and
 * memory do not depend on the values. Prints a Markdown table per model (medians over the rounds) and
 * the ratios against PyTorch. Progress goes to stderr. DERF_BENCH_KEEP=1 keeps the checkpoints (for profiling
 * one measurement: bench_infer --child vit|gpt2 train|infer|fold CKPT THREADS BATCH). */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "derf/infer.h"
#include "derf/io.h"
#include "derf/lm.h"
#include "derf/norm.h"
#include "derf/rng.h"
#include "derf/train.h"

/* process CPU time: with one thread it is the work done, whatever else shares the cores */
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
static long maxrss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static void die(const char *msg, const char *err) {
    fprintf(stderr, "bench_infer: %s%s%s\n", msg, err ? ": " : "", err ? err : "");
    exit(1);
}

enum { REPS = 3, SINGLE = 32, SEQ = 256, PROMPT = 16, GEN = 64, PREFILL_B = 4 };

/* ------------------------------------------------------------------------------- children */
static void child_vit(const char *mode, const char *ckpt, int B) {
    const long base = maxrss_kb();
    char err[DERF_ERRLEN];
    derf_vit tm;
    derf_infer_vit *im = NULL;
    const derf_vit_config *c;
    const int train = !strcmp(mode, "train");
    if (train) {
        if (derf_vit_load(&tm, ckpt, B, err, sizeof err)) die("load", err);
        c = &tm.cfg;
    } else {
        if (!(im = derf_infer_vit_load(ckpt, B, err, sizeof err))) die("load", err);
        if (!strcmp(mode, "fold")) derf_infer_vit_fold(im);
        c = derf_infer_vit_config(im);
    }
    const size_t per = (size_t)c->chans * c->img * c->img;
    float *x = malloc(per * B * sizeof(float));
    derf_rng r;
    derf_rng_seed(&r, 1, 1);
    for (size_t i = 0; i < per * B; i++) x[i] = derf_rng_normal(&r);
#define FWD(n) (train ? derf_vit_forward(&tm, x, n, 0, NULL) : (void)derf_infer_vit_forward(im, x, n))
    double ts[REPS];
    FWD(B);
    for (int i = 0; i < REPS; i++) {
        double t = now_s();
        FWD(B);
        ts[i] = now_s() - t;
    }
    FWD(1);
    double t = now_s();
    for (int i = 0; i < SINGLE; i++) FWD(1);
    const double single = SINGLE / (now_s() - t);
#undef FWD
    printf("r %.3f %.3f %ld %ld\n", B / median(ts, REPS), single, maxrss_kb(), base);
    free(x);
    if (train) derf_vit_free(&tm);
    else derf_infer_vit_free(im);
}

static void child_gpt2(const char *mode, const char *ckpt, int B) {
    const long base = maxrss_kb();
    char err[DERF_ERRLEN];
    derf_gpt2 tm;
    derf_infer_gpt2 *im = NULL;
    const int train = !strcmp(mode, "train");
    int V;
    if (train) {
        if (derf_lm_load(&tm, ckpt, B, SEQ, NULL, err, sizeof err)) die("load", err);
        V = tm.cfg.vocab;
    } else {
        if (!(im = derf_infer_gpt2_load(ckpt, B, SEQ, err, sizeof err))) die("load", err);
        if (!strcmp(mode, "fold")) derf_infer_gpt2_fold(im);
        V = derf_infer_gpt2_config(im)->vocab;
    }
    int32_t *tok = malloc(sizeof(int32_t) * B * SEQ);
    for (int i = 0; i < B * SEQ; i++) tok[i] = (int32_t)((i * 7919u) % (unsigned)V);
    double ts[REPS], ds[REPS];
    for (int i = -1; i < REPS; i++) {   /* prefill: B x SEQ tokens */
        double t = now_s();
        if (train) derf_gpt2_forward(&tm, tok, NULL, B, SEQ);
        else {
            derf_infer_gpt2_reset(im);
            if (!derf_infer_gpt2_step(im, tok, B, SEQ, err, sizeof err)) die("prefill", err);
        }
        if (i >= 0) ts[i] = now_s() - t;
    }
    int32_t ctx[PROMPT + GEN + 1];
    for (int i = 0; i < REPS; i++) {   /* decode: GEN greedy tokens after PROMPT */
        memcpy(ctx, tok, sizeof(int32_t) * PROMPT);
        const float *lg = NULL;
        if (!train) {
            derf_infer_gpt2_reset(im);
            if (!(lg = derf_infer_gpt2_step(im, ctx, 1, PROMPT, err, sizeof err))) die("prompt", err);
        }
        double t = now_s();
        for (int n = PROMPT; n < PROMPT + GEN; n++) {
            if (train) {
                derf_gpt2_forward(&tm, ctx, NULL, 1, n);
                lg = tm.logits + (size_t)(n - 1) * V;
            }
            int best = 0;
            for (int v = 1; v < V; v++) if (lg[v] > lg[best]) best = v;
            ctx[n] = best;
            if (!train && n + 1 < PROMPT + GEN && !(lg = derf_infer_gpt2_step(im, ctx + n, 1, 1, err, sizeof err)))
                die("decode", err);
        }
        ds[i] = now_s() - t;
    }
    printf("r %.3f %.3f %ld %ld\n", B * SEQ / median(ts, REPS), GEN / median(ds, REPS), maxrss_kb(), base);
    free(tok);
    if (train) derf_gpt2_free(&tm);
    else derf_infer_gpt2_free(im);
}

#define MAXN 8   /* norms per run */

/* ------------------------------------------------------------------------------- the norm pass alone */
/* What folding changes inside the forward: one norm pass over a ViT activation (rows x cols), trained
 * spec vs folded spec (no affine), per norm; CPU-time median of 31 runs, in this process. */
static void norm_pass(const char *const *nm, int nn, int rows, int cols) {
    printf("\nOne norm pass over %d x %d floats (the ViT small activation at batch 256): ms, trained vs folded spec\n\n"
           "| norm | trained spec ms | folded spec ms | folded / trained | x derf folded |\n|---|---|---|---|---|\n", rows, cols);
    float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols), *st = malloc(sizeof(float) * 2 * rows);
    derf_rng r;
    derf_rng_seed(&r, 4, 1);
    for (size_t i = 0; i < (size_t)rows * cols; i++) x[i] = derf_rng_normal(&r);
    double ms[MAXN][2], ref = 0;
    for (int k = 0; k < nn; k++)
        for (int f = 0; f < 2; f++) {
            derf_norm_spec s;
            char err[256];
            if (derf_norm_parse(nm[k], &s, err, sizeof err)) die("norm", err);
            if (f) { s.affine = 0; s.bias = 0; }
            float *p = malloc(sizeof(float) * (derf_norm_param_count(&s, cols) + 1));
            derf_norm_init(&s, cols, p);
            double ts[31];
            derf_norm_forward(&s, y, st, x, p, rows, cols);
            for (int i = 0; i < 31; i++) {
                double t = now_s();
                derf_norm_forward(&s, y, st, x, p, rows, cols);
                ts[i] = now_s() - t;
            }
            ms[k][f] = 1e3 * median(ts, 31);
            if (!strcmp(nm[k], "derf") && f) ref = ms[k][f];
            free(p);
        }
    for (int k = 0; k < nn; k++)
        printf("| %s | %.3f | %.3f | %.2f | %s%.2f |\n", nm[k], ms[k][0], ms[k][1], ms[k][1] / ms[k][0], ref > 0 ? "" : "-",
               ref > 0 ? ms[k][1] / ref : 0.0);
    free(x); free(y); free(st);
}

/* ------------------------------------------------------------------------------- parent */
static void shake(derf_params *p, uint64_t seed) {
    derf_rng r;
    derf_rng_seed(&r, seed, 2);
    for (int i = 0; i < p->n; i++) {
        const derf_tensor *t = &p->t[i];
        const char *dot = strrchr(t->name, '.');
        if (!(strstr(t->name, "norm") || strstr(t->name, "ln_")) || !dot) continue;
        float *v = p->params + t->offset;
        for (size_t j = 0; j < t->numel; j++) {
            const float u = derf_rng_uniform(&r);
            if (!strcmp(dot, ".weight")) v[j] = 0.5f + u;
            else if (!strcmp(dot, ".bias") || !strcmp(dot, ".shift")) v[j] = u - 0.5f;
        }
    }
}

static void save(const derf_params *p, char keys[][32], char vals[][128], int n, const char *path) {
    derf_st_meta meta[48];
    char err[DERF_ERRLEN];
    for (int i = 0; i < n; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    derf_ckpt_slab slab = {"", p->params};
    if (derf_ckpt_save(path, p, &slab, 1, meta, n, err, sizeof err)) die("save", err);
}

static void make_ckpts(const char *dir, const char *norm, const char *vitp, const char *gptp) {
    char err[DERF_ERRLEN], path[1024], keys[48][32], vals[48][128];
    derf_vit_config vc;
    derf_vit v;
    if (derf_vit_preset(&vc, vitp, err, sizeof err) || derf_norm_parse(norm, &vc.norm, err, sizeof err) ||
        derf_vit_build(&v, &vc, 1, err, sizeof err))
        die("ViT", err);
    derf_vit_init(&v, 1);
    shake(&v.params, 2);
    snprintf(path, sizeof path, "%s/vit_%s.safetensors", dir, norm);
    save(&v.params, keys, vals, derf_vit_config_to_meta(&vc, keys, vals, 48), path);
    derf_vit_free(&v);
    derf_gpt2_config gc;
    derf_gpt2 g;
    if (derf_gpt2_preset(&gc, gptp, err, sizeof err) || derf_norm_parse(norm, &gc.norm, err, sizeof err) ||
        derf_gpt2_build(&g, &gc, 1, 1, err, sizeof err))
        die("GPT-2", err);
    derf_gpt2_init(&g, 1);
    shake(&g.params, 3);
    snprintf(path, sizeof path, "%s/gpt2_%s.safetensors", dir, norm);
    save(&g.params, keys, vals, derf_gpt2_config_to_meta(&g.cfg, keys, vals, 48), path);
    derf_gpt2_free(&g);
}

/* Runs one measurement process; fills out[4] (two rates, peak KB, base KB); 0, or -1 (peer missing/failed). */
static int measure(const char *cmd, double out[4]) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[512];
    int ok = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "r %lf %lf %lf %lf", &out[0], &out[1], &out[2], &out[3]) == 4) ok = 1;
    int rc = pclose(f);
    return ok && rc == 0 ? 0 : -1;
}

#define MODES 4
static const char *MODE[MODES] = {"train", "infer", "fold", "torch"};
static const char *MODE_TEXT[2][MODES] = {
    {"derf, training model (eval forward)", "derf inference", "derf inference, folded", "PyTorch no_grad"},
    {"derf, training model (recompute context)", "derf inference (KV cache)", "derf inference, folded (KV cache)",
     "PyTorch no_grad (KV cache)"}};

int main(int argc, char **argv) {
    if (argc >= 6 && !strcmp(argv[1], "--child")) {
        omp_set_num_threads(atoi(argv[5]));
        if (!strcmp(argv[2], "vit")) child_vit(argv[3], argv[4], atoi(argv[6]));
        else child_gpt2(argv[3], argv[4], atoi(argv[6]));
        return 0;
    }
    int rounds = 3, threads = 1, batch = 256;
    const char *norms = "layernorm,dyt,derf", *only = "vit,gpt2,norm", *vitp = "small", *gptp = "small", *python = "/usr/bin/python3";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) die("every option takes a value; see the comment at the top of bench/bench_infer.c", NULL);
        if (!strcmp(a, "--rounds")) rounds = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--norms")) norms = v;
        else if (!strcmp(a, "--only")) only = v;
        else if (!strcmp(a, "--vit")) vitp = v;
        else if (!strcmp(a, "--gpt2")) gptp = v;
        else if (!strcmp(a, "--python")) python = v;
        else die("unknown option (see the comment at the top of bench/bench_infer.c)", a);
        i++;
    }
    if (rounds < 1 || rounds > 100 || threads < 1 || batch < 1) die("--rounds 1..100, --threads >= 1, --batch >= 1", NULL);
    char self[1024], dir[] = "/tmp/derf_bench_infer.XXXXXX", list[256];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) die("cannot find my own executable", NULL);
    self[n] = 0;
    if (!mkdtemp(dir)) die("cannot make a temp folder", NULL);
    const char *nm[MAXN];
    int nn = 0;
    snprintf(list, sizeof list, "%s", norms);
    for (char *s = strtok(list, ","); s && nn < MAXN; s = strtok(NULL, ",")) nm[nn++] = s;
    for (int i = 0; i < nn; i++) make_ckpts(dir, nm[i], vitp, gptp);
    const char *parts[2] = {"vit", "gpt2"};
    static double res[2][MAXN][MODES][4][100];
    static int got[2][MAXN][MODES];
    for (int r = 0; r < rounds; r++)
        for (int p = 0; p < 2; p++) {
            if (!strstr(only, parts[p])) continue;
            for (int k = 0; k < nn; k++)
                for (int md = 0; md < MODES; md++) {
                    char cmd[4096], ck[1200];
                    snprintf(ck, sizeof ck, "%s/%s_%s.safetensors", dir, parts[p], nm[k]);
                    const int B = p == 0 ? batch : PREFILL_B;
                    if (md == 3)
                        snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d %s tools/bench_infer_torch.py %s %s --batch %d "
                                 "--reps %d --single %d --seq %d --prompt %d --gen %d --threads %d", threads, python,
                                 parts[p], ck, B, REPS, SINGLE, SEQ, PROMPT, GEN, threads);
                    else
                        snprintf(cmd, sizeof cmd, "%s --child %s %s %s %d %d", self, parts[p], MODE[md], ck, threads, B);
                    double o[4];
                    fprintf(stderr, "[round %d/%d] %s %s %s ...", r + 1, rounds, parts[p], nm[k], MODE[md]);
                    if (measure(cmd, o)) { fprintf(stderr, " failed\n"); continue; }
                    fprintf(stderr, " %.1f %.1f, peak %.1f MiB\n", o[0], o[1], o[2] / 1024);
                    for (int j = 0; j < 4; j++) res[p][k][md][j][got[p][k][md]] = o[j];
                    got[p][k][md]++;
                }
        }
    printf("threads %d, %d interleaved rounds (medians); ratios: derf inference / PyTorch of the same norm\n", threads, rounds);
    for (int p = 0; p < 2; p++) {
        if (!strstr(only, parts[p])) continue;
        if (p == 0)
            printf("\nViT %s: images/s at batch %d and one at a time; peak RSS of the process (MiB), and its growth after start\n\n"
                   "| norm | path | batch %d img/s | x PyTorch | single img/s | x PyTorch | peak RSS MiB | growth MiB |\n"
                   "|---|---|---|---|---|---|---|---|\n", vitp, batch, batch);
        else
            printf("\nGPT-2 %s: prefill tokens/s (%d x %d tokens), decode tokens/s (greedy, %d tokens after %d); peak RSS (MiB)\n\n"
                   "| norm | path | prefill tok/s | x PyTorch | decode tok/s | x PyTorch | peak RSS MiB | growth MiB |\n"
                   "|---|---|---|---|---|---|---|---|\n", gptp, PREFILL_B, SEQ, GEN, PROMPT);
        for (int k = 0; k < nn; k++) {
            double med[MODES][4];
            for (int md = 0; md < MODES; md++)
                for (int j = 0; j < 4; j++) med[md][j] = got[p][k][md] ? median(res[p][k][md][j], got[p][k][md]) : 0;
            for (int md = 0; md < MODES; md++) {
                if (!got[p][k][md]) { printf("| %s | %s | - | | - | | | |\n", nm[k], MODE_TEXT[p][md]); continue; }
                char r0[32] = "", r1[32] = "";
                if (md < 3 && got[p][k][3]) {
                    snprintf(r0, sizeof r0, "%.2f", med[md][0] / med[3][0]);
                    snprintf(r1, sizeof r1, "%.2f", med[md][1] / med[3][1]);
                }
                printf("| %s | %s | %.1f | %s | %.1f | %s | %.1f | %.1f |\n", nm[k], MODE_TEXT[p][md], med[md][0], r0,
                       med[md][1], r1, med[md][2] / 1024, (med[md][2] - med[md][3]) / 1024);
            }
        }
    }
    if (strstr(only, "norm")) {
        omp_set_num_threads(threads);
        norm_pass(nm, nn, batch * 50, 96);
    }
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (getenv("DERF_BENCH_KEEP")) fprintf(stderr, "bench_infer: kept the checkpoints in %s\n", dir);
    else if (system(rm) != 0) fprintf(stderr, "bench_infer: could not remove %s\n", dir);
    return 0;
}
