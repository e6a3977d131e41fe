/* test_io.c: checked file I/O: atomic writes (old file intact on failure), size-limited reads, IDX
 * datasets (real Fashion-MNIST plus hand-made broken files), and safetensors (round trip, an
 * independent Python reader, and hostile files). Run from the repo root. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <cjson/cJSON.h>

#include "derf/data.h"
#include "derf/io.h"
#include "derf/safetensors.h"
#include "testutil.h"

static char tmpdir[] = "/tmp/derf_test_io.XXXXXX";

/* ---- helpers -------------------------------------------------------------------------------- */

#include "tmpfiles.h"

static void write_gz(const char *path, const void *data, size_t len) {
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    if (len) assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(g), Z_OK);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static char *slurp(const char *path, size_t *len) {
    void *p = NULL;
    char err[DERF_ERRLEN];
    if (derf_io_read_file(path, (size_t)1 << 30, &p, len, err, sizeof err)) return NULL;
    return p;
}

/* Counts entries of dir whose name contains ".tmp." (leftover temp files). */
static int count_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* rc must be -1 and err one line that mentions each of the given substrings. */
#define expect_error(rc, err, ...) expect_error_(__FILE__, __LINE__, rc, err, __VA_ARGS__, NULL)
static void expect_error_(const char *file, int line, int rc, const char *err, ...) {
    int ok = rc == -1 && err[0] && !strchr(err, '\n');
    va_list ap;
    va_start(ap, err);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(err, s)) {
            fprintf(stderr, "%s:%d: error message lacks \"%s\"\n", file, line, s);
            ok = 0;
        }
    va_end(ap);
    if (!ok || getenv("DERF_TEST_VERBOSE")) /* DERF_TEST_VERBOSE=1 shows every message */
        fprintf(stderr, "%s:%d: rc=%d err=\"%s\"\n", file, line, rc, err);
    assert_true(ok);
}

