/* cmd_lm.c: `derf train-lm`: trains one GPT-2 language model on the token shards of `derf data text`
 * (or any derf shards) with any --norm spec and the paper's recipe (AdamW 0.9/0.95, weight decay 0.1
 * on 2-D tensors, warmup + cosine, clipping 1.0, shared_scale and three alpha inits for point-wise
 * norms), writing checkpoints and a JSONL log into --out; `--resume DIR` continues a run exactly.
 * Also holds the option table that `derf compare --model gpt2` reuses. See docs/gpt2.md. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/lm_opts.h"
#include "derf/io.h"
#include "derf/safetensors.h"

void lm_args_init(lm_args *a) {
    memset(a, 0, sizeof *a);
    derf_lm_opts_default(&a->o);
    a->norm = "derf";
    a->preset = "tiny";
    a->shared_scale = "auto";
    a->text = "gpt2";
    a->bias = "on";
    a->logit_bias = "off";
    a->attn_alpha = a->ffn_alpha = a->final_alpha = 1.0f; /* the Derf GPT-2 patch's defaults */
}

int lm_opts_table(lm_args *a, cli_opt *t, int max) {
    const cli_opt opts[] = {
        {"norm", CLI_STR, &a->norm, "norm spec of ln_1, ln_2 and ln_f (layernorm, dyt, derf, ...; docs/norm-spec.md)", 0, -1},
        {"preset", CLI_STR, &a->preset, "model size: test, mini, tiny, small, 124m (docs/gpt2.md)", 0, -1},
        {"layers", CLI_INT, &a->layers, "override the preset's number of blocks", 0, 1024},
        {"dim", CLI_INT, &a->dim, "override the preset's width", 0, 65536},
        {"heads", CLI_INT, &a->heads, "override the preset's attention heads", 0, 1024},
        {"vocab", CLI_INT, &a->vocab, "vocabulary rows (0: the shards' vocabulary rounded up to a multiple of 64)", 0, 16777216},
        {"attn-alpha", CLI_FLOAT, &a->attn_alpha, "alpha init of the ln_1 point-wise norms (0: the spec's)", 0, 100},
        {"ffn-alpha", CLI_FLOAT, &a->ffn_alpha, "alpha init of the ln_2 point-wise norms (0: the spec's)", 0, 100},
        {"final-alpha", CLI_FLOAT, &a->final_alpha, "alpha init of the ln_f point-wise norm (0: the spec's)", 0, 100},
        {"shared-scale", CLI_STR, &a->shared_scale, "learnable embedding scale, init sqrt(C): auto (on for point-wise norms), on, off", 0, -1},
        {"text", CLI_STR, &a->text, "gpt2: the shards' GPT-2 tokens; bytes: the same text as raw UTF-8 bytes (vocabulary 256)", 0, -1},
        {"gpt2", CLI_STR, &a->o.gpt2, "with --text bytes: folder of the GPT-2 tokenizer that decodes the shards", 0, -1},
        {"diag-every", CLI_INT, &a->o.diag_every, "steps between diagnostics: norm saturation, residual stream, unigram gap (docs/diagnostics.md; 0: off)", 0, 100000000},
        {"bias", CLI_STR, &a->bias, "biases in the Linear layers: on (HF GPT-2, the default) or off (nanoGPT's bias=False)", 0, -1},
        {"shared-scale-init", CLI_FLOAT, &a->shared_scale_init, "init of shared_scale (0: sqrt(width), the recipe's)", 0, 1e6},
        {"logit-bias", CLI_STR, &a->logit_bias, "a learnable bias on the logits (derf's, not GPT-2's): off, zero (init 0) or unigram (init: the training text's unigram log-probabilities)", 0, -1},
        {"data", CLI_STR, &a->o.data, "folder with train.bin and val.bin token shards ('derf data text')", 0, -1},
        {"steps", CLI_INT, &a->o.steps, "optimizer steps of the schedule", 1, 100000000},
        {"batch", CLI_INT, &a->o.batch, "sequences per micro-batch", 1, 65536},
        {"seq", CLI_INT, &a->o.seq, "tokens per sequence (0: the model's context)", 0, 65536},
        {"accum", CLI_INT, &a->o.accum, "micro-batches per step (gradient accumulation)", 1, 65536},
        {"lr", CLI_FLOAT, &a->o.lr, "peak learning rate (AdamW)", 0, 10},
        {"min-lr", CLI_FLOAT, &a->o.min_lr, "final learning rate of the cosine decay", 0, 10},
        {"warmup", CLI_INT, &a->o.warmup, "linear warmup steps", 0, 100000000},
        {"wd", CLI_FLOAT, &a->o.weight_decay, "weight decay (2-D tensors only)", 0, 10},
        {"beta2", CLI_FLOAT, &a->o.beta2, "AdamW beta2", 0, 0.99999},
        {"clip", CLI_FLOAT, &a->o.clip, "clip the global gradient norm at this value (0: off)", 0, 1e6},
        {"eval-every", CLI_INT, &a->o.eval_every, "steps between validations and checkpoints (0: only at the end)", 0, 100000000},
        {"eval-windows", CLI_INT, &a->o.eval_windows, "fixed windows of --seq tokens per validation", 1, 1000000},
        {"no-eval-train", CLI_FLAG, &a->no_eval_train, "skip the evaluation-mode training loss at the end", 0, -1},
        {"seed", CLI_INT, &a->seed, "random seed (init and batches)", 0, 2147483647},
        {"threads", CLI_INT, &a->threads, "OpenMP threads (0 or auto: every CPU this process may use)", 0, 1024},
        {"device", CLI_STR, &a->o.device, "cpu, or cuda (a GPU; needs a build with make CUDA=1; docs/cuda.md)", 0, -1},
        {"log-every", CLI_INT, &a->o.log_every, "steps between progress lines", 1, 1000000},
        {"quiet", CLI_FLAG, &a->o.quiet, "no progress lines", 0, -1},
    };
    return cli_copy_opts(t, max, opts, (int)(sizeof opts / sizeof opts[0]));
}

