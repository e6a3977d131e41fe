/* cases.c: the case lists of `derf study`, with the paper's reference numbers.
 *
 * Every number below is ViT-B top-1 accuracy (%) on ImageNet-1K from "Stronger Normalization-Free
 * Transformers" (arXiv 2512.10938 v2), as docs/paper.md sections 3, 4 and 8 give them; X marks a run the
 * paper reports as failed/diverged (×). Our runs are a small ViT on Fashion-MNIST, so absolute
 * numbers differ; the comparison is about the ordering and the failures. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/io.h"
#include "derf/norm.h"
#include "derf/study.h"

#define X DERF_STUDY_DIVERGED
#define NA NAN

typedef struct {
    derf_study_case *v;
    int n, cap;
} case_list;

void derf_study_case_id(const char *spec, char *out, size_t n) {
    size_t k = 0;
    for (const char *p = spec; *p && k + 1 < n; p++)
        out[k++] = isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '_';
    out[k] = 0;
}

/* Adds a case; base: -2 = the case itself (a baseline), -1 = none, else an index. Returns its index. */
static int add(case_list *L, const char *table, const char *title, const char *row, const char *col, double x,
               const char *spec, double paper, double paper_loss, int base) {
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 64;
        L->v = realloc(L->v, (size_t)L->cap * sizeof *L->v);
        if (!L->v) abort();
    }
    derf_study_case *c = &L->v[L->n];
    memset(c, 0, sizeof *c);
    snprintf(c->table, sizeof c->table, "%s", table);
    snprintf(c->title, sizeof c->title, "%s", title);
    snprintf(c->row, sizeof c->row, "%s", row);
    snprintf(c->col, sizeof c->col, "%s", col);
    snprintf(c->spec, sizeof c->spec, "%s", spec);
    derf_study_case_id(spec, c->id, sizeof c->id);
    c->x = x;
    c->paper_acc = paper;
    c->paper_loss = paper_loss;
    c->base = base == -2 ? L->n : base;
    return L->n++;
}

/* The paper's value at lambda from parallel arrays (NAN when the paper did not run that lambda). */
static double at(const double *lam, const double *val, int n, double l) {
    for (int i = 0; i < n; i++)
        if (fabs(lam[i] - l) < 1e-9) return val[i];
    return NA;
}

static const char *const PROP_FNS[3] = {"erf", "tanh", "arctan"};

/* Table 1: horizontal and vertical shift, lambda in {-2,-1,-0.5,-0.1,+0.1,+0.5,+1,+2}; lambda = 0 is the base. */
static void table1(case_list *L, const double *lams, int nl) {
    static const double lam[8] = {-2, -1, -0.5, -0.1, 0.1, 0.5, 1, 2};
    static const double P[6][9] = { /* -2 -1 -0.5 -0.1 | 0 | +0.1 +0.5 +1 +2 */
        {X, 82.0, 82.5, 82.6, 82.6, 82.7, 82.5, 82.1, X}, /* erf horizontal */
        {X, 81.8, 82.3, 82.4, 82.6, 82.5, 82.3, 81.6, X}, /* erf vertical */
        {X, 82.1, 82.5, 82.6, 82.5, 82.6, 82.4, 82.2, X}, /* tanh horizontal */
        {X, 81.5, 81.9, 82.4, 82.5, 82.3, 81.9, 81.4, X}, /* tanh vertical */
        {X, 81.9, 82.3, 82.3, 82.3, 82.4, 82.2, 82.0, X}, /* arctan horizontal */
        {X, 81.4, 81.9, 82.2, 82.3, 82.3, 82.0, 81.2, X}, /* arctan vertical */
    };
    const char *T = "Table 1", *title = "zero-centredness: f(u + λ) (horizontal) and f(u) + λ (vertical), no s";
    if (!nl) { lams = lam; nl = 8; }
    for (int f = 0; f < 3; f++)
        for (int v = 0; v < 2; v++) {
            const double *p = P[f * 2 + v];
            double pv[8] = {p[0], p[1], p[2], p[3], p[5], p[6], p[7], p[8]};
            char row[48], spec[96], col[32];
            snprintf(row, sizeof row, "%s %s", PROP_FNS[f], v ? "vertical" : "horizontal");
            snprintf(spec, sizeof spec, "%s:noshift", PROP_FNS[f]);
            int b = add(L, T, title, row, "0", 0, spec, p[4], NA, -2);
            for (int i = 0; i < nl; i++) {
                if (lams[i] == 0) continue;
                snprintf(col, sizeof col, "%g", lams[i]);
                snprintf(spec, sizeof spec, "%s+%s=%g:noshift", PROP_FNS[f], v ? "vshift" : "hshift", lams[i]);
                add(L, T, title, row, col, lams[i], spec, at(lam, pv, 8, lams[i]), NA, b);
            }
        }
}

