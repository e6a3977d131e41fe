/* test_infer.c: the inference path (src/infer) against the training models (src/models, themselves
 * checked against PyTorch): unfolded and folded forward passes for every point-wise norm of the
 * registry, LayerNorm and RMSNorm, in both models; folded checkpoints read back by the training ViT;
 * KV-cache logits at every position and KV-cache sampling against full recomputation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include <sys/wait.h>
#include "derf/data.h"
#include "derf/diffusion.h"
#include "derf/infer.h"
#include "derf/io.h"
#include "derf/lm.h"
#include "derf/train.h"

static char tmpdir[] = "/tmp/derf_test_infer.XXXXXX";
/* fp32 agreement of logits computed two ways (folding reorders the rounding) */
#define expect_close(what, spec, got, want, n) assert_true(tu_close_f(what, spec, got, want, n, 2e-5, 2e-4))
#include "tmpfiles.h"

/* Every norm spec the fold must keep exact: each registry function (defaults: scalar shift, affine),
 * and the variants whose parameter layouts differ. */
static int norm_specs(char specs[][64], int max) {
    int n = 0;
    for (int f = 0; f < DERF_FN_COUNT && n < max; f++) snprintf(specs[n++], 64, "%s", derf_fn_get(f)->name);
    const char *extra[] = {"derf", "dyt", "derf:shift=channel", "erf:nobias", "erf+clip=0.6", "layernorm",
                           "rmsnorm", "rmsnorm:bias", "layernorm:nobias"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0] && n < max; i++) snprintf(specs[n++], 64, "%s", extra[i]);
    return n;
}

