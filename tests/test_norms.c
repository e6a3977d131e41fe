/* test_norms.c: every norm entry and transform against an independent double-precision
 * reference: forward values, and every gradient (x, alpha, s, gamma, beta) against central finite
 * differences in double, at the tiny shape of the search, at widths around the 16-lane vector length,
 * and threaded at a size where the kernels split rows over threads. Plus the spec parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <omp.h>
#include "derf/norm.h"
#include "testutil.h"

/* Double reference of a whole layer: y = layer(x; params) for the given spec. */
static void ref_forward(const derf_norm_spec *s, double *y, const double *x, const double *p, int N, int C) {
    derf_norm_param d[4];
    int k = derf_norm_params(s, C, d);
    const double *alpha = NULL, *shift = NULL, *w = NULL, *b = NULL;
    for (int i = 0; i < k; i++) {
        const double *q = p + d[i].offset;
        if (!strcmp(d[i].name, "alpha")) alpha = q;
        if (!strcmp(d[i].name, "shift")) shift = q;
        if (!strcmp(d[i].name, "weight")) w = q;
        if (!strcmp(d[i].name, "bias")) b = q;
    }
    for (int n = 0; n < N; n++) {
        const double *xr = x + n * C;
        double mean = 0, ms = 0;
        if (s->kind == DERF_NORM_LAYERNORM)
            for (int c = 0; c < C; c++) mean += xr[c] / C;
        for (int c = 0; c < C; c++) ms += (xr[c] - mean) * (xr[c] - mean) / C;
        for (int c = 0; c < C; c++) {
            double v;
            if (s->kind == DERF_NORM_POINTWISE) {
                double sh = shift ? (s->shift == DERF_SHIFT_CHANNEL ? shift[c] : shift[0]) : 0;
                v = derf_pointwise_eval_f64(s, alpha[0] * xr[c] + sh);
            } else {
                v = (xr[c] - mean) / sqrt(ms + s->eps);
            }
            y[n * C + c] = (w ? w[c] : 1) * v + (b ? b[c] : 0);
        }
    }
}

static double ref_loss(const derf_norm_spec *s, const double *x, const double *p, const double *dy, int N, int C) {
    double *y = malloc(sizeof(double) * N * C), L = 0;
    ref_forward(s, y, x, p, N, C);
    for (int i = 0; i < N * C; i++) L += y[i] * dy[i];
    free(y);
    return L;
}

/* Moves every parameter away from its init (alpha by +0.3 more) so each gradient path is exercised. */
static int perturb_params(const derf_norm_spec *s, int C, float *p, derf_norm_param d[4], uint64_t *seed) {
    int k = derf_norm_params(s, C, d);
    for (int i = 0; i < k; i++)
        for (size_t j = 0; j < d[i].numel; j++)
            p[d[i].offset + j] += (float)(0.4 * (tu_uniform(seed) - 0.5)) + (!strcmp(d[i].name, "alpha") ? 0.3f : 0.f);
    return k;
}

static void nudge_off_kinks(const derf_norm_spec *s, float *x, int N, int C, const double *pd, const derf_norm_param *d, int k);

