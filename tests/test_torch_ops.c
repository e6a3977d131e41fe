/* test_torch_ops.c: every op of include/derf/ops.h against a live PyTorch reference
 * (tools/torch_ref.py: F.linear, F.gelu, explicit matmul+softmax attention, F.embedding, F.conv2d,
 * log_softmax cross-entropy, F.conv1d, F.group_norm, torch._weight_norm, the Gumbel quantizer and
 * InfoNCE written from fairseq's formulas, ...), forward and backward, on fresh random inputs each run (replay with
 * the printed DERF_TEST_SEED).
 *
 * Backward ops ADD into their gradients, so every gradient buffer is pre-filled with random values
 * and compared with prefill + PyTorch's gradient. Tolerances (fp32 against fp32): element-wise
 * results atol 2e-5, rtol 1e-4; a result that sums k products gets atol 2e-5 * sqrt(k) * scale
 * (summation order differs between OpenBLAS/C loops and PyTorch). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derf/ops.h"
#include "derf/ops_audio.h"
#include "derf/rng.h"
#include "testutil.h"
#include "torch_oracle.h"

#define RTOL 1e-4

static uint64_t case_seed(const char *name) {
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return tu_seed() ^ h;
}

static void require_oracle(void) {
    const char *msg;
    int st = torch_oracle_status(&msg);
    if (st == TORCH_ORACLE_SKIP) {
        print_message("SKIP: %s\n", msg);
        skip();
    }
    if (st != TORCH_ORACLE_OK) fail_msg("%s", msg);
}

static float *rnd(size_t n, uint64_t *rs, double lo, double hi) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    tu_fill(x, n, rs, lo, hi);
    return x;
}
static float *dup(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* got vs (prefill + want) (prefill may be NULL). Prints the worst element on failure. */
static int cmp(const char *what, const float *got, const float *prefill, const float *want, size_t n,
               double atol) {
    if (!want) { fprintf(stderr, "%s: missing from the oracle's reply (or wrong size)\n", what); return 0; }
    double *w = malloc((n ? n : 1) * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = (double)want[i] + (prefill ? (double)prefill[i] : 0.0);
    int ok = tu_close(what, got, w, n, atol, RTOL);
    free(w);
    return ok;
}
static double katol(size_t k, double scale) { return 2e-5 * sqrt((double)k) * (scale > 1 ? scale : 1); }

static void call(const char *test, const char *hdr, const torch_arr *in, int n, torch_reply *rep) {
    char err[1024];
    if (torch_oracle_call(hdr, in, n, rep, err, sizeof err)) fail_msg("%s: %s", test, err);
}

/* ---------------------------------------------------------------------------------------------- */

static void test_linear(void **st) {
    require_oracle();
    uint64_t rs = case_seed("linear");
    int N = 5 + (int)(tu_uniform(&rs) * 12), C = 8 + (int)(tu_uniform(&rs) * 25), OC = 6 + (int)(tu_uniform(&rs) * 20);
    int ok = 1;
    for (int with_b = 1; with_b >= 0; with_b--) {
        float *inp = rnd((size_t)N * C, &rs, -1, 1), *w = rnd((size_t)OC * C, &rs, -0.5, 0.5);
        float *b = with_b ? rnd(OC, &rs, -0.5, 0.5) : NULL, *dout = rnd((size_t)N * OC, &rs, -1, 1);
        float *out = malloc((size_t)N * OC * sizeof(float));
        float *pinp = rnd((size_t)N * C, &rs, -1, 1), *pw = rnd((size_t)OC * C, &rs, -1, 1), *pb = rnd(OC, &rs, -1, 1);
        float *dinp = dup(pinp, (size_t)N * C), *dw = dup(pw, (size_t)OC * C), *db = dup(pb, OC);
        derf_linear_forward(out, inp, w, b, N, C, OC);
        derf_linear_backward(dinp, dw, with_b ? db : NULL, dout, inp, w, N, C, OC);
        char hdr[128];
        snprintf(hdr, sizeof hdr, "linear N=%d C=%d OC=%d", N, C, OC);
        torch_arr in[] = {torch_f("inp", inp, (size_t)N * C), torch_f("w", w, (size_t)OC * C),
                          torch_f("b", b, with_b ? (size_t)OC : 0), torch_f("dout", dout, (size_t)N * OC)};
        torch_reply rep;
        call("linear", hdr, in, 4, &rep);
        ok &= cmp(with_b ? "linear out" : "linear (no bias) out", out, NULL,
                  torch_reply_f(&rep, "out", (size_t)N * OC), (size_t)N * OC, katol(C, 0.5));
        ok &= cmp("linear dinp", dinp, pinp, torch_reply_f(&rep, "dinp", (size_t)N * C), (size_t)N * C, katol(OC, 0.5));
        ok &= cmp("linear dw", dw, pw, torch_reply_f(&rep, "dw", (size_t)OC * C), (size_t)OC * C, katol(N, 1));
        if (with_b) ok &= cmp("linear db", db, pb, torch_reply_f(&rep, "db", OC), OC, katol(N, 1));
        else ok &= memcmp(db, pb, (size_t)OC * sizeof(float)) == 0; /* db NULL: nothing written */
        torch_reply_free(&rep);
        free(inp); free(w); free(b); free(dout); free(out); free(pinp); free(pw); free(pb);
        free(dinp); free(dw); free(db);
    }
    if (!ok) fail_msg("linear (N=%d C=%d OC=%d) differs from PyTorch", N, C, OC);
}

static void gelu_case(const char *name, derf_gelu_kind kind) {
    require_oracle();
    uint64_t rs = case_seed(name);
    size_t n = 200 + (size_t)(tu_uniform(&rs) * 300);
    float *x = rnd(n, &rs, -6, 6), *dout = rnd(n, &rs, -1, 1), *out = malloc(n * sizeof(float));
    float *pre = rnd(n, &rs, -1, 1), *dinp = dup(pre, n);
    derf_gelu_forward(out, x, n, kind);
    derf_gelu_backward(dinp, dout, x, n, kind);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "gelu kind=%s", kind == DERF_GELU_TANH ? "tanh" : "erf");
    torch_arr in[] = {torch_f("inp", x, n), torch_f("dout", dout, n)};
    torch_reply rep;
    call(name, hdr, in, 2, &rep);
    int ok = cmp("gelu out", out, NULL, torch_reply_f(&rep, "out", n), n, 2e-5);
    ok &= cmp("gelu dinp", dinp, pre, torch_reply_f(&rep, "dinp", n), n, 2e-5);
    torch_reply_free(&rep);
    free(x); free(dout); free(out); free(pre); free(dinp);
    if (!ok) fail_msg("%s (n=%zu) differs from PyTorch", name, n);
}
static void test_gelu_tanh(void **st) { gelu_case("gelu_tanh", DERF_GELU_TANH); }
static void test_gelu_erf(void **st) { gelu_case("gelu_erf", DERF_GELU_ERF); }

