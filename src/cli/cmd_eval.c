/* cmd_eval.c: `derf eval CHECKPOINT`: evaluates a ViT checkpoint (its config comes from the file's
 * metadata): top-1 test accuracy, per-class accuracy, test loss, and optionally the evaluation-mode
 * training loss (paper Appendix E). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cli/cli.h"
#include "derf/io.h"
#include "derf/train.h"

int cmd_eval(int argc, char **argv) {
    const char *data = "fashion-mnist";
    int train_loss = 0, batch = 256, test_limit = 0, allow_nf = 0;
    const cli_opt opts[] = {
        {"data", CLI_STR, &data, "fashion-mnist, mnist, or a folder with IDX files", 0, -1},
        {"train-loss", CLI_FLAG, &train_loss, "also measure the evaluation-mode training loss (whole training set)", 0, -1},
        {"batch", CLI_INT, &batch, "evaluation batch size", 1, 65536},
        {"test-limit", CLI_INT, &test_limit, "evaluate on the first N test images (0: all)", 0, 100000000},
        {"allow-nonfinite", CLI_FLAG, &allow_nf, "load a checkpoint whose weights hold NaN or Inf (refused by default)", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"eval", "CHECKPOINT [options]",
        "Evaluate a ViT checkpoint written by 'derf train' (model.safetensors or model_ema.safetensors):\n"
        "top-1 test accuracy, per-class accuracy and test loss; --train-loss adds the evaluation-mode training loss.",
        NULL, opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos != 1) return cli_fail("eval", "which checkpoint? e.g. derf eval runs/train/model.safetensors");
    derf_ckpt_allow_nonfinite(allow_nf);
    char err[DERF_ERRLEN];
    derf_vit m;
    if (derf_vit_load(&m, pos[0], batch, err, sizeof err)) return cli_fail("eval", "%s", err);
    const derf_vit_config cfg = m.cfg;

    char dir[1024];
    struct stat sb;
    derf_dataset tr, te;
    if (stat(data, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(dir, sizeof dir, "%s", data);
    else if (derf_data_find_dir(data, dir, sizeof dir, err, sizeof err)) { derf_vit_free(&m); return cli_fail("eval", "%s", err); }
    /* normalization statistics come from the training split, as in training */
    if (derf_dataset_load(&tr, dir, "train", err, sizeof err)) { derf_vit_free(&m); return cli_fail("eval", "%s", err); }
    if (derf_dataset_load(&te, dir, "test", err, sizeof err)) {
        derf_dataset_free(&tr); derf_vit_free(&m);
        return cli_fail("eval", "%s", err);
    }
    if (derf_dataset_expect(&te, cfg.img, cfg.classes, "test", "the checkpoint's model", err, sizeof err) ||
        derf_dataset_expect(&tr, cfg.img, cfg.classes, "training", "the checkpoint's model", err, sizeof err)) {
        derf_dataset_free(&tr); derf_dataset_free(&te); derf_vit_free(&m);
        return cli_fail("eval", "%s", err);
    }
    derf_pixel_stats px = derf_pixel_stats_of(&tr);
    float loss, acc, ca[DERF_DATASET_CLASSES];
    derf_cls_evaluate(&m, &te, px, test_limit, &loss, &acc, ca);
    char spec[256];
    derf_norm_format(&cfg.norm, spec, sizeof spec);
    printf("%s (norm %s): test acc %.2f%%, test loss %.4f on %d images\n", pos[0], spec, 100 * acc, loss,
           test_limit > 0 && test_limit < te.n ? test_limit : te.n);
    printf("  per-class acc:");
    for (int c = 0; c < DERF_DATASET_CLASSES; c++) printf(" %.1f", 100 * ca[c]);
    printf("\n");
    if (train_loss) {
        derf_cls_evaluate(&m, &tr, px, 0, &loss, &acc, NULL);
        printf("  evaluation-mode training loss %.4f (train acc %.2f%%)\n", loss, 100 * acc);
    }
    derf_dataset_free(&tr);
    derf_dataset_free(&te);
    derf_vit_free(&m);
    return 0;
}
