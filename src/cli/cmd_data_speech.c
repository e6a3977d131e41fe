/* cmd_data_speech.c: `derf data speech`: builds the 16 kHz speech corpus of the Fish Fillets NG Czech and
 * Dutch voice packs (runs/data/speech/audio.bin + index.tsv, split by level) and prints its statistics.
 * `--check` re-reads a built corpus through the validating reader instead. See docs/speech.md. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "derf/io.h"
#include "derf/speech.h"

static void print_stats(const size_t levels[3], const size_t utts[3], const size_t samples[3]) {
    printf("%-6s %7s %11s %9s\n", "split", "levels", "utterances", "hours");
    for (int s = 0; s < 3; s++)
        printf("%-6s %7zu %11zu %9.3f\n", derf_split_names[s], levels[s], utts[s],
               samples[s] / (3600.0 * DERF_SPEECH_RATE));
}

int cmd_data_speech(int argc, char **argv) {
    derf_speech_opts o = {0};
    int check = 0;
    const cli_opt opts[] = {
        {"src", CLI_STR, &o.src, "game data folder with sound/ and script/ (default " DERF_SPEECH_SRC ")", 0, -1},
        {"out", CLI_STR, &o.out, "output folder for audio.bin and index.tsv (default runs/data/speech)", 0, -1},
        {"langs", CLI_STR, &o.langs, "comma-separated voice packs to take (default cs,nl; en has 192 clips)", 0, -1},
        {"per-level", CLI_INT, &o.per_level, "take only the first N clips of each level and language (0: all; a quick, small corpus)", 0, 1000000},
        {"check", CLI_FLAG, &check, "do not build: read and validate the corpus in --out and print its statistics", 0, -1},
        {"quiet", CLI_FLAG, &o.quiet, "no progress lines", 0, -1},
        {0},
    };
    const cli_cmd cmd = {"data speech", "[options]",
        "Build the wav2vec 2.0 speech corpus: the Czech and Dutch voice lines of Fish Fillets NG (Debian\n"
        "fillets-ng-data-cs/-nl), decoded (libsndfile), downmixed, resampled to 16 kHz (libsamplerate), labelled\n"
        "with level, language, character and transcript from the game's dialog scripts, split by level.",
        "Files: audio.bin (int16 samples after a 32-byte header) and index.tsv (one utterance a line). Levels are\n"
        "split 76/12/12 % with a fixed seed; val/test lines whose text also occurs in train are dropped.\n"
        "See docs/speech.md.",
        opts};
    char *pos[1];
    int npos, rc = cli_parse(&cmd, argc, argv, pos, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    char err[DERF_ERRLEN];
    const char *out = o.out ? o.out : "runs/data/speech";
    if (check) {
        derf_speech_corpus c;
        if (derf_speech_read(out, &c, err, sizeof err)) return cli_fail("data speech", "%s", err);
        size_t levels[3] = {0}, utts[3] = {0}, samples[3] = {0};
        for (size_t i = 0; i < c.n; i++) {
            utts[c.u[i].split]++;
            samples[c.u[i].split] += c.u[i].n;
            int first = 1; /* count distinct levels per split */
            for (size_t j = 0; j < i && first; j++) first = strcmp(c.u[j].level, c.u[i].level) != 0;
            levels[c.u[i].split] += first;
        }
        print_stats(levels, utts, samples);
        printf("%s: %zu utterances, %zu samples at %d Hz: valid\n", out, c.n, c.nsamples, c.rate);
        derf_speech_free(&c);
        return 0;
    }
    derf_speech_stat st;
    if (derf_speech_build(&o, &st, err, sizeof err)) return cli_fail("data speech", "%s", err);
    print_stats(st.levels, st.utts, st.samples);
    printf("%zu files without a dialog line (kept, no transcript); %zu val/test lines dropped (text also in train)\n",
           st.unlabelled, st.dropped);
    printf("wrote %s/audio.bin and %s/index.tsv\n", out, out);
    return 0;
}
