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

#include <mpi.h>

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
/* The floats of the backend's memory that a forward's stat (its loss sum
 * and hits: 2 doubles) takes. */
#define MT_STAT_FLOATS (2 * sizeof(double) / sizeof(float))

/* Micro-batch mb's two doubles (loss sum, hits), in the backend's memory. */
double *mt_step_stats_slot(const mt_step_stats *s, int mb);
/* The norm's partial sums, in the backend's memory. */
double *mt_step_stats_norm(const mt_step_stats *s);
/* After mt_step_stats_read: micro-batch mb's (loss sum, hits), and the
 * norm's partial sums, on the host. */
const double *mt_step_stats_host_slot(const mt_step_stats *s, int mb);
const double *mt_step_stats_host_norm(const mt_step_stats *s);
/* The one copy to the host (waits for the work queued so far: under the
 * watchdog's deadline when parallel.timeout is set, comm naming the
 * group); then s->host holds what dev does, in the same layout. */
void mt_step_stats_read(mt_step_stats *s, MPI_Comm comm);
/* A copy of micro-batch mb's slot alone (evaluation, one forward at a time). */
void mt_step_stats_read_slot(mt_step_stats *s, int mb);
void mt_step_stats_free(mt_step_stats *s);

/* A forward's loss sum and hits computed on the host (the unfused loss ops
 * return them) into stat (backend memory, MT_STAT_FLOATS). */
static inline void mt_stat_put(const mt_backend *be, double *stat, double loss, double correct) {
    double v[2] = {loss, correct};
    be->to_device((float *)stat, (const float *)v, MT_STAT_FLOATS);
}

/* A host API's forward loss (tests, tools): room for one stat, or NULL
 * without memory (the caller's loss is then NaN); mt_stat_take reads the
 * loss sum back and frees the room. */
static inline double *mt_stat_alloc(const mt_backend *be) {
    return (double *)be->alloc(MT_STAT_FLOATS);
}
static inline double mt_stat_take(const mt_backend *be, double *stat) {
    double v[2];
    be->to_host((float *)v, (const float *)stat, MT_STAT_FLOATS);
    be->free(stat);
    return v[0];
}

#endif
