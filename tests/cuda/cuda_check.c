/* cuda_check.c: the GPU check of the CUDA backend (built by `make CUDA=1` as build/cuda/cuda_check,
 * run by tools/gpu_check.sh). For every GPU kernel: fresh random inputs (seed printed; set
 * DERF_TEST_SEED to replay), the same inputs through the CPU reference of libderf (bf16 cases: the
 * inputs are rounded to bf16 first, so both sides see the same values), and the worst difference
 * normalised by the largest reference value, against a stated tolerance. Also checks that the
 * parameter-gradient reductions give the same bits twice. Prints one line per check and exits 1
 * on any mismatch; exits 77 (skip) when there is no CUDA device.
 * GPT-2 ("mini" preset, derf and layernorm, fp32 and bf16): one step's loss and every parameter
 * gradient against the CPU model, then 20 AdamW steps from the same init on the same batches on both
 * (the 'CURVE' lines are the two loss curves).
 * ViT: the stem, pooling, drop-path and EMA kernels against the CPU ops; the "tiny" model (derf /
 * layernorm, avg / cls pooling, drop path 0 / 0.2, fp32 and bf16) attached to the GPU as the trainer
 * does: one step's logits, loss and every gradient against the CPU model, 20 steps of clip + AdamW +
 * EMA on both (CURVE lines), the final weights, EMA weights and the EMA model's logits.
 * With --bench: times the norm kernels, a GPT-2 124M training step (B=16, T=1024, bf16) and a ViT-S/16
 * training step (224x224x3, B=128, bf16) (cudaEvent, median) and prints 'BENCH key ms' lines.
 * Sections (--section, one each; default all): norms, ops (GELU, embedding, cross-entropy, AdamW),
 * linear (linear and attention), gpt2, vit; each prints 'cuda_check: section S on CARD: ... pass|FAIL'.
 * --bench with --section times that section's part only (norms, gpt2, vit); the gpt2 and vit parts time
 * derf once more with DERF_CUDA_ATT_LOOP=1 ('gpt2-attloop', 'vit-s16-attloop' keys: one attention call
 * per batch row, the path before the B x heads batching).
 * Usage: cuda_check [--section S] [--bench] [--no-check] [--rows N] [--cols C] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/cuda.h"
#include "derf/gpt2.h"
#include "derf/rng.h"
#include "derf/train.h"
#include "derf/vit.h"
#include "../testutil.h"

static derf_rng g_rng;
static int g_fail, g_checks;

/* ---- host helpers -------------------------------------------------------------------------- */
static float *hnew(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) { fprintf(stderr, "cuda_check: out of host memory\n"); exit(1); }
    return p;
}
static float bf16_round(float f) { /* round to nearest even, as __float2bfloat16_rn */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return f;
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}
static void round_if(float *x, size_t n, derf_dtype dt) {
    if (dt == DERF_BF16) for (size_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
}
static float *hrand(size_t n, float lo, float hi, derf_dtype dt) {
    float *p = hnew(n);
    derf_rng_fill_uniform(&g_rng, p, n, lo, hi);
    round_if(p, n, dt);
    return p;
}
/* device copy of host floats in dtype dt */
static void *dput(const float *h, size_t n, derf_dtype dt) {
    float *tmp = derf_cuda_malloc(n * sizeof(float));
    derf_cuda_upload(tmp, h, n * sizeof(float));
    void *d = derf_cuda_malloc(n * derf_dtype_size(dt));
    derf_cuda_convert(d, dt, tmp, DERF_F32, n);
    derf_cuda_free(tmp);
    return d;
}
static float *dget(const void *d, size_t n, derf_dtype dt) {
    float *tmp = derf_cuda_malloc(n * sizeof(float)), *h = hnew(n);
    derf_cuda_convert(tmp, DERF_F32, d, dt, n);
    derf_cuda_download(h, tmp, n * sizeof(float));
    derf_cuda_free(tmp);
    return h;
}
static const char *dtn(derf_dtype dt) { return dt == DERF_BF16 ? "bf16" : "fp32"; }

/* worst |gpu - cpu| / max|cpu| <= tol */
static void compare(const char *kernel, const char *what, derf_dtype dt, const char *shape, const float *gpu,
                    const float *cpu, size_t n, double tol) {
    double mx = 0, worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(cpu[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - cpu[i]);
        if (d != d || !isfinite(gpu[i])) d = INFINITY;
        if (d > worst || (d == INFINITY && worst != INFINITY)) { worst = d; wi = i; }
    }
    double err = worst / (mx > 1e-30 ? mx : 1.0);
    int ok = err <= tol;
    g_checks++;
    if (!ok) g_fail++;
    printf("%-34s %-8s %-5s %-16s err %9.2e  tol %7.1e  %s", kernel, what, dtn(dt), shape, err, tol, ok ? "ok" : "MISMATCH");
    if (!ok) printf("  (worst at %zu: gpu %.7g cpu %.7g)", wi, gpu[wi], cpu[wi]);
    printf("\n");
    fflush(stdout);
}
static void verdict(const char *kernel, const char *what, int ok, const char *detail) {
    g_checks++;
    if (!ok) g_fail++;
    printf("%-34s %-8s %-5s %-16s %-34s %s\n", kernel, what, "", "", detail, ok ? "ok" : "MISMATCH");
}

/* ---- norms --------------------------------------------------------------------------------- */
static void check_norm(const char *specstr, int N, int C, derf_dtype dt, int accumulate) {
    derf_norm_spec s;
    char err[512], shape[32];
    if (derf_norm_parse(specstr, &s, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(2); }
    snprintf(shape, sizeof shape, "%dx%d", N, C);
    const size_t n = (size_t)N * C, np = derf_norm_param_count(&s, C), ns = derf_norm_stats_count(&s, N);
    float *x = hrand(n, -3.f, 3.f, dt), *dy = hrand(n, -1.f, 1.f, dt), *params = hnew(np);
    float *dx0 = hrand(n, -1.f, 1.f, dt), *dp0 = hrand(np, -1.f, 1.f, DERF_F32);
    derf_norm_param pl[4];
    int k = derf_norm_params(&s, C, pl);
    for (int i = 0; i < k; i++) {
        float *p = params + pl[i].offset;
        if (!strcmp(pl[i].name, "alpha")) p[0] = 0.3f + 1.2f * derf_rng_uniform(&g_rng);
        else if (!strcmp(pl[i].name, "weight")) derf_rng_fill_uniform(&g_rng, p, pl[i].numel, 0.5f, 1.5f);
        else derf_rng_fill_uniform(&g_rng, p, pl[i].numel, -0.5f, 0.5f);
    }
    /* CPU reference: y, stats; dx = (accumulate ? dx0 : 0) + ..., dparams = dp0 + ... */
    float *y = hnew(n), *stats = hnew(ns + 1), *dx = hnew(n), *dp = hnew(np);
    derf_norm_forward(&s, y, stats, x, params, N, C);
    if (accumulate) memcpy(dx, dx0, n * sizeof(float));
    memcpy(dp, dp0, np * sizeof(float));
    derf_norm_backward(&s, dx, dp, dy, x, params, stats, N, C);
    round_if(y, n, dt);
    /* GPU */
    void *gx = dput(x, n, dt), *gdy = dput(dy, n, dt), *gy = derf_cuda_malloc(n * derf_dtype_size(dt));
    void *gdx = dput(dx0, n, dt);
    float *gp = dput(params, np, DERF_F32), *gdp = dput(dp0, np, DERF_F32);
    float *gst = ns ? derf_cuda_malloc(ns * sizeof(float)) : NULL;
    derf_cuda_norm_forward(&s, gy, gst, gx, gp, N, C, dt);
    derf_cuda_norm_backward(&s, gdx, gdp, gdy, gx, gp, gst, N, C, dt, accumulate);
    float *hy = dget(gy, n, dt), *hdx = dget(gdx, n, dt), *hdp = dget(gdp, np, DERF_F32);
    char name[80];
    snprintf(name, sizeof name, "norm %s%s", specstr, accumulate ? " (dx+=)" : "");
    /* fp32: the same formulas and roundings on both sides (nvcc --fmad=false) up to libm's last
     * ulp; LayerNorm/RMSNorm statistics are double on the CPU, float on the GPU */
    const int bf = dt == DERF_BF16, row = s.kind != DERF_NORM_POINTWISE;
    compare(name, "y", dt, shape, hy, y, n, bf ? 8e-3 : row ? 1e-5 : 2e-6);
    compare(name, "dx", dt, shape, hdx, dx, n, bf ? 8e-3 : row ? 1e-5 : 5e-6);
    /* subtract the common starting values so the check sees the accumulated sums themselves */
    for (size_t i = 0; i < np; i++) { hdp[i] -= dp0[i]; dp[i] -= dp0[i]; }
    for (int i = 0; i < k; i++) {
        char what[16];
        snprintf(what, sizeof what, "d%s", pl[i].name);
        compare(name, what, dt, shape, hdp + pl[i].offset, dp + pl[i].offset, pl[i].numel, bf ? 2e-4 : 2e-5);
    }
    derf_cuda_free(gx); derf_cuda_free(gdy); derf_cuda_free(gy); derf_cuda_free(gdx);
    derf_cuda_free(gp); derf_cuda_free(gdp); derf_cuda_free(gst);
    free(x); free(dy); free(params); free(dx0); free(dp0); free(y); free(stats); free(dx); free(dp);
    free(hy); free(hdx); free(hdp);
}

/* The clipped functions' derivative masks at u within 64 ulps of each boundary (fp32; alpha 1, s 0, gamma 1,
 * beta 0): GPU and CPU must pass the gradient at exactly the same elements (decided on u in closed form,
 * src/norms/functions.h), and dx must agree as in check_norm. */
static void check_clip_masks(derf_dtype dt) {
    if (dt != DERF_F32) return; /* bf16 inputs cannot sit within ulps of the boundary */
    const struct { const char *fn; float bound; } F[] = {
        {"arcsinhclip", 1.17520118f}, {"logsignclip", 1.71828175f}, {"logquadclip", 1.31083238f}, {"power23clip", 1.f}};
    enum { K = 64, C = 4 * K };
    for (size_t f = 0; f < sizeof F / sizeof F[0]; f++) {
        derf_norm_spec s;
        char err[256];
        derf_norm_parse(F[f].fn, &s, err, sizeof err);
        const int np = (int)derf_norm_param_count(&s, C);
        float *x = hnew(C), *dy = hnew(C), *p = hnew(np), *dx = hnew(C), *dp = hnew(np), *y = hnew(C);
        float b = F[f].bound;
        for (int k = 0; k < K; k++) b = nextafterf(b, 0.f);
        for (int i = 0; i < C; i += 2, b = nextafterf(b, 2.f)) { x[i] = b; x[i + 1] = -b; dy[i] = dy[i + 1] = 1.f; }
        derf_norm_param pl[4];
        int k = derf_norm_params(&s, C, pl);
        for (int i = 0; i < k; i++)
            for (size_t j = 0; j < pl[i].numel; j++)
                p[pl[i].offset + j] = !strcmp(pl[i].name, "alpha") || !strcmp(pl[i].name, "weight") ? 1.f : 0.f;
        derf_norm_forward(&s, y, NULL, x, p, 1, C);
        derf_norm_backward(&s, dx, dp, dy, x, p, NULL, 1, C);
        void *gx = dput(x, C, dt), *gdy = dput(dy, C, dt), *gy = derf_cuda_malloc(C * 4), *gdx = derf_cuda_malloc(C * 4);
        float *gp = dput(p, np, DERF_F32), *gdp = dput(dp, np, DERF_F32);
        derf_cuda_norm_forward(&s, gy, NULL, gx, gp, 1, C, dt);
        derf_cuda_norm_backward(&s, gdx, gdp, gdy, gx, gp, NULL, 1, C, dt, 0);
        float *hdx = dget(gdx, C, dt);
        int differ = 0, passes = 0;
        for (int i = 0; i < C; i++) {
            differ += (hdx[i] != 0.f) != (dx[i] != 0.f);
            passes += dx[i] != 0.f;
        }
        char name[80], detail[80];
        snprintf(name, sizeof name, "norm %s clip mask", F[f].fn);
        snprintf(detail, sizeof detail, "+-%d ulps of the boundary: %d of %d differ", K, differ, C);
        verdict(name, "dx!=0", differ == 0 && passes > 0 && passes < C, detail);
        compare(name, "dx", dt, "1x256", hdx, dx, C, 5e-6);
        derf_cuda_free(gx); derf_cuda_free(gdy); derf_cuda_free(gy); derf_cuda_free(gdx); derf_cuda_free(gp);
        derf_cuda_free(gdp);
        free(x); free(dy); free(p); free(dx); free(dp); free(y); free(hdx);
    }
}

/* Same inputs twice: the parameter gradients must be the same bits (fixed-order reductions). */
static void check_norm_deterministic(const char *specstr, int N, int C, derf_dtype dt) {
    derf_norm_spec s;
    char err[512];
    derf_norm_parse(specstr, &s, err, sizeof err);
    const size_t n = (size_t)N * C, np = derf_norm_param_count(&s, C), ns = derf_norm_stats_count(&s, N);
    float *x = hrand(n, -3.f, 3.f, dt), *dy = hrand(n, -1.f, 1.f, dt), *params = hnew(np);
    derf_norm_init(&s, C, params);
    void *gx = dput(x, n, dt), *gdy = dput(dy, n, dt), *gdx = derf_cuda_malloc(n * derf_dtype_size(dt));
    float *gp = dput(params, np, DERF_F32), *gst = ns ? derf_cuda_malloc(ns * sizeof(float)) : NULL;
    float *gdp1 = derf_cuda_malloc(np * sizeof(float)), *gdp2 = derf_cuda_malloc(np * sizeof(float));
    void *gy = derf_cuda_malloc(n * derf_dtype_size(dt));
    derf_cuda_norm_forward(&s, gy, gst, gx, gp, N, C, dt);
    derf_cuda_norm_backward(&s, gdx, gdp1, gdy, gx, gp, gst, N, C, dt, 0);
    derf_cuda_norm_backward(&s, gdx, gdp2, gdy, gx, gp, gst, N, C, dt, 0);
    float *a = dget(gdp1, np, DERF_F32), *b = dget(gdp2, np, DERF_F32);
    char name[80], detail[64];
    snprintf(name, sizeof name, "norm %s determinism", specstr);
    snprintf(detail, sizeof detail, "%s %dx%d: dparams bitwise equal", dtn(dt), N, C);
    verdict(name, "dparams", memcmp(a, b, np * sizeof(float)) == 0, detail);
    derf_cuda_free(gx); derf_cuda_free(gdy); derf_cuda_free(gdx); derf_cuda_free(gp); derf_cuda_free(gst);
    derf_cuda_free(gdp1); derf_cuda_free(gdp2); derf_cuda_free(gy);
    free(x); free(dy); free(params); free(a); free(b);
}

/* ---- element-wise, embedding, cross-entropy ------------------------------------------------- */
static void check_gelu(derf_gelu_kind kind, derf_dtype dt) {
    const size_t n = 1 << 18;
    float *x = hrand(n, -6.f, 6.f, dt), *dout = hrand(n, -1.f, 1.f, dt), *din0 = hrand(n, -1.f, 1.f, dt);
    float *y = hnew(n), *din = hnew(n);
    memcpy(din, din0, n * sizeof(float));
    derf_gelu_forward(y, x, n, kind);
    derf_gelu_backward(din, dout, x, n, kind);
    round_if(y, n, dt);
    void *gx = dput(x, n, dt), *gd = dput(dout, n, dt), *gdi = dput(din0, n, dt), *gy = derf_cuda_malloc(n * 4);
    derf_cuda_gelu_forward(gy, gx, n, kind, dt);
    derf_cuda_gelu_backward(gdi, gd, gx, n, kind, dt);
    float *hy = dget(gy, n, dt), *hdi = dget(gdi, n, dt);
    const char *name = kind == DERF_GELU_TANH ? "gelu tanh" : "gelu erf";
    compare(name, "y", dt, "262144", hy, y, n, dt == DERF_BF16 ? 8e-3 : 2e-6);
    compare(name, "dx+=", dt, "262144", hdi, din, n, dt == DERF_BF16 ? 8e-3 : 2e-6);
    derf_cuda_free(gx); derf_cuda_free(gd); derf_cuda_free(gdi); derf_cuda_free(gy);
    free(x); free(dout); free(din0); free(y); free(din); free(hy); free(hdi);
}

static void check_embed(derf_dtype dt) {
    const int B = 4, T = 64, C = 96, V = 300;
    const size_t n = (size_t)B * T * C;
    int32_t *tok = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)derf_rng_below(&g_rng, i % 3 ? V : 8); /* repeats */
    float *wte = hrand((size_t)V * C, -1.f, 1.f, DERF_F32), *wpe = hrand((size_t)T * C, -1.f, 1.f, DERF_F32);
    float *dout = hrand(n, -1.f, 1.f, dt), *out = hnew(n);
    float *dwte = hrand((size_t)V * C, -1.f, 1.f, DERF_F32), *dwpe = hrand((size_t)T * C, -1.f, 1.f, DERF_F32);
    float *gdwte = dput(dwte, (size_t)V * C, DERF_F32), *gdwpe = dput(dwpe, (size_t)T * C, DERF_F32);
    derf_embed_forward(out, tok, wte, wpe, B, T, C);
    derf_embed_backward(dwte, dwpe, dout, tok, B, T, C);
    round_if(out, n, dt);
    int32_t *gtok = derf_cuda_malloc(sizeof(int32_t) * B * T);
    derf_cuda_upload(gtok, tok, sizeof(int32_t) * B * T);
    float *gwte = dput(wte, (size_t)V * C, DERF_F32), *gwpe = dput(wpe, (size_t)T * C, DERF_F32);
    void *gout = derf_cuda_malloc(n * 4), *gdout = dput(dout, n, dt);
    derf_cuda_embed_forward(gout, gtok, gwte, gwpe, B, T, C, dt);
    derf_cuda_embed_backward(gdwte, gdwpe, gdout, tok, B, T, C, V, dt);
    float *ho = dget(gout, n, dt), *hwte = dget(gdwte, (size_t)V * C, DERF_F32), *hwpe = dget(gdwpe, (size_t)T * C, DERF_F32);
    compare("embed", "out", dt, "4x64x96 V300", ho, out, n, dt == DERF_BF16 ? 8e-3 : 1e-7);
    compare("embed", "dwte+=", dt, "4x64x96 V300", hwte, dwte, (size_t)V * C, 2e-6);
    compare("embed", "dwpe+=", dt, "4x64x96 V300", hwpe, dwpe, (size_t)T * C, 2e-6);
    derf_cuda_free(gtok); derf_cuda_free(gwte); derf_cuda_free(gwpe); derf_cuda_free(gout); derf_cuda_free(gdout);
    derf_cuda_free(gdwte); derf_cuda_free(gdwpe);
    free(tok); free(wte); free(wpe); free(dout); free(out); free(dwte); free(dwpe); free(ho); free(hwte); free(hwpe);
}

static void check_xent(derf_dtype dt, float smoothing) {
    const int N = 128, V = 8191;
    const size_t n = (size_t)N * V;
    int32_t *tgt = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) tgt[i] = i % 17 == 5 ? -1 : (int32_t)derf_rng_below(&g_rng, V);
    float *logits = hrand(n, -8.f, 8.f, dt), *d0 = hrand(n, -1e-4f, 1e-4f, dt), *d = hnew(n);
    memcpy(d, d0, n * sizeof(float));
    float loss = derf_xent_forward_backward(d, logits, tgt, smoothing, 1.5f, N, V);
    int32_t *gt = derf_cuda_malloc(sizeof(int32_t) * N);
    derf_cuda_upload(gt, tgt, sizeof(int32_t) * N);
    void *gl = dput(logits, n, dt), *gd = dput(d0, n, dt);
    float gloss = derf_cuda_xent_forward_backward(gd, gl, gt, smoothing, 1.5f, N, V, dt, 1);
    float *hd = dget(gd, n, dt);
    char name[64];
    snprintf(name, sizeof name, "xent (smoothing %.1f)", smoothing);
    compare(name, "loss", dt, "128x8191", &gloss, &loss, 1, 2e-6);
    compare(name, "dlogits+=", dt, "128x8191", hd, d, n, dt == DERF_BF16 ? 1e-2 : 2e-5);
    /* the overwrite mode (GPT-2's forward): dlogits = ..., over garbage, ignored rows 0 */
    memset(d, 0, n * sizeof(float));
    float loss0 = derf_xent_forward_backward(d, logits, tgt, smoothing, 1.5f, N, V);
    void *gd0 = dput(logits, n, dt);
    float gloss0 = derf_cuda_xent_forward_backward(gd0, gl, gt, smoothing, 1.5f, N, V, dt, 0);
    float *hd0 = dget(gd0, n, dt);
    compare(name, "loss", dt, "128x8191", &gloss0, &loss0, 1, 2e-6);
    compare(name, "dlogits=", dt, "128x8191", hd0, d, n, dt == DERF_BF16 ? 1e-2 : 2e-5);
    derf_cuda_free(gd0);
    free(hd0);
    derf_cuda_free(gt); derf_cuda_free(gl); derf_cuda_free(gd);
    free(tgt); free(logits); free(d0); free(d); free(hd);
}

