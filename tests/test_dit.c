/* test_dit.c: the DiT model (src/models/dit.c).
 *  - tensor table: DiT's state-dict names and shapes, no affine tensors in any norm;
 *  - init rules of docs/paper.md section 5.2 (LayerNorm keeps every adaLN zero-init; point-wise drops the final
 *    layer's and keeps the blocks' only for size class B; XL alpha 1.0);
 *  - the fixed positions and timestep features against their closed forms (double precision);
 *  - PyTorch parity (the strong check): for layernorm / derf / dyt and other shapes, writes params, a batch,
 *    derf's output, loss and every gradient, and runs tools/dit_torch_parity.py (a torch DiT written from
 *    facebookresearch/DiT models.py) on them. Skipped without torch, unless CI=true. */
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
#include "derf/dit.h"
#include "derf/safetensors.h"
#include "parity.h"
#include "testutil.h"

static uint64_t g_seed;
static int setup(void **state) { (void)state; g_seed = tu_seed(); return 0; }

static derf_dit_config test_config(const char *norm, char size_class) {
    derf_dit_config c;
    char err[256];
    assert_int_equal(derf_dit_preset(&c, "test", err, sizeof err), 0);
    if (derf_dit_set_norm(&c, norm, size_class, err, sizeof err)) fail_msg("%s", err);
    return c;
}

static void test_tensor_table(void **state) {
    (void)state;
    derf_dit m;
    char err[256];
    derf_dit_config c = test_config("derf", 'B');
    assert_int_equal(derf_dit_build(&m, &c, 2, err, sizeof err), 0);
    /* test preset: 8x8x1, patch 4 -> T 4; D 16, H 64, F 16, 5 classes (+1 null), depth 2; derf: alpha, shift */
    const struct { const char *name; int ndim, s0, s1; } want[] = {
        {"x_embedder.proj.weight", 4, 16, 1},
        {"x_embedder.proj.bias", 1, 16, 0},
        {"t_embedder.mlp.0.weight", 2, 16, 16},
        {"t_embedder.mlp.2.weight", 2, 16, 16},
        {"y_embedder.embedding_table.weight", 2, 6, 16},
        {"blocks.0.norm1.alpha", 1, 1, 0},
        {"blocks.0.norm1.shift", 1, 1, 0},
        {"blocks.1.attn.qkv.weight", 2, 48, 16},
        {"blocks.1.mlp.fc1.weight", 2, 64, 16},
        {"blocks.1.adaLN_modulation.1.weight", 2, 96, 16},
        {"blocks.1.adaLN_modulation.1.bias", 1, 96, 0},
        {"final_layer.norm_final.alpha", 1, 1, 0},
        {"final_layer.linear.weight", 2, 16, 16},
        {"final_layer.adaLN_modulation.1.weight", 2, 32, 16},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const derf_tensor *t = derf_params_find(&m.params, want[i].name);
        if (!t) fail_msg("tensor %s missing", want[i].name);
        assert_int_equal(t->ndim, want[i].ndim);
        assert_int_equal(t->shape[0], want[i].s0);
        if (want[i].ndim > 1) assert_int_equal(t->shape[1], want[i].s1);
    }
    assert_null(derf_params_find(&m.params, "blocks.0.norm1.weight"));
    assert_null(derf_params_find(&m.params, "final_layer.norm_final.bias"));
    derf_dit_free(&m);
    /* layernorm without affine has no tensors at all */
    c = test_config("layernorm", 'B');
    assert_int_equal(derf_dit_build(&m, &c, 1, err, sizeof err), 0);
    assert_null(derf_params_find(&m.params, "blocks.0.norm1.weight"));
    assert_true(c.norm.eps == 1e-6f);
    derf_dit_free(&m);
    /* an affine spec is refused by the check */
    c.norm.affine = 1;
    assert_int_equal(derf_dit_build(&m, &c, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "affine"));
}

static int all_zero(const derf_dit *m, const char *name) {
    const derf_tensor *t = derf_params_find(&m->params, name);
    if (!t) fail_msg("tensor %s missing", name);
    for (size_t i = 0; i < t->numel; i++) if (m->params.params[t->offset + i] != 0.0f) return 0;
    return 1;
}