static void check_spec_shape(const char *text, int N, int C) {
    derf_norm_spec s;
    char err[512];
    int rc = derf_norm_parse(text, &s, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    uint64_t seed = tu_seed() ^ (uint64_t)strlen(text) * 7919u ^ (uint64_t)text[0] * 104729u ^ (uint64_t)C;
    size_t P = derf_norm_param_count(&s, C), NC = (size_t)N * C;
    float *x = malloc(NC * 4), *y = malloc(NC * 4), *dy = malloc(NC * 4), *dx = malloc(NC * 4);
    float *p = malloc(P * 4 + 4), *dp = malloc(P * 4 + 4);
    float *stats = malloc(derf_norm_stats_count(&s, N) * 4 + 4);
    double *xd = calloc(NC, 8), *pd = calloc(P + 1, 8), *dyd = malloc(NC * 8), *yd = malloc(NC * 8);
    double *gx = malloc(NC * 8), *gp = malloc(P * 8 + 8);

    tu_fill(x, NC, &seed, -3.5, 3.5);
    tu_fill(dy, NC, &seed, -1, 1);
    derf_norm_init(&s, C, p);
    derf_norm_param d[4];
    int k = perturb_params(&s, C, p, d, &seed);
    /* exproot and power23 have an infinite slope at u = 0: within ~0.02 of it, rounding u = alpha x + s
     * to float alone moves f' by more than the tolerance, so such elements are redrawn (as in
     * test_torch_norms). u uses the perturbed alpha (first parameter) and scalar shift (second). */
    int cusp = s.kind == DERF_NORM_POINTWISE && s.n_tf == 0 &&
               (s.fn == DERF_FN_EXPROOT || s.fn == DERF_FN_POWER23 || s.fn == DERF_FN_POWER23CLIP);
    for (size_t i = 0; cusp && i < NC; i++) {
        float sh = s.shift == DERF_SHIFT_SCALAR ? p[1] : s.shift == DERF_SHIFT_CHANNEL ? p[1 + i % C] : 0.f;
        while (fabsf(p[0] * x[i] + sh) < 0.02f) tu_fill(x + i, 1, &seed, -3.5, 3.5);
    }
    for (size_t i = 0; i < P; i++) pd[i] = p[i];
    if (s.kind == DERF_NORM_POINTWISE) nudge_off_kinks(&s, x, N, C, pd, d, k); /* as check_threads does */
    for (size_t i = 0; i < NC; i++) { xd[i] = x[i]; dyd[i] = dy[i]; }

    derf_norm_forward(&s, y, stats, x, p, N, C);
    ref_forward(&s, yd, xd, pd, N, C);
    assert_true(tu_close("forward", y, yd, NC, 2e-6, 2e-5));

    /* backward adds: prefill with 1 and subtract afterwards */
    for (size_t i = 0; i < NC; i++) dx[i] = 1.f;
    for (size_t i = 0; i < P; i++) dp[i] = 1.f;
    derf_norm_backward(&s, dx, dp, dy, x, p, stats, N, C);
    for (size_t i = 0; i < NC; i++) dx[i] -= 1.f;
    for (size_t i = 0; i < P; i++) dp[i] -= 1.f;

    const double h = 1e-6;
    for (size_t i = 0; i < NC; i++) {
        double o = xd[i];
        xd[i] = o + h; double lp = ref_loss(&s, xd, pd, dyd, N, C);
        xd[i] = o - h; double lm = ref_loss(&s, xd, pd, dyd, N, C);
        xd[i] = o;
        gx[i] = (lp - lm) / (2 * h);
    }
    for (size_t i = 0; i < P; i++) {
        double o = pd[i];
        pd[i] = o + h; double lp = ref_loss(&s, xd, pd, dyd, N, C);
        pd[i] = o - h; double lm = ref_loss(&s, xd, pd, dyd, N, C);
        pd[i] = o;
        gp[i] = (lp - lm) / (2 * h);
    }
    assert_true(tu_close("dx vs finite differences", dx, gx, NC, 5e-5, 1e-4));
    for (int i = 0; i < k; i++) {
        char what[64];
        snprintf(what, sizeof what, "d%s vs finite differences", d[i].name);
        double atol = d[i].numel == 1 ? 5e-5 * NC : 5e-5 * N; /* scalars sum over every element */
        assert_true(tu_close(what, dp + d[i].offset, gp + d[i].offset, d[i].numel, atol, 1e-4));
    }
    free(x); free(y); free(dy); free(dx); free(p); free(dp); free(stats);
    free(xd); free(pd); free(dyd); free(yd); free(gx); free(gp);
}

static void test_spec_case(void **state) { check_spec_shape((const char *)*state, 5, 7); }

/* The vector kernels (16 channels a step, a masked tail) at widths around the vector length: one row,
 * exact multiples of 16, and tails of 1 and 15. */
typedef struct { const char *spec; int N, C; } shaped_case;
static const shaped_case SHAPED[] = {
    {"derf", 1, 37}, {"derf", 3, 48}, {"derf", 2, 17}, {"derf:shift=channel", 2, 31}, {"derf:noaffine", 1, 16},
    {"dyt", 1, 37}, {"dyt", 3, 48}, {"dyt:noaffine", 2, 33},
    {"layernorm", 1, 37}, {"layernorm", 3, 48}, {"layernorm:nobias", 2, 17}, {"layernorm:noaffine", 2, 15},
    {"rmsnorm", 1, 37}, {"rmsnorm", 3, 64}, {"rmsnorm:bias", 2, 79},
};
static void test_shaped_case(void **state) {
    const shaped_case *k = *state;
    check_spec_shape(k->spec, k->N, k->C);
}

/* ---- many threads ----------------------------------------------------------------------------- */
/* Kernels run threaded only above 16384 elements, too many for the finite differences of the whole
 * tensor above. Here N = 9 rows of C = 1901 channels (118 vectors and a tail of 13) on 3 threads
 * (rows split 3/3/3, per-thread partial sums), against a double reference with the gradients taken
 * element by element: for a point-wise layer each y[n][c] depends on x[n][c] and on the parameters
 * of channel c only, so central differences of the double scalar function give dy/dx, dy/dalpha,
 * dy/ds, and dgamma = sum dy f, dbeta = sum dy are exact sums; for LayerNorm/RMSNorm dx comes from
 * central differences of one row's loss, dgamma = sum dy xhat and dbeta = sum dy from the double
 * statistics. Backward also runs with dx = NULL and with dparams = NULL. */
static double pw_y(const derf_norm_spec *s, double x, double a, double sh, double g, double b) {
    return g * derf_pointwise_eval_f64(s, a * x + sh) + b;
}

/* Moves every x that lies within 1e-4 of a kink of the point-wise function (clip, flat zones, sign: left and right
 * slopes differ there) by 1e-3: at a kink the float kernel and the double finite difference may pick different sides,
 * which says nothing about either. */
static void nudge_off_kinks(const derf_norm_spec *s, float *x, int N, int C, const double *pd, const derf_norm_param *d, int k) {
    double a = 1, sh = 0;
    int shc = s->shift == DERF_SHIFT_CHANNEL, osh = -1;
    for (int i = 0; i < k; i++) {
        if (!strcmp(d[i].name, "alpha")) a = pd[d[i].offset];
        if (!strcmp(d[i].name, "shift")) osh = (int)d[i].offset;
    }
    const double e = 1e-4;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float *xv = &x[(size_t)n * C + c];
            if (osh >= 0) sh = pd[osh + (shc ? c : 0)];
            for (int tries = 0; tries < 8; tries++) {
                const double u = a * *xv + sh, f0 = derf_pointwise_eval_f64(s, u);
                const double dl = (f0 - derf_pointwise_eval_f64(s, u - e)) / e, dr = (derf_pointwise_eval_f64(s, u + e) - f0) / e;
                if (fabs(dl - dr) <= 1e-2 * (fabs(dl) + fabs(dr)) + 1e-3) break;
                *xv += 1e-3f;
            }
        }
}

