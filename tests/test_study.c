/* test_study.c: `derf study`: the tanh(eps x) ~ erf fit against a brute-force computation (midpoint
 * rule + grid scan) and the paper's 1.205; every case spec of every study parses (and the property
 * study has no shift s); resumability of a real smoke sweep (delete one result: only that run
 * retrains); shared runs; refused results of another setting; × for diverged runs in report.md;
 * results.csv well-formed (RFC 4180 quoting); the seed-spread rule. */
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
#include <unistd.h>
#include "derf/io.h"
#include "derf/norm.h"
#include "derf/study.h"
#include "testutil.h"

/* ---- the fit ------------------------------------------------------------------------------- */
static double brute_gap(double eps) { /* midpoint rule, h = 1e-3 on [0, 30], doubled */
    const double h = 1e-3;
    double s = 0;
    for (int i = 0; i < 30000; i++) {
        double x = (i + 0.5) * h;
        s += fabs(tanh(eps * x) - erf(x));
    }
    return 2 * s * h;
}

static void test_tanh_fit(void **state) {
    (void)state;
    double gap, eps = derf_tanh_erf_fit(1, 0.8, 2.0, &gap);
    /* independent: a grid scan of the brute-force integral, coarse then fine */
    double best = 0, bg = INFINITY;
    for (double e = 1.10; e <= 1.30; e += 2e-3) {
        double g = brute_gap(e);
        if (g < bg) { bg = g; best = e; }
    }
    double c = best;
    for (double e = c - 2e-3; e <= c + 2e-3; e += 2e-5) {
        double g = brute_gap(e);
        if (g < bg) { bg = g; best = e; }
    }
    fprintf(stderr, "# fit: eps %.6f gap %.8f; brute force: eps %.6f gap %.8f\n", eps, gap, best, bg);
    assert_true(fabs(eps - best) < 1e-4);
    assert_true(fabs(gap - bg) < 1e-6);
    assert_true(fabs(gap - brute_gap(eps)) < 1e-6); /* same integral at the same eps, two quadratures */
    assert_true(fabs(eps - 1.205) < 0.01);          /* the paper */
    assert_true(fabs(eps - 1.2053) < 2e-4);         /* the numerical L1 optimum, docs/paper.md section 8 */
    /* least squares and the slope match at 0, as docs/paper.md section 8 reports them */
    double e2 = derf_tanh_erf_fit(2, 0.8, 2.0, NULL);
    assert_true(fabs(e2 - 1.2028) < 2e-4);
    assert_true(derf_tanh_erf_gap(1.1283791670955126, 1) > gap);
    assert_true(derf_tanh_erf_gap(eps * 1.01, 1) > gap && derf_tanh_erf_gap(eps * 0.99, 1) > gap);
}

/* ---- case lists ----------------------------------------------------------------------------- */
static int load_cases(const char *study, int table, derf_study_case **c) {
    derf_study_select sel = {table, NULL, 0, !strcmp(study, "approx") ? derf_tanh_erf_fit(1, 0.8, 2.0, NULL) : 0};
    char err[DERF_ERRLEN] = "";
    int n = derf_study_cases(study, &sel, c, err, sizeof err);
    if (n < 0) fprintf(stderr, "%s\n", err);
    assert_true(n > 0);
    return n;
}

static void check_list(const derf_study_case *c, int n) {
    for (int i = 0; i < n; i++) {
        derf_norm_spec s;
        char err[DERF_ERRLEN];
        if (derf_norm_parse(c[i].spec, &s, err, sizeof err)) fail_msg("%s: %s", c[i].spec, err);
        assert_true(c[i].base >= -1 && c[i].base < n);
        if (c[i].base >= 0) assert_string_equal(c[c[i].base].table, c[i].table);
        for (int k = 0; k < n; k++) /* same run id <=> same spec */
            assert_int_equal(!strcmp(c[i].id, c[k].id), !strcmp(c[i].spec, c[k].spec));
        assert_true(isnan(c[i].paper_acc) || c[i].paper_acc == DERF_STUDY_DIVERGED ||
                    (c[i].paper_acc > 80 && c[i].paper_acc < 84));
    }
}

