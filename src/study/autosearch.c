/* autosearch.c: `derf study autosearch`: candidates from the spec grammar, duplicates merged by shape,
 * the paper's four properties as a filter, successive halving of ViT trainings (each rung a resumable
 * `derf study` sweep), kernel cost of the finalists, and the report. See derf/autosearch.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "derf/autosearch.h"
#include "derf/io.h"
#include "derf/norm.h"
#include "derf/plot.h"
#include "derf/strbuf.h"

/* ---- candidates ----------------------------------------------------------------------------- */
void derf_as_grid_default(derf_as_grid *g) {
    *g = (derf_as_grid){.clip = {0.5, 1, 2}, .nclip = 3, .mix = {0.1, 0.5}, .nmix = 2, .shift = {0.5}, .nshift = 1,
                        .flat = {0.5}, .nflat = 1, .neg = 1, .alpha = {0.5, 1}, .nalpha = 2};
}

enum { SIG_N = 1201 }; /* u in [-6, 6], step 0.01 */
typedef struct { float alpha; int shift; double g[SIG_N], d[SIG_N]; } shape_sig;

static void signature(const derf_norm_spec *s, shape_sig *sig) {
    const double h = 1e-5;
    sig->alpha = s->alpha_init;
    sig->shift = (int)s->shift;
    for (int i = 0; i < SIG_N; i++) {
        double u = -6 + 0.01 * i;
        sig->g[i] = derf_pointwise_eval_f64(s, u);
        sig->d[i] = (derf_pointwise_eval_f64(s, u + h) - derf_pointwise_eval_f64(s, u - h)) / (2 * h);
    }
}

/* Same shape: g within 1e-6 and g' within 1e-3 everywhere on the grid (finite differences straddling a
 * kink agree as long as both functions have the kink), same alpha init and shift. */
static int same_shape(const shape_sig *a, const shape_sig *b) {
    if (a->alpha != b->alpha || a->shift != b->shift) return 0;
    for (int i = 0; i < SIG_N; i++)
        if (fabs(a->g[i] - b->g[i]) > 1e-6 || fabs(a->d[i] - b->d[i]) > 1e-3) return 0;
    return 1;
}

static int push(derf_as_cand **v, int *n, int *cap, const char *spec) {
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 256;
        derf_as_cand *p = realloc(*v, sizeof **v * (size_t)nc);
        if (!p) return -1;
        *v = p;
        *cap = nc;
    }
    memset(&(*v)[*n], 0, sizeof **v);
    snprintf((*v)[*n].spec, sizeof (*v)[*n].spec, "%.95s", spec);
    (*n)++;
    return 0;
}

