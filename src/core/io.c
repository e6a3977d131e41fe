/* io.c: checked file I/O: atomic writes via temp file + fsync + rename, size-limited whole-file
 * reads, and the one-line error messages every loader and writer reports (see derf/io.h). */
#include "derf/io.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void derf_io_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A hint for the errno values a user can do something about. */
static const char *errno_hint(int e) {
    switch (e) {
    case ENOENT: return " (does the directory exist?)";
    case EACCES: case EPERM: case EROFS: return " (check permissions, or choose another path)";
    case ENOSPC: case EDQUOT: return " (free some disk space, or choose another path)";
    case EFBIG: return " (file size limit reached; see 'ulimit -f')";
    default: return "";
    }
}

/* Best-effort fsync of the directory holding `path`, so the rename itself survives a crash. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) { dir[0] = '.'; dir[1] = 0; }
    else if (slash == path) { dir[0] = '/'; dir[1] = 0; }
    else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) { (void)fsync(fd); close(fd); }
}

/* The temp files being written now, so that SIGINT/SIGTERM/SIGHUP (derf_io_cleanup_on_signals) can remove
 * them before the process dies: a few slots, each a fixed buffer the handler reads without locks. */
#define LIVE_SLOTS 8
static char live_tmp[LIVE_SLOTS][4096];
static volatile sig_atomic_t live_used[LIVE_SLOTS];

static void live_add(const char *tmp) {
    size_t n = strlen(tmp);
    if (n >= sizeof live_tmp[0]) return;
    for (int i = 0; i < LIVE_SLOTS; i++)
        if (!live_used[i]) {
            memcpy(live_tmp[i], tmp, n + 1);
            live_used[i] = 1;
            return;
        }
}

static void live_del(const char *tmp) {
    for (int i = 0; i < LIVE_SLOTS; i++)
        if (live_used[i] && strncmp(live_tmp[i], tmp, sizeof live_tmp[i]) == 0) { live_used[i] = 0; return; }
}

