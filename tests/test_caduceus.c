/* test_caduceus.c: Caduceus-PS. Exact reverse-complement equivariance as a property (no torch): the LM logits of
 * rc(x) are the position-reversed, complement-permuted logits of x, and the classifier gives the same logits for
 * x and rc(x), for random weights and inputs; the parameter count of C-GB (470,702: the paper's 471k); MLM masking
 * rates; live PyTorch parity (tools/caduceus_torch_parity.py: the scan as a plain loop with autograd, RCPS with
 * upstream's literal concat/flip wrappers) of logits, loss and every gradient with rmsnorm, derf, dyt, layernorm,
 * LM and classifier; the selective scan (src/models/scan.c: the AVX-512 form and the plain one) forward and
 * backward against a double-precision loop on random inputs of odd shapes, and Mamba's point-wise functions
 * against double libm. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derf/caduceus.h"
#include "derf/dna.h"
#include "models/scan.h"
#include "parity.h"
#include "testutil.h"

static void randomize(derf_caduceus *m, uint64_t *s, double amp) {
    for (size_t i = 0; i < m->params.total; i++) m->params.params[i] += (float)(amp * (2 * tu_uniform(s) - 1));
}

/* the test preset with this norm (and learnable embedding scale, 0: none), initialised */
static void build_scaled(derf_caduceus *m, const char *norm, int classes, int B, int T, float emb_scale) {
    derf_caduceus_config c;
    char err[256];
    assert_int_equal(derf_caduceus_preset(&c, "test", err, sizeof err), 0);
    assert_int_equal(derf_norm_parse(norm, &c.norm, err, sizeof err), 0);
    c.n_classes = classes;
    c.emb_scale = emb_scale;
    assert_int_equal(derf_caduceus_build(m, &c, B, T, err, sizeof err), 0);
    derf_caduceus_init(m, 21);
}

static void build(derf_caduceus *m, const char *norm, int classes, int B, int T) { build_scaled(m, norm, classes, B, T, 0); }

static void test_presets(void **st) {
    (void)st;
    derf_caduceus_config c;
    char err[256];
    assert_int_equal(derf_caduceus_preset(&c, "gb", err, sizeof err), 0);
    derf_caduceus m;
    assert_int_equal(derf_caduceus_build(&m, &c, 1, 4, err, sizeof err), 0);
    assert_int_equal(m.params.total, 470702); /* d 118, L 4: the Caduceus paper's 471k GB model */
    derf_caduceus_free(&m);
    assert_int_equal(derf_caduceus_preset(&c, "nope", err, sizeof err), -1);
    assert_non_null(strstr(err, "ct"));
    c.d_state = 0;
    assert_int_equal(derf_caduceus_check(&c, err, sizeof err), -1);
}

static void test_rc_equivariance(void **st) {
    (void)st;
    uint64_t s = tu_seed();
    const char *norms[] = {"rmsnorm", "derf", "dyt"};
    for (int k = 0; k < 3; k++) {
        const int B = 3, T = 29, V = 16;
        derf_caduceus m;
        build(&m, norms[k], 0, B, T);
        randomize(&m, &s, 0.3);
        int32_t x[B * T], r[B * T];
        for (int i = 0; i < B * T; i++) x[i] = DERF_DNA_A + (int)(tu_uniform(&s) * 5);
        x[5] = DERF_DNA_MASK; /* specials are their own complement */
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) r[b * T + t] = derf_dna_complement(x[b * T + T - 1 - t]);
        float *lx = malloc(sizeof(float) * B * T * V);
        derf_caduceus_forward(&m, x, NULL, B, T);
        memcpy(lx, m.logits, sizeof(float) * B * T * V);
        derf_caduceus_forward(&m, r, NULL, B, T);
        double worst = 0, scale = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int v = 0; v < V; v++) {
                    double a = m.logits[(b * T + t) * V + v], want = lx[(b * T + T - 1 - t) * V + derf_dna_complement(v)];
                    worst = fmax(worst, fabs(a - want));
                    scale = fmax(scale, fabs(want));
                }
        print_message("%-8s LM: max |logits(rc x) - rc(logits(x))| = %.2e (max |logit| %.2f)\n", norms[k], worst, scale);
        assert_true(worst <= 1e-6 * fmax(1, scale));
        /* a plain bidirectional model would not be equivariant: the property is not vacuous */
        double moved = 0;
        for (int i = 0; i < B * T * V; i++) moved = fmax(moved, fabs(m.logits[i] - lx[i]));
        assert_true(moved > 1e-3);
        free(lx);
        derf_caduceus_free(&m);
        /* the classifier: invariant */
        build(&m, norms[k], 3, B, T);
        randomize(&m, &s, 0.3);
        float cx[B * 3];
        derf_caduceus_forward(&m, x, NULL, B, T);
        memcpy(cx, m.logits, sizeof cx);
        derf_caduceus_forward(&m, r, NULL, B, T);
        for (int i = 0; i < B * 3; i++) assert_true(fabsf(cx[i] - m.logits[i]) <= 1e-6f * fmaxf(1.f, fabsf(cx[i])));
        derf_caduceus_free(&m);
    }
}

