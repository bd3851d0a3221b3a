/*
 * model.h - the one interface every model provides: a table of operations,
 * as ggml hides its backends behind one (docs/ARCHITECTURE.md, "Adding a
 * model"). The stage (core/stage.c), the trainer and the checkpoint
 * commands call only this table; they never ask which model it is.
 *
 * A model instance (ops->size bytes, opaque) is one pipeline stage's share
 * of the model on this rank (core/split.h): the indices of its parameters
 * in the flat buffers (core/params.h) and ONE micro-batch's stored
 * activations. A pipeline holding several micro-batches in flight clones
 * the instance: clones share the parameters and the scratch gradients and
 * keep activations of their own.
 *
 * A batch is `rows` rows; a row is x_width input elements (float features
 * or int32 token ids, 4 bytes each) and y_width int32 labels (a class, or
 * a next token per position). The loss is summed over labels, so a step's
 * mean divides by rows x y_width. Stages exchange activations of
 * in_width / out_width floats per row.
 */
#ifndef MT_MODEL_H
#define MT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "core/config.h"
#include "core/params.h"
#include "core/split.h"
#include "core/step_stats.h"
#include "kernels/backend.h"

/* What a model trains on: where its batches come from (core/batches.h). */
typedef enum {
    MT_DATA_SAMPLES = 0, /* fixed-size float feature vectors with a class label (HDF5) */
    MT_DATA_TOKENS = 1,  /* windows of a token stream with their next tokens (llm.c shards) */
} mt_data_kind;

/* The shape of one row of a batch. */
typedef struct {
    mt_data_kind data;
    int64_t x_width; /* input elements per row: features, or tokens of a sequence */
    int64_t y_width; /* labels per row: 1 class, or a next token per position */
} mt_model_rows;

/* Rows of one forward, in the backend's memory, and where they sit in the
 * training order: randomness (dropout masks) follows the global row index,
 * so a row gets the same masks whichever rank holds it. */
typedef struct {
    const void *x;    /* (rows, x_width) float features or int32 tokens */
    const int32_t *y; /* (rows, y_width) labels; NULL: no loss */
    int rows;
    int train;     /* 0: evaluation (no dropout) */
    uint64_t seed; /* run.seed */
    uint64_t step; /* the training step */
    int64_t row0;  /* global index of the first row (epoch * rows per epoch + position) */
} mt_model_batch;

typedef struct mt_model_ops {
    const char *kind; /* model.kind */
    size_t size;      /* bytes of one instance */
    /* The model's own rules on cfg (the data it needs, its shape), after
     * mt_config_validate: MT_ERR_USAGE naming the key. */
    int (*check)(const mt_config *cfg, mt_err *e);
    /* The rows this model reads under cfg. */
    void (*rows)(const mt_config *cfg, mt_model_rows *r);
    /* Layers for pipeline balancing: returns their count; cost (when not
     * NULL, room for the count) gets each layer's parameter count, first
     * and last what only the first and the last stage hold (embeddings, head). */
    int (*layers)(const mt_config *cfg, double *cost, double *first, double *last);
    /* Registers, shards and places every tensor into p for this rank of sp
     * (p initialised, not allocated). MT_ERR_USAGE for a shape the split
     * cannot take. Tensors whose gradient must equal another stage's copy
     * are marked tied (core/params.h). be: the backend the model will
     * compute with, for its preferences (vocab_align); NULL for tools that
     * only lay out or read files. */
    int (*build)(void *m, const mt_config *cfg, const mt_backend *be, mt_params *p,
                 const mt_split *sp, mt_err *e);
    /* Activations for forwards of up to max_rows rows (after build). */
    int (*alloc)(void *m, const mt_backend *be, int max_rows, mt_err *e);
    /* dst: src with activations of its own (a micro-batch in flight). */
    int (*clone)(void *dst, const void *src, const mt_backend *be, mt_err *e);
    void (*free)(void *m, const mt_backend *be);
    /* Floats per row of this stage's input (from the previous stage) and output. */
    size_t (*in_width)(const void *m);
    size_t (*out_width)(const void *m);
    /* This stage's forward: the batch's rows on the first stage, else in
     * (rows, in_width) from the previous one. On the last stage with labels
     * and stat: stat[0] = the SUM of the losses, stat[1] = the labels the
     * model's top guess hits, written in the backend's memory (2 doubles,
     * overwritten, MT_STAT_FLOATS; the host reads them when it needs them,
     * once per step: core/step_stats.h); elsewhere stat is left alone and
     * the output is output(m). */
    void (*forward)(void *m, const mt_backend *be, const mt_params *p, const mt_model_batch *b,
                    const float *in, double *stat);
    const float *(*output)(const void *m); /* (rows, out_width), until the next forward */
    /* Backward of this instance's last forward: p->grad (+)= d(scale * loss
     * sum)/d params (accumulate 0 overwrites); dout (rows, out_width) is the
     * gradient of the output (NULL on the last stage). Stages after the
     * first leave d(in) in dinput(m). */
    void (*backward)(void *m, const mt_backend *be, mt_params *p, const mt_model_batch *b,
                     const float *in, const float *dout, float scale, int accumulate);
    const float *(*dinput)(const void *m);
    /* Bytes of stored activations (one micro-batch) and of scratch. */
    void (*act_bytes)(const void *m, double *stored, double *scratch);
    /* One line for the run's header: "gpt 4 layers, 4 heads, ...". */
    void (*describe)(const mt_config *cfg, const mt_backend *be, char *buf, size_t n);
    /* The fused ops (kernels/backend.h) the model calls with train.fused
     * where the backend has them, by the names of mt_backend_has_fused,
     * space-separated; NULL or "" for none. */
    const char *fused_ops;
    /* Whether the model under cfg (train.fused) on be runs fused op `op`
     * of fused_ops: 1 it does, 0 it would but be lacks it (the unfused ops
     * run), -1 the op does not apply under cfg (bf16 products in an fp32
     * run). NULL: mt_backend_has_fused(be, op). */
    int (*runs_fused)(const mt_config *cfg, const mt_backend *be, const char *op);
} mt_model_ops;

#endif
