/* nccl.c - NCCL communicators over MPI groups (see nccl.h). */
#include "parallel/nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_ops.h"
#include "parallel/watchdog.h"

/* An NCCL communicator and the MPI group it was made over (whose name the
 * watchdog's error line gives). */
typedef struct {
    ncclComm_t c;
    MPI_Comm mpi;
    cudaStream_t side;         /* the bucket sums' stream (made at the first) */
    cudaEvent_t ready, joined; /* kernels before a bucket; the buckets' end */
} mt_nccl;

/* Every communicator made, for ncclCommAbort when the watchdog ends the job. */
#define LIVE_MAX 8
static ncclComm_t live[LIVE_MAX];
static int n_live;

static void abort_all(void) {
    for (int i = 0; i < n_live; i++)
        if (live[i]) ncclCommAbort(live[i]);
    n_live = 0;
}

/* The legacy default stream (NCCL's and the kernels') has run dry. */
static int stream_done(void *arg) {
    (void)arg;
    return cudaStreamQuery(0) != cudaErrorNotReady;
}

static void nccl_check(ncclResult_t r, const char *what) {
    if (r == ncclSuccess) return;
    fprintf(stderr, "mpitrain: error: %s failed: %s\n", what, ncclGetErrorString(r));
    abort();
}

static void cuda_check(cudaError_t r, const char *what) {
    if (r == cudaSuccess) return;
    fprintf(stderr, "mpitrain: error: %s failed: %s\n", what, cudaGetErrorString(r));
    abort();
}

/* NCCL calls stay queued and order with the kernels: the watchdog's
 * deadline covers them where the host next waits for the device (the
 * training step's read, an evaluation forward: mt_watchdog_wait_device), so
 * a peer that never arrives trips it there instead of hanging. With
 * MPITRAIN_CUDA_SYNC=1 (debugging), or where the step's host waits for the
 * device before that read (mt_nccl_watch_each), each call is waited for
 * here, polling, and a timeout names the call and its peer. */
static int watch_each; /* mt_nccl_watch_each */

void mt_nccl_watch_each(int on) {
    watch_each = on;
}

static void watch(const mt_nccl *n, const char *op, int peer) {
    if (mt_watchdog_enabled() && (watch_each || mt_cuda_sync_mode()))
        mt_watchdog_wait_for(stream_done, NULL, op, n->mpi, peer);
}

int mt_nccl_create(void **nc, MPI_Comm comm, char *why, size_t n) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    *nc = NULL;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int ok = 1;
    ncclResult_t r = ncclSuccess;
    if (rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) ok = 0;
    MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
    if (!ok) {
        snprintf(why, n, "ncclGetUniqueId failed on the group's first rank");
        return -1;
    }
    MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm);
    ncclComm_t c = NULL;
    r = ncclCommInitRank(&c, size, id, rank);
    if (r != ncclSuccess) {
        /* the group's other ranks may be waiting inside ncclCommInitRank for
         * this one, where no agreement can reach them: end the job */
        int wrank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
        fprintf(stderr,
                "mpitrain: error: NCCL could not start on rank %d: ncclCommInitRank: %s "
                "(NCCL_DEBUG=INFO says why)\n"
                "mpitrain: hint: build with -DMPITRAIN_NCCL=OFF to sum through MPI instead\n",
                wrank, ncclGetErrorString(r));
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 5); /* MT_ERR_COMM */
    }
    mt_nccl *h = malloc(sizeof *h);
    if (!h) {
        fprintf(stderr, "mpitrain: error: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 5);
    }
    memset(h, 0, sizeof *h);
    h->c = c, h->mpi = comm;
    int slot = 0; /* a slot a destroyed communicator freed, else a new one */
    while (slot < n_live && live[slot]) slot++;
    if (slot < LIVE_MAX) live[slot] = c, n_live = slot == n_live ? n_live + 1 : n_live;
    mt_watchdog_on_abort(abort_all);
    *nc = h;
    return 0;
}

void mt_nccl_sum(void *nc, float *buf, size_t n) {
    if (n == 0) return;
    const mt_nccl *x = nc;
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, x->c, 0);
    if (r != ncclSuccess) {
        fprintf(stderr, "mpitrain: error: ncclAllReduce of %zu floats failed: %s\n", n,
                ncclGetErrorString(r));
        abort();
    }
    watch(x, "nccl allreduce", -1);
}

void mt_nccl_exchange(void *nc, const float *sbuf, size_t sn, int to, float *rbuf, size_t rn,
                      int from) {
    const mt_nccl *x = nc;
    ncclComm_t c = x->c;
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    if (to >= 0) nccl_check(ncclSend(sbuf, sn, ncclFloat32, to, c, 0), "ncclSend");
    if (from >= 0) nccl_check(ncclRecv(rbuf, rn, ncclFloat32, from, c, 0), "ncclRecv");
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    watch(x,
          from >= 0 && to >= 0 ? "nccl send/recv"
          : from >= 0          ? "nccl recv"
                               : "nccl send",
          from >= 0 ? from : to);
}

void mt_nccl_sum_start(void *nc, float *buf, size_t n) {
    mt_nccl *x = nc;
    if (n == 0) return;
    if (!x->side) { /* non-blocking: no implicit order with the legacy stream, only the events */
        cuda_check(cudaStreamCreateWithFlags(&x->side, cudaStreamNonBlocking), "cudaStreamCreate");
        cuda_check(cudaEventCreateWithFlags(&x->ready, cudaEventDisableTiming), "cudaEventCreate");
        cuda_check(cudaEventCreateWithFlags(&x->joined, cudaEventDisableTiming), "cudaEventCreate");
    }
    /* a wait takes the event's latest record: one event serves every bucket */
    cuda_check(cudaEventRecord(x->ready, 0), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(x->side, x->ready, 0), "cudaStreamWaitEvent");
    nccl_check(ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, x->c, x->side), "ncclAllReduce");
}

/* The buckets' stream has run dry. */
static int side_done(void *arg) {
    return cudaStreamQuery(((const mt_nccl *)arg)->side) != cudaErrorNotReady;
}

void mt_nccl_sum_join(void *nc) {
    mt_nccl *x = nc;
    if (!x->side) return;
    cuda_check(cudaEventRecord(x->joined, x->side), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(0, x->joined, 0), "cudaStreamWaitEvent");
    if (mt_watchdog_enabled() && (watch_each || mt_cuda_sync_mode()))
        mt_watchdog_wait_for(side_done, x, "nccl allreduce", x->mpi, -1);
}

void mt_nccl_destroy(void *nc) {
    mt_nccl *x = nc;
    if (!x) return;
    if (x->side) {
        cudaStreamSynchronize(x->side);
        cudaEventDestroy(x->ready);
        cudaEventDestroy(x->joined);
        cudaStreamDestroy(x->side);
    }
    for (int i = 0; i < n_live; i++)
        if (live[i] == x->c) live[i] = NULL;
    ncclCommDestroy(x->c);
    free(x);
}

void mt_nccl_version(char *buf, size_t n) {
    int v = 0;
    if (ncclGetVersion(&v) != ncclSuccess) {
        snprintf(buf, n, "unknown");
        return;
    }
    /* NCCL_VERSION_CODE: major*10000 + minor*100 + patch since 2.9 */
    snprintf(buf, n, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
}