int derf_as_candidates(const derf_as_grid *gin, derf_as_cand **out, derf_as_filter_stats *st, char *err, size_t errlen) {
    derf_as_grid g;
    derf_as_grid_default(&g);
    if (gin) {
        if (gin->nclip) memcpy(g.clip, gin->clip, sizeof g.clip), g.nclip = gin->nclip;
        if (gin->nmix) memcpy(g.mix, gin->mix, sizeof g.mix), g.nmix = gin->nmix;
        if (gin->nshift) memcpy(g.shift, gin->shift, sizeof g.shift), g.nshift = gin->nshift;
        if (gin->nflat) memcpy(g.flat, gin->flat, sizeof g.flat), g.nflat = gin->nflat;
        if (gin->nalpha) memcpy(g.alpha, gin->alpha, sizeof g.alpha), g.nalpha = gin->nalpha;
        g.neg = gin->neg;
    }
    /* transforms: none, then each of the grid */
    char tfs[64][32];
    int ntf = 0;
    tfs[ntf++][0] = 0;
    for (int i = 0; i < g.nclip; i++) snprintf(tfs[ntf++], 32, "+clip=%g", g.clip[i]);
    for (int i = 0; i < g.nmix; i++) snprintf(tfs[ntf++], 32, "+mix=%g", g.mix[i]);
    for (int i = 0; i < g.nshift; i++) snprintf(tfs[ntf++], 32, "+hshift=%g", g.shift[i]);
    for (int i = 0; i < g.nshift; i++) snprintf(tfs[ntf++], 32, "+vshift=%g", g.shift[i]);
    for (int i = 0; i < g.nflat; i++) snprintf(tfs[ntf++], 32, "+flat=%g", g.flat[i]);
    if (g.neg) snprintf(tfs[ntf++], 32, "+neg");

    derf_as_cand *v = NULL;
    int n = 0, cap = 0;
    for (int f = 0; f < DERF_FN_COUNT; f++)
        for (int t = 0; t < ntf; t++)
            for (int a = 0; a < g.nalpha; a++) {
                char text[2200], canon[128];
                snprintf(text, sizeof text, "%s%s:alpha=%g", derf_fn_get((derf_fn_id)f)->name, tfs[t], g.alpha[a]);
                derf_norm_spec s;
                if (derf_norm_parse(text, &s, err, errlen)) { free(v); return -1; }
                derf_norm_format(&s, canon, sizeof canon);
                if (push(&v, &n, &cap, canon)) { free(v); derf_io_errf(err, errlen, "out of memory"); return -1; }
            }
    memset(st, 0, sizeof *st);
    st->generated = n;
    /* property filter */
    for (int i = 0; i < n; i++) {
        derf_norm_spec s;
        derf_norm_parse(v[i].spec, &s, NULL, 0);
        derf_fn_props p;
        derf_pointwise_props(&s, &p);
        const char *why;
        if (derf_pointwise_props_ok(&p, &why)) continue;
        v[i].why = why;
        if (!strcmp(why, "not zero-centred")) st->not_zero_centred++;
        else if (!strcmp(why, "unbounded")) st->unbounded++;
        else if (!strcmp(why, "not center-sensitive")) st->not_center_sensitive++;
        else st->not_monotone++;
    }
    /* duplicates by shape among the survivors (the first one generated is kept) */
    shape_sig *sig = malloc(sizeof *sig * (size_t)n);
    if (!sig) { free(v); derf_io_errf(err, errlen, "out of memory"); return -1; }
    for (int i = 0; i < n; i++) {
        if (v[i].why) continue;
        derf_norm_spec s;
        derf_norm_parse(v[i].spec, &s, NULL, 0);
        signature(&s, &sig[i]);
        for (int k = 0; k < i; k++)
            if (!v[k].why && same_shape(&sig[k], &sig[i])) {
                v[i].why = "same shape as an earlier candidate";
                snprintf(v[i].dup_of, sizeof v[i].dup_of, "%s", v[k].spec);
                st->duplicates++;
                break;
            }
        if (!v[i].why) st->kept++;
    }
    free(sig);
    *out = v;
    return n;
}

/* ---- statistics ----------------------------------------------------------------------------- */
int derf_welch(double ma, double sa, int na, double mb, double sb, int nb, double *t, double *df) {
    *t = *df = NAN;
    if (na < 2 || nb < 2) return -1;
    double va = sa * sa / na, vb = sb * sb / nb, se = sqrt(va + vb);
    if (!(se > 0)) { /* no spread on either side: any difference is "beyond" by this test */
        *t = ma == mb ? 0 : copysign(INFINITY, ma - mb);
        *df = na + nb - 2;
        return ma != mb;
    }
    *t = (ma - mb) / se;
    *df = (va + vb) * (va + vb) / (va * va / (na - 1) + vb * vb / (nb - 1));
    /* two-sided 5% critical values of Student's t (df 1..30), then the normal's */
    static const double crit[31] = {0, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
    int k = (int)floor(*df);
    double c = k < 1 ? crit[1] : (k <= 30 ? crit[k] : 1.960);
    return fabs(*t) > c;
}

/* ---- kernel cost ---------------------------------------------------------------------------- */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double derf_as_kernel_seconds(const char *spec, int N, int C, int reps) {
    derf_norm_spec s;
    if (derf_norm_parse(spec, &s, NULL, 0)) return NAN;
    size_t nx = (size_t)N * C, np = derf_norm_param_count(&s, C), ns = derf_norm_stats_count(&s, N);
    float *x = malloc(nx * sizeof *x), *y = malloc(nx * sizeof *y), *dy = malloc(nx * sizeof *dy);
    float *dx = calloc(nx, sizeof *dx), *p = malloc((np + 1) * sizeof *p), *dp = calloc(np + 1, sizeof *dp);
    float *stats = malloc((ns + 1) * sizeof *stats);
    double best = NAN;
    if (x && y && dy && dx && p && dp && stats) {
        for (size_t i = 0; i < nx; i++) {
            x[i] = (float)sin(0.37 * (double)i) * 2.f;
            dy[i] = (float)cos(0.11 * (double)i) * 1e-3f;
        }
        derf_norm_init(&s, C, p);
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            derf_norm_forward(&s, y, stats, x, p, N, C);
            derf_norm_backward(&s, dx, dp, dy, x, p, stats, N, C);
            double dt = now_s() - t0;
            if (!(dt >= best)) best = dt;
        }
    }
    free(x); free(y); free(dy); free(dx); free(p); free(dp); free(stats);
    return best;
}

