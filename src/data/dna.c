/* dna.c: DNA tokenizer, MAF/FASTA readers, the corpus (.dnac) and task (.dnat) formats, the leak-free
 * splits and the builder of `derf data dna` (see derf/dna.h and docs/dna.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "derf/dna.h"
#include "derf/io.h"
#include "derf/rng.h"

/* ---- tokenizer ------------------------------------------------------------------------------- */

int derf_dna_char_id(int c) {
    switch (c | 0x20) { /* lower-case letters; other bytes stay non-letters */
    case 'a': return DERF_DNA_A;
    case 'c': return DERF_DNA_C;
    case 'g': return DERF_DNA_G;
    case 't': return DERF_DNA_T;
    case 'n': case 'r': case 'y': case 'k': case 'm': case 's': case 'w': case 'b': case 'd': case 'h': case 'v':
        return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) ? DERF_DNA_N : -1;
    default: return -1;
    }
}

char derf_dna_id_char(int id) {
    static const char L[] = "ACGTN";
    return id >= DERF_DNA_A && id <= DERF_DNA_N ? L[id - DERF_DNA_A] : '?';
}

int derf_dna_complement(int id) {
    switch (id) {
    case DERF_DNA_A: return DERF_DNA_T;
    case DERF_DNA_T: return DERF_DNA_A;
    case DERF_DNA_C: return DERF_DNA_G;
    case DERF_DNA_G: return DERF_DNA_C;
    default: return id;
    }
}

void derf_dna_revcomp(uint8_t *dst, const uint8_t *src, size_t n) {
    for (size_t i = 0, j = n; i < j;) { /* works in place: swap the ends, complementing */
        j--;
        uint8_t a = src[i], b = src[j];
        dst[i] = (uint8_t)derf_dna_complement(b);
        dst[j] = (uint8_t)derf_dna_complement(a);
        i++;
    }
}

/* ---- records --------------------------------------------------------------------------------- */

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) { fprintf(stderr, "derf: out of memory (%zu bytes)\n", n); abort(); }
    return q;
}

void derf_dna_records_free(derf_dna_records *rs) {
    for (size_t i = 0; i < rs->n; i++) { free(rs->r[i].name); free(rs->r[i].ids); free(rs->r[i].lower); }
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

static derf_dna_record *records_push(derf_dna_records *rs, const char *name, size_t namelen) {
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? 2 * rs->cap : 16;
        rs->r = xrealloc(rs->r, rs->cap * sizeof *rs->r);
    }
    derf_dna_record *r = &rs->r[rs->n++];
    memset(r, 0, sizeof *r);
    r->name = xrealloc(NULL, namelen + 1);
    memcpy(r->name, name, namelen);
    r->name[namelen] = 0;
    return r;
}

/* One line (without '\n' / '\r\n') into *buf; 1: a line, 0: end of file, -1: read error (err set). */
static int gz_line(gzFile f, const char *path, char **buf, size_t *cap, size_t *len, char *err, size_t errlen) {
    size_t n = 0;
    if (!*buf) { *cap = 1 << 16; *buf = xrealloc(NULL, *cap); }
    for (;;) {
        if (!gzgets(f, *buf + n, (int)(*cap - n))) break;
        n += strlen(*buf + n);
        if (n && (*buf)[n - 1] == '\n') break;
        if (n + 1 < *cap) continue; /* gzgets stopped before the buffer was full: end of file */
        *cap *= 2;
        *buf = xrealloc(*buf, *cap);
    }
    int zerr;
    const char *msg = gzerror(f, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        derf_io_errf(err, errlen, "%s: %s (truncated or corrupt gzip file?)", path,
                     zerr == Z_ERRNO ? strerror(errno) : msg);
        return -1;
    }
    if (n == 0) return 0;
    if ((*buf)[n - 1] == '\n') n--;
    if (n && (*buf)[n - 1] == '\r') n--;
    (*buf)[n] = 0;
    *len = n;
    return 1;
}

static gzFile gz_open(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode)) {
        derf_io_errf(err, errlen, "%s: not a readable file (%s); install the data with 'make deps'", path,
                     errno ? strerror(errno) : "not a regular file");
        return NULL;
    }
    gzFile f = gzopen(path, "rb");
    if (!f) derf_io_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    else gzbuffer(f, 1 << 17);
    return f;
}

