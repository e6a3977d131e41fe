/* test_speech.c: the speech corpus of `derf data speech`: libsamplerate resampling against the closed form
 * of a sine (length and frequency preserved), decoding + downmix of a stereo file written here with
 * libsndfile, the dialog-script parser on a hand-made fixture (and on every installed Czech/Dutch script),
 * the level split, corpus round trip, hostile/truncated corpus files rejected with one clear line, and the
 * whole builder on a miniature game tree of Ogg Vorbis files. Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "derf/io.h"
#include "derf/speech.h"
#include "testutil.h"

static char tmpdir[] = "/tmp/derf_test_speech.XXXXXX";

#include "tmpfiles.h"

/* ---- audio --------------------------------------------------------------------------------------- */

/* A sine resampled 22050 -> 16000 (and 44100 -> 16000): the expected length, and away from the edges
 * the samples of sin(2 pi f t / 16000) itself (libsamplerate compensates its filter delay). */
static void test_resample_sine(void **state) {
    uint64_t seed = tu_seed();
    const int rates[2] = {22050, 44100};
    for (int r = 0; r < 2; r++) {
        double f = 200 + 2800 * tu_uniform(&seed), ph = 6.28 * tu_uniform(&seed); /* below 8 kHz Nyquist */
        size_t n = (size_t)rates[r] * 2 + (size_t)(1000 * tu_uniform(&seed));
        float *x = malloc(n * sizeof *x), *y;
        for (size_t t = 0; t < n; t++) x[t] = (float)(0.8 * sin(2 * M_PI * f * t / rates[r] + ph));
        size_t m;
        char err[DERF_ERRLEN];
        assert_int_equal(derf_resample(x, n, rates[r], 16000, &y, &m, err, sizeof err), 0);
        double want = n * 16000.0 / rates[r];
        assert_true(fabs((double)m - want) <= 1.0);
        double *ref = malloc(m * sizeof *ref);
        for (size_t t = 0; t < m; t++) ref[t] = 0.8 * sin(2 * M_PI * f * t / 16000 + ph);
        assert_true(tu_close("resampled sine", y + 200, ref + 200, m - 400, 2e-3, 0));
        free(x);
        free(y);
        free(ref);
    }
    char err[DERF_ERRLEN];
    float z = 0, *y;
    size_t m;
    assert_int_equal(derf_resample(&z, 1, 0, 16000, &y, &m, err, sizeof err), -1);
    one_line(err);
}

/* A stereo 44.1 kHz WAV (left a sine, right half of it) decodes to the mean of the channels at 16 kHz. */
static void test_audio_load_downmix(void **state) {
    uint64_t seed = tu_seed();
    double f = 300 + 1000 * tu_uniform(&seed);
    size_t n = 44100;
    SF_INFO info = {.samplerate = 44100, .channels = 2, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *sf = sf_open(tp("st.wav"), SFM_WRITE, &info);
    assert_non_null(sf);
    float *x = malloc(2 * n * sizeof *x);
    for (size_t t = 0; t < n; t++) {
        x[2 * t] = (float)(0.6 * sin(2 * M_PI * f * t / 44100));
        x[2 * t + 1] = 0.5f * x[2 * t];
    }
    assert_int_equal(sf_writef_float(sf, x, (sf_count_t)n), n);
    sf_close(sf);
    float *y;
    size_t m;
    int rate, ch;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_audio_load(tp("st.wav"), 16000, &y, &m, &rate, &ch, err, sizeof err), 0);
    assert_int_equal(rate, 44100);
    assert_int_equal(ch, 2);
    assert_true(m >= 15999 && m <= 16001);
    double *ref = malloc(m * sizeof *ref);
    for (size_t t = 0; t < m; t++) ref[t] = 0.75 * 0.6 * sin(2 * M_PI * f * t / 16000);
    assert_true(tu_close("downmixed", y + 200, ref + 200, m - 400, 2e-3, 0));
    free(x);
    free(y);
    free(ref);
    /* garbage and a missing file: one line naming the file */
    write_raw(tp("junk.ogg"), "OggS this is not vorbis at all", 30);
    assert_int_equal(derf_audio_load(tp("junk.ogg"), 16000, &y, &m, NULL, NULL, err, sizeof err), -1);
    one_line(err);
    assert_non_null(strstr(err, "junk.ogg"));
    assert_int_equal(derf_audio_load(tp("none.ogg"), 16000, &y, &m, NULL, NULL, err, sizeof err), -1);
    one_line(err);
}

