/* test_autosearch.c: `derf study autosearch`: the property filter and the shape deduplication against
 * facts known in closed form (arcsinh is unbounded, erf(u + 0.5) is not zero-centred, erf clipped at 2 is
 * erf, asinh clipped at 1 is arcsinhclip, ...); Welch's t-test against hand-computed values; successive
 * halving with a fake trainer whose accuracies are known (the promoted set is the known top fraction plus
 * the controls); a rerun trains nothing; a tight --budget-hours stops the search before its last rung. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/autosearch.h"
#include "derf/norm.h"

static char tmpdir[] = "/tmp/derf_test_autosearch.XXXXXX";
#include "tmpfiles.h"

static const derf_as_cand *find(const derf_as_cand *c, int n, const char *spec) {
    for (int i = 0; i < n; i++)
        if (!strcmp(c[i].spec, spec)) return &c[i];
    return NULL;
}

static void test_filter(void **state) {
    (void)state;
    char err[256];
    derf_as_cand *c;
    derf_as_filter_stats st;
    derf_as_grid g = {.clip = {0.5, 1, 2}, .nclip = 3, .mix = {0.1}, .nmix = 1, .shift = {0.5}, .nshift = 1,
                      .flat = {0.5}, .nflat = 1, .neg = 1, .alpha = {0.5}, .nalpha = 1};
    int n = derf_as_candidates(&g, &c, &st, err, sizeof err);
    assert_true(n > 0);
    assert_int_equal(st.generated, n);
    assert_int_equal(st.generated, st.kept + st.duplicates + st.not_zero_centred + st.unbounded +
                                       st.not_center_sensitive + st.not_monotone);
    struct { const char *spec, *why; } want[] = {
        {"erf", NULL},
        {"tanh", NULL},
        {"erf+clip=0.5", NULL},                        /* a new shape: erf saturating at +-0.5 */
        {"arcsinh", "unbounded"},                      /* asinh(u) ~ log(2u) */
        {"erf+mix=0.1", "unbounded"},                  /* 0.1 u grows without bound */
        {"erf+hshift=0.5", "not zero-centred"},        /* erf(0.5) != 0 */
        {"erf+vshift=0.5", "not zero-centred"},
        {"erf+flat=0.5", "not center-sensitive"},      /* zero on [-0.5, 0.5] */
        {"logquad+clip=1", "not center-sensitive"},    /* log(1 + u^2) has slope 0 at 0 */
        {"erf+neg", "not center-sensitive"},           /* slope -2/sqrt(pi) at 0 */
        {"sin+clip=0.5", "not monotone increasing"},   /* sin turns back down at pi/2 */
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const derf_as_cand *k = find(c, n, want[i].spec);
        assert_non_null(k);
        if (!want[i].why) assert_null(k->why);
        else {
            assert_non_null(k->why);
            assert_string_equal(k->why, want[i].why);
        }
    }
    /* duplicates by shape: erf never exceeds 1, so clipping at 1 or 2 changes nothing; asinh clipped at 1
     * is the registered arcsinhclip, and tanh clipped at 2 is tanh */
    struct { const char *spec, *of; } dup[] = {
        {"erf+clip=2", "erf"}, {"erf+clip=1", "erf"}, {"tanh+clip=2", "tanh"}, {"arcsinh+clip=1", "arcsinhclip"},
        {"linear+clip=1", "linearclip"},
    };
    for (size_t i = 0; i < sizeof dup / sizeof dup[0]; i++) {
        const derf_as_cand *k = find(c, n, dup[i].spec);
        assert_non_null(k);
        assert_non_null(k->why);
        assert_string_equal(k->dup_of, dup[i].of);
    }
    free(c);
}

static void test_welch(void **state) {
    (void)state;
    double t, df;
    /* a = {1, 2, 3}, b = {4, 5, 6}: means 2 and 5, sd 1 each; se = sqrt(1/3 + 1/3); df = (2/3)^2 / (2 (1/3)^2 / 2) = 4 */
    assert_int_equal(derf_welch(2, 1, 3, 5, 1, 3, &t, &df), 1); /* |t| = 3.674 > 2.776 */
    assert_float_equal(t, -3 / sqrt(2.0 / 3), 1e-12);
    assert_float_equal(df, 4, 1e-12);
    /* means 2 and 3: t = -1.2247, within noise */
    assert_int_equal(derf_welch(2, 1, 3, 3, 1, 3, &t, &df), 0);
    /* unequal spread: sa 1 (n 4), sb 3 (n 2): va 0.25, vb 4.5; df = 4.75^2 / (0.0625/3 + 20.25/1) = 1.1131 */
    assert_int_equal(derf_welch(10, 1, 4, 2, 3, 2, &t, &df), 0); /* t 3.671 < 12.706 at df 1 */
    assert_float_equal(df, 4.75 * 4.75 / (0.0625 / 3 + 20.25), 1e-12);
    assert_int_equal(derf_welch(2, 1, 1, 3, 1, 3, &t, &df), -1);
}

/* Fake trainings: accuracy known from the spec (a hash), so the best candidates are known in advance. */
typedef struct { int calls; } counter;

