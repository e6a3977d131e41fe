/* cmd_speech.c: `derf train-speech` (wav2vec 2.0 pre-training on the corpus of `derf data speech`, any
 * --norm for the Transformer's norms, checkpoints, exact --resume) and `derf compare --model wav2vec`
 * (the same run for several norms and seeds: validation loss in bits per masked frame, mean +- std,
 * accuracy, code perplexity, evaluation-mode training loss, character-ID probe vs a random network;
 * report.md). cmd_compare dispatches --model wav2vec here. See docs/speech.md. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "derf/io.h"
#include "derf/speech_train.h"
#include "derf/strbuf.h"

typedef struct {
    derf_speech_train_opts o;
    const char *norm, *preset;
    int seed, threads, no_probe, smoke;
} sp_args;

static void sp_init(sp_args *a) {
    memset(a, 0, sizeof *a);
    derf_speech_train_opts_default(&a->o);
    a->norm = "derf";
    a->preset = "s";
}

static int sp_table(sp_args *a, cli_opt *t) {
    const cli_opt opts[] = {
        {"norm", CLI_STR, &a->norm, "norm spec of the Transformer's per-layer and final norms (layernorm, dyt, derf, ...)", 0, -1},
        {"preset", CLI_STR, &a->preset, "model size: xxs, xs, s (W-S: C 128, d 256, 4 layers; docs/speech.md)", 0, -1},
        {"data", CLI_STR, &a->o.data, "corpus folder ('derf data speech')", 0, -1},
        {"steps", CLI_INT, &a->o.steps, "optimizer steps of the schedule", 1, 100000000},
        {"batch", CLI_INT, &a->o.batch, "utterances per step", 1, 256},
        {"crop", CLI_INT, &a->o.crop, "longest crop in samples (16 kHz)", 400, 1000000},
        {"min-samples", CLI_INT, &a->o.min_samples, "skip utterances shorter than this", 400, 1000000},
        {"lr", CLI_FLOAT, &a->o.lr, "peak learning rate", 0, 10},
        {"warmup-frac", CLI_FLOAT, &a->o.warmup_frac, "share of the steps spent in linear warmup", 0, 1},
        {"wd", CLI_FLOAT, &a->o.weight_decay, "decoupled weight decay (>= 2-D tensors)", 0, 10},
        {"clip", CLI_FLOAT, &a->o.clip, "clip the global gradient norm at this value (0: off)", 0, 1e6},
        {"eval-every", CLI_INT, &a->o.eval_every, "steps between validations and checkpoints (0: only at the end)", 0, 100000000},
        {"val-utts", CLI_INT, &a->o.val_utts, "validation utterances (0: all)", 0, 1000000},
        {"train-eval-utts", CLI_INT, &a->o.train_eval_utts, "training utterances of the evaluation-mode training loss (0: skip)", 0, 1000000},
        {"no-probe", CLI_FLAG, &a->no_probe, "skip the character-ID probe", 0, -1},
        {"smoke", CLI_FLAG, &a->smoke, "a seconds-long check: preset xxs, 6 steps of 2 x 1 s, 8 val utterances", 0, -1},
        {"seed", CLI_INT, &a->seed, "random seed (init, batches, draws)", 0, 2147483647},
        {"threads", CLI_INT, &a->threads, "OpenMP threads (0 or auto: every CPU this process may use)", 0, 1024},
        {"log-every", CLI_INT, &a->o.log_every, "steps between progress lines", 1, 1000000},
        {"diag-every", CLI_INT, &a->o.diag_every, "steps between diagnostics: norm saturation, residual stream (docs/diagnostics.md; 0: off)", 0, 100000000},
        {"quiet", CLI_FLAG, &a->o.quiet, "no progress lines", 0, -1},
    };
    int n = (int)(sizeof opts / sizeof opts[0]);
    memcpy(t, opts, sizeof opts);
    return n;
}

static int sp_finish(sp_args *a, const char *cmd) {
    char err[DERF_ERRLEN];
    derf_norm_spec spec;
    if (a->smoke) {
        a->preset = "xxs";
        a->o.steps = 6;
        a->o.batch = 2;
        a->o.crop = 16000;
        a->o.eval_every = 0;
        a->o.val_utts = 8;
        a->o.train_eval_utts = 8;
        a->o.log_every = 2;
    }
    if (derf_norm_parse(a->norm, &spec, err, sizeof err)) return cli_fail(cmd, "%s", err);
    if (derf_w2v_preset(&a->o.model, a->preset, err, sizeof err)) return cli_fail(cmd, "%s", err);
    a->o.model.norm = spec;
    if (a->o.min_samples > a->o.crop) a->o.min_samples = a->o.crop;
    a->o.seed = (uint64_t)a->seed;
    a->o.probe = !a->no_probe;
    if (a->threads > 0) omp_set_num_threads(a->threads);
    return 0;
}

static void print_result(const char *label, const derf_speech_train_result *r) {
    if (r->diverged) {
        printf("%s: %s\n", label, r->diverged_msg);
        return;
    }
    printf("%s: val %.4f bits/masked frame (contrastive %.4f), acc %.3f, code ppl %.1f", label, r->val.bits,
           r->val.contrastive_bits, r->val.acc, r->val.code_ppl);
    if (r->train_eval.frames) printf(", eval-mode train %.4f", r->train_eval.bits);
    if (r->probe_acc >= 0)
        printf(", probe %.3f (random net %.3f, majority %.3f)", (double)r->probe_acc, (double)r->probe_acc_random,
               (double)r->probe_chance);
    printf("; %d steps in %.0f s, %.0f frames/s\n", r->steps, r->seconds, r->frames_per_s);
}

static void reset_args(void *a) { sp_init((sp_args *)a); }

int cmd_train_speech(int argc, char **argv) {
    static sp_args a;
    sp_init(&a);
    cli_run run = {"runs/speech", NULL, 0, 0, CLI_CKPT_SECS};
    cli_opt opts[40];
    int n = sp_table(&a, opts);
    n += cli_run_opts(opts + n, &run, "run folder: model.safetensors, state.safetensors, log.jsonl");
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"train-speech", "[options]",
        "Pre-train wav2vec 2.0 (fairseq's model scaled in width; default preset s with derf) on the speech corpus\n"
        "of 'derf data speech', and report the validation loss in bits per masked frame.",
        "Adam (0.9, 0.98, eps 1e-6) with decoupled weight decay, linear warmup then linear decay to 0, Gumbel\n"
        "temperature 2 -> 0.5 at 69% of the run. Validation uses fixed masks and negatives. Resume:\n"
        "'derf train-speech --resume DIR [--max-steps N]' replays DIR's options and continues exactly.\n"
        "See docs/speech.md.", opts};
    char *stored = NULL;
    int rc = cli_parse_resumable(&cmd, argc, argv, reset_args, &a, &run, "runs/speech", &stored);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = sp_finish(&a, "train-speech"))) { free(stored); return rc; }
    derf_st_meta meta = {"train_args", stored};
    CLI_SET_RUN(a.o, run, &meta);
    static derf_speech_train_result r;
    char err[DERF_ERRLEN];
    rc = derf_speech_train(&a.o, &r, err, sizeof err);
    free(stored);
    if (rc) return cli_fail("train-speech", "%s", err);
    print_result(a.norm, &r);
    if (r.diverged) return 3;
    printf("wrote %s/{model,state}.safetensors and %s/log.jsonl\n", run.out, run.out);
    return 0;
}

/* one wav2vec run for the compare driver */
static int w2v_run(void *ctx, compare_row *row, int seed, const char *dir, double *v, double *seconds, int *ok) {
    sp_args b = *(const sp_args *)ctx;
    b.norm = row->spec;
    b.seed = seed;
    if (row->lr > 0) b.o.lr = row->lr;
    int rc = sp_finish(&b, "compare");
    if (rc) return rc;
    b.o.out = dir;
    char err[DERF_ERRLEN];
    static derf_speech_train_result r;
    if (derf_speech_train(&b.o, &r, err, sizeof err)) return cli_fail("compare", "%s", err);
    print_result(row->spec, &r);
    *ok = !r.diverged;
    double col[] = {r.val.bits, r.val.contrastive_bits, r.val.acc, r.val.code_ppl, r.train_eval.frames ? r.train_eval.bits : -1,
                    r.probe_acc, r.probe_acc_random, (double)r.params};
    memcpy(v, col, sizeof col);
    *seconds = r.seconds;
    return 0;
}

