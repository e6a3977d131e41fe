/* tmpfiles.h: helpers for cmocka tests that work in a temp folder: include after cmocka.h, with
 * `static char tmpdir[] = "/tmp/derf_test_NAME.XXXXXX";` defined first. tp() makes a path inside it
 * (8 rotating buffers), write_raw() writes bytes as they are, one_line() checks an error message, and
 * tmp_setup/tmp_teardown create and remove the folder (cmocka group setup/teardown). Header-only. */
#ifndef DERF_TMPFILES_H
#define DERF_TMPFILES_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

static inline const char *tp(const char *name) { return tu_path(tmpdir, name); }

static inline void write_raw(const char *path, const void *data, size_t len) {
    assert_int_equal(tu_write_raw(path, data, len), 0);
}

static inline void one_line(const char *err) { /* a real message on one line */
    assert_true(strlen(err) > 10);
    assert_null(strchr(err, '\n'));
}

static inline int tmp_setup(void **state) { (void)state; return mkdtemp(tmpdir) ? 0 : -1; }
static inline int tmp_teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}
#endif
