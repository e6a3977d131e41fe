/* cmd_data.c: `derf data text` (`derf data speech` is in cmd_data_speech.c, `derf data dna` in cmd_data_dna.c): builds the GPT-2 token shards of the English text corpus
 * (runs/data/text/train.bin and val.bin) from the sources `make deps` installs; `--verify` then
 * re-reads the shards and checks every document's tokens against the npm gpt-3-encoder JS encoder
 * (tools/gpt2_tokenize_ref.js, run with node). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "derf/io.h"
#include "derf/textdata.h"
#include "derf/tokenizer.h"

#define BATCH 64

typedef struct {
    const char *ref;
    char dir[64];
    derf_tokenizer *js, *gpt2;
    size_t docs, same_js, same_gpt2, shard_ok;
} verifier;

/* Runs node on files [0, n) of the batch and compares each line with our ids. */
static int verify_batch(verifier *v, derf_text_docs *docs, size_t d0, size_t n, const derf_shard *sh, size_t *off,
                        char *err, size_t errlen) {
    char *cmd = malloc(256 + strlen(v->ref) + n * 96);
    size_t k = (size_t)sprintf(cmd, "node '%s'", v->ref);
    for (size_t i = 0; i < n; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%zu.txt", v->dir, i);
        if (derf_io_write_file(path, docs->d[d0 + i].text, docs->d[d0 + i].len, err, errlen)) { free(cmd); return -1; }
        k += (size_t)sprintf(cmd + k, " %s", path);
    }
    FILE *f = popen(cmd, "r");
    free(cmd);
    if (!f) { derf_io_errf(err, errlen, "cannot run node (is nodejs installed? 'make deps')"); return -1; }
    char *line = NULL;
    size_t cap = 0;
    derf_tok_ids a = {0}, b = {0};
    int rc = 0;
    size_t i = 0;
    for (; i < n && getline(&line, &cap, f) >= 0; i++) {
        const derf_text_doc *doc = &docs->d[d0 + i];
        a.n = b.n = 0;
        if (derf_tok_encode(v->js, doc->text, doc->len, &a, err, errlen) ||
            derf_tok_encode(v->gpt2, doc->text, doc->len, &b, err, errlen)) { rc = -1; break; }
        size_t m = 0, first_diff = (size_t)-1;
        for (char *p = line, *e;; p = e) {
            long id = strtol(p, &e, 10);
            if (e == p) break;
            if (first_diff == (size_t)-1 && (m >= a.n || a.ids[m] != id)) first_diff = m;
            m++;
        }
        if (m != a.n && first_diff == (size_t)-1) first_diff = m < a.n ? m : a.n;
        v->docs++;
        if (first_diff == (size_t)-1) v->same_js++;
        else fprintf(stderr, "verify: %s: differs from the JS encoder at token %zu (%zu vs %zu tokens)\n", doc->name,
                     first_diff, a.n, m);
        if (b.n == a.n && !memcmp(a.ids, b.ids, a.n * sizeof *a.ids)) v->same_gpt2++;
        /* the shard holds <|endoftext|> + the GPT-2-flavour ids of each document, in order */
        int ok = *off + 1 + b.n <= sh->n && sh->tokens[*off] == DERF_GPT2_EOT;
        for (size_t j = 0; ok && j < b.n; j++) ok = sh->tokens[*off + 1 + j] == (uint16_t)b.ids[j];
        if (ok) v->shard_ok++;
        else fprintf(stderr, "verify: %s: the shard does not hold this document's tokens\n", doc->name);
        *off += 1 + b.n;
    }
    int st = pclose(f);
    free(line);
    free(a.ids);
    free(b.ids);
    if (!rc && (i < n || st != 0)) {
        derf_io_errf(err, errlen, "node %s failed (exit status %d) after %zu of %zu files; is gpt-3-encoder installed? "
                     "('make deps')", v->ref, st, i, n);
        rc = -1;
    }
    for (size_t j = 0; j < n; j++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%zu.txt", v->dir, j);
        unlink(path);
    }
    return rc;
}

