/* tokenizer.c: GPT-2 byte-level BPE (see derf/tokenizer.h). Tokens are kept as raw bytes; the
 * byte-to-unicode alphabet of encoder.json / vocab.bpe is undone once at load time. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "derf/io.h"
#include "derf/tokenizer.h"

#define CACHE_MAX (1u << 20) /* cached pieces before the cache is emptied */

typedef struct { uint64_t key; int32_t rank, id; } pair_slot; /* key 0: empty (ids are >= 0, +1) */
typedef struct { uint64_t hash; uint32_t koff, klen, ioff, n; } cache_slot; /* klen UINT32_MAX: empty */

struct derf_tokenizer {
    derf_tok_flavour flavour;
    int vocab;
    char *bytes;     /* all token bytes */
    uint32_t *off, *len;
    uint32_t *vmap;  /* bytes -> id hash (open addressing, id+1, 0 empty) */
    size_t vcap;
    int32_t byte_tok[256];
    pair_slot *pairs;
    size_t pcap, nmerges, naliases;
    pcre2_code *re;
    pcre2_match_data *md;
    int jit;
    /* per-piece cache */
    cache_slot *cache;
    size_t ccap, cn;
    char *ckeys; size_t cklen, ckcap;
    int32_t *cids; size_t cilen, cicap;
    int32_t *sym; size_t symcap; /* BPE scratch */
};

/* ---- GPT-2's byte <-> unicode alphabet ------------------------------------------------------ */

static void byte_alphabet(int enc[256], int dec[512]) {
    int n = 0;
    for (int i = 0; i < 512; i++) dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        enc[b] = printable ? b : 256 + n++;
        dec[enc[b]] = b;
    }
}

/* UTF-8 string in the byte alphabet -> raw bytes (out holds at least strlen(s)). -1 if s uses a
 * character outside the alphabet or is not UTF-8. */
static long unalphabet(const char *s, size_t n, const int dec[512], char *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) i++;
        else if ((c & 0xE0) == 0xC0 && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) {
            c = ((c & 0x1F) << 6) | (p[i + 1] & 0x3F);
            i += 2;
        } else return -1;
        if (c >= 512 || dec[c] < 0) return -1;
        out[k++] = (char)dec[c];
    }
    return (long)k;
}

/* ---- hashing -------------------------------------------------------------------------------- */

