/* test_hostile.c: the hostile-input corpus. One table of (file, reader or command, expected message): each
 * row makes a hostile file (or FIFO, or option value) in a temp folder, hands it to a library reader or to
 * ./derf, and checks that it is refused with one line containing the expected text and a non-zero exit,
 * within a time limit (a FIFO must not block). The cases are the ones an attack on every reader found
 * (docs/reliability.md); the small fixed files live in tests/hostile/, the rest are made here from a tiny
 * ViT run. Runs ./derf from the repository root (make test builds it first). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include "derf/data.h"
#include "derf/dna.h"
#include "derf/io.h"
#include "derf/safetensors.h"
#include "derf/speech.h"
#include "derf/study.h"
#include "derf/textdata.h"
#include "derf/tokenizer.h"

static char tmpdir[] = "/tmp/derf_test_hostile.XXXXXX";
#include "tmpfiles.h"

/* ---- making files ---------------------------------------------------------------------------- */

static void put_be32(unsigned char *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

/* an IDX images file of n side x side images (gz: gzip'd, with `junk` appended after the stream) */
static void idx_images(const char *path, int n, int side, int gz, const char *junk) {
    size_t len = 16 + (size_t)n * side * side;
    unsigned char *b = malloc(len);
    put_be32(b, 0x803); put_be32(b + 4, (uint32_t)n); put_be32(b + 8, (uint32_t)side); put_be32(b + 12, (uint32_t)side);
    for (size_t i = 16; i < len; i++) b[i] = (unsigned char)(i * 31);
    if (gz) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        gzwrite(g, b, (unsigned)len);
        gzclose(g);
        if (junk) { FILE *f = fopen(path, "ab"); fputs(junk, f); fclose(f); }
    } else {
        write_raw(path, b, len);
    }
    free(b);
}

static void idx_labels(const char *path, int n, int gz, const char *junk) {
    unsigned char b[8 + 64];
    put_be32(b, 0x801); put_be32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) b[8 + i] = (unsigned char)(i % 5); /* the test preset has 5 classes */
    if (gz) {
        gzFile g = gzopen(path, "wb");
        gzwrite(g, b, (unsigned)(8 + n));
        gzclose(g);
        if (junk) { FILE *f = fopen(path, "ab"); fputs(junk, f); fclose(f); }
    } else {
        write_raw(path, b, 8 + (size_t)n);
    }
}

/* a data folder: train and test splits of n images each, of the given sides */
static void dataset(const char *name, int side_train, int side_test, const char *label_junk) {
    char d[512], p[600];
    snprintf(d, sizeof d, "%s/%s", tmpdir, name);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", d); idx_images(p, 16, side_train, 0, NULL);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", d); idx_images(p, 16, side_test, 0, NULL);
    if (label_junk) {
        snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", d); idx_labels(p, 16, 1, label_junk);
    } else {
        snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", d); idx_labels(p, 16, 0, NULL);
    }
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", d); idx_labels(p, 16, 0, NULL);
}

/* Copies a safetensors file with one change: a metadata value set (key/value), a tensor's first element
 * set to x (tensor != NULL), or an extra tensor added (extra != NULL, with n elements). */
static void st_edit(const char *src, const char *dst, const char *key, const char *value, const char *tensor, float x,
                    const char *extra, int extra_n) {
    derf_safetensors st;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_safetensors_read(&st, src, (size_t)1 << 30, err, sizeof err), 0);
    int nt = st.ntensors + (extra != NULL), nm = st.nmeta + 1;
    derf_st_tensor_in *t = calloc((size_t)nt, sizeof *t);
    derf_st_meta *m = calloc((size_t)nm, sizeof *m);
    int64_t (*shapes)[DERF_ST_MAX_DIMS] = calloc((size_t)nt, sizeof *shapes);
    float *copy = malloc(st.data_len + 64), zero[4] = {0};
    memcpy(copy, st.data, st.data_len);
    for (int i = 0; i < st.ntensors; i++) {
        for (int d = 0; d < st.tensors[i].ndim; d++) shapes[i][d] = st.tensors[i].shape[d];
        float *data = copy + (st.tensors[i].data - (const float *)st.data);
        if (tensor && !strcmp(st.tensors[i].name, tensor)) data[0] = x;
        t[i] = (derf_st_tensor_in){st.tensors[i].name, st.tensors[i].ndim, shapes[i], data};
    }
    if (extra) {
        shapes[nt - 1][0] = extra_n;
        t[nt - 1] = (derf_st_tensor_in){extra, 1, shapes[nt - 1], zero};
    }
    int k = 0;
    for (int i = 0; i < st.nmeta; i++)
        if (!key || strcmp(st.meta[i].key, key)) m[k++] = st.meta[i];
    if (key) m[k++] = (derf_st_meta){key, value};
    assert_int_equal(derf_safetensors_write(dst, t, nt, m, k, err, sizeof err), 0);
    free(t); free(m); free(shapes); free(copy);
    derf_safetensors_free(&st);
}

