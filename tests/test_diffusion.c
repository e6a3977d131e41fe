/* test_diffusion.c: the diffusion pieces (src/train/diffusion.c, fd.c, src/core/png.c).
 *  - the linear schedule's ends and the DDPM posterior against its Bayes-rule closed form (double);
 *  - respacing against ADM's space_timesteps values (computed in Python) and its consistency (ac kept);
 *  - the reverse step with the exact eps of a one-point data set: DDIM keeps the noise direction, both samplers
 *    land on the point;
 *  - the sampler: same seed -> identical samples whatever the thread count, the model batch or the number of
 *    samples, another seed -> other samples;
 *  - Frechet distance against closed forms (diagonal, commuting and non-commuting 2x2 covariances);
 *  - FD-FMNIST plumbing: FD(test, test) = 0, FD(train images, test) << FD(noise, test) with a ViT feature
 *    extractor (random weights: the ordering holds for any fixed features; needs the Fashion-MNIST package);
 *  - the PNG grid header. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "derf/diffusion.h"
#include "derf/io.h"
#include "derf/train.h"
#include "testutil.h"

static uint64_t g_seed;
static int setup(void **state) { (void)state; g_seed = tu_seed(); return 0; }

static void test_schedule_posterior(void **state) {
    (void)state;
    derf_diffusion d;
    char err[256];
    assert_int_equal(derf_diffusion_linear(&d, 1, err, sizeof err), -1);
    assert_int_equal(derf_diffusion_linear(&d, 1000, err, sizeof err), 0);
    assert_true(fabs(d.beta[0] - 1e-4) < 1e-15 && fabs(d.beta[999] - 0.02) < 1e-15);
    assert_true(fabs(d.beta[500] - (1e-4 + (0.02 - 1e-4) * 500 / 999.0)) < 1e-15);
    double prod = 1;
    for (int i = 0; i < 1000; i++) {
        const double b = d.beta[i], ap = prod;
        prod *= 1 - b;
        /* q(x_{i-1} | x_0) = N(sqrt(ap) x0, 1 - ap), q(x_i | x_{i-1}) = N(sqrt(1 - b) x_{i-1}, b): the product of
         * the two densities in x_{i-1} has precision 1/(1-ap) + (1-b)/b and mean (sqrt(ap) x0/(1-ap) + sqrt(1-b) x_i/b)/prec */
        if (i == 0) { assert_true(fabs(d.var[0]) < 1e-20 && fabs(d.coef1[0] - 1) < 1e-12); continue; }
        const double prec = 1 / (1 - ap) + (1 - b) / b;
        assert_true(fabs(d.ac[i] - prod) < 1e-12 * prod + 1e-300);
        assert_true(fabs(d.coef1[i] - sqrt(ap) / (1 - ap) / prec) < 1e-10);
        assert_true(fabs(d.coef2[i] - sqrt(1 - b) / b / prec) < 1e-10);
        assert_true(fabs(d.var[i] - 1 / prec) < 1e-10 * (1 / prec));
    }
    assert_true(fabs(d.log_var_clipped[0] - log(d.var[1])) < 1e-12);
    /* respacing: ADM space_timesteps(1000, [n]) (Python) */
    const int want10[10] = {0, 111, 222, 333, 444, 555, 666, 777, 888, 999}, want7[7] = {0, 166, 333, 500, 666, 832, 999};
    derf_diffusion r;
    assert_int_equal(derf_diffusion_respace(&r, &d, 10, err, sizeof err), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r.t_map[i], want10[i]);
        assert_true(fabs(r.ac[i] - d.ac[want10[i]]) < 1e-12);        /* the kept marginals are unchanged */
    }
    derf_diffusion_free(&r);
    assert_int_equal(derf_diffusion_respace(&r, &d, 7, err, sizeof err), 0);
    for (int i = 0; i < 7; i++) assert_int_equal(r.t_map[i], want7[i]);
    derf_diffusion_free(&r);
    assert_int_equal(derf_diffusion_respace(&r, &d, 250, err, sizeof err), 0);
    assert_int_equal(r.t_map[1], 4);
    assert_int_equal(r.t_map[247], 991);
    assert_int_equal(r.t_map[249], 999);
    derf_diffusion_free(&r);
    assert_int_equal(derf_diffusion_respace(&r, &d, 1000, err, sizeof err), 0);
    for (int i = 0; i < 1000; i++) assert_true(fabs(r.beta[i] - d.beta[i]) < 1e-12);
    derf_diffusion_free(&r);
    assert_int_equal(derf_diffusion_respace(&r, &d, 1001, err, sizeof err), -1);
    /* q_sample */
    float x0[3] = {1, -0.5f, 0.25f}, e[3] = {0.3f, 1, -2}, xt[3];
    derf_diffusion_q_sample(xt, x0, e, &d, 600, 3);
    for (int k = 0; k < 3; k++) assert_true(fabs(xt[k] - (sqrt(d.ac[600]) * x0[k] + sqrt(1 - d.ac[600]) * e[k])) < 1e-6);
    derf_diffusion_free(&d);
}

