/* fuzz.h: helpers shared by the libFuzzer targets in tests/fuzz/ (built by `make fuzz`, see docs/reliability.md).
 * Most derf readers take a path, so a target writes the input to a file in a per-process temp folder and
 * hands the reader that path; fz_split cuts one input into parts at the separator "\n@@\n" (readers of two
 * files). A reader must return 0 or -1 with one line in err and never crash, leak or hang: fz_check_err
 * aborts (a finding) when a failing reader left no message or a message over two lines. Header-only. */
#ifndef DERF_FUZZ_H
#define DERF_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fz_dirbuf[64];
static inline void fz_cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dirbuf);
    if (fz_dirbuf[0] && system(cmd)) { /* best effort */ }
}

static inline const char *fz_dir(void) {
    char *dir = fz_dirbuf;
    if (!dir[0]) {
        /* memory-backed when there is one: the file readers run thousands of times a second */
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof fz_dirbuf, "%s/derf_fuzz.%ld", base, (long)getpid());
        mkdir(dir, 0700);
        atexit(fz_cleanup);
    }
    return dir;
}

/* Writes n bytes to <temp folder>/name and returns that path (a static buffer per name slot). */
static inline const char *fz_file(const char *name, const uint8_t *d, size_t n) {
    static char path[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", fz_dir(), name);
    FILE *f = fopen(path[k], "wb");
    if (!f) abort();
    if (n && fwrite(d, 1, n, f) != n) abort();
    if (fclose(f)) abort();
    return path[k];
}

/* Splits d at the first "\n@@\n": part 0 before it, part 1 after it (empty if absent). */
static inline void fz_split(const uint8_t *d, size_t n, const uint8_t **p0, size_t *n0, const uint8_t **p1, size_t *n1) {
    static const char sep[] = "\n@@\n";
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(d + i, sep, 4) == 0) {
            *p0 = d; *n0 = i; *p1 = d + i + 4; *n1 = n - i - 4;
            return;
        }
    *p0 = d; *n0 = n; *p1 = d + n; *n1 = 0;
}

static inline void fz_check_err(int rc, const char *err) {
    if (rc == 0) return;
    if (!err[0] || strchr(err, '\n')) {
        fprintf(stderr, "reader failed without one error line: '%s'\n", err);
        abort();
    }
}
#endif
