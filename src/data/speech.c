/* speech.c: the Fish Fillets NG speech corpus behind `derf data speech`: the dialog-script parser, the
 * level split, and the indexed corpus files (audio.bin + index.tsv) with their validating reader (audio
 * decoding and resampling: src/data/audio.c). See include/derf/speech.h, docs/speech.md. */
#include "derf/speech.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "derf/io.h"
#include "derf/rng.h"
#include "derf/strbuf.h"

const char *const derf_split_names[3] = {"train", "val", "test"};

static char *xstrdup(const char *s) {
    char *r = strdup(s ? s : "");
    if (!r) abort();
    return r;
}

/* ---- dialog scripts ---------------------------------------------------------------------------- */

typedef struct {
    const char *s, *end, *name;
    int line;
    char *err;
    size_t errlen;
} lexer;

static void skip_space(lexer *L) {
    while (L->s < L->end) {
        if (*L->s == '\n') { L->line++; L->s++; }
        else if (isspace((unsigned char)*L->s)) L->s++;
        else if (L->s + 1 < L->end && L->s[0] == '-' && L->s[1] == '-') {
            while (L->s < L->end && *L->s != '\n') L->s++;
        } else break;
    }
}

static int expect(lexer *L, char c) {
    skip_space(L);
    if (L->s >= L->end || *L->s != c) {
        derf_io_errf(L->err, L->errlen, "%s:%d: expected '%c'%s", L->name, L->line, c,
                     L->s >= L->end ? " before the end of the file" : "");
        return -1;
    }
    L->s++;
    return 0;
}

/* A Lua short string literal; *out is malloc'd. Escapes: \n \t \r \\ \" \' \<newline>, \ddd; any other
 * escaped character stands for itself (the game's scripts write "\/"). */
static int lex_string(lexer *L, char **out) {
    skip_space(L);
    if (L->s >= L->end || (*L->s != '"' && *L->s != '\'')) {
        derf_io_errf(L->err, L->errlen, "%s:%d: expected a string", L->name, L->line);
        return -1;
    }
    char q = *L->s++;
    size_t cap = 64, n = 0;
    char *b = malloc(cap);
    if (!b) abort();
    for (;;) {
        if (L->s >= L->end || *L->s == '\n') {
            free(b);
            derf_io_errf(L->err, L->errlen, "%s:%d: unterminated string", L->name, L->line);
            return -1;
        }
        char c = *L->s++;
        if (c == q) break;
        if (c == '\\') {
            if (L->s >= L->end) continue; /* reported as unterminated next round */
            c = *L->s++;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'r') c = '\r';
            else if (c == '\n') L->line++;
            else if (isdigit((unsigned char)c)) {
                int v = c - '0';
                for (int k = 0; k < 2 && L->s < L->end && isdigit((unsigned char)*L->s); k++) v = v * 10 + *L->s++ - '0';
                if (v > 255 || v == 0) {
                    free(b);
                    derf_io_errf(L->err, L->errlen, "%s:%d: bad escape \\%d", L->name, L->line, v);
                    return -1;
                }
                c = (char)v;
            }
        }
        if (n + 2 > cap && !(b = realloc(b, cap *= 2))) abort();
        b[n++] = c;
    }
    b[n] = 0;
    *out = b;
    return 0;
}

int derf_dialogs_parse(const char *src, size_t len, const char *name, derf_dialogs *out, char *err, size_t errlen) {
    lexer L = {src, src + len, name, 1, err, errlen};
    derf_dialog *last = NULL;
    for (;;) {
        skip_space(&L);
        if (L.s >= L.end) return 0;
        const char *w = L.s;
        while (L.s < L.end && (isalnum((unsigned char)*L.s) || *L.s == '_')) L.s++;
        size_t wl = (size_t)(L.s - w);
        int is_id = wl == 8 && !memcmp(w, "dialogId", 8), is_str = wl == 9 && !memcmp(w, "dialogStr", 9);
        if (!is_id && !is_str) {
            derf_io_errf(err, errlen, "%s:%d: expected dialogId(...) or dialogStr(...), found '%.*s'", name, L.line,
                         wl ? (int)(wl > 20 ? 20 : wl) : 1, w);
            return -1;
        }
        if (expect(&L, '(')) return -1;
        if (is_id) {
            char *f[3] = {0};
            for (int k = 0; k < 3; k++)
                if ((k && expect(&L, ',')) || lex_string(&L, &f[k])) {
                    for (int j = 0; j < 3; j++) free(f[j]);
                    return -1;
                }
            if (expect(&L, ')')) {
                for (int j = 0; j < 3; j++) free(f[j]);
                return -1;
            }
            if (!f[0][0]) {
                for (int j = 0; j < 3; j++) free(f[j]);
                derf_io_errf(err, errlen, "%s:%d: empty dialog id", name, L.line);
                return -1;
            }
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 64;
                if (!(out->d = realloc(out->d, out->cap * sizeof *out->d))) abort();
            }
            last = &out->d[out->n++];
            *last = (derf_dialog){f[0], f[1], f[2], xstrdup("")};
        } else {
            char *t;
            if (lex_string(&L, &t)) return -1;
            if (expect(&L, ')')) { free(t); return -1; }
            if (!last || last->text[0]) {
                free(t);
                derf_io_errf(err, errlen, "%s:%d: dialogStr without a dialogId before it", name, L.line);
                return -1;
            }
            free(last->text);
            last->text = t;
        }
    }
}

