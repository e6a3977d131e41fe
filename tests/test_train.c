/* test_train.c: the training machinery: LR schedule and EMA against closed forms, augmentation
 * invariants, exact resume (N steps straight == N/2, stop, resume, N/2: loss for loss and weight for
 * weight), determinism, and divergence handling. Uses a small slice of real Fashion-MNIST.
 * The trainer's device plumbing (--device cuda): this file defines derf_vit_cuda_attach (the CPU
 * build's is weak) to attach a stand-in device that keeps its own copy of the weights, moments and EMA
 * and runs the CPU model on it; a run through it must equal the plain CPU run bit for bit, and
 * checkpoints must move between the two (what the GPU runs rely on, checked here without a GPU). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "derf/io.h"
#include "derf/train.h"
#include "testutil.h"

static void test_schedule(void **state) {
    (void)state;
    /* warmup: linear to the peak */
    assert_float_equal(derf_lr_at(0, 10, 110, 1.0f, 0.0f), 0.1, 1e-6);
    assert_float_equal(derf_lr_at(9, 10, 110, 1.0f, 0.0f), 1.0, 1e-6);
    /* cosine: peak right after warmup, midpoint (lr + min)/2, min at the end */
    assert_float_equal(derf_lr_at(10, 10, 110, 1.0f, 0.1f), 1.0, 1e-6);
    assert_float_equal(derf_lr_at(60, 10, 110, 1.0f, 0.1f), 0.55, 1e-6);
    assert_float_equal(derf_lr_at(110, 10, 110, 1.0f, 0.1f), 0.1, 1e-6);
    assert_float_equal(derf_lr_at(35, 10, 110, 2.0f, 0.0f), 2.0 * 0.5 * (1 + cos(M_PI * 0.25)), 1e-5);
}

static void test_ema(void **state) {
    (void)state;
    float e[3] = {1, 2, 3}, p[3] = {0, 0, 6};
    for (int i = 0; i < 4; i++) derf_ema_update(e, p, 3, 0.5f);
    /* e_k = d^k e_0 + (1 - d^k) p */
    assert_float_equal(e[0], 1.0 / 16, 1e-7);
    assert_float_equal(e[1], 2.0 / 16, 1e-7);
    assert_float_equal(e[2], 3.0 / 16 + 6 * 15.0 / 16, 1e-6);
}

static derf_dataset small_data(void) {
    derf_dataset ds;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_dataset_load(&ds, DERF_FASHION_MNIST_DIR, "test", err, sizeof err), 0);
    return ds;
}

static void test_augment(void **state) {
    (void)state;
    derf_dataset ds = small_data();
    derf_pixel_stats st = derf_pixel_stats_of(&ds);
    int idx[6] = {0, 1, 2, 3, 4, 5}, V = 10, HW = 28 * 28;
    float img[6 * 784], ref[6 * 784], q[60];
    derf_rng r;
    derf_rng_seed(&r, 7, 1);
    /* no augmentation: plain normalization and smoothed one-hot targets */
    derf_aug_cfg none = {0};
    none.smoothing = 0.1f;
    float lam = derf_aug_batch(img, q, &none, &ds, idx, 6, V, st, &r);
    assert_float_equal(lam, 1.0, 0);
    for (int b = 0; b < 6; b++)
        for (int i = 0; i < HW; i++)
            assert_float_equal(img[b * HW + i], (ds.images[b * HW + i] / 255.0 - st.mean) / st.std, 1e-5);
    for (int b = 0; b < 6; b++)
        for (int v = 0; v < V; v++)
            assert_float_equal(q[b * V + v], v == ds.labels[b] ? 0.91 : 0.01, 1e-6);
    derf_batch_images(ref, &ds, idx, 6, st);
    /* mixup: image b = lam x_b + (1 - lam) x_{B-1-b}, targets sum to 1 with weight lam on b's label */
    derf_aug_cfg mix = {0};
    mix.mixup_alpha = 0.8f;
    mix.mix_prob = 1.f;
    lam = derf_aug_batch(img, q, &mix, &ds, idx, 6, V, st, &r);
    assert_true(lam >= 0 && lam <= 1);
    for (int b = 0; b < 6; b++) {
        double s = 0;
        for (int v = 0; v < V; v++) s += q[b * V + v];
        assert_float_equal(s, 1.0, 1e-5);
        for (int i = 0; i < HW; i += 37)
            assert_float_equal(img[b * HW + i], lam * ref[b * HW + i] + (1 - lam) * ref[(5 - b) * HW + i], 1e-4);
    }
    /* cutmix: the fraction of pixels taken from the partner equals 1 - lambda */
    derf_aug_cfg cut = {0};
    cut.cutmix_alpha = 1.f;
    cut.mix_prob = 1.f;
    for (int trial = 0; trial < 5; trial++) {
        lam = derf_aug_batch(img, q, &cut, &ds, idx, 6, V, st, &r);
        int from_mate = 0, differ = 0;
        for (int i = 0; i < HW; i++) {
            if (ref[i] != ref[5 * HW + i]) differ++;
            if (img[i] == ref[5 * HW + i] && ref[i] != ref[5 * HW + i]) from_mate++;
        }
        /* every pixel in the box comes from the mate; the box is lam's complement of the image */
        assert_true(from_mate <= (int)lroundf((1 - lam) * HW));
        assert_float_equal(q[ds.labels[0]] + (ds.labels[0] == ds.labels[5] ? 0 : q[ds.labels[5]]), 1.0, 1e-5);
    }
    /* translation keeps the image inside the frame: a shift moves the pixel mass around but each
     * output pixel is either a source pixel or background */
    derf_aug_cfg tr = {0};
    tr.translate = 3;
    derf_aug_batch(img, q, &tr, &ds, idx, 6, V, st, &r);
    float bg = -st.mean / st.std;
    for (int i = 0; i < HW; i++) {
        int found = img[i] == bg;
        for (int j = 0; j < HW && !found; j++) found = img[i] == ref[j];
        assert_true(found);
    }
    /* beta sampler: mean a / (a + b) */
    double m = 0;
    for (int i = 0; i < 20000; i++) m += derf_rng_beta(&r, 2.f, 6.f);
    assert_float_equal(m / 20000, 0.25, 0.01);
    derf_dataset_free(&ds);
}

