/* report.c: what `derf study` writes: results.csv (one row per case and seed), report.md (our
 * numbers beside the paper's, table by table, × for a diverged run) and plot.svg. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/io.h"
#include "derf/plot.h"
#include "derf/strbuf.h"
#include "derf/study.h"

void derf_study_stats(const derf_study_result *r, int seeds, derf_study_stat *st) {
    memset(st, 0, sizeof *st);
    double a = 0, a2 = 0, l = 0, l2 = 0;
    int nl = 0;
    for (int s = 0; s < seeds; s++) {
        if (!r[s].done) { st->n_missing++; continue; }
        if (r[s].r.diverged) { st->n_div++; continue; }
        double acc = 100.0 * r[s].r.test_acc, loss = r[s].r.train_loss_eval;
        st->n_ok++;
        a += acc; a2 += acc * acc;
        if (isfinite(loss) && loss >= 0) { l += loss; l2 += loss * loss; nl++; }
    }
    st->acc_mean = st->acc_sd = st->loss_mean = st->loss_sd = NAN;
    if (st->n_ok) {
        st->acc_mean = a / st->n_ok;
        st->acc_sd = st->n_ok > 1 ? sqrt(fmax(0, (a2 - a * a / st->n_ok) / (st->n_ok - 1))) : 0;
    }
    if (nl) {
        st->loss_mean = l / nl;
        st->loss_sd = nl > 1 ? sqrt(fmax(0, (l2 - l * l / nl) / (nl - 1))) : 0;
    }
}

int derf_study_beyond_spread(const derf_study_stat *c, const derf_study_stat *b) {
    if (c->n_ok < 2 || b->n_ok < 2) return -1;
    double se = sqrt(c->acc_sd * c->acc_sd / c->n_ok + b->acc_sd * b->acc_sd / b->n_ok);
    return fabs(c->acc_mean - b->acc_mean) > 2 * se;
}

/* ---- formatting helpers --------------------------------------------------------------------- */
static void fmt_ours(char *buf, size_t n, const derf_study_stat *st, int seeds) {
    if (!st->n_ok) {
        snprintf(buf, n, "%s", st->n_div ? "×" : "–");
        return;
    }
    size_t k = seeds > 1 ? (size_t)snprintf(buf, n, "%.2f ± %.2f", st->acc_mean, st->acc_sd)
                         : (size_t)snprintf(buf, n, "%.2f", st->acc_mean);
    if (st->n_div && k < n) snprintf(buf + k, n - k, " (× in %d of %d)", st->n_div, st->n_div + st->n_ok);
}

static void fmt_paper(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "n/a");
    else if (v == DERF_STUDY_DIVERGED) snprintf(buf, n, "×");
    else snprintf(buf, n, "%.1f", v);
}

static int paper_ok(double v) { return isfinite(v) && v != DERF_STUDY_DIVERGED; }

/* RFC 4180: quote a field that holds a comma, quote or line break; double the quotes. */
static void csv_field(derf_strbuf *b, const char *s, int last) {
    if (strpbrk(s, ",\"\r\n")) {
        derf_sb_printf(b, "\"");
        for (const char *p = s; *p; p++) derf_sb_printf(b, *p == '"' ? "\"\"" : "%c", *p);
        derf_sb_printf(b, "\"");
    } else {
        derf_sb_printf(b, "%s", s);
    }
    derf_sb_printf(b, last ? "\r\n" : ",");
}

static void csv_num(derf_strbuf *b, double v, const char *fmt) {
    if (isfinite(v)) derf_sb_printf(b, fmt, v);
    derf_sb_printf(b, ",");
}

