/* step_stats.c - a step's losses and norm parts, read in one copy (see step_stats.h). */
#include "step_stats.h"

#include <stdlib.h>
#include <string.h>

#include "parallel/watchdog.h"

/* n doubles as the backend's floats */
#define FLOATS(n) ((size_t)(n) * (sizeof(double) / sizeof(float)))

int mt_step_stats_init(mt_step_stats *s, const mt_backend *be, int microbatches, int nnorm,
                       mt_err *e) {
    memset(s, 0, sizeof *s);
    s->be = be;
    s->microbatches = microbatches;
    s->nnorm = nnorm;
    size_t n = 2 * (size_t)microbatches + (size_t)nnorm;
    s->dev = (double *)be->alloc(FLOATS(n)); /* (alloc zeroes) */
    s->host = calloc(n ? n : 1, sizeof *s->host);
    if (!s->dev || !s->host)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the step's statistics");
    return MT_OK;
}

double *mt_step_stats_slot(const mt_step_stats *s, int mb) {
    return s->dev + 2 * (size_t)mb;
}

double *mt_step_stats_norm(const mt_step_stats *s) {
    return s->dev + 2 * (size_t)s->microbatches;
}

const double *mt_step_stats_host_slot(const mt_step_stats *s, int mb) {
    return s->host + 2 * (size_t)mb;
}

const double *mt_step_stats_host_norm(const mt_step_stats *s) {
    return s->host + 2 * (size_t)s->microbatches;
}

void mt_step_stats_read(mt_step_stats *s, MPI_Comm comm) {
    /* the watchdog's deadline over the step's device work, NCCL's included */
    mt_watchdog_wait_device(s->be, "the training step's device work (kernels and NCCL calls)", comm,
                            0);
    size_t n = 2 * (size_t)s->microbatches + (size_t)s->nnorm;
    s->be->to_host((float *)s->host, (const float *)s->dev, FLOATS(n));
}

void mt_step_stats_read_slot(mt_step_stats *s, int mb) {
    s->be->to_host((float *)(s->host + 2 * (size_t)mb), (const float *)mt_step_stats_slot(s, mb),
                   MT_STAT_FLOATS);
}

void mt_step_stats_free(mt_step_stats *s) {
    if (s->dev) s->be->free(s->dev);
    free(s->host);
    memset(s, 0, sizeof *s);
}
