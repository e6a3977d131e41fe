/* audio.c: audio decoding (libsndfile) and resampling (libsamplerate) for `derf data speech`
 * (include/derf/speech.h). Left out of `make AUDIO=0` builds, where src/data/noaudio.c answers instead. */
#include <math.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdlib.h>

#include "derf/io.h"
#include "derf/speech.h"

/* ---- audio --------------------------------------------------------------------------------------- */

int derf_resample(const float *in, size_t n, int rate_in, int rate_out, float **out, size_t *nout, char *err,
                  size_t errlen) {
    if (rate_in <= 0 || rate_out <= 0 || n > (size_t)1 << 30) {
        derf_io_errf(err, errlen, "resample: bad rates %d -> %d or length %zu", rate_in, rate_out, n);
        return -1;
    }
    double ratio = (double)rate_out / rate_in;
    size_t cap = (size_t)ceil(n * ratio) + 16;
    float *o = malloc(cap * sizeof *o);
    if (!o) abort();
    SRC_DATA d = {.data_in = in, .data_out = o, .input_frames = (long)n, .output_frames = (long)cap, .src_ratio = ratio};
    int e = n ? src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 1) : 0;
    if (e) {
        free(o);
        derf_io_errf(err, errlen, "resample %d -> %d Hz: %s", rate_in, rate_out, src_strerror(e));
        return -1;
    }
    *out = o;
    *nout = n ? (size_t)d.output_frames_gen : 0;
    return 0;
}

int derf_audio_load(const char *path, int rate_out, float **out, size_t *n, int *rate_in, int *channels, char *err,
                    size_t errlen) {
    SF_INFO info = {0};
    if (derf_io_check_regular(path, "audio file", err, errlen)) return -1; /* a FIFO would block sf_open */
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    if (!f) {
        derf_io_errf(err, errlen, "%s: cannot decode: %s", path, sf_strerror(NULL));
        return -1;
    }
    if (info.channels < 1 || info.channels > 16 || info.samplerate < 1000 || info.samplerate > 384000 ||
        info.frames < 0 || info.frames > (sf_count_t)1 << 28) {
        sf_close(f);
        derf_io_errf(err, errlen, "%s: unsupported audio (%d channels, %d Hz, %lld frames)", path, info.channels,
                     info.samplerate, (long long)info.frames);
        return -1;
    }
    size_t nf = (size_t)info.frames, ch = (size_t)info.channels;
    float *buf = malloc((nf * ch + 1) * sizeof *buf);
    if (!buf) abort();
    sf_count_t got = sf_readf_float(f, buf, info.frames);
    sf_close(f);
    if (got != info.frames) {
        free(buf);
        derf_io_errf(err, errlen, "%s: truncated audio: %lld of %lld frames decoded", path, (long long)got,
                     (long long)info.frames);
        return -1;
    }
    for (size_t t = 0; t < nf; t++) { /* downmix: the mean of the channels */
        float s = 0;
        for (size_t c = 0; c < ch; c++) s += buf[t * ch + c];
        buf[t] = s / (float)ch;
    }
    if (rate_in) *rate_in = info.samplerate;
    if (channels) *channels = info.channels;
    if (info.samplerate == rate_out) {
        *out = buf;
        *n = nf;
        return 0;
    }
    int rc = derf_resample(buf, nf, info.samplerate, rate_out, out, n, err, errlen);
    free(buf);
    return rc;
}
