/* test_vit.c: the ViT model (src/models/vit.c).
 *  - tensor table of the "test" preset: timm names, shapes, order, count, weight-decay flags;
 *    presets, config checks, config <-> metadata round trip and bad metadata;
 *  - whole-model gradients against central finite differences (float forward, so a coarse check:
 *    a few random elements of EVERY tensor, layernorm and derf, drop path on), backward ADDS;
 *  - PyTorch parity (the strong check): for layernorm / derf / dyt x avg / cls pooling and a few
 *    other shapes, writes params, a batch, logits, loss and every gradient to a temp dir and runs
 *    tools/vit_torch_parity.py on them (fp32 tolerance per tensor). Skipped when /usr/bin/python3
 *    (or $DERF_TORCH_PYTHON) has no torch, unless CI=true. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "derf/ops.h"
#include "derf/safetensors.h"
#include "derf/vit.h"
#include "parity.h"
#include "testutil.h"

static uint64_t g_seed;
static int setup(void **state) { (void)state; g_seed = tu_seed(); return 0; }

static derf_vit_config test_config(const char *norm, derf_pool pool) {
    derf_vit_config c;
    char err[256];
    assert_int_equal(derf_vit_preset(&c, "test", err, sizeof err), 0);
    assert_int_equal(derf_norm_parse(norm, &c.norm, err, sizeof err), 0);
    c.pool = pool;
    return c;
}

/* init, then uniform noise on every parameter so no gradient is trivially tiny or symmetric */
static void randomize(derf_vit *m, uint64_t *s, double noise) {
    derf_vit_init(m, *s);
    for (size_t i = 0; i < m->params.total; i++) m->params.params[i] += (float)(noise * (2 * tu_uniform(s) - 1));
}

static void fill_batch(const derf_vit_config *c, int B, float *img, int32_t *labels, uint64_t *s) {
    tu_fill(img, (size_t)B * c->chans * c->img * c->img, s, -1.0, 1.0);
    for (int b = 0; b < B; b++) labels[b] = (int32_t)(tu_uniform(s) * c->classes);
}

/* --------------------------------------------------------------------- tensor table */

