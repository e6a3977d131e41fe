/* test_mpi.c: data-parallel training under mpirun (2 processes on this machine), through the derf
 * command as a user runs it. Compares against the single-process trainer (itself checked against
 * PyTorch in test_vit/test_gpt2/test_train): 2 processes at global batch B give the losses, gradient
 * norms and evaluations of 1 process at batch B to fp32 tolerance (ViT with drop path, mixup/cutmix,
 * erasing and translation on; GPT-2 with gradient accumulation; DiT; HyenaDNA and Caduceus-PS); a run stopped
 * and resumed under MPI
 * equals an uninterrupted one (also when a 1-process run is continued by 2); weights that drift
 * apart between the processes are found and resynchronised; a process that fails ends the whole job with its message, never hangs;
 * a batch that does not split evenly, a one-process command and (CPU build) --device cuda under mpirun
 * are refused; the GPU choice per local rank refuses fewer GPUs than processes on a machine.
 * The mpirun tests are skipped, with a message, when mpirun is missing or derf was built without MPI. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "derf/dist.h"
#include "derf/dna.h"
#include "derf/io.h"
#include "derf/safetensors.h"
#include "derf/textdata.h"

static char g_dir[] = "/tmp/derf-mpi-XXXXXX";
static const char *g_skip; /* why the tests cannot run here (NULL: they can) */

/* As root (CI) Open MPI wants both the flag and --oversubscribe for 2 processes on a busy machine;
 * no single-copy shared memory (containers often forbid the ptrace it needs); no core binding. */
#define MPIRUN "timeout 60 mpirun -np 2 --allow-run-as-root --oversubscribe --bind-to none " \
               "--mca btl_vader_single_copy_mechanism none --mca orte_base_help_aggregate 0 -x OMP_NUM_THREADS=1 "
#define VIT "train --dim 16 --depth 2 --heads 2 --train-limit 96 --test-limit 50 --batch 16 --epochs 2 " \
            "--log-every 1 --threads 1 --drop-path 0.3 --mixup 0.8 --cutmix 1.0 --erase 0.25 --translate 2 " \
            "--hflip 1 --ema 0.9 --no-eval-train --quiet"

/* Runs a shell command; its stderr goes to g_dir/err.txt and is returned in err. Exit status, or -1. */
static int sh(char *err, size_t errlen, const char *fmt, ...) {
    char cmd[2048], path[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && n < (int)sizeof cmd - 64);
    snprintf(path, sizeof path, "%s/err.txt", g_dir);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >/dev/null 2>%s", path);
    int st = system(cmd);
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(err, 1, errlen - 1, f) : 0;
    err[k] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int ok(const char *what, int rc, const char *err) {
    if (rc) fprintf(stderr, "%s: exit %d, stderr:\n%s\n", what, rc, err);
    return rc == 0;
}

/* The numeric fields of a run's log: for every record of `type`, the values of keys[0..nk) (NAN when
 * absent), in file order. Returns the number of records. */
#define MAXREC 64
static int read_log(const char *run, const char *type, const char *const *keys, int nk, double v[][4]) {
    char path[600], *text = NULL;
    snprintf(path, sizeof path, "%s/%s/log.jsonl", g_dir, run);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t cap = 0;
    int n = 0;
    while (getline(&text, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(text);
        assert_non_null(j);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
        if (cJSON_IsString(t) && !strcmp(t->valuestring, type) && n < MAXREC) {
            for (int k = 0; k < nk; k++) {
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, keys[k]);
                v[n][k] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
            }
            n++;
        }
        cJSON_Delete(j);
    }
    free(text);
    fclose(f);
    return n;
}

/* Records of `type` in runs a and b agree field by field (b's records from skip_b on): the same
 * count (or `want` if > 0) and |x - y| <= 3e-5 (1 + |y|): fp32 sums in another order, logged to 6 digits. */
static void same_records(const char *a, const char *b, const char *type, const char *const *keys, int nk, int want,
                         int skip_b) {
    double va[MAXREC][4], vb[MAXREC][4];
    int na = read_log(a, type, keys, nk, va), nb = read_log(b, type, keys, nk, vb) - skip_b;
    if (want > 0) assert_int_equal(na, want);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++)
        for (int k = 0; k < nk; k++) {
            double x = va[i][k], y = vb[i + skip_b][k];
            if (!(fabs(x - y) <= 3e-5 * (1 + fabs(y)))) {
                fprintf(stderr, "%s vs %s: %s record %d, %s: %.9g vs %.9g\n", a, b, type, i, keys[k], x, y);
                fail();
            }
        }
}

