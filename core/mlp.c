/* mlp.c - MLP forward and backward (see mlp.h). */
#include "mlp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/backends.h"

int mt_mlp_build(mt_mlp *m, const mt_config *cfg, mt_params *p, mt_err *e) {
    mt_split sp;
    mt_split_whole(&sp, cfg->model.layers.n - 1);
    return mt_mlp_build_split(m, cfg, p, &sp, e);
}

int mt_mlp_build_split(mt_mlp *m, const mt_config *cfg, mt_params *p, const mt_split *sp,
                       mt_err *e) {
    memset(m, 0, sizeof *m);
    const mt_cfg_intlist *l = &cfg->model.layers;
    if (l->n < 2) return mt_err_set(e, MT_ERR_USAGE, "model.layers needs at least 2 sizes");
    m->nlayers = l->n - 1;
    m->activation = cfg->model.activation;
    m->fused = cfg->train.fused;
    m->sp = *sp;
    m->l0 = sp->first[sp->stage];
    m->l1 = sp->first[sp->stage + 1];
    m->first = sp->stage == 0;
    m->last = sp->stage == sp->pp - 1;
    m->owns_scratch = 1;
    for (int i = 0; i < l->n; i++) m->sizes[i] = (int)l->v[i];
    for (int i = 0; i < m->nlayers; i++) {
        m->mode[i] = sp->tp == 1          ? MT_TP_WHOLE
                     : i % 2 == 1         ? MT_TP_ROW
                     : i + 1 < m->nlayers ? MT_TP_COLUMN
                                          : MT_TP_WHOLE;
        if (m->mode[i] == MT_TP_COLUMN && m->sizes[i + 1] % sp->tp != 0) {
            mt_err_set(e, MT_ERR_USAGE,
                       "model.layers: width %d of layer %d is not divisible by parallel.tp = %d "
                       "(tensor parallelism splits it over the ranks)",
                       m->sizes[i + 1], i + 1, sp->tp);
            mt_err_hint(e, "choose hidden widths that are multiples of parallel.tp");
            return e->code;
        }
    }
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
        if (m->mode[i] == MT_TP_COLUMN) {
            mt_params_shard(p, m->w[i], 0, 1, sp->tp_rank, sp->tp);
            mt_params_shard(p, m->b[i], 0, 1, sp->tp_rank, sp->tp);
        } else if (m->mode[i] == MT_TP_ROW) {
            mt_params_shard(p, m->w[i], 1, 1, sp->tp_rank, sp->tp);
        }
        int st = mt_split_stage_of(sp, i);
        mt_params_place(p, m->w[i], st, st == sp->stage, 0);
        mt_params_place(p, m->b[i], st, st == sp->stage, 0);
    }
    return MT_OK;
}

/* Widths this rank holds of layer l's output and input. */
static int out_w(const mt_mlp *m, int l) {
    return m->mode[l] == MT_TP_COLUMN ? m->sizes[l + 1] / m->sp.tp : m->sizes[l + 1];
}

static int in_w(const mt_mlp *m, int l) {
    return m->mode[l] == MT_TP_ROW ? m->sizes[l] / m->sp.tp : m->sizes[l];
}

int mt_mlp_width(const mt_mlp *m, int l) {
    return l < m->nlayers ? in_w(m, l) : out_w(m, m->nlayers - 1);
}

static int alloc_stored(mt_mlp *m, const mt_backend *be) {
    size_t B = (size_t)m->max_batch;
    int bad = 0;
    for (int i = m->l0; i < m->l1; i++) {
        bad |= !(m->z[i] = be->alloc(B * (size_t)out_w(m, i)));
        if (i + 1 < m->nlayers) bad |= !(m->h[i + 1] = be->alloc(B * (size_t)out_w(m, i)));
    }
    if (m->last && !m->use_xent) bad |= !(m->probs = be->alloc(B * (size_t)m->sizes[m->nlayers]));
    return bad;
}

int mt_mlp_alloc(mt_mlp *m, const mt_backend *be, int max_batch, mt_err *e) {
    m->max_batch = max_batch;
    m->use_xent = m->fused && mt_backend_has_fused(be, "xent");
    int maxw = 0;
    for (int i = 0; i <= m->nlayers; i++) maxw = m->sizes[i] > maxw ? m->sizes[i] : maxw;
    size_t B = (size_t)max_batch;
    int bad = alloc_stored(m, be);
    m->dz = be->alloc(B * maxw);
    m->dh = be->alloc(B * maxw);
    if (bad || !m->dz || !m->dh)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for activations");
    return MT_OK;
}

int mt_mlp_clone(mt_mlp *dst, const mt_mlp *src, const mt_backend *be, mt_err *e) {
    *dst = *src;
    dst->owns_scratch = 0;
    memset(dst->z, 0, sizeof dst->z);
    memset(dst->h, 0, sizeof dst->h);
    dst->probs = NULL;
    if (alloc_stored(dst, be))
        return mt_err_set(e, MT_ERR_INTERNAL,
                          "out of memory for another micro-batch's activations");
    return MT_OK;
}