static void test_init_rules(void **state) {
    (void)state;
    const struct { const char *norm; char cls; int blocks, final; float alpha; } cases[] = {
        {"layernorm", 'B', 1, 1, 0}, {"layernorm", 'X', 1, 1, 0}, {"layernorm", 'S', 1, 1, 0},
        {"derf", 'B', 1, 0, 0.5f}, {"derf", 'L', 0, 0, 0.5f}, {"derf", 'S', 0, 0, 0.5f},
        {"derf", 'X', 0, 0, 1.0f}, {"dyt", 'X', 0, 0, 1.0f}, {"derf:alpha=0.3", 'X', 0, 0, 0.3f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        derf_dit_config c = test_config(cases[i].norm, cases[i].cls);
        assert_int_equal(c.zero_blocks, cases[i].blocks);
        assert_int_equal(c.zero_final, cases[i].final);
        derf_dit m;
        char err[256];
        assert_int_equal(derf_dit_build(&m, &c, 1, err, sizeof err), 0);
        derf_dit_init(&m, g_seed);
        assert_int_equal(all_zero(&m, "blocks.1.adaLN_modulation.1.weight"), cases[i].blocks);
        assert_true(all_zero(&m, "blocks.1.adaLN_modulation.1.bias"));
        assert_int_equal(all_zero(&m, "final_layer.adaLN_modulation.1.weight"), cases[i].final);
        assert_int_equal(all_zero(&m, "final_layer.linear.weight"), cases[i].final);
        assert_false(all_zero(&m, "blocks.0.attn.qkv.weight"));
        if (cases[i].alpha > 0) {
            const derf_tensor *t = derf_params_find(&m.params, "blocks.0.norm2.alpha");
            assert_non_null(t);
            assert_true(fabsf(m.params.params[t->offset] - cases[i].alpha) < 1e-7f);
        }
        derf_dit_free(&m);
    }
    derf_dit_config c;
    char err[256];
    assert_int_equal(derf_dit_preset(&c, "nope", err, sizeof err), -1);
    assert_non_null(strstr(err, "tiny"));
    assert_int_equal(derf_dit_preset(&c, "tiny", err, sizeof err), 0);
    assert_int_equal(derf_dit_set_norm(&c, "derf", 'Q', err, sizeof err), -1);
    assert_int_equal(derf_dit_set_norm(&c, "nosuchfn", 'B', err, sizeof err), -1);
}

/* closed forms in double: pos[i*g+j] = [sin(j w_k) | cos(j w_k) | sin(i w_k) | cos(i w_k)], w_k = 1e4^(-k/(D/4));
 * tfreq[b] = [cos(t f_k) | sin(t f_k)], f_k = 1e4^(-k/(F/2)) */
static void test_fixed_embeddings(void **state) {
    (void)state;
    const int D = 24, g = 5, q = D / 4;
    float *pos = malloc(sizeof(float) * g * g * D);
    derf_dit_sincos_pos(pos, D, g);
    for (int i = 0; i < g; i++)
        for (int j = 0; j < g; j++)
            for (int k = 0; k < q; k++) {
                double w = pow(10000.0, -(double)k / q);
                const float *r = pos + (i * g + j) * D;
                assert_true(fabs(r[k] - sin(j * w)) < 1e-6 && fabs(r[q + k] - cos(j * w)) < 1e-6);
                assert_true(fabs(r[2 * q + k] - sin(i * w)) < 1e-6 && fabs(r[3 * q + k] - cos(i * w)) < 1e-6);
            }
    free(pos);
    const int F = 32;
    float t[3] = {0, 17, 999}, out[3 * 32];
    derf_dit_timestep_features(out, t, 3, F);
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < F / 2; k++) {
            double f = pow(10000.0, -(double)k / (F / 2)), a = t[b] * f;
            /* float32 argument up to 999: its rounding moves cos/sin by up to ~1e-4 */
            assert_true(fabs(out[b * F + k] - cos(a)) < 2e-4);
            assert_true(fabs(out[b * F + F / 2 + k] - sin(a)) < 2e-4);
        }
}

/* --------------------------------------------------------------------- PyTorch parity */

typedef struct { const char *norm; char cls; int B, img, chans, patch, dim, depth, heads, learn_sigma; } parity_case;