/* The exact eps of a one-point data set {x*} is (x - sqrt(ac) x*) / sqrt(1 - ac). With it, deterministic DDIM keeps
 * the starting noise direction (x_i = sqrt(ac_i) x* + sqrt(1 - ac_i) e_start at every step) and both samplers end on x*. */
static void test_oracle_sampling(void **state) {
    (void)state;
    derf_diffusion base, d;
    char err[256];
    assert_int_equal(derf_diffusion_linear(&base, 1000, err, sizeof err), 0);
    assert_int_equal(derf_diffusion_respace(&d, &base, 25, err, sizeof err), 0);
    enum { N = 64 };
    float xs[N], z[N], x[N], eps[N];
    uint64_t s = g_seed;
    tu_fill(xs, N, &s, -0.9, 0.9);
    for (int k = 0; k < 2; k++) {
        derf_sample_opts o = {.steps = 25, .cfg = 1, .sampler = k ? DERF_SAMPLER_DDPM : DERF_SAMPLER_DDIM, .clip = 1};
        derf_rng r;
        derf_rng_seed(&r, g_seed, 5);
        derf_rng_fill_normal(&r, z, N, 0, 1);
        memcpy(x, z, sizeof x);
        for (int i = d.n - 1; i >= 0; i--) {
            const double a = sqrt(d.ac[i]), sg = sqrt(1 - d.ac[i]);
            for (int j = 0; j < N; j++) eps[j] = (float)((x[j] - a * xs[j]) / sg);
            if (i == d.n - 1) memcpy(z, eps, sizeof z);   /* the direction of the start */
            if (k == 0) /* DDIM: the noise direction is kept */
                for (int j = 0; j < N; j++) assert_true(fabsf(eps[j] - z[j]) < 1e-4f * (1 + fabsf(z[j])));
            derf_diffusion_step(x, eps, NULL, &d, i, &o, &r, N);
        }
        for (int j = 0; j < N; j++) assert_true(fabsf(x[j] - xs[j]) < 1e-4f);
    }
    derf_diffusion_free(&d);
    derf_diffusion_free(&base);
}

static void sample_with(derf_dit *m, const derf_diffusion *base, derf_sample_opts *o, int n, float *out) {
    int32_t lab[8];
    for (int i = 0; i < n; i++) lab[i] = (int32_t)((i * 3) % m->cfg.classes);
    char err[256];
    if (derf_dit_sample(m, base, o, lab, n, out, 0, err, sizeof err)) fail_msg("%s", err);
}

static void test_sampler_determinism(void **state) {
    (void)state;
    derf_dit_config c;
    char err[256];
    assert_int_equal(derf_dit_preset(&c, "test", err, sizeof err), 0);
    assert_int_equal(derf_dit_set_norm(&c, "derf", 'S', err, sizeof err), 0);   /* no zero-init: the model acts */
    derf_dit big, small;
    assert_int_equal(derf_dit_build(&big, &c, 8, err, sizeof err), 0);
    assert_int_equal(derf_dit_build(&small, &c, 2, err, sizeof err), 0);
    derf_dit_init(&big, g_seed);
    memcpy(small.params.params, big.params.params, big.params.total * sizeof(float));
    derf_diffusion base;
    assert_int_equal(derf_diffusion_linear(&base, 1000, err, sizeof err), 0);
    const int n = 5, np = 64, nt0 = omp_get_max_threads();
    float a[5 * 64], b[5 * 64], p[5 * 64], s[5 * 64];
    const derf_sampler kinds[2] = {DERF_SAMPLER_DDPM, DERF_SAMPLER_DDIM};
    for (int k = 0; k < 2; k++)
        for (int g = 0; g < 2; g++) {
            derf_sample_opts o = {.steps = 6, .cfg = g ? 2.5f : 1.0f, .sampler = kinds[k], .eta = 0.5f, .clip = 1, .seed = 7};
            omp_set_num_threads(1);
            sample_with(&big, &base, &o, n, a);
            omp_set_num_threads(3);                        /* other threads, other workers, another model batch */
            sample_with(&small, &base, &o, n, b);
            assert_memory_equal(a, b, sizeof a);
            omp_set_num_threads(2);
            sample_with(&big, &base, &o, 3, p);            /* fewer samples: the same first ones */
            assert_memory_equal(a, p, 3 * np * sizeof(float));
            for (int i = 0; i < n * np; i++) assert_true(isfinite(a[i]));
            o.seed = 8;
            sample_with(&big, &base, &o, n, s);
            int differ = 0;
            for (int i = 0; i < n * np; i++) differ += a[i] != s[i];
            assert_true(differ > n * np / 2);
        }
    omp_set_num_threads(nt0);
    /* refused: a label outside the classes */
    int32_t bad = c.classes;
    derf_sample_opts o = {.steps = 2, .cfg = 1.0f, .seed = 1};
    assert_int_equal(derf_dit_sample(&big, &base, &o, &bad, 1, a, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "label"));
    derf_diffusion_free(&base);
    derf_dit_free(&big);
    derf_dit_free(&small);
}