static void opts_small(derf_cls_opts *o, const char *out, const char *norm) {
    derf_cls_opts_default(o);
    char err[DERF_ERRLEN];
    assert_int_equal(derf_norm_parse(norm, &o->model.norm, err, sizeof err), 0);
    o->model.dim = 16;
    o->model.depth = 2;
    o->model.heads = 2;
    o->model.patch = 7;
    o->model.drop_path = 0.1f;
    o->train_limit = 256;
    o->test_limit = 64;
    o->batch = 32;
    o->epochs = 2;
    o->aug.mixup_alpha = 0.8f;
    o->aug.cutmix_alpha = 1.0f;
    o->aug.erase_prob = 0.25f;
    o->eval_train_loss = 0;
    o->log_every = 1;
    o->quiet = 1;
    o->out = out;
}

/* The "train" records' losses of a log, in order. */
static int read_losses(const char *dir, double *loss, int max) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        const char *p = strstr(line, "\"type\":\"train\"");
        if (!p) continue;
        p = strstr(line, "\"loss\":");
        loss[n++] = strtod(p + 7, NULL);
    }
    fclose(f);
    return n;
}

/* DIR_A/name and DIR_B/name hold the same tensors, bit for bit */
static void same_tensors(const char *a, const char *b, const char *name) {
    char pa[600], pb[600], err[DERF_ERRLEN];
    snprintf(pa, sizeof pa, "%s/%s", a, name);
    snprintf(pb, sizeof pb, "%s/%s", b, name);
    derf_safetensors sa, sb;
    assert_int_equal(derf_safetensors_read(&sa, pa, 1 << 28, err, sizeof err), 0);
    assert_int_equal(derf_safetensors_read(&sb, pb, 1 << 28, err, sizeof err), 0);
    assert_int_equal(sa.ntensors, sb.ntensors);
    assert_int_equal(sa.data_len, sb.data_len);
    assert_memory_equal(sa.data, sb.data, sa.data_len);
    derf_safetensors_free(&sa);
    derf_safetensors_free(&sb);
}

static void test_resume_exact(void **state) {
    (void)state;
    char a[] = "/tmp/derf-resume-XXXXXX", b[] = "/tmp/derf-resume-XXXXXX";
    assert_non_null(mkdtemp(a));
    assert_non_null(mkdtemp(b));
    derf_cls_opts o;
    derf_cls_result r;
    char err[DERF_ERRLEN];
    /* 12 steps straight (epoch boundary at 8 inside) */
    opts_small(&o, a, "derf");
    o.max_steps = 12;
    o.diag_every = 5; /* diagnostics at steps 0, 5, 10: they must not change a single loss (compared below) */
    assert_int_equal(derf_cls_train(&o, &r, err, sizeof err), 0);
    assert_int_equal(r.steps, 12);
    assert_int_equal(tu_count_in_file(tu_path(a, "log.jsonl"), "\"type\":\"diag\""), 3);
    assert_int_equal(tu_count_in_file(tu_path(a, "log.jsonl"), "{\"name\":\"blocks.1.norm2\",\"sat\":"), 3);
    /* 6 steps, stop, resume to 12 */
    opts_small(&o, b, "derf");
    o.max_steps = 6;
    assert_int_equal(derf_cls_train(&o, &r, err, sizeof err), 0);
    opts_small(&o, b, "derf");
    o.max_steps = 12;
    o.resume = b;
    assert_int_equal(derf_cls_train(&o, &r, err, sizeof err), 0);
    assert_int_equal(r.steps, 12);
    double la[64], lb[64];
    int na = read_losses(a, la, 64), nb = read_losses(b, lb, 64);
    assert_int_equal(na, 12);
    assert_int_equal(nb, 12);
    for (int i = 0; i < 12; i++) {
        if (la[i] != lb[i]) fprintf(stderr, "step %d: %.9g vs %.9g\n", i + 1, la[i], lb[i]);
        assert_true(la[i] == lb[i]);
    }
    /* and the final weights are bit-identical */
    same_tensors(a, b, "state.safetensors");
}

