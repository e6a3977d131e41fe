/* test_diag.c: the training diagnostics (derf/diag.h). The saturated fraction and the token-independent
 * shares of a norm layer against an independent double-precision computation (erf' and tanh' in closed
 * form, scalar and per-channel shifts, LayerNorm's n/a); the unigram model against its closed form; the
 * collapse alarm on a GPT-2 built to collapse (a large token-independent vector added to the residual
 * stream by every block's output biases, so every erf input saturates) and not on the same model healthy,
 * nor on a LayerNorm model with the same biases; and a language-model run logs the diagnostics. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "derf/diag.h"
#include "derf/gpt2.h"
#include "derf/io.h"
#include "derf/lm.h"
#include "testutil.h"

/* independent reference: saturated iff |g'(u)| < 5% of g'(0) (erf, tanh peak at 0) */
static int ref_saturated(const char *fn, double u) {
    if (!strcmp(fn, "erf")) return exp(-u * u) < 0.05;
    double c = cosh(u);
    return 1.0 / (c * c) < 0.05;
}

static void check_layer(const char *spec_txt, const char *fn, int per_channel) {
    enum { N = 300, C = 24 };
    char err[DERF_ERRLEN];
    derf_norm_spec s;
    assert_int_equal(derf_norm_parse(spec_txt, &s, err, sizeof err), 0);
    size_t np = derf_norm_param_count(&s, C);
    float *p = calloc(np, sizeof(float)), *x = malloc(sizeof(float) * N * C), *y = malloc(sizeof(float) * N * C);
    derf_norm_init(&s, C, p);
    uint64_t seed = tu_seed();
    derf_norm_param pr[4];
    int k = derf_norm_params(&s, C, pr);
    double alpha = 1, shift[C];
    memset(shift, 0, sizeof shift);
    for (int i = 0; i < k; i++) {
        if (!strcmp(pr[i].name, "alpha")) { p[pr[i].offset] = 0.8f; alpha = p[pr[i].offset]; }
        if (!strcmp(pr[i].name, "shift"))
            for (size_t j = 0; j < pr[i].numel; j++) p[pr[i].offset + j] = (float)(tu_uniform(&seed) - 0.5);
    }
    for (int i = 0; i < k; i++)
        if (!strcmp(pr[i].name, "shift"))
            for (int c = 0; c < C; c++) shift[c] = p[pr[i].offset + (per_channel ? c : 0)];
    /* rows: a common vector plus per-row noise, so the shares are far from 0 and 1 */
    double common[C];
    for (int c = 0; c < C; c++) common[c] = 4 * (tu_uniform(&seed) - 0.5);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) x[n * C + c] = (float)(common[c] + 6 * (tu_uniform(&seed) - 0.5));
    static derf_diag d;
    derf_diag_init(&d, 1, NULL);
    derf_diag_begin(&d);
    derf_norm_forward(&s, y, NULL, x, p, N / 2, C);               /* two calls: the sums accumulate */
    derf_norm_forward(&s, y + N / 2 * C, NULL, x + N / 2 * C, p, N - N / 2, C);
    derf_diag_end(&d);
    derf_norm_forward(&s, y, NULL, x, p, 1, C);                   /* after end: not recorded */
    derf_norm_forward(&s, y, NULL, x, p, N, C);                   /* y again for the reference below */
    assert_int_equal(d.nlayer, 1);
    const derf_diag_layer *l = &d.layer[0];
    /* reference in double */
    double sat = 0, near = 0, sx[C], sy[C], qx = 0, qy = 0;
    memset(sx, 0, sizeof sx);
    memset(sy, 0, sizeof sy);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double xv = x[n * C + c], yv = y[n * C + c];
            if (fn) {
                double u = alpha * xv + shift[c];
                sat += ref_saturated(fn, u);
                double b = !strcmp(fn, "erf") ? sqrt(log(20.0)) : acosh(sqrt(20.0));
                near += fabs(fabs(u) - b) < 1e-3; /* float rounding may put these on either side */
            }
            sx[c] += xv; sy[c] += yv; qx += xv * xv; qy += yv * yv;
        }
    double mx = 0, my = 0;
    for (int c = 0; c < C; c++) { mx += (sx[c] / N) * (sx[c] / N); my += (sy[c] / N) * (sy[c] / N); }
    const double share_in = mx / (qx / N), share_out = my / (qy / N);
    if (fn) {
        assert_true(fabs(derf_diag_sat(l) * N * C - sat) <= near + 0.5);
        assert_true(sat > 0.05 * N * C && sat < 0.95 * N * C); /* the test exercises both sides */
    } else {
        assert_true(isnan(derf_diag_sat(l)));
    }
    assert_true(fabs(derf_diag_share_in(l) - share_in) < 1e-9);
    assert_true(fabs(derf_diag_share_out(l) - share_out) < 1e-9);
    assert_true(share_in > 0.1 && share_in < 0.9);
    assert_true(fabs(derf_diag_rms_in(l) - sqrt(qx / (N * C))) < 1e-9);
    derf_diag_free(&d);
    free(p); free(x); free(y);
}

