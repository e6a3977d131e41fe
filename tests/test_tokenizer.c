/* test_tokenizer.c: the GPT-2 BPE tokenizer against its reference, the npm gpt-3-encoder package's
 * own JS encoder (tools/gpt2_tokenize_ref.js, run with node): hard strings, seeded random Unicode
 * text, and about 1 MB of the real corpus (the first ~200 KB of each source). The whole corpus is
 * checked by `derf data text --verify` (docs/text-data.md). Also: decode(encode(s)) == s for valid
 * and invalid UTF-8, known ids, and the documented differences between the two flavours.
 * Needs `make deps` (GPT-2 files, node package, text sources). Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "derf/io.h"
#include "derf/textdata.h"
#include "derf/tokenizer.h"
#include "testutil.h"

static derf_tokenizer *tok_gpt2, *tok_js;
static char tmpdir[] = "/tmp/derf_test_tok.XXXXXX";

typedef struct { const char *s; size_t len; } text;

static int setup(void **state) {
    char err[DERF_ERRLEN];
    tok_gpt2 = derf_tok_load_dir(NULL, DERF_TOK_GPT2, err, sizeof err);
    if (!tok_gpt2) { fprintf(stderr, "%s\n", err); return -1; }
    tok_js = derf_tok_load_dir(NULL, DERF_TOK_JS, err, sizeof err);
    if (!tok_js) { fprintf(stderr, "%s\n", err); return -1; }
    if (!mkdtemp(tmpdir)) return -1;
    return 0;
}

static int teardown(void **state) {
    derf_tok_free(tok_gpt2);
    derf_tok_free(tok_js);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static derf_tok_ids enc(derf_tokenizer *t, const char *s, size_t len) {
    derf_tok_ids ids = {0};
    char err[DERF_ERRLEN];
    int rc = derf_tok_encode(t, s, len, &ids, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return ids;
}

static void assert_roundtrip(derf_tokenizer *t, const char *s, size_t len) {
    derf_tok_ids ids = enc(t, s, len);
    char *out, err[DERF_ERRLEN];
    size_t olen;
    assert_int_equal(derf_tok_decode(t, ids.ids, ids.n, &out, &olen, err, sizeof err), 0);
    assert_int_equal(olen, len);
    assert_memory_equal(out, s, len);
    free(out);
    free(ids.ids);
}

/* Runs the JS encoder on n texts (one temp file each) and asserts our JS-flavour ids are equal,
 * token for token. Returns how many texts the GPT-2 flavour also matched. */
