/* cmd_study_lm.c: `derf study lm`: what keeps a GPT-2 with point-wise norms from collapsing to the
 * unigram prediction. A resumable sweep of `train-lm` runs (the byte-level `mini` model by default),
 * each case a few train-lm options over a common base, several seeds each; every finished run leaves
 * OUT/runs/<case>-s<seed>/result.json (written atomically; an interrupted sweep continues where it
 * stopped) with its validation loss and its last diagnostics (derf/diag.h). Writes OUT/report.md.
 * See docs/studies.md. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "cli/lm_opts.h"
#include "derf/io.h"
#include "derf/strbuf.h"

typedef struct { const char *id, *what, *args; } lm_case;

/* derf unless the case names its norm; every case differs from "derf" in one respect */
static const lm_case CASES[] = {
    {"layernorm", "LayerNorm (the reference)", "--norm layernorm"},
    {"dyt", "DyT, the recipe", "--norm dyt"},
    {"derf", "Derf, the recipe (alpha 1, shared_scale sqrt(C), biases)", ""},
    {"warmup-long", "warmup 5x longer", "--warmup-x 5"},
    {"accum4", "4x tokens per step (gradient accumulation), same tokens in all", "--accum 4 --steps-x 0.25"},
    {"accum4-steps", "4x tokens per step, same steps (4x the tokens)", "--accum 4"},
    {"lr-low", "lr / 3", "--lr 2e-4"},
    {"lr-high", "lr x 3", "--lr 1.8e-3"},
    {"alpha-small", "alpha inits attn 0.2, ffn 0.05, final 0.05", "--attn-alpha 0.2 --ffn-alpha 0.05 --final-alpha 0.05"},
    {"alpha-final5", "final alpha 5", "--final-alpha 5"},
    {"scale-1", "shared_scale init 1", "--shared-scale-init 1"},
    {"scale-off", "no shared_scale", "--shared-scale off"},
    {"shift-channel", "per-channel shift s", "--norm derf:shift=channel"},
    {"wd0", "no weight decay", "--wd 0"},
    {"nobias", "no Linear biases (nanoGPT's bias=False)", "--bias off"},
    {"logit-unigram", "logit bias started at the unigram log-probs (derf's)", "--logit-bias unigram"},
    {"logit-zero", "logit bias started at 0 (derf's)", "--logit-bias zero"},
    {"dyt-logit-unigram", "DyT with the unigram logit bias", "--norm dyt --logit-bias unigram"},
    {"ln-logit-unigram", "LayerNorm with the unigram logit bias", "--norm layernorm --logit-bias unigram"},
    {"dyt-nobias", "DyT without Linear biases", "--norm dyt --bias off"},
    {"ln-nobias", "LayerNorm without Linear biases", "--norm layernorm --bias off"},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

static const char *BASE = "--text bytes --preset mini --seq 128 --batch 16 --steps 120 --warmup 12 --eval-every 40 "
                          "--eval-windows 16 --no-eval-train --diag-every 20 --norm derf --threads 1";
static const char *SMOKE = "--preset test --seq 16 --batch 4 --steps 8 --warmup 2 --eval-every 4 --eval-windows 2 "
                           "--diag-every 4";

/* splits s on spaces into argv (appended at *n; strings malloc'd and kept until exit) */
static void split_args(const char *s, char **argv, int *n, int max) {
    const char *p = s;
    while (*p && *n < max) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        argv[(*n)++] = strndup(p, len);
        p += len;
    }
}

typedef struct {
    double val, final_loss, sat, rms, share, gap, seconds;
    long long tokens;
    int alarm, diverged, done;
} lm_run;

static int run_load(const char *path, const char *fp, lm_run *r, char *err, size_t errlen) {
    if (access(path, F_OK) != 0) return 0;
    void *buf;
    size_t len;
    if (derf_io_read_file(path, 1 << 20, &buf, &len, err, errlen)) return -1;
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    const char *o = j ? cJSON_GetStringValue(cJSON_GetObjectItem(j, "options")) : NULL;
    if (!o || strcmp(o, fp) != 0) {
        cJSON_Delete(j);
        derf_io_errf(err, errlen, "%s belongs to another setting (other options): use another --out", path);
        return -1;
    }
#define G(k) (cJSON_IsNumber(cJSON_GetObjectItem(j, k)) ? cJSON_GetObjectItem(j, k)->valuedouble : NAN)
    r->val = G("val_loss"); r->final_loss = G("final_loss"); r->sat = G("sat_max"); r->rms = G("rms_last");
    r->share = G("share_last"); r->gap = G("unigram_gap"); r->seconds = G("seconds"); r->tokens = (long long)G("tokens");
    r->alarm = cJSON_IsTrue(cJSON_GetObjectItem(j, "alarm"));
    r->diverged = cJSON_IsTrue(cJSON_GetObjectItem(j, "diverged"));
#undef G
    cJSON_Delete(j);
    r->done = 1;
    return 1;
}

