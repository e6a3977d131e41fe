/* functions.c: the registry of base point-wise functions: names, formulas, notes and a plain
 * double-precision reference of each (libm only; the tests use it for finite differences and
 * `derf functions` for measuring properties). The float kernels live in functions.h. */
#include <assert.h>
#include <math.h>
#include <string.h>
#include "derf/norm.h"

static double sgn(double u) { return u > 0 ? 1 : (u < 0 ? -1 : 0); }
static double clamp1(double v) { return v > 1 ? 1 : (v < -1 ? -1 : v); }

static double r_erf(double u) { return erf(u); }
static double r_tanh(double u) { return tanh(u); }
static double r_satursin(double u) { return sin(u > M_PI_2 ? M_PI_2 : (u < -M_PI_2 ? -M_PI_2 : u)); }
static double r_arcsinh(double u) { return asinh(u); }
static double r_arcsinhclip(double u) { return clamp1(asinh(u)); }
static double r_isru(double u) { return u / sqrt(1 + u * u); }
static double r_exproot(double u) { return sgn(u) * (1 - exp(-sqrt(fabs(u)))); }
static double r_linear(double u) { return u; }
static double r_linearclip(double u) { return clamp1(u); }
static double r_expsign(double u) { return -sgn(u) * (exp(-fabs(u)) - 1); }
static double r_logsign(double u) { return sgn(u) * log(fabs(u) + 1); }
static double r_logsignclip(double u) { return clamp1(r_logsign(u)); }
static double r_relsign(double u) { return u / (sqrt(u * u + 1) + 1); }
static double r_arctan(double u) { return 2 / M_PI * atan(u); }
static double r_smoothsign(double u) { return u / (1 + fabs(u)); }
static double r_logquad(double u) { return sgn(u) * log(u * u + 1); }
static double r_logquadclip(double u) { return clamp1(r_logquad(u)); }
static double r_power23(double u) { return sgn(u) * pow(fabs(u), 2.0 / 3.0); }
static double r_power23clip(double u) { return clamp1(r_power23(u)); }
static double r_saturlog(double u) { double l = log(fabs(u) + 1); return sgn(u) * l / (l + 1); }
static double r_cubsign(double u) { return u * u * u / (fabs(u) * fabs(u) * fabs(u) + 1); }
static double r_sin(double u) { return sin(u); }
static double r_dampx(double u) { return 2 * u / (1 + u * u); }
static double r_dampexp(double u) { return M_E * u * exp(-fabs(u)); }

static const derf_fn_info FNS[] = {
    [DERF_FN_ERF] = {"erf", "erf(u)", "the paper's pick (Derf)", r_erf},
    [DERF_FN_TANH] = {"tanh", "tanh(u)", "DyT's function", r_tanh},
    [DERF_FN_SATURSIN] = {"satursin", "sin(clip(u, -pi/2, pi/2))", "hard saturation at |u| = pi/2", r_satursin},
    [DERF_FN_ARCSINHCLIP] = {"arcsinhclip", "clip(asinh(u), -1, 1)", "clip active at |u| >= sinh(1)", r_arcsinhclip},
    [DERF_FN_ISRU] = {"isru", "u / sqrt(1 + u^2)", "inverse square root unit", r_isru},
    [DERF_FN_EXPROOT] = {"exproot", "sign(u) (1 - exp(-sqrt|u|))", "infinite slope at 0: f' taken at |u| >= 1e-6", r_exproot},
    [DERF_FN_LINEARCLIP] = {"linearclip", "clip(u, -1, 1)", "hardtanh", r_linearclip},
    [DERF_FN_EXPSIGN] = {"expsign", "sign(u) (1 - exp(-|u|))", "", r_expsign},
    [DERF_FN_LOGSIGNCLIP] = {"logsignclip", "clip(sign(u) ln(1 + |u|), -1, 1)", "clip active at |u| >= e - 1", r_logsignclip},
    [DERF_FN_RELSIGN] = {"relsign", "u / (sqrt(u^2 + 1) + 1)", "= tanh(asinh(u) / 2)", r_relsign},
    [DERF_FN_ARCTAN] = {"arctan", "(2/pi) atan(u)", "polynomial (1/u) saturation", r_arctan},
    [DERF_FN_SMOOTHSIGN] = {"smoothsign", "u / (1 + |u|)", "softsign", r_smoothsign},
    [DERF_FN_LOGQUADCLIP] = {"logquadclip", "clip(sign(u) ln(1 + u^2), -1, 1)", "flat centre: f'(0) = 0", r_logquadclip},
    [DERF_FN_POWER23CLIP] = {"power23clip", "clip(sign(u) |u|^(2/3), -1, 1)", "infinite slope at 0: f' taken at |u| >= 1e-6", r_power23clip},
    [DERF_FN_SATURLOG] = {"saturlog", "sign(u) L / (L + 1), L = ln(1 + |u|)", "very slow saturation", r_saturlog},
    [DERF_FN_CUBSIGN] = {"cubsign", "u^3 / (|u|^3 + 1)", "flat centre: f'(0) = 0", r_cubsign},
    [DERF_FN_ARCSINH] = {"arcsinh", "asinh(u)", "unbounded (property study)", r_arcsinh},
    [DERF_FN_LOGSIGN] = {"logsign", "sign(u) ln(1 + |u|)", "unbounded (property study)", r_logsign},
    [DERF_FN_LOGQUAD] = {"logquad", "sign(u) ln(1 + u^2)", "unbounded (property study)", r_logquad},
    [DERF_FN_POWER23] = {"power23", "sign(u) |u|^(2/3)", "unbounded, diverges in the paper; f' taken at |u| >= 1e-6", r_power23},
    [DERF_FN_LINEAR] = {"linear", "u", "unbounded, diverges in the paper", r_linear},
    [DERF_FN_SIN] = {"sin", "sin(u)", "non-monotone, oscillatory (property study)", r_sin},
    [DERF_FN_DAMPX] = {"dampx", "2u / (1 + u^2)", "non-monotone, hump (property study)", r_dampx},
    [DERF_FN_DAMPEXP] = {"dampexp", "e u exp(-|u|)", "non-monotone, hump (property study)", r_dampexp},
};
static_assert(sizeof FNS / sizeof FNS[0] == DERF_FN_COUNT, "every derf_fn_id needs a registry entry");

const derf_fn_info *derf_fn_get(derf_fn_id id) {
    if ((int)id < 0 || id >= DERF_FN_COUNT) return NULL;
    return &FNS[id];
}

int derf_fn_lookup(const char *name) {
    for (int i = 0; i < DERF_FN_COUNT; i++)
        if (FNS[i].name && strcmp(FNS[i].name, name) == 0) return i;
    return -1;
}