/* ---- matrix products ------------------------------------------------------------------------ */
/* (N, C, OC): 256x192->384, and 3000x64->200 (bias gradient over 12 row chunks, a partial last chunk and
 * a partial last column block) */
static void check_linear(derf_dtype dt, int N, int C, int OC) {
    char shape[32];
    snprintf(shape, sizeof shape, "%dx%d->%d", N, C, OC);
    const size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    float *inp = hrand(ni, -1.f, 1.f, dt), *w = hrand(nw, -0.2f, 0.2f, dt), *b = hrand(OC, -1.f, 1.f, DERF_F32);
    float *dout = hrand(no, -1.f, 1.f, dt), *out = hnew(no);
    float *din0 = hrand(ni, -1.f, 1.f, dt), *dw0 = hrand(nw, -1.f, 1.f, DERF_F32), *db0 = hrand(OC, -1.f, 1.f, DERF_F32);
    float *din = hnew(ni), *dw = hnew(nw), *db = hnew(OC);
    memcpy(din, din0, ni * 4); memcpy(dw, dw0, nw * 4); memcpy(db, db0, OC * 4);
    derf_linear_forward(out, inp, w, b, N, C, OC);
    derf_linear_backward(din, dw, db, dout, inp, w, N, C, OC);
    void *gi = dput(inp, ni, dt), *gw = dput(w, nw, dt), *gdo = dput(dout, no, dt), *go = derf_cuda_malloc(no * 4);
    void *gdi = dput(din0, ni, dt);
    float *gb = dput(b, OC, DERF_F32), *gdw = dput(dw0, nw, DERF_F32), *gdb = dput(db0, OC, DERF_F32);
    derf_cuda_linear_forward(go, gi, gw, gb, N, C, OC, dt);
    derf_cuda_linear_backward(gdi, gdw, gdb, gdo, gi, gw, N, C, OC, dt);
    float *ho = dget(go, no, dt), *hdi = dget(gdi, ni, dt), *hdw = dget(gdw, nw, DERF_F32), *hdb = dget(gdb, OC, DERF_F32);
    const double t = dt == DERF_BF16 ? 1e-2 : 2e-5;
    compare("linear (cuBLASLt)", "out", dt, shape, ho, out, no, t);
    compare("linear (cuBLASLt)", "dinp+=", dt, shape, hdi, din, ni, t);
    compare("linear (cuBLASLt)", "dw+=", dt, shape, hdw, dw, nw, dt == DERF_BF16 ? 1e-3 : 2e-5);
    compare("linear (cuBLASLt)", "db+=", dt, shape, hdb, db, OC, 2e-5);
    derf_cuda_free(gi); derf_cuda_free(gw); derf_cuda_free(gdo); derf_cuda_free(go); derf_cuda_free(gdi);
    derf_cuda_free(gb); derf_cuda_free(gdw); derf_cuda_free(gdb);
    free(inp); free(w); free(b); free(dout); free(out); free(din0); free(dw0); free(db0); free(din); free(dw); free(db);
    free(ho); free(hdi); free(hdw); free(hdb);
}

