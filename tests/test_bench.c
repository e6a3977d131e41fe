/* test_bench.c: a smoke test of `derf bench` at tiny sizes, so the benchmark keeps working: it exits 0
 * and prints every table row; with torch present the PyTorch columns are filled, without it (or with
 * --python pointing nowhere) they show '-' and a note says why. No timing is asserted: benchmarks are
 * not tests. Runs ./derf from the repository root (make test builds it first). */
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

static char out[65536], err[65536];

static void slurp(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = 0;
    if (f) fclose(f);
    remove(path);
}

/* Runs `./derf bench ARGS`; stdout to out, stderr to err. Returns the exit status. */
static int bench(const char *args) {
    char cmd[2048], po[128], pe[128];
    snprintf(po, sizeof po, "/tmp/derf-bench-out-%d.txt", (int)getpid());
    snprintf(pe, sizeof pe, "/tmp/derf-bench-err-%d.txt", (int)getpid());
    snprintf(cmd, sizeof cmd, "./derf bench %s >%s 2>%s", args, po, pe);
    int st = system(cmd);
    slurp(po, out, sizeof out);
    slurp(pe, err, sizeof err);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc != 0) fprintf(stderr, "derf bench %s -> rc %d\nstdout:\n%s\nstderr:\n%s\n", args, rc, out, err);
    return rc;
}

/* Number of stdout table rows for `name`: lines that start with it followed by the column padding. */
static int rows(const char *name) {
    int n = 0;
    size_t len = strlen(name);
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, name, len) && l[len] == ' ' && l[len + 1] == ' ') n++;
    return n;
}

/* The last field of the first row starting with `name` (the ratio column), copied into buf. */
static const char *last_field(const char *name, char *buf, size_t n) {
    size_t len = strlen(name);
    buf[0] = 0;
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, name, len) || l[len] != ' ' || l[len + 1] != ' ') continue;
        const char *e = strchr(l, '\n');
        if (!e) e = l + strlen(l);
        const char *b = e;
        while (b > l && b[-1] != ' ') b--;
        snprintf(buf, n, "%.*s", (int)(e - b), b);
        break;
    }
    return buf;
}

static void test_norms_and_vit(void **state) {
    (void)state;
    assert_int_equal(bench("--only norms,vit --reps 1 --warmup 1 --threads 1 --rows 256 --cols 64 --vit-batch 8"), 0);
    assert_non_null(strstr(out, "memcpy 256 x 64"));
    assert_non_null(strstr(out, "norms 256 x 64"));
    assert_non_null(strstr(out, "vit tiny"));
    assert_int_equal(rows("layernorm"), 2); /* one row in each table */
    assert_int_equal(rows("rmsnorm"), 1);
    assert_int_equal(rows("dyt"), 2);
    assert_int_equal(rows("derf"), 2);
    assert_non_null(strstr(err, "[bench]")); /* progress goes to stderr */
    char f[64];
    if (strstr(out, "peer: PyTorch 1") || strstr(out, "peer: PyTorch 2")) {
        /* torch ran: the ratio column holds numbers */
        assert_non_null(strchr(last_field("derf", f, sizeof f), 'x'));
    } else {
        assert_string_equal(last_field("derf", f, sizeof f), "-");
        assert_non_null(strstr(out, "note: PyTorch peers not run"));
    }
}

static void test_gpt2_tiny(void **state) {
    (void)state;
    assert_int_equal(bench("--only gpt2 --gpt2-preset test --gpt2-batch 2 --gpt2-seq 8 --reps 2 --warmup 0 --threads 1 --min"), 0);
    assert_non_null(strstr(out, "gpt2 test"));
    assert_non_null(strstr(out, "each figure is the minimum of its timed runs")); /* --min, passed to the peer too */
    assert_int_equal(rows("layernorm"), 1);
    assert_int_equal(rows("derf"), 1);
}

/* --quick: every part at toy sizes (the CI smoke test); each model's table, the tokenizer and the summary */
static void test_quick(void **state) {
    (void)state;
    assert_int_equal(bench("--quick --threads 1"), 0);
    const char *heads[] = {"memcpy 256 x 64", "norms 256 x 64", "vit test", "gpt2 test", "dit test", "wav2vec xxs",
                           "hyena test", "caduceus test", "tokenizer: GPT-2 BPE", "summary:"};
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        if (!strstr(out, heads[i])) fprintf(stderr, "missing '%s' in:\n%s\n", heads[i], out);
        assert_non_null(strstr(out, heads[i]));
    }
    assert_int_equal(rows("rmsnorm"), 2);   /* the norms and caduceus tables */
    assert_int_equal(rows("gpt2-js"), 1);   /* the tokenizer's */
    assert_int_equal(rows("caduceus"), 2);  /* the summary's rows: rmsnorm, derf */
    if (strstr(out, "peer: PyTorch 1") || strstr(out, "peer: PyTorch 2")) {
        char f[64];
        assert_non_null(strchr(last_field("derf", f, sizeof f), 'x'));
    }
}

static void test_without_torch(void **state) {
    (void)state;
    assert_int_equal(bench("--only norms,vit --reps 1 --warmup 0 --threads 1 --rows 64 --cols 32 --vit-preset test "
                           "--vit-batch 2 --python /nonexistent/python3"), 0);
    assert_non_null(strstr(err, "PyTorch peers skipped"));
    assert_non_null(strstr(out, "note: PyTorch peers not run: /nonexistent/python3 is not an executable"));
    char f[64];
    assert_string_equal(last_field("layernorm", f, sizeof f), "-");
    assert_int_equal(rows("derf"), 2);
    assert_int_equal(bench("--only memcpy --no-torch --reps 1 --rows 16 --cols 16"), 0);
    assert_non_null(strstr(out, "memcpy 16 x 16"));
}

static void test_bad_options(void **state) {
    (void)state;
    const char *bad[][2] = {
        {"--only norms,bogus", "unknown part 'bogus'"},
        {"--only vit --vit-norms layernorm,nope", "unknown norm 'nope'"},
        {"--only vit --vit-preset huge", "unknown ViT preset 'huge'"},
        {"--only gpt2 --gpt2-preset test --gpt2-seq 99", "exceeds"},
        {"--reps -1", "--reps must lie in"},
        {"--only dit --dit-norms nope", "unknown norm 'nope'"},
        {"--only tok --tok-file /nonexistent", "--tok-file /nonexistent cannot be read"},
        {"--only wav2vec --w2v-preset huge", "unknown"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[512], pe[128];
        snprintf(pe, sizeof pe, "/tmp/derf-bench-err-%d.txt", (int)getpid());
        snprintf(cmd, sizeof cmd, "./derf bench %s --no-torch >/dev/null 2>%s", bad[i][0], pe);
        int st = system(cmd);
        slurp(pe, err, sizeof err);
        if (!strstr(err, bad[i][1])) fprintf(stderr, "derf bench %s: stderr [%s], wanted '%s'\n", bad[i][0], err, bad[i][1]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
        assert_non_null(strstr(err, bad[i][1]));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norms_and_vit),
        cmocka_unit_test(test_gpt2_tiny),
        cmocka_unit_test(test_quick),
        cmocka_unit_test(test_without_torch),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