const derf_dialog *derf_dialogs_find(const derf_dialogs *d, const char *id) {
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->d[i].id, id)) return &d->d[i];
    return NULL;
}

void derf_dialogs_free(derf_dialogs *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->d[i].id);
        free(d->d[i].character);
        free(d->d[i].english);
        free(d->d[i].text);
    }
    free(d->d);
    memset(d, 0, sizeof *d);
}

/* ---- corpus files -------------------------------------------------------------------------------- */

static void put_field(derf_strbuf *b, const char *s, char sep) {
    for (; *s; s++) {
        if (*s == '\\') derf_sb_printf(b, "\\\\");
        else if (*s == '\t') derf_sb_printf(b, "\\t");
        else if (*s == '\n') derf_sb_printf(b, "\\n");
        else if (*s == '\r') derf_sb_printf(b, "\\r");
        else derf_sb_printf(b, "%c", *s);
    }
    derf_sb_printf(b, "%c", sep);
}

int derf_speech_write(const char *dir, const derf_speech_corpus *c, char *err, size_t errlen) {
    char path[4096];
    for (size_t i = 0; i < c->n; i++)
        if (c->u[i].offset + c->u[i].n > c->nsamples || c->u[i].split < 0 || c->u[i].split > 2 || !c->u[i].id[0]) {
            derf_io_errf(err, errlen, "speech corpus: utterance %zu is invalid (outside the audio or no id)", i);
            return -1;
        }
    unsigned char h[DERF_SPEECH_HEADER_BYTES] = {0};
    memcpy(h, DERF_SPEECH_MAGIC, 8);
    h[8] = 1;
    for (int k = 0; k < 4; k++) h[12 + k] = (unsigned char)((uint32_t)c->rate >> (8 * k));
    snprintf(path, sizeof path, "%s/audio.bin", dir);
    derf_io_atomic a;
    if (derf_io_atomic_open(&a, path, err, errlen) || derf_io_atomic_write(&a, h, sizeof h, err, errlen)) return -1;
    /* int16 little-endian (x86 order; the build targets little-endian machines) */
    if (derf_io_atomic_write(&a, c->audio, c->nsamples * sizeof(int16_t), err, errlen) ||
        derf_io_atomic_commit(&a, err, errlen))
        return -1;
    derf_strbuf b = {0};
    derf_sb_printf(&b, "# derf speech corpus v1 rate=%d samples=%zu utterances=%zu\n", c->rate, c->nsamples, c->n);
    derf_sb_printf(&b, "id\tsplit\tlevel\tlang\tcharacter\toffset\tsamples\ttext\tenglish\n");
    for (size_t i = 0; i < c->n; i++) {
        const derf_utt *u = &c->u[i];
        put_field(&b, u->id, '\t');
        derf_sb_printf(&b, "%s\t", derf_split_names[u->split]);
        put_field(&b, u->level, '\t');
        put_field(&b, u->lang, '\t');
        put_field(&b, u->character, '\t');
        derf_sb_printf(&b, "%llu\t%u\t", (unsigned long long)u->offset, (unsigned)u->n);
        put_field(&b, u->text, '\t');
        put_field(&b, u->english, '\n');
    }
    snprintf(path, sizeof path, "%s/index.tsv", dir);
    int rc = derf_io_write_file(path, b.s, b.len, err, errlen);
    derf_sb_free(&b);
    return rc;
}

