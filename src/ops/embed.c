/* embed.c: token + learned position embedding (GPT-2 wte/wpe), a position embedding added in place
 * (ViT pos_embed) and mean pooling over tokens (ViT global_pool="avg"), forward and backward. */
#include <omp.h>
#include "derf/ops.h"

/* tok[B,T], wte[V,C], wpe[T,C] or NULL -> out[B,T,C] = wte[tok] + wpe[t] */
void derf_embed_forward(float *out, const int32_t *tok, const float *wte, const float *wpe,
                        int B, int T, int C) {
    #pragma omp parallel for collapse(2) schedule(static) if ((long)B * T * C > 65536)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *e = wte + (size_t)tok[(size_t)b * T + t] * C;
            if (wpe) {
                const float *p = wpe + (size_t)t * C;
                for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
            } else {
                for (int c = 0; c < C; c++) o[c] = e[c];
            }
        }
    }
}

/* dout[B,T,C], tok[B,T] -> dwte[V,C] += scatter of dout by token; dwpe[T,C] += sum_b dout.
 * Tokens repeat, so dwte is split among threads by channel, not by token. */
void derf_embed_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                         int B, int T, int C) {
    if (dwte) {
        /* each thread owns a contiguous channel slice [c0, c1) and walks every token row once */
        #pragma omp parallel if ((long)B * T * C > 65536)
        {
            int nth = omp_get_num_threads(), id = omp_get_thread_num();
            int c0 = (int)((long)C * id / nth), c1 = (int)((long)C * (id + 1) / nth);
            for (size_t i = 0; i < (size_t)B * T; i++) {
                float *d = dwte + (size_t)tok[i] * C;
                const float *g = dout + i * C;
                for (int c = c0; c < c1; c++) d[c] += g[c];
            }
        }
    }
    if (dwpe) derf_add_pos_backward(dwpe, dout, B, T, C);
}

/* x[B,T,C] += pos[T,C] */
void derf_add_pos_forward(float *x, const float *pos, int B, int T, int C) {
    #pragma omp parallel for collapse(2) schedule(static) if ((long)B * T * C > 65536)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = x + ((size_t)b * T + t) * C;
            const float *p = pos + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] += p[c];
        }
}

/* dx[B,T,C] -> dpos[T,C] += sum_b dx */
void derf_add_pos_backward(float *dpos, const float *dx, int B, int T, int C) {
    if (!dpos) return;
    #pragma omp parallel for schedule(static) if ((long)B * T * C > 65536)
    for (int t = 0; t < T; t++) {
        float *d = dpos + (size_t)t * C;
        for (int b = 0; b < B; b++) {
            const float *g = dx + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) d[c] += g[c];
        }
    }
}

/* x[B,T,C] -> out[B,C] = mean over t in [T0, T) */
void derf_mean_pool_forward(float *out, const float *x, int B, int T, int T0, int C) {
    const float inv = 1.0f / (float)(T - T0);
    #pragma omp parallel for schedule(static) if ((long)B * T * C > 65536)
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int t = T0; t < T; t++) {
            const float *xi = x + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) o[c] += xi[c];
        }
        for (int c = 0; c < C; c++) o[c] *= inv;
    }
}

/* dout[B,C] -> dx[B,T,C] += dout / (T-T0) for t >= T0 (tokens before T0 get nothing) */
void derf_mean_pool_backward(float *dx, const float *dout, int B, int T, int T0, int C) {
    if (!dx) return;
    const float inv = 1.0f / (float)(T - T0);
    #pragma omp parallel for collapse(2) schedule(static) if ((long)B * T * C > 65536)
    for (int b = 0; b < B; b++)
        for (int t = T0; t < T; t++) {
            float *d = dx + ((size_t)b * T + t) * C;
            const float *g = dout + (size_t)b * C;
            for (int c = 0; c < C; c++) d[c] += g[c] * inv;
        }
}

void derf_scalar_scale_forward(float *y, const float *x, float s, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = s * x[i];
}

void derf_scalar_scale_backward(float *dy, float *ds, const float *x, float s, size_t n) {
    double acc = 0.0;
    #pragma omp parallel for reduction(+:acc) schedule(static) if (n > 65536)
    for (long i = 0; i < (long)n; i++) {
        acc += (double)dy[i] * x[i];
        dy[i] *= s;
    }
    *ds += (float)acc;
}
