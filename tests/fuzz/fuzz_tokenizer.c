/* fuzz_tokenizer.c: libFuzzer target: the GPT-2 tokenizer (the installed vocabulary, $DERF_GPT2_DIR or the
 * default folder) on arbitrary bytes: encoding never fails and decoding gives the same bytes back. */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    static derf_tokenizer *t;
    char err[DERF_ERRLEN] = "";
    if (!t && !(t = derf_tok_load_dir(NULL, DERF_TOK_GPT2, err, sizeof err))) {
        fprintf(stderr, "fuzz_tokenizer needs the GPT-2 vocabulary (make deps): %s\n", err);
        exit(1);
    }
    derf_tok_ids ids = {0};
    if (derf_tok_encode(t, (const char *)d, n, &ids, err, sizeof err)) abort();
    char *out;
    size_t len;
    if (derf_tok_decode(t, ids.ids, ids.n, &out, &len, err, sizeof err)) abort();
    if (len != n || (n && memcmp(out, d, n))) {
        fprintf(stderr, "round trip changed the bytes (%zu -> %zu)\n", n, len);
        abort();
    }
    free(out);
    free(ids.ids);
    return 0;
}
