/*
 * safetensors.h - writing float32 tensors in the safetensors format (the
 * Hugging Face / PyTorch world's file of named tensors):
 *
 *   8 bytes    N, the header's length, unsigned 64-bit little-endian
 *   N bytes    the header: a JSON object, padded with spaces to make 8 + N
 *              a multiple of 8 (so the data is 8-byte aligned); per tensor
 *              "name": {"dtype": "F32", "shape": [...], "data_offsets":
 *              [begin, end]} (byte offsets into the data), plus
 *              "__metadata__": {string: string}
 *   the data   every tensor's elements row-major, float32 little-endian,
 *              in the order given, back to back (no holes, no overlap)
 *
 * The file is written atomically (temporary name in the same folder, fsync,
 * rename: io/files.h), so a reader sees the old file or the whole new one.
 */
#ifndef MT_SAFETENSORS_H
#define MT_SAFETENSORS_H

#include <stdint.h>

#include "base/error.h"

#define MT_ST_MAX_DIMS 4

typedef struct {
    const char *name;
    int ndim; /* 0 (a scalar) .. MT_ST_MAX_DIMS */
    int64_t shape[MT_ST_MAX_DIMS];
    const float *data; /* (shape) row-major, host order */
} mt_st_tensor;

/*
 * Writes the n tensors t and the metadata (n_meta pairs: meta[2i] the key,
 * meta[2i + 1] the value) to path. Names must be unique and not
 * "__metadata__" (MT_ERR_INTERNAL otherwise: the caller chose them).
 * Output errors are MT_ERR_USAGE naming the file; nothing is left behind.
 */
int mt_safetensors_write(const char *path, const mt_st_tensor *t, int n, const char *const *meta,
                         int n_meta, mt_err *e);

/* The same into an open temporary file path tmp (created, written, not
 * committed): for a caller that commits several files together
 * (mt_file_commit). On failure tmp is removed. */
int mt_safetensors_write_tmp(const char *tmp, const mt_st_tensor *t, int n, const char *const *meta,
                             int n_meta, mt_err *e);

#endif