static size_t check_against_js(const text *tx, size_t n) {
    size_t cap = 256 + n * 64, k;
    char *cmd = malloc(cap);
    k = (size_t)snprintf(cmd, cap, "node tools/gpt2_tokenize_ref.js");
    for (size_t i = 0; i < n; i++) {
        char path[128], err[DERF_ERRLEN];
        snprintf(path, sizeof path, "%s/t%zu.txt", tmpdir, i);
        assert_int_equal(derf_io_write_file(path, tx[i].s, tx[i].len, err, sizeof err), 0);
        k += (size_t)snprintf(cmd + k, cap - k, " %s", path);
    }
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t lcap = 0, same_gpt2 = 0, i = 0;
    for (; i < n && getline(&line, &lcap, f) >= 0; i++) {
        derf_tok_ids a = enc(tok_js, tx[i].s, tx[i].len), b = enc(tok_gpt2, tx[i].s, tx[i].len);
        size_t m = 0, bad = (size_t)-1;
        long want = 0;
        for (char *p = line, *e;; p = e) {
            long id = strtol(p, &e, 10);
            if (e == p) break;
            if (bad == (size_t)-1 && (m >= a.n || a.ids[m] != id)) { bad = m; want = id; }
            m++;
        }
        if (bad != (size_t)-1 || m != a.n) {
            fprintf(stderr, "text %zu (%zu bytes, '%.60s'): JS encoder gives %zu tokens, we give %zu; first difference at "
                    "token %zu (JS %ld, ours %d)\n", i, tx[i].len, tx[i].s, m, a.n, bad, want,
                    bad < a.n ? a.ids[bad] : -1);
            fail();
        }
        if (a.n == b.n && (a.n == 0 || !memcmp(a.ids, b.ids, a.n * sizeof *a.ids))) same_gpt2++;
        free(a.ids);
        free(b.ids);
    }
    free(line);
    int st = pclose(f);
    if (i != n || st != 0)
        fprintf(stderr, "node tools/gpt2_tokenize_ref.js failed (status %d, %zu of %zu lines): run 'make deps' "
                "(nodejs + gpt-3-encoder in /usr/local/share/derf/node)\n", st, i, n);
    assert_int_equal(i, n);
    assert_int_equal(st, 0);
    free(cmd);
    return same_gpt2;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_load(void **state) {
    size_t merges, aliases;
    assert_int_equal(derf_tok_vocab_size(tok_gpt2), DERF_GPT2_VOCAB);
    derf_tok_stats(tok_gpt2, &merges, &aliases, NULL);
    assert_int_equal(merges, 50000);
    assert_int_equal(aliases, 0);
    derf_tok_stats(tok_js, &merges, &aliases, NULL);
    assert_int_equal(merges, 50000);
    assert_int_equal(aliases, 11); /* the ",," pairs of the JS lookup quirk */
    size_t len;
    const char *b = derf_tok_bytes(tok_gpt2, DERF_GPT2_EOT, &len);
    assert_int_equal(len, 13);
    assert_memory_equal(b, "<|endoftext|>", 13);
    assert_null(derf_tok_bytes(tok_gpt2, DERF_GPT2_VOCAB, &len));
    b = derf_tok_bytes(tok_gpt2, 220, &len);
    assert_true(len == 1 && b[0] == ' ');
    b = derf_tok_bytes(tok_gpt2, 198, &len);
    assert_true(len == 1 && b[0] == '\n');

    char err[DERF_ERRLEN];
    assert_null(derf_tok_load("/nonexistent/encoder.json", "/nonexistent/vocab.bpe", DERF_TOK_GPT2, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/encoder.json"));
    assert_null(strchr(err, '\n'));
    /* a hostile vocabulary: valid JSON, not GPT-2's */
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, "%s/bad.json", tmpdir);
    snprintf(p2, sizeof p2, "%s/bad.bpe", tmpdir);
    assert_int_equal(derf_io_write_file(p1, "{\"a\": 0, \"b\": 0}", 16, err, sizeof err), 0);
    assert_int_equal(derf_io_write_file(p2, "#version: 0.2\na b\n", 18, err, sizeof err), 0);
    assert_null(derf_tok_load(p1, p2, DERF_TOK_GPT2, err, sizeof err));
    assert_non_null(strstr(err, "bad.json"));
}

static void test_known_ids(void **state) {
    static const struct { const char *s; int n; int32_t ids[8]; } K[] = {
        {"Hello world", 2, {15496, 995}},
        {" ", 1, {220}},
        {"\n", 1, {198}},
        {"<|endoftext|>", 7, {27, 91, 437, 1659, 5239, 91, 29}},/* plain text, not the special token */
    };
    for (size_t i = 0; i < sizeof K / sizeof K[0]; i++) {
        derf_tok_ids ids = enc(tok_gpt2, K[i].s, strlen(K[i].s));
        if ((int)ids.n != K[i].n) fprintf(stderr, "'%s': %zu tokens\n", K[i].s, ids.n);
        assert_int_equal(ids.n, K[i].n);
        assert_memory_equal(ids.ids, K[i].ids, ids.n * sizeof *ids.ids);
        free(ids.ids);
    }
    derf_tok_ids e = enc(tok_gpt2, "", 0);
    assert_int_equal(e.n, 0);
    free(e.ids);
}

static const char *HARD[] = {
    "Hello, world! It's a test: don't, won't, they're, we've, I'm, you'll, he'd.",
    "'s't're've'm'll'd 'S 'T 'RE 'LL ''s '' ' 'x",
    "I'M SHOUTING. We'Ve Mixed'Case. rock'n'roll, O'Brien's dogs'",
    "numbers: 0 1 12 123 1234 12345 3.14159 -42 1,000,000 1e-9 0x1F 2024-01-01 ½ ² ٣ 五",
    "trailing spaces   ",
    "   leading spaces",
    "runs     of      spaces\tand\t\ttabs \t \t mixed",
    "newlines\n\n\nmany\n\n\n\n\n\nand\r\nCRLF\rCR\n",
    "\n\n\n",
    " \n \n  \n   x",
    "         ",
    "",
    "x",
    "unicode: naïve café résumé Ångström façade — “quotes” ‘single’ … « guillemets »",
    "emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🤖🚀",
    "CJK: 日本語のテキスト、中文文本。한국어 텍스트",
    "Greek Ελληνικά, Cyrillic Русский текст, Arabic العربية, Hebrew עברית, Hindi हिन्दी, Thai ภาษาไทย",
    "math: ∀x∈ℝ, ∑ᵢ xᵢ² ≤ ∞; f(x) = e^{-x²/2}; a≠b ⇒ ¬(a=b)",
    "punctuation!!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} ||| \\\\ /// ~~~ ```",
    "code: int main(void) { return x->y[0] != 0 && (a << 2) >= b; } // comment\n\tif (x) {\n\t\treturn;\n\t}",
    "url https://example.com/path?q=1&r=2#frag email a.b@c.de",
    "\",\",\"a\",,\"b\"],[1,,2]'],['x',,'y' ),\" .\",,\"",
    "nbsp\u00a0here\u00a0\u00a0twice, thin\u2009space, ideographic\u3000space, line\u2028sep, para\u2029sep",
    "bom\ufeffinside \ufeff and nel\xc2\x85here !\xc2\x85 \xc2\x85\xc2\x85x",
    "a \ufeffb", /* JS: " " + "\ufeff" (whitespace); GPT-2: " \ufeff" (punctuation): different tokens */
    "zero\u200bwidth joiner\u200dand non-joiner\u200c, soft\u00adhyphen",
    "combining: e\u0301 a\u0308 n\u0303; Zalgo: Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o",
    "control \x01\x02\x1f\x7f chars and NUL-free",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    "                                                                                                      end",
    "<|endoftext|> is text here; <|im_start|> too",
};

static void test_hard_strings_vs_js(void **state) {
    size_t n = sizeof HARD / sizeof HARD[0];
    text tx[64];
    for (size_t i = 0; i < n; i++) tx[i] = (text){HARD[i], strlen(HARD[i])};
    /* a NUL byte and a long whitespace run, which the string table cannot hold */
    static char nul[] = "a\0b \0 c";
    tx[n++] = (text){nul, sizeof nul - 1};
    static char spaces[20001];
    memset(spaces, ' ', 20000);
    memcpy(spaces + 9000, "\n\n\t word", 8);
    tx[n++] = (text){spaces, 20000};
    size_t same = check_against_js(tx, n);
    /* the flavours differ only where U+0085/U+FEFF or the ",," pairs appear; of these texts only
     * "a \ufeffb" gets different tokens */
    assert_int_equal(same, n - 1);
    for (size_t i = 0; i < n; i++) {
        assert_roundtrip(tok_gpt2, tx[i].s, tx[i].len);
        assert_roundtrip(tok_js, tx[i].s, tx[i].len);
    }
}

static void test_flavour_differences(void **state) {
    /* U+FEFF is JS whitespace but not Unicode White_Space: " \ufeff" before a letter is split
     * differently, and the tokens differ */
    derf_tok_ids a = enc(tok_js, "a \xef\xbb\xbf" "b", 6), b = enc(tok_gpt2, "a \xef\xbb\xbf" "b", 6);
    assert_int_equal(a.n, 6);
    assert_int_equal(a.ids[1], 220);
    assert_int_equal(b.n, 5);
    free(a.ids); free(b.ids);
    /* U+0085 is White_Space but not JS \s: "!\u0085" is one JS piece and two GPT-2 pieces (the
     * tokens happen to agree) */
    a = enc(tok_js, "!\xc2\x85", 3);
    b = enc(tok_gpt2, "!\xc2\x85", 3);
    assert_true(a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof *a.ids));
    free(a.ids); free(b.ids);
    /* The JS pair-key quirk (11 alias pairs such as ('",', '"') looked up as the merge ('"', ',"')):
     * on every string of up to 5 of the characters " , [ ] ' . } ) the flavours agree. */
    const char al[] = "\",[]'.})";
    char s[5];
    for (int L = 2; L <= 5; L++) {
        long tot = 1;
        for (int i = 0; i < L; i++) tot *= 8;
        for (long c = 0; c < tot; c++) {
            long x = c;
            for (int i = 0; i < L; i++, x /= 8) s[i] = al[x % 8];
            a = enc(tok_js, s, (size_t)L);
            b = enc(tok_gpt2, s, (size_t)L);
            assert_true(a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof *a.ids));
            free(a.ids); free(b.ids);
        }
    }
}