/* Appends sequence letters of s[0..n) to r, skipping '-' when gaps is set. Returns the index of the
 * first bad character or -1. */
static long append_seq(derf_dna_record *r, size_t *cap, const char *s, size_t n, int gaps) {
    if (r->len + n > *cap) {
        while (r->len + n > *cap) *cap = *cap ? 2 * *cap : 1 << 16;
        r->ids = xrealloc(r->ids, *cap);
        r->lower = xrealloc(r->lower, *cap);
    }
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (gaps && c == '-') continue;
        int id = derf_dna_char_id(c);
        if (id < 0) return (long)i;
        r->ids[r->len] = (uint8_t)id;
        r->lower[r->len] = c >= 'a' && c <= 'z';
        r->len++;
    }
    return -1;
}

int derf_dna_read_fasta(const char *path, derf_dna_records *out, char *err, size_t errlen) {
    gzFile f = gz_open(path, err, errlen);
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0, len = 0, seqcap = 0, lineno = 0, n0 = out->n;
    derf_dna_record *r = NULL;
    int rc, ok = 0;
    while ((rc = gz_line(f, path, &line, &cap, &len, err, errlen)) == 1) {
        lineno++;
        if (len == 0) continue;
        if (line[0] == '>') {
            if (r && r->len == 0) { derf_io_errf(err, errlen, "%s:%zu: record '%s' has no bases", path, lineno - 1, r->name); goto done; }
            size_t k = 1;
            while (k < len && line[k] != ' ' && line[k] != '\t') k++;
            r = records_push(out, line + 1, k - 1);
            seqcap = 0;
            continue;
        }
        if (!r) { derf_io_errf(err, errlen, "%s:%zu: sequence before the first '>' header (not FASTA?)", path, lineno); goto done; }
        long bad = append_seq(r, &seqcap, line, len, 0);
        if (bad >= 0) {
            derf_io_errf(err, errlen, "%s:%zu: character 0x%02x at column %ld is not a sequence letter", path, lineno,
                         (unsigned char)line[bad], bad + 1);
            goto done;
        }
    }
    if (rc < 0) goto done;
    if (!r) { derf_io_errf(err, errlen, "%s: no FASTA record (empty file, or not FASTA)", path); goto done; }
    if (r->len == 0) { derf_io_errf(err, errlen, "%s: record '%s' has no bases", path, r->name); goto done; }
    ok = 1;
done:
    free(line);
    gzclose(f);
    if (!ok) { /* drop what this call added */
        for (size_t i = n0; i < out->n; i++) { free(out->r[i].name); free(out->r[i].ids); free(out->r[i].lower); }
        out->n = n0;
        return -1;
    }
    return 0;
}

int derf_dna_read_maf(const char *path, const char *src_prefix, derf_dna_records *out, char *err, size_t errlen) {
    gzFile f = gz_open(path, err, errlen);
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0, len = 0, lineno = 0, n0 = out->n, plen = strlen(src_prefix);
    int rc, ok = 0;
    while ((rc = gz_line(f, path, &line, &cap, &len, err, errlen)) == 1) {
        lineno++;
        if (len < 2 || line[0] != 's' || (line[1] != ' ' && line[1] != '\t')) continue;
        char src[256], strand[4];
        long long start, size, srcsize;
        int off = 0;
        if (sscanf(line, "s %255s %lld %lld %3s %lld %n", src, &start, &size, strand, &srcsize, &off) != 5 || off <= 0) {
            derf_io_errf(err, errlen, "%s:%zu: malformed 's' line (want: s SRC START SIZE STRAND SRCSIZE SEQ)", path, lineno);
            goto done;
        }
        if (strncmp(src, src_prefix, plen)) continue;
        if (start < 0 || size <= 0 || srcsize <= 0 || start + size > srcsize || (strcmp(strand, "+") && strcmp(strand, "-"))) {
            derf_io_errf(err, errlen, "%s:%zu: bad coordinates (start %lld size %lld strand '%s' srcSize %lld)", path, lineno,
                         start, size, strand, srcsize);
            goto done;
        }
        derf_dna_record *r = records_push(out, src, strlen(src));
        size_t scap = 0;
        long bad = append_seq(r, &scap, line + off, len - (size_t)off, 1);
        if (bad >= 0) {
            derf_io_errf(err, errlen, "%s:%zu: character 0x%02x in the sequence is not a sequence letter or '-'", path, lineno,
                         (unsigned char)line[off + bad]);
            goto done;
        }
        if ((long long)r->len != size) {
            derf_io_errf(err, errlen, "%s:%zu: %zu bases but the size field says %lld (truncated line?)", path, lineno, r->len, size);
            goto done;
        }
        if (!strcmp(strand, "-")) { /* to '+' coordinates */
            derf_dna_revcomp(r->ids, r->ids, r->len);
            for (size_t i = 0, j = r->len; i < j;) { j--; uint8_t t = r->lower[i]; r->lower[i] = r->lower[j]; r->lower[j] = t; i++; }
            start = srcsize - start - size;
        }
        r->start = start;
    }
    if (rc < 0) goto done;
    if (out->n == n0) { derf_io_errf(err, errlen, "%s: no 's %s...' rows (empty, or not a MAF alignment)", path, src_prefix); goto done; }
    ok = 1;
done:
    free(line);
    gzclose(f);
    if (!ok) {
        for (size_t i = n0; i < out->n; i++) { free(out->r[i].name); free(out->r[i].ids); free(out->r[i].lower); }
        out->n = n0;
        return -1;
    }
    return 0;
}

