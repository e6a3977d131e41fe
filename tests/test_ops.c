/* test_ops.c: every CPU reference op in src/ops against an independent naive double-precision
 * implementation written here (forward), and every gradient against central finite differences of
 * that double reference under a random projection loss L = sum(out * r), so dL/dout = r.
 * Gradients are pre-filled with PREFILL to check that backward ADDS. Dropout and drop path get
 * statistical, determinism and mask-backward checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "derf/ops.h"
#include "testutil.h"

#define PREFILL 0.375f
#define FWD_ATOL 2e-6
#define FWD_RTOL 2e-5
#define GRAD_ATOL 5e-5
#define GRAD_RTOL 5e-4
#define FD_H 1e-6

/* ---------------------------------------------------------------- helpers */

static uint64_t g_seed;
static int setup(void **state) { (void)state; g_seed = tu_seed(); return 0; }

static float *fnew(size_t n, double lo, double hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    tu_fill(x, n, &g_seed, lo, hi);
    return x;
}
static float *ffill(size_t n, float v) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = v;
    return x;
}
static double *dof(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x ? x[i] : 0.0;
    return d;
}
static double *dnew(size_t n) { return calloc(n ? n : 1, sizeof(double)); }
static double ddot(const double *a, const double *b, size_t n) {
    double s = 0; for (size_t i = 0; i < n; i++) s += a[i] * b[i]; return s;
}

typedef double (*loss_fn)(void *ctx);
/* g[i] = (L(x + h e_i) - L(x - h e_i)) / 2h, x being an array the loss reads through ctx. */
static void fd_grad(loss_fn f, void *ctx, double *x, size_t n, double *g) {
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        x[i] = xi + FD_H; double lp = f(ctx);
        x[i] = xi - FD_H; double lm = f(ctx);
        x[i] = xi;
        g[i] = (lp - lm) / (2 * FD_H);
    }
}
/* analytic float grad (pre-filled with PREFILL) vs PREFILL + finite differences */
static int grad_close(const char *what, const float *got, const double *fd, size_t n) {
    double *want = malloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++) want[i] = PREFILL + fd[i];
    int ok = tu_close(what, got, want, n, GRAD_ATOL, GRAD_RTOL);
    free(want);
    return ok;
}
/* finite-difference check of one input/parameter array: x is the double copy the loss reads */
static int fd_check(const char *what, loss_fn f, void *ctx, double *x, size_t n, const float *got) {
    double *g = dnew(n);
    fd_grad(f, ctx, x, n, g);
    int ok = grad_close(what, got, g, n);
    free(g);
    return ok;
}

/* ---------------------------------------------------------------- linear */

typedef struct { int N, C, OC; double *inp, *w, *b, *r, *out; } lin_ctx;
static void ref_linear(double *out, const double *inp, const double *w, const double *b, int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++) s += inp[n * C + c] * w[o * C + c];
            out[n * OC + o] = s;
        }
}
static double lin_loss(void *p) {
    lin_ctx *x = p;
    ref_linear(x->out, x->inp, x->w, x->b, x->N, x->C, x->OC);
    return ddot(x->out, x->r, (size_t)x->N * x->OC);
}
static void run_linear(int N, int C, int OC, int bias) {
    float *inp = fnew((size_t)N * C, -1, 1), *w = fnew((size_t)OC * C, -1, 1);
    float *b = bias ? fnew(OC, -1, 1) : NULL, *r = fnew((size_t)N * OC, -1, 1);
    float *out = fnew((size_t)N * OC, -9, 9);
    lin_ctx x = { N, C, OC, dof(inp, (size_t)N * C), dof(w, (size_t)OC * C), bias ? dof(b, OC) : NULL,
                  dof(r, (size_t)N * OC), dnew((size_t)N * OC) };
    derf_linear_forward(out, inp, w, b, N, C, OC);
    lin_loss(&x);
    assert_true(tu_close("linear out", out, x.out, (size_t)N * OC, FWD_ATOL, FWD_RTOL));

    float *dinp = ffill((size_t)N * C, PREFILL), *dw = ffill((size_t)OC * C, PREFILL), *db = ffill(OC, PREFILL);
    derf_linear_backward(dinp, dw, bias ? db : NULL, r, inp, w, N, C, OC);
    assert_true(fd_check("linear dinp", lin_loss, &x, x.inp, (size_t)N * C, dinp));
    assert_true(fd_check("linear dw", lin_loss, &x, x.w, (size_t)OC * C, dw));
    if (bias) assert_true(fd_check("linear db", lin_loss, &x, x.b, OC, db));
    else for (int o = 0; o < OC; o++) assert_true(db[o] == PREFILL);
    /* NULL gradients are skipped */
    derf_linear_backward(NULL, NULL, NULL, r, inp, w, N, C, OC);
    float *dw2 = ffill((size_t)OC * C, PREFILL);
    derf_linear_backward(NULL, dw2, NULL, r, inp, w, N, C, OC);
    assert_memory_equal(dw, dw2, (size_t)OC * C * sizeof(float));
    /* _set overwrites dinp (prefilled with garbage, NaN included) and still adds into dw, db */
    float *dinp3 = ffill((size_t)N * C, 1e30f), *dw3 = ffill((size_t)OC * C, PREFILL), *db3 = ffill(OC, PREFILL);
    dinp3[0] = NAN;
    derf_linear_backward_set(dinp3, dw3, bias ? db3 : NULL, r, inp, w, N, C, OC);
    for (size_t i = 0; i < (size_t)N * C; i++) dinp3[i] += PREFILL;
    assert_true(fd_check("linear_set dinp", lin_loss, &x, x.inp, (size_t)N * C, dinp3));
    assert_true(fd_check("linear_set dw", lin_loss, &x, x.w, (size_t)OC * C, dw3));
    if (bias) assert_true(fd_check("linear_set db", lin_loss, &x, x.b, OC, db3));
    free(dinp3); free(dw3); free(db3);
    free(inp); free(w); free(b); free(r); free(out); free(dinp); free(dw); free(db); free(dw2);
    free(x.inp); free(x.w); free(x.b); free(x.r); free(x.out);
}
static void test_linear(void **state) {
    (void)state;
    run_linear(10, 8, 5, 1);
    run_linear(10, 8, 5, 0);
    run_linear(3, 17, 13, 1);
}

