/* optim.c - AdamW and SGD with momentum (see optim.h). */
#include "optim.h"

#include <math.h>
#include <string.h>

int mt_optim_init(mt_optim *o, const mt_config *cfg, const mt_params *p, const mt_backend *be,
                  mt_err *e) {
    memset(o, 0, sizeof *o);
    o->kind = cfg->optim.kind;
    o->beta1 = (float)cfg->optim.beta1;
    o->beta2 = (float)cfg->optim.beta2;
    o->eps = (float)cfg->optim.eps;
    o->momentum = (float)cfg->optim.momentum;
    o->weight_decay = (float)cfg->optim.weight_decay;
    o->m = be->alloc(p->numel);
    if (o->kind == MT_OPTIM_ADAMW) o->v = be->alloc(p->numel);
    if (!o->m || (o->kind == MT_OPTIM_ADAMW && !o->v))
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for optimizer state");
    return MT_OK;
}

void mt_optim_clip(const mt_params *p, const mt_backend *be, double norm, double max_norm) {
    if (max_norm > 0.0 && norm > max_norm) be->scale(p->grad, (float)(max_norm / norm), p->numel);
}

void mt_optim_step(mt_optim *o, mt_params *p, const mt_backend *be, float lr) {
    o->t++;
    float bc1 = (float)(1.0 - pow(o->beta1, (double)o->t));
    float bc2 = (float)(1.0 - pow(o->beta2, (double)o->t));
    for (int i = 0; i < p->n; i++) {
        const mt_param *t = &p->v[i];
        float wd = t->decay ? o->weight_decay : 0.0f;
        float *x = p->data + t->offset;
        const float *g = p->grad + t->offset;
        if (o->kind == MT_OPTIM_ADAMW)
            be->adamw_update(x, g, o->m + t->offset, o->v + t->offset, t->numel, lr, o->beta1,
                             o->beta2, o->eps, wd, bc1, bc2);
        else
            be->sgd_update(x, g, o->m + t->offset, t->numel, lr, o->momentum, wd);
    }
}

void mt_optim_free(mt_optim *o, const mt_backend *be) {
    be->free(o->m);
    be->free(o->v);
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