/* Table 2: clipping the unbounded arcsinh, logsign, linear at +-lambda; unclipped is the base. */
static void table2(case_list *L, const double *lams, int nl) {
    static const double lam[6] = {0.5, 0.8, 1, 2, 3, 5};
    static const char *const fns[3] = {"arcsinh", "logsign", "linear"};
    static const double P[3][7] = { /* unclipped, 0.5 0.8 1 2 3 5 */
        {82.2, 82.3, 82.3, 82.4, 82.4, 82.4, 82.3},
        {82.2, 82.4, 82.4, 82.4, 82.4, 82.3, 82.3},
        {X, 82.1, 82.2, 82.2, 82.1, 82.1, 82.0},
    };
    const char *T = "Table 2", *title = "boundedness: clip(f(u), -λ, λ) of unbounded functions, no s";
    if (!nl) { lams = lam; nl = 6; }
    for (int f = 0; f < 3; f++) {
        char spec[96], col[32];
        snprintf(spec, sizeof spec, "%s:noshift", fns[f]);
        int b = add(L, T, title, fns[f], "unclipped", NA, spec, P[f][0], NA, -2);
        for (int i = 0; i < nl; i++) {
            snprintf(col, sizeof col, "%g", lams[i]);
            snprintf(spec, sizeof spec, "%s+clip=%g:noshift", fns[f], lams[i]);
            add(L, T, title, fns[f], col, lams[i], spec, at(lam, P[f] + 1, 6, lams[i]), NA, b);
        }
    }
}

/* Table 3: mixing toward linear, (1 - lambda) f(u) + lambda u; the original f is the base. */
static void table3(case_list *L, const double *lams, int nl) {
    static const double lam[3] = {0.01, 0.1, 0.5};
    static const char *const fns[4] = {"erf", "tanh", "arctan", "isru"};
    static const double P[4][4] = { /* original, 0.01 0.1 0.5 */
        {82.6, 82.4, 82.3, X}, {82.5, 82.4, 82.3, X}, {82.3, 82.1, 82.1, X}, {82.2, 82.2, 82.1, X},
    };
    const char *T = "Table 3", *title = "boundedness: linear mix (1 - λ) f(u) + λ u, no s";
    if (!nl) { lams = lam; nl = 3; }
    for (int f = 0; f < 4; f++) {
        char spec[96], col[32];
        snprintf(spec, sizeof spec, "%s:noshift", fns[f]);
        int b = add(L, T, title, fns[f], "original", 0, spec, P[f][0], NA, -2);
        for (int i = 0; i < nl; i++) {
            if (lams[i] == 0) continue;
            snprintf(col, sizeof col, "%g", lams[i]);
            snprintf(spec, sizeof spec, "%s+mix=%g:noshift", fns[f], lams[i]);
            add(L, T, title, fns[f], col, lams[i], spec, at(lam, P[f] + 1, 3, lams[i]), NA, b);
        }
    }
}

