/* cmd_train_dna.c: `derf train-dna`: HyenaDNA / Caduceus-PS pretraining on the chr22 corpus, fine-tuning on a DNA task
 * (--task), or the k-mer logistic-regression baseline (--kmer K); the options shared with
 * `derf compare --model hyena` (dna_opts.h). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/dna_opts.h"
#include "derf/io.h"

void dna_args_init(dna_args *a) {
    memset(a, 0, sizeof *a);
    derf_dna_train_opts_default(&a->o);
    a->arch = "hyena";
    a->emb_scale = "auto";
    a->o.lr = 0;        /* per architecture: 6e-4 (HyenaDNA), 8e-3 (Caduceus, pretraining) */
    a->threads = 0;
}

int dna_opts_table(dna_args *a, cli_opt *t, int max) {
    const cli_opt opts[] = {
        {"arch", CLI_STR, &a->arch, "hyena (HyenaDNA, next-token) or caduceus (Caduceus-PS, masked LM)", 0, -1},
        {"norm", CLI_STR, &a->norm, "norm spec of every norm layer (default as upstream: layernorm for hyena, rmsnorm for "
                                    "caduceus; dyt, derf, ...: docs/norm-spec.md)", 0, -1},
        {"preset", CLI_STR, &a->preset, "hyena: tiny (hyenadna-tiny-1k, d128 L2; default), small (d128 L4), test (d16 L2); "
                                        "caduceus: ct (d64 L4; default), gb (d118 L4), test", 0, -1},
        {"emb-scale", CLI_STR, &a->emb_scale, "learnable scalar on the embedding, as the paper's GPT-2 shared_scale: auto (point-wise norms: init 1/(alpha*0.02), "
                                              "i.e. 100 for alpha 0.5, so alpha*x ~ N(0,1); none for layernorm/rmsnorm), off (upstream), or its init value", 0, -1},
        {"dim", CLI_INT, &a->dim, "override the preset's width d (MLP 4d)", 0, 8192},
        {"layers", CLI_INT, &a->layers, "override the preset's number of blocks", 0, 256},
        {"corpus", CLI_STR, &a->o.corpus, "pretraining corpus (.dnac from 'derf data dna')", 0, -1},
        {"ood-corpus", CLI_STR, &a->o.ood_corpus, "out-of-distribution corpus whose test windows give the OOD loss (default: "
                                                  "umaydis.dnac beside --corpus if it exists; none: off)", 0, -1},
        {"steps", CLI_INT, &a->o.steps, "pretraining optimizer steps", 1, 100000000},
        {"batch", CLI_INT, &a->o.batch, "sequences per step", 1, 65536},
        {"seq", CLI_INT, &a->o.seq, "bases per pretraining window", 2, 1 << 20},
        {"lr", CLI_FLOAT, &a->o.lr, "peak learning rate (AdamW) of pretraining (0: 6e-4 hyena, 8e-3 caduceus)", 0, 10},
        {"mlm-prob", CLI_FLOAT, &a->o.mlm_prob, "caduceus: masked-LM probability", 0.001, 1},
        {"min-lr", CLI_FLOAT, &a->o.min_lr, "final learning rate of the pretraining cosine decay", 0, 10},
        {"warmup", CLI_FLOAT, &a->o.warmup_frac, "linear warmup as a fraction of the steps (fine-tuning: 0.01)", 0, 1},
        {"wd", CLI_FLOAT, &a->o.weight_decay, "weight decay (Linear/conv weights and the head only)", 0, 10},
        {"clip", CLI_FLOAT, &a->o.clip, "clip the global gradient norm at this value (0: off)", 0, 1e6},
        {"no-rc-aug", CLI_FLAG, &a->no_rc_aug, "no reverse-complement augmentation", 0, -1},
        {"eval-every", CLI_INT, &a->o.eval_every, "pretraining steps between validations and checkpoints (0: only at the end)", 0, 100000000},
        {"eval-windows", CLI_INT, &a->o.eval_windows, "fixed windows per validation (0: every window of the val bins)", 0, 100000000},
        {"epochs", CLI_INT, &a->o.epochs, "fine-tuning epochs", 1, 100000},
        {"ft-lr", CLI_FLOAT, &a->ft_lr, "fine-tuning peak learning rate, cosine to 0.1x (0: 6e-4 hyena, 2e-3 caduceus)", 0, 10},
        {"train-limit", CLI_INT, &a->o.train_limit, "fine-tuning: use at most this many training sequences (0: all)", 0, 100000000},
        {"eval-limit", CLI_INT, &a->o.eval_limit, "fine-tuning: at most this many val and test sequences, evenly spaced (0: all)", 0, 100000000},
        {"seed", CLI_INT, &a->seed, "random seed (init, batches, augmentation)", 0, 2147483647},
        {"threads", CLI_INT, &a->threads, "OpenMP threads (0 or auto: every CPU this process may use)", 0, 1024},
        {"log-every", CLI_INT, &a->o.log_every, "steps between progress lines", 1, 1000000},
        {"diag-every", CLI_INT, &a->o.diag_every, "steps between diagnostics: norm saturation, residual stream (docs/diagnostics.md; 0: off)", 0, 100000000},
        {"quiet", CLI_FLAG, &a->o.quiet, "no progress lines", 0, -1},
    };
    int n = (int)(sizeof opts / sizeof opts[0]);
    if (n > max) n = max;
    memcpy(t, opts, sizeof opts[0] * (size_t)n);
    return n;
}

