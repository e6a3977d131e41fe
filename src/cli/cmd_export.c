/* cmd_export.c: `derf export`: writes a trained ViT or GPT-2 for inference elsewhere:
 *   --fold RUN OUT.safetensors   the folded model (every norm's gamma/beta folded into the linear layer
 *                                it feeds; metadata folded=1, norm_trained; docs/inference.md)
 *   --onnx RUN OUT.onnx          an ONNX model (opset 17) of the same forward pass, folded or not
 * RUN is a run folder (its model.safetensors, or model_ema.safetensors with --ema) or a checkpoint file. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cli/cli.h"
#include "derf/infer.h"
#include "derf/io.h"

int cmd_export(int argc, char **argv) {
    int fold = 0, onnx = 0, ema = 0;
    const cli_opt opts[] = {
        {"fold", CLI_FLAG, &fold, "write the folded model as safetensors", 0, -1},
        {"onnx", CLI_FLAG, &onnx, "write an ONNX model (with --fold: of the folded model)", 0, -1},
        {"ema", CLI_FLAG, &ema, "in a run folder, take model_ema.safetensors instead of model.safetensors", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"export", "--fold|--onnx RUN OUT [options]",
        "Export a ViT (derf train) or GPT-2 (derf train-lm) for inference. RUN is a run folder or a checkpoint file.\n"
        "  --fold RUN OUT.safetensors   folds every norm's gamma and beta into the linear layer it feeds\n"
        "                               (derf eval, classify, sample read the result)\n"
        "  --onnx RUN OUT.onnx          the forward pass as an ONNX model (opset 17: Erf, Tanh, LayerNormalization, ...);\n"
        "                               add --fold to export the folded model\n"
        "See docs/inference.md.",
        "Example: derf export --fold runs/train runs/train/folded.safetensors", opts};
    char *pos[3];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 3, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (!fold && !onnx) return cli_fail("export", "say what to write: --fold (safetensors) or --onnx (ONNX); see 'derf export --help'");
    if (npos != 2) return cli_fail("export", "give the run (folder or checkpoint) and the output file, e.g. derf export --fold runs/train out.safetensors");
    char path[1200], err[DERF_ERRLEN], kind[16];
    struct stat sb;
    if (stat(pos[0], &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(path, sizeof path, "%s/%s", pos[0], ema ? "model_ema.safetensors" : "model.safetensors");
    else if (ema)
        return cli_fail("export", "--ema picks a file in a run folder; %s is not a folder", pos[0]);
    else
        snprintf(path, sizeof path, "%s", pos[0]);
    if (!derf_infer_model_kind(path, kind, sizeof kind, err, sizeof err)) return cli_fail("export", "%s", err);
    const char *what = onnx ? "ONNX" : "folded";
    if (!strcmp(kind, "vit")) {
        derf_infer_vit *m = derf_infer_vit_load(path, 1, err, sizeof err);
        if (!m) return cli_fail("export", "%s", err);
        const int was = derf_infer_vit_folded(m);
        if (fold) derf_infer_vit_fold(m);
        rc = onnx ? derf_onnx_export_vit(m, pos[1], err, sizeof err) : derf_infer_vit_save(m, pos[1], err, sizeof err);
        if (!rc) printf("wrote %s: %s ViT%s\n", pos[1], what, was && fold ? " (the checkpoint was folded already)" : "");
        derf_infer_vit_free(m);
    } else {
        derf_infer_gpt2 *m = derf_infer_gpt2_load(path, 1, 1, err, sizeof err);
        if (!m) return cli_fail("export", "%s", err);
        const int was = derf_infer_gpt2_folded(m);
        if (fold) derf_infer_gpt2_fold(m);
        rc = onnx ? derf_onnx_export_gpt2(m, pos[1], err, sizeof err) : derf_infer_gpt2_save(m, pos[1], err, sizeof err);
        if (!rc) printf("wrote %s: %s GPT-2%s\n", pos[1], what, was && fold ? " (the checkpoint was folded already)" : "");
        derf_infer_gpt2_free(m);
    }
    return rc ? cli_fail("export", "%s", err) : 0;
}