static void attention_case(const char *name, int causal) {
    require_oracle();
    uint64_t rs = case_seed(name);
    int B = 2, T = 4 + (int)(tu_uniform(&rs) * 7), NH = 2 + (int)(tu_uniform(&rs) * 2);
    int hs = 4 + 2 * (int)(tu_uniform(&rs) * 3), C = NH * hs;
    size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    float *qkv = rnd(nqkv, &rs, -1.5, 1.5), *dout = rnd(nout, &rs, -1, 1);
    float *out = malloc(nout * sizeof(float)), *att = malloc(natt * sizeof(float));
    float *pre = rnd(nqkv, &rs, -1, 1), *dqkv = dup(pre, nqkv);
    float *scratch = rnd(natt, &rs, -100, 100); /* documented as scratch: its contents must not matter */
    derf_attention_forward(out, att, qkv, B, T, C, NH, causal);
    derf_attention_backward(dqkv, scratch, dout, qkv, att, B, T, C, NH, causal);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "attention B=%d T=%d C=%d NH=%d causal=%d", B, T, C, NH, causal);
    torch_arr in[] = {torch_f("qkv", qkv, nqkv), torch_f("dout", dout, nout)};
    torch_reply rep;
    call(name, hdr, in, 2, &rep);
    int ok = cmp("attention out", out, NULL, torch_reply_f(&rep, "out", nout), nout, katol(T, 1.5));
    ok &= cmp("attention att (softmax probabilities)", att, NULL, torch_reply_f(&rep, "att", natt), natt, 2e-5);
    ok &= cmp("attention dqkv (datt_scratch pre-filled with garbage)", dqkv, pre,
              torch_reply_f(&rep, "dqkv", nqkv), nqkv, katol((size_t)T * hs, 1.5));
    torch_reply_free(&rep);
    free(qkv); free(dout); free(out); free(att); free(pre); free(dqkv); free(scratch);
    if (!ok) fail_msg("%s (B=%d T=%d C=%d NH=%d) differs from PyTorch", name, B, T, C, NH);
}
static void test_attention(void **st) { attention_case("attention", 0); }
static void test_attention_causal(void **st) { attention_case("attention_causal", 1); }

static void test_embed(void **st) {
    require_oracle();
    uint64_t rs = case_seed("embed");
    int B = 2 + (int)(tu_uniform(&rs) * 2), T = 3 + (int)(tu_uniform(&rs) * 6), C = 8 + (int)(tu_uniform(&rs) * 9);
    int V = 7 + (int)(tu_uniform(&rs) * 20), Tmax = T + 2; /* wpe rows beyond T must stay untouched */
    size_t n = (size_t)B * T * C;
    int ok = 1;
    for (int with_pos = 1; with_pos >= 0; with_pos--) {
        int32_t *tok = malloc((size_t)B * T * sizeof(int32_t));
        for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(tu_uniform(&rs) * (V / 2 + 1)); /* repeats */
        float *wte = rnd((size_t)V * C, &rs, -1, 1), *wpe = with_pos ? rnd((size_t)Tmax * C, &rs, -1, 1) : NULL;
        float *dout = rnd(n, &rs, -1, 1), *out = malloc(n * sizeof(float));
        float *pwte = rnd((size_t)V * C, &rs, -1, 1), *pwpe = rnd((size_t)Tmax * C, &rs, -1, 1);
        float *dwte = dup(pwte, (size_t)V * C), *dwpe = dup(pwpe, (size_t)Tmax * C);
        derf_embed_forward(out, tok, wte, wpe, B, T, C);
        derf_embed_backward(dwte, with_pos ? dwpe : NULL, dout, tok, B, T, C);
        char hdr[96];
        snprintf(hdr, sizeof hdr, "embed B=%d T=%d C=%d", B, T, C);
        torch_arr in[] = {torch_i("tok", tok, (size_t)B * T), torch_f("wte", wte, (size_t)V * C),
                          torch_f("wpe", wpe, with_pos ? (size_t)Tmax * C : 0), torch_f("dout", dout, n)};
        torch_reply rep;
        call("embed", hdr, in, 4, &rep);
        ok &= cmp(with_pos ? "embed out" : "embed (no wpe) out", out, NULL, torch_reply_f(&rep, "out", n), n, 2e-5);
        ok &= cmp("embed dwte", dwte, pwte, torch_reply_f(&rep, "dwte", (size_t)V * C), (size_t)V * C, katol(B * T, 1));
        if (with_pos)
            ok &= cmp("embed dwpe", dwpe, pwpe, torch_reply_f(&rep, "dwpe", (size_t)Tmax * C), (size_t)Tmax * C,
                      katol(B, 1));
        else
            ok &= memcmp(dwpe, pwpe, (size_t)Tmax * C * sizeof(float)) == 0;
        torch_reply_free(&rep);
        free(tok); free(wte); free(wpe); free(dout); free(out); free(pwte); free(pwpe); free(dwte); free(dwpe);
    }
    if (!ok) fail_msg("embed (B=%d T=%d C=%d V=%d) differs from PyTorch", B, T, C, V);
}

