/* test_textdata.c: GPT-2 token shards (round trip, llm.c header layout, hostile files rejected with one
 * clear line), the extraction of each text source on small hand-made inputs (Brown tags, KJV verse
 * prefixes, paragraph unwrapping, an R lazy-load DB built here with zlib), the real Austen DB when
 * installed, and the whole builder on a miniature source tree. Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "derf/io.h"
#include "derf/textdata.h"
#include "derf/tokenizer.h"
#include "testutil.h"

static char tmpdir[] = "/tmp/derf_test_text.XXXXXX";

#include "tmpfiles.h"

/* ---- shards --------------------------------------------------------------------------------- */

static void test_shard_roundtrip(void **state) {
    uint64_t seed = tu_seed();
    size_t n = 100000;
    uint16_t *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = (uint16_t)(tu_uniform(&seed) * DERF_GPT2_VOCAB);
    t[0] = DERF_GPT2_EOT;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_shard_write(tp("a.bin"), t, n, DERF_GPT2_VOCAB, err, sizeof err), 0);
    void *raw;
    size_t len;
    assert_int_equal(derf_io_read_file(tp("a.bin"), 1 << 30, &raw, &len, err, sizeof err), 0);
    assert_int_equal(len, DERF_SHARD_HEADER_BYTES + 2 * n);
    const unsigned char *h = raw; /* llm.c layout, little-endian */
    assert_int_equal(h[0] | h[1] << 8 | h[2] << 16 | h[3] << 24, 20240520);
    assert_int_equal(h[4], 1);
    assert_int_equal(h[8] | h[9] << 8 | h[10] << 16, (int)n);
    assert_int_equal(h[12] | h[13] << 8, DERF_GPT2_VOCAB);
    assert_int_equal(h[DERF_SHARD_HEADER_BYTES] | h[DERF_SHARD_HEADER_BYTES + 1] << 8, DERF_GPT2_EOT);
    free(raw);
    derf_shard s;
    assert_int_equal(derf_shard_read(tp("a.bin"), &s, err, sizeof err), 0);
    assert_int_equal(s.n, n);
    assert_int_equal(s.vocab, DERF_GPT2_VOCAB);
    assert_memory_equal(s.tokens, t, n * sizeof *t);
    derf_shard_free(&s);
    /* empty shard */
    assert_int_equal(derf_shard_write(tp("e.bin"), t, 0, DERF_GPT2_VOCAB, err, sizeof err), 0);
    assert_int_equal(derf_shard_read(tp("e.bin"), &s, err, sizeof err), 0);
    assert_int_equal(s.n, 0);
    derf_shard_free(&s);
    /* the writer refuses ids >= vocab and leaves no file */
    t[7] = 1000;
    assert_int_equal(derf_shard_write(tp("b.bin"), t, 10, 1000, err, sizeof err), -1);
    one_line(err);
    assert_int_equal(access(tp("b.bin"), F_OK), -1);
    free(t);
}

static void expect_bad(const void *data, size_t len, const char *want) {
    char err[DERF_ERRLEN] = "";
    derf_shard s;
    write_raw(tp("bad.bin"), data, len);
    assert_int_equal(derf_shard_read(tp("bad.bin"), &s, err, sizeof err), -1);
    one_line(err);
    if (!strstr(err, want) || !strstr(err, "bad.bin")) {
        fprintf(stderr, "error '%s' lacks '%s' or the path\n", err, want);
        fail();
    }
    assert_null(s.tokens);
}