static void check_attention(derf_dtype dt, int causal) {
    const int B = 2, T = 128, C = 128, NH = 4;
    const size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    float *qkv = hrand(nq, -1.f, 1.f, dt), *dout = hrand(no, -1.f, 1.f, dt), *dq0 = hrand(nq, -1.f, 1.f, dt);
    float *out = hnew(no), *att = hnew(na), *scr = hnew(na), *dq = hnew(nq);
    memcpy(dq, dq0, nq * 4);
    derf_attention_forward(out, att, qkv, B, T, C, NH, causal);
    derf_attention_backward(dq, scr, dout, qkv, att, B, T, C, NH, causal);
    void *gq = dput(qkv, nq, dt), *gdo = dput(dout, no, dt), *gdq = dput(dq0, nq, dt);
    void *go = derf_cuda_malloc(no * 4), *ga = derf_cuda_malloc(na * 4);
    derf_cuda_attention_forward(go, ga, gq, B, T, C, NH, causal, dt);
    derf_cuda_attention_backward(gdq, gdo, gq, ga, B, T, C, NH, causal, dt);
    float *ho = dget(go, no, dt), *ha = dget(ga, na, dt), *hdq = dget(gdq, nq, dt);
    const int loop = getenv("DERF_CUDA_ATT_LOOP") && *getenv("DERF_CUDA_ATT_LOOP") == '1';
    const char *name = causal ? (loop ? "attention causal (cuBLAS, loop)" : "attention causal (cuBLAS)")
                              : (loop ? "attention (cuBLAS, loop)" : "attention (cuBLAS)");
    const double t = dt == DERF_BF16 ? 2e-2 : 2e-5;
    compare(name, "att", dt, "2x128x128 h4", ha, att, na, t);
    compare(name, "out", dt, "2x128x128 h4", ho, out, no, t);
    compare(name, "dqkv+=", dt, "2x128x128 h4", hdq, dq, nq, t);
    derf_cuda_free(gq); derf_cuda_free(gdo); derf_cuda_free(gdq); derf_cuda_free(go); derf_cuda_free(ga);
    free(qkv); free(dout); free(dq0); free(out); free(att); free(scr); free(dq); free(ho); free(ha); free(hdq);
}