static void write_csv(derf_strbuf *b, const derf_study_cfg *cfg, const derf_study_case *cases, int n,
                      const derf_study_result *res) {
    static const char *const head[] = {"study", "table", "row", "column", "case_id", "spec", "seed", "status",
                                       "test_acc_pct", "test_acc_ema_pct", "test_loss", "train_loss_eval",
                                       "train_loss_eval_ema", "final_train_loss", "steps", "seconds", "images_per_s",
                                       "paper_acc_pct", "paper_train_loss_eval"};
    const int nh = (int)(sizeof head / sizeof head[0]);
    for (int i = 0; i < nh; i++) csv_field(b, head[i], i == nh - 1);
    for (int i = 0; i < n; i++)
        for (int s = 0; s < cfg->seeds; s++) {
            const derf_study_result *r = &res[i * cfg->seeds + s];
            const derf_cls_result *q = &r->r;
            char seed[16];
            snprintf(seed, sizeof seed, "%d", cfg->seed0 + s);
            csv_field(b, cfg->study ? cfg->study : "", 0);
            csv_field(b, cases[i].table, 0);
            csv_field(b, cases[i].row, 0);
            csv_field(b, cases[i].col, 0);
            csv_field(b, cases[i].id, 0);
            csv_field(b, cases[i].spec, 0);
            csv_field(b, seed, 0);
            const char *status = !r->done ? "missing" : q->diverged ? "diverged" : "ok";
            csv_field(b, status, 0);
            int ok = r->done && !q->diverged;
            csv_num(b, ok ? 100.0 * q->test_acc : NAN, "%.4f");
            csv_num(b, ok && q->test_acc_ema >= 0 ? 100.0 * q->test_acc_ema : NAN, "%.4f");
            csv_num(b, ok ? q->test_loss : NAN, "%.6g");
            csv_num(b, ok && q->train_loss_eval >= 0 ? q->train_loss_eval : NAN, "%.6g");
            csv_num(b, ok && q->train_loss_eval_ema >= 0 ? q->train_loss_eval_ema : NAN, "%.6g");
            csv_num(b, r->done ? q->final_loss : NAN, "%.6g");
            csv_num(b, r->done ? q->steps : NAN, "%.0f");
            csv_num(b, r->done ? q->seconds : NAN, "%.2f");
            csv_num(b, r->done ? q->images_per_s : NAN, "%.1f");
            if (cases[i].paper_acc == DERF_STUDY_DIVERGED) derf_sb_printf(b, "diverged,");
            else csv_num(b, cases[i].paper_acc, "%.1f");
            if (isfinite(cases[i].paper_loss)) derf_sb_printf(b, "%.4f", cases[i].paper_loss);
            derf_sb_printf(b, "\r\n");
        }
}

/* ---- report.md ------------------------------------------------------------------------------ */
/* [first, end) of the cases of the table that starts at `first` */
static int table_end(const derf_study_case *cases, int n, int first) {
    int e = first;
    while (e < n && !strcmp(cases[e].table, cases[first].table)) e++;
    return e;
}

