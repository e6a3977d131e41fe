/* test_hyena.c: HyenaDNA. The FFT causal convolution (FFTW) against the direct O(T^2) loop in double,
 * forward and every backward term; the parameter count of hyenadna-tiny-1k (436,096, the published 436k);
 * causality of the LM (changing token t changes no logit before t); and live PyTorch parity
 * (tools/hyena_torch_parity.py, float64 reference from upstream's formulas, upstream fftconv): logits,
 * loss and EVERY parameter gradient of tiny configs with layernorm, derf, dyt, rmsnorm, LM and classifier. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derf/hyena.h"
#include "derf/ops.h"
#include "derf/safetensors.h"
#include "parity.h"
#include "testutil.h"

static void conv_case(int B, int T, int C, int withD, uint64_t *s) {
    size_t n = (size_t)B * T * C;
    float *u = malloc(n * 4), *k = malloc((size_t)C * T * 4), *D = malloc((size_t)C * 4), *y = malloc(n * 4),
          *dy = malloc(n * 4), *du = malloc(n * 4), *dk = malloc((size_t)C * T * 4), *dD = malloc((size_t)C * 4);
    double *ry = malloc(n * 8), *rdu = malloc(n * 8), *rdk = calloc((size_t)C * T, 8), *rdD = calloc((size_t)C, 8);
    tu_fill(u, n, s, -1, 1);
    tu_fill(k, (size_t)C * T, s, -1, 1);
    tu_fill(D, (size_t)C, s, -1, 1);
    tu_fill(dy, n, s, -1, 1);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < T; t++) {
                double acc = withD ? (double)D[c] * u[((size_t)b * T + t) * C + c] : 0, g = withD ? (double)D[c] * dy[((size_t)b * T + t) * C + c] : 0;
                for (int q = 0; q <= t; q++) acc += (double)k[(size_t)c * T + t - q] * u[((size_t)b * T + q) * C + c];
                for (int q = t; q < T; q++) g += (double)k[(size_t)c * T + q - t] * dy[((size_t)b * T + q) * C + c];
                ry[((size_t)b * T + t) * C + c] = acc;
                rdu[((size_t)b * T + t) * C + c] = g;
                for (int q = t; q < T; q++) /* dk[c, q-t] += dy[q] u[t] */
                    rdk[(size_t)c * T + q - t] += (double)dy[((size_t)b * T + q) * C + c] * u[((size_t)b * T + t) * C + c];
                if (withD) rdD[c] += (double)dy[((size_t)b * T + t) * C + c] * u[((size_t)b * T + t) * C + c];
            }
    derf_fftconv_forward(y, u, k, withD ? D : NULL, B, T, C);
    /* backward adds: start from 1 and subtract it again */
    for (size_t i = 0; i < n; i++) du[i] = 1.f;
    for (int i = 0; i < C * T; i++) dk[i] = 1.f;
    for (int i = 0; i < C; i++) dD[i] = 1.f;
    derf_fftconv_backward(du, dk, withD ? dD : NULL, dy, u, k, withD ? D : NULL, B, T, C);
    for (size_t i = 0; i < n; i++) du[i] -= 1.f;
    for (int i = 0; i < C * T; i++) dk[i] -= 1.f;
    for (int i = 0; i < C; i++) dD[i] -= 1.f;
    double tol = 2e-5 * sqrt((double)T) * 4;
    char what[64];
    snprintf(what, sizeof what, "fftconv y B%d T%d C%d", B, T, C);
    assert_true(tu_close(what, y, ry, n, tol, 1e-5));
    snprintf(what, sizeof what, "fftconv du B%d T%d C%d", B, T, C);
    assert_true(tu_close(what, du, rdu, n, tol, 1e-5));
    snprintf(what, sizeof what, "fftconv dk B%d T%d C%d", B, T, C);
    assert_true(tu_close(what, dk, rdk, (size_t)C * T, tol * B, 1e-5));
    if (withD) assert_true(tu_close("fftconv dD", dD, rdD, (size_t)C, tol * B, 1e-5));
    free(u); free(k); free(D); free(y); free(dy); free(du); free(dk); free(dD);
    free(ry); free(rdu); free(rdk); free(rdD);
}

static void test_fftconv_direct(void **st) {
    (void)st;
    uint64_t s = tu_seed();
    conv_case(1, 1, 1, 1, &s);
    conv_case(2, 7, 3, 1, &s);
    conv_case(3, 64, 5, 0, &s);
    conv_case(2, 100, 4, 1, &s);   /* not a power of two */
    conv_case(1, 1024, 2, 1, &s);  /* the pretraining length */
}

static void test_param_count(void **st) {
    (void)st;
    derf_hyena_config c;
    char err[256];
    assert_int_equal(derf_hyena_preset(&c, "tiny", 1026, err, sizeof err), 0);
    derf_hyena m;
    assert_int_equal(derf_hyena_build(&m, &c, 1, 8, err, sizeof err), 0);
    assert_int_equal(m.params.total, 436096); /* hyenadna-tiny-1k: 436k (docs/paper.md section 5.5) */
    derf_hyena_free(&m);
    assert_int_equal(derf_hyena_preset(&c, "huge", 1026, err, sizeof err), -1);
    assert_non_null(strstr(err, "tiny"));
    assert_int_equal(derf_hyena_preset(&c, "test", 66, err, sizeof err), 0);
    assert_int_equal(derf_hyena_build(&m, &c, 1, 67, err, sizeof err), -1); /* longer than l_max */
    c.d_model = 0;
    assert_int_equal(derf_hyena_check(&c, err, sizeof err), -1);
}