/* ---- the search ----------------------------------------------------------------------------- */
static const char *const CONTROLS[] = {"derf", "dyt", "layernorm"};
enum { NCONTROLS = 3 };

typedef struct { int idx; double mean; int ok; } ranked;

static int by_mean_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->ok != y->ok) return y->ok - x->ok;
    if (x->mean != y->mean) return x->mean < y->mean ? 1 : -1;
    return x->idx - y->idx; /* stable: generation order */
}

static void make_case(derf_study_case *c, const char *spec, int rung, int base) {
    memset(c, 0, sizeof *c);
    snprintf(c->table, sizeof c->table, "Rung %d", rung);
    snprintf(c->title, sizeof c->title, "successive halving, rung %d", rung);
    snprintf(c->row, sizeof c->row, "%.47s", spec);
    c->x = NAN;
    snprintf(c->spec, sizeof c->spec, "%.95s", spec);
    derf_study_case_id(spec, c->id, sizeof c->id);
    c->paper_acc = c->paper_loss = NAN;
    c->base = base;
}

/* CPU-seconds of the runs found, and seconds per training image (for the plan). */
static void spent(const derf_study_result *r, int n, int threads, const derf_cls_opts *o, double *cpu_s, double *s_per_img) {
    double sec = 0, imgs = 0;
    for (int i = 0; i < n; i++) {
        if (!r[i].done || !(r[i].r.seconds > 0)) continue;
        sec += r[i].r.seconds;
        imgs += (double)r[i].r.steps * o->batch;
    }
    *cpu_s += sec * threads;
    if (imgs > 0) *s_per_img = sec / imgs;
}

static int write_outputs(const derf_as_cfg *cfg, const derf_as_cand *cand, int ncand, const derf_as_outcome *res,
                         const derf_study_case *rcases[], int rn[], int rungs_run, char *err, size_t errlen);

