/* cmd_functions.c: `derf functions [SPEC...]`: the norm family the paper searched, with each
 * function's properties measured numerically on its double-precision reference, and an SVG plot of
 * the shapes. With SPEC arguments, the same for any spec (e.g. an ablation such as erf+flat=1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "derf/io.h"
#include "derf/norm.h"
#include "derf/plot.h"

typedef derf_fn_props props;

static double G(const derf_norm_spec *s, double u) { return derf_pointwise_eval_f64(s, u); }

static props measure(const derf_norm_spec *s) {
    props p;
    derf_pointwise_props(s, &p);
    return p;
}

static void print_row(const char *name, const derf_norm_spec *s, const char *formula) {
    props p = measure(s);
    char zc[48], bd[48], sl[48], mono[32], cs[48];
    if (fabs(p.g0) < 1e-12 && p.odd) snprintf(zc, sizeof zc, "yes");
    else if (fabs(p.g0) < 1e-12) snprintf(zc, sizeof zc, "g(0)=0, not odd");
    else snprintf(zc, sizeof zc, "no, g(0)=%.3g", p.g0);
    if (p.bounded) snprintf(bd, sizeof bd, "yes [%.3g, %.3g]", p.lo, p.hi);
    else snprintf(bd, sizeof bd, "no");
    if (p.slope_inf) snprintf(sl, sizeof sl, "inf (cusp)");
    else snprintf(sl, sizeof sl, "%.3f", p.slope0);
    snprintf(mono, sizeof mono, "%s", p.mono > 0 ? "increasing" : p.mono < 0 ? "decreasing" : "no");
    if (p.flat > 1e-3) snprintf(cs, sizeof cs, "no, flat on +-%.2f", p.flat);
    else if (!p.slope_inf && fabs(p.slope0) < 1e-6) snprintf(cs, sizeof cs, "weak, f'(0)=0");
    else snprintf(cs, sizeof cs, "yes");
    printf("%-30s %-16s %-22s %-11s %-19s %-11s %s\n", name, zc, bd, sl, cs, mono, formula);
}

static void curve(const derf_norm_spec *s, double range, double *x, double *y, int n) {
    for (int i = 0; i < n; i++) {
        x[i] = -range + 2 * range * i / (n - 1);
        y[i] = G(s, x[i]);
    }
}

int cmd_functions(int argc, char **argv) {
    const char *plot = "functions.svg";
    int no_plot = 0;
    float range = 4.f;
    const cli_opt opts[] = {
        {"plot", CLI_STR, &plot, "write the shapes to this SVG file", 0, -1},
        {"no-plot", CLI_FLAG, &no_plot, "print the table only", 0, -1},
        {"range", CLI_FLOAT, &range, "plot u over [-range, range]", 0.1, 1000},
        {0},
    };
    const cli_cmd cmd = {"functions", "[SPEC...] [options]",
        "List every registered point-wise function (the paper's 16-function search, then the bases of its\n"
        "property study) with its properties measured numerically on g(u), u = alpha x + s, and plot the shapes.\n"
        "With SPEC arguments (any --norm spec, e.g. erf+flat=1 or neg(erf)), show those instead.",
        "Columns: zero-centred (g(0) = 0 and g odd), bounded (range seen up to |u| = 1e30), slope at 0,\n"
        "center-sensitive (no flat zone, nonzero slope), monotone, formula. Spec grammar: docs/norm-spec.md.",
        opts};
    char *pos[64];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 64, &npos);
    if (rc) return rc > 0 ? 0 : 2;

    derf_norm_spec specs[64];
    char names[64][128];
    int n = 0;
    if (npos == 0) {
        for (int i = 0; i < DERF_FN_COUNT; i++) {
            derf_norm_parse(derf_fn_get((derf_fn_id)i)->name, &specs[n], NULL, 0);
            snprintf(names[n++], sizeof names[0], "%s", derf_fn_get((derf_fn_id)i)->name);
        }
    } else {
        for (int i = 0; i < npos; i++) {
            char err[DERF_ERRLEN];
            if (derf_norm_parse(pos[i], &specs[n], err, sizeof err)) return cli_fail("functions", "%s", err);
            if (specs[n].kind != DERF_NORM_POINTWISE) {
                printf("%s: a reduction norm (statistics over the %s of each row), not a point-wise function\n", pos[i],
                       specs[n].kind == DERF_NORM_LAYERNORM ? "mean and variance" : "root mean square");
                continue;
            }
            snprintf(names[n++], sizeof names[0], "%s", pos[i]);
        }
        if (n == 0) return 0;
    }
    printf("%-30s %-16s %-22s %-11s %-19s %-11s %s\n", "function", "zero-centred", "bounded", "slope at 0",
           "center-sensitive", "monotone", "formula");
    for (int i = 0; i < n; i++) {
        const char *formula = derf_fn_get(specs[i].fn)->formula;
        char composed[256];
        if (specs[i].n_tf) {
            snprintf(composed, sizeof composed, "%s, then transforms", formula);
            formula = composed;
        }
        if (npos == 0 && i == 0) printf("-- the paper's function search (Table 7) --\n");
        if (npos == 0 && i == DERF_FN_SEARCH_COUNT) printf("-- bases of the property study (section 3) --\n");
        print_row(names[i], &specs[i], formula);
    }
    if (no_plot) return 0;

    enum { PTS = 401 };
    static double xs[64][PTS], ys[64][PTS], rx[PTS], ry[PTS];
    derf_strbuf sb = {0};
    int cols = n == 1 ? 1 : 4, rows = (n + cols - 1) / cols;
    double pw = n == 1 ? 520 : 240, ph = n == 1 ? 360 : 190;
    derf_svg_begin(&sb, (int)(cols * pw), (int)(rows * ph));
    derf_norm_spec erf;
    derf_norm_parse("erf", &erf, NULL, 0);
    curve(&erf, range, rx, ry, PTS);
    for (int i = 0; i < n; i++) {
        curve(&specs[i], range, xs[i], ys[i], PTS);
        derf_series s[2] = {{names[i], xs[i], ys[i], PTS, 0}, {"erf (reference)", rx, ry, PTS, 1}};
        int ns = (npos > 0 && !(specs[i].fn == DERF_FN_ERF && specs[i].n_tf == 0)) ? 2 : 1;
        derf_axes ax = {names[i], "u", NULL, -range, range, 0, 0, n == 1};
        derf_svg_panel(&sb, (i % cols) * pw, (i / cols) * ph, pw, ph, &ax, s, ns);
    }
    derf_svg_end(&sb);
    char err[DERF_ERRLEN];
    rc = derf_io_write_file(plot, sb.s, sb.len, err, sizeof err);
    derf_sb_free(&sb);
    if (rc) return cli_fail("functions", "%s", err);
    printf("wrote %s (%d function%s, u in [-%g, %g])\n", plot, n, n == 1 ? "" : "s", (double)range, (double)range);
    return 0;
}
