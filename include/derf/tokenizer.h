/* derf/tokenizer.h: the GPT-2 byte-level BPE tokenizer (OpenAI's encoder.json + vocab.bpe, 50,257
 * tokens, 50,000 merges), encode and decode.
 *
 * Pre-tokenisation is GPT-2's regex, run by PCRE2 (JIT when available):
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Each piece is turned into bytes, each byte into its token (GPT-2's byte-to-unicode alphabet), and
 * pairs are merged by rank (a hash map of id pairs -> rank, merged id; all occurrences of the best
 * pair are merged left to right per step, as OpenAI's encoder.py does). A per-piece cache makes the
 * common words one hash lookup.
 *
 * Invalid UTF-8 is never lost: PCRE2 runs with PCRE2_MATCH_INVALID_UTF, so invalid sequences match
 * nothing; each stretch of input the regex skips becomes a piece of its own and still goes through
 * the byte alphabet. So decode(encode(s)) == s for EVERY byte string s, valid UTF-8 or not. (Python's
 * and the JS encoder would first have replaced such bytes by U+FFFD; on valid UTF-8 all agree.)
 *
 * `<|endoftext|>` (50256) is never produced by encode (the text "<|endoftext|>" is encoded as plain
 * text, as the JS and Python encoders do); callers insert DERF_GPT2_EOT between documents.
 *
 * Two flavours (see docs/text-data.md):
 *   DERF_TOK_GPT2 (default): OpenAI's gpt-2 encoder.py / tiktoken r50k_base: \s is Unicode White_Space.
 *   DERF_TOK_JS:   byte-identical to the npm gpt-3-encoder JS package: \s is JavaScript's (adds U+FEFF,
 *                  drops U+0085), and its pair-lookup quirk is reproduced (pairs are looked up by the key
 *                  "A,B", so e.g. the non-merge pair ('",', '"') gets the rank of the merge ('"', ',"')).
 * The two differ only on text containing U+0085, U+FEFF or ",," next to quotes/brackets.
 *
 * A tokenizer is not thread-safe (the cache and the match data are shared); use one per thread. */
#ifndef DERF_TOKENIZER_H
#define DERF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define DERF_GPT2_VOCAB 50257
#define DERF_GPT2_EOT 50256
#define DERF_GPT2_DIR "/usr/local/share/derf/gpt2" /* encoder.json, vocab.bpe (make deps) */

typedef enum { DERF_TOK_GPT2 = 0, DERF_TOK_JS = 1 } derf_tok_flavour;

typedef struct derf_tokenizer derf_tokenizer;

/* Growable id array: encode appends to it. Zero-initialise; free(ids) when done. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} derf_tok_ids;

/* Loads encoder.json and vocab.bpe (each file path), checks them (50,257 distinct ids, every merge
 * and its result in the vocabulary) and compiles the regex. NULL with one line in err on failure. */
derf_tokenizer *derf_tok_load(const char *encoder_json, const char *vocab_bpe, derf_tok_flavour flavour,
                              char *err, size_t errlen);
/* The same from a folder holding both files; dir NULL: $DERF_GPT2_DIR, else DERF_GPT2_DIR. */
derf_tokenizer *derf_tok_load_dir(const char *dir, derf_tok_flavour flavour, char *err, size_t errlen);
void derf_tok_free(derf_tokenizer *t);

int derf_tok_vocab_size(const derf_tokenizer *t);

/* Encodes len bytes of text (any bytes; NULs included) and appends the ids to out. Returns 0, or -1
 * (err filled) only on out-of-memory or a PCRE2 failure. */
int derf_tok_encode(derf_tokenizer *t, const char *text, size_t len, derf_tok_ids *out, char *err, size_t errlen);

/* The bytes of token id (not NUL-terminated); NULL if id is out of range. */
const char *derf_tok_bytes(const derf_tokenizer *t, int32_t id, size_t *len);

/* Decodes n ids into a malloc'd buffer (NUL-terminated, *out_len bytes without the NUL). Returns 0, or
 * -1 with err filled when an id is out of range. */
int derf_tok_decode(const derf_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len,
                    char *err, size_t errlen);

/* Statistics, for tests and reports: merges loaded, JS alias pairs added (0 for DERF_TOK_GPT2), cache
 * entries now held. */
void derf_tok_stats(const derf_tokenizer *t, size_t *merges, size_t *aliases, size_t *cached);

#endif
