/* conv1d.c: grouped, strided, padded 1-D convolution on channels-last sequences (wav2vec 2.0's conv
 * feature encoder and its convolutional positional embedding), as im2col into a scratch buffer and one
 * cblas_sgemm per (sample, group); backward through the same im2col and a col2im scatter-add.
 * An unpadded, ungrouped convolution over several input channels (the encoder's blocks after the first)
 * needs no im2col: frame t's window x[tS .. tS+K) is contiguous, so the products read x in place, in
 * chunks of S taps (a chunk's rows, S*Cin apart, do not overlap), against the weight permuted to
 * [Cout, K, Cin]. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include "derf/ops_audio.h"

int derf_conv1d_len(int T, int K, int S, int P) {
    int span = T + 2 * P - K;
    return span < 0 ? 0 : span / S + 1;
}

/* cols[t, i*K + k] = x[t*S - P + k, g*Ig + i] (zero outside [0, T)); x is one sample [T, Cin]. Through the
 * group's input transposed, xt[i, u] = x[u - P, g*Ig + i] for the U = (To-1)*S + K padded frames the windows
 * span: each cols row is then Ig contiguous copies of K values (x's channels-last rows would make every
 * write a stride-K scatter). */
static void im2col(float *cols, const float *x, int T, int Cin, int K, int S, int P, int Ig, int g, int To) {
    const int U = (To - 1) * S + K;
    if (Cin == 1 && P == 0) { /* one channel, no padding: x is its own transpose */
        for (int t = 0; t < To; t++) memcpy(cols + (size_t)t * K, x + (size_t)t * S, (size_t)K * sizeof(float));
        return;
    }
    float *xt = malloc(sizeof(float) * (size_t)Ig * U);
    for (int u = 0; u < U; u++) {
        const int tt = u - P;
        const float *src = tt >= 0 && tt < T ? x + (size_t)tt * Cin + (size_t)g * Ig : NULL;
        for (int i = 0; i < Ig; i++) xt[(size_t)i * U + u] = src ? src[i] : 0.0f;
    }
    for (int t = 0; t < To; t++) {
        float *row = cols + (size_t)t * Ig * K;
        for (int i = 0; i < Ig; i++) memcpy(row + (size_t)i * K, xt + (size_t)i * U + (size_t)t * S, (size_t)K * sizeof(float));
    }
    free(xt);
}

/* dx[t*S - P + k, g*Ig + i] += dcols[t, i*K + k], through the transposed form as im2col */
static void col2im_add(float *dx, const float *dcols, int T, int Cin, int K, int S, int P, int Ig, int g, int To) {
    const int U = (To - 1) * S + K;
    float *dxt = calloc((size_t)Ig * U, sizeof(float));
    for (int t = 0; t < To; t++) {
        const float *row = dcols + (size_t)t * Ig * K;
        for (int i = 0; i < Ig; i++) {
            float *d = dxt + (size_t)i * U + (size_t)t * S;
            const float *r = row + (size_t)i * K;
            #pragma omp simd
            for (int k = 0; k < K; k++) d[k] += r[k];
        }
    }
    for (int u = 0; u < U; u++) {
        const int tt = u - P;
        if (tt < 0 || tt >= T) continue;
        float *dst = dx + (size_t)tt * Cin + (size_t)g * Ig;
        for (int i = 0; i < Ig; i++) dst[i] += dxt[(size_t)i * U + u];
    }
    free(dxt);
}

/* wp[o, k*Cin + i] = w[o, i*K + k] (dir 0); dir 1: w[o, i*K + k] += wp[o, k*Cin + i] */
static void permute_w(float *wp, float *w, int Cout, int Cin, int K, int dir) {
    for (int o = 0; o < Cout; o++)
        for (int i = 0; i < Cin; i++)
            for (int k = 0; k < K; k++) {
                const size_t a = (size_t)o * Cin * K + (size_t)k * Cin + i, b = (size_t)o * Cin * K + (size_t)i * K + k;
                if (dir == 0) wp[a] = w[b];
                else w[b] += wp[a];
            }
}

static int in_place(int Cin, int P, int G) { return G == 1 && P == 0 && Cin > 1; }

