/* test_faults.c: every trainer survives kill -9. For each model (ViT, GPT-2, DiT, wav2vec, HyenaDNA) a small run of
 * ./derf is made straight, then again while it is killed with SIGKILL at random moments and continued with --resume
 * (from scratch when it died before its first checkpoint) until it finishes: its final weights, AdamW moments and EMA
 * equal the straight run's bit for bit, its log holds every training step exactly once, every file left under
 * a final name is a whole safetensors file, and no temporary file of a killed run is left at the end. DERF_FAULT_TRIES (default 3) sets the killed runs per model; the delays
 * are drawn from DERF_TEST_SEED. Then a divergence forced at one step (every model): exit 3, the last good
 * checkpoint kept, the divergence logged. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "derf/dna.h"
#include "derf/io.h"
#include "derf/runlog.h"
#include "derf/safetensors.h"
#include "derf/speech.h"
#include "derf/textdata.h"
#include "derf/train.h"

static char tmpdir[] = "/tmp/derf_test_faults.XXXXXX";
#include "tmpfiles.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Starts `ENV ./derf ARGS --out DIR` (or `--resume DIR`) with stderr to DIR.err; kills it after delay seconds
 * (delay < 0: never). Returns the exit status, or -9 when it was killed. */
static int run_env(const char *env, const char *args, const char *dir, int resume, double delay) {
    char cmd[2048];
    if (resume) snprintf(cmd, sizeof cmd, "%s exec ./derf %s --resume %s --threads 1 2>>%s.err >/dev/null", env, args, dir, dir);
    else snprintf(cmd, sizeof cmd, "%s exec ./derf %s --out %s 2>>%s.err >/dev/null", env, args, dir, dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    int status = 0;
    if (delay >= 0) {
        double t0 = now_s();
        while (now_s() - t0 < delay) {
            if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            usleep(2000);
        }
        kill(pid, SIGKILL);
    }
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return -9;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
static int run(const char *args, const char *dir, int resume, double delay) { return run_env("", args, dir, resume, delay); }

static int exists(const char *dir, const char *file) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return access(p, F_OK) == 0;
}

/* dir_a/file and dir_b/file hold the same tensor bytes (the metadata may differ: the stored options name the folder) */
static void same_data(const char *a, const char *b, const char *file) {
    char pa[700], pb[700], err[DERF_ERRLEN];
    snprintf(pa, sizeof pa, "%s/%s", a, file);
    snprintf(pb, sizeof pb, "%s/%s", b, file);
    derf_safetensors sa, sb;
    if (derf_safetensors_read(&sa, pa, (size_t)1 << 30, err, sizeof err)) fail_msg("%s", err);
    if (derf_safetensors_read(&sb, pb, (size_t)1 << 30, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(sa.ntensors, sb.ntensors);
    assert_int_equal(sa.data_len, sb.data_len);
    if (memcmp(sa.data, sb.data, sa.data_len)) fail_msg("%s differs from %s", pb, pa);
    derf_safetensors_free(&sa);
    derf_safetensors_free(&sb);
}

/* The straight run of args into dir; returns its wall time. */
static double straight(const char *args, const char *dir) {
    double t0 = now_s();
    int rc = run(args, dir, 0, -1);
    if (rc) fail_msg("./derf %s --out %s: exit %d", args, dir, rc);
    return now_s() - t0;
}

/* A run of args killed at random moments (up to 4 times), resumed until it ends; compared with the straight run a. */
static void killed(const char *args, const char *a, const char *name, int steps, double wall, uint64_t *s,
                   const char *const *files, int nfiles) {
    char b[600];
    snprintf(b, sizeof b, "%s", tp(name));
    int kills = 0, rc;
    for (;;) {
        const int resume = exists(b, "state.safetensors");
        double delay = kills < 4 ? (0.05 + 0.9 * tu_uniform(s)) * wall : -1;
        rc = run(args, b, resume, delay);
        if (rc != -9) break;
        if (!kills++) { /* what a kill in the middle of a checkpoint leaves: removed by the next start in the folder */
            char err[DERF_ERRLEN], p[700];
            snprintf(p, sizeof p, "%s/state.safetensors.tmp.99999", b);
            if (!derf_io_mkdirs(b, err, sizeof err)) write_raw(p, "half", 4);
        }
        for (int i = 0; i < nfiles; i++) /* what a kill leaves under a final name is whole */
            if (exists(b, files[i])) {
                char p[700], err[DERF_ERRLEN];
                derf_safetensors st;
                snprintf(p, sizeof p, "%s/%s", b, files[i]);
                if (derf_safetensors_read(&st, p, (size_t)1 << 30, err, sizeof err)) fail_msg("after a kill: %s", err);
                derf_safetensors_free(&st);
            }
    }
    if (rc) fail_msg("%s: exit %d after %d kills (see %s.err)", name, rc, kills, b);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q '\\.tmp\\.'", b);
    if (system(cmd) == 0) fail_msg("%s: temporary files of a killed run are left in the run folder", name);
    print_message("%s: killed %d times, then finished\n", name, kills);
    for (int i = 0; i < nfiles; i++) same_data(a, b, files[i]);
    static const char *const key[] = {"step"};
    double v[512];
    int n = derf_runlog_read(b, "train", key, 1, v, 512);
    assert_int_equal(n, steps);
    for (int i = 0; i < n; i++)
        if (v[i] != i + 1) fail_msg("%s: train record %d has step %g (a duplicated or missing step)", name, i, v[i]);
}

static int tries(void) {
    const char *e = getenv("DERF_FAULT_TRIES");
    int n = e ? atoi(e) : 3;
    return n > 0 ? n : 1;
}

/* A divergence forced after 5 steps (derf_fit's test hook: the next loss is NaN): exit 3, the checkpoint of step 5
 * kept (the run checkpoints every step), a "diverged" record and no "final" one. */
static void diverges(const char *model, const char *args) {
    char d[600], path[700], err[DERF_ERRLEN];
    snprintf(d, sizeof d, "%s-div", tp(model));
    assert_int_equal(run_env("DERF_TEST_DIVERGE_AT=5", args, d, 0, -1), 3);
    snprintf(path, sizeof path, "%s/state.safetensors", d);
    derf_safetensors sf;
    if (derf_safetensors_read(&sf, path, (size_t)1 << 30, err, sizeof err)) fail_msg("%s: no checkpoint kept: %s", model, err);
    assert_string_equal(derf_safetensors_meta(&sf, "step"), "5");
    derf_safetensors_free(&sf);
    static const char *const key[] = {"step"};
    double v[8];
    assert_int_equal(derf_runlog_read(d, "diverged", key, 1, v, 8), 1);
    assert_true(v[0] == 5);
    assert_int_equal(derf_runlog_read(d, "final", key, 1, v, 8), 0);
}

static void kill_test(const char *model, const char *args, int steps, const char *const *files, int nfiles) {
    uint64_t s = tu_seed() ^ (uint64_t)strlen(model) * 0x9E3779B97F4A7C15ULL;
    char a[600], name[64];
    snprintf(a, sizeof a, "%s", tp(model));
    double wall = straight(args, a);
    for (int k = 0; k < tries(); k++) {
        snprintf(name, sizeof name, "%s-k%d", model, k);
        killed(args, a, name, steps, wall, &s, files, nfiles);
    }
    diverges(model, args);
}

static const char *const WITH_EMA[] = {"state.safetensors", "model.safetensors", "model_ema.safetensors"};
static const char *const NO_EMA[] = {"state.safetensors", "model.safetensors"};

static void test_vit(void **st) {
    (void)st;
    kill_test("vit", "train --dim 16 --depth 2 --heads 2 --train-limit 64 --test-limit 32 --batch 16 --epochs 3 --log-every 1 "
                     "--threads 1 --ema 0.9 --no-eval-train --quiet --ckpt-every 1", 12, WITH_EMA, 3);
}

static void test_gpt2(void **st) {
    (void)st;
    static uint16_t t[4000];
    char err[DERF_ERRLEN], args[600];
    assert_int_equal(derf_io_mkdirs(tp("text"), err, sizeof err), 0);
    for (int part = 0; part < 2; part++) {
        int n = part ? 600 : 4000;
        for (int i = 0; i < n; i++) t[i] = (uint16_t)((i * 7 + i / 5) % 48);
        assert_int_equal(derf_shard_write(tp(part ? "text/val.bin" : "text/train.bin"), t, (size_t)n, 48, err, sizeof err), 0);
    }
    snprintf(args, sizeof args, "train-lm --preset test --data %s --steps 12 --batch 4 --seq 16 --accum 2 --warmup 2 "
                                "--eval-every 4 --eval-windows 5 --log-every 1 --threads 1 --quiet --ckpt-every 1", tp("text"));
    kill_test("gpt2", args, 12, NO_EMA, 2);
}

static void test_dit(void **st) {
    (void)st;
    kill_test("dit", "train-dit --dim 16 --depth 2 --heads 2 --steps 12 --batch 8 --train-limit 64 --eval-train-n 16 "
                     "--log-every 1 --threads 1 --quiet --ckpt-every 1", 12, WITH_EMA, 3);
}

static void test_wav2vec(void **st) {
    (void)st;
    enum { NU = 18, LEN = 9000 };
    static int16_t audio[NU * LEN];
    static derf_utt u[NU];
    static char ids[NU][8];
    uint64_t s = tu_seed();
    for (int i = 0; i < NU; i++) {
        for (int k = 0; k < LEN; k++) audio[i * LEN + k] = (int16_t)(8000 * sin(0.05 * (i % 5 + 3) * k) + 500 * (tu_uniform(&s) - 0.5));
        snprintf(ids[i], sizeof ids[i], "u%d", i);
        u[i] = (derf_utt){ids[i], "lvl", "cs", i % 2 ? "font_small" : "font_big", "", "", i < 12 ? 0 : i < 15 ? 1 : 2,
                          (uint64_t)i * LEN, LEN};
    }
    derf_speech_corpus c = {.u = u, .n = NU, .audio = audio, .nsamples = NU * LEN, .rate = 16000};
    char err[DERF_ERRLEN], args[600];
    if (derf_io_mkdirs(tp("speech"), err, sizeof err) || derf_speech_write(tp("speech"), &c, err, sizeof err)) fail_msg("%s", err);
    snprintf(args, sizeof args, "train-speech --preset xxs --data %s --steps 8 --batch 2 --crop 9000 --min-samples 9000 "
                                "--eval-every 4 --train-eval-utts 2 --no-probe --log-every 1 --threads 1 --quiet --ckpt-every 1",
             tp("speech"));
    kill_test("wav2vec", args, 8, NO_EMA, 2);
}

static void write_corpus(const char *path) {
    static const uint8_t P[8] = {7, 8, 9, 10, 10, 9, 8, 7};
    derf_dna_corpus c = {0};
    snprintf(c.name, sizeof c.name, "periodic");
    uint8_t buf[1500];
    for (int sp = 0; sp < 3; sp++)
        for (int g = 0; g < 4; g++) {
            for (int i = 0; i < 1500; i++) buf[i] = P[(i + g) % 8];
            derf_dna_corpus_add(&c, buf, 1500, 100000 * (sp * 4 + g), sp, 0);
        }
    char err[DERF_ERRLEN];
    assert_int_equal(derf_dna_corpus_write(path, &c, err, sizeof err), 0);
    derf_dna_corpus_free(&c);
}

static void test_dna(void **st) {
    (void)st;
    char args[600];
    write_corpus(tp("p.dnac"));
    snprintf(args, sizeof args, "train-dna --corpus %s --ood-corpus none --preset test --seq 64 --batch 4 --steps 10 "
                                "--eval-every 4 --eval-windows 4 --log-every 1 --threads 1 --quiet --ckpt-every 1", tp("p.dnac"));
    kill_test("dna", args, 10, NO_EMA, 2);
}

/* `derf compare --model hyena` end to end on a synthetic corpus and a GC-rich vs AT-rich task: the report has a row
 * per norm, the random-init backbone and the two k-mer baselines (the 1-mer one separates the task) */
static void test_dna_compare(void **st) {
    (void)st;
    char err[DERF_ERRLEN], cmd[1600];
    assert_int_equal(derf_io_mkdirs(tp("dnadata"), err, sizeof err), 0);
    write_corpus(tp("dnadata/human_chr22.dnac"));
    enum { N = 120, L = 64 };
    derf_dna_task t = {.n = N, .len = L, .nclass = 2};
    snprintf(t.name, sizeof t.name, "gc");
    uint8_t split[N], label[N], tok[N * L];
    uint64_t s = tu_seed();
    for (int i = 0; i < N; i++) {
        split[i] = (uint8_t)(i % 5 == 3 ? DERF_DNA_VAL : i % 5 == 4 ? DERF_DNA_TEST : DERF_DNA_TRAIN);
        label[i] = (uint8_t)(i % 2);
        for (int k = 0; k < L; k++) {
            int gc = tu_uniform(&s) < (label[i] ? 0.8 : 0.2), b = tu_uniform(&s) < 0.5;
            tok[i * L + k] = (uint8_t)(DERF_DNA_A + (gc ? 1 + b : 3 * b)); /* A C G T: C/G or A/T */
        }
    }
    t.split = split;
    t.label = label;
    t.tok = tok;
    assert_int_equal(derf_dna_task_write(tp("dnadata/gc.dnat"), &t, err, sizeof err), 0);
    snprintf(cmd, sizeof cmd, "./derf compare --model hyena --smoke --threads 1 --quiet --norms layernorm,derf --tasks gc "
                              "--data %s --ood-corpus none --out %s >/dev/null 2>%s.err", tp("dnadata"), tp("dnacmp"), tp("dnacmp"));
    assert_int_equal(system(cmd), 0);
    char *md = NULL;
    size_t len = 0;
    snprintf(cmd, sizeof cmd, "%s/report.md", tp("dnacmp"));
    if (derf_io_read_file(cmd, 1 << 20, (void **)&md, &len, err, sizeof err)) fail_msg("%s", err);
    static const char *const want[] = {"| layernorm |", "| derf |", "| random init, layernorm |", "| 1-mer logistic regression |",
                                       "| 4-mer logistic regression |", "gc acc (%)"};
    for (int i = 0; i < 6; i++)
        if (!strstr(md, want[i])) fail_msg("report.md lacks '%s':\n%s", want[i], md);
    /* the 1-mer row: 100% on a task that base composition separates */
    const char *row = strstr(md, "| 1-mer logistic regression |");
    assert_non_null(strstr(row, "100.00 ± 0.00"));
    free(md);
}

int main(void) {
    if (access("./derf", X_OK)) {
        fprintf(stderr, "test_faults: ./derf is not built (make derf)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vit), cmocka_unit_test(test_gpt2), cmocka_unit_test(test_dit),
        cmocka_unit_test(test_wav2vec), cmocka_unit_test(test_dna),  cmocka_unit_test(test_dna_compare),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
