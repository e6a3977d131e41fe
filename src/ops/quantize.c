/* quantize.c: wav2vec 2.0's learning targets and loss: the Gumbel product quantizer (hard Gumbel-softmax,
 * straight-through gradient), its diversity penalty (codebook prob-perplexity), and InfoNCE over cosine
 * similarities with given negatives (fairseq Wav2Vec2Model + the "wav2vec" criterion). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "derf/ops_audio.h"

void derf_gumbel_quant_forward(float *q, int32_t *idx, float *ysoft, const float *l, const float *u,
                               const float *cb, float tau, int N, int G, int V, int Dv) {
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const size_t o = (size_t)n * G * V + (size_t)g * V;
            int best = 0;
            if (u) {
                float *y = ysoft + o, mx = -INFINITY;
                for (int v = 0; v < V; v++) {
                    y[v] = (l[o + v] - logf(-logf(u[o + v]))) / tau;
                    if (y[v] > mx) { mx = y[v]; best = v; }
                }
                double s = 0;
                for (int v = 0; v < V; v++) s += (y[v] = expf(y[v] - mx));
                for (int v = 0; v < V; v++) y[v] = (float)(y[v] / s);
            } else {
                for (int v = 1; v < V; v++)
                    if (l[o + v] > l[o + best]) best = v;
            }
            idx[n * G + g] = best;
            memcpy(q + ((size_t)n * G + g) * Dv, cb + ((size_t)g * V + best) * Dv, (size_t)Dv * sizeof(float));
        }
}

void derf_gumbel_quant_backward(float *dl, float *dcb, const float *dq, const int32_t *idx, const float *ysoft,
                                const float *cb, float tau, int N, int G, int V, int Dv) {
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *d = dq + ((size_t)n * G + g) * Dv;
            if (dcb) {
                float *dc = dcb + ((size_t)g * V + idx[n * G + g]) * Dv;
                for (int j = 0; j < Dv; j++) dc[j] += d[j];
            }
            if (!dl || !ysoft) continue;
            const size_t o = (size_t)n * G * V + (size_t)g * V;
            const float *y = ysoft + o;
            double dot = 0;
            float dy[V > 0 ? V : 1];
            for (int v = 0; v < V; v++) {
                const float *e = cb + ((size_t)g * V + v) * Dv;
                double s = 0;
                for (int j = 0; j < Dv; j++) s += (double)d[j] * e[j];
                dy[v] = (float)s;
                dot += s * y[v];
            }
            for (int v = 0; v < V; v++) dl[o + v] += y[v] * (dy[v] - (float)dot) / tau;
        }
}

float derf_quant_diversity(float *dl, float *ppl, const float *l, float scale, int N, int G, int V) {
    const size_t GV = (size_t)G * V;
    double p[GV], a[GV];
    memset(p, 0, sizeof p);
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *x = l + (size_t)n * GV + (size_t)g * V;
            float mx = x[0];
            for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
            double s = 0;
            for (int v = 0; v < V; v++) s += exp((double)x[v] - mx);
            for (int v = 0; v < V; v++) p[(size_t)g * V + v] += exp((double)x[v] - mx) / s / N;
        }
    double perp = 0;
    for (int g = 0; g < G; g++) {
        double h = 0;
        for (int v = 0; v < V; v++) {
            double pv = p[(size_t)g * V + v];
            h -= pv * log(pv + 1e-7);
        }
        double e = exp(h);
        perp += e;
        /* d loss / d p_v = -(1/GV) d exp(H)/d p_v = (1/GV) exp(H) (log(p+1e-7) + p/(p+1e-7)) */
        for (int v = 0; v < V; v++) {
            double pv = p[(size_t)g * V + v];
            a[(size_t)g * V + v] = e * (log(pv + 1e-7) + pv / (pv + 1e-7)) / (double)GV;
        }
    }
    if (ppl) *ppl = (float)perp;
    if (dl)
        for (int n = 0; n < N; n++)
            for (int g = 0; g < G; g++) {
                const float *x = l + (size_t)n * GV + (size_t)g * V;
                float mx = x[0];
                for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
                double s = 0, sa = 0;
                for (int v = 0; v < V; v++) s += exp((double)x[v] - mx);
                for (int v = 0; v < V; v++) sa += exp((double)x[v] - mx) / s * a[(size_t)g * V + v];
                for (int v = 0; v < V; v++) {
                    double sv = exp((double)x[v] - mx) / s;
                    dl[(size_t)n * GV + (size_t)g * V + v] += (float)(scale * sv * (a[(size_t)g * V + v] - sa) / N);
                }
            }
    return (float)(((double)GV - perp) / (double)GV);
}