static void test_add_pos(void **st) {
    require_oracle();
    uint64_t rs = case_seed("add_pos");
    int B = 2 + (int)(tu_uniform(&rs) * 3), T = 3 + (int)(tu_uniform(&rs) * 8), C = 8 + (int)(tu_uniform(&rs) * 9);
    size_t n = (size_t)B * T * C, np = (size_t)T * C;
    float *x = rnd(n, &rs, -1, 1), *pos = rnd(np, &rs, -1, 1), *dout = rnd(n, &rs, -1, 1);
    float *y = dup(x, n), *pre = rnd(np, &rs, -1, 1), *dpos = dup(pre, np);
    derf_add_pos_forward(y, pos, B, T, C);
    derf_add_pos_backward(dpos, dout, B, T, C);
    char hdr[96];
    snprintf(hdr, sizeof hdr, "add_pos B=%d T=%d C=%d", B, T, C);
    torch_arr in[] = {torch_f("x", x, n), torch_f("pos", pos, np), torch_f("dout", dout, n)};
    torch_reply rep;
    call("add_pos", hdr, in, 3, &rep);
    int ok = cmp("add_pos out (in place)", y, NULL, torch_reply_f(&rep, "out", n), n, 2e-5);
    ok &= cmp("add_pos dpos", dpos, pre, torch_reply_f(&rep, "dpos", np), np, katol(B, 1));
    torch_reply_free(&rep);
    free(x); free(pos); free(dout); free(y); free(pre); free(dpos);
    if (!ok) fail_msg("add_pos (B=%d T=%d C=%d) differs from PyTorch", B, T, C);
}

static void test_patch_embed(void **st) {
    require_oracle();
    uint64_t rs = case_seed("patch_embed");
    int B = 2, Cin = 3, P = 2 + (int)(tu_uniform(&rs) * 3);
    int H = P * (2 + (int)(tu_uniform(&rs) * 3)), W = P * (2 + (int)(tu_uniform(&rs) * 2));
    int D = 5 + (int)(tu_uniform(&rs) * 12), NP = (H / P) * (W / P), K = Cin * P * P;
    size_t nimg = (size_t)B * Cin * H * W, nout = (size_t)B * NP * D, nw = (size_t)D * K;
    float *img = rnd(nimg, &rs, -1, 1), *w = rnd(nw, &rs, -0.5, 0.5), *b = rnd(D, &rs, -0.5, 0.5);
    float *dout = rnd(nout, &rs, -1, 1), *out = malloc(nout * sizeof(float));
    float *cols = malloc((size_t)B * NP * K * sizeof(float));
    float *pw = rnd(nw, &rs, -1, 1), *pb = rnd(D, &rs, -1, 1), *dw = dup(pw, nw), *db = dup(pb, D);
    derf_patch_embed_forward(out, cols, img, w, b, B, Cin, H, W, P, D);
    derf_patch_embed_backward(dw, db, dout, cols, B, Cin, H, W, P, D);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "patch_embed B=%d Cin=%d H=%d W=%d P=%d D=%d", B, Cin, H, W, P, D);
    torch_arr in[] = {torch_f("img", img, nimg), torch_f("w", w, nw), torch_f("b", b, D), torch_f("dout", dout, nout)};
    torch_reply rep;
    call("patch_embed", hdr, in, 4, &rep);
    int ok = cmp("patch_embed out", out, NULL, torch_reply_f(&rep, "out", nout), nout, katol(K, 0.5));
    ok &= cmp("patch_embed dw", dw, pw, torch_reply_f(&rep, "dw", nw), nw, katol((size_t)B * NP, 1));
    ok &= cmp("patch_embed db", db, pb, torch_reply_f(&rep, "db", D), D, katol((size_t)B * NP, 1));
    torch_reply_free(&rep);
    free(img); free(w); free(b); free(dout); free(out); free(cols); free(pw); free(pb); free(dw); free(db);
    if (!ok) fail_msg("patch_embed (B=%d Cin=%d H=%d W=%d P=%d D=%d) differs from PyTorch", B, Cin, H, W, P, D);
}

static void test_xent(void **st) {
    require_oracle();
    uint64_t rs = case_seed("xent");
    int N = 7 + (int)(tu_uniform(&rs) * 10), V = 5 + (int)(tu_uniform(&rs) * 20);
    size_t n = (size_t)N * V;
    int ok = 1;
    const float smooth[2] = {0.1f, 0.0f}, scale[2] = {0.7f, 1.0f};
    for (int r = 0; r < 2; r++) {
        float *logits = rnd(n, &rs, -4, 4);
        int32_t *t = malloc((size_t)N * sizeof(int32_t));
        for (int i = 0; i < N; i++) t[i] = (int32_t)(tu_uniform(&rs) * V);
        t[1] = -1; /* ignored rows (not counted in the mean) */
        if (N > 5) t[N - 2] = -100;
        float *pre = rnd(n, &rs, -1, 1), *dl = dup(pre, n);
        float loss = derf_xent_forward_backward(dl, logits, t, smooth[r], scale[r], N, V);
        float loss2 = derf_xent_forward_backward(NULL, logits, t, smooth[r], scale[r], N, V);
        char hdr[128];
        snprintf(hdr, sizeof hdr, "xent N=%d V=%d smoothing=%.9g scale=%.9g", N, V, (double)smooth[r], (double)scale[r]);
        torch_arr in[] = {torch_f("logits", logits, n), torch_i("targets", t, N)};
        torch_reply rep;
        call("xent", hdr, in, 2, &rep);
        char what[96];
        snprintf(what, sizeof what, "xent loss (smoothing %g)", (double)smooth[r]);
        ok &= cmp(what, &loss, NULL, torch_reply_f(&rep, "loss", 1), 1, 2e-5);
        ok &= cmp("xent loss with dlogits NULL", &loss2, NULL, torch_reply_f(&rep, "loss", 1), 1, 2e-5);
        snprintf(what, sizeof what, "xent dlogits (smoothing %g, scale %g)", (double)smooth[r], (double)scale[r]);
        ok &= cmp(what, dl, pre, torch_reply_f(&rep, "dlogits", n), n, 2e-5);
        torch_reply_free(&rep);
        free(logits); free(t); free(pre); free(dl);
    }
    if (!ok) fail_msg("xent (N=%d V=%d) differs from PyTorch", N, V);
}

