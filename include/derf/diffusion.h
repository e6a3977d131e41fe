/* derf/diffusion.h: Gaussian diffusion as DiT uses it (ADM's gaussian_diffusion.py): the linear beta schedule,
 * q(x_t | x_0), the DDPM posterior, timestep respacing for short samplers, DDPM ancestral and DDIM sampling
 * with classifier-free guidance; the DiT training loop on Fashion-MNIST / MNIST; the FD-FMNIST metric
 * (Frechet distance on the features of a frozen derf ViT classifier); PNG sample grids. */
#ifndef DERF_DIFFUSION_H
#define DERF_DIFFUSION_H

#include <stdint.h>
#include "derf/augment.h"
#include "derf/data.h"
#include "derf/dit.h"
#include "derf/rng.h"
#include "derf/safetensors.h"
#include "derf/vit.h"

/* ---- the schedule ------------------------------------------------------------------------------
 * All in double. For step i (0-based) of a schedule with n steps:
 *   ac[i] = prod_{j<=i} (1 - beta[j]), ac_prev[i] = ac[i-1] (1 at i = 0)
 *   posterior q(x_{i-1} | x_i, x_0) = N(coef1[i] x_0 + coef2[i] x_i, var[i]):
 *     coef1 = beta sqrt(ac_prev) / (1 - ac), coef2 = (1 - ac_prev) sqrt(1 - beta) / (1 - ac),
 *     var = beta (1 - ac_prev) / (1 - ac); log_var_clipped[i] = log(var[max(i, 1)])
 *   t_map[i]: the timestep of the original (training) schedule the model sees at step i. */
typedef struct {
    int n;
    double *beta, *ac, *ac_prev, *coef1, *coef2, *var, *log_var_clipped;
    int *t_map;
} derf_diffusion;

/* DiT's linear schedule: beta = linspace(1e-4 * 1000/T, 0.02 * 1000/T, T). Returns 0 or -1 (error line). */
int derf_diffusion_linear(derf_diffusion *d, int T, char *err, size_t errlen);
/* ADM's space_timesteps(T, [steps]) on a base schedule: keeps `steps` evenly spaced timesteps
 * (round(i * (T-1)/(steps-1))) and recomputes beta_i = 1 - ac[t_i] / ac[t_{i-1}]. */
int derf_diffusion_respace(derf_diffusion *out, const derf_diffusion *base, int steps, char *err, size_t errlen);
void derf_diffusion_free(derf_diffusion *d);

/* x_t = sqrt(ac[t]) x0 + sqrt(1 - ac[t]) eps, elementwise over n floats. */
void derf_diffusion_q_sample(float *xt, const float *x0, const float *eps, const derf_diffusion *d, int t, size_t n);

/* ---- sampling ----------------------------------------------------------------------------------- */
typedef enum { DERF_SAMPLER_DDPM, DERF_SAMPLER_DDIM } derf_sampler;

typedef struct {
    int steps;            /* respaced steps (1..T) */
    float cfg;            /* guidance scale; 1: no guidance (a single conditional pass) */
    derf_sampler sampler;
    float eta;            /* DDIM eta (0: deterministic) */
    int clip;             /* clip the predicted x0 to [-1, 1] */
    uint64_t seed;
} derf_sample_opts;

/* One reverse step of one sample x (n floats) from step i to i-1 of schedule d, given the model's eps (and the learned
 * variance interpolation v in [-1, 1], or NULL: ADM's fixed-large variance). DDPM ancestral or DDIM per o; the noise
 * comes from r (none at i = 0). */
void derf_diffusion_step(float *x, const float *eps, const float *v, const derf_diffusion *d, int i,
                         const derf_sample_opts *o, derf_rng *r, size_t n);
/* Generates n images [n, chans, img, img] in [-1, 1] (not clamped) for labels[n] with m's weights (m's
 * max_batch does not matter). The samples run in parallel, one per OpenMP thread, each on its own copy of the
 * model: sample i draws all its noise from its own stream (seed, i) and goes through the same single-threaded
 * model calls of the same shapes (one row, or the conditional row and the null-label row with guidance), so
 * its bits depend neither on n, the other samples, nor the thread count -- on any BLAS kernel, which promises
 * bit-identical rows only for identical calls. progress: a line on stderr every 2 s. Returns 0 or -1 with an
 * error line. */
int derf_dit_sample(derf_dit *m, const derf_diffusion *base, const derf_sample_opts *o, const int32_t *labels, int n,
                    float *out, int progress, char *err, size_t errlen);

/* Loads a DiT checkpoint (model.safetensors / model_ema.safetensors of a train-dit run; the config comes from
 * its metadata), built for batches up to max_batch. */
int derf_dit_load(derf_dit *m, const char *path, int max_batch, char *err, size_t errlen);