static void test_tensor_table(void **state) {
    (void)state;
    derf_vit m;
    char err[256];
    derf_vit_config c = test_config("derf", DERF_POOL_AVG);
    assert_int_equal(derf_vit_build(&m, &c, 2, err, sizeof err), 0);
    /* test preset: img 8, patch 4 -> NP 4, T 5; D 16, H 64, 2 blocks, 5 classes; derf: alpha, shift, weight, bias */
    const struct { const char *name; int ndim, s0, s1, s2, s3, decay; } want[] = {
        {"cls_token", 3, 1, 1, 16, 0, 0},
        {"pos_embed", 3, 1, 5, 16, 0, 0},
        {"patch_embed.proj.weight", 4, 16, 1, 4, 4, 1},
        {"patch_embed.proj.bias", 1, 16, 0, 0, 0, 0},
        {"blocks.0.norm1.alpha", 1, 1, 0, 0, 0, 0},
        {"blocks.0.norm1.shift", 1, 1, 0, 0, 0, 0},
        {"blocks.0.norm1.weight", 1, 16, 0, 0, 0, 0},
        {"blocks.0.norm1.bias", 1, 16, 0, 0, 0, 0},
        {"blocks.0.attn.qkv.weight", 2, 48, 16, 0, 0, 1},
        {"blocks.0.attn.qkv.bias", 1, 48, 0, 0, 0, 0},
        {"blocks.0.attn.proj.weight", 2, 16, 16, 0, 0, 1},
        {"blocks.0.attn.proj.bias", 1, 16, 0, 0, 0, 0},
        {"blocks.0.norm2.alpha", 1, 1, 0, 0, 0, 0},
        {"blocks.0.norm2.shift", 1, 1, 0, 0, 0, 0},
        {"blocks.0.norm2.weight", 1, 16, 0, 0, 0, 0},
        {"blocks.0.norm2.bias", 1, 16, 0, 0, 0, 0},
        {"blocks.0.mlp.fc1.weight", 2, 64, 16, 0, 0, 1},
        {"blocks.0.mlp.fc1.bias", 1, 64, 0, 0, 0, 0},
        {"blocks.0.mlp.fc2.weight", 2, 16, 64, 0, 0, 1},
        {"blocks.0.mlp.fc2.bias", 1, 16, 0, 0, 0, 0},
    };
    const int nw = (int)(sizeof want / sizeof want[0]);
    assert_int_equal(m.params.n, 4 + 2 * 16 + 4 + 2);
    assert_int_equal(m.T, 5);
    for (int i = 0; i < nw; i++) {
        const derf_tensor *t = &m.params.t[i];
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->ndim, want[i].ndim);
        const int s[4] = {want[i].s0, want[i].s1, want[i].s2, want[i].s3};
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], s[d]);
        assert_int_equal(t->decay, want[i].decay);
    }
    /* block 1 repeats block 0 under its own prefix */
    for (int i = 4; i < nw; i++) {
        char name[DERF_NAME_MAX];
        snprintf(name, sizeof name, "blocks.1.%s", want[i].name + strlen("blocks.0."));
        assert_string_equal(m.params.t[i + 16].name, name);
    }
    const char *tail[] = {"fc_norm.alpha", "fc_norm.shift", "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"};
    for (int i = 0; i < 6; i++) assert_string_equal(m.params.t[36 + i].name, tail[i]);
    const derf_tensor *hw = derf_params_find(&m.params, "head.weight");
    assert_non_null(hw);
    assert_int_equal(hw->shape[0], 5);
    assert_int_equal(hw->shape[1], 16);
    assert_int_equal(hw->decay, 1);
    /* offsets contiguous in registration order; total = hand count */
    size_t off = 0;
    for (int i = 0; i < m.params.n; i++) {
        assert_int_equal(m.params.t[i].offset, off);
        off += m.params.t[i].numel;
    }
    const size_t per_norm = 1 + 1 + 16 + 16, per_block = 2 * per_norm + 48 * 16 + 48 + 16 * 16 + 16 + 64 * 16 + 64 + 16 * 64 + 16;
    assert_int_equal(m.params.total, 16 + 5 * 16 + 16 * 16 + 16 + 2 * per_block + per_norm + 5 * 16 + 5);
    derf_vit_free(&m);

    /* layernorm, CLS pooling: weight + bias per norm, final norm named "norm" */
    c = test_config("layernorm", DERF_POOL_CLS);
    assert_int_equal(derf_vit_build(&m, &c, 1, err, sizeof err), 0);
    assert_int_equal(m.params.n, 4 + 2 * 12 + 2 + 2);
    assert_string_equal(m.params.t[4].name, "blocks.0.norm1.weight");
    assert_string_equal(m.params.t[5].name, "blocks.0.norm1.bias");
    assert_string_equal(m.params.t[28].name, "norm.weight");
    assert_string_equal(m.params.t[29].name, "norm.bias");
    assert_non_null(derf_params_find(&m.params, "blocks.1.mlp.fc2.bias"));
    assert_null(derf_params_find(&m.params, "fc_norm.weight"));
    derf_vit_free(&m);

    /* dyt: alpha, weight, bias (no shift) */
    c = test_config("dyt", DERF_POOL_AVG);
    assert_int_equal(derf_vit_build(&m, &c, 1, err, sizeof err), 0);
    assert_string_equal(m.params.t[4].name, "blocks.0.norm1.alpha");
    assert_string_equal(m.params.t[5].name, "blocks.0.norm1.weight");
    assert_null(derf_params_find(&m.params, "blocks.0.norm1.shift"));
    derf_vit_free(&m);
}

