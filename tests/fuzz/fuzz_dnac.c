/* fuzz_dnac.c: libFuzzer target: the DNA corpus (.dnac) parser on arbitrary bytes; every segment of a corpus
 * that parses lies inside its tokens. */
#include "fuzz.h"
#include "derf/dna.h"
#include "derf/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    derf_dna_corpus c;
    char err[DERF_ERRLEN] = "";
    int rc = derf_dna_corpus_parse(d, n, "fuzz.dnac", &c, err, sizeof err);
    fz_check_err(rc, err);
    if (rc) return 0;
    for (size_t i = 0; i < c.nseg; i++)
        if (c.seg[i].offset + c.seg[i].length > c.ntok) abort();
    derf_dna_corpus_free(&c);
    return 0;
}