/* Unescapes one field in place; returns -1 on a bad escape. */
static int unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\') { *w++ = *r; continue; }
        r++;
        if (*r == '\\') *w++ = '\\';
        else if (*r == 't') *w++ = '\t';
        else if (*r == 'n') *w++ = '\n';
        else if (*r == 'r') *w++ = '\r';
        else return -1;
    }
    *w = 0;
    return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *v) {
    if (!isdigit((unsigned char)*s)) return -1;
    char *e;
    errno = 0;
    unsigned long long x = strtoull(s, &e, 10);
    if (*e || errno || x > max) return -1;
    *v = x;
    return 0;
}

static int read_index(const char *path, derf_speech_corpus *c, size_t *want_samples, char *err, size_t errlen) {
    char *txt;
    size_t len;
    char e[DERF_ERRLEN];
    if (derf_io_read_file(path, (size_t)1 << 30, (void **)&txt, &len, e, sizeof e)) {
        derf_io_errf(err, errlen, "%s; build the corpus with 'derf data speech' (or point --data at one)", e);
        return -1;
    }
    if (memchr(txt, 0, len)) {
        free(txt);
        derf_io_errf(err, errlen, "%s: not a text file (NUL byte); rebuild with 'derf data speech'", path);
        return -1;
    }
    int rc = -1, line = 1;
    unsigned long long ns, nu, rate;
    char *save = NULL, *l = strtok_r(txt, "\n", &save);
    if (!l || sscanf(l, "# derf speech corpus v1 rate=%llu samples=%llu utterances=%llu", &rate, &ns, &nu) != 3 ||
        nu > 10000000) {
        derf_io_errf(err, errlen, "%s: not a derf speech index (bad first line); rebuild with 'derf data speech'", path);
        goto out;
    }
    if (rate < 1000 || rate > 384000 || ns > DERF_SPEECH_MAX_SAMPLES) {
        derf_io_errf(err, errlen, "%s: the header's %s (%llu) is out of range (%s); rebuild with 'derf data speech'", path,
                     ns > DERF_SPEECH_MAX_SAMPLES ? "sample count" : "sample rate", ns > DERF_SPEECH_MAX_SAMPLES ? ns : rate,
                     ns > DERF_SPEECH_MAX_SAMPLES ? "at most 2^40" : "1000..384000 Hz");
        goto out;
    }
    c->rate = (int)rate;
    *want_samples = (size_t)ns;
    l = strtok_r(NULL, "\n", &save);
    line++;
    if (!l || strcmp(l, "id\tsplit\tlevel\tlang\tcharacter\toffset\tsamples\ttext\tenglish")) {
        derf_io_errf(err, errlen, "%s:2: unexpected column names", path);
        goto out;
    }
    c->u = calloc(nu ? nu : 1, sizeof *c->u);
    if (!c->u) abort();
    while ((l = strtok_r(NULL, "\n", &save))) {
        line++;
        char *f[9];
        int k = 0;
        for (char *p = l; k < 9; k++) {
            f[k] = p;
            char *t = strchr(p, '\t');
            if (!t) { k++; break; }
            *t = 0;
            p = t + 1;
            if (k == 8) { k = 10; break; } /* a tenth field */
        }
        if (k != 9) {
            derf_io_errf(err, errlen, "%s:%d: expected 9 tab-separated fields", path, line);
            goto out;
        }
        if (c->n >= nu) {
            derf_io_errf(err, errlen, "%s:%d: more utterances than the header's %llu", path, line, nu);
            goto out;
        }
        derf_utt *u = &c->u[c->n];
        int sp = -1;
        for (int s = 0; s < 3; s++)
            if (!strcmp(f[1], derf_split_names[s])) sp = s;
        uint64_t off, n;
        int bad = 0;
        for (int j = 0; j < 9; j++) bad |= unescape(f[j]);
        if (bad || sp < 0 || !f[0][0] || parse_u64(f[5], ns, &off) || parse_u64(f[6], UINT32_MAX, &n) || off + n > ns) {
            derf_io_errf(err, errlen, "%s:%d: bad %s", path, line,
                         bad ? "escape" : sp < 0 ? "split name (train, val or test)" : !f[0][0] ? "(empty) id"
                                                                                  : "offset/samples (outside the audio)");
            goto out;
        }
        *u = (derf_utt){xstrdup(f[0]), xstrdup(f[2]), xstrdup(f[3]), xstrdup(f[4]), xstrdup(f[7]), xstrdup(f[8]), sp,
                        off, (uint32_t)n};
        c->n++;
    }
    if (c->n != nu) {
        derf_io_errf(err, errlen, "%s: %zu utterances, the header says %llu (truncated?)", path, c->n, nu);
        goto out;
    }
    rc = 0;
out:
    free(txt);
    return rc;
}