/* Random text from Unicode blocks whose categories are the same in Unicode 14 (PCRE2 10.42) and
 * 15 (node 20), mixed with ASCII, spaces and newlines. */
static size_t put_utf8(char *o, uint32_t c) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) { o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | (c >> 6 & 63)); o[2] = (char)(0x80 | (c & 63)); return 3; }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | (c >> 12 & 63)); o[2] = (char)(0x80 | (c >> 6 & 63));
    o[3] = (char)(0x80 | (c & 63));
    return 4;
}

static void test_random_unicode_vs_js(void **state) {
    static const uint32_t R[][2] = {{0x20, 0x7E}, {0x20, 0x7E}, {0x20, 0x7E}, {0xA0, 0x17F}, {0x370, 0x3FF},
                                    {0x400, 0x4FF}, {0x5D0, 0x5EA}, {0x620, 0x64A}, {0x2000, 0x206F}, {0x3040, 0x30FF},
                                    {0x4E00, 0x9FA5}, {0xAC00, 0xD7A3}, {0x1F600, 0x1F64F}, {0x2190, 0x22FF}};
    static const char *WS[] = {" ", " ", " ", "  ", "\n", "\n\n", "\t", "'s ", "'ll ", "\u00a0", "\u3000"};
    uint64_t seed = tu_seed() ^ 0x70C;
    enum { N = 40 };
    text tx[N];
    for (int i = 0; i < N; i++) {
        size_t cap = 4000, k = 0;
        char *s = malloc(cap + 16);
        while (k < cap - 16) {
            if (tu_uniform(&seed) < 0.2) {
                const char *w = WS[(int)(tu_uniform(&seed) * (sizeof WS / sizeof WS[0]))];
                memcpy(s + k, w, strlen(w));
                k += strlen(w);
                continue;
            }
            const uint32_t *r = R[(int)(tu_uniform(&seed) * (sizeof R / sizeof R[0]))];
            uint32_t c = r[0] + (uint32_t)(tu_uniform(&seed) * (r[1] - r[0] + 1));
            k += put_utf8(s + k, c);
        }
        tx[i] = (text){s, k};
    }
    check_against_js(tx, N);
    for (int i = 0; i < N; i++) {
        assert_roundtrip(tok_gpt2, tx[i].s, tx[i].len);
        free((void *)tx[i].s);
    }
}

