/* dna.c: DNA tokenizer, MAF/FASTA readers, the corpus (.dnac) and task (.dnat) formats, the leak-free
 * splits, the Drosophila promoter task and the builder of `derf data dna` (see derf/dna.h and docs/dna.md). */
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

/* Frees the records [from, n) and sets n = from. */
static void records_truncate(derf_dna_records *rs, size_t from) {
    for (size_t i = from; i < rs->n; i++) { free(rs->r[i].name); free(rs->r[i].desc); free(rs->r[i].ids); free(rs->r[i].lower); }
    rs->n = from;
}

void derf_dna_records_free(derf_dna_records *rs) {
    records_truncate(rs, 0);
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
    char e[DERF_ERRLEN];
    if (derf_io_check_regular(path, NULL, e, sizeof e)) {
        derf_io_errf(err, errlen, "%s; install the data with 'make deps'", e);
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
            while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
            r->desc = xrealloc(NULL, len - k + 1);
            memcpy(r->desc, line + k, len - k + 1); /* with the NUL */
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
    if (!ok) { records_truncate(out, n0); if (!n0) derf_dna_records_free(out); return -1; } /* drop what this call added */
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
        /* start + size is not computed before the bounds are known: start near 2^63 would overflow */
        if (start < 0 || size <= 0 || srcsize <= 0 || srcsize > DERF_DNA_MAX_COORD || size > srcsize ||
            start > srcsize - size || (strcmp(strand, "+") && strcmp(strand, "-"))) {
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
    if (!ok) { records_truncate(out, n0); if (!n0) derf_dna_records_free(out); return -1; }
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
    size_t per[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) per[sp[i]]++;
    if (!per[DERF_DNA_TRAIN] || !per[DERF_DNA_VAL] || !per[DERF_DNA_TEST]) {
        derf_io_errf(err, errlen, "%s: a split is empty (train %zu, val %zu, test %zu sequences); a task needs all three; "
                     "rebuild it with 'derf data dna'", name, per[DERF_DNA_TRAIN], per[DERF_DNA_VAL], per[DERF_DNA_TEST]);
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

static void task_counts(const derf_dna_task *t, const char *path) {
    int cnt[3] = {0};
    for (int i = 0; i < t->n; i++) cnt[t->split[i]]++;
    printf("%-20s %d classes, %d bp: train %d, val %d, test %d -> %s\n", t->name, t->nclass, t->len, cnt[0], cnt[1], cnt[2], path);
}

/* ---- Drosophila promoters -------------------------------------------------------------------- */

/* Exactly the decimal integer s[0..n) (an optional leading '-', at most 15 characters). */
static int parse_int(const char *s, size_t n, int64_t *v) {
    size_t i = s[0] == '-' && n > 1;
    if (n == 0 || n > 15) return -1;
    int64_t x = 0;
    for (size_t k = i; k < n; k++) {
        if (s[k] < '0' || s[k] > '9') return -1;
        x = 10 * x + (s[k] - '0');
    }
    *v = i ? -x : x;
    return 0;
}

int derf_dna_parse_upstream(const char *name, const char *desc, size_t seqlen, derf_dna_upstream *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    const char *up = strstr(name, "_up_"), *last = strrchr(name, '_'), *nend = up ? strchr(up + 4, '_') : NULL, *sus = last;
    while (nend && sus > nend && *--sus != '_') {}
    int64_t n, start, end, start2;
    if (!up || !nend || sus <= nend + 1 || parse_int(up + 4, (size_t)(nend - up - 4), &n) ||
        parse_int(sus + 1, (size_t)(last - sus - 1), &start) || (strcmp(last, "_f") && strcmp(last, "_r"))) {
        derf_io_errf(err, errlen, "record '%.80s': not a UCSC upstream name <id>_up_<N>_<chrom>_<start>_<f|r>", name);
        return -1;
    }
    size_t cl = (size_t)(sus - nend - 1);
    if (cl >= sizeof u->chrom) { derf_io_errf(err, errlen, "record '%.80s': chromosome name longer than 31 bytes", name); return -1; }
    memcpy(u->chrom, nend + 1, cl);
    u->strand = last[1] == 'f' ? 1 : -1;
    const char *colon = desc ? strrchr(desc, ':') : NULL, *dash = colon && colon[1] ? strchr(colon + 2, '-') : NULL;
    if (!dash || (size_t)(colon - desc) != cl || memcmp(desc, u->chrom, cl) ||
        parse_int(colon + 1, (size_t)(dash - colon - 1), &start2) || parse_int(dash + 1, strlen(dash + 1), &end)) {
        derf_io_errf(err, errlen, "record '%.80s': description '%.80s' is not '%s:<start>-<end>'", name, desc ? desc : "", u->chrom);
        return -1;
    }
    if (n < 1 || n > 10000000 || start2 != start || end < 1 || end - start + 1 != n ||
        seqlen != (uint64_t)(start < 1 ? end : n)) {
        derf_io_errf(err, errlen, "record '%.80s': bad coordinates (%lld bases upstream, %s:%lld-%lld, %zu bases in the record)", name,
                     (long long)n, u->chrom, (long long)start2, (long long)end, seqlen);
        return -1;
    }
    u->start = start;
    u->end = end;
    u->up = (int)n;
    return 0;
}

/* the arms used, with their split; table order = arm index */
static const struct { const char *name; int split; } DMEL_ARMS[] = {
    {"chr2R", DERF_DNA_TRAIN}, {"chr3L", DERF_DNA_TRAIN}, {"chrX", DERF_DNA_TRAIN}, {"chr4", DERF_DNA_TRAIN},
    {"chr2L", DERF_DNA_VAL}, {"chr3R", DERF_DNA_TEST},
};
#define NARMS ((int)(sizeof DMEL_ARMS / sizeof DMEL_ARMS[0]))

static int dmel_arm(const char *chrom) {
    for (int i = 0; i < NARMS; i++)
        if (!strcmp(chrom, DMEL_ARMS[i].name)) return i;
    return -1;
}

int derf_dna_dmel_split(const char *chrom) {
    int a = dmel_arm(chrom);
    return a < 0 ? -1 : DMEL_ARMS[a].split;
}

/* one region (deduplicated) or one window of it */
typedef struct {
    size_t rec, off;     /* record and offset of the window in it */
    int64_t lo;          /* genome coordinate of the window's (or region's) lowest base */
    uint64_t h;          /* hash of the window up to reverse complement */
    int arm, strand, split, label, keep;
} pwin;

static int cmp_pos(const void *a, const void *b) { /* arm, lo, strand, record */
    const pwin *x = a, *y = b;
    if (x->arm != y->arm) return x->arm < y->arm ? -1 : 1;
    if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
    if (x->strand != y->strand) return x->strand < y->strand ? -1 : 1;
    return x->rec < y->rec ? -1 : x->rec > y->rec;
}
static int cmp_hash(const void *a, const void *b) {
    const pwin *x = a, *y = b;
    return x->h < y->h ? -1 : x->h > y->h ? 1 : cmp_pos(a, b);
}
static int cmp_out(const void *a, const void *b) { /* split, label, then genome order */
    const pwin *x = a, *y = b;
    if (x->split != y->split) return x->split - y->split;
    if (x->label != y->label) return x->label - y->label;
    return cmp_pos(a, b);
}

/* keeps the windows with keep set, in order; returns their number */
static size_t compact(pwin *w, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].keep) w[k++] = w[i];
    return k;
}

#define ARM_KEY(arm, lo) ((uint64_t)(arm) << 40 | (uint64_t)(lo)) /* lo >= 0: arm, then position */

/* FNV-1a of ids (rc: of their reverse complement) */
static uint64_t hash_ids(const uint8_t *p, size_t n, int rc) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (rc ? (uint8_t)derf_dna_complement(p[n - 1 - i]) : p[i])) * 1099511628211ull;
    return h;
}