int cmd_compare_speech(int argc, char **argv) {
    static sp_args a;
    static compare_row rows[MAX_NORMS];
    sp_init(&a);
    const char *norms = "layernorm,dyt,derf", *out = "runs/compare-speech", *model = "wav2vec";
    int seeds = 1;
    cli_opt opts[40];
    int n = sp_table(&a, opts);
    opts[n++] = (cli_opt){"model", CLI_STR, &model, "wav2vec here (all: " CLI_COMPARE_MODELS "; see 'derf compare --help')", 0, -1};
    opts[n++] = (cli_opt){"norms", CLI_STR, &norms, "comma-separated norm specs; SPEC@LR gives one its own learning rate", 0, -1};
    opts[n++] = (cli_opt){"seeds", CLI_INT, &seeds, "seeds per norm (seed, seed+1, ...)", 1, MAX_SEEDS};
    opts[n++] = (cli_opt){"out", CLI_STR, &out, "folder for the runs and report.md", 0, -1};
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"compare", "--model wav2vec [options]",
        "Pre-train the same wav2vec 2.0 with several norms and seeds on the speech corpus ('derf data speech') and\n"
        "compare the validation loss in bits per masked frame (the paper's Table 10 measure).",
        "Every option of 'derf train-speech' applies to all runs. Runs go to OUT/<norm>-s<seed>/, the table to\n"
        "OUT/report.md. See docs/speech.md.", opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (strcmp(model, "wav2vec") != 0) return cli_fail("compare", "--model must be " CLI_COMPARE_MODELS ", not '%s'", model);
    if ((rc = sp_finish(&a, "compare"))) return rc;
    compare_norm list[MAX_NORMS];
    int nn = compare_parse_norms("compare", norms, list);
    if (nn < 0) return 2;
    if ((rc = compare_drive("compare", &a, w2v_run, list, nn, seeds, a.seed, out, a.o.quiet, rows))) return rc;
    const derf_w2v_config *c = &a.o.model;
    derf_strbuf md = {0};
    derf_sb_printf(&md, "# derf compare --model wav2vec\n\nwav2vec 2.0 preset `%s` (conv C %d, d %d, %d layers, %d heads, ffn %d, "
                        "G %d x V %d, K %d negatives, %lld parameters) on `%s`; %d steps of %d utterances cropped to <= %d "
                        "samples, lr %g (warmup %.0f%%, linear decay), wd %g, clip %g; seeds %d..%d.\n\n",
                   a.preset, c->conv_dim, c->d, c->n_layer, c->n_head, c->ffn, c->groups, c->vars, c->n_neg,
                   (long long)rows[0].v[0][7], a.o.data, a.o.steps, a.o.batch, a.o.crop, (double)a.o.lr,
                   100.0 * a.o.warmup_frac, (double)a.o.weight_decay, (double)a.o.clip, a.seed, a.seed + seeds - 1);
    static const compare_col cols[] = {{"val loss, bits/masked frame", "%.4f", 1}, {"contrastive", "%.4f", 0},
                                       {"accuracy", "%.3f", 0}, {"code ppl", "%.1f", 0}, {"eval-mode train loss", "%.4f", 0},
                                       {"probe acc", "%.3f", 0}, {"probe acc (random net)", "%.3f", 0}};
    compare_table(&md, cols, 7, NULL, rows, nn, seeds, a.o.lr);
    derf_sb_printf(&md, "\nValidation loss: fairseq's logged loss (InfoNCE + 0.1 x diversity + 10 x feature penalty, per masked "
                        "frame, in bits) in evaluation mode (argmax codes) over the validation utterances, each centre-cropped, "
                        "with masks and negatives from one fixed seed for every norm. The probe is a softmax regression of the "
                        "speaking character (small fish / big fish / other) on the mean-pooled frozen encoder output, trained on "
                        "train-level utterances and tested on the test levels, beside the same probe on a randomly initialised "
                        "network. Per-run logs: `<norm>-s<seed>/log.jsonl`.\n");
    return compare_write_report("compare", out, &md, NULL);
}