/* Invalid UTF-8 (no JS comparison: node would read U+FFFD). Every byte round-trips; the valid text
 * around an invalid sequence is tokenized exactly as it would be on its own. */
static void test_invalid_utf8(void **state) {
    static const char *BAD[] = {"\xff", "caf\xe9 au lait", "trunc \xe2\x82", "\xe2\x82 start", "overlong \xc0\xaf",
                                "surrogate \xed\xa0\x80 x", "\xf8\x88\x80\x80\x80 five", "\x80\x80\x80", "a\xfe\xff" "b",
                                "\xf4\x90\x80\x80 > U+10FFFF", "ok 😀 then \xf0\x9f\x98 cut"};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        assert_roundtrip(tok_gpt2, BAD[i], strlen(BAD[i]));
        assert_roundtrip(tok_js, BAD[i], strlen(BAD[i]));
    }
    /* "Hello \xff world": the valid parts give the same tokens as "Hello" and " world" */
    derf_tok_ids a = enc(tok_gpt2, "Hello\xff world", 12);
    assert_int_equal(a.n, 3);
    assert_int_equal(a.ids[0], 15496);
    assert_int_equal(a.ids[2], 995);
    size_t len;
    const char *b = derf_tok_bytes(tok_gpt2, a.ids[1], &len);
    assert_true(len == 1 && (unsigned char)b[0] == 0xff);
    free(a.ids);
    /* random bytes: everything round-trips */
    uint64_t seed = tu_seed() ^ 0xBAD;
    char buf[3000];
    for (int r = 0; r < 50; r++) {
        size_t n = (size_t)(tu_uniform(&seed) * sizeof buf);
        for (size_t i = 0; i < n; i++) {
            double u = tu_uniform(&seed);
            buf[i] = (char)(u < 0.5 ? 'a' + (int)(u * 52) : u < 0.6 ? ' ' : (int)(tu_uniform(&seed) * 256));
        }
        assert_roundtrip(tok_gpt2, buf, n);
    }
    char err[DERF_ERRLEN], *out;
    int32_t badid[2] = {5, DERF_GPT2_VOCAB};
    assert_int_equal(derf_tok_decode(tok_gpt2, badid, 2, &out, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "50257"));
}