static uint64_t fnv(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int32_t vocab_find(const derf_tokenizer *t, const char *b, size_t n) {
    size_t m = t->vcap - 1;
    for (size_t h = fnv(b, n) & m;; h = (h + 1) & m) {
        uint32_t v = t->vmap[h];
        if (!v) return -1;
        int32_t id = (int32_t)v - 1;
        if (t->len[id] == n && !memcmp(t->bytes + t->off[id], b, n)) return id;
    }
}

static pair_slot *pair_slot_of(const derf_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
    size_t m = t->pcap - 1;
    for (size_t h = mix64(key) & m;; h = (h + 1) & m)
        if (t->pairs[h].key == key || t->pairs[h].key == 0) return &t->pairs[h];
}

static inline int32_t pair_rank(const derf_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    uint64_t key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
    size_t m = t->pcap - 1;
    for (size_t h = mix64(key) & m;; h = (h + 1) & m) {
        if (t->pairs[h].key == key) { *merged = t->pairs[h].id; return t->pairs[h].rank; }
        if (t->pairs[h].key == 0) return INT32_MAX;
    }
}

/* ---- loading -------------------------------------------------------------------------------- */

static int load_vocab(derf_tokenizer *t, const char *path, const int dec[512], char *err, size_t errlen) {
    void *buf = NULL;
    size_t blen = 0;
    if (derf_io_read_file(path, (size_t)64 << 20, &buf, &blen, err, errlen)) return -1;
    cJSON *root = cJSON_ParseWithLength(buf, blen);
    free(buf);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        derf_io_errf(err, errlen, "%s: not a JSON object (expected GPT-2's encoder.json; run 'make deps')", path);
        return -1;
    }
    int n = cJSON_GetArraySize(root);
    if (n < 256 || n > 65536) {
        cJSON_Delete(root);
        derf_io_errf(err, errlen, "%s: %d entries; expected 256..65536 (GPT-2 has 50257)", path, n);
        return -1;
    }
    t->vocab = n;
    size_t total = 0;
    for (cJSON *c = root->child; c; c = c->next) total += strlen(c->string);
    t->bytes = malloc(total + 1);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    for (t->vcap = 1; t->vcap < (size_t)n * 2; t->vcap <<= 1) {}
    t->vmap = calloc(t->vcap, sizeof *t->vmap);
    char *seen = calloc((size_t)n, 1);
    if (!t->bytes || !t->off || !t->len || !t->vmap || !seen) {
        free(seen);
        cJSON_Delete(root);
        derf_io_errf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    size_t pos = 0;
    int rc = 0;
    for (cJSON *c = root->child; c; c = c->next) {
        double v = c->valuedouble;
        if (!cJSON_IsNumber(c) || v < 0 || v >= n || v != (double)(int)v) {
            derf_io_errf(err, errlen, "%s: entry \"%.40s\" has id %.40s; ids must be integers 0..%d", path, c->string,
                         cJSON_IsNumber(c) ? "out of range" : "not a number", n - 1);
            rc = -1;
            break;
        }
        int id = (int)v;
        if (seen[id]) {
            derf_io_errf(err, errlen, "%s: id %d appears twice", path, id);
            rc = -1;
            break;
        }
        seen[id] = 1;
        long k = unalphabet(c->string, strlen(c->string), dec, t->bytes + pos);
        if (k <= 0) {
            derf_io_errf(err, errlen, "%s: token \"%.40s\" (id %d) is not in GPT-2's byte alphabet", path, c->string, id);
            rc = -1;
            break;
        }
        t->off[id] = (uint32_t)pos;
        t->len[id] = (uint32_t)k;
        if (vocab_find(t, t->bytes + pos, (size_t)k) >= 0) {
            derf_io_errf(err, errlen, "%s: token \"%.40s\" (id %d) duplicates another token's bytes", path, c->string, id);
            rc = -1;
            break;
        }
        size_t m = t->vcap - 1, h = fnv(t->bytes + pos, (size_t)k) & m;
        while (t->vmap[h]) h = (h + 1) & m;
        t->vmap[h] = (uint32_t)id + 1;
        pos += (size_t)k;
    }
    free(seen);
    cJSON_Delete(root);
    if (rc) return -1;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if ((t->byte_tok[b] = vocab_find(t, &c, 1)) < 0) {
            derf_io_errf(err, errlen, "%s: byte 0x%02x has no token (not a byte-level BPE vocabulary)", path, b);
            return -1;
        }
    }
    return 0;
}

static int pair_put(derf_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id) {
    pair_slot *s = pair_slot_of(t, a, b);
    if (s->key) return 1; /* present */
    s->key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
    s->rank = rank;
    s->id = id;
    return 0;
}

