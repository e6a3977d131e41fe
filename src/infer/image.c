/* image.c: image files for `derf classify` and the examples, decoded by stb_image (Debian libstb-dev)
 * and normalized as the training batches are (derf/infer.h). */
#include <stdio.h>
#include <stdlib.h>
#include "derf/infer.h"
#include "derf/io.h"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#endif
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#include <stb/stb_image.h>

int derf_image_load(const char *path, int side, int chans, float mean, float std, int invert, float *out,
                    char *err, size_t errlen) {
    if (chans != 1 && chans != 3) {
        derf_io_errf(err, errlen, "images with %d channels are not supported (1: grey, 3: RGB)", chans);
        return -1;
    }
    if (!(std > 0)) { derf_io_errf(err, errlen, "pixel std must be positive, not %g", (double)std); return -1; }
    int w, h, n;
    unsigned char *px = stbi_load(path, &w, &h, &n, chans);
    if (!px) {
        derf_io_errf(err, errlen, "%s: cannot read the image (%s)", path, stbi_failure_reason());
        return -1;
    }
    if (w != side || h != side) {
        stbi_image_free(px);
        derf_io_errf(err, errlen, "%s is %dx%d pixels but the model takes %dx%d (resize it first, e.g. "
                     "'convert IN -resize %dx%d! OUT.png')", path, w, h, side, side, side, side);
        return -1;
    }
    const size_t hw = (size_t)side * side;
    const float scale = 1.f / (255.f * std), off = mean / std;   /* as derf_batch_images */
    for (int c = 0; c < chans; c++)
        for (size_t i = 0; i < hw; i++) {
            float v = px[i * chans + c];
            if (invert) v = 255.0f - v;
            out[c * hw + i] = v * scale - off;
        }
    stbi_image_free(px);
    return 0;
}