static void test_xent_soft(void **st) {
    require_oracle();
    uint64_t rs = case_seed("xent_soft");
    int N = 7 + (int)(tu_uniform(&rs) * 10), V = 5 + (int)(tu_uniform(&rs) * 20);
    size_t n = (size_t)N * V;
    float *logits = rnd(n, &rs, -4, 4), *q = malloc(n * sizeof(float));
    for (int i = 0; i < N; i++) { /* mixup of two smoothed one-hots */
        double lam = tu_uniform(&rs), eps = 0.1;
        int a = (int)(tu_uniform(&rs) * V), b = (int)(tu_uniform(&rs) * V);
        for (int v = 0; v < V; v++)
            q[i * V + v] = (float)(eps / V + (1 - eps) * (lam * (v == a) + (1 - lam) * (v == b)));
    }
    float scale = 1.3f, *pre = rnd(n, &rs, -1, 1), *dl = dup(pre, n);
    float loss = derf_xent_soft_forward_backward(dl, logits, q, scale, N, V);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "xent_soft N=%d V=%d scale=%.9g", N, V, (double)scale);
    torch_arr in[] = {torch_f("logits", logits, n), torch_f("q", q, n)};
    torch_reply rep;
    call("xent_soft", hdr, in, 2, &rep);
    int ok = cmp("xent_soft loss", &loss, NULL, torch_reply_f(&rep, "loss", 1), 1, 2e-5);
    ok &= cmp("xent_soft dlogits", dl, pre, torch_reply_f(&rep, "dlogits", n), n, 2e-5);
    torch_reply_free(&rep);
    free(logits); free(q); free(pre); free(dl);
    if (!ok) fail_msg("xent_soft (N=%d V=%d) differs from PyTorch", N, V);
}

static void test_dropout(void **st) {
    require_oracle();
    uint64_t rs = case_seed("dropout");
    size_t n = 2000;
    float p = 0.3f;
    float *x = rnd(n, &rs, -2, 2), *dout = rnd(n, &rs, -1, 1), *out = malloc(n * sizeof(float));
    float *mask = malloc(n * sizeof(float)), *pre = rnd(n, &rs, -1, 1), *dinp = dup(pre, n);
    derf_rng rng;
    derf_rng_seed(&rng, rs, 7);
    derf_dropout_forward(out, mask, x, p, n, &rng);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (mask[i] != 0.0f && fabsf(mask[i] - 1.0f / (1.0f - p)) > 1e-6f)
            fail_msg("dropout mask[%zu] = %g, want 0 or 1/(1-p) = %g", i, (double)mask[i], 1.0 / (1.0 - p));
        kept += mask[i] != 0.0f;
    }
    double frac = (double)kept / n; /* binomial sd 0.01 */
    if (fabs(frac - (1 - p)) > 0.06) fail_msg("dropout kept %.3f of the elements, want about %.2f", frac, 1 - p);
    derf_dropout_backward(dinp, dout, mask, n);
    torch_arr in[] = {torch_f("inp", x, n), torch_f("mask", mask, n), torch_f("dout", dout, n)};
    torch_reply rep;
    call("dropout", "mask_mul", in, 3, &rep);
    int ok = cmp("dropout out", out, NULL, torch_reply_f(&rep, "out", n), n, 2e-5);
    ok &= cmp("dropout dinp", dinp, pre, torch_reply_f(&rep, "dinp", n), n, 2e-5);
    torch_reply_free(&rep);
    derf_dropout_forward(out, mask, x, 0.0f, n, &rng); /* p = 0 copies */
    for (size_t i = 0; i < n; i++)
        if (out[i] != x[i]) fail_msg("dropout p=0: out[%zu] = %g, want %g", i, (double)out[i], (double)x[i]);
    free(x); free(dout); free(out); free(mask); free(pre); free(dinp);
    if (!ok) fail_msg("dropout differs from PyTorch");
}

static void test_drop_path(void **st) {
    require_oracle();
    uint64_t rs = case_seed("drop_path");
    int B = 16;
    size_t rest = 37, n = (size_t)B * rest;
    float p = 0.4f;
    float *x = rnd(n, &rs, -2, 2), *y = dup(x, n), *dout = rnd(n, &rs, -1, 1), *dx = dup(dout, n);
    float *keep = malloc((size_t)B * sizeof(float));
    derf_rng rng;
    derf_rng_seed(&rng, rs, 11);
    derf_drop_path_forward(y, keep, p, B, rest, &rng);
    for (int b = 0; b < B; b++)
        if (keep[b] != 0.0f && fabsf(keep[b] - 1.0f / (1.0f - p)) > 1e-6f)
            fail_msg("drop_path keep[%d] = %g, want 0 or 1/(1-p)", b, (double)keep[b]);
    derf_drop_path_backward(dx, keep, B, rest);
    char hdr[32];
    snprintf(hdr, sizeof hdr, "drop_path B=%d", B);
    torch_arr in[] = {torch_f("x", x, n), torch_f("keep", keep, B), torch_f("dout", dout, n)};
    torch_reply rep;
    call("drop_path", hdr, in, 3, &rep);
    int ok = cmp("drop_path out (in place)", y, NULL, torch_reply_f(&rep, "out", n), n, 2e-5);
    ok &= cmp("drop_path dx (in place)", dx, NULL, torch_reply_f(&rep, "dx", n), n, 2e-5);
    torch_reply_free(&rep);
    free(x); free(y); free(dout); free(dx); free(keep);
    if (!ok) fail_msg("drop_path differs from PyTorch");
}