static void test_mlm_mask(void **st) {
    (void)st;
    const int n = 200000;
    int32_t *tok = malloc(sizeof(int32_t) * n), *orig = malloc(sizeof(int32_t) * n), *tgt = malloc(sizeof(int32_t) * n);
    uint64_t s = tu_seed();
    for (int i = 0; i < n; i++) orig[i] = tok[i] = i % 100 == 0 ? DERF_DNA_SEP : DERF_DNA_A + (int)(tu_uniform(&s) * 4);
    derf_rng r;
    derf_rng_seed(&r, s, 1);
    derf_mlm_mask(tok, tgt, n, 0.15f, &r);
    int chosen = 0, masked = 0, same = 0, bases = 0;
    for (int i = 0; i < n; i++) {
        if (orig[i] == DERF_DNA_SEP) { assert_int_equal(tgt[i], -1); assert_int_equal(tok[i], DERF_DNA_SEP); continue; }
        bases++;
        if (tgt[i] < 0) { assert_int_equal(tok[i], orig[i]); continue; }
        assert_int_equal(tgt[i], orig[i]);
        chosen++;
        masked += tok[i] == DERF_DNA_MASK;
        same += tok[i] == orig[i];
        assert_true(tok[i] == DERF_DNA_MASK || (tok[i] >= DERF_DNA_A && tok[i] <= DERF_DNA_T));
    }
    /* binomial: 5 standard deviations */
    double p = (double)chosen / bases, pm = (double)masked / chosen, ps = (double)same / chosen;
    assert_true(fabs(p - 0.15) < 5 * sqrt(0.15 * 0.85 / bases));
    assert_true(fabs(pm - 0.8) < 5 * sqrt(0.8 * 0.2 / chosen));
    /* unchanged: 10% kept + 1/4 of the 10% random draws that hit the same base */
    assert_true(fabs(ps - 0.125) < 5 * sqrt(0.125 * 0.875 / chosen));
    free(tok); free(orig); free(tgt);
}

/* ---- the selective scan against a plain double-precision loop (scan.h's equations) */

typedef struct { int NB, T, E, N, R; } scase;