static void test_shard_hostile(void **state) {
    size_t n = 1000, len = DERF_SHARD_HEADER_BYTES + 2 * n;
    unsigned char *b = calloc(1, len + 8);
    uint16_t t[1000];
    for (size_t i = 0; i < n; i++) t[i] = (uint16_t)(i * 37 % DERF_GPT2_VOCAB);
    char err[DERF_ERRLEN];
    assert_int_equal(derf_shard_write(tp("good.bin"), t, n, DERF_GPT2_VOCAB, err, sizeof err), 0);
    FILE *f = fopen(tp("good.bin"), "rb");
    assert_int_equal(fread(b, 1, len, f), len);
    fclose(f);
    unsigned char *c = malloc(len + 8);
#define MUT(off, val) do { memcpy(c, b, len); c[off] = (unsigned char)(val); } while (0)
    expect_bad(b, 0, "shorter than");
    expect_bad(b, 100, "shorter than");
    expect_bad(b, len - 1, "truncated");
    expect_bad(b, len - 200, "truncated");
    memcpy(c, b, len);
    memset(c + len, 0, 8);
    expect_bad(c, len + 2, "tokens"); /* longer than the count says */
    MUT(0, 0x51);
    expect_bad(c, len, "bad magic");
    expect_bad("GPT2 not a shard at all, just some text that is long enough?", 60, "shorter than");
    MUT(4, 2);
    expect_bad(c, len, "version");
    MUT(8, 0xE9); /* count 1001 */
    expect_bad(c, len, "header says 1001 tokens");
    MUT(11, 0x80); /* count >= 2^31 */
    expect_bad(c, len, "header says");
    MUT(14, 2); /* vocab 50257 + 2^17 */
    expect_bad(c, len, "vocabulary size");
    memcpy(c, b, len); /* a token >= vocab */
    c[DERF_SHARD_HEADER_BYTES + 2 * 500] = 0x51;
    c[DERF_SHARD_HEADER_BYTES + 2 * 500 + 1] = 0xC4; /* 50257 */
    expect_bad(c, len, "position 500 is >= the vocabulary size 50257");
    MUT(12, 100); /* vocab 100 (with the high byte 0xC4 -> 0xC464 = 50276: use a clean value) */
    c[12] = 100; c[13] = 0;
    expect_bad(c, len, ">= the vocabulary size 100");
    /* llm.c's own shards leave the vocabulary 0: read as 50257 */
    memcpy(c, b, len);
    c[12] = c[13] = 0;
    write_raw(tp("llmc.bin"), c, len);
    derf_shard s;
    assert_int_equal(derf_shard_read(tp("llmc.bin"), &s, err, sizeof err), 0);
    assert_int_equal(s.vocab, DERF_GPT2_VOCAB);
    derf_shard_free(&s);
    /* missing file */
    assert_int_equal(derf_shard_read(tp("nope.bin"), &s, err, sizeof err), -1);
    one_line(err);
    free(b);
    free(c);
#undef MUT
}

/* ---- extraction ----------------------------------------------------------------------------- */

static void test_brown_strip(void **state) {
    const char *in = "\n\n\tThe/at Fulton/np-tl ``/`` 1-1/2/cd //in 4-1/2%/nn ./.\n\n\n\tNext/ap  line/nn\t''/''\r\n  \n";
    size_t n;
    char *o = derf_text_brown_strip(in, strlen(in), &n);
    const char *want = "The Fulton `` 1-1/2 / 4-1/2% .\nNext line ''\n";
    assert_string_equal(o, want);
    assert_int_equal(n, strlen(want));
    free(o);
    o = derf_text_brown_strip("", 0, &n);
    assert_int_equal(n, 0);
    free(o);
}

static void test_unwrap(void **state) {
    const char *in = "\n\nCall me\nIshmael.  \n\n\n   Some years\r\nago.\t\n  \nEnd";
    size_t n;
    char *o = derf_text_unwrap(in, strlen(in), &n);
    assert_string_equal(o, "Call me Ishmael.\n\nSome years ago.\n\nEnd\n");
    free(o);
    o = derf_text_unwrap("\n \n", 3, &n);
    assert_int_equal(n, 0);
    free(o);
}

