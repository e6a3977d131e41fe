/* derf/dna.h: DNA data for the HyenaDNA / Caduceus experiments: the character tokenizer (HyenaDNA's
 * ids), reverse complement, readers of the real genomes Debian ships (MAF, FASTA, gzip'd or not),
 * the two binary file formats (a pretraining corpus of segments, a fixed-length classification
 * task) with validating readers, and the builder behind `derf data dna`. See docs/dna.md.
 *
 * Corpus file (.dnac), little-endian:
 *   char magic[8] "DERFDNAC"; uint32 version (1); uint32 nseg; uint64 ntok; char name[32] (NUL-padded)
 *   nseg x { uint64 offset; uint64 start; uint32 length; uint8 split; uint8 source; uint16 zero }
 *   ntok x uint8 token ids
 * Segment i is tokens[offset, offset+length): a stretch of contiguous source coordinates
 * [start, start+length) of source `source` in split `split` (0 train, 1 val, 2 test). Offsets are
 * consecutive (offset_0 = 0, offset_{i+1} = offset_i + length_i), every length > 0, every token a
 * base id (A C G T N). The file is exactly 56 + 24 nseg + ntok bytes.
 *
 * Task file (.dnat):
 *   char magic[8] "DERFDNAT"; uint32 version (1); uint32 n; uint32 len; uint32 nclass; char name[32]
 *   n x uint8 split; n x uint8 label (< nclass); n*len x uint8 token ids (base ids)
 * The file is exactly 56 + n (2 + len) bytes. */
#ifndef DERF_DNA_H
#define DERF_DNA_H

#include <stddef.h>
#include <stdint.h>

/* HyenaDNA's character tokenizer ids (Caduceus repo): specials, then the bases. The model's vocabulary
 * is padded to DERF_DNA_VOCAB. */
enum {
    DERF_DNA_CLS = 0, DERF_DNA_SEP = 1, DERF_DNA_BOS = 2, DERF_DNA_MASK = 3, DERF_DNA_PAD = 4,
    DERF_DNA_RESERVED = 5, DERF_DNA_UNK = 6,
    DERF_DNA_A = 7, DERF_DNA_C = 8, DERF_DNA_G = 9, DERF_DNA_T = 10, DERF_DNA_N = 11,
    DERF_DNA_NTOK = 12
};
#define DERF_DNA_VOCAB 16

enum { DERF_DNA_TRAIN = 0, DERF_DNA_VAL = 1, DERF_DNA_TEST = 2 };

/* Token id of one sequence character: a/A..t/T -> A..T (case ignored: upper-cased, like the paper's
 * runs), n/N and the IUPAC ambiguity codes (RYKMSWBDHV, any case) -> N; anything else -> -1. */
int derf_dna_char_id(int c);
/* "ACGTN" letter of a base id ('?' for specials). */
char derf_dna_id_char(int id);
/* Complement of an id: A<->T, C<->G; N and the specials map to themselves. */
int derf_dna_complement(int id);
/* dst = reverse complement of src (n ids); dst may equal src (in place). */
void derf_dna_revcomp(uint8_t *dst, const uint8_t *src, size_t n);

/* ---- a sequence source read into memory ------------------------------------------------------- */
typedef struct {
    char *name;        /* record name (FASTA header up to the first space, or MAF "Hsap.22") */
    int64_t start;     /* source coordinate of the first base (MAF start; 0 for FASTA) */
    size_t len;
    uint8_t *ids;      /* base ids */
    uint8_t *lower;    /* 1 where the input letter was lower case (soft-masked), else 0 */
} derf_dna_record;

typedef struct { derf_dna_record *r; size_t n, cap; } derf_dna_records; /* zero-initialise */
void derf_dna_records_free(derf_dna_records *rs);

/* FASTA (plain or gzip): one record per '>' header; blank lines skipped; any other character than a
 * sequence letter is an error naming the line. A file without a record, a record without bases, a
 * truncated gzip stream: errors. */
int derf_dna_read_fasta(const char *path, derf_dna_records *out, char *err, size_t errlen);
/* MAF (plain or gzip): the "s" rows whose source starts with `src_prefix` (e.g. "Hsap."), one record
 * per row, gaps '-' removed, coordinates kept (rows on the '-' strand are turned to '+' coordinates and
 * reverse-complemented). The number of non-gap letters must equal the row's size field. */
