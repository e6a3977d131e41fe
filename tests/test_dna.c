/* test_dna.c: the DNA data layer: tokenizer ids against HyenaDNA's table, reverse complement against a
 * hand-written string reference, MAF/FASTA readers on small hand-made files (gzip'd with zlib here),
 * hostile and truncated inputs rejected with one line, corpus/task round trips and corrupt files, the
 * coordinate-bin split (disjoint, borders dropped, merging only of contiguous coordinates), and the
 * repeat task (labels from case, balanced, case never in the tokens); the Drosophila upstream headers
 * (hostile forms refused) and the promoter task on a hand-made file whose expected windows, splits,
 * filters and counts are worked out by hand; the out-of-distribution corpus (letters against the FASTA). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "derf/dna.h"
#include "derf/io.h"
#include "testutil.h"

static char tmpdir[] = "/tmp/derf_test_dna.XXXXXX";
#include "tmpfiles.h"

static void write_gz(const char *path, const char *text) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, text, (unsigned)strlen(text)), (int)strlen(text));
    assert_int_equal(gzclose(f), Z_OK);
}


static void test_tokenizer(void **st) {
    (void)st;
    /* HyenaDNA's CharacterTokenizer: [CLS]0 [SEP]1 [BOS]2 [MASK]3 [PAD]4 [RESERVED]5 [UNK]6 A7 C8 G9 T10 N11 */
    const char *letters = "ACGTN";
    for (int i = 0; i < 5; i++) {
        assert_int_equal(derf_dna_char_id(letters[i]), 7 + i);
        assert_int_equal(derf_dna_char_id(letters[i] + 32), 7 + i); /* soft-masked lower case: same id */
        assert_int_equal(derf_dna_id_char(7 + i), letters[i]);
    }
    for (const char *p = "RYKMSWBDHVrykmswbdhv"; *p; p++) assert_int_equal(derf_dna_char_id(*p), DERF_DNA_N);
    for (const char *p = "-*.0 >\tXxEeUu@`"; *p; p++) assert_int_equal(derf_dna_char_id(*p), -1);
    for (int c = 128; c < 256; c++) assert_int_equal(derf_dna_char_id(c), -1);
    assert_int_equal(derf_dna_char_id(0), -1);
}

/* reverse complement of a string, by hand */
static void rc_str(char *dst, const char *src) {
    size_t n = strlen(src);
    for (size_t i = 0; i < n; i++) {
        char c = src[n - 1 - i];
        dst[i] = c == 'A' ? 'T' : c == 'T' ? 'A' : c == 'C' ? 'G' : c == 'G' ? 'C' : c;
    }
    dst[n] = 0;
}

static void test_revcomp(void **st) {
    (void)st;
    uint64_t s = tu_seed();
    for (int rep = 0; rep < 50; rep++) {
        size_t n = 1 + (size_t)(tu_uniform(&s) * 300);
        char str[400], want[400];
        uint8_t ids[400], out[400];
        for (size_t i = 0; i < n; i++) str[i] = "ACGTN"[(int)(tu_uniform(&s) * 5)];
        str[n] = 0;
        rc_str(want, str);
        for (size_t i = 0; i < n; i++) ids[i] = (uint8_t)derf_dna_char_id(str[i]);
        derf_dna_revcomp(out, ids, n);
        for (size_t i = 0; i < n; i++) assert_int_equal(derf_dna_id_char(out[i]), want[i]);
        derf_dna_revcomp(ids, ids, n); /* in place */
        assert_memory_equal(ids, out, n);
        derf_dna_revcomp(out, out, n); /* an involution */
        for (size_t i = 0; i < n; i++) assert_int_equal(derf_dna_id_char(out[i]), str[i]);
    }
    for (int id = 0; id < DERF_DNA_A; id++) assert_int_equal(derf_dna_complement(id), id); /* specials fixed */
}

static const char *MAF =
    "##maf version=1\n#\na\n"
    "s Hsap.22 100 5 + 1000 AC-gTn\n"
    "s Ptro.22 7 6 + 900 ACGGTN\n\n"
    "a\n"
    "s Hsap.22 10 4 - 1000 aCGT\n";

static void test_maf(void **st) {
    (void)st;
    char err[DERF_ERRLEN];
    write_gz(tp("a.maf.gz"), MAF);
    derf_dna_records rs = {0};
    assert_int_equal(derf_dna_read_maf(tp("a.maf.gz"), "Hsap.", &rs, err, sizeof err), 0);
    assert_int_equal(rs.n, 2);
    assert_string_equal(rs.r[0].name, "Hsap.22");
    assert_int_equal(rs.r[0].start, 100);
    assert_int_equal(rs.r[0].len, 5);
    const uint8_t want0[] = {7, 8, 9, 10, 11}, low0[] = {0, 0, 1, 0, 1};
    assert_memory_equal(rs.r[0].ids, want0, 5);
    assert_memory_equal(rs.r[0].lower, low0, 5);
    /* '-' strand: start 1000-10-4 = 986, sequence reverse-complemented (aCGT -> ACGt), mask reversed */
    assert_int_equal(rs.r[1].start, 986);
    const uint8_t want1[] = {7, 8, 9, 10}, low1[] = {0, 0, 0, 1};
    assert_memory_equal(rs.r[1].ids, want1, 4);
    assert_memory_equal(rs.r[1].lower, low1, 4);
    derf_dna_records_free(&rs);
    /* plain (not gzip'd) works too */
    write_raw(tp("a.maf"), MAF, strlen(MAF));
    assert_int_equal(derf_dna_read_maf(tp("a.maf"), "Hsap.", &rs, err, sizeof err), 0);
    assert_int_equal(rs.n, 2);
    derf_dna_records_free(&rs);
}

