/*
 * nccl.h - NCCL communicators over MPI groups (built with CUDA and NCCL
 * only: MT_HAVE_NCCL). The unique id is made by rank 0 of the MPI group and
 * broadcast over it. Collectives go on the legacy default stream, where the
 * CUDA backend's kernels run, so they order with them without a host wait.
 */
#ifndef MT_NCCL_H
#define MT_NCCL_H

#include <mpi.h>
#include <stddef.h>

/* Collective over comm: *nc becomes a communicator of comm's ranks on each
 * rank's current CUDA device. Returns 0, or -1 with the reason in why on
 * every rank when no unique id could be made. If ncclCommInitRank fails on
 * a rank, that rank aborts the job (exit 5): the others may be waiting
 * inside NCCL, beyond the reach of any agreement. */
int mt_nccl_create(void **nc, MPI_Comm comm, char *why, size_t n);
/* In-place sum of n floats; aborts with a message on an NCCL error. */
void mt_nccl_sum(void *nc, float *buf, size_t n);
/* The sum of n floats in place on the communicator's own stream, after
 * the work queued on the legacy default stream so far (an event recorded
 * there): the gradient's buckets, which overlap the backward's kernels. */
void mt_nccl_sum_start(void *nc, float *buf, size_t n);
/* The legacy default stream waits (an event) for every sum started; with
 * the watchdog on, the host waits for them too, polling. */
void mt_nccl_sum_join(void *nc);
/* One group of ncclSend (sn floats to peer `to`, when to >= 0) and ncclRecv
 * (rn floats from `from`, when from >= 0); aborts on an NCCL error. */
void mt_nccl_exchange(void *nc, const float *sbuf, size_t sn, int to, float *rbuf, size_t rn,
                      int from);
void mt_nccl_destroy(void *nc);
/* on: with the watchdog on, each NCCL call is waited for where it is made,
 * polling under the deadline (a layout whose step waits for the device on
 * the host before the step's read: parallel/xcomm.h's mt_xcomm_watch_each);
 * off (the default): the step's read and each evaluation forward cover the
 * queued calls (parallel/watchdog.h, mt_watchdog_wait_device). */
void mt_nccl_watch_each(int on);
/* "2.28.9", or "" without NCCL */
void mt_nccl_version(char *buf, size_t n);

#endif
