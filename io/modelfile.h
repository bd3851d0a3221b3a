/*
 * modelfile.h - the trained model as an HDF5 file: every parameter at its
 * full logical shape under /model/<name> (float32, chunked, Fletcher32),
 * plus the resolved config and identity as attributes. Under any layout
 * (tensor and pipeline parallelism included) rank 0 gathers each tensor from
 * the ranks holding it and writes the file alone; the checkpoint format
 * extends this layout.
 */
#ifndef MT_MODELFILE_H
#define MT_MODELFILE_H

#include "base/error.h"
#include "core/params.h"
#include "parallel/comm.h"

typedef struct {
    const char *config_text; /* resolved INI */
    const char *run_id;
    const char *model_kind;
    long long step;
} mt_modelfile_meta;

/*
 * Collective over c->world: writes path atomically (temporary name, fsync,
 * rename). Rank 0 receives each tensor, one at a time, from the first
 * data-parallel replica's ranks of the stage owning it (every tensor-parallel
 * rank's block of a split tensor, tensor-parallel rank 0's copy of a whole
 * one; never a mirror) and assembles it at its global shape; path and meta
 * are taken from rank 0. Every rank returns the same code.
 */
int mt_modelfile_write(const mt_comm *c, const char *path, const mt_params *p,
                       const mt_modelfile_meta *meta, mt_err *e);

#endif
