/* gradsync.c - the reductions of the parameter gradients (see gradsync.h). */
#include "gradsync.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sumsq_exact.h"
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

/* The tied span a piece of a tied tensor lies in, and the span's first
 * element in tied_host; -1 when it is not tied. */
static int tied_of(const mt_gradsync *g, const mt_zero_piece *p, size_t *at) {
    size_t base = 0;
    for (int i = 0; i < g->ntied; i++) {
        const mt_grad_span *s = &g->tied[i];
        if (p->off >= s->offset && p->off + p->n <= s->offset + s->numel) {
            *at = base + (p->off - s->offset);
            return i;
        }
        base += s->numel;
    }
    return -1;
}

/* ZeRO-1's reduction. Deterministic with tied tensors: the tied copies are
 * added after each one's sum over the replicas (see mt_gradsync_reduce),
 * but a shard holds only its own rows of the two copies (the stages lay
 * out their buffers differently), so the tied tensors' whole gradient is
 * summed apart, on the host, and replaces the shard's rows of them. */
static void reduce_zero(mt_gradsync *g) {
    const mt_backend *be = g->be;
    if (!g->deterministic) {
        tied_sums(g);
        mt_zero_scatter(&g->z, g->grad);
        mt_zero_scatter_done(&g->z, g->grad);
        return;
    }
    size_t at = 0;
    for (int i = 0; i < g->ntied; i++) {
        be->to_host(g->tied_host + at, g->grad + g->tied[i].offset, g->tied[i].numel);
        at += g->tied[i].numel;
    }
    if (g->ntied) {
        mt_detsum_run(&g->tied_det, g->tied_host);
        mt_coll_sum_floats(g->c->emb, g->tied_host, g->tied_numel);
    }
    float *x = mt_zero_scatter(&g->z, g->grad);
    const mt_zero_piece *mine = mt_zero_mine(&g->z);
    for (int j = 0; g->ntied && j < g->z.np; j++)
        if (mine[j].n && tied_of(g, &mine[j], &at) >= 0)
            memcpy(x + mine[j].off, g->tied_host + at, mine[j].n * sizeof *x);
    g->shard_host = x;
    mt_zero_scatter_done(&g->z, g->grad);
}

/* A timed step's reduction took [t0, now). */
static void timed(mt_gradsync *g, double t0) {
    double now = mt_wtime();
    if (!g->timed) return;
    g->reduce_s += now - t0, g->timed_steps++;
    if (!g->span_at) g->span_at = malloc(2 * MT_GRADSYNC_STEPS * sizeof *g->span_at);
    if (g->span_at && g->nspans < MT_GRADSYNC_STEPS)
        g->span_at[2 * g->nspans] = t0, g->span_at[2 * g->nspans + 1] = now, g->nspans++;
}

int mt_gradsync_spans(const mt_gradsync *g, const double **at) {
    *at = g->span_at;
    return g->span_at ? g->nspans : 0;
}

void mt_gradsync_reduce(mt_gradsync *g) {
    double t0 = mt_wtime();
    if (g->zero) {
        reduce_zero(g);
        timed(g, t0);
        return;
    }
    if (g->bk) {
        /* the buckets not started during the backward start after the tied
         * sums: those holding a tied tensor must (the sum of both copies,
         * then over the replicas, as on the flat path), and the rest follow
         * them in the fixed order. The tied tensors (the GPT's wte) sit at
         * the buffer's start, whose bucket is the backward's last anyway. */
        mt_buckets_backward_end(g->bk);
        tied_sums(g);
        mt_buckets_finish(g->bk);
        timed(g, t0);
        return;
    }
    /* deterministic: the replicas first, so each tied copy is its stage's
     * whole tree before the two copies are added (tied first would add the
     * copies per replica: a tree whose shape depends on dp) */
    if (g->deterministic) mt_detsum_run(&g->det, g->grad);
    tied_sums(g);
    /* the exact norm reads det.host (device memory): it must hold the tied sums too */
    for (int i = 0; g->det.host && i < g->ntied; i++)
        g->be->to_host(g->det.host + g->tied[i].offset, g->grad + g->tied[i].offset,
                       g->tied[i].numel);
    if (!g->deterministic) mt_xcomm_sum(&g->c->xdp, g->grad, g->numel);
    timed(g, t0);
}

