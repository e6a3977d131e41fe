/* make_seeds.c: writes the seed corpora of the libFuzzer targets (tests/fuzz/fuzz_*.c) into OUT/<target>/:
 * small files made by derf's own writers (safetensors, training state, IDX, shards, speech corpus, .dnac,
 * .dnat, study results), slices of the real installed files (Fashion-MNIST, the GPT-2 vocabulary, the text
 * sources, chr22 MAF, Drosophila FASTA; skipped where absent) and hand-written specs and argument lists.
 * Usage: make_seeds OUT. Nothing of it is stored in the repository. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <sndfile.h>
#include "derf/data.h"
#include "derf/dna.h"
#include "derf/io.h"
#include "derf/safetensors.h"
#include "derf/speech.h"
#include "derf/study.h"
#include "derf/textdata.h"
#include "derf/tokenizer.h"
#include "derf/train.h"

static const char *out;
static char err[DERF_ERRLEN];

static const char *path(const char *target, const char *name) {
    static char p[2][1024];
    static int k;
    k ^= 1;
    snprintf(p[k], sizeof p[k], "%s/%s", out, target);
    mkdir(p[k], 0755);
    snprintf(p[k], sizeof p[k], "%s/%s/%s", out, target, name);
    return p[k];
}

static void put(const char *target, const char *name, const void *d, size_t n) {
    if (derf_io_write_file(path(target, name), d, n, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
}

static void check(int rc) { if (rc) { fprintf(stderr, "make_seeds: %s\n", err); exit(1); } }

/* the first max bytes of a file (after gunzip when gz), or 0 bytes if it is absent */
static size_t slurp(const char *file, int gz, unsigned char *buf, size_t max) {
    gzFile g = gzopen(file, "rb"); /* reads plain files too */
    if (!g) return 0;
    int r = gzread(g, buf, (unsigned)max);
    gzclose(g);
    (void)gz;
    return r > 0 ? (size_t)r : 0;
}

static void gz_put(const char *target, const char *name, const void *d, size_t n) {
    gzFile g = gzopen(path(target, name), "wb9");
    if (!g) exit(1);
    gzwrite(g, d, (unsigned)n);
    gzclose(g);
}

static void seeds_st(void) {
    derf_params p;
    int sw[2] = {2, 3}, sb[1] = {3};
    derf_params_init(&p);
    derf_params_add(&p, "w", 2, sw, 1);
    derf_params_add(&p, "b", 1, sb, 0);
    derf_params_alloc(&p);
    for (size_t i = 0; i < p.total; i++) { p.params[i] = 0.1f * (float)i; p.m[i] = 0.01f; p.v[i] = 0.001f; }
    float ema[9] = {0};
    derf_st_meta meta[1] = {{"model", "fuzz"}};
    derf_run_state s = {&p, ema, 7, {12345, 6789}, "derf-fuzz-1", meta, 1};
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tmp-state", out);
    mkdir(dir, 0755);
    check(derf_run_save(dir, &s, err, sizeof err));
    const char *names[] = {"state.safetensors", "model.safetensors", "model_ema.safetensors"};
    for (int i = 0; i < 3; i++) {
        char f[1100];
        snprintf(f, sizeof f, "%s/%s", dir, names[i]);
        unsigned char buf[1 << 16];
        size_t n = slurp(f, 0, buf, sizeof buf);
        if (i == 0) put("fuzz_state", "state", buf, n);
        put("fuzz_safetensors", names[i], buf, n);
        remove(f);
    }
    rmdir(dir);
    derf_params_free(&p);
}

static void seeds_idx(void) {
    unsigned char img[16 + 3 * 28 * 28], lab[8 + 3];
    const char *fm = DERF_FASHION_MNIST_DIR;
    char f[1024];
    snprintf(f, sizeof f, "%s/t10k-images-idx3-ubyte.gz", fm);
    size_t n = slurp(f, 1, img, sizeof img);
    snprintf(f, sizeof f, "%s/t10k-labels-idx1-ubyte.gz", fm);
    size_t m = slurp(f, 1, lab, sizeof lab);
    if (n == sizeof img && m == sizeof lab) { /* three real images with a header that says 3 */
        img[4] = img[5] = img[6] = 0; img[7] = 3;
        lab[4] = lab[5] = lab[6] = 0; lab[7] = 3;
    } else { /* a made-up 3 x 28 x 28 file */
        memset(img, 7, sizeof img);
        memset(lab, 1, sizeof lab);
        unsigned char hi[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28}, hl[8] = {0, 0, 8, 1, 0, 0, 0, 3};
        memcpy(img, hi, 16);
        memcpy(lab, hl, 8);
    }
    unsigned char small[16 + 2 * 4 * 4] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4};
    for (int t = 0; t < 2; t++) {
        const char *tg = t ? "fuzz_idx_gz" : "fuzz_idx";
        put(tg, "images", img, sizeof img);
        put(tg, "labels", lab, sizeof lab);
        put(tg, "small", small, sizeof small);
    }
    gz_put("fuzz_idx", "images.gz", img, sizeof img);
    gz_put("fuzz_idx", "labels.gz", lab, sizeof lab);
}