static void save_vit(derf_vit *m, const char *path) {
    char keys[48][32], vals[48][128], err[DERF_ERRLEN];
    derf_st_meta meta[48];
    int n = derf_vit_config_to_meta(&m->cfg, keys, vals, 48);
    for (int i = 0; i < n; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    derf_ckpt_slab slab = {"", m->params.params};
    assert_int_equal(derf_ckpt_save(path, &m->params, &slab, 1, meta, n, err, sizeof err), 0);
}

static void test_fold_vit_family(void **state) {
    (void)state;
    char specs[48][64], err[DERF_ERRLEN];
    const int ns = norm_specs(specs, 48);
    uint64_t s = tu_seed();
    enum { B = 3 };
    for (int k = 0; k < ns; k++) {
        derf_vit_config c;
        derf_vit m;
        assert_int_equal(derf_vit_preset(&c, "test", err, sizeof err), 0);
        assert_int_equal(derf_norm_parse(specs[k], &c.norm, err, sizeof err), 0);
        c.pool = k % 2 ? DERF_POOL_CLS : DERF_POOL_AVG;
        assert_int_equal(derf_vit_build(&m, &c, B, err, sizeof err), 0);
        derf_vit_init(&m, s + k);
        tu_shake_norms(&m.params, &s);
        const size_t npix = (size_t)B * c.chans * c.img * c.img, nl = (size_t)B * c.classes;
        float *img = malloc(npix * sizeof(float)), ref[B * 5], unf[B * 5];
        tu_fill(img, npix, &s, -2, 2);
        derf_vit_forward(&m, img, B, 0, NULL);
        memcpy(ref, m.logits, nl * sizeof(float));
        save_vit(&m, tp("vit.safetensors"));
        derf_vit_free(&m);

        derf_infer_vit *iv = derf_infer_vit_load(tp("vit.safetensors"), B, err, sizeof err);
        assert_non_null(iv);
        assert_int_equal(derf_infer_vit_folded(iv), 0);
        memcpy(unf, derf_infer_vit_forward(iv, img, B), nl * sizeof(float));
        expect_close("ViT inference, unfolded", specs[k], unf, ref, nl);
        derf_infer_vit_fold(iv);
        assert_int_equal(derf_infer_vit_folded(iv), 1);
        assert_int_equal(derf_infer_vit_config(iv)->norm.affine, 0);
        expect_close("ViT inference, folded", specs[k], derf_infer_vit_forward(iv, img, B), ref, nl);
        /* the folded file: no gamma/beta, marked folded, read by the training model and by inference */
        assert_int_equal(derf_infer_vit_save(iv, tp("fold.safetensors"), err, sizeof err), 0);
        derf_infer_vit_free(iv);
        derf_safetensors st;
        assert_int_equal(derf_safetensors_read(&st, tp("fold.safetensors"), 1 << 26, err, sizeof err), 0);
        assert_null(derf_safetensors_find(&st, "blocks.0.norm1.weight"));
        assert_null(derf_safetensors_find(&st, "head.weight") ? NULL : "head.weight missing");
        assert_string_equal(derf_safetensors_meta(&st, "folded"), "1");
        derf_safetensors_free(&st);
        assert_int_equal(derf_vit_load(&m, tp("fold.safetensors"), B, err, sizeof err), 0);
        derf_vit_forward(&m, img, B, 0, NULL);
        expect_close("training ViT on the folded file", specs[k], m.logits, ref, nl);
        derf_vit_free(&m);
        iv = derf_infer_vit_load(tp("fold.safetensors"), 1, err, sizeof err);
        assert_non_null(iv);
        assert_int_equal(derf_infer_vit_folded(iv), 1);
        expect_close("ViT inference of the folded file, batch 1", specs[k], derf_infer_vit_forward(iv, img, 1), ref,
                     (size_t)c.classes);
        derf_infer_vit_free(iv);
        free(img);
    }
}

static void save_gpt2(derf_gpt2 *m, const char *path) {
    char keys[48][32], vals[48][128], err[DERF_ERRLEN];
    derf_st_meta meta[48];
    int n = derf_gpt2_config_to_meta(&m->cfg, keys, vals, 48);
    for (int i = 0; i < n; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    derf_ckpt_slab slab = {"", m->params.params};
    assert_int_equal(derf_ckpt_save(path, &m->params, &slab, 1, meta, n, err, sizeof err), 0);
}

/* The KV cache fed one token at a time gives the full forward's logits at every position. */
static void check_kv_positions(derf_infer_gpt2 *g, const int32_t *tok, const float *ref, int B, int T, int V,
                               const char *what, const char *spec) {
    char err[DERF_ERRLEN];
    derf_infer_gpt2_reset(g);
    float *got = malloc((size_t)B * V * sizeof(float)), *want = malloc((size_t)B * V * sizeof(float));
    int32_t col[8];
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) col[b] = tok[b * T + t];
        const float *lg = derf_infer_gpt2_step(g, col, B, 1, err, sizeof err);
        assert_non_null(lg);
        memcpy(got, lg, (size_t)B * V * sizeof(float));
        for (int b = 0; b < B; b++) memcpy(want + (size_t)b * V, ref + ((size_t)b * T + t) * V, (size_t)V * sizeof(float));
        expect_close(what, spec, got, want, (size_t)B * V);
    }
    assert_int_equal(derf_infer_gpt2_pos(g), T);
    free(got);
    free(want);
}

