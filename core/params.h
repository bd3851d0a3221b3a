/*
 * params.h - parameters as views into one contiguous buffer (DESIGN decision 1).
 *
 * A model registers its tensors (name, global shape); mt_params_alloc then
 * lays them out back to back in one float buffer per rank, with gradients
 * and optimizer state in buffers of the same layout. A view records the
 * slice of the global tensor this rank owns (shard_dim, shard_offset,
 * shard_len along that dimension); under pure data parallelism every rank
 * owns the whole tensor (shard_dim = -1). Flat buffers make the gradient
 * all-reduce one call and let checkpoints write global-view tensors.
 *
 * Model parallelism (docs/PARALLEL.md) changes only the views: a tensor
 * split over tensor-parallel ranks owns a slice along shard_dim (in each of
 * shard_parts equal blocks of it: c_attn's q, k and v thirds), and a tensor
 * of another pipeline stage is registered all the same (every rank knows
 * every tensor, so checkpoints can be laid out by any rank) but holds no
 * elements here (local = 0). Register, then shard and place, then alloc.
 */
#ifndef MT_PARAMS_H
#define MT_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "kernels/backend.h"
#include "parallel/gradsync.h"

#define MT_PARAM_NAME_LEN 64
#define MT_PARAM_MAX_DIMS 4

typedef enum {
    MT_INIT_ZERO = 0,
    MT_INIT_UNIFORM, /* U(-scale, scale) */
    MT_INIT_NORMAL,  /* N(0, scale^2) */
    MT_INIT_ONE,
} mt_init_kind;

typedef struct {
    char name[MT_PARAM_NAME_LEN];     /* e.g. "fc1.weight" */
    int ndim;                         /* 1..4 */
    int64_t shape[MT_PARAM_MAX_DIMS]; /* global (logical) shape */
    int shard_dim;                    /* -1: this rank owns it whole */
    int shard_parts;                  /* shard_dim is this many equal blocks (1, or 3 for q|k|v) */
    int64_t shard_offset, shard_len;  /* owned rows [off, off+len) of each block of shard_dim */
    int stage;                        /* pipeline stage that owns (and checkpoints) it */
    int local;                        /* held by this rank (numel 0 otherwise) */
    int mirror;                       /* a copy of a tensor another stage owns (the tied
                                       * embedding on the last stage): read, never written */
    int tied;                         /* held on the first and the last pipeline stage (owner
                                       * and mirror): their gradients are summed (gradsync) */
    size_t offset;                    /* first element in the flat buffers */
    size_t numel;                     /* elements this rank holds (pad_rows included) */
    int64_t pad_rows;                 /* rows held after the global shape's last row of dim 0
                                       * (a whole tensor only): zero at init and forever, in
                                       * no file and no view (the GPT's padded vocabulary) */
    int decay;                        /* weight decay applies (matrices, not biases) */
    mt_init_kind init;
    float init_scale;
} mt_param;

/* A model's backward calls this after a layer's parameter gradients are
 * final, with the lowest flat offset from which on every gradient is (the
 * layers run in reverse of registration, the buffer's order); the stage
 * sets it for the last micro-batch's backward only (parallel/buckets.h). */
typedef void (*mt_grad_ready_fn)(void *ctx, size_t offset);

typedef struct {
    mt_param *v; /* (nparams) */
    int n, cap;
    size_t numel; /* total elements in each flat buffer */
    float *data;  /* (numel) parameters */
    float *grad;  /* (numel) gradients, same layout */
    /* (numel) bfloat16 bits of data, for products of bf16 operands
     * (backend.h's matmul_bf16): NULL unless a model asked for it before
     * the allocation (want_bf16); mt_params_to_bf16 refreshes it */
    uint16_t *data16;
    int want_bf16;
    const mt_backend *be;        /* data and grad are in this backend's device memory; NULL: host */
    mt_grad_ready_fn grad_ready; /* NULL: nobody waits on the gradient */
    void *grad_ready_ctx;
} mt_params;

/* For the models: tensor idx's gradient and every one after it in the
 * buffer are final for this step (calls p->grad_ready, if set). */
static inline void mt_params_grad_final(const mt_params *p, int idx) {
    if (p->grad_ready) p->grad_ready(p->grad_ready_ctx, p->v[idx].offset);
}

void mt_params_init(mt_params *p);
/* Registers a tensor owned whole by this rank; returns its index. */
int mt_params_add(mt_params *p, const char *name, int ndim, const int64_t *shape, int decay,
                  mt_init_kind init, float init_scale);
/* Tensor idx is split over nranks tensor-parallel ranks along dim: this
 * rank owns rows [rank*len, (rank+1)*len) of each of the parts equal blocks
 * of that dim (len = shape[dim] / parts / nranks; the caller checks that it
 * divides). nranks 1 leaves it whole. */
void mt_params_shard(mt_params *p, int idx, int dim, int parts, int rank, int nranks);
/* Tensor idx (held whole, not split) is held with its dim 0 rounded up to
 * a multiple of `multiple`: the extra rows follow the tensor's own in the
 * flat buffers and are zero (see pad_rows). Call before alloc. */
void mt_params_pad(mt_params *p, int idx, int64_t multiple);
/* Tensor idx belongs to pipeline stage `stage`; it is held here when local,
 * as a mirror of the owner's copy when mirror. */
void mt_params_place(mt_params *p, int idx, int stage, int local, int mirror);
/* Lays the held tensors out and allocates data and grad (64-byte aligned,
 * zeroed), and data16 when want_bf16. */
int mt_params_alloc(mt_params *p, mt_err *e);
/* The same, in be's memory when that is device memory (be->host_memory 0):
 * then data and grad are reached only through be's ops and copies. */
int mt_params_alloc_on(mt_params *p, const mt_backend *be, mt_err *e);
/* data16 = data rounded to bfloat16 (nothing without data16): before the
 * forwards of a step or an evaluation, after whatever changed data. */
void mt_params_to_bf16(mt_params *p, const mt_backend *be);
/* Fills data from (seed, param name, global element index) only. */
void mt_params_init_values(mt_params *p, uint64_t seed);
/* Elements held here, without the alignment padding between them (the
 * pad rows of mt_params_pad included: memory, not parameters). */
size_t mt_params_count(const mt_params *p);
/* Elements of the whole model (every tensor at its global shape). */
size_t mt_params_global_count(const mt_params *p);
/* Elements of t at its global shape, and of one tensor-parallel block of it
 * (what a rank holding t holds; the whole tensor when it is not split). */
size_t mt_param_global_numel(const mt_param *t);
size_t mt_param_block_numel(const mt_param *t);
/* Elements a rank holding t holds: its block plus its pad rows. */
size_t mt_param_held_numel(const mt_param *t);
/* Global row-major index of local element j of tensor t. */
uint64_t mt_param_global_index(const mt_param *t, size_t j);
const mt_param *mt_params_find(const mt_params *p, const char *name);
/* Tells g (after alloc) which held tensors are tied (summed over the
 * pipeline's first and last stage) and which this rank counts in the global
 * gradient norm: split tensors on every tensor-parallel rank, whole ones on
 * tensor-parallel rank 0 only, mirrors never. */
int mt_params_gradsync(const mt_params *p, int tp_rank, mt_gradsync *g, mt_err *e);
void mt_params_free(mt_params *p);
/* Allocates a zeroed 64-byte-aligned float buffer of n elements, or NULL. */
float *mt_alloc_floats(size_t n);

#endif
