/* safetensors.c: F32 safetensors checkpoints: an atomic writer and a reader that validates every
 * field of a possibly hostile file (header length, JSON, dtypes, shapes, offsets) before trusting
 * it. Format: see derf/safetensors.h. */
#include "derf/safetensors.h"
#include "derf/io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the file's tensor data is little-endian)"
#endif

#define MAX_EXACT 9007199254740992.0 /* 2^53: JSON numbers above this are not exact doubles */

/* ---- writer --------------------------------------------------------------------------------- */

/* prod(shape), or -1 on overflow / a negative dimension. Result * 4 fits in uint64. */
static int numel_of(const int64_t *shape, int ndim, uint64_t *numel) {
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return -1;
        uint64_t v = (uint64_t)shape[d];
        if (v != 0 && n > (UINT64_MAX / 4) / v) return -1;
        n *= v;
    }
    *numel = n;
    return 0;
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the first name that appears twice in names[0..n), or NULL. Sorts a copy. */
static const char *find_duplicate(const char **names, int n) {
    if (n < 2) return NULL;
    const char **s = malloc((size_t)n * sizeof *s);
    if (!s) return NULL;
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_cstr);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) dup = s[i];
    free(s);
    return dup;
}

int derf_safetensors_write(const char *path, const derf_st_tensor_in *t, int nt,
                           const derf_st_meta *meta, int nmeta, char *err, size_t errlen) {
    if (nt < 0 || nmeta < 0 || (nt > 0 && !t) || (nmeta > 0 && !meta)) {
        derf_io_errf(err, errlen, "cannot write '%s': bad tensor or metadata list", path);
        return -1;
    }
    const char **names = malloc(((size_t)(nt > nmeta ? nt : nmeta) + 1) * sizeof *names);
    cJSON *root = cJSON_CreateObject();
    char *json = NULL;
    int rc = -1;
    if (!names || !root) goto oom;
    for (int i = 0; i < nt; i++) {
        uint64_t numel = 0;
        if (!t[i].name || !*t[i].name || strcmp(t[i].name, "__metadata__") == 0) {
            derf_io_errf(err, errlen, "cannot write '%s': tensor %d %s", path, i,
                         t[i].name && *t[i].name ? "is named '__metadata__', which is reserved"
                                                 : "has no name");
            goto out;
        }
        if (t[i].ndim < 0 || t[i].ndim > DERF_ST_MAX_DIMS || (t[i].ndim > 0 && !t[i].shape)) {
            derf_io_errf(err, errlen, "cannot write '%s': tensor '%s' has %d dimensions (0..%d "
                         "supported)", path, t[i].name, t[i].ndim, DERF_ST_MAX_DIMS);
            goto out;
        }
        if (numel_of(t[i].shape, t[i].ndim, &numel)) {
            derf_io_errf(err, errlen, "cannot write '%s': tensor '%s' has a negative or overflowing "
                         "shape", path, t[i].name);
            goto out;
        }
        if (numel > 0 && !t[i].data) {
            derf_io_errf(err, errlen, "cannot write '%s': tensor '%s' has no data", path,
                         t[i].name);
            goto out;
        }
        names[i] = t[i].name;
    }
    const char *dup = find_duplicate(names, nt);
    if (dup) {
        derf_io_errf(err, errlen, "cannot write '%s': tensor name '%s' appears twice", path, dup);
        goto out;
    }
    for (int i = 0; i < nmeta; i++) {
        if (!meta[i].key || !meta[i].value) {
            derf_io_errf(err, errlen, "cannot write '%s': metadata entry %d has a NULL key or value",
                         path, i);
            goto out;
        }
        names[i] = meta[i].key;
    }
    dup = find_duplicate(names, nmeta);
    if (dup) {
        derf_io_errf(err, errlen, "cannot write '%s': metadata key '%s' appears twice", path, dup);
        goto out;
    }
    if (nmeta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m) goto oom;
        for (int i = 0; i < nmeta; i++)
            if (!cJSON_AddStringToObject(m, meta[i].key, meta[i].value)) goto oom;
    }
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        uint64_t numel = 0;
        numel_of(t[i].shape, t[i].ndim, &numel);
        uint64_t end = off + numel * 4;
        if (end < off || end > (uint64_t)MAX_EXACT) {
            derf_io_errf(err, errlen, "cannot write '%s': more than 2^53 bytes of tensors", path);
            goto out;
        }
        /* key order as the reference writer: dtype, shape, data_offsets */
        cJSON *o = cJSON_AddObjectToObject(root, t[i].name);
        if (!o || !cJSON_AddStringToObject(o, "dtype", "F32")) goto oom;
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        if (!shape || !offs) goto oom;
        for (int d = 0; d < t[i].ndim; d++) {
            cJSON *v = cJSON_CreateNumber((double)t[i].shape[d]);
            if (!v) goto oom;
            cJSON_AddItemToArray(shape, v);
        }
        cJSON *b = cJSON_CreateNumber((double)off), *e = cJSON_CreateNumber((double)end);
        if (!b || !e) { cJSON_Delete(b); cJSON_Delete(e); goto oom; }
        cJSON_AddItemToArray(offs, b);
        cJSON_AddItemToArray(offs, e);
        off = end;
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) goto oom;
    size_t jlen = strlen(json), hlen = (jlen + 7) / 8 * 8;
    unsigned char prefix[8];
    for (int k = 0; k < 8; k++) prefix[k] = (unsigned char)((uint64_t)hlen >> (8 * k));
    static const char spaces[8] = "        ";
    derf_io_atomic a;
    if (derf_io_atomic_open(&a, path, err, errlen)) goto out;
    if (derf_io_atomic_write(&a, prefix, 8, err, errlen) ||
        derf_io_atomic_write(&a, json, jlen, err, errlen) ||
        derf_io_atomic_write(&a, spaces, hlen - jlen, err, errlen))
        goto out;
    for (int i = 0; i < nt; i++) {
        uint64_t numel = 0;
        numel_of(t[i].shape, t[i].ndim, &numel);
        if (numel && derf_io_atomic_write(&a, t[i].data, (size_t)numel * 4, err, errlen)) goto out;
    }
    rc = derf_io_atomic_commit(&a, err, errlen);
    goto out;
