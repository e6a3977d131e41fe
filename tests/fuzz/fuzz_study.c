/* fuzz_study.c: libFuzzer target: a study result file (runs/study-NAME/CASE/seedK.json) through
 * derf_study_result_load, for spec "derf" and seed 0. */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/study.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *p = fz_file("result.json", d, n);
    derf_cls_result r;
    char err[DERF_ERRLEN] = "";
    int rc = derf_study_result_load(p, "derf", 0, NULL, &r, err, sizeof err);
    fz_check_err(rc < 0 ? -1 : 0, err);
    if (rc == 1 && (r.steps < 0 || r.total_steps < 0 || r.epochs_done < 0)) abort();
    return 0;
}