static void stats_of(derf_gauss_stats *s, int dim, const double *mean, const double *cov) {
    s->dim = dim;
    s->n = 100;
    s->mean = malloc(sizeof(double) * dim);
    s->cov = malloc(sizeof(double) * dim * dim);
    memcpy(s->mean, mean, sizeof(double) * dim);
    memcpy(s->cov, cov, sizeof(double) * dim * dim);
}

static void test_frechet_closed_form(void **state) {
    (void)state;
    char err[256];
    derf_gauss_stats a, b;
    double fd;
    /* diagonal: |dm|^2 + sum (sqrt(a_i) - sqrt(b_i))^2 */
    const double m1[3] = {1, 2, 3}, m2[3] = {0, 2, 5}, c1[9] = {4, 0, 0, 0, 1, 0, 0, 0, 9}, c2[9] = {1, 0, 0, 0, 1, 0, 0, 0, 16};
    stats_of(&a, 3, m1, c1);
    stats_of(&b, 3, m2, c2);
    assert_int_equal(derf_frechet_distance(&a, &b, &fd, err, sizeof err), 0);
    assert_true(fabs(fd - (1 + 4 + (1 + 0 + 1))) < 1e-9);
    assert_int_equal(derf_frechet_distance(&a, &a, &fd, err, sizeof err), 0);
    assert_true(fabs(fd) < 1e-9);
    derf_gauss_stats_free(&a);
    derf_gauss_stats_free(&b);
    /* 2x2, not commuting: tr((S1 S2)^1/2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)) */
    const double z[2] = {0, 0}, s1[4] = {2, 0.7, 0.7, 1}, s2[4] = {1, -0.4, -0.4, 3};
    stats_of(&a, 2, z, s1);
    stats_of(&b, 2, z, s2);
    assert_int_equal(derf_frechet_distance(&a, &b, &fd, err, sizeof err), 0);
    const double tr12 = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
    const double d1 = s1[0] * s1[3] - s1[1] * s1[2], d2 = s2[0] * s2[3] - s2[1] * s2[2];
    const double want = 3 + 4 - 2 * sqrt(tr12 + 2 * sqrt(d1 * d2));
    assert_true(fabs(fd - want) < 1e-9);
    derf_gauss_stats_free(&b);
    stats_of(&b, 3, m1, c1);
    assert_int_equal(derf_frechet_distance(&a, &b, &fd, err, sizeof err), -1);    /* dimensions differ */
    derf_gauss_stats_free(&a);
    derf_gauss_stats_free(&b);
    /* mean / unbiased covariance of 4 rows by hand */
    const double x[8] = {1, 2, 3, 2, 5, 6, 7, 10};
    assert_int_equal(derf_gauss_stats_of(x, 4, 2, &a, err, sizeof err), 0);
    assert_true(fabs(a.mean[0] - 4) < 1e-12 && fabs(a.mean[1] - 5) < 1e-12);
    /* dx = -3,-1,1,3; dy = -3,-3,1,5: var x 20/3, var y 44/3, cov 28/3 */
    assert_true(fabs(a.cov[0] - 20.0 / 3) < 1e-12 && fabs(a.cov[3] - 44.0 / 3) < 1e-12);
    assert_true(fabs(a.cov[1] - 28.0 / 3) < 1e-12 && fabs(a.cov[2] - 28.0 / 3) < 1e-12);
    derf_gauss_stats_free(&a);
    assert_int_equal(derf_gauss_stats_of(x, 1, 2, &a, err, sizeof err), -1);
}