static int verify(const derf_text_opts *o, const char *ref, const derf_text_stat *stats) {
    char err[DERF_ERRLEN], path[4096];
    const char *out = o->out ? o->out : "runs/data/text";
    if (strchr(ref, '\'')) return cli_fail("data", "--ref path must not contain a quote");
    derf_shard sh[2];
    size_t want[2] = {0, 0};
    for (int s = 0; s < derf_text_nsources; s++) want[stats[s].val] += stats[s].tokens;
    for (int v = 0; v < 2; v++) {
        snprintf(path, sizeof path, "%s/%s.bin", out, v ? "val" : "train");
        if (derf_shard_read(path, &sh[v], err, sizeof err)) {
            if (v) derf_shard_free(&sh[0]);
            return cli_fail("data", "%s", err);
        }
        if (sh[v].n != want[v]) {
            derf_shard_free(&sh[0]);
            if (v) derf_shard_free(&sh[1]);
            return cli_fail("data", "%s holds %zu tokens, the build counted %zu", path, sh[v].n, want[v]);
        }
    }
    verifier V = {.ref = ref};
    snprintf(V.dir, sizeof V.dir, "/tmp/derf_verify.XXXXXX");
    int rc = 0;
    if (!mkdtemp(V.dir)) rc = cli_fail("data", "cannot create a temporary folder in /tmp");
    if (!rc && (!(V.js = derf_tok_load_dir(o->gpt2, DERF_TOK_JS, err, sizeof err)) ||
                !(V.gpt2 = derf_tok_load_dir(o->gpt2, DERF_TOK_GPT2, err, sizeof err))))
        rc = cli_fail("data", "%s", err);
    size_t off[2] = {0, 0};
    for (int s = 0; s < derf_text_nsources && !rc; s++) {
        const derf_text_source *S = &derf_text_sources[s];
        derf_text_docs docs = {0};
        size_t d0 = V.docs, j0 = V.same_js, g0 = V.same_gpt2, k0 = V.shard_ok;
        if (S->load(o->src ? o->src : DERF_TEXT_SRC, &docs, err, sizeof err)) rc = cli_fail("data", "%s", err);
        for (size_t d = 0; d < docs.n && !rc; d += BATCH)
            if (verify_batch(&V, &docs, d, docs.n - d < BATCH ? docs.n - d : BATCH, &sh[S->val], &off[S->val], err,
                             sizeof err))
                rc = cli_fail("data", "%s", err);
        derf_text_docs_free(&docs);
        if (!rc)
            printf("verify: %-10s %zu/%zu docs identical to the JS encoder; GPT-2 flavour equal on %zu; in the shard: %zu\n",
                   S->name, V.same_js - j0, V.docs - d0, V.same_gpt2 - g0, V.shard_ok - k0);
    }
    for (int v = 0; v < 2 && !rc; v++)
        if (off[v] != sh[v].n) rc = cli_fail("data", "%s.bin: %zu tokens not accounted for by the documents",
                                             v ? "val" : "train", sh[v].n - off[v]);
    derf_tok_free(V.js);
    derf_tok_free(V.gpt2);
    derf_shard_free(&sh[0]);
    derf_shard_free(&sh[1]);
    rmdir(V.dir);
    if (rc) return rc;
    if (V.same_js != V.docs || V.shard_ok != V.docs) {
        fprintf(stderr, "derf data: verify: %zu of %zu documents differ from the JS encoder, %zu not in the shards\n",
                V.docs - V.same_js, V.docs, V.docs - V.shard_ok);
        return 1;
    }
    printf("verify: all %zu documents identical to the JS encoder; shards valid\n", V.docs);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "speech")) return cmd_data_speech(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "dna")) return cmd_data_dna(argc - 1, argv + 1);
    derf_text_opts o = {0};
    const char *ref = "tools/gpt2_tokenize_ref.js";
    int do_verify = 0;
    const cli_opt opts[] = {
        {"src", CLI_STR, &o.src, "folder with the sources (sotu/ austen/ brown/ kjv/ moby-dick/); default " DERF_TEXT_SRC, 0, -1},
        {"out", CLI_STR, &o.out, "output folder for train.bin and val.bin (default runs/data/text)", 0, -1},
        {"gpt2", CLI_STR, &o.gpt2, "folder with encoder.json and vocab.bpe (default $DERF_GPT2_DIR or " DERF_GPT2_DIR ")", 0, -1},
        {"verify", CLI_FLAG, &do_verify, "re-read the shards and check every document against the JS encoder (node)", 0, -1},
        {"ref", CLI_STR, &ref, "the JS reference script for --verify", 0, -1},
        {"quiet", CLI_FLAG, &o.quiet, "no progress lines", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"data", "text|speech|dna [options]",
        "Build datasets. 'derf data speech': the 16 kHz speech corpus; 'derf data dna': the DNA corpus and tasks\n"
        "(see 'derf data speech --help', 'derf data dna --help'). 'derf data text': GPT-2 token shards of English prose:\n"
        "train = State of the Union + Jane Austen + Brown + King James Bible, val = Moby Dick.",
        "Shards are llm.c's format: 256 int32 header (magic 20240520, version 1, token count, vocab size), then\n"
        "uint16 tokens; every document starts with <|endoftext|>. Sources come from 'make deps'. See docs/text-data.md.",
        opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos != 1 || strcmp(pos[0], "text"))
        return cli_fail("data", "expected the dataset name 'text', 'speech' or 'dna' (derf data text|speech|dna [options]); see 'derf data --help'");
    derf_text_stat st[16];
    char err[DERF_ERRLEN];
    if (derf_text_build(&o, st, err, sizeof err)) return cli_fail("data", "%s", err);
    size_t tot[2][3] = {{0}};
    printf("%-10s %-5s %6s %12s %10s\n", "source", "split", "docs", "bytes", "tokens");
    for (int s = 0; s < derf_text_nsources; s++) {
        printf("%-10s %-5s %6zu %12zu %10zu\n", st[s].name, st[s].val ? "val" : "train", st[s].docs, st[s].bytes, st[s].tokens);
        tot[st[s].val][0] += st[s].docs;
        tot[st[s].val][1] += st[s].bytes;
        tot[st[s].val][2] += st[s].tokens;
    }
    for (int v = 0; v < 2; v++)
        printf("%-10s %-5s %6zu %12zu %10zu\n", "total", v ? "val" : "train", tot[v][0], tot[v][1], tot[v][2]);
    const char *out = o.out ? o.out : "runs/data/text";
    printf("wrote %s/train.bin and %s/val.bin\n", out, out);
    return do_verify ? verify(&o, ref, st) : 0;
}
