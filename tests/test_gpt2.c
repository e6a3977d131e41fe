/* test_gpt2.c: the GPT-2 model (src/models/gpt2.c).
 *  - tensor table of the "test" preset: HF GPT2Model names, shapes, order, count, weight-decay flags
 *    (2-D tensors only), with and without biases and shared_scale; nanoGPT init values (std 0.02,
 *    c_proj std 0.02/sqrt(2L), shared_scale sqrt(C), the three alpha inits); presets with their
 *    parameter counts; config checks; config <-> metadata round trip and bad metadata;
 *  - forward: causal (a later token never changes earlier logits), batch-independent, ignored targets;
 *  - whole-model gradients against central finite differences (float forward, so a coarse check: a few
 *    random elements of EVERY tensor; layernorm, derf with shared_scale, dyt without biases), and
 *    backward ADDS (and scales with its loss scale);
 *  - PyTorch parity (the strong check): for layernorm / derf / dyt and a few other configs, writes
 *    params, a batch, logits, loss, every gradient, and the losses and gradient norms of 10 AdamW
 *    steps (betas 0.9/0.95, wd 0.1 on the decay tensors, clip 1.0) to a temp dir and runs
 *    tools/gpt2_torch_parity.py on them (fp32 tolerance per tensor). Skipped when /usr/bin/python3
 *    (or $DERF_TORCH_PYTHON) has no torch, unless CI=true;
 *  Timings live in `derf bench --only gpt2`, not here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "derf/gpt2.h"
#include "derf/safetensors.h"
#include "parity.h"
#include "testutil.h"

static uint64_t g_seed;
static int setup(void **state) { (void)state; g_seed = tu_seed(); return 0; }

static derf_gpt2_config test_config(const char *norm, int bias) {
    derf_gpt2_config c;
    char err[256];
    assert_int_equal(derf_gpt2_preset(&c, "test", err, sizeof err), 0);
    assert_int_equal(derf_norm_parse(norm, &c.norm, err, sizeof err), 0);
    c.bias = bias;
    return c;
}

/* init, then uniform noise on every parameter so no gradient is trivially tiny or symmetric */
static void randomize(derf_gpt2 *m, uint64_t *s, double noise) {
    derf_gpt2_init(m, *s);
    for (size_t i = 0; i < m->params.total; i++) m->params.params[i] += (float)(noise * (2 * tu_uniform(s) - 1));
}

/* random tokens; targets random with about one in `ignore_every` set to -1 (0: none ignored) */
static void fill_batch(int V, int n, int32_t *tok, int32_t *tgt, int ignore_every, uint64_t *s) {
    for (int i = 0; i < n; i++) {
        tok[i] = (int32_t)(tu_uniform(s) * V);
        tgt[i] = (int32_t)(tu_uniform(s) * V);
        if (ignore_every && tu_uniform(s) * ignore_every < 1.0) tgt[i] = -1;
    }
}

/* --------------------------------------------------------------------- tensor table */

