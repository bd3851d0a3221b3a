/*
 * zero.h - ZeRO-1 (parallel.zero = 1; docs/PARALLEL.md, "ZeRO-1"): each
 * data-parallel rank keeps and updates only its shard of the optimizer
 * state. After the backward the gradient is reduce-scattered (each rank
 * gets the sum over the replicas of its shard only), the optimizer updates
 * the shard's parameters, and the parameters are all-gathered.
 *
 * A shard is not one slice of the flat buffer but one piece per tensor:
 * the dim-0 rows of the tensor's block that the rank writes in a checkpoint
 * (io's mt_ckpt_dp_rows), so a checkpoint's optimizer state is written by
 * its holders, with no communication, and stays global-view (any layout,
 * zero or not, resumes from it). core describes the pieces of every rank
 * (core/state_views.h); this layer moves them.
 *
 * The pieces of one rank are scattered over the flat buffer, so the
 * exchanges use one MPI indexed datatype per rank's pieces: nothing is
 * packed, and the only extra memory is one receive buffer (a shard; with
 * deterministic, half the gradient). Two algorithms:
 *
 *   reduce-scatter  a ring (p - 1 steps, each rank sends and receives one
 *                   shard per step, adding what it receives); with
 *                   deterministic, recursive halving at distance 1, 2, 4,
 *                   ... over the ranks' shards in bit-reversed order, which
 *                   sums every element in parallel/detsum.h's tree, so
 *                   zero = 1 gives bitwise what zero = 0 gives;
 *   all-gather      a ring (copies only: any order gives the same bits).
 *
 * Buffers in device memory go through a host copy of the flat buffer (an
 * NCCL path without it belongs to the GPU issue). Every wait is the
 * watchdog's (parallel.timeout names a stalled rank).
 */
#ifndef MT_ZERO_H
#define MT_ZERO_H

#include <mpi.h>
#include <stddef.h>

#include "base/error.h"
#include "kernels/backend.h"

typedef struct {
    size_t off, n; /* flat elements [off, off + n) */
    size_t pos;    /* their first element in the owner's shard (set by mt_zero_init) */
    int tensor;    /* the parameter (index) they belong to */
    int norm;      /* the owner counts them in the global norm (set by gradsync) */
} mt_zero_piece;

typedef struct {
    MPI_Comm comm; /* the data-parallel group */
    int rank, size;
    int deterministic;
    const mt_backend *be;  /* whose memory the flat buffers are in */
    size_t numel;          /* of the flat buffers */
    int np;                /* pieces per rank */
    mt_zero_piece *pieces; /* (size x np): rank k's are [k * np, (k + 1) * np) */
    size_t *count;         /* (size) elements of each rank's shard */
    MPI_Datatype *type;    /* (size) each rank's pieces in a flat buffer */
    int ntypes;            /* of them made */
    float *recv;           /* (nrecv) what a step receives */
    size_t nrecv;
    float *host; /* (numel) host copy of a device buffer; NULL for host memory */
} mt_zero;

/* Shards over comm (the data-parallel group, MPI_COMM_NULL: one rank) of
 * flat buffers of numel floats in be's memory: rank k holds pieces[k * np
 * .. k * np + np) (np per rank, in the same order on every rank; piece j
 * of every rank belongs to the same tensor). deterministic: the sum in the
 * fixed tree (the group size a power of two). Collective over comm
 * (datatypes only). */
int mt_zero_init(mt_zero *z, MPI_Comm comm, const mt_backend *be, size_t numel,
                 const mt_zero_piece *pieces, int np, int deterministic, mt_err *e);
/* This rank's pieces (np of them). */
const mt_zero_piece *mt_zero_mine(const mt_zero *z);
/* Elements of this rank's shard (its optimizer state per state buffer). */
size_t mt_zero_shard_numel(const mt_zero *z);
/* Reduce-scatter of the flat gradient grad: afterwards this rank's pieces
 * hold the sum over the group, in host memory at the returned buffer (grad
 * itself, or the host copy for device memory: then mt_zero_scatter_done
 * puts them into grad). Collective over the group. */
float *mt_zero_scatter(const mt_zero *z, float *grad);
void mt_zero_scatter_done(const mt_zero *z, float *grad);
/* All-gather of the flat parameters data: every rank's pieces from their
 * owner (device memory: through the host copy). Collective over the group. */
void mt_zero_gather(const mt_zero *z, float *data);
/* Host bytes it holds. */
double mt_zero_bytes(const mt_zero *z);
void mt_zero_free(mt_zero *z);

#endif
