/* fuzz_maf.c: libFuzzer target: the MAF alignment reader on arbitrary bytes, then the human coordinate-bin
 * split of what it read (start coordinates come from the file). */
#include "fuzz.h"
#include "derf/dna.h"
#include "derf/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *p = fz_file("x.maf", d, n);
    derf_dna_records rs = {0};
    char err[DERF_ERRLEN] = "";
    int rc = derf_dna_read_maf(p, "hg", &rs, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc) {
        derf_dna_corpus c;
        memset(&c, 0, sizeof c);
        uint8_t *lower = NULL;
        derf_dna_split_human(&rs, &c, &lower);
        free(lower);
        derf_dna_corpus_free(&c);
    }
    derf_dna_records_free(&rs);
    return 0;
}
