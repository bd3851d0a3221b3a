/*
 * detsum.h - a sum over ranks whose rounding does not depend on the number
 * of ranks (parallel.deterministic, issue 17).
 *
 * Neither MPI_Allreduce nor NCCL fixes the order it adds in. This one is a
 * recursive halving (reduce-scatter) then doubling (all-gather) between
 * partners at distance 1, 2, 4, ... (rank ^ d): after the exchange at
 * distance d a rank's part holds the sum over its aligned block of 2d
 * ranks, the left half's sum plus the right half's. With p = 2^k ranks,
 * rank r holding the sum of the r-th aligned block of a complete binary
 * tree (core/gradtree.h), every element ends as that tree's root: the same
 * bits for any p, and the same on every rank (float addition is
 * commutative bitwise, so either partner may add).
 *
 * Cost: each rank sends and receives 2 (p - 1) / p of the buffer, like a
 * ring all-reduce, in 2 log2 p rounds. Buffers in device memory go through
 * a host copy (a device-side version with NCCL send/recv is left to do).
 */
#ifndef MT_DETSUM_H
#define MT_DETSUM_H

#include <mpi.h>
#include <stddef.h>

#include "base/error.h"
#include "kernels/backend.h"

typedef struct {
    MPI_Comm comm; /* the group (size a power of two); MPI_COMM_NULL: no group */
    int rank, size;
    const mt_backend *be; /* whose memory the buffers are in; NULL: host */
    size_t n;             /* floats per sum */
    float *host;          /* (n) host copy of a device buffer; NULL for host memory */
    float *recv;          /* (n / 2 + 1) the partner's half */
} mt_detsum;

/* A sum of n floats over comm (a power-of-two group, or MPI_COMM_NULL)
 * for buffers in be's memory (NULL: host). Allocates its host buffers. */
int mt_detsum_init(mt_detsum *d, MPI_Comm comm, const mt_backend *be, size_t n, mt_err *e);
/* In-place sum of buf's n floats over the group, in the fixed tree;
 * collective over the group. */
void mt_detsum_run(const mt_detsum *d, float *buf);
/* In-place sum of n doubles (a few: the step's loss) over comm, a
 * power-of-two group, by recursive doubling at distance 1, 2, 4, ...: the
 * same tree as mt_detsum_run, every rank the whole vector each round. */
void mt_detsum_doubles(MPI_Comm comm, double *x, int n);
/* Host bytes it holds. */
double mt_detsum_bytes(const mt_detsum *d);
void mt_detsum_free(mt_detsum *d);

#endif