/* IDX bytes: magic, dims, payload filled with (i*7+3)&255 (or given labels). Returns length. */
static size_t make_idx(uint8_t *buf, uint32_t magic, int ndim, const uint32_t *dims,
                       size_t payload) {
    size_t o = 0;
    uint32_t words[4] = {magic, dims[0], ndim > 1 ? dims[1] : 0, ndim > 2 ? dims[2] : 0};
    for (int w = 0; w < 1 + ndim; w++)
        for (int b = 3; b >= 0; b--) buf[o++] = (uint8_t)(words[w] >> (8 * b));
    for (size_t i = 0; i < payload; i++) buf[o++] = (uint8_t)((i * 7 + 3) & 255);
    return o;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int group_setup(void **state) {
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    return nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- io.c ----------------------------------------------------------------------------------- */

static void test_io_write_read_file(void **state) {
    (void)state;
    char err[DERF_ERRLEN] = "";
    const char *p = tp("plain.bin");
    assert_int_equal(derf_io_write_file(p, "hello", 5, err, sizeof err), 0);
    void *data;
    size_t len;
    assert_int_equal(derf_io_read_file(p, 100, &data, &len, err, sizeof err), 0);
    assert_int_equal(len, 5);
    assert_string_equal((char *)data, "hello"); /* NUL-terminated */
    free(data);
    assert_int_equal(count_temp_files(tmpdir), 0);

    expect_error(derf_io_read_file(p, 4, &data, &len, err, sizeof err), err, p, "limit");
    assert_null(data);
    expect_error(derf_io_read_file(tp("nope.bin"), 100, &data, &len, err, sizeof err), err,
                 "nope.bin", "No such file");
    expect_error(derf_io_read_file(tmpdir, 100, &data, &len, err, sizeof err), err, "directory");
    /* an empty file reads as an empty string */
    assert_int_equal(derf_io_write_file(p, "", 0, err, sizeof err), 0);
    assert_int_equal(derf_io_read_file(p, 100, &data, &len, err, sizeof err), 0);
    assert_int_equal(len, 0);
    free(data);
    /* writing onto a directory is refused */
    expect_error(derf_io_write_file(tmpdir, "x", 1, err, sizeof err), err, "directory");
}

static void test_io_atomic_nonexistent_dir(void **state) {
    (void)state;
    char err[DERF_ERRLEN] = "";
    const char *p = tp("no/such/dir/ckpt.bin");
    expect_error(derf_io_write_file(p, "abc", 3, err, sizeof err), err, p, "No such file",
                 "directory exist");
    assert_int_equal(count_temp_files(tmpdir), 0);
    assert_int_equal(file_size(p), -1);
    /* the same through the safetensors writer */
    float x[2] = {1, 2};
    int64_t shape[1] = {2};
    derf_st_tensor_in t = {"x", 1, shape, x};
    expect_error(derf_safetensors_write(p, &t, 1, NULL, 0, err, sizeof err), err, p);
    assert_int_equal(count_temp_files(tmpdir), 0);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* derf_io_mkdirs, the one place derf makes folders: mkdir -p, and a one-line reason when it cannot. */
static void test_io_mkdirs(void **state) {
    (void)state;
    char err[DERF_ERRLEN] = "";
    /* a nested path whose parents are all missing (a fresh clone's runs/compare), odd slashes included */
    assert_false(is_dir(tp("mk")));
    assert_int_equal(derf_io_mkdirs(tp("mk/runs//compare/"), err, sizeof err), 0);
    assert_true(is_dir(tp("mk/runs/compare")));
    /* an existing folder is fine, and nothing in it is touched */
    write_raw(tp("mk/runs/compare/keep.txt"), "x", 1);
    assert_int_equal(derf_io_mkdirs(tp("mk/runs/compare"), err, sizeof err), 0);
    assert_int_equal(file_size(tp("mk/runs/compare/keep.txt")), 1);
    /* a file in the way, as the folder itself or as a parent: refused, naming the folder and the file */
    write_raw(tp("mk/file"), "y", 1);
    char want[600];
    snprintf(want, sizeof want, "'%s' is in the way and is not a folder", tp("mk/file"));
    expect_error(derf_io_mkdirs(tp("mk/file"), err, sizeof err), err, "cannot create the folder", want);
    expect_error(derf_io_mkdirs(tp("mk/file/sub/dir"), err, sizeof err), err, tp("mk/file/sub/dir"), want);
    assert_int_equal(file_size(tp("mk/file")), 1);
    /* a dangling symbolic link in the way */
    assert_int_equal(symlink(tp("mk/nowhere"), tp("mk/dangling")), 0);
    expect_error(derf_io_mkdirs(tp("mk/dangling/x"), err, sizeof err), err, "is in the way");
    /* where the system refuses: the reason is the system's own (strerror of what mkdir(2) says) */
    errno = 0;
    assert_int_not_equal(mkdir("/proc/derf-no-such-folder", 0777), 0);
    const char *why = strerror(errno);
    expect_error(derf_io_mkdirs("/proc/derf-no-such-folder/a/b", err, sizeof err), err,
                 "'/proc/derf-no-such-folder/a/b'", why);
    if (geteuid() != 0) { /* no permission (root may write anywhere) */
        assert_int_equal(mkdir(tp("mk/locked"), 0500), 0);
        expect_error(derf_io_mkdirs(tp("mk/locked/sub"), err, sizeof err), err, tp("mk/locked/sub"), strerror(EACCES));
        chmod(tp("mk/locked"), 0700);
    }
    /* an empty name and a name too long for a path */
    expect_error(derf_io_mkdirs("", err, sizeof err), err, "empty");
    char *longp = malloc(5000);
    memset(longp, 'a', 4999);
    longp[4999] = 0;
    expect_error(derf_io_mkdirs(longp, err, sizeof err), err, "longer");
    free(longp);
}

/* The old file stays in place until commit; abort leaves it; commit replaces it. */
static void test_io_atomic_replace_only_on_commit(void **state) {
    (void)state;
    char err[DERF_ERRLEN] = "";
    const char *p = tp("replace.bin");
    assert_int_equal(derf_io_write_file(p, "old contents", 12, err, sizeof err), 0);
    chmod(p, 0600);

    derf_io_atomic a;
    assert_int_equal(derf_io_atomic_open(&a, p, err, sizeof err), 0);
    assert_int_equal(derf_io_atomic_write(&a, "new ", 4, err, sizeof err), 0);
    assert_int_equal(derf_io_atomic_write(&a, "contents!", 9, err, sizeof err), 0);
    size_t len;
    char *got = slurp(p, &len);
    assert_non_null(got);
    assert_string_equal(got, "old contents"); /* not replaced yet */
    free(got);
    assert_int_equal(count_temp_files(tmpdir), 1); /* the data is in the temp file */
    assert_int_equal(derf_io_atomic_commit(&a, err, sizeof err), 0);
    got = slurp(p, &len);
    assert_string_equal(got, "new contents!");
    free(got);
    assert_int_equal(count_temp_files(tmpdir), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* the old file's mode is kept */

    /* abort: old file intact, temp gone, abort twice is harmless, later writes fail cleanly */
    assert_int_equal(derf_io_atomic_open(&a, p, err, sizeof err), 0);
    assert_int_equal(derf_io_atomic_write(&a, "XXXX", 4, err, sizeof err), 0);
    derf_io_atomic_abort(&a);
    derf_io_atomic_abort(&a);
    expect_error(derf_io_atomic_write(&a, "Y", 1, err, sizeof err), err, "aborted");
    expect_error(derf_io_atomic_commit(&a, err, sizeof err), err, "aborted");
    got = slurp(p, &len);
    assert_string_equal(got, "new contents!");
    free(got);
    assert_int_equal(count_temp_files(tmpdir), 0);
}

/* A write that really fails half-way (file size limit, which binds root too): the old file is
 * untouched and no temp file remains. */
static void test_io_atomic_write_fails_midway(void **state) {
    (void)state;
    char err[DERF_ERRLEN] = "";
    const char *p = tp("limited.bin");
    const char *ck = tp("limited.safetensors");
    float small[4] = {1, 2, 3, 4};
    int64_t shape_small[1] = {4};
    derf_st_tensor_in ts = {"w", 1, shape_small, small};
    assert_int_equal(derf_io_write_file(p, "precious", 8, err, sizeof err), 0);
    assert_int_equal(derf_safetensors_write(ck, &ts, 1, NULL, 0, err, sizeof err), 0);
    long ck_size = file_size(ck);

    size_t big_n = 1 << 16;
    float *big = calloc(big_n, sizeof *big);
    assert_non_null(big);
    int64_t shape_big[1] = {(int64_t)big_n};
    derf_st_tensor_in tb = {"w", 1, shape_big, big};

    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 4096) {
        free(big);
        skip();
    }
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {4096, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    /* nothing may print in this window: stdout could be a file */
    int rc1 = derf_io_write_file(p, big, big_n * sizeof *big, err, sizeof err);
    char err2[DERF_ERRLEN] = "";
    int rc2 = derf_safetensors_write(ck, &tb, 1, NULL, 0, err2, sizeof err2);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, oldsig);
    free(big);

    expect_error(rc1, err, p, "File too large", "untouched");
    expect_error(rc2, err2, ck, "File too large");
    size_t len;
    char *got = slurp(p, &len);
    assert_non_null(got);
    assert_string_equal(got, "precious");
    free(got);
    assert_int_equal(file_size(ck), ck_size);
    derf_safetensors st;
    assert_int_equal(derf_safetensors_read(&st, ck, 1 << 20, err, sizeof err), 0);
    assert_int_equal(st.ntensors, 1);
    assert_int_equal(st.tensors[0].numel, 4);
    assert_true(st.tensors[0].data[3] == 4.0f);
    derf_safetensors_free(&st);
    assert_int_equal(count_temp_files(tmpdir), 0);
}

/* ---- IDX / datasets ------------------------------------------------------------------------- */

static int have_fashion_mnist(void) {
    return file_size(DERF_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz") > 0;
}

static void test_fashion_mnist_test_split(void **state) {
    (void)state;
    if (!have_fashion_mnist()) {
        fprintf(stderr, "# Fashion-MNIST not installed (make deps); skipping\n");
        skip();
    }
    char err[DERF_ERRLEN] = "";
    derf_dataset ds;
    int rc = derf_dataset_load(&ds, DERF_FASHION_MNIST_DIR, "test", err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.rows, 28);
    assert_int_equal(ds.cols, 28);
    int hist[10] = {0};
    for (int i = 0; i < ds.n; i++) hist[ds.labels[i]]++;
    for (int c = 0; c < 10; c++) assert_int_equal(hist[c], 1000);
    static const uint8_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7}; /* ankle boot, pullover, ... */
    assert_memory_equal(ds.labels, first, 10);
    uint64_t sum = 0, first_sum = 0;
    uint8_t lo = 255, hi = 0;
    size_t npix = (size_t)ds.n * 28 * 28;
    for (size_t i = 0; i < npix; i++) {
        sum += ds.images[i];
        if (ds.images[i] < lo) lo = ds.images[i];
        if (ds.images[i] > hi) hi = ds.images[i];
    }
    for (int i = 0; i < 784; i++) first_sum += ds.images[i];
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 255);
    assert_int_equal(sum, 573469082ULL); /* mean pixel 73.15 */
    assert_int_equal(first_sum, 33456);
    assert_int_equal(ds.images[0], 0); /* the background is black: corners are 0 */
    derf_dataset_free(&ds);
    assert_null(ds.images);
}

static void test_fashion_mnist_train_split(void **state) {
    (void)state;
    if (!have_fashion_mnist()) skip();
    char err[DERF_ERRLEN] = "";
    derf_dataset ds;
    assert_int_equal(derf_dataset_load(&ds, DERF_FASHION_MNIST_DIR, "train", err, sizeof err), 0);
    assert_int_equal(ds.n, 60000);
    int hist[10] = {0};
    for (int i = 0; i < ds.n; i++) hist[ds.labels[i]]++;
    for (int c = 0; c < 10; c++) assert_int_equal(hist[c], 6000);
    uint64_t sum = 0;
    for (size_t i = 0; i < (size_t)ds.n * 784; i++) sum += ds.images[i];
    assert_int_equal(sum, 3431114169ULL);
    derf_dataset_free(&ds);
    /* the files one by one, and a swapped pair */
    int n, r, c;
    uint8_t *px;
    const char *lab = DERF_FASHION_MNIST_DIR "/train-labels-idx1-ubyte.gz";
    expect_error(derf_idx_read_images(lab, &n, &r, &c, &px, err, sizeof err), err, lab,
                 "bad magic 0x00000801", "swapped");
}

/* The default-location helper; MNIST is checked when the install step put it in place. */
static void test_data_locations(void **state) {
    (void)state;
    int n;
    const derf_data_location *loc = derf_data_locations(&n);
    int fm = 0, mn = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(loc[i].name, "fashion-mnist") && !strcmp(loc[i].dir, DERF_FASHION_MNIST_DIR))
            fm = 1;
        if (!strcmp(loc[i].name, "mnist") && !strcmp(loc[i].dir, DERF_MNIST_DIR)) mn = 1;
        assert_non_null(loc[i].how);
    }
    assert_true(fm && mn);
    char dir[512], err[DERF_ERRLEN] = "";
    expect_error(derf_data_find_dir("cifar", dir, sizeof dir, err, sizeof err), err, "cifar",
                 "unknown dataset");
    if (have_fashion_mnist()) {
        assert_int_equal(derf_data_find_dir("fashion-mnist", dir, sizeof dir, err, sizeof err), 0);
        assert_string_equal(dir, DERF_FASHION_MNIST_DIR);
    }
    if (derf_data_find_dir("mnist", dir, sizeof dir, err, sizeof err) != 0) {
        expect_error(-1, err, DERF_MNIST_DIR, "make deps");
        return;
    }
    derf_dataset ds; /* the real MNIST: its train label histogram is well known */
    assert_int_equal(derf_dataset_load(&ds, dir, "train", err, sizeof err), 0);
    static const int want[10] = {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949};
    int hist[10] = {0};
    for (int i = 0; i < ds.n; i++) hist[ds.labels[i]]++;
    assert_int_equal(ds.n, 60000);
    assert_memory_equal(hist, want, sizeof want);
    derf_dataset_free(&ds);
}