int dna_args_finish(dna_args *a, const char *cmd) {
    char err[DERF_ERRLEN];
    derf_norm_spec *ns;
    if (!strcmp(a->arch, "hyena")) {
        a->o.arch = DERF_DNA_ARCH_HYENA;
        if (derf_hyena_preset(&a->o.model, a->preset ? a->preset : "tiny", a->o.seq + 2, err, sizeof err)) return cli_fail(cmd, "%s", err);
        if (a->dim) { a->o.model.d_model = a->dim; a->o.model.d_inner = 4 * a->dim; }
        if (a->layers) a->o.model.n_layer = a->layers;
        ns = &a->o.model.norm;
    } else if (!strcmp(a->arch, "caduceus")) {
        a->o.arch = DERF_DNA_ARCH_CADUCEUS;
        if (derf_caduceus_preset(&a->o.cmodel, a->preset ? a->preset : "ct", err, sizeof err)) return cli_fail(cmd, "%s", err);
        if (a->dim) { a->o.cmodel.d_model = a->dim; a->o.cmodel.dt_rank = (a->dim + 15) / 16; }
        if (a->layers) a->o.cmodel.n_layer = a->layers;
        ns = &a->o.cmodel.norm;
    } else {
        return cli_fail(cmd, "--arch must be hyena or caduceus, not '%s'", a->arch);
    }
    const char *norm = a->norm ? a->norm : a->o.arch ? "rmsnorm" : "layernorm";
    if (derf_norm_parse(norm, ns, err, sizeof err)) return cli_fail(cmd, "--norm: %s", err);
    float *es = a->o.arch ? &a->o.cmodel.emb_scale : &a->o.model.emb_scale;
    if (!strcmp(a->emb_scale, "auto")) *es = ns->kind == DERF_NORM_POINTWISE && ns->alpha_init > 0 ? 1.f / (ns->alpha_init * DERF_DNA_EMB_STD) : 0.f;
    else if (!strcmp(a->emb_scale, "off")) *es = 0.f;
    else {
        char *end;
        double v = strtod(a->emb_scale, &end);
        if (end == a->emb_scale || *end || !(v > 0 && v < 1e6))
            return cli_fail(cmd, "--emb-scale must be auto, off or a number in (0, 1e6), not '%s'", a->emb_scale);
        *es = (float)v;
    }
    if (a->o.arch ? derf_caduceus_check(&a->o.cmodel, err, sizeof err) : derf_hyena_check(&a->o.model, err, sizeof err))
        return cli_fail(cmd, "%s", err);
    a->o.rc_aug = !a->no_rc_aug;
    a->o.seed = (uint64_t)a->seed;
    if (a->threads > 0) omp_set_num_threads(a->threads);
    if (a->o.lr <= 0) a->o.lr = a->o.arch ? 8e-3f : 6e-4f;   /* the paper's Table 20; docs/paper.md 5.5 / 5.6 */
    if (a->ft_lr <= 0) a->ft_lr = a->o.arch ? 2e-3f : 6e-4f;
    return 0;
}

/* the options of train-dna: reset as one (cli_parse_resumable replays a run's stored options onto defaults) */
typedef struct {
    dna_args a;
    const char *task, *init;
    int kmer;
} train_dna_args;

static void reset_args(void *p) {
    train_dna_args *t = p;
    memset(t, 0, sizeof *t);
    dna_args_init(&t->a);
}