/* ---------------------------------------------------------------- gelu */

typedef struct { size_t n; int kind; double *inp, *r, *out; } gelu_ctx;
static double ref_gelu1(double x, int kind) {
    if (kind == DERF_GELU_TANH)
        return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}
static double gelu_loss(void *p) {
    gelu_ctx *x = p;
    for (size_t i = 0; i < x->n; i++) x->out[i] = ref_gelu1(x->inp[i], x->kind);
    return ddot(x->out, x->r, x->n);
}
static void run_gelu(derf_gelu_kind kind) {
    const size_t n = 97;
    float *inp = fnew(n, -5, 5), *r = fnew(n, -1, 1), *out = fnew(n, -9, 9), *dinp = ffill(n, PREFILL);
    inp[0] = 0.0f; inp[1] = -3.0f; inp[2] = 2.5f;
    gelu_ctx x = { n, kind, dof(inp, n), dof(r, n), dnew(n) };
    derf_gelu_forward(out, inp, n, kind);
    gelu_loss(&x);
    assert_true(tu_close(kind == DERF_GELU_TANH ? "gelu tanh out" : "gelu erf out", out, x.out, n, FWD_ATOL, FWD_RTOL));
    derf_gelu_backward(dinp, r, inp, n, kind);
    assert_true(fd_check(kind == DERF_GELU_TANH ? "gelu tanh dinp" : "gelu erf dinp", gelu_loss, &x, x.inp, n, dinp));
    free(inp); free(r); free(out); free(dinp); free(x.inp); free(x.r); free(x.out);
}
static void test_gelu(void **state) {
    (void)state;
    run_gelu(DERF_GELU_TANH);
    run_gelu(DERF_GELU_ERF);
    /* the two kinds really differ (and the tanh form is the GPT-2 one: gelu_new(1) = 0.841192) */
    float one = 1.0f, a, b;
    derf_gelu_forward(&a, &one, 1, DERF_GELU_TANH);
    derf_gelu_forward(&b, &one, 1, DERF_GELU_ERF);
    assert_true(fabs(a - 0.8411920) < 1e-6);
    assert_true(fabs(b - 0.8413447) < 1e-6);
}

/* ---------------------------------------------------------------- attention */

typedef struct { int B, T, C, NH, causal; double *qkv, *r, *out, *att; } att_ctx;
static void ref_attention(double *out, double *att, const double *qkv, int B, int T, int C, int NH, int causal) {
    int hs = C / NH;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + ((size_t)(b * T + t) * 3 * C) + h * hs;
                double *a = att + (((size_t)(b * NH + h) * T) + t) * T;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s < T; s++) {
                    if (causal && s > t) { a[s] = -INFINITY; continue; }
                    const double *k = qkv + ((size_t)(b * T + s) * 3 * C) + C + h * hs;
                    double d = 0;
                    for (int i = 0; i < hs; i++) d += q[i] * k[i];
                    a[s] = d * scale;
                    if (a[s] > mx) mx = a[s];
                }
                for (int s = 0; s < T; s++) { a[s] = exp(a[s] - mx); sum += a[s]; }
                for (int s = 0; s < T; s++) a[s] /= sum;
                double *o = out + (size_t)(b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) {
                    double acc = 0;
                    for (int s = 0; s < T; s++) acc += a[s] * qkv[((size_t)(b * T + s) * 3 * C) + 2 * C + h * hs + i];
                    o[i] = acc;
                }
            }
}
static double att_loss(void *p) {
    att_ctx *x = p;
    ref_attention(x->out, x->att, x->qkv, x->B, x->T, x->C, x->NH, x->causal);
    return ddot(x->out, x->r, (size_t)x->B * x->T * x->C);
}
static void run_attention(int B, int T, int C, int NH, int causal) {
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * NH * T * T;
    float *qkv = fnew(nq, -1.5, 1.5), *r = fnew(no, -1, 1), *out = fnew(no, -9, 9), *att = fnew(na, -9, 9);
    float *scratch = fnew(na, -9, 9), *dqkv = ffill(nq, PREFILL);
    att_ctx x = { B, T, C, NH, causal, dof(qkv, nq), dof(r, no), dnew(no), dnew(na) };
    derf_attention_forward(out, att, qkv, B, T, C, NH, causal);
    att_loss(&x);
    assert_true(tu_close("attention out", out, x.out, no, FWD_ATOL, FWD_RTOL));
    assert_true(tu_close("attention att", att, x.att, na, FWD_ATOL, FWD_RTOL));
    if (causal) /* exactly zero above the diagonal */
        for (size_t bh = 0; bh < (size_t)B * NH; bh++)
            for (int t = 0; t < T; t++)
                for (int s = t + 1; s < T; s++) assert_true(att[(bh * T + t) * T + s] == 0.0f);
    derf_attention_backward(dqkv, scratch, r, qkv, att, B, T, C, NH, causal);
    assert_true(fd_check(causal ? "attention dqkv (causal)" : "attention dqkv (bidir)", att_loss, &x, x.qkv, nq, dqkv));
    free(qkv); free(r); free(out); free(att); free(scratch); free(dqkv);
    free(x.qkv); free(x.r); free(x.out); free(x.att);
}
static void test_attention_causal(void **state) {
    (void)state;
    run_attention(2, 5, 8, 2, 1);
    run_attention(1, 9, 12, 3, 1);
    run_attention(1, 1, 4, 1, 1);
}
static void test_attention_bidirectional(void **state) {
    (void)state;
    run_attention(2, 5, 8, 2, 0);
    run_attention(1, 9, 12, 3, 0);
}