oom:
    derf_io_errf(err, errlen, "cannot write '%s': out of memory", path);
out:
    free(json);
    cJSON_Delete(root);
    free(names);
    return rc;
}

/* ---- reader --------------------------------------------------------------------------------- */

void derf_safetensors_free(derf_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->ntensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->nmeta; i++) {
        free((char *)st->meta[i].key);
        free((char *)st->meta[i].value);
    }
    free(st->tensors);
    free(st->meta);
    free(st->data);
    memset(st, 0, sizeof *st);
}

static int read_exact(int fd, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got > ((size_t)1 << 30) ? ((size_t)1 << 30)
                                                                             : len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* A JSON number that is an exact non-negative integer <= 2^53. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= MAX_EXACT) || (double)(uint64_t)d != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

typedef struct {
    const char *name;
    uint64_t begin, end;
    int idx; /* entry number in the header */
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

#define NAMEFMT "%.80s" /* tensor names in messages are cut, a hostile file may have long ones */

/* Validates one tensor entry; fills out (name not copied yet) and returns 0, or -1 with err. */
static int parse_entry(const char *path, const cJSON *e, uint64_t data_len, derf_st_tensor *out,
                       span *sp, char *err, size_t errlen) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "' is not a JSON object", path, name);
        return -1;
    }
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
    if (missing) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "' has no \"%s\" field; not a valid "
                     "safetensors file", path, name, missing);
        return -1;
    }
    if (!cJSON_IsString(dtype)) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "': \"dtype\" must be a string", path,
                     name);
        return -1;
    }
    if (strcmp(dtype->valuestring, "F32") != 0) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "' has dtype %.16s, which derf does not "
                     "read (only F32); convert the checkpoint to float32", path, name,
                     dtype->valuestring);
        return -1;
    }
    if (!cJSON_IsArray(shape)) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "': \"shape\" must be an array of "
                     "integers", path, name);
        return -1;
    }
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > DERF_ST_MAX_DIMS) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "' has %d dimensions (derf reads at most "
                     "%d)", path, name, ndim, DERF_ST_MAX_DIMS);
        return -1;
    }
    uint64_t numel = 1;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t x;
        if (json_uint(v, &x)) {
            derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "': shape entry %d is not a "
                         "non-negative integer", path, name, d);
            return -1;
        }
        if (x != 0 && numel > (UINT64_MAX / 4) / x) {
            derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "': the shape's element count "
                         "overflows; the file is corrupt or hostile", path, name);
            return -1;
        }
        numel *= x;
        out->shape[d] = (int64_t)x;
    }
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_uint(offs->child, &b) ||
        json_uint(offs->child->next, &en)) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "': \"data_offsets\" must be [begin, "
                     "end] with non-negative integers", path, name);
        return -1;
    }
    if (b > en || en > data_len) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "': data_offsets [%llu, %llu] are out of "
                     "range (the data section holds %llu bytes); the file is truncated or corrupt",
                     path, name, (unsigned long long)b, (unsigned long long)en,
                     (unsigned long long)data_len);
        return -1;
    }
    if (en - b != numel * 4) {
        derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "': data_offsets [%llu, %llu] span %llu "
                     "bytes but its shape needs %llu (F32, %llu elements)", path, name,
                     (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b),
                     (unsigned long long)(numel * 4), (unsigned long long)numel);
        return -1;
    }
    out->ndim = ndim;
    out->numel = (size_t)numel;
    sp->name = name;
    sp->begin = b;
    sp->end = en;
    return 0;
}