/* Table 4: growth rate of unbounded, unclipped functions (no baseline: the question is which train). */
static void table4(case_list *L) {
    static const char *const fns[5] = {"logsign", "arcsinh", "logquad", "power23", "linear"};
    static const double P[5] = {82.2, 82.2, 82.1, X, X};
    for (int f = 0; f < 5; f++) {
        char spec[96];
        snprintf(spec, sizeof spec, "%s:noshift", fns[f]);
        add(L, "Table 4", "boundedness: growth rate of unbounded, unclipped functions, no s", "unclipped", fns[f], NA,
            spec, P[f], NA, -1);
    }
}

/* Table 5: flat zone of half-width lambda at the centre; lambda = 0 is the base. */
static void table5(case_list *L, const double *lams, int nl) {
    static const double lam[5] = {0.1, 0.5, 1, 2, 3};
    static const double P[3][6] = { /* 0, 0.1 0.5 1 2 3 */
        {82.6, 82.5, 82.5, 82.1, 81.3, X}, {82.5, 82.5, 82.4, 82.1, 81.1, X}, {82.3, 82.3, 82.1, 81.8, 80.9, X},
    };
    const char *T = "Table 5", *title = "centre sensitivity: flat zone f = 0 on [-λ, λ], no s";
    if (!nl) { lams = lam; nl = 5; }
    for (int f = 0; f < 3; f++) {
        char spec[96], col[32];
        snprintf(spec, sizeof spec, "%s:noshift", PROP_FNS[f]);
        int b = add(L, T, title, PROP_FNS[f], "0", 0, spec, P[f][0], NA, -2);
        for (int i = 0; i < nl; i++) {
            if (lams[i] == 0) continue;
            snprintf(col, sizeof col, "%g", lams[i]);
            snprintf(spec, sizeof spec, "%s+flat=%g:noshift", PROP_FNS[f], lams[i]);
            add(L, T, title, PROP_FNS[f], col, lams[i], spec, at(lam, P[f] + 1, 5, lams[i]), NA, b);
        }
    }
}

/* Table 6: monotonicity: f and -f; non-monotone sin, dampx, dampexp (compared with erf). */
static void table6(case_list *L) {
    static const double P[3][2] = {{82.6, 82.5}, {82.5, 82.5}, {82.3, 82.2}};
    static const char *const nm[3] = {"sin", "dampx", "dampexp"};
    static const double PN[3] = {81.6, 80.7, 81.2};
    const char *T = "Table 6", *title = "monotonicity: f and its negation -f; non-monotone functions, no s";
    int erf_base = -1;
    for (int f = 0; f < 3; f++) {
        char spec[96];
        snprintf(spec, sizeof spec, "%s:noshift", PROP_FNS[f]);
        int b = add(L, T, title, PROP_FNS[f], "f(x)", NA, spec, P[f][0], NA, -2);
        if (f == 0) erf_base = b;
        snprintf(spec, sizeof spec, "neg(%s):noshift", PROP_FNS[f]);
        add(L, T, title, PROP_FNS[f], "f_neg(x)", NA, spec, P[f][1], NA, b);
    }
    for (int f = 0; f < 3; f++) {
        char spec[96];
        snprintf(spec, sizeof spec, "%s:noshift", nm[f]);
        add(L, T, title, nm[f], "f(x)", NA, spec, PN[f], NA, erf_base);
    }
}