int derf_as_run(const derf_as_cfg *cfg, const derf_as_grid *grid, derf_as_outcome *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    if (cfg->nrungs < 1 || cfg->nrungs > DERF_AS_MAX_RUNGS) {
        derf_io_errf(err, errlen, "the search needs 1..%d rungs, not %d", DERF_AS_MAX_RUNGS, cfg->nrungs);
        return -1;
    }
    derf_as_cand *cand;
    int ncand = derf_as_candidates(grid, &cand, &res->filter, err, errlen);
    if (ncand < 0) return -1;
    /* rung 0: the controls, then every kept candidate that is not a control's shape already */
    derf_study_case *cases[DERF_AS_MAX_RUNGS] = {0};
    derf_study_result *rr[DERF_AS_MAX_RUNGS] = {0};
    int nc[DERF_AS_MAX_RUNGS] = {0}, rc = -1, rungs_run = 0;
    cases[0] = calloc((size_t)ncand + NCONTROLS, sizeof **cases);
    if (!cases[0]) { derf_io_errf(err, errlen, "out of memory"); goto done; }
    char canon[NCONTROLS][128];
    for (int i = 0; i < NCONTROLS; i++) {
        derf_norm_spec s;
        derf_norm_parse(CONTROLS[i], &s, NULL, 0);
        derf_norm_format(&s, canon[i], sizeof canon[i]);
        make_case(&cases[0][nc[0]++], canon[i], 0, 0);
    }
    for (int i = 0; i < ncand; i++) {
        if (cand[i].why) continue;
        int dup = 0;
        for (int k = 0; k < NCONTROLS; k++) dup |= !strcmp(cand[i].spec, canon[k]);
        if (!dup) make_case(&cases[0][nc[0]++], cand[i].spec, 0, 0);
    }

    double cpu_s = 0, s_per_img = NAN;
    for (int k = 0; k < cfg->nrungs; k++) {
        derf_study_cfg sc = {0};
        char out[1200];
        snprintf(out, sizeof out, "%s/rung%d", cfg->out, k);
        sc.study = "autosearch";
        sc.out = out;
        sc.base = cfg->base;
        sc.base.epochs = cfg->epochs[k];
        sc.base.train_limit = cfg->train_limit[k];
        sc.seeds = cfg->seeds[k];
        sc.seed0 = cfg->seed0;
        sc.train = cfg->train;
        sc.ctx = cfg->ctx;
        sc.quiet = cfg->quiet;
        const int S = sc.seeds;
        rr[k] = calloc((size_t)nc[k] * (size_t)S, sizeof **rr);
        if (!rr[k]) { derf_io_errf(err, errlen, "out of memory"); goto done; }
        res->rung_size[k] = nc[k];
        rungs_run = k + 1;
        const double imgs_per_epoch = sc.base.train_limit > 0 ? sc.base.train_limit : 60000;
        int complete = 1;
        for (int i = 0; i < nc[k]; i++) { /* one case at a time, so the budget is checked between runs */
            int pend = derf_study_pending(&sc, &cases[k][i], 1);
            if (pend && cfg->budget_hours > 0 && isfinite(s_per_img)) {
                double need = pend * imgs_per_epoch * sc.base.epochs * s_per_img * cfg->threads;
                if (cpu_s + need > cfg->budget_hours * 3600) { complete = 0; res->stopped_by_budget = 1; }
            }
            if (!complete) { /* read back what exists, train nothing more */
                derf_study_cfg ro = sc;
                for (int s = 0; s < S; s++) {
                    char path[1500];
                    snprintf(path, sizeof path, "%s/runs/%s-s%d/result.json", out, cases[k][i].id, sc.seed0 + s);
                    char fp[1024];
                    derf_study_fingerprint(&ro.base, fp, sizeof fp);
                    int got = derf_study_result_load(path, cases[k][i].spec, sc.seed0 + s, fp, &rr[k][i * S + s].r, err, errlen);
                    if (got < 0) goto done;
                    rr[k][i * S + s].done = got;
                }
                continue;
            }
            if (derf_study_run(&sc, &cases[k][i], 1, &rr[k][i * S], NULL, err, errlen)) goto done;
            double c0 = 0;
            spent(&rr[k][i * S], S, cfg->threads, &sc.base, &c0, &s_per_img);
            cpu_s += c0;
        }
        if (derf_study_write_reports(&sc, cases[k], nc[k], rr[k], err, errlen)) goto done;
        if (!complete) break;
        res->rungs_done = k + 1;
        if (k + 1 == cfg->nrungs) break;
        /* promote: the best 1/eta of the non-control candidates by mean test accuracy, plus the controls */
        ranked *rk = calloc((size_t)nc[k], sizeof *rk);
        if (!rk) { derf_io_errf(err, errlen, "out of memory"); goto done; }
        int m = 0;
        for (int i = NCONTROLS; i < nc[k]; i++) {
            derf_study_stat st;
            derf_study_stats(&rr[k][i * S], S, &st);
            rk[m++] = (ranked){i, st.n_ok ? st.acc_mean : -INFINITY, st.n_ok > 0};
        }
        qsort(rk, (size_t)m, sizeof *rk, by_mean_desc);
        int keep = (int)ceil(m / cfg->eta);
        if (keep < cfg->min_keep) keep = cfg->min_keep;
        if (keep > m) keep = m;
        cases[k + 1] = calloc((size_t)keep + NCONTROLS, sizeof **cases);
        if (!cases[k + 1]) { free(rk); derf_io_errf(err, errlen, "out of memory"); goto done; }
        for (int i = 0; i < NCONTROLS; i++) make_case(&cases[k + 1][nc[k + 1]++], canon[i], k + 1, 0);
        for (int i = 0; i < keep; i++)
            if (rk[i].ok) make_case(&cases[k + 1][nc[k + 1]++], cases[k][rk[i].idx].spec, k + 1, 0);
        free(rk);
    }
    res->cpu_hours = cpu_s / 3600;

    /* the ranking of the last rung that has results */
    {
        int k = rungs_run - 1, S = cfg->seeds[k];
        res->final = calloc((size_t)nc[k], sizeof *res->final);
        if (!res->final) { derf_io_errf(err, errlen, "out of memory"); goto done; }
        derf_study_stat erf;
        derf_study_stats(&rr[k][0], S, &erf);
        for (int i = 0; i < nc[k]; i++) {
            derf_as_final *f = &res->final[res->nfinal];
            derf_study_stats(&rr[k][i * S], S, &f->st);
            if (!f->st.n_ok && !f->st.n_div) continue; /* not run (budget) */
            snprintf(f->spec, sizeof f->spec, "%s", cases[k][i].spec);
            f->control = i < NCONTROLS;
            int b = derf_welch(f->st.acc_mean, f->st.acc_sd, f->st.n_ok, erf.acc_mean, erf.acc_sd, erf.n_ok, &f->t, &f->df);
            f->beyond = b == 1 ? (f->t > 0 ? 1 : -1) : 0;
            f->cost_rel = NAN;
            res->nfinal++;
        }
        /* kernel cost, interleaved rounds, min per spec, relative to erf (Derf, the first control) */
        enum { KN = 4096, KC = 256, ROUNDS = 7 };
        double *best = malloc(sizeof *best * (size_t)(res->nfinal + 1));
        if (best) {
            for (int i = 0; i < res->nfinal; i++) best[i] = INFINITY;
            for (int r = 0; r < ROUNDS; r++)
                for (int i = 0; i < res->nfinal; i++) best[i] = fmin(best[i], derf_as_kernel_seconds(res->final[i].spec, KN, KC, 3));
            for (int i = 0; i < res->nfinal; i++) res->final[i].cost_rel = best[i] / best[0];
            free(best);
        }
        for (int i = 0; i < res->nfinal; i++) /* rank by mean accuracy (diverged last) */
            for (int j = i + 1; j < res->nfinal; j++) {
                double mi = res->final[i].st.n_ok ? res->final[i].st.acc_mean : -INFINITY;
                double mj = res->final[j].st.n_ok ? res->final[j].st.acc_mean : -INFINITY;
                if (mj > mi) { derf_as_final t = res->final[i]; res->final[i] = res->final[j]; res->final[j] = t; }
            }
    }
    {
        const derf_study_case *rc2[DERF_AS_MAX_RUNGS];
        for (int k = 0; k < DERF_AS_MAX_RUNGS; k++) rc2[k] = cases[k];
        if (write_outputs(cfg, cand, ncand, res, rc2, nc, rungs_run, err, errlen)) goto done;
    }
    rc = 0;
done:
    for (int k = 0; k < DERF_AS_MAX_RUNGS; k++) { free(cases[k]); free(rr[k]); }
    free(cand);
    if (rc) derf_as_outcome_free(res);
    return rc;
}

