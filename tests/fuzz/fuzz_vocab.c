/* fuzz_vocab.c: libFuzzer target: the GPT-2 vocabulary loader: encoder.json and vocab.bpe (the input cut
 * at "\n@@\n", tests/fuzz/fuzz.h); a vocabulary that loads must encode and decode a short text. */
#include "fuzz.h"
#include "derf/io.h"
#include "derf/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const uint8_t *a, *b;
    size_t na, nb;
    fz_split(d, n, &a, &na, &b, &nb);
    const char *pa = fz_file("encoder.json", a, na), *pb = fz_file("vocab.bpe", b, nb);
    char err[DERF_ERRLEN] = "";
    for (int fl = 0; fl < 2; fl++) {
        err[0] = 0;
        derf_tokenizer *t = derf_tok_load(pa, pb, fl ? DERF_TOK_JS : DERF_TOK_GPT2, err, sizeof err);
        fz_check_err(t ? 0 : -1, err);
        if (!t) continue;
        derf_tok_ids ids = {0};
        static const char text[] = "Hello, world! It's 2024.\n";
        if (derf_tok_encode(t, text, sizeof text - 1, &ids, err, sizeof err) == 0) {
            char *out;
            size_t len;
            if (derf_tok_decode(t, ids.ids, ids.n, &out, &len, err, sizeof err) == 0) free(out);
        }
        free(ids.ids);
        derf_tok_free(t);
    }
    return 0;
}
