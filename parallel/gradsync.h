/*
 * gradsync.h - every reduction of the parameter gradients, in one place:
 *
 *   tied sums      tensors held on two pipeline stages (the GPT's token
 *                  embedding, also the head's weight on the last stage)
 *                  take the sum of both copies' gradients, over the
 *                  first-and-last-stage group, so the copies stay equal;
 *   data-parallel  the flat gradient is summed over the replicas (each rank
 *                  scaled its share by 1 / global batch: the sum is the mean);
 *   global norm    the L2 norm of the whole model's gradient, each tensor
 *                  counted once per replica, for clipping and the NaN check.
 *
 * The gradient is one flat buffer in the backend's memory (core/params.h);
 * what this layer needs to know of its tensors is a list of spans (offset,
 * length) per role, set once after the model is built. The data-parallel
 * sum may go in buckets overlapped with the backward (parallel/buckets.h).
 *
 * ZeRO-1 (parallel.zero = 1, parallel/zero.h): the data-parallel sum is a
 * reduce-scatter (each rank gets its shard's sum only), the norm is summed
 * from every rank's shard, the optimizer updates the shard, and
 * mt_gradsync_gather all-gathers the parameters after it.
 *
 * parallel.deterministic: the data-parallel sum in a fixed tree
 * (parallel/detsum.h, or zero.h's halving), and the norm exact
 * (base/sumsq_exact.h), so it is the same for any split of the gradient.
 *
 * The tensor-parallel sums inside the layers (Megatron's forward sum of a
 * row-parallel output and backward sum of a column-parallel input's
 * gradient) are activations, not parameter gradients: the models make them
 * through the tensor-parallel group's xcomm (core/split.h). Replicated
 * tensors (LayerNorms, row-parallel biases, embeddings) need no sum over
 * the tensor-parallel group: every rank of it computes the same gradient.
 */
#ifndef MT_GRADSYNC_H
#define MT_GRADSYNC_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "kernels/backend.h"
#include "parallel/buckets.h"
#include "parallel/comm.h"
#include "parallel/detsum.h"
#include "parallel/zero.h"

typedef struct {
    size_t offset, numel; /* elements [offset, offset + numel) of the flat gradient */
} mt_grad_span;

typedef struct {
    const mt_comm *c;
    const mt_backend *be; /* whose memory grad is in */
    float *grad;          /* (numel) the flat gradient */
    size_t numel;
    mt_grad_span *tied; /* (ntied) tensors summed over c->xemb */
    int ntied;
    mt_grad_span *norm; /* (nnorm) tensors this rank counts in the norm */
    int nnorm;
    int cap_tied, cap_norm;
    int deterministic; /* the data-parallel sum in a fixed tree (mt_detsum) */
    mt_detsum det;
    int zero; /* ZeRO-1: reduce-scatter, sharded norm, parameter all-gather */
    mt_zero z;
    /* deterministic ZeRO-1 with tied tensors: their whole gradient, summed
     * over the replicas (tied_det) and then the tied group, on the host */
    float *tied_host;
    size_t tied_numel;
    mt_detsum tied_det;
    float *shard_host; /* deterministic: where the reduced gradient is on the host */
    /* the paths without buckets (deterministic, ZeRO-1): seconds the
     * reductions after the backward and ZeRO-1's all-gather took, summed
     * over the timed steps */
    int timed;
    double reduce_s, gather_s;
    int64_t timed_steps;
    /* every path: when mt_gradsync_reduce began and ended (mt_wtime), per
     * timed step, the first MT_GRADSYNC_STEPS of them (mt_gradsync_spans) */
    double *span_at;
    int nspans;
    mt_buckets *bk;            /* the data-parallel sum in buckets (NULL: the paths above) */
    size_t *span_off, *span_n; /* (nspan) what the norm sums (mt_gradsync_norm_parts) */
    int nspan;
} mt_gradsync;

void mt_gradsync_init(mt_gradsync *g, const mt_comm *c, const mt_backend *be, float *grad,
                      size_t numel);
/* A held tensor with a copy on the other end of the pipeline (sums over the
 * tied group; ignored when this rank is in none, pp = 1). */