void derf_as_outcome_free(derf_as_outcome *res) {
    free(res->final);
    res->final = NULL;
    res->nfinal = 0;
}

/* ---- report --------------------------------------------------------------------------------- */
static const char *verdict_word(const derf_as_final *f) {
    if (!strcmp(f->spec, "erf")) return "(reference)";
    if (f->beyond > 0) return "better than erf beyond noise";
    if (f->beyond < 0) return "worse than erf beyond noise";
    return isnan(f->t) ? "cannot tell (fewer than 2 seeds)" : "within noise of erf";
}

static void pareto_svg(derf_strbuf *sb, const derf_as_outcome *res) {
    int n = res->nfinal;
    double *x = malloc(sizeof *x * (size_t)(n + 1) * 4), *y = x ? x + n + 1 : NULL;
    double *fx = y ? y + n + 1 : NULL, *fy = fx ? fx + n + 1 : NULL;
    if (!x) return;
    int m = 0, nf = 0;
    for (int i = 0; i < n; i++)
        if (res->final[i].st.n_ok && isfinite(res->final[i].cost_rel)) {
            x[m] = res->final[i].cost_rel;
            y[m++] = res->final[i].st.acc_mean;
        }
    /* the Pareto front: no other point is both cheaper (or equal) and more accurate */
    for (int i = 0; i < m; i++) {
        int dominated = 0;
        for (int j = 0; j < m && !dominated; j++)
            dominated = j != i && x[j] <= x[i] && y[j] >= y[i] && (x[j] < x[i] || y[j] > y[i]);
        if (!dominated) { fx[nf] = x[i]; fy[nf++] = y[i]; }
    }
    for (int i = 0; i < nf; i++) /* sort the front by cost for the line */
        for (int j = i + 1; j < nf; j++)
            if (fx[j] < fx[i]) { double t = fx[i]; fx[i] = fx[j]; fx[j] = t; t = fy[i]; fy[i] = fy[j]; fy[j] = t; }
    double xmax = 0;
    for (int i = 0; i < m; i++) xmax = fmax(xmax, x[i]);
    derf_series s[2] = {{"finalists and controls", x, y, m, 0}, {"Pareto front", fx, fy, nf, 1}};
    const int marks[2] = {2, 1};
    derf_axes ax = {"test accuracy vs kernel cost", "fwd+bwd time / erf's", "test acc %", 0, xmax * 1.1 + 0.1, 0, 0, 1};
    derf_svg_begin(sb, 560, 380);
    derf_svg_panel_marked(sb, 0, 0, 560, 380, &ax, s, 2, marks);
    derf_svg_end(sb);
    free(x);
}