/* ---- corpus ---------------------------------------------------------------------------------- */

void derf_dna_corpus_add(derf_dna_corpus *c, const uint8_t *ids, size_t n, int64_t start, int split, int source) {
    if (c->nseg == c->segcap) {
        c->segcap = c->segcap ? 2 * c->segcap : 64;
        c->seg = xrealloc(c->seg, c->segcap * sizeof *c->seg);
    }
    if (c->ntok + n > c->tokcap) {
        while (c->ntok + n > c->tokcap) c->tokcap = c->tokcap ? 2 * c->tokcap : 1 << 20;
        c->tok = xrealloc(c->tok, c->tokcap);
    }
    c->seg[c->nseg++] = (derf_dna_segment){c->ntok, (uint64_t)start, (uint32_t)n, (uint8_t)split, (uint8_t)source};
    memcpy(c->tok + c->ntok, ids, n);
    c->ntok += n;
}

void derf_dna_corpus_free(derf_dna_corpus *c) {
    free(c->seg);
    free(c->tok);
    memset(c, 0, sizeof *c);
}

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> 8 * i); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

#define HDR 56
#define SEGREC 24

static int check_name(const char *name, const char *what, char *err, size_t errlen) {
    if (strlen(name) >= 32) { derf_io_errf(err, errlen, "%s: name '%s' is longer than 31 bytes", what, name); return -1; }
    return 0;
}

int derf_dna_corpus_write(const char *path, const derf_dna_corpus *c, char *err, size_t errlen) {
    if (check_name(c->name, path, err, errlen)) return -1;
    unsigned char hdr[HDR] = {0};
    memcpy(hdr, "DERFDNAC", 8);
    put32(hdr + 8, 1);
    put32(hdr + 12, (uint32_t)c->nseg);
    put64(hdr + 16, c->ntok);
    memcpy(hdr + 24, c->name, strlen(c->name));
    derf_io_atomic a;
    if (derf_io_atomic_open(&a, path, err, errlen) || derf_io_atomic_write(&a, hdr, HDR, err, errlen)) return -1;
    for (size_t i = 0; i < c->nseg; i++) {
        unsigned char s[SEGREC] = {0};
        put64(s, c->seg[i].offset);
        put64(s + 8, c->seg[i].start);
        put32(s + 16, c->seg[i].length);
        s[20] = c->seg[i].split;
        s[21] = c->seg[i].source;
        if (derf_io_atomic_write(&a, s, SEGREC, err, errlen)) return -1;
    }
    if (derf_io_atomic_write(&a, c->tok, c->ntok, err, errlen)) return -1;
    return derf_io_atomic_commit(&a, err, errlen);
}

static int check_tokens(const uint8_t *t, size_t n, const char *name, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++)
        if (t[i] < DERF_DNA_A || t[i] > DERF_DNA_N) {
            derf_io_errf(err, errlen, "%s: token %u at position %zu is not a base id (%d..%d)", name, t[i], i, DERF_DNA_A, DERF_DNA_N);
            return -1;
        }
    return 0;
}