int derf_safetensors_read(derf_safetensors *st, const char *path, size_t max_bytes, char *err,
                          size_t errlen) {
    memset(st, 0, sizeof *st);
    int fd = derf_io_open_regular(path, "checkpoint", err, errlen);
    if (fd < 0) return -1;
    char *hdr = NULL;
    cJSON *root = NULL;
    span *spans = NULL;
    const char **names = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        derf_io_errf(err, errlen, "cannot read checkpoint '%s': not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size > (uint64_t)max_bytes) {
        derf_io_errf(err, errlen, "%s: %llu bytes, more than the limit of %zu bytes", path,
                     (unsigned long long)size, max_bytes);
        goto fail;
    }
    unsigned char pre[8];
    if (size < 8 || read_exact(fd, pre, 8)) {
        derf_io_errf(err, errlen, "%s: %llu bytes, too short for a safetensors file (an 8-byte "
                     "header length comes first)", path, (unsigned long long)size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++) hlen |= (uint64_t)pre[k] << (8 * k);
    if (hlen > size - 8) {
        derf_io_errf(err, errlen, "%s: header length %llu is larger than the file (%llu bytes); "
                     "the file is truncated or not a safetensors file", path,
                     (unsigned long long)hlen, (unsigned long long)size);
        goto fail;
    }
    if (hlen > DERF_ST_MAX_HEADER) {
        derf_io_errf(err, errlen, "%s: header length %llu is over the %llu-byte limit; not a "
                     "safetensors file?", path, (unsigned long long)hlen,
                     (unsigned long long)DERF_ST_MAX_HEADER);
        goto fail;
    }
    hdr = malloc(hlen + 1);
    if (!hdr) {
        derf_io_errf(err, errlen, "%s: out of memory for a %llu-byte header", path,
                     (unsigned long long)hlen);
        goto fail;
    }
    if (read_exact(fd, hdr, hlen)) {
        derf_io_errf(err, errlen, "%s: read error in the header: %s", path, strerror(errno));
        goto fail;
    }
    hdr[hlen] = 0;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr && end <= hdr + hlen ? (size_t)(end - hdr) : 0;
        derf_io_errf(err, errlen, "%s: the header is not valid JSON (error near byte %zu of %llu); "
                     "not a safetensors file or corrupt", path, at, (unsigned long long)hlen);
        goto fail;
    }
    for (const char *p = end; p < hdr + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            derf_io_errf(err, errlen, "%s: unexpected bytes after the header's JSON (at byte %zu; "
                         "only space padding is allowed)", path, (size_t)(p - hdr));
            goto fail;
        }
    if (!cJSON_IsObject(root)) {
        derf_io_errf(err, errlen, "%s: the header is JSON but not an object; not a safetensors "
                     "file", path);
        goto fail;
    }
    uint64_t data_len = size - 8 - hlen;
    int nt = 0, nm = 0, nmetaobj = 0;
    const cJSON *metaobj = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            metaobj = e;
            nmetaobj++;
        } else {
            nt++;
        }
    }
    if (nmetaobj > 1) {
        derf_io_errf(err, errlen, "%s: \"__metadata__\" appears twice in the header", path);
        goto fail;
    }
    if (metaobj) {
        if (!cJSON_IsObject(metaobj)) {
            derf_io_errf(err, errlen, "%s: \"__metadata__\" must be an object of strings", path);
            goto fail;
        }
        for (const cJSON *m = metaobj->child; m; m = m->next, nm++)
            if (!cJSON_IsString(m)) {
                derf_io_errf(err, errlen, "%s: metadata value for '%.80s' is not a string", path,
                             m->string);
                goto fail;
            }
    }
    st->tensors = calloc(nt ? (size_t)nt : 1, sizeof *st->tensors);
    st->meta = calloc(nm ? (size_t)nm : 1, sizeof *st->meta);
    spans = calloc(nt ? (size_t)nt : 1, sizeof *spans);
    names = calloc((size_t)(nt > nm ? nt : nm) + 1, sizeof *names);
    if (!st->tensors || !st->meta || !spans || !names) goto oom;
    int i = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == metaobj) continue;
        if (parse_entry(path, e, data_len, &st->tensors[i], &spans[i], err, errlen)) goto fail;
        spans[i].idx = i;
        names[i] = e->string;
        i++;
    }
    const char *dup = find_duplicate(names, nt);
    if (dup) {
        derf_io_errf(err, errlen, "%s: tensor name '" NAMEFMT "' appears twice in the header", path,
                     dup);
        goto fail;
    }
    if (metaobj) {
        i = 0;
        for (const cJSON *m = metaobj->child; m; m = m->next) names[i++] = m->string;
        dup = find_duplicate(names, nm);
        if (dup) {
            derf_io_errf(err, errlen, "%s: metadata key '%.80s' appears twice", path, dup);
            goto fail;
        }
    }
    /* The tensors must tile the data section exactly: no overlap, no gap, nothing after. */
    qsort(spans, (size_t)nt, sizeof *spans, cmp_span);
    uint64_t pos = 0;
    for (i = 0; i < nt; i++) {
        if (spans[i].begin < pos) {
            derf_io_errf(err, errlen, "%s: tensor '" NAMEFMT "' (bytes %llu..%llu) overlaps tensor '"
                         NAMEFMT "'; the file is corrupt", path, spans[i].name,
                         (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end,
                         spans[i - 1].name);
            goto fail;
        }
        if (spans[i].begin > pos) {
            derf_io_errf(err, errlen, "%s: a gap of %llu bytes before tensor '" NAMEFMT "' (the "
                         "data must be fully described by the header); the file is corrupt", path,
                         (unsigned long long)(spans[i].begin - pos), spans[i].name);
            goto fail;
        }
        pos = spans[i].end;
    }
    if (pos != data_len) {
        derf_io_errf(err, errlen, "%s: %llu trailing bytes after the last tensor are not described "
                     "by the header; the file is corrupt", path,
                     (unsigned long long)(data_len - pos));
        goto fail;
    }
    /* All checks passed: read the data into a 64-byte aligned buffer and fill the result. */
    size_t alloc = ((size_t)data_len + 63) / 64 * 64;
    st->data = aligned_alloc(64, alloc ? alloc : 64);
    if (!st->data) goto oom;
    if (read_exact(fd, st->data, (size_t)data_len)) {
        derf_io_errf(err, errlen, "%s: read error in the tensor data (did the file change while "
                     "reading?)", path);
        goto fail;
    }
    st->data_len = (size_t)data_len;
    /* rebuild the tensor list in offset order, names and data pointers included */
    derf_st_tensor *sorted = calloc(nt ? (size_t)nt : 1, sizeof *sorted);
    if (!sorted) goto oom;
    for (i = 0; i < nt; i++) {
        sorted[i] = st->tensors[spans[i].idx];
        sorted[i].name = dup_str(spans[i].name);
        sorted[i].data = (const float *)((const char *)st->data + spans[i].begin);
        if (!sorted[i].name) {
            for (int k = 0; k < i; k++) free(sorted[k].name);
            free(sorted);
            goto oom;
        }
    }
    free(st->tensors);
    st->tensors = sorted;
    st->ntensors = nt;
    if (metaobj) {
        i = 0;
        for (const cJSON *m = metaobj->child; m; m = m->next, i++) {
            st->meta[i].key = dup_str(m->string);
            st->meta[i].value = dup_str(m->valuestring);
            st->nmeta = i + 1;
            if (!st->meta[i].key || !st->meta[i].value) goto oom;
        }
    }
    close(fd);
    free(hdr);
    free(spans);
    free(names);
    cJSON_Delete(root);
    return 0;
oom:
    derf_io_errf(err, errlen, "%s: out of memory", path);
fail:
    close(fd);
    free(hdr);
    free(spans);
    free(names);
    cJSON_Delete(root);
    derf_safetensors_free(st);
    return -1;
}

const derf_st_tensor *derf_safetensors_find(const derf_safetensors *st, const char *name) {
    for (int i = 0; i < st->ntensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *derf_safetensors_meta(const derf_safetensors *st, const char *key) {
    for (int i = 0; i < st->nmeta; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}
