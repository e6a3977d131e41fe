/* textdata.c: GPT-2 token shards (llm.c's layout, see derf/textdata.h) and the corpus builder of
 * `derf data text`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "derf/io.h"
#include "derf/textdata.h"
#include "derf/tokenizer.h"

/* ---- shards --------------------------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int derf_shard_write(const char *path, const uint16_t *tokens, size_t n, int vocab, char *err, size_t errlen) {
    if (vocab < 1 || vocab > 65536) {
        derf_io_errf(err, errlen, "%s: vocabulary size %d does not fit uint16 tokens", path, vocab);
        return -1;
    }
    if (n >= (size_t)1 << 31) {
        derf_io_errf(err, errlen, "%s: %zu tokens is more than a shard holds (2^31 - 1)", path, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (tokens[i] >= vocab) {
            derf_io_errf(err, errlen, "%s: token %u at position %zu is >= the vocabulary size %d", path, tokens[i], i, vocab);
            return -1;
        }
    unsigned char hdr[DERF_SHARD_HEADER_BYTES] = {0};
    put32(hdr, DERF_SHARD_MAGIC);
    put32(hdr + 4, DERF_SHARD_VERSION);
    put32(hdr + 8, (uint32_t)n);
    put32(hdr + 12, (uint32_t)vocab);
    derf_io_atomic a;
    if (derf_io_atomic_open(&a, path, err, errlen)) return -1;
    if (derf_io_atomic_write(&a, hdr, sizeof hdr, err, errlen)) return -1;
    unsigned char buf[1 << 16];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; i < n && k < sizeof buf; i++, k += 2) { buf[k] = (unsigned char)tokens[i]; buf[k + 1] = (unsigned char)(tokens[i] >> 8); }
        if (derf_io_atomic_write(&a, buf, k, err, errlen)) return -1;
    }
    return derf_io_atomic_commit(&a, err, errlen);
}

int derf_shard_parse(const void *data, size_t len, const char *name, derf_shard *s, char *err, size_t errlen) {
    const unsigned char *p = data;
    memset(s, 0, sizeof *s);
    if (len < DERF_SHARD_HEADER_BYTES) {
        derf_io_errf(err, errlen, "%s: %zu bytes, shorter than the %d-byte shard header (truncated, or not a token shard)",
                     name, len, DERF_SHARD_HEADER_BYTES);
        return -1;
    }
    uint32_t magic = get32(p), ver = get32(p + 4), n = get32(p + 8), vocab = get32(p + 12);
    if (magic != DERF_SHARD_MAGIC) {
        derf_io_errf(err, errlen, "%s: bad magic %u (expected %d): not a token shard", name, magic, DERF_SHARD_MAGIC);
        return -1;
    }
    if (ver != DERF_SHARD_VERSION) {
        derf_io_errf(err, errlen, "%s: shard version %u; this derf reads version %d (uint16 GPT-2 tokens)", name, ver,
                     DERF_SHARD_VERSION);
        return -1;
    }
    if (vocab == 0) vocab = 50257; /* llm.c's shards leave it 0 */
    if (vocab > 65536) {
        derf_io_errf(err, errlen, "%s: vocabulary size %u in the header does not fit uint16 tokens", name, vocab);
        return -1;
    }
    if (n > 0x7fffffffu || len - DERF_SHARD_HEADER_BYTES != (size_t)n * 2) {
        derf_io_errf(err, errlen, "%s: the header says %u tokens (%zu bytes) but the file holds %zu bytes of tokens%s", name,
                     n, (size_t)n * 2, len - DERF_SHARD_HEADER_BYTES,
                     len - DERF_SHARD_HEADER_BYTES < (size_t)n * 2 ? " (truncated)" : "");
        return -1;
    }
    uint16_t *t = malloc((size_t)(n ? n : 1) * sizeof *t);
    if (!t) { derf_io_errf(err, errlen, "%s: out of memory for %u tokens", name, n); return -1; }
    const unsigned char *q = p + DERF_SHARD_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        t[i] = (uint16_t)(q[2 * i] | q[2 * i + 1] << 8);
        if (t[i] >= vocab) {
            free(t);
            derf_io_errf(err, errlen, "%s: token %u at position %zu is >= the vocabulary size %u", name, (unsigned)q[2 * i] | (unsigned)q[2 * i + 1] << 8, i, vocab);
            return -1;
        }
    }
    s->tokens = t;
    s->n = n;
    s->vocab = (int)vocab;
    return 0;
}

int derf_shard_read(const char *path, derf_shard *s, char *err, size_t errlen) {
    void *buf;
    size_t len;
    memset(s, 0, sizeof *s);
    if (derf_io_read_file(path, DERF_SHARD_HEADER_BYTES + ((size_t)1 << 32), &buf, &len, err, errlen)) return -1;
    int rc = derf_shard_parse(buf, len, path, s, err, errlen);
    free(buf);
    return rc;
}

