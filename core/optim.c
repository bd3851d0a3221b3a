/* optim.c - AdamW and SGD with momentum (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backends.h"

int mt_optim_init(mt_optim *o, const mt_config *cfg, const mt_params *p, const mt_backend *be,
                  const mt_zero_piece *shard, mt_err *e) {
    memset(o, 0, sizeof *o);
    o->kind = cfg->optim.kind;
    o->beta1 = (float)cfg->optim.beta1;
    o->beta2 = (float)cfg->optim.beta2;
    o->eps = (float)cfg->optim.eps;
    o->momentum = (float)cfg->optim.momentum;
    o->weight_decay = (float)cfg->optim.weight_decay;
    o->shard = shard;
    o->numel = p->numel;
    if (shard) { /* the pieces are consecutive in the shard */
        o->numel = 0;
        for (int i = 0; i < p->n; i++) o->numel = shard[i].pos + shard[i].n;
    }
    o->gscale = 1.0f;
    o->multi =
        cfg->train.fused && o->kind == MT_OPTIM_ADAMW && mt_backend_has_fused(be, "adamw_multi");
    if (o->multi) {
        o->seg_p = malloc((size_t)p->n * sizeof *o->seg_p);
        o->seg_s = malloc((size_t)p->n * sizeof *o->seg_s);
        o->seg_n = malloc((size_t)p->n * sizeof *o->seg_n);
        o->seg_wd = malloc((size_t)p->n * sizeof *o->seg_wd);
        if (!o->seg_p || !o->seg_s || !o->seg_n || !o->seg_wd)
            return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for optimizer state");
        for (int i = 0; i < p->n; i++) { /* as mt_optim_step's loop, empty pieces left out */
            const mt_param *t = &p->v[i];
            size_t n = shard ? shard[i].n : t->numel;
            if (!n) continue;
            o->seg_p[o->nseg] = shard ? shard[i].off : t->offset;
            o->seg_s[o->nseg] = shard ? shard[i].pos : t->offset;
            o->seg_n[o->nseg] = n;
            o->seg_wd[o->nseg] = t->decay ? o->weight_decay : 0.0f;
            o->nseg++;
        }
    }
    o->m = be->alloc(o->numel);
    if (o->kind == MT_OPTIM_ADAMW) o->v = be->alloc(o->numel);
    if (!o->m || (o->kind == MT_OPTIM_ADAMW && !o->v))
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for optimizer state");
    return MT_OK;
}

void mt_optim_clip(mt_optim *o, const mt_params *p, const mt_backend *be, double norm,
                   double max_norm) {
    if (!(max_norm > 0.0 && norm > max_norm)) return;
    float s = (float)(max_norm / norm);
    if (o->multi) {
        o->gscale = s;
        return;
    }
    if (!o->shard) {
        be->scale(p->grad, s, p->numel);
        return;
    }
    for (int i = 0; i < p->n; i++)
        if (o->shard[i].n) be->scale(p->grad + o->shard[i].off, s, o->shard[i].n);
}

void mt_optim_step(mt_optim *o, mt_params *p, const mt_backend *be, float lr) {
    o->t++;
    float bc1 = (float)(1.0 - pow(o->beta1, (double)o->t));
    float bc2 = (float)(1.0 - pow(o->beta2, (double)o->t));
    if (o->multi) {
        be->adamw_multi(p->data, p->grad, o->m, o->v, o->nseg, o->seg_p, o->seg_s, o->seg_n,
                        o->seg_wd, o->gscale, lr, o->beta1, o->beta2, o->eps, bc1, bc2);
        o->gscale = 1.0f;
        return;
    }
    for (int i = 0; i < p->n; i++) {
        const mt_param *t = &p->v[i];
        float wd = t->decay ? o->weight_decay : 0.0f;
        /* the parameter's elements [at, at + n) of the flat buffers, state at s */
        size_t at = o->shard ? o->shard[i].off : t->offset, n = o->shard ? o->shard[i].n : t->numel;
        size_t s = o->shard ? o->shard[i].pos : t->offset;
        if (!n) continue;
        float *x = p->data + at;
        const float *g = p->grad + at;
        if (o->kind == MT_OPTIM_ADAMW)
            be->adamw_update(x, g, o->m + s, o->v + s, n, lr, o->beta1, o->beta2, o->eps, wd, bc1,
                             bc2);
        else
            be->sgd_update(x, g, o->m + s, n, lr, o->momentum, wd);
    }
}

void mt_optim_free(mt_optim *o, const mt_backend *be) {
    be->free(o->m);
    be->free(o->v);
    free(o->seg_p), free(o->seg_s), free(o->seg_n), free(o->seg_wd);
    memset(o, 0, sizeof *o);
}

double mt_lr_at(const mt_config *cfg, int64_t step) {
    double lr = cfg->optim.lr;
    int64_t warm = cfg->optim.warmup_steps;
    if (step < warm) return lr * (double)(step + 1) / (double)warm;
    if (cfg->optim.schedule == MT_SCHED_CONSTANT) return lr;
    /* cosine from lr (first step after warmup) to min_lr (last step) */
    int64_t span = cfg->train.steps - 1 - warm;
    double progress = span > 0 ? (double)(step - warm) / (double)span : 1.0;
    if (progress > 1.0) progress = 1.0;
    double min_lr = cfg->optim.min_lr;
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * progress));
}
