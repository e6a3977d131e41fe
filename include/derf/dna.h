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
#define DERF_DNA_MAX_COORD ((long long)1 << 48) /* MAF/FASTA coordinates beyond this are refused as corrupt */

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
    char *desc;        /* FASTA: the rest of the header after the first space/tab ("" if none); MAF: NULL */
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
    const char *dmel;     /* dm3 upstream2000 FASTA (default DERF_DNA_DMEL_DEFAULT; a missing default is skipped) */
    int promoter_len;     /* promoter task window (default DERF_DNA_PROMOTER_LEN) */
    const char *umaydis;  /* U. maydis genome FASTA (default DERF_DNA_UMAYDIS_DEFAULT; a missing default is skipped) */
    uint64_t seed;        /* task sampling */
    int quiet;
} derf_dna_build_opts;

#define DERF_DNA_MAF_DEFAULT \
    "/usr/share/doc/maffilter/examples/Gorilla/Compara.epo_5_catarrhini_hsap-projected.chr22.subset.nogap.cleaned_aln.maf.gz"
#define DERF_DNA_RAGOUT_DEFAULT "/usr/share/doc/ragout/examples"
/* Biostrings' extdata/dm3_upstream2000.fa.gz, which tools/install-deps.sh takes out of the r-bioc-biostrings
 * deb without installing R */
#define DERF_DNA_DMEL_DEFAULT "/usr/local/share/derf/r-bioc-biostrings/dm3_upstream2000.fa.gz"
#define DERF_DNA_PROMOTER_LEN 300
/* the fungus Ustilago maydis (maffilter-examples): the out-of-distribution evaluation corpus */
#define DERF_DNA_UMAYDIS_DEFAULT "/usr/share/doc/maffilter/examples/Umaydis/Umaydis.fasta.gz"

/* Writes out/human_chr22.dnac, out/human_repeat_500.dnat, out/bact_species_200.dnat and, when their
 * source files are there, out/dmel_promoter_<len>.dnat and out/umaydis.dnac; prints a summary to stdout
 * (unless quiet). */
int derf_dna_build(const derf_dna_build_opts *o, char *err, size_t errlen);

/* Repeat task from a split corpus and its soft mask: non-overlapping windows of len bases with at
 * most 10% N; label 1 when >= 90% of the bases are soft-masked, 0 when <= 10%; classes balanced per
 * split by random subsampling, at most cap[split] windows per split; each window is taken on a random
 * strand. Deterministic in seed. */
int derf_dna_make_repeat_task(const derf_dna_corpus *c, const uint8_t *lower, int len, const int cap[3],
                              uint64_t seed, derf_dna_task *t, char *err, size_t errlen);

/* ---- Drosophila promoters (UCSC dm3 upstream2000.fa, in Bioconductor's Biostrings) ----------------- */
/* One record's header, e.g. ">NM_078863_up_2000_chr2L_16764737_f chr2L:16764737-16766736": the region of
 * `up` bases upstream of a transcript's TSS, 1-based inclusive genome coordinates [start, end] (start < 1
 * for a region clipped at the chromosome start: then only bases 1..end are given), strand +1 ('_f') or -1
 * ('_r'). The sequence is in the gene's orientation (reverse-complemented for '_r'), so its 3' end is the
 * base next to the TSS. */
typedef struct {
    char chrom[32];
    int64_t start, end;
    int strand;
    int up;
} derf_dna_upstream;

/* Parses and cross-checks a header: name "<id>_up_<UP>_<chrom>_<start>_<f|r>", desc "<chrom>:<start>-<end>"
 * with the same chrom and start, end - start + 1 == UP, and seqlen == UP (when start < 1: seqlen == end). */
int derf_dna_parse_upstream(const char *name, const char *desc, size_t seqlen, derf_dna_upstream *u, char *err, size_t errlen);

/* Split of a dm3 chromosome arm: chr2R, chr3L, chrX, chr4 train; chr2L val; chr3R test; -1 for the rest
 * (heterochromatin chr*Het, unplaced chrU/chrUextra, chrM, chrYHet). */
int derf_dna_dmel_split(const char *chrom);

typedef struct {
    size_t records, clipped, other_arm, dup_region;  /* records read; dropped: clipped, not a used arm, same region */
    size_t overlap_prom, overlap_bg, n_rich, dup_seq; /* windows dropped by each filter */
    size_t avail[3][2];                              /* windows left per split and label before balancing */
} derf_dna_promoter_stats;

/* Promoter task (label 1: the len bases just upstream of the TSS, the 3' end of the record) vs background
 * (label 0: the distal len bases of the same region, UP - len .. UP upstream), both in the gene's
 * orientation. Leak-free: split by arm (derf_dna_dmel_split); one record per region; promoter windows that
 * overlap another kept promoter window and background windows that overlap any promoter window or another
 * kept background window (either strand) dropped; windows with > 10% N dropped; identical sequences (up to
 * reverse complement) kept once, or dropped altogether when they occur in two splits or with two labels;
 * classes balanced per split by random subsampling (seeded). Stored split by split, class by class, in
 * genome order. stats may be NULL. */
int derf_dna_make_promoter_task(const derf_dna_records *rs, int len, uint64_t seed, derf_dna_task *t,
                                derf_dna_promoter_stats *stats, char *err, size_t errlen);

/* Reads the FASTA at path, builds the promoter task and writes out/dmel_promoter_<len>.dnat (summary on
 * stdout unless quiet). Returns 1 without writing when path is missing and !required (after one line on
 * stderr saying how to get it), 0 when written, -1 on errors. */
int derf_dna_build_promoter(const char *path, int required, const char *out, int len, uint64_t seed, int quiet,
                            char *err, size_t errlen);

/* Out-of-distribution corpus: reads a FASTA genome and writes out/<name>.dnac with every record one segment
 * (pieces of at most 2^31 bases), all of split test, source = record index mod 256, start = the offset in the
 * record. Returns 1 without writing when path is missing and !required (after one line on stderr), 0 when
 * written, -1 on errors. */
int derf_dna_build_ood(const char *path, int required, const char *out, const char *name, int quiet, char *err, size_t errlen);

#endif