/* ---- dialog scripts ------------------------------------------------------------------------------ */

static void test_dialogs_parse(void **state) {
    const char *src = "\n-- Intro dialogs\n"
                      "dialogId(\"a-m-one\", \"font_small\", \"What is that?\")\n"
                      "dialogStr(\"Co je to?\")\n\n"
                      "dialogId(\"a-v-two\", \"font_big\",\n  'It\\'s \\\"quoted\\\"')\n"
                      "dialogStr(\n\"C:\\\\WINDOWS \\/etc\\tx\")\n"
                      "dialogId(\"a-x-three\", \"font_white\", \"no translation\") -- trailing comment\n";
    derf_dialogs d = {0};
    char err[DERF_ERRLEN];
    assert_int_equal(derf_dialogs_parse(src, strlen(src), "fixture.lua", &d, err, sizeof err), 0);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.d[0].id, "a-m-one");
    assert_string_equal(d.d[0].character, "font_small");
    assert_string_equal(d.d[0].english, "What is that?");
    assert_string_equal(d.d[0].text, "Co je to?");
    assert_string_equal(d.d[1].english, "It's \"quoted\"");
    assert_string_equal(d.d[1].text, "C:\\WINDOWS /etc\tx");
    assert_string_equal(d.d[2].text, "");
    assert_ptr_equal(derf_dialogs_find(&d, "a-v-two"), &d.d[1]);
    assert_null(derf_dialogs_find(&d, "a-v"));
    derf_dialogs_free(&d);
    const char *bad[][2] = {
        {"dialogId(\"a\", \"f\", \"unterminated)\n", ":1: unterminated string"},
        {"dialogStr(\"orphan\")", "without a dialogId"},
        {"dialogId(\"a\", \"f\")", ":1: expected ','"},
        {"\n\nprint(\"x\")", ":3: expected dialogId"},
        {"dialogId(\"a\", \"f\", \"e\"", "expected ')' before the end"},
        {"dialogId(\"\", \"f\", \"e\")", "empty dialog id"},
        {"dialogId(\"a\", \"f\", \"e\") dialogStr(\"x\") dialogStr(\"y\")", "without a dialogId"},
        {"dialogId(\"a\", \"f\", \"\\0\")", "bad escape"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        derf_dialogs e = {0};
        assert_int_equal(derf_dialogs_parse(bad[i][0], strlen(bad[i][0]), "bad.lua", &e, err, sizeof err), -1);
        one_line(err);
        if (!strstr(err, bad[i][1]) || !strstr(err, "bad.lua")) fail_msg("case %zu: '%s'", i, err);
        derf_dialogs_free(&e);
    }
}

/* Every installed Czech and Dutch script parses, and most voice files find their line. */
static void test_dialogs_real(void **state) {
    struct stat st;
    if (stat(DERF_SPEECH_SRC "/script/airplane/dialogs_cs.lua", &st)) {
        fprintf(stderr, "# fillets-ng-data not installed: skipped\n");
        skip();
    }
    const char *langs[2] = {"cs", "nl"};
    for (int k = 0; k < 2; k++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "ls " DERF_SPEECH_SRC "/script/*/dialogs_%s.lua", langs[k]);
        FILE *p = popen(cmd, "r");
        char line[1024];
        size_t files = 0, lines = 0;
        while (fgets(line, sizeof line, p)) {
            line[strcspn(line, "\n")] = 0;
            void *txt;
            size_t len;
            char err[DERF_ERRLEN];
            assert_int_equal(derf_io_read_file(line, 1 << 24, &txt, &len, err, sizeof err), 0);
            derf_dialogs d = {0};
            if (derf_dialogs_parse(txt, len, line, &d, err, sizeof err)) fail_msg("%s", err);
            files++;
            lines += d.n;
            derf_dialogs_free(&d);
            free(txt);
        }
        pclose(p);
        assert_true(files >= 70);
        assert_true(lines >= 1500);
    }
}

