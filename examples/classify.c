/* classify.c: loads a trained ViT checkpoint with the installed libderf (forward-only inference path) and
 * classifies one image file. Usage: classify CHECKPOINT IMAGE [PIXEL_MEAN PIXEL_STD]
 * (defaults: Fashion-MNIST's training-set mean and std, what `derf train` normalizes with).
 * Build: cc classify.c $(pkg-config --cflags --libs derf) -o classify */
#include <stdio.h>
#include <stdlib.h>
#include <derf/infer.h>

int main(int argc, char **argv) {
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: %s CHECKPOINT IMAGE [PIXEL_MEAN PIXEL_STD]\n", argv[0]);
        return 2;
    }
    const float mean = argc == 5 ? strtof(argv[3], NULL) : 0.2860f, std = argc == 5 ? strtof(argv[4], NULL) : 0.3530f;
    char err[512];
    derf_infer_vit *m = derf_infer_vit_load(argv[1], 1, err, sizeof err);
    if (!m) { fprintf(stderr, "%s\n", err); return 1; }
    derf_infer_vit_fold(m);   /* gamma and beta into the linear layers: the same logits, fewer passes */
    const derf_vit_config *c = derf_infer_vit_config(m);
    float *x = malloc(sizeof(float) * (size_t)c->chans * c->img * c->img);
    if (!x || derf_image_load(argv[2], c->img, c->chans, mean, std, 0, x, err, sizeof err)) {
        fprintf(stderr, "%s\n", x ? err : "out of memory");
        free(x);
        derf_infer_vit_free(m);
        return 1;
    }
    const float *logits = derf_infer_vit_forward(m, x, 1);
    int best = 0;
    for (int k = 1; k < c->classes; k++) if (logits[k] > logits[best]) best = k;
    printf("%s: class %d (logit %.3f of %d classes)\n", argv[2], best, logits[best], c->classes);
    free(x);
    derf_infer_vit_free(m);
    return 0;
}