void mt_mlp_act_bytes(const mt_mlp *m, double *stored, double *scratch) {
    double B = m->max_batch, n = 0;
    int maxw = 0;
    for (int i = m->l0; i < m->l1; i++) n += (i + 1 < m->nlayers ? 2.0 : 1.0) * B * out_w(m, i);
    if (m->last && !m->use_xent) n += B * m->sizes[m->nlayers];
    for (int i = 0; i <= m->nlayers; i++) maxw = m->sizes[i] > maxw ? m->sizes[i] : maxw;
    *stored = 4.0 * n;
    *scratch = 4.0 * 2.0 * B * maxw;
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
    double *stat = labels ? mt_stat_alloc(be) : NULL;
    if (labels && !stat) return NAN; /* (no memory for two doubles) */
    mt_mlp_forward_stage(m, be, p, x, labels, B, stat);
    return stat ? mt_stat_take(be, stat) : 0.0;
}

void mt_mlp_forward_stage(mt_mlp *m, const mt_backend *be, const mt_params *p, const float *x,
                          const int32_t *labels, int B, double *stat) {
    const float *in = x;
    for (int l = m->l0; l < m->l1; l++) {
        int din = in_w(m, l), dout = out_w(m, l);
        const float *W = p->data + p->v[m->w[l]].offset; /* (dout, din) held here */
        const float *b = p->data + p->v[m->b[l]].offset; /* (dout) */
        /* z = in (B,din) . W^T (din,dout) + b; row-parallel: summed over the ranks first */
        be->matmul(0, 1, B, dout, din, 1.0f, in, din, W, din, 0.0f, m->z[l], dout);
        if (m->mode[l] == MT_TP_ROW) mt_split_tp_sum(&m->sp, m->z[l], (size_t)B * dout);
        be->bias_add(m->z[l], b, B, dout);
        if (l + 1 < m->nlayers) {
            act_forward(be, m->activation, m->h[l + 1], m->z[l], (size_t)B * dout);
            in = m->h[l + 1];
        }
    }
    if (!labels || !stat || !m->last) return;
    int C = m->sizes[m->nlayers];
    float *logits = m->z[m->nlayers - 1];
    if (m->use_xent) { /* the logits become probs - onehot (see the backward) */
        be->xent_fused(logits, labels, B, C, C, stat);
        return;
    }
    double loss = be->softmax_xent_forward(m->probs, logits, labels, B, C, C);
    mt_stat_put(be, stat, loss, (double)be->count_correct(logits, labels, B, C, C));
}

const float *mt_mlp_output(const mt_mlp *m) {
    return m->h[m->l1];
}

const float *mt_mlp_dinput(const mt_mlp *m) {
    return m->dh;
}

void mt_mlp_backward(mt_mlp *m, const mt_backend *be, mt_params *p, const float *x,
                     const int32_t *labels, int B, float scale, int accumulate) {
    mt_mlp_backward_stage(m, be, p, x, labels, NULL, B, scale, accumulate);
}

void mt_mlp_backward_stage(mt_mlp *m, const mt_backend *be, mt_params *p, const float *x,
                           const int32_t *labels, const float *dout, int B, float scale,
                           int accumulate) {
    float beta = accumulate ? 1.0f : 0.0f;
    float *dz = m->dz;            /* the gradient of layer l's output */
    if (m->last && m->use_xent) { /* the forward left probs - onehot in the logits */
        dz = m->z[m->nlayers - 1];
        be->scale(dz, scale, (size_t)B * (size_t)m->sizes[m->nlayers]);
    } else if (m->last) { /* dz (B, D_L) = d loss / d logits */
        be->softmax_xent_backward(m->dz, m->probs, labels, B, m->sizes[m->nlayers],
                                  m->sizes[m->nlayers], scale);
    } else /* through the activation after this stage's last layer */
        act_backward(be, m->activation, m->dz, dout, m->z[m->l1 - 1],
                     (size_t)B * out_w(m, m->l1 - 1));
    for (int l = m->l1 - 1; l >= m->l0; l--) {
        int din = in_w(m, l), dout_w = out_w(m, l);
        const float *in = l == m->l0 ? x : m->h[l];
        const float *W = p->data + p->v[m->w[l]].offset;
        float *dW = p->grad + p->v[m->w[l]].offset; /* (dout, din) */
        float *db = p->grad + p->v[m->b[l]].offset; /* (dout) */
        /* dW = dz^T (dout,B) . in (B,din) */
        be->matmul(1, 0, dout_w, din, B, 1.0f, dz, dout_w, in, din, beta, dW, din);
        be->bias_grad(db, dz, B, dout_w, beta);
        mt_params_grad_final(p, m->w[l]); /* layer l's weight, then its bias */
        if (l == 0) break;
        /* dh (B,din) = dz (B,dout) . W (dout,din); a column-parallel layer's input
         * gradient is the sum of every rank's part */
        be->matmul(0, 0, B, din, dout_w, 1.0f, dz, dout_w, W, din, 0.0f, m->dh, din);
        if (m->mode[l] == MT_TP_COLUMN) mt_split_tp_sum(&m->sp, m->dh, (size_t)B * din);
        if (l == m->l0) break; /* m->dh is d(x), for the previous stage */
        act_backward(be, m->activation, m->dz, m->dh, m->z[l - 1], (size_t)B * din);
        dz = m->dz;
    }
}