static void test_divergence(void **state) {
    (void)state;
    char d[] = "/tmp/derf-div-XXXXXX";
    assert_non_null(mkdtemp(d));
    derf_cls_opts o;
    derf_cls_result r;
    char err[DERF_ERRLEN], path[600];
    opts_small(&o, d, "linear:noshift"); /* unbounded: the paper's diverging case, pushed by a huge lr */
    o.lr = 1e4f;
    o.warmup_epochs = 0;
    o.aug.mixup_alpha = o.aug.cutmix_alpha = 0;
    assert_int_equal(derf_cls_train(&o, &r, err, sizeof err), 0);
    assert_int_equal(r.diverged, 1);
    assert_non_null(strstr(r.diverged_msg, "diverged"));
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    assert_int_equal(access(path, F_OK), -1); /* no checkpoint of a diverged run */
}

static void test_bad_inputs(void **state) {
    (void)state;
    derf_cls_opts o;
    derf_cls_result r;
    char err[DERF_ERRLEN];
    opts_small(&o, NULL, "derf");
    o.data = "/nonexistent-dir-for-derf";
    assert_int_equal(derf_cls_train(&o, &r, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    opts_small(&o, NULL, "derf");
    o.model.heads = 3; /* 16 % 3 != 0 */
    assert_int_equal(derf_cls_train(&o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "head"));
    opts_small(&o, NULL, "derf");
    o.resume = "/nonexistent-run";
    assert_int_equal(derf_cls_train(&o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-run"));
}

/* ---- the stand-in device ------------------------------------------------------------------------ */
typedef struct {
    derf_vit *host;
    derf_vit dev;          /* the "device": its own slabs (params, grads, m, v) and activations */
    float *ema_host, *ema; /* the trainer's EMA slab and the device's copy */
} mock_dev;
static int g_mock_forwards, g_mock_steps;

static mock_dev *md(void *c) { return c; }
static void mock_forward(void *c, const float *img, int B, int train, derf_rng *rng) {
    mock_dev *d = md(c);
    derf_vit_forward(&d->dev, img, B, train, rng);
    memcpy(d->host->logits, d->dev.logits, sizeof(float) * (size_t)B * d->host->cfg.classes);
    memcpy(d->host->features, d->dev.features, sizeof(float) * (size_t)B * d->host->cfg.dim);
    g_mock_forwards++;
}
static void mock_backward(void *c, const float *dl, int B) { derf_vit_backward(&md(c)->dev, dl, B); }
static void mock_zero_grad(void *c) { derf_params_zero_grad(&md(c)->dev.params); }
static float mock_clip(void *c, float mx) { return derf_clip_grad_norm(&md(c)->dev.params, mx); }
static void mock_adamw(void *c, const derf_adamw_cfg *cfg, int step) {
    derf_adamw_step(&md(c)->dev.params, cfg, step);
    g_mock_steps++;
}
static void mock_ema_update(void *c, float decay) {
    mock_dev *d = md(c);
    if (d->ema) derf_ema_update(d->ema, d->dev.params.params, d->dev.params.total, decay);
}
static void mock_swap_ema(void *c) {
    mock_dev *d = md(c);
    if (d->ema) derf_vit_swap_ema(&d->dev, &d->ema);
}
/* moves params, grads, m, v (and the EMA) from one model's slabs to the other's */
static void mock_copy(derf_params *to, const derf_params *from, float *ema_to, const float *ema_from) {
    const size_t b = from->total * sizeof(float);
    memcpy(to->params, from->params, b);
    memcpy(to->grads, from->grads, b);
    memcpy(to->m, from->m, b);
    memcpy(to->v, from->v, b);
    if (ema_to) memcpy(ema_to, ema_from, b);
}
static void mock_to_host(void *c) { mock_copy(&md(c)->host->params, &md(c)->dev.params, md(c)->ema_host, md(c)->ema); }
static void mock_to_device(void *c) { mock_copy(&md(c)->dev.params, &md(c)->host->params, md(c)->ema, md(c)->ema_host); }
static void mock_free(void *c) {
    mock_dev *d = md(c);
    derf_vit_dev *h = d->host->dev;
    d->host->dev = NULL;
    derf_vit_free(&d->dev);
    free(d->ema);
    free(h);
    free(d);
}

int derf_vit_cuda_attach(derf_vit *m, int bf16, float *ema, char *err, size_t errlen) {
    (void)bf16;
    if (!m) return 0;
    mock_dev *d = calloc(1, sizeof *d);
    derf_vit_dev *h = calloc(1, sizeof *h);
    assert_int_equal(derf_vit_build(&d->dev, &m->cfg, m->max_batch, err, errlen), 0);
    d->dev.shard_total = m->shard_total;
    d->dev.shard_off = m->shard_off;
    d->host = m;
    d->ema_host = ema;
    if (ema) d->ema = malloc(m->params.total * sizeof(float));
    /* the host slabs are scribbled over after the upload: anything the trainer reads from them without a
     * download (or writes without an upload) shows as a difference from the CPU run */
    *h = (derf_vit_dev){d, mock_forward, mock_backward, mock_zero_grad, mock_clip, mock_adamw, mock_ema_update,
                        mock_swap_ema, mock_to_host, mock_to_device, mock_free};
    m->dev = h;
    derf_vit_sync_device(m);
    for (size_t i = 0; i < m->params.total; i++) m->params.params[i] = m->params.m[i] = m->params.v[i] = NAN;
    if (ema) for (size_t i = 0; i < m->params.total; i++) ema[i] = NAN;
    return 0;
}

/* --device cuda through the stand-in device == the CPU run, bit for bit (losses, results, checkpoints),
 * and a run moves between the devices through its checkpoint in both directions */
static void test_device_plumbing(void **state) {
    (void)state;
    char a[] = "/tmp/derf-dev-XXXXXX", b[] = "/tmp/derf-dev-XXXXXX", c[] = "/tmp/derf-dev-XXXXXX";
    assert_non_null(mkdtemp(a));
    assert_non_null(mkdtemp(b));
    assert_non_null(mkdtemp(c));
    derf_cls_opts o;
    derf_cls_result ra, rb, rc;
    char err[DERF_ERRLEN];
    opts_small(&o, a, "derf");
    o.max_steps = 12; /* an epoch boundary (evaluation with raw and EMA weights) at 8 */
    assert_int_equal(derf_cls_train(&o, &ra, err, sizeof err), 0);
    g_mock_forwards = g_mock_steps = 0;
    opts_small(&o, b, "derf");
    o.max_steps = 12;
    o.device = "cuda";
    assert_int_equal(derf_cls_train(&o, &rb, err, sizeof err), 0);
    assert_int_equal(g_mock_steps, 12);
    assert_true(g_mock_forwards > 12); /* the training steps and the evaluations */
    assert_true(ra.test_loss == rb.test_loss && ra.test_acc == rb.test_acc);
    assert_true(ra.test_loss_ema == rb.test_loss_ema && ra.test_acc_ema == rb.test_acc_ema);
    double la[64], lb[64];
    assert_int_equal(read_losses(a, la, 64), 12);
    assert_int_equal(read_losses(b, lb, 64), 12);
    for (int i = 0; i < 12; i++) assert_true(la[i] == lb[i]);
    same_tensors(a, b, "state.safetensors");
    same_tensors(a, b, "model_ema.safetensors");
    /* 6 steps on the device, resumed on the CPU to 8; then on the device again to 12 */
    opts_small(&o, c, "derf");
    o.max_steps = 6;
    o.device = "cuda:fp32";
    assert_int_equal(derf_cls_train(&o, &rc, err, sizeof err), 0);
    opts_small(&o, c, "derf");
    o.max_steps = 8;
    o.resume = c;
    assert_int_equal(derf_cls_train(&o, &rc, err, sizeof err), 0);
    opts_small(&o, c, "derf");
    o.max_steps = 12;
    o.resume = c;
    o.device = "cuda";
    assert_int_equal(derf_cls_train(&o, &rc, err, sizeof err), 0);
    assert_true(ra.test_loss == rc.test_loss && ra.test_acc_ema == rc.test_acc_ema);
    same_tensors(a, c, "state.safetensors");
    same_tensors(a, c, "model.safetensors");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),   cmocka_unit_test(test_ema),        cmocka_unit_test(test_augment),
        cmocka_unit_test(test_resume_exact), cmocka_unit_test(test_divergence), cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_device_plumbing),
    };
    return cmocka_run_group_tests_name("train", tests, NULL, NULL);
}