static void test_tensor_table(void **state) {
    (void)state;
    derf_gpt2 m;
    char err[256];
    derf_gpt2_config c = test_config("derf", 1);
    assert_int_equal(derf_gpt2_build(&m, &c, 2, 8, err, sizeof err), 0);
    assert_int_equal(m.cfg.shared_scale, 1);          /* auto: on for a point-wise norm */
    /* test preset: V 64, maxT 16, C 16, H 64, 2 layers; derf: alpha, shift, weight, bias */
    const struct { const char *name; int ndim, s0, s1, decay; } want[] = {
        {"wte.weight", 2, 64, 16, 1},
        {"wpe.weight", 2, 16, 16, 1},
        {"shared_scale", 1, 1, 0, 0},
        {"h.0.ln_1.alpha", 1, 1, 0, 0},
        {"h.0.ln_1.shift", 1, 1, 0, 0},
        {"h.0.ln_1.weight", 1, 16, 0, 0},
        {"h.0.ln_1.bias", 1, 16, 0, 0},
        {"h.0.attn.c_attn.weight", 2, 48, 16, 1},
        {"h.0.attn.c_attn.bias", 1, 48, 0, 0},
        {"h.0.attn.c_proj.weight", 2, 16, 16, 1},
        {"h.0.attn.c_proj.bias", 1, 16, 0, 0},
        {"h.0.ln_2.alpha", 1, 1, 0, 0},
        {"h.0.ln_2.shift", 1, 1, 0, 0},
        {"h.0.ln_2.weight", 1, 16, 0, 0},
        {"h.0.ln_2.bias", 1, 16, 0, 0},
        {"h.0.mlp.c_fc.weight", 2, 64, 16, 1},
        {"h.0.mlp.c_fc.bias", 1, 64, 0, 0},
        {"h.0.mlp.c_proj.weight", 2, 16, 64, 1},
        {"h.0.mlp.c_proj.bias", 1, 16, 0, 0},
    };
    const int nw = (int)(sizeof want / sizeof want[0]);
    assert_int_equal(m.params.n, 3 + 2 * 16 + 4);
    for (int i = 0; i < nw; i++) {
        const derf_tensor *t = &m.params.t[i];
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->ndim, want[i].ndim);
        assert_int_equal(t->shape[0], want[i].s0);
        if (t->ndim == 2) assert_int_equal(t->shape[1], want[i].s1);
        assert_int_equal(t->decay, want[i].decay);
        assert_int_equal(t->decay, t->ndim >= 2);        /* nanoGPT's rule */
    }
    for (int i = 3; i < nw; i++) {                       /* block 1 repeats block 0 under its own prefix */
        char name[DERF_NAME_MAX];
        snprintf(name, sizeof name, "h.1.%s", want[i].name + strlen("h.0."));
        assert_string_equal(m.params.t[i + 16].name, name);
    }
    const char *tail[] = {"ln_f.alpha", "ln_f.shift", "ln_f.weight", "ln_f.bias"};
    for (int i = 0; i < 4; i++) assert_string_equal(m.params.t[35 + i].name, tail[i]);
    size_t off = 0;                                      /* offsets contiguous in registration order */
    for (int i = 0; i < m.params.n; i++) {
        assert_int_equal(m.params.t[i].offset, off);
        off += m.params.t[i].numel;
    }
    const size_t per_norm = 1 + 1 + 16 + 16;
    const size_t per_block = 2 * per_norm + 48 * 16 + 48 + 16 * 16 + 16 + 64 * 16 + 64 + 16 * 64 + 16;
    assert_int_equal(m.params.total, 64 * 16 + 16 * 16 + 1 + 2 * per_block + per_norm);
    derf_gpt2_free(&m);

    /* layernorm: no shared_scale (auto), weight + bias per norm */
    c = test_config("layernorm", 1);
    assert_int_equal(derf_gpt2_build(&m, &c, 1, 4, err, sizeof err), 0);
    assert_int_equal(m.cfg.shared_scale, 0);
    assert_null(derf_params_find(&m.params, "shared_scale"));
    assert_int_equal(m.params.n, 2 + 2 * 12 + 2);
    assert_string_equal(m.params.t[2].name, "h.0.ln_1.weight");
    assert_string_equal(m.params.t[3].name, "h.0.ln_1.bias");
    assert_string_equal(m.params.t[26].name, "ln_f.weight");
    derf_gpt2_free(&m);

    /* layernorm with shared_scale forced on; dyt without biases (nanoGPT bias=False): no Linear biases */
    c = test_config("layernorm", 1);
    c.shared_scale = 1;
    assert_int_equal(derf_gpt2_build(&m, &c, 1, 4, err, sizeof err), 0);
    assert_string_equal(m.params.t[2].name, "shared_scale");
    derf_gpt2_free(&m);
    c = test_config("dyt", 0);
    assert_int_equal(derf_gpt2_build(&m, &c, 1, 4, err, sizeof err), 0);
    assert_int_equal(m.params.n, 3 + 2 * (2 * 3 + 4) + 3);
    assert_string_equal(m.params.t[3].name, "h.0.ln_1.alpha");
    assert_string_equal(m.params.t[4].name, "h.0.ln_1.weight");
    assert_string_equal(m.params.t[6].name, "h.0.attn.c_attn.weight");
    assert_string_equal(m.params.t[7].name, "h.0.attn.c_proj.weight");
    assert_null(derf_params_find(&m.params, "h.0.attn.c_attn.bias"));
    assert_null(derf_params_find(&m.params, "h.1.mlp.c_proj.bias"));
    assert_null(derf_params_find(&m.params, "h.0.ln_1.shift"));
    assert_non_null(derf_params_find(&m.params, "h.1.mlp.c_proj.weight"));
    derf_gpt2_free(&m);
}

static float tensor_std(const derf_gpt2 *m, const char *name) {
    const derf_tensor *t = derf_params_find(&m->params, name);
    assert_non_null(t);
    double ss = 0;
    for (size_t i = 0; i < t->numel; i++) ss += (double)m->params.params[t->offset + i] * m->params.params[t->offset + i];
    return (float)sqrt(ss / t->numel);
}

static float first_value(const derf_gpt2 *m, const char *name) {
    const derf_tensor *t = derf_params_find(&m->params, name);
    assert_non_null(t);
    return m->params.params[t->offset];
}

