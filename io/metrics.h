/*
 * metrics.h - the run's metrics file: JSON Lines, one object per logged
 * step, written by rank 0 and flushed after every line so a killed job
 * keeps every line it logged.
 */
#ifndef MT_METRICS_H
#define MT_METRICS_H

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>

#include "base/error.h"

typedef struct {
    FILE *f;
    char path[PATH_MAX];
} mt_metrics;

int mt_metrics_open(mt_metrics *m, const char *path, mt_err *e);
/* Writes obj as one line (obj is not freed). */
int mt_metrics_write(mt_metrics *m, const cJSON *obj, mt_err *e);
int mt_metrics_close(mt_metrics *m, mt_err *e);

#endif
