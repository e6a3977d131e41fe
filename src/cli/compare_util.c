/* compare_util.c: helpers shared by the `derf compare` variants (see compare_util.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "derf/io.h"
#include "derf/norm.h"
#include "derf/plot.h"
#include "derf/runlog.h"

int compare_parse_norms(const char *cmd, const char *norms, compare_norm *out) {
    int nn = 0;
    char list[2048];
    snprintf(list, sizeof list, "%s", norms);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (nn == MAX_NORMS) { cli_fail(cmd, "at most %d norms", MAX_NORMS); return -1; }
        compare_norm *nr = &out[nn++];
        nr->lr = 0.f;
        char *at = strchr(tok, '@');
        if (at) {
            *at = 0;
            char *end;
            nr->lr = strtof(at + 1, &end);
            if (end == at + 1 || *end || !(nr->lr > 0 && nr->lr < 10)) {
                cli_fail(cmd, "bad learning rate '%s' after '@' in --norms (e.g. derf@3e-3)", at + 1);
                return -1;
            }
        }
        snprintf(nr->spec, sizeof nr->spec, "%s", tok);
        derf_norm_spec s;
        char err[DERF_ERRLEN];
        if (derf_norm_parse(tok, &s, err, sizeof err)) { cli_fail(cmd, "%s", err); return -1; }
    }
    if (nn == 0) { cli_fail(cmd, "--norms is empty; e.g. --norms layernorm,dyt,derf"); return -1; }
    return nn;
}

int compare_make_dir(const char *cmd, const char *dir) {
    char err[DERF_ERRLEN];
    if (derf_io_mkdirs(dir, err, sizeof err)) { cli_fail(cmd, "%s", err); return -1; }
    return 0;
}

void compare_run_name(char *out, size_t n, const char *spec, int seed) {
    size_t k = 0;
    for (const char *p = spec; *p && k + 1 < n; p++) out[k++] = isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '_';
    out[k] = 0;
    snprintf(out + k, n - k, "-s%d", seed);
}

void compare_mean_std(const double *x, int n, double *m, double *s) {
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) a += x[i];
    a /= n;
    for (int i = 0; i < n; i++) b += (x[i] - a) * (x[i] - a);
    *m = a;
    *s = n > 1 ? sqrt(b / (n - 1)) : 0;
}

const char *compare_model_arg(int argc, char **argv) {
    const char *m = NULL; /* the last one wins, as in the option parser */
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--model=", 8)) m = argv[i] + 8;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) m = argv[++i];
    }
    return m;
}

int compare_write_report(const char *cmd, const char *out, derf_strbuf *md, derf_strbuf *svg) {
    char path[1200], err[DERF_ERRLEN];
    snprintf(path, sizeof path, "%s/report.md", out);
    int rc = derf_io_write_file(path, md->s, md->len, err, sizeof err);
    if (!rc && svg) {
        snprintf(path, sizeof path, "%s/curves.svg", out);
        rc = derf_io_write_file(path, svg->s, svg->len, err, sizeof err);
    }
    derf_sb_free(md);
    if (svg) derf_sb_free(svg);
    if (rc) return cli_fail(cmd, "%s", err);
    if (svg) printf("\nwrote %s/report.md and %s/curves.svg\n", out, out);
    else printf("\nwrote %s/report.md\n", out);
    return 0;
}

int compare_drive(const char *cmd, void *ctx, compare_run_fn fn, const compare_norm *list, int nn, int seeds, int seed0,
                  const char *out, int quiet, compare_row *rows) {
    if (compare_make_dir(cmd, out)) return 2;
    for (int i = 0; i < nn; i++) {
        memset(&rows[i], 0, sizeof rows[i]);
        memcpy(rows[i].spec, list[i].spec, sizeof rows[i].spec); /* both 128 bytes */
        rows[i].lr = list[i].lr;
    }
    for (int i = 0; i < nn; i++)
        for (int s = 0; s < seeds; s++) {
            char name[200], dir[1200];
            compare_run_name(name, sizeof name, rows[i].spec, seed0 + s);
            snprintf(dir, sizeof dir, "%s/%s", out, name);
            if (s == 0) snprintf(rows[i].dir, sizeof rows[i].dir, "%s", dir);
            if (!quiet) fprintf(stderr, "[derf] === %s, seed %d (%d of %d) ===\n", rows[i].spec, seed0 + s, i * seeds + s + 1, nn * seeds);
            int rc = fn(ctx, &rows[i], seed0 + s, dir, rows[i].v[s], &rows[i].seconds[s], &rows[i].ok[s]);
            if (rc) return rc;
        }
    return 0;
}