int mt_gradsync_add_tied(mt_gradsync *g, size_t offset, size_t numel, mt_err *e);
/* A tensor this rank counts in the global norm: one rank of its replica per
 * tensor (tensor-parallel rank 0 for a replicated one, never a mirror). */
int mt_gradsync_add_norm(mt_gradsync *g, size_t offset, size_t numel, mt_err *e);

/* parallel.deterministic: the data-parallel sum from now on in a fixed
 * pairwise tree over the replicas (parallel/detsum.h; dp a power of two),
 * continuing the tree each replica summed its micro-batches in
 * (core/gradtree.h). Collective over the data-parallel group. */
int mt_gradsync_deterministic(mt_gradsync *g, mt_err *e);

/* parallel.zero = 1 (after mt_gradsync_deterministic when that is on):
 * pieces are every data-parallel rank's shard (core's
 * mt_state_zero_pieces: np per rank). Collective over the data-parallel
 * group. */
int mt_gradsync_zero(mt_gradsync *g, const mt_zero_piece *pieces, int np, mt_err *e);
/* parallel.bucket_mb, parallel.overlap (after the tied spans are added):
 * the data-parallel sum in buckets cut at the tensor starts given (n,
 * ascending), those holding a tied tensor started after the tied sums.
 * Not for parallel.deterministic or ZeRO, which keep their own paths. */
int mt_gradsync_buckets(mt_gradsync *g, const size_t *starts, int n, double bucket_mb, int overlap,
                        mt_err *e);
/* A step begins (mt_buckets_begin; nothing without buckets). */
void mt_gradsync_begin(mt_gradsync *g, int64_t step, int timed, int may_overlap);
/* The stage's hook (core/params.h, mt_grad_ready_fn; ctx is the
 * mt_gradsync): the gradient from offset on is final. */
void mt_gradsync_ready(void *ctx, size_t offset);

/* After the backward of a step: the tied sums, then the data-parallel sum
 * (deterministic: the other way round); with ZeRO-1 only this rank's shard
 * of the gradient is the sum afterwards. Collective over the tied group and
 * the data-parallel group. */
void mt_gradsync_reduce(mt_gradsync *g);
/* After the optimizer step: ZeRO-1's all-gather of the parameters data
 * (nothing otherwise). Collective over the data-parallel group. */
void mt_gradsync_gather(mt_gradsync *g, float *data);
/* The global L2 norm of the reduced gradient (double sums in a fixed order;
 * one replica's tensors over its model-parallel group; deterministic: an
 * exact sum), in two halves around the step's one wait for the device
 * (core/step_stats.h): mt_gradsync_norm_queue queues the partial sums into
 * dev (the backend's memory, mt_gradsync_norm_parts doubles; 0: nothing
 * queued, the end computes them, waiting: parallel.deterministic's exact
 * sum, or a backend without sumsq_multi; -1: no memory for the spans' list,
 * which the first call makes: call it at the set-up); mt_gradsync_norm_end adds the
 * parts read back (host) in a fixed order and over the ranks. The end is
 * collective over c->mp (ZeRO-1: over the world). */
int mt_gradsync_norm_parts(mt_gradsync *g);
void mt_gradsync_norm_queue(mt_gradsync *g, double *dev);
double mt_gradsync_norm_end(mt_gradsync *g, const double *parts);
/* Mean milliseconds per timed step of the deterministic or ZeRO-1 path:
 * the reductions after the backward (all exposed), ZeRO-1's all-gather;
 * 0 for the others (parallel/buckets.h measures those). */
void mt_gradsync_means(const mt_gradsync *g, double *reduce_ms, double *gather_ms);
/* The timed steps' reductions as (begin, end) pairs of mt_wtime(), at most
 * MT_GRADSYNC_STEPS; returns how many. mt_wtime's origin may differ per
 * process (Open MPI 4.1: its first call), so the report shifts them onto
 * CLOCK_MONOTONIC, one clock per node; there the latest end minus the latest
 * begin over the ranks is the step's exposed tail on its critical path. */
#define MT_GRADSYNC_STEPS 4096
int mt_gradsync_spans(const mt_gradsync *g, const double **at);
/* Host bytes its buffers take (deterministic sum, ZeRO-1). */
double mt_gradsync_bytes(const mt_gradsync *g);
void mt_gradsync_free(mt_gradsync *g);

#endif