/* ---- split --------------------------------------------------------------------------------------- */

static void test_split_levels(void **state) {
    enum { N = 80 };
    char names[N][16];
    const char *lv[N], *rev[N];
    int sp[N], sp2[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "level%02d", i);
        lv[i] = names[i];
        rev[N - 1 - i] = names[i];
    }
    derf_speech_split_levels(lv, N, sp);
    derf_speech_split_levels(rev, N, sp2);
    int cnt[3] = {0};
    for (int i = 0; i < N; i++) {
        assert_true(sp[i] >= 0 && sp[i] <= 2);
        cnt[sp[i]]++;
        assert_int_equal(sp[i], sp2[N - 1 - i]); /* depends on the names, not their order */
    }
    assert_int_equal(cnt[0], 61); /* round(0.76 * 80) */
    assert_int_equal(cnt[1], 10); /* round(0.12 * 80) */
    assert_int_equal(cnt[2], 9);
    char *k = derf_speech_norm_text("Co je TO? Loď, ne-li...");
    assert_string_equal(k, "cojetoloďneli");
    free(k);
}

/* ---- corpus files -------------------------------------------------------------------------------- */

static void make_corpus(derf_speech_corpus *c) {
    static int16_t audio[100];
    for (int i = 0; i < 100; i++) audio[i] = (int16_t)(i * 300 - 15000);
    static derf_utt u[3] = {
        {"a-1", "lvl", "cs", "font_small", "tab\there\nnewline \\ back", "english", DERF_SPLIT_TRAIN, 0, 40},
        {"a-2", "lvl2", "nl", "", "", "", DERF_SPLIT_VAL, 40, 50},
        {"a-3", "lvl3", "nl", "font_big", "x", "y", DERF_SPLIT_TEST, 90, 10},
    };
    *c = (derf_speech_corpus){.u = u, .n = 3, .audio = audio, .nsamples = 100, .rate = 16000};
}

static void test_corpus_roundtrip(void **state) {
    derf_speech_corpus c, r;
    make_corpus(&c);
    char err[DERF_ERRLEN];
    assert_int_equal(derf_speech_write(tmpdir, &c, err, sizeof err), 0);
    assert_int_equal(derf_speech_read(tmpdir, &r, err, sizeof err), 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.nsamples, 100);
    assert_int_equal(r.rate, 16000);
    assert_memory_equal(r.audio, c.audio, 200);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(r.u[i].id, c.u[i].id);
        assert_string_equal(r.u[i].level, c.u[i].level);
        assert_string_equal(r.u[i].lang, c.u[i].lang);
        assert_string_equal(r.u[i].character, c.u[i].character);
        assert_string_equal(r.u[i].text, c.u[i].text);
        assert_string_equal(r.u[i].english, c.u[i].english);
        assert_int_equal(r.u[i].split, c.u[i].split);
        assert_int_equal(r.u[i].offset, c.u[i].offset);
        assert_int_equal(r.u[i].n, c.u[i].n);
    }
    derf_speech_free(&r);
    /* a writer refuses an utterance outside the audio */
    c.u[2].n = 11;
    assert_int_equal(derf_speech_write(tmpdir, &c, err, sizeof err), -1);
    one_line(err);
    c.u[2].n = 10;
}

