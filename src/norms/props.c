/* props.c: the four properties of a point-wise function that the paper studies (zero-centred, bounded,
 * center-sensitive, monotone), measured numerically on the double-precision reference g(u) of any spec.
 * Used by `derf functions` (the table it prints) and `derf study autosearch` (its property filter). */
#include <math.h>
#include "derf/norm.h"

static double G(const derf_norm_spec *s, double u) { return derf_pointwise_eval_f64(s, u); }

void derf_pointwise_props(const derf_norm_spec *s, derf_fn_props *p) {
    *p = (derf_fn_props){0};
    p->g0 = G(s, 0);
    p->odd = 1;
    p->lo = INFINITY;
    p->hi = -INFINITY;
    int up = 1, down = 1;
    double prev = G(s, -20);
    for (int i = -20000; i <= 20000; i++) { /* u in [-20, 20], step 1e-3 */
        double u = i * 1e-3, g = G(s, u);
        if (fabs(g + G(s, -u)) > 1e-9 * (1 + fabs(g))) p->odd = 0;
        if (i > -20000) {
            if (g < prev - 1e-12) up = 0;
            if (g > prev + 1e-12) down = 0;
        }
        prev = g;
        p->lo = fmin(p->lo, g);
        p->hi = fmax(p->hi, g);
    }
    /* flat zone around 0: how far g stays at g(0) */
    double a = 0;
    while (a < 20 && fabs(G(s, a + 1e-3) - p->g0) < 1e-12 && fabs(G(s, -a - 1e-3) - p->g0) < 1e-12) a += 1e-3;
    p->flat = a;
    p->mono = up && !down ? 1 : (down && !up ? -1 : 0);
    /* bounded: growth between |u| = 1e15 and 1e30 (slow saturators such as saturlog still pass) */
    double far1 = fmax(fabs(G(s, 1e15)), fabs(G(s, -1e15))), far2 = fmax(fabs(G(s, 1e30)), fabs(G(s, -1e30)));
    p->bounded = isfinite(far2) && far2 < 1.1 * far1 + 1e-9;
    for (double u = 1e3; u <= 1e30; u *= 10) {
        double gp = G(s, u), gm = G(s, -u);
        p->lo = fmin(p->lo, fmin(gp, gm));
        p->hi = fmax(p->hi, fmax(gp, gm));
    }
    double d1 = (G(s, 1e-4) - G(s, -1e-4)) / 2e-4, d2 = (G(s, 1e-8) - G(s, -1e-8)) / 2e-8;
    p->slope0 = d2;
    p->slope_inf = fabs(d2) > 100 && fabs(d2) > 3 * fabs(d1);
}

int derf_pointwise_props_ok(const derf_fn_props *p, const char **why) {
    const char *w = NULL;
    if (!(fabs(p->g0) < 1e-12 && p->odd)) w = "not zero-centred";
    else if (!p->bounded) w = "unbounded";
    else if (p->flat > 1e-3 || (!p->slope_inf && !(p->slope0 > 1e-6))) w = "not center-sensitive";
    else if (p->mono != 1) w = "not monotone increasing";
    if (why) *why = w;
    return w == NULL;
}