static void test_fd_fmnist_sanity(void **state) {
    (void)state;
    char err[DERF_ERRLEN], dir[1024];
    if (derf_data_find_dir("fashion-mnist", dir, sizeof dir, err, sizeof err)) {
        print_message("SKIP: %s\n", err);
        skip();
    }
    /* a ViT feature extractor with fixed random weights, saved as a checkpoint */
    derf_vit_config vc;
    derf_vit v;
    assert_int_equal(derf_vit_preset(&vc, "tiny", err, sizeof err), 0);
    assert_int_equal(derf_vit_build(&v, &vc, 1, err, sizeof err), 0);
    derf_vit_init(&v, g_seed);
    char keys[32][32], vals[32][128], path[] = "/tmp/derf_fd_clf_XXXXXX";
    int fdh = mkstemp(path);
    assert_true(fdh >= 0);
    close(fdh);
    int nk = derf_vit_config_to_meta(&vc, keys, vals, 32);
    derf_st_meta meta[32];
    for (int i = 0; i < nk; i++) meta[i] = (derf_st_meta){keys[i], vals[i]};
    derf_ckpt_slab sl = {"", v.params.params};
    assert_int_equal(derf_ckpt_save(path, &v.params, &sl, 1, meta, nk, err, sizeof err), 0);
    derf_vit_free(&v);
    derf_fd_ctx ctx;
    if (derf_fd_open(&ctx, path, dir, err, sizeof err)) fail_msg("%s", err);
    unlink(path);
    derf_dataset te, tr;
    assert_int_equal(derf_dataset_load(&te, dir, "test", err, sizeof err), 0);
    assert_int_equal(derf_dataset_load(&tr, dir, "train", err, sizeof err), 0);
    const long n = 3000, np = 28 * 28;
    float *x = malloc(sizeof(float) * np * te.n);
    double fd_test, fd_train, fd_noise;
    for (long i = 0; i < np * te.n; i++) x[i] = te.images[i] / 127.5f - 1.0f;   /* quantizes back exactly */
    assert_int_equal(derf_fd_of_samples(&ctx, x, te.n, &fd_test, err, sizeof err), 0);
    for (long i = 0; i < np * n; i++) x[i] = tr.images[i] / 127.5f - 1.0f;
    assert_int_equal(derf_fd_of_samples(&ctx, x, n, &fd_train, err, sizeof err), 0);
    uint64_t s = g_seed;
    tu_fill(x, (size_t)(np * n), &s, -1, 1);
    assert_int_equal(derf_fd_of_samples(&ctx, x, n, &fd_noise, err, sizeof err), 0);
    print_message("FD (random-feature ViT): test vs test %.3g, 3000 train vs test %.4g, noise vs test %.4g\n",
                  fd_test, fd_train, fd_noise);
    assert_true(fabs(fd_test) < 1e-6 * fd_noise);
    assert_true(fd_train > 0 && fd_train < 0.05 * fd_noise);
    free(x);
    derf_dataset_free(&te);
    derf_dataset_free(&tr);
    derf_fd_close(&ctx);
}

static void test_png_grid(void **state) {
    (void)state;
    char err[256], path[] = "/tmp/derf_grid_XXXXXX";
    int fdh = mkstemp(path);
    assert_true(fdh >= 0);
    close(fdh);
    uint8_t img[5 * 3 * 4];
    for (int i = 0; i < 60; i++) img[i] = (uint8_t)(i * 4);
    assert_int_equal(derf_png_grid(path, img, 5, 3, 4, 2, err, sizeof err), 0);
    unsigned char hdr[24];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(hdr, 1, 24, f), 24);
    fclose(f);
    unlink(path);
    assert_memory_equal(hdr, "\x89PNG\r\n\x1a\n", 8);
    /* IHDR width / height: 2 columns x (4 + 2) + 2 = 14, 3 rows x (3 + 2) + 2 = 17 */
    assert_int_equal((hdr[16] << 24) | (hdr[17] << 16) | (hdr[18] << 8) | hdr[19], 14);
    assert_int_equal((hdr[20] << 24) | (hdr[21] << 16) | (hdr[22] << 8) | hdr[23], 17);
    assert_int_equal(derf_png_grid(path, img, 0, 3, 4, 2, err, sizeof err), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_posterior),
        cmocka_unit_test(test_oracle_sampling),
        cmocka_unit_test(test_sampler_determinism),
        cmocka_unit_test(test_frechet_closed_form),
        cmocka_unit_test(test_fd_fmnist_sanity),
        cmocka_unit_test(test_png_grid),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
