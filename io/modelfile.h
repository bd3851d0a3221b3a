/*
 * modelfile.h - the trained model as an HDF5 file: every weight at its full
 * logical shape under /model/<name> (float32, chunked, Fletcher32), plus the
 * resolved config and identity as attributes. Under any layout (tensor and
 * pipeline parallelism included) rank 0 gathers each tensor from the ranks
 * holding it and writes the file alone; the checkpoint format extends this
 * layout. The weights come as tensor views (io/tensor_view.h).
 */
#ifndef MT_MODELFILE_H
#define MT_MODELFILE_H

#include "base/error.h"
#include "io/tensor_view.h"
#include "parallel/comm.h"

typedef struct {
    const char *config_text; /* resolved INI */
    const char *run_id;
    const char *model_kind;
    long long step;
    const char *mpitrain_version; /* of the writing binary, e.g. "0.1.0" */
    const char *code_commit;      /* git commit it was built from, or "unknown" */
} mt_modelfile_meta;

/*
 * Collective over c->world: writes path atomically (temporary name, fsync,
 * rename). views (n) are the weights, each at its dataset path
 * ("/model/fc1.weight"); every rank lists the same tensors. Rank 0 receives
 * each tensor, one at a time, from the first data-parallel replica's ranks
 * of the stage owning it (every tensor-parallel rank's block of a split
 * tensor, tensor-parallel rank 0's copy of a whole one; never a mirror) and
 * assembles it at its global shape; path and meta are taken from rank 0.
 * Every rank returns the same code.
 */
int mt_modelfile_write(const mt_comm *c, const char *path, const mt_tensor_view *views, int n,
                       const mt_modelfile_meta *meta, mt_err *e);

#endif
