/* test_fit.c: the shared trainer pieces and derf_fit itself on a task whose answer is known in closed form:
 * - the schedule: warmup, cosine, linear and constant against their formulas in double precision;
 * - the divergence rule: NaN, inf and losses above the cap diverge, finite ones do not; non-finite weights;
 * - the run log: every field kind written and read back (non-finite numbers as null, strings escaped: cJSON parses
 *   every line), and a resumed log loses the records of the steps after the resumed one;
 * - derf_fit on least squares y = <w*, x> (x drawn from the run's RNG; the MSE gradient by hand): the loss falls
 *   to ~0 and w reaches w*; accumulation of 2 micro-batches of b equals 1 of 2b; K steps then a resume to N equal
 *   N steps straight bit for bit (weights, AdamW moments, EMA); a killed run's extra log records are dropped at the
 *   resume; a divergence stops before the update, logs it and keeps the last good checkpoint (its step). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "derf/fit.h"
#include "derf/io.h"
#include "derf/safetensors.h"
#include "derf/train.h"

static char tmpdir[] = "/tmp/derf_test_fit.XXXXXX";
#include "tmpfiles.h"

static void test_schedule(void **st) {
    (void)st;
    derf_sched c = {DERF_SCHED_COSINE, 1e-3f, 1e-5f, 10, 110};
    derf_sched l = {DERF_SCHED_LINEAR, 1e-3f, 0.f, 10, 110};
    derf_sched k = {DERF_SCHED_CONSTANT, 1e-3f, 0.f, 10, 110};
    for (int s = 0; s < 130; s++) {
        double warm = 1e-3 * (s + 1) / 10.0, t = fmin((s - 10) / 100.0, 1.0);
        double cw = s < 10 ? warm : 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + cos(M_PI * t));
        double lw = s < 10 ? warm : 1e-3 * (110 - s) / 100.0;
        assert_true(fabs(derf_sched_lr(&c, s) - cw) <= 1e-6 * 1e-3);
        assert_true(fabs(derf_sched_lr(&l, s) - lw) <= 1e-6 * 1e-3);
        assert_true(derf_sched_lr(&k, s) == 1e-3f);
    }
    /* the old entry point is the cosine schedule */
    assert_true(derf_lr_at(57, 10, 110, 1e-3f, 1e-5f) == derf_sched_lr(&c, 57));
}

static void test_divergence_rule(void **st) {
    (void)st;
    assert_true(derf_loss_diverged(NAN));
    assert_true(derf_loss_diverged(INFINITY));
    assert_true(derf_loss_diverged(-INFINITY));
    assert_true(derf_loss_diverged(1.0001e4));
    assert_false(derf_loss_diverged(9999.0));
    assert_false(derf_loss_diverged(0.0));
    float w[1000];
    for (int i = 0; i < 1000; i++) w[i] = (float)i;
    assert_true(derf_all_finite(w, 1000));
    w[777] = NAN;
    assert_false(derf_all_finite(w, 1000));
    w[777] = INFINITY;
    assert_false(derf_all_finite(w, 1000));
}

static void test_runlog(void **st) {
    (void)st;
    char err[DERF_ERRLEN];
    const char *dir = tp("log1");
    assert_int_equal(derf_io_mkdirs(dir, err, sizeof err), 0);
    derf_runlog l;
    assert_int_equal(derf_runlog_open(&l, dir, -1, err, sizeof err), 0);
    derf_lf head[] = {DERF_LF_I("step", 0), DERF_LF_S("norm", "a\"b\\c"), DERF_LF_B("resumed", 0)};
    derf_runlog_write(&l, "start", head, 3);
    for (int s = 1; s <= 10; s++) {
        derf_lf f[] = {DERF_LF_I("step", s), DERF_LF_N("loss", 1.0 / s), DERF_LF_R("rate", 12.345), DERF_LF_T("elapsed_s", 0.5),
                       DERF_LF_N("bad", s == 3 ? NAN : 1.5)};
        derf_runlog_write(&l, "train", f, 5);
    }
    derf_runlog_close(&l);
    /* every line is JSON */
    FILE *f = fopen(tp("log1/log.jsonl"), "r");
    assert_non_null(f);
    char line[512];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        if (!lines) assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "norm")), "a\"b\\c");
        cJSON_Delete(j);
        lines++;
    }
    fclose(f);
    assert_int_equal(lines, 11);
    static const char *const keys[] = {"step", "loss", "rate", "bad", "absent"};
    double v[16 * 5];
    assert_int_equal(derf_runlog_read(dir, "train", keys, 5, v, 16), 10);
    for (int s = 1; s <= 10; s++) {
        const double *r = v + (s - 1) * 5;
        assert_true(r[0] == s);
        assert_true(fabs(r[1] - 1.0 / s) <= 5e-6 / s); /* 6 significant digits */
        assert_true(fabs(r[2] - 12.3) < 1e-9);
        assert_true(s == 3 ? isnan(r[3]) : r[3] == 1.5);
        assert_true(isnan(r[4]));
    }
    /* a resume at step 6 drops steps 7..10 (the start record has step 0 and stays) */
    assert_int_equal(derf_runlog_open(&l, dir, 6, err, sizeof err), 0);
    derf_runlog_close(&l);
    assert_int_equal(derf_runlog_read(dir, "train", keys, 1, v, 16), 6);
    assert_int_equal(derf_runlog_read(dir, "start", keys, 1, v, 16), 1);
    assert_int_equal(derf_runlog_read(tp("nothing"), "train", keys, 1, v, 16), -1);
}