/* y; then from dy: dx, ddelta, dB/dC (into the ddbc columns R..), dA_log, dD (into the given values) */
static void scan_double(double *y, double *dx, double *ddelta, double *ddbc, double *dA_log, double *dD, const float *dy,
                        const float *x, const float *delta, const float *dbc, const float *A_log, const float *D, const scase *c) {
    const int T = c->T, E = c->E, N = c->N, Sd = c->R + 2 * c->N, R = c->R;
    double *S = malloc(sizeof(double) * (size_t)(T + 1) * N), *G = malloc(sizeof(double) * (size_t)N);
    for (int b = 0; b < c->NB; b++)
        for (int e = 0; e < E; e++) {
            for (int n = 0; n < N; n++) S[n] = 0;
            for (int t = 0; t < T; t++) {
                const size_t r = (size_t)b * T + t, k = r * E + e;
                double acc = (double)D[e] * x[k];
                for (int n = 0; n < N; n++) {
                    const double A = -exp((double)A_log[e * N + n]), dt = delta[k];
                    S[(size_t)(t + 1) * N + n] = exp(dt * A) * S[(size_t)t * N + n] + dt * dbc[r * Sd + R + n] * x[k];
                    acc += (double)dbc[r * Sd + R + N + n] * S[(size_t)(t + 1) * N + n];
                }
                y[k] = acc;
            }
            for (int n = 0; n < N; n++) G[n] = 0;
            for (int t = T - 1; t >= 0; t--) {
                const size_t r = (size_t)b * T + t, k = r * E + e;
                const double g = dy[k], dt = delta[k], xv = x[k];
                double ddt = 0, dxv = D[e] * g;
                dD[e] += g * xv;
                for (int n = 0; n < N; n++) {
                    const double A = -exp((double)A_log[e * N + n]), ab = exp(dt * A), Bn = dbc[r * Sd + R + n],
                                 Cn = dbc[r * Sd + R + N + n], st = S[(size_t)(t + 1) * N + n], sp = S[(size_t)t * N + n];
                    ddbc[r * Sd + R + N + n] += g * st;
                    G[n] += Cn * g;
                    ddt += G[n] * (A * ab * sp + Bn * xv);
                    dA_log[e * N + n] += G[n] * dt * ab * sp * A;
                    ddbc[r * Sd + R + n] += G[n] * dt * xv;
                    dxv += G[n] * dt * Bn;
                    G[n] *= ab;
                }
                ddelta[k] = ddt;
                dx[k] = dxv;
            }
        }
    free(S);
    free(G);
}

