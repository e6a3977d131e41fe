/* fuzz_wav.c: libFuzzer target: audio decoding (WAV and what libsndfile reads) with downmix and resampling
 * to 16 kHz, as 'derf data speech' reads the voice files. */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/speech.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const char *p = fz_file("x.wav", d, n);
    float *out = NULL;
    size_t len = 0;
    int rate, ch;
    char err[DERF_ERRLEN] = "";
    int rc = derf_audio_load(p, 16000, &out, &len, &rate, &ch, err, sizeof err);
    fz_check_err(rc, err);
    if (!rc) {
        volatile float s = 0;
        for (size_t i = 0; i < len; i++) s += out[i];
        free(out);
    }
    return 0;
}
