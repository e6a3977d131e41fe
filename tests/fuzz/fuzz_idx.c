/* fuzz_idx.c: libFuzzer target: the IDX images and labels readers on arbitrary bytes, plain or gzip'd
 * (tests/fuzz/fuzz.h). */
#include "fuzz.h"
#include "derf/data.h"
#include "derf/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *p = fz_file("x-idx", d, n);
    char err[DERF_ERRLEN] = "";
    int cnt, rows, cols;
    uint8_t *px = NULL;
    int rc = derf_idx_read_images(p, &cnt, &rows, &cols, &px, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc) {
        volatile unsigned s = 0;
        for (size_t i = 0; i < (size_t)cnt * rows * cols; i++) s += px[i];
        free(px);
    }
    err[0] = 0;
    rc = derf_idx_read_labels(p, &cnt, &px, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc) free(px);
    return 0;
}
