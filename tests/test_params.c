/* test_params.c: the core pieces under the trainer: the PCG32 generator (known outputs, streams,
 * save/restore, moments of uniform/normal/bounded draws), the parameter table (offsets, lookup,
 * zero-filled slabs), AdamW against a double-precision transcription of torch.optim.AdamW, and
 * global-norm clipping against a direct computation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "derf/rng.h"
#include "derf/optim.h"
#include "testutil.h"

static uint64_t g_seed;
static int setup(void **state) { (void)state; g_seed = tu_seed(); return 0; }

/* ---------------------------------------------------------------- rng */

static void test_rng_reference_values(void **state) {
    (void)state;
    /* pcg32-demo (pcg-c-basic): pcg32_srandom_r(&rng, 42u, 54u) */
    static const uint32_t want[6] = { 0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e };
    derf_rng r;
    derf_rng_seed(&r, 42, 54);
    for (int i = 0; i < 6; i++) assert_int_equal(derf_rng_u32(&r), want[i]);
}

static void test_rng_streams(void **state) {
    (void)state;
    derf_rng a, b, c, d;
    derf_rng_seed(&a, 7, 1);
    derf_rng_seed(&b, 7, 1);
    derf_rng_seed(&c, 8, 1);
    derf_rng_seed(&d, 7, 2);
    int diff_seed = 0, diff_stream = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = derf_rng_u32(&a);
        assert_int_equal(x, derf_rng_u32(&b));
        diff_seed += x != derf_rng_u32(&c);
        diff_stream += x != derf_rng_u32(&d);
    }
    assert_true(diff_seed > 990 && diff_stream > 990);
    /* the state is plain data: a copy taken mid-stream continues identically, normals included */
    for (int i = 0; i < 3; i++) derf_rng_normal(&a);
    derf_rng saved = a;
    float x1[200], x2[200];
    derf_rng_fill_normal(&a, x1, 200, 0, 1);
    derf_rng_fill_normal(&saved, x2, 200, 0, 1);
    assert_memory_equal(x1, x2, sizeof x1);
    assert_true(a.state == saved.state && a.inc == saved.inc);
}

static void test_rng_uniform(void **state) {
    (void)state;
    const int n = 1000000;
    derf_rng r;
    derf_rng_seed(&r, g_seed, 11);
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) {
        float u = derf_rng_uniform(&r);
        assert_true(u >= 0.0f && u < 1.0f);
        s += u; s2 += (double)u * u;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    assert_true(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / n));               /* 1.4e-3 */
    assert_true(fabs(var - 1.0 / 12) < 5 * sqrt((1.0 / 80 - 1.0 / 144) / n)); /* 3.7e-4 */
    /* fill_uniform maps to [lo, hi) */
    float *x = malloc(n * sizeof *x);
    derf_rng_fill_uniform(&r, x, n, -2.0f, 3.0f);
    s = 0;
    for (int i = 0; i < n; i++) { assert_true(x[i] >= -2.0f && x[i] < 3.0f); s += x[i]; }
    assert_true(fabs(s / n - 0.5) < 5 * 5 * sqrt(1.0 / 12 / n));
    free(x);
}

