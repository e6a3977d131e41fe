/* cmd_autosearch.c: `derf study autosearch`: the automated, property-constrained search for a point-wise
 * function (derf/autosearch.h): options, the candidate list (--list), the search and its summary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/train_opts.h"
#include "derf/autosearch.h"
#include "derf/io.h"

/* Comma-separated numbers into out (at most max); the count, or -1 when malformed or out of [lo, hi]. */
static int parse_list(const char *text, double *out, int max, double lo, double hi) {
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || v < lo || v > hi || n == max) return -1;
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

typedef struct {
    const char *out, *rungs, *seeds, *limits, *alphas, *clips, *mixes;
    float eta, budget;
    int min_keep, smoke, list;
} as_args;

static int list_candidates(const derf_as_grid *g) {
    char err[DERF_ERRLEN];
    derf_as_cand *c;
    derf_as_filter_stats st;
    int n = derf_as_candidates(g, &c, &st, err, sizeof err);
    if (n < 0) return cli_fail("study autosearch", "%s", err);
    for (int i = 0; i < n; i++) {
        if (!c[i].why) printf("  kept     %s\n", c[i].spec);
        else if (c[i].dup_of[0]) printf("  same as  %-36s %s\n", c[i].spec, c[i].dup_of);
        else printf("  removed  %-36s %s\n", c[i].spec, c[i].why);
    }
    printf("%d generated: %d not zero-centred, %d unbounded, %d not center-sensitive, %d not monotone increasing, "
           "%d duplicate shapes; %d kept (+ the controls derf, dyt, layernorm)\n",
           st.generated, st.not_zero_centred, st.unbounded, st.not_center_sensitive, st.not_monotone, st.duplicates, st.kept);
    free(c);
    return 0;
}

