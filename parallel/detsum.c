/* detsum.c - a sum over ranks in a fixed pairwise tree (see detsum.h). */
#include "detsum.h"

#include <stdlib.h>
#include <string.h>

#include "parallel/watchdog.h"

#define CHUNK (1 << 28) /* floats per message, well under INT_MAX */
#define TAG   17

int mt_detsum_init(mt_detsum *d, MPI_Comm comm, const mt_backend *be, size_t n, mt_err *e) {
    memset(d, 0, sizeof *d);
    d->comm = comm;
    d->size = 1;
    d->be = be;
    d->n = n;
    if (comm == MPI_COMM_NULL) return MT_OK;
    MPI_Comm_rank(comm, &d->rank);
    MPI_Comm_size(comm, &d->size);
    if (d->size == 1) return MT_OK;
    if (d->size & (d->size - 1))
        return mt_err_set(e, MT_ERR_INTERNAL, "deterministic sum over %d ranks", d->size);
    d->recv = malloc((n / 2 + 1) * sizeof *d->recv);
    if (be && !be->host_memory) d->host = malloc((n ? n : 1) * sizeof *d->host);
    if (!d->recv || (be && !be->host_memory && !d->host))
        return mt_err_set(e, MT_ERR_INTERNAL,
                          "out of memory for the deterministic sum's host buffers (%zu floats)", n);
    return MT_OK;
}

/* Sends sn floats of s to and receives rn floats into r from the partner,
 * in pieces, both at once (the partner mirrors it). */
static void swap(const mt_detsum *d, int partner, const float *s, size_t sn, float *r, size_t rn) {
    for (size_t i = 0; i < sn || i < rn; i += CHUNK) {
        MPI_Request q[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
        if (i < sn)
            MPI_Isend(s + i, (int)(sn - i < CHUNK ? sn - i : CHUNK), MPI_FLOAT, partner, TAG,
                      d->comm, &q[0]);
        if (i < rn)
            MPI_Irecv(r + i, (int)(rn - i < CHUNK ? rn - i : CHUNK), MPI_FLOAT, partner, TAG,
                      d->comm, &q[1]);
        mt_watchdog_wait(q, 2, "deterministic sum", d->comm, partner);
    }
}

/* The exchanges at distance 1, 2, 4, ...: the part [lo, hi) kept at each
 * one is the lower half for a rank whose bit d is 0. */
static void halve(const mt_detsum *d, float *x, size_t *lo, size_t *hi) {
    size_t a = 0, b = d->n;
    int k = 0;
    for (int dist = 1; dist < d->size; dist <<= 1, k++) {
        size_t mid = a + (b - a) / 2;
        int upper = (d->rank & dist) != 0;
        size_t ka = upper ? mid : a, kb = upper ? b : mid; /* kept */
        size_t sa = upper ? a : mid, sb = upper ? mid : b; /* sent */
        swap(d, d->rank ^ dist, x + sa, sb - sa, d->recv, kb - ka);
        for (size_t i = ka; i < kb; i++) x[i] += d->recv[i - ka];
        lo[k] = a, hi[k] = b; /* the part before this halving */
        a = ka, b = kb;
    }
}

/* The exchanges back at distance ..., 4, 2, 1: each rank's part to its
 * partner, who has the other half of the part both had before halving. */
static void double_back(const mt_detsum *d, float *x, const size_t *lo, const size_t *hi) {
    int k = 0;
    while ((1 << k) < d->size) k++;
    for (k--; k >= 0; k--) {
        int dist = 1 << k;
        size_t a = lo[k], b = hi[k], mid = a + (b - a) / 2;
        int upper = (d->rank & dist) != 0;
        size_t ka = upper ? mid : a, kb = upper ? b : mid; /* mine, final */
        size_t ra = upper ? a : mid, rb = upper ? mid : b; /* the partner's */
        swap(d, d->rank ^ dist, x + ka, kb - ka, x + ra, rb - ra);
    }
}

void mt_detsum_run(const mt_detsum *d, float *buf) {
    if (d->size == 1) return;
    size_t lo[32], hi[32];
    float *x = d->host ? d->host : buf;
    if (d->host) d->be->to_host(d->host, buf, d->n);
    halve(d, x, lo, hi);
    double_back(d, x, lo, hi);
    if (d->host) d->be->to_device(buf, d->host, d->n);
}

void mt_detsum_doubles(MPI_Comm comm, double *x, int n) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    double other[8];
    for (int at = 0; at < n; at += 8) {
        int cnt = n - at < 8 ? n - at : 8;
        for (int dist = 1; dist < size; dist <<= 1) {
            MPI_Request q[2];
            MPI_Isend(x + at, cnt, MPI_DOUBLE, rank ^ dist, TAG, comm, &q[0]);
            MPI_Irecv(other, cnt, MPI_DOUBLE, rank ^ dist, TAG, comm, &q[1]);
            mt_watchdog_wait(q, 2, "deterministic sum", comm, rank ^ dist);
            for (int i = 0; i < cnt; i++) x[at + i] += other[i];
        }
    }
}

double mt_detsum_bytes(const mt_detsum *d) {
    return 4.0 * ((d->recv ? (double)(d->n / 2 + 1) : 0) + (d->host ? (double)d->n : 0));
}

void mt_detsum_free(mt_detsum *d) {
    free(d->recv);
    free(d->host);
    memset(d, 0, sizeof *d);
}