int lm_args_finish(lm_args *a, const char *cmd) {
    char err[DERF_ERRLEN];
    derf_norm_spec spec;
    if (derf_norm_parse(a->norm, &spec, err, sizeof err)) return cli_fail(cmd, "%s", err);
    if (derf_gpt2_preset(&a->o.model, a->preset, err, sizeof err)) return cli_fail(cmd, "%s", err);
    derf_gpt2_config *c = &a->o.model;
    c->norm = spec;
    c->vocab = a->vocab; /* 0: from the shards */
    if (a->layers) c->n_layer = a->layers;
    if (a->dim) c->n_embd = a->dim;
    if (a->heads) c->n_head = a->heads;
    c->attn_alpha = a->attn_alpha;
    c->ffn_alpha = a->ffn_alpha;
    c->final_alpha = a->final_alpha;
    c->shared_scale_init = a->shared_scale_init;
    if (!strcmp(a->shared_scale, "auto")) c->shared_scale = -1;
    else if (!strcmp(a->shared_scale, "on")) c->shared_scale = 1;
    else if (!strcmp(a->shared_scale, "off")) c->shared_scale = 0;
    else return cli_fail(cmd, "--shared-scale must be auto, on or off, not '%s'", a->shared_scale);
    if (!strcmp(a->bias, "on") || !strcmp(a->bias, "off")) c->bias = !strcmp(a->bias, "on");
    else return cli_fail(cmd, "--bias must be on or off, not '%s'", a->bias);
    if (!strcmp(a->logit_bias, "off")) c->logit_bias = 0;
    else if (!strcmp(a->logit_bias, "zero") || !strcmp(a->logit_bias, "unigram")) {
        c->logit_bias = 1;
        a->o.logit_bias_unigram = !strcmp(a->logit_bias, "unigram");
    } else return cli_fail(cmd, "--logit-bias must be off, zero or unigram, not '%s'", a->logit_bias);
    if (!strcmp(a->text, "bytes")) a->o.bytes = 1;
    else if (strcmp(a->text, "gpt2") != 0) return cli_fail(cmd, "--text must be gpt2 or bytes, not '%s'", a->text);
    derf_gpt2_config chk = *c;
    if (!chk.vocab) chk.vocab = 64;
    if (derf_gpt2_check(&chk, err, sizeof err)) return cli_fail(cmd, "%s", err);
    if (a->o.seq > c->block_size)
        return cli_fail(cmd, "--seq %d is longer than the preset's context of %d tokens", a->o.seq, c->block_size);
    if (strcmp(a->o.device, "cpu") != 0 && strcmp(a->o.device, "cuda") != 0)
        return cli_fail(cmd, "--device must be cpu or cuda, not '%s'", a->o.device);
    a->o.seed = (uint64_t)a->seed;
    a->o.eval_train_loss = !a->no_eval_train;
    if (a->threads > 0) omp_set_num_threads(a->threads);
    return 0;
}

