/* cmd_study.c: `derf study NAME`: the paper's experiments (Tables 1-7, 13-16) as resumable sweeps.
 * The cases and the paper's numbers are in src/study/cases.c, the engine in src/study/sweep.c, the
 * report in src/study/report.c; this file parses the options, plans the epochs for a --budget
 * (from a short throughput probe), fits tanh(eps x) to erf for the approx study, and prints. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/train_opts.h"
#include "derf/io.h"
#include "derf/strbuf.h"
#include "derf/study.h"

#define PROBE_STEPS 20

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Small model, few hundred images, a few dozen steps: seconds per case (CI). Explicit options win.
 * Also the base of `study autosearch --smoke`, which then sets its own epochs and images per rung. */
void study_smoke_defaults(train_args *a) {
    a->dim = 16; a->depth = 2; a->heads = 2; a->patch = 7;
    a->o.train_limit = 512;
    a->o.test_limit = 256;
    a->o.batch = 32;
    a->o.epochs = 3;
    a->o.lr = 5e-3f;
    a->o.warmup_epochs = 0.25f;
    a->o.ema = 0;
    a->threads = 1;
    a->o.quiet = 1;
}

typedef struct { double ips, overhead_s; int n_train, n_test; } probe_result;

/* Trains PROBE_STEPS steps of the base setting with derf (nothing written) to measure images/s. */
static int probe(const derf_cls_opts *base, probe_result *pr, char *err, size_t errlen) {
    derf_cls_opts o = *base;
    if (derf_norm_parse("derf", &o.model.norm, err, errlen)) return -1;
    o.epochs = 1;
    o.max_steps = PROBE_STEPS;
    o.out = NULL;
    o.resume = NULL;
    o.quiet = 1;
    o.eval_train_loss = 0;
    o.test_limit = 256;
    derf_cls_result r;
    double t0 = now_s();
    if (derf_cls_train(&o, &r, err, errlen)) return -1;
    double wall = now_s() - t0;
    if (r.diverged || r.steps < 1 || !(r.seconds > 0)) {
        derf_io_errf(err, errlen, "the throughput probe (derf, %d steps) did not run cleanly: %s", PROBE_STEPS,
                     r.diverged ? r.diverged_msg : "no steps");
        return -1;
    }
    pr->ips = (double)r.steps * o.batch / r.seconds;
    pr->n_train = r.total_steps * o.batch; /* one epoch's steps x batch */
    pr->n_test = base->test_limit > 0 ? base->test_limit : 10000;
    if (pr->n_test > 10000) pr->n_test = 10000;
    /* data loading, model build and the probe's own test pass (256 images, forward only ~ 1/3 of a step) */
    pr->overhead_s = fmax(0, wall - r.seconds - 256.0 / 3 / pr->ips);
    return 0;
}

/* Estimated seconds of one run of E epochs: training, a test pass per epoch (x2 with EMA), the
 * evaluation-mode training loss at the end (x2 with EMA); a forward pass costs ~1/3 of a step. */
static double run_seconds(const derf_cls_opts *o, const probe_result *pr, int E) {
    double m = o->ema > 0 ? 2 : 1;
    double imgs = (double)E * pr->n_train + E * pr->n_test * m / 3 + (o->eval_train_loss ? pr->n_train * m / 3 : 0);
    return imgs / pr->ips + pr->overhead_s;
}