static void test_layer_vs_reference(void **state) {
    (void)state;
    check_layer("derf", "erf", 0);
    check_layer("erf:shift=channel", "erf", 1);
    check_layer("dyt", "tanh", 0);
    check_layer("layernorm", NULL, 0);
}

static void test_unigram(void **state) {
    (void)state;
    const uint16_t t[10] = {0, 1, 1, 2, 2, 2, 3, 3, 3, 3};
    double lp[5];
    derf_diag_unigram(t, 10, 5, lp);
    const double z = 10 + 0.5 * 5, c[5] = {1, 2, 3, 4, 0};
    for (int v = 0; v < 5; v++) assert_true(fabs(lp[v] - log((c[v] + 0.5) / z)) < 1e-12);
    const int32_t tg[4] = {3, -1, 0, 3};
    assert_true(fabs(derf_diag_unigram_xent(lp, tg, 4) - (-(2 * lp[3] + lp[0]) / 3)) < 1e-12);
}

/* a test-preset GPT-2; collapsed: every block's output biases add the same large vector to the stream */
static void run_model(const char *norm, int collapse, derf_diag *d) {
    char err[DERF_ERRLEN];
    derf_gpt2_config cfg;
    assert_int_equal(derf_gpt2_preset(&cfg, "test", err, sizeof err), 0);
    assert_int_equal(derf_norm_parse(norm, &cfg.norm, err, sizeof err), 0);
    derf_gpt2 m;
    assert_int_equal(derf_gpt2_build(&m, &cfg, 4, 16, err, sizeof err), 0);
    derf_gpt2_init(&m, 7);
    if (collapse) {
        uint64_t s = 99;
        float dir[16];
        for (int c = 0; c < 16; c++) dir[c] = tu_uniform(&s) < 0.5 ? -6.f : 6.f;
        for (int l = 0; l < cfg.n_layer; l++) {
            char name[64];
            snprintf(name, sizeof name, "h.%d.mlp.c_proj.bias", l);
            const derf_tensor *t = derf_params_find(&m.params, name);
            assert_non_null(t);
            memcpy(m.params.params + t->offset, dir, sizeof dir);
        }
    }
    int32_t tok[64], tgt[64];
    uint64_t s = 5;
    for (int i = 0; i < 64; i++) { tok[i] = (int32_t)(tu_uniform(&s) * 64); tgt[i] = (int32_t)(tu_uniform(&s) * 64); }
    derf_diag_init(d, 1, &m.params);
    derf_diag_begin(d);
    derf_gpt2_forward(&m, tok, tgt, 4, 16);
    derf_diag_end(d);
    assert_int_equal(d->nlayer, 2 * cfg.n_layer + 1);
    assert_string_equal(d->layer[0].name, "h.0.ln_1");
    assert_string_equal(d->layer[d->nlayer - 1].name, "ln_f");
    d->names = NULL; /* the model is freed: the names are copies, the table pointer is not */
    derf_gpt2_free(&m);
}