/* ---------------------------------------------------------------- embed, add_pos, mean_pool */

typedef struct { int B, T, C, V; const int32_t *tok; double *wte, *wpe, *r, *out; } emb_ctx;
static double emb_loss(void *p) {
    emb_ctx *x = p;
    for (int b = 0; b < x->B; b++)
        for (int t = 0; t < x->T; t++)
            for (int c = 0; c < x->C; c++)
                x->out[(b * x->T + t) * x->C + c] = x->wte[x->tok[b * x->T + t] * x->C + c]
                                                    + (x->wpe ? x->wpe[t * x->C + c] : 0.0);
    return ddot(x->out, x->r, (size_t)x->B * x->T * x->C);
}
static void run_embed(int with_pos) {
    const int B = 2, T = 5, C = 8, V = 7;
    size_t no = (size_t)B * T * C;
    int32_t tok[10];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(tu_uniform(&g_seed) * V);
    tok[3] = tok[0]; tok[7] = tok[0]; /* repeated tokens must accumulate */
    float *wte = fnew((size_t)V * C, -1, 1), *wpe = with_pos ? fnew((size_t)T * C, -1, 1) : NULL;
    float *r = fnew(no, -1, 1), *out = fnew(no, -9, 9);
    float *dwte = ffill((size_t)V * C, PREFILL), *dwpe = ffill((size_t)T * C, PREFILL);
    emb_ctx x = { B, T, C, V, tok, dof(wte, (size_t)V * C), with_pos ? dof(wpe, (size_t)T * C) : NULL,
                  dof(r, no), dnew(no) };
    derf_embed_forward(out, tok, wte, wpe, B, T, C);
    emb_loss(&x);
    assert_true(tu_close("embed out", out, x.out, no, FWD_ATOL, FWD_RTOL));
    derf_embed_backward(dwte, with_pos ? dwpe : NULL, r, tok, B, T, C);
    assert_true(fd_check("embed dwte", emb_loss, &x, x.wte, (size_t)V * C, dwte));
    if (with_pos) assert_true(fd_check("embed dwpe", emb_loss, &x, x.wpe, (size_t)T * C, dwpe));
    free(wte); free(wpe); free(r); free(out); free(dwte); free(dwpe);
    free(x.wte); free(x.wpe); free(x.r); free(x.out);
}
static void test_embed(void **state) { (void)state; run_embed(1); run_embed(0); }

typedef struct { int B, T, C; double *x, *pos, *r, *out; } pos_ctx;
static double pos_loss(void *p) {
    pos_ctx *x = p;
    for (int b = 0; b < x->B; b++)
        for (int t = 0; t < x->T; t++)
            for (int c = 0; c < x->C; c++) {
                size_t i = ((size_t)b * x->T + t) * x->C + c;
                x->out[i] = x->x[i] + x->pos[t * x->C + c];
            }
    return ddot(x->out, x->r, (size_t)x->B * x->T * x->C);
}
static void test_add_pos(void **state) {
    (void)state;
    const int B = 3, T = 5, C = 8;
    size_t n = (size_t)B * T * C;
    float *xf = fnew(n, -1, 1), *pos = fnew((size_t)T * C, -1, 1), *r = fnew(n, -1, 1);
    float *dpos = ffill((size_t)T * C, PREFILL);
    pos_ctx x = { B, T, C, dof(xf, n), dof(pos, (size_t)T * C), dof(r, n), dnew(n) };
    derf_add_pos_forward(xf, pos, B, T, C);
    pos_loss(&x);
    assert_true(tu_close("add_pos out", xf, x.out, n, FWD_ATOL, FWD_RTOL));
    derf_add_pos_backward(dpos, r, B, T, C);
    assert_true(fd_check("add_pos dpos", pos_loss, &x, x.pos, (size_t)T * C, dpos));
    free(xf); free(pos); free(r); free(dpos); free(x.x); free(x.pos); free(x.r); free(x.out);
}