/* the same bases, or the reverse complement of one another */
static int same_up_to_rc(const uint8_t *a, const uint8_t *b, size_t n) {
    if (!memcmp(a, b, n)) return 1;
    for (size_t i = 0; i < n; i++)
        if (a[i] != (uint8_t)derf_dna_complement(b[n - 1 - i])) return 0;
    return 1;
}

int derf_dna_make_promoter_task(const derf_dna_records *rs, int len, uint64_t seed, derf_dna_task *t,
                                derf_dna_promoter_stats *stats, char *err, size_t errlen) {
    derf_dna_promoter_stats st;
    memset(&st, 0, sizeof st);
    memset(t, 0, sizeof *t);
    st.records = rs->n;
    pwin *w = xrealloc(NULL, 2 * rs->n * sizeof *w);
    uint64_t *pk = xrealloc(NULL, rs->n * sizeof *pk);
    size_t nr = 0, nw = 0, np = 0;
    int rc = -1;
    if (len < 1) { derf_io_errf(err, errlen, "promoter task: window length %d must be positive", len); goto done; }
    for (size_t i = 0; i < rs->n; i++) {
        derf_dna_upstream u;
        if (derf_dna_parse_upstream(rs->r[i].name, rs->r[i].desc, rs->r[i].len, &u, err, errlen)) goto done;
        if (2 * len > u.up) {
            derf_io_errf(err, errlen, "record '%.80s': %d upstream bases cannot hold a promoter and a background window of %d",
                         rs->r[i].name, u.up, len);
            goto done;
        }
        int arm = dmel_arm(u.chrom);
        if (rs->r[i].len != (size_t)u.up) { st.clipped++; continue; }
        if (arm < 0) { st.other_arm++; continue; }
        w[nr++] = (pwin){i, 0, u.start, 0, arm, u.strand, DMEL_ARMS[arm].split, 0, 1};
    }
    /* one record per region (the transcripts of a gene that share a TSS share the region) */
    qsort(w, nr, sizeof *w, cmp_pos);
    for (size_t i = 1; i < nr; i++) {
        const pwin *a = &w[i - 1], *b = &w[i];
        if (a->arm != b->arm || a->lo != b->lo || a->strand != b->strand) continue;
        const derf_dna_record *x = &rs->r[a->rec], *y = &rs->r[b->rec];
        if (memcmp(x->ids, y->ids, x->len)) { /* same length: both full regions */
            derf_io_errf(err, errlen, "records '%.60s' and '%.60s' have the same region but different sequences", x->name, y->name);
            goto done;
        }
        w[i].keep = 0;
        st.dup_region++;
    }
    nr = compact(w, nr);
    /* two windows per region, in genome coordinates: the region is [lo, lo + up); the record runs 5'->3' in
     * the gene's orientation, so its last len bases (the promoter) are the region's top end on '+' and its
     * bottom end on '-'; the background (the record's first len bases) is the other end */
    nw = 2 * nr;
    for (size_t i = nr; i-- > 0;) {
        const int64_t far = (int64_t)(rs->r[w[i].rec].len - (size_t)len);
        pwin p = w[i], b = w[i];
        p.off = (size_t)far; p.label = 1;
        b.off = 0; b.label = 0;
        if (w[i].strand > 0) p.lo += far;
        else b.lo += far;
        w[2 * i] = p;
        w[2 * i + 1] = b;
    }
    qsort(w, nw, sizeof *w, cmp_pos);
    for (size_t i = 0; i < nw; i++)
        if (w[i].label) pk[np++] = ARM_KEY(w[i].arm, w[i].lo); /* every promoter window, sorted */
    /* promoters: one of every run of overlapping windows (either strand); backgrounds: none that overlaps
     * any promoter window, then one of every run of overlapping ones */
    int64_t hi[2] = {-1, -1};
    int arm[2] = {-1, -1};
    for (size_t i = 0; i < nw; i++) {
        pwin *x = &w[i];
        const int l = x->label;
        if (!l) {
            uint64_t k0 = ARM_KEY(x->arm, x->lo - len + 1 > 0 ? x->lo - len + 1 : 0);
            size_t a = 0, b = np; /* the first promoter window at or after k0 */
            while (a < b) { size_t m = (a + b) / 2; if (pk[m] < k0) a = m + 1; else b = m; }
            if (a < np && pk[a] <= ARM_KEY(x->arm, x->lo + len - 1)) { x->keep = 0; st.overlap_bg++; continue; }
        }
        if (x->arm == arm[l] && x->lo <= hi[l]) {
            x->keep = 0;
            if (l) st.overlap_prom++;
            else st.overlap_bg++;
            continue;
        }
        arm[l] = x->arm;
        hi[l] = x->lo + len - 1;
    }
    nw = compact(w, nw);
    /* at most 10% N */
    for (size_t i = 0; i < nw; i++) {
        const uint8_t *p = rs->r[w[i].rec].ids + w[i].off;
        int nn = 0;
        for (int k = 0; k < len; k++) nn += p[k] == DERF_DNA_N;
        if (nn * 10 > len) { w[i].keep = 0; st.n_rich++; }
    }
    nw = compact(w, nw);
    /* identical sequences (up to reverse complement): one copy, or none when the copies disagree on the
     * split or the label */
    for (size_t i = 0; i < nw; i++) {
        const uint8_t *p = rs->r[w[i].rec].ids + w[i].off;
        uint64_t a = hash_ids(p, (size_t)len, 0), b = hash_ids(p, (size_t)len, 1);
        w[i].h = a < b ? a : b;
    }
    qsort(w, nw, sizeof *w, cmp_hash);
    for (size_t i = 0; i < nw;) {
        size_t j = i + 1;
        while (j < nw && w[j].h == w[i].h) j++;
        for (size_t a = i; a < j; a++) { /* the classes of equal sequences inside one hash value */
            if (w[a].keep != 1) continue;
            const uint8_t *pa = rs->r[w[a].rec].ids + w[a].off;
            size_t cnt = 1;
            int agree = 1;
            for (size_t b = a + 1; b < j; b++) {
                if (w[b].keep != 1 || !same_up_to_rc(pa, rs->r[w[b].rec].ids + w[b].off, (size_t)len)) continue;
                w[b].keep = 2; /* a copy */
                cnt++;
                agree &= w[b].split == w[a].split && w[b].label == w[a].label;
            }
            if (cnt > 1) {
                st.dup_seq += agree ? cnt - 1 : cnt;
                if (!agree) w[a].keep = 0;
            }
        }
        for (size_t a = i; a < j; a++)
            if (w[a].keep == 2) w[a].keep = 0;
        i = j;
    }
    nw = compact(w, nw);
    /* balance: per split, both classes subsampled to the smaller one */
    qsort(w, nw, sizeof *w, cmp_out);
    size_t first[3][2] = {{0}}, take[3], total = 0;
    for (size_t i = nw; i-- > 0;) { st.avail[w[i].split][w[i].label]++; first[w[i].split][w[i].label] = i; }
    for (int s = 0; s < 3; s++) {
        take[s] = st.avail[s][0] < st.avail[s][1] ? st.avail[s][0] : st.avail[s][1];
        if (take[s] == 0) {
            derf_io_errf(err, errlen, "promoter task: split %d has no windows of one class (%zu background, %zu promoter)", s,
                         st.avail[s][0], st.avail[s][1]);
            goto done;
        }
        total += 2 * take[s];
    }
    derf_rng r;
    derf_rng_seed(&r, seed, 0xD3E1);
    for (int s = 0; s < 3; s++)
        for (int l = 0; l < 2; l++) {
            pwin *g = w + first[s][l];
            size_t n = st.avail[s][l];
            for (size_t i = 0; i < n; i++) g[i].keep = 0;
            for (size_t i = 0; i < take[s]; i++) { /* a random take[s]-subset: Floyd's algorithm */
                size_t j = n - take[s] + i, v = derf_rng_below(&r, (uint32_t)(j + 1));
                if (g[v].keep) v = j;
                g[v].keep = 1;
            }
        }
    nw = compact(w, nw);
    task_alloc(t, "", (int)total, len, 2);
    snprintf(t->name, sizeof t->name, "dmel_promoter_%d", len);
    for (size_t i = 0; i < nw; i++) {
        t->split[i] = (uint8_t)w[i].split;
        t->label[i] = (uint8_t)w[i].label;
        memcpy(t->tok + i * (size_t)len, rs->r[w[i].rec].ids + w[i].off, (size_t)len);
    }
    rc = 0;
done:
    if (stats) *stats = st;
    free(w);
    free(pk);
    return rc;
}