int derf_dna_corpus_parse(const void *data, size_t len, const char *name, derf_dna_corpus *c, char *err, size_t errlen) {
    const unsigned char *p = data;
    memset(c, 0, sizeof *c);
    if (len < HDR || memcmp(p, "DERFDNAC", 8)) {
        derf_io_errf(err, errlen, "%s: not a derf DNA corpus (bad magic or shorter than the header); build it with 'derf data dna'", name);
        return -1;
    }
    if (get32(p + 8) != 1) { derf_io_errf(err, errlen, "%s: unsupported corpus version %u", name, get32(p + 8)); return -1; }
    uint64_t nseg = get32(p + 12), ntok = get64(p + 16);
    if (p[24 + 31] != 0) { derf_io_errf(err, errlen, "%s: the name field is not NUL-terminated", name); return -1; }
    if (ntok > len || nseg > len / SEGREC || HDR + nseg * SEGREC + ntok != len) {
        derf_io_errf(err, errlen, "%s: %zu bytes, but the header says %llu segments and %llu tokens (truncated?)", name, len,
                     (unsigned long long)nseg, (unsigned long long)ntok);
        return -1;
    }
    memcpy(c->name, p + 24, 32);
    c->seg = xrealloc(NULL, nseg * sizeof *c->seg);
    c->nseg = c->segcap = nseg;
    uint64_t off = 0;
    for (size_t i = 0; i < nseg; i++) {
        const unsigned char *s = p + HDR + i * SEGREC;
        derf_dna_segment g = {get64(s), get64(s + 8), get32(s + 16), s[20], s[21]};
        if (g.offset != off || g.length == 0 || g.split > 2 || s[22] || s[23]) {
            derf_io_errf(err, errlen, "%s: segment %zu is inconsistent (offset %llu, expected %llu; length %u; split %u)", name, i,
                         (unsigned long long)g.offset, (unsigned long long)off, g.length, g.split);
            derf_dna_corpus_free(c);
            return -1;
        }
        off += g.length;
        c->seg[i] = g;
    }
    if (off != ntok) {
        derf_io_errf(err, errlen, "%s: the segments cover %llu tokens, the header says %llu", name, (unsigned long long)off,
                     (unsigned long long)ntok);
        derf_dna_corpus_free(c);
        return -1;
    }
    const uint8_t *t = p + HDR + nseg * SEGREC;
    if (check_tokens(t, ntok, name, err, errlen)) { derf_dna_corpus_free(c); return -1; }
    c->tok = xrealloc(NULL, ntok);
    memcpy(c->tok, t, ntok);
    c->ntok = c->tokcap = ntok;
    return 0;
}

/* Reads a whole file and hands it to a parser (the .dnac and .dnat readers). */
static int read_parsed(const char *path, void *obj,
                       int (*parse)(const void *, size_t, const char *, void *, char *, size_t), char *err, size_t errlen) {
    void *buf;
    size_t len;
    if (derf_io_read_file(path, (size_t)1 << 34, &buf, &len, err, errlen)) return -1;
    int rc = parse(buf, len, path, obj, err, errlen);
    free(buf);
    return rc;
}

static int corpus_parse_v(const void *d, size_t n, const char *name, void *o, char *err, size_t errlen) {
    return derf_dna_corpus_parse(d, n, name, o, err, errlen);
}

int derf_dna_corpus_read(const char *path, derf_dna_corpus *c, char *err, size_t errlen) {
    return read_parsed(path, c, corpus_parse_v, err, errlen);
}

/* ---- task ------------------------------------------------------------------------------------ */

int derf_dna_task_write(const char *path, const derf_dna_task *t, char *err, size_t errlen) {
    if (check_name(t->name, path, err, errlen)) return -1;
    if (t->n <= 0 || t->len <= 0 || t->nclass < 2 || t->nclass > 255) {
        derf_io_errf(err, errlen, "%s: bad task shape (n %d, len %d, classes %d)", path, t->n, t->len, t->nclass);
        return -1;
    }
    unsigned char hdr[HDR] = {0};
    memcpy(hdr, "DERFDNAT", 8);
    put32(hdr + 8, 1);
    put32(hdr + 12, (uint32_t)t->n);
    put32(hdr + 16, (uint32_t)t->len);
    put32(hdr + 20, (uint32_t)t->nclass);
    memcpy(hdr + 24, t->name, strlen(t->name));
    derf_io_atomic a;
    if (derf_io_atomic_open(&a, path, err, errlen) || derf_io_atomic_write(&a, hdr, HDR, err, errlen) ||
        derf_io_atomic_write(&a, t->split, (size_t)t->n, err, errlen) ||
        derf_io_atomic_write(&a, t->label, (size_t)t->n, err, errlen) ||
        derf_io_atomic_write(&a, t->tok, (size_t)t->n * (size_t)t->len, err, errlen))
        return -1;
    return derf_io_atomic_commit(&a, err, errlen);
}

