/* fuzz_opts.c: libFuzzer target: the command-line option parser (src/cli/opts.c) with a table of every
 * option type and bounds, argv taken from the input split at NUL bytes; a --norm value goes through the
 * norm-spec parser, as the commands do. */
#include "fuzz.h"
#include "cli/cli.h"
#include "derf/io.h"
#include "derf/norm.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n > 4096) return 0;
    char *buf = malloc(n + 1), *argv[64];
    memcpy(buf, d, n);
    buf[n] = 0;
    int argc = 0;
    argv[argc++] = "fuzz";
    for (size_t i = 0; i <= n && argc < 63;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    int steps = 10, flag = 0;
    float lr = 1e-3f;
    const char *out = "runs/x", *norm = "derf", *prompt = "";
    const cli_opt opts[] = {
        {"steps", CLI_INT, &steps, "steps", 1, 1000000},
        {"lr", CLI_FLOAT, &lr, "learning rate", 0, 10},
        {"out", CLI_STR, &out, "folder", 0, -1},
        {"norm", CLI_STR, &norm, "norm", 0, -1},
        {"prompt", CLI_STR, &prompt, "text", 0, -1},
        {"smoke", CLI_FLAG, &flag, "flag", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"fuzz", "[options]", "fuzz target", NULL, opts};
    char *pos[2];
    int npos;
    int rc = cli_parse(&cmd, argc, argv, pos, 2, &npos);
    if (rc == 0) {
        if (steps < 1 || steps > 1000000 || !(lr >= 0 && lr <= 10) || !*out) abort();
        derf_norm_spec s;
        char err[DERF_ERRLEN] = "";
        fz_check_err(derf_norm_parse(norm, &s, err, sizeof err), err);
    }
    free(buf);
    return 0;
}