int derf_dna_build_promoter(const char *path, int required, const char *out, int len, uint64_t seed, int quiet,
                            char *err, size_t errlen) {
    char name[64], dst[2048];
    snprintf(name, sizeof name, "dmel_promoter_%d", len);
    struct stat sb;
    if (!required && stat(path, &sb) && errno == ENOENT) {
        if (!quiet)
            fprintf(stderr, "[derf] %s: skipped, %s is missing: 'make deps' (as root) takes it out of the r-bioc-biostrings deb "
                            "without installing R\n", name, path);
        return 1;
    }
    derf_dna_records rs = {0};
    if (derf_dna_read_fasta(path, &rs, err, errlen)) return -1;
    derf_dna_task t;
    derf_dna_promoter_stats st;
    int rc = derf_dna_make_promoter_task(&rs, len, seed, &t, &st, err, errlen);
    derf_dna_records_free(&rs);
    if (rc) {
        if (strncmp(err, path, strlen(path))) { /* name the file */
            char e2[DERF_ERRLEN];
            snprintf(e2, sizeof e2, "%s", err);
            derf_io_errf(err, errlen, "%s: %s", path, e2);
        }
        return -1;
    }
    snprintf(dst, sizeof dst, "%s/%s.dnat", out, name);
    rc = derf_dna_task_write(dst, &t, err, errlen);
    if (!rc && !quiet) {
        task_counts(&t, dst);
        printf("%-20s %zu records; dropped: %zu clipped, %zu other arms (Het, U, M), %zu repeated regions; windows dropped: "
               "%zu overlapping promoters, %zu backgrounds overlapping, %zu N-rich, %zu repeated sequences\n", "", st.records,
               st.clipped, st.other_arm, st.dup_region, st.overlap_prom, st.overlap_bg, st.n_rich, st.dup_seq);
    }
    derf_dna_task_free(&t);
    return rc;
}

