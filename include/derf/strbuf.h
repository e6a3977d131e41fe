/* derf/strbuf.h: a growable string for building reports, SVG plots and JSON lines in memory
 * before one atomic write. Allocation failure aborts (out of memory is not recoverable here). */
#ifndef DERF_STRBUF_H
#define DERF_STRBUF_H

#include <stddef.h>

typedef struct { char *s; size_t len, cap; } derf_strbuf;

void derf_sb_printf(derf_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void derf_sb_free(derf_strbuf *b);

#endif