static void test_rng_normal(void **state) {
    (void)state;
    const int n = 1000000;
    derf_rng r;
    derf_rng_seed(&r, g_seed, 12);
    double s = 0, s2 = 0, s4 = 0; int within1 = 0;
    for (int i = 0; i < n; i++) {
        double z = derf_rng_normal(&r);
        assert_true(isfinite(z));
        s += z; s2 += z * z; s4 += z * z * z * z; within1 += fabs(z) < 1;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    assert_true(fabs(mean) < 5 * sqrt(1.0 / n));                      /* 5e-3 */
    assert_true(fabs(var - 1) < 5 * sqrt(2.0 / n));                   /* 7e-3 */
    assert_true(fabs(s4 / n - 3) < 5 * sqrt(96.0 / n));               /* kurtosis 3: 0.05 */
    assert_true(fabs((double)within1 / n - 0.682689) < 5 * sqrt(0.2166 / n));
    /* fill_normal applies mean and std */
    float *x = malloc(n * sizeof *x);
    derf_rng_fill_normal(&r, x, n, 2.0f, 3.0f);
    s = s2 = 0;
    for (int i = 0; i < n; i++) { s += x[i]; s2 += (double)x[i] * x[i]; }
    mean = s / n; var = s2 / n - mean * mean;
    assert_true(fabs(mean - 2) < 5 * 3 * sqrt(1.0 / n));
    assert_true(fabs(sqrt(var) - 3) < 0.02);
    free(x);
}

static void test_rng_below(void **state) {
    (void)state;
    const int n = 700000, k = 7;
    derf_rng r;
    derf_rng_seed(&r, g_seed, 13);
    int count[7] = { 0 };
    for (int i = 0; i < n; i++) {
        uint32_t x = derf_rng_below(&r, k);
        assert_true(x < (uint32_t)k);
        count[x]++;
    }
    double p = 1.0 / k, sd = sqrt(n * p * (1 - p));
    for (int j = 0; j < k; j++) assert_true(fabs(count[j] - n * p) < 5 * sd);
    for (int i = 0; i < 100; i++) assert_int_equal(derf_rng_below(&r, 1), 0);
    /* a bound that is not a power of two and close to 2^32 still stays in range */
    for (int i = 0; i < 1000; i++) assert_true(derf_rng_below(&r, 3000000019u) < 3000000019u);
}

/* ---------------------------------------------------------------- parameter table */

static void test_params_table(void **state) {
    (void)state;
    derf_params p;
    derf_params_init(&p);
    int s1[2] = { 3, 4 }, s2[1] = { 5 }, s3[4] = { 2, 3, 4, 5 };
    assert_int_equal(derf_params_add(&p, "blocks.0.attn.qkv.weight", 2, s1, 1), 0);
    assert_int_equal(derf_params_add(&p, "blocks.0.attn.qkv.bias", 1, s2, 0), 12);
    assert_int_equal(derf_params_add(&p, "big", 4, s3, 1), 17);
    char name[32];
    for (int i = 0; i < 40; i++) { /* grows past the initial capacity */
        snprintf(name, sizeof name, "t.%d", i);
        assert_int_equal(derf_params_add(&p, name, 1, s2, 0), 137 + 5 * (size_t)i);
    }
    derf_params_alloc(&p);
    assert_int_equal(p.n, 43);
    assert_int_equal(p.total, 137 + 200);
    const derf_tensor *t = derf_params_find(&p, "blocks.0.attn.qkv.bias");
    assert_non_null(t);
    assert_int_equal(t->offset, 12);
    assert_int_equal(t->numel, 5);
    assert_int_equal(t->ndim, 1);
    assert_int_equal(t->shape[0], 5);
    assert_int_equal(t->decay, 0);
    t = derf_params_find(&p, "big");
    assert_int_equal(t->numel, 120);
    assert_int_equal(t->shape[3], 5);
    assert_int_equal(t->decay, 1);
    t = derf_params_find(&p, "t.39");
    assert_int_equal(t->offset, 137 + 5 * 39);
    assert_null(derf_params_find(&p, "nope"));
    for (size_t i = 0; i < p.total; i++)
        assert_true(p.params[i] == 0 && p.grads[i] == 0 && p.m[i] == 0 && p.v[i] == 0);
    for (size_t i = 0; i < p.total; i++) p.grads[i] = 1.5f;
    derf_params_zero_grad(&p);
    for (size_t i = 0; i < p.total; i++) assert_true(p.grads[i] == 0);
    derf_params_free(&p);
    assert_null(p.params);
    assert_int_equal(p.n, 0);
}

/* ---------------------------------------------------------------- AdamW */

/* torch.optim.AdamW._single_tensor_adamw, transcribed in double */
static void ref_adamw(double *w, double *m, double *v, const double *g, size_t n, int decay,
                      double lr, double b1, double b2, double eps, double wd, int step) {
    double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
    for (size_t i = 0; i < n; i++) {
        if (decay) w[i] *= 1 - lr * wd;
        m[i] = m[i] * b1 + (1 - b1) * g[i];                 /* exp_avg.lerp_(grad, 1-beta1) */
        v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i];          /* exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2) */
        double step_size = lr / bc1;
        double denom = sqrt(v[i]) / sqrt(bc2) + eps;
        w[i] -= step_size * m[i] / denom;
    }
}

