/* zero.c - ZeRO-1's reduce-scatter and all-gather over shards made of
 * pieces (see zero.h). */
#include "zero.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/watchdog.h"

#define TAG 18

const mt_zero_piece *mt_zero_mine(const mt_zero *z) {
    return z->pieces + (size_t)z->rank * (size_t)z->np;
}

size_t mt_zero_shard_numel(const mt_zero *z) {
    return z->count[z->rank];
}

/* Rank k's pieces of a flat float buffer as one datatype (committed; byte
 * displacements, so the buffer may pass 2^31 floats). */
static int make_type(const mt_zero *z, int k, MPI_Datatype *t) {
    int *len = malloc((size_t)(z->np ? z->np : 1) * sizeof *len);
    MPI_Aint *disp = malloc((size_t)(z->np ? z->np : 1) * sizeof *disp);
    int m = 0;
    for (int j = 0; len && disp && j < z->np; j++) {
        const mt_zero_piece *p = &z->pieces[(size_t)k * z->np + j];
        if (p->n) len[m] = (int)p->n, disp[m] = (MPI_Aint)(p->off * sizeof(float)), m++;
    }
    int rc = !len || !disp || MPI_Type_create_hindexed(m, len, disp, MPI_FLOAT, t) != MPI_SUCCESS ||
             MPI_Type_commit(t) != MPI_SUCCESS;
    free(len);
    free(disp);
    return rc;
}

/* The position of rank k among the shards in the deterministic halving:
 * its bits reversed (the split at distance 1 is the top one). */
static int position(const mt_zero *z, int k) {
    int r = 0;
    for (int b = 1; b < z->size; b <<= 1) r = (r << 1) | ((k & b) != 0);
    return r;
}

/* Elements of the shards of the ranks whose positions are [a, b). */
static size_t shards_numel(const mt_zero *z, int a, int b) {
    size_t n = 0;
    for (int k = 0; k < z->size; k++)
        if (position(z, k) >= a && position(z, k) < b) n += z->count[k];
    return n;
}

/* The same shards, in position order, as one datatype (committed; the
 * caller frees it). */
static MPI_Datatype shards_type(const mt_zero *z, int a, int b) {
    int cnt = b - a, *ones = malloc((size_t)cnt * sizeof *ones);
    MPI_Aint *zero = calloc((size_t)cnt, sizeof *zero);
    MPI_Datatype *types = malloc((size_t)cnt * sizeof *types), t = MPI_DATATYPE_NULL;
    if (ones && zero && types) {
        for (int k = 0; k < z->size; k++) {
            int q = position(z, k);
            if (q >= a && q < b) ones[q - a] = 1, types[q - a] = z->type[k];
        }
        MPI_Type_create_struct(cnt, ones, zero, types, &t);
        MPI_Type_commit(&t);
    }
    free(ones);
    free(zero);
    free(types);
    return t;
}

/* The largest part a rank keeps in the halving: what it receives. */
static size_t halving_most(const mt_zero *z) {
    size_t most = 0;
    int a = 0, b = z->size;
    for (int d = 1; d < z->size; d <<= 1) {
        int mid = a + (b - a) / 2, upper = (z->rank & d) != 0;
        if (upper)
            a = mid;
        else
            b = mid;
        size_t n = shards_numel(z, a, b);
        if (n > most) most = n;
    }
    return most;
}

int mt_zero_init(mt_zero *z, MPI_Comm comm, const mt_backend *be, size_t numel,
                 const mt_zero_piece *pieces, int np, int deterministic, mt_err *e) {
    memset(z, 0, sizeof *z);
    z->comm = comm;
    z->size = 1;
    z->be = be;
    z->numel = numel;
    z->np = np;
    z->deterministic = deterministic;
    if (comm != MPI_COMM_NULL) {
        MPI_Comm_rank(comm, &z->rank);
        MPI_Comm_size(comm, &z->size);
    }
    size_t all = (size_t)z->size * (size_t)np;
    z->pieces = malloc((all ? all : 1) * sizeof *z->pieces);
    z->count = calloc((size_t)z->size, sizeof *z->count);
    z->type = calloc((size_t)z->size, sizeof *z->type);
    if (!z->pieces || !z->count || !z->type)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the ZeRO-1 shards");
    memcpy(z->pieces, pieces, all * sizeof *pieces);
    size_t most = 0;
    for (int k = 0; k < z->size; k++) {
        size_t pos = 0;
        for (int j = 0; j < np; j++) {
            mt_zero_piece *p = &z->pieces[(size_t)k * np + j];
            if (p->off + p->n > numel)
                return mt_err_set(e, MT_ERR_INTERNAL, "ZeRO-1 piece outside the flat buffer");
            if (p->n > INT_MAX)
                return mt_err_set(e, MT_ERR_USAGE,
                                  "parallel.zero = 1: one tensor's shard of %zu floats exceeds "
                                  "MPI's int counts",
                                  p->n);
            p->pos = pos;
            pos += p->n;
        }
        z->count[k] = pos;
        if (pos > most) most = pos;
    }
    /* device memory: the host copy even for one rank, so that what
     * mt_zero_scatter returns is always host memory (the exact norm and the
     * tied rows of gradsync read and write it there) */
    if (be && !be->host_memory && !(z->host = malloc((numel ? numel : 1) * sizeof *z->host)))
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the ZeRO-1 buffers");
    if (z->size == 1) return MT_OK;
    if (deterministic && (z->size & (z->size - 1)))
        return mt_err_set(e, MT_ERR_INTERNAL, "deterministic ZeRO-1 over %d ranks", z->size);
    /* the largest message: a shard (ring), about half the buffer (halving) */
    size_t recv = deterministic ? halving_most(z) : most;
    z->nrecv = recv;
    if (recv * sizeof(float) > INT_MAX)
        return mt_err_set(e, MT_ERR_USAGE,
                          "parallel.zero = 1: a message of %zu MB exceeds MPI's 2 GB per call",
                          recv * sizeof(float) >> 20);
    z->recv = malloc((recv ? recv : 1) * sizeof *z->recv);
    if (!z->recv) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the ZeRO-1 buffers");
    for (; z->ntypes < z->size; z->ntypes++)
        if (make_type(z, z->ntypes, &z->type[z->ntypes]))
            return mt_err_set(e, MT_ERR_INTERNAL, "cannot make the ZeRO-1 datatypes");
    return MT_OK;
}