static const char *const TRAIN_KEYS[] = {"step", "loss", "lr", "grad_norm"};

/* The run really had n processes (two one-process runs writing one folder would log the same losses). */
static void processes_were(const char *run, const char *type, int n) {
    static const char *const key[] = {"processes"};
    double v[MAXREC][4];
    int k = read_log(run, type, key, 1, v);
    assert_true(k >= 1);
    for (int i = 0; i < k; i++) assert_true(v[i][0] == n);
}

/* ------------------------------------------------------------------------------- ViT */

static void test_vit_two_processes_equal_one(void **state) {
    (void)state;
    if (g_skip) skip();
    char err[8192];
    int rc = sh(err, sizeof err, "OMP_NUM_THREADS=1 ./derf " VIT " --out %s/vit1", g_dir);
    assert_true(ok("1 process", rc, err));
    rc = sh(err, sizeof err, MPIRUN "./derf " VIT " --out %s/vit2", g_dir);
    assert_true(ok("2 processes", rc, err));
    static const char *const eval[] = {"step", "test_acc", "test_loss", "test_loss_ema"};
    static const char *const fin[] = {"test_acc", "test_loss", "test_acc_ema", "test_loss_ema"};
    processes_were("vit1", "final", 1);
    /* drop path really is on (its masks are the randomness the shards must share) */
    char path[600];
    derf_safetensors st;
    snprintf(path, sizeof path, "%s/vit2/model.safetensors", g_dir);
    assert_int_equal(derf_safetensors_read(&st, path, (size_t)1 << 30, err, sizeof err), 0);
    const char *dp = derf_safetensors_meta(&st, "drop_path");
    assert_non_null(dp);
    assert_float_equal(atof(dp), 0.3, 1e-6);
    derf_safetensors_free(&st);
    processes_were("vit2", "final", 2);
    same_records("vit1", "vit2", "train", TRAIN_KEYS, 4, 12, 0); /* 96 / 16 = 6 steps an epoch */
    same_records("vit1", "vit2", "eval", eval, 4, 1, 0);
    same_records("vit1", "vit2", "final", fin, 4, 1, 0);
}

/* 2 processes, 5 steps, stop; resume under mpirun for the other 7: the records of the uninterrupted
 * 2-process run (and so of the 1-process one) */
static void test_vit_resume_under_mpi(void **state) {
    (void)state;
    if (g_skip) skip();
    char err[8192];
    int rc = sh(err, sizeof err, MPIRUN "./derf " VIT " --max-steps 5 --out %s/vitr", g_dir);
    assert_true(ok("first part", rc, err));
    rc = sh(err, sizeof err, MPIRUN "./derf train --resume %s/vitr --threads 1", g_dir);
    assert_true(ok("resumed", rc, err));
    static const char *const fin[] = {"test_acc", "test_loss", "test_acc_ema", "test_loss_ema"};
    /* vitr's log: steps 1-5, a 'final' of the partial run, then steps 6-12 */
    double v[MAXREC][4];
    assert_int_equal(read_log("vitr", "train", TRAIN_KEYS, 4, v), 12);
    processes_were("vitr", "final", 2);
    static const char *const eval[] = {"step", "test_acc", "test_loss", "test_loss_ema"};
    same_records("vit2", "vitr", "train", TRAIN_KEYS, 4, 12, 0);
    same_records("vit2", "vitr", "eval", eval, 4, 1, 0);
    same_records("vit2", "vitr", "final", fin, 4, 1, 1);
    /* the process count may change at a resume: started alone, continued by 2 */
    rc = sh(err, sizeof err, "OMP_NUM_THREADS=1 ./derf " VIT " --max-steps 5 --out %s/vitr1", g_dir);
    assert_true(ok("first part, 1 process", rc, err));
    rc = sh(err, sizeof err, MPIRUN "./derf train --resume %s/vitr1 --threads 1", g_dir);
    assert_true(ok("resumed by 2 processes", rc, err));
    same_records("vit2", "vitr1", "train", TRAIN_KEYS, 4, 12, 0);
    same_records("vit2", "vitr1", "final", fin, 4, 1, 1);
}

/* ------------------------------------------------------------------------------- GPT-2 */

