/* opts.c: the option parser shared by every subcommand (see cli.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "derf/dist.h"
#include "derf/io.h"
#include "derf/safetensors.h"

/* The line is formatted first and written with one call: under mpirun another process's output (MPI_Abort's
 * notice) must not land inside it. */
int cli_fail(const char *cmd, const char *fmt, ...) {
    char line[2 * DERF_ERRLEN];
    int n;
    if (derf_dist_size() > 1) n = snprintf(line, sizeof line, "derf %s (rank %d of %d): ", cmd, derf_dist_rank(), derf_dist_size());
    else n = snprintf(line, sizeof line, "derf %s: ", cmd);
    if (n < 0 || n >= (int)sizeof line) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    for (char *c = line; *c; c++) /* values echoed from the command line may hold newlines: one line */
        if ((unsigned char)*c < 0x20) *c = ' ';
    fprintf(stderr, "%s\n", line);
    return 2;
}

void cli_help(const cli_cmd *cmd) {
    printf("usage: derf %s %s\n\n%s\n", cmd->name, cmd->args ? cmd->args : "[options]", cmd->summary);
    if (cmd->details) printf("\n%s\n", cmd->details);
    if (cmd->opts && cmd->opts[0].name) printf("\noptions:\n");
    for (const cli_opt *o = cmd->opts; o && o->name; o++) {
        char left[64], def[64] = "";
        const char *meta = o->type == CLI_INT ? " N" : o->type == CLI_FLOAT ? " X" : o->type == CLI_STR ? " S" : "";
        snprintf(left, sizeof left, "--%s%s", o->name, meta);
        if (o->type == CLI_INT) snprintf(def, sizeof def, " (default %d)", *(int *)o->dst);
        if (o->type == CLI_FLOAT) snprintf(def, sizeof def, " (default %g)", (double)*(float *)o->dst);
        if (o->type == CLI_STR && *(const char **)o->dst) snprintf(def, sizeof def, " (default %s)", *(const char **)o->dst);
        printf("  %-22s %s%s\n", left, o->help, def);
    }
    printf("  %-22s %s\n", "--help", "show this help");
}

static int set_value(const cli_cmd *cmd, const cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    if (o->type == CLI_INT) {
        if (!strcmp(o->name, "threads") && !strcmp(v, "auto")) v = "0"; /* --threads auto is --threads 0 */
        long x = strtol(v, &end, 10);
        if (end == v || *end || errno) return cli_fail(cmd->name, "--%s needs an integer, not '%s'", o->name, v) ? -1 : -1;
        if (o->min <= o->max && (x < o->min || x > o->max))
            return cli_fail(cmd->name, "--%s must lie in [%g, %g], not %ld", o->name, o->min, o->max, x) ? -1 : -1;
        *(int *)o->dst = (int)x;
    } else if (o->type == CLI_FLOAT) {
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x))
            return cli_fail(cmd->name, "--%s needs a finite number, not '%s'", o->name, v) ? -1 : -1;
        if (o->min <= o->max && (x < o->min || x > o->max))
            return cli_fail(cmd->name, "--%s must lie in [%g, %g], not %g", o->name, o->min, o->max, x) ? -1 : -1;
        *(float *)o->dst = (float)x;
    } else {
        if (!*v && (!strcmp(o->name, "out") || !strcmp(o->name, "data") || !strcmp(o->name, "resume")))
            return cli_fail(cmd->name, "--%s is empty; name a folder%s, or leave the option out for its default", o->name,
                            !strcmp(o->name, "data") ? " or a data set" : "") ? -1 : -1;
        /* an empty path or name is always a mistake (--out '' would mean the root folder); a prompt may be empty */
        if (!*v && strcmp(o->name, "prompt") != 0)
            return cli_fail(cmd->name, "--%s needs a non-empty value", o->name) ? -1 : -1;
        *(const char **)o->dst = v;
    }
    return 0;
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv, char **pos, int maxpos, int *npos) {
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { cli_help(cmd); return 1; }
        if (strncmp(a, "--", 2) != 0 || a[2] == 0) {
            if (*npos >= maxpos)
                return cli_fail(cmd->name, "unexpected argument '%s'; see 'derf %s --help'", a, cmd->name) ? -1 : -1;
            pos[(*npos)++] = argv[i];
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = cmd->opts;
        while (o && o->name && (strlen(o->name) != len || strncmp(o->name, name, len))) o++;
        if (!o || !o->name)
            return cli_fail(cmd->name, "unknown option '--%.*s'; see 'derf %s --help'", (int)len, name, cmd->name) ? -1 : -1;
        if (o->type == CLI_FLAG) {
            if (eq) return cli_fail(cmd->name, "--%s takes no value", o->name) ? -1 : -1;
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return cli_fail(cmd->name, "--%s needs a value; see 'derf %s --help'", o->name, cmd->name) ? -1 : -1;
        if (set_value(cmd, o, v)) return -1;
    }
    return 0;
}

char *cli_args_json(int argc, char **argv) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 1; i < argc; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(argv[i]));
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

