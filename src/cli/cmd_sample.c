/* cmd_sample.c: `derf sample CHECKPOINT`: loads a GPT-2 checkpoint of `derf train-lm` or a folded one of
 * `derf export --fold` (its config comes from the file's metadata) on the inference path (src/infer),
 * encodes the prompt with the GPT-2 tokenizer, samples a continuation (temperature, top-k, top-p, seed;
 * with the KV cache: each new token costs O(T); the same tokens as recomputing the whole context) and
 * prints prompt + continuation. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli/cli.h"
#include "derf/infer.h"
#include "derf/io.h"
#include "derf/lm.h"
#include "derf/tokenizer.h"

int cmd_sample(int argc, char **argv) {
    const char *prompt = "", *gpt2 = NULL;
    float temperature = 0.8f, top_p = 1.0f;
    int top_k = 200, seed = 0, length = 200, threads = 0;
    const cli_opt opts[] = {
        {"prompt", CLI_STR, &prompt, "text to continue (it follows an <|endoftext|>, as a document start does)", 0, -1},
        {"temperature", CLI_FLOAT, &temperature, "softmax temperature (0: greedy)", 0, 100},
        {"top-k", CLI_INT, &top_k, "sample among the k most likely tokens (0: all; 1: greedy)", 0, 16777216},
        {"top-p", CLI_FLOAT, &top_p, "nucleus sampling: the smallest set of tokens with this probability (1: off)", 1e-6, 1},
        {"seed", CLI_INT, &seed, "random seed", 0, 2147483647},
        {"length", CLI_INT, &length, "tokens to generate", 0, 1000000},
        {"gpt2", CLI_STR, &gpt2, "folder with encoder.json and vocab.bpe (default $DERF_GPT2_DIR or " DERF_GPT2_DIR ")", 0, -1},
        {"threads", CLI_INT, &threads, "OpenMP threads (0: all cores)", 0, 1024},
        {0},
    };
    const cli_cmd cmd = {"sample", "CHECKPOINT [options]",
        "Generate text with a GPT-2 checkpoint of 'derf train-lm' (a model.safetensors or state.safetensors file,\n"
        "or a run folder, which means its model.safetensors) or a folded one of 'derf export --fold'.\n"
        "Runs forward-only with a KV cache (docs/inference.md).",
        "Example: derf sample runs/lm --prompt 'It is a truth universally acknowledged' --length 100 --seed 1", opts};
    char *pos[2];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos != 1) return cli_fail("sample", "give one checkpoint (a .safetensors file or a run folder); see 'derf sample --help'");
    if (threads > 0) omp_set_num_threads(threads);
    char path[1200], err[DERF_ERRLEN];
    struct stat sb;
    if (stat(pos[0], &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(path, sizeof path, "%s/model.safetensors", pos[0]);
    else snprintf(path, sizeof path, "%s", pos[0]);
    derf_infer_gpt2 *m = derf_infer_gpt2_load(path, 1, 0, err, sizeof err);
    if (!m) return cli_fail("sample", "%s", err);
    const int data_vocab = derf_infer_gpt2_data_vocab(m);
    if (data_vocab < DERF_GPT2_VOCAB) {
        derf_infer_gpt2_free(m);
        return cli_fail("sample", "%s was trained on a vocabulary of %d tokens, not GPT-2's %d: its ids cannot be "
                        "decoded as text", path, data_vocab, DERF_GPT2_VOCAB);
    }
    derf_tokenizer *tk = derf_tok_load_dir(gpt2, DERF_TOK_GPT2, err, sizeof err);
    if (!tk) { derf_infer_gpt2_free(m); return cli_fail("sample", "%s", err); }
    derf_tok_ids ids = {0};
    int32_t eot = DERF_GPT2_EOT;
    rc = 0;
    if (derf_tok_encode(tk, prompt, strlen(prompt), &ids, err, sizeof err)) {
        rc = cli_fail("sample", "%s", err);
    } else {
        int32_t *ctx = malloc(sizeof(int32_t) * (ids.n + 1)), *outv = malloc(sizeof(int32_t) * ((size_t)length + 1));
        ctx[0] = eot;
        memcpy(ctx + 1, ids.ids, sizeof(int32_t) * ids.n);
        derf_lm_sample_opts so = {temperature, top_k, top_p, (uint64_t)seed, DERF_GPT2_VOCAB};
        if (derf_infer_gpt2_sample(m, ctx, (int)ids.n + 1, length, &so, outv, err, sizeof err)) {
            rc = cli_fail("sample", "%s", err);
        } else {
            char *text;
            size_t len;
            if (derf_tok_decode(tk, outv, (size_t)length, &text, &len, err, sizeof err)) {
                rc = cli_fail("sample", "%s", err);
            } else {
                fwrite(prompt, 1, strlen(prompt), stdout);
                fwrite(text, 1, len, stdout);
                fputc('\n', stdout);
                free(text);
            }
        }
        free(ctx);
        free(outv);
    }
    free(ids.ids);
    derf_tok_free(tk);
    derf_infer_gpt2_free(m);
    return rc;
}