static void write_table_md(derf_strbuf *md, const derf_study_cfg *cfg, const derf_study_case *cases, int a, int e,
                           const derf_study_stat *st) {
    const int S = cfg->seeds;
    derf_sb_printf(md, "## %s: %s\n\n", cases[a].table, cases[a].title);
    /* the paper's layout: rows x columns, each cell "ours (paper)" */
    const char *cols[64];
    double colx[64];
    int nc = 0;
    for (int i = a; i < e; i++) {
        int k;
        for (k = 0; k < nc; k++)
            if (!strcmp(cols[k], cases[i].col)) break;
        if (k == nc && nc < 64) { colx[nc] = isfinite(cases[i].x) ? cases[i].x : -INFINITY; cols[nc++] = cases[i].col; }
    }
    for (int i = 1; i < nc; i++) /* numeric columns in order of lambda (stable insertion sort) */
        for (int j = i; j > 0 && colx[j - 1] > colx[j]; j--) {
            const char *t = cols[j]; cols[j] = cols[j - 1]; cols[j - 1] = t;
            double u = colx[j]; colx[j] = colx[j - 1]; colx[j - 1] = u;
        }
    if (nc > 1) {
        derf_sb_printf(md, "Ours (paper), test accuracy %%:\n\n| |");
        for (int k = 0; k < nc; k++) derf_sb_printf(md, " %s |", cols[k]);
        derf_sb_printf(md, "\n|---|");
        for (int k = 0; k < nc; k++) derf_sb_printf(md, "---|");
        derf_sb_printf(md, "\n");
        for (int i = a; i < e; i++) {
            int seen = 0;
            for (int j = a; j < i; j++) seen |= !strcmp(cases[j].row, cases[i].row);
            if (seen) continue;
            derf_sb_printf(md, "| %s |", cases[i].row);
            for (int k = 0; k < nc; k++) {
                int j;
                for (j = a; j < e; j++)
                    if (!strcmp(cases[j].row, cases[i].row) && !strcmp(cases[j].col, cols[k])) break;
                if (j == e) { derf_sb_printf(md, " |"); continue; }
                char o[64], p[16];
                fmt_ours(o, sizeof o, &st[j], S);
                fmt_paper(p, sizeof p, cases[j].paper_acc);
                derf_sb_printf(md, " %s (%s) |", o, p);
            }
            derf_sb_printf(md, "\n");
        }
        derf_sb_printf(md, "\n");
    }
    int has_ploss = 0;
    for (int i = a; i < e; i++) has_ploss |= isfinite(cases[i].paper_loss);
    derf_sb_printf(md, "| row | column | spec | ours: test acc %% | Δ vs baseline | beyond seed spread? | paper | paper Δ | "
                       "ours: eval-mode train loss |%s\n|---|---|---|---|---|---|---|---|---|%s\n",
                   has_ploss ? " paper: eval-mode train loss |" : "", has_ploss ? "---|" : "");
    for (int i = a; i < e; i++) {
        const derf_study_case *c = &cases[i];
        char o[64], p[16], d[48] = "", sig[48] = "", pd[32] = "", l[48] = "–";
        fmt_ours(o, sizeof o, &st[i], S);
        fmt_paper(p, sizeof p, c->paper_acc);
        if (c->base == i) {
            snprintf(d, sizeof d, "baseline");
        } else if (c->base >= 0) {
            const derf_study_stat *b = &st[c->base];
            if (st[i].n_ok && b->n_ok) {
                snprintf(d, sizeof d, "%+.2f", st[i].acc_mean - b->acc_mean);
                int k = derf_study_beyond_spread(&st[i], b);
                snprintf(sig, sizeof sig, "%s", k < 0 ? "n/a (needs 2+ seeds)" : k ? "**yes**" : "no");
            } else if (!st[i].n_ok && st[i].n_div) {
                snprintf(d, sizeof d, "×");
            }
            if (paper_ok(c->paper_acc) && paper_ok(cases[c->base].paper_acc))
                snprintf(pd, sizeof pd, "%+.1f", c->paper_acc - cases[c->base].paper_acc);
        }
        if (isfinite(st[i].loss_mean))
            snprintf(l, sizeof l, S > 1 ? "%.4f ± %.4f" : "%.4f", st[i].loss_mean, st[i].loss_sd);
        else if (!st[i].n_ok && st[i].n_div)
            snprintf(l, sizeof l, "×");
        derf_sb_printf(md, "| %s | %s | `%s` | %s | %s | %s | %s | %s | %s |", c->row, c->col, c->spec, o, d, sig, p, pd, l);
        if (has_ploss) {
            if (isfinite(c->paper_loss)) derf_sb_printf(md, " %.4f |", c->paper_loss);
            else derf_sb_printf(md, " |");
        }
        derf_sb_printf(md, "\n");
    }
    /* divergence agreement */
    int pdv = 0, both = 0, only_ours = 0;
    for (int i = a; i < e; i++) {
        int ours = st[i].n_div > 0;
        int theirs = cases[i].paper_acc == DERF_STUDY_DIVERGED;
        pdv += theirs;
        both += ours && theirs;
        only_ours += ours && !theirs;
    }
    derf_sb_printf(md, "\nDivergence (×): the paper has %d diverged case%s here; ours diverged in %d of them", pdv,
                   pdv == 1 ? "" : "s", both);
    if (only_ours) derf_sb_printf(md, ", and in %d case%s the paper trained.\n\n", only_ours, only_ours == 1 ? "" : "s");
    else derf_sb_printf(md, ", and nowhere else.\n\n");
}

/* ---- plot.svg ------------------------------------------------------------------------------- */
static int numeric_table(const derf_study_case *cases, int a, int e) {
    int k = 0;
    for (int i = a; i < e; i++) k += isfinite(cases[i].x);
    return k >= 3;
}

/* One row per case: a bar to our mean accuracy, a whisker of +-sd, × for diverged; the paper's
 * number as text on the right. */
