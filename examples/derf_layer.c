/* derf_layer.c: a Derf layer from the installed libderf: y = gamma * erf(alpha x + s) + beta on a 4 x 8 input,
 * forward and backward, and the backward checked against central finite differences of the forward.
 * Build: cc derf_layer.c $(pkg-config --cflags --libs derf) -o derf_layer */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <derf/norm.h>

enum { N = 4, C = 8 };

static double loss(const derf_norm_spec *s, const float *x, const float *p, const float *w) {
    float y[N * C];
    derf_norm_forward(s, y, NULL, x, p, N, C);
    double l = 0;
    for (int i = 0; i < N * C; i++) l += (double)w[i] * y[i];   /* L = sum w * y, so dL/dy = w */
    return l;
}

int main(void) {
    derf_norm_spec s;
    char err[256];
    if (derf_norm_parse("derf", &s, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    const size_t np = derf_norm_param_count(&s, C);
    float *p = malloc(np * sizeof *p), *dp = calloc(np, sizeof *dp), x[N * C], w[N * C], y[N * C], dx[N * C] = {0};
    derf_norm_init(&s, C, p);   /* alpha 0.5, s 0, gamma 1, beta 0 */
    for (int i = 0; i < N * C; i++) {
        x[i] = sinf(0.7f * (float)i);
        w[i] = cosf(0.3f * (float)i);
    }
    derf_norm_forward(&s, y, NULL, x, p, N, C);
    derf_norm_backward(&s, dx, dp, w, x, p, NULL, N, C);
    printf("derf layer, %d x %d: y[0..3] = %.5f %.5f %.5f %.5f\n", N, C, y[0], y[1], y[2], y[3]);
    double worst = 0;   /* finite differences of L over every input and every parameter */
    for (int i = 0; i < N * C; i++) {
        const float keep = x[i], h = 1e-2f;
        x[i] = keep + h; double lp = loss(&s, x, p, w);
        x[i] = keep - h; double lm = loss(&s, x, p, w);
        x[i] = keep;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - dx[i]));
    }
    for (size_t i = 0; i < np; i++) {
        const float keep = p[i], h = 1e-2f;
        p[i] = keep + h; double lp = loss(&s, x, p, w);
        p[i] = keep - h; double lm = loss(&s, x, p, w);
        p[i] = keep;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - dp[i]) / fmax(1.0, fabs(dp[i])));
    }
    printf("backward vs finite differences: worst error %.2e (%s)\n", worst, worst < 2e-3 ? "ok" : "MISMATCH");
    free(p);
    free(dp);
    return worst < 2e-3 ? 0 : 1;
}