static void test_init_values(void **state) {
    (void)state;
    derf_vit m;
    char err[256];
    derf_vit_config c = test_config("derf", DERF_POOL_AVG);
    assert_int_equal(derf_vit_build(&m, &c, 1, err, sizeof err), 0);
    derf_vit_init(&m, 7);
    const float *p = m.params.params;
    const derf_tensor *t;
    t = derf_params_find(&m.params, "blocks.1.norm2.alpha");
    assert_float_equal(p[t->offset], 0.5f, 0);
    t = derf_params_find(&m.params, "fc_norm.weight");
    for (size_t i = 0; i < t->numel; i++) assert_float_equal(p[t->offset + i], 1.0f, 0);
    t = derf_params_find(&m.params, "blocks.0.attn.qkv.bias");
    for (size_t i = 0; i < t->numel; i++) assert_float_equal(p[t->offset + i], 0.0f, 0);
    t = derf_params_find(&m.params, "cls_token");
    for (size_t i = 0; i < t->numel; i++) assert_true(fabsf(p[t->offset + i]) < 1e-5f);
    /* linear weights: std ~ 0.02 */
    t = derf_params_find(&m.params, "blocks.0.mlp.fc1.weight");
    double ss = 0;
    for (size_t i = 0; i < t->numel; i++) ss += (double)p[t->offset + i] * p[t->offset + i];
    double sd = sqrt(ss / t->numel);
    assert_true(sd > 0.016 && sd < 0.024);
    /* conv: uniform within 1/sqrt(fan_in = 16) */
    t = derf_params_find(&m.params, "patch_embed.proj.weight");
    for (size_t i = 0; i < t->numel; i++) assert_true(fabsf(p[t->offset + i]) <= 0.25f);
    /* same seed, same weights */
    float *copy = malloc(m.params.total * sizeof *copy);
    memcpy(copy, p, m.params.total * sizeof *copy);
    derf_vit_init(&m, 7);
    assert_memory_equal(copy, p, m.params.total * sizeof *copy);
    free(copy);
    derf_vit_free(&m);
}

/* --------------------------------------------------------------------- presets, checks, metadata */

static void test_presets_and_checks(void **state) {
    (void)state;
    const char *names[] = {"tiny", "small", "base-mini", "test"};
    char err[256];
    for (int i = 0; i < 4; i++) {
        derf_vit_config c;
        assert_int_equal(derf_vit_preset(&c, names[i], err, sizeof err), 0);
        assert_int_equal(derf_vit_check(&c, err, sizeof err), 0);
        derf_vit m;
        assert_int_equal(derf_vit_build(&m, &c, 2, err, sizeof err), 0);
        print_message("preset %-9s img %d patch %d dim %d depth %d heads %d: %zu parameters (derf)\n", names[i],
                      c.img, c.patch, c.dim, c.depth, c.heads, m.params.total);
        derf_vit_free(&m);
    }
    derf_vit_config c;
    assert_int_equal(derf_vit_preset(&c, "huge", err, sizeof err), -1);
    assert_non_null(strstr(err, "huge"));
    assert_non_null(strstr(err, "base-mini"));

    derf_vit_config good = test_config("derf", DERF_POOL_AVG);
    c = good; c.patch = 3;        assert_int_equal(derf_vit_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "patch"));
    c = good; c.heads = 3;        assert_int_equal(derf_vit_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "heads"));
    c = good; c.drop_path = 1.0f; assert_int_equal(derf_vit_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "drop_path"));
    c = good; c.dim = 0;          assert_int_equal(derf_vit_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "dim"));
    c = good; c.classes = -1;     assert_int_equal(derf_vit_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "classes"));
    c = good; c.depth = 0;        assert_int_equal(derf_vit_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "depth"));
    derf_vit m;
    assert_int_equal(derf_vit_build(&m, &good, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_batch"));
}

typedef struct { int n; char (*k)[32]; char (*v)[128]; const char *drop; const char *key; const char *val; } meta_ctx;
static const char *meta_lookup(void *ctx, const char *key) {
    meta_ctx *m = ctx;
    if (m->drop && strcmp(key, m->drop) == 0) return NULL;
    if (m->key && strcmp(key, m->key) == 0) return m->val;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->k[i], key) == 0) return m->v[i];
    return NULL;
}

static const char *st_meta_lookup(void *ctx, const char *key) { return derf_safetensors_meta(ctx, key); }

