/* mlp.c - MLP forward and backward (see mlp.h). */
#include "mlp.h"

#include <math.h>
#include <string.h>

int mt_mlp_build(mt_mlp *m, const mt_config *cfg, mt_params *p, mt_err *e) {
    memset(m, 0, sizeof *m);
    const mt_cfg_intlist *l = &cfg->model.layers;
    if (l->n < 2) return mt_err_set(e, MT_ERR_USAGE, "model.layers needs at least 2 sizes");
    m->nlayers = l->n - 1;
    m->activation = cfg->model.activation;
    for (int i = 0; i < l->n; i++) m->sizes[i] = (int)l->v[i];
    for (int i = 0; i < m->nlayers; i++) {
        char name[MT_PARAM_NAME_LEN];
        int64_t wshape[2] = {m->sizes[i + 1], m->sizes[i]};
        int64_t bshape[1] = {m->sizes[i + 1]};
        /* PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both. */
        float bound = 1.0f / sqrtf((float)m->sizes[i]);
        snprintf(name, sizeof name, "fc%d.weight", i + 1);
        m->w[i] = mt_params_add(p, name, 2, wshape, 1, MT_INIT_UNIFORM, bound);
        snprintf(name, sizeof name, "fc%d.bias", i + 1);
        m->b[i] = mt_params_add(p, name, 1, bshape, 0, MT_INIT_UNIFORM, bound);
    }
    return MT_OK;
}

int mt_mlp_alloc(mt_mlp *m, const mt_backend *be, int max_batch, mt_err *e) {
    m->max_batch = max_batch;
    int maxw = 0;
    for (int i = 0; i <= m->nlayers; i++) maxw = m->sizes[i] > maxw ? m->sizes[i] : maxw;
    size_t B = (size_t)max_batch;
    for (int i = 0; i < m->nlayers; i++) {
        m->z[i] = be->alloc(B * m->sizes[i + 1]);
        if (i > 0) m->h[i] = be->alloc(B * m->sizes[i]);
        if (!m->z[i] || (i > 0 && !m->h[i]))
            return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for activations");
    }
    m->probs = be->alloc(B * m->sizes[m->nlayers]);
    m->dz = be->alloc(B * maxw);
    m->dh = be->alloc(B * maxw);
    if (!m->probs || !m->dz || !m->dh)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for activations");
    return MT_OK;
}

static void act_forward(const mt_backend *be, int act, float *y, const float *x, size_t n) {
    if (act == MT_ACT_GELU)
        be->gelu_forward(y, x, n);
    else
        be->relu_forward(y, x, n);
}

static void act_backward(const mt_backend *be, int act, float *dx, const float *dy, const float *x,
                         size_t n) {
    if (act == MT_ACT_GELU)
        be->gelu_backward(dx, dy, x, n);
    else
        be->relu_backward(dx, dy, x, n);
}

double mt_mlp_forward(mt_mlp *m, const mt_backend *be, const mt_params *p, const float *x,
                      const int32_t *labels, int B) {
    const float *in = x;
    for (int l = 0; l < m->nlayers; l++) {
        int din = m->sizes[l], dout = m->sizes[l + 1];
        const float *W = p->data + p->v[m->w[l]].offset; /* (dout, din) */
        const float *b = p->data + p->v[m->b[l]].offset; /* (dout) */
        /* z = in (B,din) . W^T (din,dout) + b */
        be->matmul(0, 1, B, dout, din, 1.0f, in, din, W, din, 0.0f, m->z[l], dout);
        be->bias_add(m->z[l], b, B, dout);
        if (l + 1 < m->nlayers) {
            act_forward(be, m->activation, m->h[l + 1], m->z[l], (size_t)B * dout);
            in = m->h[l + 1];
        }
    }
    if (!labels) return 0.0;
    int C = m->sizes[m->nlayers];
    return be->softmax_xent_forward(m->probs, m->z[m->nlayers - 1], labels, B, C);
}

void mt_mlp_backward(mt_mlp *m, const mt_backend *be, mt_params *p, const float *x,
                     const int32_t *labels, int B, float scale, int accumulate) {
    int L = m->nlayers;
    float beta = accumulate ? 1.0f : 0.0f;
    /* dz (B, D_L) = d loss / d logits */
    be->softmax_xent_backward(m->dz, m->probs, labels, B, m->sizes[L], scale);
    for (int l = L - 1; l >= 0; l--) {
        int din = m->sizes[l], dout = m->sizes[l + 1];
        const float *in = l == 0 ? x : m->h[l];
        const float *W = p->data + p->v[m->w[l]].offset;
        float *dW = p->grad + p->v[m->w[l]].offset; /* (dout, din) */
        float *db = p->grad + p->v[m->b[l]].offset; /* (dout) */
        /* dW = dz^T (dout,B) . in (B,din) */
        be->matmul(1, 0, dout, din, B, 1.0f, m->dz, dout, in, din, beta, dW, din);
        be->bias_grad(db, m->dz, B, dout, beta);
        if (l == 0) break;
        /* dh (B,din) = dz (B,dout) . W (dout,din), then through the activation */
        be->matmul(0, 0, B, din, dout, 1.0f, m->dz, dout, W, din, 0.0f, m->dh, din);
        act_backward(be, m->activation, m->dz, m->dh, m->z[l - 1], (size_t)B * din);
    }
}

void mt_mlp_free(mt_mlp *m, const mt_backend *be) {
    for (int i = 0; i < m->nlayers; i++) {
        be->free(m->z[i]);
        if (i > 0) be->free(m->h[i]);
    }
    be->free(m->probs);
    be->free(m->dz);
    be->free(m->dh);
    memset(m, 0, sizeof *m);
}