typedef struct { int B, T, T0, C; double *x, *r, *out; } pool_ctx;
static double pool_loss(void *p) {
    pool_ctx *x = p;
    for (int b = 0; b < x->B; b++)
        for (int c = 0; c < x->C; c++) {
            double s = 0;
            for (int t = x->T0; t < x->T; t++) s += x->x[((size_t)b * x->T + t) * x->C + c];
            x->out[b * x->C + c] = s / (x->T - x->T0);
        }
    return ddot(x->out, x->r, (size_t)x->B * x->C);
}
static void run_mean_pool(int T0) {
    const int B = 2, T = 5, C = 8;
    size_t n = (size_t)B * T * C;
    float *xf = fnew(n, -1, 1), *r = fnew((size_t)B * C, -1, 1), *out = fnew((size_t)B * C, -9, 9);
    float *dx = ffill(n, PREFILL);
    pool_ctx x = { B, T, T0, C, dof(xf, n), dof(r, (size_t)B * C), dnew((size_t)B * C) };
    derf_mean_pool_forward(out, xf, B, T, T0, C);
    pool_loss(&x);
    assert_true(tu_close("mean_pool out", out, x.out, (size_t)B * C, FWD_ATOL, FWD_RTOL));
    derf_mean_pool_backward(dx, r, B, T, T0, C);
    assert_true(fd_check("mean_pool dx", pool_loss, &x, x.x, n, dx)); /* skipped tokens: FD 0 -> PREFILL */
    free(xf); free(r); free(out); free(dx); free(x.x); free(x.r); free(x.out);
}
static void test_mean_pool(void **state) { (void)state; run_mean_pool(0); run_mean_pool(1); }

/* ---------------------------------------------------------------- patch_embed */

typedef struct { int B, Cin, H, W, P, D; double *img, *w, *b, *r, *out; } pe_ctx;
/* direct convolution, kernel = stride = P: no im2col */
static double pe_loss(void *p) {
    pe_ctx *x = p;
    int GH = x->H / x->P, GW = x->W / x->P, P = x->P;
    for (int b = 0; b < x->B; b++)
        for (int py = 0; py < GH; py++)
            for (int px = 0; px < GW; px++)
                for (int d = 0; d < x->D; d++) {
                    double s = x->b[d];
                    for (int ci = 0; ci < x->Cin; ci++)
                        for (int ky = 0; ky < P; ky++)
                            for (int kx = 0; kx < P; kx++)
                                s += x->w[((d * x->Cin + ci) * P + ky) * P + kx]
                                   * x->img[((b * x->Cin + ci) * x->H + py * P + ky) * x->W + px * P + kx];
                    x->out[((size_t)b * GH * GW + py * GW + px) * x->D + d] = s;
                }
    return ddot(x->out, x->r, (size_t)x->B * GH * GW * x->D);
}
static void run_patch_embed(int B, int Cin, int H, int W, int P, int D) {
    int NP = (H / P) * (W / P), K = Cin * P * P;
    size_t ni = (size_t)B * Cin * H * W, nw = (size_t)D * K, no = (size_t)B * NP * D;
    float *img = fnew(ni, -1, 1), *w = fnew(nw, -0.5, 0.5), *b = fnew(D, -1, 1), *r = fnew(no, -1, 1);
    float *out = fnew(no, -9, 9), *cols = fnew((size_t)B * NP * K, -9, 9);
    float *dw = ffill(nw, PREFILL), *db = ffill(D, PREFILL);
    pe_ctx x = { B, Cin, H, W, P, D, dof(img, ni), dof(w, nw), dof(b, D), dof(r, no), dnew(no) };
    derf_patch_embed_forward(out, cols, img, w, b, B, Cin, H, W, P, D);
    pe_loss(&x);
    assert_true(tu_close("patch_embed out", out, x.out, no, FWD_ATOL, FWD_RTOL));
    derf_patch_embed_backward(dw, db, r, cols, B, Cin, H, W, P, D);
    assert_true(fd_check("patch_embed dw", pe_loss, &x, x.w, nw, dw));
    assert_true(fd_check("patch_embed db", pe_loss, &x, x.b, D, db));
    free(img); free(w); free(b); free(r); free(out); free(cols); free(dw); free(db);
    free(x.img); free(x.w); free(x.b); free(x.r); free(x.out);
}
static void test_patch_embed(void **state) {
    (void)state;
    run_patch_embed(2, 3, 8, 8, 4, 5);
    run_patch_embed(1, 2, 6, 9, 3, 4);   /* non-square grid 2 x 3 */
}

/* ---------------------------------------------------------------- cross-entropy */

