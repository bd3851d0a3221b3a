/*
 * gradtree.h - a replica's micro-batch gradients summed in a canonical
 * pairwise tree (parallel.deterministic, issue 17).
 *
 * Accumulating micro-batch gradients in place gives ((g0 + g1) + g2) + g3:
 * a chain whose shape depends on how many micro-batches a replica runs, so
 * dp 1 x 4 micro-batches and dp 2 x 2 round differently. Here each
 * micro-batch's backward writes its own buffer and the buffers are summed
 * as a complete binary tree, (g0 + g1) + (g2 + g3): a replica's
 * micro-batches are a contiguous, aligned block of the global batch's
 * (powers of two), so its sum is one subtree of the global tree, and the
 * cross-rank sum (parallel/detsum.h) adds the subtrees in the same shape.
 *
 * Pairs are summed as they complete, like a binary counter: level k holds
 * the sum of the last complete block of 2^k micro-batches still waiting for
 * its right sibling, so m = 2^L micro-batches need L + 1 buffers, not m:
 * the parameters' gradient buffer (where the final sum lands) and L more.
 * Float addition is commutative bitwise; the tree's shape alone decides the
 * result.
 */
#ifndef MT_GRADTREE_H
#define MT_GRADTREE_H

#include <stddef.h>

#include "base/error.h"
#include "kernels/backend.h"

#define MT_GRADTREE_MAX_LEVELS 17 /* parallel.microbatches <= 65536 = 2^16 */

typedef struct {
    const mt_backend *be;
    float *grad; /* (numel) the result: the parameters' gradient */
    size_t numel;
    int levels;                         /* L: micro-batches = 2^L */
    float *buf[MT_GRADTREE_MAX_LEVELS]; /* (L + 1) x (numel): buf[0] = grad, the rest owned */
    int busy[MT_GRADTREE_MAX_LEVELS];   /* buf[i] holds a pending sum or the leaf being written */
    int at[MT_GRADTREE_MAX_LEVELS];     /* at[k]: the buffer pending at level k, or -1 */
    int leaf;                           /* the buffer the current backward writes */
    int next;                           /* the micro-batch expected next */
    /* the micro-batches' losses (doubles), summed in the same tree */
    double loss_at[MT_GRADTREE_MAX_LEVELS];
    int loss_has[MT_GRADTREE_MAX_LEVELS];
} mt_gradtree;

/* A tree over microbatches (a power of two) gradients of numel floats in
 * be's memory ending in grad; allocates log2(microbatches) buffers. */
int mt_gradtree_init(mt_gradtree *t, const mt_backend *be, float *grad, size_t numel,
                     int microbatches, mt_err *e);
/* Starts a step: no pending sums. */
void mt_gradtree_begin(mt_gradtree *t);
/* The buffer micro-batch mb's backward overwrites (mb = 0, 1, ... in
 * order: the pipeline with pp = 1 runs them so). */
float *mt_gradtree_leaf(mt_gradtree *t, int mb);
/* The leaf is written: sums the pairs it completes. After the last
 * micro-batch the whole sum is in grad. */
void mt_gradtree_done(mt_gradtree *t);
/* The loss of the next micro-batch (in order) into the loss tree. */
void mt_gradtree_add_loss(mt_gradtree *t, double loss);
/* The loss tree's sum (after a power of two of them: the root). */
double mt_gradtree_loss(const mt_gradtree *t);
/* Bytes of the extra buffers. */
double mt_gradtree_bytes(const mt_gradtree *t);
void mt_gradtree_free(mt_gradtree *t);

#endif
