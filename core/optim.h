/*
 * optim.h - optimizers over the flat parameter buffers: AdamW (decoupled
 * weight decay, PyTorch's formulation) and SGD with momentum (L2 weight
 * decay added to the gradient, as PyTorch's SGD). Weight decay applies to
 * tensors marked decay (weight matrices), never to biases. State buffers
 * have the layout of the parameters, so they shard and checkpoint alike.
 */
#ifndef MT_OPTIM_H
#define MT_OPTIM_H

#include <stdint.h>

#include "core/config.h"
#include "core/params.h"
#include "kernels/backend.h"
#include "parallel/zero.h"

typedef struct {
    int kind; /* mt_optim_kind */
    float beta1, beta2, eps, momentum, weight_decay;
    int64_t t;    /* optimizer steps taken */
    float *m;     /* (numel) AdamW first moment, or SGD momentum buffer */
    float *v;     /* (numel) AdamW second moment; NULL for SGD */
    size_t numel; /* of each state buffer: the parameters', or the shard's */
    /* parallel.zero = 1: the pieces of the flat buffers this rank updates,
     * one per parameter (parallel/zero.h); their state is at m + pos,
     * v + pos. NULL: every parameter, state in the parameters' layout. */
    const mt_zero_piece *shard;
    /* train.fused with AdamW on a backend with adamw_multi: every tensor in
     * one call over nseg segments (offsets into the parameter and state
     * buffers, lengths, weight decays), the clip factor gscale applied in
     * the same pass instead of scaling the gradient first */
    int multi, nseg;
    size_t *seg_p, *seg_s, *seg_n;
    float *seg_wd;
    float gscale;
} mt_optim;

/* shard: NULL, or this rank's ZeRO-1 pieces (p->n of them, one per
 * parameter, kept by the caller). */
int mt_optim_init(mt_optim *o, const mt_config *cfg, const mt_params *p, const mt_backend *be,
                  const mt_zero_piece *shard, mt_err *e);
/* Gradient clipping: if max_norm > 0 and the gradient's global norm (its
 * L2 norm over the whole model, parallel/gradsync.h) exceeds it, the
 * gradient (the shard's, with ZeRO-1) is scaled down to max_norm: at once,
 * or (o->multi) inside the next mt_optim_step, which then leaves the
 * gradient buffer unscaled. */
void mt_optim_clip(mt_optim *o, const mt_params *p, const mt_backend *be, double norm,
                   double max_norm);
/* One update of every parameter (the shard's) with learning rate lr. */
void mt_optim_step(mt_optim *o, mt_params *p, const mt_backend *be, float lr);
void mt_optim_free(mt_optim *o, const mt_backend *be);

/* Learning rate at 0-based step (warmup, then constant or cosine to min_lr). */
double mt_lr_at(const mt_config *cfg, int64_t step);

#endif