/* A small synthetic dataset, plain and gzip'd, with both test prefixes. */
static void test_idx_synthetic(void **state) {
    (void)state;
    char err[DERF_ERRLEN] = "";
    uint8_t img[16 + 5 * 3 * 4], lab[8 + 5];
    uint32_t di[3] = {5, 3, 4}, dl[1] = {5};
    size_t ni = make_idx(img, 0x803, 3, di, 60), nl = make_idx(lab, 0x801, 1, dl, 0);
    for (int i = 0; i < 5; i++) lab[8 + i] = (uint8_t)(9 - i);
    nl += 5;
    mkdir(tp("syn_plain"), 0755);
    mkdir(tp("syn_gz"), 0755);
    write_raw(tp("syn_plain/t10k-images-idx3-ubyte"), img, ni);
    write_raw(tp("syn_plain/t10k-labels-idx1-ubyte"), lab, nl);
    write_gz(tp("syn_gz/test-images-idx3-ubyte.gz"), img, ni);
    write_gz(tp("syn_gz/test-labels-idx1-ubyte.gz"), lab, nl);
    for (int gz = 0; gz < 2; gz++) {
        derf_dataset ds;
        int rc = derf_dataset_load(&ds, tp(gz ? "syn_gz" : "syn_plain"), "test", err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
        assert_int_equal(ds.n, 5);
        assert_int_equal(ds.rows, 3);
        assert_int_equal(ds.cols, 4);
        assert_memory_equal(ds.images, img + 16, 60);
        assert_memory_equal(ds.labels, lab + 8, 5);
        derf_dataset_free(&ds);
    }
    derf_dataset ds;
    expect_error(derf_dataset_load(&ds, tp("syn_plain"), "train", err, sizeof err), err,
                 "syn_plain", "no train images", "train-images-idx3-ubyte[.gz]");
    expect_error(derf_dataset_load(&ds, tp("syn_plain"), "valid", err, sizeof err), err,
                 "unknown split 'valid'");
    expect_error(derf_dataset_load(&ds, tp("missing_dir"), "test", err, sizeof err), err,
                 "missing_dir", "does not exist");
    assert_null(ds.images);

    /* counts that disagree, and a label out of range */
    mkdir(tp("syn_bad"), 0755);
    write_raw(tp("syn_bad/train-images-idx3-ubyte"), img, ni);
    dl[0] = 4;
    make_idx(lab, 0x801, 1, dl, 0);
    write_raw(tp("syn_bad/train-labels-idx1-ubyte"), lab, 8 + 4);
    expect_error(derf_dataset_load(&ds, tp("syn_bad"), "train", err, sizeof err), err,
                 "5 images", "4 labels");
    dl[0] = 5;
    make_idx(lab, 0x801, 1, dl, 0);
    lab[8 + 3] = 10;
    write_raw(tp("syn_bad/train-labels-idx1-ubyte"), lab, nl);
    expect_error(derf_dataset_load(&ds, tp("syn_bad"), "train", err, sizeof err), err,
                 "label 10 of item 3", "out of range");
}

/* Each broken file gives an error that names the problem. */
static void test_idx_broken_files(void **state) {
    (void)state;
    char err[DERF_ERRLEN] = "";
    static uint8_t buf[16 + 4 * 28 * 28 + 64];
    uint32_t dims[3] = {4, 28, 28};
    size_t full = make_idx(buf, 0x803, 3, dims, 4 * 784);
    int n, r, c;
    uint8_t *px = (uint8_t *)1;
    const char *p = tp("broken-images-idx3-ubyte");
    const char *pg = tp("broken-images-idx3-ubyte.gz");

    /* sanity: the intact file reads, plain and gzip'd */
    write_raw(p, buf, full);
    assert_int_equal(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), 0);
    assert_int_equal(n, 4);
    free(px);
    write_gz(pg, buf, full);
    assert_int_equal(derf_idx_read_images(pg, &n, &r, &c, &px, err, sizeof err), 0);
    free(px);

    /* truncated payload, plain and gzip'd; truncated header */
    write_raw(p, buf, full - 1);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, p, "truncated",
                 "4 images of 28x28");
    assert_null(px);
    write_gz(pg, buf, full - 100);
    expect_error(derf_idx_read_images(pg, &n, &r, &c, &px, err, sizeof err), err, pg, "truncated");
    write_raw(p, buf, 10);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, "truncated",
                 "header");
    write_raw(p, buf, 2);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, "truncated");
    write_raw(p, buf, 0);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, "truncated");

    /* a gzip stream cut short (the compressed bytes themselves) */
    write_gz(pg, buf, full);
    size_t glen;
    char *g = slurp(pg, &glen);
    assert_non_null(g);
    write_raw(pg, g, glen / 2);
    expect_error(derf_idx_read_images(pg, &n, &r, &c, &px, err, sizeof err), err, pg);
    assert_true(strstr(err, "truncated") || strstr(err, "corrupt"));
    /* a flipped byte in the compressed data: a CRC or inflate error, never silent garbage */
    g[glen / 2] ^= 0x55;
    write_raw(pg, g, glen);
    expect_error(derf_idx_read_images(pg, &n, &r, &c, &px, err, sizeof err), err, pg);
    free(g);

    /* trailing bytes, plain and gzip'd */
    write_raw(p, buf, full + 3);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, "3 trailing bytes");
    write_gz(pg, buf, full + 3);
    expect_error(derf_idx_read_images(pg, &n, &r, &c, &px, err, sizeof err), err, pg,
                 "3 trailing bytes");

    /* bad magic: not IDX, wrong element type, labels where images belong */
    memcpy(buf, "GIF89a", 6);
    write_raw(p, buf, full);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, "bad magic",
                 "not an IDX file");
    make_idx(buf, 0x0D03, 3, dims, 0);
    write_raw(p, buf, full);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, "bad magic",
                 "0x0d");
    make_idx(buf, 0x801, 1, dims, 0);
    write_raw(p, buf, 8 + 4);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err,
                 "bad magic 0x00000801", "labels");
    make_idx(buf, 0x803, 3, dims, 0);
    write_raw(p, buf, full);
    uint8_t *lb;
    expect_error(derf_idx_read_labels(p, &n, &lb, err, sizeof err), err, "bad magic 0x00000803",
                 "swapped");

    /* huge or zero dimensions: refused from the header, before any big allocation */
    uint32_t huge[3] = {0xFFFFFFFFu, 28, 28};
    make_idx(buf, 0x803, 3, huge, 0);
    write_raw(p, buf, full);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err,
                 "bad dimension 0", "4294967295");
    write_gz(pg, buf, full);
    expect_error(derf_idx_read_images(pg, &n, &r, &c, &px, err, sizeof err), err, "bad dimension");
    uint32_t zero[3] = {4, 0, 28};
    make_idx(buf, 0x803, 3, zero, 0);
    write_raw(p, buf, full);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, "bad dimension 1");
    uint32_t wide[3] = {4, 28, 100000};
    make_idx(buf, 0x803, 3, wide, 0);
    write_raw(p, buf, full);
    expect_error(derf_idx_read_images(p, &n, &r, &c, &px, err, sizeof err), err, "bad dimension 2");
    uint32_t big[3] = {DERF_IDX_MAX_N, 4096, 4096}; /* each in range, the product is not */
    make_idx(buf, 0x803, 3, big, 0);
    write_gz(pg, buf, full);
    expect_error(derf_idx_read_images(pg, &n, &r, &c, &px, err, sizeof err), err,
                 "bad dimensions", "more than");
    /* a plausible but large header on a small gzip file: truncated, without allocating it all */
    uint32_t many[3] = {1000000, 28, 28};
    make_idx(buf, 0x803, 3, many, 4 * 784);
    write_gz(pg, buf, full);
    expect_error(derf_idx_read_images(pg, &n, &r, &c, &px, err, sizeof err), err, "truncated",
                 "1000000 images");

    expect_error(derf_idx_read_labels(tp("nothing.idx"), &n, &lb, err, sizeof err), err,
                 "nothing.idx", "No such file");
}

