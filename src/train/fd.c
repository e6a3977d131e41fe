/* fd.c: FD-FMNIST, the Frechet distance between two image sets on the features of a frozen derf ViT
 * classifier (its penultimate layer: the fc_norm output that feeds the head). It is NOT the Inception FID:
 * numbers are only comparable between runs that use the same classifier checkpoint. Statistics in double;
 * the matrix square roots through LAPACK's symmetric eigen-solver dsyevd (from OpenBLAS). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "derf/diffusion.h"
#include "derf/augment.h"
#include "derf/io.h"
#include "derf/train.h"

/* LAPACK (Fortran calling convention; OpenBLAS exports it). */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info);

/* Eigen-decomposition of the symmetric n x n matrix a (overwritten by the eigenvectors, column-major =
 * row-major for a symmetric input read as columns); w gets the eigenvalues ascending. */
static int sym_eig(double *a, double *w, int n, char *err, size_t errlen) {
    int lwork = -1, liwork = -1, info = 0, iw;
    double wq;
    dsyevd_("V", "L", &n, a, &n, w, &wq, &lwork, &iw, &liwork, &info);
    if (info) return derf_io_errf(err, errlen, "LAPACK dsyevd workspace query failed (info %d)", info), -1;
    lwork = (int)wq;
    liwork = iw;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    int *iwork = malloc(sizeof(int) * (size_t)liwork);
    if (!work || !iwork) { free(work); free(iwork); return derf_io_errf(err, errlen, "out of memory in dsyevd"), -1; }
    dsyevd_("V", "L", &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
    free(work);
    free(iwork);
    if (info) return derf_io_errf(err, errlen, "LAPACK dsyevd did not converge (info %d)", info), -1;
    return 0;
}

int derf_gauss_stats_of(const double *x, long n, int dim, derf_gauss_stats *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (n < 2 || dim < 1) return derf_io_errf(err, errlen, "statistics need at least 2 rows, got %ld", n), -1;
    out->dim = dim;
    out->n = n;
    out->mean = calloc((size_t)dim, sizeof(double));
    out->cov = calloc((size_t)dim * dim, sizeof(double));
    if (!out->mean || !out->cov) {
        derf_gauss_stats_free(out);
        return derf_io_errf(err, errlen, "out of memory for %d-dim statistics", dim), -1;
    }
    for (long i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) out->mean[j] += x[i * dim + j];
    for (int j = 0; j < dim; j++) out->mean[j] /= (double)n;
    double *row = malloc(sizeof(double) * (size_t)dim);
    for (long i = 0; i < n; i++) {
        for (int j = 0; j < dim; j++) row[j] = x[i * dim + j] - out->mean[j];
        for (int j = 0; j < dim; j++)
            for (int k = 0; k <= j; k++) out->cov[(size_t)j * dim + k] += row[j] * row[k];
    }
    free(row);
    for (int j = 0; j < dim; j++)
        for (int k = 0; k <= j; k++) {
            double v = out->cov[(size_t)j * dim + k] / (double)(n - 1);
            out->cov[(size_t)j * dim + k] = out->cov[(size_t)k * dim + j] = v;
        }
    return 0;
}

void derf_gauss_stats_free(derf_gauss_stats *s) {
    free(s->mean);
    free(s->cov);
    memset(s, 0, sizeof *s);
}

int derf_frechet_distance(const derf_gauss_stats *a, const derf_gauss_stats *b, double *fd, char *err, size_t errlen) {
    if (a->dim != b->dim || a->dim < 1)
        return derf_io_errf(err, errlen, "feature dimensions differ (%d vs %d)", a->dim, b->dim), -1;
    const int n = a->dim;
    const size_t nn = (size_t)n * n;
    double *v = malloc(sizeof(double) * nn), *w = malloc(sizeof(double) * n), *r = malloc(sizeof(double) * nn);
    double *t = malloc(sizeof(double) * nn);
    int rc = -1;
    if (!v || !w || !r || !t) { derf_io_errf(err, errlen, "out of memory"); goto out; }
    /* r = S1^1/2 = V diag(sqrt(max(l, 0))) V^T */
    memcpy(v, a->cov, sizeof(double) * nn);
    if (sym_eig(v, w, n, err, errlen)) goto out;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += v[(size_t)k * n + i] * sqrt(fmax(w[k], 0.0)) * v[(size_t)k * n + j];
            r[(size_t)i * n + j] = s;
        }
    /* m = r S2 r (symmetric); tr(m^1/2) = sum sqrt(eig(m)) */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += r[(size_t)i * n + k] * b->cov[(size_t)k * n + j];
            t[(size_t)i * n + j] = s;
        }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += t[(size_t)i * n + k] * r[(size_t)k * n + j];
            v[(size_t)i * n + j] = s;
        }
    for (int i = 0; i < n; i++)   /* symmetrize against rounding */
        for (int j = 0; j < i; j++) v[(size_t)i * n + j] = v[(size_t)j * n + i] = 0.5 * (v[(size_t)i * n + j] + v[(size_t)j * n + i]);
    if (sym_eig(v, w, n, err, errlen)) goto out;
    double tr_sqrt = 0, tr1 = 0, tr2 = 0, dm = 0;
    for (int i = 0; i < n; i++) {
        tr_sqrt += sqrt(fmax(w[i], 0.0));
        tr1 += a->cov[(size_t)i * n + i];
        tr2 += b->cov[(size_t)i * n + i];
        dm += (a->mean[i] - b->mean[i]) * (a->mean[i] - b->mean[i]);
    }
    *fd = dm + tr1 + tr2 - 2 * tr_sqrt;
    rc = 0;