/* ---- least squares as a derf_task -------------------------------------------------------------- */

enum { D = 8 };
typedef struct {
    derf_params p;
    float wstar[D];
    int b;            /* samples per micro-batch */
    float bump;       /* added to the loss (a diverging loss for the test) */
} ls_task;

static float ls_micro(derf_task *t, int step, derf_rng *rng, float scale, double *units) {
    ls_task *L = t->ctx;
    const float *w = L->p.params;
    float *g = L->p.grads;
    double loss = 0;
    for (int i = 0; i < L->b; i++) {
        float x[D];
        derf_rng_fill_normal(rng, x, D, 0.f, 1.f);
        double e = 0;
        for (int j = 0; j < D; j++) e += (double)(w[j] - L->wstar[j]) * x[j];
        loss += e * e / L->b;
        for (int j = 0; j < D; j++) g[j] += (float)(scale * 2.0 * e * x[j] / L->b);
    }
    *units = L->b;
    return (float)loss + (step >= 5 ? L->bump : 0.f);
}
static int ls_meta(derf_task *t, char keys[][32], char vals[][128], int max) {
    snprintf(keys[0], 32, "model");
    snprintf(vals[0], 128, "least-squares-%d", D);
    return 1;
}

static void ls_init(ls_task *L, derf_task *t, int b, uint64_t seed) {
    memset(L, 0, sizeof *L);
    derf_params_init(&L->p);
    int shape[1] = {D};
    derf_params_add(&L->p, "w", 1, shape, 0);
    derf_params_alloc(&L->p);
    uint64_t s = seed;
    for (int j = 0; j < D; j++) L->wstar[j] = (float)(2 * tu_uniform(&s) - 1);
    L->b = b;
    *t = (derf_task){.ctx = L, .params = &L->p, .format = "derf-test-1", .unit = "x", .rate_key = "x_per_s",
                     .eval_type = "eval", .micro = ls_micro, .meta = ls_meta};
}

static void ls_opts(derf_fit_opts *o, const char *out, int steps) {
    derf_fit_opts_default(o);
    o->steps = steps;
    o->sched = (derf_sched){DERF_SCHED_COSINE, 0.05f, 0.f, 3, steps};
    o->adamw = (derf_adamw_cfg){0.05f, 0.9f, 0.99f, 1e-8f, 0.f};
    o->ema = 0.9f;
    o->log_every = 1;
    o->quiet = 1;
    o->out = out;
    o->seed = 7;
    o->stream = 3;
}

static void read_state(const char *dir, const char *file, derf_safetensors *st) {
    char path[600], err[DERF_ERRLEN];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    assert_int_equal(derf_safetensors_read(st, path, 1 << 24, err, sizeof err), 0);
}

static void test_fit_converges_and_accumulates(void **st) {
    (void)st;
    uint64_t seed = tu_seed();
    ls_task L, L2;
    derf_task t, t2;
    derf_fit_opts o;
    derf_fit_result r;
    char err[DERF_ERRLEN];
    ls_init(&L, &t, 16, seed);
    ls_opts(&o, NULL, 300);
    o.ema = 0;
    assert_int_equal(derf_fit(&t, &o, &r, err, sizeof err), 0);
    assert_int_equal(r.steps, 300);
    assert_false(r.diverged);
    for (int j = 0; j < D; j++) assert_true(fabsf(L.p.params[j] - L.wstar[j]) < 1e-2f);
    assert_true(r.final_loss < 1e-3f);
    assert_true(r.units == 300 * 16);
    /* 2 micro-batches of 8 = 1 of 16 (the same draws, in the same order) */
    ls_init(&L, &t, 16, seed);
    ls_init(&L2, &t2, 8, seed);
    ls_opts(&o, NULL, 20);
    o.ema = 0;
    assert_int_equal(derf_fit(&t, &o, &r, err, sizeof err), 0);
    o.accum = 2;
    assert_int_equal(derf_fit(&t2, &o, &r, err, sizeof err), 0);
    for (int j = 0; j < D; j++) assert_true(fabsf(L.p.params[j] - L2.p.params[j]) <= 1e-5f);
    derf_params_free(&L.p);
    derf_params_free(&L2.p);
}

