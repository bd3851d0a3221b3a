/*
 * tensor_view.h - one tensor of the training state as io/ sees it: where it
 * lives in the file, its global shape, the part of it this rank holds and
 * where that part is in host memory. Checkpoints and model files take lists
 * of these, so io/ knows nothing of core's parameters and optimizers: core
 * (core/state_views.c) describes its buffers this way, io/ lays them out in
 * the file (docs/CHECKPOINT_FORMAT.md).
 *
 * What a rank holds of a tensor, in three nested steps:
 *  1. the global tensor: shape[0..ndim), row-major, as stored in the file;
 *  2. the tensor-parallel block: along shard_dim, rows [shard_offset,
 *     shard_offset + shard_len) of each of shard_parts equal blocks of that
 *     dim (c_attn's q, k and v thirds); along every other dim, everything.
 *     In memory the block is row-major with shard_parts * shard_len rows
 *     along shard_dim, part-major (core's mt_param_global_index). Not split
 *     (shard_dim -1): the block is the whole tensor;
 *  3. the range: elements [begin, begin + count) of that block, in the
 *     block's row-major order; data points at element begin.
 *
 * A holder holds its whole block (begin 0, count = block size), except
 * under ZeRO-1 (parallel.zero = 1), where each data-parallel rank keeps
 * only its rows of the optimizer state's block: the rows it writes in a
 * checkpoint (mt_ckpt_dp_rows; dp_shard set, so that the chunks spread
 * over the ranks), and the loader reads each rank's rows alone. The
 * weights stay whole blocks; model files take whole blocks only. A rank that holds nothing of a
 * tensor still lists it (every rank must know every tensor to lay out the file): held 0, data NULL,
 * count 0.
 *
 * data is host memory the caller owns: the live buffers, or a staging copy
 * taken at a step boundary (asynchronous checkpoints) - io/ only reads it
 * when writing and only writes it when loading, and keeps no pointer to it
 * after the call.
 */
#ifndef MT_TENSOR_VIEW_H
#define MT_TENSOR_VIEW_H

#include <stddef.h>
#include <stdint.h>

#define MT_VIEW_MAX_DIMS 4
/* A tensor's name in the file, with its NUL ("fc1.weight"; at most 63). */
#define MT_VIEW_NAME_LEN 64
/* Its dataset path: "/optim/momentum/" (the longest group prefix) plus a
 * name of MT_VIEW_NAME_LEN, with room to spare. */
#define MT_VIEW_PATH_LEN 128

typedef struct {
    char path[MT_VIEW_PATH_LEN];     /* dataset in the file: "/model/fc1.weight",
                                      * "/optim/m/fc1.weight" */
    int ndim;                        /* 1..MT_VIEW_MAX_DIMS */
    int64_t shape[MT_VIEW_MAX_DIMS]; /* global (logical) shape, as in the file */
    /* the tensor-parallel block this rank's copy belongs to (step 2 above) */
    int shard_dim;                   /* -1: not split, the block is the whole tensor */
    int shard_parts;                 /* shard_dim is this many equal blocks (1, or 3: q|k|v) */
    int64_t shard_offset, shard_len; /* rows [off, off+len) of each part along shard_dim */
    /* the range of the block held here (step 3 above) */
    int64_t begin; /* first element held, in the block's row-major order (0 today) */
    int64_t count; /* elements held: the block's size today, 0 when not held */
    int dp_shard;  /* held as a ZeRO-1 shard (mt_ckpt_dp_rows): its chunks are laid out
                    * so that every data-parallel rank writes about as many rows */
    int stage;     /* pipeline stage that owns it: only its ranks write it */
    int held;      /* this rank holds it (data valid; a mirror counts) */
    int mirror;    /* a copy of a tensor another stage owns (the tied embedding
                    * on the last stage): read on load, never written */
    float *data;   /* (count) host memory: block elements [begin, begin+count);
                    * NULL when not held */
} mt_tensor_view;

/* Elements of v at its global shape. */
size_t mt_view_global_numel(const mt_tensor_view *v);
/* Elements of one tensor-parallel block of v (the whole tensor when not split). */
size_t mt_view_block_numel(const mt_tensor_view *v);
/* v is split over tensor-parallel ranks (a valid shard_dim). */
int mt_view_is_split(const mt_tensor_view *v);

#endif
