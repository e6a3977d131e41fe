/* fuzz_dnat.c: libFuzzer target: the DNA task (.dnat) parser on arbitrary bytes. */
#include "fuzz.h"
#include "derf/dna.h"
#include "derf/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    derf_dna_task t;
    char err[DERF_ERRLEN] = "";
    int rc = derf_dna_task_parse(d, n, "fuzz.dnat", &t, err, sizeof err);
    fz_check_err(rc, err);
    if (rc) return 0;
    for (int i = 0; i < t.n; i++)
        if (t.split[i] > 2 || t.label[i] >= t.nclass) abort();
    derf_dna_task_free(&t);
    return 0;
}