static void test_fit_resume_exact(void **st) {
    (void)st;
    uint64_t seed = tu_seed() ^ 0x1234;
    ls_task L;
    derf_task t;
    derf_fit_opts o;
    derf_fit_result r;
    char err[DERF_ERRLEN];
    const char *full = tp("full"), *part = tp("part");
    ls_init(&L, &t, 4, seed);
    ls_opts(&o, full, 12);
    assert_int_equal(derf_fit(&t, &o, &r, err, sizeof err), 0);
    free(t.ema);
    derf_params_free(&L.p);
    ls_init(&L, &t, 4, seed);
    ls_opts(&o, part, 12);
    o.max_steps = 5;
    o.ckpt_every = 2;
    assert_int_equal(derf_fit(&t, &o, &r, err, sizeof err), 0);
    assert_int_equal(r.steps, 5);
    free(t.ema);
    derf_params_free(&L.p);
    /* a run killed after step 7 had logged steps 6 and 7 beyond the step-5 checkpoint */
    FILE *f = fopen(tp("part/log.jsonl"), "a");
    assert_non_null(f);
    fprintf(f, "{\"type\":\"train\",\"step\":6,\"loss\":1}\n{\"type\":\"train\",\"step\":7,\"loss\":1}\n");
    fclose(f);
    ls_init(&L, &t, 4, seed);
    ls_opts(&o, part, 12);
    o.resume = part;
    assert_int_equal(derf_fit(&t, &o, &r, err, sizeof err), 0);
    assert_int_equal(r.start_step, 5);
    assert_int_equal(r.steps, 12);
    free(t.ema);
    derf_params_free(&L.p);
    derf_safetensors a, b;
    read_state(full, "state.safetensors", &a);
    read_state(part, "state.safetensors", &b);
    assert_int_equal(a.ntensors, 4); /* weights, both moments, EMA */
    assert_int_equal(a.data_len, b.data_len);
    assert_memory_equal(a.data, b.data, a.data_len);
    derf_safetensors_free(&a);
    derf_safetensors_free(&b);
    /* the log: every step once, with the straight run's losses */
    static const char *const keys[] = {"step", "loss"};
    double va[32 * 2], vb[32 * 2];
    assert_int_equal(derf_runlog_read(full, "train", keys, 2, va, 32), 12);
    assert_int_equal(derf_runlog_read(part, "train", keys, 2, vb, 32), 12);
    for (int i = 0; i < 12; i++) {
        assert_true(vb[2 * i] == i + 1);
        assert_true(va[2 * i + 1] == vb[2 * i + 1]);
    }
    /* a state of another model is refused with one line */
    ls_init(&L, &t, 4, seed);
    ls_opts(&o, NULL, 12);
    o.resume = part;
    t.format = "derf-other-1";
    assert_int_equal(derf_fit(&t, &o, &r, err, sizeof err), -1);
    one_line(err);
    free(t.ema);
    derf_params_free(&L.p);
}

static void test_fit_divergence_keeps_checkpoint(void **st) {
    (void)st;
    ls_task L;
    derf_task t;
    derf_fit_opts o;
    derf_fit_result r;
    char err[DERF_ERRLEN];
    const char *dir = tp("div");
    ls_init(&L, &t, 4, tu_seed());
    L.bump = NAN; /* the loss of step 5 (0-based) is NaN */
    ls_opts(&o, dir, 12);
    o.ckpt_every = 2;
    assert_int_equal(derf_fit(&t, &o, &r, err, sizeof err), 0);
    assert_true(r.diverged);
    assert_int_equal(r.steps, 5);
    assert_non_null(strstr(r.diverged_msg, "diverged at step 5"));
    assert_non_null(strstr(r.diverged_msg, "last good checkpoint"));
    free(t.ema);
    derf_params_free(&L.p);
    derf_safetensors s;
    read_state(dir, "state.safetensors", &s);
    assert_string_equal(derf_safetensors_meta(&s, "step"), "4"); /* the last checkpoint before step 5 */
    derf_safetensors_free(&s);
    static const char *const keys[] = {"step"};
    double v[8];
    assert_int_equal(derf_runlog_read(dir, "diverged", keys, 1, v, 8), 1);
    assert_true(v[0] == 5);
    assert_int_equal(derf_runlog_read(dir, "final", keys, 1, v, 8), 0);
    /* an exploding (finite) loss diverges the same way */
    ls_init(&L, &t, 4, tu_seed());
    L.bump = 2e4f;
    ls_opts(&o, NULL, 12);
    assert_int_equal(derf_fit(&t, &o, &r, err, sizeof err), 0);
    assert_true(r.diverged);
    free(t.ema);
    derf_params_free(&L.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_divergence_rule),
        cmocka_unit_test(test_runlog),
        cmocka_unit_test(test_fit_converges_and_accumulates),
        cmocka_unit_test(test_fit_resume_exact),
        cmocka_unit_test(test_fit_divergence_keeps_checkpoint),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
