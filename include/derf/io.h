/* derf/io.h: checked file I/O. Atomic writes (temp file + fsync + rename, so a crash or an error
 * never leaves a half-written file in place of the old one), whole-file reads with a size limit,
 * and one-line error reporting.
 *
 * Error convention used by every derf loader/writer: functions return 0 on success and -1 on
 * failure, and on failure fill the caller's buffer `err` (capacity `errlen`, may be NULL/0) with ONE
 * line, no trailing newline: what is wrong, with the path, and how to fix it when that is obvious.
 * The library never calls exit(); the CLI prints the line and exits non-zero. */
#ifndef DERF_IO_H
#define DERF_IO_H

#include <stddef.h>

#define DERF_ERRLEN 512 /* a comfortable size for an error buffer */

/* printf into err (NULL/0-safe); newlines are turned into spaces so the message stays one line. */
void derf_io_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- atomic writing ---------------------------------------------------------------------------
 * derf_io_atomic a;
 * if (derf_io_atomic_open(&a, path, err, errlen)) return -1;
 * if (derf_io_atomic_write(&a, p, n, err, errlen)) return -1;     // failed write already aborted
 * return derf_io_atomic_commit(&a, err, errlen);                   // fsync, rename
 * Data goes to "<path>.tmp.<pid>"; the file at `path` is replaced only by a successful commit.
 * On any error the temp file is removed and `path` is left as it was. After a failed write, further
 * writes and commit fail and abort is a no-op, so a caller may bail out at the first error. */
typedef struct {
    int fd;     /* -1 once committed or aborted */
    char *path; /* final path */
    char *tmp;  /* temp path */
} derf_io_atomic;

int derf_io_atomic_open(derf_io_atomic *a, const char *path, char *err, size_t errlen);
int derf_io_atomic_write(derf_io_atomic *a, const void *data, size_t len, char *err, size_t errlen);
int derf_io_atomic_commit(derf_io_atomic *a, char *err, size_t errlen);
void derf_io_atomic_abort(derf_io_atomic *a); /* close and remove the temp file; safe to repeat */

/* One-shot atomic write of a buffer. */
int derf_io_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Reads a whole regular file into *out (malloc'd, with one extra NUL byte after the data so text can
 * be used as a C string; free() it). Files larger than max_bytes are refused before reading. */
int derf_io_read_file(const char *path, size_t max_bytes, void **out, size_t *out_len,
                      char *err, size_t errlen);

/* Opens path for reading only if it is a regular file: a FIFO, device, socket or directory is refused with
 * one line instead of blocking (the open itself never waits for a FIFO's writer). `what` names the file in
 * the message ("checkpoint", "token shard", ...; NULL: none). Returns the descriptor, or -1. */
int derf_io_open_regular(const char *path, const char *what, char *err, size_t errlen);
/* The same check for readers that open the file themselves (zlib, libsndfile): 0 if it is a regular file. */
int derf_io_check_regular(const char *path, const char *what, char *err, size_t errlen);

/* For programs (the derf command): SIGINT, SIGTERM and SIGHUP remove the temp files of atomic writes in
 * progress before the process dies (handlers installed only where the default action is in force), and
 * SIGXFSZ is ignored so that a file-size limit gives EFBIG and one line instead of killing the process. */
void derf_io_cleanup_on_signals(void);

/* mkdir -p: creates the folder `path` and its missing parents (mode 0777 less the umask); an existing
 * folder is fine. The one place derf makes folders. Fails (one line naming the folder and the reason:
 * a file in the way, strerror of permission / read-only filesystem / ..., an empty name) otherwise. */
int derf_io_mkdirs(const char *path, char *err, size_t errlen);

#endif