static void test_residual(void **st) {
    require_oracle();
    uint64_t rs = case_seed("residual");
    size_t n = 777;
    float *a = rnd(n, &rs, -2, 2), *b = rnd(n, &rs, -2, 2), *dout = rnd(n, &rs, -1, 1);
    float *out = malloc(n * sizeof(float)), *alias = dup(a, n);
    derf_residual_forward(out, a, b, n);
    derf_residual_forward(alias, alias, b, n); /* out may alias a */
    torch_arr in[] = {torch_f("a", a, n), torch_f("b", b, n), torch_f("dout", dout, n)};
    torch_reply rep;
    call("residual", "residual", in, 3, &rep);
    int ok = cmp("residual out", out, NULL, torch_reply_f(&rep, "out", n), n, 2e-5);
    ok &= cmp("residual out (aliasing a)", alias, NULL, torch_reply_f(&rep, "out", n), n, 2e-5);
    torch_reply_free(&rep);
    free(a); free(b); free(dout); free(out); free(alias);
    if (!ok) fail_msg("residual differs from PyTorch");
}

static void test_mean_pool(void **st) {
    require_oracle();
    uint64_t rs = case_seed("mean_pool");
    int B = 2 + (int)(tu_uniform(&rs) * 3), T = 5 + (int)(tu_uniform(&rs) * 8), C = 8 + (int)(tu_uniform(&rs) * 9);
    int ok = 1;
    for (int T0 = 1; T0 >= 0; T0--) { /* with a class token, then without */
        size_t n = (size_t)B * T * C, no = (size_t)B * C;
        float *x = rnd(n, &rs, -2, 2), *dout = rnd(no, &rs, -1, 1), *out = malloc(no * sizeof(float));
        float *pre = rnd(n, &rs, -1, 1), *dx = dup(pre, n);
        derf_mean_pool_forward(out, x, B, T, T0, C);
        derf_mean_pool_backward(dx, dout, B, T, T0, C);
        char hdr[96];
        snprintf(hdr, sizeof hdr, "mean_pool B=%d T=%d T0=%d C=%d", B, T, T0, C);
        torch_arr in[] = {torch_f("x", x, n), torch_f("dout", dout, no)};
        torch_reply rep;
        call("mean_pool", hdr, in, 2, &rep);
        ok &= cmp(T0 ? "mean_pool out (T0=1)" : "mean_pool out (T0=0)", out, NULL, torch_reply_f(&rep, "out", no), no,
                  katol(T, 1));
        ok &= cmp("mean_pool dx", dx, pre, torch_reply_f(&rep, "dx", n), n, 2e-5);
        torch_reply_free(&rep);
        free(x); free(dout); free(out); free(pre); free(dx);
    }
    if (!ok) fail_msg("mean_pool (B=%d T=%d C=%d) differs from PyTorch", B, T, C);
}

/* The oracle checks itself: its autograd graphs against finite differences in float64
 * (torch.autograd.gradcheck), closed-form values and the wire protocol. */
static void test_oracle_selftest(void **st) {
    require_oracle();
    char msg[768];
    if (torch_oracle_selftest(msg, sizeof msg)) fail_msg("%s", msg);
}

/* ---- wav2vec 2.0 ops (include/derf/ops_audio.h) ------------------------------------------------ */

static void conv1d_case(uint64_t *rs, int B, int T, int Cin, int Cout, int K, int S, int P, int G, int To, int bias) {
    size_t nx = (size_t)B * T * Cin, nw = (size_t)Cout * (Cin / G) * K, ny = (size_t)B * To * Cout;
    size_t ncol = (size_t)To * (Cin / G) * K;
    float *x = rnd(nx, rs, -1, 1), *w = rnd(nw, rs, -0.5, 0.5), *b = bias ? rnd(Cout, rs, -0.5, 0.5) : NULL;
    float *dy = rnd(ny, rs, -1, 1), *y = malloc(ny * sizeof(float)), *cols = malloc(ncol * sizeof(float));
    float *dcols = malloc(ncol * sizeof(float));
    float *px = rnd(nx, rs, -1, 1), *pw = rnd(nw, rs, -1, 1), *pb = rnd(Cout, rs, -1, 1);
    float *dx = dup(px, nx), *dw = dup(pw, nw), *db = dup(pb, Cout);
    derf_conv1d_forward(y, cols, x, w, b, B, T, Cin, Cout, K, S, P, G, To);
    derf_conv1d_backward(dx, dw, bias ? db : NULL, cols, dcols, dy, x, w, B, T, Cin, Cout, K, S, P, G, To);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "conv1d B=%d T=%d Cin=%d Cout=%d K=%d S=%d P=%d G=%d To=%d", B, T, Cin, Cout, K, S, P, G, To);
    torch_arr in[] = {torch_f("x", x, nx), torch_f("w", w, nw), torch_f("b", b, bias ? Cout : 0), torch_f("dy", dy, ny)};
    torch_reply rep;
    call("conv1d", hdr, in, 4, &rep);
    size_t k = (size_t)(Cin / G) * K;
    int ok = cmp("conv1d y", y, NULL, torch_reply_f(&rep, "y", ny), ny, katol(k, 0.5));
    ok &= cmp("conv1d dx", dx, px, torch_reply_f(&rep, "dx", nx), nx, katol((size_t)K * (Cout / G), 0.5));
    ok &= cmp("conv1d dw", dw, pw, torch_reply_f(&rep, "dw", nw), nw, katol((size_t)B * To, 1));
    if (bias) ok &= cmp("conv1d db", db, pb, torch_reply_f(&rep, "db", Cout), Cout, katol((size_t)B * To, 1));
    torch_reply_free(&rep);
    free(x); free(w); free(b); free(dy); free(y); free(cols); free(dcols); free(px); free(pw); free(pb);
    free(dx); free(dw); free(db);
    if (!ok) fail_msg("%s differs from PyTorch", hdr);
}