static void randomize(derf_hyena *m, uint64_t *s, double amp) {
    for (size_t i = 0; i < m->params.total; i++) m->params.params[i] += (float)(amp * (2 * tu_uniform(s) - 1));
}

static void test_causal(void **st) {
    (void)st;
    uint64_t s = tu_seed() ^ 0xca5a1;
    derf_hyena_config c;
    char err[256];
    assert_int_equal(derf_hyena_preset(&c, "test", 66, err, sizeof err), 0);
    derf_hyena m;
    assert_int_equal(derf_hyena_build(&m, &c, 1, 40, err, sizeof err), 0);
    derf_hyena_init(&m, 3);
    randomize(&m, &s, 0.1);
    int32_t tok[40];
    for (int i = 0; i < 40; i++) tok[i] = 7 + (int)(tu_uniform(&s) * 5);
    derf_hyena_forward(&m, tok, NULL, 1, 40);
    float *a = malloc(40 * 16 * 4);
    memcpy(a, m.logits, 40 * 16 * 4);
    tok[25] = tok[25] == 7 ? 8 : 7;
    derf_hyena_forward(&m, tok, NULL, 1, 40);
    for (int i = 0; i < 25 * 16; i++) assert_true(fabsf(a[i] - m.logits[i]) <= 1e-5f * (1 + fabsf(a[i])));
    double diff = 0;
    for (int i = 25 * 16; i < 40 * 16; i++) diff += fabsf(a[i] - m.logits[i]);
    assert_true(diff > 1e-4);
    free(a);
    derf_hyena_free(&m);
}

typedef struct { const char *norm; int classes, B, T; float emb_scale; } pcase;

static void write_case(const char *dir, const pcase *pc, uint64_t *s) {
    derf_hyena_config c;
    char err[256];
    assert_int_equal(derf_hyena_preset(&c, "test", 70, err, sizeof err), 0);
    assert_int_equal(derf_norm_parse(pc->norm, &c.norm, err, sizeof err), 0);
    c.n_classes = pc->classes;
    c.emb_scale = pc->emb_scale;
    derf_hyena m;
    assert_int_equal(derf_hyena_build(&m, &c, pc->B + 1, pc->T + 3, err, sizeof err), 0);
    derf_hyena_init(&m, 11);
    randomize(&m, s, 0.05);
    const int B = pc->B, T = pc->T, n = B * T, nt = pc->classes ? B : n;
    int32_t *tok = malloc((size_t)n * 4), *tgt = malloc((size_t)nt * 4);
    for (int i = 0; i < n; i++) tok[i] = 7 + (int)(tu_uniform(s) * 5);
    for (int i = 0; i < nt; i++)
        tgt[i] = pc->classes ? (int)(tu_uniform(s) * pc->classes) : (i % 5 == 4 ? -1 : 7 + (int)(tu_uniform(s) * 5));
    float loss = derf_hyena_forward(&m, tok, tgt, B, T);
    derf_params_zero_grad(&m.params);
    derf_hyena_backward(&m, 1.0f);
    char keys[16][32], vals[16][128];
    int nk = derf_hyena_config_to_meta(&m.cfg, keys, vals, 16);
    assert_true(nk > 0);
    assert_int_equal(parity_write_seq_case(dir, &m.params, keys, vals, nk, tok, tgt, m.logits, loss, B, T, c.vocab, pc->classes), 0);
    print_message("%-12s classes %d B %d T %d emb_scale %g: loss %.5f\n", pc->norm, pc->classes, B, T, (double)pc->emb_scale, (double)loss);
    free(tok); free(tgt);
    derf_hyena_free(&m);
}

static void test_torch_parity(void **st) {
    (void)st;
    parity_require_torch();
    const pcase cases[] = {
        {"layernorm", 0, 2, 64, 0}, {"derf", 0, 2, 37, 0}, {"dyt", 0, 3, 20, 0}, {"rmsnorm", 0, 2, 16, 0},
        {"layernorm", 3, 3, 30, 0}, {"derf", 2, 4, 25, 0}, {"derf", 0, 2, 21, 3.0f}, {"dyt", 2, 2, 18, 2.0f},
    };
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    char root[] = "/tmp/derf_hyena_parity_XXXXXX";
    assert_non_null(mkdtemp(root));
    uint64_t s = tu_seed() ^ 0x4879ULL;
    for (int i = 0; i < nc; i++) {
        write_case(parity_case_dir(root, i), &cases[i], &s);
    }
    assert_int_equal(parity_run("tools/hyena_torch_parity.py --f64", root, nc), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fftconv_direct),
        cmocka_unit_test(test_param_count),
        cmocka_unit_test(test_causal),
        cmocka_unit_test(test_torch_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