/* The GPU's aligned layout: every tensor at a multiple of 64 floats, in order, no overlap; a slab moved
 * to it and back is unchanged and the padding is 0. */
static void test_params_layout_aligned(void **state) {
    (void)state;
    derf_params p, a;
    derf_params_init(&p);
    const int sizes[] = {137, 200, 1, 64, 65, 3};
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        derf_params_add(&p, name, 1, &sizes[i], i & 1);
    }
    derf_params_alloc(&p);
    for (size_t i = 0; i < p.total; i++) p.params[i] = (float)i + 1.f;
    derf_params_layout_aligned(&a, &p, 64);
    assert_int_equal(a.n, p.n);
    size_t end = 0;
    for (int i = 0; i < a.n; i++) {
        assert_int_equal(a.t[i].offset % 64, 0);
        assert_true(a.t[i].offset >= end);
        assert_true(a.t[i].offset < end + 64);
        assert_string_equal(a.t[i].name, p.t[i].name);
        assert_int_equal(a.t[i].numel, p.t[i].numel);
        assert_int_equal(a.t[i].decay, p.t[i].decay);
        end = a.t[i].offset + a.t[i].numel;
    }
    assert_int_equal(a.total % 64, 0);
    assert_true(a.total >= end && a.total < end + 64);
    float *dev = malloc(a.total * sizeof(float)), *back = calloc(p.total, sizeof(float));
    for (size_t i = 0; i < a.total; i++) dev[i] = -7.f;
    derf_params_relayout(dev, &a, p.params, &p, 1);
    for (int i = 0; i < a.n; i++)
        for (size_t j = 0; j < a.t[i].numel; j++) assert_true(dev[a.t[i].offset + j] == p.params[p.t[i].offset + j]);
    size_t nonzero = 0;
    for (size_t i = 0; i < a.total; i++) nonzero += dev[i] != 0.f;
    assert_int_equal(nonzero, p.total); /* padding zeroed, every value nonzero */
    derf_params_relayout(back, &p, dev, &a, 0);
    assert_memory_equal(back, p.params, p.total * sizeof(float));
    free(dev);
    free(back);
    derf_params_free(&a);
    derf_params_free(&p);
}

