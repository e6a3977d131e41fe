/* nocuda.c: what the CPU-only build (plain `make`) links in place of the CUDA backend: the entry
 * points the CPU code can reach, answering that this derf has no GPU support. Not part of
 * `make CUDA=1` (src/cuda/gpt2.cu and vit.cu define them there). */
#include "derf/gpt2.h"
#include "derf/io.h"
#include "derf/vit.h"

#define NO_CUDA_MSG "--device cuda: this derf was built without CUDA; rebuild it with 'make CUDA=1' (needs nvcc, " \
                    "docs/cuda.md), or pass --device cpu (a GPU run resumes on the CPU)"

int derf_gpt2_cuda_attach(derf_gpt2 *m, int bf16, char *err, size_t errlen) {
    (void)m;
    (void)bf16;
    derf_io_errf(err, errlen, "%s", NO_CUDA_MSG);
    return -1;
}

/* weak: tests/test_train.c defines its own, a stand-in device that checks the trainer's device plumbing */
__attribute__((weak)) int derf_vit_cuda_attach(derf_vit *m, int bf16, float *ema, char *err, size_t errlen) {
    (void)m;
    (void)bf16;
    (void)ema;
    derf_io_errf(err, errlen, "%s", NO_CUDA_MSG);
    return -1;
}