int cli_stored_args(const char *cmd, const char *dir, int *argc, char ***argv) {
    char path[1200], err[DERF_ERRLEN];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    derf_safetensors st;
    if (derf_safetensors_read(&st, path, (size_t)1 << 36, err, sizeof err)) return cli_fail(cmd, "%s", err);
    const char *js = derf_safetensors_meta(&st, "train_args");
    cJSON *arr = js ? cJSON_Parse(js) : NULL;
    if (!cJSON_IsArray(arr)) {
        derf_safetensors_free(&st);
        cJSON_Delete(arr);
        return cli_fail(cmd, "%s has no stored training options: it was not written by 'derf %s'", path, cmd);
    }
    int k = cJSON_GetArraySize(arr);
    const cJSON *item;
    cJSON_ArrayForEach(item, arr)
        if (!cJSON_IsString(item)) {
            derf_safetensors_free(&st);
            cJSON_Delete(arr);
            return cli_fail(cmd, "%s: the stored training options are damaged (an entry is not a string); the state "
                            "is corrupt", path);
        }
    char **av = calloc((size_t)k + 2, sizeof *av);
    if (!av) abort();
    av[0] = (char *)cmd;
    for (int i = 0; i < k; i++) {
        const char *s = cJSON_GetStringValue(cJSON_GetArrayItem(arr, i));
        av[i + 1] = strdup(s ? s : "");
    }
    cJSON_Delete(arr);
    derf_safetensors_free(&st);
    *argc = k + 1;
    *argv = av;
    return 0;
}

char **cli_kept_args; /* the stored argument list of a --resume (see below); global so it stays reachable */

int cli_parse_resumable(const cli_cmd *cmd, int argc, char **argv, void (*reset)(void *), void *ctx, cli_run *r,
                        const char *out_default, char **stored) {
    char *pos[1], **av;
    int npos, m, rc = cli_parse(cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? -1 : 2;
    if (!r->resume) {
        *stored = cli_args_json(argc, argv);
        return 0;
    }
    const char *resume = r->resume;
    if ((rc = cli_stored_args(cmd->name, resume, &m, &av))) return rc;
    cli_kept_args = av; /* the options parsed from av point into its strings: they live as long as the process */
    reset(ctx); /* the original options, then the ones given now */
    *r = (cli_run){out_default, NULL, 0, 0, CLI_CKPT_SECS};
    if (cli_parse(cmd, m, av, pos, 0, &npos)) return 2;
    r->max_steps = 0;
    if (cli_parse(cmd, argc, argv, pos, 0, &npos)) return 2;
    *stored = cli_args_json(m, av);
    r->out = r->resume = resume;
    return 0;
}

int cli_run_opts(cli_opt *t, cli_run *r, const char *out_help) {
    t[0] = (cli_opt){"out", CLI_STR, &r->out, out_help, 0, -1};
    t[1] = (cli_opt){"resume", CLI_STR, &r->resume, "continue the run in this folder exactly where it stopped", 0, -1};
    t[2] = (cli_opt){"max-steps", CLI_INT, &r->max_steps, "stop (and save) after this many steps of the schedule (0: all)", 0, 100000000};
    t[3] = (cli_opt){"ckpt-every", CLI_INT, &r->ckpt_every, "also checkpoint every N steps (0: off)", 0, 100000000};
    t[4] = (cli_opt){"ckpt-secs", CLI_FLOAT, &r->ckpt_secs, "also checkpoint every S seconds of training (0: off)", 0, 1e9};
    return 5;
}

int cli_copy_opts(cli_opt *t, int max, const cli_opt *src, int n) {
    if (n > max) n = max;
    memcpy(t, src, (size_t)n * sizeof *t);
    return n;
}