static void bar_panel(derf_strbuf *b, double oy, double w, const derf_study_case *cases, int a, int e,
                      const derf_study_stat *st) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = a; i < e; i++)
        if (st[i].n_ok) { lo = fmin(lo, st[i].acc_mean - st[i].acc_sd); hi = fmax(hi, st[i].acc_mean + st[i].acc_sd); }
    if (!isfinite(lo)) { lo = 0; hi = 100; }
    double pad = fmax(0.5, 0.15 * (hi - lo));
    lo = fmax(0, lo - pad); hi = fmin(100, hi + pad);
    if (hi <= lo) hi = lo + 1;
    const double L = 230, R = w - 150, T = oy + 34, rowh = 18;
#define BX(v) (L + ((v) - lo) / (hi - lo) * (R - L))
    derf_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s: %s (test accuracy %%, ours; paper on the right)</text>\n",
                   10.0, oy + 16, cases[a].table, cases[a].title);
    derf_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\" text-anchor=\"middle\">%.2f</text>"
                      "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\" text-anchor=\"middle\">%.2f</text>\n",
                   L, T - 4, lo, R, T - 4, hi);
    for (int i = a; i < e; i++) {
        double y = T + (i - a) * rowh;
        char label[160];
        snprintf(label, sizeof label, "%s %s", cases[i].row, cases[i].col);
        derf_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 6, y + 12, label);
        if (st[i].n_ok) {
            double m = st[i].acc_mean, sd = st[i].acc_sd;
            derf_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", L, y + 3,
                           fmax(1, BX(m) - L), rowh - 6, cases[i].base == i ? "#7f7f7f" : "#1f77b4");
            if (sd > 0)
                derf_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                               BX(fmax(lo, m - sd)), y + rowh / 2, BX(fmin(hi, m + sd)), y + rowh / 2);
            derf_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#333\">%.2f%s</text>\n", BX(m) + 4, y + 12, m,
                           st[i].n_div ? " (some ×)" : "");
        } else {
            derf_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#d62728\" font-size=\"14\">%s</text>\n", L + 2, y + 13,
                           st[i].n_div ? "× diverged" : "– missing");
        }
        char p[16];
        fmt_paper(p, sizeof p, cases[i].paper_acc);
        derf_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\">paper %s</text>\n", R + 50, y + 12, p);
    }
#undef BX
}

static double panel_height(const derf_study_case *cases, int a, int e) {
    return numeric_table(cases, a, e) ? 330 : 50 + 18.0 * (e - a);
}

/* Two line panels: ours (left) and the paper's (right), accuracy against lambda, one line per row. */
static void line_panels(derf_strbuf *b, double oy, double w, const derf_study_case *cases, int a, int e,
                        const derf_study_stat *st) {
    enum { MAXR = 16, MAXP = 32 };
    static double xs[2][MAXR][MAXP], ys[2][MAXR][MAXP];
    derf_series s[2][MAXR];
    const char *rows[MAXR];
    int nr = 0, np[MAXR] = {0};
    double xmin = INFINITY, xmax = -INFINITY;
    for (int i = a; i < e; i++) {
        if (!isfinite(cases[i].x)) continue;
        int r;
        for (r = 0; r < nr; r++)
            if (!strcmp(rows[r], cases[i].row)) break;
        if (r == nr) { if (nr == MAXR) continue; rows[nr++] = cases[i].row; }
        if (np[r] == MAXP) continue;
        xs[0][r][np[r]] = xs[1][r][np[r]] = cases[i].x;
        ys[0][r][np[r]] = st[i].n_ok ? st[i].acc_mean : NAN; /* a diverged point is left out of the line */
        ys[1][r][np[r]] = paper_ok(cases[i].paper_acc) ? cases[i].paper_acc : NAN;
        np[r]++;
        xmin = fmin(xmin, cases[i].x); xmax = fmax(xmax, cases[i].x);
    }
    for (int r = 0; r < nr; r++) /* sort each row by x (insertion sort) */
        for (int i = 1; i < np[r]; i++)
            for (int j = i; j > 0 && xs[0][r][j - 1] > xs[0][r][j]; j--)
                for (int k = 0; k < 2; k++) {
                    double t = xs[k][r][j]; xs[k][r][j] = xs[k][r][j - 1]; xs[k][r][j - 1] = t;
                    t = ys[k][r][j]; ys[k][r][j] = ys[k][r][j - 1]; ys[k][r][j - 1] = t;
                }
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < nr; r++) s[k][r] = (derf_series){rows[r], xs[k][r], ys[k][r], np[r], k};
    if (!(xmax > xmin)) { xmin -= 1; xmax += 1; }
    char t0[160], t1[160];
    snprintf(t0, sizeof t0, "%s, ours: test acc %% (× points left out)", cases[a].table);
    snprintf(t1, sizeof t1, "%s, paper: ViT-B ImageNet top-1 %% (× left out)", cases[a].table);
    derf_axes ax0 = {t0, "λ", "%", xmin, xmax, 0, 0, 1}, ax1 = {t1, "λ", "%", xmin, xmax, 0, 0, 1};
    derf_svg_panel(b, 0, oy, w / 2, 320, &ax0, s[0], nr);
    derf_svg_panel(b, w / 2, oy, w / 2, 320, &ax1, s[1], nr);
}

