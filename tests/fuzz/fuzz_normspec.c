/* fuzz_normspec.c: libFuzzer target: the norm-spec parser (--norm) on arbitrary text; a spec that parses
 * must format to a canonical string that parses again to the same canonical string. */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/norm.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char text[1024];
    if (n >= sizeof text) n = sizeof text - 1;
    memcpy(text, d, n);
    text[n] = 0;
    derf_norm_spec s, s2;
    char err[DERF_ERRLEN] = "";
    int rc = derf_norm_parse(text, &s, err, sizeof err);
    fz_check_err(rc, err);
    if (rc) return 0;
    char a[512], b[512];
    derf_norm_format(&s, a, sizeof a);
    if (derf_norm_parse(a, &s2, err, sizeof err)) {
        fprintf(stderr, "canonical form '%s' of '%s' does not parse: %s\n", a, text, err);
        abort();
    }
    derf_norm_format(&s2, b, sizeof b);
    if (strcmp(a, b)) {
        fprintf(stderr, "'%s' -> '%s' -> '%s'\n", text, a, b);
        abort();
    }
    return 0;
}
