/*
 * xcomm.h - sums over a group of ranks for buffers in the backend's memory:
 * the one comm interface the trainer and the models use for gradients and
 * tensor-parallel activations (docs/CUDA.md).
 *
 *   host memory (the CPU backend)      MPI_Allreduce on the buffer itself
 *   CUDA device memory, NCCL built     ncclAllReduce on the buffer, enqueued on
 *                                      the stream the kernels run on (no host
 *                                      synchronisation)
 *   device memory otherwise            MPI through a host copy (to_host, MPI,
 *                                      to_device), in bounded pieces
 *
 * NCCL is not used when ranks of the group share a GPU (NCCL refuses that);
 * the group then falls back to MPI through the host, and x->how says so. A
 * group of one rank does nothing.
 */
#ifndef MT_XCOMM_H
#define MT_XCOMM_H

#include <mpi.h>
#include <stddef.h>

#include "base/error.h"
#include "kernels/backend.h"

typedef struct mt_xstage mt_xstage; /* host staging buffer (grown on demand) */

typedef struct {
    MPI_Comm mpi; /* the group; MPI_COMM_NULL: not a member (or no group) */
    int size;
    const mt_backend *be; /* whose memory the buffers are in; NULL: host */
    void *nccl;           /* the NCCL communicator, or NULL */
    mt_xstage *stage;     /* host copy for device buffers without NCCL */
    char how[192];        /* "mpi", "nccl" or "mpi via host (why)" */
} mt_xcomm;

/* A group over comm (MPI_COMM_NULL allowed) for host buffers. */
void mt_xcomm_host(mt_xcomm *x, MPI_Comm comm);
/* Switches x to buffers in be's memory; with use_nccl, tries NCCL first.
 * node names this rank's node (equal exactly on ranks of one node: the
 * world rank of its first rank), to tell ranks that share a GPU. Collective
 * over x->mpi (call on every member, in the same order on every rank).
 * Fails only for lack of host memory. NCCL that a whole group cannot use
 * (ranks sharing a GPU, no unique id) falls back to MPI via the host; NCCL
 * failing to start on some ranks only is not something the others can
 * learn (they wait inside NCCL), so that rank aborts the job (exit 5). */
int mt_xcomm_device(mt_xcomm *x, const mt_backend *be, int use_nccl, int node, mt_err *e);
/* In-place sum of n floats over the group; collective over x->mpi. */
void mt_xcomm_sum(const mt_xcomm *x, float *buf, size_t n);
/* Sums that return at once (the gradient's buckets, parallel/buckets.h):
 * what x can do. MT_XSTART_COPY: host memory, MPI_Iallreduce from a send
 * copy (Open MPI's in-place non-blocking sum is a reduce and a broadcast
 * through one rank; collectives.c); MT_XSTART_NCCL: ncclAllReduce in place
 * on a stream of its own; MT_XSTART_NONE: device memory summed through the
 * host, or no group. */
enum { MT_XSTART_NONE = 0, MT_XSTART_COPY = 1, MT_XSTART_NCCL = 2 };
int mt_xcomm_can_start(const mt_xcomm *x);
/* Starts the sum of buf's n floats (n < 2^31) over the group. COPY: send
 * is the caller's room for n floats, both untouched until *r completes
 * (MPI_Test, mt_watchdog_wait). NCCL: send unused, *r = MPI_REQUEST_NULL;
 * the sum runs after the kernels queued so far, and mt_xcomm_sum_join
 * queues the kernels after it. Collective over x->mpi, in the same order
 * on every member. */
void mt_xcomm_sum_start(const mt_xcomm *x, float *send, float *buf, size_t n, MPI_Request *r);
/* After the sums started: NCCL's stream joins the kernels' (and, with the
 * watchdog on, is waited for); nothing on the other paths. */
void mt_xcomm_sum_join(const mt_xcomm *x);
/* Point to point inside the group (the pipeline): sends sn floats of sbuf
 * to group rank `to` and receives rn floats into rbuf from group rank
 * `from` (a side is skipped when its rank is < 0), both at once; returns
 * when both are done (on a device: when both are queued in stream order).
 * The peers call it with the mirror image (their send is this receive).
 * A send completes only once its receive is posted, on every path: NCCL's
 * grouped ncclSend/ncclRecv; MPI_Issend on the host (so a schedule that
 * never deadlocks here never deadlocks with NCCL either). */
void mt_xcomm_exchange(const mt_xcomm *x, const float *sbuf, size_t sn, int to, float *rbuf,
                       size_t rn, int from);
/* Where a training step waits for the device on the host before its read
 * (a host copy of a sum without NCCL, ZeRO-1's or the deterministic sums'
 * host copies, the unfused loss's values): 1 makes the watchdog wait for
 * each NCCL call where it is made, so no such host wait can block without a
 * deadline behind a peer that never comes; 0 (the default) leaves the
 * deadline to the step's read (parallel/nccl.h). Process-wide. */
void mt_xcomm_watch_each(int on);
void mt_xcomm_free(mt_xcomm *x);
/* The NCCL version device buffers are summed with ("2.28.9"), or "" when
 * this binary was built without NCCL. */
void mt_xcomm_nccl_version(char *buf, size_t n);

#endif