static void check_threads(const char *text) {
    derf_norm_spec s;
    assert_int_equal(derf_norm_parse(text, &s, NULL, 0), 0);
    enum { N = 9, C = 1901 };
    const size_t NC = (size_t)N * C;
    uint64_t seed = tu_seed() ^ 0x5eedu ^ (uint64_t)strlen(text);
    size_t P = derf_norm_param_count(&s, C);
    float *x = malloc(NC * 4), *y = malloc(NC * 4), *dy = malloc(NC * 4), *dx = malloc(NC * 4), *dx2 = malloc(NC * 4);
    float *p = malloc(P * 4 + 4), *dp = calloc(P + 1, 4), *dp2 = calloc(P + 1, 4);
    float *stats = malloc(derf_norm_stats_count(&s, N) * 4 + 4);
    double *yd = malloc(NC * 8), *gx = calloc(NC, 8), *gp = calloc(P + 1, 8), *xd = malloc(NC * 8);
    tu_fill(x, NC, &seed, -3.5, 3.5);
    tu_fill(dy, NC, &seed, -1, 1);
    derf_norm_init(&s, C, p);
    derf_norm_param d[4];
    int k = perturb_params(&s, C, p, d, &seed);
    double *pd = malloc(P * 8 + 8);
    for (size_t i = 0; i < P; i++) pd[i] = p[i];
    if (s.kind == DERF_NORM_POINTWISE) nudge_off_kinks(&s, x, N, C, pd, d, k);
    for (size_t i = 0; i < NC; i++) xd[i] = x[i];
    ref_forward(&s, yd, xd, pd, N, C);

    const double h = 1e-6;
    if (s.kind == DERF_NORM_POINTWISE) {
        const double *a = NULL, *sh = NULL, *w = NULL, *b = NULL;
        size_t oa = 0, osh = 0, ow = 0, ob = 0;
        for (int i = 0; i < k; i++) {
            if (!strcmp(d[i].name, "alpha")) { a = pd + d[i].offset; oa = d[i].offset; }
            if (!strcmp(d[i].name, "shift")) { sh = pd + d[i].offset; osh = d[i].offset; }
            if (!strcmp(d[i].name, "weight")) { w = pd + d[i].offset; ow = d[i].offset; }
            if (!strcmp(d[i].name, "bias")) { b = pd + d[i].offset; ob = d[i].offset; }
        }
        int shc = s.shift == DERF_SHIFT_CHANNEL;
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                size_t i = (size_t)n * C + c;
                double xv = xd[i], av = a[0], sv = sh ? sh[shc ? c : 0] : 0, gv = w ? w[c] : 1, bv = b ? b[c] : 0;
                double g = dy[i];
                gx[i] = g * (pw_y(&s, xv + h, av, sv, gv, bv) - pw_y(&s, xv - h, av, sv, gv, bv)) / (2 * h);
                gp[oa] += g * (pw_y(&s, xv, av + h, sv, gv, bv) - pw_y(&s, xv, av - h, sv, gv, bv)) / (2 * h);
                if (sh) gp[osh + (shc ? (size_t)c : 0)] += g * (pw_y(&s, xv, av, sv + h, gv, bv) - pw_y(&s, xv, av, sv - h, gv, bv)) / (2 * h);
                if (w) gp[ow + c] += g * derf_pointwise_eval_f64(&s, av * xv + sv);
                if (b) gp[ob + c] += g;
            }
    } else {
        double *row = malloc(C * 8), *yr = malloc(C * 8);
        for (int n = 0; n < N; n++) {
            const double *xr = xd + (size_t)n * C;
            const float *dyr = dy + (size_t)n * C;
            for (int c = 0; c < C; c++) {
                double lp = 0, lm = 0;
                for (int j = 0; j < C; j++) row[j] = xr[j];
                row[c] = xr[c] + h;
                ref_forward(&s, yr, row, pd, 1, C);
                for (int j = 0; j < C; j++) lp += yr[j] * dyr[j];
                row[c] = xr[c] - h;
                ref_forward(&s, yr, row, pd, 1, C);
                for (int j = 0; j < C; j++) lm += yr[j] * dyr[j];
                gx[(size_t)n * C + c] = (lp - lm) / (2 * h);
            }
            if (s.affine) { /* xhat = (y - b) / w from the reference forward */
                for (int c = 0; c < C; c++) {
                    double bv = s.bias ? pd[C + c] : 0, xh = (yd[(size_t)n * C + c] - bv) / pd[c];
                    gp[c] += dyr[c] * xh;
                    if (s.bias) gp[C + c] += dyr[c];
                }
            }
        }
        free(row); free(yr);
    }

    int saved = omp_get_max_threads();
    omp_set_num_threads(3);
    derf_norm_forward(&s, y, stats, x, p, N, C);
    for (size_t i = 0; i < NC; i++) { dx[i] = 1.f; dx2[i] = 0.f; }
    derf_norm_backward(&s, dx, dp, dy, x, p, stats, N, C);
    derf_norm_backward(&s, NULL, dp2, dy, x, p, stats, N, C);  /* parameter gradients only */
    derf_norm_backward(&s, dx2, NULL, dy, x, p, stats, N, C);  /* dx only */
    omp_set_num_threads(saved);
    for (size_t i = 0; i < NC; i++) dx[i] -= 1.f;
    assert_true(tu_close("forward (3 threads)", y, yd, NC, 2e-6, 2e-5));
    assert_true(tu_close("dx (3 threads)", dx, gx, NC, 5e-5, 1e-4));
    assert_true(tu_close("dx with dparams NULL", dx2, gx, NC, 5e-5, 1e-4));
    for (int i = 0; i < k; i++) {
        double atol = d[i].numel == 1 ? 5e-5 * NC : 5e-5 * N;
        assert_true(tu_close(d[i].name, dp + d[i].offset, gp + d[i].offset, d[i].numel, atol, 1e-4));
        assert_true(tu_close(d[i].name, dp2 + d[i].offset, gp + d[i].offset, d[i].numel, atol, 1e-4));
    }
    free(x); free(y); free(dy); free(dx); free(dx2); free(p); free(dp); free(dp2); free(stats);
    free(yd); free(gx); free(gp); free(xd); free(pd);
}
static void test_threads_case(void **state) { check_threads((const char *)*state); }
static const char *THREADED[] = {"derf", "dyt", "derf:shift=channel", "derf:noaffine", "expsign",
                                 "erf+clip=0.6:noshift", "layernorm", "layernorm:noaffine", "rmsnorm", "rmsnorm:bias"};