/* Sends one datatype-described message and receives another, both at once. */
static void swap(const mt_zero *z, const char *op, const void *s, int sn, MPI_Datatype st, int to,
                 void *r, int rn, MPI_Datatype rt, int from) {
    MPI_Request q[2];
    MPI_Irecv(r, rn, rt, from, TAG, z->comm, &q[1]);
    MPI_Isend(s, sn, st, to, TAG, z->comm, &q[0]);
    mt_watchdog_wait(q, 2, op, z->comm, from);
}

/* x's pieces of rank k += the contiguous values at *at (advanced). */
static void add_pieces(const mt_zero *z, int k, float *x, const float **at) {
    for (int j = 0; j < z->np; j++) {
        const mt_zero_piece *p = &z->pieces[(size_t)k * z->np + j];
        float *d = x + p->off;
        const float *s = *at;
        for (size_t i = 0; i < p->n; i++) d[i] += s[i];
        *at += p->n;
    }
}

/* Ring reduce-scatter: at step s each rank sends its partial sum of shard
 * (r - s - 1) to r + 1 and adds r - 1's of shard (r - s - 2) into its own;
 * after p - 1 steps shard r is complete on rank r. */
static void ring_scatter(const mt_zero *z, float *x) {
    int p = z->size, r = z->rank, to = (r + 1) % p, from = (r + p - 1) % p;
    for (int s = 0; s < p - 1; s++) {
        int out = ((r - s - 1) % p + p) % p, in = ((r - s - 2) % p + p) % p;
        swap(z, "reduce-scatter", x, 1, z->type[out], to, z->recv, (int)z->count[in], MPI_FLOAT,
             from);
        const float *at = z->recv;
        add_pieces(z, in, x, &at);
    }
}

/* Deterministic reduce-scatter: recursive halving at distance 1, 2, 4, ...
 * over the shards in position order. At distance d a rank keeps the half
 * of its current positions that its bit d selects, sends the other half to
 * rank ^ d and adds what it receives of its own half: every element is then
 * summed over aligned blocks of 2d ranks, parallel/detsum.h's tree. */
static void halve(const mt_zero *z, float *x) {
    int a = 0, b = z->size;
    for (int d = 1; d < z->size; d <<= 1) {
        int mid = a + (b - a) / 2, upper = (z->rank & d) != 0;
        int ka = upper ? mid : a, kb = upper ? b : mid, sa = upper ? a : mid, sb = upper ? mid : b;
        MPI_Datatype st = shards_type(z, sa, sb);
        swap(z, "deterministic reduce-scatter", x, 1, st, z->rank ^ d, z->recv,
             (int)shards_numel(z, ka, kb), MPI_FLOAT, z->rank ^ d);
        const float *at = z->recv;
        for (int q = ka; q < kb; q++)
            for (int k = 0; k < z->size; k++)
                if (position(z, k) == q) add_pieces(z, k, x, &at);
        MPI_Type_free(&st);
        a = ka, b = kb;
    }
}

float *mt_zero_scatter(const mt_zero *z, float *grad) {
    if (z->size == 1) return z->host ? (z->be->to_host(z->host, grad, z->numel), z->host) : grad;
    float *x = z->host ? z->host : grad;
    if (z->host) z->be->to_host(z->host, grad, z->numel);
    if (z->deterministic)
        halve(z, x);
    else
        ring_scatter(z, x);
    return x;
}

void mt_zero_scatter_done(const mt_zero *z, float *grad) {
    if (!z->host) return;
    const mt_zero_piece *mine = mt_zero_mine(z);
    for (int j = 0; j < z->np; j++)
        if (mine[j].n) z->be->to_device(grad + mine[j].off, z->host + mine[j].off, mine[j].n);
}

/* Ring all-gather: at step s each rank sends shard (r - s) to r + 1 and
 * receives shard (r - s - 1) from r - 1 in place. */
void mt_zero_gather(const mt_zero *z, float *data) {
    if (z->size == 1) return;
    int p = z->size, r = z->rank, to = (r + 1) % p, from = (r + p - 1) % p;
    float *x = z->host ? z->host : data;
    const mt_zero_piece *mine = mt_zero_mine(z);
    for (int j = 0; z->host && j < z->np; j++)
        if (mine[j].n) z->be->to_host(z->host + mine[j].off, data + mine[j].off, mine[j].n);
    for (int s = 0; s < p - 1; s++) {
        int out = ((r - s) % p + p) % p, in = ((r - s - 1) % p + p) % p;
        swap(z, "all-gather", x, 1, z->type[out], to, x, 1, z->type[in], from);
    }
    if (z->host) z->be->to_device(data, z->host, z->numel);
}

double mt_zero_bytes(const mt_zero *z) {
    return 4.0 * ((double)z->nrecv + (z->host ? (double)z->numel : 0.0));
}

void mt_zero_free(mt_zero *z) {
    for (int k = 0; k < z->ntypes; k++) MPI_Type_free(&z->type[k]);
    free(z->type);
    free(z->pieces);
    free(z->count);
    free(z->recv);
    free(z->host);
    memset(z, 0, sizeof *z);
}
