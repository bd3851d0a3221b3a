/* nccl.c - NCCL communicators over MPI groups (see nccl.h). */
#include "parallel/nccl.h"

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    *nc = c;
    return 0;
}

void mt_nccl_sum(void *nc, float *buf, size_t n) {
    if (n == 0) return;
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, (ncclComm_t)nc, 0);
    if (r != ncclSuccess) {
        fprintf(stderr, "mpitrain: error: ncclAllReduce of %zu floats failed: %s\n", n,
                ncclGetErrorString(r));
        abort();
    }
}

static void nccl_check(ncclResult_t r, const char *what) {
    if (r == ncclSuccess) return;
    fprintf(stderr, "mpitrain: error: %s failed: %s\n", what, ncclGetErrorString(r));
    abort();
}

void mt_nccl_exchange(void *nc, const float *sbuf, size_t sn, int to, float *rbuf, size_t rn,
                      int from) {
    ncclComm_t c = (ncclComm_t)nc;
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    if (to >= 0) nccl_check(ncclSend(sbuf, sn, ncclFloat32, to, c, 0), "ncclSend");
    if (from >= 0) nccl_check(ncclRecv(rbuf, rn, ncclFloat32, from, c, 0), "ncclRecv");
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
}

void mt_nccl_destroy(void *nc) {
    if (nc) ncclCommDestroy((ncclComm_t)nc);
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
