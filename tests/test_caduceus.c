/* test_caduceus.c: Caduceus-PS. Exact reverse-complement equivariance as a property (no torch): the LM logits of
 * rc(x) are the position-reversed, complement-permuted logits of x, and the classifier gives the same logits for
 * x and rc(x), for random weights and inputs; the parameter count of C-GB (470,702: the paper's 471k); MLM masking
 * rates; live PyTorch parity (tools/caduceus_torch_parity.py: the scan as a plain loop with autograd, RCPS with
 * upstream's literal concat/flip wrappers) of logits, loss and every gradient with rmsnorm, derf, dyt, layernorm,
 * LM and classifier. */
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
        cmocka_unit_test(test_torch_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
