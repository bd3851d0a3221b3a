/*
 * modelfile.h - the trained model as an HDF5 file: every parameter at its
 * full logical shape under /model/<name> (float32, chunked, Fletcher32),
 * plus the resolved config and identity as attributes. Written by rank 0
 * under pure data parallelism (every rank holds every parameter); the
 * checkpoint format extends this layout.
 */
#ifndef MT_MODELFILE_H
#define MT_MODELFILE_H

#include "core/error.h"
#include "core/params.h"

typedef struct {
    const char *config_text; /* resolved INI */
    const char *run_id;
    const char *model_kind;
    long long step;
} mt_modelfile_meta;

/* Writes path atomically (temporary name, fsync, rename). */
int mt_modelfile_write(const char *path, const mt_params *p, const mt_modelfile_meta *meta,
                       mt_err *e);

#endif
