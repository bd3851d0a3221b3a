/*
 * buckets.h - the data-parallel sum of the flat gradient in buckets,
 * overlapped with the backward (parallel.bucket_mb, parallel.overlap;
 * docs/PARALLEL.md, "Buckets and overlap").
 *
 * The parameters lie in registration (forward) order in the flat buffer
 * (core/params.h) and the backward visits the layers in reverse, so the
 * gradient becomes final from the end of the buffer towards its start. A
 * bucket is a contiguous range of about bucket_mb megabytes, cut at tensor
 * starts (a tensor over twice that is cut inside); bucket n - 1 covers the
 * buffer's end, bucket 0 its start, and they are started in that order, on
 * every rank of the group alike (MPI matches non-blocking collectives of
 * one communicator by the order they are started in).
 *
 * During the last micro-batch's backward the model reports, after each
 * layer, the lowest offset from which on the gradient is final
 * (mt_buckets_ready, the stage's hook); every bucket at or above it starts
 * its non-blocking sum, and the sums already started are tested, which is
 * what moves them on (Open MPI has no progress thread here). After the
 * backward, mt_buckets_finish starts the rest and waits for all through the
 * watchdog. Buckets held for the tied sums start only then.
 *
 * One bucket (the gradient fits bucket_mb, dp = 1, or device memory the
 * group sums through the host) is the flat sum, mt_xcomm_sum, as before.
 */
#ifndef MT_BUCKETS_H
#define MT_BUCKETS_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"
#include "parallel/xcomm.h"

typedef struct {
    size_t lo, n;          /* elements [lo, lo + n) of the flat gradient */
    int held;              /* holds a tied tensor: starts after the tied sums */
    double t_start, t_end; /* this step, seconds since it began (trace) */
} mt_bucket;

/* One timeline event of a traced step (MPITRAIN_GRADSYNC_TRACE). */
typedef struct {
    char kind;     /* 'l' layer done, 's' bucket started, 'e' bucket done, 'b' backward end */
    int bucket;    /* 's', 'e': the bucket */
    size_t offset; /* 'l': the lowest final offset; 's': the bucket's */
    double t;      /* seconds since the step began */
} mt_bucket_event;

typedef struct mt_buckets {
    const mt_xcomm *x; /* the data-parallel group */
    float *grad;       /* (numel) the flat gradient */
    size_t numel;
    float *send;         /* (numel) host memory: the sums' send copies (see xcomm.h) */
    mt_bucket *b;        /* (n) bucket 0 at the buffer's start */
    MPI_Request *req;    /* (n) started and not yet seen done; else MPI_REQUEST_NULL */
    int *done_idx;       /* (n) MPI_Testsome's answer */
    int n, next;         /* buckets; the next to start (n - 1 down to 0) */
    double mb;           /* parallel.bucket_mb */
    int overlap;         /* parallel.overlap */
    int live;            /* this step: the hook starts buckets */
    int64_t step;        /* this step (1-based) */
    int timed;           /* this step counts in the means */
    double t0, t_bwd;    /* the step's start; its backward's end (mt_wtime) */
    double tail_s[2];    /* exposed tails summed: [0] every step, [1] timed ones */
    double sync_s[2];    /* the reduction phases summed (first start to last end) */
    int64_t steps[2];    /* steps summed */
    int rank;            /* world rank (the trace file's suffix) */
    const char *trace;   /* MPITRAIN_GRADSYNC_TRACE, or NULL */
    int traced;          /* steps traced so far */
    int tracing;         /* this step is traced */
    mt_bucket_event *ev; /* (nev) this step's events (traced steps only) */
    int nev, cap_ev;
} mt_buckets;

/* Buckets of the flat gradient grad (numel floats) over x: starts (n of
 * them, ascending) are the held tensors' first elements, the only places a
 * bucket is cut below twice bucket_mb. overlap: parallel.overlap. rank:
 * this rank's world rank. NULL with e set on lack of memory. */
mt_buckets *mt_buckets_new(const mt_xcomm *x, float *grad, size_t numel, const size_t *starts,
                           int n, double bucket_mb, int overlap, int rank, mt_err *e);
/* The buckets over [offset, offset + n) start only after the backward. */
void mt_buckets_hold(mt_buckets *k, size_t offset, size_t n);
/* A step begins: step is its 1-based number, timed whether it counts in
 * the means; may_overlap 0 keeps this step's sums after the backward (the
 * gradient is still to be changed after it: MPITRAIN_FAULT's nan). */
void mt_buckets_begin(mt_buckets *k, int64_t step, int timed, int may_overlap);
/* The hook (mt_grad_ready_fn, core/params.h; ctx is k): the gradient from
 * offset to the end is final. */
void mt_buckets_ready(void *ctx, size_t offset);
/* The backward has ended (the time the exposed tail is counted from). */
void mt_buckets_backward_end(mt_buckets *k);
/* Starts the buckets left and waits for every sum (mt_watchdog_wait);
 * writes the step's trace lines. Collective over x. */
void mt_buckets_finish(mt_buckets *k);
/* Means in milliseconds over the timed steps (every step if none was):
 * the exposed tail (backward end to the last sum's end) and the whole
 * reduction phase (first start, or backward end, to the last end). */
void mt_buckets_means(const mt_buckets *k, double *tail_ms, double *sync_ms);
void mt_buckets_free(mt_buckets *k);

#endif