static void test_conv1d(void **st) {
    require_oracle();
    uint64_t rs = case_seed("conv1d");
    /* feature encoder block: valid, strided, no bias (the first one has Cin = 1, K 10, S 5) */
    conv1d_case(&rs, 2, 60 + (int)(tu_uniform(&rs) * 40), 1, 6, 10, 5, 0, 1, derf_conv1d_len(60, 10, 5, 0), 0);
    int S = 2 + (int)(tu_uniform(&rs) * 2), K = S + (int)(tu_uniform(&rs) * 2), T = 20 + (int)(tu_uniform(&rs) * 20);
    conv1d_case(&rs, 3, T, 5 + (int)(tu_uniform(&rs) * 6), 7, K, S, 0, 1, derf_conv1d_len(T, K, S, 0), 0);
    /* positional convolution: grouped, padding K/2, even K with the last frame dropped (SamePad), bias */
    int G = 2 + (int)(tu_uniform(&rs) * 3), Kp = 2 * (2 + (int)(tu_uniform(&rs) * 4));
    T = 9 + (int)(tu_uniform(&rs) * 10);
    conv1d_case(&rs, 2, T, 3 * G, 3 * G, Kp, 1, Kp / 2, G, T, 1);
    conv1d_case(&rs, 2, T, 2 * G, 2 * G, Kp + 1, 1, (Kp + 1) / 2, G, T, 1); /* odd kernel: nothing dropped */
}

static void test_groupnorm(void **st) {
    require_oracle();
    uint64_t rs = case_seed("groupnorm");
    int ok = 1;
    for (int r = 0; r < 2; r++) {
        int B = 2, T = 5 + (int)(tu_uniform(&rs) * 30), C = 4 + 2 * (int)(tu_uniform(&rs) * 6), G = r ? C / 2 : C;
        size_t n = (size_t)B * T * C;
        float *x = rnd(n, &rs, -2, 3), *ga = rnd(C, &rs, 0.5, 1.5), *be = rnd(C, &rs, -0.5, 0.5), *dy = rnd(n, &rs, -1, 1);
        float *y = malloc(n * sizeof(float)), mean[64], rstd[64];
        float *px = rnd(n, &rs, -1, 1), *pg = rnd(C, &rs, -1, 1), *pb = rnd(C, &rs, -1, 1);
        float *dx = dup(px, n), *dg = dup(pg, C), *db = dup(pb, C);
        derf_groupnorm_forward(y, mean, rstd, x, ga, be, 1e-5f, B, T, C, G);
        derf_groupnorm_backward(dx, dg, db, dy, x, mean, rstd, ga, B, T, C, G);
        char hdr[128];
        snprintf(hdr, sizeof hdr, "groupnorm B=%d T=%d C=%d G=%d eps=1e-5", B, T, C, G);
        torch_arr in[] = {torch_f("x", x, n), torch_f("gamma", ga, C), torch_f("beta", be, C), torch_f("dy", dy, n)};
        torch_reply rep;
        call("groupnorm", hdr, in, 4, &rep);
        size_t k = (size_t)T * (C / G);
        ok &= cmp("groupnorm y", y, NULL, torch_reply_f(&rep, "y", n), n, 2e-5);
        ok &= cmp("groupnorm dx", dx, px, torch_reply_f(&rep, "dx", n), n, katol(k, 1));
        ok &= cmp("groupnorm dgamma", dg, pg, torch_reply_f(&rep, "dgamma", C), C, katol((size_t)B * T, 2));
        ok &= cmp("groupnorm dbeta", db, pb, torch_reply_f(&rep, "dbeta", C), C, katol((size_t)B * T, 1));
        torch_reply_free(&rep);
        free(x); free(ga); free(be); free(dy); free(y); free(px); free(pg); free(pb); free(dx); free(dg); free(db);
        if (!ok) fail_msg("%s differs from PyTorch", hdr);
    }
}

static void test_weight_norm(void **st) {
    require_oracle();
    uint64_t rs = case_seed("weight_norm");
    int R = 6 + (int)(tu_uniform(&rs) * 40), K = 3 + (int)(tu_uniform(&rs) * 12);
    size_t n = (size_t)R * K;
    float *v = rnd(n, &rs, -1, 1), *g = rnd(K, &rs, 0.2, 2), *dw = rnd(n, &rs, -1, 1), *w = malloc(n * sizeof(float));
    float *norm = malloc(K * sizeof(float)), *pv = rnd(n, &rs, -1, 1), *pg = rnd(K, &rs, -1, 1);
    float *dv = dup(pv, n), *dg = dup(pg, K);
    derf_weight_norm_forward(w, norm, v, g, R, K);
    derf_weight_norm_backward(dv, dg, dw, v, g, norm, R, K);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "weight_norm R=%d K=%d", R, K);
    torch_arr in[] = {torch_f("v", v, n), torch_f("g", g, K), torch_f("dw", dw, n)};
    torch_reply rep;
    call("weight_norm", hdr, in, 3, &rep);
    int ok = cmp("weight_norm w", w, NULL, torch_reply_f(&rep, "w", n), n, 2e-5);
    ok &= cmp("weight_norm dv", dv, pv, torch_reply_f(&rep, "dv", n), n, katol(R, 1));
    ok &= cmp("weight_norm dg", dg, pg, torch_reply_f(&rep, "dg", K), K, katol(R, 1));
    torch_reply_free(&rep);
    free(v); free(g); free(dw); free(w); free(norm); free(pv); free(pg); free(dv); free(dg);
    if (!ok) fail_msg("%s differs from PyTorch", hdr);
}

