/* tanh_fit.c: the paper's Eq. 11. eps minimises the L1 area between tanh(eps x) and erf(x) over the
 * real line (the paper: eps ~ 1.205). Both functions are odd, so the integral is twice the one over
 * [0, inf). The integrand |d(x)|, d = tanh(eps x) - erf(x), has kinks where d changes sign; the
 * crossing points are found by a scan plus bisection, and each smooth piece is integrated by
 * 20-point Gauss-Legendre on short panels. Beyond x = 12 erf(x) is 1 in double precision and the
 * tail 1 - tanh(eps x) decays like 2 exp(-2 eps x); the range runs until that is below 1e-18. */
#include <math.h>
#include "derf/study.h"

#define GL_N 20
static double gl_x[GL_N], gl_w[GL_N];

static void gl_init(void) {
    if (gl_w[0] != 0) return;
    for (int i = 0; i < GL_N; i++) { /* Newton on the Legendre polynomial P_N */
        double x = cos(M_PI * (i + 0.75) / (GL_N + 0.5)), dp = 1;
        for (int it = 0; it < 100; it++) {
            double p0 = 1, p1 = x;
            for (int k = 2; k <= GL_N; k++) {
                double p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
                p0 = p1; p1 = p2;
            }
            dp = GL_N * (x * p1 - p0) / (x * x - 1);
            double dx = p1 / dp;
            x -= dx;
            if (fabs(dx) < 1e-16) break;
        }
        gl_x[i] = x;
        gl_w[i] = 2 / ((1 - x * x) * dp * dp);
    }
}

static double diff(double eps, double x) { return tanh(eps * x) - erf(x); }

static double piece(double eps, int p, double a, double b) {
    double s = 0, h = 0.125;
    int n = (int)ceil((b - a) / h);
    if (n < 1) n = 1;
    h = (b - a) / n;
    for (int k = 0; k < n; k++) {
        double c = a + (k + 0.5) * h, r = 0.5 * h;
        for (int i = 0; i < GL_N; i++) {
            double d = fabs(diff(eps, c + r * gl_x[i]));
            s += gl_w[i] * r * (p == 1 ? d : d * d);
        }
    }
    return s;
}

double derf_tanh_erf_gap(double eps, int p) {
    gl_init();
    if (!(eps > 0)) return INFINITY;
    /* tail: 2 exp(-2 eps x) < 1e-18 for x > 21 / eps */
    double X = fmax(12.0, 21.0 / eps + 1);
    double cuts[64];
    int nc = 0;
    cuts[nc++] = 0;
    const double step = 0.005;
    double xa = step, da = diff(eps, xa);
    for (double xb = 2 * step; xb <= 12.0 + 1e-12 && nc < 62; xb += step) {
        double db = diff(eps, xb);
        if ((da < 0 && db > 0) || (da > 0 && db < 0)) {
            double lo = xa, hi = xb, dl = da;
            for (int it = 0; it < 200 && hi - lo > 1e-15; it++) {
                double m = 0.5 * (lo + hi), dm = diff(eps, m);
                if ((dm < 0) == (dl < 0)) { lo = m; dl = dm; } else hi = m;
            }
            cuts[nc++] = 0.5 * (lo + hi);
        }
        xa = xb; da = db;
    }
    cuts[nc++] = X;
    double s = 0;
    for (int i = 0; i + 1 < nc; i++) s += piece(eps, p, cuts[i], cuts[i + 1]);
    return 2 * s;
}

double derf_tanh_erf_fit(int p, double lo, double hi, double *gap) {
    const double g = (sqrt(5.0) - 1) / 2;
    double a = lo, b = hi, c = b - g * (b - a), d = a + g * (b - a);
    double fc = derf_tanh_erf_gap(c, p), fd = derf_tanh_erf_gap(d, p);
    while (b - a > 1e-10) {
        if (fc < fd) { b = d; d = c; fd = fc; c = b - g * (b - a); fc = derf_tanh_erf_gap(c, p); }
        else { a = c; c = d; fc = fd; d = a + g * (b - a); fd = derf_tanh_erf_gap(d, p); }
    }
    double e = 0.5 * (a + b);
    if (gap) *gap = derf_tanh_erf_gap(e, p);
    return e;
}
