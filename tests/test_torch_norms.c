/* test_torch_norms.c: every norm of the family against a live PyTorch reference
 * (tools/torch_ref.py, plain autograd written from docs/paper.md sections 1-4), on fresh random inputs each run
 * (replay a failure with the DERF_TEST_SEED printed at the top).
 *
 * One case per base point-wise function (Derf-style layer: scalar shift, gamma and beta), the DyT,
 * Derf, per-channel-shift, no-affine and no-bias variants, LayerNorm and RMSNorm, each
 * property-ablation transform on a base, and compositions. Each case's layer comes from a spec
 * string through derf_norm_parse (grammar: docs/norm-spec.md), checked against the fields the case
 * expects; the base function's name sent to PyTorch is derf_fn_get(id)->name.
 * Compared, fp32 against fp32:
 *   y, dx                    element-wise, atol 2e-5, rtol 1e-4
 *   dalpha, ds, dgamma, dbeta sums over n elements: atol 3e-5 * sqrt(n) * max(1, rms of the summed
 *                            terms), rtol 1e-4 (summation order differs between C and PyTorch)
 * Non-differentiable points: at clip edges, flat-zone edges, the cusps of exproot/power23 at 0,
 * satursin at +-pi/2, linearclip at +-1, and u = 0 for sign()/abs()-built forms, the one-sided
 * derivative is a free choice (PyTorch's clamp passes the gradient at the edge, |u|' = sign(0) = 0,
 * exproot/power23 give NaN at 0). The oracle reports each element's distance from such points along
 * the whole transform chain, and elements closer than KINK_MARGIN are resampled before the C side
 * runs. The margin is 0.02 rather than ~1e-3 because near the infinite-slope cusps fp32 rounding
 * of u = alpha*x + s (fma or not) alone moves f'(u) by more than rtol within 1e-3 of 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derf/norm.h"
#include "testutil.h"
#include "torch_oracle.h"

#define KINK_MARGIN 0.02

static uint64_t case_seed(const char *name) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a of the case name, mixed with the run seed */
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