static void jnum_(cJSON *j, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(j, k, v);
    else cJSON_AddNullToObject(j, k);
}

static int run_save(const char *path, const char *id, int seed, const char *fp, const lm_run *r, char *err, size_t errlen) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "case", id);
    cJSON_AddNumberToObject(j, "seed", seed);
    cJSON_AddStringToObject(j, "options", fp);
    cJSON_AddBoolToObject(j, "diverged", r->diverged);
    jnum_(j, "val_loss", r->val); jnum_(j, "final_loss", r->final_loss); jnum_(j, "sat_max", r->sat); jnum_(j, "rms_last", r->rms);
    jnum_(j, "share_last", r->share); jnum_(j, "unigram_gap", r->gap);
    cJSON_AddBoolToObject(j, "alarm", r->alarm);
    jnum_(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "tokens", (double)r->tokens);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    int rc = derf_io_write_file(path, s, strlen(s), err, errlen);
    free(s);
    return rc;
}

/* mean and sample std of the finite values */
static void mean_sd(const double *x, int n, double *m, double *sd, int *k) {
    double s = 0, q = 0;
    *k = 0;
    for (int i = 0; i < n; i++) if (isfinite(x[i])) { s += x[i]; (*k)++; }
    *m = *k ? s / *k : NAN;
    for (int i = 0; i < n; i++) if (isfinite(x[i])) q += (x[i] - *m) * (x[i] - *m);
    *sd = *k > 1 ? sqrt(q / (*k - 1)) : NAN;
}