void derf_shard_free(derf_shard *s) {
    free(s->tokens);
    memset(s, 0, sizeof *s);
}

int derf_shard_to_bytes(const derf_shard *in, const derf_tokenizer *tok, derf_shard *out, char *err,
                        size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t n = 0, len;
    for (size_t i = 0; i < in->n; i++) {
        if (in->tokens[i] == DERF_GPT2_EOT) { n++; continue; }
        if (!derf_tok_bytes(tok, in->tokens[i], &len)) {
            derf_io_errf(err, errlen, "token %d at position %zu is not a GPT-2 token: not a GPT-2 shard",
                         (int)in->tokens[i], i);
            return -1;
        }
        n += len;
    }
    out->tokens = malloc(sizeof(uint16_t) * (n ? n : 1));
    if (!out->tokens) { derf_io_errf(err, errlen, "out of memory (%zu bytes of text)", n); return -1; }
    size_t k = 0;
    for (size_t i = 0; i < in->n; i++) {
        if (in->tokens[i] == DERF_GPT2_EOT) { out->tokens[k++] = DERF_BYTE_EOT; continue; }
        const unsigned char *b = (const unsigned char *)derf_tok_bytes(tok, in->tokens[i], &len);
        for (size_t j = 0; j < len; j++) {
            if (b[j] == DERF_BYTE_EOT) {
                derf_io_errf(err, errlen, "token %d at position %zu holds a NUL byte, the byte-level document "
                             "separator", (int)in->tokens[i], i);
                derf_shard_free(out);
                return -1;
            }
            out->tokens[k++] = b[j];
        }
    }
    out->n = n;
    out->vocab = DERF_BYTE_VOCAB;
    return 0;
}

/* ---- building ------------------------------------------------------------------------------- */

typedef struct { uint16_t *t; size_t n, cap; } tokbuf;

static void tb_push(tokbuf *b, const int32_t *ids, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 20;
        while (cap < b->n + n) cap *= 2;
        b->t = realloc(b->t, cap * sizeof *b->t);
        if (!b->t) { fprintf(stderr, "derf: out of memory\n"); abort(); }
        b->cap = cap;
    }
    for (size_t i = 0; i < n; i++) b->t[b->n++] = (uint16_t)ids[i];
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int derf_text_build(const derf_text_opts *o, derf_text_stat *stats, char *err, size_t errlen) {
    const char *src = o->src ? o->src : DERF_TEXT_SRC, *out = o->out ? o->out : "runs/data/text";
    derf_tokenizer *tok = derf_tok_load_dir(o->gpt2, DERF_TOK_GPT2, err, errlen);
    if (!tok) return -1;
    if (derf_tok_vocab_size(tok) > 65536) {
        derf_tok_free(tok);
        derf_io_errf(err, errlen, "tokenizer vocabulary too large for uint16 shards");
        return -1;
    }
    tokbuf split[2] = {{0}, {0}};
    derf_tok_ids ids = {0};
    int rc = 0;
    const int32_t eot = DERF_GPT2_EOT;
    for (int s = 0; s < derf_text_nsources && !rc; s++) {
        const derf_text_source *S = &derf_text_sources[s];
        derf_text_stat *st = &stats[s];
        memset(st, 0, sizeof *st);
        snprintf(st->name, sizeof st->name, "%s", S->name);
        st->val = S->val;
        double t0 = now_s();
        derf_text_docs docs = {0};
        if (S->load(src, &docs, err, errlen)) { rc = -1; break; }
        tokbuf *b = &split[S->val];
        for (size_t d = 0; d < docs.n; d++) {
            ids.n = 0;
            if (derf_tok_encode(tok, docs.d[d].text, docs.d[d].len, &ids, err, errlen)) { rc = -1; break; }
            tb_push(b, &eot, 1);
            tb_push(b, ids.ids, ids.n);
            st->docs++;
            st->bytes += docs.d[d].len;
            st->tokens += ids.n + 1;
        }
        derf_text_docs_free(&docs);
        if (!rc && !o->quiet)
            fprintf(stderr, "text: %-10s %5zu docs %11zu bytes -> %9zu tokens (%s, %.1f s)\n", S->name, st->docs, st->bytes,
                    st->tokens, S->val ? "val" : "train", now_s() - t0);
    }
    free(ids.ids);
    derf_tok_free(tok);
    if (!rc) rc = derf_io_mkdirs(out, err, errlen);
    for (int v = 0; v < 2 && !rc; v++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.bin", out, v ? "val" : "train");
        rc = derf_shard_write(path, split[v].t, split[v].n, DERF_GPT2_VOCAB, err, errlen);
        if (!rc && !o->quiet) fprintf(stderr, "text: wrote %s (%zu tokens)\n", path, split[v].n);
    }
    free(split[0].t);
    free(split[1].t);
    return rc;
}
