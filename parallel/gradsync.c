/* gradsync.c - the reductions of the parameter gradients (see gradsync.h). */
#include "gradsync.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/collectives.h"

void mt_gradsync_init(mt_gradsync *g, const mt_comm *c, const mt_backend *be, float *grad,
                      size_t numel) {
    memset(g, 0, sizeof *g);
    g->c = c;
    g->be = be;
    g->grad = grad;
    g->numel = numel;
}

static int add_span(mt_grad_span **v, int *n, int *cap, size_t offset, size_t numel, mt_err *e) {
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        mt_grad_span *nv = realloc(*v, (size_t)nc * sizeof *nv);
        if (!nv) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the gradient spans");
        *v = nv, *cap = nc;
    }
    (*v)[(*n)++] = (mt_grad_span){offset, numel};
    return MT_OK;
}

int mt_gradsync_add_tied(mt_gradsync *g, size_t offset, size_t numel, mt_err *e) {
    if (g->c->emb == MPI_COMM_NULL) return MT_OK;
    return add_span(&g->tied, &g->ntied, &g->cap_tied, offset, numel, e);
}

int mt_gradsync_add_norm(mt_gradsync *g, size_t offset, size_t numel, mt_err *e) {
    return add_span(&g->norm, &g->nnorm, &g->cap_norm, offset, numel, e);
}

static void tied_sums(const mt_gradsync *g) {
    for (int i = 0; i < g->ntied; i++)
        mt_xcomm_sum(&g->c->xemb, g->grad + g->tied[i].offset, g->tied[i].numel);
}

void mt_gradsync_reduce(const mt_gradsync *g) {
    if (g->bk) {
        /* the buckets not started during the backward start after the tied
         * sums: those holding a tied tensor must (the sum of both copies,
         * then over the replicas, as on the flat path), and the rest follow
         * them in the fixed order. The tied tensors (the GPT's wte) sit at
         * the buffer's start, whose bucket is the backward's last anyway. */
        mt_buckets_backward_end(g->bk);
        tied_sums(g);
        mt_buckets_finish(g->bk);
        return;
    }
    /* deterministic: the replicas first, so each tied copy is its stage's
     * whole tree before the two copies are added (tied first would add the
     * copies per replica: a tree whose shape depends on dp) */
    if (g->deterministic) mt_detsum_run(&g->det, g->grad);
    tied_sums(g);
    if (!g->deterministic) mt_xcomm_sum(&g->c->xdp, g->grad, g->numel);
}

int mt_gradsync_buckets(mt_gradsync *g, const size_t *starts, int n, double bucket_mb, int overlap,
                        mt_err *e) {
    g->bk =
        mt_buckets_new(&g->c->xdp, g->grad, g->numel, starts, n, bucket_mb, overlap, g->c->rank, e);
    if (!g->bk) return e->code;
    for (int i = 0; i < g->ntied; i++) mt_buckets_hold(g->bk, g->tied[i].offset, g->tied[i].numel);
    return MT_OK;
}

void mt_gradsync_begin(const mt_gradsync *g, int64_t step, int timed, int may_overlap) {
    if (g->bk) mt_buckets_begin(g->bk, step, timed, may_overlap);
}

void mt_gradsync_ready(void *ctx, size_t offset) {
    const mt_gradsync *g = ctx;
    if (g->bk) mt_buckets_ready(g->bk, offset);
}

int mt_gradsync_deterministic(mt_gradsync *g, mt_err *e) {
    g->deterministic = 1;
    return mt_detsum_init(&g->det, g->c->dp, g->be, g->numel, e);
}

double mt_gradsync_norm(const mt_gradsync *g) {
    int size = 1;
    if (g->c->mp != MPI_COMM_NULL) MPI_Comm_size(g->c->mp, &size);
    double ss = 0.0;
    if (size == 1) { /* one rank holds the replica: the whole buffer in one sum */
        ss = g->be->sumsq(g->grad, g->numel);
    } else {
        for (int i = 0; i < g->nnorm; i++)
            ss += g->be->sumsq(g->grad + g->norm[i].offset, g->norm[i].numel);
        mt_coll_sum_doubles(g->c->mp, &ss, 1);
    }
    return sqrt(ss);
}

void mt_gradsync_free(mt_gradsync *g) {
    free(g->tied);
    free(g->norm);
    mt_detsum_free(&g->det);
    mt_buckets_free(g->bk);
    memset(g, 0, sizeof *g);
}