int cmd_study_lm(int argc, char **argv) {
    static lm_args a;
    lm_args_init(&a);
    const char *out = NULL, *cases = NULL;
    int seeds = 2, smoke = 0, list = 0, keep = 0, report_only = 0;
    float warmup_x = 1, steps_x = 1;
    cli_opt opts[80];
    int n = lm_opts_table(&a, opts, 60);
    opts[n++] = (cli_opt){"seeds", CLI_INT, &seeds, "seeds per case (--seed, --seed + 1, ...)", 1, 16};
    opts[n++] = (cli_opt){"cases", CLI_STR, &cases, "comma-separated case ids to run (default: all; see --list)", 0, -1};
    opts[n++] = (cli_opt){"out", CLI_STR, &out, "sweep folder (default runs/study-lm, runs/study-lm-smoke with --smoke)", 0, -1};
    opts[n++] = (cli_opt){"smoke", CLI_FLAG, &smoke, "CI mode: the test preset (L2 C16), 8 steps of 4 x 16 tokens per run", 0, -1};
    opts[n++] = (cli_opt){"list", CLI_FLAG, &list, "print the cases and what is left to train, train nothing", 0, -1};
    opts[n++] = (cli_opt){"report", CLI_FLAG, &report_only, "write the report from the finished runs only, train nothing", 0, -1};
    opts[n++] = (cli_opt){"keep-checkpoints", CLI_FLAG, &keep, "keep every run's *.safetensors (default: only result.json and log.jsonl)", 0, -1};
    opts[n++] = (cli_opt){"warmup-x", CLI_FLOAT, &warmup_x, "(per case) multiply the base --warmup", 0.01, 1000};
    opts[n++] = (cli_opt){"steps-x", CLI_FLOAT, &steps_x, "(per case) multiply the base --steps, --warmup, --eval-every and --diag-every", 0.001, 1000};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"study lm", "[options]",
        "What keeps a GPT-2 with point-wise norms from collapsing to the unigram prediction: a resumable sweep of\n"
        "train-lm runs (default base: " "byte-level text, preset mini, 120 steps of 16 x 128 bytes, warmup 12,\n"
        "diagnostics every 20 steps), one case per changed setting, --seeds seeds each.",
        "Every train-lm option applies to all runs (over the base). Each finished run leaves\n"
        "OUT/runs/<case>-s<seed>/result.json; rerunning the same command continues an interrupted sweep. Writes\n"
        "OUT/report.md: validation loss mean ± std, how many runs ended with the collapse alarm, and the last\n"
        "diagnostics (largest saturated fraction, ln_f input rms and token-independent share, unigram gap).\n"
        "See docs/studies.md and docs/diagnostics.md.", opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (!out) out = smoke ? "runs/study-lm-smoke" : "runs/study-lm";
    /* the user's train-lm options: argv without the study's own */
    char *user[256];
    int nuser = 0;
    static const char *own[] = {"--seeds", "--cases", "--out", "--smoke", "--list", "--keep-checkpoints", "--report"};
    for (int i = 1; i < argc && nuser < 256; i++) {
        int skip = 0;
        for (int k = 0; k < 7; k++)
            if (!strcmp(argv[i], own[k])) skip = k < 3 ? 2 : 1;
        if (skip) { i += skip - 1; continue; }
        user[nuser++] = argv[i];
    }
    int sel[NCASES], nsel = 0; /* the cases in --cases order (all, in table order, without it) */
    if (cases) {
        char *dup = strdup(cases), *save = NULL;
        for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int hit = -1;
            for (int c = 0; c < NCASES; c++) if (!strcmp(t, CASES[c].id)) hit = c;
            if (hit < 0) {
                rc = cli_fail("study lm", "unknown case '%s' in --cases (see --list)", t);
                free(dup);
                return rc;
            }
            int seen = 0;
            for (int i = 0; i < nsel; i++) seen |= sel[i] == hit;
            if (!seen) sel[nsel++] = hit;
        }
        free(dup);
    } else {
        for (int c = 0; c < NCASES; c++) sel[nsel++] = c;
    }
    char dir[1200], err[DERF_ERRLEN];
    mkdir(out, 0777);
    snprintf(dir, sizeof dir, "%s/runs", out);
    mkdir(dir, 0777);
    lm_run *res = calloc((size_t)NCASES * seeds, sizeof *res);
    char **fps = calloc((size_t)NCASES, sizeof *fps);
    int pending = 0;
    /* pass 1: each case's options (its fingerprint) and what is done */
    for (int si = 0; si < nsel; si++) {
        const int c = sel[si];
        char *av[512];
        int ac = 0;
        av[ac++] = "study-lm";
        split_args(BASE, av, &ac, 500);
        if (smoke) split_args(SMOKE, av, &ac, 500);
        for (int i = 0; i < nuser && ac < 500; i++) av[ac++] = user[i];
        split_args(CASES[c].args, av, &ac, 500);
        derf_strbuf fp = {0};
        for (int i = 1; i < ac; i++) derf_sb_printf(&fp, "%s%s", i > 1 ? " " : "", av[i]);
        fps[c] = fp.s;
        for (int s = 0; s < seeds; s++) {
            char path[1400];
            snprintf(path, sizeof path, "%s/%s-s%d/result.json", dir, CASES[c].id, a.seed + s);
            int r = run_load(path, fps[c], &res[c * seeds + s], err, sizeof err);
            if (r < 0) return cli_fail("study lm", "%s", err);
            pending += r == 0;
        }
        if (list) printf("%-14s %-60s %s\n", CASES[c].id, CASES[c].what, CASES[c].args[0] ? CASES[c].args : "(base)");
    }
    if (list) { printf("%d of %d runs left to train in %s\n", pending, nsel * seeds, out); return 0; }
    fprintf(stderr, "[study lm] %d cases x %d seeds, %d runs left, in %s\n", nsel, seeds, pending, out);
    /* pass 2: train what is missing */
    const int seed0 = a.seed;
    for (int si = 0; si < nsel; si++) {
        const int c = sel[si];
        for (int s = 0; s < seeds; s++) {
            lm_run *r = &res[c * seeds + s];
            if (r->done || report_only) continue;
            char *av[512];
            int ac = 0;
            av[ac++] = "study-lm";
            split_args(fps[c], av, &ac, 500);
            static lm_args b;
            lm_args_init(&b);
            warmup_x = steps_x = 1;
            cli_opt t[80];
            int m = lm_opts_table(&b, t, 60);
            t[m++] = (cli_opt){"warmup-x", CLI_FLOAT, &warmup_x, "", 0.01, 1000};
            t[m++] = (cli_opt){"steps-x", CLI_FLOAT, &steps_x, "", 0.001, 1000};
            t[m] = (cli_opt){0};
            const cli_cmd sub = {"study lm", "", "", "", t};
            if (cli_parse(&sub, ac, av, pos, 0, &npos)) return 2;
            b.seed = seed0 + s;
            if ((rc = lm_args_finish(&b, "study lm"))) return rc;
            b.o.warmup = (int)lround(b.o.warmup * warmup_x * steps_x);
            b.o.steps = (int)lround(b.o.steps * steps_x) > 0 ? (int)lround(b.o.steps * steps_x) : 1;
            b.o.eval_every = (int)lround(b.o.eval_every * steps_x);
            b.o.diag_every = b.o.diag_every > 0 && lround(b.o.diag_every * steps_x) < 1 ? 1 : (int)lround(b.o.diag_every * steps_x);
            char rdir[1400], path[1500];
            snprintf(rdir, sizeof rdir, "%s/%s-s%d", dir, CASES[c].id, b.seed);
            b.o.out = rdir;
            b.o.quiet = 1;
            fprintf(stderr, "[study lm] %s seed %d: %s\n", CASES[c].id, b.seed, CASES[c].what);
            static derf_lm_result lr;
            if (derf_lm_train(&b.o, &lr, err, sizeof err)) return cli_fail("study lm", "%s: %s", CASES[c].id, err);
            *r = (lm_run){lr.val_loss, lr.final_loss, lr.diag_sat_max, lr.diag_rms_last, lr.diag_share_last, lr.diag_gap,
                          lr.seconds, lr.tokens, lr.diag_alarm == 1, lr.diverged, 1};
            if (lr.diverged) r->val = NAN;
            fprintf(stderr, "[study lm] %s seed %d: val loss %.4f, sat max %.3f, ln_f share %.3f, unigram gap %.3f%s (%.0f s)\n",
                    CASES[c].id, b.seed, r->val, r->sat, r->share, r->gap, r->alarm ? ", COLLAPSE" : "", r->seconds);
            snprintf(path, sizeof path, "%s/result.json", rdir);
            if (run_save(path, CASES[c].id, b.seed, fps[c], r, err, sizeof err)) return cli_fail("study lm", "%s", err);
            if (!keep) {
                snprintf(path, sizeof path, "%s/model.safetensors", rdir); unlink(path);
                snprintf(path, sizeof path, "%s/state.safetensors", rdir); unlink(path);
            }
        }
    }
    /* report */
    derf_strbuf md = {0};
    derf_sb_printf(&md, "# derf study lm\n\nBase options: `%s%s`; seeds %d..%d. Per case: validation loss mean ± std, runs "
                   "whose last diagnostics raised the collapse alarm, and those diagnostics averaged over seeds: the "
                   "largest saturated fraction of any norm layer, the last norm's input rms and token-independent share, "
                   "and the training-batch loss gap to the unigram prediction (docs/diagnostics.md).\n\n",
                   BASE, smoke ? " (smoke)" : "", seed0, seed0 + seeds - 1);
    derf_sb_printf(&md, "| case | what | options | val loss | collapsed | sat max | last norm input rms | its share | unigram gap |\n"
                        "|---|---|---|---|---|---|---|---|---|\n");
    printf("%-14s %-18s %-9s %-8s %-8s %-8s %s\n", "case", "val loss", "collapsed", "sat max", "ln_f rms", "share", "gap");
    for (int si = 0; si < nsel; si++) {
        const int c = sel[si];
        double v[16], x[5][16], mv, sv, mx[5], sx;
        int k, alarms = 0, ndone = 0;
        for (int s = 0; s < seeds; s++) {
            const lm_run *r = &res[c * seeds + s];
            v[s] = r->done ? r->val : NAN;
            x[0][s] = r->done ? r->sat : NAN; x[1][s] = r->done ? r->rms : NAN;
            x[2][s] = r->done ? r->share : NAN; x[3][s] = r->done ? r->gap : NAN;
            alarms += r->done && r->alarm;
            ndone += r->done;
        }
        mean_sd(v, seeds, &mv, &sv, &k);
        for (int q = 0; q < 4; q++) { int kk; mean_sd(x[q], seeds, &mx[q], &sx, &kk); }
        char sat[16];
        if (isfinite(mx[0])) snprintf(sat, sizeof sat, "%.3f", mx[0]);
        else snprintf(sat, sizeof sat, "n/a"); /* LayerNorm / RMSNorm, or no diagnostics */
        derf_sb_printf(&md, "| %s | %s | `%s` | %.4f ± %.4f (%d) | %d/%d | %s | %.3g | %.3f | %.3f |\n", CASES[c].id,
                       CASES[c].what, CASES[c].args[0] ? CASES[c].args : "(base)", mv, sv, k, alarms, ndone, sat, mx[1],
                       mx[2], mx[3]);
        printf("%-14s %.4f±%.4f %d/%-7d %-8.3f %-8.3g %-8.3f %.3f\n", CASES[c].id, mv, sv, alarms, ndone, mx[0], mx[1],
               mx[2], mx[3]);
    }
    char path[1300];
    snprintf(path, sizeof path, "%s/report.md", out);
    rc = derf_io_write_file(path, md.s, md.len, err, sizeof err) ? cli_fail("study lm", "%s", err) : 0;
    if (!rc) printf("wrote %s\n", path);
    free(md.s);
    for (int c = 0; c < NCASES; c++) free(fps[c]);
    free(fps);
    free(res);
    return rc;
}