void derf_dna_task_free(derf_dna_task *t) {
    free(t->split);
    free(t->label);
    free(t->tok);
    memset(t, 0, sizeof *t);
}

int derf_dna_task_parse(const void *data, size_t len, const char *name, derf_dna_task *t, char *err, size_t errlen) {
    const unsigned char *p = data;
    memset(t, 0, sizeof *t);
    if (len < HDR || memcmp(p, "DERFDNAT", 8)) {
        derf_io_errf(err, errlen, "%s: not a derf DNA task (bad magic or shorter than the header); build it with 'derf data dna'", name);
        return -1;
    }
    if (get32(p + 8) != 1) { derf_io_errf(err, errlen, "%s: unsupported task version %u", name, get32(p + 8)); return -1; }
    uint64_t n = get32(p + 12), L = get32(p + 16), nc = get32(p + 20);
    if (p[24 + 31] != 0) { derf_io_errf(err, errlen, "%s: the name field is not NUL-terminated", name); return -1; }
    if (n == 0 || L == 0 || n > (1u << 30) || L > (1u << 24) || nc < 2 || nc > 255 || HDR + n * (2 + L) != len) {
        derf_io_errf(err, errlen, "%s: %zu bytes do not hold %llu sequences of %llu bases in %llu classes (truncated or corrupt?)",
                     name, len, (unsigned long long)n, (unsigned long long)L, (unsigned long long)nc);
        return -1;
    }
    const unsigned char *sp = p + HDR, *lb = sp + n, *tk = lb + n;
    for (size_t i = 0; i < n; i++)
        if (sp[i] > 2 || lb[i] >= nc) {
            derf_io_errf(err, errlen, "%s: sequence %zu has split %u / label %u (splits 0..2, labels < %llu)", name, i, sp[i], lb[i],
                         (unsigned long long)nc);
            return -1;
        }
    if (check_tokens(tk, n * L, name, err, errlen)) return -1;
    memcpy(t->name, p + 24, 32);
    t->n = (int)n; t->len = (int)L; t->nclass = (int)nc;
    t->split = xrealloc(NULL, n);
    t->label = xrealloc(NULL, n);
    t->tok = xrealloc(NULL, n * L);
    memcpy(t->split, sp, n);
    memcpy(t->label, lb, n);
    memcpy(t->tok, tk, n * L);
    return 0;
}

static int task_parse_v(const void *d, size_t n, const char *name, void *o, char *err, size_t errlen) {
    return derf_dna_task_parse(d, n, name, o, err, errlen);
}

int derf_dna_task_read(const char *path, derf_dna_task *t, char *err, size_t errlen) {
    return read_parsed(path, t, task_parse_v, err, errlen);
}

/* ---- splits ---------------------------------------------------------------------------------- */

int derf_dna_human_split(int64_t coord) {
    int64_t bin = coord / DERF_DNA_BIN, in = coord % DERF_DNA_BIN;
    if (in < DERF_DNA_BORDER || in >= DERF_DNA_BIN - DERF_DNA_BORDER) return -1;
    return bin % 10 == 0 ? DERF_DNA_TEST : bin % 10 == 5 ? DERF_DNA_VAL : DERF_DNA_TRAIN;
}