static double fake_acc(const char *spec) {
    unsigned h = 2166136261u;
    for (const char *p = spec; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return 0.70 + (h % 1000) * 1e-4;
}

static int fake_train(const derf_cls_opts *o, derf_cls_result *r, char *err, size_t errlen, void *ctx) {
    (void)err; (void)errlen;
    ((counter *)ctx)->calls++;
    memset(r, 0, sizeof *r);
    char spec[128];
    derf_norm_format(&o->model.norm, spec, sizeof spec);
    r->test_acc = (float)(fake_acc(spec) + 1e-4 * (double)o->seed); /* a small seed effect */
    r->test_acc_ema = -1;
    r->train_loss_eval = r->train_loss_eval_ema = -1;
    r->steps = r->total_steps = 60000 / o->batch * o->epochs; /* the whole training set each epoch */
    r->epochs_done = o->epochs;
    r->seconds = 36.0 * o->epochs; /* 36 s per epoch */
    return 0;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void setup_cfg(derf_as_cfg *cfg, const char *out, counter *k) {
    memset(cfg, 0, sizeof *cfg);
    derf_cls_opts_default(&cfg->base);
    cfg->base.batch = 120; /* 500 steps of 120 images: one epoch of 60,000 */
    cfg->out = out;
    cfg->nrungs = 2;
    cfg->epochs[0] = 1; cfg->epochs[1] = 3;
    cfg->seeds[0] = 1; cfg->seeds[1] = 2;
    cfg->eta = 4;
    cfg->min_keep = 2;
    cfg->threads = 1;
    cfg->quiet = 1;
    cfg->train = fake_train;
    cfg->ctx = k;
}

static void test_halving(void **state) {
    (void)state;
    derf_as_grid g = {.clip = {0.5}, .nclip = 1, .mix = {0.1}, .nmix = 1, .shift = {0.5}, .nshift = 1, .flat = {0.5},
                      .nflat = 1, .neg = 0, .alpha = {0.5}, .nalpha = 1};
    char err[256];
    derf_as_cand *c;
    derf_as_filter_stats st;
    int n = derf_as_candidates(&g, &c, &st, err, sizeof err);
    assert_true(n > 0);
    /* the known top quarter of the kept candidates that are not controls */
    double acc[256];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!c[i].why && strcmp(c[i].spec, "erf")) acc[m++] = fake_acc(c[i].spec);
    qsort(acc, (size_t)m, sizeof *acc, cmp_desc);
    int keep = (int)ceil(m / 4.0);
    double cut = acc[keep - 1];

    counter k = {0};
    derf_as_cfg cfg;
    setup_cfg(&cfg, tp("search"), &k);
    derf_as_outcome res;
    assert_int_equal(derf_as_run(&cfg, &g, &res, err, sizeof err), 0);
    assert_int_equal(res.rungs_done, 2);
    assert_int_equal(res.rung_size[0], m + 3);
    assert_int_equal(res.rung_size[1], keep + 3);
    assert_int_equal(k.calls, (m + 3) + 2 * (keep + 3));
    assert_int_equal(res.nfinal, keep + 3);
    int controls = 0;
    for (int i = 0; i < res.nfinal; i++) {
        const derf_as_final *f = &res.final[i];
        controls += f->control;
        if (!f->control) assert_true(fake_acc(f->spec) >= cut);
        if (i) assert_true(res.final[i - 1].st.acc_mean >= f->st.acc_mean);
        assert_int_equal(f->st.n_ok, 2);
        assert_true(isfinite(f->cost_rel) && f->cost_rel > 0);
    }
    assert_int_equal(controls, 3);
    derf_as_outcome_free(&res);
    assert_non_null(fopen(tp("search/report.md"), "r"));
    assert_non_null(fopen(tp("search/pareto.svg"), "r"));

    /* a rerun reads everything back */
    k.calls = 0;
    assert_int_equal(derf_as_run(&cfg, &g, &res, err, sizeof err), 0);
    assert_int_equal(k.calls, 0);
    assert_int_equal(res.rungs_done, 2);
    derf_as_outcome_free(&res);
    free(c);
}

static void test_budget(void **state) {
    (void)state;
    derf_as_grid g = {.clip = {0.5}, .nclip = 1, .mix = {0.1}, .nmix = 1, .shift = {0.5}, .nshift = 1, .flat = {0.5},
                      .nflat = 1, .neg = 0, .alpha = {0.5}, .nalpha = 1};
    counter k = {0};
    derf_as_cfg cfg;
    setup_cfg(&cfg, tp("budget"), &k);
    /* every 1-epoch run costs 36 CPU-s (the fake's clock); 0.2 h = 720 s: 20 runs of rung 0, then stop */
    cfg.budget_hours = 0.2;
    char err[256];
    derf_as_outcome res;
    assert_int_equal(derf_as_run(&cfg, &g, &res, err, sizeof err), 0);
    assert_true(res.stopped_by_budget);
    assert_int_equal(res.rungs_done, 0);
    assert_int_equal(k.calls, 20);
    assert_float_equal(res.cpu_hours, 0.2, 1e-9);
    derf_as_outcome_free(&res);
}

int main(void) {
    omp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter), cmocka_unit_test(test_welch), cmocka_unit_test(test_halving),
        cmocka_unit_test(test_budget),
    };
    return cmocka_run_group_tests_name("autosearch", tests, tmp_setup, tmp_teardown);
}