static double maxabs(const double *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

/* float result close to the double one: |a - b| <= 1e-4 |b| + 2e-5 max|b| (fp32 sums over up to T N terms) */
static int scan_close(const char *what, const float *a, const double *b, size_t n) {
    return tu_close(what, a, b, n, 2e-5 * fmax(maxabs(b, n), 1e-30), 1e-4);
}

static void test_scan_vs_double(void **st) {
    (void)st;
    const scase cases[] = {{1, 1, 1, 1, 1}, {2, 37, 19, 16, 3}, {3, 65, 40, 5, 2}, {1, 50, 16, 33, 1}, {2, 300, 33, 16, 4},
                           {1, 7, 17, 4, 1}, {1, 128, 16, 16, 2}, {2, 129, 20, 3, 1}};
    uint64_t s = tu_seed() ^ 0x5CA7ULL;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const scase *c = &cases[ci];
        const int Sd = c->R + 2 * c->N;
        const size_t n = (size_t)c->NB * c->T * c->E, nd = (size_t)c->NB * c->T * Sd, nA = (size_t)c->E * c->N;
        float *x = malloc(sizeof(float) * n), *delta = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n),
              *dbc = malloc(sizeof(float) * nd), *A_log = malloc(sizeof(float) * nA), *D = malloc(sizeof(float) * (size_t)c->E);
        tu_fill(x, n, &s, -1, 1);
        tu_fill(dy, n, &s, -1, 1);
        tu_fill(dbc, nd, &s, -1, 1);
        tu_fill(A_log, nA, &s, -1, 3);           /* A in [-20, -0.37] */
        tu_fill(D, (size_t)c->E, &s, -1, 2);
        for (size_t i = 0; i < n; i++) /* softplus outputs: mostly 1e-3..1, some up to 8 (exp(delta A) underflows) */
            delta[i] = (float)(tu_uniform(&s) < 0.05 ? 8 * tu_uniform(&s) : exp(log(1e-3) + tu_uniform(&s) * log(1e3)));
        double *y = malloc(sizeof(double) * n), *dx = malloc(sizeof(double) * n), *ddl = malloc(sizeof(double) * n),
               *ddbc = malloc(sizeof(double) * nd), *dAl = malloc(sizeof(double) * nA), *dD = malloc(sizeof(double) * (size_t)c->E);
        float *ddbc0 = malloc(sizeof(float) * nd), *dAl0 = malloc(sizeof(float) * nA), *dD0 = malloc(sizeof(float) * (size_t)c->E);
        tu_fill(ddbc0, nd, &s, -1, 1); /* the backward adds into these */
        tu_fill(dAl0, nA, &s, -1, 1);
        tu_fill(dD0, (size_t)c->E, &s, -1, 1);
        for (size_t i = 0; i < nd; i++) ddbc[i] = ddbc0[i];
        for (size_t i = 0; i < nA; i++) dAl[i] = dAl0[i];
        for (int i = 0; i < c->E; i++) dD[i] = dD0[i];
        scan_double(y, dx, ddl, ddbc, dAl, dD, dy, x, delta, dbc, A_log, D, c);
        /* 0: derf_scan_* (AVX-512 where built with it) with checkpoints, 2: without, 1: the _ref loops */
        float *ckpt = aligned_alloc(64, (derf_scan_ckpt_floats(c->NB, c->T, c->E, c->N) * sizeof(float) + 63) / 64 * 64);
        for (int form = 0; form < 3; form++) {
            float *fy = malloc(sizeof(float) * n), *fdx = malloc(sizeof(float) * n), *fdl = malloc(sizeof(float) * n),
                  *fddbc = malloc(sizeof(float) * nd), *fdAl = malloc(sizeof(float) * nA), *fdD = malloc(sizeof(float) * (size_t)c->E);
            memcpy(fddbc, ddbc0, sizeof(float) * nd);
            memcpy(fdAl, dAl0, sizeof(float) * nA);
            memcpy(fdD, dD0, sizeof(float) * (size_t)c->E);
            if (form == 1) {
                derf_scan_forward_ref(fy, x, delta, dbc, Sd, c->R, A_log, D, c->NB, c->T, c->E, c->N);
                derf_scan_backward_ref(fdx, fdl, fddbc, fdAl, fdD, dy, x, delta, dbc, Sd, c->R, A_log, D, c->NB, c->T, c->E, c->N);
            } else {
                derf_scan_forward(fy, x, delta, dbc, Sd, c->R, A_log, D, c->NB, c->T, c->E, c->N, form ? NULL : ckpt);
                derf_scan_backward(fdx, fdl, fddbc, fdAl, fdD, dy, x, delta, dbc, Sd, c->R, A_log, D, c->NB, c->T, c->E, c->N,
                                   form ? NULL : ckpt);
            }
            print_message("scan %s NB %d T %d E %d N %d R %d\n", form == 1 ? "ref" : form ? "fast, no checkpoints" : "fast", c->NB,
                          c->T, c->E, c->N, c->R);
            assert_true(scan_close("y", fy, y, n));
            assert_true(scan_close("dx", fdx, dx, n));
            assert_true(scan_close("ddelta", fdl, ddl, n));
            assert_true(scan_close("ddbc", fddbc, ddbc, nd)); /* the dt columns [0,R) untouched */
            assert_true(scan_close("dA_log", fdAl, dAl, nA));
            assert_true(scan_close("dD", fdD, dD, (size_t)c->E));
            free(fy); free(fdx); free(fdl); free(fddbc); free(fdAl); free(fdD);
        }
        free(ckpt);
        free(x); free(delta); free(dy); free(dbc); free(A_log); free(D);
        free(y); free(dx); free(ddl); free(ddbc); free(dAl); free(dD); free(ddbc0); free(dAl0); free(dD0);
    }
}