static void test_gumbel_quant(void **st) {
    require_oracle();
    uint64_t rs = case_seed("gumbel");
    int ok = 1;
    for (int train = 1; train >= 0; train--) {
        int N = 5 + (int)(tu_uniform(&rs) * 10), G = 2, V = 4 + (int)(tu_uniform(&rs) * 12), Dv = 3 + (int)(tu_uniform(&rs) * 5);
        float tau = (float)(0.5 + 1.5 * tu_uniform(&rs));
        size_t nl = (size_t)N * G * V, nc = (size_t)G * V * Dv, nq = (size_t)N * G * Dv;
        float *l = rnd(nl, &rs, -2, 2), *u = rnd(nl, &rs, 1e-4, 1 - 1e-4), *cb = rnd(nc, &rs, 0, 1);
        float *dq = rnd(nq, &rs, -1, 1), *q = malloc(nq * sizeof(float)), *ys = malloc(nl * sizeof(float));
        float *pl = rnd(nl, &rs, -1, 1), *pc = rnd(nc, &rs, -1, 1), *dl = dup(pl, nl), *dc = dup(pc, nc);
        int32_t *idx = malloc((size_t)N * G * sizeof(int32_t));
        derf_gumbel_quant_forward(q, idx, ys, l, train ? u : NULL, cb, tau, N, G, V, Dv);
        derf_gumbel_quant_backward(train ? dl : NULL, dc, dq, idx, ys, cb, tau, N, G, V, Dv);
        char hdr[128];
        snprintf(hdr, sizeof hdr, "gumbel N=%d G=%d V=%d Dv=%d tau=%.9g train=%d", N, G, V, Dv, (double)tau, train);
        torch_arr in[] = {torch_f("l", l, nl), torch_f("u", u, nl), torch_f("cb", cb, nc), torch_f("dq", dq, nq)};
        torch_reply rep;
        call("gumbel", hdr, in, 4, &rep);
        const float *ti = torch_reply_f(&rep, "idx", (size_t)N * G);
        for (int i = 0; ti && i < N * G; i++)
            if ((float)idx[i] != ti[i]) { fprintf(stderr, "gumbel idx %d: %d vs %g\n", i, idx[i], (double)ti[i]); ok = 0; }
        ok &= ti != NULL;
        ok &= cmp("gumbel q", q, NULL, torch_reply_f(&rep, "q", nq), nq, 0);
        ok &= cmp("gumbel dl", dl, pl, torch_reply_f(&rep, "dl", nl), nl, katol(Dv, 2 / tau));
        ok &= cmp("gumbel dcb", dc, pc, torch_reply_f(&rep, "dcb", nc), nc, katol(N, 1));
        torch_reply_free(&rep);
        free(l); free(u); free(cb); free(dq); free(q); free(ys); free(pl); free(pc); free(dl); free(dc); free(idx);
        if (!ok) fail_msg("%s differs from PyTorch", hdr);
    }
}

static void test_diversity(void **st) {
    require_oracle();
    uint64_t rs = case_seed("diversity");
    int N = 3 + (int)(tu_uniform(&rs) * 20), G = 2, V = 4 + (int)(tu_uniform(&rs) * 30);
    size_t nl = (size_t)N * G * V;
    float scale = (float)(0.1 + tu_uniform(&rs));
    float *l = rnd(nl, &rs, -3, 3), *pl = rnd(nl, &rs, -1, 1), *dl = dup(pl, nl), ppl;
    float loss = derf_quant_diversity(dl, &ppl, l, scale, N, G, V);
    char hdr[96];
    snprintf(hdr, sizeof hdr, "diversity N=%d G=%d V=%d scale=%.9g", N, G, V, (double)scale);
    torch_arr in[] = {torch_f("l", l, nl)};
    torch_reply rep;
    call("diversity", hdr, in, 1, &rep);
    int ok = cmp("diversity loss", &loss, NULL, torch_reply_f(&rep, "loss", 1), 1, 2e-6);
    ok &= cmp("diversity ppl", &ppl, NULL, torch_reply_f(&rep, "ppl", 1), 1, 1e-4);
    ok &= cmp("diversity dl", dl, pl, torch_reply_f(&rep, "dl", nl), nl, 2e-6);
    torch_reply_free(&rep);
    free(l); free(pl); free(dl);
    if (!ok) fail_msg("%s differs from PyTorch", hdr);
}

/* InfoNCE against PyTorch, with fresh shapes and values each run. The mask "negative equals the positive" is
 * decided on the quantizer's codes (rows 4..M-1 get random codes in a small codebook, so equal codes occur).
 * The fixed rows are the regression for BLAS kernels that round identical rows differently: row 1's target is
 * row 0's one ulp away (as the same codes through project_q can come out) with row 0's codes, so their mutual
 * negatives are masked (a comparison of the float vectors kept them); rows 2 and 3 have equal vectors but other
 * codes, so they stay negatives of each other. */