static void test_fold_gpt2_family(void **state) {
    (void)state;
    char specs[48][64], err[DERF_ERRLEN];
    const int ns = norm_specs(specs, 48);
    uint64_t s = tu_seed() + 77;
    enum { B = 2, T = 9 };
    for (int k = 0; k < ns; k++) {
        derf_gpt2_config c;
        derf_gpt2 m;
        assert_int_equal(derf_gpt2_preset(&c, "test", err, sizeof err), 0);
        assert_int_equal(derf_norm_parse(specs[k], &c.norm, err, sizeof err), 0);
        c.bias = k % 2;   /* without biases the fold creates them */
        assert_int_equal(derf_gpt2_build(&m, &c, B, T, err, sizeof err), 0);
        derf_gpt2_init(&m, s + k);
        tu_shake_norms(&m.params, &s);
        const derf_tensor *sc = derf_params_find(&m.params, "shared_scale");
        if (sc) m.params.params[sc->offset] = 1.5f + (float)tu_uniform(&s);
        const int V = c.vocab;
        int32_t tok[B * T];
        for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(tu_uniform(&s) * V);
        derf_gpt2_forward(&m, tok, NULL, B, T);
        float *ref = malloc((size_t)B * T * V * sizeof(float));
        memcpy(ref, m.logits, (size_t)B * T * V * sizeof(float));
        save_gpt2(&m, tp("gpt2.safetensors"));
        derf_gpt2_free(&m);

        derf_infer_gpt2 *g = derf_infer_gpt2_load(tp("gpt2.safetensors"), B, T, err, sizeof err);
        assert_non_null(g);
        check_kv_positions(g, tok, ref, B, T, V, "GPT-2 KV cache, unfolded", specs[k]);
        derf_infer_gpt2_fold(g);
        check_kv_positions(g, tok, ref, B, T, V, "GPT-2 KV cache, folded", specs[k]);
        /* the whole prompt at once (prefill): the last position */
        derf_infer_gpt2_reset(g);
        const float *lg = derf_infer_gpt2_step(g, tok, B, T, err, sizeof err);
        assert_non_null(lg);
        for (int b = 0; b < B; b++)
            expect_close("GPT-2 prefill, folded", specs[k], lg + (size_t)b * V, ref + ((size_t)b * T + T - 1) * V, (size_t)V);
        assert_int_equal(derf_infer_gpt2_save(g, tp("gfold.safetensors"), err, sizeof err), 0);
        derf_infer_gpt2_free(g);
        /* the folded file: untied head, no gamma/beta, no shared_scale; inference reads it, training refuses it */
        derf_safetensors st;
        assert_int_equal(derf_safetensors_read(&st, tp("gfold.safetensors"), 1 << 26, err, sizeof err), 0);
        assert_non_null(derf_safetensors_find(&st, "lm_head.weight"));
        assert_non_null(derf_safetensors_find(&st, "h.0.attn.c_attn.bias"));
        assert_null(derf_safetensors_find(&st, "ln_f.weight"));
        assert_null(derf_safetensors_find(&st, "shared_scale"));
        derf_safetensors_free(&st);
        assert_int_equal(derf_lm_load(&m, tp("gfold.safetensors"), 1, 0, NULL, err, sizeof err), -1);
        assert_non_null(strstr(err, "folded"));
        g = derf_infer_gpt2_load(tp("gfold.safetensors"), B, T, err, sizeof err);
        assert_non_null(g);
        assert_int_equal(derf_infer_gpt2_folded(g), 1);
        check_kv_positions(g, tok, ref, B, T, V, "GPT-2 folded file", specs[k]);
        derf_infer_gpt2_free(g);
        free(ref);
    }
}

/* KV-cache sampling gives the tokens of full recomputation (derf_lm_sample on the training model),
 * also past block_size where the window slides, greedy and random, unfolded and folded. */
static void test_kv_sampling_matches_full(void **state) {
    (void)state;
    derf_gpt2_config c;
    derf_gpt2 m;
    char err[DERF_ERRLEN];
    uint64_t s = tu_seed() + 5;
    assert_int_equal(derf_gpt2_preset(&c, "test", err, sizeof err), 0);
    assert_int_equal(derf_gpt2_build(&m, &c, 1, c.block_size, err, sizeof err), 0);
    derf_gpt2_init(&m, s);
    tu_shake_norms(&m.params, &s);
    for (size_t i = 0; i < m.params.total; i++) m.params.params[i] *= 3.0f; /* sharper logits */
    save_gpt2(&m, tp("s.safetensors"));
    const int32_t prompt[5] = {3, 14, 15, 9, 26};
    enum { L = 40 };   /* 5 + 40 > block_size 16: the window slides */
    const derf_lm_sample_opts opts[3] = {{1.0f, 0, 1.0f, 11, 0}, {0.0f, 0, 1.0f, 0, 0}, {0.8f, 20, 0.9f, 4, 50}};
    for (int fold = 0; fold < 2; fold++) {
        derf_infer_gpt2 *g = derf_infer_gpt2_load(tp("s.safetensors"), 1, 0, err, sizeof err);
        assert_non_null(g);
        if (fold) derf_infer_gpt2_fold(g);
        for (int o = 0; o < 3; o++) {
            int32_t full[L], kv[L];
            assert_int_equal(derf_lm_sample(&m, prompt, 5, L, &opts[o], full, err, sizeof err), 0);
            assert_int_equal(derf_infer_gpt2_sample(g, prompt, 5, L, &opts[o], kv, err, sizeof err), 0);
            assert_memory_equal(full, kv, sizeof full);
        }
        /* a prompt longer than the context */
        int32_t longp[20], full[4], kv[4];
        for (int i = 0; i < 20; i++) longp[i] = (i * 7) % c.vocab;
        assert_int_equal(derf_lm_sample(&m, longp, 20, 4, &opts[0], full, err, sizeof err), 0);
        assert_int_equal(derf_infer_gpt2_sample(g, longp, 20, 4, &opts[0], kv, err, sizeof err), 0);
        assert_memory_equal(full, kv, sizeof full);
        derf_infer_gpt2_free(g);
    }
    derf_gpt2_free(&m);
}

