/* main.c: the `derf` command: dispatches to subcommands (one file each in src/cli/). Under an MPI
 * launcher (mpirun) it starts the data-parallel layer first (derf/dist.h): only the trainers run on
 * several processes, rank 0 alone prints results, and a process that fails ends the whole job. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "derf/dist.h"
#include "derf/io.h"
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

typedef struct { const char *name; int (*run)(int, char **); const char *summary; } subcommand;

static const subcommand CMDS[] = {
    {"compare", cmd_compare, "the main job: train a ViT with several norms and seeds, compare accuracy and fit"},
    {"study", cmd_study, "the paper's experiments (Tables 1-7, 13-16) as resumable sweeps with reports"},
    {"train", cmd_train, "train one ViT classifier (Fashion-MNIST by default) with any norm spec"},
    {"train-lm", cmd_train_lm, "train a GPT-2 language model on the text shards (paper recipe, any norm spec)"},
    {"train-speech", cmd_train_speech, "pre-train wav2vec 2.0 on the speech corpus (any norm spec for the Transformer)"},
    {"train-dna", cmd_train_dna, "HyenaDNA or Caduceus-PS on real DNA: pretraining, fine-tuning on a task, k-mer baseline (any norm spec)"},
    {"sample", cmd_sample, "generate text with a GPT-2 checkpoint (temperature, top-k, top-p, seed)"},
    {"train-dit", cmd_train_dit, "train a class-conditional DiT diffusion model on Fashion-MNIST with any norm spec"},
    {"sample-dit", cmd_sample_dit, "sample a DiT checkpoint (DDPM / DDIM, classifier-free guidance) into a PNG grid"},
    {"fd", cmd_fd, "FD-FMNIST: Frechet distance of samples vs the test set on a frozen derf classifier's features"},
    {"eval", cmd_eval, "evaluate a ViT checkpoint: test accuracy, per-class accuracy, eval-mode train loss"},
    {"export", cmd_export, "export a ViT / GPT-2 for inference: folded safetensors (--fold) or ONNX (--onnx)"},
    {"classify", cmd_classify, "classify image files with a ViT checkpoint on the forward-only inference path"},
    {"bench", cmd_bench, "benchmark the norm kernels and the ViT / GPT-2 training steps against PyTorch"},
    {"functions", cmd_functions, "list the norm family with measured properties and plot their shapes"},
    {"data", cmd_data, "build datasets: 'derf data text' (GPT-2 token shards), 'derf data speech' (16 kHz speech), 'derf data dna' (genomes, tasks)"},
};

static void usage(FILE *f) {
    fprintf(f, "derf: normalization-free Transformers (Derf, DyT and the point-wise norm family) in C\n\n"
               "usage: derf COMMAND [options]     (derf COMMAND --help for a command's options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++) fprintf(f, "  %-12s %s\n", CMDS[i].name, CMDS[i].summary);
    fprintf(f, "\nNorm specs (--norm): see docs/norm-spec.md, or run 'derf functions'.\n");
}

/* Runs a subcommand, on several processes when launched by mpirun (the trainers only). */
static int run_command(const subcommand *c, int argc, char **argv) {
    char err[DERF_ERRLEN];
    if (derf_dist_init(&argc, &argv, err, sizeof err)) { fprintf(stderr, "derf %s: %s\n", c->name, err); return 2; }
    const int size = derf_dist_size();
    if (size > 1 && strcmp(c->name, "train") && strcmp(c->name, "train-lm"))
        derf_dist_abort(2, "'derf %s' runs on one process; only 'derf train' and 'derf train-lm' run data-parallel "
                        "under mpirun", c->name);
    if (derf_dist_rank() > 0 && !freopen("/dev/null", "w", stdout)) /* results are printed once, by rank 0 */
        derf_dist_abort(2, "cannot silence the standard output of rank %d", derf_dist_rank());
    int rc = c->run(argc, argv);
    /* an error on any process ends every process (the others may wait in a collective); divergence
     * (status 3) is seen by all processes alike and ends them normally */
    if (size > 1 && rc != 0 && rc != 3) derf_dist_abort(rc, "stopping all %d processes after the error above", size);
    derf_dist_finalize();
    return rc;
}

int main(int argc, char **argv) {
#if defined(__SSE__)
    /* Flush denormals to zero (FTZ) and treat denormal inputs as zero (DAZ): a denormal costs ~100
     * cycles per operation on x86, and saturated point-wise norms or far-off softmax entries make them.
     * Set before any OpenMP region so the worker threads inherit it. */
    _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc >= 3 && !strcmp(argv[1], "help")) {
            for (size_t i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++)
                if (!strcmp(argv[2], CMDS[i].name)) {
                    char *a[] = {argv[2], "--help", NULL};
                    return CMDS[i].run(2, a);
                }
        }
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof CMDS / sizeof CMDS[0]; i++)
        if (!strcmp(argv[1], CMDS[i].name)) return run_command(&CMDS[i], argc - 1, argv + 1);
    fprintf(stderr, "derf: unknown command '%s'; run 'derf --help' for the list\n", argv[1]);
    return 2;
}
