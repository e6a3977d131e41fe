/* augment.c: training-batch construction (see derf/augment.h). All randomness is drawn serially
 * from one rng in a fixed order, so a batch depends only on the rng state and the indices. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "derf/augment.h"

derf_pixel_stats derf_pixel_stats_of(const derf_dataset *ds) {
    size_t n = (size_t)ds->n * ds->rows * ds->cols;
    double s = 0, s2 = 0;
#pragma omp parallel for reduction(+:s, s2) schedule(static)
    for (size_t i = 0; i < n; i++) {
        double v = ds->images[i] / 255.0;
        s += v;
        s2 += v * v;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    derf_pixel_stats st = {(float)mean, (float)sqrt(var > 1e-12 ? var : 1e-12)};
    return st;
}

void derf_batch_images(float *out, const derf_dataset *ds, const int *idx, int B, derf_pixel_stats st) {
    size_t hw = (size_t)ds->rows * ds->cols;
    float scale = 1.f / (255.f * st.std), off = st.mean / st.std;
    for (int b = 0; b < B; b++) {
        const uint8_t *src = ds->images + (size_t)idx[b] * hw;
        for (size_t i = 0; i < hw; i++) out[(size_t)b * hw + i] = src[i] * scale - off;
    }
}

static float gamma_draw(derf_rng *r, float a) {
    if (a < 1.f) { /* boost: G(a) = G(a+1) U^(1/a) */
        float u = derf_rng_uniform(r);
        return gamma_draw(r, a + 1.f) * powf(u > 1e-30f ? u : 1e-30f, 1.f / a);
    }
    float d = a - 1.f / 3.f, c = 1.f / sqrtf(9.f * d);
    for (;;) {
        float x = derf_rng_normal(r), v = 1.f + c * x;
        if (v <= 0.f) continue;
        v = v * v * v;
        float u = derf_rng_uniform(r);
        if (u < 1.f - 0.0331f * x * x * x * x) return d * v;
        if (logf(u > 1e-30f ? u : 1e-30f) < 0.5f * x * x + d * (1.f - v + logf(v))) return d * v;
    }
}

float derf_rng_beta(derf_rng *rng, float a, float b) {
    float x = gamma_draw(rng, a), y = gamma_draw(rng, b);
    return x + y > 0 ? x / (x + y) : 0.5f;
}

float derf_aug_batch(float *images, float *q, const derf_aug_cfg *cfg, const derf_dataset *ds,
                     const int *idx, int B, int V, derf_pixel_stats st, derf_rng *rng) {
    const int H = ds->rows, W = ds->cols;
    const size_t hw = (size_t)H * W;
    const float bg = -st.mean / st.std; /* a black pixel after normalization */
    derf_batch_images(images, ds, idx, B, st);
    float *tmp = malloc(hw * sizeof(float));
    for (int b = 0; b < B; b++) {
        float *im = images + (size_t)b * hw;
        int dx = cfg->translate ? (int)derf_rng_below(rng, 2 * cfg->translate + 1) - cfg->translate : 0;
        int dy = cfg->translate ? (int)derf_rng_below(rng, 2 * cfg->translate + 1) - cfg->translate : 0;
        int flip = cfg->hflip ? (int)(derf_rng_u32(rng) & 1) : 0;
        if (dx || dy || flip) {
            memcpy(tmp, im, hw * sizeof(float));
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int sx = flip ? W - 1 - (x - dx) : x - dx, sy = y - dy;
                    im[y * W + x] = (sx >= 0 && sx < W && sy >= 0 && sy < H) ? tmp[sy * W + sx] : bg;
                }
        }
        if (cfg->erase_prob > 0 && derf_rng_uniform(rng) < cfg->erase_prob) {
            for (int attempt = 0; attempt < 10; attempt++) {
                float area = (0.02f + derf_rng_uniform(rng) * (1.f / 3.f - 0.02f)) * (float)hw;
                float logr = logf(0.3f) + derf_rng_uniform(rng) * (logf(3.3f) - logf(0.3f));
                int eh = (int)lroundf(sqrtf(area * expf(logr))), ew = (int)lroundf(sqrtf(area / expf(logr)));
                if (eh < 1 || ew < 1 || eh >= H || ew >= W) continue;
                int y0 = (int)derf_rng_below(rng, (uint32_t)(H - eh + 1)), x0 = (int)derf_rng_below(rng, (uint32_t)(W - ew + 1));
                for (int y = y0; y < y0 + eh; y++)
                    for (int x = x0; x < x0 + ew; x++) im[y * W + x] = derf_rng_normal(rng);
                break;
            }
        }
    }
    /* targets, then mixing */
    const float off = cfg->smoothing / V, on = 1.f - cfg->smoothing + off;
    float lam = 1.f;
    int use_cut = 0;
    int mix_on = (cfg->mixup_alpha > 0 || cfg->cutmix_alpha > 0) && derf_rng_uniform(rng) < cfg->mix_prob;
    if (mix_on) {
        use_cut = cfg->cutmix_alpha > 0 && (cfg->mixup_alpha <= 0 || derf_rng_uniform(rng) < cfg->switch_prob);
        lam = derf_rng_beta(rng, use_cut ? cfg->cutmix_alpha : cfg->mixup_alpha, use_cut ? cfg->cutmix_alpha : cfg->mixup_alpha);
    }
    if (mix_on && use_cut) {
        float cut = sqrtf(1.f - lam);
        int ch = (int)(H * cut), cw = (int)(W * cut);
        int cy = (int)derf_rng_below(rng, (uint32_t)H), cx = (int)derf_rng_below(rng, (uint32_t)W);
        int y0 = cy - ch / 2 < 0 ? 0 : cy - ch / 2, y1 = cy + ch / 2 > H ? H : cy + ch / 2;
        int x0 = cx - cw / 2 < 0 ? 0 : cx - cw / 2, x1 = cx + cw / 2 > W ? W : cx + cw / 2;
        lam = 1.f - (float)((y1 - y0) * (x1 - x0)) / (float)hw;
        /* swap boxes pairwise (b, B-1-b): each image gets its partner's box */
        for (int b = 0; b < B / 2; b++) {
            float *p = images + (size_t)b * hw, *r = images + (size_t)(B - 1 - b) * hw;
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) { float t = p[y * W + x]; p[y * W + x] = r[y * W + x]; r[y * W + x] = t; }
        }
    } else if (mix_on) {
        for (int b = 0; b < B / 2; b++) {
            float *p = images + (size_t)b * hw, *r = images + (size_t)(B - 1 - b) * hw;
            for (size_t i = 0; i < hw; i++) {
                float a = p[i], c = r[i];
                p[i] = lam * a + (1.f - lam) * c;
                r[i] = lam * c + (1.f - lam) * a;
            }
        }
    }
    for (int b = 0; b < B; b++) {
        float *qb = q + (size_t)b * V;
        int mate = B - 1 - b;
        /* an odd batch's middle sample is its own partner: mixing leaves it unchanged */
        for (int v = 0; v < V; v++) qb[v] = off;
        qb[ds->labels[idx[b]]] += lam * (on - off);
        qb[ds->labels[idx[mate]]] += (1.f - lam) * (on - off);
    }
    free(tmp);
    return lam;
}
