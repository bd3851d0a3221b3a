/* xcomm.c - sums over a group for buffers in the backend's memory (see xcomm.h). */
#include "parallel/xcomm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/collectives.h"
#include "parallel/watchdog.h"
#ifdef MT_HAVE_NCCL
#include "parallel/nccl.h"
#include "kernels/backends.h"
#endif

/* host copies of device buffers go through in pieces of this many floats */
#define STAGE_MAX ((size_t)1 << 24)

struct mt_xstage {
    float *buf;
    size_t cap;
};

void mt_xcomm_host(mt_xcomm *x, MPI_Comm comm) {
    memset(x, 0, sizeof *x);
    x->mpi = comm;
    x->size = 1;
    if (comm != MPI_COMM_NULL) MPI_Comm_size(comm, &x->size);
    snprintf(x->how, sizeof x->how, "mpi");
}

#ifdef MT_HAVE_NCCL
/* Whether two ranks of the group use the same GPU (NCCL refuses that). */
static int shares_gpu(const mt_xcomm *x, int node) {
    char mine[128] = "", bus[96] = "";
    mt_backend_device_uid(bus, sizeof bus);
    snprintf(mine, sizeof mine, "%d/%s", node, bus);
    char *all = malloc((size_t)x->size * sizeof mine);
    if (!all) { /* a few KB: the others would wait in the Allgather for ever */
        fprintf(stderr, "mpitrain: error: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, MT_ERR_INTERNAL);
    }
    MPI_Allgather(mine, sizeof mine, MPI_CHAR, all, sizeof mine, MPI_CHAR, x->mpi);
    int dup = 0;
    for (int i = 0; i < x->size && !dup; i++)
        for (int j = i + 1; j < x->size && !dup; j++)
            dup = strncmp(all + i * sizeof mine, all + j * sizeof mine, sizeof mine) == 0;
    free(all);
    return dup;
}
#endif

int mt_xcomm_device(mt_xcomm *x, const mt_backend *be, int use_nccl, int node, mt_err *e) {
    x->be = be;
    if (be->host_memory || x->mpi == MPI_COMM_NULL || x->size <= 1) return MT_OK;
    char why[128] = "";
#ifdef MT_HAVE_NCCL
    if (use_nccl) {
        if (shares_gpu(x, node))
            snprintf(why, sizeof why, "ranks of the group share a GPU");
        else if (mt_nccl_create(&x->nccl, x->mpi, why, sizeof why) == 0) {
            snprintf(x->how, sizeof x->how, "nccl");
            return MT_OK;
        }
    } else {
        snprintf(why, sizeof why, "NCCL not asked for");
    }
#else
    (void)use_nccl, (void)node;
    snprintf(why, sizeof why, "built without NCCL");
#endif
    snprintf(x->how, sizeof x->how, "mpi via host (%s)", why);
    x->stage = calloc(1, sizeof *x->stage);
    if (!x->stage) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    return MT_OK;
}

/* The host staging buffer, grown to at least n floats. Out of host memory
 * mid-collective: the peers would wait for ever, so the job ends. */
static float *stage_get(mt_xstage *s, size_t n) {
    if (s->cap < n) {
        free(s->buf);
        s->buf = malloc((n ? n : 1) * sizeof(float));
        s->cap = s->buf ? n : 0;
        if (!s->buf) {
            fprintf(stderr, "mpitrain: error: out of host memory for a %zu-float transfer\n", n);
            MPI_Abort(MPI_COMM_WORLD, MT_ERR_INTERNAL);
        }
    }
    return s->buf;
}

void mt_xcomm_sum(const mt_xcomm *x, float *buf, size_t n) {
    if (x->mpi == MPI_COMM_NULL || x->size <= 1 || n == 0) return;
    if (!x->be || x->be->host_memory) {
        mt_coll_sum_floats(x->mpi, buf, n);
        return;
    }
#ifdef MT_HAVE_NCCL
    if (x->nccl) {
        mt_nccl_sum(x->nccl, buf, n);
        return;
    }
#endif
    float *h = stage_get(x->stage, n < STAGE_MAX ? n : STAGE_MAX);
    for (size_t i = 0; i < n; i += STAGE_MAX) {
        size_t k = n - i < STAGE_MAX ? n - i : STAGE_MAX;
        x->be->to_host(h, buf + i, k);
        mt_coll_sum_floats(x->mpi, h, k);
        x->be->to_device(buf + i, h, k);
    }
}

int mt_xcomm_can_start(const mt_xcomm *x) {
    if (x->mpi == MPI_COMM_NULL || x->size <= 1) return MT_XSTART_NONE;
    if (!x->be || x->be->host_memory) return MT_XSTART_COPY;
    return x->nccl ? MT_XSTART_NCCL : MT_XSTART_NONE;
}

void mt_xcomm_sum_start(const mt_xcomm *x, float *send, float *buf, size_t n, MPI_Request *r) {
    *r = MPI_REQUEST_NULL;
#ifdef MT_HAVE_NCCL
    if (x->nccl) {
        mt_nccl_sum_start(x->nccl, buf, n);
        return;
    }
#endif
    memcpy(send, buf, n * sizeof *buf);
    MPI_Iallreduce(send, buf, (int)n, MPI_FLOAT, MPI_SUM, x->mpi, r);
}

void mt_xcomm_sum_join(const mt_xcomm *x) {
#ifdef MT_HAVE_NCCL
    if (x->nccl) mt_nccl_sum_join(x->nccl);
#else
    (void)x;
#endif
}

/* pieces of at most this many floats per MPI message (int counts) */
#define P2P_CHUNK ((size_t)1 << 28)
#define P2P_TAG   103

/* The host-memory exchange: piece k of each direction in round k (a side
 * with n = 0 still sends one empty message, so it pairs), every round waited
 * whole. Issend: complete only when matched, as NCCL. */
static void host_exchange(MPI_Comm comm, const float *sbuf, size_t sn, int to, float *rbuf,
                          size_t rn, int from) {
    size_t ns = to >= 0 ? (sn + P2P_CHUNK - 1) / P2P_CHUNK : 0, nr = 0;
    if (to >= 0 && ns == 0) ns = 1;
    if (from >= 0) nr = rn ? (rn + P2P_CHUNK - 1) / P2P_CHUNK : 1;
    for (size_t k = 0; k < ns || k < nr; k++) {
        MPI_Request r[2];
        int nreq = 0;
        size_t off = k * P2P_CHUNK;
        if (k < nr) {
            int cnt = (int)(rn - off < P2P_CHUNK ? rn - off : P2P_CHUNK);
            MPI_Irecv(rbuf + off, rn ? cnt : 0, MPI_FLOAT, from, P2P_TAG, comm, &r[nreq++]);
        }
        if (k < ns) {
            int cnt = (int)(sn - off < P2P_CHUNK ? sn - off : P2P_CHUNK);
            MPI_Issend(sbuf + off, sn ? cnt : 0, MPI_FLOAT, to, P2P_TAG, comm, &r[nreq++]);
        }
        const char *op = k < nr && k < ns ? "send/recv" : k < nr ? "recv" : "send";
        mt_watchdog_wait(r, nreq, op, comm, k < nr ? from : to);
    }
}

void mt_xcomm_exchange(const mt_xcomm *x, const float *sbuf, size_t sn, int to, float *rbuf,
                       size_t rn, int from) {
    if (to < 0 && from < 0) return;
    if (!x->be || x->be->host_memory) {
        host_exchange(x->mpi, sbuf, sn, to, rbuf, rn, from);
        return;
    }
#ifdef MT_HAVE_NCCL
    if (x->nccl) {
        mt_nccl_exchange(x->nccl, sbuf, to >= 0 ? sn : 0, to, rbuf, from >= 0 ? rn : 0, from);
        return;
    }
#endif
    /* device memory through host copies: [send part | receive part] */
    size_t hs = to >= 0 ? sn : 0, hr = from >= 0 ? rn : 0;
    float *h = stage_get(x->stage, hs + hr);
    if (hs) x->be->to_host(h, sbuf, hs);
    host_exchange(x->mpi, h, hs, to, h + hs, hr, from);
    if (hr) x->be->to_device(rbuf, h + hs, hr);
}

void mt_xcomm_free(mt_xcomm *x) {
#ifdef MT_HAVE_NCCL
    if (x->nccl) mt_nccl_destroy(x->nccl);
#endif
    if (x->stage) free(x->stage->buf);
    free(x->stage);
    x->nccl = NULL;
    x->stage = NULL;
}

void mt_xcomm_watch_each(int on) {
#ifdef MT_HAVE_NCCL
    mt_nccl_watch_each(on);
#else
    (void)on;
#endif
}

void mt_xcomm_nccl_version(char *buf, size_t n) {
#ifdef MT_HAVE_NCCL
    mt_nccl_version(buf, n);
#else
    if (n) buf[0] = '\0';
#endif
}