/* Prompts longer than one attention chunk (64 queries), in one step and in two (the second attending
 * to cached positions): the last position's logits equal the full forward's. */
static void test_long_prefill(void **state) {
    (void)state;
    derf_gpt2_config c;
    derf_gpt2 m;
    char err[DERF_ERRLEN];
    uint64_t s = tu_seed() + 21;
    enum { T = 100 };
    assert_int_equal(derf_gpt2_preset(&c, "mini", err, sizeof err), 0);
    assert_int_equal(derf_gpt2_build(&m, &c, 1, T, err, sizeof err), 0);
    derf_gpt2_init(&m, s);
    tu_shake_norms(&m.params, &s);
    int32_t tok[T];
    for (int i = 0; i < T; i++) tok[i] = (int32_t)(tu_uniform(&s) * c.vocab);
    const int V = c.vocab;
    float *ref = malloc((size_t)T * V * sizeof(float));
    derf_gpt2_forward(&m, tok, NULL, 1, T);
    memcpy(ref, m.logits, (size_t)T * V * sizeof(float));
    save_gpt2(&m, tp("long.safetensors"));
    derf_gpt2_free(&m);
    derf_infer_gpt2 *g = derf_infer_gpt2_load(tp("long.safetensors"), 1, 0, err, sizeof err);
    assert_non_null(g);
    const float *lg = derf_infer_gpt2_step(g, tok, 1, T, err, sizeof err);
    assert_non_null(lg);
    expect_close("GPT-2 prefill of 100 tokens", "derf", lg, ref + (size_t)(T - 1) * V, (size_t)V);
    derf_infer_gpt2_reset(g);
    assert_non_null(derf_infer_gpt2_step(g, tok, 1, 70, err, sizeof err));
    assert_non_null(lg = derf_infer_gpt2_step(g, tok + 70, 1, T - 70, err, sizeof err));
    expect_close("GPT-2 prefill of 70 + 30 tokens", "derf", lg, ref + (size_t)(T - 1) * V, (size_t)V);
    derf_infer_gpt2_free(g);
    free(ref);
}

static void test_bad_inputs(void **state) {
    (void)state;
    char err[DERF_ERRLEN];
    derf_gpt2_config c;
    derf_gpt2 m;
    assert_int_equal(derf_gpt2_preset(&c, "test", err, sizeof err), 0);
    assert_int_equal(derf_gpt2_build(&m, &c, 1, 4, err, sizeof err), 0);
    derf_gpt2_init(&m, 1);
    save_gpt2(&m, tp("b.safetensors"));
    derf_gpt2_free(&m);
    derf_infer_gpt2 *g = derf_infer_gpt2_load(tp("b.safetensors"), 2, 4, err, sizeof err);
    assert_non_null(g);
    const int32_t t5[5] = {1, 2, 3, 4, 5}, bad[1] = {64};
    assert_null(derf_infer_gpt2_step(g, t5, 1, 5, err, sizeof err));   /* longer than the context */
    one_line(err);
    assert_null(derf_infer_gpt2_step(g, bad, 1, 1, err, sizeof err));  /* outside the vocabulary */
    assert_non_null(strstr(err, "vocabulary"));
    assert_null(derf_infer_gpt2_step(g, t5, 3, 1, err, sizeof err));   /* more sequences than loaded for */
    one_line(err);
    assert_non_null(derf_infer_gpt2_step(g, t5, 1, 4, err, sizeof err));
    assert_null(derf_infer_gpt2_step(g, t5, 1, 1, err, sizeof err));   /* the cache is full */
    derf_infer_gpt2_free(g);
    assert_null(derf_infer_gpt2_load(tp("b.safetensors"), 1, 17, err, sizeof err));
    assert_non_null(strstr(err, "block_size"));
    assert_null(derf_infer_vit_load(tp("b.safetensors"), 1, err, sizeof err));   /* not a ViT */
    one_line(err);
    assert_null(derf_infer_gpt2_load(tp("missing.safetensors"), 1, 0, err, sizeof err));
    one_line(err);
}

