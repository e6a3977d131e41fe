/* test_threads.c: the default thread count (--threads auto, src/core/threads.c): the allowed CPUs against
 * coreutils' nproc (the affinity mask; a cgroup quota may only lower derf's count) and the MPI share of the
 * node's CPUs; and the command: ./derf runs with libgomp's spin count 1000 (as libgomp reports it with
 * OMP_DISPLAY_ENV) unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT, and takes --threads auto. */
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
#include "derf/threads.h"

static void test_allowed(void **state) {
    (void)state;
    FILE *p = popen("nproc", "r");
    assert_non_null(p);
    int nproc = 0;
    assert_int_equal(fscanf(p, "%d", &nproc), 1);
    pclose(p);
    const int n = derf_cpus_allowed();
    assert_true(n >= 1 && n <= nproc);
    if (access("/sys/fs/cgroup/cpu.max", R_OK)) assert_int_equal(n, nproc);   /* no quota: the mask alone */
    unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    unsetenv("MPI_LOCALNRANKS");
    assert_int_equal(derf_threads_auto(), n);
}

static void test_mpi_share(void **state) {
    (void)state;
    const int n = derf_cpus_allowed();
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1);
    assert_int_equal(derf_threads_auto(), n / 2 > 1 ? n / 2 : 1);
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "1000", 1);
    assert_int_equal(derf_threads_auto(), 1);
    unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    setenv("MPI_LOCALNRANKS", "1", 1);
    assert_int_equal(derf_threads_auto(), n);
    unsetenv("MPI_LOCALNRANKS");
}

/* stderr of `ENV ./derf ARGS`, exit status returned */
static int derf_err(const char *env, const char *args, char *buf, size_t n) {
    char cmd[512], path[64];
    snprintf(path, sizeof path, "/tmp/derf-threads-err.%d.txt", (int)getpid());
    snprintf(cmd, sizeof cmd, "env %s ./derf %s >/dev/null 2>%s", env, args, path);
    int st = system(cmd);
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = 0;
    if (f) fclose(f);
    remove(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* the value of the last "GOMP_SPINCOUNT = 'N'" line libgomp printed (-1: none) */
static long long last_spincount(const char *s) {
    long long v = -1;
    for (const char *p = s; (p = strstr(p, "GOMP_SPINCOUNT = '")); p++) v = atoll(p + 18);
    return v;
}

static void test_command(void **state) {
    (void)state;
    static char err[65536];
    if (access("./derf", X_OK)) { fprintf(stderr, "# ./derf not built: skipped\n"); skip(); }
    assert_int_equal(derf_err("-u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=verbose", "functions --no-plot", err,
                              sizeof err), 0);
    assert_true(last_spincount(err) == 1000);                       /* derf's: spin briefly, then sleep */
    assert_int_equal(derf_err("OMP_DISPLAY_ENV=verbose OMP_WAIT_POLICY=active", "functions --no-plot", err, sizeof err), 0);
    assert_true(last_spincount(err) > 1000000);                     /* the user's choice is kept */
    assert_int_equal(derf_err("OMP_DISPLAY_ENV=verbose OMP_WAIT_POLICY=passive", "functions --no-plot", err, sizeof err), 0);
    assert_true(last_spincount(err) == 0);
    assert_int_equal(derf_err("OMP_DISPLAY_ENV=verbose GOMP_SPINCOUNT=5000", "functions --no-plot", err, sizeof err), 0);
    assert_true(last_spincount(err) == 5000);
    assert_int_equal(derf_err("", "train --threads auto --help", err, sizeof err), 0);
    assert_int_equal(derf_err("", "train --threads automatic", err, sizeof err), 2);
    assert_non_null(strstr(err, "--threads needs an integer"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_mpi_share),
        cmocka_unit_test(test_command),
    };
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