static int cmp(const char *what, const float *got, const float *want, size_t n, double atol, double rtol) {
    if (!want) { fprintf(stderr, "%s: missing from the oracle's reply\n", what); return 0; }
    double *w = malloc((n ? n : 1) * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = want[i];
    int ok = tu_close(what, got, w, n, atol, rtol);
    free(w);
    return ok;
}

/* Tolerance of a gradient that sums n terms whose rms is rms. */
static double sum_atol(size_t n, double rms) { return 3e-5 * sqrt((double)n) * (rms > 1 ? rms : 1); }

static const char *tf_name(derf_tf_kind k) {
    static const char *names[] = {"hshift", "vshift", "clip", "mix", "flat", "neg"};
    return (unsigned)k < DERF_TF_COUNT ? names[k] : "?";
}

typedef struct {
    const char *name;
    const char *spec; /* parsed with derf_norm_parse; the fields below are what it must give */
    derf_norm_kind kind;
    derf_fn_id fn;
    derf_shift_kind shift;
    int affine, bias;
    int n_tf;
    derf_tf tf[3];
} norm_case;

static void describe(const derf_norm_spec *sp, char *buf, size_t len) {
    size_t k = 0;
    if (sp->kind == DERF_NORM_LAYERNORM) { snprintf(buf, len, "layernorm eps=%g", sp->eps); return; }
    if (sp->kind == DERF_NORM_RMSNORM) { snprintf(buf, len, "rmsnorm eps=%g bias=%d", sp->eps, sp->bias); return; }
    k += snprintf(buf + k, len - k, "fn=%s", derf_fn_get(sp->fn)->name);
    for (int i = 0; i < sp->n_tf && k < len; i++)
        k += snprintf(buf + k, len - k, " %s:%g", tf_name(sp->tf[i].kind), sp->tf[i].lambda);
    if (k < len)
        snprintf(buf + k, len - k, " shift=%s affine=%d bias=%d",
                 sp->shift == DERF_SHIFT_NONE ? "none" : sp->shift == DERF_SHIFT_SCALAR ? "scalar" : "channel",
                 sp->affine, sp->bias);
}

/* Builds the spec with derf_norm_parse and checks it against the case's expected fields. */
static void parse_case(const norm_case *nc, derf_norm_spec *sp) {
    char err[512], got[256], want[256];
    if (derf_norm_parse(nc->spec, sp, err, sizeof err)) fail_msg("%s: derf_norm_parse: %s", nc->name, err);
    derf_norm_spec w;
    memset(&w, 0, sizeof w);
    w.kind = nc->kind;
    w.fn = nc->fn;
    w.n_tf = nc->n_tf;
    for (int i = 0; i < nc->n_tf; i++) w.tf[i] = nc->tf[i];
    w.shift = nc->shift;
    w.affine = nc->affine;
    w.bias = nc->affine && nc->bias;
    w.eps = sp->eps;
    int same = sp->kind == w.kind && sp->affine == w.affine && sp->bias == w.bias;
    if (w.kind == DERF_NORM_POINTWISE) {
        same = same && sp->fn == w.fn && sp->shift == w.shift && sp->n_tf == w.n_tf;
        for (int i = 0; same && i < w.n_tf; i++)
            same = sp->tf[i].kind == w.tf[i].kind && sp->tf[i].lambda == w.tf[i].lambda;
    }
    if (!same) {
        describe(sp, got, sizeof got);
        describe(&w, want, sizeof want);
        fail_msg("%s: spec '%s' parsed to [%s], the case expects [%s]", nc->name, nc->spec, got, want);
    }
}

static void run_pointwise(const norm_case *nc) {
    uint64_t rs = case_seed(nc->name);
    int N = 6 + (int)(tu_uniform(&rs) * 11), C = 8 + (int)(tu_uniform(&rs) * 17);
    size_t NC = (size_t)N * C;

    derf_norm_spec sp;
    parse_case(nc, &sp);
    const derf_fn_info *info = derf_fn_get(nc->fn);
    assert_non_null(info);
    assert_non_null(info->name);

    /* parameter layout documented in norm.h: alpha[1], shift[0|1|C], gamma[C], beta[C] */
    size_t ns = sp.shift == DERF_SHIFT_NONE ? 0 : sp.shift == DERF_SHIFT_SCALAR ? 1 : (size_t)C;
    size_t ng = sp.affine ? (size_t)C : 0, nb = sp.bias ? (size_t)C : 0;
    size_t np = 1 + ns + ng + nb;
    assert_int_equal(derf_norm_param_count(&sp, C), np);
    float *params = calloc(np, sizeof(float)), *dparams = calloc(np, sizeof(float));
    float *alpha = params, *s = params + 1, *gamma = s + ns, *beta = gamma + ng;
    float *x = malloc(NC * sizeof(float)), *dy = malloc(NC * sizeof(float));
    float *y = malloc(NC * sizeof(float)), *dx = calloc(NC, sizeof(float));
    tu_fill(alpha, 1, &rs, 0.55, 0.85);
    tu_fill(s, ns, &rs, -0.3, 0.3);
    tu_fill(gamma, ng, &rs, 0.5, 1.5); /* |gamma| in [0.5, 1.5], random sign */
    for (size_t i = 0; i < ng; i++)
        if (tu_uniform(&rs) < 0.3) gamma[i] = -gamma[i];
    tu_fill(beta, nb, &rs, -0.5, 0.5);
    tu_fill(x, NC, &rs, -4, 4);
    tu_fill(dy, NC, &rs, -1, 1);

    char desc[256], hdr[512], err[1024];
    describe(&sp, desc, sizeof desc);
    size_t k = (size_t)snprintf(hdr, sizeof hdr, "pointwise fn=%s tf=", info->name);
    for (int i = 0; i < sp.n_tf; i++)
        k += (size_t)snprintf(hdr + k, sizeof hdr - k, "%s%s:%.9g", i ? "," : "", tf_name(sp.tf[i].kind),
                              (double)sp.tf[i].lambda);
    snprintf(hdr + k, sizeof hdr - k, " shift=%s affine=%d bias=%d N=%d C=%d",
             sp.shift == DERF_SHIFT_NONE ? "none" : sp.shift == DERF_SHIFT_SCALAR ? "scalar" : "channel",
             sp.affine, sp.bias, N, C);

    torch_reply rep = {0};
    int tries = 0;
    for (;; tries++) {
        torch_arr in[] = {torch_f("x", x, NC), torch_f("alpha", alpha, 1), torch_f("s", s, ns),
                          torch_f("gamma", gamma, ng), torch_f("beta", beta, nb), torch_f("dy", dy, NC)};
        if (torch_oracle_call(hdr, in, 6, &rep, err, sizeof err)) fail_msg("%s: %s", nc->name, err);
        const float *m = torch_reply_f(&rep, "margin", NC);
        if (!m) fail_msg("%s: oracle reply lacks margin[%zu]", nc->name, NC);
        size_t bad = 0;
        for (size_t i = 0; i < NC; i++)
            if (!(m[i] >= KINK_MARGIN)) { x[i] = (float)(-4 + 8 * tu_uniform(&rs)); bad++; }
        if (!bad) break;
        torch_reply_free(&rep);
        if (tries > 200) fail_msg("%s: could not draw inputs away from the kinks", nc->name);
    }

    derf_norm_forward(&sp, y, NULL, x, params, N, C);
    derf_norm_backward(&sp, dx, dparams, dy, x, params, NULL, N, C);

    const float *ry = torch_reply_f(&rep, "y", NC), *rdx = torch_reply_f(&rep, "dx", NC);
    const float *rda = torch_reply_f(&rep, "dalpha", 1), *rds = torch_reply_f(&rep, "ds", ns);
    const float *rdg = torch_reply_f(&rep, "dgamma", ng), *rdb = torch_reply_f(&rep, "dbeta", nb);
    char what[320];
    int ok = 1;
    snprintf(what, sizeof what, "%s y", nc->name);
    ok &= cmp(what, y, ry, NC, 2e-5, 1e-4);
    snprintf(what, sizeof what, "%s dx", nc->name);
    ok &= cmp(what, dx, rdx, NC, 2e-5, 1e-4);
    if (rdx) {
        /* summed terms: dalpha_i = dx_i * x_i / alpha, ds_i = dx_i / alpha */
        double ta = 0, ts = 0;
        for (size_t i = 0; i < NC; i++) {
            double t = rdx[i] / alpha[0];
            ts += t * t;
            ta += t * x[i] * t * x[i];
        }
        snprintf(what, sizeof what, "%s dalpha", nc->name);
        ok &= cmp(what, dparams, rda, 1, sum_atol(NC, sqrt(ta / NC)), 1e-4);
        if (ns) {
            size_t per = ns == 1 ? NC : (size_t)N;
            snprintf(what, sizeof what, "%s ds", nc->name);
            ok &= cmp(what, dparams + 1, rds, ns, sum_atol(per, sqrt(ts / NC)), 1e-4);
        }
    }
    if (ng && ry) {
        double tg = 0; /* dgamma terms dy * f(u) = dy * (y - beta) / gamma */
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                double f = (ry[n * C + c] - (nb ? beta[c] : 0)) / gamma[c];
                tg += dy[n * C + c] * f * dy[n * C + c] * f;
            }
        snprintf(what, sizeof what, "%s dgamma", nc->name);
        ok &= cmp(what, dparams + 1 + ns, rdg, ng, sum_atol((size_t)N, sqrt(tg / NC)), 1e-4);
    }
    if (nb) {
        snprintf(what, sizeof what, "%s dbeta", nc->name);
        ok &= cmp(what, dparams + 1 + ns + ng, rdb, nb, sum_atol((size_t)N, 1), 1e-4);
    }
    double a0 = alpha[0];
    torch_reply_free(&rep);
    free(params); free(dparams); free(x); free(dy); free(y); free(dx);
    if (!ok)
        fail_msg("%s (%s, N=%d C=%d, alpha=%g, %d resample rounds) differs from PyTorch", nc->name, desc,
                 N, C, a0, tries);
}