static void on_fatal_signal(int sig) {
    for (int i = 0; i < LIVE_SLOTS; i++)
        if (live_used[i]) unlink(live_tmp[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void derf_io_cleanup_on_signals(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        memset(&old, 0, sizeof old);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        /* keep a handler someone else installed (or SIG_IGN, as under nohup) */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) sigaction(sigs[i], &sa, NULL);
    }
    /* a file-size limit (ulimit -f) must give EFBIG and one line, not kill the process mid-write */
    signal(SIGXFSZ, SIG_IGN);
}

int derf_io_open_regular(const char *path, const char *what, char *err, size_t errlen) {
    const char *sp = what ? " " : "";
    if (!what) what = "";
    if (!path || !*path) {
        derf_io_errf(err, errlen, "cannot open%s%s: empty path", sp, what);
        return -1;
    }
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        derf_io_errf(err, errlen, "cannot open%s%s '%s': %s%s", sp, what, path, strerror(e),
                     e == ENOENT ? " (check the path)" : errno_hint(e));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int isdir = S_ISDIR(st.st_mode);
        close(fd);
        derf_io_errf(err, errlen, "cannot read%s%s '%s': %s", sp, what, path,
                     isdir ? "it is a directory (give a file name)"
                           : "not a regular file (a FIFO, device or socket); give a file");
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int derf_io_check_regular(const char *path, const char *what, char *err, size_t errlen) {
    int fd = derf_io_open_regular(path, what, err, errlen);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

static void atomic_free(derf_io_atomic *a) {
    if (a->tmp) live_del(a->tmp);
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    a->fd = -1;
}

int derf_io_atomic_open(derf_io_atomic *a, const char *path, char *err, size_t errlen) {
    a->fd = -1;
    a->path = a->tmp = NULL;
    if (!path || !*path) {
        derf_io_errf(err, errlen, "cannot write a file: empty path");
        return -1;
    }
    size_t n = strlen(path) + 32;
    a->path = dup_str(path);
    a->tmp = calloc(n, 1);
    if (!a->path || !a->tmp) {
        atomic_free(a);
        derf_io_errf(err, errlen, "cannot write '%s': out of memory", path);
        return -1;
    }
    snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    struct stat st;
    int have_old = stat(path, &st) == 0;
    if (have_old && S_ISDIR(st.st_mode)) {
        derf_io_errf(err, errlen, "cannot write '%s': it is a directory (give a file name)", path);
        atomic_free(a);
        return -1;
    }
    a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (a->fd < 0) {
        int e = errno;
        derf_io_errf(err, errlen, "cannot write '%s': creating temp file '%s' failed: %s%s", path,
                     a->tmp, strerror(e), errno_hint(e));
        atomic_free(a);
        return -1;
    }
    live_add(a->tmp);
    if (have_old && S_ISREG(st.st_mode)) (void)fchmod(a->fd, st.st_mode & 07777); /* keep its mode */
    return 0;
}

void derf_io_atomic_abort(derf_io_atomic *a) {
    if (!a || !a->tmp) return;
    if (a->fd >= 0) close(a->fd);
    unlink(a->tmp);
    atomic_free(a);
}

int derf_io_atomic_write(derf_io_atomic *a, const void *data, size_t len, char *err,
                         size_t errlen) {
    if (!a->tmp || a->fd < 0) {
        derf_io_errf(err, errlen, "cannot write: the file was already closed or aborted after an "
                                  "earlier error");
        return -1;
    }
    const unsigned char *p = data;
    while (len > 0) {
        size_t chunk = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        ssize_t w = write(a->fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            derf_io_errf(err, errlen, "cannot write '%s': writing temp file '%s' failed: %s%s; "
                         "the old file (if any) is untouched", a->path, a->tmp, strerror(e),
                         errno_hint(e));
            derf_io_atomic_abort(a);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int derf_io_atomic_commit(derf_io_atomic *a, char *err, size_t errlen) {
    if (!a->tmp || a->fd < 0) {
        derf_io_errf(err, errlen, "cannot commit: the file was already closed or aborted after an "
                                  "earlier error");
        return -1;
    }
    const char *step = NULL;
    int e = 0;
    if (fsync(a->fd) != 0 && errno != EINVAL && errno != EROFS) { step = "fsync"; e = errno; }
    int fd = a->fd;
    a->fd = -1;
    if (close(fd) != 0 && !step) { step = "close"; e = errno; }
    if (!step && rename(a->tmp, a->path) != 0) { step = "rename"; e = errno; }
    if (step) {
        derf_io_errf(err, errlen, "cannot write '%s': %s of temp file '%s' failed: %s%s; the old "
                     "file (if any) is untouched", a->path, step, a->tmp, strerror(e),
                     errno_hint(e));
        unlink(a->tmp);
        atomic_free(a);
        return -1;
    }
    sync_parent_dir(a->path);
    atomic_free(a);
    return 0;
}

int derf_io_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    derf_io_atomic a;
    if (derf_io_atomic_open(&a, path, err, errlen)) return -1;
    if (derf_io_atomic_write(&a, data, len, err, errlen)) return -1;
    return derf_io_atomic_commit(&a, err, errlen);
}

int derf_io_read_file(const char *path, size_t max_bytes, void **out, size_t *out_len,
                      char *err, size_t errlen) {
    *out = NULL;
    if (out_len) *out_len = 0;
    int fd = derf_io_open_regular(path, NULL, err, errlen);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        derf_io_errf(err, errlen, "cannot stat '%s': %s", path, strerror(e));
        return -1;
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        derf_io_errf(err, errlen, "cannot read '%s': it is %lld bytes, more than the limit of %zu "
                     "bytes (is this the right file?)", path, (long long)st.st_size, max_bytes);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        derf_io_errf(err, errlen, "cannot read '%s': out of memory for %zu bytes", path, n);
        return -1;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            derf_io_errf(err, errlen, "cannot read '%s': %s", path, strerror(e));
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    /* The file must not have changed size under us. */
    unsigned char extra;
    ssize_t more = got == n ? read(fd, &extra, 1) : 0;
    close(fd);
    if (got != n || more > 0) {
        free(buf);
        derf_io_errf(err, errlen, "cannot read '%s': the file changed size while being read "
                     "(is another process writing it?)", path);
        return -1;
    }
    buf[n] = 0;
    *out = buf;
    if (out_len) *out_len = n;
    return 0;
}

int derf_io_mkdirs(const char *path, char *err, size_t errlen) {
    if (!path || !*path) {
        derf_io_errf(err, errlen, "cannot create the folder: its name is empty; give a folder name");
        return -1;
    }
    char tmp[4096];
    size_t n = strlen(path);
    if (n >= sizeof tmp) {
        derf_io_errf(err, errlen, "cannot create the folder '%.60s...': the name is longer than %zu characters",
                     path, sizeof tmp - 1);
        return -1;
    }
    memcpy(tmp, path, n + 1);
    /* each prefix ending at a '/' (and the whole path) in turn, parents first; "a//b" and "a/" are fine */
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != 0) continue;
        if (tmp[i - 1] == '/') continue;
        char c = tmp[i];
        tmp[i] = 0;
        if (mkdir(tmp, 0777)) {
            int e = errno;
            struct stat sb;
            int is_dir = stat(tmp, &sb) == 0 && S_ISDIR(sb.st_mode);
            if (!is_dir) {
                if (e == EEXIST || e == ENOTDIR)
                    derf_io_errf(err, errlen, "cannot create the folder '%s': '%s' is in the way and is not a folder",
                                 path, tmp);
                else if (c) /* a parent failed: name it too */
                    derf_io_errf(err, errlen, "cannot create the folder '%s': %s (making '%s')", path, strerror(e), tmp);
                else
                    derf_io_errf(err, errlen, "cannot create the folder '%s': %s", path, strerror(e));
                return -1;
            }
        }
        tmp[i] = c;
    }
    return 0;
}