static void test_hostile_inputs(void **st) {
    (void)st;
    char err[DERF_ERRLEN];
    derf_dna_records rs = {0};
    const char *bad_maf[] = {
        "a\ns Hsap.22 100 6 + 1000 AC-gTn\n",     /* size field disagrees with the bases */
        "a\ns Hsap.22 100 5 + 1000 AC-g!n\n",     /* a non-sequence character */
        "a\ns Hsap.22 -5 5 + 1000 ACGTN\n",       /* negative start */
        "a\ns Hsap.22 998 5 + 1000 ACGTN\n",      /* beyond the source size */
        "a\ns Hsap.22 100 5 ? 1000 ACGTN\n",      /* bad strand */
        "a\ns Hsap.22 100 five + 1000 ACGTN\n",   /* not a number */
        "a\ns Ptro.22 100 5 + 1000 ACGTN\n",      /* no human row */
        "",                                        /* empty */
    };
    for (size_t i = 0; i < sizeof bad_maf / sizeof *bad_maf; i++) {
        write_gz(tp("b.maf.gz"), bad_maf[i]);
        err[0] = 0;
        assert_int_equal(derf_dna_read_maf(tp("b.maf.gz"), "Hsap.", &rs, err, sizeof err), -1);
        one_line(err);
        assert_int_equal(rs.n, 0);
    }
    /* a truncated gzip stream: the first half of a compressed file */
    char big[20000];
    size_t k = (size_t)sprintf(big, "a\ns Hsap.22 0 9000 + 100000 ");
    uint64_t s = tu_seed();
    for (int i = 0; i < 9000; i++) big[k++] = "ACGT"[(int)(tu_uniform(&s) * 4)];
    big[k++] = '\n';
    big[k] = 0;
    write_gz(tp("c.maf.gz"), big);
    void *gz;
    size_t len;
    assert_int_equal(derf_io_read_file(tp("c.maf.gz"), 1 << 20, &gz, &len, err, sizeof err), 0);
    write_raw(tp("d.maf.gz"), gz, len / 2);
    free(gz);
    assert_int_equal(derf_dna_read_maf(tp("c.maf.gz"), "Hsap.", &rs, err, sizeof err), 0);
    derf_dna_records_free(&rs);
    assert_int_equal(derf_dna_read_maf(tp("d.maf.gz"), "Hsap.", &rs, err, sizeof err), -1);
    one_line(err);
    assert_int_equal(derf_dna_read_maf(tp("missing.maf.gz"), "Hsap.", &rs, err, sizeof err), -1);
    one_line(err);
    /* FASTA */
    write_gz(tp("a.fa.gz"), ">chr1 first\nACGTac\n\nNNrY\n>chr2\nGG\n");
    assert_int_equal(derf_dna_read_fasta(tp("a.fa.gz"), &rs, err, sizeof err), 0);
    assert_int_equal(rs.n, 2);
    assert_string_equal(rs.r[0].name, "chr1");
    assert_int_equal(rs.r[0].len, 10);
    assert_int_equal(rs.r[1].len, 2);
    derf_dna_records_free(&rs);
    const char *bad_fa[] = {"ACGT\n", ">a\n>b\nAC\n", ">a\nAC GT\n", ">a\n", "", ">a\nAC-T\n"};
    for (size_t i = 0; i < sizeof bad_fa / sizeof *bad_fa; i++) {
        write_gz(tp("b.fa.gz"), bad_fa[i]);
        assert_int_equal(derf_dna_read_fasta(tp("b.fa.gz"), &rs, err, sizeof err), -1);
        one_line(err);
        assert_int_equal(rs.n, 0);
    }
}

