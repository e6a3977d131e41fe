/* test_onnx.c: `derf export --onnx` checked by two independent consumers: Debian's python3-onnx checker
 * (tools/onnx_check.py: full check with shape inference) accepts every file, and ONNX Runtime (npm
 * onnxruntime-node through tools/onnx_run.js) runs it and gives the training model's logits (what
 * `derf eval` computes) to fp32 tolerance: a ViT on real Fashion-MNIST test images and a byte-level
 * GPT-2 on real English text, with Derf, DyT and LayerNorm, folded and not. Each consumer that is not
 * installed (make deps installs both) skips its part with a message saying so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>
#include "derf/augment.h"
#include "derf/data.h"
#include "derf/infer.h"
#include "derf/io.h"
#include "derf/train.h"

static char tmpdir[] = "/tmp/derf_test_onnx.XXXXXX";
#include "tmpfiles.h"

static const char *SPECS[] = {"derf", "dyt", "layernorm", "isru:shift=channel"};
#define NSPECS ((int)(sizeof SPECS / sizeof SPECS[0]))

static int have_ort(void) {
    const char *d = getenv("DERF_ORT_DIR");
    char p[600];
    snprintf(p, sizeof p, "%s/onnxruntime-node/package.json", d ? d : "/usr/local/share/derf/onnxruntime/node_modules");
    return access(p, R_OK) == 0 && system("node --version >/dev/null 2>&1") == 0;
}

static int have_checker(void) { return system("/usr/bin/python3 -c 'import onnx' >/dev/null 2>&1") == 0; }

static void save(derf_params *p, char keys[][32], char vals[][128], int n, const char *path) {
    derf_st_meta meta[48];
    char err[DERF_ERRLEN];
    for (int i = 0; i < n; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    derf_ckpt_slab slab = {"", p->params};
    assert_int_equal(derf_ckpt_save(path, p, &slab, 1, meta, n, err, sizeof err), 0);
}

/* Runs ONNX Runtime on onnx with one input; returns its output (n floats expected). */
static float *ort_run(const char *onnx, const char *in_name, const char *dtype, const char *dims, const void *in,
                      size_t in_bytes, size_t n) {
    write_raw(tp("in.bin"), in, in_bytes);
    unlink(tp("out.bin"));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "node tools/onnx_run.js %s %s %s %s %s %s", onnx, in_name, dtype, dims, tp("in.bin"), tp("out.bin"));
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "failed (%d): %s\n", rc, cmd);
    assert_int_equal(rc, 0);
    FILE *f = fopen(tp("out.bin"), "rb");
    assert_non_null(f);
    float *out = malloc(n * sizeof(float) + 4);
    size_t got = fread(out, sizeof(float), n + 1, f);
    fclose(f);
    assert_int_equal(got, n);
    return out;
}

static char files[32][512];
static int nfiles;

static void test_vit_onnx(void **state) {
    (void)state;
    const int ort = have_ort();
    if (!ort) fprintf(stderr, "test_onnx: ONNX Runtime (npm onnxruntime-node) is not installed: run 'make deps'; "
                              "only the export and the checker run\n");
    char err[DERF_ERRLEN];
    derf_dataset tr, te;
    if (derf_dataset_open(&tr, "fashion-mnist", "train", err, sizeof err) ||
        derf_dataset_open(&te, "fashion-mnist", "test", err, sizeof err)) {
        fprintf(stderr, "test_onnx: skipped, Fashion-MNIST is not installed (make deps): %s\n", err);
        skip();
    }
    enum { B = 8 };
    const derf_pixel_stats px = derf_pixel_stats_of(&tr);
    const int idx[B] = {0, 1, 2, 3, 4, 5, 6, 7};
    float img[B * 28 * 28];
    derf_batch_images(img, &te, idx, B, px);
    uint64_t s = tu_seed();
    for (int k = 0; k < NSPECS; k++)
        for (int fold = 0; fold < 2; fold++) {
            derf_vit_config c;
            derf_vit m;
            assert_int_equal(derf_vit_preset(&c, "tiny", err, sizeof err), 0);
            assert_int_equal(derf_norm_parse(SPECS[k], &c.norm, err, sizeof err), 0);
            c.pool = k % 2 ? DERF_POOL_CLS : DERF_POOL_AVG;
            assert_int_equal(derf_vit_build(&m, &c, B, err, sizeof err), 0);
            derf_vit_init(&m, s + k);
            tu_shake_norms(&m.params, &s);
            derf_vit_forward(&m, img, B, 0, NULL);
            float ref[B * 10];
            memcpy(ref, m.logits, sizeof ref);
            char keys[48][32], vals[48][128];
            save(&m.params, keys, vals, derf_vit_config_to_meta(&c, keys, vals, 48), tp("v.safetensors"));
            derf_vit_free(&m);
            derf_infer_vit *iv = derf_infer_vit_load(tp("v.safetensors"), 1, err, sizeof err);
            assert_non_null(iv);
            if (fold) derf_infer_vit_fold(iv);
            snprintf(files[nfiles], sizeof files[0], "%s/vit_%d_%d.onnx", tmpdir, k, fold);
            if (derf_onnx_export_vit(iv, files[nfiles], err, sizeof err)) fprintf(stderr, "%s\n", err);
            assert_true(access(files[nfiles], R_OK) == 0);
            derf_infer_vit_free(iv);
            if (ort) {
                float *o = ort_run(files[nfiles], "images", "float32", "8,1,28,28", img, sizeof img, B * 10);
                char what[128];
                snprintf(what, sizeof what, "ONNX Runtime ViT logits (%s, %s)", SPECS[k], fold ? "folded" : "unfolded");
                assert_true(tu_close_f(what, "ONNX Runtime", o, ref, B * 10, 1e-4, 1e-4));
                free(o);
            }
            nfiles++;
        }
    derf_dataset_free(&tr);
    derf_dataset_free(&te);
}

