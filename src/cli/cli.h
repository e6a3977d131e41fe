/* cli.h: the `derf` command: subcommand entry points and the table-driven option parser that
 * gives every subcommand the same --help, validation and error style. */
#ifndef DERF_CLI_H
#define DERF_CLI_H

typedef enum { CLI_INT, CLI_FLOAT, CLI_STR, CLI_FLAG } cli_type;

typedef struct {
    const char *name; /* long name without "--" */
    cli_type type;
    void *dst;        /* int*, float*, const char**, int* (flag set to 1) */
    const char *help;
    double min, max;  /* numeric range (inclusive); min > max: unchecked */
} cli_opt;

typedef struct {
    const char *name, *args, *summary, *details;
    const cli_opt *opts;
} cli_cmd;

/* Parses argv[1..] against opts. Positionals go to pos (at most maxpos). Returns 0 on success,
 * 1 if --help was printed, -1 after printing one error line to stderr. */
int cli_parse(const cli_cmd *cmd, int argc, char **argv, char **pos, int maxpos, int *npos);
void cli_help(const cli_cmd *cmd);
/* Copies n options into t (at most max); returns how many were copied (for option tables that commands share). */
int cli_copy_opts(cli_opt *t, int max, const cli_opt *src, int n);
/* Prints "derf CMD: <message>" to stderr; returns 2 (the exit status for usage errors). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Resuming a run: the options a training command was started with are stored in its
 * state.safetensors ("train_args", a JSON array). cli_stored_args returns them as an argv
 * {cmd, stored...} (malloc'd; the strings leak by design: they live until exit), or an exit
 * status after printing one error line. cli_args_json makes that array from argv[1..argc). */
int cli_stored_args(const char *cmd, const char *dir, int *argc, char ***argv);
char *cli_args_json(int argc, char **argv);
/* Parses a resumable training command: argv; with --resume DIR, DIR's stored options on fresh defaults
 * (reset(ctx)), then argv again on top (a stored --max-steps does not carry over), and the run folder
 * becomes DIR. out, max_steps and resume are the command's own option variables (out_default is the
 * --out default). *stored gets the JSON of the options to store (free it). Returns 0, -1 when --help
 * was printed (exit 0), or an exit status after an error line. */
/* Appends the --out, --resume and --max-steps rows of a resumable training command at t (out_help says
 * what the run folder holds); returns 3. */
int cli_run_opts(cli_opt *t, const char **out, const char *out_help, const char **resume, int *max_steps);
int cli_parse_resumable(const cli_cmd *cmd, int argc, char **argv, void (*reset)(void *), void *ctx,
                        const char **out, const char *out_default, int *max_steps, const char **resume, char **stored);
/* Hands what cli_parse_resumable returned to a trainer's options struct o (fields out, resume, max_steps, meta,
 * nmeta; meta points at one derf_st_meta holding the stored options). */
#define CLI_SET_RUN(o, out_, resume_, max_steps_, meta_)                                                             \
    do { (o).out = (out_); (o).resume = (resume_); (o).max_steps = (max_steps_); (o).meta = (meta_); (o).nmeta = 1; } \
    while (0)

int cmd_bench(int argc, char **argv);
int cmd_functions(int argc, char **argv);
int cmd_train(int argc, char **argv);
/* the models of `derf compare --model`, for its error lines */
#define CLI_COMPARE_MODELS "vit, gpt2, dit, wav2vec, hyena or caduceus"
int cmd_compare(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_data_speech(int argc, char **argv);
int cmd_train_speech(int argc, char **argv);
int cmd_compare_speech(int argc, char **argv); /* derf compare --model wav2vec (cmd_speech.c) */
int cmd_data_dna(int argc, char **argv);
int cmd_study(int argc, char **argv);
int cmd_train_lm(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_train_dna(int argc, char **argv);
int cmd_train_dit(int argc, char **argv);
int cmd_sample_dit(int argc, char **argv);
int cmd_fd(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_classify(int argc, char **argv);

#endif
