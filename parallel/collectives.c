/* collectives.c - host-buffer collectives in int-sized pieces (see collectives.h). */
#include "collectives.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/watchdog.h"

#define CHUNK (1 << 28) /* elements per MPI call, well under INT_MAX */

/* Open MPI's non-blocking allreduce (libnbc) reduces an in-place buffer to
 * one rank and broadcasts it back, 2 log2(p) times the data through that
 * rank; from a separate send buffer it takes a ring for large sums, as the
 * blocking one does. So a watched sum copies its data, a piece at a time,
 * into a scratch buffer kept for the next call (mt_coll_release frees it). */
#define SCRATCH_BYTES ((size_t)32 << 20)
static void *scratch;

void mt_coll_release(void) {
    free(scratch);
    scratch = NULL;
}

static void sum(MPI_Comm comm, void *buf, size_t n, MPI_Datatype t, size_t size) {
    if (!mt_watchdog_enabled()) { /* the blocking call: nothing to watch */
        for (size_t i = 0; i < n; i += CHUNK) {
            int cnt = (int)(n - i < CHUNK ? n - i : CHUNK);
            MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * size, cnt, t, MPI_SUM, comm);
        }
        return;
    }
    if (!scratch && !(scratch = malloc(SCRATCH_BYTES))) {
        fprintf(stderr, "mpitrain: error: out of memory for the reduction buffer\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    size_t piece = SCRATCH_BYTES / size;
    for (size_t i = 0; i < n; i += piece) {
        int cnt = (int)(n - i < piece ? n - i : piece);
        char *at = (char *)buf + i * size;
        memcpy(scratch, at, (size_t)cnt * size);
        MPI_Request r;
        MPI_Iallreduce(scratch, at, cnt, t, MPI_SUM, comm, &r);
        mt_watchdog_wait(&r, 1, "allreduce", comm, -1);
    }
}

void mt_coll_sum_floats(MPI_Comm comm, float *buf, size_t n) {
    sum(comm, buf, n, MPI_FLOAT, sizeof *buf);
}

void mt_coll_sum_doubles(MPI_Comm comm, double *buf, size_t n) {
    sum(comm, buf, n, MPI_DOUBLE, sizeof *buf);
}

void mt_coll_sum_u64(MPI_Comm comm, uint64_t *buf, size_t n) {
    sum(comm, buf, n, MPI_UINT64_T, sizeof *buf);
}

static void extreme_ints(MPI_Comm comm, int *buf, int n, MPI_Op op) {
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_INT, op, comm, &r);
    mt_watchdog_wait(&r, 1, "allreduce", comm, -1);
}

void mt_coll_min_ints(MPI_Comm comm, int *buf, int n) {
    extreme_ints(comm, buf, n, MPI_MIN);
}

void mt_coll_max_ints(MPI_Comm comm, int *buf, int n) {
    extreme_ints(comm, buf, n, MPI_MAX);
}

void mt_coll_max_doubles(MPI_Comm comm, double *buf, int n) {
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_MAX, comm, &r);
    mt_watchdog_wait(&r, 1, "allreduce", comm, -1);
}

static void bcast(MPI_Comm comm, int root, void *buf, int cnt, MPI_Datatype t) {
    MPI_Request r;
    MPI_Ibcast(buf, cnt, t, root, comm, &r);
    mt_watchdog_wait(&r, 1, "bcast", comm, -1);
}

void mt_coll_bcast(MPI_Comm comm, int root, void *buf, size_t n) {
    for (size_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        bcast(comm, root, (char *)buf + off, cnt, MPI_BYTE);
    }
}

void mt_coll_bcast_text(MPI_Comm comm, int root, char **text) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    long long len = rank == root && *text ? (long long)strlen(*text) : 0;
    bcast(comm, root, &len, 1, MPI_LONG_LONG);
    if (rank != root) {
        *text = malloc((size_t)len + 1);
        if (!*text) abort();
        (*text)[len] = '\0';
    }
    for (long long off = 0; off < len; off += CHUNK) {
        int cnt = (int)(len - off < CHUNK ? len - off : CHUNK);
        bcast(comm, root, *text + off, cnt, MPI_CHAR);
    }
}

void mt_coll_gather(MPI_Comm comm, int root, const void *mine, size_t n, void *all) {
    /* the callers gather a few hundred bytes per rank */
    MPI_Request r;
    MPI_Igather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, root, comm, &r);
    mt_watchdog_wait(&r, 1, "gather", comm, -1);
}

void mt_coll_send_floats(MPI_Comm comm, int to, const float *buf, size_t n) {
    for (size_t i = 0; i < n; i += CHUNK) {
        int cnt = (int)(n - i < CHUNK ? n - i : CHUNK);
        MPI_Request r;
        MPI_Isend(buf + i, cnt, MPI_FLOAT, to, 0, comm, &r);
        mt_watchdog_wait(&r, 1, "send", comm, to);
    }
}

void mt_coll_recv_floats(MPI_Comm comm, int from, float *buf, size_t n) {
    for (size_t i = 0; i < n; i += CHUNK) {
        int cnt = (int)(n - i < CHUNK ? n - i : CHUNK);
        MPI_Request r;
        MPI_Irecv(buf + i, cnt, MPI_FLOAT, from, 0, comm, &r);
        mt_watchdog_wait(&r, 1, "recv", comm, from);
    }
}

double mt_wtime(void) {
    return MPI_Wtime();
}

void mt_coll_mpi_version(char *buf, size_t n) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING]; /* MPI allows this before MPI_Init */
    int len = 0;
    MPI_Get_library_version(v, &len);
    v[len < (int)sizeof v ? len : (int)sizeof v - 1] = '\0';
    v[strcspn(v, "\r\n,")] = '\0';
    snprintf(buf, n, "%s", v);
}
