/*
 * step_stats.h - what a training step brings back from the device, in one
 * copy: each micro-batch's loss sum and hits (the models write them, core/
 * model.h's forward) and the partial sums of the gradient's norm
 * (parallel/gradsync.h), side by side in one buffer of the backend's
 * memory. The trainer reads it once per step, after the backward and the
 * gradient's reductions are queued: the step's only wait for a GPU (docs/
 * CUDA.md, "Host synchronisations"); the optimizer is queued right after,
 * with the clip factor and the NaN verdict the read allows.
 */
#ifndef MT_STEP_STATS_H
#define MT_STEP_STATS_H

#include "base/error.h"
#include "kernels/backend.h"

typedef struct {
    const mt_backend *be;
    int microbatches; /* loss slots: micro-batch mb's (loss sum, hits) at 2 * mb */
    int nnorm;        /* the norm's partial sums, after the slots */
    double *dev;      /* (2 * microbatches + nnorm) doubles in the backend's memory */
    double *host;     /* the same after mt_step_stats_read */
} mt_step_stats;

/* Zeroed slots for microbatches micro-batches and nnorm partial sums. */
int mt_step_stats_init(mt_step_stats *s, const mt_backend *be, int microbatches, int nnorm,
                       mt_err *e);
/* Micro-batch mb's two doubles (loss sum, hits), in the backend's memory. */
double *mt_step_stats_slot(const mt_step_stats *s, int mb);
/* The norm's partial sums, in the backend's memory. */
double *mt_step_stats_norm(const mt_step_stats *s);
/* The one copy to the host (waits for the work queued so far); then
 * s->host holds what dev does, in the same layout. */
void mt_step_stats_read(mt_step_stats *s);
/* A copy of micro-batch mb's slot alone (evaluation, one forward at a time). */
void mt_step_stats_read_slot(mt_step_stats *s, int mb);
void mt_step_stats_free(mt_step_stats *s);

#endif