static void test_corpus_task_files(void **st) {
    (void)st;
    char err[DERF_ERRLEN];
    derf_dna_corpus c = {0}, r;
    snprintf(c.name, sizeof c.name, "toy");
    const uint8_t a[] = {7, 8, 9, 10, 11, 7}, b[] = {10, 10, 9};
    derf_dna_corpus_add(&c, a, 6, 1000, DERF_DNA_TRAIN, 0);
    derf_dna_corpus_add(&c, b, 3, 5000000, DERF_DNA_TEST, 3);
    assert_int_equal(derf_dna_corpus_write(tp("t.dnac"), &c, err, sizeof err), 0);
    assert_int_equal(derf_dna_corpus_read(tp("t.dnac"), &r, err, sizeof err), 0);
    assert_string_equal(r.name, "toy");
    assert_int_equal(r.nseg, 2);
    assert_int_equal(r.ntok, 9);
    assert_int_equal(r.seg[1].offset, 6);
    assert_int_equal(r.seg[1].start, 5000000);
    assert_int_equal(r.seg[1].split, DERF_DNA_TEST);
    assert_int_equal(r.seg[1].source, 3);
    assert_memory_equal(r.tok, c.tok, 9);
    derf_dna_corpus_free(&r);
    void *buf;
    size_t len;
    assert_int_equal(derf_io_read_file(tp("t.dnac"), 1 << 20, &buf, &len, err, sizeof err), 0);
    assert_int_equal(len, 56 + 2 * 24 + 9); /* the documented size */
    unsigned char *p = buf;
    /* every truncation, a bad magic, a bad token, a bad split, a broken offset: refused */
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(derf_dna_corpus_parse(buf, cut, "t.dnac", &r, err, sizeof err), -1);
        one_line(err);
    }
    struct { size_t at; unsigned char v; } edits[] = {{0, 'X'}, {8, 2}, {56 + 24 + 20, 3}, {56 + 24, 5}, {56 + 48 + 4, 12},
                                                    {56 + 48 + 4, 0}, {56 + 16, 0}, {12, 3}};
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        unsigned char keep = p[edits[i].at];
        p[edits[i].at] = edits[i].v;
        assert_int_equal(derf_dna_corpus_parse(buf, len, "t.dnac", &r, err, sizeof err), -1);
        one_line(err);
        p[edits[i].at] = keep;
    }
    assert_int_equal(derf_dna_corpus_parse(buf, len, "t.dnac", &r, err, sizeof err), 0);
    derf_dna_corpus_free(&r);
    free(buf);
    derf_dna_corpus_free(&c);

    uint8_t split[3] = {0, 1, 2}, label[3] = {1, 0, 2}, tok[12] = {7, 8, 9, 10, 11, 7, 8, 9, 10, 11, 7, 8};
    derf_dna_task t = {.n = 3, .len = 4, .nclass = 3, .split = split, .label = label, .tok = tok}, u;
    snprintf(t.name, sizeof t.name, "toy_task");
    assert_int_equal(derf_dna_task_write(tp("t.dnat"), &t, err, sizeof err), 0);
    assert_int_equal(derf_dna_task_read(tp("t.dnat"), &u, err, sizeof err), 0);
    assert_int_equal(u.n, 3);
    assert_int_equal(u.len, 4);
    assert_memory_equal(u.tok, tok, 12);
    assert_memory_equal(u.label, label, 3);
    derf_dna_task_free(&u);
    assert_int_equal(derf_io_read_file(tp("t.dnat"), 1 << 20, &buf, &len, err, sizeof err), 0);
    assert_int_equal(len, 56 + 3 * (2 + 4));
    for (size_t cut = 0; cut < len; cut++) assert_int_equal(derf_dna_task_parse(buf, cut, "t.dnat", &u, err, sizeof err), -1);
    p = buf;
    size_t bad_at[] = {56 + 1 /* split 9 */, 56 + 3 + 2 /* label 9 >= 3 classes */, 56 + 6 + 5 /* token 9 is fine, 99 not */};
    unsigned char bad_v[] = {9, 9, 99};
    for (int i = 0; i < 3; i++) {
        unsigned char keep = p[bad_at[i]];
        p[bad_at[i]] = bad_v[i];
        assert_int_equal(derf_dna_task_parse(buf, len, "t.dnat", &u, err, sizeof err), -1);
        one_line(err);
        p[bad_at[i]] = keep;
    }
    free(buf);
    assert_int_equal(derf_dna_corpus_read(tp("t.dnat"), &r, err, sizeof err), -1); /* a task is not a corpus */
    one_line(err);
}

/* Records spanning bin borders: every kept base lands in the split of its coordinate, borders are
 * dropped, and segments are only merged across records whose coordinates continue. */
