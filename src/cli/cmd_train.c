/* cmd_train.c: `derf train`: trains one ViT on Fashion-MNIST (or MNIST, or IDX files in a folder)
 * with any --norm spec, writing checkpoints and a JSONL log into --out; `--resume DIR` continues a
 * run exactly (the original options are stored in its state file). Also holds the option table
 * that `derf compare` reuses. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/train_opts.h"
#include "derf/io.h"
#include "derf/train.h"

void train_args_init(train_args *a) {
    memset(a, 0, sizeof *a);
    derf_cls_opts_default(&a->o);
    a->norm = "derf";
    a->preset = "tiny";
    a->alpha = -1.f;
    a->translate = a->o.aug.translate;
    a->hflip = a->o.aug.hflip;
    a->no_eval_train = 0;
    a->threads = 0;
}

/* The options every ViT training command shares. */
int train_opts_table(train_args *a, cli_opt *t, int max) {
    const cli_opt opts[] = {
        {"norm", CLI_STR, &a->norm, "norm spec for every norm layer (layernorm, dyt, derf, ...; docs/norm-spec.md)", 0, -1},
        {"alpha", CLI_FLOAT, &a->alpha, "alpha init of point-wise norms (default: the spec's, 0.5)", -100, 100},
        {"preset", CLI_STR, &a->preset, "model size: test, tiny, small, base-mini", 0, -1},
        {"dim", CLI_INT, &a->dim, "override the preset's width", 0, 4096},
        {"depth", CLI_INT, &a->depth, "override the preset's number of blocks", 0, 64},
        {"heads", CLI_INT, &a->heads, "override the preset's attention heads", 0, 64},
        {"patch", CLI_INT, &a->patch, "override the preset's patch side", 0, 28},
        {"pool", CLI_STR, &a->pool, "avg (global average + fc_norm, the paper's) or cls", 0, -1},
        {"data", CLI_STR, &a->o.data, "fashion-mnist, mnist, or a folder with IDX files", 0, -1},
        {"epochs", CLI_INT, &a->o.epochs, "training epochs", 1, 100000},
        {"batch", CLI_INT, &a->o.batch, "batch size", 1, 65536},
        {"lr", CLI_FLOAT, &a->o.lr, "peak learning rate (AdamW)", 0, 10},
        {"min-lr", CLI_FLOAT, &a->o.min_lr, "final learning rate of the cosine decay", 0, 10},
        {"warmup", CLI_FLOAT, &a->o.warmup_epochs, "linear warmup, in epochs", 0, 1000},
        {"wd", CLI_FLOAT, &a->o.weight_decay, "weight decay (not on 1-D tensors, pos_embed, cls_token)", 0, 10},
        {"beta2", CLI_FLOAT, &a->o.beta2, "AdamW beta2", 0, 0.99999},
        {"clip", CLI_FLOAT, &a->o.clip, "clip the global gradient norm at this value (0: off)", 0, 1e6},
        {"smoothing", CLI_FLOAT, &a->o.aug.smoothing, "label smoothing", 0, 0.99},
        {"mixup", CLI_FLOAT, &a->o.aug.mixup_alpha, "mixup Beta alpha (0: off; paper 0.8)", 0, 100},
        {"cutmix", CLI_FLOAT, &a->o.aug.cutmix_alpha, "cutmix Beta alpha (0: off; paper 1.0)", 0, 100},
        {"mix-prob", CLI_FLOAT, &a->o.aug.mix_prob, "probability of mixing a batch", 0, 1},
        {"erase", CLI_FLOAT, &a->o.aug.erase_prob, "random erasing probability (paper 0.25)", 0, 1},
        {"translate", CLI_INT, &a->translate, "random translation, max pixels", 0, 14},
        {"hflip", CLI_INT, &a->hflip, "random horizontal flip (1/0)", 0, 1},
        {"drop-path", CLI_FLOAT, &a->o.model.drop_path, "stochastic depth rate of the last block", 0, 0.95},
        {"ema", CLI_FLOAT, &a->o.ema, "EMA decay of the weights (0: off)", 0, 0.999999},
        {"seed", CLI_INT, &a->seed, "random seed", 0, 2147483647},
        {"threads", CLI_INT, &a->threads, "OpenMP threads (0 or auto: every CPU this process may use)", 0, 1024},
        {"train-limit", CLI_INT, &a->o.train_limit, "use only the first N training images (0: all)", 0, 100000000},
        {"test-limit", CLI_INT, &a->o.test_limit, "evaluate on the first N test images (0: all)", 0, 100000000},
        {"no-eval-train", CLI_FLAG, &a->no_eval_train, "skip the evaluation-mode training loss", 0, -1},
        {"log-every", CLI_INT, &a->o.log_every, "steps between progress lines", 1, 1000000},
        {"diag-every", CLI_INT, &a->o.diag_every, "steps between diagnostics: norm saturation, residual stream (docs/diagnostics.md; 0: off)", 0, 100000000},
        {"quiet", CLI_FLAG, &a->o.quiet, "no progress lines", 0, -1},
    };
    return cli_copy_opts(t, max, opts, (int)(sizeof opts / sizeof opts[0]));
}

