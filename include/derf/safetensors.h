/* derf/safetensors.h: checkpoints in the safetensors format, F32 only.
 *
 * Layout: 8-byte little-endian header length H; H bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * padded with spaces to a multiple of 8; then the raw little-endian tensor bytes, offsets relative
 * to the end of the header. Files are written atomically (derf/io.h) and are loadable by the Python
 * safetensors package. The reader validates everything a hostile file could get wrong.
 * All functions return 0 / -1 and fill `err` with one line on failure. */
#ifndef DERF_SAFETENSORS_H
#define DERF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define DERF_ST_MAX_DIMS 8
#define DERF_ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MB, as in the reference implementation */

/* A tensor to write. data holds prod(shape) floats (may be NULL when that is 0). */
typedef struct {
    const char *name;
    int ndim;             /* 0 (a scalar) .. DERF_ST_MAX_DIMS */
    const int64_t *shape; /* ndim entries, each >= 0 */
    const float *data;
} derf_st_tensor_in;

typedef struct {
    const char *key, *value;
} derf_st_meta;

/* Writes the tensors in the order given, then the metadata (string -> string), atomically. */
int derf_safetensors_write(const char *path, const derf_st_tensor_in *tensors, int ntensors,
                           const derf_st_meta *meta, int nmeta, char *err, size_t errlen);

/* A loaded tensor: data points into the file's data buffer (64-byte aligned base). */
typedef struct {
    char *name;
    int ndim;
    int64_t shape[DERF_ST_MAX_DIMS];
    size_t numel;
    const float *data;
} derf_st_tensor;

typedef struct {
    int ntensors;
    derf_st_tensor *tensors; /* in file-data order (sorted by offset) */
    int nmeta;
    derf_st_meta *meta;      /* strings owned by this struct */
    void *data;              /* the data section; tensors point into it */
    size_t data_len;
} derf_safetensors;

/* Reads and validates path (refusing files over max_bytes). On failure *st is zeroed. */
int derf_safetensors_read(derf_safetensors *st, const char *path, size_t max_bytes, char *err,
                          size_t errlen);
const derf_st_tensor *derf_safetensors_find(const derf_safetensors *st, const char *name);
const char *derf_safetensors_meta(const derf_safetensors *st, const char *key); /* NULL if absent */
void derf_safetensors_free(derf_safetensors *st);

#endif
