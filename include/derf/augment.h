/* derf/augment.h: training-batch construction for image classification: normalization, random
 * translation, horizontal flip, random erasing, and mixup / cutmix with label-smoothed soft
 * targets (timm's Mixup in batch mode: one lambda per batch, sample i mixed with sample B-1-i). */
#ifndef DERF_AUGMENT_H
#define DERF_AUGMENT_H

#include "derf/data.h"
#include "derf/rng.h"

typedef struct {
    int translate;       /* max shift in pixels, each axis (0: off); empty pixels are background */
    int hflip;           /* flip left-right with probability 0.5 */
    float erase_prob;    /* random erasing probability per image (area 2%..1/3, aspect 0.3..3.3) */
    float mixup_alpha;   /* Beta(a, a) for mixup; 0: off */
    float cutmix_alpha;  /* Beta(a, a) for cutmix; 0: off */
    float mix_prob;      /* probability a batch is mixed at all */
    float switch_prob;   /* with both on: probability of cutmix instead of mixup */
    float smoothing;     /* label smoothing of the targets */
} derf_aug_cfg;

/* Per-dataset pixel statistics (of the training split), used to normalize: x = (p/255 - mean)/std. */
typedef struct { float mean, std; } derf_pixel_stats;
derf_pixel_stats derf_pixel_stats_of(const derf_dataset *ds);

/* Normalized images [B,1,H,W] of samples idx[0..B), no augmentation. */
void derf_batch_images(float *out, const derf_dataset *ds, const int *idx, int B, derf_pixel_stats st);

/* Augmented training batch: images [B,1,H,W] and soft targets q [B,V]. Uses rng serially
 * (reproducible for a given rng state). Returns the batch's mixing lambda (1: unmixed). */
float derf_aug_batch(float *images, float *q, const derf_aug_cfg *cfg, const derf_dataset *ds,
                     const int *idx, int B, int V, derf_pixel_stats st, derf_rng *rng);

/* Beta(a, b) sample (via two gamma draws, Marsaglia-Tsang). */
float derf_rng_beta(derf_rng *rng, float a, float b);

#endif
