/* spec.c: the --norm spec strings (grammar in docs/norm-spec.md): parsing into a derf_norm_spec,
 * formatting back, and each layer's parameter layout and initial values. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/norm.h"

static const char *TF_NAMES[DERF_TF_COUNT] = {"hshift", "vshift", "clip", "mix", "flat", "neg"};

typedef struct {
    const char *text, *p;
    char *err;
    size_t errlen;
} parser;

static int fail(parser *ps, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->err && ps->errlen) {
        snprintf(ps->err, ps->errlen, "bad norm spec '%s': %s", ps->text, msg);
        for (char *c = ps->err; *c; c++) /* the spec echoed may hold control bytes: keep the message one line */
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    }
    return -1;
}

static void known_names(char *buf, size_t len) {
    size_t n = (size_t)snprintf(buf, len, "layernorm, rmsnorm, derf, dyt");
    for (int i = 0; i < DERF_FN_COUNT && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, ", %s", derf_fn_get((derf_fn_id)i)->name);
}

/* Reads [a-z0-9_] into word; returns its length. */
static size_t read_word(parser *ps, char *word, size_t cap) {
    size_t n = 0;
    while ((isalnum((unsigned char)*ps->p) || *ps->p == '_') && n + 1 < cap) word[n++] = (char)tolower(*ps->p++);
    word[n] = 0;
    return n;
}

static int read_number(parser *ps, const char *what, float *out) {
    if (*ps->p != '=') return fail(ps, "'%s' needs a value, e.g. %s=0.5", what, what);
    ps->p++;
    char *end;
    double v = strtod(ps->p, &end);
    if (end == ps->p) return fail(ps, "'%s=' needs a number", what);
    if (!isfinite(v) || fabs(v) > 1e6) return fail(ps, "'%s' value must be a finite number of moderate size", what);
    ps->p = end;
    *out = (float)v;
    return 0;
}

static int parse_transform(parser *ps, derf_norm_spec *s) {
    char w[32];
    if (!read_word(ps, w, sizeof w)) return fail(ps, "expected a transform after '+' (hshift, vshift, clip, mix, flat, neg)");
    int k;
    for (k = 0; k < DERF_TF_COUNT; k++)
        if (strcmp(w, TF_NAMES[k]) == 0) break;
    if (k == DERF_TF_COUNT) return fail(ps, "unknown transform '%s' (known: hshift, vshift, clip, mix, flat, neg)", w);
    if (s->n_tf >= DERF_MAX_TF) return fail(ps, "at most %d transforms", DERF_MAX_TF);
    derf_tf t = {(derf_tf_kind)k, 0.f};
    if (k != DERF_TF_NEG && read_number(ps, w, &t.lambda)) return -1;
    if (k == DERF_TF_NEG && *ps->p == '=') return fail(ps, "'neg' takes no value");
    if (k == DERF_TF_CLIP && !(t.lambda > 0)) return fail(ps, "clip needs a positive bound, e.g. clip=1");
    if (k == DERF_TF_FLAT && !(t.lambda >= 0)) return fail(ps, "flat needs a half-width >= 0, e.g. flat=1");
    if (k == DERF_TF_MIX && !(t.lambda >= 0 && t.lambda <= 1)) return fail(ps, "mix weight must lie in [0, 1]");
    s->tf[s->n_tf++] = t;
    return 0;
}

/* fnexpr := atom ('+' transform)* ; atom := name | 'neg(' fnexpr ')' */
static int parse_fnexpr(parser *ps, derf_norm_spec *s, int depth) {
    char w[32];
    size_t n = read_word(ps, w, sizeof w);
    if (!n) {
        char names[600];
        known_names(names, sizeof names);
        return fail(ps, "expected a norm name at '%s' (known: %s)", ps->p, names);
    }
    if (strcmp(w, "neg") == 0 && *ps->p == '(') {
        if (depth > 4) return fail(ps, "neg(...) nested too deeply");
        ps->p++;
        if (parse_fnexpr(ps, s, depth + 1)) return -1;
        if (*ps->p != ')') return fail(ps, "missing ')' after neg(...");
        ps->p++;
        if (s->kind != DERF_NORM_POINTWISE) return fail(ps, "neg() applies to point-wise functions only");
        if (s->n_tf >= DERF_MAX_TF) return fail(ps, "at most %d transforms", DERF_MAX_TF);
        s->tf[s->n_tf++] = (derf_tf){DERF_TF_NEG, 0.f};
    } else if (depth == 0 && strcmp(w, "layernorm") == 0) {
        s->kind = DERF_NORM_LAYERNORM;
    } else if (depth == 0 && strcmp(w, "rmsnorm") == 0) {
        s->kind = DERF_NORM_RMSNORM;
        s->bias = 0;
    } else if (strcmp(w, "derf") == 0) {
        s->fn = DERF_FN_ERF;
    } else if (strcmp(w, "dyt") == 0) {
        s->fn = DERF_FN_TANH;
        s->shift = DERF_SHIFT_NONE;
    } else {
        int id = derf_fn_lookup(w);
        if (id < 0) {
            char names[600];
            known_names(names, sizeof names);
            return fail(ps, "unknown norm '%s' (known: %s)", w, names);
        }
        s->fn = (derf_fn_id)id;
    }
    while (*ps->p == '+') {
        ps->p++;
        if (s->kind != DERF_NORM_POINTWISE) return fail(ps, "transforms apply to point-wise functions only");
        if (parse_transform(ps, s)) return -1;
    }
    return 0;
}