/* ---- parser ---------------------------------------------------------------------------------- */

static void test_parse_good(void **state) {
    (void)state;
    derf_norm_spec s;
    char err[512];
    assert_int_equal(derf_norm_parse("derf", &s, err, sizeof err), 0);
    assert_int_equal(s.kind, DERF_NORM_POINTWISE);
    assert_int_equal(s.fn, DERF_FN_ERF);
    assert_int_equal(s.shift, DERF_SHIFT_SCALAR);
    assert_true(s.affine && s.bias);
    assert_float_equal(s.alpha_init, 0.5, 0);
    assert_int_equal(derf_norm_parse("dyt", &s, err, sizeof err), 0);
    assert_int_equal(s.fn, DERF_FN_TANH);
    assert_int_equal(s.shift, DERF_SHIFT_NONE);
    assert_int_equal(derf_norm_parse("layernorm:eps=1e-6", &s, err, sizeof err), 0);
    assert_int_equal(s.kind, DERF_NORM_LAYERNORM);
    assert_float_equal(s.eps, 1e-6, 1e-12);
    assert_int_equal(derf_norm_parse("tanh+vshift=0.5", &s, err, sizeof err), 0);
    assert_int_equal(s.n_tf, 1);
    assert_int_equal(s.tf[0].kind, DERF_TF_VSHIFT);
    assert_float_equal(s.tf[0].lambda, 0.5, 0);
    assert_int_equal(derf_norm_parse("arcsinh+clip=2:noshift:alpha=1", &s, err, sizeof err), 0);
    assert_int_equal(s.fn, DERF_FN_ARCSINH);
    assert_int_equal(s.tf[0].kind, DERF_TF_CLIP);
    assert_int_equal(s.shift, DERF_SHIFT_NONE);
    assert_float_equal(s.alpha_init, 1.0, 0);
    assert_int_equal(derf_norm_parse("neg(erf)", &s, err, sizeof err), 0);
    assert_int_equal(s.n_tf, 1);
    assert_int_equal(s.tf[0].kind, DERF_TF_NEG);
    assert_int_equal(derf_norm_parse("neg(erf+flat=1)+clip=0.5:shift=channel:noaffine", &s, err, sizeof err), 0);
    assert_int_equal(s.n_tf, 3);
    assert_int_equal(s.tf[0].kind, DERF_TF_FLAT);
    assert_int_equal(s.tf[1].kind, DERF_TF_NEG);
    assert_int_equal(s.tf[2].kind, DERF_TF_CLIP);
    assert_int_equal(s.shift, DERF_SHIFT_CHANNEL);
    assert_false(s.affine);
    assert_int_equal(derf_norm_parse("rmsnorm", &s, err, sizeof err), 0);
    assert_false(s.bias);
    /* every registered name parses, and the canonical form round-trips */
    const char *extra[] = {"derf", "dyt", "layernorm", "rmsnorm:bias:eps=1e-06", "erf+mix=0.1:nobias",
                           "erf+hshift=-0.5+neg:s=0.25:alpha=0.8", "layernorm:noaffine"};
    char buf[256];
    for (int i = 0; i < DERF_FN_COUNT + 7; i++) {
        const char *t = i < DERF_FN_COUNT ? derf_fn_get((derf_fn_id)i)->name : extra[i - DERF_FN_COUNT];
        derf_norm_spec a, b;
        assert_int_equal(derf_norm_parse(t, &a, err, sizeof err), 0);
        derf_norm_format(&a, buf, sizeof buf);
        assert_int_equal(derf_norm_parse(buf, &b, err, sizeof err), 0);
        assert_memory_equal(&a, &b, sizeof a);
    }
}

