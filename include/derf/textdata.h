/* derf/textdata.h: the English text corpus for language modelling: its sources (extraction and
 * cleaning), GPT-2 token shards (writer and validating reader) and the builder behind `derf data text`.
 * See docs/text-data.md.
 *
 * Shard format (llm.c's, so its loaders read derf shards too): a header of 256 little-endian int32,
 *   [0] magic 20240520   [1] version 1 (uint16 tokens)   [2] token count N   [3] vocabulary size
 *   (derf's addition; llm.c leaves it 0, which the reader takes as 50257)   [4..255] zero,
 * then N little-endian uint16 token ids. The file is exactly 1024 + 2N bytes. Each document is
 * preceded by <|endoftext|> (50256), so a shard starts with it. */
#ifndef DERF_TEXTDATA_H
#define DERF_TEXTDATA_H

#include <stddef.h>
#include <stdint.h>

#define DERF_SHARD_MAGIC 20240520
#define DERF_SHARD_VERSION 1
#define DERF_SHARD_HEADER_BYTES 1024
#define DERF_TEXT_SRC "/usr/local/share/derf/text-src" /* where `make deps` puts the sources */

/* ---- shards --------------------------------------------------------------------------------- */

typedef struct {
    uint16_t *tokens;
    size_t n;
    int vocab;
} derf_shard;

/* Writes atomically (derf_io_atomic_*). Refuses ids >= vocab, vocab > 65536 and n >= 2^31. */
int derf_shard_write(const char *path, const uint16_t *tokens, size_t n, int vocab, char *err, size_t errlen);
/* Reads and validates: magic, version, count against the file length, vocabulary size, every id <
 * vocab. Any failure: -1 and one line in err naming the file. */
int derf_shard_read(const char *path, derf_shard *s, char *err, size_t errlen);
/* The same checks on a shard already in memory (name is used in messages). Copies the tokens. */
int derf_shard_parse(const void *data, size_t len, const char *name, derf_shard *s, char *err, size_t errlen);
void derf_shard_free(derf_shard *s);

/* The byte-level view of a GPT-2 shard (`derf train-lm --bytes`): every token is replaced by its
 * bytes (GPT-2's BPE is lossless, so this is the corpus's exact UTF-8 text) and each <|endoftext|>
 * document separator by one NUL byte (0, which the cleaned text never contains: a NUL in a token is
 * an error). out gets vocab 256. tok: a loaded GPT-2 tokenizer (derf/tokenizer.h). */
struct derf_tokenizer;
int derf_shard_to_bytes(const derf_shard *in, const struct derf_tokenizer *tok, derf_shard *out,
                        char *err, size_t errlen);
#define DERF_BYTE_VOCAB 256
#define DERF_BYTE_EOT 0   /* the document separator of a byte shard */

/* ---- documents ------------------------------------------------------------------------------ */

typedef struct {
    char *name; /* e.g. "1790_george_washington_n", "ca01", "Ge", "EMMA" */
    char *text; /* cleaned UTF-8, NUL-terminated */
    size_t len;
} derf_text_doc;

typedef struct {
    derf_text_doc *d;
    size_t n, cap;
} derf_text_docs; /* zero-initialise */

/* Appends a document; takes ownership of text (malloc'd, len bytes plus a NUL). Aborts on OOM. */
void derf_text_docs_add(derf_text_docs *docs, const char *name, char *text, size_t len);
void derf_text_docs_free(derf_text_docs *docs);

/* ---- extraction and cleaning (corpus.c); pure functions on buffers ------------------------------ */

/* Brown corpus file: drops each token's "/tag" (everything from its last '/'), one sentence a line,
 * tokens joined by single spaces (the corpus's own tokenisation, `` and '' quotes, stays). */
char *derf_text_brown_strip(const char *in, size_t len, size_t *out_len);
/* `bible -f` output ("Ge1:1 In the beginning ...", one verse a line): one document per book, named
 * by the book's abbreviation; a chapter is a paragraph (verses joined by spaces), chapters are
 * separated by a blank line. A line without a verse prefix is an error (line number in err). */
int derf_text_kjv_split(const char *in, size_t len, derf_text_docs *out, char *err, size_t errlen);
/* Hard-wrapped text -> paragraphs: the lines of a paragraph (trimmed) joined by one space,
 * paragraphs separated by one blank line; CRLF accepted; ends with '\n' unless empty. */
char *derf_text_unwrap(const char *in, size_t len, size_t *out_len);
/* An R lazy-load database (Rdata.rdb) holding character vectors: a sequence of chunks, each a 4-byte
 * big-endian length and a zlib stream of an R serialization (XDR "X\n", version 2 or 3) of a STRSXP.
 * One document per chunk: its elements joined by '\n' (NA elements are empty lines), named chunkN.
 * Anything else (another SEXP type, a bad length, a broken stream) is an error. */
int derf_text_rdb_decode(const void *blob, size_t len, derf_text_docs *out, char *err, size_t errlen);

/* ---- the sources ---------------------------------------------------------------------------- */

typedef struct {
    const char *name;  /* sotu, austen, brown, kjv, moby-dick */
    int val;           /* 1: validation split */
    const char *what;  /* one line of description */
    int (*load)(const char *src_dir, derf_text_docs *out, char *err, size_t errlen);
} derf_text_source;

extern const derf_text_source derf_text_sources[];
extern const int derf_text_nsources;

/* ---- building ------------------------------------------------------------------------------- */

typedef struct {
    const char *src;  /* source folder (NULL: DERF_TEXT_SRC) */
    const char *out;  /* output folder (NULL: runs/data/text); train.bin and val.bin go there */
    const char *gpt2; /* folder with encoder.json and vocab.bpe (NULL: derf_tok_load_dir's default) */
    int quiet;        /* no progress lines */
} derf_text_opts;

typedef struct {
    char name[32];
    int val;
    size_t docs, bytes, tokens; /* tokens include one <|endoftext|> per document */
} derf_text_stat;

/* Loads every source, tokenizes each document (GPT-2 flavour), writes <out>/train.bin and
 * <out>/val.bin atomically, and fills stats[derf_text_nsources]. Progress lines go to stderr. */
int derf_text_build(const derf_text_opts *o, derf_text_stat *stats, char *err, size_t errlen);

#endif