/* ---- safetensors ---------------------------------------------------------------------------- */

static void test_st_roundtrip(void **state) {
    (void)state;
    uint64_t seed = tu_seed();
    float w[3 * 5], b[5], s = 3.5f;
    tu_fill(w, 15, &seed, -2, 2);
    tu_fill(b, 5, &seed, -1, 1);
    int64_t sw[2] = {3, 5}, sb[1] = {5}, se[2] = {0, 4};
    derf_st_tensor_in t[4] = {
        {"blocks.0.attn.w", 2, sw, w}, {"blocks.0.attn.b", 1, sb, b}, {"scalar", 0, NULL, &s},
        {"empty", 2, se, NULL}};
    derf_st_meta meta[2] = {{"config", "{\"model\":\"vit\",\"norm\":\"derf\"}"},
                            {"step", "12"}};
    const char *p = tp("round.safetensors");
    char err[DERF_ERRLEN] = "";
    int rc = derf_safetensors_write(p, t, 4, meta, 2, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(count_temp_files(tmpdir), 0);

    size_t len;
    unsigned char *raw = (unsigned char *)slurp(p, &len);
    assert_non_null(raw);
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++) hlen |= (uint64_t)raw[k] << (8 * k);
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(raw[8], '{');
    assert_int_equal(len, 8 + hlen + (15 + 5 + 1) * 4);
    assert_memory_equal(raw + 8 + hlen, w, sizeof w); /* data in the order given, little-endian */
    free(raw);

    derf_safetensors st;
    rc = derf_safetensors_read(&st, p, 1 << 20, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(st.ntensors, 4);
    const derf_st_tensor *x = derf_safetensors_find(&st, "blocks.0.attn.w");
    assert_non_null(x);
    assert_int_equal(x->ndim, 2);
    assert_int_equal(x->shape[0], 3);
    assert_int_equal(x->shape[1], 5);
    assert_int_equal(x->numel, 15);
    assert_memory_equal(x->data, w, sizeof w);
    assert_int_equal((uintptr_t)x->data % 64, 0);
    x = derf_safetensors_find(&st, "blocks.0.attn.b");
    assert_memory_equal(x->data, b, sizeof b);
    assert_int_equal((uintptr_t)x->data % 4, 0);
    x = derf_safetensors_find(&st, "scalar");
    assert_int_equal(x->ndim, 0);
    assert_int_equal(x->numel, 1);
    assert_true(x->data[0] == 3.5f);
    x = derf_safetensors_find(&st, "empty");
    assert_int_equal(x->numel, 0);
    assert_int_equal(x->shape[1], 4);
    assert_null(derf_safetensors_find(&st, "nope"));
    assert_string_equal(derf_safetensors_meta(&st, "config"), meta[0].value);
    assert_string_equal(derf_safetensors_meta(&st, "step"), "12");
    assert_null(derf_safetensors_meta(&st, "lr"));
    derf_safetensors_free(&st);
    assert_null(st.tensors);

    /* overwrite in place with a different checkpoint */
    assert_int_equal(derf_safetensors_write(p, t + 2, 1, NULL, 0, err, sizeof err), 0);
    assert_int_equal(derf_safetensors_read(&st, p, 1 << 20, err, sizeof err), 0);
    assert_int_equal(st.ntensors, 1);
    assert_int_equal(st.nmeta, 0);
    derf_safetensors_free(&st);
    /* no tensors at all is a valid file */
    assert_int_equal(derf_safetensors_write(p, NULL, 0, meta, 1, err, sizeof err), 0);
    assert_int_equal(derf_safetensors_read(&st, p, 1 << 20, err, sizeof err), 0);
    assert_int_equal(st.ntensors, 0);
    assert_string_equal(derf_safetensors_meta(&st, "config"), meta[0].value);
    derf_safetensors_free(&st);
    expect_error(derf_safetensors_read(&st, p, 16, err, sizeof err), err, p, "limit");
}

static void test_st_writer_rejects(void **state) {
    (void)state;
    char err[DERF_ERRLEN] = "";
    float x[4] = {0};
    int64_t s1[1] = {4}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, neg[1] = {-4};
    const char *p = tp("reject.safetensors");
    derf_st_tensor_in dup[2] = {{"a", 1, s1, x}, {"a", 1, s1, x}};
    expect_error(derf_safetensors_write(p, dup, 2, NULL, 0, err, sizeof err), err, "'a'", "twice");
    derf_st_tensor_in t9 = {"deep", 9, s9, x};
    expect_error(derf_safetensors_write(p, &t9, 1, NULL, 0, err, sizeof err), err, "deep",
                 "9 dimensions");
    derf_st_tensor_in tn = {"neg", 1, neg, x};
    expect_error(derf_safetensors_write(p, &tn, 1, NULL, 0, err, sizeof err), err, "neg",
                 "negative");
    derf_st_tensor_in nodata = {"nodata", 1, s1, NULL};
    expect_error(derf_safetensors_write(p, &nodata, 1, NULL, 0, err, sizeof err), err, "no data");
    derf_st_tensor_in reserved = {"__metadata__", 1, s1, x};
    expect_error(derf_safetensors_write(p, &reserved, 1, NULL, 0, err, sizeof err), err,
                 "'__metadata__'", "reserved");
    derf_st_meta md[2] = {{"k", "1"}, {"k", "2"}};
    expect_error(derf_safetensors_write(p, dup, 1, md, 2, err, sizeof err), err, "metadata key 'k'");
    assert_int_equal(file_size(p), -1);
    assert_int_equal(count_temp_files(tmpdir), 0);
}

/* The C writer's file, read by an independent Python reader (stdlib + numpy). */
static void test_st_python_reader(void **state) {
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "# /usr/bin/python3 missing; skipping\n");
        skip();
    }
    assert_int_equal(access("tools/safetensors_check.py", R_OK), 0); /* run from the repo root */
    uint64_t seed = tu_seed() ^ 0x5a5a;
    enum { NT = 5 };
    static const char *names[NT] = {"wte", "blocks.0.norm.alpha", "blocks.0.mlp.fc.w",
                                    "lm_head.bias", "pos"};
    int64_t shapes[NT][3] = {{50, 16, 0}, {1, 0, 0}, {16, 64, 0}, {7, 0, 0}, {2, 3, 4}};
    int ndims[NT] = {2, 1, 2, 1, 3};
    float *data[NT];
    derf_st_tensor_in t[NT];
    for (int i = 0; i < NT; i++) {
        size_t n = 1;
        for (int d = 0; d < ndims[i]; d++) n *= (size_t)shapes[i][d];
        data[i] = malloc(n * sizeof(float));
        tu_fill(data[i], n, &seed, -3, 5);
        t[i] = (derf_st_tensor_in){names[i], ndims[i], shapes[i], data[i]};
    }
    derf_st_meta meta[2] = {{"format", "pt"}, {"derf_config", "{\"dim\": 16, \"quote\": \"\\\"\"}"}};
    const char *p = tp("py.safetensors");
    char err[DERF_ERRLEN] = "";
    assert_int_equal(derf_safetensors_write(p, t, NT, meta, 2, err, sizeof err), 0);

    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/safetensors_check.py '%s'", p);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    static char out[1 << 16];
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    int status = pclose(f);
    if (status != 0) fprintf(stderr, "python reader failed (status %d): %s\n", status, out);
    assert_int_equal(status, 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    cJSON *tensors = cJSON_GetObjectItem(j, "tensors");
    assert_int_equal(cJSON_GetArraySize(tensors), NT);
    for (int i = 0; i < NT; i++) { /* data order = the order written */
        cJSON *e = cJSON_GetArrayItem(tensors, i);
        assert_string_equal(cJSON_GetObjectItem(e, "name")->valuestring, names[i]);
        assert_string_equal(cJSON_GetObjectItem(e, "dtype")->valuestring, "F32");
        cJSON *shape = cJSON_GetObjectItem(e, "shape");
        assert_int_equal(cJSON_GetArraySize(shape), ndims[i]);
        size_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) {
            assert_int_equal(cJSON_GetArrayItem(shape, d)->valuedouble, shapes[i][d]);
            numel *= (size_t)shapes[i][d];
        }
        double sum = 0, abs_sum = 0;
        for (size_t k = 0; k < numel; k++) {
            sum += data[i][k];
            abs_sum += fabs(data[i][k]);
        }
        double psum = cJSON_GetObjectItem(e, "sum")->valuedouble;
        double pabs = cJSON_GetObjectItem(e, "abs_sum")->valuedouble;
        if (fabs(psum - sum) > 1e-9 * abs_sum || fabs(pabs - abs_sum) > 1e-9 * abs_sum)
            fprintf(stderr, "%s: python sum %.17g abs %.17g, C sum %.17g abs %.17g\n", names[i],
                    psum, pabs, sum, abs_sum);
        assert_true(fabs(psum - sum) <= 1e-9 * abs_sum);
        assert_true(fabs(pabs - abs_sum) <= 1e-9 * abs_sum);
        assert_true(cJSON_GetObjectItem(e, "first")->valuedouble == (double)data[i][0]);
        free(data[i]);
    }
    cJSON *m = cJSON_GetObjectItem(j, "metadata");
    assert_string_equal(cJSON_GetObjectItem(m, "format")->valuestring, "pt");
    assert_string_equal(cJSON_GetObjectItem(m, "derf_config")->valuestring, meta[1].value);
    assert_int_equal((int)cJSON_GetObjectItem(j, "header_len")->valuedouble % 8, 0);
    cJSON_Delete(j);
}