static int col_width(const compare_col *c) {
    int w = c->std ? 22 : 16, h = (int)strlen(c->head);
    return h > w ? h : w;
}

void compare_table(derf_strbuf *md, const compare_col *cols, int ncols, const char *note_head, const compare_row *rows,
                   int nn, int seeds, double lr0) {
    derf_sb_printf(md, "| norm | lr |");
    printf("\n%-28s %-9s", "norm", "lr");
    for (int c = 0; c < ncols; c++) {
        derf_sb_printf(md, " %s%s |", cols[c].head, cols[c].std ? " (mean ± std)" : "");
        printf(" %-*s", col_width(&cols[c]), cols[c].head);
    }
    derf_sb_printf(md, " time/run |%s%s%s\n|---|---|", note_head ? " " : "", note_head ? note_head : "", note_head ? " |" : "");
    printf(" time/run\n");
    int nnote = note_head ? 1 : 0; /* note_head may name several cells ("a | b") */
    for (const char *p = note_head; p && *p; p++) nnote += *p == '|';
    for (int c = 0; c < ncols + 1 + nnote; c++) derf_sb_printf(md, "---|");
    derf_sb_printf(md, "\n");
    for (int i = 0; i < nn; i++) {
        const compare_row *R = &rows[i];
        const double lr = R->lr > 0 ? R->lr : lr0;
        double t = 0;
        int k = 0;
        for (int s = 0; s < seeds; s++) if (R->ok[s]) { t += R->seconds[s]; k++; }
        if (!k) {
            printf("%-28s %-9.2g diverged (x) in all %d runs\n", R->spec, lr, seeds);
            derf_sb_printf(md, "| %s | %g | × (diverged) |", R->spec, lr);
            for (int c = 0; c < ncols + nnote; c++) derf_sb_printf(md, " |");
            derf_sb_printf(md, "\n");
            continue;
        }
        printf("%-28s %-9.2g", R->spec, lr);
        derf_sb_printf(md, "| %s | %g |", R->spec, lr);
        for (int c = 0; c < ncols; c++) {
            double x[MAX_SEEDS], m, sd;
            int n = 0;
            for (int s = 0; s < seeds; s++) if (R->ok[s]) x[n++] = R->v[s][c];
            compare_mean_std(x, n, &m, &sd);
            char cell[64] = "-", f[32];
            if (m >= 0 && cols[c].std) {
                snprintf(f, sizeof f, "%s ± %s", cols[c].fmt, cols[c].fmt);
                snprintf(cell, sizeof cell, f, m, sd);
            } else if (m >= 0) {
                snprintf(cell, sizeof cell, cols[c].fmt, m);
            }
            printf(" %-*s", col_width(&cols[c]) + cols[c].std, cell); /* "±" is 2 bytes */
            derf_sb_printf(md, " %s |", cell);
        }
        const char *div = k < seeds ? " (some runs diverged)" : "";
        printf(" %.0f s%s\n", t / k, div);
        derf_sb_printf(md, " %.0f s%s |", t / k, div);
        if (note_head) derf_sb_printf(md, " %s |", R->note);
        derf_sb_printf(md, "\n");
    }
}

void compare_curves(derf_strbuf *svg, const compare_row *rows, int nn, const compare_panel *p) {
    static double xs[2][MAX_NORMS][MAX_PTS], ys[2][MAX_NORMS][MAX_PTS];
    derf_series series[2][MAX_NORMS];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nn; i++) {
            const char *keys[3] = {p[k].x, p[k].y, p[k].y2 ? p[k].y2 : p[k].y};
            static double v[MAX_PTS * 3];
            int n = 0;
            for (int t = 0; t < 2; t++) {
                const char *type = t ? p[k].type2 : p[k].type;
                int m = type ? derf_runlog_read(rows[i].dir, type, keys, 3, v, MAX_PTS - n) : 0;
                for (int j = 0; j < m; j++, n++) {
                    xs[k][i][n] = v[3 * j];
                    ys[k][i][n] = p[k].scale * fmax(v[3 * j + 1], v[3 * j + 2]);
                }
            }
            series[k][i] = (derf_series){rows[i].spec, xs[k][i], ys[k][i], n, 0};
        }
    derf_svg_begin(svg, 960, 380);
    for (int k = 0; k < 2; k++) {
        derf_axes ax = {p[k].title, p[k].xlabel, p[k].ylabel, 0, p[k].xmax, 0, 0, 1};
        derf_svg_panel(svg, 480 * k, 0, 480, 380, &ax, series[k], nn);
    }
    derf_svg_end(svg);
}