int train_args_finish(train_args *a, const char *cmd) {
    char err[DERF_ERRLEN];
    derf_norm_spec spec;
    float dp = a->o.model.drop_path; /* --drop-path, before the preset resets it */
    if (derf_norm_parse(a->norm, &spec, err, sizeof err)) return cli_fail(cmd, "%s", err);
    if (derf_vit_preset(&a->o.model, a->preset, err, sizeof err)) return cli_fail(cmd, "%s", err);
    if (a->alpha != -1.f) spec.alpha_init = a->alpha;
    a->o.model.norm = spec;
    a->o.model.drop_path = dp;
    if (a->dim) a->o.model.dim = a->dim;
    if (a->depth) a->o.model.depth = a->depth;
    if (a->heads) a->o.model.heads = a->heads;
    if (a->patch) a->o.model.patch = a->patch;
    if (a->pool) {
        if (!strcmp(a->pool, "avg")) a->o.model.pool = DERF_POOL_AVG;
        else if (!strcmp(a->pool, "cls")) a->o.model.pool = DERF_POOL_CLS;
        else return cli_fail(cmd, "--pool must be avg or cls, not '%s'", a->pool);
    }
    if (derf_vit_check(&a->o.model, err, sizeof err)) return cli_fail(cmd, "%s", err);
    a->o.aug.translate = a->translate;
    a->o.aug.hflip = a->hflip;
    a->o.seed = (uint64_t)a->seed;
    a->o.eval_train_loss = !a->no_eval_train;
    if (a->threads > 0) omp_set_num_threads(a->threads);
    return 0;
}

void print_result(const char *label, const derf_cls_result *r) {
    if (r->diverged) {
        printf("%s: %s\n", label, r->diverged_msg);
        return;
    }
    printf("%s: test acc %.2f%%", label, 100 * r->test_acc);
    if (r->test_acc_ema >= 0) printf(" (EMA %.2f%%)", 100 * r->test_acc_ema);
    printf(", test loss %.4f", r->test_loss);
    if (r->train_loss_eval >= 0) printf(", eval-mode train loss %.4f", r->train_loss_eval);
    if (r->train_loss_eval_ema >= 0) printf(" (EMA %.4f)", r->train_loss_eval_ema);
    printf(", %d steps in %.0f s (%.0f img/s)\n", r->steps, r->seconds, r->images_per_s);
    printf("  per-class acc:");
    for (int c = 0; c < DERF_DATASET_CLASSES; c++) printf(" %.1f", 100 * r->class_acc[c]);
    printf("\n");
}

static void reset_args(void *a) { train_args_init((train_args *)a); }

int cmd_train(int argc, char **argv) {
    static train_args a;
    train_args_init(&a);
    cli_run run = {"runs/train", NULL, 0, 0, CLI_CKPT_SECS};
    cli_opt opts[64];
    int n = train_opts_table(&a, opts, 60);
    opts[n++] = (cli_opt){"device", CLI_STR, &a.o.device,
                          "cpu, cuda (GPU, bf16 activations) or cuda:fp32; needs make CUDA=1 (docs/cuda.md)", 0, -1};
    n += cli_run_opts(opts + n, &run, "run folder: model.safetensors, model_ema.safetensors, state.safetensors, log.jsonl");
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"train", "[options]",
        "Train a ViT classifier (default: the tiny preset on Fashion-MNIST with derf) and report test accuracy,\n"
        "per-class accuracy and the evaluation-mode training loss (paper Appendix E).",
        "Resume: 'derf train --resume DIR [--max-steps N]' replays DIR's original options (stored in its\n"
        "state.safetensors), then applies the options given now, and continues loss for loss.\n"
        "Several processes: 'mpirun -np N derf train ...' trains data-parallel (--batch is the global batch, a\n"
        "multiple of N; rank 0 writes the run folder); see docs/distributed.md.", opts};
    char *stored = NULL;
    int rc = cli_parse_resumable(&cmd, argc, argv, reset_args, &a, &run, "runs/train", &stored);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = train_args_finish(&a, "train"))) { free(stored); return rc; }
    derf_st_meta meta = {"train_args", stored};
    CLI_SET_RUN(a.o, run, &meta);
    derf_cls_result r;
    char err[DERF_ERRLEN];
    if (derf_cls_train(&a.o, &r, err, sizeof err)) { free(stored); return cli_fail("train", "%s", err); }
    free(stored);
    print_result(a.norm, &r);
    if (r.diverged) return 3;
    printf("wrote %s/{model,model_ema,state}.safetensors and %s/log.jsonl\n", run.out, run.out);
    return 0;
}