/* silu, silu', sigmoid, softplus (scan.h) against double libm on a dense grid of [-40, 40] and special points */
static void test_pointwise(void **st) {
    (void)st;
    double worst[4] = {0};
    const int M = 400001;
    for (int i = 0; i <= M + 6; i++) {
        const float sp[] = {0.f, -0.f, 1e-30f, -1e-30f, 20.f, -88.f, 88.f};
        const float x = i < M ? (float)(-40.0 + 80.0 * i / (M - 1)) : sp[i - M];
        const double xd = x, sg = 1 / (1 + exp(-xd)), ref[4] = {xd * sg, sg * (1 + xd * (1 - sg)), sg, log1p(exp(xd))};
        const float got[4] = {derf_siluf(x), derf_dsiluf(x), derf_sigmoidf(x), derf_softplusf(x)};
        for (int k = 0; k < 4; k++) {
            /* relative error; silu' = sg (1 + x (1 - sg)) crosses 0 near x = -1.28: relative to sg (1 + |x| (1 - sg)) */
            double den = k == 1 ? fmax(fabs(ref[k]), sg * (1 + fabs(xd) * (1 - sg))) : fmax(fabs(ref[k]), 1e-37);
            worst[k] = fmax(worst[k], fabs(got[k] - ref[k]) / den);
        }
    }
    print_message("max relative error: silu %.2e, silu' %.2e, sigmoid %.2e, softplus %.2e\n", worst[0], worst[1], worst[2],
                  worst[3]);
    assert_true(worst[0] <= 4e-7);
    assert_true(worst[1] <= 1.5e-6);
    assert_true(worst[2] <= 4e-7);
    assert_true(worst[3] <= 4e-7);
    assert_true(derf_softplusf(100.f) == 100.f && derf_softplusf(-200.f) == 0.f && isnan(derf_softplusf(NAN)));
}

typedef struct { const char *norm; int classes, B, T; float emb_scale; } pcase;

static void test_torch_parity(void **st) {
    (void)st;
    parity_require_torch();
    const pcase cases[] = {{"rmsnorm", 0, 2, 32, 0}, {"derf", 0, 2, 19, 0}, {"dyt", 0, 3, 12, 0}, {"layernorm", 0, 1, 16, 0},
                           {"rmsnorm", 3, 3, 20, 0}, {"derf", 2, 2, 24, 0}, {"derf", 0, 2, 15, 3.0f}, {"dyt", 2, 2, 10, 2.0f}};
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    char root[] = "/tmp/derf_caduceus_parity_XXXXXX";
    assert_non_null(mkdtemp(root));
    uint64_t s = tu_seed() ^ 0xCADULL;
    for (int i = 0; i < nc; i++) {
        const pcase *pc = &cases[i];
        const char *dir = parity_case_dir(root, i);
        derf_caduceus m;
        build_scaled(&m, pc->norm, pc->classes, pc->B + 1, pc->T + 2, pc->emb_scale);
        randomize(&m, &s, 0.1);
        const int B = pc->B, T = pc->T, n = B * T, nt = pc->classes ? B : n;
        int32_t *tok = malloc(sizeof(int32_t) * n), *tgt = malloc(sizeof(int32_t) * nt);
        for (int k = 0; k < n; k++) tok[k] = k % 7 == 3 ? DERF_DNA_MASK : DERF_DNA_A + (int)(tu_uniform(&s) * 5);
        for (int k = 0; k < nt; k++)
            tgt[k] = pc->classes ? (int)(tu_uniform(&s) * pc->classes) : (k % 3 ? -1 : DERF_DNA_A + (int)(tu_uniform(&s) * 4));
        float loss = derf_caduceus_forward(&m, tok, tgt, B, T);
        derf_params_zero_grad(&m.params);
        derf_caduceus_backward(&m, 1.0f);
        char keys[16][32], vals[16][128];
        int nk = derf_caduceus_config_to_meta(&m.cfg, keys, vals, 16);
        assert_true(nk > 0);
        assert_int_equal(parity_write_seq_case(dir, &m.params, keys, vals, nk, tok, tgt, m.logits, loss, B, T, m.cfg.vocab,
                                               pc->classes), 0);
        print_message("%-10s classes %d B %d T %d: loss %.5f\n", pc->norm, pc->classes, B, T, (double)loss);
        free(tok);
        free(tgt);
        derf_caduceus_free(&m);
    }
    assert_int_equal(parity_run("tools/caduceus_torch_parity.py --f64", root, nc), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_rc_equivariance),
        cmocka_unit_test(test_mlm_mask),
        cmocka_unit_test(test_scan_vs_double),
        cmocka_unit_test(test_pointwise),
        cmocka_unit_test(test_torch_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