static void expect_read_fails(const char *want) {
    derf_speech_corpus r;
    char err[DERF_ERRLEN];
    assert_int_equal(derf_speech_read(tmpdir, &r, err, sizeof err), -1);
    one_line(err);
    if (!strstr(err, want)) fail_msg("expected '%s' in '%s'", want, err);
}

static void test_corpus_hostile(void **state) {
    derf_speech_corpus c;
    make_corpus(&c);
    char err[DERF_ERRLEN];
    assert_int_equal(derf_speech_write(tmpdir, &c, err, sizeof err), 0);
    void *audio, *index;
    size_t alen, ilen;
    assert_int_equal(derf_io_read_file(tp("audio.bin"), 1 << 20, &audio, &alen, err, sizeof err), 0);
    assert_int_equal(derf_io_read_file(tp("index.tsv"), 1 << 20, &index, &ilen, err, sizeof err), 0);
    /* audio.bin: truncated, extended, bad magic, version, rate */
    write_raw(tp("audio.bin"), audio, alen - 2);
    expect_read_fails("truncated");
    write_raw(tp("audio.bin"), audio, 20);
    expect_read_fails("shorter than its header");
    unsigned char *a = malloc(alen + 2);
    memcpy(a, audio, alen);
    a[alen] = a[alen + 1] = 0;
    write_raw(tp("audio.bin"), a, alen + 2);
    expect_read_fails("does not match");
    a[0] = 'X';
    write_raw(tp("audio.bin"), a, alen);
    expect_read_fails("bad magic");
    a[0] = 'D';
    a[8] = 2;
    write_raw(tp("audio.bin"), a, alen);
    expect_read_fails("version");
    a[8] = 1;
    a[12] ^= 1;
    write_raw(tp("audio.bin"), a, alen);
    expect_read_fails("sample rate");
    unlink(tp("audio.bin"));
    expect_read_fails("derf data speech");
    write_raw(tp("audio.bin"), audio, alen);
    /* index.tsv: edits of the good text */
    const char *good = index;
    struct { const char *from, *to, *want; } ed[] = {
        {"# derf speech corpus v1", "# derf speech corpus v9", "bad first line"},
        {"utterances=3", "utterances=4", "truncated"},
        {"utterances=3", "utterances=2", "more utterances"},
        {"samples=100", "samples=102", "does not match"},
        {"\tval\t", "\tvalid\t", "split name"},
        {"\t90\t10\t", "\t91\t10\t", "outside the audio"},
        {"\t90\t10\t", "\t-1\t10\t", "outside the audio"},
        {"\t40\t50\t", "\t40\t5x\t", "outside the audio"},
        {"a-3\t", "\t", "empty"},
        {"\tx\ty\n", "\tx\n", "9 tab-separated"},
        {"\tx\ty\n", "\tx\ty\tz\n", "9 tab-separated"},
        {"\\\\ back", "\\q back", "escape"},
        {"id\tsplit", "id\tsplat", "column names"},
        {"english\n", "english\0\n", "NUL"},
    };
    for (size_t i = 0; i < sizeof ed / sizeof *ed; i++) {
        const char *p = strstr(good, ed[i].from);
        assert_non_null(p);
        size_t pre = (size_t)(p - good), fl = strlen(ed[i].from), tl = strlen(ed[i].to);
        if (!strcmp(ed[i].want, "NUL")) tl = fl + 1;
        char *t = malloc(ilen + tl + 1);
        memcpy(t, good, pre);
        memcpy(t + pre, ed[i].to, tl);
        memcpy(t + pre + tl, p + fl, ilen - pre - fl);
        write_raw(tp("index.tsv"), t, ilen - fl + tl);
        expect_read_fails(ed[i].want);
        free(t);
    }
    write_raw(tp("index.tsv"), good, ilen / 2);
    expect_read_fails("index.tsv");
    write_raw(tp("index.tsv"), "", 0);
    expect_read_fails("bad first line");
    free(a);
    free(audio);
    free(index);
}

/* ---- the builder on a miniature game tree -------------------------------------------------------- */

