/* stage.c - the model stage a rank runs and its pipeline (see stage.h). */
#include "stage.h"
#include "core/models.h"
#include "parallel/watchdog.h"

#include <stdlib.h>
#include <string.h>

/* The model instance of activation slot k. */
static void *slot(const mt_stage *s, int k) {
    return s->slots + (size_t)k * s->ops->size;
}

/* The rows micro-batch mb of the batch being run covers (training), or the
 * whole evaluation batch. */
static mt_model_batch rows_of(const mt_stage *s, int mb) {
    mt_model_batch b = s->batch;
    if (!b.train) return b;
    int64_t off = mb * s->rows;
    b.x = (const char *)b.x + (size_t)off * (size_t)s->shape.x_width * 4; /* 4-byte elements */
    b.y = b.y + (size_t)off * (size_t)s->shape.y_width;
    b.rows = (int)s->rows;
    b.row0 += off; /* randomness follows the row */
    return b;
}

/* Pipeline callback: this stage's forward of micro-batch mb (training) or of
 * the evaluation batch; the last stage writes its loss and hits into the
 * micro-batch's slot of the step's statistics (slot 0 for evaluation). */
static const float *forward(void *ctx, int k, int mb, const float *in) {
    mt_stage *s = ctx;
    mt_model_batch b = rows_of(s, mb);
    s->ops->forward(slot(s, k), s->be, s->p, &b, in,
                    mt_step_stats_slot(s->stats, b.train ? mb : 0));
    return s->ops->output(slot(s, k));
}

/* Pipeline callback: the backward of micro-batch mb, accumulating the gradient. */
static const float *backward(void *ctx, int k, int mb, const float *in, const float *dout) {
    mt_stage *s = ctx;
    mt_model_batch b = rows_of(s, mb);
    int acc = s->nbackward++ > 0;
    if (s->deterministic) { /* its own buffer, overwritten; the tree sums them */
        float *grad = s->p->grad;
        s->p->grad = mt_gradtree_leaf(&s->tree, mb);
        s->ops->backward(slot(s, k), s->be, s->p, &b, in, dout, s->scale, 0);
        s->p->grad = grad;
        mt_gradtree_done(&s->tree);
    } else {
        if (s->nbackward == s->pipe.microbatches) /* the last: gradients become final */
            s->p->grad_ready = s->grad_ready, s->p->grad_ready_ctx = s->grad_ready_ctx;
        s->ops->backward(slot(s, k), s->be, s->p, &b, in, dout, s->scale, acc);
        s->p->grad_ready = NULL;
    }
    return s->ops->dinput(slot(s, k));
}

/* The pipeline's message sizes for forwards of `rows` rows. */
static void message_rows(mt_stage *s, int64_t rows) {
    s->pipe.in_n = (size_t)rows * s->ops->in_width(slot(s, 0));
    s->pipe.out_n = (size_t)rows * s->ops->out_width(slot(s, 0));
}

/* Splits the model's layers over the stages (balanced by parameter count
 * unless parallel.stage_layers says), builds this rank's part of it,
 * allocates the parameters and one instance of activations per slot. */
static int build_model(mt_stage *s, const mt_comm *c, const mt_config *cfg, mt_err *e) {
    double first, last;
    int n = s->ops->layers(cfg, NULL, &first, &last);
    double *cost = malloc((size_t)(n > 0 ? n : 1) * sizeof *cost);
    if (!cost) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    s->ops->layers(cfg, cost, &first, &last);
    int rc = mt_split_make(&s->sp, c, cfg, n, cost, first, last, e);
    free(cost);
    s->slots = calloc((size_t)s->nslots, s->ops->size);
    if (!rc && !s->slots) rc = mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    if (rc || s->ops->build(slot(s, 0), cfg, s->be, s->p, &s->sp, e) ||
        mt_params_alloc_on(s->p, s->be, e) || s->ops->alloc(slot(s, 0), s->be, (int)s->max_rows, e))
        return e->code;
    for (int k = 1; k < s->nslots; k++)
        if (s->ops->clone(slot(s, k), slot(s, 0), s->be, e)) return e->code;
    if (s->deterministic)
        return mt_gradtree_init(&s->tree, s->be, s->p->grad, s->p->numel,
                                (int)cfg->parallel.microbatches, e);
    return MT_OK;
}