/* Image files: a real PNG (stb_image_write through derf_png_grid: a 24x24 picture in a 2-pixel white
 * border = 28x28) decodes to the training normalization of the same pixels; size and format errors. */
static void test_image_files(void **state) {
    (void)state;
    char err[DERF_ERRLEN];
    uint8_t pic[24 * 24], full[28 * 28];
    uint64_t s = tu_seed();
    for (int i = 0; i < 24 * 24; i++) pic[i] = (uint8_t)(tu_uniform(&s) * 256);
    memset(full, 255, sizeof full);
    for (int y = 0; y < 24; y++) memcpy(full + (y + 2) * 28 + 2, pic + y * 24, 24);
    assert_int_equal(derf_png_grid(tp("a.png"), pic, 1, 24, 24, 1, err, sizeof err), 0);
    const float mean = 0.286f, std = 0.353f, scale = 1.f / (255.f * std), off = mean / std;
    float x[28 * 28];
    assert_int_equal(derf_image_load(tp("a.png"), 28, 1, mean, std, 0, x, err, sizeof err), 0);
    for (int i = 0; i < 28 * 28; i++) assert_true(x[i] == full[i] * scale - off);
    assert_int_equal(derf_image_load(tp("a.png"), 28, 1, mean, std, 1, x, err, sizeof err), 0);
    for (int i = 0; i < 28 * 28; i++) assert_true(x[i] == (255 - full[i]) * scale - off);
    float x3[3 * 28 * 28];   /* a grey file read as RGB: three equal planes */
    assert_int_equal(derf_image_load(tp("a.png"), 28, 3, mean, std, 0, x3, err, sizeof err), 0);
    for (int i = 0; i < 28 * 28; i++) assert_true(x3[2 * 28 * 28 + i] == full[i] * scale - off);
    /* wrong size, not an image, missing */
    assert_int_equal(derf_png_grid(tp("b.png"), pic, 2, 24, 24, 2, err, sizeof err), 0);
    assert_int_equal(derf_image_load(tp("b.png"), 28, 1, mean, std, 0, x, err, sizeof err), -1);
    assert_non_null(strstr(err, "54x28"));
    one_line(err);
    write_raw(tp("c.png"), "not a png at all", 16);
    assert_int_equal(derf_image_load(tp("c.png"), 28, 1, mean, std, 0, x, err, sizeof err), -1);
    one_line(err);
    assert_int_equal(derf_image_load(tp("none.png"), 28, 1, mean, std, 0, x, err, sizeof err), -1);
    one_line(err);
}

/* `./derf ARGS` with stdout to out and stderr to err (capture files in the test folder); the exit status. */
static int derf_cmd(const char *args, char *out, size_t outlen, char *err, size_t errlen) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "./derf %s >%s 2>%s", args, tp("cmd.out"), tp("cmd.err"));
    int st = system(cmd);
    char *dst[2] = {out, err};
    size_t len[2] = {outlen, errlen};
    const char *src[2] = {tp("cmd.out"), tp("cmd.err")};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(src[i], "r");
        size_t n = f ? fread(dst[i], 1, len[i] - 1, f) : 0;
        dst[i][n] = 0;
        if (f) fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void one_error_line(const char *err, const char *needle) {
    int nl = 0;
    for (const char *p = err; *p; p++) nl += *p == '\n';
    if (nl != 1 || !strstr(err, needle)) fprintf(stderr, "stderr [%s], wanted one line with '%s'\n", err, needle);
    assert_int_equal(nl, 1);
    assert_non_null(strstr(err, needle));
}