static void test_meta_roundtrip(void **state) {
    (void)state;
    char keys[32][32], vals[32][128], err[512];
    derf_vit_config c = test_config("erf:shift=channel:alpha=0.75:s=0.25", DERF_POOL_CLS);
    c.gelu = DERF_GELU_TANH;
    c.drop_path = 0.1f;
    int n = derf_vit_config_to_meta(&c, keys, vals, 32);
    assert_true(n >= 13);
    assert_int_equal(derf_vit_config_to_meta(&c, keys, vals, 3), -1);
    meta_ctx ctx = {n, keys, vals, NULL, NULL, NULL};
    derf_vit_config d;
    assert_int_equal(derf_vit_config_from_meta(&d, meta_lookup, &ctx, err, sizeof err), 0);
    assert_int_equal(d.img, c.img); assert_int_equal(d.chans, c.chans); assert_int_equal(d.patch, c.patch);
    assert_int_equal(d.dim, c.dim); assert_int_equal(d.depth, c.depth); assert_int_equal(d.heads, c.heads);
    assert_int_equal(d.mlp_ratio, c.mlp_ratio); assert_int_equal(d.classes, c.classes);
    assert_int_equal(d.pool, DERF_POOL_CLS); assert_int_equal(d.gelu, DERF_GELU_TANH);
    assert_float_equal(d.drop_path, 0.1f, 0);
    assert_int_equal(d.norm.kind, c.norm.kind); assert_int_equal(d.norm.fn, c.norm.fn);
    assert_int_equal(d.norm.shift, DERF_SHIFT_CHANNEL);
    assert_float_equal(d.norm.alpha_init, 0.75f, 0); assert_float_equal(d.norm.shift_init, 0.25f, 0);

    /* through a real file: safetensors __metadata__ written and read back by the C library */
    char dir[] = "/tmp/derf_vit_meta_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    derf_st_meta meta[32];
    for (int i = 0; i < n; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    float one = 1.0f;
    int64_t sh1[1] = {1};
    derf_st_tensor_in t1 = {"x", 1, sh1, &one};
    assert_int_equal(derf_safetensors_write(path, &t1, 1, meta, n, err, sizeof err), 0);
    derf_safetensors st;
    assert_int_equal(derf_safetensors_read(&st, path, 1 << 20, err, sizeof err), 0);
    memset(&d, 0, sizeof d);
    assert_int_equal(derf_vit_config_from_meta(&d, st_meta_lookup, &st, err, sizeof err), 0);
    assert_int_equal(d.pool, DERF_POOL_CLS);
    assert_int_equal(d.norm.shift, DERF_SHIFT_CHANNEL);
    assert_int_equal(d.dim, c.dim);
    derf_safetensors_free(&st);
    unlink(path);
    rmdir(dir);

    const char *required[] = {"model", "img", "chans", "patch", "dim", "depth", "heads", "mlp_ratio",
                              "classes", "pool", "norm", "gelu", "drop_path"};
    for (int i = 0; i < 13; i++) {
        meta_ctx miss = {n, keys, vals, required[i], NULL, NULL};
        assert_int_equal(derf_vit_config_from_meta(&d, meta_lookup, &miss, err, sizeof err), -1);
        assert_non_null(strstr(err, required[i]));
    }
    const struct { const char *key, *val, *expect; } bad[] = {
        {"model", "gpt2", "model"}, {"dim", "abc", "dim"}, {"dim", "16x", "dim"}, {"heads", "-2", "heads"},
        {"heads", "3", "heads"}, {"pool", "max", "pool"}, {"norm", "erfx", "norm"}, {"gelu", "relu", "gelu"},
        {"drop_path", "1.5", "drop_path"}, {"drop_path", "", "drop_path"}, {"patch", "3", "patch"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        meta_ctx b = {n, keys, vals, NULL, bad[i].key, bad[i].val};
        err[0] = 0;
        assert_int_equal(derf_vit_config_from_meta(&d, meta_lookup, &b, err, sizeof err), -1);
        if (!strstr(err, bad[i].expect)) fail_msg("%s=%s: error '%s'", bad[i].key, bad[i].val, err);
    }
}

/* --------------------------------------------------------------------- finite differences */

#define FD_B 2
#define FD_PER_TENSOR 3
#define FD_H 1e-2f
#define FD_RTOL 1e-2
#define FD_ATOL 5e-5

typedef struct { derf_vit *m; const float *img; const int32_t *lab; uint64_t rng_seed; } fd_ctx;

static float fd_loss(fd_ctx *x) {
    derf_rng r;
    derf_rng_seed(&r, x->rng_seed, 1);   /* same drop-path masks on every evaluation */
    derf_vit_forward(x->m, x->img, FD_B, 1, &r);
    return derf_xent_forward_backward(NULL, x->m->logits, x->lab, 0.0f, 1.0f, FD_B, x->m->cfg.classes);
}

static void gradcheck(const char *norm, derf_pool pool, float drop_path) {
    derf_vit m;
    char err[256];
    uint64_t s = g_seed ^ 0x1234567ULL ^ (uint64_t)strlen(norm) * 7919 ^ (uint64_t)pool;
    derf_vit_config c = test_config(norm, pool);
    c.drop_path = drop_path;
    assert_int_equal(derf_vit_build(&m, &c, FD_B, err, sizeof err), 0);
    randomize(&m, &s, 0.2);
    float img[FD_B * 64];
    int32_t lab[FD_B];
    fill_batch(&c, FD_B, img, lab, &s);
    fd_ctx x = {&m, img, lab, s};

    /* analytic gradient, twice without zeroing: backward must ADD */
    float dlogits[FD_B * 8];
    derf_params_zero_grad(&m.params);
    fd_loss(&x);
    memset(dlogits, 0, sizeof dlogits);
    derf_xent_forward_backward(dlogits, m.logits, lab, 0.0f, 1.0f, FD_B, c.classes);
    derf_vit_backward(&m, dlogits, FD_B);
    float *g1 = malloc(m.params.total * sizeof *g1);
    memcpy(g1, m.params.grads, m.params.total * sizeof *g1);
    fd_loss(&x);
    derf_vit_backward(&m, dlogits, FD_B);
    for (size_t i = 0; i < m.params.total; i++)
        if (fabsf(m.params.grads[i] - 2 * g1[i]) > 1e-5f * (1 + fabsf(g1[i])))
            fail_msg("%s: backward does not add into grads at %zu: %g vs 2*%g", norm, i, m.params.grads[i], g1[i]);

    int checked = 0, bad = 0;
    double worst = 0;
    for (int ti = 0; ti < m.params.n; ti++) {
        const derf_tensor *t = &m.params.t[ti];
        const int k = t->numel < FD_PER_TENSOR ? (int)t->numel : FD_PER_TENSOR;
        for (int j = 0; j < k; j++) {
            size_t i = t->offset + (size_t)(tu_uniform(&s) * t->numel);
            float *p = &m.params.params[i], p0 = *p;
            *p = p0 + FD_H; float lp = fd_loss(&x);
            *p = p0 - FD_H; float lm = fd_loss(&x);
            *p = p0;
            double fd = ((double)lp - lm) / (2.0 * FD_H), an = g1[i];
            double e = fabs(fd - an), lim = FD_ATOL + FD_RTOL * fmax(fabs(an), fabs(fd));
            worst = fmax(worst, e / lim);
            checked++;
            if (e > lim) {
                bad++;
                print_message("%s: %s[%zu]: analytic %.6g finite-diff %.6g\n", norm, t->name, i - t->offset, an, fd);
            }
        }
    }
    print_message("%s (pool %s, drop_path %g): %d elements of %d tensors, worst |fd-an| / tolerance %.3g\n", norm,
                  pool == DERF_POOL_AVG ? "avg" : "cls", (double)drop_path, checked, m.params.n, worst);
    free(g1);
    derf_vit_free(&m);
    assert_int_equal(bad, 0);
}

static void test_gradcheck_layernorm(void **state) { (void)state; gradcheck("layernorm", DERF_POOL_AVG, 0.0f); }
static void test_gradcheck_derf(void **state) { (void)state; gradcheck("derf", DERF_POOL_AVG, 0.5f); }
static void test_gradcheck_dyt_cls(void **state) { (void)state; gradcheck("dyt", DERF_POOL_CLS, 0.5f); }

/* eval forward: deterministic, and each sample's logits do not depend on the rest of the batch */
static void test_forward_batch_independent(void **state) {
    (void)state;
    derf_vit m;
    char err[256];
    uint64_t s = g_seed ^ 0xabcdefULL;
    derf_vit_config c = test_config("layernorm", DERF_POOL_AVG);
    assert_int_equal(derf_vit_build(&m, &c, 4, err, sizeof err), 0);
    randomize(&m, &s, 0.2);
    float img[4 * 64], out4[4 * 5], out1[5];
    int32_t lab[4];
    fill_batch(&c, 4, img, lab, &s);
    derf_vit_forward(&m, img, 4, 0, NULL);
    memcpy(out4, m.logits, sizeof out4);
    derf_vit_forward(&m, img + 2 * 64, 1, 0, NULL);
    memcpy(out1, m.logits, sizeof out1);
    for (int v = 0; v < 5; v++) assert_true(fabsf(out1[v] - out4[2 * 5 + v]) <= 1e-5f * (1 + fabsf(out1[v])));
    derf_vit_forward(&m, img, 4, 0, NULL);
    assert_memory_equal(out4, m.logits, sizeof out4);
    derf_vit_free(&m);
}

/* derf_vit_drop_path_draw (what a device forward uses) against timm's rule written out here: block l
 * has rate p_l = drop_path * l / (depth - 1); each sample of each branch keeps with scale 1/(1-p_l) when
 * its uniform draw is >= p_l, else 0; the draws of the attention branch, then the MLP branch, block by
 * block, none for rate 0. The CPU forward must consume exactly those draws (same rng state after). */
static void test_drop_path_draw(void **state) {
    (void)state;
    derf_vit m;
    char err[256];
    uint64_t s = g_seed ^ 0x5eedULL;
    derf_vit_config c = test_config("derf", DERF_POOL_AVG);
    c.depth = 3;
    c.drop_path = 0.6f;
    enum { B = 8 };
    assert_int_equal(derf_vit_build(&m, &c, B, err, sizeof err), 0);
    randomize(&m, &s, 0.2);
    float keep[2 * 3 * B], img[B * 64];
    int32_t lab[B];
    fill_batch(&c, B, img, lab, &s);
    derf_rng r1, r2, r3;
    derf_rng_seed(&r1, s, 3);
    r2 = r3 = r1;
    derf_vit_drop_path_draw(&m, keep, B, 1, &r1);
    int dropped = 0;
    for (int l = 0; l < 3; l++) {
        const float p = 0.6f * (float)l / 2.0f;
        for (int j = 0; j < 2; j++)
            for (int b = 0; b < B; b++) {
                float want = 1.0f;
                if (p > 0) want = derf_rng_uniform(&r2) < p ? 0.0f : 1.0f / (1.0f - p);
                assert_true(keep[(2 * l + j) * B + b] == want);
                dropped += want == 0.0f;
            }
    }
    assert_true(dropped > 0);
    assert_memory_equal(&r1, &r2, sizeof r1);
    derf_vit_forward(&m, img, B, 1, &r3);
    assert_memory_equal(&r1, &r3, sizeof r1);
    /* evaluation mode: all 1, no draws */
    derf_vit_drop_path_draw(&m, keep, B, 0, &r1);
    for (int i = 0; i < 2 * 3 * B; i++) assert_true(keep[i] == 1.0f);
    assert_memory_equal(&r1, &r3, sizeof r1);
    /* derf_vit_swap_ema on the CPU swaps the slab pointers, twice restores them */
    float *raw = m.params.params, *ema = calloc(m.params.total, sizeof(float)), *e0 = ema;
    derf_vit_swap_ema(&m, &ema);
    assert_ptr_equal(m.params.params, e0);
    assert_ptr_equal(ema, raw);
    derf_vit_swap_ema(&m, &ema);
    assert_ptr_equal(m.params.params, raw);
    assert_ptr_equal(ema, e0);
    free(ema);
    derf_vit_free(&m);
}

/* --------------------------------------------------------------------- PyTorch parity */

typedef struct { const char *norm; derf_pool pool; derf_gelu_kind gelu; int B, img, chans, dim, depth, heads; } parity_case;

/* Builds the case, runs forward + xent + backward, writes DIR/{params,grads,batch}.safetensors. */
static void write_case(const char *dir, const parity_case *pc, uint64_t *s) {
    derf_vit_config c = test_config(pc->norm, pc->pool);
    c.gelu = pc->gelu;
    if (pc->img) { c.img = pc->img; c.chans = pc->chans; c.dim = pc->dim; c.depth = pc->depth; c.heads = pc->heads; }
    derf_vit m;
    char err[256];
    assert_int_equal(derf_vit_build(&m, &c, pc->B, err, sizeof err), 0);
    randomize(&m, s, 0.2);
    const int B = pc->B, npix = c.chans * c.img * c.img;
    float *img = malloc((size_t)B * npix * sizeof *img), *labf = malloc((size_t)B * sizeof *labf);
    float *dlogits = calloc((size_t)B * c.classes, sizeof *dlogits);
    int32_t *lab = malloc((size_t)B * sizeof *lab);
    fill_batch(&c, B, img, lab, s);
    for (int b = 0; b < B; b++) labf[b] = (float)lab[b];

    derf_vit_forward(&m, img, B, 0, NULL);
    float loss = derf_xent_forward_backward(dlogits, m.logits, lab, 0.0f, 1.0f, B, c.classes);
    derf_params_zero_grad(&m.params);
    derf_vit_backward(&m, dlogits, B);

    char keys[32][32], vals[32][128], path[600];
    int nk = derf_vit_config_to_meta(&c, keys, vals, 32);
    assert_true(nk > 0);
    assert_int_equal(parity_write_model(dir, &m.params, keys, vals, nk), 0);

    int64_t sh_img[4] = {B, c.chans, c.img, c.img}, sh_b[1] = {B}, sh_log[2] = {B, c.classes}, sh_1[1] = {1};
    derf_st_tensor_in bt[4] = {{"images", 4, sh_img, img}, {"labels", 1, sh_b, labf},
                               {"logits", 2, sh_log, m.logits}, {"loss", 1, sh_1, &loss}};
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    if (derf_safetensors_write(path, bt, 4, NULL, 0, err, sizeof err)) fail_msg("%s", err);
    free(img); free(labf); free(dlogits); free(lab);
    derf_vit_free(&m);
}

static void test_torch_parity(void **state) {
    (void)state;
    parity_require_torch();
    const parity_case cases[] = {
        {"layernorm", DERF_POOL_AVG, DERF_GELU_ERF, 2, 0, 0, 0, 0, 0},
        {"derf", DERF_POOL_AVG, DERF_GELU_ERF, 2, 0, 0, 0, 0, 0},
        {"dyt", DERF_POOL_AVG, DERF_GELU_ERF, 2, 0, 0, 0, 0, 0},
        {"layernorm", DERF_POOL_CLS, DERF_GELU_ERF, 3, 0, 0, 0, 0, 0},
        {"derf", DERF_POOL_CLS, DERF_GELU_ERF, 3, 0, 0, 0, 0, 0},
        {"dyt", DERF_POOL_CLS, DERF_GELU_ERF, 3, 0, 0, 0, 0, 0},
        /* per-channel shift, other alpha, tanh GELU; and a larger shape: 3 channels, 9 patches, 3 heads */
        {"erf:shift=channel:alpha=0.8:s=0.1", DERF_POOL_AVG, DERF_GELU_TANH, 2, 0, 0, 0, 0, 0},
        {"derf", DERF_POOL_AVG, DERF_GELU_ERF, 4, 12, 3, 24, 3, 3},
        {"layernorm:eps=1e-06", DERF_POOL_CLS, DERF_GELU_ERF, 4, 12, 3, 24, 3, 3},
        /* the real image size: 28x28 in 4x4 patches, T = 50 tokens, width 64, 4 heads */
        {"derf", DERF_POOL_AVG, DERF_GELU_ERF, 2, 28, 1, 64, 1, 4},
    };
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    char root[] = "/tmp/derf_vit_parity_XXXXXX";
    assert_non_null(mkdtemp(root));
    uint64_t s = g_seed ^ 0x5eedULL;
    for (int i = 0; i < nc; i++) {
        write_case(parity_case_dir(root, i), &cases[i], &s);
    }
    assert_int_equal(parity_run("tools/vit_torch_parity.py", root, nc), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_table),
        cmocka_unit_test(test_init_values),
        cmocka_unit_test(test_presets_and_checks),
        cmocka_unit_test(test_meta_roundtrip),
        cmocka_unit_test(test_forward_batch_independent),
        cmocka_unit_test(test_drop_path_draw),
        cmocka_unit_test(test_gradcheck_layernorm),
        cmocka_unit_test(test_gradcheck_derf),
        cmocka_unit_test(test_gradcheck_dyt_cls),
        cmocka_unit_test(test_torch_parity),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
