/* torch_oracle.c: client of tools/torch_ref.py (see torch_oracle.h and the protocol at the top of
 * the script). POSIX pipes + fork/exec; every read and write waits with poll() and a timeout. */
#include "torch_oracle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct {
    int state;        /* TORCH_ORACLE_* once started; 2 = never started */
    char msg[512];
    pid_t pid;
    int to_child, from_child;
    char buf[1 << 16];
    size_t pos, len;
    int timeout_ms;
    char py[PATH_MAX], script[PATH_MAX + 32];
} O = {2, "oracle not started", -1, -1, -1, {0}, 0, 0, 120000, {0}, {0}};

static void setmsg(char *dst, size_t len, const char *fmt, ...) {
    if (!dst || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, len, fmt, ap);
    va_end(ap);
}

static int ci_mode(void) {
    const char *ci = getenv("CI");
    return ci && *ci && strcmp(ci, "false") != 0 && strcmp(ci, "0") != 0;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kills (if needed) and reaps the child; closes the pipes. */
static void hard_stop(void) {
    if (O.to_child >= 0) close(O.to_child);
    if (O.from_child >= 0) close(O.from_child);
    O.to_child = O.from_child = -1;
    if (O.pid > 0) {
        int st;
        long long t0 = now_ms();
        while (waitpid(O.pid, &st, WNOHANG) == 0) {
            if (now_ms() - t0 > 3000) {
                kill(O.pid, SIGKILL);
                waitpid(O.pid, &st, 0);
                break;
            }
            usleep(10000);
        }
        O.pid = -1;
    }
}

/* Fills the read buffer; 1 on data, 0 on EOF, -1 on timeout/error (err set). */
static int fill(long long deadline, char *err, size_t errlen) {
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            setmsg(err, errlen, "torch oracle: no reply within %d s (DERF_TORCH_TIMEOUT)",
                   O.timeout_ms / 1000);
            return -1;
        }
        struct pollfd p = {O.from_child, POLLIN, 0};
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { setmsg(err, errlen, "torch oracle: poll: %s", strerror(errno)); return -1; }
        if (r == 0) continue;
        ssize_t n = read(O.from_child, O.buf, sizeof O.buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) { setmsg(err, errlen, "torch oracle: read: %s", strerror(errno)); return -1; }
        O.pos = 0;
        O.len = (size_t)n;
        return n > 0;
    }
}

static int read_line(char *line, size_t cap, long long deadline, char *err, size_t errlen) {
    size_t k = 0;
    for (;;) {
        if (O.pos == O.len) {
            int r = fill(deadline, err, errlen);
            if (r < 0) return -1;
            if (r == 0) {
                setmsg(err, errlen, "torch oracle: process exited (see its stderr above)");
                return -1;
            }
        }
        char c = O.buf[O.pos++];
        if (c == '\n') { line[k] = 0; return 0; }
        if (k + 1 < cap) line[k++] = c;
    }
}

static int read_bytes(void *dst, size_t n, long long deadline, char *err, size_t errlen) {
    char *d = dst;
    while (n) {
        if (O.pos == O.len) {
            int r = fill(deadline, err, errlen);
            if (r < 0) return -1;
            if (r == 0) {
                setmsg(err, errlen, "torch oracle: process exited inside a reply payload");
                return -1;
            }
        }
        size_t k = O.len - O.pos < n ? O.len - O.pos : n;
        memcpy(d, O.buf + O.pos, k);
        O.pos += k; d += k; n -= k;
    }
    return 0;
}

static int write_all(const void *src, size_t n, long long deadline, char *err, size_t errlen) {
    const char *s = src;
    while (n) {
        long long left = deadline - now_ms();
        if (left <= 0) { setmsg(err, errlen, "torch oracle: not reading its input (timeout)"); return -1; }
        struct pollfd p = {O.to_child, POLLOUT, 0};
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        ssize_t w = write(O.to_child, s, n);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w < 0) {
            setmsg(err, errlen, "torch oracle: write: %s (the oracle died? see its stderr above)",
                   strerror(errno));
            return -1;
        }
        s += w; n -= (size_t)w;
    }
    return 0;
}

static int find_script(char *path, size_t len) {
    const char *env = getenv("DERF_TORCH_REF");
    if (env && *env) { snprintf(path, len, "%s", env); return access(path, R_OK) == 0; }
    if (access("tools/torch_ref.py", R_OK) == 0) { snprintf(path, len, "tools/torch_ref.py"); return 1; }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(path, len, "%s/../../tools/torch_ref.py", exe); /* build/tests/<bin> */
        if (access(path, R_OK) == 0) return 1;
    }
    snprintf(path, len, "tools/torch_ref.py");
    return 0;
}

