/* fuzz_safetensors.c: libFuzzer target: the safetensors reader on arbitrary bytes (tests/fuzz/fuzz.h). */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *p = fz_file("x.safetensors", d, n);
    derf_safetensors st;
    char err[DERF_ERRLEN] = "";
    int rc = derf_safetensors_read(&st, p, (size_t)1 << 24, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc) {
        volatile float s = 0; /* touch every tensor's data: the offsets must lie inside the buffer */
        for (int i = 0; i < st.ntensors; i++)
            for (size_t j = 0; j < st.tensors[i].numel; j++) s += st.tensors[i].data[j];
        for (int i = 0; i < st.nmeta; i++) (void)strlen(st.meta[i].value);
        derf_safetensors_free(&st);
    }
    return 0;
}
