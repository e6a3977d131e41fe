/* cmd_diagnose.c: `derf diagnose CHECKPOINT`: the training diagnostics of derf/diag.h (saturation per
 * norm layer, residual-stream rms and token-independent share, the loss gap to the unigram prediction,
 * the collapse alarm) for a GPT-2 checkpoint of `derf train-lm`, on fixed windows of the real text
 * (the same windows as the validation loss). Byte-level checkpoints read the shards as bytes. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "derf/diag.h"
#include "derf/io.h"
#include "derf/lm.h"

int cmd_diagnose(int argc, char **argv) {
    derf_lm_opts o;
    derf_lm_opts_default(&o);
    const char *split = "val", *json = NULL;
    int windows = 16, seq = 0, threads = 0;
    const cli_opt opts[] = {
        {"data", CLI_STR, &o.data, "folder with train.bin and val.bin ('derf data text')", 0, -1},
        {"gpt2", CLI_STR, &o.gpt2, "folder of the GPT-2 tokenizer (byte-level checkpoints decode the shards with it)", 0, -1},
        {"split", CLI_STR, &split, "val or train: the shard whose windows are diagnosed", 0, -1},
        {"windows", CLI_INT, &windows, "evenly spaced windows of --seq tokens", 1, 100000},
        {"seq", CLI_INT, &seq, "tokens per window (0: the model's context)", 0, 65536},
        {"json", CLI_STR, &json, "also append the {\"type\":\"diag\"} record to this JSONL file", 0, -1},
        {"threads", CLI_INT, &threads, "OpenMP threads (0: all cores)", 0, 1024},
        {0},
    };
    const cli_cmd cmd = {"diagnose", "CHECKPOINT [options]",
        "Diagnose a GPT-2 checkpoint of 'derf train-lm' (a .safetensors file, or a run folder: its\n"
        "model.safetensors): per norm layer the saturated fraction of point-wise inputs, the rms and\n"
        "token-independent share of its input (the residual stream) and output, the loss gap to the\n"
        "unigram prediction of the training text, and the collapse alarm (docs/diagnostics.md).",
        "Example: derf diagnose runs/lm --windows 32", opts};
    char *pos[2];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos != 1) return cli_fail("diagnose", "give one checkpoint (a .safetensors file or a run folder); see 'derf diagnose --help'");
    const int use_val = !strcmp(split, "val");
    if (!use_val && strcmp(split, "train") != 0) return cli_fail("diagnose", "--split must be val or train, not '%s'", split);
    if (threads > 0) omp_set_num_threads(threads);
    char err[DERF_ERRLEN];
    const char *path = pos[0];
    derf_gpt2 m;
    int data_vocab;
    if (derf_lm_load(&m, path, 8, 0, &data_vocab, err, sizeof err)) return cli_fail("diagnose", "%s", err);
    const int T = seq > 0 ? seq : m.cfg.block_size;
    if (T > m.cfg.block_size) {
        derf_gpt2_free(&m);
        return cli_fail("diagnose", "--seq %d is longer than the model's context of %d", T, m.cfg.block_size);
    }
    o.bytes = data_vocab == DERF_BYTE_VOCAB;
    derf_shard tr, va;
    char tp[1100], vp[1100];
    if (derf_lm_read_data(&o, T, &tr, &va, tp, vp, sizeof tp, err, sizeof err)) {
        derf_gpt2_free(&m);
        return cli_fail("diagnose", "%s", err);
    }
    const derf_shard *s = use_val ? &va : &tr;
    for (size_t i = 0; i < s->n; i++)
        if (s->tokens[i] >= m.cfg.vocab) {
            rc = cli_fail("diagnose", "%s: token %d is outside the model's vocabulary of %d (another tokenizer?)",
                          use_val ? vp : tp, (int)s->tokens[i], m.cfg.vocab);
            goto out;
        }
    {
        /* the unigram cross-entropy of the same targets derf_lm_eval_loss scores */
        double *logp = malloc(sizeof(double) * (size_t)m.cfg.vocab), uni = 0;
        derf_diag_unigram(tr.tokens, tr.n, m.cfg.vocab, logp);
        const uint64_t span = (uint64_t)(s->n - (size_t)T - 1);
        for (int w = 0; w < windows; w++) {
            uint64_t off = windows > 1 ? span * (uint64_t)w / (uint64_t)(windows - 1) : 0;
            for (int t = 1; t <= T; t++) uni -= logp[s->tokens[off + t]];
        }
        uni /= (double)windows * T;
        free(logp);
        static derf_diag d;
        derf_diag_init(&d, 1, &m.params);
        derf_diag_begin(&d);
        float loss = derf_lm_eval_loss(&m, s, T, windows);
        derf_diag_end(&d);
        derf_diag_set_lm(&d, loss, uni, 1);
        printf("%s: %d windows x %d tokens of the %s shard%s: loss %.4f, unigram loss %.4f\n", path, windows, T,
               use_val ? "validation" : "training", o.bytes ? " (bytes)" : "", (double)loss, uni);
        FILE *jf = NULL;
        if (json && !(jf = fopen(json, "a"))) rc = cli_fail("diagnose", "cannot append to %s: is the folder writable?", json);
        derf_diag_report(&d, 0, jf, stdout, 1);
        if (jf) fclose(jf);
        derf_diag_free(&d);
    }
out:
    derf_shard_free(&tr);
    derf_shard_free(&va);
    derf_gpt2_free(&m);
    return rc;
}