static void run_reduction_norm(const norm_case *nc) {
    uint64_t rs = case_seed(nc->name);
    int N = 6 + (int)(tu_uniform(&rs) * 11), C = 8 + (int)(tu_uniform(&rs) * 17);
    size_t NC = (size_t)N * C;
    derf_norm_spec sp;
    parse_case(nc, &sp);
    size_t nb = sp.bias ? (size_t)C : 0, np = (size_t)C + nb;
    assert_int_equal(derf_norm_param_count(&sp, C), np);
    size_t nst = derf_norm_stats_count(&sp, N);
    assert_int_equal(nst, (size_t)(sp.kind == DERF_NORM_LAYERNORM ? 2 * N : N));
    float *params = malloc(np * sizeof(float)), *dparams = calloc(np, sizeof(float));
    float *x = malloc(NC * sizeof(float)), *dy = malloc(NC * sizeof(float));
    float *y = malloc(NC * sizeof(float)), *dx = calloc(NC, sizeof(float));
    float *stats = malloc(nst * sizeof(float));
    tu_fill(params, C, &rs, 0.5, 1.5);
    tu_fill(params + C, nb, &rs, -0.5, 0.5);
    for (int n = 0; n < N; n++) { /* rows with their own offset and scale; row 1 is tiny and centred
                                      * (mean square ~ eps, so eps must match, with no fp32 cancellation) */
        double off = n == 1 ? 0 : -2 + 4 * tu_uniform(&rs), sc = n == 1 ? 0.005 : 0.3 + 2.7 * tu_uniform(&rs);
        tu_fill(x + (size_t)n * C, C, &rs, off - sc, off + sc);
    }
    tu_fill(dy, NC, &rs, -1, 1);

    char hdr[256], err[1024];
    snprintf(hdr, sizeof hdr, "%s eps=%.9g N=%d C=%d", nc->kind == DERF_NORM_LAYERNORM ? "layernorm" : "rmsnorm",
             (double)sp.eps, N, C);
    torch_arr in[] = {torch_f("x", x, NC), torch_f("weight", params, C), torch_f("bias", params + C, nb),
                      torch_f("dy", dy, NC)};
    torch_reply rep = {0};
    if (torch_oracle_call(hdr, in, 4, &rep, err, sizeof err)) fail_msg("%s: %s", nc->name, err);

    derf_norm_forward(&sp, y, stats, x, params, N, C);
    derf_norm_backward(&sp, dx, dparams, dy, x, params, stats, N, C);

    char what[320];
    int ok = 1;
    snprintf(what, sizeof what, "%s y", nc->name);
    ok &= cmp(what, y, torch_reply_f(&rep, "y", NC), NC, 3e-5, 1e-4);
    snprintf(what, sizeof what, "%s dx", nc->name);
    ok &= cmp(what, dx, torch_reply_f(&rep, "dx", NC), NC, 5e-5, 1e-4);
    snprintf(what, sizeof what, "%s dweight", nc->name);
    ok &= cmp(what, dparams, torch_reply_f(&rep, "dweight", C), C, sum_atol((size_t)N, 2), 1e-4);
    if (nb) {
        snprintf(what, sizeof what, "%s dbias", nc->name);
        ok &= cmp(what, dparams + C, torch_reply_f(&rep, "dbias", nb), nb, sum_atol((size_t)N, 1), 1e-4);
    }
    torch_reply_free(&rep);
    free(params); free(dparams); free(x); free(dy); free(y); free(dx); free(stats);
    if (!ok) fail_msg("%s (N=%d C=%d eps=%g) differs from PyTorch", nc->name, N, C, (double)sp.eps);
}

