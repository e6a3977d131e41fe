/* png.c: sample grids as PNG files, encoded by stb_image_write (Debian libstb-dev) into memory and
 * written atomically through derf_io_write_file. */
#include <stdlib.h>
#include <string.h>
#include "derf/diffusion.h"
#include "derf/io.h"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>   /* (the diagnostics stay off: unused stb functions are reported at the end) */

typedef struct { unsigned char *p; size_t len, cap; int oom; } png_buf;

static void png_append(void *ctx, void *data, int size) {
    png_buf *b = ctx;
    if (b->oom || size <= 0) return;
    if (b->len + (size_t)size > b->cap) {
        size_t cap = (b->cap ? 2 * b->cap : 65536) + (size_t)size;
        unsigned char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

int derf_png_grid(const char *path, const uint8_t *images, int n, int h, int w, int cols, char *err, size_t errlen) {
    if (n < 1 || h < 1 || w < 1 || cols < 1) return derf_io_errf(err, errlen, "empty PNG grid"), -1;
    if (cols > n) cols = n;
    const int rows = (n + cols - 1) / cols, pad = 2, W = cols * (w + pad) + pad, H = rows * (h + pad) + pad;
    if ((long)W * H > 100000000L) return derf_io_errf(err, errlen, "PNG grid of %dx%d pixels is too large", W, H), -1;
    uint8_t *g = malloc((size_t)W * H);
    if (!g) return derf_io_errf(err, errlen, "out of memory for a %dx%d grid", W, H), -1;
    memset(g, 255, (size_t)W * H);   /* white border */
    for (int i = 0; i < n; i++) {
        const int r = i / cols, c = i % cols;
        for (int y = 0; y < h; y++)
            memcpy(g + (size_t)(pad + r * (h + pad) + y) * W + pad + c * (w + pad), images + ((size_t)i * h + y) * w, (size_t)w);
    }
    png_buf b = {0};
    int ok = stbi_write_png_to_func(png_append, &b, W, H, 1, g, W);
    free(g);
    int rc = -1;
    if (!ok || b.oom) derf_io_errf(err, errlen, "PNG encoding of %s failed", path);
    else rc = derf_io_write_file(path, b.p, b.len, err, errlen);
    free(b.p);
    return rc;
}