static void test_split(void **st) {
    (void)st;
    assert_int_equal(derf_dna_human_split(20000000 + 50000), DERF_DNA_TEST);
    assert_int_equal(derf_dna_human_split(25000000 + 50000), DERF_DNA_VAL);
    assert_int_equal(derf_dna_human_split(21000000 + 50000), DERF_DNA_TRAIN);
    assert_int_equal(derf_dna_human_split(21000000 + 9999), -1);
    assert_int_equal(derf_dna_human_split(21000000 + 10000), DERF_DNA_TRAIN);
    assert_int_equal(derf_dna_human_split(21000000 + 989999), DERF_DNA_TRAIN);
    assert_int_equal(derf_dna_human_split(21000000 + 990000), -1);
    derf_dna_records rs = {0};
    uint64_t s = tu_seed();
    /* records from 19.97 Mbp to 21.05 Mbp (a test bin between train bins), some contiguous, some not */
    int64_t pos = 19970000;
    while (pos < 21050000) {
        size_t n = 1000 + (size_t)(tu_uniform(&s) * 9000);
        derf_dna_record *r;
        if (rs.n == rs.cap) { rs.cap = rs.cap ? 2 * rs.cap : 64; rs.r = realloc(rs.r, rs.cap * sizeof *rs.r); }
        r = &rs.r[rs.n++];
        memset(r, 0, sizeof *r);
        r->name = strdup("Hsap.22");
        r->start = pos;
        r->len = n;
        r->ids = malloc(n);
        r->lower = malloc(n);
        for (size_t i = 0; i < n; i++) {
            /* encode the coordinate's parity in the base so we can check where tokens come from */
            r->ids[i] = (uint8_t)(DERF_DNA_A + (pos + (int64_t)i) % 4);
            r->lower[i] = (uint8_t)((pos + (int64_t)i) % 3 == 0);
        }
        pos += (int64_t)n + (tu_uniform(&s) < 0.5 ? 0 : 1 + (int64_t)(tu_uniform(&s) * 500));
    }
    derf_dna_corpus c = {0};
    uint8_t *lower;
    derf_dna_split_human(&rs, &c, &lower);
    size_t kept = 0;
    for (size_t g = 0; g < c.nseg; g++) {
        const derf_dna_segment *sg = &c.seg[g];
        for (size_t i = 0; i < sg->length; i++) {
            int64_t co = (int64_t)sg->start + (int64_t)i;
            assert_int_equal(derf_dna_human_split(co), sg->split); /* never crosses a split, never a border base */
            assert_int_equal(c.tok[sg->offset + i], DERF_DNA_A + co % 4);
            assert_int_equal(lower[sg->offset + i], co % 3 == 0);
        }
        kept += sg->length;
        if (g) { /* consecutive segments differ in split, or their coordinates do not continue */
            const derf_dna_segment *pv = &c.seg[g - 1];
            assert_true(pv->split != sg->split || pv->start + pv->length != sg->start);
        }
    }
    size_t want = 0;
    for (size_t i = 0; i < rs.n; i++)
        for (size_t j = 0; j < rs.r[i].len; j++) want += derf_dna_human_split(rs.r[i].start + (int64_t)j) >= 0;
    assert_int_equal(kept, want);
    free(lower);
    derf_dna_corpus_free(&c);
    derf_dna_records_free(&rs);
}

/* The repeat task's labels follow the case mask, balanced per split, windows on either strand. */
static void test_repeat_task(void **st) {
    (void)st;
    derf_dna_corpus c = {0};
    uint64_t s = tu_seed();
    size_t n = 40000;
    uint8_t *ids = malloc(n), *lower = malloc(3 * n);
    for (size_t i = 0; i < n; i++) ids[i] = (uint8_t)(DERF_DNA_A + (int)(tu_uniform(&s) * 4));
    for (int sp = 0; sp < 3; sp++) derf_dna_corpus_add(&c, ids, n, 1000000 * sp, sp, 0);
    for (size_t i = 0; i < 3 * n; i++) lower[i] = (uint8_t)(((i % n) / 500) % 3 == 0); /* every third window masked */
    derf_dna_task t;
    char err[DERF_ERRLEN];
    const int cap[3] = {1000, 20, 30};
    assert_int_equal(derf_dna_make_repeat_task(&c, lower, 500, cap, 3, &t, err, sizeof err), 0);
    int cnt[3][2] = {{0}};
    for (int i = 0; i < t.n; i++) {
        cnt[t.split[i]][t.label[i]]++;
        /* find the window in the source (either strand) and check its label */
        const uint8_t *w = t.tok + (size_t)i * 500;
        uint8_t rc[500];
        derf_dna_revcomp(rc, w, 500);
        int found = 0;
        for (size_t a = 0; a + 500 <= n && !found; a += 500)
            if (!memcmp(ids + a, w, 500) || !memcmp(ids + a, rc, 500)) {
                found = 1;
                assert_int_equal(t.label[i], (a / 500) % 3 == 0);
            }
        assert_true(found);
    }
    /* 80 windows per split: 27 masked, 53 not -> 27 each in train; caps 20 and 30 halve to 10 and 15 */
    assert_int_equal(cnt[0][0], 27);
    assert_int_equal(cnt[0][1], 27);
    assert_int_equal(cnt[1][0], 10);
    assert_int_equal(cnt[1][1], 10);
    assert_int_equal(cnt[2][0], 15);
    assert_int_equal(cnt[2][1], 15);
    derf_dna_task_free(&t);
    free(ids);
    free(lower);
    derf_dna_corpus_free(&c);
}