int cmd_train_dna(int argc, char **argv) {
    static train_dna_args ta;
    dna_args *a = &ta.a;
    reset_args(&ta);
    cli_run run = {NULL, NULL, 0, 0, CLI_CKPT_SECS};
    cli_opt opts[48];
    int n = dna_opts_table(a, opts, 40);
    opts[n++] = (cli_opt){"task", CLI_STR, &ta.task, "fine-tune on this task (.dnat) instead of pretraining", 0, -1};
    opts[n++] = (cli_opt){"init", CLI_STR, &ta.init, "fine-tuning: start from this pretraining run (folder or model.safetensors); "
                                                     "without it the backbone is randomly initialised", 0, -1};
    opts[n++] = (cli_opt){"kmer", CLI_INT, &ta.kmer, "with --task: the k-mer logistic-regression baseline with this k instead", 0, 8};
    n += cli_run_opts(opts + n, &run, "run folder: model.safetensors, state.safetensors, log.jsonl");
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"train-dna", "[options]",
        "HyenaDNA or Caduceus-PS (--arch caduceus) on real DNA ('derf data dna' first): pretraining on human chr22\n"
        "(HyenaDNA: next-token with reverse-complement augmentation; Caduceus-PS: masked LM), or fine-tuning on a\n"
        "classification task with mean pooling + a linear head (--task), or the k-mer logistic-regression baseline\n"
        "(--task T --kmer K).",
        "Pretraining reports the validation loss (nats and bits per base, fixed windows of the held-out bins) and the\n"
        "evaluation-mode training loss. Fine-tuning reports the test accuracy at the best validation epoch.\n"
        "Resume: 'derf train-dna --resume RUN [--max-steps N]' replays a pretraining run's options (stored in its\n"
        "state.safetensors) and continues it exactly. See docs/dna.md.",
        opts};
    char *stored = NULL;
    int rc = cli_parse_resumable(&cmd, argc, argv, reset_args, &ta, &run, NULL, &stored);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = dna_args_finish(a, "train-dna"))) { free(stored); return rc; }
    rc = 2;
    if ((ta.kmer || ta.init) && !ta.task) { cli_fail("train-dna", "--kmer and --init need --task"); goto out; }
    if ((run.resume || run.max_steps) && ta.task) { cli_fail("train-dna", "--resume and --max-steps are for pretraining runs, not --task"); goto out; }
    char err[DERF_ERRLEN];
    if (ta.kmer) {
        float va = 0, tacc = 0;
        if (derf_dna_kmer_baseline(ta.task, ta.kmer, a->o.epochs > 10 ? a->o.epochs : 10, a->o.seed, &va, &tacc, err, sizeof err)) {
            cli_fail("train-dna", "%s", err);
            goto out;
        }
        printf("%d-mer logistic regression on %s: val acc %.2f%%, test acc %.2f%%\n", ta.kmer, ta.task, 100 * va, 100 * tacc);
        rc = 0;
        goto out;
    }
    derf_st_meta meta[1] = {{"train_args", stored}};
    CLI_SET_RUN(a->o, run, meta);
    derf_dna_train_result r;
    if (ta.task) {
        a->o.task = ta.task;
        a->o.init = ta.init;
        a->o.lr = a->ft_lr;
        a->o.min_lr = 0.1f * a->ft_lr;
        a->o.warmup_frac = 0.01f;
        rc = derf_dna_finetune(&a->o, &r, err, sizeof err);
    } else {
        rc = derf_dna_pretrain(&a->o, &r, err, sizeof err);
    }
    if (rc) { rc = cli_fail("train-dna", "%s", err); goto out; }
    if (r.diverged) { fprintf(stderr, "derf train-dna: %s\n", r.diverged_msg); rc = 3; goto out; }
    if (ta.task) printf("test acc %.2f%% (best val epoch %d, val %.2f%%), eval-mode train loss %.4f\n", 100 * r.test_acc, r.best_epoch,
                        100 * r.val_acc, (double)r.train_loss_eval);
    else printf("val loss %.4f nats/base (%.4f bits), eval-mode train loss %.4f, %lld params, %.0f tok/s\n", (double)r.val_loss,
                r.val_loss / 0.6931471805599453, (double)r.train_loss_eval, r.params, r.tokens_per_s);
    if (!ta.task && r.ood_loss >= 0) printf("out-of-distribution loss %.4f nats/base (%.4f bits)\n", (double)r.ood_loss,
                                            r.ood_loss / 0.6931471805599453);
    rc = 0;
out:
    free(stored);
    return rc;
}