void derf_conv1d_forward(float *y, float *cols, const float *x, const float *w, const float *b, int B, int T,
                         int Cin, int Cout, int K, int S, int P, int G, int To) {
    const int Ig = Cin / G, Og = Cout / G, IK = Ig * K;
    if (in_place(Cin, P, G)) {
        float *wp = malloc(sizeof(float) * (size_t)Cout * IK);
        permute_w(wp, (float *)w, Cout, Cin, K, 0);
        for (int bb = 0; bb < B; bb++) {
            const float *xb = x + (size_t)bb * T * Cin;
            float *yb = y + (size_t)bb * To * Cout;
            if (b)
                for (int t = 0; t < To; t++) memcpy(yb + (size_t)t * Cout, b, (size_t)Cout * sizeof(float));
            /* y[t, :] += x[tS + k0 .. tS + k0 + kn) (kn*Cin values) . wp[:, k0*Cin ..] */
            for (int k0 = 0; k0 < K; k0 += S) {
                const int kn = K - k0 < S ? K - k0 : S;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, To, Cout, kn * Cin, 1.0f, xb + (size_t)k0 * Cin, S * Cin,
                            wp + (size_t)k0 * Cin, IK, b || k0 ? 1.0f : 0.0f, yb, Cout);
            }
        }
        free(wp);
        return;
    }
    for (int bb = 0; bb < B; bb++) {
        const float *xb = x + (size_t)bb * T * Cin;
        float *yb = y + (size_t)bb * To * Cout;
        for (int t = 0; t < To; t++) {
            if (b) memcpy(yb + (size_t)t * Cout, b, (size_t)Cout * sizeof(float));
            else memset(yb + (size_t)t * Cout, 0, (size_t)Cout * sizeof(float));
        }
        for (int g = 0; g < G; g++) {
            im2col(cols, xb, T, Cin, K, S, P, Ig, g, To);
            /* y[t, g*Og + j] += sum_c cols[t, c] w[g*Og + j, c] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, To, Og, IK, 1.0f, cols, IK,
                        w + (size_t)g * Og * IK, IK, 1.0f, yb + (size_t)g * Og, Cout);
        }
    }
}

void derf_conv1d_backward(float *dx, float *dw, float *db, float *cols, float *dcols, const float *dy,
                          const float *x, const float *w, int B, int T, int Cin, int Cout, int K, int S, int P,
                          int G, int To) {
    const int Ig = Cin / G, Og = Cout / G, IK = Ig * K;
    float *wp = NULL, *dwp = NULL;
    if (in_place(Cin, P, G)) {
        wp = malloc(sizeof(float) * (size_t)Cout * IK);
        dwp = calloc((size_t)Cout * IK, sizeof(float));
        permute_w(wp, (float *)w, Cout, Cin, K, 0);
    }
    for (int bb = 0; bb < B; bb++) {
        const float *dyb = dy + (size_t)bb * To * Cout;
        if (wp) {
            const float *xb = x + (size_t)bb * T * Cin;
            float *dxb = dx ? dx + (size_t)bb * T * Cin : NULL;
            for (int k0 = 0; k0 < K; k0 += S) {
                const int kn = K - k0 < S ? K - k0 : S;
                /* dwp[:, k0*Cin ..] += dy^T x[tS + k0 ..]; dx[tS + k0 ..] += dy wp[:, k0*Cin ..] (rows S*Cin apart) */
                if (dw)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cout, kn * Cin, To, 1.0f, dyb, Cout,
                                xb + (size_t)k0 * Cin, S * Cin, 1.0f, dwp + (size_t)k0 * Cin, IK);
                if (dxb)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, To, kn * Cin, Cout, 1.0f, dyb, Cout,
                                wp + (size_t)k0 * Cin, IK, 1.0f, dxb + (size_t)k0 * Cin, S * Cin);
            }
        }
        if (db)
            for (int t = 0; t < To; t++)
                for (int o = 0; o < Cout; o++) db[o] += dyb[(size_t)t * Cout + o];
        for (int g = 0; g < G && !wp; g++) {
            if (dw) {
                im2col(cols, x + (size_t)bb * T * Cin, T, Cin, K, S, P, Ig, g, To);
                /* dw[g*Og + j, c] += sum_t dy[t, g*Og + j] cols[t, c] */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Og, IK, To, 1.0f, dyb + (size_t)g * Og, Cout,
                            cols, IK, 1.0f, dw + (size_t)g * Og * IK, IK);
            }
            if (dx) {
                /* dcols[t, c] = sum_j dy[t, g*Og + j] w[g*Og + j, c] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, To, IK, Og, 1.0f, dyb + (size_t)g * Og, Cout,
                            w + (size_t)g * Og * IK, IK, 0.0f, dcols, IK);
                col2im_add(dx + (size_t)bb * T * Cin, dcols, T, Cin, K, S, P, Ig, g, To);
            }
        }
    }
    if (wp) {
        if (dw) permute_w(dwp, dw, Cout, Cin, K, 1);
        free(wp);
        free(dwp);
    }
}