/* The commands: export --fold, eval of both files, classify of a PNG, and their refusals. */
static void test_commands(void **state) {
    (void)state;
    char err[DERF_ERRLEN], out[4096], out2[4096], args[1024], keys[48][32], vals[48][128];
    derf_vit_config c;
    derf_vit m;
    uint64_t s = tu_seed() + 9;
    assert_int_equal(derf_vit_preset(&c, "tiny", err, sizeof err), 0);
    assert_int_equal(derf_vit_build(&m, &c, 1, err, sizeof err), 0);
    derf_vit_init(&m, s);
    tu_shake_norms(&m.params, &s);
    derf_st_meta meta[48];
    int n = derf_vit_config_to_meta(&c, keys, vals, 48);
    for (int i = 0; i < n; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    derf_ckpt_slab slab = {"", m.params.params};
    assert_int_equal(derf_ckpt_save(tp("v.safetensors"), &m.params, &slab, 1, meta, n, err, sizeof err), 0);
    derf_vit_free(&m);
    snprintf(args, sizeof args, "export --fold %s %s", tp("v.safetensors"), tp("f.safetensors"));
    assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 0);
    assert_non_null(strstr(out, "folded ViT"));
    /* classify: the same top classes and probabilities from the trained and the folded file */
    uint8_t pic[24 * 24];
    for (int i = 0; i < 24 * 24; i++) pic[i] = (uint8_t)(tu_uniform(&s) * 256);
    assert_int_equal(derf_png_grid(tp("a.png"), pic, 1, 24, 24, 1, err, sizeof err), 0);
    snprintf(args, sizeof args, "classify %s %s %s --pixel-mean 0.286 --pixel-std 0.353 --top 3", tp("v.safetensors"),
             tp("a.png"), tp("a.png"));
    assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 0);
    assert_non_null(strstr(out, "class "));
    snprintf(args, sizeof args, "classify %s %s %s --pixel-mean 0.286 --pixel-std 0.353 --top 3 --batch 1", tp("f.safetensors"),
             tp("a.png"), tp("a.png"));
    assert_int_equal(derf_cmd(args, out2, sizeof out2, err, sizeof err), 0);
    assert_string_equal(out, out2);
    /* eval reads the folded file: the same accuracy and loss (when the data is installed) */
    derf_dataset te;
    if (derf_dataset_open(&te, "fashion-mnist", "test", err, sizeof err) == 0) {
        derf_dataset_free(&te);
        snprintf(args, sizeof args, "eval %s --test-limit 300", tp("v.safetensors"));
        assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 0);
        snprintf(args, sizeof args, "eval %s --test-limit 300", tp("f.safetensors"));
        assert_int_equal(derf_cmd(args, out2, sizeof out2, err, sizeof err), 0);
        assert_non_null(strstr(out, "test acc"));
        assert_string_equal(strstr(out, "test acc"), strstr(out2, "test acc"));
    } else {
        fprintf(stderr, "test_commands: Fashion-MNIST is not installed (make deps): derf eval part skipped\n");
    }
    /* refusals: one line each, non-zero exit */
    snprintf(args, sizeof args, "export %s %s", tp("v.safetensors"), tp("g.safetensors"));
    assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 2);
    one_error_line(err, "--fold");
    snprintf(args, sizeof args, "export --fold %s", tp("nothing.safetensors"));
    assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 2);
    one_error_line(err, "output");
    snprintf(args, sizeof args, "export --fold %s %s", tp("nothing.safetensors"), tp("g.safetensors"));
    assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 2);
    one_error_line(err, "nothing.safetensors");
    assert_int_equal(derf_png_grid(tp("b.png"), pic, 2, 24, 24, 2, err, sizeof err), 0);
    snprintf(args, sizeof args, "classify %s %s --pixel-mean 0.3 --pixel-std 0.3", tp("v.safetensors"), tp("b.png"));
    assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 2);
    one_error_line(err, "28x28");
    snprintf(args, sizeof args, "classify %s --pixel-mean 0.3 --pixel-std 0.3", tp("v.safetensors"));
    assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 2);
    one_error_line(err, "image");
    snprintf(args, sizeof args, "classify %s %s --pixel-mean 0.3", tp("v.safetensors"), tp("a.png"));
    assert_int_equal(derf_cmd(args, out, sizeof out, err, sizeof err), 2);
    one_error_line(err, "--pixel-std");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_vit_family), cmocka_unit_test(test_fold_gpt2_family),
        cmocka_unit_test(test_kv_sampling_matches_full), cmocka_unit_test(test_long_prefill), cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_image_files), cmocka_unit_test(test_commands),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