static void write_case(const char *dir, const parity_case *pc, uint64_t *s) {
    derf_dit_config c = test_config(pc->norm, pc->cls);
    if (pc->img) { c.img = pc->img; c.chans = pc->chans; c.patch = pc->patch; c.dim = pc->dim; c.depth = pc->depth; c.heads = pc->heads; }
    c.learn_sigma = pc->learn_sigma;
    derf_dit m;
    char err[256];
    if (derf_dit_build(&m, &c, pc->B, err, sizeof err)) fail_msg("%s", err);
    derf_dit_init(&m, *s);
    /* noise on every parameter so zero-inits do not hide any gradient */
    for (size_t i = 0; i < m.params.total; i++) m.params.params[i] += (float)(0.2 * (2 * tu_uniform(s) - 1));
    const int B = pc->B, OC = derf_dit_out_chans(&c);
    const size_t nx = (size_t)B * c.chans * c.img * c.img, no = (size_t)B * OC * c.img * c.img;
    float *x = malloc(nx * sizeof *x), *tg = malloc(no * sizeof *tg), *dout = malloc(no * sizeof *dout);
    float t[16], yf[16];
    int32_t y[16];
    tu_fill(x, nx, s, -1.5, 1.5);
    tu_fill(tg, no, s, -1.5, 1.5);
    for (int b = 0; b < B; b++) {
        t[b] = (float)(int)(tu_uniform(s) * 1000);
        y[b] = b == 0 ? c.classes : (int32_t)(tu_uniform(s) * (c.classes + 1)); /* the null label at least once */
        yf[b] = (float)y[b];
    }
    derf_dit_forward(&m, x, t, y, B);
    double loss = 0;
    for (size_t i = 0; i < no; i++) {
        double d = (double)m.out[i] - tg[i];
        loss += d * d;
        dout[i] = (float)(2 * d / (double)no);
    }
    float lossf = (float)(loss / (double)no);
    derf_params_zero_grad(&m.params);
    derf_dit_backward(&m, dout, B);

    char keys[32][32], vals[32][128], path[900];
    int nk = derf_dit_config_to_meta(&c, keys, vals, 32);
    assert_true(nk > 0);
    assert_int_equal(parity_write_model(dir, &m.params, keys, vals, nk), 0);
    int64_t shx[4] = {B, c.chans, c.img, c.img}, sho[4] = {B, OC, c.img, c.img}, shb[1] = {B}, sh1[1] = {1};
    derf_st_tensor_in bt[6] = {{"x", 4, shx, x}, {"t", 1, shb, t}, {"y", 1, shb, yf},
                               {"target", 4, sho, tg}, {"out", 4, sho, m.out}, {"loss", 1, sh1, &lossf}};
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    if (derf_safetensors_write(path, bt, 6, NULL, 0, err, sizeof err)) fail_msg("%s", err);
    free(x); free(tg); free(dout);
    derf_dit_free(&m);
}

static void test_torch_parity(void **state) {
    (void)state;
    parity_require_torch();
    const parity_case cases[] = {
        {"layernorm", 'B', 2, 0, 0, 0, 0, 0, 0, 0},
        {"derf", 'B', 2, 0, 0, 0, 0, 0, 0, 0},
        {"dyt", 'S', 2, 0, 0, 0, 0, 0, 0, 0},
        /* 2 channels, patch 2 (9 tokens), 3 heads, learned sigma, per-channel shift */
        {"erf:shift=channel:alpha=0.8:s=0.1", 'L', 3, 6, 2, 2, 24, 2, 3, 1},
        {"layernorm", 'X', 3, 6, 2, 3, 12, 1, 2, 1},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    char root[] = "/tmp/derf_dit_parity_XXXXXX";
    assert_non_null(mkdtemp(root));
    uint64_t s = g_seed ^ 0xd17u;
    for (int i = 0; i < n; i++) {
        write_case(parity_case_dir(root, i), &cases[i], &s);
    }
    assert_int_equal(parity_run("tools/dit_torch_parity.py", root, n), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_table),
        cmocka_unit_test(test_init_rules),
        cmocka_unit_test(test_fixed_embeddings),
        cmocka_unit_test(test_torch_parity),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