/* ---- optimizer -------------------------------------------------------------------------------- */
static void check_adamw(void) {
    derf_params p;
    derf_params_init(&p);
    int s1[2] = {64, 48}, s2[1] = {48}, s3[2] = {100, 7};
    derf_params_add(&p, "a.weight", 2, s1, 1);
    derf_params_add(&p, "a.bias", 1, s2, 0);
    derf_params_add(&p, "b.weight", 2, s3, 1);
    derf_params_alloc(&p);
    const size_t n = p.total;
    derf_rng_fill_uniform(&g_rng, p.params, n, -1.f, 1.f);
    derf_rng_fill_uniform(&g_rng, p.grads, n, -1.f, 1.f);
    derf_rng_fill_uniform(&g_rng, p.m, n, -0.1f, 0.1f);
    derf_rng_fill_uniform(&g_rng, p.v, n, 0.f, 0.01f);
    float *gw = dput(p.params, n, DERF_F32), *gg = dput(p.grads, n, DERF_F32);
    float *gm = dput(p.m, n, DERF_F32), *gv = dput(p.v, n, DERF_F32);
    derf_adamw_cfg cfg = {6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    derf_adamw_step(&p, &cfg, 3);
    derf_cuda_adamw_step(&p, gw, gg, gm, gv, &cfg, 3);
    float *hw = dget(gw, n, DERF_F32), *hm = dget(gm, n, DERF_F32), *hv = dget(gv, n, DERF_F32);
    compare("adamw (step 3, mixed decay)", "params", DERF_F32, "4 tensors", hw, p.params, n, 1e-6);
    compare("adamw (step 3, mixed decay)", "m", DERF_F32, "4 tensors", hm, p.m, n, 1e-6);
    compare("adamw (step 3, mixed decay)", "v", DERF_F32, "4 tensors", hv, p.v, n, 1e-6);
    /* clipping: norm and the scaled gradients */
    float cn = derf_clip_grad_norm(&p, 1.0f), gn = derf_cuda_clip_grad_norm(gg, n, 1.0f);
    float *hg = dget(gg, n, DERF_F32);
    compare("clip_grad_norm (max 1)", "norm", DERF_F32, "4 tensors", &gn, &cn, 1, 1e-5);
    compare("clip_grad_norm (max 1)", "grads", DERF_F32, "4 tensors", hg, p.grads, n, 1e-5);
    derf_cuda_free(gw); derf_cuda_free(gg); derf_cuda_free(gm); derf_cuda_free(gv);
    free(hw); free(hm); free(hv); free(hg);
    derf_params_free(&p);
}

/* Per tensor of `layout`: worst |got - ref| / max|ref|; the worst tensor against tol. */
static void compare_slabs(const char *name, const char *what, derf_dtype dt, const char *shape,
                          const derf_params *layout, const float *ref, const float *got, double tol) {
    double worst = 0;
    int wt = 0;
    for (int t = 0; t < layout->n; t++) {
        const derf_tensor *te = &layout->t[t];
        double mx = 0, d = 0;
        for (size_t i = 0; i < te->numel; i++) {
            mx = fmax(mx, fabs(ref[te->offset + i]));
            d = fmax(d, fabs((double)got[te->offset + i] - ref[te->offset + i]));
        }
        double e = d != d ? INFINITY : d / (mx > 1e-30 ? mx : 1.0);
        if (e > worst || e != e) { worst = e; wt = t; }
    }
    g_checks++;
    if (!(worst <= tol)) g_fail++;
    printf("%-34s %-8s %-5s %-16s err %9.2e  tol %7.1e  %s  (worst: %s)\n", name, what, dtn(dt), shape, worst, tol,
           worst <= tol ? "ok" : "MISMATCH", layout->t[wt].name);
}

/* ---- GPT-2: one step's gradients and a short training curve, GPU vs CPU --------------------------- */
static void random_batch(int32_t *tok, int32_t *tgt, int n, int V) {
    for (int i = 0; i < n; i++) {
        tok[i] = (int32_t)derf_rng_below(&g_rng, (uint32_t)V);
        tgt[i] = (int32_t)derf_rng_below(&g_rng, (uint32_t)V);
    }
}

static void check_gpt2(const char *norm, derf_dtype dt, int steps) {
    derf_gpt2_config cfg;
    char err[512], name[96];
    derf_gpt2_preset(&cfg, "mini", err, sizeof err);
    if (derf_norm_parse(norm, &cfg.norm, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(2); }
    const int B = 4, T = 64, V = cfg.vocab, n = B * T;
    derf_gpt2 cpu, host;
    if (derf_gpt2_build(&cpu, &cfg, B, T, err, sizeof err) || derf_gpt2_build(&host, &cfg, B, T, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    derf_gpt2_init(&cpu, 7);
    derf_gpt2_init(&host, 7);
    derf_gpt2_cuda *g = derf_gpt2_cuda_new(&host, dt, err, sizeof err);
    if (!g) { fprintf(stderr, "%s\n", err); exit(2); }
    int32_t *tok = malloc(sizeof(int32_t) * n), *tgt = malloc(sizeof(int32_t) * n);
    const int bf = dt == DERF_BF16;
    snprintf(name, sizeof name, "gpt2 mini %s", norm);
    /* one forward + backward: loss and every parameter gradient */
    random_batch(tok, tgt, n, V);
    derf_params_zero_grad(&cpu.params);
    derf_gpt2_cuda_zero_grad(g);
    float lc = derf_gpt2_forward(&cpu, tok, tgt, B, T), lg = derf_gpt2_cuda_forward(g, tok, tgt, B, T);
    derf_gpt2_backward(&cpu, 1.0f);
    derf_gpt2_cuda_backward(g, 1.0f);
    derf_gpt2_cuda_download(g);
    compare(name, "loss", dt, "B4 T64", &lg, &lc, 1, bf ? 1e-2 : 1e-5);
    compare_slabs(name, "grads", dt, "B4 T64", &cpu.params, cpu.params.grads, host.params.grads, bf ? 1e-1 : 1e-3);
    /* a loss scale other than 1 (gradient accumulation): the backward recomputes dlogits at that scale */
    derf_params_zero_grad(&cpu.params);
    derf_gpt2_cuda_zero_grad(g);
    derf_gpt2_forward(&cpu, tok, tgt, B, T);
    derf_gpt2_cuda_forward(g, tok, tgt, B, T);
    derf_gpt2_backward(&cpu, 0.25f);
    derf_gpt2_cuda_backward(g, 0.25f);
    derf_gpt2_cuda_download(g);
    compare_slabs(name, "grads/4", dt, "B4 T64", &cpu.params, cpu.params.grads, host.params.grads, bf ? 1e-1 : 1e-3);
    /* a short training run from the same init on the same batches: the two loss curves */
    derf_gpt2_init(&cpu, 7);
    derf_gpt2_init(&host, 7);
    memset(cpu.params.m, 0, cpu.params.total * 4); memset(cpu.params.v, 0, cpu.params.total * 4);
    memset(host.params.m, 0, host.params.total * 4); memset(host.params.v, 0, host.params.total * 4);
    derf_gpt2_cuda_upload(g);
    derf_adamw_cfg acfg = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
    double worst_rel = 0;
    for (int s = 1; s <= steps; s++) {
        random_batch(tok, tgt, n, V);
        derf_params_zero_grad(&cpu.params);
        derf_gpt2_cuda_zero_grad(g);
        lc = derf_gpt2_forward(&cpu, tok, tgt, B, T);
        lg = derf_gpt2_cuda_forward(g, tok, tgt, B, T);
        derf_gpt2_backward(&cpu, 1.0f);
        derf_gpt2_cuda_backward(g, 1.0f);
        derf_clip_grad_norm(&cpu.params, 1.0f);
        derf_gpt2_cuda_clip_grad_norm(g, 1.0f);
        derf_adamw_step(&cpu.params, &acfg, s);
        derf_gpt2_cuda_adamw_step(g, &acfg, s);
        double rel = fabs((double)lg - lc) / fabs(lc);
        worst_rel = rel > worst_rel || rel != rel ? rel : worst_rel;
        printf("CURVE %s %s step %d cpu %.6f gpu %.6f\n", norm, dtn(dt), s, lc, lg);
    }
    {
        const double tol = bf ? 3e-2 : 1e-3;
        char detail[80];
        snprintf(detail, sizeof detail, "%d AdamW steps: worst |gpu-cpu|/cpu loss %.2e (tol %.0e)", steps, worst_rel, tol);
        verdict(name, "curve", worst_rel <= tol, detail);
    }
    derf_gpt2_cuda_free(g);
    derf_gpt2_free(&cpu);
    derf_gpt2_free(&host);
    free(tok);
    free(tgt);
}

/* ---- ViT: the stem / pooling / drop-path / EMA kernels, then the whole model, GPU vs CPU ------------ */
static void check_vit_ops(derf_dtype dt) {
    const int B = 3, Cin = 2, S = 12, P = 4, D = 40, NP = (S / P) * (S / P), T = NP + 1, K = Cin * P * P;
    const size_t nimg = (size_t)B * Cin * S * S, ncol = (size_t)B * NP * K, ntd = (size_t)B * T * D;
    const double act_tol = dt == DERF_BF16 ? 8e-3 : 1e-7;
    /* im2col: CPU cols from derf_patch_embed_forward; exact (bf16: the same rounding) */
    float *img = hrand(nimg, -1.f, 1.f, dt), *w = hrand((size_t)D * K, -.1f, .1f, DERF_F32);
    float *pe = hnew((size_t)B * NP * D), *cols = hnew(ncol);
    derf_patch_embed_forward(pe, cols, img, w, NULL, B, Cin, S, S, P, D);
    float *gimg = dput(img, nimg, DERF_F32);
    void *gcols = derf_cuda_malloc(ncol * 4);
    derf_cuda_patch_cols(gcols, gimg, B, Cin, S, S, P, dt);
    float *hc = dget(gcols, ncol, dt);
    compare("vit patch_cols", "cols", dt, "3x2x12x12 P4", hc, cols, ncol, 0.0);
    /* class token + position embedding, forward and backward */
    float *gpe_in = hrand((size_t)B * NP * D, -1.f, 1.f, dt), *cls = hrand(D, -1.f, 1.f, DERF_F32);
    float *pos = hrand((size_t)T * D, -1.f, 1.f, DERF_F32), *x0 = hnew(ntd);
    for (int b = 0; b < B; b++) {
        memcpy(x0 + (size_t)b * T * D, cls, (size_t)D * 4);
        memcpy(x0 + ((size_t)b * T + 1) * D, gpe_in + (size_t)b * NP * D, (size_t)NP * D * 4);
    }
    derf_add_pos_forward(x0, pos, B, T, D);
    round_if(x0, ntd, dt);
    void *gpe = dput(gpe_in, (size_t)B * NP * D, dt), *gx0 = derf_cuda_malloc(ntd * 4);
    float *gcls = dput(cls, D, DERF_F32), *gpos = dput(pos, (size_t)T * D, DERF_F32);
    derf_cuda_vit_tokens_forward(gx0, gpe, gcls, gpos, B, T, D, dt);
    float *hx0 = dget(gx0, ntd, dt);
    compare("vit tokens", "x0", dt, "3x10x40", hx0, x0, ntd, act_tol);
    float *dx0 = hrand(ntd, -1.f, 1.f, dt), *dpos = hrand((size_t)T * D, -1.f, 1.f, DERF_F32);
    float *dcls = hrand(D, -1.f, 1.f, DERF_F32), *dpe = hnew((size_t)B * NP * D);
    float *gdpos = dput(dpos, (size_t)T * D, DERF_F32), *gdcls = dput(dcls, D, DERF_F32);
    derf_add_pos_backward(dpos, dx0, B, T, D);
    for (int b = 0; b < B; b++) {
        for (int d = 0; d < D; d++) dcls[d] += dx0[(size_t)b * T * D + d];
        memcpy(dpe + (size_t)b * NP * D, dx0 + ((size_t)b * T + 1) * D, (size_t)NP * D * 4);
    }
    void *gdx0 = dput(dx0, ntd, dt), *gdpe = derf_cuda_malloc((size_t)B * NP * D * 4);
    derf_cuda_vit_tokens_backward(gdpos, gdcls, gdpe, gdx0, B, T, D, dt);
    float *hdpos = dget(gdpos, (size_t)T * D, DERF_F32), *hdcls = dget(gdcls, D, DERF_F32);
    float *hdpe = dget(gdpe, (size_t)B * NP * D, dt);
    compare("vit tokens", "dpos+=", dt, "3x10x40", hdpos, dpos, (size_t)T * D, 2e-6);
    compare("vit tokens", "dcls+=", dt, "3x10x40", hdcls, dcls, D, 2e-6);
    compare("vit tokens", "dpe", dt, "3x10x40", hdpe, dpe, (size_t)B * NP * D, 0.0);
    /* pooling (mean of tokens 1.., or token 0) and its backward */
    for (int avg = 0; avg < 2; avg++) {
        const char *pn = avg ? "vit pool avg" : "vit pool cls";
        float *pooled = hnew((size_t)B * D), *dpool = hrand((size_t)B * D, -1.f, 1.f, dt), *dx = hnew(ntd);
        if (avg) {
            derf_mean_pool_forward(pooled, x0, B, T, 1, D);
            derf_mean_pool_backward(dx, dpool, B, T, 1, D);
        } else {
            for (int b = 0; b < B; b++) {
                memcpy(pooled + (size_t)b * D, x0 + (size_t)b * T * D, (size_t)D * 4);
                memcpy(dx + (size_t)b * T * D, dpool + (size_t)b * D, (size_t)D * 4);
            }
        }
        round_if(pooled, (size_t)B * D, dt);
        round_if(dx, ntd, dt);
        void *gpool = derf_cuda_malloc((size_t)B * D * 4), *gdpool = dput(dpool, (size_t)B * D, dt);
        void *gdx = dput(x0, ntd, dt); /* garbage the backward must overwrite */
        derf_cuda_pool_forward(gpool, gx0, B, T, D, avg, dt);
        derf_cuda_pool_backward(gdx, gdpool, B, T, D, avg, dt);
        float *hp = dget(gpool, (size_t)B * D, dt), *hdx = dget(gdx, ntd, dt);
        compare(pn, "pooled", dt, "3x10x40", hp, pooled, (size_t)B * D, avg ? (dt == DERF_BF16 ? 8e-3 : 1e-6) : 0.0);
        compare(pn, "dx", dt, "3x10x40", hdx, dx, ntd, act_tol);
        derf_cuda_free(gpool); derf_cuda_free(gdpool); derf_cuda_free(gdx);
        free(pooled); free(dpool); free(dx); free(hp); free(hdx);
    }
    /* drop-path row scaling (derf_drop_path_backward's rows) and the EMA update */
    float keep[3] = {0.0f, 1.25f, 1.0f}, *sc = hnew(ntd);
    memcpy(sc, dx0, ntd * 4);
    derf_drop_path_backward(sc, keep, B, (size_t)T * D);
    round_if(sc, ntd, dt);
    float *gkeep = dput(keep, 3, DERF_F32);
    void *gsc = derf_cuda_malloc(ntd * 4);
    derf_cuda_row_scale(gsc, gdx0, gkeep, B, (size_t)T * D, dt);
    float *hsc = dget(gsc, ntd, dt);
    compare("vit row_scale", "out", dt, "3x10x40", hsc, sc, ntd, act_tol);
    if (dt == DERF_F32) {
        float *ema = hrand(ntd, -1.f, 1.f, DERF_F32), *gema = dput(ema, ntd, DERF_F32), *gp = dput(dx0, ntd, DERF_F32);
        derf_ema_update(ema, dx0, ntd, 0.99f);
        derf_cuda_ema_update(gema, gp, ntd, 0.99f);
        float *he = dget(gema, ntd, DERF_F32);
        compare("vit ema", "ema", dt, "1200", he, ema, ntd, 1e-7);
        derf_cuda_free(gema); derf_cuda_free(gp);
        free(ema); free(he);
    }
    void *dev[] = {gimg, gcols, gpe, gx0, gcls, gpos, gdpos, gdcls, gdx0, gdpe, gkeep, gsc};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) derf_cuda_free(dev[i]);
    float *host[] = {img, w, pe, cols, hc, gpe_in, cls, pos, x0, hx0, dx0, dpos, dcls, dpe, hdpos, hdcls, hdpe, sc, hsc};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
}

/* a batch of images (bf16 runs: values already bf16, so both sides embed the same pixels) and soft
 * targets (random labels with label smoothing 0.1, as the trainer's default) */
static void vit_batch(float *img, float *q, int B, size_t npx, int V, derf_dtype dt) {
    derf_rng_fill_uniform(&g_rng, img, (size_t)B * npx, -1.f, 1.f);
    round_if(img, (size_t)B * npx, dt);
    for (int b = 0; b < B; b++) {
        const int label = (int)derf_rng_below(&g_rng, (uint32_t)V);
        for (int v = 0; v < V; v++) q[(size_t)b * V + v] = 0.1f / V + (v == label ? 0.9f : 0.f);
    }
}

/* one training forward + backward through the derf_vit entry points (the CPU, or the attached GPU) */
static float vit_fwd_bwd(derf_vit *m, const float *img, const float *q, float *dl, int B, derf_rng *r) {
    const int V = m->cfg.classes;
    derf_vit_forward(m, img, B, 1, r);
    memset(dl, 0, sizeof(float) * (size_t)B * V);
    float loss = derf_xent_soft_forward_backward(dl, m->logits, q, 1.f, B, V);
    derf_vit_zero_grad(m);
    derf_vit_backward(m, dl, B);
    return loss;
}

/* The tiny preset (28x28x1, patch 7: 17 tokens, dim 64, depth 4), B 16, from the same init and batches
 * on the CPU model and on a copy attached to the GPU (the trainer's path: derf_vit_cuda_attach and the
 * derf_vit_* hooks): one step's logits, loss and every parameter gradient; then `steps` steps of
 * clipping + AdamW + EMA on both: the loss curves, the final weights and the EMA model's logits. */
static void check_vit(const char *norm, derf_pool pool, float drop_path, derf_dtype dt, int steps) {
    derf_vit_config cfg;
    char err[512], name[96], shape[32];
    derf_vit_preset(&cfg, "tiny", err, sizeof err);
    if (derf_norm_parse(norm, &cfg.norm, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(2); }
    cfg.pool = pool;
    cfg.drop_path = drop_path;
    const int B = 16, V = cfg.classes, bf = dt == DERF_BF16;
    const size_t npx = (size_t)cfg.chans * cfg.img * cfg.img;
    derf_vit cpu, gpu;
    if (derf_vit_build(&cpu, &cfg, B, err, sizeof err) || derf_vit_build(&gpu, &cfg, B, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    derf_vit_init(&cpu, 7);
    derf_vit_init(&gpu, 7);
    const size_t n = cpu.params.total;
    float *ema_c = hnew(n), *ema_g = hnew(n);
    memcpy(ema_c, cpu.params.params, n * 4);
    memcpy(ema_g, gpu.params.params, n * 4);
    if (derf_vit_cuda_attach(&gpu, bf, ema_g, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(2); }
    float *img = hnew((size_t)B * npx), *q = hnew((size_t)B * V), *dl = hnew((size_t)B * V);
    snprintf(name, sizeof name, "vit tiny %s %s dp%.1f", norm, pool == DERF_POOL_AVG ? "avg" : "cls", (double)drop_path);
    snprintf(shape, sizeof shape, "B%d T%d", B, cpu.T);
    derf_rng rc, rg;
    derf_rng_seed(&rc, 5, 9);
    derf_rng_seed(&rg, 5, 9);
    vit_batch(img, q, B, npx, V, dt);
    float lc = vit_fwd_bwd(&cpu, img, q, dl, B, &rc);
    float *logits_c = hnew((size_t)B * V);
    memcpy(logits_c, cpu.logits, sizeof(float) * (size_t)B * V);
    float lg = vit_fwd_bwd(&gpu, img, q, dl, B, &rg);
    derf_vit_sync_host(&gpu);
    compare(name, "logits", dt, shape, gpu.logits, logits_c, (size_t)B * V, bf ? 3e-2 : 1e-4);
    compare(name, "loss", dt, shape, &lg, &lc, 1, bf ? 1e-2 : 1e-5);
    compare_slabs(name, "grads", dt, shape, &cpu.params, cpu.params.grads, gpu.params.grads, bf ? 1e-1 : 1e-3);
    /* training: clip 1, AdamW, EMA 0.9, drop path drawn from the same rng state on both */
    derf_adamw_cfg acfg = {2e-3f, 0.9f, 0.999f, 1e-8f, 0.05f};
    double worst_rel = 0;
    for (int s = 1; s <= steps; s++) {
        vit_batch(img, q, B, npx, V, dt);
        lc = vit_fwd_bwd(&cpu, img, q, dl, B, &rc);
        lg = vit_fwd_bwd(&gpu, img, q, dl, B, &rg);
        derf_vit_clip_grad_norm(&cpu, 1.0f);
        derf_vit_clip_grad_norm(&gpu, 1.0f);
        derf_vit_adamw_step(&cpu, &acfg, s);
        derf_vit_adamw_step(&gpu, &acfg, s);
        derf_vit_ema_update(&cpu, ema_c, 0.9f);
        derf_vit_ema_update(&gpu, ema_g, 0.9f);
        double rel = fabs((double)lg - lc) / fabs(lc);
        worst_rel = rel > worst_rel || rel != rel ? rel : worst_rel;
        printf("CURVE vit-%s-%s-dp%.1f %s step %d cpu %.6f gpu %.6f\n", norm, pool == DERF_POOL_AVG ? "avg" : "cls",
               (double)drop_path, dtn(dt), s, lc, lg);
    }
    {
        const double tol = bf ? 3e-2 : 1e-3;
        char detail[80];
        snprintf(detail, sizeof detail, "%d AdamW steps: worst |gpu-cpu|/cpu loss %.2e (tol %.0e)", steps, worst_rel, tol);
        verdict(name, "curve", worst_rel <= tol, detail);
    }
    /* the EMA model in evaluation mode (derf_vit_swap_ema: the GPU swaps its device buffers). Weights
     * are compared through the logits only: AdamW turns the rounding noise of gradients that are 0 in
     * exact arithmetic (the key bias) into full-size steps of either sign, which change no output. */
    float *logits_g = hnew((size_t)B * V);
    derf_vit_swap_ema(&cpu, &ema_c);
    derf_vit_swap_ema(&gpu, &ema_g);
    derf_vit_forward(&cpu, img, B, 0, NULL);
    derf_vit_forward(&gpu, img, B, 0, NULL);
    memcpy(logits_g, gpu.logits, sizeof(float) * (size_t)B * V);
    compare(name, "ema-logit", dt, shape, logits_g, cpu.logits, (size_t)B * V, bf ? 5e-2 : 1e-3);
    derf_vit_swap_ema(&cpu, &ema_c);
    derf_vit_swap_ema(&gpu, &ema_g);
    /* the EMA slab as a checkpoint saves it (downloaded), run by the CPU model: the GPU's logits */
    derf_vit_sync_host(&gpu);
    derf_vit_swap_ema(&cpu, &ema_g);
    derf_vit_forward(&cpu, img, B, 0, NULL);
    derf_vit_swap_ema(&cpu, &ema_g);
    compare(name, "ema-ckpt", dt, shape, logits_g, cpu.logits, (size_t)B * V, bf ? 3e-2 : 1e-4);
    free(logits_g);
    derf_vit_free(&cpu);
    derf_vit_free(&gpu);
    free(ema_c); free(ema_g); free(img); free(q); free(dl); free(logits_c);
}

/* ViT-S/16 training step (224x224x3, 1000 classes, B images, bf16 activations, soft targets; the
 * host-to-device copy of the images and the logits round trip included), median ms */
typedef struct { derf_vit *m; const float *img, *q; float *dl; int B, step; } vit_bench_ctx;
static void vit_step_fn(void *vc) {
    vit_bench_ctx *c = vc;
    derf_adamw_cfg acfg = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f};
    vit_fwd_bwd(c->m, c->img, c->q, c->dl, c->B, NULL);
    derf_vit_clip_grad_norm(c->m, 1.0f);
    derf_vit_adamw_step(c->m, &acfg, ++c->step);
}
static void bench_vit(const char *norm, int B, const char *tag) {
    derf_vit_config cfg;
    char err[512];
    derf_vit_preset(&cfg, "tiny", err, sizeof err);
    cfg.img = 224; cfg.chans = 3; cfg.patch = 16; cfg.dim = 384; cfg.depth = 12; cfg.heads = 6; cfg.classes = 1000;
    derf_norm_parse(norm, &cfg.norm, err, sizeof err);
    derf_vit m;
    if (derf_vit_build(&m, &cfg, B, err, sizeof err)) { fprintf(stderr, "%s\n", err); return; }
    derf_vit_init(&m, 1);
    if (derf_vit_cuda_attach(&m, 1, NULL, err, sizeof err)) { fprintf(stderr, "%s\n", err); derf_vit_free(&m); return; }
    const size_t npx = (size_t)3 * 224 * 224;
    float *img = hnew((size_t)B * npx), *q = hnew((size_t)B * 1000), *dl = hnew((size_t)B * 1000);
    vit_batch(img, q, B, npx, 1000, DERF_BF16);
    vit_bench_ctx c = {&m, img, q, dl, B, 0};
    float ms = derf_cuda_time_ms(vit_step_fn, &c, 2, 5);
    printf("BENCH vit-s16%s %s B%d 224px step %.4f ms %.0f images/s\n", tag, norm, B, ms, B / ms * 1e3);
    derf_vit_free(&m);
    free(img); free(q); free(dl);
}

typedef struct { derf_gpt2_cuda *g; const int32_t *tok, *tgt; int B, T, step; } gpt2_bench_ctx;
static void gpt2_step_fn(void *vc) {
    gpt2_bench_ctx *c = vc;
    derf_adamw_cfg acfg = {6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    derf_gpt2_cuda_zero_grad(c->g);
    derf_gpt2_cuda_forward(c->g, c->tok, c->tgt, c->B, c->T);
    derf_gpt2_cuda_backward(c->g, 1.0f);
    derf_gpt2_cuda_clip_grad_norm(c->g, 1.0f);
    derf_gpt2_cuda_adamw_step(c->g, &acfg, ++c->step);
}
/* GPT-2 124M training step (bf16 activations), median ms */
static void bench_gpt2(const char *norm, int B, int T, const char *tag) {
    derf_gpt2_config cfg;
    char err[512];
    derf_gpt2_preset(&cfg, "124m", err, sizeof err);
    derf_norm_parse(norm, &cfg.norm, err, sizeof err);
    derf_gpt2 host;
    if (derf_gpt2_build(&host, &cfg, B, T, err, sizeof err)) { fprintf(stderr, "%s\n", err); return; }
    derf_gpt2_init(&host, 1);
    derf_gpt2_cuda *g = derf_gpt2_cuda_new(&host, DERF_BF16, err, sizeof err);
    if (!g) { fprintf(stderr, "%s\n", err); derf_gpt2_free(&host); return; }
    int32_t *tok = malloc(sizeof(int32_t) * B * T), *tgt = malloc(sizeof(int32_t) * B * T);
    random_batch(tok, tgt, B * T, 50257);
    gpt2_bench_ctx c = {g, tok, tgt, B, T, 0};
    float ms = derf_cuda_time_ms(gpt2_step_fn, &c, 2, 5);
    printf("BENCH gpt2%s %s B%d T%d step %.4f ms %.0f tokens/s\n", tag, norm, B, T, ms, B * T / ms * 1e3);
    derf_gpt2_cuda_free(g);
    derf_gpt2_free(&host);
    free(tok);
    free(tgt);
}

/* ---- benchmark ---------------------------------------------------------------------------------- */
typedef struct {
    derf_norm_spec s;
    void *x, *y, *dy, *dx;
    float *p, *dp, *st;
    int N, C, mode; /* 0 fwd, 1 bwd, 2 fwd+bwd */
    derf_dtype dt;
} bench_ctx;
static void bench_fn(void *vc) {
    bench_ctx *c = vc;
    if (c->mode != 1) derf_cuda_norm_forward(&c->s, c->y, c->st, c->x, c->p, c->N, c->C, c->dt);
    if (c->mode != 0) derf_cuda_norm_backward(&c->s, c->dx, c->dp, c->dy, c->x, c->p, c->st, c->N, c->C, c->dt, 0);
}
static void bench_norm(const char *spec, int N, int C, derf_dtype dt) {
    bench_ctx c;
    char err[256];
    memset(&c, 0, sizeof c);
    derf_norm_parse(spec, &c.s, err, sizeof err);
    c.N = N; c.C = C; c.dt = dt;
    const size_t n = (size_t)N * C, es = derf_dtype_size(dt), np = derf_norm_param_count(&c.s, C);
    float *hx = hrand(n, -3.f, 3.f, DERF_F32), *hp = hnew(np);
    derf_norm_init(&c.s, C, hp);
    c.x = dput(hx, n, dt); c.dy = dput(hx, n, dt);
    c.y = derf_cuda_malloc(n * es); c.dx = derf_cuda_malloc(n * es);
    c.p = dput(hp, np, DERF_F32); c.dp = derf_cuda_malloc(np * sizeof(float));
    c.st = derf_cuda_malloc((derf_norm_stats_count(&c.s, N) + 1) * sizeof(float));
    const char *modes[3] = {"fwd", "bwd", "fwd+bwd"};
    for (c.mode = 0; c.mode < 3; c.mode++) {
        float ms = derf_cuda_time_ms(bench_fn, &c, 10, 50);
        /* bytes moved: fwd reads x writes y; bwd reads x, dy writes dx */
        double bytes = (double)n * es * (c.mode == 0 ? 2 : c.mode == 1 ? 3 : 5);
        printf("BENCH norm %s %s %dx%d %s %.4f ms %.0f GB/s\n", spec, dtn(dt), N, C, modes[c.mode], ms, bytes / ms / 1e6);
    }
    derf_cuda_free(c.x); derf_cuda_free(c.dy); derf_cuda_free(c.y); derf_cuda_free(c.dx);
    derf_cuda_free(c.p); derf_cuda_free(c.dp); derf_cuda_free(c.st);
    free(hx); free(hp);
}

/* the sections (tools/gpu_check.sh runs each as its own process, so one crash loses one section) */
static const char *const SECTIONS[] = {"norms", "ops", "linear", "gpt2", "vit"};
enum { NSECTIONS = sizeof SECTIONS / sizeof *SECTIONS };

static void run_checks(int sec) {
    for (int d = 0; d < 2; d++) {
        derf_dtype dt = d ? DERF_BF16 : DERF_F32;
        if (sec == 0) {
            /* every base function of the registry, vectorised path */
            for (int f = 0; f < DERF_FN_COUNT; f++) check_norm(derf_fn_get((derf_fn_id)f)->name, 256, 768, dt, 0);
            /* options, transforms, generic path (C not a multiple of 8), accumulation into dx */
            const char *specs[] = {"derf:shift=channel", "dyt", "erf:noaffine", "erf:nobias",
                                   "erf+hshift=0.5+clip=0.8", "tanh+mix=0.3", "erf+flat=1:noshift",
                                   "neg(erf)+vshift=0.2", "isru+flat=0.5+neg:shift=channel", "layernorm", "rmsnorm",
                                   "rmsnorm:bias", "layernorm:noaffine"};
            for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) check_norm(specs[i], 200, 384, dt, 0);
            check_norm("derf", 300, 100, dt, 1);
            check_norm("derf:shift=channel", 77, 36, dt, 1);
            check_norm("layernorm", 300, 100, dt, 1);
            check_norm("rmsnorm", 64, 1000, dt, 1);
            check_clip_masks(dt);
            check_norm_deterministic("derf", 4096, 768, dt);
            check_norm_deterministic("layernorm", 4096, 768, dt);
        } else if (sec == 1) {
            check_gelu(DERF_GELU_TANH, dt);
            check_gelu(DERF_GELU_ERF, dt);
            check_embed(dt);
            check_xent(dt, 0.0f);
            check_xent(dt, 0.1f);
            if (d == 0) check_adamw();
        } else if (sec == 2) {
            check_linear(dt, 256, 192, 384);
            check_linear(dt, 3000, 64, 200);
            check_attention(dt, 1);
            check_attention(dt, 0);
            /* the per-batch-row path the batched products replaced (DERF_CUDA_ATT_LOOP=1) */
            setenv("DERF_CUDA_ATT_LOOP", "1", 1);
            check_attention(dt, 1);
            unsetenv("DERF_CUDA_ATT_LOOP");
        } else if (sec == 3) {
            check_gpt2("derf", dt, 20);
            check_gpt2("layernorm", dt, 20);
        } else if (sec == 4) {
            check_vit_ops(dt);
            if (d == 0) {
                check_vit("derf", DERF_POOL_AVG, 0.0f, DERF_F32, 20);
                check_vit("layernorm", DERF_POOL_CLS, 0.2f, DERF_F32, 20);
            } else {
                check_vit("derf", DERF_POOL_AVG, 0.2f, DERF_BF16, 20);
                check_vit("layernorm", DERF_POOL_AVG, 0.0f, DERF_BF16, 20);
            }
        }
    }
}

static void run_bench(int sec, int rows, int cols) {
    if (sec == 0) {
        const char *specs[] = {"derf", "dyt", "layernorm", "rmsnorm"};
        for (size_t i = 0; i < 4; i++) {
            bench_norm(specs[i], rows, cols, DERF_BF16);
            bench_norm(specs[i], rows, cols, DERF_F32);
        }
    } else if (sec == 3) {
        bench_gpt2("derf", 16, 1024, "");
        bench_gpt2("layernorm", 16, 1024, "");
        /* the attention products as one call per batch row (the path before the B x heads batching) */
        setenv("DERF_CUDA_ATT_LOOP", "1", 1);
        bench_gpt2("derf", 16, 1024, "-attloop");
        unsetenv("DERF_CUDA_ATT_LOOP");
    } else if (sec == 4) {
        bench_vit("derf", 128, "");
        bench_vit("layernorm", 128, "");
        setenv("DERF_CUDA_ATT_LOOP", "1", 1);
        bench_vit("derf", 128, "-attloop");
        unsetenv("DERF_CUDA_ATT_LOOP");
    }
}

int main(int argc, char **argv) {
    int bench = 0, check = 1, rows = 16384, cols = 768, only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bench")) bench = 1;
        else if (!strcmp(argv[i], "--no-check")) check = 0;
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc) cols = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--section") && i + 1 < argc) {
            const char *v = argv[++i];
            for (int k = 0; k < NSECTIONS; k++)
                if (!strcmp(v, SECTIONS[k])) only = k;
            if (only < 0) {
                fprintf(stderr, "cuda_check: unknown section '%s' (norms, ops, linear, gpt2 or vit)\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: cuda_check [--section norms|ops|linear|gpt2|vit] [--bench] [--no-check] "
                            "[--rows N] [--cols C]\n");
            return 2;
        }
    }
    if (rows <= 0 || cols <= 0) { fprintf(stderr, "cuda_check: --rows and --cols must be positive\n"); return 2; }
    char err[512];
    if (derf_cuda_init(err, sizeof err)) {
        printf("cuda_check: %s; GPU run pending\n", err);
        return 77;
    }
    const char *card = derf_cuda_device_name();
    printf("cuda_check: %s\n", card);
    derf_rng_seed(&g_rng, tu_seed(), 11);
    if (check) {
        printf("%-34s %-8s %-5s %-16s %-9s %-7s\n", "kernel", "output", "dtype", "shape", "err/max|ref|", "tol");
        for (int k = 0; k < NSECTIONS; k++) {
            if (only >= 0 && k != only) continue;
            const int c0 = g_checks, f0 = g_fail;
            run_checks(k);
            printf("cuda_check: section %s on %s: %d checks, %d mismatches: %s\n", SECTIONS[k], card, g_checks - c0,
                   g_fail - f0, g_fail > f0 ? "FAIL" : "pass");
            fflush(stdout);
        }
        printf("cuda_check: %d checks, %d mismatches\n", g_checks, g_fail);
    }
    if (bench)
        for (int k = 0; k < NSECTIONS; k++)
            if (only < 0 || k == only) run_bench(k, rows, cols);
    return g_fail ? 1 : 0;
}