/* a run folder dst holding the tiny ViT run's state with one edit */
static void state_edit(const char *dst, const char *key, const char *value, const char *tensor, float x) {
    char d[512], s[600], o[600];
    snprintf(d, sizeof d, "%s/%s", tmpdir, dst);
    mkdir(d, 0755);
    snprintf(s, sizeof s, "%s/vit/state.safetensors", tmpdir);
    snprintf(o, sizeof o, "%s/state.safetensors", d);
    st_edit(s, o, key, value, tensor, x, NULL, 0);
}

static void speech_corpus(const char *name, const char *rate, const char *samples, size_t audio_samples) {
    char d[512], p[600], txt[512];
    snprintf(d, sizeof d, "%s/%s", tmpdir, name);
    mkdir(d, 0755);
    snprintf(txt, sizeof txt, "# derf speech corpus v1 rate=%s samples=%s utterances=1\n"
             "id\tsplit\tlevel\tlang\tcharacter\toffset\tsamples\ttext\tenglish\nu1\ttrain\tl\tcs\tfish\t0\t0\tx\ty\n",
             rate, samples);
    snprintf(p, sizeof p, "%s/index.tsv", d);
    write_raw(p, txt, strlen(txt));
    unsigned char h[DERF_SPEECH_HEADER_BYTES] = {0};
    memcpy(h, DERF_SPEECH_MAGIC, 8);
    h[8] = 1;
    unsigned long long r = strtoull(rate, NULL, 10);
    for (int k = 0; k < 4; k++) h[12 + k] = (unsigned char)(r >> (8 * k));
    snprintf(p, sizeof p, "%s/audio.bin", d);
    FILE *f = fopen(p, "wb");
    fwrite(h, 1, sizeof h, f);
    for (size_t i = 0; i < audio_samples; i++) { int16_t z = 0; fwrite(&z, 2, 1, f); }
    fclose(f);
}

static void dna_task(const char *name, int n, int len, int with_val) {
    uint8_t *sp = malloc((size_t)n), *lb = malloc((size_t)n), *tk = malloc((size_t)n * len);
    for (int i = 0; i < n; i++) {
        sp[i] = (uint8_t)(with_val ? i % 3 : (i % 2) * 2);
        lb[i] = (uint8_t)(i % 2);
    }
    for (int i = 0; i < n * len; i++) tk[i] = (uint8_t)(DERF_DNA_A + i % 4);
    derf_dna_task t = {"hostile", n, len, 2, sp, lb, tk};
    /* written without the reader's checks: the writer accepts any shape */
    char err[DERF_ERRLEN];
    assert_int_equal(derf_dna_task_write(tp(name), &t, err, sizeof err), 0);
    free(sp); free(lb); free(tk);
}

static void fifo(const char *name) { assert_int_equal(mkfifo(tp(name), 0600), 0); }

/* ---- readers called directly (for the files no command reads cheaply) --------------------------- */

