/* cmd_classify.c: `derf classify CHECKPOINT IMAGE...`: classifies image files with a ViT checkpoint on
 * the forward-only inference path (src/infer; folded or not, --fold folds on load): the top classes
 * with their probabilities, one line per image, and the peak memory of the process. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "cli/cli.h"
#include "derf/augment.h"
#include "derf/data.h"
#include "derf/infer.h"
#include "derf/io.h"

static const char *FASHION[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

int cmd_classify(int argc, char **argv) {
    const char *data = "fashion-mnist";
    float mean = -1, std = -1;
    int top = 3, batch = 64, fold = 0, invert = 0, threads = 0;
    const cli_opt opts[] = {
        {"data", CLI_STR, &data, "dataset whose training split gives the pixel normalization (fashion-mnist, mnist, or an IDX folder)", 0, -1},
        {"pixel-mean", CLI_FLOAT, &mean, "pixel mean in [0,1] (with --pixel-std: skips reading --data)", 0, 1},
        {"pixel-std", CLI_FLOAT, &std, "pixel standard deviation", 1e-6, 10},
        {"top", CLI_INT, &top, "classes to print per image", 1, 1000000},
        {"batch", CLI_INT, &batch, "images per forward pass (1: single-sample mode)", 1, 65536},
        {"fold", CLI_FLAG, &fold, "fold the norms' gamma/beta into the linear layers after loading", 0, -1},
        {"invert", CLI_FLAG, &invert, "use 255 - pixel (dark-on-light images for a light-on-dark dataset)", 0, -1},
        {"threads", CLI_INT, &threads, "OpenMP threads (0: all cores)", 0, 1024},
        {0},
    };
    const cli_cmd cmd = {"classify", "CHECKPOINT IMAGE... [options]",
        "Classify image files (PNG, JPEG, BMP, PGM: stb_image) with a ViT checkpoint of 'derf train' or a folded\n"
        "one of 'derf export --fold', on the forward-only inference path. Images must have the model's size\n"
        "and channels (28x28 grey for the presets). Prints the top classes and their probabilities per image.",
        "Example: derf classify runs/train/model_ema.safetensors shoe.png --invert", opts};
    char *pos[4097];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 4097, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos < 2) return cli_fail("classify", "give a checkpoint and at least one image; see 'derf classify --help'");
    if ((mean >= 0) != (std >= 0)) return cli_fail("classify", "give both --pixel-mean and --pixel-std, or neither");
    if (threads > 0) omp_set_num_threads(threads);
    char err[DERF_ERRLEN];
    const int nimg = npos - 1;
    if (batch > nimg) batch = nimg;
    derf_infer_vit *m = derf_infer_vit_load(pos[0], batch, err, sizeof err);
    if (!m) return cli_fail("classify", "%s", err);
    if (fold) derf_infer_vit_fold(m);
    const derf_vit_config *c = derf_infer_vit_config(m);
    int is_fashion = !strcmp(data, "fashion-mnist") && c->classes == 10;
    if (mean < 0) {
        derf_dataset tr;
        if (derf_dataset_open(&tr, data, "train", err, sizeof err)) {
            derf_infer_vit_free(m);
            return cli_fail("classify", "%s (or give --pixel-mean and --pixel-std)", err);
        }
        derf_pixel_stats px = derf_pixel_stats_of(&tr);
        mean = px.mean;
        std = px.std;
        derf_dataset_free(&tr);
    } else {
        is_fashion = 0;
    }
    const size_t per = (size_t)c->chans * c->img * c->img;
    float *x = malloc(per * (size_t)batch * sizeof(float)), *p = malloc(sizeof(float) * (size_t)c->classes);
    int *order = malloc(sizeof(int) * (size_t)c->classes);
    if (!x || !p || !order) { free(x); free(p); free(order); derf_infer_vit_free(m); return cli_fail("classify", "out of memory"); }
    if (top > c->classes) top = c->classes;
    rc = 0;
    for (int i0 = 0; i0 < nimg && !rc; i0 += batch) {
        const int B = nimg - i0 < batch ? nimg - i0 : batch;
        for (int b = 0; b < B && !rc; b++)
            if (derf_image_load(pos[1 + i0 + b], c->img, c->chans, mean, std, invert, x + (size_t)b * per, err, sizeof err))
                rc = cli_fail("classify", "%s", err);
        if (rc) break;
        const float *lg = derf_infer_vit_forward(m, x, B);
        for (int b = 0; b < B; b++) {
            const float *l = lg + (size_t)b * c->classes;
            float mx = l[0];
            for (int k = 1; k < c->classes; k++) mx = l[k] > mx ? l[k] : mx;
            double z = 0;
            for (int k = 0; k < c->classes; k++) z += exp((double)l[k] - mx);
            for (int k = 0; k < c->classes; k++) { p[k] = (float)(exp((double)l[k] - mx) / z); order[k] = k; }
            for (int a = 0; a < top; a++) /* partial selection sort: the top classes */
                for (int k = a + 1; k < c->classes; k++)
                    if (p[order[k]] > p[order[a]]) { int t = order[a]; order[a] = order[k]; order[k] = t; }
            printf("%s:", pos[1 + i0 + b]);
            for (int a = 0; a < top; a++) {
                if (is_fashion) printf(" %s %.1f%%%s", FASHION[order[a]], 100.0 * p[order[a]], a + 1 < top ? "," : "");
                else printf(" class %d %.1f%%%s", order[a], 100.0 * p[order[a]], a + 1 < top ? "," : "");
            }
            printf("\n");
        }
    }
    if (!rc) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "classify: %d image(s), %s model, %.1f MiB allocated by the model, peak RSS %.1f MiB\n", nimg,
                derf_infer_vit_folded(m) ? "folded" : "unfolded", derf_infer_vit_bytes(m) / 1048576.0, ru.ru_maxrss / 1024.0);
    }
    free(x); free(p); free(order);
    derf_infer_vit_free(m);
    return rc;
}