static void test_cases(void **state) {
    (void)state;
    static const struct { const char *name; int n; } studies[] = {
        {"properties", 54 + 21 + 16 + 5 + 18 + 9}, {"search", 17}, {"fitting", 3}, {"shift", 18}, {"approx", 3},
    };
    for (size_t k = 0; k < sizeof studies / sizeof studies[0]; k++) {
        derf_study_case *c;
        int n = load_cases(studies[k].name, 0, &c);
        assert_int_equal(n, studies[k].n);
        check_list(c, n);
        for (int i = 0; i < n; i++) {
            derf_norm_spec s;
            assert_int_equal(derf_norm_parse(c[i].spec, &s, NULL, 0), 0);
            if (!strcmp(studies[k].name, "properties")) {
                assert_int_equal(s.kind, DERF_NORM_POINTWISE);
                assert_int_equal(s.shift, DERF_SHIFT_NONE); /* section 3: no s anywhere */
                assert_true(isfinite(c[i].paper_acc) || c[i].paper_acc == DERF_STUDY_DIVERGED);
            }
            if (!strcmp(studies[k].name, "search") && i > 0) assert_int_equal(s.shift, DERF_SHIFT_SCALAR);
            if (!strcmp(studies[k].name, "approx") && strstr(c[i].row, "ε")) {
                double eps = derf_tanh_erf_fit(1, 0.8, 2.0, NULL);
                assert_int_equal(s.fn, DERF_FN_TANH);
                assert_float_equal(s.alpha_init, 0.5 * eps, 1e-5);
            }
        }
        free(c);
    }
    /* sub-tables of the property study, and the paper's × cells of Table 1 (|lambda| = 2) */
    static const int per_table[7] = {0, 54, 21, 16, 5, 18, 9};
    for (int t = 1; t <= 6; t++) {
        derf_study_case *c;
        int n = load_cases("properties", t, &c);
        assert_int_equal(n, per_table[t]);
        int x = 0;
        for (int i = 0; i < n; i++) x += c[i].paper_acc == DERF_STUDY_DIVERGED;
        if (t == 1) assert_int_equal(x, 12);
        if (t == 2) assert_int_equal(x, 1); /* unclipped linear */
        if (t == 4) assert_int_equal(x, 2); /* power23, linear */
        free(c);
    }
    /* bad selections */
    derf_study_case *c;
    char err[DERF_ERRLEN];
    derf_study_select sel = {7, NULL, 0, 0};
    assert_int_equal(derf_study_cases("properties", &sel, &c, err, sizeof err), -1);
    sel.table = 0;
    assert_int_equal(derf_study_cases("nosuch", &sel, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "properties"));
    double bad[1] = {-1};
    derf_study_select sel2 = {2, bad, 1, 0}; /* clip=-1 */
    assert_int_equal(derf_study_cases("properties", &sel2, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "clip"));
    derf_study_select sel3 = {1, NULL, 0, 0};
    assert_int_equal(derf_study_cases("search", &sel3, &c, err, sizeof err), -1);
    double lam[2] = {0.3, 0.7};
    derf_study_select sel4 = {5, lam, 2, 0};
    int n = derf_study_cases("properties", &sel4, &c, err, sizeof err);
    assert_int_equal(n, 3 * 3); /* base + two lambdas per function */
    assert_true(isnan(c[1].paper_acc)); /* not in the paper */
    free(c);
}

/* ---- the engine ----------------------------------------------------------------------------- */
typedef struct { int calls; char last[128]; } counter;

static int counting_train(const derf_cls_opts *o, derf_cls_result *r, char *err, size_t errlen, void *ctx) {
    counter *k = ctx;
    k->calls++;
    derf_norm_format(&o->model.norm, k->last, sizeof k->last);
    return derf_cls_train(o, r, err, errlen);
}

