/* fuzz_speech.c: libFuzzer target: a speech corpus folder (index.tsv, then audio.bin after "\n@@\n",
 * tests/fuzz/fuzz.h) through derf_speech_read; every utterance of a corpus that loads lies in the audio. */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/speech.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(d, n, &a, &na, &b, &nb);
    fz_file("index.tsv", a, na);
    fz_file("audio.bin", b, nb);
    derf_speech_corpus c;
    char err[DERF_ERRLEN] = "";
    int rc = derf_speech_read(fz_dir(), &c, err, sizeof err);
    fz_check_err(rc, err);
    if (rc) return 0;
    volatile int s = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (c.u[i].offset + c.u[i].n > c.nsamples) abort();
        if (c.u[i].n) s += c.audio[c.u[i].offset] + c.audio[c.u[i].offset + c.u[i].n - 1];
    }
    derf_speech_free(&c);
    return 0;
}
