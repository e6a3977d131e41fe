/* bench_busy.c: ViT training throughput on a busy machine. Starts S busy-loop processes itself (S from
 * --spinners, default 0,1,2), and under each load runs a short `derf train` (the compare recipe's tiny ViT,
 * --images images, one epoch, no evaluation) in each configuration, interleaved over --reps rounds:
 *   before   derf's old default: one thread per allowed CPU and libgomp's own wait policy (GOMP_SPINCOUNT=300000,
 *            libgomp's default when nothing is set; derf leaves a set value alone)
 *   passive  one thread per allowed CPU, OMP_WAIT_POLICY=passive (waiting threads sleep at once)
 *   after    derf's default now: nothing set (--threads auto, and derf's GOMP_SPINCOUNT=1000)
 *   t1       --threads 1 (no barriers at all), for reference
 * Reports per load and configuration the median images/s, its ratio to the same configuration with no
 * spinner and to `before` under the same load, the fair CPU share (ncpu / (ncpu + S): what a proportional
 * slowdown leaves when S <= ncpu), derf's CPU seconds per 1,000 images, and the machine's load (1-minute load
 * average, and the running count of /proc/loadavg) after each run. Other processes on the machine count as load
 * too: the load columns say how much there was.
 * Usage: build/bench/bench_busy [--derf ./derf] [--spinners 0,1,2] [--reps 3] [--images 1024]
 *        [--configs before,passive,after,t1] [--nice N]   (run from the repository root) */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "derf/threads.h"
#include "derf/train.h"

#define MAXS 8
#define MAXC 4
#define MAXR 50

static const char *CONFIG_NAMES[MAXC] = {"before", "passive", "after", "t1"};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void loadavg(double *l1, int *running) {
    FILE *f = fopen("/proc/loadavg", "r");
    *l1 = -1;
    *running = -1;
    if (!f) return;
    int total;
    if (fscanf(f, "%lf %*f %*f %d/%d", l1, running, &total) != 3) *l1 = -1;
    fclose(f);
}

static pid_t spinner(void) {
    pid_t p = fork();
    if (p == 0) {
        volatile unsigned long x = 0;
        for (;;) x++;
    }
    return p;
}