static int load_merges(derf_tokenizer *t, const char *path, const int dec[512], char *err, size_t errlen) {
    void *buf = NULL;
    size_t blen = 0;
    if (derf_io_read_file(path, (size_t)64 << 20, &buf, &blen, err, errlen)) return -1;
    char *s = buf, *end = s + blen;
    size_t nlines = 0;
    for (char *p = s; p < end; p++) nlines += *p == '\n';
    for (t->pcap = 1024; t->pcap < (nlines + 1) * 2; t->pcap <<= 1) {}
    t->pcap <<= 1; /* room for the JS alias pairs */
    t->pairs = calloc(t->pcap, sizeof *t->pairs);
    /* merge lines: raw bytes of A and B kept for the alias pass */
    char *raw = malloc(blen + 1);
    uint32_t (*ml)[3] = malloc((nlines + 1) * sizeof *ml); /* offset in raw, len A, len B */
    if (!t->pairs || !raw || !ml) {
        free(buf); free(raw); free(ml);
        derf_io_errf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    size_t rpos = 0, lineno = 0;
    int rc = 0;
    char *tmp = malloc(blen + 1);
    for (char *p = s; p < end && !rc;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        size_t L = (size_t)(nl - p);
        if (L && p[L - 1] == '\r') L--;
        lineno++;
        char *line = p;
        p = nl + 1;
        if (L == 0 || (lineno == 1 && L >= 8 && !memcmp(line, "#version", 8))) continue;
        char *sp = memchr(line, ' ', L);
        if (!sp || sp == line || sp + 1 >= line + L || memchr(sp + 1, ' ', (size_t)(line + L - sp - 1))) {
            derf_io_errf(err, errlen, "%s:%zu: expected 'A B' (one space)", path, lineno);
            rc = -1;
            break;
        }
        long la = unalphabet(line, (size_t)(sp - line), dec, raw + rpos);
        long lb = la > 0 ? unalphabet(sp + 1, (size_t)(line + L - sp - 1), dec, raw + rpos + la) : -1;
        if (la <= 0 || lb <= 0) {
            derf_io_errf(err, errlen, "%s:%zu: characters outside GPT-2's byte alphabet", path, lineno);
            rc = -1;
            break;
        }
        int32_t a = vocab_find(t, raw + rpos, (size_t)la), b = vocab_find(t, raw + rpos + la, (size_t)lb);
        int32_t ab = vocab_find(t, raw + rpos, (size_t)(la + lb));
        if (a < 0 || b < 0 || ab < 0) {
            derf_io_errf(err, errlen, "%s:%zu: merge '%.*s' uses or makes a token that encoder.json lacks", path, lineno,
                         (int)(L > 60 ? 60 : L), line);
            rc = -1;
            break;
        }
        if (pair_put(t, a, b, (int32_t)t->nmerges, ab)) {
            derf_io_errf(err, errlen, "%s:%zu: merge '%.*s' appears twice", path, lineno, (int)(L > 60 ? 60 : L), line);
            rc = -1;
            break;
        }
        ml[t->nmerges][0] = (uint32_t)rpos;
        ml[t->nmerges][1] = (uint32_t)la;
        ml[t->nmerges][2] = (uint32_t)lb;
        t->nmerges++;
        rpos += (size_t)(la + lb);
    }
    /* JS flavour: gpt-3-encoder looks pairs up by the string "A,B", so a pair (X, Y) with
     * X + "," + Y == A + "," + B gets merge (A, B)'s rank and is merged into X + Y. */
    if (!rc && t->flavour == DERF_TOK_JS) {
        for (size_t r = 0; r < t->nmerges; r++) {
            const char *A = raw + ml[r][0];
            size_t la = ml[r][1], lb = ml[r][2], kl = la + lb + 1;
            memcpy(tmp, A, la);
            tmp[la] = ',';
            memcpy(tmp + la + 1, A + la, lb);
            for (size_t j = 1; j + 1 < kl; j++) {
                if (tmp[j] != ',' || j == la) continue;
                int32_t x = vocab_find(t, tmp, j), y = vocab_find(t, tmp + j + 1, kl - j - 1);
                if (x < 0 || y < 0) continue;
                char *xy = malloc(kl);
                memcpy(xy, tmp, j);
                memcpy(xy + j, tmp + j + 1, kl - j - 1);
                int32_t id = vocab_find(t, xy, kl - 1);
                free(xy);
                if (id < 0) continue; /* the JS encoder would emit 'undefined' here; none in GPT-2's files */
                if (!pair_put(t, x, y, (int32_t)r, id)) t->naliases++;
            }
        }
    }
    free(tmp);
    free(ml);
    free(raw);
    free(buf);
    if (!rc && t->nmerges == 0) {
        derf_io_errf(err, errlen, "%s: no merges", path);
        rc = -1;
    }
    return rc;
}

static int compile_regex(derf_tokenizer *t, char *err, size_t errlen) {
    /* \s spelled out so both flavours are exact: Unicode White_Space (tiktoken / OpenAI) or
     * JavaScript's \s (no U+0085, adds U+FEFF). */
    const char *ws = t->flavour == DERF_TOK_JS
        ? "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"
        : "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";
    char pat[1024];
    snprintf(pat, sizeof pat,
             "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^%s\\p{L}\\p{N}]+|[%s]+(?![^%s])|[%s]+", ws, ws, ws, ws);
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                          &ec, &eo, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        derf_io_errf(err, errlen, "tokenizer: PCRE2 cannot compile the GPT-2 regex at %zu: %s", (size_t)eo, (char *)msg);
        return -1;
    }
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!t->md) {
        derf_io_errf(err, errlen, "tokenizer: out of memory");
        return -1;
    }
    return 0;
}

static int cache_reset(derf_tokenizer *t) {
    free(t->cache);
    t->ccap = 1 << 12;
    t->cache = malloc(t->ccap * sizeof *t->cache);
    if (!t->cache) return -1;
    for (size_t i = 0; i < t->ccap; i++) t->cache[i].klen = UINT32_MAX;
    t->cn = t->cklen = t->cilen = 0;
    return 0;
}