static void write_shards(void) {
    enum { NT = 5000, NV = 900 };
    static uint16_t t[NT];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    char err[DERF_ERRLEN], path[600];
    for (int part = 0; part < 2; part++) {
        int n = part ? NV : NT;
        for (int i = 0; i < n; i++) { /* a walk over 48 tokens: next = prev + 1..3, mod 48 */
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            t[i] = (uint16_t)(i ? (t[i - 1] + 1 + x % 3) % 48 : 0);
        }
        snprintf(path, sizeof path, "%s/%s.bin", g_dir, part ? "val" : "train");
        assert_int_equal(derf_shard_write(path, t, (size_t)n, 48, err, sizeof err), 0);
    }
}

#define LM "train-lm --preset test --data %s --steps 8 --batch 4 --seq 16 --accum 2 --lr 3e-3 --warmup 2 " \
           "--eval-every 3 --eval-windows 7 --log-every 1 --threads 1 --quiet"

static void test_lm_two_processes_equal_one(void **state) {
    (void)state;
    if (g_skip) skip();
    char err[8192];
    int rc = sh(err, sizeof err, "OMP_NUM_THREADS=1 ./derf " LM " --out %s/lm1", g_dir, g_dir);
    assert_true(ok("1 process", rc, err));
    rc = sh(err, sizeof err, MPIRUN "./derf " LM " --out %s/lm2", g_dir, g_dir);
    assert_true(ok("2 processes", rc, err));
    static const char *const val[] = {"step", "val_loss"};
    static const char *const fin[] = {"val_loss", "train_loss_eval"};
    processes_were("lm1", "start", 1);
    processes_were("lm2", "start", 2);
    same_records("lm1", "lm2", "train", TRAIN_KEYS, 4, 8, 0);
    same_records("lm1", "lm2", "val", val, 2, 4, 0); /* steps 0, 3, 6, 8 */
    same_records("lm1", "lm2", "final", fin, 2, 1, 0);
    /* stop after 4 steps (checkpoint written at the stop), resume under mpirun to 8 */
    rc = sh(err, sizeof err, MPIRUN "./derf " LM " --max-steps 4 --out %s/lmr", g_dir, g_dir);
    assert_true(ok("first part", rc, err));
    rc = sh(err, sizeof err, MPIRUN "./derf train-lm --resume %s/lmr --threads 1", g_dir);
    assert_true(ok("resumed", rc, err));
    processes_were("lmr", "start", 2);
    same_records("lm2", "lmr", "train", TRAIN_KEYS, 4, 8, 0);
    same_records("lm2", "lmr", "final", fin, 2, 1, 1);
}

/* ------------------------------------------------------------------------------- DiT */

#define DIT "train-dit --dim 16 --depth 2 --heads 2 --steps 6 --batch 8 --train-limit 64 --eval-train-n 16 " \
            "--log-every 1 --threads 1 --quiet"

/* DiT on 2 processes = 1 process (the same draws, each process its half of the batch), and a 2-process resume */
static void test_dit_two_processes_equal_one(void **state) {
    (void)state;
    if (g_skip) skip();
    char err[8192];
    int rc = sh(err, sizeof err, "OMP_NUM_THREADS=1 ./derf " DIT " --out %s/dit1", g_dir);
    assert_true(ok("1 process", rc, err));
    rc = sh(err, sizeof err, MPIRUN "./derf " DIT " --out %s/dit2", g_dir);
    assert_true(ok("2 processes", rc, err));
    static const char *const fin[] = {"eval_loss", "eval_loss_ema"};
    processes_were("dit1", "final", 1);
    processes_were("dit2", "final", 2);
    same_records("dit1", "dit2", "train", TRAIN_KEYS, 4, 6, 0);
    same_records("dit1", "dit2", "final", fin, 2, 1, 0);
    rc = sh(err, sizeof err, MPIRUN "./derf " DIT " --max-steps 3 --out %s/ditr", g_dir);
    assert_true(ok("first part", rc, err));
    rc = sh(err, sizeof err, MPIRUN "./derf train-dit --resume %s/ditr --threads 1", g_dir);
    assert_true(ok("resumed", rc, err));
    same_records("dit2", "ditr", "train", TRAIN_KEYS, 4, 6, 0);
    same_records("dit2", "ditr", "final", fin, 2, 1, 1);
}

/* ------------------------------------------------------------------------------- DNA */

/* HyenaDNA (next-token) and Caduceus-PS (masked LM: the two halves of a batch hold different numbers of masked
 * positions, so each process weights its gradients by its share of them) pretraining on 2 processes = 1 process */