/* UCSC upstream headers: the real file's forms parse; anything malformed or inconsistent is refused with one line. */
static void test_upstream_header(void **st) {
    (void)st;
    char err[DERF_ERRLEN];
    derf_dna_upstream u;
    assert_int_equal(derf_dna_parse_upstream("NM_078863_up_2000_chr2L_16764737_f", "chr2L:16764737-16766736", 2000, &u, err,
                                             sizeof err), 0);
    assert_string_equal(u.chrom, "chr2L");
    assert_int_equal(u.start, 16764737);
    assert_int_equal(u.end, 16766736);
    assert_int_equal(u.strand, 1);
    assert_int_equal(u.up, 2000);
    assert_int_equal(derf_dna_parse_upstream("NM_001272973_up_2000_chr2L_2109879_r", "chr2L:2109879-2111878", 2000, &u, err,
                                             sizeof err), 0);
    assert_int_equal(u.strand, -1);
    /* clipped at the chromosome start (two records of the real file): only bases 1..353 */
    assert_int_equal(derf_dna_parse_upstream("NM_164313_up_2000_chr3R_-1646_f", "chr3R:-1646-353", 353, &u, err, sizeof err), 0);
    assert_int_equal(u.start, -1646);
    assert_int_equal(u.end, 353);
    /* an underscore inside the chromosome name (other assemblies) */
    assert_int_equal(derf_dna_parse_upstream("X_up_10_chrUn_1_5_f", "chrUn_1:5-14", 10, &u, err, sizeof err), 0);
    assert_string_equal(u.chrom, "chrUn_1");
    const struct { const char *name, *desc; size_t len; } bad[] = {
        {"NM_1_up_2000_chr2L_100_x", "chr2L:100-2099", 2000},          /* strand */
        {"NM_1_up_2000_chr2L_100", "chr2L:100-2099", 2000},            /* no strand */
        {"NM_1_dn_2000_chr2L_100_f", "chr2L:100-2099", 2000},          /* not upstream */
        {"NM_1_up_2k_chr2L_100_f", "chr2L:100-2099", 2000},            /* size not a number */
        {"NM_1_up_2000_chr2L_1e2_f", "chr2L:100-2099", 2000},          /* start not a number */
        {"NM_1_up_2000__100_f", ":100-2099", 2000},                   /* empty chromosome */
        {"NM_1_up_2000_100_f", "chr2L:100-2099", 2000},                /* no chromosome */
        {"NM_1_up_2000_chr2L_100_f", "chr2R:100-2099", 2000},          /* chromosome disagrees */
        {"NM_1_up_2000_chr2L_100_f", "chr2L:101-2100", 2000},          /* start disagrees */
        {"NM_1_up_2000_chr2L_100_f", "chr2L:100-2000", 2000},          /* end - start + 1 != 2000 */
        {"NM_1_up_2000_chr2L_100_f", "chr2L:100-", 2000},              /* no end */
        {"NM_1_up_2000_chr2L_100_f", "chr2L:100", 2000},
        {"NM_1_up_2000_chr2L_100_f", "", 2000},
        {"NM_1_up_2000_chr2L_100_f", NULL, 2000},
        {"NM_1_up_2000_chr2L_100_f", "chr2L:100-2099 x", 2000},        /* trailing junk */
        {"NM_1_up_2000_chr2L_100_f", "chr2L:100-2099", 1999},          /* sequence shorter than the region */
        {"NM_1_up_2000_chr2L_100_f", "chr2L:100-2099", 2001},
        {"NM_1_up_2000_chr3R_-1646_f", "chr3R:-1646-353", 2000},       /* clipped, but all 2000 bases */
        {"NM_1_up_2000_chr3R_-1646_f", "chr3R:-1646-353", 352},
        {"NM_1_up_0_chr2L_1_f", "chr2L:1-0", 0},                      /* empty region */
        {"NM_1_up_2000_chr2L_99999999999999999999_f", "chr2L:99999999999999999999-2099", 2000}, /* overflow */
        {"NM_1_up_2000_chr2L_-3000_f", "chr2L:-3000--1001", 0},        /* end below 1 */
        {"NM_1_up_2000_chr0123456789012345678901234567890123_1_f", "chr0123456789012345678901234567890123:1-2000", 2000},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        if (derf_dna_parse_upstream(bad[i].name, bad[i].desc, bad[i].len, &u, err, sizeof err) != -1) fail_msg("case %zu accepted", i);
        one_line(err);
    }
}

/* ---- a synthetic upstream file: regions of UP bases, windows of LEN ---- */
#define UP 60
#define WLEN 20
typedef struct { char buf[1 << 16]; size_t n; int id; } fa_buf;

static void fa_add(fa_buf *f, const char *chrom, long start, char strand, const char *seq) {
    long end = start + UP - 1;
    f->n += (size_t)snprintf(f->buf + f->n, sizeof f->buf - f->n, ">NM_%d_up_%d_%s_%ld_%c %s:%ld-%ld\n%s\n", f->id++, UP, chrom, start,
                             strand, chrom, start, end, seq);
    assert_true(f->n < sizeof f->buf);
}

static void rand_seq(char *s, size_t n, uint64_t *rs) {
    for (size_t i = 0; i < n; i++) s[i] = "ACGT"[(int)(tu_uniform(rs) * 4)];
    s[n] = 0;
}

/* the promoter window (last WLEN) or background window (first WLEN) of a record */
static void win(char *dst, const char *seq, int prom) { memcpy(dst, seq + (prom ? UP - WLEN : 0), WLEN); dst[WLEN] = 0; }