static void seeds_shard(void) {
    uint16_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (uint16_t)(i * 797 % 50257);
    check(derf_shard_write(path("fuzz_shard", "gpt2.bin"), tok, 64, 50257, err, sizeof err));
    check(derf_shard_write(path("fuzz_shard", "small.bin"), tok, 5, 65536, err, sizeof err));
}

static void seeds_vocab_text(void) {
    static unsigned char a[4096], b[4096], both[8200];
    size_t na = slurp(DERF_GPT2_DIR "/encoder.json", 0, a, sizeof a), nb = slurp(DERF_GPT2_DIR "/vocab.bpe", 0, b, sizeof b);
    memcpy(both, a, na);
    memcpy(both + na, "\n@@\n", 4);
    memcpy(both + na + 4, b, nb);
    put("fuzz_vocab", "gpt2-head", both, na + 4 + nb);
    static const char tiny[] = "{\"a\": 0, \"b\": 1, \"ab\": 2}\n@@\n#version: 0.2\na b\n";
    put("fuzz_vocab", "tiny", tiny, sizeof tiny - 1);
    const char *src[] = {DERF_TEXT_SRC "/austen", DERF_TEXT_SRC "/kjv", DERF_TEXT_SRC "/brown"};
    for (int i = 0; i < 3; i++) {
        char f[1024];
        snprintf(f, sizeof f, "%s", src[i]);
        struct stat st;
        if (stat(f, &st) || S_ISDIR(st.st_mode)) continue;
        size_t n = slurp(f, 0, b, 2048);
        char name[16];
        snprintf(name, sizeof name, "text%d", i);
        put("fuzz_tokenizer", name, b, n);
    }
    static const char u[] = "Hello, world! It's 2024.\n  \t\xe2\x80\x94 caf\xc3\xa9 \xf0\x9f\x98\x80 \xff\xfe bad utf8 's 've 'll\n";
    put("fuzz_tokenizer", "mixed", u, sizeof u - 1);
}

static void seeds_text(const char *target, const char *const *items, int n) {
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%02d", i);
        put(target, name, items[i], strlen(items[i]));
    }
}

static void seeds_speech(void) {
    derf_speech_corpus c;
    memset(&c, 0, sizeof c);
    int16_t audio[400];
    for (int i = 0; i < 400; i++) audio[i] = (int16_t)(i * 37 % 2000 - 1000);
    derf_utt u[2] = {{"a1", "lvl", "cs", "fish", "ahoj", "hello", 0, 0, 150}, {"b2", "lvl2", "nl", "fish", "hoi", "hi", 1, 150, 250}};
    c.u = u; c.n = 2; c.audio = audio; c.nsamples = 400; c.rate = 16000;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tmp-speech", out);
    mkdir(dir, 0755);
    check(derf_speech_write(dir, &c, err, sizeof err));
    static unsigned char buf[8192], both[16384];
    char f[1100];
    snprintf(f, sizeof f, "%s/index.tsv", dir);
    size_t ni = slurp(f, 0, buf, sizeof buf);
    memcpy(both, buf, ni);
    memcpy(both + ni, "\n@@\n", 4);
    remove(f);
    snprintf(f, sizeof f, "%s/audio.bin", dir);
    size_t na = slurp(f, 0, both + ni + 4, sizeof both - ni - 4);
    remove(f);
    rmdir(dir);
    put("fuzz_speech", "corpus", both, ni + 4 + na);
    /* WAVs: 16-bit mono 16 kHz, 8-bit stereo 8 kHz, float 44.1 kHz */
    int fmts[3][3] = {{SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 16000}, {SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 2, 8000},
                      {SF_FORMAT_WAV | SF_FORMAT_FLOAT, 1, 44100}};
    for (int k = 0; k < 3; k++) {
        char name[16];
        snprintf(name, sizeof name, "w%d.wav", k);
        SF_INFO info = {0};
        info.samplerate = fmts[k][2];
        info.channels = fmts[k][1];
        info.format = fmts[k][0];
        SNDFILE *s = sf_open(path("fuzz_wav", name), SFM_WRITE, &info);
        if (!s) exit(1);
        float x[200];
        for (int i = 0; i < 200; i++) x[i] = 0.3f * (float)((i * 13) % 17 - 8) / 8.f;
        sf_writef_float(s, x, 200 / fmts[k][1]);
        sf_close(s);
    }
}