int derf_study_write_reports(const derf_study_cfg *cfg, const derf_study_case *cases, int n,
                             const derf_study_result *res, char *err, size_t errlen) {
    const int S = cfg->seeds;
    derf_study_stat *st = calloc((size_t)(n ? n : 1), sizeof *st);
    for (int i = 0; i < n; i++) derf_study_stats(&res[i * S], S, &st[i]);

    derf_strbuf csv = {0}, md = {0}, svg = {0};
    write_csv(&csv, cfg, cases, n, res);

    const char *about = derf_study_about(cfg->study);
    derf_sb_printf(&md, "# derf study %s\n\n%s.\n\n", cfg->study ? cfg->study : "", about ? about : "");
    if (cfg->setting) derf_sb_printf(&md, "%s\n\n", cfg->setting);
    derf_sb_printf(&md,
                   "**How to read this.** *Ours*: test accuracy (%%) of the run's final weights (not the EMA), mean ± sample "
                   "std over %d seed%s (%d..%d); × = the run diverged (non-finite or exploding loss). *Paper*: ViT-B "
                   "top-1 on ImageNet-1K from arXiv 2512.10938 (the table each heading names; docs/paper.md), × = diverged there; n/a = not in the paper. "
                   "Absolute numbers are not comparable (a small ViT on Fashion-MNIST against ViT-B on ImageNet): compare "
                   "orderings, differences and failures. *Δ vs baseline*: our mean minus the baseline case's mean; "
                   "*beyond seed spread*: |Δ| > 2·sqrt(sd²/n + sd_b²/n_b) (needs 2+ seeds on both sides).\n\n",
                   S, S == 1 ? "" : "s", cfg->seed0, cfg->seed0 + S - 1);
    double h = 10;
    for (int a = 0; a < n;) {
        int e = table_end(cases, n, a);
        write_table_md(&md, cfg, cases, a, e, st);
        h += panel_height(cases, a, e) + 10;
        a = e;
    }
    int missing = 0;
    for (int i = 0; i < n; i++) missing += st[i].n_missing;
    if (missing) derf_sb_printf(&md, "**Incomplete:** %d run%s missing (–); rerun the same command to finish the sweep.\n\n",
                                missing, missing == 1 ? "" : "s");
    derf_sb_printf(&md, "Files: `results.csv` (every run), `plot.svg`, `runs/<case>-s<seed>/{result.json,log.jsonl}`.\n");

    const double W = 960;
    derf_svg_begin(&svg, (int)W, (int)ceil(h));
    double y = 10;
    for (int a = 0; a < n;) {
        int e = table_end(cases, n, a);
        if (numeric_table(cases, a, e)) line_panels(&svg, y, W, cases, a, e, st);
        else bar_panel(&svg, y, W, cases, a, e, st);
        y += panel_height(cases, a, e) + 10;
        a = e;
    }
    derf_svg_end(&svg);

    char path[1200];
    int rc = 0;
    snprintf(path, sizeof path, "%s/results.csv", cfg->out);
    rc = derf_io_write_file(path, csv.s ? csv.s : "", csv.len, err, errlen);
    snprintf(path, sizeof path, "%s/report.md", cfg->out);
    if (!rc) rc = derf_io_write_file(path, md.s, md.len, err, errlen);
    snprintf(path, sizeof path, "%s/plot.svg", cfg->out);
    if (!rc) rc = derf_io_write_file(path, svg.s, svg.len, err, errlen);
    derf_sb_free(&csv);
    derf_sb_free(&md);
    derf_sb_free(&svg);
    free(st);
    return rc;
}