int mt_stage_build(mt_stage *s, const mt_comm *c, const mt_config *cfg, const mt_backend *be,
                   mt_params *p, int64_t rows, int64_t max_rows, mt_err *e) {
    memset(s, 0, sizeof *s);
    s->ops = mt_model_of(cfg);
    if (!s->ops) return mt_err_set(e, MT_ERR_INTERNAL, "no model for model.kind");
    s->ops->rows(cfg, &s->shape);
    s->be = be;
    s->p = p;
    s->rows = rows;
    s->max_rows = max_rows > rows ? max_rows : rows;
    s->deterministic = cfg->parallel.deterministic;
    s->world = c->world;
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
    s->nslots = mt_pipe_slots(pp->schedule, pp->stage, pp->stages, pp->microbatches);
    if (build_model(s, c, cfg, e)) return e->code;
    message_rows(s, s->max_rows); /* the largest messages: the buffers hold them */
    if (mt_pipe_init(pp)) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the pipeline");
    return MT_OK;
}

void mt_stage_train(mt_stage *s, const mt_model_batch *b, float scale) {
    s->batch = *b;
    s->batch.train = 1;
    s->scale = scale;
    s->nbackward = 0;
    mt_params_to_bf16(s->p, s->be); /* (the last step's update; nothing without bf16 products) */
    if (s->deterministic) mt_gradtree_begin(&s->tree);
    message_rows(s, s->rows);
    mt_pipe_step(&s->pipe);
}

void mt_stage_collect(mt_stage *s) {
    mt_pipe_collect(&s->pipe);               /* the busy time, on a device */
    if (s->sp.stage != s->sp.pp - 1) return; /* (only the last stage has losses) */
    /* in micro-batch order, as the forwards ran */
    for (int mb = 0; mb < s->pipe.microbatches; mb++) {
        const double *h = mt_step_stats_host_slot(s->stats, mb); /* (loss sum, hits) */
        if (s->deterministic)                                    /* summed in the gradient's tree */
            mt_gradtree_add_loss(&s->tree, h[0]);
        else
            s->loss += h[0];
        s->correct += h[1];
    }
    if (s->deterministic) s->loss += mt_gradtree_loss(&s->tree);
}

void mt_stage_use_stats(mt_stage *s, mt_step_stats *stats) {
    s->stats = stats;
}

void mt_stage_on_grad_ready(mt_stage *s, mt_grad_ready_fn fn, void *ctx) {
    s->grad_ready = fn;
    s->grad_ready_ctx = ctx;
}

void mt_stage_eval_begin(mt_stage *s) {
    mt_params_to_bf16(s->p, s->be); /* (the last step's update; nothing without bf16 products) */
}

void mt_stage_eval(mt_stage *s, const mt_model_batch *b) {
    s->batch = *b;
    s->batch.train = 0;
    message_rows(s, b->rows);
    mt_pipe_forward_only(&s->pipe, 1);
    /* every stage waits for the forward's device work (under the watchdog's
     * deadline): the pinned batch rows are rewritten for the next one, and
     * its NCCL exchanges are covered */
    mt_watchdog_wait_device(s->be, "an evaluation forward's device work", s->world, 1);
    if (s->sp.stage != s->sp.pp - 1) return;
    mt_step_stats_read_slot(s->stats, 0);
    s->loss += mt_step_stats_host_slot(s->stats, 0)[0];
    s->correct += mt_step_stats_host_slot(s->stats, 0)[1];
}

int mt_stage_reports(const mt_stage *s) {
    return s->sp.stage == s->sp.pp - 1 && s->sp.tp_rank == 0;
}

double mt_stage_act_bytes(const mt_stage *s) {
    double stored = 0, scratch = 0;
    s->ops->act_bytes(slot(s, 0), &stored, &scratch);
    const mt_pipe *p = &s->pipe;
    double msgs = (p->prev >= 0 ? (double)p->nslots * (double)p->in_n : 0) +
                  (p->next >= 0 ? (double)p->out_n : 0);
    return stored * p->nslots + scratch + 4.0 * msgs;
}

void mt_stage_free(mt_stage *s) {
    /* clones first: they share slot 0's scratch */
    for (int k = s->nslots - 1; s->slots && k >= 0; k--) s->ops->free(slot(s, k), s->be);
    free(s->slots);
    if (s->deterministic) mt_gradtree_free(&s->tree);
    mt_pipe_free(&s->pipe);
    memset(s, 0, sizeof *s);
}
