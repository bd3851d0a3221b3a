/*
 * pipeline.h - pipeline-parallel schedules over the pipeline group's
 * point-to-point exchanges (parallel/xcomm.h: MPI, or NCCL for GPU memory).
 *
 * A pipeline of `stages` ranks (one per stage) runs m micro-batches per step.
 * Stage s receives each micro-batch's input activations from stage s-1,
 * runs its layers, and sends the output to stage s+1; the backward sends
 * the gradient of each input back.
 *
 * Every transfer is part of an exchange that both neighbours make at the
 * same point of their schedules, and a send completes only when its receive
 * is posted (NCCL's rule; MPI_Issend on the host). The steady part of 1F1B
 * pairs them as Megatron-LM does: "send my output forward, receive the
 * gradient of an earlier one back" on one side is "send a gradient back,
 * receive the next input" on the other. So no two stages ever wait on each
 * other's sends, under MPI or NCCL, and buffers are free again as soon as an
 * exchange returns.
 *
 * Schedules:
 *   GPipe: all m forwards, then all m backwards; m micro-batches of
 *          activations are held at once.
 *   1F1B:  stage s runs min(m, stages-s-1) forwards, then alternates one
 *          forward and one backward, then the remaining backwards; at most
 *          min(m, stages-s) micro-batches of activations are held.
 * Both give the same gradients: each micro-batch's backward is the same
 * computation, accumulated in micro-batch order.
 *
 * The pipeline knows nothing of the model: callbacks run a stage's forward
 * and backward of micro-batch mb in activation slot `slot`.
 */
#ifndef MT_PIPELINE_H
#define MT_PIPELINE_H

#include <mpi.h>
#include <stddef.h>

#include "kernels/backend.h"
#include "parallel/xcomm.h"

enum { MT_PIPE_SCHED_1F1B = 0, MT_PIPE_SCHED_GPIPE = 1 };

typedef struct {
    /* set by the caller */
    const mt_xcomm *x;  /* the pipeline group (a rank per stage, rank = stage) */
    int prev, next;     /* neighbouring stages; -1 at the ends */
    int stage, stages;  /* this stage, number of stages */
    int microbatches;   /* per step */
    int schedule;       /* MT_PIPE_SCHED_* */
    size_t in_n, out_n; /* floats of one micro-batch's input (from prev), output (to next);
                         * may shrink between calls (a short last evaluation batch) */
    void *ctx;
    /* whose memory the activations are in (NULL: host) */
    const mt_backend *be;
    /* forward of micro-batch mb in slot; in is NULL on the first stage;
     * returns the output to send (ignored on the last stage), valid until
     * the slot's backward */
    const float *(*forward)(void *ctx, int slot, int mb, const float *in);
    /* backward of micro-batch mb held in slot; dout is NULL on the last
     * stage; returns d(in) to send (ignored on the first stage) */
    const float *(*backward)(void *ctx, int slot, int mb, const float *in, const float *dout);

    /* kept by the pipeline */
    int nslots;      /* activation slots this stage needs (mt_pipe_slots) */
    float **in_buf;  /* (nslots) received inputs, in the backend's memory */
    float *dout_buf; /* received output gradient, in the backend's memory */
    int held, peak;  /* micro-batches whose activations are held now; most ever */
    double busy_s;   /* seconds of the callbacks' work (for the bubble; mt_pipe_collect) */
    int marks;       /* the backend's timer marks made this step (a device's busy time) */
    double wait_s;   /* seconds in exchanges (waiting for a neighbour, and moving data) */
} mt_pipe;

/* Activation slots stage `stage` of `stages` needs for m micro-batches. */
int mt_pipe_slots(int schedule, int stage, int stages, int m);
/* Allocates the buffers (after the caller's fields are set); 0 or -1. */
int mt_pipe_init(mt_pipe *p);
/* One step: every micro-batch's forward and backward, in the schedule's
 * order. Collective over the pipeline. */
void mt_pipe_step(mt_pipe *p);
/* Adds the step's busy time on a device (timer marks around each callback:
 * the backend's timer_*) to busy_s, once the work has been waited for (the
 * step's one read); on the CPU busy_s is counted as the callbacks return. */
void mt_pipe_collect(mt_pipe *p);
/* Forwards only (evaluation): n micro-batches through slot 0. */
void mt_pipe_forward_only(mt_pipe *p, int n);
void mt_pipe_free(mt_pipe *p);

#endif