int mt_gradsync_buckets(mt_gradsync *g, const size_t *starts, int n, double bucket_mb, int overlap,
                        mt_err *e) {
    g->bk =
        mt_buckets_new(&g->c->xdp, g->grad, g->numel, starts, n, bucket_mb, overlap, g->c->rank, e);
    if (!g->bk) return e->code;
    for (int i = 0; i < g->ntied; i++) mt_buckets_hold(g->bk, g->tied[i].offset, g->tied[i].numel);
    return MT_OK;
}

void mt_gradsync_begin(mt_gradsync *g, int64_t step, int timed, int may_overlap) {
    g->timed = timed;
    if (g->bk) mt_buckets_begin(g->bk, step, timed, may_overlap);
}

void mt_gradsync_means(const mt_gradsync *g, double *reduce_ms, double *gather_ms) {
    double n = g->timed_steps > 0 ? (double)g->timed_steps : 1.0;
    *reduce_ms = 1e3 * g->reduce_s / n;
    *gather_ms = 1e3 * g->gather_s / n;
}

void mt_gradsync_ready(void *ctx, size_t offset) {
    const mt_gradsync *g = ctx;
    if (g->bk) mt_buckets_ready(g->bk, offset);
}

int mt_gradsync_deterministic(mt_gradsync *g, mt_err *e) {
    g->deterministic = 1;
    return mt_detsum_init(&g->det, g->c->dp, g->be, g->numel, e);
}

int mt_gradsync_zero(mt_gradsync *g, const mt_zero_piece *pieces, int np, mt_err *e) {
    g->zero = 1;
    mt_detsum_free(&g->det); /* deterministic: zero.c's halving takes its place */
    if (mt_zero_init(&g->z, g->c->dp, g->be, g->numel, pieces, np, g->deterministic, e))
        return e->code;
    /* a piece counts in the norm when its tensor does (norm spans are whole tensors) */
    size_t all = (size_t)g->z.size * (size_t)np;
    for (size_t j = 0; j < all; j++) {
        mt_zero_piece *p = &g->z.pieces[j];
        for (int i = 0; i < g->nnorm && !p->norm; i++)
            p->norm = p->off >= g->norm[i].offset &&
                      p->off + p->n <= g->norm[i].offset + g->norm[i].numel;
    }
    if (!g->deterministic || !g->ntied) return MT_OK;
    for (int i = 0; i < g->ntied; i++) g->tied_numel += g->tied[i].numel;
    g->tied_host = malloc(g->tied_numel * sizeof *g->tied_host);
    if (!g->tied_host)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the tied tensors' gradient");
    return mt_detsum_init(&g->tied_det, g->c->dp, NULL, g->tied_numel, e);
}

void mt_gradsync_gather(mt_gradsync *g, float *data) {
    if (!g->zero) return;
    double t0 = mt_wtime();
    mt_zero_gather(&g->z, data);
    if (g->timed) g->gather_s += mt_wtime() - t0;
}

/* Adds the squares of x[off, off + n) to s; x in device memory (the
 * gradient itself, when no host copy holds it: dp 1) is read through a
 * bounded host buffer. */
static void sumsq_span(mt_sumsq *s, const mt_gradsync *g, const float *x, size_t off, size_t n) {
    if (x != g->grad || !g->be || g->be->host_memory) {
        mt_sumsq_add(s, x + off, n);
        return;
    }
    enum { STAGE = 1 << 16 };
    static float stage[STAGE];
    for (size_t i = 0; i < n; i += STAGE) {
        size_t m = n - i < STAGE ? n - i : STAGE;
        g->be->to_host(stage, x + off + i, m);
        mt_sumsq_add(s, stage, m);
    }
}

/* deterministic: the exact sum of squares of the spans this rank counts, of
 * the reduced gradient x (a host copy, or the gradient), over group. */
