/* compare_util.c: helpers shared by the `derf compare` variants (see compare_util.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/compare_util.h"
#include "derf/io.h"
#include "derf/norm.h"

int compare_parse_norms(const char *cmd, const char *norms, compare_norm *out) {
    int nn = 0;
    char list[2048];
    snprintf(list, sizeof list, "%s", norms);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (nn == MAX_NORMS) { cli_fail(cmd, "at most %d norms", MAX_NORMS); return -1; }
        compare_norm *nr = &out[nn++];
        nr->lr = 0.f;
        char *at = strchr(tok, '@');
        if (at) {
            *at = 0;
            char *end;
            nr->lr = strtof(at + 1, &end);
            if (end == at + 1 || *end || !(nr->lr > 0 && nr->lr < 10)) {
                cli_fail(cmd, "bad learning rate '%s' after '@' in --norms (e.g. derf@3e-3)", at + 1);
                return -1;
            }
        }
        snprintf(nr->spec, sizeof nr->spec, "%s", tok);
        derf_norm_spec s;
        char err[DERF_ERRLEN];
        if (derf_norm_parse(tok, &s, err, sizeof err)) { cli_fail(cmd, "%s", err); return -1; }
    }
    if (nn == 0) { cli_fail(cmd, "--norms is empty; e.g. --norms layernorm,dyt,derf"); return -1; }
    return nn;
}

int compare_make_dir(const char *cmd, const char *dir) {
    char err[DERF_ERRLEN];
    if (derf_io_mkdirs(dir, err, sizeof err)) { cli_fail(cmd, "%s", err); return -1; }
    return 0;
}

void compare_run_name(char *out, size_t n, const char *spec, int seed) {
    size_t k = 0;
    for (const char *p = spec; *p && k + 1 < n; p++) out[k++] = isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '_';
    out[k] = 0;
    snprintf(out + k, n - k, "-s%d", seed);
}

void compare_mean_std(const double *x, int n, double *m, double *s) {
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) a += x[i];
    a /= n;
    for (int i = 0; i < n; i++) b += (x[i] - a) * (x[i] - a);
    *m = a;
    *s = n > 1 ? sqrt(b / (n - 1)) : 0;
}

const char *compare_model_arg(int argc, char **argv) {
    const char *m = NULL; /* the last one wins, as in the option parser */
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--model=", 8)) m = argv[i] + 8;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) m = argv[++i];
    }
    return m;
}

int compare_write_report(const char *cmd, const char *out, derf_strbuf *md, derf_strbuf *svg) {
    char path[1200], err[DERF_ERRLEN];
    snprintf(path, sizeof path, "%s/report.md", out);
    int rc = derf_io_write_file(path, md->s, md->len, err, sizeof err);
    if (!rc && svg) {
        snprintf(path, sizeof path, "%s/curves.svg", out);
        rc = derf_io_write_file(path, svg->s, svg->len, err, sizeof err);
    }
    derf_sb_free(md);
    if (svg) derf_sb_free(svg);
    if (rc) return cli_fail(cmd, "%s", err);
    if (svg) printf("\nwrote %s/report.md and %s/curves.svg\n", out, out);
    else printf("\nwrote %s/report.md\n", out);
    return 0;
}