out:
    free(v); free(w); free(r); free(t);
    return rc;
}

void derf_to_pixels(uint8_t *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float p = rintf((x[i] + 1.0f) * 127.5f);
        out[i] = (uint8_t)(p < 0 ? 0 : p > 255 ? 255 : p);
    }
}

int derf_fd_stats(derf_vit *clf, derf_pixel_stats st, const uint8_t *images, long n, derf_gauss_stats *out,
                  char *err, size_t errlen) {
    const int B = clf->max_batch, D = clf->cfg.dim, side = clf->cfg.img;
    if (clf->cfg.chans != 1) return derf_io_errf(err, errlen, "the FD classifier must take grey images"), -1;
    derf_dataset ds = {(int)n, side, side, (uint8_t *)images, NULL};
    double *feat = malloc(sizeof(double) * (size_t)n * D);
    float *img = malloc(sizeof(float) * (size_t)B * side * side);
    int *idx = malloc(sizeof(int) * (size_t)B);
    if (!feat || !img || !idx) {
        free(feat); free(img); free(idx);
        return derf_io_errf(err, errlen, "out of memory for %ld feature rows", n), -1;
    }
    for (long s = 0; s < n; s += B) {
        const int nb = n - s < B ? (int)(n - s) : B;
        for (int i = 0; i < nb; i++) idx[i] = (int)(s + i);
        derf_batch_images(img, &ds, idx, nb, st);
        derf_vit_forward(clf, img, nb, 0, NULL);
        for (long i = 0; i < (long)nb * D; i++) feat[s * D + i] = clf->features[i];
    }
    int rc = derf_gauss_stats_of(feat, n, D, out, err, errlen);
    free(feat); free(img); free(idx);
    return rc;
}

int derf_fd_open(derf_fd_ctx *c, const char *classifier, const char *data, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    derf_dataset tr, te;
    if (derf_vit_load(&c->clf, classifier, 250, err, errlen)) return -1;
    if (derf_dataset_open(&tr, data, "train", err, errlen)) { derf_vit_free(&c->clf); return -1; }
    if (derf_dataset_expect(&tr, c->clf.cfg.img, c->clf.cfg.classes, "training", "the classifier", err, errlen)) {
        derf_dataset_free(&tr);
        derf_vit_free(&c->clf);
        return -1;
    }
    c->px = derf_pixel_stats_of(&tr);
    derf_dataset_free(&tr);
    int rc = derf_dataset_open(&te, data, "test", err, errlen);
    if (!rc) rc = derf_dataset_expect(&te, c->clf.cfg.img, c->clf.cfg.classes, "test", "the classifier", err, errlen);
    if (!rc) rc = derf_fd_stats(&c->clf, c->px, te.images, te.n, &c->ref, err, errlen);
    derf_dataset_free(&te);
    if (rc) derf_vit_free(&c->clf);
    return rc;
}

int derf_fd_of_samples(derf_fd_ctx *c, const float *samples, long n, double *fd, char *err, size_t errlen) {
    const size_t np = (size_t)c->clf.cfg.img * c->clf.cfg.img;
    uint8_t *px = malloc(np * (size_t)n);
    if (!px) return derf_io_errf(err, errlen, "out of memory for %ld samples", n), -1;
    derf_to_pixels(px, samples, np * (size_t)n);
    derf_gauss_stats s;
    int rc = derf_fd_stats(&c->clf, c->px, px, n, &s, err, errlen);
    free(px);
    if (!rc) rc = derf_frechet_distance(&s, &c->ref, fd, err, errlen);
    derf_gauss_stats_free(&s);
    return rc;
}

void derf_fd_close(derf_fd_ctx *c) {
    derf_vit_free(&c->clf);
    derf_gauss_stats_free(&c->ref);
}