static double exact_norm(const mt_gradsync *g, const float *x, MPI_Comm group) {
    mt_sumsq s;
    mt_sumsq_zero(&s);
    if (g->zero) {
        const mt_zero_piece *mine = mt_zero_mine(&g->z);
        for (int j = 0; j < g->z.np; j++)
            if (mine[j].norm) sumsq_span(&s, g, x, mine[j].off, mine[j].n);
    } else {
        for (int i = 0; i < g->nnorm; i++)
            sumsq_span(&s, g, x, g->norm[i].offset, g->norm[i].numel);
    }
    mt_sumsq_normalise(&s);
    int size = 1;
    if (group != MPI_COMM_NULL) MPI_Comm_size(group, &size);
    if (size > 1) mt_coll_sum_u64(group, (uint64_t *)&s, MT_SUMSQ_WORDS);
    return sqrt(mt_sumsq_value(&s));
}

/* The spans the norm counts: this rank's ZeRO pieces that count, or the
 * tensors that count (into off, n: room for g->z.np or g->nnorm). */
static int norm_spans(const mt_gradsync *g, size_t *off, size_t *n) {
    int k = 0;
    if (g->zero) {
        const mt_zero_piece *mine = mt_zero_mine(&g->z);
        for (int j = 0; j < g->z.np; j++)
            if (mine[j].norm) off[k] = mine[j].off, n[k++] = mine[j].n;
    } else {
        for (int i = 0; i < g->nnorm; i++) off[k] = g->norm[i].offset, n[k++] = g->norm[i].numel;
    }
    return k;
}

/* One rank holds the whole replica (no ZeRO): the norm is the whole
 * buffer's, summed as one span, with no reduction over ranks. */
static int whole_buffer(const mt_gradsync *g) {
    int size = 1;
    if (g->c->mp != MPI_COMM_NULL) MPI_Comm_size(g->c->mp, &size);
    return !g->zero && size == 1;
}

/* g->span_off, g->span_n: the spans the norm sums (the whole buffer, or
 * norm_spans'), made once, at the run's set-up (mt_gradsync_norm_parts),
 * and kept (the layout is fixed); -1 without memory for them. */
static int make_spans(mt_gradsync *g) {
    if (g->span_off) return 0;
    int room = whole_buffer(g) ? 1 : g->zero ? g->z.np : g->nnorm;
    if (room < 1) room = 1;
    g->span_off = malloc((size_t)room * 2 * sizeof *g->span_off);
    if (!g->span_off) return -1;
    g->span_n = g->span_off + room;
    if (whole_buffer(g))
        g->span_off[0] = 0, g->span_n[0] = g->numel, g->nspan = 1;
    else
        g->nspan = norm_spans(g, g->span_off, g->span_n);
    return 0;
}

int mt_gradsync_norm_parts(mt_gradsync *g) {
    if (g->deterministic) return 0;
    if (make_spans(g)) return -1;
    return g->be->sumsq_multi ? g->nspan : 0;
}

void mt_gradsync_norm_queue(mt_gradsync *g, double *dev) {
    int np = mt_gradsync_norm_parts(g);
    if (np > 0) g->be->sumsq_multi(dev, g->grad, np, g->span_off, g->span_n);
}

double mt_gradsync_norm_end(mt_gradsync *g, const double *parts) {
    if (g->deterministic)
        return exact_norm(g,
                          g->zero       ? g->shard_host
                          : g->det.host ? g->det.host
                                        : g->grad,
                          g->zero ? g->c->world : g->c->mp);
    int np = mt_gradsync_norm_parts(g); /* (the spans were made at the set-up) */
    /* the spans' sums added in span order (each bitwise its sumsq) */
    double ss = 0.0;
    for (int i = 0; i < g->nspan; i++)
        ss += np ? parts[i] : g->be->sumsq(g->grad + g->span_off[i], g->span_n[i]);
    if (!whole_buffer(g)) mt_coll_sum_doubles(g->zero ? g->c->world : g->c->mp, &ss, 1);
    return sqrt(ss);
}

double mt_gradsync_bytes(const mt_gradsync *g) {
    return mt_detsum_bytes(&g->det) + mt_zero_bytes(&g->z) + mt_detsum_bytes(&g->tied_det) +
           4.0 * (double)(g->tied_host ? g->tied_numel : 0);
}

void mt_gradsync_free(mt_gradsync *g) {
    free(g->tied);
    free(g->norm);
    free(g->span_off);
    mt_detsum_free(&g->det);
    mt_zero_free(&g->z);
    mt_detsum_free(&g->tied_det);
    free(g->tied_host);
    free(g->span_at);
    mt_buckets_free(g->bk);
    memset(g, 0, sizeof *g);
}