/* Epochs for a budget, remembered in OUT/plan.json so a restarted sweep trains the same setting. */
static int plan_epochs(derf_cls_opts *base, const char *out, double budget_min, int pending, int *E, double *est_run_s,
                       char *err, size_t errlen) {
    char req[1200], path[1200], fp[1024];
    derf_study_fingerprint(base, fp, sizeof fp);
    snprintf(req, sizeof req, "%s | budget %g min", fp, budget_min);
    snprintf(path, sizeof path, "%s/plan.json", out);
    void *buf;
    size_t len;
    if (access(path, F_OK) == 0 && !derf_io_read_file(path, 1 << 20, &buf, &len, err, errlen)) {
        cJSON *j = cJSON_Parse(buf);
        free(buf);
        const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(j, "request"));
        const cJSON *e = cJSON_GetObjectItem(j, "epochs"), *t = cJSON_GetObjectItem(j, "est_run_s");
        if (r && !strcmp(r, req) && cJSON_IsNumber(e) && e->valuedouble >= 1 && e->valuedouble <= 100000 &&
            e->valuedouble == (double)e->valueint) { /* else: a damaged plan, made anew */
            *E = e->valueint;
            *est_run_s = cJSON_IsNumber(t) ? t->valuedouble : NAN;
            cJSON_Delete(j);
            fprintf(stderr, "[study] budget plan from %s: %d epochs per run (continuing the same sweep)\n", path, *E);
            return 0;
        }
        cJSON_Delete(j);
    }
    probe_result pr;
    fprintf(stderr, "[study] probing throughput (%d steps of derf) ...\n", PROBE_STEPS);
    if (probe(base, &pr, err, errlen)) return -1;
    double per_run = budget_min * 60 / (pending > 0 ? pending : 1);
    double a = run_seconds(base, &pr, 2) - run_seconds(base, &pr, 1), b = run_seconds(base, &pr, 1) - a;
    int e = (int)floor((per_run - b) / a);
    if (e < 1) {
        e = 1;
        fprintf(stderr, "[study] warning: %d runs of 1 epoch need about %.0f min, more than the budget of %g min; "
                        "training 1 epoch each (use --train-limit, a smaller --preset or a sub-table to fit)\n",
                pending, pending * run_seconds(base, &pr, 1) / 60, budget_min);
    }
    *E = e;
    *est_run_s = run_seconds(base, &pr, e);
    fprintf(stderr, "[study] probe: %.0f images/s, %d training images; budget %g min for %d runs -> %d epochs per run "
                    "(about %.1f min each, %.0f min in all)\n",
            pr.ips, pr.n_train, budget_min, pending, e, *est_run_s / 60, pending * *est_run_s / 60);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "request", req);
    cJSON_AddNumberToObject(j, "epochs", e);
    cJSON_AddNumberToObject(j, "images_per_s", pr.ips);
    cJSON_AddNumberToObject(j, "est_run_s", *est_run_s);
    cJSON_AddNumberToObject(j, "runs_planned", pending);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    int rc = derf_io_mkdirs(out, err, errlen);
    if (!rc) rc = derf_io_write_file(path, s, strlen(s), err, errlen);
    free(s);
    return rc;
}

static int parse_lambdas(const char *text, double *out, int max) {
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || n == max) return -1;
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

/* "n/a", "×" (the paper's run diverged) or the paper's accuracy */
static void paper_cell(char *p, size_t n, double acc) {
    if (isnan(acc)) snprintf(p, n, "n/a");
    else if (acc == DERF_STUDY_DIVERGED) snprintf(p, n, "×");
    else snprintf(p, n, "%.1f", acc);
}

/* Table 16: the fitted eps of tanh(eps x) ~ erf(x) (Eq. 11), printed and described in the report's setting */
static double approx_fit(derf_strbuf *setting) {
    double g1, g2, e1 = derf_tanh_erf_fit(1, 0.8, 2.0, &g1), e2 = derf_tanh_erf_fit(2, 0.8, 2.0, &g2);
    double g0 = derf_tanh_erf_gap(1.1283791670955126, 1);
    printf("tanh(εx) ≈ erf(x), Eq. 11: ε = %.5f minimises ∫|tanh(εx) - erf(x)| dx = %.6f (paper: ε ≈ 1.205)\n", e1, g1);
    printf("  for comparison: least squares ε = %.5f (∫(tanh(εx) - erf(x))² dx = %.3g); slope match at 0, ε = 2/√π = 1.12838 "
           "(L1 area %.6f)\n", e2, g2, g0);
    printf("  trained as tanh(α'x + s') with α' = εα initialised at 0.5ε = %.5f (docs/studies.md)\n", 0.5 * e1);
    derf_sb_printf(setting, "Fitted ε = %.5f (L1 area %.6f; the paper: ε ≈ 1.205; least squares would give %.5f). "
                            "tanh(ε(αx + s)) is trained as the spec `tanh:alpha=%.6g`, i.e. tanh(α'x + s') with α' = εα, "
                            "s' = εs initialised at 0.5ε and 0: the same function family and the same initial function. "
                            "The one difference is AdamW's step on α and s, which is scale-free: in the paper's "
                            "parametrisation α' and s' move ε times faster (no weight decay on either).\n\n",
                   e1, g1, e2, 0.5 * e1);
    return e1;
}

/* the report's "Setting:" paragraph */
static void describe_setting(derf_strbuf *setting, const derf_cls_opts *o, int from_budget, int smoke) {
    char ntr[32] = "all", nte[32] = "all";
    if (o->train_limit) snprintf(ntr, sizeof ntr, "the first %d", o->train_limit);
    if (o->test_limit) snprintf(nte, sizeof nte, "the first %d", o->test_limit);
    derf_sb_printf(setting, "Setting: ViT dim %d, depth %d, heads %d, patch %d, %s pooling, on `%s` (%s training images, %s "
                            "test images); %d epochs%s, batch %d, AdamW lr %g (min %g, warmup %g epochs), wd %g, betas (%g, %g), "
                            "label smoothing %g, mixup %g, cutmix %g, erase %g, translate %d, hflip %d, drop path %g, "
                            "EMA %g%s.",
                   o->model.dim, o->model.depth, o->model.heads, o->model.patch,
                   o->model.pool == DERF_POOL_AVG ? "average" : "class-token", o->data, ntr, nte, o->epochs,
                   from_budget ? " (from --budget)" : "", o->batch, (double)o->lr, (double)o->min_lr,
                   (double)o->warmup_epochs, (double)o->weight_decay, (double)o->beta1, (double)o->beta2,
                   (double)o->aug.smoothing, (double)o->aug.mixup_alpha, (double)o->aug.cutmix_alpha,
                   (double)o->aug.erase_prob, o->aug.translate, o->aug.hflip, (double)o->model.drop_path,
                   (double)o->ema, smoke ? "; **smoke mode** (tiny model and data: a pipeline check, not a result)" : "");
}