void derf_dna_split_human(const derf_dna_records *rs, derf_dna_corpus *c, uint8_t **lower_out) {
    uint8_t *lower = NULL;
    size_t lcap = 0;
    int64_t prev_end = -1;
    for (size_t i = 0; i < rs->n; i++) {
        const derf_dna_record *r = &rs->r[i];
        size_t a = 0;
        while (a < r->len) {
            int s = derf_dna_human_split(r->start + (int64_t)a);
            size_t b = a + 1;
            while (b < r->len && derf_dna_human_split(r->start + (int64_t)b) == s) b++;
            if (s >= 0) {
                int64_t st = r->start + (int64_t)a;
                derf_dna_segment *last = c->nseg ? &c->seg[c->nseg - 1] : NULL;
                if (last && prev_end == st && last->split == s && (uint64_t)last->length + (b - a) < UINT32_MAX) {
                    /* the coordinates continue: extend the previous segment */
                    size_t n = b - a;
                    if (c->ntok + n > c->tokcap) {
                        while (c->ntok + n > c->tokcap) c->tokcap = c->tokcap ? 2 * c->tokcap : 1 << 20;
                        c->tok = xrealloc(c->tok, c->tokcap);
                    }
                    memcpy(c->tok + c->ntok, r->ids + a, n);
                    c->ntok += n;
                    last->length += (uint32_t)n;
                } else {
                    derf_dna_corpus_add(c, r->ids + a, b - a, st, s, 0);
                }
                if (lower_out) {
                    if (c->ntok > lcap) { while (c->ntok > lcap) lcap = lcap ? 2 * lcap : 1 << 20; lower = xrealloc(lower, lcap); }
                    memcpy(lower + c->ntok - (b - a), r->lower + a, b - a);
                }
                prev_end = r->start + (int64_t)b;
            } else {
                prev_end = -1;
            }
            a = b;
        }
    }
    if (lower_out) *lower_out = lower;
}

/* ---- tasks ----------------------------------------------------------------------------------- */

typedef struct { size_t pos; int split, label; } cand;

static void shuffle(cand *v, size_t n, derf_rng *r) {
    for (size_t i = n; i > 1; i--) {
        size_t j = derf_rng_below(r, (uint32_t)i);
        cand t = v[i - 1]; v[i - 1] = v[j]; v[j] = t;
    }
}

static void task_alloc(derf_dna_task *t, const char *name, int n, int len, int nclass) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n = n; t->len = len; t->nclass = nclass;
    t->split = xrealloc(NULL, (size_t)n);
    t->label = xrealloc(NULL, (size_t)n);
    t->tok = xrealloc(NULL, (size_t)n * (size_t)len);
}

int derf_dna_make_repeat_task(const derf_dna_corpus *c, const uint8_t *lower, int len, const int cap[3],
                              uint64_t seed, derf_dna_task *t, char *err, size_t errlen) {
    cand *v = NULL;
    size_t nv = 0, vcap = 0;
    for (size_t s = 0; s < c->nseg; s++) {
        const derf_dna_segment *g = &c->seg[s];
        for (size_t a = 0; a + (size_t)len <= g->length; a += (size_t)len) {
            size_t p = g->offset + a, low = 0, nn = 0;
            for (int k = 0; k < len; k++) { low += lower[p + k]; nn += c->tok[p + k] == DERF_DNA_N; }
            if (nn * 10 > (size_t)len) continue;
            int label = low * 10 >= (size_t)len * 9 ? 1 : low * 10 <= (size_t)len ? 0 : -1;
            if (label < 0) continue;
            if (nv == vcap) { vcap = vcap ? 2 * vcap : 1024; v = xrealloc(v, vcap * sizeof *v); }
            v[nv++] = (cand){p, g->split, label};
        }
    }
    derf_rng r;
    derf_rng_seed(&r, seed, 0xD4A);
    shuffle(v, nv, &r);
    size_t have[3][2] = {{0}}, take[3], total = 0;
    for (size_t i = 0; i < nv; i++) have[v[i].split][v[i].label]++;
    for (int s = 0; s < 3; s++) {
        size_t m = have[s][0] < have[s][1] ? have[s][0] : have[s][1];
        if ((size_t)cap[s] / 2 < m) m = (size_t)cap[s] / 2;
        take[s] = m;
        total += 2 * m;
        if (m == 0) {
            derf_io_errf(err, errlen, "repeat task: split %d has no windows of one class (%zu / %zu)", s, have[s][0], have[s][1]);
            free(v);
            return -1;
        }
    }
    task_alloc(t, "human_repeat_500", (int)total, len, 2);
    size_t got[3][2] = {{0}}, k = 0;
    for (size_t i = 0; i < nv; i++) {
        cand *q = &v[i];
        if (got[q->split][q->label] >= take[q->split]) continue;
        got[q->split][q->label]++;
        t->split[k] = (uint8_t)q->split;
        t->label[k] = (uint8_t)q->label;
        uint8_t *dst = t->tok + k * (size_t)len;
        memcpy(dst, c->tok + q->pos, (size_t)len);
        if (derf_rng_u32(&r) & 1) derf_dna_revcomp(dst, dst, (size_t)len);
        k++;
    }
    free(v);
    return 0;
}

