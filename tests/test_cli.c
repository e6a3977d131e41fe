/* test_cli.c: the derf command as a user meets it: bad flags, unknown or malformed norm specs,
 * missing or hostile files each give exactly one clear line on stderr and a non-zero exit; good
 * invocations work. Runs ./derf from the repository root (make test builds it first). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs `./derf ARGS`, capturing stderr (stdout to out if non-NULL). Returns the exit status. */
static int run(const char *args, char *err, size_t errlen, char *out, size_t outlen) {
    char cmd[2300], ep[64], op[64];
    /* per-process capture files: test runs of other checkouts may share /tmp */
    snprintf(ep, sizeof ep, "/tmp/derf-cli-err.%d.txt", (int)getpid());
    snprintf(op, sizeof op, "/tmp/derf-cli-out.%d.txt", (int)getpid());
    snprintf(cmd, sizeof cmd, "./derf %s 2>%s >%s", args, ep, op);
    int st = system(cmd);
    FILE *f = fopen(ep, "r");
    size_t n = f ? fread(err, 1, errlen - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    if (out) {
        f = fopen(op, "r");
        n = f ? fread(out, 1, outlen - 1, f) : 0;
        out[n] = 0;
        if (f) fclose(f);
    }
    remove(ep);
    remove(op);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* A failing command: non-zero exit, one line on stderr containing `needle`. */
static void expect_error(const char *args, const char *needle) {
    char err[8192];
    int rc = run(args, err, sizeof err, NULL, 0);
    if (rc == 0 || lines(err) != 1 || !strstr(err, needle))
        fprintf(stderr, "derf %s -> rc %d, stderr: [%s] (wanted one line with '%s')\n", args, rc, err, needle);
    assert_true(rc != 0);
    assert_int_equal(lines(err), 1);
    assert_non_null(strstr(err, needle));
}

static void test_bad_specs(void **state) {
    (void)state;
    expect_error("functions erff", "unknown norm 'erff'");
    expect_error("functions 'erf+flat'", "'flat' needs a value");
    expect_error("functions 'neg(erf'", "missing ')'");
    expect_error("functions 'erf+clip=-1'", "positive bound");
    expect_error("train --norm bogus", "unknown norm 'bogus'");
    expect_error("compare --norms layernorm,nope", "unknown norm 'nope'");
    expect_error("compare --norms derf@fast", "bad learning rate");
    expect_error("train-dna --norm bogus", "unknown norm 'bogus'");
    expect_error("compare --model hyena --norms layernorm,nope", "unknown norm 'nope'");
    expect_error("compare --model dna", "--model must be vit, gpt2, dit, wav2vec, hyena or caduceus");
    expect_error("train-dna --arch mamba", "--arch must be hyena or caduceus");
    expect_error("train-dna --arch caduceus --preset tiny", "unknown Caduceus preset");
}

/* the DNA commands: bad options and hostile files */
static void test_dna_cli(void **state) {
    (void)state;
    expect_error("train-dna --preset huge", "unknown HyenaDNA preset 'huge'");
    expect_error("train-dna --emb-scale big", "--emb-scale must be auto, off or a number");
    expect_error("train-dna --emb-scale 0", "--emb-scale must be auto, off or a number");
    expect_error("train-dna --kmer 4", "need --task");
    expect_error("train-dna --corpus /nonexistent.dnac", "/nonexistent.dnac");
    expect_error("train-dna --task /nonexistent.dnat --kmer 2", "/nonexistent.dnat");
    assert_int_equal(system("printf 'DERFDNAC garbage' > /tmp/derf-cli-bad.dnac"), 0);
    expect_error("train-dna --corpus /tmp/derf-cli-bad.dnac", "not a derf DNA corpus");
    expect_error("data dna --maf /nonexistent.maf.gz --out /tmp/derf-cli-dna", "/nonexistent.maf.gz");
    assert_int_equal(system("printf 'a\\ns Hsap.22 10 5 + 100 AC!GT\\n' | gzip > /tmp/derf-cli-bad.maf.gz"), 0);
    expect_error("data dna --maf /tmp/derf-cli-bad.maf.gz --out /tmp/derf-cli-dna", "not a sequence letter");
    expect_error("data dna extra", "");
    /* compare skips a default task whose file is missing, but not all of them */
    expect_error("compare --model hyena --smoke --data /nonexistent-dna --out /tmp/derf-cli-cmp", "no task file in /nonexistent-dna");
    expect_error("data dna --promoter-len 0", "--promoter-len");
    unlink("/tmp/derf-cli-bad.dnac");
    unlink("/tmp/derf-cli-bad.maf.gz");
}

static void test_bad_flags(void **state) {
    (void)state;
    expect_error("nosuchcommand", "unknown command");
    expect_error("functions --bogus", "unknown option '--bogus'");
    expect_error("train --epochs x", "--epochs needs an integer");
    expect_error("train --lr -1", "--lr must lie in");
    expect_error("train --lr nan", "--lr needs a finite number");
    expect_error("train --batch", "--batch needs a value");
    expect_error("train --pool max", "--pool must be avg or cls");
    expect_error("train --preset huge", "huge");
    expect_error("train --heads 5", "head");
    expect_error("train extra", "unexpected argument");
    expect_error("train-lm --device tpu", "--device must be cpu or cuda");
    /* make test runs the CPU build (plain make): no GPU support compiled in */
    expect_error("train-lm --device cuda", "built without CUDA");
    expect_error("train --device tpu", "--device must be cpu, cuda or cuda:fp32");
    expect_error("train --device cuda", "built without CUDA");
    expect_error("train --device cuda:fp32 --preset test", "built without CUDA");
}

static void test_bad_files(void **state) {
    (void)state;
    char dir[] = "/tmp/derf-cli-XXXXXX", path[256], args[512];
    assert_non_null(mkdtemp(dir));
    snprintf(args, sizeof args, "train --resume %s", dir);
    expect_error(args, "state.safetensors");
    char dargs[512];
    snprintf(dargs, sizeof dargs, "train-dna --resume %s", dir);
    expect_error(dargs, "state.safetensors");
    /* a truncated / garbage state file */
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    FILE *f = fopen(path, "wb");
    fwrite("\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":", 1, 13, f);
    fclose(f);
    expect_error(args, "state.safetensors");
    expect_error(dargs, "state.safetensors");
    /* a data folder without IDX files */
    snprintf(args, sizeof args, "train --data %s --quiet", dir);
    expect_error(args, dir);
    /* a plot into a folder that does not exist: error, and nothing half-written */
    expect_error("functions erf --plot /nonexistent-derf-dir/x.svg", "/nonexistent-derf-dir/x.svg");
    /* an output folder that cannot be made (a file in the way): one line naming it, before any training */
    snprintf(path, sizeof path, "%s/afile", dir);
    f = fopen(path, "wb");
    fclose(f);
    char want[640];
    snprintf(want, sizeof want, "cannot create the folder '%s/runs': '%s' is in the way", path, path);
    snprintf(args, sizeof args, "compare --out %s/runs --epochs 1 --train-limit 64 --test-limit 64 --preset test", path);
    expect_error(args, want);
    snprintf(args, sizeof args, "train --out %s/runs --epochs 1 --train-limit 256 --test-limit 64 --quiet", path);
    expect_error(args, want);
    /* an empty folder name */
    expect_error("compare --out ''", "--out is empty");
    expect_error("train --resume ''", "--resume is empty");
    expect_error("train-lm --data=", "--data is empty");
}

static void test_good(void **state) {
    (void)state;
    static char err[8192], out[65536];
    assert_int_equal(run("--help", err, sizeof err, out, sizeof out), 0);
    assert_non_null(strstr(out, "compare"));
    assert_int_equal(run("train --help", err, sizeof err, out, sizeof out), 0);
    assert_non_null(strstr(out, "--norm"));
    assert_int_equal(run("functions --plot /tmp/derf-cli-functions.svg", err, sizeof err, out, sizeof out), 0);
    /* 24 functions, each with its row */
    assert_non_null(strstr(out, "erf "));
    assert_non_null(strstr(out, "dampexp"));
    assert_int_equal(lines(out), 24 + 4);
    FILE *f = fopen("/tmp/derf-cli-functions.svg", "r");
    assert_non_null(f);
    char head[64] = "";
    assert_true(fread(head, 1, 4, f) == 4);
    fclose(f);
    assert_memory_equal(head, "<svg", 4);
    /* an ablation spec: flat zone detected, and neg(erf) is decreasing */
    assert_int_equal(run("functions 'erf+flat=1:noshift' 'neg(erf)' --no-plot", err, sizeof err, out, sizeof out), 0);
    assert_non_null(strstr(out, "flat on +-1.00"));
    assert_non_null(strstr(out, "decreasing"));
}

/* the diffusion commands: refusals, then the whole pipeline at smoke size */
static void test_dit(void **state) {
    (void)state;
    expect_error("train-dit --size-class M", "--size-class must be");
    expect_error("train-dit --norm bogus", "unknown norm 'bogus'");
    expect_error("train-dit --preset huge", "huge");
    expect_error("sample-dit", "which checkpoint");
    expect_error("sample-dit /nonexistent-derf.safetensors", "/nonexistent-derf.safetensors");
    expect_error("fd --noise", "--classifier is required");
    expect_error("compare --model dit --lr-sweep 1e-4,x", "--lr-sweep");
    expect_error("compare --model dit --sampler euler", "--sampler must be");
    static char err[8192], out[65536];
    char dir[] = "/tmp/derf-cli-dit-XXXXXX", args[1024], a[1100], b[1100];
    assert_non_null(mkdtemp(dir));
    snprintf(args, sizeof args, "train-dit --steps 2 --batch 4 --eval-train-n 0 --threads 1 --quiet --out %s/run", dir);
    assert_int_equal(run(args, err, sizeof err, out, sizeof out), 0);
    snprintf(args, sizeof args, "sample-dit %s/run/model_ema.safetensors --labels 3,1,4 --cfg 2 --n 3 --sample-steps 3 "
             "--threads 1 --png %s/a.png --save %s/a.safetensors", dir, dir, dir);
    assert_int_equal(run(args, err, sizeof err, out, sizeof out), 0);
    snprintf(args, sizeof args, "sample-dit %s/run/model_ema.safetensors --labels 3,1,4 --cfg 2 --n 3 --sample-steps 3 "
             "--threads 2 --png %s/b.png --save %s/b.safetensors", dir, dir, dir);
    assert_int_equal(run(args, err, sizeof err, out, sizeof out), 0);
    snprintf(a, sizeof a, "cmp -s %s/a.safetensors %s/b.safetensors && cmp -s %s/a.png %s/b.png", dir, dir, dir, dir);
    assert_int_equal(system(a), 0);                       /* same seed, other thread count: the same samples */
    snprintf(args, sizeof args, "compare --model dit --smoke --threads 1 --quiet --norms layernorm,derf --lr-sweep 1e-4,4e-4 "
             "--out %s/cmp", dir);
    assert_int_equal(run(args, err, sizeof err, out, sizeof out), 0);
    snprintf(b, sizeof b, "%s/cmp/report.md", dir);
    FILE *f = fopen(b, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    fclose(f);
    assert_non_null(strstr(out, "FD-FMNIST"));
    assert_non_null(strstr(out, "| layernorm |"));
    assert_non_null(strstr(out, "| derf |"));
    snprintf(args, sizeof args, "fd --classifier %s/cmp/classifier/model.safetensors --samples %s/a.safetensors", dir, dir);
    assert_int_equal(run(args, err, sizeof err, out, sizeof out), 0);
    assert_non_null(strstr(out, "FD-FMNIST"));
    snprintf(a, sizeof a, "rm -rf %s", dir);
    assert_int_equal(system(a), 0);
}

int main(void) {
    if (access("./derf", X_OK) != 0) {
        fprintf(stderr, "test_cli: ./derf not found: run from the repository root after make\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs), cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_bad_files), cmocka_unit_test(test_good), cmocka_unit_test(test_dna_cli),
        cmocka_unit_test(test_dit),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