/* Runs one derf train in configuration c; returns images/s (-1 on failure), *cpu = its CPU seconds. */
static double run_train(const char *derf, int c, int ncpu, int images, const char *out, double *cpu, double *load,
                        int *running) {
    char threads[16], limit[16];
    snprintf(threads, sizeof threads, "%d", c == 3 ? 1 : ncpu);
    snprintf(limit, sizeof limit, "%d", images);
    const char *argv[32];
    int n = 0;
    argv[n++] = derf;
    argv[n++] = "train";
    if (c != 2) { argv[n++] = "--threads"; argv[n++] = threads; }
    const char *rest[] = {"--epochs", "1", "--train-limit", limit, "--test-limit", "100", "--no-eval-train", "--quiet",
                          "--ema", "0", "--out", out, NULL};
    for (int i = 0; rest[i]; i++) argv[n++] = rest[i];
    argv[n] = NULL;
    int fd[2];
    if (pipe(fd)) return -1;
    pid_t p = fork();
    if (p == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (!freopen("/dev/null", "w", stderr)) _exit(127);
        unsetenv("OMP_NUM_THREADS");
        unsetenv("OMP_WAIT_POLICY");
        unsetenv("GOMP_SPINCOUNT");
        if (c == 0) setenv("GOMP_SPINCOUNT", "300000", 1);
        if (c == 1) setenv("OMP_WAIT_POLICY", "passive", 1);
        execv(derf, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t k;
    while ((k = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0 && len < sizeof buf - 1) len += (size_t)k;
    buf[len] = 0;
    close(fd[0]);
    int st;
    struct rusage ru;
    if (wait4(p, &st, 0, &ru) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) return -1;
    double l1;
    loadavg(&l1, running);
    *load = l1;
    *cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    const char *m = strstr(buf, "img/s)");
    if (!m) return -1;
    while (m > buf && m[-1] != '(') m--;
    return atof(m);
}

int main(int argc, char **argv) {
    const char *derf = "./derf", *spin_list = "0,1,2", *cfg_list = "before,passive,after,t1";
    int reps = 3, images = 1024, nice_v = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            printf("usage: bench_busy [--derf ./derf] [--spinners 0,1,2] [--reps 3] [--images 1024]\n"
                   "                  [--configs before,passive,after,t1] [--nice N]\n"
                   "ViT training images/s of `derf train` under S busy-loop processes it starts itself (see the\n"
                   "top of bench/bench_busy.c and docs/performance.md, \"Busy machines\").\n");
            return 0;
        }
        if (!v) { fprintf(stderr, "bench_busy: %s needs a value (--help for the options)\n", a); return 2; }
        if (!strcmp(a, "--derf")) derf = v;
        else if (!strcmp(a, "--spinners")) spin_list = v;
        else if (!strcmp(a, "--configs")) cfg_list = v;
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--images")) images = atoi(v);
        else if (!strcmp(a, "--nice")) nice_v = atoi(v);
        else { fprintf(stderr, "bench_busy: unknown option %s (--help for the options)\n", a); return 2; }
        i++;
    }
    if (reps < 1 || reps > MAXR || images < 128) {
        fprintf(stderr, "bench_busy: --reps must be in 1..%d and --images at least 128 (one batch)\n", MAXR);
        return 2;
    }
    if (access(derf, X_OK)) { fprintf(stderr, "bench_busy: %s is not an executable; build it (make) or give --derf\n", derf); return 2; }
    int spins[MAXS], ns = 0, cfgs[MAXC], nc = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spin_list);
    for (char *s = NULL, *t = strtok_r(buf, ",", &s); t && ns < MAXS; t = strtok_r(NULL, ",", &s)) {
        char *end;
        long x = strtol(t, &end, 10);
        if (*end || x < 0 || x > 64) { fprintf(stderr, "bench_busy: --spinners takes counts 0..64, not '%s'\n", t); return 2; }
        spins[ns++] = (int)x;
    }
    snprintf(buf, sizeof buf, "%s", cfg_list);
    for (char *s = NULL, *t = strtok_r(buf, ",", &s); t && nc < MAXC; t = strtok_r(NULL, ",", &s)) {
        int k = 0;
        while (k < MAXC && strcmp(t, CONFIG_NAMES[k])) k++;
        if (k == MAXC) { fprintf(stderr, "bench_busy: unknown config '%s' (before, passive, after, t1)\n", t); return 2; }
        cfgs[nc++] = k;
    }
    if (!ns || !nc) { fprintf(stderr, "bench_busy: --spinners and --configs must not be empty\n"); return 2; }
    if (nice_v && setpriority(PRIO_PROCESS, 0, nice_v)) {
        fprintf(stderr, "bench_busy: cannot set nice %d: %s\n", nice_v, strerror(errno));
        return 2;
    }
    char out[] = "/tmp/derf-bench-busy-XXXXXX";
    if (!mkdtemp(out)) { fprintf(stderr, "bench_busy: cannot make a temporary folder: %s\n", strerror(errno)); return 2; }
    char run_dir[64];
    snprintf(run_dir, sizeof run_dir, "%s/run", out);
    const int ncpu = derf_cpus_allowed();
    static double ips[MAXS][MAXC][MAXR], cpu[MAXS][MAXC][MAXR], ld[MAXS][MAXC][MAXR], rn[MAXS][MAXC][MAXR];
    fprintf(stderr, "bench_busy: %d CPUs, %d images per run, %d rounds, nice %d\n", ncpu, images, reps, nice_v);
    const double t0 = derf_now_s();
    for (int r = 0; r < reps; r++)
        for (int si = 0; si < ns; si++) {
            pid_t pids[64];
            for (int k = 0; k < spins[si]; k++) pids[k] = spinner();
            if (spins[si]) usleep(300000);
            for (int ci = 0; ci < nc; ci++) {
                int running = -1;
                double load = -1;
                double v = run_train(derf, cfgs[ci], ncpu, images, run_dir, &cpu[si][ci][r], &load, &running);
                if (v < 0) {
                    for (int k = 0; k < spins[si]; k++) kill(pids[k], SIGKILL), waitpid(pids[k], NULL, 0);
                    fprintf(stderr, "bench_busy: %s train failed (config %s); run it by hand to see why\n", derf,
                            CONFIG_NAMES[cfgs[ci]]);
                    return 1;
                }
                ips[si][ci][r] = v;
                ld[si][ci][r] = load;
                rn[si][ci][r] = running;
                fprintf(stderr, "  round %d, %d spinner(s), %-7s %8.0f img/s  (load %.1f, %d running)\n", r + 1,
                        spins[si], CONFIG_NAMES[cfgs[ci]], v, load, running);
            }
            for (int k = 0; k < spins[si]; k++) kill(pids[k], SIGKILL), waitpid(pids[k], NULL, 0);
        }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    if (system(cmd)) fprintf(stderr, "bench_busy: could not remove %s\n", out);
    printf("ViT (tiny, batch 128) training images/s under S busy-loop processes, %d CPUs, median of %d rounds "
           "(%.0f s)\n\n", ncpu, reps, derf_now_s() - t0);
    printf("| S | fair share | config | img/s | vs S=0 | vs before | CPU s / 1k img | load (1 min) | running |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    double base[MAXC] = {0}, bef[MAXS] = {0};
    for (int si = 0; si < ns; si++)
        for (int ci = 0; ci < nc; ci++) {
            double m = median(ips[si][ci], reps);
            if (spins[si] == 0) base[ci] = m;
            if (cfgs[ci] == 0) bef[si] = m;
        }
    for (int si = 0; si < ns; si++)
        for (int ci = 0; ci < nc; ci++) {
            double m = median(ips[si][ci], reps), c = median(cpu[si][ci], reps) / images * 1000;
            double l = median(ld[si][ci], reps), run = median(rn[si][ci], reps);
            char vs0[16] = "-", vsb[16] = "-", fair[16];
            if (base[ci] > 0) snprintf(vs0, sizeof vs0, "%.2f", m / base[ci]);
            if (bef[si] > 0) snprintf(vsb, sizeof vsb, "%.2fx", m / bef[si]);
            snprintf(fair, sizeof fair, "%.2f", (double)ncpu / (ncpu + spins[si]));
            printf("| %d | %s | %s | %.0f | %s | %s | %.2f | %.1f | %.0f |\n", spins[si], fair, CONFIG_NAMES[cfgs[ci]], m,
                   vs0, vsb, c, l, run);
        }
    return 0;
}