void lm_print_result(const char *label, const derf_lm_result *r) {
    if (r->diverged) {
        printf("%s: %s\n", label, r->diverged_msg);
        return;
    }
    printf("%s: val loss %.4f", label, (double)r->val_loss);
    if (r->train_loss_eval >= 0) printf(", eval-mode train loss %.4f", (double)r->train_loss_eval);
    printf(", %d steps (%lld tokens) in %.0f s, %.0f tokens/s\n", r->steps, r->tokens, r->seconds, r->tokens_per_s);
}

static void reset_args(void *a) { lm_args_init((lm_args *)a); }

int cmd_train_lm(int argc, char **argv) {
    static lm_args a;
    lm_args_init(&a);
    cli_run run = {"runs/lm", NULL, 0, 0, CLI_CKPT_SECS};
    cli_opt opts[64];
    int n = lm_opts_table(&a, opts, 60);
    n += cli_run_opts(opts + n, &run, "run folder: model.safetensors, state.safetensors, log.jsonl");
    opts[n] = (cli_opt){0};
    const cli_cmd cmd = {"train-lm", "[options]",
        "Train a GPT-2 language model (default: the tiny preset, 6 layers, on runs/data/text with derf) with the\n"
        "paper's recipe, and report the validation loss and the evaluation-mode training loss.",
        "Data: token shards from 'derf data text' (GPT-2 BPE; the model's vocabulary becomes 50304; with --text\n"
        "bytes the same text as bytes, vocabulary 256). Each step\n"
        "trains on accum x batch random windows of seq+1 tokens. Checkpoints are written at every validation;\n"
        "a NaN/inf loss stops the run and keeps the last good checkpoint. Sample with 'derf sample OUT'.\n"
        "Resume: 'derf train-lm --resume DIR [--max-steps N]' replays DIR's original options (stored in its\n"
        "state.safetensors), then applies the options given now, and continues loss for loss.\n"
        "Several processes: 'mpirun -np N derf train-lm ...' trains data-parallel (--batch is the global batch\n"
        "of each micro-batch, a multiple of N; rank 0 writes the run folder); see docs/distributed.md.", opts};
    char *stored = NULL;
    int rc = cli_parse_resumable(&cmd, argc, argv, reset_args, &a, &run, "runs/lm", &stored);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = lm_args_finish(&a, "train-lm"))) { free(stored); return rc; }
    derf_st_meta meta = {"train_args", stored};
    CLI_SET_RUN(a.o, run, &meta);
    static derf_lm_result r;
    char err[DERF_ERRLEN];
    rc = derf_lm_train(&a.o, &r, err, sizeof err);
    free(stored);
    if (rc) return cli_fail("train-lm", "%s", err);
    lm_print_result(a.norm, &r);
    if (r.diverged) return 3;
    printf("wrote %s/{model,state}.safetensors and %s/log.jsonl\n", run.out, run.out);
    return 0;
}
