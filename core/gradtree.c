/* gradtree.c - micro-batch gradients summed in a pairwise tree (see gradtree.h). */
#include "gradtree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mt_gradtree_init(mt_gradtree *t, const mt_backend *be, float *grad, size_t numel,
                     int microbatches, mt_err *e) {
    memset(t, 0, sizeof *t);
    t->be = be;
    t->grad = grad;
    t->numel = numel;
    while ((1 << t->levels) < microbatches) t->levels++;
    if ((1 << t->levels) != microbatches || t->levels >= MT_GRADTREE_MAX_LEVELS)
        return mt_err_set(e, MT_ERR_INTERNAL, "gradient tree over %d micro-batches", microbatches);
    t->buf[0] = grad;
    for (int i = 1; i <= t->levels; i++)
        if (!(t->buf[i] = be->alloc(numel ? numel : 1)))
            return mt_err_set(e, MT_ERR_INTERNAL,
                              "out of memory for the deterministic gradient's %d buffers of %zu "
                              "floats",
                              t->levels, numel);
    mt_gradtree_begin(t);
    return MT_OK;
}

void mt_gradtree_begin(mt_gradtree *t) {
    for (int i = 0; i <= t->levels; i++) t->busy[i] = 0, t->at[i] = -1, t->loss_has[i] = 0;
    t->leaf = -1;
    t->next = 0;
}

/* A free buffer; grad (buffer 0) last, so that with one micro-batch the
 * leaf is grad itself and with more it stays free for the final sum. */
static int take(mt_gradtree *t) {
    for (int i = t->levels; i >= 0; i--)
        if (!t->busy[i]) {
            t->busy[i] = 1;
            return i;
        }
    fprintf(stderr, "mpitrain: internal error: gradient tree out of buffers\n");
    abort();
}

float *mt_gradtree_leaf(mt_gradtree *t, int mb) {
    if (mb != t->next || t->leaf >= 0) {
        fprintf(stderr, "mpitrain: internal error: micro-batch %d's gradient out of order\n", mb);
        abort();
    }
    t->leaf = take(t);
    return t->buf[t->leaf];
}

void mt_gradtree_done(mt_gradtree *t) {
    int carry = t->leaf, k = 0;
    t->leaf = -1;
    t->next++;
    /* the pending left sibling at level k and the carry make level k + 1 */
    for (; t->at[k] >= 0; k++) {
        int left = t->at[k];
        t->at[k] = -1;
        int out = k + 1 == t->levels ? 0 : left; /* the root lands in grad */
        t->be->add(t->buf[out], t->buf[left], t->buf[carry], t->numel);
        if (left != out) t->busy[left] = 0;
        if (carry != out) t->busy[carry] = 0;
        t->busy[out] = 1;
        carry = out;
    }
    t->at[k] = carry;
}

void mt_gradtree_add_loss(mt_gradtree *t, double loss) {
    int k = 0;
    for (; k < t->levels && t->loss_has[k]; k++) {
        loss = t->loss_at[k] + loss;
        t->loss_has[k] = 0;
    }
    t->loss_at[k] = loss;
    t->loss_has[k] = 1;
}

double mt_gradtree_loss(const mt_gradtree *t) {
    double sum = 0.0; /* levels high to low: the root alone when complete */
    for (int k = t->levels; k >= 0; k--)
        if (t->loss_has[k]) sum += t->loss_at[k];
    return sum;
}

double mt_gradtree_bytes(const mt_gradtree *t) {
    return 4.0 * (double)t->levels * (double)t->numel;
}

void mt_gradtree_free(mt_gradtree *t) {
    for (int i = 1; i <= t->levels; i++)
        if (t->buf[i]) t->be->free(t->buf[i]);
    memset(t, 0, sizeof *t);
}