static void test_dna_two_processes_equal_one(void **state) {
    (void)state;
    if (g_skip) skip();
    static const uint8_t P[8] = {7, 8, 9, 10, 10, 9, 8, 7};
    derf_dna_corpus c = {0};
    snprintf(c.name, sizeof c.name, "periodic");
    uint8_t buf[1500];
    for (int sp = 0; sp < 3; sp++)
        for (int g = 0; g < 4; g++) {
            for (int i = 0; i < 1500; i++) buf[i] = P[(i * (g + 1) / 2 + g) % 8];
            derf_dna_corpus_add(&c, buf, 1500, 100000 * (sp * 4 + g), sp, 0);
        }
    char err[8192], path[600];
    snprintf(path, sizeof path, "%s/p.dnac", g_dir);
    assert_int_equal(derf_dna_corpus_write(path, &c, err, sizeof err), 0);
    derf_dna_corpus_free(&c);
    static const char *const fin[] = {"val_loss", "train_loss_eval"};
    for (int arch = 0; arch < 2; arch++) {
        const char *a = arch ? "--arch caduceus --preset test" : "--preset test";
        char r1[32], r2[32];
        snprintf(r1, sizeof r1, "dna%d-1", arch);
        snprintf(r2, sizeof r2, "dna%d-2", arch);
        int rc = sh(err, sizeof err, "OMP_NUM_THREADS=1 ./derf train-dna %s --corpus %s --ood-corpus none --seq 64 --batch 4 "
                    "--steps 6 --eval-every 3 --eval-windows 4 --log-every 1 --threads 1 --quiet --out %s/%s", a, path, g_dir, r1);
        assert_true(ok("1 process", rc, err));
        rc = sh(err, sizeof err, MPIRUN "./derf train-dna %s --corpus %s --ood-corpus none --seq 64 --batch 4 --steps 6 "
                "--eval-every 3 --eval-windows 4 --log-every 1 --threads 1 --quiet --out %s/%s", a, path, g_dir, r2);
        assert_true(ok("2 processes", rc, err));
        processes_were(r2, "final", 2);
        same_records(r1, r2, "train", TRAIN_KEYS, 4, 6, 0);
        same_records(r1, r2, "final", fin, 2, 1, 0);
    }
}

/* ------------------------------------------------------------------------------- drift */

/* Weights that drift apart (rank 1 nudges one weight after step 1) are found at the next check (ViT:
 * the epoch end, step 6; GPT-2: the validation of step 3), logged once, and everyone continues from
 * rank 0's; runs without drift log none (checked here on the runs above). */
static void test_drift_is_found_and_resynced(void **state) {
    (void)state;
    if (g_skip) skip();
    char err[8192];
    static const char *const key[] = {"step"};
    double v[MAXREC][4];
    assert_int_equal(read_log("vit2", "resync", key, 1, v), 0);
    assert_int_equal(read_log("lm2", "resync", key, 1, v), 0);
    int rc = sh(err, sizeof err, "DERF_TEST_PERTURB_RANK=1 " MPIRUN "-x DERF_TEST_PERTURB_RANK ./derf " VIT
                " --out %s/vitd", g_dir);
    assert_true(ok("ViT with drift", rc, err));
    assert_int_equal(read_log("vitd", "resync", key, 1, v), 1);
    assert_true(v[0][0] == 6);
    rc = sh(err, sizeof err, "DERF_TEST_PERTURB_RANK=1 " MPIRUN "-x DERF_TEST_PERTURB_RANK ./derf " LM
            " --out %s/lmd", g_dir, g_dir);
    assert_true(ok("GPT-2 with drift", rc, err));
    assert_int_equal(read_log("lmd", "resync", key, 1, v), 1);
    assert_true(v[0][0] == 3);
}

/* ------------------------------------------------------------------------------- failures */

/* One process fails mid-run while the other waits in the gradient all-reduce: the job ends (no
 * hang: timeout 60 would give 124), non-zero, with the failing process's message. */