static void test_alarm(void **state) {
    (void)state;
    static derf_diag d;
    run_model("derf", 0, &d);
    assert_false(derf_diag_alarm(&d));
    assert_true(derf_diag_sat(&d.layer[d.nlayer - 1]) < 0.1);
    assert_true(derf_diag_share_in(&d.layer[d.nlayer - 1]) < 0.5);
    derf_diag_free(&d);
    run_model("derf", 1, &d);
    assert_true(derf_diag_alarm(&d));
    assert_true(derf_diag_sat(&d.layer[d.nlayer - 1]) > 0.9);
    assert_true(derf_diag_share_in(&d.layer[d.nlayer - 1]) > 0.9);
    /* the report says so */
    char path[] = "/tmp/derf-diag-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    FILE *f = fopen(path, "w");
    derf_diag_report(&d, 40, f, f, 0);
    fclose(f);
    void *buf;
    size_t len;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_io_read_file(path, 1 << 20, &buf, &len, err, sizeof err), 0);
    assert_non_null(strstr(buf, "\"type\":\"diag\",\"step\":40"));
    assert_non_null(strstr(buf, "\"alarm\":true"));
    assert_non_null(strstr(buf, "COLLAPSE"));
    free(buf);
    unlink(path);
    derf_diag_free(&d);
    /* LayerNorm with the same biases: scale-invariant, nothing saturates */
    run_model("layernorm", 1, &d);
    assert_false(derf_diag_alarm(&d));
    assert_true(isnan(derf_diag_sat(&d.layer[0])));
    derf_diag_free(&d);
    /* the unigram-gap alarm: only where the caller asks for it */
    derf_diag_init(&d, 1, NULL);
    derf_diag_set_lm(&d, 3.01, 3.02, 0);
    assert_false(derf_diag_alarm(&d));
    derf_diag_set_lm(&d, 3.01, 3.02, 1);
    assert_true(derf_diag_alarm(&d));
    derf_diag_set_lm(&d, 2.5, 3.02, 1);
    assert_false(derf_diag_alarm(&d));
    derf_diag_free(&d);
}

/* a language-model run with --diag-every logs one diag record per interval, steps 0, 4, 8 */
static void test_lm_logs(void **state) {
    (void)state;
    char dir[] = "/tmp/derf-diag-lm-XXXXXX", path[800], err[DERF_ERRLEN];
    assert_non_null(mkdtemp(dir));
    static uint16_t t[3000];
    uint64_t s = 3;
    for (int i = 0; i < 3000; i++) t[i] = (uint16_t)(tu_uniform(&s) * 64);
    snprintf(path, sizeof path, "%s/train.bin", dir);
    assert_int_equal(derf_shard_write(path, t, 3000, 64, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/val.bin", dir);
    assert_int_equal(derf_shard_write(path, t, 500, 64, err, sizeof err), 0);
    derf_lm_opts o;
    derf_lm_opts_default(&o);
    derf_gpt2_preset(&o.model, "test", err, sizeof err);
    o.model.vocab = 0;
    o.data = dir;
    o.steps = 10; o.batch = 2; o.warmup = 2; o.eval_every = 0; o.eval_windows = 2; o.eval_train_loss = 0;
    o.diag_every = 4; o.quiet = 1;
    char out[700];
    snprintf(out, sizeof out, "%s/run", dir);
    o.out = out;
    static derf_lm_result r;
    assert_int_equal(derf_lm_train(&o, &r, err, sizeof err), 0);
    assert_int_equal(r.diag_step, 8);
    assert_true(r.diag_sat_max >= 0 && r.diag_sat_max <= 1);
    assert_true(isfinite(r.diag_gap));
    snprintf(path, sizeof path, "%s/log.jsonl", out);
    assert_int_equal(tu_count_in_file(path, "\"type\":\"diag\""), 3);
    assert_int_equal(tu_count_in_file(path, "\"type\":\"diag\",\"step\":8,"), 1);
    assert_int_equal(tu_count_in_file(path, "\"name\":\"h.1.ln_2\""), 3);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_vs_reference),
        cmocka_unit_test(test_unigram),
        cmocka_unit_test(test_alarm),
        cmocka_unit_test(test_lm_logs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
