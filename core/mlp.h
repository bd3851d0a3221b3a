/*
 * mlp.h - a multi-layer perceptron with hand-written backward.
 *
 * layers = [D0, D1, ..., DL]: L linear layers, layer l maps D_l -> D_{l+1}
 * (weight "fcN.weight" of shape (D_{l+1}, D_l) as PyTorch stores it, bias
 * "fcN.bias" (D_{l+1})), the activation after every layer but the last,
 * and softmax cross-entropy on the last layer's logits.
 */
#ifndef MT_MLP_H
#define MT_MLP_H

#include <stdint.h>

#include "core/config.h"
#include "core/params.h"
#include "kernels/backend.h"

typedef struct {
    int nlayers;                /* L */
    int sizes[MT_CFG_LIST_MAX]; /* D_0 .. D_L */
    int activation;             /* mt_activation */
    int w[MT_CFG_LIST_MAX - 1]; /* param index of each weight */
    int b[MT_CFG_LIST_MAX - 1]; /* param index of each bias */
    int max_batch;
    float *z[MT_CFG_LIST_MAX - 1]; /* (B, D_{l+1}) pre-activation outputs; z[L-1] = logits */
    float *h[MT_CFG_LIST_MAX];     /* (B, D_l) inputs of layer l, l >= 1 (h[0] = the batch) */
    float *probs;                  /* (B, D_L) softmax of the logits */
    float *dz, *dh;                /* (B, max D) scratch gradients */
} mt_mlp;

/* Registers the parameters of the MLP in cfg->model.layers into p. */
int mt_mlp_build(mt_mlp *m, const mt_config *cfg, mt_params *p, mt_err *e);
/* Allocates activation buffers for batches of up to max_batch rows. */
int mt_mlp_alloc(mt_mlp *m, const mt_backend *be, int max_batch, mt_err *e);
/* Forward over x (B, D_0); with labels, returns the SUM of the B losses
 * (probs filled), else 0. Logits are left in m->z[L-1]. */
double mt_mlp_forward(mt_mlp *m, const mt_backend *be, const mt_params *p, const float *x,
                      const int32_t *labels, int B);
/* Backward of the last forward: grad (+)= d(scale * sum of losses)/d params.
 * accumulate = 0 overwrites p->grad, 1 adds to it (gradient accumulation). */
void mt_mlp_backward(mt_mlp *m, const mt_backend *be, mt_params *p, const float *x,
                     const int32_t *labels, int B, float scale, int accumulate);
void mt_mlp_free(mt_mlp *m, const mt_backend *be);

#endif