typedef struct { int N, V; const int32_t *tgt; double eps, scale; double *logits, *q; } xent_ctx;
/* mean over kept rows of -sum_v q_v log softmax(x)_v, times scale; q from tgt/eps or given */
static double xent_loss(void *p) {
    xent_ctx *x = p;
    double total = 0; int kept = 0;
    for (int n = 0; n < x->N; n++) {
        if (x->tgt && x->tgt[n] < 0) continue;
        const double *l = x->logits + (size_t)n * x->V;
        double mx = l[0], s = 0;
        for (int v = 1; v < x->V; v++) if (l[v] > mx) mx = l[v];
        for (int v = 0; v < x->V; v++) s += exp(l[v] - mx);
        for (int v = 0; v < x->V; v++) {
            double q = x->tgt ? (v == x->tgt[n] ? 1 - x->eps : 0) + x->eps / x->V : x->q[(size_t)n * x->V + v];
            total -= q * (l[v] - mx - log(s));
        }
        kept++;
    }
    return kept ? x->scale * total / kept : 0.0;
}
static void run_xent_v(float smoothing, float scale, int with_ignored, int V) {
    const int N = 6;
    int32_t tgt[6];
    for (int n = 0; n < N; n++) tgt[n] = (int32_t)(tu_uniform(&g_seed) * V);
    tgt[1] = V - 1; tgt[5] = 0;
    if (with_ignored) { tgt[2] = -1; tgt[4] = -100; }
    float *logits = fnew((size_t)N * V, -3, 3), *dl = ffill((size_t)N * V, PREFILL);
    xent_ctx x = { N, V, tgt, smoothing, scale, dof(logits, (size_t)N * V), NULL };
    float loss = derf_xent_forward_backward(dl, logits, tgt, smoothing, scale, N, V);
    double want = xent_loss(&x) / scale;
    assert_true(fabs(loss - want) <= 1e-6 + 1e-5 * fabs(want));
    assert_true(fd_check("xent dlogits", xent_loss, &x, x.logits, (size_t)N * V, dl));
    /* NULL dlogits: same loss; shifting every row's logits by +100 leaves the loss unchanged */
    assert_true(derf_xent_forward_backward(NULL, logits, tgt, smoothing, scale, N, V) == loss);
    for (int i = 0; i < N * V; i++) logits[i] += 100.0f;
    float shifted = derf_xent_forward_backward(NULL, logits, tgt, smoothing, scale, N, V);
    assert_true(isfinite(shifted) && fabs(shifted - want) <= 1e-4 * (1 + fabs(want)));
    free(logits); free(dl); free(x.logits);
}
static void run_xent(float smoothing, float scale, int with_ignored) { run_xent_v(smoothing, scale, with_ignored, 7); }
static void test_xent_hard(void **state) {
    (void)state;
    run_xent(0.0f, 1.0f, 0);
    run_xent(0.1f, 1.0f, 0);
    run_xent(0.0f, 0.5f, 1);
    run_xent(0.1f, 2.0f, 1);
}
/* The 16-lane path: widths with whole vectors and a tail (finite differences), and GPT-2's vocabulary
 * against the closed form dlogits = scale * (softmax - q) / kept computed in double here. */
static void test_xent_wide(void **state) {
    (void)state;
    run_xent_v(0.0f, 1.0f, 0, 48);
    run_xent_v(0.1f, 2.0f, 1, 53);
    const int N = 3, V = 50304;
    int32_t tgt[3] = { 7, V - 1, 31000 };
    float *logits = fnew((size_t)N * V, -12, 12), *dl = ffill((size_t)N * V, PREFILL);
    const double eps = 0.1, scale = 1.5;
    float loss = derf_xent_forward_backward(dl, logits, tgt, (float)eps, (float)scale, N, V);
    double total = 0, err = 0;
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * V;
        double mx = l[0], s = 0, qx = 0;
        for (int v = 1; v < V; v++) if (l[v] > mx) mx = l[v];
        for (int v = 0; v < V; v++) s += exp(l[v] - mx);
        for (int v = 0; v < V; v++) {
            double q = (v == tgt[n] ? 1 - eps : 0) + eps / V, p = exp(l[v] - mx) / s;
            qx += q * l[v];
            double want = PREFILL + scale * (p - q) / N, e = fabs(dl[(size_t)n * V + v] - want);
            err = e > err ? e : err;
        }
        total += mx + log(s) - qx;
    }
    assert_true(fabs(loss - total / N) <= 1e-5 * (1 + fabs(total / N)));
    assert_true(err <= 1e-7);
    free(logits); free(dl);
}
static void test_xent_all_ignored(void **state) {
    (void)state;
    int32_t tgt[3] = { -1, -1, -5 };
    float logits[6] = { 1, 2, 3, 4, 5, 6 }, dl[6] = { 1, 1, 1, 1, 1, 1 };
    assert_true(derf_xent_forward_backward(dl, logits, tgt, 0.1f, 1.0f, 3, 2) == 0.0f);
    for (int i = 0; i < 6; i++) assert_true(dl[i] == 1.0f);
}
static void test_xent_soft(void **state) {
    (void)state;
    const int N = 5, V = 6;
    float *logits = fnew((size_t)N * V, -3, 3), *q = fnew((size_t)N * V, 0.01, 1), *dl = ffill((size_t)N * V, PREFILL);
    for (int n = 0; n < N; n++) {
        float s = 0; for (int v = 0; v < V; v++) s += q[n * V + v];
        for (int v = 0; v < V; v++) q[n * V + v] /= s;
    }
    const float scale = 0.75f;
    xent_ctx x = { N, V, NULL, 0, scale, dof(logits, (size_t)N * V), dof(q, (size_t)N * V) };
    float loss = derf_xent_soft_forward_backward(dl, logits, q, scale, N, V);
    double want = xent_loss(&x) / scale;
    assert_true(fabs(loss - want) <= 1e-6 + 1e-5 * fabs(want));
    assert_true(fd_check("xent soft dlogits", xent_loss, &x, x.logits, (size_t)N * V, dl));
    /* one-hot soft targets == hard targets */
    int32_t tgt[5];
    for (int n = 0; n < N; n++) {
        tgt[n] = n % V;
        for (int v = 0; v < V; v++) q[n * V + v] = v == tgt[n] ? 1.0f : 0.0f;
    }
    float a = derf_xent_soft_forward_backward(NULL, logits, q, 1, N, V);
    float b = derf_xent_forward_backward(NULL, logits, tgt, 0, 1, N, V);
    assert_true(fabs(a - b) <= 1e-6 * (1 + fabs(b)));
    free(logits); free(q); free(dl); free(x.logits); free(x.q);
}