/* Deterministic fake results: "linear" and "power23" diverge; accuracy from the spec and seed. */
static int fake_train(const derf_cls_opts *o, derf_cls_result *r, char *err, size_t errlen, void *ctx) {
    (void)err; (void)errlen;
    counter *k = ctx;
    k->calls++;
    memset(r, 0, sizeof *r);
    char spec[128];
    derf_norm_format(&o->model.norm, spec, sizeof spec);
    if (o->model.norm.fn == DERF_FN_LINEAR || o->model.norm.fn == DERF_FN_POWER23) {
        r->diverged = 1;
        snprintf(r->diverged_msg, sizeof r->diverged_msg, "training diverged at step 3 (fake)");
        r->final_loss = NAN;
        r->steps = 3;
        return 0;
    }
    unsigned h = 0;
    for (const char *p = spec; *p; p++) h = h * 31 + (unsigned char)*p;
    r->test_acc = 0.80f + (h % 100) * 1e-3f + (float)o->seed * 2e-3f;
    r->test_acc_ema = -1;
    r->test_loss = 0.5f;
    r->train_loss_eval = 0.4f + (h % 7) * 0.01f;
    r->train_loss_eval_ema = -1;
    r->final_loss = 0.6f;
    r->steps = 10;
    r->seconds = 0.01;
    return 0;
}

static void smoke_opts(derf_cls_opts *o) {
    derf_cls_opts_default(o);
    o->model.dim = 16; o->model.depth = 2; o->model.heads = 2; o->model.patch = 7;
    o->train_limit = 128; o->test_limit = 64; o->batch = 32; o->epochs = 1;
    o->ema = 0; o->quiet = 1; o->eval_train_loss = 1;
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_resume(void **state) {
    (void)state;
    char d[] = "/tmp/derf-study-XXXXXX";
    assert_non_null(mkdtemp(d));
    derf_study_case *all;
    load_cases("fitting", 0, &all); /* layernorm, derf, dyt: take two */
    counter k = {0};
    derf_study_cfg cfg = {0};
    cfg.study = "fitting"; cfg.out = d; cfg.seeds = 1; cfg.seed0 = 3; cfg.train = counting_train; cfg.ctx = &k; cfg.quiet = 1;
    smoke_opts(&cfg.base);
    derf_study_result res[2], res2[2];
    int nt;
    char err[DERF_ERRLEN], path[600];
    assert_int_equal(derf_study_pending(&cfg, all, 2), 2);
    assert_int_equal(derf_study_run(&cfg, all, 2, res, &nt, err, sizeof err), 0);
    assert_int_equal(nt, 2);
    assert_int_equal(k.calls, 2);
    assert_true(res[0].done && res[0].trained && res[1].done && res[1].trained);
    snprintf(path, sizeof path, "%s/runs/derf-s3/result.json", d);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/runs/derf-s3/model.safetensors", d);
    assert_int_equal(access(path, F_OK), -1); /* checkpoints dropped by default */
    /* nothing left: nothing retrains, and the results read back are the same */
    assert_int_equal(derf_study_pending(&cfg, all, 2), 0);
    assert_int_equal(derf_study_run(&cfg, all, 2, res2, &nt, err, sizeof err), 0);
    assert_int_equal(nt, 0);
    assert_int_equal(k.calls, 2);
    for (int i = 0; i < 2; i++) {
        assert_false(res2[i].trained);
        assert_float_equal(res2[i].r.test_acc, res[i].r.test_acc, 0);
        assert_float_equal(res2[i].r.train_loss_eval, res[i].r.train_loss_eval, 1e-6);
        assert_int_equal(res2[i].r.steps, res[i].r.steps);
    }
    /* delete one result: only that run trains again (and gives the same numbers: same seed) */
    snprintf(path, sizeof path, "%s/runs/layernorm-s3/result.json", d);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(derf_study_pending(&cfg, all, 2), 1);
    assert_int_equal(derf_study_run(&cfg, all, 2, res2, &nt, err, sizeof err), 0);
    assert_int_equal(nt, 1);
    assert_int_equal(k.calls, 3);
    assert_string_equal(k.last, "layernorm");
    assert_true(res2[0].trained && !res2[1].trained);
    assert_float_equal(res2[0].r.test_acc, res[0].r.test_acc, 0);
    /* more seeds later: only the new seed trains */
    cfg.seeds = 2;
    derf_study_result res4[4];
    assert_int_equal(derf_study_run(&cfg, all, 2, res4, &nt, err, sizeof err), 0);
    assert_int_equal(nt, 2);
    /* the same folder with other options is refused, naming what differs */
    cfg.base.lr *= 2;
    assert_int_equal(derf_study_run(&cfg, all, 2, res4, &nt, err, sizeof err), -1);
    assert_non_null(strstr(err, "other options"));
    assert_non_null(strstr(err, "lr"));
    assert_int_equal(nt, 0);
    free(all);
    rm_rf(d);
}

static void test_shared_runs(void **state) {
    (void)state;
    char d[] = "/tmp/derf-study-XXXXXX";
    assert_non_null(mkdtemp(d));
    derf_study_case *all;
    int n = load_cases("properties", 0, &all);
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= !strcmp(all[i].spec, all[j].spec);
        distinct += !seen;
    }
    counter k = {0};
    derf_study_cfg cfg = {0};
    cfg.study = "properties"; cfg.out = d; cfg.seeds = 1; cfg.train = fake_train; cfg.ctx = &k; cfg.quiet = 1;
    smoke_opts(&cfg.base);
    derf_study_result *res = calloc((size_t)n, sizeof *res);
    int nt;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_study_pending(&cfg, all, n), distinct);
    assert_int_equal(derf_study_run(&cfg, all, n, res, &nt, err, sizeof err), 0);
    assert_int_equal(k.calls, distinct); /* erf:noshift of Tables 1, 3, 5, 6 is one run */
    assert_true(distinct < n);
    for (int i = 0; i < n; i++) assert_true(res[i].done);
    free(res);
    free(all);
    rm_rf(d);
}

