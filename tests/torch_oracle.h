/* torch_oracle.h: C client of the live PyTorch reference (tools/torch_ref.py).
 *
 * torch_oracle_start() runs `/usr/bin/python3 tools/torch_ref.py` as a child process with two
 * pipes; torch_oracle_call() sends one request and reads its one reply (strictly request/response,
 * every read bounded by a timeout, so a dead or stuck oracle is an error, never a hang).
 * The wire protocol is described at the top of tools/torch_ref.py.
 *
 * Environment: DERF_TORCH_PYTHON (interpreter, default /usr/bin/python3), DERF_TORCH_REF (script,
 * default tools/torch_ref.py found from the working directory or from the test binary's path),
 * DERF_TORCH_TIMEOUT (seconds per reply, default 120). Under CI=true a missing interpreter or torch
 * is a failure, not a skip.
 *
 * No main and no cmocka in here: this file is linked into every test binary. */
#ifndef DERF_TORCH_ORACLE_H
#define DERF_TORCH_ORACLE_H
#include <stddef.h>
#include <stdint.h>

enum { TORCH_ORACLE_OK = 0, TORCH_ORACLE_SKIP = 1, TORCH_ORACLE_FAIL = -1 };

#define TORCH_ORACLE_MAX_ARRAYS 16

/* One named array: type 'f' (float32) or 'i' (int32); count elements (0 = absent). */
typedef struct {
    char name[32];
    char type;
    size_t count;
    void *data;
} torch_arr;

typedef struct {
    int n;
    torch_arr a[TORCH_ORACLE_MAX_ARRAYS]; /* data owned by the reply */
} torch_reply;

/* Starts the oracle once (later calls return the first result). On SKIP or FAIL writes why into
 * msg. Thread-unsafe; one oracle per process. */
int torch_oracle_start(char *msg, size_t len);
/* The state and message of the last start (TORCH_ORACLE_FAIL with "not started" before any). */
int torch_oracle_status(const char **msg);

/* Sends `header` (op and key=value params, no newline, no "arrays=") plus the n input arrays and
 * reads the reply into *rep. Returns 0, or -1 with a one-line reason in err (an "err" reply from the
 * oracle, a protocol error, a timeout or a dead oracle; after the last three the oracle is stopped
 * and later calls fail at once). */
int torch_oracle_call(const char *header, const torch_arr *in, int n, torch_reply *rep,
                      char *err, size_t errlen);
/* Float array `name` of the reply, NULL if absent or of another element count (expect; pass
 * (size_t)-1 to accept any count). */
const float *torch_reply_f(const torch_reply *rep, const char *name, size_t expect);
void torch_reply_free(torch_reply *rep);

/* Runs `python3 tools/torch_ref.py --selftest` (the oracle's own graphs against finite differences
 * in float64, and protocol round trips) with the interpreter and script found by start; its report
 * goes to stderr. Returns 0 when it passes, else -1 with the reason in msg. */
int torch_oracle_selftest(char *msg, size_t len);

/* Asks the oracle to quit and reaps it. Safe to call more than once. */
void torch_oracle_stop(void);

/* Input-array helpers. */
static inline torch_arr torch_f(const char *name, const float *x, size_t n) {
    torch_arr a = {{0}, 'f', n, (void *)x};
    size_t i = 0;
    for (; name[i] && i < sizeof a.name - 1; i++) a.name[i] = name[i];
    a.name[i] = 0;
    return a;
}
static inline torch_arr torch_i(const char *name, const int32_t *x, size_t n) {
    torch_arr a = torch_f(name, (const float *)(const void *)x, n);
    a.type = 'i';
    return a;
}
#endif