/* double lanes (8 partial sums, then added): the dot products are most of InfoNCE's time */
static double dotp(const float *a, const float *b, int F) {
    double s = 0;
    #pragma omp simd reduction(+ : s)
    for (int f = 0; f < F; f++) s += (double)a[f] * b[f];
    return s;
}

/* cos = a.b / (|a||b|) (torch: a.b / sqrt(max(|a|^2 |b|^2, eps^2)), eps 1e-8). Adds g * dcos/da to da
 * and g * dcos/db to db. */
static void cos_backward(float *da, float *db, const float *a, const float *b, double na, double nb, double cs,
                         double g, int F) {
    const double ab = g / (na * nb), aa = g * cs / (na * na), bb = g * cs / (nb * nb);
    if (da) {
        #pragma omp simd
        for (int f = 0; f < F; f++) da[f] += (float)(ab * b[f] - aa * a[f]);
    }
    if (db) {
        #pragma omp simd
        for (int f = 0; f < F; f++) db[f] += (float)(ab * a[f] - bb * b[f]);
    }
}

/* Does target row r carry the same code in every group as row m? Identical codes give identical targets by
 * construction (the same codebook entries through the same projection), so this is fairseq's "negative equals
 * the positive" without comparing floats that a BLAS kernel may round differently at different row positions. */
static int same_codes(const int32_t *codes, int G, int r, int m) {
    for (int g = 0; g < G; g++)
        if (codes[(size_t)r * G + g] != codes[(size_t)m * G + g]) return 0;
    return 1;
}

double derf_infonce(float *logits, int *correct, float *dc, float *dq, const float *c, const float *q,
                    const int32_t *codes, int G, const int32_t *neg, int M, int F, int K, float temp, float scale) {
    double loss = 0;
    int corr = 0;
    double cosv[K + 1], pr[K + 1];
    double *nqs = malloc(sizeof(double) * (size_t)M); /* |q_r|, once per row */
    for (int r = 0; r < M; r++) nqs[r] = sqrt(dotp(q + (size_t)r * F, q + (size_t)r * F, F));
    for (int m = 0; m < M; m++) {
        const float *cm = c + (size_t)m * F;
        const double nc = sqrt(dotp(cm, cm, F));
        float *lg = logits + (size_t)m * (K + 1);
        for (int j = 0; j <= K; j++) {
            const int r = j ? neg[(size_t)m * K + j - 1] : m;
            const float *qr = q + (size_t)r * F;
            if (j && same_codes(codes, G, r, m)) {
                lg[j] = -INFINITY;
                cosv[j] = 0;
                continue;
            }
            const double nq = nqs[r], den = nc * nq > 1e-8 ? nc * nq : 1e-8;
            cosv[j] = dotp(cm, qr, F) / den;
            lg[j] = (float)(cosv[j] / temp);
        }
        double mx = lg[0];
        int amax = 0, amin = 0;
        for (int j = 1; j <= K; j++) {
            if (lg[j] > lg[amax]) amax = j;
            if (lg[j] < lg[amin]) amin = j;
            if (lg[j] > mx) mx = lg[j];
        }
        corr += amax == 0 && amin != 0;
        double s = 0;
        for (int j = 0; j <= K; j++) s += (pr[j] = isinf(lg[j]) ? 0.0 : exp((double)lg[j] - mx));
        loss += -((double)lg[0] - mx - log(s));
        if (!dc && !dq) continue;
        for (int j = 0; j <= K; j++) {
            if (isinf(lg[j])) continue;
            const double g = scale * (pr[j] / s - (j == 0)) / temp; /* d CE / d cos_j */
            const int r = j ? neg[(size_t)m * K + j - 1] : m;
            const float *qr = q + (size_t)r * F;
            const double nq = nqs[r];
            cos_backward(dc ? dc + (size_t)m * F : NULL, dq ? dq + (size_t)r * F : NULL, cm, qr, nc, nq, cosv[j], g, F);
        }
    }
    free(nqs);
    if (correct) *correct = corr;
    return loss;
}
