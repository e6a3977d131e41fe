/* strbuf.c: growable string (see derf/strbuf.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "derf/strbuf.h"

void derf_sb_printf(derf_strbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->cap ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n < room) { b->len += (size_t)n; return; }
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { fprintf(stderr, "derf: out of memory\n"); abort(); }
        b->s = s;
        b->cap = cap;
    }
}

void derf_sb_free(derf_strbuf *b) {
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}