static void test_failing_process_stops_the_job(void **state) {
    (void)state;
    if (g_skip) skip();
    char err[8192];
    int rc = sh(err, sizeof err, "DERF_TEST_FAIL_RANK=1 DERF_TEST_FAIL_STEP=3 " MPIRUN
                "-x DERF_TEST_FAIL_RANK -x DERF_TEST_FAIL_STEP ./derf " VIT " --out %s/vitf", g_dir);
    if (rc == 0 || rc == 124 || !strstr(err, "derf train (rank 1 of 2): failure injected at step 3 on rank 1"))
        fprintf(stderr, "exit %d, stderr:\n%s\n", rc, err);
    assert_true(rc != 0 && rc != 124);
    assert_non_null(strstr(err, "derf train (rank 1 of 2): failure injected at step 3 on rank 1"));
    assert_non_null(strstr(err, "stopping all 2 processes"));
    /* the same for rank 0 in the language-model trainer */
    rc = sh(err, sizeof err, "DERF_TEST_FAIL_RANK=0 DERF_TEST_FAIL_STEP=2 " MPIRUN
            "-x DERF_TEST_FAIL_RANK -x DERF_TEST_FAIL_STEP ./derf " LM " --out %s/lmf", g_dir, g_dir);
    if (rc == 0 || rc == 124 || !strstr(err, "derf train-lm (rank 0 of 2): failure injected at step 2 on rank 0"))
        fprintf(stderr, "exit %d, stderr:\n%s\n", rc, err);
    assert_true(rc != 0 && rc != 124);
    assert_non_null(strstr(err, "derf train-lm (rank 0 of 2): failure injected at step 2 on rank 0"));
}

static void test_refusals(void **state) {
    (void)state;
    if (g_skip) skip();
    char err[8192];
    int rc = sh(err, sizeof err, MPIRUN "./derf " VIT " --batch 15 --out %s/vitb", g_dir);
    assert_true(rc != 0 && rc != 124);
    assert_non_null(strstr(err, "the batch of 15 does not split evenly over 2 processes"));
    rc = sh(err, sizeof err, MPIRUN "./derf functions derf");
    assert_true(rc != 0 && rc != 124);
    assert_non_null(strstr(err, "'derf functions' runs on one process"));
    /* GPUs under mpirun: a CPU-only derf says so (each process; the first to stop ends the job), not a missing NCCL path */
    rc = sh(err, sizeof err, MPIRUN "./derf " LM " --device cuda --out %s/lmc", g_dir, g_dir);
    assert_true(rc != 0 && rc != 124);
    if (!strstr(err, " of 2): --device cuda: this derf was built without CUDA")) fprintf(stderr, "stderr:\n%s\n", err);
    assert_non_null(strstr(err, " of 2): --device cuda: this derf was built without CUDA"));
    assert_null(strstr(err, "not written yet"));
}

/* The GPU of a process under mpirun (no MPI needed): local rank r of n on a machine with g GPUs
 * gets GPU r; fewer GPUs than processes on a machine is refused with one line before NCCL sees it. */
static void test_gpu_per_local_rank(void **state) {
    (void)state;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_dist_gpu(0, 1, 1, err, sizeof err), 0);
    assert_int_equal(derf_dist_gpu(1, 2, 2, err, sizeof err), 1);
    assert_int_equal(derf_dist_gpu(3, 4, 8, err, sizeof err), 3);
    assert_int_equal(derf_dist_gpu(1, 2, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "this machine has 1 GPU but mpirun started 2 processes on it"));
    assert_null(strchr(err, '\n'));
    assert_int_equal(derf_dist_gpu(0, 8, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "this machine has 4 GPUs but mpirun started 8 processes on it"));
    assert_non_null(strstr(err, "start at most 4 here"));
    assert_int_equal(derf_dist_gpu(0, 1, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "no CUDA device"));
    /* outside mpirun this process is rank 0 of 1 on its machine */
    assert_int_equal(derf_dist_local_rank(), 0);
    assert_int_equal(derf_dist_local_size(), 1);
}

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    if (!derf_dist_built_with_mpi())
        g_skip = "derf was built without MPI (install libopenmpi-dev openmpi-bin, then make clean && make)";
    else if (system("command -v mpirun >/dev/null 2>&1") != 0)
        g_skip = "mpirun is not installed (apt-get install openmpi-bin)";
    if (g_skip) fprintf(stderr, "test_mpi: SKIPPING every test: %s\n", g_skip);
    else write_shards();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vit_two_processes_equal_one),
        cmocka_unit_test(test_vit_resume_under_mpi),
        cmocka_unit_test(test_lm_two_processes_equal_one),
        cmocka_unit_test(test_dit_two_processes_equal_one),
        cmocka_unit_test(test_dna_two_processes_equal_one),
        cmocka_unit_test(test_drift_is_found_and_resynced),
        cmocka_unit_test(test_failing_process_stops_the_job),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_gpu_per_local_rank),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