derf_tokenizer *derf_tok_load(const char *encoder_json, const char *vocab_bpe, derf_tok_flavour flavour,
                              char *err, size_t errlen) {
    derf_tokenizer *t = calloc(1, sizeof *t);
    if (!t) { derf_io_errf(err, errlen, "tokenizer: out of memory"); return NULL; }
    t->flavour = flavour;
    int enc[256], dec[512];
    byte_alphabet(enc, dec);
    if (load_vocab(t, encoder_json, dec, err, errlen) || load_merges(t, vocab_bpe, dec, err, errlen) ||
        compile_regex(t, err, errlen)) {
        derf_tok_free(t);
        return NULL;
    }
    if (cache_reset(t)) {
        derf_io_errf(err, errlen, "tokenizer: out of memory");
        derf_tok_free(t);
        return NULL;
    }
    return t;
}

derf_tokenizer *derf_tok_load_dir(const char *dir, derf_tok_flavour flavour, char *err, size_t errlen) {
    if (!dir) dir = getenv("DERF_GPT2_DIR");
    if (!dir || !*dir) dir = DERF_GPT2_DIR;
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/encoder.json", dir);
    snprintf(b, sizeof b, "%s/vocab.bpe", dir);
    return derf_tok_load(a, b, flavour, err, errlen);
}

void derf_tok_free(derf_tokenizer *t) {
    if (!t) return;
    free(t->bytes); free(t->off); free(t->len); free(t->vmap); free(t->pairs);
    if (t->md) pcre2_match_data_free(t->md);
    if (t->re) pcre2_code_free(t->re);
    free(t->cache); free(t->ckeys); free(t->cids); free(t->sym);
    free(t);
}

int derf_tok_vocab_size(const derf_tokenizer *t) { return t->vocab; }

void derf_tok_stats(const derf_tokenizer *t, size_t *merges, size_t *aliases, size_t *cached) {
    if (merges) *merges = t->nmerges;
    if (aliases) *aliases = t->naliases;
    if (cached) *cached = t->cn;
}

const char *derf_tok_bytes(const derf_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->vocab) return NULL;
    if (len) *len = t->len[id];
    return t->bytes + t->off[id];
}

/* ---- encoding ------------------------------------------------------------------------------- */

static int ids_push(derf_tok_ids *o, const int32_t *ids, size_t n) {
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->n + n) cap *= 2;
        int32_t *p = realloc(o->ids, cap * sizeof *p);
        if (!p) return -1;
        o->ids = p;
        o->cap = cap;
    }
    memcpy(o->ids + o->n, ids, n * sizeof *ids);
    o->n += n;
    return 0;
}

/* BPE of one piece into t->sym; returns the number of tokens or -1 (out of memory). */
static long bpe(derf_tokenizer *t, const unsigned char *p, size_t n) {
    if (n > t->symcap) {
        size_t cap = t->symcap ? t->symcap : 256;
        while (cap < n) cap *= 2;
        int32_t *s = realloc(t->sym, cap * sizeof *s);
        if (!s) return -1;
        t->sym = s;
        t->symcap = cap;
    }
    int32_t *w = t->sym;
    for (size_t i = 0; i < n; i++) w[i] = t->byte_tok[p[i]];
    while (n > 1) {
        int32_t best = INT32_MAX, merged = -1, m;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t r = pair_rank(t, w[i], w[i + 1], &m);
            /* the rightmost of equal ranks, as the JS encoder picks; in the GPT-2 flavour a rank
             * names one pair, so this is the usual choice */
            if (r != INT32_MAX && r <= best) { best = r; bi = i; merged = m; }
        }
        if (best == INT32_MAX) break;
        int32_t a = w[bi], b = w[bi + 1];
        size_t j = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && w[i] == a && w[i + 1] == b) { w[j++] = merged; i += 2; }
            else w[j++] = w[i++];
        }
        n = j;
    }
    return (long)n;
}

static int cache_grow(derf_tokenizer *t) {
    size_t ncap = t->ccap * 2;
    cache_slot *c = malloc(ncap * sizeof *c);
    if (!c) return -1;
    for (size_t i = 0; i < ncap; i++) c[i].klen = UINT32_MAX;
    for (size_t i = 0; i < t->ccap; i++) {
        if (t->cache[i].klen == UINT32_MAX) continue;
        size_t h = t->cache[i].hash & (ncap - 1);
        while (c[h].klen != UINT32_MAX) h = (h + 1) & (ncap - 1);
        c[h] = t->cache[i];
    }
    free(t->cache);
    t->cache = c;
    t->ccap = ncap;
    return 0;
}