/* --list: the cases and what is left to train */
static void list_cases(const char *name, const derf_study_case *cases, int nc, int seeds, int pending, const char *out) {
    printf("study %s: %d cases, %d seeds, %d runs left to train in %s\n", name, nc, seeds, pending, out);
    for (int i = 0; i < nc; i++) {
        char p[16];
        paper_cell(p, sizeof p, cases[i].paper_acc);
        printf("  %-9s %-22s %-10s %-34s paper %s%s\n", cases[i].table, cases[i].row, cases[i].col, cases[i].spec, p,
               cases[i].base == i ? "  (baseline)" : "");
    }
}

/* the terminal table: ours beside the paper's */
static void print_results(const derf_study_case *cases, int nc, const derf_study_result *res, int seeds) {
    printf("\n%-9s %-22s %-10s %-34s %-22s %s\n", "table", "row", "column", "spec", "ours: test acc %", "paper");
    for (int i = 0; i < nc; i++) {
        derf_study_stat st;
        derf_study_stats(&res[i * seeds], seeds, &st);
        char ours[64], p[16];
        if (!st.n_ok) snprintf(ours, sizeof ours, "%s", st.n_div ? "× (diverged)" : "-");
        else if (seeds > 1) snprintf(ours, sizeof ours, "%.2f ± %.2f%s", st.acc_mean, st.acc_sd, st.n_div ? " (some ×)" : "");
        else snprintf(ours, sizeof ours, "%.2f", st.acc_mean);
        paper_cell(p, sizeof p, cases[i].paper_acc);
        printf("%-9s %-22s %-10s %-34s %-22s %s\n", cases[i].table, cases[i].row, cases[i].col, cases[i].spec, ours, p);
    }
}