static void test_init_values(void **state) {
    (void)state;
    derf_gpt2 m;
    char err[256];
    derf_gpt2_config c;
    assert_int_equal(derf_gpt2_preset(&c, "mini", err, sizeof err), 0);   /* big enough for std estimates */
    c.attn_alpha = 0.8f; c.ffn_alpha = 0.6f; c.final_alpha = 0.4f;
    assert_int_equal(derf_gpt2_build(&m, &c, 1, 4, err, sizeof err), 0);
    derf_gpt2_init(&m, 7);
    assert_float_equal(first_value(&m, "shared_scale"), sqrtf(128.0f), 1e-6);
    for (int l = 0; l < 4; l++) {
        char n1[64], n2[64];
        snprintf(n1, sizeof n1, "h.%d.ln_1.alpha", l);
        snprintf(n2, sizeof n2, "h.%d.ln_2.alpha", l);
        assert_float_equal(first_value(&m, n1), 0.8f, 0);
        assert_float_equal(first_value(&m, n2), 0.6f, 0);
    }
    assert_float_equal(first_value(&m, "ln_f.alpha"), 0.4f, 0);
    assert_float_equal(first_value(&m, "h.2.ln_2.shift"), 0.0f, 0);
    assert_float_equal(first_value(&m, "ln_f.weight"), 1.0f, 0);
    const derf_tensor *t = derf_params_find(&m.params, "h.1.attn.c_attn.bias");
    for (size_t i = 0; i < t->numel; i++) assert_float_equal(m.params.params[t->offset + i], 0.0f, 0);
    const char *std02[] = {"wte.weight", "wpe.weight", "h.0.attn.c_attn.weight", "h.3.mlp.c_fc.weight"};
    for (int i = 0; i < 4; i++) {
        float sd = tensor_std(&m, std02[i]);
        if (!(sd > 0.0194f && sd < 0.0206f)) fail_msg("%s: std %g, want 0.02", std02[i], sd);
    }
    const float pstd = 0.02f / sqrtf(8.0f);                     /* 0.02 / sqrt(2 * n_layer) */
    const char *proj[] = {"h.0.attn.c_proj.weight", "h.2.mlp.c_proj.weight"};
    for (int i = 0; i < 2; i++) {
        float sd = tensor_std(&m, proj[i]);
        if (!(sd > 0.95f * pstd && sd < 1.05f * pstd)) fail_msg("%s: std %g, want %g", proj[i], sd, pstd);
    }
    float *copy = malloc(m.params.total * sizeof *copy);        /* same seed, same weights */
    memcpy(copy, m.params.params, m.params.total * sizeof *copy);
    derf_gpt2_init(&m, 7);
    assert_memory_equal(copy, m.params.params, m.params.total * sizeof *copy);
    free(copy);
    derf_gpt2_free(&m);

    /* alpha 0 = the spec's own alpha init */
    c = test_config("derf:alpha=0.3", 1);
    c.attn_alpha = 0.0f; c.ffn_alpha = 2.0f; c.final_alpha = 0.0f;
    assert_int_equal(derf_gpt2_build(&m, &c, 1, 4, err, sizeof err), 0);
    derf_gpt2_init(&m, 1);
    assert_float_equal(first_value(&m, "h.1.ln_1.alpha"), 0.3f, 0);
    assert_float_equal(first_value(&m, "h.1.ln_2.alpha"), 2.0f, 0);
    assert_float_equal(first_value(&m, "ln_f.alpha"), 0.3f, 0);
    derf_gpt2_free(&m);
}

/* --------------------------------------------------------------------- presets, checks, metadata */