/* ---------------------------------------------------------------- dropout, drop path, residual */

static void test_dropout(void **state) {
    (void)state;
    const size_t n = 200000;
    const float p = 0.3f;
    float *inp = fnew(n, -1, 1), *out = malloc(n * sizeof(float)), *mask = malloc(n * sizeof(float));
    float *out2 = malloc(n * sizeof(float)), *mask2 = malloc(n * sizeof(float));
    derf_rng rng, rng2;
    derf_rng_seed(&rng, 1234, 1);
    derf_dropout_forward(out, mask, inp, p, n, &rng);
    size_t kept = 0;
    double msum = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(mask[i] == 0.0f || fabs(mask[i] - 1.0 / (1.0 - 0.3)) < 1e-6);
        assert_true(out[i] == inp[i] * mask[i]);
        kept += mask[i] != 0.0f;
        msum += mask[i];
    }
    double frac = (double)kept / n, sd = sqrt(0.3 * 0.7 / n);
    assert_true(fabs(frac - 0.7) < 5 * sd);
    assert_true(fabs(msum / n - 1.0) < 5 * sqrt(0.3 / 0.7 / n)); /* unbiased: E[mask] = 1 */
    /* same seed -> same mask; a different seed -> a different one */
    derf_rng_seed(&rng2, 1234, 1);
    derf_dropout_forward(out2, mask2, inp, p, n, &rng2);
    assert_memory_equal(mask, mask2, n * sizeof(float));
    assert_memory_equal(out, out2, n * sizeof(float));
    derf_rng_seed(&rng2, 1235, 1);
    derf_dropout_forward(out2, mask2, inp, p, n, &rng2);
    assert_true(memcmp(mask, mask2, n * sizeof(float)) != 0);
    /* the generator advanced: a second call on the same rng draws a new mask */
    derf_dropout_forward(out2, mask2, inp, p, n, &rng);
    assert_true(memcmp(mask, mask2, n * sizeof(float)) != 0);
    /* backward: dinp += dout * mask */
    float *dout = fnew(n, -1, 1), *dinp = ffill(n, PREFILL);
    derf_dropout_backward(dinp, dout, mask, n);
    for (size_t i = 0; i < n; i++) assert_true(dinp[i] == PREFILL + dout[i] * mask[i]);
    /* p = 0 copies, mask 1, draws nothing */
    derf_rng before = rng;
    derf_dropout_forward(out2, mask2, inp, 0.0f, n, &rng);
    assert_memory_equal(out2, inp, n * sizeof(float));
    for (size_t i = 0; i < n; i++) assert_true(mask2[i] == 1.0f);
    assert_true(before.state == rng.state && before.inc == rng.inc);
    free(inp); free(out); free(mask); free(out2); free(mask2); free(dout); free(dinp);
}

static void test_drop_path(void **state) {
    (void)state;
    const int B = 20000; const size_t rest = 3;
    const float p = 0.2f;
    size_t n = (size_t)B * rest;
    float *x0 = fnew(n, -1, 1), *x = malloc(n * sizeof(float)), *keep = malloc(B * sizeof(float));
    float *keep2 = malloc(B * sizeof(float)), *x2 = malloc(n * sizeof(float));
    memcpy(x, x0, n * sizeof(float));
    derf_rng rng, rng2;
    derf_rng_seed(&rng, 99, 3);
    derf_drop_path_forward(x, keep, p, B, rest, &rng);
    int kept = 0;
    for (int b = 0; b < B; b++) {
        assert_true(keep[b] == 0.0f || fabs(keep[b] - 1.0 / 0.8) < 1e-6);
        kept += keep[b] != 0.0f;
        for (size_t i = 0; i < rest; i++) assert_true(x[b * rest + i] == x0[b * rest + i] * keep[b]);
    }
    assert_true(fabs((double)kept / B - 0.8) < 5 * sqrt(0.2 * 0.8 / B));
    /* determinism */
    memcpy(x2, x0, n * sizeof(float));
    derf_rng_seed(&rng2, 99, 3);
    derf_drop_path_forward(x2, keep2, p, B, rest, &rng2);
    assert_memory_equal(keep, keep2, B * sizeof(float));
    assert_memory_equal(x, x2, n * sizeof(float));
    /* backward in place: dx[b,:] *= keep[b] */
    float *dx = fnew(n, -1, 1), *dx0 = malloc(n * sizeof(float));
    memcpy(dx0, dx, n * sizeof(float));
    derf_drop_path_backward(dx, keep, B, rest);
    for (size_t i = 0; i < n; i++) assert_true(dx[i] == dx0[i] * keep[i / rest]);
    /* p = 0: identity, keep = 1, no draws */
    memcpy(x2, x0, n * sizeof(float));
    derf_rng before = rng;
    derf_drop_path_forward(x2, keep2, 0.0f, B, rest, &rng);
    assert_memory_equal(x2, x0, n * sizeof(float));
    for (int b = 0; b < B; b++) assert_true(keep2[b] == 1.0f);
    assert_true(before.state == rng.state);
    free(x0); free(x); free(keep); free(keep2); free(x2); free(dx); free(dx0);
}