/* ---- reports -------------------------------------------------------------------------------- */
/* Splits one CSV record (RFC 4180) from *p into fields; returns the field count, -1 on a malformed record. */
static int csv_record(const char **p, char fields[][128], int max) {
    int n = 0;
    const char *s = *p;
    if (!*s) return 0;
    for (;;) {
        char *f = fields[n < max ? n : max - 1];
        size_t k = 0;
        if (*s == '"') {
            s++;
            for (;;) {
                if (!*s) return -1;
                if (*s == '"') {
                    if (s[1] == '"') { if (k < 127) f[k++] = '"'; s += 2; continue; }
                    s++;
                    break;
                }
                if (k < 127) f[k++] = *s;
                s++;
            }
        } else {
            while (*s && *s != ',' && *s != '\r' && *s != '\n') {
                if (*s == '"') return -1;
                if (k < 127) f[k++] = *s;
                s++;
            }
        }
        f[k] = 0;
        n++;
        if (*s == ',') { s++; continue; }
        if (s[0] == '\r' && s[1] == '\n') { *p = s + 2; return n; }
        return -1; /* every record ends with CRLF */
    }
}

__attribute__((noinline)) static char *slurp(const char *dir, const char *name) {
    char path[600], err[DERF_ERRLEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *buf;
    size_t len;
    assert_int_equal(derf_io_read_file(path, 1 << 24, &buf, &len, err, sizeof err), 0);
    return buf;
}

static void test_reports(void **state) {
    (void)state;
    char d[] = "/tmp/derf-study-XXXXXX";
    assert_non_null(mkdtemp(d));
    /* Table 4 (power23 and linear diverge in the fake trainer, as in the paper) plus the approx study,
     * whose tanh(eps x) row label has a comma (CSV quoting) */
    derf_study_case *t4, *ap;
    int n4 = load_cases("properties", 4, &t4), na = load_cases("approx", 0, &ap), n = n4 + na;
    derf_study_case *c = malloc((size_t)n * sizeof *c);
    memcpy(c, t4, (size_t)n4 * sizeof *c);
    memcpy(c + n4, ap, (size_t)na * sizeof *c);
    for (int i = n4; i < n; i++) c[i].base += n4;
    counter k = {0};
    derf_study_cfg cfg = {0};
    cfg.study = "properties"; cfg.out = d; cfg.seeds = 2; cfg.train = fake_train; cfg.ctx = &k; cfg.quiet = 1;
    smoke_opts(&cfg.base);
    derf_study_result res[16];
    int nt;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_study_run(&cfg, c, n, res, &nt, err, sizeof err), 0);
    assert_int_equal(nt, 2 * n);
    assert_int_equal(derf_study_write_reports(&cfg, c, n, res, err, sizeof err), 0);

    /* report.md: × in our column for the diverged cases, a number for the others */
    char *md = slurp(d, "report.md");
    for (int i = 0; i < n4; i++) {
        char key[128];
        snprintf(key, sizeof key, "| `%s` | ", c[i].spec);
        char *line = strstr(md, key);
        assert_non_null(line);
        char *eol = strchr(line, '\n');
        *eol = 0;
        int div = strstr(c[i].spec, "linear") || strstr(c[i].spec, "power23");
        const char *ours = line + strlen(key);
        if (div) assert_true(!strncmp(ours, "× |", strlen("× |")));
        else assert_true(ours[0] >= '0' && ours[0] <= '9');
        *eol = '\n';
    }
    assert_non_null(strstr(md, "ours diverged in 2 of them"));
    assert_non_null(strstr(md, "## Table 16"));
    free(md);

    /* results.csv: a header and one record per case and seed, all with the same field count */
    char *csv = slurp(d, "results.csv");
    const char *p = csv;
    static char f[32][128];
    int nh = csv_record(&p, f, 32);
    assert_int_equal(nh, 19);
    assert_string_equal(f[0], "study");
    assert_string_equal(f[7], "status");
    int rows = 0, quoted = 0, diverged = 0;
    for (int nf; (nf = csv_record(&p, f, 32)) != 0; rows++) {
        assert_int_equal(nf, nh);
        int i = rows / 2;
        assert_string_equal(f[5], c[i].spec);
        assert_string_equal(f[2], c[i].row);
        quoted += strchr(c[i].row, ',') != NULL;
        if (!strcmp(f[7], "diverged")) {
            diverged++;
            assert_string_equal(f[8], ""); /* no accuracy for a diverged run */
        } else {
            assert_string_equal(f[7], "ok");
            assert_true(atof(f[8]) > 79 && atof(f[8]) < 92);
        }
    }
    assert_int_equal(*p, 0);
    assert_int_equal(rows, 2 * n);
    assert_int_equal(diverged, 2 * 2);
    assert_int_equal(quoted, 2);
    free(csv);

    char *svg = slurp(d, "plot.svg");
    assert_true(!strncmp(svg, "<svg", 4));
    assert_non_null(strstr(svg, "× diverged"));
    assert_non_null(strstr(svg, "</svg>\n"));
    free(svg);
    free(c); free(t4); free(ap);
    rm_rf(d);
}

