/* xent.c: softmax cross-entropy over logits[N,V], fused forward and backward, with hard targets
 * (label smoothing, ignored rows) or soft targets (mixup / cutmix). Row statistics in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "derf/ops.h"

/* One row: loss = logsumexp(x) - sum_v q_v x_v with q = (1-eps) onehot(tgt) + eps/V
 * (tgt < 0: q given by soft[V] instead). Adds gscale * (softmax - q) to d if d != NULL. */
static double xent_row(float *d, const float *x, int tgt, const float *soft, double eps,
                       double gscale, int V) {
    double mx = x[0];
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    double sum = 0.0, sumx = 0.0, qx = 0.0;
    for (int v = 0; v < V; v++) { sum += exp((double)x[v] - mx); sumx += x[v]; }
    const double lse = mx + log(sum);
    if (soft) {
        for (int v = 0; v < V; v++) qx += (double)soft[v] * x[v];
    } else {
        qx = (1.0 - eps) * x[tgt] + eps / V * sumx;
    }
    if (d) {
        const double inv = 1.0 / sum;
        for (int v = 0; v < V; v++) {
            double q = soft ? (double)soft[v] : eps / V + (v == tgt ? 1.0 - eps : 0.0);
            d[v] += (float)(gscale * (exp((double)x[v] - mx) * inv - q));
        }
    }
    return lse - qx;
}

/* logits[N,V], targets[N] (< 0: ignored) -> mean loss over kept rows; dlogits[N,V] += scale*(p-q)/Nkept */
float derf_xent_forward_backward(float *dlogits, const float *logits, const int32_t *targets,
                                 float smoothing, float scale, int N, int V) {
    int kept = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] >= V) {
            fprintf(stderr, "derf: cross-entropy target %d out of range [0, %d) at row %d\n",
                    (int)targets[n], V, n);
            exit(1);
        }
        kept += targets[n] >= 0;
    }
    if (kept == 0) return 0.0f;
    const double gscale = (double)scale / kept;
    double total = 0.0;
    #pragma omp parallel for reduction(+:total) schedule(static) if ((long)N * V > 16384)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        total += xent_row(dlogits ? dlogits + (size_t)n * V : NULL, logits + (size_t)n * V,
                          targets[n], NULL, smoothing, gscale, V);
    }
    return (float)(total / kept);
}

/* logits[N,V], q[N,V] (rows sum to 1) -> mean loss over N; dlogits[N,V] += scale*(p-q)/N */
float derf_xent_soft_forward_backward(float *dlogits, const float *logits, const float *q,
                                      float scale, int N, int V) {
    if (N <= 0) return 0.0f;
    const double gscale = (double)scale / N;
    double total = 0.0;
    #pragma omp parallel for reduction(+:total) schedule(static) if ((long)N * V > 16384)
    for (int n = 0; n < N; n++)
        total += xent_row(dlogits ? dlogits + (size_t)n * V : NULL, logits + (size_t)n * V,
                          -1, q + (size_t)n * V, 0.0, gscale, V);
    return (float)(total / N);
}
