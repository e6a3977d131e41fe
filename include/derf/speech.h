/* derf/speech.h: the speech corpus for wav2vec 2.0 pre-training: real acted Czech and Dutch lines of the
 * Fish Fillets NG voice packs (Debian fillets-ng-data-cs / -nl), decoded with libsndfile, downmixed,
 * resampled to 16 kHz with libsamplerate, labelled from the game's dialog scripts, split by level,
 * and stored as an indexed corpus. See docs/speech.md.
 *
 * Corpus folder (both files written atomically):
 *   audio.bin   32-byte header: "DERFWAV1", uint32 version 1, uint32 sample rate, 16 zero bytes;
 *               then little-endian int16 samples of every utterance back to back.
 *   index.tsv   line 1 "# derf speech corpus v1 rate=R samples=N utterances=M", line 2 the column
 *               names, then one utterance a line with 9 tab-separated fields:
 *               id split level lang character offset samples text english
 *               (split is train/val/test; offset and samples count int16 samples in audio.bin; text
 *               fields escape backslash, tab and newline as \\ \t \n). */
#ifndef DERF_SPEECH_H
#define DERF_SPEECH_H

#include <stddef.h>
#include <stdint.h>

#define DERF_SPEECH_SRC "/usr/share/games/fillets-ng" /* where fillets-ng-data installs the game */
#define DERF_SPEECH_RATE 16000
#define DERF_SPEECH_MAGIC "DERFWAV1"
#define DERF_SPEECH_MAX_SAMPLES ((unsigned long long)1 << 40) /* 2 TB of int16 audio: a sanity bound */
#define DERF_SPEECH_HEADER_BYTES 32

enum { DERF_SPLIT_TRAIN, DERF_SPLIT_VAL, DERF_SPLIT_TEST };
extern const char *const derf_split_names[3];

/* ---- dialog scripts ---------------------------------------------------------------------------- */

/* One line of a dialogs_<lang>.lua file:
 *   dialogId("<id>", "<font>", "<English>")  dialogStr("<translation>")
 * font ("font_small", "font_big", ...) names the speaking character. */
typedef struct {
    char *id, *character, *english, *text; /* text is "" when a dialogId has no dialogStr */
} derf_dialog;

typedef struct {
    derf_dialog *d;
    size_t n, cap;
} derf_dialogs; /* zero-initialise */

/* Parses a dialog script (Lua subset: the two calls, "..." or '...' strings with Lua escapes,
 * `--` comments). Anything else, an unterminated string or a dialogStr without a dialogId is an
 * error naming `name` and the line. Appends to out. */
int derf_dialogs_parse(const char *src, size_t len, const char *name, derf_dialogs *out, char *err, size_t errlen);
const derf_dialog *derf_dialogs_find(const derf_dialogs *d, const char *id);
void derf_dialogs_free(derf_dialogs *d);

/* ---- audio --------------------------------------------------------------------------------------- */

/* Resamples mono float audio with libsamplerate (SRC_SINC_MEDIUM_QUALITY). *out is malloc'd and holds
 * *nout = round(n * rate_out / rate_in) samples (libsamplerate's own count, within one sample). */
int derf_resample(const float *in, size_t n, int rate_in, int rate_out, float **out, size_t *nout, char *err,
                  size_t errlen);
/* Decodes any file libsndfile reads (Ogg Vorbis, WAV, FLAC), averages the channels and resamples to
 * rate_out (no resampling when equal). *out is malloc'd. rate_in/channels may be NULL. */
int derf_audio_load(const char *path, int rate_out, float **out, size_t *n, int *rate_in, int *channels, char *err,
                    size_t errlen);

/* ---- corpus -------------------------------------------------------------------------------------- */

typedef struct {
    char *id, *level, *lang, *character, *text, *english;
    int split;       /* DERF_SPLIT_* */
    uint64_t offset; /* first sample in audio */
    uint32_t n;      /* samples */
} derf_utt;

typedef struct {
    derf_utt *u;
    size_t n, cap;
    int16_t *audio; /* all samples (malloc'd by the builder, mmap'd by the reader) */
    size_t nsamples;
    int rate;
    size_t map_len; /* > 0 when audio is mapped from a file */
    void *map;
} derf_speech_corpus;

/* Writes <dir>/audio.bin and <dir>/index.tsv atomically (dir must exist). */
int derf_speech_write(const char *dir, const derf_speech_corpus *c, char *err, size_t errlen);
/* Reads and validates both files: magic, version, rate, sample count against the file length and the
 * index header, 9 fields a line, known split names, numbers in range, every utterance inside the
 * audio, non-empty ids. Any failure: -1 and one line naming the file (and the line). */
int derf_speech_read(const char *dir, derf_speech_corpus *c, char *err, size_t errlen);
void derf_speech_free(derf_speech_corpus *c);

/* ---- building ------------------------------------------------------------------------------------ */

typedef struct {
    const char *src;   /* game data folder (NULL: DERF_SPEECH_SRC) with sound/<level>/<lang>/ and script/<level>/ */
    const char *out;   /* output folder (NULL: runs/data/speech), created if missing */
    const char *langs; /* comma-separated voice packs (NULL: "cs,nl") */
    int per_level;     /* > 0: only the first per_level clips (by file name) of each level and language */
    int quiet;
} derf_speech_opts;

typedef struct {
    size_t levels[3], utts[3], samples[3];
    size_t unlabelled;  /* audio files without a dialog line (kept, text and character empty) */
    size_t dropped;     /* val/test utterances whose normalised text also occurs in train (dropped) */
} derf_speech_stat;

/* Level split: levels sorted by name and shuffled with a fixed seed; the first round(0.76 L) are train,
 * the next round(0.12 L) validation, the rest test. Fills split[i] for levels[0..n). */
void derf_speech_split_levels(const char *const *levels, size_t n, int *split);
/* Lower-cases ASCII and keeps only letters/digits (any non-ASCII byte kept): the key for "the same line". */
char *derf_speech_norm_text(const char *s);

int derf_speech_build(const derf_speech_opts *o, derf_speech_stat *st, char *err, size_t errlen);

#endif