static void expect_bad(const char *text, const char *needle) {
    derf_norm_spec s;
    char err[1024] = "";
    assert_int_equal(derf_norm_parse(text, &s, err, sizeof err), -1);
    if (!strstr(err, needle)) fprintf(stderr, "spec '%s': error '%s' lacks '%s'\n", text, err, needle);
    assert_non_null(strstr(err, needle));
    assert_null(strchr(err, '\n')); /* one line */
}

static void test_parse_bad(void **state) {
    (void)state;
    expect_bad("", "empty");
    expect_bad("erff", "unknown norm 'erff'");
    expect_bad("erff", "known: layernorm, rmsnorm, derf, dyt, erf, tanh");
    expect_bad("erf+flat", "'flat' needs a value");
    expect_bad("erf+flat=", "needs a number");
    expect_bad("erf+flat=-1", "half-width");
    expect_bad("erf+clip=0", "positive bound");
    expect_bad("erf+mix=2", "[0, 1]");
    expect_bad("erf+wobble=1", "unknown transform 'wobble'");
    expect_bad("erf+neg=1", "takes no value");
    expect_bad("neg(erf", "missing ')'");
    expect_bad("layernorm+clip=1", "point-wise functions only");
    expect_bad("layernorm:alpha=1", "point-wise norms only");
    expect_bad("derf:eps=1e-5", "layernorm and rmsnorm only");
    expect_bad("derf:colour=red", "unknown option 'colour'");
    expect_bad("derf:shift=maybe", "none, scalar or channel");
    expect_bad("derf extra", "unexpected");
    expect_bad("erf+flat=nan", "finite");
    expect_bad("erf+clip=1+clip=1+clip=1+clip=1+clip=1+clip=1+clip=1+clip=1+clip=1", "at most");
    expect_bad("derf:alpha=1e30", "finite");
}

