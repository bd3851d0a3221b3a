/*
 * mlp.h - a multi-layer perceptron with hand-written backward.
 *
 * layers = [D0, D1, ..., DL]: L linear layers, layer l maps D_l -> D_{l+1}
 * (weight "fcN.weight" of shape (D_{l+1}, D_l) as PyTorch stores it, bias
 * "fcN.bias" (D_{l+1})), the activation after every layer but the last,
 * and softmax cross-entropy on the last layer's logits.
 *
 * Model parallelism (core/split.h): a pipeline stage runs layers [l0, l1).
 * Tensor parallelism pairs consecutive layers Megatron-style: layer 1 is
 * column-parallel (each rank computes a slice of its outputs), layer 2
 * row-parallel (each rank multiplies its slice of the inputs; one
 * all-reduce of the outputs, then the bias), and so on; with an odd number
 * of layers the last one is replicated (every rank computes it whole). A
 * stage boundary may fall inside a pair: a rank then sends its slice.
 */
#ifndef MT_MLP_H
#define MT_MLP_H

#include <stdint.h>

#include "core/config.h"
#include "core/model.h"
#include "core/params.h"
#include "core/split.h"
#include "kernels/backend.h"

enum { MT_TP_WHOLE = 0, MT_TP_COLUMN = 1, MT_TP_ROW = 2 };

typedef struct {
    mt_split sp;
    int l0, l1, first, last;    /* this stage's layers; first / last stage */
    int mode[MT_CFG_LIST_MAX];  /* MT_TP_* of each layer */
    int owns_scratch;           /* 0 for a clone, which shares the scratch gradients */
    int nlayers;                /* L */
    int sizes[MT_CFG_LIST_MAX]; /* D_0 .. D_L */
    int activation;             /* mt_activation */
    int w[MT_CFG_LIST_MAX - 1]; /* param index of each weight */
    int b[MT_CFG_LIST_MAX - 1]; /* param index of each bias */
    int max_batch;
    float *z[MT_CFG_LIST_MAX - 1]; /* (B, D_{l+1}) pre-activation outputs; z[L-1] = logits */
    float *h[MT_CFG_LIST_MAX];     /* (B, D_l) inputs of layer l, l >= 1 (h[0] = the batch) */
    float *probs;                  /* (B, D_L) softmax of the logits (NULL with use_xent) */
    int fused;                     /* train.fused */
    int use_xent;   /* fused and the backend has xent_fused: logits become their gradient */
    float *dz, *dh; /* (B, max D) scratch gradients */
} mt_mlp;

/* Registers the parameters of the MLP in cfg->model.layers into p. */
int mt_mlp_build(mt_mlp *m, const mt_config *cfg, mt_params *p, mt_err *e);
/* The same, sharded and placed for this rank of split sp (MT_ERR_USAGE when
 * sp->tp does not divide the width of a column-parallel layer). */
int mt_mlp_build_split(mt_mlp *m, const mt_config *cfg, mt_params *p, const mt_split *sp,
                       mt_err *e);
/* Allocates activation buffers for batches of up to max_batch rows. */
int mt_mlp_alloc(mt_mlp *m, const mt_backend *be, int max_batch, mt_err *e);
/* dst: src with its own stored activations and src's scratch gradients. */
int mt_mlp_clone(mt_mlp *dst, const mt_mlp *src, const mt_backend *be, mt_err *e);
/* Bytes of stored activations (one micro-batch) and of scratch. */
void mt_mlp_act_bytes(const mt_mlp *m, double *stored, double *scratch);
/* Width this rank holds of the input of layer l (l = L: of the logits). */
int mt_mlp_width(const mt_mlp *m, int l);
/* One stage's forward of B rows: x is the data (first stage) or the
 * previous stage's output (B, mt_mlp_width(l0)); on the last stage with
 * labels and stat, the SUM of the losses and the labels the arg-max hits
 * into stat (backend memory, 2 doubles; core/model.h's forward). Other
 * stages' output: mt_mlp_output. */
void mt_mlp_forward_stage(mt_mlp *m, const mt_backend *be, const mt_params *p, const float *x,
                          const int32_t *labels, int B, double *stat);
const float *mt_mlp_output(const mt_mlp *m);
/* Backward of this stage's last forward; dout (B, width(l1)) is the
 * gradient of its output (not on the last stage). Stages after the first
 * leave d(x) in mt_mlp_dinput. */
void mt_mlp_backward_stage(mt_mlp *m, const mt_backend *be, mt_params *p, const float *x,
                           const int32_t *labels, const float *dout, int B, float scale,
                           int accumulate);
const float *mt_mlp_dinput(const mt_mlp *m);
/* Forward over x (B, D_0); with labels, returns the SUM of the B losses
 * (probs filled), else 0. Logits are left in m->z[L-1]. */
double mt_mlp_forward(mt_mlp *m, const mt_backend *be, const mt_params *p, const float *x,
                      const int32_t *labels, int B);
/* Backward of the last forward: grad (+)= d(scale * sum of losses)/d params.
 * accumulate = 0 overwrites p->grad, 1 adds to it (gradient accumulation). */
void mt_mlp_backward(mt_mlp *m, const mt_backend *be, mt_params *p, const float *x,
                     const int32_t *labels, int B, float scale, int accumulate);
void mt_mlp_free(mt_mlp *m, const mt_backend *be);

/* The MLP behind the model interface (core/model.h): trains on samples. */
extern const mt_model_ops mt_mlp_model;

#endif
