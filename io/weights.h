/*
 * weights.h - the trained weights of a checkpoint or a model file read
 * whole into memory on one process, for tools that take a model out of
 * mpitrain (mpitrain export). Both files hold every weight at its full
 * logical shape under /model/<name> (float32, Fletcher32) and the resolved
 * config: a checkpoint (docs/CHECKPOINT_FORMAT.md) is checked completely
 * first (mt_ckpt_verify: its .sha256, structure, every checksum); a model
 * file (a run folder's model.h5, io/modelfile.h) has no .sha256, so its
 * check is the format attribute and every tensor's Fletcher32 as it is read.
 */
#ifndef MT_WEIGHTS_H
#define MT_WEIGHTS_H

#include <stdint.h>

#include "base/error.h"
#include "io/tensor_view.h"

typedef struct {
    char name[MT_VIEW_NAME_LEN]; /* "fc1.weight", "h.0.attn.c_attn.weight" (no /model/) */
    int ndim;
    int64_t shape[MT_VIEW_MAX_DIMS];
    float *data; /* (shape) row-major, as stored */
} mt_weight;

typedef struct {
    int is_checkpoint; /* 1: a checkpoint, 0: a model file */
    char *config_text; /* the resolved config (INI) */
    char model_kind[16];
    char run_id[40];
    int64_t step;
    int n;
    mt_weight *w; /* (n) in the file's order (by name) */
} mt_weights;

/* Reads every /model tensor of path, a checkpoint or a model file. Errors
 * are MT_ERR_CKPT naming the file and what is wrong with it. */
int mt_weights_read(const char *path, mt_weights *w, mt_err *e);
/* The tensor called name, or NULL. */
const mt_weight *mt_weights_find(const mt_weights *w, const char *name);
void mt_weights_free(mt_weights *w);

#endif