/* About 1 MB of the real corpus: the first ~200 KB of each source, cut at a line end. */
static void test_corpus_sample_vs_js(void **state) {
    text tx[16];
    size_t n = 0, total = 0;
    char err[DERF_ERRLEN];
    for (int s = 0; s < derf_text_nsources; s++) {
        derf_text_docs docs = {0};
        if (derf_text_sources[s].load(DERF_TEXT_SRC, &docs, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            fail();
        }
        char *buf = malloc(210000);
        size_t k = 0;
        for (size_t d = 0; d < docs.n && k < 200000; d++) {
            size_t take = docs.d[d].len < 200000 - k ? docs.d[d].len : 200000 - k;
            while (take < docs.d[d].len && take > 0 && docs.d[d].text[take - 1] != '\n') take--;
            memcpy(buf + k, docs.d[d].text, take);
            k += take;
            if (take < docs.d[d].len) break;
        }
        tx[n++] = (text){buf, k};
        total += k;
        derf_text_docs_free(&docs);
    }
    fprintf(stderr, "# corpus sample: %zu bytes from %zu sources\n", total, n);
    assert_true(total > 900000);
    size_t same = check_against_js(tx, n);
    assert_int_equal(same, n);
    for (size_t i = 0; i < n; i++) {
        assert_roundtrip(tok_gpt2, tx[i].s, tx[i].len);
        free((void *)tx[i].s);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_known_ids),
        cmocka_unit_test(test_hard_strings_vs_js),
        cmocka_unit_test(test_flavour_differences),
        cmocka_unit_test(test_random_unicode_vs_js),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_corpus_sample_vs_js),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