static void write_ogg(const char *path, double f, size_t n, int rate, int channels) {
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = SF_FORMAT_OGG | SF_FORMAT_VORBIS};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) fail_msg("cannot write %s: %s", path, sf_strerror(NULL));
    float *x = malloc(n * channels * sizeof *x);
    for (size_t t = 0; t < n; t++)
        for (int c = 0; c < channels; c++) x[t * channels + c] = (float)(0.5 * sin(2 * M_PI * f * t / rate));
    assert_int_equal(sf_writef_float(sf, x, (sf_count_t)n), n);
    sf_close(sf);
    free(x);
}

static void test_build_small(void **state) {
    enum { L = 10 };
    char lv[L][16], path[1024], err[DERF_ERRLEN];
    const char *names[L];
    for (int i = 0; i < L; i++) {
        snprintf(lv[i], sizeof lv[i], "lev%d", i);
        names[i] = lv[i];
        for (int k = 0; k < 2; k++) {
            const char *lang = k ? "nl" : "cs";
            snprintf(path, sizeof path, "%s/game/sound/%s/%s", tmpdir, lv[i], lang);
            assert_int_equal(derf_io_mkdirs(path, err, sizeof err), 0);
            snprintf(path, sizeof path, "%s/game/sound/%s/%s/l%d-a.ogg", tmpdir, lv[i], lang, i);
            write_ogg(path, 440, 22050 / 2 + 100 * i, 22050, k ? 2 : 1);
            snprintf(path, sizeof path, "%s/game/sound/%s/%s/l%d-b.ogg", tmpdir, lv[i], lang, i);
            write_ogg(path, 660, 44100 / 4, 44100, 1);
            snprintf(path, sizeof path, "%s/game/script/%s", tmpdir, lv[i]);
            assert_int_equal(derf_io_mkdirs(path, err, sizeof err), 0);
            /* line a is unique to the level; line b is the same stock line everywhere */
            char lua[512];
            int len = snprintf(lua, sizeof lua,
                               "dialogId(\"l%d-a\", \"font_small\", \"Line %d\")\ndialogStr(\"Veta %s %d\")\n"
                               "dialogId(\"l%d-b\", \"font_big\", \"Again\")\ndialogStr(\"Znovu, %s!\")\n",
                               i, i, lang, i, i, lang);
            snprintf(path, sizeof path, "%s/game/script/%s/dialogs_%s.lua", tmpdir, lv[i], lang);
            write_raw(path, lua, (size_t)len);
        }
    }
    /* a level whose nl voice file has no line in the script */
    snprintf(path, sizeof path, "%s/game/sound/lev0/nl/extra.ogg", tmpdir);
    write_ogg(path, 500, 16000, 16000, 1);
    int sp[L];
    derf_speech_split_levels(names, L, sp);
    size_t nlev[3] = {0};
    for (int i = 0; i < L; i++) nlev[sp[i]]++;
    char src[600], out[600];
    snprintf(src, sizeof src, "%s/game", tmpdir);
    snprintf(out, sizeof out, "%s/corpus/sub", tmpdir);
    derf_speech_opts o = {.src = src, .out = out, .quiet = 1};
    derf_speech_stat st;
    if (derf_speech_build(&o, &st, err, sizeof err)) fail_msg("%s", err);
    for (int s = 0; s < 3; s++) assert_int_equal(st.levels[s], nlev[s]);
    /* stock line b: kept in train, dropped from every val/test level (2 languages each) */
    assert_int_equal(st.dropped, 2 * (nlev[1] + nlev[2]));
    assert_int_equal(st.unlabelled, 1);
    assert_int_equal(st.utts[0], 4 * nlev[0] + (sp[0] == DERF_SPLIT_TRAIN));
    derf_speech_corpus c;
    if (derf_speech_read(out, &c, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(c.n, st.utts[0] + st.utts[1] + st.utts[2]);
    for (size_t j = 0; j < c.n; j++) {
        const derf_utt *u = &c.u[j];
        int lvl = u->level[3] - '0';
        assert_int_equal(u->split, sp[lvl]);
        if (!strcmp(u->id, "extra")) {
            assert_string_equal(u->text, "");
            assert_int_equal(u->n, 16000);
            continue;
        }
        int a = strstr(u->id, "-a") != NULL;
        char want[64];
        if (a) snprintf(want, sizeof want, "Veta %s %d", u->lang, lvl);
        else snprintf(want, sizeof want, "Znovu, %s!", u->lang);
        assert_string_equal(u->text, want);
        assert_string_equal(u->character, a ? "font_small" : "font_big");
        /* 16 kHz lengths: (22050/2 + 100 lvl) * 16000/22050, and 44100/4 * 16000/44100 = 4000 */
        double n16 = a ? (22050 / 2 + 100 * lvl) * 16000.0 / 22050 : 4000;
        assert_true(fabs(u->n - n16) <= 1);
        /* the decoded sine (Vorbis is lossy): its power at the right frequency */
        double f = a ? 440 : 660, re = 0, im = 0;
        for (uint32_t t = 0; t < u->n; t++) {
            double v = c.audio[u->offset + t] / 32767.0;
            re += v * cos(2 * M_PI * f * t / 16000);
            im += v * sin(2 * M_PI * f * t / 16000);
        }
        double amp = 2 * sqrt(re * re + im * im) / u->n;
        if (fabs(amp - 0.5) > 0.05) fail_msg("%s: amplitude %.3f at %.0f Hz, want 0.5", u->id, amp, f);
    }
    derf_speech_free(&c);
    /* --per-level 1: only the first clip by file name of each level and language ("extra" < "l0-a" in lev0/nl) */
    snprintf(out, sizeof out, "%s/corpus/one", tmpdir);
    o.per_level = 1;
    if (derf_speech_build(&o, &st, err, sizeof err)) fail_msg("%s", err);
    o.per_level = 0;
    if (derf_speech_read(out, &c, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(c.n, 2 * L);
    for (int s = 0; s < 3; s++) assert_int_equal(st.levels[s], nlev[s]);
    for (size_t j = 0; j < c.n; j++) {
        const int extra = !strcmp(c.u[j].level, "lev0") && !strcmp(c.u[j].lang, "nl");
        if (extra) assert_string_equal(c.u[j].id, "extra");
        else assert_non_null(strstr(c.u[j].id, "-a"));
    }
    derf_speech_free(&c);
    /* a missing game folder and a bad --langs: one line that says what to do */
    o.src = tp("nothing");
    assert_int_equal(derf_speech_build(&o, &st, err, sizeof err), -1);
    one_line(err);
    assert_non_null(strstr(err, "fillets-ng-data"));
    o.src = src;
    o.langs = "cs;rm -rf";
    assert_int_equal(derf_speech_build(&o, &st, err, sizeof err), -1);
    one_line(err);
    o.langs = "xx";
    assert_int_equal(derf_speech_build(&o, &st, err, sizeof err), -1);
    one_line(err);
    /* a broken script: the error names the file and line */
    snprintf(path, sizeof path, "%s/game/script/lev3/dialogs_cs.lua", tmpdir);
    write_raw(path, "dialogId(\"x\"", 12);
    o.langs = NULL;
    assert_int_equal(derf_speech_build(&o, &st, err, sizeof err), -1);
    one_line(err);
    assert_non_null(strstr(err, "lev3/dialogs_cs.lua:1"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resample_sine),
        cmocka_unit_test(test_audio_load_downmix),
        cmocka_unit_test(test_dialogs_parse),
        cmocka_unit_test(test_dialogs_real),
        cmocka_unit_test(test_split_levels),
        cmocka_unit_test(test_corpus_roundtrip),
        cmocka_unit_test(test_corpus_hostile),
        cmocka_unit_test(test_build_small),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