/* Split disjointness, balance and every filter on hand-placed regions, the expected counts worked out by hand. */
static void test_promoter_task(void **st) {
    (void)st;
    static fa_buf f;
    f.n = 0; f.id = 1;
    uint64_t rs = tu_seed();
    /* ref: every window the task may hold, with its split and label */
    static char ref[128][WLEN + 1], absent[16][WLEN + 1];
    int rsplit[128], rlabel[128], nref = 0, nabs = 0;
#define REF(seq, prom, split) do { win(ref[nref], seq, prom); rsplit[nref] = split; rlabel[nref++] = prom; } while (0)
#define ABSENT(seq, prom) win(absent[nabs++], seq, prom)
    char s[UP + 1], r1[UP + 1], r2[UP + 1];
    const char *arms[] = {"chr2R", "chrX", "chr2L", "chr3R"};
    const int split[] = {0, 0, 1, 2};
    for (int a = 0; a < 4; a++)
        for (int k = 0; k < 5; k++) {
            rand_seq(s, UP, &rs);
            fa_add(&f, arms[a], 1000L * k + 1, "fr"[k % 2], s);
            if (a == 0 && k == 0) fa_add(&f, arms[a], 1, 'f', s); /* a second transcript of the same region */
            if (a == 0 && k == 1) memcpy(r1, s, UP + 1);
            if (a == 0 && k == 2) memcpy(r2, s, UP + 1);
            if (a == 0 && k == 1) ABSENT(s, 1); /* its promoter window recurs in the test arm */
            else REF(s, 1, split[a]);
            REF(s, 0, split[a]);
        }
    /* chrX: 2 N in a promoter window (kept: 10%), 3 N (dropped), 3 N in a background; a background equal to R2's */
    rand_seq(s, UP, &rs); s[45] = s[50] = 'N'; fa_add(&f, "chrX", 10001, 'f', s); REF(s, 1, 0); REF(s, 0, 0);
    rand_seq(s, UP, &rs); s[41] = s[45] = s[55] = 'N'; fa_add(&f, "chrX", 11001, 'r', s); ABSENT(s, 1); REF(s, 0, 0);
    rand_seq(s, UP, &rs); s[1] = s[5] = s[19] = 'N'; fa_add(&f, "chrX", 12001, 'f', s); REF(s, 1, 0); ABSENT(s, 0);
    rand_seq(s, UP, &rs); memcpy(s, r2, WLEN); fa_add(&f, "chrX", 13001, 'f', s); REF(s, 1, 0); /* its background: one copy */
    /* chr3L: overlaps (region [lo, lo+59]; '+': promoter [lo+40, lo+59], background [lo, lo+19]; '-': the reverse) */
    rand_seq(s, UP, &rs); fa_add(&f, "chr3L", 100001, 'f', s); REF(s, 1, 0); REF(s, 0, 0);     /* A */
    rand_seq(s, UP, &rs); fa_add(&f, "chr3L", 100011, 'f', s); ABSENT(s, 1); ABSENT(s, 0);     /* B: both overlap A's */
    rand_seq(s, UP, &rs); fa_add(&f, "chr3L", 400001, 'f', s); REF(s, 1, 0); ABSENT(s, 0);     /* G: bg under H's promoter */
    rand_seq(s, UP, &rs); fa_add(&f, "chr3L", 399950, 'f', s); REF(s, 1, 0); REF(s, 0, 0);     /* H: promoter 399990-400009 */
    rand_seq(s, UP, &rs); fa_add(&f, "chr3L", 500001, 'r', s); REF(s, 1, 0); ABSENT(s, 0);     /* I: bg 500041-60 under J's bg */
    rand_seq(s, UP, &rs); fa_add(&f, "chr3L", 500031, 'f', s); REF(s, 1, 0); REF(s, 0, 0);     /* J: bg 500031-50 */
    rand_seq(s, UP, &rs); fa_add(&f, "chr3L", 600001, 'r', s); ABSENT(s, 1); REF(s, 0, 0);     /* K: promoter 600001-20 */
    rand_seq(s, UP, &rs); fa_add(&f, "chr3L", 599950, 'f', s); REF(s, 1, 0); REF(s, 0, 0);     /* L: promoter 599990-600009 */
    /* test arm: a promoter window equal to the reverse complement of R1's (both dropped: they are in two splits) */
    char w1[WLEN + 1], w1rc[WLEN + 1];
    win(w1, r1, 1);
    rc_str(w1rc, w1);
    rand_seq(s, UP, &rs); memcpy(s + UP - WLEN, w1rc, WLEN); fa_add(&f, "chr3R", 20001, 'r', s); ABSENT(s, 1); REF(s, 0, 2);
    /* not used: heterochromatin, unplaced, a region clipped at the chromosome start */
    rand_seq(s, UP, &rs); fa_add(&f, "chr2LHet", 1, 'f', s); ABSENT(s, 1); ABSENT(s, 0);
    rand_seq(s, UP, &rs); fa_add(&f, "chrU", 1, 'r', s); ABSENT(s, 1); ABSENT(s, 0);
    rand_seq(s, 50, &rs);
    f.n += (size_t)snprintf(f.buf + f.n, sizeof f.buf - f.n, ">NM_0_up_%d_chr3R_-9_f chr3R:-9-50\n%s\n", UP, s);
    write_gz(tp("up.fa.gz"), f.buf);

    char err[DERF_ERRLEN], path[512];
    assert_int_equal(derf_dna_build_promoter(tp("up.fa.gz"), 1, tmpdir, WLEN, 7, 1, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/dmel_promoter_%d.dnat", tmpdir, WLEN);
    derf_dna_task t;
    assert_int_equal(derf_dna_task_read(path, &t, err, sizeof err), 0);
    assert_string_equal(t.name, "dmel_promoter_20");
    assert_int_equal(t.len, WLEN);
    assert_int_equal(t.nclass, 2);
    /* by hand: train 18 promoters / 17 backgrounds, val 5 / 5, test 5 / 6 -> 17, 5, 5 of each */
    int cnt[3][2] = {{0}};
    for (int i = 0; i < t.n; i++) {
        char x[WLEN + 1];
        for (int k = 0; k < WLEN; k++) x[k] = derf_dna_id_char(t.tok[(size_t)i * WLEN + k]);
        x[WLEN] = 0;
        int found = -1;
        for (int j = 0; j < nref; j++)
            if (!strcmp(ref[j], x)) found = j;
        assert_true(found >= 0);
        assert_int_equal(t.split[i], rsplit[found]);
        assert_int_equal(t.label[i], rlabel[found]);
        for (int j = 0; j < nabs; j++) assert_string_not_equal(absent[j], x);
        for (int j = 0; j < i; j++) /* no sequence twice (either strand), so none in two splits */
            assert_false(!memcmp(t.tok + (size_t)j * WLEN, t.tok + (size_t)i * WLEN, WLEN));
        if (i) assert_true(t.split[i] > t.split[i - 1] || (t.split[i] == t.split[i - 1] && t.label[i] >= t.label[i - 1]));
        cnt[t.split[i]][t.label[i]]++;
    }
    const int want[3] = {17, 5, 5};
    for (int sp = 0; sp < 3; sp++) {
        assert_int_equal(cnt[sp][0], want[sp]);
        assert_int_equal(cnt[sp][1], want[sp]);
    }
    /* the statistics, by hand */
    derf_dna_records recs = {0};
    derf_dna_promoter_stats ps;
    derf_dna_task t2;
    assert_int_equal(derf_dna_read_fasta(tp("up.fa.gz"), &recs, err, sizeof err), 0);
    assert_int_equal(derf_dna_make_promoter_task(&recs, WLEN, 7, &t2, &ps, err, sizeof err), 0);
    assert_int_equal(ps.records, 37);
    assert_int_equal(ps.clipped, 1);
    assert_int_equal(ps.other_arm, 2);
    assert_int_equal(ps.dup_region, 1);
    assert_int_equal(ps.overlap_prom, 2); /* B, K */
    assert_int_equal(ps.overlap_bg, 3);   /* B, G, I */
    assert_int_equal(ps.n_rich, 2);
    assert_int_equal(ps.dup_seq, 3);      /* R1 and the test copy; one of R2's background pair */
    assert_int_equal(ps.avail[0][1], 18);
    assert_int_equal(ps.avail[0][0], 17);
    assert_int_equal(ps.avail[2][0], 6);
    /* the same seed gives the same file */
    assert_int_equal(t2.n, t.n);
    assert_memory_equal(t2.tok, t.tok, (size_t)t.n * WLEN);
    derf_dna_task_free(&t2);
    derf_dna_task_free(&t);
    /* a window too long for the region, a length of 0 */
    assert_int_equal(derf_dna_make_promoter_task(&recs, UP / 2 + 1, 7, &t2, NULL, err, sizeof err), -1);
    one_line(err);
    assert_int_equal(derf_dna_make_promoter_task(&recs, 0, 7, &t2, NULL, err, sizeof err), -1);
    one_line(err);
    derf_dna_records_free(&recs);

    /* a missing default file is skipped (1); a missing file that was asked for, a bad header, two records of
     * one region that disagree, an arm without a class, a truncated gzip stream: one line naming the file */
    assert_int_equal(derf_dna_build_promoter(tp("none.fa.gz"), 0, tmpdir, WLEN, 7, 1, err, sizeof err), 1);
    assert_int_equal(derf_dna_build_promoter(tp("none.fa.gz"), 1, tmpdir, WLEN, 7, 1, err, sizeof err), -1);
    one_line(err);
    char bad[4][512];
    rand_seq(s, UP, &rs);
    rand_seq(r1, UP, &rs);
    snprintf(bad[0], sizeof bad[0], ">NM_1_up_60_chr2L_1_f chr2L:1-61\n%s\n", s);
    snprintf(bad[1], sizeof bad[1], ">NM_1_up_60_chr2L_1_f chr2L:1-60\n%s\n>NM_2_up_60_chr2L_1_f chr2L:1-60\n%s\n", s, r1);
    snprintf(bad[2], sizeof bad[2], ">NM_1_up_60_chr2L_1_f chr2L:1-60\n%s\n", s); /* no train or test windows */
    snprintf(bad[3], sizeof bad[3], ">NM_1_up_60_chr2L_1_f\n%s\n", s);
    for (int i = 0; i < 4; i++) {
        write_gz(tp("bad.fa.gz"), bad[i]);
        err[0] = 0;
        assert_int_equal(derf_dna_build_promoter(tp("bad.fa.gz"), 1, tmpdir, WLEN, 7, 1, err, sizeof err), -1);
        one_line(err);
        assert_non_null(strstr(err, "bad.fa.gz"));
    }
    void *gz;
    size_t len;
    assert_int_equal(derf_io_read_file(tp("up.fa.gz"), 1 << 20, &gz, &len, err, sizeof err), 0);
    write_raw(tp("trunc.fa.gz"), gz, len / 2);
    free(gz);
    assert_int_equal(derf_dna_build_promoter(tp("trunc.fa.gz"), 1, tmpdir, WLEN, 7, 1, err, sizeof err), -1);
    one_line(err);
    assert_non_null(strstr(err, "trunc.fa.gz"));
}

/* The out-of-distribution corpus: every record one segment of split test, tokens the letters upper-cased
 * (IUPAC codes -> N), checked letter by letter against the FASTA text; missing / hostile inputs. */
static void test_ood_corpus(void **st) {
    (void)st;
    char err[DERF_ERRLEN], path[512];
    const char *fa = ">c1 first chromosome\nACGTacgtNnRy\nGG\n>c2\nttAA\n>c3\nC\n";
    const char *want[] = {"ACGTACGTNNNNGG", "TTAA", "C"};
    write_gz(tp("fungus.fa.gz"), fa);
    assert_int_equal(derf_dna_build_ood(tp("fungus.fa.gz"), 1, tmpdir, "fungus", 1, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/fungus.dnac", tmpdir);
    derf_dna_corpus c;
    assert_int_equal(derf_dna_corpus_read(path, &c, err, sizeof err), 0);
    assert_string_equal(c.name, "fungus");
    assert_int_equal(c.nseg, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c.seg[i].split, DERF_DNA_TEST);
        assert_int_equal(c.seg[i].source, i);
        assert_int_equal(c.seg[i].start, 0);
        assert_int_equal(c.seg[i].length, strlen(want[i]));
        for (size_t k = 0; k < strlen(want[i]); k++) assert_int_equal(derf_dna_id_char(c.tok[c.seg[i].offset + k]), want[i][k]);
    }
    derf_dna_corpus_free(&c);
    /* missing: skipped (1) unless asked for; bad letters, an empty record, a truncated stream: one line naming the file */
    assert_int_equal(derf_dna_build_ood(tp("none.fa.gz"), 0, tmpdir, "fungus", 1, err, sizeof err), 1);
    assert_int_equal(derf_dna_build_ood(tp("none.fa.gz"), 1, tmpdir, "fungus", 1, err, sizeof err), -1);
    one_line(err);
    const char *bad[] = {">a\nAC*T\n", ">a\n>b\nAC\n", "ACGT\n"};
    for (int i = 0; i < 3; i++) {
        write_gz(tp("badf.fa.gz"), bad[i]);
        assert_int_equal(derf_dna_build_ood(tp("badf.fa.gz"), 1, tmpdir, "fungus2", 1, err, sizeof err), -1);
        one_line(err);
        assert_non_null(strstr(err, "badf.fa.gz"));
    }
    void *gz;
    size_t len;
    char big[8000];
    size_t k = (size_t)sprintf(big, ">x\n");
    uint64_t s = tu_seed();
    for (int i = 0; i < 6000; i++) big[k++] = "ACGT"[(int)(tu_uniform(&s) * 4)];
    big[k] = 0;
    write_gz(tp("bigf.fa.gz"), big);
    assert_int_equal(derf_io_read_file(tp("bigf.fa.gz"), 1 << 20, &gz, &len, err, sizeof err), 0);
    write_raw(tp("truncf.fa.gz"), gz, len / 2);
    free(gz);
    assert_int_equal(derf_dna_build_ood(tp("truncf.fa.gz"), 1, tmpdir, "fungus2", 1, err, sizeof err), -1);
    one_line(err);
    snprintf(path, sizeof path, "%s/fungus2.dnac", tmpdir);
    assert_int_not_equal(access(path, F_OK), 0); /* nothing written on errors */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_revcomp),
        cmocka_unit_test(test_maf),
        cmocka_unit_test(test_hostile_inputs),
        cmocka_unit_test(test_corpus_task_files),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_repeat_task),
        cmocka_unit_test(test_upstream_header),
        cmocka_unit_test(test_promoter_task),
        cmocka_unit_test(test_ood_corpus),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