static void test_adamw(void **state) {
    (void)state;
    derf_params p;
    derf_params_init(&p);
    int sw[2] = { 300, 200 }, sb[1] = { 37 };
    derf_params_add(&p, "w", 2, sw, 1);
    derf_params_add(&p, "b", 1, sb, 0);
    derf_params_alloc(&p);
    const size_t N = p.total, nw = 60000;
    tu_fill(p.params, N, &g_seed, -1, 1);
    double *w = malloc(N * sizeof *w), *m = calloc(N, sizeof *m), *v = calloc(N, sizeof *v), *g = malloc(N * sizeof *g);
    for (size_t i = 0; i < N; i++) w[i] = p.params[i];
    const derf_adamw_cfg cfg = { 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f };
    for (int step = 1; step <= 6; step++) {
        /* gradients of mixed scale, some exactly zero */
        tu_fill(p.grads, N, &g_seed, -1, 1);
        for (size_t i = 0; i < N; i += 7) p.grads[i] *= 1e-3f;
        for (size_t i = 3; i < N; i += 101) p.grads[i] = 0.0f;
        for (size_t i = 0; i < N; i++) g[i] = p.grads[i];
        derf_adamw_step(&p, &cfg, step);
        ref_adamw(w, m, v, g, nw, 1, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, step);
        ref_adamw(w + nw, m + nw, v + nw, g + nw, N - nw, 0, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps,
                  cfg.weight_decay, step);
        assert_true(tu_close("adamw params", p.params, w, N, 1e-6, 1e-5));
        assert_true(tu_close("adamw m", p.m, m, N, 1e-7, 1e-5));
        assert_true(tu_close("adamw v", p.v, v, N, 1e-8, 1e-5));
        for (size_t i = 0; i < N; i++) w[i] = p.params[i]; /* no drift: next step starts from ours */
        for (size_t i = 0; i < N; i++) { m[i] = p.m[i]; v[i] = p.v[i]; }
    }
    /* zero gradients on fresh moments: only decoupled decay moves the weights, only where decay=1 */
    memset(p.m, 0, N * sizeof(float));
    memset(p.v, 0, N * sizeof(float));
    derf_params_zero_grad(&p);
    float *before = malloc(N * sizeof *before);
    memcpy(before, p.params, N * sizeof *before);
    derf_adamw_step(&p, &cfg, 1);
    for (size_t i = 0; i < nw; i++) assert_true(fabsf(p.params[i] - before[i] * (1 - 1e-3f)) <= 1e-7f);
    for (size_t i = nw; i < N; i++) assert_true(p.params[i] == before[i]);
    free(before); free(w); free(m); free(v); free(g);
    derf_params_free(&p);
}

/* ---------------------------------------------------------------- clipping */

static void test_clip_grad_norm(void **state) {
    (void)state;
    derf_params p;
    derf_params_init(&p);
    int s1[2] = { 100, 50 }, s2[1] = { 33 };
    derf_params_add(&p, "a", 2, s1, 1);
    derf_params_add(&p, "b", 1, s2, 0);
    derf_params_alloc(&p);
    const size_t N = p.total;
    tu_fill(p.grads, N, &g_seed, -1, 1);
    double ss = 0;
    for (size_t i = 0; i < N; i++) ss += (double)p.grads[i] * p.grads[i];
    const double norm = sqrt(ss); /* about sqrt(N/3) = 41 */
    float *g0 = malloc(N * sizeof *g0);
    memcpy(g0, p.grads, N * sizeof *g0);

    /* max_norm 0: report only */
    assert_true(fabs(derf_clip_grad_norm(&p, 0.0f) - norm) <= 1e-6 * norm);
    assert_memory_equal(p.grads, g0, N * sizeof *g0);
    /* max_norm above the norm: unchanged */
    assert_true(fabs(derf_clip_grad_norm(&p, (float)(2 * norm)) - norm) <= 1e-6 * norm);
    assert_memory_equal(p.grads, g0, N * sizeof *g0);
    /* max_norm below: scaled by max_norm / (norm + 1e-6), new norm = max_norm */
    assert_true(fabs(derf_clip_grad_norm(&p, 1.0f) - norm) <= 1e-6 * norm);
    double *want = malloc(N * sizeof *want);
    for (size_t i = 0; i < N; i++) want[i] = g0[i] * (1.0 / (norm + 1e-6));
    assert_true(tu_close("clipped grads", p.grads, want, N, 1e-9, 1e-6));
    ss = 0;
    for (size_t i = 0; i < N; i++) ss += (double)p.grads[i] * p.grads[i];
    assert_true(fabs(sqrt(ss) - 1.0) < 1e-5);
    free(want); free(g0);
    derf_params_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_reference_values),
        cmocka_unit_test(test_rng_streams),
        cmocka_unit_test(test_rng_uniform),
        cmocka_unit_test(test_rng_normal),
        cmocka_unit_test(test_rng_below),
        cmocka_unit_test(test_params_table),
        cmocka_unit_test(test_params_layout_aligned),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_clip_grad_norm),
    };
    return cmocka_run_group_tests_name("params", tests, setup, NULL);
}
