/* buckets.c - the bucketed, overlapped data-parallel gradient sum (see buckets.h).
 *
 * Progress. Open MPI 4.1 here runs no progress thread: a non-blocking sum
 * (libnbc's schedule, or the network's rendezvous) moves only while this
 * rank is inside an MPI call. So the hook tests the outstanding sums after
 * every layer, and every blocking wait of the backward (the tensor-parallel
 * sums, the pipeline's sends and receives) moves them too. A progress
 * thread of our own (MPI is initialised MPI_THREAD_MULTIPLE, for the
 * asynchronous checkpoint writer) would take a core from the backward's
 * BLAS and OpenMP threads on a machine whose cores they already fill, and
 * would contend with the training thread for MPI's locks on every call; a
 * layer is a few milliseconds, frequent enough. The waits after the backward go through
 * mt_watchdog_wait, so parallel.timeout still names a stalled rank. */
#include "parallel/buckets.h"

#include <stdlib.h>
#include <string.h>

#include "base/fault.h"
#include "parallel/collectives.h"
#include "parallel/watchdog.h"

#define TRACE_STEPS 3 /* steps traced: the first three timed ones */

/* Cuts [0, numel) into buckets from the end down: each closes at the first
 * tensor start at least cap below its top, or, inside a tensor over twice
 * cap, cap below it. Counts them; fills b when not NULL. */
static int cut(mt_bucket *b, size_t numel, const size_t *starts, int n, size_t cap) {
    int nb = 0, t = n - 1;
    for (size_t hi = numel; hi > 0;) {
        size_t lo = 0;
        for (; t >= 0; t--)
            if (starts[t] < hi && hi - starts[t] >= cap) {
                lo = starts[t];
                break;
            }
        if (hi - lo > 2 * cap) lo = hi - cap;
        if (b) b[nb] = (mt_bucket){lo, hi - lo, 0, -1.0, -1.0};
        nb++;
        hi = lo;
    }
    if (b) /* cut from the top: bucket 0 at the start of the buffer */
        for (int i = 0; i < nb / 2; i++) {
            mt_bucket s = b[i];
            b[i] = b[nb - 1 - i], b[nb - 1 - i] = s;
        }
    return nb;
}

mt_buckets *mt_buckets_new(const mt_xcomm *x, float *grad, size_t numel, const size_t *starts,
                           int n, double bucket_mb, int overlap, int rank, mt_err *e) {
    mt_buckets *k = calloc(1, sizeof *k);
    if (!k) goto oom;
    k->x = x, k->grad = grad, k->numel = numel, k->mb = bucket_mb, k->overlap = overlap;
    k->rank = rank;
    const char *tr = getenv("MPITRAIN_GRADSYNC_TRACE");
    k->trace = tr && *tr ? tr : NULL;
    /* a megabyte is 2^20 bytes; int counts: at most 2^28 floats a bucket below twice that */
    double floats = bucket_mb * (1 << 20) / sizeof(float);
    size_t cap = floats < 1 ? 1 : floats > (double)(1 << 28) ? (size_t)1 << 28 : (size_t)floats;
    /* one flat sum where the group cannot start a sum and go on, or there is none */
    int one = !mt_xcomm_can_start(x) || x->size <= 1 || numel == 0;
    k->n = one ? 1 : cut(NULL, numel, starts, n, cap);
    k->b = calloc((size_t)k->n, sizeof *k->b);
    k->req = malloc((size_t)k->n * sizeof *k->req);
    k->done_idx = malloc((size_t)k->n * sizeof *k->done_idx);
    if (!k->b || !k->req || !k->done_idx) goto oom;
    if (k->n == 1)
        k->b[0] = (mt_bucket){0, numel, 0, -1.0, -1.0};
    else
        cut(k->b, numel, starts, n, cap);
    for (int i = 0; i < k->n; i++) k->req[i] = MPI_REQUEST_NULL;
    if (k->n > 1 && mt_xcomm_can_start(x) == MT_XSTART_COPY &&
        !(k->send = malloc(numel * sizeof(float))))
        goto oom;
    return k;
oom:
    mt_buckets_free(k);
    mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the gradient's buckets");
    return NULL;
}

void mt_buckets_hold(mt_buckets *k, size_t offset, size_t n) {
    for (int i = 0; i < k->n; i++)
        if (k->b[i].lo < offset + n && offset < k->b[i].lo + k->b[i].n) k->b[i].held = 1;
}

static void event(mt_buckets *k, char kind, int bucket, size_t offset, double now) {
    if (!k->tracing) return;
    if (k->nev == k->cap_ev) {
        int nc = k->cap_ev ? 2 * k->cap_ev : 64;
        mt_bucket_event *nv = realloc(k->ev, (size_t)nc * sizeof *nv);
        if (!nv) { /* the trace is an aid: stop tracing rather than the run */
            k->tracing = 0;
            return;
        }
        k->ev = nv, k->cap_ev = nc;
    }
    k->ev[k->nev++] = (mt_bucket_event){kind, bucket, offset, now - k->t0};
}

void mt_buckets_begin(mt_buckets *k, int64_t step, int timed, int may_overlap) {
    k->step = step, k->timed = timed;
    k->live = k->overlap && may_overlap && k->n > 1;
    k->next = k->n - 1;
    k->t0 = k->t_bwd = mt_wtime();
    k->tracing = k->trace && timed && k->traced < TRACE_STEPS;
    k->nev = 0;
    for (int i = 0; i < k->n; i++) k->b[i].t_start = k->b[i].t_end = -1.0;
}