int derf_speech_read(const char *dir, derf_speech_corpus *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    char path[4096];
    size_t want;
    snprintf(path, sizeof path, "%s/index.tsv", dir);
    if (read_index(path, c, &want, err, errlen)) {
        derf_speech_free(c);
        return -1;
    }
    snprintf(path, sizeof path, "%s/audio.bin", dir);
    char e[DERF_ERRLEN];
    int fd = derf_io_open_regular(path, "speech audio", e, sizeof e);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        derf_io_errf(err, errlen, "%s; build the corpus with 'derf data speech'", fd < 0 ? e : strerror(errno));
        if (fd >= 0) close(fd);
        derf_speech_free(c);
        return -1;
    }
    size_t flen = (size_t)st.st_size;
    unsigned char h[DERF_SPEECH_HEADER_BYTES];
    const char *why = NULL;
    if (flen < sizeof h || pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) why = "shorter than its header";
    else if (memcmp(h, DERF_SPEECH_MAGIC, 8)) why = "bad magic (not a derf speech audio file)";
    else if (h[8] != 1 || h[9] || h[10] || h[11]) why = "unsupported version";
    else if ((int)(h[12] | h[13] << 8 | h[14] << 16 | (uint32_t)h[15] << 24) != c->rate) why = "sample rate differs from index.tsv";
    else if ((flen - sizeof h) != want * sizeof(int16_t)) why = "length does not match the sample count of index.tsv (truncated?)";
    if (why) {
        close(fd);
        derf_io_errf(err, errlen, "%s: %s; rebuild with 'derf data speech'", path, why);
        derf_speech_free(c);
        return -1;
    }
    c->nsamples = want;
    c->map_len = flen;
    c->map = mmap(NULL, flen, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (c->map == MAP_FAILED) {
        c->map = NULL;
        c->map_len = 0;
        derf_io_errf(err, errlen, "%s: cannot map: %s", path, strerror(errno));
        derf_speech_free(c);
        return -1;
    }
    c->audio = (int16_t *)((char *)c->map + sizeof h);
    return 0;
}

void derf_speech_free(derf_speech_corpus *c) {
    for (size_t i = 0; i < c->n; i++) {
        derf_utt *u = &c->u[i];
        free(u->id);
        free(u->level);
        free(u->lang);
        free(u->character);
        free(u->text);
        free(u->english);
    }
    free(c->u);
    if (c->map) munmap(c->map, c->map_len);
    else free(c->audio);
    memset(c, 0, sizeof *c);
}

/* ---- building ------------------------------------------------------------------------------------ */

void derf_speech_split_levels(const char *const *levels, size_t n, int *split) {
    size_t *ord = malloc((n + 1) * sizeof *ord);
    if (!ord) abort();
    for (size_t i = 0; i < n; i++) ord[i] = i;
    for (size_t i = 1; i < n; i++) /* sort by name (insertion; ~100 levels) */
        for (size_t j = i; j > 0 && strcmp(levels[ord[j - 1]], levels[ord[j]]) > 0; j--) {
            size_t t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t;
        }
    derf_rng r;
    derf_rng_seed(&r, 8, 0);
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        size_t j = derf_rng_below(&r, (uint32_t)i), t = ord[i - 1];
        ord[i - 1] = ord[j];
        ord[j] = t;
    }
    size_t ntr = (size_t)lround(0.76 * n), nva = (size_t)lround(0.12 * n);
    for (size_t i = 0; i < n; i++) split[ord[i]] = i < ntr ? DERF_SPLIT_TRAIN : i < ntr + nva ? DERF_SPLIT_VAL : DERF_SPLIT_TEST;
    free(ord);
}

char *derf_speech_norm_text(const char *s) {
    char *r = xstrdup(s), *w = r;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p >= 0x80 || isalnum(*p)) *w++ = (char)tolower(*p);
    *w = 0;
    return r;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names of the sub-folders (or, with ext, the files ending in ext) of path. */
