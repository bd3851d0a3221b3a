/* stage.c - the model stage a rank runs and its pipeline (see stage.h). */
#include "stage.h"

#include <stdlib.h>
#include <string.h>

/* The activations of slot k (0 = the model itself). */
static mt_mlp *mlp_slot(mt_stage *s, int k) {
    return k == 0 ? &s->mlp : &s->mlp_more[k - 1];
}

static mt_gpt *gpt_slot(mt_stage *s, int k) {
    return k == 0 ? &s->gptm : &s->gpt_more[k - 1];
}

/* Pipeline callback: this stage's forward of micro-batch mb (training) or of
 * the evaluation batch; the last stage adds up the losses and hits. */
static const float *forward(void *ctx, int slot, int mb, const float *in) {
    mt_stage *s = ctx;
    const mt_backend *be = s->be;
    int64_t rows = s->evaluating ? s->n : s->rows, off = s->evaluating ? 0 : mb * s->rows;
    double loss;
    int64_t correct = 0;
    if (s->gpt) {
        mt_gpt *m = gpt_slot(s, slot);
        const int32_t *x = s->tok + off * s->T, *y = s->y + off * s->T;
        mt_gpt_dropout drop = s->drop;
        drop.seq0 += off; /* masks follow the sequence */
        loss = mt_gpt_forward_stage(m, be, s->p, x, in, y, (int)rows, s->T,
                                    s->evaluating ? NULL : &drop);
        if (m->last) correct = be->count_correct(m->logits, y, (int)rows * s->T, s->V);
        s->loss += loss;
        s->correct += (double)correct;
        return m->last ? NULL : mt_gpt_output(m);
    }
    mt_mlp *m = mlp_slot(s, slot);
    const float *x = m->first ? s->x + (size_t)off * (size_t)s->D : in;
    const int32_t *y = s->y + off;
    loss = mt_mlp_forward_stage(m, be, s->p, x, y, (int)rows);
    if (m->last) correct = be->count_correct(m->z[m->nlayers - 1], y, (int)rows, s->C);
    s->loss += loss;
    s->correct += (double)correct;
    return m->last ? NULL : mt_mlp_output(m);
}

/* Pipeline callback: the backward of micro-batch mb, accumulating the gradient. */
static const float *backward(void *ctx, int slot, int mb, const float *in, const float *dout) {
    mt_stage *s = ctx;
    int64_t off = mb * s->rows;
    int acc = s->nbackward++ > 0;
    if (s->gpt) {
        mt_gpt *m = gpt_slot(s, slot);
        mt_gpt_backward_stage(m, s->be, s->p, s->tok + off * s->T, in, s->y + off * s->T, dout,
                              s->scale, acc);
        return mt_gpt_dinput(m);
    }
    mt_mlp *m = mlp_slot(s, slot);
    const float *x = m->first ? s->x + (size_t)off * (size_t)s->D : in;
    mt_mlp_backward_stage(m, s->be, s->p, x, s->y + off, dout, (int)s->rows, s->scale, acc);
    return mt_mlp_dinput(m);
}

/* The pipeline's message sizes for forwards of `rows` rows. */
static void message_rows(mt_stage *s, int64_t rows) {
    if (s->gpt) {
        s->pipe.in_n = s->pipe.out_n = (size_t)rows * (size_t)s->T * (size_t)s->C;
    } else {
        s->pipe.in_n = (size_t)rows * (size_t)mt_mlp_width(&s->mlp, s->mlp.l0);
        s->pipe.out_n = (size_t)rows * (size_t)mt_mlp_width(&s->mlp, s->mlp.l1);
    }
}

static int build_gpt(mt_stage *s, const mt_comm *c, const mt_config *cfg, int nslots, mt_err *e) {
    mt_gpt_config gc = mt_gpt_config_of(cfg);
    gc.act_bf16 = cfg->train.precision == MT_PREC_BF16;
    double block, first, last;
    mt_gpt_costs(&gc, &block, &first, &last);
    double *cost = malloc((size_t)(gc.n_layer > 0 ? gc.n_layer : 1) * sizeof *cost);
    if (!cost) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    for (int l = 0; l < gc.n_layer; l++) cost[l] = block;
    int rc = mt_split_make(&s->sp, c, cfg, gc.n_layer, cost, first, last, e);
    free(cost);
    if (rc || mt_gpt_build_split(&s->gptm, &gc, s->p, &s->sp, e) ||
        mt_params_alloc_on(s->p, s->be, e) ||
        mt_gpt_alloc(&s->gptm, s->be, (int)s->max_rows, s->T, e))
        return e->code;
    s->gpt_more = calloc((size_t)nslots, sizeof *s->gpt_more);
    if (!s->gpt_more) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    for (int k = 1; k < nslots; k++)
        if (mt_gpt_clone(&s->gpt_more[k - 1], &s->gptm, s->be, e)) return e->code;
    return MT_OK;
}