static void test_registry(void **state) {
    (void)state;
    for (int i = 0; i < DERF_FN_COUNT; i++) {
        const derf_fn_info *f = derf_fn_get((derf_fn_id)i);
        assert_non_null(f);
        assert_non_null(f->name);
        assert_non_null(f->f64);
        assert_int_equal(derf_fn_lookup(f->name), i);
    }
    assert_int_equal(derf_fn_lookup("nope"), -1);
    /* singular points give finite gradients */
    const char *sing[] = {"exproot", "power23", "power23clip"};
    for (int i = 0; i < 3; i++) {
        derf_norm_spec s;
        assert_int_equal(derf_norm_parse(sing[i], &s, NULL, 0), 0);
        float g, dg;
        derf_pointwise_eval(&s, 0.f, &g, &dg);
        assert_true(isfinite(dg) && dg > 0);
        assert_float_equal(g, 0.0, 0);
    }
}

/* The clipped functions' derivative mask is decided on u in closed form (functions.h): at the float
 * u within 8 ulps either side of each exact boundary (sinh 1, e - 1, sqrt(e - 1), 1; both signs) the
 * gradient must pass exactly where |u| <= boundary in exact arithmetic (the boundaries are irrational
 * but 1, so comparing the float u with the double boundary decides it), through the scalar evaluator and
 * through the layer kernels (alpha 1, s 0, gamma 1, beta 0, dy 1: dx = f'(u) * mask). */