/* ---- out-of-distribution corpus (U. maydis) ----------------------------------------------------- */

int derf_dna_build_ood(const char *path, int required, const char *out, const char *name, int quiet, char *err, size_t errlen) {
    struct stat sb;
    if (!required && stat(path, &sb) && errno == ENOENT) {
        if (!quiet)
            fprintf(stderr, "[derf] %s: skipped, %s is missing: 'make deps' (as root) installs maffilter-examples\n", name, path);
        return 1;
    }
    derf_dna_records rs = {0};
    if (derf_dna_read_fasta(path, &rs, err, errlen)) return -1;
    derf_dna_corpus c = {0};
    snprintf(c.name, sizeof c.name, "%s", name);
    const size_t piece = (size_t)1 << 31;
    for (size_t i = 0; i < rs.n; i++)
        for (size_t a = 0; a < rs.r[i].len; a += piece)
            derf_dna_corpus_add(&c, rs.r[i].ids + a, rs.r[i].len - a < piece ? rs.r[i].len - a : piece, (int64_t)a, DERF_DNA_TEST,
                                (int)(i & 255));
    char dst[2048];
    snprintf(dst, sizeof dst, "%s/%s.dnac", out, name);
    int rc = derf_dna_corpus_write(dst, &c, err, errlen);
    if (!rc && !quiet) {
        size_t nn = 0;
        for (size_t i = 0; i < c.ntok; i++) nn += c.tok[i] == DERF_DNA_N;
        printf("%-20s %zu records, %zu bp (%.2f%% N), all test (out-of-distribution evaluation) -> %s\n", name, rs.n, c.ntok,
               c.ntok ? 100.0 * (double)nn / (double)c.ntok : 0.0, dst);
    }
    derf_dna_records_free(&rs);
    derf_dna_corpus_free(&c);
    return rc;
}

int derf_dna_build(const derf_dna_build_opts *o, char *err, size_t errlen) {
    const char *out = o->out ? o->out : "runs/data/dna";
    char path[2048];
    if (derf_io_mkdirs(out, err, errlen)) return -1;
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
    if (derf_dna_build_promoter(o->dmel ? o->dmel : DERF_DNA_DMEL_DEFAULT, o->dmel != NULL, out,
                                o->promoter_len ? o->promoter_len : DERF_DNA_PROMOTER_LEN, o->seed, o->quiet, err, errlen) < 0)
        goto done;
    if (derf_dna_build_ood(o->umaydis ? o->umaydis : DERF_DNA_UMAYDIS_DEFAULT, o->umaydis != NULL, out, "umaydis", o->quiet, err,
                           errlen) < 0)
        goto done;
    rc = 0;
done:
    free(lower);
    derf_dna_corpus_free(&c);
    return rc;
}