int cmd_autosearch(int argc, char **argv) {
    static train_args a;
    train_args_init(&a);
    as_args s = {.rungs = "1,3,10", .seeds = "1,2,3", .limits = NULL, .eta = 3, .min_keep = 3};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--smoke")) s.smoke = 1;
    if (s.smoke) {
        study_smoke_defaults(&a); /* the rungs below set epochs and images */
        s.rungs = "1,2";
        s.seeds = "1,2";
        s.limits = "256,512";
        s.alphas = "0.5";
        s.eta = 8;
        s.min_keep = 2;
    }
    cli_opt all[64], opts[80];
    int n0 = train_opts_table(&a, all, 60), n = 0;
    for (int i = 0; i < n0; i++) /* the search sets the norm, and the epochs and images per rung */
        if (strcmp(all[i].name, "norm") && strcmp(all[i].name, "alpha") && strcmp(all[i].name, "epochs") &&
            strcmp(all[i].name, "train-limit"))
            opts[n++] = all[i];
    opts[n++] = (cli_opt){"rungs", CLI_STR, &s.rungs, "epochs of each rung's runs, comma-separated; the last is the full budget (default 1,3,10)", 0, -1};
    opts[n++] = (cli_opt){"rung-seeds", CLI_STR, &s.seeds, "seeds per run in each rung (default 1,2,3)", 0, -1};
    opts[n++] = (cli_opt){"rung-limit", CLI_STR, &s.limits, "training images of each rung (0: all 60,000; default all)", 0, -1};
    opts[n++] = (cli_opt){"eta", CLI_FLOAT, &s.eta, "keep the best 1/eta of the candidates of each rung", 1.01, 1000};
    opts[n++] = (cli_opt){"min-keep", CLI_INT, &s.min_keep, "promote at least this many candidates", 1, 1000};
    opts[n++] = (cli_opt){"budget-hours", CLI_FLOAT, &s.budget, "CPU-hours (training time x threads) for the whole search; it stops before a run that would exceed them and continues when rerun with more (0: no limit)", 0, 1e6};
    opts[n++] = (cli_opt){"alphas", CLI_STR, &s.alphas, "alpha inits of the grid (default 0.5,1)", 0, -1};
    opts[n++] = (cli_opt){"clips", CLI_STR, &s.clips, "clip=L levels of the grid (default 0.5,1,2)", 0, -1};
    opts[n++] = (cli_opt){"mixes", CLI_STR, &s.mixes, "mix=L levels of the grid (default 0.1,0.5)", 0, -1};
    opts[n++] = (cli_opt){"out", CLI_STR, &s.out, "search folder (default runs/autosearch, runs/autosearch-smoke with --smoke)", 0, -1};
    opts[n++] = (cli_opt){"list", CLI_FLAG, &s.list, "print the candidates, the property filter's verdicts and the duplicates; train nothing", 0, -1};
    opts[n++] = (cli_opt){"smoke", CLI_FLAG, &s.smoke, "CI mode: tiny model (dim 16, depth 2), rungs of 1 and 2 epochs on 256 and 512 images, alpha 0.5 only, 1 thread", 0, -1};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"study autosearch", "[options]",
        "Search the spec grammar for a point-wise function: generate candidates (every base, bare and under clip,\n"
        "mix, shifts, flat zone and negation, at each alpha init), merge the ones of the same shape, keep those\n"
        "with the paper's four properties (zero-centred, bounded, center-sensitive, monotone), and train them on\n"
        "the ViT proxy by successive halving, Derf, DyT and LayerNorm running at every rung as controls.",
        "Each rung is a resumable sweep in OUT/rung<k>: rerunning the same command continues where it stopped.\n"
        "Writes OUT/report.md (filter statistics, the ranking with mean ± std and Welch's t-test against erf, the\n"
        "verdict), OUT/ranking.csv and OUT/pareto.svg (accuracy against the fused kernel's cost). Every option of\n"
        "'derf train' except --norm, --alpha, --epochs and --train-limit applies. See docs/studies.md.", opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos) return cli_fail("study autosearch", "unexpected argument '%s' (derf study autosearch --help)", pos[0]);
    a.norm = "derf";
    if ((rc = train_args_finish(&a, "study autosearch"))) return rc;

    derf_as_grid g;
    memset(&g, 0, sizeof g);
    g.neg = 1;
    if (s.alphas && (g.nalpha = parse_list(s.alphas, g.alpha, 8, 1e-3, 100)) <= 0)
        return cli_fail("study autosearch", "--alphas wants up to 8 comma-separated numbers in [0.001, 100], got '%s'", s.alphas);
    if (s.clips && (g.nclip = parse_list(s.clips, g.clip, 8, 1e-3, 1e3)) <= 0)
        return cli_fail("study autosearch", "--clips wants up to 8 comma-separated positive levels, got '%s'", s.clips);
    if (s.mixes && (g.nmix = parse_list(s.mixes, g.mix, 8, 0, 1)) <= 0)
        return cli_fail("study autosearch", "--mixes wants up to 8 comma-separated numbers in [0, 1], got '%s'", s.mixes);
    if (s.list) return list_candidates(&g);

    derf_as_cfg cfg = {0};
    double ep[DERF_AS_MAX_RUNGS], se[DERF_AS_MAX_RUNGS], li[DERF_AS_MAX_RUNGS] = {0};
    int ne = parse_list(s.rungs, ep, DERF_AS_MAX_RUNGS, 1, 10000);
    int ns = parse_list(s.seeds, se, DERF_AS_MAX_RUNGS, 1, DERF_STUDY_MAX_SEEDS);
    int nl = s.limits ? parse_list(s.limits, li, DERF_AS_MAX_RUNGS, 0, 1e9) : ne;
    if (ne <= 0) return cli_fail("study autosearch", "--rungs wants 1 to %d comma-separated epoch counts, got '%s'", DERF_AS_MAX_RUNGS, s.rungs);
    if (ns != ne) return cli_fail("study autosearch", "--rung-seeds wants %d comma-separated seed counts (1..%d), one per rung, got '%s'", ne, DERF_STUDY_MAX_SEEDS, s.seeds);
    if (nl != ne) return cli_fail("study autosearch", "--rung-limit wants %d comma-separated image counts, one per rung, got '%s'", ne, s.limits);
    cfg.nrungs = ne;
    for (int k = 0; k < ne; k++) {
        cfg.epochs[k] = (int)ep[k];
        cfg.seeds[k] = (int)se[k];
        cfg.train_limit[k] = (int)li[k];
    }
    char outbuf[64];
    snprintf(outbuf, sizeof outbuf, "runs/autosearch%s", s.smoke ? "-smoke" : "");
    cfg.out = s.out ? s.out : outbuf;
    if (!cfg.out[0]) return cli_fail("study autosearch", "--out is empty: name a folder for the search");
    cfg.base = a.o;
    cfg.eta = s.eta;
    cfg.min_keep = s.min_keep;
    cfg.seed0 = a.seed;
    cfg.budget_hours = s.budget;
    cfg.threads = a.threads > 0 ? a.threads : 1;
    if (a.threads <= 0) {
        extern int omp_get_max_threads(void);
        cfg.threads = omp_get_max_threads();
    }
    cfg.quiet = s.smoke;

    char err[DERF_ERRLEN];
    derf_as_outcome res;
    if (derf_as_run(&cfg, &g, &res, err, sizeof err)) {
        fprintf(stderr, "derf study autosearch: %s\n(the finished runs are kept: rerun the same command to continue)\n", err);
        return 1;
    }
    const derf_as_filter_stats *f = &res.filter;
    printf("candidates: %d generated, %d kept after the property filter and shape deduplication\n", f->generated, f->kept);
    for (int k = 0; k < cfg.nrungs; k++)
        if (res.rung_size[k]) printf("rung %d: %d runs of %d epochs x %d seeds\n", k, res.rung_size[k], cfg.epochs[k], cfg.seeds[k]);
    printf("\n%-4s %-36s %-18s %-7s %-30s %s\n", "rank", "spec", "test acc %", "seeds", "vs erf (Welch, 5%)", "kernel cost");
    for (int i = 0; i < res.nfinal; i++) {
        const derf_as_final *q = &res.final[i];
        char acc[32] = "×", vs[48] = "-";
        if (q->st.n_ok) snprintf(acc, sizeof acc, "%.2f ± %.2f", q->st.acc_mean, q->st.acc_sd);
        if (!strcmp(q->spec, "erf")) snprintf(vs, sizeof vs, "(reference)");
        else if (isfinite(q->t)) snprintf(vs, sizeof vs, "t %.2f, %s", q->t, q->beyond > 0 ? "better" : q->beyond < 0 ? "worse" : "within noise");
        printf("%-4d %-36s %-18s %-7d %-30s %.2fx\n", i + 1, q->spec, acc, q->st.n_ok, vs, q->cost_rel);
    }
    printf("\n%.2f CPU-hours of runs%s; wrote %s/report.md, %s/ranking.csv, %s/pareto.svg\n", res.cpu_hours,
           res.stopped_by_budget ? " (stopped by --budget-hours: rerun with more to continue)" : "", cfg.out, cfg.out, cfg.out);
    derf_as_outcome_free(&res);
    return 0;
}