static void seeds_dna(void) {
    static unsigned char buf[6000];
    size_t n = slurp(DERF_DNA_DMEL_DEFAULT, 1, buf, sizeof buf);
    if (n) put("fuzz_fasta", "dmel.fa", buf, n);
    static const char fa[] = ">r1 chr2L:100-110\nACGTNacgtn\nAC\n>r2\nGGGCCC\n";
    put("fuzz_fasta", "small.fa", fa, sizeof fa - 1);
    gz_put("fuzz_fasta", "small.fa.gz", fa, sizeof fa - 1);
    n = slurp(DERF_DNA_MAF_DEFAULT, 1, buf, sizeof buf);
    if (n) put("fuzz_maf", "chr22.maf", buf, n);
    static const char maf[] = "##maf version=1\na score=1\ns hg19.chr22 16050000 10 + 51304566 ACGT-ACGTAC\n"
                              "s panTro2.chr22 100 10 - 5000 ACGTTACGTA\n\na\ns hg19.chr22 17000000 4 - 51304566 acgt\n";
    put("fuzz_maf", "small.maf", maf, sizeof maf - 1);
    derf_dna_corpus c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "fuzz");
    uint8_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (uint8_t)(DERF_DNA_A + i % 4);
    derf_dna_corpus_add(&c, ids, 20, 1000, DERF_DNA_TRAIN, 0);
    derf_dna_corpus_add(&c, ids + 20, 12, 5000, DERF_DNA_VAL, 0);
    derf_dna_corpus_add(&c, ids + 32, 8, 9000, DERF_DNA_TEST, 1);
    check(derf_dna_corpus_write(path("fuzz_dnac", "small.dnac"), &c, err, sizeof err));
    derf_dna_corpus_free(&c);
    uint8_t sp[6] = {0, 0, 1, 1, 2, 2}, lb[6] = {0, 1, 0, 1, 0, 1}, tk[6 * 8];
    for (int i = 0; i < 48; i++) tk[i] = (uint8_t)(DERF_DNA_A + (i * 7) % 4);
    derf_dna_task t = {"fuzz-task", 6, 8, 2, sp, lb, tk};
    check(derf_dna_task_write(path("fuzz_dnat", "small.dnat"), &t, err, sizeof err));
}

static void seeds_study(void) {
    derf_cls_result r;
    memset(&r, 0, sizeof r);
    r.test_acc = 0.85f; r.test_acc_ema = 0.86f; r.test_loss = 0.4f; r.test_loss_ema = 0.39f; r.train_loss_eval = 0.3f;
    r.train_loss_eval_ema = 0.31f; r.final_loss = 0.35f; r.steps = 100; r.total_steps = 100; r.epochs_done = 2;
    r.seconds = 12.5; r.images_per_s = 900;
    for (int c = 0; c < DERF_DATASET_CLASSES; c++) r.class_acc[c] = 0.5f + 0.04f * (float)c;
    check(derf_study_result_save(path("fuzz_study", "ok.json"), "derf", 0, "vit tiny | lr 0.001", &r, err, sizeof err));
    r.diverged = 1;
    snprintf(r.diverged_msg, sizeof r.diverged_msg, "training diverged at step 3");
    check(derf_study_result_save(path("fuzz_study", "diverged.json"), "derf", 0, "vit tiny | lr 0.001", &r, err, sizeof err));
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: make_seeds OUT\n"); return 2; }
    out = argv[1];
    mkdir(out, 0755);
    seeds_st();
    seeds_idx();
    seeds_shard();
    seeds_vocab_text();
    seeds_speech();
    seeds_dna();
    seeds_study();
    static const char *const specs[] = {"derf", "dyt", "layernorm", "rmsnorm", "erf+flat=1:noshift", "neg(erf)", "tanh",
                                        "derf+noshift", "isru", "arctan", "erf+flat=0.5", "softsign"};
    seeds_text("fuzz_normspec", specs, (int)(sizeof specs / sizeof specs[0]));
    static const char *const args[] = {"--steps\0" "100\0--lr\0" "0.01", "--out=runs/a\0--smoke\0pos1",
                                       "--norm\0erf+flat=1:noshift\0--prompt\0", "--lr=1e-3\0--steps=5\0--help"};
    static const size_t alen[] = {22, 26, 39, 31};
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "a%d", i);
        put("fuzz_opts", name, args[i], alen[i]);
    }
    return 0;
}