static int encode_piece(derf_tokenizer *t, const char *p, size_t n, derf_tok_ids *out) {
    if (n == 0) return 0;
    if (n == 1) return ids_push(out, &t->byte_tok[(unsigned char)p[0]], 1);
    uint64_t h = fnv(p, n);
    size_t m = t->ccap - 1, i = h & m;
    for (;; i = (i + 1) & m) {
        cache_slot *s = &t->cache[i];
        if (s->klen == UINT32_MAX) break;
        if (s->hash == h && s->klen == n && !memcmp(t->ckeys + s->koff, p, n))
            return ids_push(out, t->cids + s->ioff, s->n);
    }
    long k = bpe(t, (const unsigned char *)p, n);
    if (k < 0 || ids_push(out, t->sym, (size_t)k)) return -1;
    if (n > 256) return 0; /* long runs are rare: not worth caching */
    if (t->cn >= CACHE_MAX && cache_reset(t)) return -1;
    if ((t->cn + 1) * 2 > t->ccap) {
        if (cache_grow(t)) return -1;
    }
    if (t->cklen + n > t->ckcap) {
        size_t cap = t->ckcap ? t->ckcap * 2 : 1 << 16;
        while (cap < t->cklen + n) cap *= 2;
        char *q = realloc(t->ckeys, cap);
        if (!q) return -1;
        t->ckeys = q;
        t->ckcap = cap;
    }
    if (t->cilen + (size_t)k > t->cicap) {
        size_t cap = t->cicap ? t->cicap * 2 : 1 << 14;
        while (cap < t->cilen + (size_t)k) cap *= 2;
        int32_t *q = realloc(t->cids, cap * sizeof *q);
        if (!q) return -1;
        t->cids = q;
        t->cicap = cap;
    }
    m = t->ccap - 1;
    for (i = h & m; t->cache[i].klen != UINT32_MAX; i = (i + 1) & m) {}
    t->cache[i] = (cache_slot){h, (uint32_t)t->cklen, (uint32_t)n, (uint32_t)t->cilen, (uint32_t)k};
    memcpy(t->ckeys + t->cklen, p, n);
    memcpy(t->cids + t->cilen, t->sym, (size_t)k * sizeof *t->sym);
    t->cklen += n;
    t->cilen += (size_t)k;
    t->cn++;
    return 0;
}

int derf_tok_encode(derf_tokenizer *t, const char *text, size_t len, derf_tok_ids *out, char *err, size_t errlen) {
    size_t pos = 0;
    while (pos < len) {
        int rc = t->jit ? pcre2_jit_match(t->re, (PCRE2_SPTR)text, len, pos, 0, t->md, NULL)
                        : pcre2_match(t->re, (PCRE2_SPTR)text, len, pos, 0, t->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            derf_io_errf(err, errlen, "tokenizer: PCRE2 match failed at byte %zu: %s", pos, (char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t s = ov[0], e = ov[1];
        if (e <= s || s < pos) { /* cannot happen: every alternative consumes a character */
            derf_io_errf(err, errlen, "tokenizer: empty regex match at byte %zu", s);
            return -1;
        }
        /* bytes the regex skipped are invalid UTF-8: one piece, still byte-level encoded */
        if ((s > pos && encode_piece(t, text + pos, s - pos, out)) || encode_piece(t, text + s, e - s, out)) {
            derf_io_errf(err, errlen, "tokenizer: out of memory");
            return -1;
        }
        pos = e;
    }
    if (pos < len && encode_piece(t, text + pos, len - pos, out)) {
        derf_io_errf(err, errlen, "tokenizer: out of memory");
        return -1;
    }
    return 0;
}

int derf_tok_decode(const derf_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len,
                    char *err, size_t errlen) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab) {
            derf_io_errf(err, errlen, "tokenizer: id %ld at position %zu is outside the vocabulary (0..%d)",
                         (long)ids[i], i, t->vocab - 1);
            return -1;
        }
        total += t->len[ids[i]];
    }
    char *b = malloc(total + 1);
    if (!b) { derf_io_errf(err, errlen, "tokenizer: out of memory"); return -1; }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(b + k, t->bytes + t->off[ids[i]], t->len[ids[i]]);
        k += t->len[ids[i]];
    }
    b[k] = 0;
    *out = b;
    if (out_len) *out_len = k;
    return 0;
}