static void test_kjv_split(void **state) {
    const char *in = "Ge1:1 In the beginning.\nGe1:2 And the earth.\nGe2:1 Thus.\nExo1:1 Now these.\n\n"
                     "1Sm1:1 Now there.\n1Sm1:2 And he had.   \n";
    derf_text_docs d = {0};
    char err[DERF_ERRLEN];
    assert_int_equal(derf_text_kjv_split(in, strlen(in), &d, err, sizeof err), 0);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.d[0].name, "Ge");
    assert_string_equal(d.d[0].text, "In the beginning. And the earth.\n\nThus.\n");
    assert_string_equal(d.d[1].name, "Exo");
    assert_string_equal(d.d[1].text, "Now these.\n");
    assert_string_equal(d.d[2].name, "1Sm");
    assert_string_equal(d.d[2].text, "Now there. And he had.\n");
    assert_int_equal(d.d[2].len, strlen(d.d[2].text));
    derf_text_docs_free(&d);
    static const char *BAD[] = {"Ge1:1 ok\nIn the beginning\n", "Ge1 x\n", "Ge:1 x\n", "1:1 x\n", "Ge1:1\n", "Ge1:x y\n"};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        assert_int_equal(derf_text_kjv_split(BAD[i], strlen(BAD[i]), &d, err, sizeof err), -1);
        one_line(err);
        derf_text_docs_free(&d);
    }
    assert_int_equal(derf_text_kjv_split("Ge1:1 ok\nIn the beginning\n", 26, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2"));
    derf_text_docs_free(&d);
}

/* An R serialization (XDR, version 3) of a character vector; NULL element = NA. */
static size_t r_serialize(unsigned char *o, const char **el, int n, int version) {
    size_t k = 0;
#define I32(v) do { uint32_t _v = (uint32_t)(v); o[k++] = (unsigned char)(_v >> 24); o[k++] = (unsigned char)(_v >> 16); \
                    o[k++] = (unsigned char)(_v >> 8); o[k++] = (unsigned char)_v; } while (0)
    o[k++] = 'X';
    o[k++] = '\n';
    I32(version);
    I32(0x040201);
    I32(0x030500);
    if (version == 3) { I32(5); memcpy(o + k, "UTF-8", 5); k += 5; }
    I32(16);
    I32(n);
    for (int i = 0; i < n; i++) {
        I32(0x00040009);
        if (!el[i]) { I32(-1); continue; }
        I32((int)strlen(el[i]));
        memcpy(o + k, el[i], strlen(el[i]));
        k += strlen(el[i]);
    }
#undef I32
    return k;
}

static size_t rdb_chunk(unsigned char *o, const unsigned char *ser, size_t n) {
    uLongf cl = compressBound(n);
    o[0] = (unsigned char)(n >> 24); o[1] = (unsigned char)(n >> 16); o[2] = (unsigned char)(n >> 8); o[3] = (unsigned char)n;
    assert_int_equal(compress2(o + 4, &cl, ser, n, 9), Z_OK);
    return 4 + cl;
}

static void test_rdb_decode(void **state) {
    const char *a[] = {"EMMA", "", "By Jane Austen", NULL, "Emma Woodhouse, handsome, clever,", "and rich."};
    const char *b[] = {"PERSUASION \xe2\x80\x94 caf\xc3\xa9"};
    unsigned char ser[1024], blob[4096];
    size_t k = 0;
    k += rdb_chunk(blob + k, ser, r_serialize(ser, a, 6, 3));
    k += rdb_chunk(blob + k, ser, r_serialize(ser, b, 1, 2));
    derf_text_docs d = {0};
    char err[DERF_ERRLEN];
    assert_int_equal(derf_text_rdb_decode(blob, k, &d, err, sizeof err), 0);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.d[0].text, "EMMA\n\nBy Jane Austen\n\nEmma Woodhouse, handsome, clever,\nand rich.");
    assert_string_equal(d.d[1].text, b[0]);
    derf_text_docs_free(&d);
    /* hostile blobs: every one an error, one line */
    unsigned char bad[4096];
    size_t klen = k;
    for (int c = 0; c < 6; c++) {
        memcpy(bad, blob, klen);
        size_t blen = klen;
        switch (c) {
        case 0: blen = klen - 5; break;              /* truncated stream */
        case 1: bad[0] = 0x7f; break;                /* absurd length */
        case 2: bad[20] ^= 0x55; break;              /* corrupt deflate data */
        case 3: bad[3] += 1; break;                  /* the length disagrees with the stream */
        case 4: blen = 3; break;                     /* not even a header */
        case 5: {                                    /* an integer vector, not strings */
            size_t sl = r_serialize(ser, a, 6, 3);
            ser[2 + 12 + 4 + 5 + 3] = 13;
            blen = rdb_chunk(bad, ser, sl);
            break;
        }
        }
        int rc = derf_text_rdb_decode(bad, blen, &d, err, sizeof err);
        if (rc != -1) fprintf(stderr, "case %d accepted\n", c);
        assert_int_equal(rc, -1);
        one_line(err);
        derf_text_docs_free(&d);
    }
    /* an element longer than the chunk */
    size_t sl = r_serialize(ser, b, 1, 3);
    ser[sl - strlen(b[0]) - 2] = 0x7f;
    k = rdb_chunk(bad, ser, sl);
    assert_int_equal(derf_text_rdb_decode(bad, k, &d, err, sizeof err), -1);
    assert_non_null(strstr(err, "element 1"));
    derf_text_docs_free(&d);
}

