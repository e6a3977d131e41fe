/* fuzz_shard.c: libFuzzer target: the token-shard parser (train.bin / val.bin) on arbitrary bytes. */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/textdata.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    derf_shard s;
    char err[DERF_ERRLEN] = "";
    int rc = derf_shard_parse(d, n, "fuzz.bin", &s, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc) derf_shard_free(&s);
    return 0;
}