/* Writes 8-byte length (hlen, or strlen(header) when hlen == UINT64_MAX), header, data_len bytes. */
static void write_st_raw(const char *path, const char *header, uint64_t hlen, size_t data_len) {
    size_t h = strlen(header);
    if (hlen == UINT64_MAX) hlen = h;
    unsigned char *buf = calloc(1, 8 + h + data_len);
    for (int k = 0; k < 8; k++) buf[k] = (unsigned char)(hlen >> (8 * k));
    memcpy(buf + 8, header, h);
    for (size_t i = 0; i < data_len; i++) buf[8 + h + i] = (unsigned char)i;
    write_raw(path, buf, 8 + h + data_len);
    free(buf);
}

#define T(name, body) "\"" name "\":{" body "}"
#define F32(shape, b, e) "\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]"

static void test_st_hostile(void **state) {
    (void)state;
    static const struct {
        const char *header;
        uint64_t hlen; /* UINT64_MAX: the header's length */
        size_t data_len;
        const char *want1, *want2;
    } cases[] = {
        {"{}", 1000, 0, "header length 1000 is larger than the file", NULL},
        {"{}", 0x8000000000000000ULL, 0, "larger than the file", NULL},
        {"{\"a\": ", UINT64_MAX, 0, "not valid JSON", NULL},
        {"not json at all", UINT64_MAX, 0, "not valid JSON", NULL},
        {"[1, 2]", UINT64_MAX, 0, "not an object", NULL},
        {"{}  xx", UINT64_MAX, 0, "unexpected bytes after", NULL},
        {"{\"a\": 5}", UINT64_MAX, 0, "'a' is not a JSON object", NULL},
        {"{" T("a", "\"shape\":[2],\"data_offsets\":[0,8]") "}", UINT64_MAX, 8, "'a'",
         "no \"dtype\""},
        {"{" T("a", "\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]") "}", UINT64_MAX, 8,
         "\"dtype\" must be a string", NULL},
        {"{" T("a", "\"dtype\":\"F32\",\"data_offsets\":[0,8]") "}", UINT64_MAX, 8,
         "no \"shape\"", NULL},
        {"{" T("a", "\"dtype\":\"F32\",\"shape\":[2]") "}", UINT64_MAX, 8, "no \"data_offsets\"",
         NULL},
        {"{" T("a", F32("\"2\"", 0, 8)) "}", UINT64_MAX, 8, "\"shape\" must be an array", NULL},
        {"{" T("a", F32("[-2]", 0, 8)) "}", UINT64_MAX, 8, "shape entry 0",
         "non-negative integer"},
        {"{" T("a", F32("[2, 1.5]", 0, 8)) "}", UINT64_MAX, 8, "shape entry 1",
         "non-negative integer"},
        {"{" T("a", F32("[1,1,1,1,1,1,1,1,1]", 0, 4)) "}", UINT64_MAX, 4, "9 dimensions", NULL},
        {"{" T("a", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]") "}", UINT64_MAX,
         8, "\"data_offsets\" must be [begin, end]", NULL},
        {"{" T("a", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]") "}",
         UINT64_MAX, 8, "\"data_offsets\" must be", NULL},
        {"{" T("a", "\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]") "}", UINT64_MAX, 4,
         "dtype F16", "only F32"},
        {"{" T("a", "\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]") "}", UINT64_MAX, 4,
         "dtype BF16", "only F32"},
        {"{" T("a", F32("[100]", 0, 400)) "}", UINT64_MAX, 16, "[0, 400] are out of range",
         "16 bytes"},
        {"{" T("a", F32("[1]", 8, 4)) "}", UINT64_MAX, 16, "out of range", NULL},
        {"{" T("a", F32("[3]", 0, 8)) "}", UINT64_MAX, 8, "span 8 bytes", "needs 12"},
        {"{" T("a", F32("[4294967296, 4294967296, 16]", 0, 8)) "}", UINT64_MAX, 8, "overflows",
         NULL},
        {"{" T("a", F32("[4]", 0, 16)) "," T("b", F32("[4]", 8, 24)) "}", UINT64_MAX, 24,
         "overlaps", NULL},
        {"{" T("a", F32("[2]", 0, 8)) "," T("b", F32("[2]", 12, 20)) "}", UINT64_MAX, 20,
         "gap of 4 bytes before tensor 'b'", NULL},
        {"{" T("a", F32("[2]", 0, 8)) "}", UINT64_MAX, 12, "4 trailing bytes", NULL},
        {"{" T("a", F32("[2]", 0, 8)) "," T("a", F32("[2]", 8, 16)) "}", UINT64_MAX, 16,
         "'a' appears twice", NULL},
        {"{\"__metadata__\":{\"k\":1}}", UINT64_MAX, 0, "'k' is not a string", NULL},
        {"{\"__metadata__\":[]}", UINT64_MAX, 0, "must be an object", NULL},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", UINT64_MAX, 0, "appears twice", NULL},
    };
    char err[DERF_ERRLEN];
    const char *p = tp("hostile.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st_raw(p, cases[i].header, cases[i].hlen, cases[i].data_len);
        derf_safetensors st;
        err[0] = 0;
        int rc = derf_safetensors_read(&st, p, 1 << 20, err, sizeof err);
        if (rc != -1 || !strstr(err, cases[i].want1) ||
            (cases[i].want2 && !strstr(err, cases[i].want2)))
            fprintf(stderr, "hostile case %zu (%s): rc=%d err=\"%s\"\n", i, cases[i].header, rc,
                    err);
        expect_error(rc, err, p, cases[i].want1, cases[i].want2 ? cases[i].want2 : "");
        assert_null(st.tensors);
        assert_int_equal(st.ntensors, 0);
    }
    /* too short for the length prefix */
    derf_safetensors st;
    write_raw(p, "abc", 3);
    expect_error(derf_safetensors_read(&st, p, 1 << 20, err, sizeof err), err, "too short");
    write_raw(p, "", 0);
    expect_error(derf_safetensors_read(&st, p, 1 << 20, err, sizeof err), err, "too short");
    expect_error(derf_safetensors_read(&st, tp("absent.safetensors"), 1 << 20, err, sizeof err),
                 err, "absent.safetensors", "No such file");
    /* a valid hand-made file with padding and key order of another writer reads fine */
    write_st_raw(p, "{\"__metadata__\":{\"format\":\"pt\"}," T("b", F32("[1]", 4, 8)) ","
                    T("a", F32("[1]", 0, 4)) "}    ", UINT64_MAX, 8);
    assert_int_equal(derf_safetensors_read(&st, p, 1 << 20, err, sizeof err), 0);
    assert_string_equal(st.tensors[0].name, "a"); /* data order */
    assert_string_equal(derf_safetensors_meta(&st, "format"), "pt");
    derf_safetensors_free(&st);
}