/* Table 7: the 16 functions of the search, with learnable s (Eq. 8), and LayerNorm. */
static void table7(case_list *L) {
    static const struct { const char *name; double acc; } P[] = {
        {"erf", 82.8}, {"tanh", 82.6}, {"satursin", 82.6}, {"arcsinhclip", 82.5}, {"isru", 82.3},
        {"exproot", 82.4}, {"linearclip", 82.3}, {"expsign", 82.2}, {"logsignclip", 82.4}, {"relsign", 82.3},
        {"arctan", 82.4}, {"smoothsign", 82.4}, {"logquadclip", 82.2}, {"power23clip", 82.1}, {"saturlog", 81.8},
        {"cubsign", 81.4},
    };
    const char *T = "Table 7", *title = "function search: γ f(αx + s) + β with learnable s, against LayerNorm";
    int b = add(L, T, title, "LayerNorm", "ViT top-1", NA, "layernorm", 82.3, NA, -2);
    for (int i = 0; i < DERF_FN_SEARCH_COUNT; i++) {
        const char *name = derf_fn_get((derf_fn_id)i)->name;
        double acc = NA;
        for (size_t k = 0; k < sizeof P / sizeof P[0]; k++)
            if (!strcmp(P[k].name, name)) acc = P[k].acc;
        add(L, T, title, name, "ViT top-1", NA, name, acc, NA, b);
    }
}

/* Table 13 (with Table 8's accuracies): evaluation-mode training loss beside test accuracy. */
static void table13(case_list *L) {
    const char *T = "Table 13", *title = "fitting vs generalisation: eval-mode training loss and test accuracy";
    int b = add(L, T, title, "LayerNorm", "ViT-B", NA, "layernorm", 82.3, 0.2623, -2);
    add(L, T, title, "Derf", "ViT-B", NA, "derf", 82.8, 0.2681, b);
    add(L, T, title, "DyT", "ViT-B", NA, "dyt", 82.5, 0.2714, b);
}

/* Tables 14 and 15: with / without s; scalar / per-channel s. */
static void table14_15(case_list *L) {
    static const struct { const char *fn; double without, with; } P14[] = {
        {"erf", 82.6, 82.8}, {"tanh", 82.5, 82.6}, {"satursin", 82.4, 82.6},
        {"isru", 82.2, 82.3}, {"arctan", 82.3, 82.4}, {"arcsinhclip", 82.4, 82.5},
    };
    static const struct { const char *fn; double scalar, vec; } P15[] = {
        {"erf", 82.8, 82.8}, {"arctan", 82.4, 82.5}, {"arcsinhclip", 82.5, 82.5},
    };
    char spec[96];
    for (size_t i = 0; i < sizeof P14 / sizeof P14[0]; i++) {
        const char *title = "the learnable shift s: without (f:noshift) and with (f)";
        snprintf(spec, sizeof spec, "%s:noshift", P14[i].fn);
        int b = add(L, "Table 14", title, P14[i].fn, "without s", NA, spec, P14[i].without, NA, -2);
        add(L, "Table 14", title, P14[i].fn, "with s", NA, P14[i].fn, P14[i].with, NA, b);
    }
    for (size_t i = 0; i < sizeof P15 / sizeof P15[0]; i++) {
        const char *title = "scalar s (f) against per-channel s (f:shift=channel)";
        int b = add(L, "Table 15", title, P15[i].fn, "scalar s", NA, P15[i].fn, P15[i].scalar, NA, -2);
        snprintf(spec, sizeof spec, "%s:shift=channel", P15[i].fn);
        add(L, "Table 15", title, P15[i].fn, "per-channel s", NA, spec, P15[i].vec, NA, b);
    }
}

/* Table 16: tanh(eps x) against tanh and erf, all with learnable s (docs/paper.md section 8: the tanh
 * row equals Table 7's tanh with s). tanh(eps (alpha x + s)) is written as tanh(alpha' x + s') with
 * alpha' = eps alpha initialised at 0.5 eps: the same function family and the same initial function
 * (see docs/studies.md for the one difference, the step size of alpha and s under AdamW). */