static int parse_option(parser *ps, derf_norm_spec *s) {
    char w[32];
    if (!read_word(ps, w, sizeof w)) return fail(ps, "expected an option after ':' (alpha=, s=, shift=, noshift, noaffine, nobias, bias, eps=)");
    int pw = s->kind == DERF_NORM_POINTWISE;
    if (strcmp(w, "alpha") == 0) {
        if (!pw) return fail(ps, "option 'alpha' applies to point-wise norms only");
        return read_number(ps, w, &s->alpha_init);
    }
    if (strcmp(w, "s") == 0) {
        if (!pw) return fail(ps, "option 's' applies to point-wise norms only");
        if (read_number(ps, w, &s->shift_init)) return -1;
        if (s->shift == DERF_SHIFT_NONE) s->shift = DERF_SHIFT_SCALAR;
        return 0;
    }
    if (strcmp(w, "shift") == 0) {
        if (!pw) return fail(ps, "option 'shift' applies to point-wise norms only");
        if (*ps->p != '=') return fail(ps, "'shift' needs a value: shift=none, shift=scalar or shift=channel");
        ps->p++;
        char v[16];
        read_word(ps, v, sizeof v);
        if (strcmp(v, "none") == 0) s->shift = DERF_SHIFT_NONE;
        else if (strcmp(v, "scalar") == 0) s->shift = DERF_SHIFT_SCALAR;
        else if (strcmp(v, "channel") == 0) s->shift = DERF_SHIFT_CHANNEL;
        else return fail(ps, "shift must be none, scalar or channel, not '%s'", v);
        return 0;
    }
    if (strcmp(w, "noshift") == 0) {
        if (!pw) return fail(ps, "option 'noshift' applies to point-wise norms only");
        s->shift = DERF_SHIFT_NONE;
        return 0;
    }
    if (strcmp(w, "noaffine") == 0) { s->affine = 0; s->bias = 0; return 0; }
    if (strcmp(w, "nobias") == 0) { s->bias = 0; return 0; }
    if (strcmp(w, "bias") == 0) {
        if (!s->affine) return fail(ps, "'bias' needs the affine weight (drop ':noaffine')");
        s->bias = 1;
        return 0;
    }
    if (strcmp(w, "eps") == 0) {
        if (pw) return fail(ps, "option 'eps' applies to layernorm and rmsnorm only");
        if (read_number(ps, w, &s->eps)) return -1;
        if (!(s->eps > 0)) return fail(ps, "eps must be positive");
        return 0;
    }
    return fail(ps, "unknown option '%s' (known: alpha=, s=, shift=none|scalar|channel, noshift, noaffine, nobias, bias, eps=)", w);
}

int derf_norm_parse(const char *text, derf_norm_spec *out, char *err, size_t errlen) {
    parser ps = {text ? text : "", text ? text : "", err, errlen};
    derf_norm_spec s = {0};
    s.kind = DERF_NORM_POINTWISE;
    s.fn = DERF_FN_ERF;
    s.shift = DERF_SHIFT_SCALAR;
    s.affine = 1;
    s.bias = 1;
    s.alpha_init = 0.5f;
    s.shift_init = 0.f;
    s.eps = 1e-5f;
    if (!*ps.p) return fail(&ps, "empty; try derf, dyt or layernorm");
    if (parse_fnexpr(&ps, &s, 0)) return -1;
    while (*ps.p == ':') {
        ps.p++;
        if (parse_option(&ps, &s)) return -1;
    }
    if (*ps.p) return fail(&ps, "unexpected '%s' (transforms follow '+', options follow ':')", ps.p);
    *out = s;
    return 0;
}

