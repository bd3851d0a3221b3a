/*
 * split.h - how a model is cut across model-parallel ranks: which pipeline
 * stage holds which layers, and this rank's place in its tensor-parallel
 * group. Models register every tensor and use this to shard and place them
 * (params.h) and to run only their stage's layers.
 */
#ifndef MT_SPLIT_H
#define MT_SPLIT_H

#include "core/config.h"
#include "base/error.h"
#include "parallel/comm.h"

#define MT_PP_MAX 1024

typedef struct {
    int tp, tp_rank;
    const mt_xcomm *tpx; /* sums over the tensor-parallel group; NULL when tp = 1 */
    int pp, stage;
    int first[MT_PP_MAX + 1]; /* stage s holds layers [first[s], first[s+1]) */
} mt_split;

/* One rank holds the whole model of `layers` layers. */
void mt_split_whole(mt_split *s, int layers);
/* This rank's split under c's grid: stages from parallel.stage_layers, or
 * balanced by cost (cost[l] of layer l, plus first_extra and last_extra on
 * the first and last stage: embeddings, head). MT_ERR_USAGE when there are
 * fewer layers than stages. The same result on every rank. */
int mt_split_make(mt_split *s, const mt_comm *c, const mt_config *cfg, int layers,
                  const double *cost, double first_extra, double last_extra, mt_err *e);
/* The stage holding layer l. */
int mt_split_stage_of(const mt_split *s, int l);
/* In-place sum over the tensor-parallel group (nothing when tp = 1). */
void mt_split_tp_sum(const mt_split *s, float *buf, size_t n);

#endif
