/*
 * stage.h - the part of the model one rank runs (docs/PARALLEL.md): its
 * pipeline stage of the model, split over its tensor-parallel group, one
 * model instance per micro-batch it may hold at once, and the pipeline
 * that moves micro-batches between the stages of its replica. It knows the
 * model only through the model interface (core/model.h).
 *
 * The trainer hands it a replica's batch; it runs every micro-batch's
 * forward and backward in the schedule's order, accumulates the gradient in
 * the parameters' flat buffer (parallel.deterministic: each micro-batch's
 * in a buffer of its own, summed in a pairwise tree, core/gradtree.h), and
 * on the last stage sums the losses and hits. Evaluation runs forwards
 * only. Reducing the gradient over ranks is not its business
 * (parallel/gradsync.h).
 */
#ifndef MT_STAGE_H
#define MT_STAGE_H

#include <stdint.h>

#include "core/config.h"
#include "core/gradtree.h"
#include "core/model.h"
#include "core/params.h"
#include "core/split.h"
#include "core/step_stats.h"
#include "kernels/backend.h"
#include "parallel/comm.h"
#include "parallel/pipeline.h"

typedef struct {
    const mt_model_ops *ops;
    const mt_backend *be;
    mt_params *p;
    mt_split sp;
    mt_model_rows shape; /* the rows the model reads */
    char *slots;         /* (nslots) model instances of ops->size bytes; slot 0 owns the scratch */
    int nslots;          /* activation slots (mt_pipe_slots) */
    mt_pipe pipe;
    int64_t rows;     /* rows per training micro-batch */
    int64_t max_rows; /* the most rows one forward takes */
    /* the batch being run: a step's rows (training) or one evaluation forward */
    mt_model_batch batch;
    float scale;
    int nbackward;               /* backwards done this step (the first overwrites the gradient) */
    double loss, correct;        /* last stage: sums over the batches run since zeroed */
    mt_step_stats *stats;        /* where the forwards leave their losses (mt_stage_use_stats) */
    MPI_Comm world;              /* (names the group of a wait for the device) */
    int deterministic;           /* parallel.deterministic: micro-batches summed in tree */
    mt_gradtree tree;            /* (deterministic) their buffers and pending sums */
    mt_grad_ready_fn grad_ready; /* told, in a step's last backward, what is final */
    void *grad_ready_ctx;
} mt_stage;

/* This rank's stage of the model cfg names under c's grid: splits,
 * registers, shards and allocates the model in p (p initialised, not yet
 * allocated), activations for rows per micro-batch (max_rows for
 * evaluation). Every rank reaches the same verdict on a bad layout
 * (MT_ERR_USAGE). */
int mt_stage_build(mt_stage *s, const mt_comm *c, const mt_config *cfg, const mt_backend *be,
                   mt_params *p, int64_t rows, int64_t max_rows, mt_err *e);
/* The step's statistics (core/step_stats.h, room for the micro-batches):
 * the last stage's forwards write each micro-batch's loss and hits there.
 * Before the first forward. */
void mt_stage_use_stats(mt_stage *s, mt_step_stats *stats);
/* One training step of the replica's batch b of microbatches x rows rows
 * (b->x, b->y in the backend's memory; b->row0 the global index of its
 * first row): gradients of scale * the loss sum into p->grad (overwritten);
 * the losses into the statistics' slots. On a GPU with NCCL nothing here
 * waits for the device (the unfused loss returns values; sums without NCCL
 * go through host copies).
 * Collective over the replica's pipeline. */
void mt_stage_train(mt_stage *s, const mt_model_batch *b, float scale);
/* After the statistics are read (mt_step_stats_read): adds the last
 * stage's loss and hit sums of the step to s->loss, s->correct, in
 * micro-batch order (parallel.deterministic: the loss in the gradient's
 * tree). */
void mt_stage_collect(mt_stage *s);
/* fn (ctx) is told during the last micro-batch's backward of each step,
 * after each layer, from which flat offset on the gradient is final (the
 * data-parallel buckets, parallel/buckets.h); earlier backwards only
 * accumulate. Not with parallel.deterministic (its tree sums later). */
void mt_stage_on_grad_ready(mt_stage *s, mt_grad_ready_fn fn, void *ctx);
/* Before an evaluation's forwards (after whatever changed the parameters). */
void mt_stage_eval_begin(mt_stage *s);
/* Forward only over b->rows <= max_rows rows (evaluation), adding to
 * s->loss and s->correct on the last stage (one wait for the device).
 * Collective over the pipeline. */
void mt_stage_eval(mt_stage *s, const mt_model_batch *b);
/* Whether this rank's s->loss is its replica's to report: the last stage's
 * tensor-parallel rank 0 (every tensor-parallel rank computes the same). */
int mt_stage_reports(const mt_stage *s);
/* Bytes of activations this rank allocates: the slots, scratch and the
 * pipeline's message buffers. */
double mt_stage_act_bytes(const mt_stage *s);
void mt_stage_free(mt_stage *s);

#endif
