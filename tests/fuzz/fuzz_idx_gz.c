/* fuzz_idx_gz.c: libFuzzer target: the IDX readers on gzip'd files whose content is the fuzzer's input, so
 * the mutations reach the IDX parser behind the decompressor (raw gzip bytes: fuzz_idx). */
#include <zlib.h>
#include "fuzz.h"
#include "derf/data.h"
#include "derf/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char path[256];
    snprintf(path, sizeof path, "%s/x-idx.gz", fz_dir());
    gzFile g = gzopen(path, "wb1");
    if (!g) abort();
    if (n && gzwrite(g, d, (unsigned)n) != (int)n) abort();
    gzclose(g);
    char err[DERF_ERRLEN] = "";
    int cnt, rows, cols;
    uint8_t *px = NULL;
    int rc = derf_idx_read_images(path, &cnt, &rows, &cols, &px, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc) free(px);
    err[0] = 0;
    rc = derf_idx_read_labels(path, &cnt, &px, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc) free(px);
    return 0;
}