static void appendf(char *buf, size_t len, size_t *n, const char *fmt, ...) {
    if (*n >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *n, len - *n, fmt, ap);
    va_end(ap);
    if (k > 0) *n += (size_t)k;
}

void derf_norm_format(const derf_norm_spec *s, char *buf, size_t len) {
    size_t n = 0;
    if (len) buf[0] = 0;
    if (s->kind != DERF_NORM_POINTWISE) {
        int rms = s->kind == DERF_NORM_RMSNORM;
        appendf(buf, len, &n, "%s", rms ? "rmsnorm" : "layernorm");
        if (!s->affine) appendf(buf, len, &n, ":noaffine");
        else if (rms && s->bias) appendf(buf, len, &n, ":bias");
        else if (!rms && !s->bias) appendf(buf, len, &n, ":nobias");
        if (s->eps != 1e-5f) appendf(buf, len, &n, ":eps=%g", (double)s->eps);
        return;
    }
    appendf(buf, len, &n, "%s", derf_fn_get(s->fn)->name);
    for (int i = 0; i < s->n_tf; i++) {
        if (s->tf[i].kind == DERF_TF_NEG) appendf(buf, len, &n, "+neg");
        else appendf(buf, len, &n, "+%s=%g", TF_NAMES[s->tf[i].kind], (double)s->tf[i].lambda);
    }
    if (s->shift == DERF_SHIFT_NONE) appendf(buf, len, &n, ":noshift");
    if (s->shift == DERF_SHIFT_CHANNEL) appendf(buf, len, &n, ":shift=channel");
    if (!s->affine) appendf(buf, len, &n, ":noaffine");
    else if (!s->bias) appendf(buf, len, &n, ":nobias");
    if (s->alpha_init != 0.5f) appendf(buf, len, &n, ":alpha=%g", (double)s->alpha_init);
    if (s->shift != DERF_SHIFT_NONE && s->shift_init != 0.f) appendf(buf, len, &n, ":s=%g", (double)s->shift_init);
}

int derf_norm_params(const derf_norm_spec *s, int C, derf_norm_param out[4]) {
    int k = 0;
    size_t off = 0;
#define ADD(nm, cnt) do { out[k++] = (derf_norm_param){nm, off, (size_t)(cnt), 0}; off += (size_t)(cnt); } while (0)
    if (s->kind == DERF_NORM_POINTWISE) {
        ADD("alpha", 1);
        if (s->shift == DERF_SHIFT_SCALAR) ADD("shift", 1);
        if (s->shift == DERF_SHIFT_CHANNEL) ADD("shift", C);
    }
    if (s->affine) ADD("weight", C);
    if (s->affine && s->bias) ADD("bias", C);
#undef ADD
    return k;
}

size_t derf_norm_param_count(const derf_norm_spec *s, int C) {
    derf_norm_param p[4];
    int k = derf_norm_params(s, C, p);
    return k ? p[k - 1].offset + p[k - 1].numel : 0;
}

void derf_norm_init(const derf_norm_spec *s, int C, float *params) {
    derf_norm_param p[4];
    int k = derf_norm_params(s, C, p);
    for (int i = 0; i < k; i++) {
        float v = 0.f;
        if (strcmp(p[i].name, "alpha") == 0) v = s->alpha_init;
        else if (strcmp(p[i].name, "shift") == 0) v = s->shift_init;
        else if (strcmp(p[i].name, "weight") == 0) v = 1.f;
        for (size_t j = 0; j < p[i].numel; j++) params[p[i].offset + j] = v;
    }
}

size_t derf_norm_stats_count(const derf_norm_spec *s, int N) {
    if (s->kind == DERF_NORM_LAYERNORM) return 2 * (size_t)N;
    if (s->kind == DERF_NORM_RMSNORM) return (size_t)N;
    return 0;
}

void derf_norm_register(derf_params *p, const derf_norm_spec *spec, int C, const char *prefix) {
    derf_norm_param np[4];
    int k = derf_norm_params(spec, C, np);
    char name[DERF_NAME_MAX + 16]; /* derf_params_add refuses names that are too long */
    for (int i = 0; i < k; i++) {
        int shape[4] = {(int)np[i].numel, 0, 0, 0};
        snprintf(name, sizeof name, "%s.%s", prefix, np[i].name);
        derf_params_add(p, name, 1, shape, 0);
    }
}