void mt_mlp_free(mt_mlp *m, const mt_backend *be) {
    for (int i = 0; i < m->nlayers; i++) {
        if (m->z[i]) be->free(m->z[i]);
        if (m->h[i]) be->free(m->h[i]);
    }
    if (m->probs) be->free(m->probs);
    if (m->owns_scratch) {
        if (m->dz) be->free(m->dz);
        if (m->dh) be->free(m->dh);
    }
    memset(m, 0, sizeof *m);
}

/* ---- the model interface (core/model.h) ---- */

static int op_check(const mt_config *cfg, mt_err *e) {
    if (!cfg->data.path[0]) return mt_err_set(e, MT_ERR_USAGE, "data.path is empty");
    return MT_OK;
}

static void op_rows(const mt_config *cfg, mt_model_rows *r) {
    r->data = MT_DATA_SAMPLES;
    r->x_width = cfg->model.layers.v[0];
    r->y_width = 1;
}

static int op_layers(const mt_config *cfg, double *cost, double *first, double *last) {
    const mt_cfg_intlist *l = &cfg->model.layers;
    for (int i = 0; cost && i < l->n - 1; i++) /* parameters of each layer */
        cost[i] = (double)l->v[i + 1] * (double)(l->v[i] + 1);
    *first = *last = 0.0;
    return l->n - 1;
}

static int op_build(void *m, const mt_config *cfg, const mt_backend *be, mt_params *p,
                    const mt_split *sp, mt_err *e) {
    (void)be;
    return mt_mlp_build_split(m, cfg, p, sp, e);
}

static int op_alloc(void *m, const mt_backend *be, int max_rows, mt_err *e) {
    return mt_mlp_alloc(m, be, max_rows, e);
}

static int op_clone(void *dst, const void *src, const mt_backend *be, mt_err *e) {
    return mt_mlp_clone(dst, src, be, e);
}

static void op_free(void *m, const mt_backend *be) {
    mt_mlp_free(m, be);
}

static size_t op_in_width(const void *m) {
    const mt_mlp *mlp = m;
    return (size_t)mt_mlp_width(mlp, mlp->l0);
}

static size_t op_out_width(const void *m) {
    const mt_mlp *mlp = m;
    return (size_t)mt_mlp_width(mlp, mlp->l1);
}

static void op_forward(void *mv, const mt_backend *be, const mt_params *p, const mt_model_batch *b,
                       const float *in, double *stat) {
    mt_mlp *m = mv;
    mt_mlp_forward_stage(m, be, p, m->first ? (const float *)b->x : in, b->y, b->rows, stat);
}

static const float *op_output(const void *m) {
    const mt_mlp *mlp = m;
    return mlp->last ? NULL : mt_mlp_output(mlp);
}

static void op_backward(void *mv, const mt_backend *be, mt_params *p, const mt_model_batch *b,
                        const float *in, const float *dout, float scale, int accumulate) {
    mt_mlp *m = mv;
    const float *x = m->first ? (const float *)b->x : in;
    mt_mlp_backward_stage(m, be, p, x, b->y, dout, b->rows, scale, accumulate);
}

static const float *op_dinput(const void *m) {
    return mt_mlp_dinput(m);
}

static void op_act_bytes(const void *m, double *stored, double *scratch) {
    mt_mlp_act_bytes(m, stored, scratch);
}

static void op_describe(const mt_config *cfg, const mt_backend *be, char *buf, size_t n) {
    (void)be;
    size_t len = (size_t)snprintf(buf, n, "mlp ");
    for (int i = 0; i < cfg->model.layers.n && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? "-" : "",
                                (long long)cfg->model.layers.v[i]);
    if (len < n)
        snprintf(buf + len, n - len, " %s",
                 mt_config_enum_name("model", "activation", cfg->model.activation));
}

const mt_model_ops mt_mlp_model = {
    .kind = "mlp",
    .size = sizeof(mt_mlp),
    .check = op_check,
    .rows = op_rows,
    .layers = op_layers,
    .build = op_build,
    .alloc = op_alloc,
    .clone = op_clone,
    .free = op_free,
    .in_width = op_in_width,
    .out_width = op_out_width,
    .forward = op_forward,
    .output = op_output,
    .backward = op_backward,
    .dinput = op_dinput,
    .act_bytes = op_act_bytes,
    .describe = op_describe,
    .fused_ops = "xent",
};