static int build_mlp(mt_stage *s, const mt_comm *c, const mt_config *cfg, int nslots, mt_err *e) {
    int L = cfg->model.layers.n - 1;
    double cost[MT_CFG_LIST_MAX];
    for (int l = 0; l < L; l++) /* parameters of each layer */
        cost[l] = (double)cfg->model.layers.v[l + 1] * (double)(cfg->model.layers.v[l] + 1);
    if (mt_split_make(&s->sp, c, cfg, L, cost, 0.0, 0.0, e) ||
        mt_mlp_build_split(&s->mlp, cfg, s->p, &s->sp, e) || mt_params_alloc_on(s->p, s->be, e) ||
        mt_mlp_alloc(&s->mlp, s->be, (int)s->max_rows, e))
        return e->code;
    s->mlp_more = calloc((size_t)nslots, sizeof *s->mlp_more);
    if (!s->mlp_more) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    for (int k = 1; k < nslots; k++)
        if (mt_mlp_clone(&s->mlp_more[k - 1], &s->mlp, s->be, e)) return e->code;
    return MT_OK;
}

int mt_stage_build(mt_stage *s, const mt_comm *c, const mt_config *cfg, const mt_backend *be,
                   mt_params *p, int64_t rows, int64_t max_rows, int T, mt_err *e) {
    memset(s, 0, sizeof *s);
    s->gpt = cfg->model.kind == MT_MODEL_GPT;
    s->be = be;
    s->p = p;
    s->rows = rows;
    s->max_rows = max_rows > rows ? max_rows : rows;
    s->T = T;
    s->C = (int)(s->gpt ? cfg->model.n_embd : cfg->model.layers.v[cfg->model.layers.n - 1]);
    s->V = (int)cfg->model.vocab_size;
    s->D = (int)cfg->model.layers.v[0];
    mt_pipe *pp = &s->pipe;
    pp->x = &c->xpp; /* ranks of the pipeline group are stages */
    pp->prev = c->pp_rank > 0 ? c->pp_rank - 1 : -1;
    pp->next = c->pp_rank < c->pp_size - 1 ? c->pp_rank + 1 : -1;
    pp->stage = c->pp_rank;
    pp->stages = c->pp_size;
    pp->microbatches = (int)cfg->parallel.microbatches;
    pp->schedule =
        cfg->parallel.schedule == MT_PIPE_GPIPE ? MT_PIPE_SCHED_GPIPE : MT_PIPE_SCHED_1F1B;
    pp->ctx = s;
    pp->be = be;
    pp->forward = forward;
    pp->backward = backward;
    int nslots = s->nslots = mt_pipe_slots(pp->schedule, pp->stage, pp->stages, pp->microbatches);
    if (s->gpt ? build_gpt(s, c, cfg, nslots, e) : build_mlp(s, c, cfg, nslots, e)) return e->code;
    message_rows(s, s->max_rows); /* the largest messages: the buffers hold them */
    if (mt_pipe_init(pp)) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the pipeline");
    return MT_OK;
}

void mt_stage_train(mt_stage *s, const mt_comm *c, const float *x, const int32_t *tok,
                    const int32_t *y, const mt_gpt_dropout *drop, float scale) {
    s->x = x, s->tok = tok, s->y = y;
    if (drop) s->drop = *drop;
    s->scale = scale;
    s->nbackward = 0;
    s->evaluating = 0;
    message_rows(s, s->rows);
    mt_pipe_step(&s->pipe);
    /* the tied embedding: the first stage's and the head's copies of wte take
     * the sum of both gradients, so they stay equal */
    if (s->gpt && c->emb != MPI_COMM_NULL) {
        const mt_param *w = &s->p->v[s->gptm.wte];
        mt_xcomm_sum(&c->xemb, s->p->grad + w->offset, w->numel);
    }
}

void mt_stage_eval(mt_stage *s, const float *x, const int32_t *tok, const int32_t *y, int64_t n) {
    s->x = x, s->tok = tok, s->y = y;
    s->n = n;
    s->evaluating = 1;
    message_rows(s, n);
    mt_pipe_forward_only(&s->pipe, 1);
    s->evaluating = 0;
}

int mt_stage_reports(const mt_stage *s) {
    return s->sp.stage == s->sp.pp - 1 && s->sp.tp_rank == 0;
}

double mt_stage_act_bytes(const mt_stage *s) {
    double stored = 0, scratch = 0;
    if (s->gpt)
        mt_gpt_act_bytes(&s->gptm, &stored, &scratch);
    else
        mt_mlp_act_bytes(&s->mlp, &stored, &scratch);
    const mt_pipe *p = &s->pipe;
    double msgs = (p->prev >= 0 ? (double)p->nslots * (double)p->in_n : 0) +
                  (p->next >= 0 ? (double)p->out_n : 0);
    return stored * p->nslots + scratch + 4.0 * msgs;
}

void mt_stage_free(mt_stage *s) {
    int nslots = s->nslots;
    for (int k = 1; s->mlp_more && k < nslots; k++)
        if (s->mlp_more[k - 1].nlayers) mt_mlp_free(&s->mlp_more[k - 1], s->be);
    for (int k = 1; s->gpt_more && k < nslots; k++)
        if (s->gpt_more[k - 1].block) mt_gpt_free(&s->gpt_more[k - 1], s->be);
    free(s->mlp_more);
    free(s->gpt_more);
    mt_pipe_free(&s->pipe);
    if (s->be && s->mlp.nlayers) mt_mlp_free(&s->mlp, s->be);
    if (s->be && s->gptm.block) mt_gpt_free(&s->gptm, s->be);
    memset(s, 0, sizeof *s);
}
