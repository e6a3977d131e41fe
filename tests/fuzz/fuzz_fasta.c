/* fuzz_fasta.c: libFuzzer target: the FASTA reader (plain or gzip'd) on arbitrary bytes. */
#include "fuzz.h"
#include "derf/dna.h"
#include "derf/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *p = fz_file("x.fa", d, n);
    derf_dna_records rs = {0};
    char err[DERF_ERRLEN] = "";
    int rc = derf_dna_read_fasta(p, &rs, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc && rs.n == 0) abort();
    derf_dna_records_free(&rs);
    return 0;
}