static void started(mt_buckets *k, int i) {
    double now = mt_wtime();
    k->b[i].t_start = now - k->t0;
    event(k, 's', i, k->b[i].lo, now);
}

static void start(mt_buckets *k, int i) {
    const mt_bucket *b = &k->b[i];
    started(k, i);
    mt_xcomm_sum_start(k->x, k->send ? k->send + b->lo : NULL, k->grad + b->lo, b->n, &k->req[i]);
}

static void done(mt_buckets *k, int i, double now) {
    k->b[i].t_end = now - k->t0;
    event(k, 'e', i, k->b[i].lo, now);
}

/* Tests the sums started: the call that moves them on. */
static void poll(mt_buckets *k) {
    int ndone = 0;
    MPI_Testsome(k->n, k->req, &ndone, k->done_idx, MPI_STATUSES_IGNORE);
    double now = mt_wtime();
    for (int j = 0; j < ndone && ndone != MPI_UNDEFINED; j++) done(k, k->done_idx[j], now);
}

void mt_buckets_ready(void *ctx, size_t offset) {
    mt_buckets *k = ctx;
    event(k, 'l', -1, offset, mt_wtime());
    mt_fault_at(MT_FAULT_BACKWARD, k->step); /* a test aid (base/fault.h) */
    if (!k->live) return;
    while (k->next >= 0 && !k->b[k->next].held && k->b[k->next].lo >= offset) start(k, k->next--);
    poll(k);
}

void mt_buckets_backward_end(mt_buckets *k) {
    k->t_bwd = mt_wtime();
    event(k, 'b', -1, 0, k->t_bwd);
}

/* The step's events, one JSON line each, appended to TRACE.<world rank>. */
static void write_trace(mt_buckets *k) {
    char path[4096];
    snprintf(path, sizeof path, "%s.%d", k->trace, k->rank);
    FILE *f = fopen(path, "a");
    if (!f) return; /* an aid: a run does not fail for it */
    static const char *name[] = {
        ['l'] = "layer", ['s'] = "bucket_start", ['e'] = "bucket_end", ['b'] = "backward_end"};
    for (int i = 0; i < k->nev; i++) {
        const mt_bucket_event *v = &k->ev[i];
        fprintf(f, "{\"rank\":%d,\"step\":%lld,\"event\":\"%s\",\"t\":%.6f", k->rank,
                (long long)k->step, name[(int)v->kind], v->t);
        if (v->kind == 'l') fprintf(f, ",\"offset\":%zu", v->offset);
        if (v->kind == 's')
            fprintf(f, ",\"bucket\":%d,\"offset\":%zu,\"numel\":%zu", v->bucket, v->offset,
                    k->b[v->bucket].n);
        if (v->kind == 'e') fprintf(f, ",\"bucket\":%d", v->bucket);
        fprintf(f, "}\n");
    }
    fclose(f);
}

void mt_buckets_finish(mt_buckets *k) {
    if (k->n == 1) { /* the flat sum */
        started(k, 0);
        mt_fault_at(MT_FAULT_GRADSYNC, k->step); /* a test aid: the peers wait in the sum */
        mt_xcomm_sum(k->x, k->grad, k->numel);
        done(k, 0, mt_wtime());
    } else {
        while (k->next >= 0) start(k, k->next--);
        /* in the order started: an end time is when this rank saw it */
        for (int i = k->n - 1; i >= 0; i--) {
            if (k->req[i] == MPI_REQUEST_NULL) continue;
            mt_watchdog_wait(&k->req[i], 1, "allreduce", k->x->mpi, -1);
            done(k, i, mt_wtime());
            if (i == k->n - 1) mt_fault_at(MT_FAULT_GRADSYNC, k->step); /* the rest in flight */
        }
        mt_xcomm_sum_join(k->x); /* NCCL: the kernels wait for the sums' stream */
        double now = mt_wtime();
        for (int i = 0; i < k->n; i++)
            if (k->b[i].t_end < 0) done(k, i, now);
    }
    double end = mt_wtime(), first = k->t_bwd;
    for (int i = 0; i < k->n; i++)
        if (k->t0 + k->b[i].t_start < first) first = k->t0 + k->b[i].t_start;
    for (int j = 0; j < 2; j++)
        if (j == 0 || k->timed) {
            k->tail_s[j] += end - k->t_bwd;
            k->sync_s[j] += end - first;
            k->steps[j]++;
        }
    if (k->tracing) {
        write_trace(k);
        k->traced++;
    }
}

void mt_buckets_means(const mt_buckets *k, double *tail_ms, double *sync_ms) {
    int j = k->steps[1] > 0 ? 1 : 0;
    double n = k->steps[j] > 0 ? (double)k->steps[j] : 1.0;
    *tail_ms = 1e3 * k->tail_s[j] / n;
    *sync_ms = 1e3 * k->sync_s[j] / n;
}

void mt_buckets_free(mt_buckets *k) {
    if (!k) return;
    free(k->send);
    free(k->b);
    free(k->req);
    free(k->done_idx);
    free(k->ev);
    free(k);
}