/* Bacterial species from short fragments, split by strain (docs/dna.md). */
typedef struct { const char *species, *file; int split; } strain;
static const strain STRAINS[] = {
    {"E.Coli", "DH1", DERF_DNA_TEST}, {"E.Coli", "MG1655-K12", DERF_DNA_TRAIN},
    {"H.Pylori", "ELS37", DERF_DNA_TRAIN}, {"H.Pylori", "G27", DERF_DNA_TRAIN}, {"H.Pylori", "Gambia94_24", DERF_DNA_TRAIN},
    {"H.Pylori", "Puno120", DERF_DNA_TEST}, {"H.Pylori", "SJM180", DERF_DNA_TEST},
    {"S.Aureus", "COL", DERF_DNA_TRAIN}, {"S.Aureus", "JKD6008", DERF_DNA_TRAIN}, {"S.Aureus", "N315", DERF_DNA_TRAIN},
    {"S.Aureus", "RF122", DERF_DNA_TEST}, {"S.Aureus", "USA300_FPR3757", DERF_DNA_TEST},
    {"V.Cholerae", "H1", DERF_DNA_TEST}, {"V.Cholerae", "O1_Inaba", DERF_DNA_TRAIN}, {"V.Cholerae", "O1_biovar", DERF_DNA_TRAIN},
    {"V.Cholerae", "O395", DERF_DNA_TEST},
};
static const char *SPECIES[] = {"E.Coli", "H.Pylori", "S.Aureus", "V.Cholerae"};
#define NSTRAIN ((int)(sizeof STRAINS / sizeof STRAINS[0]))
#define VAL_BLOCK 100000

static int make_species_task(const char *dir, int len, const int cap[3], uint64_t seed, derf_dna_task *t,
                             size_t bases[3], char *err, size_t errlen) {
    /* pools[split][species]: a corpus of the split's sequence, one segment per record (or val block) */
    derf_dna_corpus pool[3][4];
    memset(pool, 0, sizeof pool);
    int rc = -1;
    for (int i = 0; i < NSTRAIN; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s/references/%s.fasta.gz", dir, STRAINS[i].species, STRAINS[i].file);
        derf_dna_records rs = {0};
        if (derf_dna_read_fasta(path, &rs, err, errlen)) goto done;
        int sp = 0;
        while (strcmp(SPECIES[sp], STRAINS[i].species)) sp++;
        for (size_t k = 0; k < rs.n; k++) {
            const derf_dna_record *r = &rs.r[k];
            for (size_t a = 0; a < r->len; a += VAL_BLOCK) {
                size_t n = r->len - a < VAL_BLOCK ? r->len - a : VAL_BLOCK;
                int s = STRAINS[i].split;
                /* train strains give every 10th 100-kb block (index 5 mod 10) to validation */
                if (s == DERF_DNA_TRAIN && (a / VAL_BLOCK) % 10 == 5) s = DERF_DNA_VAL;
                derf_dna_corpus_add(&pool[s][sp], r->ids + a, n, (int64_t)a, s, i);
            }
        }
        derf_dna_records_free(&rs);
    }
    int total = 0, per[3];
    for (int s = 0; s < 3; s++) { per[s] = cap[s] / 4; total += 4 * per[s]; }
    task_alloc(t, "bact_species_200", total, len, 4);
    derf_rng r;
    derf_rng_seed(&r, seed, 0xBAC);
    int k = 0;
    for (int s = 0; s < 3; s++) {
        bases[s] = 0;
        for (int sp = 0; sp < 4; sp++) {
            derf_dna_corpus *c = &pool[s][sp];
            bases[s] += c->ntok;
            for (int j = 0, tries = 0; j < per[s]; tries++) {
                if (tries > 100 * per[s] + 1000) {
                    derf_io_errf(err, errlen, "species task: too few clean %d-bp windows for %s", len, SPECIES[sp]);
                    derf_dna_task_free(t);
                    goto done;
                }
                /* a random position, then the segment that holds it (segments of < len bases are skipped) */
                size_t p = (size_t)(((uint64_t)derf_rng_u32(&r) << 32 | derf_rng_u32(&r)) % c->ntok), g = 0, lo = 0, hi = c->nseg;
                while (hi - lo > 1) { size_t m = (lo + hi) / 2; if (c->seg[m].offset <= p) lo = m; else hi = m; }
                g = lo;
                if (p + (size_t)len > c->seg[g].offset + c->seg[g].length) continue;
                size_t nn = 0;
                for (int q = 0; q < len; q++) nn += c->tok[p + q] == DERF_DNA_N;
                if (nn * 10 > (size_t)len) continue;
                t->split[k] = (uint8_t)s;
                t->label[k] = (uint8_t)sp;
                uint8_t *dst = t->tok + (size_t)k * (size_t)len;
                memcpy(dst, c->tok + p, (size_t)len);
                if (derf_rng_u32(&r) & 1) derf_dna_revcomp(dst, dst, (size_t)len);
                k++; j++;
            }
        }
    }
    rc = 0;
done:
    for (int s = 0; s < 3; s++)
        for (int sp = 0; sp < 4; sp++) derf_dna_corpus_free(&pool[s][sp]);
    return rc;
}

