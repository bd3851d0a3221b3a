/*
 * stage.h - the part of the model one rank runs (docs/PARALLEL.md): its
 * pipeline stage of the MLP or the GPT, split over its tensor-parallel group,
 * one set of activations per micro-batch it may hold at once, and the
 * pipeline that moves micro-batches between the stages of its replica.
 *
 * The trainer hands it a replica's batch; it runs every micro-batch's
 * forward and backward in the schedule's order, accumulates the gradient in
 * the parameters' flat buffer, and on the last stage sums the losses and
 * hits. Evaluation runs forwards only.
 */
#ifndef MT_STAGE_H
#define MT_STAGE_H

#include <stdint.h>

#include "core/config.h"
#include "core/gpt.h"
#include "core/mlp.h"
#include "core/params.h"
#include "core/split.h"
#include "kernels/backend.h"
#include "parallel/comm.h"
#include "parallel/pipeline.h"

typedef struct {
    int gpt; /* model.kind = gpt */
    const mt_backend *be;
    mt_params *p;
    mt_split sp;
    mt_mlp mlp; /* slot 0 of the activations (owns the scratch) */
    mt_gpt gptm;
    mt_mlp *mlp_more; /* slots 1.. */
    mt_gpt *gpt_more;
    mt_pipe pipe;
    int nslots;       /* activation slots (mt_pipe_slots) */
    int T, C, V, D;   /* gpt: tokens per sequence, n_embd, vocab; mlp: inputs, classes */
    int64_t rows;     /* rows (samples or sequences) per training micro-batch */
    int64_t max_rows; /* the most rows one forward takes */
    /* the batch being run */
    const float *x;     /* mlp: (rows, D) inputs */
    const int32_t *tok; /* gpt: (rows, T) tokens */
    const int32_t *y;   /* labels (rows) or targets (rows, T) */
    int64_t n;          /* rows of this forward (evaluation) */
    int evaluating;
    mt_gpt_dropout drop; /* training: masks of the batch's first sequence */
    float scale;
    int nbackward;        /* backwards done this step (the first overwrites the gradient) */
    double loss, correct; /* last stage: sums over the batches run since zeroed */
} mt_stage;

/* This rank's stage under c's grid: splits, registers, shards and allocates
 * the model in p (p initialised, not yet allocated), activations for rows
 * per micro-batch (max_rows for evaluation), T tokens per sequence (gpt).
 * Every rank reaches the same verdict on a bad layout (MT_ERR_USAGE). */
int mt_stage_build(mt_stage *s, const mt_comm *c, const mt_config *cfg, const mt_backend *be,
                   mt_params *p, int64_t rows, int64_t max_rows, int T, mt_err *e);
/* One training step of the replica's batch of microbatches x rows: inputs x
 * (mlp) or tokens (gpt) and y; gradients of scale * the loss sum into p->grad
 * (overwritten); drop (gpt) gives the masks of the batch's first sequence.
 * Adds the last stage's loss and hit sums to s->loss, s->correct. Collective
 * over the replica's pipeline; then sums the tied embedding's gradient over
 * its first and last stage. */
void mt_stage_train(mt_stage *s, const mt_comm *c, const float *x, const int32_t *tok,
                    const int32_t *y, const mt_gpt_dropout *drop, float scale);
/* Forward only over n <= max_rows rows (evaluation), adding to s->loss and
 * s->correct on the last stage. Collective over the pipeline. */
void mt_stage_eval(mt_stage *s, const float *x, const int32_t *tok, const int32_t *y, int64_t n);
/* Whether this rank's s->loss is its replica's to report: the last stage's
 * tensor-parallel rank 0 (every tensor-parallel rank computes the same). */
int mt_stage_reports(const mt_stage *s);
/* Bytes of activations this rank allocates: the slots, scratch and the
 * pipeline's message buffers. */
double mt_stage_act_bytes(const mt_stage *s);
void mt_stage_free(mt_stage *s);

#endif