static void test_presets_and_checks(void **state) {
    (void)state;
    const char *names[] = {"test", "mini", "tiny", "small", "124m"};
    const char *norms[] = {"derf", "layernorm"};
    char err[256];
    for (int i = 0; i < 5; i++) {
        derf_gpt2_config c;
        assert_int_equal(derf_gpt2_preset(&c, names[i], err, sizeof err), 0);
        assert_int_equal(derf_gpt2_check(&c, err, sizeof err), 0);
        size_t count[2];
        for (int k = 0; k < 2; k++) {
            assert_int_equal(derf_norm_parse(norms[k], &c.norm, err, sizeof err), 0);
            derf_gpt2 m;
            assert_int_equal(derf_gpt2_build(&m, &c, 1, 2, err, sizeof err), 0);
            count[k] = m.params.total;
            derf_gpt2_free(&m);
        }
        print_message("preset %-5s V %5d maxT %4d L %2d C %3d NH %2d: %zu parameters (derf), %zu (layernorm)\n",
                      names[i], c.vocab, c.block_size, c.n_layer, c.n_embd, c.n_head, count[0], count[1]);
        if (strcmp(names[i], "124m") == 0) {
            /* GPT-2 small: 124,475,904 with nanoGPT's padded vocab and LayerNorm biases */
            assert_int_equal(count[1], 124475904);
            assert_int_equal(c.vocab, 50304);
        }
    }
    derf_gpt2_config c;
    assert_int_equal(derf_gpt2_preset(&c, "huge", err, sizeof err), -1);
    assert_non_null(strstr(err, "huge"));
    assert_non_null(strstr(err, "124m"));

    derf_gpt2_config good = test_config("derf", 1);
    c = good; c.n_head = 3;          assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "n_head"));
    c = good; c.n_embd = 0;          assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "n_embd"));
    c = good; c.vocab = 0;           assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "vocab"));
    c = good; c.n_layer = -1;        assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "n_layer"));
    c = good; c.block_size = 0;      assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "block_size"));
    c = good; c.bias = 2;            assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "bias"));
    c = good; c.shared_scale = 3;    assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "shared_scale"));
    c = good; c.ffn_alpha = -1.0f;   assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "ffn_alpha"));
    c = good; c.final_alpha = NAN;   assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1); assert_non_null(strstr(err, "final_alpha"));
    derf_gpt2 m;
    assert_int_equal(derf_gpt2_build(&m, &good, 0, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_batch"));
    assert_int_equal(derf_gpt2_build(&m, &good, 1, 17, err, sizeof err), -1);
    assert_non_null(strstr(err, "max_T"));
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
    derf_gpt2_config c = test_config("erf:shift=channel:alpha=0.75:s=0.25", 0);
    c.attn_alpha = 1.5f; c.ffn_alpha = 0.25f; c.final_alpha = 0.0f;
    c.vocab = 100;
    int n = derf_gpt2_config_to_meta(&c, keys, vals, 32);
    assert_int_equal(n, 12);
    assert_int_equal(derf_gpt2_config_to_meta(&c, keys, vals, 3), -1);
    meta_ctx ctx = {n, keys, vals, NULL, NULL, NULL};
    derf_gpt2_config d;
    assert_int_equal(derf_gpt2_config_from_meta(&d, meta_lookup, &ctx, err, sizeof err), 0);
    assert_int_equal(d.vocab, 100); assert_int_equal(d.block_size, c.block_size);
    assert_int_equal(d.n_layer, c.n_layer); assert_int_equal(d.n_head, c.n_head); assert_int_equal(d.n_embd, c.n_embd);
    assert_int_equal(d.bias, 0);
    assert_int_equal(d.shared_scale, 1);                     /* auto resolved for a point-wise norm */
    assert_float_equal(d.attn_alpha, 1.5f, 0); assert_float_equal(d.ffn_alpha, 0.25f, 0);
    assert_float_equal(d.final_alpha, 0.0f, 0);
    assert_int_equal(d.norm.kind, c.norm.kind); assert_int_equal(d.norm.fn, c.norm.fn);
    assert_int_equal(d.norm.shift, DERF_SHIFT_CHANNEL);
    assert_float_equal(d.norm.alpha_init, 0.75f, 0); assert_float_equal(d.norm.shift_init, 0.25f, 0);

    /* through a real file */
    char dir[] = "/tmp/derf_gpt2_meta_XXXXXX", path[64];
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
    assert_int_equal(derf_gpt2_config_from_meta(&d, st_meta_lookup, &st, err, sizeof err), 0);
    assert_int_equal(d.norm.shift, DERF_SHIFT_CHANNEL);
    assert_int_equal(d.n_embd, c.n_embd);
    assert_float_equal(d.attn_alpha, 1.5f, 0);
    derf_safetensors_free(&st);
    unlink(path);
    rmdir(dir);

    /* layernorm: shared_scale resolves to 0 */
    derf_gpt2_config ln = test_config("layernorm", 1);
    int nl = derf_gpt2_config_to_meta(&ln, keys, vals, 32);
    meta_ctx lctx = {nl, keys, vals, NULL, NULL, NULL};
    assert_int_equal(derf_gpt2_config_from_meta(&d, meta_lookup, &lctx, err, sizeof err), 0);
    assert_int_equal(d.shared_scale, 0);
    assert_int_equal(d.norm.kind, DERF_NORM_LAYERNORM);

    n = derf_gpt2_config_to_meta(&c, keys, vals, 32);
    const char *required[] = {"model", "vocab", "block_size", "n_layer", "n_head", "n_embd", "bias", "norm",
                              "shared_scale", "attn_alpha", "ffn_alpha", "final_alpha"};
    for (int i = 0; i < 12; i++) {
        meta_ctx miss = {n, keys, vals, required[i], NULL, NULL};
        assert_int_equal(derf_gpt2_config_from_meta(&d, meta_lookup, &miss, err, sizeof err), -1);
        assert_non_null(strstr(err, required[i]));
    }
    const struct { const char *key, *val, *expect; } bad[] = {
        {"model", "vit", "model"}, {"n_embd", "abc", "n_embd"}, {"n_embd", "16x", "n_embd"},
        {"n_head", "-2", "n_head"}, {"n_head", "3", "n_head"}, {"norm", "erfx", "norm"}, {"bias", "2", "bias"},
        {"shared_scale", "-1", "shared_scale"}, {"attn_alpha", "-1", "attn_alpha"}, {"ffn_alpha", "", "ffn_alpha"},
        {"final_alpha", "nan", "final_alpha"}, {"vocab", "0", "vocab"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        meta_ctx b = {n, keys, vals, NULL, bad[i].key, bad[i].val};
        err[0] = 0;
        assert_int_equal(derf_gpt2_config_from_meta(&d, meta_lookup, &b, err, sizeof err), -1);
        if (!strstr(err, bad[i].expect)) fail_msg("%s=%s: error '%s'", bad[i].key, bad[i].val, err);
    }
}

/* --------------------------------------------------------------------- forward properties */

/* causal: changing token t changes no logits before t; batch rows are independent; deterministic */
static void test_forward_causal_and_batch_independent(void **state) {
    (void)state;
    derf_gpt2 m;
    char err[256];
    uint64_t s = g_seed ^ 0xabcdefULL;
    derf_gpt2_config c = test_config("derf", 1);
    const int B = 3, T = 9, V = c.vocab;
    assert_int_equal(derf_gpt2_build(&m, &c, B, 12, err, sizeof err), 0);
    randomize(&m, &s, 0.2);
    int32_t tok[3 * 9], tgt[3 * 9];
    fill_batch(V, B * T, tok, tgt, 0, &s);
    float *full = malloc((size_t)B * T * V * sizeof *full), *one = malloc((size_t)T * V * sizeof *one);
    derf_gpt2_forward(&m, tok, NULL, B, T);
    assert_true(isnan(m.loss));
    memcpy(full, m.logits, (size_t)B * T * V * sizeof *full);
    derf_gpt2_forward(&m, tok + T, NULL, 1, T);               /* row 1 alone */
    for (int i = 0; i < T * V; i++) assert_true(fabsf(m.logits[i] - full[T * V + i]) <= 1e-5f * (1 + fabsf(full[T * V + i])));
    memcpy(one, m.logits, (size_t)T * V * sizeof *one);
    const int t0 = 5;                                          /* change token t0 of that row */
    int32_t tok2[9];
    memcpy(tok2, tok + T, sizeof tok2);
    tok2[t0] = (tok2[t0] + 1) % V;
    derf_gpt2_forward(&m, tok2, NULL, 1, T);
    for (int i = 0; i < t0 * V; i++) assert_true(m.logits[i] == one[i]);
    double diff = 0;
    for (int i = t0 * V; i < (t0 + 1) * V; i++) diff += fabs(m.logits[i] - one[i]);
    assert_true(diff > 1e-4);
    /* prefix: the first 4 tokens alone give the same logits as the first 4 positions of the full row */
    derf_gpt2_forward(&m, tok + T, NULL, 1, 4);
    for (int i = 0; i < 4 * V; i++) assert_true(fabsf(m.logits[i] - one[i]) <= 1e-5f * (1 + fabsf(one[i])));
    derf_gpt2_forward(&m, tok, NULL, B, T);
    assert_memory_equal(full, m.logits, (size_t)B * T * V * sizeof *full);
    free(full);
    free(one);
    derf_gpt2_free(&m);
}

/* ignored targets: the loss is the mean over the kept ones only, all ignored gives 0 */
static void test_ignored_targets(void **state) {
    (void)state;
    derf_gpt2 m;
    char err[256];
    uint64_t s = g_seed ^ 0x1717ULL;
    derf_gpt2_config c = test_config("layernorm", 1);
    const int B = 2, T = 6, V = c.vocab;
    assert_int_equal(derf_gpt2_build(&m, &c, B, T, err, sizeof err), 0);
    randomize(&m, &s, 0.2);
    int32_t tok[12], tgt[12], kept[12];
    fill_batch(V, B * T, tok, tgt, 0, &s);
    float loss = derf_gpt2_forward(&m, tok, tgt, B, T);
    double want = 0;
    int nk = 0;
    for (int i = 0; i < B * T; i++) {
        kept[i] = (i % 3 == 1) ? tgt[i] : -1;
        if (kept[i] < 0) continue;
        const float *row = m.logits + (size_t)i * V;
        double mx = row[0], se = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, row[v]);
        for (int v = 0; v < V; v++) se += exp(row[v] - mx);
        want += mx + log(se) - row[kept[i]];
        nk++;
    }
    assert_true(isfinite(loss) && loss > 0);
    float lk = derf_gpt2_forward(&m, tok, kept, B, T);
    assert_float_equal(lk, want / nk, 1e-5 * (1 + want / nk));
    for (int i = 0; i < B * T; i++) kept[i] = -1;
    assert_float_equal(derf_gpt2_forward(&m, tok, kept, B, T), 0.0f, 0);
    derf_params_zero_grad(&m.params);
    derf_gpt2_backward(&m, 1.0f);                              /* no kept target: no gradient */
    for (size_t i = 0; i < m.params.total; i++) assert_true(m.params.grads[i] == 0.0f);
    derf_gpt2_free(&m);
}

/* --------------------------------------------------------------------- finite differences */

#define FD_B 2
#define FD_T 5
#define FD_PER_TENSOR 3
#define FD_H 1e-2f
#define FD_RTOL 1e-2
#define FD_ATOL 5e-5

static void gradcheck(const char *norm, int bias, int logit_bias) {
    derf_gpt2 m;
    char err[256];
    uint64_t s = g_seed ^ 0x1234567ULL ^ (uint64_t)strlen(norm) * 7919 ^ (uint64_t)bias;
    derf_gpt2_config c = test_config(norm, bias);
    c.logit_bias = logit_bias;
    assert_int_equal(derf_gpt2_build(&m, &c, FD_B, FD_T + 2, err, sizeof err), 0);
    randomize(&m, &s, 0.2);
    int32_t tok[FD_B * FD_T], tgt[FD_B * FD_T];
    fill_batch(c.vocab, FD_B * FD_T, tok, tgt, 4, &s);

    /* analytic gradient; then again without zeroing at loss scale 0.5: backward must ADD (g + g/2) */
    derf_params_zero_grad(&m.params);
    derf_gpt2_forward(&m, tok, tgt, FD_B, FD_T);
    derf_gpt2_backward(&m, 1.0f);
    float *g1 = malloc(m.params.total * sizeof *g1);
    memcpy(g1, m.params.grads, m.params.total * sizeof *g1);
    derf_gpt2_forward(&m, tok, tgt, FD_B, FD_T);
    derf_gpt2_backward(&m, 0.5f);
    for (size_t i = 0; i < m.params.total; i++)
        if (fabsf(m.params.grads[i] - 1.5f * g1[i]) > 1e-5f * (1 + fabsf(g1[i])))
            fail_msg("%s: backward does not add into grads at %zu: %g vs 1.5*%g", norm, i, m.params.grads[i], g1[i]);

    int checked = 0, bad = 0;
    double worst = 0;
    for (int ti = 0; ti < m.params.n; ti++) {
        const derf_tensor *t = &m.params.t[ti];
        const int k = t->numel < FD_PER_TENSOR ? (int)t->numel : FD_PER_TENSOR;
        for (int j = 0; j < k; j++) {
            size_t i;
            if (strcmp(t->name, "wte.weight") == 0 && j == 0)      /* a row that is an input token */
                i = t->offset + (size_t)tok[0] * c.n_embd + (size_t)(tu_uniform(&s) * c.n_embd);
            else if (strcmp(t->name, "wpe.weight") == 0)           /* a used position */
                i = t->offset + (size_t)(tu_uniform(&s) * FD_T * c.n_embd);
            else
                i = t->offset + (size_t)(tu_uniform(&s) * t->numel);
            float *p = &m.params.params[i], p0 = *p;
            *p = p0 + FD_H; float lp = derf_gpt2_forward(&m, tok, tgt, FD_B, FD_T);
            *p = p0 - FD_H; float lm = derf_gpt2_forward(&m, tok, tgt, FD_B, FD_T);
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
    print_message("%s (bias %d, shared_scale %d): %d elements of %d tensors, worst |fd-an| / tolerance %.3g\n",
                  norm, bias, m.cfg.shared_scale, checked, m.params.n, worst);
    free(g1);
    derf_gpt2_free(&m);
    assert_int_equal(bad, 0);
}

static void test_gradcheck_layernorm(void **state) { (void)state; gradcheck("layernorm", 1, 0); }
static void test_gradcheck_derf(void **state) { (void)state; gradcheck("derf", 1, 0); }
static void test_gradcheck_dyt_nobias(void **state) { (void)state; gradcheck("dyt", 0, 0); }

/* derf's logit bias: lm_head.bias [V] last in the table, no decay, 0 at init, adds to every position's
 * logits (against the model without it), its gradient by finite differences, and it survives the metadata */
static void test_logit_bias(void **state) {
    (void)state;
    gradcheck("derf", 1, 1);
    char err[256];
    derf_gpt2_config c = test_config("derf", 1);
    derf_gpt2 m0, m1;
    assert_int_equal(derf_gpt2_build(&m0, &c, 2, 5, err, sizeof err), 0);
    c.logit_bias = 1;
    assert_int_equal(derf_gpt2_build(&m1, &c, 2, 5, err, sizeof err), 0);
    assert_int_equal(m1.params.n, m0.params.n + 1);
    const derf_tensor *t = &m1.params.t[m1.params.n - 1];
    assert_string_equal(t->name, "lm_head.bias");
    assert_int_equal(t->numel, c.vocab);
    assert_int_equal(t->decay, 0);
    derf_gpt2_init(&m0, 3);
    derf_gpt2_init(&m1, 3);
    for (size_t i = 0; i < t->numel; i++) assert_true(m1.params.params[t->offset + i] == 0.0f);
    uint64_t s = 77;
    for (size_t i = 0; i < t->numel; i++) m1.params.params[t->offset + i] = (float)(tu_uniform(&s) - 0.5);
    int32_t tok[10];
    for (int i = 0; i < 10; i++) tok[i] = (int32_t)(tu_uniform(&s) * c.vocab);
    derf_gpt2_forward(&m0, tok, NULL, 2, 5);
    derf_gpt2_forward(&m1, tok, NULL, 2, 5);
    for (int r = 0; r < 10; r++)
        for (int v = 0; v < c.vocab; v++)
            assert_float_equal(m1.logits[r * c.vocab + v], m0.logits[r * c.vocab + v] + m1.params.params[t->offset + v], 1e-5);
    char keys[32][32], vals[32][128];
    int n = derf_gpt2_config_to_meta(&m1.cfg, keys, vals, 32), found = 0;
    for (int i = 0; i < n; i++) found |= !strcmp(keys[i], "logit_bias") && !strcmp(vals[i], "1");
    assert_true(found);
    n = derf_gpt2_config_to_meta(&m0.cfg, keys, vals, 32);
    for (int i = 0; i < n; i++) assert_string_not_equal(keys[i], "logit_bias"); /* old checkpoints unchanged */
    c.logit_bias = 2;
    assert_int_equal(derf_gpt2_check(&c, err, sizeof err), -1);
    derf_gpt2_free(&m0);
    derf_gpt2_free(&m1);
}

/* --------------------------------------------------------------------- PyTorch parity */

#define PAR_STEPS 10
#define PAR_LR 3e-3f

typedef struct {
    const char *norm;
    int bias, shared_scale;     /* shared_scale: -1 auto */
    int B, T, maxB, maxT;       /* the batch, and the arena it runs in */
    int V, C, L, NH;            /* 0: the test preset's */
} parity_case;

static void fill_ids(float *out, const int32_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (float)in[i];
}

/* Builds the case, runs forward + backward, then PAR_STEPS AdamW steps from the same parameters;
 * writes DIR/{params,grads,batch}.safetensors. */
static void write_case(const char *dir, const parity_case *pc, uint64_t *s) {
    derf_gpt2_config c = test_config(pc->norm, pc->bias);
    c.shared_scale = pc->shared_scale;
    if (pc->V) { c.vocab = pc->V; c.n_embd = pc->C; c.n_layer = pc->L; c.n_head = pc->NH; }
    derf_gpt2 m;
    char err[256];
    assert_int_equal(derf_gpt2_build(&m, &c, pc->maxB, pc->maxT, err, sizeof err), 0);
    randomize(&m, s, 0.2);
    const int B = pc->B, T = pc->T, V = c.vocab, n = B * T;
    int32_t *tok = malloc((size_t)(PAR_STEPS + 1) * n * sizeof *tok), *tgt = malloc((size_t)(PAR_STEPS + 1) * n * sizeof *tgt);
    float *tokf = malloc((size_t)(PAR_STEPS + 1) * n * sizeof *tokf), *tgtf = malloc((size_t)(PAR_STEPS + 1) * n * sizeof *tgtf);
    fill_batch(V, 2 * n, tok, tgt, 6, s);
    for (int k = 2; k <= PAR_STEPS; k++) {           /* every step trains on batch 1: the loss falls */
        memcpy(tok + (size_t)k * n, tok + n, (size_t)n * sizeof *tok);
        memcpy(tgt + (size_t)k * n, tgt + n, (size_t)n * sizeof *tgt);
    }
    fill_ids(tokf, tok, (size_t)(PAR_STEPS + 1) * n);
    fill_ids(tgtf, tgt, (size_t)(PAR_STEPS + 1) * n);

    float loss = derf_gpt2_forward(&m, tok, tgt, B, T);
    derf_params_zero_grad(&m.params);
    derf_gpt2_backward(&m, 1.0f);

    char keys[32][32], vals[32][128], path[600];
    int nk = derf_gpt2_config_to_meta(&m.cfg, keys, vals, 32);
    assert_true(nk > 0);
    assert_int_equal(parity_write_model(dir, &m.params, keys, vals, nk), 0);
    float *logits = malloc((size_t)n * V * sizeof *logits);
    memcpy(logits, m.logits, (size_t)n * V * sizeof *logits);

    /* AdamW: nanoGPT's betas, wd 0.1 on the decay tensors, clip 1.0; PAR_STEPS steps on batch 1 */
    const derf_adamw_cfg oc = {PAR_LR, 0.9f, 0.95f, 1e-8f, 0.1f};
    float sloss[PAR_STEPS], snorm[PAR_STEPS];
    for (int k = 0; k < PAR_STEPS; k++) {
        derf_params_zero_grad(&m.params);
        sloss[k] = derf_gpt2_forward(&m, tok + (size_t)(k + 1) * n, tgt + (size_t)(k + 1) * n, B, T);
        derf_gpt2_backward(&m, 1.0f);
        snorm[k] = derf_clip_grad_norm(&m.params, 1.0f);
        derf_adamw_step(&m.params, &oc, k + 1);
    }

    int64_t sh_bt[2] = {B, T}, sh_log[3] = {B, T, V}, sh_1[1] = {1}, sh_sbt[3] = {PAR_STEPS, B, T}, sh_s[1] = {PAR_STEPS};
    derf_st_tensor_in bt[8] = {{"tokens", 2, sh_bt, tokf}, {"targets", 2, sh_bt, tgtf},
                               {"logits", 3, sh_log, logits}, {"loss", 1, sh_1, &loss},
                               {"steps_tokens", 3, sh_sbt, tokf + n}, {"steps_targets", 3, sh_sbt, tgtf + n},
                               {"steps_loss", 1, sh_s, sloss}, {"steps_gnorm", 1, sh_s, snorm}};
    char lr[32];
    snprintf(lr, sizeof lr, "%.9g", (double)PAR_LR);
    const derf_st_meta bm[6] = {{"lr", lr}, {"beta1", "0.9"}, {"beta2", "0.95"}, {"eps", "1e-8"},
                                {"weight_decay", "0.1"}, {"clip", "1.0"}};
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    if (derf_safetensors_write(path, bt, 8, bm, 6, err, sizeof err)) fail_msg("%s", err);
    print_message("%-22s bias %d scale %d: loss %.5f; AdamW losses %.5f .. %.5f, grad norms %.3f .. %.3f\n",
                  pc->norm, pc->bias, m.cfg.shared_scale, (double)loss, (double)sloss[0],
                  (double)sloss[PAR_STEPS - 1], (double)snorm[0], (double)snorm[PAR_STEPS - 1]);
    free(tok); free(tgt); free(tokf); free(tgtf); free(logits);
    derf_gpt2_free(&m);
}

static void test_torch_parity(void **state) {
    (void)state;
    parity_require_torch();
    const parity_case cases[] = {
        /* the test preset (V 64, C 16, L 2, NH 2), a batch smaller than the arena */
        {"layernorm", 1, -1, 2, 7, 3, 8, 0, 0, 0, 0},
        {"derf", 1, -1, 2, 7, 3, 8, 0, 0, 0, 0},
        {"dyt", 1, -1, 2, 7, 3, 8, 0, 0, 0, 0},
        /* nanoGPT bias=False: no Linear biases; the LN baseline then has no bias either */
        {"layernorm:nobias", 0, -1, 2, 7, 2, 7, 0, 0, 0, 0},
        {"dyt", 0, -1, 2, 7, 2, 7, 0, 0, 0, 0},
        /* shared_scale off for derf / on for layernorm; per-channel shift; a larger shape at full context */
        {"derf", 1, 0, 2, 7, 2, 7, 0, 0, 0, 0},
        {"layernorm", 1, 1, 2, 7, 2, 7, 0, 0, 0, 0},
        {"erf:shift=channel:s=0.1", 1, -1, 2, 7, 2, 7, 0, 0, 0, 0},
        {"derf", 1, -1, 3, 16, 3, 16, 50, 24, 3, 3},
    };
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    char root[] = "/tmp/derf_gpt2_parity_XXXXXX";
    assert_non_null(mkdtemp(root));
    uint64_t s = g_seed ^ 0x5eedULL;
    for (int i = 0; i < nc; i++) {
        write_case(parity_case_dir(root, i), &cases[i], &s);
    }
    assert_int_equal(parity_run("tools/gpt2_torch_parity.py", root, nc), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_table),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_init_values),
        cmocka_unit_test(test_presets_and_checks),
        cmocka_unit_test(test_meta_roundtrip),
        cmocka_unit_test(test_forward_causal_and_batch_independent),
        cmocka_unit_test(test_ignored_targets),
        cmocka_unit_test(test_gradcheck_layernorm),
        cmocka_unit_test(test_gradcheck_derf),
        cmocka_unit_test(test_gradcheck_dyt_nobias),
        cmocka_unit_test(test_torch_parity),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