static void test_gpt2_onnx(void **state) {
    (void)state;
    const int ort = have_ort();
    char err[DERF_ERRLEN];
    /* real English text, one token per byte (the byte-level presets) */
    const char *text = "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money";
    enum { T = 64 };
    int32_t tok[T];
    int64_t tok64[T];
    for (int i = 0; i < T; i++) tok64[i] = tok[i] = (unsigned char)text[i];
    uint64_t s = tu_seed() + 3;
    for (int k = 0; k < NSPECS; k++)
        for (int fold = 0; fold < 2; fold++) {
            derf_gpt2_config c;
            derf_gpt2 m;
            assert_int_equal(derf_gpt2_preset(&c, "mini", err, sizeof err), 0);
            assert_int_equal(derf_norm_parse(SPECS[k], &c.norm, err, sizeof err), 0);
            c.bias = (k + fold) % 2;
            assert_int_equal(derf_gpt2_build(&m, &c, 1, T, err, sizeof err), 0);
            derf_gpt2_init(&m, s + k);
            tu_shake_norms(&m.params, &s);
            derf_gpt2_forward(&m, tok, NULL, 1, T);
            const size_t n = (size_t)T * c.vocab;
            float *ref = malloc(n * sizeof(float));
            memcpy(ref, m.logits, n * sizeof(float));
            char keys[48][32], vals[48][128];
            save(&m.params, keys, vals, derf_gpt2_config_to_meta(&m.cfg, keys, vals, 48), tp("g.safetensors"));
            derf_gpt2_free(&m);
            derf_infer_gpt2 *g = derf_infer_gpt2_load(tp("g.safetensors"), 1, 1, err, sizeof err);
            assert_non_null(g);
            if (fold) derf_infer_gpt2_fold(g);
            snprintf(files[nfiles], sizeof files[0], "%s/gpt2_%d_%d.onnx", tmpdir, k, fold);
            if (derf_onnx_export_gpt2(g, files[nfiles], err, sizeof err)) fprintf(stderr, "%s\n", err);
            assert_true(access(files[nfiles], R_OK) == 0);
            derf_infer_gpt2_free(g);
            if (ort) {
                float *o = ort_run(files[nfiles], "tokens", "int64", "1,64", tok64, sizeof tok64, n);
                char what[128];
                snprintf(what, sizeof what, "ONNX Runtime GPT-2 logits (%s, %s)", SPECS[k], fold ? "folded" : "unfolded");
                assert_true(tu_close_f(what, "ONNX Runtime", o, ref, n, 1e-4, 1e-4));
                free(o);
            }
            free(ref);
            nfiles++;
        }
}

/* Every file written above passes onnx.checker (full check). */
static void test_checker(void **state) {
    (void)state;
    if (!have_checker()) {
        fprintf(stderr, "test_onnx: skipped, Debian's python3-onnx is not installed (make deps)\n");
        skip();
    }
    assert_true(nfiles > 0);
    char cmd[16384];
    size_t len = (size_t)snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/onnx_check.py");
    for (int i = 0; i < nfiles; i++) len += (size_t)snprintf(cmd + len, sizeof cmd - len, " %s", files[i]);
    assert_int_equal(system(cmd), 0);
}

static void test_refusals(void **state) {
    (void)state;
    char err[DERF_ERRLEN], keys[48][32], vals[48][128];
    derf_vit_config c;
    derf_vit m;
    assert_int_equal(derf_vit_preset(&c, "test", err, sizeof err), 0);
    assert_int_equal(derf_norm_parse("erf+clip=0.6", &c.norm, err, sizeof err), 0);
    assert_int_equal(derf_vit_build(&m, &c, 1, err, sizeof err), 0);
    derf_vit_init(&m, 1);
    save(&m.params, keys, vals, derf_vit_config_to_meta(&c, keys, vals, 48), tp("clip.safetensors"));
    derf_vit_free(&m);
    derf_infer_vit *iv = derf_infer_vit_load(tp("clip.safetensors"), 1, err, sizeof err);
    assert_non_null(iv);
    assert_int_equal(derf_onnx_export_vit(iv, tp("clip.onnx"), err, sizeof err), -1);
    one_line(err);
    assert_true(access(tp("clip.onnx"), F_OK) != 0);   /* nothing half-written */
    derf_infer_vit_free(iv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vit_onnx), cmocka_unit_test(test_gpt2_onnx),
        cmocka_unit_test(test_checker), cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