static int write_outputs(const derf_as_cfg *cfg, const derf_as_cand *cand, int ncand, const derf_as_outcome *res,
                         const derf_study_case *rcases[], int rn[], int rungs_run, char *err, size_t errlen) {
    derf_strbuf md = {0}, csv = {0}, svg = {0};
    const derf_as_filter_stats *f = &res->filter;
    derf_sb_printf(&md, "# Automated search for a point-wise function\n\n");
    derf_sb_printf(&md, "Candidates: %d generated from the spec grammar; the property filter removed %d not zero-centred, "
                        "%d unbounded, %d not center-sensitive, %d not monotone increasing; %d were the same shape as an "
                        "earlier candidate; **%d kept**.\n\n",
                   f->generated, f->not_zero_centred, f->unbounded, f->not_center_sensitive, f->not_monotone, f->duplicates, f->kept);
    derf_sb_printf(&md, "Successive halving (keep the best 1/%g, at least %d, of each rung; Derf, DyT and LayerNorm at every rung):\n\n"
                        "| rung | runs' epochs | training images | seeds | candidates + controls |\n|---|---|---|---|---|\n",
                   cfg->eta, cfg->min_keep);
    for (int k = 0; k < cfg->nrungs; k++) {
        char lim[32] = "all";
        if (cfg->train_limit[k] > 0) snprintf(lim, sizeof lim, "%d", cfg->train_limit[k]);
        char size[32] = "not reached";
        if (k < rungs_run) snprintf(size, sizeof size, "%d", rn[k]);
        derf_sb_printf(&md, "| %d | %d | %s | %d | %s |\n", k, cfg->epochs[k], lim, cfg->seeds[k], size);
    }
    derf_sb_printf(&md, "\nCPU time of the runs found: %.2f CPU-hours (training loops x %d threads)%s.\n\n", res->cpu_hours,
                   cfg->threads, res->stopped_by_budget ? "; **the budget stopped the search** (rerun with a larger "
                                                          "--budget-hours to continue)" : "");
    int last = rungs_run - 1;
    derf_sb_printf(&md, "## Ranking (rung %d: %d epochs, %d seeds)\n\n"
                        "Test: Welch's t-test against erf (Derf), two-sided at 5%%. Kernel cost: fused forward+backward on "
                        "4096 x 256, min of 7 interleaved rounds, relative to erf in the same run.\n\n"
                        "| rank | spec | test acc %% (mean ± std) | seeds | Δ vs erf | t (df) | verdict | kernel cost |\n"
                        "|---|---|---|---|---|---|---|---|\n",
                   last, cfg->epochs[last], cfg->seeds[last]);
    derf_sb_printf(&csv, "rank,spec,control,n_ok,n_diverged,acc_mean,acc_sd,t,df,beyond,cost_rel\n");
    double erf_mean = NAN;
    for (int i = 0; i < res->nfinal; i++)
        if (!strcmp(res->final[i].spec, "erf")) erf_mean = res->final[i].st.acc_mean;
    int better = 0;
    for (int i = 0; i < res->nfinal; i++) {
        const derf_as_final *q = &res->final[i];
        char acc[48] = "×", t[48] = "–", cost[24] = "–";
        if (q->st.n_ok) snprintf(acc, sizeof acc, "%.2f ± %.2f", q->st.acc_mean, q->st.acc_sd);
        if (isfinite(q->t)) snprintf(t, sizeof t, "%.2f (%.1f)", q->t, q->df);
        if (isfinite(q->cost_rel)) snprintf(cost, sizeof cost, "%.2fx", q->cost_rel);
        derf_sb_printf(&md, "| %d | `%s`%s | %s | %d | %+.2f | %s | %s | %s |\n", i + 1, q->spec, q->control ? " (control)" : "",
                       acc, q->st.n_ok, q->st.acc_mean - erf_mean, t, verdict_word(q), cost);
        derf_sb_printf(&csv, "%d,\"%s\",%d,%d,%d,%.4f,%.4f,%.4f,%.2f,%d,%.4f\n", i + 1, q->spec, q->control, q->st.n_ok,
                       q->st.n_div, q->st.acc_mean, q->st.acc_sd, q->t, q->df, q->beyond, q->cost_rel);
        better += q->beyond > 0 && !q->control;
    }
    derf_sb_printf(&md, "\n## Verdict\n\n");
    if (res->rungs_done < cfg->nrungs)
        derf_sb_printf(&md, "The search did not reach its last rung (%d of %d rungs complete): no verdict yet.\n",
                       res->rungs_done, cfg->nrungs);
    else if (better)
        derf_sb_printf(&md, "%d candidate%s beat erf beyond seed noise (Welch, 5%%) at this budget: see the ranking.\n", better,
                       better == 1 ? "" : "s");
    else
        derf_sb_printf(&md, "No candidate beats erf beyond seed noise (Welch, 5%%) at this budget.\n");
    derf_sb_printf(&md, "\nAccuracy against kernel cost: [pareto.svg](pareto.svg). Each rung's own report: rung<k>/report.md.\n\n"
                        "## Candidates\n\n| spec | kept or why not |\n|---|---|\n");
    for (int i = 0; i < ncand; i++) {
        if (cand[i].why && cand[i].dup_of[0])
            derf_sb_printf(&md, "| `%s` | same shape as `%s` |\n", cand[i].spec, cand[i].dup_of);
        else
            derf_sb_printf(&md, "| `%s` | %s |\n", cand[i].spec, cand[i].why ? cand[i].why : "kept");
    }
    (void)rcases;
    pareto_svg(&svg, res);
    char path[1300];
    int rc = 0;
    snprintf(path, sizeof path, "%s/report.md", cfg->out);
    rc = rc || derf_io_write_file(path, md.s, md.len, err, errlen);
    snprintf(path, sizeof path, "%s/ranking.csv", cfg->out);
    rc = rc || derf_io_write_file(path, csv.s, csv.len, err, errlen);
    snprintf(path, sizeof path, "%s/pareto.svg", cfg->out);
    rc = rc || (svg.len && derf_io_write_file(path, svg.s, svg.len, err, errlen));
    derf_sb_free(&md);
    derf_sb_free(&csv);
    derf_sb_free(&svg);
    return rc ? -1 : 0;
}