/* ---- the builder ----------------------------------------------------------------------------- */

static int mkdirs(const char *path, char *err, size_t errlen) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) { derf_io_errf(err, errlen, "cannot create %s: %s", buf, strerror(errno)); return -1; }
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

static void task_counts(const derf_dna_task *t, const char *path) {
    int cnt[3] = {0};
    for (int i = 0; i < t->n; i++) cnt[t->split[i]]++;
    printf("%-20s %d classes, %d bp: train %d, val %d, test %d -> %s\n", t->name, t->nclass, t->len, cnt[0], cnt[1], cnt[2], path);
}

int derf_dna_build(const derf_dna_build_opts *o, char *err, size_t errlen) {
    const char *out = o->out ? o->out : "runs/data/dna";
    char path[2048];
    if (mkdirs(out, err, errlen)) return -1;
    derf_dna_records rs = {0};
    if (derf_dna_read_maf(o->maf ? o->maf : DERF_DNA_MAF_DEFAULT, "Hsap.", &rs, err, errlen)) return -1;
    derf_dna_corpus c = {0};
    snprintf(c.name, sizeof c.name, "human_chr22");
    uint8_t *lower = NULL;
    derf_dna_split_human(&rs, &c, &lower);
    size_t raw = 0;
    for (size_t i = 0; i < rs.n; i++) raw += rs.r[i].len;
    derf_dna_records_free(&rs);
    int rc = -1;
    snprintf(path, sizeof path, "%s/human_chr22.dnac", out);
    if (derf_dna_corpus_write(path, &c, err, errlen)) goto done;
    size_t per[3] = {0}, nseg[3] = {0};
    for (size_t i = 0; i < c.nseg; i++) { per[c.seg[i].split] += c.seg[i].length; nseg[c.seg[i].split]++; }
    if (!o->quiet)
        printf("human_chr22          %zu bp read; train %zu bp (%zu segments), val %zu (%zu), test %zu (%zu) -> %s\n", raw,
               per[0], nseg[0], per[1], nseg[1], per[2], nseg[2], path);
    derf_dna_task t;
    const int cap[3] = {10000, 2000, 4000};
    if (derf_dna_make_repeat_task(&c, lower, 500, cap, o->seed, &t, err, errlen)) goto done;
    snprintf(path, sizeof path, "%s/human_repeat_500.dnat", out);
    int w = derf_dna_task_write(path, &t, err, errlen);
    if (!w && !o->quiet) task_counts(&t, path);
    derf_dna_task_free(&t);
    if (w) goto done;
    size_t bb[3];
    if (make_species_task(o->ragout ? o->ragout : DERF_DNA_RAGOUT_DEFAULT, 200, cap, o->seed, &t, bb, err, errlen)) goto done;
    snprintf(path, sizeof path, "%s/bact_species_200.dnat", out);
    w = derf_dna_task_write(path, &t, err, errlen);
    if (!w && !o->quiet) {
        task_counts(&t, path);
        printf("%-20s strain pools: train %zu bp, val %zu bp, test %zu bp\n", "", bb[0], bb[1], bb[2]);
    }
    derf_dna_task_free(&t);
    if (w) goto done;
    rc = 0;
done:
    free(lower);
    derf_dna_corpus_free(&c);
    return rc;
}