static void test_spread(void **state) {
    (void)state;
    derf_study_result r[3];
    memset(r, 0, sizeof r);
    for (int s = 0; s < 3; s++) { r[s].done = 1; r[s].r.test_acc = 0.80f + 0.01f * s; r[s].r.train_loss_eval = 0.5f; }
    r[2].r.diverged = 1;
    derf_study_stat a, b;
    derf_study_stats(r, 3, &a);
    assert_int_equal(a.n_ok, 2);
    assert_int_equal(a.n_div, 1);
    assert_float_equal(a.acc_mean, 80.5, 1e-4);
    assert_float_equal(a.acc_sd, sqrt(0.5), 1e-4);
    b = a;
    b.acc_mean = 80.5 + 2.1 * sqrt(0.5); /* se = sqrt(0.5/2 * 2) = sqrt(0.5) */
    assert_int_equal(derf_study_beyond_spread(&b, &a), 1);
    b.acc_mean = 80.5 + 1.9 * sqrt(0.5);
    assert_int_equal(derf_study_beyond_spread(&b, &a), 0);
    b.n_ok = 1;
    assert_int_equal(derf_study_beyond_spread(&b, &a), -1);
}

int main(void) {
    omp_set_num_threads(1); /* one core: the sweep tests train tiny models */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tanh_fit), cmocka_unit_test(test_cases),   cmocka_unit_test(test_resume),
        cmocka_unit_test(test_shared_runs), cmocka_unit_test(test_reports), cmocka_unit_test(test_spread),
    };
    return cmocka_run_group_tests_name("study", tests, NULL, NULL);
}