static int finish_start(int state, char *msg, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(O.msg, sizeof O.msg, fmt, ap);
    va_end(ap);
    O.state = state;
    if (state != TORCH_ORACLE_OK) hard_stop();
    setmsg(msg, len, "%s", O.msg);
    return state;
}

int torch_oracle_start(char *msg, size_t len) {
    if (O.state != 2) { setmsg(msg, len, "%s", O.msg); return O.state; }
    const char *t = getenv("DERF_TORCH_TIMEOUT");
    if (t && atoi(t) > 0) O.timeout_ms = atoi(t) * 1000;
    const char *py = getenv("DERF_TORCH_PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    int missing_state = ci_mode() ? TORCH_ORACLE_FAIL : TORCH_ORACLE_SKIP;
    if (access(py, X_OK) != 0)
        return finish_start(missing_state, msg, len, "torch oracle: %s not found%s", py,
                            ci_mode() ? " (CI=true: PyTorch reference is required)" : "; skipping");
    char script[PATH_MAX + 32];
    if (!find_script(script, sizeof script))
        return finish_start(TORCH_ORACLE_FAIL, msg, len, "torch oracle: %s not found (set DERF_TORCH_REF)",
                            script);

    snprintf(O.py, sizeof O.py, "%s", py);
    snprintf(O.script, sizeof O.script, "%s", script);
    int in[2], out[2];
    if (pipe(in) || pipe(out))
        return finish_start(TORCH_ORACLE_FAIL, msg, len, "torch oracle: pipe: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN); /* a dead oracle must give EPIPE, not kill the test */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return finish_start(TORCH_ORACLE_FAIL, msg, len, "torch oracle: fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        signal(SIGPIPE, SIG_DFL);
        setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        execl(py, py, script, (char *)NULL);
        fprintf(stderr, "torch oracle: exec %s: %s\n", py, strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    O.pid = pid;
    O.to_child = in[1];
    O.from_child = out[0];
    O.pos = O.len = 0;
    fcntl(O.to_child, F_SETFD, FD_CLOEXEC);
    fcntl(O.from_child, F_SETFD, FD_CLOEXEC);
    fcntl(O.to_child, F_SETFL, fcntl(O.to_child, F_GETFL) | O_NONBLOCK);
    atexit(torch_oracle_stop);

    char line[512], err[256];
    int start_ms = O.timeout_ms > 120000 ? O.timeout_ms : 120000; /* importing torch can be slow */
    if (read_line(line, sizeof line, now_ms() + start_ms, err, sizeof err))
        return finish_start(TORCH_ORACLE_FAIL, msg, len, "%s (starting %s %s)", err, py, script);
    if (strncmp(line, "notorch", 7) == 0)
        return finish_start(missing_state, msg, len, "torch oracle: %s cannot import torch (or numpy):%s%s", py,
                            line + 7, ci_mode() ? " (CI=true: PyTorch reference is required)" : "; skipping");
    if (strncmp(line, "ready ", 6) != 0)
        return finish_start(TORCH_ORACLE_FAIL, msg, len, "torch oracle: unexpected hello line: %.200s", line);
    return finish_start(TORCH_ORACLE_OK, msg, len, "torch oracle: %s (%s %s)", line + 6, py, script);
}

int torch_oracle_status(const char **msg) {
    if (msg) *msg = O.msg;
    return O.state == 2 ? TORCH_ORACLE_FAIL : O.state;
}

void torch_reply_free(torch_reply *rep) {
    if (!rep) return;
    for (int i = 0; i < rep->n; i++) free(rep->a[i].data);
    rep->n = 0;
}

/* A transport failure: the stream can no longer be trusted, so stop the oracle for good. */
static int broken(char *err, size_t errlen) {
    (void)errlen;
    char keep[400];
    snprintf(keep, sizeof keep, "%.399s", err ? err : "torch oracle failed");
    hard_stop();
    O.state = TORCH_ORACLE_FAIL;
    snprintf(O.msg, sizeof O.msg, "torch oracle stopped after an earlier error: %s", keep);
    return -1;
}

int torch_oracle_call(const char *header, const torch_arr *in, int n, torch_reply *rep,
                      char *err, size_t errlen) {
    rep->n = 0;
    if (O.state != TORCH_ORACLE_OK) { setmsg(err, errlen, "%s", O.msg); return -1; }
    if (n < 0 || n > TORCH_ORACLE_MAX_ARRAYS) { setmsg(err, errlen, "torch oracle: too many arrays"); return -1; }
    size_t cap = strlen(header) + 64 + (size_t)n * 64, k = 0;
    char *line = malloc(cap);
    if (!line) { setmsg(err, errlen, "out of memory"); return -1; }
    k += (size_t)snprintf(line + k, cap - k, "%s", header);
    if (n) k += (size_t)snprintf(line + k, cap - k, " arrays=");
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(line + k, cap - k, "%s%s:%c:%zu", i ? "," : "", in[i].name,
                              in[i].type == 'i' ? 'i' : 'f', in[i].data ? in[i].count : 0);
    k += (size_t)snprintf(line + k, cap - k, "\n");
    long long deadline = now_ms() + O.timeout_ms;
    int bad = write_all(line, k, deadline, err, errlen);
    free(line);
    for (int i = 0; i < n && !bad; i++)
        if (in[i].data && in[i].count) bad = write_all(in[i].data, 4 * in[i].count, deadline, err, errlen);
    if (bad) return broken(err, errlen);

    char hdr[4096];
    if (read_line(hdr, sizeof hdr, deadline, err, errlen)) return broken(err, errlen);
    if (strncmp(hdr, "err ", 4) == 0) { setmsg(err, errlen, "torch oracle: %s", hdr + 4); return -1; }
    if (strncmp(hdr, "ok ", 3) != 0) {
        setmsg(err, errlen, "torch oracle: protocol error, reply line: %.200s", hdr);
        return broken(err, errlen);
    }
    /* ok name:T:count,name:T:count,... */
    char *save = NULL;
    for (char *tok = strtok_r(hdr + 3, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char name[32], ty;
        size_t count;
        if (sscanf(tok, "%31[^:]:%c:%zu", name, &ty, &count) != 3 || (ty != 'f' && ty != 'i') ||
            rep->n >= TORCH_ORACLE_MAX_ARRAYS) {
            setmsg(err, errlen, "torch oracle: protocol error in reply spec '%.100s'", tok);
            torch_reply_free(rep);
            return broken(err, errlen);
        }
        torch_arr *a = &rep->a[rep->n++];
        memset(a, 0, sizeof *a);
        snprintf(a->name, sizeof a->name, "%s", name);
        a->type = ty;
        a->count = count;
        a->data = malloc(count ? 4 * count : 4);
        if (!a->data) { setmsg(err, errlen, "out of memory"); torch_reply_free(rep); return broken(err, errlen); }
    }
    for (int i = 0; i < rep->n; i++)
        if (read_bytes(rep->a[i].data, 4 * rep->a[i].count, deadline, err, errlen)) {
            torch_reply_free(rep);
            return broken(err, errlen);
        }
    return 0;
}

const float *torch_reply_f(const torch_reply *rep, const char *name, size_t expect) {
    for (int i = 0; i < rep->n; i++)
        if (strcmp(rep->a[i].name, name) == 0) {
            if (rep->a[i].type != 'f') return NULL;
            if (expect != (size_t)-1 && rep->a[i].count != expect) return NULL;
            return rep->a[i].data;
        }
    return NULL;
}

void torch_oracle_stop(void) {
    if (O.pid <= 0) return;
    if (O.to_child >= 0) {
        char err[64];
        write_all("quit\n", 5, now_ms() + 2000, err, sizeof err);
    }
    hard_stop();
    if (O.state == TORCH_ORACLE_OK) {
        O.state = TORCH_ORACLE_FAIL;
        snprintf(O.msg, sizeof O.msg, "torch oracle stopped");
    }
}

int torch_oracle_selftest(char *msg, size_t len) {
    if (O.state != TORCH_ORACLE_OK && O.state != TORCH_ORACLE_FAIL) {
        setmsg(msg, len, "%s", O.msg);
        return -1;
    }
    if (!O.py[0]) { setmsg(msg, len, "torch oracle was never started"); return -1; }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { setmsg(msg, len, "fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(2, 1); /* its report goes to the test's stderr */
        setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
        execl(O.py, O.py, O.script, "--selftest", "--quiet", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    long long t0 = now_ms();
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (now_ms() - t0 > 300000) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            setmsg(msg, len, "%s --selftest timed out", O.script);
            return -1;
        }
        usleep(20000);
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    setmsg(msg, len, "%s %s --selftest failed (status %d, see its report above)", O.py, O.script,
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return -1;
}