static void table16(case_list *L, double eps) {
    const char *T = "Table 16", *title = "tanh(εx) as an approximation of erf (all with learnable s)";
    char spec[96], row[48];
    int b = add(L, T, title, "tanh(x)", "ViT-B", NA, "tanh", 82.6, NA, -2);
    snprintf(spec, sizeof spec, "tanh:alpha=%.6g", 0.5 * eps);
    snprintf(row, sizeof row, "tanh(εx), ε=%.4f", eps);
    add(L, T, title, row, "ViT-B", NA, spec, 82.7, NA, b);
    add(L, T, title, "erf(x)", "ViT-B", NA, "erf", 82.8, NA, b);
}

static const struct { const char *name, *about; } STUDIES[] = {
    {"properties", "Tables 1-6: zero-centredness, boundedness, growth, flat zone, monotonicity (no shift s)"},
    {"search", "Table 7: the 16 functions of the search (with s) and LayerNorm"},
    {"fitting", "Table 13: evaluation-mode training loss next to test accuracy (LayerNorm, Derf, DyT)"},
    {"shift", "Tables 14-15: with and without s; scalar vs per-channel s"},
    {"approx", "Table 16: fit eps in tanh(eps x) to erf (Eq. 11), train tanh(eps x) beside tanh and erf"},
};

const char *derf_study_names(void) { return "properties, search, fitting, shift, approx"; }

const char *derf_study_about(const char *study) {
    for (size_t i = 0; i < sizeof STUDIES / sizeof STUDIES[0]; i++)
        if (study && !strcmp(study, STUDIES[i].name)) return STUDIES[i].about;
    return NULL;
}

int derf_study_cases(const char *study, const derf_study_select *sel, derf_study_case **out, char *err, size_t errlen) {
    derf_study_select none = {0};
    if (!sel) sel = &none;
    case_list L = {0};
    *out = NULL;
    if (!derf_study_about(study)) {
        derf_io_errf(err, errlen, "unknown study '%s' (known: %s)", study ? study : "(null)", derf_study_names());
        return -1;
    }
    if (strcmp(study, "properties") && (sel->table || sel->nlambdas)) {
        derf_io_errf(err, errlen, "--table and --lambdas apply to the 'properties' study only");
        return -1;
    }
    if (!strcmp(study, "properties")) {
        if (sel->table < 0 || sel->table > 6) {
            derf_io_errf(err, errlen, "--table must be 1..6 (or 0 for all), not %d", sel->table);
            return -1;
        }
        if (sel->nlambdas && (sel->table == 4 || sel->table == 6)) {
            derf_io_errf(err, errlen, "--lambdas applies to Tables 1, 2, 3 and 5 (Table %d has no lambda)", sel->table);
            return -1;
        }
        int t = sel->table;
        if (!t || t == 1) table1(&L, sel->lambdas, sel->nlambdas);
        if (!t || t == 2) table2(&L, sel->lambdas, sel->nlambdas);
        if (!t || t == 3) table3(&L, sel->lambdas, sel->nlambdas);
        if (!t || t == 4) table4(&L);
        if (!t || t == 5) table5(&L, sel->lambdas, sel->nlambdas);
        if (!t || t == 6) table6(&L);
    } else if (!strcmp(study, "search")) {
        table7(&L);
    } else if (!strcmp(study, "fitting")) {
        table13(&L);
    } else if (!strcmp(study, "shift")) {
        table14_15(&L);
    } else {
        if (!(sel->tanh_eps > 0)) {
            derf_io_errf(err, errlen, "the approx study needs the fitted epsilon (derf_tanh_erf_fit)");
            return -1;
        }
        table16(&L, sel->tanh_eps);
    }
    /* every spec must parse (a bad --lambdas value, e.g. clip=-1, is caught here) */
    for (int i = 0; i < L.n; i++) {
        derf_norm_spec s;
        char e[DERF_ERRLEN];
        if (derf_norm_parse(L.v[i].spec, &s, e, sizeof e)) {
            derf_io_errf(err, errlen, "%s (%s, %s)", e, L.v[i].table, L.v[i].row);
            free(L.v);
            return -1;
        }
    }
    *out = L.v;
    return L.n;
}