/* ---- training ------------------------------------------------------------------------------------ */
typedef struct {
    derf_dit_config model;
    const char *data;          /* "fashion-mnist", "mnist", or a folder of IDX files */
    int steps, batch, T;       /* optimizer steps, batch, diffusion steps (1000) */
    float lr, beta1, beta2, weight_decay, ema, class_dropout;
    uint64_t seed;
    int train_limit;           /* first N training images only (0: all) */
    int eval_train_n;          /* images for the evaluation-mode training loss (0: skip) */
    int log_every, quiet;
    int diag_every;           /* steps between diagnostics (derf/diag.h; 0: none) */
    const char *out;           /* run folder (NULL: write nothing) */
    const char *resume;        /* run folder to continue from exactly */
    int max_steps;             /* stop (and save) after this many steps (0: all) */
    int ckpt_every;            /* steps between checkpoints (0: off) */
    double ckpt_secs;          /* seconds between checkpoints (< 0: DERF_FIT_CKPT_SECS; 0: off) */
    const derf_st_meta *meta;
    int nmeta;
} derf_dit_train_opts;

typedef struct {
    int steps, diverged;
    float final_loss;                    /* mean training loss over the last log window */
    float eval_loss, eval_loss_ema;      /* evaluation-mode training loss (Appendix E), -1: not run */
    double seconds, images_per_s;
    char diverged_msg[200];
} derf_dit_train_result;

void derf_dit_train_opts_default(derf_dit_train_opts *o);
/* Trains; writes out/{model,model_ema,state}.safetensors and out/log.jsonl. If m_out is non-NULL the trained
 * model is left there (built for o->batch) and *ema_out gets the EMA slab (malloc'd, NULL without EMA). */
int derf_dit_train(const derf_dit_train_opts *o, derf_dit_train_result *res, derf_dit *m_out, float **ema_out,
                   char *err, size_t errlen);
/* Evaluation-mode diffusion loss over the first n images of ds: no label dropout, timesteps and noise from a
 * fixed seed (the same for every model), mean eps-MSE. */
double derf_dit_eval_loss(derf_dit *m, const derf_dataset *ds, int n, int T, uint64_t seed);

/* Images of a dataset split as floats in [-1, 1]: out[i] = p / 127.5 - 1, for idx[0..B). */
void derf_dit_batch(float *out, const derf_dataset *ds, const int *idx, int B);

/* ---- FD-FMNIST ------------------------------------------------------------------------------------
 * Features: the penultimate layer (fc_norm output, the head's input) of a frozen derf ViT classifier. */
typedef struct { int dim; long n; double *mean, *cov; } derf_gauss_stats;

/* Mean and covariance (unbiased, n-1) of the classifier features of images given as uint8 [n, img, img],
 * normalized with st as the classifier was trained. */
int derf_fd_stats(derf_vit *clf, derf_pixel_stats st, const uint8_t *images, long n, derf_gauss_stats *out,
                  char *err, size_t errlen);
/* Mean and covariance of n x dim feature rows (double). */
int derf_gauss_stats_of(const double *x, long n, int dim, derf_gauss_stats *out, char *err, size_t errlen);
void derf_gauss_stats_free(derf_gauss_stats *s);
/* Frechet distance |m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), both square roots through
 * LAPACK dsyevd (negative eigenvalues from rounding clamped to 0). Returns 0 or -1 with an error line. */
int derf_frechet_distance(const derf_gauss_stats *a, const derf_gauss_stats *b, double *fd, char *err, size_t errlen);
/* Samples in [-1, 1] -> uint8 pixels round((x + 1) * 127.5) clamped to 0..255 (what a saved image holds). */
void derf_to_pixels(uint8_t *out, const float *x, size_t n);

/* The FD-FMNIST setting: a classifier checkpoint, the pixel statistics of the data's train split (how the
 * classifier normalizes), and the reference statistics of the data's test split. */
typedef struct { derf_vit clf; derf_pixel_stats px; derf_gauss_stats ref; } derf_fd_ctx;
int derf_fd_open(derf_fd_ctx *c, const char *classifier, const char *data, char *err, size_t errlen);
/* FD of n samples in [-1, 1] ([n, 1, img, img]; quantized to pixels first) against the test split. */
int derf_fd_of_samples(derf_fd_ctx *c, const float *samples, long n, double *fd, char *err, size_t errlen);
void derf_fd_close(derf_fd_ctx *c);

/* ---- PNG grid ----------------------------------------------------------------------------------------
 * Writes n grey images (uint8 [n, h, w]) as a grid of `cols` columns with a 2-pixel border, atomically. */
int derf_png_grid(const char *path, const uint8_t *images, int n, int h, int w, int cols, char *err, size_t errlen);

#endif