static int rd_idx(const char *p, char *e, size_t n) {
    int c, r, k; uint8_t *px = NULL;
    int rc = derf_idx_read_images(p, &c, &r, &k, &px, e, n);
    free(px);
    return rc;
}
static int rd_shard(const char *p, char *e, size_t n) {
    derf_shard s;
    int rc = derf_shard_read(p, &s, e, n);
    if (!rc) derf_shard_free(&s);
    return rc;
}
static int rd_vocab(const char *p, char *e, size_t n) {
    derf_tokenizer *t = derf_tok_load(p, p, DERF_TOK_GPT2, e, n);
    if (t) derf_tok_free(t);
    return t ? 0 : -1;
}
static int rd_speech(const char *p, char *e, size_t n) {
    derf_speech_corpus c;
    int rc = derf_speech_read(p, &c, e, n);
    if (!rc) derf_speech_free(&c);
    return rc;
}
static int rd_wav(const char *p, char *e, size_t n) {
    float *x = NULL; size_t len;
    int rc = derf_audio_load(p, 16000, &x, &len, NULL, NULL, e, n);
    free(x);
    return rc;
}
static int rd_fasta(const char *p, char *e, size_t n) {
    derf_dna_records rs = {0};
    int rc = derf_dna_read_fasta(p, &rs, e, n);
    derf_dna_records_free(&rs);
    return rc;
}
static int rd_maf(const char *p, char *e, size_t n) {
    derf_dna_records rs = {0};
    int rc = derf_dna_read_maf(p, "hg19", &rs, e, n);
    derf_dna_records_free(&rs);
    return rc;
}
static int rd_dnac(const char *p, char *e, size_t n) {
    derf_dna_corpus c;
    memset(&c, 0, sizeof c);
    int rc = derf_dna_corpus_read(p, &c, e, n);
    if (!rc) derf_dna_corpus_free(&c);
    return rc;
}
static int rd_dnat(const char *p, char *e, size_t n) {
    derf_dna_task t;
    int rc = derf_dna_task_read(p, &t, e, n);
    if (!rc) derf_dna_task_free(&t);
    return rc;
}
static int rd_study(const char *p, char *e, size_t n) {
    derf_cls_result r;
    int rc = derf_study_result_load(p, "derf", 0, NULL, &r, e, n);
    return rc < 0 ? -1 : 0;
}
static int rd_st(const char *p, char *e, size_t n) {
    derf_safetensors st;
    int rc = derf_safetensors_read(&st, p, (size_t)1 << 30, e, n);
    if (!rc) derf_safetensors_free(&st);
    return rc;
}

/* ---- the table ------------------------------------------------------------------------------- */

typedef struct {
    const char *file;                          /* what the row feeds (for the failure message) */
    const char *cmd;                           /* ./derf arguments, %s = the temp folder (used up to 3 times) */
    int (*reader)(const char *, char *, size_t); /* or: a library reader given tmpdir/file */
    const char *want;                          /* expected text of the one error line */
} hostile_case;