static void test_case(void **state) {
    const norm_case *nc = *state;
    require_oracle();
    if (nc->kind == DERF_NORM_POINTWISE) run_pointwise(nc);
    else run_reduction_norm(nc);
}

static int group_setup(void **state) {
    char msg[512];
    int st = torch_oracle_start(msg, sizeof msg);
    fprintf(stderr, "# %s\n", msg);
    (void)st; /* a failed start fails every test with the message (see require_oracle) */
    return 0;
}
static int group_teardown(void **state) {
    torch_oracle_stop();
    return 0;
}

#define PW(nm, spec, f, sh, aff, bi) {nm, spec, DERF_NORM_POINTWISE, f, sh, aff, bi, 0, {{0, 0}}}
#define TF1(nm, spec, f, k, l) {nm, spec, DERF_NORM_POINTWISE, f, DERF_SHIFT_NONE, 1, 1, 1, {{k, l}}}

int main(void) {
    static norm_case cases[DERF_FN_COUNT + 64];
    static char names[DERF_FN_COUNT][64];
    int n = 0;
    /* every base function as the Derf-style layer: scalar shift, gamma and beta */
    for (int f = 0; f < DERF_FN_COUNT; f++) {
        const derf_fn_info *info = derf_fn_get((derf_fn_id)f);
        snprintf(names[f], sizeof names[f], "fn_%s", info && info->name ? info->name : "unnamed");
        /* the spec is the bare name: defaults are scalar shift, gamma and beta */
        norm_case c = PW(names[f], names[f] + 3, (derf_fn_id)f, DERF_SHIFT_SCALAR, 1, 1);
        cases[n++] = c;
    }
    static const norm_case extra[] = {
        PW("dyt_tanh_no_shift", "dyt", DERF_FN_TANH, DERF_SHIFT_NONE, 1, 1),
        PW("derf_erf_shift", "derf", DERF_FN_ERF, DERF_SHIFT_SCALAR, 1, 1),
        PW("erf_channel_shift", "erf:shift=channel", DERF_FN_ERF, DERF_SHIFT_CHANNEL, 1, 1),
        PW("erf_no_affine_dit", "derf:noaffine", DERF_FN_ERF, DERF_SHIFT_SCALAR, 0, 0),
        PW("tanh_no_affine_no_shift", "dyt:noaffine", DERF_FN_TANH, DERF_SHIFT_NONE, 0, 0),
        PW("tanh_no_bias_llama", "dyt:nobias", DERF_FN_TANH, DERF_SHIFT_NONE, 1, 0),
        PW("erf_no_bias_channel_shift", "erf:shift=channel:nobias", DERF_FN_ERF, DERF_SHIFT_CHANNEL, 1, 0),
        {"layernorm", "layernorm", DERF_NORM_LAYERNORM, 0, DERF_SHIFT_NONE, 1, 1, 0, {{0, 0}}},
        {"rmsnorm", "rmsnorm", DERF_NORM_RMSNORM, 0, DERF_SHIFT_NONE, 1, 0, 0, {{0, 0}}},
        {"rmsnorm_bias", "rmsnorm:bias", DERF_NORM_RMSNORM, 0, DERF_SHIFT_NONE, 1, 1, 0, {{0, 0}}},
        /* property-ablation transforms (section 3 runs: no shift) */
        TF1("tf_hshift_erf_+0.5", "erf+hshift=0.5:noshift", DERF_FN_ERF, DERF_TF_HSHIFT, 0.5f),
        TF1("tf_hshift_tanh_-1", "tanh+hshift=-1:noshift", DERF_FN_TANH, DERF_TF_HSHIFT, -1.0f),
        TF1("tf_vshift_erf_+0.5", "erf+vshift=0.5:noshift", DERF_FN_ERF, DERF_TF_VSHIFT, 0.5f),
        TF1("tf_vshift_arctan_-0.1", "arctan+vshift=-0.1:noshift", DERF_FN_ARCTAN, DERF_TF_VSHIFT, -0.1f),
        TF1("tf_clip_arcsinh_0.8", "arcsinh+clip=0.8:noshift", DERF_FN_ARCSINH, DERF_TF_CLIP, 0.8f),
        TF1("tf_clip_logsign_0.5", "logsign+clip=0.5:noshift", DERF_FN_LOGSIGN, DERF_TF_CLIP, 0.5f),
        TF1("tf_clip_linear_2", "linear+clip=2:noshift", DERF_FN_LINEAR, DERF_TF_CLIP, 2.0f),
        TF1("tf_mix_erf_0.1", "erf+mix=0.1:noshift", DERF_FN_ERF, DERF_TF_MIX, 0.1f),
        TF1("tf_mix_isru_0.01", "isru+mix=0.01:noshift", DERF_FN_ISRU, DERF_TF_MIX, 0.01f),
        TF1("tf_flat_erf_0.5", "erf+flat=0.5:noshift", DERF_FN_ERF, DERF_TF_FLAT, 0.5f),
        TF1("tf_flat_arctan_1", "arctan+flat=1:noshift", DERF_FN_ARCTAN, DERF_TF_FLAT, 1.0f),
        TF1("tf_neg_erf", "erf+neg:noshift", DERF_FN_ERF, DERF_TF_NEG, 0.0f),
        TF1("tf_neg_arctan", "neg(arctan):noshift", DERF_FN_ARCTAN, DERF_TF_NEG, 0.0f),
        /* compositions, applied in order (each wraps the function so far) */
        {"tf_erf_hshift0.3_clip0.7_shift", "erf+hshift=0.3+clip=0.7", DERF_NORM_POINTWISE, DERF_FN_ERF, DERF_SHIFT_SCALAR, 1, 1, 2,
         {{DERF_TF_HSHIFT, 0.3f}, {DERF_TF_CLIP, 0.7f}}},
        {"tf_tanh_flat0.5_neg_chshift", "tanh+flat=0.5+neg:shift=channel", DERF_NORM_POINTWISE, DERF_FN_TANH, DERF_SHIFT_CHANNEL, 1, 1, 2,
         {{DERF_TF_FLAT, 0.5f}, {DERF_TF_NEG, 0}}},
        {"tf_exproot_flat1_mix0.1_vshift", "exproot+flat=1+mix=0.1+vshift=0.2", DERF_NORM_POINTWISE, DERF_FN_EXPROOT, DERF_SHIFT_SCALAR, 1, 1, 3,
         {{DERF_TF_FLAT, 1.0f}, {DERF_TF_MIX, 0.1f}, {DERF_TF_VSHIFT, 0.2f}}},
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) cases[n++] = extra[i];

    struct CMUnitTest tests[DERF_FN_COUNT + 64];
    for (int i = 0; i < n; i++) {
        struct CMUnitTest t = {cases[i].name, test_case, NULL, NULL, &cases[i]};
        tests[i] = t;
    }
    return _cmocka_run_group_tests("torch_norms", tests, (size_t)n, group_setup, group_teardown);
}