static void test_real_austen(void **state) {
    void *buf;
    size_t len;
    char err[DERF_ERRLEN];
    if (derf_io_read_file(DERF_TEXT_SRC "/austen/Rdata.rdb", 1 << 26, &buf, &len, err, sizeof err)) {
        fprintf(stderr, "%s (run 'make deps')\n", err);
        fail();
    }
    derf_text_docs d = {0};
    assert_int_equal(derf_text_rdb_decode(buf, len, &d, err, sizeof err), 0);
    free(buf);
    assert_int_equal(d.n, 6);
    size_t lines = 1, total = 0;
    for (size_t i = 0; i < d.d[0].len; i++) lines += d.d[0].text[i] == '\n';
    assert_int_equal(lines, 16235); /* Emma, as in the R package */
    assert_memory_equal(d.d[0].text, "EMMA", 4);
    for (size_t i = 0; i < d.n; i++) total += d.d[i].len;
    assert_true(total > 4000000 && total < 4100000);
    derf_text_docs_free(&d);
}

/* ---- the builder on a miniature source tree ------------------------------------------------- */

static void test_build_small(void **state) {
    char err[DERF_ERRLEN];
    const char *dirs[] = {"src", "src/sotu", "src/brown", "src/austen", "src/kjv", "src/moby-dick"};
    for (size_t i = 0; i < 6; i++) assert_int_equal(mkdir(tp(dirs[i]), 0755), 0);
    write_raw(tp("src/sotu/1790_a.txt"), "Fellow-Citizens: we meet.\r\n", 27);
    write_raw(tp("src/sotu/1791_b.txt"), "  It's a good year.  ", 21);
    write_raw(tp("src/sotu/README"), "not a speech", 12);
    write_raw(tp("src/brown/ca01"), "\n\n\tThe/at jury/nn said/vbd ./.\n", 31);
    write_raw(tp("src/brown/cats.txt"), "not a text", 10);
    write_raw(tp("src/kjv/kjv.txt"), "Ge1:1 In the beginning.\nExo1:1 Now.\n", 36);
    write_raw(tp("src/moby-dick/data.txt"), "Call me\nIshmael.\n", 17);
    const char *a[] = {"EMMA", "", "Emma Woodhouse,", "handsome."};
    unsigned char ser[512], blob[1024];
    size_t k = rdb_chunk(blob, ser, r_serialize(ser, a, 4, 3));
    write_raw(tp("src/austen/Rdata.rdb"), blob, k);
    char src[512], out[512];
    snprintf(src, sizeof src, "%s", tp("src"));
    snprintf(out, sizeof out, "%s", tp("out/text"));
    derf_text_opts o = {.src = src, .out = out, .quiet = 1};
    derf_text_stat st[16];
    if (derf_text_build(&o, st, err, sizeof err)) { fprintf(stderr, "%s\n", err); fail(); }
    assert_int_equal(derf_text_nsources, 5);
    size_t docs[5] = {2, 1, 1, 2, 1};
    for (int s = 0; s < 5; s++) assert_int_equal(st[s].docs, docs[s]);
    assert_string_equal(st[4].name, "moby-dick");
    assert_int_equal(st[4].val, 1);
    derf_shard tr, va;
    char path[600];
    snprintf(path, sizeof path, "%s/train.bin", out);
    assert_int_equal(derf_shard_read(path, &tr, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/val.bin", out);
    assert_int_equal(derf_shard_read(path, &va, err, sizeof err), 0);
    assert_int_equal(tr.n, st[0].tokens + st[1].tokens + st[2].tokens + st[3].tokens);
    assert_int_equal(va.n, st[4].tokens);
    /* decode: each document preceded by <|endoftext|>, cleaned as documented */
    derf_tokenizer *t = derf_tok_load_dir(NULL, DERF_TOK_GPT2, err, sizeof err);
    assert_non_null(t);
    int32_t *ids = malloc(tr.n * sizeof *ids);
    for (size_t i = 0; i < tr.n; i++) ids[i] = tr.tokens[i];
    char *txt;
    size_t tl;
    assert_int_equal(derf_tok_decode(t, ids, tr.n, &txt, &tl, err, sizeof err), 0);
    assert_string_equal(txt, "<|endoftext|>Fellow-Citizens: we meet.\n<|endoftext|>It's a good year.\n"
                             "<|endoftext|>EMMA\n\nEmma Woodhouse, handsome.\n<|endoftext|>The jury said .\n"
                             "<|endoftext|>In the beginning.\n<|endoftext|>Now.\n");
    free(txt);
    for (size_t i = 0; i < va.n; i++) ids[i] = va.tokens[i];
    assert_int_equal(derf_tok_decode(t, ids, va.n, &txt, &tl, err, sizeof err), 0);
    assert_string_equal(txt, "<|endoftext|>Call me Ishmael.\n");
    free(txt);
    free(ids);
    derf_tok_free(t);
    derf_shard_free(&tr);
    derf_shard_free(&va);
    /* a missing source: one line that says what to do */
    assert_int_equal(unlink(tp("src/kjv/kjv.txt")), 0);
    assert_int_equal(derf_text_build(&o, st, err, sizeof err), -1);
    one_line(err);
    assert_non_null(strstr(err, "kjv.txt"));
    assert_non_null(strstr(err, "make deps"));
}

/* the byte-level view (train-lm --text bytes): GPT-2 tokens -> the exact UTF-8 text, <|endoftext|> -> 0 */
static void test_shard_to_bytes(void **state) {
    (void)state;
    char err[DERF_ERRLEN];
    derf_tokenizer *t = derf_tok_load_dir(NULL, DERF_TOK_GPT2, err, sizeof err);
    assert_non_null(t);
    const char *docs[2] = {"Call me Ishmael. Some years ago\xe2\x80\x94never mind how long", "Caf\xc3\xa9 \xff odd bytes\n\n"};
    derf_tok_ids ids = {0};
    for (int d = 0; d < 2; d++) {
        int32_t eot = DERF_GPT2_EOT;
        if (ids.n + 1 > ids.cap) { ids.cap = ids.cap * 2 + 64; ids.ids = realloc(ids.ids, ids.cap * sizeof(int32_t)); }
        ids.ids[ids.n++] = eot;
        assert_int_equal(derf_tok_encode(t, docs[d], strlen(docs[d]), &ids, err, sizeof err), 0);
    }
    derf_shard in = {malloc(ids.n * sizeof(uint16_t)), ids.n, DERF_GPT2_VOCAB}, out;
    for (size_t i = 0; i < ids.n; i++) in.tokens[i] = (uint16_t)ids.ids[i];
    assert_true(ids.n < strlen(docs[0]) + strlen(docs[1])); /* BPE merged something */
    assert_int_equal(derf_shard_to_bytes(&in, t, &out, err, sizeof err), 0);
    assert_int_equal(out.vocab, 256);
    /* the reference: NUL, the first text's bytes, NUL, the second's */
    size_t l0 = strlen(docs[0]), l1 = strlen(docs[1]);
    assert_int_equal(out.n, 2 + l0 + l1);
    assert_int_equal(out.tokens[0], 0);
    for (size_t i = 0; i < l0; i++) assert_int_equal(out.tokens[1 + i], (unsigned char)docs[0][i]);
    assert_int_equal(out.tokens[1 + l0], 0);
    for (size_t i = 0; i < l1; i++) assert_int_equal(out.tokens[2 + l0 + i], (unsigned char)docs[1][i]);
    derf_shard_free(&out);
    /* a token holding a NUL byte would be mistaken for a document boundary: refused */
    ids.n = 0;
    assert_int_equal(derf_tok_encode(t, "a\0b", 3, &ids, err, sizeof err), 0);
    in.n = ids.n;
    for (size_t i = 0; i < ids.n; i++) in.tokens[i] = (uint16_t)ids.ids[i];
    assert_int_equal(derf_shard_to_bytes(&in, t, &out, err, sizeof err), -1);
    one_line(err);
    assert_non_null(strstr(err, "NUL"));
    /* not a GPT-2 shard */
    in.tokens[0] = 60000;
    assert_int_equal(derf_shard_to_bytes(&in, t, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a GPT-2"));
    free(in.tokens);
    free(ids.ids);
    derf_tok_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shard_to_bytes),
        cmocka_unit_test(test_shard_roundtrip),
        cmocka_unit_test(test_shard_hostile),
        cmocka_unit_test(test_brown_strip),
        cmocka_unit_test(test_unwrap),
        cmocka_unit_test(test_kjv_split),
        cmocka_unit_test(test_rdb_decode),
        cmocka_unit_test(test_real_austen),
        cmocka_unit_test(test_build_small),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