static void test_residual(void **state) {
    (void)state;
    const size_t n = 1001;
    float *a = fnew(n, -1, 1), *b = fnew(n, -1, 1), *out = malloc(n * sizeof(float));
    derf_residual_forward(out, a, b, n);
    for (size_t i = 0; i < n; i++) assert_true(out[i] == a[i] + b[i]);
    derf_residual_forward(a, a, b, n); /* aliasing out = a */
    assert_memory_equal(a, out, n * sizeof(float));
    free(a); free(b); free(out);
}

/* ---------------------------------------------------------------- large shapes (threaded paths) */

/* Shapes above the OpenMP thresholds, against the double references and directly computed
 * double gradients (finite differences would be too slow here). */
static void test_large_shapes(void **state) {
    (void)state;
    { /* embed + position: B*T*C = 76800 */
        const int B = 4, T = 64, C = 300, V = 50;
        size_t no = (size_t)B * T * C;
        int32_t *tok = malloc((size_t)B * T * sizeof *tok);
        for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(tu_uniform(&g_seed) * V);
        float *wte = fnew((size_t)V * C, -1, 1), *wpe = fnew((size_t)T * C, -1, 1), *r = fnew(no, -1, 1);
        float *out = fnew(no, -9, 9), *dwte = ffill((size_t)V * C, PREFILL), *dwpe = ffill((size_t)T * C, PREFILL);
        emb_ctx x = { B, T, C, V, tok, dof(wte, (size_t)V * C), dof(wpe, (size_t)T * C), dof(r, no), dnew(no) };
        derf_embed_forward(out, tok, wte, wpe, B, T, C);
        emb_loss(&x);
        assert_true(tu_close("embed out (large)", out, x.out, no, FWD_ATOL, FWD_RTOL));
        derf_embed_backward(dwte, dwpe, r, tok, B, T, C);
        double *gw = dnew((size_t)V * C), *gp = dnew((size_t)T * C);
        for (size_t i = 0; i < (size_t)V * C; i++) gw[i] = PREFILL;
        for (size_t i = 0; i < (size_t)T * C; i++) gp[i] = PREFILL;
        for (int i = 0; i < B * T; i++)
            for (int c = 0; c < C; c++) {
                gw[(size_t)tok[i] * C + c] += x.r[(size_t)i * C + c];
                gp[(size_t)(i % T) * C + c] += x.r[(size_t)i * C + c];
            }
        assert_true(tu_close("embed dwte (large)", dwte, gw, (size_t)V * C, GRAD_ATOL, GRAD_RTOL));
        assert_true(tu_close("embed dwpe (large)", dwpe, gp, (size_t)T * C, GRAD_ATOL, GRAD_RTOL));
        /* mean pool over the same activations, T0 = 1 */
        float *pooled = fnew((size_t)B * C, -9, 9), *dx = ffill(no, PREFILL);
        pool_ctx pc = { B, T, 1, C, x.out, x.r, dnew((size_t)B * C) };
        derf_mean_pool_forward(pooled, out, B, T, 1, C);
        pool_loss(&pc);
        assert_true(tu_close("mean_pool out (large)", pooled, pc.out, (size_t)B * C, FWD_ATOL, FWD_RTOL));
        derf_mean_pool_backward(dx, r, B, T, 1, C); /* dout = first B*C entries of r */
        double *gx = dnew(no);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int c = 0; c < C; c++)
                    gx[((size_t)b * T + t) * C + c] = PREFILL + (t >= 1 ? x.r[(size_t)b * C + c] / (T - 1) : 0.0);
        assert_true(tu_close("mean_pool dx (large)", dx, gx, no, GRAD_ATOL, GRAD_RTOL));
        free(tok); free(wte); free(wpe); free(r); free(out); free(dwte); free(dwpe); free(gw); free(gp);
        free(pooled); free(dx); free(gx); free(pc.out);
        free(x.wte); free(x.wpe); free(x.r); free(x.out);
    }
    for (int kind = 0; kind < 2; kind++) { /* gelu, n = 40000: derivative by central difference per element */
        const size_t n = 40000;
        derf_gelu_kind k = kind ? DERF_GELU_ERF : DERF_GELU_TANH;
        float *inp = fnew(n, -6, 6), *r = fnew(n, -1, 1), *out = fnew(n, -9, 9), *dinp = ffill(n, PREFILL);
        double *want = dnew(n), *gw = dnew(n);
        for (size_t i = 0; i < n; i++) {
            double xi = inp[i];
            want[i] = ref_gelu1(xi, k);
            gw[i] = PREFILL + r[i] * (ref_gelu1(xi + FD_H, k) - ref_gelu1(xi - FD_H, k)) / (2 * FD_H);
        }
        derf_gelu_forward(out, inp, n, k);
        derf_gelu_backward(dinp, r, inp, n, k);
        assert_true(tu_close("gelu out (large)", out, want, n, FWD_ATOL, FWD_RTOL));
        assert_true(tu_close("gelu dinp (large)", dinp, gw, n, GRAD_ATOL, GRAD_RTOL));
        free(inp); free(r); free(out); free(dinp); free(want); free(gw);
    }
    { /* cross-entropy N*V = 30000, smoothing 0.1, a few ignored rows; gradient scale*(p - q)/kept */
        const int N = 300, V = 100;
        const float eps = 0.1f, scale = 0.5f;
        int32_t *tgt = malloc(N * sizeof *tgt);
        for (int n = 0; n < N; n++) tgt[n] = n % 17 == 3 ? -1 : (int32_t)(tu_uniform(&g_seed) * V);
        float *logits = fnew((size_t)N * V, -4, 4), *dl = ffill((size_t)N * V, PREFILL);
        xent_ctx x = { N, V, tgt, eps, scale, dof(logits, (size_t)N * V), NULL };
        float loss = derf_xent_forward_backward(dl, logits, tgt, eps, scale, N, V);
        double want = xent_loss(&x) / scale;
        assert_true(fabs(loss - want) <= 1e-6 + 1e-5 * fabs(want));
        int kept = 0;
        for (int n = 0; n < N; n++) kept += tgt[n] >= 0;
        double *g = dnew((size_t)N * V);
        for (int n = 0; n < N; n++) {
            const double *l = x.logits + (size_t)n * V;
            double mx = l[0], s = 0;
            for (int v = 1; v < V; v++) if (l[v] > mx) mx = l[v];
            for (int v = 0; v < V; v++) s += exp(l[v] - mx);
            for (int v = 0; v < V; v++) {
                double q = (v == tgt[n] ? 1 - (double)eps : 0) + (double)eps / V;
                g[(size_t)n * V + v] = PREFILL + (tgt[n] < 0 ? 0 : scale * (exp(l[v] - mx) / s - q) / kept);
            }
        }
        assert_true(tu_close("xent dlogits (large)", dl, g, (size_t)N * V, 1e-7, GRAD_RTOL));
        free(tgt); free(logits); free(dl); free(x.logits); free(g);
    }
    { /* linear N*OC = 90000 (threaded bias fill and db) */
        const int N = 300, C = 6, OC = 300;
        float *inp = fnew((size_t)N * C, -1, 1), *w = fnew((size_t)OC * C, -1, 1), *b = fnew(OC, -1, 1);
        float *r = fnew((size_t)N * OC, -1, 1), *out = fnew((size_t)N * OC, -9, 9);
        float *dinp = ffill((size_t)N * C, PREFILL), *dw = ffill((size_t)OC * C, PREFILL), *db = ffill(OC, PREFILL);
        lin_ctx x = { N, C, OC, dof(inp, (size_t)N * C), dof(w, (size_t)OC * C), dof(b, OC), dof(r, (size_t)N * OC),
                      dnew((size_t)N * OC) };
        derf_linear_forward(out, inp, w, b, N, C, OC);
        lin_loss(&x);
        assert_true(tu_close("linear out (large)", out, x.out, (size_t)N * OC, FWD_ATOL, FWD_RTOL));
        derf_linear_backward(dinp, dw, db, r, inp, w, N, C, OC);
        double *gi = dnew((size_t)N * C), *gw = dnew((size_t)OC * C), *gb = dnew(OC);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                double g = x.r[(size_t)n * OC + o];
                gb[o] += g;
                for (int c = 0; c < C; c++) {
                    gi[(size_t)n * C + c] += g * x.w[(size_t)o * C + c];
                    gw[(size_t)o * C + c] += g * x.inp[(size_t)n * C + c];
                }
            }
        for (size_t i = 0; i < (size_t)N * C; i++) gi[i] += PREFILL;
        for (size_t i = 0; i < (size_t)OC * C; i++) gw[i] += PREFILL;
        for (int o = 0; o < OC; o++) gb[o] += PREFILL;
        assert_true(tu_close("linear dinp (large)", dinp, gi, (size_t)N * C, GRAD_ATOL, GRAD_RTOL));
        assert_true(tu_close("linear dw (large)", dw, gw, (size_t)OC * C, 2e-4, GRAD_RTOL)); /* sums of 300 */
        assert_true(tu_close("linear db (large)", db, gb, OC, 2e-4, GRAD_RTOL));
        free(inp); free(w); free(b); free(r); free(out); free(dinp); free(dw); free(db); free(gi); free(gw); free(gb);
        free(x.inp); free(x.w); free(x.b); free(x.r); free(x.out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_attention_causal),
        cmocka_unit_test(test_attention_bidirectional),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_add_pos),
        cmocka_unit_test(test_mean_pool),
        cmocka_unit_test(test_patch_embed),
        cmocka_unit_test(test_xent_hard),
        cmocka_unit_test(test_xent_wide),
        cmocka_unit_test(test_xent_all_ignored),
        cmocka_unit_test(test_xent_soft),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_drop_path),
        cmocka_unit_test(test_residual),
        cmocka_unit_test(test_large_shapes),
    };
    return cmocka_run_group_tests_name("ops", tests, setup, NULL);
}