/* Every truncation of a valid file fails cleanly; random byte flips never crash the reader. */
static void test_st_truncations_and_flips(void **state) {
    (void)state;
    float w[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8};
    int64_t sw[2] = {2, 3}, sb[1] = {2};
    derf_st_tensor_in t[2] = {{"w", 2, sw, w}, {"b", 1, sb, b}};
    derf_st_meta meta[1] = {{"k", "v"}};
    const char *p = tp("src.safetensors"), *q = tp("cut.safetensors");
    char err[DERF_ERRLEN];
    assert_int_equal(derf_safetensors_write(p, t, 2, meta, 1, err, sizeof err), 0);
    size_t len;
    char *raw = slurp(p, &len);
    assert_non_null(raw);
    derf_safetensors st;
    for (size_t cut = 0; cut < len; cut++) {
        write_raw(q, raw, cut);
        err[0] = 0;
        int rc = derf_safetensors_read(&st, q, 1 << 20, err, sizeof err);
        if (rc != -1) fprintf(stderr, "truncated to %zu bytes was accepted\n", cut);
        expect_error(rc, err, q);
    }
    uint64_t seed = tu_seed() ^ 0xf11b;
    char *mut = malloc(len);
    for (int trial = 0; trial < 2000; trial++) {
        memcpy(mut, raw, len);
        int flips = 1 + (int)(tu_uniform(&seed) * 3);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(tu_uniform(&seed) * (double)len);
            mut[at] = (char)(unsigned char)(int)(tu_uniform(&seed) * 256); /* via int: a float->char conversion out of range is UB */
        }
        write_raw(q, mut, len);
        if (derf_safetensors_read(&st, q, 1 << 20, err, sizeof err) == 0) {
            for (int i = 0; i < st.ntensors; i++) /* touch every element the reader vouches for */
                for (size_t e = 0; e < st.tensors[i].numel; e++) (void)*(volatile const float *)&st.tensors[i].data[e];
            derf_safetensors_free(&st);
        } else {
            assert_null(strchr(err, '\n'));
        }
    }
    free(mut);
    free(raw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_write_read_file),
        cmocka_unit_test(test_io_atomic_nonexistent_dir),
        cmocka_unit_test(test_io_mkdirs),
        cmocka_unit_test(test_io_atomic_replace_only_on_commit),
        cmocka_unit_test(test_io_atomic_write_fails_midway),
        cmocka_unit_test(test_fashion_mnist_test_split),
        cmocka_unit_test(test_fashion_mnist_train_split),
        cmocka_unit_test(test_data_locations),
        cmocka_unit_test(test_idx_synthetic),
        cmocka_unit_test(test_idx_broken_files),
        cmocka_unit_test(test_st_roundtrip),
        cmocka_unit_test(test_st_writer_rejects),
        cmocka_unit_test(test_st_python_reader),
        cmocka_unit_test(test_st_hostile),
        cmocka_unit_test(test_st_truncations_and_flips),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