static void test_infonce(void **st) {
    require_oracle();
    uint64_t rs = case_seed("infonce");
    int M = 6 + (int)(tu_uniform(&rs) * 15), Fd = 4 + (int)(tu_uniform(&rs) * 12), K = 3 + (int)(tu_uniform(&rs) * 8);
    int G = 1 + (int)(tu_uniform(&rs) * 2), V = 2 + (int)(tu_uniform(&rs) * 3);
    size_t n = (size_t)M * Fd;
    float temp = 0.1f, scale = (float)(0.5 + tu_uniform(&rs));
    float *c = rnd(n, &rs, -1, 1), *q = rnd(n, &rs, -1, 1);
    int32_t *codes = malloc((size_t)M * G * sizeof(int32_t));
    for (int i = 0; i < M * G; i++) codes[i] = (int32_t)(tu_uniform(&rs) * V);
    for (int g = 0; g < G; g++) {
        codes[G + g] = codes[g];                          /* row 1: row 0's codes */
        codes[2 * G + g] = V + 2 * g;                     /* rows 2, 3: codes no other row has, and unequal */
        codes[3 * G + g] = V + 2 * g + 1;
    }
    memcpy(q + Fd, q, Fd * sizeof(float));
    q[Fd] = nextafterf(q[Fd], 2.0f);                      /* row 1 = row 0 but one ulp in one feature */
    memcpy(q + 3 * Fd, q + 2 * Fd, Fd * sizeof(float));   /* row 3 = row 2 exactly */
    int32_t *neg = malloc((size_t)M * K * sizeof(int32_t));
    for (int m = 0; m < M; m++)
        for (int j = 0; j < K; j++) {
            int r = (int)(tu_uniform(&rs) * (M - 1));
            neg[m * K + j] = r >= m ? r + 1 : r; /* never itself, as fairseq samples */
        }
    neg[0] = 1;
    neg[K] = 0;
    neg[2 * K] = 3;
    neg[3 * K] = 2;
    float *lg = malloc(n * (K + 1) * sizeof(float)), *pc = rnd(n, &rs, -1, 1), *pq = rnd(n, &rs, -1, 1);
    float *dc = dup(pc, n), *dq = dup(pq, n);
    int correct;
    float loss = (float)derf_infonce(lg, &correct, dc, dq, c, q, codes, G, neg, M, Fd, K, temp, scale);
    /* independent of PyTorch: the fixed rows' masks */
    int ok = isinf(lg[1]) && lg[1] < 0 && isinf(lg[(K + 1) + 1]) && lg[(K + 1) + 1] < 0;
    ok &= isfinite(lg[2 * (K + 1) + 1]) && isfinite(lg[3 * (K + 1) + 1]);
    if (!ok) fail_msg("infonce: row 1 (row 0's codes, one ulp away) must be masked, rows 2/3 (equal vectors, other codes) not");
    char hdr[160];
    snprintf(hdr, sizeof hdr, "infonce M=%d F=%d K=%d G=%d temp=%.9g scale=%.9g", M, Fd, K, G, (double)temp, (double)scale);
    torch_arr in[] = {torch_f("c", c, n), torch_f("q", q, n), torch_i("codes", codes, (size_t)M * G),
                      torch_i("neg", neg, (size_t)M * K)};
    torch_reply rep;
    call("infonce", hdr, in, 4, &rep);
    const float *tl = torch_reply_f(&rep, "logits", (size_t)M * (K + 1)), *tc = torch_reply_f(&rep, "correct", 1);
    ok = tl && tc && (float)correct == tc[0];
    size_t ninf = 0;
    for (size_t i = 0; tl && i < (size_t)M * (K + 1); i++) { /* -inf in the same places, values elsewhere */
        if (isinf(tl[i]) || isinf(lg[i])) {
            ok &= isinf(tl[i]) && isinf(lg[i]) && tl[i] < 0 && lg[i] < 0;
            ninf++;
            lg[i] = 0;
        }
    }
    float *tl0 = malloc(n * (K + 1) * sizeof(float));
    for (size_t i = 0; tl && i < (size_t)M * (K + 1); i++) tl0[i] = isinf(tl[i]) ? 0 : tl[i];
    ok &= ninf >= 2;
    ok &= cmp("infonce logits", lg, NULL, tl0, (size_t)M * (K + 1), 2e-4);
    ok &= cmp("infonce loss", &loss, NULL, torch_reply_f(&rep, "loss", 1), 1, 1e-4 * M);
    ok &= cmp("infonce dc", dc, pc, torch_reply_f(&rep, "dc", n), n, 2e-4);
    ok &= cmp("infonce dq", dq, pq, torch_reply_f(&rep, "dq", n), n, 2e-4 * sqrt(K));
    torch_reply_free(&rep);
    free(c); free(q); free(codes); free(neg); free(lg); free(pc); free(pq); free(dc); free(dq); free(tl0);
    if (!ok) fail_msg("%s differs from PyTorch (accuracy %d)", hdr, correct);
}

static int group_setup(void **state) {
    char msg[512];
    torch_oracle_start(msg, sizeof msg);
    fprintf(stderr, "# %s\n", msg);
    return 0; /* a failed start fails every test with the message (see require_oracle) */
}
static int group_teardown(void **state) {
    torch_oracle_stop();
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_selftest),
        cmocka_unit_test(test_linear),      cmocka_unit_test(test_gelu_tanh),
        cmocka_unit_test(test_gelu_erf),    cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_causal), cmocka_unit_test(test_embed),
        cmocka_unit_test(test_add_pos),     cmocka_unit_test(test_patch_embed),
        cmocka_unit_test(test_xent),        cmocka_unit_test(test_xent_soft),
        cmocka_unit_test(test_dropout),     cmocka_unit_test(test_drop_path),
        cmocka_unit_test(test_residual),    cmocka_unit_test(test_mean_pool),
        cmocka_unit_test(test_conv1d),      cmocka_unit_test(test_groupnorm),
        cmocka_unit_test(test_weight_norm), cmocka_unit_test(test_gumbel_quant),
        cmocka_unit_test(test_diversity),   cmocka_unit_test(test_infonce),
    };
    return cmocka_run_group_tests_name("torch_ops", tests, group_setup, group_teardown);
}