int cmd_study(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "autosearch")) return cmd_autosearch(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "lm")) return cmd_study_lm(argc - 1, argv + 1); /* the language-model sweep */
    static train_args a;
    train_args_init(&a);
    int smoke = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--smoke")) smoke = 1;
    if (smoke) study_smoke_defaults(&a);
    const char *out = NULL, *lambdas = NULL;
    int seeds = 1, table = 0, list = 0, keep = 0;
    float budget = 0;
    cli_opt all[64], opts[72];
    int n0 = train_opts_table(&a, all, 60), n = 0;
    for (int i = 0; i < n0; i++) /* every case sets its own norm spec (alpha included) */
        if (strcmp(all[i].name, "norm") && strcmp(all[i].name, "alpha")) opts[n++] = all[i];
    opts[n++] = (cli_opt){"seeds", CLI_INT, &seeds, "seeds per case (--seed, --seed + 1, ...): mean ± std in the report", 1, DERF_STUDY_MAX_SEEDS};
    opts[n++] = (cli_opt){"budget", CLI_FLOAT, &budget, "wall-clock minutes for the whole sweep: sets --epochs from a throughput probe (0: use --epochs)", 0, 1e7};
    opts[n++] = (cli_opt){"smoke", CLI_FLAG, &smoke, "CI mode: tiny model (dim 16, depth 2, patch 7), 512 train / 256 test images, 3 epochs (48 steps), lr 5e-3, no EMA, 1 thread", 0, -1};
    opts[n++] = (cli_opt){"table", CLI_INT, &table, "properties: run only Table 1..6 (0: all)", 0, 6};
    opts[n++] = (cli_opt){"lambdas", CLI_STR, &lambdas, "properties: comma-separated λ list for Tables 1, 2, 3, 5 (default: the paper's)", 0, -1};
    opts[n++] = (cli_opt){"out", CLI_STR, &out, "sweep folder (default runs/study-NAME, runs/study-NAME-smoke with --smoke)", 0, -1};
    opts[n++] = (cli_opt){"list", CLI_FLAG, &list, "print the cases, their specs and what is left to train (with --budget: the plan), train nothing", 0, -1};
    opts[n++] = (cli_opt){"keep-checkpoints", CLI_FLAG, &keep, "keep every run's *.safetensors (default: only result.json and log.jsonl)", 0, -1};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"study", "NAME [options]",
        "Run one of the paper's experiments as a resumable sweep of ViT trainings on Fashion-MNIST:\n"
        "  properties  Tables 1-6: shifts, clipping, linear mix, growth, flat zone, monotonicity (no s)\n"
        "  search      Table 7: the 16 functions of the search (with s) and LayerNorm\n"
        "  fitting     Table 13: evaluation-mode training loss beside test accuracy (LayerNorm, Derf, DyT)\n"
        "  shift       Tables 14-15: with / without s, scalar / per-channel s\n"
        "  approx      Table 16: fit eps of tanh(eps x) to erf (Eq. 11), train it beside tanh and erf\n"
        "  autosearch  beyond the paper: an automated, property-constrained search ('derf study autosearch --help')",
        "Each finished run leaves OUT/runs/<case>-s<seed>/result.json; rerunning the same command continues an\n"
        "interrupted sweep (finished runs are read back, not retrained). Writes OUT/results.csv, OUT/report.md (ours\n"
        "beside the paper's numbers, × for diverged runs) and OUT/plot.svg. Every option of 'derf train' except\n"
        "--norm and --alpha applies to all runs. See docs/studies.md.", opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos != 1) return cli_fail("study", "name a study: %s (derf study --help)", derf_study_names());
    const char *name = pos[0];
    if (!derf_study_about(name)) return cli_fail("study", "unknown study '%s' (known: %s)", name, derf_study_names());
    if ((rc = train_args_finish(&a, "study"))) return rc;
    char outbuf[256];
    if (!out) {
        snprintf(outbuf, sizeof outbuf, "runs/study-%s%s", name, smoke ? "-smoke" : "");
        out = outbuf;
    }

    derf_study_select sel = {table, NULL, 0, 0};
    double lams[64];
    if (lambdas) {
        int k = parse_lambdas(lambdas, lams, 64);
        if (k <= 0) return cli_fail("study", "--lambdas wants comma-separated numbers (at most 64), e.g. -1,-0.5,0.5,1; got '%s'", lambdas);
        sel.lambdas = lams;
        sel.nlambdas = k;
    }
    char err[DERF_ERRLEN];
    derf_strbuf setting = {0};
    if (!strcmp(name, "approx")) sel.tanh_eps = approx_fit(&setting);
    derf_study_case *cases;
    int nc = derf_study_cases(name, &sel, &cases, err, sizeof err);
    if (nc < 0) { derf_sb_free(&setting); return cli_fail("study", "%s", err); }

    derf_study_cfg cfg = {0};
    cfg.study = name;
    cfg.out = out;
    cfg.base = a.o;
    cfg.seeds = seeds;
    cfg.seed0 = a.seed;
    cfg.quiet = 0;
    cfg.keep_checkpoints = keep;
    int pending = derf_study_pending(&cfg, cases, nc);
    double est = NAN;
    if (budget > 0) {
        int E;
        if (plan_epochs(&cfg.base, out, budget, pending, &E, &est, err, sizeof err)) {
            free(cases); derf_sb_free(&setting);
            return cli_fail("study", "%s", err);
        }
        cfg.base.epochs = E;
    }
    describe_setting(&setting, &cfg.base, budget > 0, smoke);
    cfg.setting = setting.s;

    if (list) {
        list_cases(name, cases, nc, seeds, pending, out);
        if (budget > 0) printf("plan: %d epochs per run, about %.1f min per run, %.0f min for the %d runs left\n",
                               cfg.base.epochs, est / 60, est * pending / 60, pending);
        free(cases); derf_sb_free(&setting);
        return 0;
    }

    derf_study_result *res = calloc((size_t)nc * (size_t)seeds, sizeof *res);
    int trained = 0;
    double t0 = now_s();
    rc = derf_study_run(&cfg, cases, nc, res, &trained, err, sizeof err);
    char err2[DERF_ERRLEN];
    int any = 0; /* a refused result.json stops the sweep before anything is read: keep the old report then */
    for (int i = 0; i < nc * seeds; i++) any |= res[i].done;
    int wrc = rc && !any ? 0 : derf_study_write_reports(&cfg, cases, nc, res, err2, sizeof err2);
    if (!rc && !wrc) {
        print_results(cases, nc, res, seeds);
        printf("\n%d runs trained now, the rest read back; %.0f s. wrote %s/report.md, %s/results.csv and %s/plot.svg\n",
               trained, now_s() - t0, out, out, out);
    }
    free(res);
    free(cases);
    derf_sb_free(&setting);
    if (rc) {
        fprintf(stderr, "derf study: %s\n", err);
        if (any) fprintf(stderr, "(the finished runs are kept: rerun the same command to continue)\n");
        return 1;
    }
    if (wrc) return cli_fail("study", "%s", err2);
    return 0;
}
