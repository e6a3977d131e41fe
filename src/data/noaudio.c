/* noaudio.c: what `make AUDIO=0` links instead of src/data/audio.c and src/ops/fftconv.c (a build
 * without libsndfile, libsamplerate and FFTW, e.g. the GPU check's build): the same entry points,
 * answering with one line that names the missing library and the rebuild. */
#include <stdio.h>
#include <stdlib.h>

#include "derf/io.h"
#include "derf/ops.h"
#include "derf/speech.h"

#define NOAUDIO "this derf was built with AUDIO=0 (without libsndfile, libsamplerate and FFTW): rebuild with `make`"

int derf_resample(const float *in, size_t n, int rate_in, int rate_out, float **out, size_t *nout, char *err,
                  size_t errlen) {
    derf_io_errf(err, errlen, "resample: %s", NOAUDIO);
    return -1;
}

int derf_audio_load(const char *path, int rate_out, float **out, size_t *n, int *rate_in, int *channels, char *err,
                    size_t errlen) {
    derf_io_errf(err, errlen, "%s: cannot decode audio: %s", path, NOAUDIO);
    return -1;
}

int derf_fftconv_available(void) { return 0; }

/* not reached: derf_hyena_build refuses first (derf_fftconv_available) */
void derf_fftconv_forward(float *y, const float *u, const float *k, const float *D, int B, int T, int C) {
    fprintf(stderr, "derf: HyenaDNA's long convolution needs FFTW: %s\n", NOAUDIO);
    exit(2);
}
void derf_fftconv_backward(float *du, float *dk, float *dD, const float *dy, const float *u, const float *k,
                           const float *D, int B, int T, int C) {
    derf_fftconv_forward(NULL, NULL, NULL, NULL, 0, 0, 0);
}
