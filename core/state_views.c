/*
 * state_views.c - tensor views over the parameters and optimizer state (see
 * state_views.h): the one place that knows both core's flat buffers
 * (mt_param's offset and numel in params->data, optim->m, optim->v) and
 * what io/ needs to lay them out in a file.
 */
#include "core/state_views.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

/* io/ stores what core registers: the dims and names must fit its views. */
_Static_assert(MT_PARAM_MAX_DIMS <= MT_VIEW_MAX_DIMS, "a parameter has more dims than a view");
_Static_assert(MT_PARAM_NAME_LEN <= MT_VIEW_NAME_LEN, "a parameter name is longer than a view's");
/* the model's name goes to mt_ckpt_meta.run_name */
_Static_assert(MT_CFG_STR_LEN <= MT_CKPT_STR_LEN, "a config string is longer than a meta string");

const char *mt_state_optim_kind(const mt_optim *o) {
    return mt_config_enum_name("optim", "kind", o->kind);
}

mt_ckpt_hyper mt_state_hyper(const mt_optim *o) {
    mt_ckpt_hyper h = {o->beta1, o->beta2, o->eps, o->momentum, o->weight_decay};
    return h;
}

/* The view of tensor t with its values at base + t->offset, as dataset
 * "<group>/<name>". */
static int view_of(const mt_param *t, const char *group, float *base, mt_tensor_view *v,
                   mt_err *e) {
    memset(v, 0, sizeof *v);
    int len = snprintf(v->path, sizeof v->path, "%s/%s", group, t->name);
    if (len < 0 || (size_t)len >= sizeof v->path)
        return mt_err_set(e, MT_ERR_INTERNAL, "tensor path %s/%s is too long", group, t->name);
    v->ndim = t->ndim;
    memcpy(v->shape, t->shape, sizeof t->shape);
    v->shard_dim = t->shard_dim;
    v->shard_parts = t->shard_parts;
    v->shard_offset = t->shard_offset;
    v->shard_len = t->shard_len;
    v->stage = t->stage;
    v->held = t->local;
    v->mirror = t->mirror;
    /* a holder holds its whole block (mt_param_block_numel: numel less the
     * pad rows, which follow the block and are in no file) */
    v->begin = 0;
    v->count = t->local ? (int64_t)mt_param_block_numel(t) : 0;
    v->data = t->local ? base + t->offset : NULL;
    return MT_OK;
}

int mt_state_views_build(mt_state_views *sv, mt_params *p, mt_optim *o, mt_err *e) {
    memset(sv, 0, sizeof *sv);
    if (p->be)
        return mt_err_set(e, MT_ERR_INTERNAL,
                          "tensor views need the parameters in host memory, not %s memory",
                          p->be->name);
    const char *states[MT_CKPT_MAX_STATES];
    int ns = o ? mt_ckpt_state_names(mt_state_optim_kind(o), states) : 0;
    if (ns < 0)
        return mt_err_set(e, MT_ERR_INTERNAL, "no checkpoint names for optimizer kind %d", o->kind);
    sv->v = calloc((size_t)(p->n * (1 + ns)) + 1, sizeof *sv->v);
    if (!sv->v) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for tensor views");
    for (int i = 0; i < p->n && !e->code; i++)
        view_of(&p->v[i], "/model", p->data, &sv->v[sv->n++], e);
    sv->n_model = sv->n;
    /* state s of the kind lives in o->m (AdamW's m, SGD's momentum), then o->v */
    for (int s = 0; s < ns && !e->code; s++) {
        char group[MT_VIEW_PATH_LEN];
        snprintf(group, sizeof group, "/optim/%s", states[s]);
        for (int i = 0; i < p->n && !e->code; i++) {
            mt_tensor_view *v = &sv->v[sv->n++];
            float *base = s == 0 ? o->m : o->v;
            view_of(&p->v[i], group, base, v, e);
            v->dp_shard = o->shard != NULL;
            if (o->shard && v->held) { /* ZeRO-1: the shard's rows, at pos */
                const mt_zero_piece *pc = &o->shard[i];
                v->begin = (int64_t)(pc->off - p->v[i].offset);
                v->count = (int64_t)pc->n;
                v->data = base + pc->pos;
            }
        }
    }
    if (e->code) mt_state_views_free(sv);
    return e->code;
}

int mt_state_zero_pieces(const mt_params *p, const mt_comm *c, mt_zero_piece **pieces, mt_err *e) {
    int dp = c->dp_size;
    *pieces = calloc((size_t)dp * (size_t)(p->n ? p->n : 1), sizeof **pieces);
    if (!*pieces) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the ZeRO-1 shards");
    for (int k = 0; k < dp; k++) {
        size_t pos = 0;
        for (int i = 0; i < p->n; i++) {
            const mt_param *t = &p->v[i];
            mt_zero_piece *pc = &(*pieces)[(size_t)k * p->n + i];
            mt_tensor_view v;
            if (view_of(t, "/optim", p->data, &v, e)) return e->code;
            v.dp_shard = 1;
            int64_t lo = 0, hi = 0, row = 0;
            if (t->local) mt_ckpt_dp_rows(&v, dp, c->tp_size, k, &lo, &hi, &row);
            pc->off = t->offset + (size_t)(lo * row);
            pc->n = (size_t)((hi - lo) * row);
            pc->pos = pos;
            pc->tensor = i;
            pos += pc->n;
        }
    }
    return MT_OK;
}

void mt_state_views_free(mt_state_views *sv) {
    free(sv->v);
    memset(sv, 0, sizeof *sv);
}
