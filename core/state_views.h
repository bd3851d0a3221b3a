/*
 * state_views.h - the training state as io/ sees it: tensor views
 * (io/tensor_view.h) over the host copies of the parameters and the
 * optimizer state, in the order checkpoints hold them: every weight in
 * registration order, then, state by state (io's names for the optimizer's
 * kind: mt_ckpt_state_names), every weight's state tensor. Checkpoints,
 * their loading and the model file take this list; io/ never sees mt_params
 * or mt_optim.
 */
#ifndef MT_STATE_VIEWS_H
#define MT_STATE_VIEWS_H

#include "base/error.h"
#include "core/optim.h"
#include "core/params.h"
#include "io/checkpoint.h"
#include "io/tensor_view.h"

typedef struct {
    mt_tensor_view *v; /* (n) weights, then each optimizer state's tensors */
    int n;
    int n_model; /* v[0 .. n_model) are the weights (/model/...) */
} mt_state_views;

/* Views of p's tensors and, when o is not NULL, of o's state tensors; data
 * points into p's and o's buffers, which must be host memory (p->be NULL)
 * and stay allocated while the views are used. Each held tensor is held
 * whole (begin 0, count = its block), except o's state under ZeRO-1
 * (o->shard): the shard's rows of each block. */
int mt_state_views_build(mt_state_views *sv, mt_params *p, mt_optim *o, mt_err *e);
/* ZeRO-1's pieces (parallel/zero.h) of p (allocated and laid out) under c's
 * grid: for each data-parallel rank k and parameter i, piece k * p->n + i
 * is the rows of i's block that rank k writes in a checkpoint
 * (mt_ckpt_dp_rows), with its position in k's shard; *pieces is malloc'd
 * (c->dp_size x p->n). */
int mt_state_zero_pieces(const mt_params *p, const mt_comm *c, mt_zero_piece **pieces, mt_err *e);
void mt_state_views_free(mt_state_views *sv);
/* The name checkpoints give o's kind ("adamw", "sgd"). */
const char *mt_state_optim_kind(const mt_optim *o);
/* o's hyperparameters, for the checkpoint's /optim attributes. */
mt_ckpt_hyper mt_state_hyper(const mt_optim *o);

#endif