static const hostile_case CASES[] = {
    /* IDX datasets of another image size: refused before the first use, by every command that reads them */
    {"d14: 14x14 images", "train --data %s/d14 --preset test --batch 4 --epochs 1 --threads 1 --quiet", NULL, "training images are 14x14"},
    {"dtest14: 14x14 test split", "train --data %s/dtest14 --preset test --batch 4 --epochs 1 --threads 1 --quiet", NULL, "test images are 14x14"},
    {"d1: 1x1 training images", "eval %s/vit/model.safetensors --data %s/dtrain1 --train-loss", NULL, "training images are 1x1"},
    {"d1: 1x1 training images", "fd --classifier %s/vit/model.safetensors --data %s/dtrain1 --train --n 4", NULL, "training images are 1x1"},
    {"dtest14: 14x14 test split", "compare --data %s/dtest14 --preset test --batch 4 --epochs 1 --threads 1 --quiet --norms derf --seeds 1 --out %s/cmp", NULL, "test images are 14x14"},
    {"dgz: gzip labels + trailing garbage", "train --data %s/dgz --preset test --batch 4 --epochs 1 --threads 1 --quiet", NULL, "trailing bytes after the gzip stream"},
    {"idx.fifo", NULL, rd_idx, "not a regular file"},
    /* checkpoints: the validation policy */
    {"nan.safetensors", "eval %s/nan.safetensors --data %s/d8", NULL, "holds NaN"},
    {"inf.safetensors", "eval %s/inf.safetensors --data %s/d8", NULL, "holds an infinity"},
    {"nan.safetensors", "fd --classifier %s/nan.safetensors --data %s/d8 --noise --n 4", NULL, "holds NaN"},
    {"extra.safetensors", "eval %s/extra.safetensors --data %s/d8", NULL, "'bogus.weight' is not part of the model"},
    {"empty.safetensors", "eval %s/empty.safetensors --data %s/d8", NULL, "'empty' is not part of the model"},
    {"ckpt.fifo", "eval %s/ckpt.fifo --data %s/d8", NULL, "not a regular file"},
    {"ckpt.fifo", "sample %s/ckpt.fifo", NULL, "not a regular file"},
    {"ckpt.fifo", "sample-dit %s/ckpt.fifo", NULL, "not a regular file"},
    /* training states with damaged metadata or values */
    {"s_step_empty", "train --resume %s/s_step_empty --threads 1 --quiet", NULL, "bad step ''"},
    {"s_step_huge", "train --resume %s/s_step_huge --threads 1 --quiet", NULL, "bad step '99999999999'"},
    {"s_step_garbage", "train --resume %s/s_step_garbage --threads 1 --quiet", NULL, "bad step '12abc'"},
    {"s_rng_empty", "train --resume %s/s_rng_empty --threads 1 --quiet", NULL, "bad RNG state"},
    {"s_rng_huge", "train --resume %s/s_rng_huge --threads 1 --quiet", NULL, "bad RNG state"},
    {"s_rng_even", "train --resume %s/s_rng_even --threads 1 --quiet", NULL, "bad RNG state"},
    {"s_args_garbage", "train --resume %s/s_args_garbage --threads 1 --quiet", NULL, "no stored training options"},
    {"s_args_types", "train --resume %s/s_args_types --threads 1 --quiet", NULL, "stored training options are damaged"},
    {"s_nan", "train --resume %s/s_nan --threads 1 --quiet", NULL, "holds NaN"},
    {"s_adamv_neg", "train --resume %s/s_adamv_neg --threads 1 --quiet", NULL, "never negative"},
    {"s_fifo", "train --resume %s/s_fifo --threads 1 --quiet", NULL, "not a regular file"},
    /* option values */
    {"--out ''", "train --out '' --threads 1", NULL, "--out is empty"},
    {"--resume ''", "train --resume '' --threads 1", NULL, "--resume is empty"},
    {"--data ''", "train-lm --data ''", NULL, "--data is empty"},
    {"--preset bogus", "train-speech --preset bogus --data %s/sp_ok", NULL, "unknown wav2vec preset 'bogus'"},
    {"--crop 400", "train-speech --crop 400 --data %s/sp_ok --threads 1", NULL, "--crop 400 gives 1 frames"},
    /* speech corpora */
    {"sp_rate1", "train-speech --data %s/sp_rate1 --threads 1 --quiet", NULL, "sample rate"},
    {"sp_rate_wrap", "train-speech --data %s/sp_rate_wrap --threads 1 --quiet", NULL, "sample rate"},
    {"sp_samples_wrap", "train-speech --data %s/sp_samples_wrap --threads 1 --quiet", NULL, "sample count"},
    {"sp_8k", "train-speech --data %s/sp_8k --threads 1 --quiet", NULL, "trains on 16000 Hz"},
    {"sp_fifo", NULL, rd_speech, "not a regular file"},
    {"wav.fifo", NULL, rd_wav, "not a regular file"},
    /* DNA */
    {"len1.dnat", "train-dna --task %s/len1.dnat --kmer 8", NULL, "longer than the task's sequences"},
    {"noval.dnat", "train-dna --task %s/noval.dnat --kmer 2", NULL, "a split is empty"},
    {"noval.dnat", NULL, rd_dnat, "a split is empty"},
    {"huge.maf", NULL, rd_maf, "bad coordinates"},
    {"corpus.fifo", NULL, rd_dnac, "not a regular file"},
    {"corpus.fifo", "train-dna --corpus %s/corpus.fifo --steps 1", NULL, "not a regular file"},
    {"fa.fifo", NULL, rd_fasta, "not a regular file"},
    /* token shards, GPT-2 vocabulary */
    {"shard.fifo", NULL, rd_shard, "not a regular file"},
    {"vocab.fifo", NULL, rd_vocab, "not a regular file"},
    {"st.fifo", NULL, rd_st, "not a regular file"},
    /* study results (the fixed files in tests/hostile/) */
    {"study_steps_huge.json", NULL, rd_study, "field 'steps'"},
    {"study_steps_neg.json", NULL, rd_study, "field 'steps'"},
    {"study_acc_string.json", NULL, rd_study, "field 'test_acc'"},
    {"study_class_acc.json", NULL, rd_study, "field 'class_acc'"},
    {"study_seed_string.json", NULL, rd_study, "lacks spec/options/diverged/seed"},
};

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int run_case(const hostile_case *c, char *err, size_t errlen) {
    if (c->reader) {
        err[0] = 0;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", tmpdir, c->file);
        int rc = c->reader(p, err, errlen);
        if (err[0]) strncat(err, "\n", errlen - strlen(err) - 1);
        return rc ? 1 : 0;
    }
    char args[1024], cmd[2048], ep[600];
    snprintf(args, sizeof args, c->cmd, tmpdir, tmpdir, tmpdir);
    snprintf(ep, sizeof ep, "%s/stderr.txt", tmpdir);
    /* timeout: a reader that blocks on a FIFO fails the row instead of hanging the suite */
    snprintf(cmd, sizeof cmd, "timeout 60 ./derf %s 2>%s >/dev/null </dev/null", args, ep);
    int st = system(cmd);
    FILE *f = fopen(ep, "r");
    size_t n = f ? fread(err, 1, errlen - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int setup(void **state) {
    if (tmp_setup(state)) return -1;
    dataset("d8", 8, 8, NULL);
    dataset("d14", 14, 14, NULL);
    dataset("dtest14", 8, 14, NULL);
    dataset("dtrain1", 1, 8, NULL);
    dataset("dgz", 8, 8, "GARBAGE after the stream");
    /* a tiny ViT run (preset test: 8x8 images): a real checkpoint and training state to damage */
    if (sh("./derf train --data %s/d8 --preset test --batch 4 --epochs 1 --threads 1 --quiet --out %s/vit >/dev/null",
           tmpdir, tmpdir)) {
        fprintf(stderr, "the tiny ViT run failed\n");
        return -1;
    }
    char m[600];
    snprintf(m, sizeof m, "%s/vit/model.safetensors", tmpdir);
    st_edit(m, tp("nan.safetensors"), NULL, NULL, "head.weight", NAN, NULL, 0);
    st_edit(m, tp("inf.safetensors"), NULL, NULL, "head.weight", INFINITY, NULL, 0);
    st_edit(m, tp("extra.safetensors"), NULL, NULL, NULL, 0, "bogus.weight", 4);
    st_edit(m, tp("empty.safetensors"), NULL, NULL, NULL, 0, "empty", 0);
    state_edit("s_step_empty", "step", "", NULL, 0);
    state_edit("s_step_huge", "step", "99999999999", NULL, 0);
    state_edit("s_step_garbage", "step", "12abc", NULL, 0);
    state_edit("s_rng_empty", "rng_state", "", NULL, 0);
    state_edit("s_rng_huge", "rng_inc", "99999999999999999999999", NULL, 0);
    state_edit("s_rng_even", "rng_inc", "12", NULL, 0);
    state_edit("s_args_garbage", "train_args", "{not json", NULL, 0);
    state_edit("s_args_types", "train_args", "[\"--epochs\", 2, null]", NULL, 0);
    state_edit("s_nan", NULL, NULL, "adam_m.head.weight", NAN);
    state_edit("s_adamv_neg", NULL, NULL, "adam_v.head.weight", -1.0f);
    mkdir(tp("s_fifo"), 0755);
    fifo("s_fifo/state.safetensors");
    speech_corpus("sp_ok", "16000", "64000", 64000);
    speech_corpus("sp_rate1", "1", "10", 10);
    speech_corpus("sp_rate_wrap", "4294983296", "10", 10);
    speech_corpus("sp_samples_wrap", "16000", "9223372036854775808", 0);
    speech_corpus("sp_8k", "8000", "64000", 64000);
    mkdir(tp("sp_fifo"), 0755);
    fifo("sp_fifo/index.tsv");
    dna_task("len1.dnat", 300, 1, 1);
    dna_task("noval.dnat", 30, 16, 0);
    static const char maf[] = "##maf version=1\na score=0\ns hg19.chr22 9223372036854775000 4 + 9223372036854775800 ACGT\n";
    write_raw(tp("huge.maf"), maf, sizeof maf - 1);
    static const char *fifos[] = {"idx.fifo", "ckpt.fifo", "wav.fifo", "corpus.fifo", "fa.fifo", "shard.fifo", "vocab.fifo", "st.fifo"};
    for (size_t i = 0; i < sizeof fifos / sizeof fifos[0]; i++) fifo(fifos[i]);
    if (sh("cp tests/hostile/*.json %s/", tmpdir)) return -1;
    return 0;
}

static void test_hostile_corpus(void **state) {
    (void)state;
    int bad = 0, n = (int)(sizeof CASES / sizeof CASES[0]);
    for (int i = 0; i < n; i++) {
        static char err[16384];
        int rc = run_case(&CASES[i], err, sizeof err);
        int ok = rc != 0 && rc != 124 && rc < 128 && lines(err) == 1 && strstr(err, CASES[i].want);
        if (!ok) {
            bad++;
            fprintf(stderr, "hostile case %d (%s, %s): rc %d, stderr [%s]; wanted one line with '%s'\n", i, CASES[i].file,
                    CASES[i].cmd ? CASES[i].cmd : "reader", rc, err, CASES[i].want);
        }
    }
    fprintf(stderr, "# %d hostile cases, %d refused as expected\n", n, n - bad);
    assert_int_equal(bad, 0);
}

/* The controls: the undamaged files load, and --allow-nonfinite lets a NaN checkpoint through on purpose. */
static void test_controls(void **state) {
    (void)state;
    assert_int_equal(sh("./derf eval %s/vit/model.safetensors --data %s/d8 >/dev/null 2>&1", tmpdir, tmpdir), 0);
    assert_int_equal(sh("./derf eval %s/nan.safetensors --allow-nonfinite --data %s/d8 >/dev/null 2>&1", tmpdir, tmpdir), 0);
    char err[DERF_ERRLEN], p[600];
    snprintf(p, sizeof p, "%s/vit/state.safetensors", tmpdir);
    assert_int_equal(rd_st(p, err, sizeof err), 0);
    assert_int_equal(rd_dnat(tp("len1.dnat"), err, sizeof err), 0); /* a valid task: only --kmer 8 is refused */
    assert_int_equal(rd_speech(tp("sp_ok"), err, sizeof err), 0);
}

/* A file-size limit: the write fails with EFBIG and one line (SIGXFSZ is ignored), and no temp file is left. */
static void test_file_size_limit(void **state) {
    (void)state;
    char ep[600];
    snprintf(ep, sizeof ep, "%s/efbig.txt", tmpdir);
    int st = sh("sh -c 'ulimit -f 1; exec ./derf functions erf dyt --plot %s/big.svg' >/dev/null 2>%s", tmpdir, ep);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    char err[4096];
    FILE *f = fopen(ep, "r");
    assert_non_null(f);
    size_t n = fread(err, 1, sizeof err - 1, f);
    fclose(f);
    err[n] = 0;
    if (!strstr(err, "File too large")) fprintf(stderr, "stderr: [%s]\n", err);
    assert_non_null(strstr(err, "File too large"));
    assert_int_equal(lines(err), 1);
    assert_int_equal(sh("ls %s | grep -q 'big.svg'", tmpdir) == 0, 0); /* neither the file nor its temp */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_corpus),
        cmocka_unit_test(test_controls),
        cmocka_unit_test(test_file_size_limit),
    };
    return cmocka_run_group_tests(tests, setup, tmp_teardown);
}
