/* fuzz_state.c: libFuzzer target: a training state (state.safetensors) through derf_run_load and the
 * checkpoint validation policy, for a small table of two tensors with an EMA (tests/fuzz/fuzz.h). */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    fz_file("state.safetensors", d, n);
    static derf_params p;
    static float ema[9];
    static int ready;
    if (!ready) {
        int sw[2] = {2, 3}, sb[1] = {3};
        derf_params_init(&p);
        derf_params_add(&p, "w", 2, sw, 1);
        derf_params_add(&p, "b", 1, sb, 0);
        derf_params_alloc(&p);
        ready = 1;
    }
    int step = 0;
    derf_rng rng;
    char err[DERF_ERRLEN] = "";
    static const derf_st_meta want[1] = {{"model", "fuzz"}}; /* the seeds' model metadata: the config check runs */
    int rc = derf_run_load(fz_dir(), "derf-fuzz-1", want, 1, &p, ema, &step, &rng, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc && step < 0) abort();
    return 0;
}