static char **list_dir(const char *path, const char *ext, size_t *n, char *err, size_t errlen) {
    DIR *d = opendir(path);
    if (!d) {
        derf_io_errf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 64;
    char **v = malloc(cap * sizeof *v);
    if (!v) abort();
    *n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        size_t l = strlen(e->d_name), el = ext ? strlen(ext) : 0;
        if (ext && (l <= el || strcmp(e->d_name + l - el, ext))) continue;
        char full[4096];
        struct stat st;
        if (snprintf(full, sizeof full, "%s/%s", path, e->d_name) >= (int)sizeof full || stat(full, &st) || (ext ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))) continue;
        if (*n == cap && !(v = realloc(v, (cap *= 2) * sizeof *v))) abort();
        v[(*n)++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static void free_list(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

typedef struct { char **k; size_t n, cap; } keyset;
static void keys_add(keyset *s, char *k) {
    if (s->n == s->cap && !(s->k = realloc(s->k, (s->cap = s->cap ? 2 * s->cap : 256) * sizeof *s->k))) abort();
    s->k[s->n++] = k;
}

int derf_speech_build(const derf_speech_opts *o, derf_speech_stat *st, char *err, size_t errlen) {
    const char *src = o->src ? o->src : DERF_SPEECH_SRC, *out = o->out ? o->out : "runs/data/speech";
    char langs_buf[256], *langs[16], path[4096];
    int nl = 0;
    snprintf(langs_buf, sizeof langs_buf, "%s", o->langs ? o->langs : "cs,nl");
    for (char *s = NULL, *t = strtok_r(langs_buf, ",", &s); t && nl < 16; t = strtok_r(NULL, ",", &s)) {
        for (const char *p = t; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_') {
                derf_io_errf(err, errlen, "--langs: bad language code '%s' (expected e.g. cs,nl)", t);
                return -1;
            }
        langs[nl++] = t;
    }
    if (!nl) {
        derf_io_errf(err, errlen, "--langs: no language given (expected e.g. cs,nl)");
        return -1;
    }
    memset(st, 0, sizeof *st);
    snprintf(path, sizeof path, "%s/sound", src);
    size_t nlev;
    char **lev = list_dir(path, NULL, &nlev, err, errlen);
    if (!lev) {
        derf_io_errf(err, errlen, "%s: not found; install the game data and voice packs ('make deps', or apt-get "
                     "install fillets-ng-data fillets-ng-data-cs fillets-ng-data-nl)", path);
        return -1;
    }
    /* levels with speech in a requested language only */
    size_t nuse = 0;
    for (size_t i = 0; i < nlev; i++) {
        int has = 0;
        for (int k = 0; k < nl && !has; k++) {
            struct stat s;
            snprintf(path, sizeof path, "%s/sound/%s/%s", src, lev[i], langs[k]);
            has = !stat(path, &s) && S_ISDIR(s.st_mode);
        }
        if (has) lev[nuse++] = lev[i];
        else free(lev[i]);
    }
    if (!nuse) {
        free(lev);
        derf_io_errf(err, errlen, "%s/sound: no level has speech in '%s'; install the voice packs ('make deps')", src,
                     o->langs ? o->langs : "cs,nl");
        return -1;
    }
    int *split = malloc(nuse * sizeof *split);
    if (!split) abort();
    derf_speech_split_levels((const char *const *)lev, nuse, split);
    derf_speech_corpus c = {.rate = DERF_SPEECH_RATE};
    size_t acap = (size_t)1 << 20, files_total = 0, files_done = 0;
    if (!(c.audio = malloc(acap * sizeof *c.audio))) abort();
    for (size_t i = 0; i < nuse; i++)
        for (int k = 0; k < nl; k++) {
            size_t m;
            snprintf(path, sizeof path, "%s/sound/%s/%s", src, lev[i], langs[k]);
            char **f = list_dir(path, ".ogg", &m, err, errlen);
            if (f) { files_total += o->per_level > 0 && m > (size_t)o->per_level ? (size_t)o->per_level : m; free_list(f, m); }
        }
    int rc = 0;
    double t0 = (double)clock() / CLOCKS_PER_SEC, last = -1;
    /* the train pass first so its texts are known when val/test lines are checked against them */
    keyset train_keys = {0};
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (size_t i = 0; i < nuse && !rc; i++) {
            if (pass == 1 && i == 0) qsort(train_keys.k, train_keys.n, sizeof *train_keys.k, cmp_str);
            if ((split[i] == DERF_SPLIT_TRAIN) != (pass == 0)) continue;
            for (int k = 0; k < nl && !rc; k++) {
                derf_dialogs dl = {0};
                snprintf(path, sizeof path, "%s/script/%s/dialogs_%s.lua", src, lev[i], langs[k]);
                char *txt = NULL;
                size_t tl;
                struct stat sst;
                if (!stat(path, &sst)) {
                    if (derf_io_read_file(path, 16 << 20, (void **)&txt, &tl, err, errlen) ||
                        derf_dialogs_parse(txt, tl, path, &dl, err, errlen)) {
                        rc = -1;
                        free(txt);
                        derf_dialogs_free(&dl);
                        break;
                    }
                    free(txt);
                }
                size_t m;
                snprintf(path, sizeof path, "%s/sound/%s/%s", src, lev[i], langs[k]);
                char **f = list_dir(path, ".ogg", &m, err, errlen);
                if (!f) { /* this level has no speech in this language */
                    derf_dialogs_free(&dl);
                    continue;
                }
                const size_t take = o->per_level > 0 && m > (size_t)o->per_level ? (size_t)o->per_level : m;
                for (size_t j = 0; j < take && !rc; j++) {
                    char id[1024];
                    snprintf(id, sizeof id, "%.*s", (int)(strlen(f[j]) - 4), f[j]);
                    const derf_dialog *d = derf_dialogs_find(&dl, id);
                    char *key = derf_speech_norm_text(d ? d->text : "");
                    files_done++;
                    if (split[i] != DERF_SPLIT_TRAIN && key[0] &&
                        bsearch(&key, train_keys.k, train_keys.n, sizeof *train_keys.k, cmp_str)) {
                        st->dropped++;
                        free(key);
                        continue;
                    }
                    char fp[8192];
                    snprintf(fp, sizeof fp, "%s/%s", path, f[j]);
                    float *x;
                    size_t n;
                    if (derf_audio_load(fp, DERF_SPEECH_RATE, &x, &n, NULL, NULL, err, errlen)) {
                        free(key);
                        rc = -1;
                        break;
                    }
                    if (split[i] == DERF_SPLIT_TRAIN && key[0]) keys_add(&train_keys, key);
                    else free(key);
                    if (n > UINT32_MAX) n = UINT32_MAX;
                    while (c.nsamples + n > acap)
                        if (!(c.audio = realloc(c.audio, (acap *= 2) * sizeof *c.audio))) abort();
                    for (size_t t = 0; t < n; t++) {
                        float v = x[t] * 32767.0f;
                        c.audio[c.nsamples + t] = (int16_t)lrintf(v > 32767 ? 32767 : v < -32767 ? -32767 : v);
                    }
                    free(x);
                    if (c.n == c.cap && !(c.u = realloc(c.u, (c.cap = c.cap ? 2 * c.cap : 1024) * sizeof *c.u))) abort();
                    c.u[c.n++] = (derf_utt){xstrdup(id), xstrdup(lev[i]), xstrdup(langs[k]),
                                            xstrdup(d ? d->character : ""), xstrdup(d ? d->text : ""),
                                            xstrdup(d ? d->english : ""), split[i], c.nsamples, (uint32_t)n};
                    c.nsamples += n;
                    st->utts[split[i]]++;
                    st->samples[split[i]] += n;
                    if (!d) st->unlabelled++;
                    double now = (double)clock() / CLOCKS_PER_SEC - t0;
                    if (!o->quiet && (now - last >= 2 || files_done == files_total)) {
                        last = now;
                        double rate = files_done / (now > 1e-9 ? now : 1e-9);
                        fprintf(stderr, "\rspeech: %zu/%zu files, %.1f h of audio, %.0f files/s, ETA %.0f s   ",
                                files_done, files_total, c.nsamples / (3600.0 * DERF_SPEECH_RATE), rate,
                                (files_total - files_done) / rate);
                    }
                }
                free_list(f, m);
                derf_dialogs_free(&dl);
            }
        }
    if (!o->quiet) fprintf(stderr, "\n");
    for (size_t i = 0; i < nuse; i++) st->levels[split[i]]++;
    free_list(train_keys.k, train_keys.n);
    free_list(lev, nuse);
    free(split);
    if (!rc) rc = derf_io_mkdirs(out, err, errlen);
    if (!rc) rc = derf_speech_write(out, &c, err, errlen);
    derf_speech_free(&c);
    return rc;
}