int derf_dna_read_maf(const char *path, const char *src_prefix, derf_dna_records *out, char *err, size_t errlen);

/* ---- the two file formats --------------------------------------------------------------------- */
typedef struct { uint64_t offset, start; uint32_t length; uint8_t split, source; } derf_dna_segment;

typedef struct {
    char name[32];
    derf_dna_segment *seg;
    size_t nseg, segcap;
    uint8_t *tok;
    size_t ntok, tokcap;
} derf_dna_corpus; /* zero-initialise */

/* Appends a segment (copies the ids). Aborts on out-of-memory. */
void derf_dna_corpus_add(derf_dna_corpus *c, const uint8_t *ids, size_t n, int64_t start, int split, int source);
void derf_dna_corpus_free(derf_dna_corpus *c);
int derf_dna_corpus_write(const char *path, const derf_dna_corpus *c, char *err, size_t errlen);
int derf_dna_corpus_read(const char *path, derf_dna_corpus *c, char *err, size_t errlen);
/* The reader's checks on bytes in memory (name only for messages). */
int derf_dna_corpus_parse(const void *data, size_t len, const char *name, derf_dna_corpus *c, char *err, size_t errlen);

typedef struct {
    char name[32];
    int n, len, nclass;
    uint8_t *split, *label, *tok;   /* n, n, n*len */
} derf_dna_task;

int derf_dna_task_write(const char *path, const derf_dna_task *t, char *err, size_t errlen);
int derf_dna_task_read(const char *path, derf_dna_task *t, char *err, size_t errlen);
int derf_dna_task_parse(const void *data, size_t len, const char *name, derf_dna_task *t, char *err, size_t errlen);
void derf_dna_task_free(derf_dna_task *t);

/* ---- leak-free splits -------------------------------------------------------------------------- */
/* Human chr22 split by coordinate: 1-Mbp bins, bin % 10 == 0 -> test, == 5 -> val, else train; bases
 * within DERF_DNA_BORDER of a bin border are dropped (returns -1 for them). */
#define DERF_DNA_BIN 1000000
#define DERF_DNA_BORDER 10000
int derf_dna_human_split(int64_t coord);
/* Splits the records into segments of one split each (dropping border bases), merging a record into
 * the previous segment when coordinates continue and the split is the same. lower_out (may be NULL)
 * receives the soft-mask bytes in corpus token order (malloc'd, c->ntok bytes). */
void derf_dna_split_human(const derf_dna_records *rs, derf_dna_corpus *c, uint8_t **lower_out);

/* ---- building (derf data dna) ----------------------------------------------------------------- */
typedef struct {
    const char *maf;      /* human chr22 MAF (default: the maffilter-examples path) */
    const char *ragout;   /* ragout examples folder (default: the ragout-examples path) */
    const char *out;      /* output folder (default runs/data/dna) */
    uint64_t seed;        /* task sampling */
    int quiet;
} derf_dna_build_opts;

#define DERF_DNA_MAF_DEFAULT \
    "/usr/share/doc/maffilter/examples/Gorilla/Compara.epo_5_catarrhini_hsap-projected.chr22.subset.nogap.cleaned_aln.maf.gz"
#define DERF_DNA_RAGOUT_DEFAULT "/usr/share/doc/ragout/examples"

/* Writes out/human_chr22.dnac, out/human_repeat_500.dnat and out/bact_species_200.dnat; prints a
 * summary to stdout (unless quiet). */
int derf_dna_build(const derf_dna_build_opts *o, char *err, size_t errlen);

/* Repeat task from a split corpus and its soft mask: non-overlapping windows of len bases with at
 * most 10% N; label 1 when >= 90% of the bases are soft-masked, 0 when <= 10%; classes balanced per
 * split by random subsampling, at most cap[split] windows per split; each window is taken on a random
 * strand. Deterministic in seed. */
int derf_dna_make_repeat_task(const derf_dna_corpus *c, const uint8_t *lower, int len, const int cap[3],
                              uint64_t seed, derf_dna_task *t, char *err, size_t errlen);

#endif
