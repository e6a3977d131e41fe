/* derf/norm.h: the norm family. One registry of point-wise functions, the property-ablation
 * transforms composed over them, LayerNorm and RMSNorm, and the spec strings that name them.
 *
 * A norm layer acts on rows of C channels (x is N x C, row-major). Point-wise layers compute
 *     u = alpha * x + s          alpha: one scalar; s: none, one scalar, or one per channel
 *     y = gamma[c] * f(u) + beta[c]
 * where f is a base function with zero or more transforms composed over it.
 * Backward ADDS into dx and into the parameter gradients (like llm.c), so residual streams and
 * gradient accumulation need no extra pass. */
#ifndef DERF_NORM_H
#define DERF_NORM_H

#include <stddef.h>
#include "derf/optim.h"

/* Base point-wise functions. The first 16 are the paper's Table 7 search; the rest are the bases of
 * the property study (section 3). Keep in sync with the table in src/norms/functions.c (a static
 * assert there checks the count). */
typedef enum {
    DERF_FN_ERF, DERF_FN_TANH, DERF_FN_SATURSIN, DERF_FN_ARCSINHCLIP, DERF_FN_ISRU,
    DERF_FN_EXPROOT, DERF_FN_LINEARCLIP, DERF_FN_EXPSIGN, DERF_FN_LOGSIGNCLIP, DERF_FN_RELSIGN,
    DERF_FN_ARCTAN, DERF_FN_SMOOTHSIGN, DERF_FN_LOGQUADCLIP, DERF_FN_POWER23CLIP, DERF_FN_SATURLOG,
    DERF_FN_CUBSIGN,
    /* property-study bases (unbounded or non-monotone) */
    DERF_FN_ARCSINH, DERF_FN_LOGSIGN, DERF_FN_LOGQUAD, DERF_FN_POWER23, DERF_FN_LINEAR,
    DERF_FN_SIN, DERF_FN_DAMPX, DERF_FN_DAMPEXP,
    DERF_FN_COUNT
} derf_fn_id;

#define DERF_FN_SEARCH_COUNT 16 /* entries 0..15 are the Table 7 search */

typedef struct {
    const char *name;    /* spec name, e.g. "erf" */
    const char *formula; /* human-readable f(u) */
    const char *note;    /* where it comes from / singular points */
    double (*f64)(double u); /* plain double-precision reference (libm), forward only */
} derf_fn_info;

const derf_fn_info *derf_fn_get(derf_fn_id id);
int derf_fn_lookup(const char *name); /* -1 if unknown */

/* Property-ablation transforms (paper section 3; docs/paper.md section 4), applied in spec order, each wrapping the
 * function built so far (g below):
 *   HSHIFT l: g(u + l)            VSHIFT l: g(u) + l        CLIP l: clamp(g(u), -l, l)
 *   MIX l: (1-l) g(u) + l u       FLAT l: 0 for |u| <= l, else g(u - l sign(u))
 *   NEG: -g(u) */
typedef enum {
    DERF_TF_HSHIFT, DERF_TF_VSHIFT, DERF_TF_CLIP, DERF_TF_MIX, DERF_TF_FLAT, DERF_TF_NEG,
    DERF_TF_COUNT
} derf_tf_kind;

typedef struct { derf_tf_kind kind; float lambda; } derf_tf;

#define DERF_MAX_TF 8

typedef enum { DERF_NORM_POINTWISE, DERF_NORM_LAYERNORM, DERF_NORM_RMSNORM } derf_norm_kind;

typedef enum { DERF_SHIFT_NONE, DERF_SHIFT_SCALAR, DERF_SHIFT_CHANNEL } derf_shift_kind;

/* A parsed spec. Build one with derf_norm_parse; the fields are plain data. */
typedef struct {
    derf_norm_kind kind;
    derf_fn_id fn;              /* point-wise base */
    int n_tf;
    derf_tf tf[DERF_MAX_TF];
    derf_shift_kind shift;      /* learnable s */
    int affine;                 /* gamma (and beta) present */
    int bias;                   /* beta present (only with affine) */
    float alpha_init, shift_init;
    float eps;                  /* LayerNorm / RMSNorm */
} derf_norm_spec;

/* Parse a spec string (grammar in docs/norm-spec.md). Returns 0 on success; on failure returns -1
 * and writes one line saying what is wrong (and which names exist) into err. */
int derf_norm_parse(const char *text, derf_norm_spec *out, char *err, size_t errlen);
/* Canonical spec string of a parsed spec (round-trips through derf_norm_parse). */
void derf_norm_format(const derf_norm_spec *spec, char *buf, size_t len);

/* Parameter layout of one layer of width C, packed in this order (absent ones skipped):
 *   point-wise: alpha[1], shift[1 or C], weight[C] (gamma), bias[C] (beta)
 *   layernorm:  weight[C], bias[C]          rmsnorm: weight[C] (+ bias[C] with :bias)  */
typedef struct { const char *name; size_t offset, numel; int decay; } derf_norm_param;
int derf_norm_params(const derf_norm_spec *spec, int C, derf_norm_param out[4]); /* returns count */
size_t derf_norm_param_count(const derf_norm_spec *spec, int C);
/* Registers one layer's tensors in a model's table as "<prefix>.<name>" (1-D, no weight decay). */
void derf_norm_register(derf_params *p, const derf_norm_spec *spec, int C, const char *prefix);
void derf_norm_init(const derf_norm_spec *spec, int C, float *params);
/* Floats of per-row statistics forward saves for backward (N rows): 2N for LN, N for RMS, 0 else. */
size_t derf_norm_stats_count(const derf_norm_spec *spec, int N);

/* x, y: N x C. stats may be NULL for point-wise norms. */
void derf_norm_forward(const derf_norm_spec *spec, float *y, float *stats, const float *x,
                       const float *params, int N, int C);
/* When set, derf_norm_forward calls it after every forward with the layer's input, output and parameters
 * (the diagnostics of derf/diag.h install it; NULL otherwise). */
extern void (*derf_norm_forward_hook)(const derf_norm_spec *spec, const float *y, const float *x,
                                      const float *params, int N, int C);
/* Adds into dx (may be NULL) and dparams (may be NULL). */
void derf_norm_backward(const derf_norm_spec *spec, float *dx, float *dparams, const float *dy,
                        const float *x, const float *params, const float *stats, int N, int C);

/* Scalar evaluation of the composed point-wise function g(u) (transforms included):
 * float path (what the kernels compute) and the double reference used by tests and `derf functions`. */
void derf_pointwise_eval(const derf_norm_spec *spec, float u, float *g, float *dg);
double derf_pointwise_eval_f64(const derf_norm_spec *spec, double u);

/* The paper's four properties, measured on the double reference g(u) over u in [-20, 20] (step 1e-3)
 * and far out to |u| = 1e30 (src/norms/props.c). */
typedef struct {
    double g0, slope0, lo, hi, flat; /* g(0), slope at 0, range seen, half-width of a flat zone at 0 */
    int odd, bounded, slope_inf;     /* slope_inf: a cusp (infinite slope) at 0 */
    int mono;                        /* 1 increasing, -1 decreasing, 0 neither */
} derf_fn_props;
void derf_pointwise_props(const derf_norm_spec *spec, derf_fn_props *p);
/* 1 when all four hold (zero-centred: g(0) = 0 and odd; bounded; center-sensitive: slope at 0 > 0 and
 * no flat zone; monotone increasing), else 0 with *why (may be NULL) naming the first that fails. */
int derf_pointwise_props_ok(const derf_fn_props *p, const char **why);

#endif