static void test_clip_masks(void **state) {
    (void)state;
    const struct { const char *fn; double bound; } F[] = {
        {"arcsinhclip", 1.1752011936438014}, {"logsignclip", 1.7182818284590452},
        {"logquadclip", 1.3108324944320862}, {"power23clip", 1.0}};
    enum { K = 8, C = 4 * K + 2 };
    for (size_t f = 0; f < sizeof F / sizeof F[0]; f++) {
        derf_norm_spec s;
        assert_int_equal(derf_norm_parse(F[f].fn, &s, NULL, 0), 0);
        float x[C], dy[C], y[C], dx[C], params[2 + 2 * C], dp[2 + 2 * C];
        int n = 0;
        float b = (float)F[f].bound;
        for (int k = 0; k < K; k++) b = nextafterf(b, 0.f); /* 8 ulps below, then walk up 2K+1 floats */
        for (int k = 0; k <= 2 * K; k++, b = nextafterf(b, 2.f)) { x[n++] = b; x[n++] = -b; }
        assert_int_equal(n, C);
        derf_norm_param pl[4];
        int np = derf_norm_params(&s, C, pl);
        for (int i = 0; i < np; i++)
            for (size_t j = 0; j < pl[i].numel; j++)
                params[pl[i].offset + j] = !strcmp(pl[i].name, "alpha") || !strcmp(pl[i].name, "weight") ? 1.f : 0.f;
        for (int i = 0; i < C; i++) dy[i] = 1.f;
        memset(dx, 0, sizeof dx);
        memset(dp, 0, sizeof dp);
        derf_norm_forward(&s, y, NULL, x, params, 1, C);
        derf_norm_backward(&s, dx, dp, dy, x, params, NULL, 1, C);
        int passes = 0;
        for (int i = 0; i < C; i++) {
            const int want = fabs((double)x[i]) <= F[f].bound;
            float g, dg;
            derf_pointwise_eval(&s, x[i], &g, &dg);
            if ((dg != 0.f) != want || (dx[i] != 0.f) != want || !(fabsf(y[i]) <= 1.f))
                fail_msg("%s at u = %.9g: mask %d (layer dx %g, scalar f' %g), exact |u| <= %.17g is %d", F[f].fn,
                         (double)x[i], dx[i] != 0.f, (double)dx[i], (double)dg, F[f].bound, want);
            passes += want;
        }
        /* both sides of the boundary were seen (power23clip: 1 itself passes) */
        assert_true(passes >= 2 * K && passes <= 2 * K + 2);
    }
}

static const char *CASES[] = {
    /* Table 7 search (every function with a learnable scalar shift, as in the Derf repo) */
    "erf", "tanh", "satursin", "arcsinhclip", "isru", "exproot", "linearclip", "expsign", "logsignclip",
    "relsign", "arctan", "smoothsign", "logquadclip", "power23clip", "saturlog", "cubsign",
    /* property-study bases */
    "arcsinh", "logsign", "logquad", "power23", "linear", "sin", "dampx", "dampexp",
    /* named layers and options */
    "derf", "dyt", "derf:shift=channel", "derf:noaffine", "derf:nobias", "dyt:noaffine",
    "layernorm", "layernorm:noaffine", "layernorm:nobias", "rmsnorm", "rmsnorm:bias",
    /* property-ablation transforms */
    "erf+hshift=0.5:noshift", "erf+vshift=-0.5:noshift", "erf+clip=0.6:noshift", "erf+mix=0.1:noshift",
    "erf+flat=0.5:noshift", "neg(erf):noshift", "tanh+flat=1:noshift", "arcsinh+clip=2:noshift",
    "linear+clip=1:noshift", "logsign+clip=0.8:noshift", "arctan+mix=0.5:noshift",
    "neg(erf+flat=0.3)+clip=0.7", "erf+hshift=0.2+vshift=0.1+mix=0.05",
};

int main(void) {
    enum { NC = sizeof CASES / sizeof CASES[0], NS = sizeof SHAPED / sizeof SHAPED[0],
           NT = sizeof THREADED / sizeof THREADED[0], NALL = NC + NS + NT + 4 };
    struct CMUnitTest tests[NALL];
    char names[NC + NS + NT][96];
    int t = 0;
    for (int i = 0; i < NC; i++, t++) {
        snprintf(names[t], sizeof names[t], "fd %s", CASES[i]);
        tests[t] = (struct CMUnitTest){names[t], test_spec_case, NULL, NULL, (void *)CASES[i]};
    }
    for (int i = 0; i < NS; i++, t++) {
        snprintf(names[t], sizeof names[t], "fd %s %dx%d", SHAPED[i].spec, SHAPED[i].N, SHAPED[i].C);
        tests[t] = (struct CMUnitTest){names[t], test_shaped_case, NULL, NULL, (void *)&SHAPED[i]};
    }
    for (int i = 0; i < NT; i++, t++) {
        snprintf(names[t], sizeof names[t], "3 threads %s", THREADED[i]);
        tests[t] = (struct CMUnitTest){names[t], test_threads_case, NULL, NULL, (void *)THREADED[i]};
    }
    tests[t++] = (struct CMUnitTest)cmocka_unit_test(test_parse_good);
    tests[t++] = (struct CMUnitTest)cmocka_unit_test(test_parse_bad);
    tests[t++] = (struct CMUnitTest)cmocka_unit_test(test_registry);
    tests[t++] = (struct CMUnitTest)cmocka_unit_test(test_clip_masks);
    return _cmocka_run_group_tests("norms", tests, NALL, NULL, NULL);
}
